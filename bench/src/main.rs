//! `herald-bench`: Herald's benchmarks as one binary. Every subcommand prints its figures as plain
//! `name: value unit` lines and stops by itself; all traffic goes to 127.0.0.1.
//!
//! - `storm`: the connection storm (authorizer + `$connect` + store), embedded or on DynamoDB Local;
//! - `memory`: resident bytes per idle connection in the `herald-local` binary;
//! - `fanout`: `POST /notify` to thousands of live WebSocket subscribers, at full speed and paced,
//!   on herald-local and on a minimal broadcast server (no auth, no store), with the ratios;
//! - `fanout-sdk`: `dispatch` posting through `aws-sdk-apigatewaymanagement` to herald-local, with
//!   the dispatcher's CPU time;
//! - `fanout-cloud`: one event with 100,000 subscribers through the coordinator and the delivery
//!   workers, the management API stood in with a 20 ms round trip;
//! - `reliability`: 1,000 clients and 100,000 deliveries under `--faults`: lost, duplicates, drain time;
//! - `recovery`: 1,000 clients reconnecting at once, each 100 pushes behind, and a fan-out with and without history;
//! - `cost`: DynamoDB operations per push in a large fan-out, counted by an SDK interceptor (with and without history);
//! - `mailing`: a mailing to 100,000 users (email + push) through the platform worker: jobs/s,
//!   time to the last history record, peak memory, render µs per message, and on DynamoDB Local
//!   the requests per recipient with their AWS cost per million notifications;
//! - `kafka`: herald-local's Kafka poller from a tansu broker to 1,000 WebSocket users: records/s
//!   for 100,000 records, and end-to-end p50/p99 from produce to receive at 1,000 records/s;
//! - `fuzz`: every parser of outside bytes fuzzed for a time budget (see `herald_bench::fuzz`),
//!   with the cases tried and the failures per target.
//!
//! `./scripts/bench` builds it and runs every subcommand with DynamoDB Local started.

mod cloud;
mod common;
mod cost;
mod fanout;
mod kafka;
mod mailing;
mod memory;
mod minimal;
mod recovery;
mod reliability;
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
        /// herald-local, the minimal broadcast server, or both (then the ratios are printed).
        #[arg(long, value_enum, default_value_t = fanout::Servers::Both)]
        server: fanout::Servers,
        /// How many times each server runs the burst (all publishes at once) on the same
        /// clients: its figures and the ratios are then the median run's (by throughput), and
        /// every run's throughput and p99 are printed, so one noisy run moves nothing.
        #[arg(long, default_value_t = 1)]
        bursts: usize,
    },
    /// dispatch posting through aws-sdk-apigatewaymanagement to herald-local's management API.
    FanoutSdk {
        #[arg(long, default_value_t = 2000)]
        connections: usize,
        #[arg(long, default_value_t = 50)]
        publishes: usize,
    },
    /// One event's fan-out through the coordinator and many delivery workers, the management API
    /// stood in with a fixed round trip; prints the model for 1M and 10M connections on AWS.
    FanoutCloud {
        #[arg(long, default_value_t = 100_000)]
        subscribers: usize,
        /// The management API's simulated round trip, in milliseconds.
        #[arg(long, default_value_t = 20)]
        rtt_ms: u64,
        /// Delivery workers at once (the template's FanoutMaximumConcurrency).
        #[arg(long, default_value_t = 50)]
        workers: usize,
    },
    /// The delivery guarantee under injected faults: 1,000 clients, 100,000 deliveries, lost and
    /// duplicates counted (without, then with, consumer crashes).
    Reliability {
        /// The fault draws' seed.
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// History (CONTRACT §8): clients reconnecting at once, each `behind` pushes behind (time
    /// until all caught up), and a fan-out's deliveries/s with and without history in one run.
    Recovery {
        #[arg(long, default_value_t = 1000)]
        clients: usize,
        #[arg(long, default_value_t = 100)]
        behind: usize,
        #[arg(long, default_value_t = 1000)]
        fanout_clients: usize,
        #[arg(long, default_value_t = 50)]
        pushes: usize,
        #[arg(long, value_enum, default_value_t = BenchBackend::Embedded)]
        backend: BenchBackend,
    },
    /// herald-local's Kafka poller (--kafka) from a tansu broker (HERALD_TEST_TANSU) to live
    /// WebSocket users: throughput, then end-to-end latency at a paced rate.
    Kafka {
        #[arg(long, default_value_t = 1000)]
        users: usize,
        /// Records of the throughput run.
        #[arg(long, default_value_t = 100_000)]
        records: usize,
        /// The paced run's records per second.
        #[arg(long, default_value_t = 1000)]
        rate: u64,
        /// The paced run's length.
        #[arg(long, default_value_t = 10)]
        seconds: u64,
    },
    /// DynamoDB reads and writes per push in a large fan-out (DynamoDB Local).
    Cost {
        #[arg(long, default_value_t = 10_000)]
        subscribers: usize,
    },
    /// A mailing to every user (email + push): jobs/s and memory on the embedded backend, render
    /// cost, and DynamoDB/SQS requests per recipient on DynamoDB Local with their AWS cost.
    Mailing {
        /// Profiles of the embedded run (0 skips it).
        #[arg(long, default_value_t = 100_000)]
        users: usize,
        /// Profiles of the DynamoDB Local run (0 skips it).
        #[arg(long, default_value_t = 1_000)]
        dynamodb_users: usize,
    },
    /// Fuzzes every parser of outside bytes for a time budget shared by the targets; fails when
    /// any case fails (each failure printed shrunk).
    Fuzz {
        /// The whole budget, in seconds.
        #[arg(long, default_value_t = 300)]
        seconds: u64,
        /// Only this target (repeatable); see --list.
        #[arg(long = "target")]
        targets: Vec<String>,
        /// The generators' seed (default: random, printed).
        #[arg(long)]
        seed: Option<u64>,
        /// List the targets and exit.
        #[arg(long)]
        list: bool,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = common::raise_fd_limit() {
        eprintln!("warning: could not raise the open-files limit: {e}");
    }
    if let Command::Fuzz { seconds, targets, seed, list } = &cli.command {
        return fuzz_job(*seconds, targets, *seed, *list);
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
                    Command::Fanout { connections, publishes, rate, server, bursts } => {
                        fanout::run(connections, publishes, rate, server, bursts).await
                    }
                    Command::Cost { subscribers } => cost::run(subscribers).await,
                    Command::Mailing { users, dynamodb_users } => mailing::run(users, dynamodb_users).await,
                    Command::Recovery { clients, behind, fanout_clients, pushes, backend } => {
                        recovery::run(clients, behind, fanout_clients, pushes, backend).await
                    }
                    Command::Kafka { users, records, rate, seconds } => kafka::run(users, records, rate, seconds).await,
                    Command::Reliability { seed } => reliability::run(seed).await,
                    Command::FanoutCloud { subscribers, rtt_ms, workers } => cloud::run(subscribers, rtt_ms, workers).await,
                    Command::FanoutSdk { .. } | Command::Fuzz { .. } => unreachable!("handled above"),
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

/// `herald-bench fuzz`: runs on this thread (each async target brings its own runtime).
fn fuzz_job(seconds: u64, targets: &[String], seed: Option<u64>, list: bool) -> ExitCode {
    use herald_bench::fuzz;
    if list {
        for t in fuzz::TARGETS {
            println!("{}: {}", t.name, t.about);
        }
        return ExitCode::SUCCESS;
    }
    let seed = seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or_default();
        (nanos as u64) ^ u64::from(std::process::id()).rotate_left(32)
    });
    match fuzz::run_job(std::time::Duration::from_secs(seconds.max(1)), targets, seed) {
        Ok(0) => ExitCode::SUCCESS,
        Ok(failures) => {
            eprintln!("herald-bench fuzz: {failures} failing cases (seed {seed}; rerun with --seed {seed})");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("herald-bench fuzz: {e}");
            ExitCode::FAILURE
        }
    }
}
