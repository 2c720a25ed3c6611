//! Private events and the subscription cap end to end (CONTRACT §3, issue 9), on both backends:
//! what a client sees, and that a refused subscription receives nothing.

use std::time::Duration;

use herald_tests::local::*;
use herald_tests::on_both;
use serde_json::json;

on_both!(a_private_event_is_only_for_its_user, the_101st_subscription_is_refused_and_the_connection_lives);

async fn a_private_event_is_only_for_its_user(on: On) {
    let server = spawn_app(on).await;
    let mut owner = notify_client(&server, "42", "").await;
    let mut snoop = notify_client(&server, "7", "").await;
    let reply = request(&mut owner, json!({"type":"subscribe","event_name":"user:42:orders"})).await;
    assert_eq!(reply, json!({"type":"subscribed","event_name":"user:42:orders"}));
    let reply = request(&mut snoop, json!({"type":"subscribe","event_name":"user:42:orders"})).await;
    assert_eq!((reply["type"].as_str(), reply["code"].as_str()), (Some("error"), Some("forbidden")), "{reply}");
    // Claiming to be user 42 in the frame does not help either.
    let reply = request(&mut snoop, json!({"type":"subscribe","event_name":"user:42:orders","user_id":"42"})).await;
    assert_eq!(reply["type"], "error", "{reply}");
    publish(&server, json!({"event_name": "user:42:orders", "title": "your order shipped"})).await;
    assert_eq!(next_json(&mut owner).await["title"], "your order shipped");
    assert_silent(&mut snoop, Duration::from_millis(400)).await;
    // The refused connection is still open and usable.
    assert_eq!(request(&mut snoop, json!({"type":"subscribe","event_name":"public"})).await["type"], "subscribed");
}

async fn the_101st_subscription_is_refused_and_the_connection_lives(on: On) {
    let server = spawn_app(on).await;
    let mut ws = notify_client(&server, "42", "").await;
    for i in 0..100 {
        assert_eq!(request(&mut ws, json!({"type":"subscribe","event_name":format!("e{i}")})).await["type"], "subscribed", "e{i}");
    }
    let reply = request(&mut ws, json!({"type":"subscribe","event_name":"e100"})).await;
    assert_eq!((reply["type"].as_str(), reply["code"].as_str()), (Some("error"), Some("too_many_subscriptions")), "{reply}");
    publish(&server, json!({"event_name": "e100", "title": "your order shipped"})).await;
    assert_silent(&mut ws, Duration::from_millis(400)).await;
    // One freed, one more fits.
    assert_eq!(request(&mut ws, json!({"type":"unsubscribe","event_name":"e0"})).await["type"], "unsubscribed");
    assert_eq!(request(&mut ws, json!({"type":"subscribe","event_name":"e100"})).await["type"], "subscribed");
}
