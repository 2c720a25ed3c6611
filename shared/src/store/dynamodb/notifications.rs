//! History records: one item per notification and channel (key `notification_id`), listed
//! newest first through `by_user` (on `user_id`) or `by_event`, both ordered by `created_key`.
//! `by_event` is keyed on `event_shard`: the event's (or mailing's) id and the shard of the user
//! ([`HISTORY_SHARDS`] of them), so that a mailing to 100,000 users spreads its 200,000 index
//! writes over 16 partitions instead of one (a partition takes about 1,000 writes a second, and an
//! index that falls behind throttles the table's own writes); a listing by event reads the 16
//! shards in parallel and merges them newest first. An event's idempotency marker is an item of
//! the same table (`event:<id>`, without user or event attributes, so no index holds it). Both
//! carry the TTL.

use async_trait::async_trait;

use super::DynamoStore;
use super::error::{OrStore, applied};
use super::item::{FromItem, Item, ToItem, get_enum, get_n, get_opt_s, get_s, key, n, name, s};
use super::query::{decode_key_cursor, encode_cursor, limit_i32};
use crate::domain::{Notification, NotificationFilter, epoch_secs, now};
use crate::store::memory::check_history_query;
use crate::store::tables::{BY_EVENT, BY_USER, TableId, attr};
use crate::store::{NotificationStore, Page, StoreError, StoreResult, event_shard, event_shard_key};

/// The shards of an event's (or mailing's) records in `by_event`. Stored keys depend on it.
pub const HISTORY_SHARDS: u32 = 16;

/// The `by_event` key of a record of `source` (an event or mailing id) for `user_id`.
fn history_shard_key(source: &str, user_id: &str) -> String {
    event_shard_key(source, event_shard(user_id) % HISTORY_SHARDS)
}

/// The attribute that marks a mailing's record.
const MAILING_MARK: &str = "mailing";

/// The marker item's key of an event id.
fn event_marker(event_id: &str) -> String {
    format!("event:{event_id}")
}

impl ToItem for Notification {
    fn to_item(&self) -> Item {
        let mut item = key([
            (attr::NOTIFICATION_ID, s(self.id.as_str())),
            (attr::USER_ID, s(self.user_id.as_str())),
            (attr::CREATED_KEY, s(self.created_key())),
            (name::CHANNEL, s(self.channel.as_str())),
            (name::STATUS, s(self.status.as_str())),
            (name::CREATED_AT, s(self.created_at.as_str())),
            (name::UPDATED_AT, s(self.updated_at.as_str())),
            (attr::EXPIRES_AT, n(self.expires_at)),
        ]);
        // A mailing's records are on `by_event` under the mailing's id (ids are UUIDs: no event
        // shares one), marked as a mailing's.
        if self.mailing_id.is_some() {
            item.insert(MAILING_MARK.into(), aws_sdk_dynamodb::types::AttributeValue::Bool(true));
        }
        let source = self.event_id.clone().or_else(|| self.mailing_id.clone());
        if let Some(source) = &source {
            item.insert(attr::EVENT_SHARD.into(), s(history_shard_key(source, &self.user_id)));
        }
        for (attr_name, value) in [(attr::EVENT_ID, &source), (name::REASON, &self.reason), (name::HELD_UNTIL, &self.held_until)] {
            if let Some(v) = value {
                item.insert(attr_name.into(), s(v.as_str()));
            }
        }
        item
    }
}

impl FromItem for Notification {
    fn from_item(item: &Item) -> StoreResult<Self> {
        let source = get_opt_s(item, attr::EVENT_ID)?;
        let mailing = matches!(item.get(MAILING_MARK), Some(aws_sdk_dynamodb::types::AttributeValue::Bool(true)));
        Ok(Self {
            id: get_s(item, attr::NOTIFICATION_ID)?,
            user_id: get_s(item, attr::USER_ID)?,
            channel: get_enum(item, name::CHANNEL)?,
            status: get_enum(item, name::STATUS)?,
            reason: get_opt_s(item, name::REASON)?,
            event_id: if mailing { None } else { source.clone() },
            mailing_id: if mailing { source } else { None },
            held_until: get_opt_s(item, name::HELD_UNTIL)?,
            created_at: get_s(item, name::CREATED_AT)?,
            updated_at: get_s(item, name::UPDATED_AT)?,
            expires_at: get_n(item, attr::EXPIRES_AT)?,
        })
    }
}

/// A page's start: the key attributes of the last record returned (table key and index key).
fn cursor_of(n: &Notification, index_attr: &str, index_value: &str) -> StoreResult<String> {
    encode_cursor(&key([(attr::NOTIFICATION_ID, s(n.id.as_str())), (index_attr, s(index_value)), (attr::CREATED_KEY, s(n.created_key()))]))
}

#[async_trait]
impl NotificationStore for DynamoStore {
    async fn claim_event(&self, event_id: &str, expires_at: i64) -> StoreResult<bool> {
        let table = self.table(TableId::Notifications);
        let put = self
            .client
            .put_item()
            .table_name(table)
            .set_item(Some(key([(attr::NOTIFICATION_ID, s(event_marker(event_id))), (attr::EXPIRES_AT, n(expires_at))])))
            // An expired marker (TTL deletes late) is as good as none.
            .condition_expression("attribute_not_exists(#k) OR #e < :now")
            .expression_attribute_names("#k", attr::NOTIFICATION_ID)
            .expression_attribute_names("#e", attr::EXPIRES_AT)
            .expression_attribute_values(":now", n(epoch_secs(now())));
        applied(put.send().await.or_store(table))
    }

    async fn create_notification(&self, notification: &Notification) -> StoreResult<bool> {
        let table = self.table(TableId::Notifications);
        let put = self
            .client
            .put_item()
            .table_name(table)
            .set_item(Some(notification.to_item()))
            .condition_expression("attribute_not_exists(#k) OR #e < :now")
            .expression_attribute_names("#k", attr::NOTIFICATION_ID)
            .expression_attribute_names("#e", attr::EXPIRES_AT)
            .expression_attribute_values(":now", n(epoch_secs(now())));
        if applied(put.send().await.or_store(table))? {
            return Ok(true);
        }
        // The SDK retried a write whose answer was lost: it is ours.
        Ok(self.get_notification(&notification.id).await?.as_ref() == Some(notification))
    }

    async fn update_notification(&self, notification: &Notification) -> StoreResult<()> {
        let table = self.table(TableId::Notifications);
        self.client.put_item().table_name(table).set_item(Some(notification.to_item())).send().await.or_store(table)?;
        Ok(())
    }

    async fn get_notification(&self, id: &str) -> StoreResult<Option<Notification>> {
        let table = self.table(TableId::Notifications);
        let resp = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key([(attr::NOTIFICATION_ID, s(id))])))
            .consistent_read(true)
            .send()
            .await
            .or_store(table)?;
        let found = resp.item.as_ref().filter(|i| i.contains_key(attr::USER_ID)).map(Notification::from_item).transpose()?;
        Ok(found.filter(|n| n.expires_at >= epoch_secs(now())))
    }

    async fn list_notifications(&self, filter: &NotificationFilter, cursor: Option<&str>, limit: usize) -> StoreResult<Page<Notification>> {
        check_history_query(filter, limit)?;
        let source = filter.event_id.as_ref().or(filter.mailing_id.as_ref());
        match (&filter.user_id, source) {
            // By user when given (the event, if any, then narrows it).
            (Some(user), _) => {
                let start = cursor.map(|c| start_key(c, attr::USER_ID, user)).transpose()?;
                let (mut items, _) = self.history_partition(filter, BY_USER, attr::USER_ID, user, start, limit + 1).await?;
                // One more than asked for tells whether there is a next page.
                let next = if items.len() > limit {
                    items.truncate(limit);
                    items.last().map(|n| cursor_of(n, attr::USER_ID, user)).transpose()?
                } else {
                    None
                };
                Ok(Page { items, next })
            }
            (None, Some(source)) => self.history_of_source(filter, source, cursor, limit).await,
            (None, None) => unreachable!("checked above"),
        }
    }
}

/// The table and index key of the record a page ended on, checked to be of `index_value`.
fn start_key(cursor: &str, index_attr: &str, index_value: &str) -> StoreResult<Item> {
    let start: Item =
        decode_key_cursor(cursor, &[attr::NOTIFICATION_ID, index_attr, attr::CREATED_KEY])?.into_iter().map(|(k, v)| (k, s(v))).collect();
    if start.get(index_attr) != Some(&s(index_value)) {
        return Err(StoreError::Invalid("page cursor of another query".into()));
    }
    Ok(start)
}

/// Where a listing by event stands in each of its shards.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
enum ShardPlace {
    /// Nothing of the shard returned yet.
    #[serde(rename = "s")]
    Start,
    /// After this record (its [`cursor_of`]).
    #[serde(rename = "a")]
    After(String),
    /// Every record of the shard returned.
    #[serde(rename = "d")]
    Done,
}

/// A listing by event's cursor: the event and each shard's place.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SourceCursor {
    #[serde(rename = "e")]
    source: String,
    #[serde(rename = "p")]
    places: Vec<ShardPlace>,
}

impl DynamoStore {
    /// Up to `want` records of one `index` partition, newest first, from after `start`, with the
    /// filter's conditions; and whether the partition has none left after them.
    async fn history_partition(
        &self,
        filter: &NotificationFilter,
        index: &str,
        index_attr: &str,
        index_value: &str,
        mut start: Option<Item>,
        want: usize,
    ) -> StoreResult<(Vec<Notification>, bool)> {
        let table = self.table(TableId::Notifications);
        let source = filter.event_id.as_ref().or(filter.mailing_id.as_ref());
        let mut conditions = vec!["#exp >= :now".to_string()];
        let mut query = self
            .query_eq(TableId::Notifications, Some(index), index_attr, index_value)
            .scan_index_forward(false)
            .expression_attribute_names("#exp", attr::EXPIRES_AT)
            .expression_attribute_values(":now", n(epoch_secs(now())));
        if filter.mailing_id.is_some() {
            conditions.push("#mk = :mk".into());
            query = query
                .expression_attribute_names("#mk", MAILING_MARK)
                .expression_attribute_values(":mk", aws_sdk_dynamodb::types::AttributeValue::Bool(true));
        }
        if index == BY_USER
            && let Some(e) = source
        {
            conditions.push("#ev = :ev".into());
            query = query.expression_attribute_names("#ev", attr::EVENT_ID).expression_attribute_values(":ev", s(e.as_str()));
        }
        if let Some(c) = filter.channel {
            conditions.push("#ch = :ch".into());
            query = query.expression_attribute_names("#ch", name::CHANNEL).expression_attribute_values(":ch", s(c.as_str()));
        }
        if let Some(st) = filter.status {
            conditions.push("#st = :st".into());
            query = query.expression_attribute_names("#st", name::STATUS).expression_attribute_values(":st", s(st.as_str()));
        }
        let query = query.filter_expression(conditions.join(" AND "));
        let mut items: Vec<Notification> = Vec::new();
        loop {
            let resp =
                query.clone().limit(limit_i32(want - items.len())).set_exclusive_start_key(start.take()).send().await.or_store(table)?;
            for item in resp.items() {
                items.push(Notification::from_item(item)?);
            }
            match resp.last_evaluated_key.filter(|k| !k.is_empty()) {
                Some(k) if items.len() < want => start = Some(k),
                more => return Ok((items, more.is_none())),
            }
        }
    }

    /// A page of an event's (or mailing's) records: each shard read from its place in parallel,
    /// merged newest first. Each shard is read for `limit + 1` records, so a shard whose records
    /// all made the page has none left, and any left over means a next page.
    async fn history_of_source(
        &self,
        filter: &NotificationFilter,
        source: &str,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Notification>> {
        let places = match cursor {
            None => vec![ShardPlace::Start; HISTORY_SHARDS as usize],
            Some(c) => {
                let invalid = || StoreError::Invalid("malformed page cursor".into());
                let json = base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, c).map_err(|_| invalid())?;
                let parsed: SourceCursor = serde_json::from_slice(&json).map_err(|_| invalid())?;
                if parsed.source != *source {
                    return Err(StoreError::Invalid("page cursor of another query".into()));
                }
                if parsed.places.len() != HISTORY_SHARDS as usize {
                    return Err(invalid());
                }
                parsed.places
            }
        };
        let keys: Vec<String> = (0..HISTORY_SHARDS).map(|shard| event_shard_key(source, shard)).collect();
        let reads = places.iter().zip(&keys).map(|(place, key)| async move {
            let start = match place {
                ShardPlace::Done => return Ok((Vec::new(), true)),
                ShardPlace::Start => None,
                ShardPlace::After(c) => Some(start_key(c, attr::EVENT_SHARD, key)?),
            };
            self.history_partition(filter, BY_EVENT, attr::EVENT_SHARD, key, start, limit + 1).await
        });
        let shards: Vec<(Vec<Notification>, bool)> = futures::future::try_join_all(reads).await?;
        // The k-way merge: each shard's records are newest first; take the newest head each time.
        let mut heads = vec![0usize; shards.len()];
        let mut items = Vec::with_capacity(limit);
        while items.len() < limit {
            let newest = (0..shards.len()).filter(|&i| heads[i] < shards[i].0.len()).max_by(|&a, &b| {
                let (x, y) = (&shards[a].0[heads[a]], &shards[b].0[heads[b]]);
                (x.created_key(), &x.id).cmp(&(y.created_key(), &y.id))
            });
            let Some(i) = newest else { break };
            items.push(shards[i].0[heads[i]].clone());
            heads[i] += 1;
        }
        let mut next_places = Vec::with_capacity(shards.len());
        let mut more = false;
        for (i, ((records, exhausted), place)) in shards.iter().zip(places).enumerate() {
            let taken = heads[i];
            next_places.push(match (taken, taken == records.len() && *exhausted) {
                (_, true) => ShardPlace::Done,
                (0, false) => place,
                (_, false) => ShardPlace::After(cursor_of(&records[taken - 1], attr::EVENT_SHARD, &keys[i])?),
            });
            more |= !(taken == records.len() && *exhausted);
        }
        let next = if more {
            let json = serde_json::to_vec(&SourceCursor { source: source.to_string(), places: next_places })
                .map_err(|e| StoreError::Backend(Box::new(e)))?;
            Some(base64::Engine::encode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, json))
        } else {
            None
        };
        Ok(Page { items, next })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Channel, NotificationStatus};

    #[test]
    fn a_record_round_trips() {
        let rec = Notification {
            id: "n1".into(),
            user_id: "u1".into(),
            channel: Channel::Email,
            status: NotificationStatus::Held,
            reason: Some("quiet hours".into()),
            event_id: Some("e1".into()),
            mailing_id: None,
            held_until: Some("2024-05-01T07:00:00Z".into()),
            created_at: "2024-05-01T01:00:00Z".into(),
            updated_at: "2024-05-01T01:00:01Z".into(),
            expires_at: 1_900_000_000,
        };
        let item = rec.to_item();
        assert_eq!(Notification::from_item(&item).unwrap(), rec);
        assert_eq!(item.get(attr::CREATED_KEY), Some(&s("000001714525200000000000#n1")));
    }
}
