use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::error::SdkError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_types::timeout::TimeoutConfig;

use super::{ConnectionInfo, Frame, Gateway, GatewayError};

/// The management API through `aws-sdk-apigatewaymanagement`: API Gateway in the cloud, or
/// herald-local's `/@connections` endpoint.
#[derive(Debug, Clone)]
pub struct SdkGateway {
    client: Client,
}

/// How long one management API call may take before it counts as a timeout
/// ([`GatewayError::Timeout`]); herald-local's `HERALD_POST_TIMEOUT_MS` defaults to the same.
pub const DEFAULT_POST_TIMEOUT: Duration = Duration::from_secs(2);

impl SdkGateway {
    /// `endpoint`: `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`, or herald-local's URL.
    /// Each attempt of a call times out after [`DEFAULT_POST_TIMEOUT`].
    pub fn new(sdk_config: &aws_config::SdkConfig, endpoint: &str) -> Self {
        Self::with_timeout(sdk_config, endpoint, DEFAULT_POST_TIMEOUT)
    }

    /// As [`SdkGateway::new`], with each attempt of a call timing out after `timeout` (the SDK
    /// configuration's other timeouts are kept).
    pub fn with_timeout(sdk_config: &aws_config::SdkConfig, endpoint: &str, timeout: Duration) -> Self {
        let mut timeouts = TimeoutConfig::builder().operation_attempt_timeout(timeout).build();
        if let Some(configured) = sdk_config.timeout_config() {
            timeouts.take_defaults_from(configured);
        }
        let config =
            aws_sdk_apigatewaymanagement::config::Builder::from(sdk_config).endpoint_url(endpoint).timeout_config(timeouts).build();
        Self { client: Client::from_conf(config) }
    }

    pub fn from_client(client: Client) -> Self {
        Self { client }
    }
}

/// Maps an SDK failure by its HTTP status: 410 gone, 429 throttled, 400/413 refused; no answer
/// in time is a timeout; anything else (500, 503, network) stays the SDK's error, retryable.
fn classify<E>(connection_id: &str, err: SdkError<E, HttpResponse>) -> GatewayError
where
    E: std::error::Error + Send + Sync + 'static,
{
    match &err {
        SdkError::TimeoutError(_) => return GatewayError::Timeout,
        SdkError::DispatchFailure(failure) if failure.is_timeout() => return GatewayError::Timeout,
        _ => {}
    }
    let status = err.raw_response().map(|r| r.status().as_u16());
    match status {
        Some(410) => GatewayError::Gone(connection_id.to_string()),
        Some(429) => GatewayError::Throttled,
        Some(400) | Some(413) => GatewayError::PayloadRefused(format!("status {}", status.unwrap_or_default())),
        _ => GatewayError::Other(Box::new(err)),
    }
}

#[async_trait]
impl Gateway for SdkGateway {
    async fn post(&self, connection_id: &str, frame: &Frame) -> Result<(), GatewayError> {
        self.client
            .post_to_connection()
            .connection_id(connection_id)
            .data(Blob::new(frame.as_bytes()))
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify(connection_id, e))
    }

    async fn describe(&self, connection_id: &str) -> Result<ConnectionInfo, GatewayError> {
        let out = self.client.get_connection().connection_id(connection_id).send().await.map_err(|e| classify(connection_id, e))?;
        let fmt = |t: Option<&aws_smithy_types::DateTime>| t.and_then(|t| t.fmt(aws_smithy_types::date_time::Format::DateTime).ok());
        Ok(ConnectionInfo {
            connected_at: fmt(out.connected_at()),
            last_active_at: fmt(out.last_active_at()),
            source_ip: out.identity().and_then(|i| i.source_ip()).map(str::to_string),
            user_agent: out.identity().and_then(|i| i.user_agent()).map(str::to_string),
        })
    }

    async fn close(&self, connection_id: &str) -> Result<(), GatewayError> {
        self.client.delete_connection().connection_id(connection_id).send().await.map(|_| ()).map_err(|e| classify(connection_id, e))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Credentials, Region};
    use aws_smithy_http_client::test_util::{NeverClient, ReplayEvent, StaticReplayClient};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::retry::RetryConfig;

    use super::*;

    const ENDPOINT: &str = "https://abc123.execute-api.us-east-1.amazonaws.com/prod";

    /// The management API answering each post with `status` (and `error_type`, as API Gateway
    /// names its errors); the SDK's own retries are off so that one answer is one outcome.
    fn answering(status: u16, error_type: &str) -> (SdkGateway, StaticReplayClient) {
        let request = http::Request::builder().uri(format!("{ENDPOINT}/@connections/c1")).body(SdkBody::empty()).unwrap();
        let response = http::Response::builder()
            .status(status)
            .header("x-amzn-errortype", error_type)
            .header("content-type", "application/json")
            .body(SdkBody::from(r#"{"message":"from the replay"}"#))
            .unwrap();
        let replay = StaticReplayClient::new(vec![ReplayEvent::new(request, response)]);
        (SdkGateway::from_client(Client::from_conf(config().http_client(replay.clone()).build())), replay)
    }

    fn config() -> aws_sdk_apigatewaymanagement::config::Builder {
        aws_sdk_apigatewaymanagement::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .endpoint_url(ENDPOINT)
            .retry_config(RetryConfig::disabled())
    }

    async fn post_error(status: u16, error_type: &str) -> GatewayError {
        let (gateway, replay) = answering(status, error_type);
        let err = gateway.post("c1", &Frame::Text("{}".into())).await.expect_err("the replay answers an error");
        assert_eq!(replay.actual_requests().count(), 1, "one request went out");
        err
    }

    #[tokio::test]
    async fn a_200_is_sent() {
        let (gateway, replay) = answering(200, "");
        gateway.post("c1", &Frame::Text("hello".into())).await.unwrap();
        let sent = replay.actual_requests().next().expect("one request");
        assert_eq!(sent.method(), "POST");
        assert!(sent.uri().ends_with("/prod/@connections/c1"), "{}", sent.uri());
        assert_eq!(sent.body().bytes(), Some(&b"hello"[..]));
    }

    #[tokio::test]
    async fn a_410_is_gone() {
        let err = post_error(410, "GoneException").await;
        assert!(matches!(&err, GatewayError::Gone(id) if id == "c1"), "{err:?}");
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn a_429_is_throttled() {
        let err = post_error(429, "LimitExceededException").await;
        assert!(matches!(err, GatewayError::Throttled), "{err:?}");
        assert!(err.is_retryable());
    }

    #[tokio::test]
    async fn a_413_or_400_is_a_refused_payload() {
        for (status, kind) in [(413, "PayloadTooLargeException"), (400, "BadRequestException")] {
            let err = post_error(status, kind).await;
            assert!(matches!(&err, GatewayError::PayloadRefused(why) if why.contains(&status.to_string())), "{status}: {err:?}");
            assert!(!err.is_retryable());
        }
    }

    #[tokio::test]
    async fn a_500_or_503_is_retryable_and_keeps_the_sdk_error() {
        for (status, kind) in [(500, "InternalServerErrorException"), (503, "ServiceUnavailableException")] {
            let err = post_error(status, kind).await;
            let GatewayError::Other(source) = &err else { panic!("{status}: {err:?}") };
            assert!(source.downcast_ref::<SdkError<aws_sdk_apigatewaymanagement::operation::post_to_connection::PostToConnectionError, HttpResponse>>().is_some(), "{status}: the SDK error itself is kept: {source:?}");
            assert!(err.is_retryable());
        }
    }

    #[tokio::test]
    async fn no_answer_in_time_is_a_timeout() {
        let never = NeverClient::new();
        let client = Client::from_conf(
            config()
                .http_client(never.clone())
                .timeout_config(TimeoutConfig::builder().operation_attempt_timeout(Duration::from_millis(50)).build())
                .build(),
        );
        let started = std::time::Instant::now();
        let err = SdkGateway::from_client(client).post("c1", &Frame::Text("{}".into())).await.unwrap_err();
        assert!(matches!(err, GatewayError::Timeout), "{err:?}");
        assert!(err.is_retryable());
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        assert_eq!(never.num_calls(), 1);
    }

    #[tokio::test]
    async fn with_timeout_gives_every_call_a_deadline() {
        let never = NeverClient::new();
        let sdk = aws_config::defaults(aws_config::BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("t", "t", None, None, "static"))
            .http_client(never.clone())
            .retry_config(RetryConfig::disabled())
            .load()
            .await;
        let gateway = SdkGateway::with_timeout(&sdk, ENDPOINT, Duration::from_millis(50));
        let post = tokio::time::timeout(Duration::from_secs(5), gateway.post("c1", &Frame::Text("{}".into()))).await;
        assert!(matches!(post, Ok(Err(GatewayError::Timeout))), "{post:?}");
        let describe = tokio::time::timeout(Duration::from_secs(5), gateway.describe("c1")).await;
        assert!(matches!(describe, Ok(Err(GatewayError::Timeout))), "{describe:?}");
    }
}
