//! Items to and from the domain types, written once.
//!
//! Every domain field is its own attribute: strings `S`, numbers `N`, flags `BOOL`, a delivery's
//! frame `B`, a conversation's `application_id` the JSON value it was (`N` for a number, `S` for a
//! string). A missing attribute or one of the wrong type is [`StoreError::Corrupt`], naming it.

use std::collections::HashMap;
use std::str::FromStr;

use aws_sdk_dynamodb::primitives::Blob;
use aws_sdk_dynamodb::types::AttributeValue;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::{ChatMessage, Connection, Conversation, Delivery, Fence, Subscription};
use crate::store::tables::attr;
use crate::store::{StoreError, StoreResult, event_shard, event_shard_key, user_event_key};

/// A DynamoDB item (or key).
pub(crate) type Item = HashMap<String, AttributeValue>;

/// Attribute names beyond the key attributes of [`tables::attr`](crate::store::tables::attr).
pub(crate) mod name {
    pub const API: &str = "api";
    pub const ENCODING: &str = "encoding";
    pub const ACK_MODE: &str = "ack_mode";
    pub const ADMIN: &str = "admin";
    pub const REQUEST_ID: &str = "request_id";
    pub const CONNECTED_AT: &str = "connected_at";
    pub const ATTEMPTS: &str = "attempts";
    pub const ACKED: &str = "acked";
    pub const FRAME: &str = "frame";
    pub const BINARY: &str = "binary";
    pub const APPLICATION_ID: &str = "application_id";
    pub const CREATE_AT: &str = "create_at";
    pub const UPDATE_AT: &str = "update_at";
    pub const LAST_MESSAGE_ID: &str = "last_message_id";
    pub const UNREAD: &str = "unread";
    pub const CONTENT: &str = "content";
    pub const CONTENT_TYPE: &str = "content_type";
    pub const SENDER_ID: &str = "sender_id";
    pub const STATUS: &str = "status";
    pub const CLIENT_MSG_ID: &str = "client_msg_id";
    /// A push claim's state (`sending` / `done`) and lease (epoch milliseconds).
    pub const STATE: &str = "state";
    pub const LEASE_UNTIL: &str = "lease_until";
    /// The counters table: a counter's value, an idempotency marker's message id.
    pub const VALUE: &str = "value";
    pub const MESSAGE_ID: &str = "message_id";
    /// Templates: their own fields, and a slot marker's owner (the template's id).
    pub const TEMPLATE_NAME: &str = "name";
    pub const CHANNEL: &str = "channel";
    pub const LOCALE: &str = "locale";
    pub const SUBJECT: &str = "subject";
    pub const BODY: &str = "body";
    pub const HTML: &str = "html";
    pub const VERSION: &str = "version";
    pub const CREATED_AT: &str = "created_at";
    pub const UPDATED_AT: &str = "updated_at";
    pub const OWNER: &str = "owner";
    /// User profiles (and `name`, `locale`, `version`, `created_at`, `updated_at` as above).
    pub const USER_NAME: &str = "name";
    pub const EMAIL: &str = "email";
    pub const PHONE: &str = "phone";
    pub const TIMEZONE: &str = "timezone";
    /// A map of the channels turned on or off (`BOOL` each).
    pub const CHANNELS: &str = "channels";
    pub const QUIET_START: &str = "quiet_start";
    pub const QUIET_END: &str = "quiet_end";
    /// Event types: a map of channel to template name, and the flag.
    pub const TEMPLATES: &str = "templates";
    pub const CRITICAL: &str = "critical";
    // History records.
    pub const REASON: &str = "reason";
    pub const HELD_UNTIL: &str = "held_until";
    /// A recovery's fence ([`Fence::to_i64`](crate::domain::Fence::to_i64)) on a connection or
    /// subscription, and a connection's last frame (epoch seconds).
    pub const FENCE: &str = "fence";
    pub const LAST_SEEN: &str = "last_seen";
}

pub(crate) fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

pub(crate) fn n(v: impl ToString) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

/// A key (or any small item) from its attributes.
pub(crate) fn key<const N: usize>(attrs: [(&str, AttributeValue); N]) -> Item {
    attrs.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
}

fn corrupt(name: &str, want: &str) -> StoreError {
    StoreError::Corrupt(format!("attribute {name:?} is missing or not {want}"))
}

pub(crate) fn get_s(item: &Item, name: &str) -> StoreResult<String> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        _ => Err(corrupt(name, "a string")),
    }
}

/// An optional string attribute: absent is `None`, another type is corrupt.
pub(crate) fn get_opt_s(item: &Item, name: &str) -> StoreResult<Option<String>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(true)) => Ok(None),
        Some(_) => get_s(item, name).map(Some),
    }
}

pub(crate) fn get_n<T: FromStr>(item: &Item, name: &str) -> StoreResult<T> {
    match item.get(name) {
        Some(AttributeValue::N(v)) => v.parse().map_err(|_| corrupt(name, "a number of the expected range")),
        _ => Err(corrupt(name, "a number")),
    }
}

/// An optional number attribute: absent is `None`, another type is corrupt.
pub(crate) fn get_opt_n<T: FromStr>(item: &Item, name: &str) -> StoreResult<Option<T>> {
    match item.get(name) {
        None | Some(AttributeValue::Null(true)) => Ok(None),
        Some(_) => get_n(item, name).map(Some),
    }
}

pub(crate) fn get_bool(item: &Item, name: &str) -> StoreResult<bool> {
    match item.get(name) {
        Some(AttributeValue::Bool(v)) => Ok(*v),
        _ => Err(corrupt(name, "a boolean")),
    }
}

pub(crate) fn get_b(item: &Item, name: &str) -> StoreResult<Vec<u8>> {
    match item.get(name) {
        Some(AttributeValue::B(v)) => Ok(v.as_ref().to_vec()),
        _ => Err(corrupt(name, "binary")),
    }
}

pub(crate) fn get_m<'a>(item: &'a Item, name: &str) -> StoreResult<&'a Item> {
    match item.get(name) {
        Some(AttributeValue::M(v)) => Ok(v),
        _ => Err(corrupt(name, "a map")),
    }
}

/// A unit enum stored as its serde name (`"chat"`, `"protobuf"`, `"required"`).
fn enum_s<T: Serialize>(v: &T) -> AttributeValue {
    match serde_json::to_value(v) {
        Ok(serde_json::Value::String(text)) => s(text),
        // Unit enums always serialize to a string; anything else would be a new domain type.
        other => s(other.map(|v| v.to_string()).unwrap_or_default()),
    }
}

pub(crate) fn get_enum<T: DeserializeOwned>(item: &Item, name: &str) -> StoreResult<T> {
    let text = get_s(item, name)?;
    serde_json::from_value(serde_json::Value::String(text)).map_err(|_| corrupt(name, "a known value"))
}

/// A JSON value as an attribute value: numbers `N`, strings `S`, and so on.
pub(crate) fn json_to_av(v: &serde_json::Value) -> AttributeValue {
    use serde_json::Value;
    match v {
        Value::Null => AttributeValue::Null(true),
        Value::Bool(b) => AttributeValue::Bool(*b),
        Value::Number(num) => AttributeValue::N(num.to_string()),
        Value::String(text) => s(text.as_str()),
        Value::Array(items) => AttributeValue::L(items.iter().map(json_to_av).collect()),
        Value::Object(map) => AttributeValue::M(map.iter().map(|(k, v)| (k.clone(), json_to_av(v))).collect()),
    }
}

/// The JSON value an attribute value was made from by [`json_to_av`].
pub(crate) fn av_to_json(v: &AttributeValue) -> Option<serde_json::Value> {
    use serde_json::Value;
    Some(match v {
        AttributeValue::Null(_) => Value::Null,
        AttributeValue::Bool(b) => Value::Bool(*b),
        AttributeValue::N(text) => {
            if let Ok(i) = text.parse::<i64>() {
                Value::from(i)
            } else if let Ok(u) = text.parse::<u64>() {
                Value::from(u)
            } else {
                serde_json::Number::from_f64(text.parse().ok()?).map(Value::Number)?
            }
        }
        AttributeValue::S(text) => Value::String(text.clone()),
        AttributeValue::L(items) => Value::Array(items.iter().map(av_to_json).collect::<Option<_>>()?),
        AttributeValue::M(map) => Value::Object(map.iter().map(|(k, v)| Some((k.clone(), av_to_json(v)?))).collect::<Option<_>>()?),
        _ => return None,
    })
}

/// DynamoDB's size of an item: attribute names plus values, as the service counts them.
pub(crate) fn item_size(item: &Item) -> usize {
    item.iter().map(|(k, v)| k.len() + value_size(v)).sum()
}

fn value_size(v: &AttributeValue) -> usize {
    match v {
        AttributeValue::S(text) => text.len(),
        // Up to 38 significant digits: about one byte per two digits, plus one.
        AttributeValue::N(text) => text.len().div_ceil(2) + 1,
        AttributeValue::B(b) => b.as_ref().len(),
        AttributeValue::Bool(_) | AttributeValue::Null(_) => 1,
        AttributeValue::Ss(v) => v.iter().map(String::len).sum(),
        AttributeValue::Ns(v) => v.iter().map(|t| t.len().div_ceil(2) + 1).sum(),
        AttributeValue::Bs(v) => v.iter().map(|b| b.as_ref().len()).sum(),
        AttributeValue::L(items) => 3 + items.iter().map(|i| 1 + value_size(i)).sum::<usize>(),
        AttributeValue::M(map) => 3 + map.iter().map(|(k, i)| 1 + k.len() + value_size(i)).sum::<usize>(),
        _ => 0,
    }
}

/// A domain value as the item that stores it.
pub(crate) trait ToItem {
    fn to_item(&self) -> Item;
}

/// A domain value read back from its item.
pub(crate) trait FromItem: Sized {
    fn from_item(item: &Item) -> StoreResult<Self>;
}

/// Reads every item of a query or batch.
pub(crate) fn from_items<T: FromItem>(items: &[Item]) -> StoreResult<Vec<T>> {
    items.iter().map(T::from_item).collect()
}

impl ToItem for Connection {
    fn to_item(&self) -> Item {
        let mut item = key([
            (attr::CONNECTION_ID, s(self.connection_id.as_str())),
            (attr::USER_ID, s(self.user_id.as_str())),
            (name::API, enum_s(&self.api)),
            (name::ENCODING, enum_s(&self.encoding)),
            (name::ACK_MODE, enum_s(&self.ack_mode)),
            (name::ADMIN, AttributeValue::Bool(self.admin)),
            (name::CONNECTED_AT, n(self.connected_at)),
            (attr::EXPIRES_AT, n(self.expires_at)),
            (name::LAST_SEEN, n(self.last_seen)),
        ]);
        if let Some(r) = &self.request_id {
            item.insert(name::REQUEST_ID.into(), s(r.as_str()));
        }
        if let Some(f) = self.fence {
            item.insert(name::FENCE.into(), n(f.to_i64()));
        }
        item
    }
}

impl FromItem for Connection {
    fn from_item(item: &Item) -> StoreResult<Self> {
        Ok(Self {
            connection_id: get_s(item, attr::CONNECTION_ID)?,
            user_id: get_s(item, attr::USER_ID)?,
            api: get_enum(item, name::API)?,
            encoding: get_enum(item, name::ENCODING)?,
            ack_mode: get_enum(item, name::ACK_MODE)?,
            admin: get_bool(item, name::ADMIN)?,
            request_id: get_opt_s(item, name::REQUEST_ID)?,
            connected_at: get_n(item, name::CONNECTED_AT)?,
            expires_at: get_n(item, attr::EXPIRES_AT)?,
            fence: get_opt_n::<i64>(item, name::FENCE)?.map(Fence::from_i64),
            last_seen: get_opt_n(item, name::LAST_SEEN)?.unwrap_or_default(),
        })
    }
}

impl ToItem for Subscription {
    fn to_item(&self) -> Item {
        let mut item = key([
            (attr::CONNECTION_ID, s(self.connection_id.as_str())),
            (attr::EVENT_NAME, s(self.event_name.as_str())),
            (attr::USER_ID, s(self.user_id.as_str())),
            (attr::USER_EVENT, s(user_event_key(&self.user_id, &self.event_name))),
            (attr::EVENT_SHARD, s(event_shard_key(&self.event_name, event_shard(&self.connection_id)))),
            (name::ENCODING, enum_s(&self.encoding)),
            (name::ACK_MODE, enum_s(&self.ack_mode)),
            (attr::EXPIRES_AT, n(self.expires_at)),
        ]);
        if let Some(f) = self.fence {
            item.insert(name::FENCE.into(), n(f.to_i64()));
        }
        item
    }
}

impl FromItem for Subscription {
    fn from_item(item: &Item) -> StoreResult<Self> {
        Ok(Self {
            connection_id: get_s(item, attr::CONNECTION_ID)?,
            event_name: get_s(item, attr::EVENT_NAME)?,
            user_id: get_s(item, attr::USER_ID)?,
            encoding: get_enum(item, name::ENCODING)?,
            ack_mode: get_enum(item, name::ACK_MODE)?,
            expires_at: get_n(item, attr::EXPIRES_AT)?,
            fence: get_opt_n::<i64>(item, name::FENCE)?.map(Fence::from_i64),
        })
    }
}

impl ToItem for Delivery {
    fn to_item(&self) -> Item {
        key([
            (attr::PUSH_ID, s(self.push_id.as_str())),
            (attr::CONNECTION_ID, s(self.connection_id.as_str())),
            (name::ATTEMPTS, n(self.attempts)),
            (name::ACKED, AttributeValue::Bool(self.acked)),
            (name::FRAME, AttributeValue::B(Blob::new(self.frame.clone()))),
            (name::BINARY, AttributeValue::Bool(self.binary)),
            (attr::EXPIRES_AT, n(self.expires_at)),
        ])
    }
}

impl FromItem for Delivery {
    fn from_item(item: &Item) -> StoreResult<Self> {
        Ok(Self {
            push_id: get_s(item, attr::PUSH_ID)?,
            connection_id: get_s(item, attr::CONNECTION_ID)?,
            attempts: get_n(item, name::ATTEMPTS)?,
            acked: get_bool(item, name::ACKED)?,
            frame: get_b(item, name::FRAME)?,
            binary: get_bool(item, name::BINARY)?,
            expires_at: get_n(item, attr::EXPIRES_AT)?,
        })
    }
}

/// The conversation's own fields; the store adds `last_message_id` and the `unread` map.
impl ToItem for Conversation {
    fn to_item(&self) -> Item {
        key([
            (attr::SESSION_CHANNEL, s(self.session_channel.as_str())),
            (attr::ID, n(self.id)),
            (name::APPLICATION_ID, json_to_av(&self.application_id)),
            (attr::USER_ID, s(self.user_id.as_str())),
            (name::CREATE_AT, s(self.create_at.as_str())),
            (name::UPDATE_AT, s(self.update_at.as_str())),
        ])
    }
}

impl FromItem for Conversation {
    fn from_item(item: &Item) -> StoreResult<Self> {
        Ok(Self {
            id: get_n(item, attr::ID)?,
            session_channel: get_s(item, attr::SESSION_CHANNEL)?,
            application_id: item
                .get(name::APPLICATION_ID)
                .and_then(av_to_json)
                .ok_or_else(|| corrupt(name::APPLICATION_ID, "a JSON value"))?,
            user_id: get_s(item, attr::USER_ID)?,
            create_at: get_s(item, name::CREATE_AT)?,
            update_at: get_s(item, name::UPDATE_AT)?,
        })
    }
}

impl ToItem for ChatMessage {
    fn to_item(&self) -> Item {
        let mut item = key([
            (attr::SESSION_CHANNEL, s(self.session_channel.as_str())),
            (attr::ID, n(self.id)),
            (name::CONTENT, s(self.content.as_str())),
            (name::CONTENT_TYPE, n(self.content_type)),
            (name::SENDER_ID, s(self.sender_id.as_str())),
            (name::STATUS, n(self.status)),
            (name::CREATE_AT, s(self.create_at.as_str())),
            (name::UPDATE_AT, s(self.update_at.as_str())),
        ]);
        if let Some(k) = &self.client_msg_id {
            item.insert(name::CLIENT_MSG_ID.into(), s(k.as_str()));
        }
        item
    }
}

impl FromItem for ChatMessage {
    fn from_item(item: &Item) -> StoreResult<Self> {
        Ok(Self {
            id: get_n(item, attr::ID)?,
            session_channel: get_s(item, attr::SESSION_CHANNEL)?,
            content: get_s(item, name::CONTENT)?,
            content_type: get_n(item, name::CONTENT_TYPE)?,
            sender_id: get_s(item, name::SENDER_ID)?,
            status: get_n(item, name::STATUS)?,
            create_at: get_s(item, name::CREATE_AT)?,
            update_at: get_s(item, name::UPDATE_AT)?,
            client_msg_id: get_opt_s(item, name::CLIENT_MSG_ID)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{AckMode, Api, Encoding};
    use serde_json::json;

    #[test]
    fn domain_values_round_trip() {
        let c = Connection {
            connection_id: "c1".into(),
            user_id: "1589".into(),
            api: Api::Chat,
            encoding: Encoding::Protobuf,
            ack_mode: AckMode::Required,
            admin: true,
            request_id: Some("r".into()),
            connected_at: 1_700_000_000_000,
            expires_at: 1_700_000_000,
            fence: Some(Fence::LiveAfter(7)),
            last_seen: 1_700_000_001,
        };
        assert_eq!(Connection::from_item(&c.to_item()).unwrap(), c);
        let d = Delivery {
            push_id: "p".into(),
            connection_id: "c".into(),
            attempts: 3,
            acked: false,
            frame: vec![0, 1, 255],
            binary: true,
            expires_at: 5,
        };
        assert_eq!(Delivery::from_item(&d.to_item()).unwrap(), d);
        for app in [json!(100), json!("abc"), json!(u64::MAX), json!(1.5)] {
            assert_eq!(av_to_json(&json_to_av(&app)), Some(app));
        }
    }

    #[test]
    fn corrupt_items_name_the_attribute() {
        let mut item = Subscription {
            connection_id: "c".into(),
            event_name: "e".into(),
            user_id: "u".into(),
            encoding: Encoding::Json,
            ack_mode: AckMode::None,
            expires_at: 1,
            fence: None,
        }
        .to_item();
        item.insert(name::ENCODING.into(), n(1));
        let err = Subscription::from_item(&item).unwrap_err();
        assert!(matches!(&err, StoreError::Corrupt(m) if m.contains("encoding")), "{err}");
        item.remove(attr::USER_ID);
        let err = Subscription::from_item(&item).unwrap_err();
        assert!(matches!(&err, StoreError::Corrupt(m) if m.contains("user_id")), "{err}");
    }

    #[test]
    fn item_size_counts_names_and_values() {
        let item = key([("ab", s("xyz")), ("n", n(12345)), ("b", AttributeValue::Bool(true))]);
        assert_eq!(item_size(&item), 2 + 3 + 1 + 4 + 1 + 1);
    }
}
