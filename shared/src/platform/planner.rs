//! The planner (CONTRACT §9, "Rules"): a mailing's or an event's run expanded, a page of the
//! audience at a time, into one job per user and channel, and each job run: preferences, quiet
//! hours (held, then released when they end), locale, render, send, history record. `POST /events`
//! runs the jobs of a small `users` audience in its request; everything else goes through the
//! platform queue ([`PlatformMessage`]) to the worker (`platform-worker`), which calls
//! [`Planner::handle`]. Both are this code.
//!
//! **Once.** A run starts once per mailing and scheduled time ([`MailingStore::start_run`]); each
//! job's history record (its id per mailing or event × user × channel) is created once; its send
//! is claimed (a lease, [`JOB_LEASE_SECS`]) before it is made and the record's final status
//! written after: a repeated message finds the record done, a concurrent one the claim taken. A
//! worker that dies between the send and the record leaves the claim to lapse and the job to be
//! retried: push (`dispatch` claims its id) and herald-local's outbox drop that second copy.
//!
//! **Status.** A run's records are created while its audience is expanded, each in one
//! transaction with its count in `created_jobs` ([`MailingStore::create_job`]), before any of its
//! jobs message is queued; each job's final record (sent, failed, skipped or held) is written in
//! one transaction with its count in `done_jobs` and in its channel's and status's count
//! ([`MailingStore::record_job`]), so a crash between the two cannot happen. The last page
//! marks the run expanded; whoever then sees it expanded with every created job done moves it
//! `sending` → `sent` (or back to `scheduled` for a recurrence) with one conditional write.
//! A held job counts as recorded: its later release moves its count from `held` to its status.

use serde_json::{Value, json};

use super::channels::{ChannelSender, Outgoing, SendError};
use super::preferences::{channel_allowed, quiet_until};
use super::schedule::{PlatformMessage, ScheduleError, Scheduler, release_schedule};
use super::templates::{self, Sources};
use super::user_info::UserInfo;
use crate::domain::{
    Channel, Content, Mailing, MailingAudience, MailingKind, MailingStatus, Notification, NotificationStatus, UserProfile, count_key,
    epoch_secs, now, rfc3339,
};
use crate::queue::{Queue, QueueError};
use crate::store::{MailingStore, NotificationStore, StoreError, SubscriptionStore, TemplateStore, UserStore};

/// How long history records are kept (TTL), and kept events.
pub const HISTORY_TTL_SECS: i64 = 30 * 24 * 3600;
/// How long a job's claim holds before another worker may take the job again.
pub const JOB_LEASE_SECS: i64 = 120;
/// Sends tried per job when the service does not take them (throttled, 5xx, timeout), waiting
/// [`SEND_BACKOFF`], then twice that, … between them.
pub const SEND_ATTEMPTS: u32 = 3;
pub const SEND_BACKOFF: std::time::Duration = std::time::Duration::from_millis(200);
/// Users per page of an audience: one queue message of jobs (× channels).
pub const PAGE_USERS: usize = 100;

/// The UUID namespace of history record ids ([`notification_id`]).
const NOTIFICATION_NAMESPACE: uuid::Uuid = uuid::uuid!("9a3e7c15-64b2-4f8d-a0c3-5e1b2d7f4a68");

/// The id of the history record (and of the push) of an event or a mailing for one user on one
/// channel: the name-based UUID of the three, marked version 8 (RFC 9562's custom version) so that
/// a push id tells a platform notification ([`is_notification_id`]) from a publisher's push,
/// whose ids are random or version 5.
pub fn notification_id(source_id: &str, user_id: &str, channel: Channel) -> String {
    let name = format!("{}:{source_id}|{}:{user_id}|{}", source_id.len(), user_id.len(), channel.as_str());
    uuid::Uuid::new_v8(uuid::Uuid::new_v5(&NOTIFICATION_NAMESPACE, name.as_bytes()).into_bytes()).to_string()
}

/// Whether a push id is a platform notification's ([`notification_id`]).
pub fn is_notification_id(id: &str) -> bool {
    uuid::Uuid::try_parse(id).is_ok_and(|u| u.get_version_num() == 8)
}

/// Looks an ack takes at a record not yet `sent` ([`record_ack`]), the first after
/// [`ACK_LOOK_WAIT`], each later one after twice the wait before it (1.5 s in all).
const ACK_LOOKS: u32 = 5;
const ACK_LOOK_WAIT: std::time::Duration = std::time::Duration::from_millis(100);

/// A push notification acked by a connection it was delivered to (CONTRACT §9 history: `sent` →
/// `acked`): its record and its mailing's (or event's) counts, from push `sent` to push `acked`,
/// moved at once ([`MailingStore::record_job`], conditional on the record still being `sent`).
/// `false` when nothing moved: not a platform notification, already acked, or never recorded
/// `sent`. A push goes out before its job records it `sent` (or, released from quiet hours, moves
/// it from `held`), so an ack that finds the record `queued` or `held` looks again a few times.
pub async fn record_ack<S: NotificationStore + MailingStore + ?Sized>(store: &S, push_id: &str) -> Result<bool, StoreError> {
    if !is_notification_id(push_id) {
        return Ok(false);
    }
    let mut wait = ACK_LOOK_WAIT;
    for _ in 0..ACK_LOOKS {
        let Some(mut record) = store.get_notification(push_id).await? else { return Ok(false) };
        match (record.channel, record.status) {
            (Channel::Push, NotificationStatus::Sent) => {}
            (Channel::Push, NotificationStatus::Queued | NotificationStatus::Held) => {
                tokio::time::sleep(wait).await;
                wait *= 2;
                continue;
            }
            _ => return Ok(false),
        }
        let source = record.event_id.clone().or_else(|| record.mailing_id.clone()).unwrap_or_default();
        record.status = NotificationStatus::Acked;
        record.updated_at = rfc3339(now());
        let moved = [(count_key(Channel::Push, NotificationStatus::Sent), -1), (count_key(Channel::Push, NotificationStatus::Acked), 1)];
        return store.record_job(&record, NotificationStatus::Sent, &source, "", false, &moved).await;
    }
    tracing::warn!(push_id, "acked, but its history record never said sent: left as it is");
    Ok(false)
}

/// Why a message could not be handled (the queue then hands it over again).
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("the store is unavailable: {0}")]
    Store(#[from] StoreError),
    #[error("the platform queue is unavailable: {0}")]
    Queue(#[from] QueueError),
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    #[error("a send is worth another try: {0}")]
    Retry(String),
}

/// What a job came to.
struct Outcome {
    status: NotificationStatus,
    reason: Option<String>,
    held_until: Option<time::OffsetDateTime>,
}

impl Outcome {
    fn of(status: NotificationStatus, reason: impl Into<String>) -> Self {
        Self { status, reason: Some(reason.into()), held_until: None }
    }
}

/// Everything a job needs: the platform's tables, the senders, the platform queue and the
/// scheduler (held notifications are released through it).
pub struct Planner<'a> {
    pub templates: &'a dyn TemplateStore,
    pub users: &'a dyn UserStore,
    pub subscriptions: &'a dyn SubscriptionStore,
    pub notifications: &'a dyn NotificationStore,
    pub mailings: &'a dyn MailingStore,
    pub push: &'a dyn ChannelSender,
    /// `None`: the channel has no sender in this deployment; its jobs fail with that reason.
    pub email: Option<&'a dyn ChannelSender>,
    pub sms: Option<&'a dyn ChannelSender>,
    pub queue: &'a dyn Queue,
    pub scheduler: &'a dyn Scheduler,
    /// `HERALD_USER_INFO_URL`: what a profile lacks for a job comes from the auth service.
    pub user_info: Option<&'a UserInfo>,
    /// The token of the request whose jobs run here (`POST /events` to `users`), presented to the
    /// auth service; `None` (the worker's queued and scheduled jobs): `HERALD_USER_INFO_TOKEN`.
    pub caller_token: Option<&'a str>,
}

fn parse_time(text: &str) -> Option<time::OffsetDateTime> {
    time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()
}

impl Planner<'_> {
    fn sender(&self, channel: Channel) -> Option<&dyn ChannelSender> {
        match channel {
            Channel::Push => Some(self.push),
            Channel::Email => self.email,
            Channel::Sms => self.sms,
        }
    }

    async fn send(&self, message: &PlatformMessage) -> Result<(), PlanError> {
        self.queue.send(&message.to_json()).await?;
        Ok(())
    }

    /// One platform queue message.
    pub async fn handle(&self, message: &PlatformMessage) -> Result<(), PlanError> {
        match message {
            PlatformMessage::Fire { mailing_id, at } => self.fire(mailing_id, at.as_deref()).await,
            PlatformMessage::Expand { mailing_id, run, cursor } => self.expand(mailing_id, run, cursor.as_deref()).await,
            PlatformMessage::Jobs { mailing_id, run, users } => self.jobs(mailing_id, run, users).await,
            PlatformMessage::Release { notification_id } => self.release(notification_id).await,
        }
    }

    /// The time a fire stands for: its own, else the mailing's `send_at`, else its creation.
    fn fire_time(m: &Mailing, at: Option<&str>) -> time::OffsetDateTime {
        at.and_then(parse_time)
            .or_else(|| m.send_at.as_deref().and_then(parse_time))
            .or_else(|| parse_time(&m.created_at))
            .unwrap_or_else(now)
    }

    /// Starts the run a fire stands for, once, and queues its first page.
    pub async fn fire(&self, mailing_id: &str, at: Option<&str>) -> Result<(), PlanError> {
        let Some(m) = self.mailings.get_mailing(mailing_id).await? else {
            tracing::info!(mailing_id, "fire of an unknown mailing: nothing to do");
            return Ok(());
        };
        let run = crate::domain::run_key(Self::fire_time(&m, at));
        if !self.mailings.start_run(mailing_id, &run).await? {
            // Seen before: carry on only if that very run never got its first page queued (a
            // crash right after starting it); a repeated page is harmless.
            let again = self.mailings.get_mailing(mailing_id).await?;
            let unfinished =
                again.is_some_and(|m| m.status == MailingStatus::Sending && m.last_run.as_deref() == Some(&*run) && !m.expanded);
            if !unfinished {
                tracing::info!(mailing_id, run, "a repeated or stale fire, or a cancelled mailing: nothing to do");
                return Ok(());
            }
        }
        tracing::info!(mailing_id, run, "run started");
        self.send(&PlatformMessage::Expand { mailing_id: mailing_id.to_string(), run, cursor: None }).await
    }

    /// The users of one page of an audience, and where the next page starts.
    async fn audience_page(&self, audience: &MailingAudience, cursor: Option<&str>) -> Result<(Vec<String>, Option<String>), PlanError> {
        Ok(match audience {
            MailingAudience::Users(list) => {
                let start: usize = cursor.and_then(|c| c.parse().ok()).unwrap_or(0).min(list.len());
                let end = (start + PAGE_USERS).min(list.len());
                (list[start..end].to_vec(), (end < list.len()).then(|| end.to_string()))
            }
            MailingAudience::EventName(event) => {
                let page = self.subscriptions.event_subscribers(event, cursor, PAGE_USERS).await?;
                let mut users: Vec<String> = Vec::with_capacity(page.items.len());
                for s in page.items {
                    if !users.contains(&s.user_id) {
                        users.push(s.user_id);
                    }
                }
                (users, page.next)
            }
            MailingAudience::All => {
                let page = self.users.list_users(cursor, PAGE_USERS).await?;
                (page.items.into_iter().map(|p| p.user_id).collect(), page.next)
            }
        })
    }

    /// Whose jobs a run's are: a recurring mailing's runs each have their own (its id and the
    /// run's key), so every run sends; a one-off mailing's or an event's are its id.
    pub fn job_source(m: &Mailing, run: &str) -> String {
        if m.recurrence.is_some() { format!("{}@{run}", m.id) } else { m.id.clone() }
    }

    fn record(m: &Mailing, run: &str, user_id: &str, channel: Channel) -> Notification {
        let at = rfc3339(now());
        let (event_id, mailing_id) = match m.kind {
            MailingKind::Event => (Some(m.id.clone()), None),
            MailingKind::Mailing => (None, Some(m.id.clone())),
        };
        Notification {
            id: notification_id(&Self::job_source(m, run), user_id, channel),
            user_id: user_id.to_string(),
            channel,
            status: NotificationStatus::Queued,
            reason: None,
            event_id,
            mailing_id,
            held_until: None,
            created_at: at.clone(),
            updated_at: at,
            expires_at: epoch_secs(now()) + HISTORY_TTL_SECS,
        }
    }

    /// Creates the records of these users' jobs in a run (once each), each counted in the run in
    /// the same transaction.
    async fn create_records(&self, m: &Mailing, run: &str, users: &[String]) -> Result<(), PlanError> {
        for user in users {
            for channel in &m.channels {
                self.mailings.create_job(&Self::record(m, run, user, *channel), &m.id, run).await?;
            }
        }
        Ok(())
    }

    /// One page of a run's audience: its records, its jobs message, then the next page (or the
    /// run marked expanded).
    pub async fn expand(&self, mailing_id: &str, run: &str, cursor: Option<&str>) -> Result<(), PlanError> {
        let Some(m) = self.mailings.get_mailing(mailing_id).await? else { return Ok(()) };
        if m.last_run.as_deref() != Some(run) || m.status != MailingStatus::Sending {
            tracing::info!(mailing_id, run, "a page of a run no longer current: nothing to do");
            return Ok(());
        }
        let (users, next) = self.audience_page(&m.audience, cursor).await?;
        self.create_records(&m, run, &users).await?;
        if !users.is_empty() {
            self.send(&PlatformMessage::Jobs { mailing_id: mailing_id.to_string(), run: run.to_string(), users }).await?;
        }
        match next {
            Some(cursor) => {
                self.send(&PlatformMessage::Expand { mailing_id: mailing_id.to_string(), run: run.to_string(), cursor: Some(cursor) }).await
            }
            None => {
                self.mailings.mark_expanded(mailing_id, run).await?;
                self.try_finish(&m, run).await
            }
        }
    }

    /// Runs a small audience's jobs at once (`POST /events` with `users`): the run, its records
    /// and its jobs, all in this call.
    pub async fn run_inline(&self, m: &Mailing, run: &str, users: &[String]) -> Result<(), PlanError> {
        if !self.mailings.start_run(&m.id, run).await? {
            tracing::info!(mailing_id = m.id, "seen before: only the jobs never finished are done");
        }
        self.create_records(m, run, users).await?;
        self.mailings.mark_expanded(&m.id, run).await?;
        self.jobs(&m.id, run, users).await
    }

    /// A jobs message: every channel of these users.
    pub async fn jobs(&self, mailing_id: &str, run: &str, users: &[String]) -> Result<(), PlanError> {
        let Some(m) = self.mailings.get_mailing(mailing_id).await? else { return Ok(()) };
        let mut retry = None;
        for user_id in users {
            let profile = self.profile(user_id).await?;
            for channel in &m.channels {
                match self.job(&m, run, &profile, *channel).await {
                    Ok(()) => {}
                    // The others go on; the message comes back for what is left.
                    Err(PlanError::Retry(reason)) => retry = Some(reason),
                    Err(e) => return Err(e),
                }
            }
        }
        self.try_finish(&m, run).await?;
        match retry {
            Some(reason) => Err(PlanError::Retry(reason)),
            None => Ok(()),
        }
    }

    async fn profile(&self, user_id: &str) -> Result<UserProfile, PlanError> {
        Ok(self.users.get_user(user_id).await?.unwrap_or_else(|| UserProfile::new(user_id, &rfc3339(now()))))
    }

    /// Claims a record's send (a lease): `false` when another worker holds it. `step` tells the
    /// job's first run from a release of what it held (each release its own: `held_until`).
    async fn claim(&self, notification_id: &str, step: &str) -> Result<bool, PlanError> {
        Ok(self.notifications.claim_event(&format!("send:{notification_id}:{step}"), epoch_secs(now()) + JOB_LEASE_SECS).await?)
    }

    /// One user on one channel.
    async fn job(&self, m: &Mailing, run: &str, profile: &UserProfile, channel: Channel) -> Result<(), PlanError> {
        let id = notification_id(&Self::job_source(m, run), &profile.user_id, channel);
        let Some(record) = self.notifications.get_notification(&id).await? else {
            // Created at expansion; gone only if it expired.
            return Ok(());
        };
        if record.status != NotificationStatus::Queued || !self.claim(&id, "job").await? {
            return Ok(());
        }
        // Read again under the claim: another worker may have finished it just before.
        let Some(mut record) = self.notifications.get_notification(&id).await?.filter(|r| r.status == NotificationStatus::Queued) else {
            return Ok(());
        };
        let outcome = if m.status == MailingStatus::Cancelled {
            Outcome::of(NotificationStatus::Skipped, "the mailing was cancelled")
        } else {
            self.outcome(&id, m, profile, channel).await?
        };
        let counts = [(count_key(channel, outcome.status), 1)];
        self.record_outcome(m, run, &mut record, outcome, NotificationStatus::Queued, true, &counts).await
    }

    /// The record in its new state and its counts, written at once if it is still `from`; a held
    /// one's release scheduled first (a release that finds it not held does nothing).
    #[allow(clippy::too_many_arguments)]
    async fn record_outcome(
        &self,
        m: &Mailing,
        run: &str,
        record: &mut Notification,
        outcome: Outcome,
        from: NotificationStatus,
        done: bool,
        counts: &[(String, i64)],
    ) -> Result<(), PlanError> {
        record.status = outcome.status;
        record.reason = outcome.reason;
        record.held_until = outcome.held_until.map(rfc3339);
        record.updated_at = rfc3339(now());
        if let Some(until) = outcome.held_until {
            let release = PlatformMessage::Release { notification_id: record.id.clone() };
            self.scheduler.schedule_at(&release_schedule(&record.id), until, &release).await?;
        }
        let written = self.mailings.record_job(record, from, &m.id, run, done, counts).await?;
        let (id, status) = (record.id.as_str(), record.status.as_str());
        tracing::info!(notification_id = id, mailing_id = m.id, channel = record.channel.as_str(), status, written, "planned");
        Ok(())
    }

    /// A held notification whose quiet hours ended: planned again (quiet hours changed since may
    /// hold it again), its count moved from `held` to what it came to.
    pub async fn release(&self, notification_id: &str) -> Result<(), PlanError> {
        let Some(record) = self.notifications.get_notification(notification_id).await? else { return Ok(()) };
        let step = format!("release {}", record.held_until.as_deref().unwrap_or_default());
        if record.status != NotificationStatus::Held || !self.claim(notification_id, &step).await? {
            return Ok(());
        }
        let Some(mut record) = self.notifications.get_notification(notification_id).await?.filter(|r| r.status == NotificationStatus::Held)
        else {
            return Ok(());
        };
        let source = record.event_id.clone().or_else(|| record.mailing_id.clone()).unwrap_or_default();
        let Some(m) = self.mailings.get_mailing(&source).await? else {
            record.status = NotificationStatus::Failed;
            record.reason = Some("its event or mailing is gone (expired)".into());
            record.updated_at = rfc3339(now());
            self.notifications.update_notification(&record).await?;
            return Ok(());
        };
        let channel = record.channel;
        let profile = self.profile(&record.user_id).await?;
        let outcome = if m.status == MailingStatus::Cancelled {
            Outcome::of(NotificationStatus::Skipped, "the mailing was cancelled")
        } else {
            self.outcome(notification_id, &m, &profile, channel).await?
        };
        let moved = if outcome.status == NotificationStatus::Held {
            Vec::new()
        } else {
            vec![(count_key(channel, NotificationStatus::Held), -1), (count_key(channel, outcome.status), 1)]
        };
        self.record_outcome(&m, "", &mut record, outcome, NotificationStatus::Held, false, &moved).await
    }

    async fn try_finish(&self, m: &Mailing, run: &str) -> Result<(), PlanError> {
        let Some(now_m) = self.mailings.get_mailing(&m.id).await? else { return Ok(()) };
        if now_m.status == MailingStatus::Sending && now_m.last_run.as_deref() == Some(run) && now_m.run_finished() {
            let to = if now_m.recurrence.is_some() { MailingStatus::Scheduled } else { MailingStatus::Sent };
            if self.mailings.finish_run(&m.id, run, to).await? {
                tracing::info!(mailing_id = m.id, run, status = to.as_str(), "run finished");
            }
        }
        Ok(())
    }

    /// What one job comes to: preferences, quiet hours (unless critical), the address, the
    /// template for the user's locale, the send.
    async fn outcome(&self, id: &str, m: &Mailing, profile: &UserProfile, channel: Channel) -> Result<Outcome, PlanError> {
        use NotificationStatus::{Failed, Held, Sent, Skipped};
        let c = channel.as_str();
        if !channel_allowed(profile, channel) {
            return Ok(Outcome::of(Skipped, format!("the user turned {c} off")));
        }
        if !m.critical
            && let Some(until) = quiet_until(profile, now())
        {
            return Ok(Outcome { status: Held, reason: Some(format!("quiet hours until {}", rfc3339(until))), held_until: Some(until) });
        }
        // What the profile lacks for this job (the address, or the name a template may use)
        // from the auth service, when there is one.
        let completed;
        let profile = match self.user_info {
            Some(info)
                if profile.name.is_none()
                    || (channel == Channel::Email && profile.email.is_none())
                    || (channel == Channel::Sms && profile.phone.is_none()) =>
            {
                match info.complete(profile.clone(), self.caller_token).await {
                    Ok(p) => {
                        completed = p;
                        &completed
                    }
                    Err(e) => return Ok(Outcome::of(Failed, e.to_string())),
                }
            }
            _ => profile,
        };
        let to = match channel {
            Channel::Email => profile.email.clone(),
            Channel::Sms => profile.phone.clone(),
            Channel::Push => Some(profile.user_id.clone()),
        };
        let Some(to) = to else {
            let what = if channel == Channel::Email { "an email address" } else { "a phone number" };
            return Ok(Outcome::of(Failed, format!("the user has no {what}")));
        };
        let (subject, body, html) = match &m.content {
            Content::FreeForm { title, body } => (title.clone(), body.clone(), None),
            Content::Templates(names) => {
                let Some(name) = names.get(&channel) else { return Ok(Outcome::of(Failed, format!("no {c} template"))) };
                let Some(template) = self.templates.template_for(name, channel, profile.locale.as_deref()).await? else {
                    return Ok(Outcome::of(Failed, format!("the {c} template {name:?} is gone")));
                };
                let user = serde_json::to_value(profile).unwrap_or_else(|_| json!({}));
                let data: &Value = &m.data;
                match templates::render(&Sources::of(&template), &user, data) {
                    Ok(r) => (r.subject, r.body, r.html),
                    Err(e) => return Ok(Outcome::of(Failed, format!("template {name:?}: {e}"))),
                }
            }
        };
        let Some(sender) = self.sender(channel) else {
            return Ok(Outcome::of(Failed, format!("{c} is not configured in this deployment")));
        };
        let message = Outgoing { notification_id: id.to_string(), channel, user_id: profile.user_id.clone(), to, subject, body, html };
        // A refusal is final; a service that did not take it (throttled, a 5xx, no answer) is
        // tried again with backoff, then recorded as failed with its reason.
        let mut attempt = 1;
        loop {
            match sender.send(&message).await {
                Ok(()) => return Ok(Outcome { status: Sent, reason: None, held_until: None }),
                Err(e @ SendError::Failed(_)) => return Ok(Outcome::of(Failed, e.to_string())),
                Err(e @ SendError::Unavailable(_)) if attempt >= SEND_ATTEMPTS => {
                    return Ok(Outcome::of(Failed, format!("{e} (after {attempt} attempts)")));
                }
                Err(e) => {
                    tracing::warn!(notification_id = id, attempt, error = %e, "send failed: trying again");
                    tokio::time::sleep(SEND_BACKOFF * 2u32.pow(attempt - 1)).await;
                    attempt += 1;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::domain::{Recurrence, run_key};
    use crate::platform::schedule::Recorded;
    use crate::store::memory::MemoryStore;

    /// Keeps what it is sent; the first `unavailable` sends are not taken.
    #[derive(Default)]
    struct Sender {
        sent: Mutex<Vec<Outgoing>>,
        unavailable: Mutex<u32>,
    }

    #[async_trait::async_trait]
    impl ChannelSender for Sender {
        async fn send(&self, message: &Outgoing) -> Result<(), SendError> {
            let mut left = self.unavailable.lock().unwrap();
            if *left > 0 {
                *left -= 1;
                return Err(SendError::Unavailable("throttled".into()));
            }
            self.sent.lock().unwrap().push(message.clone());
            Ok(())
        }
    }

    struct World {
        store: MemoryStore,
        email: Sender,
        push: Sender,
        queue: Recorded,
        scheduler: Recorded,
    }

    impl World {
        fn new() -> Self {
            Self {
                store: MemoryStore::new(),
                email: Sender::default(),
                push: Sender::default(),
                queue: Recorded::default(),
                scheduler: Recorded::default(),
            }
        }

        fn planner(&self) -> Planner<'_> {
            Planner {
                templates: &self.store,
                users: &self.store,
                subscriptions: &self.store,
                notifications: &self.store,
                mailings: &self.store,
                push: &self.push,
                email: Some(&self.email),
                sms: None,
                queue: &self.queue,
                scheduler: &self.scheduler,
                user_info: None,
                caller_token: None,
            }
        }

        /// Handles what is on the queue, in order, `limit` messages at most; returns how many.
        async fn drain(&self, limit: usize) -> usize {
            self.drain_with(&self.planner(), limit).await
        }

        /// Runs what is on the queue with `planner`, at most `limit` messages.
        async fn drain_with(&self, planner: &Planner<'_>, limit: usize) -> usize {
            let mut done = 0;
            while done < limit {
                let next = {
                    let mut calls = self.queue.calls.lock().unwrap();
                    if calls.is_empty() { None } else { Some(calls.remove(0)) }
                };
                let Some(call) = next else { break };
                let message: PlatformMessage = serde_json::from_str(call.strip_prefix("send ").unwrap()).unwrap();
                planner.handle(&message).await.unwrap();
                done += 1;
            }
            done
        }

        async fn mailing(&self, id: &str) -> Mailing {
            self.store.get_mailing(id).await.unwrap().unwrap()
        }
    }

    fn free_form(id: &str, users: usize, recurrence: Option<Recurrence>) -> Mailing {
        let at = rfc3339(now());
        Mailing {
            id: id.into(),
            kind: MailingKind::Mailing,
            name: "m".into(),
            template: None,
            content: Content::FreeForm { title: Some("T".into()), body: "B".into() },
            channels: vec![Channel::Push],
            audience: MailingAudience::Users((0..users).map(|i| format!("u{i}")).collect()),
            data: json!({}),
            critical: false,
            send_at: None,
            recurrence,
            status: MailingStatus::Scheduled,
            last_run: None,
            expanded: false,
            created_jobs: 0,
            done_jobs: 0,
            counts: Default::default(),
            created_at: at.clone(),
            updated_at: at,
            expires_at: 0,
        }
    }

    #[tokio::test]
    async fn a_large_audience_is_paged_and_sent_once_the_last_job_is_recorded() {
        let w = World::new();
        w.store.create_mailing(&free_form("m", 250, None)).await.unwrap();
        w.planner().fire("m", None).await.unwrap();
        // The fire and the three pages (100, 100, 50): every record created, no job run yet.
        assert_eq!(w.drain(1).await, 1);
        let m = w.mailing("m").await;
        assert_eq!((m.status, m.created_jobs, m.expanded), (MailingStatus::Sending, 100, false));
        // Pages and jobs interleave on the queue; until the last job is recorded, it is sending.
        loop {
            let m = w.mailing("m").await;
            if m.done_jobs == 250 {
                break;
            }
            assert_eq!(m.status, MailingStatus::Sending, "{} of 250 recorded", m.done_jobs);
            assert_eq!(w.drain(1).await, 1);
        }
        w.drain(usize::MAX).await;
        let m = w.mailing("m").await;
        assert_eq!((m.status, m.created_jobs, m.done_jobs), (MailingStatus::Sent, 250, 250));
        assert_eq!(m.counts, [("push.sent".to_string(), 250)].into());
        let sent = w.push.sent.lock().unwrap();
        let ids: std::collections::HashSet<&str> = sent.iter().map(|o| o.notification_id.as_str()).collect();
        assert_eq!((sent.len(), ids.len()), (250, 250));
    }

    #[tokio::test]
    async fn each_run_of_a_recurrence_sends_and_a_stale_fire_does_not() {
        let w = World::new();
        let every = Recurrence { cron: "0 9 * * *".into(), timezone: "UTC".into() };
        w.store.create_mailing(&free_form("r", 2, Some(every))).await.unwrap();
        let (t1, t2) = ("2030-01-01T09:00:00Z", "2030-01-02T09:00:00Z");
        w.planner().fire("r", Some(t1)).await.unwrap();
        w.drain(usize::MAX).await;
        assert_eq!((w.mailing("r").await.status, w.push.sent.lock().unwrap().len()), (MailingStatus::Scheduled, 2));
        w.planner().fire("r", Some(t2)).await.unwrap();
        w.drain(usize::MAX).await;
        assert_eq!(w.push.sent.lock().unwrap().len(), 4, "the second run sends too");
        let m = w.mailing("r").await;
        let t2_run = run_key(time::OffsetDateTime::parse(t2, &time::format_description::well_known::Rfc3339).unwrap());
        assert_eq!((m.status, m.last_run.as_deref(), m.counts["push.sent"]), (MailingStatus::Scheduled, Some(&*t2_run), 4));
        // The first run's fire again (late), and the second's again: nothing.
        for at in [t1, t2] {
            w.planner().fire("r", Some(at)).await.unwrap();
            w.drain(usize::MAX).await;
        }
        assert_eq!(w.push.sent.lock().unwrap().len(), 4);
    }

    #[tokio::test]
    async fn an_unavailable_service_is_tried_again_then_recorded_failed() {
        let w = World::new();
        let mut m = free_form("m", 2, None);
        m.channels = vec![Channel::Email];
        for u in ["u0", "u1"] {
            let mut p = UserProfile::new(u, &rfc3339(now()));
            p.email = Some(format!("{u}@example.com"));
            w.store.put_user(&p, None).await.unwrap();
        }
        w.store.create_mailing(&m).await.unwrap();
        // u0: refused on every attempt; u1: twice, then taken.
        *w.email.unavailable.lock().unwrap() = SEND_ATTEMPTS + 2;
        w.planner().fire("m", None).await.unwrap();
        w.drain(usize::MAX).await;
        let m = w.mailing("m").await;
        assert_eq!(m.counts, [("email.sent".to_string(), 1), ("email.failed".to_string(), 1)].into());
        let failed = w.store.get_notification(&notification_id("m", "u0", Channel::Email)).await.unwrap().unwrap();
        assert!(failed.reason.as_deref().is_some_and(|r| r.contains("throttled") && r.contains("3 attempts")), "{failed:?}");
        assert_eq!(m.status, MailingStatus::Sent);
    }

    /// A stand-in auth service on a free port answering `GET /users/{id}` for `known` only.
    async fn auth_service(known: &'static str, body: Value) -> String {
        let app = axum::Router::new().route(
            "/users/{id}",
            axum::routing::get(move |axum::extract::Path(id): axum::extract::Path<String>| {
                let body = body.clone();
                async move { if id == known { Ok(axum::Json(body)) } else { Err(axum::http::StatusCode::SERVICE_UNAVAILABLE) } }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        format!("http://{addr}/users/{{user_id}}")
    }

    #[tokio::test]
    async fn what_a_profile_lacks_comes_from_the_user_info_service_or_the_job_fails_saying_why() {
        let w = World::new();
        let url = auth_service("u0", json!({"email": "zero@example.com", "name": "Zero"})).await;
        let info = UserInfo::new(&url).unwrap();
        let mut m = free_form("m", 2, None);
        m.channels = vec![Channel::Email];
        w.store.create_mailing(&m).await.unwrap();
        let planner = Planner { user_info: Some(&info), ..w.planner() };
        planner.fire("m", None).await.unwrap();
        w.drain_with(&planner, usize::MAX).await;
        let sent = w.email.sent.lock().unwrap().clone();
        assert_eq!(sent.len(), 1, "{sent:?}");
        assert_eq!((sent[0].user_id.as_str(), sent[0].to.as_str()), ("u0", "zero@example.com"));
        let failed = w.store.get_notification(&notification_id("m", "u1", Channel::Email)).await.unwrap().unwrap();
        assert_eq!(failed.status, NotificationStatus::Failed);
        assert_eq!(failed.reason.as_deref(), Some("the user info service (127.0.0.1) answered 503 Service Unavailable"), "{failed:?}");
    }

    #[tokio::test]
    async fn an_ack_moves_a_sent_push_to_acked_once_with_its_count() {
        let w = World::new();
        w.store.create_mailing(&free_form("m", 2, None)).await.unwrap();
        w.planner().fire("m", None).await.unwrap();
        w.drain(usize::MAX).await;
        let (u0, u1) = (notification_id("m", "u0", Channel::Push), notification_id("m", "u1", Channel::Push));
        assert!(is_notification_id(&u0));
        assert!(record_ack(&w.store, &u0).await.unwrap());
        assert!(!record_ack(&w.store, &u0).await.unwrap(), "once");
        let record = w.store.get_notification(&u0).await.unwrap().unwrap();
        assert_eq!(record.status, NotificationStatus::Acked);
        assert_eq!(w.store.get_notification(&u1).await.unwrap().unwrap().status, NotificationStatus::Sent);
        let m = w.mailing("m").await;
        assert_eq!((m.status, m.done_jobs), (MailingStatus::Sent, 2));
        assert_eq!(m.counts, [("push.sent".to_string(), 1), ("push.acked".to_string(), 1)].into());
        // Publishers' pushes (random or name-based ids) are not looked up at all.
        for other in [uuid::Uuid::new_v4().to_string(), uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, b"m").to_string(), "x".into()] {
            assert!(!is_notification_id(&other), "{other}");
            assert!(!record_ack(&w.store, &other).await.unwrap());
        }
    }

    #[tokio::test]
    async fn an_ack_that_comes_before_the_record_says_sent_waits_for_it() {
        let w = World::new();
        w.store.create_mailing(&free_form("m", 1, None)).await.unwrap();
        w.planner().fire("m", None).await.unwrap();
        // The fire (it expands the page): the record is created, queued, its job not yet run.
        w.drain(1).await;
        let id = notification_id("m", "u0", Channel::Push);
        assert_eq!(w.store.get_notification(&id).await.unwrap().unwrap().status, NotificationStatus::Queued);
        let (acked, ()) = tokio::join!(record_ack(&w.store, &id), async {
            tokio::time::sleep(std::time::Duration::from_millis(250)).await;
            w.drain(usize::MAX).await;
        });
        assert!(acked.unwrap());
        assert_eq!(w.store.get_notification(&id).await.unwrap().unwrap().status, NotificationStatus::Acked);
        let counts: std::collections::BTreeMap<String, i64> = w.mailing("m").await.counts.into_iter().filter(|(_, n)| *n != 0).collect();
        assert_eq!(counts, [("push.acked".to_string(), 1)].into());
        // An email's record is never acked.
        assert!(!record_ack(&w.store, &notification_id("m", "u0", Channel::Email)).await.unwrap());
    }
}
