//! Acks and redelivery (seed 003): a push to an ack-mode connection is sent again with the same
//! id when it is not acked in time or when the client nacks it; after the last attempt the
//! connection is told (`ack_timeout`) and closed. Used by `$default` (nacks), the fan-out's
//! delivery workers (first sends) and `redeliver` (checks come due).
//!
//! Nothing can be lost between two writes: every send of an ack-mode delivery is preceded by the
//! redelivery check for that very attempt ([`RedeliveryCheck::attempt`]), so a crash or a failed
//! post after it leaves a check that sends again. A check for an attempt the delivery has moved
//! past (a nack or another check got there first) is stale and dropped, so an old check never
//! resends early nor closes the connection after a newer copy.

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{Delivery, Encoding, Target};
use crate::gateway::{Frame, Gateway, GatewayError};
use crate::protocol::encode_error;
use crate::store::{DeliveryStore, StoreError};

/// What a resend did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// Sent again; this was send number `n`.
    Sent(u32),
    /// Acked meanwhile: nothing to do.
    Acked,
    /// No such delivery (unknown push, or its record expired).
    Unknown,
    /// The check was for an attempt the delivery has moved past: dropped.
    Stale,
    /// The last attempt went unacked: the connection was told and closed.
    Closed,
    /// The connection is gone (410): its records should be deleted.
    Gone,
}

#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
    #[error("could not schedule the next redelivery check: {0}")]
    Schedule(#[source] crate::queue::QueueError),
}

/// Schedules the next "is it acked yet?" check of a delivery: an SQS delay queue in the cloud,
/// a timer in herald-local.
#[async_trait]
pub trait RedeliveryTimer: Send + Sync {
    async fn schedule(&self, check: &RedeliveryCheck, after: Duration) -> Result<(), crate::queue::QueueError>;
}

/// The body of a redelivery check message: the delivery, and the send it checks.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RedeliveryCheck {
    pub push_id: String,
    pub connection_id: String,
    /// The delivery's send count when the check was made; absent in checks of older versions
    /// (0: checked against whatever the count is).
    #[serde(default)]
    pub attempt: u32,
}

/// The frame of a stored delivery, as it was first sent.
fn stored_frame(delivery: &Delivery) -> Result<Frame, StoreError> {
    if delivery.binary {
        Ok(Frame::Binary(delivery.frame.clone()))
    } else {
        String::from_utf8(delivery.frame.clone())
            .map(|t| Frame::Text(t.into()))
            .map_err(|_| StoreError::Corrupt(format!("delivery {} frame is not UTF-8", delivery.push_id)))
    }
}

/// Everything a send of an ack-mode delivery needs.
pub struct Redelivery<'a, S: ?Sized> {
    pub store: &'a S,
    pub gateway: &'a dyn Gateway,
    pub timer: &'a dyn RedeliveryTimer,
    pub settings: &'a crate::config::DeliveryConfig,
}

impl<S: DeliveryStore + ?Sized> Redelivery<'_, S> {
    async fn schedule(&self, push_id: &str, connection_id: &str, attempt: u32) -> Result<(), DeliveryError> {
        let check = RedeliveryCheck { push_id: push_id.into(), connection_id: connection_id.into(), attempt };
        self.timer.schedule(&check, self.settings.ack_timeout).await.map_err(DeliveryError::Schedule)
    }

    /// The first send of a push to an ack-mode target: the delivery record, then its check,
    /// then the post. On a retry (the record exists, unacked) the stored frame is checked and
    /// sent again under its current attempt, since the earlier try may have died before its
    /// check was scheduled. Any error leaves the delivery for the caller to retry.
    pub async fn first_send(&self, push_id: &str, target: &Target, frame: &Frame, expires_at: i64) -> Result<(), DeliveryError> {
        let cid = target.connection_id.as_str();
        let record = Delivery {
            push_id: push_id.to_string(),
            connection_id: cid.to_string(),
            attempts: 1,
            acked: false,
            frame: frame.as_bytes().to_vec(),
            binary: frame.is_binary(),
            expires_at,
        };
        let (attempt, frame) = if self.store.create_delivery(&record).await? {
            (1, frame.clone())
        } else {
            match self.store.get_delivery(push_id, cid).await? {
                Some(d) if d.acked => return Ok(()),
                Some(d) => (d.attempts, stored_frame(&d)?),
                // Created a moment ago and expired already: nothing to redeliver.
                None => return Ok(()),
            }
        };
        self.schedule(push_id, cid, attempt).await?;
        self.gateway.post(cid, &frame).await?;
        Ok(())
    }

    /// Sends an unacked delivery again (a check come due, or a nack), or tells and closes the
    /// connection after `max_attempts` sends. `expected`: the send count the check was made
    /// for (`None` for a nack, which acts on whatever the count is now).
    pub async fn resend(&self, push_id: &str, connection_id: &str, expected: Option<u32>) -> Result<Resend, DeliveryError> {
        let Some(delivery) = self.store.get_delivery(push_id, connection_id).await? else { return Ok(Resend::Unknown) };
        if delivery.acked {
            return Ok(Resend::Acked);
        }
        if let Some(expected) = expected.filter(|e| *e != 0 && *e != delivery.attempts) {
            tracing::info!(push_id, connection_id, expected, attempts = delivery.attempts, "stale redelivery check: dropped");
            return Ok(Resend::Stale);
        }
        if delivery.attempts >= self.settings.max_attempts {
            tracing::info!(push_id, connection_id, attempts = delivery.attempts, "unacked after the last attempt: closing");
            return self.close_for_ack_timeout(&delivery).await;
        }
        let next = delivery.attempts + 1;
        // The check for the next send exists before the count moves and before the frame goes out.
        self.schedule(push_id, connection_id, next).await?;
        let Some(attempt) = self.store.record_attempt(push_id, connection_id, delivery.attempts).await? else {
            // Acked, or another check or nack moved the count meanwhile: theirs is the live one.
            return Ok(Resend::Stale);
        };
        match self.gateway.post(connection_id, &stored_frame(&delivery)?).await {
            Ok(()) => {
                crate::metrics::inc(crate::metrics::Counter::Redeliveries);
                Ok(Resend::Sent(attempt))
            }
            Err(GatewayError::Gone(_)) => Ok(Resend::Gone),
            Err(e) => Err(e.into()),
        }
    }

    /// CONTRACT §3: an `ack_timeout` error frame (API Gateway does not let the backend choose a
    /// close code), then the close.
    async fn close_for_ack_timeout(&self, delivery: &Delivery) -> Result<Resend, DeliveryError> {
        let cid = delivery.connection_id.as_str();
        let message = format!("push {} was not acked after {} sends: closing", delivery.push_id, delivery.attempts);
        // In the connection's encoding: the delivery's frame tells it.
        let encoding = if delivery.binary { Encoding::Protobuf } else { Encoding::Json };
        match self.gateway.post(cid, &encode_error("ack_timeout", &message, encoding)).await {
            Ok(()) | Err(GatewayError::PayloadRefused(_)) => {}
            Err(GatewayError::Gone(_)) => return Ok(Resend::Gone),
            Err(e) => return Err(e.into()),
        }
        crate::metrics::inc(crate::metrics::Counter::AckTimeouts);
        match self.gateway.close(cid).await {
            Ok(()) => Ok(Resend::Closed),
            Err(GatewayError::Gone(_)) => Ok(Resend::Gone),
            Err(e) => Err(e.into()),
        }
    }

    /// A redelivery check come due. A [`Resend::Gone`] outcome leaves the connection's records
    /// to the caller.
    pub async fn redeliver(&self, check: &RedeliveryCheck) -> Result<Resend, DeliveryError> {
        self.resend(&check.push_id, &check.connection_id, Some(check.attempt)).await
    }
}
