//! `redeliver`: consumes the redelivery delay queue. Each message is a check come due for one
//! delivery: still unacked, the same frame is sent again (and the next check scheduled); after
//! the last attempt the connection is closed; a gone connection's records are deleted.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use herald::config::DeliveryConfig;
use herald::delivery::{self, RedeliveryCheck, RedeliveryTimer, Resend};
use herald::gateway::Gateway;
use herald::store::{ConnectionStore, DeliveryStore, SubscriptionStore};

pub struct RedeliverDeps<'a, S: ?Sized> {
    pub store: &'a S,
    pub gateway: &'a dyn Gateway,
    pub timer: &'a dyn RedeliveryTimer,
    pub settings: &'a DeliveryConfig,
}

#[derive(Debug, thiserror::Error)]
pub enum RedeliverError {
    #[error("not a redelivery check: {0}")]
    BadCheck(#[from] serde_json::Error),
    #[error(transparent)]
    Delivery(#[from] delivery::DeliveryError),
    #[error(transparent)]
    Store(#[from] herald::store::StoreError),
}

impl<S: ConnectionStore + SubscriptionStore + DeliveryStore + ?Sized> RedeliverDeps<'_, S> {
    /// One check; `Gone` deletes the connection's records.
    pub async fn check(&self, check: &RedeliveryCheck) -> Result<Resend, RedeliverError> {
        let redelivery = delivery::Redelivery { store: self.store, gateway: self.gateway, timer: self.timer, settings: self.settings };
        let outcome = redelivery.redeliver(check).await?;
        if outcome == Resend::Gone {
            herald_disconnect::forget(self.store, &check.connection_id).await?;
        }
        tracing::info!(push_id = check.push_id, connection_id = check.connection_id, ?outcome, "redelivery check");
        Ok(outcome)
    }

    /// A batch of checks; a malformed one is logged and dropped (retrying cannot fix it), a
    /// failed one is reported for retry.
    pub async fn handle_sqs(&self, event: SqsEvent) -> SqsBatchResponse {
        let mut response = SqsBatchResponse::default();
        for record in event.records {
            let id = record.message_id.clone().unwrap_or_default();
            let check: RedeliveryCheck = match serde_json::from_str(record.body.as_deref().unwrap_or_default()) {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(message_id = id, error = %e, "dropping a malformed redelivery check");
                    continue;
                }
            };
            if let Err(e) = self.check(&check).await {
                tracing::warn!(message_id = id, error = %e, "will be retried");
                let mut failure = BatchItemFailure::default();
                failure.item_identifier = id;
                response.batch_item_failures.push(failure);
            }
        }
        response
    }
}

herald::lambda_diagnostic!(RedeliverError);
