//! docs/clients.md run as written (issue 11): its snippets are taken from the markdown fences and
//! run against a herald-local this test starts, with only the documented placeholders filled in
//! (herald-local's address for the example hosts, tokens for `<JWT>` / `getAccessToken()`, and
//! `show`, `render`, `scheduleReconnect`, `sid`, `chatToken` in the browser).
//!
//! - the reconnecting snippet ("History and recovery") in Chromium too: dropped by the server, it
//!   comes back with its place in both streams and shows what it missed once each, in order;
//! - the browser snippet in a real headless Chromium (`tests/browser/clients_doc.mjs`): a plain
//!   connection shows a push and never gets an error frame; an `?ack=required` one acks, so the
//!   push is not sent again; the chat part gets its conversation list and renders a message;
//! - the shell snippets with bash: tokens minted by herald-local's binary, `curl` publishing (202,
//!   and the push arrives);
//! - the Python protobuf snippet with `websockets` and `protobuf` from `.tools/venv`, its module
//!   compiled by the documented `grpc_tools.protoc` command: it prints the push and acks it.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use herald_local::Server;
use herald_tests::browser::{NodeScript, chromium_or_skip, repo_root};
use herald_tests::local::*;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};

/// herald-local's ack timeout here (`HERALD_ACK_TIMEOUT_MS`, 10 s by default): an unacked push
/// comes again after this. Short for a fast test, long enough for a loaded machine to ack in time.
const ACK_TIMEOUT: Duration = Duration::from_millis(1000);
/// How long the test watches for a push sent again: past the first resend of an unacked one.
const REDELIVERY_WINDOW: Duration = Duration::from_millis(1500);
/// The base URL of the doc's herald-local snippets, replaced by the test server's.
const DOC_BASE: &str = "ws://127.0.0.1:3001";

// ---- the markdown -----------------------------------------------------------------------------

fn doc() -> String {
    let path = repo_root().join("docs/clients.md");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// The body of the fence of language `lang` under the heading `heading` (any level) whose text
/// contains `containing`; panics naming what is missing.
fn fence(md: &str, heading: &str, lang: &str, containing: &str) -> String {
    let mut current = String::new();
    let mut open: Option<(String, String)> = None; // (language, body)
    let mut found = Vec::new();
    for line in md.lines() {
        match &mut open {
            Some((l, body)) => {
                if line.trim_start().starts_with("```") {
                    if current == heading && l == lang && body.contains(containing) {
                        found.push(std::mem::take(body));
                    }
                    open = None;
                } else {
                    body.push_str(line);
                    body.push('\n');
                }
            }
            None => {
                if let Some(info) = line.trim_start().strip_prefix("```") {
                    open = Some((info.trim().to_string(), String::new()));
                } else if line.starts_with('#') {
                    current = line.trim_start_matches('#').trim().to_string();
                }
            }
        }
    }
    match found.len() {
        1 => found.remove(0),
        n => panic!("docs/clients.md: expected one ```{lang} fence under \"{heading}\" containing {containing:?}, found {n}"),
    }
}

/// `text` with every `from` replaced; panics when `text` has none (the doc changed under the test).
fn substitute(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "docs/clients.md: the snippet no longer contains {from:?}:\n{text}");
    text.replace(from, to)
}

/// The test server's address in place of the doc's herald-local one (`ws://127.0.0.1:3001`).
fn pointed_at(snippet: &str, server: &Server) -> String {
    substitute(snippet, DOC_BASE, &server.ws_url(""))
}

// ---- the browser ----------------------------------------------------------------------------------

/// The events of one page of the browser run.
struct Page<'a> {
    name: &'a str,
    events: Vec<&'a Value>,
}

impl<'a> Page<'a> {
    fn of(events: &'a [Value], name: &'a str) -> Self {
        Self { name, events: events.iter().filter(|e| e["page"] == name).collect() }
    }

    fn kind(&self, kind: &str) -> Vec<&'a Value> {
        self.events.iter().copied().filter(|e| e["kind"] == kind).collect()
    }

    /// The JSON frames of `kind` ("frame" received, "sent") on the notification or chat socket.
    fn frames(&self, kind: &str, notify: bool) -> Vec<Value> {
        self.kind(kind)
            .into_iter()
            .filter(|e| is_notify(e) == notify)
            .map(|e| {
                let data = e["data"].as_str().unwrap_or_default();
                serde_json::from_str(data).unwrap_or_else(|err| panic!("{}: a frame that is not JSON ({err}): {data}", self.name))
            })
            .collect()
    }

    fn dump(&self) -> String {
        self.events.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("\n")
    }
}

fn is_notify(event: &Value) -> bool {
    event["url"].as_str().is_some_and(|u| u.contains("/api/v1/notify/ws"))
}

fn on(page: &'static str, kind: &'static str) -> impl Fn(&Value) -> bool {
    move |e| e["page"] == page && e["kind"] == kind
}

fn frame_on(page: &'static str, notify: bool, pred: impl Fn(&Value) -> bool) -> impl Fn(&Value) -> bool {
    move |e| {
        e["page"] == page
            && e["kind"] == "frame"
            && is_notify(e) == notify
            && serde_json::from_str::<Value>(e["data"].as_str().unwrap_or_default()).is_ok_and(|f| pred(&f))
    }
}

#[tokio::test]
async fn browser_snippet_shows_pushes_acks_only_when_asked_and_chats() {
    let Some(chromium) = chromium_or_skip("browser_snippet_shows_pushes_acks_only_when_asked_and_chats") else {
        return;
    };
    let server = spawn_with(On::Embedded, |o| o.delivery.ack_timeout = ACK_TIMEOUT).await;
    let snippet = pointed_at(&fence(&doc(), "Browser", "js", "new WebSocket"), &server);
    // The doc's way to ask for acks: its URL constant with `?ack=required` appended.
    let notify_url = server.ws_url("/api/v1/notify/ws");
    let acking = substitute(&snippet, &format!("\"{notify_url}\""), &format!("\"{notify_url}?ack=required\""));

    // The chat requester 7's conversation, for its user 42 (the page's `sid`) to list.
    let chat_token = token(json!({"request_id": "7"}));
    let (mut requester, _) = connect(&server.ws_url("/ws?sid=42"), Some(&format!("access_token, {chat_token}"))).await.expect("connects");
    let added = request(&mut requester, json!({"name":"Event.AddConversation","args":{"user_id":"42","application_id":"7"}})).await;
    assert_eq!(added["ok"], true, "{added}");
    requester.close(None).await.expect("close");

    let spec = json!({
        "url": server.url("/health"),
        "pages": [
            {"name": "plain", "snippet": snippet, "token": user_token("b-plain"), "chat_token": chat_token, "sid": "42"},
            {"name": "acks", "snippet": acking, "token": user_token("b-acks"), "chat_token": chat_token, "sid": "42"},
        ],
    });
    let dir = TempDir::new();
    let spec_path = dir.path.join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).expect("write the spec");
    let mut browser = NodeScript::start("clients_doc.mjs", &[spec_path.to_str().expect("a UTF-8 path")], &chromium);

    for page in ["plain", "acks"] {
        let page: &'static str = page;
        browser.until(&format!("{page}: subscribed"), frame_on(page, true, |f| f["type"] == "subscribed")).await;
        browser.until(&format!("{page}: the conversation list"), frame_on(page, false, |f| f["name"] == "Event.GetConversationList")).await;
    }
    let plain_id = publish(&server, json!({"user_id":"b-plain","event_name":"notification:test","message":{"hello":"world"}})).await;
    let acks_id = publish(&server, json!({"user_id":"b-acks","event_name":"notification:test","title":"Ack me","body":"once"})).await;
    browser.until("plain: show", on("plain", "show")).await;
    browser.until("acks: show", on("acks", "show")).await;

    // Support answers in the conversation: the pages' chat connections (user 42) get it.
    let (mut admin, _) = connect(&server.ws_url("/ws?sid=support"), Some(&format!("access_token, {}", token(json!({"admin_id":"1"})))))
        .await
        .expect("connects");
    let sent = request(
        &mut admin,
        json!({"name":"Event.SendMessage","args":{"session_channel":"7","sender_id":"support","content":"hello from support"}}),
    )
    .await;
    assert_eq!(sent["ok"], true, "{sent}");
    browser.until("plain: render", on("plain", "render")).await;
    browser.until("acks: render", on("acks", "render")).await;

    // An unacked push would come again meanwhile; an ack on the plain connection would get its
    // `unknown_push` error back.
    tokio::time::sleep(REDELIVERY_WINDOW).await;
    let events = browser.finish().await;

    for (name, id, title, body) in [("plain", &plain_id, "notification:test", r#"{"hello":"world"}"#), ("acks", &acks_id, "Ack me", "once")]
    {
        let page = Page::of(&events, name);
        let dump = page.dump();
        assert!(page.kind("pageerror").is_empty(), "{name}: the snippet threw:\n{dump}");
        // The snippet's console.warn: an error frame or a failed chat call. (Console errors are
        // Chromium's own, such as the page's missing favicon.)
        let warnings: Vec<&Value> = page.kind("console").into_iter().filter(|c| c["type"] == "warning").collect();
        assert!(warnings.is_empty(), "{name}: the snippet warned {warnings:?}:\n{dump}");
        assert!(page.kind("reconnect").is_empty() && page.kind("close").is_empty(), "{name}: a socket closed:\n{dump}");
        let opened = page.kind("open");
        assert_eq!(opened.len(), 2, "{name}: two sockets open:\n{dump}");
        assert!(opened.iter().all(|o| o["protocol"] == "access_token"), "{name}: the server selects access_token:\n{dump}");

        // Notifications: what the user sees, and what went over the wire.
        let shown: Vec<(&Value, &Value)> = page.kind("show").iter().map(|s| (&s["title"], &s["body"])).collect();
        assert_eq!(shown, vec![(&json!(title), &json!(body))], "{name}: the push shown once:\n{dump}");
        let received = page.frames("frame", true);
        let errors: Vec<&Value> = received.iter().filter(|f| f["type"] == "error").collect();
        assert!(errors.is_empty(), "{name}: error frames {errors:?}:\n{dump}");
        let pushes: Vec<&Value> = received.iter().filter(|f| f["type"] == "push").collect();
        assert_eq!(pushes.len(), 1, "{name}: the push once, not sent again:\n{dump}");
        assert_eq!(pushes[0]["id"], json!(id), "{name}");
        let acks: Vec<Value> = page.frames("sent", true).into_iter().filter(|f| f["type"] == "ack").collect();
        let expected_acks = if name == "acks" { vec![json!({"type":"ack","push_id":id,"status":"ack"})] } else { vec![] };
        assert_eq!(acks, expected_acks, "{name}: acks only when the URL asks for them:\n{dump}");

        // Chat: the conversation list, then the support message rendered.
        let replies = page.frames("frame", false);
        let list = replies.iter().find(|f| f["name"] == "Event.GetConversationList").expect("a conversation list");
        assert_eq!(list["ok"], true, "{name}: {list}");
        let channels: Vec<&Value> =
            list["result"]["conversations"].as_array().expect("conversations").iter().map(|c| &c["session_channel"]).collect();
        assert_eq!(channels, vec![&json!("7")], "{name}: {list}");
        let rendered = page.kind("render");
        assert_eq!(rendered.len(), 1, "{name}:\n{dump}");
        assert_eq!(rendered[0]["result"]["message"]["content"], "hello from support", "{name}:\n{dump}");
    }
}

// ---- the shell --------------------------------------------------------------------------------

/// The herald-local binary of this workspace's debug build, for the snippets' `cargo run -q
/// --release -p herald-local --`: a release build would take minutes on a 2-core machine for
/// nothing the snippets test. `cargo build` is a no-op when the binary is up to date (the
/// workspace's test run builds it); otherwise it links the debug binary.
async fn herald_local_binary() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = tokio::process::Command::new(&cargo)
        .args(["build", "--quiet", "-p", "herald-local", "--bin", "herald-local", "--message-format=json"])
        .current_dir(repo_root())
        .stderr(Stdio::inherit())
        .output()
        .await
        .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    assert!(out.status.success(), "cargo build -p herald-local failed: {}", out.status);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|m| m["reason"] == "compiler-artifact" && m["target"]["name"] == "herald-local")
        .find_map(|m| m["executable"].as_str().map(PathBuf::from))
        .expect("cargo names herald-local's executable")
}

/// Single quotes for bash.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[tokio::test]
async fn shell_snippets_mint_tokens_and_publish() {
    let binary = herald_local_binary().await;
    let server = spawn_app(On::Embedded).await;
    let md = doc();
    let tokens = substitute(
        &fence(&md, "Connecting clients", "sh", "token --user"),
        "cargo run -q --release -p herald-local --",
        &sh_quote(binary.to_str().expect("a UTF-8 path")),
    );
    let publishing = substitute(&fence(&md, "Publishing", "sh", "curl"), "https://api.example.com", &server.url(""));

    // The subscriber the published body targets (user 1589, notification:test).
    let mut subscriber = notify_client(&server, "1589", "").await;
    request(&mut subscriber, json!({"type":"subscribe","event_name":"notification:test"})).await;

    // `curl` wrapped to print the status after the body, as the doc's `# 202 {"id":…}` tells it.
    let script = format!(
        "set -euo pipefail\ncurl() {{ command curl -w '\\n%{{http_code}}\\n' \"$@\"; }}\n{tokens}\n{publishing}\n\
         printf 'TOKEN=%s\\nCHAT=%s\\n' \"$TOKEN\" \"$CHAT\"\n"
    );
    let out = tokio::time::timeout(
        Duration::from_secs(30),
        tokio::process::Command::new("bash")
            .args(["-c", &script])
            // The doc: "Set HERALD_JWT_SECRET to the deployment's secret first".
            .env("HERALD_JWT_SECRET", SECRET)
            .env_remove("HERALD_JWT_ISSUER")
            .env_remove("HERALD_JWT_AUDIENCE")
            .output(),
    )
    .await
    .expect("the snippets finish within 30 s")
    .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{}\nstdout:\n{stdout}\nstderr:\n{stderr}\nscript:\n{script}", out.status);
    let lines: Vec<&str> = stdout.lines().collect();
    let [body, status, token_line, chat_line] = lines[..] else { panic!("unexpected output:\n{stdout}\nstderr:\n{stderr}") };
    assert_eq!(status, "202", "POST /notify answers 202: {body}");
    let reply: Value = serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"));
    let id = reply["id"].as_str().unwrap_or_else(|| panic!("no id: {reply}"));
    assert_eq!(reply, json!({"id": id}));

    let push = next_json(&mut subscriber).await;
    assert_eq!(push["type"], "push", "{push}");
    assert_eq!(push["id"], id, "{push}");
    assert_eq!(push["event_name"], "notification:test", "{push}");
    assert_eq!(push["message"], json!({"hello":"world"}), "{push}");

    // TOKEN is user 42 on the notification API; CHAT the chat requester 7 (it may add
    // application 7's conversation, and only that one).
    let user = token_line.strip_prefix("TOKEN=").expect("TOKEN");
    let (mut ws, _) = connect(&server.ws_url("/api/v1/notify/ws"), Some(&format!("access_token, {user}"))).await.expect("TOKEN connects");
    assert_eq!(request(&mut ws, json!({"type":"subscribe","event_name":"e"})).await["type"], "subscribed");
    assert_eq!(connection_ids(&server, "42").await.len(), 1, "TOKEN is user 42");
    let chat = chat_line.strip_prefix("CHAT=").expect("CHAT");
    let (mut ws, _) = connect(&server.ws_url("/ws?sid=1"), Some(&format!("access_token, {chat}"))).await.expect("CHAT connects");
    let added = request(&mut ws, json!({"name":"Event.AddConversation","args":{"user_id":"1","application_id":"7"}})).await;
    assert_eq!(added["ok"], true, "{added}");
    assert_eq!(added["result"]["application_id"], "7", "{added}");
}

// ---- Python -------------------------------------------------------------------------------------

/// `.tools/venv/bin`, with websockets, protobuf and grpcio-tools installed; panics saying how to
/// install them when they are missing.
fn python_venv() -> PathBuf {
    let bin = repo_root().join(".tools/venv/bin");
    let ok = std::process::Command::new(bin.join("python"))
        .args(["-c", "import websockets, google.protobuf, grpc_tools.protoc"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "{} lacks websockets, protobuf or grpcio-tools: run `./scripts/test`, or \
         `bash -c 'source scripts/services.sh && herald_install_tools'`, which install them",
        bin.display()
    );
    bin
}

#[tokio::test]
async fn python_protobuf_snippet_prints_and_acks_pushes() {
    let venv = python_venv();
    let snippet = fence(&doc(), "Protobuf clients (seed 003)", "python", "push_pb2");

    // The documented compile command, run where the repository's proto/ is copied, with the venv
    // first on PATH (as when it is activated).
    let dir = TempDir::new();
    std::fs::create_dir(dir.path.join("proto")).expect("mkdir");
    std::fs::copy(repo_root().join("proto/push.proto"), dir.path.join("proto/push.proto")).expect("copy push.proto");
    let compile = snippet
        .lines()
        .find_map(|l| l.find("python -m grpc_tools.protoc").map(|at| l[at..].trim().to_string()))
        .expect("docs/clients.md: the Python snippet names its protoc command");
    let path = format!("{}:{}", venv.display(), std::env::var("PATH").unwrap_or_default());
    let out = std::process::Command::new("bash").args(["-c", &compile]).current_dir(&dir.path).env("PATH", &path).output().expect("bash");
    assert!(out.status.success(), "{compile}: {}", String::from_utf8_lossy(&out.stderr));
    assert!(dir.path.join("push_pb2.py").is_file(), "{compile} writes push_pb2.py");

    let server = spawn_with(On::Embedded, |o| o.delivery.ack_timeout = ACK_TIMEOUT).await;
    let client = substitute(&pointed_at(&snippet, &server), "\"<JWT>\"", &format!("\"{}\"", user_token("py-1")));
    std::fs::write(dir.path.join("client.py"), &client).expect("write client.py");
    let mut child = tokio::process::Command::new(venv.join("python"))
        .arg("client.py")
        .current_dir(&dir.path)
        .env("PYTHONUNBUFFERED", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("python runs");
    let mut lines = BufReader::new(child.stdout.take().expect("stdout")).lines();
    let connected = async {
        for _ in 0..100 {
            if !connection_ids(&server, "py-1").await.is_empty() {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    };
    if !connected.await {
        let _ = child.start_kill();
        let out = child.wait_with_output().await.expect("output");
        panic!("the Python client did not connect: {}", String::from_utf8_lossy(&out.stderr));
    }

    let id = publish(&server, json!({"user_id":"py-1","title":"Protobuf","body":"hello from the test"})).await;
    let line = tokio::time::timeout(Duration::from_secs(5), lines.next_line()).await;
    assert_eq!(line.ok().and_then(|l| l.ok()).flatten(), Some(format!("{id} Protobuf hello from the test")));
    // Acked: nothing more, in particular not the push again, and the connection stays open.
    let more = tokio::time::timeout(REDELIVERY_WINDOW, lines.next_line()).await;
    assert!(more.is_err(), "after the push the client printed {more:?}");
    assert!(child.try_wait().expect("try_wait").is_none(), "the client is still connected");
    child.start_kill().expect("kill");
}

/// A fresh directory under the system's temp dir, removed on drop.
#[tokio::test]
async fn reconnecting_snippet_recovers_what_it_missed_once_each() {
    let Some(chromium) = chromium_or_skip("reconnecting_snippet_recovers_what_it_missed_once_each") else {
        return;
    };
    let server = spawn_app(On::Embedded).await;
    let snippet = pointed_at(&fence(&doc(), "History and recovery", "js", "localStorage"), &server);
    let spec = json!({
        "url": server.url("/health"),
        "pages": [{"name": "recover", "snippet": snippet, "token": user_token("b-rec"), "chat_token": "", "sid": "", "user_id": "b-rec"}],
    });
    let dir = TempDir::new();
    let spec_path = dir.path.join("spec.json");
    std::fs::write(&spec_path, spec.to_string()).expect("write the spec");
    let mut browser = NodeScript::start("clients_doc.mjs", &[spec_path.to_str().expect("a UTF-8 path")], &chromium);
    let shown = |title: &'static str| move |e: &Value| e["page"] == "recover" && e["kind"] == "show" && e["title"] == title;
    browser.until("subscribed", frame_on("recover", true, |f| f["type"] == "subscribed")).await;
    publish(&server, json!({"event_name":"notification:test","title":"e1"})).await;
    publish(&server, json!({"user_id":"b-rec","title":"d1"})).await;
    browser.until("e1", shown("e1")).await;
    browser.until("d1", shown("d1")).await;

    // The server drops the connection; while the page waits to reconnect, three pushes miss it.
    let ids = connection_ids(&server, "b-rec").await;
    assert_eq!(ids.len(), 1);
    assert_eq!(http_call(&server, "DELETE", &format!("/@connections/{}", ids[0]), None, None).await.0, 204);
    publish(&server, json!({"event_name":"notification:test","title":"e2"})).await;
    publish(&server, json!({"user_id":"b-rec","title":"d2"})).await;
    publish(&server, json!({"event_name":"notification:test","title":"e3"})).await;
    browser.until("e3", shown("e3")).await;
    browser.until("d2", shown("d2")).await;
    publish(&server, json!({"event_name":"notification:test","title":"e4"})).await;
    browser.until("e4", shown("e4")).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let events = browser.finish().await;

    let page = Page::of(&events, "recover");
    let dump = page.dump();
    assert!(page.kind("pageerror").is_empty(), "the snippet threw:\n{dump}");
    let titles: Vec<&str> = page.kind("show").iter().map(|s| s["title"].as_str().unwrap_or_default()).collect();
    let events_shown: Vec<&str> = titles.iter().copied().filter(|t| t.starts_with('e')).collect();
    let direct_shown: Vec<&str> = titles.iter().copied().filter(|t| t.starts_with('d')).collect();
    assert_eq!(events_shown, ["e1", "e2", "e3", "e4"], "each once, in order:\n{dump}");
    assert_eq!(direct_shown, ["d1", "d2"], "each once, in order:\n{dump}");
    // It came back through recovery, not by luck: its place in both streams, and both recovered.
    let opened = page.kind("open");
    assert_eq!(opened.len(), 2, "{dump}");
    assert!(opened[1]["url"].as_str().unwrap_or_default().contains("since=1:"), "the user stream's place in the URL:\n{dump}");
    let sent = page.frames("sent", true);
    assert!(sent.iter().any(|f| f["type"] == "subscribe" && f["since"]["offset"] == 1), "the event stream's place:\n{dump}");
    let received = page.frames("frame", true);
    assert!(received.iter().any(|f| f["type"] == "recovered" && f["recovered"] == true), "{dump}");
    assert!(received.iter().any(|f| f["type"] == "subscribed" && f["recovered"] == true), "{dump}");
}

struct TempDir {
    path: PathBuf,
}

impl TempDir {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("herald-clients-doc-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir(&path).expect("a temp dir");
        Self { path }
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
