//! Conversations: one item per channel, with a sequential id from the counters table, the
//! channel's `last_message_id` and its `unread` map (sender -> unread messages); found by user
//! through the `by_user` index, ordered by id.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::DynamoStore;
use super::error::{OrStore, applied};
use super::item::{FromItem, ToItem, from_items, get_n, key, n, name, s};
use super::query::query_all;
use crate::domain::Conversation;
use crate::store::session_channel_of;
use crate::store::tables::{BY_USER, TableId, attr};
use crate::store::{ConversationStore, StoreError, StoreResult};

/// The counters-table item whose value is the last conversation id given out.
const CONVERSATION_COUNTER: &str = "conversation";

impl DynamoStore {
    /// The next value of an atomic counter of the counters table.
    async fn next_counter(&self, counter_id: &str) -> StoreResult<i64> {
        let table = self.table(TableId::Counters);
        let resp = self
            .client
            .update_item()
            .table_name(table)
            .set_key(Some(key([(attr::COUNTER_ID, s(counter_id))])))
            .update_expression("ADD #v :one")
            .expression_attribute_names("#v", name::VALUE)
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .or_store(table)?;
        get_n(&resp.attributes.unwrap_or_default(), name::VALUE)
    }
}

#[async_trait]
impl ConversationStore for DynamoStore {
    async fn create_conversation(&self, application_id: &serde_json::Value, user_id: &str, now: &str) -> StoreResult<(Conversation, bool)> {
        let channel = session_channel_of(application_id)?;
        // A retry finds the conversation without taking another id.
        if let Some(existing) = self.get_conversation(&channel).await? {
            return Ok((existing, false));
        }
        let conversation = Conversation {
            id: self.next_counter(CONVERSATION_COUNTER).await?,
            session_channel: channel.clone(),
            application_id: application_id.clone(),
            user_id: user_id.to_string(),
            create_at: now.to_string(),
            update_at: now.to_string(),
        };
        let mut item = conversation.to_item();
        item.insert(name::LAST_MESSAGE_ID.into(), n(0));
        item.insert(name::UNREAD.into(), AttributeValue::M(HashMap::new()));
        let table = self.table(TableId::Conversations);
        let put = self
            .client
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .condition_expression("attribute_not_exists(#c)")
            .expression_attribute_names("#c", attr::SESSION_CHANNEL)
            .send()
            .await
            .or_store(table);
        if applied(put)? {
            return Ok((conversation, true));
        }
        // Another call created it first: theirs is the conversation (our id stays unused).
        match self.get_conversation(&channel).await? {
            Some(winner) => Ok((winner, false)),
            None => Err(StoreError::ConditionFailed(format!("{table}: conversation {channel} vanished after a lost create"))),
        }
    }

    async fn get_conversation(&self, session_channel: &str) -> StoreResult<Option<Conversation>> {
        let table = self.table(TableId::Conversations);
        let resp = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key([(attr::SESSION_CHANNEL, s(session_channel))])))
            .consistent_read(true)
            .send()
            .await
            .or_store(table)?;
        resp.item.as_ref().map(Conversation::from_item).transpose()
    }

    async fn user_conversations(&self, user_id: &str) -> StoreResult<Vec<Conversation>> {
        let table = self.table(TableId::Conversations);
        let query = self.query_eq(TableId::Conversations, Some(BY_USER), attr::USER_ID, user_id).scan_index_forward(true);
        from_items(&query_all(table, query, None).await?)
    }
}
