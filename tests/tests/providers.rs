//! The cloud's email and SMS senders (`herald::platform::providers`) against moto's server, whose
//! `/moto-api/data.json` shows what SES and SNS were asked to send: the message as rendered goes
//! out, and a refusal comes back as a failure with SES's own reason.

use herald::domain::Channel;
use herald::platform::channels::{ChannelSender, Outgoing, SendError};
use herald::platform::providers::{SesSender, SnsSender};
use herald_tests::local::{moto_data, moto_sdk_config};
use serde_json::Value;

fn unique(what: &str) -> String {
    format!("{what}-{}", uuid::Uuid::new_v4().simple())
}

fn outgoing(channel: Channel, to: &str, body: &str) -> Outgoing {
    Outgoing {
        notification_id: unique("n"),
        channel,
        user_id: "ada".into(),
        to: to.into(),
        subject: (channel == Channel::Email).then(|| "Hi Ada".to_string()),
        body: body.into(),
        html: (channel == Channel::Email).then(|| format!("<p>{body}</p>")),
    }
}

#[tokio::test]
async fn an_email_goes_out_through_ses_from_a_verified_sender() {
    let sdk = moto_sdk_config().await;
    let ses = aws_sdk_sesv2::Client::new(&sdk);
    let from = format!("{}@example.com", unique("herald"));
    ses.create_email_identity().email_identity(&from).send().await.expect("moto verifies the sender");
    let body = unique("Your film is out");
    SesSender::new(ses, &from).send(&outgoing(Channel::Email, "ada@example.com", &body)).await.expect("sent");

    let data = moto_data().await;
    let sent: Vec<&Value> =
        data["ses"]["Message"].as_array().expect("SES messages").iter().filter(|m| m["source"] == from.as_str()).collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["subject"], "Hi Ada");
    assert_eq!(sent[0]["destinations"]["ToAddresses"], serde_json::json!(["ada@example.com"]));
    // moto keeps the HTML part when there is one.
    assert_eq!(sent[0]["body"], format!("<p>{body}</p>"));
}

#[tokio::test]
async fn an_unverified_sender_fails_with_ses_reason() {
    let sdk = moto_sdk_config().await;
    let from = format!("{}@example.com", unique("nobody"));
    let err = SesSender::new(aws_sdk_sesv2::Client::new(&sdk), &from)
        .send(&outgoing(Channel::Email, "ada@example.com", "never sent"))
        .await
        .expect_err("refused");
    let SendError::Failed(reason) = &err else { panic!("a refusal, not {err:?}") };
    assert!(reason.starts_with("SES: MessageRejected") && reason.contains(&from), "{reason}");
    let data = moto_data().await;
    assert!(!data["ses"]["Message"].as_array().into_iter().flatten().any(|m| m["source"] == from.as_str()), "nothing was sent");
}

#[tokio::test]
async fn an_sms_goes_out_through_sns_to_the_number() {
    let sdk = moto_sdk_config().await;
    let body = unique("Your code");
    SnsSender::new(aws_sdk_sns::Client::new(&sdk)).send(&outgoing(Channel::Sms, "+4915112345678", &body)).await.expect("sent");
    let data = moto_data().await;
    let sent: Vec<&Value> = data["sns"]["SMS"].as_array().expect("SNS SMS").iter().filter(|m| m["message"] == body.as_str()).collect();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["phone_number"], "+4915112345678");
}
