//! The fan-out's delivery worker (issue 10; ARCHITECTURE "A notification"). `dispatch` (the
//! coordinator) splits a push's targets into [`DeliveryBatch`]es of at most [`BATCH_SIZE`]
//! connections on the fan-out queue; this worker posts one batch with bounded concurrency
//! ([`POST_CONCURRENCY`]) and a rate budget shared by every post of the invocation (a 429 on one
//! post pauses them all), retries a failing post a few times, deletes connections that are gone
//! (410), and then records the batch's state with a conditional write:
//!
//! - every target served: the batch is `Done` and never posted again, however often the queue
//!   hands it over;
//! - some failed: the batch records the connection ids still to serve and is reported failed, so
//!   the queue brings it back after its visibility timeout (the delay after a 429) and only those
//!   ids are posted again. A failure on one connection never makes the others receive it again.
//!
//! Only a crash (or an ambiguous failure) between a post and the batch's state write sends a
//! connection the same push twice; clients dedupe by id (CONTRACT §4, "Delivery guarantee").
//! Ack-mode targets go through [`herald::delivery::Redelivery::first_send`], which schedules the
//! redelivery check before the post.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use futures::StreamExt;
use herald::config::DeliveryConfig;
use herald::delivery::{DeliveryError, Redelivery, RedeliveryTimer};
use herald::domain::{AckMode, BatchState, Encoding, Push, Target, age, epoch_secs, now};
use herald::gateway::{Frame, Gateway, GatewayError};
use herald::metrics::{self, Counter, Histogram};
use herald::protocol::encode_push;
use herald::store::{ConnectionStore, DeliveryStore, HistoryStore, StoreError, SubscriptionStore};
use serde::{Deserialize, Serialize};
use tokio::time::Instant;

/// Connections per delivery batch: one worker posts them well inside its timeout even at a
/// 100 ms management API round trip (200 / 64 in flight × 4 tries × 0.1 s ≈ 1.3 s).
pub const BATCH_SIZE: usize = 200;
/// Posts in flight at once in one invocation.
pub const POST_CONCURRENCY: usize = 64;
/// Tries per post within one invocation before the connection is left for the queue's retry.
pub const POST_TRIES: u32 = 4;
/// The first pause after a 429; it doubles with each try.
const FIRST_BACKOFF: Duration = Duration::from_millis(50);
/// How long delivery records, claims and batch markers are kept (TTL).
pub const RECORD_TTL_SECS: i64 = 24 * 60 * 60;

/// One batch of a push's fan-out: the push and up to [`BATCH_SIZE`] targets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeliveryBatch {
    /// The push's idempotency key and a digest of the batch's connection ids: the same batch,
    /// re-sent by a retried coordinator, has the same id (and is skipped once done); a batch
    /// whose targets changed meanwhile has another (and is posted: nothing is lost).
    pub batch_id: String,
    pub push: Push,
    pub targets: Vec<Target>,
}

impl DeliveryBatch {
    /// `key`: the push's idempotency key (its source and id).
    pub fn new(key: &str, push: &Push, targets: Vec<Target>) -> Self {
        let mut ids: Vec<&str> = targets.iter().map(|t| t.connection_id.as_str()).collect();
        ids.sort_unstable();
        let digest = ids.iter().fold(FNV_OFFSET, |h, id| fnv1a(fnv1a(h, id.as_bytes()), b"\n"));
        Self { batch_id: format!("{key}#{digest:016x}"), push: push.clone(), targets }
    }

    /// The batches of a push's targets, [`BATCH_SIZE`] at a time.
    pub fn split(key: &str, push: &Push, targets: Vec<Target>) -> Vec<Self> {
        let mut batches = Vec::with_capacity(targets.len().div_ceil(BATCH_SIZE));
        let mut targets = targets.into_iter();
        loop {
            let chunk: Vec<Target> = targets.by_ref().take(BATCH_SIZE).collect();
            if chunk.is_empty() {
                return batches;
            }
            batches.push(Self::new(key, push, chunk));
        }
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;

fn fnv1a(mut hash: u64, bytes: &[u8]) -> u64 {
    for b in bytes {
        hash ^= u64::from(*b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// What a pass over a batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchOutcome {
    /// Frames posted.
    pub sent: usize,
    /// Connections found gone (410) and deleted.
    pub gone: usize,
    /// Connections still to serve: the batch comes back for them.
    pub failed: Vec<String>,
    /// The batch was done already: nothing was posted.
    pub skipped: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    #[error("not a delivery batch: {0}")]
    BadBatch(#[from] serde_json::Error),
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
}

/// A pause every post of one invocation honours: a 429 on any post slows them all, since the
/// management API's quota is the account's, not the connection's.
#[derive(Default)]
struct RateBudget {
    /// Whether any post was throttled yet: until then, no post takes the lock.
    throttled: AtomicBool,
    paused_until: Mutex<Option<Instant>>,
}

impl RateBudget {
    async fn wait(&self) {
        if !self.throttled.load(Ordering::Acquire) {
            return;
        }
        let until = *self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = until {
            tokio::time::sleep_until(until).await;
        }
    }

    fn throttled(&self, pause: Duration) {
        let mut g = self.paused_until.lock().unwrap_or_else(|e| e.into_inner());
        let until = Instant::now() + pause;
        if g.is_none_or(|current| current < until) {
            *g = Some(until);
        }
        self.throttled.store(true, Ordering::Release);
    }
}

/// What the worker needs.
pub struct DeliverDeps<'a, S: ?Sized> {
    pub store: &'a S,
    pub gateway: &'a dyn Gateway,
    pub timer: &'a dyn RedeliveryTimer,
    pub settings: &'a DeliveryConfig,
}

/// A post's answer when it is final (posted, gone, or the payload refused: logged); the error
/// when the post is worth another try.
fn settled(connection_id: &str, result: Result<(), GatewayError>) -> Result<Sent, GatewayError> {
    match result {
        Ok(()) => Ok(Sent::Posted),
        Err(GatewayError::Gone(_)) => Ok(Sent::Gone),
        Err(GatewayError::PayloadRefused(reason)) => {
            tracing::error!(connection_id, reason, "the management API refused the payload");
            Ok(Sent::Refused)
        }
        Err(e) => Err(e),
    }
}

/// The frame for a target's encoding.
fn frame_for<'a>(target: &Target, json: &'a Frame, protobuf: Option<&'a Frame>) -> &'a Frame {
    match target.encoding {
        Encoding::Protobuf => protobuf.unwrap_or(json),
        Encoding::Json => json,
    }
}

/// One post's end.
#[derive(Clone, Copy)]
enum Sent {
    Posted,
    Gone,
    /// Can never be sent as it is (413/400): given up, not retried.
    Refused,
    Failed,
}

impl<S: ConnectionStore + SubscriptionStore + DeliveryStore + HistoryStore + ?Sized> DeliverDeps<'_, S> {
    /// Posts the batch's targets that are still to serve, and records how far it got.
    #[tracing::instrument(skip_all, fields(batch_id = %batch.batch_id, push_id = %batch.push.id))]
    pub async fn deliver_batch(&self, batch: &DeliveryBatch) -> Result<BatchOutcome, DeliverError> {
        let targets: Vec<&Target> = match self.store.get_batch(&batch.batch_id).await? {
            Some(BatchState::Done) => return Ok(BatchOutcome { skipped: true, ..Default::default() }),
            Some(BatchState::Remaining(ids)) => batch.targets.iter().filter(|t| ids.contains(&t.connection_id)).collect(),
            None => batch.targets.iter().collect(),
        };
        let expires_at = epoch_secs(now()) + RECORD_TTL_SECS;
        let json = encode_push(&batch.push, Encoding::Json);
        let protobuf = targets.iter().any(|t| t.encoding == Encoding::Protobuf).then(|| encode_push(&batch.push, Encoding::Protobuf));
        // The posts' times, added to the registry once for the batch.
        let post_times = Mutex::new(metrics::Observations::new(Histogram::PostSeconds));
        // First the posts the gateway answers at once (herald-local's in-process gateway), one
        // after another; the others (ack-mode targets, a gateway over the network, a retryable
        // answer) with bounded concurrency and retries.
        let mut results: Vec<(&Target, Sent)> = Vec::with_capacity(targets.len());
        // Owned: the posting futures then borrow nothing of the stream's items.
        let mut later: Vec<Target> = Vec::new();
        {
            // Timed one after another: one clock read per post, and no lock, for these.
            let mut at_once = metrics::Observations::new(Histogram::PostSeconds);
            let mut started = Instant::now();
            for target in targets {
                if target.ack_mode == AckMode::Required {
                    later.push(target.clone());
                    continue;
                }
                let Some(result) = self.gateway.post_now(&target.connection_id, frame_for(target, &json, protobuf.as_ref())) else {
                    later.push(target.clone());
                    continue;
                };
                let answered = Instant::now();
                at_once.observe(answered - started);
                started = answered;
                match settled(&target.connection_id, result) {
                    Ok(sent) => results.push((target, sent)),
                    // Nothing sent: tried again below, as any post.
                    Err(_) => later.push(target.clone()),
                }
            }
        }
        let budget = RateBudget::default();
        let (json, protobuf, budget, post_times) = (&json, protobuf.as_ref(), &budget, &post_times);
        let posted: Vec<(Target, Sent)> = futures::stream::iter(later)
            .map(|target| async move {
                let sent = self.send(&batch.push.id, &target, frame_for(&target, json, protobuf), budget, post_times, expires_at).await;
                (target, sent)
            })
            .buffer_unordered(POST_CONCURRENCY)
            .collect()
            .await;
        let mut outcome = BatchOutcome::default();
        for (target, sent) in results.into_iter().chain(posted.iter().map(|(t, s)| (t, *s))) {
            match sent {
                Sent::Posted => outcome.sent += 1,
                Sent::Refused => {}
                Sent::Gone => {
                    outcome.gone += 1;
                    if let Err(e) = herald_disconnect::forget(self.store, &target.connection_id).await {
                        tracing::warn!(connection_id = target.connection_id, error = %e, "could not delete a gone connection");
                    }
                }
                Sent::Failed => outcome.failed.push(target.connection_id.clone()),
            }
        }
        // The push's age once for the batch: its posts are all done by now.
        if let Some(latency) = age(&batch.push.created_at) {
            metrics::Observations::new(Histogram::DeliveryLatencySeconds).observe_n(latency, outcome.sent as u64);
        }
        let state = if outcome.failed.is_empty() { BatchState::Done } else { BatchState::Remaining(outcome.failed.clone()) };
        self.store.save_batch(&batch.batch_id, &state, expires_at).await?;
        metrics::add(Counter::Deliveries, outcome.sent as u64);
        metrics::add(Counter::Gone, outcome.gone as u64);
        metrics::add(Counter::DeliveriesFailed, outcome.failed.len() as u64);
        tracing::info!(sent = outcome.sent, gone = outcome.gone, failed = outcome.failed.len(), "batch");
        Ok(outcome)
    }

    /// One target, with up to [`POST_TRIES`] tries under the shared budget.
    async fn send(
        &self,
        push_id: &str,
        target: &Target,
        frame: &Frame,
        budget: &RateBudget,
        post_times: &Mutex<metrics::Observations>,
        expires_at: i64,
    ) -> Sent {
        let cid = target.connection_id.as_str();
        let mut backoff = FIRST_BACKOFF;
        for attempt in 1..=POST_TRIES {
            if attempt > 1 {
                metrics::inc(Counter::PostRetries);
            }
            budget.wait().await;
            let started = Instant::now();
            let result = if target.ack_mode == AckMode::Required {
                let redelivery = Redelivery { store: self.store, gateway: self.gateway, timer: self.timer, settings: self.settings };
                match redelivery.first_send(push_id, target, frame, expires_at).await {
                    Ok(()) => Ok(()),
                    Err(DeliveryError::Gateway(e)) => Err(e),
                    Err(e) => {
                        tracing::warn!(connection_id = cid, attempt, error = %e, "ack-mode send failed before its post");
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                        continue;
                    }
                }
            } else {
                self.gateway.post(cid, frame).await
            };
            post_times.lock().unwrap_or_else(|e| e.into_inner()).observe(started.elapsed());
            match settled(cid, result) {
                Ok(sent) => return sent,
                Err(GatewayError::Throttled) => budget.throttled(backoff),
                Err(e) => {
                    tracing::warn!(connection_id = cid, attempt, error = %e, "post failed");
                    tokio::time::sleep(backoff).await;
                }
            }
            backoff *= 2;
        }
        Sent::Failed
    }

    /// A batch of the fan-out queue: a batch with connections still to serve is reported for
    /// retry (the queue brings it back after the visibility timeout); one that is not a
    /// delivery batch too, so that the queue's redrive policy sets it aside.
    pub async fn handle_sqs(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for record in event.records {
            let id = record.message_id.clone().unwrap_or_default();
            let body = record.body.as_deref().unwrap_or_default();
            // A delivery batch (read first: nearly every message is one), or a connection's
            // recovery (`&since=` on connect), handed over by `$connect`.
            // In herald-local, a batch may come as it was sent, without its JSON.
            let batch = match herald::queue::in_process::<DeliveryBatch>(&id) {
                Some(batch) => Ok(batch),
                None => serde_json::from_str::<DeliveryBatch>(body).map(std::sync::Arc::new),
            };
            let result = match batch {
                Ok(batch) => self.deliver_batch(&batch).await.map(|o| o.failed.len()),
                Err(e) => match serde_json::from_str::<herald::history::RecoveryJob>(body) {
                    Ok(job) => {
                        let ttl = i64::try_from(self.settings.history_ttl.as_secs()).unwrap_or(i64::MAX);
                        if let Err(e) = herald::history::recover_connection(self.store, self.gateway, &job.recover, ttl).await {
                            tracing::warn!(message_id = id, error = %e, "recovery failed");
                        }
                        continue;
                    }
                    Err(_) => Err(e.into()),
                },
            };
            match result {
                Ok(0) => {}
                Ok(left) => {
                    tracing::info!(message_id = id, left, "batch comes back for the connections that failed");
                    response.batch_item_failures.push(failure(id));
                }
                Err(e) => {
                    tracing::warn!(message_id = id, error = %e, "will be retried");
                    response.batch_item_failures.push(failure(id));
                }
            }
        }
        response
    }
}

fn failure(id: String) -> BatchItemFailure {
    let mut f = BatchItemFailure::default();
    f.item_identifier = id;
    f
}

herald::lambda_diagnostic!(DeliverError);

#[cfg(test)]
mod tests;
