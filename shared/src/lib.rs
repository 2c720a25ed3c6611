//! `herald`: what every Herald function links.
//!
//! - [`config`]: settings from the environment, read once at start.
//! - [`auth`]: token verification and the caller's identity (CONTRACT §1).
//! - [`domain`]: connections, subscriptions, pushes, conversations, messages.
//! - [`store`]: storage traits split by capability, with DynamoDB and in-memory implementations.
//! - [`gateway`]: post to, describe and close a WebSocket connection (API Gateway Management API).
//! - [`queue`]: hand a message to the dispatcher (SQS or in memory).
//! - [`protocol`]: JSON frames, protobuf messages and chat events.
//! - [`metrics`]: counters and timings, as Prometheus text (herald-local) or EMF (Lambda).
//! - [`platform`]: the notification platform (CONTRACT §9): templates and their rendering.
//! - [`chat`]: what the chat route functions share (arguments, authorization, reply shapes).

pub mod apigw;
pub mod auth;
pub mod chat;
pub mod config;
pub mod delivery;
pub mod domain;
pub mod gateway;
pub mod history;
pub mod metrics;
pub mod platform;
pub mod protocol;
pub mod queue;
pub mod runtime;
pub mod store;
