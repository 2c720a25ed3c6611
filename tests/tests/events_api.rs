//! `POST /events`, the history and the outbox (CONTRACT §9) end to end: real HTTP and real
//! WebSocket clients against herald-local, on the embedded backend and on DynamoDB Local,
//! through the same `platform-events` and `platform-admin` handlers the cloud runs.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use herald_local::Server;
use herald_tests::local::{
    On, admin_token, assert_silent, http_call, next_json, notify_client, publisher, send_json, sent_email, sent_sms, spawn_app, spawn_with,
    token, user_token,
};
use herald_tests::on_both;
use serde_json::{Value, json};

/// [`http_call`] with a JSON body.
async fn call(server: &Server, method: &str, path: &str, auth: Option<&str>, body: Option<Value>) -> (u16, Value) {
    http_call(server, method, path, auth, body.map(|b| b.to_string()).as_deref()).await
}

async fn admin_ok(server: &Server, method: &str, path: &str, body: Value) -> Value {
    let (status, reply) = call(server, method, path, Some(&admin_token()), Some(body)).await;
    assert!((200..300).contains(&status), "{method} {path}: {status} {reply}");
    reply
}

/// `POST /events` as a publisher; asserts the 202 and returns the reply.
async fn send_event(server: &Server, body: Value) -> Value {
    let (status, reply) = call(server, "POST", "/events", Some(&publisher()), Some(body)).await;
    assert_eq!(status, 202, "{reply}");
    assert!(reply["id"].is_string() && reply["transaction_id"].is_string(), "{reply}");
    reply
}

async fn history(server: &Server, query: &str) -> Value {
    let (status, reply) = call(server, "GET", &format!("/notifications?{query}"), Some(&admin_token()), None).await;
    assert_eq!(status, 200, "{query}: {reply}");
    reply
}

fn items(reply: &Value) -> Vec<Value> {
    reply["items"].as_array().expect("items").clone()
}

/// (channel, status) of each record, sorted.
fn outcomes(reply: &Value) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = items(reply)
        .iter()
        .map(|i| (i["channel"].as_str().unwrap_or_default().to_string(), i["status"].as_str().unwrap_or_default().to_string()))
        .collect();
    out.sort();
    out
}

fn pair(channel: &str, status: &str) -> (String, String) {
    (channel.to_string(), status.to_string())
}

/// `film.added`: an email (with an `ru` version) and a push template.
async fn film_added(server: &Server, critical: bool) {
    for t in [
        json!({"name":"film","channel":"email","subject":"New: {{ data.film }}","body":"Hello {{ user.name }}, {{ data.film }} is out",
               "html":"<p>{{ data.film }}</p>"}),
        json!({"name":"film","channel":"email","locale":"ru","subject":"Новинка: {{ data.film }}","body":"Привет, {{ user.name }}! Вышел {{ data.film }}"}),
        json!({"name":"film-push","channel":"push","subject":"{{ data.film }}","body":"Watch it, {{ user.name }}"}),
    ] {
        admin_ok(server, "POST", "/templates", t).await;
    }
    admin_ok(server, "PUT", "/event-types/film.added", json!({"templates":{"email":"film","push":"film-push"},"critical":critical})).await;
}

async fn a_fixed_event_is_rendered_to_email_and_push(on: On) {
    let server = spawn_app(on).await;
    film_added(&server, false).await;
    admin_ok(&server, "PUT", "/users/1589", json!({"email":"ivan@example.ru","name":"Иван","locale":"ru-RU"})).await;
    let mut ws = notify_client(&server, "1589", "").await;

    let reply = send_event(&server, json!({"event":"film.added","user_id":1589,"data":{"film":"Дюна"}})).await;
    assert_eq!(reply["id"], reply["transaction_id"], "without a transaction id the event's id is its transaction: {reply}");

    // The email, in the user's language (ru-RU falls back to ru), sent (to the outbox, or SES).
    let mail = sent_email(&server).await;
    assert_eq!(mail.len(), 1, "{mail:?}");
    assert_eq!(
        (&mail[0]["to"], &mail[0]["subject"], &mail[0]["body"]),
        (&json!("ivan@example.ru"), &json!("Новинка: Дюна"), &json!("Привет, Иван! Вышел Дюна"))
    );
    assert!(mail[0].get("html").is_none(), "{mail:?}");

    // The push, on the user's connection, through Herald's own delivery.
    let push = next_json(&mut ws).await;
    assert_eq!((push["title"].as_str(), push["body"].as_str()), (Some("Дюна"), Some("Watch it, Иван")), "{push}");

    let h = history(&server, &format!("event_id={}", reply["id"].as_str().unwrap())).await;
    assert_eq!(outcomes(&h), vec![pair("email", "sent"), pair("push", "sent")], "{h}");
    for i in items(&h) {
        assert_eq!((i["user_id"].as_str(), i["event_id"].as_str()), (Some("1589"), reply["id"].as_str()), "{i}");
        assert!(i["id"].is_string() && i["created_at"].is_string() && i["updated_at"].is_string(), "{i}");
    }
    // The push's id is its history record's.
    let push_record = items(&h).into_iter().find(|i| i["channel"] == "push").unwrap();
    assert_eq!(push["id"], push_record["id"]);

    // A user without a locale gets the template without one, html included.
    admin_ok(&server, "PUT", "/users/7", json!({"email":"ann@example.com","name":"Ann"})).await;
    send_event(&server, json!({"event":"film.added","users":["7"],"data":{"film":"Dune"},"channels":["email"]})).await;
    let mail = sent_email(&server).await;
    assert_eq!(mail.len(), 2, "{mail:?}");
    assert_eq!((&mail[1]["subject"], &mail[1]["html"]), (&json!("New: Dune"), &json!("<p>Dune</p>")), "{mail:?}");
    if on == On::Embedded {
        // The text part too (moto keeps only the HTML of the two).
        assert_eq!(mail[1]["body"], "Hello Ann, Dune is out");
    }
    // A channel the event type has no template for is refused.
    let (status, reply) =
        call(&server, "POST", "/events", Some(&publisher()), Some(json!({"event":"film.added","user_id":"7","channels":["sms"]}))).await;
    assert_eq!((status, reply["error"]["code"].as_str()), (400, Some("bad_request")), "{reply}");
}

async fn a_free_form_event_goes_by_push(on: On) {
    let server = spawn_app(on).await;
    let mut ws = notify_client(&server, "u1", "").await;
    let reply = send_event(&server, json!({"event":"promo","user_id":"u1","title":"Sale","body":"50% off"})).await;
    let push = next_json(&mut ws).await;
    assert_eq!((push["title"].as_str(), push["body"].as_str()), (Some("Sale"), Some("50% off")), "{push}");
    let h = history(&server, &format!("event_id={}", reply["id"].as_str().unwrap())).await;
    assert_eq!(outcomes(&h), vec![pair("push", "sent")], "{h}");
    assert!(sent_email(&server).await.is_empty());

    // With channels, by email too; a user without an email address fails there, with the reason.
    admin_ok(&server, "PUT", "/users/u2", json!({"email":"u2@example.com"})).await;
    let reply =
        send_event(&server, json!({"event":"promo","users":["u1","u2"],"title":"Sale","body":"50% off","channels":["email","push"]})).await;
    let h = history(&server, &format!("event_id={}&channel=email", reply["id"].as_str().unwrap())).await;
    let by_user: Vec<(String, String, Option<String>)> = {
        let mut v: Vec<_> = items(&h)
            .iter()
            .map(|i| {
                (
                    i["user_id"].as_str().unwrap().to_string(),
                    i["status"].as_str().unwrap().to_string(),
                    i["reason"].as_str().map(String::from),
                )
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(by_user[0].0, "u1");
    assert_eq!(by_user[0].1, "failed");
    assert!(by_user[0].2.as_deref().is_some_and(|r| r.contains("email")), "{h}");
    assert_eq!((by_user[1].0.as_str(), by_user[1].1.as_str()), ("u2", "sent"));
    let mail = sent_email(&server).await;
    assert_eq!(
        (mail.len(), &mail[0]["to"], &mail[0]["subject"], &mail[0]["body"]),
        (1, &json!("u2@example.com"), &json!("Sale"), &json!("50% off"))
    );
}

async fn the_same_transaction_is_sent_once(on: On) {
    let server = spawn_app(on).await;
    film_added(&server, false).await;
    admin_ok(&server, "PUT", "/users/9", json!({"email":"nine@example.com","name":"Nine"})).await;
    let mut ws = notify_client(&server, "9", "").await;
    let body = json!({"event":"film.added","user_id":"9","data":{"film":"Alien"},"transaction_id":"tx-1"});
    let first = send_event(&server, body.clone()).await;
    let second = send_event(&server, body.clone()).await;
    assert_eq!(first, second);
    assert_eq!(first["transaction_id"], "tx-1");
    assert_eq!(sent_email(&server).await.len(), 1);
    assert_eq!(next_json(&mut ws).await["title"], "Alien");
    assert_silent(&mut ws, Duration::from_millis(500)).await;
    let h = history(&server, "user_id=9").await;
    assert_eq!(outcomes(&h), vec![pair("email", "sent"), pair("push", "sent")], "{h}");
    // Another publisher's equal transaction id is another event.
    let other = token(json!({"sub": "other-svc", "scope": "notify:publish"}));
    let (status, reply) = call(&server, "POST", "/events", Some(&other), Some(body)).await;
    assert_eq!(status, 202, "{reply}");
    assert_ne!(reply["id"], first["id"]);
    assert_eq!(sent_email(&server).await.len(), 2);
}

async fn preferences_and_quiet_hours_are_kept(on: On) {
    let server = spawn_app(on).await;
    film_added(&server, false).await;
    admin_ok(&server, "PUT", "/event-types/alert", json!({"templates":{"email":"film"},"critical":true})).await;
    // Email turned off: skipped; push still goes.
    admin_ok(&server, "PUT", "/users/off", json!({"email":"off@example.com","channels":{"email":false}})).await;
    // Quiet hours around now (UTC): held until they end, unless the event is critical.
    let hour = time::OffsetDateTime::now_utc().hour();
    let quiet = json!({"start": format!("{:02}:00", (hour + 23) % 24), "end": format!("{:02}:00", (hour + 2) % 24)});
    admin_ok(&server, "PUT", "/users/sleepy", json!({"email":"sleepy@example.com","quiet_hours":quiet})).await;

    let reply = send_event(&server, json!({"event":"film.added","users":["off","sleepy"],"data":{"film":"F"}})).await;
    let event_id = reply["id"].as_str().unwrap().to_string();
    let off = history(&server, &format!("user_id=off&event_id={event_id}")).await;
    assert_eq!(outcomes(&off), vec![pair("email", "skipped"), pair("push", "sent")], "{off}");
    let skipped = items(&off).into_iter().find(|i| i["status"] == "skipped").unwrap();
    assert!(skipped["reason"].as_str().is_some_and(|r| r.contains("email")), "{skipped}");
    let sleepy = history(&server, &format!("user_id=sleepy&event_id={event_id}")).await;
    assert_eq!(outcomes(&sleepy), vec![pair("email", "held"), pair("push", "held")], "{sleepy}");
    for i in items(&sleepy) {
        assert!(i["held_until"].is_string() && i["reason"].as_str().is_some_and(|r| r.contains("quiet hours")), "{i}");
    }
    assert!(sent_email(&server).await.is_empty(), "nothing was emailed: one skipped, one held");

    let reply = send_event(&server, json!({"event":"alert","user_id":"sleepy","data":{"film":"Now"}})).await;
    let critical = history(&server, &format!("event_id={}", reply["id"].as_str().unwrap())).await;
    assert_eq!(outcomes(&critical), vec![pair("email", "sent")], "{critical}");
    let mail = sent_email(&server).await;
    assert_eq!((mail.len(), &mail[0]["to"]), (1, &json!("sleepy@example.com")));
}

async fn history_is_filtered_and_paged(on: On) {
    let server = spawn_app(on).await;
    admin_ok(&server, "PUT", "/users/h", json!({"email":"h@example.com","channels":{"sms":false}})).await;
    let mut events = Vec::new();
    for n in 0..3 {
        let reply =
            send_event(&server, json!({"event":"note","user_id":"h","title":format!("T{n}"),"body":"B","channels":["push","email","sms"]}))
                .await;
        events.push(reply["id"].as_str().unwrap().to_string());
    }
    let all = history(&server, "user_id=h").await;
    assert_eq!(items(&all).len(), 9, "{all}");
    assert!(all.get("cursor").is_none(), "{all}");
    assert_eq!(outcomes(&history(&server, "user_id=h&status=skipped").await), vec![pair("sms", "skipped"); 3]);
    assert_eq!(items(&history(&server, "user_id=h&channel=email&status=sent").await).len(), 3);
    assert_eq!(items(&history(&server, &format!("user_id=h&event_id={}", events[1])).await).len(), 3);
    assert_eq!(items(&history(&server, &format!("event_id={}&channel=push", events[2])).await).len(), 1);
    assert!(items(&history(&server, "user_id=nobody").await).is_empty());

    // Pages of 2, newest first, through the cursor: every record once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..10 {
        let q = match &cursor {
            Some(c) => format!("user_id=h&limit=2&cursor={}", urlencode(c)),
            None => "user_id=h&limit=2".to_string(),
        };
        let page = history(&server, &q).await;
        let got = items(&page);
        assert!(got.len() <= 2, "{page}");
        seen.extend(got.iter().map(|i| i["id"].as_str().unwrap().to_string()));
        match page["cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    let mut expected: Vec<String> = items(&all).iter().map(|i| i["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(seen, expected, "paged in the same order as one page");
    expected.sort();
    expected.dedup();
    assert_eq!(expected.len(), 9);
    // A filtered page of one still pages.
    let page = history(&server, "user_id=h&status=sent&limit=1").await;
    assert_eq!(items(&page).len(), 1);
    assert!(page["cursor"].is_string(), "{page}");

    for (query, what) in [
        ("", "neither user nor event"),
        ("channel=email", "neither user nor event"),
        ("user_id=h&status=lost", "unknown status"),
        ("user_id=h&channel=fax", "unknown channel"),
        ("user_id=h&limit=0", "limit 0"),
        ("user_id=h&limit=many", "limit not a number"),
        ("user_id=h&sort=asc", "unknown parameter"),
        ("user_id=h&cursor=garbage!", "bad cursor"),
    ] {
        let (status, reply) = call(&server, "GET", &format!("/notifications?{query}"), Some(&admin_token()), None).await;
        assert_eq!((status, reply["error"]["code"].as_str()), (400, Some("bad_request")), "{what}: {reply}");
    }
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) { (b as char).to_string() } else { format!("%{b:02X}") })
        .collect()
}

async fn callers_are_checked(on: On) {
    let server = spawn_app(on).await;
    let body = json!({"event":"promo","user_id":"u1","title":"T"});
    let user = user_token("u1");
    for (auth, status) in [(None, 401), (Some(user.as_str()), 403), (Some("not-a-jwt"), 401)] {
        let (got, reply) = call(&server, "POST", "/events", auth, Some(body.clone())).await;
        assert_eq!(got, status, "POST /events with {auth:?}: {reply}");
    }
    // The token is checked before the body.
    let (got, _) = call(&server, "POST", "/events", Some(&user), Some(json!("junk"))).await;
    assert_eq!(got, 403);
    // An admin is a publisher too.
    let (got, reply) = call(&server, "POST", "/events", Some(&admin_token()), Some(body.clone())).await;
    assert_eq!(got, 202, "{reply}");
    for (bad, code) in [
        (json!({"event":"nothing-defined","user_id":"u1"}), "unknown_event"),
        (json!({"event":"promo","user_id":"u1","title":"T","colour":"red"}), "bad_request"),
        (json!({"event":"promo","title":"T"}), "bad_request"),
        (json!({"event":"promo","user_id":"u1","title":"T","send_at":"2030-01-01T00:00:00Z"}), "bad_request"),
    ] {
        let (got, reply) = call(&server, "POST", "/events", Some(&publisher()), Some(bad.clone())).await;
        assert_eq!((got, reply["error"]["code"].as_str()), (400, Some(code)), "{bad}: {reply}");
    }
    // The outbox is the embedded backend's; the aws backend sends and says so.
    let (got, reply) = call(&server, "GET", "/outbox", Some(&admin_token()), None).await;
    match on {
        On::Embedded => assert_eq!(got, 200, "{reply}"),
        On::DynamoDbLocal => assert_eq!(
            (got, reply["error"]["code"].as_str(), reply["error"]["message"].as_str().is_some_and(|m| m.contains("SES"))),
            (404, Some("not_found"), true),
            "{reply}"
        ),
    }
    // History and the outbox are the admins'.
    for path in ["/notifications?user_id=u1", "/outbox"] {
        for (auth, status) in [(None, 401), (Some(publisher()), 403), (Some(user.clone()), 403)] {
            let (got, reply) = call(&server, "GET", path, auth.as_deref(), None).await;
            assert_eq!(got, status, "GET {path} with {auth:?}: {reply}");
        }
    }
}

async fn what_is_held_is_cancelled(on: On) {
    let server = spawn_app(on).await;
    let hour = time::OffsetDateTime::now_utc().hour();
    let quiet = json!({"start": format!("{:02}:00", (hour + 23) % 24), "end": format!("{:02}:00", (hour + 2) % 24)});
    admin_ok(&server, "PUT", "/users/sleepy", json!({"quiet_hours":quiet})).await;
    let reply = send_event(&server, json!({"event":"promo","users":["sleepy","awake"],"title":"T","transaction_id":"tx/1 ü"})).await;
    let path = format!("/events/{}", urlencode("tx/1 ü"));
    for (auth, status) in [(None, 401), (Some(user_token("sleepy")), 403)] {
        let (got, body) = call(&server, "DELETE", &path, auth.as_deref(), None).await;
        assert_eq!(got, status, "{body}");
    }
    let (status, body) = call(&server, "DELETE", &path, Some(&publisher()), None).await;
    assert_eq!((status, &body["id"], &body["cancelled"]), (200, &reply["id"], &json!(1)), "{body}");
    let h = history(&server, &format!("event_id={}", reply["id"].as_str().unwrap())).await;
    let mut got: Vec<(String, String)> =
        items(&h).iter().map(|i| (i["user_id"].as_str().unwrap().to_string(), i["status"].as_str().unwrap().to_string())).collect();
    got.sort();
    assert_eq!(got, vec![pair("awake", "sent"), pair("sleepy", "skipped")], "{h}");
    // Nothing is left to cancel; an unknown (or another publisher's) transaction is not found.
    let (status, body) = call(&server, "DELETE", &path, Some(&publisher()), None).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("nothing_to_cancel")), "{body}");
    let other = token(json!({"sub": "other-svc", "scope": "notify:publish"}));
    for (auth, p) in [(publisher(), "/events/unknown"), (other, path.as_str())] {
        let (status, body) = call(&server, "DELETE", p, Some(&auth), None).await;
        assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")), "{body}");
    }
}

/// A number of this test's own (moto keeps every test's SMS in one list).
fn unique_phone() -> String {
    format!("+1555{:07}", uuid::Uuid::new_v4().as_u128() % 10_000_000)
}

async fn an_sms_goes_to_the_users_phone(on: On) {
    let server = spawn_app(on).await;
    admin_ok(&server, "POST", "/templates", json!({"name":"code","channel":"sms","body":"{{ data.code }} is your code, {{ user.name }}"}))
        .await;
    admin_ok(&server, "PUT", "/event-types/login.code", json!({"templates":{"sms":"code"},"critical":true})).await;
    let phone = unique_phone();
    admin_ok(&server, "PUT", "/users/s1", json!({"phone": phone, "name":"Sam"})).await;
    let reply = send_event(&server, json!({"event":"login.code","user_id":"s1","data":{"code":"4242"}})).await;
    let h = history(&server, &format!("event_id={}", reply["id"].as_str().unwrap())).await;
    assert_eq!(outcomes(&h), vec![pair("sms", "sent")], "{h}");
    assert_eq!(sent_sms(&server, &phone).await, vec!["4242 is your code, Sam".to_string()]);
}

/// SES refusing the sender (its identity no longer verified): the notification is `failed` with
/// SES's own reason, and nothing is sent. The embedded outbox never refuses, so this is the aws
/// backend's alone (the worker's retry and failure paths have their unit tests).
#[tokio::test]
async fn a_refusing_provider_is_recorded_as_failed() {
    let server = spawn_app(On::DynamoDbLocal).await;
    let from = server.app.handlers.senders.email_from.clone().expect("a sender");
    let ses = aws_sdk_sesv2::Client::new(&herald_tests::local::moto_sdk_config().await);
    ses.delete_email_identity().email_identity(&from).send().await.expect("moto forgets the sender");
    admin_ok(&server, "PUT", "/users/r1", json!({"email":"r1@example.com"})).await;
    let reply = send_event(&server, json!({"event":"promo","user_id":"r1","title":"T","body":"B","channels":["email"]})).await;
    let h = history(&server, &format!("event_id={}", reply["id"].as_str().unwrap())).await;
    assert_eq!(outcomes(&h), vec![pair("email", "failed")], "{h}");
    let reason = items(&h)[0]["reason"].as_str().unwrap_or_default().to_string();
    assert!(reason.starts_with("SES: MessageRejected") && reason.contains(&from), "{reason}");
    assert!(sent_email(&server).await.is_empty());
}

/// Polls `GET /notifications?<query>` until `done` holds for its items (within 5 s).
async fn until_history(server: &Server, query: &str, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let start = Instant::now();
    loop {
        let got = items(&history(server, query).await);
        if done(&got) {
            return got;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{query}: still {got:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn status_of<'a>(records: &'a [Value], user: &str) -> Option<&'a str> {
    records.iter().find(|r| r["user_id"] == user).and_then(|r| r["status"].as_str())
}

/// A push notification acked by its user's connection is `acked` in the history, and its
/// mailing's counts move from push `sent` to push `acked` (CONTRACT §9). A push no one acked (a
/// connection not in ack mode) stays `sent`; another user's ack of it is refused and moves
/// nothing; an ack sent again moves nothing more.
async fn an_acked_push_is_recorded_acked(on: On) {
    let server = spawn_app(on).await;
    admin_ok(&server, "POST", "/templates", json!({"name":"ping","channel":"push","subject":"Ping","body":"{{ data.n }}"})).await;
    let mut ann = notify_client(&server, "ann", "&ack=required").await;
    let mut bob = notify_client(&server, "bob", "").await;
    let mut eve = notify_client(&server, "eve", "&ack=required").await;
    let body = json!({"name":"p","template":"ping","channels":["push"],"audience":{"users":["ann","bob"]},"data":{"n":"1"}});
    let m = admin_ok(&server, "POST", "/mailings", body).await;
    let (id, query) = (m["id"].as_str().unwrap().to_string(), format!("mailing_id={}", m["id"].as_str().unwrap()));
    let push = next_json(&mut ann).await;
    assert_eq!((push["title"].as_str(), push["body"].as_str()), (Some("Ping"), Some("1")), "{push}");
    let bobs = next_json(&mut bob).await;
    assert_eq!(bobs["body"], "1", "{bobs}");
    assert_ne!(bobs["id"], push["id"], "one notification per user");
    let ack = json!({"type":"ack","push_id":push["id"],"status":"ack"});

    // Someone else's ack: refused, nothing moves.
    send_json(&mut eve, ack.clone()).await;
    let reply = next_json(&mut eve).await;
    assert_eq!(reply["code"], "unknown_push", "{reply}");
    let records = until_history(&server, &query, |r| r.len() == 2 && r.iter().all(|r| r["status"] == "sent")).await;
    assert_eq!(status_of(&records, "ann"), Some("sent"));

    send_json(&mut ann, ack.clone()).await;
    let records = until_history(&server, &query, |r| status_of(r, "ann") == Some("acked")).await;
    assert_eq!(status_of(&records, "bob"), Some("sent"), "{records:?}");
    let start = Instant::now();
    loop {
        let (_, m) = call(&server, "GET", &format!("/mailings/{id}"), Some(&admin_token()), None).await;
        if m["status"] == "sent" && m["counts"] == json!({"push": {"acked": 1, "sent": 1}}) {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{m}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Again: the delivery stays acked, the record and the counts as they are.
    send_json(&mut ann, ack).await;
    assert_silent(&mut ann, Duration::from_millis(300)).await;
    let (_, m) = call(&server, "GET", &format!("/mailings/{id}"), Some(&admin_token()), None).await;
    assert_eq!(m["counts"], json!({"push": {"acked": 1, "sent": 1}}), "{m}");
    assert_eq!(status_of(&items(&history(&server, &query).await), "ann"), Some("acked"));
}

/// A stand-in for seed 004's auth service at `/api/users/{id}`: answers every user with an email
/// address of its own (`<id>@<domain>`), and keeps the `Authorization` header of each request.
async fn auth_service(domain: &str) -> (String, Arc<Mutex<Vec<String>>>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/api/users/{{user_id}}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (kept, domain) = (seen.clone(), domain.to_string());
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let (kept, domain) = (kept.clone(), domain.clone());
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let head = String::from_utf8_lossy(&head).to_string();
                let user = head.split_whitespace().nth(1).and_then(|p| p.rsplit('/').next()).unwrap_or_default().to_string();
                let auth = head.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("authorization")));
                kept.lock().unwrap().push(auth.map(|(_, v)| v.trim().to_string()).unwrap_or_default());
                let body = json!({"email": format!("{user}@{domain}"), "name": user.to_uppercase()}).to_string();
                let reply = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    (url, seen)
}

/// What a profile lacks comes from `HERALD_USER_INFO_URL` (CONTRACT §9, "Users"), asked with the
/// caller's token when the jobs run in its request (an event to `users`), and with Herald's own
/// service token for queued work (a mailing's jobs, in the worker).
async fn user_details_come_from_the_auth_service_with_the_callers_token(on: On) {
    let (url, seen) = auth_service(&format!("{}.example", uuid::Uuid::new_v4().simple())).await;
    let server = spawn_with(on, |o| {
        o.user_info_url = Some(url);
        o.user_info_token = Some("herald-service".into());
    })
    .await;
    let caller = publisher();
    let body = json!({"event":"hi","users":["zed"],"title":"Hi","body":"there","channels":["email"]});
    let (status, reply) = call(&server, "POST", "/events", Some(&caller), Some(body)).await;
    assert_eq!(status, 202, "{reply}");
    let h = history(&server, &format!("event_id={}", reply["id"].as_str().unwrap())).await;
    assert_eq!(outcomes(&h), vec![pair("email", "sent")], "{h}");
    let mail = sent_email(&server).await;
    assert!(mail.iter().any(|m| m["to"].as_str().is_some_and(|t| t.starts_with("zed@"))), "{mail:?}");
    assert_eq!(seen.lock().unwrap().clone(), [format!("Bearer {caller}")], "the publisher's own token");

    admin_ok(&server, "POST", "/templates", json!({"name":"hello","channel":"email","subject":"Hello","body":"Hello {{ user.name }}"}))
        .await;
    let body = json!({"name":"h","template":"hello","channels":["email"],"audience":{"users":["yan"]}});
    let m = admin_ok(&server, "POST", "/mailings", body).await;
    let records =
        until_history(&server, &format!("mailing_id={}", m["id"].as_str().unwrap()), |r| r.iter().any(|r| r["status"] == "sent")).await;
    assert_eq!(records.len(), 1, "{records:?}");
    let mail = sent_email(&server).await;
    assert!(mail.iter().any(|m| m["to"].as_str().is_some_and(|t| t.starts_with("yan@")) && m["body"] == "Hello YAN"), "{mail:?}");
    assert_eq!(seen.lock().unwrap().last().cloned(), Some("Bearer herald-service".to_string()), "the worker's own token");
}

on_both!(
    user_details_come_from_the_auth_service_with_the_callers_token,
    an_acked_push_is_recorded_acked,
    an_sms_goes_to_the_users_phone,
    what_is_held_is_cancelled,
    a_fixed_event_is_rendered_to_email_and_push,
    a_free_form_event_goes_by_push,
    the_same_transaction_is_sent_once,
    preferences_and_quiet_hours_are_kept,
    history_is_filtered_and_paged,
    callers_are_checked,
);
