//! Mailings (CONTRACT §9, "Mailings"): an admin's campaign to an audience on some channels, at
//! once, at `send_at`, or on a recurrence; and, with the same record, a publisher's event sent
//! later or to an audience that is paged (`kind` [`MailingKind::Event`]: not listed).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Channel, NotificationStatus};

/// Where a mailing stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailingStatus {
    /// Waiting for `send_at` or its next recurrence.
    Scheduled,
    /// A run is being expanded or its jobs are not all recorded yet.
    Sending,
    /// Every job of its (one) run is recorded.
    Sent,
    Cancelled,
    Failed,
}

impl MailingStatus {
    pub const ALL: [MailingStatus; 5] = [Self::Scheduled, Self::Sending, Self::Sent, Self::Cancelled, Self::Failed];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Scheduled => "scheduled",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Cancelled => "cancelled",
            Self::Failed => "failed",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == text)
    }
}

/// An admin's mailing, or a publisher's event kept for a later or paged send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MailingKind {
    Mailing,
    Event,
}

/// Who a mailing goes to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MailingAudience {
    Users(Vec<String>),
    /// The users of the connections subscribed to a WebSocket event, paged by shard.
    EventName(String),
    /// Every user with a profile, paged by shard.
    All,
}

/// What is sent: templates by channel (a mailing's one template name on each of its channels,
/// or a fixed event's templates), or a free-form event's own title and body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Content {
    Templates(BTreeMap<Channel, String>),
    FreeForm { title: Option<String>, body: String },
}

/// A recurrence: a 5-field cron in an IANA time zone ([`crate::platform::cron`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recurrence {
    pub cron: String,
    pub timezone: String,
}

/// What a mailing is (fixed when it is created) and where it stands.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Mailing {
    pub id: String,
    pub kind: MailingKind,
    /// The mailing's name, or the event's.
    pub name: String,
    /// The template name a mailing was created with (shown by the API).
    pub template: Option<String>,
    pub content: Content,
    pub channels: Vec<Channel>,
    pub audience: MailingAudience,
    pub data: serde_json::Value,
    /// Sent inside quiet hours too.
    pub critical: bool,
    pub send_at: Option<String>,
    pub recurrence: Option<Recurrence>,
    pub status: MailingStatus,
    /// The run started last (its key sorts by time: [`run_key`]).
    pub last_run: Option<String>,
    /// The last run's audience is expanded: every job of it has its history record.
    pub expanded: bool,
    /// The last run's jobs created, and of them recorded (sent, failed, skipped or held).
    pub created_jobs: i64,
    pub done_jobs: i64,
    /// Jobs by channel and status, over every run (`email.sent`).
    pub counts: BTreeMap<String, i64>,
    pub created_at: String,
    pub updated_at: String,
    /// TTL (events only; 0: kept).
    pub expires_at: i64,
}

/// The counter of one channel and status (`email.sent`).
pub fn count_key(channel: Channel, status: NotificationStatus) -> String {
    format!("{}.{}", channel.as_str(), status.as_str())
}

/// A run's key: its scheduled time, fixed width (nanoseconds since the epoch), so that text order
/// is time order and a stale or repeated fire of an earlier time never starts again.
pub fn run_key(at: time::OffsetDateTime) -> String {
    format!("{:024}", at.unix_timestamp_nanos().max(0))
}

impl Mailing {
    /// The key lists are ordered by: creation time (fixed width) and id.
    pub fn created_key(&self) -> String {
        use time::format_description::well_known::Rfc3339;
        match time::OffsetDateTime::parse(&self.created_at, &Rfc3339) {
            Ok(t) => format!("{}#{}", run_key(t), self.id),
            Err(_) => format!("{}#{}", self.created_at, self.id),
        }
    }

    /// Whether the last run is finished: expanded, and every created job recorded.
    pub fn run_finished(&self) -> bool {
        self.expanded && self.done_jobs >= self.created_jobs
    }
}

/// How far ahead `send_at` may be.
pub const MAX_SEND_AHEAD_DAYS: i64 = 366;

/// An RFC 3339 `send_at` (named `field` in the error), in UTC, at most [`MAX_SEND_AHEAD_DAYS`]
/// ahead (a past one means now); `null` is none.
pub fn parse_send_at(field: &str, value: &serde_json::Value) -> Result<Option<time::OffsetDateTime>, String> {
    match value {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) => {
            let at = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
                .map_err(|_| format!("\"{field}\" must be an RFC 3339 time such as \"2030-01-01T09:00:00Z\", not {s:?}"))?;
            if at > super::now() + time::Duration::days(MAX_SEND_AHEAD_DAYS) {
                return Err(format!("\"{field}\" is more than {MAX_SEND_AHEAD_DAYS} days ahead"));
            }
            Ok(Some(at.to_offset(time::UtcOffset::UTC)))
        }
        _ => Err(format!("\"{field}\" must be an RFC 3339 time (a string)")),
    }
}
