//! History and recovery (CONTRACT §8, issue 15):
//!
//! - `recovery`: `clients` subscribers of one event go away, `behind` pushes are published, then
//!   every client reconnects at once and subscribes with the last offset it saw; timed from the
//!   first reconnect until every client has every push it missed (the replay), with each
//!   client's own time to catch up;
//! - the cost of keeping history in a fan-out: the same herald-local twice in one run, with
//!   history (the default) and without (`HERALD_HISTORY_TTL_S=0`), `fanout_clients` subscribers
//!   and `pushes` pushes back to back; deliveries per second until every client has every push.

use std::time::{Duration, Instant};

use futures::{SinkExt, StreamExt};
use herald_local::Server;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::BenchBackend;
use crate::common::{self, EVENT, Percentiles, Result, Ws, figure, ms};

const WAIT: Duration = Duration::from_secs(120);
/// Fan-out rounds of each kind (alternating).
const ROUNDS: usize = 5;

async fn publish(http: &reqwest::Client, server: &Server, token: &str, seq: u64) -> Result<()> {
    let body = json!({"event_name": EVENT, "message": {"seq": seq}});
    let response = http.post(server.url("/notify")).bearer_auth(token).json(&body).send().await?;
    if response.status().as_u16() != 202 {
        return Err(format!("POST /notify answered {}", response.status()).into());
    }
    Ok(())
}

/// Reads push frames until `n` arrived; the last one.
async fn pushes(ws: &mut Ws, n: usize) -> Result<Value> {
    let mut last = Value::Null;
    let mut got = 0;
    while got < n {
        let frame: Value = serde_json::from_str(&common::next_text(ws, WAIT).await?)?;
        if frame["type"] == "push" {
            got += 1;
            last = frame;
        }
    }
    Ok(last)
}

async fn wait_head(server: &Server, offset: u64) -> Result<String> {
    let stream = format!("event:{EVENT}");
    let deadline = Instant::now() + WAIT;
    loop {
        let head = server.app.handlers.store.stream_head(&stream, 86_400).await?;
        if head.offset >= offset {
            return Ok(head.epoch);
        }
        if Instant::now() > deadline {
            return Err(format!("{stream} stayed at offset {}", head.offset).into());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn recover(server: &Server, clients: usize, behind: usize) -> Result<()> {
    let http = reqwest::Client::new();
    let token = common::publisher_token()?;
    let mut subscribed = common::subscribed_clients(server, clients, EVENT, 100).await?;
    publish(&http, server, &token, 0).await?;
    let firsts = futures::future::join_all(subscribed.iter_mut().map(|ws| pushes(ws, 1))).await;
    let first = firsts.into_iter().next().ok_or("no client")??;
    let (offset, epoch) = (first["offset"].as_u64().ok_or("no offset")?, first["epoch"].as_str().ok_or("no epoch")?.to_string());
    common::close_all(subscribed).await;
    common::wait_drained(server, WAIT).await;
    let t0 = Instant::now();
    futures::stream::iter(1..=behind as u64)
        .map(|seq| {
            let (http, token) = (&http, &token);
            async move { publish(http, server, token, seq).await }
        })
        .buffer_unordered(16)
        .collect::<Vec<Result<()>>>()
        .await
        .into_iter()
        .collect::<Result<Vec<()>>>()?;
    wait_head(server, offset + behind as u64).await?;
    eprintln!("published {behind} pushes to nobody in {}", ms(t0.elapsed()));

    let tokens = (0..clients).map(|i| common::user_token(&format!("fan{i}"))).collect::<Result<Vec<_>>>()?;
    let base = server.ws_url("");
    let since = json!({"offset": offset, "epoch": epoch});
    let start = Instant::now();
    let results: Vec<Result<(Duration, bool)>> = futures::stream::iter(tokens)
        .map(|t| {
            let (base, since) = (base.clone(), since.clone());
            async move {
                let mut ws = common::connect(&format!("{base}/api/v1/notify/ws?token={t}"), WAIT).await?;
                ws.send(Message::Text(json!({"type":"subscribe","event_name":EVENT,"since":since}).to_string().into())).await?;
                let reply: Value = serde_json::from_str(&common::next_text(&mut ws, WAIT).await?)?;
                let recovered = reply["recovered"] == true;
                if recovered {
                    pushes(&mut ws, behind).await?;
                }
                let took = start.elapsed();
                let _ = ws.close(None).await;
                Ok((took, recovered))
            }
        })
        .buffer_unordered(clients)
        .collect()
        .await;
    let all = start.elapsed();
    let results = results.into_iter().collect::<Result<Vec<_>>>()?;
    let not_recovered = results.iter().filter(|(_, r)| !r).count();
    let name = format!("recovery {clients} clients, {behind} behind");
    figure(&format!("{name} all caught up"), ms(all), "ms");
    let times = Percentiles::new(results.iter().map(|(t, _)| *t).collect());
    figure(&format!("{name} per client p50"), ms(times.at(0.5)), "ms");
    figure(&format!("{name} per client p99"), ms(times.at(0.99)), "ms");
    figure(&format!("{name} replayed"), clients * behind, "pushes");
    figure(&format!("{name} replayed per second"), format!("{:.0}", (clients * behind) as f64 / all.as_secs_f64()), "pushes/s");
    figure(&format!("{name} not recovered"), not_recovered, "clients");
    Ok(())
}

/// Deliveries per second of `pushes` back-to-back pushes to `clients` subscribers.
async fn fanout_rate(server: &Server, clients: usize, pushes_n: usize) -> Result<f64> {
    let http = reqwest::Client::new();
    let token = common::publisher_token()?;
    let subscribed = common::subscribed_clients(server, clients, EVENT, 100).await?;
    let start = Instant::now();
    let receivers: Vec<_> = subscribed
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let r = pushes(&mut ws, pushes_n).await;
                (ws, r)
            })
        })
        .collect();
    for seq in 0..pushes_n as u64 {
        publish(&http, server, &token, seq).await?;
    }
    let mut done = Vec::new();
    for r in receivers {
        let (ws, got) = r.await?;
        got?;
        done.push(ws);
    }
    let took = start.elapsed();
    common::close_all(done).await;
    Ok((clients * pushes_n) as f64 / took.as_secs_f64())
}

pub async fn run(clients: usize, behind: usize, fanout_clients: usize, pushes_n: usize, backend: BenchBackend) -> Result<()> {
    let server = common::start_server(backend).await?;
    recover(&server, clients, behind).await?;
    server.stop().await;

    // Alternating rounds, so that a machine busy with something else weighs on both alike.
    let (mut on, mut off) = (Vec::new(), Vec::new());
    for round in 0..ROUNDS {
        for history in [true, false] {
            let server = common::start_server_with(backend, |o| {
                if !history {
                    o.delivery.history_ttl = Duration::ZERO;
                }
            })
            .await?;
            let rate = fanout_rate(&server, fanout_clients, pushes_n).await?;
            server.stop().await;
            let label = if history { "history" } else { "no history" };
            eprintln!("round {round}, {label}: {rate:.0} deliveries/s");
            if history { on.push(rate) } else { off.push(rate) }
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (with, without) = (median(&mut on), median(&mut off));
    let name = format!("fanout {fanout_clients} clients x {pushes_n} pushes (median of {ROUNDS})");
    figure(&format!("{name}, history"), format!("{with:.0}"), "deliveries/s");
    figure(&format!("{name}, no history"), format!("{without:.0}"), "deliveries/s");
    figure(&format!("{name}, history / no history"), format!("{:.3}", with / without), "ratio");
    Ok(())
}
