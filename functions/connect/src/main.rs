use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    herald::runtime::init_tracing();
    let settings = herald::config::DeliveryConfig::from_lookup(&herald::config::env)?;
    let sdk = herald::runtime::sdk_config().await?;
    let store = herald::runtime::dynamo_store(&sdk).await;
    let fanout_url = herald::config::required(&herald::config::env, "HERALD_FANOUT_QUEUE_URL")?;
    let fanout = herald::queue::SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), fanout_url);
    let recovery = herald_connect::Recovery { queue: &fanout, history_ttl: settings.history_ttl };
    let ttl = settings.connection_ttl;
    run(service_fn(|e: LambdaEvent<_>| herald::metrics::emf(herald_connect::handle_with(&store, ttl, Some(&recovery), e.payload)))).await
}
