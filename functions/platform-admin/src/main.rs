use lambda_http::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    herald::runtime::init_tracing();
    let auth = herald::auth::AuthConfig::from_lookup(&herald::config::env)?;
    let verifier = herald::auth::Verifier::new(&auth)?;
    let sdk = herald::runtime::sdk_config().await?;
    let store = herald::runtime::dynamo_store(&sdk).await;
    // Mailings: a fire on the platform queue now, or EventBridge Scheduler for later ones.
    let scheduler = herald::platform::schedule::eventbridge::EventBridgeScheduler::from_lookup(&sdk, &herald::config::env)?;
    let deps = herald_platform_admin::AdminDeps {
        verifier: &verifier,
        templates: &store,
        users: &store,
        event_types: &store,
        notifications: &store,
        mailings: &store,
        queue: &scheduler.queue,
        scheduler: &scheduler,
    };
    run(service_fn(|request| herald::metrics::emf(herald_platform_admin::handle(&deps, request)))).await
}
