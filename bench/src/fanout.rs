//! Fan-out: live WebSocket clients subscribed to one event, every push timed from its publish to
//! each client's receipt.
//!
//! - `fanout`: publishes through `POST /notify` (the `notify` function, the in-memory queue, the
//!   poller, `dispatch` with herald-local's in-process gateway) three ways: every publish at once,
//!   back to back, and paced (see [`Schedule`]); then the same load generator against the
//!   minimal broadcast server (`crate::minimal`: no auth, no store, each frame serialized once),
//!   and herald-local's figures over its. The burst ratios compare the all-at-once runs: there
//!   both servers' clocks start at the same instant, while back to back the minimal server,
//!   which answers only once its frames are queued, holds its publisher back and so starts the
//!   clock of each publish late;
//! - `fanout-sdk`: `dispatch` itself (the coordinator, `DispatchDeps::deliver`) and the delivery
//!   workers it hands batches to (`DeliverDeps::deliver_batch`, all of a push's batches at once) on
//!   a runtime and OS thread of their own, posting every frame through
//!   `aws-sdk-apigatewaymanagement` to herald-local's management API over HTTP; the thread's CPU
//!   time is read before and after.

use std::ops::Range;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use herald::domain::{Push, now, rfc3339};
use herald::gateway::SdkGateway;
use herald_deliver::{DeliverDeps, DeliveryBatch};
use herald_dispatch::DispatchDeps;
use herald_local::Server;
use herald_local::functions::Handlers;
use serde::Deserialize;
use serde_json::json;
use tokio::task::JoinSet;
use tokio_tungstenite::tungstenite::Message;

use crate::BenchBackend;
use crate::common::{self, EVENT, Percentiles, Result, Ws, figure, ms};

/// Handshakes at a time while setting up the clients.
const SETUP_CONCURRENCY: usize = 100;
/// How long receivers wait past the expected end of publishing.
const GRACE: Duration = Duration::from_secs(30);

#[derive(Deserialize)]
struct PushFrame {
    message: Option<SeqMessage>,
}

#[derive(Deserialize)]
struct SeqMessage {
    seq: u64,
}

/// Receives until `expected` pushes with a seq in `range` arrived, or the deadline.
async fn receive(mut ws: Ws, range: Range<u64>, expected: usize, deadline: tokio::time::Instant) -> (Ws, Vec<(u64, Instant)>) {
    let mut got = Vec::with_capacity(expected);
    while got.len() < expected {
        match tokio::time::timeout_at(deadline, ws.next()).await {
            Ok(Some(Ok(Message::Text(t)))) => {
                let at = Instant::now();
                if let Ok(PushFrame { message: Some(SeqMessage { seq }) }) = serde_json::from_str::<PushFrame>(&t)
                    && range.contains(&seq)
                {
                    got.push((seq, at));
                }
            }
            Ok(Some(Ok(_))) => continue,
            _ => break,
        }
    }
    (ws, got)
}

fn spawn_receivers(
    clients: Vec<Ws>,
    range: Range<u64>,
    expected: usize,
    deadline: tokio::time::Instant,
) -> JoinSet<(Ws, Vec<(u64, Instant)>)> {
    let mut set = JoinSet::new();
    for ws in clients {
        set.spawn(receive(ws, range.clone(), expected, deadline));
    }
    set
}

/// What the clients saw, against the publish instants (index = seq - range.start).
struct Outcome {
    deliveries: usize,
    expected: usize,
    per_second: f64,
    latency: Percentiles,
    /// From the first publish to the last publish's answer.
    publishing: Duration,
    /// This process's CPU time over the run (server, clients and publisher together).
    cpu: Duration,
}

async fn collect(mut receivers: JoinSet<(Ws, Vec<(u64, Instant)>)>) -> (Vec<Ws>, Vec<(u64, Instant)>) {
    let mut clients = Vec::new();
    let mut all = Vec::new();
    while let Some(joined) = receivers.join_next().await {
        if let Ok((ws, got)) = joined {
            clients.push(ws);
            all.extend(got);
        }
    }
    (clients, all)
}

fn outcome(received: &[(u64, Instant)], seq_start: u64, published_at: &[Instant], expected: usize) -> Outcome {
    let first = published_at.first().copied().unwrap_or_else(Instant::now);
    let last = received.iter().map(|(_, at)| *at).max().unwrap_or(first);
    let latencies = received
        .iter()
        .filter_map(|(seq, at)| published_at.get((seq - seq_start) as usize).map(|p| at.saturating_duration_since(*p)))
        .collect();
    let span = last.saturating_duration_since(first).as_secs_f64().max(1e-9);
    Outcome {
        deliveries: received.len(),
        expected,
        per_second: received.len() as f64 / span,
        latency: Percentiles::new(latencies),
        publishing: Duration::ZERO,
        cpu: Duration::ZERO,
    }
}

fn report(name: &str, o: &Outcome) {
    figure(&format!("{name} deliveries"), format!("{} of {}", o.deliveries, o.expected), "deliveries");
    figure(&format!("{name} throughput"), format!("{:.0}", o.per_second), "deliveries/s");
    figure(&format!("{name} latency p50"), ms(o.latency.at(0.50)), "ms");
    figure(&format!("{name} latency p99"), ms(o.latency.at(0.99)), "ms");
    figure(&format!("{name} latency max"), ms(o.latency.max()), "ms");
    if !o.publishing.is_zero() {
        figure(&format!("{name} publish time"), ms(o.publishing), "ms");
    }
    if !o.cpu.is_zero() {
        figure(&format!("{name} cpu (the whole process)"), ms(o.cpu), "ms");
        let per_thousand = o.cpu.as_secs_f64() * 1000.0 / (o.deliveries.max(1) as f64 / 1000.0);
        figure(&format!("{name} cpu per 1000 deliveries"), format!("{per_thousand:.2}"), "ms");
    }
}

/// `POST /notify` with the publisher token: one event push carrying its seq.
async fn publish(http: &reqwest::Client, url: &str, token: &str, seq: u64) -> Result<()> {
    let body = json!({"event_name": EVENT, "message": {"seq": seq}});
    let response = http.post(url).bearer_auth(token).json(&body).send().await?;
    let status = response.status();
    if status.as_u16() != 202 {
        return Err(format!("POST /notify answered {status}: {}", response.text().await.unwrap_or_default()).into());
    }
    Ok(())
}

/// How a run's publishes are spaced.
#[derive(Debug, Clone, Copy)]
enum Schedule {
    /// Every publish in flight at once, each timed from the same instant (open loop: a server
    /// that is slow to answer cannot delay the clock of the publishes behind it).
    AllAtOnce,
    /// Each publish sent when the previous one was answered, timed from its own send (closed
    /// loop: a server that answers only after its fan-out paces the publisher, and the time its
    /// publishes wait to be sent is not counted).
    BackToBack,
    /// A publish every interval, timed from its own send.
    Paced(Duration),
}

/// One run through POST /notify of the server at `base` (`http://host:port`): `publishes`
/// pushes sent as `schedule` says.
async fn notify_run(base: &str, clients: Vec<Ws>, seq_start: u64, publishes: usize, schedule: Schedule) -> Result<(Vec<Ws>, Outcome)> {
    let expected = clients.len() * publishes;
    let publishing = match schedule {
        Schedule::Paced(every) => every * publishes as u32,
        _ => Duration::ZERO,
    };
    let deadline = tokio::time::Instant::now() + publishing + GRACE;
    let receivers = spawn_receivers(clients, seq_start..seq_start + publishes as u64, publishes, deadline);
    let http = reqwest::Client::new();
    let url = format!("{base}/notify");
    let token = common::publisher_token()?;
    // One request first so that the HTTP connection is open before the clock starts.
    let warm = http.get(format!("{base}/health")).send().await?;
    if !warm.status().is_success() {
        return Err(format!("GET /health answered {}", warm.status()).into());
    }
    let mut published_at = Vec::with_capacity(publishes);
    let cpu0 = common::process_cpu_time();
    let start = tokio::time::Instant::now();
    let mut failure = None;
    match schedule {
        Schedule::AllAtOnce => {
            let at = Instant::now();
            published_at.resize(publishes, at);
            let all = (0..publishes).map(|i| publish(&http, &url, &token, seq_start + i as u64));
            failure = futures::future::join_all(all).await.into_iter().find_map(Result::err);
        }
        Schedule::BackToBack | Schedule::Paced(_) => {
            for i in 0..publishes {
                if let Schedule::Paced(every) = schedule {
                    tokio::time::sleep_until(start + every * i as u32).await;
                }
                published_at.push(Instant::now());
                if let Err(e) = publish(&http, &url, &token, seq_start + i as u64).await {
                    failure = Some(e);
                    break;
                }
            }
        }
    }
    let publishing = published_at.first().map(Instant::elapsed).unwrap_or_default();
    let (clients, received) = collect(receivers).await;
    let cpu = common::process_cpu_time().saturating_sub(cpu0);
    if let Some(e) = failure {
        common::close_all(clients).await;
        return Err(e);
    }
    Ok((clients, Outcome { publishing, cpu, ..outcome(&received, seq_start, &published_at, expected) }))
}

/// Which servers `fanout` drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Servers {
    /// herald-local, then the minimal server, and the ratios.
    Both,
    /// herald-local only.
    Herald,
    /// The minimal broadcast server only.
    Minimal,
}

/// One server's runs: all at once, back to back, and paced.
struct Pass {
    burst: Outcome,
    back_to_back: Outcome,
    paced: Outcome,
}

/// The three runs in turn on `clients` of the server at `base`, the paced one `interval` apart;
/// the burst `bursts` times, the median run (by throughput) kept.
async fn pass(
    name: &str,
    base: &str,
    mut clients: Vec<Ws>,
    publishes: usize,
    interval: Duration,
    bursts: usize,
) -> Result<(Vec<Ws>, Pass)> {
    let mut runs = Vec::with_capacity(bursts.max(1));
    for run in 0..bursts.max(1) {
        // Seqs of a range of their own per run, below the other schedules' ranges.
        let (c, outcome) = notify_run(base, clients, run as u64 * publishes as u64, publishes, Schedule::AllAtOnce).await?;
        clients = c;
        runs.push(outcome);
    }
    runs.sort_by(|a, b| a.per_second.total_cmp(&b.per_second));
    if runs.len() > 1 {
        let each = |f: &dyn Fn(&Outcome) -> String| runs.iter().map(f).collect::<Vec<_>>().join(" ");
        figure(&format!("{name}, burst runs (slowest first) throughput"), each(&|o| format!("{:.0}", o.per_second)), "deliveries/s");
        figure(&format!("{name}, burst runs (slowest first) p99"), each(&|o| ms(o.latency.at(0.99))), "ms");
    }
    let burst = runs.swap_remove(runs.len() / 2);
    let (clients, back_to_back) = notify_run(base, clients, 1_000_000, publishes, Schedule::BackToBack).await?;
    let (clients, paced) = notify_run(base, clients, 2_000_000, publishes, Schedule::Paced(interval)).await?;
    Ok((clients, Pass { burst, back_to_back, paced }))
}

fn report_pass(name: &str, rate: u64, interval: Duration, p: &Pass) {
    report(&format!("{name}, burst (all publishes at once)"), &p.burst);
    report(&format!("{name}, back to back (each publish after the last one's answer)"), &p.back_to_back);
    report(&format!("{name}, paced at {rate} deliveries/s (a publish every {} ms)", interval.as_millis()), &p.paced);
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 { format!("{:.2}", a / b) } else { "n/a".into() }
}

pub async fn run(connections: usize, publishes: usize, rate: u64, servers: Servers, bursts: usize) -> Result<()> {
    if publishes as u64 * bursts as u64 > 1_000_000 {
        return Err("--publishes x --bursts must stay within 1,000,000 (each burst numbers its pushes apart)".into());
    }
    let name = format!("fanout {connections} connections x {publishes} publishes");
    // Paced: publishes spaced so that `rate` deliveries a second go out.
    let interval = Duration::from_secs_f64(connections as f64 / rate.max(1) as f64);

    let herald = if servers == Servers::Minimal {
        None
    } else {
        // `HERALD_HISTORY_TTL_S` (e.g. 0: pushes not kept, CONTRACT §8 off), for comparison;
        // unset, herald-local's default (history on).
        let history_ttl = std::env::var("HERALD_HISTORY_TTL_S").ok().map(|v| v.trim().parse::<u64>()).transpose()?;
        let server = common::start_server_with(BenchBackend::Embedded, |o| {
            if let Some(secs) = history_ttl {
                o.delivery.history_ttl = Duration::from_secs(secs);
            }
        })
        .await?;
        if let Some(secs) = history_ttl {
            figure(&format!("{name} history ttl (HERALD_HISTORY_TTL_S)"), secs, "s");
        }
        let clients = common::subscribed_clients(&server, connections, EVENT, SETUP_CONCURRENCY).await?;
        let (clients, p) = pass(&name, &server.url(""), clients, publishes, interval, bursts).await?;
        report_pass(&name, rate, interval, &p);
        common::close_all(clients).await;
        server.stop().await;
        Some(p)
    };

    let minimal = if servers == Servers::Herald {
        None
    } else {
        let server = crate::minimal::start().await?;
        let clients = common::subscribed_clients_at(&format!("ws://{}", server.addr), connections, EVENT, SETUP_CONCURRENCY).await?;
        let minimal_name = format!("fanout minimal server {connections} connections x {publishes} publishes");
        let (clients, p) = pass(&minimal_name, &format!("http://{}", server.addr), clients, publishes, interval, bursts).await?;
        report_pass(&minimal_name, rate, interval, &p);
        if server.dropped() > 0 {
            figure(&format!("{minimal_name} subscribers dropped (queue full)"), server.dropped(), "connections");
        }
        common::close_all(clients).await;
        server.stop().await;
        Some(p)
    };

    if let (Some(h), Some(m)) = (&herald, &minimal) {
        let unit = "x (herald-local / minimal server)";
        figure(&format!("{name} ratio.throughput"), ratio(h.burst.per_second, m.burst.per_second), unit);
        let p99 = |o: &Outcome| o.latency.at(0.99).as_secs_f64();
        figure(&format!("{name} ratio.burst_p99"), ratio(p99(&h.burst), p99(&m.burst)), unit);
        figure(
            &format!("{name} ratio.burst_p50"),
            ratio(h.burst.latency.at(0.50).as_secs_f64(), m.burst.latency.at(0.50).as_secs_f64()),
            unit,
        );
        figure(&format!("{name} ratio.back_to_back_p99"), ratio(p99(&h.back_to_back), p99(&m.back_to_back)), unit);
        figure(&format!("{name} ratio.paced_p99"), ratio(p99(&h.paced), p99(&m.paced)), unit);
    }
    println!(
        "fanout leaves out: the network (loopback only), TLS, DynamoDB and SQS (herald-local's in-memory store and queues), \
         other machines (the clients, the publisher and the server share this machine's {} cores)",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    Ok(())
}

/// What the dispatcher thread measured.
struct DispatchRun {
    published_at: Vec<Instant>,
    sent: usize,
    gone: usize,
    wall: Duration,
    cpu: Duration,
}

fn bench_push(seq: u64) -> Push {
    Push {
        id: uuid::Uuid::new_v4().to_string(),
        created_at: rfc3339(now()),
        user_id: None,
        event_name: Some(EVENT.into()),
        title: None,
        body: None,
        message: Some(json!({ "seq": seq })),
        position: None,
    }
}

/// The fan-out queue of the dispatcher thread: the batches its coordinator handed out.
#[derive(Default)]
struct Batches(std::sync::Mutex<Vec<DeliveryBatch>>);

impl Batches {
    fn take(&self) -> Vec<DeliveryBatch> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[async_trait::async_trait]
impl herald::queue::Queue for Batches {
    async fn send(&self, body: &str) -> std::result::Result<String, herald::queue::QueueError> {
        let batch = serde_json::from_str(body).map_err(|e| herald::queue::QueueError::Send(Box::new(e)))?;
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(batch);
        Ok(String::new())
    }
}

/// Which management API the dispatcher posts through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// `aws-sdk-apigatewaymanagement` over HTTP to herald-local's `/@connections` (the cloud's path).
    Sdk,
    /// herald-local's in-process gateway: the baseline, dispatch's own cost without the SDK.
    InProcess,
}

/// The dispatcher: a current-thread runtime on this OS thread, so that the thread's CPU time is
/// the dispatcher's (the SDK's HTTP connections are driven by tasks of this runtime too).
fn dispatcher(handlers: Arc<Handlers>, endpoint: String, via: Via, seqs: Range<u64>) -> Result<DispatchRun> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async move {
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_dynamodb::config::Credentials::new("test", "test", None, None, "static"))
            .load()
            .await;
        let sdk_gateway = SdkGateway::new(&sdk, &endpoint);
        let gateway: &dyn herald::gateway::Gateway = match via {
            Via::Sdk => &sdk_gateway,
            Via::InProcess => &handlers.gateway,
        };
        // The coordinator hands its batches to this queue; the workers below take them, as
        // the fan-out queue's workers would, on this same thread.
        let batches = Batches::default();
        let deps = DispatchDeps { gateway, fanout: &batches, ..handlers.dispatch_deps() };
        let worker = DeliverDeps { gateway, ..handlers.deliver_deps() };
        let deliver = |seq: u64| {
            let (deps, worker, batches) = (&deps, &worker, &batches);
            async move {
                let push = bench_push(seq);
                let key = herald_dispatch::idempotency_key("bench", &push.id);
                let delivered = deps.deliver(&push, &key).await.map_err(|e| format!("push {seq} failed: {e}"))?;
                let (mut sent, mut gone) = (delivered.sent, delivered.gone);
                for outcome in futures::future::join_all(batches.take().iter().map(|b| worker.deliver_batch(b))).await {
                    let outcome = outcome.map_err(|e| format!("a batch of push {seq} failed: {e}"))?;
                    sent += outcome.sent;
                    gone += outcome.gone;
                }
                Ok::<_, String>((sent, gone))
            }
        };
        // Warm-up (not counted by the clients): opens the SDK's HTTP connections.
        deliver(u64::MAX).await.map_err(|e| format!("warm-up: {e}"))?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut published_at = Vec::with_capacity(seqs.clone().count());
        let (mut sent, mut gone) = (0, 0);
        let cpu0 = common::thread_cpu_time();
        let t0 = Instant::now();
        for seq in seqs {
            published_at.push(Instant::now());
            let (s, g) = deliver(seq).await?;
            sent += s;
            gone += g;
        }
        let wall = t0.elapsed();
        let cpu = common::thread_cpu_time().saturating_sub(cpu0);
        Ok(DispatchRun { published_at, sent, gone, wall, cpu })
    })
}

/// One pass: the dispatcher on its own thread delivers `publishes` pushes; the clients time them.
async fn dispatch_pass(
    server: &Server,
    clients: Vec<Ws>,
    via: Via,
    seq_start: u64,
    publishes: usize,
) -> Result<(Vec<Ws>, Outcome, DispatchRun)> {
    let expected = clients.len() * publishes;
    let seqs = seq_start..seq_start + publishes as u64;
    // Bounded: the posts of 50 pushes to 2,000 connections take seconds, not minutes.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120) + GRACE;
    let receivers = spawn_receivers(clients, seqs.clone(), publishes, deadline);
    let handlers = server.app.handlers.clone();
    let endpoint = server.url("");
    let (tx, rx) = tokio::sync::oneshot::channel();
    let thread = std::thread::Builder::new().name("dispatcher".into()).spawn(move || {
        let _ = tx.send(dispatcher(handlers, endpoint, via, seqs));
    })?;
    let run = rx.await.map_err(|_| "the dispatcher thread died");
    let _ = thread.join();
    let (clients, received) = collect(receivers).await;
    match run {
        Ok(Ok(run)) => {
            let o = outcome(&received, seq_start, &run.published_at, expected);
            Ok((clients, o, run))
        }
        Ok(Err(e)) => {
            common::close_all(clients).await;
            Err(e)
        }
        Err(e) => {
            common::close_all(clients).await;
            Err(e.into())
        }
    }
}

fn report_dispatch(name: &str, o: &Outcome, run: &DispatchRun) {
    report(name, o);
    figure(&format!("{name} dispatcher posts"), run.sent, "posts");
    if run.gone > 0 {
        figure(&format!("{name} dispatcher gone"), run.gone, "posts");
    }
    figure(&format!("{name} dispatcher wall time"), ms(run.wall), "ms");
    figure(&format!("{name} dispatcher rate"), format!("{:.0}", run.sent as f64 / run.wall.as_secs_f64().max(1e-9)), "posts/s");
    figure(&format!("{name} dispatcher cpu"), ms(run.cpu), "ms");
    let per_thousand = run.cpu.as_secs_f64() * 1000.0 / (run.sent.max(1) as f64 / 1000.0);
    figure(&format!("{name} dispatcher cpu per 1000 deliveries"), format!("{per_thousand:.2}"), "ms");
}

pub async fn run_sdk(connections: usize, publishes: usize) -> Result<()> {
    let server = common::start_server(BenchBackend::Embedded).await?;
    let clients = common::subscribed_clients(&server, connections, EVENT, SETUP_CONCURRENCY).await?;
    let name = format!("fanout-sdk {connections} connections x {publishes} publishes");

    let (clients, o, run) = dispatch_pass(&server, clients, Via::Sdk, 0, publishes).await?;
    report_dispatch(&name, &o, &run);

    let (clients, o, run) = dispatch_pass(&server, clients, Via::InProcess, 1_000_000, publishes).await?;
    report_dispatch(&format!("{name}, baseline without the SDK (in-process gateway)"), &o, &run);

    common::close_all(clients).await;
    server.stop().await;
    Ok(())
}
