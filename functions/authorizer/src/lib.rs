//! The `$connect` REQUEST authorizer (both WebSocket APIs): the token from `?token=` or from
//! `Sec-WebSocket-Protocol: access_token, <jwt>`, verified per CONTRACT §1 (and, with
//! `HERALD_AUTH_VERIFY_URL`, by the auth service). Allow carries the caller's identity in the
//! context; a missing or bad token is `Unauthorized` (API Gateway answers 401).

use herald::apigw::{self, AuthorizerRequest, AuthorizerResponse};
use herald::auth::{AuthError, Verifier};

#[derive(Debug, thiserror::Error)]
pub enum AuthorizerError {
    /// API Gateway turns exactly this message into a 401.
    #[error("Unauthorized")]
    Unauthorized(#[source] AuthError),
    /// The JWKS or the auth service could not be reached: a 500, and the client may retry.
    #[error("authorizer unavailable: {0}")]
    Unavailable(#[source] AuthError),
}

#[tracing::instrument(skip_all, fields(route = "$connect"))]
pub async fn handle(verifier: &Verifier, request: AuthorizerRequest) -> Result<AuthorizerResponse, AuthorizerError> {
    let Some(token) = apigw::connect_token(&request.query_string_parameters, &request.headers) else {
        tracing::info!(reason = "missing", "refused");
        return Err(AuthorizerError::Unauthorized(AuthError::Missing));
    };
    let identity = verifier.verify(token).await.map_err(|e| {
        tracing::info!(reason = e.code(), "refused");
        match e {
            AuthError::Unavailable(_) => AuthorizerError::Unavailable(e),
            other => AuthorizerError::Unauthorized(other),
        }
    })?;
    // A valid token that names nobody (a publisher's) passes here: each API's `$connect`
    // decides what it needs (CONTRACT §1: the notify API answers 403 to a token naming no user).
    let principal = identity.principal().unwrap_or_else(|_| "anonymous".to_string());
    let method_arn = request.method_arn.as_deref().unwrap_or("*");
    Ok(apigw::allow(&principal, method_arn, &identity))
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald::auth::{AuthConfig, issue_hs256};
    use serde_json::json;

    fn request(query_token: Option<&str>, protocol: Option<&str>) -> AuthorizerRequest {
        let mut r = AuthorizerRequest::default();
        r.method_arn = Some("arn:aws:execute-api:eu-west-1:1:abc/dev/$connect".into());
        if let Some(t) = query_token {
            r.query_string_parameters =
                [("token".to_string(), t.to_string())].into_iter().collect::<std::collections::HashMap<_, _>>().into();
        }
        if let Some(p) = protocol {
            r.headers.insert("sec-websocket-protocol", p.parse().unwrap());
        }
        r
    }

    fn verifier() -> Verifier {
        Verifier::new(&AuthConfig::hs256("s3cret")).unwrap()
    }

    fn token(claims: serde_json::Value) -> String {
        issue_hs256("s3cret", &claims).unwrap()
    }

    #[tokio::test]
    async fn a_query_token_is_allowed_with_the_user_in_the_context() {
        let t = token(json!({"sub": 42, "exp": 4_000_000_000u64}));
        let r = handle(&verifier(), request(Some(&t), None)).await.unwrap();
        assert!(apigw::is_allowed(&r));
        assert_eq!(r.principal_id.as_deref(), Some("42"));
        assert_eq!(r.context["user_id"], "42");
    }

    #[tokio::test]
    async fn a_subprotocol_token_is_allowed() {
        let t = token(json!({"request_id": "100", "exp": 4_000_000_000u64}));
        let r = handle(&verifier(), request(None, Some(&format!("access_token, {t}")))).await.unwrap();
        assert_eq!(r.context["request_id"], "100");
    }

    #[tokio::test]
    async fn no_token_or_a_bad_one_is_unauthorized() {
        let err = handle(&verifier(), request(None, None)).await.unwrap_err();
        assert_eq!(err.to_string(), "Unauthorized");
        let expired = token(json!({"sub": "1", "exp": 1_000_000_000u64}));
        let err = handle(&verifier(), request(Some(&expired), None)).await.unwrap_err();
        assert!(matches!(err, AuthorizerError::Unauthorized(AuthError::Expired)), "{err:?}");
    }
}

herald::lambda_diagnostic!(AuthorizerError);
