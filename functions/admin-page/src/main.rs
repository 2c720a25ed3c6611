use lambda_http::{Body, Error, Request, Response, run, service_fn};

/// `GET /admin` and its files; anything else routed here is a JSON 404.
async fn handle(request: Request) -> Result<Response<Body>, Error> {
    let path = request.uri().path().to_string();
    Ok(match herald_admin_page::serve(request.method(), &path, herald_admin_page::DevSignIn::Off) {
        Some(r) => r.map(Body::from),
        None => {
            let mut r = Response::new(Body::from(r#"{"error":{"code":"not_found","message":"no such file of the admin page"}}"#));
            *r.status_mut() = http::StatusCode::NOT_FOUND;
            r.headers_mut().insert(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"));
            r
        }
    })
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    run(service_fn(handle)).await
}
