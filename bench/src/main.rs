//! `herald-bench`: Herald's benchmarks as one binary. Every subcommand prints its figures as plain
//! `name: value unit` lines and stops by itself; all traffic goes to 127.0.0.1.
//!
//! - `storm`: the connection storm (authorizer + `$connect` + store), embedded or on DynamoDB Local;
//! - `memory`: resident bytes per idle connection in the `herald-local` binary;
//! - `fanout`: `POST /notify` to thousands of live WebSocket subscribers, at full speed and paced;
//! - `fanout-sdk`: `dispatch` posting through `aws-sdk-apigatewaymanagement` to herald-local, with
//!   the dispatcher's CPU time;
//! - `cost`: DynamoDB operations per push in a large fan-out, counted by an SDK interceptor.
//!
//! `./scripts/bench` builds it and runs every subcommand with DynamoDB Local started.

mod common;
mod cost;
mod fanout;
mod memory;
mod storm;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Parser)]
#[command(name = "herald-bench", about = "Herald's benchmarks: each subcommand prints `name: value unit` lines")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BenchBackend {
    /// herald-local's in-memory store.
    Embedded,
    /// DynamoDB Local at HERALD_TEST_DYNAMODB_ENDPOINT (tables of their own).
    Dynamodb,
}

#[derive(Subcommand)]
enum Command {
    /// Concurrent handshakes through the authorizer, `$connect` and the store.
    Storm {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        #[arg(long, value_enum, default_value_t = BenchBackend::Embedded)]
        backend: BenchBackend,
        /// Rounds (the best and the median are reported).
        #[arg(long, default_value_t = 5)]
        rounds: usize,
        /// At most this many handshakes at a time (default: all clients at once).
        #[arg(long)]
        in_flight: Option<usize>,
    },
    /// Resident memory per idle connection in the herald-local binary.
    Memory {
        #[arg(long, default_value_t = 5000)]
        connections: usize,
        /// The herald-local binary (default: target/perf/herald-local).
        #[arg(long)]
        bin: Option<PathBuf>,
    },
    /// POST /notify fan-out to live WebSocket subscribers of one event (embedded).
    Fanout {
        #[arg(long, default_value_t = 2000)]
        connections: usize,
        #[arg(long, default_value_t = 50)]
        publishes: usize,
        /// The paced run's target in deliveries per second.
        #[arg(long, default_value_t = 10_000)]
        rate: u64,
    },
    /// dispatch posting through aws-sdk-apigatewaymanagement to herald-local's management API.
    FanoutSdk {
        #[arg(long, default_value_t = 2000)]
        connections: usize,
        #[arg(long, default_value_t = 50)]
        publishes: usize,
    },
    /// DynamoDB reads and writes per push in a large fan-out (DynamoDB Local).
    Cost {
        #[arg(long, default_value_t = 10_000)]
        subscribers: usize,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = common::raise_fd_limit() {
        eprintln!("warning: could not raise the open-files limit: {e}");
    }
    let result = match cli.command {
        // The dispatcher of fanout-sdk runs on a runtime of its own; the rest share this one.
        Command::FanoutSdk { connections, publishes } => {
            common::runtime().and_then(|rt| rt.block_on(fanout::run_sdk(connections, publishes)))
        }
        command => common::runtime().and_then(|rt| {
            rt.block_on(async move {
                match command {
                    Command::Storm { clients, backend, rounds, in_flight } => storm::run(clients, backend, rounds.max(1), in_flight).await,
                    Command::Memory { connections, bin } => memory::run(connections, bin).await,
                    Command::Fanout { connections, publishes, rate } => fanout::run(connections, publishes, rate).await,
                    Command::Cost { subscribers } => cost::run(subscribers).await,
                    Command::FanoutSdk { .. } => unreachable!("handled above"),
                }
            })
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("herald-bench: {e}");
            ExitCode::FAILURE
        }
    }
}
