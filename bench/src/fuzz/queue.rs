//! Queue messages: SQS bodies and Kafka values through `dispatch`'s parser, and whole SQS and
//! Kafka events through `DispatchDeps` over the in-memory store and a recording gateway.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::kafka::{KafkaEvent, KafkaRecord};
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use herald::config::DeliveryConfig;
use herald::delivery::{RedeliveryCheck, RedeliveryTimer};
use herald::domain::{AckMode, Api, Audience, Connection, Encoding, Push, Subscription, check_name};
use herald::gateway::{Frame, RecordingGateway};
use herald::protocol::pb;
use herald::queue::QueueError;
use herald::store::memory::MemoryStore;
use herald::store::{ConnectionStore, SubscriptionStore};
use herald_dispatch::message::parse;
use herald_dispatch::{DispatchDeps, idempotency_key};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use prost::Message as _;
use serde_json::{Map, Value, json};

use super::endpoints::RecordingQueue;
use super::inputs::{self, Bytes};
use super::{Budget, Report, block_on, drive, ensure};

// ---- one message --------------------------------------------------------------------------

/// A queue message body.
#[derive(Debug, Clone)]
pub enum QueueBody {
    /// Any bytes: random, a mutated valid message, deep JSON.
    Any(Bytes),
    /// A JSON object of seed 002's and `/notify`'s fields, with any values.
    Fields(Map<String, Value>),
}

impl QueueBody {
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Any(b) => b.0.clone(),
            Self::Fields(f) => Value::Object(f.clone()).to_string().into_bytes(),
        }
    }
}

/// One message and the id its source gives it (the SQS message id, or Kafka's coordinates).
#[derive(Debug, Clone)]
pub struct QueueRecord {
    pub body: QueueBody,
    pub fallback_id: String,
}

/// The users and events of the fixture (see [`Fixture`]), so generated messages reach someone.
const USERS: &[&str] = &["1", "2", "3", "9"];
const EVENTS: &[&str] = &["news", "other", "none"];
const IDS: &[&str] = &["123e4567-e89b-12d3-a456-426614174000", "p-1", "p-2", "7"];

fn valid_message(users: &'static [&'static str], events: &'static [&'static str]) -> BoxedStrategy<Value> {
    prop_oneof![
        // Seed 002.
        (select(IDS), select(users), inputs::text(), inputs::text()).prop_map(|(id, user, subject, content)| {
            json!({"message_id": id, "delivery_method": "push", "user_id": user, "subject": subject, "content": content})
        }),
        // A /notify body, with or without its push id.
        (proptest::option::of(select(IDS)), proptest::option::of(select(users)), proptest::option::of(select(events)), inputs::json())
            .prop_filter("an audience", |(_, u, e, _)| u.is_some() || e.is_some())
            .prop_map(|(id, user, event, message)| {
                let mut m = json!({ "message": message });
                if let Some(id) = id {
                    m["id"] = id.into();
                }
                if let Some(user) = user {
                    m["user_id"] = user.parse::<i64>().map(Value::from).unwrap_or_else(|_| user.into());
                }
                if let Some(event) = event {
                    m["event_name"] = event.into();
                }
                m
            }),
    ]
    .boxed()
}

const MESSAGE_KEYS: &[&str] =
    &["id", "message_id", "delivery_method", "user_id", "event_name", "subject", "content", "title", "body", "message", "created_at"];

fn fields() -> BoxedStrategy<Map<String, Value>> {
    let value = |key: &str| -> BoxedStrategy<Value> {
        match key {
            "id" | "message_id" => inputs::id_value(IDS),
            "user_id" => inputs::id_value(USERS),
            "event_name" => inputs::id_value(EVENTS),
            "delivery_method" => prop_oneof![3 => Just(Value::from("push")), 1 => inputs::scalar()].boxed(),
            "message" => inputs::json(),
            _ => prop_oneof![3 => inputs::text().prop_map(Value::String), 1 => inputs::json()].boxed(),
        }
    };
    let entries: Vec<BoxedStrategy<Option<(String, Value)>>> =
        MESSAGE_KEYS.iter().map(|k| proptest::option::weighted(0.35, value(k).prop_map(move |v| (k.to_string(), v))).boxed()).collect();
    (entries, proptest::option::weighted(0.2, (inputs::key(), inputs::json())))
        .prop_map(|(entries, extra)| entries.into_iter().flatten().chain(extra).collect())
        .boxed()
}

fn queue_body(users: &'static [&'static str], events: &'static [&'static str]) -> BoxedStrategy<QueueBody> {
    prop_oneof![
        1 => inputs::bytes().prop_map(|b| QueueBody::Any(Bytes(b))),
        2 => inputs::mutated(valid_message(users, events).prop_map(|v| v.to_string().into_bytes()).boxed()).prop_map(|b| QueueBody::Any(Bytes(b))),
        3 => valid_message(users, events).prop_map(|v| match v {
            Value::Object(m) => QueueBody::Fields(m),
            other => QueueBody::Any(Bytes(other.to_string().into_bytes())),
        }),
        3 => fields().prop_map(QueueBody::Fields),
        1 => inputs::deep_json().prop_map(|d| QueueBody::Any(Bytes(format!("{{\"user_id\":\"1\",\"message\":{d}}}").into_bytes()))),
    ]
    .boxed()
}

fn fallback_id() -> BoxedStrategy<String> {
    prop_oneof![
        4 => inputs::re("[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"),
        1 => inputs::text(),
        1 => inputs::boundary_string(),
    ]
    .boxed()
}

fn queue_record() -> BoxedStrategy<QueueRecord> {
    (queue_body(USERS, EVENTS), fallback_id()).prop_map(|(body, fallback_id)| QueueRecord { body, fallback_id }).boxed()
}

pub fn check_queue_message(input: &QueueRecord) -> Result<(), String> {
    let bytes = input.body.bytes();
    let result = parse(&bytes, &input.fallback_id);
    let json = serde_json::from_slice::<Value>(&bytes).ok();
    match &result {
        Ok(push) => {
            ensure!(json.as_ref().is_some_and(Value::is_object), "a body that is not a JSON object was accepted");
            ensure!(check_name("id", &push.id).is_ok(), "push id {:?} is not 1..=256 characters", push.id);
            ensure!(push.audience().is_some(), "a push without an audience");
            if let Some(user) = &push.user_id {
                ensure!(check_name("user_id", user).is_ok(), "user id {user:?} is not 1..=256 characters");
            }
            if let Some(event) = &push.event_name {
                ensure!(check_name("event_name", event).is_ok(), "event name {event:?} is not 1..=256 characters");
            }
            let obj = json.as_ref().and_then(Value::as_object).ok_or("not an object")?;
            let has_id = |k: &str| obj.get(k).is_some_and(|v| !v.is_null());
            if !has_id("id") && !has_id("message_id") {
                ensure!(push.id == input.fallback_id, "a message without an id became push {:?}, not the source's id", push.id);
            }
            if obj.get("delivery_method").and_then(Value::as_str) == Some("push") {
                // Seed 002: a direct push; subject → title, content → body.
                ensure!(push.event_name.is_none(), "a seed 002 message with an event name");
                ensure!(push.title.as_deref() == obj.get("subject").and_then(Value::as_str), "subject → title");
                ensure!(push.body.as_deref() == obj.get("content").and_then(Value::as_str), "content → body");
            }
            // The push as notify queues it parses back to the same push.
            let again = serde_json::to_vec(push).map_err(|e| e.to_string())?;
            let reparsed = parse(&again, "other-id");
            let same = reparsed.as_ref().is_ok_and(|p| {
                let message = match (&p.message, &push.message) {
                    (Some(a), Some(b)) => inputs::same_json(a, b),
                    (a, b) => a == b,
                };
                message && Push { message: None, ..p.clone() } == Push { message: None, ..push.clone() }
            });
            ensure!(same, "the queued form of {push:?} parses as {reparsed:?}");
        }
        Err(e) => {
            ensure!(!e.0.is_empty(), "an empty reason");
            if let Some(Value::Object(obj)) = &json
                && obj.get("delivery_method").and_then(Value::as_str) == Some("sms")
            {
                ensure!(e.0.contains("sms"), "the reason {:?} does not name the unknown method", e.0);
            }
        }
    }
    Ok(())
}

pub(super) fn run_queue_message(budget: &Budget, seed: u64) -> Report {
    drive("queue_message", budget, seed, queue_record(), check_queue_message)
}

// ---- whole batches ------------------------------------------------------------------------

/// Redelivery checks, scheduled and forgotten.
struct NoTimer;

#[async_trait]
impl RedeliveryTimer for NoTimer {
    async fn schedule(&self, _check: &RedeliveryCheck, _after: Duration) -> Result<(), QueueError> {
        Ok(())
    }
}

/// The connections every batch meets: users 1, 2 and 3 in JSON and protobuf, with and without
/// acks, subscribed to `news` and `other`, and a chat connection of user 1 that no push may reach.
struct Fixture {
    store: MemoryStore,
    connections: Vec<(Connection, Vec<&'static str>)>,
}

impl Fixture {
    async fn new() -> Result<Self, String> {
        let ttl = Duration::from_secs(3600);
        let notify = |id: &str, user: &str, encoding: Encoding, ack: AckMode| {
            let mut c = Connection::opened(id, user, Api::Notify, ttl);
            c.encoding = encoding;
            c.ack_mode = ack;
            c
        };
        let connections = vec![
            (notify("conn-a", "1", Encoding::Json, AckMode::None), vec!["news"]),
            (notify("conn-b", "2", Encoding::Protobuf, AckMode::Required), vec!["news", "other"]),
            (notify("conn-c", "3", Encoding::Json, AckMode::Required), vec![]),
            (notify("conn-d", "1", Encoding::Json, AckMode::None), vec!["other"]),
            (Connection::opened("chat-1", "1", Api::Chat, ttl), vec![]),
        ];
        let store = MemoryStore::new();
        for (c, events) in &connections {
            store.put_connection(c).await.map_err(|e| format!("fixture: {e}"))?;
            for e in events {
                store.subscribe(&Subscription::of(c, *e)).await.map_err(|e| format!("fixture: {e}"))?;
            }
        }
        Ok(Self { store, connections })
    }

    /// The connections a push must reach (CONTRACT §4).
    fn audience(&self, push: &Push) -> Vec<&Connection> {
        let notify = self.connections.iter().filter(|(c, _)| c.api == Api::Notify);
        match push.audience() {
            None => Vec::new(),
            Some(Audience::User(u)) => notify.filter(|(c, _)| c.user_id == u).map(|(c, _)| c).collect(),
            Some(Audience::UserEvent { user_id, event_name }) => {
                notify.filter(|(c, ev)| c.user_id == user_id && ev.contains(&event_name)).map(|(c, _)| c).collect()
            }
            Some(Audience::Event(e)) => notify.filter(|(_, ev)| ev.contains(&e)).map(|(c, _)| c).collect(),
        }
    }
}

/// The push id a frame carries, checked against the connection's encoding.
fn frame_push_id(frame: &Frame, connection: &Connection) -> Result<String, String> {
    match (frame, connection.encoding) {
        (Frame::Text(text), Encoding::Json) => {
            let v: Value = serde_json::from_str(text).map_err(|e| format!("a push frame that is not JSON: {e}"))?;
            ensure!(v["type"] == "push", "a frame that is no push: {v}");
            v["id"].as_str().map(str::to_owned).ok_or_else(|| format!("a push frame without id: {v}"))
        }
        (Frame::Binary(bytes), Encoding::Protobuf) => {
            let msg = pb::ServerMessage::decode(bytes.as_slice()).map_err(|e| format!("a push that is no ServerMessage: {e}"))?;
            match msg.server_message {
                Some(pb::server_message::ServerMessage::PushNotification(n)) => Ok(n.id),
                other => Err(format!("a protobuf frame that is no push: {other:?}")),
            }
        }
        (frame, encoding) => Err(format!("{} frame to a {encoding:?} connection", if frame.is_binary() { "binary" } else { "text" })),
    }
}

/// One message of a batch: where it came from and what the parser makes of it.
struct Handed {
    source: String,
    fallback_id: String,
    push: Option<Push>,
}

/// What must hold after a batch: every undeliverable message dead-lettered (once, named by its
/// source id), nothing else dead-lettered, every deliverable message (the first of its
/// idempotency key) at every connection of its audience, and no push anywhere else.
fn check_outcome(fixture: &Fixture, handed: &[Handed], gateway: &RecordingGateway, dead_letters: &RecordingQueue) -> Result<(), String> {
    let mut expected_dead: Vec<&str> = handed.iter().filter(|h| h.push.is_none()).map(|h| h.fallback_id.as_str()).collect();
    let mut dead: Vec<String> = Vec::new();
    for letter in dead_letters.sent() {
        let v: Value = serde_json::from_str(&letter).map_err(|e| format!("a dead letter that is not JSON: {e}"))?;
        ensure!(v["reason"].as_str().is_some_and(|r| !r.is_empty()), "a dead letter without a reason: {v}");
        dead.push(v["source_message_id"].as_str().ok_or_else(|| format!("a dead letter without source_message_id: {v}"))?.to_owned());
    }
    expected_dead.sort_unstable();
    dead.sort_unstable();
    ensure!(dead == expected_dead, "dead-lettered {dead:?}, expected {expected_dead:?}");

    let by_id: BTreeMap<&str, &Connection> = fixture.connections.iter().map(|(c, _)| (c.connection_id.as_str(), c)).collect();
    let mut received: HashSet<(String, String)> = HashSet::new();
    for (connection_id, frame) in gateway.sent() {
        let connection = by_id.get(connection_id.as_str()).ok_or_else(|| format!("a frame to unknown connection {connection_id}"))?;
        let push_id = frame_push_id(&frame, connection)?;
        let reached = handed.iter().filter_map(|h| h.push.as_ref()).any(|p| p.id == push_id && fixture.audience(p).contains(connection));
        ensure!(reached, "push {push_id} reached {connection_id} (user {}), outside its audience", connection.user_id);
        received.insert((connection_id, push_id));
    }
    let mut keys = HashSet::new();
    for h in handed {
        let Some(push) = &h.push else { continue };
        if !keys.insert(idempotency_key(&h.source, &push.id)) {
            continue; // a duplicate: pushed once, by the first message of its key
        }
        for c in fixture.audience(push) {
            ensure!(
                received.contains(&(c.connection_id.clone(), push.id.clone())),
                "push {} (from {}) never reached {} of its audience",
                push.id,
                h.fallback_id,
                c.connection_id
            );
        }
    }
    Ok(())
}

/// What dispatch writes to: the gateway, the dead-letter and fan-out queues.
#[derive(Default)]
struct Sinks {
    gateway: RecordingGateway,
    dead_letters: RecordingQueue,
    fanout: RecordingQueue,
    settings: DeliveryConfig,
}

impl Sinks {
    fn deps<'a>(&'a self, fixture: &'a Fixture) -> DispatchDeps<'a, MemoryStore> {
        DispatchDeps {
            store: &fixture.store,
            gateway: &self.gateway,
            timer: &NoTimer,
            dead_letters: &self.dead_letters,
            fanout: &self.fanout,
            settings: &self.settings,
        }
    }
}

/// An SQS batch: up to 10 messages from up to two queues (and one without an ARN).
#[derive(Debug, Clone)]
pub struct SqsBatch {
    pub records: Vec<SqsRecord>,
}

#[derive(Debug, Clone)]
pub struct SqsRecord {
    pub message_id: Option<String>,
    pub queue: Option<&'static str>,
    pub body: Option<QueueBody>,
}

const QUEUES: &[&str] = &["arn:aws:sqs:eu-west-1:123456789012:herald-notifications", "arn:aws:sqs:eu-west-1:123456789012:other-producer"];

fn sqs_batch() -> BoxedStrategy<SqsBatch> {
    let record = (
        proptest::option::weighted(0.95, prop_oneof![4 => fallback_id(), 1 => select(IDS).prop_map(String::from)]),
        proptest::option::weighted(0.9, select(QUEUES)),
        proptest::option::weighted(0.95, queue_body(USERS, EVENTS)),
    )
        .prop_map(|(message_id, queue, body)| SqsRecord { message_id, queue, body });
    vec(record, 1..11).prop_map(|records| SqsBatch { records }).boxed()
}

pub fn check_sqs_batch(input: &SqsBatch) -> Result<(), String> {
    block_on(async {
        let fixture = Fixture::new().await?;
        let records: Vec<SqsMessage> = input
            .records
            .iter()
            .map(|r| {
                let mut m = SqsMessage::default();
                m.message_id = r.message_id.clone();
                m.event_source_arn = r.queue.map(String::from);
                m.event_source = Some("aws:sqs".into());
                m.body = r.body.as_ref().map(|b| String::from_utf8_lossy(&b.bytes()).into_owned());
                m
            })
            .collect();
        let handed: Vec<Handed> = records
            .iter()
            .map(|m| {
                let fallback_id = m.message_id.clone().unwrap_or_default();
                let push = parse(m.body.as_deref().unwrap_or_default().as_bytes(), &fallback_id).ok();
                Handed { source: m.event_source_arn.clone().unwrap_or_else(|| "sqs".into()), fallback_id, push }
            })
            .collect();
        let mut event = SqsEvent::default();
        event.records = records;
        let sinks = Sinks::default();
        let response = sinks.deps(&fixture).handle_sqs(event).await;
        let failed: Vec<&str> = response.batch_item_failures.iter().map(|f| f.item_identifier.as_str()).collect();
        ensure!(failed.is_empty(), "messages {failed:?} reported for retry with nothing failing");
        check_outcome(&fixture, &handed, &sinks.gateway, &sinks.dead_letters)
    })
}

pub(super) fn run_sqs_batch(budget: &Budget, seed: u64) -> Report {
    drive("sqs_batch", budget, seed, sqs_batch(), check_sqs_batch)
}

/// A Kafka batch: records of two topics (and one without a topic) over a few partitions.
#[derive(Debug, Clone)]
pub struct KafkaBatch {
    pub records: Vec<KafkaRecordInput>,
}

#[derive(Debug, Clone)]
pub struct KafkaRecordInput {
    pub topic: Option<&'static str>,
    pub partition: i64,
    /// Added to the previous record's offset (offsets are unique, as a broker makes them).
    pub offset_step: i64,
    pub value: KafkaValue,
}

#[derive(Debug, Clone)]
pub enum KafkaValue {
    Absent,
    /// The message, base64 as Lambda's Kafka event carries it.
    Base64(QueueBody),
    /// A value as it is: mostly not base64.
    Raw(String),
}

fn kafka_batch() -> BoxedStrategy<KafkaBatch> {
    let value = prop_oneof![
        1 => Just(KafkaValue::Absent),
        8 => queue_body(USERS, EVENTS).prop_map(KafkaValue::Base64),
        2 => prop_oneof![inputs::text(), inputs::mutated_text(inputs::bytes().prop_map(|b| STANDARD.encode(b)).boxed())].prop_map(KafkaValue::Raw),
    ];
    let record = (proptest::option::weighted(0.9, select(vec!["notification.send", "other.topic"])), 0..3i64, 1..3i64, value)
        .prop_map(|(topic, partition, offset_step, value)| KafkaRecordInput { topic, partition, offset_step, value });
    vec(record, 1..11).prop_map(|records| KafkaBatch { records }).boxed()
}

pub fn check_kafka_batch(input: &KafkaBatch) -> Result<(), String> {
    block_on(async {
        let fixture = Fixture::new().await?;
        let mut event = KafkaEvent::default();
        let mut handed = Vec::new();
        let mut offset = 0;
        for r in &input.records {
            offset += r.offset_step;
            let mut record = KafkaRecord::default();
            record.topic = r.topic.map(String::from);
            record.partition = r.partition;
            record.offset = offset;
            record.value = match &r.value {
                KafkaValue::Absent => None,
                KafkaValue::Base64(body) => Some(STANDARD.encode(body.bytes())),
                KafkaValue::Raw(text) => Some(text.clone()),
            };
            let topic = r.topic.unwrap_or_default();
            let fallback_id = format!("kafka:{topic}:{}:{offset}", r.partition);
            let bytes = match record.value.as_deref().map(|v| STANDARD.decode(v)) {
                Some(Ok(bytes)) => bytes,
                Some(Err(_)) => b"<value is not base64>".to_vec(),
                None => Vec::new(),
            };
            let push = parse(&bytes, &fallback_id).ok();
            handed.push(((r.partition, offset), Handed { source: format!("kafka:{topic}"), fallback_id, push }));
            event.records.entry(format!("{topic}-{}", r.partition)).or_default().push(record);
        }
        // Lambda's order: by topic, partition and offset; duplicates are decided in that order.
        handed.sort_by(|(at_a, a), (at_b, b)| (&a.source, at_a).cmp(&(&b.source, at_b)));
        let handed: Vec<Handed> = handed.into_iter().map(|(_, h)| h).collect();
        let sinks = Sinks::default();
        let processed = sinks.deps(&fixture).handle_kafka(event).await;
        let processed = processed.map_err(|e| format!("handle_kafka failed: {e}"))?;
        ensure!(processed == input.records.len(), "{processed} of {} records processed", input.records.len());
        check_outcome(&fixture, &handed, &sinks.gateway, &sinks.dead_letters)
    })
}

pub(super) fn run_kafka_batch(budget: &Budget, seed: u64) -> Report {
    drive("kafka_batch", budget, seed, kafka_batch(), check_kafka_batch)
}
