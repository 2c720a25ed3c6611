//! What travels on the wire: the notification API's JSON frames (CONTRACT §3), seed 003's
//! protobuf messages, and the chat envelope (CONTRACT §5).

pub mod chat;
mod notify;

pub use notify::*;

/// Seed 003's messages, generated from `proto/push.proto`.
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/herald.push.v1.rs"));
}

/// API Gateway's frame limit (32 KB) and message limit (128 KB), kept locally too (CONTRACT §7).
pub const MAX_FRAME_BYTES: usize = 32 * 1024;
pub const MAX_MESSAGE_BYTES: usize = 128 * 1024;
