//! The WebSocket side of API Gateway: the handshake (authorizer, then `$connect`), route
//! selection for every frame, `$disconnect` on every close, and API Gateway's limits.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket, WebSocketUpgrade};
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::stream::SplitSink;
use futures::{SinkExt, StreamExt};
use herald::apigw::{self, AuthorizerRequest, QueryMap, WsEvent, WsResponse};
use herald::domain::Encoding;
use herald::gateway::Frame;
use herald::protocol::{MAX_FRAME_BYTES, MAX_MESSAGE_BYTES};

use crate::App;
use crate::functions::LocalApi;
use crate::registry::{CONNECTION_ID_LEN, LiveConnection, Outbound, Outbox, epoch_ms};

/// API Gateway's idle timeout and maximum connection duration (CONTRACT §7); the duration in
/// force is [`crate::registry::ConnectionLimits::max_duration`].
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
pub const MAX_CONNECTION: Duration = Duration::from_secs(2 * 60 * 60);

/// How long a close frame may take to go out once the server closes (idle, 2 h, 1003, 1009)
/// before the socket is dropped without it.
const CLOSE_GRACE: Duration = Duration::from_secs(1);

/// What every event of one connection shares.
#[derive(Clone)]
struct ConnectionContext {
    api: LocalApi,
    connection_id: String,
    connected_at: i64,
    source_ip: String,
    authorizer: serde_json::Map<String, serde_json::Value>,
}

/// An id in API Gateway's style (`L0SM9cOFvHcCIhw=`): safe in a URL path.
fn new_connection_id() -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let bytes = uuid::Uuid::new_v4().into_bytes();
    let mut id: String = bytes.iter().take(CONNECTION_ID_LEN - 1).map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char).collect();
    id.push('=');
    id
}

fn request_time(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let fmt = time::macros::format_description!("[day]/[month repr:short]/[year]:[hour]:[minute]:[second] +0000");
    t.format(&fmt).unwrap_or_default()
}

impl App {
    /// The event API Gateway sends a route's integration.
    fn event(&self, ctx: &ConnectionContext, route_key: &str, event_type: &str) -> WsEvent {
        route_event(&self.stage, &self.domain, ctx, route_key, event_type)
    }
}

/// The event of one route, as API Gateway builds it: every event of a connection carries the
/// authorizer's context (`requestContext.authorizer`), whatever its route.
fn route_event(stage: &str, domain: &str, ctx: &ConnectionContext, route_key: &str, event_type: &str) -> WsEvent {
    let now = epoch_ms();
    let mut e = WsEvent::default();
    let rc = &mut e.request_context;
    rc.route_key = Some(route_key.to_string());
    rc.event_type = Some(event_type.to_string());
    rc.connection_id = Some(ctx.connection_id.clone());
    rc.connected_at = ctx.connected_at;
    rc.stage = Some(stage.to_string());
    rc.domain_name = Some(domain.to_string());
    rc.apiid = Some(ctx.api.api_id().to_string());
    rc.request_id = Some(uuid::Uuid::new_v4().to_string());
    rc.extended_request_id = rc.request_id.clone();
    rc.request_time_epoch = now;
    rc.request_time = Some(request_time(now));
    rc.message_direction = Some("IN".into());
    rc.identity.source_ip = Some(ctx.source_ip.clone());
    rc.authorizer.other = ctx.authorizer.clone();
    e
}

fn gateway_error(status: StatusCode, message: &str) -> Response {
    (status, [("content-type", "application/json")], serde_json::json!({ "message": message }).to_string()).into_response()
}

/// `GET /api/v1/notify/ws` and `GET /ws`: the handshake.
pub async fn notify_upgrade(
    state: State<Arc<App>>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    upgrade(LocalApi::Notify, state, peer, headers, query, ws).await
}

pub async fn chat_upgrade(
    state: State<Arc<App>>,
    peer: ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    query: Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    upgrade(LocalApi::Chat, state, peer, headers, query, ws).await
}

async fn upgrade(
    api: LocalApi,
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    ws: WebSocketUpgrade,
) -> Response {
    if let Some(limit) = &app.connect_limiter
        && !limit.try_acquire()
    {
        return gateway_error(StatusCode::TOO_MANY_REQUESTS, "Too Many Requests");
    }
    let query: QueryMap = query.into();
    // Posted data goes out as binary frames to `?format=protobuf` connections.
    let binary = Encoding::from_query(query.first("format")) == Ok(Encoding::Protobuf);
    let connection_id = new_connection_id();
    let mut ctx = ConnectionContext {
        api,
        connection_id: connection_id.clone(),
        connected_at: epoch_ms(),
        source_ip: peer.ip().to_string(),
        authorizer: Default::default(),
    };

    // 1. The REQUEST authorizer.
    let mut auth = AuthorizerRequest::default();
    auth.type_ = Some("REQUEST".into());
    auth.method_arn = Some(format!("arn:aws:execute-api:local:000000000000:{}/{}/$connect", api.api_id(), app.stage));
    auth.headers = headers.clone();
    auth.query_string_parameters = query.clone();
    match app.handlers.authorize(auth).await {
        Ok(policy) if apigw::is_allowed(&policy) => {
            if let serde_json::Value::Object(context) = policy.context {
                ctx.authorizer = context;
            }
            if let Some(principal) = policy.principal_id {
                ctx.authorizer.insert("principalId".into(), principal.into());
            }
        }
        Ok(_) => return gateway_error(StatusCode::FORBIDDEN, "Forbidden"),
        Err(herald_authorizer::AuthorizerError::Unauthorized(_)) => return gateway_error(StatusCode::UNAUTHORIZED, "Unauthorized"),
        Err(e) => {
            tracing::error!(error = %e, "authorizer failed");
            return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
        }
    }

    // 2. $connect, with the headers and query string only it receives.
    let mut event = app.event(&ctx, "$connect", "CONNECT");
    event.headers = headers.clone();
    event.query_string_parameters = query;
    let response = match app.handlers.invoke(api, "$connect", event).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "$connect failed");
            return gateway_error(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
        }
    };
    if !(200..300).contains(&response.status_code) {
        let status = StatusCode::from_u16(response.status_code as u16).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = apigw::response_body(&response).map(<[u8]>::to_vec).unwrap_or_default();
        return (status, [("content-type", "application/json")], body).into_response();
    }

    // 3. The upgrade: the subprotocol only if $connect returned it.
    let mut ws = ws
        .max_frame_size(MAX_FRAME_BYTES)
        .max_message_size(MAX_MESSAGE_BYTES)
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(WRITE_COALESCE_BYTES)
        .max_write_buffer_size(MAX_MESSAGE_BYTES * 8);
    if let Some(protocol) = response.headers.get(apigw::SEC_WEBSOCKET_PROTOCOL).and_then(|v| v.to_str().ok()) {
        ws = ws.protocols([protocol.to_string()]);
    }
    let user_agent = headers.get("user-agent").and_then(|v| v.to_str().ok()).map(str::to_string);
    let failed = (app.clone(), ctx.clone());
    ws.on_failed_upgrade(move |e| {
        tracing::info!(error = %e, "upgrade failed after $connect");
        let (app, ctx) = failed;
        tokio::spawn(async move { app.disconnect(&ctx, 1006).await });
    })
    .on_upgrade(move |socket| run(app, ctx, socket, binary, user_agent))
}

/// The route a text frame goes to: the selection field's value when it names a route, else `$default`.
fn select_route(api: LocalApi, text: &str) -> &'static str {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(default)]
        r#type: Option<serde_json::Value>,
        #[serde(default)]
        name: Option<serde_json::Value>,
    }
    let key = serde_json::from_str::<Probe>(text).ok().and_then(|p| match api {
        LocalApi::Notify => p.r#type,
        LocalApi::Chat => p.name,
    });
    let Some(serde_json::Value::String(key)) = key else { return "$default" };
    api.routes().iter().find(|r| !r.starts_with('$') && **r == key).copied().unwrap_or("$default")
}

impl App {
    async fn disconnect(&self, ctx: &ConnectionContext, code: u16) {
        self.registry.remove(&ctx.connection_id);
        if self.faults.disconnect_lost() {
            tracing::info!(connection_id = ctx.connection_id, "disconnect_lost: no $disconnect for this connection");
            return;
        }
        let mut event = self.event(ctx, "$disconnect", "DISCONNECT");
        event.request_context.disconnect_status_code = Some(i64::from(code));
        if let Err(e) = self.handlers.invoke(ctx.api, "$disconnect", event).await {
            tracing::error!(error = %e, connection_id = ctx.connection_id, "$disconnect failed");
        }
    }

    /// One client text frame: route it, invoke the handler, send back its route response.
    async fn on_frame(&self, ctx: &ConnectionContext, text: String) -> Option<Frame> {
        let route = select_route(ctx.api, &text);
        let mut event = self.event(ctx, route, "MESSAGE");
        event.body = Some(text);
        event.request_context.message_id = Some(uuid::Uuid::new_v4().simple().to_string());
        match self.handlers.invoke(ctx.api, route, event).await {
            Ok(response) => route_response(&response),
            Err(e) => {
                tracing::error!(error = %e, route, "route failed");
                let body = serde_json::json!({"message": "Internal server error", "connectionId": ctx.connection_id});
                Some(Frame::Text(body.to_string().into()))
            }
        }
    }
}

/// The handler's body goes back to the client as one frame (a two-way route).
fn route_response(response: &WsResponse) -> Option<Frame> {
    let body = apigw::response_body(response)?;
    if body.is_empty() {
        return None;
    }
    Some(match std::str::from_utf8(body) {
        Ok(t) => Frame::Text(t.into()),
        Err(_) => Frame::Binary(body.to_vec()),
    })
}

/// Whether a read failed on API Gateway's frame or message limit (close 1009).
fn is_too_big(error: axum::Error) -> bool {
    matches!(error.into_inner().downcast_ref::<tungstenite::Error>(), Some(tungstenite::Error::Capacity(_)))
}

fn to_message(frame: Frame) -> Message {
    match frame {
        // Valid UTF-8 (a Text is): the shared bytes, checked again, not copied.
        Frame::Text(t) => Message::Text(Utf8Bytes::try_from(t.into_bytes()).unwrap_or_default()),
        Frame::Binary(b) => Message::Binary(b.into()),
    }
}

/// How the writer task ended.
enum WriterEnd {
    /// It sent the close frame it was asked for.
    Closed(u16),
    /// A write failed, or stayed blocked past the write timeout.
    Failed,
}

/// What a connection reads at a time: tungstenite zero-fills its whole read buffer before every
/// read, so a large one costs a large memset per wake-up; clients send small frames.
const READ_BUFFER_BYTES: usize = 4 * 1024;

/// What a writer hands tungstenite before it writes to the socket: the frames queued when the
/// writer wakes go out together, in writes of about this size, and one flush writes the rest —
/// instead of a write and a flush (one syscall) per frame. 16 KiB holds a burst's pass of about
/// a hundred small pushes in one write: against 4 KiB, `herald-bench fanout --bursts 9` made 14%
/// fewer sendto calls with 11% less CPU per delivery. The cost: tungstenite keeps its write
/// buffer's capacity, so a connection that once had that much queued holds up to 16 KiB (plus a
/// frame) from then on; an idle connection, which never had, holds none.
pub const WRITE_COALESCE_BYTES: usize = 16 * 1024;

/// One operation on the socket within the write timeout: `false` when it failed or stayed
/// blocked past the timeout.
async fn within(write_timeout: Duration, op: impl Future<Output = Result<(), axum::Error>>) -> bool {
    // Most operations complete at their first poll (the socket takes the bytes): no timer, no
    // clock read then. One that would block is timed from that moment.
    let mut op = std::pin::pin!(op);
    let first = std::future::poll_fn(|cx| std::task::Poll::Ready(op.as_mut().poll(cx))).await;
    if let std::task::Poll::Ready(done) = first {
        return done.is_ok();
    }
    match tokio::time::timeout(write_timeout, op).await {
        Ok(Ok(())) => true,
        Ok(Err(_)) => false,
        Err(_) => {
            tracing::info!("a write stayed blocked past the write timeout: dropping the connection");
            false
        }
    }
}

/// Writes the connection's queue to its socket, each write within `write_timeout`: a client that
/// stops reading blocks this task only, never the reads and timers of [`run`]. What is queued
/// when the task wakes goes out together ([`WRITE_COALESCE_BYTES`]), flushed once, in order; a
/// close queued behind frames goes out after them.
async fn write_queue(mut sink: SplitSink<WebSocket, Message>, mut outbox: Outbox, write_timeout: Duration) -> WriterEnd {
    let mut next = outbox.recv().await;
    loop {
        match next {
            Outbound::Frame(mut frame) => {
                // Let the tasks that are ready run first: under a fan-out, the frames they post
                // meanwhile go out with this one (one write instead of one per frame); alone, the
                // frame goes out as soon as the scheduler comes back.
                tokio::task::yield_now().await;
                // A close queued behind the frames, handled after the flush.
                let close = loop {
                    if !within(write_timeout, sink.feed(to_message(frame))).await {
                        return WriterEnd::Failed;
                    }
                    match outbox.try_recv() {
                        Some(Outbound::Frame(queued)) => frame = queued,
                        other => break other,
                    }
                };
                if !within(write_timeout, sink.flush()).await {
                    return WriterEnd::Failed;
                }
                next = match close {
                    Some(close) => close,
                    None => outbox.recv().await,
                };
            }
            Outbound::Close { code, reason } => {
                let close = async {
                    // After the client's close, tungstenite refuses a close frame of ours; closing
                    // the sink then flushes the reply it queued.
                    if sink.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await.is_err() {
                        let _ = sink.close().await;
                    }
                };
                let _ = tokio::time::timeout(write_timeout, close).await;
                return WriterEnd::Closed(code);
            }
        }
    }
}

/// How the connection's read loop ended.
enum End {
    /// Closed already (by the client, the writer, or a failure): the code for `$disconnect`.
    Closed(u16),
    /// A close frame with this code goes out after what is queued (the server closes, or
    /// answers the client's close).
    Closing(u16, &'static str),
}

async fn run(app: Arc<App>, ctx: ConnectionContext, socket: WebSocket, prefers_binary: bool, user_agent: Option<String>) {
    let limits = app.registry.limits();
    let (live, outbox) = LiveConnection::open(limits, ctx.connected_at, ctx.source_ip.clone(), user_agent, prefers_binary);
    app.registry.insert(&ctx.connection_id, live.clone());
    let _counted = app.live.open(ctx.api);
    let (sink, mut stream) = socket.split();
    let mut writer = tokio::spawn(write_queue(sink, outbox, limits.write_timeout));
    let idle = tokio::time::sleep(app.idle_timeout);
    let lifetime = tokio::time::sleep(limits.max_duration);
    tokio::pin!(idle, lifetime);
    let end = loop {
        tokio::select! {
            incoming = stream.next() => {
                let text = match incoming {
                    Some(Ok(Message::Text(t))) => t.to_string(),
                    // API Gateway takes no binary frames from clients: it closes with 1003.
                    Some(Ok(Message::Binary(_))) => break End::Closing(1003, "Binary frames are not supported"),
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {
                        live.last_active_at.store(epoch_ms(), Ordering::Relaxed);
                        idle.as_mut().reset(tokio::time::Instant::now() + app.idle_timeout);
                        continue;
                    }
                    // The writer's close frame lets tungstenite send its reply to the client's.
                    Some(Ok(Message::Close(frame))) => break End::Closing(frame.map(|f| f.code).unwrap_or(1005), ""),
                    Some(Err(e)) => break if is_too_big(e) { End::Closing(1009, "Message too big") } else { End::Closed(1006) },
                    None => break End::Closed(1006),
                };
                live.last_active_at.store(epoch_ms(), Ordering::Relaxed);
                idle.as_mut().reset(tokio::time::Instant::now() + app.idle_timeout);
                if let Some(reply) = app.on_frame(&ctx, text).await
                    && live.push(reply).is_err()
                {
                    app.registry.remove(&ctx.connection_id);
                    break End::Closed(1006);
                }
            }
            ended = &mut writer => break End::Closed(match ended {
                Ok(WriterEnd::Closed(code)) => code,
                Ok(WriterEnd::Failed) | Err(_) => 1006,
            }),
            // A client that does not read: dropped without a close frame (its socket is stuck).
            () = live.overflowed() => break End::Closed(1006),
            _ = &mut idle => break End::Closing(1001, "Going away: idle"),
            _ = &mut lifetime => break End::Closing(1001, "Going away: 2 h limit"),
        }
    };
    let code = match end {
        End::Closed(code) => code,
        End::Closing(code, reason) => {
            // After what is queued, within the grace; a stuck socket is dropped without it.
            if live.close(code, reason).is_ok() && tokio::time::timeout(CLOSE_GRACE, &mut writer).await.is_err() {
                tracing::info!(code, "the close frame could not go out: dropping the connection");
            }
            code
        }
    };
    writer.abort();
    drop(stream);
    app.disconnect(&ctx, code).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn context() -> ConnectionContext {
        let mut authorizer = serde_json::Map::new();
        authorizer.insert("principalId".into(), "u-1".into());
        authorizer.insert("user_id".into(), "u-1".into());
        ConnectionContext {
            api: LocalApi::Notify,
            connection_id: "c0000000000000=".into(),
            connected_at: 1,
            source_ip: "127.0.0.1".into(),
            authorizer,
        }
    }

    #[test]
    fn every_route_gets_the_authorizers_context() {
        let ctx = context();
        for (route, kind) in [("$connect", "CONNECT"), ("subscribe", "MESSAGE"), ("$default", "MESSAGE"), ("$disconnect", "DISCONNECT")] {
            let e = route_event("local", "localhost", &ctx, route, kind);
            assert_eq!(e.request_context.authorizer.other, ctx.authorizer, "{route}");
            assert_eq!(e.request_context.route_key.as_deref(), Some(route));
            assert_eq!(e.request_context.connection_id.as_deref(), Some("c0000000000000="));
        }
    }

    #[test]
    fn route_selection_reads_the_selection_field_and_falls_back_to_default() {
        assert_eq!(select_route(LocalApi::Notify, r#"{"type":"subscribe","event_name":"e"}"#), "subscribe");
        assert_eq!(select_route(LocalApi::Notify, r#"{"type":"ack"}"#), "$default");
        assert_eq!(select_route(LocalApi::Notify, r#"{"type":"$connect"}"#), "$default");
        assert_eq!(select_route(LocalApi::Notify, r#"{"type":7}"#), "$default");
        assert_eq!(select_route(LocalApi::Notify, "CgoKBsO7w78/PhAB"), "$default");
        assert_eq!(select_route(LocalApi::Chat, r#"{"name":"Event.SendMessage"}"#), "Event.SendMessage");
        assert_eq!(select_route(LocalApi::Chat, r#"{"type":"subscribe"}"#), "$default");
    }
}
