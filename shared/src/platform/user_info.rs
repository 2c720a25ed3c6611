//! What a profile lacks, from the auth service (CONTRACT §9, "Users"; seed 004's workers ask it
//! for a user's email and name by `user_id`): `HERALD_USER_INFO_URL`, e.g.
//! `https://auth.example/api/users/{user_id}`, is asked with the caller's service token (or,
//! for work with no caller at hand, such as a scheduled mailing's jobs, `HERALD_USER_INFO_TOKEN`)
//! for the email, phone and name a stored profile does not have. A profile's own values always
//! win.
//!
//! The answer is a JSON object; `email`, `phone` (or `phone_number`) and `name` (or `full_name`,
//! or `first_name` and `last_name`) are read, anything else ignored, and a value that is not a
//! valid email or E.164 number is left out (and said so in the reason if the job needs it).
//!
//! Answers are cached per user for [`CACHE_TTL`] (a mailing to many users asks once each; a
//! `404` is cached too: the user has no details there), at most [`CACHE_USERS`] users. A call
//! has [`TIMEOUT`]; a timeout, a refusal or a 5xx is a [`LookupError`] naming the URL's host and
//! what happened, which becomes the failed job's reason.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::config::ConfigError;
use crate::domain::{UserProfile, check_email, check_phone};

/// How long one user's answer is reused.
pub const CACHE_TTL: Duration = Duration::from_secs(300);
/// The most users whose answers are kept (the oldest half is dropped past it).
pub const CACHE_USERS: usize = 10_000;
/// One call's budget, connection included.
pub const TIMEOUT: Duration = Duration::from_secs(3);
/// The URL's placeholder for the user id.
const PLACEHOLDER: &str = "{user_id}";

/// The details the auth service has for a user.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserDetails {
    pub email: Option<String>,
    pub phone: Option<String>,
    pub name: Option<String>,
}

/// Why the details could not be had.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("the user info service ({host}) {what}")]
pub struct LookupError {
    host: String,
    what: String,
}

/// The variable with the auth service's URL, `{user_id}` in it.
pub const URL_VAR: &str = "HERALD_USER_INFO_URL";
/// The variable with the service token Herald presents when no caller's token is at hand (a
/// scheduled mailing's or a worker's job).
pub const TOKEN_VAR: &str = "HERALD_USER_INFO_TOKEN";

/// `HERALD_USER_INFO_URL`'s client.
pub struct UserInfo {
    url: String,
    host: String,
    client: reqwest::Client,
    /// `HERALD_USER_INFO_TOKEN`: used when a call has no caller's token.
    service_token: Option<String>,
    cache: Mutex<HashMap<String, (Instant, Option<UserDetails>)>>,
}

impl std::fmt::Debug for UserInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserInfo").field("url", &self.url).finish_non_exhaustive()
    }
}

impl UserInfo {
    /// `url` must be http(s) and hold `{user_id}`.
    pub fn new(url: &str) -> Result<Self, String> {
        if !url.contains(PLACEHOLDER) {
            return Err(format!("HERALD_USER_INFO_URL must contain {PLACEHOLDER}, e.g. https://auth.example/api/users/{PLACEHOLDER}"));
        }
        let parsed = reqwest::Url::parse(&url.replace(PLACEHOLDER, "x")).map_err(|e| format!("HERALD_USER_INFO_URL is not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
            return Err("HERALD_USER_INFO_URL must be an http(s) URL".into());
        }
        let client = reqwest::Client::builder()
            .timeout(TIMEOUT)
            .connect_timeout(TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Self {
            url: url.to_string(),
            host: parsed.host_str().unwrap_or_default().to_string(),
            client,
            service_token: None,
            cache: Mutex::default(),
        })
    }

    /// From `HERALD_USER_INFO_URL` and `HERALD_USER_INFO_TOKEN`; `None` without the URL.
    pub fn from_env(get: &impl Fn(&str) -> Option<String>) -> Result<Option<Self>, ConfigError> {
        let Some(url) = get(URL_VAR) else { return Ok(None) };
        let mut info = Self::new(url.trim()).map_err(|reason| ConfigError::Invalid { var: URL_VAR, reason })?;
        info.service_token = get(TOKEN_VAR);
        Ok(Some(info))
    }

    fn error(&self, what: impl Into<String>) -> LookupError {
        LookupError { host: self.host.clone(), what: what.into() }
    }

    /// `profile` with what it lacks filled in from the auth service, asked with `token` (the
    /// caller's service token). A profile lacking nothing is returned without a call.
    pub async fn complete(&self, mut profile: UserProfile, token: Option<&str>) -> Result<UserProfile, LookupError> {
        if profile.email.is_some() && profile.phone.is_some() && profile.name.is_some() {
            return Ok(profile);
        }
        if let Some(details) = self.details(&profile.user_id, token).await? {
            profile.email = profile.email.or(details.email);
            profile.phone = profile.phone.or(details.phone);
            profile.name = profile.name.or(details.name);
        }
        Ok(profile)
    }

    /// The auth service's details of `user_id` (`None`: it has none), cached.
    pub async fn details(&self, user_id: &str, token: Option<&str>) -> Result<Option<UserDetails>, LookupError> {
        if let Some(hit) = self.cached(user_id) {
            return Ok(hit);
        }
        // One path segment whatever the id holds (`/`, spaces, `?`).
        let segment = percent_encoding::utf8_percent_encode(user_id, percent_encoding::NON_ALPHANUMERIC).to_string();
        let mut request = self.client.get(self.url.replace(PLACEHOLDER, &segment)).header(reqwest::header::ACCEPT, "application/json");
        if let Some(t) = token.or(self.service_token.as_deref()) {
            request = request.bearer_auth(t);
        }
        let response = request.send().await.map_err(|e| {
            self.error(if e.is_timeout() {
                format!("did not answer within {} s", TIMEOUT.as_secs())
            } else {
                format!("could not be reached: {e}")
            })
        })?;
        let status = response.status();
        let details = match status.as_u16() {
            200 => {
                let body: Value =
                    response.json().await.map_err(|e| self.error(format!("answered 200 with a body that is not JSON: {e}")))?;
                let Value::Object(obj) = body else { return Err(self.error("answered 200 with JSON that is not an object")) };
                Some(read_details(&obj))
            }
            404 => None,
            401 | 403 => return Err(self.error(format!("refused the service token ({status})"))),
            _ => return Err(self.error(format!("answered {status}"))),
        };
        self.remember(user_id, details.clone());
        Ok(details)
    }

    fn cached(&self, user_id: &str) -> Option<Option<UserDetails>> {
        let cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        cache.get(user_id).filter(|(at, _)| at.elapsed() < CACHE_TTL).map(|(_, d)| d.clone())
    }

    fn remember(&self, user_id: &str, details: Option<UserDetails>) {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_USERS {
            let mut ages: Vec<Instant> = cache.values().map(|(at, _)| *at).collect();
            ages.sort_unstable();
            let cutoff = ages[ages.len() / 2];
            cache.retain(|_, (at, _)| *at > cutoff);
        }
        cache.insert(user_id.to_string(), (Instant::now(), details));
    }
}

/// The fields read from an answer, each only when it is a valid value.
fn read_details(obj: &serde_json::Map<String, Value>) -> UserDetails {
    let text = |k: &str| obj.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string);
    let name = text("name").or_else(|| text("full_name")).or_else(|| {
        let parts: Vec<String> = [text("first_name"), text("last_name")].into_iter().flatten().collect();
        (!parts.is_empty()).then(|| parts.join(" "))
    });
    UserDetails {
        email: text("email").filter(|e| check_email(e).is_ok()),
        phone: text("phone").or_else(|| text("phone_number")).filter(|p| check_phone(p).is_ok()),
        name,
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::extract::{Path, State};
    use axum::http::{HeaderMap, StatusCode};
    use axum::response::IntoResponse;
    use serde_json::json;

    use super::*;

    /// A stand-in auth service on a free port: what each user id answers, and the calls made.
    async fn auth_service(
        answers: Vec<(&'static str, StatusCode, Value)>,
        delay: Duration,
    ) -> (String, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>) {
        let calls = Arc::new(AtomicUsize::new(0));
        let tokens = Arc::new(Mutex::new(Vec::new()));
        let state = (Arc::new(answers), calls.clone(), tokens.clone(), delay);
        type St = (Arc<Vec<(&'static str, StatusCode, Value)>>, Arc<AtomicUsize>, Arc<Mutex<Vec<String>>>, Duration);
        async fn user(
            State((answers, calls, tokens, delay)): State<St>,
            Path(id): Path<String>,
            headers: HeaderMap,
        ) -> axum::response::Response {
            calls.fetch_add(1, Ordering::SeqCst);
            if let Some(a) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
                tokens.lock().unwrap().push(a.to_string());
            }
            tokio::time::sleep(delay).await;
            match answers.iter().find(|(u, _, _)| *u == id) {
                Some((_, status, body)) => (*status, axum::Json(body.clone())).into_response(),
                None => StatusCode::NOT_FOUND.into_response(),
            }
        }
        let app = axum::Router::new().route("/api/users/{id}", axum::routing::get(user)).with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{addr}/api/users/{{user_id}}"), calls, tokens)
    }

    fn profile(user_id: &str) -> UserProfile {
        UserProfile {
            user_id: user_id.into(),
            email: None,
            phone: None,
            name: None,
            locale: None,
            timezone: None,
            channels: Default::default(),
            quiet_hours: None,
            version: 1,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[tokio::test]
    async fn what_the_profile_lacks_comes_from_the_service_with_the_callers_token_and_is_cached() {
        let (url, calls, tokens) = auth_service(
            vec![(
                "42",
                StatusCode::OK,
                json!({"email": "ada@example.com", "first_name": "Ada", "last_name": "Lovelace", "phone": "+4915112345678", "role": "x"}),
            )],
            Duration::ZERO,
        )
        .await;
        let info = UserInfo::new(&url).unwrap();
        let mut stored = profile("42");
        stored.name = Some("Countess".into());
        let done = info.complete(stored.clone(), Some("svc-token")).await.unwrap();
        assert_eq!(done.email.as_deref(), Some("ada@example.com"));
        assert_eq!(done.phone.as_deref(), Some("+4915112345678"));
        assert_eq!(done.name.as_deref(), Some("Countess"), "the profile's own value wins");
        assert_eq!(tokens.lock().unwrap().as_slice(), ["Bearer svc-token"]);
        // Asked again: from the cache.
        info.complete(stored, Some("svc-token")).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 1);
        // A complete profile needs no call at all.
        let full = UserProfile {
            email: Some("a@example.com".into()),
            phone: Some("+4915100000000".into()),
            name: Some("A".into()),
            ..profile("7")
        };
        assert_eq!(info.complete(full.clone(), None).await.unwrap(), full);
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn invalid_values_are_left_out_and_an_unknown_user_keeps_its_profile() {
        let (url, calls, _) = auth_service(
            vec![("1", StatusCode::OK, json!({"email": "not an email", "phone_number": "12345", "full_name": "Bob"}))],
            Duration::ZERO,
        )
        .await;
        let info = UserInfo::new(&url).unwrap();
        let done = info.complete(profile("1"), None).await.unwrap();
        assert_eq!((done.email, done.phone, done.name.as_deref()), (None, None, Some("Bob")));
        // 404: no details there, not an error; cached like an answer.
        assert_eq!(info.complete(profile("nobody"), None).await.unwrap(), profile("nobody"));
        info.complete(profile("nobody"), None).await.unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn failures_name_the_service_and_what_happened_and_are_not_cached() {
        let (url, calls, _) = auth_service(
            vec![
                ("401", StatusCode::UNAUTHORIZED, json!({})),
                ("500", StatusCode::INTERNAL_SERVER_ERROR, json!({})),
                ("list", StatusCode::OK, json!([1])),
            ],
            Duration::ZERO,
        )
        .await;
        let info = UserInfo::new(&url).unwrap();
        let err = |id: &'static str| {
            let info = &info;
            async move { info.complete(profile(id), Some("t")).await.unwrap_err().to_string() }
        };
        assert_eq!(err("401").await, "the user info service (127.0.0.1) refused the service token (401 Unauthorized)");
        assert_eq!(err("500").await, "the user info service (127.0.0.1) answered 500 Internal Server Error");
        assert_eq!(err("list").await, "the user info service (127.0.0.1) answered 200 with JSON that is not an object");
        err("500").await;
        assert_eq!(calls.load(Ordering::SeqCst), 4, "a failure is asked again next time");
    }

    #[tokio::test]
    async fn a_slow_service_times_out_with_a_reason() {
        let (url, _, _) = auth_service(vec![("slow", StatusCode::OK, json!({}))], TIMEOUT + Duration::from_secs(2)).await;
        let info = UserInfo::new(&url).unwrap();
        let started = Instant::now();
        let err = info.complete(profile("slow"), None).await.unwrap_err();
        assert!(err.to_string().ends_with(&format!("did not answer within {} s", TIMEOUT.as_secs())), "{err}");
        assert!(started.elapsed() < TIMEOUT + Duration::from_secs(1), "{:?}", started.elapsed());
    }

    #[tokio::test]
    async fn without_a_callers_token_the_service_token_is_presented() {
        let (url, _, tokens) = auth_service(vec![("9", StatusCode::OK, json!({"name": "Nine"}))], Duration::ZERO).await;
        let env = |k: &str| match k {
            URL_VAR => Some(url.clone()),
            TOKEN_VAR => Some("herald-service".to_string()),
            _ => None,
        };
        let info = UserInfo::from_env(&env).unwrap().expect("configured");
        info.details("9", None).await.unwrap();
        assert_eq!(tokens.lock().unwrap().as_slice(), ["Bearer herald-service"]);
        assert!(UserInfo::from_env(&|_| None).unwrap().is_none());
        let err = UserInfo::from_env(&|k| (k == URL_VAR).then(|| "https://auth.example/users".to_string())).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { var: URL_VAR, .. }), "{err}");
    }

    #[test]
    fn the_url_is_checked() {
        assert!(UserInfo::new("https://auth.example/api/users").unwrap_err().contains("{user_id}"));
        assert!(UserInfo::new("ftp://auth.example/{user_id}").unwrap_err().contains("http(s)"));
        assert!(UserInfo::new("https://auth.example/api/users/{user_id}").is_ok());
    }

    #[tokio::test]
    async fn the_user_id_is_escaped_into_one_path_segment() {
        // The stand-in's route takes one segment and decodes it: an unescaped `/` would miss it.
        let (url, _, _) = auth_service(vec![("a b/c?d", StatusCode::OK, json!({"name": "Spaced"}))], Duration::ZERO).await;
        let info = UserInfo::new(&url).unwrap();
        let got = info.details("a b/c?d", None).await.unwrap();
        assert_eq!(got.and_then(|d| d.name).as_deref(), Some("Spaced"));
    }
}
