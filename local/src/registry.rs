//! The open WebSocket connections of this process, and the management API over them
//! ([`LocalGateway`]): what API Gateway keeps for a deployed API.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use herald::gateway::{ConnectionInfo, Frame, Gateway, GatewayError};
use tokio::sync::mpsc;

/// What the connection's task is told to do.
#[derive(Debug)]
pub enum Outbound {
    Frame(Frame),
    Close { code: u16, reason: &'static str },
}

/// A live connection, as the registry sees it.
#[derive(Debug)]
pub struct LiveConnection {
    pub tx: mpsc::UnboundedSender<Outbound>,
    /// Epoch milliseconds.
    pub connected_at: i64,
    pub last_active_at: AtomicI64,
    pub source_ip: String,
    pub user_agent: Option<String>,
    /// `?format=protobuf`: posted data that is not a JSON object goes out as a binary frame.
    pub prefers_binary: bool,
}

#[derive(Debug, Default)]
pub struct Registry {
    connections: RwLock<HashMap<String, Arc<LiveConnection>>>,
}

pub fn epoch_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn rfc3339_ms(ms: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    Some(herald::domain::rfc3339(t))
}

impl Registry {
    pub fn insert(&self, id: String, conn: Arc<LiveConnection>) {
        self.write().insert(id, conn);
    }

    pub fn remove(&self, id: &str) {
        self.write().remove(id);
    }

    pub fn get(&self, id: &str) -> Option<Arc<LiveConnection>> {
        self.connections.read().unwrap_or_else(|e| e.into_inner()).get(id).cloned()
    }

    pub fn len(&self) -> usize {
        self.connections.read().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, Arc<LiveConnection>>> {
        self.connections.write().unwrap_or_else(|e| e.into_inner())
    }

    /// `PostToConnection` with raw data: a text frame when it is UTF-8 (for a protobuf
    /// connection, only when it is a JSON object), a binary frame otherwise.
    pub fn post_data(&self, id: &str, data: Vec<u8>) -> Result<(), GatewayError> {
        let conn = self.get(id).ok_or_else(|| GatewayError::Gone(id.to_string()))?;
        let json_object = data.first() == Some(&b'{') && serde_json::from_slice::<serde::de::IgnoredAny>(&data).is_ok();
        let frame = if conn.prefers_binary && !json_object {
            Frame::Binary(data)
        } else {
            match String::from_utf8(data) {
                Ok(text) => Frame::Text(text),
                Err(e) => Frame::Binary(e.into_bytes()),
            }
        };
        Self::deliver(id, &conn, frame)
    }

    pub fn send(&self, id: &str, frame: Frame) -> Result<(), GatewayError> {
        let conn = self.get(id).ok_or_else(|| GatewayError::Gone(id.to_string()))?;
        Self::deliver(id, &conn, frame)
    }

    fn deliver(id: &str, conn: &LiveConnection, frame: Frame) -> Result<(), GatewayError> {
        conn.tx.send(Outbound::Frame(frame)).map_err(|_| GatewayError::Gone(id.to_string()))
    }

    pub fn close(&self, id: &str, code: u16, reason: &'static str) -> Result<(), GatewayError> {
        let conn = self.get(id).ok_or_else(|| GatewayError::Gone(id.to_string()))?;
        conn.tx.send(Outbound::Close { code, reason }).map_err(|_| GatewayError::Gone(id.to_string()))
    }

    pub fn describe(&self, id: &str) -> Result<ConnectionInfo, GatewayError> {
        let conn = self.get(id).ok_or_else(|| GatewayError::Gone(id.to_string()))?;
        Ok(ConnectionInfo {
            connected_at: rfc3339_ms(conn.connected_at),
            last_active_at: rfc3339_ms(conn.last_active_at.load(Ordering::Relaxed)),
            source_ip: Some(conn.source_ip.clone()),
            user_agent: conn.user_agent.clone(),
        })
    }
}

/// The management API in-process: what the handlers get in herald-local.
#[derive(Debug, Clone)]
pub struct LocalGateway(pub Arc<Registry>);

#[async_trait]
impl Gateway for LocalGateway {
    async fn post(&self, connection_id: &str, frame: &Frame) -> Result<(), GatewayError> {
        if frame.as_bytes().len() > herald::protocol::MAX_MESSAGE_BYTES {
            return Err(GatewayError::PayloadRefused("over 128 KB".into()));
        }
        self.0.send(connection_id, frame.clone())
    }

    async fn describe(&self, connection_id: &str) -> Result<ConnectionInfo, GatewayError> {
        self.0.describe(connection_id)
    }

    async fn close(&self, connection_id: &str) -> Result<(), GatewayError> {
        self.0.close(connection_id, 1000, "")
    }
}
