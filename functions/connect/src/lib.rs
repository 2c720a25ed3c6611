//! The notification API's `$connect`: stores the connection with its user (from the authorizer),
//! encoding (`?format=json|protobuf`) and ack mode (`?ack=required`), and selects the
//! `access_token` subprotocol when the client offered it, as API Gateway requires for the
//! handshake to succeed.

use std::time::Duration;

use herald::apigw::{self, WsEvent, WsResponse, accept, refuse};
use herald::domain::{AckMode, Api, Connection, Encoding};
use herald::store::{ConnectionStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error(transparent)]
    Event(#[from] apigw::MissingField),
    #[error("could not store the connection: {0}")]
    Store(#[from] StoreError),
}

#[tracing::instrument(skip_all, fields(connection_id))]
pub async fn handle<S: ConnectionStore + ?Sized>(store: &S, connection_ttl: Duration, event: WsEvent) -> Result<WsResponse, ConnectError> {
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
    let connection = Connection {
        encoding,
        ack_mode,
        admin: identity.admin,
        request_id: identity.request_id.clone(),
        ..Connection::opened(connection_id, user_id, Api::Notify, connection_ttl)
    };
    store.put_connection(&connection).await?;
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
