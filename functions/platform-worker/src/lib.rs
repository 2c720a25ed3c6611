//! The platform's worker (CONTRACT §9): the platform queue's messages — a mailing's or an event's
//! fire, a page of its audience to expand, a page's jobs, a held notification to release — each
//! handed to the planner ([`herald::platform::planner`]), the code `POST /events` runs too.
//!
//! Partial batch failures (`ReportBatchItemFailures`): a record that failed (a store or a queue
//! unavailable, a send worth another try) comes back after the visibility timeout and finally goes
//! to the dead-letter queue; what it had done is not done again (every step is done once). A body
//! that is no platform message can never succeed: it is reported failed too, so that it ends in the
//! dead-letter queue where it can be looked at, not dropped.

use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent};
use herald::platform::planner::Planner;
use herald::platform::schedule::PlatformMessage;

/// Handles a batch; the ids of the records that failed are in the response.
pub async fn handle_sqs(planner: &Planner<'_>, event: SqsEvent) -> SqsBatchResponse {
    let outcomes = futures::future::join_all(event.records.into_iter().map(|record| async move {
        let id = record.message_id.clone().unwrap_or_default();
        let body = record.body.as_deref().unwrap_or_default();
        let message: PlatformMessage = match serde_json::from_str(body) {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(message_id = id, error = %e, "not a platform message: left for the dead-letter queue");
                return Some(id);
            }
        };
        match planner.handle(&message).await {
            Ok(()) => None,
            Err(e) => {
                tracing::error!(message_id = id, error = %e, "failed: the queue hands it over again");
                Some(id)
            }
        }
    }))
    .await;
    let mut response = SqsBatchResponse::default();
    response.batch_item_failures = outcomes
        .into_iter()
        .flatten()
        .map(|item_identifier| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = item_identifier;
            f
        })
        .collect();
    response
}
