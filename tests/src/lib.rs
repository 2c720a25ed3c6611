//! Harness for Herald's integration tests.

pub mod browser;
pub mod dynamo;
pub mod kafka;
pub mod local;
