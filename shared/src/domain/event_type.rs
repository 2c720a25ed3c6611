//! Event types (CONTRACT §9): a fixed event (`user.registered`, `film.added`) and the template
//! it is sent with on each channel.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::Channel;

/// An event type: per channel, the name of its template (any locale of it: the recipient's
/// picks one); `critical` ones ignore quiet hours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventType {
    pub name: String,
    pub templates: BTreeMap<Channel, String>,
    pub critical: bool,
    pub created_at: String,
    pub updated_at: String,
}

/// Event types in the order lists show them: by name.
pub fn sort_event_types(types: &mut [EventType]) {
    types.sort_by(|a, b| a.name.cmp(&b.name));
}
