use std::error::Error as StdError;

/// A store failure, typed so that callers can tell what happened without reading text.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The item is over DynamoDB's 400 KB limit.
    #[error("item too large: {0}")]
    ItemTooLarge(String),
    /// The table does not exist (wrong name or prefix, or not created).
    #[error("table not found: {0}")]
    TableMissing(String),
    /// A conditional write lost (a race, or the item was not in the expected state).
    #[error("conditional write lost: {0}")]
    ConditionFailed(String),
    /// The store throttled the request after the SDK's own retries.
    #[error("throttled: {0}")]
    Throttled(String),
    /// A referenced item does not exist (e.g. a message for a channel with no conversation).
    #[error("not found: {0}")]
    NotFound(String),
    /// The request itself is invalid for the store (bad cursor, bad key).
    #[error("invalid request: {0}")]
    Invalid(String),
    /// An item in the table does not have the shape Herald writes.
    #[error("corrupt item: {0}")]
    Corrupt(String),
    /// Any other backend failure (network, credentials, service error).
    #[error("store backend failed: {0}")]
    Backend(#[source] Box<dyn StdError + Send + Sync>),
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        matches!(self, Self::Throttled(_) | Self::Backend(_))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;
