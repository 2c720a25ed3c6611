use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    herald::runtime::init_tracing();
    let timeout = herald::config::DeliveryConfig::from_lookup(&herald::config::env)?.presence_timeout;
    let store = herald::runtime::dynamo_store(&herald::runtime::sdk_config().await?).await;
    run(service_fn(|e: LambdaEvent<_>| herald::metrics::emf(herald_chat_conversations::handle(&store, timeout, e.payload)))).await
}
