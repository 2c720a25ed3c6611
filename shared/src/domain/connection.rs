use serde::{Deserialize, Serialize};

/// Which WebSocket API a connection belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Api {
    /// The notification API (`/api/v1/notify/ws`, CONTRACT §3).
    Notify,
    /// The chat API (`/ws`, CONTRACT §5).
    Chat,
}

/// How pushes are encoded for a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    /// JSON text frames (the default).
    #[default]
    Json,
    /// Seed 003's protobuf `ServerMessage` in binary frames (`?format=protobuf`).
    Protobuf,
}

impl Encoding {
    /// From `?format=`: absent or `json` is JSON, `protobuf` (or `proto`) is protobuf.
    pub fn from_query(format: Option<&str>) -> Result<Self, String> {
        match format.map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("json") => Ok(Self::Json),
            Some("protobuf") | Some("proto") => Ok(Self::Protobuf),
            Some(other) => Err(format!("unknown format {other:?}: use json or protobuf")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Protobuf => "protobuf",
        }
    }
}

/// Whether pushes to a connection must be acked (seed 003).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AckMode {
    #[default]
    None,
    Required,
}

impl AckMode {
    /// Protobuf connections always ack; JSON connections when opened with `?ack=required`.
    pub fn from_query(ack: Option<&str>, encoding: Encoding) -> Result<Self, String> {
        if encoding == Encoding::Protobuf {
            return Ok(Self::Required);
        }
        match ack.map(str::to_ascii_lowercase).as_deref() {
            None | Some("") | Some("none") | Some("false") => Ok(Self::None),
            Some("required") | Some("true") => Ok(Self::Required),
            Some(other) => Err(format!("unknown ack mode {other:?}: use required or none")),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Required => "required",
        }
    }
}

/// An open WebSocket connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Connection {
    /// API Gateway's connection id.
    pub connection_id: String,
    /// The caller: the token's user, or for chat the `sid` participant id.
    pub user_id: String,
    pub api: Api,
    pub encoding: Encoding,
    pub ack_mode: AckMode,
    /// Whether the token was an admin's (chat operators).
    pub admin: bool,
    /// For chat: the requester's `request_id` claim, which bounds the conversations it may reach.
    pub request_id: Option<String>,
    /// Epoch milliseconds.
    pub connected_at: i64,
    /// Epoch seconds; the item's TTL.
    pub expires_at: i64,
    /// The user stream's recovery (`&since=` on connect, CONTRACT §8); `None`: every push is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<super::Fence>,
    /// Epoch seconds of the client's last frame (or of the connect): presence counts a connection
    /// whose last frame is recent, so a lost `$disconnect` does not keep a user online.
    #[serde(default)]
    pub last_seen: i64,
}

impl Connection {
    /// A connection opened now for `user_id`, expiring after `ttl`: JSON, no acks, no admin
    /// rights, no requester; callers set what their handshake says.
    pub fn opened(connection_id: impl Into<String>, user_id: impl Into<String>, api: Api, ttl: std::time::Duration) -> Self {
        let at = super::now();
        Self {
            connection_id: connection_id.into(),
            user_id: user_id.into(),
            api,
            encoding: Encoding::Json,
            ack_mode: AckMode::None,
            admin: false,
            request_id: None,
            connected_at: (at.unix_timestamp_nanos() / 1_000_000) as i64,
            expires_at: super::epoch_secs(at) + ttl.as_secs() as i64,
            fence: None,
            last_seen: super::epoch_secs(at),
        }
    }
}

/// A connection's subscription to an event, carrying what a fan-out needs to deliver
/// without reading the connection again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    pub connection_id: String,
    pub event_name: String,
    pub user_id: String,
    pub encoding: Encoding,
    pub ack_mode: AckMode,
    /// Epoch seconds; the item's TTL (the connection's).
    pub expires_at: i64,
    /// The event stream's recovery (`since` on subscribe, CONTRACT §8); `None`: every push is live.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fence: Option<super::Fence>,
}

impl Subscription {
    pub fn of(connection: &Connection, event_name: impl Into<String>) -> Self {
        Self {
            connection_id: connection.connection_id.clone(),
            event_name: event_name.into(),
            user_id: connection.user_id.clone(),
            encoding: connection.encoding,
            ack_mode: connection.ack_mode,
            expires_at: connection.expires_at,
            fence: None,
        }
    }
}

/// A connection a push goes to, with what is needed to encode and track it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Target {
    pub connection_id: String,
    pub user_id: String,
    pub encoding: Encoding,
    pub ack_mode: AckMode,
}

impl From<&Connection> for Target {
    fn from(c: &Connection) -> Self {
        Self { connection_id: c.connection_id.clone(), user_id: c.user_id.clone(), encoding: c.encoding, ack_mode: c.ack_mode }
    }
}

impl From<Subscription> for Target {
    fn from(s: Subscription) -> Self {
        Self { connection_id: s.connection_id, user_id: s.user_id, encoding: s.encoding, ack_mode: s.ack_mode }
    }
}
