//! History streams (CONTRACT §8) in the history table, keyed by stream and offset:
//!
//! - offset 0 of a stream is its head: `seq` (the newest offset), `epoch`, `expires_at`;
//! - offsets 1, 2, 3… are its pushes: `epoch`, `push` (the push's JSON, position included),
//!   `expires_at`;
//! - `#key:<idempotency key>` / 0 is a push's marker: where it was appended (`of_stream`,
//!   `of_offset`, `epoch`).
//!
//! An append is one transaction: the head moves from `seq` to `seq + 1` (a condition on the
//! `seq` read just before), the push is written at `seq + 1`, and the marker is created (a
//! condition that it does not exist). So offsets are contiguous and a push is readable the
//! moment the head names it; a retried push finds its marker and gets the same offset; two
//! appends racing for one offset: one wins, the other reads the head again.
//!
//! Items past their `expires_at` are ignored by every read and may be overwritten (TTL deletes
//! late). Connections' and subscriptions' fences and presence live in their own tables.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{ConditionCheck, Put, TransactWriteItem, Update};

use super::DynamoStore;
use super::error::{CONDITION_FAILED, Cancelled, OrStore, applied, map_err};
use super::item::{FromItem, Item, get_n, get_opt_n, get_s, key, n, name, s};
use super::query::{backoff, query_all};
use crate::domain::{Connection, Fence, Position, Push, StreamHead};
use crate::store::tables::{TableId, attr};
use crate::store::{FenceOf, HistoryStore, PresenceStore, StoreError, StoreResult};

const SEQ: &str = "seq";
const EPOCH: &str = "epoch";
const PUSH: &str = "push";
const OF_STREAM: &str = "of_stream";
const OF_OFFSET: &str = "of_offset";
/// Rounds of an append (or a head's creation) that keeps losing races before it gives up as
/// throttled: the queue retries the push later.
const ROUNDS: u32 = 12;

fn stream_key(stream: &str, offset: u64) -> Item {
    key([(attr::STREAM, s(stream)), (attr::OFFSET, n(offset))])
}

fn marker_stream(push_key: &str) -> String {
    format!("#key:{push_key}")
}

fn live(item: &Item, now: i64) -> StoreResult<bool> {
    let exp: i64 = get_n(item, attr::EXPIRES_AT)?;
    Ok(!crate::store::memory::expired(exp, now))
}

impl DynamoStore {
    async fn get_history_item(&self, k: Item) -> StoreResult<Option<Item>> {
        let table = self.table(TableId::History);
        let resp = self.client.get_item().table_name(table).set_key(Some(k)).consistent_read(true).send().await.or_store(table)?;
        let now = crate::domain::epoch_secs(crate::domain::now());
        match resp.item {
            Some(item) if live(&item, now)? => Ok(Some(item)),
            _ => Ok(None),
        }
    }

    async fn head(&self, stream: &str) -> StoreResult<Option<StreamHead>> {
        let Some(item) = self.get_history_item(stream_key(stream, 0)).await? else { return Ok(None) };
        Ok(Some(StreamHead { offset: get_n(&item, SEQ)?, epoch: get_s(&item, EPOCH)? }))
    }

    async fn marker(&self, push_key: &str) -> StoreResult<Option<Position>> {
        let Some(item) = self.get_history_item(stream_key(&marker_stream(push_key), 0)).await? else { return Ok(None) };
        Ok(Some(Position { stream: get_s(&item, OF_STREAM)?, offset: get_n(&item, OF_OFFSET)?, epoch: get_s(&item, EPOCH)? }))
    }

    /// A put of a new item that may replace only an expired one.
    fn put_fresh(&self, item: Item, now: i64) -> StoreResult<TransactWriteItem> {
        let put = Put::builder()
            .table_name(self.table(TableId::History))
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#s) OR #exp <= :now")
            .expression_attribute_names("#s", attr::STREAM)
            .expression_attribute_names("#exp", attr::EXPIRES_AT)
            .expression_attribute_values(":now", n(now))
            .build()?;
        Ok(TransactWriteItem::builder().put(put).build())
    }
}

#[async_trait]
impl HistoryStore for DynamoStore {
    async fn stream_head(&self, stream: &str, ttl_secs: i64) -> StoreResult<StreamHead> {
        let table = self.table(TableId::History);
        for _ in 0..ROUNDS {
            if let Some(head) = self.head(stream).await? {
                return Ok(head);
            }
            let now = crate::domain::epoch_secs(crate::domain::now());
            let head = StreamHead { offset: 0, epoch: crate::domain::new_epoch() };
            let mut item = stream_key(stream, 0);
            item.extend(key([(SEQ, n(0)), (EPOCH, s(head.epoch.as_str())), (attr::EXPIRES_AT, n(now + ttl_secs))]));
            let put = self
                .client
                .put_item()
                .table_name(table)
                .set_item(Some(item))
                .condition_expression("attribute_not_exists(#s) OR #exp <= :now")
                .expression_attribute_names("#s", attr::STREAM)
                .expression_attribute_names("#exp", attr::EXPIRES_AT)
                .expression_attribute_values(":now", n(now))
                .send()
                .await
                .or_store(table);
            if applied(put)? {
                return Ok(head);
            }
            // Another caller created it first: read theirs.
        }
        Err(StoreError::Throttled(format!("{table}: the head of {stream} keeps changing")))
    }

    async fn append_history(&self, stream: &str, push_key: &str, push: &Push, ttl_secs: i64) -> StoreResult<Position> {
        let table = self.table(TableId::History);
        if let Some(position) = self.marker(push_key).await? {
            return Ok(position);
        }
        for round in 0..ROUNDS {
            let now = crate::domain::epoch_secs(crate::domain::now());
            let expires_at = now + ttl_secs;
            let head = self.head(stream).await?;
            let (epoch, next) = match &head {
                Some(h) => (h.epoch.clone(), h.offset + 1),
                None => (crate::domain::new_epoch(), 1),
            };
            let position = Position { stream: stream.to_string(), offset: next, epoch: epoch.clone() };
            let kept = Push { position: Some(position.clone()), ..push.clone() };
            let json = serde_json::to_string(&kept).map_err(|e| StoreError::Backend(Box::new(e)))?;
            let mut update = Update::builder()
                .table_name(table)
                .set_key(Some(stream_key(stream, 0)))
                .update_expression("SET #seq = :next, #epoch = :epoch, #exp = :exp")
                .expression_attribute_names("#seq", SEQ)
                .expression_attribute_names("#epoch", EPOCH)
                .expression_attribute_names("#exp", attr::EXPIRES_AT)
                .expression_attribute_values(":next", n(next))
                .expression_attribute_values(":epoch", s(epoch.as_str()))
                .expression_attribute_values(":exp", n(expires_at));
            update = match &head {
                // The head we read is still the head.
                Some(h) => update.condition_expression("#seq = :seq AND #epoch = :epoch").expression_attribute_values(":seq", n(h.offset)),
                // No head, or an expired one: this append starts the stream (a new epoch).
                None => update
                    .condition_expression("attribute_not_exists(#s) OR #exp <= :now")
                    .expression_attribute_names("#s", attr::STREAM)
                    .expression_attribute_values(":now", n(now)),
            };
            let mut item = stream_key(stream, next);
            item.extend(key([(EPOCH, s(epoch.as_str())), (PUSH, s(json)), (attr::EXPIRES_AT, n(expires_at))]));
            let mut marker = stream_key(&marker_stream(push_key), 0);
            marker.extend(key([
                (OF_STREAM, s(stream)),
                (OF_OFFSET, n(next)),
                (EPOCH, s(epoch.as_str())),
                (attr::EXPIRES_AT, n(expires_at)),
            ]));
            let items = vec![
                TransactWriteItem::builder().update(update.build()?).build(),
                self.put_fresh(item, now)?,
                self.put_fresh(marker, now)?,
            ];
            let err = match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
                Ok(_) => return Ok(position),
                Err(err) => err,
            };
            let Some(cancelled) = Cancelled::of(&err) else { return Err(map_err(table, err)) };
            if cancelled.failed(2, CONDITION_FAILED) {
                // Appended before (an earlier try whose answer was lost): its offset stands.
                if let Some(position) = self.marker(push_key).await? {
                    return Ok(position);
                }
            }
            // Another append took this offset, or a conflict: read the head again.
            backoff(round).await;
        }
        Err(StoreError::Throttled(format!("{table}: appends to {stream} keep racing")))
    }

    async fn read_history(&self, stream: &str, epoch: &str, after: u64, limit: usize) -> StoreResult<Vec<Push>> {
        if limit == 0 {
            return Err(StoreError::Invalid("limit must be at least 1".into()));
        }
        let table = self.table(TableId::History);
        let query = self
            .client
            .query()
            .table_name(table)
            .consistent_read(true)
            .key_condition_expression("#s = :s AND #o > :after")
            .filter_expression("#epoch = :epoch AND #exp > :now")
            .expression_attribute_names("#s", attr::STREAM)
            .expression_attribute_names("#o", attr::OFFSET)
            .expression_attribute_names("#epoch", EPOCH)
            .expression_attribute_names("#exp", attr::EXPIRES_AT)
            .expression_attribute_values(":s", s(stream))
            .expression_attribute_values(":after", n(after))
            .expression_attribute_values(":epoch", s(epoch))
            .expression_attribute_values(":now", n(crate::domain::epoch_secs(crate::domain::now())));
        let items = query_all(table, query, Some(limit)).await?;
        items
            .iter()
            .map(|item| {
                let json = get_s(item, PUSH)?;
                serde_json::from_str(&json).map_err(|_| StoreError::Corrupt(format!("{table}: a push of {stream} is not a push")))
            })
            .collect()
    }

    async fn fence(&self, of: FenceOf<'_>) -> StoreResult<Option<Option<Fence>>> {
        let (table, k) = fence_key(self, of);
        let resp = self.client.get_item().table_name(table).set_key(Some(k)).consistent_read(true).send().await.or_store(table)?;
        let Some(item) = resp.item else { return Ok(None) };
        Ok(Some(get_opt_n::<i64>(&item, name::FENCE)?.map(Fence::from_i64)))
    }

    async fn go_live(&self, of: FenceOf<'_>, stream: &str, head: &StreamHead, force: bool) -> StoreResult<bool> {
        let (table, k) = fence_key(self, of);
        let update = Update::builder()
            .table_name(table)
            .set_key(Some(k))
            .update_expression("SET #f = :f")
            .condition_expression("attribute_exists(#c)")
            .expression_attribute_names("#f", name::FENCE)
            .expression_attribute_names("#c", attr::CONNECTION_ID)
            .expression_attribute_values(":f", n(Fence::LiveAfter(head.offset).to_i64()))
            .build()?;
        let mut items = vec![];
        if !force {
            let check = ConditionCheck::builder()
                .table_name(self.table(TableId::History))
                .set_key(Some(stream_key(stream, 0)))
                .condition_expression("#seq = :seq AND #epoch = :epoch")
                .expression_attribute_names("#seq", SEQ)
                .expression_attribute_names("#epoch", EPOCH)
                .expression_attribute_values(":seq", n(head.offset))
                .expression_attribute_values(":epoch", s(head.epoch.as_str()))
                .build()?;
            items.push(TransactWriteItem::builder().condition_check(check).build());
        }
        let at = items.len();
        items.push(TransactWriteItem::builder().update(update).build());
        for round in 0..ROUNDS {
            let err = match self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
                Ok(_) => return Ok(true),
                Err(err) => err,
            };
            let Some(cancelled) = Cancelled::of(&err) else { return Err(map_err(table, err)) };
            if cancelled.failed(at, CONDITION_FAILED) {
                // The connection or subscription is gone: nothing to set.
                return Ok(true);
            }
            if !force && cancelled.failed(0, CONDITION_FAILED) {
                return Ok(false);
            }
            backoff(round).await;
        }
        Err(StoreError::Throttled(format!("{table}: could not end a recovery")))
    }
}

fn fence_key<'a>(store: &'a DynamoStore, of: FenceOf<'_>) -> (&'a str, Item) {
    match of {
        FenceOf::Connection(id) => (store.table(TableId::Connections), key([(attr::CONNECTION_ID, s(id))])),
        FenceOf::Subscription { connection_id, event_name } => {
            (store.table(TableId::Subscriptions), key([(attr::CONNECTION_ID, s(connection_id)), (attr::EVENT_NAME, s(event_name))]))
        }
    }
}

#[async_trait]
impl PresenceStore for DynamoStore {
    async fn touch_connection(&self, connection_id: &str, now: i64) -> StoreResult<()> {
        let table = self.table(TableId::Connections);
        let update = self
            .client
            .update_item()
            .table_name(table)
            .set_key(Some(key([(attr::CONNECTION_ID, s(connection_id))])))
            .update_expression("SET #seen = :now")
            .condition_expression("attribute_exists(#c) AND (attribute_not_exists(#seen) OR #seen < :now)")
            .expression_attribute_names("#seen", name::LAST_SEEN)
            .expression_attribute_names("#c", attr::CONNECTION_ID)
            .expression_attribute_values(":now", n(now))
            .send()
            .await
            .or_store(table);
        applied(update)?;
        Ok(())
    }

    async fn connections(&self, connection_ids: &[String]) -> StoreResult<Vec<Connection>> {
        let mut ids: Vec<&String> = connection_ids.iter().collect();
        ids.sort_unstable();
        ids.dedup();
        let keys = ids.into_iter().map(|id| key([(attr::CONNECTION_ID, s(id.as_str()))])).collect();
        let items = self.batch_get(TableId::Connections, keys).await?;
        items.iter().map(Connection::from_item).collect()
    }
}
