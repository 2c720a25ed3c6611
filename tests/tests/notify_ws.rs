//! The notification WebSocket API end to end (CONTRACT §3, §6, §7): real WebSocket clients
//! against herald-local, once on the embedded backend and once on DynamoDB Local.

use std::time::Duration;

use futures::SinkExt;
use herald::gateway::{Gateway, GatewayError, SdkGateway};
use herald_tests::local::*;
use herald_tests::on_both;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

on_both!(
    query_token_connects_and_subscribes,
    subprotocol_token_selects_access_token,
    refusals_store_no_connection,
    unsubscribing_the_last_event_closes_with_1000,
    bad_frames_get_error_frames_and_the_connection_lives,
    management_api_posts_describes_and_deletes,
    an_oversized_frame_closes_with_1009,
    disconnect_removes_connection_and_subscriptions,
);

async fn query_token_connects_and_subscribes(on: On) {
    let server = spawn_app(on).await;
    let mut ws = notify_client(&server, "1589", "").await;
    let reply = request(&mut ws, json!({"type":"subscribe","user_id":1589,"event_name":"notification:test"})).await;
    assert_eq!(reply, json!({"type":"subscribed","event_name":"notification:test"}));
    let ids = connection_ids(&server, "1589").await;
    assert_eq!(ids.len(), 1);
    let subs = server.app.handlers.store.connection_subscriptions(&ids[0]).await.unwrap();
    assert_eq!(subs, vec!["notification:test".to_string()]);
}

async fn subprotocol_token_selects_access_token(on: On) {
    let server = spawn_app(on).await;
    let url = server.ws_url("/api/v1/notify/ws");
    let (mut ws, response) = connect(&url, Some(&format!("access_token, {}", user_token("u-7")))).await.expect("connects");
    assert_eq!(response.headers().get("sec-websocket-protocol").unwrap(), "access_token");
    let reply = request(&mut ws, json!({"type":"subscribe","event_name":"e"})).await;
    assert_eq!(reply["type"], "subscribed");
    assert_eq!(connection_ids(&server, "u-7").await.len(), 1);
}

async fn refusals_store_no_connection(on: On) {
    let server = spawn_app(on).await;
    let base = server.ws_url("/api/v1/notify/ws");
    let expired = token(json!({"sub": "x", "exp": 1_600_000_000}));
    let wrong_key = herald::auth::issue_hs256("not-the-secret", &json!({"sub": "x", "exp": 4_000_000_000u64})).unwrap();
    let alg_none = {
        use base64::Engine as _;
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.", b.encode(r#"{"alg":"none","typ":"JWT"}"#), b.encode(r#"{"sub":"x","exp":4000000000}"#))
    };
    let cases = [
        ("missing", base.to_string()),
        ("expired", format!("{base}?token={expired}")),
        ("wrong key", format!("{base}?token={wrong_key}")),
        ("alg none", format!("{base}?token={alg_none}")),
        ("garbage", format!("{base}?token=abc")),
    ];
    for (what, url) in cases {
        let err = connect(&url, None).await.err().unwrap_or_else(|| panic!("{what}: connected"));
        let status = refusal_status(&err).unwrap_or_else(|| panic!("{what}: {err}"));
        assert!(status == 401 || status == 403, "{what}: {status}");
    }
    // A subprotocol pair with a bad token is refused too.
    let err = connect(&base, Some(&format!("access_token, {expired}"))).await.expect_err("refused");
    assert_eq!(refusal_status(&err), Some(401));
    // A bad format is refused by $connect itself.
    let err = connect(&format!("{base}?token={}&format=xml", user_token("x")), None).await.expect_err("refused");
    assert_eq!(refusal_status(&err), Some(400));
    assert!(connection_ids(&server, "x").await.is_empty());
    assert!(server.app.registry.is_empty());
}

async fn unsubscribing_the_last_event_closes_with_1000(on: On) {
    let server = spawn_app(on).await;
    let mut ws = notify_client(&server, "1589", "").await;
    request(&mut ws, json!({"type":"subscribe","event_name":"a"})).await;
    request(&mut ws, json!({"type":"subscribe","event_name":"b"})).await;
    assert_eq!(request(&mut ws, json!({"type":"unsubscribe","event_name":"a"})).await, json!({"type":"unsubscribed","event_name":"a"}));
    assert_eq!(request(&mut ws, json!({"type":"unsubscribe","event_name":"b"})).await, json!({"type":"unsubscribed","event_name":"b"}));
    assert_eq!(close_code(&mut ws).await, Some(1000));
    eventually("the connection is deleted", || async { connection_ids(&server, "1589").await.is_empty() }).await;
}

async fn bad_frames_get_error_frames_and_the_connection_lives(on: On) {
    let server = spawn_app(on).await;
    let mut ws = notify_client(&server, "42", "").await;
    ws.send(Message::Text("{not json".into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await["code"], "bad_json");
    assert_eq!(request(&mut ws, json!({"type":"dance"})).await["code"], "unknown_type");
    assert_eq!(request(&mut ws, json!({"type":"subscribe","event_name":12})).await["code"], "bad_request");
    assert_eq!(request(&mut ws, json!({"type":"subscribe","event_name":"e","user_id":"someone-else"})).await["code"], "user_mismatch");
    assert_eq!(request(&mut ws, json!({"type":"subscribe","event_name":"x".repeat(257)})).await["code"], "bad_request");
    assert_eq!(request(&mut ws, json!({"type":"ack","push_id":"00000000-0000-0000-0000-000000000000"})).await["code"], "unknown_push");
    // Base64 that decodes, but to no protobuf ClientMessage.
    ws.send(Message::Text("//8B".into())).await.unwrap();
    assert_eq!(next_json(&mut ws).await["code"], "bad_protobuf");
    let e = request(&mut ws, json!([1, 2])).await;
    assert_eq!((e["type"].as_str(), e["code"].as_str()), (Some("error"), Some("bad_request")));
    // Still alive and serving.
    assert_eq!(request(&mut ws, json!({"type":"subscribe","event_name":"e"})).await["type"], "subscribed");
}

async fn management_api_posts_describes_and_deletes(on: On) {
    let server = spawn_app(on).await;
    let mut ws = notify_client(&server, "m1", "").await;
    let id = connection_ids(&server, "m1").await.remove(0);
    let client = management_client(&server).await;

    client
        .post_to_connection()
        .connection_id(&id)
        .data(aws_sdk_apigatewaymanagement::primitives::Blob::new(r#"{"hello":1}"#))
        .send()
        .await
        .unwrap();
    assert_eq!(next_json(&mut ws).await, json!({"hello": 1}));

    let described = client.get_connection().connection_id(&id).send().await.unwrap();
    assert!(described.connected_at().is_some());
    assert_eq!(described.identity().and_then(|i| i.source_ip()), Some("127.0.0.1"));

    // The same through herald's gateway adapter, which tells 410 apart.
    let gateway = SdkGateway::from_client(client.clone());
    let gone = gateway.post("nope0000000000=", &herald::gateway::Frame::Text("x".into())).await.unwrap_err();
    assert!(matches!(gone, GatewayError::Gone(_)), "{gone:?}");
    assert!(matches!(gateway.describe("nope0000000000=").await.unwrap_err(), GatewayError::Gone(_)));

    client.delete_connection().connection_id(&id).send().await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1000));
    eventually("$disconnect ran", || async { connection_ids(&server, "m1").await.is_empty() }).await;
    let err = client.delete_connection().connection_id(&id).send().await.unwrap_err();
    assert_eq!(err.raw_response().map(|r| r.status().as_u16()), Some(410));
}

async fn an_oversized_frame_closes_with_1009(on: On) {
    let server = spawn_app(on).await;
    let mut ws = notify_client(&server, "big", "").await;
    let huge = json!({"type":"subscribe","event_name":"x".repeat(40 * 1024)}).to_string();
    ws.send(Message::Text(huge.into())).await.unwrap();
    assert_eq!(close_code(&mut ws).await, Some(1009));
    eventually("$disconnect ran", || async { connection_ids(&server, "big").await.is_empty() }).await;
}

async fn disconnect_removes_connection_and_subscriptions(on: On) {
    let server = spawn_app(on).await;
    let mut ws = notify_client(&server, "d1", "").await;
    request(&mut ws, json!({"type":"subscribe","event_name":"gone-soon"})).await;
    let id = connection_ids(&server, "d1").await.remove(0);
    ws.close(None).await.unwrap();
    drop(ws);
    eventually("$disconnect ran", || async { connection_ids(&server, "d1").await.is_empty() }).await;
    let store = &server.app.handlers.store;
    assert!(store.connection_subscriptions(&id).await.unwrap().is_empty());
    assert!(store.event_subscribers("gone-soon", None, 10).await.unwrap().items.is_empty());
    tokio::time::sleep(Duration::from_millis(10)).await;
}
