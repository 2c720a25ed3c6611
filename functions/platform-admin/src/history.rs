//! `GET /notifications` (CONTRACT §9, "History"): history records by user or by event (each a
//! Query on an index, never a Scan), narrowed by channel and status, newest first, a page at a
//! time (`limit`, default 50, at most 200; `cursor` from the page before).

use herald::domain::{Channel, Notification, NotificationFilter, NotificationStatus, check_name};
use herald::store::StoreError;
use serde_json::{Value, json};

use super::{AdminDeps, AdminError, bad};

/// The query parameters `GET /notifications` takes.
const PARAMS: &[&str] = &["user_id", "event_id", "mailing_id", "channel", "status", "limit", "cursor"];
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 200;

fn notification_json(n: &Notification) -> Value {
    json!({
        "id": n.id,
        "user_id": n.user_id,
        "channel": n.channel,
        "status": n.status,
        "reason": n.reason,
        "event_id": n.event_id,
        "mailing_id": n.mailing_id,
        "held_until": n.held_until,
        "created_at": n.created_at,
        "updated_at": n.updated_at,
    })
}

/// The decoded `name=value` pairs of a query string (`+` is a space).
pub(crate) fn query_pairs(query: &str) -> Result<Vec<(String, String)>, AdminError> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8()
            .map(|c| c.into_owned())
            .map_err(|_| bad("the query string is not UTF-8 once percent-decoded"))
    };
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            Ok((decode(k)?, decode(v)?))
        })
        .collect()
}

impl AdminDeps<'_> {
    pub(crate) async fn history_route(
        &self,
        method: &http::Method,
        path: &str,
        rest: &[&str],
        query: Option<&str>,
    ) -> Result<(u16, Option<Value>), AdminError> {
        if !rest.is_empty() {
            return Err(AdminError::NotFound(format!("no route for {path}")));
        }
        if method != http::Method::GET {
            return Err(AdminError::MethodNotAllowed { method: method.to_string(), path: path.to_string() });
        }
        let mut filter = NotificationFilter::default();
        let (mut limit, mut cursor) = (DEFAULT_LIMIT, None);
        for (k, v) in query_pairs(query.unwrap_or_default())? {
            match k.as_str() {
                "user_id" => {
                    check_name("user_id", &v).map_err(|e| bad(e.to_string()))?;
                    filter.user_id = Some(v);
                }
                "event_id" => {
                    check_name("event_id", &v).map_err(|e| bad(e.to_string()))?;
                    filter.event_id = Some(v);
                }
                "mailing_id" => {
                    check_name("mailing_id", &v).map_err(|e| bad(e.to_string()))?;
                    filter.mailing_id = Some(v);
                }
                "channel" => {
                    filter.channel = Some(
                        Channel::parse(&v).ok_or_else(|| bad(format!("unknown channel {v:?}: the channels are email, sms and push")))?,
                    )
                }
                "status" => {
                    let all: Vec<&str> = NotificationStatus::ALL.iter().map(|s| s.as_str()).collect();
                    filter.status = Some(
                        NotificationStatus::parse(&v)
                            .ok_or_else(|| bad(format!("unknown status {v:?}: the statuses are {}", all.join(", "))))?,
                    )
                }
                "limit" => {
                    limit = v
                        .parse::<usize>()
                        .ok()
                        .filter(|l| (1..=MAX_LIMIT).contains(l))
                        .ok_or_else(|| bad(format!("\"limit\" must be 1 to {MAX_LIMIT}")))?
                }
                "cursor" => cursor = Some(v),
                other => return Err(bad(format!("unknown parameter {other:?}: the parameters are {}", PARAMS.join(", ")))),
            }
        }
        if filter.user_id.is_none() && filter.event_id.is_none() && filter.mailing_id.is_none() {
            return Err(bad("give user_id, event_id or mailing_id"));
        }
        let page = self.notifications.list_notifications(&filter, cursor.as_deref(), limit).await.map_err(|e| match e {
            StoreError::Invalid(m) => bad(format!("\"cursor\": {m}")),
            other => other.into(),
        })?;
        let mut body = json!({ "items": page.items.iter().map(notification_json).collect::<Vec<_>>() });
        if let Some(next) = page.next {
            body["cursor"] = json!(next);
        }
        Ok((200, Some(body)))
    }
}
