//! `herald-local`: API Gateway WebSockets, the management API and the event sources on one
//! machine, calling the very handlers that are deployed to Lambda (CONTRACT §2).

mod admin;
pub mod faults;
pub mod functions;
pub mod kafka;
mod management;
pub mod metrics;
pub mod queue;
pub mod registry;
pub mod scheduler;
pub mod settings;
mod sqs;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::IntoResponse;
use axum::routing::get;
use herald::auth::{AuthConfig, Verifier};
use herald::config::{ConfigError, DeliveryConfig};
use herald::platform::channels::{ChannelSender, Outbox};
use herald::store::Store;
use herald::store::dynamodb::DynamoStore;
use herald::store::memory::MemoryStore;
use herald::store::tables::TableNames;
use tokio::net::{TcpListener, TcpSocket};

use crate::faults::{CountedQueue, FaultSpec, Faults, FaultyGateway};
use crate::functions::{Handlers, LocalTimer};
use crate::queue::LocalQueue;
use crate::registry::{LocalGateway, Registry};

pub use ws::{IDLE_TIMEOUT, MAX_CONNECTION};

/// The secret herald-local signs and checks development tokens with when `HERALD_JWT_SECRET` is unset.
pub const DEV_SECRET: &str = "herald-local-development-secret";

/// Where the data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Backend {
    /// In memory: nothing else to install.
    #[default]
    Embedded,
    /// DynamoDB (and SQS) through the AWS SDK's standard configuration.
    Aws,
}

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    pub host: String,
    pub port: u16,
    pub backend: Backend,
    pub create_resources: bool,
    pub auth: AuthConfig,
    pub delivery: DeliveryConfig,
    pub tables: TableNames,
    pub stage: String,
    pub idle_timeout: Duration,
    /// Per-connection bounds: the outbound queue, the write timeout, the 2 h maximum.
    pub connection_limits: registry::ConnectionLimits,
    /// API Gateway's new-connection quota per second (off when `None`).
    pub connect_rate: Option<u32>,
    /// How long a failed queue message stays invisible before it is retried.
    pub visibility_timeout: Duration,
    /// With the aws backend: this SDK configuration instead of the environment's (tests).
    pub sdk: Option<aws_config::SdkConfig>,
    /// With the aws backend: the SDK configuration for SQS, SES and SNS, when it differs from
    /// `sdk` (tests: DynamoDB Local for the tables, moto for the rest).
    pub messaging_sdk: Option<aws_config::SdkConfig>,
    /// `HERALD_EMAIL_FROM` (default [`DEFAULT_EMAIL_FROM`]): with the aws backend, the SES
    /// identity email is sent from. The embedded backend keeps email in `GET /outbox`.
    pub email_from: String,
    /// The notifications queue's name (`HERALD_QUEUE_NAME`, default `herald-notifications`);
    /// its dead-letter queue is this name + `-dlq`.
    pub queue_name: String,
    /// The fan-out queue's name (`HERALD_FANOUT_QUEUE_NAME`, default `herald-fanout`): delivery
    /// batches from `dispatch` to the delivery workers; its dead-letter queue is this name + `-dlq`.
    pub fanout_queue_name: String,
    /// The platform queue's name (`HERALD_PLATFORM_QUEUE_NAME`, default `herald-platform`):
    /// mailings' and events' runs, pages and jobs for the platform worker; its dead-letter queue
    /// is this name + `-dlq`.
    pub platform_queue_name: String,
    /// Fault injection (`--faults` / `HERALD_FAULTS`, CONTRACT §4): none by default.
    pub faults: FaultSpec,
    /// `--faults-seed` / `HERALD_FAULTS_SEED`: the same seed draws the same faults; `None` picks one.
    pub faults_seed: Option<u64>,
    /// `HERALD_POST_TIMEOUT_MS` (default 2000): how long a management API call may take before it
    /// counts as a timeout; what `post_timeout` keeps a caller waiting.
    pub post_timeout: Duration,
    /// `HERALD_CORS_ORIGINS`: the browser origins allowed to call the HTTP API (`POST /notify`),
    /// comma-separated, `*` for any; empty (the default) answers no CORS request.
    pub cors_origins: Vec<String>,
    /// `HERALD_USER_INFO_URL` and `HERALD_USER_INFO_TOKEN`: what a profile lacks for a job comes
    /// from the auth service (CONTRACT §9, "Users").
    pub user_info_url: Option<String>,
    pub user_info_token: Option<String>,
    /// `--kafka <host:port>`: consume topic `notification.send` from this broker (CONTRACT §4,
    /// "Kafka locally"); off when `None`.
    pub kafka: Option<kafka::KafkaOptions>,
    /// `HERALD_SCHEDULE_GROUP` (default [`DEFAULT_SCHEDULE_GROUP`]): with the aws backend, the
    /// EventBridge Scheduler group herald-local keeps its schedules in (`--create-resources`
    /// creates it).
    pub schedule_group: String,
    /// `HERALD_SCHEDULER_ROLE_ARN` (default [`DEFAULT_SCHEDULER_ROLE_ARN`], which moto does not
    /// check): with the aws backend, the role its schedules name to send to the platform queue.
    pub scheduler_role_arn: String,
    /// With the aws backend: a fire at most this far ahead goes on the platform queue with SQS
    /// `DelaySeconds` (whole seconds), a later one is an `at()` schedule herald-local fires to the
    /// second. Zero by default; the cloud's bound is 15 minutes (at most that is used).
    pub sqs_delay_limit: Duration,
}

impl Options {
    /// Options from the environment (`HERALD_*`), with the embedded backend on 127.0.0.1:3001.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&herald::config::env)
    }

    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let with_dev_secret = |k: &str| match k {
            "HERALD_JWT_SECRET"
                if ["HERALD_JWT_SECRET_ARN", "HERALD_JWT_PUBLIC_KEY", "HERALD_JWKS_URL"].iter().all(|v| get(v).is_none()) =>
            {
                get(k).or_else(|| Some(DEV_SECRET.to_string()))
            }
            _ => get(k),
        };
        Ok(Self {
            host: get("HERALD_HOST").unwrap_or_else(|| "127.0.0.1".into()),
            port: herald::config::parsed(get, "HERALD_PORT", 3001u16)?,
            backend: Backend::Embedded,
            create_resources: false,
            auth: AuthConfig::from_lookup(&with_dev_secret)?,
            delivery: DeliveryConfig::from_lookup(get)?,
            tables: TableNames::from_lookup(get),
            stage: "local".into(),
            idle_timeout: Duration::from_secs(herald::config::parsed(get, "HERALD_IDLE_TIMEOUT_SECS", IDLE_TIMEOUT.as_secs())?),
            connection_limits: registry::ConnectionLimits::default(),
            connect_rate: None,
            visibility_timeout: Duration::from_millis(herald::config::parsed(get, "HERALD_VISIBILITY_TIMEOUT_MS", 30_000u64)?),
            sdk: None,
            messaging_sdk: None,
            email_from: email_from(get)?,
            queue_name: get("HERALD_QUEUE_NAME").unwrap_or_else(|| "herald-notifications".into()),
            fanout_queue_name: get("HERALD_FANOUT_QUEUE_NAME").unwrap_or_else(|| "herald-fanout".into()),
            platform_queue_name: get("HERALD_PLATFORM_QUEUE_NAME").unwrap_or_else(|| "herald-platform".into()),
            faults: FaultSpec::from_lookup(get)?,
            faults_seed: get("HERALD_FAULTS_SEED")
                .map(|v| {
                    v.trim().parse().map_err(|_| ConfigError::Invalid {
                        var: "HERALD_FAULTS_SEED",
                        reason: format!("{v:?} is not an unsigned integer"),
                    })
                })
                .transpose()?,
            post_timeout: Duration::from_millis(herald::config::parsed(get, "HERALD_POST_TIMEOUT_MS", 2_000u64)?),
            cors_origins: cors_origins(get)?,
            user_info_url: get(herald::platform::user_info::URL_VAR),
            user_info_token: get(herald::platform::user_info::TOKEN_VAR),
            kafka: None,
            schedule_group: get("HERALD_SCHEDULE_GROUP").unwrap_or_else(|| DEFAULT_SCHEDULE_GROUP.into()),
            scheduler_role_arn: get("HERALD_SCHEDULER_ROLE_ARN").unwrap_or_else(|| DEFAULT_SCHEDULER_ROLE_ARN.into()),
            sqs_delay_limit: Duration::ZERO,
        })
    }
}

/// herald-local's schedule group when `HERALD_SCHEDULE_GROUP` is unset (the template's, with its
/// default `NamePrefix`).
pub const DEFAULT_SCHEDULE_GROUP: &str = "herald-platform";

/// The role herald-local's schedules name when `HERALD_SCHEDULER_ROLE_ARN` is unset: a placeholder
/// (moto does not check it; against AWS, give the stack's `PlatformSchedulerRole`).
pub const DEFAULT_SCHEDULER_ROLE_ARN: &str = "arn:aws:iam::123456789012:role/herald-local-scheduler";

/// herald-local's sender when `HERALD_EMAIL_FROM` is unset (CONTRACT §9).
pub const DEFAULT_EMAIL_FROM: &str = "herald@localhost";

/// `HERALD_EMAIL_FROM`, checked as an address when it is given.
fn email_from(get: &impl Fn(&str) -> Option<String>) -> Result<String, ConfigError> {
    let var = herald::platform::providers::EMAIL_FROM_VAR;
    match get(var) {
        None => Ok(DEFAULT_EMAIL_FROM.to_string()),
        Some(from) => {
            let from = from.trim().to_string();
            herald::domain::check_email(&from).map_err(|reason| ConfigError::Invalid { var, reason: reason.to_string() })?;
            Ok(from)
        }
    }
}

/// `HERALD_CORS_ORIGINS`: `*`, or origins such as `https://app.example.com` (scheme, host and
/// optional port, no path), comma-separated.
fn cors_origins(get: &impl Fn(&str) -> Option<String>) -> Result<Vec<String>, ConfigError> {
    let Some(value) = get("HERALD_CORS_ORIGINS") else { return Ok(Vec::new()) };
    let origins: Vec<String> = value.split(',').map(|o| o.trim().trim_end_matches('/').to_string()).filter(|o| !o.is_empty()).collect();
    for origin in &origins {
        let well_formed = origin == "*"
            || origin
                .split_once("://")
                .is_some_and(|(scheme, rest)| matches!(scheme, "http" | "https") && !rest.is_empty() && !rest.contains('/'));
        if !well_formed {
            return Err(ConfigError::Invalid {
                var: "HERALD_CORS_ORIGINS",
                reason: format!("{origin:?} is not an origin (https://host[:port]) or *"),
            });
        }
    }
    Ok(origins)
}

/// One queue and its dead-letter queue.
pub enum QueuePair {
    Embedded { queue: Arc<LocalQueue>, dead_letters: Arc<LocalQueue> },
    Sqs { client: aws_sdk_sqs::Client, queue_url: String, dead_letter_url: String },
}

impl QueuePair {
    /// The queue's URL and its dead-letter queue's (`None` in memory).
    pub fn urls(&self) -> Option<(&str, &str)> {
        match self {
            Self::Embedded { .. } => None,
            Self::Sqs { queue_url, dead_letter_url, .. } => Some((queue_url, dead_letter_url)),
        }
    }

    fn embedded(visibility_timeout: Duration) -> Self {
        Self::Embedded { queue: Arc::new(LocalQueue::new(visibility_timeout)), dead_letters: Arc::new(LocalQueue::new(visibility_timeout)) }
    }

    async fn sqs(client: &aws_sdk_sqs::Client, name: &str, options: &Options) -> Result<Self, StartError> {
        let (queue_url, dead_letter_url) = sqs::queue_urls(client, name, options.create_resources, options.visibility_timeout).await?;
        Ok(Self::Sqs { client: client.clone(), queue_url, dead_letter_url })
    }

    /// The queue and its dead-letter queue, as handlers send to them.
    fn senders(&self) -> (Arc<dyn herald::queue::Queue>, Arc<dyn herald::queue::Queue>) {
        match self {
            Self::Embedded { queue, dead_letters } => (queue.clone(), dead_letters.clone()),
            Self::Sqs { client, queue_url, dead_letter_url } => (
                Arc::new(herald::queue::SqsQueue::new(client.clone(), queue_url.clone())),
                Arc::new(herald::queue::SqsQueue::new(client.clone(), dead_letter_url.clone())),
            ),
        }
    }

    /// The event source mapping: batches of this queue into `consume`, which returns the ids
    /// of the records that failed, with up to `concurrency` invocations at once (Lambda's
    /// scaling, capped as `ScalingConfig.MaximumConcurrency` caps it in the template).
    fn poll<F, Fut>(&self, visibility_timeout: Duration, concurrency: usize, consume: F) -> Vec<tokio::task::JoinHandle<()>>
    where
        F: Fn(aws_lambda_events::sqs::SqsEvent) -> Fut + Clone + Send + Sync + 'static,
        Fut: std::future::Future<Output = Vec<String>> + Send + 'static,
    {
        (0..concurrency.max(1))
            .map(|_| {
                let consume = consume.clone();
                match self {
                    Self::Embedded { queue, dead_letters } => tokio::spawn(queue.clone().poll(dead_letters.clone(), consume)),
                    Self::Sqs { client, queue_url, .. } => {
                        tokio::spawn(sqs::poll(client.clone(), queue_url.clone(), visibility_timeout, consume))
                    }
                }
            })
            .collect()
    }

    /// The bodies set aside in the dead-letter queue.
    pub async fn dead_letters(&self) -> Vec<String> {
        match self {
            Self::Embedded { dead_letters, .. } => dead_letters.bodies(),
            Self::Sqs { client, dead_letter_url, .. } => sqs::peek(client, dead_letter_url).await,
        }
    }

    /// Messages waiting or in flight.
    pub async fn depth(&self) -> usize {
        match self {
            Self::Embedded { queue, .. } => queue.depth(),
            Self::Sqs { client, queue_url, .. } => sqs::depth(client, queue_url).await,
        }
    }
}

/// The notifications queue, the fan-out queue and the platform queue, each with its
/// dead-letter queue.
pub struct Queues {
    pub notifications: QueuePair,
    pub fanout: QueuePair,
    pub platform: QueuePair,
}

/// The server's shared state.
pub struct App {
    pub handlers: Arc<Handlers>,
    pub queues: Queues,
    pub registry: Arc<Registry>,
    /// What is injected, and how often it was (`GET /health`).
    pub faults: Arc<Faults>,
    /// Open connections by API (`GET /metrics`).
    pub live: metrics::LiveCounts,
    pub stage: String,
    pub domain: String,
    pub idle_timeout: Duration,
    cors_origins: Vec<String>,
    connect_limiter: Option<RateLimiter>,
    /// The claims of a development sign-in on the admin page, when it is offered (`admin`).
    dev_claims: Option<serde_json::Value>,
    /// With `--kafka`: whether the poller is positioned on every partition (`GET /health`).
    pub kafka: Option<Arc<kafka::KafkaStatus>>,
}

/// A per-second quota of new connections, as API Gateway's account quota.
struct RateLimiter {
    per_second: u64,
    window: AtomicU64,
}

impl RateLimiter {
    fn try_acquire(&self) -> bool {
        let now = registry::epoch_ms() as u64;
        let second = now / 1000;
        loop {
            let cur = self.window.load(Ordering::Relaxed);
            let (sec, count) = (cur >> 20, cur & 0xFFFFF);
            let next = if sec == second { (sec << 20) | (count + 1) } else { (second << 20) | 1 };
            if sec == second && count >= self.per_second {
                return false;
            }
            if self.window.compare_exchange(cur, next, Ordering::Relaxed, Ordering::Relaxed).is_ok() {
                return true;
            }
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("refusing to serve on {host} with the public development secret: set HERALD_JWT_SECRET (or a key) to serve off loopback")]
    DevSecretOffLoopback { host: String },
    #[error("could not bind {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error(
        "--backend aws needs a region: set AWS_REGION (e.g. AWS_REGION=us-east-1), or run ./scripts/local-aws for DynamoDB Local and moto on this machine"
    )]
    NoRegion,
    #[error(
        "--backend aws found no AWS credentials ({0}): set AWS_PROFILE or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run ./scripts/local-aws for DynamoDB Local and moto on this machine"
    )]
    NoCredentials(String),
    #[error("could not create the tables: {0}")]
    Resources(#[from] herald::store::StoreError),
    #[error(transparent)]
    Queues(#[from] sqs::SqsSetupError),
    #[error("could not create the SES identity {from}: {reason}")]
    EmailIdentity { from: String, reason: String },
    #[error("EventBridge Scheduler: {0}")]
    Schedules(String),
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    pollers: Vec<tokio::task::JoinHandle<()>>,
}

impl Server {
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }

    /// Stops accepting and waits for the server task.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
        for poller in &self.pollers {
            poller.abort();
        }
    }
}

/// Builds the store and the queues for the backend; `store_throttle` goes beneath the store
/// adapter's retries, and every store request is an operation `consumer_crash` may die at.
/// Where email and SMS go: the embedded backend keeps them in its outbox (`GET /outbox`), the
/// aws backend sends them through SES and SNS, as the cloud's functions do.
pub struct Senders {
    pub outbox: Option<Arc<Outbox>>,
    /// The aws backend's SES sender (`HERALD_EMAIL_FROM`).
    pub email_from: Option<String>,
    pub email: Option<Arc<dyn ChannelSender>>,
    pub sms: Arc<dyn ChannelSender>,
}

impl Senders {
    fn embedded() -> Self {
        let outbox = Arc::new(Outbox::default());
        Self { outbox: Some(outbox.clone()), email_from: None, email: Some(outbox.clone()), sms: outbox }
    }

    /// SES from `HERALD_EMAIL_FROM` and SNS; with `--create-resources`, the sender's identity too
    /// (moto verifies it at once; AWS mails the address a link to verify it).
    async fn aws(sdk: &aws_config::SdkConfig, options: &Options) -> Result<Self, StartError> {
        use herald::platform::providers::{SesSender, SnsSender};
        let ses = SesSender::new(aws_sdk_sesv2::Client::new(sdk), &options.email_from);
        if options.create_resources {
            ses.create_identity().await.map_err(|reason| StartError::EmailIdentity { from: options.email_from.clone(), reason })?;
        }
        Ok(Self {
            outbox: None,
            email_from: Some(options.email_from.clone()),
            email: Some(Arc::new(ses)),
            sms: Arc::new(SnsSender::new(aws_sdk_sns::Client::new(sdk))),
        })
    }
}

/// The store, the queues, where email and SMS go, and (aws) where schedules are kept.
type Built = (Arc<dyn Store>, Queues, Senders, Option<herald::platform::schedule::eventbridge::EventBridgeScheduler>);

async fn backend(options: &Options, faults: &Arc<Faults>) -> Result<Built, StartError> {
    if options.backend == Backend::Embedded {
        let queues = Queues {
            notifications: QueuePair::embedded(options.visibility_timeout),
            fanout: QueuePair::embedded(options.visibility_timeout),
            platform: QueuePair::embedded(options.visibility_timeout),
        };
        let store: Arc<dyn Store> = if faults.touches_store() {
            Arc::new(herald::store::faults::ThrottlingStore::new(MemoryStore::new(), faults.clone()))
        } else {
            Arc::new(MemoryStore::new())
        };
        return Ok((store, queues, Senders::embedded(), None));
    }
    let sdk = match &options.sdk {
        Some(sdk) => sdk.clone(),
        // A developer's machine: whatever endpoints it is pointed at, with the system's roots.
        None => herald::runtime::sdk_config_with(herald::runtime::TlsRoots::System).await,
    };
    check_aws(&sdk).await?;
    let mut dynamodb = herald::store::faults::dynamodb_config(&sdk);
    if faults.touches_store() {
        let inner = sdk.http_client().unwrap_or_else(faults::default_http_client);
        dynamodb = dynamodb.http_client(herald::store::faults::ThrottlingHttpClient::new(inner, faults.clone()));
    }
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(dynamodb.build()), options.tables.clone());
    if options.create_resources {
        store.create_tables().await?;
    }
    let messaging = options.messaging_sdk.as_ref().unwrap_or(&sdk);
    let client = aws_sdk_sqs::Client::new(messaging);
    let queues = Queues {
        notifications: QueuePair::sqs(&client, &options.queue_name, options).await?,
        fanout: QueuePair::sqs(&client, &options.fanout_queue_name, options).await?,
        platform: QueuePair::sqs(&client, &options.platform_queue_name, options).await?,
    };
    let (platform_url, _) = queues.platform.urls().ok_or_else(|| StartError::Schedules("the platform queue is not an SQS queue".into()))?;
    let schedules = schedules(messaging, &client, platform_url, options).await?;
    Ok((Arc::new(store), queues, Senders::aws(messaging, options).await?, Some(schedules)))
}

/// The cloud's scheduler on the platform queue, over EventBridge Scheduler (moto's on this
/// machine), with its group checked or created.
async fn schedules(
    sdk: &aws_config::SdkConfig,
    client: &aws_sdk_sqs::Client,
    queue_url: &str,
    options: &Options,
) -> Result<herald::platform::schedule::eventbridge::EventBridgeScheduler, StartError> {
    let durable = herald::platform::schedule::eventbridge::EventBridgeScheduler {
        client: aws_sdk_scheduler::Client::new(sdk),
        group: options.schedule_group.clone(),
        role_arn: options.scheduler_role_arn.clone(),
        queue_arn: sqs::queue_arn(client, queue_url).await?,
        queue: herald::queue::SqsQueue::new(client.clone(), queue_url),
        max_delay_secs: options.sqs_delay_limit.as_secs() as i64,
    };
    scheduler::ensure_group(&durable, options.create_resources).await.map_err(StartError::Schedules)?;
    Ok(durable)
}

/// What `--backend aws` cannot start without, said in one sentence before any request is made
/// (the SDK's own errors for these are long and come once per request).
async fn check_aws(sdk: &aws_config::SdkConfig) -> Result<(), StartError> {
    use aws_sdk_dynamodb::config::ProvideCredentials;
    if sdk.region().is_none() {
        return Err(StartError::NoRegion);
    }
    let Some(provider) = sdk.credentials_provider() else { return Err(StartError::NoCredentials("no provider".into())) };
    match tokio::time::timeout(Duration::from_secs(10), provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => Err(StartError::NoCredentials(e.to_string())),
        Err(_) => Err(StartError::NoCredentials("the credential chain did not answer within 10 s".into())),
    }
}

/// The accept queue: API Gateway takes bursts of handshakes; tokio's default of 128 drops the
/// rest of a burst and makes those clients retry a second later.
const LISTEN_BACKLOG: u32 = 4096;

async fn bind(addr: &str) -> std::io::Result<TcpListener> {
    let mut last = std::io::Error::new(std::io::ErrorKind::AddrNotAvailable, format!("{addr} resolves to no address"));
    for resolved in tokio::net::lookup_host(addr).await? {
        let socket = if resolved.is_ipv4() { TcpSocket::new_v4()? } else { TcpSocket::new_v6()? };
        socket.set_reuseaddr(true)?;
        match socket.bind(resolved) {
            Ok(()) => return socket.listen(LISTEN_BACKLOG),
            Err(e) => last = e,
        }
    }
    Err(last)
}

/// Whether `host` names only loopback addresses (`127.0.0.0/8`, `::1`, `localhost`).
pub fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => host.eq_ignore_ascii_case("localhost"),
    }
}

/// Starts serving; port 0 picks a free port.
pub async fn start(options: Options) -> Result<Server, StartError> {
    // The development secret is public: tokens signed with it are anyone's (CONTRACT §1).
    if options.auth.hs256_secret() == Some(DEV_SECRET) && !is_loopback(&options.host) {
        return Err(StartError::DevSecretOffLoopback { host: options.host.clone() });
    }
    let verifier = Verifier::new(&options.auth)?;
    let user_info = herald::platform::user_info::UserInfo::from_env(&|k: &str| match k {
        herald::platform::user_info::URL_VAR => options.user_info_url.clone(),
        herald::platform::user_info::TOKEN_VAR => options.user_info_token.clone(),
        _ => None,
    })?;
    let faults = Arc::new(Faults::new(options.faults.clone(), options.faults_seed, options.post_timeout));
    let (store, queues, senders, durable) = backend(&options, &faults).await?;
    let registry = Arc::new(Registry::new(options.connection_limits));
    let (mut queue, mut dead_letters) = queues.notifications.senders();
    let (mut fanout, _) = queues.fanout.senders();
    let (mut platform, _) = queues.platform.senders();
    if faults.injects(faults::Fault::ConsumerCrash) {
        // A queue send is an operation a crashing invocation may die at.
        for q in [&mut queue, &mut dead_letters, &mut fanout, &mut platform] {
            *q = Arc::new(CountedQueue(q.clone()));
        }
    }
    let handlers = Arc::new_cyclic(|weak| Handlers {
        store,
        gateway: FaultyGateway::new(LocalGateway(registry.clone()), faults.clone()),
        verifier,
        settings: DeliveryConfig {
            // A crashed coordinator's message comes back after the visibility timeout: its claim
            // must have lapsed by then (in the cloud, 360 s against 120 s).
            claim_lease: options.delivery.claim_lease.min(options.visibility_timeout),
            ..options.delivery.clone()
        },
        timer: Arc::new(LocalTimer::new(weak.clone())),
        queue,
        dead_letters,
        fanout,
        scheduler: Arc::new(match durable {
            Some(durable) => scheduler::LocalScheduler::durable(platform.clone(), durable),
            None => scheduler::LocalScheduler::new(platform.clone()),
        }),
        platform,
        senders,
        user_info,
    });
    // On the aws backend, what the schedule group keeps is fired by this process from now on.
    tokio::spawn(scheduler::rearm(Arc::downgrade(&handlers.scheduler)));
    // The event source mappings: the notifications queue into `dispatch`, the fan-out queue
    // into the delivery workers.
    // With `consumer_crash`, an invocation of either may die at a random point.
    let mut pollers = queues.notifications.poll(
        options.visibility_timeout,
        1,
        faults.consumer(consumer(&handlers, |h, event| async move { h.dispatch(event).await })),
    );
    pollers.extend(queues.platform.poll(
        options.visibility_timeout,
        PLATFORM_WORKERS,
        faults.consumer(consumer(&handlers, |h, event| async move { h.platform_worker(event).await })),
    ));
    pollers.extend(queues.fanout.poll(
        options.visibility_timeout,
        FANOUT_WORKERS,
        faults.consumer(consumer(&handlers, |h, event| async move { h.deliver(event).await })),
    ));
    // The Kafka event source mapping (`--kafka`): topic `notification.send` into `dispatch`.
    let kafka_status = options.kafka.as_ref().map(|k| {
        let status = Arc::new(kafka::KafkaStatus::default());
        pollers.push(tokio::spawn(kafka::run(k.clone(), Arc::downgrade(&handlers), status.clone())));
        status
    });
    let addr = format!("{}:{}", options.host, options.port);
    let listener = bind(&addr).await.map_err(|source| StartError::Bind { addr: addr.clone(), source })?;
    let local = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
    let app = Arc::new(App {
        handlers,
        queues,
        registry,
        faults,
        live: Default::default(),
        stage: options.stage.clone(),
        domain: local.to_string(),
        idle_timeout: options.idle_timeout,
        cors_origins: options.cors_origins.clone(),
        connect_limiter: options.connect_rate.map(|r| RateLimiter { per_second: u64::from(r), window: AtomicU64::new(0) }),
        dev_claims: admin::dev_claims(&options.auth),
        kafka: kafka_status,
    });
    let router = Router::new()
        .route("/health", get(health))
        .route("/metrics", get(metrics::handler))
        .route("/api/v1/notify/ws", get(ws::notify_upgrade))
        .route("/ws", get(ws::chat_upgrade))
        .route("/notify", axum::routing::post(notify).options(preflight))
        .route("/history", get(history))
        .route("/presence", get(history))
        .route("/templates", axum::routing::post(platform_admin).get(platform_admin))
        .route("/templates/preview", axum::routing::post(platform_admin))
        .route("/templates/{id}", axum::routing::get(platform_admin).put(platform_admin).delete(platform_admin))
        .route("/templates/{id}/preview", axum::routing::post(platform_admin))
        .route("/users/{id}", axum::routing::get(platform_admin).put(platform_admin))
        .route("/event-types", axum::routing::get(platform_admin))
        .route("/event-types/{name}", axum::routing::put(platform_admin))
        .route("/notifications", axum::routing::get(platform_admin))
        .route("/events", axum::routing::post(platform_events))
        .route("/events/{transaction_id}", axum::routing::delete(platform_events))
        .route("/mailings", axum::routing::post(platform_admin).get(platform_admin))
        .route("/mailings/next-runs", axum::routing::post(platform_admin))
        .route("/mailings/{id}", get(platform_admin))
        .route("/mailings/{id}/cancel", axum::routing::post(platform_admin))
        .route("/outbox", get(outbox))
        .route("/admin", get(admin::page))
        .route("/admin/{file}", get(admin::page))
        .route("/admin/dev-token", axum::routing::post(admin::dev_token))
        .route("/@connections/{id}", axum::routing::post(management::post).get(management::get).delete(management::delete))
        .route(
            "/{stage}/@connections/{id}",
            axum::routing::post(management::post_staged).get(management::get_staged).delete(management::delete_staged),
        )
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(app.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        // Nagle's algorithm off, as API Gateway's edge has it: small frames go out at once.
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
            let _ = tcp.set_nodelay(true);
        });
        let serve = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(async move {
            let _ = rx.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "server failed");
        }
    });
    Ok(Server { addr: local, app, shutdown: Some(tx), task, pollers })
}

/// A JSON error body, as every other refusal of the HTTP API has.
fn json_error(status: axum::http::StatusCode, code: &str, message: String) -> axum::response::Response {
    (status, axum::Json(serde_json::json!({"error": {"code": code, "message": message}}))).into_response()
}

async fn not_found(uri: axum::http::Uri) -> axum::response::Response {
    json_error(axum::http::StatusCode::NOT_FOUND, "not_found", format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> axum::response::Response {
    json_error(axum::http::StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", format!("{method} is not allowed on {}", uri.path()))
}

/// Platform workers polling the platform queue at once (the template's MaximumConcurrency is higher).
const PLATFORM_WORKERS: usize = 2;

/// Delivery workers polling the fan-out queue at once.
const FANOUT_WORKERS: usize = 4;

/// A queue consumer over the handlers, holding them weakly (the server owns them): once they are
/// gone, every record counts as failed.
fn consumer<F, Fut>(
    handlers: &Arc<Handlers>,
    run: F,
) -> impl Fn(aws_lambda_events::sqs::SqsEvent) -> BoxedIds + Clone + Send + Sync + 'static
where
    F: Fn(Arc<Handlers>, aws_lambda_events::sqs::SqsEvent) -> Fut + Send + Sync + Copy + 'static,
    Fut: std::future::Future<Output = Vec<String>> + Send + 'static,
{
    let weak = Arc::downgrade(handlers);
    move |event| {
        let weak = weak.clone();
        Box::pin(async move {
            match weak.upgrade() {
                Some(h) => run(h, event).await,
                None => event.records.into_iter().filter_map(|r| r.message_id).collect(),
            }
        })
    }
}

type BoxedIds = std::pin::Pin<Box<dyn std::future::Future<Output = Vec<String>> + Send>>;

/// `GET /health`: 200 once serving, with the faults injected so far (`{}` without `--faults`);
/// with `--kafka`, 503 (`"status":"starting"`) until the poller is positioned on every partition
/// (CONTRACT §4), and `"kafka":{"positioned":…}` in the body.
async fn health(axum::extract::State(app): axum::extract::State<Arc<App>>) -> axum::response::Response {
    let mut body = serde_json::json!({"status": "ok", "faults": app.faults.counts()});
    let Some(kafka) = &app.kafka else { return axum::Json(body).into_response() };
    let positioned = kafka.positioned();
    body["kafka"] = serde_json::json!({"positioned": positioned});
    if positioned {
        axum::Json(body).into_response()
    } else {
        body["status"] = "starting".into();
        (axum::http::StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
    }
}

/// `POST /notify`: the HTTP API's event, handed to the `notify` function.
async fn notify(axum::extract::State(app): axum::extract::State<Arc<App>>, request: axum::extract::Request) -> axum::response::Response {
    let origin = allowed_origin(&app, request.headers());
    let mut response = notify_response(&app, request).await;
    if let Some(origin) = origin {
        allow(response.headers_mut(), origin);
    }
    response
}

fn allow(headers: &mut axum::http::HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}

/// The `Access-Control-Allow-Origin` for a request's `Origin`, when `HERALD_CORS_ORIGINS`
/// allows it (as an HTTP API's `CorsConfiguration` does).
fn allowed_origin(app: &App, headers: &axum::http::HeaderMap) -> Option<HeaderValue> {
    let origin = headers.get(header::ORIGIN)?;
    if app.cors_origins.iter().any(|o| o == "*") {
        return Some(HeaderValue::from_static("*"));
    }
    let text = origin.to_str().ok()?;
    app.cors_origins.iter().any(|o| o.eq_ignore_ascii_case(text)).then(|| origin.clone())
}

/// `OPTIONS /notify`: a browser's preflight. Without `HERALD_CORS_ORIGINS`, the method is not
/// allowed (405); with it, 204, and the CORS headers only for an allowed origin.
async fn preflight(axum::extract::State(app): axum::extract::State<Arc<App>>, headers: axum::http::HeaderMap) -> axum::response::Response {
    if app.cors_origins.is_empty() {
        return method_not_allowed(axum::http::Method::OPTIONS, axum::http::Uri::from_static("/notify")).await;
    }
    let mut response = axum::http::StatusCode::NO_CONTENT.into_response();
    if let Some(origin) = allowed_origin(&app, &headers) {
        let h = response.headers_mut();
        allow(h, origin);
        h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
        h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization, content-type"));
        h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    }
    response
}

async fn notify_response(app: &App, request: axum::extract::Request) -> axum::response::Response {
    match lambda_request(request).await {
        Ok(request) => axum_response(app.handlers.notify(request).await),
        Err(refused) => refused,
    }
}

/// `GET /history` and `GET /presence` (CONTRACT §8), handed to the `history` function.
async fn history(axum::extract::State(app): axum::extract::State<Arc<App>>, request: axum::extract::Request) -> axum::response::Response {
    match lambda_request(request).await {
        Ok(request) => axum_response(app.handlers.history(request).await),
        Err(refused) => refused,
    }
}

/// The HTTP API's templates, users and event-types routes (CONTRACT §9), handed to the
/// `platform-admin` function.
async fn platform_admin(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    match lambda_request(request).await {
        Ok(request) => axum_response(app.handlers.platform_admin(request).await),
        Err(refused) => refused,
    }
}

/// `POST /events` and `DELETE /events/{transaction_id}` (CONTRACT §9), handed to the `platform-events` function.
async fn platform_events(
    axum::extract::State(app): axum::extract::State<Arc<App>>,
    request: axum::extract::Request,
) -> axum::response::Response {
    match lambda_request(request).await {
        Ok(request) => axum_response(app.handlers.events(request).await),
        Err(refused) => refused,
    }
}

/// `GET /outbox` (herald-local only, admin): the email and SMS the embedded backend kept.
async fn outbox(axum::extract::State(app): axum::extract::State<Arc<App>>, headers: axum::http::HeaderMap) -> axum::response::Response {
    let authorization = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match app.handlers.outbox(authorization).await {
        Ok(Some(body)) => axum::Json(body).into_response(),
        Ok(None) => json_error(
            axum::http::StatusCode::NOT_FOUND,
            "not_found",
            "GET /outbox is the embedded backend's: --backend aws sends email through SES and SMS through SNS".into(),
        ),
        Err(e) => json_error(
            axum::http::StatusCode::from_u16(e.status()).unwrap_or(axum::http::StatusCode::UNAUTHORIZED),
            e.code(),
            e.to_string(),
        ),
    }
}

/// An HTTP API request as the Lambda runtime hands it to a function; a body API Gateway would
/// not take (over its payload limit here) is refused before any function runs.
async fn lambda_request(request: axum::extract::Request) -> Result<lambda_http::Request, axum::response::Response> {
    let (parts, body) = request.into_parts();
    let bytes = match axum::body::to_bytes(body, herald::protocol::MAX_MESSAGE_BYTES * 2).await {
        Ok(b) => b,
        Err(_) => return Err(json_error(axum::http::StatusCode::BAD_REQUEST, "bad_request", "the body is over 128 KB".into())),
    };
    Ok(lambda_http::Request::from_parts(parts, lambda_http::Body::from(bytes.to_vec())))
}

/// A function's response, as API Gateway returns it.
fn axum_response(response: lambda_http::Response<lambda_http::Body>) -> axum::response::Response {
    let (parts, body) = response.into_parts();
    axum::response::Response::from_parts(parts, axum::body::Body::from(body.to_vec()))
}
