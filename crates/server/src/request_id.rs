//! A request id for every request: in the `X-Request-Id` response header, in every
//! error body, and in the log lines of that request.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

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

/// A random per-process prefix and a counter: unique across restarts and replicas
/// without drawing randomness per request (ids are for correlation, not security).
fn fresh() -> String {
    static PREFIX: OnceLock<String> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // A failed fill leaves zeros; still unique within the process.
        let _ = aws_lc_rs::rand::fill(&mut bytes);
        bonafide_core::hex(&bytes)
    });
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("req_{prefix}{n:08x}")
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
