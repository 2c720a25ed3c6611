//! The handler over the in-memory store: routing, auth, bodies, versions.

use herald::auth::{AuthConfig, issue_hs256};
use herald::store::memory::MemoryStore;

use super::*;

const SECRET: &str = "unit-secret";

fn token(claims: Value) -> String {
    let mut claims = claims;
    claims["exp"] = json!(time_now() + 3600);
    issue_hs256(SECRET, &claims).unwrap()
}

fn time_now() -> i64 {
    herald::domain::epoch_secs(now())
}

fn admin() -> String {
    token(json!({"sub": "a", "role": "admin"}))
}

struct Fixture {
    verifier: Verifier,
    store: MemoryStore,
    recorded: herald::platform::schedule::Recorded,
}

impl Fixture {
    fn new() -> Self {
        Self { verifier: Verifier::new(&AuthConfig::hs256(SECRET)).unwrap(), store: MemoryStore::new(), recorded: Default::default() }
    }

    async fn call(&self, method: &str, path: &str, auth: Option<&str>, body: &str) -> (u16, Value) {
        let mut builder = http::Request::builder().method(method).uri(format!("https://api.example{path}"));
        if let Some(t) = auth {
            builder = builder.header("authorization", format!("Bearer {t}"));
        }
        let request: Request = builder.body(Body::from(body.to_string())).unwrap();
        let deps = AdminDeps {
            verifier: &self.verifier,
            templates: &self.store,
            users: &self.store,
            event_types: &self.store,
            notifications: &self.store,
            mailings: &self.store,
            queue: &self.recorded,
            scheduler: &self.recorded,
        };
        let response = handle(&deps, request).await.unwrap();
        let status = response.status().as_u16();
        let body = match response.body() {
            Body::Empty => Value::Null,
            b => serde_json::from_slice(b.as_ref()).unwrap(),
        };
        (status, body)
    }
}

#[tokio::test]
async fn templates_are_created_read_updated_and_deleted() {
    let f = Fixture::new();
    let a = admin();
    let (status, created) = f
        .call(
            "POST",
            "/templates",
            Some(&a),
            r#"{"name":"welcome","channel":"email","subject":"Hi {{ user.name }}","body":"{{ data.film }}"}"#,
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["version"], 1);
    assert_eq!(created["variables"], json!(["data.film", "user.name"]));
    let id = created["id"].as_str().unwrap().to_string();
    let (status, updated) = f.call("PUT", &format!("/templates/{id}"), Some(&a), r#"{"body":"new {{ data.x }}"}"#).await;
    assert_eq!((status, updated["version"].clone(), updated["subject"].clone()), (200, json!(2), json!("Hi {{ user.name }}")));
    // A stale version is a conflict and changes nothing.
    let (status, err) = f.call("PUT", &format!("/templates/{id}"), Some(&a), r#"{"version":1,"body":"lost"}"#).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("version_conflict")));
    let (_, got) = f.call("GET", &format!("/templates/{id}"), Some(&a), "").await;
    assert_eq!((got["version"].clone(), got["body"].clone()), (json!(2), json!("new {{ data.x }}")));
    // Behind a mapping key's prefix, the same routes.
    let (status, _) = f.call("GET", &format!("/api/templates/{id}"), Some(&a), "").await;
    assert_eq!(status, 200);
    let (status, body) = f.call("DELETE", &format!("/templates/{id}"), Some(&a), "").await;
    assert_eq!((status, body), (204, Value::Null));
    assert_eq!(f.call("GET", &format!("/templates/{id}"), Some(&a), "").await.0, 404);
    assert_eq!(f.call("DELETE", &format!("/templates/{id}"), Some(&a), "").await.0, 404);
    assert_eq!(f.call("PATCH", &format!("/templates/{id}"), Some(&a), "").await.0, 405);
}

#[tokio::test]
async fn only_admins_get_in() {
    let f = Fixture::new();
    let body = r#"{"name":"n","channel":"sms","body":"b"}"#;
    assert_eq!(f.call("POST", "/templates", None, body).await.0, 401);
    assert_eq!(f.call("POST", "/templates", Some("not-a-jwt"), body).await.0, 401);
    let (status, err) = f.call("POST", "/templates", Some(&token(json!({"sub": "u", "scope": "notify:publish"}))), body).await;
    assert_eq!((status, err["error"]["code"].as_str()), (403, Some("forbidden")));
    // The token comes before the body.
    assert_eq!(f.call("POST", "/templates", Some(&token(json!({"sub": "u"}))), "{").await.0, 403);
    assert_eq!(f.call("GET", "/templates", Some(&token(json!({"admin_id": 7}))), "").await.0, 200);
}

#[tokio::test]
async fn bad_bodies_are_refused_with_the_reason() {
    let f = Fixture::new();
    let a = admin();
    for (body, code, needle) in [
        ("{", "bad_request", "JSON"),
        ("[]", "bad_request", "object"),
        (r#"{"name":"n","channel":"email","body":"b","colour":"red"}"#, "bad_request", "\"colour\""),
        (r#"{"channel":"email","body":"b"}"#, "bad_request", "name"),
        (r#"{"name":"n","channel":"fax","body":"b"}"#, "bad_request", "fax"),
        (r#"{"name":"n","channel":"email"}"#, "bad_request", "body"),
        (r#"{"name":"n","channel":"email","body":7}"#, "bad_request", "body"),
        (r#"{"name":"n","channel":"email","body":"b","locale":"not a locale"}"#, "bad_request", "locale"),
        (r#"{"name":"n","channel":"email","body":"a\n{% if x %}"}"#, "template_syntax", "line 2"),
    ] {
        let (status, err) = f.call("POST", "/templates", Some(&a), body).await;
        assert_eq!((status, err["error"]["code"].as_str()), (400, Some(code)), "{body}: {err}");
        let message = err["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    assert!(f.store.list_templates().await.unwrap().is_empty());
}

#[tokio::test]
async fn one_template_per_name_channel_and_locale() {
    let f = Fixture::new();
    let a = admin();
    let create = |locale: &str| format!(r#"{{"name":"w","channel":"push","body":"b","locale":{locale}}}"#);
    assert_eq!(f.call("POST", "/templates", Some(&a), &create("null")).await.0, 201);
    let (_, ru) = f.call("POST", "/templates", Some(&a), &create("\"ru_ru\"")).await;
    assert_eq!(ru["locale"], "ru-RU");
    let (status, err) = f.call("POST", "/templates", Some(&a), &create("\"ru-RU\"")).await;
    assert_eq!((status, err["error"]["code"].as_str()), (409, Some("template_exists")));
    // Moving a template onto a taken slot is refused too.
    let (_, en) = f.call("POST", "/templates", Some(&a), &create("\"en\"")).await;
    let (status, _) = f.call("PUT", &format!("/templates/{}", en["id"].as_str().unwrap()), Some(&a), r#"{"locale":"ru-RU"}"#).await;
    assert_eq!(status, 409);
    let (status, moved) = f.call("PUT", &format!("/templates/{}", en["id"].as_str().unwrap()), Some(&a), r#"{"locale":"de"}"#).await;
    assert_eq!((status, moved["locale"].as_str()), (200, Some("de")));
    assert_eq!(f.call("POST", "/templates", Some(&a), &create("\"en\"")).await.0, 201, "the old slot is free");
    let (_, list) = f.call("GET", "/templates", Some(&a), "").await;
    let locales: Vec<Value> = list["items"].as_array().unwrap().iter().map(|t| t["locale"].clone()).collect();
    assert_eq!(locales, [Value::Null, json!("de"), json!("en"), json!("ru-RU")]);
}

#[tokio::test]
async fn previews_render_saved_and_unsaved_templates() {
    let f = Fixture::new();
    let a = admin();
    let (_, t) = f
        .call(
            "POST",
            "/templates",
            Some(&a),
            r#"{"name":"n","channel":"email","subject":"{{ user.name }}","body":"{{ data.film }}","html":"<i>{{ data.film }}</i>"}"#,
        )
        .await;
    let path = format!("/templates/{}/preview", t["id"].as_str().unwrap());
    let (status, r) = f.call("POST", &path, Some(&a), r#"{"data":{"film":"<Сталкер>"},"user":{"name":"Аня"}}"#).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r, json!({"subject": "Аня", "body": "<Сталкер>", "html": "<i>&lt;Сталкер&gt;</i>"}));
    let (status, err) = f.call("POST", &path, Some(&a), r#"{"data":{}}"#).await;
    assert_eq!((status, err["error"]["code"].as_str()), (400, Some("template_render")));
    assert!(err["error"]["message"].as_str().unwrap().contains("user.name"), "{err}");
    assert_eq!(f.call("POST", &path, Some(&a), r#"{"data":{},"extra":1}"#).await.0, 400);
    assert_eq!(f.call("POST", "/templates/nope/preview", Some(&a), r#"{"data":{}}"#).await.0, 404);
    let (status, r) = f
        .call("POST", "/templates/preview", Some(&a), r#"{"name":"x","channel":"sms","body":"Код {{ data.code }}","data":{"code":1234}}"#)
        .await;
    assert_eq!((status, r), (200, json!({"subject": null, "body": "Код 1234", "html": null})));
    assert_eq!(f.store.list_templates().await.unwrap().len(), 1, "an unsaved preview saves nothing");
}

#[tokio::test]
async fn user_profiles_merge_and_are_stored_canonical() {
    let f = Fixture::new();
    let a = admin();
    assert_eq!(f.call("GET", "/users/u1", Some(&a), "").await.0, 404);
    let (status, p) =
        f.call("PUT", "/users/u1", Some(&a), r#"{"timezone":"europe/berlin","locale":"DE_de","channels":{"sms":false}}"#).await;
    assert_eq!(status, 200, "{p}");
    assert_eq!((p["timezone"].as_str(), p["locale"].as_str()), (Some("Europe/Berlin"), Some("de-DE")));
    assert_eq!(p["channels"], json!({"email": true, "sms": false, "push": true}));
    let stored = f.store.get_user("u1").await.unwrap().unwrap();
    assert_eq!((stored.version, stored.channels.email, stored.channels.sms), (1, None, Some(false)));
    let (_, p) = f.call("PUT", "/users/u1", Some(&a), r#"{"email":"a@b.co","channels":{"sms":null}}"#).await;
    assert_eq!((p["email"].as_str(), p["timezone"].as_str()), (Some("a@b.co"), Some("Europe/Berlin")));
    let stored = f.store.get_user("u1").await.unwrap().unwrap();
    assert_eq!((stored.version, stored.channels.sms), (2, None));
    // "" clears like null.
    let (_, p) = f.call("PUT", "/users/u1", Some(&a), r#"{"email":"","timezone":null}"#).await;
    assert_eq!((p["email"].clone(), p["timezone"].clone()), (Value::Null, Value::Null));
    assert_eq!(f.call("DELETE", "/users/u1", Some(&a), "").await.0, 405);
    assert_eq!(f.call("GET", "/users", Some(&a), "").await.0, 404);
    assert_eq!(f.call("GET", "/users/u1/extra", Some(&a), "").await.0, 404);
    assert_eq!(f.call("GET", "/api/users/u1", Some(&a), "").await.0, 200);
}

#[tokio::test]
async fn event_types_need_existing_templates_per_channel() {
    let f = Fixture::new();
    let a = admin();
    let (status, _) = f.call("POST", "/templates", Some(&a), r#"{"name":"film","channel":"push","locale":"ru","body":"b"}"#).await;
    assert_eq!(status, 201);
    let (status, err) = f.call("PUT", "/event-types/film.added", Some(&a), r#"{"templates":{"email":"film"}}"#).await;
    assert_eq!(status, 400);
    assert!(err["error"]["message"].as_str().unwrap().contains("no email template named \"film\""), "{err}");
    // A template in any locale will do.
    let (status, t) = f.call("PUT", "/event-types/film.added", Some(&a), r#"{"templates":{"push":"film"},"critical":true}"#).await;
    assert_eq!((status, t["critical"].clone()), (200, json!(true)), "{t}");
    let stored = f.store.get_event_type("film.added").await.unwrap().unwrap();
    assert_eq!(stored.templates.get(&Channel::Push).map(String::as_str), Some("film"));
    let (_, list) = f.call("GET", "/event-types", Some(&a), "").await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(f.call("POST", "/event-types", Some(&a), "{}").await.0, 405);
    assert_eq!(f.call("GET", "/event-types/film.added", Some(&a), "").await.0, 405);
    assert_eq!(f.call("PUT", "/event-types/film.added", Some(&token(json!({"sub": "u"}))), "{").await.0, 403);
}

#[tokio::test]
async fn mailings_are_validated_scheduled_and_cancelled() {
    let f = Fixture::new();
    let a = admin();
    let (s, _) =
        f.call("POST", "/templates", Some(&a), r#"{"name":"promo","channel":"email","subject":"S","body":"Hi {{ user.name }}"}"#).await;
    assert_eq!(s, 201);
    let ok = json!({"name":"m","template":"promo","channels":["email"],"audience":{"users":["u1"]}});
    let with = |patch: Value| {
        let mut b = ok.clone();
        for (k, v) in patch.as_object().unwrap() {
            if v.is_null() {
                b.as_object_mut().unwrap().remove(k);
            } else {
                b[k] = v.clone();
            }
        }
        b.to_string()
    };
    for (patch, field) in [
        (json!({"recurrence":{"cron":"61 * * * *","timezone":"UTC"}}), "recurrence.cron"),
        (json!({"recurrence":{"cron":"0 9 * *","timezone":"UTC"}}), "recurrence.cron"),
        (json!({"recurrence":{"cron":"0 9 1 * MON","timezone":"UTC"}}), "recurrence.cron"),
        (json!({"recurrence":{"cron":"0 0 30 2 *","timezone":"UTC"}}), "recurrence.cron"),
        (json!({"recurrence":{"cron":"0 9 * * *","timezone":"Mars/Olympus"}}), "recurrence.timezone"),
        (json!({"recurrence":{"cron":"0 9 * * *"}}), "recurrence.timezone"),
        (json!({"audience":{"users":[]}}), "audience.users"),
        (json!({"audience":{"all":false}}), "audience.all"),
        (json!({"audience":{"everyone":true}}), "audience.everyone"),
        (json!({"audience":{"all":true,"event_name":"x"}}), "audience"),
        (json!({"audience":null}), "audience"),
        (json!({"template":"nope"}), "template"),
        (json!({"channels":["sms"]}), "template"),
        (json!({"channels":["fax"]}), "channels"),
        (json!({"send_at":"later"}), "send_at"),
        (json!({"name":null}), "name"),
    ] {
        let (s, body) = f.call("POST", "/mailings", Some(&a), &with(patch.clone())).await;
        assert_eq!(s, 400, "{patch}: {body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("\"{field}")), "{patch}: {message}");
    }
    assert!(f.recorded.calls().is_empty(), "nothing scheduled for a refused mailing");

    // Now: a fire on the platform queue. Later: a one-time schedule. A recurrence: a cron one.
    let (s, now_m) = f.call("POST", "/mailings", Some(&a), &ok.to_string()).await;
    assert_eq!((s, now_m["status"].as_str()), (201, Some("scheduled")), "{now_m}");
    let id = now_m["id"].as_str().unwrap().to_string();
    assert_eq!(f.recorded.calls(), [format!("send {{\"type\":\"fire\",\"mailing_id\":\"{id}\"}}")]);
    let at = rfc3339(now() + time::Duration::hours(2));
    let (_, later) = f.call("POST", "/mailings", Some(&a), &with(json!({"send_at": at}))).await;
    assert_eq!(later["next_runs"], json!([at]));
    let (_, every) =
        f.call("POST", "/mailings", Some(&a), &with(json!({"recurrence":{"cron":"0 9 * * mon","timezone":"europe/berlin"}}))).await;
    assert_eq!(every["recurrence"], json!({"cron":"0 9 * * mon","timezone":"Europe/Berlin"}));
    assert_eq!(every["next_runs"].as_array().unwrap().len(), 5);
    let calls = f.recorded.calls();
    assert_eq!(calls[1], format!("at fire-{}", later["id"].as_str().unwrap()));
    assert_eq!(calls[2], format!("cron cron-{}", every["id"].as_str().unwrap()));

    let (s, list) = f.call("GET", "/mailings?limit=2", Some(&a), "").await;
    assert_eq!((s, list["items"].as_array().unwrap().len(), list["cursor"].is_string()), (200, 2, true));
    let every_id = every["id"].as_str().unwrap();
    let (s, cancelled) = f.call("POST", &format!("/mailings/{every_id}/cancel"), Some(&a), "").await;
    assert_eq!((s, cancelled["status"].as_str(), cancelled["next_runs"].clone()), (200, Some("cancelled"), json!([])));
    assert!(f.recorded.calls().contains(&format!("cancel cron-{every_id}")));
    let (s, again) = f.call("POST", &format!("/mailings/{every_id}/cancel"), Some(&a), "").await;
    assert_eq!((s, again["error"]["code"].as_str()), (409, Some("nothing_to_cancel")));
    assert_eq!(f.call("GET", "/mailings/nope", Some(&a), "").await.0, 404);
    assert_eq!(f.call("POST", "/mailings/nope/cancel", Some(&a), "").await.0, 404);
    assert_eq!(f.call("DELETE", "/mailings/nope", Some(&a), "").await.0, 405);
}
