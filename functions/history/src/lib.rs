//! `GET /history` and `GET /presence` (CONTRACT §8), the HTTP API's reads of history streams
//! and of presence.
//!
//! - `GET /history?stream=<stream>&since=<offset>&limit=<n>`: a publisher may read any stream;
//!   a user its own `user:<id>` stream and the `event:<name>` streams of events it may subscribe
//!   (not another user's private `user:<id>:…` events). `since` is exclusive (default 0), `limit`
//!   1 to 1000 (default 100); `{"items":[<push frames>],"offset":<head>,"epoch":…}`, oldest first.
//! - `GET /presence?event_name=<name>` (publisher): `{"users":[…],"connections":N}`.

use herald::auth::{AuthError, Verifier};
use herald::config::DeliveryConfig;
use herald::history::{MAX_LIMIT, PAGE, event_presence};
use herald::protocol::push_json;
use herald::store::{HistoryStore, PresenceStore, StoreError, SubscriptionStore};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

pub struct HistoryDeps<'a, S: ?Sized> {
    pub verifier: &'a Verifier,
    pub store: &'a S,
    pub settings: &'a DeliveryConfig,
}

/// Every refusal, mapped to its status and error body in one place.
#[derive(Debug, thiserror::Error)]
pub enum HistoryError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    Forbidden(String),
    #[error("no route for {0}")]
    NotFound(String),
    #[error("the store is unavailable")]
    Store(#[from] StoreError),
}

impl HistoryError {
    fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) => 400,
            Self::Auth(e) => e.status(),
            Self::Forbidden(_) => 403,
            Self::NotFound(_) => 404,
            Self::Store(_) => 503,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::Auth(e) => e.code(),
            Self::Forbidden(_) => "forbidden",
            Self::NotFound(_) => "not_found",
            Self::Store(_) => "store_unavailable",
        }
    }
}

fn bad(message: impl Into<String>) -> HistoryError {
    HistoryError::BadRequest(message.into())
}

/// The decoded query parameters (`+` is a space); the first of a repeated name counts.
struct Query(Vec<(String, String)>);

impl Query {
    fn of(request: &Request) -> Result<Self, HistoryError> {
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(&s.replace('+', " "))
                .decode_utf8()
                .map(|c| c.into_owned())
                .map_err(|_| bad("the query string is not UTF-8 once percent-decoded"))
        };
        let pairs = request
            .uri()
            .query()
            .unwrap_or_default()
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                Ok((decode(k)?, decode(v)?))
            })
            .collect::<Result<_, HistoryError>>()?;
        Ok(Self(pairs))
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty())
    }

    /// A parameter that must be a whole number, if given.
    fn number(&self, name: &str) -> Result<Option<u64>, HistoryError> {
        match self.get(name) {
            None => Ok(None),
            Some(text) => text.parse().map(Some).map_err(|_| bad(format!("{name} must be a whole number, not {text:?}"))),
        }
    }
}

/// Whether the caller may read `stream`: publishers any; a user its own stream and the events
/// it may subscribe (the same rule as `subscribe`'s).
fn may_read(identity: &herald::auth::Identity, stream: &str) -> Result<(), HistoryError> {
    if identity.publisher {
        return Ok(());
    }
    let user = identity.require_user()?;
    if let Some(owner) = stream.strip_prefix("user:") {
        return if owner == user { Ok(()) } else { Err(HistoryError::Forbidden(format!("{stream:?} is another user's stream"))) };
    }
    if let Some(event) = stream.strip_prefix("event:") {
        return herald_subscribe::check_private(event, user).map_err(HistoryError::Forbidden);
    }
    Err(bad(format!("stream must be user:<id> or event:<name>, not {stream:?}")))
}

async fn history<S: HistoryStore + ?Sized>(deps: &HistoryDeps<'_, S>, request: &Request) -> Result<Value, HistoryError> {
    let token = herald::auth::request_bearer(request.headers())?;
    let identity = deps.verifier.verify(token).await?;
    let query = Query::of(request)?;
    let stream = query.get("stream").ok_or_else(|| bad("stream is required (user:<id> or event:<name>)"))?;
    let name = stream.strip_prefix("user:").or_else(|| stream.strip_prefix("event:"));
    match name {
        None => return Err(bad(format!("stream must be user:<id> or event:<name>, not {stream:?}"))),
        Some(name) => herald::domain::check_name("stream", name).map_err(|e| bad(e.to_string()))?,
    }
    let since = query.number("since")?.unwrap_or(0);
    let limit = query.number("limit")?.unwrap_or(PAGE as u64);
    if limit == 0 || limit > MAX_LIMIT as u64 {
        return Err(bad(format!("limit must be 1 to {MAX_LIMIT}")));
    }
    may_read(&identity, stream)?;
    let ttl = i64::try_from(deps.settings.history_ttl.as_secs()).unwrap_or(i64::MAX);
    let head = deps.store.stream_head(stream, ttl).await?;
    let items = deps.store.read_history(stream, &head.epoch, since, limit as usize).await?;
    let items: Vec<Value> = items.iter().map(|p| serde_json::from_str(&push_json(p)).unwrap_or(Value::Null)).collect();
    Ok(json!({ "items": items, "offset": head.offset, "epoch": head.epoch }))
}

async fn presence<S: SubscriptionStore + PresenceStore + ?Sized>(
    deps: &HistoryDeps<'_, S>,
    request: &Request,
) -> Result<Value, HistoryError> {
    let token = herald::auth::request_bearer(request.headers())?;
    deps.verifier.verify(token).await?.require_publisher()?;
    let query = Query::of(request)?;
    let event_name = query.get("event_name").ok_or_else(|| bad("event_name is required"))?;
    herald::domain::check_name("event_name", event_name).map_err(|e| bad(e.to_string()))?;
    let (users, connections) = event_presence(deps.store, event_name, deps.settings.presence_timeout).await?;
    Ok(json!({ "users": users, "connections": connections }))
}

#[tracing::instrument(skip_all)]
pub async fn handle<S: HistoryStore + SubscriptionStore + PresenceStore + ?Sized>(
    deps: &HistoryDeps<'_, S>,
    request: Request,
) -> Result<Response<Body>, std::convert::Infallible> {
    let result = match (request.method().as_str(), request.uri().path()) {
        ("GET", "/history") => history(deps, &request).await,
        ("GET", "/presence") => presence(deps, &request).await,
        (_, path) => Err(HistoryError::NotFound(path.to_string())),
    };
    Ok(match result {
        Ok(body) => herald::apigw::http_json(200, Some(body)),
        Err(e) => {
            if let HistoryError::Store(source) = &e {
                tracing::error!(error = %source, "store failed");
            }
            herald::apigw::http_error(e.status(), e.code(), &e.to_string())
        }
    })
}
