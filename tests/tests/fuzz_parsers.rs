//! Property tests over every parser that takes outside bytes (issue 9, item 8): the fuzz targets
//! of `herald-bench fuzz` (bench/src/fuzz/), a few hundred cases each from a fixed seed, and the
//! inputs the fuzzing found or that are worth keeping as named regressions.
//!
//! `HERALD_FUZZ_SEED=<n>` reruns with another seed (a failure prints its seed and its shrunk
//! input); `HERALD_FUZZ_CASES=<n>` scales every target to n cases. The long run is
//! `herald-bench fuzz --seconds 300` (`./scripts/bench`).

use herald_bench::fuzz::inputs::Bytes;
use herald_bench::fuzz::{self, Budget, ChatFrame, NotifyBinary, NotifyBody, NotifyText, QueueRecord, TokenInput};
use serde_json::{Map, Value, json};

/// The default seed: the same cases on every run, so a failure here is reproducible as is.
const SEED: u64 = 0x4845_5241_4c44; // "HERALD"

fn run(name: &str, cases: u64) {
    let seed = std::env::var("HERALD_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(SEED);
    let cases = std::env::var("HERALD_FUZZ_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(cases);
    let target = fuzz::target(name).unwrap_or_else(|| panic!("no fuzz target {name}"));
    let report = target.run(&Budget::Cases(cases), seed);
    report.assert_clean();
    assert_eq!(report.cases, cases, "{name}: the generator gave up ({} rejected)", report.rejected);
}

#[test]
fn every_target_has_a_test() {
    let tested = [
        "notify_text",
        "notify_binary",
        "chat_frame",
        "chat_args",
        "notify_body",
        "apigw",
        "queue_message",
        "sqs_batch",
        "kafka_batch",
        "tokens",
    ];
    let targets: Vec<&str> = fuzz::TARGETS.iter().map(|t| t.name).collect();
    assert_eq!(targets, tested, "a fuzz target was added or removed: give it a test below");
}

#[test]
fn notify_text_frames() {
    run("notify_text", 512);
}

#[test]
fn notify_binary_frames() {
    run("notify_binary", 512);
}

#[test]
fn chat_frames() {
    run("chat_frame", 384);
}

#[test]
fn chat_args() {
    run("chat_args", 256);
}

#[test]
fn notify_bodies() {
    run("notify_body", 256);
}

#[test]
fn api_gateway_events() {
    run("apigw", 256);
}

#[test]
fn queue_messages() {
    run("queue_message", 384);
}

#[test]
fn sqs_batches() {
    run("sqs_batch", 128);
}

#[test]
fn kafka_batches() {
    run("kafka_batch", 128);
}

#[test]
fn tokens() {
    run("tokens", 256);
}

// ---- named regressions ----------------------------------------------------------------------

fn ok(result: Result<(), String>) {
    if let Err(e) = result {
        panic!("{e}");
    }
}

fn text(s: &str) -> NotifyText {
    NotifyText::Any(s.to_string())
}

#[test]
fn frames_at_the_edges() {
    let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let big = format!(r#"{{"type":"subscribe","event_name":"{}"}}"#, "x".repeat(herald::protocol::MAX_MESSAGE_BYTES));
    for frame in [
        "",
        "\u{feff}{}",
        "C===",
        "CgA=",
        "CgA",
        "Cg-_",
        "1234",
        deep.as_str(),
        big.as_str(),
        r#"{"type":"subscribe","event_name":"é","type":"ack"}"#,
    ] {
        ok(fuzz::check_notify_text(&text(frame)));
    }
    // A 256-character name in four-byte characters (1024 bytes) is within the limit; 257 is not.
    for n in [256, 257] {
        let event_name = Value::from("🦀".repeat(n));
        ok(fuzz::check_notify_text(&NotifyText::Subscribe { unsubscribe: false, event_name, user_id: Some(json!(u64::MAX)) }));
    }
    for status in [0, 1, 2, -1, i32::MAX] {
        ok(fuzz::check_notify_text(&NotifyText::Base64Ack { push_id: "p-1".into(), status, url_safe: true }));
    }
    // Truncated and over-long protobuf: a length prefix past the end, a field number 0, a group.
    for bytes in [&[0x0a, 0x7f][..], &[0x02, 0x00], &[0x0b, 0x0c], &[0x0a, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]] {
        ok(fuzz::check_notify_binary(&NotifyBinary::Any(Bytes(bytes.to_vec()))));
    }
}

#[test]
fn chat_envelopes_at_the_edges() {
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    for frame in [
        r#"{"name":"Event.SendMessage","args":"   "}"#,
        r#"{"name":"Event.SendMessage","args":"[1]"}"#,
        r#"{"name":"Event.SendMessage","args":"\"{}\""}"#,
        r#"{"name":1,"args":{}}"#,
        format!(r#"{{"name":"Event.SendMessage","args":"{}"}}"#, deep).as_str(),
    ] {
        ok(fuzz::check_chat_frame(&ChatFrame::Any(frame.to_string())));
    }
}

#[test]
fn notify_bodies_at_the_128_kb_limit() {
    let max = herald::protocol::MAX_MESSAGE_BYTES;
    for n in [max - 1, max, max + 1] {
        ok(fuzz::check_notify_body(&NotifyBody::Sized(n)));
    }
    let deep = format!(r#"{{"user_id":1,"message":{}1{}}}"#, "{\"a\":".repeat(500), "}".repeat(500));
    ok(fuzz::check_notify_body(&NotifyBody::Any(Bytes(deep.into_bytes()))));
    // A user id of 257 characters, and one as a float.
    for user_id in [json!("1".repeat(257)), json!(1589.0), json!(-0)] {
        ok(fuzz::check_notify_body(&NotifyBody::Fields {
            user_id: Some(user_id),
            event_name: None,
            message: Some(json!({"text": "hi"})),
            title: None,
            body: None,
            extra: Map::new(),
        }));
    }
}

#[test]
fn queue_messages_at_the_edges() {
    for (body, fallback) in [
        (r#"{"user_id":"1","message":1}"#, ""),
        (r#"{"user_id":"1","message":1}"#, &*"q".repeat(257)),
        (r#"{"message_id":null,"delivery_method":"push","user_id":1}"#, "q-1"),
        (r#"{"id":"","user_id":"1"}"#, "q-1"),
        (r#"{"delivery_method":"push","event_name":"news","subject":"s"}"#, "q-1"),
        // Found by `herald-bench fuzz` (seed 1796646008224726947): another bad field hid the method.
        (r#"{"created_at":false,"delivery_method":"sms"}"#, "0aa00aaa-a00a-0a00-a00a-0aaa00a0aa0a"),
        (r#"{"delivery_method":"sms","event_name":0}"#, "q-1"),
    ] {
        ok(fuzz::check_queue_message(&QueueRecord {
            body: fuzz::QueueBody::Any(Bytes(body.as_bytes().to_vec())),
            fallback_id: fallback.into(),
        }));
    }
}

#[test]
fn tokens_attackers_write() {
    let t = herald::domain::epoch_secs(herald::domain::now());
    let good = format!(r#"{{"sub":"42","exp":{}}}"#, t + 3600);
    let expired_last = format!(r#"{{"sub":"42","exp":{},"exp":{}}}"#, t + 3600, t - 3600);
    let cases = [
        (r#"{"alg":"none","typ":"JWT"}"#, good.as_str(), fuzz::Signature::Empty),
        (r#"{"alg":"none"}"#, good.as_str(), fuzz::Signature::Right),
        (r#"{"alg":"HS512"}"#, good.as_str(), fuzz::Signature::Right),
        (r#"{"alg":"HS256","alg":"none"}"#, good.as_str(), fuzz::Signature::Right),
        (r#"{"alg":"HS256"}"#, good.as_str(), fuzz::Signature::WrongSecret),
        (r#"{"alg":"HS256"}"#, good.as_str(), fuzz::Signature::Padded),
        (r#"{"alg":"HS256"}"#, good.as_str(), fuzz::Signature::StandardAlphabet),
        (r#"{"alg":"HS256"}"#, expired_last.as_str(), fuzz::Signature::Right),
        (r#"{"alg":"HS256"}"#, r#"{"sub":{"id":42},"exp":"9999999999"}"#, fuzz::Signature::Right),
    ];
    for (header, payload, signature) in cases {
        for wrap in [fuzz::Wrap::None, fuzz::Wrap::Bearer(true), fuzz::Wrap::ExtraDot, fuzz::Wrap::Huge(16 * 1024)] {
            ok(fuzz::check_token(&TokenInput::Built {
                header: header.into(),
                payload: payload.into(),
                signature: signature.clone(),
                edits: Vec::new(),
                wrap,
            }));
        }
    }
    for any in ["", "Bearer", "Bearer ", "bearer\u{a0}x.y.z", "a.b.c", "..", "é.é.é"] {
        ok(fuzz::check_token(&TokenInput::Any(any.into())));
    }
}

/// Found by the fuzzing (queue_message, chat_frame): a float in a publisher's `message` moves by
/// one unit in the last place at every parse (notify, dispatch), because the workspace's
/// serde_json parses floats best-effort; `features = ["float_roundtrip"]` on the workspace's
/// serde_json makes parsing exact. Reported to the lead; the fuzz checks tolerate 2 ULPs until then.
#[test]
#[ignore = "needs serde_json's float_roundtrip feature in the workspace Cargo.toml (reported, issue 9 item 8)"]
fn message_floats_reach_clients_unchanged() {
    for literal in ["-1.9388902231453205e-219", "3.83469402789651e-31", "1.3558160925366322e+175"] {
        let sent: f64 = literal.parse().expect("a float");
        let body = format!(r#"{{"user_id":"1","message":{{"x":{literal}}}}}"#);
        let push = herald_dispatch::message::parse(body.as_bytes(), "q-1").expect("a deliverable message");
        let frame: Value = serde_json::from_str(&herald::protocol::push_json(&push)).expect("a JSON push");
        assert_eq!(frame["message"]["x"].as_f64(), Some(sent), "{literal} reached the client changed: {frame}");
    }
}
