use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    herald::runtime::init_tracing();
    let settings = herald::config::DeliveryConfig::from_lookup(&herald::config::env)?;
    let sdk = herald::runtime::sdk_config().await?;
    let store = herald::runtime::dynamo_store(&sdk).await;
    let gateway = herald::runtime::management_gateway(&sdk)?;
    let timer = herald::runtime::redelivery_timer(&sdk)?;
    let deps = herald_redeliver::RedeliverDeps { store: &store, gateway: &gateway, timer: &timer, settings: &settings };
    run(service_fn(|e: LambdaEvent<SqsEvent>| herald::metrics::emf(async { Ok::<_, Error>(deps.handle_sqs(e.payload).await) }))).await
}
