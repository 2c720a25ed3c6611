//! Storage, split by capability: each handler takes the narrowest trait it needs, mirroring its
//! function's IAM policy. Two implementations: [`dynamodb`] (the cloud, DynamoDB Local, moto,
//! LocalStack) and [`memory`] (herald-local's embedded default and the unit tests). One contract
//! suite (`tests/`) runs on both.
//!
//! No method scans a table: every read is a `GetItem` or a `Query` on a key or an index.

pub mod dynamodb;
mod error;
pub mod faults;
pub mod memory;
mod shards;
pub mod tables;

use std::time::Duration;

use async_trait::async_trait;

use crate::domain::{
    AckOutcome, BatchState, Channel, ChatMessage, Claim, Connection, Conversation, Delivery, EventType, Fence, Mailing, MailingStatus,
    NewMessage, Notification, NotificationFilter, NotificationStatus, Position, Push, StreamHead, Subscription, Template, UnreadCount,
    UserProfile, pick_for_locale,
};
pub use error::{StoreError, StoreResult};

/// DynamoDB's item size limit; the memory store keeps it too.
pub const MAX_ITEM_BYTES: usize = 400 * 1024;

/// One page of a paged query. `next` is an opaque cursor; `None` means the last page.
/// A page may hold fewer items than asked for and still have a `next`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

#[async_trait]
pub trait ConnectionStore: Send + Sync {
    async fn put_connection(&self, connection: &Connection) -> StoreResult<()>;
    async fn get_connection(&self, connection_id: &str) -> StoreResult<Option<Connection>>;
    /// Deletes the connection and returns what was stored, if anything.
    async fn delete_connection(&self, connection_id: &str) -> StoreResult<Option<Connection>>;
    /// Every connection of a user (both APIs), via the `by_user` index.
    async fn user_connections(&self, user_id: &str) -> StoreResult<Vec<Connection>>;
}

#[async_trait]
pub trait SubscriptionStore: Send + Sync {
    /// Idempotent: subscribing twice leaves one subscription.
    async fn subscribe(&self, subscription: &Subscription) -> StoreResult<()>;
    /// Returns whether the subscription existed.
    async fn unsubscribe(&self, connection_id: &str, event_name: &str) -> StoreResult<bool>;
    /// The event names a connection is subscribed to.
    async fn connection_subscriptions(&self, connection_id: &str) -> StoreResult<Vec<String>>;
    /// Deletes every subscription of a connection; returns how many there were.
    async fn delete_connection_subscriptions(&self, connection_id: &str) -> StoreResult<usize>;
    /// One shard's subscribers of an event (`shard` in `0..EVENT_SHARDS`), a page at a time in
    /// connection id order: a fan-out reads the [`EVENT_SHARDS`] shards in parallel. A shard out
    /// of range, a limit of 0 or a cursor of another event or shard is [`StoreError::Invalid`].
    async fn event_subscribers_in_shard(
        &self,
        event_name: &str,
        shard: u32,
        cursor: Option<&str>,
        limit: usize,
    ) -> StoreResult<Page<Subscription>>;
    /// The subscribers of an event, a page at a time (fan-outs of 100,000 and more): the shards
    /// one after another, through [`event_subscribers_in_shard`](Self::event_subscribers_in_shard).
    /// `next` names a shard and a place in it.
    async fn event_subscribers(&self, event_name: &str, cursor: Option<&str>, limit: usize) -> StoreResult<Page<Subscription>> {
        shards::across_shards(self, event_name, cursor, limit).await
    }
    /// A user's connections subscribed to an event.
    async fn user_event_subscribers(&self, user_id: &str, event_name: &str) -> StoreResult<Vec<Subscription>>;
}

#[async_trait]
pub trait DeliveryStore: Send + Sync {
    /// Claims a push (its idempotency key) for `owner` before fanning it out, so that a message
    /// the queue hands over twice is pushed once. A claim not completed within `lease` may be
    /// retaken by another owner. `expires_at`: TTL.
    async fn claim_push(&self, push_id: &str, owner: &str, lease: Duration, expires_at: i64) -> StoreResult<Claim>;
    /// Extends `owner`'s live claim by `lease` from now; `false` when the claim is no longer
    /// `owner`'s (another worker retook it, or it is done).
    async fn renew_claim(&self, push_id: &str, owner: &str, lease: Duration) -> StoreResult<bool>;
    /// Marks `owner`'s claim as delivered: later claims answer [`Claim::Done`]. `false` (and
    /// nothing changed) when the claim is not `owner`'s.
    async fn complete_push(&self, push_id: &str, owner: &str) -> StoreResult<bool>;
    /// Drops `owner`'s unfinished claim so that a retry may start at once; another owner's
    /// claim, or a done one, is left as it is.
    async fn release_push(&self, push_id: &str, owner: &str) -> StoreResult<()>;
    /// Creates the delivery record once; `false` when it already exists (nothing is changed).
    async fn create_delivery(&self, delivery: &Delivery) -> StoreResult<bool>;
    async fn get_delivery(&self, push_id: &str, connection_id: &str) -> StoreResult<Option<Delivery>>;
    /// Counts one more send of an unacked delivery whose count is `expected` and returns the new
    /// count; `None` when the delivery is acked, unknown, or its count is no longer `expected`
    /// (another check or a nack got there first: nothing to resend).
    async fn record_attempt(&self, push_id: &str, connection_id: &str, expected: u32) -> StoreResult<Option<u32>>;
    /// Records an ack. Idempotent.
    async fn ack_delivery(&self, push_id: &str, connection_id: &str) -> StoreResult<AckOutcome>;
    /// How far a fan-out's delivery batch got; `None` when no worker has finished a pass of it.
    async fn get_batch(&self, batch_id: &str) -> StoreResult<Option<BatchState>>;
    /// Records a worker's pass over a batch. A [`BatchState::Done`] batch stays done: a later
    /// `Remaining` is ignored (conditional write). `expires_at`: TTL.
    async fn save_batch(&self, batch_id: &str, state: &BatchState, expires_at: i64) -> StoreResult<()>;
}

/// What a recovery's fence belongs to: a connection (its user stream) or one of its
/// subscriptions (the event's stream).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FenceOf<'a> {
    Connection(&'a str),
    Subscription { connection_id: &'a str, event_name: &'a str },
}

/// History streams (CONTRACT §8): every accepted push kept, with a TTL, in one stream, under
/// offsets 1, 2, 3… given by a conditional write on the stream's head (contiguous: offset `n`
/// is readable as soon as the head says `n`), and the fences that keep a recovery's replay and
/// live delivery apart.
#[async_trait]
pub trait HistoryStore: Send + Sync {
    /// The stream's head; a stream with no head (never used, or its history expired) gets one
    /// at offset 0 with a new epoch (a conditional write: two callers get the same epoch).
    /// `ttl_secs`: how long a new head is kept.
    async fn stream_head(&self, stream: &str, ttl_secs: i64) -> StoreResult<StreamHead>;
    /// Appends `push` to `stream` under the next offset, once per `key` (the push's idempotency
    /// key): a second call with the same key returns the first one's position and appends
    /// nothing. The push and the head are kept `ttl_secs`.
    async fn append_history(&self, stream: &str, key: &str, push: &Push, ttl_secs: i64) -> StoreResult<Position>;
    /// Up to `limit` pushes of `stream` in `epoch` with offsets above `after`, oldest first, with
    /// their positions; expired ones are not returned. A limit of 0 is [`StoreError::Invalid`].
    async fn read_history(&self, stream: &str, epoch: &str, after: u64, limit: usize) -> StoreResult<Vec<Push>>;
    /// The fence of a connection or subscription, read consistently: `None` when it does not
    /// exist, `Some(None)` when it has no fence.
    async fn fence(&self, of: FenceOf<'_>) -> StoreResult<Option<Option<Fence>>>;
    /// Sets the fence to `LiveAfter(head.offset)` if the stream's head is still `head` (one
    /// transaction with a check of the head): `false` (nothing changed) when a push was appended
    /// meanwhile. With `force`, sets it whatever the head. Nothing to set (it is gone) is `true`.
    async fn go_live(&self, of: FenceOf<'_>, stream: &str, head: &StreamHead, force: bool) -> StoreResult<bool>;
}

/// Presence (CONTRACT §8): when each connection's client was last heard from.
#[async_trait]
pub trait PresenceStore: Send + Sync {
    /// Records that the connection's client sent something at `now` (epoch seconds); nothing
    /// for a connection that is not stored.
    async fn touch_connection(&self, connection_id: &str, now: i64) -> StoreResult<()>;
    /// The stored connections among `connection_ids` (any number; strongly consistent reads).
    async fn connections(&self, connection_ids: &[String]) -> StoreResult<Vec<Connection>>;
}

#[async_trait]
pub trait ConversationStore: Send + Sync {
    /// Creates the conversation of an application once, with the next sequential id; a second
    /// call returns the first one's conversation and `false`.
    async fn create_conversation(&self, application_id: &serde_json::Value, user_id: &str, now: &str) -> StoreResult<(Conversation, bool)>;
    async fn get_conversation(&self, session_channel: &str) -> StoreResult<Option<Conversation>>;
    /// A user's conversations, by id.
    async fn user_conversations(&self, user_id: &str) -> StoreResult<Vec<Conversation>>;
}

#[async_trait]
pub trait MessageStore: Send + Sync {
    /// Appends a message with the channel's next sequential id (status 0). With a
    /// `client_msg_id` seen before on the channel, returns the stored message and `false`.
    /// [`StoreError::NotFound`] when the channel has no conversation.
    async fn append_message(&self, message: &NewMessage) -> StoreResult<(ChatMessage, bool)>;
    /// Up to `limit` messages with ids below `before_id` (all when `None`), the newest ones,
    /// returned oldest first.
    async fn list_messages(&self, session_channel: &str, before_id: Option<i64>, limit: usize) -> StoreResult<Vec<ChatMessage>>;
    async fn get_message(&self, session_channel: &str, id: i64) -> StoreResult<Option<ChatMessage>>;
    /// Sets status 1 (idempotent) and returns the message; `None` when there is no such message.
    async fn mark_read(&self, session_channel: &str, id: i64, now: &str) -> StoreResult<Option<ChatMessage>>;
    /// Per channel: messages with status 0 sent by someone other than `reader`.
    async fn unread_counts(&self, session_channels: &[String], reader: &str) -> StoreResult<Vec<UnreadCount>>;
}

#[async_trait]
pub trait MemberStore: Send + Sync {
    /// Idempotent.
    async fn add_member(&self, session_channel: &str, member_id: &str) -> StoreResult<()>;
    /// The channels a participant takes part in.
    async fn member_channels(&self, member_id: &str) -> StoreResult<Vec<String>>;
    /// The participants of a channel.
    async fn channel_members(&self, session_channel: &str) -> StoreResult<Vec<String>>;
}

/// What a template write came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateWrite {
    Done,
    /// Another template holds the (name, channel, locale) slot: nothing was written.
    SlotTaken,
    /// The template is gone, or its version is no longer the one expected (another admin saved
    /// it first): nothing was written.
    Stale,
}

#[async_trait]
pub trait TemplateStore: Send + Sync {
    /// Creates a template (its `version` is 1) in a free (name, channel, locale) slot; two
    /// creates racing for one slot: one is [`TemplateWrite::SlotTaken`].
    async fn create_template(&self, template: &Template) -> StoreResult<TemplateWrite>;
    async fn get_template(&self, id: &str) -> StoreResult<Option<Template>>;
    /// Replaces the template `next.id` if its stored version is still `expected_version`
    /// (a conditional write: of two admins saving version 3, one wins, the other is
    /// [`TemplateWrite::Stale`]). `next` may move it to another slot, if that one is free.
    async fn update_template(&self, next: &Template, expected_version: u32) -> StoreResult<TemplateWrite>;
    /// Deletes the template and frees its slot; `false` when there was none.
    async fn delete_template(&self, id: &str) -> StoreResult<bool>;
    /// Every template, by name, channel and locale (an index query on one partition: templates are
    /// the admins' few hundred, not the audience's millions).
    async fn list_templates(&self) -> StoreResult<Vec<Template>>;
    /// The templates of one name and channel, every locale (a Query on the `by_name` index).
    async fn templates_named(&self, name: &str, channel: Channel) -> StoreResult<Vec<Template>>;
    /// The template for a user's locale: exact (`ru-RU`), then language (`ru`), then the one
    /// without a locale (CONTRACT §9). One Query.
    async fn template_for(&self, name: &str, channel: Channel, user_locale: Option<&str>) -> StoreResult<Option<Template>> {
        let all = self.templates_named(name, channel).await?;
        Ok(pick_for_locale(&all, user_locale).cloned())
    }
}

#[async_trait]
pub trait UserStore: Send + Sync {
    async fn get_user(&self, user_id: &str) -> StoreResult<Option<UserProfile>>;
    /// Writes `profile` if the stored one is still at `expected_version` (`None`: no profile is
    /// stored yet): of two writes made to one version, one wins, the other is `false` and
    /// changes nothing.
    async fn put_user(&self, profile: &UserProfile, expected_version: Option<u32>) -> StoreResult<bool>;
    /// One shard's profiles (`shard` in `0..USER_SHARDS`), a page at a time in user id order: an
    /// `{"all":true}` audience reads the [`USER_SHARDS`] shards in parallel. A shard out of
    /// range, a limit of 0 or a cursor of another shard is [`StoreError::Invalid`].
    async fn users_in_shard(&self, shard: u32, cursor: Option<&str>, limit: usize) -> StoreResult<Page<UserProfile>>;
    /// Every profile, a page at a time: the shards one after another (no Scan). `next` names a
    /// shard and a place in it.
    async fn list_users(&self, cursor: Option<&str>, limit: usize) -> StoreResult<Page<UserProfile>> {
        shards::users_across_shards(self, cursor, limit).await
    }
}

#[async_trait]
pub trait EventTypeStore: Send + Sync {
    /// Creates or replaces the event type of `event_type.name`.
    async fn put_event_type(&self, event_type: &EventType) -> StoreResult<()>;
    async fn get_event_type(&self, name: &str) -> StoreResult<Option<EventType>>;
    /// Every event type, by name (an index query on one partition: the admins' few, like templates).
    async fn list_event_types(&self) -> StoreResult<Vec<EventType>>;
}

#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// Claims an event id once (a conditional write: the idempotency key of `POST /events`);
    /// `false` when it was claimed before. `expires_at`: TTL.
    async fn claim_event(&self, event_id: &str, expires_at: i64) -> StoreResult<bool>;
    /// Creates a history record once; `false` when one with its id exists (nothing is changed).
    async fn create_notification(&self, notification: &Notification) -> StoreResult<bool>;
    /// Replaces a history record (its status moved on).
    async fn update_notification(&self, notification: &Notification) -> StoreResult<()>;
    async fn get_notification(&self, id: &str) -> StoreResult<Option<Notification>>;
    /// History records, newest first, a page at a time: a Query by user (`by_user`) or by event
    /// (`by_event`), narrowed by the filter's other fields. A filter with neither a user nor an
    /// event, a limit of 0 or a malformed cursor is [`StoreError::Invalid`]. Expired records are
    /// not returned.
    async fn list_notifications(&self, filter: &NotificationFilter, cursor: Option<&str>, limit: usize) -> StoreResult<Page<Notification>>;
}

#[async_trait]
pub trait MailingStore: Send + Sync {
    /// Creates a mailing once; `false` when one with its id exists (nothing is changed).
    async fn create_mailing(&self, mailing: &Mailing) -> StoreResult<bool>;
    async fn get_mailing(&self, id: &str) -> StoreResult<Option<Mailing>>;
    /// The admins' mailings (kind [`MailingKind::Mailing`](crate::domain::MailingKind::Mailing); events are not listed), newest first,
    /// a page at a time: a Query on one partition of the `by_kind` index ordered by creation time
    /// (mailings are the admins' campaigns, a few a day, not the audience's millions).
    async fn list_mailings(&self, cursor: Option<&str>, limit: usize) -> StoreResult<Page<Mailing>>;
    /// Moves the status from one of `from` to `to` (a conditional write); `false` when it was in
    /// none of them (nothing is changed).
    async fn set_mailing_status(&self, id: &str, from: &[MailingStatus], to: MailingStatus) -> StoreResult<bool>;
    /// Starts the run `run` ([`run_key`](crate::domain::run_key)): status `sending`, the run's
    /// counters at 0, not expanded. Only when the mailing is `scheduled` or `sending` and no run
    /// at or after `run` started (a conditional write): a repeated or stale fire is `false`.
    async fn start_run(&self, id: &str, run: &str) -> StoreResult<bool>;
    /// Adds to the counters: `created`/`done` jobs of the run `run` (ignored when another run is
    /// the last), and `counts` by channel and status over every run (atomic ADDs).
    async fn add_to_counts(&self, id: &str, run: &str, created: i64, done: i64, counts: &[(String, i64)]) -> StoreResult<()>;
    /// Marks the run `run` expanded (every job has its record); ignored for another run.
    async fn mark_expanded(&self, id: &str, run: &str) -> StoreResult<()>;
    /// Creates a job's history record and counts it in the run `run` of mailing `mailing_id`, at
    /// once (one transaction); `false` (nothing changed) when the record exists or `run` is no
    /// longer the mailing's last run.
    async fn create_job(&self, record: &Notification, mailing_id: &str, run: &str) -> StoreResult<bool>;
    /// Writes a job's record in its new state and adds `counts` to its mailing, at once (one
    /// transaction), if the stored record is still `from` (a conditional write); `false` (nothing
    /// changed) otherwise. `done`: the job also counts in the run's done jobs, while `run` is the
    /// mailing's last run.
    async fn record_job(
        &self,
        record: &Notification,
        from: NotificationStatus,
        mailing_id: &str,
        run: &str,
        done: bool,
        counts: &[(String, i64)],
    ) -> StoreResult<bool>;
    /// Moves a `sending` mailing whose last run is `run`, expanded, with every created job done,
    /// to `to` (`sent`, or `scheduled` between recurrences); `false` otherwise.
    async fn finish_run(&self, id: &str, run: &str, to: MailingStatus) -> StoreResult<bool>;
}

/// Every capability: what herald-local and the contract suite hold.
pub trait Store:
    ConnectionStore
    + SubscriptionStore
    + DeliveryStore
    + ConversationStore
    + MessageStore
    + MemberStore
    + TemplateStore
    + UserStore
    + EventTypeStore
    + NotificationStore
    + MailingStore
    + HistoryStore
    + PresenceStore
{
}

impl<T> Store for T where
    T: ConnectionStore
        + SubscriptionStore
        + DeliveryStore
        + ConversationStore
        + MessageStore
        + MemberStore
        + TemplateStore
        + UserStore
        + EventTypeStore
        + NotificationStore
        + MailingStore
        + HistoryStore
        + PresenceStore
{
}

/// How many shards user profiles are spread over (by [`user_shard`]) in the users table's
/// `by_shard` index. Stored keys depend on it.
pub const USER_SHARDS: u32 = 16;

/// The shard (in `0..USER_SHARDS`) of a user's profile: the same stable hash as [`event_shard`].
pub fn user_shard(user_id: &str) -> u32 {
    event_shard(user_id) % USER_SHARDS
}

/// The `by_shard` index's partition key of one shard (`users#3`).
pub fn user_shard_key(shard: u32) -> String {
    format!("users#{shard}")
}

/// Templates in the order lists show them: by name, channel, then locale (none first).
pub fn sort_templates(templates: &mut [Template]) {
    templates.sort_by(|a, b| (&a.name, a.channel, &a.locale, &a.id).cmp(&(&b.name, b.channel, &b.locale, &b.id)));
}

/// The `by_name` index's partition key of a template: its name and channel, length-prefixed
/// (`7:welcome#email`).
pub fn template_name_key(name: &str, channel: Channel) -> String {
    format!("{}:{name}#{}", name.len(), channel.as_str())
}

/// The key of the marker item that holds a (name, channel, locale) slot for one template.
pub fn template_slot_key(name: &str, channel: Channel, locale: Option<&str>) -> String {
    format!("slot:{}|{}", template_name_key(name, channel), locale.unwrap_or(""))
}

/// How many shards the subscribers of one event are spread over (by [`event_shard`]), so that no
/// partition key of the `by_event` index grows with the audience. Stored keys depend on it.
pub const EVENT_SHARDS: u32 = 16;

/// The shard (in `0..EVENT_SHARDS`) of a connection's subscriptions: FNV-1a (64-bit) of the
/// connection id, its two halves xored, modulo [`EVENT_SHARDS`]. Stable across processes and
/// versions (never Rust's randomized hasher): stored keys depend on it.
pub fn event_shard(connection_id: &str) -> u32 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    let h = connection_id.bytes().fold(OFFSET, |h, b| (h ^ u64::from(b)).wrapping_mul(PRIME));
    // FNV's low bits depend only on the inputs' low bits: fold the well-mixed high half in.
    ((h ^ (h >> 32)) % u64::from(EVENT_SHARDS)) as u32
}

/// The `by_event` index's partition key: an event and one of its shards, length-prefixed
/// (`5:alpha#3`), unambiguous for any strings.
pub fn event_shard_key(event_name: &str, shard: u32) -> String {
    format!("{}:{event_name}#{shard}", event_name.len())
}

/// Length-prefixed composite key of a user and an event, unambiguous for any strings.
pub fn user_event_key(user_id: &str, event_name: &str) -> String {
    format!("{}:{user_id}{event_name}", user_id.len())
}

/// The channel of an application: its id as a string (a JSON string as is, a number in decimal).
pub fn session_channel_of(application_id: &serde_json::Value) -> StoreResult<String> {
    crate::domain::user_id_from_json("application_id", application_id).map_err(|e| StoreError::Invalid(e.to_string()))
}

/// A key of the counters table (`conversation` ids) or an idempotency marker.
pub fn message_key(session_channel: &str, client_msg_id: &str) -> String {
    format!("msg:{}:{session_channel}{client_msg_id}", session_channel.len())
}
