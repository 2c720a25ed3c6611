//! The minimal broadcast server `fanout` measures herald-local against: the best a simple server
//! can do on the same stack (tokio, axum, tungstenite), with none of Herald's work. No auth (the
//! token is ignored), no store, no queue, no acks: `POST /notify` serializes the push once, as
//! the very frame herald-local sends, and hands the same bytes to every subscriber of its event;
//! each connection's one task writes what is queued for it and flushes once per wake-up.
//!
//! It speaks what the load generator needs of herald-local: `GET /health`, the WebSocket at
//! `/api/v1/notify/ws`, the `subscribe` / `unsubscribe` frames and their replies, and
//! `POST /notify` answering `202 {"id":…}`. Per-connection queues are bounded: a subscriber whose
//! queue is full is dropped, as herald-local drops one that does not read.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::ws::{Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use futures::SinkExt;
use herald::domain::{Encoding, Push, now, rfc3339};
use herald::gateway::Frame;
use serde_json::{Value, json};
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;

use crate::common::Result;

/// Frames waiting for one connection (herald-local's default bound is 1,024 frames too).
const QUEUE_FRAMES: usize = 1024;
/// herald-local's accept queue.
const LISTEN_BACKLOG: u32 = 4096;

type Subscriber = (u64, mpsc::Sender<Utf8Bytes>);

/// Who is connected, and who listens to which event. The hub holds the only strong senders of
/// each connection's queue: forgetting a connection closes its queue, which ends its task.
#[derive(Default)]
struct Hub {
    inner: RwLock<Inner>,
    next_id: AtomicU64,
    /// Subscribers dropped because their queue was full.
    dropped: AtomicU64,
}

#[derive(Default)]
struct Inner {
    connections: HashMap<u64, mpsc::Sender<Utf8Bytes>>,
    events: HashMap<String, Vec<Subscriber>>,
}

impl Hub {
    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// A new connection and the receiving end of its queue.
    fn connect(&self) -> (u64, mpsc::Receiver<Utf8Bytes>) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(QUEUE_FRAMES);
        self.write().connections.insert(id, tx);
        (id, rx)
    }

    fn subscribe(&self, event: &str, id: u64) {
        let mut inner = self.write();
        let Some(tx) = inner.connections.get(&id).cloned() else { return };
        let subscribers = inner.events.entry(event.to_string()).or_default();
        if !subscribers.iter().any(|(i, _)| *i == id) {
            subscribers.push((id, tx));
        }
    }

    fn unsubscribe(&self, event: &str, id: u64) {
        if let Some(subscribers) = self.write().events.get_mut(event) {
            subscribers.retain(|(i, _)| *i != id);
        }
    }

    fn forget(&self, id: u64) {
        let mut inner = self.write();
        inner.connections.remove(&id);
        for subscribers in inner.events.values_mut() {
            subscribers.retain(|(i, _)| *i != id);
        }
    }

    /// The same bytes to every subscriber of `event`; returns how many took them.
    fn publish(&self, event: &str, frame: Utf8Bytes) -> usize {
        let mut full = Vec::new();
        let mut sent = 0;
        {
            let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
            for (id, tx) in inner.events.get(event).into_iter().flatten() {
                match tx.try_send(frame.clone()) {
                    Ok(()) => sent += 1,
                    Err(mpsc::error::TrySendError::Full(_)) => full.push(*id),
                    // Its task ended: it forgets itself.
                    Err(mpsc::error::TrySendError::Closed(_)) => {}
                }
            }
        }
        for id in full {
            self.dropped.fetch_add(1, Ordering::Relaxed);
            self.forget(id);
        }
        sent
    }
}

/// A running minimal server.
pub struct MinimalServer {
    pub addr: SocketAddr,
    hub: Arc<Hub>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl MinimalServer {
    /// Subscribers dropped for a full queue so far.
    pub fn dropped(&self) -> u64 {
        self.hub.dropped.load(Ordering::Relaxed)
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// Starts on a free port of 127.0.0.1, with Nagle off and herald-local's accept queue.
pub async fn start() -> Result<MinimalServer> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind("127.0.0.1:0".parse()?)?;
    let listener: TcpListener = socket.listen(LISTEN_BACKLOG)?;
    let addr = listener.local_addr()?;
    let hub = Arc::new(Hub::default());
    let router = Router::new()
        .route("/health", get(|| async { axum::Json(json!({"status": "ok"})) }))
        .route("/api/v1/notify/ws", get(upgrade))
        .route("/notify", post(notify))
        .with_state(hub.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let listener = axum::serve::ListenerExt::tap_io(listener, |tcp: &mut tokio::net::TcpStream| {
            let _ = tcp.set_nodelay(true);
        });
        let serve = axum::serve(listener, router).with_graceful_shutdown(async move {
            let _ = rx.await;
        });
        if let Err(e) = serve.await {
            eprintln!("minimal server failed: {e}");
        }
    });
    Ok(MinimalServer { addr, hub, shutdown: Some(tx), task })
}

/// `POST /notify`: `{"event_name": …, "message": …}` becomes one push frame, serialized once.
async fn notify(State(hub): State<Arc<Hub>>, body: Bytes) -> Response {
    let Ok(Value::Object(mut body)) = serde_json::from_slice::<Value>(&body) else {
        return (StatusCode::BAD_REQUEST, "the body is not a JSON object").into_response();
    };
    let Some(Value::String(event)) = body.remove("event_name") else {
        return (StatusCode::BAD_REQUEST, "no event_name").into_response();
    };
    let push = Push {
        id: uuid::Uuid::new_v4().to_string(),
        created_at: rfc3339(now()),
        user_id: None,
        event_name: Some(event),
        title: None,
        body: None,
        message: body.remove("message"),
        position: None,
    };
    // The frame herald-local sends for this push, to the byte.
    let Frame::Text(text) = herald::protocol::encode_push(&push, Encoding::Json) else { unreachable!("JSON is text") };
    hub.publish(push.event_name.as_deref().unwrap_or_default(), Utf8Bytes::from(String::from(text)));
    (StatusCode::ACCEPTED, axum::Json(json!({ "id": push.id }))).into_response()
}

/// herald-local's read buffer: tungstenite zero-fills the whole read buffer before every read,
/// so the default 128 KiB costs a 128 KiB memset per wake-up.
const READ_BUFFER: usize = 4 * 1024;

async fn upgrade(State(hub): State<Arc<Hub>>, ws: WebSocketUpgrade) -> Response {
    ws.read_buffer_size(READ_BUFFER).on_upgrade(move |socket| connection(hub, socket))
}

/// One connection: a single task reads the client's frames and writes its queue, everything
/// queued at a wake-up written with one flush.
async fn connection(hub: Arc<Hub>, mut socket: WebSocket) {
    let (id, mut rx) = hub.connect();
    loop {
        tokio::select! {
            next = rx.recv() => {
                let Some(frame) = next else { break };
                if socket.feed(Message::Text(frame)).await.is_err() {
                    break;
                }
                let mut failed = false;
                while let Ok(frame) = rx.try_recv() {
                    if socket.feed(Message::Text(frame)).await.is_err() {
                        failed = true;
                        break;
                    }
                }
                if failed || socket.flush().await.is_err() {
                    break;
                }
            }
            incoming = socket.recv() => match incoming {
                Some(Ok(Message::Text(text))) => {
                    if let Some(reply) = on_frame(&hub, id, text.as_str())
                        && socket.send(Message::Text(reply.into())).await.is_err()
                    {
                        break;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {}
            },
        }
    }
    hub.forget(id);
}

/// `subscribe` and `unsubscribe`, answered as herald's `subscribe` route answers them.
fn on_frame(hub: &Hub, id: u64, text: &str) -> Option<String> {
    let frame: Value = serde_json::from_str(text).ok()?;
    let event = frame.get("event_name")?.as_str()?;
    match frame.get("type")?.as_str()? {
        "subscribe" => {
            hub.subscribe(event, id);
            Some(json!({"type": "subscribed", "event_name": event}).to_string())
        }
        "unsubscribe" => {
            hub.unsubscribe(event, id);
            Some(json!({"type": "unsubscribed", "event_name": event}).to_string())
        }
        _ => None,
    }
}
