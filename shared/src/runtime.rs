//! Start-up helpers for the Lambda binaries: logs and the AWS SDK configuration.

/// JSON logs to stdout (CloudWatch), filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().json().with_env_filter(filter).without_time().with_target(false).try_init();
}

/// The SDK's standard configuration: region, credentials and `AWS_ENDPOINT_URL` from the environment.
pub async fn sdk_config() -> aws_config::SdkConfig {
    aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await
}

/// The DynamoDB store over the tables named by the environment (`HERALD_TABLE_PREFIX` or each
/// table's own variable).
pub async fn dynamo_store(sdk: &aws_config::SdkConfig) -> crate::store::dynamodb::DynamoStore {
    let tables = crate::store::tables::TableNames::from_lookup(&crate::config::env);
    crate::store::dynamodb::DynamoStore::new(aws_sdk_dynamodb::Client::new(sdk), tables)
}

/// The management API client for `HERALD_MANAGEMENT_ENDPOINT`.
pub fn management_gateway(sdk: &aws_config::SdkConfig) -> Result<crate::gateway::SdkGateway, crate::config::ConfigError> {
    let endpoint = crate::config::required(&crate::config::env, "HERALD_MANAGEMENT_ENDPOINT")?;
    Ok(crate::gateway::SdkGateway::new(sdk, &endpoint))
}

/// The redelivery timer: the SQS queue `HERALD_REDELIVERY_QUEUE_URL`.
pub fn redelivery_timer(sdk: &aws_config::SdkConfig) -> Result<crate::queue::SqsRedeliveryTimer, crate::config::ConfigError> {
    let url = crate::config::required(&crate::config::env, "HERALD_REDELIVERY_QUEUE_URL")?;
    Ok(crate::queue::SqsRedeliveryTimer::new(aws_sdk_sqs::Client::new(sdk), url))
}

/// Implements `From<$error> for lambda_runtime::Diagnostic` in a function crate: the error's
/// type name as `errorType`, its message (never `{:?}` text) as `errorMessage`.
#[macro_export]
macro_rules! lambda_diagnostic {
    ($error:ty) => {
        impl From<$error> for lambda_runtime::Diagnostic {
            fn from(e: $error) -> Self {
                lambda_runtime::Diagnostic { error_type: stringify!($error).to_string(), error_message: e.to_string() }
            }
        }
    };
}
