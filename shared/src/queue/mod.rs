//! Handing a message to the dispatcher: SQS in the cloud and on `--backend aws`, an in-memory
//! queue in herald-local's embedded mode.

use async_trait::async_trait;

#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("queue send failed: {0}")]
    Send(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error("queue is closed")]
    Closed,
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Sends one message body; returns the queue's message id.
    async fn send(&self, body: &str) -> Result<String, QueueError>;
}

/// SQS through `aws-sdk-sqs`.
#[derive(Debug, Clone)]
pub struct SqsQueue {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsQueue {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self { client, queue_url: queue_url.into() }
    }

    /// Sends one message body that becomes visible after `delay_secs` (0 to 900, SQS's
    /// `DelaySeconds`); returns the queue's message id.
    pub async fn send_delayed(&self, body: &str, delay_secs: i32) -> Result<String, QueueError> {
        let out = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .delay_seconds(delay_secs.clamp(0, 900))
            .send()
            .await
            .map_err(|e| QueueError::Send(Box::new(e)))?;
        Ok(out.message_id().unwrap_or_default().to_string())
    }
}

#[async_trait]
impl Queue for SqsQueue {
    async fn send(&self, body: &str) -> Result<String, QueueError> {
        let out = self
            .client
            .send_message()
            .queue_url(&self.queue_url)
            .message_body(body)
            .send()
            .await
            .map_err(|e| QueueError::Send(Box::new(e)))?;
        Ok(out.message_id().unwrap_or_default().to_string())
    }
}

/// Redelivery checks as SQS messages delayed by the ack timeout (at most SQS's 15 minutes);
/// the `redeliver` function consumes them.
#[derive(Debug, Clone)]
pub struct SqsRedeliveryTimer {
    queue: SqsQueue,
}

impl SqsRedeliveryTimer {
    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self { queue: SqsQueue::new(client, queue_url) }
    }
}

#[async_trait]
impl crate::delivery::RedeliveryTimer for SqsRedeliveryTimer {
    async fn schedule(&self, check: &crate::delivery::RedeliveryCheck, after: std::time::Duration) -> Result<(), QueueError> {
        let body = serde_json::to_string(check).map_err(|e| QueueError::Send(Box::new(e)))?;
        let delay = after.as_millis().div_ceil(1000).min(900) as i32;
        self.queue
            .client
            .send_message()
            .queue_url(&self.queue.queue_url)
            .message_body(body)
            .delay_seconds(delay)
            .send()
            .await
            .map_err(|e| QueueError::Send(Box::new(e)))?;
        Ok(())
    }
}
