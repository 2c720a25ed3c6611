//! The in-memory store: herald-local's embedded backend and the handlers' unit tests.
//! It keeps DynamoDB's semantics that callers can observe: conditional writes, sequential ids,
//! paging with cursors, the 400 KB item limit.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::*;
use crate::domain::ContentType;

#[derive(Default)]
struct Inner {
    connections: HashMap<String, Connection>,
    user_connections: HashMap<String, BTreeSet<String>>,
    /// connection -> event -> subscription
    subscriptions: HashMap<String, BTreeMap<String, Subscription>>,
    /// event_shard_key (event and shard of the connection) -> connection ids
    event_subscribers: HashMap<String, BTreeSet<String>>,
    /// user_event_key -> connection ids
    user_event_subscribers: HashMap<String, BTreeSet<String>>,
    claims: HashMap<String, ClaimState>,
    deliveries: HashMap<(String, String), Delivery>,
    conversation_counter: i64,
    conversations: HashMap<String, ConversationState>,
    user_conversations: HashMap<String, BTreeMap<i64, String>>,
    messages: HashMap<String, BTreeMap<i64, ChatMessage>>,
    message_keys: HashMap<String, i64>,
    member_channels: HashMap<String, BTreeSet<String>>,
    channel_members: HashMap<String, BTreeSet<String>>,
}

enum ClaimState {
    Sending { lease_until: Instant },
    Done,
}

struct ConversationState {
    conversation: Conversation,
    last_message_id: i64,
    /// sender -> unread messages sent by them
    unread: HashMap<String, i64>,
}

/// Everything in one process's memory.
#[derive(Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn check_size(what: &str, bytes: usize) -> StoreResult<()> {
    if bytes > MAX_ITEM_BYTES { Err(StoreError::ItemTooLarge(format!("{what} is {bytes} bytes, over {MAX_ITEM_BYTES}"))) } else { Ok(()) }
}

fn remove_from(index: &mut HashMap<String, BTreeSet<String>>, key: &str, value: &str) {
    if let Some(set) = index.get_mut(key) {
        set.remove(value);
        if set.is_empty() {
            index.remove(key);
        }
    }
}

#[async_trait]
impl ConnectionStore for MemoryStore {
    async fn put_connection(&self, c: &Connection) -> StoreResult<()> {
        let mut g = self.lock();
        if let Some(old) = g.connections.insert(c.connection_id.clone(), c.clone()) {
            remove_from(&mut g.user_connections, &old.user_id, &old.connection_id);
        }
        g.user_connections.entry(c.user_id.clone()).or_default().insert(c.connection_id.clone());
        Ok(())
    }

    async fn get_connection(&self, id: &str) -> StoreResult<Option<Connection>> {
        Ok(self.lock().connections.get(id).cloned())
    }

    async fn delete_connection(&self, id: &str) -> StoreResult<Option<Connection>> {
        let mut g = self.lock();
        let old = g.connections.remove(id);
        if let Some(old) = &old {
            remove_from(&mut g.user_connections, &old.user_id, id);
        }
        Ok(old)
    }

    async fn user_connections(&self, user_id: &str) -> StoreResult<Vec<Connection>> {
        let g = self.lock();
        Ok(g.user_connections.get(user_id).into_iter().flatten().filter_map(|id| g.connections.get(id).cloned()).collect())
    }
}

impl Inner {
    fn remove_subscription(&mut self, connection_id: &str, event_name: &str) -> bool {
        let Some(subs) = self.subscriptions.get_mut(connection_id) else { return false };
        let Some(old) = subs.remove(event_name) else { return false };
        if subs.is_empty() {
            self.subscriptions.remove(connection_id);
        }
        remove_from(&mut self.event_subscribers, &event_shard_key(event_name, event_shard(connection_id)), connection_id);
        remove_from(&mut self.user_event_subscribers, &user_event_key(&old.user_id, event_name), connection_id);
        true
    }
}

#[async_trait]
impl SubscriptionStore for MemoryStore {
    async fn subscribe(&self, s: &Subscription) -> StoreResult<()> {
        let mut g = self.lock();
        g.remove_subscription(&s.connection_id, &s.event_name);
        g.subscriptions.entry(s.connection_id.clone()).or_default().insert(s.event_name.clone(), s.clone());
        g.event_subscribers
            .entry(event_shard_key(&s.event_name, event_shard(&s.connection_id)))
            .or_default()
            .insert(s.connection_id.clone());
        g.user_event_subscribers.entry(user_event_key(&s.user_id, &s.event_name)).or_default().insert(s.connection_id.clone());
        Ok(())
    }

    async fn unsubscribe(&self, connection_id: &str, event_name: &str) -> StoreResult<bool> {
        Ok(self.lock().remove_subscription(connection_id, event_name))
    }

    async fn connection_subscriptions(&self, connection_id: &str) -> StoreResult<Vec<String>> {
        Ok(self.lock().subscriptions.get(connection_id).map(|s| s.keys().cloned().collect()).unwrap_or_default())
    }

    async fn delete_connection_subscriptions(&self, connection_id: &str) -> StoreResult<usize> {
        let mut g = self.lock();
        let events: Vec<String> = g.subscriptions.get(connection_id).map(|s| s.keys().cloned().collect()).unwrap_or_default();
        for e in &events {
            g.remove_subscription(connection_id, e);
        }
        Ok(events.len())
    }

    async fn event_subscribers_in_shard(
        &self,
        event_name: &str,
        shard: u32,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Subscription>> {
        shards::check_shard_page(shard, limit)?;
        // The cursor is the last connection id of the page before: one of this shard's.
        if cursor.is_some_and(|c| event_shard(c) != shard) {
            return Err(StoreError::Invalid("page cursor of another shard".into()));
        }
        let g = self.lock();
        let Some(ids) = g.event_subscribers.get(&event_shard_key(event_name, shard)) else { return Ok(Page { items: vec![], next: None }) };
        let mut iter: Box<dyn Iterator<Item = &String>> = match cursor {
            Some(after) => Box::new(ids.range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))),
            None => Box::new(ids.iter()),
        };
        let mut items = Vec::with_capacity(limit.min(ids.len()));
        // The cursor is the last id looked at, whether or not it was returned.
        let mut last = None;
        for id in iter.by_ref().take(limit) {
            last = Some(id);
            if let Some(s) = g.subscriptions.get(id).and_then(|m| m.get(event_name)) {
                items.push(s.clone());
            }
        }
        let next = if iter.next().is_some() { last.cloned() } else { None };
        Ok(Page { items, next })
    }

    async fn user_event_subscribers(&self, user_id: &str, event_name: &str) -> StoreResult<Vec<Subscription>> {
        let g = self.lock();
        Ok(g.user_event_subscribers
            .get(&user_event_key(user_id, event_name))
            .into_iter()
            .flatten()
            .filter_map(|id| g.subscriptions.get(id).and_then(|m| m.get(event_name)).cloned())
            .collect())
    }
}

#[async_trait]
impl DeliveryStore for MemoryStore {
    async fn claim_push(&self, push_id: &str, lease: Duration, _expires_at: i64) -> StoreResult<Claim> {
        let mut g = self.lock();
        let now = Instant::now();
        let outcome = match g.claims.get(push_id) {
            None => Claim::New,
            Some(ClaimState::Done) => return Ok(Claim::Done),
            Some(ClaimState::Sending { lease_until }) if *lease_until > now => return Ok(Claim::Busy),
            Some(ClaimState::Sending { .. }) => Claim::Retaken,
        };
        g.claims.insert(push_id.to_string(), ClaimState::Sending { lease_until: now + lease });
        Ok(outcome)
    }

    async fn complete_push(&self, push_id: &str) -> StoreResult<()> {
        self.lock().claims.insert(push_id.to_string(), ClaimState::Done);
        Ok(())
    }

    async fn release_push(&self, push_id: &str) -> StoreResult<()> {
        let mut g = self.lock();
        if matches!(g.claims.get(push_id), Some(ClaimState::Sending { .. })) {
            g.claims.remove(push_id);
        }
        Ok(())
    }

    async fn create_delivery(&self, d: &Delivery) -> StoreResult<bool> {
        check_size("delivery", d.frame.len() + d.push_id.len() + d.connection_id.len() + 64)?;
        let mut g = self.lock();
        let key = (d.push_id.clone(), d.connection_id.clone());
        if g.deliveries.contains_key(&key) {
            return Ok(false);
        }
        g.deliveries.insert(key, d.clone());
        Ok(true)
    }

    async fn get_delivery(&self, push_id: &str, connection_id: &str) -> StoreResult<Option<Delivery>> {
        Ok(self.lock().deliveries.get(&(push_id.to_string(), connection_id.to_string())).cloned())
    }

    async fn record_attempt(&self, push_id: &str, connection_id: &str) -> StoreResult<Option<u32>> {
        let mut g = self.lock();
        match g.deliveries.get_mut(&(push_id.to_string(), connection_id.to_string())) {
            Some(d) if !d.acked => {
                d.attempts += 1;
                Ok(Some(d.attempts))
            }
            _ => Ok(None),
        }
    }

    async fn ack_delivery(&self, push_id: &str, connection_id: &str) -> StoreResult<AckOutcome> {
        let mut g = self.lock();
        match g.deliveries.get_mut(&(push_id.to_string(), connection_id.to_string())) {
            Some(d) => {
                d.acked = true;
                Ok(AckOutcome::Acked)
            }
            None => Ok(AckOutcome::Unknown),
        }
    }
}

#[async_trait]
impl ConversationStore for MemoryStore {
    async fn create_conversation(&self, application_id: &serde_json::Value, user_id: &str, now: &str) -> StoreResult<(Conversation, bool)> {
        let channel = session_channel_of(application_id)?;
        let mut g = self.lock();
        if let Some(existing) = g.conversations.get(&channel) {
            return Ok((existing.conversation.clone(), false));
        }
        g.conversation_counter += 1;
        let conversation = Conversation {
            id: g.conversation_counter,
            session_channel: channel.clone(),
            application_id: application_id.clone(),
            user_id: user_id.to_string(),
            create_at: now.to_string(),
            update_at: now.to_string(),
        };
        g.user_conversations.entry(user_id.to_string()).or_default().insert(conversation.id, channel.clone());
        g.conversations
            .insert(channel, ConversationState { conversation: conversation.clone(), last_message_id: 0, unread: HashMap::new() });
        Ok((conversation, true))
    }

    async fn get_conversation(&self, session_channel: &str) -> StoreResult<Option<Conversation>> {
        Ok(self.lock().conversations.get(session_channel).map(|c| c.conversation.clone()))
    }

    async fn user_conversations(&self, user_id: &str) -> StoreResult<Vec<Conversation>> {
        let g = self.lock();
        Ok(g.user_conversations
            .get(user_id)
            .into_iter()
            .flat_map(|m| m.values())
            .filter_map(|ch| g.conversations.get(ch).map(|c| c.conversation.clone()))
            .collect())
    }
}

#[async_trait]
impl MessageStore for MemoryStore {
    async fn append_message(&self, m: &NewMessage) -> StoreResult<(ChatMessage, bool)> {
        check_size("message", m.content.len() + m.sender_id.len() + m.session_channel.len() + 128)?;
        let mut g = self.lock();
        let key = m.client_msg_id.as_deref().map(|k| message_key(&m.session_channel, k));
        if let Some(id) = key.as_ref().and_then(|k| g.message_keys.get(k)).copied() {
            let stored = g.messages.get(&m.session_channel).and_then(|ms| ms.get(&id)).cloned();
            return stored.map(|s| (s, false)).ok_or_else(|| StoreError::Corrupt(format!("message key points at missing message {id}")));
        }
        let Some(state) = g.conversations.get_mut(&m.session_channel) else {
            return Err(StoreError::NotFound(format!("conversation {}", m.session_channel)));
        };
        state.last_message_id += 1;
        *state.unread.entry(m.sender_id.clone()).or_default() += 1;
        let message = ChatMessage {
            id: state.last_message_id,
            session_channel: m.session_channel.clone(),
            content: m.content.clone(),
            content_type: ContentType::code(m.content_type),
            sender_id: m.sender_id.clone(),
            status: 0,
            create_at: m.create_at.clone(),
            update_at: m.create_at.clone(),
            client_msg_id: m.client_msg_id.clone(),
        };
        if let Some(k) = key {
            g.message_keys.insert(k, message.id);
        }
        g.messages.entry(m.session_channel.clone()).or_default().insert(message.id, message.clone());
        Ok((message, true))
    }

    async fn list_messages(&self, session_channel: &str, before_id: Option<i64>, limit: usize) -> StoreResult<Vec<ChatMessage>> {
        let g = self.lock();
        let Some(ms) = g.messages.get(session_channel) else { return Ok(vec![]) };
        let upper = before_id.unwrap_or(i64::MAX);
        let mut out: Vec<ChatMessage> = ms.range(..upper).rev().take(limit).map(|(_, m)| m.clone()).collect();
        out.reverse();
        Ok(out)
    }

    async fn get_message(&self, session_channel: &str, id: i64) -> StoreResult<Option<ChatMessage>> {
        Ok(self.lock().messages.get(session_channel).and_then(|ms| ms.get(&id)).cloned())
    }

    async fn mark_read(&self, session_channel: &str, id: i64, now: &str) -> StoreResult<Option<ChatMessage>> {
        let mut g = self.lock();
        let Some(m) = g.messages.get_mut(session_channel).and_then(|ms| ms.get_mut(&id)) else { return Ok(None) };
        if m.status == 1 {
            return Ok(Some(m.clone()));
        }
        m.status = 1;
        m.update_at = now.to_string();
        let (m, sender) = (m.clone(), m.sender_id.clone());
        if let Some(count) = g.conversations.get_mut(session_channel).and_then(|c| c.unread.get_mut(&sender)) {
            *count -= 1;
        }
        Ok(Some(m))
    }

    async fn unread_counts(&self, session_channels: &[String], reader: &str) -> StoreResult<Vec<UnreadCount>> {
        let g = self.lock();
        Ok(session_channels
            .iter()
            .filter_map(|ch| g.conversations.get(ch).map(|c| (ch, c)))
            .map(|(ch, c)| UnreadCount {
                session_channel: ch.clone(),
                count: c.unread.iter().filter(|(sender, _)| sender.as_str() != reader).map(|(_, n)| *n).sum(),
            })
            .collect())
    }
}

#[async_trait]
impl MemberStore for MemoryStore {
    async fn add_member(&self, session_channel: &str, member_id: &str) -> StoreResult<()> {
        let mut g = self.lock();
        g.member_channels.entry(member_id.to_string()).or_default().insert(session_channel.to_string());
        g.channel_members.entry(session_channel.to_string()).or_default().insert(member_id.to_string());
        Ok(())
    }

    async fn member_channels(&self, member_id: &str) -> StoreResult<Vec<String>> {
        Ok(self.lock().member_channels.get(member_id).map(|s| s.iter().cloned().collect()).unwrap_or_default())
    }

    async fn channel_members(&self, session_channel: &str) -> StoreResult<Vec<String>> {
        Ok(self.lock().channel_members.get(session_channel).map(|s| s.iter().cloned().collect()).unwrap_or_default())
    }
}
