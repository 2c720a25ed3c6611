//! The event source mapping on the embedded backend: an in-memory queue with SQS's semantics
//! (batches of up to 10, failed records visible again after the visibility timeout, moved to the
//! dead-letter queue after 5 receives), polled into `dispatch` exactly as Lambda's SQS event
//! source does.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use herald::queue::{InProcessMessages, Queue, QueueError, QueueMessage};
use tokio::sync::Notify;
use tokio::time::Instant;

pub const BATCH_SIZE: usize = 10;
pub const MAX_RECEIVES: u32 = 5;

#[derive(Clone)]
struct Message {
    id: String,
    body: Body,
    receives: u32,
    visible_at: Instant,
}

/// What a message holds: its body, or (sent with [`Queue::send_message`]) the message itself,
/// handed to the consumer as it is ([`herald::queue::in_process`]) and encoded only when its
/// body is asked for (the dead-letter queue's bodies).
#[derive(Clone)]
enum Body {
    Text(Arc<str>),
    Message(Arc<dyn QueueMessage>),
}

impl Body {
    fn text(&self) -> String {
        match self {
            Self::Text(t) => t.to_string(),
            Self::Message(m) => m.to_body().unwrap_or_else(|e| format!("<the message could not be encoded: {e}>")),
        }
    }
}

#[derive(Default)]
struct State {
    messages: VecDeque<Message>,
    in_flight: Vec<Message>,
}

/// One queue; the dead-letter queue is another, never polled.
pub struct LocalQueue {
    state: Mutex<State>,
    ready: Notify,
    pub visibility_timeout: Duration,
}

impl LocalQueue {
    pub fn new(visibility_timeout: Duration) -> Self {
        Self { state: Mutex::default(), ready: Notify::new(), visibility_timeout }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The bodies waiting (for the dead-letter queue: what was set aside).
    pub fn bodies(&self) -> Vec<String> {
        self.lock().messages.iter().map(|m| m.body.text()).collect()
    }

    /// Messages waiting or in flight.
    pub fn depth(&self) -> usize {
        let s = self.lock();
        s.messages.len() + s.in_flight.len()
    }

    /// Takes up to 10 visible messages, counting a receive on each.
    fn receive(&self) -> (Vec<Message>, Option<Instant>) {
        let now = Instant::now();
        let mut s = self.lock();
        let mut batch = Vec::new();
        let mut rest = VecDeque::with_capacity(s.messages.len());
        while let Some(mut m) = s.messages.pop_front() {
            if batch.len() < BATCH_SIZE && m.visible_at <= now {
                m.receives += 1;
                batch.push(m);
            } else {
                rest.push_back(m);
            }
        }
        let next_visible = rest.iter().map(|m| m.visible_at).min();
        s.messages = rest;
        s.in_flight.extend(batch.iter().cloned());
        (batch, next_visible)
    }

    /// Deletes the batch's successes; failures become visible again later, or go to `dlq`.
    fn settle(&self, batch: &[Message], failed: &[String], dlq: &LocalQueue) {
        let mut s = self.lock();
        s.in_flight.retain(|m| !batch.iter().any(|b| b.id == m.id));
        for m in batch.iter().filter(|m| failed.contains(&m.id)) {
            if m.receives >= MAX_RECEIVES {
                tracing::warn!(message_id = m.id, receives = m.receives, "moved to the dead-letter queue");
                dlq.push(Body::Text(m.body.text().into()));
            } else {
                s.messages.push_back(Message { visible_at: Instant::now() + self.visibility_timeout, ..m.clone() });
            }
        }
    }

    fn push(&self, body: Body) -> String {
        let id = uuid::Uuid::new_v4().to_string();
        self.lock().messages.push_back(Message { id: id.clone(), body, receives: 0, visible_at: Instant::now() });
        self.ready.notify_one();
        id
    }

    /// Polls forever, handing batches to `consume`, which returns the ids that failed.
    pub async fn poll<F, Fut>(self: Arc<Self>, dlq: Arc<LocalQueue>, consume: F)
    where
        F: Fn(SqsEvent) -> Fut,
        Fut: std::future::Future<Output = Vec<String>>,
    {
        loop {
            let (batch, next_visible) = self.receive();
            if batch.is_empty() {
                let wait = next_visible.map(|t| t.saturating_duration_since(Instant::now())).unwrap_or(Duration::from_secs(3600));
                let _ = tokio::time::timeout(wait, self.ready.notified()).await;
                continue;
            }
            let mut event = SqsEvent::default();
            let mut in_process = InProcessMessages::new();
            event.records = batch
                .iter()
                .map(|m| {
                    let mut r = SqsMessage::default();
                    r.message_id = Some(m.id.clone());
                    match &m.body {
                        Body::Text(t) => r.body = Some(t.to_string()),
                        // No body: the consumer takes the message itself.
                        Body::Message(message) => {
                            in_process.insert(m.id.clone(), message.clone());
                        }
                    }
                    r.event_source = Some("aws:sqs".into());
                    r.attributes.insert("ApproximateReceiveCount".into(), m.receives.to_string());
                    r
                })
                .collect();
            let failed =
                if in_process.is_empty() { consume(event).await } else { herald::queue::with_in_process(in_process, consume(event)).await };
            self.settle(&batch, &failed, &dlq);
        }
    }
}

#[async_trait]
impl Queue for LocalQueue {
    async fn send(&self, body: &str) -> Result<String, QueueError> {
        Ok(self.push(Body::Text(body.into())))
    }

    /// Kept as it is: the consumer in this process takes it without its JSON.
    async fn send_message(&self, message: Arc<dyn QueueMessage>) -> Result<String, QueueError> {
        Ok(self.push(Body::Message(message)))
    }
}
