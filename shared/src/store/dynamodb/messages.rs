//! Messages: one item per (channel, id). Ids come from the conversation's `last_message_id`
//! counter; the message, its sender's unread count on the conversation and, with a
//! `client_msg_id`, an idempotency marker in the counters table are written in one transaction.

use std::collections::{HashMap, HashSet};

use async_trait::async_trait;
use aws_sdk_dynamodb::types::{Put, ReturnValue, TransactWriteItem, Update};

use super::DynamoStore;
use super::error::{CONDITION_FAILED, Cancelled, OrStore, map_err};
use super::item::{FromItem, Item, ToItem, from_items, get_m, get_n, get_s, item_size, key, n, name, s};
use super::query::{backoff, query_all};
use crate::domain::{ChatMessage, ContentType, NewMessage, UnreadCount};
use crate::store::tables::{TableId, attr};
use crate::store::{MAX_ITEM_BYTES, MessageStore, StoreError, StoreResult, message_key};

/// Times a transaction cancelled by a conflicting one (another message on the same channel) is retried.
const CONFLICT_ROUNDS: u32 = 10;

fn message_item_key(session_channel: &str, id: i64) -> Item {
    key([(attr::SESSION_CHANNEL, s(session_channel)), (attr::ID, n(id))])
}

fn conversation_key(session_channel: &str) -> Item {
    key([(attr::SESSION_CHANNEL, s(session_channel))])
}

impl DynamoStore {
    /// Takes the channel's next message id; [`StoreError::NotFound`] without a conversation.
    async fn next_message_id(&self, session_channel: &str) -> StoreResult<i64> {
        let table = self.table(TableId::Conversations);
        let resp = self
            .client
            .update_item()
            .table_name(table)
            .set_key(Some(conversation_key(session_channel)))
            .update_expression("ADD #last :one")
            .condition_expression("attribute_exists(#c)")
            .expression_attribute_names("#last", name::LAST_MESSAGE_ID)
            .expression_attribute_names("#c", attr::SESSION_CHANNEL)
            .expression_attribute_values(":one", n(1))
            .return_values(ReturnValue::UpdatedNew)
            .send()
            .await
            .or_store(table);
        match resp {
            Ok(resp) => get_n(&resp.attributes.unwrap_or_default(), name::LAST_MESSAGE_ID),
            Err(StoreError::ConditionFailed(_)) => Err(StoreError::NotFound(format!("conversation {session_channel}"))),
            Err(e) => Err(e),
        }
    }

    /// The message an idempotency marker points at, if the marker exists.
    async fn keyed_message(&self, session_channel: &str, marker: &str) -> StoreResult<Option<ChatMessage>> {
        let table = self.table(TableId::Counters);
        let resp = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(key([(attr::COUNTER_ID, s(marker))])))
            .consistent_read(true)
            .send()
            .await
            .or_store(table)?;
        let Some(item) = resp.item else { return Ok(None) };
        let id = get_n(&item, name::MESSAGE_ID)?;
        match self.get_message(session_channel, id).await? {
            Some(m) => Ok(Some(m)),
            None => Err(StoreError::Corrupt(format!("message key points at missing message {id}"))),
        }
    }

    /// `ADD unread.<sender> :delta` on a conversation, as a transaction item.
    fn unread_update(&self, session_channel: &str, sender_id: &str, delta: i64) -> StoreResult<TransactWriteItem> {
        let update = Update::builder()
            .table_name(self.table(TableId::Conversations))
            .set_key(Some(conversation_key(session_channel)))
            .update_expression("ADD #unread.#sender :delta")
            .expression_attribute_names("#unread", name::UNREAD)
            .expression_attribute_names("#sender", sender_id)
            .expression_attribute_values(":delta", n(delta))
            .build()?;
        Ok(TransactWriteItem::builder().update(update).build())
    }

    /// The tables a message transaction touches, for error messages.
    fn message_tables(&self) -> String {
        [TableId::Messages, TableId::Conversations, TableId::Counters].map(|t| self.table(t)).join(", ")
    }
}

#[async_trait]
impl MessageStore for DynamoStore {
    async fn append_message(&self, m: &NewMessage) -> StoreResult<(ChatMessage, bool)> {
        let mut message = ChatMessage {
            id: i64::MAX,
            session_channel: m.session_channel.clone(),
            content: m.content.clone(),
            content_type: ContentType::code(m.content_type),
            sender_id: m.sender_id.clone(),
            status: 0,
            create_at: m.create_at.clone(),
            update_at: m.create_at.clone(),
            client_msg_id: m.client_msg_id.clone(),
        };
        // Refused before an id is taken, so that a message too large leaves no gap.
        let size = item_size(&message.to_item());
        if size > MAX_ITEM_BYTES {
            return Err(StoreError::ItemTooLarge(format!("message is {size} bytes, over {MAX_ITEM_BYTES}")));
        }
        let marker = m.client_msg_id.as_deref().map(|k| message_key(&m.session_channel, k));
        // A plain retry finds its message without taking another id.
        if let Some(marker) = &marker
            && let Some(stored) = self.keyed_message(&m.session_channel, marker).await?
        {
            return Ok((stored, false));
        }
        message.id = self.next_message_id(&m.session_channel).await?;

        let put_message = Put::builder()
            .table_name(self.table(TableId::Messages))
            .set_item(Some(message.to_item()))
            .condition_expression("attribute_not_exists(#c)")
            .expression_attribute_names("#c", attr::SESSION_CHANNEL)
            .build()?;
        let mut items =
            vec![TransactWriteItem::builder().put(put_message).build(), self.unread_update(&m.session_channel, &m.sender_id, 1)?];
        if let Some(marker) = &marker {
            let put_marker = Put::builder()
                .table_name(self.table(TableId::Counters))
                .set_item(Some(key([
                    (attr::COUNTER_ID, s(marker.as_str())),
                    (name::MESSAGE_ID, n(message.id)),
                    (attr::SESSION_CHANNEL, s(m.session_channel.as_str())),
                ])))
                .condition_expression("attribute_not_exists(#k)")
                .expression_attribute_names("#k", attr::COUNTER_ID)
                .build()?;
            items.push(TransactWriteItem::builder().put(put_marker).build());
        }

        let mut round = 0;
        loop {
            let err = match self.client.transact_write_items().set_transact_items(Some(items.clone())).send().await {
                Ok(_) => return Ok((message, true)),
                Err(err) => err,
            };
            let Some(cancelled) = Cancelled::of(&err) else { return Err(map_err(&self.message_tables(), err)) };
            // The same client_msg_id won a race: the winner's message is the message.
            if let Some(marker) = marker.as_deref().filter(|_| cancelled.failed(2, CONDITION_FAILED))
                && let Some(stored) = self.keyed_message(&m.session_channel, marker).await?
            {
                return Ok((stored, false));
            }
            // Our own earlier attempt went through (its answer was lost).
            if cancelled.failed(0, CONDITION_FAILED) && self.get_message(&m.session_channel, message.id).await?.as_ref() == Some(&message) {
                return Ok((message, true));
            }
            if cancelled.conflict() && round < CONFLICT_ROUNDS {
                round += 1;
                backoff(round).await;
                continue;
            }
            return Err(map_err(&self.message_tables(), err));
        }
    }

    async fn list_messages(&self, session_channel: &str, before_id: Option<i64>, limit: usize) -> StoreResult<Vec<ChatMessage>> {
        if limit == 0 {
            return Ok(vec![]);
        }
        let table = self.table(TableId::Messages);
        let mut query =
            self.query_eq(TableId::Messages, None, attr::SESSION_CHANNEL, session_channel).scan_index_forward(false).consistent_read(true);
        if let Some(before) = before_id {
            query = query
                .key_condition_expression("#k = :k AND #id < :before")
                .expression_attribute_names("#id", attr::ID)
                .expression_attribute_values(":before", n(before));
        }
        let mut items = query_all(table, query, Some(limit)).await?;
        items.reverse();
        from_items(&items)
    }

    async fn get_message(&self, session_channel: &str, id: i64) -> StoreResult<Option<ChatMessage>> {
        let table = self.table(TableId::Messages);
        let resp = self
            .client
            .get_item()
            .table_name(table)
            .set_key(Some(message_item_key(session_channel, id)))
            .consistent_read(true)
            .send()
            .await
            .or_store(table)?;
        resp.item.as_ref().map(ChatMessage::from_item).transpose()
    }

    async fn mark_read(&self, session_channel: &str, id: i64, now: &str) -> StoreResult<Option<ChatMessage>> {
        let mut round = 0;
        loop {
            let Some(current) = self.get_message(session_channel, id).await? else { return Ok(None) };
            if current.status == 1 {
                return Ok(Some(current));
            }
            let set_read = Update::builder()
                .table_name(self.table(TableId::Messages))
                .set_key(Some(message_item_key(session_channel, id)))
                .update_expression("SET #status = :read, #update_at = :now")
                .condition_expression("attribute_exists(#c) AND #status <> :read")
                .expression_attribute_names("#status", name::STATUS)
                .expression_attribute_names("#update_at", name::UPDATE_AT)
                .expression_attribute_names("#c", attr::SESSION_CHANNEL)
                .expression_attribute_values(":read", n(1))
                .expression_attribute_values(":now", s(now))
                .build()?;
            let items =
                vec![TransactWriteItem::builder().update(set_read).build(), self.unread_update(session_channel, &current.sender_id, -1)?];
            let err = match self.client.transact_write_items().set_transact_items(Some(items)).send().await {
                Ok(_) => return Ok(Some(ChatMessage { status: 1, update_at: now.to_string(), ..current })),
                Err(err) => err,
            };
            match Cancelled::of(&err) {
                // Read (or removed) in between: look again.
                Some(c) if c.failed(0, CONDITION_FAILED) && round < CONFLICT_ROUNDS => round += 1,
                Some(c) if c.conflict() && round < CONFLICT_ROUNDS => {
                    round += 1;
                    backoff(round).await;
                }
                _ => return Err(map_err(&self.message_tables(), err)),
            }
        }
    }

    async fn unread_counts(&self, session_channels: &[String], reader: &str) -> StoreResult<Vec<UnreadCount>> {
        let unique: HashSet<&str> = session_channels.iter().map(String::as_str).collect();
        let keys = unique.into_iter().map(conversation_key).collect();
        let mut counts = HashMap::new();
        for item in self.batch_get(TableId::Conversations, keys).await? {
            let channel = get_s(&item, attr::SESSION_CHANNEL)?;
            let unread = get_m(&item, name::UNREAD)?;
            let mut count = 0i64;
            for sender in unread.keys().filter(|sender| sender.as_str() != reader) {
                count += get_n::<i64>(unread, sender)?;
            }
            counts.insert(channel, count);
        }
        Ok(session_channels
            .iter()
            .filter_map(|ch| counts.get(ch).map(|&count| UnreadCount { session_channel: ch.clone(), count }))
            .collect())
    }
}
