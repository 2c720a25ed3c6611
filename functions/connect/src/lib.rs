//! The notification API's `$connect`: stores the connection with its user (from the authorizer),
//! encoding (`?format=json|protobuf`) and ack mode (`?ack=required`), and selects the
//! `access_token` subprotocol when the client offered it, as API Gateway requires for the
//! handshake to succeed.

use std::time::Duration;

use herald::apigw::{self, WsEvent, WsResponse, accept, refuse};
use herald::domain::{AckMode, Api, Connection, Encoding, Fence, user_stream};
use herald::history::{RecoveryJob, UserRecovery, recoverable};
use herald::protocol::Since;
use herald::queue::Queue;
use herald::store::{ConnectionStore, HistoryStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Event(#[from] apigw::MissingField),
    #[error("could not store the connection: {0}")]
    Store(#[from] StoreError),
    #[error("could not hand the recovery to the delivery workers: {0}")]
    Queue(#[from] herald::queue::QueueError),
}

/// Where `&since=` recoveries go (the fan-out queue: the delivery workers run them), and how
/// long pushes are kept.
pub struct Recovery<'a> {
    pub queue: &'a dyn Queue,
    pub history_ttl: Duration,
}

/// `$connect` without recovery: `&since=` is refused (400).
pub async fn handle<S: ConnectionStore + HistoryStore + ?Sized>(
    store: &S,
    connection_ttl: Duration,
    event: WsEvent,
) -> Result<WsResponse, ConnectError> {
    handle_with(store, connection_ttl, None, event).await
}

/// `$connect`; with `&since=<offset>:<epoch>` the user stream is recovered (CONTRACT §8): the
/// connection is stored recovering (live pushes of its user stream held back) and the replay is
/// handed to `recovery`.
#[tracing::instrument(skip_all, fields(connection_id))]
pub async fn handle_with<S: ConnectionStore + HistoryStore + ?Sized>(
    store: &S,
    connection_ttl: Duration,
    recovery: Option<&Recovery<'_>>,
    event: WsEvent,
) -> Result<WsResponse, ConnectError> {
    let connection_id = apigw::connection_id(&event)?.to_string();
    tracing::Span::current().record("connection_id", connection_id.as_str());
    let Some(identity) = apigw::caller(&event) else {
        return Ok(refuse(401, "unauthorized", "no authorizer identity"));
    };
    // An operator's `admin_id` or a requester's `request_id` is not a notify user (CONTRACT §1).
    let Ok(user_id) = identity.require_user() else {
        return Ok(refuse(403, "forbidden", "the token names no user (sub or user_id): the notify API needs one"));
    };
    let query = &event.query_string_parameters;
    let encoding = match Encoding::from_query(query.first("format")) {
        Ok(e) => e,
        Err(msg) => return Ok(refuse(400, "bad_format", &msg)),
    };
    let ack_mode = match AckMode::from_query(query.first("ack"), encoding) {
        Ok(a) => a,
        Err(msg) => return Ok(refuse(400, "bad_ack", &msg)),
    };
    let since = match query.first("since").filter(|s| !s.is_empty()) {
        None => None,
        Some(_) if recovery.is_none() => return Ok(refuse(400, "bad_since", "recovery is not available here")),
        Some(text) => match Since::parse_query(text) {
            Ok(s) => Some(s),
            Err(msg) => return Ok(refuse(400, "bad_since", &msg)),
        },
    };
    let mut connection = Connection {
        encoding,
        ack_mode,
        admin: identity.admin,
        request_id: identity.request_id.clone(),
        ..Connection::opened(connection_id, user_id, Api::Notify, connection_ttl)
    };
    let job = match (since, recovery) {
        (Some(since), Some(recovery)) => {
            let stream = user_stream(&connection.user_id);
            let ttl = i64::try_from(recovery.history_ttl.as_secs()).unwrap_or(i64::MAX);
            let head = store.stream_head(&stream, ttl).await?;
            let recovered = recoverable(store, &stream, &head, &since).await?;
            connection.fence = Some(Fence::Recovering);
            let after = if recovered { since.offset } else { head.offset };
            Some((
                recovery,
                RecoveryJob { recover: UserRecovery { connection_id: connection.connection_id.clone(), stream, after, recovered, head } },
            ))
        }
        _ => None,
    };
    store.put_connection(&connection).await?;
    if let Some((recovery, job)) = job {
        let body = serde_json::to_string(&job).unwrap_or_default();
        if let Err(e) = recovery.queue.send(&body).await {
            store.delete_connection(&connection.connection_id).await?;
            return Err(e.into());
        }
    }
    herald::metrics::inc(herald::metrics::Counter::NotifyConnectionsOpened);
    tracing::info!(user_id = %connection.user_id, encoding = encoding.as_str(), ack = ack_mode.as_str(), "connected");
    Ok(accept(&event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald::auth::Identity;
    use herald::store::memory::MemoryStore;

    pub fn event(query: &[(&str, &str)], protocol: Option<&str>, identity: Option<Identity>) -> WsEvent {
        let mut e = WsEvent::default();
        e.request_context.connection_id = Some("c1".into());
        e.request_context.route_key = Some("$connect".into());
        e.query_string_parameters =
            query.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<std::collections::HashMap<_, _>>().into();
        if let Some(p) = protocol {
            e.headers.insert("sec-websocket-protocol", p.parse().unwrap());
        }
        if let Some(id) = identity {
            e.request_context.authorizer.other = apigw::identity_context(&id);
        }
        e
    }

    fn user(id: &str) -> Identity {
        Identity { user_id: Some(id.into()), request_id: None, admin_id: None, admin: false, publisher: false }
    }

    const TTL: Duration = Duration::from_secs(7200);

    #[tokio::test]
    async fn stores_the_connection_with_encoding_and_ack_mode() {
        let store = MemoryStore::new();
        let r = handle(&store, TTL, event(&[("format", "protobuf")], None, Some(user("42")))).await.unwrap();
        assert_eq!(r.status_code, 200);
        assert!(r.headers.get("sec-websocket-protocol").is_none());
        let c = store.get_connection("c1").await.unwrap().unwrap();
        assert_eq!((c.user_id.as_str(), c.encoding, c.ack_mode), ("42", Encoding::Protobuf, AckMode::Required));
    }

    #[tokio::test]
    async fn selects_access_token_when_offered() {
        let store = MemoryStore::new();
        let r = handle(&store, TTL, event(&[], Some("access_token, x.y.z"), Some(user("42")))).await.unwrap();
        assert_eq!(r.headers.get("sec-websocket-protocol").unwrap(), "access_token");
    }

    #[tokio::test]
    async fn refuses_bad_query_and_missing_identity_without_storing() {
        let store = MemoryStore::new();
        assert_eq!(handle(&store, TTL, event(&[("format", "xml")], None, Some(user("42")))).await.unwrap().status_code, 400);
        assert_eq!(handle(&store, TTL, event(&[("ack", "maybe")], None, Some(user("42")))).await.unwrap().status_code, 400);
        assert_eq!(handle(&store, TTL, event(&[], None, None)).await.unwrap().status_code, 401);
        assert!(store.get_connection("c1").await.unwrap().is_none());
    }

    #[tokio::test]
    async fn refuses_operators_and_requesters_that_name_no_user() {
        let store = MemoryStore::new();
        let operator = Identity { user_id: None, request_id: None, admin_id: Some("42".into()), admin: true, publisher: true };
        let requester = Identity { user_id: None, request_id: Some("42".into()), admin_id: None, admin: false, publisher: false };
        for identity in [operator, requester] {
            let r = handle(&store, TTL, event(&[], None, Some(identity))).await.unwrap();
            assert_eq!(r.status_code, 403);
        }
        assert!(store.get_connection("c1").await.unwrap().is_none());
    }
}

herald::lambda_diagnostic!(ConnectError);
