//! Client frames: the notification API's text and binary frames (JSON, protobuf, base64 protobuf
//! acks) and the chat API's envelopes and arguments.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use herald::chat::{self, Args, Refusal, RouteError};
use herald::domain::{Api, Connection, Conversation, check_name, user_id_from_json};
use herald::protocol::chat::{ChatRequest, parse_chat_frame};
use herald::protocol::{
    AckStatus, ClientFrame, FrameError, MAX_MESSAGE_BYTES, ack_protobuf, ack_protobuf_base64, decode_base64_text, parse_binary_frame,
    parse_text_frame, pb,
};
use herald::store::memory::MemoryStore;
use herald::store::{ConnectionStore, StoreError};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use prost::Message as _;
use serde_json::{Map, Value, json};

use super::inputs::{self, Bytes};
use super::{Budget, Report, drive, ensure};

// ---- notify: text frames ------------------------------------------------------------------

/// A text frame of the notification API.
#[derive(Debug, Clone)]
pub enum NotifyText {
    /// Any text: random, a mutated valid frame, base64 of random bytes, deep or huge.
    Any(String),
    /// `{"type":"subscribe"|"unsubscribe","event_name":…,"user_id"?:…}` with any field values.
    Subscribe { unsubscribe: bool, event_name: Value, user_id: Option<Value> },
    /// `{"type":"ack","push_id":…,"status"?:…}`.
    JsonAck { push_id: Value, status: Option<Value> },
    /// A `ClientMessage` ack with any status number, base64 (standard or URL-safe alphabet).
    Base64Ack { push_id: String, status: i32, url_safe: bool },
}

impl NotifyText {
    pub fn text(&self) -> String {
        match self {
            Self::Any(text) => text.clone(),
            Self::Subscribe { unsubscribe, event_name, user_id } => {
                let mut frame = json!({"type": if *unsubscribe { "unsubscribe" } else { "subscribe" }, "event_name": event_name});
                if let Some(user_id) = user_id {
                    frame["user_id"] = user_id.clone();
                }
                frame.to_string()
            }
            Self::JsonAck { push_id, status } => {
                let mut frame = json!({"type": "ack", "push_id": push_id});
                if let Some(status) = status {
                    frame["status"] = status.clone();
                }
                frame.to_string()
            }
            Self::Base64Ack { push_id, status, url_safe } => {
                let bytes = raw_ack(push_id, *status);
                if *url_safe { URL_SAFE.encode(bytes) } else { STANDARD.encode(bytes) }
            }
        }
    }
}

/// A `ClientMessage` ack with any status number (the public encoder takes only ack/nack).
fn raw_ack(push_id: &str, status: i32) -> Vec<u8> {
    pb::ClientMessage {
        client_message: Some(pb::client_message::ClientMessage::DeliveryAck(pb::DeliveryAck { push_id: push_id.into(), status })),
    }
    .encode_to_vec()
}

const EVENTS: &[&str] = &["notification:test", "news", "user:42:orders", "a", "Event.SendMessage"];
const USERS: &[&str] = &["1589", "42", "u-1", "b1fe6a68-f7b5-4c2c-a52b-97494403d2ce"];

fn push_id() -> BoxedStrategy<String> {
    prop_oneof![
        2 => inputs::re("[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"),
        1 => inputs::re("[ -~]{0,40}"),
        1 => inputs::text(),
    ]
    .boxed()
}

fn status_number() -> BoxedStrategy<i32> {
    prop_oneof![3 => 0..2i32, 1 => any::<i32>(), 1 => select(vec![2, -1, i32::MAX, i32::MIN])].boxed()
}

/// Valid frames of every kind, as text.
fn valid_text_frame() -> BoxedStrategy<String> {
    prop_oneof![
        (select(EVENTS), select(USERS)).prop_map(|(e, u)| json!({"type":"subscribe","event_name":e,"user_id":u}).to_string()),
        select(EVENTS).prop_map(|e| json!({"type":"unsubscribe","event_name":e}).to_string()),
        push_id().prop_map(|id| json!({"type":"ack","push_id":id,"status":"nack"}).to_string()),
        (push_id(), any::<bool>()).prop_map(|(id, nack)| ack_protobuf_base64(&id, if nack { AckStatus::Nack } else { AckStatus::Ack })),
    ]
    .boxed()
}

fn any_text_frame() -> BoxedStrategy<String> {
    prop_oneof![
        3 => inputs::text(),
        4 => inputs::mutated_text(valid_text_frame()),
        2 => inputs::object().prop_map(|o| Value::Object(o).to_string()),
        2 => inputs::json().prop_map(|v| v.to_string()),
        1 => inputs::bytes().prop_map(|b| STANDARD.encode(b)),
        1 => inputs::bytes().prop_map(|b| URL_SAFE.encode(b)),
        1 => inputs::deep_json(),
        1 => (select(vec![MAX_MESSAGE_BYTES - 1, MAX_MESSAGE_BYTES, MAX_MESSAGE_BYTES + 1]), any::<bool>()).prop_map(|(n, b64)| {
            if b64 { "C".repeat(n - n % 4) } else { format!("{{\"type\":\"subscribe\",\"event_name\":\"{}\"}}", "x".repeat(n - 36)) }
        }),
    ]
    .boxed()
}

fn notify_text() -> BoxedStrategy<NotifyText> {
    prop_oneof![
        4 => any_text_frame().prop_map(NotifyText::Any),
        2 => (any::<bool>(), inputs::id_value(EVENTS), proptest::option::of(inputs::id_value(USERS)))
            .prop_map(|(unsubscribe, event_name, user_id)| NotifyText::Subscribe { unsubscribe, event_name, user_id }),
        1 => (prop_oneof![3 => push_id().prop_map(Value::String), 1 => inputs::json()],
              proptest::option::of(prop_oneof![select(vec!["ack", "nack"]).prop_map(Value::from), inputs::json()]))
            .prop_map(|(push_id, status)| NotifyText::JsonAck { push_id, status }),
        2 => (push_id(), status_number(), any::<bool>()).prop_map(|(push_id, status, url_safe)| NotifyText::Base64Ack { push_id, status, url_safe }),
    ]
    .boxed()
}

/// What every refusal must be: a stable snake_case code and an error frame that is JSON.
fn check_refusal(e: &FrameError) -> Result<(), String> {
    let code = e.code();
    ensure!(!code.is_empty() && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'), "error code {code:?} is not snake_case");
    let frame: Value = serde_json::from_str(&e.to_frame().to_json()).map_err(|err| format!("the error frame is not JSON: {err}"))?;
    ensure!(frame["type"] == "error" && frame["code"] == code, "error frame {frame} does not carry its code");
    ensure!(frame["message"].as_str().is_some_and(|m| !m.is_empty()), "error frame {frame} has no message");
    Ok(())
}

/// What any accepted frame must be.
fn check_accepted(frame: &ClientFrame) -> Result<(), String> {
    match frame {
        ClientFrame::Subscribe { event_name, user_id, .. } | ClientFrame::Unsubscribe { event_name, user_id } => {
            ensure!(check_name("event_name", event_name).is_ok(), "accepted event name {event_name:?} breaks the 1..=256 rule");
            if let Some(user) = user_id {
                ensure!(check_name("user_id", user).is_ok(), "accepted user id {user:?} breaks the 1..=256 rule");
            }
        }
        ClientFrame::Presence { event_name } => {
            ensure!(check_name("event_name", event_name).is_ok(), "accepted event name {event_name:?} breaks the 1..=256 rule");
        }
        ClientFrame::Ack { .. } | ClientFrame::Heartbeat => {}
    }
    Ok(())
}

/// The frame a subscribe with these field values must parse to, or `None` when it must be refused
/// with `bad_request` (CONTRACT §1, §3: names 1 to 256 characters, user ids strings or integers).
fn expected_subscribe(unsubscribe: bool, event_name: &Value, user_id: &Option<Value>) -> Option<ClientFrame> {
    let Value::String(event_name) = event_name else { return None };
    check_name("event_name", event_name).ok()?;
    let user_id = match user_id {
        None | Some(Value::Null) => None,
        Some(v) => Some(user_id_from_json("user_id", v).ok()?),
    };
    let event_name = event_name.clone();
    Some(if unsubscribe {
        ClientFrame::Unsubscribe { event_name, user_id }
    } else {
        ClientFrame::Subscribe { event_name, user_id, since: None }
    })
}

pub fn check_notify_text(input: &NotifyText) -> Result<(), String> {
    let text = input.text();
    let result = parse_text_frame(&text);
    match &result {
        Ok(frame) => {
            ensure!(text.len() <= MAX_MESSAGE_BYTES, "a {} byte frame was accepted", text.len());
            check_accepted(frame)?;
        }
        Err(e) => {
            check_refusal(e)?;
            ensure!((*e == FrameError::TooLarge) == (text.len() > MAX_MESSAGE_BYTES), "{} bytes gave {e:?}", text.len());
        }
    }
    if text.len() <= MAX_MESSAGE_BYTES {
        if serde_json::from_str::<Value>(&text).is_ok() {
            ensure!(
                !matches!(result, Err(FrameError::BadJson | FrameError::BadProtobuf)),
                "valid JSON was read as something else: {result:?}"
            );
        } else if let Some(bytes) = decode_base64_text(&text) {
            let binary = parse_binary_frame(&bytes);
            ensure!(result == binary, "base64 in a text frame gave {result:?}, the same bytes in a binary frame {binary:?}");
        }
    }
    match input {
        NotifyText::Any(_) => {}
        NotifyText::Subscribe { unsubscribe, event_name, user_id } => match expected_subscribe(*unsubscribe, event_name, user_id) {
            Some(frame) => ensure!(result.as_ref() == Ok(&frame), "expected {frame:?}, got {result:?}"),
            None => ensure!(result.as_ref().is_err_and(|e| e.code() == "bad_request"), "expected bad_request, got {result:?}"),
        },
        NotifyText::JsonAck { push_id, status } => {
            let status = match status {
                None | Some(Value::Null) => Some(AckStatus::Ack),
                Some(s) if s == "ack" => Some(AckStatus::Ack),
                Some(s) if s == "nack" => Some(AckStatus::Nack),
                Some(_) => None,
            };
            match (push_id, status) {
                (Value::String(id), Some(status)) if is_plain_push_id(id) => {
                    let frame = ClientFrame::Ack { push_id: id.clone(), status };
                    ensure!(result.as_ref() == Ok(&frame), "expected {frame:?}, got {result:?}");
                }
                (Value::String(_), Some(_)) => {}
                _ => ensure!(result.as_ref().is_err_and(|e| e.code() == "bad_request"), "expected bad_request, got {result:?}"),
            }
        }
        NotifyText::Base64Ack { push_id, status, .. } => {
            let expected = match status {
                0 => Some(AckStatus::Ack),
                1 => Some(AckStatus::Nack),
                _ => None,
            };
            match expected {
                Some(status) if is_plain_push_id(push_id) => {
                    let frame = ClientFrame::Ack { push_id: push_id.clone(), status };
                    ensure!(result.as_ref() == Ok(&frame), "expected {frame:?}, got {result:?}");
                }
                Some(_) => {}
                None => ensure!(result.as_ref().is_err_and(|e| e.code() == "bad_request"), "unknown status {status}: got {result:?}"),
            }
        }
    }
    Ok(())
}

/// A push id any ack must carry through: what Herald issues (UUIDs), printable ASCII, 1 to 256.
fn is_plain_push_id(id: &str) -> bool {
    (1..=256).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_graphic() || b == b' ')
}

pub(super) fn run_notify_text(budget: &Budget, seed: u64) -> Report {
    drive("notify_text", budget, seed, notify_text(), check_notify_text)
}

// ---- notify: binary frames ----------------------------------------------------------------

/// A binary frame (raw protobuf bytes).
#[derive(Debug, Clone)]
pub enum NotifyBinary {
    /// Random bytes, or a valid ack mutated.
    Any(Bytes),
    /// Protobuf wire fields built by hand: right and wrong tags, wire types, lengths, nesting.
    Fields(Vec<Field>),
    /// An ack from the public encoder.
    Ack { push_id: String, nack: bool },
}

/// One protobuf field on the wire.
#[derive(Debug, Clone)]
pub enum Field {
    Varint(u32, u64),
    Bytes(u32, Bytes),
    Nested(u32, Vec<Field>),
    Fixed32(u32, u32),
    Fixed64(u32, u64),
    /// A key with any wire type (3, 4: groups; 6, 7: invalid), and nothing after it.
    Key(u32, u8),
    /// A length prefix longer than what follows.
    ShortLength(u32, u64),
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_key(out: &mut Vec<u8>, field: u32, wire: u8) {
    put_varint(out, (u64::from(field) << 3) | u64::from(wire & 7));
}

pub fn encode_fields(fields: &[Field]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in fields {
        match f {
            Field::Varint(n, v) => {
                put_key(&mut out, *n, 0);
                put_varint(&mut out, *v);
            }
            Field::Bytes(n, b) => {
                put_key(&mut out, *n, 2);
                put_varint(&mut out, b.0.len() as u64);
                out.extend_from_slice(&b.0);
            }
            Field::Nested(n, inner) => {
                let inner = encode_fields(inner);
                put_key(&mut out, *n, 2);
                put_varint(&mut out, inner.len() as u64);
                out.extend(inner);
            }
            Field::Fixed32(n, v) => {
                put_key(&mut out, *n, 5);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Field::Fixed64(n, v) => {
                put_key(&mut out, *n, 1);
                out.extend_from_slice(&v.to_le_bytes());
            }
            Field::Key(n, wire) => put_key(&mut out, *n, *wire),
            Field::ShortLength(n, len) => {
                put_key(&mut out, *n, 2);
                put_varint(&mut out, *len);
            }
        }
    }
    out
}

fn field_number() -> BoxedStrategy<u32> {
    prop_oneof![4 => 1..3u32, 1 => 0..20u32, 1 => select(vec![0, 536_870_911, 19_000, u32::MAX])].boxed()
}

fn fields() -> BoxedStrategy<Vec<Field>> {
    let leaf = prop_oneof![
        (field_number(), prop_oneof![0..3u64, any::<u64>()]).prop_map(|(n, v)| Field::Varint(n, v)),
        (field_number(), prop_oneof![push_id().prop_map(String::into_bytes), inputs::bytes()]).prop_map(|(n, b)| Field::Bytes(n, Bytes(b))),
        (field_number(), any::<u32>()).prop_map(|(n, v)| Field::Fixed32(n, v)),
        (field_number(), any::<u64>()).prop_map(|(n, v)| Field::Fixed64(n, v)),
        (field_number(), 0..8u8).prop_map(|(n, w)| Field::Key(n, w)),
        (field_number(), prop_oneof![1..64u64, any::<u64>()]).prop_map(|(n, l)| Field::ShortLength(n, l)),
    ];
    let field = leaf.prop_recursive(3, 24, 4, |inner| (field_number(), vec(inner, 0..4)).prop_map(|(n, f)| Field::Nested(n, f)));
    vec(field, 0..5).boxed()
}

fn notify_binary() -> BoxedStrategy<NotifyBinary> {
    let valid_ack = (push_id(), status_number()).prop_map(|(id, status)| raw_ack(&id, status)).boxed();
    prop_oneof![
        2 => inputs::bytes().prop_map(|b| NotifyBinary::Any(Bytes(b))),
        3 => inputs::mutated(valid_ack).prop_map(|b| NotifyBinary::Any(Bytes(b))),
        3 => fields().prop_map(NotifyBinary::Fields),
        1 => (push_id(), any::<bool>()).prop_map(|(push_id, nack)| NotifyBinary::Ack { push_id, nack }),
    ]
    .boxed()
}

pub fn check_notify_binary(input: &NotifyBinary) -> Result<(), String> {
    let bytes = match input {
        NotifyBinary::Any(b) => b.0.clone(),
        NotifyBinary::Fields(f) => encode_fields(f),
        NotifyBinary::Ack { push_id, nack } => ack_protobuf(push_id, if *nack { AckStatus::Nack } else { AckStatus::Ack }),
    };
    let result = parse_binary_frame(&bytes);
    match &result {
        Ok(frame @ ClientFrame::Ack { push_id, status }) => {
            // An accepted ack survives re-encoding unchanged.
            let again = parse_binary_frame(&ack_protobuf(push_id, *status));
            ensure!(again.as_ref() == Ok(frame), "{frame:?} re-encoded parses as {again:?}");
        }
        Ok(other) => return Err(format!("a binary frame parsed as {other:?}: only acks travel as protobuf")),
        Err(e) => check_refusal(e)?,
    }
    // The same bytes, base64 in a text frame (as API Gateway makes clients send them), mean the same.
    let encoded = STANDARD.encode(&bytes);
    if !bytes.is_empty() && encoded.len() <= MAX_MESSAGE_BYTES && serde_json::from_str::<Value>(&encoded).is_err() {
        let text = parse_text_frame(&encoded);
        ensure!(text == result, "binary {result:?}, base64 text {text:?}");
    }
    if let NotifyBinary::Ack { push_id, nack } = input {
        let status = if *nack { AckStatus::Nack } else { AckStatus::Ack };
        let frame = ClientFrame::Ack { push_id: push_id.clone(), status };
        ensure!(result.as_ref() == Ok(&frame), "ack_protobuf({push_id:?}, {status:?}) parsed as {result:?}");
        let text = parse_text_frame(&ack_protobuf_base64(push_id, status));
        ensure!(text.as_ref() == Ok(&frame), "ack_protobuf_base64({push_id:?}, {status:?}) parsed as {text:?}");
    }
    Ok(())
}

pub(super) fn run_notify_binary(budget: &Budget, seed: u64) -> Report {
    drive("notify_binary", budget, seed, notify_binary(), check_notify_binary)
}

// ---- chat: envelopes ----------------------------------------------------------------------

/// A chat frame.
#[derive(Debug, Clone)]
pub enum ChatFrame {
    /// Any text, or a mutated valid envelope.
    Any(String),
    /// `{"name":…,"args":…}` with `args` an object (`as_text`: its JSON text) and other fields.
    Envelope { name: Value, args: Map<String, Value>, as_text: bool, extra: Map<String, Value> },
    /// `{"name":…,"args":<any JSON value>}`; `args` left out when `None`.
    OddArgs { name: Value, args: Option<Value> },
}

impl ChatFrame {
    pub fn text(&self) -> String {
        match self {
            Self::Any(text) => text.clone(),
            Self::Envelope { name, args, as_text, extra } => {
                let mut frame = extra.clone();
                frame.insert("name".into(), name.clone());
                let args = Value::Object(args.clone());
                frame.insert("args".into(), if *as_text { Value::String(args.to_string()) } else { args });
                Value::Object(frame).to_string()
            }
            Self::OddArgs { name, args } => {
                let mut frame = json!({ "name": name });
                if let Some(args) = args {
                    frame["args"] = args.clone();
                }
                frame.to_string()
            }
        }
    }
}

const CHAT_EVENTS: &[&str] = &[
    chat::ADD_CONVERSATION,
    chat::GET_CONVERSATION_LIST,
    chat::GET_MESSAGE_LIST,
    chat::SEND_MESSAGE,
    chat::READ_MESSAGE,
    chat::GET_UNREAD_INFO,
    chat::RECEIVE_MESSAGE,
];

fn chat_name() -> BoxedStrategy<Value> {
    prop_oneof![4 => select(CHAT_EVENTS).prop_map(Value::from), 1 => inputs::json()].boxed()
}

fn chat_frame() -> BoxedStrategy<ChatFrame> {
    let valid = (select(CHAT_EVENTS), chat_args_map(), any::<bool>())
        .prop_map(|(name, args, as_text)| ChatFrame::Envelope { name: name.into(), args, as_text, extra: Map::new() }.text())
        .boxed();
    let extra = inputs::object().prop_map(|mut o| {
        o.remove("name");
        o.remove("args");
        o
    });
    prop_oneof![
        2 => inputs::text().prop_map(ChatFrame::Any),
        3 => inputs::mutated_text(valid).prop_map(ChatFrame::Any),
        1 => inputs::deep_json().prop_map(|d| ChatFrame::Any(format!("{{\"name\":\"Event.SendMessage\",\"args\":{d}}}"))),
        3 => (chat_name(), chat_args_map(), any::<bool>(), extra)
            .prop_map(|(name, args, as_text, extra)| ChatFrame::Envelope { name, args, as_text, extra }),
        2 => (chat_name(), proptest::option::of(prop_oneof![
                inputs::json(),
                inputs::json().prop_map(|v| Value::String(v.to_string())),
                select(vec!["", " ", "\t\n", "null", "{", "[]", "\"{}\""]).prop_map(Value::from),
            ]))
            .prop_map(|(name, args)| ChatFrame::OddArgs { name, args }),
    ]
    .boxed()
}

pub fn check_chat_frame(input: &ChatFrame) -> Result<(), String> {
    let text = input.text();
    let result = parse_chat_frame(&text);
    // The name comes back whenever the frame has one, with the request or with the refusal.
    let name = serde_json::from_str::<Value>(&text).ok().and_then(|v| v.get("name").and_then(Value::as_str).map(str::to_owned));
    match &result {
        Ok(ChatRequest { name: got, args }) => {
            ensure!(name.as_ref() == Some(got), "frame name {name:?}, request name {got:?}");
            ensure!(args.is_object(), "args {args} is not an object");
        }
        Err((got, error)) => {
            ensure!(*got == name, "frame name {name:?}, refusal name {got:?}");
            ensure!(!error.is_empty(), "an empty refusal");
            let reply: Value =
                serde_json::from_str(&chat::refusal_frame(got.as_deref(), error)).map_err(|e| format!("refusal frame: {e}"))?;
            ensure!(reply["ok"] == false && reply["error"] == error.as_str(), "refusal frame {reply}");
            ensure!(reply["name"] == got.as_deref().map_or(Value::Null, Value::from), "refusal frame {reply} lost the name");
        }
    }
    match input {
        ChatFrame::Envelope { name: Value::String(name), args, .. } => {
            let expected = ChatRequest { name: name.clone(), args: Value::Object(args.clone()) };
            let same = result.as_ref().is_ok_and(|r| r.name == expected.name && inputs::same_json(&r.args, &expected.args));
            ensure!(same, "expected {expected:?}, got {result:?}");
        }
        ChatFrame::Envelope { .. } => ensure!(matches!(result, Err((None, _))), "a frame without a string name gave {result:?}"),
        ChatFrame::OddArgs { name: Value::String(_), args } => {
            let empty = || Value::Object(Map::new());
            let expected = match args {
                None | Some(Value::Null) => Some(empty()),
                Some(Value::String(s)) if s.trim().is_empty() => Some(empty()),
                Some(Value::String(s)) => serde_json::from_str::<Value>(s).ok().filter(Value::is_object),
                Some(v @ Value::Object(_)) => Some(v.clone()),
                Some(_) => None,
            };
            match expected {
                Some(args) => {
                    ensure!(result.as_ref().is_ok_and(|r| inputs::same_json(&r.args, &args)), "expected args {args}, got {result:?}")
                }
                None => ensure!(result.is_err(), "args {args:?} were accepted: {result:?}"),
            }
        }
        _ => {}
    }
    Ok(())
}

pub(super) fn run_chat_frame(budget: &Budget, seed: u64) -> Report {
    drive("chat_frame", budget, seed, chat_frame(), check_chat_frame)
}

// ---- chat: arguments ----------------------------------------------------------------------

const SIDS: &[&str] = &["1", "42", "u-1"];
const CHANNELS: &[&str] = &["100", "7", "app-1"];
const CHAT_KEYS: &[&str] = &[
    "user_id",
    "application_id",
    "session_channel",
    "sender_id",
    "executor_id",
    "content",
    "content_type",
    "message_id",
    "limit",
    "before_id",
    "client_msg_id",
];

fn chat_args_map() -> BoxedStrategy<Map<String, Value>> {
    let value = prop_oneof![
        3 => inputs::id_value(SIDS),
        2 => inputs::id_value(CHANNELS),
        1 => inputs::integer(),
        1 => select(vec![0i64, 1, 2, 999, 1000, 1001, -1]).prop_map(Value::from),
        1 => inputs::json(),
    ];
    vec((prop_oneof![4 => select(CHAT_KEYS).prop_map(String::from), 1 => inputs::key()], value), 0..8)
        .prop_map(|kv| kv.into_iter().collect())
        .boxed()
}

/// A chat frame's arguments, the connection it came on and a conversation to check reach against.
#[derive(Debug, Clone)]
pub struct ChatArgsInput {
    pub args: Map<String, Value>,
    pub sid: String,
    pub admin: bool,
    pub request_id: Option<String>,
    /// The conversation: its session channel and its user.
    pub conversation: (String, String),
}

fn chat_args() -> BoxedStrategy<ChatArgsInput> {
    (chat_args_map(), select(SIDS), any::<bool>(), proptest::option::of(select(CHANNELS)), (select(CHANNELS), select(SIDS)))
        .prop_map(|(args, sid, admin, request_id, (channel, user))| ChatArgsInput {
            args,
            sid: sid.into(),
            admin,
            request_id: request_id.map(String::from),
            conversation: (channel.into(), user.into()),
        })
        .boxed()
}

/// What an id accessor may answer: an id of 1 to 256 characters that is the value's text.
fn check_id(key: &str, value: Option<&Value>, got: &Result<String, Refusal>) -> Result<(), String> {
    match (got, value) {
        (Ok(id), Some(v)) => {
            ensure!(check_name("id", id).is_ok(), "{key}: accepted {id:?}, not 1..=256 characters");
            let text = match v {
                Value::String(s) => Some(s.clone()),
                Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
                _ => None,
            };
            ensure!(text.as_ref() == Some(id), "{key}: {v} read as {id:?}");
        }
        (Ok(id), None) => return Err(format!("{key}: absent, read as {id:?}")),
        (Err(r), _) => ensure!(!r.0.is_empty(), "{key}: an empty refusal"),
    }
    Ok(())
}

fn connection(input: &ChatArgsInput) -> Connection {
    let mut c = Connection::opened("fuzz-conn", input.sid.clone(), Api::Chat, std::time::Duration::from_secs(3600));
    c.admin = input.admin;
    c.request_id = input.request_id.clone();
    c
}

fn check_args(input: &ChatArgsInput, args: &Args) -> Result<(), String> {
    let conn = connection(input);
    for &key in CHAT_KEYS.iter().chain(["nope"].iter()) {
        let raw = args.get(key);
        ensure!(raw.is_none_or(|v| !v.is_null()), "{key}: get() gave null");
        check_id(key, raw, &args.id(key))?;
        match args.opt_id(key) {
            Ok(None) => ensure!(raw.is_none(), "{key}: opt_id ignored {raw:?}"),
            Ok(Some(id)) => check_id(key, raw, &Ok(id))?,
            Err(_) => ensure!(raw.is_some(), "{key}: opt_id refused an absent field"),
        }
        if let Ok(id) = args.executor(key, &conn) {
            ensure!(id == conn.user_id, "{key}: executor {id:?} is not the sid {:?}", conn.user_id);
        }
        match (args.user(key, &conn), conn.admin) {
            (Ok(id), true) => ensure!(args.id(key).as_ref() == Ok(&id), "{key}: an admin's user {id:?} differs from id()"),
            (Ok(id), false) => ensure!(id == conn.user_id, "{key}: a requester named user {id:?}, not its sid"),
            (Err(_), _) => {}
        }
        if let Ok(n) = args.integer(key) {
            ensure!(raw.and_then(Value::as_i64) == Some(n), "{key}: {raw:?} read as integer {n}");
        }
        if let Ok(Some(n)) = args.opt_integer(key) {
            ensure!(raw.and_then(Value::as_i64) == Some(n), "{key}: {raw:?} read as integer {n}");
        }
        if let Ok(s) = args.string(key) {
            ensure!(raw == Some(&Value::String(s.clone())), "{key}: {raw:?} read as string {s:?}");
        }
    }
    check_id("session_channel", args.get("session_channel"), &args.session_channel())?;
    if let Ok((value, channel)) = args.application_id() {
        ensure!(Some(&value) == args.get("application_id"), "application_id {value} is not what was sent");
        check_id("application_id", Some(&value), &Ok(channel))?;
    }
    match args.limit() {
        Ok(n) => ensure!((1..=chat::MAX_PAGE).contains(&n), "limit {n} out of 1..={}", chat::MAX_PAGE),
        Err(_) => ensure!(args.get("limit").is_some(), "an absent limit was refused"),
    }
    if args.get("limit").is_none() {
        ensure!(args.limit() == Ok(chat::DEFAULT_PAGE), "an absent limit is not the default page");
    }
    // Reach (CONTRACT §5): an admin reaches all; a requester its application's conversation, as its user.
    let (channel, user) = &input.conversation;
    let owns = conn.request_id.as_deref() == Some(channel.as_str());
    ensure!(
        chat::check_reach(&conn, channel).is_ok() == (conn.admin || owns),
        "check_reach({channel:?}) for admin={} request_id={:?}",
        conn.admin,
        conn.request_id
    );
    let conversation = Conversation {
        id: 1,
        session_channel: channel.clone(),
        application_id: Value::from(channel.clone()),
        user_id: user.clone(),
        create_at: "2026-01-01T00:00:00Z".into(),
        update_at: "2026-01-01T00:00:00Z".into(),
    };
    ensure!(
        chat::reaches(&conn, &conversation) == (conn.admin || (owns && conn.user_id == *user)),
        "reaches({channel:?} of user {user:?}) for sid {:?} admin={} request_id={:?}",
        conn.user_id,
        conn.admin,
        conn.request_id
    );
    Ok(())
}

/// A route's error in the fuzz harness: a refusal, or a failure of the store or the event.
#[derive(Debug)]
enum RouteFailure {
    Refused(Refusal),
    Failed(String),
}

impl std::fmt::Display for RouteFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(r) => write!(f, "{r}"),
            Self::Failed(e) => write!(f, "{e}"),
        }
    }
}

impl From<Refusal> for RouteFailure {
    fn from(r: Refusal) -> Self {
        Self::Refused(r)
    }
}

impl From<StoreError> for RouteFailure {
    fn from(e: StoreError) -> Self {
        Self::Failed(e.to_string())
    }
}

impl From<herald::apigw::MissingField> for RouteFailure {
    fn from(e: herald::apigw::MissingField) -> Self {
        Self::Failed(e.to_string())
    }
}

impl RouteError for RouteFailure {
    fn refusal(&self) -> Option<&Refusal> {
        match self {
            Self::Refused(r) => Some(r),
            Self::Failed(_) => None,
        }
    }
}

pub fn check_chat_args(input: &ChatArgsInput) -> Result<(), String> {
    check_args(input, &Args(input.args.clone()))?;
    // The same arguments through the shared entry of every chat route, as an API Gateway event.
    super::block_on(async {
        let store = MemoryStore::new();
        let conn = connection(input);
        store.put_connection(&conn).await.map_err(|e| format!("put_connection: {e}"))?;
        let mut event = herald::apigw::WsEvent::default();
        event.request_context.connection_id = Some(conn.connection_id.clone());
        event.body = Some(json!({"name": chat::SEND_MESSAGE, "args": Value::Object(input.args.clone()).to_string()}).to_string());
        let response = chat::serve(&store, &event, |request| async move {
            check_args(input, &request.args).map_err(|e| RouteFailure::Failed(format!("through serve: {e}")))?;
            let channel = request.args.session_channel()?;
            Ok::<Value, RouteFailure>(json!({ "session_channel": channel }))
        })
        .await
        .map_err(|e| format!("serve failed: {e}"))?;
        ensure!(response.status_code == 200, "serve answered {}", response.status_code);
        let body = herald::apigw::response_body(&response).ok_or("serve answered no frame")?;
        let reply: Value = serde_json::from_slice(body).map_err(|e| format!("the reply is not JSON: {e}"))?;
        ensure!(reply["name"] == chat::SEND_MESSAGE && reply["ok"].is_boolean(), "reply {reply}");
        ensure!(reply["ok"] == false || reply["result"]["session_channel"].is_string(), "reply {reply}");
        Ok(())
    })
}

pub(super) fn run_chat_args(budget: &Budget, seed: u64) -> Report {
    drive("chat_args", budget, seed, chat_args(), check_chat_args)
}
