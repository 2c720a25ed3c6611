//! Handing a message to the dispatcher: SQS in the cloud and on `--backend aws`, an in-memory
//! queue in herald-local's embedded mode.

use std::any::Any;
use std::collections::HashMap;
use std::sync::Arc;

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

    /// Sends one message whose body is its JSON. A queue in this process may hand the message
    /// itself to its consumer ([`in_process`]) and skip the JSON both ways (herald-local's
    /// embedded fan-out queue); any other queue sends the JSON, as [`Queue::send`].
    async fn send_message(&self, message: Arc<dyn QueueMessage>) -> Result<String, QueueError> {
        let body = message.to_body().map_err(|e| QueueError::Send(Box::new(e)))?;
        self.send(&body).await
    }
}

/// A message that can be sent as it is to a consumer in this process, or as its JSON body.
pub trait QueueMessage: Any + Send + Sync {
    /// The body a queue that leaves this process carries.
    fn to_body(&self) -> Result<String, serde_json::Error>;
    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync>;
}

impl<T: serde::Serialize + Any + Send + Sync> QueueMessage for T {
    fn to_body(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string(self)
    }

    fn into_any(self: Arc<Self>) -> Arc<dyn Any + Send + Sync> {
        self
    }
}

/// The messages of the batch being consumed that came as they are ([`Queue::send_message`]),
/// by message id; set only by a queue in this process around its consumer.
pub type InProcessMessages = HashMap<String, Arc<dyn QueueMessage>>;

tokio::task_local! {
    static IN_PROCESS: InProcessMessages;
}

/// Runs a consumer of a batch some of whose messages came as they are.
pub async fn with_in_process<F: Future>(messages: InProcessMessages, consume: F) -> F::Output {
    IN_PROCESS.scope(messages, consume).await
}

/// The message `message_id` of the batch being consumed as it was sent, when it came in this
/// process without its body ([`Queue::send_message`] to herald-local's queue); `None` in the
/// cloud, where every message is its body.
pub fn in_process<T: Any + Send + Sync>(message_id: &str) -> Option<Arc<T>> {
    let message = IN_PROCESS.try_with(|m| m.get(message_id).cloned()).ok().flatten()?;
    message.into_any().downcast().ok()
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
