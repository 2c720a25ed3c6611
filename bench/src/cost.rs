//! Cost: DynamoDB operations per push in a large event fan-out, counted by an SDK interceptor on
//! the store's own client (DynamoDB Local). The gateway only counts posts, so that what is
//! measured is the store traffic of the coordinator (`dispatch`) and of the delivery workers
//! over every batch it handed out (a read and a write of each batch's marker), with history
//! (CONTRACT §8: the push appended to its stream) and without (`HERALD_HISTORY_TTL_S=0`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::interceptors::context::BeforeSerializationInterceptorContextRef;
use aws_smithy_runtime_api::client::orchestrator::Metadata;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use herald::config::DeliveryConfig;
use herald::delivery::RedeliveryTimer;
use herald::domain::{AckMode, Encoding, Push, Subscription, now, rfc3339};
use herald::gateway::{ConnectionInfo, Frame, Gateway, GatewayError};
use herald::queue::QueueError;
use herald::store::SubscriptionStore;
use herald::store::dynamodb::DynamoStore;
use herald::store::tables::TableNames;
use herald_deliver::{DeliverDeps, DeliveryBatch};
use herald_dispatch::DispatchDeps;
use herald_local::queue::LocalQueue;

use crate::common::{self, Result, figure};

/// Operations by name (`GetItem`, `Query`, ...), as the SDK's operation metadata names them.
#[derive(Debug, Default, Clone)]
struct OperationCounter(Arc<Mutex<BTreeMap<String, u64>>>);

impl OperationCounter {
    fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl Intercept for OperationCounter {
    fn name(&self) -> &'static str {
        "herald-bench-operation-counter"
    }

    /// Once per operation, after the operation's configuration (with its `Metadata`) is applied;
    /// retries are not counted again. (`read_before_execution` of a client interceptor runs
    /// before the operation's configuration, without the name.)
    fn read_before_serialization(
        &self,
        _context: &BeforeSerializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> std::result::Result<(), BoxError> {
        let name = cfg.load::<Metadata>().map(|m| m.name().to_string()).unwrap_or_else(|| "<unnamed>".into());
        *self.0.lock().unwrap_or_else(|e| e.into_inner()).entry(name).or_default() += 1;
        Ok(())
    }
}

#[derive(Debug, Default)]
struct Tally {
    reads: u64,
    writes: u64,
    scans: u64,
    other: u64,
}

fn classify(ops: &BTreeMap<String, u64>) -> Tally {
    let mut t = Tally::default();
    for (name, n) in ops {
        match name.as_str() {
            "GetItem" | "Query" | "BatchGetItem" | "TransactGetItems" => t.reads += n,
            "PutItem" | "UpdateItem" | "DeleteItem" | "TransactWriteItems" | "BatchWriteItem" => t.writes += n,
            "Scan" => t.scans += n,
            _ => t.other += n,
        }
    }
    t
}

/// A management API that accepts every post and counts it.
#[derive(Debug, Default)]
struct CountingGateway {
    posts: AtomicUsize,
}

#[async_trait]
impl Gateway for CountingGateway {
    async fn post(&self, _connection_id: &str, _frame: &Frame) -> std::result::Result<(), GatewayError> {
        self.posts.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn describe(&self, _connection_id: &str) -> std::result::Result<ConnectionInfo, GatewayError> {
        Ok(ConnectionInfo { connected_at: None, last_active_at: None, source_ip: None, user_agent: None })
    }

    async fn close(&self, _connection_id: &str) -> std::result::Result<(), GatewayError> {
        Ok(())
    }
}

/// Redelivery checks are counted, not run (an SQS delay queue in the cloud: no DynamoDB traffic now).
#[derive(Debug, Default)]
struct CountingTimer {
    scheduled: AtomicUsize,
}

#[async_trait]
impl RedeliveryTimer for CountingTimer {
    async fn schedule(&self, _check: &herald::delivery::RedeliveryCheck, _after: Duration) -> std::result::Result<(), QueueError> {
        self.scheduled.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

async fn seed(store: &DynamoStore, event: &str, subscribers: usize, ack_mode: AckMode) -> Result<()> {
    let expires_at = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    let subscriptions = (0..subscribers).map(|i| async move {
        let subscription = Subscription {
            connection_id: format!("{}{i:09}=", if ack_mode == AckMode::Required { "ack" } else { "json" }),
            event_name: event.to_string(),
            user_id: format!("cost{i}"),
            encoding: Encoding::Json,
            ack_mode,
            expires_at,
            fence: None,
        };
        store.subscribe(&subscription).await
    });
    common::run_all(subscriptions, 64).await.map(drop)
}

pub async fn run(subscribers: usize) -> Result<()> {
    let sdk = common::dynamodb_sdk_config().await?;
    let counter = OperationCounter::default();
    let config = aws_sdk_dynamodb::config::Builder::from(&sdk).interceptor(counter.clone()).build();
    let store = DynamoStore::new(aws_sdk_dynamodb::Client::from_conf(config), TableNames::with_prefix(&common::unique_prefix()));
    store
        .create_tables()
        .await
        .map_err(|e| format!("creating the tables on DynamoDB Local ({}) failed: {e}", common::dynamodb_endpoint().unwrap_or_default()))?;
    let result = measure(&store, &counter, subscribers).await;
    if let Err(e) = store.delete_tables().await {
        eprintln!("warning: could not delete the benchmark's tables: {e}");
    }
    result
}

async fn measure(store: &DynamoStore, counter: &OperationCounter, subscribers: usize) -> Result<()> {
    let history_on = DeliveryConfig::from_lookup(&|_| None)?;
    // HERALD_HISTORY_TTL_S=0: pushes not kept (CONTRACT §8 off), the same run for comparison.
    let history_off = DeliveryConfig { history_ttl: Duration::ZERO, ..history_on.clone() };
    let dead_letters = LocalQueue::new(Duration::from_secs(30));
    let runs = [
        ("no ack, history", AckMode::None, &history_on),
        ("no ack, no history", AckMode::None, &history_off),
        ("ack required, history", AckMode::Required, &history_on),
        ("ack required, no history", AckMode::Required, &history_off),
    ];
    for (label, ack_mode, settings) in runs {
        let event = format!("cost:{}:{}", ack_mode.as_str(), settings.history_ttl.as_secs());
        let t0 = Instant::now();
        seed(store, &event, subscribers, ack_mode).await?;
        let seeded = counter.take();
        eprintln!("seeded {subscribers} subscriptions ({label}) in {:.1} s: {seeded:?}", t0.elapsed().as_secs_f64());

        let gateway = CountingGateway::default();
        let timer = CountingTimer::default();
        // The fan-out queue, never polled: its batches are delivered below, by the workers' code.
        let fanout = LocalQueue::new(Duration::from_secs(30));
        let deps = DispatchDeps { store, gateway: &gateway, timer: &timer, dead_letters: &dead_letters, fanout: &fanout, settings };
        let worker = DeliverDeps { store, gateway: &gateway, timer: &timer, settings };
        let push = Push {
            id: uuid::Uuid::new_v4().to_string(),
            created_at: rfc3339(now()),
            user_id: None,
            event_name: Some(event.clone()),
            title: None,
            body: None,
            message: Some(serde_json::json!({"cost": true})),
            position: None,
        };
        let t0 = Instant::now();
        let key = herald_dispatch::idempotency_key("bench", &push.id);
        let mut delivered = deps.deliver(&push, &key).await.map_err(|e| format!("the push failed: {e}"))?;
        for body in fanout.bodies() {
            let batch: DeliveryBatch = serde_json::from_str(&body)?;
            let outcome = worker.deliver_batch(&batch).await.map_err(|e| format!("a batch failed: {e}"))?;
            delivered.sent += outcome.sent;
        }
        let took = t0.elapsed();
        let ops = counter.take();
        let t = classify(&ops);
        let deliveries = delivered.sent.max(1) as f64;
        let name = format!("cost[{label}] {subscribers} subscribers, 1 push");
        figure(&format!("{name} deliveries"), delivered.sent, "posts");
        figure(&format!("{name} dispatch time (coordinator and every batch)"), common::ms(took), "ms");
        for (op, n) in &ops {
            figure(&format!("{name} op {op}"), n, "calls");
        }
        figure(&format!("{name} reads per push"), t.reads, "reads");
        figure(&format!("{name} writes per push"), t.writes, "writes");
        figure(&format!("{name} scans per push"), t.scans, "scans");
        if t.other > 0 {
            figure(&format!("{name} other operations"), t.other, "calls");
        }
        figure(&format!("{name} reads per delivery"), format!("{:.4}", t.reads as f64 / deliveries), "reads");
        figure(&format!("{name} writes per delivery"), format!("{:.4}", t.writes as f64 / deliveries), "writes");
        figure(&format!("{name} redelivery checks scheduled"), timer.scheduled.load(Ordering::Relaxed), "checks");
        if gateway.posts.load(Ordering::Relaxed) != delivered.sent {
            eprintln!("warning: the gateway counted {} posts, dispatch {}", gateway.posts.load(Ordering::Relaxed), delivered.sent);
        }
    }
    Ok(())
}
