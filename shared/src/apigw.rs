//! API Gateway WebSocket events as the Lambdas receive them, and the responses they return:
//! reading the connection id, query, headers and the authorizer's context; building replies.
//! herald-local builds the very same events.

use aws_lambda_events::encodings::Body;
use http::HeaderMap;
use serde_json::{Map, Value};

pub use aws_lambda_events::apigw::{
    ApiGatewayCustomAuthorizerPolicy as AuthorizerPolicy, ApiGatewayCustomAuthorizerRequestTypeRequest as AuthorizerRequest,
    ApiGatewayCustomAuthorizerResponse as AuthorizerResponse, ApiGatewayProxyResponse as WsResponse,
    ApiGatewayWebsocketProxyRequest as WsEvent,
};
use aws_lambda_events::iam::{IamPolicyEffect, IamPolicyStatement};
pub use aws_lambda_events::query_map::QueryMap;

use crate::auth::Identity;

/// The subprotocol that carries a token: `Sec-WebSocket-Protocol: access_token, <jwt>`.
pub const ACCESS_TOKEN_PROTOCOL: &str = "access_token";
pub const SEC_WEBSOCKET_PROTOCOL: &str = "Sec-WebSocket-Protocol";

/// A header's value (names are case-insensitive).
pub fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The protocols a client offered in `Sec-WebSocket-Protocol`.
pub fn offered_protocols(headers: &HeaderMap) -> Vec<&str> {
    headers
        .get_all(SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect()
}

/// The token from `Sec-WebSocket-Protocol: access_token, <jwt>`.
pub fn subprotocol_token(headers: &HeaderMap) -> Option<&str> {
    let offered = offered_protocols(headers);
    let at = offered.iter().position(|p| *p == ACCESS_TOKEN_PROTOCOL)?;
    offered.get(at + 1).copied()
}

/// The token of a `$connect`: `?token=` first, else the subprotocol pair.
pub fn connect_token<'a>(query: &'a QueryMap, headers: &'a HeaderMap) -> Option<&'a str> {
    query.first("token").filter(|t| !t.is_empty()).or_else(|| subprotocol_token(headers))
}

/// The connection id API Gateway assigned; every WebSocket event has one.
pub fn connection_id(event: &WsEvent) -> Result<&str, MissingField> {
    event.request_context.connection_id.as_deref().filter(|c| !c.is_empty()).ok_or(MissingField("requestContext.connectionId"))
}

/// The body of a message event, decoded when API Gateway base64-encoded it (binary frames).
pub fn body_bytes(event: &WsEvent) -> Result<Vec<u8>, MissingField> {
    use base64::Engine as _;
    let body = event.body.as_deref().unwrap_or_default();
    if event.is_base64_encoded {
        base64::engine::general_purpose::STANDARD.decode(body).map_err(|_| MissingField("body (bad base64)"))
    } else {
        Ok(body.as_bytes().to_vec())
    }
}

/// An event that lacks what API Gateway always sends: a deployment or test mistake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the event has no {0}")]
pub struct MissingField(pub &'static str);

/// A response with a status and an optional body (a route response when the route has one).
pub fn response(status: u16, body: Option<String>) -> WsResponse {
    let mut r = WsResponse::default();
    r.status_code = i64::from(status);
    r.body = body.map(Body::Text);
    r
}

/// `200` with a frame for the client (the route response).
pub fn reply(frame: String) -> WsResponse {
    response(200, Some(frame))
}

/// `200` with nothing to send back.
pub fn ok() -> WsResponse {
    response(200, None)
}

/// The body of every refusal (CONTRACT §4): `{"error":{"code":…,"message":…}}`.
pub fn error_body(code: &str, message: &str) -> Value {
    serde_json::json!({"error": {"code": code, "message": message}})
}

/// A refused `$connect`: the status, with an [`error_body`].
pub fn refuse(status: u16, code: &str, message: &str) -> WsResponse {
    response(status, Some(error_body(code, message).to_string()))
}

/// An HTTP API (`lambda_http`) function's response: `body` as JSON with its content type, or no
/// body and no content type (`204`).
pub fn http_json(status: u16, body: Option<Value>) -> http::Response<Body> {
    let mut r = http::Response::new(body.map(|b| Body::Text(b.to_string())).unwrap_or(Body::Empty));
    *r.status_mut() = http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::INTERNAL_SERVER_ERROR);
    if r.body() != &Body::Empty {
        r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
    }
    r
}

/// An HTTP API function's refusal: the status with an [`error_body`].
pub fn http_error(status: u16, code: &str, message: &str) -> http::Response<Body> {
    http_json(status, Some(error_body(code, message)))
}

/// The successful `$connect`: `200`, with `Sec-WebSocket-Protocol: access_token` when the client
/// offered it, as API Gateway requires for the handshake to succeed.
pub fn accept(event: &WsEvent) -> WsResponse {
    let mut r = ok();
    if offered_protocols(&event.headers).contains(&ACCESS_TOKEN_PROTOCOL) {
        r.headers.insert(SEC_WEBSOCKET_PROTOCOL, http::HeaderValue::from_static(ACCESS_TOKEN_PROTOCOL));
    }
    r
}

/// The body of a response as text, if any.
pub fn response_body(r: &WsResponse) -> Option<&[u8]> {
    match &r.body {
        Some(Body::Text(t)) => Some(t.as_bytes()),
        Some(Body::Binary(b)) => Some(b),
        _ => None,
    }
}

// ---- the authorizer's context -------------------------------------------------------------

const CTX_USER: &str = "user_id";
const CTX_ADMIN: &str = "admin";
const CTX_PUBLISHER: &str = "publisher";
const CTX_REQUEST_ID: &str = "request_id";
const CTX_ADMIN_ID: &str = "admin_id";

/// The identity as an authorizer context (API Gateway allows strings, numbers and booleans).
pub fn identity_context(identity: &Identity) -> Map<String, Value> {
    let mut m = Map::new();
    let mut put = |k: &str, v: &Option<String>| {
        if let Some(v) = v {
            m.insert(k.to_string(), Value::String(v.clone()));
        }
    };
    put(CTX_USER, &identity.user_id);
    put(CTX_REQUEST_ID, &identity.request_id);
    put(CTX_ADMIN_ID, &identity.admin_id);
    m.insert(CTX_ADMIN.into(), Value::Bool(identity.admin));
    m.insert(CTX_PUBLISHER.into(), Value::Bool(identity.publisher));
    m
}

/// The identity the authorizer put in the request context (`requestContext.authorizer`), or
/// `None` when there is none (a route without an authorizer).
pub fn caller(event: &WsEvent) -> Option<Identity> {
    let auth = &event.request_context.authorizer;
    // WebSocket APIs put the context flat in `authorizer`; HTTP APIs under `lambda`.
    let get = |k: &str| auth.other.get(k).or_else(|| auth.fields.get(k));
    let text = |k: &str| match get(k) {
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        Some(Value::Number(n)) => Some(n.to_string()),
        _ => None,
    };
    let flag = |k: &str| match get(k) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    let identity = Identity {
        user_id: text(CTX_USER),
        request_id: text(CTX_REQUEST_ID),
        admin_id: text(CTX_ADMIN_ID),
        admin: flag(CTX_ADMIN),
        publisher: flag(CTX_PUBLISHER),
    };
    (identity.user_id.is_some() || identity.admin_id.is_some() || identity.request_id.is_some() || identity.admin || identity.publisher)
        .then_some(identity)
}

/// An authorizer's Allow: the caller may `execute-api:Invoke` the API, with its identity in the context.
pub fn allow(principal: &str, method_arn: &str, identity: &Identity) -> AuthorizerResponse {
    policy(principal, method_arn, IamPolicyEffect::Allow, Value::Object(identity_context(identity)))
}

/// An authorizer's Deny (API Gateway answers 403).
pub fn deny(principal: &str, method_arn: &str) -> AuthorizerResponse {
    policy(principal, method_arn, IamPolicyEffect::Deny, Value::Object(Map::new()))
}

fn policy(principal: &str, method_arn: &str, effect: IamPolicyEffect, context: Value) -> AuthorizerResponse {
    let mut statement = IamPolicyStatement::default();
    statement.action = vec!["execute-api:Invoke".into()];
    statement.effect = effect;
    statement.resource = vec![method_arn.to_string()];
    let mut document = AuthorizerPolicy::default();
    document.version = Some("2012-10-17".into());
    document.statement = vec![statement];
    let mut r = AuthorizerResponse::default();
    r.principal_id = Some(principal.to_string());
    r.policy_document = document;
    r.context = context;
    r
}

/// Whether an authorizer response allows the call.
pub fn is_allowed(r: &AuthorizerResponse) -> bool {
    !r.policy_document.statement.is_empty() && r.policy_document.statement.iter().all(|s| s.effect == IamPolicyEffect::Allow)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_subprotocol_pair_carries_the_token() {
        let mut h = HeaderMap::new();
        h.insert("sec-websocket-protocol", "access_token, eyJ.abc.def".parse().unwrap());
        assert_eq!(subprotocol_token(&h), Some("eyJ.abc.def"));
        assert_eq!(offered_protocols(&h), vec!["access_token", "eyJ.abc.def"]);
        let mut other = HeaderMap::new();
        other.insert("sec-websocket-protocol", "graphql-ws".parse().unwrap());
        assert_eq!(subprotocol_token(&other), None);
    }

    #[test]
    fn identity_survives_the_authorizer_context() {
        let id = Identity { user_id: Some("42".into()), request_id: None, admin_id: Some("1".into()), admin: true, publisher: true };
        let mut e = WsEvent::default();
        e.request_context.authorizer.other = identity_context(&id);
        assert_eq!(caller(&e), Some(id));
        assert_eq!(caller(&WsEvent::default()), None);
    }
}
