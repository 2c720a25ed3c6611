//! `POST /mailings`, `GET /mailings`, `GET /mailings/{id}`, `POST /mailings/{id}/cancel`
//! (CONTRACT §9, "Mailings").
//!
//! A mailing is validated whole before anything is written: its template must exist on each of
//! its channels (in some locale), its audience is exactly one of `users`, `event_name` and
//! `all: true`, its `recurrence` a 5-field cron ([`herald::platform::cron`], which states the DST
//! rule) in an IANA time zone, one EventBridge Scheduler can run too (not both day fields
//! restricted). Then it is stored and handed to the scheduler: a recurrence as a cron schedule, a
//! future `send_at` as a one-time fire, otherwise a fire on the platform queue now. The worker
//! does the rest (`platform-worker`); its counts and status are read back here.
//!
//! Cancelling stops what has not been sent: the schedules are removed, jobs not yet run are
//! recorded `skipped`, held ones too. A mailing already `sent`, `cancelled` or `failed` has
//! nothing left to cancel: `409 nothing_to_cancel`, as `DELETE /events/{tx}` answers.

use std::collections::BTreeMap;

use herald::domain::{
    Channel, Content, Mailing, MailingAudience, MailingKind, MailingStatus, NotificationFilter, NotificationStatus, canonical_timezone,
    check_name, count_key, now, parse_send_at, rfc3339, user_id_from_json,
};
use herald::platform::cron::Cron;
use herald::platform::schedule::{PlatformMessage, fire_schedule, recurrence_schedule};
use serde_json::{Map, Value, json};

use super::{AdminDeps, AdminError, bad, object};

const MAILING_FIELDS: &[&str] = &["name", "template", "channels", "audience", "data", "send_at", "recurrence"];
/// The most users one mailing names (`audience.users`); larger audiences are `all` or an event's.
pub const MAX_AUDIENCE_USERS: usize = 10_000;
const DEFAULT_LIMIT: usize = 50;
const MAX_LIMIT: usize = 200;
/// How many next runs are shown.
const NEXT_RUNS: usize = 5;

fn channels_field(obj: &Map<String, Value>) -> Result<Vec<Channel>, AdminError> {
    let Some(Value::Array(list)) = obj.get("channels") else {
        return Err(bad("\"channels\" is required: a non-empty array such as [\"email\",\"push\"]"));
    };
    if list.is_empty() {
        return Err(bad("\"channels\" must name at least one channel (email, sms or push)"));
    }
    Channel::parse_list(list).map_err(bad)
}

fn audience_field(obj: &Map<String, Value>) -> Result<MailingAudience, AdminError> {
    let example = "{\"users\":[…]}, {\"event_name\":\"…\"} or {\"all\":true}";
    let Some(Value::Object(a)) = obj.get("audience") else { return Err(bad(format!("\"audience\" is required: {example}"))) };
    if a.len() != 1 {
        return Err(bad(format!("\"audience\" must be exactly one of {example}")));
    }
    match a.iter().next() {
        Some((k, Value::Array(list))) if k == "users" => {
            if list.is_empty() || list.len() > MAX_AUDIENCE_USERS {
                return Err(bad(format!("\"audience.users\" must name 1 to {MAX_AUDIENCE_USERS} users")));
            }
            let mut out: Vec<String> = Vec::with_capacity(list.len());
            let mut seen = std::collections::HashSet::new();
            for v in list {
                let id = user_id_from_json("audience.users[]", v).map_err(|e| bad(e.to_string()))?;
                if seen.insert(id.clone()) {
                    out.push(id);
                }
            }
            Ok(MailingAudience::Users(out))
        }
        Some((k, Value::String(name))) if k == "event_name" => {
            check_name("audience.event_name", name).map_err(|e| bad(e.to_string()))?;
            Ok(MailingAudience::EventName(name.clone()))
        }
        Some((k, Value::Bool(true))) if k == "all" => Ok(MailingAudience::All),
        Some((k, _)) if ["users", "event_name", "all"].contains(&k.as_str()) => {
            Err(bad(format!("\"audience.{k}\" has the wrong type: the audience is {example}")))
        }
        Some((k, _)) => Err(bad(format!("\"audience.{k}\" is not an audience: the audience is {example}"))),
        None => Err(bad(format!("\"audience\" must be exactly one of {example}"))),
    }
}

/// A recurrence: its cron (parsed, runnable by EventBridge Scheduler, firing at least once) and
/// its canonical time zone.
fn recurrence_field(obj: &Map<String, Value>) -> Result<Option<(herald::domain::Recurrence, Cron)>, AdminError> {
    let r = match obj.get("recurrence") {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::Object(r)) => r,
        Some(_) => return Err(bad("\"recurrence\" must be an object {\"cron\":\"<5-field cron>\",\"timezone\":\"<IANA zone>\"}")),
    };
    if let Some(k) = r.keys().find(|k| !["cron", "timezone"].contains(&k.as_str())) {
        return Err(bad(format!("\"recurrence.{k}\" is not a field: the fields are cron and timezone")));
    }
    let Some(Value::String(text)) = r.get("cron") else {
        return Err(bad("\"recurrence.cron\" is required (a 5-field cron such as \"0 9 * * MON\")"));
    };
    let cron = Cron::parse(text).map_err(|e| bad(format!("\"recurrence.cron\": {e}")))?;
    cron.to_eventbridge().map_err(|e| bad(format!("\"recurrence.cron\": {e}")))?;
    let Some(Value::String(zone)) = r.get("timezone") else {
        return Err(bad("\"recurrence.timezone\" is required (an IANA zone such as \"Europe/Berlin\")"));
    };
    let timezone = canonical_timezone(zone).map_err(|e| bad(format!("\"recurrence.timezone\": {e}")))?;
    let tz = jiff::tz::TimeZone::get(&timezone).map_err(|e| bad(format!("\"recurrence.timezone\": {e}")))?;
    if cron.next_after(&tz, jiff::Timestamp::now()).is_none() {
        return Err(bad(format!("\"recurrence.cron\": {text:?} never fires (no such day in the next 8 years)")));
    }
    Ok(Some((herald::domain::Recurrence { cron: text.split_whitespace().collect::<Vec<_>>().join(" "), timezone }, cron)))
}

/// `POST /mailings/next-runs` `{"recurrence":{"cron","timezone"}}` → `{"next_runs":[…5]}`: when a
/// recurring mailing would run, before it is saved (the admin page's compose screen), with the
/// checks and the errors of a save.
fn next_runs_preview(body: &[u8]) -> Result<Value, AdminError> {
    let obj = object(body, &[&["recurrence"]])?;
    let Some((r, cron)) = recurrence_field(&obj)? else {
        return Err(bad("\"recurrence\" is required: {\"cron\":\"<5-field cron>\",\"timezone\":\"<IANA zone>\"}"));
    };
    let tz = jiff::tz::TimeZone::get(&r.timezone).map_err(|e| bad(format!("\"recurrence.timezone\": {e}")))?;
    let runs: Vec<String> = cron.next_runs(&tz, jiff::Timestamp::now(), NEXT_RUNS).iter().map(|t| t.to_string()).collect();
    Ok(json!({ "next_runs": runs }))
}

/// The next runs of a mailing: its recurrence's next five, or its `send_at` while it waits.
pub fn next_runs(m: &Mailing) -> Vec<String> {
    if matches!(m.status, MailingStatus::Cancelled | MailingStatus::Failed) {
        return Vec::new();
    }
    if let Some(r) = &m.recurrence {
        let (Ok(cron), Ok(tz)) = (Cron::parse(&r.cron), jiff::tz::TimeZone::get(&r.timezone)) else { return Vec::new() };
        return cron.next_runs(&tz, jiff::Timestamp::now(), NEXT_RUNS).iter().map(|t| t.to_string()).collect();
    }
    match (&m.send_at, m.status) {
        (Some(at), MailingStatus::Scheduled) => {
            let future = time::OffsetDateTime::parse(at, &time::format_description::well_known::Rfc3339).is_ok_and(|t| t > now());
            if future { vec![at.clone()] } else { Vec::new() }
        }
        _ => Vec::new(),
    }
}

fn audience_json(a: &MailingAudience) -> Value {
    match a {
        MailingAudience::Users(u) => json!({ "users": u }),
        MailingAudience::EventName(e) => json!({ "event_name": e }),
        MailingAudience::All => json!({ "all": true }),
    }
}

/// A mailing as the API shows it: counts by channel then status.
pub fn mailing_json(m: &Mailing) -> Value {
    let mut counts: BTreeMap<String, BTreeMap<String, i64>> = BTreeMap::new();
    for (k, v) in &m.counts {
        if let Some((channel, status)) = k.split_once('.')
            && *v != 0
        {
            counts.entry(channel.to_string()).or_default().insert(status.to_string(), *v);
        }
    }
    json!({
        "id": m.id,
        "name": m.name,
        "template": m.template,
        "channels": m.channels,
        "audience": audience_json(&m.audience),
        "data": m.data,
        "send_at": m.send_at,
        "recurrence": m.recurrence,
        "status": m.status,
        "counts": counts,
        "jobs": { "planned": m.created_jobs, "recorded": m.done_jobs },
        "next_runs": next_runs(m),
        "created_at": m.created_at,
        "updated_at": m.updated_at,
    })
}

impl AdminDeps<'_> {
    pub(crate) async fn mailings_route(
        &self,
        method: &http::Method,
        path: &str,
        rest: &[&str],
        query: Option<&str>,
        body: &[u8],
    ) -> Result<(u16, Option<Value>), AdminError> {
        let not_allowed = || Err(AdminError::MethodNotAllowed { method: method.to_string(), path: path.to_string() });
        match (rest, method.as_str()) {
            ([], "POST") => Ok((201, Some(self.create_mailing(body).await?))),
            ([], "GET") => Ok((200, Some(self.list_mailings(query).await?))),
            ([], _) => not_allowed(),
            (["next-runs"], "POST") => Ok((200, Some(next_runs_preview(body)?))),
            ([id], "GET") => Ok((200, Some(mailing_json(&self.mailing(id).await?)))),
            ([_], _) => not_allowed(),
            ([id, "cancel"], "POST") => Ok((200, Some(self.cancel_mailing(id).await?))),
            ([_, "cancel"], _) => not_allowed(),
            _ => Err(AdminError::NotFound(format!("no route for {path}"))),
        }
    }

    async fn mailing(&self, id: &str) -> Result<Mailing, AdminError> {
        self.mailings
            .get_mailing(id)
            .await?
            .filter(|m| m.kind == MailingKind::Mailing)
            .ok_or_else(|| AdminError::NotFound(format!("no mailing {id}")))
    }

    async fn list_mailings(&self, query: Option<&str>) -> Result<Value, AdminError> {
        let (mut limit, mut cursor) = (DEFAULT_LIMIT, None);
        for (k, v) in super::history::query_pairs(query.unwrap_or_default())? {
            match k.as_str() {
                "limit" => {
                    limit = v
                        .parse()
                        .ok()
                        .filter(|l| (1..=MAX_LIMIT).contains(l))
                        .ok_or_else(|| bad(format!("\"limit\" must be 1 to {MAX_LIMIT}")))?
                }
                "cursor" => cursor = Some(v),
                other => return Err(bad(format!("unknown parameter {other:?}: the parameters are limit and cursor"))),
            }
        }
        let page = self.mailings.list_mailings(cursor.as_deref(), limit).await.map_err(|e| match e {
            herald::store::StoreError::Invalid(m) => bad(format!("\"cursor\": {m}")),
            other => other.into(),
        })?;
        let mut out = json!({ "items": page.items.iter().map(mailing_json).collect::<Vec<_>>() });
        if let Some(next) = page.next {
            out["cursor"] = json!(next);
        }
        Ok(out)
    }

    async fn create_mailing(&self, body: &[u8]) -> Result<Value, AdminError> {
        let obj = object(body, &[MAILING_FIELDS])?;
        let Some(Value::String(name)) = obj.get("name") else { return Err(bad("\"name\" is required (a string)")) };
        check_name("name", name).map_err(|e| bad(e.to_string()))?;
        let Some(Value::String(template)) = obj.get("template") else { return Err(bad("\"template\" is required (a template name)")) };
        check_name("template", template).map_err(|e| bad(e.to_string()))?;
        let channels = channels_field(&obj)?;
        let audience = audience_field(&obj)?;
        let data = match obj.get("data") {
            None | Some(Value::Null) => json!({}),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(_) => return Err(bad("\"data\" must be a JSON object")),
        };
        let send_at = parse_send_at("send_at", obj.get("send_at").unwrap_or(&Value::Null)).map_err(bad)?;
        let recurrence = recurrence_field(&obj)?;
        if send_at.is_some() && recurrence.is_some() {
            return Err(bad("give \"send_at\" (once) or \"recurrence\" (repeatedly), not both"));
        }
        for c in &channels {
            if self.templates.templates_named(template, *c).await?.is_empty() {
                let c = c.as_str();
                return Err(bad(format!("\"template\": there is no {c} template named {template:?} (in any locale) for the channel {c}")));
            }
        }
        let at = now();
        let m = Mailing {
            id: uuid::Uuid::new_v4().to_string(),
            kind: MailingKind::Mailing,
            name: name.clone(),
            template: Some(template.clone()),
            content: Content::Templates(channels.iter().map(|c| (*c, template.clone())).collect()),
            channels,
            audience,
            data,
            critical: false,
            send_at: send_at.map(rfc3339),
            recurrence: recurrence.as_ref().map(|(r, _)| r.clone()),
            status: MailingStatus::Scheduled,
            last_run: None,
            expanded: false,
            created_jobs: 0,
            done_jobs: 0,
            counts: Default::default(),
            created_at: rfc3339(at),
            updated_at: rfc3339(at),
            expires_at: 0,
        };
        if !self.mailings.create_mailing(&m).await? {
            return Err(AdminError::Unavailable(format!("mailing {} could not be written", m.id)));
        }
        let scheduled = match (&m.recurrence, send_at.filter(|t| *t > at)) {
            (Some(r), _) => self.scheduler.schedule_cron(&recurrence_schedule(&m.id), &r.cron, &r.timezone, &m.id).await,
            (None, Some(when)) => {
                let fire = PlatformMessage::Fire { mailing_id: m.id.clone(), at: Some(rfc3339(when)) };
                self.scheduler.schedule_at(&fire_schedule(&m.id), when, &fire).await
            }
            (None, None) => self
                .queue
                .send(&PlatformMessage::Fire { mailing_id: m.id.clone(), at: None }.to_json())
                .await
                .map(|_| ())
                .map_err(|e| herald::platform::schedule::ScheduleError::Unavailable(e.to_string())),
        };
        if let Err(e) = scheduled {
            self.mailings.set_mailing_status(&m.id, &[MailingStatus::Scheduled], MailingStatus::Failed).await?;
            return Err(AdminError::Unavailable(format!("mailing {} could not be scheduled ({e}): it is marked failed", m.id)));
        }
        tracing::info!(mailing_id = m.id, "mailing created");
        Ok(mailing_json(&self.mailings.get_mailing(&m.id).await?.unwrap_or(m)))
    }

    async fn cancel_mailing(&self, id: &str) -> Result<Value, AdminError> {
        let m = self.mailing(id).await?;
        if !self.mailings.set_mailing_status(id, &[MailingStatus::Scheduled, MailingStatus::Sending], MailingStatus::Cancelled).await? {
            let now_m = self.mailing(id).await?;
            return Err(AdminError::Conflict(format!("mailing {id} is {}: nothing is left to cancel", now_m.status.as_str())));
        }
        for name in [fire_schedule(id), recurrence_schedule(id)] {
            self.scheduler.cancel(&name).await.map_err(|e| AdminError::Unavailable(format!("the schedule {name} stays: {e}")))?;
        }
        // What quiet hours hold is cancelled too (jobs not run yet see the status themselves).
        let filter = NotificationFilter { mailing_id: Some(id.to_string()), status: Some(NotificationStatus::Held), ..Default::default() };
        let mut cursor: Option<String> = None;
        loop {
            let page = self.notifications.list_notifications(&filter, cursor.as_deref(), 200).await?;
            for mut n in page.items {
                n.status = NotificationStatus::Skipped;
                n.reason = Some("the mailing was cancelled".into());
                n.held_until = None;
                n.updated_at = rfc3339(now());
                let moved = [(count_key(n.channel, NotificationStatus::Held), -1), (count_key(n.channel, NotificationStatus::Skipped), 1)];
                // Only if it is still held (its release may have just sent it), with its count.
                self.mailings.record_job(&n, NotificationStatus::Held, id, "", false, &moved).await?;
            }
            match page.next {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        tracing::info!(mailing_id = id, was = m.status.as_str(), "mailing cancelled");
        Ok(mailing_json(&self.mailing(id).await?))
    }
}
