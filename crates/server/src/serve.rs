//! How connections are served: hyper's HTTP/1 under the bounds that keep slow or idle
//! clients from holding the server (`Config::header_read_timeout`, `idle_timeout`,
//! `request_timeout`, `max_connections`).
//!
//! A connection is always in one phase, each with its own bound:
//! - awaiting a request's headers: from the connection's start (its first request) or
//!   from the request's first byte (later ones), `header_read_timeout`;
//! - busy, from the headers until the answer is written: no connection bound, the
//!   request timeout (middleware [`RequestTimeoutLayer`]) bounds receiving and deciding;
//! - idle between requests: `idle_timeout` for the next one's first byte.
//!
//! A watchdog per connection closes it when its phase's deadline passes. hyper's own
//! `header_read_timeout` is not used: it starts when hyper waits for a head, idle wait
//! included, so it cannot tell an idle keep-alive connection from a slow header.
//! A write that makes no progress for `request_timeout` (a client that stopped reading
//! its answer) fails the connection. At most `max_connections` are served: the accept
//! loop takes a slot before accepting, so further connections wait in the kernel's
//! backlog until one closes.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, Sleep};
use tower::{Layer, Service, ServiceExt};

use crate::error::{ApiError, ErrorCode};
use crate::request_id;

/// The connection bounds, from [`crate::Config`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub header_read: Duration,
    pub idle: Duration,
    pub request: Duration,
    pub max_connections: usize,
}

/// Accepts and serves connections on `listener` until `shutdown` resolves, then
/// stops accepting, lets every connection finish its request in flight, and returns.
pub(crate) async fn serve(
    listener: TcpListener,
    app: Router,
    limits: Limits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) {
    let slots = Arc::new(Semaphore::new(
        limits.max_connections.clamp(1, Semaphore::MAX_PERMITS),
    ));
    let (stop, stopped) = watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        // A slot first: with every slot taken, new connections wait unaccepted.
        let permit = tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(done) = connections.join_next() => {
                if let Err(e) = done {
                    tracing::error!(error = %e, "connection task failed");
                }
                continue;
            }
            permit = Arc::clone(&slots).acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break, // never closed
            },
        };
        let (stream, peer) = tokio::select! {
            biased;
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) if is_connection_error(&e) => continue,
                Err(e) => {
                    // Out of file descriptors and the like: wait rather than spin.
                    tracing::error!(error = %e, "accept failed");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        connections.spawn(connection(
            stream,
            peer,
            app.clone(),
            limits,
            permit,
            stopped.clone(),
        ));
    }
    drop(listener);
    let _ = stop.send(true);
    while let Some(done) = connections.join_next().await {
        if let Err(e) = done {
            tracing::error!(error = %e, "connection task failed");
        }
    }
}

/// Errors of one incoming connection (it went away before we took it), not of the
/// listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Serves one connection until it ends, its phase's deadline passes, or the server
/// stops (then its request in flight is finished first). Holds its slot throughout.
async fn connection(
    stream: TcpStream,
    peer: std::net::SocketAddr,
    app: Router,
    limits: Limits,
    _slot: OwnedSemaphorePermit,
    mut stopped: watch::Receiver<bool>,
) {
    let clock = Arc::new(ConnClock::new(limits));
    let io = TokioIo::new(Watched {
        io: stream,
        clock: Arc::clone(&clock),
        stall: None,
        stall_limit: limits.request,
    });
    let service = hyper::service::service_fn({
        let clock = Arc::clone(&clock);
        move |mut req: Request<Incoming>| {
            // The peer's address, for rate limits by client address.
            req.extensions_mut()
                .insert(axum::extract::ConnectInfo(peer));
            // Busy until the answer's body is dropped: written, or abandoned.
            let busy = clock.begin_request();
            let app = app.clone();
            async move {
                let resp = app.oneshot(req).await?;
                Ok::<_, Infallible>(resp.map(|body| Body::new(Answer { body, _busy: busy })))
            }
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    // Ours is the header bound (see the module doc); hyper's would also cut idle waits.
    builder.header_read_timeout(None);
    let mut conn = pin!(builder.serve_connection(io, service));
    let mut expired = pin!(clock.expired());
    let mut stopping = false;
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                return;
            }
            why = &mut expired => {
                // Dropping the connection closes the socket.
                tracing::debug!(why, "connection closed");
                return;
            }
            _ = stopped.wait_for(|s| *s), if !stopping => {
                stopping = true;
                conn.as_mut().graceful_shutdown();
            }
        }
    }
}

/// Which phase a connection is in, and until when it may stay there (`None`: no
/// bound, or a bound too far to represent).
#[derive(Debug, Clone, Copy)]
enum Phase {
    Head(Option<Instant>),
    Busy(usize),
    Idle(Option<Instant>),
}

/// One connection's phase, shared by its reads, its requests and its watchdog.
#[derive(Debug)]
struct ConnClock {
    limits: Limits,
    phase: Mutex<Phase>,
    /// Mirrors `phase == Idle`, so a read checks it without the lock.
    idle: AtomicBool,
    changed: Notify,
}

impl ConnClock {
    fn new(limits: Limits) -> Self {
        ConnClock {
            limits,
            phase: Mutex::new(Phase::Head(after(limits.header_read))),
            idle: AtomicBool::new(false),
            changed: Notify::new(),
        }
    }

    fn set(&self, phase: &mut Phase, next: Phase) {
        *phase = next;
        self.idle
            .store(matches!(next, Phase::Idle(_)), Ordering::Release);
        self.changed.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Phase> {
        self.phase.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Bytes arrived: if the connection was idle, a request has begun.
    fn on_bytes(&self) {
        if self.idle.load(Ordering::Acquire) {
            let mut phase = self.lock();
            if matches!(*phase, Phase::Idle(_)) {
                self.set(&mut phase, Phase::Head(after(self.limits.header_read)));
            }
        }
    }

    /// A request's headers were read and it goes to the router.
    fn begin_request(self: &Arc<Self>) -> Busy {
        let mut phase = self.lock();
        let n = match *phase {
            Phase::Busy(n) => n + 1,
            _ => 1,
        };
        self.set(&mut phase, Phase::Busy(n));
        Busy(Arc::clone(self))
    }

    fn end_request(&self) {
        let mut phase = self.lock();
        let next = match *phase {
            Phase::Busy(n) if n > 1 => Phase::Busy(n - 1),
            _ => Phase::Idle(after(self.limits.idle)),
        };
        self.set(&mut phase, next);
    }

    /// Resolves when the current phase outlives its bound, with what was awaited.
    async fn expired(&self) -> &'static str {
        loop {
            // Registered before the phase is read, so no change is missed.
            let mut changed = pin!(self.changed.notified());
            changed.as_mut().enable();
            let (deadline, why) = match *self.lock() {
                Phase::Head(d) => (d, "request headers not received in time"),
                Phase::Idle(d) => (d, "idle past the keep-alive timeout"),
                Phase::Busy(_) => (None, ""),
            };
            match deadline {
                Some(d) if d <= Instant::now() => return why,
                Some(d) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(d) => {}
                        () = changed => {}
                    }
                }
                None => changed.await,
            }
        }
    }
}

/// `now + d`, or `None` (never) if that is past what an `Instant` can hold.
fn after(d: Duration) -> Option<Instant> {
    Instant::now().checked_add(d)
}

/// A request in progress on its connection; dropping it ends the request.
#[derive(Debug)]
struct Busy(Arc<ConnClock>);

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.end_request();
    }
}

/// An answer's body, holding its request busy until hyper is done with it.
#[derive(Debug)]
struct Answer {
    body: Body,
    _busy: Busy,
}

impl HttpBody for Answer {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The socket, telling the clock when bytes arrive and failing a write that makes no
/// progress for `stall_limit`.
#[derive(Debug)]
struct Watched {
    io: TcpStream,
    clock: Arc<ConnClock>,
    stall: Option<Pin<Box<Sleep>>>,
    stall_limit: Duration,
}

impl Watched {
    fn written(
        &mut self,
        cx: &mut Context<'_>,
        r: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        if r.is_ready() {
            self.stall = None;
            return r;
        }
        let limit = self.stall_limit;
        let stall = self
            .stall
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match stall.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the client stopped reading its answer",
            ))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = Pin::new(&mut self.io).poll_read(cx, buf);
        if matches!(r, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.clock.on_bytes();
        }
        r
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write(cx, buf);
        self.written(cx, r)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.written(cx, r)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// Middleware: a request must be received and answered within the limit. Past it,
/// a body still arriving is answered 408 `REQUEST_TIMEOUT` (the client is slow), an
/// answer not ready 503 `TIMEOUT` (we are); both close the connection. Dropping the
/// handler loses only its answer: a decision already handed to the audit committer,
/// or a write running in its spawned task, completes whole all the same.
#[derive(Clone)]
pub(crate) struct RequestTimeoutLayer(pub Duration);

impl<S> Layer<S> for RequestTimeoutLayer {
    type Service = RequestTimeout<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RequestTimeout {
            inner,
            limit: self.0,
        }
    }
}

/// A service bounded by [`RequestTimeoutLayer`]'s limit.
#[derive(Clone)]
pub(crate) struct RequestTimeout<S> {
    inner: S,
    limit: Duration,
}

impl<S> Service<Request> for RequestTimeout<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = RequestTimeoutFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let received = Arc::new(AtomicBool::new(false));
        let req = req.map(|body| {
            if body.is_end_stream() {
                received.store(true, Ordering::Release);
            }
            Body::new(Received {
                body,
                received: Arc::clone(&received),
            })
        });
        let method = req.method().clone();
        RequestTimeoutFuture {
            inner: tokio::time::timeout(self.limit, self.inner.call(req)),
            late: Late {
                received,
                method,
                limit: self.limit,
            },
        }
    }
}

/// What a late request's answer needs.
struct Late {
    received: Arc<AtomicBool>,
    method: axum::http::Method,
    limit: Duration,
}

impl Late {
    fn answer(&self) -> Response {
        let secs = self.limit.as_secs_f64();
        let err = if self.received.load(Ordering::Acquire) {
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                ErrorCode::Timeout,
                format!(
                    "no answer within {secs} s; what the request did may still be \
                     recorded (retry a spend with the same idempotency_key)"
                ),
            )
        } else {
            ApiError::new(
                StatusCode::REQUEST_TIMEOUT,
                ErrorCode::RequestTimeout,
                format!("the request was not received within {secs} s"),
            )
        };
        tracing::warn!(
            request_id = %request_id::current(),
            method = %self.method,
            status = err.status.as_u16(),
            "request timed out"
        );
        let mut resp = err.into_response();
        resp.headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
        resp
    }
}

pin_project! {
    /// The future of a [`RequestTimeout`] service.
    pub(crate) struct RequestTimeoutFuture<F> {
        #[pin]
        inner: tokio::time::Timeout<F>,
        late: Late,
    }
}

impl<F> Future for RequestTimeoutFuture<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        match ready!(this.inner.poll(cx)) {
            Ok(out) => Poll::Ready(out),
            Err(_elapsed) => Poll::Ready(Ok(this.late.answer())),
        }
    }
}

/// A request body that notes when it has been received in full.
#[derive(Debug)]
struct Received {
    body: Body,
    received: Arc<AtomicBool>,
}

impl HttpBody for Received {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let r = Pin::new(&mut self.body).poll_frame(cx);
        if matches!(r, Poll::Ready(None)) || self.body.is_end_stream() {
            self.received.store(true, Ordering::Release);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
