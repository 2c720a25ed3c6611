//! herald-local for the end-to-end tests: `spawn_app` starts it in this process on a free port,
//! on the embedded backend or on DynamoDB Local (tables of its own), and real WebSocket clients
//! talk to it.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use herald::auth::{AuthConfig, issue_hs256};
use herald::store::tables::TableNames;
use herald_local::{Backend, Options, Server};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub const SECRET: &str = "e2e-secret";

/// Which backend a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    Embedded,
    DynamoDbLocal,
}

/// Generates `embedded::name` and `dynamodb::name` test functions from one `async fn name(on: On)`
/// in the calling test file: each end-to-end case runs on both backends.
#[macro_export]
macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        mod embedded { $( #[tokio::test] async fn $name() { super::$name($crate::local::On::Embedded).await } )* }
        mod dynamodb { $( #[tokio::test] async fn $name() { super::$name($crate::local::On::DynamoDbLocal).await } )* }
    };
}

/// Starts herald-local on a free port.
pub async fn spawn_app(on: On) -> Server {
    spawn_with(on, |_| {}).await
}

/// Starts herald-local with adjusted options.
pub async fn spawn_with(on: On, adjust: impl FnOnce(&mut Options)) -> Server {
    let mut options = Options::from_lookup(&|_| None).expect("default options");
    options.port = 0;
    options.auth = AuthConfig::hs256(SECRET);
    if on == On::DynamoDbLocal {
        options.backend = Backend::Aws;
        options.create_resources = true;
        options.tables = TableNames::with_prefix(&crate::dynamo::unique_prefix());
        options.sdk = Some(crate::dynamo::local_sdk_config().await);
        options.messaging_sdk = Some(moto_sdk_config().await);
        options.queue_name = format!("q{}", uuid::Uuid::new_v4().simple());
        options.fanout_queue_name = format!("{}-fanout", options.queue_name);
        options.platform_queue_name = format!("{}-platform", options.queue_name);
        // A schedule group of its own in moto's EventBridge Scheduler: a start lists only its
        // server's schedules.
        options.schedule_group = format!("{}-schedules", options.queue_name);
        // Email goes out through SES on moto, from a sender of this server's own, which is how
        // `sent_email` tells its mail from the other tests'.
        options.email_from = format!("herald-{}@example.com", uuid::Uuid::new_v4().simple());
    }
    adjust(&mut options);
    herald_local::start(options).await.expect("herald-local starts")
}

/// The variable naming moto's server (SQS for the aws-backend runs); `./scripts/test` sets it.
pub const MOTO_VAR: &str = "HERALD_TEST_MOTO_ENDPOINT";

/// The SDK configuration for moto's server; panics with how to get one when the variable is unset.
pub async fn moto_sdk_config() -> aws_config::SdkConfig {
    let endpoint = match std::env::var(MOTO_VAR) {
        Ok(e) if !e.trim().is_empty() => e,
        _ => panic!("{MOTO_VAR} is not set: run the suite with `./scripts/test`, which starts moto's server"),
    };
    aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(endpoint)
        .region(aws_config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "static"))
        .load()
        .await
}

/// The names of the schedules kept in moto's EventBridge Scheduler for `server` (its group).
pub async fn kept_schedules(server: &Server) -> Vec<String> {
    let group = server.app.handlers.scheduler.group().expect("the aws backend keeps schedules").to_string();
    let client = aws_sdk_scheduler::Client::new(&moto_sdk_config().await);
    let mut names = Vec::new();
    let mut token = None;
    loop {
        let page = client.list_schedules().group_name(&group).set_next_token(token).send().await.expect("moto lists the schedules");
        names.extend(page.schedules().iter().filter_map(|s| s.name().map(String::from)));
        match page.next_token() {
            Some(t) if !t.is_empty() => token = Some(t.to_string()),
            _ => break,
        }
    }
    names.sort();
    names
}

/// What moto holds, as its `/moto-api/data.json` shows it.
///
/// A look is tried again when it fails: moto 5.2 writes an empty schedule group's schedules into
/// that JSON by reference, so a schedule created while it is written makes it answer 500.
pub async fn moto_data() -> Value {
    let endpoint = std::env::var(MOTO_VAR).unwrap_or_else(|_| panic!("{MOTO_VAR} is not set: run the suite with `./scripts/test`"));
    let mut last = String::new();
    for _ in 0..10 {
        let response = reqwest::get(format!("{endpoint}/moto-api/data.json")).await.expect("moto answers");
        let status = response.status();
        match response.json::<Value>().await {
            Ok(data) if status.is_success() => return data,
            Ok(_) => last = format!("status {status}"),
            Err(e) => last = format!("status {status}: {e}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("moto's data is not JSON after 10 looks: {last}")
}

/// The email herald-local sent, oldest first, each `{"to","subject","body"[,"html"]}`: on the
/// embedded backend, its `GET /outbox`; on the aws backend, what SES (moto) was asked to send
/// from this server's sender. moto keeps one part of an email, the HTML when there is one: such
/// a message has its HTML as `html` and no `body`.
pub async fn sent_email(server: &Server) -> Vec<Value> {
    match &server.app.handlers.senders.email_from {
        None => outbox(server).await.into_iter().filter(|i| i["channel"] == "email").collect(),
        Some(from) => moto_data().await["ses"]["Message"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|m| m["source"] == from.as_str())
            .map(|m| {
                let part = if m["body"].as_str().is_some_and(|b| b.starts_with('<')) { "html" } else { "body" };
                json!({ "to": m["destinations"]["ToAddresses"][0], "subject": m["subject"], part: m["body"] })
            })
            .collect(),
    }
}

/// The texts of the SMS herald-local sent to `phone`, oldest first: the embedded backend's
/// `GET /outbox`, or what SNS (moto) was asked to send (tests use numbers of their own).
pub async fn sent_sms(server: &Server, phone: &str) -> Vec<String> {
    let items: Vec<Value> = if server.app.handlers.senders.outbox.is_some() {
        outbox(server)
            .await
            .into_iter()
            .filter(|i| i["channel"] == "sms")
            .map(|i| json!({"phone_number": i["to"], "message": i["body"]}))
            .collect()
    } else {
        moto_data().await["sns"]["SMS"].as_array().cloned().unwrap_or_default()
    };
    items.iter().filter(|m| m["phone_number"] == phone).filter_map(|m| m["message"].as_str().map(String::from)).collect()
}

/// `GET /outbox` as an admin (the embedded backend's).
async fn outbox(server: &Server) -> Vec<Value> {
    let reply: Value = reqwest::Client::new()
        .get(server.url("/outbox"))
        .bearer_auth(admin_token())
        .send()
        .await
        .expect("GET /outbox")
        .json()
        .await
        .expect("JSON");
    reply["items"].as_array().unwrap_or_else(|| panic!("GET /outbox: {reply}")).clone()
}

/// A token signed with the test secret, valid for an hour unless `claims` has its own `exp`.
pub fn token(claims: Value) -> String {
    let mut claims = claims;
    if claims.get("exp").is_none() {
        claims["exp"] = json!(time::OffsetDateTime::now_utc().unix_timestamp() + 3600);
    }
    issue_hs256(SECRET, &claims).expect("token")
}

pub fn user_token(user: &str) -> String {
    token(json!({ "sub": user }))
}

pub type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Connects; `Err` carries the refusal (e.g. an HTTP 401).
pub async fn connect(url: &str, protocols: Option<&str>) -> Result<(Ws, http::Response<Option<Vec<u8>>>), Box<WsError>> {
    let mut request = url.into_client_request().map_err(Box::new)?;
    if let Some(p) = protocols {
        request.headers_mut().insert("sec-websocket-protocol", p.parse().expect("header"));
    }
    tokio_tungstenite::connect_async(request).await.map_err(Box::new)
}

/// The HTTP status of a refused handshake.
pub fn refusal_status(err: &WsError) -> Option<u16> {
    match err {
        WsError::Http(response) => Some(response.status().as_u16()),
        _ => None,
    }
}

/// Connects to the notification API with `?token=` and extra query.
pub async fn notify_client(server: &Server, user: &str, query: &str) -> Ws {
    let url = server.ws_url(&format!("/api/v1/notify/ws?token={}{query}", user_token(user)));
    connect(&url, None).await.expect("connects").0
}

const WAIT: Duration = Duration::from_secs(5);

/// The next message that is not a ping/pong, or `None` on close or timeout.
pub async fn next_message(ws: &mut Ws, wait: Duration) -> Option<Message> {
    loop {
        match tokio::time::timeout(wait, ws.next()).await {
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(Some(Ok(m))) => return Some(m),
            _ => return None,
        }
    }
}

/// The next JSON text frame; panics on anything else.
pub async fn next_json(ws: &mut Ws) -> Value {
    match next_message(ws, WAIT).await {
        Some(Message::Text(t)) => serde_json::from_str(&t).unwrap_or_else(|e| panic!("not JSON ({e}): {t}")),
        other => panic!("expected a JSON text frame, got {other:?}"),
    }
}

/// The next binary frame; panics on anything else.
pub async fn next_binary(ws: &mut Ws) -> Vec<u8> {
    match next_message(ws, WAIT).await {
        Some(Message::Binary(b)) => b.to_vec(),
        other => panic!("expected a binary frame, got {other:?}"),
    }
}

/// Asserts nothing arrives within `wait`.
pub async fn assert_silent(ws: &mut Ws, wait: Duration) {
    if let Some(m) = next_message(ws, wait).await {
        panic!("expected nothing, got {m:?}");
    }
}

/// Sends a JSON frame.
pub async fn send_json(ws: &mut Ws, v: Value) {
    ws.send(Message::Text(v.to_string().into())).await.expect("send");
}

/// Sends JSON and returns the reply frame.
pub async fn request(ws: &mut Ws, v: Value) -> Value {
    send_json(ws, v).await;
    next_json(ws).await
}

/// Waits for the server's close frame and returns its code.
pub async fn close_code(ws: &mut Ws) -> Option<u16> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => return frame.map(|f: CloseFrame| u16::from(f.code)),
            Ok(Some(Ok(_))) => continue,
            _ => return None,
        }
    }
}

/// Polls until `f` is true (the server's side of a close runs asynchronously).
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..100 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for: {what}");
}

/// The connection ids of a user, from herald-local's store.
pub async fn connection_ids(server: &Server, user: &str) -> Vec<String> {
    let mut ids: Vec<String> =
        server.app.handlers.store.user_connections(user).await.expect("store").into_iter().map(|c| c.connection_id).collect();
    ids.sort();
    ids
}

/// `aws-sdk-apigatewaymanagement` pointed at herald-local, as a deployed function would use it.
pub async fn management_client(server: &Server) -> aws_sdk_apigatewaymanagement::Client {
    let config = aws_sdk_apigatewaymanagement::Config::builder()
        .behavior_version(aws_sdk_apigatewaymanagement::config::BehaviorVersion::latest())
        .region(aws_sdk_apigatewaymanagement::config::Region::new("us-east-1"))
        .credentials_provider(aws_sdk_apigatewaymanagement::config::Credentials::new("test", "test", None, None, "static"))
        .endpoint_url(server.url(""))
        .build();
    aws_sdk_apigatewaymanagement::Client::from_conf(config)
}

/// A binary frame's `ServerMessage`: its push (panics on any other kind).
pub fn decode_push(bytes: &[u8]) -> herald::protocol::pb::PushNotification {
    use herald::protocol::pb::server_message::ServerMessage;
    match decode_server_message(bytes) {
        Some(ServerMessage::PushNotification(p)) => p,
        other => panic!("a ServerMessage that is not a push: {other:?}"),
    }
}

/// A binary frame's `ServerMessage`: its error's code and message (panics on any other kind).
pub fn decode_error(bytes: &[u8]) -> (String, String) {
    use herald::protocol::pb::server_message::ServerMessage;
    match decode_server_message(bytes) {
        Some(ServerMessage::Error(e)) => (e.code, e.message),
        other => panic!("a ServerMessage that is not an error: {other:?}"),
    }
}

fn decode_server_message(bytes: &[u8]) -> Option<herald::protocol::pb::server_message::ServerMessage> {
    <herald::protocol::pb::ServerMessage as prost::Message>::decode(bytes).expect("a ServerMessage").server_message
}

/// A publisher's token (`scope: notify:publish`).
pub fn publisher() -> String {
    token(json!({"sub": "svc", "scope": "notify:publish"}))
}

/// `POST /notify` as a publisher; asserts the 202 and returns the push id.
pub async fn publish(server: &Server, body: Value) -> String {
    let response =
        reqwest::Client::new().post(server.url("/notify")).bearer_auth(publisher()).json(&body).send().await.expect("POST /notify");
    let status = response.status().as_u16();
    let reply: Value = response.json().await.expect("a JSON reply");
    assert_eq!(status, 202, "{reply}");
    reply["id"].as_str().expect("an id").to_string()
}

/// An operator's token (`role: admin`): what the platform's admin API and `GET /outbox` take.
pub fn admin_token() -> String {
    token(json!({"sub": "ops", "role": "admin"}))
}

/// An HTTP call to herald-local with `auth` as the bearer token (none when `None`) and `body` as
/// JSON text; the status and the JSON reply (`null` for an empty body).
pub async fn http_call(server: &Server, method: &str, path: &str, auth: Option<&str>, body: Option<&str>) -> (u16, Value) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).expect("a method");
    let mut request = reqwest::Client::new().request(method, server.url(path));
    if let Some(t) = auth {
        request = request.bearer_auth(t);
    }
    if let Some(b) = body {
        request = request.header("content-type", "application/json").body(b.to_string());
    }
    let response = request.send().await.expect("herald-local answers");
    let status = response.status().as_u16();
    let text = response.text().await.expect("a body");
    let reply =
        if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}")) };
    (status, reply)
}

/// [`http_call`] as an admin, with a JSON body (none for `null`).
pub async fn admin_call(server: &Server, method: &str, path: &str, body: Value) -> (u16, Value) {
    let body = (!body.is_null()).then(|| body.to_string());
    http_call(server, method, path, Some(&admin_token()), body.as_deref()).await
}

/// The `error.code` of an error body (CONTRACT §4).
pub fn error_code(reply: &Value) -> &str {
    reply["error"]["code"].as_str().unwrap_or_else(|| panic!("not an error body: {reply}"))
}

/// The `error.message` of an error body.
pub fn error_message(reply: &Value) -> &str {
    reply["error"]["message"].as_str().unwrap_or_else(|| panic!("not an error body: {reply}"))
}
