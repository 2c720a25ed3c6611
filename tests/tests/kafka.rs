//! herald-local's Kafka poller (`--kafka`, CONTRACT §4 "Kafka locally") against a real broker
//! (tansu, see `herald_tests::kafka`), with real WebSocket clients: seed 002 end to end, order per
//! partition, `message_id` dedup, a poison record dead-lettered while its partition moves on, a
//! restart that resumes from the committed offsets, a broker that comes up late, and
//! `--kafka-start latest`.

use std::collections::BTreeMap;
use std::time::Duration;

use herald_local::Server;
use herald_local::kafka::{KafkaOptions, KafkaStart};
use herald_tests::kafka::{Broker, free_port};
use herald_tests::local::{On, Ws, assert_silent, next_json, next_message, notify_client, spawn_with};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const TOPIC: &str = "notification.send";
const SEED_002: &str = r#"{"message_id": "123e4567-e89b-12d3-a456-426614174000","delivery_method": "push","user_id": "b1fe6a68-f7b5-4c2c-a52b-97494403d2ce","subject":"Новый фильм", "content": "Фильм 'Как закалялась сталь' теперь доступен для просмотра"}"#;
const SEED_002_USER: &str = "b1fe6a68-f7b5-4c2c-a52b-97494403d2ce";
/// Longer than a batch window (500 ms) and a fetch's wait, for "nothing more arrives".
const QUIET: Duration = Duration::from_millis(1500);

/// herald-local (embedded backend) polling `broker`.
async fn herald(broker_addr: &str, start: KafkaStart) -> Server {
    let kafka = KafkaOptions { bootstrap: broker_addr.to_string(), topic: TOPIC.into(), start };
    spawn_with(On::Embedded, move |o| o.kafka = Some(kafka)).await
}

/// `GET /health`'s status and body.
async fn health(server: &Server) -> (u16, Value) {
    let response = reqwest::get(server.url("/health")).await.expect("GET /health");
    (response.status().as_u16(), response.json().await.expect("JSON"))
}

/// Waits until `GET /health` answers 200 (the poller is positioned on every partition).
async fn positioned(server: &Server, within: Duration) {
    let until = tokio::time::Instant::now() + within;
    loop {
        let (status, body) = health(server).await;
        if status == 200 {
            assert_eq!(body["kafka"]["positioned"], true, "{body}");
            return;
        }
        assert_eq!((status, body["kafka"]["positioned"].as_bool()), (503, Some(false)), "{body}");
        assert!(tokio::time::Instant::now() < until, "the poller was not positioned within {within:?}: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A started broker with the topic, herald-local polling it and positioned; `None` when skipped.
async fn setup(partitions: i32) -> Option<(Broker, Server)> {
    let broker = Broker::start().await?;
    broker.create_topic(TOPIC, partitions).await;
    let server = herald(&broker.addr, KafkaStart::Earliest).await;
    positioned(&server, Duration::from_secs(20)).await;
    Some((broker, server))
}

fn notify(user: &str, message_id: &str, title: &str) -> Vec<u8> {
    json!({"message_id": message_id, "user_id": user, "title": title, "body": "b"}).to_string().into_bytes()
}

/// The next push's title, within `wait`; `None` when nothing arrives.
async fn next_title(ws: &mut Ws, wait: Duration) -> Option<String> {
    match next_message(ws, wait).await? {
        Message::Text(t) => {
            let v: Value = serde_json::from_str(&t).expect("JSON");
            Some(v["title"].as_str().expect("a title").to_string())
        }
        other => panic!("expected a text frame, got {other:?}"),
    }
}

#[tokio::test]
async fn seed_002_record_reaches_every_connection_of_the_user() {
    let Some((broker, server)) = setup(3).await else { return };
    let mut one = notify_client(&server, SEED_002_USER, "").await;
    let mut two = notify_client(&server, SEED_002_USER, "").await;
    let mut other = notify_client(&server, "someone-else", "").await;
    broker.produce(TOPIC, 1, &[SEED_002.as_bytes().to_vec()]).await;
    for ws in [&mut one, &mut two] {
        let p = next_json(ws).await;
        assert_eq!(
            (p["title"].as_str(), p["body"].as_str(), p["id"].as_str()),
            (
                Some("Новый фильм"),
                Some("Фильм 'Как закалялась сталь' теперь доступен для просмотра"),
                Some("123e4567-e89b-12d3-a456-426614174000")
            ),
            "{p}"
        );
    }
    assert_silent(&mut other, QUIET).await;
    assert_silent(&mut one, Duration::from_millis(100)).await;
}

#[tokio::test]
async fn records_on_several_partitions_arrive_in_order_per_partition() {
    let Some((broker, server)) = setup(3).await else { return };
    let mut ws = notify_client(&server, "u", "").await;
    const PER_PARTITION: usize = 40;
    for p in 0..3 {
        let values: Vec<Vec<u8>> = (0..PER_PARTITION).map(|i| notify("u", &format!("m-{p}-{i}"), &format!("{p}:{i}"))).collect();
        broker.produce(TOPIC, p, &values).await;
    }
    let mut seen: BTreeMap<i32, Vec<usize>> = BTreeMap::new();
    for _ in 0..3 * PER_PARTITION {
        let title = next_title(&mut ws, Duration::from_secs(10)).await.expect("every record arrives");
        let (p, i) = title.split_once(':').expect("p:i");
        seen.entry(p.parse().unwrap()).or_default().push(i.parse().unwrap());
    }
    for p in 0..3 {
        assert_eq!(seen.get(&p), Some(&(0..PER_PARTITION).collect::<Vec<_>>()), "partition {p} in offset order");
    }
    assert_silent(&mut ws, QUIET).await;
    // Everything was committed for group herald-local.
    let committed = broker.committed(TOPIC, &[0, 1, 2]).await;
    assert_eq!(committed, (0..3).map(|p| (p, PER_PARTITION as i64)).collect::<BTreeMap<_, _>>());
}

#[tokio::test]
async fn the_same_message_id_twice_is_pushed_once() {
    let Some((broker, server)) = setup(2).await else { return };
    let mut ws = notify_client(&server, "u", "").await;
    // The same message_id on the same partition and on another one (a producer's retry).
    broker.produce(TOPIC, 0, &[notify("u", "order-1", "first"), notify("u", "order-1", "again")]).await;
    broker.produce(TOPIC, 1, &[notify("u", "order-1", "elsewhere")]).await;
    broker.produce(TOPIC, 0, &[notify("u", "order-2", "next")]).await;
    let mut titles = Vec::new();
    while let Some(t) = next_title(&mut ws, QUIET).await {
        titles.push(t);
    }
    assert_eq!(titles.iter().filter(|t| *t != "next").count(), 1, "order-1 pushed once: {titles:?}");
    assert!(titles.contains(&"next".to_string()), "{titles:?}");
    assert_eq!(titles.len(), 2, "{titles:?}");
}

#[tokio::test]
async fn a_poison_record_is_dead_lettered_and_its_partition_moves_on() {
    let Some((broker, server)) = setup(2).await else { return };
    let mut ws = notify_client(&server, "u", "").await;
    let offsets = broker.produce(TOPIC, 1, &[notify("u", "a", "before"), b"not json".to_vec(), notify("u", "b", "after")]).await;
    assert_eq!(next_title(&mut ws, Duration::from_secs(10)).await.as_deref(), Some("before"));
    assert_eq!(next_title(&mut ws, Duration::from_secs(10)).await.as_deref(), Some("after"), "the partition moved on");
    let dead = server.app.queues.notifications.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    let envelope: Value = serde_json::from_str(&dead[0]).expect("JSON");
    assert_eq!(envelope["body"], "not json", "{envelope}");
    // Its topic, partition and offset name it.
    assert_eq!(envelope["source_message_id"], format!("kafka:{TOPIC}:1:{}", offsets[1]), "{envelope}");
    // And the partition's offset is committed past it.
    herald_tests::local::eventually("the poison record's offset is committed past", || async {
        broker.committed(TOPIC, &[1]).await.get(&1) == Some(&(offsets[2] + 1))
    })
    .await;
}

#[tokio::test]
async fn a_restart_mid_stream_resumes_from_the_committed_offsets() {
    let Some(broker) = Broker::start().await else { return };
    broker.create_topic(TOPIC, 2).await;
    // The first herald-local's store is slow (throttled 30% of the time, retried with backoff), so
    // it is stopped while a batch is being dispatched: what that batch pushed is not committed.
    let kafka = KafkaOptions { bootstrap: broker.addr.clone(), topic: TOPIC.into(), start: KafkaStart::Earliest };
    let first = spawn_with(On::Embedded, move |o| {
        o.kafka = Some(kafka);
        o.faults = "store_throttle=0.3".parse().expect("a fault spec");
    })
    .await;
    positioned(&first, Duration::from_secs(20)).await;
    let mut ws = notify_client(&first, "u", "").await;
    const PER_PARTITION: usize = 500;
    for p in 0..2 {
        let values: Vec<Vec<u8>> = (0..PER_PARTITION).map(|i| notify("u", &format!("m-{p}-{i}"), &format!("{p}:{i}"))).collect();
        broker.produce(TOPIC, p, &values).await;
    }
    // Killed mid-stream: after some of it arrived.
    let mut received: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for _ in 0..130 {
        let title = next_title(&mut ws, Duration::from_secs(10)).await.expect("records arrive");
        let (p, i) = title.split_once(':').unwrap();
        received.entry(p.parse().unwrap()).or_default().push(i.parse().unwrap());
    }
    first.stop().await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let committed = broker.committed(TOPIC, &[0, 1]).await;
    let total = 2 * PER_PARTITION as i64;
    let committed_sum: i64 = committed.values().map(|o| o.max(&0)).sum();
    assert!(committed_sum < total, "herald-local was stopped mid-stream: {committed:?}");
    eprintln!("the first herald-local committed {committed:?} of {PER_PARTITION} per partition");
    // What the group committed had been pushed: the first connection got all of it (in order).
    while let Some(title) = next_title(&mut ws, Duration::from_millis(300)).await {
        let (p, i) = title.split_once(':').unwrap();
        received.entry(p.parse().unwrap()).or_default().push(i.parse().unwrap());
    }
    for (p, &offset) in &committed {
        let got = received.get(p).cloned().unwrap_or_default();
        let expected: Vec<i64> = (0..offset.max(0)).collect();
        assert_eq!(
            got.get(..expected.len()),
            Some(&expected[..]),
            "partition {p}: every record before the committed offset {offset} was pushed"
        );
    }
    // A new herald-local (a fresh store: nothing remembers what the first pushed) resumes from the
    // committed offsets. Its poller is started once the user's connection is open (the very task
    // `--kafka` spawns, `herald_local::kafka::run`), so the connection sees everything it
    // dispatches: exactly the records from the committed offsets on, each once and in order, no
    // more (nothing committed is sent again) and no less (nothing is lost).
    let second = spawn_with(On::Embedded, |_| {}).await;
    let mut ws = notify_client(&second, "u", "").await;
    let status = std::sync::Arc::new(herald_local::kafka::KafkaStatus::default());
    let kafka = KafkaOptions { bootstrap: broker.addr.clone(), topic: TOPIC.into(), start: KafkaStart::Earliest };
    let poller = tokio::spawn(herald_local::kafka::run(kafka, std::sync::Arc::downgrade(&second.app.handlers), status));
    let mut resumed: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    for _ in 0..(total - committed_sum) {
        let title = next_title(&mut ws, Duration::from_secs(30)).await.expect("the rest arrives");
        let (p, i) = title.split_once(':').unwrap();
        resumed.entry(p.parse().unwrap()).or_default().push(i.parse().unwrap());
    }
    assert_silent(&mut ws, QUIET).await;
    for (p, &offset) in &committed {
        let expected: Vec<i64> = (offset.max(0)..PER_PARTITION as i64).collect();
        assert_eq!(resumed.get(p).cloned().unwrap_or_default(), expected, "partition {p} resumed at the committed offset {offset}");
    }
    // It commits everything.
    herald_tests::local::eventually("the second herald-local commits everything", || async {
        broker.committed(TOPIC, &[0, 1]).await.values().all(|&o| o == PER_PARTITION as i64)
    })
    .await;
    poller.abort();
}

#[tokio::test]
async fn a_broker_down_at_start_is_waited_for_and_health_turns_200() {
    let port = free_port();
    if herald_tests::kafka::tansu().is_none() {
        return;
    }
    let server = herald(&format!("127.0.0.1:{port}"), KafkaStart::Earliest).await;
    let (status, body) = health(&server).await;
    assert_eq!((status, body["status"].as_str(), body["kafka"]["positioned"].as_bool()), (503, Some("starting"), Some(false)), "{body}");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(health(&server).await.0, 503, "not positioned while the broker is down");
    let broker = Broker::start_on(port).await.expect("tansu");
    broker.create_topic(TOPIC, 2).await;
    positioned(&server, Duration::from_secs(20)).await;
    let mut ws = notify_client(&server, SEED_002_USER, "").await;
    broker.produce(TOPIC, 0, &[SEED_002.as_bytes().to_vec()]).await;
    assert_eq!(next_json(&mut ws).await["title"], "Новый фильм");
}

#[tokio::test]
async fn kafka_start_latest_skips_the_backlog() {
    let Some(broker) = Broker::start().await else { return };
    broker.create_topic(TOPIC, 2).await;
    for p in 0..2 {
        broker.produce(TOPIC, p, &[notify("u", &format!("old-{p}"), "backlog")]).await;
    }
    let server = herald(&broker.addr, KafkaStart::Latest).await;
    positioned(&server, Duration::from_secs(20)).await;
    let mut ws = notify_client(&server, "u", "").await;
    broker.produce(TOPIC, 1, &[notify("u", "new", "new")]).await;
    assert_eq!(next_title(&mut ws, Duration::from_secs(10)).await.as_deref(), Some("new"));
    assert_silent(&mut ws, QUIET).await;
}
