//! Publishing and delivery end to end (CONTRACT §3–§4): `POST /notify`, queue messages (seed
//! 002, SQS and Kafka), protobuf pushes with acks and redelivery (seed 003), gone connections,
//! idempotency and dead-lettering — real WebSocket clients against herald-local.

use std::time::Duration;

use futures::SinkExt;
use herald::domain::{Api, Connection, Subscription};
use herald::protocol::{AckStatus, ack_protobuf_base64};
use herald_tests::local::*;
use herald_tests::on_both;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

on_both!(
    seed_000_user_and_event_reaches_only_that_users_subscribed_connections,
    seed_000_broadcast_by_event_and_direct_by_user,
    notify_refusals_follow_the_contract,
    http_errors_are_json_and_say_what_is_wrong,
    cors_is_off_by_default_and_answers_only_the_origins_given,
    seed_002_queue_message_reaches_every_connection_of_the_user,
    seed_002_body_on_notify_means_what_it_means_on_the_queue,
    message_ids_are_per_publisher,
    seed_002_kafka_record_reaches_the_user,
    seed_003_protobuf_ack_stops_redelivery,
    seed_003_unacked_push_is_resent_then_the_connection_closed,
    a_json_connection_in_ack_mode_is_told_ack_timeout_before_the_close,
    seed_003_nack_resends_at_once,
    a_gone_connection_is_cleaned_up,
    the_same_message_id_twice_is_pushed_once,
    a_poison_message_is_dead_lettered_and_the_batch_delivered,
);

const QUIET: Duration = Duration::from_millis(400);

async fn post_notify(server: &herald_local::Server, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(server.url("/notify")).header("content-type", "application/json").body(body.to_string());
    if let Some(t) = token {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.expect("POST /notify");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn subscribed(server: &herald_local::Server, user: &str, query: &str, event: &str) -> Ws {
    let mut ws = notify_client(server, user, query).await;
    assert_eq!(request(&mut ws, json!({"type":"subscribe","event_name":event})).await["type"], "subscribed");
    ws
}

async fn seed_000_user_and_event_reaches_only_that_users_subscribed_connections(on: On) {
    let server = spawn_app(on).await;
    let mut mine = subscribed(&server, "1589", "", "notification:test").await;
    let mut mine_unsubscribed = notify_client(&server, "1589", "").await;
    let mut other = subscribed(&server, "7", "", "notification:test").await;
    let id = publish(&server, json!({"user_id":1589,"event_name":"notification:test","message":{"text":"hi"}})).await;
    let push = next_json(&mut mine).await;
    assert_eq!(push["type"], "push");
    assert_eq!(push["id"], id);
    assert_eq!(push["event_name"], "notification:test");
    assert_eq!(push["message"], json!({"text":"hi"}));
    assert!(time::OffsetDateTime::parse(push["created_at"].as_str().unwrap(), &time::format_description::well_known::Rfc3339).is_ok());
    assert!(push.get("title").is_none() && push.get("user_id").is_none(), "{push}");
    assert_silent(&mut mine_unsubscribed, QUIET).await;
    assert_silent(&mut other, QUIET).await;
}

async fn seed_000_broadcast_by_event_and_direct_by_user(on: On) {
    let server = spawn_app(on).await;
    let mut a = subscribed(&server, "a", "", "news").await;
    let mut b = subscribed(&server, "b", "", "news").await;
    let mut b_plain = notify_client(&server, "b", "").await;
    let id = publish(&server, json!({"event_name":"news","message":"all"})).await;
    assert_eq!(next_json(&mut a).await["id"], id);
    assert_eq!(next_json(&mut b).await["id"], id);
    assert_silent(&mut b_plain, QUIET).await;
    let direct = publish(&server, json!({"user_id":"b","title":"T","body":"B"})).await;
    for ws in [&mut b, &mut b_plain] {
        let p = next_json(ws).await;
        assert_eq!((p["id"].as_str(), p["title"].as_str(), p["body"].as_str()), (Some(direct.as_str()), Some("T"), Some("B")));
    }
    assert_silent(&mut a, QUIET).await;
}

async fn notify_refusals_follow_the_contract(on: On) {
    let server = spawn_app(on).await;
    let good = json!({"user_id":1,"message":"x"}).to_string();
    let cases: Vec<(Option<String>, String, u16)> = vec![
        (None, good.clone(), 401),
        (Some("garbage".into()), good.clone(), 401),
        (Some(token(json!({"sub":"x","scope":"notify:publish","exp":1_600_000_000}))), good.clone(), 401),
        (Some(user_token("just-a-user")), good.clone(), 403),
        (Some(publisher()), "{nope".into(), 400),
        (Some(publisher()), json!({"message":"to nobody"}).to_string(), 400),
        (Some(publisher()), json!({"user_id":[1]}).to_string(), 400),
        (Some(publisher()), json!({"event_name":"e","title":5}).to_string(), 400),
        (Some(publisher()), json!({"user_id":"u","message":"x".repeat(130 * 1024)}).to_string(), 400),
        // Nothing to deliver, an unknown method; the token is checked before the body.
        (Some(publisher()), json!({"user_id":"u"}).to_string(), 400),
        (Some(publisher()), json!({"user_id":"u","message":null}).to_string(), 400),
        (Some(publisher()), json!({"user_id":"u","delivery_method":"sms","content":"c"}).to_string(), 400),
        (None, json!({"user_id":"u","mesage":"hi"}).to_string(), 401),
        (Some(user_token("just-a-user")), json!({"user_id":"u","mesage":"hi"}).to_string(), 403),
    ];
    for (token, body, status) in cases {
        let (got, reply) = post_notify(&server, token.as_deref(), &body).await;
        assert_eq!(got, status, "{body}: {reply}");
        assert!(reply["error"]["code"].is_string() && reply["error"]["message"].is_string(), "{reply}");
    }
    // A typo is named, not accepted as an empty push.
    let (got, reply) = post_notify(&server, Some(&publisher()), &json!({"user_id":"u","mesage":"hi"}).to_string()).await;
    assert_eq!((got, reply["error"]["code"].as_str()), (400, Some("bad_request")), "{reply}");
    assert!(reply["error"]["message"].as_str().unwrap().contains("\"mesage\""), "{reply}");
    let admin = token(json!({"admin_id": 1}));
    assert_eq!(post_notify(&server, Some(&admin), &good).await.0, 202);
}

async fn http_errors_are_json_and_say_what_is_wrong(on: On) {
    let server = spawn_app(on).await;
    let client = reqwest::Client::new();
    let json_error = |response: reqwest::Response| async move {
        let status = response.status().as_u16();
        let kind = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let body: Value = response.json().await.expect("a JSON body");
        assert!(kind.starts_with("application/json"), "{status} {kind}");
        (
            status,
            body["error"]["code"].as_str().unwrap_or_default().to_string(),
            body["error"]["message"].as_str().unwrap_or_default().to_string(),
        )
    };
    let (status, code, message) = json_error(client.get(server.url("/nope")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (404, "not_found"), "{message}");
    assert!(message.contains("/nope"), "{message}");
    let (status, code, message) = json_error(client.get(server.url("/notify")).send().await.unwrap()).await;
    assert_eq!((status, code.as_str()), (405, "method_not_allowed"), "{message}");
    // A token without `Bearer ` (or under another scheme) is refused naming the scheme it needs.
    for header in [publisher(), format!("Basic {}", publisher())] {
        let response =
            client.post(server.url("/notify")).header("authorization", header).body(r#"{"user_id":"1","message":1}"#).send().await.unwrap();
        let (status, code, message) = json_error(response).await;
        assert_eq!((status, code.as_str()), (401, "token_missing"));
        assert!(message.contains("Bearer <token>"), "{message}");
    }
    // Any case of the scheme, as RFC 7235 has it.
    let response = client
        .post(server.url("/notify"))
        .header("authorization", format!("BEARER {}", publisher()))
        .body(r#"{"user_id":"1","message":1}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
}

async fn cors_is_off_by_default_and_answers_only_the_origins_given(on: On) {
    const APP: &str = "https://app.example.com";
    let client = reqwest::Client::new();
    let body = r#"{"user_id":"1","message":1}"#;
    let post = |server: &herald_local::Server, origin: &str| {
        client.post(server.url("/notify")).bearer_auth(publisher()).header("origin", origin).body(body).send()
    };
    let preflight = |server: &herald_local::Server, origin: &str| {
        client
            .request(reqwest::Method::OPTIONS, server.url("/notify"))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "authorization, content-type")
            .send()
    };
    let allow = |r: &reqwest::Response| r.headers().get("access-control-allow-origin").map(|v| v.to_str().unwrap().to_string());

    let off = spawn_app(on).await;
    let r = post(&off, APP).await.unwrap();
    assert_eq!((r.status().as_u16(), allow(&r)), (202, None), "no CORS unless HERALD_CORS_ORIGINS is set");
    assert_eq!(preflight(&off, APP).await.unwrap().status().as_u16(), 405);

    let on_ = spawn_with(on, |o| o.cors_origins = vec![APP.into()]).await;
    let r = preflight(&on_, APP).await.unwrap();
    assert_eq!((r.status().as_u16(), allow(&r).as_deref()), (204, Some(APP)));
    assert_eq!(r.headers()["access-control-allow-methods"], "POST");
    assert!(r.headers()["access-control-allow-headers"].to_str().unwrap().contains("authorization"));
    let r = post(&on_, APP).await.unwrap();
    assert_eq!((r.status().as_u16(), allow(&r).as_deref()), (202, Some(APP)));
    // Another origin gets no CORS headers, so its browser refuses to read the answer.
    let r = preflight(&on_, "https://evil.example.com").await.unwrap();
    assert_eq!((r.status().as_u16(), allow(&r)), (204, None));
    assert_eq!(allow(&post(&on_, "https://evil.example.com").await.unwrap()), None);
    // Refusals carry the header too: the page can read the error.
    let r = client.post(on_.url("/notify")).header("origin", APP).body(body).send().await.unwrap();
    assert_eq!((r.status().as_u16(), allow(&r).as_deref()), (401, Some(APP)));

    // A bad setting stops startup, naming the variable.
    let err = herald_local::Options::from_lookup(&|k| (k == "HERALD_CORS_ORIGINS").then(|| "app.example.com/x".to_string())).unwrap_err();
    assert!(err.to_string().contains("HERALD_CORS_ORIGINS"), "{err}");
}

const SEED_002: &str = r#"{"message_id": "123e4567-e89b-12d3-a456-426614174000","delivery_method": "push","user_id": "b1fe6a68-f7b5-4c2c-a52b-97494403d2ce","subject":"Новый фильм", "content": "Фильм 'Как закалялась сталь' теперь доступен для просмотра"}"#;
const SEED_002_USER: &str = "b1fe6a68-f7b5-4c2c-a52b-97494403d2ce";

async fn seed_002_queue_message_reaches_every_connection_of_the_user(on: On) {
    let server = spawn_app(on).await;
    let mut one = notify_client(&server, SEED_002_USER, "").await;
    let mut two = notify_client(&server, SEED_002_USER, "").await;
    herald::queue::Queue::send(&*server.app.handlers.queue, SEED_002).await.unwrap();
    for ws in [&mut one, &mut two] {
        let p = next_json(ws).await;
        assert_eq!(p["title"], "Новый фильм");
        assert_eq!(p["body"], "Фильм 'Как закалялась сталь' теперь доступен для просмотра");
        assert_eq!(p["id"], "123e4567-e89b-12d3-a456-426614174000");
    }
}

async fn seed_002_body_on_notify_means_what_it_means_on_the_queue(on: On) {
    let server = spawn_app(on).await;
    let mut ws = notify_client(&server, SEED_002_USER, "").await;
    let mut ids = Vec::new();
    for _ in 0..2 {
        let (status, reply) = post_notify(&server, Some(&publisher()), SEED_002).await;
        assert_eq!(status, 202, "{reply}");
        ids.push(reply["id"].as_str().expect("an id").to_string());
    }
    assert_eq!(ids[0], ids[1], "the same message_id from the same publisher names the same push");
    let p = next_json(&mut ws).await;
    assert_eq!(
        (p["id"].as_str(), p["title"].as_str(), p["body"].as_str()),
        (Some(ids[0].as_str()), Some("Новый фильм"), Some("Фильм 'Как закалялась сталь' теперь доступен для просмотра"))
    );
    // message_id is the idempotency key: the second post is not pushed again.
    assert_silent(&mut ws, QUIET).await;
}

/// An attacker with a valid publisher token who posts another publisher's message_id first
/// (guessed or seen) must not suppress that publisher's push, nor collide with its id.
async fn message_ids_are_per_publisher(on: On) {
    let server = spawn_app(on).await;
    let mut ws = notify_client(&server, "victim", "").await;
    let attacker = token(json!({"sub": "attacker", "scope": "notify:publish"}));
    let body = json!({"message_id": "order-1001", "user_id": "victim", "title": "from attacker"}).to_string();
    let (status, first) = post_notify(&server, Some(&attacker), &body).await;
    assert_eq!(status, 202, "{first}");
    assert_eq!(next_json(&mut ws).await["title"], "from attacker");
    let body = json!({"message_id": "order-1001", "user_id": "victim", "title": "your order"}).to_string();
    let (status, second) = post_notify(&server, Some(&publisher()), &body).await;
    assert_eq!(status, 202, "{second}");
    let p = next_json(&mut ws).await;
    assert_eq!((p["title"].as_str(), p["id"].as_str()), (Some("your order"), second["id"].as_str()));
    assert_ne!(first["id"], second["id"], "two publishers' pushes have two ids (clients dedupe by id)");
}

async fn seed_002_kafka_record_reaches_the_user(on: On) {
    use base64::Engine as _;
    let server = spawn_app(on).await;
    let mut ws = notify_client(&server, SEED_002_USER, "").await;
    let value = base64::engine::general_purpose::STANDARD.encode(SEED_002);
    let poison = base64::engine::general_purpose::STANDARD.encode("not json");
    let fixture = json!({
        "eventSource": "SelfManagedKafka",
        "bootstrapServers": "kafka-0:9092",
        "records": {
            "notification.send-0": [{"topic":"notification.send","partition":0,"offset":15,"timestamp":1700000000000u64,
                "timestampType":"CREATE_TIME","value":value,"headers":[{"source":[104,105]}]}],
            "notification.send-1": [{"topic":"notification.send","partition":1,"offset":3,"timestamp":1700000000001u64,
                "timestampType":"CREATE_TIME","value":poison,"headers":[]}]
        }
    });
    let event: aws_lambda_events::kafka::KafkaEvent = serde_json::from_value(fixture).unwrap();
    assert_eq!(server.app.handlers.dispatch_deps().handle_kafka(event).await.unwrap(), 2);
    let p = next_json(&mut ws).await;
    assert_eq!((p["title"].as_str(), p["id"].as_str()), (Some("Новый фильм"), Some("123e4567-e89b-12d3-a456-426614174000")));
    let dead = server.app.queues.notifications.dead_letters().await;
    assert_eq!(dead.len(), 1, "the poison record is set aside: {dead:?}");
}

async fn fast_acks(on: On) -> herald_local::Server {
    spawn_with(on, |o| {
        o.delivery.ack_timeout = Duration::from_millis(300);
        o.delivery.max_attempts = 3;
    })
    .await
}

async fn seed_003_protobuf_ack_stops_redelivery(on: On) {
    let server = fast_acks(on).await;
    // A protobuf connection sends its frames as text: JSON, or a base64 ClientMessage (API Gateway
    // closes a connection that sends a binary frame).
    let mut ws = subscribed(&server, "p1", "&format=protobuf", "order:paid").await;
    let id = publish(&server, json!({"user_id":"p1","event_name":"order:paid","message":{"n":1}})).await;
    let push = decode_push(&next_binary(&mut ws).await);
    assert_eq!((push.id.as_str(), push.title.as_str(), push.body.as_str()), (id.as_str(), "order:paid", r#"{"n":1}"#));
    ws.send(Message::Text(ack_protobuf_base64(&push.id, AckStatus::Ack).into())).await.unwrap();
    assert_silent(&mut ws, Duration::from_millis(1000)).await;
}

async fn seed_003_unacked_push_is_resent_then_the_connection_closed(on: On) {
    let server = fast_acks(on).await;
    let mut ws = notify_client(&server, "p2", "&format=protobuf").await;
    let id = publish(&server, json!({"user_id":"p2","title":"t","body":"b"})).await;
    for _ in 0..3 {
        assert_eq!(decode_push(&next_binary(&mut ws).await).id, id);
    }
    // Told why, in its own encoding, before the close.
    let (code, message) = decode_error(&next_binary(&mut ws).await);
    assert_eq!(code, "ack_timeout", "{message}");
    assert!(message.contains(&id), "{message}");
    assert_eq!(close_code(&mut ws).await, Some(1000));
    eventually("the connection is deleted", || async { connection_ids(&server, "p2").await.is_empty() }).await;
}

async fn seed_003_nack_resends_at_once(on: On) {
    let server = spawn_with(on, |o| o.delivery.ack_timeout = Duration::from_secs(30)).await;
    let mut ws = notify_client(&server, "p3", "&ack=required").await;
    let id = publish(&server, json!({"user_id":"p3","message":"m"})).await;
    assert_eq!(next_json(&mut ws).await["id"], id);
    send_json(&mut ws, json!({"type":"ack","push_id":id,"status":"nack"})).await;
    let again = next_json(&mut ws).await;
    assert_eq!(again["id"], id);
    send_json(&mut ws, json!({"type":"ack","push_id":id,"status":"ack"})).await;
    assert_silent(&mut ws, QUIET).await;
}

async fn a_json_connection_in_ack_mode_is_told_ack_timeout_before_the_close(on: On) {
    let server = fast_acks(on).await;
    let mut ws = notify_client(&server, "p4", "&ack=required").await;
    let id = publish(&server, json!({"user_id":"p4","message":"m"})).await;
    for _ in 0..3 {
        assert_eq!(next_json(&mut ws).await["id"], id);
    }
    let notice = next_json(&mut ws).await;
    assert_eq!((notice["type"].as_str(), notice["code"].as_str()), (Some("error"), Some("ack_timeout")), "{notice}");
    assert_eq!(close_code(&mut ws).await, Some(1000));
}

async fn a_gone_connection_is_cleaned_up(on: On) {
    let server = spawn_app(on).await;
    let store = &server.app.handlers.store;
    let ghost = Connection::opened("ghost000000000=", "g", Api::Notify, Duration::from_secs(3600));
    store.put_connection(&ghost).await.unwrap();
    store.subscribe(&Subscription::of(&ghost, "haunt")).await.unwrap();
    let mut live = subscribed(&server, "h", "", "haunt").await;
    let id = publish(&server, json!({"event_name":"haunt","message":"boo"})).await;
    assert_eq!(next_json(&mut live).await["id"], id);
    eventually("the gone connection is deleted", || async { store.get_connection("ghost000000000=").await.unwrap().is_none() }).await;
    assert!(store.connection_subscriptions("ghost000000000=").await.unwrap().is_empty());
}

async fn the_same_message_id_twice_is_pushed_once(on: On) {
    let server = spawn_app(on).await;
    let mut ws = notify_client(&server, SEED_002_USER, "").await;
    let queue = &*server.app.handlers.queue;
    herald::queue::Queue::send(queue, SEED_002).await.unwrap();
    herald::queue::Queue::send(queue, SEED_002).await.unwrap();
    assert_eq!(next_json(&mut ws).await["title"], "Новый фильм");
    assert_silent(&mut ws, Duration::from_millis(800)).await;
}

async fn a_poison_message_is_dead_lettered_and_the_batch_delivered(on: On) {
    let server = spawn_app(on).await;
    let mut ws = notify_client(&server, "q", "").await;
    let queue = &*server.app.handlers.queue;
    for body in [
        json!({"user_id":"q","title":"first"}).to_string(),
        "{this is not json".to_string(),
        json!({"message_id":"x1","delivery_method":"carrier-pigeon","user_id":"q"}).to_string(),
        json!({"user_id":"q","title":"second"}).to_string(),
    ] {
        herald::queue::Queue::send(queue, &body).await.unwrap();
    }
    let mut titles = vec![next_json(&mut ws).await["title"].clone(), next_json(&mut ws).await["title"].clone()];
    titles.sort_by_key(|t| t.to_string());
    assert_eq!(titles, vec![json!("first"), json!("second")]);
    let dlq = server.app.queues.notifications.dead_letters().await;
    assert_eq!(dlq.len(), 2, "{dlq:?}");
    assert!(dlq.iter().any(|b| b.contains("carrier-pigeon")) && dlq.iter().any(|b| b.contains("not valid JSON")));
    eventually("the queue is drained", || async { server.app.queues.notifications.depth().await == 0 }).await;
}
