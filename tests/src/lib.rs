//! Harness for Herald's integration tests.

pub mod dynamo;
pub mod local;
