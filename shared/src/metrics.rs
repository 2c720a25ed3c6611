//! Herald's metrics: one set of names, counted where things happen (the handlers), read two
//! ways. herald-local serves them at `GET /metrics` as Prometheus text ([`prometheus`]); a
//! Lambda prints what one invocation counted as one CloudWatch Embedded Metric Format line
//! ([`emf`]), which CloudWatch turns into metrics of the namespace `HERALD_METRICS_NAMESPACE`
//! without an API call.
//!
//! The registry is per process and lock-free for counters (one atomic each); histograms have
//! fixed buckets, and in a Lambda also keep up to [`EMF_SAMPLES`] samples per invocation (a
//! uniform reservoir) for CloudWatch's percentiles.

use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

/// What is counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Counter {
    NotifyConnectionsOpened,
    ChatConnectionsOpened,
    ConnectionsClosed,
    SubscriptionsAdded,
    SubscriptionsRemoved,
    PushesAccepted,
    PushesDispatched,
    Deliveries,
    PostRetries,
    DeliveriesFailed,
    Gone,
    Acks,
    Nacks,
    Redeliveries,
    AckTimeouts,
    DeadLetters,
}

struct CounterDef {
    /// Prometheus family (`_total` is added) and its one label, if any.
    family: &'static str,
    label: Option<(&'static str, &'static str)>,
    /// The EMF metric name.
    emf: &'static str,
    help: &'static str,
}

const COUNTERS: [CounterDef; 16] = [
    CounterDef {
        family: "herald_connections_opened",
        label: Some(("api", "notify")),
        emf: "NotifyConnectionsOpened",
        help: "Connections accepted by $connect, by API.",
    },
    CounterDef { family: "herald_connections_opened", label: Some(("api", "chat")), emf: "ChatConnectionsOpened", help: "" },
    CounterDef {
        family: "herald_connections_closed",
        label: None,
        emf: "ConnectionsClosed",
        help: "Connections forgotten: $disconnect, or found gone (410) when posting.",
    },
    CounterDef {
        family: "herald_subscriptions_added",
        label: None,
        emf: "SubscriptionsAdded",
        help: "New subscriptions (a repeated subscribe is not counted).",
    },
    CounterDef {
        family: "herald_subscriptions_removed",
        label: None,
        emf: "SubscriptionsRemoved",
        help: "Subscriptions removed by unsubscribe or with their connection.",
    },
    CounterDef { family: "herald_pushes_accepted", label: None, emf: "PushesAccepted", help: "Pushes accepted by POST /notify (202)." },
    CounterDef {
        family: "herald_pushes_dispatched",
        label: None,
        emf: "PushesDispatched",
        help: "Pushes fanned out by dispatch (from POST /notify, SQS or Kafka), once each.",
    },
    CounterDef {
        family: "herald_deliveries",
        label: None,
        emf: "Deliveries",
        help: "Push frames posted to a connection (first sends; redeliveries are counted apart).",
    },
    CounterDef { family: "herald_post_retries", label: None, emf: "PostRetries", help: "Posts tried again after a 429, 5xx or timeout." },
    CounterDef {
        family: "herald_deliveries_failed",
        label: None,
        emf: "DeliveriesFailed",
        help: "Targets left to a later retry of their batch after every try failed.",
    },
    CounterDef { family: "herald_gone", label: None, emf: "Gone", help: "Posts answered 410 Gone: the connection was deleted." },
    CounterDef { family: "herald_acks", label: Some(("status", "ack")), emf: "Acks", help: "Acks received, by status." },
    CounterDef { family: "herald_acks", label: Some(("status", "nack")), emf: "Nacks", help: "" },
    CounterDef {
        family: "herald_redeliveries",
        label: None,
        emf: "Redeliveries",
        help: "Unacked pushes sent again (after the ack timeout or a nack).",
    },
    CounterDef {
        family: "herald_ack_timeouts",
        label: None,
        emf: "AckTimeouts",
        help: "Connections closed for a push unacked after the last attempt.",
    },
    CounterDef {
        family: "herald_dead_letters",
        label: None,
        emf: "DeadLetters",
        help: "Queue messages or Kafka records set aside on the dead-letter queue.",
    },
];

/// What is timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Histogram {
    /// One post to the management API (or herald-local's gateway), however it ended.
    PostSeconds,
    /// From the push's `created_at` (accepted) to its frame posted to a connection.
    DeliveryLatencySeconds,
}

struct HistogramDef {
    family: &'static str,
    emf: &'static str,
    help: &'static str,
}

const HISTOGRAMS: [HistogramDef; 2] = [
    HistogramDef { family: "herald_post_seconds", emf: "PostMilliseconds", help: "Time of one post to a connection." },
    HistogramDef {
        family: "herald_delivery_latency_seconds",
        emf: "DeliveryLatencyMilliseconds",
        help: "From a push's acceptance to its frame posted to a connection.",
    },
];

/// Bucket upper bounds, in seconds (then `+Inf`).
const BUCKETS: [f64; 14] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];

/// Samples per histogram kept for one EMF line (CloudWatch takes at most 100 values a metric).
pub const EMF_SAMPLES: usize = 100;

struct HistogramCell {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
    count: AtomicU64,
    /// EMF only: a reservoir of the invocation's samples (ms) and how many were seen.
    reservoir: Mutex<(Vec<f64>, u64)>,
}

impl HistogramCell {
    const fn new() -> Self {
        Self {
            buckets: [const { AtomicU64::new(0) }; BUCKETS.len() + 1],
            sum_micros: AtomicU64::new(0),
            count: AtomicU64::new(0),
            reservoir: Mutex::new((Vec::new(), 0)),
        }
    }
}

static COUNTER_VALUES: [AtomicU64; COUNTERS.len()] = [const { AtomicU64::new(0) }; COUNTERS.len()];
/// EMF: each counter's value at the last line printed.
static COUNTER_FLUSHED: [AtomicU64; COUNTERS.len()] = [const { AtomicU64::new(0) }; COUNTERS.len()];
static HISTOGRAM_CELLS: [HistogramCell; HISTOGRAMS.len()] = [const { HistogramCell::new() }; HISTOGRAMS.len()];
static EMF_ON: AtomicBool = AtomicBool::new(false);

/// Adds `n` to a counter.
pub fn add(counter: Counter, n: u64) {
    if n > 0 {
        COUNTER_VALUES[counter as usize].fetch_add(n, Relaxed);
    }
}

/// Adds one to a counter.
pub fn inc(counter: Counter) {
    add(counter, 1);
}

/// A counter's value in this process.
pub fn value(counter: Counter) -> u64 {
    COUNTER_VALUES[counter as usize].load(Relaxed)
}

/// Every EMF metric name the functions may print (the dashboard's test checks it shows them all).
pub fn emf_names() -> impl Iterator<Item = &'static str> {
    COUNTERS.iter().map(|c| c.emf).chain(HISTOGRAMS.iter().map(|h| h.emf))
}

/// Durations of one histogram counted here and added to the registry at once when dropped (a
/// batch's posts: a few atomic adds instead of a few per post). In a Lambda (EMF on), each is
/// recorded at once, for the reservoir.
pub struct Observations {
    histogram: Histogram,
    buckets: [u64; BUCKETS.len() + 1],
    sum_micros: u64,
    count: u64,
}

impl Observations {
    pub fn new(histogram: Histogram) -> Self {
        Self { histogram, buckets: [0; BUCKETS.len() + 1], sum_micros: 0, count: 0 }
    }

    /// Records `d` `n` times.
    pub fn observe_n(&mut self, d: Duration, n: u64) {
        if n == 0 {
            return;
        }
        if EMF_ON.load(Relaxed) {
            for _ in 0..n {
                observe(self.histogram, d);
            }
            return;
        }
        let secs = d.as_secs_f64();
        let bucket = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
        self.buckets[bucket] += n;
        self.sum_micros = self.sum_micros.saturating_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX).saturating_mul(n));
        self.count += n;
    }

    pub fn observe(&mut self, d: Duration) {
        self.observe_n(d, 1);
    }
}

impl Drop for Observations {
    fn drop(&mut self) {
        if self.count == 0 {
            return;
        }
        let cell = &HISTOGRAM_CELLS[self.histogram as usize];
        for (total, n) in cell.buckets.iter().zip(self.buckets) {
            if n > 0 {
                total.fetch_add(n, Relaxed);
            }
        }
        cell.sum_micros.fetch_add(self.sum_micros, Relaxed);
        cell.count.fetch_add(self.count, Relaxed);
    }
}

/// Records one duration.
pub fn observe(histogram: Histogram, d: Duration) {
    let cell = &HISTOGRAM_CELLS[histogram as usize];
    let secs = d.as_secs_f64();
    let bucket = BUCKETS.iter().position(|b| secs <= *b).unwrap_or(BUCKETS.len());
    cell.buckets[bucket].fetch_add(1, Relaxed);
    cell.sum_micros.fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Relaxed);
    let seen = cell.count.fetch_add(1, Relaxed);
    if EMF_ON.load(Relaxed) {
        let mut reservoir = cell.reservoir.lock().unwrap_or_else(|p| p.into_inner());
        let (samples, n) = &mut *reservoir;
        *n += 1;
        let ms = secs * 1000.0;
        if samples.len() < EMF_SAMPLES {
            samples.push(ms);
        } else {
            // Algorithm R: the k-th sample replaces a kept one with probability 100/k.
            let slot = (splitmix(seen) % *n) as usize;
            if slot < EMF_SAMPLES {
                samples[slot] = ms;
            }
        }
    }
}

/// A cheap, well-mixed number from a counter (the reservoir needs no cryptographic randomness).
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A histogram's count in this process.
pub fn count(histogram: Histogram) -> u64 {
    HISTOGRAM_CELLS[histogram as usize].count.load(Relaxed)
}

/// The registry as Prometheus text (version 0.0.4), each family with its `HELP` and `TYPE`.
pub fn prometheus() -> String {
    let mut out = String::new();
    let mut last = "";
    for (def, value) in COUNTERS.iter().zip(&COUNTER_VALUES) {
        if def.family != last {
            let _ = writeln!(out, "# HELP {}_total {}\n# TYPE {}_total counter", def.family, def.help, def.family);
            last = def.family;
        }
        let labels = def.label.map(|(k, v)| format!("{{{k}=\"{v}\"}}")).unwrap_or_default();
        let _ = writeln!(out, "{}_total{labels} {}", def.family, value.load(Relaxed));
    }
    for (def, cell) in HISTOGRAMS.iter().zip(&HISTOGRAM_CELLS) {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} histogram", def.family, def.help, def.family);
        let mut cumulative = 0;
        for (i, bucket) in cell.buckets.iter().enumerate() {
            cumulative += bucket.load(Relaxed);
            let le = BUCKETS.get(i).map_or_else(|| "+Inf".to_string(), f64::to_string);
            let _ = writeln!(out, "{}_bucket{{le=\"{le}\"}} {cumulative}", def.family);
        }
        let _ = writeln!(out, "{}_sum {}", def.family, cell.sum_micros.load(Relaxed) as f64 / 1e6);
        let _ = writeln!(out, "{}_count {}", def.family, cell.count.load(Relaxed));
    }
    out
}

/// A gauge line (herald-local adds its own, such as live connections, to [`prometheus`]'s text).
pub fn write_gauge(out: &mut String, family: &str, help: &str, values: &[(Option<(&str, &str)>, u64)]) {
    let _ = writeln!(out, "# HELP {family} {help}\n# TYPE {family} gauge");
    for (label, value) in values {
        let labels = label.map(|(k, v)| format!("{{{k}=\"{v}\"}}")).unwrap_or_default();
        let _ = writeln!(out, "{family}{labels} {value}");
    }
}

/// Turns on the EMF reservoirs; the Lambda mains call it through [`emf`].
pub fn enable_emf() {
    EMF_ON.store(true, Relaxed);
}

/// What was counted since the last call, as one EMF document (`None` when nothing was): the
/// counters' deltas and the histograms' kept samples, in `namespace`, with no dimensions.
pub fn take_emf(namespace: &str, timestamp_ms: i64) -> Option<String> {
    let mut fields = serde_json::Map::new();
    let mut definitions = Vec::new();
    for ((def, value), flushed) in COUNTERS.iter().zip(&COUNTER_VALUES).zip(&COUNTER_FLUSHED) {
        let now = value.load(Relaxed);
        let delta = now - flushed.swap(now, Relaxed);
        if delta > 0 {
            fields.insert(def.emf.into(), delta.into());
            definitions.push(serde_json::json!({"Name": def.emf, "Unit": "Count"}));
        }
    }
    for (def, cell) in HISTOGRAMS.iter().zip(&HISTOGRAM_CELLS) {
        let samples = std::mem::take(&mut *cell.reservoir.lock().unwrap_or_else(|p| p.into_inner())).0;
        if !samples.is_empty() {
            fields.insert(def.emf.into(), samples.into());
            definitions.push(serde_json::json!({"Name": def.emf, "Unit": "Milliseconds"}));
        }
    }
    if definitions.is_empty() {
        return None;
    }
    fields.insert(
        "_aws".into(),
        serde_json::json!({
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{"Namespace": namespace, "Dimensions": [[]], "Metrics": definitions}],
        }),
    );
    Some(serde_json::Value::Object(fields).to_string())
}

/// Runs one invocation, then prints what it counted as an EMF line on stdout (CloudWatch Logs,
/// where the Lambda's log lines go). The namespace is `HERALD_METRICS_NAMESPACE` (the template
/// sets `Herald/<stack>`), default `Herald`.
pub async fn emf<F: std::future::Future>(invocation: F) -> F::Output {
    enable_emf();
    let output = invocation.await;
    let namespace = std::env::var("HERALD_METRICS_NAMESPACE").unwrap_or_else(|_| "Herald".into());
    let timestamp_ms = (crate::domain::now().unix_timestamp_nanos() / 1_000_000) as i64;
    if let Some(line) = take_emf(&namespace, timestamp_ms) {
        println!("{line}");
    }
    output
}

#[cfg(test)]
mod tests {
    use super::*;

    // One test: the registry is per process, and the assertions are about deltas.
    #[test]
    fn counts_render_as_prometheus_and_as_emf_deltas() {
        let before = value(Counter::Deliveries);
        add(Counter::Deliveries, 3);
        inc(Counter::Nacks);
        enable_emf();
        observe(Histogram::PostSeconds, Duration::from_millis(7));
        assert_eq!(value(Counter::Deliveries), before + 3);

        let text = prometheus();
        assert!(text.contains("# TYPE herald_deliveries_total counter\n"), "{text}");
        assert!(text.contains(&format!("herald_deliveries_total {}\n", before + 3)), "{text}");
        assert!(text.contains("herald_acks_total{status=\"nack\"} 1\n"), "{text}");
        assert_eq!(text.matches("# TYPE herald_acks_total").count(), 1, "one header per family");
        assert!(text.contains("herald_post_seconds_bucket{le=\"0.005\"} 0\n"), "{text}");
        assert!(text.contains("herald_post_seconds_bucket{le=\"0.01\"} 1\n"), "{text}");
        assert!(text.contains("herald_post_seconds_bucket{le=\"+Inf\"} 1\n"), "{text}");
        assert!(text.contains("herald_post_seconds_count 1\n"), "{text}");

        let line = take_emf("Herald/test", 1_700_000_000_000).expect("something was counted");
        let doc: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(doc["Deliveries"], before + 3);
        assert_eq!(doc["Nacks"], 1);
        assert_eq!(doc["PostMilliseconds"], serde_json::json!([7.0]));
        let cw = &doc["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(cw["Namespace"], "Herald/test");
        assert!(cw["Metrics"].as_array().unwrap().iter().any(|m| m["Name"] == "Nacks" && m["Unit"] == "Count"));
        assert!(doc.get("Acks").is_none(), "a counter that did not move is left out");
        // Deltas: nothing new, no line.
        assert_eq!(take_emf("Herald/test", 0), None);
        // The reservoir stays bounded and uniform enough to keep CloudWatch's percentiles.
        for i in 0..10_000u64 {
            observe(Histogram::DeliveryLatencySeconds, Duration::from_micros(i * 100));
        }
        let doc: serde_json::Value = serde_json::from_str(&take_emf("H", 0).unwrap()).unwrap();
        let kept = doc["DeliveryLatencyMilliseconds"].as_array().unwrap();
        assert_eq!(kept.len(), EMF_SAMPLES);
        let late = kept.iter().filter(|v| v.as_f64().unwrap() > 500.0).count();
        assert!((20..=80).contains(&late), "about half the kept samples come from the later half: {late}");
    }
}
