use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use herald_local::{Backend, DEV_SECRET, Options};

/// Herald on one machine: API Gateway WebSockets, the management API and the event sources,
/// running the same handlers that are deployed to Lambda.
#[derive(Parser)]
#[command(name = "herald-local", version, after_long_help = herald_local::settings::help())]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    /// Port to listen on.
    #[arg(long, env = "HERALD_PORT", default_value_t = 3001)]
    port: u16,
    /// Address to listen on.
    #[arg(long, env = "HERALD_HOST", default_value = "127.0.0.1")]
    host: String,
    /// embedded (in memory, the default) or aws (DynamoDB and SQS through the SDK's configuration).
    #[arg(long, value_enum, default_value_t = Backend::Embedded)]
    backend: Backend,
    /// With --backend aws: create missing tables and queues.
    #[arg(long)]
    create_resources: bool,
    /// Emulate API Gateway's quota of new connections per second (e.g. 500).
    #[arg(long)]
    connect_rate: Option<u32>,
    /// Inject faults (testing only): comma-separated name=rate, rate from 0 to 1, among
    /// post_throttle, post_error, post_timeout, post_gone, store_throttle, consumer_crash, disconnect_lost
    /// (e.g. post_throttle=0.05,store_throttle=0.02). Counts are in GET /health.
    #[arg(long, env = "HERALD_FAULTS", value_name = "SPEC")]
    faults: Option<String>,
    /// Seed of the fault draws (an unsigned integer): the same seed repeats a run's faults.
    #[arg(long, env = "HERALD_FAULTS_SEED", value_name = "N")]
    faults_seed: Option<String>,
    /// Consume Kafka topic `notification.send` from this broker (host:port), as Lambda's Kafka
    /// event source does: batches into dispatch, offsets committed under group `herald-local`.
    #[arg(long, env = "HERALD_KAFKA", value_name = "HOST:PORT")]
    kafka: Option<String>,
    /// The topic --kafka consumes.
    #[arg(long, env = "HERALD_KAFKA_TOPIC", default_value = herald_local::kafka::DEFAULT_TOPIC)]
    kafka_topic: String,
    /// Where a partition starts when group `herald-local` has no committed offset on it:
    /// earliest (the whole backlog) or latest (skip the backlog).
    #[arg(long, value_enum, default_value_t = herald_local::kafka::KafkaStart::Earliest)]
    kafka_start: herald_local::kafka::KafkaStart,
}

/// `--faults-seed`: an unsigned integer.
struct Seed(u64);

impl std::str::FromStr for Seed {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        s.trim().parse().map(Seed).map_err(|_| format!("{s:?} is not an unsigned integer"))
    }
}

/// A value of `--name` / `VAR`, parsed; a bad one stops here with one sentence naming where it
/// came from (the flag, or the variable).
fn parse_arg<T: std::str::FromStr>(matches: &clap::ArgMatches, id: &str, var: &str, value: Option<&str>) -> Option<T>
where
    T::Err: std::fmt::Display,
{
    let value = value?;
    match value.parse() {
        Ok(v) => Some(v),
        Err(e) => {
            let from = match matches.value_source(id) {
                Some(clap::parser::ValueSource::EnvVariable) => var.to_string(),
                _ => format!("--{}", id.replace('_', "-")),
            };
            Cli::command().error(clap::error::ErrorKind::InvalidValue, format!("{from} is invalid: {e}")).exit()
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Prints a development token signed with HERALD_JWT_SECRET (or herald-local's dev secret),
    /// with `iss` / `aud` from HERALD_JWT_ISSUER / HERALD_JWT_AUDIENCE when they are set. The
    /// token goes to stdout, its decoded claims to stderr.
    Token {
        /// The user (`sub`).
        #[arg(long)]
        user: Option<String>,
        /// A chat requester: the `request_id` claim.
        #[arg(long)]
        request_id: Option<String>,
        /// A chat operator: the `admin_id` claim.
        #[arg(long)]
        admin_id: Option<String>,
        /// The `role` claim: `admin` is an operator of every application.
        #[arg(long)]
        role: Option<String>,
        /// Adds `scope: notify:publish` (a publisher for POST /notify).
        #[arg(long)]
        publisher: bool,
        /// Any claim, KEY=VALUE; VALUE is JSON when it parses as JSON, else a string. Repeatable;
        /// it overrides the claims above.
        #[arg(long = "claim", value_name = "KEY=VALUE", value_parser = parse_claim)]
        claims: Vec<(String, serde_json::Value)>,
        /// Lifetime in seconds; a negative one gives a token that has already expired (beyond the
        /// verifier's clock leeway, HERALD_JWT_LEEWAY_SECS, default 30 s, it is refused).
        #[arg(long, default_value_t = 3600, allow_negative_numbers = true)]
        ttl: i64,
        /// An expired token: `exp` an hour ago (to try the refusal).
        #[arg(long, conflicts_with = "ttl")]
        expired: bool,
    },
}

fn parse_claim(s: &str) -> Result<(String, serde_json::Value), String> {
    let (key, value) = s.split_once('=').ok_or_else(|| format!("{s:?} is not KEY=VALUE"))?;
    if key.is_empty() {
        return Err(format!("{s:?} has no key"));
    }
    let value = serde_json::from_str(value).unwrap_or_else(|_| serde_json::Value::String(value.to_string()));
    Ok((key.to_string(), value))
}

struct TokenRequest {
    named: Vec<(&'static str, Option<String>)>,
    publisher: bool,
    claims: Vec<(String, serde_json::Value)>,
    ttl: i64,
}

/// `herald-local token`: the token on stdout, what it says on stderr.
fn print_token(request: TokenRequest) -> Result<(), Box<dyn std::error::Error>> {
    let secret = herald::config::env("HERALD_JWT_SECRET").unwrap_or_else(|| DEV_SECRET.to_string());
    let mut claims = serde_json::Map::new();
    for (k, v) in request.named {
        if let Some(v) = v {
            claims.insert(k.into(), v.into());
        }
    }
    if request.publisher {
        claims.insert("scope".into(), herald::auth::PUBLISH_SCOPE.into());
    }
    claims.extend(request.claims);
    if claims.is_empty() {
        return Err("give --user, --request-id, --admin-id, --role, --publisher or --claim".into());
    }
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    claims.entry("exp").or_insert_with(|| (now + request.ttl).into());
    for (claim, var) in [("iss", "HERALD_JWT_ISSUER"), ("aud", "HERALD_JWT_AUDIENCE")] {
        if let Some(v) = herald::config::env(var) {
            claims.entry(claim).or_insert_with(|| v.into());
        }
    }
    let exp = claims.get("exp").and_then(serde_json::Value::as_i64);
    let claims = serde_json::Value::Object(claims);
    println!("{}", herald::auth::issue_hs256(&secret, &claims)?);
    eprintln!("claims: {claims}");
    if let Some(exp) = exp.filter(|exp| *exp <= now) {
        eprintln!("this token expired {} s ago (the verifier allows HERALD_JWT_LEEWAY_SECS, default 30 s, of clock skew)", now - exp);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Errors as one readable sentence (their Display), never their Debug form.
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let Some(Command::Token { user, request_id, admin_id, role, publisher, claims, ttl, expired }) = cli.command {
        let named = vec![("sub", user), ("request_id", request_id), ("admin_id", admin_id), ("role", role)];
        return print_token(TokenRequest { named, publisher, claims, ttl: if expired { -3600 } else { ttl } });
    }
    // rskafka logs every retry of an unreachable broker; the Kafka poller reports that itself, once.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info,rskafka=error".into());
    // Colour only for a terminal: piped or redirected logs stay plain text.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stdout());
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).with_ansi(ansi).init();
    let mut options = Options::from_env()?;
    options.host = cli.host;
    options.port = cli.port;
    options.backend = cli.backend;
    options.create_resources = cli.create_resources;
    options.connect_rate = cli.connect_rate;
    options.kafka =
        cli.kafka.map(|bootstrap| herald_local::kafka::KafkaOptions { bootstrap, topic: cli.kafka_topic, start: cli.kafka_start });
    let kafka = options.kafka.clone();
    if let Some(faults) = parse_arg(&matches, "faults", "HERALD_FAULTS", cli.faults.as_deref()) {
        options.faults = faults;
    }
    if let Some(Seed(seed)) = parse_arg(&matches, "faults_seed", "HERALD_FAULTS_SEED", cli.faults_seed.as_deref()) {
        options.faults_seed = Some(seed);
    }
    let tables: Vec<String> = options.tables.iter().map(|(_, name)| name.to_string()).collect();
    let created = if options.create_resources { " (created where missing)" } else { "" };
    let email = format!("email through SES from {}, SMS through SNS", options.email_from);
    let server = herald_local::start(options).await?;
    let a = server.addr;
    println!("herald-local is ready ({:?} backend)", cli.backend);
    if cli.backend == Backend::Aws {
        println!("  tables         {}{created}", tables.join(", "));
        let queues = &server.app.queues;
        for (label, pair) in [("notifications", &queues.notifications), ("fan-out", &queues.fanout), ("platform", &queues.platform)] {
            if let Some((url, dead_letters)) = pair.urls() {
                println!("  queue          {label} {url}{created}");
                println!("                 {label} dead letters {dead_letters}");
            }
        }
        println!("  platform       {email}");
        if let Some(group) = server.app.handlers.scheduler.group() {
            println!("  schedules      EventBridge Scheduler group {group}{created}, fired by herald-local");
        }
    } else {
        println!("  platform       email and SMS kept, not sent: GET http://{a}/outbox (admin token)");
    }
    println!("  notifications  ws://{a}/api/v1/notify/ws?token=<JWT>");
    println!("  chat           ws://{a}/ws?sid=<participant>   (Sec-WebSocket-Protocol: access_token, <JWT>)");
    println!("  management     http://{a}/@connections/<id>");
    println!("  health         http://{a}/health");
    if let Some(k) = kafka {
        println!("  kafka          {} topic {} (group {})", k.bootstrap, k.topic, herald_local::kafka::GROUP);
        println!("                 dead letters: logged with topic, partition and offset; counted in /metrics (herald_dead_letters)");
    }
    println!("a development token:  TOKEN=$(cargo run -q --release -p herald-local -- token --user 42)");
    println!("then:                 wscat -c \"ws://{a}/api/v1/notify/ws?token=$TOKEN\"");
    println!("publish:              POST http://{a}/notify with a token from `token --user svc --publisher`");
    tokio::signal::ctrl_c().await?;
    server.stop().await;
    Ok(())
}
