use async_trait::async_trait;
use aws_sdk_apigatewaymanagement::Client;
use aws_sdk_apigatewaymanagement::error::SdkError;
use aws_sdk_apigatewaymanagement::primitives::Blob;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;

use super::{ConnectionInfo, Frame, Gateway, GatewayError};

/// The management API through `aws-sdk-apigatewaymanagement`: API Gateway in the cloud, or
/// herald-local's `/@connections` endpoint.
#[derive(Debug, Clone)]
pub struct SdkGateway {
    client: Client,
}

impl SdkGateway {
    /// `endpoint`: `https://{api-id}.execute-api.{region}.amazonaws.com/{stage}`, or herald-local's URL.
    pub fn new(sdk_config: &aws_config::SdkConfig, endpoint: &str) -> Self {
        let config = aws_sdk_apigatewaymanagement::config::Builder::from(sdk_config).endpoint_url(endpoint).build();
        Self { client: Client::from_conf(config) }
    }

    pub fn from_client(client: Client) -> Self {
        Self { client }
    }
}

/// Maps an SDK failure by its HTTP status: 410 gone, 429 throttled, 400/413 refused.
fn classify<E>(connection_id: &str, err: SdkError<E, HttpResponse>) -> GatewayError
where
    E: std::error::Error + Send + Sync + 'static,
{
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
