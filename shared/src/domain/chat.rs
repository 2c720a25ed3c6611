use serde::{Deserialize, Serialize};

/// A conversation, one per application (seed 001).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Conversation {
    /// Sequential integer.
    pub id: i64,
    /// The application id as a string.
    pub session_channel: String,
    /// The application id as the client sent it (a number in the seed).
    pub application_id: serde_json::Value,
    /// The conversation's user (the requester's participant id).
    pub user_id: String,
    /// RFC 3339.
    pub create_at: String,
    pub update_at: String,
}

/// Text or image (seed 001: 1 text, 2 image, anything else 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ContentType {
    #[default]
    Text = 1,
    Image = 2,
}

impl ContentType {
    pub fn from_code(code: Option<i64>) -> Self {
        match code {
            Some(2) => Self::Image,
            _ => Self::Text,
        }
    }

    pub fn code(self) -> i64 {
        self as i64
    }
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Sequential per channel, starting at 1.
    pub id: i64,
    pub session_channel: String,
    pub content: String,
    pub content_type: i64,
    pub sender_id: String,
    /// 0 unread, 1 read.
    pub status: i64,
    pub create_at: String,
    pub update_at: String,
    /// The client's idempotency key, when it sent one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
}

/// A message to append; the store gives it its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewMessage {
    pub session_channel: String,
    pub content: String,
    pub content_type: ContentType,
    pub sender_id: String,
    pub client_msg_id: Option<String>,
    pub create_at: String,
}

/// Unread messages on one channel, for one reader.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnreadCount {
    pub session_channel: String,
    pub count: i64,
}
