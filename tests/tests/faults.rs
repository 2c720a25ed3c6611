//! herald-local's fault injection end to end (CONTRACT §4, "Fault injection"; issue 10): each
//! fault kind is injected where the real fault happens and is seen — by WebSocket clients, by
//! callers of the management API (in process and through the AWS SDK over HTTP), and in the
//! counts of `GET /health` — on both backends.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use futures::future::join_all;
use herald::gateway::{Frame, Gateway, GatewayError, SdkGateway};
use herald_local::Options;
use herald_local::faults::FaultSpec;
use herald_tests::local::*;
use herald_tests::on_both;
use serde_json::{Value, json};

on_both!(
    health_lists_the_faults_given_and_nothing_without_faults,
    post_throttle_answers_429_and_sends_nothing,
    post_error_answers_500_and_sends_nothing,
    post_timeout_answers_nothing_in_time_and_sends_nothing,
    post_gone_answers_410_and_drops_the_connection,
    post_gone_deletes_the_connection_so_it_is_no_longer_a_target,
    store_throttle_at_0_2_loses_no_request,
    consumer_crash_batches_come_back_until_dead_lettered,
    post_throttle_loses_nothing_and_sends_nothing_twice,
    post_error_loses_nothing_and_sends_nothing_twice,
    post_timeout_loses_nothing_and_sends_nothing_twice,
    the_benchmarks_fault_mix_loses_nothing_and_sends_nothing_twice,
    the_benchmarks_fault_mix_with_crashes_loses_nothing,
    consumer_crash_batches_come_back_and_are_delivered_after_the_visibility_timeout,
);

const QUIET: Duration = Duration::from_millis(500);

fn spec(s: &str) -> FaultSpec {
    s.parse().expect("a fault spec")
}

/// herald-local with `faults`, a fixed seed and a short visibility timeout.
async fn spawn_faulty(on: On, faults: &str, adjust: impl FnOnce(&mut Options)) -> herald_local::Server {
    let faults = spec(faults);
    spawn_with(on, move |o| {
        o.faults = faults;
        o.faults_seed = Some(20_261_203);
        o.visibility_timeout = Duration::from_millis(300);
        adjust(o);
    })
    .await
}

async fn health(server: &herald_local::Server) -> Value {
    let response = reqwest::get(server.url("/health")).await.expect("GET /health");
    assert_eq!(response.status().as_u16(), 200);
    response.json().await.expect("JSON")
}

async fn injected(server: &herald_local::Server, fault: &str) -> u64 {
    health(server).await["faults"][fault].as_u64().unwrap_or_else(|| panic!("/health has no count for {fault}"))
}

/// Waits until `/health` counts at least `n` of `fault`.
async fn counted(server: &herald_local::Server, fault: &str, n: u64) {
    for _ in 0..100 {
        if injected(server, fault).await >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("/health never counted {n} {fault}: {}", health(server).await);
}

async fn subscribed(server: &herald_local::Server, user: &str, event: &str) -> Ws {
    let mut ws = notify_client(server, user, "").await;
    assert_eq!(request(&mut ws, json!({"type": "subscribe", "event_name": event})).await["type"], "subscribed");
    ws
}

async fn only_connection(server: &herald_local::Server, user: &str) -> String {
    let ids = connection_ids(server, user).await;
    assert_eq!(ids.len(), 1, "{ids:?}");
    ids[0].clone()
}

/// The SDK gateway a deployed function uses, pointed at herald-local, its own retries off so
/// that one answer is one outcome.
async fn sdk_gateway(server: &herald_local::Server, timeout: Duration) -> SdkGateway {
    let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_apigatewaymanagement::config::Credentials::new("test", "test", None, None, "static"))
        .retry_config(aws_config::retry::RetryConfig::disabled())
        .load()
        .await;
    SdkGateway::with_timeout(&sdk, &server.url(""), timeout)
}

/// `POST /@connections/{id}` over plain HTTP: the status and `x-amzn-ErrorType`.
async fn raw_post(server: &herald_local::Server, connection_id: &str) -> (u16, String) {
    let response = reqwest::Client::new()
        .post(server.url(&format!("/@connections/{connection_id}")))
        .body("{\"raw\":true}")
        .send()
        .await
        .expect("POST /@connections");
    let kind = response.headers().get("x-amzn-errortype").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    (response.status().as_u16(), kind)
}

fn frame() -> Frame {
    Frame::Text("{\"type\":\"direct\"}".into())
}

async fn health_lists_the_faults_given_and_nothing_without_faults(on: On) {
    let plain = spawn_app(on).await;
    let h = health(&plain).await;
    assert_eq!(h["status"], "ok");
    assert_eq!(h["faults"], json!({}), "{h}");
    let faulty = spawn_faulty(on, "post_error=0,store_throttle=0", |_| {}).await;
    assert_eq!(health(&faulty).await["faults"], json!({"post_error": 0, "store_throttle": 0}));
}

#[test]
fn a_bad_spec_refuses_to_start_naming_the_variable() {
    let bad =
        |spec: &'static str| Options::from_lookup(&move |k| (k == "HERALD_FAULTS").then(|| spec.to_string())).unwrap_err().to_string();
    let unknown = bad("post_throttle=0.1,posts_gone=0.1");
    assert!(unknown.contains("HERALD_FAULTS") && unknown.contains("unknown fault \"posts_gone\""), "{unknown}");
    let rate = bad("post_error=1.01");
    assert!(rate.contains("HERALD_FAULTS") && rate.contains("from 0 to 1"), "{rate}");
    let seed = Options::from_lookup(&|k| (k == "HERALD_FAULTS_SEED").then(|| "seven".to_string())).unwrap_err().to_string();
    assert!(seed.contains("HERALD_FAULTS_SEED"), "{seed}");
}

async fn post_throttle_answers_429_and_sends_nothing(on: On) {
    let server = spawn_faulty(on, "post_throttle=1", |_| {}).await;
    let mut ws = subscribed(&server, "u1", "news").await;
    let cid = only_connection(&server, "u1").await;
    publish(&server, json!({"event_name": "news", "title": "t"})).await;
    counted(&server, "post_throttle", 1).await;
    // In process, as the handlers see it, and over HTTP, as a deployed function's SDK sees it.
    assert!(matches!(server.app.handlers.gateway.post(&cid, &frame()).await, Err(GatewayError::Throttled)));
    let sdk = sdk_gateway(&server, Duration::from_secs(5)).await;
    assert!(matches!(sdk.post(&cid, &frame()).await, Err(GatewayError::Throttled)));
    assert_eq!(raw_post(&server, &cid).await, (429, "LimitExceededException".to_string()));
    assert_silent(&mut ws, QUIET).await;
    assert!(injected(&server, "post_throttle").await >= 4);
}

async fn post_error_answers_500_and_sends_nothing(on: On) {
    let server = spawn_faulty(on, "post_error=1", |_| {}).await;
    let mut ws = subscribed(&server, "u1", "news").await;
    let cid = only_connection(&server, "u1").await;
    publish(&server, json!({"event_name": "news", "title": "t"})).await;
    counted(&server, "post_error", 1).await;
    let local = server.app.handlers.gateway.post(&cid, &frame()).await.unwrap_err();
    assert!(matches!(local, GatewayError::Other(_)) && local.is_retryable(), "{local:?}");
    let sdk = sdk_gateway(&server, Duration::from_secs(5)).await;
    let remote = sdk.post(&cid, &frame()).await.unwrap_err();
    assert!(matches!(remote, GatewayError::Other(_)) && remote.is_retryable(), "{remote:?}");
    assert_eq!(raw_post(&server, &cid).await.0, 500);
    assert_silent(&mut ws, QUIET).await;
}

async fn post_timeout_answers_nothing_in_time_and_sends_nothing(on: On) {
    let timeout = Duration::from_millis(300);
    let server = spawn_faulty(on, "post_timeout=1", |o| o.post_timeout = timeout).await;
    let mut ws = subscribed(&server, "u1", "news").await;
    let cid = only_connection(&server, "u1").await;
    publish(&server, json!({"event_name": "news", "title": "t"})).await;
    counted(&server, "post_timeout", 1).await;
    let started = Instant::now();
    assert!(matches!(server.app.handlers.gateway.post(&cid, &frame()).await, Err(GatewayError::Timeout)));
    assert!(started.elapsed() >= timeout, "the caller waited the post timeout: {:?}", started.elapsed());
    let sdk = sdk_gateway(&server, timeout).await;
    assert!(matches!(sdk.post(&cid, &frame()).await, Err(GatewayError::Timeout)));
    // Over plain HTTP: no answer within the timeout either.
    let raw = reqwest::Client::new().post(server.url(&format!("/@connections/{cid}"))).body("{}").timeout(timeout).send().await;
    assert!(raw.as_ref().is_err_and(reqwest::Error::is_timeout), "{raw:?}");
    assert_silent(&mut ws, QUIET).await;
}

async fn post_gone_answers_410_and_drops_the_connection(on: On) {
    let server = spawn_faulty(on, "post_gone=1", |_| {}).await;
    let mut first = notify_client(&server, "u1", "").await;
    let mut second = notify_client(&server, "u2", "").await;
    let mut third = notify_client(&server, "u3", "").await;
    let (c1, c2, c3) = (only_connection(&server, "u1").await, only_connection(&server, "u2").await, only_connection(&server, "u3").await);
    assert!(matches!(server.app.handlers.gateway.post(&c1, &frame()).await, Err(GatewayError::Gone(id)) if id == c1));
    let sdk = sdk_gateway(&server, Duration::from_secs(5)).await;
    assert!(matches!(sdk.post(&c2, &frame()).await, Err(GatewayError::Gone(id)) if id == c2));
    assert_eq!(raw_post(&server, &c3).await, (410, "GoneException".to_string()));
    // API Gateway answers 410 for a connection it no longer has: each client is dropped, and
    // nothing was sent before.
    for ws in [&mut first, &mut second, &mut third] {
        assert_eq!(close_code(ws).await, Some(1001));
    }
    assert_eq!(injected(&server, "post_gone").await, 3);
    // Gone for every later call too.
    assert!(matches!(server.app.handlers.gateway.describe(&c1).await, Err(GatewayError::Gone(_))));
}

async fn post_gone_deletes_the_connection_so_it_is_no_longer_a_target(on: On) {
    let server = spawn_faulty(on, "post_gone=1", |_| {}).await;
    let mut ws = subscribed(&server, "u1", "news").await;
    publish(&server, json!({"event_name": "news", "title": "t"})).await;
    assert_eq!(close_code(&mut ws).await, Some(1001), "the connection is dropped, nothing sent before");
    counted(&server, "post_gone", 1).await;
    eventually("the gone connection is deleted", || async { connection_ids(&server, "u1").await.is_empty() }).await;
    let store = &server.app.handlers.store;
    eventually("its subscription with it", || async { store.event_subscribers("news", None, 10).await.expect("store").items.is_empty() })
        .await;
    // No longer a target: the next push has nobody to post to, so no further 410 is drawn.
    let before = injected(&server, "post_gone").await;
    publish(&server, json!({"event_name": "news", "title": "again"})).await;
    publish(&server, json!({"user_id": "u1", "title": "direct"})).await;
    tokio::time::sleep(QUIET).await;
    assert_eq!(injected(&server, "post_gone").await, before);
}

async fn store_throttle_at_0_2_loses_no_request(on: On) {
    const CLIENTS: usize = 12;
    const PUSHES: usize = 4;
    let server = spawn_faulty(on, "store_throttle=0.2", |_| {}).await;
    // Every handshake and every subscribe succeeds: the store's retries absorb the throttling.
    let mut clients = join_all((0..CLIENTS).map(|i| {
        let server = &server;
        async move { subscribed(server, &format!("u{i}"), "news").await }
    }))
    .await;
    let mut ids = Vec::new();
    for n in 0..PUSHES {
        ids.push(publish(&server, json!({"event_name": "news", "message": {"n": n}})).await);
    }
    ids.push(publish(&server, json!({"user_id": "u0", "title": "direct"})).await);
    let received = join_all(clients.iter_mut().enumerate().map(|(i, ws)| async move {
        let expected = if i == 0 { PUSHES + 1 } else { PUSHES };
        let mut got = Vec::new();
        while got.len() < expected {
            let push = next_json(ws).await;
            assert_eq!(push["type"], "push", "{push}");
            got.push(push["id"].as_str().unwrap_or_default().to_string());
        }
        assert_silent(ws, Duration::from_millis(300)).await;
        got
    }))
    .await;
    for (i, got) in received.iter().enumerate() {
        let mut got = got.clone();
        got.sort();
        let mut want: Vec<String> = if i == 0 { ids.clone() } else { ids[..PUSHES].to_vec() };
        want.sort();
        assert_eq!(got, want, "client u{i}: every push once");
    }
    assert!(injected(&server, "store_throttle").await > 0, "{}", health(&server).await);
    assert!(server.app.queues.notifications.dead_letters().await.is_empty());
}

async fn consumer_crash_batches_come_back_until_dead_lettered(on: On) {
    // Every invocation dies: the message comes back after each visibility timeout and, after the
    // fifth receive, is set aside in the dead-letter queue.
    let server = spawn_faulty(on, "consumer_crash=1", |_| {}).await;
    let _ws = notify_client(&server, "u1", "").await;
    let id = publish(&server, json!({"user_id": "u1", "title": "never dispatched"})).await;
    let started = Instant::now();
    let notifications = &server.app.queues.notifications;
    for _ in 0..200 {
        if !notifications.dead_letters().await.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let dead = notifications.dead_letters().await;
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert!(dead[0].contains("never dispatched"), "{dead:?} (push {id})");
    // Four visibility timeouts at least (SQS counts them in whole seconds).
    let visibility = if on == On::Embedded { Duration::from_millis(300) } else { Duration::from_secs(1) };
    assert!(started.elapsed() >= visibility * 4, "{:?}", started.elapsed());
    assert!(injected(&server, "consumer_crash").await >= 5, "{}", health(&server).await);
}

// The delivery guarantee (CONTRACT §4) under faults: every client gets every push meant for it;
// without crashes exactly once (no crash, so no ambiguity about what went out).

/// A client of user `u{i}` subscribed to `news`; every third one in ack mode (acking what it gets).
struct Client {
    user: String,
    ack: bool,
    ws: Ws,
}

async fn clients(server: &herald_local::Server, n: usize) -> Vec<Client> {
    join_all((0..n).map(|i| async move {
        let ack = i % 3 == 2;
        let user = format!("u{i}");
        let mut ws = notify_client(server, &user, if ack { "&ack=required" } else { "" }).await;
        assert_eq!(request(&mut ws, json!({"type": "subscribe", "event_name": "news"})).await["type"], "subscribed");
        Client { user, ack, ws }
    }))
    .await
}

/// What each client received until `want` pushes each arrived and nothing more came for a
/// while: push id -> times received.
async fn receive(clients: &mut [Client], want: impl Fn(&str) -> usize + Sync, settle: Duration) -> Vec<BTreeMap<String, usize>> {
    let deadline = Instant::now() + Duration::from_secs(60);
    join_all(clients.iter_mut().map(|c| {
        let want = want(&c.user);
        async move {
            let mut got: BTreeMap<String, usize> = BTreeMap::new();
            loop {
                let wait = if got.len() >= want { settle } else { deadline.saturating_duration_since(Instant::now()) };
                let Some(tokio_tungstenite::tungstenite::Message::Text(t)) = next_message(&mut c.ws, wait).await else { break };
                let push: Value = serde_json::from_str(&t).expect("JSON");
                if push["type"] != "push" {
                    continue;
                }
                let id = push["id"].as_str().unwrap_or_default().to_string();
                if c.ack {
                    send_json(&mut c.ws, json!({"type": "ack", "push_id": id})).await;
                }
                *got.entry(id).or_default() += 1;
            }
            got
        }
    }))
    .await
}

/// Publishes event pushes and a direct push to each of the first clients; checks that every
/// client got every push meant for it, and (`exactly_once`) each once.
async fn guarantee(on: On, faults: &str, exactly_once: bool) {
    // Pushes published apart, so that each is mostly its own dispatch invocation (with crashes
    // further apart: whether an invocation crashes is a draw per invocation, not per push).
    let crashes = faults.contains("consumer_crash");
    let pace = Duration::from_millis(if crashes { 250 } else { 50 });
    const CLIENTS: usize = 30;
    const EVENTS: usize = 5;
    const MAX_EVENTS: usize = 40;
    const DIRECT: usize = 5;
    let server = spawn_faulty(on, faults, |o| o.post_timeout = Duration::from_millis(200)).await;
    let mut clients = clients(&server, CLIENTS).await;
    // At least EVENTS event pushes, and more until a consumer crash was injected (each push is
    // its own invocation, and whether one crashes is a draw), up to MAX_EVENTS.
    let mut events = Vec::new();
    while events.len() < EVENTS || (crashes && events.len() < MAX_EVENTS && injected(&server, "consumer_crash").await == 0) {
        events.push(publish(&server, json!({"event_name": "news", "message": {"n": events.len()}})).await);
        tokio::time::sleep(pace).await;
    }
    let mut direct = BTreeMap::new();
    for i in 0..DIRECT {
        direct.insert(format!("u{i}"), publish(&server, json!({"user_id": format!("u{i}"), "title": "direct"})).await);
        tokio::time::sleep(pace).await;
    }
    let got = receive(&mut clients, |u| events.len() + usize::from(direct.contains_key(u)), Duration::from_secs(2)).await;
    let mut lost = Vec::new();
    let mut twice = Vec::new();
    for (c, got) in clients.iter().zip(&got) {
        let mut want: BTreeSet<&String> = events.iter().collect();
        want.extend(direct.get(&c.user));
        for id in &want {
            match got.get(*id) {
                None => lost.push(format!("{} {id}", c.user)),
                Some(n) if *n > 1 => twice.push(format!("{} {id} ×{n}", c.user)),
                Some(_) => {}
            }
        }
        assert!(got.keys().all(|id| want.contains(id)), "{} got a push not meant for it", c.user);
    }
    let h = health(&server).await;
    assert!(lost.is_empty(), "lost {} deliveries: {lost:?}; {h}", lost.len());
    if exactly_once {
        assert!(twice.is_empty(), "{} deliveries sent twice: {twice:?}; {h}", twice.len());
    }
    // Faults were injected: every one given at a rate of 0.1 or more, and some in any case.
    let given: herald_local::faults::FaultSpec = faults.parse().expect("a fault spec");
    for fault in given.faults().filter(|f| given.rate(*f) >= 0.1) {
        assert!(h["faults"][fault.name()].as_u64() > Some(0), "{} was never injected: {h}", fault.name());
    }
    assert!(h["faults"].as_object().expect("faults").values().filter_map(Value::as_u64).sum::<u64>() > 0, "{h}");
    assert!(server.app.queues.notifications.dead_letters().await.is_empty());
    assert!(server.app.queues.fanout.dead_letters().await.is_empty());
}

async fn post_throttle_loses_nothing_and_sends_nothing_twice(on: On) {
    guarantee(on, "post_throttle=0.2", true).await;
}

async fn post_error_loses_nothing_and_sends_nothing_twice(on: On) {
    guarantee(on, "post_error=0.1", true).await;
}

async fn post_timeout_loses_nothing_and_sends_nothing_twice(on: On) {
    guarantee(on, "post_timeout=0.15", true).await;
}

async fn the_benchmarks_fault_mix_loses_nothing_and_sends_nothing_twice(on: On) {
    guarantee(on, "post_throttle=0.05,post_error=0.02,post_timeout=0.01,store_throttle=0.02", true).await;
}

async fn the_benchmarks_fault_mix_with_crashes_loses_nothing(on: On) {
    guarantee(on, "post_throttle=0.05,post_error=0.02,post_timeout=0.01,store_throttle=0.02,consumer_crash=0.2", false).await;
}

async fn consumer_crash_batches_come_back_and_are_delivered_after_the_visibility_timeout(on: On) {
    // One push at a time (each its own dispatch and delivery invocations) until one of them was
    // held up by a crash for a visibility timeout and still arrived; every push arrives.
    let server = spawn_faulty(on, "consumer_crash=0.2", |o| o.post_timeout = Duration::from_millis(200)).await;
    let visibility = if on == On::Embedded { Duration::from_millis(300) } else { Duration::from_secs(1) };
    let mut ws = notify_client(&server, "u1", "").await;
    let mut published = BTreeSet::new();
    let mut received = BTreeSet::new();
    let mut came_back = None;
    for n in 0..60 {
        let started = Instant::now();
        let id = publish(&server, json!({"user_id": "u1", "message": {"n": n}})).await;
        published.insert(id.clone());
        // A crash after a post may send an earlier push again: clients dedupe by id.
        while !received.contains(&id) {
            match next_message(&mut ws, Duration::from_secs(20)).await {
                Some(tokio_tungstenite::tungstenite::Message::Text(t)) => {
                    let push: Value = serde_json::from_str(&t).expect("JSON");
                    received.insert(push["id"].as_str().unwrap_or_default().to_string());
                }
                other => panic!(
                    "push {n} never arrived ({other:?}): {}; dead letters: {:?} / {:?}",
                    health(&server).await,
                    server.app.queues.notifications.dead_letters().await,
                    server.app.queues.fanout.dead_letters().await
                ),
            }
        }
        if started.elapsed() >= visibility {
            came_back = Some(started.elapsed());
            break;
        }
    }
    let Some(waited) = came_back else { panic!("no push was held up by a crash: {}", health(&server).await) };
    assert!(injected(&server, "consumer_crash").await >= 1, "{}", health(&server).await);
    assert_eq!(received, published, "every push arrived (the last after {waited:?})");
    assert!(server.app.queues.notifications.dead_letters().await.is_empty());
    assert!(server.app.queues.fanout.dead_letters().await.is_empty());
}
