use clap::{Parser, Subcommand};
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
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let cli = Cli::parse();
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
