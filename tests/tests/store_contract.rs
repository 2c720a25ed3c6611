//! The store contract: one suite over the store traits, run on the in-memory store and on
//! DynamoDB Local. Every case is written once (`case_*<S: Store>`); `contract!` runs each as
//! `memory::case_*` and `dynamodb::case_*`. A few DynamoDB-only cases follow (`dynamodb_only::*`):
//! error mapping, cursors, corrupt items, the 1 MB page boundary, table administration.
//!
//! DynamoDB Local: run with `./scripts/test` (it sets `HERALD_TEST_DYNAMODB_ENDPOINT`).

use std::collections::BTreeSet;
use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use herald::domain::{
    AckMode, AckOutcome, Api, BatchState, Channel, ChannelPrefs, ChatMessage, Claim, Connection, Content, ContentType, Delivery, Encoding,
    EventType, Mailing, MailingAudience, MailingKind, MailingStatus, NewMessage, Notification, NotificationFilter, NotificationStatus,
    QuietHours, Recurrence, Subscription, Template, TimeOfDay, UserProfile,
};
use herald::domain::{Fence, Push, StreamHead};
use herald::store::{EVENT_SHARDS, FenceOf, Page, Store, StoreError, StoreResult, TemplateWrite, USER_SHARDS, event_shard, user_shard};
use serde_json::json;

const T0: &str = "2024-05-01T10:00:00Z";
const T1: &str = "2024-05-01T10:05:00Z";
const T2: &str = "2024-05-01T10:10:00Z";
const LONG_LEASE: Duration = Duration::from_secs(60);
const EXPIRES: i64 = 2_000_000_000;

fn connection(id: &str, user: &str) -> Connection {
    Connection {
        connection_id: id.to_string(),
        user_id: user.to_string(),
        api: Api::Notify,
        encoding: Encoding::Json,
        ack_mode: AckMode::None,
        admin: false,
        request_id: None,
        connected_at: 1_714_557_600_000,
        expires_at: EXPIRES,
        fence: None,
        last_seen: 1_714_557_600,
    }
}

fn subscription(id: &str, user: &str, event: &str) -> Subscription {
    Subscription::of(&connection(id, user), event)
}

fn text(channel: &str, sender: &str, content: &str) -> NewMessage {
    NewMessage {
        session_channel: channel.to_string(),
        content: content.to_string(),
        content_type: ContentType::Text,
        sender_id: sender.to_string(),
        client_msg_id: None,
        create_at: T0.to_string(),
    }
}

fn keyed(channel: &str, sender: &str, content: &str, key: &str) -> NewMessage {
    NewMessage { client_msg_id: Some(key.to_string()), ..text(channel, sender, content) }
}

fn delivery(push: &str, conn: &str) -> Delivery {
    Delivery {
        push_id: push.to_string(),
        connection_id: conn.to_string(),
        attempts: 1,
        acked: false,
        frame: vec![0x0a, 0x00, 0x9f, 0xff, b'x'],
        binary: true,
        expires_at: EXPIRES,
    }
}

fn ids<'a>(conns: impl IntoIterator<Item = &'a Connection>) -> Vec<String> {
    let mut v: Vec<String> = conns.into_iter().map(|c| c.connection_id.clone()).collect();
    v.sort();
    v
}

fn sub_ids<'a>(subs: impl IntoIterator<Item = &'a Subscription>) -> Vec<String> {
    let mut v: Vec<String> = subs.into_iter().map(|s| s.connection_id.clone()).collect();
    v.sort();
    v
}

fn message_ids(ms: &[ChatMessage]) -> Vec<i64> {
    ms.iter().map(|m| m.id).collect()
}

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// Walks every page of an event's subscribers, as a fan-out does: until `next` is `None`. Only
/// the last page may be empty. Returns the subscribers and the number of pages.
async fn all_subscribers<S: Store>(s: &S, event: &str, limit: usize) -> (Vec<Subscription>, usize) {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let Page { items, next } = s.event_subscribers(event, cursor.as_deref(), limit).await.unwrap();
        pages += 1;
        assert!(items.len() <= limit, "page of {} over limit {limit}", items.len());
        assert!(!items.is_empty() || next.is_none(), "an empty page must be the last");
        assert!(pages <= 10_000, "paging does not end");
        out.extend(items);
        match next {
            Some(n) => cursor = Some(n),
            None => return (out, pages),
        }
    }
}

fn assert_too_large<T: std::fmt::Debug>(r: StoreResult<T>) {
    assert!(matches!(r, Err(StoreError::ItemTooLarge(_))), "expected ItemTooLarge, got {r:?}");
}

// ---------------------------------------------------------------------------------------------
// Connections

async fn case_connections<S: Store>(s: &S) {
    assert_eq!(s.get_connection("1").await.unwrap(), None);
    let a1 = connection("1", "1589");
    let a2 = Connection {
        api: Api::Chat,
        encoding: Encoding::Protobuf,
        ack_mode: AckMode::Required,
        admin: true,
        request_id: Some("77".into()),
        ..connection("2", "1589")
    };
    let b = connection("10", "42");
    for c in [&a1, &a2, &b] {
        s.put_connection(c).await.unwrap();
    }
    assert_eq!(s.get_connection("1").await.unwrap(), Some(a1.clone()));
    assert_eq!(s.get_connection("2").await.unwrap(), Some(a2.clone()), "every field round-trips");
    assert_eq!(ids(&s.user_connections("1589").await.unwrap()), strings(&["1", "2"]));
    assert_eq!(s.user_connections("42").await.unwrap(), vec![b.clone()]);
    assert_eq!(s.user_connections("nobody").await.unwrap(), vec![]);

    // Putting again replaces, also in the by-user lookup.
    let moved = connection("2", "42");
    s.put_connection(&moved).await.unwrap();
    assert_eq!(ids(&s.user_connections("1589").await.unwrap()), strings(&["1"]));
    assert_eq!(ids(&s.user_connections("42").await.unwrap()), strings(&["10", "2"]));

    assert_eq!(s.delete_connection("1").await.unwrap(), Some(a1));
    assert_eq!(s.delete_connection("1").await.unwrap(), None);
    assert_eq!(s.get_connection("1").await.unwrap(), None);
    assert_eq!(s.user_connections("1589").await.unwrap(), vec![]);
    assert_eq!(ids(&s.user_connections("42").await.unwrap()), strings(&["10", "2"]));
}

// ---------------------------------------------------------------------------------------------
// Subscriptions

async fn case_subscriptions<S: Store>(s: &S) {
    let sub = subscription("c1", "u1", "ev");
    s.subscribe(&sub).await.unwrap();
    s.subscribe(&sub).await.unwrap();
    assert_eq!(s.connection_subscriptions("c1").await.unwrap(), strings(&["ev"]), "subscribing twice leaves one");
    let page = s.event_subscribers("ev", None, 10).await.unwrap();
    assert_eq!(page.items, vec![sub.clone()]);
    s.subscribe(&subscription("c1", "u1", "other")).await.unwrap();
    let mut events = s.connection_subscriptions("c1").await.unwrap();
    events.sort();
    assert_eq!(events, strings(&["ev", "other"]));

    assert!(s.unsubscribe("c1", "other").await.unwrap());
    assert!(!s.unsubscribe("c1", "other").await.unwrap(), "a second unsubscribe finds nothing");
    assert!(!s.unsubscribe("nope", "ev").await.unwrap());
    assert_eq!(s.connection_subscriptions("c1").await.unwrap(), strings(&["ev"]));
    assert_eq!(s.connection_subscriptions("nope").await.unwrap(), Vec::<String>::new());
    assert_eq!(s.event_subscribers("other", None, 10).await.unwrap(), Page { items: vec![], next: None });
}

async fn case_delete_connection_subscriptions<S: Store>(s: &S) {
    for e in ["e1", "e2", "e3"] {
        s.subscribe(&subscription("c1", "u1", e)).await.unwrap();
    }
    s.subscribe(&subscription("c2", "u2", "e1")).await.unwrap();
    assert_eq!(s.delete_connection_subscriptions("c1").await.unwrap(), 3);
    assert_eq!(s.connection_subscriptions("c1").await.unwrap(), Vec::<String>::new());
    let (subs, _) = all_subscribers(s, "e1", 10).await;
    assert_eq!(sub_ids(&subs), strings(&["c2"]), "gone from the event lookup");
    let (subs, _) = all_subscribers(s, "e2", 10).await;
    assert!(subs.is_empty());
    assert_eq!(s.user_event_subscribers("u1", "e1").await.unwrap(), vec![], "gone from the user+event lookup");
    assert_eq!(s.user_event_subscribers("u1", "e3").await.unwrap(), vec![]);
    assert_eq!(s.user_event_subscribers("u2", "e1").await.unwrap(), vec![subscription("c2", "u2", "e1")]);
    assert_eq!(s.delete_connection_subscriptions("c1").await.unwrap(), 0);
}

async fn case_event_subscribers_paging<S: Store>(s: &S) {
    let expected: Vec<String> = (1..=5).map(|i| format!("conn-{i}")).collect();
    for id in &expected {
        s.subscribe(&subscription(id, &format!("user-{id}"), "news")).await.unwrap();
    }
    s.subscribe(&subscription("elsewhere", "u", "sports")).await.unwrap();
    let (subs, pages) = all_subscribers(s, "news", 2).await;
    let got = sub_ids(&subs);
    assert_eq!(got, expected, "pages concatenate to exactly the subscribers");
    assert_eq!(got.iter().collect::<BTreeSet<_>>().len(), 5, "no duplicates");
    assert!((3..=4).contains(&pages), "5 at 2 a page: 3 pages (and perhaps a final empty one), got {pages}");
    assert_eq!(subs.iter().find(|x| x.connection_id == "conn-3").unwrap(), &subscription("conn-3", "user-conn-3", "news"));

    let first = s.event_subscribers("news", None, 2).await.unwrap();
    assert_eq!(first.items.len(), 2);
    assert!(first.next.is_some(), "more to come");
    assert!(matches!(s.event_subscribers("news", None, 0).await, Err(StoreError::Invalid(_))), "limit 0 is refused");
}

async fn case_user_event_subscribers<S: Store>(s: &S) {
    for (c, u, e) in [("c1", "A", "ev"), ("c2", "A", "ev"), ("c3", "B", "ev"), ("c4", "A", "other"), ("c5", "a", "bc"), ("c6", "ab", "c")] {
        s.subscribe(&subscription(c, u, e)).await.unwrap();
    }
    assert_eq!(sub_ids(&s.user_event_subscribers("A", "ev").await.unwrap()), strings(&["c1", "c2"]));
    assert_eq!(sub_ids(&s.user_event_subscribers("B", "ev").await.unwrap()), strings(&["c3"]));
    assert_eq!(sub_ids(&s.user_event_subscribers("a", "bc").await.unwrap()), strings(&["c5"]), "user+event keys do not collide");
    assert_eq!(sub_ids(&s.user_event_subscribers("ab", "c").await.unwrap()), strings(&["c6"]));
    assert_eq!(s.user_event_subscribers("B", "other").await.unwrap(), vec![]);
}

// ---------------------------------------------------------------------------------------------
// An event's subscribers over its shards

const FAN_COUNT: usize = 200;
const FAN_EVENT: &str = "popular";

fn fan_id(i: usize) -> String {
    format!("fan-{i:03}")
}

/// `FAN_COUNT` subscribers of `FAN_EVENT`, and a few of other events beside them.
async fn seed_fan_event<S: Store>(s: &S) -> Vec<String> {
    let ids: Vec<String> = (0..FAN_COUNT).map(fan_id).collect();
    futures::stream::iter(ids.iter())
        .map(|id| async move { s.subscribe(&subscription(id, &format!("user-{id}"), FAN_EVENT)).await })
        .buffer_unordered(16)
        .for_each(|r| async move { r.unwrap() })
        .await;
    for (c, e) in [("fan-000", "other"), ("elsewhere", "popularity"), ("elsewhere", "7:popular#1")] {
        s.subscribe(&subscription(c, "someone", e)).await.unwrap();
    }
    ids
}

/// Every page of one shard of an event, checking each page's size; returns the subscribers
/// and the number of pages.
async fn shard_subscribers<S: Store>(s: &S, event: &str, shard: u32, limit: usize) -> (Vec<Subscription>, usize) {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let Page { items, next } = s.event_subscribers_in_shard(event, shard, cursor.as_deref(), limit).await.unwrap();
        pages += 1;
        assert!(items.len() <= limit, "shard {shard}: page of {} over limit {limit}", items.len());
        assert!(pages <= 10_000, "paging does not end");
        out.extend(items);
        match next {
            Some(n) => cursor = Some(n),
            None => return (out, pages),
        }
    }
}

async fn case_event_shards_hold_their_own<S: Store>(s: &S) {
    let ids = seed_fan_event(s).await;
    let mut union: Vec<String> = Vec::new();
    let mut used = 0;
    for shard in 0..EVENT_SHARDS {
        let (subs, _) = shard_subscribers(s, FAN_EVENT, shard, 1000).await;
        let got: Vec<String> = subs.iter().map(|x| x.connection_id.clone()).collect();
        let own: Vec<String> = ids.iter().filter(|id| event_shard(id) == shard).cloned().collect();
        assert_eq!(got, own, "shard {shard} gives exactly its own connections, in connection id order");
        assert!(subs.iter().all(|x| x.event_name == FAN_EVENT), "shard {shard}: only the event's subscriptions");
        used += usize::from(!got.is_empty());
        union.extend(got);
    }
    assert!(used >= 10, "{FAN_COUNT} connections land on {used} of {EVENT_SHARDS} shards");
    union.sort();
    assert_eq!(union, ids, "the shards together are every subscriber exactly once");
    let fan_0 = subs_of_shard(s, event_shard("fan-000")).await;
    assert_eq!(fan_0.iter().find(|x| x.connection_id == "fan-000"), Some(&subscription("fan-000", "user-fan-000", FAN_EVENT)));

    // Unsubscribing takes a connection out of its shard only.
    let gone = fan_id(17);
    assert!(s.unsubscribe(&gone, FAN_EVENT).await.unwrap());
    let after = subs_of_shard(s, event_shard(&gone)).await;
    assert!(after.iter().all(|x| x.connection_id != gone), "unsubscribed: gone from its shard");
    let own_left = ids.iter().filter(|id| event_shard(id) == event_shard(&gone) && **id != gone).count();
    assert_eq!(after.len(), own_left);
}

async fn subs_of_shard<S: Store>(s: &S, shard: u32) -> Vec<Subscription> {
    shard_subscribers(s, FAN_EVENT, shard, 1000).await.0
}

async fn case_event_shard_paging<S: Store>(s: &S) {
    let ids = seed_fan_event(s).await;
    let (shard, own) = (0..EVENT_SHARDS)
        .map(|shard| (shard, ids.iter().filter(|id| event_shard(id) == shard).cloned().collect::<Vec<_>>()))
        .max_by_key(|(_, own)| own.len())
        .unwrap();
    assert!(own.len() >= 7, "the fullest shard has {}", own.len());
    let (subs, pages) = shard_subscribers(s, FAN_EVENT, shard, 3).await;
    assert_eq!(subs.iter().map(|x| x.connection_id.clone()).collect::<Vec<_>>(), own, "pages of 3 concatenate to the shard");
    let full = own.len().div_ceil(3);
    assert!((full..=full + 1).contains(&pages), "{} at 3 a page: {full} pages (and perhaps a final empty one), got {pages}", own.len());

    let first = s.event_subscribers_in_shard(FAN_EVENT, shard, None, 1).await.unwrap();
    assert_eq!(first.items.len(), 1);
    let cursor = first.next.expect("more to come in the shard");
    let other = (shard + 1) % EVENT_SHARDS;
    let r = s.event_subscribers_in_shard(FAN_EVENT, other, Some(&cursor), 10).await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "a cursor of another shard: {r:?}");
}

async fn case_event_subscribers_over_shards<S: Store>(s: &S) {
    let ids = seed_fan_event(s).await;
    for limit in [1, 7, 64, 1000] {
        let (subs, pages) = all_subscribers(s, FAN_EVENT, limit).await;
        let got = sub_ids(&subs);
        assert_eq!(got, ids, "limit {limit}: every subscriber exactly once");
        assert!(subs.iter().all(|x| x.event_name == FAN_EVENT));
        let full = FAN_COUNT.div_ceil(limit);
        assert!((full..=full + 1).contains(&pages), "limit {limit}: pages fill across shards: {full} (+1), got {pages}");
    }
    let r = s.event_subscribers(FAN_EVENT, Some("not a cursor"), 10).await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "{r:?}");
    let first = s.event_subscribers(FAN_EVENT, None, 5).await.unwrap();
    let r = s.event_subscribers("other", first.next.as_deref(), 10).await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "a cursor of another event: {r:?}");
}

async fn case_event_shard_out_of_range<S: Store>(s: &S) {
    s.subscribe(&subscription("c1", "u1", "ev")).await.unwrap();
    for shard in [EVENT_SHARDS, EVENT_SHARDS + 1, u32::MAX] {
        let r = s.event_subscribers_in_shard("ev", shard, None, 10).await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "shard {shard}: {r:?}");
    }
    let r = s.event_subscribers_in_shard("ev", event_shard("c1"), None, 0).await;
    assert!(matches!(r, Err(StoreError::Invalid(_))), "limit 0: {r:?}");
    let page = s.event_subscribers_in_shard("ev", event_shard("c1"), None, 10).await.unwrap();
    assert_eq!(sub_ids(&page.items), strings(&["c1"]));
    let empty = s.event_subscribers_in_shard("ev", (event_shard("c1") + 1) % EVENT_SHARDS, None, 10).await.unwrap();
    assert_eq!(empty, Page { items: vec![], next: None });
}

// ---------------------------------------------------------------------------------------------
// More than DynamoDB's 1 MB a query page

const BIG_COUNT: usize = 1_600;
const BIG_USER: &str = "big-user";
const BIG_EVENT: &str = "big-event";

/// The shard of every big id: the event's 1 MB pages happen within one shard.
const BIG_SHARD: u32 = 5;

/// ~700-byte connection ids, all of `BIG_SHARD`, in order: 1,600 items make over 1 MB in each
/// lookup, the event's shard included.
fn big_ids() -> Vec<String> {
    (0..).map(|j: usize| format!("{j:05}-{}", "x".repeat(690))).filter(|id| event_shard(id) == BIG_SHARD).take(BIG_COUNT).collect()
}

async fn seed_big_event<S: Store>(s: &S, with_connections: bool) {
    futures::stream::iter(big_ids())
        .map(|id| async move {
            let c = connection(&id, BIG_USER);
            if with_connections {
                s.put_connection(&c).await?;
            }
            s.subscribe(&Subscription::of(&c, BIG_EVENT)).await
        })
        .buffer_unordered(32)
        .for_each(|r| async move { r.unwrap() })
        .await;
}

async fn case_query_pages_past_1mb<S: Store>(s: &S) {
    seed_big_event(s, true).await;
    s.subscribe(&subscription("small", "someone-else", BIG_EVENT)).await.unwrap();
    s.put_connection(&connection("small", "someone-else")).await.unwrap();

    let (subs, _) = all_subscribers(s, BIG_EVENT, 5000).await;
    assert_eq!(subs.len(), BIG_COUNT + 1);
    assert_eq!(subs.iter().map(|x| &x.connection_id).collect::<BTreeSet<_>>().len(), BIG_COUNT + 1, "no duplicates");

    let conns = s.user_connections(BIG_USER).await.unwrap();
    assert_eq!(conns.len(), BIG_COUNT, "user_connections follows every page");
    assert_eq!(ids(&conns), big_ids());
    let subs = s.user_event_subscribers(BIG_USER, BIG_EVENT).await.unwrap();
    assert_eq!(subs.len(), BIG_COUNT, "user_event_subscribers follows every page");
    assert_eq!(sub_ids(&subs), big_ids());
}

// ---------------------------------------------------------------------------------------------
// Push claims and deliveries

async fn case_claim_push<S: Store>(s: &S) {
    assert_eq!(s.claim_push("p1", "a", LONG_LEASE, EXPIRES).await.unwrap(), Claim::New);
    assert_eq!(s.claim_push("p1", "b", LONG_LEASE, EXPIRES).await.unwrap(), Claim::Busy, "a live lease");
    assert!(s.complete_push("p1", "a").await.unwrap());
    assert_eq!(s.claim_push("p1", "b", LONG_LEASE, EXPIRES).await.unwrap(), Claim::Done);
    s.release_push("p1", "a").await.unwrap();
    assert_eq!(s.claim_push("p1", "b", LONG_LEASE, EXPIRES).await.unwrap(), Claim::Done, "release keeps a completed push");

    assert_eq!(s.claim_push("p2", "a", LONG_LEASE, EXPIRES).await.unwrap(), Claim::New);
    s.release_push("p2", "a").await.unwrap();
    assert_eq!(s.claim_push("p2", "b", LONG_LEASE, EXPIRES).await.unwrap(), Claim::New, "a released claim starts over");
    s.release_push("never-claimed", "a").await.unwrap();
}

async fn case_claims_belong_to_their_owner<S: Store>(s: &S) {
    assert_eq!(s.claim_push("p", "a", LONG_LEASE, EXPIRES).await.unwrap(), Claim::New);
    assert!(!s.complete_push("p", "b").await.unwrap(), "another owner cannot complete it");
    s.release_push("p", "b").await.unwrap();
    assert_eq!(s.claim_push("p", "c", LONG_LEASE, EXPIRES).await.unwrap(), Claim::Busy, "nor release it");
    assert!(!s.renew_claim("p", "b", LONG_LEASE).await.unwrap(), "nor renew it");
    assert!(s.renew_claim("p", "a", LONG_LEASE).await.unwrap());
    assert!(!s.renew_claim("never-claimed", "a", LONG_LEASE).await.unwrap());
    assert!(s.complete_push("p", "a").await.unwrap());
    assert!(!s.renew_claim("p", "a", LONG_LEASE).await.unwrap(), "a done claim is not renewed");
    assert!(!s.complete_push("p", "a").await.unwrap(), "completing twice changes nothing");
    assert_eq!(s.claim_push("p", "c", LONG_LEASE, EXPIRES).await.unwrap(), Claim::Done);
}

async fn case_claim_push_expired_lease<S: Store>(s: &S) {
    assert_eq!(s.claim_push("p", "a", Duration::from_millis(50), EXPIRES).await.unwrap(), Claim::New);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(s.claim_push("p", "b", LONG_LEASE, EXPIRES).await.unwrap(), Claim::Retaken);
    assert_eq!(s.claim_push("p", "c", LONG_LEASE, EXPIRES).await.unwrap(), Claim::Busy, "the retaken lease is live");
    // The first owner lost it: its late completion or release does nothing.
    assert!(!s.complete_push("p", "a").await.unwrap());
    s.release_push("p", "a").await.unwrap();
    assert_eq!(s.claim_push("p", "c", LONG_LEASE, EXPIRES).await.unwrap(), Claim::Busy);
    assert!(s.complete_push("p", "b").await.unwrap());
    assert_eq!(s.claim_push("p", "c", LONG_LEASE, EXPIRES).await.unwrap(), Claim::Done);
}

async fn case_claim_push_concurrent<S: Store>(s: &S) {
    for round in 0..5 {
        let push = format!("race-{round}");
        let (a, b) = tokio::join!(s.claim_push(&push, "a", LONG_LEASE, EXPIRES), s.claim_push(&push, "b", LONG_LEASE, EXPIRES));
        let mut outcomes = [a.unwrap(), b.unwrap()];
        outcomes.sort_by_key(|c| format!("{c:?}"));
        assert_eq!(outcomes, [Claim::Busy, Claim::New], "exactly one claimer wins");
    }
}

async fn case_batch_markers<S: Store>(s: &S) {
    assert_eq!(s.get_batch("k#1").await.unwrap(), None);
    let left = BatchState::Remaining(vec!["c2".into(), "c9".into()]);
    s.save_batch("k#1", &left, EXPIRES).await.unwrap();
    assert_eq!(s.get_batch("k#1").await.unwrap(), Some(left));
    s.save_batch("k#1", &BatchState::Remaining(vec!["c9".into()]), EXPIRES).await.unwrap();
    assert_eq!(s.get_batch("k#1").await.unwrap(), Some(BatchState::Remaining(vec!["c9".into()])));
    s.save_batch("k#1", &BatchState::Done, EXPIRES).await.unwrap();
    // A late pass of a retried copy never reopens a done batch.
    s.save_batch("k#1", &BatchState::Remaining(vec!["c9".into()]), EXPIRES).await.unwrap();
    assert_eq!(s.get_batch("k#1").await.unwrap(), Some(BatchState::Done));
    assert_eq!(s.get_batch("k#2").await.unwrap(), None, "batches are apart");
    // A batch marker is not a delivery nor a claim of a push of the same id.
    assert_eq!(s.claim_push("k#1", "a", LONG_LEASE, EXPIRES).await.unwrap(), Claim::New);
    assert_eq!(s.get_delivery("k#1", "c9").await.unwrap(), None);
}

async fn case_deliveries<S: Store>(s: &S) {
    let d = delivery("p1", "c1");
    assert!(s.create_delivery(&d).await.unwrap());
    assert!(!s.create_delivery(&Delivery { frame: b"other".to_vec(), attempts: 9, ..d.clone() }).await.unwrap());
    assert_eq!(s.get_delivery("p1", "c1").await.unwrap(), Some(d.clone()), "the second create changed nothing");
    assert_eq!(s.get_delivery("p1", "c2").await.unwrap(), None);

    assert_eq!(s.record_attempt("p1", "c1", 1).await.unwrap(), Some(2));
    assert_eq!(s.record_attempt("p1", "c1", 1).await.unwrap(), None, "a stale count moves nothing");
    assert_eq!(s.record_attempt("p1", "c1", 2).await.unwrap(), Some(3));
    assert_eq!(s.ack_delivery("p1", "c1").await.unwrap(), AckOutcome::Acked);
    assert_eq!(s.ack_delivery("p1", "c1").await.unwrap(), AckOutcome::Acked, "acking twice is fine");
    assert_eq!(s.record_attempt("p1", "c1", 3).await.unwrap(), None, "nothing to resend once acked");
    assert_eq!(s.get_delivery("p1", "c1").await.unwrap(), Some(Delivery { attempts: 3, acked: true, ..d }));

    assert_eq!(s.ack_delivery("p1", "unknown").await.unwrap(), AckOutcome::Unknown);
    assert_eq!(s.ack_delivery("unknown", "c1").await.unwrap(), AckOutcome::Unknown);
    assert_eq!(s.record_attempt("unknown", "c1", 1).await.unwrap(), None);
    assert_eq!(s.get_delivery("unknown", "c1").await.unwrap(), None, "an unknown ack creates nothing");

    // Claims and deliveries of one push do not disturb each other.
    assert_eq!(s.claim_push("p1", "a", LONG_LEASE, EXPIRES).await.unwrap(), Claim::New);
    assert_eq!(s.get_delivery("p1", "c1").await.unwrap().map(|d| d.acked), Some(true));
}

// ---------------------------------------------------------------------------------------------
// Conversations

async fn case_create_conversation<S: Store>(s: &S) {
    let (a, created) = s.create_conversation(&json!(7), "u1", T0).await.unwrap();
    assert!(created);
    assert_eq!((a.id, a.session_channel.as_str(), &a.application_id, a.user_id.as_str()), (1, "7", &json!(7), "u1"));
    assert_eq!((a.create_at.as_str(), a.update_at.as_str()), (T0, T0));
    let (b, created) = s.create_conversation(&json!("app-b"), "u2", T1).await.unwrap();
    assert!(created);
    assert_eq!((b.id, b.session_channel.as_str(), &b.application_id), (2, "app-b", &json!("app-b")));

    let (again, created) = s.create_conversation(&json!(7), "u9", T2).await.unwrap();
    assert!(!created);
    assert_eq!(again, a, "the first call's conversation, unchanged");
    let (again, created) = s.create_conversation(&json!("7"), "u9", T2).await.unwrap();
    assert!(!created, "7 and \"7\" are one application");
    assert_eq!(again, a);

    let (c, created) = s.create_conversation(&json!(100), "u1", T0).await.unwrap();
    assert!(created);
    assert_eq!(c.id, 3, "a retry took no id");
    assert_eq!(c.session_channel, "100");
    assert_eq!(c.application_id, json!(100));
    assert!(c.application_id.is_number(), "the number comes back as a number");

    assert_eq!(s.get_conversation("100").await.unwrap(), Some(c));
    assert_eq!(s.get_conversation("app-b").await.unwrap(), Some(b));
    assert_eq!(s.get_conversation("nope").await.unwrap(), None);
    assert!(matches!(s.create_conversation(&json!(1.5), "u1", T0).await, Err(StoreError::Invalid(_))));
    assert!(matches!(s.create_conversation(&json!(null), "u1", T0).await, Err(StoreError::Invalid(_))));
}

async fn case_create_conversation_concurrent<S: Store>(s: &S) {
    let results = join_all((0..10).map(|i| {
        let user = format!("user-{i}");
        async move { s.create_conversation(&json!(55), &user, T0).await }
    }))
    .await;
    let results: Vec<_> = results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1, "exactly one creates it");
    let winner = &results.iter().find(|(_, created)| *created).unwrap().0;
    assert!(results.iter().all(|(c, _)| c == winner), "all answer the same conversation");
    assert_eq!(s.get_conversation("55").await.unwrap().as_ref(), Some(winner));
}

async fn case_user_conversations<S: Store>(s: &S) {
    // Ids 1, 2, 3 on channels "30", "4", "100": the order by id is not the order of the channels.
    for app in [30, 4, 100] {
        s.create_conversation(&json!(app), "me", T0).await.unwrap();
    }
    s.create_conversation(&json!(5), "someone-else", T0).await.unwrap();
    let mine = s.user_conversations("me").await.unwrap();
    assert_eq!(mine.iter().map(|c| c.id).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert_eq!(mine.iter().map(|c| c.session_channel.as_str()).collect::<Vec<_>>(), vec!["30", "4", "100"]);
    assert_eq!(s.user_conversations("nobody").await.unwrap(), vec![]);
}

// ---------------------------------------------------------------------------------------------
// Messages

async fn case_append_message_sequential<S: Store>(s: &S) {
    s.create_conversation(&json!(1), "u", T0).await.unwrap();
    s.create_conversation(&json!(2), "u", T0).await.unwrap();
    for round in 1..=3 {
        for ch in ["1", "2"] {
            let (m, created) = s.append_message(&text(ch, "alice", &format!("{ch}/{round}"))).await.unwrap();
            assert!(created);
            assert_eq!((m.id, m.session_channel.as_str()), (round, ch), "ids are sequential per channel");
        }
    }
    let image = NewMessage { content_type: ContentType::Image, ..text("1", "bob", "https://x/y.png") };
    let (m, _) = s.append_message(&image).await.unwrap();
    let expected = ChatMessage {
        id: 4,
        session_channel: "1".into(),
        content: "https://x/y.png".into(),
        content_type: 2,
        sender_id: "bob".into(),
        status: 0,
        create_at: T0.into(),
        update_at: T0.into(),
        client_msg_id: None,
    };
    assert_eq!(m, expected);
    assert_eq!(s.get_message("1", 4).await.unwrap(), Some(expected));
    assert_eq!(s.get_message("1", 5).await.unwrap(), None);
    assert_eq!(s.get_message("2", 3).await.unwrap().map(|m| m.content), Some("2/3".to_string()));
}

async fn case_append_message_without_conversation<S: Store>(s: &S) {
    let r = s.append_message(&text("missing", "alice", "hi")).await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    let r = s.append_message(&keyed("missing", "alice", "hi", "k")).await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
    assert_eq!(s.list_messages("missing", None, 10).await.unwrap(), vec![]);
}

async fn case_append_message_concurrent<S: Store>(s: &S) {
    s.create_conversation(&json!(9), "u", T0).await.unwrap();
    let results = join_all((0..20).map(|i| {
        let m = text("9", if i % 2 == 0 { "alice" } else { "bob" }, &format!("m{i}"));
        async move { s.append_message(&m).await }
    }))
    .await;
    let mut got: Vec<i64> = results
        .into_iter()
        .map(|r| r.unwrap())
        .map(|(m, created)| {
            assert!(created);
            m.id
        })
        .collect();
    got.sort();
    assert_eq!(got, (1..=20).collect::<Vec<_>>(), "ids exactly 1..=20");
    assert_eq!(message_ids(&s.list_messages("9", None, 100).await.unwrap()), (1..=20).collect::<Vec<_>>());
    let unread = s.unread_counts(&strings(&["9"]), "carol").await.unwrap();
    assert_eq!(unread[0].count, 20, "every unread count was recorded");
}

async fn case_append_message_idempotent<S: Store>(s: &S) {
    s.create_conversation(&json!(3), "u", T0).await.unwrap();
    s.create_conversation(&json!(4), "u", T0).await.unwrap();
    let (first, created) = s.append_message(&keyed("3", "alice", "hello", "k-1")).await.unwrap();
    assert!(created);
    assert_eq!((first.id, first.client_msg_id.as_deref()), (1, Some("k-1")));
    let (second, created) = s.append_message(&keyed("3", "alice", "hello (retry)", "k-1")).await.unwrap();
    assert!(!created);
    assert_eq!(second, first, "the stored message");
    assert_eq!(s.list_messages("3", None, 10).await.unwrap(), vec![first.clone()], "stored once");

    let (other_channel, created) = s.append_message(&keyed("4", "alice", "hello", "k-1")).await.unwrap();
    assert!(created, "keys are per channel");
    assert_eq!(other_channel.id, 1);
    let (next, _) = s.append_message(&text("3", "alice", "next")).await.unwrap();
    assert_eq!(next.id, 2, "a retry took no id");
    let unread = s.unread_counts(&strings(&["3"]), "bob").await.unwrap();
    assert_eq!(unread[0].count, 2, "a retry counts no unread message");
}

async fn case_append_message_idempotent_concurrent<S: Store>(s: &S) {
    s.create_conversation(&json!(6), "u", T0).await.unwrap();
    let results = join_all((0..5).map(|_| async { s.append_message(&keyed("6", "alice", "once", "same-key")).await })).await;
    let results: Vec<_> = results.into_iter().map(|r| r.unwrap()).collect();
    assert_eq!(results.iter().filter(|(_, created)| *created).count(), 1, "one append creates it");
    assert!(results.iter().all(|(m, _)| m == &results[0].0));
    assert_eq!(s.list_messages("6", None, 10).await.unwrap().len(), 1, "stored once");
}

async fn case_list_messages<S: Store>(s: &S) {
    s.create_conversation(&json!(8), "u", T0).await.unwrap();
    for i in 1..=5 {
        s.append_message(&text("8", "alice", &format!("m{i}"))).await.unwrap();
    }
    let all = s.list_messages("8", None, 100).await.unwrap();
    assert_eq!(message_ids(&all), vec![1, 2, 3, 4, 5], "oldest first");
    assert_eq!(all[2].content, "m3");
    assert_eq!(message_ids(&s.list_messages("8", None, 2).await.unwrap()), vec![4, 5], "the newest, oldest first");
    assert_eq!(message_ids(&s.list_messages("8", Some(4), 2).await.unwrap()), vec![2, 3]);
    assert_eq!(message_ids(&s.list_messages("8", Some(2), 10).await.unwrap()), vec![1]);
    assert_eq!(message_ids(&s.list_messages("8", Some(1), 10).await.unwrap()), Vec::<i64>::new());
    assert_eq!(message_ids(&s.list_messages("8", Some(100), 3).await.unwrap()), vec![3, 4, 5]);
    assert_eq!(s.list_messages("8", None, 0).await.unwrap(), vec![]);
    assert_eq!(s.list_messages("nope", None, 10).await.unwrap(), vec![]);
}

async fn case_mark_read<S: Store>(s: &S) {
    s.create_conversation(&json!(11), "u", T0).await.unwrap();
    let (m, _) = s.append_message(&text("11", "alice", "read me")).await.unwrap();
    let read = s.mark_read("11", m.id, T1).await.unwrap().unwrap();
    assert_eq!(read, ChatMessage { status: 1, update_at: T1.into(), ..m.clone() });
    assert_eq!(s.get_message("11", m.id).await.unwrap(), Some(read.clone()), "stored");
    let again = s.mark_read("11", m.id, T2).await.unwrap();
    assert_eq!(again, Some(read), "twice is fine and changes nothing");
    assert_eq!(s.mark_read("11", 99, T1).await.unwrap(), None);
    assert_eq!(s.mark_read("nope", 1, T1).await.unwrap(), None);
    assert_eq!(s.get_message("11", 99).await.unwrap(), None, "marking an unknown id creates nothing");
}

async fn case_unread_counts<S: Store>(s: &S) {
    s.create_conversation(&json!(21), "u", T0).await.unwrap();
    s.create_conversation(&json!(22), "u", T0).await.unwrap();
    for sender in ["alice", "alice", "alice", "bob", "bob"] {
        s.append_message(&text("21", sender, "x")).await.unwrap();
    }
    s.append_message(&text("22", "bob", "y")).await.unwrap();
    let counts = |reader: &'static str, channels: &'static [&'static str]| async move {
        s.unread_counts(&strings(channels), reader).await.unwrap().into_iter().map(|u| (u.session_channel, u.count)).collect::<Vec<_>>()
    };
    assert_eq!(counts("alice", &["21"]).await, vec![("21".into(), 2)], "own messages do not count");
    assert_eq!(counts("bob", &["21"]).await, vec![("21".into(), 3)]);
    assert_eq!(counts("carol", &["21"]).await, vec![("21".into(), 5)]);
    assert_eq!(
        counts("alice", &["22", "missing", "21"]).await,
        vec![("22".into(), 1), ("21".into(), 2)],
        "channels without a conversation are left out; the order is the caller's"
    );
    assert_eq!(counts("alice", &[]).await, vec![]);

    // Reads decrement, once.
    s.mark_read("21", 1, T1).await.unwrap(); // alice's
    s.mark_read("21", 1, T2).await.unwrap();
    s.mark_read("21", 4, T1).await.unwrap(); // bob's
    assert_eq!(counts("bob", &["21"]).await, vec![("21".into(), 2)]);
    assert_eq!(counts("alice", &["21"]).await, vec![("21".into(), 1)]);
    assert_eq!(counts("carol", &["21"]).await, vec![("21".into(), 3)]);
}

async fn case_item_too_large<S: Store>(s: &S) {
    s.create_conversation(&json!(31), "u", T0).await.unwrap();
    let huge = "x".repeat(450 * 1024);
    assert_too_large(s.append_message(&text("31", "alice", &huge)).await);
    assert_too_large(s.append_message(&keyed("31", "alice", &huge, "k")).await);
    assert_eq!(s.list_messages("31", None, 10).await.unwrap(), vec![], "nothing stored");
    let (m, created) = s.append_message(&keyed("31", "alice", "small", "k")).await.unwrap();
    assert!(created, "the refused message left no idempotency key");
    assert_eq!(m.id, 1, "the refused message took no id");
    assert_eq!(s.unread_counts(&strings(&["31"]), "bob").await.unwrap()[0].count, 1);

    let big = Delivery { frame: vec![7u8; 450 * 1024], ..delivery("p", "c") };
    assert_too_large(s.create_delivery(&big).await);
    assert_eq!(s.get_delivery("p", "c").await.unwrap(), None, "nothing stored");
}

// ---------------------------------------------------------------------------------------------
// Members

async fn case_members<S: Store>(s: &S) {
    s.add_member("ch1", "m1").await.unwrap();
    s.add_member("ch1", "m1").await.unwrap();
    s.add_member("ch2", "m1").await.unwrap();
    s.add_member("ch1", "m2").await.unwrap();
    assert_eq!(s.member_channels("m1").await.unwrap(), strings(&["ch1", "ch2"]), "adding twice leaves one");
    assert_eq!(s.member_channels("m2").await.unwrap(), strings(&["ch1"]));
    assert_eq!(s.channel_members("ch1").await.unwrap(), strings(&["m1", "m2"]));
    assert_eq!(s.channel_members("ch2").await.unwrap(), strings(&["m1"]));
    assert_eq!(s.member_channels("nobody").await.unwrap(), Vec::<String>::new());
    assert_eq!(s.channel_members("nothing").await.unwrap(), Vec::<String>::new());
}

fn template(id: &str, name: &str, channel: Channel, locale: Option<&str>) -> Template {
    Template {
        id: id.to_string(),
        name: name.to_string(),
        channel,
        locale: locale.map(str::to_string),
        subject: Some("Привет, {{ user.name }}".into()),
        body: format!("{id}: {{{{ data.film }}}}"),
        html: None,
        version: 1,
        created_at: T0.to_string(),
        updated_at: T0.to_string(),
    }
}

async fn case_templates<S: Store>(s: &S) {
    let t = template("t1", "welcome", Channel::Email, None);
    assert_eq!(s.create_template(&t).await.unwrap(), TemplateWrite::Done);
    assert_eq!(s.get_template("t1").await.unwrap(), Some(t.clone()));
    // One template per (name, channel, locale): another id for the same slot is refused.
    assert_eq!(s.create_template(&template("t2", "welcome", Channel::Email, None)).await.unwrap(), TemplateWrite::SlotTaken);
    assert_eq!(s.get_template("t2").await.unwrap(), None);
    // Another channel or locale is another slot.
    assert_eq!(s.create_template(&template("t3", "welcome", Channel::Sms, None)).await.unwrap(), TemplateWrite::Done);
    assert_eq!(s.create_template(&template("t4", "welcome", Channel::Email, Some("ru"))).await.unwrap(), TemplateWrite::Done);

    // Updates are conditional on the version.
    let v2 = Template { body: "v2".into(), html: Some("<p>x</p>".into()), version: 2, updated_at: T1.into(), ..t.clone() };
    assert_eq!(s.update_template(&v2, 1).await.unwrap(), TemplateWrite::Done);
    let lost = Template { body: "lost".into(), version: 2, ..t.clone() };
    assert_eq!(s.update_template(&lost, 1).await.unwrap(), TemplateWrite::Stale);
    assert_eq!(s.get_template("t1").await.unwrap(), Some(v2.clone()));
    // Moving to a taken slot changes nothing; to a free one frees the old.
    let onto_ru = Template { locale: Some("ru".into()), version: 3, ..v2.clone() };
    assert_eq!(s.update_template(&onto_ru, 2).await.unwrap(), TemplateWrite::SlotTaken);
    assert_eq!(s.get_template("t1").await.unwrap(), Some(v2.clone()));
    let to_en = Template { locale: Some("en".into()), version: 3, ..v2.clone() };
    assert_eq!(s.update_template(&to_en, 2).await.unwrap(), TemplateWrite::Done);
    assert_eq!(s.create_template(&template("t5", "welcome", Channel::Email, None)).await.unwrap(), TemplateWrite::Done);
    assert_eq!(s.update_template(&Template { id: "nobody".into(), ..to_en.clone() }, 3).await.unwrap(), TemplateWrite::Stale);

    let ids = |ts: Vec<Template>| ts.into_iter().map(|t| t.id).collect::<Vec<_>>();
    assert_eq!(ids(s.list_templates().await.unwrap()), ["t5", "t1", "t4", "t3"]);
    assert_eq!(ids(s.templates_named("welcome", Channel::Email).await.unwrap()), ["t5", "t1", "t4"]);
    assert!(s.templates_named("welcome", Channel::Push).await.unwrap().is_empty());

    // Deleted: gone, and its slot is free again.
    assert!(s.delete_template("t1").await.unwrap());
    assert!(!s.delete_template("t1").await.unwrap());
    assert_eq!(s.get_template("t1").await.unwrap(), None);
    assert_eq!(s.create_template(&template("t6", "welcome", Channel::Email, Some("en"))).await.unwrap(), TemplateWrite::Done);
    assert_eq!(ids(s.list_templates().await.unwrap()), ["t5", "t6", "t4", "t3"]);
    // A slot marker's key is no template.
    let slot = herald::store::template_slot_key("welcome", Channel::Email, Some("en"));
    assert_eq!(s.get_template(&slot).await.unwrap(), None);
}

async fn case_template_for_locale<S: Store>(s: &S) {
    for (id, locale) in [("none", None), ("ru", Some("ru")), ("ru-RU", Some("ru-RU"))] {
        assert_eq!(s.create_template(&template(id, "film.added", Channel::Push, locale)).await.unwrap(), TemplateWrite::Done);
    }
    // Another name with a prefix-like name stays apart (length-prefixed keys).
    s.create_template(&template("other", "film.adde", Channel::Push, Some("de"))).await.unwrap();
    let pick = async |locale: Option<&str>| s.template_for("film.added", Channel::Push, locale).await.unwrap().map(|t| t.id);
    assert_eq!(pick(Some("ru-RU")).await.as_deref(), Some("ru-RU"));
    assert_eq!(pick(Some("ru-KZ")).await.as_deref(), Some("ru"));
    assert_eq!(pick(Some("de-DE")).await.as_deref(), Some("none"));
    assert_eq!(pick(None).await.as_deref(), Some("none"));
    assert_eq!(s.template_for("film.added", Channel::Email, Some("ru")).await.unwrap(), None);
    assert!(s.delete_template("none").await.unwrap());
    assert_eq!(pick(Some("de-DE")).await, None);
}

async fn case_template_races<S: Store>(s: &S) {
    // Two admins create the same slot at once: one wins.
    let creates =
        join_all((0..4).map(|i| async move { s.create_template(&template(&format!("c{i}"), "race", Channel::Sms, None)).await.unwrap() }));
    let outcomes = creates.await;
    assert_eq!(outcomes.iter().filter(|o| **o == TemplateWrite::Done).count(), 1, "{outcomes:?}");
    let winner = s.templates_named("race", Channel::Sms).await.unwrap();
    assert_eq!(winner.len(), 1);
    // Two admins save version 1 at once: one wins, and the version went up by one.
    let base = winner[0].clone();
    let saves = join_all((0..4).map(|i| {
        let next = Template { body: format!("edit {i}"), version: 2, ..base.clone() };
        async move { s.update_template(&next, 1).await.unwrap() }
    }));
    let outcomes = saves.await;
    assert_eq!(outcomes.iter().filter(|o| **o == TemplateWrite::Done).count(), 1, "{outcomes:?}");
    assert_eq!(s.get_template(&base.id).await.unwrap().map(|t| t.version), Some(2));
}

fn profile(id: &str, version: u32) -> UserProfile {
    let mut p = UserProfile::new(id, T0);
    p.version = version;
    p
}

async fn case_users<S: Store>(s: &S) {
    assert_eq!(s.get_user("u1").await.unwrap(), None);
    let mut p = profile("u1", 1);
    p.email = Some("ivan@example.ru".into());
    p.phone = Some("+79991234567".into());
    p.name = Some("Иван".into());
    p.locale = Some("ru-RU".into());
    p.timezone = Some("Europe/Moscow".into());
    p.channels = ChannelPrefs { email: Some(true), sms: Some(false), push: None };
    p.quiet_hours = QuietHours::new(TimeOfDay::new(23, 0).unwrap(), TimeOfDay::new(8, 30).unwrap());
    assert!(s.put_user(&p, None).await.unwrap());
    assert_eq!(s.get_user("u1").await.unwrap(), Some(p.clone()));
    // A create when one exists, or a write to a version no longer stored, changes nothing.
    assert!(!s.put_user(&profile("u1", 1), None).await.unwrap());
    let v2 =
        UserProfile { email: None, channels: ChannelPrefs::default(), quiet_hours: None, version: 2, updated_at: T1.into(), ..p.clone() };
    assert!(!s.put_user(&v2, Some(2)).await.unwrap());
    assert!(!s.put_user(&v2, None).await.unwrap());
    assert_eq!(s.get_user("u1").await.unwrap(), Some(p.clone()));
    assert!(s.put_user(&v2, Some(1)).await.unwrap());
    // Cleared fields are gone, not kept.
    assert_eq!(s.get_user("u1").await.unwrap(), Some(v2.clone()));
    assert!(!s.put_user(&profile("nobody", 2), Some(1)).await.unwrap());
    assert_eq!(s.get_user("nobody").await.unwrap(), None);
}

async fn case_user_races<S: Store>(s: &S) {
    assert!(s.put_user(&profile("race", 1), None).await.unwrap());
    let saves = join_all((0..4).map(|i| {
        let next = UserProfile { name: Some(format!("edit {i}")), ..profile("race", 2) };
        async move { s.put_user(&next, Some(1)).await.unwrap() }
    }));
    let outcomes = saves.await;
    assert_eq!(outcomes.iter().filter(|o| **o).count(), 1, "{outcomes:?}");
    assert_eq!(s.get_user("race").await.unwrap().map(|p| p.version), Some(2));
}

async fn case_users_listed_by_pages<S: Store>(s: &S) {
    let ids: Vec<String> = (0..45).map(|i| format!("user-{i:03}")).collect();
    for id in &ids {
        assert!(s.put_user(&profile(id, 1), None).await.unwrap());
    }
    // Every shard holds its own users, in id order.
    let mut per_shard = 0;
    for shard in 0..USER_SHARDS {
        let page = s.users_in_shard(shard, None, 100).await.unwrap();
        assert!(page.items.iter().all(|p| user_shard(&p.user_id) == shard));
        assert!(page.items.windows(2).all(|w| w[0].user_id < w[1].user_id));
        per_shard += page.items.len();
    }
    assert_eq!(per_shard, ids.len());
    // All of them, a page at a time: each once.
    let mut seen: Vec<String> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = s.list_users(cursor.as_deref(), 7).await.unwrap();
        assert!(page.items.len() <= 7);
        seen.extend(page.items.into_iter().map(|p| p.user_id));
        pages += 1;
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    seen.sort();
    assert_eq!(seen, ids);
    assert!(pages >= 45 / 7, "{pages} pages");
    // Bad pages are refused.
    assert!(matches!(s.list_users(None, 0).await, Err(StoreError::Invalid(_))));
    assert!(matches!(s.users_in_shard(USER_SHARDS, None, 10).await, Err(StoreError::Invalid(_))));
    assert!(matches!(s.list_users(Some("not a cursor"), 10).await, Err(StoreError::Invalid(_))));
    // An event's cursor is no users' cursor.
    for i in 0..3 {
        s.subscribe(&subscription(&format!("c{i}"), "u", "ev")).await.unwrap();
    }
    let event_cursor = s.event_subscribers("ev", None, 1).await.unwrap().next.expect("more subscribers");
    assert!(matches!(s.list_users(Some(&event_cursor), 10).await, Err(StoreError::Invalid(_))));
}

fn event_type(name: &str, templates: &[(Channel, &str)], critical: bool) -> EventType {
    EventType {
        name: name.to_string(),
        templates: templates.iter().map(|(c, t)| (*c, t.to_string())).collect(),
        critical,
        created_at: T0.to_string(),
        updated_at: T0.to_string(),
    }
}

async fn case_event_types<S: Store>(s: &S) {
    assert_eq!(s.get_event_type("film.added").await.unwrap(), None);
    assert!(s.list_event_types().await.unwrap().is_empty());
    let film = event_type("film.added", &[(Channel::Email, "film"), (Channel::Push, "film-push")], false);
    s.put_event_type(&film).await.unwrap();
    let reg = event_type("user.registered", &[(Channel::Email, "welcome")], true);
    s.put_event_type(&reg).await.unwrap();
    s.put_event_type(&event_type("a.first", &[(Channel::Sms, "code")], false)).await.unwrap();
    assert_eq!(s.get_event_type("film.added").await.unwrap(), Some(film.clone()));
    // A put replaces the whole definition.
    let replaced = event_type("film.added", &[(Channel::Sms, "film-sms")], true);
    s.put_event_type(&replaced).await.unwrap();
    assert_eq!(s.get_event_type("film.added").await.unwrap(), Some(replaced.clone()));
    let names: Vec<String> = s.list_event_types().await.unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, ["a.first", "film.added", "user.registered"]);
    assert_eq!(s.list_event_types().await.unwrap()[2], reg);
}

// ---------------------------------------------------------------------------------------------

/// Runs each case on both stores: `memory::case_x` and `dynamodb::case_x`.
fn record(id: &str, user: &str, event: &str, channel: Channel, status: NotificationStatus, second: u32) -> Notification {
    Notification {
        id: id.into(),
        user_id: user.into(),
        channel,
        status,
        reason: (status == NotificationStatus::Skipped).then(|| "turned off".to_string()),
        event_id: Some(event.into()),
        mailing_id: None,
        held_until: None,
        created_at: format!("2024-05-01T10:00:{second:02}Z"),
        updated_at: format!("2024-05-01T10:00:{second:02}Z"),
        expires_at: future_ttl(),
    }
}

fn future_ttl() -> i64 {
    herald::domain::epoch_secs(herald::domain::now()) + 3600
}

async fn case_event_claims<S: Store>(s: &S) {
    assert!(s.claim_event("e1", future_ttl()).await.unwrap());
    assert!(!s.claim_event("e1", future_ttl()).await.unwrap());
    assert!(s.claim_event("e2", future_ttl()).await.unwrap());
    // An expired marker is as good as none.
    assert!(s.claim_event("e3", 1).await.unwrap());
    assert!(s.claim_event("e3", future_ttl()).await.unwrap());
    // Concurrent claims: exactly one wins.
    let wins = join_all((0..8).map(|_| s.claim_event("race", future_ttl()))).await;
    assert_eq!(wins.into_iter().filter(|w| *w.as_ref().unwrap()).count(), 1);
}

async fn case_history<S: Store>(s: &S) {
    use NotificationStatus::{Held, Queued, Sent, Skipped};
    let mut a = record("n1", "u1", "e1", Channel::Email, Queued, 1);
    assert!(s.create_notification(&a).await.unwrap());
    assert!(!s.create_notification(&record("n1", "u1", "e1", Channel::Email, Sent, 1)).await.unwrap(), "created once");
    assert_eq!(s.get_notification("n1").await.unwrap().unwrap().status, Queued);
    a.status = Sent;
    a.updated_at = "2024-05-01T10:00:05Z".into();
    s.update_notification(&a).await.unwrap();
    assert_eq!(s.get_notification("n1").await.unwrap(), Some(a.clone()));
    assert_eq!(s.get_notification("nope").await.unwrap(), None);
    // An event's marker is no history record.
    s.claim_event("n-marker", future_ttl()).await.unwrap();
    assert_eq!(s.get_notification("event:n-marker").await.unwrap(), None);
    for r in [
        record("n2", "u1", "e1", Channel::Push, Skipped, 2),
        record("n3", "u2", "e1", Channel::Email, Held, 3),
        record("n4", "u1", "e2", Channel::Email, Sent, 4),
        record("n5", "u1", "e2", Channel::Push, Sent, 5),
    ] {
        assert!(s.create_notification(&r).await.unwrap());
    }
    let mut expired = record("n6", "u1", "e2", Channel::Sms, Sent, 6);
    expired.expires_at = 1;
    s.create_notification(&expired).await.unwrap();
    let ids = |p: &Page<Notification>| p.items.iter().map(|n| n.id.clone()).collect::<Vec<_>>();
    let by = |user: Option<&str>, event: Option<&str>| NotificationFilter {
        user_id: user.map(String::from),
        event_id: event.map(String::from),
        ..Default::default()
    };
    // Newest first; expired records are not returned.
    assert_eq!(ids(&s.list_notifications(&by(Some("u1"), None), None, 10).await.unwrap()), ["n5", "n4", "n2", "n1"]);
    assert_eq!(ids(&s.list_notifications(&by(None, Some("e1")), None, 10).await.unwrap()), ["n3", "n2", "n1"]);
    assert_eq!(ids(&s.list_notifications(&by(Some("u1"), Some("e1")), None, 10).await.unwrap()), ["n2", "n1"]);
    let sent_email = NotificationFilter { channel: Some(Channel::Email), status: Some(Sent), ..by(Some("u1"), None) };
    assert_eq!(ids(&s.list_notifications(&sent_email, None, 10).await.unwrap()), ["n4", "n1"]);
    // Pages, filtered or not, follow one another without gaps or repeats.
    for filter in [by(Some("u1"), None), sent_email.clone()] {
        let all = ids(&s.list_notifications(&filter, None, 10).await.unwrap());
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = s.list_notifications(&filter, cursor.as_deref(), 1).await.unwrap();
            assert!(page.items.len() <= 1);
            seen.extend(ids(&page));
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        assert_eq!(seen, all);
    }
    for (filter, limit) in [(NotificationFilter::default(), 10), (by(Some("u1"), None), 0)] {
        assert!(matches!(s.list_notifications(&filter, None, limit).await, Err(StoreError::Invalid(_))));
    }
    assert!(matches!(s.list_notifications(&by(Some("u1"), None), Some("garbage!"), 10).await, Err(StoreError::Invalid(_))));
}

fn mailing(id: &str, kind: MailingKind, created_at: &str) -> Mailing {
    Mailing {
        id: id.to_string(),
        kind,
        name: format!("name of {id}"),
        template: Some("promo".into()),
        content: Content::Templates([(Channel::Email, "promo".to_string())].into()),
        channels: vec![Channel::Email],
        audience: MailingAudience::Users(vec!["u1".into(), "u2".into()]),
        data: json!({"film": "F"}),
        critical: false,
        send_at: None,
        recurrence: Some(Recurrence { cron: "0 9 * * *".into(), timezone: "Europe/Berlin".into() }),
        status: MailingStatus::Scheduled,
        last_run: None,
        expanded: false,
        created_jobs: 0,
        done_jobs: 0,
        counts: Default::default(),
        created_at: created_at.to_string(),
        updated_at: created_at.to_string(),
        expires_at: 0,
    }
}

async fn case_mailings<S: Store>(s: &S) {
    let m = mailing("m1", MailingKind::Mailing, T0);
    assert!(s.create_mailing(&m).await.unwrap());
    assert!(!s.create_mailing(&mailing("m1", MailingKind::Mailing, T1)).await.unwrap(), "created once");
    assert_eq!(s.get_mailing("m1").await.unwrap(), Some(m.clone()));
    assert_eq!(s.get_mailing("nope").await.unwrap(), None);
    assert!(s.create_mailing(&mailing("m2", MailingKind::Mailing, T1)).await.unwrap());
    assert!(s.create_mailing(&mailing("m3", MailingKind::Mailing, T2)).await.unwrap());
    // A kept event is not listed; an expired one is gone.
    assert!(s.create_mailing(&mailing("e1", MailingKind::Event, T2)).await.unwrap());
    let mut gone = mailing("e2", MailingKind::Event, T2);
    gone.expires_at = 1;
    s.create_mailing(&gone).await.unwrap();
    assert_eq!(s.get_mailing("e2").await.unwrap(), None);
    assert!(s.get_mailing("e1").await.unwrap().is_some());
    // Newest first, pages without gaps or repeats.
    let all = s.list_mailings(None, 10).await.unwrap();
    assert_eq!(all.items.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(), ["m3", "m2", "m1"]);
    let (mut seen, mut cursor) = (Vec::new(), None::<String>);
    loop {
        let page = s.list_mailings(cursor.as_deref(), 1).await.unwrap();
        assert!(page.items.len() <= 1);
        seen.extend(page.items.into_iter().map(|m| m.id));
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    assert_eq!(seen, ["m3", "m2", "m1"]);
    assert!(matches!(s.list_mailings(None, 0).await, Err(StoreError::Invalid(_))));
    assert!(matches!(s.list_mailings(Some("garbage!"), 10).await, Err(StoreError::Invalid(_))));
}

async fn case_mailing_runs<S: Store>(s: &S) {
    use MailingStatus::{Cancelled, Scheduled, Sending, Sent};
    assert!(s.create_mailing(&mailing("m1", MailingKind::Mailing, T0)).await.unwrap());
    let (r1, r2) = ("000000000000000000000001", "000000000000000000000002");
    assert!(s.start_run("m1", r2).await.unwrap());
    // A repeated fire, or a stale one of an earlier time, starts nothing.
    assert!(!s.start_run("m1", r2).await.unwrap());
    assert!(!s.start_run("m1", r1).await.unwrap());
    let m = s.get_mailing("m1").await.unwrap().unwrap();
    assert_eq!((m.status, m.last_run.as_deref(), m.expanded), (Sending, Some(r2), false));
    s.add_to_counts("m1", r2, 2, 0, &[]).await.unwrap();
    s.add_to_counts("m1", r2, 0, 1, &[("email.sent".into(), 1)]).await.unwrap();
    // Another run's jobs change the counts by channel and status, not this run's.
    s.add_to_counts("m1", r1, 5, 5, &[("email.failed".into(), 1)]).await.unwrap();
    assert!(!s.finish_run("m1", r2, Sent).await.unwrap(), "not expanded yet");
    s.mark_expanded("m1", r1).await.unwrap();
    assert!(!s.get_mailing("m1").await.unwrap().unwrap().expanded, "another run");
    s.mark_expanded("m1", r2).await.unwrap();
    assert!(!s.finish_run("m1", r2, Sent).await.unwrap(), "one job not done");
    s.add_to_counts("m1", r2, 0, 1, &[("email.held".into(), 1)]).await.unwrap();
    assert!(!s.finish_run("m1", r1, Sent).await.unwrap(), "another run");
    assert!(s.finish_run("m1", r2, Sent).await.unwrap());
    assert!(!s.finish_run("m1", r2, Sent).await.unwrap(), "once");
    let m = s.get_mailing("m1").await.unwrap().unwrap();
    assert_eq!((m.status, m.created_jobs, m.done_jobs), (Sent, 2, 2));
    assert_eq!(m.counts, [("email.sent".to_string(), 1), ("email.failed".to_string(), 1), ("email.held".to_string(), 1)].into());
    // A held job released: its count moves.
    s.add_to_counts("m1", r2, 0, 0, &[("email.held".into(), -1), ("email.sent".into(), 1)]).await.unwrap();
    let m = s.get_mailing("m1").await.unwrap().unwrap();
    assert_eq!((m.counts["email.held"], m.counts["email.sent"]), (0, 2));
    // Sent is no run's to start; status moves only from what it is.
    assert!(!s.start_run("m1", "000000000000000000000003").await.unwrap());
    assert!(!s.set_mailing_status("m1", &[Scheduled, Sending], Cancelled).await.unwrap());
    assert!(s.create_mailing(&mailing("m2", MailingKind::Mailing, T0)).await.unwrap());
    assert!(s.set_mailing_status("m2", &[Scheduled, Sending], Cancelled).await.unwrap());
    assert_eq!(s.get_mailing("m2").await.unwrap().unwrap().status, Cancelled);
    assert!(!s.start_run("m2", r1).await.unwrap(), "cancelled");
    assert!(!s.set_mailing_status("nope", &[Scheduled], Cancelled).await.unwrap());
}

async fn case_jobs_are_recorded_with_their_counts<S: Store>(s: &S) {
    use NotificationStatus::{Held, Queued, Sent};
    assert!(s.create_mailing(&mailing("m1", MailingKind::Mailing, T0)).await.unwrap());
    let (r1, r2) = ("000000000000000000000001", "000000000000000000000002");
    assert!(s.start_run("m1", r1).await.unwrap());
    let mut job = record("n1", "u1", "x", Channel::Email, Queued, 1);
    job.event_id = None;
    job.mailing_id = Some("m1".into());
    // Created once, counted with it; not for a run that is not the last.
    assert!(s.create_job(&job, "m1", r1).await.unwrap());
    // (A retry's record is made again, at another time; the very same one is a lost answer's retry.)
    let again = Notification { created_at: T1.into(), updated_at: T1.into(), ..job.clone() };
    assert!(!s.create_job(&again, "m1", r1).await.unwrap(), "created once");
    let other = Notification { id: "n2".into(), ..job.clone() };
    assert!(!s.create_job(&other, "m1", r2).await.unwrap(), "another run");
    assert_eq!(s.get_notification("n2").await.unwrap(), None);
    assert_eq!(s.get_mailing("m1").await.unwrap().unwrap().created_jobs, 1);
    // Recorded once from the status it had, counted with it.
    let mut held = Notification { status: Held, held_until: Some(T2.into()), ..job.clone() };
    let counts = [("email.held".to_string(), 1)];
    assert!(s.record_job(&held, Queued, "m1", r1, true, &counts).await.unwrap());
    let later = Notification { updated_at: T2.into(), ..held.clone() };
    assert!(!s.record_job(&later, Queued, "m1", r1, true, &counts).await.unwrap(), "no longer queued");
    assert_eq!(s.get_notification("n1").await.unwrap(), Some(held.clone()));
    let m = s.get_mailing("m1").await.unwrap().unwrap();
    assert_eq!((m.done_jobs, m.counts.clone()), (1, [("email.held".to_string(), 1)].into()));
    // A release: not a done job again; a stale run's job counts by status only.
    held.status = Sent;
    held.held_until = None;
    let moved = [("email.held".to_string(), -1), ("email.sent".to_string(), 1)];
    assert!(s.record_job(&held, Held, "m1", "", false, &moved).await.unwrap());
    assert!(s.start_run("m1", r2).await.unwrap());
    let late = Notification { id: "n3".into(), ..job.clone() };
    assert!(s.create_notification(&late).await.unwrap());
    let sent = Notification { status: Sent, ..late };
    assert!(s.record_job(&sent, Queued, "m1", r1, true, &[("email.sent".to_string(), 1)]).await.unwrap());
    let m = s.get_mailing("m1").await.unwrap().unwrap();
    assert_eq!((m.done_jobs, m.counts["email.held"], m.counts["email.sent"]), (0, 0, 2));
    assert_eq!(s.get_notification("n3").await.unwrap().unwrap().status, Sent);
}

async fn case_history_of_mailings<S: Store>(s: &S) {
    let mut a = record("n1", "u1", "x", Channel::Email, NotificationStatus::Sent, 1);
    a.event_id = None;
    a.mailing_id = Some("m1".into());
    assert!(s.create_notification(&a).await.unwrap());
    assert!(s.create_notification(&record("n2", "u1", "e1", Channel::Email, NotificationStatus::Sent, 2)).await.unwrap());
    assert_eq!(s.get_notification("n1").await.unwrap(), Some(a.clone()));
    let by_mailing = NotificationFilter { mailing_id: Some("m1".into()), ..Default::default() };
    assert_eq!(s.list_notifications(&by_mailing, None, 10).await.unwrap().items, vec![a.clone()]);
    let both = NotificationFilter { user_id: Some("u1".into()), ..by_mailing };
    assert_eq!(s.list_notifications(&both, None, 10).await.unwrap().items, vec![a]);
}

/// A mailing's records spread over many users (and so, on DynamoDB, over every shard of
/// `by_event`) come back newest first, and pages of any size, filtered or not, follow one
/// another without gaps or repeats; a cursor of another mailing is refused.
async fn case_history_of_a_large_mailing<S: Store>(s: &S) {
    let mut all = Vec::new();
    for i in 0..60u32 {
        let status = if i % 3 == 0 { NotificationStatus::Failed } else { NotificationStatus::Sent };
        let mut r = record(&format!("n{i:02}"), &format!("user{i}"), "x", Channel::Email, status, i % 60);
        // Two records a second apart of the same second: ties broken the same way by every page.
        r.created_at = format!("2024-05-01T10:{:02}:{:02}Z", i / 2 / 60, (i / 2) % 60);
        r.event_id = None;
        r.mailing_id = Some("big".into());
        assert!(s.create_notification(&r).await.unwrap());
        all.push(r);
    }
    let mut other = record("o1", "user1", "x", Channel::Email, NotificationStatus::Sent, 59);
    other.event_id = None;
    other.mailing_id = Some("other".into());
    s.create_notification(&other).await.unwrap();
    let ids = |p: &Page<Notification>| p.items.iter().map(|n| n.id.clone()).collect::<Vec<_>>();
    let filter = NotificationFilter { mailing_id: Some("big".into()), ..Default::default() };
    let whole = ids(&s.list_notifications(&filter, None, 100).await.unwrap());
    assert_eq!(whole.len(), 60, "{whole:?}");
    let created: Vec<String> = whole.iter().map(|id| all.iter().find(|r| r.id == *id).unwrap().created_key()).collect();
    assert!(created.windows(2).all(|w| w[0] >= w[1]), "newest first: {whole:?}");
    let failed = NotificationFilter { status: Some(NotificationStatus::Failed), ..filter.clone() };
    for (f, limit, expected) in [(&filter, 1, 60), (&filter, 7, 60), (&filter, 60, 60), (&failed, 4, 20)] {
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = s.list_notifications(f, cursor.as_deref(), limit).await.unwrap();
            assert!(page.items.len() <= limit);
            assert!(seen.len() <= 60, "limit {limit}: the pages do not end: {seen:?}");
            seen.extend(ids(&page));
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        let mut once = seen.clone();
        once.dedup();
        assert_eq!((seen.len(), once.len()), (expected, expected), "limit {limit}: {seen:?}");
        let in_order: Vec<&String> = whole.iter().filter(|id| seen.contains(id)).collect();
        assert_eq!(seen.iter().collect::<Vec<_>>(), in_order, "limit {limit}: the pages keep the order");
    }
    let page = s.list_notifications(&filter, None, 5).await.unwrap();
    let other_filter = NotificationFilter { mailing_id: Some("other".into()), ..Default::default() };
    assert!(matches!(s.list_notifications(&other_filter, page.next.as_deref(), 5).await, Err(StoreError::Invalid(_))));
}

macro_rules! contract {
    ($($case:ident),+ $(,)?) => {
        mod memory {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&herald::store::memory::MemoryStore::new()).await;
                }
            )+
        }

        mod dynamodb {
            $(
                #[tokio::test]
                async fn $case() {
                    super::$case(&herald_tests::dynamo::local_store().await).await;
                }
            )+
        }
    };
}

contract!(
    case_connections,
    case_subscriptions,
    case_delete_connection_subscriptions,
    case_event_subscribers_paging,
    case_user_event_subscribers,
    case_event_shards_hold_their_own,
    case_event_shard_paging,
    case_event_subscribers_over_shards,
    case_event_shard_out_of_range,
    case_history_of_a_large_mailing,
    case_query_pages_past_1mb,
    case_claim_push,
    case_claims_belong_to_their_owner,
    case_batch_markers,
    case_claim_push_expired_lease,
    case_claim_push_concurrent,
    case_deliveries,
    case_create_conversation,
    case_create_conversation_concurrent,
    case_user_conversations,
    case_append_message_sequential,
    case_append_message_without_conversation,
    case_append_message_concurrent,
    case_append_message_idempotent,
    case_append_message_idempotent_concurrent,
    case_list_messages,
    case_mark_read,
    case_unread_counts,
    case_item_too_large,
    case_members,
    case_templates,
    case_template_for_locale,
    case_template_races,
    case_users,
    case_user_races,
    case_users_listed_by_pages,
    case_event_types,
    case_event_claims,
    case_history,
    case_mailings,
    case_mailing_runs,
    case_history_of_mailings,
    case_jobs_are_recorded_with_their_counts,
    case_streams_append_once_per_key,
    case_streams_concurrent_appends,
    case_streams_expire,
    case_fences_end_only_on_a_still_head,
    case_presence_last_seen,
);

fn stream_push(id: &str, seq: u64) -> Push {
    Push {
        id: id.into(),
        created_at: T0.into(),
        user_id: None,
        event_name: Some("scores".into()),
        title: None,
        body: None,
        message: Some(json!({ "seq": seq })),
        position: None,
    }
}

const DAY: i64 = 86_400;

fn stream_offsets(pushes: &[Push]) -> Vec<u64> {
    pushes.iter().map(|p| p.position.as_ref().expect("a position").offset).collect()
}

async fn case_streams_append_once_per_key<S: Store>(s: &S) {
    let head = s.stream_head("event:scores", DAY).await.unwrap();
    assert_eq!(head.offset, 0);
    assert!(!head.epoch.is_empty() && head.epoch.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
    assert_eq!(s.stream_head("event:scores", DAY).await.unwrap(), head, "created once");
    for i in 1..=3 {
        let p = s.append_history("event:scores", &format!("k{i}"), &stream_push(&format!("p{i}"), i), DAY).await.unwrap();
        assert_eq!((p.stream.as_str(), p.offset, p.epoch.as_str()), ("event:scores", i, head.epoch.as_str()));
    }
    // The same key again: the first append's offset, nothing appended.
    let again = s.append_history("event:scores", "k2", &stream_push("p2", 2), DAY).await.unwrap();
    assert_eq!(again.offset, 2);
    assert_eq!(s.stream_head("event:scores", DAY).await.unwrap().offset, 3);
    let all = s.read_history("event:scores", &head.epoch, 0, 10).await.unwrap();
    assert_eq!(stream_offsets(&all), vec![1, 2, 3]);
    assert_eq!(all.iter().map(|p| p.id.as_str()).collect::<Vec<_>>(), ["p1", "p2", "p3"]);
    assert_eq!(all[1].message, Some(json!({"seq": 2})));
    assert_eq!(stream_offsets(&s.read_history("event:scores", &head.epoch, 1, 1).await.unwrap()), vec![2], "after 1, one");
    assert!(s.read_history("event:scores", "another-epoch", 0, 10).await.unwrap().is_empty());
    assert!(s.read_history("event:other", &head.epoch, 0, 10).await.unwrap().is_empty());
    assert!(matches!(s.read_history("event:scores", &head.epoch, 0, 0).await, Err(StoreError::Invalid(_))));
    // Streams are their own: another starts at 1 with its own epoch.
    let other = s.append_history("user:42", "k1-user", &stream_push("u1", 1), DAY).await.unwrap();
    assert_eq!(other.offset, 1);
    assert_ne!(other.epoch, head.epoch);
}

async fn case_streams_concurrent_appends<S: Store>(s: &S) {
    let appends =
        (1..=20u64).map(|i| async move { s.append_history("event:race", &format!("r{i}"), &stream_push(&format!("r{i}"), i), DAY).await });
    let positions: Vec<_> = join_all(appends).await.into_iter().map(|r| r.unwrap().offset).collect();
    let unique: BTreeSet<u64> = positions.iter().copied().collect();
    assert_eq!(unique, (1..=20).collect::<BTreeSet<u64>>(), "no duplicate, no gap: {positions:?}");
    let same = (0..5).map(|_| async { s.append_history("event:race", "one-key", &stream_push("once", 0), DAY).await });
    let offsets: BTreeSet<u64> = join_all(same).await.into_iter().map(|r| r.unwrap().offset).collect();
    assert_eq!(offsets, BTreeSet::from([21]), "one push, one offset");
    let epoch = s.stream_head("event:race", DAY).await.unwrap().epoch;
    assert_eq!(s.read_history("event:race", &epoch, 0, 100).await.unwrap().len(), 21);
}

async fn case_streams_expire<S: Store>(s: &S) {
    s.append_history("event:brief", "b1", &stream_push("b1", 1), 1).await.unwrap();
    let head = s.stream_head("event:brief", 1).await.unwrap();
    assert_eq!(head.offset, 1);
    tokio::time::sleep(Duration::from_millis(2100)).await;
    // Expired (TTL deletes late): not read, and the stream starts again in a new epoch.
    assert!(s.read_history("event:brief", &head.epoch, 0, 10).await.unwrap().is_empty());
    let fresh = s.stream_head("event:brief", DAY).await.unwrap();
    assert_eq!(fresh.offset, 0);
    assert_ne!(fresh.epoch, head.epoch);
    let p = s.append_history("event:brief", "b2", &stream_push("b2", 2), DAY).await.unwrap();
    assert_eq!((p.offset, p.epoch.as_str()), (1, fresh.epoch.as_str()), "an expired push's offset is taken again");
    assert_eq!(stream_offsets(&s.read_history("event:brief", &fresh.epoch, 0, 10).await.unwrap()), vec![1]);
}

async fn case_fences_end_only_on_a_still_head<S: Store>(s: &S) {
    s.put_connection(&Connection { fence: Some(Fence::Recovering), ..connection("fc", "u") }).await.unwrap();
    s.subscribe(&Subscription { fence: Some(Fence::Recovering), ..subscription("fc", "u", "scores") }).await.unwrap();
    let sub = FenceOf::Subscription { connection_id: "fc", event_name: "scores" };
    assert_eq!(s.fence(sub).await.unwrap(), Some(Some(Fence::Recovering)));
    assert_eq!(s.fence(FenceOf::Connection("fc")).await.unwrap(), Some(Some(Fence::Recovering)));
    assert_eq!(s.fence(FenceOf::Connection("nobody")).await.unwrap(), None);
    s.append_history("event:scores", "f1", &stream_push("f1", 1), DAY).await.unwrap();
    let head = s.stream_head("event:scores", DAY).await.unwrap();
    s.append_history("event:scores", "f2", &stream_push("f2", 2), DAY).await.unwrap();
    // A push came after the head the replay read: the fence stays.
    assert!(!s.go_live(sub, "event:scores", &head, false).await.unwrap());
    assert_eq!(s.fence(sub).await.unwrap(), Some(Some(Fence::Recovering)));
    let head = s.stream_head("event:scores", DAY).await.unwrap();
    assert!(s.go_live(sub, "event:scores", &head, false).await.unwrap());
    assert_eq!(s.fence(sub).await.unwrap(), Some(Some(Fence::LiveAfter(2))));
    let listed = s.user_event_subscribers("u", "scores").await.unwrap();
    assert_eq!(listed[0].fence, Some(Fence::LiveAfter(2)), "the fence is part of the subscription");
    let (fanned, _) = all_subscribers(s, "scores", 10).await;
    let fanned: Vec<_> = fanned.iter().filter(|x| x.connection_id == "fc").map(|x| x.fence).collect();
    assert_eq!(fanned, [Some(Fence::LiveAfter(2))], "a fan-out reads the fence the replay ended");
    // Forced, whatever the head; a connection's fence too.
    let stale = StreamHead { offset: 1, epoch: head.epoch.clone() };
    assert!(s.go_live(FenceOf::Connection("fc"), "user:u", &stale, true).await.unwrap());
    assert_eq!(s.get_connection("fc").await.unwrap().unwrap().fence, Some(Fence::LiveAfter(1)));
    // Gone: nothing to end.
    assert!(s.go_live(FenceOf::Subscription { connection_id: "fc", event_name: "gone" }, "event:scores", &head, false).await.unwrap());
    assert_eq!(s.fence(FenceOf::Subscription { connection_id: "fc", event_name: "gone" }).await.unwrap(), None);
    // Without a fence: Some(None).
    s.subscribe(&subscription("fc", "u", "plain")).await.unwrap();
    assert_eq!(s.fence(FenceOf::Subscription { connection_id: "fc", event_name: "plain" }).await.unwrap(), Some(None));
}

async fn case_presence_last_seen<S: Store>(s: &S) {
    s.put_connection(&connection("p1", "u1")).await.unwrap();
    s.put_connection(&connection("p2", "u2")).await.unwrap();
    s.touch_connection("p1", 1_800_000_000).await.unwrap();
    s.touch_connection("p1", 1_700_000_000).await.unwrap();
    s.touch_connection("nobody", 1_800_000_000).await.unwrap();
    assert!(s.get_connection("nobody").await.unwrap().is_none(), "touching does not create a connection");
    let mut got = s.connections(&strings(&["p1", "p2", "nobody", "p1"])).await.unwrap();
    got.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
    assert_eq!(ids(&got), strings(&["p1", "p2"]));
    assert_eq!(got[0].last_seen, 1_800_000_000, "only moves forward");
    assert_eq!(got[1].last_seen, 1_714_557_600);
    assert!(s.connections(&[]).await.unwrap().is_empty());
}

/// What only DynamoDB has: its error mapping, attribute names, cursors, pages and tables.
mod dynamodb_only {
    use aws_sdk_dynamodb::types::AttributeValue;
    use herald::store::tables::{TableId, attr};
    use herald::store::{ConnectionStore, ConversationStore, MessageStore, StoreError, SubscriptionStore};
    use herald_tests::dynamo::{local_store, store_without_tables};
    use serde_json::json;

    use super::*;

    #[tokio::test]
    async fn missing_table_is_table_missing() {
        let store = store_without_tables().await;
        let table = store.tables().get(TableId::Connections).to_string();
        match store.get_connection("c1").await {
            Err(StoreError::TableMissing(name)) => assert_eq!(name, table),
            other => panic!("expected TableMissing({table}), got {other:?}"),
        }
        assert!(matches!(store.put_connection(&connection("c1", "u")).await, Err(StoreError::TableMissing(_))));
        assert!(matches!(store.user_connections("u").await, Err(StoreError::TableMissing(_))));
    }

    #[tokio::test]
    async fn a_subscription_carries_its_event_shard_key() {
        let store = local_store().await;
        store.subscribe(&subscription("L0SM9cOFvHcCIhw=", "u", "news")).await.unwrap();
        let raw = store
            .client()
            .get_item()
            .table_name(store.tables().get(TableId::Subscriptions))
            .key(attr::CONNECTION_ID, AttributeValue::S("L0SM9cOFvHcCIhw=".into()))
            .key(attr::EVENT_NAME, AttributeValue::S("news".into()))
            .send()
            .await
            .unwrap()
            .item
            .unwrap();
        assert_eq!(herald::store::event_shard_key("news", event_shard("L0SM9cOFvHcCIhw=")), "4:news#10");
        assert_eq!(raw.get(attr::EVENT_SHARD), Some(&AttributeValue::S("4:news#10".into())), "the by_event index's key");
    }

    #[tokio::test]
    async fn status_is_stored_under_its_reserved_name() {
        let store = local_store().await;
        store.create_conversation(&json!(1), "u", T0).await.unwrap();
        store.append_message(&text("1", "alice", "hi")).await.unwrap();
        store.mark_read("1", 1, T1).await.unwrap();
        let raw = store
            .client()
            .get_item()
            .table_name(store.tables().get(TableId::Messages))
            .key(attr::SESSION_CHANNEL, AttributeValue::S("1".into()))
            .key(attr::ID, AttributeValue::N("1".into()))
            .send()
            .await
            .unwrap()
            .item
            .unwrap();
        assert_eq!(raw.get("status"), Some(&AttributeValue::N("1".into())));
        assert_eq!(raw.get("update_at"), Some(&AttributeValue::S(T1.into())));
        assert_eq!(raw.get("content"), Some(&AttributeValue::S("hi".into())));
    }

    #[tokio::test]
    async fn malformed_cursor_is_invalid() {
        let store = local_store().await;
        for i in 0..3 {
            store.subscribe(&subscription(&format!("c{i}"), "u", "ev")).await.unwrap();
        }
        for bad in ["garbage!", "", "eyJhIjoxfQ"] {
            let r = store.event_subscribers("ev", Some(bad), 10).await;
            assert!(matches!(r, Err(StoreError::Invalid(_))), "{bad:?}: {r:?}");
        }
        let first = store.event_subscribers("ev", None, 1).await.unwrap();
        let cursor = first.next.unwrap();
        let r = store.event_subscribers("other-event", Some(&cursor), 10).await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "a cursor of another event: {r:?}");
        let rest = store.event_subscribers("ev", Some(&cursor), 10).await.unwrap();
        let mut all = [first.items, rest.items].concat();
        all.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
        assert_eq!(sub_ids(&all), strings(&["c0", "c1", "c2"]), "the rest after the cursor");

        // A shard's own cursor names its event and its shard.
        let shard = event_shard("c0");
        let first = store.event_subscribers_in_shard("ev", shard, None, 1).await.unwrap();
        let cursor = first.next.expect("DynamoDB answers a full page with a LastEvaluatedKey");
        let r = store.event_subscribers_in_shard("other-event", shard, Some(&cursor), 10).await;
        assert!(matches!(r, Err(StoreError::Invalid(_))), "a shard cursor of another event: {r:?}");
        for bad in ["garbage!", "", "eyJhIjoxfQ"] {
            let r = store.event_subscribers_in_shard("ev", shard, Some(bad), 10).await;
            assert!(matches!(r, Err(StoreError::Invalid(_))), "{bad:?}: {r:?}");
        }
    }

    #[tokio::test]
    async fn corrupt_item_names_the_attribute() {
        let store = local_store().await;
        store
            .client()
            .put_item()
            .table_name(store.tables().get(TableId::Connections))
            .item(attr::CONNECTION_ID, AttributeValue::S("bad".into()))
            .item(attr::USER_ID, AttributeValue::S("u".into()))
            .item("api", AttributeValue::S("chat".into()))
            .item("encoding", AttributeValue::N("5".into()))
            .send()
            .await
            .unwrap();
        match store.get_connection("bad").await {
            Err(StoreError::Corrupt(m)) => assert!(m.contains("encoding"), "{m}"),
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_query_page_stops_at_1mb() {
        let store = local_store().await;
        seed_big_event(&store, false).await;
        let first = store.event_subscribers_in_shard(BIG_EVENT, BIG_SHARD, None, 5000).await.unwrap();
        assert!(first.items.len() < BIG_COUNT, "DynamoDB cut the shard's page at 1 MB ({} items)", first.items.len());
        assert!(first.next.is_some());
        let (all, pages) = shard_subscribers(&store, BIG_EVENT, BIG_SHARD, 5000).await;
        assert_eq!(all.len(), BIG_COUNT);
        assert!(pages >= 2);

        // Across the shards, a page stops where the shard's did.
        let first = store.event_subscribers(BIG_EVENT, None, 5000).await.unwrap();
        assert!(first.items.len() < BIG_COUNT, "the page stops at the shard's 1 MB ({} items)", first.items.len());
        assert!(first.next.is_some());
        let (all, pages) = all_subscribers(&store, BIG_EVENT, 5000).await;
        assert_eq!(all.len(), BIG_COUNT);
        assert!(pages >= 2);
    }

    #[tokio::test]
    async fn tables_are_created_once_with_ttl_and_deleted() {
        let store = local_store().await;
        store.create_tables().await.expect("creating existing tables is fine");
        let ttl = store.client().describe_time_to_live().table_name(store.tables().get(TableId::Connections)).send().await.unwrap();
        let ttl = ttl.time_to_live_description().unwrap();
        assert_eq!(ttl.attribute_name(), Some(attr::EXPIRES_AT));
        store.delete_tables().await.unwrap();
        assert!(matches!(store.get_connection("c").await, Err(StoreError::TableMissing(_))));
        store.delete_tables().await.expect("deleting missing tables is fine");
    }
}
