//! `POST /events` and `DELETE /events/{transaction_id}` (CONTRACT §9, "Events"): a publisher's
//! event, sent at once or at `send_at`, to users or to the subscribers of a WebSocket event.
//!
//! A fixed event (its event type exists) goes on the channels its event type has templates for
//! (narrowed by `channels`), each rendered with the recipient's locale and profile; a free-form
//! one carries its own `title`/`body` and goes by push unless `channels` says more; neither is
//! `400 unknown_event`. The event id comes from `transaction_id` per publisher (as
//! `POST /notify`'s push ids do); the event is kept once (a conditional write) in the mailings
//! table: the same transaction again answers the same id and sends nothing twice.
//!
//! Then the planner ([`herald::platform::planner`], the code mailings run too): a `send_at` in the
//! future is scheduled (a fire on the platform queue at that time); a `users` audience now runs its
//! jobs in this request; an `event_name` audience is paged through the subscriptions by the worker.
//!
//! `DELETE /events/{transaction_id}` cancels what has not been sent: a scheduled event, and what
//! quiet hours hold (recorded as `skipped`, "cancelled by the publisher"): `200`, else `409`.

use herald::auth::{AuthError, Verifier};
use herald::domain::{
    Channel, Content, EventType, Mailing, MailingAudience, MailingKind, MailingStatus, NotificationStatus, check_name, epoch_secs, now,
    parse_send_at, rfc3339, run_key, user_id_from_json,
};
use herald::platform::channels::ChannelSender;
use herald::platform::planner::{HISTORY_TTL_SECS, PlanError, Planner};
use herald::platform::schedule::{PlatformMessage, Scheduler, fire_schedule};
use herald::protocol::MAX_MESSAGE_BYTES;
use herald::queue::Queue;
use herald::store::{EventTypeStore, MailingStore, NotificationStore, StoreError, SubscriptionStore, TemplateStore, UserStore};
use lambda_http::{Body, Request, Response};
use serde_json::{Value, json};

pub use herald::platform::planner::notification_id;

/// What the handler needs: the platform's tables, a sender per channel (`None`: the channel
/// has no sender in this deployment; its notifications fail with that reason), the platform
/// queue and the scheduler.
pub struct EventsDeps<'a> {
    pub verifier: &'a Verifier,
    pub templates: &'a dyn TemplateStore,
    pub users: &'a dyn UserStore,
    pub event_types: &'a dyn EventTypeStore,
    pub notifications: &'a dyn NotificationStore,
    pub subscriptions: &'a dyn SubscriptionStore,
    pub mailings: &'a dyn MailingStore,
    pub push: &'a dyn ChannelSender,
    pub email: Option<&'a dyn ChannelSender>,
    pub sms: Option<&'a dyn ChannelSender>,
    pub queue: &'a dyn Queue,
    pub scheduler: &'a dyn Scheduler,
    /// `HERALD_USER_INFO_URL`'s client, when configured.
    pub user_info: Option<&'a herald::platform::user_info::UserInfo>,
}

/// The most recipients one event names (`users`).
pub const MAX_USERS: usize = 1000;

/// Every refusal, mapped to its status and error body in one place.
#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    UnknownEvent(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    NotFound(String),
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("{0}")]
    Conflict(String),
    #[error("the store is unavailable")]
    Store(#[source] StoreError),
    #[error("the platform is unavailable: {0}")]
    Plan(#[source] PlanError),
}

impl From<StoreError> for EventsError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<PlanError> for EventsError {
    fn from(e: PlanError) -> Self {
        match e {
            PlanError::Store(s) => Self::Store(s),
            other => Self::Plan(other),
        }
    }
}

impl EventsError {
    fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) | Self::UnknownEvent(_) => 400,
            Self::Auth(e) => e.status(),
            Self::NotFound(_) => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::Conflict(_) => 409,
            Self::Store(_) | Self::Plan(_) => 503,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) => "bad_request",
            Self::UnknownEvent(_) => "unknown_event",
            Self::Auth(e) => e.code(),
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::Conflict(_) => "nothing_to_cancel",
            Self::Store(_) => "store_unavailable",
            Self::Plan(_) => "unavailable",
        }
    }
}

fn bad(message: impl Into<String>) -> EventsError {
    EventsError::BadRequest(message.into())
}

/// The fields of a `POST /events` body.
const FIELDS: &[&str] = &["event", "user_id", "users", "event_name", "data", "channels", "transaction_id", "title", "body", "send_at"];

/// The UUID namespace of event ids derived from a publisher's `transaction_id` ([`event_id`]).
const TRANSACTION_NAMESPACE: uuid::Uuid = uuid::uuid!("0d6f2b8e-3c41-4a57-b1e9-7a2c5d8f9e10");

/// The event id of `transaction_id` from `publisher` (the token's principal): the same
/// publisher's same transaction names the same event; another publisher's is another event.
pub fn event_id(publisher: &str, transaction_id: &str) -> String {
    let name = format!("{}:{publisher}|{transaction_id}", publisher.len());
    uuid::Uuid::new_v5(&TRANSACTION_NAMESPACE, name.as_bytes()).to_string()
}

/// A validated `POST /events` body.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRequest {
    pub event: String,
    pub audience: MailingAudience,
    pub data: Value,
    pub channels: Option<Vec<Channel>>,
    pub transaction_id: Option<String>,
    pub title: Option<String>,
    pub body: Option<String>,
    pub send_at: Option<time::OffsetDateTime>,
}

pub fn parse_body(bytes: &[u8]) -> Result<EventRequest, EventsError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(bad(format!("the body is over {} KB", MAX_MESSAGE_BYTES / 1024)));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else { return Err(bad("the body must be a JSON object")) };
    let mut unknown: Vec<&str> = obj.keys().map(String::as_str).filter(|k| !FIELDS.contains(k)).collect();
    if !unknown.is_empty() {
        unknown.sort();
        let names: Vec<String> = unknown.iter().map(|n| format!("{n:?}")).collect();
        return Err(bad(format!("unknown field(s) {}: the fields are {}", names.join(", "), FIELDS.join(", "))));
    }
    let text = |field: &str| -> Result<Option<String>, EventsError> {
        match obj.get(field) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(bad(format!("\"{field}\" must be a string"))),
        }
    };
    let event = text("event")?.ok_or_else(|| bad("\"event\" is required (the event's name)"))?;
    check_name("event", &event).map_err(|e| bad(e.to_string()))?;
    let given = |f: &str| obj.get(f).filter(|v| !v.is_null());
    let audience = match (given("user_id"), given("users"), given("event_name")) {
        (None, None, None) => return Err(bad("give \"user_id\", \"users\" or \"event_name\"")),
        (Some(v), None, None) => MailingAudience::Users(vec![user_id_from_json("user_id", v).map_err(|e| bad(e.to_string()))?]),
        (None, Some(Value::Array(list)), None) => {
            if list.is_empty() || list.len() > MAX_USERS {
                return Err(bad(format!("\"users\" must name 1 to {MAX_USERS} users")));
            }
            let mut out: Vec<String> = Vec::with_capacity(list.len());
            for v in list {
                let id = user_id_from_json("users[]", v).map_err(|e| bad(e.to_string()))?;
                if !out.contains(&id) {
                    out.push(id);
                }
            }
            MailingAudience::Users(out)
        }
        (None, Some(_), None) => return Err(bad("\"users\" must be an array of user ids")),
        (None, None, Some(Value::String(name))) => {
            check_name("event_name", name).map_err(|e| bad(format!("\"event_name\": {e}")))?;
            MailingAudience::EventName(name.clone())
        }
        (None, None, Some(_)) => return Err(bad("\"event_name\" must be a string (the WebSocket event whose subscribers get it)")),
        _ => return Err(bad("give one of \"user_id\", \"users\" and \"event_name\", not several")),
    };
    let data = match obj.get("data") {
        None | Some(Value::Null) => json!({}),
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err(bad("\"data\" must be a JSON object")),
    };
    let channels = match obj.get("channels") {
        None | Some(Value::Null) => None,
        Some(Value::Array(list)) if !list.is_empty() => Some(Channel::parse_list(list).map_err(bad)?),
        Some(_) => return Err(bad("\"channels\" must be a non-empty array such as [\"email\",\"push\"]")),
    };
    let transaction_id = text("transaction_id")?;
    if transaction_id.as_ref().is_some_and(|t| t.is_empty() || t.chars().count() > 256) {
        return Err(bad("\"transaction_id\" must be 1 to 256 characters"));
    }
    let send_at = parse_send_at("send_at", obj.get("send_at").unwrap_or(&Value::Null)).map_err(bad)?;
    Ok(EventRequest { event, audience, data, channels, transaction_id, title: text("title")?, body: text("body")?, send_at })
}

impl EventsDeps<'_> {
    /// The planner of a request, whose jobs ask the auth service with the caller's token.
    fn planner<'s>(&'s self, caller_token: &'s str) -> Planner<'s> {
        Planner {
            templates: self.templates,
            users: self.users,
            subscriptions: self.subscriptions,
            notifications: self.notifications,
            mailings: self.mailings,
            push: self.push,
            email: self.email,
            sms: self.sms,
            queue: self.queue,
            scheduler: self.scheduler,
            user_info: self.user_info,
            caller_token: Some(caller_token),
        }
    }

    async fn serve(&self, request: &Request) -> Result<(u16, Value), EventsError> {
        let token = herald::auth::request_bearer(request.headers())?;
        // The token is checked before the body.
        let identity = self.verifier.verify(token).await?;
        identity.require_publisher()?;
        let publisher = identity.principal().unwrap_or_default();
        let path = request.uri().path();
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        // Behind a custom domain's mapping key the path has a prefix: the routes start at `events`.
        let rest = match segments.iter().position(|s| *s == "events") {
            Some(start) => &segments[start + 1..],
            None => return Err(EventsError::NotFound(format!("no route for {path}"))),
        };
        let method = request.method().as_str();
        match (rest, method) {
            ([], "POST") => {
                let (id, transaction_id) = self.accept(&publisher, token, request.body().as_ref()).await?;
                Ok((202, json!({ "id": id, "transaction_id": transaction_id })))
            }
            ([tx], "DELETE") => {
                let tx = percent_encoding::percent_decode_str(tx)
                    .decode_utf8()
                    .map_err(|_| bad("the transaction id in the path is not UTF-8 once percent-decoded"))?;
                self.cancel(&publisher, &tx).await.map(|v| (200, v))
            }
            ([] | [_], _) => Err(EventsError::MethodNotAllowed { method: method.to_string(), path: path.to_string() }),
            _ => Err(EventsError::NotFound(format!("no route for {path}"))),
        }
    }

    /// `DELETE /events/{transaction_id}`: a scheduled event is cancelled, and what quiet hours
    /// hold is recorded as `skipped` with the reason; `409` when nothing is left to cancel, `404`
    /// for an unknown one.
    async fn cancel(&self, publisher: &str, transaction_id: &str) -> Result<Value, EventsError> {
        let id = event_id(publisher, transaction_id);
        let kept = self.mailings.get_mailing(&id).await?;
        let scheduled =
            kept.is_some() && self.mailings.set_mailing_status(&id, &[MailingStatus::Scheduled], MailingStatus::Cancelled).await?;
        if scheduled {
            self.scheduler.cancel(&fire_schedule(&id)).await.map_err(PlanError::from)?;
        }
        let filter = herald::domain::NotificationFilter { event_id: Some(id.clone()), ..Default::default() };
        let (mut cursor, mut seen, mut cancelled) = (None::<String>, 0usize, 0usize);
        loop {
            let page = self.notifications.list_notifications(&filter, cursor.as_deref(), 200).await?;
            seen += page.items.len();
            for mut n in page.items.into_iter().filter(|n| n.status == NotificationStatus::Held) {
                n.status = NotificationStatus::Skipped;
                n.reason = Some("cancelled by the publisher".into());
                n.held_until = None;
                n.updated_at = rfc3339(now());
                let moved = [
                    (herald::domain::count_key(n.channel, NotificationStatus::Held), -1),
                    (herald::domain::count_key(n.channel, NotificationStatus::Skipped), 1),
                ];
                // Only if it is still held (its release may have just sent it), with its count.
                if !self.mailings.record_job(&n, NotificationStatus::Held, &id, "", false, &moved).await? {
                    continue;
                }
                cancelled += 1;
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        match (kept.is_some() || seen > 0, scheduled, cancelled) {
            (false, _, _) => Err(EventsError::NotFound(format!("no event with transaction id {transaction_id:?}"))),
            (true, false, 0) => Err(EventsError::Conflict(format!("event {id}: everything has been sent (or failed or skipped) already"))),
            _ => Ok(json!({
                "id": id,
                "transaction_id": transaction_id,
                "status": if scheduled { "cancelled" } else { "sent" },
                "cancelled": cancelled,
            })),
        }
    }

    async fn accept(&self, publisher: &str, token: &str, bytes: &[u8]) -> Result<(String, String), EventsError> {
        let req = parse_body(bytes)?;
        let event_type = self.event_types.get_event_type(&req.event).await?;
        let (content, channels, critical) = match &event_type {
            Some(t) => {
                let channels = match &req.channels {
                    None => t.templates.keys().copied().collect(),
                    Some(asked) => {
                        if let Some(c) = asked.iter().find(|c| !t.templates.contains_key(c)) {
                            return Err(bad(format!(
                                "event {:?} has no {} template: its channels are {}",
                                req.event,
                                c.as_str(),
                                channel_list(t)
                            )));
                        }
                        asked.clone()
                    }
                };
                (Content::Templates(t.templates.clone()), channels, t.critical)
            }
            None => match (&req.title, &req.body) {
                (None, None) => {
                    return Err(EventsError::UnknownEvent(format!(
                        "there is no event type {:?}: define it (PUT /event-types/{{name}}) or give \"title\"/\"body\"",
                        req.event
                    )));
                }
                (title, body) => (
                    Content::FreeForm { title: title.clone(), body: body.clone().or(title.clone()).unwrap_or_default() },
                    req.channels.clone().unwrap_or_else(|| vec![Channel::Push]),
                    false,
                ),
            },
        };
        let (id, transaction_id) = match &req.transaction_id {
            Some(tx) => (event_id(publisher, tx), tx.clone()),
            None => {
                let id = uuid::Uuid::new_v4().to_string();
                (id.clone(), id)
            }
        };
        let at = now();
        let later = req.send_at.filter(|t| *t > at);
        let event = Mailing {
            id: id.clone(),
            kind: MailingKind::Event,
            name: req.event.clone(),
            template: None,
            content,
            channels,
            audience: req.audience.clone(),
            data: req.data.clone(),
            critical,
            send_at: req.send_at.map(rfc3339),
            recurrence: None,
            status: MailingStatus::Scheduled,
            last_run: None,
            expanded: false,
            created_jobs: 0,
            done_jobs: 0,
            counts: Default::default(),
            created_at: rfc3339(at),
            updated_at: rfc3339(at),
            expires_at: epoch_secs(at) + HISTORY_TTL_SECS,
        };
        // The event is kept once; a retry (or a crash's) goes through the plan again, and each
        // job is done once (its record created once, its send claimed).
        let event = if self.mailings.create_mailing(&event).await? {
            event
        } else {
            tracing::info!(event_id = id, "seen before: only what never started is done");
            match self.mailings.get_mailing(&id).await? {
                Some(kept) => kept,
                None => return Err(EventsError::Store(StoreError::ConditionFailed(format!("event {id} is being written")))),
            }
        };
        let planner = self.planner(token);
        let fire_at =
            event.send_at.as_deref().and_then(|s| time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).ok());
        match (&event.audience, later.or(fire_at.filter(|t| *t > at))) {
            (_, Some(when)) => {
                let fire = PlatformMessage::Fire { mailing_id: id.clone(), at: Some(rfc3339(when)) };
                self.scheduler.schedule_at(&fire_schedule(&id), when, &fire).await.map_err(PlanError::from)?;
            }
            (MailingAudience::Users(users), None) => {
                let run = run_key(fire_at.unwrap_or_else(|| {
                    time::OffsetDateTime::parse(&event.created_at, &time::format_description::well_known::Rfc3339).unwrap_or(at)
                }));
                planner.run_inline(&event, &run, users).await?;
            }
            (_, None) => planner.fire(&id, None).await?,
        }
        Ok((id, transaction_id))
    }
}

fn channel_list(t: &EventType) -> String {
    t.templates.keys().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
}

#[tracing::instrument(skip_all)]
pub async fn handle(deps: &EventsDeps<'_>, request: Request) -> Result<Response<Body>, std::convert::Infallible> {
    Ok(match deps.serve(&request).await {
        Ok((status, body)) => {
            tracing::info!(status, event_id = body["id"].as_str(), "served");
            herald::apigw::http_json(status, Some(body))
        }
        Err(e) => {
            match &e {
                EventsError::Store(source) => tracing::error!(status = e.status(), error = %e, source = %source, "failed"),
                EventsError::Plan(source) => tracing::error!(status = e.status(), error = %e, source = %source, "failed"),
                _ => tracing::info!(status = e.status(), error = %e, "refused"),
            }
            herald::apigw::http_error(e.status(), e.code(), &e.to_string())
        }
    })
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use herald::auth::{AuthConfig, issue_hs256};
    use herald::domain::UserProfile;
    use herald::domain::{EventType, Template};
    use herald::platform::channels::Outgoing;
    use herald::platform::channels::SendError;
    use herald::store::memory::MemoryStore;
    use herald::store::{TemplateStore, UserStore};

    use super::*;

    const SECRET: &str = "unit-secret";

    fn publisher() -> String {
        let claims = json!({"sub": "svc", "scope": "notify:publish", "exp": epoch_secs(now()) + 3600});
        issue_hs256(SECRET, &claims).unwrap()
    }

    /// Keeps what it is given; fails when told to.
    #[derive(Default)]
    struct Recording {
        sent: Mutex<Vec<Outgoing>>,
        fail: bool,
    }

    #[async_trait::async_trait]
    impl ChannelSender for Recording {
        async fn send(&self, message: &Outgoing) -> Result<(), SendError> {
            if self.fail {
                return Err(SendError::Failed("the provider said no".into()));
            }
            self.sent.lock().unwrap().push(message.clone());
            Ok(())
        }
    }

    async fn post(store: &MemoryStore, push: &Recording, email: Option<&Recording>, body: Value) -> (u16, Value) {
        let verifier = Verifier::new(&AuthConfig::hs256(SECRET)).unwrap();
        let kept = herald::platform::schedule::Recorded::default();
        let deps = EventsDeps {
            verifier: &verifier,
            templates: store,
            users: store,
            event_types: store,
            notifications: store,
            subscriptions: store,
            mailings: store,
            push,
            email: email.map(|e| e as &dyn ChannelSender),
            sms: None,
            queue: &kept,
            scheduler: &kept,
            user_info: None,
        };
        let request = http::Request::builder()
            .method("POST")
            .uri("https://api.example/events")
            .header("authorization", format!("Bearer {}", publisher()))
            .body(Body::Text(body.to_string()))
            .unwrap();
        let response = handle(&deps, request).await.unwrap();
        (response.status().as_u16(), serde_json::from_slice(response.body().as_ref()).unwrap())
    }

    async fn statuses(store: &MemoryStore, event_id: &str) -> Vec<(Channel, NotificationStatus, Option<String>)> {
        let filter = herald::domain::NotificationFilter { event_id: Some(event_id.into()), ..Default::default() };
        let mut out: Vec<_> =
            store.list_notifications(&filter, None, 50).await.unwrap().items.into_iter().map(|n| (n.channel, n.status, n.reason)).collect();
        out.sort_by_key(|(c, _, _)| *c);
        out
    }

    #[tokio::test]
    async fn render_and_send_failures_are_recorded_with_their_reason() {
        let store = MemoryStore::new();
        let at = rfc3339(now());
        for (id, channel, body) in [("t1", Channel::Email, "{{ data.film }}"), ("t2", Channel::Push, "hi"), ("t3", Channel::Sms, "sms")] {
            let t = Template {
                id: id.into(),
                name: format!("n-{id}"),
                channel,
                locale: None,
                subject: None,
                body: body.into(),
                html: None,
                version: 1,
                created_at: at.clone(),
                updated_at: at.clone(),
            };
            store.create_template(&t).await.unwrap();
        }
        let templates = [(Channel::Email, "n-t1".to_string()), (Channel::Push, "n-t2".to_string()), (Channel::Sms, "n-t3".to_string())];
        let t =
            EventType { name: "e".into(), templates: templates.into(), critical: false, created_at: at.clone(), updated_at: at.clone() };
        store.put_event_type(&t).await.unwrap();
        let mut p = UserProfile::new("u", &at);
        p.email = Some("u@example.com".into());
        p.phone = Some("+15550100".into());
        p.version = 1;
        store.put_user(&p, None).await.unwrap();

        // The data lacks the email's variable; the push's provider fails; SMS has no sender here.
        let push = Recording { fail: true, ..Default::default() };
        let email = Recording::default();
        let (status, reply) = post(&store, &push, Some(&email), json!({"event":"e","user_id":"u"})).await;
        assert_eq!(status, 202, "{reply}");
        let got = statuses(&store, reply["id"].as_str().unwrap()).await;
        assert_eq!(
            got.iter().map(|(c, s, _)| (*c, *s)).collect::<Vec<_>>(),
            [
                (Channel::Email, NotificationStatus::Failed),
                (Channel::Sms, NotificationStatus::Failed),
                (Channel::Push, NotificationStatus::Failed),
            ]
        );
        let reasons: Vec<&str> = got.iter().map(|(_, _, r)| r.as_deref().unwrap_or_default()).collect();
        assert!(reasons[0].contains("data.film"), "{reasons:?}");
        assert!(reasons[1].contains("not configured"), "{reasons:?}");
        assert!(reasons[2].contains("said no"), "{reasons:?}");
        assert!(email.sent.lock().unwrap().is_empty());

        // With the data, the email goes, to the profile's address, under the record's id.
        let push = Recording::default();
        let (_, reply) =
            post(&store, &push, Some(&email), json!({"event":"e","user_id":"u","data":{"film":"F"},"channels":["email","push"]})).await;
        let sent = email.sent.lock().unwrap().clone();
        assert_eq!((sent.len(), sent[0].to.as_str(), sent[0].body.as_str()), (1, "u@example.com", "F"));
        let id = reply["id"].as_str().unwrap();
        assert_eq!(sent[0].notification_id, notification_id(id, "u", Channel::Email));
        assert_eq!(push.sent.lock().unwrap()[0].notification_id, notification_id(id, "u", Channel::Push));
    }

    #[test]
    fn bodies_are_validated() {
        let ok = parse_body(br#"{"event":"film.added","users":[1,"2",1],"data":{"film":"X"},"channels":["email","push"]}"#).unwrap();
        assert_eq!(ok.audience, MailingAudience::Users(vec!["1".into(), "2".into()]));
        assert_eq!(ok.channels, Some(vec![Channel::Email, Channel::Push]));
        for body in [
            &b"{"[..],
            br#"[]"#,
            br#"{"user_id":"1"}"#,
            br#"{"event":"e"}"#,
            br#"{"event":"e","user_id":"1","users":["2"]}"#,
            br#"{"event":"e","users":[]}"#,
            br#"{"event":"e","user_id":"1","data":[1]}"#,
            br#"{"event":"e","user_id":"1","channels":["fax"]}"#,
            br#"{"event":"e","user_id":"1","channels":[]}"#,
            br#"{"event":"e","user_id":"1","transaction_id":""}"#,
            br#"{"event":"e","user_id":"1","titel":"typo"}"#,
            br#"{"event":"e","user_id":"1","send_at":"tomorrow"}"#,
            br#"{"event":"e","user_id":"1","send_at":"2999-01-01T00:00:00Z"}"#,
            br#"{"event":"e","user_id":"1","event_name":"news"}"#,
            br#"{"event":"e","event_name":7}"#,
            br#"{"event":"","user_id":"1"}"#,
        ] {
            assert_eq!(parse_body(body).unwrap_err().status(), 400, "{}", String::from_utf8_lossy(body));
        }
        assert!(parse_body(br#"{"event":"e","user_id":"1","titel":"typo"}"#).unwrap_err().to_string().contains("\"titel\""));
        assert!(parse_body(br#"{"event":"e","user_id":"1","send_at":"soon"}"#).unwrap_err().to_string().contains("\"send_at\""));
        let later = parse_body(br#"{"event":"e","event_name":"news","send_at":"2026-12-01T10:00:00+01:00"}"#).unwrap();
        assert_eq!(later.audience, MailingAudience::EventName("news".into()));
        assert_eq!(later.send_at.map(rfc3339).as_deref(), Some("2026-12-01T09:00:00Z"));
    }

    #[test]
    fn ids_are_per_publisher_and_unambiguous() {
        assert_eq!(event_id("svc", "t1"), event_id("svc", "t1"));
        assert_ne!(event_id("svc", "t1"), event_id("other", "t1"));
        assert_ne!(event_id("a:b", "c"), event_id("a", "b:c"));
        assert_ne!(notification_id("e", "u", Channel::Email), notification_id("e", "u", Channel::Push));
        assert_ne!(notification_id("e|1:u", "v", Channel::Push), notification_id("e", "u|1:v", Channel::Push));
    }
}
