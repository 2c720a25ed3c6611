//! Paging and batching, written once: key-equality queries that follow `LastEvaluatedKey`, and
//! batch reads and deletes that retry what DynamoDB left unprocessed.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder;
use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, KeysAndAttributes, WriteRequest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::DynamoStore;
use super::error::OrStore;
use super::item::{Item, s};
use crate::store::tables::TableId;
use crate::store::{StoreError, StoreResult};

/// BatchGetItem reads at most 100 keys, BatchWriteItem writes at most 25 items.
const BATCH_GET_MAX: usize = 100;
const BATCH_WRITE_MAX: usize = 25;
/// Rounds of retrying unprocessed keys before giving up as throttled.
const UNPROCESSED_ROUNDS: u32 = 10;

/// A page size for DynamoDB's `Limit` (an `i32`, at least 1).
pub(crate) fn limit_i32(limit: usize) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX).max(1)
}

/// The opaque cursor of a page: its `LastEvaluatedKey` (string attributes) as base64 JSON.
pub(crate) fn encode_cursor(last_key: &Item) -> StoreResult<String> {
    let plain = last_key
        .iter()
        .map(|(k, v)| match v {
            AttributeValue::S(text) => Ok((k.as_str(), text.as_str())),
            _ => Err(StoreError::Corrupt(format!("key attribute {k:?} is not a string"))),
        })
        .collect::<StoreResult<BTreeMap<&str, &str>>>()?;
    let json = serde_json::to_vec(&plain).map_err(|e| StoreError::Backend(Box::new(e)))?;
    Ok(URL_SAFE_NO_PAD.encode(json))
}

/// The key attributes of an [`encode_cursor`] cursor, which must be exactly `expected`.
pub(crate) fn decode_key_cursor(cursor: &str, expected: &[&str]) -> StoreResult<BTreeMap<String, String>> {
    let invalid = || StoreError::Invalid("malformed page cursor".into());
    let json = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
    let plain: BTreeMap<String, String> = serde_json::from_slice(&json).map_err(|_| invalid())?;
    if plain.len() != expected.len() || !expected.iter().all(|k| plain.contains_key(*k)) {
        return Err(invalid());
    }
    Ok(plain)
}

/// Waits before retrying what DynamoDB left unprocessed or cancelled: 20 ms doubling to 1 s, jittered.
pub(crate) async fn backoff(round: u32) {
    let base = 20u64.saturating_mul(1 << round.min(6)).min(1000);
    let jitter = u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % (base / 2 + 1);
    tokio::time::sleep(Duration::from_millis(base / 2 + jitter)).await;
}

impl DynamoStore {
    /// A Query for the items whose `attr` equals `value`, on a table or one of its indexes.
    pub(crate) fn query_eq(&self, table: TableId, index: Option<&str>, attr: &str, value: &str) -> QueryFluentBuilder {
        self.client
            .query()
            .table_name(self.table(table))
            .set_index_name(index.map(str::to_string))
            .key_condition_expression("#k = :k")
            .expression_attribute_names("#k", attr)
            .expression_attribute_values(":k", s(value))
    }

    /// Reads the items of `keys` (any number, without duplicates) with strongly consistent reads,
    /// 100 at a time. The order of the result is DynamoDB's.
    pub(crate) async fn batch_get(&self, table: TableId, keys: Vec<Item>) -> StoreResult<Vec<Item>> {
        let name = self.table(table);
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(BATCH_GET_MAX) {
            let mut pending = Some(KeysAndAttributes::builder().set_keys(Some(chunk.to_vec())).consistent_read(true).build()?);
            let mut round = 0;
            while let Some(request) = pending.take() {
                if round > 0 {
                    if round > UNPROCESSED_ROUNDS {
                        return Err(StoreError::Throttled(format!("{name}: keys left unprocessed")));
                    }
                    backoff(round).await;
                }
                round += 1;
                let resp = self.client.batch_get_item().request_items(name, request).send().await.or_store(name)?;
                out.extend(resp.responses.and_then(|mut r| r.remove(name)).unwrap_or_default());
                pending = resp.unprocessed_keys.and_then(|mut u| u.remove(name)).filter(|k| !k.keys().is_empty());
            }
        }
        Ok(out)
    }

    /// Deletes the items of `keys`, 25 at a time.
    pub(crate) async fn batch_delete(&self, table: TableId, keys: Vec<Item>) -> StoreResult<()> {
        let name = self.table(table);
        for chunk in keys.chunks(BATCH_WRITE_MAX) {
            let mut pending = chunk
                .iter()
                .map(|k| Ok(WriteRequest::builder().delete_request(DeleteRequest::builder().set_key(Some(k.clone())).build()?).build()))
                .collect::<StoreResult<Vec<_>>>()?;
            let mut round = 0;
            while !pending.is_empty() {
                if round > 0 {
                    if round > UNPROCESSED_ROUNDS {
                        return Err(StoreError::Throttled(format!("{name}: writes left unprocessed")));
                    }
                    backoff(round).await;
                }
                round += 1;
                let resp = self.client.batch_write_item().request_items(name, pending).send().await.or_store(name)?;
                pending = resp.unprocessed_items.and_then(|mut u| u.remove(name)).unwrap_or_default();
            }
        }
        Ok(())
    }
}

/// Every item of a query, following `LastEvaluatedKey` past DynamoDB's 1 MB pages; with `max`,
/// at most that many (each request's `Limit` is what is still wanted).
pub(crate) async fn query_all(table: &str, query: QueryFluentBuilder, max: Option<usize>) -> StoreResult<Vec<Item>> {
    let mut out: Vec<Item> = Vec::new();
    let mut start: Option<Item> = None;
    loop {
        let mut request = query.clone().set_exclusive_start_key(start.take());
        if let Some(max) = max {
            request = request.limit(limit_i32(max - out.len()));
        }
        let resp = request.send().await.or_store(table)?;
        out.extend(resp.items.unwrap_or_default());
        match resp.last_evaluated_key {
            Some(k) if !k.is_empty() && max.is_none_or(|m| out.len() < m) => start = Some(k),
            _ => return Ok(out),
        }
    }
}
