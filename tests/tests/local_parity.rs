//! herald-local behaves as API Gateway WebSockets do (docs/local-parity.md): binary client frames
//! close with 1003, protobuf acks travel base64 in text frames, a client that does not read is
//! dropped without hurting the others, writes time out, the idle and 2 h timers fire whatever
//! the socket does, the frame and message limits, the subprotocol echo and the connection quota.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use base64::Engine as _;
use futures::SinkExt;
use herald::protocol::{AckStatus, ack_protobuf_base64};
use herald_local::Server;
use herald_tests::local::*;
use herald_tests::on_both;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

on_both!(
    a_binary_frame_closes_with_1003_and_the_connection_is_gone,
    a_binary_frame_on_the_chat_api_closes_with_1003,
    a_base64_protobuf_ack_in_a_text_frame_stops_redelivery,
    a_base64_protobuf_ack_is_accepted_on_a_json_connection,
    a_base64_protobuf_nack_resends_at_once,
    text_that_is_neither_json_nor_protobuf_gets_the_contracts_error_frames,
    a_client_that_does_not_read_is_dropped_and_the_others_receive_everything,
    the_idle_timer_fires_while_a_write_is_stuck,
    a_write_stuck_past_the_write_timeout_drops_the_connection,
    route_selection_follows_the_selection_field,
    the_subprotocol_is_echoed_only_when_connect_returns_it,
    a_message_over_128_kb_in_small_frames_closes_with_1009,
    a_post_over_128_kb_is_refused_with_413,
    an_idle_connection_is_closed_with_1001_and_pings_keep_it_open,
    the_maximum_duration_closes_an_active_connection_with_1001,
    the_connection_rate_quota_answers_429,
);

const QUIET: Duration = Duration::from_millis(1000);

async fn subscribed(server: &Server, user: &str, query: &str, event: &str) -> Ws {
    let mut ws = notify_client(server, user, query).await;
    assert_eq!(request(&mut ws, json!({"type":"subscribe","event_name":event})).await["type"], "subscribed");
    ws
}

/// `POST /@connections/{id}` as a raw HTTP call: the status.
async fn post_to_connection(server: &Server, id: &str, body: Vec<u8>) -> u16 {
    let response = reqwest::Client::new().post(server.url(&format!("/@connections/{id}"))).body(body).send().await.expect("POST");
    response.status().as_u16()
}

async fn get_connection(server: &Server, id: &str) -> u16 {
    reqwest::get(server.url(&format!("/@connections/{id}"))).await.expect("GET").status().as_u16()
}

async fn only_connection(server: &Server, user: &str) -> String {
    let ids = connection_ids(server, user).await;
    assert_eq!(ids.len(), 1, "{user}: {ids:?}");
    ids.into_iter().next().unwrap_or_default()
}

/// A notify client whose socket takes in little (a 4 KB receive buffer, so the kernel holds
/// little of what it does not read): what a slow phone on a bad network looks like to the server.
async fn small_window_client(server: &Server, user: &str) -> Ws {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let stream = socket.connect(server.addr).await.expect("TCP connect");
    let request = server.ws_url(&format!("/api/v1/notify/ws?token={}", user_token(user))).into_client_request().expect("request");
    let (ws, _) = tokio_tungstenite::client_async(request, tokio_tungstenite::MaybeTlsStream::Plain(stream)).await.expect("handshake");
    ws
}

/// Posts large frames to a connection that does not read until the server's writer is blocked
/// on it (frames wait in its queue) and stays blocked; `keep_alive` pings between posts so that
/// the idle timer does not fire meanwhile. Returns how many were posted.
async fn block_the_writer(server: &Server, ws: &mut Ws, id: &str, keep_alive: bool) -> usize {
    let frame = json!({"filler": "x".repeat(100 * 1024)}).to_string().into_bytes();
    let mut stuck = 0;
    for posted in 1..=400 {
        assert_eq!(post_to_connection(server, id, frame.clone()).await, 200, "post {posted}");
        if keep_alive {
            ws.send(Message::Ping(Vec::new().into())).await.expect("ping");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        let queued = server.app.registry.get(id).map(|c| c.queued_bytes()).unwrap_or_default();
        stuck = if queued > 0 { stuck + 1 } else { 0 };
        if stuck == 3 {
            return posted;
        }
    }
    panic!("the writer never blocked");
}

// ---- binary frames ------------------------------------------------------------------------

async fn a_binary_frame_closes_with_1003_and_the_connection_is_gone(on: On) {
    let server = spawn_app(on).await;
    let mut ws = subscribed(&server, "b1", "&format=protobuf", "e").await;
    let id = only_connection(&server, "b1").await;
    ws.send(Message::Binary(vec![0x0a, 0x02, 0x0a, 0x00].into())).await.expect("send");
    assert_eq!(close_code(&mut ws).await, Some(1003));
    // $disconnect ran: the connection and its subscriptions are gone, and the management API says 410.
    eventually("$disconnect ran", || async { connection_ids(&server, "b1").await.is_empty() }).await;
    assert!(server.app.handlers.store.connection_subscriptions(&id).await.expect("store").is_empty());
    assert_eq!(post_to_connection(&server, &id, b"{}".to_vec()).await, 410);
    assert_eq!(get_connection(&server, &id).await, 410);
}

async fn a_binary_frame_on_the_chat_api_closes_with_1003(on: On) {
    let server = spawn_app(on).await;
    let url = server.ws_url("/ws?sid=2");
    let protocol = format!("access_token, {}", token(json!({"admin_id": "2"})));
    let (mut ws, _) = connect(&url, Some(&protocol)).await.expect("connects");
    ws.send(Message::Binary(vec![1u8, 2, 3].into())).await.expect("send");
    assert_eq!(close_code(&mut ws).await, Some(1003));
    eventually("$disconnect ran", || async { server.app.registry.is_empty() }).await;
}

// ---- protobuf acks in text frames -----------------------------------------------------------

async fn fast_acks(on: On) -> Server {
    spawn_with(on, |o| {
        o.delivery.ack_timeout = Duration::from_millis(300);
        o.delivery.max_attempts = 3;
    })
    .await
}

async fn a_base64_protobuf_ack_in_a_text_frame_stops_redelivery(on: On) {
    let server = fast_acks(on).await;
    let mut ws = subscribed(&server, "p1", "&format=protobuf", "order:paid").await;
    let id = publish(&server, json!({"user_id":"p1","event_name":"order:paid","message":{"n":1}})).await;
    let push = decode_push(&next_binary(&mut ws).await);
    assert_eq!(push.id, id);
    ws.send(Message::Text(ack_protobuf_base64(&push.id, AckStatus::Ack).into())).await.expect("send");
    // No reply to an ACK, and no redelivery after several ack timeouts.
    assert_silent(&mut ws, QUIET).await;
    assert_eq!(connection_ids(&server, "p1").await.len(), 1);
}

async fn a_base64_protobuf_ack_is_accepted_on_a_json_connection(on: On) {
    let server = fast_acks(on).await;
    let mut ws = notify_client(&server, "p4", "&ack=required").await;
    let id = publish(&server, json!({"user_id":"p4","message":"m"})).await;
    assert_eq!(next_json(&mut ws).await["id"], id);
    ws.send(Message::Text(ack_protobuf_base64(&id, AckStatus::Ack).into())).await.expect("send");
    assert_silent(&mut ws, QUIET).await;
}

async fn a_base64_protobuf_nack_resends_at_once(on: On) {
    let server = spawn_with(on, |o| o.delivery.ack_timeout = Duration::from_secs(30)).await;
    let mut ws = notify_client(&server, "p3", "&format=protobuf").await;
    let id = publish(&server, json!({"user_id":"p3","title":"t","body":"b"})).await;
    assert_eq!(decode_push(&next_binary(&mut ws).await).id, id);
    let nacked = Instant::now();
    ws.send(Message::Text(ack_protobuf_base64(&id, AckStatus::Nack).into())).await.expect("send");
    let again = decode_push(&next_binary(&mut ws).await);
    assert_eq!((again.id.as_str(), again.title.as_str()), (id.as_str(), "t"));
    assert!(nacked.elapsed() < Duration::from_secs(1), "resent after {:?}", nacked.elapsed());
    ws.send(Message::Text(ack_protobuf_base64(&id, AckStatus::Ack).into())).await.expect("send");
    assert_silent(&mut ws, Duration::from_millis(400)).await;
}

async fn text_that_is_neither_json_nor_protobuf_gets_the_contracts_error_frames(on: On) {
    let server = spawn_app(on).await;
    let mut ws = notify_client(&server, "p5", "&format=protobuf").await;
    let b64 = base64::engine::general_purpose::STANDARD;
    // Text that is neither JSON nor base64 gets a JSON error; the replies to a protobuf frame go
    // in the connection's encoding: a ServerMessage error in a binary frame (CONTRACT §3).
    let protobuf_cases = [
        ("base64 but no ClientMessage", b64.encode([0xff, 0xff, 0x01]), "bad_protobuf"),
        ("base64 of an empty ClientMessage", b64.encode([0x10, 0x01]), "bad_protobuf"),
        ("an ack of no delivery", ack_protobuf_base64("00000000-0000-0000-0000-000000000000", AckStatus::Ack), "unknown_push"),
        ("a nack of no delivery", ack_protobuf_base64("00000000-0000-0000-0000-000000000000", AckStatus::Nack), "unknown_push"),
    ];
    ws.send(Message::Text("ack please".into())).await.expect("send");
    let reply = next_json(&mut ws).await;
    assert_eq!((reply["type"].as_str(), reply["code"].as_str()), (Some("error"), Some("bad_json")), "{reply}");
    for (what, text, code) in &protobuf_cases {
        ws.send(Message::Text(text.clone().into())).await.expect("send");
        let (got, message) = decode_error(&next_binary(&mut ws).await);
        assert_eq!(got, *code, "{what}: {message}");
        assert!(!message.is_empty(), "{what}");
    }
    // The connection lives.
    assert_eq!(request(&mut ws, json!({"type":"subscribe","event_name":"e"})).await["type"], "subscribed");
    // On a JSON connection the same frames get JSON errors.
    let mut plain = notify_client(&server, "p5", "").await;
    for (what, text, code) in &protobuf_cases {
        plain.send(Message::Text(text.clone().into())).await.expect("send");
        let reply = next_json(&mut plain).await;
        assert_eq!((reply["type"].as_str(), reply["code"].as_str()), (Some("error"), Some(*code)), "{what}: {reply}");
    }
}

// ---- bounded outbound queues, write timeouts ------------------------------------------------

async fn a_client_that_does_not_read_is_dropped_and_the_others_receive_everything(on: On) {
    const PUSHES: usize = 60;
    let server = spawn_app(on).await;
    let mut slow = small_window_client(&server, "slow").await;
    assert_eq!(request(&mut slow, json!({"type":"subscribe","event_name":"firehose"})).await["type"], "subscribed");
    let slow_id = only_connection(&server, "slow").await;
    let mut fast = subscribed(&server, "fast", "", "firehose").await;
    let reader = tokio::spawn(async move {
        let mut seen = HashSet::new();
        while seen.len() < PUSHES {
            match next_message(&mut fast, Duration::from_secs(30)).await {
                Some(Message::Text(t)) => {
                    let push: Value = serde_json::from_str(&t).expect("JSON");
                    seen.insert(push["id"].as_str().expect("an id").to_string());
                }
                other => panic!("the reading client got {other:?} after {} pushes", seen.len()),
            }
        }
        (seen, fast)
    });
    // 60 pushes of 100 KB: 6 MB, far more than the slow client's socket and its 1 MiB queue hold.
    let filler = "x".repeat(100 * 1024);
    let mut published = HashSet::new();
    for n in 0..PUSHES {
        published.insert(publish(&server, json!({"event_name":"firehose","message":{"n":n,"filler":filler}})).await);
    }
    let (seen, mut fast) = reader.await.expect("the reader");
    assert_eq!(seen, published, "the reading client got every push");
    // The slow one is gone: removed, $disconnect ran, the management API answers 410.
    eventually("the slow client is dropped", || async { server.app.registry.get(&slow_id).is_none() }).await;
    eventually("$disconnect ran", || async { connection_ids(&server, "slow").await.is_empty() }).await;
    assert_eq!(post_to_connection(&server, &slow_id, b"{}".to_vec()).await, 410);
    // What it reads now is what its socket held, then the end: far fewer pushes than were sent.
    let mut got = 0;
    while let Some(m) = next_message(&mut slow, Duration::from_secs(5)).await {
        if matches!(m, Message::Text(_)) {
            got += 1;
        }
    }
    assert!(got < PUSHES, "the slow client got {got} pushes");
    // The reader is still served.
    assert_eq!(request(&mut fast, json!({"type":"subscribe","event_name":"more"})).await["type"], "subscribed");
}

async fn the_idle_timer_fires_while_a_write_is_stuck(on: On) {
    let server = spawn_with(on, |o| o.idle_timeout = Duration::from_secs(1)).await;
    let write_timeout = server.app.registry.limits().write_timeout;
    let mut ws = small_window_client(&server, "stuck").await;
    let id = only_connection(&server, "stuck").await;
    block_the_writer(&server, &mut ws, &id, true).await;
    let blocked = Instant::now();
    // No more pings: the connection is idle, and its writer blocked. The idle timer still fires
    // (1 s, then a 1 s grace for the close frame that cannot go out), long before the write timeout.
    eventually("the idle connection is dropped", || async { server.app.registry.get(&id).is_none() }).await;
    let took = blocked.elapsed();
    assert!(took < Duration::from_secs(5) && took < write_timeout, "dropped after {took:?}");
    eventually("$disconnect ran", || async { connection_ids(&server, "stuck").await.is_empty() }).await;
    assert_eq!(get_connection(&server, &id).await, 410);
}

async fn a_write_stuck_past_the_write_timeout_drops_the_connection(on: On) {
    let server = spawn_with(on, |o| o.connection_limits.write_timeout = Duration::from_millis(500)).await;
    let mut ws = small_window_client(&server, "wt").await;
    let id = only_connection(&server, "wt").await;
    let posted = block_the_writer(&server, &mut ws, &id, false).await;
    // Few frames wait, far below the queue's bound: it is the write timeout that drops it.
    assert!(posted < 200, "{posted}");
    eventually("the connection is dropped", || async { server.app.registry.get(&id).is_none() }).await;
    eventually("$disconnect ran", || async { connection_ids(&server, "wt").await.is_empty() }).await;
    assert_eq!(post_to_connection(&server, &id, b"{}".to_vec()).await, 410);
}

// ---- routes, handshake, limits, timers, quota ----------------------------------------------

async fn route_selection_follows_the_selection_field(on: On) {
    let server = spawn_app(on).await;
    let mut ws = notify_client(&server, "r1", "").await;
    // `type` names a route: `subscribe`.
    assert_eq!(request(&mut ws, json!({"type":"subscribe","event_name":"e"})).await, json!({"type":"subscribed","event_name":"e"}));
    // No route of that name, a non-string `type`, no JSON at all: `$default` (the ack handler).
    assert_eq!(request(&mut ws, json!({"type":"dance"})).await["code"], "unknown_type");
    assert_eq!(request(&mut ws, json!({"type":7})).await["code"], "bad_request");
    assert_eq!(request(&mut ws, json!({"type":"ack","push_id":"none"})).await["code"], "unknown_push");
    // The chat API selects on `name`; an unknown name goes to its `$default`.
    let protocol = format!("access_token, {}", token(json!({"admin_id": "2"})));
    let (mut chat, _) = connect(&server.ws_url("/ws?sid=2"), Some(&protocol)).await.expect("connects");
    let reply = request(&mut chat, json!({"name":"Event.Nope","args":"{}"})).await;
    assert_eq!((reply["name"].as_str(), reply["ok"].as_bool()), (Some("Event.Nope"), Some(false)), "{reply}");
    let reply = request(&mut chat, json!({"type":"subscribe","event_name":"e"})).await;
    assert_eq!(reply["ok"], false, "{reply}");
}

/// A raw handshake: the status line and the response headers, lower-cased.
async fn raw_handshake(server: &Server, path: &str, protocol: &str) -> (String, Vec<(String, String)>) {
    let mut tcp = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Protocol: {protocol}\r\n\r\n",
        server.addr
    );
    tcp.write_all(request.as_bytes()).await.expect("write");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut byte)).await.expect("a response").expect("read");
        assert_eq!(n, 1, "the server closed mid-response");
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).expect("UTF-8 headers");
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default().to_string();
    let headers = lines.filter_map(|l| l.split_once(':')).map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string())).collect();
    (status, headers)
}

async fn the_subprotocol_is_echoed_only_when_connect_returns_it(on: On) {
    let server = spawn_app(on).await;
    let protocol_of = |headers: &[(String, String)]| headers.iter().find(|(k, _)| k == "sec-websocket-protocol").map(|(_, v)| v.clone());
    // The token as the subprotocol pair: $connect selects `access_token`, and only that is echoed.
    let (status, headers) = raw_handshake(&server, "/api/v1/notify/ws", &format!("access_token, {}", user_token("s1"))).await;
    assert!(status.contains(" 101 "), "{status}");
    assert_eq!(protocol_of(&headers).as_deref(), Some("access_token"));
    // The token in the query and some other subprotocol offered: $connect returns none, none is echoed.
    let (status, headers) = raw_handshake(&server, &format!("/api/v1/notify/ws?token={}", user_token("s2")), "chat.v1, mqtt").await;
    assert!(status.contains(" 101 "), "{status}");
    assert_eq!(protocol_of(&headers), None, "{headers:?}");
}

/// Sends one text message as `parts` fragments of `size` bytes each (every frame under 32 KB).
async fn send_fragmented(ws: &mut Ws, size: usize, parts: usize) {
    let prefix = r#"{"type":"subscribe","event_name":""#;
    let mut text = format!("{prefix}{}", "x".repeat(size * parts - prefix.len() - 2));
    text.push_str(r#""}"#);
    let bytes = text.into_bytes();
    for (i, chunk) in bytes.chunks(size).enumerate() {
        let opcode = if i == 0 { OpCode::Data(Data::Text) } else { OpCode::Data(Data::Continue) };
        let frame = Frame::message(chunk.to_vec(), opcode, i + 1 == parts);
        ws.send(Message::Frame(frame)).await.expect("send a fragment");
    }
}

async fn a_message_over_128_kb_in_small_frames_closes_with_1009(on: On) {
    let server = spawn_app(on).await;
    let mut ws = notify_client(&server, "big2", "").await;
    // 100 KB in four 25 KB frames: one message under both limits, answered (the name is too long).
    send_fragmented(&mut ws, 25 * 1024, 4).await;
    assert_eq!(next_json(&mut ws).await["code"], "bad_request");
    // 150 KB in five 30 KB frames: every frame is under 32 KB, the message over 128 KB.
    send_fragmented(&mut ws, 30 * 1024, 5).await;
    assert_eq!(close_code(&mut ws).await, Some(1009));
    eventually("$disconnect ran", || async { connection_ids(&server, "big2").await.is_empty() }).await;
}

async fn a_post_over_128_kb_is_refused_with_413(on: On) {
    let server = spawn_app(on).await;
    let mut ws = notify_client(&server, "big3", "").await;
    let id = only_connection(&server, "big3").await;
    assert_eq!(post_to_connection(&server, &id, vec![b'x'; 128 * 1024 + 1]).await, 413);
    // 128 KB exactly goes out (in frames of at most 32 KB, reassembled by the client).
    let at_limit = format!("\"{}\"", "y".repeat(128 * 1024 - 2));
    assert_eq!(post_to_connection(&server, &id, at_limit.clone().into_bytes()).await, 200);
    assert_eq!(next_json(&mut ws).await, Value::String("y".repeat(128 * 1024 - 2)));
}

async fn an_idle_connection_is_closed_with_1001_and_pings_keep_it_open(on: On) {
    let server = spawn_with(on, |o| o.idle_timeout = Duration::from_millis(800)).await;
    let mut ws = notify_client(&server, "idle", "").await;
    let id = only_connection(&server, "idle").await;
    // Pings every 300 ms for 2 s: more than twice the idle timeout, and the connection stays.
    let mut last_ping = Instant::now();
    for _ in 0..7 {
        ws.send(Message::Ping(Vec::new().into())).await.expect("ping");
        last_ping = Instant::now();
        assert!(matches!(next_message(&mut ws, Duration::from_millis(300)).await, None | Some(Message::Pong(_))));
    }
    assert!(server.app.registry.get(&id).is_some(), "closed while pinging");
    // Then silence: closed with 1001 one idle timeout after the last ping, with no frame before
    // the close (API Gateway gives the backend no notice to send one).
    match next_message(&mut ws, Duration::from_secs(5)).await {
        Some(Message::Close(Some(f))) => assert_eq!((u16::from(f.code), f.reason.as_str()), (1001, "Going away: idle")),
        other => panic!("the close comes first, with nothing before it: {other:?}"),
    }
    assert!(last_ping.elapsed() >= Duration::from_millis(700), "closed {:?} after the last ping", last_ping.elapsed());
    eventually("$disconnect ran", || async { connection_ids(&server, "idle").await.is_empty() }).await;
}

async fn the_maximum_duration_closes_an_active_connection_with_1001(on: On) {
    let server = spawn_with(on, |o| o.connection_limits.max_duration = Duration::from_millis(1500)).await;
    let mut ws = notify_client(&server, "old", "").await;
    let opened = Instant::now();
    // Busy all along: a subscribe every 200 ms, and still closed at the maximum duration.
    let code = loop {
        send_json(&mut ws, json!({"type":"subscribe","event_name":"e"})).await;
        match next_message(&mut ws, Duration::from_secs(5)).await {
            Some(Message::Text(_)) => tokio::time::sleep(Duration::from_millis(200)).await,
            Some(Message::Close(frame)) => break frame.map(|f| (u16::from(f.code), f.reason.to_string())),
            other => panic!("{other:?}"),
        }
        assert!(opened.elapsed() < Duration::from_secs(10), "never closed");
    };
    assert_eq!(code, Some((1001, "Going away: 2 h limit".to_string())));
    assert!(opened.elapsed() >= Duration::from_millis(1400), "closed after {:?}", opened.elapsed());
    eventually("$disconnect ran", || async { connection_ids(&server, "old").await.is_empty() }).await;
}

async fn the_connection_rate_quota_answers_429(on: On) {
    let server = spawn_with(on, |o| o.connect_rate = Some(2)).await;
    let url = server.ws_url(&format!("/api/v1/notify/ws?token={}", user_token("rate")));
    let started = Instant::now();
    let attempts = futures::future::join_all((0..8).map(|_| connect(&url, None))).await;
    let seconds = started.elapsed().as_secs() as usize + 2;
    let mut open = Vec::new();
    let mut refused = 0;
    for attempt in attempts {
        match attempt {
            Ok((ws, _)) => open.push(ws),
            Err(e) => {
                assert_eq!(refusal_status(&e), Some(429), "{e}");
                refused += 1;
            }
        }
    }
    // At most 2 a second got through (the burst spans at most `seconds` windows); the rest were
    // refused before any handler ran.
    assert!(!open.is_empty() && open.len() <= 2 * seconds && refused >= 8 - 2 * seconds, "{} open, {refused} refused", open.len());
    assert_eq!(connection_ids(&server, "rate").await.len(), open.len());
    assert_eq!(server.app.registry.len(), open.len());
}
