//! The cloud's [`Scheduler`]: a delay of up to 15 minutes is SQS `DelaySeconds` on the platform
//! queue; a later one an EventBridge Scheduler one-time schedule (`at(...)` in UTC, deleted after
//! it fires); a recurrence a `cron(...)` schedule in the mailing's `ScheduleExpressionTimezone`.
//! Both schedules live in Herald's schedule group and send to the platform queue with the role
//! Scheduler assumes (the template's `PlatformSchedulerRole`, allowed `sqs:SendMessage` there only).
//!
//! An SQS-delayed message cannot be taken back: cancelling one leaves it to the worker, which
//! finds its mailing cancelled and sends nothing.

use async_trait::async_trait;
use aws_sdk_scheduler::error::ProvideErrorMetadata;
use aws_sdk_scheduler::types::{ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, Target};

use super::{PlatformMessage, ScheduleError, Scheduler};
use crate::platform::cron::Cron;
use crate::queue::SqsQueue;

/// SQS's longest `DelaySeconds`.
pub const MAX_DELAY_SECS: i64 = 15 * 60;

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
}

fn classify<E: ProvideErrorMetadata + std::fmt::Debug>(e: &E) -> ScheduleError {
    let text = format!("{}: {}", e.code().unwrap_or("error"), e.message().unwrap_or("no message"));
    match e.code() {
        Some("ValidationException" | "ServiceQuotaExceededException") => ScheduleError::Refused(text),
        _ => ScheduleError::Unavailable(text),
    }
}

/// The `at()` expression of an instant, in UTC (`at(2026-12-07T10:00:00)`).
pub fn at_expression(at: time::OffsetDateTime) -> String {
    let t = at.to_offset(time::UtcOffset::UTC);
    format!("at({:04}-{:02}-{:02}T{:02}:{:02}:{:02})", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second())
}

/// What a recurring schedule sends: a fire with EventBridge's own scheduled time.
pub fn cron_input(mailing_id: &str) -> String {
    let m = PlatformMessage::Fire { mailing_id: mailing_id.to_string(), at: Some("<aws.scheduler.scheduled-time>".into()) };
    m.to_json()
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
        })
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
        let delay = (at - crate::domain::now()).whole_seconds();
        if delay <= MAX_DELAY_SECS {
            let seconds = i32::try_from(delay.max(0)).unwrap_or(0);
            return self
                .queue
                .send_delayed(&message.to_json(), seconds)
                .await
                .map(|_| ())
                .map_err(|e| ScheduleError::Unavailable(e.to_string()));
        }
        self.put(name, at_expression(at), "UTC", message.to_json(), Some(ActionAfterCompletion::Delete)).await
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
    use super::*;

    #[test]
    fn expressions() {
        let at = time::macros::datetime!(2026-12-07 11:05:09 +01:00);
        assert_eq!(at_expression(at), "at(2026-12-07T10:05:09)");
        let input: serde_json::Value = serde_json::from_str(&cron_input("m1")).unwrap();
        assert_eq!(input, serde_json::json!({"type":"fire","mailing_id":"m1","at":"<aws.scheduler.scheduled-time>"}));
    }
}
