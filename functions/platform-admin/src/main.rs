use lambda_http::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    herald::runtime::init_tracing();
    let auth = herald::auth::AuthConfig::from_lookup(&herald::config::env)?;
    let verifier = herald::auth::Verifier::new(&auth)?;
    let store = herald::runtime::dynamo_store(&herald::runtime::sdk_config().await?).await;
    let deps = herald_platform_admin::AdminDeps {
        verifier: &verifier,
        templates: &store,
        users: &store,
        event_types: &store,
        notifications: &store,
    };
    run(service_fn(|request| herald::metrics::emf(herald_platform_admin::handle(&deps, request)))).await
}
