//! Where the token secret comes from (issue 9, CONTRACT §1): the HS256 secret read from AWS
//! Secrets Manager (moto's server here) on first use, never through the environment; and
//! herald-local's public development secret refused off loopback.

use herald::auth::{AuthConfig, AuthError, Verifier, issue_hs256};
use herald_tests::local::moto_sdk_config;
use serde_json::json;

fn token(secret: &str) -> String {
    let exp = time::OffsetDateTime::now_utc().unix_timestamp() + 3600;
    issue_hs256(secret, &json!({"sub": "alice", "exp": exp})).expect("token")
}

#[tokio::test]
async fn the_jwt_secret_is_read_from_secrets_manager_on_first_use_and_a_failed_read_is_retried() {
    let sdk = moto_sdk_config().await;
    let name = format!("herald/test/{}", uuid::Uuid::new_v4().simple());
    // Building the verifier reads nothing: the secret does not exist yet.
    let verifier = Verifier::new(&AuthConfig::hs256_from_secrets_manager(&name, sdk.clone())).expect("verifier");
    let secret = "a-secret-that-lives-only-in-secrets-manager";
    let err = verifier.verify(&token(secret)).await.unwrap_err();
    assert!(matches!(err, AuthError::Unavailable(_)), "{err:?}");
    assert_eq!(err.status(), 503);

    let client = aws_sdk_secretsmanager::Client::new(&sdk);
    client.create_secret().name(&name).secret_string(secret).send().await.expect("create the secret");
    // The failure was not cached: the next token reads it.
    let identity = verifier.verify(&token(secret)).await.expect("a token signed with the stored secret");
    assert_eq!(identity.user_id.as_deref(), Some("alice"));
    assert_eq!(verifier.verify(&token("another-secret")).await.unwrap_err(), AuthError::BadSignature);

    // Cached for the life of the process: deleting the secret does not stop verification.
    client.delete_secret().secret_id(&name).force_delete_without_recovery(true).send().await.expect("delete");
    assert!(verifier.verify(&token(secret)).await.is_ok());
}

#[tokio::test]
async fn herald_local_refuses_the_development_secret_off_loopback() {
    for host in ["0.0.0.0", "::", "192.0.2.10", "example.com"] {
        let mut options = herald_local::Options::from_lookup(&|_| None).expect("defaults");
        options.host = host.into();
        options.port = 0;
        let err = match herald_local::start(options).await {
            Ok(_) => panic!("started on {host} with the development secret"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains("HERALD_JWT_SECRET") && err.contains(host), "{host}: {err}");
    }
    for host in ["127.0.0.1", "localhost", "::1", "[::1]"] {
        assert!(herald_local::is_loopback(host), "{host}");
    }
    // A secret of one's own serves anywhere; the default one on loopback.
    let lookup = |k: &str| (k == "HERALD_JWT_SECRET").then(|| "mine".to_string());
    assert_ne!(herald_local::Options::from_lookup(&lookup).unwrap().auth.hs256_secret(), Some(herald_local::DEV_SECRET));
    let mut options = herald_local::Options::from_lookup(&|_| None).expect("defaults");
    options.port = 0;
    herald_local::start(options).await.expect("the development secret serves on 127.0.0.1").stop().await;
}
