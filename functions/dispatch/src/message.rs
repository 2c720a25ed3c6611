//! What arrives on the queue (CONTRACT §4): seed 002's `{"message_id","delivery_method":"push",
//! "user_id","subject","content"}`, or a `/notify` body (as `notify` queues it, with its push
//! `id`, or as a publisher writes it straight to the queue).

use herald::domain::{Push, check_name, now, rfc3339, user_id_from_json};
use serde_json::Value;

/// Why a message can never be delivered: it is set aside (dead-lettered), never retried.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("undeliverable message: {0}")]
pub struct Undeliverable(pub String);

fn optional_string(obj: &serde_json::Map<String, Value>, field: &str) -> Result<Option<String>, Undeliverable> {
    match obj.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(Undeliverable(format!("\"{field}\" must be a string"))),
    }
}

/// Parses a queue message body. `fallback_id` (the queue's own message id, or Kafka's
/// topic/partition/offset) is the push id when the message names none: stable across redeliveries.
pub fn parse(body: &[u8], fallback_id: &str) -> Result<Push, Undeliverable> {
    let value: Value = serde_json::from_slice(body).map_err(|_| Undeliverable("the body is not valid JSON".into()))?;
    let Value::Object(obj) = value else { return Err(Undeliverable("the body is not a JSON object".into())) };
    // The method first: a message for another channel is not Herald's, whatever else it holds.
    let seed_002 = match obj.get("delivery_method") {
        None => false,
        Some(Value::String(method)) if method == "push" => true,
        Some(Value::String(method)) => return Err(Undeliverable(format!("unknown delivery method {method:?}"))),
        Some(_) => return Err(Undeliverable("\"delivery_method\" must be a string".into())),
    };
    let user_id = match obj.get("user_id") {
        None | Some(Value::Null) => None,
        Some(v) => Some(user_id_from_json("user_id", v).map_err(|e| Undeliverable(e.to_string()))?),
    };
    let event_name = optional_string(&obj, "event_name")?;
    if let Some(e) = &event_name {
        check_name("event_name", e).map_err(|e| Undeliverable(e.to_string()))?;
    }
    let id = optional_string(&obj, "id")?.or(optional_string(&obj, "message_id")?).unwrap_or_else(|| fallback_id.to_string());
    if id.is_empty() || id.len() > 256 {
        return Err(Undeliverable("the message id must be 1 to 256 characters".into()));
    }
    let created_at = optional_string(&obj, "created_at")?.unwrap_or_else(|| rfc3339(now()));
    let push = if seed_002 {
        // Seed 002: a direct push to every connection of the user.
        Push {
            id,
            created_at,
            user_id,
            event_name: None,
            title: optional_string(&obj, "subject")?,
            body: optional_string(&obj, "content")?,
            message: None,
            position: None,
        }
    } else {
        Push {
            id,
            created_at,
            user_id,
            event_name,
            title: optional_string(&obj, "title")?,
            body: optional_string(&obj, "body")?,
            message: obj.get("message").cloned(),
            position: None,
        }
    };
    if push.audience().is_none() {
        return Err(Undeliverable("the message names neither user_id nor event_name".into()));
    }
    Ok(push)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_002_message_becomes_title_and_body_for_the_user() {
        let body = r#"{"message_id": "123e4567-e89b-12d3-a456-426614174000","delivery_method": "push","user_id": "b1fe6a68-f7b5-4c2c-a52b-97494403d2ce","subject":"Новый фильм", "content": "Фильм 'Как закалялась сталь' теперь доступен для просмотра"}"#;
        let p = parse(body.as_bytes(), "q1").unwrap();
        assert_eq!(p.id, "123e4567-e89b-12d3-a456-426614174000");
        assert_eq!(p.user_id.as_deref(), Some("b1fe6a68-f7b5-4c2c-a52b-97494403d2ce"));
        assert_eq!(p.title.as_deref(), Some("Новый фильм"));
        assert_eq!(p.body.as_deref(), Some("Фильм 'Как закалялась сталь' теперь доступен для просмотра"));
        assert_eq!(p.event_name, None);
    }

    #[test]
    fn a_notify_body_without_id_takes_the_queue_id() {
        let p = parse(br#"{"user_id":1589,"event_name":"notification:test","message":{"a":1}}"#, "q-7").unwrap();
        assert_eq!((p.id.as_str(), p.user_id.as_deref()), ("q-7", Some("1589")));
    }

    #[test]
    fn poison_is_undeliverable() {
        assert!(parse(b"{oops", "q").is_err());
        assert!(parse(b"[1]", "q").is_err());
        assert!(parse(br#"{"delivery_method":"sms","user_id":"1"}"#, "q").unwrap_err().0.contains("sms"));
        // Found by the fuzzer: the method is named even when another field is wrong too.
        assert!(parse(br#"{"delivery_method":"sms","created_at":false}"#, "q").unwrap_err().0.contains("sms"));
        assert!(parse(br#"{"delivery_method":"sms","event_name":0}"#, "q").unwrap_err().0.contains("sms"));
        assert!(parse(br#"{"message":"nobody"}"#, "q").is_err());
        assert!(parse(br#"{"user_id":{"x":1}}"#, "q").is_err());
    }
}
