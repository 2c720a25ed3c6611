//! The notification API's `$default` route: acks and nacks, as JSON text frames or as protobuf
//! `ClientMessage`s base64-encoded in text frames (API Gateway closes a connection that sends a
//! binary frame, with 1003), on either encoding, and an error frame for anything else (CONTRACT
//! §3). An event API Gateway marks `isBase64Encoded` (a binary payload) is a raw `ClientMessage`.
//! An ACK stops redelivery (and moves a platform notification's history record to `acked`, §9);
//! a NACK sends the push again at once. Also presence (CONTRACT §8):
//! `{"type":"presence","event_name":…}` from a subscribed connection, and `{"type":"heartbeat"}`;
//! every frame here counts as the client being alive (its connection's `last_seen`).

use herald::apigw::{self, WsEvent, WsResponse};
use herald::delivery::{self, DeliveryError, RedeliveryTimer, Resend};
use herald::domain::AckOutcome;
use herald::domain::Encoding;
use herald::gateway::Gateway;
use herald::gateway::GatewayError;
use herald::protocol::{AckStatus, ClientFrame, FrameError, ServerFrame, encode_error, parse_binary_frame, parse_text_frame};
use herald::store::{ConnectionStore, DeliveryStore, MailingStore, NotificationStore, PresenceStore, StoreError, SubscriptionStore};

#[derive(Debug, thiserror::Error)]
pub enum AckError {
    #[error(transparent)]
    Event(#[from] apigw::MissingField),
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Delivery(#[from] DeliveryError),
    #[error("the error frame could not be sent: {0}")]
    Reply(#[from] GatewayError),
}

/// What `$default` needs: the delivery records, the management API, the redelivery timer.
pub struct AckDeps<'a, S: ?Sized> {
    pub store: &'a S,
    pub gateway: &'a dyn Gateway,
    pub timer: &'a dyn RedeliveryTimer,
    pub settings: &'a herald::config::DeliveryConfig,
}

fn error_reply(code: &str, message: impl Into<String>) -> WsResponse {
    apigw::reply(ServerFrame::error(code, message).to_json())
}

/// Whether the frame was a protobuf `ClientMessage` (raw, or base64 in a text frame that is not
/// JSON): its errors go in the connection's encoding (CONTRACT §3).
fn is_protobuf(event: &WsEvent) -> bool {
    event.is_base64_encoded
        || event
            .body
            .as_deref()
            .is_some_and(|b| serde_json::from_str::<serde_json::Value>(b).is_err() && herald::protocol::decode_base64_text(b).is_some())
}

/// The error for a frame: JSON in the route's response, or for a protobuf ack on a protobuf
/// connection a `ServerMessage.error` posted as a binary frame (a route response is text).
async fn refuse<S: ConnectionStore + ?Sized>(
    deps: &AckDeps<'_, S>,
    event: &WsEvent,
    connection_id: &str,
    code: &str,
    message: String,
) -> Result<WsResponse, AckError> {
    if is_protobuf(event)
        && let Some(connection) = deps.store.get_connection(connection_id).await?
        && connection.encoding == Encoding::Protobuf
    {
        match deps.gateway.post(connection_id, &encode_error(code, &message, Encoding::Protobuf)).await {
            Ok(()) | Err(GatewayError::Gone(_)) => return Ok(apigw::ok()),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(error_reply(code, message))
}

#[tracing::instrument(skip_all, fields(connection_id))]
pub async fn handle<S: DeliveryStore + ConnectionStore + SubscriptionStore + PresenceStore + NotificationStore + MailingStore + ?Sized>(
    deps: &AckDeps<'_, S>,
    event: WsEvent,
) -> Result<WsResponse, AckError> {
    let connection_id = apigw::connection_id(&event)?.to_string();
    tracing::Span::current().record("connection_id", connection_id.as_str());
    deps.store.touch_connection(&connection_id, herald::domain::epoch_secs(herald::domain::now())).await?;
    let parsed = if event.is_base64_encoded {
        match apigw::body_bytes(&event) {
            Ok(bytes) => parse_binary_frame(&bytes),
            Err(_) => Err(FrameError::BadProtobuf),
        }
    } else {
        parse_text_frame(event.body.as_deref().unwrap_or_default())
    };
    let (push_id, status) = match parsed {
        Ok(ClientFrame::Ack { push_id, status }) => (push_id, status),
        Ok(ClientFrame::Heartbeat) => return Ok(apigw::ok()),
        Ok(ClientFrame::Presence { event_name }) => return presence(deps, &connection_id, event_name).await,
        Ok(_) => return Ok(error_reply("wrong_route", "subscribe and unsubscribe have their own routes")),
        Err(e @ FrameError::BadProtobuf) => return refuse(deps, &event, &connection_id, e.code(), e.to_string()).await,
        Err(e) => return Ok(apigw::reply(e.to_frame().to_json())),
    };
    match status {
        AckStatus::Ack => match deps.store.ack_delivery(&push_id, &connection_id).await? {
            AckOutcome::Acked => {
                herald::metrics::inc(herald::metrics::Counter::Acks);
                tracing::info!(push_id, "acked");
                // A platform notification's history says so (CONTRACT §9). The ack itself is
                // kept whatever happens here: a failure is logged, and an ack sent again moves it.
                match herald::platform::planner::record_ack(deps.store, &push_id).await {
                    Ok(moved) => tracing::debug!(push_id, moved, "history"),
                    Err(e) => tracing::warn!(push_id, error = %e, "the notification's history could not say acked"),
                }
                Ok(apigw::ok())
            }
            AckOutcome::Unknown => {
                refuse(deps, &event, &connection_id, "unknown_push", format!("no delivery of push {push_id} to this connection")).await
            }
        },
        AckStatus::Nack => {
            let redelivery = delivery::Redelivery { store: deps.store, gateway: deps.gateway, timer: deps.timer, settings: deps.settings };
            // The check for the new send is scheduled before it goes out (it supersedes the
            // pending one); a failure fails the route, and the pending check still resends.
            let outcome = redelivery.resend(&push_id, &connection_id, None).await?;
            herald::metrics::inc(herald::metrics::Counter::Nacks);
            tracing::info!(push_id, ?outcome, "nacked");
            match outcome {
                Resend::Unknown => {
                    refuse(deps, &event, &connection_id, "unknown_push", format!("no delivery of push {push_id} to this connection")).await
                }
                Resend::Sent(_) | Resend::Acked | Resend::Stale | Resend::Closed | Resend::Gone => Ok(apigw::ok()),
            }
        }
    }
}

/// The presence of an event the connection is subscribed to (CONTRACT §8).
async fn presence<S: SubscriptionStore + PresenceStore + ?Sized>(
    deps: &AckDeps<'_, S>,
    connection_id: &str,
    event_name: String,
) -> Result<WsResponse, AckError> {
    if !deps.store.connection_subscriptions(connection_id).await?.contains(&event_name) {
        return Ok(error_reply("forbidden", format!("this connection is not subscribed to {event_name:?}")));
    }
    let (users, connections) = herald::history::event_presence(deps.store, &event_name, deps.settings.presence_timeout).await?;
    Ok(apigw::reply(ServerFrame::Presence { event_name, users, connections }.to_json()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use herald::delivery::RedeliveryCheck;
    use herald::domain::Delivery;
    use herald::gateway::{Frame, RecordingGateway};
    use herald::protocol::{ack_protobuf, ack_protobuf_base64};
    use herald::queue::QueueError;
    use herald::store::memory::MemoryStore;
    use std::sync::Mutex;
    use std::time::Duration;

    #[derive(Default)]
    struct Timer(Mutex<Vec<(String, String)>>);

    #[async_trait::async_trait]
    impl RedeliveryTimer for Timer {
        async fn schedule(&self, check: &RedeliveryCheck, _after: Duration) -> Result<(), QueueError> {
            self.0.lock().unwrap().push((check.push_id.clone(), check.connection_id.clone()));
            Ok(())
        }
    }

    async fn store_with_delivery() -> MemoryStore {
        let store = MemoryStore::new();
        let d = Delivery {
            push_id: "p1".into(),
            connection_id: "c1".into(),
            attempts: 1,
            acked: false,
            frame: b"{\"type\":\"push\"}".to_vec(),
            binary: false,
            expires_at: 0,
        };
        store.create_delivery(&d).await.unwrap();
        store
    }

    fn text(body: &str) -> WsEvent {
        let mut e = WsEvent::default();
        e.request_context.connection_id = Some("c1".into());
        e.body = Some(body.into());
        e
    }

    fn binary(bytes: &[u8]) -> WsEvent {
        let mut e = text(&base64::engine::general_purpose::STANDARD.encode(bytes));
        e.is_base64_encoded = true;
        e
    }

    fn code(r: &WsResponse) -> String {
        let v: serde_json::Value = serde_json::from_slice(apigw::response_body(r).unwrap()).unwrap();
        v["code"].as_str().unwrap().to_string()
    }

    #[tokio::test]
    async fn a_protobuf_ack_marks_the_delivery_acked() {
        let (store, gw, timer, settings) = (store_with_delivery().await, RecordingGateway::default(), Timer::default(), Default::default());
        let deps = AckDeps { store: &store, gateway: &gw, timer: &timer, settings: &settings };
        let r = handle(&deps, binary(&ack_protobuf("p1", AckStatus::Ack))).await.unwrap();
        assert!(apigw::response_body(&r).is_none());
        assert!(store.get_delivery("p1", "c1").await.unwrap().unwrap().acked);
    }

    #[tokio::test]
    async fn a_base64_protobuf_ack_in_a_text_frame_marks_the_delivery_acked() {
        let (store, gw, timer, settings) = (store_with_delivery().await, RecordingGateway::default(), Timer::default(), Default::default());
        let deps = AckDeps { store: &store, gateway: &gw, timer: &timer, settings: &settings };
        let r = handle(&deps, text(&ack_protobuf_base64("p1", AckStatus::Ack))).await.unwrap();
        assert!(apigw::response_body(&r).is_none());
        assert!(store.get_delivery("p1", "c1").await.unwrap().unwrap().acked);
    }

    #[tokio::test]
    async fn a_base64_protobuf_nack_resends_at_once() {
        let (store, gw, timer, settings) = (store_with_delivery().await, RecordingGateway::default(), Timer::default(), Default::default());
        let deps = AckDeps { store: &store, gateway: &gw, timer: &timer, settings: &settings };
        let r = handle(&deps, text(&ack_protobuf_base64("p1", AckStatus::Nack))).await.unwrap();
        assert!(apigw::response_body(&r).is_none());
        assert_eq!(gw.sent_to("c1"), vec![Frame::Text("{\"type\":\"push\"}".into())]);
        assert!(!store.get_delivery("p1", "c1").await.unwrap().unwrap().acked);
    }

    #[tokio::test]
    async fn a_nack_resends_the_same_frame_at_once_and_schedules_a_check() {
        let (store, gw, timer, settings) = (store_with_delivery().await, RecordingGateway::default(), Timer::default(), Default::default());
        let deps = AckDeps { store: &store, gateway: &gw, timer: &timer, settings: &settings };
        handle(&deps, text(r#"{"type":"ack","push_id":"p1","status":"nack"}"#)).await.unwrap();
        assert_eq!(gw.sent_to("c1"), vec![Frame::Text("{\"type\":\"push\"}".into())]);
        assert_eq!(store.get_delivery("p1", "c1").await.unwrap().unwrap().attempts, 2);
        assert_eq!(timer.0.lock().unwrap().len(), 1);
    }

    #[tokio::test]
    async fn unknown_pushes_and_garbage_get_error_frames() {
        let (store, gw, timer, settings) = (store_with_delivery().await, RecordingGateway::default(), Timer::default(), Default::default());
        let deps = AckDeps { store: &store, gateway: &gw, timer: &timer, settings: &settings };
        assert_eq!(code(&handle(&deps, text(r#"{"type":"ack","push_id":"nope"}"#)).await.unwrap()), "unknown_push");
        assert_eq!(code(&handle(&deps, binary(&[0xff, 0x01])).await.unwrap()), "bad_protobuf");
        assert_eq!(code(&handle(&deps, text(r#"{"type":"hello"}"#)).await.unwrap()), "unknown_type");
        // Text that is neither JSON nor base64, and base64 that is no ClientMessage.
        assert_eq!(code(&handle(&deps, text("ack p1 please")).await.unwrap()), "bad_json");
        assert_eq!(
            code(&handle(&deps, text(&base64::engine::general_purpose::STANDARD.encode([0xff, 0x01]))).await.unwrap()),
            "bad_protobuf"
        );
        assert_eq!(code(&handle(&deps, text(&ack_protobuf_base64("nope", AckStatus::Ack))).await.unwrap()), "unknown_push");
    }
}

herald::lambda_diagnostic!(AckError);
