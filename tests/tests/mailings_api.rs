//! Mailings and time (CONTRACT §9, "Mailings", "Rules") end to end: real HTTP and WebSocket
//! clients against herald-local, on the embedded backend and on DynamoDB Local + moto's SQS,
//! through the same `platform-admin`, `platform-events` and `platform-worker` handlers the cloud
//! runs, with herald-local's own scheduler firing what is due.

use std::time::{Duration, Instant};

use herald::platform::schedule::PlatformMessage;
use herald_local::Server;
use herald_tests::local::{
    On, admin_token, assert_silent, http_call, next_json, notify_client, publisher, send_json, sent_email, spawn_app, user_token,
};
use herald_tests::on_both;
use serde_json::{Value, json};

async fn call(server: &Server, method: &str, path: &str, auth: Option<&str>, body: Option<Value>) -> (u16, Value) {
    http_call(server, method, path, auth, body.map(|b| b.to_string()).as_deref()).await
}

async fn admin_ok(server: &Server, method: &str, path: &str, body: Value) -> Value {
    let (status, reply) = call(server, method, path, Some(&admin_token()), Some(body)).await;
    assert!((200..300).contains(&status), "{method} {path}: {status} {reply}");
    reply
}

async fn mailing(server: &Server, id: &str) -> Value {
    let (status, reply) = call(server, "GET", &format!("/mailings/{id}"), Some(&admin_token()), None).await;
    assert_eq!(status, 200, "{reply}");
    reply
}

/// Polls the mailing until its status is `want` (within `within`).
async fn until_status(server: &Server, id: &str, want: &str, within: Duration) -> Value {
    let start = Instant::now();
    loop {
        let m = mailing(server, id).await;
        if m["status"] == want {
            return m;
        }
        assert!(start.elapsed() < within, "mailing {id} is still {} after {within:?}: {m}", m["status"]);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// When mail came, as far as looks can tell: after the start of the last look that did not find
/// it, and by the end of the look that did (a look at moto's data takes a while).
#[derive(Debug, Clone, Copy)]
struct Came {
    after: Instant,
    by: Instant,
}

impl Came {
    /// Not before `due` (the look that found it ended after it) and within a second of it (the
    /// last look that did not find it started within the second).
    fn assert_on_time(&self, due: Instant) {
        assert!(self.by >= due, "sent {:?} early", due - self.by);
        let late = self.after.saturating_duration_since(due);
        assert!(late <= Duration::from_secs(1), "sent more than {late:?} after its send_at");
    }
}

/// Polls the outbox until it holds `n` items (within `within`); returns them and when they came.
async fn until_outbox(server: &Server, n: usize, within: Duration) -> (Vec<Value>, Came) {
    let start = Instant::now();
    let mut after = start;
    loop {
        let look = Instant::now();
        let items = sent_email(server).await;
        if items.len() >= n {
            return (items, Came { after, by: Instant::now() });
        }
        after = look;
        assert!(start.elapsed() < within, "the outbox holds {} of {n} after {within:?}: {items:?}", items.len());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn history(server: &Server, query: &str) -> Vec<Value> {
    let (status, reply) = call(server, "GET", &format!("/notifications?{query}"), Some(&admin_token()), None).await;
    assert_eq!(status, 200, "{query}: {reply}");
    reply["items"].as_array().expect("items").clone()
}

/// An email template `promo` and a push one `promo`; users with addresses.
async fn promo(server: &Server, users: &[&str]) {
    admin_ok(
        server,
        "POST",
        "/templates",
        json!({"name":"promo","channel":"email","subject":"Hi {{ user.name }}","body":"{{ data.offer }} for {{ user.name }}"}),
    )
    .await;
    admin_ok(server, "POST", "/templates", json!({"name":"promo","channel":"push","subject":"Offer","body":"{{ data.offer }}"})).await;
    for u in users {
        admin_ok(server, "PUT", &format!("/users/{u}"), json!({"email": format!("{u}@example.com"), "name": u.to_uppercase()})).await;
    }
}

async fn create(server: &Server, body: Value) -> Value {
    let (status, reply) = call(server, "POST", "/mailings", Some(&admin_token()), Some(body)).await;
    assert_eq!(status, 201, "{reply}");
    assert!(reply["id"].is_string() && reply["next_runs"].is_array(), "{reply}");
    reply
}

async fn a_mailing_to_two_users_is_sent(on: On) {
    let server = spawn_app(on).await;
    promo(&server, &["ann", "bob"]).await;
    let m = create(
        &server,
        json!({"name":"spring","template":"promo","channels":["email"],"audience":{"users":["ann","bob"]},"data":{"offer":"-20%"}}),
    )
    .await;
    let id = m["id"].as_str().unwrap();
    let done = until_status(&server, id, "sent", Duration::from_secs(10)).await;
    assert_eq!(done["counts"], json!({"email": {"sent": 2}}), "{done}");
    assert_eq!(done["jobs"], json!({"planned": 2, "recorded": 2}), "{done}");
    let mut mail: Vec<(String, String, String)> = sent_email(&server)
        .await
        .iter()
        .map(|i| (i["to"].as_str().unwrap().into(), i["subject"].as_str().unwrap().into(), i["body"].as_str().unwrap().into()))
        .collect();
    mail.sort();
    assert_eq!(
        mail,
        [
            ("ann@example.com".to_string(), "Hi ANN".to_string(), "-20% for ANN".to_string()),
            ("bob@example.com".to_string(), "Hi BOB".to_string(), "-20% for BOB".to_string())
        ]
    );
    let records = history(&server, &format!("mailing_id={id}")).await;
    assert_eq!(records.len(), 2, "{records:?}");
    for r in &records {
        assert_eq!((r["status"].as_str(), r["mailing_id"].as_str(), r["channel"].as_str()), (Some("sent"), Some(id), Some("email")), "{r}");
    }
    let (status, list) = call(&server, "GET", "/mailings", Some(&admin_token()), None).await;
    assert_eq!((status, list["items"][0]["id"].as_str()), (200, Some(id)), "{list}");

    // A repeated fire, and a repeated page of jobs, send nothing twice.
    let run = done["jobs"].clone();
    for message in [
        PlatformMessage::Fire { mailing_id: id.to_string(), at: None },
        PlatformMessage::Expand { mailing_id: id.to_string(), run: "0".repeat(24), cursor: None },
    ] {
        server.app.handlers.platform.send(&message.to_json()).await.unwrap();
    }
    let records_before = history(&server, &format!("mailing_id={id}")).await;
    let filter = herald::domain::NotificationFilter { mailing_id: Some(id.into()), ..Default::default() };
    let page = server.app.handlers.store.list_notifications(&filter, None, 10).await.unwrap();
    let users: Vec<String> = page.items.iter().map(|n| n.user_id.clone()).collect();
    let stored = server.app.handlers.store.get_mailing(id).await.unwrap().unwrap();
    let jobs = PlatformMessage::Jobs { mailing_id: id.to_string(), run: stored.last_run.unwrap(), users };
    server.app.handlers.platform.send(&jobs.to_json()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(800)).await;
    assert_eq!(sent_email(&server).await.len(), 2, "nothing sent twice");
    assert_eq!(history(&server, &format!("mailing_id={id}")).await, records_before);
    let after = mailing(&server, id).await;
    assert_eq!(
        (after["status"].as_str(), &after["jobs"], &after["counts"]),
        (Some("sent"), &run, &json!({"email": {"sent": 2}})),
        "{after}"
    );

    // Sent: nothing is left to cancel.
    let (status, reply) = call(&server, "POST", &format!("/mailings/{id}/cancel"), Some(&admin_token()), None).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (409, Some("nothing_to_cancel")), "{reply}");
}

/// Connects `user` and subscribes it to `event`.
async fn subscriber(server: &Server, user: &str, event: &str) -> herald_tests::local::Ws {
    let mut ws = notify_client(server, user, "").await;
    send_json(&mut ws, json!({"type":"subscribe","event_name":event})).await;
    let reply = next_json(&mut ws).await;
    assert_eq!(reply["type"], "subscribed", "{reply}");
    ws
}

async fn a_mailing_reaches_an_events_subscribers(on: On) {
    let server = spawn_app(on).await;
    promo(&server, &[]).await;
    let mut a = subscriber(&server, "ann", "news").await;
    let mut b = subscriber(&server, "bob", "news").await;
    let mut other = subscriber(&server, "eve", "sports").await;
    let m = create(
        &server,
        json!({"name":"n","template":"promo","channels":["push"],"audience":{"event_name":"news"},"data":{"offer":"free"}}),
    )
    .await;
    for ws in [&mut a, &mut b] {
        let push = next_json(ws).await;
        assert_eq!((push["title"].as_str(), push["body"].as_str()), (Some("Offer"), Some("free")), "{push}");
    }
    assert_silent(&mut other, Duration::from_millis(300)).await;
    let done = until_status(&server, m["id"].as_str().unwrap(), "sent", Duration::from_secs(10)).await;
    assert_eq!(done["counts"], json!({"push": {"sent": 2}}), "{done}");

    // An event to the same subscribers (POST /events with event_name), paged by the worker too.
    let reply = {
        let body = json!({"event":"breaking","event_name":"news","title":"Breaking","body":"Now"});
        let (status, reply) = call(&server, "POST", "/events", Some(&publisher()), Some(body)).await;
        assert_eq!(status, 202, "{reply}");
        reply
    };
    for ws in [&mut a, &mut b] {
        let push = next_json(ws).await;
        assert_eq!((push["title"].as_str(), push["body"].as_str()), (Some("Breaking"), Some("Now")), "{push}");
    }
    assert_silent(&mut other, Duration::from_millis(300)).await;
    let records = history(&server, &format!("event_id={}", reply["id"].as_str().unwrap())).await;
    assert_eq!(records.iter().filter(|r| r["status"] == "sent").count(), 2, "{records:?}");
}

async fn a_mailing_to_all_users(on: On) {
    let server = spawn_app(on).await;
    promo(&server, &["u1", "u2", "u3"]).await;
    let m =
        create(&server, json!({"name":"all","template":"promo","channels":["email"],"audience":{"all":true},"data":{"offer":"x"}})).await;
    let done = until_status(&server, m["id"].as_str().unwrap(), "sent", Duration::from_secs(10)).await;
    assert_eq!(done["counts"], json!({"email": {"sent": 3}}), "{done}");
    let mut to: Vec<String> = sent_email(&server).await.iter().map(|i| i["to"].as_str().unwrap().to_string()).collect();
    to.sort();
    assert_eq!(to, ["u1@example.com", "u2@example.com", "u3@example.com"]);
}

fn in_secs(secs: i64) -> (String, Instant) {
    let at = time::OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    let at = at.replace_nanosecond(0).unwrap();
    let wait = (at - time::OffsetDateTime::now_utc()).as_seconds_f64().max(0.0);
    (at.format(&time::format_description::well_known::Rfc3339).unwrap(), Instant::now() + Duration::from_secs_f64(wait))
}

async fn send_at_is_honoured(on: On) {
    let server = spawn_app(on).await;
    promo(&server, &["ann"]).await;
    // An event two seconds ahead: not before, and within a second after.
    let (at, due) = in_secs(2);
    let body = json!({"event":"reminder","user_id":"ann","title":"Soon","body":"It is time","channels":["email"],"send_at":at});
    let (status, reply) = call(&server, "POST", "/events", Some(&publisher()), Some(body)).await;
    assert_eq!(status, 202, "{reply}");
    tokio::time::sleep(due.saturating_duration_since(Instant::now()).saturating_sub(Duration::from_millis(300))).await;
    // What a look finds counts as early only if the look ended before the send_at: a test woken
    // late on a loaded machine may look after it.
    let (mail, history_now) = (sent_email(&server).await, history(&server, &format!("event_id={}", reply["id"].as_str().unwrap())).await);
    if Instant::now() < due {
        assert!(mail.is_empty() && history_now.is_empty(), "sent before its send_at: {mail:?} {history_now:?}");
    }
    let (mail, came) = until_outbox(&server, 1, Duration::from_secs(5)).await;
    came.assert_on_time(due);
    assert_eq!((mail[0]["subject"].as_str(), mail[0]["body"].as_str()), (Some("Soon"), Some("It is time")));

    // A mailing too: scheduled until then, with its send_at as its next run.
    let (at, due) = in_secs(2);
    let m = create(
        &server,
        json!({"name":"later","template":"promo","channels":["email"],"audience":{"users":["ann"]},"data":{"offer":"y"},"send_at":at}),
    )
    .await;
    assert_eq!((m["status"].as_str(), &m["next_runs"]), (Some("scheduled"), &json!([at])), "{m}");
    tokio::time::sleep(due.saturating_duration_since(Instant::now()).saturating_sub(Duration::from_millis(300))).await;
    let status = mailing(&server, m["id"].as_str().unwrap()).await["status"].clone();
    if Instant::now() < due {
        assert_eq!(status, "scheduled", "sent before its send_at");
    }
    let (_, came) = until_outbox(&server, 2, Duration::from_secs(5)).await;
    came.assert_on_time(due);
    until_status(&server, m["id"].as_str().unwrap(), "sent", Duration::from_secs(5)).await;

    // A send_at in the past is now.
    let body = json!({"event":"late","user_id":"ann","title":"Late","channels":["email"],"send_at":"2020-01-01T00:00:00Z"});
    assert_eq!(call(&server, "POST", "/events", Some(&publisher()), Some(body)).await.0, 202);
    until_outbox(&server, 3, Duration::from_secs(2)).await;
}

async fn cancelled_before_it_is_sent_nothing_goes(on: On) {
    let server = spawn_app(on).await;
    promo(&server, &["ann"]).await;
    let (at, due) = in_secs(2);
    let m = create(
        &server,
        json!({"name":"c","template":"promo","channels":["email"],"audience":{"users":["ann"]},"data":{"offer":"z"},"send_at":at}),
    )
    .await;
    let id = m["id"].as_str().unwrap();
    for (auth, status) in [(None, 401), (Some(user_token("ann")), 403)] {
        assert_eq!(call(&server, "POST", &format!("/mailings/{id}/cancel"), auth.as_deref(), None).await.0, status);
    }
    let (status, reply) = call(&server, "POST", &format!("/mailings/{id}/cancel"), Some(&admin_token()), None).await;
    assert_eq!((status, reply["status"].as_str(), &reply["next_runs"]), (200, Some("cancelled"), &json!([])), "{reply}");
    tokio::time::sleep(due.saturating_duration_since(Instant::now()) + Duration::from_millis(800)).await;
    assert!(sent_email(&server).await.is_empty(), "a cancelled mailing sent");
    assert!(history(&server, &format!("mailing_id={id}")).await.is_empty());
    assert_eq!(mailing(&server, id).await["status"], "cancelled");
    let (status, reply) = call(&server, "POST", &format!("/mailings/{id}/cancel"), Some(&admin_token()), None).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (409, Some("nothing_to_cancel")), "{reply}");

    // A scheduled event is cancelled by its transaction id.
    let (at, due) = in_secs(2);
    let body = json!({"event":"e","user_id":"ann","title":"T","channels":["email"],"send_at":at,"transaction_id":"tx-later"});
    assert_eq!(call(&server, "POST", "/events", Some(&publisher()), Some(body)).await.0, 202);
    let (status, reply) = call(&server, "DELETE", "/events/tx-later", Some(&publisher()), None).await;
    assert_eq!((status, reply["status"].as_str()), (200, Some("cancelled")), "{reply}");
    tokio::time::sleep(due.saturating_duration_since(Instant::now()) + Duration::from_millis(800)).await;
    assert!(sent_email(&server).await.is_empty(), "a cancelled event sent");
    assert_eq!(call(&server, "DELETE", "/events/tx-later", Some(&publisher()), None).await.0, 409);
}

/// `(month, day, hour:minute)` of an RFC 3339 UTC time.
fn parts(t: &Value) -> (u32, u32, String) {
    let s = t.as_str().unwrap();
    (s[5..7].parse().unwrap(), s[8..10].parse().unwrap(), s[11..16].to_string())
}

async fn next_runs_follow_the_dst_rule(on: On) {
    let server = spawn_app(on).await;
    promo(&server, &[]).await;
    let base = json!({"name":"r","template":"promo","channels":["push"],"audience":{"all":true}});
    let with = |cron: &str| {
        let mut b = base.clone();
        b["recurrence"] = json!({"cron": cron, "timezone": "Europe/Berlin"});
        b
    };
    // Sundays of March at 02:30 Berlin time: 01:30 UTC (CET); on the last Sunday of March the
    // clocks skip 02:00-03:00, so that day has no run (it is never moved to 03:30).
    let spring = create(&server, with("30 2 * 3 SUN")).await;
    let runs = spring["next_runs"].as_array().unwrap();
    assert_eq!(runs.len(), 5, "{spring}");
    for r in runs {
        let (month, day, hm) = parts(r);
        assert_eq!((month, hm.as_str()), (3, "01:30"), "{r}");
        assert!(day <= 24, "{r} is the last Sunday of March, when 02:30 does not exist in Berlin");
    }
    // Sundays of October at 02:30: 00:30 UTC (CEST); on the last Sunday 02:30 happens twice and
    // the run is the first, once.
    let autumn = create(&server, with("30 2 * 10 SUN")).await;
    let runs = autumn["next_runs"].as_array().unwrap();
    let mut dates: Vec<&str> = Vec::new();
    for r in runs {
        let (month, _, hm) = parts(r);
        assert_eq!((month, hm.as_str()), (10, "00:30"), "{r}");
        let date = &r.as_str().unwrap()[..10];
        assert!(!dates.contains(&date), "{date} runs twice: {runs:?}");
        dates.push(date);
    }
    assert!(runs.iter().any(|r| parts(r).1 >= 25), "the last Sunday of October is among them: {runs:?}");
    assert_eq!(autumn["status"], "scheduled");
    // Bad crons, zones and audiences are refused, naming the field.
    for (patch, field) in [
        (json!({"recurrence":{"cron":"0 25 * * *","timezone":"Europe/Berlin"}}), "recurrence.cron"),
        (json!({"recurrence":{"cron":"0 9 * * *","timezone":"Europe/Atlantis"}}), "recurrence.timezone"),
        (json!({"audience":{"group":"x"}}), "audience.group"),
        (json!({"audience":{"users":"ann"}}), "audience.users"),
    ] {
        let mut b = base.clone();
        for (k, v) in patch.as_object().unwrap() {
            b[k] = v.clone();
        }
        let (status, reply) = call(&server, "POST", "/mailings", Some(&admin_token()), Some(b)).await;
        assert_eq!((status, reply["error"]["code"].as_str()), (400, Some("bad_request")), "{patch}: {reply}");
        assert!(reply["error"]["message"].as_str().unwrap().contains(&format!("\"{field}")), "{patch}: {reply}");
    }
    assert_eq!(call(&server, "POST", "/mailings", Some(&user_token("ann")), Some(with("0 9 * * *"))).await.0, 403);
}

async fn held_by_quiet_hours_then_released(on: On) {
    let server = spawn_app(on).await;
    promo(&server, &[]).await;
    // Quiet hours that end at the next minute (UTC: the user has no zone).
    let now = time::OffsetDateTime::now_utc();
    let (h, m) = (now.hour() as u32, now.minute() as u32);
    let start = format!("{:02}:{:02}", (h + 23) % 24, m);
    let end_minutes = (h * 60 + m + 1) % (24 * 60);
    let end = format!("{:02}:{:02}", end_minutes / 60, end_minutes % 60);
    admin_ok(&server, "PUT", "/users/sleepy", json!({"email":"sleepy@example.com","quiet_hours":{"start":start,"end":end}})).await;
    let made =
        create(&server, json!({"name":"q","template":"promo","channels":["email"],"audience":{"users":["sleepy"]},"data":{"offer":"o"}}))
            .await;
    let id = made["id"].as_str().unwrap();
    // Held counts as recorded: the mailing is sent, its email held.
    let held = until_status(&server, id, "sent", Duration::from_secs(10)).await;
    assert_eq!(held["counts"], json!({"email": {"held": 1}}), "{held}");
    let records = history(&server, &format!("mailing_id={id}")).await;
    assert_eq!(records[0]["status"], "held", "{records:?}");
    assert!(sent_email(&server).await.is_empty());
    // Released when the quiet hours end (within a minute), within a second or so of it.
    let (mail, _) = until_outbox(&server, 1, Duration::from_secs(75)).await;
    assert_eq!(mail[0]["to"], "sleepy@example.com");
    let records = history(&server, &format!("mailing_id={id}")).await;
    assert_eq!((records[0]["status"].as_str(), records[0]["held_until"].is_null()), (Some("sent"), true), "{records:?}");
    let after = mailing(&server, id).await;
    assert_eq!(after["counts"], json!({"email": {"sent": 1}}), "{after}");
}

/// A recurrence fires from herald-local's own scheduler at its next run (the next whole minute),
/// each run sends and leaves the mailing `scheduled` for the next; cancelling stops it.
async fn a_recurrence_fires_on_its_schedule(on: On) {
    let server = spawn_app(on).await;
    promo(&server, &["ann"]).await;
    let body = json!({"name":"every minute","template":"promo","channels":["email"],"audience":{"users":["ann"]},
                      "data":{"offer":"tick"},"recurrence":{"cron":"* * * * *","timezone":"Asia/Kathmandu"}});
    let m = create(&server, body).await;
    let id = m["id"].as_str().unwrap();
    let first_run = m["next_runs"][0].as_str().unwrap().to_string();
    assert!(first_run.ends_with(":00Z"), "{m}");
    let (mail, _) = until_outbox(&server, 1, Duration::from_secs(70)).await;
    assert_eq!(mail[0]["body"], "tick for ANN");
    let after = until_status(&server, id, "scheduled", Duration::from_secs(5)).await;
    assert_eq!(after["counts"], json!({"email": {"sent": 1}}), "{after}");
    assert_ne!(after["next_runs"][0].as_str(), Some(first_run.as_str()), "the next runs moved on: {after}");
    let records = history(&server, &format!("mailing_id={id}")).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let (status, reply) = call(&server, "POST", &format!("/mailings/{id}/cancel"), Some(&admin_token()), None).await;
    assert_eq!((status, reply["status"].as_str()), (200, Some("cancelled")), "{reply}");
}

/// The resources of one herald-local on `--backend aws` that outlive it: its tables, queues,
/// schedule group and sender, for the servers that follow it.
#[derive(Clone)]
struct Kept {
    prefix: String,
    queue: String,
    email_from: String,
}

impl Kept {
    fn new() -> Self {
        let queue = format!("q{}", uuid::Uuid::new_v4().simple());
        Self { prefix: herald_tests::dynamo::unique_prefix(), email_from: format!("herald-{queue}@example.com"), queue }
    }

    /// A server on these resources (the first one creates them).
    async fn start(&self) -> Server {
        let kept = self.clone();
        herald_tests::local::spawn_with(On::DynamoDbLocal, move |o| {
            o.tables = herald::store::tables::TableNames::with_prefix(&kept.prefix);
            o.queue_name = kept.queue.clone();
            o.fanout_queue_name = format!("{}-fanout", kept.queue);
            o.platform_queue_name = format!("{}-platform", kept.queue);
            o.schedule_group = format!("{}-schedules", kept.queue);
            // Mail from either server counts: a fire twice would show.
            o.email_from = kept.email_from.clone();
        })
        .await
    }
}

/// Waits until every schedule kept for `server` has gone (fired and deleted, or cancelled).
async fn until_no_kept_schedule(server: &Server, within: Duration) {
    let start = Instant::now();
    loop {
        let kept = herald_tests::local::kept_schedules(server).await;
        if kept.is_empty() {
            return;
        }
        assert!(start.elapsed() < within, "still kept after {within:?}: {kept:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// On `--backend aws` herald-local keeps its schedules in moto's EventBridge Scheduler (the one-time
/// fire of a scheduled mailing an `at()` schedule) and fires them itself: a restart arms again
/// what the group keeps, here a send_at that comes after the restart; fired, it is deleted.
#[tokio::test]
async fn a_restart_schedules_again_what_waits() {
    let kept = Kept::new();
    let first = kept.start().await;
    promo(&first, &["ann"]).await;
    let (at, due) = in_secs(3);
    let m = create(
        &first,
        json!({"name":"later","template":"promo","channels":["email"],"audience":{"users":["ann"]},"data":{"offer":"r"},"send_at":at}),
    )
    .await;
    let id = m["id"].as_str().unwrap();
    assert_eq!(herald_tests::local::kept_schedules(&first).await, [format!("fire-{id}")]);
    first.stop().await;
    let second = kept.start().await;
    let (mail, came) = until_outbox(&second, 1, Duration::from_secs(8)).await;
    assert!(came.by >= due, "sent before its time");
    assert_eq!(mail[0]["to"], "ann@example.com");
    until_status(&second, id, "sent", Duration::from_secs(5)).await;
    until_no_kept_schedule(&second, Duration::from_secs(2)).await;
}

/// Quiet hours (UTC) that end at the next whole minute at least 20 s away (the first server
/// must be stopped by then): `(start, end, due)`.
fn quiet_until_a_minute_ahead() -> (String, String, Instant) {
    let now = time::OffsetDateTime::now_utc();
    let ahead = if now.second() >= 40 { 2 } else { 1 };
    let end = (now + time::Duration::minutes(ahead)).replace_second(0).unwrap().replace_nanosecond(0).unwrap();
    let due = Instant::now() + Duration::from_secs_f64((end - now).as_seconds_f64());
    let hm = |t: time::OffsetDateTime| format!("{:02}:{:02}", t.hour(), t.minute());
    (hm(now - time::Duration::hours(1)), hm(end), due)
}

/// What no index lists is kept too: a kept event's `send_at` whose time passes while no
/// herald-local runs fires at the next start, and a held notification's release fires at the
/// end of the quiet hours from the server started after it was held; each sends once (a third
/// start finds nothing left to fire).
#[tokio::test]
async fn a_kept_event_and_a_held_release_fire_once_after_a_restart() {
    let kept = Kept::new();
    let first = kept.start().await;
    promo(&first, &["ann"]).await;
    let (start, end, release_due) = quiet_until_a_minute_ahead();
    admin_ok(&first, "PUT", "/users/sleepy", json!({"email":"sleepy@example.com","quiet_hours":{"start":start,"end":end}})).await;
    let (at, event_due) = in_secs(3);
    let body = json!({"event":"reminder","user_id":"ann","title":"Soon","body":"It is time","channels":["email"],"send_at":at});
    let (status, event) = call(&first, "POST", "/events", Some(&publisher()), Some(body)).await;
    assert_eq!(status, 202, "{event}");
    let event_id = event["id"].as_str().unwrap().to_string();
    let made =
        create(&first, json!({"name":"q","template":"promo","channels":["email"],"audience":{"users":["sleepy"]},"data":{"offer":"o"}}))
            .await;
    let mailing_id = made["id"].as_str().unwrap().to_string();
    let held = until_status(&first, &mailing_id, "sent", Duration::from_secs(10)).await;
    assert_eq!(held["counts"], json!({"email": {"held": 1}}), "{held}");
    let record = history(&first, &format!("mailing_id={mailing_id}")).await[0].clone();
    assert_eq!(record["status"], "held", "{record}");
    let mut want = vec![format!("fire-{event_id}"), format!("release-{}", record["id"].as_str().unwrap())];
    want.sort();
    assert_eq!(herald_tests::local::kept_schedules(&first).await, want, "both are kept in the schedule group");
    first.stop().await;
    // Nothing runs when the event is due.
    tokio::time::sleep(event_due.saturating_duration_since(Instant::now()) + Duration::from_millis(500)).await;
    assert!(sent_email_of(&kept).await.is_empty(), "sent while no herald-local ran");

    let second = kept.start().await;
    let (mail, _) = until_outbox(&second, 1, Duration::from_secs(5)).await;
    assert_eq!((mail[0]["to"].as_str(), mail[0]["subject"].as_str()), (Some("ann@example.com"), Some("Soon")), "{mail:?}");
    let (mail, came) = until_outbox(&second, 2, release_due.saturating_duration_since(Instant::now()) + Duration::from_secs(10)).await;
    assert!(came.by >= release_due, "released before the quiet hours ended");
    assert_eq!(mail[1]["to"], "sleepy@example.com", "{mail:?}");
    until_no_kept_schedule(&second, Duration::from_secs(2)).await;
    let records = history(&second, &format!("mailing_id={mailing_id}")).await;
    assert_eq!((records.len(), records[0]["status"].as_str()), (1, Some("sent")), "{records:?}");
    assert_eq!(mailing(&second, &mailing_id).await["counts"], json!({"email": {"sent": 1}}));
    let records = history(&second, &format!("event_id={event_id}")).await;
    assert_eq!((records.len(), records[0]["status"].as_str()), (1, Some("sent")), "{records:?}");
    second.stop().await;

    let third = kept.start().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(third.app.handlers.scheduler.pending(), 0, "nothing left to fire");
    assert_eq!(sent_email(&third).await.len(), 2, "each sent once");
}

/// The email a server on `kept` would show (any server on them: the same sender).
async fn sent_email_of(kept: &Kept) -> Vec<Value> {
    let from = kept.email_from.as_str();
    herald_tests::local::moto_data().await["ses"]["Message"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|m| m["source"] == from)
        .cloned()
        .collect()
}

/// Cancelling a mailing, a recurrence or a kept event deletes its kept schedule: the next start
/// arms nothing and nothing is sent; schedules in the group it cannot fire (not Herald's, or
/// another queue's) are skipped, and the start goes on.
#[tokio::test]
async fn a_cancel_removes_the_kept_schedule_and_a_restart_fires_nothing() {
    let kept = Kept::new();
    let first = kept.start().await;
    promo(&first, &["ann"]).await;
    let (at, due) = in_secs(3);
    let once = create(
        &first,
        json!({"name":"c","template":"promo","channels":["email"],"audience":{"users":["ann"]},"data":{"offer":"z"},"send_at":at}),
    )
    .await;
    let every = create(
        &first,
        json!({"name":"r","template":"promo","channels":["email"],"audience":{"users":["ann"]},"data":{"offer":"z"},
               "recurrence":{"cron":"* * * * *","timezone":"UTC"}}),
    )
    .await;
    let body = json!({"event":"e","user_id":"ann","title":"T","channels":["email"],"send_at":at,"transaction_id":"tx-kept"});
    let (status, event) = call(&first, "POST", "/events", Some(&publisher()), Some(body)).await;
    assert_eq!(status, 202, "{event}");
    let (once, every) = (once["id"].as_str().unwrap(), every["id"].as_str().unwrap());
    let mut want = vec![format!("fire-{once}"), format!("cron-{every}"), format!("fire-{}", event["id"].as_str().unwrap())];
    want.sort();
    assert_eq!(herald_tests::local::kept_schedules(&first).await, want);
    for id in [once, every] {
        let (status, reply) = call(&first, "POST", &format!("/mailings/{id}/cancel"), Some(&admin_token()), None).await;
        assert_eq!((status, reply["status"].as_str()), (200, Some("cancelled")), "{reply}");
    }
    let (status, reply) = call(&first, "DELETE", "/events/tx-kept", Some(&publisher()), None).await;
    assert_eq!((status, reply["status"].as_str()), (200, Some("cancelled")), "{reply}");
    assert_eq!(herald_tests::local::kept_schedules(&first).await, Vec::<String>::new(), "cancelled schedules are deleted");
    first.stop().await;
    // What herald-local cannot fire, or is another queue's, stays in the group unfired: each is
    // past and deleted once fired, so a fire would show as a missing schedule.
    let fire = PlatformMessage::Fire { mailing_id: once.to_string(), at: None }.to_json();
    let foreign = kept_elsewhere(
        &kept,
        &[
            ("another-queue", "at(2020-01-01T00:00:00)", false, fire.as_str()),
            ("not-a-message", "at(2020-01-01T00:00:00)", true, r#"{"launch":1}"#),
            ("not-herald-s", "rate(5 minutes)", true, fire.as_str()),
        ],
    )
    .await;
    let second = kept.start().await;
    tokio::time::sleep(due.saturating_duration_since(Instant::now()) + Duration::from_millis(1500)).await;
    assert_eq!(second.app.handlers.scheduler.pending(), 0, "a restart armed a cancelled schedule");
    assert!(sent_email(&second).await.is_empty(), "a cancelled mailing or event sent");
    assert_eq!(herald_tests::local::kept_schedules(&second).await, foreign, "what herald-local cannot fire is left alone");
}

/// Schedules put in `kept`'s group by hand, `(name, expression, targets its platform queue, input)`,
/// deleted after they fire; their names, sorted.
async fn kept_elsewhere(kept: &Kept, schedules: &[(&str, &str, bool, &str)]) -> Vec<String> {
    use aws_sdk_scheduler::types::{ActionAfterCompletion, FlexibleTimeWindow, FlexibleTimeWindowMode, Target};
    let sdk = herald_tests::local::moto_sdk_config().await;
    let sqs = aws_sdk_sqs::Client::new(&sdk);
    let url = sqs.get_queue_url().queue_name(format!("{}-platform", kept.queue)).send().await.unwrap().queue_url.unwrap();
    let attributes = sqs.get_queue_attributes().queue_url(url).attribute_names(aws_sdk_sqs::types::QueueAttributeName::QueueArn);
    let ours = attributes.send().await.unwrap().attributes.unwrap()[&aws_sdk_sqs::types::QueueAttributeName::QueueArn].clone();
    let client = aws_sdk_scheduler::Client::new(&sdk);
    let mut names = Vec::new();
    for (name, expression, to_ours, input) in schedules {
        let arn = if *to_ours { ours.clone() } else { "arn:aws:sqs:us-east-1:123456789012:elsewhere".to_string() };
        client
            .create_schedule()
            .name(*name)
            .group_name(format!("{}-schedules", kept.queue))
            .schedule_expression(*expression)
            .flexible_time_window(FlexibleTimeWindow::builder().mode(FlexibleTimeWindowMode::Off).build().unwrap())
            .target(Target::builder().arn(arn).role_arn(herald_local::DEFAULT_SCHEDULER_ROLE_ARN).input(*input).build().unwrap())
            .action_after_completion(ActionAfterCompletion::Delete)
            .send()
            .await
            .unwrap();
        names.push(name.to_string());
    }
    names.sort();
    names
}

on_both!(
    a_mailing_to_two_users_is_sent,
    a_mailing_reaches_an_events_subscribers,
    a_mailing_to_all_users,
    send_at_is_honoured,
    cancelled_before_it_is_sent_nothing_goes,
    next_runs_follow_the_dst_rule,
    held_by_quiet_hours_then_released,
    a_recurrence_fires_on_its_schedule,
);
