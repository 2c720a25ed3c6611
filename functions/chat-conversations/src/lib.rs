//! The chat API's conversation routes (CONTRACT §5, seed 001):
//!
//! - `Event.AddConversation {user_id, application_id}` → the conversation
//!   `{id, session_channel, application_id, create_at, update_at}`; one per application (a second
//!   call answers the first one's conversation). A requester may only add the conversation of its
//!   own `request_id`, for itself (`user_id` = its `sid`); when that conversation exists with
//!   another user, the requester is refused. The conversation's user becomes a participant of the
//!   channel.
//! - `Event.GetConversationList {user_id}` → `{"conversations":[…]}` by id; a requester lists only
//!   its own (its `sid`, its `request_id`'s conversation), an admin any user's. Each carries
//!   `"online"`: whether the conversation's user has a chat connection whose client was heard
//!   from within the presence timeout (CONTRACT §8; a lost `$disconnect` does not keep it online).

use herald::apigw::{self, WsEvent, WsResponse};
use herald::chat::{self, Refusal, Request, RouteError};
use herald::domain::{now, rfc3339};
use std::time::Duration;

use herald::domain::{Api, epoch_secs};
use herald::store::{ConnectionStore, ConversationStore, MemberStore, PresenceStore, StoreError};
use serde_json::{Value, json};

#[derive(Debug, thiserror::Error)]
pub enum ConversationsError {
    #[error(transparent)]
    Event(#[from] apigw::MissingField),
    #[error("store failed: {0}")]
    Store(#[from] StoreError),
    #[error("refused: {0}")]
    Refused(#[from] Refusal),
}

impl RouteError for ConversationsError {
    fn refusal(&self) -> Option<&Refusal> {
        match self {
            Self::Refused(r) => Some(r),
            _ => None,
        }
    }
}

#[tracing::instrument(skip_all, fields(connection_id = event.request_context.connection_id.as_deref()))]
pub async fn handle<S>(store: &S, presence_timeout: Duration, event: WsEvent) -> Result<WsResponse, ConversationsError>
where
    S: ConnectionStore + ConversationStore + MemberStore + PresenceStore + ?Sized,
{
    chat::serve(store, &event, |request| route(store, presence_timeout, request)).await
}

async fn route<S>(store: &S, presence_timeout: Duration, request: Request) -> Result<Value, ConversationsError>
where
    S: ConnectionStore + ConversationStore + MemberStore + ?Sized,
{
    match request.name.as_str() {
        chat::ADD_CONVERSATION => add_conversation(store, &request).await,
        chat::GET_CONVERSATION_LIST => conversation_list(store, presence_timeout, &request).await,
        other => Err(chat::unknown_event(other).into()),
    }
}

async fn add_conversation<S>(store: &S, request: &Request) -> Result<Value, ConversationsError>
where
    S: ConversationStore + MemberStore + ?Sized,
{
    let connection = &request.connection;
    let user_id = request.args.user("user_id", connection)?;
    let (application_id, channel) = request.args.application_id()?;
    chat::check_reach(connection, &channel)?;
    let (conversation, created) = store.create_conversation(&application_id, &user_id, &rfc3339(now())).await?;
    // The application's conversation may exist already, with another user: a requester may not
    // take it over, nor learn of it.
    chat::check_conversation_reach(connection, &conversation)?;
    // Idempotent, so a retry after a failure here completes the membership.
    store.add_member(&conversation.session_channel, &conversation.user_id).await?;
    tracing::info!(session_channel = conversation.session_channel, id = conversation.id, created, "conversation");
    Ok(chat::conversation_json(&conversation))
}

async fn conversation_list<S>(store: &S, presence_timeout: Duration, request: &Request) -> Result<Value, ConversationsError>
where
    S: ConnectionStore + ConversationStore + ?Sized,
{
    let connection = &request.connection;
    let user_id = request.args.user("user_id", connection)?;
    let now = epoch_secs(herald::domain::now());
    let mut conversations = Vec::new();
    for c in store.user_conversations(&user_id).await?.iter().filter(|c| chat::reaches(connection, c)) {
        let online = store
            .user_connections(&c.user_id)
            .await?
            .iter()
            .any(|conn| conn.api == Api::Chat && herald::history::is_live(conn, now, presence_timeout));
        let mut value = chat::conversation_json(c);
        if let Value::Object(map) = &mut value {
            map.insert("online".into(), Value::Bool(online));
        }
        conversations.push(value);
    }
    Ok(json!({ "conversations": conversations }))
}

herald::lambda_diagnostic!(ConversationsError);

#[cfg(test)]
mod tests {
    use super::*;
    use herald::domain::{Api, Connection};

    const TTL: std::time::Duration = std::time::Duration::from_secs(3600);
    use herald::store::memory::MemoryStore;

    async fn connect(store: &MemoryStore, id: &str, sid: &str, admin: bool, request_id: Option<&str>) {
        let c = Connection { admin, request_id: request_id.map(str::to_string), ..Connection::opened(id, sid, Api::Chat, TTL) };
        store.put_connection(&c).await.unwrap();
    }

    async fn call(store: &MemoryStore, connection_id: &str, body: &str) -> Value {
        let mut e = WsEvent::default();
        e.request_context.connection_id = Some(connection_id.into());
        e.body = Some(body.into());
        let r = handle(store, std::time::Duration::from_secs(90), e).await.unwrap();
        serde_json::from_slice(apigw::response_body(&r).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn seed_add_conversation_is_idempotent_and_listed() {
        let store = MemoryStore::new();
        connect(&store, "admin", "2", true, None).await;
        let r = call(&store, "admin", r#"{"name":"Event.AddConversation","args":"{\"user_id\":1,\"application_id\":100}"}"#).await;
        assert_eq!(r["name"], "Event.AddConversation");
        assert_eq!(r["ok"], true);
        let c = &r["result"];
        assert_eq!((c["id"].clone(), c["session_channel"].clone(), c["application_id"].clone()), (json!(1), json!("100"), json!(100)));
        assert!(c["create_at"].is_string() && c["update_at"].is_string());
        assert_eq!(c.as_object().unwrap().len(), 5);
        let again = call(&store, "admin", r#"{"name":"Event.AddConversation","args":{"user_id":"1","application_id":100}}"#).await;
        assert_eq!(again["result"], r["result"]);
        assert_eq!(store.channel_members("100").await.unwrap(), vec!["1".to_string()]);

        let list = call(&store, "admin", r#"{"name":"Event.GetConversationList","args":"{\"user_id\":1}"}"#).await;
        let mut listed = r["result"].clone();
        listed["online"] = json!(false);
        assert_eq!(list["result"], json!({"conversations": [listed]}), "user 1 has no connection: offline");
    }

    #[tokio::test]
    async fn online_is_a_recent_frame_of_the_users_chat_connection() {
        let store = MemoryStore::new();
        connect(&store, "admin", "2", true, None).await;
        call(&store, "admin", r#"{"name":"Event.AddConversation","args":{"user_id":1,"application_id":100}}"#).await;
        let list = r#"{"name":"Event.GetConversationList","args":{"user_id":1}}"#;
        connect(&store, "user", "1", false, Some("100")).await;
        assert_eq!(call(&store, "admin", list).await["result"]["conversations"][0]["online"], true);
        // Its client went silent long ago (a lost $disconnect leaves the record): offline.
        let mut stale = store.get_connection("user").await.unwrap().unwrap();
        stale.last_seen -= 3600;
        stale.connected_at -= 3_600_000;
        store.put_connection(&stale).await.unwrap();
        assert_eq!(call(&store, "admin", list).await["result"]["conversations"][0]["online"], false);
        // A frame from it brings it back.
        call(&store, "user", list).await;
        assert_eq!(call(&store, "admin", list).await["result"]["conversations"][0]["online"], true);
    }

    #[tokio::test]
    async fn a_requester_adds_and_lists_only_its_own() {
        let store = MemoryStore::new();
        connect(&store, "req", "1", false, Some("100")).await;
        connect(&store, "admin", "2", true, None).await;
        call(&store, "admin", r#"{"name":"Event.AddConversation","args":{"user_id":1,"application_id":7}}"#).await;
        let r = call(&store, "req", r#"{"name":"Event.AddConversation","args":{"user_id":1,"application_id":"100"}}"#).await;
        assert_eq!(
            (r["ok"].clone(), r["result"]["id"].clone(), r["result"]["application_id"].clone()),
            (json!(true), json!(2), json!("100"))
        );
        let list = call(&store, "req", r#"{"name":"Event.GetConversationList","args":{"user_id":1}}"#).await;
        let ids: Vec<&Value> = list["result"]["conversations"].as_array().unwrap().iter().map(|c| &c["session_channel"]).collect();
        assert_eq!(ids, vec![&json!("100")]);
        let all = call(&store, "admin", r#"{"name":"Event.GetConversationList","args":{"user_id":1}}"#).await;
        assert_eq!(all["result"]["conversations"].as_array().unwrap().len(), 2);
    }

    #[tokio::test]
    async fn a_requester_cannot_take_over_its_applications_conversation_with_another_sid() {
        let store = MemoryStore::new();
        connect(&store, "owner", "1", false, Some("100")).await;
        connect(&store, "other", "9", false, Some("100")).await;
        let r = call(&store, "owner", r#"{"name":"Event.AddConversation","args":{"user_id":1,"application_id":100}}"#).await;
        assert_eq!(r["ok"], true, "{r}");
        let r = call(&store, "other", r#"{"name":"Event.AddConversation","args":{"user_id":9,"application_id":100}}"#).await;
        assert_eq!(r["ok"], false, "{r}");
        assert!(r.get("result").is_none(), "nothing of the conversation is told: {r}");
        assert_eq!(store.get_conversation("100").await.unwrap().unwrap().user_id, "1");
        let list = call(&store, "other", r#"{"name":"Event.GetConversationList","args":{"user_id":9}}"#).await;
        assert_eq!(list["result"], json!({"conversations": []}));
    }

    #[tokio::test]
    async fn refusals_and_bad_args_answer_ok_false() {
        let store = MemoryStore::new();
        connect(&store, "req", "1", false, Some("100")).await;
        let cases = [
            (r#"{"name":"Event.AddConversation","args":{"user_id":1,"application_id":101}}"#, "requester"),
            (r#"{"name":"Event.AddConversation","args":{"user_id":9,"application_id":100}}"#, "sid"),
            (r#"{"name":"Event.GetConversationList","args":{"user_id":9}}"#, "sid"),
            (r#"{"name":"Event.AddConversation","args":{"user_id":1}}"#, "required"),
            (r#"{"name":"Event.AddConversation","args":{"user_id":1,"application_id":[1]}}"#, "string or a number"),
            (r#"{"name":"Event.AddConversation","args":{"user_id":true,"application_id":100}}"#, "string or a number"),
            (r#"{"name":"Event.GetConversationList","args":"{not json"}"#, "args"),
            (r#"{"name":"Event.SendMessage","args":{}}"#, "unknown event"),
        ];
        for (frame, text) in cases {
            let r = call(&store, "req", frame).await;
            assert_eq!(r["ok"], false, "{frame}");
            assert!(r["error"].as_str().unwrap().contains(text), "{frame}: {r}");
            assert!(r.get("result").is_none());
        }
        assert!(store.get_conversation("101").await.unwrap().is_none());
        assert!(store.get_conversation("100").await.unwrap().is_none());
        // An unregistered connection is refused too.
        let r = call(&store, "nobody", r#"{"name":"Event.GetConversationList","args":{"user_id":1}}"#).await;
        assert_eq!(r["ok"], false);
    }
}
