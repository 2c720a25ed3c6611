//! The chat WebSocket API end to end (CONTRACT §5, seed 001): real WebSocket clients against
//! herald-local's `/ws`, once on the embedded backend and once on DynamoDB Local.

use std::time::Duration;

use futures::SinkExt;
use herald::domain::Api;
use herald_local::Server;
use herald_tests::local::*;
use herald_tests::on_both;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

on_both!(
    seed_frames_replayed_field_by_field,
    requester_and_admin_chat_with_read_status_and_unread_counts,
    handshake_refusals_store_no_connection,
    refusals_answer_ok_false_and_the_connection_lives,
    bad_args_answer_ok_false_and_the_connection_lives,
    two_concurrent_senders_get_unique_increasing_ids,
    a_retried_send_with_client_msg_id_is_stored_and_pushed_once,
);

const QUIET: Duration = Duration::from_millis(300);

/// A chat client: `/ws?sid=…` with the token as the `access_token` subprotocol pair.
async fn chat_client(server: &Server, sid: &str, claims: Value) -> Ws {
    let url = server.ws_url(&format!("/ws?sid={sid}"));
    let (ws, response) = connect(&url, Some(&format!("access_token, {}", token(claims)))).await.expect("connects");
    assert_eq!(response.headers().get("sec-websocket-protocol").expect("a subprotocol"), "access_token");
    ws
}

async fn requester(server: &Server, sid: &str, request_id: &str) -> Ws {
    chat_client(server, sid, json!({ "request_id": request_id })).await
}

async fn admin(server: &Server, sid: &str) -> Ws {
    chat_client(server, sid, json!({ "admin_id": "1" })).await
}

/// A frame as the seed writes it: `args` is JSON text.
fn event(name: &str, args: Value) -> Value {
    json!({ "name": name, "args": args.to_string() })
}

/// Sends a frame and returns the reply of that name, keeping the pushes that arrive meanwhile.
async fn call(ws: &mut Ws, frame: Value, pushes: &mut Vec<Value>) -> Value {
    let name = frame["name"].clone();
    send_json(ws, frame).await;
    loop {
        let v = next_json(ws).await;
        if v["name"] == "Event.ReceiveMessage" && name != "Event.ReceiveMessage" {
            pushes.push(v);
        } else {
            assert_eq!(v["name"], name, "{v}");
            return v;
        }
    }
}

/// The `result` of a successful reply.
fn ok(reply: Value) -> Value {
    assert_eq!(reply["ok"], true, "{reply}");
    assert!(reply.get("error").is_none(), "{reply}");
    reply["result"].clone()
}

/// The error text of a refusal.
fn refused(reply: &Value) -> String {
    assert_eq!(reply["ok"], false, "{reply}");
    assert!(reply.get("result").is_none(), "{reply}");
    reply["error"].as_str().unwrap_or_else(|| panic!("no error text: {reply}")).to_string()
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap_or_else(|| panic!("not an object: {v}")).keys().cloned().collect();
    k.sort();
    k
}

fn assert_rfc3339(v: &Value) {
    let text = v.as_str().unwrap_or_else(|| panic!("not a string: {v}"));
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap_or_else(|e| panic!("{text}: {e}"));
}

fn assert_conversation(c: &Value, id: i64, channel: &str, application_id: Value) {
    assert_eq!(keys(c), ["application_id", "create_at", "id", "session_channel", "update_at"]);
    assert_eq!(c["id"], id);
    assert_eq!(c["session_channel"], channel);
    assert_eq!(c["application_id"], application_id);
    assert_rfc3339(&c["create_at"]);
    assert_rfc3339(&c["update_at"]);
}

fn assert_message(m: &Value, id: i64, channel: &str, content: &str, sender_id: Value, status: i64) {
    assert_eq!(keys(m), ["content", "content_type", "create_at", "id", "sender_id", "session_channel", "status", "update_at"]);
    assert_eq!(m["id"], id, "{m}");
    assert_eq!(m["session_channel"], channel);
    assert_eq!(m["content"], content);
    assert_eq!(m["sender_id"], sender_id);
    assert_eq!(m["status"], status, "{m}");
    assert!(m["content_type"] == 1 || m["content_type"] == 2);
    assert_rfc3339(&m["create_at"]);
    assert_rfc3339(&m["update_at"]);
}

async fn seed_frames_replayed_field_by_field(on: On) {
    let server = spawn_app(on).await;
    let mut pushes = Vec::new();
    // The seed's operator: `?sid=2` with an `admin_id` token.
    let mut op = admin(&server, "2").await;

    // Event.AddConversation: application 1 first, so that application 100 gets id 2 as in the seed.
    let first = ok(call(&mut op, event("Event.AddConversation", json!({"user_id":1,"application_id":1})), &mut pushes).await);
    assert_conversation(&first, 1, "1", json!(1));
    let reply = call(&mut op, json!({"name":"Event.AddConversation","args":"{\"user_id\":1,\"application_id\":100}"}), &mut pushes).await;
    assert_eq!(keys(&reply), ["name", "ok", "result"]);
    assert_eq!(reply["name"], "Event.AddConversation");
    let second = ok(reply);
    assert_conversation(&second, 2, "100", json!(100));
    // Idempotent per application.
    let again = ok(call(&mut op, event("Event.AddConversation", json!({"user_id":1,"application_id":100})), &mut pushes).await);
    assert_eq!(again, second);

    // Event.GetConversationList.
    let list = ok(call(&mut op, json!({"name":"Event.GetConversationList","args":"{\"user_id\":1}"}), &mut pushes).await);
    assert_eq!(keys(&list), ["conversations"]);
    // Each with "online" (CONTRACT §8): user 1 has no chat connection yet.
    let with_online = |c: &Value, online: bool| {
        let mut c = c.clone();
        c["online"] = json!(online);
        c
    };
    assert_eq!(list["conversations"], json!([with_online(&first, false), with_online(&second, false)]));

    // Event.GetMessageList: the requester of application 100 (sid 1) writes "Hello World".
    let mut user = requester(&server, "1", "100").await;
    ok(call(&mut user, event("Event.SendMessage", json!({"session_channel":"100","sender_id":1,"content":"Hello World"})), &mut pushes)
        .await);
    let list =
        ok(call(&mut user, json!({"name":"Event.GetMessageList","args":"{\"session_channel\":\"100\",\"executor_id\":1}"}), &mut pushes)
            .await);
    assert_eq!(keys(&list), ["Messages"]);
    let messages = list["Messages"].as_array().expect("Messages");
    assert_eq!(messages.len(), 1);
    assert_message(&messages[0], 1, "100", "Hello World", json!(1), 0);
    assert_eq!(messages[0]["content_type"], 1);

    // Event.SendMessage on channel "10": the tenth message is the seed's "Hey" (id 10), the
    // eleventh its ReceiveMessage example "hey" (id 11).
    ok(call(&mut op, event("Event.AddConversation", json!({"user_id":1,"application_id":10})), &mut pushes).await);
    let mut user10 = requester(&server, "1", "10").await;
    ok(call(&mut op, event("Event.GetMessageList", json!({"session_channel":"10","executor_id":2})), &mut pushes).await);
    for i in 1..=9 {
        ok(call(
            &mut user10,
            event("Event.SendMessage", json!({"session_channel":"10","sender_id":1,"content":format!("m{i}")})),
            &mut pushes,
        )
        .await);
    }
    let reply = call(
        &mut user10,
        json!({"name":"Event.SendMessage","args":"{\"session_channel\":\"10\",\"sender_id\":1,\"content\":\"Hey\"}"}),
        &mut pushes,
    )
    .await;
    assert_eq!(reply["name"], "Event.SendMessage");
    let sent = ok(reply);
    assert_eq!(keys(&sent), ["message"]);
    assert_message(&sent["message"], 10, "10", "Hey", json!(1), 0);
    let sent =
        ok(call(&mut user10, event("Event.SendMessage", json!({"session_channel":"10","sender_id":1,"content":"hey"})), &mut pushes).await);
    assert!(pushes.is_empty(), "the sender gets no push: {pushes:?}");

    // Event.ReceiveMessage on the operator's connection, in order.
    let mut received = Vec::new();
    for _ in 0..11 {
        received.push(next_json(&mut op).await);
    }
    let last = received.last().expect("pushes").clone();
    assert_eq!(keys(&last), ["name", "ok", "result"]);
    assert_eq!((last["name"].clone(), last["ok"].clone()), (json!("Event.ReceiveMessage"), json!(true)));
    assert_eq!(keys(&last["result"]), ["message"]);
    assert_message(&last["result"]["message"], 11, "10", "hey", json!(1), 0);
    assert_eq!(last["result"]["message"], sent["message"]);
    let ids: Vec<i64> = received.iter().map(|p| p["result"]["message"]["id"].as_i64().expect("id")).collect();
    assert_eq!(ids, (1..=11).collect::<Vec<_>>());

    // Event.ReadMessage, exactly as the seed.
    let reply = call(
        &mut op,
        json!({"name":"Event.ReadMessage","args":"{\"session_channel\":\"10\",\"executor_id\":2,\"message_id\":11}"}),
        &mut pushes,
    )
    .await;
    assert_eq!(reply, json!({"name":"Event.ReadMessage","ok":true,"result":null}));
    let list = ok(call(&mut op, event("Event.GetMessageList", json!({"session_channel":"10","executor_id":2})), &mut pushes).await);
    assert_eq!(list["Messages"][10]["status"], 1);
    assert_eq!(list["Messages"][9]["status"], 0);
    assert_silent(&mut user10, QUIET).await;
}

async fn requester_and_admin_chat_with_read_status_and_unread_counts(on: On) {
    let server = spawn_app(on).await;
    let mut pushes = Vec::new();
    let mut user = requester(&server, "7", "500").await;
    // The requester opens its own application's conversation.
    let conversation = ok(call(&mut user, event("Event.AddConversation", json!({"user_id":7,"application_id":500})), &mut pushes).await);
    assert_conversation(&conversation, 1, "500", json!(500));

    // An operator with two connections finds it and joins by listing its messages.
    let mut op = admin(&server, "3").await;
    let mut op2 = admin(&server, "3").await;
    let list = ok(call(&mut op, event("Event.GetConversationList", json!({"user_id":"7"})), &mut pushes).await);
    let mut listed = conversation.clone();
    listed["online"] = json!(true);
    assert_eq!(list["conversations"], json!([listed]), "its user is connected: online");
    let list = ok(call(&mut op, event("Event.GetMessageList", json!({"session_channel":"500","executor_id":3})), &mut pushes).await);
    assert_eq!(list, json!({"Messages": []}));

    // requester → operator (both connections).
    let sent =
        ok(call(&mut user, event("Event.SendMessage", json!({"session_channel":"500","sender_id":7,"content":"help"})), &mut pushes).await);
    assert_message(&sent["message"], 1, "500", "help", json!(7), 0);
    for ws in [&mut op, &mut op2] {
        let push = next_json(ws).await;
        assert_eq!(push, json!({"name":"Event.ReceiveMessage","ok":true,"result":{"message": sent["message"].clone()}}));
    }
    // operator → requester, an image.
    let answer = ok(call(
        &mut op2,
        event("Event.SendMessage", json!({"session_channel":"500","sender_id":3,"content":"https://x/y.png","content_type":2})),
        &mut pushes,
    )
    .await);
    assert_message(&answer["message"], 2, "500", "https://x/y.png", json!(3), 0);
    assert_eq!(answer["message"]["content_type"], 2);
    let push = next_json(&mut user).await;
    assert_eq!(push["result"]["message"], answer["message"]);
    assert_silent(&mut op, QUIET).await;
    ok(call(
        &mut user,
        event("Event.SendMessage", json!({"session_channel":"500","sender_id":"7","content":"thanks","content_type":9})),
        &mut pushes,
    )
    .await);
    assert_eq!(next_json(&mut op).await["result"]["message"]["content_type"], 1);
    assert_eq!(next_json(&mut op2).await["result"]["message"]["id"], 3);

    // Unread counts: messages by someone else with status 0.
    let unread = ok(call(&mut op, event("Event.GetUnreadInfo", json!({"executor_id":3})), &mut pushes).await);
    assert_eq!(unread, json!({"total":2,"channels":[{"session_channel":"500","count":2}]}));
    let unread = ok(call(&mut user, event("Event.GetUnreadInfo", json!({"executor_id":7})), &mut pushes).await);
    assert_eq!(unread, json!({"total":1,"channels":[{"session_channel":"500","count":1}]}));

    // Reading.
    for id in [1, 3] {
        let r =
            call(&mut op, event("Event.ReadMessage", json!({"session_channel":"500","executor_id":3,"message_id":id})), &mut pushes).await;
        assert_eq!(r, json!({"name":"Event.ReadMessage","ok":true,"result":null}));
    }
    // Twice is fine.
    ok(call(&mut op, event("Event.ReadMessage", json!({"session_channel":"500","executor_id":3,"message_id":1})), &mut pushes).await);
    let unread = ok(call(&mut op, event("Event.GetUnreadInfo", json!({"executor_id":3})), &mut pushes).await);
    assert_eq!(unread, json!({"total":0,"channels":[]}));
    ok(call(&mut user, event("Event.ReadMessage", json!({"session_channel":"500","executor_id":7,"message_id":2})), &mut pushes).await);
    let unread = ok(call(&mut user, event("Event.GetUnreadInfo", json!({"executor_id":7})), &mut pushes).await);
    assert_eq!(unread, json!({"total":0,"channels":[]}));
    let list = ok(call(&mut user, event("Event.GetMessageList", json!({"session_channel":"500","executor_id":7})), &mut pushes).await);
    let statuses: Vec<&Value> = list["Messages"].as_array().expect("Messages").iter().map(|m| &m["status"]).collect();
    assert_eq!(statuses, [&json!(1), &json!(1), &json!(1)]);
    assert!(pushes.is_empty(), "{pushes:?}");
}

async fn handshake_refusals_store_no_connection(on: On) {
    let server = spawn_app(on).await;
    let good = token(json!({"request_id": "100"}));
    let cases = [
        ("missing sid", server.ws_url("/ws"), Some(format!("access_token, {good}")), 400),
        ("empty sid", server.ws_url("/ws?sid="), Some(format!("access_token, {good}")), 400),
        ("no request_id or admin_id", server.ws_url("/ws?sid=1"), Some(format!("access_token, {}", token(json!({"sub": "1"})))), 403),
        ("token in the query, no subprotocol", server.ws_url(&format!("/ws?sid=1&token={good}")), None, 401),
        ("no token", server.ws_url("/ws?sid=1"), None, 401),
        (
            "expired",
            server.ws_url("/ws?sid=1"),
            Some(format!("access_token, {}", token(json!({"request_id": "100", "exp": 1_600_000_000})))),
            401,
        ),
        ("a bad token", server.ws_url("/ws?sid=1"), Some("access_token, abc".to_string()), 401),
    ];
    for (what, url, protocols, status) in cases {
        let err = connect(&url, protocols.as_deref()).await.err().unwrap_or_else(|| panic!("{what}: connected"));
        assert_eq!(refusal_status(&err), Some(status), "{what}: {err}");
    }
    assert!(connection_ids(&server, "1").await.is_empty());

    // The seed's handshake works, and the connection is a chat one with sid as its user.
    let _ws = chat_client(&server, "1", json!({"request_id": "100"})).await;
    let stored = server.app.handlers.store.user_connections("1").await.expect("store");
    assert_eq!(stored.len(), 1);
    assert_eq!((stored[0].api, stored[0].admin, stored[0].request_id.as_deref()), (Api::Chat, false, Some("100")));
}

async fn refusals_answer_ok_false_and_the_connection_lives(on: On) {
    let server = spawn_app(on).await;
    let mut pushes = Vec::new();
    let mut op = admin(&server, "2").await;
    for app in [100, 200] {
        ok(call(&mut op, event("Event.AddConversation", json!({"user_id": app / 100, "application_id": app})), &mut pushes).await);
    }
    let mut user = requester(&server, "1", "100").await;
    let cases = [
        ("wrong sender", event("Event.SendMessage", json!({"session_channel":"100","sender_id":2,"content":"x"})), "sid"),
        ("wrong executor", event("Event.GetMessageList", json!({"session_channel":"100","executor_id":5})), "sid"),
        ("wrong executor (read)", event("Event.ReadMessage", json!({"session_channel":"100","executor_id":5,"message_id":1})), "sid"),
        ("wrong executor (unread)", event("Event.GetUnreadInfo", json!({"executor_id":5})), "sid"),
        ("another user's list", event("Event.GetConversationList", json!({"user_id":2})), "sid"),
        (
            "another requester's conversation",
            event("Event.SendMessage", json!({"session_channel":"200","sender_id":1,"content":"x"})),
            "requester",
        ),
        ("another requester's messages", event("Event.GetMessageList", json!({"session_channel":"200","executor_id":1})), "requester"),
        (
            "another requester's read",
            event("Event.ReadMessage", json!({"session_channel":"200","executor_id":1,"message_id":1})),
            "requester",
        ),
        ("another application", event("Event.AddConversation", json!({"user_id":1,"application_id":300})), "requester"),
        ("no such message", event("Event.ReadMessage", json!({"session_channel":"100","executor_id":1,"message_id":99})), "no message"),
    ];
    for (what, frame, text) in cases {
        let name = frame["name"].clone();
        let reply = call(&mut user, frame, &mut pushes).await;
        assert_eq!(reply["name"], name, "{what}");
        let error = refused(&reply);
        assert!(error.contains(text), "{what}: {error}");
    }
    // The requester's own list leaves the other application's conversation out.
    let list = ok(call(&mut user, event("Event.GetConversationList", json!({"user_id":1})), &mut pushes).await);
    let channels: Vec<&Value> = list["conversations"].as_array().expect("conversations").iter().map(|c| &c["session_channel"]).collect();
    assert_eq!(channels, [&json!("100")]);
    let list = ok(call(&mut op, event("Event.GetMessageList", json!({"session_channel":"200","executor_id":2})), &mut pushes).await);
    assert_eq!(list, json!({"Messages": []}));
    assert!(server.app.handlers.store.get_conversation("300").await.expect("store").is_none());
    // Still open, and still served.
    let sent =
        ok(call(&mut user, event("Event.SendMessage", json!({"session_channel":"100","sender_id":1,"content":"still here"})), &mut pushes)
            .await);
    assert_eq!(sent["message"]["id"], 1);
    // The admin's frames must name its own sid too.
    let error = refused(
        &call(&mut op, event("Event.SendMessage", json!({"session_channel":"100","sender_id":1,"content":"x"})), &mut pushes).await,
    );
    assert!(error.contains("sid"), "{error}");
}

async fn bad_args_answer_ok_false_and_the_connection_lives(on: On) {
    let server = spawn_app(on).await;
    let mut pushes = Vec::new();
    let mut op = admin(&server, "2").await;
    ok(call(&mut op, event("Event.AddConversation", json!({"user_id":1,"application_id":100})), &mut pushes).await);
    let raw = |text: &str| Message::Text(text.to_string().into());
    let cases: Vec<(&str, Message, Value, &str)> = vec![
        ("not JSON", raw("hello"), Value::Null, "not valid JSON"),
        ("no name", raw(r#"{"args":"{}"}"#), Value::Null, "name"),
        ("unknown event", raw(r#"{"name":"Event.Nope","args":"{}"}"#), json!("Event.Nope"), "unknown event"),
        ("a server event", raw(r#"{"name":"Event.ReceiveMessage","args":"{}"}"#), json!("Event.ReceiveMessage"), "unknown event"),
        ("args not JSON", raw(r#"{"name":"Event.SendMessage","args":"{session_channel:100"}"#), json!("Event.SendMessage"), "args"),
        ("args an array", raw(r#"{"name":"Event.GetMessageList","args":[1,2]}"#), json!("Event.GetMessageList"), "args"),
        ("args JSON text of a number", raw(r#"{"name":"Event.GetUnreadInfo","args":"5"}"#), json!("Event.GetUnreadInfo"), "args"),
        (
            "missing content",
            raw(&event("Event.SendMessage", json!({"session_channel":"100","sender_id":2})).to_string()),
            json!("Event.SendMessage"),
            "content",
        ),
        (
            "content a number",
            raw(&event("Event.SendMessage", json!({"session_channel":"100","sender_id":2,"content":5})).to_string()),
            json!("Event.SendMessage"),
            "content",
        ),
        (
            "missing session_channel",
            raw(&event("Event.GetMessageList", json!({"executor_id":2})).to_string()),
            json!("Event.GetMessageList"),
            "session_channel",
        ),
        (
            "session_channel an object",
            raw(&event("Event.GetMessageList", json!({"session_channel":{},"executor_id":2})).to_string()),
            json!("Event.GetMessageList"),
            "session_channel",
        ),
        (
            "executor_id a float",
            raw(&event("Event.GetUnreadInfo", json!({"executor_id":2.5})).to_string()),
            json!("Event.GetUnreadInfo"),
            "executor_id",
        ),
        ("missing executor_id", raw(&event("Event.GetUnreadInfo", json!({})).to_string()), json!("Event.GetUnreadInfo"), "executor_id"),
        (
            "message_id a string",
            raw(&event("Event.ReadMessage", json!({"session_channel":"100","executor_id":2,"message_id":"1"})).to_string()),
            json!("Event.ReadMessage"),
            "message_id",
        ),
        (
            "missing message_id",
            raw(&event("Event.ReadMessage", json!({"session_channel":"100","executor_id":2})).to_string()),
            json!("Event.ReadMessage"),
            "message_id",
        ),
        (
            "limit too big",
            raw(&event("Event.GetMessageList", json!({"session_channel":"100","executor_id":2,"limit":100000})).to_string()),
            json!("Event.GetMessageList"),
            "limit",
        ),
        (
            "before_id a string",
            raw(&event("Event.GetMessageList", json!({"session_channel":"100","executor_id":2,"before_id":"x"})).to_string()),
            json!("Event.GetMessageList"),
            "before_id",
        ),
        (
            "application_id a bool",
            raw(&event("Event.AddConversation", json!({"user_id":1,"application_id":true})).to_string()),
            json!("Event.AddConversation"),
            "application_id",
        ),
        ("missing user_id", raw(&event("Event.GetConversationList", json!({})).to_string()), json!("Event.GetConversationList"), "user_id"),
    ];
    for (what, message, name, text) in cases {
        op.send(message).await.expect("send");
        let reply = next_json(&mut op).await;
        assert_eq!(keys(&reply), ["error", "name", "ok"], "{what}: {reply}");
        assert_eq!(reply["name"], name, "{what}");
        let error = refused(&reply);
        assert!(error.contains(text), "{what}: {error}");
    }
    // Nothing was stored, and the connection still serves.
    let list = ok(call(&mut op, event("Event.GetMessageList", json!({"session_channel":"100","executor_id":2})), &mut pushes).await);
    assert_eq!(list, json!({"Messages": []}));
}

async fn two_concurrent_senders_get_unique_increasing_ids(on: On) {
    const EACH: i64 = 20;
    let server = spawn_app(on).await;
    let mut op = admin(&server, "2").await;
    let mut user = requester(&server, "1", "100").await;
    let mut none = Vec::new();
    ok(call(&mut op, event("Event.AddConversation", json!({"user_id":1,"application_id":100})), &mut none).await);
    ok(call(&mut op, event("Event.GetMessageList", json!({"session_channel":"100","executor_id":2})), &mut none).await);

    async fn send_all(ws: &mut Ws, sender: i64) -> (Vec<i64>, Vec<Value>) {
        let mut pushes = Vec::new();
        let mut ids = Vec::new();
        for i in 0..EACH {
            let args = json!({"session_channel":"100","sender_id":sender,"content":format!("{sender}:{i}")});
            let sent = ok(call(ws, event("Event.SendMessage", args), &mut pushes).await);
            ids.push(sent["message"]["id"].as_i64().expect("id"));
        }
        (ids, pushes)
    }
    let ((op_ids, mut op_pushes), (user_ids, mut user_pushes)) = tokio::join!(send_all(&mut op, 2), send_all(&mut user, 1));
    for ids in [&op_ids, &user_ids] {
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "increasing: {ids:?}");
    }
    let mut all: Vec<i64> = op_ids.iter().chain(&user_ids).copied().collect();
    all.sort();
    assert_eq!(all, (1..=2 * EACH).collect::<Vec<_>>());

    // Each side receives the other's messages, all of them.
    while op_pushes.len() < EACH as usize {
        op_pushes.push(next_json(&mut op).await);
    }
    while user_pushes.len() < EACH as usize {
        user_pushes.push(next_json(&mut user).await);
    }
    let pushed = |ps: &[Value]| ps.iter().map(|p| p["result"]["message"]["id"].as_i64().expect("id")).collect::<Vec<_>>();
    let mut to_op = pushed(&op_pushes);
    to_op.sort();
    assert_eq!(to_op, user_ids);
    let mut to_user = pushed(&user_pushes);
    to_user.sort();
    assert_eq!(to_user, op_ids);

    // The history, oldest first, and paged.
    let list = ok(call(&mut op, event("Event.GetMessageList", json!({"session_channel":"100","executor_id":2})), &mut none).await);
    let ids: Vec<i64> = list["Messages"].as_array().expect("Messages").iter().map(|m| m["id"].as_i64().expect("id")).collect();
    assert_eq!(ids, (1..=2 * EACH).collect::<Vec<_>>());
    let page = ok(call(
        &mut op,
        event("Event.GetMessageList", json!({"session_channel":"100","executor_id":2,"limit":10,"before_id":11})),
        &mut none,
    )
    .await);
    let ids: Vec<i64> = page["Messages"].as_array().expect("Messages").iter().map(|m| m["id"].as_i64().expect("id")).collect();
    assert_eq!(ids, (1..=10).collect::<Vec<_>>());
    let page =
        ok(call(&mut op, event("Event.GetMessageList", json!({"session_channel":"100","executor_id":2,"limit":3})), &mut none).await);
    let ids: Vec<i64> = page["Messages"].as_array().expect("Messages").iter().map(|m| m["id"].as_i64().expect("id")).collect();
    assert_eq!(ids, [2 * EACH - 2, 2 * EACH - 1, 2 * EACH]);
    assert!(none.is_empty());
}

async fn a_retried_send_with_client_msg_id_is_stored_and_pushed_once(on: On) {
    let server = spawn_app(on).await;
    let mut pushes = Vec::new();
    let mut op = admin(&server, "2").await;
    ok(call(&mut op, event("Event.AddConversation", json!({"user_id":1,"application_id":100})), &mut pushes).await);
    ok(call(&mut op, event("Event.GetMessageList", json!({"session_channel":"100","executor_id":2})), &mut pushes).await);
    let mut user = requester(&server, "1", "100").await;
    let frame = event("Event.SendMessage", json!({"session_channel":"100","sender_id":1,"content":"once","client_msg_id":"c-1"}));
    let first = ok(call(&mut user, frame.clone(), &mut pushes).await);
    let retry = ok(call(&mut user, frame, &mut pushes).await);
    assert_eq!(first, retry);
    assert_eq!(next_json(&mut op).await["result"]["message"], first["message"]);
    assert_silent(&mut op, QUIET).await;
    let other = ok(call(
        &mut user,
        event("Event.SendMessage", json!({"session_channel":"100","sender_id":1,"content":"twice","client_msg_id":"c-2"})),
        &mut pushes,
    )
    .await);
    assert_eq!(other["message"]["id"], 2);
    let list = ok(call(&mut op, event("Event.GetMessageList", json!({"session_channel":"100","executor_id":2})), &mut pushes).await);
    assert_eq!(list["Messages"].as_array().expect("Messages").len(), 2);
}
