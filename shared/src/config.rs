//! Configuration from the environment, read once at start-up.
//!
//! Every reader takes a lookup function so tests need not touch the process environment;
//! [`env`] is the one used in production.

use std::time::Duration;

use crate::auth::AuthConfig;
use crate::store::tables::TableNames;

/// What is wrong with the environment. The message names the variable.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("missing environment variable {0}")]
    Missing(&'static str),
    #[error("environment variable {var} is invalid: {reason}")]
    Invalid { var: &'static str, reason: String },
}

/// Reads the process environment; empty values count as unset.
pub fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// A required variable.
pub fn required(get: &impl Fn(&str) -> Option<String>, var: &'static str) -> Result<String, ConfigError> {
    get(var).ok_or(ConfigError::Missing(var))
}

/// An optional variable parsed with `FromStr`, or the default.
pub fn parsed<T: std::str::FromStr>(get: &impl Fn(&str) -> Option<String>, var: &'static str, default: T) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    match get(var) {
        None => Ok(default),
        Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError::Invalid { var, reason: e.to_string() }),
    }
}

/// Delivery settings (CONTRACT §2, §3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryConfig {
    /// `HERALD_ACK_TIMEOUT_MS` (default 10000): an unacked push is sent again after this.
    pub ack_timeout: Duration,
    /// `HERALD_MAX_ATTEMPTS` (default 3): sends without an ACK before the connection is closed.
    pub max_attempts: u32,
    /// `HERALD_CONNECTION_TTL_SECS` (default 7200, API Gateway's 2 h): TTL of connection items.
    pub connection_ttl: Duration,
    /// `HERALD_CLAIM_LEASE_MS` (default 120000): how long a coordinator's claim on a push holds
    /// unrenewed. It must end before the queue hands a crashed coordinator's message over again
    /// (its visibility timeout), or the retry finds the dead claim still live.
    pub claim_lease: Duration,
    /// `HERALD_HISTORY_TTL_S` (default 86400): how long a push is kept in its stream (CONTRACT §8);
    /// 0 keeps none (no stream, offset or epoch on pushes: for comparison, not for production).
    pub history_ttl: Duration,
    /// `HERALD_PRESENCE_TIMEOUT_S` (default 90): a connection whose client sent nothing for this
    /// long (no frame, no `heartbeat`) is not counted online, `$disconnect` or not.
    pub presence_timeout: Duration,
}

impl DeliveryConfig {
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let max_attempts = parsed(get, "HERALD_MAX_ATTEMPTS", 3u32)?;
        if max_attempts == 0 {
            return Err(ConfigError::Invalid { var: "HERALD_MAX_ATTEMPTS", reason: "must be at least 1".into() });
        }
        Ok(Self {
            ack_timeout: Duration::from_millis(parsed(get, "HERALD_ACK_TIMEOUT_MS", 10_000u64)?),
            max_attempts,
            connection_ttl: Duration::from_secs(parsed(get, "HERALD_CONNECTION_TTL_SECS", 7_200u64)?),
            claim_lease: Duration::from_millis(parsed(get, "HERALD_CLAIM_LEASE_MS", 120_000u64)?),
            history_ttl: Duration::from_secs(parsed(get, "HERALD_HISTORY_TTL_S", 86_400u64)?),
            presence_timeout: Duration::from_secs(parsed(get, "HERALD_PRESENCE_TIMEOUT_S", 90u64)?),
        })
    }
}

impl Default for DeliveryConfig {
    fn default() -> Self {
        Self::from_lookup(&|_| None).expect("defaults are valid")
    }
}

/// Everything a function may need. Each `main` reads the parts it uses.
#[derive(Debug, Clone)]
pub struct Config {
    pub tables: TableNames,
    pub auth: AuthConfig,
    pub delivery: DeliveryConfig,
    /// `HERALD_QUEUE_URL`: the SQS queue `notify` writes to.
    pub queue_url: Option<String>,
    /// `HERALD_MANAGEMENT_ENDPOINT`: the API Gateway Management API endpoint
    /// (`https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`).
    pub management_endpoint: Option<String>,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(&env)
    }

    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        Ok(Self {
            tables: TableNames::from_lookup(get),
            auth: AuthConfig::from_lookup(get)?,
            delivery: DeliveryConfig::from_lookup(get)?,
            queue_url: get("HERALD_QUEUE_URL"),
            management_endpoint: get("HERALD_MANAGEMENT_ENDPOINT"),
        })
    }

    /// The queue URL, for functions that cannot run without it.
    pub fn require_queue_url(&self) -> Result<&str, ConfigError> {
        self.queue_url.as_deref().ok_or(ConfigError::Missing("HERALD_QUEUE_URL"))
    }

    /// The management endpoint, for functions that cannot run without it.
    pub fn require_management_endpoint(&self) -> Result<&str, ConfigError> {
        self.management_endpoint.as_deref().ok_or(ConfigError::Missing("HERALD_MANAGEMENT_ENDPOINT"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delivery_defaults_follow_the_contract() {
        let d = DeliveryConfig::default();
        assert_eq!(d.ack_timeout, Duration::from_millis(10_000));
        assert_eq!(d.max_attempts, 3);
    }

    #[test]
    fn a_bad_number_names_its_variable() {
        let err = DeliveryConfig::from_lookup(&|k| (k == "HERALD_MAX_ATTEMPTS").then(|| "three".to_string())).unwrap_err();
        assert!(err.to_string().contains("HERALD_MAX_ATTEMPTS"), "{err}");
    }
}
