use lambda_http::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    herald::runtime::init_tracing();
    let auth = herald::auth::AuthConfig::from_lookup(&herald::config::env)?;
    let verifier = herald::auth::Verifier::new(&auth)?;
    let settings = herald::config::DeliveryConfig::from_lookup(&herald::config::env)?;
    let store = herald::runtime::dynamo_store(&herald::runtime::sdk_config().await?).await;
    let deps = herald_history::HistoryDeps { verifier: &verifier, store: &store, settings: &settings };
    run(service_fn(|request| herald::metrics::emf(herald_history::handle(&deps, request)))).await
}
