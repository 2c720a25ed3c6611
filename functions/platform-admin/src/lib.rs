//! The notification platform's admin HTTP API (CONTRACT §9): templates, users, event types.
//!
//! `POST /templates`, `GET /templates`, `GET|PUT|DELETE /templates/{id}`,
//! `POST /templates/{id}/preview`, `POST /templates/preview`; `GET|PUT /users/{id}` ([`users`]);
//! `PUT /event-types/{name}`, `GET /event-types` ([`event_types`]); `GET /notifications` ([`history`]);
//! `POST|GET /mailings`, `GET /mailings/{id}`, `POST /mailings/{id}/cancel` ([`mailings`]). Every call needs an admin
//! token. Errors are `{"error":{"code","message"}}` (CONTRACT §4), mapped in one place
//! ([`AdminError`]).

mod event_types;
mod history;
mod mailings;
mod users;

use herald::auth::{AuthError, Verifier};
use herald::domain::{Channel, Template, canonical_locale, check_name, now, rfc3339};
use herald::platform::templates::{self, Sources, TemplateError};
use herald::protocol::MAX_MESSAGE_BYTES;
use herald::store::{EventTypeStore, MailingStore, NotificationStore, StoreError, TemplateStore, TemplateWrite, UserStore};
use lambda_http::{Body, Request, Response};
use serde_json::{Map, Value, json};

/// What the handler needs: the token verifier and the platform's admin tables, nothing else.
pub struct AdminDeps<'a> {
    pub verifier: &'a Verifier,
    pub templates: &'a dyn TemplateStore,
    pub users: &'a dyn UserStore,
    pub event_types: &'a dyn EventTypeStore,
    pub notifications: &'a dyn NotificationStore,
    pub mailings: &'a dyn MailingStore,
    /// The platform queue (a mailing sent now is a fire on it) and the scheduler (later ones).
    pub queue: &'a dyn herald::queue::Queue,
    pub scheduler: &'a dyn herald::platform::schedule::Scheduler,
}

/// Every refusal, mapped to its status and error body in one place.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("{0}")]
    BadRequest(String),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("{0}")]
    NotFound(String),
    #[error("{method} is not allowed on {path}")]
    MethodNotAllowed { method: String, path: String },
    #[error("a template named {name:?} for {channel} and {locale} exists already (id {id})")]
    SlotTaken { name: String, channel: &'static str, locale: String, id: String },
    #[error("template {id} is at version {current}, not {expected}: reload it and apply the change again")]
    VersionConflict { id: String, current: u32, expected: u32 },
    #[error("the template is too large: {0}")]
    TooLarge(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("the store is unavailable")]
    Store(#[source] StoreError),
}

impl AdminError {
    fn status(&self) -> u16 {
        match self {
            Self::BadRequest(_) | Self::Template(_) | Self::TooLarge(_) => 400,
            Self::Auth(e) => e.status(),
            Self::NotFound(_) => 404,
            Self::MethodNotAllowed { .. } => 405,
            Self::SlotTaken { .. } | Self::VersionConflict { .. } | Self::Conflict(_) => 409,
            Self::Store(_) | Self::Unavailable(_) => 503,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Self::BadRequest(_) | Self::TooLarge(_) => "bad_request",
            Self::Auth(e) => e.code(),
            Self::Template(e) => e.code(),
            Self::NotFound(_) => "not_found",
            Self::MethodNotAllowed { .. } => "method_not_allowed",
            Self::SlotTaken { .. } => "template_exists",
            Self::VersionConflict { .. } => "version_conflict",
            Self::Conflict(_) => "nothing_to_cancel",
            Self::Unavailable(_) => "unavailable",
            Self::Store(_) => "store_unavailable",
        }
    }
}

impl From<StoreError> for AdminError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::ItemTooLarge(m) => Self::TooLarge(m),
            other => Self::Store(other),
        }
    }
}

fn bad(message: impl Into<String>) -> AdminError {
    AdminError::BadRequest(message.into())
}

/// The collections this function serves; a path's first one starts its route.
const COLLECTIONS: &[&str] = &["templates", "users", "event-types", "notifications", "mailings"];

/// A path segment's text (`%20` is a space): user ids and event names may hold any character.
fn path_segment(what: &'static str, segment: &str) -> Result<String, AdminError> {
    let text = percent_encoding::percent_decode_str(segment)
        .decode_utf8()
        .map_err(|_| bad(format!("the {what} in the path is not UTF-8 once percent-decoded")))?;
    check_name(what, &text).map_err(|e| bad(e.to_string()))?;
    Ok(text.into_owned())
}

/// The fields of a template's body (`POST /templates`, `PUT /templates/{id}`).
const TEMPLATE_FIELDS: &[&str] = &["name", "channel", "locale", "subject", "body", "html"];
/// A preview's own fields.
const PREVIEW_FIELDS: &[&str] = &["data", "user"];
/// `PUT`'s own field: the version the change was made to (optional: a conflict is then `409`).
const VERSION_FIELD: &str = "version";

/// A JSON object body whose every field is one of `allowed`.
fn object(bytes: &[u8], allowed: &[&[&str]]) -> Result<Map<String, Value>, AdminError> {
    if bytes.len() > MAX_MESSAGE_BYTES {
        return Err(bad(format!("the body is over {} KB", MAX_MESSAGE_BYTES / 1024)));
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| bad(format!("the body is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else { return Err(bad("the body must be a JSON object")) };
    let known = |k: &str| allowed.iter().any(|set| set.contains(&k));
    let mut unknown: Vec<&str> = obj.keys().map(String::as_str).filter(|k| !known(k)).collect();
    if !unknown.is_empty() {
        unknown.sort();
        let fields: Vec<&str> = allowed.iter().flat_map(|s| s.iter().copied()).collect();
        return Err(bad(format!("unknown field(s) {}: the fields are {}", quoted(&unknown), fields.join(", "))));
    }
    Ok(obj)
}

fn quoted(names: &[&str]) -> String {
    names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ")
}

/// A field that may be absent, `null` (`Some(None)`) or a string.
fn opt_text(obj: &Map<String, Value>, field: &str) -> Result<Option<Option<String>>, AdminError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) => Ok(Some(Some(s.clone()))),
        Some(_) => Err(bad(format!("\"{field}\" must be a string"))),
    }
}

fn required_text(obj: &Map<String, Value>, field: &str) -> Result<String, AdminError> {
    opt_text(obj, field)?.flatten().ok_or_else(|| bad(format!("\"{field}\" is required (a string)")))
}

fn channel_of(text: &str) -> Result<Channel, AdminError> {
    Channel::parse(text).ok_or_else(|| bad(format!("unknown channel {text:?}: the channels are email, sms and push")))
}

fn locale_of(text: Option<String>) -> Result<Option<String>, AdminError> {
    match text.as_deref().map(str::trim) {
        None | Some("") => Ok(None),
        Some(l) => canonical_locale(l).map(Some).map_err(|e| bad(e.to_string())),
    }
}

fn check_template_name(name: &str) -> Result<(), AdminError> {
    check_name("name", name).map_err(|e| bad(e.to_string()))
}

/// A template from a create body (`id`, times and version left for the caller).
fn template_from(obj: &Map<String, Value>) -> Result<Template, AdminError> {
    let name = required_text(obj, "name")?;
    check_template_name(&name)?;
    let channel = channel_of(&required_text(obj, "channel")?)?;
    let template = Template {
        id: String::new(),
        name,
        channel,
        locale: locale_of(opt_text(obj, "locale")?.flatten())?,
        subject: opt_text(obj, "subject")?.flatten(),
        body: required_text(obj, "body")?,
        html: opt_text(obj, "html")?.flatten(),
        version: 1,
        created_at: String::new(),
        updated_at: String::new(),
    };
    Ok(template)
}

/// A template as the API shows it, with the variables it uses (for the admin page).
fn template_json(t: &Template) -> Value {
    let variables = templates::check(&Sources::of(t)).unwrap_or_default();
    json!({
        "id": t.id,
        "name": t.name,
        "channel": t.channel,
        "locale": t.locale,
        "subject": t.subject,
        "body": t.body,
        "html": t.html,
        "version": t.version,
        "variables": variables,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
    })
}

/// A preview's `data` or `user`: an object, `{}` when absent.
fn context_object(obj: &Map<String, Value>, field: &str) -> Result<Value, AdminError> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(json!({})),
        Some(v @ Value::Object(_)) => Ok(v.clone()),
        Some(_) => Err(bad(format!("\"{field}\" must be a JSON object"))),
    }
}

fn preview(t: &Template, obj: &Map<String, Value>) -> Result<Value, AdminError> {
    let data = context_object(obj, "data")?;
    let user = context_object(obj, "user")?;
    let r = templates::render(&Sources::of(t), &user, &data)?;
    Ok(json!({ "subject": r.subject, "body": r.body, "html": r.html }))
}

fn slot_taken(t: &Template, holder: Option<&Template>) -> AdminError {
    AdminError::SlotTaken {
        name: t.name.clone(),
        channel: t.channel.as_str(),
        locale: t.locale.clone().map(|l| format!("locale {l}")).unwrap_or_else(|| "no locale".into()),
        id: holder.map(|h| h.id.clone()).unwrap_or_default(),
    }
}

impl AdminDeps<'_> {
    async fn holder_of(&self, t: &Template) -> Result<Option<Template>, AdminError> {
        Ok(self.templates.templates_named(&t.name, t.channel).await?.into_iter().find(|h| h.same_slot(t) && h.id != t.id))
    }

    async fn existing(&self, id: &str) -> Result<Template, AdminError> {
        self.templates.get_template(id).await?.ok_or_else(|| AdminError::NotFound(format!("no template {id}")))
    }

    async fn create(&self, bytes: &[u8]) -> Result<Value, AdminError> {
        let obj = object(bytes, &[TEMPLATE_FIELDS])?;
        let mut t = template_from(&obj)?;
        templates::check(&Sources::of(&t))?;
        let at = rfc3339(now());
        t.id = uuid::Uuid::new_v4().to_string();
        t.created_at = at.clone();
        t.updated_at = at;
        match self.templates.create_template(&t).await? {
            TemplateWrite::Done => Ok(template_json(&t)),
            TemplateWrite::SlotTaken | TemplateWrite::Stale => Err(slot_taken(&t, self.holder_of(&t).await?.as_ref())),
        }
    }

    async fn update(&self, id: &str, bytes: &[u8]) -> Result<Value, AdminError> {
        let obj = object(bytes, &[TEMPLATE_FIELDS, &[VERSION_FIELD]])?;
        let expected = match obj.get(VERSION_FIELD) {
            None | Some(Value::Null) => None,
            Some(v) => Some(v.as_u64().and_then(|v| u32::try_from(v).ok()).ok_or_else(|| bad("\"version\" must be a positive integer"))?),
        };
        // Without an expected version, a save that loses a race is applied again to the winner's.
        for _ in 0..3 {
            let current = self.existing(id).await?;
            if let Some(expected) = expected
                && expected != current.version
            {
                return Err(AdminError::VersionConflict { id: id.to_string(), current: current.version, expected });
            }
            let mut next = current.clone();
            if let Some(name) = opt_text(&obj, "name")? {
                next.name = name.ok_or_else(|| bad("\"name\" must be a string"))?;
                check_template_name(&next.name)?;
            }
            if let Some(channel) = opt_text(&obj, "channel")? {
                next.channel = channel_of(&channel.ok_or_else(|| bad("\"channel\" must be a string"))?)?;
            }
            if let Some(locale) = opt_text(&obj, "locale")? {
                next.locale = locale_of(locale)?;
            }
            if let Some(subject) = opt_text(&obj, "subject")? {
                next.subject = subject;
            }
            if let Some(body) = opt_text(&obj, "body")? {
                next.body = body.ok_or_else(|| bad("\"body\" must be a string"))?;
            }
            if let Some(html) = opt_text(&obj, "html")? {
                next.html = html;
            }
            templates::check(&Sources::of(&next))?;
            next.version = current.version + 1;
            next.updated_at = rfc3339(now());
            match self.templates.update_template(&next, current.version).await? {
                TemplateWrite::Done => return Ok(template_json(&next)),
                TemplateWrite::SlotTaken => return Err(slot_taken(&next, self.holder_of(&next).await?.as_ref())),
                TemplateWrite::Stale => match expected {
                    Some(expected) => {
                        let now_at = self.existing(id).await?.version;
                        return Err(AdminError::VersionConflict { id: id.to_string(), current: now_at, expected });
                    }
                    None => continue,
                },
            }
        }
        Err(AdminError::Store(StoreError::ConditionFailed(format!("template {id} kept changing while being saved"))))
    }

    async fn route(&self, method: &http::Method, path: &str, query: Option<&str>, body: &[u8]) -> Result<(u16, Option<Value>), AdminError> {
        let segments: Vec<&str> = path.split('/').filter(|s| !s.is_empty()).collect();
        // Behind a custom domain's mapping key the path has a prefix: the routes start at a collection.
        let Some(start) = segments.iter().position(|s| COLLECTIONS.contains(s)) else {
            return Err(AdminError::NotFound(format!("no route for {path}")));
        };
        let not_allowed = || Err(AdminError::MethodNotAllowed { method: method.to_string(), path: path.to_string() });
        match segments[start] {
            "users" => return self.users_route(method, path, &segments[start + 1..], body).await,
            "event-types" => return self.event_types_route(method, path, &segments[start + 1..], body).await,
            "notifications" => return self.history_route(method, path, &segments[start + 1..], query).await,
            "mailings" => return self.mailings_route(method, path, &segments[start + 1..], query, body).await,
            _ => {}
        }
        match (&segments[start + 1..], method.as_str()) {
            ([], "POST") => Ok((201, Some(self.create(body).await?))),
            ([], "GET") => {
                let all = self.templates.list_templates().await?;
                Ok((200, Some(json!({ "items": all.iter().map(template_json).collect::<Vec<_>>() }))))
            }
            ([], _) => not_allowed(),
            (["preview"], "POST") => {
                let obj = object(body, &[TEMPLATE_FIELDS, PREVIEW_FIELDS])?;
                let t = template_from(&obj)?;
                templates::check(&Sources::of(&t))?;
                Ok((200, Some(preview(&t, &obj)?)))
            }
            ([id], "GET") => Ok((200, Some(template_json(&self.existing(id).await?)))),
            ([id], "PUT") => Ok((200, Some(self.update(id, body).await?))),
            ([id], "DELETE") => {
                if self.templates.delete_template(id).await? {
                    Ok((204, None))
                } else {
                    Err(AdminError::NotFound(format!("no template {id}")))
                }
            }
            ([_], _) => not_allowed(),
            ([id, "preview"], "POST") => {
                let obj = object(body, &[PREVIEW_FIELDS])?;
                let t = self.existing(id).await?;
                Ok((200, Some(preview(&t, &obj)?)))
            }
            ([_, "preview"], _) => not_allowed(),
            _ => Err(AdminError::NotFound(format!("no route for {path}"))),
        }
    }

    async fn serve(&self, request: &Request) -> Result<(u16, Option<Value>), AdminError> {
        let token = herald::auth::request_bearer(request.headers())?;
        // The token is checked before anything else, the body included.
        self.verifier.verify(token).await?.require_admin()?;
        self.route(request.method(), request.uri().path(), request.uri().query(), request.body().as_ref()).await
    }
}

#[tracing::instrument(skip_all, fields(method = %request.method(), path = request.uri().path()))]
pub async fn handle(deps: &AdminDeps<'_>, request: Request) -> Result<Response<Body>, std::convert::Infallible> {
    Ok(match deps.serve(&request).await {
        Ok((status, body)) => {
            tracing::info!(status, "served");
            herald::apigw::http_json(status, body)
        }
        Err(e) => {
            match &e {
                AdminError::Store(source) => tracing::error!(status = e.status(), error = %e, source = %source, "failed"),
                _ => tracing::info!(status = e.status(), error = %e, "refused"),
            }
            herald::apigw::http_error(e.status(), e.code(), &e.to_string())
        }
    })
}

#[cfg(test)]
mod tests;
