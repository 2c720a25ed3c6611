//! Harness for Herald's integration tests.

pub mod browser;
pub mod dynamo;
pub mod local;
