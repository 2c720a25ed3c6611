//! Herald's domain: plain Rust, no AWS types.

mod chat;
mod connection;
mod event_type;
mod mailing;
mod notification;
mod push;
mod template;
mod user;

pub use chat::*;
pub use connection::*;
pub use event_type::*;
pub use mailing::*;
pub use notification::*;
pub use push::*;
pub use template::*;
pub use user::*;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The longest user id or event name accepted (CONTRACT §1).
pub const MAX_NAME_LEN: usize = 256;

/// Why a user id or event name is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NameError {
    #[error("{0} must not be empty")]
    Empty(&'static str),
    #[error("{0} is longer than 256 characters")]
    TooLong(&'static str),
    #[error("{0} must be a string or a number")]
    WrongType(&'static str),
}

/// Checks a user id or an event name: 1 to 256 characters.
pub fn check_name(what: &'static str, value: &str) -> Result<(), NameError> {
    if value.is_empty() {
        Err(NameError::Empty(what))
    } else if value.chars().count() > MAX_NAME_LEN {
        Err(NameError::TooLong(what))
    } else {
        Ok(())
    }
}

/// A user id from JSON: a string, or a number meaning its decimal string (`1589` and `"1589"` are one user).
pub fn user_id_from_json(what: &'static str, value: &serde_json::Value) -> Result<String, NameError> {
    let id = match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Number(n) if n.is_i64() || n.is_u64() => n.to_string(),
        _ => return Err(NameError::WrongType(what)),
    };
    check_name(what, &id)?;
    Ok(id)
}

/// Now, in UTC.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

/// RFC 3339 text of a time, as every frame carries it.
pub fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.unix_timestamp().to_string())
}

/// How long ago an RFC 3339 time was (`None` if unreadable or in the future).
pub fn age(rfc3339_text: &str) -> Option<std::time::Duration> {
    age_at(parse_rfc3339(rfc3339_text)?, now())
}

/// An RFC 3339 time (`None` if unreadable).
pub fn parse_rfc3339(rfc3339_text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(rfc3339_text, &Rfc3339).ok()
}

/// How long before `now` a time was (`None` if it is after `now`).
pub fn age_at(at: OffsetDateTime, now: OffsetDateTime) -> Option<std::time::Duration> {
    std::time::Duration::try_from(now - at).ok()
}

/// Seconds since the epoch, for DynamoDB TTL attributes.
pub fn epoch_secs(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numeric_user_ids_are_their_decimal_string() {
        assert_eq!(user_id_from_json("user_id", &json!(1589)).unwrap(), "1589");
        assert_eq!(user_id_from_json("user_id", &json!("1589")).unwrap(), "1589");
        assert_eq!(user_id_from_json("user_id", &json!(1.5)), Err(NameError::WrongType("user_id")));
        assert_eq!(user_id_from_json("user_id", &json!("")), Err(NameError::Empty("user_id")));
        assert_eq!(user_id_from_json("user_id", &json!("x".repeat(257))), Err(NameError::TooLong("user_id")));
        assert!(user_id_from_json("user_id", &json!("é".repeat(256))).is_ok());
    }
}
