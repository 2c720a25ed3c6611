//! `POST /notify` (seed 000, CONTRACT §4): a publisher's notification, validated and queued
//! durably; `202 {"id":"<uuid>"}` names the push the clients will see.

use herald::auth::{AuthError, Verifier};
use herald::domain::{Push, check_name, now, rfc3339, user_id_from_json};
use herald::protocol::MAX_MESSAGE_BYTES;
use herald::queue::Queue;
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

/// What the handler needs.
pub struct NotifyDeps<'a> {
    pub verifier: &'a Verifier,
    pub queue: &'a dyn Queue,
}

/// Every refusal, mapped to its status and error body in one place.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("the queue is unavailable")]
    Queue(#[source] herald::queue::QueueError),
}

impl NotifyError {
    fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Auth(e) => e.status(),
            Self::Queue(_) => 503,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Auth(e) => e.code(),
            Self::Queue(_) => "queue_unavailable",
        }
    }
}

fn bad(message: impl Into<String>) -> NotifyError {
    NotifyError::BadRequest(message.into())
}

/// The fields of a `/notify` body: Herald's own, then seed 002's queue body (CONTRACT §4).
const FIELDS: &[&str] = &["user_id", "event_name", "message", "title", "body"];
const SEED_002_FIELDS: &[&str] = &["message_id", "delivery_method", "subject", "content"];

/// The UUID namespace of push ids derived from a publisher's `message_id` ([`push_id`]).
const MESSAGE_ID_NAMESPACE: uuid::Uuid = uuid::uuid!("5b1f3c2e-8d4a-4e6b-9c1d-2f7a6e0b4c93");

/// The push id for `message_id` from `publisher` (the token's principal): a name-based UUID, so
/// the same publisher posting the same `message_id` again names the same push (pushed once),
/// while another publisher's equal `message_id` is another push. Publishers share one queue;
/// without the publisher in the id, one could suppress another's pushes by guessing its ids,
/// and clients (which dedupe by `id`) would drop one of two different pushes.
pub fn push_id(publisher: &str, message_id: &str) -> String {
    let name = format!("{}:{publisher}|{message_id}", publisher.len());
    uuid::Uuid::new_v5(&MESSAGE_ID_NAMESPACE, name.as_bytes()).to_string()
}

/// Validates a `/notify` body from `publisher` into a push: its id comes from seed 002's
/// `message_id` when given (the idempotency key, per publisher: [`push_id`]), else it is fresh.
pub fn parse_body(bytes: &[u8], publisher: &str) -> Result<Push, NotifyError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(bad(format!("the body is over {} KB", MAX_MESSAGE_BYTES / 1024)));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|_| bad("the body is not valid JSON"))?;
    let Value::Object(obj) = value else { return Err(bad("the body must be a JSON object")) };
    if let Some(unknown) = obj.keys().find(|k| !FIELDS.contains(&k.as_str()) && !SEED_002_FIELDS.contains(&k.as_str())) {
        return Err(bad(format!(
            "unknown field {unknown:?}: the fields are {} (or seed 002's {})",
            FIELDS.join(", "),
            SEED_002_FIELDS.join(", ")
        )));
    }
    let user_id = match obj.get("user_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(user_id_from_json("user_id", v).map_err(|e| bad(e.to_string()))?),
    };
    let text = |field: &str| -> Result<Option<String>, NotifyError> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(format!("\"{field}\" must be a string"))),
        }
    };
    // One of two names for the same thing (seed 002's on the right), not both.
    let either = |ours: &str, theirs: &str| -> Result<Option<String>, NotifyError> {
        match (text(ours)?, text(theirs)?) {
            (Some(_), Some(_)) => Err(bad(format!("give \"{ours}\" or seed 002's \"{theirs}\", not both"))),
            (a, b) => Ok(a.or(b)),
        }
    };
    match text("delivery_method")?.as_deref() {
        None | Some("push") => {}
        Some(other) => return Err(bad(format!("unknown delivery method {other:?}: /notify delivers \"push\" only"))),
    }
    let event_name = text("event_name")?;
    if let Some(e) = &event_name {
        check_name("event_name", e).map_err(|e| bad(e.to_string()))?;
    }
    if user_id.is_none() && event_name.is_none() {
        return Err(bad("give user_id, event_name or both"));
    }
    let id = match text("message_id")? {
        Some(id) if id.is_empty() || id.len() > 256 => return Err(bad("\"message_id\" must be 1 to 256 characters")),
        Some(id) => push_id(publisher, &id),
        None => uuid::Uuid::new_v4().to_string(),
    };
    let push = Push {
        id,
        created_at: rfc3339(now()),
        user_id,
        event_name,
        title: either("title", "subject")?,
        body: either("body", "content")?,
        message: obj.get("message").filter(|m| !m.is_null()).cloned(),
        position: None,
    };
    if push.title.is_none() && push.body.is_none() && push.message.is_none() {
        return Err(bad("nothing to deliver: give message, title or body"));
    }
    Ok(push)
}

async fn accept(deps: &NotifyDeps<'_>, request: &Request) -> Result<Push, NotifyError> {
    let token = herald::auth::request_bearer(request.headers())?;
    let identity = deps.verifier.verify(token).await?;
    identity.require_publisher()?;
    // A publisher token that names nobody shares the anonymous namespace.
    let publisher = identity.principal().unwrap_or_default();
    let push = parse_body(request.body().as_ref(), &publisher)?;
    let body = serde_json::to_string(&push).map_err(|e| bad(e.to_string()))?;
    deps.queue.send(&body).await.map_err(NotifyError::Queue)?;
    Ok(push)
}

#[tracing::instrument(skip_all)]
pub async fn handle(deps: &NotifyDeps<'_>, request: Request) -> Result<Response<Body>, std::convert::Infallible> {
    Ok(match accept(deps, &request).await {
        Ok(push) => {
            herald::metrics::inc(herald::metrics::Counter::PushesAccepted);
            tracing::info!(push_id = push.id, user_id = push.user_id.as_deref(), event_name = push.event_name.as_deref(), "queued");
            herald::apigw::http_json(202, Some(json!({ "id": push.id })))
        }
        Err(e) => {
            tracing::info!(status = e.status(), error = %e, "refused");
            herald::apigw::http_error(e.status(), e.code(), &e.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_are_validated_like_the_contract_says() {
        assert_eq!(
            parse_body(br#"{"user_id":1589,"event_name":"notification:test","message":1}"#, "svc").unwrap().user_id.as_deref(),
            Some("1589")
        );
        for bad_body in [
            &b"{"[..],
            br#"[1]"#,
            br#"{"message":"to nobody"}"#,
            br#"{"user_id":true}"#,
            br#"{"event_name":5}"#,
            br#"{"user_id":"1","title":7}"#,
            br#"{"event_name":""}"#,
            // An unknown field (a typo), nothing to deliver, seed 002's fields misused.
            br#"{"user_id":"1","mesage":"hi"}"#,
            br#"{"user_id":"1"}"#,
            br#"{"user_id":"1","message":null}"#,
            br#"{"user_id":"1","title":"a","subject":"b"}"#,
            br#"{"user_id":"1","delivery_method":"sms","content":"c"}"#,
            br#"{"user_id":"1","message_id":"","content":"c"}"#,
        ] {
            assert_eq!(parse_body(bad_body, "svc").unwrap_err().status(), 400, "{}", String::from_utf8_lossy(bad_body));
        }
        let typo = parse_body(br#"{"user_id":"1","mesage":"hi"}"#, "svc").unwrap_err().to_string();
        assert!(typo.contains("\"mesage\""), "{typo}");
        // Seed 002's body means what it means on the queue.
        let seed = parse_body(
            br#"{"message_id":"123e4567-e89b-12d3-a456-426614174000","delivery_method":"push","user_id":"u1","subject":"S","content":"C"}"#,
            "svc",
        )
        .unwrap();
        assert_eq!(
            (seed.id.clone(), seed.title.as_deref(), seed.body.as_deref(), seed.user_id.as_deref()),
            (push_id("svc", "123e4567-e89b-12d3-a456-426614174000"), Some("S"), Some("C"), Some("u1"))
        );
        // The id is the publisher's: stable for it, another for anyone else, unambiguous.
        assert_eq!(push_id("svc", "m1"), push_id("svc", "m1"));
        assert_ne!(push_id("svc", "m1"), push_id("other", "m1"));
        assert_ne!(push_id("a:b", "c"), push_id("a", "b:c"));
        assert_ne!(push_id("", "1|x"), push_id("1", "x"));
        let huge = format!(r#"{{"user_id":"1","message":"{}"}}"#, "x".repeat(MAX_MESSAGE_BYTES));
        assert_eq!(parse_body(huge.as_bytes(), "svc").unwrap_err().status(), 400);
    }
}
