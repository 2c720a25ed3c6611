use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use async_trait::async_trait;
use aws_lambda_events::kafka::KafkaRecord;
use aws_lambda_events::sqs::SqsMessage;
use herald::delivery::RedeliveryCheck;
use herald::domain::{Connection, Subscription};
use herald::gateway::RecordingGateway;
use herald::queue::QueueError;
use herald::store::memory::MemoryStore;
use serde_json::{Value, json};

use super::*;

#[derive(Default)]
struct Recorded {
    bodies: Mutex<Vec<String>>,
    broken: AtomicBool,
}

#[async_trait]
impl Queue for Recorded {
    async fn send(&self, body: &str) -> Result<String, QueueError> {
        if self.broken.load(Ordering::Relaxed) {
            return Err(QueueError::Closed);
        }
        let mut b = self.bodies.lock().unwrap();
        b.push(body.to_string());
        Ok(format!("m{}", b.len()))
    }
}

impl Recorded {
    fn json(&self) -> Vec<Value> {
        self.bodies.lock().unwrap().iter().map(|b| serde_json::from_str(b).unwrap()).collect()
    }
}

struct NoTimer;

#[async_trait]
impl RedeliveryTimer for NoTimer {
    async fn schedule(&self, _check: &RedeliveryCheck, _after: Duration) -> Result<(), QueueError> {
        Ok(())
    }
}

struct World {
    store: MemoryStore,
    gateway: RecordingGateway,
    dead_letters: Recorded,
    fanout: Recorded,
    settings: DeliveryConfig,
}

impl World {
    fn new() -> Self {
        Self {
            store: MemoryStore::new(),
            gateway: RecordingGateway::default(),
            dead_letters: Recorded::default(),
            fanout: Recorded::default(),
            settings: DeliveryConfig::default(),
        }
    }

    fn deps(&self) -> DispatchDeps<'_, MemoryStore> {
        DispatchDeps {
            store: &self.store,
            gateway: &self.gateway,
            timer: &NoTimer,
            dead_letters: &self.dead_letters,
            fanout: &self.fanout,
            settings: &self.settings,
        }
    }

    async fn subscribers(&self, event: &str, n: usize) {
        for i in 0..n {
            let c = Connection::opened(format!("c{i}"), format!("u{i}"), Api::Notify, Duration::from_secs(3600));
            self.store.put_connection(&c).await.unwrap();
            self.store.subscribe(&Subscription::of(&c, event)).await.unwrap();
        }
    }
}

fn sqs(records: &[(&str, &str, Value)]) -> SqsEvent {
    let mut event = SqsEvent::default();
    event.records = records
        .iter()
        .map(|(id, arn, body)| {
            let mut r = SqsMessage::default();
            r.message_id = Some(id.to_string());
            r.event_source_arn = Some(arn.to_string());
            r.body = Some(body.to_string());
            r
        })
        .collect();
    event
}

const QUEUE: &str = "arn:aws:sqs:us-east-1:1:herald-notifications";

#[tokio::test]
async fn a_small_audience_is_delivered_at_once_and_a_redelivered_message_is_pushed_once() {
    let w = World::new();
    w.subscribers("news", 3).await;
    let body = json!({"message_id": "m-1", "event_name": "news", "title": "hi"});
    for _ in 0..2 {
        let r = w.deps().handle_sqs(sqs(&[("q1", QUEUE, body.clone())])).await;
        assert!(r.batch_item_failures.is_empty());
    }
    assert_eq!(w.gateway.sent().len(), 3, "each subscriber once");
    assert!(w.fanout.json().is_empty(), "one batch: nothing for the workers");
}

#[tokio::test]
async fn a_message_id_suppresses_only_its_own_sources_messages() {
    let w = World::new();
    w.subscribers("news", 1).await;
    let body = json!({"message_id": "shared-id", "event_name": "news", "title": "hi"});
    w.deps().handle_sqs(sqs(&[("q1", QUEUE, body.clone())])).await;
    // Another producer reusing the id on another queue is not suppressed ...
    w.deps().handle_sqs(sqs(&[("q2", "arn:aws:sqs:us-east-1:1:other", body.clone())])).await;
    // ... nor on Kafka.
    let mut record = KafkaRecord::default();
    record.topic = Some("notification.send".into());
    record.value = Some(base64::engine::general_purpose::STANDARD.encode(body.to_string()));
    let mut event = KafkaEvent::default();
    event.records.insert("notification.send-0".into(), vec![record]);
    w.deps().handle_kafka(event).await.unwrap();
    assert_eq!(w.gateway.sent().len(), 3);
    assert_ne!(idempotency_key("a:b", "c"), idempotency_key("a", "b:c"));
}

#[tokio::test]
async fn a_large_fan_out_is_handed_out_in_batches_each_target_once() {
    let w = World::new();
    let n = herald_deliver::BATCH_SIZE * 3 + 7;
    w.subscribers("big", n).await;
    let push = message::parse(json!({"id": "p-big", "event_name": "big", "body": "b"}).to_string().as_bytes(), "q").unwrap();
    let delivered = w.deps().deliver(&push, &idempotency_key("sqs", "p-big")).await.unwrap();
    assert_eq!((delivered.sent, delivered.batches), (0, 4));
    let batches = w.fanout.json();
    let mut ids: Vec<String> = batches
        .iter()
        .flat_map(|b| b["targets"].as_array().unwrap().iter().map(|t| t["connection_id"].as_str().unwrap().to_string()))
        .collect();
    assert!(batches.iter().all(|b| b["targets"].as_array().unwrap().len() <= herald_deliver::BATCH_SIZE));
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "every subscriber in exactly one batch");
    // Done: the queue handing the message over again enqueues nothing more.
    let again = w.deps().deliver(&push, &idempotency_key("sqs", "p-big")).await.unwrap();
    assert!(again.duplicate);
    assert_eq!(w.fanout.json().len(), 4);
}

#[tokio::test]
async fn a_failed_hand_out_releases_the_claim_for_a_retry() {
    let w = World::new();
    w.subscribers("big", herald_deliver::BATCH_SIZE + 1).await;
    w.fanout.broken.store(true, Ordering::Relaxed);
    let body = json!({"message_id": "m-9", "event_name": "big", "title": "hi"});
    let r = w.deps().handle_sqs(sqs(&[("q9", QUEUE, body.clone())])).await;
    assert_eq!(r.batch_item_failures.len(), 1);
    w.fanout.broken.store(false, Ordering::Relaxed);
    let r = w.deps().handle_sqs(sqs(&[("q9", QUEUE, body)])).await;
    assert!(r.batch_item_failures.is_empty(), "released, so the retry starts at once");
    assert_eq!(w.fanout.json().len(), 2);
}

#[tokio::test]
async fn claims_belong_to_their_owner() {
    let w = World::new();
    let store = &w.store;
    assert_eq!(store.claim_push("k", "a", Duration::from_secs(60), 0).await.unwrap(), Claim::New);
    assert_eq!(store.claim_push("k", "b", Duration::from_secs(60), 0).await.unwrap(), Claim::Busy);
    assert!(!store.complete_push("k", "b").await.unwrap(), "b cannot complete a's claim");
    store.release_push("k", "b").await.unwrap();
    assert_eq!(store.claim_push("k", "b", Duration::from_secs(60), 0).await.unwrap(), Claim::Busy, "nor release it");
    assert!(store.renew_claim("k", "a", Duration::from_secs(60)).await.unwrap());
    assert!(!store.renew_claim("k", "b", Duration::from_secs(60)).await.unwrap());
    assert!(store.complete_push("k", "a").await.unwrap());
    assert_eq!(store.claim_push("k", "b", Duration::from_secs(60), 0).await.unwrap(), Claim::Done);
}

#[tokio::test]
async fn a_kafka_record_that_keeps_failing_is_dead_lettered_and_the_partition_moves_on() {
    let w = World::new();
    w.subscribers("big", herald_deliver::BATCH_SIZE + 1).await;
    let rec = |offset: i64, value: Value| {
        let mut r = KafkaRecord::default();
        r.topic = Some("notification.send".into());
        r.partition = 0;
        r.offset = offset;
        r.value = Some(base64::engine::general_purpose::STANDARD.encode(value.to_string()));
        r
    };
    let mut event = KafkaEvent::default();
    event.records.insert(
        "notification.send-0".into(),
        vec![
            rec(5, json!({"message_id": "big-1", "event_name": "big", "title": "x"})),
            rec(6, json!({"message_id": "direct-1", "user_id": "u0", "title": "y"})),
        ],
    );
    w.fanout.broken.store(true, Ordering::Relaxed);
    assert_eq!(w.deps().handle_kafka(event).await.unwrap(), 2);
    let dead = w.dead_letters.json();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        (dead[0]["topic"].clone(), dead[0]["partition"].clone(), dead[0]["offset"].clone()),
        (json!("notification.send"), json!(0), json!(5))
    );
    assert!(dead[0]["reason"].as_str().unwrap().contains("failed 3 times"), "{}", dead[0]);
    assert_eq!(w.gateway.sent_to("c0").len(), 1, "the next record was delivered");
}

fn offset_of(frame: &herald::gateway::Frame) -> u64 {
    let v: Value = serde_json::from_slice(frame.as_bytes()).unwrap();
    v["offset"].as_u64().expect("an offset")
}

#[tokio::test]
async fn a_push_is_kept_once_under_one_offset_however_often_it_comes() {
    let w = World::new();
    w.subscribers("news", 1).await;
    let first = json!({"message_id": "m-1", "event_name": "news", "title": "one"});
    let second = json!({"message_id": "m-2", "event_name": "news", "title": "two"});
    // m-1 is claimed and appended, then its delivery fails and the claim is dropped: the retry
    // must find the same offset, not take a new one.
    w.gateway.fail("c0", ..=4, herald::gateway::Injected::ServerError);
    w.fanout.broken.store(true, Ordering::Relaxed);
    let r = w.deps().handle_sqs(sqs(&[("q1", QUEUE, first.clone())])).await;
    assert_eq!(r.batch_item_failures.len(), 1, "the post and the hand-over failed: retried");
    w.fanout.broken.store(false, Ordering::Relaxed);
    let r = w.deps().handle_sqs(sqs(&[("q1", QUEUE, first.clone())])).await;
    assert!(r.batch_item_failures.is_empty());
    let sent = w.gateway.sent_to("c0");
    assert_eq!(sent.iter().map(offset_of).collect::<Vec<_>>(), vec![1], "the retry carries the first offset");
    w.deps().handle_sqs(sqs(&[("q2", QUEUE, second)])).await;
    let head = w.store.stream_head("event:news", 86_400).await.unwrap();
    assert_eq!(head.offset, 2, "two pushes, two offsets");
    let kept = w.store.read_history("event:news", &head.epoch, 0, 10).await.unwrap();
    assert_eq!(kept.iter().map(|p| p.title.clone().unwrap()).collect::<Vec<_>>(), ["one", "two"]);
}

#[tokio::test]
async fn live_delivery_skips_a_recovering_target_and_what_its_replay_covers() {
    let w = World::new();
    let c = Connection::opened("rc", "u1", Api::Notify, Duration::from_secs(3600));
    w.store.put_connection(&c).await.unwrap();
    w.store.subscribe(&Subscription { fence: Some(herald::domain::Fence::Recovering), ..Subscription::of(&c, "news") }).await.unwrap();
    let push = |n: u32| json!({"message_id": format!("m-{n}"), "event_name": "news", "title": format!("t{n}")});
    w.deps().handle_sqs(sqs(&[("q1", QUEUE, push(1))])).await;
    assert!(w.gateway.sent_to("rc").is_empty(), "recovering: the replay sends it");
    // The replay ends its fence at offset 2; offsets up to 2 are its, live ones come after.
    w.deps().handle_sqs(sqs(&[("q2", QUEUE, push(2))])).await;
    let head = w.store.stream_head("event:news", 86_400).await.unwrap();
    assert!(w.store.go_live(FenceOf::Subscription { connection_id: "rc", event_name: "news" }, "event:news", &head, false).await.unwrap());
    w.deps().handle_sqs(sqs(&[("q3", QUEUE, push(3))])).await;
    let sent = w.gateway.sent_to("rc");
    assert_eq!(sent.iter().map(offset_of).collect::<Vec<_>>(), vec![3]);
    // A user stream's fence is the connection's.
    let d = Connection {
        fence: Some(herald::domain::Fence::Recovering),
        ..Connection::opened("rd", "u2", Api::Notify, Duration::from_secs(3600))
    };
    w.store.put_connection(&d).await.unwrap();
    w.deps().handle_sqs(sqs(&[("q4", QUEUE, json!({"message_id": "d-1", "user_id": "u2", "title": "direct"}))])).await;
    assert!(w.gateway.sent_to("rd").is_empty());
    let head = w.store.stream_head("user:u2", 86_400).await.unwrap();
    w.store.go_live(FenceOf::Connection("rd"), "user:u2", &head, false).await.unwrap();
    w.deps().handle_sqs(sqs(&[("q5", QUEUE, json!({"message_id": "d-2", "user_id": "u2", "title": "direct"}))])).await;
    assert_eq!(w.gateway.sent_to("rd").iter().map(offset_of).collect::<Vec<_>>(), vec![2]);
}
