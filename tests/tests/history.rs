//! History, recovery after reconnect and presence end to end (CONTRACT §8, issue 15), on both
//! backends: real WebSocket clients and HTTP calls against herald-local.

use std::time::Duration;

use herald_tests::local::*;
use herald_tests::on_both;
use serde_json::{Value, json};

on_both!(
    pushes_carry_their_stream_offset_and_epoch,
    a_client_that_missed_ten_pushes_gets_exactly_those_in_order_then_live_ones,
    a_wrong_epoch_or_a_too_old_offset_is_not_recovered,
    the_user_stream_is_recovered_on_reconnect,
    history_pages_oldest_first,
    history_is_authorized,
    presence_forgets_a_client_that_vanished_without_disconnect,
    presence_is_for_publishers_and_subscribers,
    chat_conversations_say_whether_their_user_is_online,
    pushes_during_a_replay_arrive_once,
);

const EVENT: &str = "scores";

/// Subscribes (no recovery) and returns the reply.
async fn subscribe(ws: &mut Ws, event: &str) -> Value {
    request(ws, json!({"type":"subscribe","event_name":event})).await
}

/// `n` broadcasts to `EVENT`, `{"seq": from..}`; their ids.
async fn broadcast(server: &herald_local::Server, from: u64, n: u64) -> Vec<String> {
    let mut ids = Vec::new();
    for seq in from..from + n {
        ids.push(publish(server, json!({"event_name": EVENT, "message": {"seq": seq}})).await);
    }
    ids
}

/// Waits until `stream`'s head reaches `offset`: `POST /notify` answers before `dispatch`
/// appends (on the aws backend, after a trip through SQS). Up to a minute: on a cold DynamoDB
/// Local 150 appends took 8 s, past `eventually`'s 5; a push that never lands still fails here,
/// saying where the head stopped.
async fn until_offset(server: &herald_local::Server, stream: &str, offset: u64) {
    let start = std::time::Instant::now();
    let mut top = None;
    while start.elapsed() < Duration::from_secs(60) {
        let (_, page) = get(server, &format!("/history?stream={stream}&limit=1"), &publisher()).await;
        top = page["offset"].as_u64();
        if top >= Some(offset) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{stream} is at offset {top:?}, not {offset}, after {:?}", start.elapsed());
}

/// The next `n` push frames.
async fn pushes(ws: &mut Ws, n: usize) -> Vec<Value> {
    let mut out = Vec::new();
    for _ in 0..n {
        let frame = next_json(ws).await;
        assert_eq!(frame["type"], "push", "{frame}");
        out.push(frame);
    }
    out
}

fn seqs(frames: &[Value]) -> Vec<u64> {
    frames.iter().map(|f| f["message"]["seq"].as_u64().expect("a seq")).collect()
}

fn offsets(frames: &[Value]) -> Vec<u64> {
    frames.iter().map(|f| f["offset"].as_u64().expect("an offset")).collect()
}

async fn get(server: &herald_local::Server, path: &str, token: &str) -> (u16, Value) {
    http_call(server, "GET", path, Some(token), None).await
}

async fn pushes_carry_their_stream_offset_and_epoch(on: On) {
    let server = spawn_app(on).await;
    let mut ws = notify_client(&server, "42", "").await;
    subscribe(&mut ws, EVENT).await;
    broadcast(&server, 1, 3).await;
    let frames = pushes(&mut ws, 3).await;
    let mut sorted = offsets(&frames);
    sorted.sort();
    assert_eq!(sorted, vec![1, 2, 3], "{frames:?}");
    let epoch = frames[0]["epoch"].as_str().expect("an epoch");
    assert!(!epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'), "{epoch}");
    assert!(frames.iter().all(|f| f["stream"] == "event:scores" && f["epoch"] == epoch), "{frames:?}");
    // A direct push goes to the user's stream only.
    publish(&server, json!({"user_id": "42", "event_name": EVENT, "title": "for you"})).await;
    let direct = next_json(&mut ws).await;
    assert_eq!((direct["stream"].as_str(), direct["offset"].as_u64()), (Some("user:42"), Some(1)), "{direct}");
    let (_, event_history) = get(&server, "/history?stream=event:scores", &publisher()).await;
    assert_eq!(event_history["offset"], 3, "{event_history}");
}

async fn a_client_that_missed_ten_pushes_gets_exactly_those_in_order_then_live_ones(on: On) {
    let server = spawn_app(on).await;
    let mut first = notify_client(&server, "42", "").await;
    subscribe(&mut first, EVENT).await;
    broadcast(&server, 1, 2).await;
    let seen = pushes(&mut first, 2).await;
    let last = seen.iter().max_by_key(|f| f["offset"].as_u64()).expect("a push").clone();
    drop(first);
    // Away: ten pushes missed.
    let missed = broadcast(&server, 3, 10).await;
    until_offset(&server, "event:scores", 12).await;
    let mut again = notify_client(&server, "42", "").await;
    let since = json!({"offset": last["offset"], "epoch": last["epoch"]});
    let reply = request(&mut again, json!({"type":"subscribe","event_name":EVENT,"since":since})).await;
    assert_eq!(
        reply,
        json!({"type":"subscribed","event_name":EVENT,"offset":12,"epoch":last["epoch"],"recovered":true}),
        "the reply comes first"
    );
    let replayed = pushes(&mut again, 10).await;
    assert_eq!(seqs(&replayed), (3..13).collect::<Vec<_>>(), "exactly the ten missed, in order");
    assert_eq!(offsets(&replayed), (3..13).collect::<Vec<_>>());
    assert_eq!(replayed.iter().map(|f| f["id"].as_str().unwrap().to_string()).collect::<Vec<_>>(), missed);
    // Then live ones, once each.
    broadcast(&server, 13, 2).await;
    let live = pushes(&mut again, 2).await;
    let mut live_seqs = seqs(&live);
    live_seqs.sort();
    assert_eq!(live_seqs, vec![13, 14]);
    assert_silent(&mut again, Duration::from_millis(400)).await;
}

async fn a_wrong_epoch_or_a_too_old_offset_is_not_recovered(on: On) {
    let server = spawn_with(on, |o| o.delivery.history_ttl = Duration::from_secs(5)).await;
    let mut ws = notify_client(&server, "42", "").await;
    // Stays subscribed: once it has a push, that push's fan-out has read its targets.
    let mut witness = notify_client(&server, "1", "").await;
    subscribe(&mut ws, EVENT).await;
    subscribe(&mut witness, EVENT).await;
    broadcast(&server, 1, 3).await;
    let seen = pushes(&mut ws, 3).await;
    let epoch = seen[0]["epoch"].as_str().unwrap().to_string();
    drop(ws);
    broadcast(&server, 4, 2).await;
    let fifth = tokio::time::Instant::now();
    assert_eq!(seqs(&pushes(&mut witness, 5).await).len(), 5);

    // Another epoch: not recovered, nothing replayed.
    let mut other = notify_client(&server, "42", "").await;
    let reply = request(&mut other, json!({"type":"subscribe","event_name":EVENT,"since":{"offset":1,"epoch":"not-this-one"}})).await;
    assert_eq!((reply["recovered"].as_bool(), reply["offset"].as_u64()), (Some(false), Some(5)), "{reply}");
    assert_eq!(reply["epoch"], epoch.as_str());
    assert_silent(&mut other, Duration::from_millis(400)).await;
    // The right epoch recovers (control: the pushes are there).
    let mut right = notify_client(&server, "42", "").await;
    let reply = request(&mut right, json!({"type":"subscribe","event_name":EVENT,"since":{"offset":3,"epoch":epoch}})).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    assert_eq!(seqs(&pushes(&mut right, 2).await), vec![4, 5]);

    // Older than the TTL (5 s here): not recovered. Offsets 1 to 5 expire; a push in between
    // keeps the stream (and its epoch) alive. Expiry is kept in whole seconds, so an item lives
    // 4 to 6 s: offset 6 goes 4 s after offset 5 and the late look comes 6.8 s after it, when
    // 4 and 5 are gone (at most 6 s) and 6 is not (at least 4 s; it is 2.8 s old).
    tokio::time::sleep_until(fifth + Duration::from_millis(4000)).await;
    broadcast(&server, 6, 1).await;
    until_offset(&server, "event:scores", 6).await;
    assert_eq!(seqs(&pushes(&mut right, 1).await), vec![6]);
    tokio::time::sleep_until(fifth + Duration::from_millis(6800)).await;
    let mut late = notify_client(&server, "42", "").await;
    let reply = request(&mut late, json!({"type":"subscribe","event_name":EVENT,"since":{"offset":3,"epoch":epoch}})).await;
    assert_eq!(reply["recovered"], false, "{reply}");
    assert_eq!(reply["epoch"], epoch.as_str(), "the stream lives on: {reply}");
    assert_silent(&mut late, Duration::from_millis(400)).await;
    // More than 1000 behind is not recovered either.
    let mut far = notify_client(&server, "42", "").await;
    let reply = request(&mut far, json!({"type":"subscribe","event_name":EVENT,"since":{"offset":9999,"epoch":epoch}})).await;
    assert_eq!(reply["recovered"], false, "an offset from the future: {reply}");
}

async fn the_user_stream_is_recovered_on_reconnect(on: On) {
    let server = spawn_app(on).await;
    let mut ws = notify_client(&server, "42", "").await;
    publish(&server, json!({"user_id": "42", "message": {"seq": 1}})).await;
    let first = next_json(&mut ws).await;
    assert_eq!((first["stream"].as_str(), first["offset"].as_u64()), (Some("user:42"), Some(1)), "{first}");
    let epoch = first["epoch"].as_str().unwrap().to_string();
    drop(ws);
    for seq in 2..=4 {
        publish(&server, json!({"user_id": "42", "message": {"seq": seq}})).await;
    }
    // Another user's pushes are not in this stream.
    publish(&server, json!({"user_id": "7", "message": {"seq": 99}})).await;
    until_offset(&server, "user:42", 4).await;
    until_offset(&server, "user:7", 1).await;
    let mut back = notify_client(&server, "42", &format!("&since=1:{epoch}")).await;
    let recovered = next_json(&mut back).await;
    assert_eq!(recovered, json!({"type":"recovered","stream":"user:42","recovered":true,"offset":4,"epoch":epoch}));
    let replayed = pushes(&mut back, 3).await;
    assert_eq!(seqs(&replayed), vec![2, 3, 4]);
    publish(&server, json!({"user_id": "42", "message": {"seq": 5}})).await;
    assert_eq!(seqs(&pushes(&mut back, 1).await), vec![5]);
    until_offset(&server, "user:42", 5).await;
    assert_silent(&mut back, Duration::from_millis(400)).await;
    // A wrong epoch: the frame says so and nothing is replayed.
    let mut wrong = notify_client(&server, "42", "&since=1:nope").await;
    let frame = next_json(&mut wrong).await;
    assert_eq!((frame["type"].as_str(), frame["recovered"].as_bool(), frame["offset"].as_u64()), (Some("recovered"), Some(false), Some(5)));
    assert_silent(&mut wrong, Duration::from_millis(400)).await;
    // A malformed since is refused at the handshake.
    let url = server.ws_url(&format!("/api/v1/notify/ws?token={}&since=soon", user_token("42")));
    let err = connect(&url, None).await.expect_err("refused");
    assert_eq!(refusal_status(&err), Some(400));
}

async fn history_pages_oldest_first(on: On) {
    let server = spawn_app(on).await;
    let ids = broadcast(&server, 1, 5).await;
    until_offset(&server, "event:scores", 5).await;
    let (status, page) = get(&server, "/history?stream=event:scores&limit=2", &publisher()).await;
    assert_eq!(status, 200, "{page}");
    let epoch = page["epoch"].as_str().unwrap().to_string();
    assert_eq!(page["offset"], 5);
    let items = page["items"].as_array().unwrap().clone();
    assert_eq!(offsets(&items), vec![1, 2]);
    assert_eq!(items[0]["id"], ids[0].as_str());
    assert_eq!(items[0]["type"], "push");
    assert_eq!(items[0]["event_name"], EVENT);
    let mut all = items;
    let mut since = 2;
    loop {
        let (_, page) = get(&server, &format!("/history?stream=event%3Ascores&since={since}&limit=2"), &publisher()).await;
        assert_eq!(page["epoch"], epoch.as_str());
        let items = page["items"].as_array().unwrap().clone();
        if items.is_empty() {
            break;
        }
        since = items.last().unwrap()["offset"].as_u64().unwrap();
        all.extend(items);
    }
    assert_eq!(seqs(&all), vec![1, 2, 3, 4, 5]);
    assert_eq!(all.iter().map(|f| f["id"].as_str().unwrap().to_string()).collect::<Vec<_>>(), ids);
    // Default since and limit.
    let (_, page) = get(&server, "/history?stream=event:scores", &publisher()).await;
    assert_eq!(page["items"].as_array().unwrap().len(), 5);
    // Bad input: clear 400s.
    for bad in [
        "/history",
        "/history?stream=scores",
        "/history?stream=event:scores&since=-1",
        "/history?stream=event:scores&limit=0",
        "/history?stream=event:scores&limit=1001",
        "/history?stream=event:scores&limit=ten",
    ] {
        let (status, reply) = get(&server, bad, &publisher()).await;
        assert_eq!((status, error_code(&reply)), (400, "bad_request"), "{bad}: {reply}");
        assert!(!error_message(&reply).is_empty());
    }
}

async fn history_is_authorized(on: On) {
    let server = spawn_app(on).await;
    publish(&server, json!({"user_id": "42", "title": "private"})).await;
    publish(&server, json!({"event_name": "user:42:orders", "title": "shipped"})).await;
    publish(&server, json!({"event_name": EVENT, "title": "public"})).await;
    until_offset(&server, "user:42", 1).await;
    let (status, own) = get(&server, "/history?stream=user:42", &user_token("42")).await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(own["items"][0]["title"], "private");
    assert_eq!(get(&server, "/history?stream=event:scores", &user_token("42")).await.0, 200);
    assert_eq!(get(&server, "/history?stream=event:user:42:orders", &user_token("42")).await.0, 200);
    // A valid token of another user: 403, nothing leaks.
    for path in ["/history?stream=user:42", "/history?stream=event:user:42:orders"] {
        let (status, reply) = get(&server, path, &user_token("7")).await;
        assert_eq!((status, error_code(&reply)), (403, "forbidden"), "{path}: {reply}");
        assert!(reply.get("items").is_none());
    }
    assert_eq!(get(&server, "/history?stream=user:42", &publisher()).await.0, 200);
    assert_eq!(http_call(&server, "GET", "/history?stream=user:42", None, None).await.0, 401);
    assert_eq!(get(&server, "/history?stream=user:42", "not.a.token").await.0, 401);
}

async fn presence_forgets_a_client_that_vanished_without_disconnect(on: On) {
    let server = spawn_with(on, |o| {
        o.faults = "disconnect_lost=1".parse().expect("a fault spec");
        o.delivery.presence_timeout = Duration::from_secs(2);
    })
    .await;
    let mut stays = notify_client(&server, "42", "").await;
    let mut vanishes = notify_client(&server, "7", "").await;
    subscribe(&mut stays, EVENT).await;
    subscribe(&mut vanishes, EVENT).await;
    let (status, before) = get(&server, "/presence?event_name=scores", &publisher()).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before, json!({"users":["42","7"],"connections":2}));
    // User 7's client goes away and its $disconnect is lost: its records stay.
    drop(vanishes);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(connection_ids(&server, "7").await.len(), 1, "the connection record outlives the lost $disconnect");
    // User 42 keeps heartbeating; after the presence timeout only it counts.
    for _ in 0..8 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        send_json(&mut stays, json!({"type":"heartbeat"})).await;
    }
    let (_, after) = get(&server, "/presence?event_name=scores", &publisher()).await;
    assert_eq!(after, json!({"users":["42"],"connections":1}));
    // The presence frame answers the same to a subscribed connection.
    let reply = request(&mut stays, json!({"type":"presence","event_name":EVENT})).await;
    assert_eq!(reply, json!({"type":"presence","event_name":EVENT,"users":["42"],"connections":1}));
}

async fn presence_is_for_publishers_and_subscribers(on: On) {
    let server = spawn_app(on).await;
    let mut ws = notify_client(&server, "42", "").await;
    subscribe(&mut ws, EVENT).await;
    let (status, reply) = get(&server, "/presence?event_name=scores", &user_token("7")).await;
    assert_eq!((status, error_code(&reply)), (403, "forbidden"), "{reply}");
    assert!(reply.get("users").is_none());
    assert_eq!(get(&server, "/presence?event_name=scores", &user_token("42")).await.0, 403, "even a subscriber's own token");
    assert_eq!(http_call(&server, "GET", "/presence?event_name=scores", None, None).await.0, 401);
    let (status, reply) = get(&server, "/presence", &publisher()).await;
    assert_eq!((status, error_code(&reply)), (400, "bad_request"));
    // The frame: only for an event the connection is subscribed to.
    let mut other = notify_client(&server, "7", "").await;
    let reply = request(&mut other, json!({"type":"presence","event_name":EVENT})).await;
    assert_eq!((reply["type"].as_str(), reply["code"].as_str()), (Some("error"), Some("forbidden")), "{reply}");
    let reply = request(&mut ws, json!({"type":"presence","event_name":EVENT})).await;
    assert_eq!(reply["users"], json!(["42"]));
}

async fn chat_conversations_say_whether_their_user_is_online(on: On) {
    let server = spawn_with(on, |o| {
        o.faults = "disconnect_lost=1".parse().expect("a fault spec");
        o.delivery.presence_timeout = Duration::from_secs(2);
    })
    .await;
    let chat = |sid: &str, claims: Value| {
        let url = server.ws_url(&format!("/ws?sid={sid}"));
        let protocols = format!("access_token, {}", token(claims));
        async move { connect(&url, Some(&protocols)).await.expect("connects").0 }
    };
    let mut admin = chat("900", json!({"admin_id": "900"})).await;
    let mut user = chat("1", json!({"request_id": "100"})).await;
    let add = json!({"name":"Event.AddConversation","args":{"user_id":1,"application_id":100}});
    assert_eq!(request(&mut admin, add).await["ok"], true);
    let list = json!({"name":"Event.GetConversationList","args":{"user_id":1}});
    let reply = request(&mut admin, list.clone()).await;
    assert_eq!(reply["result"]["conversations"][0]["online"], true, "{reply}");
    let _ = user.close(None).await;
    drop(user);
    // Past the timeout (2 s; last_seen counts whole seconds).
    tokio::time::sleep(Duration::from_millis(3200)).await;
    let reply = request(&mut admin, list).await;
    assert_eq!(reply["result"]["conversations"][0]["online"], false, "{reply}");
}

async fn pushes_during_a_replay_arrive_once(on: On) {
    const KEPT: u64 = 150;
    const DURING: u64 = 60;
    let server = spawn_app(on).await;
    let mut witness = notify_client(&server, "1", "").await;
    subscribe(&mut witness, EVENT).await;
    broadcast(&server, 1, KEPT).await;
    until_offset(&server, "event:scores", KEPT).await;
    let epoch = pushes(&mut witness, KEPT as usize).await[0]["epoch"].as_str().unwrap().to_string();
    // More pushes, from four publishers at once, while a client recovers from offset 0: some
    // are appended while its replay runs.
    let publishing: Vec<_> = (0..4u64)
        .map(|lane| {
            let url = server.url("/notify");
            tokio::spawn(async move {
                let client = reqwest::Client::new();
                for seq in (KEPT + 1..=KEPT + DURING).filter(|s| s % 4 == lane) {
                    let body = json!({"event_name": EVENT, "message": {"seq": seq}});
                    let r = client.post(&url).bearer_auth(publisher()).json(&body).send().await.expect("POST /notify");
                    assert_eq!(r.status().as_u16(), 202);
                }
            })
        })
        .collect();
    let mut ws = notify_client(&server, "42", "").await;
    let reply = request(&mut ws, json!({"type":"subscribe","event_name":EVENT,"since":{"offset":0,"epoch":epoch}})).await;
    assert_eq!(reply["recovered"], true, "{reply}");
    for p in publishing {
        p.await.expect("published");
    }
    let got = pushes(&mut ws, (KEPT + DURING) as usize).await;
    assert_silent(&mut ws, Duration::from_millis(500)).await;
    let mut ids: Vec<&str> = got.iter().map(|f| f["id"].as_str().unwrap()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), got.len(), "each push once");
    let mut seen = seqs(&got);
    seen.sort();
    assert_eq!(seen, (1..=KEPT + DURING).collect::<Vec<_>>());
    // The replay's part (at least up to the reply's top) is in offset order.
    let top = reply["offset"].as_u64().unwrap() as usize;
    assert!(top >= KEPT as usize);
    assert_eq!(offsets(&got[..top]), (1..=top as u64).collect::<Vec<_>>());
    if on == On::Embedded {
        // One dispatcher over a FIFO queue here: live pushes follow in offset order too.
        assert_eq!(offsets(&got), (1..=KEPT + DURING).collect::<Vec<_>>());
    }
}
