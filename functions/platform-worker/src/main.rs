use aws_lambda_events::sqs::SqsEvent;
use lambda_runtime::{Error, LambdaEvent, run, service_fn};

#[tokio::main]
async fn main() -> Result<(), Error> {
    herald::runtime::init_tracing();
    let sdk = herald::runtime::sdk_config().await?;
    let store = herald::runtime::dynamo_store(&sdk).await;
    let queue_url = herald::config::required(&herald::config::env, "HERALD_QUEUE_URL")?;
    let notifications = herald::queue::SqsQueue::new(aws_sdk_sqs::Client::new(&sdk), queue_url);
    let push = herald::platform::channels::PushSender { queue: &notifications };
    let scheduler = herald::platform::schedule::eventbridge::EventBridgeScheduler::from_lookup(&sdk, &herald::config::env)?;
    // Email through SESv2 (with HERALD_EMAIL_FROM), SMS through SNS; what a profile lacks from
    // HERALD_USER_INFO_URL.
    let (email, sms) = herald::platform::providers::from_env(&sdk, &herald::config::env)?;
    let user_info = herald::platform::user_info::UserInfo::from_env(&herald::config::env)?;
    let planner = herald::platform::planner::Planner {
        templates: &store,
        users: &store,
        subscriptions: &store,
        notifications: &store,
        mailings: &store,
        push: &push,
        email: email.as_ref().map(|e| e as &dyn herald::platform::channels::ChannelSender),
        sms: Some(&sms),
        queue: &scheduler.queue,
        scheduler: &scheduler,
        user_info: user_info.as_ref(),
        caller_token: None,
    };
    run(service_fn(|e: LambdaEvent<SqsEvent>| {
        let planner = &planner;
        herald::metrics::emf(async move { Ok::<_, Error>(herald_platform_worker::handle_sqs(planner, e.payload).await) })
    }))
    .await
}
