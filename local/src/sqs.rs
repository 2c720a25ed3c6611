//! The event source mapping on `--backend aws`: the real SQS queue `herald-notifications`
//! (created with its dead-letter queue and redrive policy by `--create-resources`), long-polled
//! in batches of 10 into `dispatch`; records that fail stay on the queue and come back after the
//! visibility timeout, and SQS moves them to the dead-letter queue after 5 receives.

use std::time::Duration;

use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use aws_sdk_sqs::Client;
use aws_sdk_sqs::types::{DeleteMessageBatchRequestEntry, MessageSystemAttributeName, QueueAttributeName};

use crate::queue::{BATCH_SIZE, MAX_RECEIVES};

#[derive(Debug, thiserror::Error)]
#[error("SQS: {0}")]
pub struct SqsSetupError(String);

fn err(e: impl std::error::Error) -> SqsSetupError {
    SqsSetupError(aws_sdk_sqs::error::DisplayErrorContext(e).to_string())
}

/// The queue URLs: `(queue, dead-letter queue)`.
pub async fn queue_urls(client: &Client, name: &str, create: bool, visibility: Duration) -> Result<(String, String), SqsSetupError> {
    let dlq_name = format!("{name}-dlq");
    if !create {
        let url = |n: String| async move {
            client
                .get_queue_url()
                .queue_name(&n)
                .send()
                .await
                .map_err(err)?
                .queue_url
                .ok_or_else(|| SqsSetupError(format!("no URL for {n}")))
        };
        return Ok((url(name.to_string()).await?, url(dlq_name).await?));
    }
    let dlq = client.create_queue().queue_name(&dlq_name).send().await.map_err(err)?.queue_url.unwrap_or_default();
    let attributes =
        client.get_queue_attributes().queue_url(&dlq).attribute_names(QueueAttributeName::QueueArn).send().await.map_err(err)?;
    let arn = attributes.attributes().and_then(|a| a.get(&QueueAttributeName::QueueArn)).cloned().unwrap_or_default();
    let redrive = serde_json::json!({"deadLetterTargetArn": arn, "maxReceiveCount": MAX_RECEIVES.to_string()}).to_string();
    let queue = client
        .create_queue()
        .queue_name(name)
        .attributes(QueueAttributeName::RedrivePolicy, redrive)
        .attributes(QueueAttributeName::VisibilityTimeout, visibility.as_secs().max(1).to_string())
        .send()
        .await
        .map_err(err)?
        .queue_url
        .unwrap_or_default();
    Ok((queue, dlq))
}

/// A queue's ARN (what EventBridge Scheduler's schedules target).
pub async fn queue_arn(client: &Client, queue_url: &str) -> Result<String, SqsSetupError> {
    let attributes =
        client.get_queue_attributes().queue_url(queue_url).attribute_names(QueueAttributeName::QueueArn).send().await.map_err(err)?;
    attributes
        .attributes()
        .and_then(|a| a.get(&QueueAttributeName::QueueArn))
        .cloned()
        .ok_or_else(|| SqsSetupError(format!("no ARN for {queue_url}")))
}

/// Long-polls `queue_url` forever, handing batches to `consume` (which returns the ids that
/// failed) and deleting what succeeded.
pub async fn poll<F, Fut>(client: Client, queue_url: String, visibility: Duration, consume: F)
where
    F: Fn(SqsEvent) -> Fut,
    Fut: std::future::Future<Output = Vec<String>>,
{
    loop {
        let received = client
            .receive_message()
            .queue_url(&queue_url)
            .max_number_of_messages(BATCH_SIZE as i32)
            .wait_time_seconds(1)
            .visibility_timeout(visibility.as_secs().max(1) as i32)
            .message_system_attribute_names(MessageSystemAttributeName::ApproximateReceiveCount)
            .send()
            .await;
        let messages = match received {
            Ok(out) => out.messages.unwrap_or_default(),
            Err(e) => {
                tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "receiving from SQS failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        if messages.is_empty() {
            continue;
        }
        let mut event = SqsEvent::default();
        event.records = messages
            .iter()
            .map(|m| {
                let mut r = SqsMessage::default();
                r.message_id = m.message_id.clone();
                r.receipt_handle = m.receipt_handle.clone();
                r.body = m.body.clone();
                r.event_source = Some("aws:sqs".into());
                r
            })
            .collect();
        let failed = consume(event).await;
        let done: Vec<DeleteMessageBatchRequestEntry> = messages
            .iter()
            .enumerate()
            .filter(|(_, m)| !m.message_id.as_ref().is_some_and(|id| failed.contains(id)))
            .filter_map(|(i, m)| {
                DeleteMessageBatchRequestEntry::builder().id(i.to_string()).set_receipt_handle(m.receipt_handle.clone()).build().ok()
            })
            .collect();
        if !done.is_empty()
            && let Err(e) = client.delete_message_batch().queue_url(&queue_url).set_entries(Some(done)).send().await
        {
            tracing::warn!(error = %aws_sdk_sqs::error::DisplayErrorContext(&e), "deleting processed messages failed; they will be redelivered");
        }
    }
}

/// What the dead-letter queue holds (peeked: the messages stay).
pub async fn peek(client: &Client, queue_url: &str) -> Vec<String> {
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let Ok(out) = client
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(0)
            .wait_time_seconds(0)
            .send()
            .await
        else {
            break;
        };
        for m in out.messages.unwrap_or_default() {
            if let (Some(id), Some(body)) = (m.message_id, m.body)
                && !bodies.iter().any(|(i, _)| *i == id)
            {
                bodies.push((id, body));
            }
        }
    }
    bodies.into_iter().map(|(_, b)| b).collect()
}

/// Messages waiting or in flight.
pub async fn depth(client: &Client, queue_url: &str) -> usize {
    let Ok(out) = client
        .get_queue_attributes()
        .queue_url(queue_url)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessages)
        .attribute_names(QueueAttributeName::ApproximateNumberOfMessagesNotVisible)
        .send()
        .await
    else {
        return usize::MAX;
    };
    out.attributes().map(|a| a.values().filter_map(|v| v.parse::<usize>().ok()).sum()).unwrap_or(usize::MAX)
}
