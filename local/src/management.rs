//! The management API (CONTRACT §6): `POST` / `GET` / `DELETE` `/@connections/{id}`, as API
//! Gateway answers them, so that `aws-sdk-apigatewaymanagement` pointed here works unchanged.
//! With `--faults`, a `POST` may answer as a struggling API Gateway would (CONTRACT §4, "Fault
//! injection"): 429 `LimitExceededException`, 500, no answer within `HERALD_POST_TIMEOUT_MS`, or
//! 410 with the connection dropped; nothing is sent then.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use herald::protocol::MAX_MESSAGE_BYTES;

use crate::App;
use crate::faults::{HTTP_TIMEOUT_MARGIN, PostFault};

/// An error as the AWS REST-JSON protocol carries it: status, `x-amzn-ErrorType` and a message.
fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, [("x-amzn-errortype", kind), ("content-type", "application/json")], serde_json::json!({ "message": message }).to_string())
        .into_response()
}

fn gone() -> Response {
    aws_error(StatusCode::GONE, "GoneException", "the connection is gone")
}

pub async fn post(State(app): State<Arc<App>>, Path(id): Path<String>, body: Bytes) -> Response {
    post_to(&app, &id, body).await
}

pub async fn post_staged(State(app): State<Arc<App>>, Path((_stage, id)): Path<(String, String)>, body: Bytes) -> Response {
    post_to(&app, &id, body).await
}

async fn post_to(app: &App, id: &str, body: Bytes) -> Response {
    if body.len() > MAX_MESSAGE_BYTES {
        return aws_error(StatusCode::PAYLOAD_TOO_LARGE, "PayloadTooLargeException", "the payload is over 128 KB");
    }
    match app.faults.post_fault() {
        None => {}
        Some(PostFault::Throttle) => return aws_error(StatusCode::TOO_MANY_REQUESTS, "LimitExceededException", "Rate exceeded"),
        Some(PostFault::Error) => {
            return aws_error(StatusCode::INTERNAL_SERVER_ERROR, "InternalServerErrorException", "Internal server error");
        }
        Some(PostFault::Timeout) => {
            // No answer within the caller's timeout; a caller that waits longer gets a 504.
            tokio::time::sleep(app.faults.post_timeout() + HTTP_TIMEOUT_MARGIN).await;
            return aws_error(StatusCode::GATEWAY_TIMEOUT, "InternalServerErrorException", "Endpoint request timed out");
        }
        Some(PostFault::Gone) => {
            crate::faults::drop_gone(app.handlers.gateway.local(), id);
            return gone();
        }
    }
    match app.registry.post_data(id, body.to_vec()) {
        Ok(()) => StatusCode::OK.into_response(),
        Err(_) => gone(),
    }
}

pub async fn get(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    describe(&app, &id)
}

pub async fn get_staged(State(app): State<Arc<App>>, Path((_stage, id)): Path<(String, String)>) -> Response {
    describe(&app, &id)
}

fn describe(app: &App, id: &str) -> Response {
    let Ok(info) = app.registry.describe(id) else { return gone() };
    let body = serde_json::json!({
        "connectedAt": info.connected_at,
        "lastActiveAt": info.last_active_at,
        "identity": { "sourceIp": info.source_ip, "userAgent": info.user_agent },
    });
    (StatusCode::OK, [("content-type", "application/json")], body.to_string()).into_response()
}

pub async fn delete(State(app): State<Arc<App>>, Path(id): Path<String>) -> Response {
    close(&app, &id)
}

pub async fn delete_staged(State(app): State<Arc<App>>, Path((_stage, id)): Path<(String, String)>) -> Response {
    close(&app, &id)
}

fn close(app: &App, id: &str) -> Response {
    match app.registry.close(id, 1000, "") {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(_) => gone(),
    }
}
