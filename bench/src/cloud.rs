//! `fanout-cloud`: one event with 100,000 subscribers through the cloud's split fan-out — the
//! coordinator (`dispatch`) reading the subscribers and handing out delivery batches, then
//! `--workers` delivery workers (`herald-deliver`) at once, each posting 64 at a time — with the
//! management API stood in by a gateway that answers every post after `--rtt-ms` (API
//! Gateway's round trip from Lambda). It counts what every connection received (lost and
//! duplicates must be 0), the time to deliver all, the slowest batch (against a worker's
//! timeout), and prints the model of the same on AWS for 1M and 10M connections.
//!
//! Left out, and said so in the output: the store is in memory (no DynamoDB latency), the
//! fan-out queue is in-process (no SQS receive latency or visibility timeouts), no TLS, no
//! Lambda cold starts, and no real WebSocket connections (the stand-in counts the posts).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use futures::StreamExt;
use herald::config::DeliveryConfig;
use herald::delivery::{RedeliveryCheck, RedeliveryTimer};
use herald::domain::{Api, Connection, Push, Subscription, now, rfc3339};
use herald::gateway::{ConnectionInfo, Frame, Gateway, GatewayError};
use herald::queue::{Queue, QueueError};
use herald::store::memory::MemoryStore;
use herald::store::{ConnectionStore, SubscriptionStore};
use herald_deliver::{DeliverDeps, DeliveryBatch, POST_CONCURRENCY};
use herald_dispatch::DispatchDeps;

use crate::common::{Result, figure, ms};

/// API Gateway's default account quota for Management API requests (PostToConnection), per second.
const ACCOUNT_QUOTA_PER_SECOND: f64 = 10_000.0;
/// A delivery worker's Lambda timeout (infra/template.yaml, DeliverFunction).
const WORKER_TIMEOUT: Duration = Duration::from_secs(30);
const EVENT: &str = "cloud-bench";

/// The management API: every post answers 200 after the round trip; what was posted to whom is
/// counted.
struct StandIn {
    rtt: Duration,
    posts: Mutex<HashMap<String, u32>>,
}

#[async_trait]
impl Gateway for StandIn {
    async fn post(&self, connection_id: &str, _frame: &Frame) -> std::result::Result<(), GatewayError> {
        tokio::time::sleep(self.rtt).await;
        *self.posts.lock().unwrap_or_else(|e| e.into_inner()).entry(connection_id.to_string()).or_default() += 1;
        Ok(())
    }

    async fn describe(&self, _connection_id: &str) -> std::result::Result<ConnectionInfo, GatewayError> {
        Ok(ConnectionInfo { connected_at: None, last_active_at: None, source_ip: None, user_agent: None })
    }

    async fn close(&self, _connection_id: &str) -> std::result::Result<(), GatewayError> {
        Ok(())
    }
}

/// The fan-out queue (and the dead-letter queue): what was sent, for the workers to take.
#[derive(Default)]
struct Captured(Mutex<Vec<String>>);

#[async_trait]
impl Queue for Captured {
    async fn send(&self, body: &str) -> std::result::Result<String, QueueError> {
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        g.push(body.to_string());
        Ok(g.len().to_string())
    }
}

struct NoTimer;

#[async_trait]
impl RedeliveryTimer for NoTimer {
    async fn schedule(&self, _check: &RedeliveryCheck, _after: Duration) -> std::result::Result<(), QueueError> {
        Ok(())
    }
}

pub async fn run(subscribers: usize, rtt_ms: u64, workers: usize) -> Result<()> {
    let store = MemoryStore::new();
    for i in 0..subscribers {
        let c = Connection::opened(format!("c{i:07}"), format!("u{i}"), Api::Notify, Duration::from_secs(7200));
        store.put_connection(&c).await?;
        store.subscribe(&Subscription::of(&c, EVENT)).await?;
    }
    let gateway = StandIn { rtt: Duration::from_millis(rtt_ms), posts: Mutex::default() };
    let (fanout, dead_letters, settings) = (Captured::default(), Captured::default(), DeliveryConfig::default());
    let coordinator = DispatchDeps {
        store: &store,
        gateway: &gateway,
        timer: &NoTimer,
        dead_letters: &dead_letters,
        fanout: &fanout,
        settings: &settings,
    };
    let worker = DeliverDeps { store: &store, gateway: &gateway, timer: &NoTimer, settings: &settings };
    let push = Push {
        id: uuid::Uuid::new_v4().to_string(),
        created_at: rfc3339(now()),
        user_id: None,
        event_name: Some(EVENT.into()),
        title: Some("cloud".into()),
        body: None,
        message: None,
        position: None,
    };

    let t0 = Instant::now();
    let dispatched = coordinator.deliver(&push, &herald_dispatch::idempotency_key("bench", &push.id)).await?;
    let coordinator_time = t0.elapsed();
    let bodies = std::mem::take(&mut *fanout.0.lock().unwrap_or_else(|e| e.into_inner()));
    let batch_times: Vec<std::result::Result<Duration, String>> = futures::stream::iter(bodies)
        .map(|body| {
            let worker = &worker;
            async move {
                let batch: DeliveryBatch = serde_json::from_str(&body).map_err(|e| e.to_string())?;
                let start = Instant::now();
                let outcome = worker.deliver_batch(&batch).await.map_err(|e| e.to_string())?;
                if !outcome.failed.is_empty() {
                    return Err(format!("{} posts failed", outcome.failed.len()));
                }
                Ok(start.elapsed())
            }
        })
        .buffer_unordered(workers.max(1))
        .collect()
        .await;
    let total = t0.elapsed();
    let mut slowest = Duration::ZERO;
    for t in batch_times {
        slowest = slowest.max(t?);
    }

    let posts = gateway.posts.into_inner().unwrap_or_else(|e| e.into_inner());
    let lost = subscribers - posts.len();
    let duplicates: u32 = posts.values().map(|n| n - 1).sum();
    let name = format!("fanout-cloud {subscribers} subscribers, {workers} workers x {POST_CONCURRENCY} posts, {rtt_ms} ms round trip");
    figure(&format!("{name} batches"), dispatched.batches, "batches");
    figure(&format!("{name} lost"), lost, "connections");
    figure(&format!("{name} duplicates"), duplicates, "posts");
    figure(&format!("{name} coordinator time"), ms(coordinator_time), "ms");
    figure(&format!("{name} slowest batch"), ms(slowest), "ms");
    figure(
        &format!("{name} slowest batch against the worker timeout"),
        format!("{:.3}", slowest.as_secs_f64() / WORKER_TIMEOUT.as_secs_f64()),
        "x",
    );
    figure(&format!("{name} time to deliver all"), ms(total), "ms");
    figure(&format!("{name} rate"), format!("{:.0}", subscribers as f64 / total.as_secs_f64().max(1e-9)), "deliveries/s");

    // The model: workers x concurrency / round trip, capped by the account's request quota.
    let rate = (workers as f64 * POST_CONCURRENCY as f64 / (rtt_ms.max(1) as f64 / 1000.0)).min(ACCOUNT_QUOTA_PER_SECOND);
    for n in [1_000_000f64, 10_000_000f64] {
        figure(
            &format!(
                "model on AWS: {n:.0} connections, {workers} workers x {POST_CONCURRENCY} at {rtt_ms} ms, capped by the 10,000/s quota"
            ),
            format!("{:.0}", n / rate),
            "s",
        );
    }
    println!(
        "fanout-cloud leaves out: DynamoDB latency (in-memory store), SQS latency between coordinator and workers, \
         TLS, Lambda cold starts, real WebSocket connections (a stand-in counts the posts)"
    );
    Ok(())
}
