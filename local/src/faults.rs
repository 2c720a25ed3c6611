//! Fault injection (CONTRACT §4, "Fault injection"): `--faults <spec>` / `HERALD_FAULTS`, a
//! comma-separated list of `name=rate` (rate from 0 to 1), `--faults-seed <n>` /
//! `HERALD_FAULTS_SEED` for a repeatable run. Each fault is injected where the real one happens:
//!
//! - `post_throttle`, `post_error`, `post_timeout`, `post_gone`: in the management API, both the
//!   in-process one the handlers call ([`FaultyGateway`]) and the HTTP `POST /@connections/{id}`
//!   the AWS SDK calls (`management.rs`, through [`Faults::post_fault`]). They answer as API
//!   Gateway would — 429, 500, no answer within `HERALD_POST_TIMEOUT_MS`, 410 — and send nothing;
//!   a 410 also drops the connection, as API Gateway has when it answers 410.
//! - `store_throttle`: beneath the store adapter's retries ([`herald::store::faults`]): the
//!   memory store through [`ThrottlingStore`], DynamoDB through [`ThrottlingHttpClient`], both
//!   asking [`Faults`] (a [`StoreFaults`]) before each try.
//! - `consumer_crash`: a `dispatch` or delivery worker invocation dies at a random point
//!   ([`Faults::consumer`]): the invocation's future is dropped at a randomly chosen one of its
//!   operations (management API calls, store requests, queue sends, counted per invocation by a
//!   task-local counter), or after its last one before it reports; its whole batch counts as
//!   failed and comes back after the visibility timeout.
//!
//! `GET /health` reports what was injected: `"faults":{"<name>":<count>,…}`.
//!
//! [`ThrottlingStore`]: herald::store::faults::ThrottlingStore
//! [`ThrottlingHttpClient`]: herald::store::faults::ThrottlingHttpClient

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::sqs::SqsEvent;
use herald::gateway::{ConnectionInfo, Frame, Gateway, GatewayError};
use herald::queue::{Queue, QueueError};
use herald::store::faults::StoreFaults;
use tokio::sync::Notify;

use crate::registry::LocalGateway;

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    PostThrottle,
    PostError,
    PostTimeout,
    PostGone,
    StoreThrottle,
    ConsumerCrash,
    /// A connection ends without its `$disconnect` (API Gateway's is best effort): its record
    /// stays until its TTL, as a vanished client's does (presence must not count it).
    DisconnectLost,
}

impl Fault {
    pub const ALL: [Fault; 7] = [
        Self::PostThrottle,
        Self::PostError,
        Self::PostTimeout,
        Self::PostGone,
        Self::StoreThrottle,
        Self::ConsumerCrash,
        Self::DisconnectLost,
    ];

    /// The name in a spec and in `GET /health`.
    pub fn name(self) -> &'static str {
        match self {
            Self::PostThrottle => "post_throttle",
            Self::PostError => "post_error",
            Self::PostTimeout => "post_timeout",
            Self::PostGone => "post_gone",
            Self::StoreThrottle => "store_throttle",
            Self::ConsumerCrash => "consumer_crash",
            Self::DisconnectLost => "disconnect_lost",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// What is wrong with a fault spec (each message is one sentence, to follow the variable or flag
/// it came from).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultSpecError {
    #[error("{0:?} is not name=rate (e.g. post_throttle=0.05)")]
    Malformed(String),
    #[error(
        "unknown fault {0:?}; the faults are post_throttle, post_error, post_timeout, post_gone, store_throttle, consumer_crash and disconnect_lost"
    )]
    Unknown(String),
    #[error("the rate of {name} must be a number from 0 to 1, not {rate:?}")]
    BadRate { name: &'static str, rate: String },
    #[error("{0} is given twice")]
    Repeated(&'static str),
}

/// Which faults, at which rates: `post_throttle=0.05,store_throttle=0.02`. Empty: none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultSpec {
    rates: Vec<(Fault, f64)>,
}

impl FaultSpec {
    pub fn is_empty(&self) -> bool {
        self.rates.is_empty()
    }

    /// The rate of a fault (0 when not given).
    pub fn rate(&self, fault: Fault) -> f64 {
        self.rates.iter().find(|(f, _)| *f == fault).map_or(0.0, |(_, r)| *r)
    }

    /// The faults given, in the spec's order.
    pub fn faults(&self) -> impl Iterator<Item = Fault> + '_ {
        self.rates.iter().map(|(f, _)| *f)
    }

    /// The spec from a lookup of `HERALD_FAULTS`.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, herald::config::ConfigError> {
        match get("HERALD_FAULTS") {
            None => Ok(Self::default()),
            Some(spec) => spec
                .parse()
                .map_err(|e: FaultSpecError| herald::config::ConfigError::Invalid { var: "HERALD_FAULTS", reason: e.to_string() }),
        }
    }
}

impl FromStr for FaultSpec {
    type Err = FaultSpecError;

    fn from_str(spec: &str) -> Result<Self, Self::Err> {
        let mut rates: Vec<(Fault, f64)> = Vec::new();
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, rate) = part.split_once('=').ok_or_else(|| FaultSpecError::Malformed(part.to_string()))?;
            let (name, rate) = (name.trim(), rate.trim());
            let fault = Fault::ALL.into_iter().find(|f| f.name() == name).ok_or_else(|| FaultSpecError::Unknown(name.to_string()))?;
            let value: f64 = rate
                .parse()
                .ok()
                .filter(|r: &f64| (0.0..=1.0).contains(r))
                .ok_or_else(|| FaultSpecError::BadRate { name: fault.name(), rate: rate.to_string() })?;
            if rates.iter().any(|(f, _)| *f == fault) {
                return Err(FaultSpecError::Repeated(fault.name()));
            }
            rates.push((fault, value));
        }
        Ok(Self { rates })
    }
}

impl fmt::Display for FaultSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.rates.iter().map(|(fault, rate)| format!("{}={rate}", fault.name())).collect();
        f.write_str(&parts.join(","))
    }
}

/// What an injected management API fault does to a post.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostFault {
    /// 429, nothing sent.
    Throttle,
    /// 500, nothing sent.
    Error,
    /// No answer within the post timeout, nothing sent.
    Timeout,
    /// 410: the connection is dropped.
    Gone,
}

/// SplitMix64 (Steele, Lea, Flood 2014) over an atomic counter: a small seeded generator whose
/// draws are one sequence whatever the thread, so a run with the same seed draws the same numbers.
#[derive(Debug)]
struct SplitMix64(AtomicU64);

impl SplitMix64 {
    const GAMMA: u64 = 0x9e37_79b9_7f4a_7c15;

    fn next_u64(&self) -> u64 {
        let mut z = self.0.fetch_add(Self::GAMMA, Ordering::Relaxed).wrapping_add(Self::GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..1`.
    fn next_f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The faults of one herald-local: what to inject, the generator, and the counts.
#[derive(Debug)]
pub struct Faults {
    spec: FaultSpec,
    seed: u64,
    rng: SplitMix64,
    counts: [AtomicU64; Fault::ALL.len()],
    post_timeout: Duration,
}

/// How much longer than the post timeout the HTTP management API holds a `post_timeout` before
/// it answers 504, so that a caller whose timeout is the post timeout sees its own timeout.
pub const HTTP_TIMEOUT_MARGIN: Duration = Duration::from_secs(1);

/// The largest crash point drawn for `consumer_crash`: points are log-uniform in `0..1024`
/// operations, so that short invocations (a direct push: a handful of operations) and long ones
/// (a batch of 200 connections) both die mid-work.
const CRASH_POINTS: f64 = 1024.0;

impl Faults {
    /// `seed`: `None` picks one (logged, so that the run can be repeated).
    pub fn new(spec: FaultSpec, seed: Option<u64>, post_timeout: Duration) -> Self {
        let seed = seed.unwrap_or_else(|| {
            let bytes = uuid::Uuid::new_v4().into_bytes();
            u64::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], bytes[5], bytes[6], bytes[7]])
        });
        if !spec.is_empty() {
            tracing::info!(faults = %spec, seed, "fault injection on (repeat with --faults-seed {seed})");
        }
        Self { spec, seed, rng: SplitMix64(AtomicU64::new(seed)), counts: Default::default(), post_timeout }
    }

    /// No faults.
    pub fn none() -> Self {
        Self::new(FaultSpec::default(), Some(0), herald::gateway::DEFAULT_POST_TIMEOUT)
    }

    pub fn spec(&self) -> &FaultSpec {
        &self.spec
    }

    pub fn seed(&self) -> u64 {
        self.seed
    }

    /// How long a `post_timeout` keeps the caller waiting (`HERALD_POST_TIMEOUT_MS`).
    pub fn post_timeout(&self) -> Duration {
        self.post_timeout
    }

    /// Whether a fault is given with a rate above 0.
    pub fn injects(&self, fault: Fault) -> bool {
        self.spec.rate(fault) > 0.0
    }

    /// Whether a post may meet an injected fault: a `post_*` one, or `consumer_crash` (a post is
    /// an operation a crashing invocation may die at).
    pub fn touches_posts(&self) -> bool {
        [Fault::PostThrottle, Fault::PostError, Fault::PostTimeout, Fault::PostGone, Fault::ConsumerCrash]
            .into_iter()
            .any(|f| self.injects(f))
    }

    /// Faults injected so far.
    pub fn count(&self, fault: Fault) -> u64 {
        self.counts[fault.index()].load(Ordering::Relaxed)
    }

    /// For `GET /health`: each fault of the spec and how often it was injected.
    pub fn counts(&self) -> serde_json::Map<String, serde_json::Value> {
        self.spec.faults().map(|f| (f.name().to_string(), self.count(f).into())).collect()
    }

    fn record(&self, fault: Fault) {
        self.counts[fault.index()].fetch_add(1, Ordering::Relaxed);
    }

    /// Draws whether `fault` happens now, and counts it if so.
    fn roll(&self, fault: Fault) -> bool {
        let rate = self.spec.rate(fault);
        let hit = rate > 0.0 && (rate >= 1.0 || self.rng.next_f64() < rate);
        if hit {
            self.record(fault);
        }
        hit
    }

    /// Whether this connection's `$disconnect` is lost (`disconnect_lost`). Counted.
    pub fn disconnect_lost(&self) -> bool {
        self.roll(Fault::DisconnectLost)
    }

    /// Draws what happens to one management API post: one draw against the post faults' rates
    /// laid end to end, so each happens at its own rate. Counted.
    pub fn post_fault(&self) -> Option<PostFault> {
        let kinds = [
            (Fault::PostThrottle, PostFault::Throttle),
            (Fault::PostError, PostFault::Error),
            (Fault::PostTimeout, PostFault::Timeout),
            (Fault::PostGone, PostFault::Gone),
        ];
        if kinds.iter().all(|(f, _)| !self.injects(*f)) {
            return None;
        }
        let draw = self.rng.next_f64();
        let mut edge = 0.0;
        for (fault, what) in kinds {
            edge += self.spec.rate(fault);
            if draw < edge {
                self.record(fault);
                return Some(what);
            }
        }
        None
    }

    /// Whether anything must count operations or throttle the store.
    pub fn touches_store(&self) -> bool {
        self.injects(Fault::StoreThrottle) || self.injects(Fault::ConsumerCrash)
    }

    /// A queue consumer (the event source mapping's invocation of `dispatch` or a delivery
    /// worker) with `consumer_crash`: a crashing invocation's batch is reported failed as a whole,
    /// as Lambda treats an invocation that died. Without `consumer_crash`, `consume` itself.
    pub fn consumer<F>(self: &Arc<Self>, consume: F) -> impl Fn(SqsEvent) -> BoxedIds + Clone + Send + Sync + 'static
    where
        F: Fn(SqsEvent) -> BoxedIds + Clone + Send + Sync + 'static,
    {
        let faults = self.clone();
        move |event| {
            let (faults, consume) = (faults.clone(), consume.clone());
            Box::pin(async move { faults.invoke(event, consume).await })
        }
    }

    async fn invoke<F>(&self, event: SqsEvent, consume: F) -> Vec<String>
    where
        F: Fn(SqsEvent) -> BoxedIds,
    {
        if !self.injects(Fault::ConsumerCrash) || !self.roll(Fault::ConsumerCrash) {
            return consume(event).await;
        }
        let ids: Vec<String> = event.records.iter().filter_map(|r| r.message_id.clone()).collect();
        // Log-uniform in 0..CRASH_POINTS.
        let at = (CRASH_POINTS.powf(self.rng.next_f64()) - 1.0) as u32;
        let invocation =
            Arc::new(Invocation { ops: AtomicU32::new(0), crash_at: at, crashed: AtomicBool::new(false), died: Notify::new() });
        let run = INVOCATION.scope(invocation.clone(), consume(event));
        tokio::select! {
            _ = run => {}
            () = invocation.died.notified() => {}
        }
        let ops = invocation.ops.load(Ordering::Relaxed);
        if invocation.crashed.load(Ordering::Relaxed) {
            tracing::warn!(
                records = ids.len(),
                at_op = at,
                "consumer_crash: the invocation died mid-work; its batch comes back after the visibility timeout"
            );
        } else {
            tracing::warn!(
                records = ids.len(),
                ops,
                "consumer_crash: the invocation died before reporting; its batch comes back after the visibility timeout"
            );
        }
        ids
    }
}

/// A consumer invocation's result: the ids of the records that failed.
pub type BoxedIds = std::pin::Pin<Box<dyn std::future::Future<Output = Vec<String>> + Send>>;

/// A crashing invocation: its operations so far, and the one it dies at.
struct Invocation {
    ops: AtomicU32,
    crash_at: u32,
    crashed: AtomicBool,
    died: Notify,
}

tokio::task_local! {
    static INVOCATION: Arc<Invocation>;
}

/// One operation of the running invocation (a management API call, a store request, a queue
/// send): where a crashing invocation may die. Once it has, every operation of it waits forever
/// until the invocation is dropped. Outside a crashing invocation, nothing.
pub async fn operation() {
    let Ok(invocation) = INVOCATION.try_with(Arc::clone) else { return };
    let n = invocation.ops.fetch_add(1, Ordering::Relaxed);
    if n == invocation.crash_at {
        invocation.crashed.store(true, Ordering::Relaxed);
        invocation.died.notify_one();
    }
    if invocation.crashed.load(Ordering::Relaxed) {
        std::future::pending::<()>().await;
    }
}

#[async_trait]
impl StoreFaults for Faults {
    async fn throttle(&self) -> bool {
        operation().await;
        self.roll(Fault::StoreThrottle)
    }
}

/// An injected failure's source, for [`GatewayError::Other`].
#[derive(Debug, thiserror::Error)]
#[error("500 Internal Server Error (injected by herald-local's post_error)")]
pub struct InjectedServerError;

/// The management API the handlers call in this process: [`LocalGateway`] with the `post_*`
/// faults, answering with the errors the SDK gateway gives for the same HTTP answers.
#[derive(Debug, Clone)]
pub struct FaultyGateway {
    inner: LocalGateway,
    faults: Arc<Faults>,
}

impl FaultyGateway {
    pub fn new(inner: LocalGateway, faults: Arc<Faults>) -> Self {
        Self { inner, faults }
    }

    pub fn local(&self) -> &LocalGateway {
        &self.inner
    }
}

/// API Gateway's answer of 410 is for a connection it no longer has: drop it (its client sees
/// the close and `$disconnect` runs), so every later call answers 410 too.
pub fn drop_gone(gateway: &LocalGateway, connection_id: &str) {
    let _ = gateway.0.close(connection_id, 1001, "");
    gateway.0.remove(connection_id);
    tracing::info!(connection_id, "post_gone: the connection is gone");
}

#[async_trait]
impl Gateway for FaultyGateway {
    async fn post(&self, connection_id: &str, frame: &Frame) -> Result<(), GatewayError> {
        operation().await;
        match self.faults.post_fault() {
            None => self.inner.post(connection_id, frame).await,
            Some(PostFault::Throttle) => Err(GatewayError::Throttled),
            Some(PostFault::Error) => Err(GatewayError::Other(Box::new(InjectedServerError))),
            Some(PostFault::Timeout) => {
                tokio::time::sleep(self.faults.post_timeout).await;
                Err(GatewayError::Timeout)
            }
            Some(PostFault::Gone) => {
                drop_gone(&self.inner, connection_id);
                Err(GatewayError::Gone(connection_id.to_string()))
            }
        }
    }

    /// At once only with no post fault nor `consumer_crash` to inject (a crashing invocation
    /// may die at any post: [`operation`]); otherwise `None`, and the post goes through `post`.
    fn post_now(&self, connection_id: &str, frame: &Frame) -> Option<Result<(), GatewayError>> {
        if self.faults.touches_posts() {
            return None;
        }
        self.inner.post_now(connection_id, frame)
    }

    async fn describe(&self, connection_id: &str) -> Result<ConnectionInfo, GatewayError> {
        operation().await;
        self.inner.describe(connection_id).await
    }

    async fn close(&self, connection_id: &str) -> Result<(), GatewayError> {
        operation().await;
        self.inner.close(connection_id).await
    }
}

/// A queue whose sends are operations of the running invocation (for `consumer_crash`).
pub struct CountedQueue(pub Arc<dyn Queue>);

#[async_trait]
impl Queue for CountedQueue {
    async fn send(&self, body: &str) -> Result<String, QueueError> {
        operation().await;
        self.0.send(body).await
    }

    async fn send_message(&self, message: Arc<dyn herald::queue::QueueMessage>) -> Result<String, QueueError> {
        operation().await;
        self.0.send_message(message).await
    }
}

/// The HTTPS client the AWS SDK builds by default (rustls with aws-lc), for the DynamoDB client
/// when [`herald::store::faults::ThrottlingHttpClient`] wraps it and the SDK configuration names
/// none.
pub fn default_http_client() -> aws_sdk_dynamodb::config::SharedHttpClient {
    use aws_smithy_http_client::tls;
    aws_smithy_http_client::Builder::new().tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc)).build_https()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_spec_is_comma_separated_name_equals_rate() {
        let spec: FaultSpec = " post_throttle=0.05, store_throttle=0.2,consumer_crash=1 ".parse().unwrap();
        assert_eq!(spec.rate(Fault::PostThrottle), 0.05);
        assert_eq!(spec.rate(Fault::StoreThrottle), 0.2);
        assert_eq!(spec.rate(Fault::ConsumerCrash), 1.0);
        assert_eq!(spec.rate(Fault::PostGone), 0.0);
        assert_eq!(spec.to_string(), "post_throttle=0.05,store_throttle=0.2,consumer_crash=1");
        assert!("".parse::<FaultSpec>().unwrap().is_empty());
    }

    #[test]
    fn bad_specs_say_what_is_wrong() {
        let err = |s: &str| s.parse::<FaultSpec>().unwrap_err().to_string();
        assert!(err("post_thottle=0.1").contains("unknown fault \"post_thottle\""), "{}", err("post_thottle=0.1"));
        assert!(err("post_error=1.5").contains("post_error must be a number from 0 to 1"), "{}", err("post_error=1.5"));
        assert!(err("post_error=-0.1").contains("not \"-0.1\""));
        assert!(err("post_error=NaN").contains("from 0 to 1"));
        assert!(err("post_error").contains("is not name=rate"));
        assert!(err("post_error=0.1,post_error=0.2").contains("given twice"));
    }

    #[test]
    fn the_variable_is_named_when_it_is_bad() {
        let err = FaultSpec::from_lookup(&|k| (k == "HERALD_FAULTS").then(|| "bogus=1".to_string())).unwrap_err().to_string();
        assert!(err.contains("HERALD_FAULTS") && err.contains("unknown fault \"bogus\""), "{err}");
    }

    #[test]
    fn the_same_seed_draws_the_same_faults() {
        let draws = |seed| {
            let f = Faults::new("post_throttle=0.3,post_gone=0.1".parse().unwrap(), Some(seed), Duration::ZERO);
            (0..200).map(|_| f.post_fault()).collect::<Vec<_>>()
        };
        assert_eq!(draws(7), draws(7));
        assert_ne!(draws(7), draws(8));
    }

    #[test]
    fn faults_happen_at_their_rates_and_are_counted() {
        let f = Faults::new("post_throttle=0.2,post_error=0.1,store_throttle=0.5".parse().unwrap(), Some(1), Duration::ZERO);
        let posts: Vec<_> = (0..10_000).map(|_| f.post_fault()).collect();
        let throttled = posts.iter().filter(|p| **p == Some(PostFault::Throttle)).count();
        let errors = posts.iter().filter(|p| **p == Some(PostFault::Error)).count();
        assert!((1800..2200).contains(&throttled), "{throttled}");
        assert!((850..1150).contains(&errors), "{errors}");
        assert!(!posts.contains(&Some(PostFault::Gone)) && !posts.contains(&Some(PostFault::Timeout)));
        assert_eq!(f.count(Fault::PostThrottle), throttled as u64);
        assert_eq!(f.count(Fault::PostError), errors as u64);
        let counts = f.counts();
        let mut names: Vec<&String> = counts.keys().collect();
        names.sort();
        assert_eq!(names, ["post_error", "post_throttle", "store_throttle"]);
        assert_eq!(counts["store_throttle"], 0);
    }

    #[tokio::test]
    async fn no_faults_inject_nothing() {
        let f = Faults::none();
        assert!((0..1000).all(|_| f.post_fault().is_none()));
        assert!(!f.throttle().await);
        assert!(f.counts().is_empty());
    }

    fn event(ids: &[&str]) -> SqsEvent {
        let mut e = SqsEvent::default();
        e.records = ids
            .iter()
            .map(|id| {
                let mut r = aws_lambda_events::sqs::SqsMessage::default();
                r.message_id = Some(id.to_string());
                r
            })
            .collect();
        e
    }

    #[tokio::test]
    async fn a_crashing_invocation_dies_at_an_operation_and_fails_its_whole_batch() {
        let faults = Arc::new(Faults::new("consumer_crash=1".parse().unwrap(), Some(3), Duration::ZERO));
        let done = Arc::new(AtomicU32::new(0));
        let counter = done.clone();
        // Each invocation does 2000 operations, more than any crash point: every one dies midway.
        let consume = faults.consumer(move |_event| {
            let done = counter.clone();
            Box::pin(async move {
                for _ in 0..2000 {
                    operation().await;
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Vec::new()
            }) as BoxedIds
        });
        for _ in 0..5 {
            let before = done.load(Ordering::Relaxed);
            let failed = consume(event(&["m1", "m2"])).await;
            assert_eq!(failed, ["m1", "m2"], "nothing of a crashed batch is reported done");
            assert!(done.load(Ordering::Relaxed) - before < 1024, "it died before its 1024th operation");
        }
        assert_eq!(faults.count(Fault::ConsumerCrash), 5);
        // Outside an invocation, operations never wait.
        operation().await;
    }

    #[tokio::test]
    async fn without_consumer_crash_a_consumer_reports_what_it_reports() {
        let faults = Arc::new(Faults::new("post_error=0.5".parse().unwrap(), Some(3), Duration::ZERO));
        let consume = faults.consumer(|_event| Box::pin(async { vec!["m2".to_string()] }) as BoxedIds);
        assert_eq!(consume(event(&["m1", "m2"])).await, ["m2"]);
    }
}
