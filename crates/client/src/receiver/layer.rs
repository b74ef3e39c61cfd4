//! The tower [`Layer`] and [`Service`], the axum extractor and the error response.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use axum::extract::{FromRequestParts, OriginalUri};
use axum::http::request::Parts;
use axum::http::{HeaderValue, Request, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tower::{Layer, Service};

use super::{Receiver, Rejection, VerifiedAgent};

/// Mounts [`AgentAuth`] around a service: `router.layer(receiver.layer())`.
#[derive(Clone, Debug)]
pub struct AgentAuthLayer {
    receiver: Receiver,
}

impl AgentAuthLayer {
    /// A layer authenticating with `receiver`.
    pub fn new(receiver: Receiver) -> Self {
        AgentAuthLayer { receiver }
    }
}

impl<S> Layer<S> for AgentAuthLayer {
    type Service = AgentAuth<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AgentAuth {
            receiver: self.receiver.clone(),
            inner,
        }
    }
}

/// The middleware: authenticates the request, then calls the inner service with the
/// [`VerifiedAgent`] in the request's extensions, or answers the [`Rejection`] without
/// calling it.
#[derive(Clone, Debug)]
pub struct AgentAuth<S> {
    receiver: Receiver,
    inner: S,
}

impl<S, B> Service<Request<B>> for AgentAuth<S>
where
    S: Service<Request<B>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    B: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<B>) -> Self::Future {
        // The clone is not ready; the one that was polled ready serves this request
        // (tower's documented pattern for services called from a future).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let receiver = self.receiver.clone();
        Box::pin(async move {
            // Under `Router::nest` the inner router sees the path without its prefix;
            // proofs name the whole path, which axum keeps as `OriginalUri`.
            let verdict = {
                let uri = match req.extensions().get::<OriginalUri>() {
                    Some(original) => &original.0,
                    None => req.uri(),
                };
                receiver
                    .authenticate(req.method(), uri, req.headers())
                    .await
            };
            match verdict {
                Ok(agent) => {
                    req.extensions_mut().insert(agent);
                    inner.call(req).await
                }
                Err(rejection) => Ok(rejection.into_response()),
            }
        })
    }
}

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        let body = json!({"error": {"code": self.code, "message": self.message}});
        let mut resp = (self.status, axum::Json(body)).into_response();
        let headers = resp.headers_mut();
        if let Some(challenge) = self.challenge {
            headers.insert(header::WWW_AUTHENTICATE, challenge);
        }
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        resp
    }
}

impl<S: Send + Sync> FromRequestParts<S> for VerifiedAgent {
    type Rejection = Rejection;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Rejection> {
        parts.extensions.get::<VerifiedAgent>().cloned().ok_or_else(|| {
            Rejection::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "UNAUTHENTICATED",
                "no verified agent on this request (is the Bonafide layer mounted on this route?)",
            )
        })
    }
}
