use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    herald::runtime::init_tracing();
    run(service_fn(|e: LambdaEvent<_>| herald_chat_default::handle(e.payload))).await
}
