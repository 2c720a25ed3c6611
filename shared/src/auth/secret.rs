//! The HS256 secret read from AWS Secrets Manager (`HERALD_JWT_SECRET_ARN`): fetched on the first
//! token, not during init (so a cold start does not wait on it), then cached for the life of the
//! process. A failed fetch is not cached: the next token tries again. The secret never passes
//! through the Lambda environment.

use aws_sdk_secretsmanager::error::DisplayErrorContext;
use jsonwebtoken::DecodingKey;
use tokio::sync::OnceCell;

use super::AuthError;

pub(super) struct SecretsManagerKey {
    secret_id: String,
    /// The SDK configuration to use instead of the environment's (tests against moto).
    sdk: Option<aws_config::SdkConfig>,
    key: OnceCell<DecodingKey>,
}

impl SecretsManagerKey {
    pub(super) fn new(secret_id: String, sdk: Option<aws_config::SdkConfig>) -> Self {
        Self { secret_id, sdk, key: OnceCell::new() }
    }

    pub(super) fn secret_id(&self) -> &str {
        &self.secret_id
    }

    /// The decoding key, fetched once.
    pub(super) async fn key(&self) -> Result<&DecodingKey, AuthError> {
        self.key.get_or_try_init(|| self.fetch()).await
    }

    async fn fetch(&self) -> Result<DecodingKey, AuthError> {
        let sdk = match &self.sdk {
            Some(sdk) => sdk.clone(),
            None => crate::runtime::sdk_config().await.map_err(|e| AuthError::Unavailable(e.to_string()))?,
        };
        let client = aws_sdk_secretsmanager::Client::new(&sdk);
        let output = client.get_secret_value().secret_id(&self.secret_id).send().await.map_err(|e| {
            tracing::error!(secret_id = self.secret_id, error = %DisplayErrorContext(&e), "could not read the JWT secret");
            AuthError::Unavailable("the JWT secret could not be read from Secrets Manager".into())
        })?;
        match output.secret_string() {
            Some(secret) if !secret.trim().is_empty() => {
                tracing::info!(secret_id = self.secret_id, "JWT secret read from Secrets Manager");
                Ok(DecodingKey::from_secret(secret.as_bytes()))
            }
            _ => {
                tracing::error!(secret_id = self.secret_id, "the JWT secret has no SecretString");
                Err(AuthError::Unavailable("the JWT secret in Secrets Manager is empty or binary".into()))
            }
        }
    }
}
