//! `PUT /event-types/{name}` and `GET /event-types` (CONTRACT §9, "Event types").
//!
//! `PUT` replaces: an event type is its whole definition (`templates` is required and is the
//! full map of channels; `critical` defaults to `false`), so the body says everything the event
//! type is. It answers `200` with the event type as stored. Each channel's template must exist
//! for that channel, in some locale (the recipient's locale picks one when it is sent).

use std::collections::BTreeMap;

use herald::domain::{Channel, EventType, check_name, now, rfc3339};
use serde_json::{Map, Value, json};

use super::{AdminDeps, AdminError, bad, object, path_segment};

/// The fields of an event type's body.
const EVENT_TYPE_FIELDS: &[&str] = &["templates", "critical"];

fn templates_field(obj: &Map<String, Value>) -> Result<BTreeMap<Channel, String>, AdminError> {
    let example = "{\"email\":\"<template name>\",\"push\":\"…\",\"sms\":\"…\"}";
    let map = match obj.get("templates") {
        Some(Value::Object(map)) => map,
        None | Some(Value::Null) => return Err(bad(format!("\"templates\" is required: an object such as {example}"))),
        Some(_) => return Err(bad(format!("\"templates\" must be an object such as {example}"))),
    };
    if map.is_empty() {
        return Err(bad("\"templates\" must name a template for at least one channel (email, sms or push)"));
    }
    let mut out = BTreeMap::new();
    for (key, value) in map {
        let channel = Channel::parse(key)
            .ok_or_else(|| bad(format!("\"templates.{key}\" is not a channel: the channels are email, sms and push")))?;
        let Value::String(name) = value else { return Err(bad(format!("\"templates.{key}\" must be a template name (a string)"))) };
        check_name("template name", name).map_err(|e| bad(format!("\"templates.{key}\": {e}")))?;
        out.insert(channel, name.clone());
    }
    Ok(out)
}

fn event_type_json(t: &EventType) -> Value {
    json!({
        "name": t.name,
        "templates": t.templates,
        "critical": t.critical,
        "created_at": t.created_at,
        "updated_at": t.updated_at,
    })
}

impl AdminDeps<'_> {
    pub(crate) async fn event_types_route(
        &self,
        method: &http::Method,
        path: &str,
        rest: &[&str],
        body: &[u8],
    ) -> Result<(u16, Option<Value>), AdminError> {
        let not_allowed = || Err(AdminError::MethodNotAllowed { method: method.to_string(), path: path.to_string() });
        match (rest, method.as_str()) {
            ([], "GET") => {
                let all = self.event_types.list_event_types().await?;
                Ok((200, Some(json!({ "items": all.iter().map(event_type_json).collect::<Vec<_>>() }))))
            }
            ([], _) => not_allowed(),
            ([name], "PUT") => {
                let name = path_segment("event type name", name)?;
                Ok((200, Some(self.put_event_type(&name, body).await?)))
            }
            ([_], _) => not_allowed(),
            _ => Err(AdminError::NotFound(format!("no route for {path}"))),
        }
    }

    async fn put_event_type(&self, name: &str, body: &[u8]) -> Result<Value, AdminError> {
        let obj = object(body, &[EVENT_TYPE_FIELDS])?;
        let templates = templates_field(&obj)?;
        let critical = match obj.get("critical") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(bad("\"critical\" must be true or false")),
        };
        for (channel, template) in &templates {
            if self.templates.templates_named(template, *channel).await?.is_empty() {
                let c = channel.as_str();
                return Err(bad(format!("\"templates.{c}\": there is no {c} template named {template:?} (in any locale)")));
            }
        }
        let at = rfc3339(now());
        let created_at = self.event_types.get_event_type(name).await?.map(|t| t.created_at).unwrap_or_else(|| at.clone());
        let t = EventType { name: name.to_string(), templates, critical, created_at, updated_at: at };
        self.event_types.put_event_type(&t).await?;
        Ok(event_type_json(&t))
    }
}
