//! The route table: which of Herald's handlers serves each route of each API, called exactly as
//! the Lambda runtime would call them in the cloud (`infra/template.yaml` maps the same routes).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald::apigw::{AuthorizerRequest, AuthorizerResponse, WsEvent, WsResponse};
use herald::auth::Verifier;
use herald::chat;
use herald::config::DeliveryConfig;
use herald::delivery::{RedeliveryCheck, RedeliveryTimer};
use herald::platform::channels::PushSender;
use herald::queue::{Queue, QueueError};
use herald::store::Store;

use crate::faults::FaultyGateway;

/// Which WebSocket API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalApi {
    Notify,
    Chat,
}

impl LocalApi {
    /// The route selection expression's field: `$request.body.type` / `$request.body.name`.
    pub fn selection_field(self) -> &'static str {
        match self {
            Self::Notify => "type",
            Self::Chat => "name",
        }
    }

    pub fn routes(self) -> &'static [&'static str] {
        match self {
            Self::Notify => NOTIFY_ROUTES,
            Self::Chat => CHAT_ROUTES,
        }
    }

    pub fn api_id(self) -> &'static str {
        match self {
            Self::Notify => "notify",
            Self::Chat => "chat",
        }
    }
}

/// The notification API's routes (selection `$request.body.type`).
pub const NOTIFY_ROUTES: &[&str] = &["$connect", "$disconnect", "subscribe", "unsubscribe", "$default"];
/// The chat API's routes (selection `$request.body.name`).
pub const CHAT_ROUTES: &[&str] = &[
    "$connect",
    "$disconnect",
    chat::ADD_CONVERSATION,
    chat::GET_CONVERSATION_LIST,
    chat::GET_MESSAGE_LIST,
    chat::SEND_MESSAGE,
    chat::READ_MESSAGE,
    chat::GET_UNREAD_INFO,
    "$default",
];

/// Everything the handlers need, built once.
pub struct Handlers {
    pub store: Arc<dyn Store>,
    /// The management API in this process, with the `post_*` faults when `--faults` gives them.
    pub gateway: FaultyGateway,
    pub verifier: Verifier,
    pub settings: DeliveryConfig,
    pub timer: Arc<dyn RedeliveryTimer>,
    /// The notifications queue `notify` writes to and `dispatch` consumes.
    pub queue: Arc<dyn Queue>,
    /// Its dead-letter queue.
    pub dead_letters: Arc<dyn Queue>,
    /// The fan-out queue: delivery batches from `dispatch` to the delivery workers.
    pub fanout: Arc<dyn Queue>,
    /// The platform queue: mailings' and events' runs, pages and jobs for the platform worker.
    pub platform: Arc<dyn Queue>,
    /// herald-local's scheduler: what is sent later goes on the platform queue at its time.
    pub scheduler: Arc<crate::scheduler::LocalScheduler>,
    /// Email and SMS: kept in the outbox (`GET /outbox`, embedded) or sent through SES and SNS (aws).
    pub senders: crate::Senders,
    /// `HERALD_USER_INFO_URL`'s client, when configured.
    pub user_info: Option<herald::platform::user_info::UserInfo>,
}

/// A handler failure: API Gateway turns it into a 500 (`$connect`) or an "Internal server error" frame.
pub type RouteError = Box<dyn std::error::Error + Send + Sync>;

impl Handlers {
    pub async fn authorize(&self, request: AuthorizerRequest) -> Result<AuthorizerResponse, herald_authorizer::AuthorizerError> {
        herald_authorizer::handle(&self.verifier, request).await
    }

    /// `POST /notify`, the HTTP API's function.
    pub async fn notify(&self, request: lambda_http::Request) -> lambda_http::Response<lambda_http::Body> {
        let deps = herald_notify::NotifyDeps { verifier: &self.verifier, queue: &*self.queue };
        match herald_notify::handle(&deps, request).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }

    /// `GET /history` and `GET /presence` (CONTRACT §8), the HTTP API's `history` function.
    pub async fn history(&self, request: lambda_http::Request) -> lambda_http::Response<lambda_http::Body> {
        let deps = herald_history::HistoryDeps { verifier: &self.verifier, store: &*self.store, settings: &self.settings };
        match herald_history::handle(&deps, request).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }

    /// The platform's admin HTTP API (`/templates…`, `/users/…`, `/event-types…`, CONTRACT §9),
    /// over this process's store.
    pub async fn platform_admin(&self, request: lambda_http::Request) -> lambda_http::Response<lambda_http::Body> {
        let deps = herald_platform_admin::AdminDeps {
            verifier: &self.verifier,
            templates: &*self.store,
            users: &*self.store,
            event_types: &*self.store,
            notifications: &*self.store,
            mailings: &*self.store,
            queue: &*self.platform,
            scheduler: &*self.scheduler,
        };
        match herald_platform_admin::handle(&deps, request).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }

    /// `POST /events` (CONTRACT §9): sent at once, push on the notifications queue as
    /// `POST /notify` queues it, email and SMS into the outbox.
    pub async fn events(&self, request: lambda_http::Request) -> lambda_http::Response<lambda_http::Body> {
        let push = PushSender { queue: &*self.queue };
        let deps = herald_platform_events::EventsDeps {
            verifier: &self.verifier,
            templates: &*self.store,
            users: &*self.store,
            event_types: &*self.store,
            notifications: &*self.store,
            subscriptions: &*self.store,
            mailings: &*self.store,
            push: &push,
            email: self.senders.email.as_deref(),
            sms: Some(&*self.senders.sms),
            queue: &*self.platform,
            scheduler: &*self.scheduler,
            user_info: self.user_info.as_ref(),
        };
        match herald_platform_events::handle(&deps, request).await {
            Ok(r) => r,
            Err(never) => match never {},
        }
    }

    /// The platform worker, fed by the platform queue: returns the ids of the records that failed.
    pub async fn platform_worker(&self, event: aws_lambda_events::sqs::SqsEvent) -> Vec<String> {
        let push = PushSender { queue: &*self.queue };
        let planner = herald::platform::planner::Planner {
            templates: &*self.store,
            users: &*self.store,
            subscriptions: &*self.store,
            notifications: &*self.store,
            mailings: &*self.store,
            push: &push,
            email: self.senders.email.as_deref(),
            sms: Some(&*self.senders.sms),
            queue: &*self.platform,
            scheduler: &*self.scheduler,
            user_info: self.user_info.as_ref(),
            caller_token: None,
        };
        herald_platform_worker::handle_sqs(&planner, event).await.batch_item_failures.into_iter().map(|f| f.item_identifier).collect()
    }

    /// `GET /outbox` (herald-local only, admin): the email and SMS kept instead of sent; `None`
    /// on the aws backend, which sends them.
    pub async fn outbox(&self, authorization: Option<&str>) -> Result<Option<serde_json::Value>, herald::auth::AuthError> {
        let token = herald::auth::bearer_token(authorization)?;
        self.verifier.verify(token).await?.require_admin()?;
        Ok(self.senders.outbox.as_ref().map(|o| serde_json::json!({ "items": o.items() })))
    }

    /// What `dispatch` runs with here: this process's store, gateway, timer and queues.
    pub fn dispatch_deps(&self) -> herald_dispatch::DispatchDeps<'_, dyn Store> {
        herald_dispatch::DispatchDeps {
            store: &*self.store,
            gateway: &self.gateway,
            timer: &*self.timer,
            dead_letters: &*self.dead_letters,
            fanout: &*self.fanout,
            settings: &self.settings,
        }
    }

    /// What a delivery worker runs with here.
    pub fn deliver_deps(&self) -> herald_deliver::DeliverDeps<'_, dyn Store> {
        herald_deliver::DeliverDeps { store: &*self.store, gateway: &self.gateway, timer: &*self.timer, settings: &self.settings }
    }

    /// The delivery worker, fed by the fan-out queue: returns the ids of the records that failed.
    pub async fn deliver(&self, event: aws_lambda_events::sqs::SqsEvent) -> Vec<String> {
        self.deliver_deps().handle_sqs(event).await.batch_item_failures.into_iter().map(|f| f.item_identifier).collect()
    }

    /// `dispatch`, fed by the event source mapping: returns the ids of the records that failed.
    pub async fn dispatch(&self, event: aws_lambda_events::sqs::SqsEvent) -> Vec<String> {
        self.dispatch_deps().handle_sqs(event).await.batch_item_failures.into_iter().map(|f| f.item_identifier).collect()
    }

    /// Invokes the route's handler; `route_key` is one of the API's routes.
    pub async fn invoke(&self, api: LocalApi, route_key: &str, event: WsEvent) -> Result<WsResponse, RouteError> {
        let store = &*self.store;
        Ok(match (api, route_key) {
            (_, "$disconnect") => herald_disconnect::handle(store, event).await?,
            (LocalApi::Notify, "$connect") => {
                // `&since=` recoveries go to the delivery workers, as in the cloud.
                let recovery = herald_connect::Recovery { queue: &*self.fanout, history_ttl: self.settings.history_ttl };
                herald_connect::handle_with(store, self.settings.connection_ttl, Some(&recovery), event).await?
            }
            (LocalApi::Notify, "subscribe" | "unsubscribe") => {
                herald_subscribe::handle(store, &self.gateway, self.settings.history_ttl, event).await?
            }
            (LocalApi::Notify, _) => {
                let deps = herald_ack::AckDeps { store, gateway: &self.gateway, timer: &*self.timer, settings: &self.settings };
                herald_ack::handle(&deps, event).await?
            }
            (LocalApi::Chat, "$connect") => herald_chat_connect::handle(store, self.settings.connection_ttl, event).await?,
            (LocalApi::Chat, chat::ADD_CONVERSATION | chat::GET_CONVERSATION_LIST) => {
                herald_chat_conversations::handle(store, self.settings.presence_timeout, event).await?
            }
            (LocalApi::Chat, chat::GET_MESSAGE_LIST | chat::SEND_MESSAGE | chat::READ_MESSAGE | chat::GET_UNREAD_INFO) => {
                herald_chat_messages::handle(store, &self.gateway, event).await?
            }
            (LocalApi::Chat, _) => herald_chat_default::handle(event).await?,
        })
    }
}

/// Redelivery checks as timers in this process (the cloud uses an SQS delay queue and the
/// `redeliver` function; both run [`delivery::redeliver`]).
pub struct LocalTimer {
    handlers: std::sync::Weak<Handlers>,
}

impl LocalTimer {
    pub fn new(handlers: std::sync::Weak<Handlers>) -> Self {
        Self { handlers }
    }
}

#[async_trait]
impl RedeliveryTimer for LocalTimer {
    async fn schedule(&self, check: &RedeliveryCheck, after: Duration) -> Result<(), QueueError> {
        let handlers = self.handlers.clone();
        let check = check.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let Some(h) = handlers.upgrade() else { return };
            let deps = herald_redeliver::RedeliverDeps { store: &*h.store, gateway: &h.gateway, timer: &*h.timer, settings: &h.settings };
            if let Err(e) = deps.check(&check).await {
                tracing::error!(error = %e, push_id = check.push_id, "redelivery failed");
            }
        });
        Ok(())
    }
}
