//! Sending to, describing and closing a WebSocket connection: API Gateway's Management API.

mod sdk;

use async_trait::async_trait;
pub use sdk::SdkGateway;

/// A frame to send: API Gateway sends text when the data is valid UTF-8 and binary otherwise;
/// herald-local follows the flag.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Text(String),
    Binary(Vec<u8>),
}

impl Frame {
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(t) => t.as_bytes(),
            Self::Binary(b) => b,
        }
    }

    pub fn is_binary(&self) -> bool {
        matches!(self, Self::Binary(_))
    }
}

/// What API Gateway tells of a connection (`GetConnection`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub connected_at: Option<String>,
    pub last_active_at: Option<String>,
    pub source_ip: Option<String>,
    pub user_agent: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// 410: the connection no longer exists; its records should be deleted.
    #[error("connection {0} is gone")]
    Gone(String),
    /// 429: slow down and retry.
    #[error("throttled by the management API")]
    Throttled,
    /// 413 or 400: the payload can never be sent as it is.
    #[error("payload refused: {0}")]
    PayloadRefused(String),
    #[error("management API failed: {0}")]
    Other(#[source] Box<dyn std::error::Error + Send + Sync>),
}

#[async_trait]
pub trait Gateway: Send + Sync {
    async fn post(&self, connection_id: &str, frame: &Frame) -> Result<(), GatewayError>;
    async fn describe(&self, connection_id: &str) -> Result<ConnectionInfo, GatewayError>;
    async fn close(&self, connection_id: &str) -> Result<(), GatewayError>;
}

/// A gateway that records what was sent, for unit tests of handlers.
#[derive(Debug, Default)]
pub struct RecordingGateway {
    sent: std::sync::Mutex<Vec<(String, Frame)>>,
    closed: std::sync::Mutex<Vec<String>>,
    gone: std::sync::Mutex<std::collections::HashSet<String>>,
}

impl RecordingGateway {
    /// From now on, posts to this connection answer 410.
    pub fn mark_gone(&self, connection_id: &str) {
        lock(&self.gone).insert(connection_id.to_string());
    }

    pub fn sent(&self) -> Vec<(String, Frame)> {
        lock(&self.sent).clone()
    }

    pub fn sent_to(&self, connection_id: &str) -> Vec<Frame> {
        lock(&self.sent).iter().filter(|(c, _)| c == connection_id).map(|(_, f)| f.clone()).collect()
    }

    pub fn closed(&self) -> Vec<String> {
        lock(&self.closed).clone()
    }
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[async_trait]
impl Gateway for RecordingGateway {
    async fn post(&self, connection_id: &str, frame: &Frame) -> Result<(), GatewayError> {
        if lock(&self.gone).contains(connection_id) {
            return Err(GatewayError::Gone(connection_id.to_string()));
        }
        lock(&self.sent).push((connection_id.to_string(), frame.clone()));
        Ok(())
    }

    async fn describe(&self, connection_id: &str) -> Result<ConnectionInfo, GatewayError> {
        if lock(&self.gone).contains(connection_id) {
            return Err(GatewayError::Gone(connection_id.to_string()));
        }
        Ok(ConnectionInfo { connected_at: None, last_active_at: None, source_ip: None, user_agent: None })
    }

    async fn close(&self, connection_id: &str) -> Result<(), GatewayError> {
        lock(&self.closed).push(connection_id.to_string());
        lock(&self.gone).insert(connection_id.to_string());
        Ok(())
    }
}
