//! The front layer (issue 18): one middleware, outside routing, that resolves a
//! request's credential once, spends its rate limit before the handler reads a body,
//! and, with quotas on, counts its usage and writes its quota warning.
//!
//! Why one layer: the rate limit, the usage count and the handler's authentication
//! all need the key a request presents. Resolved by each (parse, checksum, SHA-256,
//! cache look-up, the owner's organisation), it cost about 10 µs of server CPU per
//! request over two layers (`bench/RESULTS.md` §17.2). Here it is looked up once and
//! handed to the extractors ([`crate::auth::ResolvedKey`]), which still check its
//! liveness and scopes where the route is known.
//!
//! What the handlers add while they run (a limit spent inside one, the quota's
//! warning) is gathered in one task-local per request, [`PerRequest`], and written
//! into the answer's headers here.

use std::cell::RefCell;
use std::convert::Infallible;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::http::HeaderValue;
use axum::response::{IntoResponse, Response};
use bonafide_core::ids::OrgId;
use futures_util::future::{BoxFuture, Either};
use tower::{Layer, Service};

use crate::auth::Caller;
use crate::quota;
use crate::ratelimit::{self, Outcome};
use crate::state::AppState;

/// What a request gathers on its way through the handler, for its answer.
#[derive(Debug, Default)]
struct PerRequest {
    /// Every limit applied to it (the front's, then those spent inside the handler).
    outcomes: Vec<Outcome>,
    /// `Bonafide-Quota-Warning`, once its count reached 80 % of the month's quota.
    warning: Option<String>,
    /// Whose organisation's key it presents, as the front found it.
    usage: Option<quota::Subject>,
}

tokio::task_local! {
    static FRONT: RefCell<PerRequest>;
}

/// Adds a limit's outcome to the answer's headers; `false` outside the front layer's
/// scope (limits and quotas both off), where the caller writes them itself.
pub fn push_outcome(outcome: Outcome) -> bool {
    FRONT
        .try_with(|f| f.borrow_mut().outcomes.push(outcome))
        .is_ok()
}

/// Sets the answer's `Bonafide-Quota-Warning`.
pub fn set_quota_warning(text: String) {
    let _ = FRONT.try_with(|f| f.borrow_mut().warning = Some(text));
}

/// The organisation of the key the request presents, when the front found it and it
/// is `caller`'s (the same credential rule as the extractors').
pub fn usage_org(caller: &Caller) -> Option<OrgId> {
    FRONT
        .try_with(|f| {
            f.borrow()
                .usage
                .as_ref()
                .filter(|s| s.caller == *caller)
                .map(|s| s.org.clone())
        })
        .ok()
        .flatten()
}

/// The layer. A no-op when rate limits and quotas are both off.
#[derive(Clone)]
pub(crate) struct FrontLayer(pub Arc<AppState>);

impl<S> Layer<S> for FrontLayer {
    type Service = Front<S>;

    fn layer(&self, inner: S) -> Self::Service {
        Front {
            inner,
            state: Arc::clone(&self.0),
        }
    }
}

/// A service behind the front: see [`FrontLayer`].
#[derive(Clone)]
pub(crate) struct Front<S> {
    inner: S,
    state: Arc<AppState>,
}

impl<S> Service<Request> for Front<S>
where
    S: Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<S::Future, BoxFuture<'static, Result<Response, Infallible>>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let state = &self.state;
        let limits =
            state.limiter.limits().enabled && !ratelimit::EXEMPT.contains(&req.uri().path());
        let quotas = state.quotas.plans().enabled;
        if !limits && !quotas {
            return Either::Left(self.inner.call(req));
        }
        // The service made ready is the one called, after the look-ups (tower's rule).
        let clone = self.inner.clone();
        let ready = std::mem::replace(&mut self.inner, clone);
        Either::Right(Box::pin(front(
            Arc::clone(state),
            limits,
            quotas,
            req,
            ready,
        )))
    }
}

/// The front's work for one request, with limits or quotas on.
async fn front<S>(
    state: Arc<AppState>,
    limits: bool,
    quotas: bool,
    mut req: Request,
    mut inner: S,
) -> Result<Response, Infallible>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    let resolved = crate::auth::resolve_key(&state, req.headers()).await;
    let mut per = PerRequest::default();
    if limits {
        let subject = ratelimit::subject_of(&state, resolved.as_ref(), &req);
        let outcome = state.limiter.check(subject, state.now_ms()).await;
        if outcome.retry_after_s.is_some() {
            tracing::info!(policy = outcome.policy.name(), "rate limit: refused");
            let mut resp = ratelimit::refusal(&outcome).into_response();
            ratelimit::write_headers(resp.headers_mut(), &[outcome]);
            return Ok(resp);
        }
        per.outcomes.push(outcome);
    }
    if quotas {
        per.usage = quota::usage_subject(&state, resolved.as_ref()).await;
    }
    if let Some(resolved) = resolved {
        req.extensions_mut().insert(resolved);
    }
    let mut scoped = std::pin::pin!(FRONT.scope(RefCell::new(per), inner.call(req)));
    let Ok(mut resp) = scoped.as_mut().await;
    let per = scoped
        .as_mut()
        .take_value()
        .map(RefCell::into_inner)
        .unwrap_or_default();
    ratelimit::write_headers(resp.headers_mut(), &per.outcomes);
    if let Some(w) = per.warning
        && let Ok(v) = HeaderValue::from_str(&w)
    {
        resp.headers_mut().insert("bonafide-quota-warning", v);
    }
    if let Some(usage) = per.usage {
        quota::count_usage(&state, usage, &mut resp);
    }
    Ok(resp)
}
