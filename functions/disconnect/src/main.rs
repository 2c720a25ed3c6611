use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    herald::runtime::init_tracing();
    let store = herald::runtime::dynamo_store(&herald::runtime::sdk_config().await?).await;
    run(service_fn(|e: LambdaEvent<_>| herald::metrics::emf(herald_disconnect::handle(&store, e.payload)))).await
}
