//! Time (CONTRACT §9, "Rules"): what the platform queue carries ([`PlatformMessage`]) and what
//! puts a message on it later ([`Scheduler`]): in the cloud SQS `DelaySeconds` up to 15 minutes and
//! EventBridge Scheduler beyond (`at()` with `ActionAfterCompletion: DELETE`) and for recurrences
//! (`cron()` with `ScheduleExpressionTimezone`), both targeting the platform queue
//! ([`eventbridge`]); herald-local runs its own (a tokio task per schedule).
//!
//! A fire that comes twice, or late, is harmless: a run is started once per mailing and scheduled
//! time ([`MailingStore::start_run`](crate::store::MailingStore::start_run)), and every job's send
//! is claimed once.

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub mod eventbridge;

/// A message on the platform queue, consumed by the worker (`platform-worker`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PlatformMessage {
    /// Start a run of a mailing (or a kept event) scheduled for `at` (RFC 3339; absent: its
    /// `send_at`, else its creation). EventBridge fills `at` with the schedule's own time.
    Fire {
        mailing_id: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        at: Option<String>,
    },
    /// Expand one page of a run's audience into jobs (`cursor`: where the page starts).
    Expand {
        mailing_id: String,
        run: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        cursor: Option<String>,
    },
    /// Run the jobs (every channel) of these users in a run.
    Jobs { mailing_id: String, run: String, users: Vec<String> },
    /// Send a notification quiet hours held, now that they have ended.
    Release { notification_id: String },
}

impl PlatformMessage {
    pub fn to_json(&self) -> String {
        // A struct of strings always encodes.
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// Why a schedule could not be made or removed.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("the scheduler is unavailable: {0}")]
    Unavailable(String),
    #[error("the schedule was refused: {0}")]
    Refused(String),
}

/// What puts a platform message on the platform queue later. `name` identifies the schedule
/// (`[0-9A-Za-z_.-]`, at most 64 characters): scheduling a name again replaces it; cancelling
/// an unknown one is no error.
#[async_trait]
pub trait Scheduler: Send + Sync {
    /// Once, at `at` (now or in the past: at once).
    async fn schedule_at(&self, name: &str, at: time::OffsetDateTime, message: &PlatformMessage) -> Result<(), ScheduleError>;
    /// On every run of a 5-field `cron` in `timezone` (both validated), each time as a
    /// [`PlatformMessage::Fire`] of `mailing_id` with `at` = the run's scheduled time.
    async fn schedule_cron(&self, name: &str, cron: &str, timezone: &str, mailing_id: &str) -> Result<(), ScheduleError>;
    async fn cancel(&self, name: &str) -> Result<(), ScheduleError>;
}

/// The schedule of a mailing's (or a kept event's) one-time fire.
pub fn fire_schedule(mailing_id: &str) -> String {
    format!("fire-{mailing_id}")
}

/// The schedule of a recurring mailing.
pub fn recurrence_schedule(mailing_id: &str) -> String {
    format!("cron-{mailing_id}")
}

/// The schedule that releases a held notification.
pub fn release_schedule(notification_id: &str) -> String {
    format!("release-{notification_id}")
}

/// Keeps what it is asked to send or schedule, in order, and does nothing else: a platform queue
/// and a scheduler for unit tests (`send <body>`, `at <name>`, `cron <name>`, `cancel <name>`).
#[derive(Debug, Default)]
pub struct Recorded {
    pub calls: std::sync::Mutex<Vec<String>>,
}

impl Recorded {
    fn keep(&self, call: String) {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).push(call);
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

#[async_trait]
impl crate::queue::Queue for Recorded {
    async fn send(&self, body: &str) -> Result<String, crate::queue::QueueError> {
        self.keep(format!("send {body}"));
        Ok(uuid::Uuid::new_v4().to_string())
    }
}

#[async_trait]
impl Scheduler for Recorded {
    async fn schedule_at(&self, name: &str, _at: time::OffsetDateTime, _message: &PlatformMessage) -> Result<(), ScheduleError> {
        self.keep(format!("at {name}"));
        Ok(())
    }

    async fn schedule_cron(&self, name: &str, _cron: &str, _timezone: &str, _mailing_id: &str) -> Result<(), ScheduleError> {
        self.keep(format!("cron {name}"));
        Ok(())
    }

    async fn cancel(&self, name: &str) -> Result<(), ScheduleError> {
        self.keep(format!("cancel {name}"));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip_and_names_fit_eventbridge() {
        let m = PlatformMessage::Fire { mailing_id: "m".into(), at: None };
        assert_eq!(m.to_json(), r#"{"type":"fire","mailing_id":"m"}"#);
        let back: PlatformMessage = serde_json::from_str(r#"{"type":"fire","mailing_id":"m","at":"2026-01-01T00:00:00Z"}"#).unwrap();
        assert_eq!(back, PlatformMessage::Fire { mailing_id: "m".into(), at: Some("2026-01-01T00:00:00Z".into()) });
        let id = uuid::Uuid::new_v4().to_string();
        for name in [fire_schedule(&id), recurrence_schedule(&id), release_schedule(&id)] {
            assert!(name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b)), "{name}");
        }
    }
}
