//! Subscriptions: one item per (connection, event), found by event and shard (`by_event`, on the
//! `event_shard` attribute: [`EVENT_SHARDS`](crate::store::EVENT_SHARDS) partition keys per event)
//! and by user and event (`by_user_event`, on the `user_event` attribute).

use async_trait::async_trait;
use aws_sdk_dynamodb::types::ReturnValue;

use super::DynamoStore;
use super::error::OrStore;
use super::item::{Item, ToItem, from_items, get_s, key, s};
use super::query::{decode_key_cursor, encode_cursor, limit_i32, query_all};
use crate::domain::Subscription;
use crate::store::shards::check_shard_page;
use crate::store::tables::{BY_EVENT, BY_USER_EVENT, TableId, attr};
use crate::store::{Page, StoreError, StoreResult, SubscriptionStore, event_shard_key, user_event_key};

/// A cursor of [`encode_cursor`] for a page of `event_name`'s subscribers in one shard
/// (`shard_key`: [`event_shard_key`]).
fn decode_cursor(cursor: &str, event_name: &str, shard_key: &str) -> StoreResult<Item> {
    let plain = decode_key_cursor(cursor, &[attr::CONNECTION_ID, attr::EVENT_NAME, attr::EVENT_SHARD])?;
    if plain.get(attr::EVENT_NAME).map(String::as_str) != Some(event_name) {
        return Err(StoreError::Invalid("page cursor of another event".into()));
    }
    if plain.get(attr::EVENT_SHARD).map(String::as_str) != Some(shard_key) {
        return Err(StoreError::Invalid("page cursor of another shard".into()));
    }
    Ok(plain.into_iter().map(|(k, v)| (k, s(v))).collect())
}

impl DynamoStore {
    fn subscription_key(connection_id: &str, event_name: &str) -> Item {
        key([(attr::CONNECTION_ID, s(connection_id)), (attr::EVENT_NAME, s(event_name))])
    }
}

#[async_trait]
impl SubscriptionStore for DynamoStore {
    async fn subscribe(&self, subscription: &Subscription) -> StoreResult<()> {
        let table = self.table(TableId::Subscriptions);
        self.client.put_item().table_name(table).set_item(Some(subscription.to_item())).send().await.or_store(table)?;
        Ok(())
    }

    async fn unsubscribe(&self, connection_id: &str, event_name: &str) -> StoreResult<bool> {
        let table = self.table(TableId::Subscriptions);
        let resp = self
            .client
            .delete_item()
            .table_name(table)
            .set_key(Some(Self::subscription_key(connection_id, event_name)))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .or_store(table)?;
        Ok(resp.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn connection_subscriptions(&self, connection_id: &str) -> StoreResult<Vec<String>> {
        let table = self.table(TableId::Subscriptions);
        let query = self
            .query_eq(TableId::Subscriptions, None, attr::CONNECTION_ID, connection_id)
            .consistent_read(true)
            .projection_expression("#e")
            .expression_attribute_names("#e", attr::EVENT_NAME);
        query_all(table, query, None).await?.iter().map(|i| get_s(i, attr::EVENT_NAME)).collect()
    }

    async fn delete_connection_subscriptions(&self, connection_id: &str) -> StoreResult<usize> {
        let events = self.connection_subscriptions(connection_id).await?;
        let keys = events.iter().map(|e| Self::subscription_key(connection_id, e)).collect();
        self.batch_delete(TableId::Subscriptions, keys).await?;
        Ok(events.len())
    }

    async fn event_subscribers_in_shard(
        &self,
        event_name: &str,
        shard: u32,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Subscription>> {
        check_shard_page(shard, limit)?;
        let shard_key = event_shard_key(event_name, shard);
        let start = cursor.map(|c| decode_cursor(c, event_name, &shard_key)).transpose()?;
        let table = self.table(TableId::Subscriptions);
        let resp = self
            .query_eq(TableId::Subscriptions, Some(BY_EVENT), attr::EVENT_SHARD, &shard_key)
            .limit(limit_i32(limit))
            .set_exclusive_start_key(start)
            .send()
            .await
            .or_store(table)?;
        let items = from_items(resp.items())?;
        let next = resp.last_evaluated_key.filter(|k| !k.is_empty()).as_ref().map(encode_cursor).transpose()?;
        Ok(Page { items, next })
    }

    async fn user_event_subscribers(&self, user_id: &str, event_name: &str) -> StoreResult<Vec<Subscription>> {
        let table = self.table(TableId::Subscriptions);
        let query = self.query_eq(TableId::Subscriptions, Some(BY_USER_EVENT), attr::USER_EVENT, &user_event_key(user_id, event_name));
        from_items(&query_all(table, query, None).await?)
    }
}

#[cfg(test)]
mod tests {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let shard_key = event_shard_key("ev", 3);
        let mut k = DynamoStore::subscription_key("c1", "ev");
        k.insert(attr::EVENT_SHARD.into(), s(shard_key.as_str()));
        let c = encode_cursor(&k).unwrap();
        assert_eq!(decode_cursor(&c, "ev", &shard_key).unwrap(), k);
        assert!(matches!(decode_cursor(&c, "other", &event_shard_key("other", 3)), Err(StoreError::Invalid(_))));
        assert!(matches!(decode_cursor(&c, "ev", &event_shard_key("ev", 4)), Err(StoreError::Invalid(_))), "another shard");
        for bad in ["", "!!!", "bm90IGpzb24", &URL_SAFE_NO_PAD.encode(r#"{"connection_id":"c","event_name":"ev"}"#)] {
            assert!(matches!(decode_cursor(bad, "ev", &shard_key), Err(StoreError::Invalid(_))), "{bad}");
        }
    }
}
