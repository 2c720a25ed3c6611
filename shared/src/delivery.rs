//! Acks and redelivery (seed 003): a push to an ack-mode connection is sent again with the same
//! id when it is not acked in time or when the client nacks it; after the last attempt the
//! connection is closed. Used by `$default` (nacks), `dispatch` and `redeliver`.

use std::time::Duration;

use async_trait::async_trait;

use crate::gateway::{Frame, Gateway, GatewayError};
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
    /// The last attempt went unacked: the connection was closed.
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
    async fn schedule(&self, push_id: &str, connection_id: &str, after: Duration) -> Result<(), crate::queue::QueueError>;
}

/// The body of a redelivery check message.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RedeliveryCheck {
    pub push_id: String,
    pub connection_id: String,
}

/// Sends an unacked delivery again, or closes the connection after `max_attempts` sends.
pub async fn resend<S: DeliveryStore + ?Sized>(
    store: &S,
    gateway: &dyn Gateway,
    push_id: &str,
    connection_id: &str,
    max_attempts: u32,
) -> Result<Resend, DeliveryError> {
    let Some(delivery) = store.get_delivery(push_id, connection_id).await? else { return Ok(Resend::Unknown) };
    if delivery.acked {
        return Ok(Resend::Acked);
    }
    if delivery.attempts >= max_attempts {
        tracing::info!(push_id, connection_id, attempts = delivery.attempts, "unacked after the last attempt: closing");
        return match gateway.close(connection_id).await {
            Ok(()) => Ok(Resend::Closed),
            Err(GatewayError::Gone(_)) => Ok(Resend::Gone),
            Err(e) => Err(e.into()),
        };
    }
    let Some(attempt) = store.record_attempt(push_id, connection_id).await? else { return Ok(Resend::Acked) };
    let frame = if delivery.binary {
        Frame::Binary(delivery.frame)
    } else {
        Frame::Text(String::from_utf8(delivery.frame).map_err(|_| StoreError::Corrupt(format!("delivery {push_id} frame is not UTF-8")))?)
    };
    match gateway.post(connection_id, &frame).await {
        Ok(()) => Ok(Resend::Sent(attempt)),
        Err(GatewayError::Gone(_)) => Ok(Resend::Gone),
        Err(e) => Err(e.into()),
    }
}

/// A redelivery check come due: resend if still unacked, and schedule the next check.
/// A [`Resend::Gone`] outcome leaves the connection's records to the caller.
pub async fn redeliver<S: DeliveryStore + ?Sized>(
    store: &S,
    gateway: &dyn Gateway,
    timer: &dyn RedeliveryTimer,
    settings: &crate::config::DeliveryConfig,
    check: &RedeliveryCheck,
) -> Result<Resend, DeliveryError> {
    let outcome = resend(store, gateway, &check.push_id, &check.connection_id, settings.max_attempts).await?;
    if let Resend::Sent(_) = outcome {
        timer.schedule(&check.push_id, &check.connection_id, settings.ack_timeout).await.map_err(DeliveryError::Schedule)?;
    }
    Ok(outcome)
}
