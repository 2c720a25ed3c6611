//! `reliability`: the delivery guarantee under injected faults (CONTRACT §4, issue 10). 1,000
//! live clients — 500 JSON and 250 protobuf-with-acks subscribers of one event, 250 JSON users
//! that get direct pushes — and 100,000 deliveries (125 event fan-outs of 750 and 6,250 direct
//! pushes) published through `POST /notify` to herald-local started with `--faults`. Every
//! client records the push ids it received (protobuf clients ack each one, base64 in a text
//! frame, as they must on AWS) and keeps listening a while after it has them all, so that
//! duplicates are seen. Prints lost (must be 0), duplicates (must be 0 without crashes) and
//! the time to drain, with the injected fault counts from `GET /health`.
//!
//! Left out: loopback only, no TLS; the embedded in-memory store (store faults are injected
//! beneath its retry layer as they are beneath DynamoDB's SDK retries).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use herald::protocol::{AckStatus, ack_protobuf_base64, pb};
use herald_local::Server;
use herald_local::faults::FaultSpec;
use prost::Message as _;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::BenchBackend;
use crate::common::{self, Result, Ws, figure, ms};

const EVENT: &str = "bench:reliability";
const JSON_SUBSCRIBERS: usize = 500;
const ACK_SUBSCRIBERS: usize = 250;
const DIRECT_USERS: usize = 250;
const EVENT_PUSHES: usize = 125;
const DIRECT_PUSHES_PER_USER: usize = 25;
/// How long a client keeps listening after it has every push, to see duplicates.
const LINGER: Duration = Duration::from_secs(3);
const DRAIN_LIMIT: Duration = Duration::from_secs(240);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Json,
    ProtobufAcks,
    Direct,
}

struct Tally {
    kind: Kind,
    /// Receipts per push id.
    seen: HashMap<String, u32>,
    /// When the client had every push it expects.
    complete_at: Option<Instant>,
}

async fn client(server: &Server, user: &str, kind: Kind) -> Result<Ws> {
    let query = if kind == Kind::ProtobufAcks { "&format=protobuf" } else { "" };
    let token = common::user_token(user)?;
    let mut ws = common::connect(&server.ws_url(&format!("/api/v1/notify/ws?token={token}{query}")), Duration::from_secs(30)).await?;
    if kind != Kind::Direct {
        ws.send(Message::Text(json!({"type": "subscribe", "event_name": EVENT}).to_string().into())).await?;
        let reply: Value = serde_json::from_str(&common::next_text(&mut ws, Duration::from_secs(30)).await?)?;
        if reply["type"] != "subscribed" {
            return Err(format!("subscribe answered {reply}").into());
        }
    }
    Ok(ws)
}

/// Reads pushes until `expected` distinct ids arrived (then `LINGER` more) or the deadline.
async fn listen(mut ws: Ws, kind: Kind, expected: usize, deadline: tokio::time::Instant) -> Tally {
    let mut tally = Tally { kind, seen: HashMap::new(), complete_at: None };
    loop {
        let until = match tally.complete_at {
            Some(at) => tokio::time::Instant::from_std(at + LINGER).min(deadline),
            None => deadline,
        };
        let id = match tokio::time::timeout_at(until, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<Value>(&t) {
                Ok(v) if v["type"] == "push" => v["id"].as_str().map(str::to_string),
                _ => None,
            },
            Ok(Some(Ok(Message::Binary(b)))) => match pb::ServerMessage::decode(b.as_ref()) {
                Ok(pb::ServerMessage { server_message: Some(pb::server_message::ServerMessage::PushNotification(n)) }) => Some(n.id),
                _ => None,
            },
            Ok(Some(Ok(_))) => continue,
            _ => break,
        };
        let Some(id) = id else { continue };
        if kind == Kind::ProtobufAcks {
            let _ = ws.send(Message::Text(ack_protobuf_base64(&id, AckStatus::Ack).into())).await;
        }
        *tally.seen.entry(id).or_default() += 1;
        if tally.complete_at.is_none() && tally.seen.len() >= expected {
            tally.complete_at = Some(Instant::now());
        }
    }
    let _ = ws.close(None).await;
    tally
}

async fn publish_all(server: &Server) -> Result<Vec<(Option<String>, String)>> {
    let publisher = common::publisher_token()?;
    let http = reqwest::Client::new();
    let mut bodies: Vec<Value> = (0..EVENT_PUSHES).map(|i| json!({"event_name": EVENT, "message": {"n": i}})).collect();
    for round in 0..DIRECT_PUSHES_PER_USER {
        bodies.extend((0..DIRECT_USERS).map(|u| json!({"user_id": format!("direct{u}"), "title": format!("r{round}")})));
    }
    let results: Vec<Result<(Option<String>, String)>> = futures::stream::iter(bodies)
        .map(|body| {
            let (http, publisher, url) = (http.clone(), publisher.clone(), server.url("/notify"));
            async move {
                let user = body["user_id"].as_str().map(str::to_string);
                let reply: Value = http.post(url).bearer_auth(publisher).json(&body).send().await?.error_for_status()?.json().await?;
                let id = reply["id"].as_str().ok_or("POST /notify answered no id")?.to_string();
                Ok((user, id))
            }
        })
        .buffer_unordered(32)
        .collect()
        .await;
    results.into_iter().collect()
}

async fn pass(spec: &str, seed: u64) -> Result<()> {
    let faults: FaultSpec = spec.parse().map_err(|e| format!("--faults {spec}: {e}"))?;
    let server = common::start_server_with(BenchBackend::Embedded, |o| {
        o.faults = faults;
        o.faults_seed = Some(seed);
        o.post_timeout = Duration::from_millis(200);
        o.visibility_timeout = Duration::from_secs(2);
        o.delivery.ack_timeout = Duration::from_secs(5);
        o.delivery.max_attempts = 10;
    })
    .await?;
    let mut plan: Vec<(String, Kind)> = Vec::new();
    plan.extend((0..JSON_SUBSCRIBERS).map(|i| (format!("json{i}"), Kind::Json)));
    plan.extend((0..ACK_SUBSCRIBERS).map(|i| (format!("ack{i}"), Kind::ProtobufAcks)));
    plan.extend((0..DIRECT_USERS).map(|i| (format!("direct{i}"), Kind::Direct)));
    let server_ref = &server;
    let clients: Vec<Result<(String, Kind, Ws)>> = futures::stream::iter(plan)
        .map(|(user, kind)| async move { client(server_ref, &user, kind).await.map(|ws| (user, kind, ws)) })
        .buffer_unordered(50)
        .collect()
        .await;
    let clients = clients.into_iter().collect::<Result<Vec<_>>>()?;

    let deadline = tokio::time::Instant::now() + DRAIN_LIMIT;
    let listeners: Vec<_> = clients
        .into_iter()
        .map(|(user, kind, ws)| {
            let expected = if kind == Kind::Direct { DIRECT_PUSHES_PER_USER } else { EVENT_PUSHES };
            (user, tokio::spawn(listen(ws, kind, expected, deadline)))
        })
        .collect();
    let t0 = Instant::now();
    let published = publish_all(&server).await?;
    let publish_time = t0.elapsed();
    let mut tallies = Vec::new();
    for (user, listener) in listeners {
        tallies.push((user, listener.await?));
    }
    let event_ids: Vec<&String> = published.iter().filter(|(u, _)| u.is_none()).map(|(_, id)| id).collect();
    let mut direct_ids: HashMap<&str, Vec<&String>> = HashMap::new();
    for (user, id) in &published {
        if let Some(u) = user {
            direct_ids.entry(u).or_default().push(id);
        }
    }
    let (mut expected, mut lost, mut duplicates) = (0usize, 0usize, 0u64);
    let mut drained = Duration::ZERO;
    for (user, tally) in &tallies {
        let ids: &[&String] = match tally.kind {
            Kind::Direct => direct_ids.get(user.as_str()).map(Vec::as_slice).unwrap_or_default(),
            _ => &event_ids,
        };
        expected += ids.len();
        lost += ids.iter().filter(|id| !tally.seen.contains_key(id.as_str())).count();
        duplicates += tally.seen.values().map(|n| u64::from(n.saturating_sub(1))).sum::<u64>();
        if let Some(at) = tally.complete_at {
            drained = drained.max(at.duration_since(t0));
        }
    }
    let health: Value = reqwest::get(server.url("/health")).await?.json().await?;
    let name = format!("reliability [{spec}]");
    figure(&format!("{name} deliveries expected"), expected, "deliveries");
    figure(&format!("{name} lost"), lost, "deliveries");
    figure(&format!("{name} duplicates"), duplicates, "deliveries");
    figure(&format!("{name} publish time"), ms(publish_time), "ms");
    figure(&format!("{name} time to drain"), if lost == 0 { ms(drained) } else { format!("not drained in {}", ms(DRAIN_LIMIT)) }, "ms");
    if let Some(Value::Object(counts)) = health.get("faults") {
        for (fault, n) in counts {
            figure(&format!("{name} injected {fault}"), n, "faults");
        }
    }
    server.stop().await;
    Ok(())
}

pub async fn run(seed: u64) -> Result<()> {
    const FAULTS: &str = "post_throttle=0.05,post_error=0.02,post_timeout=0.01,store_throttle=0.02";
    pass(FAULTS, seed).await?;
    pass(&format!("{FAULTS},consumer_crash=0.02"), seed).await?;
    println!(
        "reliability leaves out: loopback, no TLS, the embedded in-memory store; post_timeout waits 200 ms here \
         (HERALD_POST_TIMEOUT_MS), the visibility timeout is 2 s"
    );
    Ok(())
}
