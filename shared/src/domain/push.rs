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
