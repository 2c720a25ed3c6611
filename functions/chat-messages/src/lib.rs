//! The chat API's message routes (CONTRACT §5, seed 001):
//!
//! - `Event.GetMessageList {session_channel, executor_id, limit?, before_id?}` →
//!   `{"Messages":[…]}`, oldest first: the newest `limit` (default 100, at most 1000) messages with
//!   ids below `before_id` (all when absent).
//! - `Event.SendMessage {session_channel, sender_id, content, content_type?, client_msg_id?}` →
//!   `{"message":{…}}`; `content_type` 2 is an image, anything else text (1). The message is
//!   pushed as `Event.ReceiveMessage` to every chat connection of the channel's other
//!   participants. With a `client_msg_id` seen before on the channel, the stored message is
//!   answered and nothing is pushed again.
//! - `Event.ReadMessage {session_channel, executor_id, message_id}` → `null`; status 1. Reading
//!   one's own message changes nothing (it is unread for the others, not for its sender).
//! - `Event.GetUnreadInfo {executor_id}` → `{"total":N,"channels":[{"session_channel":…,"count":N}]}`:
//!   messages with status 0 sent by someone else, on the channels the executor takes part in
//!   (a requester: its own conversation); channels with nothing unread are left out.
//!
//! A message object is `{id, session_channel, content, content_type, sender_id, status, create_at,
//! update_at}` ([`herald::chat::message_json`]). Participants of a channel: its conversation's user,
//! and every admin who has sent, read or listed its messages.

use std::collections::BTreeSet;

use herald::apigw::{self, WsEvent, WsResponse};
use herald::chat::{self, Refusal, Request, RouteError};
use herald::domain::{Api, ChatMessage, Connection, ContentType, Conversation, NewMessage, now, rfc3339};
use herald::gateway::{Frame, Gateway, GatewayError};
use herald::store::{ConnectionStore, ConversationStore, MemberStore, MessageStore, StoreError};
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum MessagesError {
    #[error(transparent)]
    Event(#[from] apigw::MissingField),
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
}

impl RouteError for MessagesError {
    fn refusal(&self) -> Option<&Refusal> {
        match self {
            Self::Refused(r) => Some(r),
            _ => None,
        }
    }
}

#[tracing::instrument(skip_all, fields(connection_id = event.request_context.connection_id.as_deref()))]
pub async fn handle<S>(store: &S, gateway: &dyn Gateway, event: WsEvent) -> Result<WsResponse, MessagesError>
where
    S: ConnectionStore + ConversationStore + MessageStore + MemberStore + herald::store::PresenceStore + ?Sized,
{
    chat::serve(store, &event, |request| route(store, gateway, request)).await
}

async fn route<S>(store: &S, gateway: &dyn Gateway, request: Request) -> Result<Value, MessagesError>
where
    S: ConnectionStore + ConversationStore + MessageStore + MemberStore + ?Sized,
{
    match request.name.as_str() {
        chat::GET_MESSAGE_LIST => message_list(store, &request).await,
        chat::SEND_MESSAGE => send_message(store, gateway, &request).await,
        chat::READ_MESSAGE => read_message(store, &request).await,
        chat::GET_UNREAD_INFO => unread_info(store, &request).await,
        other => Err(chat::unknown_event(other).into()),
    }
}

/// An admin who acts on a channel becomes one of its participants.
async fn join_if_admin<S: MemberStore + ?Sized>(store: &S, connection: &Connection, session_channel: &str) -> Result<(), StoreError> {
    if connection.admin { store.add_member(session_channel, &connection.user_id).await } else { Ok(()) }
}

async fn message_list<S>(store: &S, request: &Request) -> Result<Value, MessagesError>
where
    S: ConversationStore + MessageStore + MemberStore + ?Sized,
{
    let (args, connection) = (&request.args, &request.connection);
    let channel = args.session_channel()?;
    args.executor("executor_id", connection)?;
    let limit = args.limit()?;
    let before_id = args.opt_integer("before_id")?;
    chat::reachable_conversation::<_, MessagesError>(store, connection, &channel).await?;
    join_if_admin(store, connection, &channel).await?;
    let messages: Vec<Value> = store.list_messages(&channel, before_id, limit).await?.iter().map(chat::message_json).collect();
    Ok(json!({ "Messages": messages }))
}

async fn send_message<S>(store: &S, gateway: &dyn Gateway, request: &Request) -> Result<Value, MessagesError>
where
    S: ConnectionStore + ConversationStore + MessageStore + MemberStore + ?Sized,
{
    let (args, connection) = (&request.args, &request.connection);
    let channel = args.session_channel()?;
    let sender_id = args.executor("sender_id", connection)?;
    let content = args.string("content")?;
    if content.is_empty() {
        return Err(Refusal::new("\"content\" must not be empty").into());
    }
    let content_type = ContentType::from_code(args.get("content_type").and_then(Value::as_i64));
    let client_msg_id = args.opt_id("client_msg_id")?;
    let conversation = chat::reachable_conversation::<_, MessagesError>(store, connection, &channel).await?;
    join_if_admin(store, connection, &channel).await?;
    let new = NewMessage { session_channel: channel, content, content_type, sender_id, client_msg_id, create_at: rfc3339(now()) };
    let (message, created) = store.append_message(&new).await?;
    if created {
        push(store, gateway, connection, &conversation, &message).await;
    } else {
        tracing::info!(id = message.id, "duplicate client_msg_id: the stored message, not pushed again");
    }
    Ok(json!({ "message": chat::message_json(&message) }))
}

/// `Event.ReceiveMessage` to every chat connection of the other participants. The message is
/// stored already: failures are logged, not returned (a retried frame would not push again);
/// a connection found gone (410) is deleted.
async fn push<S>(store: &S, gateway: &dyn Gateway, sender: &Connection, conversation: &Conversation, message: &ChatMessage)
where
    S: ConnectionStore + MemberStore + ?Sized,
{
    let mut participants: BTreeSet<String> = match store.channel_members(&message.session_channel).await {
        Ok(m) => m.into_iter().collect(),
        Err(e) => {
            tracing::error!(error = %e, "could not read the channel's participants; pushing to its user only");
            BTreeSet::new()
        }
    };
    participants.insert(conversation.user_id.clone());
    participants.remove(&message.sender_id);
    let mut targets = Vec::new();
    for participant in &participants {
        match store.user_connections(participant).await {
            // Reach is checked where data leaves: a connection that chose a participant's sid
            // but does not reach this conversation (another application's requester) gets nothing.
            Ok(cs) => targets.extend(
                cs.into_iter()
                    .filter(|c| c.api == Api::Chat && c.connection_id != sender.connection_id && chat::reaches(c, conversation))
                    .map(|c| c.connection_id),
            ),
            Err(e) => tracing::error!(error = %e, participant, "could not read a participant's connections"),
        }
    }
    let frame = Frame::Text(chat::receive_message_frame(message).into());
    let results = futures::future::join_all(targets.iter().map(|id| gateway.post(id, &frame))).await;
    for (connection_id, result) in targets.iter().zip(results) {
        match result {
            Ok(()) => {}
            // A stale connection (its $disconnect never ran): delete it, as dispatch does.
            Err(GatewayError::Gone(_)) => {
                if let Err(e) = store.delete_connection(connection_id).await {
                    tracing::warn!(connection_id, error = %e, "could not delete a gone connection");
                }
            }
            Err(e) => tracing::warn!(connection_id, error = %e, "could not push Event.ReceiveMessage"),
        }
    }
    tracing::info!(id = message.id, connections = targets.len(), "message sent");
}

async fn read_message<S>(store: &S, request: &Request) -> Result<Value, MessagesError>
where
    S: ConversationStore + MessageStore + MemberStore + ?Sized,
{
    let (args, connection) = (&request.args, &request.connection);
    let channel = args.session_channel()?;
    let executor = args.executor("executor_id", connection)?;
    let message_id = args.integer("message_id")?;
    chat::reachable_conversation::<_, MessagesError>(store, connection, &channel).await?;
    let Some(message) = store.get_message(&channel, message_id).await? else {
        return Err(Refusal::new(format!("no message {message_id} on channel {channel}")).into());
    };
    join_if_admin(store, connection, &channel).await?;
    if message.sender_id != executor {
        store.mark_read(&channel, message_id, &rfc3339(now())).await?;
    }
    Ok(Value::Null)
}

async fn unread_info<S>(store: &S, request: &Request) -> Result<Value, MessagesError>
where
    S: ConversationStore + MessageStore + MemberStore + ?Sized,
{
    let connection = &request.connection;
    let executor = request.args.executor("executor_id", connection)?;
    let mut channels = BTreeSet::new();
    if connection.admin {
        // A conversation's user is made a member when the conversation is added.
        channels.extend(store.member_channels(&executor).await?);
    } else if let Some(own) = connection.request_id.as_deref()
        && let Some(conversation) = store.get_conversation(own).await?
        && chat::reaches(connection, &conversation)
    {
        channels.insert(own.to_string());
    }
    let channels: Vec<String> = channels.into_iter().collect();
    let mut counts = store.unread_counts(&channels, &executor).await?;
    counts.retain(|c| c.count > 0);
    counts.sort_by(|a, b| a.session_channel.cmp(&b.session_channel));
    let total: i64 = counts.iter().map(|c| c.count).sum();
    let channels: Vec<Value> = counts.iter().map(|c| json!({"session_channel": c.session_channel, "count": c.count})).collect();
    Ok(json!({ "total": total, "channels": channels }))
}

herald::lambda_diagnostic!(MessagesError);

#[cfg(test)]
mod tests;
