//! The authorization matrix (issue 9, item 7): every caller × every route and HTTP endpoint of
//! herald-local, each cell the outcome that caller sees (CONTRACT §1, §3, §4, §5, §6, §9).
//!
//! herald-local runs as the SAM template deploys Herald: `HERALD_JWT_ISSUER` and
//! `HERALD_JWT_AUDIENCE` set ([`ISSUER`], [`AUDIENCE`]), so every good token carries that `iss`
//! and `aud`. The callers, the tables' columns ([`CALLERS`]):
//!
//! | column     | caller                                   | claims (besides `iss`, `aud`, `exp`)   | chat `sid`   |
//! |------------|------------------------------------------|----------------------------------------|--------------|
//! | `User`     | the user                                 | `sub: alice`                           | `alice`      |
//! | `Other`    | another user                             | `sub: mallory`                         | `mallory`    |
//! | `Req`      | the requester of application 100         | `request_id: 100`                      | `1`          |
//! | `OtherApp` | a requester of another application (200) | `request_id: 200`                      | `1` and `2`  |
//! | `SameApp`  | application 100's requester, another sid | `request_id: 100`                      | `9`          |
//! | `Admin`    | an operator                              | `admin_id: alice`                      | `2`          |
//! | `Role`     | an admin by role                         | `role: admin`                          | `3`          |
//! | `Pub`      | a publisher                              | `scope: notify:publish`                | `svc`        |
//! | `None`     | no token                                 | —                                      | `1`          |
//! | `Expired`  | an expired token                         | all of alice's, `exp` an hour ago      | `1`          |
//! | `WrongIss` | a token of another issuer (same secret)  | all of alice's, `iss` another          | `1`          |
//! | `WrongAud` | a token for another audience             | all of alice's, `aud` another          | `1`          |
//!
//! "All of alice's" is `sub: alice, request_id: 100, scope: notify:publish`: a token that would
//! pass every route but for its one flaw, so its refusal is that flaw's. Application 100's
//! conversation is the one under test: its user (and requester) is sid 1, its operator sid 2;
//! `OtherApp` connects as both of them and must get nothing of it.
//!
//! Each table is a grid, a row per route and a column per caller. Every cell runs: a caller with
//! no connection to an API tries the handshake again, since its refusal is what it sees of every
//! route of that API. Every mismatch is reported, naming its cell; nothing is printed on success.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;

use futures::SinkExt;
use herald::auth::{AuthConfig, PUBLISH_SCOPE};
use herald_local::Server;
use herald_tests::local::*;
use herald_tests::on_both;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

on_both!(notify_api, chat_api, http_endpoints);

const ISSUER: &str = "https://auth.herald.test";
const AUDIENCE: &str = "herald";
/// How long "nothing arrives" is watched, once what does arrive has arrived elsewhere.
const QUIET: Duration = Duration::from_millis(400);
/// How long an expected frame may take.
const WAIT: Duration = Duration::from_secs(5);

async fn server(on: On) -> Server {
    spawn_with(on, |o| {
        o.auth = AuthConfig::hs256(SECRET).with_issuer(ISSUER).with_audience(AUDIENCE);
        // No timed resend while the matrix runs: a resend seen is one a cell caused.
        o.delivery.ack_timeout = Duration::from_secs(300);
    })
    .await
}

// ---- callers --------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Caller {
    User,
    OtherUser,
    Requester,
    OtherApp,
    SameAppOtherSid,
    Admin,
    RoleAdmin,
    Publisher,
    NoToken,
    Expired,
    WrongIssuer,
    WrongAudience,
}

use Caller::*;

/// The tables' columns, in this order.
const CALLERS: [Caller; 12] =
    [User, OtherUser, Requester, OtherApp, SameAppOtherSid, Admin, RoleAdmin, Publisher, NoToken, Expired, WrongIssuer, WrongAudience];

impl Caller {
    fn claims(self) -> Option<Value> {
        let good = |claims: Value| {
            let mut c = claims;
            c["iss"] = json!(ISSUER);
            c["aud"] = json!(AUDIENCE);
            Some(c)
        };
        let flawed = |key: &str, value: Value| {
            let mut c = good(json!({"sub": "alice", "request_id": 100, "scope": PUBLISH_SCOPE}))?;
            c[key] = value;
            Some(c)
        };
        match self {
            User => good(json!({"sub": "alice"})),
            OtherUser => good(json!({"sub": "mallory"})),
            Requester | SameAppOtherSid => good(json!({"request_id": 100})),
            OtherApp => good(json!({"request_id": 200})),
            Admin => good(json!({"admin_id": "alice"})),
            RoleAdmin => good(json!({"role": "admin"})),
            Publisher => good(json!({"scope": PUBLISH_SCOPE})),
            NoToken => None,
            // An hour ago: well past the 30 s leeway.
            Expired => flawed("exp", json!(time::OffsetDateTime::now_utc().unix_timestamp() - 3600)),
            WrongIssuer => flawed("iss", json!("https://another-issuer.example")),
            WrongAudience => flawed("aud", json!("another-service")),
        }
    }

    /// Signed with herald-local's secret (the "wrong issuer" token too: only its `iss` is wrong).
    fn jwt(self) -> Option<String> {
        self.claims().map(token)
    }

    /// The chat `sid` it connects with (`OtherApp` also opens a second connection as sid 2).
    fn sid(self) -> &'static str {
        match self {
            User => "alice",
            OtherUser => "mallory",
            Requester | OtherApp => "1",
            SameAppOtherSid => "9",
            Admin => "2",
            RoleAdmin => "3",
            Publisher => "svc",
            NoToken | Expired | WrongIssuer | WrongAudience => "1",
        }
    }
}

// ---- outcomes and the report ----------------------------------------------------------------

/// What a caller sees.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    /// The WebSocket handshake is refused with this HTTP status; nothing is stored. For routes
    /// other than `$connect`: the caller has no connection, this refusal is all it gets.
    Refused(u16),
    /// Upgraded (101), with this subprotocol selected.
    Connected(Option<String>),
    /// Notify: this reply frame, exactly.
    Frame(Value),
    /// Notify: `{"type":"error","code":<this>,"message":<text>}`.
    Error(String),
    /// No reply.
    Silent,
    /// Notify: how many of the caller's connections got the push (each once).
    Received(usize),
    /// Notify: a NACK sent the push again at once (same id), and the ACK that followed was taken
    /// without a reply.
    ResentThenAcked,
    /// Chat: `{"ok":true,"result":…}` with this result (timestamps checked, then left out).
    Ok(Value),
    /// Chat: `{"ok":false,"error":<text>}`, and no result.
    ChatRefused,
    /// Chat: the ids of the `Event.ReceiveMessage` pushes its connections got.
    Pushed(Vec<i64>),
    /// HTTP: this status.
    Status(u16),
    /// `POST /notify`: `202 {"id":"<uuid>"}`.
    Accepted,
    /// HTTP: this status with `{"error":{"code":<this>,"message":<text>}}`.
    HttpError(u16, String),
    /// Anything else, described.
    Unexpected(String),
}

use Outcome::Refused;

const R401: Outcome = Refused(401);
const R403: Outcome = Refused(403);
const NO: Outcome = Outcome::ChatRefused;

fn subscribed(event_name: &str) -> Outcome {
    Outcome::Frame(json!({"type": "subscribed", "event_name": event_name}))
}

fn unsubscribed(event_name: &str) -> Outcome {
    Outcome::Frame(json!({"type": "unsubscribed", "event_name": event_name}))
}

fn error(code: &str) -> Outcome {
    Outcome::Error(code.into())
}

fn got(n: usize) -> Outcome {
    Outcome::Received(n)
}

fn proto() -> Outcome {
    Outcome::Connected(Some("access_token".into()))
}

fn status(s: u16) -> Outcome {
    Outcome::Status(s)
}

fn http_error(s: u16, code: &str) -> Outcome {
    Outcome::HttpError(s, code.into())
}

fn unexpected(what: impl fmt::Display) -> Outcome {
    Outcome::Unexpected(what.to_string())
}

/// The cells of one table, run and compared.
struct Report {
    table: &'static str,
    on: On,
    failures: Vec<String>,
}

impl Report {
    fn new(table: &'static str, on: On) -> Self {
        Self { table, on, failures: Vec::new() }
    }

    fn check(&mut self, caller: Caller, route: impl fmt::Debug, expected: &Outcome, got: Outcome) {
        if &got != expected {
            self.failures.push(format!("[{caller:?} × {route:?}] expected {expected:?}, got {got:?}"));
        }
    }

    fn finish(self) {
        assert!(
            self.failures.is_empty(),
            "{} cell(s) of the {} authorization matrix failed on {:?}:\n  {}",
            self.failures.len(),
            self.table,
            self.on,
            self.failures.join("\n  ")
        );
    }
}

/// Names the cell that was running if a helper panics (a timeout, a closed socket).
struct CellGuard(String);

impl Drop for CellGuard {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("authorization matrix: panicked in cell {}", self.0);
        }
    }
}

/// A row's cells in the order they run: the callers in `first`, then the rest as the columns go.
fn run_order<'a>(row: &'a [Outcome; 12], first: &[Caller]) -> Vec<(Caller, &'a Outcome)> {
    let cells = CALLERS.iter().copied().zip(row.iter());
    let (mut early, late): (Vec<_>, Vec<_>) = cells.partition(|(c, _)| first.contains(c));
    early.sort_by_key(|(c, _)| first.iter().position(|f| f == c));
    early.extend(late);
    early
}

// ---- WebSocket helpers (never panic: a surprise is an outcome) ------------------------------

/// Opens a WebSocket: the connection and the selected subprotocol, or the refusal.
async fn open(url: &str, protocols: Option<&str>) -> Result<(Ws, Option<String>), Outcome> {
    match connect(url, protocols).await {
        Ok((ws, response)) => {
            let selected = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).map(str::to_string);
            Ok((ws, selected))
        }
        Err(e) => Err(match refusal_status(&e) {
            Some(s) => Refused(s),
            None => unexpected(format!("the handshake failed: {e}")),
        }),
    }
}

/// The next frame as JSON (a non-JSON frame as `{"not_json": …}`); `None` on timeout or close.
async fn recv(ws: &mut Ws, wait: Duration) -> Option<Value> {
    match next_message(ws, wait).await? {
        Message::Text(t) => Some(serde_json::from_str(&t).unwrap_or_else(|_| json!({"not_json": t.as_str()}))),
        Message::Close(_) => None,
        other => Some(json!({"not_json": format!("{other:?}")})),
    }
}

async fn send(ws: &mut Ws, frame: &Value) -> Result<(), Outcome> {
    ws.send(Message::Text(frame.to_string().into())).await.map_err(|e| unexpected(format!("could not send: {e}")))
}

/// A notify frame and its reply, as an outcome.
async fn ask(ws: &mut Ws, frame: Value, wait: Duration) -> Outcome {
    if let Err(o) = send(ws, &frame).await {
        return o;
    }
    match recv(ws, wait).await {
        None => Outcome::Silent,
        Some(v) if v["type"] == "error" => match (v["code"].as_str(), v["message"].as_str()) {
            (Some(code), Some(_)) => error(code),
            _ => unexpected(format!("an error frame without code and message: {v}")),
        },
        Some(v) => Outcome::Frame(v),
    }
}

async fn post_notify(server: &Server, jwt: Option<&str>, body: &Value) -> (u16, Value) {
    let mut request = reqwest::Client::new().post(server.url("/notify")).header("content-type", "application/json").body(body.to_string());
    if let Some(t) = jwt {
        request = request.bearer_auth(t);
    }
    let response = request.send().await.expect("POST /notify");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

// ---- the notification WebSocket API (§3) and what reaches it (§4) ---------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Notify {
    /// `$connect` with `?token=<jwt>` (and `&ack=required`).
    ConnectQuery,
    /// `$connect` with `Sec-WebSocket-Protocol: access_token, <jwt>` (no token: `access_token` alone).
    ConnectSubprotocol,
    /// `subscribe` to the public event `news`.
    SubscribePublic,
    /// `subscribe` to `weather` naming `"user_id":"alice"` (seed 000 sends it).
    SubscribeNamingAlice,
    /// `subscribe` to alice's private event `user:alice:orders`.
    SubscribeAlicesPrivate,
    /// 100 subscriptions on the subprotocol connection, then the 101st.
    Subscribe101st,
    /// `POST /notify {"user_id":"alice",…}`: who receives the direct push.
    ReceiveDirectToAlice,
    /// `POST /notify {"event_name":"user:alice:orders",…}`: who receives it.
    ReceiveAlicesPrivate,
    /// `POST /notify {"event_name":"news",…}`: who receives it (every subscriber).
    ReceivePublic,
    /// `$default` ACK of the `user:alice:orders` push, delivered only to alice's `?token=`
    /// connection, from another connection.
    AckAnotherConnectionsPush,
    /// The same as a NACK (which would resend it).
    NackAnotherConnectionsPush,
    /// NACK then ACK of the `news` push on the connection it was delivered to.
    AckOwnPush,
    /// `unsubscribe` from `weather`.
    UnsubscribePublic,
    /// `unsubscribe` from `user:alice:orders`.
    UnsubscribeAlicesPrivate,
}

impl Notify {
    /// Callers whose cells run before the others of the row.
    fn first(self) -> &'static [Caller] {
        match self {
            // Mallory's unsubscribe must be seen to leave alice's subscription in place: before
            // alice drops it herself.
            Notify::UnsubscribeAlicesPrivate => &[OtherUser],
            _ => &[],
        }
    }
}

/// The notify table. Contract-undecided cells, chosen as a user of API Gateway would expect:
/// - `SubscribeNamingAlice` for mallory: `user_mismatch` (§3 says "an error", the code is herald's);
/// - `UnsubscribePublic` for mallory, who never held `weather`: `unsubscribed` (unsubscribing is
///   idempotent and about one's own connection; it still holds `news`, so it stays open);
/// - `UnsubscribeAlicesPrivate` for mallory: `unsubscribed`, a no-op on her own connection that
///   leaves alice's subscription alone (refusing it would tell nothing more);
/// - acks (ACK or NACK) of a push delivered to another connection: `unknown_push`, whoever sends
///   it (alice's other connection included): a delivery is per connection.
#[rustfmt::skip]
fn notify_table() -> Vec<(Notify, [Outcome; 12])> {
    use Notify::*;
    let (q, p) = (Outcome::Connected(None), proto());
    let (news, weather, orders) = ("news", "weather", "user:alice:orders");
    let resent = Outcome::ResentThenAcked;
    vec![
        //                         User                     Other                    Req   OtherApp SameApp Admin Role  Pub   None  Expired WrongIss WrongAud
        (ConnectQuery,             [q.clone(),              q,                       R403, R403, R403,  R403, R403, R403, R401, R401,  R401,   R401]),
        (ConnectSubprotocol,       [p.clone(),              p,                       R403, R403, R403,  R403, R403, R403, R401, R401,  R401,   R401]),
        (SubscribePublic,          [subscribed(news),       subscribed(news),        R403, R403, R403,  R403, R403, R403, R401, R401,  R401,   R401]),
        (SubscribeNamingAlice,     [subscribed(weather),    error("user_mismatch"),  R403, R403, R403,  R403, R403, R403, R401, R401,  R401,   R401]),
        (SubscribeAlicesPrivate,   [subscribed(orders),     error("forbidden"),      R403, R403, R403,  R403, R403, R403, R401, R401,  R401,   R401]),
        (Subscribe101st,           [error("too_many_subscriptions"), error("too_many_subscriptions"),
                                                                                     R403, R403, R403,  R403, R403, R403, R401, R401,  R401,   R401]),
        // Both of alice's connections; the admin token `{admin_id: "alice"}` cannot even connect.
        (ReceiveDirectToAlice,     [got(2),                 got(0),                  R403, R403, R403,  R403, R403, R403, R401, R401,  R401,   R401]),
        (ReceiveAlicesPrivate,     [got(1),                 got(0),                  R403, R403, R403,  R403, R403, R403, R401, R401,  R401,   R401]),
        (ReceivePublic,            [got(1),                 got(1),                  R403, R403, R403,  R403, R403, R403, R401, R401,  R401,   R401]),
        (AckAnotherConnectionsPush,  [error("unknown_push"), error("unknown_push"),  R403, R403, R403,  R403, R403, R403, R401, R401,  R401,   R401]),
        (NackAnotherConnectionsPush, [error("unknown_push"), error("unknown_push"),  R403, R403, R403,  R403, R403, R403, R401, R401,  R401,   R401]),
        (AckOwnPush,               [resent.clone(),         resent,                  R403, R403, R403,  R403, R403, R403, R401, R401,  R401,   R401]),
        (UnsubscribePublic,        [unsubscribed(weather),  unsubscribed(weather),   R403, R403, R403,  R403, R403, R403, R401, R401,  R401,   R401]),
        (UnsubscribeAlicesPrivate, [unsubscribed(orders),   unsubscribed(orders),    R403, R403, R403,  R403, R403, R403, R401, R401,  R401,   R401]),
    ]
}

struct NotifyWorld<'a> {
    server: &'a Server,
    /// The `?token=…&ack=required` connection of each caller that has one.
    query: HashMap<Caller, Ws>,
    /// The subprotocol connection of each caller that has one.
    subprotocol: HashMap<Caller, Ws>,
    /// The push each receive row published.
    pushes: HashMap<Notify, String>,
    /// Pushes some connection has received already.
    seen: HashSet<String>,
}

const ORDERS: &str = "user:alice:orders";

impl NotifyWorld<'_> {
    fn query_url(&self, caller: Caller) -> String {
        match caller.jwt() {
            Some(t) => self.server.ws_url(&format!("/api/v1/notify/ws?token={t}&ack=required")),
            None => self.server.ws_url("/api/v1/notify/ws?ack=required"),
        }
    }

    /// What a caller without a connection sees of any route: the handshake, again.
    async fn handshake(&self, caller: Caller) -> Outcome {
        match open(&self.query_url(caller), None).await {
            Ok((mut ws, _)) => {
                let _ = ws.close(None).await;
                unexpected("the handshake succeeded (and no earlier $connect cell kept a connection)")
            }
            Err(o) => o,
        }
    }

    async fn run(&mut self, caller: Caller, route: Notify) -> Outcome {
        match route {
            Notify::ConnectQuery => {
                return match open(&self.query_url(caller), None).await {
                    Ok((ws, selected)) => {
                        self.query.insert(caller, ws);
                        Outcome::Connected(selected)
                    }
                    Err(o) => o,
                };
            }
            Notify::ConnectSubprotocol => {
                let pair = match caller.jwt() {
                    Some(t) => format!("access_token, {t}"),
                    None => "access_token".to_string(),
                };
                return match open(&self.server.ws_url("/api/v1/notify/ws"), Some(&pair)).await {
                    Ok((ws, selected)) => {
                        self.subprotocol.insert(caller, ws);
                        Outcome::Connected(selected)
                    }
                    Err(o) => o,
                };
            }
            _ => {}
        }
        if !self.query.contains_key(&caller) {
            return self.handshake(caller).await;
        }
        match route {
            Notify::ConnectQuery | Notify::ConnectSubprotocol => unreachable!("handled above"),
            Notify::SubscribePublic => self.ask_query(caller, json!({"type":"subscribe","event_name":"news"})).await,
            Notify::SubscribeNamingAlice => {
                self.ask_query(caller, json!({"type":"subscribe","event_name":"weather","user_id":"alice"})).await
            }
            Notify::SubscribeAlicesPrivate => self.ask_query(caller, json!({"type":"subscribe","event_name":ORDERS})).await,
            Notify::Subscribe101st => {
                let Some(ws) = self.subprotocol.get_mut(&caller) else { return unexpected("no subprotocol connection") };
                for i in 0..100 {
                    let event_name = format!("cap-{i}");
                    let reply = ask(ws, json!({"type":"subscribe","event_name":event_name}), WAIT).await;
                    if reply != subscribed(&event_name) {
                        return unexpected(format!("subscription {} of 100: {reply:?}", i + 1));
                    }
                }
                ask(ws, json!({"type":"subscribe","event_name":"cap-100"}), WAIT).await
            }
            Notify::ReceiveDirectToAlice | Notify::ReceiveAlicesPrivate | Notify::ReceivePublic => {
                let received = self.received(caller, route).await;
                // Only alice's connections get her direct push: she has exactly the two she opened
                // (the refused tokens naming alice stored nothing).
                if route == Notify::ReceiveDirectToAlice && caller == User {
                    let stored = connection_ids(self.server, "alice").await.len();
                    if stored != 2 {
                        return unexpected(format!("{received:?}, but alice has {stored} stored connections, not 2"));
                    }
                }
                received
            }
            Notify::AckAnotherConnectionsPush | Notify::NackAnotherConnectionsPush => {
                let status = if route == Notify::AckAnotherConnectionsPush { "ack" } else { "nack" };
                let Some(push_id) = self.pushes.get(&Notify::ReceiveAlicesPrivate).cloned() else {
                    return unexpected("no user:alice:orders push was published");
                };
                let frame = json!({"type":"ack","push_id":push_id,"status":status});
                // Alice sends it on her other connection, the others on theirs.
                let ws = if caller == User { self.subprotocol.get_mut(&caller) } else { self.query.get_mut(&caller) };
                let Some(ws) = ws else { return unexpected("no connection to ack from") };
                let reply = ask(ws, frame, WAIT).await;
                match self.alices_delivery_untouched(&push_id).await {
                    Ok(()) => reply,
                    Err(harm) => unexpected(format!("{reply:?}, and {harm}")),
                }
            }
            Notify::AckOwnPush => {
                let Some(push_id) = self.pushes.get(&Notify::ReceivePublic).cloned() else {
                    return unexpected("no news push was published");
                };
                let ws = self.query.get_mut(&caller).expect("checked above");
                if let Err(o) = send(ws, &json!({"type":"ack","push_id":push_id,"status":"nack"})).await {
                    return o;
                }
                match recv(ws, WAIT).await {
                    Some(v) if v["type"] == "push" && v["id"] == push_id.as_str() => {}
                    other => return unexpected(format!("after the NACK: {other:?}")),
                }
                match ask(ws, json!({"type":"ack","push_id":push_id,"status":"ack"}), QUIET).await {
                    Outcome::Silent => Outcome::ResentThenAcked,
                    other => unexpected(format!("resent, then the ACK answered {other:?}")),
                }
            }
            Notify::UnsubscribePublic => self.ask_query(caller, json!({"type":"unsubscribe","event_name":"weather"})).await,
            Notify::UnsubscribeAlicesPrivate => {
                let reply = self.ask_query(caller, json!({"type":"unsubscribe","event_name":ORDERS})).await;
                let alice_holds_it = self.alice_subscribed(ORDERS).await;
                match (caller == User, alice_holds_it) {
                    (false, false) => unexpected(format!("{reply:?}, and alice's {ORDERS} subscription is gone")),
                    (true, true) => unexpected(format!("{reply:?}, but alice still holds {ORDERS}")),
                    _ => reply,
                }
            }
        }
    }

    async fn ask_query(&mut self, caller: Caller, frame: Value) -> Outcome {
        let ws = self.query.get_mut(&caller).expect("the caller has a connection");
        ask(ws, frame, WAIT).await
    }

    /// Publishes the row's push once (as the publisher), and counts the caller's connections
    /// that get it.
    async fn received(&mut self, caller: Caller, route: Notify) -> Outcome {
        if !self.pushes.contains_key(&route) {
            let body = match route {
                Notify::ReceiveDirectToAlice => json!({"user_id":"alice","message":{"to":"alice"}}),
                Notify::ReceiveAlicesPrivate => json!({"event_name":ORDERS,"message":{"order":1}}),
                _ => json!({"event_name":"news","title":"headline"}),
            };
            let (status, reply) = post_notify(self.server, Publisher.jwt().as_deref(), &body).await;
            let Some(id) = reply["id"].as_str().filter(|_| status == 202) else {
                return unexpected(format!("publishing {body} answered {status} {reply}"));
            };
            self.pushes.insert(route, id.to_string());
        }
        let id = self.pushes[&route].clone();
        let mut count = 0;
        for ws in [self.query.get_mut(&caller), self.subprotocol.get_mut(&caller)].into_iter().flatten() {
            // Silence is watched briefly only once the push has shown up somewhere.
            let wait = if self.seen.contains(&id) { QUIET } else { WAIT };
            match recv(ws, wait).await {
                None => {}
                Some(v) if v["type"] == "push" && v["id"] == id.as_str() => {
                    count += 1;
                    self.seen.insert(id.clone());
                }
                Some(v) => return unexpected(format!("another frame: {v}")),
            }
        }
        Outcome::Received(count)
    }

    /// The delivery of `push_id` to alice's `?token=` connection (the only one it went to) is
    /// still unacked and was sent once; the connection got nothing more.
    async fn alices_delivery_untouched(&mut self, push_id: &str) -> Result<(), String> {
        let store = &self.server.app.handlers.store;
        let mut found = None;
        for id in connection_ids(self.server, "alice").await {
            if let Some(d) = store.get_delivery(push_id, &id).await.expect("store") {
                found = Some(d);
            }
        }
        let Some(delivery) = found else { return Err("alice's delivery record is gone".into()) };
        if delivery.acked || delivery.attempts != 1 {
            return Err(format!("alice's delivery is now acked={} attempts={}", delivery.acked, delivery.attempts));
        }
        if let Some(ws) = self.query.get_mut(&User)
            && let Some(v) = recv(ws, QUIET).await
        {
            return Err(format!("alice's connection got {v}"));
        }
        Ok(())
    }

    async fn alice_subscribed(&self, event_name: &str) -> bool {
        let store = &self.server.app.handlers.store;
        for id in connection_ids(self.server, "alice").await {
            if store.connection_subscriptions(&id).await.expect("store").iter().any(|e| e == event_name) {
                return true;
            }
        }
        false
    }
}

async fn notify_api(on: On) {
    let server = server(on).await;
    let mut world =
        NotifyWorld { server: &server, query: HashMap::new(), subprotocol: HashMap::new(), pushes: HashMap::new(), seen: HashSet::new() };
    let mut report = Report::new("notify", on);
    for (route, row) in notify_table() {
        for (caller, expected) in run_order(&row, route.first()) {
            let _guard = CellGuard(format!("notify [{caller:?} × {route:?}]"));
            let got = world.run(caller, route).await;
            report.check(caller, route, expected, got);
        }
    }
    report.finish();
}

// ---- the chat WebSocket API (§5) ------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Chat {
    /// `/ws?sid=…` with `Sec-WebSocket-Protocol: access_token, <jwt>`.
    ConnectSubprotocol,
    /// `/ws?sid=…&token=<jwt>`: the chat API takes the token only as the subprotocol pair.
    ConnectQueryToken,
    /// `{user_id, application_id: 100}`: `user_id` 1 for admins, its own sid for requesters.
    AddConversation,
    /// `{user_id: 1}`: the conversation's user.
    GetConversationList,
    /// `{session_channel: "100", executor_id: <sid>}`.
    GetMessageList,
    /// `{session_channel: "100", sender_id: <sid>, content}`.
    SendMessage,
    /// The `Event.ReceiveMessage` pushes of channel 100 its connections got.
    ReceiveMessage,
    /// `{session_channel: "100", executor_id: <sid>, message_id}`: the requester reads the
    /// operator's 2, the operator the requester's 1, the role admin 2, the others 3 (unread).
    ReadMessage,
    /// `{executor_id: <sid>}`.
    GetUnreadInfo,
}

impl Chat {
    fn first(self) -> &'static [Caller] {
        match self {
            // Another application's requester tries before the conversation exists: it may not
            // create it either. Then its requester (sid 1) creates it, id 1.
            Chat::AddConversation => &[OtherApp, Requester],
            _ => &[],
        }
    }
}

fn conversation() -> Value {
    json!({"id": 1, "session_channel": "100", "application_id": 100})
}

fn message(id: i64, sender_id: i64, content: &str, status: i64) -> Value {
    json!({"id": id, "sender_id": sender_id, "content": content, "status": status})
}

fn unread(n: i64) -> Outcome {
    if n == 0 {
        Outcome::Ok(json!({"total": 0, "channels": []}))
    } else {
        Outcome::Ok(json!({"total": n, "channels": [{"session_channel": "100", "count": n}]}))
    }
}

/// The chat table. Contract-undecided cells, chosen as a user of API Gateway would expect:
/// - `$connect` of a requester with a sid that is not its conversation's user (`OtherApp` as
///   sid 1 and 2, `SameApp` as 9): accepted (101), since `$connect` cannot know which
///   conversation the sid will be used on; reach is enforced on every event and every push;
/// - `GetConversationList {user_id: 1}` by `OtherApp` as sid 1: `ok` with no conversations (the
///   list holds what the caller reaches), not a refusal; `SameApp` as sid 9 naming user 1: refused
///   (a requester names only itself);
/// - `GetUnreadInfo` of `OtherApp` as sid 1: `ok`, `total: 0` — not user 1's count of channel 100.
#[rustfmt::skip]
fn chat_table() -> Vec<(Chat, [Outcome; 12])> {
    use Chat::*;
    use Outcome::{Ok, Pushed};
    let conv = || Ok(conversation());
    let list = || Ok(json!({"conversations": [conversation()]}));
    let empty = || Ok(json!({"Messages": []}));
    vec![
        //                    User  Other Req                                              OtherApp                         SameApp Admin                                  Role                                   Pub   None  Expired WrongIss WrongAud
        (ConnectSubprotocol,  [R403, R403, proto(),                                        proto(),                         proto(), proto(),                              proto(),                               R403, R401, R401,  R401,   R401]),
        (ConnectQueryToken,   [R401, R401, R401,                                           R401,                            R401,  R401,                                   R401,                                  R401, R401, R401,  R401,   R401]),
        (AddConversation,     [R403, R403, conv(),                                         NO,                              NO,    conv(),                                 conv(),                                R403, R401, R401,  R401,   R401]),
        (GetConversationList, [R403, R403, list(),                                         Ok(json!({"conversations": []})), NO,   list(),                                 list(),                                R403, R401, R401,  R401,   R401]),
        (GetMessageList,      [R403, R403, empty(),                                        NO,                              NO,    empty(),                                empty(),                               R403, R401, R401,  R401,   R401]),
        (SendMessage,         [R403, R403, Ok(json!({"message": message(1, 1, "from Requester", 0)})),
                                                                                           NO,                              NO,    Ok(json!({"message": message(2, 2, "from Admin", 0)})),
                                                                                                                                                                   Ok(json!({"message": message(3, 3, "from RoleAdmin", 0)})),
                                                                                                                                                                                                          R403, R401, R401,  R401,   R401]),
        (ReceiveMessage,      [R403, R403, Pushed(vec![2, 3]),                             Pushed(vec![]),                  Pushed(vec![]), Pushed(vec![1, 3]),             Pushed(vec![1, 2]),                    R403, R401, R401,  R401,   R401]),
        (ReadMessage,         [R403, R403, Ok(Value::Null),                                NO,                              NO,    Ok(Value::Null),                        Ok(Value::Null),                       R403, R401, R401,  R401,   R401]),
        // Message 3 (the role admin's) is still unread: the refused reads marked nothing.
        (GetUnreadInfo,       [R403, R403, unread(1),                                      unread(0),                       unread(0), unread(1),                          unread(0),                             R403, R401, R401,  R401,   R401]),
    ]
}

/// A chat connection and the pushes that came in while it waited for replies.
struct ChatClient {
    ws: Ws,
    pushes: Vec<Value>,
}

struct ChatWorld<'a> {
    server: &'a Server,
    /// Each caller's connections; the first sends its frames (`OtherApp`: sid 1, then sid 2).
    conns: HashMap<Caller, Vec<ChatClient>>,
}

impl ChatWorld<'_> {
    async fn connect(&self, caller: Caller, sid: &str) -> Result<(ChatClient, Option<String>), Outcome> {
        let url = self.server.ws_url(&format!("/ws?sid={sid}"));
        let pair = caller.jwt().map(|t| format!("access_token, {t}"));
        let (ws, selected) = open(&url, pair.as_deref()).await?;
        Ok((ChatClient { ws, pushes: Vec::new() }, selected))
    }

    async fn run(&mut self, caller: Caller, route: Chat) -> Outcome {
        match route {
            Chat::ConnectSubprotocol => {
                let (client, selected) = match self.connect(caller, caller.sid()).await {
                    Ok(c) => c,
                    Err(o) => return o,
                };
                let mut clients = vec![client];
                if caller == OtherApp {
                    // Also as the operator's sid.
                    match self.connect(caller, "2").await {
                        Ok((c, _)) => clients.push(c),
                        Err(o) => return unexpected(format!("as sid 1 it connected, as sid 2: {o:?}")),
                    }
                }
                self.conns.insert(caller, clients);
                return Outcome::Connected(selected);
            }
            Chat::ConnectQueryToken => {
                let url = match caller.jwt() {
                    Some(t) => self.server.ws_url(&format!("/ws?sid={}&token={t}", caller.sid())),
                    None => self.server.ws_url(&format!("/ws?sid={}", caller.sid())),
                };
                return match open(&url, None).await {
                    Ok((mut ws, selected)) => {
                        let _ = ws.close(None).await;
                        Outcome::Connected(selected)
                    }
                    Err(o) => o,
                };
            }
            _ => {}
        }
        if !self.conns.contains_key(&caller) {
            return match self.connect(caller, caller.sid()).await {
                Ok((mut c, _)) => {
                    let _ = c.ws.close(None).await;
                    unexpected("the handshake succeeded (and no earlier $connect cell kept a connection)")
                }
                Err(o) => o,
            };
        }
        let sid = caller.sid();
        let sid_json = sid.parse::<i64>().map(Value::from).unwrap_or(json!(sid));
        let admin = matches!(caller, Admin | RoleAdmin);
        let (name, args) = match route {
            Chat::ConnectSubprotocol | Chat::ConnectQueryToken => unreachable!("handled above"),
            Chat::ReceiveMessage => return self.pushed(caller).await,
            Chat::AddConversation => {
                ("Event.AddConversation", json!({"user_id": if admin { json!(1) } else { sid_json }, "application_id": 100}))
            }
            Chat::GetConversationList => ("Event.GetConversationList", json!({"user_id": 1})),
            Chat::GetMessageList => ("Event.GetMessageList", json!({"session_channel": "100", "executor_id": sid_json})),
            Chat::SendMessage => {
                ("Event.SendMessage", json!({"session_channel": "100", "sender_id": sid_json, "content": format!("from {caller:?}")}))
            }
            Chat::ReadMessage => {
                let message_id = match caller {
                    Requester | RoleAdmin => 2,
                    Admin => 1,
                    _ => 3,
                };
                ("Event.ReadMessage", json!({"session_channel": "100", "executor_id": sid_json, "message_id": message_id}))
            }
            Chat::GetUnreadInfo => ("Event.GetUnreadInfo", json!({"executor_id": sid_json})),
        };
        let client = &mut self.conns.get_mut(&caller).expect("checked above")[0];
        // `args` as JSON text, as the seed sends it.
        let reply = match chat_call(client, json!({"name": name, "args": args.to_string()})).await {
            Ok(r) => r,
            Err(o) => return o,
        };
        match (reply["ok"].as_bool(), reply.get("result"), reply["error"].as_str()) {
            (Some(true), Some(result), None) => match project(result) {
                Ok(p) => Outcome::Ok(p),
                Err(e) => unexpected(format!("{e}: {reply}")),
            },
            (Some(false), None, Some(_)) => Outcome::ChatRefused,
            _ => unexpected(format!("a malformed reply: {reply}")),
        }
    }

    /// Every `Event.ReceiveMessage` the caller's connections got (each waits [`QUIET`] for more:
    /// the pushes left before the senders got their replies).
    async fn pushed(&mut self, caller: Caller) -> Outcome {
        let mut ids = Vec::new();
        for client in self.conns.get_mut(&caller).expect("checked by run") {
            while let Some(v) = recv(&mut client.ws, QUIET).await {
                client.pushes.push(v);
            }
            for push in client.pushes.drain(..) {
                let m = &push["result"]["message"];
                match (push["name"].as_str(), push["ok"].as_bool(), m["id"].as_i64()) {
                    (Some("Event.ReceiveMessage"), Some(true), Some(id)) if m["session_channel"] == "100" => ids.push(id),
                    _ => return unexpected(format!("another frame: {push}")),
                }
            }
        }
        ids.sort_unstable();
        Outcome::Pushed(ids)
    }
}

/// Sends a chat frame and returns the reply of its name; pushes that come first are kept.
async fn chat_call(client: &mut ChatClient, frame: Value) -> Result<Value, Outcome> {
    let name = frame["name"].clone();
    send(&mut client.ws, &frame).await?;
    loop {
        match recv(&mut client.ws, WAIT).await {
            None => return Err(Outcome::Silent),
            Some(v) if v["name"] == "Event.ReceiveMessage" => client.pushes.push(v),
            Some(v) if v["name"] == name => return Ok(v),
            Some(v) => return Err(unexpected(format!("another frame: {v}"))),
        }
    }
}

/// A chat result without its timestamps (checked to be RFC 3339): conversations as
/// `{id, session_channel, application_id}`, messages as `{id, sender_id, content, status}`.
fn project(result: &Value) -> Result<Value, String> {
    fn stamps(v: &Value) -> Result<(), String> {
        for key in ["create_at", "update_at"] {
            let text = v[key].as_str().ok_or(format!("no {key}"))?;
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(|e| format!("{key}: {e}"))?;
        }
        Ok(())
    }
    fn conversation(c: &Value) -> Result<Value, String> {
        stamps(c)?;
        Ok(json!({"id": c["id"], "session_channel": c["session_channel"], "application_id": c["application_id"]}))
    }
    fn message(m: &Value) -> Result<Value, String> {
        stamps(m)?;
        if m["session_channel"] != "100" {
            return Err("a message of another channel".into());
        }
        Ok(json!({"id": m["id"], "sender_id": m["sender_id"], "content": m["content"], "status": m["status"]}))
    }
    let each = |items: &Value, f: fn(&Value) -> Result<Value, String>| -> Result<Value, String> {
        items.as_array().ok_or("not a list")?.iter().map(f).collect::<Result<Vec<_>, _>>().map(Value::from)
    };
    Ok(match result {
        Value::Object(o) if o.contains_key("application_id") => conversation(result)?,
        Value::Object(o) if o.contains_key("conversations") => json!({"conversations": each(&o["conversations"], conversation)?}),
        Value::Object(o) if o.contains_key("Messages") => json!({"Messages": each(&o["Messages"], message)?}),
        Value::Object(o) if o.contains_key("message") => json!({"message": message(&o["message"])?}),
        other => other.clone(),
    })
}

async fn chat_api(on: On) {
    let server = server(on).await;
    let mut world = ChatWorld { server: &server, conns: HashMap::new() };
    let mut report = Report::new("chat", on);
    for (route, row) in chat_table() {
        for (caller, expected) in run_order(&row, route.first()) {
            let _guard = CellGuard(format!("chat [{caller:?} × {route:?}]"));
            let got = world.run(caller, route).await;
            report.check(caller, route, expected, got);
        }
    }
    report.finish();
}

// ---- HTTP endpoints: POST /notify (§4), the management API (§6), /health --------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Http {
    /// `POST /notify {"user_id":"bob","message":…}` with `Authorization: Bearer <jwt>`.
    PostNotify,
    /// `POST /notify {}`: the token is checked before the body.
    PostNotifyBadBody,
    /// `GET /health`: unauthenticated.
    Health,
    /// `GET /@connections/{id}` of alice's live connection, with the caller's bearer token.
    ManagementGet,
    /// `POST /@connections/{id}`: the frame reaches alice's connection.
    ManagementPost,
    /// `DELETE /@connections/{id}`: alice's connection is closed (1000).
    ManagementDelete,
    /// `GET /@connections/{id}` of an id that never existed: `410 GoneException`.
    ManagementUnknown,
    /// `POST /events`, a free-form event to bob (CONTRACT §9): publishers.
    PostEvent,
    /// `DELETE /events/{tx}` of a transaction nobody sent: publishers, then `404`.
    DeleteEvent,
    /// `GET /templates`: admins (the platform's management calls, CONTRACT §9).
    GetTemplates,
    /// `PUT /users/bob`: admins.
    PutUser,
    /// `GET /notifications?user_id=bob` (history): admins.
    GetHistory,
    /// `GET /mailings`: admins.
    GetMailings,
    /// `POST /mailings/next-runs` of a cron and a zone: admins.
    NextRuns,
    /// `GET /outbox`: admins; the embedded backend's only (`404` on the aws backend).
    Outbox,
    /// `GET /admin`: the admin page is static, open to anyone; its calls are the API's.
    AdminPage,
}

/// The HTTP table. The management API: in the cloud `https://{api}.execute-api…/@connections/{id}`
/// takes only SigV4-signed requests from principals with `execute-api:ManageConnections` (Herald's
/// functions); a client's JWT means nothing there, and a client gets 403 whatever it sends.
/// herald-local serves it unauthenticated on its (loopback by default) address, as the local
/// stand-in for that IAM-only endpoint: any bearer token, or none, is ignored, and each caller's
/// cell is what herald-local does (200 / 200 / 204 / 410), not what a client in the cloud sees.
#[rustfmt::skip]
fn http_table(on: On) -> Vec<(Http, [Outcome; 12])> {
    use Http::*;
    use Outcome::Accepted;
    let forbidden = || http_error(403, "forbidden");
    let (missing, expired, bad_claim) = (http_error(401, "token_missing"), http_error(401, "token_expired"), http_error(401, "token_invalid_claim"));
    // The platform's rows: the caller's kind decides (publishers and admins; admins), the flawed
    // tokens are refused for their flaw.
    let platform = |ok: Outcome, admins_only: bool| {
        let f = forbidden;
        let publisher = if admins_only { f() } else { ok.clone() };
        [f(), f(), f(), f(), f(), ok.clone(), ok, publisher, missing.clone(), expired.clone(), bad_claim.clone(), bad_claim.clone()]
    };
    let outbox = if on == On::Embedded { status(200) } else { http_error(404, "not_found") };
    vec![
        (PostEvent,         platform(status(202), false)),
        (DeleteEvent,       platform(http_error(404, "not_found"), false)),
        (GetTemplates,      platform(status(200), true)),
        (PutUser,           platform(status(200), true)),
        (GetHistory,        platform(status(200), true)),
        (GetMailings,       platform(status(200), true)),
        (NextRuns,          platform(status(200), true)),
        (Outbox,            platform(outbox, true)),
        (AdminPage,         [status(200), status(200), status(200), status(200), status(200), status(200), status(200), status(200),             status(200),     status(200),     status(200),       status(200)]),
        //                  User         Other        Req          OtherApp     SameApp      Admin       Role        Pub                          None             Expired          WrongIss           WrongAud
        (PostNotify,        [forbidden(), forbidden(), forbidden(), forbidden(), forbidden(), Accepted,   Accepted,   Accepted,                    missing.clone(), expired.clone(), bad_claim.clone(), bad_claim.clone()]),
        (PostNotifyBadBody, [forbidden(), forbidden(), forbidden(), forbidden(), forbidden(), http_error(400, "bad_request"), http_error(400, "bad_request"), http_error(400, "bad_request"),
                                                                                                                                                   missing,         expired,         bad_claim.clone(), bad_claim]),
        (Health,            [status(200), status(200), status(200), status(200), status(200), status(200), status(200), status(200),             status(200),     status(200),     status(200),       status(200)]),
        (ManagementGet,     [status(200), status(200), status(200), status(200), status(200), status(200), status(200), status(200),             status(200),     status(200),     status(200),       status(200)]),
        (ManagementPost,    [status(200), status(200), status(200), status(200), status(200), status(200), status(200), status(200),             status(200),     status(200),     status(200),       status(200)]),
        (ManagementDelete,  [status(204), status(204), status(204), status(204), status(204), status(204), status(204), status(204),             status(204),     status(204),     status(204),       status(204)]),
        (ManagementUnknown, [status(410), status(410), status(410), status(410), status(410), status(410), status(410), status(410),             status(410),     status(410),     status(410),       status(410)]),
    ]
}

struct HttpWorld<'a> {
    server: &'a Server,
    client: reqwest::Client,
    /// Alice's connection that GET and POST target.
    alice: Ws,
}

impl HttpWorld<'_> {
    fn request(&self, method: reqwest::Method, path: &str, caller: Caller) -> reqwest::RequestBuilder {
        let request = self.client.request(method, self.server.url(path));
        match caller.jwt() {
            Some(t) => request.bearer_auth(t),
            None => request,
        }
    }

    async fn run(&mut self, caller: Caller, route: Http, alice_id: &str) -> Outcome {
        use reqwest::Method;
        let response = match route {
            Http::PostNotify | Http::PostNotifyBadBody => {
                let body = if route == Http::PostNotify { json!({"user_id":"bob","message":{"hello":1}}) } else { json!({}) };
                let (status, reply) = post_notify(self.server, caller.jwt().as_deref(), &body).await;
                return match (status, reply["id"].as_str(), reply["error"]["code"].as_str(), reply["error"]["message"].as_str()) {
                    (202, Some(id), None, None) if uuid::Uuid::parse_str(id).is_ok() => Outcome::Accepted,
                    (s, None, Some(code), Some(_)) if s != 202 => http_error(s, code),
                    _ => unexpected(format!("{status} {reply}")),
                };
            }
            Http::Health => self.request(Method::GET, "/health", caller).send().await,
            Http::ManagementGet => self.request(Method::GET, &format!("/@connections/{alice_id}"), caller).send().await,
            Http::ManagementPost => {
                let frame = json!({"from": format!("{caller:?}")});
                let response =
                    self.request(Method::POST, &format!("/@connections/{alice_id}"), caller).body(frame.to_string()).send().await;
                let status = response.as_ref().map(|r| r.status().as_u16()).unwrap_or_default();
                if status == 200 && recv(&mut self.alice, WAIT).await != Some(frame.clone()) {
                    return unexpected(format!("200, but alice's connection did not get {frame}"));
                }
                response
            }
            Http::ManagementDelete => {
                let (mut ws, id) = alice_connection(self.server).await;
                let response = self.request(Method::DELETE, &format!("/@connections/{id}"), caller).send().await;
                let status = response.as_ref().map(|r| r.status().as_u16()).unwrap_or_default();
                if status == 204 {
                    let code = close_code(&mut ws).await;
                    if code != Some(1000) {
                        return unexpected(format!("204, but the connection's close code is {code:?}"));
                    }
                }
                response
            }
            Http::ManagementUnknown => self.request(Method::GET, "/@connections/AAAAAAAAAAAAAAA=", caller).send().await,
            Http::PostEvent => {
                let body = json!({"event":"promo","user_id":"bob","title":"T","body":"B"});
                self.request(Method::POST, "/events", caller).json(&body).send().await
            }
            Http::DeleteEvent => self.request(Method::DELETE, "/events/never-sent", caller).send().await,
            Http::GetTemplates => self.request(Method::GET, "/templates", caller).send().await,
            Http::PutUser => self.request(Method::PUT, "/users/bob", caller).json(&json!({"name":"Bob"})).send().await,
            Http::GetHistory => self.request(Method::GET, "/notifications?user_id=bob", caller).send().await,
            Http::GetMailings => self.request(Method::GET, "/mailings", caller).send().await,
            Http::NextRuns => {
                let body = json!({"recurrence":{"cron":"0 9 * * 1","timezone":"Europe/Berlin"}});
                self.request(Method::POST, "/mailings/next-runs", caller).json(&body).send().await
            }
            Http::Outbox => self.request(Method::GET, "/outbox", caller).send().await,
            Http::AdminPage => self.request(Method::GET, "/admin", caller).send().await,
        };
        let response = match response {
            Ok(r) => r,
            Err(e) => return unexpected(format!("the request failed: {e}")),
        };
        let status = response.status().as_u16();
        let kind = response.headers().get("x-amzn-errortype").and_then(|v| v.to_str().ok()).map(str::to_string);
        let body: Value = response.json().await.unwrap_or(Value::Null);
        // A refusal is its status and its error's code (CONTRACT §4's error body).
        if let (true, Some(code)) = (status >= 400 && route != Http::ManagementUnknown, body["error"]["code"].as_str()) {
            return http_error(status, code);
        }
        match (route, status) {
            (Http::ManagementGet, 200) if !body["connectedAt"].is_string() && !body["connectedAt"].is_number() => {
                unexpected(format!("200 without connectedAt: {body}"))
            }
            (Http::ManagementUnknown, 410) if kind.as_deref() != Some("GoneException") => {
                unexpected(format!("410 with x-amzn-errortype {kind:?}"))
            }
            _ => Outcome::Status(status),
        }
    }
}

async fn http_endpoints(on: On) {
    let server = server(on).await;
    let (alice, alice_id) = alice_connection(&server).await;
    let mut world = HttpWorld { server: &server, client: reqwest::Client::new(), alice };
    let mut report = Report::new("HTTP", on);
    for (route, row) in http_table(on) {
        for (caller, expected) in run_order(&row, &[]) {
            let _guard = CellGuard(format!("HTTP [{caller:?} × {route:?}]"));
            let got = world.run(caller, route, &alice_id).await;
            report.check(caller, route, expected, got);
        }
    }
    report.finish();
}

/// A fresh connection of alice's, with its id.
async fn alice_connection(server: &Server) -> (Ws, String) {
    let before = connection_ids(server, "alice").await;
    let url = server.ws_url(&format!("/api/v1/notify/ws?token={}", User.jwt().expect("a token")));
    let ws = connect(&url, None).await.expect("alice connects").0;
    let id = connection_ids(server, "alice").await.into_iter().find(|id| !before.contains(id)).expect("her new connection");
    (ws, id)
}
