//! Bonafide's HTTP API (axum): the registry, verification and revocation.
//!
//! Architecture invariant: only this crate knows HTTP status codes. Domain errors
//! from core and store are mapped once, in [`error`]. Tokens and API keys never
//! reach a log line: the access log records the route template, not the path.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::{get, post, put};
use bonafide_core::keys::Algorithm;
use bonafide_store::{Store, StoreError};
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;

pub mod accounts;
pub mod audit;
pub mod audit_archive;
pub mod auth;
pub mod bounded;
pub mod cache;
pub mod compat;
pub mod cors;
pub mod decision;
pub mod delegation;
pub mod error;
pub mod events;
pub mod fetch;
pub mod front;
mod layers;
pub mod metrics;
pub mod openapi;
pub mod proof;
pub mod quota;
pub mod ratelimit;
pub mod request_id;
pub mod rotation;
pub mod routes;
pub mod sealing;
mod serve;
pub mod state;
pub mod status_lists;
pub mod stored_receipt;
pub mod time;
pub mod token_check;
pub mod verdict;
pub mod write;

pub use state::AppState;

use error::{ApiError, ErrorCode};
use layers::HookLayer;

/// Server settings. Every field has a default ([`Config::default`]).
#[derive(Debug, Clone)]
pub struct Config {
    /// Base URL receivers reach this registry at; the `iss` of its tokens and the
    /// host of agents' `did:web`. Default: `http://` + the bound address.
    pub public_url: String,
    /// Algorithm of a newly created signing key. Default RS256 (ImaRobot's).
    pub signing_alg: Algorithm,
    /// Clock-skew leeway, seconds. Default 60.
    pub leeway_secs: i64,
    /// Longest token accepted, bytes. Default 8192.
    pub max_token_bytes: usize,
    /// Largest request body, bytes. Default 64 KiB.
    pub max_body_bytes: usize,
    /// Token lifetime when the issuer names none, seconds. Default 86400.
    pub default_token_ttl_s: i64,
    /// Longest token lifetime an issuer may ask for, and the longest any token the
    /// registry accepts may live from its `iat`, seconds. Default 30 days; at most
    /// [`MAX_TOKEN_TTL_CEILING_S`] (1 year, ImaRobot's longest expiry). A longer
    /// one also keeps a revoked token's entry in memory longer (until its `exp`).
    pub max_token_ttl_s: i64,
    /// How often signing keys, issuers' keys, revocations and suspensions are re-read
    /// from the store. Default 5 s.
    pub key_refresh: Duration,
    /// Write every verify decision to the audit log (and answer only once it is
    /// durable). Default on; off exists to measure what the log costs. State changes
    /// are logged either way.
    pub audit_verify: bool,
    /// Origin of the audit log's checkpoints, used when the log is created. Default:
    /// the public URL's host and path + `/audit`.
    pub audit_origin: Option<String>,
    /// How often a checkpoint is signed while the log grows. Default 500 ms.
    pub checkpoint_interval: Duration,
    /// How long an `idempotency_key` is remembered: a retry within this time gets the
    /// first decision back. Default 24 hours (records are purged hourly after that).
    pub idempotency_ttl: Duration,
    /// How long stored receipts are kept: older ones are purged hourly (their audit
    /// entries stay, so the decision remains provable). Default `None`: kept for ever.
    pub receipt_retention: Option<Duration>,
    /// Where the pruned prefix of the audit log is read from: the export `bonafide
    /// audit export` wrote (a directory or an http(s) base URL). Default `None`: reads
    /// of pruned records fail with `AUDIT_ARCHIVE_UNAVAILABLE`, and nothing is pruned.
    pub audit_archive: Option<Arc<audit_archive::AuditArchive>>,
    /// A Status List Token's `ttl`: how long receivers may cache it (also its
    /// `Cache-Control: max-age`). Default 60 s.
    pub status_list_ttl: Duration,
    /// How long a Status List Token is valid (`exp` − `iat`); lists are re-signed
    /// every 5 minutes (or half of it, if shorter). Default 1 hour.
    pub status_list_validity: Duration,
    /// Publish the status lists (sign, log and store a version when statuses change).
    /// Default on. Off, tokens still name their slots and nothing is published:
    /// for tests that count the audit log's entries exactly, which the publisher's
    /// entries would interleave with. Not a CLI flag.
    pub publish_status_lists: bool,
    /// Entries per status list (2 bits each). Default 2^20 (256 KiB uncompressed);
    /// a list takes tokens until half full.
    pub status_list_size: u64,
    /// Longest fetch of an issuer's JWKS for domain verification (DNS, connect, TLS,
    /// body). Default 5 s.
    pub jwks_fetch_timeout: Duration,
    /// Largest JWKS body fetched for domain verification, bytes. Default 256 KiB.
    pub jwks_fetch_max_bytes: usize,
    /// How long a domain verification counts: after it, verify answers say
    /// `registered` again until the issuer verifies the domain anew. Default 30 days.
    pub domain_verification_ttl: Duration,
    /// TEST ONLY. Lets domain verification fetch a `jwks_url` of plain
    /// `http://127.0.0.1:<port>` or `http://localhost:<port>` (loopback hosts and
    /// addresses only; private and link-local stay refused), so tests can serve a
    /// JWKS without DNS or TLS. Default false. Never on in production: it lets an
    /// issuer make the registry call its own loopback services. Not a CLI flag.
    pub allow_insecure_loopback_fetch: bool,
    /// Most hops a delegation chain may go from its root token (`POST /v1/token`):
    /// a root token's child is 1 hop. Default 4; at most 8 (`MAX_ACT_DEPTH`).
    pub max_delegation_depth: usize,
    /// Longest a client may take to send a request's headers: from the connection's
    /// start for its first request, from the request's first byte for later ones.
    /// Past it the connection is closed without an answer. Default 10 s.
    pub header_read_timeout: Duration,
    /// Longest a keep-alive connection may wait, between requests, for the next one
    /// to begin; then it is closed. Default 75 s: longer than the 60 s idle timeout
    /// of common load balancers, so a proxy never reuses a connection just closed.
    pub idle_timeout: Duration,
    /// Longest from a request's headers to its answer, the body's arrival included:
    /// a body not received by then is answered 408 `REQUEST_TIMEOUT`, an answer not
    /// ready 503 `TIMEOUT`, both closing the connection. Also the longest an answer
    /// may wait for a client that stopped reading it. Default 30 s.
    pub request_timeout: Duration,
    /// Most connections served at once; further ones wait, unaccepted, until one
    /// closes. Keep it below the process's file-descriptor limit, which the store and
    /// outbound fetches share. Default 512.
    pub max_connections: usize,
    /// Where time is read (grace periods, expiry, windows, audit times). Default the
    /// system clock; tests inject a [`time::ManualClock`].
    pub clock: std::sync::Arc<dyn time::Clock>,
    /// Push events: the first wait after a webhook delivery fails; it doubles with
    /// each failure in a row (at most an hour). Default 1 s.
    pub webhook_retry_base: Duration,
    /// Push events: failures in a row after which a webhook is paused (its receiver
    /// sees why and resumes it). Default 10.
    pub webhook_max_failures: u32,
    /// Push events: most Server-Sent Event streams one receiver may hold open at once
    /// on one replica (over it: 429 `RATE_LIMITED`). Each stream holds a connection
    /// and a reader; a receiver needs one per filter. Default 8, from 1 to 10,000.
    pub max_event_streams_per_receiver: usize,
    /// The key-encryption key every stored private key is sealed under
    /// ([`sealing`]). Default `None`: a random KEK made once per process
    /// ([`sealing::ephemeral_kek`]), so keys it seals open only in this process; the
    /// CLI always sets one.
    pub kek: Option<std::sync::Arc<bonafide_core::sealed::Kek>>,
    /// Rate limits ([`ratelimit`]): per API key (by kind, or as an admin set for the
    /// key), per person, per client address without a key, per token issuer for
    /// anonymous verifies. Default off ([`ratelimit::RateLimits::off`]); `bonafide
    /// serve` starts with the seeds' defaults on.
    pub rate_limits: ratelimit::RateLimits,
    /// Peers whose `X-Forwarded-For` names the client's address (the right-most entry
    /// that is not itself a trusted proxy). Default none: the peer is the client.
    pub trusted_proxies: Vec<ratelimit::Cidr>,
    /// Monthly verification quotas per organisation ([`quota`]): the plans, and
    /// whether quotas are counted at all. Default off; `bonafide serve` turns them on
    /// with `free` = 10,000 verifications a month.
    pub plans: quota::Plans,
    /// Scheduled rotation of the registry's signing key ([`rotation`]): the active
    /// key is replaced once this old, the next key published in the JWKS at least
    /// [`rotation::PUBLISH_AHEAD_S`] plus `key_refresh` before it signs. Default
    /// `None`: rotated only when asked.
    pub signing_key_lifetime: Option<Duration>,
    /// Anyone may create an organisation (`POST /v1/orgs` without a key) and becomes
    /// its owner. Default off: the registry admin invites each organisation's first
    /// owner.
    pub open_signup: bool,
    /// Most live API keys one issuer or receiver may have (keys in a rotation's grace
    /// period included): each key has a rate-limit bucket of its own, so this bounds
    /// how far an identity multiplies its limit. `None`: no cap. Default 100. Admin
    /// keys are not capped.
    pub max_keys_per_identity: Option<u32>,
    /// How long security events (failed logins, refused refresh-token reuse) are
    /// kept; older ones are purged hourly. Default 30 days.
    pub security_event_retention: Duration,
    /// Serve the AgentOAuth playground's demo-token issuance
    /// (`/compat/agentoauth/playground/…`): a demo issuer whose key the registry
    /// holds signs consent tokens for anyone who asks, limited per client address.
    /// Default off.
    pub playground: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            public_url: String::new(),
            signing_alg: Algorithm::RS256,
            leeway_secs: bonafide_core::token::DEFAULT_LEEWAY_SECS,
            max_token_bytes: bonafide_core::token::DEFAULT_MAX_TOKEN_BYTES,
            max_body_bytes: 64 * 1024,
            default_token_ttl_s: 86_400,
            max_token_ttl_s: bonafide_core::token::DEFAULT_MAX_LIFETIME_SECS,
            key_refresh: Duration::from_secs(5),
            audit_verify: true,
            audit_origin: None,
            checkpoint_interval: Duration::from_millis(500),
            idempotency_ttl: Duration::from_secs(24 * 3600),
            receipt_retention: None,
            audit_archive: None,
            status_list_ttl: Duration::from_secs(60),
            status_list_validity: Duration::from_secs(3600),
            status_list_size: 1 << 20,
            publish_status_lists: true,
            jwks_fetch_timeout: Duration::from_secs(5),
            jwks_fetch_max_bytes: 256 * 1024,
            domain_verification_ttl: Duration::from_secs(30 * 86_400),
            allow_insecure_loopback_fetch: false,
            max_delegation_depth: bonafide_core::delegation::DEFAULT_MAX_DEPTH,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(75),
            request_timeout: Duration::from_secs(30),
            max_connections: 512,
            clock: std::sync::Arc::new(time::SystemClock),
            webhook_retry_base: Duration::from_secs(1),
            webhook_max_failures: 10,
            max_event_streams_per_receiver: 8,
            kek: None,
            rate_limits: ratelimit::RateLimits::off(),
            trusted_proxies: Vec::new(),
            plans: quota::Plans::default(),
            signing_key_lifetime: None,
            open_signup: false,
            max_keys_per_identity: Some(100),
            security_event_retention: Duration::from_secs(30 * 86_400),
            playground: false,
        }
    }
}

/// The most [`Config::max_token_ttl_s`] may be: 365 days.
pub const MAX_TOKEN_TTL_CEILING_S: i64 = 365 * 86_400;

/// The shortest token lifetime anywhere (a shorter token may expire before use).
pub const MIN_TOKEN_TTL_S: i64 = 60;

impl Config {
    /// Checks the settings that have bounds: `max_token_ttl_s`. (A default lifetime
    /// over it is left as it was: registrations then must name a shorter one.)
    pub fn check(&self) -> Result<(), ServerError> {
        if !(MIN_TOKEN_TTL_S..=MAX_TOKEN_TTL_CEILING_S).contains(&self.max_token_ttl_s) {
            return Err(ServerError::Config(format!(
                "max_token_ttl must be between {MIN_TOKEN_TTL_S} s and {MAX_TOKEN_TTL_CEILING_S} s (365 days), not {} s",
                self.max_token_ttl_s
            )));
        }
        let max_entries = (bonafide_core::status_list::MAX_LIST_BYTES as u64) * 4;
        if !(1024..=max_entries).contains(&self.status_list_size) {
            return Err(ServerError::Config(format!(
                "status_list_size must be between 1024 and {max_entries} entries, not {}",
                self.status_list_size
            )));
        }
        let validity = self.status_list_validity.as_secs();
        if validity < 600 {
            return Err(ServerError::Config(format!(
                "status_list_validity must be at least 10 minutes, not {validity} s"
            )));
        }
        if let Some(lifetime) = self.signing_key_lifetime {
            let min = rotation::min_lifetime(self.key_refresh);
            if lifetime < min {
                return Err(ServerError::Config(format!(
                    "signing_key_lifetime must be at least {} (the next key is published {} s ahead), not {} s",
                    crate::time::human_duration(min),
                    rotation::publish_ahead(self.key_refresh).as_secs(),
                    lifetime.as_secs()
                )));
            }
        }
        let streams = self.max_event_streams_per_receiver;
        if !(1..=10_000).contains(&streams) {
            return Err(ServerError::Config(format!(
                "max_event_streams_per_receiver must be from 1 to 10000, not {streams}"
            )));
        }
        let ttl = self.status_list_ttl.as_secs();
        if ttl == 0 || ttl > validity / 2 {
            return Err(ServerError::Config(format!(
                "status_list_ttl must be between 1 s and half the list's validity ({} s), not {ttl} s",
                validity / 2
            )));
        }
        Ok(())
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {reason}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error, as text.
        reason: String,
    },
    /// The store failed while loading state.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    /// The audit log could not be opened.
    #[error("audit log: {0}")]
    Audit(#[from] audit::AuditLogError),
    /// The registry's stored private keys cannot be used with this KEK.
    #[error("{0}")]
    Keys(#[from] sealing::KeysError),
    /// Serving failed.
    #[error("server: {0}")]
    Serve(String),
    /// A setting is out of its bounds.
    #[error("configuration: {0}")]
    Config(String),
    /// The playground could not be set up.
    #[error("{0}")]
    Playground(#[from] compat::playground::PlaygroundError),
}

/// A bound, loaded server, ready to run.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    state: Arc<AppState>,
    /// `GET /metrics` without a key, for a scraper on a private address.
    metrics_listener: Option<TcpListener>,
}

impl Server {
    /// Binds `addr` and loads state from `store` (creating the first signing key).
    pub async fn bind(
        addr: SocketAddr,
        mut config: Config,
        store: Arc<dyn Store>,
    ) -> Result<Self, ServerError> {
        config.check()?;
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|e| ServerError::Bind {
                addr,
                reason: e.to_string(),
            })?;
        let local = listener.local_addr().map_err(|e| ServerError::Bind {
            addr,
            reason: e.to_string(),
        })?;
        if config.public_url.is_empty() {
            config.public_url = format!("http://{local}");
        }
        config.public_url = config.public_url.trim_end_matches('/').to_owned();
        let state = Arc::new(AppState::load(store, config).await?);
        if state.config.playground {
            let playground = compat::playground::Playground::setup(&state).await?;
            // Set once, here, before any request: `set` cannot fail.
            let _ = state.playground.set(playground);
        }
        Ok(Server {
            listener,
            state,
            metrics_listener: None,
        })
    }

    /// Also serves `GET /metrics` on `addr`, without a key (only that route): for a
    /// scraper on a private network. The bound address (useful with port 0).
    pub async fn bind_metrics(&mut self, addr: SocketAddr) -> Result<SocketAddr, ServerError> {
        let bind_err = |e: std::io::Error| ServerError::Bind {
            addr,
            reason: e.to_string(),
        };
        let listener = TcpListener::bind(addr).await.map_err(bind_err)?;
        let local = listener.local_addr().map_err(bind_err)?;
        self.metrics_listener = Some(listener);
        Ok(local)
    }

    /// The bound address (useful with port 0).
    pub fn local_addr(&self) -> Result<SocketAddr, ServerError> {
        self.listener
            .local_addr()
            .map_err(|e| ServerError::Serve(e.to_string()))
    }

    /// The shared state.
    pub fn state(&self) -> Arc<AppState> {
        Arc::clone(&self.state)
    }

    /// Serves until `shutdown` resolves, then drains in-flight requests. Connections are
    /// bounded as [`Config`]'s timeouts and `max_connections` say (see `serve.rs`).
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), ServerError> {
        let refresher = tokio::spawn(refresh(Arc::clone(&self.state)));
        let checkpoints = self
            .state
            .audit
            .run_checkpoints(self.state.config.checkpoint_interval);
        let purger = tokio::spawn(purge_idempotency(Arc::clone(&self.state)));
        let status_lists = self
            .state
            .config
            .publish_status_lists
            .then(|| tokio::spawn(status_lists::run(Arc::clone(&self.state))));
        let events = tokio::spawn(events::run(Arc::clone(&self.state)));
        let rotation = tokio::spawn(rotation::run(Arc::clone(&self.state)));
        let rate_limits = tokio::spawn(ratelimit::maintain(Arc::clone(&self.state)));
        let quotas = tokio::spawn(quota::maintain(Arc::clone(&self.state)));
        let departed = tokio::spawn(routes::api_keys::sweep_departed(Arc::clone(&self.state)));
        let webhooks = tokio::spawn(events::webhooks::run(Arc::clone(&self.state)));
        // Proofs read the upper levels of the tree from memory once warm; a failure
        // only leaves them to be read on demand.
        let warmer = {
            let state = Arc::clone(&self.state);
            tokio::spawn(async move {
                let warmed = match state.store.audit_size().await {
                    Ok(size) => state.audit.warm_upper_hashes(size).await,
                    Err(e) => Err(e),
                };
                if let Err(e) = warmed {
                    tracing::debug!(error = %e, "audit hashes not preloaded; read on demand");
                }
            })
        };
        let config = &self.state.config;
        let limits = serve::Limits {
            header_read: config.header_read_timeout,
            idle: config.idle_timeout,
            request: config.request_timeout,
            max_connections: config.max_connections,
        };
        let metrics = self.metrics_listener.map(|listener| {
            let app = Router::new()
                .route("/metrics", get(routes::meta::metrics_keyless))
                .fallback(not_found)
                .with_state(Arc::clone(&self.state));
            // The main listener's bounds (timeouts, connection cap), and `no-store`.
            let app = app.layer(HookLayer(cache::NoStoreByDefault));
            tokio::spawn(serve::serve(listener, app, limits, std::future::pending()))
        });
        let app = router(Arc::clone(&self.state));

        // Event streams never end by themselves: shutting down ends them, so their
        // connections drain like any other.
        let hub = Arc::clone(&self.state);
        let shutdown = async move {
            shutdown.await;
            hub.events.close();
        };
        serve::serve(self.listener, app, limits, shutdown).await;
        events.abort();
        rotation.abort();
        rate_limits.abort();
        quotas.abort();
        departed.abort();
        // What this replica counted since the last flush (usage, not the quota,
        // which is counted in the store as it is admitted).
        if let Err(e) = self
            .state
            .quotas
            .flush_usage(self.state.store.as_ref())
            .await
        {
            tracing::warn!(error = %e, "usage counts of the last interval not saved");
        }
        webhooks.abort();
        refresher.abort();
        checkpoints.abort();
        purger.abort();
        if let Some(status_lists) = status_lists {
            status_lists.abort();
        }
        warmer.abort();
        if let Some(metrics) = metrics {
            metrics.abort();
        }
        Ok(())
    }
}

/// Forgets idempotency keys older than [`Config::idempotency_ttl`], hourly (and at
/// start), so the table stays bounded by a day of spending traffic; signed-action
/// nonces past their window (`verify-action`'s replay cache); and receipts past
/// [`Config::receipt_retention`] ([`AppState::purge_receipts`]).
async fn purge_idempotency(state: Arc<AppState>) {
    let ttl_ms = i64::try_from(state.config.idempotency_ttl.as_millis()).unwrap_or(i64::MAX);
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        match state.purge_receipts().await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "receipts past their retention dropped"),
            Err(e) => tracing::warn!(error = %e, "could not purge receipts"),
        }
        let before = state.now_ms().saturating_sub(ttl_ms);
        match state.store.purge_idempotency(before).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired idempotency keys forgotten"),
            Err(e) => tracing::warn!(error = %e, "could not purge idempotency keys"),
        }
        let retention_ms =
            i64::try_from(state.config.security_event_retention.as_millis()).unwrap_or(i64::MAX);
        match state
            .store
            .purge_security_events(state.now_ms().saturating_sub(retention_ms))
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "security events past their retention dropped"),
            Err(e) => tracing::warn!(error = %e, "could not purge security events"),
        }
        match state.store.purge_action_nonces(state.now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(purged = n, "expired action nonces forgotten"),
            Err(e) => tracing::warn!(error = %e, "could not purge action nonces"),
        }
    }
}

/// Reads what other processes committed into the read model: as soon as the store
/// signals a commit by another replica (PostgreSQL's `NOTIFY`), and at least every
/// [`Config::key_refresh`], which catches up after a lost signal or a dropped
/// listening connection. The feed is the source of truth; the signal only says when.
async fn refresh(state: Arc<AppState>) {
    let mut signal = state.store.change_signal();
    let mut failing = false;
    loop {
        signal.wait(state.config.key_refresh).await;
        match state.refresh().await {
            Ok(()) if failing => {
                tracing::info!("the read model is refreshed again");
                failing = false;
            }
            Ok(()) => {}
            // Once per outage, not once per wake.
            Err(e) if !failing => {
                tracing::warn!(error = %e, "could not refresh the read model; retrying");
                failing = true;
            }
            Err(_) => {}
        }
    }
}

/// The full router over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    let max_body = state.config.max_body_bytes;
    let request_timeout = state.config.request_timeout;
    let app = Router::new()
        .route("/v1/issuers", post(routes::admin::create_issuer))
        .route("/v1/receivers", post(routes::admin::create_receiver))
        .route(
            "/v1/receivers/{id}/audiences",
            put(routes::admin::set_audiences),
        )
        .route("/v1/policies/lint", post(routes::policies::lint))
        .route("/v1/policies/revoke", post(routes::policies::revoke))
        .route("/v1/simulate", post(routes::verify::simulate))
        .route("/v1/receipts/{id}", get(routes::receipts::get))
        .route("/v1/admin/keys/rotate", post(routes::admin::rotate_keys))
        .route("/v1/admin/api-keys", get(routes::admin::admin_keys))
        .route("/v1/admin/audit/prune", post(routes::audit_prune::prune))
        .route(
            "/v1/api-keys",
            post(routes::api_keys::create).get(routes::api_keys::list),
        )
        .route("/v1/api-keys/{id}/revoke", post(routes::api_keys::revoke))
        .route("/v1/api-keys/{id}/rotate", post(routes::api_keys::rotate))
        .route("/v1/oauth/token", post(routes::api_keys::oauth_token))
        .route("/v1/admin/rate-limits", get(routes::rate_limits::list))
        .route(
            "/v1/admin/rate-limits/keys/{key_id}",
            put(routes::rate_limits::set_key).delete(routes::rate_limits::clear_key),
        )
        .route("/v1/usage", get(routes::usage::usage))
        .route(
            "/v1/admin/orgs/{id}/plan",
            put(routes::usage::set_plan).get(routes::usage::get_plan),
        )
        .route(
            "/v1/admin/api-keys/{id}/revoke",
            post(routes::admin::revoke_admin_key),
        )
        .route(
            "/v1/admin/api-keys/revoke",
            post(routes::admin::revoke_by_hash),
        )
        .route("/v1/agents/register", post(routes::agents::register))
        .route("/v1/agents", get(routes::agents::list))
        .route("/v1/agents/{id}", get(routes::agents::get))
        .route(
            "/v1/agents/{id}/issue-token",
            post(routes::agents::issue_token),
        )
        .route("/v1/agents/{id}/revoke", post(routes::agents::revoke))
        .route("/v1/agents/{id}/suspend", post(routes::agents::suspend))
        .route(
            "/v1/agents/{id}/reactivate",
            post(routes::agents::reactivate),
        )
        .route("/v1/agents/{id}/keys", put(routes::agent_keys::rotate))
        .route(
            "/v1/agents/{id}/verify-action",
            post(routes::verify_action::verify_action),
        )
        .route(
            "/agents/{id}/did.json",
            get(routes::agent_keys::did_document),
        )
        .route(
            "/agents/{id}/.well-known/http-message-signatures-directory",
            get(routes::agent_keys::signatures_directory),
        )
        .route("/v1/tokens/revoke", post(routes::agents::revoke_token))
        .route("/v1/token", post(routes::token_exchange::exchange))
        .route("/v1/issuer", get(routes::issuer_keys::me))
        .route(
            "/v1/issuer/keys",
            post(routes::issuer_keys::add).get(routes::issuer_keys::list),
        )
        .route(
            "/v1/issuer/keys/{kid}/revoke",
            post(routes::issuer_keys::revoke),
        )
        .route(
            "/v1/issuer/verify-domain",
            post(routes::issuer_domain::verify_domain),
        )
        .route("/v1/verify", post(routes::verify::verify_post))
        // A wildcard, so tokens with odd bytes (`/`) still get `valid:false`.
        .route(
            "/v1/verify/{*token}",
            get(routes::verify::verify_get).options(cors::preflight),
        )
        .route("/v1/introspect", post(routes::verify::introspect))
        .route(
            "/.well-known/jwks.json",
            get(routes::meta::jwks).options(cors::preflight),
        )
        .route(
            "/.well-known/receipt-jwks.json",
            get(routes::meta::receipt_jwks).options(cors::preflight),
        )
        .route(
            "/.well-known/status-list-jwks.json",
            get(status_lists::jwks).options(cors::preflight),
        )
        .route(
            "/v1/status-lists/{id}",
            get(status_lists::get_list).options(cors::preflight),
        )
        .route("/v1/status-lists/allocations", post(status_lists::allocate))
        .route(
            "/.well-known/event-jwks.json",
            get(routes::meta::event_jwks).options(cors::preflight),
        )
        .route(
            "/.well-known/ssf-configuration",
            get(routes::events::ssf_configuration),
        )
        .route("/v1/events", get(routes::events::stream_events))
        .route("/v1/events/ack", post(routes::events::ack))
        .route("/v1/events/acks", get(routes::events::acks))
        .route(
            "/v1/webhooks",
            post(routes::events::create_webhook).get(routes::events::list_webhooks),
        )
        .route(
            "/v1/webhooks/{id}",
            axum::routing::delete(routes::events::delete_webhook),
        )
        .route(
            "/v1/webhooks/{id}/resume",
            post(routes::events::resume_webhook),
        )
        .route(
            "/.well-known/public-key.pem",
            get(routes::meta::public_key_pem).options(cors::preflight),
        )
        .route(
            "/.well-known/bonafide-configuration",
            get(routes::meta::configuration).options(cors::preflight),
        )
        .route(
            "/v1/audit/checkpoint",
            get(routes::audit::checkpoint).options(cors::preflight),
        )
        .route("/v1/audit/entries", get(routes::audit::entries))
        .route("/v1/audit/proof/inclusion", get(routes::audit::inclusion))
        .route(
            "/v1/audit/proof/consistency",
            get(routes::audit::consistency),
        )
        .route("/v1/audit/proof/bundle", get(routes::audit::bundle))
        .route("/v1/audit/tile/{*path}", get(routes::audit::tile))
        .route(
            "/v1/scopes",
            get(routes::meta::scopes).options(cors::preflight),
        )
        .route("/v1/health", get(routes::meta::health))
        .route(
            "/health",
            get(routes::meta::health_alias).options(cors::preflight),
        )
        .route("/healthz", get(routes::meta::healthz))
        .route("/metrics", get(routes::meta::metrics))
        .route("/openapi.json", get(routes::meta::openapi))
        // Organisations, people and sessions (issue 18).
        .merge(routes::accounts::routes())
        // Other products' paths and shapes over the same checks (issue 21).
        .merge(compat::routes())
        .route_layer(HookLayer(cors::AllowAnyOrigin))
        .route_layer(HookLayer(AccessLog))
        .route_layer(HookLayer(CountRequest(Arc::clone(&state))))
        .route_layer(HookLayer(cache::PublicRoutes))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed);
    let app = app
        // The credential resolved once, its rate limit spent before any handler reads
        // a body, usage counts and quota headers; inside the request id and `no-store`.
        .layer(front::FrontLayer(Arc::clone(&state)))
        .with_state(state);
    around_every_route(app, max_body, request_timeout)
}

/// The layers around every route and the fallback, innermost first: the body limit;
/// the request timeout; a caught panic's 500; `no-store` unless the answer set its
/// own `Cache-Control`; the request id, whose scope the others run in (so a
/// timeout's or a panic's answer carries the id and is `no-store` too).
fn around_every_route(app: Router, max_body: usize, request_timeout: Duration) -> Router {
    app.layer(DefaultBodyLimit::max(max_body))
        .layer(serve::RequestTimeoutLayer(request_timeout))
        .layer(CatchPanicLayer::custom(|_panic| {
            ApiError::internal("handler panicked").into_response()
        }))
        .layer(HookLayer(cache::NoStoreByDefault))
        .layer(request_id::RequestIdLayer)
}

/// One log line per request: method, route template (never the raw path, which may
/// hold a token), status, latency, request id.
#[derive(Clone)]
struct AccessLog;

impl layers::Hook for AccessLog {
    type Noted = Option<(Instant, axum::http::Method, Option<MatchedPath>)>;

    fn before(&self, req: &Request) -> Self::Noted {
        if !tracing::enabled!(tracing::Level::INFO) {
            return None;
        }
        let route = req.extensions().get::<MatchedPath>().cloned();
        Some((Instant::now(), req.method().clone(), route))
    }

    fn after<B>(&self, noted: Self::Noted, resp: &mut axum::http::Response<B>) {
        let Some((started, method, route)) = noted else {
            return;
        };
        tracing::info!(
            request_id = %request_id::current(),
            %method,
            route = route.as_ref().map_or("-", MatchedPath::as_str),
            status = resp.status().as_u16(),
            micros = started.elapsed().as_micros() as u64,
            "request"
        );
    }
}

/// Counts each routed request in the metrics by its route template (never the path).
#[derive(Clone)]
struct CountRequest(Arc<AppState>);

impl layers::Hook for CountRequest {
    type Noted = (Instant, axum::http::Method, Option<MatchedPath>);

    fn before(&self, req: &Request) -> Self::Noted {
        let route = req.extensions().get::<MatchedPath>().cloned();
        (Instant::now(), req.method().clone(), route)
    }

    fn after<B>(&self, (started, method, route): Self::Noted, resp: &mut axum::http::Response<B>) {
        let template = route.as_ref().map_or("unmatched", MatchedPath::as_str);
        self.0.metrics.observe_request(
            template,
            &method,
            resp.status().as_u16(),
            started.elapsed(),
        );
        if let Some(route) = route {
            resp.extensions_mut().insert(RouteTemplate(route));
        }
    }
}

/// The route template a request matched (`/v1/agents/{id}`), on its response for the
/// layers outside routing (usage counts).
#[derive(Debug, Clone)]
pub struct RouteTemplate(pub MatchedPath);

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "no such endpoint; see /openapi.json for the API",
    )
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::MethodNotAllowed,
        "method not allowed on this endpoint; see /openapi.json",
    )
}

#[cfg(test)]
mod tests {
    use axum::body::{Body, Bytes, to_bytes};
    use axum::http::header::{CACHE_CONTROL, CONNECTION};
    use tower::ServiceExt;

    use super::*;

    /// The outer layers around routes that panic, answer late, read a body, or set
    /// their own `Cache-Control`.
    fn app() -> Router {
        let routes = Router::new()
            .route(
                "/panic",
                get(|| async {
                    if std::hint::black_box(true) {
                        panic!("a handler that panics, on purpose");
                    }
                    "unreachable"
                }),
            )
            .route(
                "/slow",
                get(|| async {
                    tokio::time::sleep(Duration::from_secs(30)).await;
                    "late"
                }),
            )
            .route("/echo", post(|body: Bytes| async move { body }))
            .route(
                "/cached",
                get(|| async { ([(CACHE_CONTROL, "public, max-age=1")], "ok") }),
            );
        around_every_route(routes, 16, Duration::from_millis(200))
    }

    /// The answer's status, headers and JSON error body (`Null` when not JSON).
    async fn send(req: Request) -> (StatusCode, axum::http::HeaderMap, serde_json::Value) {
        let resp = app().oneshot(req).await.unwrap();
        let (parts, body) = resp.into_parts();
        let bytes = to_bytes(body, 1 << 16).await.unwrap();
        let json = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
        (parts.status, parts.headers, json)
    }

    fn get_req(path: &str) -> Request {
        Request::get(path).body(Body::empty()).unwrap()
    }

    /// An error's body names the request id its header carries.
    fn assert_id_matches(headers: &axum::http::HeaderMap, json: &serde_json::Value) {
        let id = headers["x-request-id"].to_str().unwrap();
        assert!(id.starts_with("req_"), "{id}");
        assert_eq!(json["error"]["request_id"], id);
    }

    #[tokio::test]
    async fn a_panic_is_a_500_with_the_request_id_and_no_store() {
        let (status, headers, json) = send(get_req("/panic")).await;
        assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(headers[CACHE_CONTROL], "no-store");
        assert_id_matches(&headers, &json);
    }

    #[tokio::test]
    async fn a_late_answer_is_a_503_that_closes_with_the_request_id_and_no_store() {
        let (status, headers, json) = send(get_req("/slow")).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(json["error"]["code"], "TIMEOUT");
        assert_eq!(headers[CONNECTION], "close");
        assert_eq!(headers[CACHE_CONTROL], "no-store");
        assert_id_matches(&headers, &json);
    }

    #[tokio::test]
    async fn a_body_over_the_limit_is_refused_and_one_under_it_read() {
        let big = Request::post("/echo")
            .body(Body::from(vec![b'x'; 17]))
            .unwrap();
        let (status, headers, _) = send(big).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_eq!(headers[CACHE_CONTROL], "no-store");
        assert!(headers.contains_key("x-request-id"));

        let small = Request::post("/echo").body(Body::from("abc")).unwrap();
        let resp = app().oneshot(small).await.unwrap();
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(to_bytes(resp.into_body(), 64).await.unwrap(), "abc");
    }

    #[tokio::test]
    async fn an_answer_keeps_its_own_cache_control_and_ids_differ() {
        let (status, first, _) = send(get_req("/cached")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(first[CACHE_CONTROL], "public, max-age=1");
        let (_, second, _) = send(get_req("/nowhere")).await;
        assert_eq!(second[CACHE_CONTROL], "no-store");
        assert_ne!(first["x-request-id"], second["x-request-id"]);
    }
}
