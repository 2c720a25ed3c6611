//! The open WebSocket connections of this process, and the management API over them
//! ([`LocalGateway`]): what API Gateway keeps for a deployed API.

/// Connections by id: looked up once a post, hashed with foldhash (seeded per map) rather than SipHash.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, RwLock};
use std::task::{Poll, Waker};
use std::time::Duration;

use async_trait::async_trait;
use herald::gateway::{ConnectionInfo, Frame, Gateway, GatewayError};
use tokio::sync::Notify;

/// What API Gateway does not document and herald-local must still bound, per connection
/// (docs/local-parity.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Bytes of frames waiting for one connection's socket: posted and not yet handed to it (the
    /// writer takes all that is queued at once, and what it took counts until all of it has gone
    /// to the socket). A post that would go past this drops the connection: a client that does
    /// not read is disconnected, and this post and every later one answer 410. Default 1 MiB
    /// (eight 128 KB messages), on top of what the socket itself buffers.
    pub max_queued_bytes: usize,
    /// Frames waiting for one connection's socket, whatever their size. Default 1024.
    pub max_queued_frames: usize,
    /// How long one socket write may stay blocked before the connection is dropped. Default 10 s.
    pub write_timeout: Duration,
    /// API Gateway's maximum connection duration (2 h, CONTRACT §7).
    pub max_duration: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        Self {
            max_queued_bytes: 1024 * 1024,
            max_queued_frames: 1024,
            write_timeout: Duration::from_secs(10),
            max_duration: crate::MAX_CONNECTION,
        }
    }
}

/// What the connection's task is told to do.
#[derive(Debug)]
pub enum Outbound {
    Frame(Frame),
    Close { code: u16, reason: &'static str },
}

/// Why a frame was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    /// The connection's queue is full (it does not read): it is being dropped.
    #[error("the connection's outbound queue is full")]
    Full,
    /// The connection's task has ended.
    #[error("the connection is closed")]
    Closed,
}

/// A live connection, as the registry sees it.
#[derive(Debug)]
pub struct LiveConnection {
    queue: Mutex<Queue>,
    limits: ConnectionLimits,
    overflowed: AtomicBool,
    overflow: Notify,
    /// Epoch milliseconds.
    pub connected_at: i64,
    pub last_active_at: AtomicI64,
    pub source_ip: String,
    pub user_agent: Option<String>,
    /// `?format=protobuf`: posted data that is not a JSON object goes out as a binary frame.
    pub prefers_binary: bool,
}

/// A connection's queue and its counts under one lock: a post takes it once (one contended cache
/// line per post, where a channel beside an atomic count touched three or four), and the writer
/// once per pass, taking everything queued.
#[derive(Debug, Default)]
struct Queue {
    items: VecDeque<Outbound>,
    /// Frames in `items`.
    waiting: Count,
    /// Frames the writer took in its current pass and has not all handed to the socket yet:
    /// they count against the limits until the pass ends.
    pass: Count,
    /// The writer, waiting for something to be queued.
    waker: Option<Waker>,
    /// The writer is gone: nothing queued would go out.
    closed: bool,
}

#[derive(Debug, Default, Clone, Copy)]
struct Count {
    bytes: usize,
    frames: usize,
}

/// The receiving end of a connection's queue, for the task that writes to its socket.
#[derive(Debug)]
pub struct Outbox {
    conn: Arc<LiveConnection>,
    /// The current pass: what was queued when the writer last took.
    taken: VecDeque<Outbound>,
}

impl Outbox {
    /// The next thing to do, once there is one.
    pub async fn recv(&mut self) -> Outbound {
        std::future::poll_fn(|cx| {
            if let Some(next) = self.taken.pop_front() {
                return Poll::Ready(next);
            }
            let mut q = self.conn.lock();
            if take(&mut self.taken, &mut q)
                && let Some(next) = self.taken.pop_front()
            {
                return Poll::Ready(next);
            }
            if !q.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                q.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
        .await
    }

    /// The next thing to do if it is queued already, without waiting.
    pub fn try_recv(&mut self) -> Option<Outbound> {
        if self.taken.is_empty() {
            let mut q = self.conn.lock();
            take(&mut self.taken, &mut q);
        }
        self.taken.pop_front()
    }
}

/// Called once the writer handed out its pass: the pass no longer counts, and what is queued
/// becomes the next one (moved into `taken`, one swap). Whether anything was queued.
fn take(taken: &mut VecDeque<Outbound>, q: &mut Queue) -> bool {
    q.pass = Count::default();
    if q.items.is_empty() {
        return false;
    }
    std::mem::swap(&mut q.items, taken);
    q.pass = std::mem::take(&mut q.waiting);
    true
}

impl Drop for Outbox {
    fn drop(&mut self) {
        let mut q = self.conn.lock();
        q.closed = true;
        q.items.clear();
        q.waiting = Count::default();
        q.pass = Count::default();
    }
}

impl LiveConnection {
    /// A connection and its outbox.
    pub fn open(
        limits: ConnectionLimits,
        connected_at: i64,
        source_ip: String,
        user_agent: Option<String>,
        prefers_binary: bool,
    ) -> (Arc<Self>, Outbox) {
        let conn = Arc::new(Self {
            queue: Mutex::default(),
            limits,
            overflowed: AtomicBool::new(false),
            overflow: Notify::new(),
            connected_at,
            last_active_at: connected_at.into(),
            source_ip,
            user_agent,
            prefers_binary,
        });
        (conn.clone(), Outbox { conn, taken: VecDeque::new() })
    }

    fn lock(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues a frame without waiting: past the limits the connection is marked for dropping
    /// (its task is woken through [`LiveConnection::overflowed`]) and the frame refused.
    pub fn push(&self, frame: Frame) -> Result<(), QueueError> {
        if self.overflowed.load(Ordering::Relaxed) {
            return Err(QueueError::Full);
        }
        let len = frame.as_bytes().len();
        let mut q = self.lock();
        if q.closed {
            return Err(QueueError::Closed);
        }
        let bytes = q.waiting.bytes + q.pass.bytes + len;
        let frames = q.waiting.frames + q.pass.frames + 1;
        if bytes > self.limits.max_queued_bytes || frames > self.limits.max_queued_frames {
            drop(q);
            if !self.overflowed.swap(true, Ordering::Relaxed) {
                tracing::info!(bytes, frames, "a connection does not read: dropping it");
                self.overflow.notify_one();
            }
            return Err(QueueError::Full);
        }
        q.waiting.bytes += len;
        q.waiting.frames += 1;
        self.queue_up(q, Outbound::Frame(frame));
        Ok(())
    }

    /// Appends to the queue and wakes the writer if it waits (after the lock is let go).
    fn queue_up(&self, mut q: MutexGuard<'_, Queue>, item: Outbound) {
        q.items.push_back(item);
        let waker = q.waker.take();
        drop(q);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Asks the connection's task to send a close frame (after what is queued) and end. Not
    /// bounded: a close is not data.
    pub fn close(&self, code: u16, reason: &'static str) -> Result<(), QueueError> {
        let q = self.lock();
        if q.closed {
            return Err(QueueError::Closed);
        }
        self.queue_up(q, Outbound::Close { code, reason });
        Ok(())
    }

    /// Resolves once a push went past the limits.
    pub async fn overflowed(&self) {
        if self.overflowed.load(Ordering::Relaxed) {
            return;
        }
        self.overflow.notified().await;
    }

    /// Bytes counted against the limits: what is queued, and the writer's current pass.
    pub fn queued_bytes(&self) -> usize {
        let q = self.lock();
        q.waiting.bytes + q.pass.bytes
    }
}

/// The length of herald-local's connection ids (API Gateway's: 15 characters and `=`).
pub const CONNECTION_ID_LEN: usize = 16;

/// A connection id as the registry keys it: inline, so that a lookup compares bytes it already
/// holds instead of following each candidate's pointer to a string elsewhere on the heap (a
/// cache miss per post under a fan-out). An id of any other length is no connection of ours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Key([u8; CONNECTION_ID_LEN]);

impl Key {
    fn of(id: &str) -> Option<Self> {
        id.as_bytes().try_into().ok().map(Self)
    }
}

#[derive(Debug, Default)]
pub struct Registry {
    connections: RwLock<HashMap<Key, Arc<LiveConnection>>>,
    limits: ConnectionLimits,
}

pub fn epoch_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn rfc3339_ms(ms: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    Some(herald::domain::rfc3339(t))
}

impl Registry {
    pub fn new(limits: ConnectionLimits) -> Self {
        Self { connections: Default::default(), limits }
    }

    pub fn limits(&self) -> ConnectionLimits {
        self.limits
    }

    /// Registers a connection under its id, one of [`CONNECTION_ID_LEN`] bytes.
    pub fn insert(&self, id: &str, conn: Arc<LiveConnection>) {
        let key = Key::of(id).unwrap_or_else(|| panic!("a connection id is {CONNECTION_ID_LEN} bytes, not {id:?}"));
        self.write().insert(key, conn);
    }

    pub fn remove(&self, id: &str) {
        if let Some(key) = Key::of(id) {
            self.write().remove(&key);
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<LiveConnection>> {
        self.connections.read().unwrap_or_else(|e| e.into_inner()).get(&Key::of(id)?).cloned()
    }

    pub fn len(&self) -> usize {
        self.connections.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<Key, Arc<LiveConnection>>> {
        self.connections.write().unwrap_or_else(|e| e.into_inner())
    }

    /// `PostToConnection` with raw data: a text frame when it is UTF-8 (for a protobuf
    /// connection, only when it is a JSON object), a binary frame otherwise.
    pub fn post_data(&self, id: &str, data: Vec<u8>) -> Result<(), GatewayError> {
        let conn = self.get(id).ok_or_else(|| GatewayError::Gone(id.to_string()))?;
        let json_object = data.first() == Some(&b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(&data).is_ok();
        let frame = if conn.prefers_binary && !json_object {
            Frame::Binary(data)
        } else {
            match String::from_utf8(data) {
                Ok(text) => Frame::Text(text.into()),
                Err(e) => Frame::Binary(e.into_bytes()),
            }
        };
        self.deliver(id, &conn, frame)
    }

    pub fn send(&self, id: &str, frame: Frame) -> Result<(), GatewayError> {
        // Queued under the read lock: no reference to the connection taken and dropped per post.
        let pushed = {
            let connections = self.connections.read().unwrap_or_else(|e| e.into_inner());
            let conn = Key::of(id).and_then(|key| connections.get(&key)).ok_or_else(|| GatewayError::Gone(id.to_string()))?;
            conn.push(frame)
        };
        self.pushed(id, pushed)
    }

    /// Queues a frame, never waiting. A connection whose queue is full is gone from that moment
    /// (it is removed here; its task drops the socket and runs `$disconnect`): this post and every
    /// later one answer 410, as API Gateway answers for a connection it has closed.
    fn deliver(&self, id: &str, conn: &LiveConnection, frame: Frame) -> Result<(), GatewayError> {
        self.pushed(id, conn.push(frame))
    }

    /// What a push to connection `id` answered, as the management API answers.
    fn pushed(&self, id: &str, pushed: Result<(), QueueError>) -> Result<(), GatewayError> {
        match pushed {
            Ok(()) => Ok(()),
            Err(QueueError::Full) => {
                self.remove(id);
                Err(GatewayError::Gone(id.to_string()))
            }
            Err(QueueError::Closed) => Err(GatewayError::Gone(id.to_string())),
        }
    }

    pub fn close(&self, id: &str, code: u16, reason: &'static str) -> Result<(), GatewayError> {
        let conn = self.get(id).ok_or_else(|| GatewayError::Gone(id.to_string()))?;
        conn.close(code, reason).map_err(|_| GatewayError::Gone(id.to_string()))
    }

    pub fn describe(&self, id: &str) -> Result<ConnectionInfo, GatewayError> {
        let conn = self.get(id).ok_or_else(|| GatewayError::Gone(id.to_string()))?;
        Ok(ConnectionInfo {
            connected_at: rfc3339_ms(conn.connected_at),
            last_active_at: rfc3339_ms(conn.last_active_at.load(Ordering::Relaxed)),
            source_ip: Some(conn.source_ip.clone()),
            user_agent: conn.user_agent.clone(),
        })
    }
}

/// The management API in-process: what the handlers get in herald-local.
#[derive(Debug, Clone)]
pub struct LocalGateway(pub Arc<Registry>);

impl LocalGateway {
    fn post_at_once(&self, connection_id: &str, frame: &Frame) -> Result<(), GatewayError> {
        if frame.as_bytes().len() > herald::protocol::MAX_MESSAGE_BYTES {
            return Err(GatewayError::PayloadRefused("over 128 KB".into()));
        }
        self.0.send(connection_id, frame.clone())
    }
}

#[async_trait]
impl Gateway for LocalGateway {
    async fn post(&self, connection_id: &str, frame: &Frame) -> Result<(), GatewayError> {
        self.post_at_once(connection_id, frame)
    }

    /// Always answered at once: a post only queues the frame.
    fn post_now(&self, connection_id: &str, frame: &Frame) -> Option<Result<(), GatewayError>> {
        Some(self.post_at_once(connection_id, frame))
    }

    async fn describe(&self, connection_id: &str) -> Result<ConnectionInfo, GatewayError> {
        self.0.describe(connection_id)
    }

    async fn close(&self, connection_id: &str) -> Result<(), GatewayError> {
        self.0.close(connection_id, 1000, "")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(registry: &Registry, id: &str) -> Outbox {
        let (conn, outbox) = LiveConnection::open(registry.limits(), 0, "127.0.0.1".into(), None, false);
        registry.insert(id, conn);
        outbox
    }

    #[tokio::test]
    async fn a_post_reaches_its_connection_and_an_id_of_ours_only() {
        let registry = Registry::new(ConnectionLimits::default());
        let mut outbox = open(&registry, "AAAAAAAAAAAAAAA=");
        let _other = open(&registry, "BBBBBBBBBBBBBBB=");
        registry.send("AAAAAAAAAAAAAAA=", Frame::Text("one".into())).unwrap();
        assert!(matches!(outbox.try_recv(), Some(Outbound::Frame(Frame::Text(t))) if t.as_str() == "one"));
        assert!(outbox.try_recv().is_none(), "the other connection's queue is its own");
        // Shorter, longer, or one byte off: no connection, 410 as API Gateway answers.
        for id in ["AAAAAAAAAAAAAAA", "AAAAAAAAAAAAAAA==", "AAAAAAAAAAAAAAB=", ""] {
            assert!(matches!(registry.send(id, Frame::Text("x".into())), Err(GatewayError::Gone(g)) if g == id), "{id:?}");
            assert!(registry.get(id).is_none());
        }
        registry.remove("AAAAAAAAAAAAAAA=");
        assert!(matches!(registry.send("AAAAAAAAAAAAAAA=", Frame::Text("two".into())), Err(GatewayError::Gone(_))));
        assert_eq!(registry.len(), 1);
    }

    fn text(t: &str) -> Frame {
        Frame::Text(t.into())
    }

    fn frame_of(item: Option<Outbound>) -> String {
        match item {
            Some(Outbound::Frame(Frame::Text(t))) => t.as_str().to_string(),
            other => panic!("not a text frame: {other:?}"),
        }
    }

    #[tokio::test]
    async fn a_pass_counts_against_the_limits_until_all_of_it_went_out() {
        let limits = ConnectionLimits { max_queued_frames: 4, ..ConnectionLimits::default() };
        let (conn, mut outbox) = LiveConnection::open(limits, 0, "127.0.0.1".into(), None, false);
        for t in ["aaaa", "bbbb", "cccc"] {
            conn.push(text(t)).unwrap();
        }
        assert_eq!(conn.queued_bytes(), 12);
        // The writer takes all three at once; they count until it asks again with none left.
        assert_eq!(frame_of(outbox.try_recv()), "aaaa");
        conn.push(text("dddd")).unwrap();
        assert_eq!(conn.queued_bytes(), 16);
        assert_eq!(conn.push(text("eeee")), Err(QueueError::Full), "a fifth frame is over the limit of 4");
        assert_eq!(conn.push(text("f")), Err(QueueError::Full), "and the connection is being dropped");
        conn.overflowed().await;
        assert_eq!(frame_of(outbox.try_recv()), "bbbb");
        assert_eq!(frame_of(outbox.try_recv()), "cccc");
        // The next pass: the frame queued meanwhile, in order.
        assert_eq!(frame_of(outbox.try_recv()), "dddd");
        assert_eq!(conn.queued_bytes(), 4);
        assert!(outbox.try_recv().is_none());
        assert_eq!(conn.queued_bytes(), 0);
    }

    #[tokio::test]
    async fn the_writer_is_woken_by_a_post_and_a_close_comes_after_the_frames() {
        let (conn, mut outbox) = LiveConnection::open(ConnectionLimits::default(), 0, "127.0.0.1".into(), None, false);
        let writer = tokio::spawn(async move {
            let first = frame_of(Some(outbox.recv().await));
            let second = frame_of(Some(outbox.recv().await));
            let close = outbox.recv().await;
            (first, second, matches!(close, Outbound::Close { code: 1001, .. }), outbox)
        });
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        conn.push(text("one")).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        conn.push(text("two")).unwrap();
        conn.close(1001, "").unwrap();
        let (first, second, closed, outbox) =
            tokio::time::timeout(std::time::Duration::from_secs(5), writer).await.expect("woken").unwrap();
        assert_eq!((first.as_str(), second.as_str(), closed), ("one", "two", true));
        // The writer gone, nothing is queued any more: posts and closes answer Closed.
        drop(outbox);
        assert_eq!(conn.push(text("three")), Err(QueueError::Closed));
        assert_eq!(conn.close(1000, ""), Err(QueueError::Closed));
        assert_eq!(conn.queued_bytes(), 0);
    }
}
