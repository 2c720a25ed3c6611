//! Templates: one item per template (key `template_id`), found by name and channel through the
//! `by_name` index and listed through `by_kind`; and one marker item per (name, channel,
//! locale) slot (key [`template_slot_key`], no index attributes), written in the same
//! transaction as its template, so that two admins racing for one slot cannot both win.
//! Updates are conditional on the version read.

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Delete, Put, TransactWriteItem};

use super::DynamoStore;
use super::error::{CONDITION_FAILED, Cancelled, OrStore, map_err};
use super::item::{FromItem, Item, ToItem, from_items, get_enum, get_n, get_opt_s, get_s, key, n, name, s};
use super::query::{backoff, query_all};
use crate::domain::{Channel, Template};
use crate::store::tables::{BY_KIND, BY_NAME, TableId, attr};
use crate::store::{StoreError, StoreResult, TemplateStore, TemplateWrite, sort_templates, template_name_key, template_slot_key};

/// The `kind` of every template item (the `by_kind` index's one partition).
const TEMPLATE_KIND: &str = "template";
/// Rounds of retrying a transaction that lost to a concurrent one, or a delete that raced an update.
const ROUNDS: u32 = 5;

impl ToItem for Template {
    fn to_item(&self) -> Item {
        let mut item = key([
            (attr::TEMPLATE_ID, s(self.id.as_str())),
            (attr::NAME_CHANNEL, s(template_name_key(&self.name, self.channel))),
            (attr::KIND, s(TEMPLATE_KIND)),
            (name::TEMPLATE_NAME, s(self.name.as_str())),
            (name::CHANNEL, s(self.channel.as_str())),
            (name::BODY, s(self.body.as_str())),
            (name::VERSION, n(self.version)),
            (name::CREATED_AT, s(self.created_at.as_str())),
            (name::UPDATED_AT, s(self.updated_at.as_str())),
        ]);
        for (attr_name, value) in [(name::LOCALE, &self.locale), (name::SUBJECT, &self.subject), (name::HTML, &self.html)] {
            if let Some(v) = value {
                item.insert(attr_name.into(), s(v.as_str()));
            }
        }
        item
    }
}

impl FromItem for Template {
    fn from_item(item: &Item) -> StoreResult<Self> {
        Ok(Self {
            id: get_s(item, attr::TEMPLATE_ID)?,
            name: get_s(item, name::TEMPLATE_NAME)?,
            channel: get_enum(item, name::CHANNEL)?,
            locale: get_opt_s(item, name::LOCALE)?,
            subject: get_opt_s(item, name::SUBJECT)?,
            body: get_s(item, name::BODY)?,
            html: get_opt_s(item, name::HTML)?,
            version: get_n(item, name::VERSION)?,
            created_at: get_s(item, name::CREATED_AT)?,
            updated_at: get_s(item, name::UPDATED_AT)?,
        })
    }
}

fn slot_of(t: &Template) -> String {
    template_slot_key(&t.name, t.channel, t.locale.as_deref())
}

impl DynamoStore {
    /// Puts the slot marker of `t`, if the slot is free.
    fn claim_slot(&self, t: &Template) -> StoreResult<TransactWriteItem> {
        let put = Put::builder()
            .table_name(self.table(TableId::Templates))
            .set_item(Some(key([(attr::TEMPLATE_ID, s(slot_of(t))), (name::OWNER, s(t.id.as_str()))])))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", attr::TEMPLATE_ID)
            .build()?;
        Ok(TransactWriteItem::builder().put(put).build())
    }

    /// Deletes the slot marker of `t` unless another template holds it.
    fn free_slot(&self, t: &Template) -> StoreResult<TransactWriteItem> {
        let delete = Delete::builder()
            .table_name(self.table(TableId::Templates))
            .set_key(Some(key([(attr::TEMPLATE_ID, s(slot_of(t)))])))
            .condition_expression("attribute_not_exists(#k) OR #o = :id")
            .expression_attribute_names("#k", attr::TEMPLATE_ID)
            .expression_attribute_names("#o", name::OWNER)
            .expression_attribute_values(":id", s(t.id.as_str()))
            .build()?;
        Ok(TransactWriteItem::builder().delete(delete).build())
    }

    /// Runs a template transaction; `Err(Some(cancelled))` when DynamoDB cancelled it.
    async fn transact(&self, items: Vec<TransactWriteItem>) -> StoreResult<Result<(), Cancelled>> {
        let table = self.table(TableId::Templates);
        let mut round = 0;
        loop {
            let err = match self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
                Ok(_) => return Ok(Ok(())),
                Err(err) => err,
            };
            let Some(cancelled) = Cancelled::of(&err) else { return Err(map_err(table, err)) };
            if cancelled.conflict() && round < ROUNDS {
                round += 1;
                backoff(round).await;
                continue;
            }
            if cancelled.conflict() {
                return Err(map_err(table, err));
            }
            return Ok(Err(cancelled));
        }
    }

    /// Whether the stored template is exactly `t` (an earlier try of ours went through).
    async fn stored_as(&self, t: &Template) -> StoreResult<bool> {
        Ok(self.get_template(&t.id).await?.as_ref() == Some(t))
    }
}

#[async_trait]
impl TemplateStore for DynamoStore {
    async fn create_template(&self, t: &Template) -> StoreResult<TemplateWrite> {
        let put = Put::builder()
            .table_name(self.table(TableId::Templates))
            .set_item(Some(t.to_item()))
            .condition_expression("attribute_not_exists(#k)")
            .expression_attribute_names("#k", attr::TEMPLATE_ID)
            .build()?;
        let items = vec![self.claim_slot(t)?, TransactWriteItem::builder().put(put).build()];
        match self.transact(items).await? {
            Ok(()) => Ok(TemplateWrite::Done),
            // The SDK retried a create whose answer was lost: it is ours.
            Err(_) if self.stored_as(t).await? => Ok(TemplateWrite::Done),
            Err(c) if c.failed(0, CONDITION_FAILED) || c.failed(1, CONDITION_FAILED) => Ok(TemplateWrite::SlotTaken),
            Err(_) => Err(StoreError::ConditionFailed(format!("{}: template {} not created", self.table(TableId::Templates), t.id))),
        }
    }

    async fn get_template(&self, id: &str) -> StoreResult<Option<Template>> {
        let table = self.table(TableId::Templates);
        // A slot marker's key is not a template's id.
        if id.starts_with("slot:") {
            return Ok(None);
        }
        let resp = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key([(attr::TEMPLATE_ID, s(id))])))
            .consistent_read(true)
            .send()
            .await
            .or_store(table)?;
        resp.item.as_ref().map(Template::from_item).transpose()
    }

    async fn update_template(&self, next: &Template, expected_version: u32) -> StoreResult<TemplateWrite> {
        let Some(current) = self.get_template(&next.id).await? else { return Ok(TemplateWrite::Stale) };
        if current.version != expected_version {
            return Ok(TemplateWrite::Stale);
        }
        let put = Put::builder()
            .table_name(self.table(TableId::Templates))
            .set_item(Some(next.to_item()))
            .condition_expression("#v = :expected")
            .expression_attribute_names("#v", name::VERSION)
            .expression_attribute_values(":expected", n(expected_version))
            .build()?;
        let mut items = vec![TransactWriteItem::builder().put(put).build()];
        let moves = slot_of(&current) != slot_of(next);
        if moves {
            items.push(self.claim_slot(next)?);
            items.push(self.free_slot(&current)?);
        }
        match self.transact(items).await? {
            Ok(()) => Ok(TemplateWrite::Done),
            Err(_) if self.stored_as(next).await? => Ok(TemplateWrite::Done),
            Err(c) if c.failed(0, CONDITION_FAILED) => Ok(TemplateWrite::Stale),
            Err(c) if moves && c.failed(1, CONDITION_FAILED) => Ok(TemplateWrite::SlotTaken),
            Err(_) => Err(StoreError::ConditionFailed(format!("{}: template {} not updated", self.table(TableId::Templates), next.id))),
        }
    }

    async fn delete_template(&self, id: &str) -> StoreResult<bool> {
        for round in 0..ROUNDS {
            let Some(current) = self.get_template(id).await? else { return Ok(false) };
            let delete = Delete::builder()
                .table_name(self.table(TableId::Templates))
                .set_key(Some(key([(attr::TEMPLATE_ID, s(id))])))
                .condition_expression("#v = :v")
                .expression_attribute_names("#v", name::VERSION)
                .expression_attribute_values(":v", n(current.version))
                .build()?;
            let items = vec![TransactWriteItem::builder().delete(delete).build(), self.free_slot(&current)?];
            match self.transact(items).await? {
                Ok(()) => return Ok(true),
                // An update got in between: delete what it saved.
                Err(_) => backoff(round + 1).await,
            }
        }
        Err(StoreError::ConditionFailed(format!("{}: template {id} kept changing while being deleted", self.table(TableId::Templates))))
    }

    async fn list_templates(&self) -> StoreResult<Vec<Template>> {
        let table = self.table(TableId::Templates);
        let query = self.query_eq(TableId::Templates, Some(BY_KIND), attr::KIND, TEMPLATE_KIND);
        let mut all: Vec<Template> = from_items(&query_all(table, query, None).await?)?;
        sort_templates(&mut all);
        Ok(all)
    }

    async fn templates_named(&self, template_name: &str, channel: Channel) -> StoreResult<Vec<Template>> {
        let table = self.table(TableId::Templates);
        let query = self.query_eq(TableId::Templates, Some(BY_NAME), attr::NAME_CHANNEL, &template_name_key(template_name, channel));
        let mut all: Vec<Template> = from_items(&query_all(table, query, None).await?)?;
        sort_templates(&mut all);
        Ok(all)
    }
}

#[cfg(test)]
mod tests {
    use aws_sdk_dynamodb::types::AttributeValue;

    use super::*;

    #[test]
    fn a_template_round_trips_and_carries_its_index_keys() {
        let t = Template {
            id: "t1".into(),
            name: "welcome".into(),
            channel: Channel::Email,
            locale: Some("ru-RU".into()),
            subject: Some("Привет".into()),
            body: "{{ user.name }}".into(),
            html: None,
            version: 3,
            created_at: "2024-05-01T10:00:00Z".into(),
            updated_at: "2024-05-01T10:05:00Z".into(),
        };
        let item = t.to_item();
        assert_eq!(Template::from_item(&item).unwrap(), t);
        assert_eq!(item.get(attr::NAME_CHANNEL), Some(&AttributeValue::S("7:welcome#email".into())));
        assert_eq!(item.get(attr::KIND), Some(&AttributeValue::S(TEMPLATE_KIND.into())));
        assert!(!item.contains_key(name::HTML));
    }
}
