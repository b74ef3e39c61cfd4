//! A request id for every request: in the `X-Request-Id` response header, in every
//! error body, and in the log lines of that request.

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

tokio::task_local! {
    static REQUEST_ID: String;
}

/// The id of the request being handled, or `-` outside a request.
pub fn current() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".to_owned())
}

fn fresh() -> String {
    let mut bytes = [0u8; 12];
    // A failed fill leaves zeros: ids are for correlation, not security.
    let _ = aws_lc_rs::rand::fill(&mut bytes);
    format!("req_{}", bonafide_core::hex(&bytes))
}

/// Middleware: assigns the id and runs the rest of the stack inside its scope.
pub async fn layer(req: Request, next: Next) -> Response {
    let id = fresh();
    let mut resp = REQUEST_ID.scope(id.clone(), next.run(req)).await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}
