//! The open WebSocket connections of this process, and the management API over them
//! ([`LocalGateway`]): what API Gateway keeps for a deployed API.

/// Connections by id: looked up once a post, hashed with foldhash (seeded per map) rather than SipHash.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use async_trait::async_trait;
use herald::gateway::{ConnectionInfo, Frame, Gateway, GatewayError};
use tokio::sync::{Notify, mpsc};

/// What API Gateway does not document and herald-local must still bound, per connection
/// (docs/local-parity.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Bytes of frames waiting for one connection's socket (posted, not yet handed to it). A post
    /// that would go past this drops the connection: a client that does not read is
    /// disconnected, and this post and every later one answer 410. Default 1 MiB (eight 128 KB
    /// messages), on top of what the socket itself buffers.
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
    tx: mpsc::UnboundedSender<Outbound>,
    limits: ConnectionLimits,
    /// What waits for the socket: bytes in the low [`BYTES_BITS`] bits, frames above (one
    /// atomic add per frame queued and per frame taken).
    queued: AtomicU64,
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

/// Bits of [`LiveConnection`]'s count that hold bytes (a frame is at most 128 KB and the queue
/// is bounded well below 2^40 bytes, so bytes never carry into the frame count).
const BYTES_BITS: u32 = 40;
const BYTES_MASK: u64 = (1 << BYTES_BITS) - 1;

/// What one frame of `len` bytes adds to the count.
fn queued_unit(len: usize) -> u64 {
    (1 << BYTES_BITS) | (len as u64 & BYTES_MASK)
}

/// The receiving end of a connection's queue, for the task that writes to its socket.
#[derive(Debug)]
pub struct Outbox {
    rx: mpsc::UnboundedReceiver<Outbound>,
    conn: Arc<LiveConnection>,
}

impl Outbox {
    /// The next thing to do; `None` once every sender is gone.
    pub async fn recv(&mut self) -> Option<Outbound> {
        let next = self.rx.recv().await;
        self.taken(next)
    }

    /// The next thing to do if it is queued already, without waiting.
    pub fn try_recv(&mut self) -> Option<Outbound> {
        let next = self.rx.try_recv().ok();
        self.taken(next)
    }

    /// What was taken off the queue no longer counts against its limits.
    fn taken(&self, next: Option<Outbound>) -> Option<Outbound> {
        if let Some(Outbound::Frame(frame)) = &next {
            self.conn.queued.fetch_sub(queued_unit(frame.as_bytes().len()), Ordering::Relaxed);
        }
        next
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
        let (tx, rx) = mpsc::unbounded_channel();
        let conn = Arc::new(Self {
            tx,
            limits,
            queued: AtomicU64::new(0),
            overflowed: AtomicBool::new(false),
            overflow: Notify::new(),
            connected_at,
            last_active_at: connected_at.into(),
            source_ip,
            user_agent,
            prefers_binary,
        });
        (conn.clone(), Outbox { rx, conn })
    }

    /// Queues a frame without waiting: past the limits the connection is marked for dropping
    /// (its task is woken through [`LiveConnection::overflowed`]) and the frame refused.
    pub fn push(&self, frame: Frame) -> Result<(), QueueError> {
        if self.overflowed.load(Ordering::Relaxed) {
            return Err(QueueError::Full);
        }
        let unit = queued_unit(frame.as_bytes().len());
        let queued = self.queued.fetch_add(unit, Ordering::Relaxed) + unit;
        let (bytes, frames) = ((queued & BYTES_MASK) as usize, (queued >> BYTES_BITS) as usize);
        if bytes > self.limits.max_queued_bytes || frames > self.limits.max_queued_frames {
            self.queued.fetch_sub(unit, Ordering::Relaxed);
            if !self.overflowed.swap(true, Ordering::Relaxed) {
                tracing::info!(bytes, frames, "a connection does not read: dropping it");
                self.overflow.notify_one();
            }
            return Err(QueueError::Full);
        }
        self.tx.send(Outbound::Frame(frame)).map_err(|_| QueueError::Closed)
    }

    /// Asks the connection's task to send a close frame (after what is queued) and end. Not
    /// bounded: a close is not data.
    pub fn close(&self, code: u16, reason: &'static str) -> Result<(), QueueError> {
        self.tx.send(Outbound::Close { code, reason }).map_err(|_| QueueError::Closed)
    }

    /// Resolves once a push went past the limits.
    pub async fn overflowed(&self) {
        if self.overflowed.load(Ordering::Relaxed) {
            return;
        }
        self.overflow.notified().await;
    }

    /// Bytes waiting for the socket (not counting the frame being written).
    pub fn queued_bytes(&self) -> usize {
        (self.queued.load(Ordering::Relaxed) & BYTES_MASK) as usize
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
}
