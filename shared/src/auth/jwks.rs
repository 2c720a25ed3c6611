//! Keys from a JWKS URL (`HERALD_JWKS_URL`), cached.
//!
//! The set is kept for [`TTL`]; a token naming a key id the cache does not know triggers a refetch,
//! at most once per [`REFETCH_INTERVAL`], so forged key ids cannot hammer the key server. Each key
//! is built from its own JWK, but only keys fit for the configured algorithm are kept: the algorithm
//! is never taken from the JWKS or the token.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::{Mutex, RwLock};

use super::AuthError;

/// How long a fetched key set is trusted.
pub(super) const TTL: Duration = Duration::from_secs(10 * 60);
/// Least time between two fetches caused by unknown key ids.
pub(super) const REFETCH_INTERVAL: Duration = Duration::from_secs(30);

/// A JWKS endpoint and its cached keys.
pub(super) struct JwksCache {
    url: reqwest::Url,
    client: reqwest::Client,
    algorithm: Algorithm,
    state: RwLock<State>,
    /// Serialises fetches, so concurrent misses cause one request.
    fetch_gate: Mutex<()>,
    /// Fetch attempts so far: a task that waited at the gate sees whether another one fetched.
    attempts: AtomicU64,
}

#[derive(Default)]
struct State {
    /// Usable keys with their `kid`.
    keys: Vec<(Option<String>, Arc<DecodingKey>)>,
    /// When the keys were last fetched successfully.
    fetched_at: Option<Instant>,
    /// When an unknown key id last caused a fetch (of a fresh set), successful or not.
    refetched_at: Option<Instant>,
}

impl State {
    fn is_fresh(&self, now: Instant) -> bool {
        self.fetched_at.is_some_and(|at| now.duration_since(at) < TTL)
    }

    fn may_refetch(&self, now: Instant) -> bool {
        self.refetched_at.is_none_or(|at| now.duration_since(at) >= REFETCH_INTERVAL)
    }

    /// The key for `kid`; without a kid (or when the set's only key has none), the set's only key.
    fn find(&self, kid: Option<&str>) -> Option<Arc<DecodingKey>> {
        if let Some(kid) = kid
            && let Some((_, key)) = self.keys.iter().find(|(k, _)| k.as_deref() == Some(kid))
        {
            return Some(Arc::clone(key));
        }
        match self.keys.as_slice() {
            [(None, key)] => Some(Arc::clone(key)),
            [(Some(_), key)] if kid.is_none() => Some(Arc::clone(key)),
            _ => None,
        }
    }
}

impl JwksCache {
    pub(super) fn new(url: reqwest::Url, client: reqwest::Client, algorithm: Algorithm) -> Self {
        Self { url, client, algorithm, state: RwLock::new(State::default()), fetch_gate: Mutex::new(()), attempts: AtomicU64::new(0) }
    }

    pub(super) fn url(&self) -> &reqwest::Url {
        &self.url
    }

    /// The key that should have signed a token with this `kid`.
    ///
    /// [`AuthError::BadSignature`] when the (fresh) set has no such key,
    /// [`AuthError::Unavailable`] when the set could not be fetched and no cached key fits.
    pub(super) async fn key_for(&self, kid: Option<&str>) -> Result<Arc<DecodingKey>, AuthError> {
        {
            let state = self.state.read().await;
            if state.is_fresh(Instant::now())
                && let Some(key) = state.find(kid)
            {
                return Ok(key);
            }
        }

        let seen = self.attempts.load(Ordering::SeqCst);
        let _gate = self.fetch_gate.lock().await;
        let refetch = {
            let state = self.state.read().await;
            let now = Instant::now();
            let fresh = state.is_fresh(now);
            if fresh && let Some(key) = state.find(kid) {
                return Ok(key);
            }
            let fetched_meanwhile = self.attempts.load(Ordering::SeqCst) != seen;
            let may_fetch = if fresh { state.may_refetch(now) } else { !fetched_meanwhile };
            if !may_fetch {
                return match state.find(kid) {
                    Some(key) => Ok(key),
                    None if fresh => Err(AuthError::BadSignature),
                    None => Err(AuthError::Unavailable("the JWKS could not be fetched".into())),
                };
            }
            fresh
        };

        self.attempts.fetch_add(1, Ordering::SeqCst);
        let fetched = self.fetch().await;
        let mut state = self.state.write().await;
        let now = Instant::now();
        if refetch {
            state.refetched_at = Some(now);
        }
        match fetched {
            Ok(keys) => {
                state.keys = keys;
                state.fetched_at = Some(now);
                state.find(kid).ok_or(AuthError::BadSignature)
            }
            Err(reason) => {
                tracing::warn!(url = %self.url, %reason, "could not fetch the JWKS");
                // A key we had is still better than refusing everyone while the key server is down.
                state.find(kid).ok_or(AuthError::Unavailable(reason))
            }
        }
    }

    /// Fetches the set and keeps the keys usable with the configured algorithm.
    async fn fetch(&self) -> Result<Vec<(Option<String>, Arc<DecodingKey>)>, String> {
        #[derive(serde::Deserialize)]
        struct RawSet {
            keys: Vec<serde_json::Value>,
        }

        let response = self
            .client
            .get(self.url.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| format!("JWKS request failed: {}", e.without_url()))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("JWKS answered {status}"));
        }
        let set: RawSet = response.json().await.map_err(|e| format!("JWKS is not a key set: {}", e.without_url()))?;

        let mut keys = Vec::with_capacity(set.keys.len());
        for raw in set.keys {
            let jwk: Jwk = match serde_json::from_value(raw) {
                Ok(jwk) => jwk,
                Err(e) => {
                    tracing::debug!(error = %e, "skipping an unreadable JWK");
                    continue;
                }
            };
            if let Some(key) = self.usable_key(&jwk) {
                keys.push((jwk.common.key_id.clone(), Arc::new(key)));
            }
        }
        if keys.is_empty() {
            tracing::warn!(url = %self.url, algorithm = ?self.algorithm, "the JWKS has no key usable with the configured algorithm");
        }
        Ok(keys)
    }

    /// The decoding key of a JWK, if it may verify tokens of the configured algorithm.
    fn usable_key(&self, jwk: &Jwk) -> Option<DecodingKey> {
        let kid = jwk.common.key_id.as_deref().unwrap_or("");
        if !matches!(jwk.common.public_key_use, None | Some(PublicKeyUse::Signature)) {
            return None;
        }
        let declared_ok = match jwk.common.key_algorithm {
            None => true,
            Some(KeyAlgorithm::RS256) => self.algorithm == Algorithm::RS256,
            Some(KeyAlgorithm::ES256) => self.algorithm == Algorithm::ES256,
            Some(_) => false,
        };
        let shape_ok = match (&jwk.algorithm, self.algorithm) {
            (AlgorithmParameters::RSA(_), Algorithm::RS256) => true,
            (AlgorithmParameters::EllipticCurve(p), Algorithm::ES256) => p.curve == EllipticCurve::P256,
            _ => false,
        };
        if !declared_ok || !shape_ok {
            tracing::debug!(kid, "skipping a JWK not meant for the configured algorithm");
            return None;
        }
        match DecodingKey::from_jwk(jwk).map_err(|e| e.to_string()).and_then(|key| {
            super::check_decoding_key(&key, self.algorithm)?;
            Ok(key)
        }) {
            Ok(key) => Some(key),
            Err(reason) => {
                tracing::warn!(kid, %reason, "skipping an invalid JWK");
                None
            }
        }
    }
}
