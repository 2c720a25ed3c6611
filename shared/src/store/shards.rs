//! An event's subscribers over its [`EVENT_SHARDS`] shards, and user profiles over their
//! [`USER_SHARDS`]: the checks every store makes of a shard page, and
//! [`SubscriptionStore::event_subscribers`] and [`UserStore::list_users`] on top of the shards,
//! one after another, with a cursor that names a shard and a place in it.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::{EVENT_SHARDS, Page, StoreError, StoreResult, SubscriptionStore, USER_SHARDS, UserStore};
use crate::domain::{Subscription, UserProfile};

/// What every store refuses of a shard page: a shard out of range, a limit of 0.
pub(crate) fn check_shard_page(shard: u32, limit: usize) -> StoreResult<()> {
    check_page(shard, EVENT_SHARDS, "event", limit)
}

/// The same of a page of user profiles.
pub(crate) fn check_user_shard_page(shard: u32, limit: usize) -> StoreResult<()> {
    check_page(shard, USER_SHARDS, "user", limit)
}

fn check_page(shard: u32, shards: u32, what: &str, limit: usize) -> StoreResult<()> {
    if shard >= shards {
        return Err(StoreError::Invalid(format!("{what} shard {shard} is out of range 0..{shards}")));
    }
    if limit == 0 {
        return Err(StoreError::Invalid("page limit must be at least 1".into()));
    }
    Ok(())
}

/// Where a walk over every shard stands: the event (so that its cursor is refused for another
/// event; [`USERS_SCOPE`] for user profiles), the shard, and the shard's own cursor (`None`: the
/// shard's beginning).
#[derive(Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ShardCursor {
    #[serde(rename = "e")]
    event: String,
    #[serde(rename = "s")]
    shard: u32,
    #[serde(rename = "c", default, skip_serializing_if = "Option::is_none")]
    inner: Option<String>,
}

impl ShardCursor {
    fn encode(&self) -> StoreResult<String> {
        let json = serde_json::to_vec(self).map_err(|e| StoreError::Backend(Box::new(e)))?;
        Ok(URL_SAFE_NO_PAD.encode(json))
    }

    fn decode_of(cursor: &str, event_name: &str, shards: u32) -> StoreResult<Self> {
        let invalid = || StoreError::Invalid("malformed page cursor".into());
        let json = URL_SAFE_NO_PAD.decode(cursor).map_err(|_| invalid())?;
        let decoded: Self = serde_json::from_slice(&json).map_err(|_| invalid())?;
        if decoded.shard >= shards {
            return Err(invalid());
        }
        if decoded.event != event_name {
            return Err(StoreError::Invalid("page cursor of another event".into()));
        }
        Ok(decoded)
    }
}

/// The scope of a walk over the user profiles' shards (an event's walk is scoped by the event's
/// name), so that a cursor of one is refused by the other.
const USERS_SCOPE: &str = "\u{0}users";

/// Up to `limit` subscribers of an event from where `cursor` stands, shard after shard. A page
/// stops early where a shard's own page did (DynamoDB's 1 MB), and is empty only when it is the
/// last.
pub(crate) async fn across_shards<S: SubscriptionStore + ?Sized>(
    store: &S,
    event_name: &str,
    cursor: Option<&str>,
    limit: usize,
) -> StoreResult<Page<Subscription>> {
    walk_shards(event_name, EVENT_SHARDS, cursor, limit, |shard, inner, n| async move {
        store.event_subscribers_in_shard(event_name, shard, inner.as_deref(), n).await
    })
    .await
}

/// Up to `limit` user profiles from where `cursor` stands, shard after shard, as [`across_shards`].
pub(crate) async fn users_across_shards<S: UserStore + ?Sized>(
    store: &S,
    cursor: Option<&str>,
    limit: usize,
) -> StoreResult<Page<UserProfile>> {
    walk_shards(
        USERS_SCOPE,
        USER_SHARDS,
        cursor,
        limit,
        |shard, inner, n| async move { store.users_in_shard(shard, inner.as_deref(), n).await },
    )
    .await
}

/// Pages of `shards` shards of `scope`, one after another, each read by `page(shard, its own
/// cursor, how many)`.
async fn walk_shards<T, F, Fut>(scope: &str, shards: u32, cursor: Option<&str>, limit: usize, mut page: F) -> StoreResult<Page<T>>
where
    F: FnMut(u32, Option<String>, usize) -> Fut,
    Fut: Future<Output = StoreResult<Page<T>>>,
{
    check_page(0, shards, "first", limit)?;
    let (mut shard, mut inner) = match cursor {
        Some(c) => {
            let c = ShardCursor::decode_of(c, scope, shards)?;
            (c.shard, c.inner)
        }
        None => (0, None),
    };
    let mut items: Vec<T> = Vec::new();
    loop {
        let got = page(shard, inner.take(), limit - items.len()).await?;
        items.extend(got.items);
        match got.next {
            // More in this shard: stop here, unless nothing was found yet (only the last page is empty).
            Some(next) => {
                inner = Some(next);
                if !items.is_empty() {
                    break;
                }
            }
            None => {
                shard += 1;
                inner = None;
                if shard == shards {
                    return Ok(Page { items, next: None });
                }
                if items.len() >= limit {
                    break;
                }
            }
        }
    }
    let next = ShardCursor { event: scope.to_string(), shard, inner }.encode()?;
    Ok(Page { items, next: Some(next) })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{event_shard, event_shard_key};

    #[test]
    fn event_shard_is_stable() {
        // Fixed values: stored keys depend on them, so these must never change.
        // (FNV-1a 64 of "a" is the published 0xaf63dc4c8601ec8c: 0x8601ec8c ^ 0xaf63dc4c ends in 0.)
        let known = [("", 1), ("a", 0), ("c1", 14), ("conn-1", 0), ("L0SM9cOFvHcCIhw=", 10), ("json000000042=", 2)];
        for (id, shard) in known {
            assert_eq!(event_shard(id), shard, "{id:?}");
        }
        assert!((0..1000).all(|i| event_shard(&format!("id-{i}")) < EVENT_SHARDS));
    }

    #[test]
    fn event_shards_spread_sequential_ids() {
        let mut counts = [0usize; EVENT_SHARDS as usize];
        for i in 0..1600 {
            counts[event_shard(&format!("conn-{i}")) as usize] += 1;
        }
        // 100 a shard on average; none far from it.
        assert!(counts.iter().all(|&n| (50..=150).contains(&n)), "{counts:?}");
    }

    #[test]
    fn event_shard_keys_are_unambiguous() {
        assert_eq!(event_shard_key("alpha", 3), "5:alpha#3");
        assert_ne!(event_shard_key("a#1", 2), event_shard_key("a", 12));
        assert_ne!(event_shard_key("1:a", 0), event_shard_key("a", 0));
    }

    #[test]
    fn cursors_round_trip_and_refuse_garbage() {
        let c = ShardCursor { event: "ev".into(), shard: 3, inner: Some("x".into()) };
        assert_eq!(ShardCursor::decode_of(&c.encode().unwrap(), "ev", EVENT_SHARDS).unwrap(), c);
        let start = ShardCursor { event: "ev".into(), shard: 15, inner: None };
        assert_eq!(ShardCursor::decode_of(&start.encode().unwrap(), "ev", EVENT_SHARDS).unwrap(), start);
        assert!(matches!(ShardCursor::decode_of(&c.encode().unwrap(), "other", EVENT_SHARDS), Err(StoreError::Invalid(_))));
        let out_of_range = ShardCursor { event: "ev".into(), shard: EVENT_SHARDS, inner: None }.encode().unwrap();
        for bad in ["", "!!!", "bm90IGpzb24", &out_of_range, &URL_SAFE_NO_PAD.encode(r#"{"e":"ev","s":1,"x":2}"#)] {
            assert!(matches!(ShardCursor::decode_of(bad, "ev", EVENT_SHARDS), Err(StoreError::Invalid(_))), "{bad}");
        }
    }
}
