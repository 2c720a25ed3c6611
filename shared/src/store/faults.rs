//! Throttling beneath the store adapters: the retry policy both adapters follow
//! ([`STORE_RETRY`]), and where herald-local's `store_throttle` fault (CONTRACT §4, "Fault
//! injection") answers a request with a throttling error *beneath* those retries, so that at the
//! rates used in tests no store call fails because of it:
//!
//! - DynamoDB: [`ThrottlingHttpClient`] wraps the SDK's HTTP client and answers a throttled
//!   request with DynamoDB's own `ProvisionedThroughputExceededException` (HTTP 400) without
//!   sending it; the SDK's standard retry (configured by [`dynamodb_config`]) retries it.
//! - The memory store: [`ThrottlingStore`] wraps it and retries a throttled call the way the SDK
//!   would (same attempts, same backoff) before running it once.
//!
//! Whether a request is throttled is decided by a [`StoreFaults`], asked before every try.

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::result::ConnectorError;
use aws_smithy_runtime_api::client::runtime_components::{RuntimeComponents, RuntimeComponentsBuilder};
use aws_smithy_runtime_api::http::StatusCode;
use aws_smithy_types::body::SdkBody;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::retry::RetryConfig;

use super::*;

/// How a store adapter retries a throttled request: up to `max_attempts` tries, waiting a random
/// part of `initial_backoff × 2^(try − 1)` (at most `max_backoff`) between them — the SDK's
/// standard retry, with DynamoDB's usual allowance (as the AWS SDKs for Java give it: ten tries
/// from 25 ms) instead of the SDK's generic three from 1 s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreRetry {
    pub max_attempts: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

/// The retry policy of both store adapters. At a throttling rate of 0.2 per try, a call fails
/// once in 0.2¹⁰ ≈ 10⁷ calls.
pub const STORE_RETRY: StoreRetry =
    StoreRetry { max_attempts: 10, initial_backoff: Duration::from_millis(25), max_backoff: Duration::from_secs(1) };

impl StoreRetry {
    /// The same policy for the AWS SDK (standard mode).
    pub fn sdk_retry_config(&self) -> RetryConfig {
        RetryConfig::standard()
            .with_max_attempts(self.max_attempts)
            .with_initial_backoff(self.initial_backoff)
            .with_max_backoff(self.max_backoff)
    }

    /// The pause before try number `next` (2 for the first retry); `unit` in `0..1` is the
    /// jitter.
    pub fn backoff(&self, next: u32, unit: f64) -> Duration {
        let exponent = next.saturating_sub(2).min(20);
        let full = self.initial_backoff.saturating_mul(1 << exponent).min(self.max_backoff);
        full.mul_f64(unit.clamp(0.0, 1.0))
    }
}

/// The DynamoDB client configuration of herald-local's aws backend: the SDK configuration with
/// [`STORE_RETRY`].
pub fn dynamodb_config(sdk: &aws_config::SdkConfig) -> aws_sdk_dynamodb::config::Builder {
    aws_sdk_dynamodb::config::Builder::from(sdk).retry_config(STORE_RETRY.sdk_retry_config())
}

/// Decides whether a try of a store request is throttled.
#[async_trait]
pub trait StoreFaults: Send + Sync + Debug {
    /// Asked before each try of each store request (retries included); `true` answers that try
    /// with a throttling error, and the request is not carried out.
    async fn throttle(&self) -> bool;
}

/// The body DynamoDB answers a throttled request with (awsJson1_0).
const THROTTLED_BODY: &str = r#"{"__type":"com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException","message":"The level of configured provisioned throughput for the table was exceeded (injected by herald-local's store_throttle)"}"#;

fn throttled_response() -> Result<HttpResponse, ConnectorError> {
    let status = StatusCode::try_from(400u16).map_err(|e| ConnectorError::other(e.into(), None))?;
    let mut response = HttpResponse::new(status, SdkBody::from(THROTTLED_BODY));
    let headers = response.headers_mut();
    for (name, value) in [("x-amzn-ErrorType", "ProvisionedThroughputExceededException"), ("content-type", "application/x-amz-json-1.0")] {
        headers.try_insert(name, value).map_err(|e| ConnectorError::other(e.into(), None))?;
    }
    Ok(response)
}

/// DynamoDB's HTTP client with throttling injected beneath the SDK's retries: a throttled try
/// never leaves the process and is answered as DynamoDB answers an exceeded throughput.
#[derive(Debug, Clone)]
pub struct ThrottlingHttpClient {
    inner: SharedHttpClient,
    faults: Arc<dyn StoreFaults>,
}

impl ThrottlingHttpClient {
    pub fn new(inner: SharedHttpClient, faults: Arc<dyn StoreFaults>) -> Self {
        Self { inner, faults }
    }
}

impl HttpClient for ThrottlingHttpClient {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(ThrottlingConnector {
            inner: self.inner.http_connector(settings, components),
            faults: self.faults.clone(),
        })
    }

    fn validate_base_client_config(
        &self,
        runtime_components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        self.inner.validate_base_client_config(runtime_components, cfg)
    }

    fn connector_metadata(&self) -> Option<aws_smithy_runtime_api::client::connector_metadata::ConnectorMetadata> {
        self.inner.connector_metadata()
    }
}

#[derive(Debug)]
struct ThrottlingConnector {
    inner: SharedHttpConnector,
    faults: Arc<dyn StoreFaults>,
}

impl HttpConnector for ThrottlingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        let (inner, faults) = (self.inner.clone(), self.faults.clone());
        HttpConnectorFuture::new(async move {
            if faults.throttle().await {
                return throttled_response();
            }
            inner.call(request).await
        })
    }
}

/// A store with throttling injected beneath retries that follow [`STORE_RETRY`]: each call asks
/// [`StoreFaults::throttle`] before each try, waits the policy's backoff after a throttled one,
/// and runs the call on the inner store once a try passes. After the last throttled try the call
/// fails with [`StoreError::Throttled`] and the inner store is never touched.
#[derive(Debug)]
pub struct ThrottlingStore<S> {
    inner: S,
    faults: Arc<dyn StoreFaults>,
    retry: StoreRetry,
}

impl<S> ThrottlingStore<S> {
    pub fn new(inner: S, faults: Arc<dyn StoreFaults>) -> Self {
        Self::with_retry(inner, faults, STORE_RETRY)
    }

    pub fn with_retry(inner: S, faults: Arc<dyn StoreFaults>, retry: StoreRetry) -> Self {
        Self { inner, faults, retry }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Waits until a try is not throttled.
    async fn admit(&self) -> StoreResult<()> {
        let max = self.retry.max_attempts.max(1);
        for attempt in 1..=max {
            if !self.faults.throttle().await {
                return Ok(());
            }
            if attempt < max {
                let unit = f64::from(uuid::Uuid::new_v4().as_bytes()[0]) / 256.0;
                tokio::time::sleep(self.retry.backoff(attempt + 1, unit)).await;
            }
        }
        Err(StoreError::Throttled(format!("ProvisionedThroughputExceededException (injected) on all {max} tries")))
    }
}

/// Implements a store trait by delegating each method to the inner store once
/// [`ThrottlingStore::admit`] lets it through.
macro_rules! admitted {
    ($trait:ident { $($name:ident($($arg:ident: $ty:ty),*) -> $out:ty;)* }) => {
        #[async_trait]
        impl<S: $trait> $trait for ThrottlingStore<S> {
            $(
                async fn $name(&self, $($arg: $ty),*) -> StoreResult<$out> {
                    self.admit().await?;
                    self.inner.$name($($arg),*).await
                }
            )*
        }
    };
}

admitted!(ConnectionStore {
    put_connection(connection: &Connection) -> ();
    get_connection(connection_id: &str) -> Option<Connection>;
    delete_connection(connection_id: &str) -> Option<Connection>;
    user_connections(user_id: &str) -> Vec<Connection>;
});

admitted!(SubscriptionStore {
    subscribe(subscription: &Subscription) -> ();
    unsubscribe(connection_id: &str, event_name: &str) -> bool;
    connection_subscriptions(connection_id: &str) -> Vec<String>;
    delete_connection_subscriptions(connection_id: &str) -> usize;
    event_subscribers_in_shard(event_name: &str, shard: u32, cursor: Option<&str>, limit: usize) -> Page<Subscription>;
    event_subscribers(event_name: &str, cursor: Option<&str>, limit: usize) -> Page<Subscription>;
    user_event_subscribers(user_id: &str, event_name: &str) -> Vec<Subscription>;
});

admitted!(DeliveryStore {
    claim_push(push_id: &str, owner: &str, lease: Duration, expires_at: i64) -> Claim;
    renew_claim(push_id: &str, owner: &str, lease: Duration) -> bool;
    complete_push(push_id: &str, owner: &str) -> bool;
    release_push(push_id: &str, owner: &str) -> ();
    create_delivery(delivery: &Delivery) -> bool;
    get_delivery(push_id: &str, connection_id: &str) -> Option<Delivery>;
    record_attempt(push_id: &str, connection_id: &str, expected: u32) -> Option<u32>;
    ack_delivery(push_id: &str, connection_id: &str) -> AckOutcome;
    get_batch(batch_id: &str) -> Option<BatchState>;
    save_batch(batch_id: &str, state: &BatchState, expires_at: i64) -> ();
});

admitted!(ConversationStore {
    create_conversation(application_id: &serde_json::Value, user_id: &str, now: &str) -> (Conversation, bool);
    get_conversation(session_channel: &str) -> Option<Conversation>;
    user_conversations(user_id: &str) -> Vec<Conversation>;
});

admitted!(MessageStore {
    append_message(message: &NewMessage) -> (ChatMessage, bool);
    list_messages(session_channel: &str, before_id: Option<i64>, limit: usize) -> Vec<ChatMessage>;
    get_message(session_channel: &str, id: i64) -> Option<ChatMessage>;
    mark_read(session_channel: &str, id: i64, now: &str) -> Option<ChatMessage>;
    unread_counts(session_channels: &[String], reader: &str) -> Vec<UnreadCount>;
});

admitted!(MemberStore {
    add_member(session_channel: &str, member_id: &str) -> ();
    member_channels(member_id: &str) -> Vec<String>;
    channel_members(session_channel: &str) -> Vec<String>;
});

admitted!(TemplateStore {
    create_template(template: &Template) -> TemplateWrite;
    get_template(id: &str) -> Option<Template>;
    update_template(next: &Template, expected_version: u32) -> TemplateWrite;
    delete_template(id: &str) -> bool;
    list_templates() -> Vec<Template>;
    templates_named(name: &str, channel: Channel) -> Vec<Template>;
    template_for(name: &str, channel: Channel, user_locale: Option<&str>) -> Option<Template>;
});

admitted!(UserStore {
    get_user(user_id: &str) -> Option<UserProfile>;
    put_user(profile: &UserProfile, expected_version: Option<u32>) -> bool;
    users_in_shard(shard: u32, cursor: Option<&str>, limit: usize) -> Page<UserProfile>;
    list_users(cursor: Option<&str>, limit: usize) -> Page<UserProfile>;
});

admitted!(EventTypeStore {
    put_event_type(event_type: &EventType) -> ();
    get_event_type(name: &str) -> Option<EventType>;
    list_event_types() -> Vec<EventType>;
});

admitted!(NotificationStore {
    claim_event(event_id: &str, expires_at: i64) -> bool;
    create_notification(notification: &Notification) -> bool;
    update_notification(notification: &Notification) -> ();
    get_notification(id: &str) -> Option<Notification>;
    list_notifications(filter: &NotificationFilter, cursor: Option<&str>, limit: usize) -> Page<Notification>;
});

admitted!(MailingStore {
    create_mailing(mailing: &Mailing) -> bool;
    get_mailing(id: &str) -> Option<Mailing>;
    list_mailings(cursor: Option<&str>, limit: usize) -> Page<Mailing>;
    set_mailing_status(id: &str, from: &[MailingStatus], to: MailingStatus) -> bool;
    start_run(id: &str, run: &str) -> bool;
    add_to_counts(id: &str, run: &str, created: i64, done: i64, counts: &[(String, i64)]) -> ();
    mark_expanded(id: &str, run: &str) -> ();
    finish_run(id: &str, run: &str, to: MailingStatus) -> bool;
    create_job(record: &Notification, mailing_id: &str, run: &str) -> bool;
    record_job(record: &Notification, from: NotificationStatus, mailing_id: &str, run: &str, done: bool, counts: &[(String, i64)]) -> bool;
});

admitted!(HistoryStore {
    stream_head(stream: &str, ttl_secs: i64) -> StreamHead;
    append_history(stream: &str, key: &str, push: &Push, ttl_secs: i64) -> Position;
    read_history(stream: &str, epoch: &str, after: u64, limit: usize) -> Vec<Push>;
    fence(of: FenceOf<'_>) -> Option<Option<Fence>>;
    go_live(of: FenceOf<'_>, stream: &str, head: &StreamHead, force: bool) -> bool;
});

admitted!(PresenceStore {
    touch_connection(connection_id: &str, now: i64) -> ();
    connections(connection_ids: &[String]) -> Vec<Connection>;
});

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};

    use aws_sdk_dynamodb::config::{BehaviorVersion, Credentials, Region};
    use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};

    use super::*;
    use crate::domain::Api;
    use crate::store::memory::MemoryStore;
    use crate::store::tables::TableNames;

    /// Throttles the first `n` tries it is asked about, counting them all.
    #[derive(Debug, Default)]
    struct FirstTries {
        throttle: u32,
        asked: AtomicU32,
    }

    #[async_trait]
    impl StoreFaults for FirstTries {
        async fn throttle(&self) -> bool {
            self.asked.fetch_add(1, Ordering::SeqCst) < self.throttle
        }
    }

    fn quick() -> StoreRetry {
        StoreRetry { max_attempts: 4, initial_backoff: Duration::from_millis(1), max_backoff: Duration::from_millis(2) }
    }

    fn connection(id: &str) -> Connection {
        Connection::opened(id, "u1", Api::Notify, Duration::from_secs(3600))
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let r = StoreRetry { max_attempts: 10, initial_backoff: Duration::from_millis(25), max_backoff: Duration::from_secs(1) };
        let full: Vec<u128> = (2..=9).map(|n| r.backoff(n, 1.0).as_millis()).collect();
        assert_eq!(full, [25, 50, 100, 200, 400, 800, 1000, 1000]);
        assert_eq!(r.backoff(5, 0.5), Duration::from_millis(100));
        assert_eq!(r.backoff(5, 0.0), Duration::ZERO);
        assert_eq!(STORE_RETRY.sdk_retry_config().max_attempts(), STORE_RETRY.max_attempts);
    }

    #[tokio::test]
    async fn throttled_tries_are_retried_and_the_call_runs_once() {
        let faults = Arc::new(FirstTries { throttle: 3, ..Default::default() });
        let store = ThrottlingStore::with_retry(MemoryStore::new(), faults.clone(), quick());
        store.put_connection(&connection("c1")).await.expect("the 4th try passes");
        assert_eq!(faults.asked.load(Ordering::SeqCst), 4);
        assert_eq!(store.get_connection("c1").await.unwrap().map(|c| c.connection_id).as_deref(), Some("c1"));
        assert_eq!(faults.asked.load(Ordering::SeqCst), 5, "one try per call once nothing is throttled");
    }

    #[tokio::test]
    async fn a_call_throttled_on_every_try_fails_and_changes_nothing() {
        let faults = Arc::new(FirstTries { throttle: 4, ..Default::default() });
        let store = ThrottlingStore::with_retry(MemoryStore::new(), faults.clone(), quick());
        let err = store.put_connection(&connection("c1")).await.unwrap_err();
        assert!(matches!(err, StoreError::Throttled(_)) && err.is_transient(), "{err:?}");
        assert_eq!(faults.asked.load(Ordering::SeqCst), 4);
        assert_eq!(store.inner().get_connection("c1").await.unwrap(), None, "a throttled write is not carried out");
    }

    /// A DynamoDB store whose HTTP client is `replay` beneath the throttling wrapper.
    fn dynamo(replay: &StaticReplayClient, faults: Arc<dyn StoreFaults>, retry: StoreRetry) -> crate::store::dynamodb::DynamoStore {
        let http = ThrottlingHttpClient::new(SharedHttpClient::new(replay.clone()), faults);
        let config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .endpoint_url("http://dynamodb.invalid")
            .retry_config(retry.sdk_retry_config())
            .http_client(http)
            .build();
        crate::store::dynamodb::DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), TableNames::with_prefix("t-"))
    }

    fn empty_get_item() -> ReplayEvent {
        let request = http::Request::builder().uri("http://dynamodb.invalid/").body(SdkBody::empty()).unwrap();
        let response =
            http::Response::builder().status(200).header("content-type", "application/x-amz-json-1.0").body(SdkBody::from("{}")).unwrap();
        ReplayEvent::new(request, response)
    }

    #[tokio::test]
    async fn dynamodb_retries_an_injected_throttle_and_only_the_passing_try_is_sent() {
        let replay = StaticReplayClient::new(vec![empty_get_item()]);
        let faults = Arc::new(FirstTries { throttle: 2, ..Default::default() });
        let store = dynamo(&replay, faults.clone(), quick());
        assert_eq!(store.get_connection("c1").await.expect("the SDK retries the throttled tries"), None);
        assert_eq!(faults.asked.load(Ordering::SeqCst), 3);
        assert_eq!(replay.actual_requests().count(), 1, "throttled tries never leave the process");
    }

    #[tokio::test]
    async fn dynamodb_throttled_on_every_try_is_the_stores_throttled_error() {
        let replay = StaticReplayClient::new(vec![]);
        let faults = Arc::new(FirstTries { throttle: u32::MAX, ..Default::default() });
        let store = dynamo(&replay, faults.clone(), quick());
        let err = store.get_connection("c1").await.unwrap_err();
        assert!(matches!(&err, StoreError::Throttled(m) if m.contains("ProvisionedThroughputExceededException")), "{err:?}");
        assert_eq!(faults.asked.load(Ordering::SeqCst), 4, "the SDK's tries, each asked");
        assert_eq!(replay.actual_requests().count(), 0);
    }
}
