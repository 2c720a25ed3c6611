//! HTTP and API Gateway inputs: `POST /notify` bodies through the real handler, and what the
//! WebSocket functions read from an API Gateway event (body, subprotocols, query, authorizer context).

use std::collections::HashMap;
use std::sync::Mutex;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use herald::apigw::{self, ACCESS_TOKEN_PROTOCOL, QueryMap, SEC_WEBSOCKET_PROTOCOL, WsEvent};
use herald::auth::{AuthConfig, Identity, Verifier, issue_hs256};
use herald::domain::{AckMode, Encoding, check_name, epoch_secs, now, user_id_from_json};
use herald::protocol::MAX_MESSAGE_BYTES;
use herald::queue::{Queue, QueueError};
use http::{HeaderMap, HeaderValue};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Map, Value, json};

use super::inputs::{self, Bytes};
use super::{Budget, Report, block_on, drive, ensure};

/// A queue that keeps what it is sent.
#[derive(Default)]
pub(crate) struct RecordingQueue {
    sent: Mutex<Vec<String>>,
}

impl RecordingQueue {
    pub(crate) fn sent(&self) -> Vec<String> {
        self.sent.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[async_trait]
impl Queue for RecordingQueue {
    async fn send(&self, body: &str) -> Result<String, QueueError> {
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        sent.push(body.to_string());
        Ok(format!("m{}", sent.len()))
    }
}

// ---- POST /notify -------------------------------------------------------------------------

const SECRET: &str = "herald-fuzz-secret";

/// A `/notify` body. (One per fuzz case, never in a large collection: its size does not matter.)
#[derive(Debug, Clone)]
#[allow(clippy::large_enum_variant)]
pub enum NotifyBody {
    /// Any bytes: random, a mutated valid body, deep JSON.
    Any(Bytes),
    /// A JSON object with these fields (absent when `None`) and other fields besides.
    Fields {
        user_id: Option<Value>,
        event_name: Option<Value>,
        message: Option<Value>,
        title: Option<Value>,
        body: Option<Value>,
        extra: Map<String, Value>,
    },
    /// A valid body padded to exactly this many bytes (around the 128 KB limit).
    Sized(usize),
}

const FIELDS: &[&str] = &["user_id", "event_name", "message", "title", "body"];

impl NotifyBody {
    pub fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Any(b) => b.0.clone(),
            Self::Fields { user_id, event_name, message, title, body, extra } => {
                let mut obj = extra.clone();
                for (k, v) in FIELDS.iter().zip([user_id, event_name, message, title, body]) {
                    match v {
                        Some(v) => obj.insert(k.to_string(), v.clone()),
                        None => obj.remove(*k),
                    };
                }
                Value::Object(obj).to_string().into_bytes()
            }
            Self::Sized(n) => {
                let head = r#"{"user_id":"1589","message":""#;
                let tail = r#""}"#;
                format!("{head}{}{tail}", "x".repeat(n.saturating_sub(head.len() + tail.len()))).into_bytes()
            }
        }
    }
}

const USERS: &[&str] = &["1589", "42", "b1fe6a68-f7b5-4c2c-a52b-97494403d2ce"];
const EVENTS: &[&str] = &["notification:test", "news", "user:42:orders"];

fn valid_body() -> BoxedStrategy<Vec<u8>> {
    (proptest::option::of(select(USERS)), select(EVENTS), inputs::json())
        .prop_map(|(user, event, message)| {
            let mut body = json!({"event_name": event, "message": message});
            if let Some(user) = user {
                body["user_id"] = user.into();
            }
            body.to_string().into_bytes()
        })
        .boxed()
}

fn notify_body() -> BoxedStrategy<NotifyBody> {
    let optional = |s: BoxedStrategy<Value>| proptest::option::weighted(0.7, s);
    let extra = prop_oneof![
        3 => Just(Map::new()),
        1 => inputs::object().prop_map(|mut o| {
            for f in FIELDS {
                o.remove(*f);
            }
            o
        }),
    ];
    prop_oneof![
        2 => inputs::bytes().prop_map(|b| NotifyBody::Any(Bytes(b))),
        3 => inputs::mutated(valid_body()).prop_map(|b| NotifyBody::Any(Bytes(b))),
        1 => inputs::deep_json().prop_map(|d| NotifyBody::Any(Bytes(format!("{{\"user_id\":1,\"message\":{d}}}").into_bytes()))),
        1 => inputs::json().prop_map(|v| NotifyBody::Any(Bytes(v.to_string().into_bytes()))),
        6 => (
            optional(inputs::id_value(USERS)),
            optional(inputs::id_value(EVENTS)),
            optional(inputs::json()),
            optional(prop_oneof![3 => inputs::text().prop_map(Value::String), 1 => inputs::json()].boxed()),
            optional(prop_oneof![3 => inputs::text().prop_map(Value::String), 1 => inputs::json()].boxed()),
            extra,
        )
            .prop_map(|(user_id, event_name, message, title, body, extra)| NotifyBody::Fields { user_id, event_name, message, title, body, extra }),
        1 => select(vec![MAX_MESSAGE_BYTES - 1, MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES + 1, 1 << 20]).prop_map(NotifyBody::Sized),
    ]
    .boxed()
}

/// What the contract says of a body: `Some(true)` it must be accepted, `Some(false)` refused
/// with 400, `None` either (the cases the contract leaves to the handler's other rules).
fn expected_status(input: &NotifyBody) -> Option<bool> {
    fn present(v: &Option<Value>) -> Option<&Value> {
        v.as_ref().filter(|v| !v.is_null())
    }
    match input {
        NotifyBody::Sized(n) => Some(*n <= MAX_MESSAGE_BYTES),
        NotifyBody::Any(b) => match serde_json::from_slice::<Value>(&b.0) {
            Err(_) => Some(false),
            Ok(Value::Object(_)) => None,
            Ok(_) => Some(false),
        },
        NotifyBody::Fields { user_id, event_name, message, title, body, extra } => {
            let (user, event) = (present(user_id), present(event_name));
            let bad_user = user.is_some_and(|v| user_id_from_json("user_id", v).is_err());
            let bad_event = event.is_some_and(|v| v.as_str().is_none_or(|e| check_name("event_name", e).is_err()));
            let bad_text = [title, body].into_iter().any(|v| present(v).is_some_and(|v| !v.is_string()));
            // An unknown field is refused (seed 002's fields are known, but the generator's
            // random keys are not meant to hit them: those cases are left to the handler).
            let seed_002 = ["message_id", "delivery_method", "subject", "content"];
            let unknown = extra.keys().any(|k| !seed_002.contains(&k.as_str()));
            let nothing = [message, title, body].into_iter().all(|v| present(v).is_none());
            if (user.is_none() && event.is_none()) || bad_user || bad_event || bad_text || unknown || (extra.is_empty() && nothing) {
                Some(false)
            } else if extra.is_empty() && present(message).is_some() {
                Some(true)
            } else {
                None
            }
        }
    }
}

fn publisher_token() -> String {
    let claims = json!({"sub": "fuzz-publisher", "scope": "notify:publish", "exp": epoch_secs(now()) + 3600});
    issue_hs256(SECRET, &claims).expect("an HS256 token")
}

pub fn check_notify_body(input: &NotifyBody) -> Result<(), String> {
    let verifier = Verifier::new(&AuthConfig::hs256(SECRET)).map_err(|e| format!("verifier: {e}"))?;
    let queue = RecordingQueue::default();
    let deps = herald_notify::NotifyDeps { verifier: &verifier, queue: &queue };
    let bytes = input.bytes();
    let body = match String::from_utf8(bytes.clone()) {
        Ok(text) if bytes.len().is_multiple_of(2) => lambda_http::Body::Text(text),
        _ => lambda_http::Body::Binary(bytes.clone()),
    };
    let mut request = lambda_http::Request::new(body);
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = http::Uri::from_static("/notify");
    let bearer = HeaderValue::from_str(&format!("Bearer {}", publisher_token())).map_err(|e| e.to_string())?;
    request.headers_mut().insert(http::header::AUTHORIZATION, bearer);
    request.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/json"));

    let response = match block_on(herald_notify::handle(&deps, request)) {
        Ok(r) => r,
        Err(never) => match never {},
    };
    let status = response.status().as_u16();
    let reply: Value = serde_json::from_slice(response.body().as_ref()).map_err(|e| format!("{status}: the body is not JSON: {e}"))?;
    let queued = queue.sent();
    match status {
        202 => {
            let id = reply["id"].as_str().filter(|id| !id.is_empty()).ok_or_else(|| format!("202 without an id: {reply}"))?;
            ensure!(queued.len() == 1, "202, and {} messages queued", queued.len());
            // What notify queues, dispatch takes: never dead-lettered for its shape.
            let push = herald_dispatch::message::parse(queued[0].as_bytes(), "fallback")
                .map_err(|e| format!("202, but dispatch refuses the queued body: {e}; queued {}", queued[0]))?;
            ensure!(push.id == id, "202 names {id}, the queued push is {}", push.id);
            ensure!(push.audience().is_some(), "a queued push without an audience");
            if let NotifyBody::Fields { user_id, event_name, .. } = input {
                let user = user_id.as_ref().filter(|v| !v.is_null()).and_then(|v| user_id_from_json("user_id", v).ok());
                ensure!(push.user_id == user, "user_id {user_id:?} queued as {:?}", push.user_id);
                let event = event_name.as_ref().and_then(Value::as_str).map(str::to_owned);
                ensure!(push.event_name == event, "event_name {event_name:?} queued as {:?}", push.event_name);
            }
            ensure!(expected_status(input) != Some(false), "202 for a body the contract refuses");
        }
        401 | 403 => return Err(format!("{status} for a valid publisher token: {reply}")),
        400..=499 => {
            let (code, message) = (&reply["error"]["code"], &reply["error"]["message"]);
            ensure!(code.as_str().is_some_and(|c| !c.is_empty()), "{status} without error.code: {reply}");
            ensure!(message.as_str().is_some_and(|m| !m.is_empty()), "{status} without error.message: {reply}");
            ensure!(queued.is_empty(), "{status}, yet {} messages queued", queued.len());
            ensure!(expected_status(input) != Some(true), "{status} for a valid body: {reply}");
            ensure!(status == 400 || status == 413, "bad bodies are 400 (CONTRACT §4), got {status}");
        }
        other => return Err(format!("status {other}: {reply}")),
    }
    ensure!(
        response.headers().get(http::header::CONTENT_TYPE).is_some_and(|v| v == "application/json"),
        "the reply is not application/json"
    );
    Ok(())
}

pub(super) fn run_notify_body(budget: &Budget, seed: u64) -> Report {
    drive("notify_body", budget, seed, notify_body(), check_notify_body)
}

// ---- API Gateway events -------------------------------------------------------------------

/// What a WebSocket function reads from an API Gateway event.
#[derive(Debug, Clone)]
pub struct ApigwInput {
    pub body: Option<String>,
    pub base64: bool,
    /// `Sec-WebSocket-Protocol` header values (each one header line).
    pub protocols: Vec<Bytes>,
    pub query: Vec<(String, Vec<String>)>,
    /// The authorizer context as API Gateway passes it (any JSON).
    pub context: Map<String, Value>,
    /// An identity, through `identity_context` and back.
    pub identity: (Option<String>, Option<String>, Option<String>, bool, bool),
}

fn protocol_value() -> BoxedStrategy<Bytes> {
    let item = prop_oneof![
        3 => Just("access_token".to_string()),
        1 => Just("graphql-ws".to_string()),
        2 => inputs::re("eyJ[A-Za-z0-9_-]{0,12}\\.[A-Za-z0-9_-]{0,12}\\.[A-Za-z0-9_-]{0,8}"),
        1 => select(vec!["", " ", "ACCESS_TOKEN", "access_token "]).prop_map(String::from),
        1 => inputs::re("[ -~]{0,12}"),
    ];
    prop_oneof![
        4 => vec(item, 0..4).prop_map(|items| Bytes(items.join(", ").into_bytes())),
        1 => vec(any::<u8>(), 0..24).prop_map(Bytes),
        1 => inputs::text().prop_map(|t| Bytes(t.into_bytes())),
    ]
    .boxed()
}

fn apigw() -> BoxedStrategy<ApigwInput> {
    let body = proptest::option::of(prop_oneof![
        2 => inputs::text(),
        2 => inputs::bytes().prop_map(|b| STANDARD.encode(b)),
        2 => inputs::mutated_text(inputs::bytes().prop_map(|b| STANDARD.encode(b)).boxed()),
    ]);
    let query_key = prop_oneof![4 => select(vec!["token", "format", "ack", "sid", "since"]).prop_map(String::from), 1 => inputs::text()];
    let query_value = prop_oneof![
        2 => select(vec!["", "json", "JSON", "protobuf", "Proto", "required", "true", "none", "false", "eyJ.x.y"]).prop_map(String::from),
        1 => inputs::text(),
    ];
    let id = || proptest::option::of(inputs::re("[a-z0-9:-]{1,12}"));
    let context = prop_oneof![
        inputs::object(),
        (id(), id(), any::<bool>()).prop_map(|(u, a, admin)| {
            let mut m = Map::new();
            if let Some(u) = u {
                m.insert("user_id".into(), Value::String(u));
            }
            if let Some(a) = a {
                m.insert("admin_id".into(), Value::String(a));
            }
            m.insert("admin".into(), if admin { Value::from("true") } else { Value::from(false) });
            m
        }),
    ];
    (
        body,
        any::<bool>(),
        vec(protocol_value(), 0..3),
        vec((query_key, vec(query_value, 0..3)), 0..4),
        context,
        (id(), id(), id(), any::<bool>(), any::<bool>()),
    )
        .prop_map(|(body, base64, protocols, query, context, identity)| ApigwInput { body, base64, protocols, query, context, identity })
        .boxed()
}

pub fn check_apigw(input: &ApigwInput) -> Result<(), String> {
    let mut headers = HeaderMap::new();
    for value in &input.protocols {
        if let Ok(v) = HeaderValue::from_bytes(&value.0) {
            headers.append(SEC_WEBSOCKET_PROTOCOL, v);
        }
    }
    let query: HashMap<String, Vec<String>> = input.query.iter().fold(HashMap::new(), |mut m, (k, v)| {
        m.entry(k.clone()).or_default().extend(v.iter().cloned());
        m
    });
    let query = QueryMap::from(query);
    let mut event = WsEvent::default();
    event.body = input.body.clone();
    event.is_base64_encoded = input.base64;
    event.headers = headers.clone();
    event.query_string_parameters = query.clone();
    event.request_context.authorizer.other = input.context.clone();
    event.request_context.connection_id = Some("fuzz-conn".into());

    // The body: text as it is; base64 decoded, and only canonical base64 (it re-encodes the same).
    let body = input.body.as_deref().unwrap_or_default();
    match apigw::body_bytes(&event) {
        Ok(bytes) if input.base64 => ensure!(STANDARD.encode(&bytes) == body, "base64 body {body:?} decoded to {bytes:?}"),
        Ok(bytes) => ensure!(bytes == body.as_bytes(), "a text body came back changed"),
        Err(e) => ensure!(input.base64, "a text body was refused: {e}"),
    }

    // The subprotocols, and the token they carry.
    let offered = apigw::offered_protocols(&headers);
    for p in &offered {
        ensure!(!p.is_empty() && *p == p.trim() && !p.contains(','), "offered protocol {p:?}");
    }
    let token = apigw::subprotocol_token(&headers);
    match offered.iter().position(|p| *p == ACCESS_TOKEN_PROTOCOL) {
        Some(at) => ensure!(token == offered.get(at + 1).copied(), "token {token:?} is not the protocol after access_token in {offered:?}"),
        None => ensure!(token.is_none(), "token {token:?} without access_token in {offered:?}"),
    }
    let connect = apigw::connect_token(&query, &headers);
    match query.first("token").filter(|t| !t.is_empty()) {
        Some(t) => ensure!(connect == Some(t), "?token={t:?} gave {connect:?}"),
        None => ensure!(connect == token, "no ?token: {connect:?}, the subprotocol's {token:?}"),
    }
    ensure!(connect.is_none_or(|t| !t.is_empty()), "an empty token");
    // `$connect` echoes `access_token` only when the client offered it (API Gateway's handshake).
    let accepted = apigw::accept(&event);
    let echoed = accepted.headers.get(SEC_WEBSOCKET_PROTOCOL).map(|v| v.as_bytes().to_vec());
    let offers = offered.contains(&ACCESS_TOKEN_PROTOCOL);
    ensure!(echoed.as_deref() == offers.then_some(ACCESS_TOKEN_PROTOCOL.as_bytes()), "offered {offered:?}, echoed {echoed:?}");

    // ?format= and ?ack=: protobuf connections always ack.
    let encoding = Encoding::from_query(query.first("format"));
    if let Ok(encoding) = encoding {
        let ack = AckMode::from_query(query.first("ack"), encoding);
        if encoding == Encoding::Protobuf {
            ensure!(ack == Ok(AckMode::Required), "a protobuf connection with ack mode {ack:?}");
        }
    }

    // The authorizer context: any JSON there names nobody with an empty id.
    if let Some(caller) = apigw::caller(&event) {
        for id in [&caller.user_id, &caller.request_id, &caller.admin_id].into_iter().flatten() {
            ensure!(!id.is_empty(), "an empty id from context {:?}", input.context);
        }
    }
    let (user_id, request_id, admin_id, admin, publisher) = input.identity.clone();
    let identity = Identity { user_id, request_id, admin_id, admin, publisher };
    let mut round = WsEvent::default();
    round.request_context.authorizer.other = apigw::identity_context(&identity);
    let names_someone =
        identity.user_id.is_some() || identity.request_id.is_some() || identity.admin_id.is_some() || identity.admin || identity.publisher;
    let back = apigw::caller(&round);
    ensure!(back == names_someone.then(|| identity.clone()), "{identity:?} came back from the authorizer context as {back:?}");
    Ok(())
}

pub(super) fn run_apigw(budget: &Budget, seed: u64) -> Report {
    drive("apigw", budget, seed, apigw(), check_apigw)
}
