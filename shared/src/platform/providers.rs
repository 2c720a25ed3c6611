//! The cloud's email and SMS senders (CONTRACT §9, "Channels"): SESv2 `SendEmail` with simple
//! content (Herald renders; SES templates are not used) from `HERALD_EMAIL_FROM`, and SNS
//! `Publish` to the recipient's E.164 number as a transactional SMS.
//!
//! Each failure is classified for the worker: the provider refusing the message (an unverified
//! sender, a rejected address, a bad number, an account out of quota) is [`SendError::Failed`]
//! with the provider's own reason, which the history records; throttling, a 5xx, a timeout or no
//! answer at all is [`SendError::Unavailable`], worth another try later. The SDK's own retries
//! run first (standard mode, with backoff), so an `Unavailable` has already outlasted them.
//!
//! Neither service deduplicates: the worker's claim on the notification id is what keeps a job
//! from being sent twice.

use async_trait::async_trait;
use aws_sdk_sesv2::types::{Body, Content, Destination, EmailContent, Message};
use aws_sdk_sns::types::MessageAttributeValue;
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;

use crate::config::ConfigError;
use crate::domain::check_email;
use crate::platform::channels::{ChannelSender, Outgoing, SendError};

/// The variable naming the verified identity email is sent from.
pub const EMAIL_FROM_VAR: &str = "HERALD_EMAIL_FROM";

/// The cloud's email and SMS senders: email only with `HERALD_EMAIL_FROM` (without it email
/// fails with "email is not configured in this deployment"), SMS always (SNS needs no sender;
/// an account that may not send SMS yet refuses with its own reason, which the history keeps).
pub fn from_env(sdk: &aws_config::SdkConfig, get: &impl Fn(&str) -> Option<String>) -> Result<(Option<SesSender>, SnsSender), ConfigError> {
    let email = match get(EMAIL_FROM_VAR) {
        None => None,
        Some(from) => {
            check_email(from.trim()).map_err(|reason| ConfigError::Invalid { var: EMAIL_FROM_VAR, reason: reason.to_string() })?;
            Some(SesSender::new(aws_sdk_sesv2::Client::new(sdk), from.trim()))
        }
    };
    Ok((email, SnsSender::new(aws_sdk_sns::Client::new(sdk))))
}

/// A failed SDK call as the worker needs it: the provider's reason, and whether to try again.
fn classify<E>(provider: &str, err: SdkError<E, HttpResponse>) -> SendError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let reason = |e: &SdkError<E, HttpResponse>| match (e.code(), e.message()) {
        (Some(code), Some(message)) => format!("{provider}: {code}: {message}"),
        (Some(code), None) => format!("{provider}: {code}"),
        _ => format!("{provider}: {}", aws_smithy_types::error::display::DisplayErrorContext(e)),
    };
    match &err {
        SdkError::TimeoutError(_) | SdkError::DispatchFailure(_) => return SendError::Unavailable(reason(&err)),
        _ => {}
    }
    let status = err.raw_response().map(|r| r.status().as_u16());
    let throttled = matches!(err.code(), Some("Throttling" | "ThrottlingException" | "TooManyRequestsException" | "ThrottledException"));
    match status {
        Some(429) => SendError::Unavailable(reason(&err)),
        Some(s) if s >= 500 => SendError::Unavailable(reason(&err)),
        _ if throttled => SendError::Unavailable(reason(&err)),
        Some(_) => SendError::Failed(reason(&err)),
        None => SendError::Unavailable(reason(&err)),
    }
}

/// Email through SESv2.
pub struct SesSender {
    client: aws_sdk_sesv2::Client,
    from: String,
}

impl SesSender {
    /// `from`: the verified identity the mail is sent from (`HERALD_EMAIL_FROM`).
    pub fn new(client: aws_sdk_sesv2::Client, from: impl Into<String>) -> Self {
        Self { client, from: from.into() }
    }

    pub fn from(&self) -> &str {
        &self.from
    }

    /// Asks SES to verify the sender (herald-local `--create-resources`): moto verifies it at
    /// once, AWS mails the address a link. An identity that exists already is kept as it is.
    pub async fn create_identity(&self) -> Result<(), String> {
        match self.client.create_email_identity().email_identity(&self.from).send().await {
            Ok(_) => Ok(()),
            Err(e) if e.as_service_error().is_some_and(|s| s.is_already_exists_exception()) => Ok(()),
            Err(e) => Err(aws_smithy_types::error::display::DisplayErrorContext(e).to_string()),
        }
    }
}

#[async_trait]
impl ChannelSender for SesSender {
    async fn send(&self, message: &Outgoing) -> Result<(), SendError> {
        let text = |data: &str| {
            Content::builder()
                .data(data)
                .charset("UTF-8")
                .build()
                .map_err(|e| SendError::Failed(format!("SES: the message cannot be built: {e}")))
        };
        let mut body = Body::builder().text(text(&message.body)?);
        if let Some(html) = &message.html {
            body = body.html(text(html)?);
        }
        let simple = Message::builder().subject(text(message.subject.as_deref().unwrap_or_default())?).body(body.build()).build();
        self.client
            .send_email()
            .from_email_address(&self.from)
            .destination(Destination::builder().to_addresses(&message.to).build())
            .content(EmailContent::builder().simple(simple).build())
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("SES", e))
    }
}

/// SMS through SNS, one `Publish` to the phone number.
pub struct SnsSender {
    client: aws_sdk_sns::Client,
}

impl SnsSender {
    pub fn new(client: aws_sdk_sns::Client) -> Self {
        Self { client }
    }
}

#[async_trait]
impl ChannelSender for SnsSender {
    async fn send(&self, message: &Outgoing) -> Result<(), SendError> {
        // Transactional: delivered for reliability (codes, alerts), not at the promotional rate.
        let transactional = MessageAttributeValue::builder()
            .data_type("String")
            .string_value("Transactional")
            .build()
            .map_err(|e| SendError::Failed(format!("SNS: the message cannot be built: {e}")))?;
        self.client
            .publish()
            .phone_number(&message.to)
            .message(&message.body)
            .message_attributes("AWS.SNS.SMS.SMSType", transactional)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("SNS", e))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_sdk_sesv2::config::{BehaviorVersion, Credentials, Region};
    use aws_smithy_http_client::test_util::{NeverClient, ReplayEvent, StaticReplayClient};
    use aws_smithy_types::body::SdkBody;
    use aws_smithy_types::retry::RetryConfig;
    use aws_smithy_types::timeout::TimeoutConfig;

    use super::*;
    use crate::domain::Channel;

    fn email() -> Outgoing {
        Outgoing {
            notification_id: "n1".into(),
            channel: Channel::Email,
            user_id: "ada".into(),
            to: "ada@example.com".into(),
            subject: Some("Hi Ada".into()),
            body: "Hello".into(),
            html: Some("<p>Hello</p>".into()),
        }
    }

    fn sms() -> Outgoing {
        Outgoing { channel: Channel::Sms, to: "+4915112345678".into(), subject: None, html: None, ..email() }
    }

    /// A replay client answering `status` with an error of `code` in `json` (SESv2, REST-JSON)
    /// or query-XML (SNS) form.
    fn replay(status: u16, body: &str, headers: &[(&str, &str)]) -> StaticReplayClient {
        let mut response = http::Response::builder().status(status);
        for (k, v) in headers {
            response = response.header(*k, *v);
        }
        StaticReplayClient::new(vec![ReplayEvent::new(
            http::Request::builder().uri("http://provider.test/").body(SdkBody::empty()).unwrap(),
            response.body(SdkBody::from(body.to_string())).unwrap(),
        )])
    }

    fn ses(http: impl aws_smithy_runtime_api::client::http::HttpClient + 'static, timeout: Option<Duration>) -> SesSender {
        let mut config = aws_sdk_sesv2::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .endpoint_url("http://provider.test")
            .retry_config(RetryConfig::disabled())
            .http_client(http);
        if let Some(t) = timeout {
            config = config.timeout_config(TimeoutConfig::builder().operation_attempt_timeout(t).build());
        }
        SesSender::new(aws_sdk_sesv2::Client::from_conf(config.build()), "herald@example.com")
    }

    fn sns(http: StaticReplayClient) -> SnsSender {
        let config = aws_sdk_sns::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "static"))
            .endpoint_url("http://provider.test")
            .retry_config(RetryConfig::disabled())
            .http_client(http);
        SnsSender::new(aws_sdk_sns::Client::from_conf(config.build()))
    }

    fn ses_error(code: &str, message: &str) -> String {
        format!(r#"{{"__type":"{code}","message":"{message}"}}"#)
    }

    #[test]
    fn email_needs_a_valid_sender_address() {
        let sdk = aws_config::SdkConfig::builder().behavior_version(BehaviorVersion::latest()).build();
        let (email, _) = from_env(&sdk, &|_| None).unwrap();
        assert!(email.is_none());
        let (email, _) = from_env(&sdk, &|k| (k == EMAIL_FROM_VAR).then(|| "herald@example.com".to_string())).unwrap();
        assert_eq!(email.map(|e| e.from), Some("herald@example.com".to_string()));
        let err = from_env(&sdk, &|k| (k == EMAIL_FROM_VAR).then(|| "not an address".to_string())).err().expect("refused");
        assert!(matches!(&err, ConfigError::Invalid { var: EMAIL_FROM_VAR, .. }), "{err}");
    }

    #[tokio::test]
    async fn an_email_is_sent_as_simple_content_with_text_and_html() {
        let http = replay(200, r#"{"MessageId":"m1"}"#, &[("content-type", "application/json")]);
        ses(http.clone(), None).send(&email()).await.expect("sent");
        let request = http.actual_requests().next().expect("one request");
        assert!(request.uri().ends_with("/v2/email/outbound-emails"), "{}", request.uri());
        let body: serde_json::Value = serde_json::from_slice(request.body().bytes().expect("a body")).expect("JSON");
        assert_eq!(body["FromEmailAddress"], "herald@example.com");
        assert_eq!(body["Destination"]["ToAddresses"], serde_json::json!(["ada@example.com"]));
        let simple = &body["Content"]["Simple"];
        assert_eq!(simple["Subject"]["Data"], "Hi Ada");
        assert_eq!(simple["Body"]["Text"]["Data"], "Hello");
        assert_eq!(simple["Body"]["Html"]["Data"], "<p>Hello</p>");
        assert!(body["Content"].get("Template").is_none(), "Herald renders; no SES template: {body}");
    }

    #[tokio::test]
    async fn a_rejected_email_fails_with_the_providers_reason() {
        let http = replay(400, &ses_error("MessageRejected", "Email address is not verified."), &[("x-amzn-errortype", "MessageRejected")]);
        let err = ses(http, None).send(&email()).await.expect_err("rejected");
        assert!(matches!(&err, SendError::Failed(m) if m == "SES: MessageRejected: Email address is not verified."), "{err:?}");
        assert!(!err.is_retryable());
    }

    #[tokio::test]
    async fn throttling_and_5xx_are_worth_another_try() {
        for (status, code) in
            [(429, "TooManyRequestsException"), (400, "ThrottlingException"), (500, "InternalFailure"), (503, "ServiceUnavailable")]
        {
            let http = replay(status, &ses_error(code, "slow down"), &[("x-amzn-errortype", code)]);
            let err = ses(http, None).send(&email()).await.expect_err("an error");
            assert!(matches!(&err, SendError::Unavailable(m) if m.contains(code)), "{status} {code}: {err:?}");
            assert!(err.is_retryable(), "{status} {code}");
        }
    }

    #[tokio::test]
    async fn no_answer_in_time_is_worth_another_try() {
        let err = ses(NeverClient::new(), Some(Duration::from_millis(50))).send(&email()).await.expect_err("timed out");
        assert!(matches!(err, SendError::Unavailable(_)), "{err:?}");
    }

    #[tokio::test]
    async fn an_sms_is_published_to_the_number_as_transactional() {
        let ok = "<PublishResponse><PublishResult><MessageId>m1</MessageId></PublishResult></PublishResponse>";
        let http = replay(200, ok, &[("content-type", "text/xml")]);
        sns(http.clone()).send(&sms()).await.expect("sent");
        let request = http.actual_requests().next().expect("one request");
        let form = String::from_utf8(request.body().bytes().expect("a body").to_vec()).expect("UTF-8");
        assert!(form.contains("Action=Publish"), "{form}");
        assert!(form.contains("PhoneNumber=%2B4915112345678"), "{form}");
        assert!(form.contains("Message=Hello"), "{form}");
        assert!(form.contains("Transactional"), "{form}");
    }

    #[tokio::test]
    async fn a_refused_number_fails_with_the_providers_reason() {
        let refused = r#"<ErrorResponse><Error><Type>Sender</Type><Code>InvalidParameter</Code><Message>Invalid parameter: PhoneNumber Reason: +1 is not valid to publish to</Message></Error><RequestId>r</RequestId></ErrorResponse>"#;
        let err = sns(replay(400, refused, &[("content-type", "text/xml")])).send(&sms()).await.expect_err("refused");
        assert!(matches!(&err, SendError::Failed(m) if m.starts_with("SNS: InvalidParameter: Invalid parameter: PhoneNumber")), "{err:?}");
        let throttled = r#"<ErrorResponse><Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message></Error><RequestId>r</RequestId></ErrorResponse>"#;
        let err = sns(replay(400, throttled, &[("content-type", "text/xml")])).send(&sms()).await.expect_err("throttled");
        assert!(err.is_retryable(), "{err:?}");
    }
}
