//! The tables, defined once: the DynamoDB store, `herald-local --create-resources` and the SAM
//! template (checked by a test) all follow these definitions.

/// A key attribute's DynamoDB type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyType {
    S,
    N,
}

impl KeyType {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::S => "S",
            Self::N => "N",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAttr {
    pub name: &'static str,
    pub kind: KeyType,
}

const fn s(name: &'static str) -> KeyAttr {
    KeyAttr { name, kind: KeyType::S }
}

const fn n(name: &'static str) -> KeyAttr {
    KeyAttr { name, kind: KeyType::N }
}

/// Which attributes a global secondary index carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Projection {
    All,
    KeysOnly,
}

impl Projection {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "ALL",
            Self::KeysOnly => "KEYS_ONLY",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexDef {
    pub name: &'static str,
    pub hash: KeyAttr,
    pub range: Option<KeyAttr>,
    pub projection: Projection,
}

/// Which table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TableId {
    Connections,
    Subscriptions,
    Deliveries,
    Conversations,
    Messages,
    Members,
    Counters,
    Templates,
    Users,
    EventTypes,
    Notifications,
    Mailings,
    History,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TableDef {
    pub id: TableId,
    /// The name after the prefix (`herald-` + `connections`).
    pub suffix: &'static str,
    /// The resource's logical id in `infra/template.yaml`.
    pub logical_id: &'static str,
    /// The environment variable that overrides the whole name (the SAM template sets it).
    pub env_var: &'static str,
    pub hash: KeyAttr,
    pub range: Option<KeyAttr>,
    pub indexes: &'static [IndexDef],
    /// The TTL attribute (epoch seconds), if items expire.
    pub ttl: Option<&'static str>,
}

/// Attribute names the store and the indexes share.
pub mod attr {
    pub const CONNECTION_ID: &str = "connection_id";
    pub const USER_ID: &str = "user_id";
    pub const EVENT_NAME: &str = "event_name";
    pub const USER_EVENT: &str = "user_event";
    /// A subscription's event and shard ([`event_shard_key`](crate::store::event_shard_key)).
    pub const EVENT_SHARD: &str = "event_shard";
    pub const PUSH_ID: &str = "push_id";
    pub const SESSION_CHANNEL: &str = "session_channel";
    pub const ID: &str = "id";
    pub const MEMBER_ID: &str = "member_id";
    pub const COUNTER_ID: &str = "counter_id";
    pub const EXPIRES_AT: &str = "expires_at";
    /// A template's id, or a slot marker's key ([`template_slot_key`](crate::store::template_slot_key)).
    pub const TEMPLATE_ID: &str = "template_id";
    /// A template's name and channel ([`template_name_key`](crate::store::template_name_key)).
    pub const NAME_CHANNEL: &str = "name_channel";
    /// The same value on every template (not on slot markers): the `by_kind` index lists them.
    pub const KIND: &str = "kind";
    /// A user profile's shard ([`user_shard_key`](crate::store::user_shard_key)): the `by_shard`
    /// index lists every profile, a shard at a time.
    pub const USER_SHARD: &str = "user_shard";
    /// An event type's name.
    pub const EVENT_TYPE: &str = "event_type";
    /// A history record's id, or an event's idempotency marker (`event:<id>`).
    pub const NOTIFICATION_ID: &str = "notification_id";
    /// The event a history record belongs to.
    pub const EVENT_ID: &str = "event_id";
    /// A history record's creation time and id (`<RFC 3339>#<id>`): the indexes' order.
    pub const CREATED_KEY: &str = "created_key";
    /// A mailing's id (or a kept event's).
    pub const MAILING_ID: &str = "mailing_id";
    /// A history stream (`user:<id>`, `event:<name>`), or a push's idempotency marker (`#key:<key>`).
    pub const STREAM: &str = "stream";
    /// A push's offset in its stream; 0 is the stream's head (and a marker's only item).
    pub const OFFSET: &str = "offset";
}

pub const BY_USER: &str = "by_user";
/// An event's subscribers, one partition key per event and shard
/// ([`EVENT_SHARDS`](crate::store::EVENT_SHARDS)), so that none grows with the audience.
pub const BY_EVENT: &str = "by_event";
pub const BY_USER_EVENT: &str = "by_user_event";
pub const BY_CHANNEL: &str = "by_channel";
/// The templates of one name and channel, every locale.
pub const BY_NAME: &str = "by_name";
/// Every template (one partition: the admins' templates are few).
pub const BY_KIND: &str = "by_kind";
/// Every user profile, spread over [`USER_SHARDS`](crate::store::USER_SHARDS) partition keys so
/// that none grows with the audience (`{"all":true}` mailings page through them).
pub const BY_SHARD: &str = "by_shard";

pub const TABLES: &[TableDef] = &[
    TableDef {
        id: TableId::Connections,
        suffix: "connections",
        logical_id: "ConnectionsTable",
        env_var: "HERALD_TABLE_CONNECTIONS",
        hash: s(attr::CONNECTION_ID),
        range: None,
        indexes: &[IndexDef { name: BY_USER, hash: s(attr::USER_ID), range: Some(s(attr::CONNECTION_ID)), projection: Projection::All }],
        ttl: Some(attr::EXPIRES_AT),
    },
    TableDef {
        id: TableId::Subscriptions,
        suffix: "subscriptions",
        logical_id: "SubscriptionsTable",
        env_var: "HERALD_TABLE_SUBSCRIPTIONS",
        hash: s(attr::CONNECTION_ID),
        range: Some(s(attr::EVENT_NAME)),
        indexes: &[
            IndexDef { name: BY_EVENT, hash: s(attr::EVENT_SHARD), range: Some(s(attr::CONNECTION_ID)), projection: Projection::All },
            IndexDef { name: BY_USER_EVENT, hash: s(attr::USER_EVENT), range: Some(s(attr::CONNECTION_ID)), projection: Projection::All },
        ],
        ttl: Some(attr::EXPIRES_AT),
    },
    TableDef {
        id: TableId::Deliveries,
        suffix: "deliveries",
        logical_id: "DeliveriesTable",
        env_var: "HERALD_TABLE_DELIVERIES",
        hash: s(attr::PUSH_ID),
        range: Some(s(attr::CONNECTION_ID)),
        indexes: &[],
        ttl: Some(attr::EXPIRES_AT),
    },
    TableDef {
        id: TableId::Conversations,
        suffix: "conversations",
        logical_id: "ConversationsTable",
        env_var: "HERALD_TABLE_CONVERSATIONS",
        hash: s(attr::SESSION_CHANNEL),
        range: None,
        indexes: &[IndexDef { name: BY_USER, hash: s(attr::USER_ID), range: Some(n(attr::ID)), projection: Projection::All }],
        ttl: None,
    },
    TableDef {
        id: TableId::Messages,
        suffix: "messages",
        logical_id: "MessagesTable",
        env_var: "HERALD_TABLE_MESSAGES",
        hash: s(attr::SESSION_CHANNEL),
        range: Some(n(attr::ID)),
        indexes: &[],
        ttl: None,
    },
    TableDef {
        id: TableId::Members,
        suffix: "members",
        logical_id: "MembersTable",
        env_var: "HERALD_TABLE_MEMBERS",
        hash: s(attr::MEMBER_ID),
        range: Some(s(attr::SESSION_CHANNEL)),
        indexes: &[IndexDef {
            name: BY_CHANNEL,
            hash: s(attr::SESSION_CHANNEL),
            range: Some(s(attr::MEMBER_ID)),
            projection: Projection::KeysOnly,
        }],
        ttl: None,
    },
    TableDef {
        id: TableId::Counters,
        suffix: "counters",
        logical_id: "CountersTable",
        env_var: "HERALD_TABLE_COUNTERS",
        hash: s(attr::COUNTER_ID),
        range: None,
        indexes: &[],
        ttl: None,
    },
    TableDef {
        id: TableId::Templates,
        suffix: "templates",
        logical_id: "TemplatesTable",
        env_var: "HERALD_TABLE_TEMPLATES",
        hash: s(attr::TEMPLATE_ID),
        range: None,
        indexes: &[
            IndexDef { name: BY_NAME, hash: s(attr::NAME_CHANNEL), range: Some(s(attr::TEMPLATE_ID)), projection: Projection::All },
            IndexDef { name: BY_KIND, hash: s(attr::KIND), range: Some(s(attr::TEMPLATE_ID)), projection: Projection::All },
        ],
        ttl: None,
    },
    TableDef {
        id: TableId::Users,
        suffix: "users",
        logical_id: "UsersTable",
        env_var: "HERALD_TABLE_USERS",
        hash: s(attr::USER_ID),
        range: None,
        indexes: &[IndexDef { name: BY_SHARD, hash: s(attr::USER_SHARD), range: Some(s(attr::USER_ID)), projection: Projection::All }],
        ttl: None,
    },
    TableDef {
        id: TableId::EventTypes,
        suffix: "event-types",
        logical_id: "EventTypesTable",
        env_var: "HERALD_TABLE_EVENT_TYPES",
        hash: s(attr::EVENT_TYPE),
        range: None,
        indexes: &[IndexDef { name: BY_KIND, hash: s(attr::KIND), range: Some(s(attr::EVENT_TYPE)), projection: Projection::All }],
        ttl: None,
    },
    TableDef {
        id: TableId::Notifications,
        suffix: "notifications",
        logical_id: "NotificationsTable",
        env_var: "HERALD_TABLE_NOTIFICATIONS",
        hash: s(attr::NOTIFICATION_ID),
        range: None,
        indexes: &[
            IndexDef { name: BY_USER, hash: s(attr::USER_ID), range: Some(s(attr::CREATED_KEY)), projection: Projection::All },
            // Keyed on the event (or mailing) and the user's shard: no partition grows with the audience.
            IndexDef { name: BY_EVENT, hash: s(attr::EVENT_SHARD), range: Some(s(attr::CREATED_KEY)), projection: Projection::All },
        ],
        ttl: Some(attr::EXPIRES_AT),
    },
    TableDef {
        id: TableId::Mailings,
        suffix: "mailings",
        logical_id: "MailingsTable",
        env_var: "HERALD_TABLE_MAILINGS",
        hash: s(attr::MAILING_ID),
        range: None,
        // Mailings (not kept events: they carry no `kind`) in one partition by creation time.
        indexes: &[IndexDef { name: BY_KIND, hash: s(attr::KIND), range: Some(s(attr::CREATED_KEY)), projection: Projection::All }],
        ttl: Some(attr::EXPIRES_AT),
    },
    TableDef {
        id: TableId::History,
        suffix: "history",
        logical_id: "HistoryTable",
        env_var: "HERALD_TABLE_HISTORY",
        hash: s(attr::STREAM),
        range: Some(n(attr::OFFSET)),
        indexes: &[],
        ttl: Some(attr::EXPIRES_AT),
    },
];

/// The definition of one table.
pub fn def(id: TableId) -> &'static TableDef {
    TABLES.iter().find(|t| t.id == id).expect("every TableId has a definition")
}

/// The default prefix (`HERALD_TABLE_PREFIX`).
pub const DEFAULT_PREFIX: &str = "herald-";

/// The real table names: `HERALD_TABLE_PREFIX` + suffix, or each table's own variable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableNames {
    names: Vec<(TableId, String)>,
}

impl TableNames {
    pub fn with_prefix(prefix: &str) -> Self {
        Self { names: TABLES.iter().map(|t| (t.id, format!("{prefix}{}", t.suffix))).collect() }
    }

    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Self {
        let prefix = get("HERALD_TABLE_PREFIX").unwrap_or_else(|| DEFAULT_PREFIX.to_string());
        Self { names: TABLES.iter().map(|t| (t.id, get(t.env_var).unwrap_or_else(|| format!("{prefix}{}", t.suffix)))).collect() }
    }

    pub fn get(&self, id: TableId) -> &str {
        self.names.iter().find(|(t, _)| *t == id).map(|(_, n)| n.as_str()).expect("every table is named")
    }

    pub fn iter(&self) -> impl Iterator<Item = (&'static TableDef, &str)> {
        self.names.iter().map(|(id, name)| (def(*id), name.as_str()))
    }
}

impl Default for TableNames {
    fn default() -> Self {
        Self::with_prefix(DEFAULT_PREFIX)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_prefix_or_override() {
        let names = TableNames::from_lookup(&|k| match k {
            "HERALD_TABLE_PREFIX" => Some("dev-".into()),
            "HERALD_TABLE_MESSAGES" => Some("chat-msgs".into()),
            _ => None,
        });
        assert_eq!(names.get(TableId::Connections), "dev-connections");
        assert_eq!(names.get(TableId::Messages), "chat-msgs");
        assert_eq!(TableNames::default().get(TableId::Counters), "herald-counters");
    }

    #[test]
    fn every_index_key_is_an_attribute_of_its_table_kind() {
        for t in TABLES {
            let mut seen = std::collections::HashMap::new();
            for k in std::iter::once(t.hash).chain(t.range).chain(t.indexes.iter().flat_map(|i| std::iter::once(i.hash).chain(i.range))) {
                let prev = seen.insert(k.name, k.kind);
                assert!(prev.is_none() || prev == Some(k.kind), "{} has {} with two types", t.suffix, k.name);
            }
        }
    }
}
