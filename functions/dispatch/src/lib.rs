//! `dispatch`: the consumer of the notifications queue (SQS) and of Kafka (topic
//! `notification.send`). For each message it finds the target connections with Queries, encodes
//! the push once per encoding, posts with bounded concurrency, deletes connections that are gone
//! (410), retries throttling with backoff, records ack-mode deliveries and schedules their
//! redelivery checks, pushes a message id once however often it is handed over, and sets aside
//! (dead-letters) what can never be delivered without blocking the rest of the batch.

pub mod message;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_lambda_events::kafka::KafkaEvent;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use base64::Engine as _;
use futures::StreamExt;
use herald::config::DeliveryConfig;
use herald::delivery::RedeliveryTimer;
use herald::domain::{AckMode, Api, Audience, Claim, Delivery, Encoding, Push, Target, epoch_secs, now};
use herald::gateway::{Frame, Gateway, GatewayError};
use herald::protocol::encode_push;
use herald::queue::Queue;
use herald::store::{ConnectionStore, DeliveryStore, StoreError, SubscriptionStore};

pub use message::Undeliverable;

/// How many posts to the management API run at once for one message.
pub const POST_CONCURRENCY: usize = 64;
/// Subscribers read per Query page during an event fan-out.
pub const PAGE_SIZE: usize = 1000;
/// How long a claim on a push id holds before another worker may retake it.
pub const CLAIM_LEASE: Duration = Duration::from_secs(120);
/// How long delivery records and claims are kept (TTL).
pub const RECORD_TTL_SECS: i64 = 24 * 60 * 60;

/// What dispatch needs; every handler of the queue consumer shares it.
pub struct DispatchDeps<'a, S: ?Sized> {
    pub store: &'a S,
    pub gateway: &'a dyn Gateway,
    pub timer: &'a dyn RedeliveryTimer,
    /// Where undeliverable messages are set aside (the dead-letter queue).
    pub dead_letters: &'a dyn Queue,
    pub settings: &'a DeliveryConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error(transparent)]
    Undeliverable(#[from] Undeliverable),
    /// Worth retrying later: the store or the management API failed, or another worker holds the push.
    #[error("transient failure: {0}")]
    Transient(String),
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
}

/// What one message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Delivered {
    /// Frames posted.
    pub sent: usize,
    /// Connections found gone (410) and deleted.
    pub gone: usize,
    /// The message had been pushed before: nothing was sent.
    pub duplicate: bool,
}

#[derive(Default)]
struct Tally {
    sent: AtomicUsize,
    gone: AtomicUsize,
    failed: AtomicUsize,
}

/// Posts one frame, retrying throttling (429) with exponential backoff.
async fn post_with_backoff(gateway: &dyn Gateway, connection_id: &str, frame: &Frame) -> Result<(), GatewayError> {
    let mut delay = Duration::from_millis(50);
    for _ in 0..4 {
        match gateway.post(connection_id, frame).await {
            Err(GatewayError::Throttled) => {
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            other => return other,
        }
    }
    gateway.post(connection_id, frame).await
}

impl<S: ConnectionStore + SubscriptionStore + DeliveryStore + ?Sized> DispatchDeps<'_, S> {
    /// Delivers one push to every target connection; idempotent per push id.
    #[tracing::instrument(skip_all, fields(push_id = %push.id))]
    pub async fn deliver(&self, push: &Push) -> Result<Delivered, DispatchError> {
        let expires_at = epoch_secs(now()) + RECORD_TTL_SECS;
        match self.store.claim_push(&push.id, CLAIM_LEASE, expires_at).await? {
            Claim::Done => return Ok(Delivered { duplicate: true, ..Default::default() }),
            Claim::Busy => return Err(DispatchError::Transient(format!("push {} is being delivered by another worker", push.id))),
            Claim::New | Claim::Retaken => {}
        }
        let json = encode_push(push, Encoding::Json);
        let protobuf = encode_push(push, Encoding::Protobuf);
        let tally = Tally::default();
        let result = self.fan_out(push, &json, &protobuf, &tally, expires_at).await;
        let failed = tally.failed.load(Ordering::Relaxed);
        if let Err(e) = result {
            self.store.release_push(&push.id).await?;
            return Err(e);
        }
        if failed > 0 {
            self.store.release_push(&push.id).await?;
            return Err(DispatchError::Transient(format!("{failed} posts failed")));
        }
        self.store.complete_push(&push.id).await?;
        let delivered = Delivered { sent: tally.sent.load(Ordering::Relaxed), gone: tally.gone.load(Ordering::Relaxed), duplicate: false };
        tracing::info!(sent = delivered.sent, gone = delivered.gone, "delivered");
        Ok(delivered)
    }

    async fn fan_out(&self, push: &Push, json: &Frame, protobuf: &Frame, tally: &Tally, expires_at: i64) -> Result<(), DispatchError> {
        let send_all = |targets: Vec<Target>| {
            futures::stream::iter(targets).for_each_concurrent(POST_CONCURRENCY, |t| async move {
                let frame = match t.encoding {
                    Encoding::Json => json,
                    Encoding::Protobuf => protobuf,
                };
                self.send_one(push, &t, frame, tally, expires_at).await;
            })
        };
        match push.audience() {
            None => return Err(Undeliverable("the message names neither user_id nor event_name".into()).into()),
            Some(Audience::User(user)) => {
                let targets = self.store.user_connections(user).await?.iter().filter(|c| c.api == Api::Notify).map(Target::from).collect();
                send_all(targets).await;
            }
            Some(Audience::UserEvent { user_id, event_name }) => {
                let targets = self.store.user_event_subscribers(user_id, event_name).await?.into_iter().map(Target::from).collect();
                send_all(targets).await;
            }
            Some(Audience::Event(event)) => {
                let mut cursor: Option<String> = None;
                loop {
                    let page = self.store.event_subscribers(event, cursor.as_deref(), PAGE_SIZE).await?;
                    send_all(page.items.into_iter().map(Target::from).collect()).await;
                    match page.next {
                        Some(next) => cursor = Some(next),
                        None => break,
                    }
                }
            }
        }
        Ok(())
    }

    async fn send_one(&self, push: &Push, target: &Target, frame: &Frame, tally: &Tally, expires_at: i64) {
        let cid = target.connection_id.as_str();
        if target.ack_mode == AckMode::Required {
            let record = Delivery {
                push_id: push.id.clone(),
                connection_id: cid.to_string(),
                attempts: 1,
                acked: false,
                frame: frame.as_bytes().to_vec(),
                binary: frame.is_binary(),
                expires_at,
            };
            match self.store.create_delivery(&record).await {
                Ok(true) => {}
                // Sent by an earlier attempt of this message; its redelivery checks are running.
                Ok(false) => return,
                Err(e) => {
                    tracing::warn!(connection_id = cid, error = %e, "could not record the delivery");
                    tally.failed.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        match post_with_backoff(self.gateway, cid, frame).await {
            Ok(()) => {
                tally.sent.fetch_add(1, Ordering::Relaxed);
                if target.ack_mode == AckMode::Required
                    && let Err(e) = self.timer.schedule(&push.id, cid, self.settings.ack_timeout).await
                {
                    tracing::error!(connection_id = cid, error = %e, "could not schedule the redelivery check");
                }
            }
            Err(GatewayError::Gone(_)) => {
                tally.gone.fetch_add(1, Ordering::Relaxed);
                if let Err(e) = herald_disconnect::forget(self.store, cid).await {
                    tracing::warn!(connection_id = cid, error = %e, "could not delete a gone connection");
                }
            }
            Err(GatewayError::PayloadRefused(reason)) => {
                tracing::error!(connection_id = cid, reason, "the management API refused the payload");
            }
            Err(e) => {
                tracing::warn!(connection_id = cid, error = %e, "post failed");
                tally.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// One queue message: delivered, or set aside when it can never be.
    async fn process(&self, body: &[u8], fallback_id: &str) -> Result<Delivered, DispatchError> {
        match message::parse(body, fallback_id) {
            Ok(push) => self.deliver(&push).await,
            Err(undeliverable) => {
                tracing::error!(message_id = fallback_id, reason = %undeliverable.0, "dead-lettering an undeliverable message");
                let envelope = serde_json::json!({
                    "reason": undeliverable.0,
                    "source_message_id": fallback_id,
                    "body": String::from_utf8_lossy(body),
                });
                self.dead_letters
                    .send(&envelope.to_string())
                    .await
                    .map_err(|e| DispatchError::Transient(format!("could not dead-letter: {e}")))?;
                Ok(Delivered::default())
            }
        }
    }

    /// An SQS batch: only the records that failed transiently are reported for retry.
    pub async fn handle_sqs(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for record in event.records {
            let id = record.message_id.clone().unwrap_or_default();
            let body = record.body.as_deref().unwrap_or_default();
            if let Err(e) = self.process(body.as_bytes(), &id).await {
                tracing::warn!(message_id = id, error = %e, "will be retried");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }

    /// A Kafka batch (MSK or self-managed): base64 values, several partitions. Undeliverable
    /// records are dead-lettered; a transient failure fails the batch so that it is retried
    /// (records already pushed are skipped then: their ids are claimed).
    pub async fn handle_kafka(&self, event: KafkaEvent) -> Result<usize, DispatchError> {
        let mut processed = 0;
        let mut records: Vec<_> = event.records.into_values().flatten().collect();
        records.sort_by(|a, b| (a.topic.as_deref(), a.partition, a.offset).cmp(&(b.topic.as_deref(), b.partition, b.offset)));
        for record in records {
            let fallback = format!("kafka:{}:{}:{}", record.topic.as_deref().unwrap_or_default(), record.partition, record.offset);
            let value = match record.value.as_deref().map(|v| base64::engine::general_purpose::STANDARD.decode(v)) {
                Some(Ok(bytes)) => bytes,
                Some(Err(_)) => b"<value is not base64>".to_vec(),
                None => Vec::new(),
            };
            self.process(&value, &fallback).await?;
            processed += 1;
        }
        Ok(processed)
    }
}

herald::lambda_diagnostic!(DispatchError);
