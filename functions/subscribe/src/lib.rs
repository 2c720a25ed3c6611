//! The notification API's `subscribe` and `unsubscribe` routes (CONTRACT §3): replies
//! `subscribed` / `unsubscribed`, answers bad frames with an error frame, and closes a connection
//! that has no subscription left (code 1000), as the original service did. A private event
//! (`user:<id>:…`) is only for user `<id>` (`forbidden` for anyone else), and a connection holds
//! at most [`MAX_SUBSCRIPTIONS`] (`too_many_subscriptions` past that).

use std::time::Duration;

use herald::apigw::{self, WsEvent, WsResponse};
use herald::domain::{Connection, Fence, Subscription, event_stream};
use herald::gateway::{Gateway, GatewayError};
use herald::history::{Replay, ReplayError, recoverable};
use herald::protocol::{ClientFrame, ServerFrame, Since, parse_text_frame};
use herald::store::{ConnectionStore, FenceOf, HistoryStore, PresenceStore, StoreError, SubscriptionStore};

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error(transparent)]
    Event(#[from] apigw::MissingField),
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
    #[error("management API failed: {0}")]
    Gateway(#[from] GatewayError),
    #[error("replay failed: {0}")]
    Replay(#[from] ReplayError),
}

fn error_reply(code: &str, message: impl Into<String>) -> WsResponse {
    apigw::reply(ServerFrame::error(code, message).to_json())
}

/// Subscriptions one connection may hold (CONTRACT §3): the 101st is refused.
pub const MAX_SUBSCRIPTIONS: usize = 100;

/// The prefix of user `<id>`'s private events (CONTRACT §3).
const PRIVATE_PREFIX: &str = "user:";

/// A private event (`user:<id>:…`) may be subscribed only by user `<id>`.
pub fn check_private(event_name: &str, user_id: &str) -> Result<(), String> {
    let Some(rest) = event_name.strip_prefix(PRIVATE_PREFIX) else { return Ok(()) };
    match rest.strip_prefix(user_id) {
        Some(tail) if tail.starts_with(':') => Ok(()),
        _ => Err(format!("{event_name:?} is a private event of another user (user:<id>: events are only for user <id>)")),
    }
}

fn too_many() -> WsResponse {
    error_reply("too_many_subscriptions", format!("a connection holds at most {MAX_SUBSCRIPTIONS} subscriptions"))
}

#[tracing::instrument(skip_all, fields(connection_id))]
pub async fn handle<S: ConnectionStore + SubscriptionStore + HistoryStore + PresenceStore + ?Sized>(
    store: &S,
    gateway: &dyn Gateway,
    history_ttl: Duration,
    event: WsEvent,
) -> Result<WsResponse, SubscribeError> {
    let connection_id = apigw::connection_id(&event)?.to_string();
    tracing::Span::current().record("connection_id", connection_id.as_str());
    let frame = match parse_text_frame(event.body.as_deref().unwrap_or_default()) {
        Ok(f) => f,
        Err(e) => return Ok(apigw::reply(e.to_frame().to_json())),
    };
    let (event_name, user_id, subscribe, since) = match frame {
        ClientFrame::Subscribe { event_name, user_id, since } => (event_name, user_id, true, since),
        ClientFrame::Unsubscribe { event_name, user_id } => (event_name, user_id, false, None),
        ClientFrame::Ack { .. } | ClientFrame::Presence { .. } | ClientFrame::Heartbeat => {
            return Ok(error_reply("wrong_route", "acks, presence and heartbeats go to the $default route"));
        }
    };
    let Some(connection) = store.get_connection(&connection_id).await? else {
        return Ok(error_reply("unknown_connection", "this connection is not registered"));
    };
    store.touch_connection(&connection_id, herald::domain::epoch_secs(herald::domain::now())).await?;
    if let Some(claimed) = user_id.filter(|u| *u != connection.user_id) {
        return Ok(error_reply("user_mismatch", format!("user_id {claimed} is not the token's user")));
    }
    if subscribe {
        if let Err(refusal) = check_private(&event_name, &connection.user_id) {
            return Ok(error_reply("forbidden", refusal));
        }
        let held = store.connection_subscriptions(&connection_id).await?;
        let new = !held.contains(&event_name);
        if new && held.len() >= MAX_SUBSCRIPTIONS {
            return Ok(too_many());
        }
        // With `since`: recover the event's stream when it can be (CONTRACT §8).
        let stream = event_stream(&event_name);
        let ttl = i64::try_from(history_ttl.as_secs()).unwrap_or(i64::MAX);
        let recovery = match &since {
            None => None,
            Some(since) => {
                let head = store.stream_head(&stream, ttl).await?;
                let recovered = recoverable(store, &stream, &head, since).await?;
                Some((since, head, recovered))
            }
        };
        let recovering = recovery.as_ref().is_some_and(|(_, _, recovered)| *recovered);
        let fence = recovering.then_some(Fence::Recovering);
        store.subscribe(&Subscription { fence, ..Subscription::of(&connection, &event_name) }).await?;
        // Two frames of one connection may race past the check above: count again, and the
        // newcomer that went over the cap takes itself back, so at rest a connection never holds
        // more than the cap (a race may refuse both, never admit both).
        if new && store.connection_subscriptions(&connection_id).await?.len() > MAX_SUBSCRIPTIONS {
            store.unsubscribe(&connection_id, &event_name).await?;
            return Ok(too_many());
        }
        if new {
            herald::metrics::inc(herald::metrics::Counter::SubscriptionsAdded);
        }
        tracing::info!(event_name, recovering, "subscribed");
        let Some((since, head, recovered)) = recovery else {
            return Ok(apigw::reply(ServerFrame::subscribed(event_name).to_json()));
        };
        let reply = ServerFrame::Subscribed {
            event_name: event_name.clone(),
            offset: Some(head.offset),
            epoch: Some(head.epoch.clone()),
            recovered: Some(recovered),
        };
        if !recovered {
            return Ok(apigw::reply(reply.to_json()));
        }
        return replay(store, gateway, &connection, &event_name, &stream, ttl, since, head, reply).await;
    }
    if store.unsubscribe(&connection_id, &event_name).await? {
        herald::metrics::inc(herald::metrics::Counter::SubscriptionsRemoved);
    }
    let reply = ServerFrame::Unsubscribed { event_name: event_name.clone() };
    if !store.connection_subscriptions(&connection_id).await?.is_empty() {
        return Ok(apigw::reply(reply.to_json()));
    }
    // Nothing left: say so, then close, as the original service did.
    tracing::info!(event_name, "unsubscribed from the last event: closing");
    match gateway.post(&connection_id, &reply.to_frame()).await.and(gateway.close(&connection_id).await) {
        Ok(()) | Err(GatewayError::Gone(_)) => Ok(apigw::ok()),
        Err(e) => Err(e.into()),
    }
}

/// The `subscribed` reply first, then every missed push in order, then live ones
/// ([`herald::history`] says how they never interleave). Posted, not returned, so that the
/// reply goes out before the replay.
#[allow(clippy::too_many_arguments)]
async fn replay<S: HistoryStore + ?Sized>(
    store: &S,
    gateway: &dyn Gateway,
    connection: &Connection,
    event_name: &str,
    stream: &str,
    ttl_secs: i64,
    since: &Since,
    head: herald::domain::StreamHead,
    reply: ServerFrame,
) -> Result<WsResponse, SubscribeError> {
    let cid = connection.connection_id.as_str();
    let fence = FenceOf::Subscription { connection_id: cid, event_name };
    if let Err(e) = gateway.post(cid, &reply.to_frame()).await {
        store.go_live(fence, stream, &head, true).await?;
        return match e {
            GatewayError::Gone(_) => Ok(apigw::ok()),
            e => Err(e.into()),
        };
    }
    let run = Replay { store, gateway, connection_id: cid, encoding: connection.encoding, fence, stream, ttl_secs };
    let sent = run.run(since.offset, head).await?;
    tracing::info!(event_name, sent, "replayed");
    Ok(apigw::ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald::domain::{Api, Connection};
    use herald::gateway::{Frame, RecordingGateway};
    use herald::store::memory::MemoryStore;
    use serde_json::{Value, json};

    const TTL: Duration = Duration::from_secs(86_400);

    async fn setup() -> (MemoryStore, RecordingGateway) {
        let store = MemoryStore::new();
        let c = Connection::opened("c1", "1589", Api::Notify, Duration::from_secs(3600));
        store.put_connection(&c).await.unwrap();
        (store, RecordingGateway::default())
    }

    fn frame(body: &str) -> WsEvent {
        let mut e = WsEvent::default();
        e.request_context.connection_id = Some("c1".into());
        e.body = Some(body.into());
        e
    }

    fn body(r: &WsResponse) -> Value {
        serde_json::from_slice(apigw::response_body(r).expect("a reply")).unwrap()
    }

    #[tokio::test]
    async fn seed_000_subscribe_and_unsubscribe_closes_when_nothing_is_left() {
        let (store, gw) = setup().await;
        let r = handle(&store, &gw, TTL, frame(r#"{"type":"subscribe","user_id":1589,"event_name":"notification:test"}"#)).await.unwrap();
        assert_eq!(body(&r), json!({"type":"subscribed","event_name":"notification:test"}));
        assert_eq!(store.user_event_subscribers("1589", "notification:test").await.unwrap().len(), 1);

        let r = handle(&store, &gw, TTL, frame(r#"{"type":"unsubscribe","user_id":1589,"event_name":"notification:test"}"#)).await.unwrap();
        assert!(apigw::response_body(&r).is_none());
        assert_eq!(gw.sent_to("c1"), vec![Frame::Text(r#"{"type":"unsubscribed","event_name":"notification:test"}"#.into())]);
        assert_eq!(gw.closed(), vec!["c1".to_string()]);
    }

    #[tokio::test]
    async fn unsubscribing_one_of_two_keeps_the_connection() {
        let (store, gw) = setup().await;
        handle(&store, &gw, TTL, frame(r#"{"type":"subscribe","event_name":"a"}"#)).await.unwrap();
        handle(&store, &gw, TTL, frame(r#"{"type":"subscribe","event_name":"b"}"#)).await.unwrap();
        let r = handle(&store, &gw, TTL, frame(r#"{"type":"unsubscribe","event_name":"a"}"#)).await.unwrap();
        assert_eq!(body(&r), json!({"type":"unsubscribed","event_name":"a"}));
        assert!(gw.closed().is_empty());
    }

    #[tokio::test]
    async fn another_users_id_and_bad_frames_get_error_frames() {
        let (store, gw) = setup().await;
        let r = handle(&store, &gw, TTL, frame(r#"{"type":"subscribe","user_id":7,"event_name":"a"}"#)).await.unwrap();
        assert_eq!(body(&r)["code"], "user_mismatch");
        assert!(store.connection_subscriptions("c1").await.unwrap().is_empty());
        let r = handle(&store, &gw, TTL, frame(r#"{"type":"subscribe","event_name":["a"]}"#)).await.unwrap();
        assert_eq!(body(&r)["code"], "bad_request");
        let r = handle(&store, &gw, TTL, frame("not json")).await.unwrap();
        assert_eq!(body(&r)["type"], "error");
    }

    #[tokio::test]
    async fn private_events_are_only_for_their_user() {
        let (store, gw) = setup().await;
        for event in ["user:42:orders", "user:158:orders", "user:15890:orders", "user:1589", "user::x"] {
            let r = handle(&store, &gw, TTL, frame(&json!({"type":"subscribe","event_name":event}).to_string())).await.unwrap();
            assert_eq!(body(&r)["code"], "forbidden", "{event}");
        }
        assert!(store.connection_subscriptions("c1").await.unwrap().is_empty());
        let r = handle(&store, &gw, TTL, frame(r#"{"type":"subscribe","event_name":"user:1589:orders"}"#)).await.unwrap();
        assert_eq!(body(&r), json!({"type":"subscribed","event_name":"user:1589:orders"}));
        // Not private: the prefix is exactly `user:`.
        let r = handle(&store, &gw, TTL, frame(r#"{"type":"subscribe","event_name":"users:42:orders"}"#)).await.unwrap();
        assert_eq!(body(&r)["type"], "subscribed");
    }

    #[tokio::test]
    async fn the_101st_subscription_is_refused_and_resubscribing_is_not_counted() {
        let (store, gw) = setup().await;
        for i in 0..MAX_SUBSCRIPTIONS {
            let r = handle(&store, &gw, TTL, frame(&json!({"type":"subscribe","event_name":format!("e{i}")}).to_string())).await.unwrap();
            assert_eq!(body(&r)["type"], "subscribed", "e{i}");
        }
        let r = handle(&store, &gw, TTL, frame(r#"{"type":"subscribe","event_name":"one-more"}"#)).await.unwrap();
        assert_eq!(body(&r)["code"], "too_many_subscriptions");
        let r = handle(&store, &gw, TTL, frame(r#"{"type":"subscribe","event_name":"e7"}"#)).await.unwrap();
        assert_eq!(body(&r)["type"], "subscribed", "an existing subscription again is fine");
        assert_eq!(store.connection_subscriptions("c1").await.unwrap().len(), MAX_SUBSCRIPTIONS);
        assert!(store.user_event_subscribers("1589", "one-more").await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn racing_subscribes_never_leave_more_than_the_cap() {
        let (store, gw) = setup().await;
        for i in 0..MAX_SUBSCRIPTIONS - 1 {
            handle(&store, &gw, TTL, frame(&json!({"type":"subscribe","event_name":format!("e{i}")}).to_string())).await.unwrap();
        }
        let frames: Vec<WsEvent> =
            (0..8).map(|i| frame(&json!({"type":"subscribe","event_name":format!("race{i}")}).to_string())).collect();
        let replies = futures::future::join_all(frames.into_iter().map(|f| handle(&store, &gw, TTL, f))).await;
        let admitted = replies.iter().filter(|r| body(r.as_ref().unwrap())["type"] == "subscribed").count();
        assert!(admitted <= 1, "{admitted} admitted");
        assert!(store.connection_subscriptions("c1").await.unwrap().len() <= MAX_SUBSCRIPTIONS);
    }
}

herald::lambda_diagnostic!(SubscribeError);
