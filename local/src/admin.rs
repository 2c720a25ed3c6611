//! The admin page (CONTRACT §9, "Admin page"; its files are `herald-admin-page`'s) and
//! herald-local's one-click development sign-in.
//!
//! The sign-in is offered only while herald-local signs and checks tokens with its public
//! development secret, which `start` allows on loopback only: `POST /admin/dev-token` then
//! answers an admin token valid for 12 hours. It grants nothing new: anyone can sign such a token
//! with the published secret. With a real `HERALD_JWT_SECRET` (or keys), the page asks for a
//! token and `POST /admin/dev-token` is a `404`, as in the cloud.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use herald::auth::{AuthConfig, issue_hs256};
use herald_admin_page::DevSignIn;
use serde_json::{Value, json};

use crate::{App, DEV_SECRET, json_error};

/// How long a development sign-in lasts.
const DEV_TOKEN_SECS: i64 = 12 * 3600;

/// The claims every development admin token carries (the issuer and audience herald-local
/// checks, when configured); `None` when the sign-in is not offered.
pub(crate) fn dev_claims(auth: &AuthConfig) -> Option<Value> {
    (auth.hs256_secret() == Some(DEV_SECRET)).then(|| {
        let mut claims = json!({"sub": "herald-local-developer", "role": "admin"});
        if let Some(iss) = auth.issuer() {
            claims["iss"] = json!(iss);
        }
        if let Some(aud) = auth.audience() {
            claims["aud"] = json!(aud);
        }
        claims
    })
}

/// `GET /admin` and the page's files.
pub(crate) async fn page(State(app): State<Arc<App>>, method: Method, uri: Uri) -> Response {
    let dev = if app.dev_claims.is_some() { DevSignIn::Offered } else { DevSignIn::Off };
    match herald_admin_page::serve(&method, uri.path(), dev) {
        Some(r) => r.into_response(),
        None => json_error(StatusCode::NOT_FOUND, "not_found", format!("no route for {}", uri.path())),
    }
}

/// `POST /admin/dev-token`: `{"token": …}`, an admin token for the page.
pub(crate) async fn dev_token(State(app): State<Arc<App>>) -> Response {
    let Some(claims) = &app.dev_claims else {
        return json_error(
            StatusCode::NOT_FOUND,
            "not_found",
            "the development sign-in is off: herald-local is not using its development secret, so sign in with an admin token".into(),
        );
    };
    let now = herald::domain::now().unix_timestamp();
    let mut claims = claims.clone();
    claims["iat"] = json!(now);
    claims["exp"] = json!(now + DEV_TOKEN_SECS);
    match issue_hs256(DEV_SECRET, &claims) {
        Ok(token) => axum::Json(json!({ "token": token, "expires_in": DEV_TOKEN_SECS })).into_response(),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, "internal", format!("cannot sign a development token: {e}")),
    }
}
