//! `PUT /users/{id}` and `GET /users/{id}` (CONTRACT §9, "Users").
//!
//! `PUT` merges, as `PUT /templates/{id}` does: a field left out keeps its stored value, `null`
//! (or `""`) clears it; in `channels` each channel given is set (`null`: back to allowed) and the
//! others are kept; `quiet_hours` is replaced whole. The first `PUT` creates the profile. Both
//! answer `200` with the profile as stored. Writes are conditional on the version read, so two
//! admins' merges never lose one another's fields.

use herald::domain::{
    Channel, ChannelPrefs, QuietHours, TimeOfDay, UserProfile, canonical_locale, canonical_timezone, check_email, check_phone, now, rfc3339,
};
use herald::platform::preferences::channel_allowed;
use serde_json::{Map, Value, json};

use super::{AdminDeps, AdminError, bad, object, path_segment};

/// The fields of a profile's body.
const USER_FIELDS: &[&str] = &["email", "phone", "name", "locale", "timezone", "channels", "quiet_hours"];
/// The longest display name accepted.
const MAX_DISPLAY_NAME: usize = 256;
/// Rounds of re-applying a merge that lost a race to another write.
const ROUNDS: usize = 5;

/// The channels a `PUT` sets: each given one on, off, or (`None`) back to allowed.
type ChannelsGiven = Vec<(Channel, Option<bool>)>;

/// What a `PUT` changes: `None` keeps the field, `Some(None)` clears it.
#[derive(Debug, Default)]
struct Patch {
    email: Option<Option<String>>,
    phone: Option<Option<String>>,
    name: Option<Option<String>>,
    locale: Option<Option<String>>,
    timezone: Option<Option<String>>,
    /// `Some(None)`: every channel back to allowed; otherwise the channels given.
    channels: Option<Option<ChannelsGiven>>,
    quiet_hours: Option<Option<QuietHours>>,
}

/// A text field: absent, `null` or `""` (clear), or a string checked by `check`.
fn text_field(
    obj: &Map<String, Value>,
    field: &str,
    check: impl Fn(&str) -> Result<String, String>,
) -> Result<Option<Option<String>>, AdminError> {
    match obj.get(field) {
        None => Ok(None),
        Some(Value::Null) => Ok(Some(None)),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(Some(None)),
        Some(Value::String(s)) => check(s.trim()).map(|v| Some(Some(v))).map_err(|e| bad(format!("\"{field}\": {e}"))),
        Some(_) => Err(bad(format!("\"{field}\" must be a string"))),
    }
}

fn channels_field(value: &Value) -> Result<Option<ChannelsGiven>, AdminError> {
    let obj = match value {
        Value::Null => return Ok(None),
        Value::Object(obj) => obj,
        _ => return Err(bad("\"channels\" must be an object such as {\"email\":true,\"sms\":false,\"push\":true}")),
    };
    let mut out = Vec::new();
    let mut keys: Vec<&String> = obj.keys().collect();
    keys.sort();
    for key in keys {
        let channel =
            Channel::parse(key).ok_or_else(|| bad(format!("\"channels.{key}\" is not a channel: the channels are email, sms and push")))?;
        let on = match &obj[key] {
            Value::Bool(b) => Some(*b),
            Value::Null => None,
            _ => return Err(bad(format!("\"channels.{key}\" must be true or false"))),
        };
        out.push((channel, on));
    }
    Ok(Some(out))
}

fn quiet_hours_field(value: &Value) -> Result<Option<QuietHours>, AdminError> {
    let obj = match value {
        Value::Null => return Ok(None),
        Value::Object(obj) => obj,
        _ => return Err(bad("\"quiet_hours\" must be an object such as {\"start\":\"22:00\",\"end\":\"07:00\"}")),
    };
    let mut unknown: Vec<&str> = obj.keys().map(String::as_str).filter(|k| !["start", "end"].contains(k)).collect();
    if !unknown.is_empty() {
        unknown.sort();
        return Err(bad(format!("unknown field(s) in \"quiet_hours\": {}: the fields are start, end", super::quoted(&unknown))));
    }
    let time = |field: &str| -> Result<TimeOfDay, AdminError> {
        match obj.get(field) {
            Some(Value::String(s)) => TimeOfDay::parse(s).map_err(|e| bad(format!("\"quiet_hours.{field}\": {e}"))),
            None | Some(Value::Null) => Err(bad(format!("\"quiet_hours.{field}\" is required (HH:MM)"))),
            Some(_) => Err(bad(format!("\"quiet_hours.{field}\" must be a string HH:MM"))),
        }
    };
    let (start, end) = (time("start")?, time("end")?);
    QuietHours::new(start, end).map(Some).ok_or_else(|| bad(format!("\"quiet_hours\": start and end are both {start}: they must differ")))
}

fn patch_from(obj: &Map<String, Value>) -> Result<Patch, AdminError> {
    Ok(Patch {
        email: text_field(obj, "email", |s| check_email(s).map(|()| s.to_string()).map_err(|e| e.to_string()))?,
        phone: text_field(obj, "phone", |s| check_phone(s).map(|()| s.to_string()).map_err(|e| e.to_string()))?,
        name: text_field(obj, "name", |s| {
            if s.chars().count() > MAX_DISPLAY_NAME { Err(format!("longer than {MAX_DISPLAY_NAME} characters")) } else { Ok(s.to_string()) }
        })?,
        locale: text_field(obj, "locale", |s| canonical_locale(s).map_err(|e| e.to_string()))?,
        timezone: text_field(obj, "timezone", |s| canonical_timezone(s).map_err(|e| e.to_string()))?,
        channels: obj.get("channels").map(channels_field).transpose()?,
        quiet_hours: obj.get("quiet_hours").map(quiet_hours_field).transpose()?,
    })
}

impl Patch {
    fn apply(&self, p: &mut UserProfile) {
        for (field, value) in [
            (&mut p.email, &self.email),
            (&mut p.phone, &self.phone),
            (&mut p.name, &self.name),
            (&mut p.locale, &self.locale),
            (&mut p.timezone, &self.timezone),
        ] {
            if let Some(v) = value {
                field.clone_from(v);
            }
        }
        match &self.channels {
            None => {}
            Some(None) => p.channels = ChannelPrefs::default(),
            Some(Some(given)) => given.iter().for_each(|(c, on)| p.channels.set(*c, *on)),
        }
        if let Some(q) = self.quiet_hours {
            p.quiet_hours = q;
        }
    }
}

/// A profile as the API shows it: every channel with whether it is allowed.
fn user_json(p: &UserProfile) -> Value {
    let channels: Map<String, Value> = Channel::ALL.iter().map(|c| (c.as_str().to_string(), json!(channel_allowed(p, *c)))).collect();
    json!({
        "user_id": p.user_id,
        "email": p.email,
        "phone": p.phone,
        "name": p.name,
        "locale": p.locale,
        "timezone": p.timezone,
        "channels": channels,
        "quiet_hours": p.quiet_hours,
        "created_at": p.created_at,
        "updated_at": p.updated_at,
    })
}

impl AdminDeps<'_> {
    pub(crate) async fn users_route(
        &self,
        method: &http::Method,
        path: &str,
        rest: &[&str],
        body: &[u8],
    ) -> Result<(u16, Option<Value>), AdminError> {
        let [segment] = rest else { return Err(AdminError::NotFound(format!("no route for {path}"))) };
        let user_id = path_segment("user id", segment)?;
        match method.as_str() {
            "GET" => {
                let p = self.users.get_user(&user_id).await?.ok_or_else(|| AdminError::NotFound(format!("no user {user_id:?}")))?;
                Ok((200, Some(user_json(&p))))
            }
            "PUT" => Ok((200, Some(self.put_user(&user_id, body).await?))),
            _ => Err(AdminError::MethodNotAllowed { method: method.to_string(), path: path.to_string() }),
        }
    }

    async fn put_user(&self, user_id: &str, body: &[u8]) -> Result<Value, AdminError> {
        let patch = patch_from(&object(body, &[USER_FIELDS])?)?;
        for _ in 0..ROUNDS {
            let at = rfc3339(now());
            let current = self.users.get_user(user_id).await?;
            let expected = current.as_ref().map(|p| p.version);
            let mut next = current.unwrap_or_else(|| UserProfile::new(user_id, &at));
            patch.apply(&mut next);
            next.version += 1;
            next.updated_at = at;
            if self.users.put_user(&next, expected).await? {
                return Ok(user_json(&next));
            }
        }
        Err(AdminError::Store(herald::store::StoreError::ConditionFailed(format!("user {user_id} kept changing while being saved"))))
    }
}
