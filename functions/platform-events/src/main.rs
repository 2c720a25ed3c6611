use lambda_http::{Error, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    herald::runtime::init_tracing();
    let auth = herald::auth::AuthConfig::from_lookup(&herald::config::env)?;
    let verifier = herald::auth::Verifier::new(&auth)?;
    let queue_url = herald::config::required(&herald::config::env, "HERALD_QUEUE_URL")?;
    let sdk = herald::runtime::sdk_config().await?;
    let queue = herald::queue::SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), queue_url);
    let store = herald::runtime::dynamo_store(&sdk).await;
    let push = herald::platform::channels::PushSender { queue: &queue };
    // The platform queue (the worker's) and EventBridge Scheduler for what is sent later.
    let scheduler = herald::platform::schedule::eventbridge::EventBridgeScheduler::from_lookup(&sdk, &herald::config::env)?;
    // Email through SESv2 (with HERALD_EMAIL_FROM), SMS through SNS; what a profile lacks from
    // HERALD_USER_INFO_URL.
    let (email, sms) = herald::platform::providers::from_env(&sdk, &herald::config::env)?;
    let user_info = herald::platform::user_info::UserInfo::from_env(&herald::config::env)?;
    let deps = herald_platform_events::EventsDeps {
        verifier: &verifier,
        templates: &store,
        users: &store,
        event_types: &store,
        notifications: &store,
        subscriptions: &store,
        mailings: &store,
        push: &push,
        email: email.as_ref().map(|e| e as &dyn herald::platform::channels::ChannelSender),
        sms: Some(&sms),
        queue: &scheduler.queue,
        scheduler: &scheduler,
        user_info: user_info.as_ref(),
    };
    run(service_fn(|request| herald::metrics::emf(herald_platform_events::handle(&deps, request)))).await
}
