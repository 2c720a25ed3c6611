use std::sync::Mutex as StdMutex;

use async_trait::async_trait;
use herald::delivery::RedeliveryCheck;
use herald::domain::{Api, Connection, Subscription};
use herald::gateway::{Injected, RecordingGateway};
use herald::queue::QueueError;
use herald::store::memory::MemoryStore;

use super::*;

#[derive(Default)]
struct Timer(StdMutex<Vec<RedeliveryCheck>>);

#[async_trait]
impl RedeliveryTimer for Timer {
    async fn schedule(&self, check: &RedeliveryCheck, _after: Duration) -> Result<(), QueueError> {
        self.0.lock().unwrap().push(check.clone());
        Ok(())
    }
}

fn push() -> Push {
    Push {
        id: "p1".into(),
        created_at: "2026-12-03T00:00:00Z".into(),
        user_id: None,
        event_name: Some("news".into()),
        title: Some("t".into()),
        body: None,
        message: None,
        position: None,
    }
}

async fn targets(store: &MemoryStore, n: usize, ack: bool) -> Vec<Target> {
    let mut out = Vec::new();
    for i in 0..n {
        let mut c = Connection::opened(format!("c{i}"), format!("u{i}"), Api::Notify, Duration::from_secs(3600));
        if ack {
            c.ack_mode = AckMode::Required;
        }
        store.put_connection(&c).await.unwrap();
        store.subscribe(&Subscription::of(&c, "news")).await.unwrap();
        out.push(Target::from(&c));
    }
    out
}

#[tokio::test]
async fn one_failing_connection_never_makes_the_others_receive_the_push_again() {
    let (store, gateway, timer, settings) = (MemoryStore::new(), RecordingGateway::default(), Timer::default(), DeliveryConfig::default());
    let deps = DeliverDeps { store: &store, gateway: &gateway, timer: &timer, settings: &settings };
    let batch = DeliveryBatch::new("k", &push(), targets(&store, 5, false).await);
    gateway.fail("c3", ..=POST_TRIES, Injected::ServerError);

    let first = deps.deliver_batch(&batch).await.unwrap();
    assert_eq!((first.sent, first.failed.clone()), (4, vec!["c3".to_string()]));
    assert_eq!(store.get_batch(&batch.batch_id).await.unwrap(), Some(BatchState::Remaining(vec!["c3".into()])));

    // The queue hands the batch over again, c3 has recovered: only c3 is posted.
    let second = deps.deliver_batch(&batch).await.unwrap();
    assert_eq!((second.sent, second.failed.len()), (1, 0));
    for i in 0..5 {
        assert_eq!(gateway.sent_to(&format!("c{i}")).len(), 1, "c{i} got the push exactly once");
    }
    // Done: a later copy of the batch posts nothing.
    let third = deps.deliver_batch(&batch).await.unwrap();
    assert!(third.skipped);
    assert_eq!(gateway.sent().len(), 5);
    assert_eq!(gateway.attempts("c0"), 1, "c0 was tried once in all");
}

/// A timeout that hid a frame that went out is retried: the one case (with a crash) where a
/// connection may see the same push id twice (CONTRACT §4).
#[tokio::test]
async fn an_ambiguous_timeout_is_retried_and_may_duplicate_only_that_connection() {
    let (store, gateway, timer, settings) = (MemoryStore::new(), RecordingGateway::default(), Timer::default(), DeliveryConfig::default());
    let deps = DeliverDeps { store: &store, gateway: &gateway, timer: &timer, settings: &settings };
    let batch = DeliveryBatch::new("k", &push(), targets(&store, 3, false).await);
    gateway.fail("c1", ..=1, Injected::TimeoutAfterSend);
    let outcome = deps.deliver_batch(&batch).await.unwrap();
    assert_eq!((outcome.sent, outcome.failed.len()), (3, 0));
    assert_eq!(gateway.sent_to("c1").len(), 2);
    assert_eq!((gateway.sent_to("c0").len(), gateway.sent_to("c2").len()), (1, 1));
}

#[tokio::test]
async fn throttling_is_retried_within_the_invocation_and_gone_connections_are_deleted() {
    let (store, gateway, timer, settings) = (MemoryStore::new(), RecordingGateway::default(), Timer::default(), DeliveryConfig::default());
    let deps = DeliverDeps { store: &store, gateway: &gateway, timer: &timer, settings: &settings };
    let batch = DeliveryBatch::new("k", &push(), targets(&store, 3, false).await);
    gateway.fail("c0", ..=2, Injected::Throttled);
    gateway.fail("c1", ..=1, Injected::Timeout);
    gateway.mark_gone("c2");
    let outcome = deps.deliver_batch(&batch).await.unwrap();
    assert_eq!((outcome.sent, outcome.gone, outcome.failed.len()), (2, 1, 0));
    assert!(store.get_connection("c2").await.unwrap().is_none(), "the gone connection is deleted");
    assert!(store.connection_subscriptions("c2").await.unwrap().is_empty());
    assert_eq!(store.get_batch(&batch.batch_id).await.unwrap(), Some(BatchState::Done));
}

#[tokio::test]
async fn a_payload_the_api_refuses_is_not_retried_forever() {
    let (store, gateway, timer, settings) = (MemoryStore::new(), RecordingGateway::default(), Timer::default(), DeliveryConfig::default());
    let deps = DeliverDeps { store: &store, gateway: &gateway, timer: &timer, settings: &settings };
    let batch = DeliveryBatch::new("k", &push(), targets(&store, 2, false).await);
    gateway.fail("c0", 1.., Injected::PayloadRefused);
    let outcome = deps.deliver_batch(&batch).await.unwrap();
    assert_eq!((outcome.sent, outcome.failed.len()), (1, 0));
    assert_eq!(store.get_batch(&batch.batch_id).await.unwrap(), Some(BatchState::Done));
}

#[tokio::test]
async fn an_ack_mode_push_has_its_check_before_its_post_and_a_failed_post_is_resent() {
    let (store, gateway, timer, settings) = (MemoryStore::new(), RecordingGateway::default(), Timer::default(), DeliveryConfig::default());
    let deps = DeliverDeps { store: &store, gateway: &gateway, timer: &timer, settings: &settings };
    let batch = DeliveryBatch::new("k", &push(), targets(&store, 1, true).await);
    gateway.fail("c0", ..=POST_TRIES, Injected::ServerError);
    let outcome = deps.deliver_batch(&batch).await.unwrap();
    assert_eq!(outcome.failed, vec!["c0".to_string()]);
    // Nothing went out, but the record and its check exist: the push cannot be lost.
    let delivery = store.get_delivery("p1", "c0").await.unwrap().expect("the delivery record");
    assert_eq!((delivery.attempts, delivery.acked), (1, false));
    let checks = timer.0.lock().unwrap().clone();
    assert!(!checks.is_empty() && checks.iter().all(|c| c.attempt == 1 && c.connection_id == "c0"), "{checks:?}");

    // The batch's retry finds the record and sends the stored frame, with a check again.
    let before = timer.0.lock().unwrap().len();
    deps.deliver_batch(&batch).await.unwrap();
    assert_eq!(gateway.sent_to("c0"), vec![Frame::Text(String::from_utf8(delivery.frame).unwrap().into())]);
    assert_eq!(timer.0.lock().unwrap().len(), before + 1);
}

#[tokio::test]
async fn batches_split_at_the_batch_size_and_their_ids_follow_their_targets() {
    let store = MemoryStore::new();
    let all = targets(&store, BATCH_SIZE * 2 + 1, false).await;
    let batches = DeliveryBatch::split("k", &push(), all.clone());
    assert_eq!(batches.iter().map(|b| b.targets.len()).collect::<Vec<_>>(), vec![BATCH_SIZE, BATCH_SIZE, 1]);
    assert_eq!(DeliveryBatch::split("k", &push(), all.clone())[0].batch_id, batches[0].batch_id, "stable");
    let mut reversed = all[..BATCH_SIZE].to_vec();
    reversed.reverse();
    assert_eq!(DeliveryBatch::new("k", &push(), reversed).batch_id, batches[0].batch_id, "order does not matter");
    assert_ne!(DeliveryBatch::new("k", &push(), all[1..=BATCH_SIZE].to_vec()).batch_id, batches[0].batch_id);
    assert_ne!(DeliveryBatch::new("other", &push(), all[..BATCH_SIZE].to_vec()).batch_id, batches[0].batch_id);
}

#[tokio::test]
async fn the_fanout_queue_reports_only_batches_with_connections_left() {
    let (store, gateway, timer, settings) = (MemoryStore::new(), RecordingGateway::default(), Timer::default(), DeliveryConfig::default());
    let deps = DeliverDeps { store: &store, gateway: &gateway, timer: &timer, settings: &settings };
    let all = targets(&store, 2, false).await;
    let ok = DeliveryBatch::new("a", &push(), vec![all[0].clone()]);
    let failing = DeliveryBatch::new("b", &push(), vec![all[1].clone()]);
    gateway.fail("c1", 1.., Injected::ServerError);
    let record = |id: &str, body: String| {
        let mut r = aws_lambda_events::sqs::SqsMessage::default();
        r.message_id = Some(id.into());
        r.body = Some(body);
        r
    };
    let mut event = SqsEvent::default();
    event.records = vec![
        record("m1", serde_json::to_string(&ok).unwrap()),
        record("m2", serde_json::to_string(&failing).unwrap()),
        record("m3", "{not a batch".into()),
    ];
    let failed: Vec<String> = deps.handle_sqs(event).await.batch_item_failures.into_iter().map(|f| f.item_identifier).collect();
    assert_eq!(failed, vec!["m2".to_string(), "m3".to_string()]);
    assert_eq!(gateway.sent_to("c0").len(), 1);
}
