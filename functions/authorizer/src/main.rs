use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    herald::runtime::init_tracing();
    let config = herald::auth::AuthConfig::from_lookup(&herald::config::env)?;
    let verifier = herald::auth::Verifier::new(&config)?;
    run(service_fn(|e: LambdaEvent<_>| herald_authorizer::handle(&verifier, e.payload))).await
}
