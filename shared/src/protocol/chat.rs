//! The chat envelope (seed 001): `{"name":"Event.X","args":"<JSON text>"}` in, and
//! `{"name":"Event.X","ok":true,"result":…}` or `{"name":"Event.X","ok":false,"error":"…"}` out.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A chat request frame with its `args` parsed (JSON text inside JSON, or an object).
#[derive(Debug, Clone, PartialEq)]
pub struct ChatRequest {
    pub name: String,
    pub args: Value,
}

/// Parses a chat frame. The error is the reply's text; the `name` is returned with it when known.
pub fn parse_chat_frame(text: &str) -> Result<ChatRequest, (Option<String>, String)> {
    let value: Value = serde_json::from_str(text).map_err(|_| (None, "the frame is not valid JSON".to_string()))?;
    let name = match value.get("name") {
        Some(Value::String(n)) => n.clone(),
        _ => return Err((None, "the frame has no \"name\"".to_string())),
    };
    let args = match value.get("args") {
        None | Some(Value::Null) => Value::Object(Default::default()),
        Some(Value::String(s)) if s.trim().is_empty() => Value::Object(Default::default()),
        Some(Value::String(s)) => serde_json::from_str(s).map_err(|_| (Some(name.clone()), "\"args\" is not valid JSON".to_string()))?,
        Some(v @ Value::Object(_)) => v.clone(),
        Some(_) => return Err((Some(name), "\"args\" must be a JSON object or JSON text".to_string())),
    };
    if !args.is_object() {
        return Err((Some(name), "\"args\" must be a JSON object".to_string()));
    }
    Ok(ChatRequest { name, args })
}

/// A chat reply or server push.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChatReply {
    pub name: String,
    pub ok: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl ChatReply {
    /// Success; `result` is kept even when `null` (`Event.ReadMessage` answers `"result":null`).
    pub fn ok(name: impl Into<String>, result: Value) -> Self {
        Self { name: name.into(), ok: true, result: Some(result), error: None }
    }

    pub fn err(name: impl Into<String>, error: impl Into<String>) -> Self {
        Self { name: name.into(), ok: false, result: None, error: Some(error.into()) }
    }

    pub fn to_json(&self) -> String {
        let mut obj = serde_json::Map::new();
        obj.insert("name".into(), Value::String(self.name.clone()));
        obj.insert("ok".into(), Value::Bool(self.ok));
        if self.ok {
            obj.insert("result".into(), self.result.clone().unwrap_or(Value::Null));
        } else {
            obj.insert("error".into(), Value::String(self.error.clone().unwrap_or_default()));
        }
        Value::Object(obj).to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn args_may_be_json_text_or_an_object() {
        let a = parse_chat_frame(r#"{"name":"Event.AddConversation","args":"{\"user_id\":1,\"application_id\":100}"}"#).unwrap();
        let b = parse_chat_frame(r#"{"name":"Event.AddConversation","args":{"user_id":1,"application_id":100}}"#).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.args, json!({"user_id":1,"application_id":100}));
    }

    #[test]
    fn bad_args_keep_the_name() {
        let (name, err) = parse_chat_frame(r#"{"name":"Event.SendMessage","args":"{oops"}"#).unwrap_err();
        assert_eq!(name.as_deref(), Some("Event.SendMessage"));
        assert!(err.contains("args"));
    }

    #[test]
    fn read_message_reply_keeps_result_null() {
        let v: Value = serde_json::from_str(&ChatReply::ok("Event.ReadMessage", Value::Null).to_json()).unwrap();
        assert_eq!(v, json!({"name":"Event.ReadMessage","ok":true,"result":null}));
    }
}
