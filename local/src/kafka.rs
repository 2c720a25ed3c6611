//! The Kafka event source (`--kafka <host:port>`, CONTRACT §4 "Kafka locally"): topic
//! `notification.send` (every partition) polled from a real broker into `dispatch`, the way
//! Lambda's Kafka event source mapping does it: batches of up to [`BATCH_SIZE`] records or
//! [`BATCH_WINDOW`], as the very event Lambda delivers (`eventSource` `SelfManagedKafka`), and
//! offsets committed to the broker under consumer group [`GROUP`] only once dispatch succeeded
//! for the batch, so a restart resumes where the last committed batch ended. A record that keeps
//! failing is dead-lettered by dispatch itself (`handle_kafka`, with its topic, partition and
//! offset); only a batch whose dead-lettering failed is tried again, whole.
//!
//! Records come through `rskafka` (pure Rust). rskafka has no consumer groups: it implements
//! neither FindCoordinator, OffsetFetch nor OffsetCommit, and its protocol module is private. Those
//! three requests are written here over a small framed TCP client of their own ([`GroupClient`]):
//! the oldest non-flexible versions that carry everything needed (FindCoordinator v0, OffsetFetch
//! v1, OffsetCommit v2; every broker since Kafka 0.10.2 speaks them), a few dozen lines, rather
//! than a second Kafka client or librdkafka (C). herald-local commits as a standalone consumer
//! (generation -1, no member id), as it owns every partition and never joins a group.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Weak};
use std::time::Duration;

use aws_lambda_events::encodings::MillisecondTimestamp;
use aws_lambda_events::kafka::{KafkaEvent, KafkaRecord};
use base64::Engine as _;
use rskafka::client::partition::{OffsetAt, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::RecordAndOffset;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use crate::functions::Handlers;

/// The consumer group whose offsets herald-local commits.
pub const GROUP: &str = "herald-local";
/// The topic of seed 002.
pub const DEFAULT_TOPIC: &str = "notification.send";
/// Records per batch at most (Lambda's default `BatchSize` for Kafka).
pub const BATCH_SIZE: usize = 100;
/// How long a batch waits for more records after its first (Lambda's default
/// `MaximumBatchingWindowInSeconds` for Kafka is 500 ms).
pub const BATCH_WINDOW: Duration = Duration::from_millis(500);
/// The longest pause between two tries of an unreachable broker.
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long one request may keep failing inside rskafka before it comes back to the poller.
const REQUEST_DEADLINE: Duration = Duration::from_secs(3);
/// How long a fetch waits for records on the broker. Kafka answers as soon as a record is there,
/// so this only paces an idle partition's polls (10 a second); tansu 0.6 holds every fetch for
/// about its whole wait even when it has records (it sleeps before checking), so this bounds the
/// latency it adds: `herald-bench kafka`'s p50 from produce to receive at 1,000 records/s was
/// 430 ms with a 500 ms wait, 200 ms with 100 ms.
const FETCH_WAIT_MS: i32 = 100;
/// The most a fetch returns.
const FETCH_BYTES: i32 = 4 * 1024 * 1024;

/// Where a group without a committed offset starts (`--kafka-start`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum KafkaStart {
    /// The earliest record on the partition (the default, as Lambda's `TRIM_HORIZON`).
    #[default]
    Earliest,
    /// Only records produced from now on: a backlog is skipped.
    Latest,
}

/// `--kafka`, `--kafka-topic`, `--kafka-start`.
#[derive(Debug, Clone)]
pub struct KafkaOptions {
    /// `host:port` of a broker.
    pub bootstrap: String,
    pub topic: String,
    pub start: KafkaStart,
}

impl KafkaOptions {
    pub fn new(bootstrap: impl Into<String>) -> Self {
        Self { bootstrap: bootstrap.into(), topic: DEFAULT_TOPIC.into(), start: KafkaStart::Earliest }
    }
}

/// What `GET /health` reads: whether the poller holds a position on every partition.
#[derive(Debug, Default)]
pub struct KafkaStatus {
    positioned: AtomicBool,
}

impl KafkaStatus {
    pub fn positioned(&self) -> bool {
        self.positioned.load(Ordering::SeqCst)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("{0}")]
    Client(#[from] rskafka::client::error::Error),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Protocol(String),
    #[error("topic {0} does not exist on the broker")]
    NoTopic(String),
}

/// Polls forever: positions on every partition, then batches records into `dispatch`. A broker
/// that is unreachable, or goes away, is tried again with a growing pause; that is logged once
/// when it starts failing and once when it answers again, not on every try.
pub async fn run(options: KafkaOptions, handlers: Weak<Handlers>, status: Arc<KafkaStatus>) {
    let mut backoff = Duration::from_millis(100);
    let mut failing = false;
    loop {
        let e = session(&options, &handlers, &status, &mut failing, &mut backoff).await;
        status.positioned.store(false, Ordering::SeqCst);
        let Some(e) = e else { return };
        if !failing {
            tracing::warn!(broker = options.bootstrap, topic = options.topic, error = %e,
                "Kafka poller: the broker failed; retrying with backoff until it answers (not logged again until then)");
            failing = true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// One connected stretch: `None` when the handlers are gone (the server stopped).
async fn session(
    options: &KafkaOptions,
    handlers: &Weak<Handlers>,
    status: &KafkaStatus,
    failing: &mut bool,
    backoff: &mut Duration,
) -> Option<KafkaError> {
    let (client, mut group, positions) = match position(options).await {
        Ok(p) => p,
        Err(e) => return Some(e),
    };
    status.positioned.store(true, Ordering::SeqCst);
    *backoff = Duration::from_millis(100);
    if std::mem::take(failing) {
        tracing::info!(broker = options.bootstrap, "Kafka poller: the broker answers again");
    }
    tracing::info!(broker = options.bootstrap, topic = options.topic, group = GROUP, ?positions, "Kafka poller positioned");
    let (tx, mut rx) = mpsc::channel::<Result<(i32, RecordAndOffset), KafkaError>>(4 * BATCH_SIZE);
    let mut fetchers = tokio::task::JoinSet::new();
    for (&partition, &offset) in &positions {
        let partition_client = match client.partition_client(options.topic.clone(), partition, UnknownTopicHandling::Retry).await {
            Ok(c) => c,
            Err(e) => return Some(e.into()),
        };
        let tx = tx.clone();
        fetchers.spawn(async move {
            let mut offset = offset;
            loop {
                match fetch(&partition_client, offset).await {
                    Ok(records) => {
                        for r in records {
                            offset = r.offset + 1;
                            if tx.send(Ok((partition, r))).await.is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                }
            }
        });
    }
    drop(tx);
    loop {
        let Some(first) = rx.recv().await else { return Some(KafkaError::Protocol("every fetcher stopped".into())) };
        let mut batch = match first {
            Ok(r) => vec![r],
            Err(e) => return Some(e),
        };
        let window = tokio::time::Instant::now() + BATCH_WINDOW;
        while batch.len() < BATCH_SIZE {
            match tokio::time::timeout_at(window, rx.recv()).await {
                Ok(Some(Ok(r))) => batch.push(r),
                Ok(Some(Err(e))) => return Some(e),
                Ok(None) | Err(_) => break,
            }
        }
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for (partition, r) in &batch {
            next.insert(*partition, r.offset + 1);
        }
        let event = lambda_event(options, batch);
        // A failing batch (dispatch could not even dead-letter a record) is tried again whole:
        // what it had already pushed is claimed and skipped.
        let mut pause = Duration::from_millis(100);
        loop {
            // The handlers gone: the server stopped.
            let h = handlers.upgrade()?;
            match h.dispatch_deps().handle_kafka(event.clone()).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, "Kafka batch failed; it is tried again (its offsets stay uncommitted)");
                    drop(h);
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(MAX_BACKOFF);
                }
            }
        }
        if let Err(e) = group.commit(&options.topic, &next).await {
            return Some(e);
        }
    }
}

/// The records of a partition from `offset` on. A broker answers a fetch with whole record
/// batches, and Kafka's includes the batch holding `offset` even when it starts before it. tansu
/// 0.6 (the tests' broker) only returns batches that start at or after `offset`, so a position in
/// the middle of a producer's batch (where a commit after a 100-record dispatch often lands) would
/// skip the rest of that batch. When the answer does not start at `offset` although the partition
/// has records there (nothing, or a first record past it, below the high watermark), this fetches
/// again from further back (1, 2, 4… records, not below the log's start) until the answer reaches
/// back before `offset`, and keeps what is at or after it. With Kafka that costs one extra fetch,
/// only where `offset` itself is gone (compaction, transaction markers).
async fn fetch(client: &rskafka::client::partition::PartitionClient, offset: i64) -> Result<Vec<RecordAndOffset>, KafkaError> {
    let (records, high_watermark) = client.fetch_records(offset, 1..FETCH_BYTES, FETCH_WAIT_MS).await?;
    let starts_there = records.first().is_some_and(|r| r.offset <= offset);
    if starts_there || offset >= high_watermark {
        return Ok(records);
    }
    let earliest = client.get_offset(OffsetAt::Earliest).await?;
    let mut back = 1;
    loop {
        let from = (offset - back).max(earliest);
        let (found, _) = client.fetch_records(from, 1..FETCH_BYTES, 0).await?;
        if found.first().is_some_and(|r| r.offset < offset) || from == earliest {
            return Ok(found.into_iter().filter(|r| r.offset >= offset).collect());
        }
        back *= 2;
    }
}

/// Connects, finds the partitions and where the group left each of them.
async fn position(options: &KafkaOptions) -> Result<(Client, GroupClient, BTreeMap<i32, i64>), KafkaError> {
    let backoff = rskafka::BackoffConfig { deadline: Some(REQUEST_DEADLINE), ..Default::default() };
    let client = ClientBuilder::new(vec![options.bootstrap.clone()]).client_id(GROUP).backoff_config(backoff).build().await?;
    let topics = client.list_topics().await?;
    let topic = topics.into_iter().find(|t| t.name == options.topic).ok_or_else(|| KafkaError::NoTopic(options.topic.clone()))?;
    let partitions: Vec<i32> = topic.partitions.into_iter().collect();
    if partitions.is_empty() {
        return Err(KafkaError::NoTopic(options.topic.clone()));
    }
    let mut group = GroupClient::connect(&options.bootstrap).await?;
    let committed = group.fetch(&options.topic, &partitions).await?;
    let mut positions = BTreeMap::new();
    for p in partitions {
        let offset = match committed.get(&p) {
            Some(&o) if o >= 0 => o,
            _ => {
                let at = match options.start {
                    KafkaStart::Earliest => OffsetAt::Earliest,
                    KafkaStart::Latest => OffsetAt::Latest,
                };
                client.partition_client(options.topic.clone(), p, UnknownTopicHandling::Retry).await?.get_offset(at).await?
            }
        };
        positions.insert(p, offset);
    }
    Ok((client, group, positions))
}

/// The event Lambda's self-managed Kafka event source delivers: records keyed
/// `"<topic>-<partition>"`, in offset order, values and keys base64, headers as byte arrays.
pub fn lambda_event(options: &KafkaOptions, batch: Vec<(i32, RecordAndOffset)>) -> KafkaEvent {
    let b64 = |bytes: Vec<u8>| base64::engine::general_purpose::STANDARD.encode(bytes);
    let mut records: HashMap<String, Vec<KafkaRecord>> = HashMap::new();
    for (partition, r) in batch {
        let mut record = KafkaRecord::default();
        record.topic = Some(options.topic.clone());
        record.partition = i64::from(partition);
        record.offset = r.offset;
        record.timestamp = MillisecondTimestamp(r.record.timestamp);
        record.timestamp_type = Some("CREATE_TIME".into());
        record.key = r.record.key.map(b64);
        record.value = r.record.value.map(b64);
        record.headers =
            r.record.headers.into_iter().map(|(k, v)| HashMap::from([(k, v.into_iter().map(|b| b as i8).collect())])).collect();
        records.entry(format!("{}-{partition}", options.topic)).or_default().push(record);
    }
    let mut event = KafkaEvent::default();
    event.event_source = Some("SelfManagedKafka".into());
    event.bootstrap_servers = Some(options.bootstrap.clone());
    event.records = records;
    event
}

/// FindCoordinator, OffsetFetch and OffsetCommit over a connection of their own (see the module
/// comment for why they are not rskafka's): the group's coordinator, found through the bootstrap
/// broker.
pub struct GroupClient {
    stream: TcpStream,
    correlation: i32,
}

const FIND_COORDINATOR: i16 = 10;
const OFFSET_FETCH: i16 = 9;
const OFFSET_COMMIT: i16 = 8;

impl GroupClient {
    /// Connects to `bootstrap`, asks it for the coordinator of [`GROUP`] and connects there.
    pub async fn connect(bootstrap: &str) -> Result<Self, KafkaError> {
        let mut client = Self { stream: connect(bootstrap).await?, correlation: 0 };
        let mut body = Vec::new();
        put_str(&mut body, GROUP);
        let reply = client.call(FIND_COORDINATOR, 0, &body).await?;
        let mut r = Reader(&reply);
        let error = r.i16()?;
        let _node = r.i32()?;
        let host = r.string()?;
        let port = r.i32()?;
        if error != 0 {
            return Err(KafkaError::Protocol(format!("FindCoordinator for group {GROUP} answered error code {error}")));
        }
        let coordinator = format!("{host}:{port}");
        if coordinator != bootstrap {
            client.stream = connect(&coordinator).await?;
        }
        Ok(client)
    }

    /// The group's committed offsets (the next record to read) on `partitions`; `-1` where none is.
    pub async fn fetch(&mut self, topic: &str, partitions: &[i32]) -> Result<BTreeMap<i32, i64>, KafkaError> {
        let mut body = Vec::new();
        put_str(&mut body, GROUP);
        body.extend(1i32.to_be_bytes());
        put_str(&mut body, topic);
        body.extend((partitions.len() as i32).to_be_bytes());
        for p in partitions {
            body.extend(p.to_be_bytes());
        }
        let reply = self.call(OFFSET_FETCH, 1, &body).await?;
        let mut r = Reader(&reply);
        let mut offsets = BTreeMap::new();
        for _ in 0..r.i32()? {
            let _topic = r.string()?;
            for _ in 0..r.i32()? {
                let partition = r.i32()?;
                let offset = r.i64()?;
                let _metadata = r.nullable_string()?;
                let error = r.i16()?;
                if error != 0 {
                    return Err(KafkaError::Protocol(format!("OffsetFetch of {topic}-{partition} answered error code {error}")));
                }
                offsets.insert(partition, offset);
            }
        }
        Ok(offsets)
    }

    /// Commits `next` (partition → the next offset to read) for the group.
    pub async fn commit(&mut self, topic: &str, next: &BTreeMap<i32, i64>) -> Result<(), KafkaError> {
        let mut body = Vec::new();
        put_str(&mut body, GROUP);
        body.extend((-1i32).to_be_bytes()); // generation: a standalone consumer
        put_str(&mut body, ""); // member id
        body.extend((-1i64).to_be_bytes()); // retention: the broker's
        body.extend(1i32.to_be_bytes());
        put_str(&mut body, topic);
        body.extend((next.len() as i32).to_be_bytes());
        for (p, o) in next {
            body.extend(p.to_be_bytes());
            body.extend(o.to_be_bytes());
            body.extend((-1i16).to_be_bytes()); // metadata: null
        }
        let reply = self.call(OFFSET_COMMIT, 2, &body).await?;
        let mut r = Reader(&reply);
        for _ in 0..r.i32()? {
            let _topic = r.string()?;
            for _ in 0..r.i32()? {
                let partition = r.i32()?;
                let error = r.i16()?;
                if error != 0 {
                    return Err(KafkaError::Protocol(format!("OffsetCommit of {topic}-{partition} answered error code {error}")));
                }
            }
        }
        Ok(())
    }

    /// One request (header v1: key, version, correlation id, client id) and its response body.
    async fn call(&mut self, api_key: i16, version: i16, body: &[u8]) -> Result<Vec<u8>, KafkaError> {
        self.correlation += 1;
        let mut frame = Vec::with_capacity(body.len() + 32);
        frame.extend(api_key.to_be_bytes());
        frame.extend(version.to_be_bytes());
        frame.extend(self.correlation.to_be_bytes());
        put_str(&mut frame, GROUP);
        frame.extend_from_slice(body);
        let io = async {
            self.stream.write_all(&(frame.len() as i32).to_be_bytes()).await?;
            self.stream.write_all(&frame).await?;
            let size = self.stream.read_i32().await?;
            if !(4..=64 * 1024 * 1024).contains(&size) {
                return Err(KafkaError::Protocol(format!("a response of {size} bytes")));
            }
            let mut reply = vec![0; size as usize];
            self.stream.read_exact(&mut reply).await?;
            Ok(reply)
        };
        let reply = tokio::time::timeout(Duration::from_secs(10), io)
            .await
            .map_err(|_| KafkaError::Protocol("the coordinator did not answer within 10 s".into()))??;
        let correlation = i32::from_be_bytes(reply[..4].try_into().unwrap_or_default());
        if correlation != self.correlation {
            return Err(KafkaError::Protocol(format!("correlation id {correlation}, expected {}", self.correlation)));
        }
        Ok(reply[4..].to_vec())
    }
}

async fn connect(addr: &str) -> Result<TcpStream, KafkaError> {
    let stream = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| KafkaError::Protocol(format!("connecting to {addr} timed out")))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend((s.len() as i16).to_be_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A response body, read front to back.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], KafkaError> {
        if self.0.len() < n {
            return Err(KafkaError::Protocol("a truncated response".into()));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn i16(&mut self) -> Result<i16, KafkaError> {
        Ok(i16::from_be_bytes(self.take(2)?.try_into().unwrap_or_default()))
    }

    fn i32(&mut self) -> Result<i32, KafkaError> {
        Ok(i32::from_be_bytes(self.take(4)?.try_into().unwrap_or_default()))
    }

    fn i64(&mut self) -> Result<i64, KafkaError> {
        Ok(i64::from_be_bytes(self.take(8)?.try_into().unwrap_or_default()))
    }

    fn nullable_string(&mut self) -> Result<Option<String>, KafkaError> {
        let len = self.i16()?;
        if len < 0 {
            return Ok(None);
        }
        Ok(Some(String::from_utf8_lossy(self.take(len as usize)?).into_owned()))
    }

    fn string(&mut self) -> Result<String, KafkaError> {
        Ok(self.nullable_string()?.unwrap_or_default())
    }
}
