//! The platform's users and event-types APIs (CONTRACT §9) end to end: real HTTP against
//! herald-local, on the embedded backend and on DynamoDB Local, through the same
//! `platform-admin` handler the cloud runs.

use herald_local::Server;
use herald_tests::local::{On, admin_call, admin_token, error_code, error_message, http_call, spawn_app, token};
use herald_tests::on_both;
use serde_json::{Value, json};

async fn create_template(server: &Server, name: &str, channel: &str, locale: Option<&str>) {
    let (status, reply) =
        admin_call(server, "POST", "/templates", json!({"name": name, "channel": channel, "locale": locale, "body": "{{ data.x }}"})).await;
    assert_eq!(status, 201, "{reply}");
}

// --- users -------------------------------------------------------------------------------------

async fn profiles_are_put_and_got(on: On) {
    let server = spawn_app(on).await;
    let (status, reply) = admin_call(&server, "GET", "/users/1589", Value::Null).await;
    assert_eq!((status, error_code(&reply)), (404, "not_found"), "{reply}");

    let (status, put) = admin_call(
        &server,
        "PUT",
        "/users/1589",
        json!({"email":"ivan@example.ru","phone":"+79991234567","name":"Иван","locale":"ru_ru","timezone":"europe/moscow",
               "channels":{"email":true,"sms":false,"push":true},"quiet_hours":{"start":"23:00","end":"08:00"}}),
    )
    .await;
    assert_eq!(status, 200, "{put}");
    let expected = json!({"user_id":"1589","email":"ivan@example.ru","phone":"+79991234567","name":"Иван","locale":"ru-RU",
        "timezone":"Europe/Moscow","channels":{"email":true,"sms":false,"push":true},"quiet_hours":{"start":"23:00","end":"08:00"}});
    let shown = |v: &Value| {
        let mut v = v.clone();
        let obj = v.as_object_mut().expect("an object");
        assert!(obj.remove("created_at").is_some_and(|t| t.is_string()), "{put}");
        assert!(obj.remove("updated_at").is_some_and(|t| t.is_string()), "{put}");
        v
    };
    assert_eq!(shown(&put), expected);
    let (status, got) = admin_call(&server, "GET", "/users/1589", Value::Null).await;
    assert_eq!((status, shown(&got)), (200, expected.clone()));

    // PUT merges: what is left out is kept; null clears; a channel given is set, the others kept.
    let (status, merged) =
        admin_call(&server, "PUT", "/users/1589", json!({"name":"Иван Петров","phone":null,"channels":{"push":false}})).await;
    assert_eq!(status, 200, "{merged}");
    let (_, got) = admin_call(&server, "GET", "/users/1589", Value::Null).await;
    assert_eq!(got, merged);
    assert_eq!(
        (got["name"].as_str(), got["email"].as_str(), got["phone"].clone()),
        (Some("Иван Петров"), Some("ivan@example.ru"), Value::Null)
    );
    assert_eq!(got["channels"], json!({"email":true,"sms":false,"push":false}));
    assert_eq!(got["quiet_hours"], json!({"start":"23:00","end":"08:00"}));
    assert_eq!(got["created_at"], put["created_at"]);
    // Quiet hours and channels cleared: every channel allowed again.
    let (_, cleared) = admin_call(&server, "PUT", "/users/1589", json!({"quiet_hours":null,"channels":null})).await;
    assert_eq!((cleared["quiet_hours"].clone(), cleared["channels"].clone()), (Value::Null, json!({"email":true,"sms":true,"push":true})));

    // An empty body creates a bare profile; any characters in an id (percent-encoded in the path).
    let (status, bare) = admin_call(&server, "PUT", "/users/a%20b%2Fc", json!({})).await;
    assert_eq!((status, bare["user_id"].as_str(), bare["email"].clone()), (200, Some("a b/c"), Value::Null), "{bare}");
    assert_eq!(bare["channels"], json!({"email":true,"sms":true,"push":true}));
    let (status, got) = admin_call(&server, "GET", "/users/a%20b%2Fc", Value::Null).await;
    assert_eq!((status, got["user_id"].as_str()), (200, Some("a b/c")));
    // Another user is another profile.
    assert_eq!(admin_call(&server, "GET", "/users/1590", Value::Null).await.0, 404);
    server.stop().await;
}

async fn bad_profiles_name_their_field(on: On) {
    let server = spawn_app(on).await;
    let a = admin_token();
    for (body, needle) in [
        ("{", "JSON"),
        ("[]", "object"),
        (r#"{"emial":"a@b.co"}"#, "\"emial\""),
        (r#"{"user_id":"x"}"#, "\"user_id\""),
        (r#"{"email":"not-an-email"}"#, "\"email\""),
        (r#"{"email":"a@b"}"#, "\"email\""),
        (r#"{"email":42}"#, "\"email\""),
        (r#"{"phone":"89991234567"}"#, "\"phone\""),
        (r#"{"phone":"+7 999 123 45 67"}"#, "\"phone\""),
        (r#"{"phone":"+1234567"}"#, "\"phone\""),
        (r#"{"locale":"??"}"#, "\"locale\""),
        (r#"{"timezone":"Mars/Olympus"}"#, "\"timezone\""),
        (r#"{"timezone":"+03:00"}"#, "\"timezone\""),
        (r#"{"channels":{"telegram":true}}"#, "\"channels.telegram\""),
        (r#"{"channels":{"email":"yes"}}"#, "\"channels.email\""),
        (r#"{"channels":["email"]}"#, "\"channels\""),
        (r#"{"quiet_hours":{"start":"24:00","end":"07:00"}}"#, "\"quiet_hours.start\""),
        (r#"{"quiet_hours":{"start":"22:00","end":"7:00"}}"#, "\"quiet_hours.end\""),
        (r#"{"quiet_hours":{"start":"22:00"}}"#, "\"quiet_hours.end\""),
        (r#"{"quiet_hours":{"start":"22:00","end":"22:00"}}"#, "\"quiet_hours\""),
        (r#"{"quiet_hours":{"start":"22:00","end":"07:00","tz":"UTC"}}"#, "\"tz\""),
        (r#"{"quiet_hours":"22-07"}"#, "\"quiet_hours\""),
    ] {
        let (status, reply) = http_call(&server, "PUT", "/users/u1", Some(&a), Some(body)).await;
        assert_eq!((status, error_code(&reply)), (400, "bad_request"), "{body}: {reply}");
        assert!(error_message(&reply).contains(needle), "{body}: {reply}");
    }
    // Nothing was stored by any of them.
    assert_eq!(http_call(&server, "GET", "/users/u1", Some(&a), None).await.0, 404);
    // A bad field refuses the whole body: the good fields beside it are not saved either.
    let (status, _) = admin_call(&server, "PUT", "/users/u1", json!({"name":"N"})).await;
    assert_eq!(status, 200);
    let (status, _) = admin_call(&server, "PUT", "/users/u1", json!({"name":"M","phone":"bad"})).await;
    assert_eq!(status, 400);
    let (_, got) = admin_call(&server, "GET", "/users/u1", Value::Null).await;
    assert_eq!(got["name"].as_str(), Some("N"));
    // A user id over 256 characters is bad input.
    let (status, reply) = admin_call(&server, "GET", &format!("/users/{}", "x".repeat(257)), Value::Null).await;
    assert_eq!((status, error_code(&reply)), (400, "bad_request"), "{reply}");
    server.stop().await;
}

// --- event types -------------------------------------------------------------------------------

async fn event_types_are_put_and_listed(on: On) {
    let server = spawn_app(on).await;
    let (status, list) = admin_call(&server, "GET", "/event-types", Value::Null).await;
    assert_eq!((status, list), (200, json!({"items": []})));
    create_template(&server, "film", "email", Some("ru")).await;
    create_template(&server, "film", "push", None).await;
    create_template(&server, "welcome", "email", None).await;

    let (status, film) = admin_call(&server, "PUT", "/event-types/film.added", json!({"templates":{"email":"film","push":"film"}})).await;
    assert_eq!(status, 200, "{film}");
    assert_eq!(
        (film["name"].as_str(), film["templates"].clone(), film["critical"].clone()),
        (Some("film.added"), json!({"email":"film","push":"film"}), json!(false))
    );
    let (status, reg) =
        admin_call(&server, "PUT", "/event-types/user.registered", json!({"templates":{"email":"welcome"},"critical":true})).await;
    assert_eq!((status, reg["critical"].clone()), (200, json!(true)), "{reg}");

    let (status, list) = admin_call(&server, "GET", "/event-types", Value::Null).await;
    assert_eq!(status, 200);
    let items = list["items"].as_array().expect("items");
    assert_eq!(items.iter().map(|t| t["name"].as_str().unwrap_or_default()).collect::<Vec<_>>(), ["film.added", "user.registered"]);
    assert_eq!(items[0], film);
    assert_eq!(items[1], reg);

    // PUT replaces the definition: the push template is gone, critical is back to false.
    let (status, replaced) = admin_call(&server, "PUT", "/event-types/user.registered", json!({"templates":{"email":"welcome"}})).await;
    assert_eq!((status, replaced["critical"].clone()), (200, json!(false)));
    assert_eq!(replaced["created_at"], reg["created_at"]);
    let (status, replaced) = admin_call(&server, "PUT", "/event-types/film.added", json!({"templates":{"email":"film"}})).await;
    assert_eq!((status, replaced["templates"].clone()), (200, json!({"email":"film"})));
    let (_, list) = admin_call(&server, "GET", "/event-types", Value::Null).await;
    assert_eq!(list["items"][0]["templates"], json!({"email":"film"}));
    assert_eq!(list["items"][1]["critical"], json!(false));
    server.stop().await;
}

async fn bad_event_types_name_what_is_wrong(on: On) {
    let server = spawn_app(on).await;
    create_template(&server, "film", "email", None).await;
    let a = admin_token();
    for (body, needle) in [
        ("{", "JSON"),
        (r#"{}"#, "\"templates\""),
        (r#"{"templates":{}}"#, "\"templates\""),
        (r#"{"templates":"film"}"#, "\"templates\""),
        (r#"{"templates":{"email":"film"},"priority":1}"#, "\"priority\""),
        (r#"{"templates":{"telegram":"film"}}"#, "\"templates.telegram\""),
        (r#"{"templates":{"email":7}}"#, "\"templates.email\""),
        (r#"{"templates":{"email":""}}"#, "\"templates.email\""),
        (r#"{"templates":{"email":"film"},"critical":"yes"}"#, "\"critical\""),
        // The template must exist for that channel: "film" is an email template only.
        (r#"{"templates":{"email":"film","sms":"film"}}"#, "no sms template named \"film\""),
        (r#"{"templates":{"push":"nope"}}"#, "no push template named \"nope\""),
    ] {
        let (status, reply) = http_call(&server, "PUT", "/event-types/film.added", Some(&a), Some(body)).await;
        assert_eq!((status, error_code(&reply)), (400, "bad_request"), "{body}: {reply}");
        assert!(error_message(&reply).contains(needle), "{body}: {reply}");
    }
    let (status, reply) =
        admin_call(&server, "PUT", &format!("/event-types/{}", "e".repeat(257)), json!({"templates":{"email":"film"}})).await;
    assert_eq!((status, error_code(&reply)), (400, "bad_request"), "{reply}");
    assert!(error_message(&reply).contains("event type name"), "{reply}");
    // None of them was saved.
    let (_, list) = admin_call(&server, "GET", "/event-types", Value::Null).await;
    assert_eq!(list, json!({"items": []}));
    // A deleted template can no longer be named.
    let (_, t) = admin_call(&server, "POST", "/templates", json!({"name":"gone","channel":"sms","body":"b"})).await;
    let id = t["id"].as_str().expect("an id");
    assert_eq!(admin_call(&server, "DELETE", &format!("/templates/{id}"), Value::Null).await.0, 204);
    let (status, reply) = admin_call(&server, "PUT", "/event-types/x", json!({"templates":{"sms":"gone"}})).await;
    assert_eq!((status, error_code(&reply)), (400, "bad_request"), "{reply}");
    server.stop().await;
}

// --- auth --------------------------------------------------------------------------------------

async fn admins_only(on: On) {
    let server = spawn_app(on).await;
    create_template(&server, "film", "email", None).await;
    assert_eq!(admin_call(&server, "PUT", "/users/u1", json!({"name":"N"})).await.0, 200);
    let routes = [
        ("GET", "/users/u1", None),
        ("PUT", "/users/u1", Some(r#"{"name":"hacked"}"#)),
        ("GET", "/event-types", None),
        ("PUT", "/event-types/film.added", Some(r#"{"templates":{"email":"film"}}"#)),
    ];
    let expired = token(json!({"sub":"ops","role":"admin","exp": 1_000_000_000}));
    let wrong_key = herald::auth::issue_hs256("another-secret", &json!({"sub":"ops","role":"admin","exp": 4_000_000_000u64})).unwrap();
    for (method, path, body) in routes {
        for bad in [None, Some("not-a-jwt"), Some(expired.as_str()), Some(wrong_key.as_str())] {
            let (status, reply) = http_call(&server, method, path, bad, body).await;
            assert_eq!(status, 401, "{method} {path} with {bad:?}: {reply}");
            assert!(reply["error"]["code"].is_string(), "{reply}");
        }
        // Not even the user themself: profiles are the admins'.
        for not_admin in [token(json!({"sub":"u1"})), token(json!({"sub":"svc","scope":"notify:publish"}))] {
            let (status, reply) = http_call(&server, method, path, Some(&not_admin), body).await;
            assert_eq!((status, error_code(&reply)), (403, "forbidden"), "{method} {path}");
        }
    }
    // Nothing the refused calls tried happened.
    let (status, got) = http_call(&server, "GET", "/users/u1", Some(&token(json!({"admin_id": 42}))), None).await;
    assert_eq!((status, got["name"].as_str()), (200, Some("N")));
    let (_, list) = admin_call(&server, "GET", "/event-types", Value::Null).await;
    assert_eq!(list, json!({"items": []}));
    server.stop().await;
}

on_both!(
    profiles_are_put_and_got,
    bad_profiles_name_their_field,
    event_types_are_put_and_listed,
    bad_event_types_name_what_is_wrong,
    admins_only
);
