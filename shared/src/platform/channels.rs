//! The channels' senders (CONTRACT §9, "Channels"), one behind a trait each so that the cloud's
//! (SESv2, SNS) and herald-local's (the outbox) plug into the same planner: push goes through
//! Herald's own notification path (a §3 push on the notifications queue, as `POST /notify`
//! queues it); email and SMS, on herald-local's embedded backend, into an [`Outbox`].

use std::sync::Mutex;

use async_trait::async_trait;
use serde::Serialize;

use crate::domain::{Channel, Push, now, rfc3339};
use crate::queue::Queue;

/// One rendered message for one user on one channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// The history record's id: a push's id, so a resend is deduplicated.
    pub notification_id: String,
    pub channel: Channel,
    pub user_id: String,
    /// The address: an email address, an E.164 phone number, or (push) the user id.
    pub to: String,
    pub subject: Option<String>,
    pub body: String,
    pub html: Option<String>,
}

/// Why a send failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The channel's service refused it (the reason is the service's own): sending it again
    /// would fail again.
    #[error("{0}")]
    Failed(String),
    /// The service did not take it this time (throttled, a 5xx, no answer): worth another try
    /// later.
    #[error("{0}")]
    Unavailable(String),
}

impl SendError {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable(_))
    }
}

/// A channel's sender.
#[async_trait]
pub trait ChannelSender: Send + Sync {
    async fn send(&self, message: &Outgoing) -> Result<(), SendError>;
}

/// Push: a §3 push to every connection of the user, queued on the notifications queue exactly
/// as `POST /notify` queues one (`dispatch` claims its id: a push queued twice is pushed once).
pub struct PushSender<'a> {
    pub queue: &'a dyn Queue,
}

#[async_trait]
impl ChannelSender for PushSender<'_> {
    async fn send(&self, message: &Outgoing) -> Result<(), SendError> {
        let push = Push {
            id: message.notification_id.clone(),
            created_at: rfc3339(now()),
            user_id: Some(message.user_id.clone()),
            event_name: None,
            title: message.subject.clone(),
            body: Some(message.body.clone()),
            message: None,
            position: None,
        };
        let body = serde_json::to_string(&push).map_err(|e| SendError::Failed(format!("the push cannot be encoded: {e}")))?;
        self.queue.send(&body).await.map_err(|e| SendError::Unavailable(format!("the notifications queue is unavailable: {e}")))?;
        Ok(())
    }
}

/// An email or SMS kept instead of sent (herald-local's embedded backend, `GET /outbox`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutboxItem {
    pub channel: Channel,
    pub to: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub body: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub html: Option<String>,
    pub sent_at: String,
}

/// Email and SMS kept in memory, in the order sent (one history record is kept once).
#[derive(Debug, Default)]
pub struct Outbox {
    kept: Mutex<Kept>,
}

#[derive(Debug, Default)]
struct Kept {
    items: Vec<OutboxItem>,
    /// The notification ids kept: a second send of one is dropped (a set, not a search of the
    /// items, which made a mailing to 100,000 users quadratic).
    ids: std::collections::HashSet<String>,
}

impl Outbox {
    pub fn items(&self) -> Vec<OutboxItem> {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).items.clone()
    }
}

#[async_trait]
impl ChannelSender for Outbox {
    async fn send(&self, message: &Outgoing) -> Result<(), SendError> {
        let mut kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if !kept.ids.insert(message.notification_id.clone()) {
            return Ok(());
        }
        let item = OutboxItem {
            channel: message.channel,
            to: message.to.clone(),
            subject: message.subject.clone(),
            body: message.body.clone(),
            html: message.html.clone(),
            sent_at: rfc3339(now()),
        };
        kept.items.push(item);
        Ok(())
    }
}
