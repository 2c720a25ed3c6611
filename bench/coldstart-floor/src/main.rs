//! The cold-start floor: the same runtime (lambda_runtime on tokio) and release profile as every
//! Herald function, and a handler that only echoes its event. `scripts/coldstart/run` starts it
//! beside the functions, in the same run, and prints each function's init time against it.

use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(|e: LambdaEvent<Value>| async move { Ok::<Value, Error>(e.payload) })).await
}
