//! Connection storm: `clients` WebSocket clients open at once, each through the full handshake
//! (the REQUEST authorizer verifying the token, `$connect` storing the connection, the upgrade).
//! Every connection stays open until all have connected; then all close and the server's
//! `$disconnect`s drain before the next round.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::task::JoinSet;

use crate::BenchBackend;
use crate::common::{self, Percentiles, Result, figure, ms};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

struct Round {
    ok: usize,
    failed: usize,
    per_second: f64,
    latency: Percentiles,
    /// Connections the kernel dropped from a full accept queue during the round (each costs the
    /// client a SYN retransmission, 1 s or more); machine-wide.
    overflows: Option<u64>,
}

pub async fn run(clients: usize, backend: BenchBackend, rounds: usize, in_flight: Option<usize>) -> Result<()> {
    let backend_name = match backend {
        BenchBackend::Embedded => "embedded",
        BenchBackend::Dynamodb => "dynamodb",
    };
    let in_flight = in_flight.unwrap_or(clients).clamp(1, clients.max(1));
    let label = if in_flight < clients { format!("{backend_name}, {in_flight} in flight") } else { backend_name.to_string() };
    let server = common::start_server(backend).await?;
    let base = server.ws_url("/api/v1/notify/ws");
    let urls: Arc<Vec<String>> =
        Arc::new((0..clients).map(|i| Ok(format!("{base}?token={}", common::user_token(&format!("storm{i}"))?))).collect::<Result<_>>()?);
    let mut results = Vec::with_capacity(rounds);
    for r in 1..=rounds {
        let round = round(&urls, in_flight).await;
        let name = format!("storm[{label}] round {r}");
        figure(&format!("{name} handshakes/s"), format!("{:.0}", round.per_second), "handshakes/s");
        figure(&format!("{name} p50"), ms(round.latency.at(0.50)), "ms");
        figure(&format!("{name} p99"), ms(round.latency.at(0.99)), "ms");
        if let Some(n) = round.overflows {
            figure(&format!("{name} listen queue overflows"), n, "connections");
        }
        if round.failed > 0 {
            figure(&format!("{name} failed"), round.failed, "handshakes");
        }
        if !common::wait_drained(&server, Duration::from_secs(60)).await {
            eprintln!("warning: {} connections still open after the round", server.app.registry.len());
        }
        results.push(round);
    }
    results.sort_by(|a, b| b.per_second.total_cmp(&a.per_second));
    let best = &results[0];
    let median = &results[results.len() / 2];
    let name = format!("storm[{label}] {clients} clients");
    figure(&format!("{name} rounds"), results.len(), "rounds");
    figure(&format!("{name} best"), format!("{:.0}", best.per_second), "handshakes/s");
    figure(&format!("{name} best p50"), ms(best.latency.at(0.50)), "ms");
    figure(&format!("{name} best p99"), ms(best.latency.at(0.99)), "ms");
    figure(&format!("{name} median"), format!("{:.0}", median.per_second), "handshakes/s");
    figure(&format!("{name} median p50"), ms(median.latency.at(0.50)), "ms");
    figure(&format!("{name} median p99"), ms(median.latency.at(0.99)), "ms");
    figure(&format!("{name} failed (all rounds)"), results.iter().map(|r| r.failed).sum::<usize>(), "handshakes");
    figure(&format!("{name} connected (all rounds)"), results.iter().map(|r| r.ok).sum::<usize>(), "handshakes");
    server.stop().await;
    Ok(())
}

/// Every client starts at once; with `in_flight` below the count, at most that many handshakes
/// run at a time (each one's latency is timed from its own start).
async fn round(urls: &Arc<Vec<String>>, in_flight: usize) -> Round {
    let permits = Arc::new(tokio::sync::Semaphore::new(in_flight));
    let overflows_before = common::listen_overflows();
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for i in 0..urls.len() {
        let urls = urls.clone();
        let permits = permits.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await;
            let t0 = Instant::now();
            let ws = common::connect(&urls[i], HANDSHAKE_TIMEOUT).await;
            let done = Instant::now();
            (ws, done - t0, done)
        });
    }
    let mut open = Vec::with_capacity(urls.len());
    let mut latencies = Vec::with_capacity(urls.len());
    let mut last = start;
    let mut failed = 0;
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((Ok(ws), latency, done)) => {
                open.push(ws);
                latencies.push(latency);
                last = last.max(done);
            }
            Ok((Err(e), _, _)) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
            Err(e) => {
                failed += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
        }
    }
    if let Some(e) = first_error {
        eprintln!("warning: {failed} handshakes failed, the first: {e}");
    }
    let elapsed = (last - start).as_secs_f64().max(1e-9);
    let ok = open.len();
    let overflows = common::listen_overflows().zip(overflows_before).map(|(after, before)| after.saturating_sub(before));
    // Every connection was open at once; now close them all.
    common::close_all(open).await;
    Round { ok, failed, per_second: ok as f64 / elapsed, latency: Percentiles::new(latencies), overflows }
}
