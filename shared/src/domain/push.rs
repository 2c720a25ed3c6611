use serde::{Deserialize, Serialize};

/// A notification on its way to connections (CONTRACT §3, §4).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Push {
    /// UUID; also the idempotency key of the queue message that carried it.
    pub id: String,
    /// RFC 3339.
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<serde_json::Value>,
    /// Where the push is kept (CONTRACT §8): set by `dispatch` once the push is appended to its
    /// stream; absent on a push not yet accepted.
    #[serde(default, flatten, skip_serializing_if = "Option::is_none")]
    pub position: Option<Position>,
}

/// A push's place in its history stream (CONTRACT §8): `"stream"`, `"offset"`, `"epoch"` of the
/// push frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Position {
    /// `user:<id>` or `event:<name>` ([`Push::stream`]).
    pub stream: String,
    /// 1 for a stream's first push, one more for each next one.
    pub offset: u64,
    /// Changes only when the stream's history is lost (URL-safe: letters, digits, `-`, `_`).
    pub epoch: String,
}

/// A stream's newest offset and its epoch (offset 0: nothing kept yet).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamHead {
    pub offset: u64,
    pub epoch: String,
}

/// Where live pushes of a stream start for a connection (its user stream) or a subscription (its
/// event's stream) that asked to recover (CONTRACT §8). While `Recovering`, the recovery posts
/// every push and live delivery skips the target; once `LiveAfter(top)`, the recovery has posted
/// every push up to `top` and live delivery takes those after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Fence {
    Recovering,
    LiveAfter(u64),
}

impl Fence {
    /// Whether live delivery sends the push at `offset` (`None`: a push that is not kept).
    pub fn admits(fence: Option<Fence>, offset: Option<u64>) -> bool {
        match (fence, offset) {
            (None, _) | (_, None) => true,
            (Some(Fence::Recovering), Some(_)) => false,
            (Some(Fence::LiveAfter(top)), Some(offset)) => offset > top,
        }
    }

    /// As stored: -1 while recovering, else the offset live pushes come after.
    pub fn to_i64(self) -> i64 {
        match self {
            Fence::Recovering => -1,
            Fence::LiveAfter(top) => i64::try_from(top).unwrap_or(i64::MAX),
        }
    }

    pub fn from_i64(v: i64) -> Self {
        u64::try_from(v).map(Fence::LiveAfter).unwrap_or(Fence::Recovering)
    }
}

/// Who a push goes to (CONTRACT §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Audience<'a> {
    /// Every connection of the user subscribed to the event.
    UserEvent { user_id: &'a str, event_name: &'a str },
    /// Every subscriber of the event.
    Event(&'a str),
    /// Every connection of the user, subscribed or not.
    User(&'a str),
}

impl Push {
    /// The one stream a push is kept in (CONTRACT §8): the user's when it names a user (with or
    /// without an event), else the event's.
    pub fn stream(&self) -> Option<String> {
        match (self.user_id.as_deref(), self.event_name.as_deref()) {
            (Some(user), _) => Some(user_stream(user)),
            (None, Some(event)) => Some(event_stream(event)),
            (None, None) => None,
        }
    }

    /// The audience, or `None` when the push names neither a user nor an event.
    pub fn audience(&self) -> Option<Audience<'_>> {
        match (self.user_id.as_deref(), self.event_name.as_deref()) {
            (Some(user_id), Some(event_name)) => Some(Audience::UserEvent { user_id, event_name }),
            (None, Some(event)) => Some(Audience::Event(event)),
            (Some(user), None) => Some(Audience::User(user)),
            (None, None) => None,
        }
    }
}

/// The delivery state of one push to one ack-mode connection (seed 003).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub push_id: String,
    pub connection_id: String,
    /// Sends so far (the first send counts).
    pub attempts: u32,
    pub acked: bool,
    /// The encoded frame, kept so a redelivery sends the very same bytes.
    pub frame: Vec<u8>,
    /// Whether `frame` is a binary (protobuf) frame.
    pub binary: bool,
    /// Epoch seconds; the item's TTL.
    pub expires_at: i64,
}

/// The outcome of claiming a queue message's push id before fanning it out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// First time: go ahead.
    New,
    /// A previous attempt stopped before finishing and its lease ran out: go ahead again.
    Retaken,
    /// Already delivered: skip.
    Done,
    /// Another worker holds a live lease: retry later.
    Busy,
}

/// How far a delivery batch of a fan-out got (the fan-out queue's workers, issue 10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BatchState {
    /// Every target was served (or is gone): the batch is never posted again.
    Done,
    /// These connection ids are still to be served; the others were.
    Remaining(Vec<String>),
}

/// What an ack or nack did to a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckOutcome {
    /// The delivery is now acked (or already was).
    Acked,
    /// No such delivery to this connection.
    Unknown,
}

/// A user's stream name: `user:<id>`.
pub fn user_stream(user_id: &str) -> String {
    format!("user:{user_id}")
}

/// An event's stream name: `event:<name>`.
pub fn event_stream(event_name: &str) -> String {
    format!("event:{event_name}")
}

/// A new stream epoch: 16 hex digits of a random UUID (URL-safe).
pub fn new_epoch() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..16].to_string()
}
