//! herald-local's [`Scheduler`] (CONTRACT §9: "herald-local runs its own scheduler"): a tokio task
//! per schedule that puts its message on the platform queue when its time comes — a one-time
//! fire (`send_at`), a held notification's release, or every run of a recurring mailing, computed
//! by [`Cron::next_after`] with the DST rule EventBridge Scheduler follows. It serves `--backend
//! aws` as well (moto's Scheduler stores schedules but never fires them).
//!
//! Schedules live in this process: a restart forgets them (the embedded backend forgets
//! everything; on `--backend aws` a scheduled mailing then waits until it is created again).

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
