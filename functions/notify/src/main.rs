use lambda_http::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    herald::runtime::init_tracing();
    let auth = herald::auth::AuthConfig::from_lookup(&herald::config::env)?;
    let verifier = herald::auth::Verifier::new(&auth)?;
    let queue_url = herald::config::required(&herald::config::env, "HERALD_QUEUE_URL")?;
    let queue = herald::queue::SqsQueue::new(aws_sdk_sqs::Client::new(&herald::runtime::sdk_config().await?), queue_url);
    let deps = herald_notify::NotifyDeps { verifier: &verifier, queue: &queue };
    run(service_fn(|request| herald::metrics::emf(herald_notify::handle(&deps, request)))).await
}
