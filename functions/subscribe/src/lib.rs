//! The notification API's `subscribe` and `unsubscribe` routes (CONTRACT §3): replies
//! `subscribed` / `unsubscribed`, answers bad frames with an error frame, and closes a connection
//! that has no subscription left (code 1000), as the original service did.

use herald::apigw::{self, WsEvent, WsResponse};
use herald::domain::Subscription;
use herald::gateway::{Gateway, GatewayError};
use herald::protocol::{ClientFrame, ServerFrame, parse_text_frame};
use herald::store::{ConnectionStore, StoreError, SubscriptionStore};

#[derive(Debug, thiserror::Error)]
pub enum SubscribeError {
    #[error(transparent)]
    Event(#[from] apigw::MissingField),
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
    #[error("management API failed: {0}")]
    Gateway(#[from] GatewayError),
}

fn error_reply(code: &str, message: impl Into<String>) -> WsResponse {
    apigw::reply(ServerFrame::error(code, message).to_json())
}

#[tracing::instrument(skip_all, fields(connection_id))]
pub async fn handle<S: ConnectionStore + SubscriptionStore + ?Sized>(
    store: &S,
    gateway: &dyn Gateway,
    event: WsEvent,
) -> Result<WsResponse, SubscribeError> {
    let connection_id = apigw::connection_id(&event)?.to_string();
    tracing::Span::current().record("connection_id", connection_id.as_str());
    let frame = match parse_text_frame(event.body.as_deref().unwrap_or_default()) {
        Ok(f) => f,
        Err(e) => return Ok(apigw::reply(e.to_frame().to_json())),
    };
    let (event_name, user_id, subscribe) = match frame {
        ClientFrame::Subscribe { event_name, user_id } => (event_name, user_id, true),
        ClientFrame::Unsubscribe { event_name, user_id } => (event_name, user_id, false),
        ClientFrame::Ack { .. } => return Ok(error_reply("wrong_route", "acks go to the $default route")),
    };
    let Some(connection) = store.get_connection(&connection_id).await? else {
        return Ok(error_reply("unknown_connection", "this connection is not registered"));
    };
    if let Some(claimed) = user_id.filter(|u| *u != connection.user_id) {
        return Ok(error_reply("user_mismatch", format!("user_id {claimed} is not the token's user")));
    }
    if subscribe {
        store.subscribe(&Subscription::of(&connection, &event_name)).await?;
        tracing::info!(event_name, "subscribed");
        return Ok(apigw::reply(ServerFrame::Subscribed { event_name }.to_json()));
    }
    store.unsubscribe(&connection_id, &event_name).await?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use herald::domain::{Api, Connection};
    use herald::gateway::{Frame, RecordingGateway};
    use herald::store::memory::MemoryStore;
    use serde_json::{Value, json};
    use std::time::Duration;

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
        let r = handle(&store, &gw, frame(r#"{"type":"subscribe","user_id":1589,"event_name":"notification:test"}"#)).await.unwrap();
        assert_eq!(body(&r), json!({"type":"subscribed","event_name":"notification:test"}));
        assert_eq!(store.user_event_subscribers("1589", "notification:test").await.unwrap().len(), 1);

        let r = handle(&store, &gw, frame(r#"{"type":"unsubscribe","user_id":1589,"event_name":"notification:test"}"#)).await.unwrap();
        assert!(apigw::response_body(&r).is_none());
        assert_eq!(gw.sent_to("c1"), vec![Frame::Text(r#"{"type":"unsubscribed","event_name":"notification:test"}"#.into())]);
        assert_eq!(gw.closed(), vec!["c1".to_string()]);
    }

    #[tokio::test]
    async fn unsubscribing_one_of_two_keeps_the_connection() {
        let (store, gw) = setup().await;
        handle(&store, &gw, frame(r#"{"type":"subscribe","event_name":"a"}"#)).await.unwrap();
        handle(&store, &gw, frame(r#"{"type":"subscribe","event_name":"b"}"#)).await.unwrap();
        let r = handle(&store, &gw, frame(r#"{"type":"unsubscribe","event_name":"a"}"#)).await.unwrap();
        assert_eq!(body(&r), json!({"type":"unsubscribed","event_name":"a"}));
        assert!(gw.closed().is_empty());
    }

    #[tokio::test]
    async fn another_users_id_and_bad_frames_get_error_frames() {
        let (store, gw) = setup().await;
        let r = handle(&store, &gw, frame(r#"{"type":"subscribe","user_id":7,"event_name":"a"}"#)).await.unwrap();
        assert_eq!(body(&r)["code"], "user_mismatch");
        assert!(store.connection_subscriptions("c1").await.unwrap().is_empty());
        let r = handle(&store, &gw, frame(r#"{"type":"subscribe","event_name":["a"]}"#)).await.unwrap();
        assert_eq!(body(&r)["code"], "bad_request");
        let r = handle(&store, &gw, frame("not json")).await.unwrap();
        assert_eq!(body(&r)["type"], "error");
    }
}

herald::lambda_diagnostic!(SubscribeError);
