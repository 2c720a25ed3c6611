//! Every `HERALD_*` variable, with its default and what it does: printed by `herald-local --help`
//! and the same rows as `docs/settings.md` (a test keeps the three — the code that reads them,
//! this table and the page — in step).

/// Who reads a variable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// herald-local and the Lambdas alike.
    Both,
    /// herald-local only.
    Local,
    /// The Lambdas only (the SAM template sets them).
    Lambda,
}

/// One variable: name, default (`""` none), who reads it, what it does.
pub struct Setting {
    pub var: &'static str,
    pub default: &'static str,
    pub scope: Scope,
    pub meaning: &'static str,
}

const fn s(var: &'static str, default: &'static str, scope: Scope, meaning: &'static str) -> Setting {
    Setting { var, default, scope, meaning }
}

use Scope::{Both, Lambda, Local};

pub const SETTINGS: &[Setting] = &[
    s("HERALD_PORT", "3001", Local, "port to listen on (--port)"),
    s("HERALD_HOST", "127.0.0.1", Local, "address to listen on (--host); off loopback a real secret is required"),
    s("HERALD_JWT_SECRET", "herald-local's development secret", Both, "HS256 secret of the tokens (exactly one of the four key settings)"),
    s("HERALD_JWT_SECRET_ARN", "", Both, "HS256 secret in AWS Secrets Manager, read on the first token and cached"),
    s("HERALD_JWT_PUBLIC_KEY", "", Both, "PEM public key (RS256 or ES256)"),
    s("HERALD_JWKS_URL", "", Both, "JWKS document URL (RS256 or ES256)"),
    s("HERALD_JWT_ALGORITHM", "from the key", Both, "HS256, RS256 or ES256"),
    s("HERALD_JWT_ISSUER", "", Both, "when set, a token must carry this iss"),
    s("HERALD_JWT_AUDIENCE", "", Both, "when set, a token's aud must hold this value"),
    s("HERALD_JWT_LEEWAY_SECS", "30", Both, "clock leeway for exp, at most 300"),
    s("HERALD_AUTH_VERIFY_URL", "", Both, "a remote check of every token (GET with the Bearer token, 2xx = valid)"),
    s("HERALD_ACK_TIMEOUT_MS", "10000", Both, "how long an ack-mode push waits for its ack before it is sent again"),
    s("HERALD_MAX_ATTEMPTS", "3", Both, "sends of an unacked push before ack_timeout closes the connection"),
    s("HERALD_CONNECTION_TTL_SECS", "7200", Both, "TTL of connection records (API Gateway's 2 h limit)"),
    s("HERALD_CLAIM_LEASE_MS", "120000", Both, "how long a dispatch claim on a push holds without renewal"),
    s("HERALD_HISTORY_TTL_S", "86400", Both, "how long a push is kept in its history stream (recovery, GET /history); 0: not kept"),
    s("HERALD_PRESENCE_TIMEOUT_S", "90", Both, "a connection silent this long (no frame, no heartbeat) is not counted online"),
    s("HERALD_POST_TIMEOUT_MS", "2000", Both, "timeout of one management API post"),
    s("HERALD_TABLE_PREFIX", "herald-", Both, "prefix of the DynamoDB table names"),
    s("HERALD_TABLE_CONNECTIONS", "<prefix>connections", Both, "the connections table's own name"),
    s("HERALD_TABLE_SUBSCRIPTIONS", "<prefix>subscriptions", Both, "the subscriptions table's own name"),
    s("HERALD_TABLE_DELIVERIES", "<prefix>deliveries", Both, "the deliveries table's own name"),
    s("HERALD_TABLE_CONVERSATIONS", "<prefix>conversations", Both, "the chat conversations table's own name"),
    s("HERALD_TABLE_MESSAGES", "<prefix>messages", Both, "the chat messages table's own name"),
    s("HERALD_TABLE_MEMBERS", "<prefix>members", Both, "the chat members table's own name"),
    s("HERALD_TABLE_COUNTERS", "<prefix>counters", Both, "the chat counters table's own name"),
    s("HERALD_TABLE_TEMPLATES", "<prefix>templates", Both, "the platform's message templates table's own name"),
    s("HERALD_TABLE_USERS", "<prefix>users", Both, "the platform's user profiles table's own name"),
    s("HERALD_TABLE_EVENT_TYPES", "<prefix>event-types", Both, "the platform's event types table's own name"),
    s("HERALD_TABLE_NOTIFICATIONS", "<prefix>notifications", Both, "the platform's history (notifications) table's own name"),
    s("HERALD_TABLE_MAILINGS", "<prefix>mailings", Both, "the platform's mailings (and kept events) table's own name"),
    s("HERALD_TABLE_HISTORY", "<prefix>history", Both, "the history streams table's own name"),
    s("HERALD_QUEUE_NAME", "herald-notifications", Local, "--backend aws: the notifications queue's name"),
    s("HERALD_FANOUT_QUEUE_NAME", "herald-fanout", Local, "--backend aws: the fan-out queue's name"),
    s(
        "HERALD_PLATFORM_QUEUE_NAME",
        "herald-platform",
        Local,
        "--backend aws: the platform queue's name (mailings' and events' runs, pages and jobs)",
    ),
    s("HERALD_VISIBILITY_TIMEOUT_MS", "30000", Local, "visibility timeout of herald-local's queues"),
    s("HERALD_IDLE_TIMEOUT_SECS", "600", Local, "idle connections close after this (API Gateway: 10 minutes)"),
    s("HERALD_CORS_ORIGINS", "", Local, "browser origins allowed to POST /notify, comma-separated, * for any (the template's CorsOrigins)"),
    s("HERALD_FAULTS", "", Local, "fault injection, name=rate,… (--faults; testing only)"),
    s("HERALD_FAULTS_SEED", "random, logged", Local, "seed of the fault draws (--faults-seed)"),
    s("HERALD_KAFKA", "", Local, "a Kafka broker (host:port) whose topic herald-local consumes into dispatch (--kafka)"),
    s("HERALD_KAFKA_TOPIC", "notification.send", Local, "the topic --kafka consumes (--kafka-topic)"),
    s("HERALD_QUEUE_URL", "", Lambda, "the notifications queue (notify)"),
    s("HERALD_FANOUT_QUEUE_URL", "", Lambda, "the fan-out queue (dispatch)"),
    s("HERALD_DEAD_LETTER_QUEUE_URL", "", Lambda, "where dispatch sets aside undeliverable messages"),
    s("HERALD_REDELIVERY_QUEUE_URL", "", Lambda, "the delayed queue of ack-mode redelivery checks"),
    s("HERALD_PLATFORM_QUEUE_URL", "", Lambda, "the platform queue (platform-events, platform-admin, platform-worker)"),
    s("HERALD_PLATFORM_QUEUE_ARN", "", Lambda, "the platform queue's ARN: the target of EventBridge Scheduler's schedules"),
    s(
        "HERALD_SCHEDULE_GROUP",
        "herald-local: herald-platform",
        Both,
        "the EventBridge Scheduler group of Herald's schedules (herald-local --backend aws keeps its schedules there and fires them itself)",
    ),
    s(
        "HERALD_SCHEDULER_ROLE_ARN",
        "herald-local: a placeholder moto does not check",
        Both,
        "the role EventBridge Scheduler assumes to send to the platform queue",
    ),
    s("HERALD_MANAGEMENT_ENDPOINT", "", Lambda, "the API Gateway management API endpoint"),
    s(
        "HERALD_EMAIL_FROM",
        "herald-local: herald@localhost",
        Both,
        "the verified SES identity email is sent from; unset, the Lambdas' email fails \"not configured\" (herald-local's embedded backend keeps email in GET /outbox)",
    ),
    s(
        "HERALD_USER_INFO_URL",
        "",
        Both,
        "the auth service's user URL with {user_id}: what a profile lacks (email, phone, name) comes from it",
    ),
    s("HERALD_USER_INFO_TOKEN", "", Both, "the bearer token presented to HERALD_USER_INFO_URL"),
    s(
        "HERALD_TLS_ROOTS",
        "aws",
        Lambda,
        "roots the AWS SDK clients trust: aws (built-in Amazon Trust Services) or system (the image's bundle)",
    ),
    s("HERALD_METRICS_NAMESPACE", "Herald", Lambda, "CloudWatch namespace of the EMF metrics (the template: Herald/<stack>)"),
];

/// The table for `--help`.
pub fn help() -> String {
    let width = SETTINGS.iter().map(|s| s.var.len()).max().unwrap_or(0);
    let mut out = String::from("Settings (environment variables; docs/settings.md has the same table):\n");
    for s in SETTINGS.iter().filter(|s| s.scope != Scope::Lambda) {
        let default = if s.default.is_empty() { String::new() } else { format!(" [default: {}]", s.default) };
        out.push_str(&format!("  {:width$}  {}{default}\n", s.var, s.meaning));
    }
    out.push_str("The Lambdas also read HERALD_QUEUE_URL and the other *_URL / endpoint settings their SAM template sets.\n");
    out.push_str("With --backend aws, the AWS SDK reads AWS_REGION, AWS_PROFILE / credentials and AWS_ENDPOINT_URL_*.\n");
    out
}
