//! The notification platform (CONTRACT §9, seed 004): templates and their rendering; users'
//! preferences and quiet hours; the channels' senders.

pub mod channels;
pub mod cron;
pub mod planner;
pub mod preferences;
pub mod providers;
pub mod schedule;
pub mod templates;
pub mod user_info;
