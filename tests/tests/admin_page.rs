//! The admin page (CONTRACT §9, "Admin page") in Debian's Chromium, driven by Playwright as a
//! manager would use it (`tests/browser/admin.mjs`), against a herald-local on its embedded
//! backend signing with its development secret (so the page offers its one-click sign-in).
//! Each flow asserts what the page showed, then checks the result through the JSON API; and
//! that the page made no failed request it did not need, made no API call before sign-in, and
//! logged no script error.

use std::collections::BTreeSet;

use herald::auth::{AuthConfig, issue_hs256};
use herald_local::Server;
use herald_tests::browser::{NodeScript, chromium_or_skip};
use herald_tests::local::*;
use serde_json::{Value, json};

/// herald-local on the embedded backend with its development secret, as `cargo run` starts it.
async fn dev_server() -> Server {
    spawn_with(On::Embedded, |o| o.auth = AuthConfig::hs256(herald_local::DEV_SECRET)).await
}

fn dev_token(claims: Value) -> String {
    let mut claims = claims;
    claims["exp"] = json!(time::OffsetDateTime::now_utc().unix_timestamp() + 3600);
    issue_hs256(herald_local::DEV_SECRET, &claims).expect("a token")
}

fn dev_admin() -> String {
    dev_token(json!({"sub": "ops", "role": "admin"}))
}

/// An admin API call with a development-secret admin token.
async fn api(server: &Server, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    http_call(server, method, path, Some(&dev_admin()), body.as_deref()).await
}

/// Runs one flow of `admin.mjs` to its end and returns every event it reported; panics with the
/// script's report when a step failed.
async fn run_flow(server: &Server, flow: &str, chromium: &std::path::Path) -> Vec<Value> {
    let spec = json!({
        "url": server.url(""),
        "flow": flow,
        "publisher": dev_token(json!({"sub": "svc", "scope": "notify:publish"})),
        "screenshots": std::env::var("HERALD_ADMIN_SCREENSHOTS").ok(),
    });
    let path = std::env::temp_dir().join(format!("herald-admin-{}.json", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, spec.to_string()).expect("write the spec");
    let mut script = NodeScript::start("admin.mjs", &[path.to_str().expect("a UTF-8 path")], chromium);
    let end = script.until(&format!("the {flow} flow's end"), |e| e["kind"] == "done" || e["kind"] == "failed").await;
    let _ = std::fs::remove_file(&path);
    assert_eq!(end["kind"], "done", "a step failed: {end}\nevents: {:#?}", script.events);
    script.finish().await
}

fn step<'a>(events: &'a [Value], name: &str) -> &'a Value {
    events.iter().find(|e| e["kind"] == "step" && e["name"] == name).unwrap_or_else(|| panic!("no step {name}: {events:#?}"))
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or_else(|| panic!("not a string: {v}"))
}

/// Every screen's controls labelled; the page's requests: none to the API before sign-in,
/// every failed one among `expected` (`"METHOD /path status"`), and the console's errors nothing
/// but those failed loads.
fn assert_requests_and_console(events: &[Value], expected: &[&str]) {
    for step in events.iter().filter(|e| e["kind"] == "step") {
        assert_eq!(step["unlabelled"], json!([]), "controls without a label on {}", step["name"]);
    }
    let requests = events.iter().find(|e| e["kind"] == "requests").expect("the requests report");
    let page_files: BTreeSet<&str> = ["GET /admin", "GET /admin/app.css", "GET /admin/app.js", "GET /admin/favicon.svg"].into();
    for r in requests["before_sign_in"].as_array().expect("a list") {
        assert!(page_files.contains(text(r)), "a request before sign-in that is not the page's own: {r}");
    }
    let failed: Vec<String> = requests["failed"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|f| format!("{} {} {}", text(&f["method"]), text(&f["path"]), f["status"]))
        .collect();
    let distinct: BTreeSet<&str> = failed.iter().map(String::as_str).collect();
    assert_eq!(distinct, expected.iter().copied().collect::<BTreeSet<_>>(), "the failed requests: {failed:?}");
    let errors: Vec<&Value> = events.iter().filter(|e| e["kind"] == "pageerror" || e["kind"] == "console").collect();
    for e in &errors {
        assert!(
            e["kind"] == "console" && text(&e["text"]).starts_with("Failed to load resource"),
            "the page logged something other than a failed request's answer: {e}"
        );
    }
    assert_eq!(errors.len(), failed.len(), "one console line per failed request: {errors:?} / {failed:?}");
}

#[tokio::test]
async fn a_manager_signs_in_writes_a_template_sets_up_a_user_and_an_event_type_and_reads_history() {
    let Some(chromium) = chromium_or_skip("a_manager_signs_in_writes_a_template_sets_up_a_user_and_an_event_type_and_reads_history") else {
        return;
    };
    let server = dev_server().await;
    let events = run_flow(&server, "platform", &chromium).await;

    // Signing in: the sign-in screen first, the development button reached with the keyboard.
    assert_eq!(step(&events, "signin")["heading"], "Sign in");
    let signed_in = step(&events, "templates-empty");
    assert_eq!(signed_in["focused_by_tab"], true, "{signed_in}");
    assert_eq!(signed_in["nav"], json!(["Templates", "Users", "Event types", "Mailings", "History", "Outbox"]));
    assert!(text(&step(&events, "templates-empty-state")["empty"]).contains("No templates yet"));

    // A new template: email by default, the live preview over the sample data.
    let new = step(&events, "template-new");
    assert_eq!(new["default_channel"], "email");
    assert_eq!(new["preview_body"], "Hello Ada,\nArrival is out.");
    assert_eq!(new["preview_subject"], "Hi Ada");
    // A syntax error: the API's code and message, its line quoted, the field marked invalid.
    let broken = step(&events, "template-syntax-error");
    let error = text(&broken["error"]);
    assert!(error.starts_with("template_syntax: syntax error in the body at line 2"), "{error}");
    assert!(error.contains("body, line 2: {% if data.film %}"), "{error}");
    assert_eq!(broken["body_invalid"], "true");
    // Fixed and created: what the API stores is what was typed.
    let fixed = step(&events, "template-fixed");
    assert_eq!(fixed["errors_shown"], 0);
    assert_eq!(fixed["preview_body"], "Hello Ada,\nArrival is out.");
    let variables = text(&fixed["variables"]);
    assert!(variables.contains("data.film") && variables.contains("user.name"), "{variables}");
    let (status, template) = api(&server, "GET", &format!("/templates/{}", text(&fixed["id"])), None).await;
    assert_eq!(status, 200, "{template}");
    assert_eq!(template["name"], "welcome");
    assert_eq!(template["channel"], "email");
    assert_eq!(template["subject"], "Hi {{ user.name }}");
    assert_eq!(template["body"], "Hello {{ user.name }},\n{% if data.film %}{{ data.film }} is out.{% endif %}");
    assert_eq!(template["html"], "<p>Hello <b>{{ user.name }}</b>: {{ data.film }}</p>");
    let list = &step(&events, "templates-list")["rows"];
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");
    assert_eq!(list[0][0], "welcome");
    assert_eq!(list[0][1], "email");

    // A user's profile, preferences and quiet hours.
    let user = step(&events, "user-ada");
    assert!(text(&user["empty"]).contains("No profile for this id yet"));
    assert!(text(&user["toast"]).contains("Saved user ada"));
    let bad_phone = text(&step(&events, "user-bad-phone")["error"]);
    assert!(bad_phone.starts_with("bad_request: \"phone\"") && bad_phone.contains("E.164"), "{bad_phone}");
    let (status, profile) = api(&server, "GET", "/users/ada", None).await;
    assert_eq!(status, 200, "{profile}");
    assert_eq!(profile["name"], "Ada Lovelace");
    assert_eq!(profile["email"], "ada@example.com");
    assert_eq!(profile["timezone"], "Europe/Berlin");
    assert_eq!(profile["phone"], Value::Null, "the refused phone was not stored");
    assert_eq!(profile["channels"], json!({"email": true, "sms": false, "push": true}));
    assert_eq!(profile["quiet_hours"], json!({"start": "22:00", "end": "07:00"}));

    // An event type naming the template, critical.
    let types = step(&events, "event-types");
    assert!(text(&types["empty"]).contains("No event types yet"));
    assert_eq!(types["rows"][0][0], "film.added");
    assert_eq!(types["rows"][0][1], "welcome");
    let (_, all) = api(&server, "GET", "/event-types", None).await;
    let film = all["items"].as_array().and_then(|i| i.iter().find(|t| t["name"] == "film.added")).expect("film.added is stored");
    assert_eq!(film["templates"], json!({"email": "welcome"}));
    assert_eq!(film["critical"], true);

    // The event the flow sent, in the page's history and outbox as in the API's.
    let sent = events.iter().find(|e| e["kind"] == "event").expect("the event");
    assert_eq!(sent["status"], 202, "{sent}");
    let history = step(&events, "history");
    assert!(text(&history["empty"]).contains("Choose a user"), "history asks for a filter first");
    assert_eq!(history["hash"], "#/history?user_id=ada&channel=email", "the filters are in the address");
    let rows = history["rows"].as_array().expect("rows");
    let (_, api_history) = api(&server, "GET", "/notifications?user_id=ada&channel=email", None).await;
    assert_eq!(rows.len(), api_history["items"].as_array().map_or(0, Vec::len), "{rows:?} / {api_history}");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((&rows[0][1], &rows[0][2], &rows[0][3]), (&json!("ada"), &json!("email"), &json!("sent")));
    assert!(text(&step(&events, "history-filtered-out")["empty"]).contains("Nothing matches"));
    let outbox = &step(&events, "outbox")["rows"];
    assert_eq!(outbox[0][1], "email");
    assert_eq!(outbox[0][2], "ada@example.com");
    assert_eq!(outbox[0][3], "Hi Ada Lovelace");
    assert_eq!(outbox[0][4], "Hello Ada Lovelace,\nDune is out.");
    assert_eq!(step(&events, "signout")["nav_hidden"], true);

    assert_requests_and_console(&events, &["POST /templates/preview 400", "GET /users/ada 404", "PUT /users/ada 400"]);
}

#[tokio::test]
async fn the_page_fits_a_phone() {
    let Some(chromium) = chromium_or_skip("the_page_fits_a_phone") else {
        return;
    };
    let server = dev_server().await;
    let events = run_flow(&server, "phone", &chromium).await;
    for name in ["phone-templates", "phone-template-form", "phone-compose"] {
        assert!(
            step(&events, name)["overflow"].as_i64().is_some_and(|o| o <= 0),
            "{name} scrolls sideways at 390 px: {}",
            step(&events, name)
        );
    }
    assert_requests_and_console(&events, &[]);
}

#[tokio::test]
async fn the_page_and_its_files_are_served_and_the_dev_sign_in_only_with_the_dev_secret() {
    let server = dev_server().await;
    let page = reqwest::get(server.url("/admin")).await.expect("GET /admin");
    assert_eq!(page.status(), 200);
    let csp = page.headers()["content-security-policy"].to_str().expect("ascii").to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = page.text().await.expect("a body");
    assert!(html.contains(r#"data-dev-signin="on""#), "{html}");
    let (status, body) = http_call(&server, "POST", "/admin/dev-token", None, None).await;
    assert_eq!(status, 200, "{body}");
    // The token it hands out is an admin's: the admin API takes it.
    let (status, list) = http_call(&server, "GET", "/templates", Some(text(&body["token"])), None).await;
    assert_eq!(status, 200, "{list}");

    // With a real secret: no development sign-in on the page, and the endpoint is a 404.
    let server = spawn_app(On::Embedded).await;
    let html = reqwest::get(server.url("/admin")).await.expect("GET /admin").text().await.expect("a body");
    assert!(html.contains(r#"data-dev-signin="off""#), "{html}");
    let (status, body) = http_call(&server, "POST", "/admin/dev-token", None, None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(error_code(&body), "not_found");
    let (status, body) = http_call(&server, "GET", "/admin/nothing.js", None, None).await;
    assert_eq!((status, error_code(&body)), (404, "not_found"), "{body}");
}

#[tokio::test]
async fn a_manager_composes_sends_schedules_and_cancels_mailings() {
    let Some(chromium) = chromium_or_skip("a_manager_composes_sends_schedules_and_cancels_mailings") else {
        return;
    };
    let server = dev_server().await;
    let (status, reply) = api(
        &server,
        "POST",
        "/templates",
        Some(json!({"name": "news", "channel": "email", "subject": "News for {{ user.name }}", "body": "{{ data.film }} is out, {{ user.name }}."})),
    )
    .await;
    assert_eq!(status, 201, "{reply}");
    for (id, name) in [("ada", "Ada"), ("bob", "Bob")] {
        let (status, reply) =
            api(&server, "PUT", &format!("/users/{id}"), Some(json!({"name": name, "email": format!("{id}@example.com")}))).await;
        assert_eq!(status, 200, "{reply}");
    }
    let events = run_flow(&server, "mailings", &chromium).await;

    assert!(text(&step(&events, "mailings-empty")["empty"]).contains("No mailings yet"));
    // Composed in the page, to two users, at once: sent, with each one's email in the outbox.
    let sent = step(&events, "mailing-compose");
    assert_eq!(sent["email_checked_by_template"], true, "the template's channel is the default: {sent}");
    assert_eq!(sent["status"], "sent", "{sent}");
    let (_, mailing) = api(&server, "GET", &format!("/mailings/{}", text(&sent["id"])), None).await;
    assert_eq!(mailing["status"], "sent", "{mailing}");
    assert_eq!(mailing["audience"], json!({"users": ["ada", "bob"]}));
    assert_eq!(mailing["channels"], json!(["email"]));
    assert_eq!(mailing["data"], json!({"film": "Dune"}));
    let outbox = step(&events, "mailing-outbox")["rows"].as_array().expect("rows").clone();
    let mut to: Vec<(String, String)> = outbox.iter().map(|r| (text(&r[2]).to_string(), text(&r[4]).to_string())).collect();
    to.sort();
    assert_eq!(
        to,
        [("ada@example.com".to_string(), "Dune is out, Ada.".to_string()), ("bob@example.com".into(), "Dune is out, Bob.".into())]
    );

    // A recurring one: a bad cron is refused as the API says, the next 5 runs are shown before
    // saving and are the ones the saved mailing has; then cancelled.
    let compose = step(&events, "mailing-recurring-compose");
    let recurring = step(&events, "mailing-recurring");
    let bad = text(&compose["bad_cron_error"]);
    assert!(bad.starts_with("bad_request: \"recurrence.cron\""), "{bad}");
    // Shown as "<local time> (<RFC 3339>)": Mondays at 09:00 in Berlin, 08:00 UTC in winter.
    let shown: Vec<String> = compose["runs"]
        .as_array()
        .expect("runs")
        .iter()
        .map(|r| text(r).rsplit_once('(').and_then(|(_, t)| t.strip_suffix(')')).expect("an instant in parentheses").to_string())
        .collect();
    assert_eq!(shown.len(), 5, "{compose}");
    for run in &shown {
        let t = time::OffsetDateTime::parse(run, &time::format_description::well_known::Rfc3339).expect("RFC 3339");
        assert!(t > time::OffsetDateTime::now_utc(), "{run} is ahead");
        // December to March: CET, so 09:00 in Berlin is 08:00 UTC.
        if t.month() != time::Month::March && t.month() != time::Month::April {
            assert_eq!((t.weekday(), t.hour(), t.minute()), (time::Weekday::Monday, 8, 0), "{run}");
        }
    }
    // The saved mailing's page shows the same runs the compose screen did.
    let saved: Vec<&str> = recurring["saved_runs"].as_array().expect("saved runs").iter().map(text).collect();
    let before: Vec<&str> = compose["runs"].as_array().expect("runs").iter().map(text).collect();
    assert_eq!(saved.len(), 5, "{recurring}");
    for (before, saved) in before.iter().zip(&saved) {
        assert!(before.starts_with(&format!("{saved} (")), "shown before saving {before:?}, after {saved:?}");
    }
    assert_eq!(recurring["status"], "scheduled");
    let (_, weekly) = api(&server, "GET", &format!("/mailings/{}", text(&recurring["id"])), None).await;
    assert_eq!(weekly["recurrence"], json!({"cron": "0 9 * * 1", "timezone": "Europe/Berlin"}), "{weekly}");
    let cancelled = step(&events, "mailing-cancelled");
    assert_eq!((&cancelled["status"], &cancelled["cancel_offered"]), (&json!("cancelled"), &json!(0)), "{cancelled}");
    let (_, weekly) = api(&server, "GET", &format!("/mailings/{}", text(&recurring["id"])), None).await;
    assert_eq!((&weekly["status"], &weekly["next_runs"]), (&json!("cancelled"), &json!([])), "{weekly}");

    // The list, and the first mailing's history reached from its page.
    let list = step(&events, "mailings-list")["rows"].as_array().expect("rows").clone();
    let statuses: Vec<(&str, &str)> = list.iter().map(|r| (text(&r[0]), text(&r[1]))).collect();
    assert!(statuses.contains(&("December news", "sent")) && statuses.contains(&("Weekly digest", "cancelled")), "{statuses:?}");
    let history = step(&events, "mailing-history")["rows"].as_array().expect("rows").clone();
    let mut recipients: Vec<(&str, &str, &str)> = history.iter().map(|r| (text(&r[1]), text(&r[2]), text(&r[3]))).collect();
    recipients.sort();
    assert_eq!(recipients, [("ada", "email", "sent"), ("bob", "email", "sent")]);

    // Cloned from the list: the same template, channels, audience and data under a new name.
    let clone = step(&events, "mailing-clone");
    assert_eq!(
        clone["form"],
        json!({"name": "December news (copy)", "template": "news", "email": true, "users": "ada, bob", "data": {"film": "Dune"}}),
        "{clone}"
    );
    let (_, copy) = api(&server, "GET", &format!("/mailings/{}", text(&clone["id"])), None).await;
    assert_eq!(
        (&copy["name"], &copy["audience"], &copy["data"]),
        (&json!("December news (copy)"), &json!({"users": ["ada", "bob"]}), &json!({"film": "Dune"})),
        "{copy}"
    );
    assert_ne!(copy["id"], sent["id"]);

    assert_requests_and_console(&events, &["POST /mailings/next-runs 400"]);
}

#[tokio::test]
async fn next_runs_before_saving_are_checked_like_a_save() {
    let server = dev_server().await;
    let (status, reply) =
        api(&server, "POST", "/mailings/next-runs", Some(json!({"recurrence": {"cron": "30 2 * * *", "timezone": "Europe/Berlin"}}))).await;
    assert_eq!(status, 200, "{reply}");
    assert_eq!(reply["next_runs"].as_array().map(Vec::len), Some(5), "{reply}");
    for (body, field) in [
        (json!({"recurrence": {"cron": "0 9 * *", "timezone": "Europe/Berlin"}}), "\"recurrence.cron\""),
        (json!({"recurrence": {"cron": "0 9 * * 1", "timezone": "Mars/Olympus"}}), "\"recurrence.timezone\""),
        (json!({}), "\"recurrence\" is required"),
        (json!({"recurrence": {"cron": "0 9 * * 1", "timezone": "UTC"}, "name": "x"}), "\"name\""),
    ] {
        let (status, reply) = api(&server, "POST", "/mailings/next-runs", Some(body.clone())).await;
        assert_eq!((status, error_code(&reply)), (400, "bad_request"), "{body}: {reply}");
        assert!(error_message(&reply).contains(field), "{body}: {reply}");
    }
    let (status, reply) = http_call(&server, "POST", "/mailings/next-runs", None, Some("{}")).await;
    assert_eq!(status, 401, "an admin call: {reply}");
}
