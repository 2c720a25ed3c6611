use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use herald_local::{Backend, DEV_SECRET, Options};

/// Herald on one machine: API Gateway WebSockets, the management API and the event sources,
/// running the same handlers that are deployed to Lambda.
#[derive(Parser)]
#[command(name = "herald-local", version)]
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
    /// post_throttle, post_error, post_timeout, post_gone, store_throttle, consumer_crash
    /// (e.g. post_throttle=0.05,store_throttle=0.02). Counts are in GET /health.
    #[arg(long, env = "HERALD_FAULTS", value_name = "SPEC")]
    faults: Option<String>,
    /// Seed of the fault draws (an unsigned integer): the same seed repeats a run's faults.
    #[arg(long, env = "HERALD_FAULTS_SEED", value_name = "N")]
    faults_seed: Option<String>,
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
    /// Prints a development token signed with HERALD_JWT_SECRET (or herald-local's dev secret).
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
        /// Adds `scope: notify:publish` (a publisher for POST /notify).
        #[arg(long)]
        publisher: bool,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
    },
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
    if let Some(Command::Token { user, request_id, admin_id, publisher, ttl }) = cli.command {
        let secret = herald::config::env("HERALD_JWT_SECRET").unwrap_or_else(|| DEV_SECRET.to_string());
        let mut claims = serde_json::Map::new();
        let exp = time::OffsetDateTime::now_utc().unix_timestamp() as u64 + ttl;
        claims.insert("exp".into(), exp.into());
        for (k, v) in [("sub", user), ("request_id", request_id), ("admin_id", admin_id)] {
            if let Some(v) = v {
                claims.insert(k.into(), v.into());
            }
        }
        if publisher {
            claims.insert("scope".into(), "notify:publish".into());
        }
        if claims.len() == 1 {
            return Err("give --user, --request-id or --admin-id".into());
        }
        println!("{}", herald::auth::issue_hs256(&secret, &serde_json::Value::Object(claims))?);
        return Ok(());
    }
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    tracing_subscriber::fmt().with_env_filter(filter).with_target(false).init();
    let mut options = Options::from_env()?;
    options.host = cli.host;
    options.port = cli.port;
    options.backend = cli.backend;
    options.create_resources = cli.create_resources;
    options.connect_rate = cli.connect_rate;
    if let Some(faults) = parse_arg(&matches, "faults", "HERALD_FAULTS", cli.faults.as_deref()) {
        options.faults = faults;
    }
    if let Some(Seed(seed)) = parse_arg(&matches, "faults_seed", "HERALD_FAULTS_SEED", cli.faults_seed.as_deref()) {
        options.faults_seed = Some(seed);
    }
    let server = herald_local::start(options).await?;
    let a = server.addr;
    println!("herald-local is ready ({:?} backend)", cli.backend);
    println!("  notifications  ws://{a}/api/v1/notify/ws?token=<JWT>");
    println!("  chat           ws://{a}/ws?sid=<participant>   (Sec-WebSocket-Protocol: access_token, <JWT>)");
    println!("  management     http://{a}/@connections/<id>");
    println!("  health         http://{a}/health");
    println!("a development token:  TOKEN=$(cargo run -q --release -p herald-local -- token --user 42)");
    println!("then:                 wscat -c \"ws://{a}/api/v1/notify/ws?token=$TOKEN\"");
    println!("publish:              POST http://{a}/notify with a token from `token --user svc --publisher`");
    tokio::signal::ctrl_c().await?;
    server.stop().await;
    Ok(())
}
