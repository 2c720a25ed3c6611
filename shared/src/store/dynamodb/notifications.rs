//! History records: one item per notification and channel (key `notification_id`), listed
//! newest first through `by_user` (on `user_id`) or `by_event` (on `event_id`), both ordered by
//! `created_key`. An event's idempotency marker is an item of the same table (`event:<id>`,
//! without user or event attributes, so no index holds it). Both carry the TTL.

use async_trait::async_trait;

use super::DynamoStore;
use super::error::{OrStore, applied};
use super::item::{FromItem, Item, ToItem, get_enum, get_n, get_opt_s, get_s, key, n, name, s};
use super::query::{decode_key_cursor, encode_cursor, limit_i32};
use crate::domain::{Notification, NotificationFilter, epoch_secs, now};
use crate::store::memory::check_history_query;
use crate::store::tables::{BY_EVENT, BY_USER, TableId, attr};
use crate::store::{NotificationStore, Page, StoreResult};

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
        let table = self.table(TableId::Notifications);
        // By user when given (the event, if any, then narrows it), else by event.
        let source = filter.event_id.as_ref().or(filter.mailing_id.as_ref());
        let (index, index_attr, index_value) = match (&filter.user_id, source) {
            (Some(u), _) => (BY_USER, attr::USER_ID, u.as_str()),
            (None, Some(e)) => (BY_EVENT, attr::EVENT_ID, e.as_str()),
            (None, None) => unreachable!("checked above"),
        };
        let mut start: Option<Item> = cursor
            .map(|c| decode_key_cursor(c, &[attr::NOTIFICATION_ID, index_attr, attr::CREATED_KEY]))
            .transpose()?
            .map(|plain| plain.into_iter().map(|(k, v)| (k, s(v))).collect());
        if start.as_ref().is_some_and(|k| k.get(index_attr) != Some(&s(index_value))) {
            return Err(crate::store::StoreError::Invalid("page cursor of another query".into()));
        }
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
        if filter.user_id.is_some()
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
            // One more than asked for tells whether there is a next page.
            let resp = query
                .clone()
                .limit(limit_i32(limit + 1 - items.len()))
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .or_store(table)?;
            for item in resp.items() {
                items.push(Notification::from_item(item)?);
            }
            let more = resp.last_evaluated_key.filter(|k| !k.is_empty());
            if items.len() > limit {
                items.truncate(limit);
                let next = items.last().map(|n| cursor_of(n, index_attr, index_value)).transpose()?;
                return Ok(Page { items, next });
            }
            match more {
                Some(k) => start = Some(k),
                None => return Ok(Page { items, next: None }),
            }
        }
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
