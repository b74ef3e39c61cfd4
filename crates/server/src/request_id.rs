//! A request id for every request: in the `X-Request-Id` response header, in every
//! error body, and in the log lines of that request.

use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;

tokio::task_local! {
    static REQUEST_ID: String;
    /// The person acting for an issuer in this request (issue 18), set once by the
    /// extractor that authenticated them: every audit entry the request writes names
    /// them beside the issuer.
    static ACTING_PERSON: std::sync::OnceLock<String>;
    /// The API key (its public id, `key_…`) that authenticated this request, set once
    /// by `auth::check_record`: what per-key usage is counted by.
    static ACTING_KEY: std::sync::OnceLock<String>;
}

/// Records the API key (`key_…`) this request is authenticated by.
pub fn set_acting_key(id: &str) {
    let _ = ACTING_KEY.try_with(|cell| cell.set(id.to_owned()));
}

/// The public id (`key_…`) of the API key this request was authenticated by, if one
/// was (directly, or through an access token issued for it); readable after the
/// handler ran, by a layer inside [`layer`].
pub fn acting_key() -> Option<String> {
    ACTING_KEY
        .try_with(|cell| cell.get().cloned())
        .ok()
        .flatten()
}

/// Records that a person (`usr_…`) is the one acting in this request.
pub fn set_acting_person(id: &str) {
    let _ = ACTING_PERSON.try_with(|cell| cell.set(id.to_owned()));
}

/// The person acting in this request, if a person is.
pub fn acting_person() -> Option<String> {
    ACTING_PERSON
        .try_with(|cell| cell.get().cloned())
        .ok()
        .flatten()
}

/// The id of the request being handled, or `-` outside a request.
pub fn current() -> String {
    REQUEST_ID
        .try_with(Clone::clone)
        .unwrap_or_else(|_| "-".to_owned())
}

/// 128 random bits: unique across restarts and replicas, and (unlike a counter) they
/// tell a caller nothing about how many requests others made.
fn fresh() -> String {
    let mut bytes = [0u8; 16];
    if aws_lc_rs::rand::fill(&mut bytes).is_err() {
        // AWS-LC aborts rather than fail, so this is not expected; even then, no
        // visible count: a hash of a counter, the process id and the clock.
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let clock = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let seed = format!("{n}:{}:{clock}", std::process::id());
        let digest = bonafide_core::sha256(seed.as_bytes());
        for (b, d) in bytes.iter_mut().zip(digest) {
            *b = d;
        }
    }
    format!("req_{}", bonafide_core::hex(&bytes))
}

/// Middleware: assigns the id and runs the rest of the stack inside its scope.
pub async fn layer(req: Request, next: Next) -> Response {
    let id = fresh();
    let mut resp = REQUEST_ID
        .scope(
            id.clone(),
            ACTING_PERSON.scope(
                std::sync::OnceLock::new(),
                ACTING_KEY.scope(std::sync::OnceLock::new(), next.run(req)),
            ),
        )
        .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_acting_key_is_kept_for_the_request_only() {
        assert_eq!(super::acting_key(), None);
        super::ACTING_KEY
            .scope(std::sync::OnceLock::new(), async {
                assert_eq!(super::acting_key(), None);
                super::set_acting_key("key_0011223344556677");
                super::set_acting_key("key_ffffffffffffffff");
                assert_eq!(super::acting_key().as_deref(), Some("key_0011223344556677"));
            })
            .await;
        assert_eq!(super::acting_key(), None);
    }

    #[test]
    fn ids_are_128_random_bits_in_hex() {
        let a = super::fresh();
        let b = super::fresh();
        assert_ne!(a, b);
        let hex = a.strip_prefix("req_").unwrap();
        assert_eq!(hex.len(), 32);
        assert!(hex.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
