//! `herald-local`: API Gateway WebSockets, the management API and the event sources on one
//! machine, calling the very handlers that are deployed to Lambda (CONTRACT §2).

pub mod functions;
mod management;
pub mod registry;
mod ws;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use herald::auth::{AuthConfig, Verifier};
use herald::config::{ConfigError, DeliveryConfig};
use herald::store::Store;
use herald::store::dynamodb::DynamoStore;
use herald::store::memory::MemoryStore;
use herald::store::tables::TableNames;
use tokio::net::TcpListener;

use crate::functions::{Handlers, LocalTimer};
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
    /// API Gateway's new-connection quota per second (off when `None`).
    pub connect_rate: Option<u32>,
    /// With the aws backend: this SDK configuration instead of the environment's (tests).
    pub sdk: Option<aws_config::SdkConfig>,
}

impl Options {
    /// Options from the environment (`HERALD_*`), with the embedded backend on 127.0.0.1:3001.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&herald::config::env)
    }

    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let with_dev_secret = |k: &str| match k {
            "HERALD_JWT_SECRET" if get("HERALD_JWT_PUBLIC_KEY").is_none() && get("HERALD_JWKS_URL").is_none() => {
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
            connect_rate: None,
            sdk: None,
        })
    }
}

/// The server's shared state.
pub struct App {
    pub handlers: Arc<Handlers>,
    pub registry: Arc<Registry>,
    pub stage: String,
    pub domain: String,
    pub idle_timeout: Duration,
    connect_limiter: Option<RateLimiter>,
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
    #[error("could not bind {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("could not create the tables: {0}")]
    Resources(#[from] herald::store::StoreError),
}

/// A running server.
pub struct Server {
    pub addr: SocketAddr,
    pub app: Arc<App>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
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
    }
}

/// Builds the store for the backend.
async fn store(options: &Options) -> Result<Arc<dyn Store>, StartError> {
    Ok(match options.backend {
        Backend::Embedded => Arc::new(MemoryStore::new()),
        Backend::Aws => {
            let sdk = match &options.sdk {
                Some(sdk) => sdk.clone(),
                None => herald::runtime::sdk_config().await,
            };
            let store = DynamoStore::new(aws_sdk_dynamodb::Client::new(&sdk), options.tables.clone());
            if options.create_resources {
                store.create_tables().await?;
            }
            Arc::new(store)
        }
    })
}

/// Starts serving; port 0 picks a free port.
pub async fn start(options: Options) -> Result<Server, StartError> {
    let verifier = Verifier::new(&options.auth)?;
    let store = store(&options).await?;
    let registry = Arc::new(Registry::default());
    let handlers = Arc::new_cyclic(|weak| Handlers {
        store,
        gateway: LocalGateway(registry.clone()),
        verifier,
        settings: options.delivery.clone(),
        timer: Arc::new(LocalTimer::new(weak.clone())),
    });
    let addr = format!("{}:{}", options.host, options.port);
    let listener = TcpListener::bind(&addr).await.map_err(|source| StartError::Bind { addr: addr.clone(), source })?;
    let local = listener.local_addr().map_err(|source| StartError::Bind { addr, source })?;
    let app = Arc::new(App {
        handlers,
        registry,
        stage: options.stage.clone(),
        domain: local.to_string(),
        idle_timeout: options.idle_timeout,
        connect_limiter: options.connect_rate.map(|r| RateLimiter { per_second: u64::from(r), window: AtomicU64::new(0) }),
    });
    let router = Router::new()
        .route("/health", get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }))
        .route("/api/v1/notify/ws", get(ws::notify_upgrade))
        .route("/ws", get(ws::chat_upgrade))
        .route("/@connections/{id}", axum::routing::post(management::post).get(management::get).delete(management::delete))
        .route(
            "/{stage}/@connections/{id}",
            axum::routing::post(management::post_staged).get(management::get_staged).delete(management::delete_staged),
        )
        .with_state(app.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>()).with_graceful_shutdown(async move {
            let _ = rx.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "server failed");
        }
    });
    Ok(Server { addr: local, app, shutdown: Some(tx), task })
}
