//! herald-local's [`Scheduler`] (CONTRACT §9: "herald-local runs its own scheduler"): a tokio task
//! per schedule that puts its input on the platform queue when its time comes — a one-time fire
//! (`send_at`), a held notification's release, or every run of a recurring mailing, computed by
//! [`Cron::next_after`] with the DST rule EventBridge Scheduler follows.
//!
//! On `--backend aws` the schedules are kept where the cloud keeps them: the cloud's own
//! [`EventBridgeScheduler`] (the Lambdas' code path) writes each to the schedule group in moto's
//! (or AWS's) EventBridge Scheduler, and this process fires it, as EventBridge would: a `cron()`
//! schedule with `<aws.scheduler.scheduled-time>` in its input replaced by each run's time, an
//! `at()` schedule once, deleting it afterwards (`ActionAfterCompletion: DELETE`). moto stores
//! schedules but never fires them. herald-local keeps every later fire as an `at()` schedule
//! ([`Options::sqs_delay_limit`](crate::Options), 0 by default; the cloud sends fires up to 15
//! minutes ahead with SQS `DelaySeconds`, which moto keeps too but delivers in whole seconds).
//! At start, [`rearm`] lists the group's schedules that target this platform queue and fires
//! them from then on: a restart loses nothing, and an `at()` whose time passed while nothing ran
//! fires at once (a fire twice is harmless: runs and jobs are claimed once).
//!
//! On the embedded backend (its store is in memory) schedules live in this process only.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_scheduler::error::ProvideErrorMetadata;
use aws_sdk_scheduler::types::{ActionAfterCompletion, ScheduleState};
use herald::platform::cron::Cron;
use herald::platform::schedule::eventbridge::{EventBridgeScheduler, Kept, classify, cron_input, parse_at_expression, scheduled_input};
use herald::platform::schedule::{PlatformMessage, ScheduleError, Scheduler};
use herald::queue::Queue;
use tokio::task::AbortHandle;

/// When a schedule fires.
#[derive(Debug, Clone)]
pub enum Timing {
    /// Once (an `at()` schedule): at once when it is past.
    At(time::OffsetDateTime),
    /// On every run of a cron in a time zone (a `cron()` schedule).
    Cron(Cron, jiff::tz::TimeZone),
}

impl Timing {
    fn cron(cron: &str, timezone: &str) -> Result<Self, String> {
        let cron = Cron::parse(cron).map_err(|e| e.to_string())?;
        let tz = jiff::tz::TimeZone::get(timezone).map_err(|e| e.to_string())?;
        Ok(Self::Cron(cron, tz))
    }
}

/// A schedule as this process fires it.
#[derive(Debug, Clone)]
pub struct Armed {
    pub timing: Timing,
    /// What goes on the platform queue, `<aws.scheduler.scheduled-time>` replaced by the run's time.
    pub input: String,
    /// Whether the kept schedule is deleted once fired (an `at()` schedule's
    /// `ActionAfterCompletion: DELETE`).
    pub delete_after: bool,
}

impl Armed {
    /// A schedule as GetSchedule describes it; the error says why this process cannot fire it.
    pub fn from_schedule(expression: &str, timezone: &str, input: &str, delete_after: bool) -> Result<Self, String> {
        let timing = if expression.starts_with("at(") {
            Timing::At(parse_at_expression(expression, timezone)?)
        } else if expression.starts_with("cron(") {
            let cron = Cron::from_eventbridge(expression).map_err(|e| e.to_string())?;
            Timing::Cron(cron, jiff::tz::TimeZone::get(timezone).map_err(|e| format!("the time zone {timezone:?}: {e}"))?)
        } else {
            return Err(format!("{expression:?} is neither at() nor cron(): not one of Herald's schedules"));
        };
        if let Err(e) = serde_json::from_str::<PlatformMessage>(&scheduled_input(input, herald::domain::now())) {
            return Err(format!("its input is not a platform message ({e}): {input:.200}"));
        }
        Ok(Self { timing, input: input.to_string(), delete_after })
    }
}

pub struct LocalScheduler {
    queue: Arc<dyn Queue>,
    tasks: Mutex<HashMap<String, AbortHandle>>,
    /// `--backend aws`: where the schedules are kept.
    durable: Option<EventBridgeScheduler>,
}

impl LocalScheduler {
    /// Schedules in this process only (the embedded backend).
    pub fn new(queue: Arc<dyn Queue>) -> Self {
        Self { queue, tasks: Mutex::default(), durable: None }
    }

    /// Schedules kept by `durable` (EventBridge Scheduler, moto's on this machine) and fired here
    /// onto `queue`, the platform queue `durable` targets.
    pub fn durable(queue: Arc<dyn Queue>, durable: EventBridgeScheduler) -> Self {
        Self { queue, tasks: Mutex::default(), durable: Some(durable) }
    }

    /// The schedule group the schedules are kept in (`--backend aws`).
    pub fn group(&self) -> Option<&str> {
        self.durable.as_ref().map(|d| d.group.as_str())
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

    /// Fires `armed` under `name` from now on, replacing the schedule of that name.
    pub fn arm(&self, name: &str, armed: Armed) {
        let (queue, label) = (self.queue.clone(), name.to_string());
        let delete = if armed.delete_after { self.durable.clone() } else { None };
        let Armed { timing, input, .. } = armed;
        let task = tokio::spawn(async move {
            match timing {
                Timing::At(at) => {
                    tokio::time::sleep(until(at)).await;
                    // Not sent: the schedule stays, and the next start fires it.
                    if send(&*queue, &label, &scheduled_input(&input, at)).await
                        && let Some(durable) = delete
                        && let Err(e) = durable.cancel(&label).await
                    {
                        tracing::warn!(schedule = label, error = %e, "a fired one-time schedule could not be deleted: the next start fires it again");
                    }
                }
                Timing::Cron(cron, tz) => {
                    let mut after = jiff::Timestamp::now();
                    while let Some(next) = cron.next_after(&tz, after) {
                        let Ok(at) = time::OffsetDateTime::from_unix_timestamp(next.as_second()) else { return };
                        tokio::time::sleep(until(at)).await;
                        send(&*queue, &label, &scheduled_input(&input, at)).await;
                        after = next;
                    }
                }
            }
        });
        self.replace(name, task);
    }
}

impl Drop for LocalScheduler {
    /// The server is gone: so are its tasks (kept schedules stay for the next start).
    fn drop(&mut self) {
        for task in self.tasks.lock().unwrap_or_else(|p| p.into_inner()).values() {
            task.abort();
        }
    }
}

/// Makes the schedule group when it is missing (`--create-resources`), else checks that it is
/// there: herald-local does not start without it.
pub async fn ensure_group(durable: &EventBridgeScheduler, create: bool) -> Result<(), String> {
    let group = &durable.group;
    match durable.client.get_schedule_group().name(group).send().await {
        Ok(_) => Ok(()),
        Err(e) if e.code() == Some("ResourceNotFoundException") && create => {
            match durable.client.create_schedule_group().name(group).send().await {
                Ok(_) => Ok(()),
                // Made meanwhile by another herald-local.
                Err(e) if e.code() == Some("ConflictException") => Ok(()),
                Err(e) => Err(format!("could not create the schedule group {group}: {}", classify(&e))),
            }
        }
        Err(e) if e.code() == Some("ResourceNotFoundException") => {
            Err(format!("the schedule group {group} does not exist: start with --create-resources, or set HERALD_SCHEDULE_GROUP"))
        }
        Err(e) => Err(format!("could not read the schedule group {group}: {}", classify(&e))),
    }
}

/// At start, on `--backend aws`: arms every enabled schedule of the group that targets this
/// platform queue. EventBridge Scheduler unreachable: logged, and tried again (1 s, doubling to
/// 30 s) until it answers, while herald-local serves; the pass holds the scheduler weakly and
/// ends with it. A schedule this process cannot fire (not Herald's expression, an input that is
/// not a platform message) is logged and skipped.
pub async fn rearm(scheduler: Weak<LocalScheduler>) {
    let mut wait = Duration::from_secs(1);
    loop {
        let Some(s) = scheduler.upgrade() else { return };
        let Some(durable) = s.durable.clone() else { return };
        match rearm_once(&s, &durable).await {
            Ok((armed, skipped)) => {
                tracing::info!(group = durable.group, armed, skipped, "kept schedules armed again");
                return;
            }
            Err(e) => tracing::error!(
                group = durable.group,
                error = %e,
                retry_in = ?wait,
                "could not read the kept schedules to arm them again (is EventBridge Scheduler, moto on this machine, up?): retrying"
            ),
        }
        drop(s);
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(Duration::from_secs(30));
    }
}

/// One pass of [`rearm`]: `(armed, skipped)`.
async fn rearm_once(scheduler: &LocalScheduler, durable: &EventBridgeScheduler) -> Result<(usize, usize), ScheduleError> {
    let (mut armed, mut skipped) = (0, 0);
    let mut token: Option<String> = None;
    loop {
        let page = durable
            .client
            .list_schedules()
            .group_name(&durable.group)
            .state(ScheduleState::Enabled)
            .set_next_token(token.take())
            .send()
            .await
            .map_err(|e| classify(&e))?;
        for summary in page.schedules() {
            let Some(name) = summary.name() else { continue };
            // Another herald-local's (its own platform queue) in a shared group.
            if summary.target().map(|t| t.arn()) != Some(durable.queue_arn.as_str()) {
                continue;
            }
            let schedule = match durable.client.get_schedule().name(name).group_name(&durable.group).send().await {
                Ok(s) => s,
                // Fired (and deleted) or cancelled since the listing.
                Err(e) if e.code() == Some("ResourceNotFoundException") => continue,
                Err(e) => return Err(classify(&e)),
            };
            let expression = schedule.schedule_expression().unwrap_or_default();
            let timezone = schedule.schedule_expression_timezone().unwrap_or("UTC");
            let input = schedule.target().and_then(|t| t.input()).unwrap_or_default();
            let delete_after = schedule.action_after_completion() == Some(&ActionAfterCompletion::Delete);
            match Armed::from_schedule(expression, timezone, input, delete_after) {
                // Past, and kept after it ran: it has fired already.
                Ok(Armed { timing: Timing::At(at), delete_after: false, .. }) if at <= herald::domain::now() => skipped += 1,
                Ok(a) => {
                    scheduler.arm(name, a);
                    armed += 1;
                }
                Err(reason) => {
                    tracing::warn!(
                        schedule = name,
                        group = durable.group,
                        reason,
                        "a kept schedule is skipped: herald-local cannot fire it"
                    );
                    skipped += 1;
                }
            }
        }
        match page.next_token() {
            Some(next) if !next.is_empty() => token = Some(next.to_string()),
            _ => return Ok((armed, skipped)),
        }
    }
}

/// How long until `at`, from now (zero when it is past).
fn until(at: time::OffsetDateTime) -> Duration {
    let secs = (at - herald::domain::now()).as_seconds_f64();
    Duration::from_secs_f64(secs.max(0.0))
}

/// Puts `body` on the queue, trying a few times; whether it went.
async fn send(queue: &dyn Queue, name: &str, body: &str) -> bool {
    for attempt in 0..5u32 {
        match queue.send(body).await {
            Ok(_) => return true,
            Err(e) => {
                tracing::warn!(schedule = name, attempt, error = %e, "the platform queue refused a scheduled message");
                tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
            }
        }
    }
    tracing::error!(schedule = name, "a scheduled message was not sent");
    false
}

#[async_trait]
impl Scheduler for LocalScheduler {
    async fn schedule_at(&self, name: &str, at: time::OffsetDateTime, message: &PlatformMessage) -> Result<(), ScheduleError> {
        let kept = match &self.durable {
            Some(durable) => durable.keep_at(name, at, message).await?,
            None => Kept::Schedule,
        };
        // A delayed message is the queue's to deliver.
        if kept == Kept::Schedule {
            self.arm(name, Armed { timing: Timing::At(at), input: message.to_json(), delete_after: self.durable.is_some() });
        }
        Ok(())
    }

    async fn schedule_cron(&self, name: &str, cron: &str, timezone: &str, mailing_id: &str) -> Result<(), ScheduleError> {
        let timing = Timing::cron(cron, timezone).map_err(ScheduleError::Refused)?;
        if let Some(durable) = &self.durable {
            durable.schedule_cron(name, cron, timezone, mailing_id).await?;
        }
        self.arm(name, Armed { timing, input: cron_input(mailing_id), delete_after: false });
        Ok(())
    }

    async fn cancel(&self, name: &str) -> Result<(), ScheduleError> {
        if let Some(durable) = &self.durable {
            durable.cancel(name).await?;
        }
        if let Some(task) = self.tasks.lock().unwrap_or_else(|p| p.into_inner()).remove(name) {
            task.abort();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use herald::platform::schedule::Recorded;
    use herald::platform::schedule::eventbridge::at_expression;

    use super::*;

    #[test]
    fn kept_schedules_are_read_back() {
        let release = PlatformMessage::Release { notification_id: "n1".into() }.to_json();
        let at = time::macros::datetime!(2030-01-01 09:00:00 UTC);
        let a = Armed::from_schedule(&at_expression(at), "UTC", &release, true).unwrap();
        assert!(matches!(a.timing, Timing::At(t) if t == at) && a.delete_after, "{a:?}");
        let c = Armed::from_schedule("cron(30 9 ? * 2-6 *)", "Europe/Berlin", &cron_input("m1"), false).unwrap();
        let Timing::Cron(cron, tz) = &c.timing else { panic!("{c:?}") };
        assert_eq!((cron, tz.iana_name()), (&Cron::parse("30 9 * * MON-FRI").unwrap(), Some("Europe/Berlin")));
        for (expression, zone, input, why) in [
            ("rate(5 minutes)", "UTC", release.as_str(), "neither"),
            ("cron(0 9 L * ? *)", "UTC", release.as_str(), "day of month"),
            ("at(2030-01-01T09:00:00)", "Europe/Atlantis", release.as_str(), "time zone"),
            ("at(2030-01-01T09:00:00)", "UTC", r#"{"type":"launch","rocket":1}"#, "not a platform message"),
            ("at(2030-01-01T09:00:00)", "UTC", "", "not a platform message"),
        ] {
            let e = Armed::from_schedule(expression, zone, input, true).unwrap_err();
            assert!(e.contains(why), "{expression} {input}: {e}");
        }
    }

    /// Over an EventBridge Scheduler that does not answer (nothing listens on the port).
    fn unreachable() -> EventBridgeScheduler {
        let creds = aws_sdk_scheduler::config::Credentials::new("test", "test", None, None, "static");
        let retry = aws_sdk_scheduler::config::retry::RetryConfig::disabled();
        let config = aws_sdk_scheduler::Config::builder()
            .behavior_version(aws_sdk_scheduler::config::BehaviorVersion::latest())
            .region(aws_sdk_scheduler::config::Region::new("us-east-1"))
            .credentials_provider(creds.clone())
            .endpoint_url("http://127.0.0.1:1")
            .retry_config(retry.clone())
            .build();
        let sqs = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_sqs::config::Credentials::new("test", "test", None, None, "static"))
            .endpoint_url("http://127.0.0.1:1")
            .retry_config(retry)
            .build();
        EventBridgeScheduler {
            client: aws_sdk_scheduler::Client::from_conf(config),
            group: "herald-platform".into(),
            role_arn: crate::DEFAULT_SCHEDULER_ROLE_ARN.into(),
            queue_arn: "arn:aws:sqs:us-east-1:123456789012:herald-platform".into(),
            queue: herald::queue::SqsQueue::new(aws_sdk_sqs::Client::from_conf(sqs), "http://127.0.0.1:1/q"),
            max_delay_secs: 0,
        }
    }

    #[tokio::test]
    async fn a_scheduler_that_does_not_answer_stops_the_start_or_is_tried_again() {
        let durable = unreachable();
        for create in [false, true] {
            let e = ensure_group(&durable, create).await.unwrap_err();
            assert!(e.starts_with("could not read the schedule group herald-platform: the scheduler is unavailable"), "{e}");
        }
        // Arming again keeps trying while the scheduler lives, and stops with it.
        let s = Arc::new(LocalScheduler::durable(Arc::new(Recorded::default()), durable));
        let pass = tokio::spawn(rearm(Arc::downgrade(&s)));
        tokio::time::sleep(Duration::from_millis(1500)).await;
        assert!(!pass.is_finished(), "it gave up");
        drop(s);
        tokio::time::timeout(Duration::from_secs(35), pass).await.expect("it ends with the scheduler").unwrap();
        // A schedule refused by the scheduler is an error for the handler, not a crash.
        let s = LocalScheduler::durable(Arc::new(Recorded::default()), unreachable());
        let later = herald::domain::now() + time::Duration::hours(1);
        let fire = PlatformMessage::Fire { mailing_id: "m1".into(), at: None };
        assert!(matches!(s.schedule_at("fire-m1", later, &fire).await, Err(ScheduleError::Unavailable(_))));
        assert_eq!(s.pending(), 0, "nothing is fired that was not kept");
    }

    #[tokio::test]
    async fn fires_put_the_input_on_the_queue_with_the_runs_time() {
        let queue = Arc::new(Recorded::default());
        let s = LocalScheduler::new(queue.clone());
        let past = time::macros::datetime!(2020-01-01 00:00:00 UTC);
        let input = format!(r#"{{"type":"fire","mailing_id":"m1","at":"{}"}}"#, herald::platform::schedule::eventbridge::SCHEDULED_TIME);
        s.arm("fire-m1", Armed { timing: Timing::At(past), input, delete_after: false });
        let release = PlatformMessage::Release { notification_id: "n1".into() };
        s.schedule_at("release-n1", herald::domain::now() + time::Duration::milliseconds(100), &release).await.unwrap();
        s.schedule_at("release-n2", herald::domain::now() + time::Duration::milliseconds(100), &release).await.unwrap();
        s.cancel("release-n2").await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        assert_eq!(
            queue.calls(),
            [r#"send {"type":"fire","mailing_id":"m1","at":"2020-01-01T00:00:00Z"}"#.to_string(), format!("send {}", release.to_json())]
        );
        assert_eq!(s.pending(), 0);
        assert!(s.schedule_cron("cron-m1", "0 25 * * *", "UTC", "m1").await.is_err(), "a bad cron is refused");
    }
}
