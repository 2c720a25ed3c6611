//! Event types: one item per event type (key `event_type`), listed through `by_kind` (one
//! partition: the admins' few, like templates).

use async_trait::async_trait;

use super::DynamoStore;
use super::error::OrStore;
use super::item::{FromItem, Item, ToItem, from_items, get_bool, get_m, get_s, key, name, s};
use super::query::query_all;
use crate::domain::{Channel, EventType, sort_event_types};
use crate::store::tables::{BY_KIND, TableId, attr};
use crate::store::{EventTypeStore, StoreError, StoreResult};

/// The `kind` of every event type item (the `by_kind` index's one partition).
const EVENT_TYPE_KIND: &str = "event_type";

impl ToItem for EventType {
    fn to_item(&self) -> Item {
        let templates = self.templates.iter().map(|(c, t)| (c.as_str().to_string(), s(t.as_str()))).collect();
        key([
            (attr::EVENT_TYPE, s(self.name.as_str())),
            (attr::KIND, s(EVENT_TYPE_KIND)),
            (name::TEMPLATES, aws_sdk_dynamodb::types::AttributeValue::M(templates)),
            (name::CRITICAL, aws_sdk_dynamodb::types::AttributeValue::Bool(self.critical)),
            (name::CREATED_AT, s(self.created_at.as_str())),
            (name::UPDATED_AT, s(self.updated_at.as_str())),
        ])
    }
}

impl FromItem for EventType {
    fn from_item(item: &Item) -> StoreResult<Self> {
        let map = get_m(item, name::TEMPLATES)?;
        let templates = map
            .keys()
            .map(|k| {
                let channel = Channel::parse(k).ok_or_else(|| StoreError::Corrupt(format!("unknown channel {k:?} in an event type")))?;
                Ok((channel, get_s(map, k)?))
            })
            .collect::<StoreResult<_>>()?;
        Ok(Self {
            name: get_s(item, attr::EVENT_TYPE)?,
            templates,
            critical: get_bool(item, name::CRITICAL)?,
            created_at: get_s(item, name::CREATED_AT)?,
            updated_at: get_s(item, name::UPDATED_AT)?,
        })
    }
}

#[async_trait]
impl EventTypeStore for DynamoStore {
    async fn put_event_type(&self, event_type: &EventType) -> StoreResult<()> {
        let table = self.table(TableId::EventTypes);
        self.client.put_item().table_name(table).set_item(Some(event_type.to_item())).send().await.or_store(table)?;
        Ok(())
    }

    async fn get_event_type(&self, event_name: &str) -> StoreResult<Option<EventType>> {
        let table = self.table(TableId::EventTypes);
        let resp = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key([(attr::EVENT_TYPE, s(event_name))])))
            .consistent_read(true)
            .send()
            .await
            .or_store(table)?;
        resp.item.as_ref().map(EventType::from_item).transpose()
    }

    async fn list_event_types(&self) -> StoreResult<Vec<EventType>> {
        let table = self.table(TableId::EventTypes);
        let query = self.query_eq(TableId::EventTypes, Some(BY_KIND), attr::KIND, EVENT_TYPE_KIND);
        let mut all: Vec<EventType> = from_items(&query_all(table, query, None).await?)?;
        sort_event_types(&mut all);
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_event_type_round_trips() {
        let t = EventType {
            name: "film.added".into(),
            templates: [(Channel::Email, "film".to_string()), (Channel::Push, "film-push".to_string())].into(),
            critical: true,
            created_at: "2024-05-01T10:00:00Z".into(),
            updated_at: "2024-05-01T10:05:00Z".into(),
        };
        let item = t.to_item();
        assert_eq!(EventType::from_item(&item).unwrap(), t);
        assert_eq!(item.get(attr::KIND), Some(&s(EVENT_TYPE_KIND)));
    }
}
