//! The receiver side without the registry: a tower [`Layer`](tower::Layer) that
//! authenticates every request an agent makes to your API and hands the handler a
//! [`VerifiedAgent`].
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use axum::{Router, routing::get};
//! use bonafide_client::receiver::{Config, JwksSource, Receiver, VerifiedAgent};
//!
//! let registry = "https://registry.example";
//! let config = Config::offline(JwksSource::url(format!("{registry}/.well-known/jwks.json")), registry)
//!     .public_base_url("https://api.example")
//!     .agent_keys_from_registry(registry);
//! let receiver = Receiver::new(config).await?;
//! let app: Router = Router::new()
//!     .route("/hello", get(|agent: VerifiedAgent| async move { format!("hello {}", agent.name) }))
//!     .layer(receiver.layer());
//! # Ok(()) }
//! ```
//!
//! What the layer does, per request (first failure decides, 401 with
//! `{"error":{"code","message"}}` and a `WWW-Authenticate` challenge unless noted):
//! 1. **Token**: `X-Agent-Token: <token>`, else `Authorization: DPoP <token>` or
//!    `Authorization: Bearer <token>`, each header once (`TOKEN_MISSING`,
//!    `TOKEN_INVALID`). With `X-Agent-Token` present, `Authorization` is the
//!    service's own (KairosAI's convention) and is ignored.
//! 2. **Offline mode**: [`bonafide_core::token::verify`] with the cached JWKS (pipeline
//!    steps 1–4: signature, `typ`, times with leeway, audience, issuer), then step 7
//!    for the policy hash. A `kid` the cache does not know triggers one refetch of a
//!    JWKS URL (at most once per [`JwksSource::Url::min_refetch`]); the JWKS is also
//!    refreshed in the background every [`JwksSource::Url::refresh`]. Codes:
//!    `TOKEN_INVALID`, `TOKEN_EXPIRED`, `TOKEN_NOT_YET_VALID`, `AUDIENCE_MISMATCH`,
//!    `ISSUER_UNKNOWN`.
//!
//!    **Status list** (offline, pipeline step 5): a token that names its entry in
//!    one of the registry's Token Status Lists (`status.status_list`) is checked
//!    against it ([`crate::status::StatusLists`], configured by
//!    [`Config::status_lists`]: on by default with a JWKS URL, trusting only that
//!    registry's `/v1/status-lists/`). Revoked: `TOKEN_REVOKED`; suspended:
//!    `AGENT_SUSPENDED` (the registry's codes); a list URI elsewhere is never
//!    fetched: 401 `STATUS_LIST_UNTRUSTED`. No list within the staleness bound: 503
//!    `STATUS_LIST_STALE` (`STATUS_LIST_UNAVAILABLE` when none was ever fetched), or,
//!    configured to fail open, the request passes and [`VerifiedAgent::status_list`]
//!    says why revocation was not checked. [`VerifiedAgent::revocation_checked`] is
//!    true offline only when the entry was read from a list within the bound, whose
//!    age [`VerifiedAgent::status_list`] carries. Without status lists (a static
//!    JWKS and none configured, or a token without `status`) revocation is **not**
//!    checked offline; use [`Mode::Online`] where a revocation must take effect at
//!    once.
//! 3. **Proof of possession** (step 6), when the token is bound (`cnf.jkt`):
//!    - presented as `Authorization: DPoP` (or `X-Agent-Token` with a `DPoP` header):
//!      exactly one `DPoP` header (RFC 9449 §4.3), verified by
//!      [`bonafide_core::dpop::verify`] with `htm` = the request method, `htu` =
//!      [`Config::public_base_url`] + the request path, `ath` = the token's hash, the
//!      proof key's thumbprint = `cnf.jkt`;
//!    - otherwise a `Signature-Input`/`Signature` pair (RFC 9421, Web Bot Auth
//!      profile, `keyid` = `cnf.jkt`, a `nonce` required) verified by
//!      [`bonafide_core::httpsig::verify`] over the request as
//!      [`Config::public_base_url`] + path and query, with the agent's public key from
//!      [`AgentKeySource`];
//!    - neither: `PROOF_REQUIRED`, with `WWW-Authenticate: DPoP error="invalid_token"`
//!      (RFC 9449 §7.1: a bound token is not a bearer token).
//!
//!    A proof that fails is `PROOF_INVALID`; one seen before is `REPLAY` (the
//!    [`replay::ReplayCache`], keyed by `(jkt, jti)` and `(keyid, nonce)`). An unbound
//!    token presented with the `DPoP` scheme is `PROOF_INVALID` (there is no key to
//!    bind the proof to); unbound tokens are otherwise accepted as bearer tokens
//!    unless [`ProofPolicy::require_binding`]. The registry refuses an unbound token
//!    of an agent that has its own key (`TOKEN_INVALID`, `BINDING_REQUIRED`, unless
//!    its issuer opted out); offline, nothing in the token says the agent has a key,
//!    so a receiver that wants that rule offline sets `require_binding`.
//! 4. **Online mode** ([`Mode::Online`]): steps 2–3 are the registry's: the layer
//!    sends the token and the proof to `POST {registry}/v1/verify` and trusts its
//!    answer (revocation included); a refusal carries the registry's code. An
//!    unreachable registry, a 5xx, or a refusal of the receiver's own key (401, 403,
//!    429) is 503 `REGISTRY_UNAVAILABLE`: the layer fails closed, and the agent is
//!    not blamed for the receiver's problem. A message signature sent with an unbound
//!    token is dropped and the token verified alone (as offline).
//! 5. The [`VerifiedAgent`] goes into the request's extensions; handlers take it as an
//!    extractor.
//!
//! Other statuses: 503 `REPLAY_CACHE_FULL` (with `Retry-After`) when the replay cache
//! is full of live proofs, 503 `KEYS_UNAVAILABLE` when a JWKS refetch needed for a
//! token fails and no key verifies it.
//!
//! **Why `public_base_url`.** A proof names the URL the agent meant to call. The
//! receiver must compare it with its own public URL, not with the `Host` header: the
//! client writes that header, so trusting it would let a proof made for another site
//! (same path) pass here, and behind a proxy the host and scheme the application sees
//! differ from the public ones anyway. Without `public_base_url` the layer accepts
//! only unbound tokens; bound ones get `PROOF_INVALID`.
//!
//! [`Receiver::authenticate`] is all of this without the HTTP response;
//! [`Receiver::authenticate_at`] the same at a given time.
//!
//! What this is not: a body-digest checker
//! (`content-digest` may be covered by a signature as a header; the body is not
//! hashed), or a scope/policy authoriser (the handler looks at
//! [`VerifiedAgent::scopes`]; the registry's `POST /v1/verify` decides policies and
//! budgets).

mod layer;
pub mod replay;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use bonafide_api::ErrorCode;
use bonafide_api::verify::VerifyResponse;
use bonafide_core::delegation;
use bonafide_core::dpop::{self, ProofCheck};
use bonafide_core::httpsig::{self, Message};
use bonafide_core::ids::AgentId;
use bonafide_core::keys::{Jwk, Jwks, VerifyingKey};
use bonafide_core::token::{
    AgentClaims, DEFAULT_LEEWAY_SECS, DEFAULT_MAX_TOKEN_BYTES, KeySet, TokenError, VerifyOptions,
};
use serde_json::{Value, json};

pub use layer::{AgentAuth, AgentAuthLayer};
use replay::{ProofNamespace, ReplayCache, ReplayError};

use crate::status::{StatusCheck, StatusError, StatusListConfig, StatusLists};
use crate::{Client, ClientError, load_jwks};

/// Default [`JwksSource::Url::refresh`]: 5 minutes.
pub const DEFAULT_JWKS_REFRESH: Duration = Duration::from_secs(300);
/// Default [`JwksSource::Url::min_refetch`]: 10 seconds.
pub const DEFAULT_JWKS_MIN_REFETCH: Duration = Duration::from_secs(10);
/// Default [`Config::proof_max_age_secs`]: 300, as core's DPoP and signature checks.
pub const DEFAULT_PROOF_MAX_AGE_SECS: i64 = dpop::DEFAULT_MAX_AGE_SECS;
/// Default time an agent's key directory is cached: 5 minutes.
pub const DEFAULT_AGENT_KEYS_TTL: Duration = Duration::from_secs(300);
/// Most agents whose key directories are cached at once.
pub const MAX_CACHED_AGENTS: usize = 10_000;
/// `algs` offered in DPoP challenges (RFC 9449 §7.1).
const DPOP_ALGS: &str = "EdDSA ES256 RS256";

/// Where the keys that sign agent tokens come from.
#[derive(Clone, Debug)]
pub enum JwksSource {
    /// A fixed key set (tests, or a JWKS shipped with the application).
    Static(Jwks),
    /// A JWKS URL (`https://`, or `http://` on loopback), fetched by [`Receiver::new`]
    /// and kept fresh.
    Url {
        /// The URL, e.g. `https://registry.example/.well-known/jwks.json`.
        url: String,
        /// Refetched in the background (the request in flight uses the cached keys)
        /// once the cache is this old. Default [`DEFAULT_JWKS_REFRESH`] (5 min). A
        /// failed refresh keeps the previous keys.
        refresh: Duration,
        /// A token naming a `kid` the cache does not know triggers an immediate
        /// refetch, at most once per this interval (so forged `kid`s cannot make the
        /// receiver hammer the registry). Default [`DEFAULT_JWKS_MIN_REFETCH`] (10 s).
        min_refetch: Duration,
    },
}

impl JwksSource {
    /// A JWKS URL with the default refresh intervals.
    pub fn url(url: impl Into<String>) -> Self {
        JwksSource::Url {
            url: url.into(),
            refresh: DEFAULT_JWKS_REFRESH,
            min_refetch: DEFAULT_JWKS_MIN_REFETCH,
        }
    }
}

/// Where the layer verifies tokens.
#[derive(Clone)]
pub enum Mode {
    /// Locally, with the cached JWKS and the layer's own replay cache (the default).
    Offline,
    /// By asking the registry: `POST {registry_url}/v1/verify` with the token and the
    /// proof, one call per request.
    Online {
        /// The registry's base URL, e.g. `https://registry.example`.
        registry_url: String,
        /// A receiver key (`bfk_rcv_…`) for attribution and quota; optional.
        api_key: Option<String>,
    },
}

impl std::fmt::Debug for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Mode::Offline => f.write_str("Offline"),
            Mode::Online {
                registry_url,
                api_key,
            } => f
                .debug_struct("Online")
                .field("registry_url", registry_url)
                .field("api_key", &api_key.as_ref().map(|_| "<redacted>"))
                .finish(),
        }
    }
}

/// Which proofs of possession are accepted for bound tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProofPolicy {
    /// Accept DPoP proofs (RFC 9449). Default true.
    pub dpop: bool,
    /// Accept HTTP message signatures (RFC 9421, Web Bot Auth). Default true.
    pub http_signature: bool,
    /// Refuse unbound (bearer) tokens with `PROOF_REQUIRED`. Default false: a token
    /// without `cnf` is a bearer token and is accepted as one.
    pub require_binding: bool,
}

impl Default for ProofPolicy {
    fn default() -> Self {
        ProofPolicy {
            dpop: true,
            http_signature: true,
            require_binding: false,
        }
    }
}

/// Looks up an agent's public key: `(agent, keyid)` → key. `keyid` is the token's
/// `cnf.jkt`; the returned key must have that RFC 7638 thumbprint (checked).
pub type KeyResolver = Arc<dyn Fn(&AgentId, &str) -> Option<VerifyingKey> + Send + Sync>;

/// Where the public keys of agents that sign HTTP messages come from. A token's
/// `cnf.jkt` only names the key by its thumbprint; a DPoP proof carries the key
/// itself, a message signature does not.
#[derive(Clone)]
pub enum AgentKeySource {
    /// None: message signatures are refused (`PROOF_INVALID`); DPoP still works. The
    /// default.
    None,
    /// The registry's per-agent key directory,
    /// `GET {registry_url}/agents/{agent_id}/.well-known/http-message-signatures-directory`
    /// (`{"keys":[JWK…]}`), cached per agent for `ttl` and refetched early (at most
    /// once every 10 s per agent) when the bound key is not in it, so a key the agent
    /// just registered is found; a failed fetch (404) is remembered as "no keys" for
    /// those 10 s. The agent is the token's current actor (the one `cnf` binds). The
    /// `Signature-Agent` header is never followed: the directory comes from the
    /// registry you configured, not from a URL the client chose.
    Registry {
        /// The registry's base URL (`https://`, or `http://` on loopback).
        registry_url: String,
        /// How long a directory is cached. Default [`DEFAULT_AGENT_KEYS_TTL`].
        ttl: Duration,
    },
    /// Your own lookup (a database, a file, a fixed map). Called on the request path:
    /// keep it fast and non-blocking.
    Resolver(KeyResolver),
}

impl std::fmt::Debug for AgentKeySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentKeySource::None => f.write_str("None"),
            AgentKeySource::Registry { registry_url, ttl } => f
                .debug_struct("Registry")
                .field("registry_url", registry_url)
                .field("ttl", ttl)
                .finish(),
            AgentKeySource::Resolver(_) => f.write_str("Resolver(..)"),
        }
    }
}

/// The layer's configuration. [`Config::offline`] and [`Config::online`] give the
/// defaults stated on each field.
#[derive(Clone, Debug)]
pub struct Config {
    /// Token-signing keys (offline mode; unused online).
    pub jwks: JwksSource,
    /// Accepted `iss` values: the registry's URL for registry-signed tokens, issuer ids
    /// for self-custody tokens whose keys the JWKS holds. Offline mode refuses every
    /// other issuer (`ISSUER_UNKNOWN`).
    pub issuers: Vec<String>,
    /// This receiver's identifier: a token with `aud` must name it. Default none: a
    /// token that carries `aud` is then refused (RFC 7519 §4.1.3) — set it when
    /// tokens carry audiences.
    pub audience: Option<String>,
    /// Clock skew allowed on token times and proof `iat`/`created`, seconds. Default 60.
    pub leeway_secs: i64,
    /// Longest token accepted, bytes. Default 8 KiB.
    pub max_token_bytes: usize,
    /// Longest token lifetime accepted, seconds from `iat` to `exp`, as the
    /// registry's `max_token_ttl`. Default 30 days.
    pub max_token_ttl_secs: i64,
    /// Offline (default) or online.
    pub mode: Mode,
    /// The receiver's public origin as agents address it, e.g. `https://api.example`
    /// (a path prefix such as `https://example/api` is allowed when a proxy strips
    /// it). DPoP `htu` and the signed `@authority`/`@path` are checked against this
    /// plus the request's path. Default none: only unbound tokens are accepted (see
    /// the module docs for why the `Host` header is not used).
    pub public_base_url: Option<String>,
    /// Accepted proofs. Default: DPoP and message signatures, bearer for unbound tokens.
    pub proofs: ProofPolicy,
    /// Oldest proof accepted (DPoP `iat`, signature `created`), seconds. Default 300.
    /// Also how long the replay cache remembers a proof.
    pub proof_max_age_secs: i64,
    /// Most live proofs remembered. Default [`replay::DEFAULT_CAPACITY`] (1,000,000).
    pub replay_capacity: usize,
    /// Agents' public keys, for message signatures. Default [`AgentKeySource::None`].
    pub agent_keys: AgentKeySource,
    /// Push events (issue 19): what a [`crate::events::Subscription`] says is revoked
    /// or suspended is refused offline at once. Default none.
    pub revoked: Option<Arc<crate::events::RevokedSet>>,
    /// Token Status Lists (offline mode): which list URIs are trusted, the staleness
    /// bound and whether to fail open. Default, for a [`JwksSource::Url`]: the lists
    /// of the registry the JWKS URL belongs to
    /// ([`StatusListConfig::registry_of_jwks`]), failing closed; for a
    /// [`JwksSource::Static`], none (revocation not checked offline).
    pub status_lists: Option<StatusListConfig>,
}

impl Config {
    /// Offline verification with keys from `jwks`, trusting tokens whose `iss` is
    /// `issuer`; every other field at its default.
    pub fn offline(jwks: JwksSource, issuer: impl Into<String>) -> Self {
        let status_lists = match &jwks {
            JwksSource::Url { url, .. } => StatusListConfig::registry_of_jwks(url)
                .map(|base| StatusListConfig::for_registry(&base)),
            JwksSource::Static(_) => None,
        };
        Config {
            status_lists,
            jwks,
            issuers: vec![issuer.into()],
            audience: None,
            leeway_secs: DEFAULT_LEEWAY_SECS,
            max_token_bytes: DEFAULT_MAX_TOKEN_BYTES,
            max_token_ttl_secs: bonafide_core::token::DEFAULT_MAX_LIFETIME_SECS,
            mode: Mode::Offline,
            public_base_url: None,
            proofs: ProofPolicy::default(),
            proof_max_age_secs: DEFAULT_PROOF_MAX_AGE_SECS,
            replay_capacity: replay::DEFAULT_CAPACITY,
            agent_keys: AgentKeySource::None,
            revoked: None,
        }
    }

    /// Online verification by the registry at `registry_url`.
    pub fn online(registry_url: impl Into<String>, api_key: Option<String>) -> Self {
        let registry_url = registry_url.into();
        Config {
            mode: Mode::Online {
                registry_url: registry_url.clone(),
                api_key,
            },
            ..Config::offline(JwksSource::Static(Jwks::default()), registry_url)
        }
    }

    /// Sets [`Config::public_base_url`].
    pub fn public_base_url(mut self, url: impl Into<String>) -> Self {
        self.public_base_url = Some(url.into());
        self
    }

    /// Sets [`Config::audience`].
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audience = Some(audience.into());
        self
    }

    /// Adds an accepted issuer.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// Agents' keys from the registry's key directories, cached for
    /// [`DEFAULT_AGENT_KEYS_TTL`].
    pub fn agent_keys_from_registry(mut self, registry_url: impl Into<String>) -> Self {
        self.agent_keys = AgentKeySource::Registry {
            registry_url: registry_url.into(),
            ttl: DEFAULT_AGENT_KEYS_TTL,
        };
        self
    }

    /// Sets [`Config::status_lists`].
    pub fn status_lists(mut self, config: StatusListConfig) -> Self {
        self.status_lists = Some(config);
        self
    }

    /// No status lists: offline, revocation is not checked.
    pub fn without_status_lists(mut self) -> Self {
        self.status_lists = None;
        self
    }

    /// Agents' keys from your own lookup.
    pub fn agent_key_resolver(
        mut self,
        f: impl Fn(&AgentId, &str) -> Option<VerifyingKey> + Send + Sync + 'static,
    ) -> Self {
        self.agent_keys = AgentKeySource::Resolver(Arc::new(f));
        self
    }
}

/// How the agent proved it holds the key its token is bound to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProofKind {
    /// A DPoP proof (RFC 9449).
    Dpop,
    /// An HTTP message signature (RFC 9421, Web Bot Auth profile).
    HttpSignature,
}

/// The agent behind a request, once its token (and proof, if bound) checked out.
///
/// Handlers take it as an axum extractor (`async fn h(agent: VerifiedAgent)`); it is
/// also in the request's extensions. Extracting it on a route without the layer is a
/// 401 (`UNAUTHENTICATED`), never an unauthenticated pass.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct VerifiedAgent {
    /// The token's subject (`sub`): the agent whose authority is used. For a
    /// delegated token this is the root of the chain; see [`VerifiedAgent::actor`].
    pub agent_id: AgentId,
    /// The agent presenting the token: the current actor (`act.sub`), else `sub`.
    pub actor: AgentId,
    /// The agent's display name (`agent.name`, or the registry's record online).
    pub name: String,
    /// Offline: the verified `iss` (registry URL or issuer id). Online: the registry's
    /// name for the agent's issuer.
    pub issuer: String,
    /// Granted scopes (`agent.scopes`; online, the registry's `active_scopes`).
    pub scopes: Vec<String>,
    /// On whose behalf the agent acts, when the token says.
    pub user: Option<String>,
    /// The verified claims (offline). `None` online: the registry's answer is the
    /// verdict and carries no claims.
    pub claims: Option<Arc<AgentClaims>>,
    /// How possession of the bound key was proved; `None` for a bearer token.
    pub proof: Option<ProofKind>,
    /// The RFC 7638 thumbprint of the key the token is bound to (`cnf.jkt`), which
    /// the proof was checked against. Offline only (`None` online, where the
    /// registry's answer does not carry it, and for bearer tokens).
    pub bound_key: Option<String>,
    /// The delegation chain, root first (`sub`, then each actor up to the current
    /// one); one entry for an undelegated token.
    pub delegation: Vec<AgentId>,
    /// True when revocation and suspension were checked: online (the registry), or
    /// offline against a status list within the staleness bound.
    pub revocation_checked: bool,
    /// Offline with status lists: what the token's status list said (its age, or why
    /// revocation was not checked when failing open). `None` online and without
    /// status lists.
    pub status_list: Option<StatusCheck>,
}

impl VerifiedAgent {
    /// Whether `scope` is granted.
    pub fn has_scope(&self, scope: &str) -> bool {
        self.scopes.iter().any(|s| s == scope)
    }

    fn from_claims(claims: AgentClaims, proof: Option<ProofKind>) -> Self {
        let actor = delegation::current_actor(&claims).clone();
        let delegation = delegation::chain(&claims).into_iter().cloned().collect();
        let bound_key = claims.cnf.as_ref().map(|c| c.jkt.clone());
        VerifiedAgent {
            bound_key,
            agent_id: claims.sub.clone(),
            actor,
            name: claims.agent.name.clone(),
            issuer: claims.iss.clone(),
            scopes: claims.agent.scopes.clone(),
            user: claims.user.clone(),
            claims: Some(Arc::new(claims)),
            proof,
            delegation,
            revocation_checked: false,
            status_list: None,
        }
    }
}

/// Why a request was refused: an HTTP status, a stable code and a message, sent as
/// `{"error":{"code","message"}}` with a `WWW-Authenticate` challenge on 401.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    status: StatusCode,
    code: String,
    message: String,
    challenge: Option<HeaderValue>,
    retry_after: Option<u32>,
}

/// The scheme a token was presented with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scheme {
    /// `Authorization: DPoP`.
    Dpop,
    /// `Authorization: Bearer`.
    Bearer,
    /// `X-Agent-Token`.
    AgentHeader,
}

impl Rejection {
    fn new(status: StatusCode, code: impl Into<String>, message: impl Into<String>) -> Self {
        Rejection {
            status,
            code: code.into(),
            message: message.into(),
            challenge: None,
            retry_after: None,
        }
    }

    /// 401 with a challenge for `scheme`: RFC 6750 §3 `Bearer error="…"` or RFC 9449
    /// §7.1 `DPoP error="…", algs="…"`.
    fn unauthorized(
        scheme: Scheme,
        oauth_error: &str,
        code: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        let challenge = match scheme {
            Scheme::Dpop => format!("DPoP error=\"{oauth_error}\", algs=\"{DPOP_ALGS}\""),
            Scheme::Bearer | Scheme::AgentHeader => format!("Bearer error=\"{oauth_error}\""),
        };
        Rejection {
            challenge: HeaderValue::from_str(&challenge).ok(),
            ..Rejection::new(StatusCode::UNAUTHORIZED, code, message)
        }
    }

    fn token(scheme: Scheme, e: &TokenError) -> Self {
        Rejection::unauthorized(scheme, "invalid_token", e.code().as_str(), e.to_string())
    }

    fn proof_invalid(scheme: Scheme, message: impl Into<String>) -> Self {
        Rejection::proof(scheme, "PROOF_INVALID", message)
    }

    fn proof(scheme: Scheme, code: &str, message: impl Into<String>) -> Self {
        let oauth = if scheme == Scheme::Dpop {
            "invalid_dpop_proof"
        } else {
            "invalid_token"
        };
        Rejection::unauthorized(scheme, oauth, code, message)
    }

    fn unavailable(code: &str, message: impl Into<String>) -> Self {
        Rejection {
            retry_after: Some(1),
            ..Rejection::new(StatusCode::SERVICE_UNAVAILABLE, code, message)
        }
    }

    /// The HTTP status (401, or 503 when the layer cannot decide).
    pub fn status(&self) -> StatusCode {
        self.status
    }

    /// The stable code (`TOKEN_INVALID`, `PROOF_REQUIRED`, `REPLAY`, …).
    pub fn code(&self) -> &str {
        &self.code
    }

    /// The message for the client.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl std::fmt::Display for Rejection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.status, self.message)
    }
}

impl std::error::Error for Rejection {}

/// A token as found in the request.
struct Presented<'a> {
    token: &'a str,
    scheme: Scheme,
}

/// Finds the one token of a request (step 1).
fn presented_token(headers: &HeaderMap) -> Result<Presented<'_>, Rejection> {
    let missing = || {
        let mut r = Rejection::new(
            StatusCode::UNAUTHORIZED,
            "TOKEN_MISSING",
            "no agent token: send `Authorization: DPoP <token>` with a `DPoP` proof, \
             `Authorization: Bearer <token>` or `X-Agent-Token: <token>`",
        );
        r.challenge = HeaderValue::from_str(&format!("DPoP algs=\"{DPOP_ALGS}\", Bearer")).ok();
        r
    };
    let bad =
        |m: &str| Rejection::unauthorized(Scheme::Bearer, "invalid_request", "TOKEN_INVALID", m);
    let one = |name: &header::HeaderName| -> Result<Option<&str>, Rejection> {
        let mut all = headers.get_all(name).iter();
        let Some(first) = all.next() else {
            return Ok(None);
        };
        if all.next().is_some() {
            return Err(bad(&format!("more than one `{name}` header")));
        }
        first
            .to_str()
            .map(|s| Some(s.trim()))
            .map_err(|_| bad(&format!("`{name}` is not visible ASCII")))
    };
    // `X-Agent-Token` wins: KairosAI's convention keeps `Authorization` for the
    // service's own auth (its API key), so a request may carry both, and then
    // `Authorization` is not the agent's and is not read at all.
    let agent_header = header::HeaderName::from_static("x-agent-token");
    match one(&agent_header)? {
        Some("") => return Err(bad("`X-Agent-Token` is empty")),
        Some(token) => {
            return Ok(Presented {
                token,
                // `X-Agent-Token` with a DPoP proof is a DPoP presentation.
                scheme: if headers.contains_key("dpop") {
                    Scheme::Dpop
                } else {
                    Scheme::AgentHeader
                },
            });
        }
        None => {}
    }
    if let Some(auth) = one(&header::AUTHORIZATION)? {
        let (scheme, rest) = auth.split_once(' ').unwrap_or((auth, ""));
        let scheme = if scheme.eq_ignore_ascii_case("dpop") {
            Some(Scheme::Dpop)
        } else if scheme.eq_ignore_ascii_case("bearer") {
            Some(Scheme::Bearer)
        } else {
            None // another scheme (Basic, …) is not ours
        };
        if let Some(scheme) = scheme {
            let token = rest.trim();
            if token.is_empty() {
                return Err(bad("`Authorization` carries no token"));
            }
            return Ok(Presented { token, scheme });
        }
    }
    Err(missing())
}

/// Authenticates agent requests: the shared state behind [`AgentAuthLayer`]. Cheap
/// to clone (one `Arc`).
#[derive(Clone, Debug)]
pub struct Receiver {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    opts: VerifyOptions,
    proofs: ProofPolicy,
    proof_max_age: i64,
    /// [`Config::public_base_url`] without a trailing `/`.
    base_url: Option<String>,
    keys: RwLock<Arc<KeySet>>,
    jwks: Option<JwksRefresh>,
    replay: ReplayCache,
    agent_keys: AgentKeys,
    online: Option<Client>,
    /// Agent keys taken from DPoP proofs that verified, by thumbprint, so a later
    /// proof with the same key skips the thumbprint and the key parse
    /// ([`dpop::verify_with_key`]). Bounded: emptied when full.
    proof_keys: RwLock<HashMap<String, Arc<VerifyingKey>>>,
    /// [`Config::revoked`].
    revoked: Option<Arc<crate::events::RevokedSet>>,
    /// Offline: the registry's status lists, if configured.
    status: Option<StatusLists>,
}

/// Most DPoP keys kept parsed in [`Inner::proof_keys`].
const MAX_PROOF_KEYS: usize = 10_000;

/// The state of a JWKS URL source.
#[derive(Debug)]
struct JwksRefresh {
    url: String,
    refresh: Duration,
    min_refetch: Duration,
    /// Reference point for `fetched_ms`.
    epoch: Instant,
    /// When the keys were last fetched (successfully or not), ms since `epoch`.
    fetched_ms: AtomicU64,
    /// A fetch is running (single flight for background refreshes).
    fetching: AtomicBool,
    /// Serialises foreground refetches.
    lock: tokio::sync::Mutex<()>,
}

impl JwksRefresh {
    fn age(&self) -> Duration {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(now.saturating_sub(self.fetched_ms.load(Ordering::Relaxed)))
    }

    fn mark_fetched(&self) {
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.fetched_ms.store(now, Ordering::Relaxed);
    }
}

#[derive(Debug)]
enum AgentKeys {
    None,
    Registry {
        base: String,
        ttl: Duration,
        cache: Mutex<HashMap<AgentId, Directory>>,
        lock: tokio::sync::Mutex<()>,
    },
    Resolver(ResolverBox),
}

/// An agent's key directory and when it was fetched.
type Directory = (Instant, Arc<Vec<Jwk>>);

struct ResolverBox(KeyResolver);

impl std::fmt::Debug for ResolverBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyResolver(..)")
    }
}

/// Agent key directories are refetched early (bound key missing) at most this often.
const DIRECTORY_MIN_REFETCH: Duration = Duration::from_secs(10);

impl Receiver {
    /// Builds the receiver: checks the configuration and, for a JWKS URL in offline
    /// mode, fetches the keys once (an error if that fails: a receiver without keys
    /// could verify nothing).
    pub async fn new(config: Config) -> Result<Self, ClientError> {
        let bad = |reason: String| ClientError::Decode {
            url: "receiver configuration".into(),
            reason,
        };
        let base_url = match &config.public_base_url {
            None => None,
            Some(url) => {
                let trimmed = url.trim_end_matches('/');
                if trimmed.contains(['?', '#']) {
                    return Err(bad(format!(
                        "public_base_url `{url}` has a query or fragment"
                    )));
                }
                dpop::normalize_htu(trimmed)
                    .map_err(|e| bad(format!("public_base_url `{url}`: {e}")))?;
                Some(trimmed.to_owned())
            }
        };
        if config.leeway_secs < 0
            || config.proof_max_age_secs <= 0
            || config.max_token_ttl_secs <= 0
        {
            return Err(bad(
                "leeway must be ≥ 0, and proof_max_age_secs and max_token_ttl_secs > 0".into(),
            ));
        }
        let mut opts = VerifyOptions::for_issuer(String::new());
        opts.issuers = config.issuers.clone();
        opts.audience = config.audience.clone().into();
        opts.leeway_secs = config.leeway_secs;
        opts.max_token_bytes = config.max_token_bytes;
        opts.max_lifetime_secs = Some(config.max_token_ttl_secs);

        let online = match &config.mode {
            Mode::Offline => None,
            Mode::Online {
                registry_url,
                api_key,
            } => Some(Client::new(registry_url, api_key.clone())?),
        };
        let (keys, jwks) = match (&config.jwks, &online) {
            (_, Some(_)) => (KeySet::new(), None),
            (JwksSource::Static(jwks), None) => (KeySet::from_jwks(jwks)?, None),
            (
                JwksSource::Url {
                    url,
                    refresh,
                    min_refetch,
                },
                None,
            ) => {
                let keys = KeySet::from_jwks(&load_jwks(url).await?)?;
                let state = JwksRefresh {
                    url: url.clone(),
                    refresh: *refresh,
                    min_refetch: *min_refetch,
                    epoch: Instant::now(),
                    fetched_ms: AtomicU64::new(0),
                    fetching: AtomicBool::new(false),
                    lock: tokio::sync::Mutex::new(()),
                };
                (keys, Some(state))
            }
        };
        let status = match (&online, &config.status_lists) {
            (None, Some(c)) => Some(StatusLists::new(c.clone())?),
            _ => None,
        };
        let agent_keys = match &config.agent_keys {
            AgentKeySource::None => AgentKeys::None,
            AgentKeySource::Registry { registry_url, ttl } => AgentKeys::Registry {
                base: registry_url.trim_end_matches('/').to_owned(),
                ttl: *ttl,
                cache: Mutex::new(HashMap::new()),
                lock: tokio::sync::Mutex::new(()),
            },
            AgentKeySource::Resolver(f) => AgentKeys::Resolver(ResolverBox(f.clone())),
        };
        Ok(Receiver {
            inner: Arc::new(Inner {
                opts,
                proofs: config.proofs,
                proof_max_age: config.proof_max_age_secs,
                base_url,
                keys: RwLock::new(Arc::new(keys)),
                jwks,
                replay: ReplayCache::new(config.replay_capacity),
                agent_keys,
                online,
                proof_keys: RwLock::new(HashMap::new()),
                revoked: config.revoked,
                status,
            }),
        })
    }

    /// The tower layer.
    pub fn layer(&self) -> AgentAuthLayer {
        AgentAuthLayer::new(self.clone())
    }

    /// The status lists this receiver checks tokens against (offline, when
    /// [`Config::status_lists`] is set): to hand it a list obtained some other way
    /// ([`StatusLists::offer`]) or look at its configuration.
    pub fn status_lists(&self) -> Option<&StatusLists> {
        self.inner.status.as_ref()
    }

    /// Authenticates one request (what the layer does, without the HTTP response):
    /// its method, URI (path and query) and headers, at the system clock's time.
    pub async fn authenticate(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<VerifiedAgent, Rejection> {
        self.authenticate_at(method, uri, headers, SystemTime::now())
            .await
    }

    /// [`Receiver::authenticate`] as of `now` instead of the system clock: token
    /// times, proof ages, the replay cache's windows and status-list freshness are
    /// all judged at `now` (a request replayed from a log, a conformance vector's
    /// fixed clock). Online, the registry's clock decides and `now` is not used.
    pub async fn authenticate_at(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        now: SystemTime,
    ) -> Result<VerifiedAgent, Rejection> {
        let presented = presented_token(headers)?;
        if let Some(client) = &self.inner.online {
            return self.online(client, presented, method, uri, headers).await;
        }
        // Before the epoch counts as the epoch: every token and proof is then in the
        // future and refused, never accepted.
        let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or_default();
        let now_ms = i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX);
        let now = now_ms.div_euclid(1000);
        let claims = self
            .verify_token(presented.token, presented.scheme, now)
            .await?;
        // Step 5 before the proof: a revoked token does not use up its proof.
        let status = self.check_status(&claims, presented.scheme, now_ms).await?;
        let proof = self
            .check_proof(&presented, &claims, method, uri, headers, now)
            .await?;
        let mut agent = VerifiedAgent::from_claims(claims, proof);
        if let Some(status) = status {
            agent.revocation_checked = status.revocation_checked();
            agent.status_list = Some(status);
        }
        Ok(agent)
    }

    /// The token's status list entry, when status lists are configured.
    async fn check_status(
        &self,
        claims: &AgentClaims,
        scheme: Scheme,
        now_ms: i64,
    ) -> Result<Option<StatusCheck>, Rejection> {
        let Some(lists) = &self.inner.status else {
            return Ok(None);
        };
        match lists.check(claims, now_ms).await {
            Ok(check) => Ok(Some(check)),
            Err(StatusError::Refused(e)) => Err(Rejection::token(scheme, &e)),
            Err(e) if e.is_refusal() => Err(Rejection::unauthorized(
                scheme,
                "invalid_token",
                e.code(),
                e.to_string(),
            )),
            Err(e) => Err(Rejection::unavailable(e.code(), e.to_string())),
        }
    }

    /// Steps 1–4 and 7 with the cached keys, refetching the JWKS once for an unknown
    /// `kid`.
    async fn verify_token(
        &self,
        token: &str,
        scheme: Scheme,
        now: i64,
    ) -> Result<AgentClaims, Rejection> {
        let inner = &self.inner;
        if let Some(j) = &inner.jwks
            && j.age() >= j.refresh
        {
            self.refresh_in_background();
        }
        let keys = self.keys();
        let verified = match bonafide_core::token::verify(token, &*keys, &inner.opts, now) {
            Err(TokenError::UnknownKey) if inner.jwks.is_some() => {
                self.refetch_for_unknown_kid().await?;
                bonafide_core::token::verify(token, &*self.keys(), &inner.opts, now)
            }
            other => other,
        }
        .map_err(|e| Rejection::token(scheme, &e))?;
        bonafide_core::token::policy_of(&verified.claims)
            .map_err(|e| Rejection::token(scheme, &e))?;
        if let Some(e) = inner
            .revoked
            .as_ref()
            .and_then(|r| r.refusal(&verified.claims))
        {
            return Err(Rejection::token(scheme, &e));
        }
        Ok(verified.claims)
    }

    fn keys(&self) -> Arc<KeySet> {
        self.inner
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn install(&self, keys: KeySet) {
        *self.inner.keys.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(keys);
    }

    /// Fetches the JWKS now; the previous keys stay if it fails.
    async fn fetch_jwks(&self) -> Result<(), ClientError> {
        let Some(j) = &self.inner.jwks else {
            return Ok(());
        };
        j.mark_fetched();
        let keys = KeySet::from_jwks(&load_jwks(&j.url).await?)?;
        self.install(keys);
        Ok(())
    }

    fn refresh_in_background(&self) {
        let Some(j) = &self.inner.jwks else { return };
        if j.fetching.swap(true, Ordering::AcqRel) {
            return;
        }
        // Outside a tokio runtime (a caller of `authenticate` on another executor)
        // there is no background: the next unknown `kid` refetches in the foreground.
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            j.fetching.store(false, Ordering::Release);
            return;
        };
        let this = self.clone();
        rt.spawn(async move {
            let _ = this.fetch_jwks().await;
            if let Some(j) = &this.inner.jwks {
                j.fetching.store(false, Ordering::Release);
            }
        });
    }

    async fn refetch_for_unknown_kid(&self) -> Result<(), Rejection> {
        let Some(j) = &self.inner.jwks else {
            return Ok(());
        };
        let _guard = j.lock.lock().await;
        // Someone else may have refetched while we waited; rate-limit either way.
        if j.age() < j.min_refetch {
            return Ok(());
        }
        self.fetch_jwks().await.map_err(|e| {
            Rejection::unavailable(
                "KEYS_UNAVAILABLE",
                format!("the token's key is not cached and the JWKS cannot be fetched: {e}"),
            )
        })
    }

    /// The URL the agent addressed, as this receiver's public URL: base + path
    /// (+ query, for message signatures).
    fn public_url(&self, uri: &Uri, with_query: bool) -> Option<String> {
        let base = self.inner.base_url.as_deref()?;
        let path = uri.path();
        let path = if path.is_empty() { "/" } else { path };
        Some(match (with_query, uri.query()) {
            (true, Some(q)) => format!("{base}{path}?{q}"),
            _ => format!("{base}{path}"),
        })
    }

    /// Step 6 for a verified token.
    async fn check_proof(
        &self,
        presented: &Presented<'_>,
        claims: &AgentClaims,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        now: i64,
    ) -> Result<Option<ProofKind>, Rejection> {
        let scheme = presented.scheme;
        let policy = self.inner.proofs;
        let Some(cnf) = &claims.cnf else {
            if scheme == Scheme::Dpop {
                return Err(Rejection::proof_invalid(
                    scheme,
                    "the token is not bound to a key (no `cnf.jkt`): present it as `Bearer`",
                ));
            }
            if policy.require_binding {
                return Err(Rejection::unauthorized(
                    scheme,
                    "invalid_token",
                    "PROOF_REQUIRED",
                    "this receiver accepts only key-bound tokens with a proof of possession",
                ));
            }
            return Ok(None);
        };
        let jkt = cnf.jkt.as_str();
        if scheme == Scheme::Dpop {
            if !policy.dpop {
                return Err(Rejection::proof_invalid(
                    scheme,
                    "this receiver does not accept DPoP proofs",
                ));
            }
            return self
                .check_dpop(presented.token, jkt, method, uri, headers, now)
                .map(Some);
        }
        if policy.http_signature && headers.contains_key("signature-input") {
            return self
                .check_signature(scheme, claims, jkt, method, uri, headers, now)
                .await
                .map(Some);
        }
        // RFC 9449 §7.1: a DPoP-bound token sent as a bearer token.
        Err(Rejection::unauthorized(
            Scheme::Dpop,
            "invalid_token",
            "PROOF_REQUIRED",
            "the token is bound to a key (`cnf.jkt`): send it as `Authorization: DPoP` with \
             a `DPoP` proof, or sign the request (HTTP message signature)",
        ))
    }

    fn check_dpop(
        &self,
        token: &str,
        jkt: &str,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        now: i64,
    ) -> Result<ProofKind, Rejection> {
        let scheme = Scheme::Dpop;
        let mut all = headers.get_all("dpop").iter();
        let proof = match (all.next(), all.next()) {
            (None, _) => {
                return Err(Rejection::proof(
                    scheme,
                    "PROOF_REQUIRED",
                    "`Authorization: DPoP` needs a `DPoP` proof header",
                ));
            }
            (Some(_), Some(_)) => {
                return Err(Rejection::proof_invalid(
                    scheme,
                    "more than one `DPoP` header",
                ));
            }
            (Some(v), None) => v
                .to_str()
                .map_err(|_| Rejection::proof_invalid(scheme, "`DPoP` is not visible ASCII"))?,
        };
        let htu = self.public_url(uri, false).ok_or_else(|| {
            Rejection::proof_invalid(
                scheme,
                "this receiver cannot check proofs: it has no public base URL configured",
            )
        })?;
        let mut check = ProofCheck::new(method.as_str(), &htu, jkt, token, now);
        check.max_age = self.inner.proof_max_age;
        check.leeway = self.inner.opts.leeway_secs;
        let cached = self
            .inner
            .proof_keys
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(jkt)
            .cloned();
        let verified = match &cached {
            Some(key) => dpop::verify_with_key(proof, &check, key),
            None => dpop::verify(proof, &check),
        }
        .map_err(|e| Rejection::proof_invalid(scheme, e.to_string()))?;
        if cached.is_none()
            && let Ok(key) = dpop::proof_key(proof)
        {
            let mut keys = self
                .inner
                .proof_keys
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if keys.len() >= MAX_PROOF_KEYS {
                keys.clear();
            }
            keys.insert(jkt.to_owned(), Arc::new(key));
        }
        // Remembered for as long as core says the proof is acceptable.
        self.claim(
            scheme,
            ProofNamespace::Dpop,
            jkt,
            &verified.jti,
            verified.replay_until,
            now,
        )?;
        Ok(ProofKind::Dpop)
    }

    #[expect(clippy::too_many_arguments, reason = "one private call site")]
    async fn check_signature(
        &self,
        scheme: Scheme,
        claims: &AgentClaims,
        jkt: &str,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
        now: i64,
    ) -> Result<ProofKind, Rejection> {
        let url = self.public_url(uri, true).ok_or_else(|| {
            Rejection::proof_invalid(
                scheme,
                "this receiver cannot check proofs: it has no public base URL configured",
            )
        })?;
        let agent = delegation::current_actor(claims);
        let jwk = self.agent_key(scheme, agent, jkt).await?;
        let pairs: Vec<(String, String)> = headers
            .iter()
            .filter_map(|(n, v)| Some((n.as_str().to_owned(), v.to_str().ok()?.to_owned())))
            .collect();
        let msg = Message::Request {
            method: method.as_str(),
            url: &url,
            headers: &pairs,
        };
        let mut check = httpsig::Check::web_bot_auth(now);
        check.max_age = self.inner.proof_max_age;
        check.leeway = self.inner.opts.leeway_secs;
        check.require_nonce = true;
        let verified = httpsig::verify(&msg, &check, |keyid| {
            if keyid == jkt {
                VerifyingKey::from_jwk(&jwk).ok()
            } else {
                None
            }
        })
        .map_err(|e| match e {
            httpsig::HttpSigError::UnknownKey(_) => Rejection::proof_invalid(
                scheme,
                "the signature's `keyid` is not the key the token is bound to (`cnf.jkt`)",
            ),
            e => Rejection::proof_invalid(scheme, e.to_string()),
        })?;
        let nonce = verified.nonce.as_deref().unwrap_or_default();
        // Remembered for as long as core says the signature is acceptable.
        self.claim(
            scheme,
            ProofNamespace::HttpSignature,
            &verified.keyid,
            nonce,
            verified.replay_until,
            now,
        )?;
        Ok(ProofKind::HttpSignature)
    }

    fn claim(
        &self,
        scheme: Scheme,
        ns: ProofNamespace,
        id: &str,
        unique: &str,
        last_valid: i64,
        now: i64,
    ) -> Result<(), Rejection> {
        self.inner
            .replay
            .claim(ns, id, unique, last_valid, now)
            .map_err(|e| match e {
                ReplayError::Replay => {
                    Rejection::proof(scheme, "REPLAY", "this proof has been used before")
                }
                ReplayError::Full => Rejection::unavailable(
                    "REPLAY_CACHE_FULL",
                    "too many recent proofs to remember; try again shortly",
                ),
            })
    }

    /// The public JWK of `agent` whose thumbprint is `jkt`.
    async fn agent_key(
        &self,
        scheme: Scheme,
        agent: &AgentId,
        jkt: &str,
    ) -> Result<Jwk, Rejection> {
        let not_found = || {
            Rejection::proof_invalid(
                scheme,
                format!(
                    "no public key of agent `{agent}` has the thumbprint the token is bound to"
                ),
            )
        };
        match &self.inner.agent_keys {
            AgentKeys::None => Err(Rejection::proof_invalid(
                scheme,
                "this receiver has no source of agent keys: message signatures cannot be checked \
                 (use DPoP)",
            )),
            AgentKeys::Resolver(ResolverBox(f)) => {
                let key = f(agent, jkt).ok_or_else(not_found)?;
                if key.kid() != jkt {
                    return Err(not_found());
                }
                Ok(key.jwk().clone())
            }
            AgentKeys::Registry {
                base,
                ttl,
                cache,
                lock,
            } => {
                let find = |keys: &[Jwk]| {
                    keys.iter()
                        .find(|k| k.thumbprint().is_ok_and(|t| t == jkt))
                        .cloned()
                };
                let cached = cache
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(agent)
                    .cloned();
                if let Some((at, keys)) = &cached {
                    let age = at.elapsed();
                    if age < *ttl
                        && let Some(k) = find(keys)
                    {
                        return Ok(k);
                    }
                    if age < DIRECTORY_MIN_REFETCH {
                        return find(keys).ok_or_else(not_found);
                    }
                }
                let _guard = lock.lock().await;
                // Fetched by another request while we waited?
                if let Some((at, keys)) = cache.lock().unwrap_or_else(|p| p.into_inner()).get(agent)
                    && at.elapsed() < DIRECTORY_MIN_REFETCH
                {
                    return find(keys).ok_or_else(not_found);
                }
                let url = format!("{base}/agents/{agent}{}", httpsig::DIRECTORY_PATH);
                let keys = match load_jwks(&url).await {
                    Ok(jwks) => jwks.keys,
                    // 404 and friends: remember "no keys" for a short while too.
                    Err(ClientError::Decode { .. }) => Vec::new(),
                    Err(e) => {
                        return Err(Rejection::unavailable(
                            "KEYS_UNAVAILABLE",
                            format!("cannot fetch agent `{agent}`'s key directory: {e}"),
                        ));
                    }
                };
                let found = find(&keys);
                let mut map = cache.lock().unwrap_or_else(|p| p.into_inner());
                if map.len() >= MAX_CACHED_AGENTS {
                    map.retain(|_, (at, _)| at.elapsed() < *ttl);
                    if map.len() >= MAX_CACHED_AGENTS {
                        map.clear();
                    }
                }
                map.insert(agent.clone(), (Instant::now(), Arc::new(keys)));
                found.ok_or_else(not_found)
            }
        }
    }

    /// Online mode: the registry decides.
    async fn online(
        &self,
        client: &Client,
        presented: Presented<'_>,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<VerifiedAgent, Rejection> {
        let scheme = presented.scheme;
        let mut body = json!({ "token": presented.token });
        if let Some(aud) = self.inner.opts.audience.first() {
            body["audience"] = json!(aud);
        }
        let no_base = || {
            Rejection::proof_invalid(
                scheme,
                "this receiver cannot check proofs: it has no public base URL configured",
            )
        };
        let mut proof_kind = None;
        if scheme == Scheme::Dpop {
            let mut all = headers.get_all("dpop").iter();
            let jwt = match (all.next(), all.next()) {
                // As offline: a header that is not visible ASCII is a bad proof.
                (Some(v), None) => Some(v.to_str().map_err(|_| {
                    Rejection::proof_invalid(scheme, "`DPoP` is not visible ASCII")
                })?),
                (None, _) => None,
                (Some(_), Some(_)) => {
                    return Err(Rejection::proof_invalid(
                        scheme,
                        "more than one `DPoP` header",
                    ));
                }
            };
            let Some(jwt) = jwt else {
                return Err(Rejection::proof(
                    scheme,
                    "PROOF_REQUIRED",
                    "`Authorization: DPoP` needs a `DPoP` proof header",
                ));
            };
            let htu = self.public_url(uri, false).ok_or_else(no_base)?;
            body["proof"] = json!({"type": "dpop", "jwt": jwt, "htm": method.as_str(), "htu": htu});
            proof_kind = Some(ProofKind::Dpop);
        } else if headers.contains_key("signature-input") {
            let url = self.public_url(uri, true).ok_or_else(no_base)?;
            body["proof"] = json!({
                "type": "http-signature",
                "method": method.as_str(),
                "url": url,
                "headers": signature_headers(headers),
            });
            proof_kind = Some(ProofKind::HttpSignature);
        }
        let mut answer = client.post::<_, VerifyResponse>("/v1/verify", &body).await;
        // An unbound token on a signed request: Web Bot Auth agents may sign every
        // request, and the registry refuses a proof for a token it cannot bind
        // (`PROOF_NOT_APPLICABLE`). Offline, such a signature is ignored; do the same.
        if proof_kind == Some(ProofKind::HttpSignature)
            && matches!(
                &answer,
                Err(ClientError::Api {
                    code: ErrorCode::ProofNotApplicable,
                    ..
                })
            )
        {
            if let Some(obj) = body.as_object_mut() {
                obj.remove("proof");
            }
            proof_kind = None;
            answer = client.post("/v1/verify", &body).await;
        }
        let answer = answer.map_err(|e| match e {
            // A DPoP proof with an unbound token: the same refusal as offline.
            ClientError::Api {
                code: ErrorCode::ProofNotApplicable,
                message,
                ..
            } => Rejection::proof_invalid(scheme, message),
            // What the agent sent is malformed or too large (400, 413, 422): the
            // registry's code, as a 401 for the agent.
            ClientError::Api {
                status: 400 | 413 | 422,
                code,
                message,
                ..
            } => Rejection::unauthorized(scheme, "invalid_token", code.as_str(), message),
            // Anything else (our receiver key refused, quota, a 5xx, no answer) is
            // this receiver's problem, not the agent's: fail closed with a 503.
            e => Rejection::unavailable(
                "REGISTRY_UNAVAILABLE",
                format!("the registry cannot verify this request now: {e}"),
            ),
        })?;
        online_agent(scheme, &answer, proof_kind)
    }
}

/// The headers an HTTP message signature needs, by name (lowercase): `Signature`,
/// `Signature-Input`, `Signature-Agent` and every header the `Signature-Input` names
/// (any quoted string in it that is a present header's name; parameters are quoted
/// strings too, but only present headers are sent).
fn signature_headers(headers: &HeaderMap) -> serde_json::Map<String, Value> {
    let mut out = serde_json::Map::new();
    let mut names = vec![
        "signature".to_owned(),
        "signature-input".to_owned(),
        httpsig::SIGNATURE_AGENT.to_owned(),
    ];
    for v in headers.get_all("signature-input") {
        if let Ok(s) = v.to_str() {
            names.extend(
                s.split('"')
                    .skip(1)
                    .step_by(2)
                    .filter(|n| !n.starts_with('@'))
                    .map(str::to_ascii_lowercase),
            );
        }
    }
    for name in names {
        let values: Vec<&str> = headers
            .get_all(name.as_str())
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        if !values.is_empty() && !out.contains_key(&name) {
            out.insert(name, json!(values.join(", ")));
        }
    }
    out
}

/// A `POST /v1/verify` answer as a [`VerifiedAgent`], or the refusal it states.
fn online_agent(
    scheme: Scheme,
    answer: &VerifyResponse,
    proof_kind: Option<ProofKind>,
) -> Result<VerifiedAgent, Rejection> {
    if !answer.valid {
        let (code, message) = match &answer.error {
            Some(e) => (e.code.clone(), e.message.as_str()),
            // Not the contract (a valid: false answer always says why): refuse, as
            // for any token the registry does not vouch for.
            None => (
                ErrorCode::TokenInvalid,
                "the registry refused the token without saying why",
            ),
        };
        let oauth = match code {
            ErrorCode::ProofRequired | ErrorCode::ProofInvalid | ErrorCode::Replay
                if scheme == Scheme::Dpop =>
            {
                "invalid_dpop_proof"
            }
            _ => "invalid_token",
        };
        return Err(Rejection::unauthorized(
            scheme,
            oauth,
            code.as_str(),
            message,
        ));
    }
    let malformed = || {
        Rejection::unavailable(
            "REGISTRY_UNAVAILABLE",
            "the registry's verify answer lacks the agent",
        )
    };
    let agent = answer.agent.as_ref().ok_or_else(malformed)?;
    let id = AgentId::try_from(agent.id.as_str()).map_err(|_| malformed())?;
    // The chain's ids, root first: one `Hop` type, and an id that is not one makes
    // the answer malformed rather than silently shorter.
    let delegation = answer
        .chain()
        .into_iter()
        .map(AgentId::try_from)
        .collect::<Result<Vec<AgentId>, _>>()
        .map_err(|_| malformed())?;
    let actor = delegation.last().cloned().unwrap_or_else(|| id.clone());
    Ok(VerifiedAgent {
        agent_id: id,
        actor,
        name: agent.name.clone(),
        issuer: agent.issuer.clone(),
        scopes: agent.active_scopes.clone(),
        user: answer.user.clone(),
        claims: None,
        proof: proof_kind,
        bound_key: None,
        delegation,
        revocation_checked: true,
        status_list: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in pairs {
            h.append(
                header::HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    fn found(pairs: &[(&str, &str)]) -> (String, Scheme) {
        let h = headers(pairs);
        let p = presented_token(&h).unwrap();
        (p.token.to_owned(), p.scheme)
    }

    #[test]
    fn finds_the_one_token() {
        let t = |s: &str| s.to_owned();
        assert_eq!(
            found(&[("authorization", "DPoP abc")]),
            (t("abc"), Scheme::Dpop)
        );
        assert_eq!(
            found(&[("authorization", "bearer  abc ")]),
            (t("abc"), Scheme::Bearer)
        );
        assert_eq!(
            found(&[("x-agent-token", "abc")]),
            (t("abc"), Scheme::AgentHeader)
        );
        // `X-Agent-Token` with a DPoP proof is a DPoP presentation.
        assert_eq!(
            found(&[("x-agent-token", "abc"), ("dpop", "p")]).1,
            Scheme::Dpop
        );
        // Both: `X-Agent-Token` is the agent's, `Authorization` the service's own
        // (KairosAI's convention), whatever its scheme or shape.
        assert_eq!(
            found(&[
                ("authorization", "Bearer service-key"),
                ("x-agent-token", "b")
            ]),
            (t("b"), Scheme::AgentHeader)
        );
        assert_eq!(
            found(&[("authorization", "Bearer"), ("x-agent-token", "b")]).0,
            "b"
        );
        // Another scheme is not ours; the agent header still counts.
        assert_eq!(
            found(&[("authorization", "Basic Zm9v"), ("x-agent-token", "t")]).0,
            "t"
        );
    }

    #[test]
    fn refuses_ambiguous_or_missing_tokens() {
        let code = |pairs: &[(&str, &str)]| presented_token(&headers(pairs)).err().unwrap().code;
        assert_eq!(code(&[]), "TOKEN_MISSING");
        assert_eq!(code(&[("authorization", "Basic Zm9v")]), "TOKEN_MISSING");
        assert_eq!(code(&[("authorization", "Bearer")]), "TOKEN_INVALID");
        assert_eq!(
            code(&[("authorization", "Bearer a"), ("authorization", "Bearer b")]),
            "TOKEN_INVALID"
        );
        assert_eq!(code(&[("x-agent-token", "")]), "TOKEN_INVALID");
        let r = presented_token(&headers(&[])).err().unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
        assert!(r.challenge.is_some());
    }

    #[test]
    fn signature_headers_sends_only_covered_present_headers() {
        let h = headers(&[
            (
                "signature-input",
                r#"sig1=("@authority" "content-type" "x-missing");keyid="k";nonce="n""#,
            ),
            ("signature", "sig1=:AA==:"),
            ("content-type", "application/json"),
            ("cookie", "secret"),
        ]);
        let out = signature_headers(&h);
        let mut keys: Vec<_> = out.keys().cloned().collect();
        keys.sort();
        assert_eq!(keys, ["content-type", "signature", "signature-input"]);
    }

    fn answer(v: Value) -> VerifyResponse {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn online_answers_become_agents_or_refusals() {
        let ok = answer(json!({"valid": true, "allowed": true, "reasons": [],
            "agent": {"id": "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa", "did": "did:web:x", "name": "n",
                      "issuer": "i", "active_scopes": ["read:x"]},
            "user": "u@example.com", "verified_at": "t"}));
        let a = online_agent(Scheme::Bearer, &ok, None).unwrap();
        assert_eq!(a.agent_id.as_str(), "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert_eq!(a.delegation, vec![a.agent_id.clone()]);
        assert!(a.revocation_checked && a.claims.is_none());
        assert_eq!(a.user.as_deref(), Some("u@example.com"));
        let no = answer(json!({"valid": false, "allowed": false,
            "error": {"code": "TOKEN_REVOKED", "message": "token revoked", "request_id": "req_1"},
            "reason": "token revoked", "reasons": ["TOKEN_REVOKED"], "verified_at": "t"}));
        let r = online_agent(Scheme::Bearer, &no, None).unwrap_err();
        assert_eq!(
            (r.code(), r.status(), r.message()),
            ("TOKEN_REVOKED", StatusCode::UNAUTHORIZED, "token revoked")
        );
        let replay = answer(
            json!({"valid": false, "allowed": false, "reasons": ["REPLAY"],
            "error": {"code": "REPLAY", "message": "used", "request_id": "req_2"},
            "verified_at": "t"}),
        );
        let r = online_agent(Scheme::Dpop, &replay, Some(ProofKind::Dpop)).unwrap_err();
        assert_eq!(r.code(), "REPLAY");
        assert!(
            r.challenge
                .unwrap()
                .to_str()
                .unwrap()
                .contains("invalid_dpop_proof")
        );
        // A code this version does not know is passed on as sent.
        let newer = answer(json!({"valid": false, "allowed": false, "reasons": [],
            "error": {"code": "TOKEN_QUARANTINED", "message": "q", "request_id": "req_3"},
            "verified_at": "t"}));
        let r = online_agent(Scheme::Bearer, &newer, None).unwrap_err();
        assert_eq!(r.code(), "TOKEN_QUARANTINED");
        // `valid: false` without `error` is refused all the same.
        let bare = answer(json!({"valid": false, "allowed": false, "reasons": [],
            "verified_at": "t"}));
        let r = online_agent(Scheme::Bearer, &bare, None).unwrap_err();
        assert_eq!(r.code(), "TOKEN_INVALID");
    }

    #[test]
    fn an_online_delegation_is_one_shape_of_hop() {
        let agent = json!({"id": "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa", "did": "did:web:x",
            "name": "root", "issuer": "i", "active_scopes": []});
        let chain = answer(json!({"valid": true, "allowed": true, "reasons": [],
            "agent": agent, "verified_at": "t",
            "delegation": [
                {"agent_id": "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa", "name": "root"},
                {"agent_id": "agt_bbbbbbbbbbbbbbbbbbbbbbbbbb", "name": "helper"}]}));
        let a = online_agent(Scheme::Bearer, &chain, None).unwrap();
        assert_eq!(a.agent_id.as_str(), "agt_aaaaaaaaaaaaaaaaaaaaaaaaaa");
        assert_eq!(a.actor.as_str(), "agt_bbbbbbbbbbbbbbbbbbbbbbbbbb");
        assert_eq!(a.delegation.len(), 2);
        // Any other shape of a hop is not the contract: the answer does not parse.
        for hop in [
            json!("agt_bbbbbbbbbbbbbbbbbbbbbbbbbb"),
            json!({"id": "agt_bbbbbbbbbbbbbbbbbbbbbbbbbb"}),
        ] {
            let v = json!({"valid": true, "allowed": true, "reasons": [], "agent": agent,
                "verified_at": "t", "delegation": [hop]});
            assert!(serde_json::from_value::<VerifyResponse>(v).is_err());
        }
        // A hop whose id is not an agent id makes the answer malformed (fail closed).
        let bad = answer(json!({"valid": true, "allowed": true, "reasons": [],
            "agent": agent, "verified_at": "t",
            "delegation": [{"agent_id": "nope", "name": ""}]}));
        let r = online_agent(Scheme::Bearer, &bad, None).unwrap_err();
        assert_eq!(
            (r.code(), r.status()),
            ("REGISTRY_UNAVAILABLE", StatusCode::SERVICE_UNAVAILABLE)
        );
    }
}
