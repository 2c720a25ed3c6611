//! `kafka`: herald-local's Kafka poller (`--kafka`) from a real broker (tansu, from
//! `HERALD_TEST_TANSU` as the tests run it: in-memory storage, 127.0.0.1) to live WebSocket
//! clients. 1,000 users with one connection each; topic `notification.send` with 4 partitions.
//!
//! - throughput: 100,000 records (100 per user) produced as fast as rskafka produces them (batches
//!   of 1,000), timed from the first produce to the last frame received;
//! - latency: 1,000 records/s for 10 s, each carrying its produce time; end-to-end p50/p99/max
//!   from the produce call to the frame's arrival at the client.
//!
//! Left out: loopback only, no TLS; one broker, in-memory (tansu, not Apache Kafka); the embedded
//! in-memory store; the poller's batching window (500 ms, as Lambda's default) is part of the
//! latency, as it is on Lambda; the clients run in the same process and share its cores.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use herald_local::kafka::{KafkaOptions, KafkaStart};
use rskafka::client::ClientBuilder;
use rskafka::client::partition::{Compression, PartitionClient, UnknownTopicHandling};
use rskafka::record::Record;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::BenchBackend;
use crate::common::{self, Percentiles, Result, figure, ms};

const TOPIC: &str = "notification.send";
const PARTITIONS: i32 = 4;

/// tansu on a free port, killed on drop.
struct Broker {
    child: std::process::Child,
    dir: std::path::PathBuf,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn now_us() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros()).unwrap_or_default()
}

fn record(user: usize, id: &str, title: &str) -> Record {
    let value = json!({"message_id": id, "user_id": format!("k{user}"), "title": title, "body": "b"}).to_string();
    Record { key: None, value: Some(value.into_bytes()), headers: BTreeMap::new(), timestamp: rskafka::chrono::Utc::now() }
}

pub async fn run(users: usize, records: usize, rate: u64, seconds: u64) -> Result<()> {
    let bin = std::env::var("HERALD_TEST_TANSU")
        .map_err(|_| "HERALD_TEST_TANSU is not set: source scripts/services.sh and run herald_install_tansu")?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let dir = std::env::temp_dir().join(format!("herald-bench-tansu-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("tcp://127.0.0.1:{port}");
    let child = std::process::Command::new(bin)
        .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url, "--storage-engine", "memory://tansu/"])
        .current_dir(&dir)
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let _broker = Broker { child, dir };
    let addr = format!("127.0.0.1:{port}");
    let mut client = None;
    for _ in 0..200 {
        if let Ok(c) = ClientBuilder::new(vec![addr.clone()]).build().await {
            client = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let client = client.ok_or("tansu did not start")?;
    client.controller_client()?.create_topic(TOPIC, PARTITIONS, 1, 5_000).await?;
    let mut producers: Vec<PartitionClient> = Vec::new();
    for p in 0..PARTITIONS {
        producers.push(client.partition_client(TOPIC, p, UnknownTopicHandling::Retry).await?);
    }
    let producers = Arc::new(producers);

    let kafka = KafkaOptions { bootstrap: addr.clone(), topic: TOPIC.into(), start: KafkaStart::Earliest };
    let server = common::start_server_with(BenchBackend::Embedded, move |o| o.kafka = Some(kafka)).await?;
    let positioned = Instant::now() + Duration::from_secs(30);
    while !server.app.kafka.as_ref().is_some_and(|k| k.positioned()) {
        if Instant::now() > positioned {
            return Err("the poller was not positioned within 30 s".into());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // The clients: each counts its frames and records the latency of the timed ones.
    let received = Arc::new(AtomicUsize::new(0));
    let latencies = Arc::new(std::sync::Mutex::new(Vec::<Duration>::new()));
    let base = server.ws_url("");
    let config = tokio_tungstenite::tungstenite::protocol::WebSocketConfig::default().read_buffer_size(common::CLIENT_READ_BUFFER);
    let clients: Vec<Result<common::Ws>> = futures::stream::iter(0..users)
        .map(|i| {
            let base = base.clone();
            async move {
                let token = common::user_token(&format!("k{i}"))?;
                common::connect_with(&format!("{base}/api/v1/notify/ws?token={token}"), Duration::from_secs(30), Some(config)).await
            }
        })
        .buffer_unordered(100)
        .collect()
        .await;
    for ws in clients {
        let mut ws = ws?;
        let received = received.clone();
        let latencies = latencies.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = ws.next().await {
                let Message::Text(t) = m else { continue };
                let at = now_us();
                if let Ok(v) = serde_json::from_str::<Value>(&t) {
                    if let Some(sent) = v["title"].as_str().and_then(|t| t.strip_prefix("t:")).and_then(|t| t.parse::<u128>().ok()) {
                        latencies.lock().unwrap_or_else(|e| e.into_inner()).push(Duration::from_micros(at.saturating_sub(sent) as u64));
                    }
                    received.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
    }
    figure("kafka users", users, "connections");

    // Throughput.
    let start = Instant::now();
    let chunk = 1000;
    let mut produced = 0;
    let mut sends = Vec::new();
    while produced < records {
        let n = chunk.min(records - produced);
        let batch: Vec<Record> = (produced..produced + n).map(|i| record(i % users, &format!("thr-{i}"), "thr")).collect();
        let p = (produced / chunk) % PARTITIONS as usize;
        let producers = producers.clone();
        sends.push(tokio::spawn(async move { producers[p].produce(batch, Compression::NoCompression).await }));
        produced += n;
    }
    for s in sends {
        s.await??;
    }
    let produce_time = start.elapsed();
    let deadline = Instant::now() + Duration::from_secs(600);
    while received.load(Ordering::Relaxed) < records {
        if Instant::now() > deadline {
            return Err(format!("only {} of {records} records arrived within 600 s", received.load(Ordering::Relaxed)).into());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    figure("kafka throughput records", records, "records");
    figure("kafka throughput produce time", ms(produce_time), "ms");
    figure("kafka throughput broker to websocket", format!("{:.0}", records as f64 / elapsed.as_secs_f64()), "records/s");
    figure("kafka throughput drain time", ms(elapsed), "ms");

    // Latency at a paced rate: every 10 ms, rate/100 records spread over the partitions.
    let before = received.load(Ordering::Relaxed);
    let total = (rate * seconds) as usize;
    let per_tick = (rate / 100).max(1) as usize;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut sent = 0;
    let mut sends = Vec::new();
    while sent < total {
        tick.tick().await;
        for _ in 0..per_tick.min(total - sent) {
            let r = record(sent % users, &format!("lat-{sent}"), &format!("t:{}", now_us()));
            let p = sent % PARTITIONS as usize;
            let producers = producers.clone();
            sends.push(tokio::spawn(async move { producers[p].produce(vec![r], Compression::NoCompression).await }));
            sent += 1;
        }
    }
    for s in sends {
        s.await??;
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.load(Ordering::Relaxed) < before + total && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let samples = std::mem::take(&mut *latencies.lock().unwrap_or_else(|e| e.into_inner()));
    let lost = total.saturating_sub(samples.len());
    let p = Percentiles::new(samples);
    figure("kafka paced rate", rate, "records/s");
    figure("kafka paced records", total, "records");
    figure("kafka paced not received", lost, "records");
    figure("kafka end-to-end p50", ms(p.at(0.50)), "ms");
    figure("kafka end-to-end p99", ms(p.at(0.99)), "ms");
    figure("kafka end-to-end max", ms(p.max()), "ms");
    server.stop().await;
    Ok(())
}
