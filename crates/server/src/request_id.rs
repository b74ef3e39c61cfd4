//! A request id for every request: in the `X-Request-Id` response header, in every
//! error body, and in the log lines of that request.

use std::future::Future;
use std::pin::Pin;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};

use axum::extract::Request;
use axum::http::{self, HeaderValue};
use pin_project_lite::pin_project;
use tokio::task::futures::TaskLocalFuture;
use tower::{Layer, Service};

tokio::task_local! {
    static REQUEST_ID: String;
    /// The person acting for an issuer in this request (issue 18), set once by the
    /// extractor that authenticated them: every audit entry the request writes names
    /// them beside the issuer.
    static ACTING_PERSON: OnceLock<String>;
    /// The API key (its public id, `key_…`) that authenticated this request, set once
    /// by `auth::check_record`: what per-key usage is counted by.
    static ACTING_KEY: OnceLock<String>;
}

/// Records the API key (`key_…`) this request is authenticated by.
pub fn set_acting_key(id: &str) {
    let _ = ACTING_KEY.try_with(|cell| cell.set(id.to_owned()));
}

/// The public id (`key_…`) of the API key this request was authenticated by, if one
/// was (directly, or through an access token issued for it); readable after the
/// handler ran, by a layer inside the request id's (`RequestIdLayer`).
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

/// The layer that assigns the id and runs the rest of the stack inside its scope
/// (and the acting person's and key's).
#[derive(Clone)]
pub(crate) struct RequestIdLayer;

impl<S> Layer<S> for RequestIdLayer {
    type Service = RequestId<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestId { inner }
    }
}

/// A service whose every request has an id: see [`RequestIdLayer`].
#[derive(Clone)]
pub(crate) struct RequestId<S> {
    inner: S,
}

/// The scopes a request runs in, innermost last.
type Scoped<F> = TaskLocalFuture<
    String,
    TaskLocalFuture<OnceLock<String>, TaskLocalFuture<OnceLock<String>, F>>,
>;

impl<S, B> Service<Request> for RequestId<S>
where
    S: Service<Request, Response = http::Response<B>>,
{
    type Response = http::Response<B>;
    type Error = S::Error;
    type Future = RequestIdFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let id = fresh();
        let header = HeaderValue::from_str(&id).ok();
        // What the services inside do in their own `call` (before any poll) sees the
        // id too, however they are stacked. The acting person and key are set by
        // handlers, so their scopes start with the first poll.
        let inner = REQUEST_ID.sync_scope(id.clone(), || self.inner.call(req));
        RequestIdFuture {
            inner: REQUEST_ID.scope(
                id,
                ACTING_PERSON.scope(OnceLock::new(), ACTING_KEY.scope(OnceLock::new(), inner)),
            ),
            header,
        }
    }
}

pin_project! {
    /// The future of a [`RequestId`] service.
    pub(crate) struct RequestIdFuture<F> {
        #[pin]
        inner: Scoped<F>,
        header: Option<HeaderValue>,
    }
}

impl<F, B, E> Future for RequestIdFuture<F>
where
    F: Future<Output = Result<http::Response<B>, E>>,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut out = ready!(this.inner.poll(cx));
        if let (Ok(resp), Some(v)) = (&mut out, this.header.take()) {
            resp.headers_mut().insert("x-request-id", v);
        }
        Poll::Ready(out)
    }
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

    #[tokio::test]
    async fn the_id_is_current_in_the_inner_call_and_its_future_and_is_the_header() {
        use axum::body::Body;
        use tower::{Layer, ServiceExt};

        // `service_fn` runs its closure in `call`, before the future is polled.
        let inner = tower::service_fn(|_req: super::Request| {
            let in_call = super::current();
            async move {
                let in_future = super::current();
                let body = format!("{in_call} {in_future}");
                Ok::<_, std::convert::Infallible>(super::http::Response::new(Body::from(body)))
            }
        });
        let resp = super::RequestIdLayer
            .layer(inner)
            .oneshot(super::Request::new(Body::empty()))
            .await
            .unwrap();
        let header = resp.headers()["x-request-id"].to_str().unwrap().to_owned();
        assert!(header.starts_with("req_"), "{header}");
        let body = axum::body::to_bytes(resp.into_body(), 1024).await.unwrap();
        assert_eq!(body, format!("{header} {header}"));
        assert_eq!(super::current(), "-");
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
