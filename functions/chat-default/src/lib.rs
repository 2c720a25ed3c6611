//! The chat API's `$default` (CONTRACT §5): a frame whose `name` is no route. The reply is
//! `{"name":<name, or null>,"ok":false,"error":…}`: an unknown event, a frame that is not JSON or
//! has no `name`, unreadable `args`, or a binary frame. The connection stays open.

use herald::apigw::{self, WsEvent, WsResponse};
use herald::chat;
use herald::protocol::chat::parse_chat_frame;

#[derive(Debug, thiserror::Error)]
pub enum ChatDefaultError {
    #[error(transparent)]
    Event(#[from] apigw::MissingField),
}

#[tracing::instrument(skip_all, fields(connection_id))]
pub async fn handle(event: WsEvent) -> Result<WsResponse, ChatDefaultError> {
    let connection_id = apigw::connection_id(&event)?;
    tracing::Span::current().record("connection_id", connection_id);
    let frame = if event.is_base64_encoded {
        chat::refusal_frame(None, "frames must be JSON text")
    } else {
        match parse_chat_frame(event.body.as_deref().unwrap_or_default()) {
            Ok(request) => chat::refusal_frame(Some(&request.name), &chat::unknown_event(&request.name).0),
            Err((name, error)) => chat::refusal_frame(name.as_deref(), &error),
        }
    };
    tracing::info!(reply = frame, "$default");
    Ok(apigw::reply(frame))
}

herald::lambda_diagnostic!(ChatDefaultError);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    async fn call(body: &str, base64: bool) -> Value {
        let mut e = WsEvent::default();
        e.request_context.connection_id = Some("c1".into());
        e.body = Some(body.into());
        e.is_base64_encoded = base64;
        let r = handle(e).await.unwrap();
        serde_json::from_slice(apigw::response_body(&r).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn unknown_names_and_bad_frames_get_ok_false() {
        let r = call(r#"{"name":"Event.Nope","args":"{}"}"#, false).await;
        assert_eq!(r, json!({"name":"Event.Nope","ok":false,"error":"unknown event \"Event.Nope\""}));
        let r = call(r#"{"name":"Event.ReceiveMessage","args":{}}"#, false).await;
        assert_eq!(r["name"], "Event.ReceiveMessage");
        assert!(r["error"].as_str().unwrap().contains("sent by the server"));
        for (body, text) in [("not json", "not valid JSON"), (r#"{"args":{}}"#, "no \"name\""), (r#"{"name":5}"#, "no \"name\"")] {
            let r = call(body, false).await;
            assert_eq!((r["name"].clone(), r["ok"].clone()), (Value::Null, json!(false)), "{body}");
            assert!(r["error"].as_str().unwrap().contains(text), "{body}: {r}");
        }
        let r = call(r#"{"name":"Event.X","args":"{oops"}"#, false).await;
        assert_eq!((r["name"].clone(), r["ok"].clone()), (json!("Event.X"), json!(false)));
        let r = call("AAEC", true).await;
        assert_eq!(r, json!({"name":null,"ok":false,"error":"frames must be JSON text"}));
    }
}
