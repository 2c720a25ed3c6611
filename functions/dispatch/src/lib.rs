//! `dispatch`: the consumer of the notifications queue (SQS) and of Kafka (topic
//! `notification.send`), and the fan-out's coordinator. For each message it claims the push
//! (idempotency key namespaced by the message's source, an owner token and a renewed lease),
//! finds the target connections with Queries and hands them out in delivery batches of a few
//! hundred on the fan-out queue, where `herald-deliver` workers post them; a push whose targets
//! fit one batch is delivered at once by the same worker code. No invocation's work grows with
//! the audience beyond reading its keys. What can never be delivered is set aside
//! (dead-lettered) without blocking the rest of the batch; a Kafka record that keeps failing is
//! dead-lettered after a few tries so its partition moves on.

pub mod message;

use std::time::Duration;

use aws_lambda_events::kafka::KafkaEvent;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use base64::Engine as _;
use futures::StreamExt;
use herald::config::DeliveryConfig;
use herald::delivery::RedeliveryTimer;
use herald::domain::{Api, Audience, Claim, Push, Target, epoch_secs, now};
use herald::gateway::Gateway;
use herald::history::admits;
use herald::queue::Queue;
use herald::store::{ConnectionStore, DeliveryStore, FenceOf, HistoryStore, StoreError, SubscriptionStore};
use herald_deliver::{DeliverDeps, DeliveryBatch, RECORD_TTL_SECS};

pub use message::Undeliverable;

/// Subscribers read per Query page during an event fan-out.
pub const PAGE_SIZE: usize = 1000;
/// Batches handed to the fan-out queue at once.
const ENQUEUE_CONCURRENCY: usize = 16;
/// Tries of one Kafka record before it is dead-lettered and its partition moves on.
pub const KAFKA_RECORD_TRIES: u32 = 3;

/// What dispatch needs; every handler of the queue consumer shares it.
pub struct DispatchDeps<'a, S: ?Sized> {
    pub store: &'a S,
    pub gateway: &'a dyn Gateway,
    pub timer: &'a dyn RedeliveryTimer,
    /// Where undeliverable messages are set aside (the dead-letter queue).
    pub dead_letters: &'a dyn Queue,
    /// The fan-out queue: delivery batches for the workers (`herald-deliver`).
    pub fanout: &'a dyn Queue,
    pub settings: &'a DeliveryConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Undeliverable(#[from] Undeliverable),
    /// Worth retrying later: the store or the queue failed, or another worker holds the push.
    #[error("transient failure: {0}")]
    Transient(String),
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
}

/// What one message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delivered {
    /// Frames posted here (a push whose targets fit one batch is delivered at once).
    pub sent: usize,
    /// Connections found gone (410) and deleted.
    pub gone: usize,
    /// Batches handed to the fan-out queue.
    pub batches: usize,
    /// The message had been pushed before: nothing was sent.
    pub duplicate: bool,
}

/// The idempotency key of a message: its id within its source (the queue's ARN, or the Kafka
/// topic), so one producer's id never suppresses another source's message.
pub fn idempotency_key(source: &str, push_id: &str) -> String {
    format!("{}:{source}|{push_id}", source.len())
}

impl<S: ConnectionStore + SubscriptionStore + DeliveryStore + HistoryStore + ?Sized> DispatchDeps<'_, S> {
    fn worker(&self) -> DeliverDeps<'_, S> {
        DeliverDeps { store: self.store, gateway: self.gateway, timer: self.timer, settings: self.settings }
    }

    /// Fans one push out; idempotent per `key` ([`idempotency_key`]). The coordinator claims
    /// the push, reads its targets page by page and hands them out in delivery batches; a push
    /// whose targets fit one batch is delivered here at once (the common direct push), and
    /// what failed of it goes to the fan-out queue.
    #[tracing::instrument(skip_all, fields(push_id = %push.id))]
    pub async fn deliver(&self, push: &Push, key: &str) -> Result<Delivered, DispatchError> {
        let owner = uuid::Uuid::new_v4().to_string();
        let expires_at = epoch_secs(now()) + RECORD_TTL_SECS;
        // The lease (`HERALD_CLAIM_LEASE_MS`) is renewed after every page, so only a coordinator
        // that stopped loses it.
        match self.store.claim_push(key, &owner, self.settings.claim_lease, expires_at).await? {
            Claim::Done => return Ok(Delivered { duplicate: true, ..Default::default() }),
            Claim::Busy => return Err(DispatchError::Transient(format!("push {} is being delivered by another worker", push.id))),
            Claim::New | Claim::Retaken => {}
        }
        match self.keep_and_fan_out(push, key, &owner).await {
            Ok(delivered) => {
                if !self.store.complete_push(key, &owner).await? {
                    tracing::warn!("the claim was retaken meanwhile; the other coordinator completes it");
                }
                herald::metrics::inc(herald::metrics::Counter::PushesDispatched);
                tracing::info!(sent = delivered.sent, gone = delivered.gone, batches = delivered.batches, "dispatched");
                Ok(delivered)
            }
            Err(e) => {
                self.store.release_push(key, &owner).await?;
                Err(e)
            }
        }
    }

    /// Appends the push to its stream (CONTRACT §8) under the claim, then fans it out with its
    /// position. The append is once per idempotency key (the store keeps a marker of it with the
    /// offset, in the same transaction as the push): a retried or redelivered message, or a
    /// coordinator that retook a crashed one's claim, gets the offset the first append got.
    /// Appending before any target is read is what keeps replays and live pushes apart
    /// ([`herald::history`]).
    async fn keep_and_fan_out(&self, push: &Push, key: &str, owner: &str) -> Result<Delivered, DispatchError> {
        let Some(stream) = push.stream() else {
            return Err(Undeliverable("the message names neither user_id nor event_name".into()).into());
        };
        let ttl = i64::try_from(self.settings.history_ttl.as_secs()).unwrap_or(i64::MAX);
        if ttl == 0 {
            // History turned off (HERALD_HISTORY_TTL_S=0): the push is not kept, nor positioned.
            return self.fan_out(push, key, owner).await;
        }
        let position = self.store.append_history(&stream, key, push, ttl).await?;
        let push = Push { position: Some(position), ..push.clone() };
        self.fan_out(&push, key, owner).await
    }

    async fn fan_out(&self, push: &Push, key: &str, owner: &str) -> Result<Delivered, DispatchError> {
        let offset = push.position.as_ref().map(|p| p.offset);
        let targets: Vec<Target> = match push.audience() {
            None => return Err(Undeliverable("the message names neither user_id nor event_name".into()).into()),
            Some(Audience::User(user)) => {
                let mut targets = Vec::new();
                for c in self.store.user_connections(user).await?.iter().filter(|c| c.api == Api::Notify) {
                    if admits(self.store, FenceOf::Connection(&c.connection_id), c.fence, offset).await? {
                        targets.push(Target::from(c));
                    }
                }
                targets
            }
            Some(Audience::UserEvent { user_id, event_name }) => {
                // The user's stream: each connection's fence (`&since=` on connect) applies.
                let connections = self.store.user_connections(user_id).await?;
                let mut targets = Vec::new();
                for sub in self.store.user_event_subscribers(user_id, event_name).await? {
                    // A connection the index does not show yet is read from its table.
                    let fence = connections
                        .iter()
                        .find(|c| c.connection_id == sub.connection_id)
                        .map_or(Some(herald::domain::Fence::Recovering), |c| c.fence);
                    if admits(self.store, FenceOf::Connection(&sub.connection_id), fence, offset).await? {
                        targets.push(Target::from(sub));
                    }
                }
                targets
            }
            Some(Audience::Event(event)) => return self.fan_out_event(push, key, owner, event).await,
        };
        let mut delivered = Delivered::default();
        for batch in DeliveryBatch::split(key, push, targets) {
            self.deliver_or_enqueue(batch, &mut delivered).await?;
        }
        Ok(delivered)
    }

    /// A one-batch audience is delivered at once; what failed of it, like every batch of a
    /// larger fan-out, goes to the workers.
    async fn deliver_or_enqueue(&self, batch: DeliveryBatch, delivered: &mut Delivered) -> Result<(), DispatchError> {
        let outcome = self.worker().deliver_batch(&batch).await.map_err(|e| DispatchError::Transient(e.to_string()))?;
        delivered.sent += outcome.sent;
        delivered.gone += outcome.gone;
        if !outcome.failed.is_empty() {
            // The batch's marker names what is left: the worker posts only those.
            self.enqueue(vec![batch]).await?;
            delivered.batches += 1;
        }
        Ok(())
    }

    /// An event's subscribers, a page at a time, each page's batches on the fan-out queue.
    async fn fan_out_event(&self, push: &Push, key: &str, owner: &str, event: &str) -> Result<Delivered, DispatchError> {
        let mut delivered = Delivered::default();
        let mut cursor: Option<String> = None;
        let mut first = true;
        loop {
            let page = self.store.event_subscribers(event, cursor.as_deref(), PAGE_SIZE).await?;
            let offset = push.position.as_ref().map(|p| p.offset);
            let mut targets: Vec<Target> = Vec::with_capacity(page.items.len());
            for sub in page.items {
                let of = FenceOf::Subscription { connection_id: &sub.connection_id, event_name: event };
                if admits(self.store, of, sub.fence, offset).await? {
                    targets.push(Target::from(sub));
                }
            }
            if first && page.next.is_none() && targets.len() <= herald_deliver::BATCH_SIZE {
                // Small enough for one batch: deliver now.
                for batch in DeliveryBatch::split(key, push, targets) {
                    self.deliver_or_enqueue(batch, &mut delivered).await?;
                }
                return Ok(delivered);
            }
            first = false;
            let batches = DeliveryBatch::split(key, push, targets);
            delivered.batches += batches.len();
            self.enqueue(batches).await?;
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(delivered),
            }
            if !self.store.renew_claim(key, owner, self.settings.claim_lease).await? {
                return Err(DispatchError::Transient(format!("the claim on push {} was lost", push.id)));
            }
        }
    }

    /// Each batch as a message of the fan-out queue: its JSON body (a queue in this process
    /// takes the batch as it is, [`herald::queue::Queue::send_message`]).
    async fn enqueue(&self, batches: Vec<DeliveryBatch>) -> Result<(), DispatchError> {
        let sent: Vec<Result<String, herald::queue::QueueError>> = futures::stream::iter(batches)
            .map(|batch| async move { self.fanout.send_message(std::sync::Arc::new(batch)).await })
            .buffer_unordered(ENQUEUE_CONCURRENCY)
            .collect()
            .await;
        match sent.into_iter().find_map(Result::err) {
            Some(e) => Err(DispatchError::Transient(format!("could not hand a batch to the fan-out queue: {e}"))),
            None => Ok(()),
        }
    }

    /// One queue message from `source`: delivered, or set aside when it can never be.
    async fn process(&self, source: &str, body: &[u8], fallback_id: &str) -> Result<Delivered, DispatchError> {
        match message::parse(body, fallback_id) {
            Ok(push) => self.deliver(&push, &idempotency_key(source, &push.id)).await,
            Err(undeliverable) => {
                tracing::error!(message_id = fallback_id, reason = %undeliverable.0, "dead-lettering an undeliverable message");
                let envelope = serde_json::json!({
                    "reason": undeliverable.0,
                    "source": source,
                    "source_message_id": fallback_id,
                    "body": String::from_utf8_lossy(body),
                });
                self.dead_letter(&envelope).await?;
                Ok(Delivered::default())
            }
        }
    }

    async fn dead_letter(&self, envelope: &serde_json::Value) -> Result<(), DispatchError> {
        self.dead_letters.send(&envelope.to_string()).await.map_err(|e| DispatchError::Transient(format!("could not dead-letter: {e}")))?;
        herald::metrics::inc(herald::metrics::Counter::DeadLetters);
        Ok(())
    }

    /// An SQS batch: only the records that failed transiently are reported for retry. A
    /// record's idempotency key is namespaced by its queue (`eventSourceARN`).
    pub async fn handle_sqs(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for record in event.records {
            let id = record.message_id.clone().unwrap_or_default();
            let source = record.event_source_arn.as_deref().unwrap_or("sqs");
            let body = record.body.as_deref().unwrap_or_default();
            if let Err(e) = self.process(source, body.as_bytes(), &id).await {
                tracing::warn!(message_id = id, error = %e, "will be retried");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// A Kafka batch (MSK or self-managed): base64 values, several partitions, in offset order
    /// per partition. Each record is handled alone: an undeliverable one is dead-lettered; one
    /// that keeps failing is tried [`KAFKA_RECORD_TRIES`] times and then dead-lettered with its
    /// topic, partition and offset, so its partition moves on. Only a failure to dead-letter
    /// fails the batch (records already pushed are skipped on the retry: they are claimed).
    /// A record's idempotency key is namespaced by its topic.
    pub async fn handle_kafka(&self, event: KafkaEvent) -> Result<usize, DispatchError> {
        let mut processed = 0;
        let mut records: Vec<_> = event.records.into_values().flatten().collect();
        records.sort_by(|a, b| (a.topic.as_deref(), a.partition, a.offset).cmp(&(b.topic.as_deref(), b.partition, b.offset)));
        for record in records {
            let topic = record.topic.as_deref().unwrap_or_default();
            let source = format!("kafka:{topic}");
            let fallback = format!("kafka:{topic}:{}:{}", record.partition, record.offset);
            let value = match record.value.as_deref().map(|v| base64::engine::general_purpose::STANDARD.decode(v)) {
                Some(Ok(bytes)) => bytes,
                Some(Err(_)) => b"<value is not base64>".to_vec(),
                None => Vec::new(),
            };
            let mut backoff = Duration::from_millis(100);
            let mut tries = 0;
            loop {
                tries += 1;
                match self.process(&source, &value, &fallback).await {
                    Ok(_) => break,
                    Err(e) if tries < KAFKA_RECORD_TRIES => {
                        tracing::warn!(record = fallback, tries, error = %e, "will be retried");
                        tokio::time::sleep(backoff).await;
                        backoff *= 4;
                    }
                    Err(e) => {
                        tracing::error!(record = fallback, tries, error = %e, "dead-lettering a record that keeps failing");
                        let envelope = serde_json::json!({
                            "reason": format!("failed {tries} times: {e}"),
                            "source": source,
                            "topic": topic,
                            "partition": record.partition,
                            "offset": record.offset,
                            "body": String::from_utf8_lossy(&value),
                        });
                        self.dead_letter(&envelope).await?;
                        break;
                    }
                }
            }
            processed += 1;
        }
        Ok(processed)
    }
}

herald::lambda_diagnostic!(DispatchError);

#[cfg(test)]
mod tests;
