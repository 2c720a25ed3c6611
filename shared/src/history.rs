//! Recovery and presence (CONTRACT §8), shared by `subscribe` (event streams), the delivery
//! worker (a connection's user stream, `&since=` on connect), `dispatch` (which targets a live
//! push skips) and `$default` (presence, heartbeats).
//!
//! # How a replay and live pushes never interleave
//!
//! A push is appended to its stream (offset `n`, in one transaction with the stream's head: see
//! [`HistoryStore`]) *before* `dispatch` reads its targets. A recovering target (a subscription,
//! or a connection for its user stream) is written with the fence [`Fence::Recovering`] before
//! its replay starts; live delivery skips it. The replay posts every push after the client's
//! offset up to the head it read, then ends the fence with [`HistoryStore::go_live`]: one
//! transaction that sets `LiveAfter(top)` only if the stream's head is still `top`. So:
//!
//! - a push appended before the fence ended has `n <= top`: the replay posted it (had it been
//!   appended after the replay read the head, the head would have moved and `go_live` failed:
//!   the replay reads on and tries again); live delivery skips it (`Recovering`, or `n <= top`);
//! - a push appended after has `n > top` and reads its targets after the fence ended: live
//!   delivery sends it, the replay never does.
//!
//! Each push thus reaches the target once, the replay in offset order, and every live push
//! after the last replayed one. A target read from an index (eventually consistent) that says
//! `Recovering` is read again from its table before it is skipped. Under a push rate so
//! sustained that [`ROUNDS`] attempts never find the head still, the fence is ended anyway and
//! what came meanwhile is posted once more: then a push may arrive twice (never lost), which
//! clients dedupe by id (CONTRACT §4).

use std::time::Duration;

use crate::domain::{Connection, Encoding, Fence, StreamHead, epoch_secs, now};
use crate::gateway::{Gateway, GatewayError};
use crate::protocol::{Since, encode_push};
use crate::store::{FenceOf, HistoryStore, PresenceStore, StoreError, SubscriptionStore};

/// A client more than this many pushes behind is not recovered (CONTRACT §8).
pub const MAX_MISSED: u64 = 1000;
/// Pushes read per page of a replay or of `GET /history`.
pub const PAGE: usize = 100;
/// Attempts to end a replay's fence while pushes keep coming.
pub const ROUNDS: usize = 20;
/// `GET /history`'s largest `limit`.
pub const MAX_LIMIT: usize = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Gateway(#[from] GatewayError),
}

/// Whether a client that saw `since` of `stream` can be recovered: same epoch, at most
/// [`MAX_MISSED`] behind, and every push after it still kept (not older than the TTL).
pub async fn recoverable<S: HistoryStore + ?Sized>(store: &S, stream: &str, head: &StreamHead, since: &Since) -> Result<bool, StoreError> {
    if since.epoch != head.epoch || since.offset > head.offset || head.offset - since.offset > MAX_MISSED {
        return Ok(false);
    }
    if since.offset == head.offset {
        return Ok(true);
    }
    // Offsets are contiguous: the next one is there unless it expired.
    let next = store.read_history(stream, &head.epoch, since.offset, 1).await?;
    Ok(next.first().and_then(|p| p.position.as_ref()).map(|p| p.offset) == Some(since.offset + 1))
}

/// A replay to one connection.
pub struct Replay<'a, S: ?Sized> {
    pub store: &'a S,
    pub gateway: &'a dyn Gateway,
    pub connection_id: &'a str,
    pub encoding: Encoding,
    /// The fence that holds live delivery back meanwhile.
    pub fence: FenceOf<'a>,
    pub stream: &'a str,
    /// `HERALD_HISTORY_TTL_S`, for a head the replay has to create (its history expired).
    pub ttl_secs: i64,
}

impl<S: HistoryStore + ?Sized> Replay<'_, S> {
    /// Posts every push after `after`, in order, then ends the fence (see the module's
    /// comment); returns how many were posted. A connection found gone ends it early. Replayed
    /// pushes are posted as they are, without ack tracking: a client that misses one recovers again.
    pub async fn run(&self, after: u64, mut head: StreamHead) -> Result<usize, ReplayError> {
        let mut last = after;
        let mut sent = 0;
        for _ in 0..ROUNDS {
            match self.post_after(&mut last, &head.epoch).await {
                Ok(n) => sent += n,
                Err(ReplayError::Gateway(GatewayError::Gone(_))) => return Ok(sent),
                Err(e) => {
                    // Live delivery must not stay held back: end the fence where the replay got.
                    self.store.go_live(self.fence, self.stream, &StreamHead { offset: last, epoch: head.epoch.clone() }, true).await?;
                    return Err(e);
                }
            }
            head.offset = head.offset.max(last);
            if self.store.go_live(self.fence, self.stream, &head, false).await? {
                return Ok(sent);
            }
            let now_head = self.store.stream_head(self.stream, self.ttl_secs).await?;
            if now_head.epoch != head.epoch {
                // The history was lost meanwhile: nothing more to replay.
                self.store.go_live(self.fence, self.stream, &now_head, true).await?;
                return Ok(sent);
            }
            head = now_head;
        }
        // Pushes never stopped coming: go live, and post what came meanwhile once more.
        let top = self.store.stream_head(self.stream, self.ttl_secs).await?;
        self.store.go_live(self.fence, self.stream, &top, true).await?;
        match self.post_after(&mut last, &head.epoch).await {
            Ok(n) => Ok(sent + n),
            Err(ReplayError::Gateway(GatewayError::Gone(_))) => Ok(sent),
            Err(e) => Err(e),
        }
    }

    /// Posts what the stream holds after `*last`, moving `*last` on.
    async fn post_after(&self, last: &mut u64, epoch: &str) -> Result<usize, ReplayError> {
        let mut sent = 0;
        loop {
            let page = self.store.read_history(self.stream, epoch, *last, PAGE).await?;
            if page.is_empty() {
                return Ok(sent);
            }
            for push in page {
                let offset = push.position.as_ref().map(|p| p.offset).unwrap_or(*last + 1);
                self.post(&encode_push(&push, self.encoding)).await?;
                *last = offset;
                sent += 1;
            }
        }
    }

    /// One post, tried a few times (throttling, errors); a gone connection is final.
    async fn post(&self, frame: &crate::gateway::Frame) -> Result<(), GatewayError> {
        let mut pause = Duration::from_millis(50);
        let mut tries = 0;
        loop {
            tries += 1;
            match self.gateway.post(self.connection_id, frame).await {
                Ok(()) => return Ok(()),
                Err(e @ (GatewayError::Gone(_) | GatewayError::PayloadRefused(_))) => return Err(e),
                Err(e) if tries >= 4 => return Err(e),
                Err(_) => {
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                }
            }
        }
    }
}

/// Whether live delivery sends the push at `offset` to a target whose stored fence is `fence`:
/// one that says `Recovering` (maybe from an index, behind its table) is read again first.
pub async fn admits<S: HistoryStore + ?Sized>(
    store: &S,
    of: FenceOf<'_>,
    fence: Option<Fence>,
    offset: Option<u64>,
) -> Result<bool, StoreError> {
    if fence != Some(Fence::Recovering) || offset.is_none() {
        return Ok(Fence::admits(fence, offset));
    }
    Ok(match store.fence(of).await? {
        None => false,
        Some(current) => Fence::admits(current, offset),
    })
}

/// Whether a connection counts as online: its client was heard from within `timeout`.
pub fn is_live(connection: &Connection, now_secs: i64, timeout: Duration) -> bool {
    now_secs - connection.last_seen.max(connection.connected_at / 1000) <= timeout.as_secs() as i64
}

/// Who is online on an event: the users with a live connection subscribed to it (sorted), and
/// how many such connections. Reads every subscriber (a Query per shard page) and their
/// connections (batch reads).
pub async fn event_presence<S: SubscriptionStore + PresenceStore + ?Sized>(
    store: &S,
    event_name: &str,
    timeout: Duration,
) -> Result<(Vec<String>, usize), StoreError> {
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.event_subscribers(event_name, cursor.as_deref(), 1000).await?;
        ids.extend(page.items.into_iter().map(|s| s.connection_id));
        match page.next {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let now = epoch_secs(now());
    let live: Vec<Connection> = store.connections(&ids).await?.into_iter().filter(|c| is_live(c, now, timeout)).collect();
    let mut users: Vec<String> = live.iter().map(|c| c.user_id.clone()).collect();
    users.sort();
    users.dedup();
    Ok((users, live.len()))
}

/// The recovery of a connection's user stream (`&since=` on connect), run after the connect:
/// `$connect` cannot post (the connection is not open until it returns), so it hands this to
/// the delivery workers (the fan-out queue) and they run [`recover_connection`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct UserRecovery {
    pub connection_id: String,
    pub stream: String,
    /// Replay after this offset: the client's when recovered, else the head at connect (so the
    /// pushes that came while the connection opened are not lost).
    pub after: u64,
    pub recovered: bool,
    /// The head at connect: the `recovered` frame's `offset` and `epoch`.
    pub head: StreamHead,
}

/// A message of the fan-out queue that is a recovery, not a delivery batch.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RecoveryJob {
    pub recover: UserRecovery,
}

/// Tries of the first frame while API Gateway still answers 410 for a connection in its `$connect`.
const OPEN_TRIES: u32 = 40;

/// The `recovered` frame, then the replay (CONTRACT §8). A connection that is gone from the store
/// is skipped.
pub async fn recover_connection<S: HistoryStore + crate::store::ConnectionStore + ?Sized>(
    store: &S,
    gateway: &dyn Gateway,
    job: &UserRecovery,
    ttl_secs: i64,
) -> Result<usize, ReplayError> {
    let Some(connection) = store.get_connection(&job.connection_id).await? else { return Ok(0) };
    let fence = FenceOf::Connection(&job.connection_id);
    let frame = crate::protocol::ServerFrame::Recovered {
        stream: job.stream.clone(),
        recovered: job.recovered,
        offset: job.head.offset,
        epoch: job.head.epoch.clone(),
    };
    let frame = match connection.encoding {
        Encoding::Json => frame.to_frame(),
        // Protobuf connections have no recovered message: the replay itself tells.
        Encoding::Protobuf => {
            return Replay {
                store,
                gateway,
                connection_id: &job.connection_id,
                encoding: connection.encoding,
                fence,
                stream: &job.stream,
                ttl_secs,
            }
            .run(job.after, job.head.clone())
            .await;
        }
    };
    let mut tries = 0;
    loop {
        tries += 1;
        match gateway.post(&job.connection_id, &frame).await {
            Ok(()) => break,
            Err(GatewayError::Gone(_)) if tries < OPEN_TRIES => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(e) => {
                store.go_live(fence, &job.stream, &job.head, true).await?;
                return match e {
                    GatewayError::Gone(_) => Ok(0),
                    e => Err(e.into()),
                };
            }
        }
    }
    Replay { store, gateway, connection_id: &job.connection_id, encoding: connection.encoding, fence, stream: &job.stream, ttl_secs }
        .run(job.after, job.head.clone())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Push;
    use crate::store::memory::MemoryStore;

    fn push(i: u64) -> Push {
        Push {
            id: format!("p{i}"),
            created_at: "2026-12-07T00:00:00Z".into(),
            user_id: None,
            event_name: Some("e".into()),
            title: None,
            body: None,
            message: None,
            position: None,
        }
    }

    #[tokio::test]
    async fn recoverable_only_within_1000_of_the_top_in_the_same_epoch() {
        let store = MemoryStore::new();
        for i in 1..=1002 {
            store.append_history("event:e", &format!("k{i}"), &push(i), 3600).await.unwrap();
        }
        let head = store.stream_head("event:e", 3600).await.unwrap();
        let since = |offset: u64, epoch: &str| Since { offset, epoch: epoch.to_string() };
        assert!(recoverable(&store, "event:e", &head, &since(2, &head.epoch)).await.unwrap(), "exactly 1000 behind");
        assert!(!recoverable(&store, "event:e", &head, &since(1, &head.epoch)).await.unwrap(), "1001 behind");
        assert!(recoverable(&store, "event:e", &head, &since(1002, &head.epoch)).await.unwrap(), "nothing missed");
        assert!(!recoverable(&store, "event:e", &head, &since(1003, &head.epoch)).await.unwrap(), "ahead of the top");
        assert!(!recoverable(&store, "event:e", &head, &since(1000, "other")).await.unwrap(), "another epoch");
    }

    #[test]
    fn silence_past_the_timeout_is_offline() {
        let mut c = Connection::opened("c", "u", crate::domain::Api::Notify, Duration::from_secs(60));
        let now = c.last_seen;
        assert!(is_live(&c, now + 90, Duration::from_secs(90)));
        c.connected_at -= 10_000_000;
        assert!(!is_live(&c, now + 91, Duration::from_secs(90)));
    }
}
