//! The chat API's `$connect` (CONTRACT §5, seed 001): `ws://HOST/ws?sid=<participant id>` with
//! `Sec-WebSocket-Protocol: access_token, <jwt>`. The authorizer has verified the token; this
//! handler checks what is particular to chat and stores the connection with `api: chat`,
//! `user_id` = `sid`, and the token's `admin` flag and `request_id`.
//!
//! Refusals (nothing is stored): no identity, or the token not sent as the subprotocol pair: 401;
//! a token with neither `request_id` nor `admin_id`: 403; `sid` missing or longer than 256
//! characters: 400. Each with a JSON body `{"error":{"code":…,"message":…}}`.

use std::time::Duration;

use herald::apigw::{self, WsEvent, WsResponse, accept, refuse};
use herald::domain::{Api, Connection, check_name};
use herald::store::{ConnectionStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum ChatConnectError {
    #[error(transparent)]
    Event(#[from] apigw::MissingField),
    #[error("could not store the connection: {0}")]
    Store(#[from] StoreError),
}

#[tracing::instrument(skip_all, fields(connection_id))]
pub async fn handle<S: ConnectionStore + ?Sized>(
    store: &S,
    connection_ttl: Duration,
    event: WsEvent,
) -> Result<WsResponse, ChatConnectError> {
    let connection_id = apigw::connection_id(&event)?.to_string();
    tracing::Span::current().record("connection_id", connection_id.as_str());
    let Some(identity) = apigw::caller(&event) else {
        return Ok(refuse(401, "unauthorized", "no authorizer identity"));
    };
    if apigw::subprotocol_token(&event.headers).is_none() {
        return Ok(refuse(401, "unauthorized", "the token must come as Sec-WebSocket-Protocol: access_token, <jwt>"));
    }
    if identity.request_id.is_none() && !identity.admin {
        return Ok(refuse(403, "forbidden", "the token names neither a request_id nor an admin_id"));
    }
    let sid = match event.query_string_parameters.first("sid") {
        None => return Ok(refuse(400, "bad_sid", "the sid query parameter is required")),
        Some(sid) => match check_name("sid", sid) {
            Ok(()) => sid.to_string(),
            Err(e) => return Ok(refuse(400, "bad_sid", &e.to_string())),
        },
    };
    let connection = Connection {
        admin: identity.admin,
        request_id: identity.request_id.clone(),
        ..Connection::opened(connection_id, sid, Api::Chat, connection_ttl)
    };
    store.put_connection(&connection).await?;
    herald::metrics::inc(herald::metrics::Counter::ChatConnectionsOpened);
    tracing::info!(sid = %connection.user_id, admin = connection.admin, request_id = connection.request_id.as_deref(), "chat connected");
    Ok(accept(&event))
}

herald::lambda_diagnostic!(ChatConnectError);

#[cfg(test)]
mod tests {
    use super::*;
    use herald::auth::Identity;
    use herald::store::memory::MemoryStore;

    const TTL: Duration = Duration::from_secs(7200);
    const PAIR: &str = "access_token, x.y.z";

    fn event(sid: Option<&str>, protocol: Option<&str>, identity: Option<Identity>) -> WsEvent {
        let mut e = WsEvent::default();
        e.request_context.connection_id = Some("c1".into());
        e.request_context.route_key = Some("$connect".into());
        if let Some(sid) = sid {
            e.query_string_parameters =
                [("sid".to_string(), sid.to_string())].into_iter().collect::<std::collections::HashMap<_, _>>().into();
        }
        if let Some(p) = protocol {
            e.headers.insert("sec-websocket-protocol", p.parse().unwrap());
        }
        if let Some(id) = identity {
            e.request_context.authorizer.other = apigw::identity_context(&id);
        }
        e
    }

    fn requester(request_id: &str) -> Identity {
        Identity { user_id: None, request_id: Some(request_id.into()), admin_id: None, admin: false, publisher: false }
    }

    fn admin(admin_id: &str) -> Identity {
        Identity { user_id: None, request_id: None, admin_id: Some(admin_id.into()), admin: true, publisher: true }
    }

    #[tokio::test]
    async fn a_requester_connects_with_sid_and_selects_access_token() {
        let store = MemoryStore::new();
        let r = handle(&store, TTL, event(Some("1"), Some(PAIR), Some(requester("100")))).await.unwrap();
        assert_eq!(r.status_code, 200);
        assert_eq!(r.headers.get("sec-websocket-protocol").unwrap(), "access_token");
        let c = store.get_connection("c1").await.unwrap().unwrap();
        assert_eq!((c.user_id.as_str(), c.api, c.admin, c.request_id.as_deref()), ("1", Api::Chat, false, Some("100")));
    }

    #[tokio::test]
    async fn an_admin_connects() {
        let store = MemoryStore::new();
        let r = handle(&store, TTL, event(Some("2"), Some(PAIR), Some(admin("1")))).await.unwrap();
        assert_eq!(r.status_code, 200);
        let c = store.get_connection("c1").await.unwrap().unwrap();
        assert_eq!((c.user_id.as_str(), c.admin, c.request_id), ("2", true, None));
    }

    #[tokio::test]
    async fn refusals_store_nothing() {
        let store = MemoryStore::new();
        let user = Identity { user_id: Some("u".into()), request_id: None, admin_id: None, admin: false, publisher: false };
        let cases = [
            ("no identity", event(Some("1"), Some(PAIR), None), 401),
            ("no subprotocol", event(Some("1"), None, Some(requester("100"))), 401),
            ("another subprotocol", event(Some("1"), Some("graphql-ws"), Some(requester("100"))), 401),
            ("neither request_id nor admin_id", event(Some("1"), Some(PAIR), Some(user)), 403),
            ("no sid", event(None, Some(PAIR), Some(requester("100"))), 400),
            ("empty sid", event(Some(""), Some(PAIR), Some(requester("100"))), 400),
            ("long sid", event(Some(&"x".repeat(257)), Some(PAIR), Some(requester("100"))), 400),
        ];
        for (what, e, status) in cases {
            let r = handle(&store, TTL, e).await.unwrap();
            assert_eq!(r.status_code, status, "{what}");
            let body: serde_json::Value = serde_json::from_slice(apigw::response_body(&r).unwrap()).unwrap();
            assert!(body["error"]["message"].is_string(), "{what}");
        }
        assert!(store.get_connection("c1").await.unwrap().is_none());
    }
}
