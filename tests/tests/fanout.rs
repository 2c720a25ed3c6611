//! The split fan-out end to end (issue 10, CONTRACT §4 "Delivery guarantee"): a push whose
//! audience is larger than one delivery batch is handed out in batches on the fan-out queue and
//! posted by the delivery workers; every subscriber gets it exactly once, ack-mode subscribers
//! included, on both backends.

use std::time::Duration;

use futures::StreamExt;
use futures::future::join_all;
use herald_tests::local::*;
use herald_tests::on_both;
use serde_json::json;

on_both!(an_event_larger_than_a_batch_reaches_every_subscriber_exactly_once, ack_mode_subscribers_of_a_large_event_get_it_and_can_ack);

const SUBSCRIBERS: usize = herald_deliver::BATCH_SIZE + 50;

/// Connects and subscribes the clients, 25 at a time (DynamoDB Local answers slowly when the
/// whole suite runs beside it).
async fn subscribers(server: &herald_local::Server, query: &str) -> Vec<Ws> {
    futures::stream::iter(0..SUBSCRIBERS)
        .map(|i| async move {
            let mut ws = notify_client(server, &format!("u{i}"), query).await;
            assert_eq!(request(&mut ws, json!({"type":"subscribe","event_name":"big-news"})).await["type"], "subscribed");
            ws
        })
        .buffer_unordered(25)
        .collect()
        .await
}

async fn an_event_larger_than_a_batch_reaches_every_subscriber_exactly_once(on: On) {
    let server = spawn_app(on).await;
    let mut clients = subscribers(&server, "").await;
    publish(&server, json!({"event_name": "big-news", "title": "t", "body": "b"})).await;
    let pushes = join_all(clients.iter_mut().map(|ws| async move {
        let push = next_json(ws).await;
        // Exactly once: nothing more arrives.
        assert_silent(ws, Duration::from_millis(300)).await;
        push
    }))
    .await;
    let id = pushes[0]["id"].clone();
    assert!(pushes.iter().all(|p| p["type"] == "push" && p["id"] == id && p["title"] == "t"), "one push, the same id everywhere");
    assert_eq!(server.app.queues.fanout.depth().await, 0, "the fan-out queue is drained");
    assert!(server.app.queues.fanout.dead_letters().await.is_empty());
}

async fn ack_mode_subscribers_of_a_large_event_get_it_and_can_ack(on: On) {
    let server = spawn_app(on).await;
    let mut clients = subscribers(&server, "&ack=required").await;
    publish(&server, json!({"event_name": "big-news", "message": {"n": 1}})).await;
    join_all(clients.iter_mut().map(|ws| async move {
        let push = next_json(ws).await;
        assert_eq!(push["message"], json!({"n": 1}));
        send_json(ws, json!({"type": "ack", "push_id": push["id"]})).await;
        // An ack has no reply; the push is not sent again.
        assert_silent(ws, Duration::from_millis(300)).await;
    }))
    .await;
}
