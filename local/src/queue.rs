//! The event source mapping on the embedded backend: an in-memory queue with SQS's semantics
//! (batches of up to 10, failed records visible again after the visibility timeout, moved to the
//! dead-letter queue after 5 receives), polled into `dispatch` exactly as Lambda's SQS event
//! source does.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use async_trait::async_trait;
use aws_lambda_events::sqs::{SqsEvent, SqsMessage};
use herald::queue::{Queue, QueueError};
use tokio::sync::Notify;
use tokio::time::Instant;

pub const BATCH_SIZE: usize = 10;
pub const MAX_RECEIVES: u32 = 5;

#[derive(Debug, Clone)]
struct Message {
    id: String,
    body: String,
    receives: u32,
    visible_at: Instant,
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
        self.lock().messages.iter().map(|m| m.body.clone()).collect()
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
                dlq.push(m.body.clone());
            } else {
                s.messages.push_back(Message { visible_at: Instant::now() + self.visibility_timeout, ..m.clone() });
            }
        }
    }

    fn push(&self, body: String) -> String {
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
            event.records = batch
                .iter()
                .map(|m| {
                    let mut r = SqsMessage::default();
                    r.message_id = Some(m.id.clone());
                    r.body = Some(m.body.clone());
                    r.event_source = Some("aws:sqs".into());
                    r.attributes.insert("ApproximateReceiveCount".into(), m.receives.to_string());
                    r
                })
                .collect();
            let failed = consume(event).await;
            self.settle(&batch, &failed, &dlq);
        }
    }
}

#[async_trait]
impl Queue for LocalQueue {
    async fn send(&self, body: &str) -> Result<String, QueueError> {
        Ok(self.push(body.to_string()))
    }
}
