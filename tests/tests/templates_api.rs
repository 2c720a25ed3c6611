//! The platform's templates API (CONTRACT §9) end to end: real HTTP against herald-local, on the
//! embedded backend and on DynamoDB Local, through the same `platform-admin` handler the cloud runs.

use herald_local::Server;
use herald_tests::local::{On, admin_call, admin_token, error_code, error_message, http_call, spawn_app, token};
use herald_tests::on_both;
use serde_json::{Value, json};

/// Creates a template; asserts the 201 and returns it.
async fn create(server: &Server, body: Value) -> Value {
    let (status, reply) = admin_call(server, "POST", "/templates", body).await;
    assert_eq!(status, 201, "{reply}");
    reply
}

fn id_of(t: &Value) -> String {
    t["id"].as_str().expect("an id").to_string()
}

async fn crud_and_versions(on: On) {
    let server = spawn_app(on).await;
    let t = create(
        &server,
        json!({"name":"film.added","channel":"email","locale":"ru-RU","subject":"Новый фильм, {{ user.name }}","body":"Смотрите {{ data.film }}","html":"<b>{{ data.film }}</b>"}),
    )
    .await;
    assert_eq!(t["version"], 1);
    assert_eq!((t["name"].as_str(), t["channel"].as_str(), t["locale"].as_str()), (Some("film.added"), Some("email"), Some("ru-RU")));
    assert_eq!(t["variables"], json!(["data.film", "user.name"]));
    let id = id_of(&t);
    let path = format!("/templates/{id}");

    let (status, got) = admin_call(&server, "GET", &path, Value::Null).await;
    assert_eq!((status, got["body"].as_str(), got["version"].as_i64()), (200, Some("Смотрите {{ data.film }}"), Some(1)));

    // Each PUT is one version more; a field left out keeps its value.
    let (status, v2) = admin_call(&server, "PUT", &path, json!({"body":"Уже в кино: {{ data.film }}"})).await;
    assert_eq!((status, v2["version"].as_i64()), (200, Some(2)), "{v2}");
    assert_eq!(v2["subject"], t["subject"]);
    let (status, v3) = admin_call(&server, "PUT", &path, json!({"version":2,"subject":null})).await;
    assert_eq!((status, v3["version"].as_i64(), v3["subject"].clone()), (200, Some(3), Value::Null), "{v3}");
    // A save made to an old version is a conflict and changes nothing.
    let (status, conflict) = admin_call(&server, "PUT", &path, json!({"version":2,"body":"stale"})).await;
    assert_eq!((status, error_code(&conflict)), (409, "version_conflict"), "{conflict}");
    let (_, got) = admin_call(&server, "GET", &path, Value::Null).await;
    assert_eq!((got["version"].as_i64(), got["body"].as_str()), (Some(3), Some("Уже в кино: {{ data.film }}")));

    // Listed.
    let other = create(&server, json!({"name":"film.added","channel":"push","body":"{{ data.film }}"})).await;
    let (status, list) = admin_call(&server, "GET", "/templates", Value::Null).await;
    assert_eq!(status, 200);
    let mut listed: Vec<String> = list["items"].as_array().expect("items").iter().map(id_of).collect();
    listed.sort();
    let mut expected = vec![id.clone(), id_of(&other)];
    expected.sort();
    assert_eq!(listed, expected);

    // Deleted: 204, then 404 for every call on it.
    let (status, body) = admin_call(&server, "DELETE", &path, Value::Null).await;
    assert_eq!((status, body), (204, Value::Null));
    for (method, p, body) in [
        ("GET", path.clone(), Value::Null),
        ("PUT", path.clone(), json!({"body":"x"})),
        ("DELETE", path.clone(), Value::Null),
        ("POST", format!("{path}/preview"), json!({"data":{}})),
    ] {
        let (status, reply) = admin_call(&server, method, &p, body).await;
        assert_eq!((status, error_code(&reply)), (404, "not_found"), "{method} {p}: {reply}");
    }
    let (_, list) = admin_call(&server, "GET", "/templates", Value::Null).await;
    assert_eq!(list["items"].as_array().map(|a| a.iter().map(id_of).collect::<Vec<_>>()), Some(vec![id_of(&other)]));
    server.stop().await;
}

async fn one_template_per_name_channel_and_locale(on: On) {
    let server = spawn_app(on).await;
    create(&server, json!({"name":"welcome","channel":"sms","body":"a"})).await;
    create(&server, json!({"name":"welcome","channel":"sms","locale":"ru","body":"b"})).await;
    create(&server, json!({"name":"welcome","channel":"email","body":"c"})).await;
    for taken in [json!({"name":"welcome","channel":"sms","body":"d"}), json!({"name":"welcome","channel":"sms","locale":"RU","body":"e"})]
    {
        let (status, reply) = admin_call(&server, "POST", "/templates", taken.clone()).await;
        assert_eq!((status, error_code(&reply)), (409, "template_exists"), "{taken}: {reply}");
    }
    let (_, list) = admin_call(&server, "GET", "/templates", Value::Null).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(3));
    server.stop().await;
}

/// The locale rule, seen through a preview of each template a user would get.
async fn locale_fallback(on: On) {
    let server = spawn_app(on).await;
    for (locale, body) in [(None, "Hello"), (Some("ru"), "Привет"), (Some("ru-RU"), "Привет из России")] {
        create(&server, json!({"name":"greet","channel":"push","locale":locale,"body":body})).await;
    }
    let store = &server.app.handlers.store;
    let body_for = async |locale: Option<&str>| {
        store.template_for("greet", herald::domain::Channel::Push, locale).await.expect("store").map(|t| t.body)
    };
    assert_eq!(body_for(Some("ru-RU")).await.as_deref(), Some("Привет из России"));
    assert_eq!(body_for(Some("ru-UA")).await.as_deref(), Some("Привет"));
    assert_eq!(body_for(Some("ru")).await.as_deref(), Some("Привет"));
    assert_eq!(body_for(Some("en-US")).await.as_deref(), Some("Hello"));
    assert_eq!(body_for(None).await.as_deref(), Some("Hello"));
    server.stop().await;
}

async fn syntax_and_render_errors(on: On) {
    let server = spawn_app(on).await;
    let (status, reply) = admin_call(
        &server,
        "POST",
        "/templates",
        json!({"name":"n","channel":"email","body":"Здравствуйте,\n{{ user.name }}\n{% if data.x %}"}),
    )
    .await;
    assert_eq!((status, error_code(&reply)), (400, "template_syntax"), "{reply}");
    assert!(error_message(&reply).contains("line 3"), "{reply}");
    let (status, reply) =
        admin_call(&server, "POST", "/templates", json!({"name":"n","channel":"email","subject":"{{ }}","body":"ok"})).await;
    assert_eq!((status, error_code(&reply)), (400, "template_syntax"), "{reply}");
    assert!(error_message(&reply).contains("subject") && error_message(&reply).contains("line 1"), "{reply}");
    let (_, list) = admin_call(&server, "GET", "/templates", Value::Null).await;
    assert_eq!(list["items"], json!([]), "nothing invalid was saved");

    let t = create(&server, json!({"name":"n","channel":"email","body":"{{ data.film }}"})).await;
    let path = format!("/templates/{}", id_of(&t));
    let (status, reply) = admin_call(&server, "PUT", &path, json!({"body":"{% for x in data.items %}"})).await;
    assert_eq!((status, error_code(&reply)), (400, "template_syntax"), "{reply}");
    let (_, got) = admin_call(&server, "GET", &path, Value::Null).await;
    assert_eq!(got["version"], 1, "a refused PUT does not count");

    let (status, reply) = admin_call(&server, "POST", &format!("{path}/preview"), json!({"data":{"movie":"x"}})).await;
    assert_eq!((status, error_code(&reply)), (400, "template_render"), "{reply}");
    assert!(error_message(&reply).contains("data.film"), "{reply}");
    // A loop far too long for a message is refused, not left running.
    let (status, reply) = admin_call(
        &server,
        "POST",
        "/templates/preview",
        json!({"name":"n","channel":"sms","body":"{% for i in range(100000) %}{% for j in range(100000) %}.{% endfor %}{% endfor %}"}),
    )
    .await;
    assert_eq!((status, error_code(&reply)), (400, "template_render"), "{reply}");
    server.stop().await;
}

async fn previews(on: On) {
    let server = spawn_app(on).await;
    let t = create(
        &server,
        json!({"name":"film.added","channel":"email","subject":"{{ user.name }}, новинка","body":"{{ data.film }} & co","html":"<p>{{ data.film }}</p>"}),
    )
    .await;
    let (status, r) = admin_call(
        &server,
        "POST",
        &format!("/templates/{}/preview", id_of(&t)),
        json!({"data":{"film":"<Солярис>"},"user":{"name":"Аня"}}),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r, json!({"subject":"Аня, новинка","body":"<Солярис> & co","html":"<p>&lt;Солярис&gt;</p>"}));

    // An unsaved template: the create body plus data and user; nothing is saved.
    let (status, r) = admin_call(
        &server,
        "POST",
        "/templates/preview",
        json!({"name":"code","channel":"sms","body":"Ваш код: {{ data.code }}","data":{"code":4242}}),
    )
    .await;
    assert_eq!((status, r), (200, json!({"subject":null,"body":"Ваш код: 4242","html":null})));
    let (status, r) =
        admin_call(&server, "POST", "/templates/preview", json!({"name":"x","channel":"sms","body":"{{ user.phone }}","data":{}})).await;
    assert_eq!((status, error_code(&r)), (400, "template_render"));
    assert!(error_message(&r).contains("user.phone"), "{r}");
    let (status, r) = admin_call(&server, "POST", "/templates/preview", json!({"name":"x","channel":"sms","body":"{{ a","data":{}})).await;
    assert_eq!((status, error_code(&r)), (400, "template_syntax"));
    let (_, list) = admin_call(&server, "GET", "/templates", Value::Null).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    server.stop().await;
}

async fn bad_bodies(on: On) {
    let server = spawn_app(on).await;
    let a = admin_token();
    for (body, needle) in [
        ("{", "JSON"),
        (r#"{"name":"n","channel":"email","body":"b","priority":1}"#, "\"priority\""),
        (r#"{"name":"n","channel":"telegram","body":"b"}"#, "telegram"),
        (r#"{"name":"n","channel":"email"}"#, "body"),
        (r#"{"name":"","channel":"email","body":"b"}"#, "name"),
        (r#"{"name":"n","channel":"email","body":"b","locale":"??"}"#, "locale"),
    ] {
        let (status, reply) = http_call(&server, "POST", "/templates", Some(&a), Some(body)).await;
        assert_eq!((status, error_code(&reply)), (400, "bad_request"), "{body}: {reply}");
        assert!(error_message(&reply).contains(needle), "{body}: {reply}");
    }
    let t = create(&server, json!({"name":"n","channel":"email","body":"b"})).await;
    let (status, reply) = http_call(&server, "PUT", &format!("/templates/{}", id_of(&t)), Some(&a), Some(r#"{"bdy":"x"}"#)).await;
    assert_eq!((status, error_code(&reply)), (400, "bad_request"));
    assert!(error_message(&reply).contains("\"bdy\""), "{reply}");
    let (status, reply) = http_call(&server, "POST", &format!("/templates/{}/preview", id_of(&t)), Some(&a), Some(r#"{"data":[1]}"#)).await;
    assert_eq!((status, error_code(&reply)), (400, "bad_request"), "{reply}");
    server.stop().await;
}

async fn admins_only(on: On) {
    let server = spawn_app(on).await;
    let t = create(&server, json!({"name":"n","channel":"push","body":"b"})).await;
    let id = id_of(&t);
    let body = r#"{"name":"m","channel":"push","body":"b"}"#;
    let routes = [
        ("POST", "/templates".to_string(), Some(body)),
        ("GET", "/templates".to_string(), None),
        ("GET", format!("/templates/{id}"), None),
        ("PUT", format!("/templates/{id}"), Some(r#"{"body":"x"}"#)),
        ("DELETE", format!("/templates/{id}"), None),
        ("POST", format!("/templates/{id}/preview"), Some(r#"{"data":{}}"#)),
        ("POST", "/templates/preview".to_string(), Some(r#"{"name":"m","channel":"push","body":"b","data":{}}"#)),
    ];
    let expired = token(json!({"sub":"ops","role":"admin","exp": 1_000_000_000}));
    let wrong_key = herald::auth::issue_hs256("another-secret", &json!({"sub":"ops","role":"admin","exp": 4_000_000_000u64})).unwrap();
    for (method, path, body) in &routes {
        for bad in [None, Some("not-a-jwt"), Some(expired.as_str()), Some(wrong_key.as_str())] {
            let (status, reply) = http_call(&server, method, path, bad, *body).await;
            assert_eq!(status, 401, "{method} {path} with {bad:?}: {reply}");
            assert!(reply["error"]["code"].is_string(), "{reply}");
        }
        for not_admin in [token(json!({"sub":"u1"})), token(json!({"sub":"svc","scope":"notify:publish"}))] {
            let (status, reply) = http_call(&server, method, path, Some(&not_admin), *body).await;
            assert_eq!((status, error_code(&reply)), (403, "forbidden"), "{method} {path}");
        }
    }
    // `admin_id` is an admin too; and nothing the refused calls tried happened.
    let (status, got) = http_call(&server, "GET", &format!("/templates/{id}"), Some(&token(json!({"admin_id": 42}))), None).await;
    assert_eq!((status, got["version"].as_i64(), got["body"].as_str()), (200, Some(1), Some("b")));
    server.stop().await;
}

on_both!(
    crud_and_versions,
    one_template_per_name_channel_and_locale,
    locale_fallback,
    syntax_and_render_errors,
    previews,
    bad_bodies,
    admins_only
);
