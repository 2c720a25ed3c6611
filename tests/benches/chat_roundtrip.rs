//! The chat round trip (issue 5): `Event.SendMessage` on one participant's connection to
//! `Event.ReceiveMessage` on the other's, with many conversations chatting at once. Real WebSocket
//! clients against herald-local in this process; prints `name: value unit` lines.
//!
//! ```text
//! cargo bench -p herald-tests --bench chat_roundtrip --profile perf -- [--backend embedded|dynamodb]
//!     [--conversations 200] [--rounds 20] [--pace-ms 0]
//! ```
//!
//! `--backend dynamodb` needs `HERALD_TEST_DYNAMODB_ENDPOINT` and `HERALD_TEST_MOTO_ENDPOINT`, as the
//! end-to-end tests do (`scripts/services.sh` starts both).
//!
//! Each conversation has a requester (sid `10000+i`, `request_id` = its application) and an operator
//! (sid `50000+i`, an admin who has listed the channel, so that it is a participant). In every round
//! one side sends and the time until the other side's push arrives is recorded; the sides take
//! turns. The first two rounds of each conversation warm up and are not counted. With `--pace-ms 0`
//! (the default) every conversation sends its next message as soon as the last one arrived (the
//! server saturated: latency is mostly queueing); with `--pace-ms N` each conversation sends one
//! message every N ms, the conversations' starts spread over the first N ms.

use std::time::{Duration, Instant};

use futures::future::join_all;
use herald_tests::local::{On, Ws, next_json, send_json, spawn_app, token};
use serde_json::{Value, json};

const WARM_UP: usize = 2;

struct Settings {
    on: On,
    conversations: usize,
    rounds: usize,
    pace: Duration,
}

fn settings() -> Result<Settings, String> {
    let mut s = Settings { on: On::Embedded, conversations: 200, rounds: 20, pace: Duration::ZERO };
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--backend" => {
                s.on = match value()?.as_str() {
                    "embedded" => On::Embedded,
                    "dynamodb" => On::DynamoDbLocal,
                    other => return Err(format!("unknown backend {other}: embedded or dynamodb")),
                }
            }
            "--conversations" => s.conversations = value()?.parse().map_err(|e| format!("--conversations: {e}"))?,
            "--rounds" => s.rounds = value()?.parse().map_err(|e| format!("--rounds: {e}"))?,
            "--pace-ms" => s.pace = Duration::from_millis(value()?.parse().map_err(|e| format!("--pace-ms: {e}"))?),
            // What `cargo bench` passes to every bench target.
            "--bench" => {}
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(s)
}

fn event(name: &str, args: Value) -> Value {
    json!({ "name": name, "args": args.to_string() })
}

/// A chat client with Nagle's algorithm off, as a latency-minded client would have it.
async fn chat_client(url: &str, claims: Value) -> Ws {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let mut request = url.into_client_request().expect("a request");
    let protocols = format!("access_token, {}", token(claims));
    request.headers_mut().insert("sec-websocket-protocol", protocols.parse().expect("a header"));
    tokio_tungstenite::connect_async_with_config(request, None, true).await.expect("connects").0
}

/// Sends and waits for the reply of that name (pushes are not expected here).
async fn call(ws: &mut Ws, frame: Value) -> Value {
    send_json(ws, frame).await;
    let reply = next_json(ws).await;
    assert_eq!(reply["ok"], true, "{reply}");
    reply
}

struct Pair {
    sids: [i64; 2],
    sockets: [Ws; 2],
    channel: String,
}

async fn open(base: &str, i: usize) -> Pair {
    let app = 1000 + i as i64;
    let (user, op) = (10_000 + i as i64, 50_000 + i as i64);
    let mut operator = chat_client(&format!("{base}?sid={op}"), json!({"admin_id": op})).await;
    call(&mut operator, event("Event.AddConversation", json!({"user_id": user, "application_id": app}))).await;
    call(&mut operator, event("Event.GetMessageList", json!({"session_channel": app.to_string(), "executor_id": op}))).await;
    let requester = chat_client(&format!("{base}?sid={user}"), json!({"request_id": app})).await;
    Pair { sids: [user, op], sockets: [requester, operator], channel: app.to_string() }
}

/// One conversation's rounds: the round-trip times after the warm-up.
async fn chat(mut pair: Pair, rounds: usize, pace: Duration, offset: Duration) -> Vec<Duration> {
    let mut times = Vec::with_capacity(rounds);
    let mut ticks = (!pace.is_zero()).then(|| {
        let mut t = tokio::time::interval_at(tokio::time::Instant::now() + offset, pace);
        t.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        t
    });
    for round in 0..rounds + WARM_UP {
        if let Some(t) = ticks.as_mut() {
            t.tick().await;
        }
        let from = round % 2;
        let args = json!({"session_channel": pair.channel, "sender_id": pair.sids[from], "content": format!("round {round}")});
        let [a, b] = &mut pair.sockets;
        let (sender, receiver) = if from == 0 { (a, b) } else { (b, a) };
        let start = Instant::now();
        send_json(sender, event("Event.SendMessage", args)).await;
        let push = next_json(receiver).await;
        let elapsed = start.elapsed();
        assert_eq!(push["name"], "Event.ReceiveMessage", "{push}");
        let reply = next_json(sender).await;
        assert_eq!(reply["ok"], true, "{reply}");
        if round >= WARM_UP {
            times.push(elapsed);
        }
    }
    times
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

#[tokio::main]
async fn main() {
    let s = match settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("chat_roundtrip: {e}");
            std::process::exit(2);
        }
    };
    let backend = if s.on == On::Embedded { "embedded" } else { "dynamodb" };
    let server = spawn_app(s.on).await;
    let base = server.ws_url("/ws");
    let setup = Instant::now();
    let pairs = join_all((0..s.conversations).map(|i| open(&base, i))).await;
    let setup = setup.elapsed();
    let started = Instant::now();
    let n = s.conversations.max(1) as u32;
    let per_conversation = join_all(pairs.into_iter().enumerate().map(|(i, p)| chat(p, s.rounds, s.pace, s.pace * i as u32 / n))).await;
    let wall = started.elapsed();
    let mut times: Vec<Duration> = per_conversation.into_iter().flatten().collect();
    times.sort();
    let messages = (s.rounds + WARM_UP) * s.conversations;
    println!("chat_roundtrip_backend: {backend}");
    println!("chat_roundtrip_conversations: {} conversations", s.conversations);
    println!("chat_roundtrip_pace: {} ms", s.pace.as_millis());
    println!("chat_roundtrip_setup: {} ms", ms(setup));
    println!("chat_roundtrip_samples: {} messages", times.len());
    println!("chat_roundtrip_p50: {} ms", ms(percentile(&times, 50.0)));
    println!("chat_roundtrip_p90: {} ms", ms(percentile(&times, 90.0)));
    println!("chat_roundtrip_p99: {} ms", ms(percentile(&times, 99.0)));
    println!("chat_roundtrip_max: {} ms", ms(times.last().copied().unwrap_or_default()));
    println!("chat_roundtrip_throughput: {:.0} messages/s", messages as f64 / wall.as_secs_f64());
}
