//! The notification platform (CONTRACT §9, seed 004): templates and their rendering.

pub mod templates;
