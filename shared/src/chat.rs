//! What the chat route functions (CONTRACT §5, seed 001) share: the event names, reading a frame
//! and its caller, argument parsing, the authorization rules and the seed's reply shapes. Each
//! route crate (`functions/chat-*`) holds only its events' logic.
//!
//! Rules kept here, in one place:
//! - A frame comes from a stored chat connection; its `sid` is the connection's `user_id`.
//! - `sender_id` / `executor_id` must be the connection's `sid`, else the frame is refused; so must
//!   a requester's `user_id` (`Event.AddConversation`, `Event.GetConversationList`), while an admin
//!   may name any user there.
//! - A requester (a connection with a `request_id`, not an admin) reaches only the conversation
//!   whose `session_channel` (the application id as a string) equals its `request_id`, and acts
//!   there only as that conversation's `user_id` (its `sid` must be it); an admin reaches every
//!   conversation (CONTRACT §5, "Reach").
//! - Reach is checked where data leaves too: `Event.ReceiveMessage` goes only to connections that
//!   reach the channel ([`reaches`]), whatever `sid` they chose.
//! - A refusal is a reply `{"name":…,"ok":false,"error":…}`; the connection stays open.
//! - Ids that identify people (`user_id`, `sender_id`, `executor_id`) and `session_channel` accept a
//!   JSON number or a string (`1` and `"1"` are the same); `message_id`, `limit` and `before_id`
//!   must be JSON integers.
//! - Output: ids that people and applications carry are written back as numbers when they are
//!   canonical decimal integers (see [`id_json`]); the seed shows `"sender_id":1`.

use std::future::Future;

use serde_json::{Map, Value, json};

use crate::apigw::{self, MissingField, WsEvent, WsResponse};
use crate::domain::{Api, ChatMessage, Connection, Conversation, user_id_from_json};
use crate::protocol::chat::{ChatReply, parse_chat_frame};
use crate::store::{ConnectionStore, ConversationStore, StoreError};

pub const ADD_CONVERSATION: &str = "Event.AddConversation";
pub const GET_CONVERSATION_LIST: &str = "Event.GetConversationList";
pub const GET_MESSAGE_LIST: &str = "Event.GetMessageList";
pub const SEND_MESSAGE: &str = "Event.SendMessage";
pub const RECEIVE_MESSAGE: &str = "Event.ReceiveMessage";
pub const READ_MESSAGE: &str = "Event.ReadMessage";
pub const GET_UNREAD_INFO: &str = "Event.GetUnreadInfo";

/// The chat API's client events, each a route of its own (selection `$request.body.name`).
/// `Event.ReceiveMessage` is a server push, not a route.
pub const CLIENT_EVENTS: &[&str] =
    &[ADD_CONVERSATION, GET_CONVERSATION_LIST, GET_MESSAGE_LIST, SEND_MESSAGE, READ_MESSAGE, GET_UNREAD_INFO];

/// `Event.GetMessageList` paging: the default and the largest `limit`.
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;

/// Why a frame is answered `ok: false`: its text is the reply's `error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

impl Refusal {
    pub fn new(text: impl Into<String>) -> Self {
        Self(text.into())
    }
}

/// A route crate's error: a refusal (answered to the client), or a failure (the Lambda fails).
pub trait RouteError: From<Refusal> + From<StoreError> + From<MissingField> + std::fmt::Display {
    /// The refusal, when this error is one.
    fn refusal(&self) -> Option<&Refusal>;
}

/// A frame from a registered chat connection, with its `args` parsed.
#[derive(Debug, Clone)]
pub struct Request {
    pub name: String,
    pub args: Args,
    pub connection: Connection,
}

/// A reply frame as the route response.
pub fn reply(frame: &ChatReply) -> WsResponse {
    apigw::reply(frame.to_json())
}

/// `{"name":…,"ok":false,"error":…}`; `name` is `null` when the frame had none.
pub fn refusal_frame(name: Option<&str>, error: &str) -> String {
    json!({"name": name, "ok": false, "error": error}).to_string()
}

/// Reads the frame and its connection, runs `route` on them, and answers: the result as
/// `ok: true`, a [`Refusal`] as `ok: false`; other errors fail the invocation.
pub async fn serve<S, E, F, Fut>(store: &S, event: &WsEvent, route: F) -> Result<WsResponse, E>
where
    S: ConnectionStore + crate::store::PresenceStore + ?Sized,
    E: RouteError,
    F: FnOnce(Request) -> Fut,
    Fut: Future<Output = Result<Value, E>>,
{
    let connection_id = apigw::connection_id(event)?;
    if event.is_base64_encoded {
        return Ok(apigw::reply(refusal_frame(None, "frames must be JSON text")));
    }
    let frame = match parse_chat_frame(event.body.as_deref().unwrap_or_default()) {
        Ok(f) => f,
        Err((name, error)) => return Ok(apigw::reply(refusal_frame(name.as_deref(), &error))),
    };
    let name = frame.name.clone();
    let connection = match store.get_connection(connection_id).await? {
        Some(c) if c.api == Api::Chat => c,
        _ => return Ok(reply(&ChatReply::err(name, "this connection is not a registered chat connection"))),
    };
    // Any frame shows the client is there (presence: `online` in conversation lists).
    store.touch_connection(connection_id, crate::domain::epoch_secs(crate::domain::now())).await?;
    let Value::Object(args) = frame.args else {
        return Ok(reply(&ChatReply::err(name, "\"args\" must be a JSON object")));
    };
    match route(Request { name: name.clone(), args: Args(args), connection }).await {
        Ok(result) => Ok(reply(&ChatReply::ok(name, result))),
        Err(e) => match e.refusal() {
            Some(r) => {
                tracing::info!(event = name, reason = %r, "refused");
                Ok(reply(&ChatReply::err(name, r.0.clone())))
            }
            None => {
                tracing::error!(event = name, error = %e, "chat route failed");
                Err(e)
            }
        },
    }
}

/// The refusal for a name a route does not serve.
pub fn unknown_event(name: &str) -> Refusal {
    if name == RECEIVE_MESSAGE {
        Refusal::new(format!("unknown event {name:?}: it is sent by the server, not by clients"))
    } else {
        Refusal::new(format!("unknown event {name:?}"))
    }
}

// ---- arguments ------------------------------------------------------------------------------

/// A frame's `args` object.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Args(pub Map<String, Value>);

impl Args {
    /// A field; `null` counts as absent.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.0.get(key).filter(|v| !v.is_null())
    }

    fn required(&self, key: &str) -> Result<&Value, Refusal> {
        self.get(key).ok_or_else(|| Refusal::new(format!("\"{key}\" is required")))
    }

    /// A person's id (`user_id`, `sender_id`, `executor_id`): a string or an integer, 1 to 256 characters.
    pub fn id(&self, key: &'static str) -> Result<String, Refusal> {
        user_id_from_json(key, self.required(key)?).map_err(|e| Refusal::new(e.to_string()))
    }

    /// An optional id (`client_msg_id`): a string or an integer, 1 to 256 characters.
    pub fn opt_id(&self, key: &'static str) -> Result<Option<String>, Refusal> {
        self.get(key).map(|v| user_id_from_json(key, v).map_err(|e| Refusal::new(e.to_string()))).transpose()
    }

    /// `session_channel`: a string or an integer, 1 to 256 characters.
    pub fn session_channel(&self) -> Result<String, Refusal> {
        self.id("session_channel")
    }

    /// `application_id` as sent (a string or an integer), with its `session_channel` (its text).
    pub fn application_id(&self) -> Result<(Value, String), Refusal> {
        let value = self.required("application_id")?;
        let channel = user_id_from_json("application_id", value).map_err(|e| Refusal::new(e.to_string()))?;
        Ok((value.clone(), channel))
    }

    /// The executor (`executor_id` or `sender_id`): must be the connection's `sid`.
    pub fn executor(&self, key: &'static str, connection: &Connection) -> Result<String, Refusal> {
        let id = self.id(key)?;
        if id != connection.user_id {
            return Err(Refusal::new(format!("{key} {id} is not this connection's sid")));
        }
        Ok(id)
    }

    /// A `user_id` argument: an admin may name any user, a requester only itself (its `sid`).
    pub fn user(&self, key: &'static str, connection: &Connection) -> Result<String, Refusal> {
        if connection.admin { self.id(key) } else { self.executor(key, connection) }
    }

    /// A required JSON integer.
    pub fn integer(&self, key: &str) -> Result<i64, Refusal> {
        self.opt_integer(key)?.ok_or_else(|| Refusal::new(format!("\"{key}\" is required")))
    }

    /// An optional JSON integer.
    pub fn opt_integer(&self, key: &str) -> Result<Option<i64>, Refusal> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => v.as_i64().map(Some).ok_or_else(|| Refusal::new(format!("\"{key}\" must be an integer"))),
        }
    }

    /// A required JSON string.
    pub fn string(&self, key: &str) -> Result<String, Refusal> {
        match self.required(key)? {
            Value::String(s) => Ok(s.clone()),
            _ => Err(Refusal::new(format!("\"{key}\" must be a string"))),
        }
    }

    /// `Event.GetMessageList`'s page size: [`DEFAULT_PAGE`] when absent, 1 to [`MAX_PAGE`].
    pub fn limit(&self) -> Result<usize, Refusal> {
        match self.opt_integer("limit")? {
            None => Ok(DEFAULT_PAGE),
            Some(n) if (1..=MAX_PAGE as i64).contains(&n) => Ok(n as usize),
            Some(_) => Err(Refusal::new(format!("\"limit\" must be between 1 and {MAX_PAGE}"))),
        }
    }
}

// ---- authorization --------------------------------------------------------------------------

/// Whether the connection may reach the conversation on `session_channel`.
pub fn check_reach(connection: &Connection, session_channel: &str) -> Result<(), Refusal> {
    if connection.admin {
        return Ok(());
    }
    match connection.request_id.as_deref() {
        Some(request_id) if request_id == session_channel => Ok(()),
        Some(_) => Err(Refusal::new(format!("conversation {session_channel} is not this requester's"))),
        None => Err(Refusal::new("the token names neither a request_id nor an admin_id")),
    }
}

/// Whether the connection reaches this conversation: an admin always; a requester when the
/// conversation is its application's and the connection's `sid` is the conversation's user.
pub fn reaches(connection: &Connection, conversation: &Conversation) -> bool {
    check_conversation_reach(connection, conversation).is_ok()
}

/// [`reaches`], with the refusal a requester gets.
pub fn check_conversation_reach(connection: &Connection, conversation: &Conversation) -> Result<(), Refusal> {
    check_reach(connection, &conversation.session_channel)?;
    if !connection.admin && connection.user_id != conversation.user_id {
        return Err(Refusal::new(format!(
            "sid {} is not the user of conversation {}: a requester acts only as its conversation's user",
            connection.user_id, conversation.session_channel
        )));
    }
    Ok(())
}

/// The conversation on `session_channel`, once the connection may reach it (a requester learns
/// nothing of conversations that are not its own).
pub async fn reachable_conversation<S, E>(store: &S, connection: &Connection, session_channel: &str) -> Result<Conversation, E>
where
    S: ConversationStore + ?Sized,
    E: From<Refusal> + From<StoreError>,
{
    check_reach(connection, session_channel)?;
    let conversation =
        store.get_conversation(session_channel).await?.ok_or_else(|| Refusal::new(format!("no conversation {session_channel}")))?;
    check_conversation_reach(connection, &conversation)?;
    Ok(conversation)
}

// ---- reply shapes ---------------------------------------------------------------------------

/// An id as the seed writes it: a JSON number when it is a canonical decimal integer (`"1"` → `1`,
/// `"-7"` → `-7`), else the string (`"01"`, `"u-1"`, a UUID).
pub fn id_json(id: &str) -> Value {
    match id.parse::<i64>() {
        Ok(n) if n.to_string() == id => Value::from(n),
        _ => Value::String(id.to_string()),
    }
}

/// `{id, session_channel, application_id, create_at, update_at}`.
pub fn conversation_json(c: &Conversation) -> Value {
    json!({
        "id": c.id,
        "session_channel": c.session_channel,
        "application_id": c.application_id,
        "create_at": c.create_at,
        "update_at": c.update_at,
    })
}

/// `{id, session_channel, content, content_type, sender_id, status, create_at, update_at}`.
pub fn message_json(m: &ChatMessage) -> Value {
    json!({
        "id": m.id,
        "session_channel": m.session_channel,
        "content": m.content,
        "content_type": m.content_type,
        "sender_id": id_json(&m.sender_id),
        "status": m.status,
        "create_at": m.create_at,
        "update_at": m.update_at,
    })
}

/// The `Event.ReceiveMessage` push.
pub fn receive_message_frame(m: &ChatMessage) -> String {
    ChatReply::ok(RECEIVE_MESSAGE, json!({"message": message_json(m)})).to_json()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: std::time::Duration = std::time::Duration::from_secs(3600);

    fn connection(sid: &str, admin: bool, request_id: Option<&str>) -> Connection {
        Connection { admin, request_id: request_id.map(str::to_string), ..Connection::opened("c", sid, Api::Chat, TTL) }
    }

    #[test]
    fn ids_are_numbers_when_canonical_integers() {
        assert_eq!(id_json("1"), json!(1));
        assert_eq!(id_json("-7"), json!(-7));
        assert_eq!(id_json("01"), json!("01"));
        assert_eq!(id_json("u-1"), json!("u-1"));
        assert_eq!(id_json("99999999999999999999"), json!("99999999999999999999"));
    }

    #[test]
    fn requesters_reach_their_own_conversation_and_admins_all() {
        let requester = connection("1", false, Some("100"));
        assert!(check_reach(&requester, "100").is_ok());
        assert!(check_reach(&requester, "101").is_err());
        assert!(check_reach(&connection("2", true, None), "101").is_ok());
        assert!(check_reach(&connection("2", false, None), "101").is_err());
    }

    #[test]
    fn args_are_typed() {
        let Value::Object(m) =
            json!({"executor_id": 1, "session_channel": "100", "message_id": "3", "limit": 0, "content": 5, "sender_id": 2.5})
        else {
            unreachable!()
        };
        let args = Args(m);
        let c = connection("1", false, Some("100"));
        assert_eq!(args.executor("executor_id", &c).unwrap(), "1");
        assert!(args.executor("executor_id", &connection("2", false, None)).is_err());
        assert_eq!(args.session_channel().unwrap(), "100");
        assert!(args.integer("message_id").is_err());
        assert!(args.integer("missing").unwrap_err().0.contains("required"));
        assert!(args.limit().is_err());
        assert!(args.string("content").is_err());
        assert!(args.id("sender_id").is_err());
        assert_eq!(Args::default().limit().unwrap(), DEFAULT_PAGE);
    }
}
