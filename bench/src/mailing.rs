//! `mailing`: the platform's throughput and cost (CONTRACT §9). Three figures:
//!
//! - render: one email (subject, text and HTML) rendered from a template with a user's details,
//!   the µs a message costs, in this process;
//! - embedded: a mailing to `--users` profiles (email and push, `{"all":true}`) through herald-local's
//!   HTTP API and its platform worker, on the in-memory store: jobs/s rendered and sent, the time
//!   to the last history record, and the process's peak resident memory;
//! - dynamodb: the same mailing to `--dynamodb-users` on DynamoDB Local (SQS on moto), every
//!   DynamoDB and SQS request counted by an HTTP client under the SDK: requests per recipient, and
//!   the AWS cost per million notifications they make, next to SES's and SNS's own prices.
//!
//! Left out, and said so in the output: "sent" is handed to the channel (email to the embedded
//! outbox, or to SES on moto in the DynamoDB run; push to Herald's notifications queue, with no
//! WebSocket client connected), the store is in memory in the embedded run, everything is on loopback with no TLS, and the cost
//! model counts requests, not capacity units (an item over 1 KB costs more, a transaction twice).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient, SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::HttpRequest;
use aws_smithy_runtime_api::client::runtime_components::{RuntimeComponents, RuntimeComponentsBuilder};
use aws_smithy_types::config_bag::ConfigBag;
use herald::domain::{UserProfile, now, rfc3339};
use herald::platform::templates::{Sources, render};
use herald_local::Server;
use serde_json::{Value, json};

use crate::BenchBackend;
use crate::common::{self, Result, figure, ms};

const SUBJECT: &str = "{{ data.offer }} for you, {{ user.name }}";
const BODY: &str = "Hello {{ user.name }},\n{{ data.offer }} until {{ data.until }}.\n{% for f in data.films %}- {{ f }}\n{% endfor %}";
const HTML: &str = "<p>Hello {{ user.name }},</p><p>{{ data.offer }} until {{ data.until }}.</p><ul>{% for f in data.films %}<li>{{ f }}</li>{% endfor %}</ul>";

fn data() -> Value {
    json!({"offer": "Half price", "until": "Sunday", "films": ["Dune", "Alien", "Heat"]})
}

pub async fn run(users: usize, dynamodb_users: usize) -> Result<()> {
    println!("# mailing: left out: the embedded run keeps email in its outbox (the DynamoDB run sends it to SES on moto);");
    println!("# pushes go to Herald's own queue with no client connected; loopback, no TLS; the embedded store is in memory.");
    render_cost()?;
    if users > 0 {
        mailing(BenchBackend::Embedded, users).await?;
    }
    if dynamodb_users > 0 {
        mailing(BenchBackend::Dynamodb, dynamodb_users).await?;
    }
    Ok(())
}

/// µs per message: subject, body and HTML of one email, a different user each time.
fn render_cost() -> Result<()> {
    let sources = Sources { subject: Some(SUBJECT), body: BODY, html: Some(HTML) };
    let data = data();
    let n = 20_000;
    let mut samples = Vec::with_capacity(n);
    let t0 = Instant::now();
    for i in 0..n {
        let user = json!({"user_id": i.to_string(), "name": format!("User {i}"), "email": format!("u{i}@example.com")});
        let t = Instant::now();
        let rendered = render(&sources, &user, &data).map_err(|e| format!("render: {e}"))?;
        samples.push(t.elapsed());
        std::hint::black_box(rendered);
    }
    let total = t0.elapsed();
    let p = common::Percentiles::new(samples);
    figure("mailing render per message (subject + text + HTML), mean", format!("{:.1}", total.as_secs_f64() * 1e6 / n as f64), "µs");
    figure("mailing render per message p50", format!("{:.1}", p.at(0.5).as_secs_f64() * 1e6), "µs");
    figure("mailing render per message p99", format!("{:.1}", p.at(0.99).as_secs_f64() * 1e6), "µs");
    Ok(())
}

async fn mailing(backend: BenchBackend, users: usize) -> Result<()> {
    let label = match backend {
        BenchBackend::Embedded => "embedded",
        BenchBackend::Dynamodb => "dynamodb",
    };
    let counter = Counter::default();
    let server = match backend {
        BenchBackend::Embedded => common::start_server(backend).await?,
        BenchBackend::Dynamodb => {
            let counted = |sdk: aws_config::SdkConfig| {
                let inner = sdk.http_client().unwrap_or_else(herald_local::faults::default_http_client);
                sdk.to_builder().http_client(Counting { inner, counter: counter.clone() }).build()
            };
            let (dynamodb, moto) = (counted(common::dynamodb_sdk_config().await?), counted(common::moto_sdk_config().await?));
            common::start_server_with(backend, move |o| {
                o.sdk = Some(dynamodb);
                o.messaging_sdk = Some(moto);
            })
            .await?
        }
    };
    let name = format!("mailing[{label}] {users} users, email + push");
    let t0 = Instant::now();
    seed(&server, users).await?;
    figure(&format!("{name} profiles written (through the store)"), ms(t0.elapsed()), "ms");
    let admin = common::token(json!({"sub": "bench-admin", "role": "admin"}))?;
    let http = reqwest::Client::new();
    for channel in ["email", "push"] {
        let (subject, html) = if channel == "email" { (SUBJECT, Some(HTML)) } else { ("{{ data.offer }}", None) };
        let body = json!({"name": "offer", "channel": channel, "subject": subject, "body": BODY, "html": html});
        let r = http.post(server.url("/templates")).bearer_auth(&admin).json(&body).send().await?;
        if !r.status().is_success() {
            return Err(format!("POST /templates: {} {}", r.status(), r.text().await?).into());
        }
    }
    let rss_before = peak_rss_kib();
    counter.take();
    let started = Instant::now();
    let body = json!({"name": "bench", "template": "offer", "channels": ["email", "push"], "audience": {"all": true}, "data": data()});
    let created: Value = http.post(server.url("/mailings")).bearer_auth(&admin).json(&body).send().await?.json().await?;
    let id = created["id"].as_str().ok_or_else(|| format!("POST /mailings: {created}"))?.to_string();
    let done = loop {
        let m: Value = http.get(server.url(&format!("/mailings/{id}"))).bearer_auth(&admin).send().await?.json().await?;
        match m["status"].as_str() {
            Some("sent") | Some("failed") => break m,
            _ if started.elapsed() > Duration::from_secs(3600) => return Err(format!("not done after an hour: {m}").into()),
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    };
    let took = started.elapsed();
    let jobs = 2 * users;
    figure(&format!("{name} status"), done["status"].as_str().unwrap_or("?"), "");
    figure(&format!("{name} counts"), &done["counts"], "");
    figure(&format!("{name} time to the last history record"), ms(took), "ms");
    figure(&format!("{name} jobs rendered, sent and recorded per second"), format!("{:.0}", jobs as f64 / took.as_secs_f64()), "jobs/s");
    if let Some(outbox) = &server.app.handlers.senders.outbox {
        figure(&format!("{name} emails in the outbox"), outbox.items().len(), "emails");
    }
    if let (Some(before), Some(after)) = (rss_before, peak_rss_kib()) {
        figure(&format!("{name} peak resident memory of the process (VmHWM), before the mailing"), before / 1024, "MiB");
        figure(&format!("{name} peak resident memory of the process (VmHWM), after"), after / 1024, "MiB");
    }
    if backend == BenchBackend::Dynamodb {
        cost(&name, users, &counter.take());
    }
    server.stop().await;
    Ok(())
}

/// `users` profiles with an email address and a name, written through the store (the admin API
/// would write the same, one request each).
async fn seed(server: &Server, users: usize) -> Result<()> {
    let store = server.app.handlers.store.clone();
    let at = rfc3339(now());
    let (store, at) = (&store, &at);
    let profiles = (0..users).map(|i| async move {
        let mut p = UserProfile::new(&format!("user{i:06}"), at);
        p.email = Some(format!("user{i:06}@example.com"));
        p.name = Some(format!("User {i}"));
        store.put_user(&p, None).await
    });
    common::run_all(profiles, 64).await.map(drop)
}

/// This process's peak resident set (`VmHWM`), in KiB.
fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status.lines().find_map(|l| l.strip_prefix("VmHWM:")).and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// On-demand prices, us-east-1, as AWS lists them (December 2026): DynamoDB $0.125 per million
/// read request units and $0.625 per million write request units; SQS $0.40 per million requests;
/// SES $0.10 per 1,000 emails; SNS SMS to a US number about $0.00581 each plus carrier fees.
const DYNAMODB_READ_PER_MILLION: f64 = 0.125;
const DYNAMODB_WRITE_PER_MILLION: f64 = 0.625;
const SQS_PER_MILLION: f64 = 0.40;
const SES_PER_MILLION: f64 = 100.0;
const SNS_SMS_US_PER_MILLION: f64 = 5810.0;

fn cost(name: &str, users: usize, requests: &BTreeMap<String, u64>) {
    let (mut reads, mut writes, mut transact, mut sqs, mut ses, mut other) = (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    for (target, n) in requests {
        figure(&format!("{name} request {target}"), n, "calls");
        let op = target.rsplit('.').next().unwrap_or(target);
        match (target.starts_with("DynamoDB"), op) {
            (true, "GetItem" | "Query" | "BatchGetItem") => reads += n,
            (true, "PutItem" | "UpdateItem" | "DeleteItem" | "BatchWriteItem") => writes += n,
            (true, "TransactWriteItems" | "TransactGetItems") => transact += n,
            (false, _) if target.starts_with("AmazonSQS") => sqs += n,
            (false, _) if target.contains("/v2/email/outbound-emails") => ses += n,
            _ => other += n,
        }
    }
    // A notification is one job: one recipient on one channel.
    let notifications = (2 * users) as f64;
    let per = |n: u64| n as f64 / users as f64;
    figure(&format!("{name} DynamoDB reads per recipient"), format!("{:.2}", per(reads)), "requests");
    figure(&format!("{name} DynamoDB writes per recipient"), format!("{:.2}", per(writes)), "requests");
    figure(&format!("{name} DynamoDB transactions per recipient"), format!("{:.2}", per(transact)), "requests");
    figure(&format!("{name} SQS requests per recipient"), format!("{:.2}", per(sqs)), "requests");
    figure(&format!("{name} SES SendEmail per recipient"), format!("{:.2}", per(ses)), "requests");
    if other > 0 {
        figure(&format!("{name} other requests"), other, "calls");
    }
    // A transaction of k items costs 2 units per item; counted here as 2 writes of 2 items each
    // (the planner's create_job / record_job write a record and a count), a lower bound.
    let dynamodb =
        (reads as f64 * DYNAMODB_READ_PER_MILLION + (writes as f64 + 4.0 * transact as f64) * DYNAMODB_WRITE_PER_MILLION) / notifications;
    let queue = sqs as f64 * SQS_PER_MILLION / notifications;
    figure(&format!("{name} DynamoDB per million notifications (request units at 1 KB, on demand)"), format!("{dynamodb:.2}"), "USD");
    figure(&format!("{name} SQS per million notifications"), format!("{queue:.2}"), "USD");
    figure("mailing SES per million emails (AWS's price)", format!("{SES_PER_MILLION:.2}"), "USD");
    figure("mailing SNS per million SMS to US numbers (AWS's price, before carrier fees)", format!("{SNS_SMS_US_PER_MILLION:.2}"), "USD");
    println!("# cost: Lambda time is left out; DynamoDB priced per request at 1 KB items (larger items cost more units).");
}

/// Requests by `X-Amz-Target` (`DynamoDB_20120810.PutItem`, `AmazonSQS.SendMessage`), tries
/// included (a retry is a request AWS bills).
#[derive(Debug, Default, Clone)]
struct Counter(Arc<Mutex<BTreeMap<String, u64>>>);

impl Counter {
    fn take(&self) -> BTreeMap<String, u64> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn count(&self, request: &HttpRequest) {
        // SESv2 is a REST API: its requests are named by method and path.
        let target = match request.headers().get("x-amz-target") {
            Some(t) => t.to_string(),
            None => {
                let uri = request.uri();
                let path = uri.split_once("://").map_or(uri, |(_, rest)| rest.find('/').map_or("/", |i| &rest[i..]));
                format!("{} {}", request.method(), path.split('?').next().unwrap_or_default())
            }
        };
        *self.0.lock().unwrap_or_else(|e| e.into_inner()).entry(target).or_default() += 1;
    }
}

/// The SDK's HTTP client, counting what goes through it.
#[derive(Debug, Clone)]
struct Counting {
    inner: SharedHttpClient,
    counter: Counter,
}

impl HttpClient for Counting {
    fn http_connector(&self, settings: &HttpConnectorSettings, components: &RuntimeComponents) -> SharedHttpConnector {
        SharedHttpConnector::new(CountingConnector {
            inner: self.inner.http_connector(settings, components),
            counter: self.counter.clone(),
        })
    }

    fn validate_base_client_config(
        &self,
        runtime_components: &RuntimeComponentsBuilder,
        cfg: &ConfigBag,
    ) -> std::result::Result<(), aws_smithy_runtime_api::box_error::BoxError> {
        self.inner.validate_base_client_config(runtime_components, cfg)
    }
}

#[derive(Debug)]
struct CountingConnector {
    inner: SharedHttpConnector,
    counter: Counter,
}

impl HttpConnector for CountingConnector {
    fn call(&self, request: HttpRequest) -> HttpConnectorFuture {
        self.counter.count(&request);
        self.inner.call(request)
    }
}
