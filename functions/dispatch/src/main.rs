use aws_lambda_events::kafka::KafkaEvent;
use aws_lambda_events::sqs::SqsEvent;
use herald_dispatch::DispatchDeps;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};
use serde_json::Value;

/// Whether the event comes from Kafka (MSK `aws:kafka`, self-managed `SelfManagedKafka`) rather than SQS.
fn is_kafka(event: &Value) -> bool {
    matches!(event.get("eventSource").and_then(Value::as_str), Some("aws:kafka" | "SelfManagedKafka"))
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    herald::runtime::init_tracing();
    let settings = herald::config::DeliveryConfig::from_lookup(&herald::config::env)?;
    let sdk = herald::runtime::sdk_config().await?;
    let store = herald::runtime::dynamo_store(&sdk).await;
    let gateway = herald::runtime::management_gateway(&sdk)?;
    let timer = herald::runtime::redelivery_timer(&sdk)?;
    let dlq_url = herald::config::required(&herald::config::env, "HERALD_DEAD_LETTER_QUEUE_URL")?;
    let dead_letters = herald::queue::SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), dlq_url);
    let fanout_url = herald::config::required(&herald::config::env, "HERALD_FANOUT_QUEUE_URL")?;
    let fanout = herald::queue::SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), fanout_url);
    let deps =
        DispatchDeps { store: &store, gateway: &gateway, timer: &timer, dead_letters: &dead_letters, fanout: &fanout, settings: &settings };
    run(service_fn(|e: LambdaEvent<Value>| {
        let deps = &deps;
        herald::metrics::emf(async move {
            if is_kafka(&e.payload) {
                let event: KafkaEvent = serde_json::from_value(e.payload)?;
                deps.handle_kafka(event).await?;
                Ok::<Value, Error>(Value::Null)
            } else {
                let event: SqsEvent = serde_json::from_value(e.payload)?;
                Ok(serde_json::to_value(deps.handle_sqs(event).await)?)
            }
        })
    }))
    .await
}
