//! What the benchmarks share: herald-local in this process, tokens, WebSocket clients,
//! percentiles and the printed figures.

use std::time::{Duration, Instant};

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::config::Credentials;
use futures::{SinkExt, StreamExt};
use herald::auth::{AuthConfig, issue_hs256};
use herald::store::tables::TableNames;
use herald_local::{Backend, Options, Server};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::BenchBackend;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;
pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// The HS256 secret of every benchmark's herald-local.
pub const SECRET: &str = "herald-bench-secret";
/// The variable naming DynamoDB Local's endpoint (set by `scripts/services.sh`).
pub const DYNAMODB_VAR: &str = "HERALD_TEST_DYNAMODB_ENDPOINT";
/// The variable naming moto's server (SQS for herald-local's aws backend; set by `scripts/services.sh`).
pub const MOTO_VAR: &str = "HERALD_TEST_MOTO_ENDPOINT";
/// The event every fan-out subscribes to.
pub const EVENT: &str = "bench:fanout";

/// Two workers: the machine's cores.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Raises the soft open-files limit to the hard one (thousands of sockets on both ends).
pub fn raise_fd_limit() -> std::io::Result<libc::rlim_t> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain syscalls on a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
    }
    Ok(limit.rlim_cur)
}

/// This OS thread's CPU time (CLOCK_THREAD_CPUTIME_ID).
pub fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes into the local struct.
    unsafe {
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts);
    }
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// This process's CPU time, user and system, every thread (getrusage).
pub fn process_cpu_time() -> Duration {
    // SAFETY: getrusage writes into the zeroed local struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe {
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
    }
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, (t.tv_usec as u32) * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

/// The kernel's count of connections dropped because a listen queue was full
/// (`TcpExt: ListenOverflows` in /proc/net/netstat; machine-wide).
pub fn listen_overflows() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/net/netstat").ok()?;
    let mut lines = text.lines().filter(|l| l.starts_with("TcpExt:"));
    let (names, values) = (lines.next()?, lines.next()?);
    let at = names.split_whitespace().position(|n| n == "ListenOverflows")?;
    values.split_whitespace().nth(at)?.parse().ok()
}

/// A token signed with [`SECRET`], valid for an hour.
pub fn token(mut claims: Value) -> Result<String> {
    claims["exp"] = json!(time::OffsetDateTime::now_utc().unix_timestamp() + 3600);
    Ok(issue_hs256(SECRET, &claims)?)
}

pub fn user_token(user: &str) -> Result<String> {
    token(json!({ "sub": user }))
}

pub fn publisher_token() -> Result<String> {
    token(json!({ "sub": "bench-publisher", "scope": "notify:publish" }))
}

/// DynamoDB Local's endpoint, or how to get one.
pub fn dynamodb_endpoint() -> Result<String> {
    match std::env::var(DYNAMODB_VAR) {
        Ok(e) if !e.trim().is_empty() => Ok(e),
        _ => Err(format!(
            "{DYNAMODB_VAR} is not set: this benchmark needs DynamoDB Local. Run `./scripts/bench` (it starts it), \
             or start DynamoDB Local and set {DYNAMODB_VAR}=http://127.0.0.1:PORT"
        )
        .into()),
    }
}

/// SDK settings for DynamoDB Local: static test credentials, us-east-1.
pub async fn dynamodb_sdk_config() -> Result<SdkConfig> {
    Ok(local_sdk_config(&dynamodb_endpoint()?).await)
}

/// SDK settings for moto's server (SQS).
pub async fn moto_sdk_config() -> Result<SdkConfig> {
    let endpoint = match std::env::var(MOTO_VAR) {
        Ok(e) if !e.trim().is_empty() => e,
        _ => {
            return Err(format!(
                "{MOTO_VAR} is not set: herald-local's aws backend needs SQS (moto's server). Run `./scripts/bench` (it starts it)"
            )
            .into());
        }
    };
    Ok(local_sdk_config(&endpoint).await)
}

async fn local_sdk_config(endpoint: &str) -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .load()
        .await
}

/// A fresh table prefix per run.
pub fn unique_prefix() -> String {
    format!("bench{}-", uuid::Uuid::new_v4().simple())
}

/// herald-local in this process on a free port of 127.0.0.1.
pub async fn start_server(backend: BenchBackend) -> Result<Server> {
    start_server_with(backend, |_| {}).await
}

/// [`start_server`] with adjusted options (faults, timeouts).
pub async fn start_server_with(backend: BenchBackend, adjust: impl FnOnce(&mut Options)) -> Result<Server> {
    let mut options = Options::from_lookup(&|_| None)?;
    options.host = "127.0.0.1".into();
    options.port = 0;
    options.auth = AuthConfig::hs256(SECRET);
    if backend == BenchBackend::Dynamodb {
        options.backend = Backend::Aws;
        options.create_resources = true;
        options.tables = TableNames::with_prefix(&unique_prefix());
        options.sdk = Some(dynamodb_sdk_config().await?);
        options.messaging_sdk = Some(moto_sdk_config().await?);
        options.queue_name = format!("bench{}", uuid::Uuid::new_v4().simple());
        options.fanout_queue_name = format!("{}-fanout", options.queue_name);
        options.platform_queue_name = format!("{}-platform", options.queue_name);
    }
    adjust(&mut options);
    Ok(herald_local::start(options).await?)
}

/// The read buffer of the fan-out's clients. tungstenite (0.29) zero-fills its whole read buffer
/// before every read, WouldBlock included: with the default 128 KiB, 2,000 clients spent more
/// CPU on memset than the server they measure spent on its work (a 128 KiB memset per wake-up,
/// two per frame when frames arrive one at a time). herald-local reads with 4 KiB too.
pub const CLIENT_READ_BUFFER: usize = 4 * 1024;

/// Opens a WebSocket with a timeout.
pub async fn connect(url: &str, wait: Duration) -> Result<Ws> {
    connect_with(url, wait, None).await
}

/// [`connect`] with tungstenite's settings.
pub async fn connect_with(url: &str, wait: Duration, config: Option<WebSocketConfig>) -> Result<Ws> {
    match tokio::time::timeout(wait, tokio_tungstenite::connect_async_with_config(url, config, false)).await {
        Ok(Ok((ws, _))) => Ok(ws),
        Ok(Err(e)) => Err(format!("handshake failed: {e}").into()),
        Err(_) => Err(format!("handshake timed out after {wait:?}").into()),
    }
}

/// The next text frame, skipping pings and pongs.
pub async fn next_text(ws: &mut Ws, wait: Duration) -> Result<String> {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => return Ok(t.to_string()),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(other))) => return Err(format!("unexpected frame {other:?}").into()),
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) => return Err("the connection closed".into()),
            Err(_) => return Err("no frame in time".into()),
        }
    }
}

/// Connects to the notification API as `user` and subscribes to `event`.
pub async fn subscribed_client(server_ws: &str, token: &str, event: &str) -> Result<Ws> {
    let config = WebSocketConfig::default().read_buffer_size(CLIENT_READ_BUFFER);
    let mut ws = connect_with(&format!("{server_ws}/api/v1/notify/ws?token={token}"), Duration::from_secs(30), Some(config)).await?;
    ws.send(Message::Text(json!({"type": "subscribe", "event_name": event}).to_string().into())).await?;
    let reply: Value = serde_json::from_str(&next_text(&mut ws, Duration::from_secs(30)).await?)?;
    if reply["type"] != "subscribed" {
        return Err(format!("subscribe answered {reply}").into());
    }
    Ok(ws)
}

/// Opens `n` subscribed clients, `concurrency` handshakes at a time.
pub async fn subscribed_clients(server: &Server, n: usize, event: &str, concurrency: usize) -> Result<Vec<Ws>> {
    subscribed_clients_at(&server.ws_url(""), n, event, concurrency).await
}

/// [`subscribed_clients`] to any server at `base` (`ws://host:port`) that speaks the notification
/// API's handshake and `subscribe` frame (herald-local, or the fan-out's minimal server).
pub async fn subscribed_clients_at(base: &str, n: usize, event: &str, concurrency: usize) -> Result<Vec<Ws>> {
    let base = base.to_string();
    let tokens = (0..n).map(|i| user_token(&format!("fan{i}"))).collect::<Result<Vec<_>>>()?;
    let base = &base;
    run_all(tokens.into_iter().map(|t| async move { subscribed_client(base, &t, event).await }), concurrency).await
}

/// Runs every task, `at_once` at a time; their results in the order they finished, or the first
/// error.
pub async fn run_all<T, E: Into<Error>>(
    tasks: impl IntoIterator<Item = impl std::future::Future<Output = std::result::Result<T, E>>>,
    at_once: usize,
) -> Result<Vec<T>> {
    let results: Vec<std::result::Result<T, E>> = futures::stream::iter(tasks).buffer_unordered(at_once.max(1)).collect().await;
    results.into_iter().map(|r| r.map_err(Into::into)).collect()
}

/// Closes every client and waits (bounded) for their ends.
pub async fn close_all(clients: Vec<Ws>) {
    let closing = clients.into_iter().map(|mut ws| async move {
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            let _ = ws.close(None).await;
            while let Some(Ok(_)) = ws.next().await {}
        })
        .await;
    });
    futures::stream::iter(closing).buffer_unordered(500).collect::<Vec<()>>().await;
}

/// Waits until herald-local holds no live connection (bounded).
pub async fn wait_drained(server: &Server, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    while Instant::now() < deadline {
        if server.app.registry.is_empty() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    server.app.registry.is_empty()
}

/// Percentiles of a set of durations (nearest rank).
pub struct Percentiles(Vec<Duration>);

impl Percentiles {
    pub fn new(mut samples: Vec<Duration>) -> Self {
        samples.sort_unstable();
        Self(samples)
    }

    pub fn at(&self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
        self.0[rank - 1]
    }

    pub fn max(&self) -> Duration {
        self.0.last().copied().unwrap_or_default()
    }
}

pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// One figure: `name: value unit`.
pub fn figure(name: &str, value: impl std::fmt::Display, unit: &str) {
    println!("{name}: {value} {unit}");
}
