//! The in-memory store: herald-local's embedded backend and the handlers' unit tests.
//! It keeps DynamoDB's semantics that callers can observe: conditional writes, sequential ids,
//! paging with cursors, the 400 KB item limit, and TTLs: connections, subscriptions, claims,
//! delivery records and batch markers past their `expires_at` are not returned, as DynamoDB reads
//! that filter on the TTL attribute return none (TTL deletes late). Here an expired item is as
//! good as deleted, for reads and for writes alike (see [`expired`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use async_trait::async_trait;

use super::*;
use crate::domain::ContentType;

/// The tables' maps: keys are ids (fan-outs look up thousands a push), hashed with foldhash
/// (seeded per map, as std's) rather than SipHash.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

#[derive(Default)]
struct Inner {
    connections: HashMap<String, Connection>,
    user_connections: HashMap<String, BTreeSet<String>>,
    /// connection -> the events it is subscribed to
    subscriptions: HashMap<String, BTreeSet<String>>,
    /// event_shard_key (event and shard of the connection) -> connection id -> subscription:
    /// where a subscription is kept, so that a fan-out reads a shard's subscribers in one walk,
    /// without a lookup per subscriber.
    event_subscribers: HashMap<String, BTreeMap<String, Subscription>>,
    /// user_event_key -> connection ids
    user_event_subscribers: HashMap<String, BTreeSet<String>>,
    claims: HashMap<String, ClaimState>,
    /// push id -> its claim's TTL
    claim_expiry: HashMap<String, i64>,
    batches: HashMap<String, BatchState>,
    /// batch id -> its marker's TTL
    batch_expiry: HashMap<String, i64>,
    deliveries: HashMap<(String, String), Delivery>,
    conversation_counter: i64,
    conversations: HashMap<String, ConversationState>,
    user_conversations: HashMap<String, BTreeMap<i64, String>>,
    messages: HashMap<String, BTreeMap<i64, ChatMessage>>,
    message_keys: HashMap<String, i64>,
    member_channels: HashMap<String, BTreeSet<String>>,
    channel_members: HashMap<String, BTreeSet<String>>,
    templates: HashMap<String, Template>,
    /// template_slot_key -> the id of the template holding the slot
    template_slots: HashMap<String, String>,
    /// user id -> profile (in id order: a shard's page walks it)
    users: BTreeMap<String, UserProfile>,
    event_types: BTreeMap<String, EventType>,
    /// event id -> its idempotency marker's TTL
    event_claims: HashMap<String, i64>,
    notifications: HashMap<String, Notification>,
    mailings: HashMap<String, Mailing>,
    /// history stream -> its head and pushes
    streams: HashMap<String, StreamState>,
    /// a push's idempotency key -> where it was appended, and when that record expires
    history_keys: HashMap<String, (Position, i64)>,
}

struct StreamState {
    head: StreamHead,
    expires_at: i64,
    /// offset -> the push (with its position) and its TTL
    items: BTreeMap<u64, (Push, i64)>,
}

impl Inner {
    /// The stream's live state, a new one (offset 0, a new epoch) when it has none or it expired.
    fn stream(&mut self, stream: &str, ttl_secs: i64, now: i64) -> &mut StreamState {
        if self.streams.get(stream).is_some_and(|st| expired(st.expires_at, now)) {
            self.streams.remove(stream);
        }
        self.streams.entry(stream.to_string()).or_insert_with(|| StreamState {
            head: StreamHead { offset: 0, epoch: crate::domain::new_epoch() },
            expires_at: now + ttl_secs,
            items: BTreeMap::new(),
        })
    }

    fn fence_of(&mut self, of: FenceOf<'_>, now: i64) -> Option<&mut Option<Fence>> {
        match of {
            FenceOf::Connection(id) => {
                self.expire_connection(id, now);
                self.connections.get_mut(id).map(|c| &mut c.fence)
            }
            FenceOf::Subscription { connection_id, event_name } => {
                self.expire_subscriptions(connection_id, now);
                self.subscription_mut(connection_id, event_name).map(|s| &mut s.fence)
            }
        }
    }
}

#[async_trait]
impl HistoryStore for MemoryStore {
    async fn stream_head(&self, stream: &str, ttl_secs: i64) -> StoreResult<StreamHead> {
        let mut g = self.lock();
        Ok(g.stream(stream, ttl_secs, epoch_now()).head.clone())
    }

    async fn append_history(&self, stream: &str, key: &str, push: &Push, ttl_secs: i64) -> StoreResult<Position> {
        let mut g = self.lock();
        let now = epoch_now();
        if let Some((position, expires_at)) = g.history_keys.get(key)
            && !expired(*expires_at, now)
        {
            return Ok(position.clone());
        }
        let expires_at = now + ttl_secs;
        let st = g.stream(stream, ttl_secs, now);
        let position = Position { stream: stream.to_string(), offset: st.head.offset + 1, epoch: st.head.epoch.clone() };
        let kept = Push { position: Some(position.clone()), ..push.clone() };
        check_size("history item", serde_json::to_vec(&kept).map(|v| v.len()).unwrap_or(0))?;
        st.head.offset = position.offset;
        st.expires_at = expires_at;
        st.items.insert(position.offset, (kept, expires_at));
        g.history_keys.insert(key.to_string(), (position.clone(), expires_at));
        Ok(position)
    }

    async fn read_history(&self, stream: &str, epoch: &str, after: u64, limit: usize) -> StoreResult<Vec<Push>> {
        if limit == 0 {
            return Err(StoreError::Invalid("limit must be at least 1".into()));
        }
        let g = self.lock();
        let now = epoch_now();
        let Some(st) = g.streams.get(stream).filter(|st| !expired(st.expires_at, now) && st.head.epoch == epoch) else {
            return Ok(vec![]);
        };
        Ok(st
            .items
            .range(after.saturating_add(1)..)
            .filter(|(_, (_, exp))| !expired(*exp, now))
            .take(limit)
            .map(|(_, (p, _))| p.clone())
            .collect())
    }

    async fn fence(&self, of: FenceOf<'_>) -> StoreResult<Option<Option<Fence>>> {
        let mut g = self.lock();
        Ok(g.fence_of(of, epoch_now()).map(|f| *f))
    }

    async fn go_live(&self, of: FenceOf<'_>, stream: &str, head: &StreamHead, force: bool) -> StoreResult<bool> {
        let mut g = self.lock();
        let now = epoch_now();
        let current = g.streams.get(stream).filter(|st| !expired(st.expires_at, now)).map(|st| st.head.clone());
        if !force && current.as_ref() != Some(head) {
            return Ok(false);
        }
        if let Some(fence) = g.fence_of(of, now) {
            *fence = Some(Fence::LiveAfter(head.offset));
        }
        Ok(true)
    }
}

#[async_trait]
impl PresenceStore for MemoryStore {
    async fn touch_connection(&self, connection_id: &str, now: i64) -> StoreResult<()> {
        let mut g = self.lock();
        g.expire_connection(connection_id, epoch_now());
        if let Some(c) = g.connections.get_mut(connection_id) {
            c.last_seen = c.last_seen.max(now);
        }
        Ok(())
    }

    async fn connections(&self, connection_ids: &[String]) -> StoreResult<Vec<Connection>> {
        let mut g = self.lock();
        let now = epoch_now();
        let mut out = Vec::new();
        let unique: BTreeSet<&String> = connection_ids.iter().collect();
        for id in unique {
            g.expire_connection(id, now);
            if let Some(c) = g.connections.get(id) {
                out.push(c.clone());
            }
        }
        Ok(out)
    }
}

enum ClaimState {
    Sending { lease_until: Instant, owner: String },
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

/// Epoch seconds now, what TTLs are read against.
fn epoch_now() -> i64 {
    crate::domain::epoch_secs(crate::domain::now())
}

/// Whether an item whose TTL attribute is `expires_at` (epoch seconds) has expired at `now`.
/// DynamoDB deletes expired items late (within days) and Herald's reads do not count on them;
/// here they are gone the moment they expire. A TTL of 0 or less is no TTL (DynamoDB's TTL
/// process ignores values that far in the past as well).
pub(crate) fn expired(expires_at: i64, now: i64) -> bool {
    expires_at > 0 && expires_at <= now
}

impl Inner {
    /// Drops the connection if its TTL has passed.
    fn expire_connection(&mut self, id: &str, now: i64) {
        if self.connections.get(id).is_some_and(|c| expired(c.expires_at, now))
            && let Some(old) = self.connections.remove(id)
        {
            remove_from(&mut self.user_connections, &old.user_id, id);
        }
    }

    /// Drops the connection's subscriptions whose TTL has passed.
    fn expire_subscriptions(&mut self, connection_id: &str, now: i64) {
        let stale: Vec<String> = self
            .subscriptions
            .get(connection_id)
            .into_iter()
            .flatten()
            .filter(|e| self.subscription(connection_id, e).is_some_and(|s| expired(s.expires_at, now)))
            .cloned()
            .collect();
        for event_name in stale {
            self.remove_subscription(connection_id, &event_name);
        }
    }

    /// Drops the push's claim if its TTL has passed.
    fn expire_claim(&mut self, push_id: &str, now: i64) {
        if self.claim_expiry.get(push_id).is_some_and(|e| expired(*e, now)) {
            self.claims.remove(push_id);
            self.claim_expiry.remove(push_id);
        }
    }

    /// Drops the delivery record if its TTL has passed.
    fn expire_delivery(&mut self, key: &(String, String), now: i64) {
        if self.deliveries.get(key).is_some_and(|d| expired(d.expires_at, now)) {
            self.deliveries.remove(key);
        }
    }

    /// Drops the batch marker if its TTL has passed.
    fn expire_batch(&mut self, batch_id: &str, now: i64) {
        if self.batch_expiry.get(batch_id).is_some_and(|e| expired(*e, now)) {
            self.batches.remove(batch_id);
            self.batch_expiry.remove(batch_id);
        }
    }
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
        let mut g = self.lock();
        g.expire_connection(id, epoch_now());
        Ok(g.connections.get(id).cloned())
    }

    async fn delete_connection(&self, id: &str) -> StoreResult<Option<Connection>> {
        let mut g = self.lock();
        g.expire_connection(id, epoch_now());
        let old = g.connections.remove(id);
        if let Some(old) = &old {
            remove_from(&mut g.user_connections, &old.user_id, id);
        }
        Ok(old)
    }

    async fn user_connections(&self, user_id: &str) -> StoreResult<Vec<Connection>> {
        let mut g = self.lock();
        let now = epoch_now();
        for id in g.user_connections.get(user_id).cloned().unwrap_or_default() {
            g.expire_connection(&id, now);
        }
        Ok(g.user_connections.get(user_id).into_iter().flatten().filter_map(|id| g.connections.get(id).cloned()).collect())
    }
}

impl Inner {
    fn subscription(&self, connection_id: &str, event_name: &str) -> Option<&Subscription> {
        self.event_subscribers.get(&event_shard_key(event_name, event_shard(connection_id)))?.get(connection_id)
    }

    fn subscription_mut(&mut self, connection_id: &str, event_name: &str) -> Option<&mut Subscription> {
        self.event_subscribers.get_mut(&event_shard_key(event_name, event_shard(connection_id)))?.get_mut(connection_id)
    }

    fn remove_subscription(&mut self, connection_id: &str, event_name: &str) -> bool {
        remove_from(&mut self.subscriptions, connection_id, event_name);
        let key = event_shard_key(event_name, event_shard(connection_id));
        let Some(shard) = self.event_subscribers.get_mut(&key) else { return false };
        let Some(old) = shard.remove(connection_id) else { return false };
        if shard.is_empty() {
            self.event_subscribers.remove(&key);
        }
        remove_from(&mut self.user_event_subscribers, &user_event_key(&old.user_id, event_name), connection_id);
        true
    }
}

#[async_trait]
impl SubscriptionStore for MemoryStore {
    async fn subscribe(&self, s: &Subscription) -> StoreResult<()> {
        let mut g = self.lock();
        g.remove_subscription(&s.connection_id, &s.event_name);
        g.subscriptions.entry(s.connection_id.clone()).or_default().insert(s.event_name.clone());
        g.event_subscribers
            .entry(event_shard_key(&s.event_name, event_shard(&s.connection_id)))
            .or_default()
            .insert(s.connection_id.clone(), s.clone());
        g.user_event_subscribers.entry(user_event_key(&s.user_id, &s.event_name)).or_default().insert(s.connection_id.clone());
        Ok(())
    }

    async fn unsubscribe(&self, connection_id: &str, event_name: &str) -> StoreResult<bool> {
        let mut g = self.lock();
        g.expire_subscriptions(connection_id, epoch_now());
        Ok(g.remove_subscription(connection_id, event_name))
    }

    async fn connection_subscriptions(&self, connection_id: &str) -> StoreResult<Vec<String>> {
        let mut g = self.lock();
        g.expire_subscriptions(connection_id, epoch_now());
        Ok(g.subscriptions.get(connection_id).map(|s| s.iter().cloned().collect()).unwrap_or_default())
    }

    async fn delete_connection_subscriptions(&self, connection_id: &str) -> StoreResult<usize> {
        let mut g = self.lock();
        g.expire_subscriptions(connection_id, epoch_now());
        let events: Vec<String> = g.subscriptions.get(connection_id).map(|s| s.iter().cloned().collect()).unwrap_or_default();
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
        let now = epoch_now();
        let Some(subscribers) = g.event_subscribers.get(&event_shard_key(event_name, shard)) else {
            return Ok(Page { items: vec![], next: None });
        };
        let mut iter: Box<dyn Iterator<Item = (&String, &Subscription)>> = match cursor {
            Some(after) => Box::new(subscribers.range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded))),
            None => Box::new(subscribers.iter()),
        };
        let mut items = Vec::with_capacity(limit.min(subscribers.len()));
        // The cursor is the last id looked at, whether or not it was returned.
        let mut last = None;
        for (id, s) in iter.by_ref().take(limit) {
            last = Some(id);
            if !expired(s.expires_at, now) {
                items.push(s.clone());
            }
        }
        let next = if iter.next().is_some() { last.cloned() } else { None };
        Ok(Page { items, next })
    }

    async fn user_event_subscribers(&self, user_id: &str, event_name: &str) -> StoreResult<Vec<Subscription>> {
        let g = self.lock();
        let now = epoch_now();
        Ok(g.user_event_subscribers
            .get(&user_event_key(user_id, event_name))
            .into_iter()
            .flatten()
            .filter_map(|id| g.subscription(id, event_name).filter(|s| !expired(s.expires_at, now)).cloned())
            .collect())
    }
}

#[async_trait]
impl DeliveryStore for MemoryStore {
    async fn claim_push(&self, push_id: &str, owner: &str, lease: Duration, expires_at: i64) -> StoreResult<Claim> {
        let mut g = self.lock();
        g.expire_claim(push_id, epoch_now());
        let now = Instant::now();
        let outcome = match g.claims.get(push_id) {
            None => Claim::New,
            Some(ClaimState::Done) => return Ok(Claim::Done),
            Some(ClaimState::Sending { lease_until, .. }) if *lease_until > now => return Ok(Claim::Busy),
            Some(ClaimState::Sending { .. }) => Claim::Retaken,
        };
        g.claims.insert(push_id.to_string(), ClaimState::Sending { lease_until: now + lease, owner: owner.to_string() });
        g.claim_expiry.insert(push_id.to_string(), expires_at);
        Ok(outcome)
    }

    async fn renew_claim(&self, push_id: &str, owner: &str, lease: Duration) -> StoreResult<bool> {
        let mut g = self.lock();
        g.expire_claim(push_id, epoch_now());
        match g.claims.get_mut(push_id) {
            Some(ClaimState::Sending { lease_until, owner: holder }) if holder == owner => {
                *lease_until = Instant::now() + lease;
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn complete_push(&self, push_id: &str, owner: &str) -> StoreResult<bool> {
        let mut g = self.lock();
        g.expire_claim(push_id, epoch_now());
        match g.claims.get(push_id) {
            Some(ClaimState::Sending { owner: holder, .. }) if holder == owner => {
                g.claims.insert(push_id.to_string(), ClaimState::Done);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    async fn release_push(&self, push_id: &str, owner: &str) -> StoreResult<()> {
        let mut g = self.lock();
        g.expire_claim(push_id, epoch_now());
        if matches!(g.claims.get(push_id), Some(ClaimState::Sending { owner: holder, .. }) if holder == owner) {
            g.claims.remove(push_id);
        }
        Ok(())
    }

    async fn create_delivery(&self, d: &Delivery) -> StoreResult<bool> {
        check_size("delivery", d.frame.len() + d.push_id.len() + d.connection_id.len() + 64)?;
        let mut g = self.lock();
        let key = (d.push_id.clone(), d.connection_id.clone());
        g.expire_delivery(&key, epoch_now());
        if g.deliveries.contains_key(&key) {
            return Ok(false);
        }
        g.deliveries.insert(key, d.clone());
        Ok(true)
    }

    async fn get_delivery(&self, push_id: &str, connection_id: &str) -> StoreResult<Option<Delivery>> {
        let mut g = self.lock();
        let key = (push_id.to_string(), connection_id.to_string());
        g.expire_delivery(&key, epoch_now());
        Ok(g.deliveries.get(&key).cloned())
    }

    async fn record_attempt(&self, push_id: &str, connection_id: &str, expected: u32) -> StoreResult<Option<u32>> {
        let mut g = self.lock();
        let key = (push_id.to_string(), connection_id.to_string());
        g.expire_delivery(&key, epoch_now());
        match g.deliveries.get_mut(&key) {
            Some(d) if !d.acked && d.attempts == expected => {
                d.attempts += 1;
                Ok(Some(d.attempts))
            }
            _ => Ok(None),
        }
    }

    async fn ack_delivery(&self, push_id: &str, connection_id: &str) -> StoreResult<AckOutcome> {
        let mut g = self.lock();
        let key = (push_id.to_string(), connection_id.to_string());
        g.expire_delivery(&key, epoch_now());
        match g.deliveries.get_mut(&key) {
            Some(d) => {
                d.acked = true;
                Ok(AckOutcome::Acked)
            }
            None => Ok(AckOutcome::Unknown),
        }
    }

    async fn get_batch(&self, batch_id: &str) -> StoreResult<Option<BatchState>> {
        let mut g = self.lock();
        g.expire_batch(batch_id, epoch_now());
        Ok(g.batches.get(batch_id).cloned())
    }

    async fn save_batch(&self, batch_id: &str, state: &BatchState, expires_at: i64) -> StoreResult<()> {
        let mut g = self.lock();
        g.expire_batch(batch_id, epoch_now());
        if g.batches.get(batch_id) != Some(&BatchState::Done) {
            g.batches.insert(batch_id.to_string(), state.clone());
            g.batch_expiry.insert(batch_id.to_string(), expires_at);
        }
        Ok(())
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
            .insert(channel, ConversationState { conversation: conversation.clone(), last_message_id: 0, unread: HashMap::default() });
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

fn slot_of(t: &Template) -> String {
    template_slot_key(&t.name, t.channel, t.locale.as_deref())
}

fn check_template_size(t: &Template) -> StoreResult<()> {
    let bytes = t.name.len() + t.body.len() + t.subject.as_ref().map_or(0, String::len) + t.html.as_ref().map_or(0, String::len);
    check_size(&format!("template {}", t.id), bytes)
}

#[async_trait]
impl TemplateStore for MemoryStore {
    async fn create_template(&self, t: &Template) -> StoreResult<TemplateWrite> {
        check_template_size(t)?;
        let mut g = self.lock();
        let slot = slot_of(t);
        if g.template_slots.contains_key(&slot) || g.templates.contains_key(&t.id) {
            return Ok(TemplateWrite::SlotTaken);
        }
        g.template_slots.insert(slot, t.id.clone());
        g.templates.insert(t.id.clone(), t.clone());
        Ok(TemplateWrite::Done)
    }

    async fn get_template(&self, id: &str) -> StoreResult<Option<Template>> {
        Ok(self.lock().templates.get(id).cloned())
    }

    async fn update_template(&self, next: &Template, expected_version: u32) -> StoreResult<TemplateWrite> {
        check_template_size(next)?;
        let mut g = self.lock();
        let Some(old) = g.templates.get(&next.id).cloned() else { return Ok(TemplateWrite::Stale) };
        if old.version != expected_version {
            return Ok(TemplateWrite::Stale);
        }
        let (old_slot, new_slot) = (slot_of(&old), slot_of(next));
        if old_slot != new_slot {
            if g.template_slots.contains_key(&new_slot) {
                return Ok(TemplateWrite::SlotTaken);
            }
            g.template_slots.remove(&old_slot);
            g.template_slots.insert(new_slot, next.id.clone());
        }
        g.templates.insert(next.id.clone(), next.clone());
        Ok(TemplateWrite::Done)
    }

    async fn delete_template(&self, id: &str) -> StoreResult<bool> {
        let mut g = self.lock();
        let Some(old) = g.templates.remove(id) else { return Ok(false) };
        g.template_slots.remove(&slot_of(&old));
        Ok(true)
    }

    async fn list_templates(&self) -> StoreResult<Vec<Template>> {
        let mut all: Vec<Template> = self.lock().templates.values().cloned().collect();
        sort_templates(&mut all);
        Ok(all)
    }

    async fn templates_named(&self, name: &str, channel: Channel) -> StoreResult<Vec<Template>> {
        let mut all: Vec<Template> = self.lock().templates.values().filter(|t| t.name == name && t.channel == channel).cloned().collect();
        sort_templates(&mut all);
        Ok(all)
    }
}

fn check_user_size(p: &UserProfile) -> StoreResult<()> {
    let text = [&p.email, &p.phone, &p.name, &p.locale, &p.timezone].iter().map(|f| f.as_ref().map_or(0, String::len)).sum::<usize>();
    check_size(&format!("user {}", p.user_id), p.user_id.len() + text)
}

#[async_trait]
impl UserStore for MemoryStore {
    async fn get_user(&self, user_id: &str) -> StoreResult<Option<UserProfile>> {
        Ok(self.lock().users.get(user_id).cloned())
    }

    async fn put_user(&self, profile: &UserProfile, expected_version: Option<u32>) -> StoreResult<bool> {
        check_user_size(profile)?;
        let mut g = self.lock();
        if g.users.get(&profile.user_id).map(|p| p.version) != expected_version {
            return Ok(false);
        }
        g.users.insert(profile.user_id.clone(), profile.clone());
        Ok(true)
    }

    async fn users_in_shard(&self, shard: u32, cursor: Option<&str>, limit: usize) -> StoreResult<Page<UserProfile>> {
        shards::check_user_shard_page(shard, limit)?;
        // The cursor is the last user id of the page before: one of this shard's.
        if cursor.is_some_and(|c| user_shard(c) != shard) {
            return Err(StoreError::Invalid("page cursor of another shard".into()));
        }
        let g = self.lock();
        let after = match cursor {
            Some(c) => (std::ops::Bound::Excluded(c), std::ops::Bound::Unbounded),
            None => (std::ops::Bound::Unbounded, std::ops::Bound::Unbounded),
        };
        let mut iter = g.users.range::<str, _>(after).filter(|(id, _)| user_shard(id) == shard).map(|(_, p)| p);
        let items: Vec<UserProfile> = iter.by_ref().take(limit).cloned().collect();
        let next = if iter.next().is_some() { items.last().map(|p| p.user_id.clone()) } else { None };
        Ok(Page { items, next })
    }
}

#[async_trait]
impl EventTypeStore for MemoryStore {
    async fn put_event_type(&self, event_type: &EventType) -> StoreResult<()> {
        let bytes = event_type.name.len() + event_type.templates.values().map(String::len).sum::<usize>();
        check_size(&format!("event type {}", event_type.name), bytes)?;
        self.lock().event_types.insert(event_type.name.clone(), event_type.clone());
        Ok(())
    }

    async fn get_event_type(&self, name: &str) -> StoreResult<Option<EventType>> {
        Ok(self.lock().event_types.get(name).cloned())
    }

    async fn list_event_types(&self) -> StoreResult<Vec<EventType>> {
        Ok(self.lock().event_types.values().cloned().collect())
    }
}

#[async_trait]
impl NotificationStore for MemoryStore {
    async fn claim_event(&self, event_id: &str, expires_at: i64) -> StoreResult<bool> {
        let mut g = self.lock();
        let now = epoch_now();
        if g.event_claims.get(event_id).is_some_and(|e| !expired(*e, now)) {
            return Ok(false);
        }
        g.event_claims.insert(event_id.to_string(), expires_at);
        Ok(true)
    }

    async fn create_notification(&self, notification: &Notification) -> StoreResult<bool> {
        let mut g = self.lock();
        let now = epoch_now();
        if g.notifications.get(&notification.id).is_some_and(|n| !expired(n.expires_at, now)) {
            return Ok(false);
        }
        g.notifications.insert(notification.id.clone(), notification.clone());
        Ok(true)
    }

    async fn update_notification(&self, notification: &Notification) -> StoreResult<()> {
        self.lock().notifications.insert(notification.id.clone(), notification.clone());
        Ok(())
    }

    async fn get_notification(&self, id: &str) -> StoreResult<Option<Notification>> {
        Ok(self.lock().notifications.get(id).filter(|n| !expired(n.expires_at, epoch_now())).cloned())
    }

    async fn list_notifications(&self, filter: &NotificationFilter, cursor: Option<&str>, limit: usize) -> StoreResult<Page<Notification>> {
        check_history_query(filter, limit)?;
        let now = epoch_now();
        let g = self.lock();
        let mut all: Vec<&Notification> = g.notifications.values().filter(|n| !expired(n.expires_at, now) && filter.matches(n)).collect();
        all.sort_by_key(|n| std::cmp::Reverse(n.created_key()));
        // The cursor is the query's user or event and the last record's ordering key, opaque as
        // DynamoDB's; refused for another query as DynamoDB's is.
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let scope = filter.user_id.as_ref().or(filter.event_id.as_ref()).or(filter.mailing_id.as_ref()).cloned().unwrap_or_default();
        let start = match cursor {
            None => 0,
            Some(c) => {
                let decoded = b64
                    .decode(c)
                    .ok()
                    .and_then(|k| String::from_utf8(k).ok())
                    .ok_or_else(|| StoreError::Invalid("malformed page cursor".into()))?;
                let (of, key) = decoded.split_once('\0').ok_or_else(|| StoreError::Invalid("malformed page cursor".into()))?;
                if of != scope {
                    return Err(StoreError::Invalid("page cursor of another query".into()));
                }
                all.iter().position(|n| n.created_key().as_str() < key).unwrap_or(all.len())
            }
        };
        let rest = &all[start..];
        let items: Vec<Notification> = rest.iter().take(limit).map(|n| (*n).clone()).collect();
        let next = if rest.len() > limit { items.last().map(|n| b64.encode(format!("{scope}\0{}", n.created_key()))) } else { None };
        Ok(Page { items, next })
    }
}

/// A history query must name a user or an event (a key of an index) and a positive limit.
pub(crate) fn check_history_query(filter: &NotificationFilter, limit: usize) -> StoreResult<()> {
    if filter.user_id.is_none() && filter.event_id.is_none() && filter.mailing_id.is_none() {
        return Err(StoreError::Invalid("a history query needs a user, an event or a mailing".into()));
    }
    if limit == 0 {
        return Err(StoreError::Invalid("a page limit of 0".into()));
    }
    Ok(())
}

#[async_trait]
impl MailingStore for MemoryStore {
    async fn create_mailing(&self, mailing: &Mailing) -> StoreResult<bool> {
        let bytes = serde_json::to_vec(mailing).map(|v| v.len()).unwrap_or(0);
        check_size(&format!("mailing {}", mailing.id), bytes)?;
        let mut g = self.lock();
        if g.mailings.get(&mailing.id).is_some_and(|m| !expired(m.expires_at, epoch_now())) {
            return Ok(false);
        }
        g.mailings.insert(mailing.id.clone(), mailing.clone());
        Ok(true)
    }

    async fn get_mailing(&self, id: &str) -> StoreResult<Option<Mailing>> {
        Ok(self.lock().mailings.get(id).filter(|m| !expired(m.expires_at, epoch_now())).cloned())
    }

    async fn list_mailings(&self, cursor: Option<&str>, limit: usize) -> StoreResult<Page<Mailing>> {
        if limit == 0 {
            return Err(StoreError::Invalid("a page limit of 0".into()));
        }
        use base64::Engine;
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let after = cursor
            .map(|c| {
                b64.decode(c)
                    .ok()
                    .and_then(|k| String::from_utf8(k).ok())
                    .filter(|k| k.starts_with(MAILING_CURSOR))
                    .map(|k| k[MAILING_CURSOR.len()..].to_string())
                    .ok_or_else(|| StoreError::Invalid("malformed page cursor".into()))
            })
            .transpose()?;
        let g = self.lock();
        let mut all: Vec<&Mailing> = g.mailings.values().filter(|m| m.kind == crate::domain::MailingKind::Mailing).collect();
        all.sort_by_key(|m| std::cmp::Reverse(m.created_key()));
        let items: Vec<Mailing> =
            all.into_iter().filter(|m| after.as_ref().is_none_or(|a| m.created_key() < *a)).take(limit + 1).cloned().collect();
        let mut items = items;
        let next = if items.len() > limit {
            items.truncate(limit);
            items.last().map(|m| b64.encode(format!("{MAILING_CURSOR}{}", m.created_key())))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn set_mailing_status(&self, id: &str, from: &[MailingStatus], to: MailingStatus) -> StoreResult<bool> {
        let mut g = self.lock();
        let Some(m) = g.mailings.get_mut(id).filter(|m| from.contains(&m.status)) else { return Ok(false) };
        m.status = to;
        m.updated_at = crate::domain::rfc3339(crate::domain::now());
        Ok(true)
    }

    async fn start_run(&self, id: &str, run: &str) -> StoreResult<bool> {
        let mut g = self.lock();
        let Some(m) = g.mailings.get_mut(id) else { return Ok(false) };
        if !matches!(m.status, MailingStatus::Scheduled | MailingStatus::Sending) || m.last_run.as_deref().is_some_and(|l| l >= run) {
            return Ok(false);
        }
        m.status = MailingStatus::Sending;
        m.last_run = Some(run.to_string());
        m.expanded = false;
        m.created_jobs = 0;
        m.done_jobs = 0;
        m.updated_at = crate::domain::rfc3339(crate::domain::now());
        Ok(true)
    }

    async fn add_to_counts(&self, id: &str, run: &str, created: i64, done: i64, counts: &[(String, i64)]) -> StoreResult<()> {
        let mut g = self.lock();
        let Some(m) = g.mailings.get_mut(id) else { return Ok(()) };
        if m.last_run.as_deref() == Some(run) {
            m.created_jobs += created;
            m.done_jobs += done;
        }
        for (k, v) in counts {
            *m.counts.entry(k.clone()).or_default() += v;
        }
        Ok(())
    }

    async fn mark_expanded(&self, id: &str, run: &str) -> StoreResult<()> {
        if let Some(m) = self.lock().mailings.get_mut(id).filter(|m| m.last_run.as_deref() == Some(run)) {
            m.expanded = true;
        }
        Ok(())
    }

    async fn create_job(&self, record: &Notification, mailing_id: &str, run: &str) -> StoreResult<bool> {
        let mut g = self.lock();
        let now = epoch_now();
        if g.notifications.get(&record.id).is_some_and(|n| !expired(n.expires_at, now)) {
            return Ok(false);
        }
        let Some(m) = g.mailings.get_mut(mailing_id).filter(|m| m.last_run.as_deref() == Some(run)) else { return Ok(false) };
        m.created_jobs += 1;
        g.notifications.insert(record.id.clone(), record.clone());
        Ok(true)
    }

    async fn record_job(
        &self,
        record: &Notification,
        from: NotificationStatus,
        mailing_id: &str,
        run: &str,
        done: bool,
        counts: &[(String, i64)],
    ) -> StoreResult<bool> {
        let mut g = self.lock();
        if g.notifications.get(&record.id).is_none_or(|n| n.status != from) {
            return Ok(false);
        }
        g.notifications.insert(record.id.clone(), record.clone());
        if let Some(m) = g.mailings.get_mut(mailing_id) {
            if done && m.last_run.as_deref() == Some(run) {
                m.done_jobs += 1;
            }
            for (k, v) in counts {
                *m.counts.entry(k.clone()).or_default() += v;
            }
        }
        Ok(true)
    }

    async fn finish_run(&self, id: &str, run: &str, to: MailingStatus) -> StoreResult<bool> {
        let mut g = self.lock();
        let Some(m) = g.mailings.get_mut(id) else { return Ok(false) };
        if m.status != MailingStatus::Sending || m.last_run.as_deref() != Some(run) || !m.run_finished() {
            return Ok(false);
        }
        m.status = to;
        m.updated_at = crate::domain::rfc3339(crate::domain::now());
        Ok(true)
    }
}

/// What the memory store's mailing cursors start with (a cursor of another list is refused).
const MAILING_CURSOR: &str = "mailings:";

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

#[cfg(test)]
mod expiry_tests {
    use super::*;
    use crate::domain::Api;

    fn past() -> i64 {
        epoch_now() - 1
    }

    fn future() -> i64 {
        epoch_now() + 3600
    }

    fn connection(id: &str, expires_at: i64) -> Connection {
        Connection { expires_at, ..Connection::opened(id, "u1", Api::Notify, Duration::from_secs(3600)) }
    }

    fn delivery(push: &str, expires_at: i64) -> Delivery {
        Delivery {
            push_id: push.into(),
            connection_id: "c1".into(),
            attempts: 1,
            acked: false,
            frame: b"{}".to_vec(),
            binary: false,
            expires_at,
        }
    }

    #[tokio::test]
    async fn an_expired_connection_is_not_returned() {
        let s = MemoryStore::new();
        s.put_connection(&connection("old", past())).await.unwrap();
        s.put_connection(&connection("live", future())).await.unwrap();
        assert_eq!(s.get_connection("old").await.unwrap(), None);
        assert!(s.get_connection("live").await.unwrap().is_some());
        let ids: Vec<String> = s.user_connections("u1").await.unwrap().into_iter().map(|c| c.connection_id).collect();
        assert_eq!(ids, ["live"]);
        assert_eq!(s.delete_connection("old").await.unwrap(), None, "an expired item is as good as deleted");
    }

    #[tokio::test]
    async fn a_ttl_of_zero_is_no_ttl() {
        let s = MemoryStore::new();
        s.put_connection(&connection("c", 0)).await.unwrap();
        assert!(s.get_connection("c").await.unwrap().is_some());
        s.create_delivery(&delivery("p", 0)).await.unwrap();
        assert!(s.get_delivery("p", "c1").await.unwrap().is_some());
    }

    #[tokio::test]
    async fn expired_subscriptions_are_not_targets() {
        let s = MemoryStore::new();
        let old = connection("old", past());
        let live = connection("live", future());
        for c in [&old, &live] {
            s.subscribe(&Subscription::of(c, "e")).await.unwrap();
        }
        let mut fanout = Vec::new();
        let mut cursor = None;
        loop {
            let page = s.event_subscribers("e", cursor.as_deref(), 10).await.unwrap();
            fanout.extend(page.items.into_iter().map(|s| s.connection_id));
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        assert_eq!(fanout, ["live"]);
        let direct: Vec<String> = s.user_event_subscribers("u1", "e").await.unwrap().into_iter().map(|s| s.connection_id).collect();
        assert_eq!(direct, ["live"]);
        assert!(s.connection_subscriptions("old").await.unwrap().is_empty());
        assert!(!s.unsubscribe("old", "e").await.unwrap());
        assert_eq!(s.delete_connection_subscriptions("live").await.unwrap(), 1);
    }

    #[tokio::test]
    async fn an_expired_claim_is_claimed_anew() {
        let s = MemoryStore::new();
        let lease = Duration::from_secs(60);
        assert_eq!(s.claim_push("p", "w1", lease, past()).await.unwrap(), Claim::New);
        // Done, but expired: a message handed over again after the TTL is a new push.
        assert!(!s.complete_push("p", "w1").await.unwrap(), "an expired claim is not w1's any more");
        assert_eq!(s.claim_push("p", "w2", lease, future()).await.unwrap(), Claim::New);
        assert!(s.complete_push("p", "w2").await.unwrap());
        assert_eq!(s.claim_push("p", "w3", lease, future()).await.unwrap(), Claim::Done);
    }

    #[tokio::test]
    async fn an_expired_delivery_record_is_unknown() {
        let s = MemoryStore::new();
        s.create_delivery(&delivery("p", past())).await.unwrap();
        assert_eq!(s.get_delivery("p", "c1").await.unwrap(), None);
        assert_eq!(s.record_attempt("p", "c1", 1).await.unwrap(), None);
        assert_eq!(s.ack_delivery("p", "c1").await.unwrap(), AckOutcome::Unknown);
        assert!(s.create_delivery(&delivery("p", future())).await.unwrap(), "created again once expired");
        assert_eq!(s.record_attempt("p", "c1", 1).await.unwrap(), Some(2));
    }

    #[tokio::test]
    async fn an_expired_batch_marker_is_not_returned() {
        let s = MemoryStore::new();
        s.save_batch("b", &BatchState::Done, past()).await.unwrap();
        assert_eq!(s.get_batch("b").await.unwrap(), None);
        s.save_batch("b", &BatchState::Remaining(vec!["c1".into()]), future()).await.unwrap();
        assert_eq!(s.get_batch("b").await.unwrap(), Some(BatchState::Remaining(vec!["c1".into()])));
    }
}
