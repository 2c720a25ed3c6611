//! DynamoDB Local for the tests: a client on `HERALD_TEST_DYNAMODB_ENDPOINT`, and a store with
//! tables of its own (a fresh prefix per call), so that tests never see each other's data.
//!
//! `./scripts/test` starts DynamoDB Local and sets the variable. Without it the tests fail: they
//! are never skipped silently.

use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::Credentials;
use herald::store::dynamodb::DynamoStore;
use herald::store::tables::TableNames;

/// The variable naming DynamoDB Local's endpoint.
pub const ENDPOINT_VAR: &str = "HERALD_TEST_DYNAMODB_ENDPOINT";

/// DynamoDB Local's endpoint; panics with how to get one when the variable is unset.
pub fn endpoint() -> String {
    match std::env::var(ENDPOINT_VAR) {
        Ok(e) if !e.trim().is_empty() => e,
        _ => panic!(
            "{ENDPOINT_VAR} is not set: the DynamoDB contract tests need DynamoDB Local. Run them with \
             `./scripts/test` (it starts DynamoDB Local and sets {ENDPOINT_VAR}), or start DynamoDB Local \
             yourself and set {ENDPOINT_VAR}=http://127.0.0.1:PORT"
        ),
    }
}

/// SDK settings for DynamoDB Local. The credentials are always the same static ones: without
/// `-sharedDb`, DynamoDB Local keeps separate data per access key and region.
pub async fn local_sdk_config() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(endpoint())
        .region(Region::new("us-east-1"))
        .credentials_provider(Credentials::new("test", "test", None, None, "static"))
        .load()
        .await
}

/// A raw SDK client for DynamoDB Local.
pub async fn local_client() -> Client {
    Client::new(&local_sdk_config().await)
}

/// A fresh table prefix: `t{uuid}-`.
pub fn unique_prefix() -> String {
    format!("t{}-", uuid::Uuid::new_v4().simple())
}

/// A store over tables of its own, created and active.
pub async fn local_store() -> DynamoStore {
    let store = DynamoStore::new(local_client().await, TableNames::with_prefix(&unique_prefix()));
    if let Err(e) = store.create_tables().await {
        panic!("creating the tables on DynamoDB Local ({}) failed: {e:?}", endpoint());
    }
    store
}

/// A store whose tables were never created.
pub async fn store_without_tables() -> DynamoStore {
    DynamoStore::new(local_client().await, TableNames::with_prefix(&unique_prefix()))
}
