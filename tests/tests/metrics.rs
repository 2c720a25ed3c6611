//! `GET /metrics` (issue 11): scraped before and after what a user does — connect, subscribe,
//! publish, nack, ack, time out, a poison message, a disconnect — and the counters move by
//! exactly what happened. One test in its own binary: the registry is per process, so no other
//! test's traffic can move these counters (under `cargo test` as under nextest).

use std::collections::HashMap;
use std::time::Duration;

use herald_tests::local::*;
use serde_json::json;

type Scrape = HashMap<String, f64>;

async fn scrape(server: &herald_local::Server) -> Scrape {
    let response = reqwest::get(server.url("/metrics")).await.expect("GET /metrics");
    assert_eq!(response.status(), 200);
    let content_type = response.headers()["content-type"].to_str().unwrap().to_string();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = response.text().await.unwrap();
    let mut samples = Scrape::new();
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.is_empty()) {
        // Prometheus text: `name{labels} value`, one sample a line.
        let (name, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("not a sample line: {line:?}"));
        assert!(name.starts_with("herald_"), "{line:?}");
        let value: f64 = value.parse().unwrap_or_else(|_| panic!("not a number: {line:?}"));
        assert!(samples.insert(name.to_string(), value).is_none(), "{name} twice");
    }
    for family in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let name = family.split(' ').next().unwrap();
        assert!(samples.keys().any(|k| k.starts_with(name)), "{name} has a TYPE but no sample");
    }
    samples
}

fn moved(before: &Scrape, after: &Scrape, name: &str) -> f64 {
    after.get(name).unwrap_or_else(|| panic!("{name} missing")) - before.get(name).copied().unwrap_or(0.0)
}

async fn eventually_moved(server: &herald_local::Server, before: &Scrape, name: &str, by: f64) -> Scrape {
    for _ in 0..50 {
        let now = scrape(server).await;
        if moved(before, &now, name) >= by {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let now = scrape(server).await;
    panic!("{name} moved by {} instead of {by}", moved(before, &now, name));
}

#[tokio::test]
async fn metrics_move_with_what_clients_and_publishers_do() {
    let server = spawn_with(On::Embedded, |o| {
        o.delivery.ack_timeout = Duration::from_millis(300);
        o.delivery.max_attempts = 2;
    })
    .await;
    let zero = scrape(&server).await;
    assert_eq!(zero["herald_connections{api=\"notify\"}"], 0.0);
    assert_eq!(zero["herald_faults_injected_total{kind=\"post_throttle\"}"], 0.0);

    // A subscriber and a published push.
    let mut plain = notify_client(&server, "m1", "").await;
    assert_eq!(request(&mut plain, json!({"type":"subscribe","event_name":"m:e"})).await["type"], "subscribed");
    assert_eq!(request(&mut plain, json!({"type":"subscribe","event_name":"m:e"})).await["type"], "subscribed");
    let before = scrape(&server).await;
    assert_eq!(before["herald_connections{api=\"notify\"}"], 1.0);
    assert_eq!(before["herald_connections{api=\"chat\"}"], 0.0);
    assert_eq!(moved(&zero, &before, "herald_connections_opened_total{api=\"notify\"}"), 1.0);
    assert_eq!(moved(&zero, &before, "herald_subscriptions_added_total"), 1.0, "a repeated subscribe is not a new one");
    assert_eq!(before["herald_subscriptions"], 1.0);
    publish(&server, json!({"event_name":"m:e","message":{"n":1}})).await;
    assert_eq!(next_json(&mut plain).await["type"], "push");
    let after = eventually_moved(&server, &before, "herald_deliveries_total", 1.0).await;
    assert_eq!(moved(&before, &after, "herald_pushes_accepted_total"), 1.0);
    assert_eq!(moved(&before, &after, "herald_pushes_dispatched_total"), 1.0);
    assert_eq!(moved(&before, &after, "herald_deliveries_total"), 1.0);
    assert_eq!(moved(&before, &after, "herald_post_seconds_count"), 1.0);
    assert_eq!(moved(&before, &after, "herald_delivery_latency_seconds_count"), 1.0);
    assert_eq!(moved(&before, &after, "herald_delivery_latency_seconds_bucket{le=\"+Inf\"}"), 1.0);
    assert!(moved(&before, &after, "herald_delivery_latency_seconds_sum") > 0.0);

    // Ack mode: a nack (sent again at once), an ack, then a push left unacked until the close.
    let mut acking = notify_client(&server, "m2", "&ack=required").await;
    let before = scrape(&server).await;
    let id = publish(&server, json!({"user_id":"m2","title":"t"})).await;
    assert_eq!(next_json(&mut acking).await["id"], id);
    send_json(&mut acking, json!({"type":"ack","push_id":id,"status":"nack"})).await;
    assert_eq!(next_json(&mut acking).await["id"], id, "the nack sends it again");
    send_json(&mut acking, json!({"type":"ack","push_id":id,"status":"ack"})).await;
    let after = eventually_moved(&server, &before, "herald_acks_total{status=\"ack\"}", 1.0).await;
    assert_eq!(moved(&before, &after, "herald_acks_total{status=\"nack\"}"), 1.0);
    assert_eq!(moved(&before, &after, "herald_redeliveries_total"), 1.0);
    let unacked = publish(&server, json!({"user_id":"m2","title":"never acked"})).await;
    assert_eq!(next_json(&mut acking).await["id"], unacked);
    assert_eq!(next_json(&mut acking).await["id"], unacked, "resent after the ack timeout");
    assert_eq!(next_json(&mut acking).await["code"], "ack_timeout");
    let after_timeout = eventually_moved(&server, &after, "herald_ack_timeouts_total", 1.0).await;
    assert_eq!(moved(&after, &after_timeout, "herald_redeliveries_total"), 1.0);

    // A poison message is dead-lettered.
    let before = scrape(&server).await;
    herald::queue::Queue::send(&*server.app.handlers.queue, "not json").await.unwrap();
    eventually_moved(&server, &before, "herald_dead_letters_total", 1.0).await;

    // The subscriber leaves: its connection and subscription are gone from the gauges.
    let before = scrape(&server).await;
    drop(plain);
    let after = eventually_moved(&server, &before, "herald_subscriptions_removed_total", 1.0).await;
    assert!(moved(&before, &after, "herald_connections_closed_total") >= 1.0);
    assert_eq!(after["herald_subscriptions"], 0.0);
    assert_eq!(after["herald_connections{api=\"notify\"}"], 0.0, "the ack-timed-out connection was closed too");
}
