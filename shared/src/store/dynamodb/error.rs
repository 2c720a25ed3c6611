//! SDK errors to [`StoreError`], in one place.

use std::error::Error as StdError;
use std::fmt::Debug;

use aws_sdk_dynamodb::error::{BuildError, ProvideErrorMetadata, SdkError};
use aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError;

use crate::store::{StoreError, StoreResult};

/// Maps an SDK error of a call on `table` (for calls on several tables: their names).
///
/// The SDK error itself is kept (boxed) for [`StoreError::Backend`], never flattened to text.
pub(crate) fn map_err<E, R>(table: &str, err: SdkError<E, R>) -> StoreError
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: Debug + Send + Sync + 'static,
{
    let code = err.code().unwrap_or_default().to_string();
    let message = err.message().unwrap_or_default().to_string();
    match code.as_str() {
        "ResourceNotFoundException" => StoreError::TableMissing(table.to_string()),
        "ConditionalCheckFailedException" => StoreError::ConditionFailed(table.to_string()),
        "ValidationException" if is_size_message(&message) => StoreError::ItemTooLarge(format!("{table}: {message}")),
        "ProvisionedThroughputExceededException" | "ThrottlingException" | "RequestLimitExceeded" => {
            StoreError::Throttled(format!("{table}: {code}"))
        }
        "TransactionCanceledException" => match cancellation_error(&err) {
            Some(e) => e,
            None => StoreError::Backend(Box::new(err)),
        },
        _ => StoreError::Backend(Box::new(err)),
    }
}

/// `?` on an SDK result: `call.send().await.or_store(table)?`.
pub(crate) trait OrStore<T> {
    fn or_store(self, table: &str) -> StoreResult<T>;
}

impl<T, E, R> OrStore<T> for Result<T, SdkError<E, R>>
where
    E: ProvideErrorMetadata + StdError + Send + Sync + 'static,
    R: Debug + Send + Sync + 'static,
{
    fn or_store(self, table: &str) -> StoreResult<T> {
        self.map_err(|e| map_err(table, e))
    }
}

/// `Ok(true)` when a conditional write went through, `Ok(false)` when its condition failed.
pub(crate) fn applied<T>(result: StoreResult<T>) -> StoreResult<bool> {
    match result {
        Ok(_) => Ok(true),
        Err(StoreError::ConditionFailed(_)) => Ok(false),
        Err(e) => Err(e),
    }
}

/// A request the SDK could not build (a required field left out): a bug, reported as a backend failure.
impl From<BuildError> for StoreError {
    fn from(e: BuildError) -> Self {
        StoreError::Backend(Box::new(e))
    }
}

fn is_size_message(message: &str) -> bool {
    message.contains("Item size") || message.contains("size has exceeded")
}

/// The per-item reasons of a cancelled transaction, in request order (`None` for an item that
/// did not cause it).
pub(crate) fn cancellation_codes<R>(err: &SdkError<TransactWriteItemsError, R>) -> Option<Vec<Option<String>>> {
    match err.as_service_error()? {
        TransactWriteItemsError::TransactionCanceledException(e) => {
            Some(e.cancellation_reasons().iter().map(|r| r.code().filter(|c| !c.is_empty() && *c != "None").map(str::to_string)).collect())
        }
        _ => None,
    }
}

/// A transaction item's cancellation reason: its condition failed.
pub(crate) const CONDITION_FAILED: &str = "ConditionalCheckFailed";
/// A transaction item's cancellation reason: another transaction was writing the item.
pub(crate) const CONFLICT: &str = "TransactionConflict";

/// How a cancelled transaction's items fared, by position in the request.
pub(crate) struct Cancelled(Vec<Option<String>>);

impl Cancelled {
    pub(crate) fn of<R>(err: &SdkError<TransactWriteItemsError, R>) -> Option<Self> {
        cancellation_codes(err).map(Self)
    }

    pub(crate) fn failed(&self, index: usize, code: &str) -> bool {
        self.0.get(index).and_then(Option::as_deref) == Some(code)
    }

    pub(crate) fn conflict(&self) -> bool {
        self.0.iter().any(|c| c.as_deref() == Some(CONFLICT))
    }
}

/// What a cancelled transaction means when the caller has no better interpretation: an item over
/// the size limit, throttling, or a lost condition. `None`: a conflict or an unknown reason.
fn cancellation_error<E, R>(err: &SdkError<E, R>) -> Option<StoreError>
where
    E: StdError + 'static,
{
    // Only TransactWriteItems is cancelled with reasons Herald acts on.
    let service: &dyn StdError = err.as_service_error()?;
    let Some(TransactWriteItemsError::TransactionCanceledException(cancelled)) = service.downcast_ref::<TransactWriteItemsError>() else {
        return None;
    };
    let reasons = cancelled.cancellation_reasons();
    let has = |code: &str| reasons.iter().any(|r| r.code() == Some(code));
    if let Some(m) = reasons.iter().filter(|r| r.code() == Some("ValidationError")).find_map(|r| r.message().filter(|m| is_size_message(m)))
    {
        Some(StoreError::ItemTooLarge(m.to_string()))
    } else if has("ThrottlingError") || has("ProvisionedThroughputExceeded") || has("RequestLimitExceeded") {
        Some(StoreError::Throttled("transaction cancelled by throttling".into()))
    } else if has("ConditionalCheckFailed") {
        Some(StoreError::ConditionFailed("transaction".into()))
    } else {
        None
    }
}
