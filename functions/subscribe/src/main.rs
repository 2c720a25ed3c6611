use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    herald::runtime::init_tracing();
    let sdk = herald::runtime::sdk_config().await?;
    let store = herald::runtime::dynamo_store(&sdk).await;
    let gateway = herald::runtime::management_gateway(&sdk)?;
    let ttl = herald::config::DeliveryConfig::from_lookup(&herald::config::env)?.history_ttl;
    run(service_fn(|e: LambdaEvent<_>| herald::metrics::emf(herald_subscribe::handle(&store, &gateway, ttl, e.payload)))).await
}
