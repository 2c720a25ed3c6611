//! Fuzzing every parser that takes outside bytes (issue 9, item 8).
//!
//! Only stable Rust is available, so neither cargo-fuzz nor libFuzzer: each target is a
//! [proptest](https://docs.rs/proptest) strategy (random inputs, and valid inputs mutated byte by
//! byte) and a check that must hold for every input it generates. A check fails by returning an
//! error or by panicking; the first failures of a run are shrunk to a small input and printed.
//!
//! The same targets run in two places: `tests/tests/fuzz_parsers.rs` (a few hundred cases each,
//! a fixed seed, in the normal test suite) and `herald-bench fuzz` (a time budget shared by the
//! targets, a random seed; `./scripts/bench` runs it for 5 minutes).

mod endpoints;
mod frames;
pub mod inputs;
mod queue;
mod tokens;

use std::cell::{Cell, RefCell};
use std::fmt::Debug;
use std::panic::{self, AssertUnwindSafe};
use std::sync::Once;
use std::time::{Duration, Instant};

use proptest::strategy::{Strategy, ValueTree};
use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

pub use endpoints::{ApigwInput, NotifyBody, check_apigw, check_notify_body};
pub use frames::{
    ChatArgsInput, ChatFrame, Field, NotifyBinary, NotifyText, check_chat_args, check_chat_frame, check_notify_binary, check_notify_text,
};
pub use queue::{
    KafkaBatch, KafkaRecordInput, KafkaValue, QueueBody, QueueRecord, SqsBatch, SqsRecord, check_kafka_batch, check_queue_message,
    check_sqs_batch,
};
pub use tokens::{Signature, TokenInput, Wrap, check_token};

/// One fuzz target: a parser (or a handler over it), its generator and its properties.
pub struct Target {
    pub name: &'static str,
    /// What is driven and what is asserted, one line.
    pub about: &'static str,
    run: fn(&Budget, u64) -> Report,
}

impl Target {
    /// Runs the target until the budget is spent, from this seed.
    pub fn run(&self, budget: &Budget, seed: u64) -> Report {
        (self.run)(budget, seed)
    }
}

/// Every target, in the order the job runs them.
pub const TARGETS: &[Target] = &[
    Target {
        name: "notify_text",
        about: "parse_text_frame: JSON frames, base64 protobuf acks, mutations; subscribe/ack round trips, JSON wins over base64, base64 = binary",
        run: frames::run_notify_text,
    },
    Target {
        name: "notify_binary",
        about: "parse_binary_frame: raw protobuf, hand-built wire fields, mutated acks; ack encode→parse round trip, same result as base64 in a text frame",
        run: frames::run_notify_binary,
    },
    Target {
        name: "chat_frame",
        about: "parse_chat_frame: envelopes with args as object or JSON text; name kept, args always an object, object and text forms equal",
        run: frames::run_chat_frame,
    },
    Target {
        name: "chat_args",
        about: "chat Args accessors, reach checks and herald::chat::serve over random args and callers; ids 1..=256 chars, executor = sid, limit 1..=1000",
        run: frames::run_chat_args,
    },
    Target {
        name: "notify_body",
        about: "POST /notify through herald_notify::handle with a publisher token; 202 or 4xx with {\"error\":{code,message}}, a 202's queued body is deliverable",
        run: endpoints::run_notify_body,
    },
    Target {
        name: "apigw",
        about: "body_bytes, subprotocol and query tokens, ?format/?ack, the authorizer context; base64 bodies canonical, identity context round trip",
        run: endpoints::run_apigw,
    },
    Target {
        name: "queue_message",
        about: "dispatch message::parse (SQS bodies, Kafka values); ids and names 1..=256 chars, an audience, re-parse of the push gives the same push",
        run: queue::run_queue_message,
    },
    Target {
        name: "sqs_batch",
        about: "DispatchDeps::handle_sqs over the memory store: no failure reported, undeliverable ones dead-lettered, the rest reach exactly their audience",
        run: queue::run_sqs_batch,
    },
    Target {
        name: "kafka_batch",
        about: "DispatchDeps::handle_kafka: every record processed, bad base64 and undeliverable ones dead-lettered, the rest reach exactly their audience",
        run: queue::run_kafka_batch,
    },
    Target {
        name: "tokens",
        about: "Verifier (HS256, with and without iss/aud) over random and mutated tokens: never accepts a wrong signature, alg, exp, iss or aud; good tokens pass",
        run: tokens::run_tokens,
    },
];

/// What the targets do not cover, printed by the job.
pub const LEFT_OUT: &[&str] = &[
    "JWKS documents and RS256/ES256 signatures (auth/jwks.rs needs an HTTP server; only HS256 keys are fuzzed)",
    "the remote token check's answers (HERALD_AUTH_VERIFY_URL) and Secrets Manager answers",
    "herald-local's own route selection (local/src/ws.rs select_route, private) and the HTTP/WebSocket framing of hyper, axum and tungstenite",
    "the Lambda runtime's event envelopes (aws_lambda_events' serde): events are built valid, their fields fuzzed",
    "Herald's own queue bodies (redeliver's RedeliveryCheck, deliver's DeliveryBatch) and DynamoDB items and cursors: not outside bytes",
    "route handlers past their parsers (subscribe, ack, connect, chat-*): their frames and arguments are fuzzed, their store effects are tested elsewhere",
    "operator configuration (environment variables, herald-local's flags)",
];

pub fn target(name: &str) -> Option<&'static Target> {
    TARGETS.iter().find(|t| t.name == name)
}

/// How long a target runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// This many generated cases.
    Cases(u64),
    /// Until this much time has passed.
    Time(Duration),
}

/// A failure, shrunk.
#[derive(Debug, Clone)]
pub struct Failure {
    /// The smallest failing input found, `Debug`-printed.
    pub input: String,
    /// What did not hold (or the panic, with its location).
    pub message: String,
    /// Shrinking steps taken.
    pub shrink_steps: u32,
}

/// What a run of one target did.
#[derive(Debug, Clone)]
pub struct Report {
    pub target: &'static str,
    pub seed: u64,
    pub cases: u64,
    pub failures: u64,
    /// Cases the generator could not make (filters); not run.
    pub rejected: u64,
    pub elapsed: Duration,
    /// The first few failures, shrunk.
    pub examples: Vec<Failure>,
}

impl Report {
    /// `fuzz.<target>.cases: N` and `fuzz.<target>.failures: N`, the rate, then each shrunk failure.
    pub fn print(&self) {
        let t = self.target;
        println!("fuzz.{t}.cases: {}", self.cases);
        println!("fuzz.{t}.failures: {}", self.failures);
        println!("fuzz.{t}.rate: {:.0} cases/s", self.cases as f64 / self.elapsed.as_secs_f64().max(1e-9));
        for f in &self.examples {
            println!("fuzz.{t}.failure: {}\n  minimal input ({} shrink steps): {}", f.message, f.shrink_steps, f.input);
        }
    }

    /// Panics, naming the shrunk inputs and the seed, when any case failed.
    pub fn assert_clean(&self) {
        if self.failures > 0 {
            let examples: Vec<String> = self.examples.iter().map(|f| format!("- {}\n  minimal input: {}", f.message, f.input)).collect();
            panic!(
                "fuzz target {} failed {} of {} cases (seed {}; rerun with HERALD_FUZZ_SEED={}):\n{}",
                self.target,
                self.failures,
                self.cases,
                self.seed,
                self.seed,
                examples.join("\n")
            );
        }
    }
}

/// Failures shrunk per run (the rest are counted only).
const SHRUNK_FAILURES: usize = 3;
/// Shrinking steps per failure, at most.
const MAX_SHRINK_STEPS: u32 = 4096;
/// Shrinking time per failure, at most.
const MAX_SHRINK_TIME: Duration = Duration::from_secs(20);

thread_local! {
    /// Set while a check runs on this thread: its panics are recorded, not printed.
    static QUIET: Cell<bool> = const { Cell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A panic hook that keeps the checks' panics quiet (they are reported as failures) and leaves
/// every other thread's panics to the previous hook.
fn install_panic_hook() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = panic::take_hook();
        panic::set_hook(Box::new(move |info| {
            if QUIET.with(Cell::get) {
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(info.to_string().replace('\n', " ")));
            } else {
                previous(info);
            }
        }));
    });
}

fn run_one<V>(check: &mut impl FnMut(&V) -> Result<(), String>, value: &V) -> Result<(), String> {
    QUIET.with(|q| q.set(true));
    let outcome = panic::catch_unwind(AssertUnwindSafe(|| check(value)));
    QUIET.with(|q| q.set(false));
    match outcome {
        Ok(result) => result,
        Err(payload) => {
            let recorded = LAST_PANIC.with(|p| p.borrow_mut().take());
            Err(recorded.unwrap_or_else(|| match payload.downcast_ref::<&str>() {
                Some(s) => format!("panicked: {s}"),
                None => match payload.downcast_ref::<String>() {
                    Some(s) => format!("panicked: {s}"),
                    None => "panicked".into(),
                },
            }))
        }
    }
}

/// The generator's seed for one target: the run's seed mixed with the target's name.
fn rng(seed: u64, name: &str) -> TestRng {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in name.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    let mut bytes = [0u8; 32];
    for (i, chunk) in bytes.chunks_mut(8).enumerate() {
        chunk.copy_from_slice(&(h.rotate_left(i as u32 * 17) ^ seed.wrapping_mul(i as u64 + 1)).to_le_bytes());
    }
    TestRng::from_seed(RngAlgorithm::ChaCha, &bytes)
}

/// Runs `check` on inputs from `strategy` until the budget is spent; shrinks the first failures.
pub(crate) fn drive<S>(
    name: &'static str,
    budget: &Budget,
    seed: u64,
    strategy: S,
    mut check: impl FnMut(&S::Value) -> Result<(), String>,
) -> Report
where
    S: Strategy,
    S::Value: Debug,
{
    install_panic_hook();
    let mut runner = TestRunner::new_with_rng(Config::default(), rng(seed, name));
    let started = Instant::now();
    let mut report = Report { target: name, seed, cases: 0, failures: 0, rejected: 0, elapsed: Duration::ZERO, examples: Vec::new() };
    loop {
        let done = match budget {
            Budget::Cases(n) => report.cases >= *n,
            Budget::Time(d) => started.elapsed() >= *d,
        };
        if done || report.rejected > 10 * report.cases + 10_000 {
            break;
        }
        let mut tree = match strategy.new_tree(&mut runner) {
            Ok(tree) => tree,
            Err(_) => {
                report.rejected += 1;
                continue;
            }
        };
        report.cases += 1;
        let value = tree.current();
        let Err(message) = run_one(&mut check, &value) else { continue };
        report.failures += 1;
        if report.examples.len() >= SHRUNK_FAILURES {
            continue;
        }
        let (mut minimal, mut message, mut steps) = (value, message, 0u32);
        let shrink_started = Instant::now();
        if tree.simplify() {
            while steps < MAX_SHRINK_STEPS && shrink_started.elapsed() < MAX_SHRINK_TIME {
                steps += 1;
                let candidate = tree.current();
                let more = match run_one(&mut check, &candidate) {
                    Err(m) => {
                        (minimal, message) = (candidate, m);
                        tree.simplify()
                    }
                    Ok(()) => tree.complicate(),
                };
                if !more {
                    break;
                }
            }
        }
        report.examples.push(Failure { input: format!("{minimal:?}"), message, shrink_steps: steps });
    }
    report.elapsed = started.elapsed();
    report
}

/// `Err(text)` unless `cond`: the checks' assertion.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}
pub(crate) use ensure;

thread_local! {
    /// The targets that drive async handlers run them on this thread's runtime.
    static RUNTIME: tokio::runtime::Runtime =
        tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a current-thread runtime");
}

/// Runs a future to completion on this thread's single-threaded runtime.
pub(crate) fn block_on<F: std::future::Future>(future: F) -> F::Output {
    RUNTIME.with(|rt| rt.block_on(future))
}

/// The fuzz job: every target (or the named ones) for its share of `total`, figures printed.
/// Returns the number of failed cases.
pub fn run_job(total: Duration, names: &[String], seed: u64) -> Result<u64, String> {
    let chosen: Vec<&Target> = if names.is_empty() {
        TARGETS.iter().collect()
    } else {
        names
            .iter()
            .map(|n| target(n).ok_or_else(|| format!("no fuzz target {n:?}; targets: {}", target_names())))
            .collect::<Result<_, _>>()?
    };
    let share = total / chosen.len() as u32;
    println!("fuzz.seed: {seed}");
    println!("fuzz.budget: {} s ({} targets, {:.1} s each)", total.as_secs(), chosen.len(), share.as_secs_f64());
    let (mut cases, mut failures) = (0, 0);
    for t in chosen {
        println!("# {}: {}", t.name, t.about);
        let report = t.run(&Budget::Time(share), seed);
        report.print();
        cases += report.cases;
        failures += report.failures;
    }
    println!("fuzz.total.cases: {cases}");
    println!("fuzz.total.failures: {failures}");
    for left_out in LEFT_OUT {
        println!("fuzz.leaves_out: {left_out}");
    }
    Ok(failures)
}

pub fn target_names() -> String {
    TARGETS.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_and_panics_are_counted_and_shrunk() {
        let panics = drive("probe", &Budget::Cases(500), 7, 0u32..10_000, |n| {
            assert!(*n < 5000, "too big: {n}");
            Ok(())
        });
        let errors = drive("probe", &Budget::Cases(500), 7, 0u32..10_000, |n| {
            ensure!(*n < 3000, "too big: {n}");
            Ok(())
        });
        for (report, minimal) in [(panics, "5000"), (errors, "3000")] {
            assert_eq!(report.cases, 500);
            assert!(report.failures > 0, "{report:?}");
            let first = &report.examples[0];
            assert_eq!(first.input, minimal, "{first:?}");
            assert!(first.message.contains("too big"), "{first:?}");
        }
    }

    #[test]
    fn a_time_budget_stops() {
        let report = drive("probe", &Budget::Time(Duration::from_millis(50)), 7, 0u32..10, |_| Ok(()));
        assert!(report.cases > 0 && report.failures == 0 && report.elapsed < Duration::from_secs(5), "{report:?}");
    }
}
