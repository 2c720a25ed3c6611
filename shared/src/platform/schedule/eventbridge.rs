//! The cloud's [`Scheduler`]: a delay of up to 15 minutes is SQS `DelaySeconds` on the platform
//! queue; a later one an EventBridge Scheduler one-time schedule (`at(...)` in UTC, deleted after
//! it fires); a recurrence a `cron(...)` schedule in the mailing's `ScheduleExpressionTimezone`.
//! Both schedules live in Herald's schedule group and send to the platform queue with the role
//! Scheduler assumes (the template's `PlatformSchedulerRole`, allowed `sqs:SendMessage` there only).
//!
//! An SQS-delayed message cannot be taken back: cancelling one leaves it to the worker, which
//! finds its mailing cancelled and sends nothing.
//!
//! A delay is rounded up to the whole second (SQS's and `at()`'s unit): a fire never comes before
//! its time.

use async_trait::async_trait;
use aws_sdk_scheduler::error::ProvideErrorMetadata;
use aws_sdk_scheduler::types::{ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, Target};

use super::{PlatformMessage, ScheduleError, Scheduler};
use crate::platform::cron::Cron;
use crate::queue::SqsQueue;

/// SQS's longest `DelaySeconds`.
pub const MAX_DELAY_SECS: i64 = 15 * 60;

/// What EventBridge Scheduler replaces, in a target's input, with the time the run was scheduled for.
pub const SCHEDULED_TIME: &str = "<aws.scheduler.scheduled-time>";

/// How a one-time fire was kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kept {
    /// On the platform queue, with SQS `DelaySeconds`.
    Delayed,
    /// As an `at()` schedule, deleted once it has fired.
    Schedule,
}

/// EventBridge Scheduler and the platform queue.
#[derive(Debug, Clone)]
pub struct EventBridgeScheduler {
    pub client: aws_sdk_scheduler::Client,
    /// The schedule group (`HERALD_SCHEDULE_GROUP`).
    pub group: String,
    /// The role Scheduler assumes to send to the queue (`HERALD_SCHEDULER_ROLE_ARN`).
    pub role_arn: String,
    /// The platform queue's ARN (`HERALD_PLATFORM_QUEUE_ARN`) and the queue itself.
    pub queue_arn: String,
    pub queue: SqsQueue,
    /// A fire at most this many seconds ahead rides SQS `DelaySeconds`, a later one is an `at()`
    /// schedule: [`MAX_DELAY_SECS`] in the cloud; herald-local sets 0 (it fires its `at()`
    /// schedules itself, to the second, where a delayed SQS message comes in whole seconds).
    pub max_delay_secs: i64,
}

/// A Scheduler error as a [`ScheduleError`]: a refusal of the request, or the service unavailable
/// (with the whole chain of causes when no service answered, e.g. the connection was refused).
pub fn classify<E: ProvideErrorMetadata + std::error::Error>(e: &E) -> ScheduleError {
    let text = match e.code() {
        Some(code) => format!("{code}: {}", e.message().unwrap_or("no message")),
        None => aws_sdk_scheduler::error::DisplayErrorContext(e).to_string(),
    };
    match e.code() {
        Some("ValidationException" | "ServiceQuotaExceededException") => ScheduleError::Refused(text),
        _ => ScheduleError::Unavailable(text),
    }
}

/// Whole seconds from now until `at`, rounded up (negative when it is past).
fn seconds_until(at: time::OffsetDateTime) -> i64 {
    let d = at - crate::domain::now();
    d.whole_seconds() + i64::from(d.subsec_nanoseconds() > 0)
}

/// The `at()` expression of an instant, in UTC, rounded up to the second (`at(2026-12-07T10:00:00)`).
pub fn at_expression(at: time::OffsetDateTime) -> String {
    let mut t = at.to_offset(time::UtcOffset::UTC);
    if t.nanosecond() > 0 {
        t = t.replace_nanosecond(0).unwrap_or(t) + time::Duration::SECOND;
    }
    format!("at({:04}-{:02}-{:02}T{:02}:{:02}:{:02})", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second())
}

/// The instant of an `at()` expression (`at(2026-12-07T10:00:00)`), a local time in `timezone`
/// (a schedule's `ScheduleExpressionTimezone`; Herald's are UTC).
pub fn parse_at_expression(expression: &str, timezone: &str) -> Result<time::OffsetDateTime, String> {
    let text = expression
        .strip_prefix("at(")
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("{expression:?} is not an at(yyyy-mm-ddThh:mm:ss) expression"))?;
    let civil = jiff::civil::DateTime::strptime("%Y-%m-%dT%H:%M:%S", text)
        .map_err(|e| format!("{expression:?} is not an at(yyyy-mm-ddThh:mm:ss) expression: {e}"))?;
    let tz = jiff::tz::TimeZone::get(timezone).map_err(|e| format!("the time zone {timezone:?}: {e}"))?;
    let at = civil.to_zoned(tz).map_err(|e| format!("{expression:?} in {timezone}: {e}"))?;
    time::OffsetDateTime::from_unix_timestamp(at.timestamp().as_second()).map_err(|e| format!("{expression:?}: {e}"))
}

/// What a recurring schedule sends: a fire with EventBridge's own scheduled time.
pub fn cron_input(mailing_id: &str) -> String {
    let m = PlatformMessage::Fire { mailing_id: mailing_id.to_string(), at: Some(SCHEDULED_TIME.into()) };
    m.to_json()
}

/// A target's input as EventBridge Scheduler delivers it for a run scheduled at `at`:
/// [`SCHEDULED_TIME`] replaced by that time (RFC 3339, UTC).
pub fn scheduled_input(input: &str, at: time::OffsetDateTime) -> String {
    input.replace(SCHEDULED_TIME, &crate::domain::rfc3339(at.to_offset(time::UtcOffset::UTC)))
}

impl EventBridgeScheduler {
    /// From the function's environment: `HERALD_PLATFORM_QUEUE_URL`, `HERALD_PLATFORM_QUEUE_ARN`,
    /// `HERALD_SCHEDULE_GROUP`, `HERALD_SCHEDULER_ROLE_ARN` (the template sets them).
    pub fn from_lookup(sdk: &aws_config::SdkConfig, get: &impl Fn(&str) -> Option<String>) -> Result<Self, crate::config::ConfigError> {
        let required = |k: &'static str| crate::config::required(get, k);
        Ok(Self {
            client: aws_sdk_scheduler::Client::new(sdk),
            group: required("HERALD_SCHEDULE_GROUP")?,
            role_arn: required("HERALD_SCHEDULER_ROLE_ARN")?,
            queue_arn: required("HERALD_PLATFORM_QUEUE_ARN")?,
            queue: SqsQueue::new(aws_sdk_sqs::Client::new(sdk), required("HERALD_PLATFORM_QUEUE_URL")?),
            max_delay_secs: MAX_DELAY_SECS,
        })
    }

    /// A fire at `at` of `message` under `name`: on the queue with a delay, or as an `at()`
    /// schedule; which one it became.
    pub async fn keep_at(&self, name: &str, at: time::OffsetDateTime, message: &PlatformMessage) -> Result<Kept, ScheduleError> {
        let delay = seconds_until(at);
        if delay <= self.max_delay_secs.min(MAX_DELAY_SECS) {
            let seconds = i32::try_from(delay.max(0)).unwrap_or(0);
            return self
                .queue
                .send_delayed(&message.to_json(), seconds)
                .await
                .map(|_| Kept::Delayed)
                .map_err(|e| ScheduleError::Unavailable(e.to_string()));
        }
        self.put(name, at_expression(at), "UTC", message.to_json(), Some(ActionAfterCompletion::Delete)).await.map(|()| Kept::Schedule)
    }

    fn target(&self, input: String) -> Result<Target, ScheduleError> {
        Target::builder()
            .arn(&self.queue_arn)
            .role_arn(&self.role_arn)
            .input(input)
            .build()
            .map_err(|e| ScheduleError::Refused(e.to_string()))
    }

    fn window() -> Result<FlexibleTimeWindow, ScheduleError> {
        FlexibleTimeWindow::builder().mode(FlexibleTimeWindowMode::Off).build().map_err(|e| ScheduleError::Refused(e.to_string()))
    }

    /// Creates the schedule, or replaces the one of that name.
    async fn put(
        &self,
        name: &str,
        expression: String,
        timezone: &str,
        input: String,
        after: Option<ActionAfterCompletion>,
    ) -> Result<(), ScheduleError> {
        let created = self
            .client
            .create_schedule()
            .name(name)
            .group_name(&self.group)
            .schedule_expression(&expression)
            .schedule_expression_timezone(timezone)
            .flexible_time_window(Self::window()?)
            .target(self.target(input.clone())?)
            .set_action_after_completion(after.clone())
            .send()
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ConflictException") => self
                .client
                .update_schedule()
                .name(name)
                .group_name(&self.group)
                .schedule_expression(expression)
                .schedule_expression_timezone(timezone)
                .flexible_time_window(Self::window()?)
                .target(self.target(input)?)
                .set_action_after_completion(after)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| classify(&e)),
            Err(e) => Err(classify(&e)),
        }
    }
}

#[async_trait]
impl Scheduler for EventBridgeScheduler {
    async fn schedule_at(&self, name: &str, at: time::OffsetDateTime, message: &PlatformMessage) -> Result<(), ScheduleError> {
        self.keep_at(name, at, message).await.map(|_| ())
    }

    async fn schedule_cron(&self, name: &str, cron: &str, timezone: &str, mailing_id: &str) -> Result<(), ScheduleError> {
        let expression = Cron::parse(cron).and_then(|c| c.to_eventbridge()).map_err(|e| ScheduleError::Refused(e.to_string()))?;
        self.put(name, expression, timezone, cron_input(mailing_id), None).await
    }

    async fn cancel(&self, name: &str) -> Result<(), ScheduleError> {
        match self.client.delete_schedule().name(name).group_name(&self.group).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.code() == Some("ResourceNotFoundException") => Ok(()),
            Err(e) => Err(classify(&e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_scheduler::config::{BehaviorVersion, Credentials, Region};
    use aws_smithy_http_client::test_util::{ReplayEvent, StaticReplayClient};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::retry::RetryConfig;
    use serde_json::{Value, json};

    use super::*;

    #[test]
    fn expressions() {
        let at = time::macros::datetime!(2026-12-07 11:05:09 +01:00);
        assert_eq!(at_expression(at), "at(2026-12-07T10:05:09)");
        // Rounded up: never before the time asked for.
        assert_eq!(at_expression(time::macros::datetime!(2026-12-07 10:05:09.001 UTC)), "at(2026-12-07T10:05:10)");
        let input: serde_json::Value = serde_json::from_str(&cron_input("m1")).unwrap();
        assert_eq!(input, serde_json::json!({"type":"fire","mailing_id":"m1","at":"<aws.scheduler.scheduled-time>"}));
    }

    #[test]
    fn at_expressions_read_back_in_their_zone() {
        let at = time::macros::datetime!(2026-12-07 10:05:09 UTC);
        assert_eq!(parse_at_expression(&at_expression(at), "UTC").unwrap(), at);
        // A local time in the schedule's zone (Berlin is UTC+1 in December).
        assert_eq!(parse_at_expression("at(2026-12-07T11:05:09)", "Europe/Berlin").unwrap(), at);
        for (bad, zone) in [
            ("at(2026-12-07)", "UTC"),
            ("at(2026-12-07T10:05)", "UTC"),
            ("at(2026-12-07T10:05:09Z)", "UTC"),
            ("at(tomorrow)", "UTC"),
            ("cron(0 9 * * ? *)", "UTC"),
            ("rate(5 minutes)", "UTC"),
            ("at(2026-12-07T10:05:09", "UTC"),
            ("at(2026-12-07T10:05:09)", "Europe/Atlantis"),
        ] {
            assert!(parse_at_expression(bad, zone).is_err(), "{bad} in {zone}");
        }
    }

    #[test]
    fn the_scheduled_time_is_put_in_the_input() {
        let at = time::macros::datetime!(2026-12-07 11:00:00 +01:00);
        let input = scheduled_input(&cron_input("m1"), at);
        let fire: PlatformMessage = serde_json::from_str(&input).unwrap();
        assert_eq!(fire, PlatformMessage::Fire { mailing_id: "m1".into(), at: Some("2026-12-07T10:00:00Z".into()) });
        // An input without the placeholder is delivered as it is.
        let release = PlatformMessage::Release { notification_id: "n".into() }.to_json();
        assert_eq!(scheduled_input(&release, at), release);
    }

    /// Answers each request in turn with `(status, error type, body)`.
    fn replay(answers: &[(u16, &str, &str)]) -> StaticReplayClient {
        StaticReplayClient::new(
            answers
                .iter()
                .map(|(status, error, body)| {
                    let request = http::Request::builder().uri("http://aws.test/").body(SdkBody::empty()).unwrap();
                    let mut response = http::Response::builder().status(*status).header("content-type", "application/json");
                    if !error.is_empty() {
                        response = response.header("x-amzn-errortype", *error);
                    }
                    ReplayEvent::new(request, response.body(SdkBody::from(body.to_string())).unwrap())
                })
                .collect(),
        )
    }

    fn scheduler(eb: StaticReplayClient, sqs: StaticReplayClient) -> EventBridgeScheduler {
        let creds = Credentials::new("test", "test", None, None, "static");
        let config = aws_sdk_scheduler::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(creds.clone())
            .endpoint_url("http://aws.test")
            .retry_config(RetryConfig::disabled())
            .http_client(eb);
        let sqs_config = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .region(aws_sdk_sqs::config::Region::new("us-east-1"))
            .credentials_provider(creds)
            .endpoint_url("http://aws.test")
            .retry_config(RetryConfig::disabled())
            .http_client(sqs);
        EventBridgeScheduler {
            client: aws_sdk_scheduler::Client::from_conf(config.build()),
            group: "herald-platform".into(),
            role_arn: "arn:aws:iam::1:role/scheduler".into(),
            queue_arn: "arn:aws:sqs:us-east-1:1:herald-platform".into(),
            queue: SqsQueue::new(aws_sdk_sqs::Client::from_conf(sqs_config.build()), "http://aws.test/1/herald-platform"),
            max_delay_secs: MAX_DELAY_SECS,
        }
    }

    fn bodies(replay: &StaticReplayClient) -> Vec<Value> {
        replay.actual_requests().map(|r| serde_json::from_slice(r.body().bytes().unwrap_or(b"{}")).unwrap_or(Value::Null)).collect()
    }

    const CREATED: (u16, &str, &str) = (200, "", r#"{"ScheduleArn":"arn:aws:scheduler:us-east-1:1:schedule/herald-platform/x"}"#);

    #[tokio::test]
    async fn within_15_minutes_rides_sqs_later_is_a_one_time_schedule() {
        let (eb, sqs) = (replay(&[CREATED]), replay(&[(200, "", r#"{"MessageId":"m"}"#)]));
        let s = scheduler(eb.clone(), sqs.clone());
        let fire = PlatformMessage::Fire { mailing_id: "m1".into(), at: None };
        s.schedule_at("fire-m1", crate::domain::now() + time::Duration::minutes(10), &fire).await.unwrap();
        let sent = bodies(&sqs);
        assert_eq!(sent.len(), 1);
        let delay = sent[0]["DelaySeconds"].as_i64().unwrap();
        assert!((598..=600).contains(&delay), "{sent:?}");
        assert_eq!(sent[0]["MessageBody"], fire.to_json());

        let at = time::macros::datetime!(2030-01-01 09:00:00 UTC);
        s.schedule_at("fire-m1", at, &fire).await.unwrap();
        let created = bodies(&eb);
        assert_eq!(eb.actual_requests().next().unwrap().uri(), "http://aws.test/schedules/fire-m1");
        assert_eq!(created[0]["ScheduleExpression"], "at(2030-01-01T09:00:00)");
        assert_eq!(created[0]["ScheduleExpressionTimezone"], "UTC");
        assert_eq!(created[0]["ActionAfterCompletion"], "DELETE");
        assert_eq!(created[0]["GroupName"], "herald-platform");
        assert_eq!(created[0]["FlexibleTimeWindow"], json!({"Mode": "OFF"}));
        assert_eq!(
            (&created[0]["Target"]["Arn"], &created[0]["Target"]["RoleArn"], &created[0]["Target"]["Input"]),
            (&json!("arn:aws:sqs:us-east-1:1:herald-platform"), &json!("arn:aws:iam::1:role/scheduler"), &json!(fire.to_json()))
        );
    }

    #[tokio::test]
    async fn with_no_delay_bound_every_later_fire_is_a_schedule_and_a_past_one_rides_sqs_at_once() {
        let (eb, sqs) = (replay(&[CREATED]), replay(&[(200, "", r#"{"MessageId":"m"}"#)]));
        let s = EventBridgeScheduler { max_delay_secs: 0, ..scheduler(eb.clone(), sqs.clone()) };
        let fire = PlatformMessage::Fire { mailing_id: "m1".into(), at: None };
        let soon = crate::domain::now() + time::Duration::milliseconds(1500);
        assert_eq!(s.keep_at("fire-m1", soon, &fire).await.unwrap(), Kept::Schedule);
        assert_eq!(bodies(&eb)[0]["ScheduleExpression"], at_expression(soon));
        let past = crate::domain::now() - time::Duration::minutes(1);
        assert_eq!(s.keep_at("fire-m1", past, &fire).await.unwrap(), Kept::Delayed);
        assert_eq!(bodies(&sqs)[0]["DelaySeconds"], 0);
    }

    #[tokio::test]
    async fn a_recurrence_is_a_cron_schedule_in_its_zone_replaced_when_it_exists() {
        let conflict = (409, "ConflictException", r#"{"Message":"exists"}"#);
        let eb = replay(&[conflict, CREATED]);
        let s = scheduler(eb.clone(), replay(&[]));
        s.schedule_cron("cron-m1", "30 9 * * MON-FRI", "Europe/Berlin", "m1").await.unwrap();
        let requests: Vec<String> = eb.actual_requests().map(|r| r.method().to_string()).collect();
        assert_eq!(requests, ["POST", "PUT"], "created, then updated once it exists");
        for body in bodies(&eb) {
            assert_eq!(body["ScheduleExpression"], "cron(30 9 ? * 2-6 *)");
            assert_eq!(body["ScheduleExpressionTimezone"], "Europe/Berlin");
            assert!(body.get("ActionAfterCompletion").is_none(), "{body}");
            assert_eq!(body["Target"]["Input"], cron_input("m1"));
        }
        // What EventBridge cannot run is refused before any request.
        let err = s.schedule_cron("cron-m2", "0 9 1 * MON", "UTC", "m2").await.unwrap_err();
        assert!(matches!(err, ScheduleError::Refused(_)), "{err:?}");
    }

    #[tokio::test]
    async fn cancelling_an_unknown_schedule_is_no_error() {
        let eb = replay(&[(404, "ResourceNotFoundException", r#"{"Message":"gone"}"#), (500, "InternalServerException", "{}")]);
        let s = scheduler(eb.clone(), replay(&[]));
        s.cancel("fire-m1").await.unwrap();
        assert_eq!(eb.actual_requests().next().unwrap().method(), "DELETE");
        assert!(matches!(s.cancel("fire-m1").await, Err(ScheduleError::Unavailable(_))));
    }
}
