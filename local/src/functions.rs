//! The route table: which of Herald's handlers serves each route of each API, called exactly as
//! the Lambda runtime would call them in the cloud (`infra/template.yaml` maps the same routes).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use herald::apigw::{AuthorizerRequest, AuthorizerResponse, WsEvent, WsResponse};
use herald::auth::Verifier;
use herald::config::DeliveryConfig;
use herald::delivery::{self, RedeliveryCheck, RedeliveryTimer, Resend};
use herald::queue::QueueError;
use herald::store::Store;

use crate::registry::LocalGateway;

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
pub const CHAT_ROUTES: &[&str] = &["$connect", "$disconnect", "$default"];

/// Everything the handlers need, built once.
pub struct Handlers {
    pub store: Arc<dyn Store>,
    pub gateway: LocalGateway,
    pub verifier: Verifier,
    pub settings: DeliveryConfig,
    pub timer: Arc<dyn RedeliveryTimer>,
}

/// A handler failure: API Gateway turns it into a 500 (`$connect`) or an "Internal server error" frame.
pub type RouteError = Box<dyn std::error::Error + Send + Sync>;

impl Handlers {
    pub async fn authorize(&self, request: AuthorizerRequest) -> Result<AuthorizerResponse, herald_authorizer::AuthorizerError> {
        herald_authorizer::handle(&self.verifier, request).await
    }

    /// Invokes the route's handler; `route_key` is one of the API's routes.
    pub async fn invoke(&self, api: LocalApi, route_key: &str, event: WsEvent) -> Result<WsResponse, RouteError> {
        let store = &*self.store;
        Ok(match (api, route_key) {
            (_, "$disconnect") => herald_disconnect::handle(store, event).await?,
            (LocalApi::Notify, "$connect") => herald_connect::handle(store, self.settings.connection_ttl, event).await?,
            (LocalApi::Notify, "subscribe" | "unsubscribe") => herald_subscribe::handle(store, &self.gateway, event).await?,
            (LocalApi::Notify, _) => {
                let deps = herald_ack::AckDeps { store, gateway: &self.gateway, timer: &*self.timer, settings: &self.settings };
                herald_ack::handle(&deps, event).await?
            }
            (LocalApi::Chat, _) => herald::apigw::response(501, Some("chat is not served yet".into())),
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
    async fn schedule(&self, push_id: &str, connection_id: &str, after: Duration) -> Result<(), QueueError> {
        let handlers = self.handlers.clone();
        let check = RedeliveryCheck { push_id: push_id.into(), connection_id: connection_id.into() };
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let Some(h) = handlers.upgrade() else { return };
            match delivery::redeliver(&*h.store, &h.gateway, &*h.timer, &h.settings, &check).await {
                Ok(Resend::Gone) => {
                    if let Err(e) = herald_disconnect::forget(&*h.store, &check.connection_id).await {
                        tracing::error!(error = %e, "could not delete a gone connection");
                    }
                }
                Ok(outcome) => tracing::debug!(?outcome, push_id = check.push_id, "redelivery check"),
                Err(e) => tracing::error!(error = %e, push_id = check.push_id, "redelivery failed"),
            }
        });
        Ok(())
    }
}
