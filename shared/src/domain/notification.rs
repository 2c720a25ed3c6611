//! The platform's history (CONTRACT §9, "History"): one record per notification and channel,
//! with what became of it.

use serde::{Deserialize, Serialize};

use super::Channel;

/// What became of a notification on one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotificationStatus {
    Queued,
    Held,
    Sent,
    Acked,
    Failed,
    Skipped,
}

impl NotificationStatus {
    pub const ALL: [NotificationStatus; 6] = [Self::Queued, Self::Held, Self::Sent, Self::Acked, Self::Failed, Self::Skipped];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Queued => "queued",
            Self::Held => "held",
            Self::Sent => "sent",
            Self::Acked => "acked",
            Self::Failed => "failed",
            Self::Skipped => "skipped",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// One notification to one user on one channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// Derived from the event, the user and the channel: a retry names the same record.
    pub id: String,
    pub user_id: String,
    pub channel: Channel,
    pub status: NotificationStatus,
    pub reason: Option<String>,
    pub event_id: Option<String>,
    /// The mailing a record belongs to (instead of an event).
    #[serde(default)]
    pub mailing_id: Option<String>,
    /// When a held notification's quiet hours end (RFC 3339).
    pub held_until: Option<String>,
    pub created_at: String,
    pub updated_at: String,
    /// TTL, epoch seconds.
    pub expires_at: i64,
}

impl Notification {
    /// The key history lists are ordered by: creation time (nanoseconds since the epoch, fixed
    /// width, so that text order is time order), then id (newest first).
    pub fn created_key(&self) -> String {
        use time::format_description::well_known::Rfc3339;
        match time::OffsetDateTime::parse(&self.created_at, &Rfc3339) {
            Ok(t) => format!("{:024}#{}", t.unix_timestamp_nanos().max(0), self.id),
            Err(_) => format!("{}#{}", self.created_at, self.id),
        }
    }
}

/// Which records a history query asks for: by user or by event (one of them is required: each
/// is a key of an index), narrowed by the others.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NotificationFilter {
    pub user_id: Option<String>,
    pub event_id: Option<String>,
    pub mailing_id: Option<String>,
    pub channel: Option<Channel>,
    pub status: Option<NotificationStatus>,
}

impl NotificationFilter {
    pub fn matches(&self, n: &Notification) -> bool {
        self.user_id.as_ref().is_none_or(|u| *u == n.user_id)
            && self.event_id.as_ref().is_none_or(|e| n.event_id.as_ref() == Some(e))
            && self.mailing_id.as_ref().is_none_or(|m| n.mailing_id.as_ref() == Some(m))
            && self.channel.is_none_or(|c| c == n.channel)
            && self.status.is_none_or(|s| s == n.status)
    }
}
