//! Middleware as concrete tower services.
//!
//! Why not `axum::middleware::from_fn`: each such layer clones and boxes the service
//! inside it and boxes two futures, on every request; the server ran eight of them
//! (`bench/RESULTS.md` §11.8 put them at up to ~10 µs of server CPU per request).
//! A [`Hook`] is what most of them did: note something of the request, then touch
//! the answer's headers. [`HookLayer`] runs one around the service inside it with no
//! allocation or dynamic dispatch of its own (axum still boxes each layer it is given
//! in a `Route`: one box and one dynamic call per layer, where `from_fn` added three
//! boxes and a clone of the service inside). The layers that wrap the future itself (the
//! request id's scope, the timeout, the front's credential look-up) are their own
//! services, next to their rules.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use axum::extract::Request;
use axum::http::Response;
use pin_project_lite::pin_project;
use tower::{Layer, Service};

/// Something done around a request: `before` notes what `after` needs (it sees the
/// request, which goes on untouched), `after` adjusts the answer.
pub(crate) trait Hook: Clone {
    /// What `before` hands to `after`.
    type Noted;
    /// Reads the request on its way in.
    fn before(&self, req: &Request) -> Self::Noted;
    /// Adjusts the answer on its way out.
    fn after<B>(&self, noted: Self::Noted, resp: &mut Response<B>);
}

/// The layer that runs a [`Hook`] around a service.
#[derive(Clone)]
pub(crate) struct HookLayer<H>(pub H);

impl<S, H: Clone> Layer<S> for HookLayer<H> {
    type Service = Hooked<S, H>;

    fn layer(&self, inner: S) -> Self::Service {
        Hooked {
            inner,
            hook: self.0.clone(),
        }
    }
}

/// A service with a [`Hook`] around it.
#[derive(Clone)]
pub(crate) struct Hooked<S, H> {
    inner: S,
    hook: H,
}

impl<S, H, B> Service<Request> for Hooked<S, H>
where
    S: Service<Request, Response = Response<B>>,
    H: Hook,
{
    type Response = Response<B>;
    type Error = S::Error;
    type Future = HookFuture<S::Future, H>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let noted = self.hook.before(&req);
        HookFuture {
            inner: self.inner.call(req),
            after: Some((self.hook.clone(), noted)),
        }
    }
}

pin_project! {
    /// The future of a [`Hooked`] service.
    pub(crate) struct HookFuture<F, H: Hook> {
        #[pin]
        inner: F,
        after: Option<(H, H::Noted)>,
    }
}

impl<F, H, B, E> Future for HookFuture<F, H>
where
    F: Future<Output = Result<Response<B>, E>>,
    H: Hook,
{
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut out = ready!(this.inner.poll(cx));
        if let (Ok(resp), Some((hook, noted))) = (&mut out, this.after.take()) {
            hook.after(noted, resp);
        }
        Poll::Ready(out)
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use axum::body::Body;
    use axum::http::HeaderValue;
    use tower::ServiceExt;

    use super::*;

    /// Notes the request's path, writes it on the answer.
    #[derive(Clone)]
    struct EchoPath;

    impl Hook for EchoPath {
        type Noted = String;

        fn before(&self, req: &Request) -> String {
            req.uri().path().to_owned()
        }

        fn after<B>(&self, noted: String, resp: &mut Response<B>) {
            if let Ok(v) = HeaderValue::from_str(&noted) {
                resp.headers_mut().insert("x-path", v);
            }
        }
    }

    #[tokio::test]
    async fn a_hook_sees_the_request_and_adjusts_the_answer() {
        let inner = tower::service_fn(|req: Request| async move {
            // The request reaches the service untouched.
            assert_eq!(req.uri().path(), "/a/b");
            Ok::<_, Infallible>(Response::new(Body::empty()))
        });
        let svc = HookLayer(EchoPath).layer(inner);
        let resp = svc
            .oneshot(Request::get("/a/b").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(resp.headers()["x-path"], "/a/b");
    }
}
