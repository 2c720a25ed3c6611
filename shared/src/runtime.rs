//! Start-up helpers for the Lambda binaries: logs and the AWS SDK configuration.

/// JSON logs to stdout (CloudWatch), filtered by `RUST_LOG` (default `info`).
pub fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().json().with_env_filter(filter).without_time().with_target(false).try_init();
}

/// The functions' SDK configuration: the SDK's standard one (region, credentials and
/// `AWS_ENDPOINT_URL` from the environment), trusting the roots `HERALD_TLS_ROOTS` names.
pub async fn sdk_config() -> Result<aws_config::SdkConfig, crate::config::ConfigError> {
    Ok(sdk_config_with(TlsRoots::from_lookup(&crate::config::env)?).await)
}

/// The SDK's standard configuration with the given roots.
pub async fn sdk_config_with(roots: TlsRoots) -> aws_config::SdkConfig {
    let loader = aws_config::defaults(aws_config::BehaviorVersion::latest());
    match roots {
        TlsRoots::Aws => loader.http_client(https_client(TlsRoots::Aws)).load().await,
        TlsRoots::System => loader.load().await,
    }
}

/// Amazon Trust Services' five roots, PEM (`shared/certs/amazon-trust-services.pem`).
pub const AMAZON_TRUST_SERVICES_PEM: &str = include_str!("../certs/amazon-trust-services.pem");

/// Which root certificates the functions' AWS SDK clients trust (`HERALD_TLS_ROOTS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsRoots {
    /// `aws` (the default): Amazon Trust Services' roots, built in. Every endpoint the functions
    /// call is an AWS service endpoint, and all of them chain to these. The system's bundle
    /// would be right too, but reading and decoding it (about 140 certificates, 200 KB of PEM,
    /// plus every file of its directory) was most of a function's init: 12.6 M of its 13 M
    /// instructions with the bundle alone, 22 M with the directory (callgrind, on Debian).
    Aws,
    /// `system`: the platform's bundle (`SSL_CERT_FILE`, or where OpenSSL keeps it), for an
    /// endpoint signed by another CA: an API Gateway custom domain with an imported
    /// certificate, a proxy that re-signs TLS, a region whose endpoints use other roots.
    System,
}

impl TlsRoots {
    pub fn from_lookup(get: &impl Fn(&str) -> Option<String>) -> Result<Self, crate::config::ConfigError> {
        match get("HERALD_TLS_ROOTS").as_deref().map(str::trim) {
            None | Some("") | Some("aws") => Ok(Self::Aws),
            Some("system") => Ok(Self::System),
            Some(other) => Err(crate::config::ConfigError::Invalid {
                var: "HERALD_TLS_ROOTS",
                reason: format!("{other:?} is neither \"aws\" nor \"system\""),
            }),
        }
    }
}

/// The SDK's HTTPS client (rustls with aws-lc, as its default) over the given roots.
pub fn https_client(roots: TlsRoots) -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::tls;
    let store = match roots {
        TlsRoots::Aws => tls::TrustStore::empty().with_pem_certificate(AMAZON_TRUST_SERVICES_PEM.as_bytes()),
        TlsRoots::System => tls::TrustStore::default(),
    };
    let context = tls::TlsContext::builder().with_trust_store(store).build().expect("a TLS context with a valid trust store");
    aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(tls::rustls_provider::CryptoMode::AwsLc))
        .tls_context(context)
        .build_https()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn certs(pem: &[u8]) -> Vec<Vec<u8>> {
        let text = std::str::from_utf8(pem).unwrap();
        let mut out = Vec::new();
        for block in text.split("-----BEGIN CERTIFICATE-----").skip(1) {
            let body = block.split("-----END CERTIFICATE-----").next().unwrap();
            let b64: String = body.chars().filter(|c| !c.is_whitespace()).collect();
            out.push(base64::Engine::decode(&base64::engine::general_purpose::STANDARD, b64).expect("base64"));
        }
        out
    }

    #[test]
    fn the_built_in_roots_are_amazon_trust_services_and_match_the_system_bundle() {
        let ours = certs(AMAZON_TRUST_SERVICES_PEM.as_bytes());
        assert_eq!(ours.len(), 5);
        for (cert, name) in ours.iter().zip([
            "Amazon Root CA 1",
            "Amazon Root CA 2",
            "Amazon Root CA 3",
            "Amazon Root CA 4",
            "Starfield Services Root Certificate Authority - G2",
        ]) {
            assert!(cert.windows(name.len()).any(|w| w == name.as_bytes()), "{name} is not where it should be");
        }
        // The same bytes as the platform's copy of Mozilla's roots, where there is one (Debian's path;
        // CI runs on Debian): not a look-alike.
        let bundle = ["/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"].iter().find_map(|p| std::fs::read(p).ok());
        if let Some(bundle) = bundle {
            let system = certs(&bundle);
            for cert in &ours {
                assert!(system.contains(cert), "a built-in root is not in the system bundle");
            }
        }
    }

    #[test]
    fn tls_roots_are_aws_unless_told_system() {
        let lookup = |v: Option<&'static str>| move |k: &str| (k == "HERALD_TLS_ROOTS").then(|| v.map(String::from)).flatten();
        assert_eq!(TlsRoots::from_lookup(&lookup(None)).unwrap(), TlsRoots::Aws);
        assert_eq!(TlsRoots::from_lookup(&lookup(Some("aws"))).unwrap(), TlsRoots::Aws);
        assert_eq!(TlsRoots::from_lookup(&lookup(Some("system"))).unwrap(), TlsRoots::System);
        let err = TlsRoots::from_lookup(&lookup(Some("mozilla"))).unwrap_err().to_string();
        assert!(err.contains("HERALD_TLS_ROOTS") && err.contains("mozilla"), "{err}");
        // Both build a client.
        let _ = https_client(TlsRoots::Aws);
        let _ = https_client(TlsRoots::System);
    }
}
