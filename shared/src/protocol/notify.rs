use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use prost::Message as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{MAX_MESSAGE_BYTES, pb};
use crate::domain::{Encoding, Push, user_id_from_json};
use crate::gateway::Frame;

/// A client frame of the notification API: JSON text, or a protobuf `ClientMessage` (base64 in a
/// text frame, as API Gateway takes no binary frames from clients; raw in a binary frame).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientFrame {
    /// `since`: recover the event's stream after this offset (CONTRACT §8).
    Subscribe {
        event_name: String,
        user_id: Option<String>,
        since: Option<Since>,
    },
    Unsubscribe {
        event_name: String,
        user_id: Option<String>,
    },
    Ack {
        push_id: String,
        status: AckStatus,
    },
    /// Who is online on an event the connection is subscribed to (CONTRACT §8).
    Presence {
        event_name: String,
    },
    /// The client is alive: keeps it counted by presence.
    Heartbeat,
}

/// The last offset a client saw of a stream, and the stream's epoch then (CONTRACT §8).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Since {
    pub offset: u64,
    pub epoch: String,
}

impl Since {
    /// The connect URL's form: `<offset>:<epoch>`.
    pub fn parse_query(text: &str) -> Result<Self, String> {
        let bad = || format!("since must be <offset>:<epoch>, not {:?}", text.chars().take(64).collect::<String>());
        let (offset, epoch) = text.split_once(':').ok_or_else(bad)?;
        let offset = offset.parse().map_err(|_| bad())?;
        if epoch.is_empty() || epoch.len() > 64 {
            return Err(bad());
        }
        Ok(Self { offset, epoch: epoch.to_string() })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckStatus {
    Ack,
    Nack,
}

/// Why a client frame was refused; becomes an error frame, and the connection stays open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("the frame is not valid JSON")]
    BadJson,
    #[error("the frame is not a valid protobuf ClientMessage")]
    BadProtobuf,
    #[error("the frame has no \"type\"")]
    MissingType,
    #[error("unknown frame type {0:?}")]
    UnknownType(String),
    #[error("{0}")]
    BadField(String),
    #[error("the frame is over {MAX_MESSAGE_BYTES} bytes")]
    TooLarge,
}

impl FrameError {
    /// The stable `code` of the error frame.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadJson => "bad_json",
            Self::BadProtobuf => "bad_protobuf",
            Self::MissingType => "missing_type",
            Self::UnknownType(_) => "unknown_type",
            Self::BadField(_) => "bad_request",
            Self::TooLarge => "too_large",
        }
    }

    pub fn to_frame(&self) -> ServerFrame {
        ServerFrame::error(self.code(), self.to_string())
    }
}

/// Parses a text frame: JSON, else the base64 of a protobuf `ClientMessage` (CONTRACT §3).
///
/// Valid JSON always wins. A text that is not JSON is read as base64 (standard alphabet, or the
/// URL-safe one, padded either way, canonical, no whitespace); one that is not base64 either is
/// `bad_json`, and base64 whose bytes are no `ClientMessage` is `bad_protobuf`. The two never
/// overlap in practice: an encoded `ClientMessage` starts with field 1's tag (`0x0a`), so its
/// base64 starts with `C`, which no JSON text does.
pub fn parse_text_frame(text: &str) -> Result<ClientFrame, FrameError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(FrameError::TooLarge);
    }
    let value: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) => {
            return match decode_base64_text(text) {
                Some(bytes) => parse_binary_frame(&bytes),
                None => Err(FrameError::BadJson),
            };
        }
    };
    let Value::Object(obj) = value else {
        return Err(FrameError::BadField("a frame must be a JSON object".into()));
    };
    let kind = match obj.get("type") {
        None | Some(Value::Null) => return Err(FrameError::MissingType),
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err(FrameError::BadField("\"type\" must be a string".into())),
    };
    let string_field = |name: &'static str| -> Result<String, FrameError> {
        match obj.get(name) {
            Some(Value::String(s)) => Ok(s.clone()),
            None | Some(Value::Null) => Err(FrameError::BadField(format!("\"{name}\" is required"))),
            Some(_) => Err(FrameError::BadField(format!("\"{name}\" must be a string"))),
        }
    };
    let event_and_user = || -> Result<(String, Option<String>), FrameError> {
        let event_name = string_field("event_name")?;
        crate::domain::check_name("event_name", &event_name).map_err(|e| FrameError::BadField(e.to_string()))?;
        let user_id = match obj.get("user_id") {
            None | Some(Value::Null) => None,
            Some(v) => Some(user_id_from_json("user_id", v).map_err(|e| FrameError::BadField(e.to_string()))?),
        };
        Ok((event_name, user_id))
    };
    match kind {
        "subscribe" => {
            let (event_name, user_id) = event_and_user()?;
            let since = match obj.get("since") {
                None | Some(Value::Null) => None,
                Some(v) => Some(
                    serde_json::from_value::<Since>(v.clone())
                        .map_err(|_| FrameError::BadField("\"since\" must be {\"offset\":<integer>,\"epoch\":\"<epoch>\"}".into()))?,
                ),
            };
            Ok(ClientFrame::Subscribe { event_name, user_id, since })
        }
        "presence" => {
            let event_name = string_field("event_name")?;
            crate::domain::check_name("event_name", &event_name).map_err(|e| FrameError::BadField(e.to_string()))?;
            Ok(ClientFrame::Presence { event_name })
        }
        "heartbeat" => Ok(ClientFrame::Heartbeat),
        "unsubscribe" => event_and_user().map(|(event_name, user_id)| ClientFrame::Unsubscribe { event_name, user_id }),
        "ack" => {
            let push_id = string_field("push_id")?;
            let status = match obj.get("status") {
                None | Some(Value::Null) => AckStatus::Ack,
                Some(v) => {
                    serde_json::from_value(v.clone()).map_err(|_| FrameError::BadField("\"status\" must be \"ack\" or \"nack\"".into()))?
                }
            };
            Ok(ClientFrame::Ack { push_id, status })
        }
        other => Err(FrameError::UnknownType(other.chars().take(64).collect())),
    }
}

/// The bytes of a base64 text: the standard alphabet (`+`, `/`), or the URL-safe one (`-`, `_`)
/// when the text uses one of its two letters, never both; padding required. An empty text is
/// not base64 here (it is an empty, and so bad, JSON frame).
pub fn decode_base64_text(text: &str) -> Option<Vec<u8>> {
    if text.is_empty() {
        return None;
    }
    let engine = if text.bytes().any(|b| b == b'-' || b == b'_') { &URL_SAFE } else { &STANDARD };
    engine.decode(text).ok()
}

/// Parses the bytes of a protobuf `ClientMessage` (a binary frame, or a base64 text decoded).
pub fn parse_binary_frame(bytes: &[u8]) -> Result<ClientFrame, FrameError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(FrameError::TooLarge);
    }
    let msg = pb::ClientMessage::decode(bytes).map_err(|_| FrameError::BadProtobuf)?;
    match msg.client_message {
        Some(pb::client_message::ClientMessage::DeliveryAck(ack)) => {
            let status = match pb::delivery_ack::Status::try_from(ack.status) {
                Ok(pb::delivery_ack::Status::Ack) => AckStatus::Ack,
                Ok(pb::delivery_ack::Status::Nack) => AckStatus::Nack,
                Err(_) => return Err(FrameError::BadField(format!("unknown ack status {}", ack.status))),
            };
            Ok(ClientFrame::Ack { push_id: ack.push_id, status })
        }
        None => Err(FrameError::BadProtobuf),
    }
}

/// A server frame of the notification API (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
// Frames live only while they are encoded: the size of the push variant does not matter.
#[allow(clippy::large_enum_variant)]
pub enum ServerFrame {
    /// With `offset`, `epoch` and `recovered` when the subscribe asked to recover (CONTRACT §8).
    Subscribed {
        event_name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        offset: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        epoch: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
    },
    /// The first frame of a connection opened with `&since=` (CONTRACT §8).
    Recovered {
        stream: String,
        recovered: bool,
        offset: u64,
        epoch: String,
    },
    /// Who is online on an event (CONTRACT §8).
    Presence {
        event_name: String,
        users: Vec<String>,
        connections: usize,
    },
    Unsubscribed {
        event_name: String,
    },
    Error {
        code: String,
        message: String,
    },
    Push(Push),
}

impl ServerFrame {
    /// The plain reply to a subscribe.
    pub fn subscribed(event_name: impl Into<String>) -> Self {
        Self::Subscribed { event_name: event_name.into(), offset: None, epoch: None, recovered: None }
    }

    pub fn error(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Error { code: code.into(), message: message.into() }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|_| r#"{"type":"error","code":"internal","message":"unencodable frame"}"#.into())
    }

    pub fn to_frame(&self) -> Frame {
        Frame::Text(self.to_json().into())
    }
}

/// The JSON push of CONTRACT §3: `{"type":"push","id","created_at","event_name","title","body","message"}`,
/// fields that do not apply left out (the target `user_id` is not part of the frame).
pub fn push_json(push: &Push) -> String {
    let frame = ServerFrame::Push(Push { user_id: None, ..push.clone() });
    frame.to_json()
}

/// The protobuf push: `title` is the push's title, else its event name; `body` the push's body,
/// else the JSON text of its message.
pub fn push_protobuf(push: &Push) -> Vec<u8> {
    let notification = pb::PushNotification {
        id: push.id.clone(),
        created_at: push.created_at.clone(),
        title: push.title.clone().or_else(|| push.event_name.clone()).unwrap_or_default(),
        body: push.body.clone().or_else(|| push.message.as_ref().map(Value::to_string)).unwrap_or_default(),
        stream: push.position.as_ref().map(|p| p.stream.clone()).unwrap_or_default(),
        offset: push.position.as_ref().map(|p| p.offset).unwrap_or_default(),
        epoch: push.position.as_ref().map(|p| p.epoch.clone()).unwrap_or_default(),
    };
    pb::ServerMessage { server_message: Some(pb::server_message::ServerMessage::PushNotification(notification)) }.encode_to_vec()
}

/// An error frame in a connection's encoding (CONTRACT §3): JSON `{"type":"error",…}`, or a
/// `ServerMessage.error` in a binary frame.
pub fn encode_error(code: &str, message: &str, encoding: Encoding) -> Frame {
    match encoding {
        Encoding::Json => ServerFrame::error(code, message).to_frame(),
        Encoding::Protobuf => {
            let error = pb::Error { code: code.to_string(), message: message.to_string() };
            Frame::Binary(pb::ServerMessage { server_message: Some(pb::server_message::ServerMessage::Error(error)) }.encode_to_vec())
        }
    }
}

/// A push encoded for a connection's encoding.
pub fn encode_push(push: &Push, encoding: Encoding) -> Frame {
    match encoding {
        Encoding::Json => Frame::Text(push_json(push).into()),
        Encoding::Protobuf => Frame::Binary(push_protobuf(push)),
    }
}

/// Encodes a protobuf ack, as a seed 003 client does.
pub fn ack_protobuf(push_id: &str, status: AckStatus) -> Vec<u8> {
    let status = match status {
        AckStatus::Ack => pb::delivery_ack::Status::Ack,
        AckStatus::Nack => pb::delivery_ack::Status::Nack,
    };
    pb::ClientMessage {
        client_message: Some(pb::client_message::ClientMessage::DeliveryAck(pb::DeliveryAck {
            push_id: push_id.into(),
            status: status as i32,
        })),
    }
    .encode_to_vec()
}

/// A protobuf ack as a text frame carries it: the `ClientMessage`, base64 (standard, padded).
pub fn ack_protobuf_base64(push_id: &str, status: AckStatus) -> String {
    STANDARD.encode(ack_protobuf(push_id, status))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn push() -> Push {
        Push {
            id: "6a1f5a8e-0000-4000-8000-000000000001".into(),
            created_at: "2026-11-23T05:00:00Z".into(),
            user_id: Some("1589".into()),
            event_name: Some("notification:test".into()),
            title: None,
            body: None,
            message: Some(json!({"text": "hi"})),
            position: None,
        }
    }

    #[test]
    fn seed_000_subscribe_frame_parses_with_numeric_user() {
        let f = parse_text_frame(r#"{"type":"subscribe","user_id":1589,"event_name":"notification:test"}"#).unwrap();
        assert_eq!(f, ClientFrame::Subscribe { event_name: "notification:test".into(), user_id: Some("1589".into()), since: None });
    }

    #[test]
    fn bad_frames_get_their_own_codes() {
        assert_eq!(parse_text_frame("{nope").unwrap_err().code(), "bad_json");
        assert_eq!(parse_text_frame(r#"{"type":"dance"}"#).unwrap_err().code(), "unknown_type");
        assert_eq!(parse_text_frame(r#"{"event_name":"x"}"#).unwrap_err().code(), "missing_type");
        assert_eq!(parse_text_frame(r#"{"type":"subscribe","event_name":7}"#).unwrap_err().code(), "bad_request");
        assert_eq!(parse_text_frame(r#"{"type":"subscribe","event_name":""}"#).unwrap_err().code(), "bad_request");
        assert_eq!(parse_text_frame(r#"{"type":"ack","push_id":"x","status":"maybe"}"#).unwrap_err().code(), "bad_request");
        assert_eq!(parse_text_frame(&"x".repeat(MAX_MESSAGE_BYTES + 1)).unwrap_err().code(), "too_large");
        assert_eq!(parse_binary_frame(&[0xff, 0xff, 0xff]).unwrap_err().code(), "bad_protobuf");
    }

    #[test]
    fn json_push_leaves_out_what_does_not_apply() {
        let v: Value = serde_json::from_str(&push_json(&push())).unwrap();
        assert_eq!(
            v,
            json!({"type":"push","id":"6a1f5a8e-0000-4000-8000-000000000001","created_at":"2026-11-23T05:00:00Z",
                   "event_name":"notification:test","message":{"text":"hi"}})
        );
    }

    #[test]
    fn protobuf_push_falls_back_to_event_name_and_message_text() {
        let bytes = push_protobuf(&push());
        let msg = pb::ServerMessage::decode(bytes.as_slice()).unwrap();
        let Some(pb::server_message::ServerMessage::PushNotification(n)) = msg.server_message else { panic!("no push") };
        assert_eq!(n.title, "notification:test");
        assert_eq!(n.body, r#"{"text":"hi"}"#);
        assert_eq!(n.id, push().id);
    }

    #[test]
    fn protobuf_acks_round_trip() {
        let f = parse_binary_frame(&ack_protobuf("p1", AckStatus::Nack)).unwrap();
        assert_eq!(f, ClientFrame::Ack { push_id: "p1".into(), status: AckStatus::Nack });
    }

    const PUSH_ID: &str = "6a1f5a8e-0000-4000-8000-000000000001";

    #[test]
    fn a_base64_client_message_in_a_text_frame_is_a_protobuf_ack() {
        for status in [AckStatus::Ack, AckStatus::Nack] {
            let text = ack_protobuf_base64(PUSH_ID, status);
            assert!(text.starts_with('C'), "{text}");
            assert_eq!(parse_text_frame(&text).unwrap(), ClientFrame::Ack { push_id: PUSH_ID.into(), status });
        }
    }

    #[test]
    fn url_safe_base64_is_accepted_when_it_is_unambiguous() {
        // Push ids whose encodings need the 62nd and 63rd letters: `+`/`/` standard, `-`/`_` URL-safe.
        for (id, standard, url_safe) in [("~~~~", "CggKBH5+fn4QAQ==", "CggKBH5-fn4QAQ=="), ("ÿÿÿ", "CgoKBsO/w7/DvxAB", "CgoKBsO_w7_DvxAB")]
        {
            assert_eq!(STANDARD.encode(ack_protobuf(id, AckStatus::Nack)), standard);
            let ack = ClientFrame::Ack { push_id: id.into(), status: AckStatus::Nack };
            assert_eq!(parse_text_frame(standard).unwrap(), ack, "{standard}");
            assert_eq!(parse_text_frame(url_safe).unwrap(), ack, "{url_safe}");
        }
        // Both alphabets in one text: neither decodes it, so it is not base64.
        assert_eq!(parse_text_frame("CgoKBsO/w7_DvxAB").unwrap_err().code(), "bad_json");
    }

    #[test]
    fn text_that_is_neither_json_nor_base64_is_bad_json() {
        let padded = ack_protobuf_base64(PUSH_ID, AckStatus::Ack);
        let unpadded = padded.trim_end_matches('=').to_string();
        assert_ne!(padded, unpadded, "the test needs an encoding with padding");
        let with_newline = format!("{padded}\n");
        for text in ["", "{nope", "hello world", "C===", unpadded.as_str(), with_newline.as_str()] {
            assert_eq!(parse_text_frame(text).unwrap_err().code(), "bad_json", "{text:?}");
        }
    }

    #[test]
    fn base64_that_is_no_client_message_is_bad_protobuf() {
        // Decodes, but to bytes prost refuses (0xff…), or to an empty ClientMessage (an unknown field only).
        for bytes in [&[0xff, 0xff, 0xff][..], &[0x10, 0x01][..]] {
            assert_eq!(parse_text_frame(&STANDARD.encode(bytes)).unwrap_err().code(), "bad_protobuf", "{bytes:?}");
        }
    }

    #[test]
    fn valid_json_always_wins_over_base64() {
        // "1234" and "true" are valid base64 too; as JSON they are not frames.
        for text in ["1234", "true", "null", "1e+5"] {
            assert!(decode_base64_text(text).is_some(), "{text} is base64");
            assert_eq!(parse_text_frame(text).unwrap_err().code(), "bad_request", "{text}");
        }
    }

    #[test]
    fn the_128_kb_limit_holds_for_base64_too() {
        let long = STANDARD.encode(vec![0u8; MAX_MESSAGE_BYTES]);
        assert_eq!(parse_text_frame(&long).unwrap_err().code(), "too_large");
    }
}
