//! Token verification and the caller's identity (CONTRACT §1).
//!
//! - [`AuthConfig`]: where the verification key comes from (an HS256 secret, a PEM public key or a
//!   JWKS URL), the one accepted algorithm, the optional remote check and the clock leeway.
//! - [`Verifier`]: checks a token (signature with the configured algorithm only, `exp` required,
//!   then the remote check) and returns the caller's [`Identity`].
//! - [`issue_hs256`]: signs a token, for `herald-local` and tests.

mod error;
mod identity;
mod jwks;
mod secret;
#[cfg(test)]
mod tests;

pub use error::AuthError;
pub use identity::{Identity, PUBLISH_SCOPE};

use std::fmt;
use std::sync::{Arc, Once};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey, Header, Validation};
use serde_json::{Map, Value};

use crate::config::{self, ConfigError};

const SECRET_VAR: &str = "HERALD_JWT_SECRET";
const SECRET_ARN_VAR: &str = "HERALD_JWT_SECRET_ARN";
const ISSUER_VAR: &str = "HERALD_JWT_ISSUER";
const AUDIENCE_VAR: &str = "HERALD_JWT_AUDIENCE";
const PUBLIC_KEY_VAR: &str = "HERALD_JWT_PUBLIC_KEY";
const JWKS_URL_VAR: &str = "HERALD_JWKS_URL";
const ALGORITHM_VAR: &str = "HERALD_JWT_ALGORITHM";
const VERIFY_URL_VAR: &str = "HERALD_AUTH_VERIFY_URL";
const LEEWAY_VAR: &str = "HERALD_JWT_LEEWAY_SECS";

/// Default clock leeway for `exp` / `nbf`, in seconds.
const DEFAULT_LEEWAY_SECS: u64 = 30;
/// Largest accepted leeway, in seconds.
const MAX_LEEWAY_SECS: u64 = 300;
/// Longer "tokens" are refused unread.
const MAX_TOKEN_LEN: usize = 16 * 1024;
/// Timeout of JWKS fetches and remote checks.
const HTTP_TIMEOUT: Duration = Duration::from_secs(5);

/// Where verification keys come from.
#[derive(Clone)]
enum KeySource {
    /// `HERALD_JWT_SECRET`: an HS256 shared secret.
    Secret(String),
    /// `HERALD_JWT_SECRET_ARN`: an HS256 shared secret in AWS Secrets Manager, read on first use.
    SecretArn(String),
    /// `HERALD_JWT_PUBLIC_KEY`: a PEM public key (RS256 or ES256), already normalised.
    PublicKeyPem(String),
    /// `HERALD_JWKS_URL`: a JSON Web Key Set.
    JwksUrl(reqwest::Url),
}

/// How tokens are verified. Read once at start-up with [`AuthConfig::from_lookup`].
///
/// `Debug` never prints the secret.
#[derive(Clone)]
pub struct AuthConfig {
    key: KeySource,
    algorithm: Algorithm,
    verify_url: Option<String>,
    leeway: Duration,
    /// `HERALD_JWT_ISSUER`: when set, `iss` is required and must be this.
    issuer: Option<String>,
    /// `HERALD_JWT_AUDIENCE`: when set, `aud` is required and must hold this.
    audience: Option<String>,
    /// The SDK configuration for Secrets Manager, instead of the environment's (tests).
    secrets_sdk: Option<aws_config::SdkConfig>,
}

impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let key: &dyn fmt::Debug = match &self.key {
            KeySource::Secret(_) => &"secret [redacted]",
            KeySource::SecretArn(arn) => arn,
            KeySource::PublicKeyPem(_) => &"public key PEM",
            KeySource::JwksUrl(url) => url,
        };
        f.debug_struct("AuthConfig")
            .field("key", key)
            .field("algorithm", &self.algorithm)
            .field("verify_url", &self.verify_url)
            .field("leeway", &self.leeway)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish()
    }
}

impl AuthConfig {
    /// Reads the auth settings.
    ///
    /// - `HERALD_JWT_SECRET` (HS256, the default), `HERALD_JWT_SECRET_ARN` (HS256, the secret in
    ///   AWS Secrets Manager, read on the first token and cached), `HERALD_JWT_PUBLIC_KEY` (PEM,
    ///   RS256 or ES256; literal `\n` escapes are accepted) or `HERALD_JWKS_URL`: exactly one must
    ///   be set. None gives [`ConfigError::Missing`]`("HERALD_JWT_SECRET")`, several give
    ///   [`ConfigError::Invalid`].
    /// - `HERALD_JWT_ALGORITHM` (optional): `HS256`, `RS256` or `ES256`. Defaults to HS256 for a
    ///   secret, ES256 for an EC PEM, RS256 otherwise. HS256 is only accepted with a secret (a public
    ///   key used as an HMAC secret is the classic key-confusion attack).
    /// - `HERALD_AUTH_VERIFY_URL` (optional): the remote check, an `http(s)` URL.
    /// - `HERALD_JWT_LEEWAY_SECS` (optional, default 30, at most 300): clock leeway for `exp`.
    /// - `HERALD_JWT_ISSUER` / `HERALD_JWT_AUDIENCE` (optional): when set, a token must carry that
    ///   `iss` / an `aud` holding that value (CONTRACT §1).
    ///
    /// A PEM that is not a public key for the algorithm gives [`ConfigError::Invalid`] naming
    /// `HERALD_JWT_PUBLIC_KEY`.
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |var: &str| get(var).filter(|v| !v.trim().is_empty());
        let explicit = get(ALGORITHM_VAR).map(|v| parse_algorithm(&v)).transpose()?;

        let secret = get(SECRET_VAR);
        let secret_arn = get(SECRET_ARN_VAR);
        let pem = get(PUBLIC_KEY_VAR);
        let jwks = get(JWKS_URL_VAR);
        let set: Vec<&'static str> = [
            (SECRET_VAR, secret.is_some()),
            (SECRET_ARN_VAR, secret_arn.is_some()),
            (PUBLIC_KEY_VAR, pem.is_some()),
            (JWKS_URL_VAR, jwks.is_some()),
        ]
        .into_iter()
        .filter_map(|(var, is_set)| is_set.then_some(var))
        .collect();
        if set.len() > 1 {
            return Err(ConfigError::Invalid {
                var: set[1],
                reason: format!(
                    "set only one of {SECRET_VAR}, {SECRET_ARN_VAR}, {PUBLIC_KEY_VAR} and {JWKS_URL_VAR} (found {})",
                    set.join(" and ")
                ),
            });
        }

        let hs256_source = secret.map(KeySource::Secret).or(secret_arn.map(KeySource::SecretArn));
        let (key, algorithm) = if let Some(source) = hs256_source {
            match explicit.unwrap_or(Algorithm::HS256) {
                Algorithm::HS256 => (source, Algorithm::HS256),
                other => {
                    return Err(ConfigError::Invalid {
                        var: ALGORITHM_VAR,
                        reason: format!("{} needs {PUBLIC_KEY_VAR} or {JWKS_URL_VAR}, not {SECRET_VAR}", alg_name(other)),
                    });
                }
            }
        } else if let Some(pem) = pem {
            let pem = normalise_pem(&pem);
            let algorithm = match explicit {
                Some(Algorithm::HS256) => return Err(hs256_needs_secret()),
                Some(algorithm) => algorithm,
                None if DecodingKey::from_ec_pem(pem.as_bytes()).is_ok() => Algorithm::ES256,
                None => Algorithm::RS256,
            };
            decoding_key_from_pem(&pem, algorithm).map_err(|reason| ConfigError::Invalid { var: PUBLIC_KEY_VAR, reason })?;
            (KeySource::PublicKeyPem(pem), algorithm)
        } else if let Some(url) = jwks {
            let algorithm = match explicit {
                Some(Algorithm::HS256) => return Err(hs256_needs_secret()),
                Some(algorithm) => algorithm,
                None => Algorithm::RS256,
            };
            (KeySource::JwksUrl(parse_url(JWKS_URL_VAR, &url)?), algorithm)
        } else {
            return Err(ConfigError::Missing(SECRET_VAR));
        };

        let verify_url = get(VERIFY_URL_VAR).map(|url| parse_url(VERIFY_URL_VAR, &url).map(String::from)).transpose()?;
        let leeway = config::parsed(&get, LEEWAY_VAR, DEFAULT_LEEWAY_SECS)?;
        if leeway > MAX_LEEWAY_SECS {
            return Err(ConfigError::Invalid { var: LEEWAY_VAR, reason: format!("at most {MAX_LEEWAY_SECS} seconds") });
        }
        Ok(Self {
            key,
            algorithm,
            verify_url,
            leeway: Duration::from_secs(leeway),
            issuer: get(ISSUER_VAR),
            audience: get(AUDIENCE_VAR),
            secrets_sdk: None,
        })
    }

    /// HS256 with this secret, default leeway, no remote check (tests and `herald-local`).
    pub fn hs256(secret: impl Into<String>) -> Self {
        Self {
            key: KeySource::Secret(secret.into()),
            algorithm: Algorithm::HS256,
            verify_url: None,
            leeway: Duration::from_secs(DEFAULT_LEEWAY_SECS),
            issuer: None,
            audience: None,
            secrets_sdk: None,
        }
    }

    /// HS256 with the secret in AWS Secrets Manager (`HERALD_JWT_SECRET_ARN`), read with this SDK
    /// configuration (tests; the functions use the environment's).
    pub fn hs256_from_secrets_manager(secret_id: impl Into<String>, sdk: aws_config::SdkConfig) -> Self {
        Self { key: KeySource::SecretArn(secret_id.into()), secrets_sdk: Some(sdk), ..Self::hs256("") }
    }

    /// Requires `iss` to be `issuer` (`HERALD_JWT_ISSUER`).
    pub fn with_issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuer = Some(issuer.into());
        self
    }

    /// Requires `aud` to hold `audience` (`HERALD_JWT_AUDIENCE`).
    pub fn with_audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Adds the remote check: every verified token is also sent to `url` (`GET`, bearer token).
    ///
    /// The URL is checked when the [`Verifier`] is built.
    pub fn with_verify_url(mut self, url: impl Into<String>) -> Self {
        self.verify_url = Some(url.into());
        self
    }

    /// Sets the clock leeway for `exp` (and `nbf`).
    pub fn with_leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// The one accepted algorithm: `"HS256"`, `"RS256"` or `"ES256"`.
    pub fn algorithm(&self) -> &'static str {
        alg_name(self.algorithm)
    }

    /// The HS256 secret, when tokens are verified with one (`herald-local` signs tokens with it).
    pub fn hs256_secret(&self) -> Option<&str> {
        match &self.key {
            KeySource::Secret(secret) => Some(secret),
            _ => None,
        }
    }

    /// The `iss` tokens must carry, if any (`HERALD_JWT_ISSUER`).
    pub fn issuer(&self) -> Option<&str> {
        self.issuer.as_deref()
    }

    /// The `aud` tokens must hold, if any (`HERALD_JWT_AUDIENCE`).
    pub fn audience(&self) -> Option<&str> {
        self.audience.as_deref()
    }

    /// The remote check URL, if any.
    pub fn verify_url(&self) -> Option<&str> {
        self.verify_url.as_deref()
    }
}

/// Checks tokens. Cheap to clone (shared state behind an `Arc`), `Send + Sync`.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    algorithm: Algorithm,
    validation: Validation,
    keys: Keys,
    remote: Option<RemoteCheck>,
}

enum Keys {
    Static(DecodingKey),
    Jwks(jwks::JwksCache),
    SecretsManager(Box<secret::SecretsManagerKey>),
}

struct RemoteCheck {
    url: reqwest::Url,
    client: reqwest::Client,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys = match &self.inner.keys {
            Keys::Static(_) => "static key".to_string(),
            Keys::Jwks(cache) => format!("JWKS {}", cache.url()),
            Keys::SecretsManager(key) => format!("Secrets Manager {}", key.secret_id()),
        };
        f.debug_struct("Verifier")
            .field("algorithm", &self.inner.algorithm)
            .field("keys", &keys)
            .field("verify_url", &self.inner.remote.as_ref().map(|r| r.url.as_str()))
            .finish()
    }
}

impl Verifier {
    /// Builds the verifier; the decoding key (or the JWKS cache) and HTTP client are made once.
    pub fn new(config: &AuthConfig) -> Result<Self, ConfigError> {
        ensure_crypto_provider();
        // One HTTP client, shared by the JWKS cache and the remote check, built only if needed.
        let mut shared_client: Option<reqwest::Client> = None;
        let mut client_for = |var: &'static str| -> Result<reqwest::Client, ConfigError> {
            if let Some(client) = &shared_client {
                return Ok(client.clone());
            }
            let client = http_client().map_err(|e| ConfigError::Invalid { var, reason: format!("cannot build an HTTP client: {e}") })?;
            shared_client = Some(client.clone());
            Ok(client)
        };

        let keys = match &config.key {
            KeySource::Secret(secret) => Keys::Static(DecodingKey::from_secret(secret.as_bytes())),
            KeySource::SecretArn(arn) => {
                Keys::SecretsManager(Box::new(secret::SecretsManagerKey::new(arn.clone(), config.secrets_sdk.clone())))
            }
            KeySource::PublicKeyPem(pem) => Keys::Static(
                decoding_key_from_pem(pem, config.algorithm).map_err(|reason| ConfigError::Invalid { var: PUBLIC_KEY_VAR, reason })?,
            ),
            KeySource::JwksUrl(url) => Keys::Jwks(jwks::JwksCache::new(url.clone(), client_for(JWKS_URL_VAR)?, config.algorithm)),
        };

        let remote = match &config.verify_url {
            Some(url) => Some(RemoteCheck { url: parse_url(VERIFY_URL_VAR, url)?, client: client_for(VERIFY_URL_VAR)? }),
            None => None,
        };

        let mut validation = Validation::new(config.algorithm);
        let mut required = vec!["exp"];
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // Without a configured audience an `aud` claim is neither required nor checked.
        validation.validate_aud = false;
        if let Some(issuer) = &config.issuer {
            validation.set_issuer(&[issuer]);
            required.push("iss");
        }
        if let Some(audience) = &config.audience {
            validation.set_audience(&[audience]);
            validation.validate_aud = true;
            required.push("aud");
        }
        validation.set_required_spec_claims(&required);
        validation.leeway = config.leeway.as_secs();

        Ok(Self { inner: Arc::new(Inner { algorithm: config.algorithm, validation, keys, remote }) })
    }

    /// Verifies a token and returns who it names.
    ///
    /// The signature is checked with the configured algorithm only (never the header's: `none`
    /// and any other algorithm give [`AuthError::WrongAlgorithm`]), `exp` is required, and when a
    /// verify URL is configured the auth service must then accept the token (`2xx`; `401`/`403`
    /// give [`AuthError::Rejected`], anything else [`AuthError::Unavailable`]).
    ///
    /// A leading `Bearer ` is ignored.
    pub async fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        let token = strip_bearer(token.trim());
        if token.is_empty() {
            return Err(AuthError::Missing);
        }
        if token.len() > MAX_TOKEN_LEN {
            return Err(AuthError::Malformed);
        }
        let header = peek_header(token)?;
        if header.alg != alg_name(self.inner.algorithm) {
            return Err(AuthError::WrongAlgorithm);
        }

        let claims = match &self.inner.keys {
            Keys::Static(key) => decode(token, key, &self.inner.validation)?,
            Keys::Jwks(cache) => {
                let key = cache.key_for(header.kid.as_deref()).await?;
                decode(token, &key, &self.inner.validation)?
            }
            Keys::SecretsManager(secret) => decode(token, secret.key().await?, &self.inner.validation)?,
        };
        let identity = Identity::from_claims(&claims)?;

        if let Some(remote) = &self.inner.remote {
            remote.check(token).await?;
        }
        Ok(identity)
    }
}

impl RemoteCheck {
    async fn check(&self, token: &str) -> Result<(), AuthError> {
        let response = self
            .client
            .get(self.url.clone())
            .bearer_auth(token)
            .send()
            .await
            .map_err(|e| AuthError::Unavailable(format!("auth service unreachable: {}", e.without_url())))?;
        let status = response.status();
        if status.is_success() {
            Ok(())
        } else if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            Err(AuthError::Rejected)
        } else {
            tracing::warn!(%status, "the auth service answered unexpectedly");
            Err(AuthError::Unavailable(format!("auth service answered {status}")))
        }
    }
}

/// The token of an HTTP `Authorization` header: [`AuthError::Missing`] without one,
/// [`AuthError::NotBearer`] when its scheme is not `Bearer` (checked case-insensitively).
pub fn bearer_token(authorization: Option<&str>) -> Result<&str, AuthError> {
    let header = authorization.ok_or(AuthError::Missing)?;
    let (scheme, token) = header.split_once(' ').ok_or(AuthError::NotBearer)?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(AuthError::NotBearer);
    }
    Ok(token.trim())
}

/// [`bearer_token`] of a request's headers (a header that is not text is not a bearer token).
pub fn request_bearer(headers: &http::HeaderMap) -> Result<&str, AuthError> {
    match headers.get(http::header::AUTHORIZATION) {
        None => Err(AuthError::Missing),
        Some(value) => bearer_token(Some(value.to_str().map_err(|_| AuthError::NotBearer)?)),
    }
}

/// Issues an HS256 token with these claims (`herald-local`'s `token` subcommand and tests).
///
/// The claims are signed as given: add `exp` yourself, [`Verifier::verify`] requires it.
pub fn issue_hs256(secret: &str, claims: &Value) -> Result<String, AuthError> {
    ensure_crypto_provider();
    let mut header = Header::new(Algorithm::HS256);
    header.typ = Some("JWT".into());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(secret.as_bytes())).map_err(|e| {
        tracing::warn!(error = %e, "could not sign a token");
        AuthError::Malformed
    })
}

/// Makes sure jsonwebtoken has a crypto provider, whatever features other crates enable.
fn ensure_crypto_provider() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        // An error means a provider was installed before: that one is used.
        let _ = jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.install_default();
    });
}

fn http_client() -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(HTTP_TIMEOUT)
        .connect_timeout(HTTP_TIMEOUT)
        // A redirect (say, to a login page answering 200) must not count as an answer.
        .redirect(reqwest::redirect::Policy::none())
        .build()
}

/// The parts of a JWT header read before any key is chosen.
struct PeekedHeader {
    alg: String,
    kid: Option<String>,
}

/// Reads `alg` and `kid` without trusting anything else (jsonwebtoken cannot parse `alg: none`).
fn peek_header(token: &str) -> Result<PeekedHeader, AuthError> {
    let mut parts = token.split('.');
    let (Some(header), Some(_payload), Some(_signature), None) = (parts.next(), parts.next(), parts.next(), parts.next()) else {
        return Err(AuthError::Malformed);
    };
    let bytes = URL_SAFE_NO_PAD.decode(header).map_err(|_| AuthError::Malformed)?;
    let header: Map<String, Value> = serde_json::from_slice(&bytes).map_err(|_| AuthError::Malformed)?;
    let alg = header.get("alg").and_then(Value::as_str).ok_or(AuthError::Malformed)?.to_owned();
    let kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
    Ok(PeekedHeader { alg, kid })
}

/// Checks signature and time claims, and returns the claims.
fn decode(token: &str, key: &DecodingKey, validation: &Validation) -> Result<Map<String, Value>, AuthError> {
    jsonwebtoken::decode::<Map<String, Value>>(token, key, validation).map(|data| data.claims).map_err(|e| match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::InvalidSignature => AuthError::BadSignature,
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => AuthError::WrongAlgorithm,
        ErrorKind::MissingRequiredClaim(claim) => AuthError::MissingClaim(match claim.as_str() {
            "iss" => "iss",
            "aud" => "aud",
            _ => "exp",
        }),
        ErrorKind::InvalidIssuer => AuthError::InvalidClaim("iss"),
        ErrorKind::InvalidAudience => AuthError::InvalidClaim("aud"),
        ErrorKind::ImmatureSignature => AuthError::InvalidClaim("nbf"),
        ErrorKind::InvalidClaimFormat(claim) if claim == "nbf" => AuthError::InvalidClaim("nbf"),
        ErrorKind::InvalidClaimFormat(_) => AuthError::InvalidClaim("exp"),
        ErrorKind::InvalidEcdsaKey | ErrorKind::InvalidRsaKey(_) | ErrorKind::InvalidKeyFormat => {
            tracing::warn!(error = %e, "the verification key cannot check this token");
            AuthError::BadSignature
        }
        _ => AuthError::Malformed,
    })
}

fn strip_bearer(token: &str) -> &str {
    match token.get(..7) {
        Some(prefix) if prefix.eq_ignore_ascii_case("bearer ") => token[7..].trim_start(),
        _ => token,
    }
}

fn alg_name(algorithm: Algorithm) -> &'static str {
    match algorithm {
        Algorithm::HS256 => "HS256",
        Algorithm::RS256 => "RS256",
        Algorithm::ES256 => "ES256",
        // Configuration only ever holds the three above.
        _ => "unsupported",
    }
}

fn parse_algorithm(value: &str) -> Result<Algorithm, ConfigError> {
    match value.trim().to_ascii_uppercase().as_str() {
        "HS256" => Ok(Algorithm::HS256),
        "RS256" => Ok(Algorithm::RS256),
        "ES256" => Ok(Algorithm::ES256),
        other => Err(ConfigError::Invalid {
            var: ALGORITHM_VAR,
            reason: format!("unsupported algorithm {other:?}: expected HS256, RS256 or ES256"),
        }),
    }
}

fn hs256_needs_secret() -> ConfigError {
    ConfigError::Invalid { var: ALGORITHM_VAR, reason: format!("HS256 needs {SECRET_VAR}; a public key is never used as an HMAC secret") }
}

fn parse_url(var: &'static str, value: &str) -> Result<reqwest::Url, ConfigError> {
    let url = reqwest::Url::parse(value.trim()).map_err(|e| ConfigError::Invalid { var, reason: format!("not a URL: {e}") })?;
    if !is_http_url(&url) {
        return Err(ConfigError::Invalid { var, reason: "expected an http(s) URL".into() });
    }
    Ok(url)
}

fn is_http_url(url: &reqwest::Url) -> bool {
    matches!(url.scheme(), "http" | "https") && url.host().is_some()
}

/// Environment variables often carry PEMs on one line with literal `\n` escapes.
fn normalise_pem(pem: &str) -> String {
    pem.trim().trim_matches('"').replace("\\r\\n", "\n").replace("\\n", "\n")
}

/// The decoding key of a PEM public key, checked against the algorithm.
fn decoding_key_from_pem(pem: &str, algorithm: Algorithm) -> Result<DecodingKey, String> {
    let key = match algorithm {
        Algorithm::RS256 => DecodingKey::from_rsa_pem(pem.as_bytes()).map_err(|e| format!("not an RSA public key in PEM form ({e})"))?,
        Algorithm::ES256 => DecodingKey::from_ec_pem(pem.as_bytes()).map_err(|e| format!("not an EC public key in PEM form ({e})"))?,
        other => return Err(format!("{} cannot use a PEM public key", alg_name(other))),
    };
    check_decoding_key(&key, algorithm)?;
    Ok(key)
}

/// Makes sure a public key really is one for the algorithm (PEM parsing alone does not).
fn check_decoding_key(key: &DecodingKey, algorithm: Algorithm) -> Result<(), String> {
    ensure_crypto_provider();
    match (algorithm, key.kind()) {
        (Algorithm::RS256, DecodingKeyKind::SecretOrDer(der)) => {
            (jsonwebtoken::crypto::rust_crypto::DEFAULT_PROVIDER.key_utils.rsa_pub_components_from_public_key)(der)
                .map(|_| ())
                .map_err(|e| format!("not a usable RSA public key ({e})"))
        }
        (Algorithm::RS256, DecodingKeyKind::RsaModulusExponent { n, e }) if n.is_empty() || e.is_empty() => {
            Err("empty RSA modulus or exponent".into())
        }
        (Algorithm::RS256, DecodingKeyKind::RsaModulusExponent { .. }) => Ok(()),
        // Building the verifier parses the curve point; the (empty) signature itself just fails.
        (Algorithm::ES256, _) => jsonwebtoken::crypto::verify("", b"probe", key, Algorithm::ES256)
            .map(|_| ())
            .map_err(|e| format!("not a usable P-256 public key ({e})")),
        (other, _) => Err(format!("{} is not a public-key algorithm", alg_name(other))),
    }
}
