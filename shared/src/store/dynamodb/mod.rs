//! DynamoDB implementation of the store traits: the cloud, DynamoDB Local, moto and LocalStack.
//!
//! Every read is a `GetItem`, a `BatchGetItem` or a `Query` on a key or on an index of
//! [`tables`](super::tables); nothing scans. Writes that must happen once are conditional writes,
//! atomic counters or transactions. The observable behaviour is the in-memory store's
//! ([`MemoryStore`](super::memory::MemoryStore)); the contract suite in `tests/` runs on both.
//!
//! - [`error`]: SDK errors to [`StoreError`](super::StoreError), in one place;
//! - [`item`]: items to and from the domain types;
//! - [`query`]: paging, batches and the key-equality queries every capability uses;
//! - [`admin`]: creating and deleting the tables;
//! - one file per capability.

mod admin;
mod connections;
mod conversations;
mod deliveries;
mod error;
mod event_types;
mod history;
mod item;
mod mailings;
mod members;
mod messages;
mod notifications;
mod query;
mod subscriptions;
mod templates;
mod users;

use aws_sdk_dynamodb::Client;

use super::tables::{TableId, TableNames};

/// The DynamoDB store: an SDK client and the names of Herald's tables.
#[derive(Debug, Clone)]
pub struct DynamoStore {
    pub(crate) client: Client,
    pub(crate) tables: TableNames,
}

impl DynamoStore {
    pub fn new(client: Client, tables: TableNames) -> Self {
        Self { client, tables }
    }

    /// The names of the tables this store reads and writes.
    pub fn tables(&self) -> &TableNames {
        &self.tables
    }

    /// The SDK client.
    pub fn client(&self) -> &Client {
        &self.client
    }

    pub(crate) fn table(&self, id: TableId) -> &str {
        self.tables.get(id)
    }
}
