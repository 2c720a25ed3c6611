//! herald-local's [`Scheduler`] (CONTRACT §9: "herald-local runs its own scheduler"): a tokio task
//! per schedule that puts its message on the platform queue when its time comes — a one-time
//! fire (`send_at`), a held notification's release, or every run of a recurring mailing, computed
//! by [`Cron::next_after`] with the DST rule EventBridge Scheduler follows. It serves `--backend
//! aws` as well (moto's Scheduler stores schedules but never fires them).
//!
//! Schedules live in this process and end with it. On `--backend aws`, whose tables outlive a
//! restart, [`rearm`] schedules again at start what the mailings table says is waiting (mailings
//! scheduled or recurring); a kept event's `send_at` and a held notification's release are not
//! re-armed (no index lists them).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use herald::platform::cron::Cron;
use herald::platform::schedule::{PlatformMessage, ScheduleError, Scheduler};
use herald::queue::Queue;
use tokio::task::AbortHandle;

pub struct LocalScheduler {
    queue: Arc<dyn Queue>,
    tasks: Mutex<HashMap<String, AbortHandle>>,
}

impl LocalScheduler {
    pub fn new(queue: Arc<dyn Queue>) -> Self {
        Self { queue, tasks: Mutex::default() }
    }

    fn replace(&self, name: &str, task: tokio::task::JoinHandle<()>) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|p| p.into_inner());
        tasks.retain(|_, t| !t.is_finished());
        if let Some(old) = tasks.insert(name.to_string(), task.abort_handle()) {
            old.abort();
        }
    }

    /// Schedules waiting (tests and `GET /health` could show it).
    pub fn pending(&self) -> usize {
        self.tasks.lock().unwrap_or_else(|p| p.into_inner()).values().filter(|t| !t.is_finished()).count()
    }
}

impl Drop for LocalScheduler {
    /// The server is gone: so are its schedules.
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).values() {
            task.abort();
        }
    }
}

/// Schedules again what the mailings table says is waiting: a recurring mailing's cron, a
/// `send_at` still ahead, and one whose time passed while no scheduler ran (fired now: a run starts
/// once, whatever fires it).
pub async fn rearm(scheduler: &LocalScheduler, mailings: &dyn herald::store::MailingStore) {
    use herald::domain::MailingStatus;
    use herald::platform::schedule::{fire_schedule, recurrence_schedule};
    let mut cursor: Option<String> = None;
    let mut armed = 0;
    loop {
        let page = match mailings.list_mailings(cursor.as_deref(), 100).await {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(error = %e, "could not list the mailings to schedule them again");
                return;
            }
        };
        for m in page.items.iter().filter(|m| m.status == MailingStatus::Scheduled) {
            let done = match (&m.recurrence, m.send_at.as_deref()) {
                (Some(r), _) => scheduler.schedule_cron(&recurrence_schedule(&m.id), &r.cron, &r.timezone, &m.id).await,
                (None, Some(at)) if m.last_run.is_none() => {
                    let Ok(when) = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339) else { continue };
                    let fire = PlatformMessage::Fire { mailing_id: m.id.clone(), at: Some(at.to_string()) };
                    scheduler.schedule_at(&fire_schedule(&m.id), when, &fire).await
                }
                _ => continue,
            };
            match done {
                Ok(()) => armed += 1,
                Err(e) => tracing::error!(mailing_id = m.id, error = %e, "could not schedule a mailing again"),
            }
        }
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    tracing::info!(armed, "mailings scheduled again");
}

/// How long until `at`, from now (zero when it is past).
fn until(at: time::OffsetDateTime) -> std::time::Duration {
    let secs = (at - herald::domain::now()).as_seconds_f64();
    std::time::Duration::from_secs_f64(secs.max(0.0))
}

async fn send(queue: &dyn Queue, name: &str, message: &PlatformMessage) {
    // A failed send is tried again a few times; the queue is in this process or SQS.
    for attempt in 0..5u32 {
        match queue.send(&message.to_json()).await {
            Ok(_) => return,
            Err(e) => {
                tracing::warn!(schedule = name, attempt, error = %e, "the platform queue refused a scheduled message");
                tokio::time::sleep(std::time::Duration::from_millis(200 << attempt)).await;
            }
        }
    }
    tracing::error!(schedule = name, "a scheduled message was not sent");
}

#[async_trait]
impl Scheduler for LocalScheduler {
    async fn schedule_at(&self, name: &str, at: time::OffsetDateTime, message: &PlatformMessage) -> Result<(), ScheduleError> {
        let (queue, message, label) = (self.queue.clone(), message.clone(), name.to_string());
        let task = tokio::spawn(async move {
            tokio::time::sleep(until(at)).await;
            send(&*queue, &label, &message).await;
        });
        self.replace(name, task);
        Ok(())
    }

    async fn schedule_cron(&self, name: &str, cron: &str, timezone: &str, mailing_id: &str) -> Result<(), ScheduleError> {
        let cron = Cron::parse(cron).map_err(|e| ScheduleError::Refused(e.to_string()))?;
        let tz = jiff::tz::TimeZone::get(timezone).map_err(|e| ScheduleError::Refused(e.to_string()))?;
        let (queue, label, mailing_id) = (self.queue.clone(), name.to_string(), mailing_id.to_string());
        let task = tokio::spawn(async move {
            let mut after = jiff::Timestamp::now();
            while let Some(next) = cron.next_after(&tz, after) {
                let Ok(at) = time::OffsetDateTime::from_unix_timestamp(next.as_second()) else { return };
                tokio::time::sleep(until(at)).await;
                let fire = PlatformMessage::Fire { mailing_id: mailing_id.clone(), at: Some(herald::domain::rfc3339(at)) };
                send(&*queue, &label, &fire).await;
                after = next;
            }
        });
        self.replace(name, task);
        Ok(())
    }

    async fn cancel(&self, name: &str) -> Result<(), ScheduleError> {
        if let Some(task) = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).remove(name) {
            task.abort();
        }
        Ok(())
    }
}
