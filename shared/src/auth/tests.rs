//! Tests of token verification. Key pairs in `testdata/` are test-only.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use super::*;

const SECRET: &str = "test-secret-that-is-long-enough-for-hs256";
const RSA_PRIVATE: &str = include_str!("testdata/rsa_private.pem");
const RSA_PUBLIC: &str = include_str!("testdata/rsa_public.pem");
const EC_PRIVATE: &str = include_str!("testdata/ec_private.pem");
const EC_PUBLIC: &str = include_str!("testdata/ec_public.pem");

fn now() -> u64 {
    jsonwebtoken::get_current_timestamp()
}

/// Claims valid for an hour, plus `extra`.
fn claims(extra: Value) -> Value {
    let mut claims = json!({ "exp": now() + 3600 });
    if let (Some(map), Value::Object(extra)) = (claims.as_object_mut(), extra) {
        map.extend(extra);
    }
    claims
}

fn hs_token(extra: Value) -> String {
    issue_hs256(SECRET, &claims(extra)).unwrap()
}

fn hs_verifier() -> Verifier {
    Verifier::new(&AuthConfig::hs256(SECRET)).unwrap()
}

fn sign(alg: Algorithm, kid: Option<&str>, key: &EncodingKey, claims: &Value) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, key).unwrap()
}

fn rs_token(kid: Option<&str>, claims: &Value) -> String {
    sign(Algorithm::RS256, kid, &EncodingKey::from_rsa_pem(RSA_PRIVATE.as_bytes()).unwrap(), claims)
}

fn es_token(kid: Option<&str>, claims: &Value) -> String {
    sign(Algorithm::ES256, kid, &EncodingKey::from_ec_pem(EC_PRIVATE.as_bytes()).unwrap(), claims)
}

fn lookup(vars: &[(&'static str, &str)]) -> impl Fn(&str) -> Option<String> {
    let vars: Vec<(&'static str, String)> = vars.iter().map(|(k, v)| (*k, v.to_string())).collect();
    move |name| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
}

fn config(vars: &[(&'static str, &str)]) -> Result<AuthConfig, ConfigError> {
    AuthConfig::from_lookup(&lookup(vars))
}

/// The RSA test key as a JWK.
fn rsa_jwk(kid: &str) -> Value {
    let key = DecodingKey::from_rsa_pem(RSA_PUBLIC.as_bytes()).unwrap();
    let der = key.try_get_as_bytes().unwrap();
    let (n, e) = (jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.key_utils.rsa_pub_components_from_public_key)(der).unwrap();
    json!({ "kty": "RSA", "kid": kid, "use": "sig", "alg": "RS256", "n": URL_SAFE_NO_PAD.encode(n), "e": URL_SAFE_NO_PAD.encode(e) })
}

/// The EC test key as a JWK.
fn ec_jwk(kid: &str) -> Value {
    let key = DecodingKey::from_ec_pem(EC_PUBLIC.as_bytes()).unwrap();
    let point = key.try_get_as_bytes().unwrap();
    assert_eq!(point.len(), 65);
    json!({ "kty": "EC", "kid": kid, "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..]) })
}

/// A one-route HTTP server on 127.0.0.1 answering every request with `status` and `body`.
struct TestServer {
    url: String,
    hits: Arc<AtomicUsize>,
    authorizations: Arc<Mutex<Vec<String>>>,
}

impl TestServer {
    fn start(status: u16, body: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/check", listener.local_addr().unwrap());
        let hits = Arc::new(AtomicUsize::new(0));
        let authorizations = Arc::new(Mutex::new(Vec::new()));
        let (counter, seen) = (Arc::clone(&hits), Arc::clone(&authorizations));
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                    if let Some((name, value)) = line.split_once(':')
                        && name.eq_ignore_ascii_case("authorization")
                    {
                        seen.lock().unwrap().push(value.trim().to_string());
                    }
                    line.clear();
                }
                counter.fetch_add(1, Ordering::SeqCst);
                let response = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes());
            }
        });
        Self { url, hits, authorizations }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

// ---- HS256 --------------------------------------------------------------------------------

#[tokio::test]
async fn hs256_token_names_the_user_from_sub() {
    let identity = hs_verifier().verify(&hs_token(json!({ "sub": "alice" }))).await.unwrap();
    assert_eq!(identity.user_id.as_deref(), Some("alice"));
    assert_eq!(identity.require_user(), Ok("alice"));
    assert!(!identity.admin);
    assert!(!identity.publisher);
}

#[tokio::test]
async fn numeric_user_id_becomes_its_decimal_string() {
    let identity = hs_verifier().verify(&hs_token(json!({ "user_id": 1589 }))).await.unwrap();
    assert_eq!(identity.require_user(), Ok("1589"));
    let identity = hs_verifier().verify(&hs_token(json!({ "sub": 1589 }))).await.unwrap();
    assert_eq!(identity.user_id.as_deref(), Some("1589"));
}

#[tokio::test]
async fn a_requester_is_not_a_notify_user() {
    let identity = hs_verifier().verify(&hs_token(json!({ "request_id": 42, "sub": "" }))).await.unwrap();
    assert_eq!(identity.request_id.as_deref(), Some("42"));
    assert_eq!(identity.user_id, None);
    assert_eq!(identity.require_user(), Err(AuthError::MissingClaim("sub")));
    assert_eq!(identity.principal().as_deref(), Ok("request:42"));
}

#[tokio::test]
async fn sub_wins_over_user_id_and_request_id() {
    let token = hs_token(json!({ "sub": "s", "user_id": "u", "request_id": "r" }));
    let identity = hs_verifier().verify(&token).await.unwrap();
    assert_eq!(identity.user_id.as_deref(), Some("s"));
    assert_eq!(identity.request_id.as_deref(), Some("r"));
}

#[tokio::test]
async fn bearer_prefix_is_accepted() {
    let token = format!("Bearer {}", hs_token(json!({ "sub": "alice" })));
    assert_eq!(hs_verifier().verify(&token).await.unwrap().require_user(), Ok("alice"));
}

#[tokio::test]
async fn expired_token_is_refused_with_401() {
    let token = issue_hs256(SECRET, &json!({ "sub": "alice", "exp": now() - 120 })).unwrap();
    let err = hs_verifier().verify(&token).await.unwrap_err();
    assert_eq!(err, AuthError::Expired);
    assert_eq!((err.status(), err.code()), (401, "token_expired"));
}

#[tokio::test]
async fn expiry_within_the_leeway_is_accepted() {
    let token = issue_hs256(SECRET, &json!({ "sub": "alice", "exp": now() - 5 })).unwrap();
    assert!(hs_verifier().verify(&token).await.is_ok());
    let strict = Verifier::new(&AuthConfig::hs256(SECRET).with_leeway(Duration::ZERO)).unwrap();
    assert_eq!(strict.verify(&token).await, Err(AuthError::Expired));
}

#[tokio::test]
async fn token_signed_with_another_secret_is_a_bad_signature() {
    let token = issue_hs256("another-secret", &claims(json!({ "sub": "alice" }))).unwrap();
    let err = hs_verifier().verify(&token).await.unwrap_err();
    assert_eq!(err, AuthError::BadSignature);
    assert_eq!(err.status(), 401);
}

#[tokio::test]
async fn alg_none_is_refused() {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let payload = URL_SAFE_NO_PAD.encode(claims(json!({ "sub": "mallory", "role": "admin" })).to_string());
    let token = format!("{header}.{payload}.");
    let err = hs_verifier().verify(&token).await.unwrap_err();
    assert_eq!(err, AuthError::WrongAlgorithm);
    assert_eq!((err.status(), err.code()), (401, "token_wrong_algorithm"));
}

#[tokio::test]
async fn hs256_token_signed_with_the_rsa_public_key_is_refused_by_rs256() {
    // The key-confusion attack: the public key (which anyone has) used as an HMAC secret.
    let verifier = Verifier::new(&config(&[(PUBLIC_KEY_VAR, RSA_PUBLIC)]).unwrap()).unwrap();
    let forged = sign(
        Algorithm::HS256,
        None,
        &EncodingKey::from_secret(RSA_PUBLIC.as_bytes()),
        &claims(json!({ "sub": "mallory", "role": "admin" })),
    );
    let err = verifier.verify(&forged).await.unwrap_err();
    assert_eq!(err, AuthError::WrongAlgorithm);
    assert_eq!(err.status(), 401);
}

#[tokio::test]
async fn token_without_exp_is_missing_a_claim() {
    let token = issue_hs256(SECRET, &json!({ "sub": "alice" })).unwrap();
    let err = hs_verifier().verify(&token).await.unwrap_err();
    assert_eq!(err, AuthError::MissingClaim("exp"));
    assert_eq!((err.status(), err.code()), (401, "token_missing_claim"));
}

#[tokio::test]
async fn missing_and_malformed_tokens() {
    let verifier = hs_verifier();
    assert_eq!(verifier.verify("").await, Err(AuthError::Missing));
    assert_eq!(verifier.verify("  ").await, Err(AuthError::Missing));
    assert_eq!(verifier.verify("not-a-jwt").await, Err(AuthError::Malformed));
    assert_eq!(verifier.verify("a.b.c").await, Err(AuthError::Malformed));
    assert_eq!(AuthError::Missing.status(), 401);
}

#[tokio::test]
async fn token_naming_nobody_verifies_but_has_no_user() {
    let identity = hs_verifier().verify(&hs_token(json!({}))).await.unwrap();
    assert_eq!(identity.user_id, None);
    let err = identity.require_user().unwrap_err();
    assert_eq!(err, AuthError::MissingClaim("sub"));
    assert_eq!(err.status(), 401);
}

#[tokio::test]
async fn ids_of_the_wrong_type_or_length_are_invalid_claims() {
    let verifier = hs_verifier();
    let err = verifier.verify(&hs_token(json!({ "user_id": { "id": 1 } }))).await.unwrap_err();
    assert_eq!(err, AuthError::InvalidClaim("user_id"));
    assert_eq!(err.status(), 401);
    // jsonwebtoken itself cannot read a token whose `sub` is an object: refused all the same.
    let err = verifier.verify(&hs_token(json!({ "sub": { "id": 1 } }))).await.unwrap_err();
    assert_eq!(err.status(), 401, "{err:?}");
    let long = "x".repeat(257);
    assert_eq!(verifier.verify(&hs_token(json!({ "user_id": long }))).await, Err(AuthError::InvalidClaim("user_id")));
    let longest = "é".repeat(256);
    let identity = verifier.verify(&hs_token(json!({ "sub": longest }))).await.unwrap();
    assert_eq!(identity.user_id.map(|u| u.chars().count()), Some(256));
    assert_eq!(verifier.verify(&hs_token(json!({ "sub": 1.5 }))).await, Err(AuthError::InvalidClaim("sub")));
}

#[tokio::test]
async fn admin_via_admin_id() {
    let identity = hs_verifier().verify(&hs_token(json!({ "admin_id": 7 }))).await.unwrap();
    assert!(identity.admin);
    assert!(identity.publisher);
    assert_eq!(identity.admin_id.as_deref(), Some("7"));
    assert_eq!(identity.user_id, None);
    // An operator's admin_id is not a notify user: `{admin_id: "42"}` never receives user 42's pushes.
    assert_eq!(identity.require_user(), Err(AuthError::MissingClaim("sub")));
    assert_eq!(identity.principal().as_deref(), Ok("admin:7"));
    assert_eq!(identity.require_publisher(), Ok(()));
}

#[tokio::test]
async fn admin_via_role() {
    let identity = hs_verifier().verify(&hs_token(json!({ "sub": "ops", "role": "admin" }))).await.unwrap();
    assert!(identity.admin);
    assert_eq!(identity.require_publisher(), Ok(()));
    let other = hs_verifier().verify(&hs_token(json!({ "sub": "u", "role": "user" }))).await.unwrap();
    assert!(!other.admin);
}

#[tokio::test]
async fn publisher_via_scope_string() {
    let token = hs_token(json!({ "sub": "svc", "scope": "openid notify:publish profile" }));
    let identity = hs_verifier().verify(&token).await.unwrap();
    assert!(identity.publisher);
    assert!(!identity.admin);
    assert_eq!(identity.require_publisher(), Ok(()));
}

#[tokio::test]
async fn publisher_via_scope_array() {
    let token = hs_token(json!({ "scope": ["read", "notify:publish"] }));
    let identity = hs_verifier().verify(&token).await.unwrap();
    assert!(identity.publisher);
    assert_eq!(identity.require_publisher(), Ok(()));
}

#[tokio::test]
async fn user_token_is_not_a_publisher() {
    let token = hs_token(json!({ "sub": "alice", "scope": "notify:publisher notify" }));
    let identity = hs_verifier().verify(&token).await.unwrap();
    let err = identity.require_publisher().unwrap_err();
    assert_eq!(err, AuthError::Forbidden);
    assert_eq!((err.status(), err.code()), (403, "forbidden"));
}

#[test]
fn identity_round_trips_through_json() {
    let identity = Identity::from_claims(json!({ "sub": 1589, "scope": "notify:publish" }).as_object().unwrap()).unwrap();
    let back: Identity = serde_json::from_value(serde_json::to_value(&identity).unwrap()).unwrap();
    assert_eq!(back, identity);
}

// ---- RS256 / ES256 with a PEM ---------------------------------------------------------------

#[tokio::test]
async fn rs256_token_verifies_with_the_public_pem() {
    let config = config(&[(PUBLIC_KEY_VAR, RSA_PUBLIC)]).unwrap();
    assert_eq!(config.algorithm(), "RS256");
    let verifier = Verifier::new(&config).unwrap();
    let identity = verifier.verify(&rs_token(None, &claims(json!({ "sub": "alice" })))).await.unwrap();
    assert_eq!(identity.require_user(), Ok("alice"));
    // The ES256 key pair's token is refused by the RS256 configuration.
    let err = verifier.verify(&es_token(None, &claims(json!({ "sub": "alice" })))).await.unwrap_err();
    assert_eq!(err, AuthError::WrongAlgorithm);
}

#[tokio::test]
async fn es256_token_verifies_with_the_public_pem_given_with_escaped_newlines() {
    let one_line = EC_PUBLIC.trim().replace('\n', "\\n");
    let config = config(&[(PUBLIC_KEY_VAR, &one_line)]).unwrap();
    assert_eq!(config.algorithm(), "ES256", "an EC key without HERALD_JWT_ALGORITHM means ES256");
    let verifier = Verifier::new(&config).unwrap();
    let identity = verifier.verify(&es_token(None, &claims(json!({ "sub": "bob" })))).await.unwrap();
    assert_eq!(identity.require_user(), Ok("bob"));
    // Tampering with the payload breaks the signature.
    let token = es_token(None, &claims(json!({ "sub": "bob" })));
    let mut parts: Vec<String> = token.split('.').map(str::to_owned).collect();
    parts[1] = URL_SAFE_NO_PAD.encode(claims(json!({ "sub": "mallory" })).to_string());
    assert_eq!(verifier.verify(&parts.join(".")).await, Err(AuthError::BadSignature));
}

// ---- JWKS -----------------------------------------------------------------------------------

fn jwks_verifier(server: &TestServer, algorithm: Option<&str>) -> Verifier {
    let mut vars = vec![(JWKS_URL_VAR, server.url.as_str())];
    if let Some(algorithm) = algorithm {
        vars.push((ALGORITHM_VAR, algorithm));
    }
    Verifier::new(&config(&vars).unwrap()).unwrap()
}

#[tokio::test]
async fn jwks_keys_are_fetched_once_and_cached_by_kid() {
    let set = json!({ "keys": [rsa_jwk("k1"), ec_jwk("k-ec")] });
    let server = TestServer::start(200, set.to_string());
    let verifier = jwks_verifier(&server, None);

    for user in ["alice", "bob", "carol"] {
        let identity = verifier.verify(&rs_token(Some("k1"), &claims(json!({ "sub": user })))).await.unwrap();
        assert_eq!(identity.require_user(), Ok(user));
    }
    assert_eq!(server.hits(), 1, "the key set is cached");

    // A clone shares the cache.
    verifier.clone().verify(&rs_token(Some("k1"), &claims(json!({ "sub": "dave" })))).await.unwrap();
    assert_eq!(server.hits(), 1);
}

#[tokio::test]
async fn jwks_unknown_kid_refetches_at_most_once_per_interval() {
    let server = TestServer::start(200, json!({ "keys": [rsa_jwk("k1")] }).to_string());
    let verifier = jwks_verifier(&server, None);
    verifier.verify(&rs_token(Some("k1"), &claims(json!({ "sub": "alice" })))).await.unwrap();
    assert_eq!(server.hits(), 1);

    let err = verifier.verify(&rs_token(Some("rotated"), &claims(json!({ "sub": "a" })))).await.unwrap_err();
    assert_eq!(err, AuthError::BadSignature);
    assert_eq!(err.status(), 401);
    assert_eq!(server.hits(), 2, "an unknown kid refetches the set");

    let err = verifier.verify(&rs_token(Some("another"), &claims(json!({ "sub": "a" })))).await.unwrap_err();
    assert_eq!(err, AuthError::BadSignature);
    assert_eq!(server.hits(), 2, "no second refetch within {REFETCH:?}", REFETCH = jwks::REFETCH_INTERVAL);
}

#[tokio::test]
async fn jwks_single_key_is_used_for_a_token_without_kid() {
    let server = TestServer::start(200, json!({ "keys": [ec_jwk("only")] }).to_string());
    let verifier = jwks_verifier(&server, Some("ES256"));
    let identity = verifier.verify(&es_token(None, &claims(json!({ "sub": "erin" })))).await.unwrap();
    assert_eq!(identity.require_user(), Ok("erin"));
}

#[tokio::test]
async fn jwks_keys_for_another_algorithm_are_not_used() {
    // The EC key is in the set under the token's kid, but the configuration pins RS256.
    let server = TestServer::start(200, json!({ "keys": [ec_jwk("k")] }).to_string());
    let verifier = jwks_verifier(&server, None);
    let err = verifier.verify(&es_token(Some("k"), &claims(json!({ "sub": "a" })))).await.unwrap_err();
    assert_eq!(err, AuthError::WrongAlgorithm);
    assert_eq!(server.hits(), 0, "the header is refused before any key is fetched");
    let err = verifier.verify(&rs_token(Some("k"), &claims(json!({ "sub": "a" })))).await.unwrap_err();
    assert_eq!(err, AuthError::BadSignature);
}

#[tokio::test]
async fn jwks_unreachable_is_unavailable_503() {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/jwks");
    let verifier = Verifier::new(&config(&[(JWKS_URL_VAR, &url)]).unwrap()).unwrap();
    let err = verifier.verify(&rs_token(Some("k1"), &claims(json!({ "sub": "a" })))).await.unwrap_err();
    assert!(matches!(err, AuthError::Unavailable(_)), "{err:?}");
    assert_eq!((err.status(), err.code()), (503, "auth_unavailable"));
}

#[tokio::test]
async fn jwks_server_error_is_unavailable() {
    let server = TestServer::start(500, "{}".into());
    let verifier = jwks_verifier(&server, None);
    let err = verifier.verify(&rs_token(Some("k1"), &claims(json!({ "sub": "a" })))).await.unwrap_err();
    assert!(matches!(err, AuthError::Unavailable(_)), "{err:?}");
    assert_eq!(err.status(), 503);
}

// ---- Remote check ---------------------------------------------------------------------------

#[tokio::test]
async fn verify_url_2xx_accepts_and_receives_the_bearer_token() {
    let server = TestServer::start(204, String::new());
    let verifier = Verifier::new(&AuthConfig::hs256(SECRET).with_verify_url(&server.url)).unwrap();
    let token = hs_token(json!({ "sub": "alice" }));
    let identity = verifier.verify(&token).await.unwrap();
    assert_eq!(identity.require_user(), Ok("alice"));
    assert_eq!(server.hits(), 1);
    assert_eq!(server.authorizations.lock().unwrap().as_slice(), [format!("Bearer {token}")]);
}

#[tokio::test]
async fn verify_url_401_is_rejected() {
    let server = TestServer::start(401, "{}".into());
    let verifier = Verifier::new(&AuthConfig::hs256(SECRET).with_verify_url(&server.url)).unwrap();
    let err = verifier.verify(&hs_token(json!({ "sub": "alice" }))).await.unwrap_err();
    assert_eq!(err, AuthError::Rejected);
    assert_eq!((err.status(), err.code()), (401, "token_rejected"));
}

#[tokio::test]
async fn verify_url_other_status_is_unavailable() {
    let server = TestServer::start(502, "{}".into());
    let verifier = Verifier::new(&AuthConfig::hs256(SECRET).with_verify_url(&server.url)).unwrap();
    let err = verifier.verify(&hs_token(json!({ "sub": "alice" }))).await.unwrap_err();
    assert!(matches!(err, AuthError::Unavailable(_)), "{err:?}");
    assert_eq!(err.status(), 503);
}

#[tokio::test]
async fn verify_url_is_not_asked_about_a_locally_invalid_token() {
    let server = TestServer::start(200, String::new());
    let verifier = Verifier::new(&AuthConfig::hs256(SECRET).with_verify_url(&server.url)).unwrap();
    let token = issue_hs256("wrong", &claims(json!({ "sub": "a" }))).unwrap();
    assert_eq!(verifier.verify(&token).await, Err(AuthError::BadSignature));
    assert_eq!(server.hits(), 0);
}

// ---- Configuration --------------------------------------------------------------------------

#[test]
fn config_without_any_key_is_missing_the_secret() {
    assert_eq!(config(&[]).unwrap_err(), ConfigError::Missing("HERALD_JWT_SECRET"));
    assert_eq!(config(&[(SECRET_VAR, "")]).unwrap_err(), ConfigError::Missing("HERALD_JWT_SECRET"));
}

#[test]
fn config_with_several_keys_is_invalid_and_names_them() {
    let err = config(&[(SECRET_VAR, "s"), (JWKS_URL_VAR, "https://example.com/jwks")]).unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { var: "HERALD_JWKS_URL", .. }), "{err:?}");
    let message = err.to_string();
    assert!(message.contains("HERALD_JWT_SECRET") && message.contains("HERALD_JWKS_URL"), "{message}");
}

#[test]
fn config_defaults_to_hs256_with_a_secret() {
    let config = config(&[(SECRET_VAR, SECRET)]).unwrap();
    assert_eq!(config.algorithm(), "HS256");
    assert_eq!(config.hs256_secret(), Some(SECRET));
    assert_eq!(config.verify_url(), None);
}

#[test]
fn config_bad_pem_names_the_public_key_variable() {
    for pem in ["not a pem", "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----", RSA_PRIVATE] {
        let err = config(&[(PUBLIC_KEY_VAR, pem)]).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { var: "HERALD_JWT_PUBLIC_KEY", .. }), "{err:?}");
    }
    // An RSA key declared as ES256.
    let err = config(&[(PUBLIC_KEY_VAR, RSA_PUBLIC), (ALGORITHM_VAR, "ES256")]).unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { var: "HERALD_JWT_PUBLIC_KEY", .. }), "{err:?}");
}

#[test]
fn config_refuses_algorithms_that_do_not_fit_the_key() {
    for vars in [
        &[(PUBLIC_KEY_VAR, RSA_PUBLIC), (ALGORITHM_VAR, "HS256")][..],
        &[(SECRET_VAR, SECRET), (ALGORITHM_VAR, "RS256")],
        &[(JWKS_URL_VAR, "https://example.com/jwks"), (ALGORITHM_VAR, "hs256")],
        &[(SECRET_VAR, SECRET), (ALGORITHM_VAR, "none")],
    ] {
        let err = config(vars).unwrap_err();
        assert!(matches!(err, ConfigError::Invalid { var: "HERALD_JWT_ALGORITHM", .. }), "{vars:?}: {err:?}");
    }
}

#[test]
fn config_bad_urls_and_leeway_name_their_variable() {
    let err = config(&[(JWKS_URL_VAR, "not a url")]).unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { var: "HERALD_JWKS_URL", .. }), "{err:?}");
    let err = config(&[(SECRET_VAR, SECRET), (VERIFY_URL_VAR, "ftp://example.com")]).unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { var: "HERALD_AUTH_VERIFY_URL", .. }), "{err:?}");
    let err = config(&[(SECRET_VAR, SECRET), (LEEWAY_VAR, "soon")]).unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { var: "HERALD_JWT_LEEWAY_SECS", .. }), "{err:?}");
    let err = config(&[(SECRET_VAR, SECRET), (LEEWAY_VAR, "3600")]).unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { var: "HERALD_JWT_LEEWAY_SECS", .. }), "{err:?}");
    let err = Verifier::new(&AuthConfig::hs256(SECRET).with_verify_url("nope")).unwrap_err();
    assert!(matches!(err, ConfigError::Invalid { var: "HERALD_AUTH_VERIFY_URL", .. }), "{err:?}");
}

#[test]
fn config_reads_verify_url_and_leeway() {
    let config = config(&[(SECRET_VAR, SECRET), (VERIFY_URL_VAR, "https://auth.example.com/me"), (LEEWAY_VAR, "0")]).unwrap();
    assert_eq!(config.verify_url(), Some("https://auth.example.com/me"));
    assert_eq!(config.leeway, Duration::ZERO);
}

#[test]
fn config_debug_does_not_print_the_secret() {
    let debug = format!("{:?}", AuthConfig::hs256(SECRET));
    assert!(!debug.contains(SECRET), "{debug}");
    assert!(debug.contains("redacted"), "{debug}");
    let verifier = format!("{:?}", hs_verifier());
    assert!(!verifier.contains(SECRET), "{verifier}");
}

#[test]
fn error_codes_and_statuses_are_stable() {
    let cases = [
        (AuthError::Missing, 401, "token_missing"),
        (AuthError::Malformed, 401, "token_malformed"),
        (AuthError::Expired, 401, "token_expired"),
        (AuthError::BadSignature, 401, "token_bad_signature"),
        (AuthError::WrongAlgorithm, 401, "token_wrong_algorithm"),
        (AuthError::MissingClaim("exp"), 401, "token_missing_claim"),
        (AuthError::InvalidClaim("sub"), 401, "token_invalid_claim"),
        (AuthError::Forbidden, 403, "forbidden"),
        (AuthError::Rejected, 401, "token_rejected"),
        (AuthError::Unavailable("down".into()), 503, "auth_unavailable"),
    ];
    for (err, status, code) in cases {
        assert_eq!((err.status(), err.code()), (status, code), "{err:?}");
    }
}

#[test]
fn verifier_is_send_sync_and_cheap_to_clone() {
    fn assert_send_sync<T: Send + Sync + Clone>() {}
    assert_send_sync::<Verifier>();
}

fn hs_verifier_with(config: AuthConfig) -> Verifier {
    Verifier::new(&config).unwrap()
}

#[tokio::test]
async fn issuer_and_audience_are_required_and_checked_when_configured() {
    let config = AuthConfig::hs256(SECRET).with_issuer("https://id.example").with_audience("herald");
    let verifier = hs_verifier_with(config);
    let good = hs_token(json!({ "sub": "u", "iss": "https://id.example", "aud": "herald" }));
    assert_eq!(verifier.verify(&good).await.unwrap().user_id.as_deref(), Some("u"));
    let in_list = hs_token(json!({ "sub": "u", "iss": "https://id.example", "aud": ["other", "herald"] }));
    assert!(verifier.verify(&in_list).await.is_ok());
    let cases = [
        (json!({ "sub": "u", "aud": "herald" }), AuthError::MissingClaim("iss")),
        (json!({ "sub": "u", "iss": "https://id.example" }), AuthError::MissingClaim("aud")),
        (json!({ "sub": "u", "iss": "https://evil.example", "aud": "herald" }), AuthError::InvalidClaim("iss")),
        (json!({ "sub": "u", "iss": "https://id.example", "aud": "another-app" }), AuthError::InvalidClaim("aud")),
        // A shared identity provider's admin token for another application is not ours.
        (json!({ "role": "admin", "iss": "https://id.example", "aud": "billing" }), AuthError::InvalidClaim("aud")),
    ];
    for (claims, expected) in cases {
        let err = verifier.verify(&hs_token(claims.clone())).await.unwrap_err();
        assert_eq!(err, expected, "{claims}");
        assert_eq!(err.status(), 401);
    }
}

#[tokio::test]
async fn issuer_and_audience_come_from_the_environment() {
    let env = |k: &str| match k {
        "HERALD_JWT_SECRET" => Some(SECRET.to_string()),
        "HERALD_JWT_ISSUER" => Some("iss-1".to_string()),
        "HERALD_JWT_AUDIENCE" => Some("aud-1".to_string()),
        _ => None,
    };
    let verifier = hs_verifier_with(AuthConfig::from_lookup(&env).unwrap());
    assert!(verifier.verify(&hs_token(json!({ "sub": "u", "iss": "iss-1", "aud": "aud-1" }))).await.is_ok());
    assert!(verifier.verify(&hs_token(json!({ "sub": "u" }))).await.is_err());
    // Unset: neither is required (herald-local's default).
    assert!(hs_verifier().verify(&hs_token(json!({ "sub": "u", "iss": "anyone", "aud": "anything" }))).await.is_ok());
}

#[test]
fn the_secret_arn_is_one_more_key_source() {
    let env = |k: &str| match k {
        "HERALD_JWT_SECRET" => Some(SECRET.to_string()),
        "HERALD_JWT_SECRET_ARN" => Some("arn:aws:secretsmanager:us-east-1:1:secret:x".to_string()),
        _ => None,
    };
    let err = AuthConfig::from_lookup(&env).unwrap_err();
    assert!(err.to_string().contains("HERALD_JWT_SECRET_ARN"), "{err}");
    let only_arn = |k: &str| (k == "HERALD_JWT_SECRET_ARN").then(|| "herald/dev/jwt-secret".to_string());
    let config = AuthConfig::from_lookup(&only_arn).unwrap();
    assert_eq!(config.algorithm(), "HS256");
    assert_eq!(config.hs256_secret(), None, "the secret is not in the environment");
    assert!(format!("{config:?}").contains("herald/dev/jwt-secret"));
}

#[test]
fn bearer_tokens_are_taken_from_the_authorization_header_only() {
    use super::{bearer_token, request_bearer};
    assert_eq!(bearer_token(Some("Bearer abc")).unwrap(), "abc");
    assert_eq!(bearer_token(Some("bearer  abc ")).unwrap(), "abc");
    assert!(matches!(bearer_token(None), Err(AuthError::Missing)));
    assert!(matches!(bearer_token(Some("Basic abc")), Err(AuthError::NotBearer)));
    assert!(matches!(bearer_token(Some("abc")), Err(AuthError::NotBearer)));
    let mut headers = http::HeaderMap::new();
    assert!(matches!(request_bearer(&headers), Err(AuthError::Missing)));
    headers.insert(http::header::AUTHORIZATION, http::HeaderValue::from_bytes(b"Bearer \xff").unwrap());
    assert!(matches!(request_bearer(&headers), Err(AuthError::NotBearer)));
    headers.insert(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer t.k.n"));
    assert_eq!(request_bearer(&headers).unwrap(), "t.k.n");
}
