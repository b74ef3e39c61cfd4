//! AgentOAuth's playground under `/compat/agentoauth/playground` (off unless the
//! registry runs with `--playground`): demo consent tokens signed by a dedicated demo
//! issuer, for learning the flow without managing keys.
//!
//! A demo token is an AgentOAuth consent token (`act.v0.2`) of the issuer
//! `bonafide-playground`, whose Ed25519 key the registry holds (sealed like its other
//! keys) and registered as that issuer's key, for its one demo agent. Verifying it is
//! the native path (signature, revocation, policy, budget, receipt, audit), but it is
//! accepted only where a demo is expected: the AgentOAuth hosted-verifier surface
//! with the playground on ([`accepting_demo`]); every other route refuses it
//! (`TOKEN_INVALID`, [`DEMO_ELSEWHERE`]), so turning the playground on weakens no
//! receiver. The rule is in `token_check::check_token_signed`, which every route's
//! token check goes through.
//!
//! Nothing an anonymous caller sends grows the store: the demo issuer, its key and its
//! one demo agent are made at start (audited), the agent holding the scopes a demo
//! policy may name ([`DEMO_ACTIONS`]); issuing signs and stores nothing. The demo
//! issuer's id is derived from the demo key and its name is reserved
//! ([`is_reserved_name`]), so no one else's issuer can stand in for it. Issuance is
//! limited per client address ([`ratelimit::charge_playground`], AgentOAuth's 100 an
//! hour by default), whether or not the other limits are on.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bonafide_core::apikey::{ApiKey, KeyKind};
use bonafide_core::audit::{Actor, EventType};
use bonafide_core::ids::{AgentId, IssuerId};
use bonafide_core::keys::{Algorithm, Jwks, SigningKey};
use bonafide_core::policy::Policy;
use bonafide_store::{
    ConflictKind, Issuer, IssuerKey, PrivateKeySlot, ReceiptKeyRecord, StoreError,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{ApiError, ApiJson, ErrorCode};
use crate::ratelimit;
use crate::routes::agents::{self, FirstToken, RegisterAgent};
use crate::routes::{audit_change, random16, random20};
use crate::sealing;
use crate::state::AppState;
use crate::time::rfc3339_s;
use crate::write::{Change, Part};

/// The demo issuer's registered name: reserved (no one else may register it).
pub const ISSUER_NAME: &str = "bonafide-playground";
/// The demo agent's name.
pub const AGENT_NAME: &str = "playground demo agent";
/// The actions a demo policy may name: the demo agent holds them all as scopes (the
/// built-in catalog, and AgentOAuth's example actions).
pub const DEMO_ACTIONS: &[&str] = &[
    "payments.send",
    "payments.refund",
    "orders.create",
    "bookings.create",
    "read:email",
    "write:email",
    "read:calendar",
    "write:calendar",
    "read:files",
    "write:files",
    "browse:web",
    "submit:forms",
    "execute:code",
    "read:database",
    "call:agents",
    "read:identity",
    "read:portfolio",
    "read:transactions",
];
/// Why a demo token is refused outside the playground's verifier.
pub const DEMO_ELSEWHERE: &str = "a playground demo token (issuer `bonafide-playground`) is accepted only by the playground's hosted verifier (`/compat/agentoauth/verify` with the playground on), never by a receiver's own checks";
/// A demo token's lifetime when the caller names none, seconds (AgentOAuth's example).
pub const DEFAULT_EXPIRES_IN_S: i64 = 3_600;
/// The longest a demo token may live, seconds.
pub const MAX_EXPIRES_IN_S: i64 = 86_400;
/// The shortest, seconds.
pub const MIN_EXPIRES_IN_S: i64 = 60;
/// What the hosted-verifier answer says beside a demo token.
pub const DEMO_WARNING: &str = "demo token from the playground: for learning the protocol only; production tokens are signed with your own issuer's keys";

/// The playground: its demo issuer, its demo agent and the key that signs for it.
pub struct Playground {
    key: SigningKey,
    issuer: Issuer,
    agent: AgentId,
}

impl std::fmt::Debug for Playground {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Playground")
            .field("issuer", &self.issuer.id)
            .field("kid", &self.key.kid())
            .finish_non_exhaustive()
    }
}

/// Why the playground could not be set up at start.
#[derive(Debug, thiserror::Error)]
pub enum PlaygroundError {
    /// The store failed.
    #[error("playground: {0}")]
    Store(#[from] StoreError),
    /// A step of the set-up was refused.
    #[error("playground: {0}")]
    Setup(String),
}

impl From<ApiError> for PlaygroundError {
    fn from(e: ApiError) -> Self {
        PlaygroundError::Setup(e.internal.unwrap_or(e.message))
    }
}

impl Playground {
    /// Loads (or makes) the demo key, the demo issuer, the key's registration as that
    /// issuer's key and the demo agent; each made once, audited, and found again on
    /// every later start and by every replica (a replica that loses a race reads the
    /// winner's). Refuses to start when the reserved name is another issuer's or the
    /// demo key was revoked.
    pub async fn setup(state: &Arc<AppState>) -> Result<Self, PlaygroundError> {
        let now = state.now_ms();
        let key = load_key(state, now).await?;
        let issuer = demo_issuer(state, &key, now).await?;
        register_key(state, &issuer, &key, now).await?;
        let agent = demo_agent(state, &issuer).await?;
        tracing::info!(issuer_id = %issuer.id, kid = %key.kid(), "playground on");
        Ok(Playground { key, issuer, agent })
    }

    /// The demo issuer's id (the `iss` of every demo token).
    pub fn issuer_id(&self) -> &IssuerId {
        &self.issuer.id
    }

    /// The demo key's public JWK Set.
    pub fn jwks(&self) -> Jwks {
        Jwks {
            keys: vec![self.key.verifying_key().jwk().clone()],
        }
    }
}

async fn load_key(state: &AppState, now_ms: i64) -> Result<SigningKey, PlaygroundError> {
    let slot = PrivateKeySlot::PlaygroundKey;
    let fresh = SigningKey::generate(Algorithm::EdDSA)
        .map_err(|e| PlaygroundError::Setup(e.to_string()))?;
    let pem = fresh
        .to_pkcs8_pem()
        .map_err(|e| PlaygroundError::Setup(e.to_string()))?;
    let candidate = ReceiptKeyRecord {
        private_pem: sealing::seal(state.kek(), &slot, pem.expose_secret())?,
        created_at_ms: now_ms,
    };
    let stored = state.store.playground_key(&candidate).await?;
    let pem = sealing::open(state.kek(), &slot, &stored.private_pem)?;
    SigningKey::from_pkcs8_pem(pem.expose_secret())
        .map_err(|e| PlaygroundError::Setup(format!("the stored demo key: {e}")))
}

/// 16 bytes derived from the demo key and a purpose: the demo issuer's and agent's ids,
/// the same on every replica, and no other issuer's or agent's (those are random).
fn derived(key: &SigningKey, what: &str) -> [u8; 16] {
    let digest = bonafide_core::sha256(format!("{ISSUER_NAME}\0{what}\0{}", key.kid()).as_bytes());
    let mut bytes = [0u8; 16];
    for (out, b) in bytes.iter_mut().zip(digest) {
        *out = b;
    }
    bytes
}

/// Whether `name` is the playground's reserved issuer name (as names compare).
pub fn is_reserved_name(name: &str) -> bool {
    bonafide_core::names::issuer_name_key(name)
        == bonafide_core::names::issuer_name_key(ISSUER_NAME)
}

async fn demo_issuer(
    state: &AppState,
    key: &SigningKey,
    now_ms: i64,
) -> Result<Issuer, PlaygroundError> {
    let id = IssuerId::from_random(derived(key, "issuer"));
    if let Some(issuer) = state.store.issuer(&id).await? {
        return Ok(issuer);
    }
    let issuer = Issuer {
        id: id.clone(),
        name: ISSUER_NAME.to_owned(),
        created_at_ms: now_ms,
    };
    // Nobody acts as the demo issuer through the API: its key is made and dropped.
    let unused = ApiKey::from_random(KeyKind::Issuer, random20()?);
    let audit = audit_change(
        EventType::IssuerCreated,
        now_ms,
        Actor::Registry,
        None,
        Some(&issuer.id),
        |e| e.note = Some("the AgentOAuth playground's demo issuer".to_owned()),
    )?;
    match state
        .store
        .create_issuer(&issuer, &unused.hash(), &audit)
        .await
    {
        Ok(()) => Ok(issuer),
        Err(StoreError::Conflict(_)) => match state.store.issuer(&id).await? {
            // Another replica made it first.
            Some(issuer) => Ok(issuer),
            None => Err(PlaygroundError::Setup(format!(
                "an issuer named `{ISSUER_NAME}` exists that this registry's playground did not make (registered before the name was reserved): rename or remove it, or start without --playground"
            ))),
        },
        Err(e) => Err(e.into()),
    }
}

async fn register_key(
    state: &Arc<AppState>,
    issuer: &Issuer,
    key: &SigningKey,
    now_ms: i64,
) -> Result<(), PlaygroundError> {
    let kid = key.kid().to_owned();
    let known = state.store.issuer_keys(&issuer.id).await?;
    if let Some(k) = known.iter().find(|k| k.kid == kid) {
        return match k.revoked_at_ms {
            None => Ok(()),
            Some(_) => Err(PlaygroundError::Setup(
                "the playground's demo key was revoked: demo tokens would never verify; start without --playground".into(),
            )),
        };
    }
    let record = IssuerKey {
        kid: kid.clone(),
        issuer_id: issuer.id.clone(),
        alg: Algorithm::EdDSA,
        jwk: serde_json::to_string(key.verifying_key().jwk())
            .map_err(|e| PlaygroundError::Setup(format!("jwk: {e}")))?,
        created_at_ms: now_ms,
        revoked_at_ms: None,
        alias: None,
    };
    let audit = audit_change(
        EventType::KeyAdded,
        now_ms,
        Actor::Registry,
        None,
        Some(&issuer.id),
        |e| e.kid = Some(kid.clone()),
    )?;
    state
        .commit(
            "playground key",
            Part::IssuerKeys,
            Box::new(move |state| {
                Box::pin(async move {
                    match state.store.add_issuer_key(&record, &audit).await {
                        // Registered by another replica meanwhile: the same key.
                        Ok(()) | Err(StoreError::Conflict(ConflictKind::IssuerKeyRegistered)) => {
                            Ok(((), Change::IssuerKeys))
                        }
                        Err(e) => Err(e.into()),
                    }
                })
            }),
        )
        .await?;
    Ok(())
}

/// The one demo agent, holding [`DEMO_ACTIONS`] as scopes and accepting unbound
/// tokens (consent tokens carry no `cnf`), registered natively (audited).
async fn demo_agent(state: &AppState, issuer: &Issuer) -> Result<AgentId, PlaygroundError> {
    let id = AgentId::from_random(derived_agent_seed(&issuer.id));
    if state.store.agent(&id).await?.is_some() {
        return Ok(id);
    }
    let body = RegisterAgent {
        name: AGENT_NAME.to_owned(),
        description: Some("the AgentOAuth playground's demo agent".to_owned()),
        scopes: DEMO_ACTIONS.iter().map(|a| (*a).to_owned()).collect(),
        expiry_seconds: None,
        audience: None,
        policy: None,
        user: None,
        public_key: None,
        signing_key_pub: None,
        key_algorithm: None,
        key_expires_in: None,
        allow_bearer_tokens: true,
        issuer_domain: None,
    };
    match agents::register_agent_as(
        state,
        issuer.clone(),
        body,
        FirstToken::Unbound,
        Some(id.clone()),
    )
    .await
    {
        Ok(_) => Ok(id),
        // Registered by another replica meanwhile.
        Err(e) if e.status == StatusCode::CONFLICT => Ok(id),
        Err(e) => Err(e.into()),
    }
}

/// The demo agent's id bytes: derived from the demo issuer's id (itself the key's).
fn derived_agent_seed(issuer: &IssuerId) -> [u8; 16] {
    let digest = bonafide_core::sha256(format!("{ISSUER_NAME}\0agent\0{issuer}").as_bytes());
    let mut bytes = [0u8; 16];
    for (out, b) in bytes.iter_mut().zip(digest) {
        *out = b;
    }
    bytes
}

/// `POST /playground/issue-demo-token` body, AgentOAuth's members.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueDemoToken {
    /// A `pol.v0.2` policy.
    pub policy: Value,
    /// The token's `user` (default `demo-user`).
    #[serde(default)]
    pub user_id: Option<String>,
    /// AgentOAuth's agent label (default `demo-agent`), echoed as `agent_label`; the
    /// token's `agent` is the playground's one demo agent (`agt_…`).
    #[serde(default)]
    pub agent_id: Option<String>,
    /// Seconds, 60 to 86,400 (default 3,600).
    #[serde(default)]
    pub expires_in: Option<i64>,
}

/// The issuance answer: AgentOAuth's members, and the demo agent's id.
#[derive(Debug, Serialize)]
pub struct DemoTokenIssued {
    /// The demo consent token.
    pub token: String,
    /// `sha256:` + hex of the policy's canonical form.
    pub policy_hash: String,
    /// The demo issuer's id (the token's `iss`).
    pub issuer: String,
    /// The demo key's kid (its RFC 7638 thumbprint).
    pub kid: String,
    /// RFC 3339.
    pub expires_at: String,
    /// Always true.
    pub demo: bool,
    /// The playground's demo agent the token names (`agt_…`).
    pub agent_id: String,
    /// The label asked for (`agent_id` of the request).
    pub agent_label: String,
    /// Where the demo key is published.
    pub jwks_uri: String,
}

fn off() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        ErrorCode::NotFound,
        "the playground is off on this registry (its operator turns it on with `bonafide serve --playground`)",
    )
}

/// `POST /compat/agentoauth/playground/issue-demo-token`: a demo consent token for a
/// policy, signed by the demo issuer's key. Limited per client address.
pub async fn issue(
    State(state): State<Arc<AppState>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    body: Result<ApiJson<IssueDemoToken>, ApiError>,
) -> Response {
    let Some(playground) = state.playground.get() else {
        return super::agentoauth::refusal(off(), false);
    };
    let client = crate::routes::auth_sessions::client_ip(&state, &ext, &headers);
    let (charged, outcome) = ratelimit::charge_playground(&state, client).await;
    let answer = match charged {
        Ok(()) => match body {
            Ok(ApiJson(body)) => issue_token(&state, playground, body).await,
            Err(e) => Err(e),
        },
        Err(e) => Err(e),
    };
    let mut resp = match answer {
        Ok(issued) => {
            let mut resp = ApiJson(issued).into_response();
            resp.headers_mut()
                .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
            resp
        }
        Err(e) => super::agentoauth::refusal(e, false),
    };
    if let Some(outcome) = outcome {
        ratelimit::write_headers(resp.headers_mut(), &[outcome]);
    }
    resp
}

fn label(field: &str, given: Option<&str>, default: &str, max: usize) -> Result<String, ApiError> {
    match given {
        None => Ok(default.to_owned()),
        Some(text) => crate::routes::check_text(field, text, max),
    }
}

async fn issue_token(
    state: &Arc<AppState>,
    playground: &Playground,
    body: IssueDemoToken,
) -> Result<DemoTokenIssued, ApiError> {
    let user = label("user_id", body.user_id.as_deref(), "demo-user", 256)?;
    let agent_label = label("agent_id", body.agent_id.as_deref(), "demo-agent", 128)?;
    let expires_in = body.expires_in.unwrap_or(DEFAULT_EXPIRES_IN_S);
    if !(MIN_EXPIRES_IN_S..=MAX_EXPIRES_IN_S).contains(&expires_in) {
        return Err(ApiError::invalid(format!(
            "`expires_in` must be {MIN_EXPIRES_IN_S} to {MAX_EXPIRES_IN_S} seconds"
        )));
    }
    let policy = Policy::from_value(body.policy.clone()).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::PolicyInvalid,
            format!("`policy` is not a valid pol.v0.2 policy: {e}"),
        )
    })?;
    let actions = policy.actions();
    if let Some(other) = actions.iter().find(|a| !DEMO_ACTIONS.contains(&a.as_str())) {
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::PolicyInvalid,
            format!(
                "`policy.actions` names `{}`, which the playground's demo agent does not hold: use {}",
                other.chars().take(64).collect::<String>(),
                DEMO_ACTIONS.join(", ")
            ),
        ));
    }
    let agent = &playground.agent;
    let now_s = state.now_ms().div_euclid(1000);
    let exp = now_s + expires_in;
    let claims = serde_json::json!({
        "ver": "act.v0.2",
        "iss": playground.issuer.id.to_string(),
        "user": user,
        "agent": agent.to_string(),
        "scope": actions.join(" "),
        "policy": body.policy,
        "policy_hash": policy.hash(),
        "iat": now_s,
        "exp": exp,
        "jti": uuid_v4()?,
        "demo": true,
    });
    let payload =
        serde_json::to_vec(&claims).map_err(|e| ApiError::internal(format!("claims: {e}")))?;
    let token = bonafide_core::jws::sign_compact(
        &playground.key,
        bonafide_core::consent::CONSENT_TYP,
        &payload,
    )
    .map_err(|e| ApiError::internal(format!("signing a demo token: {e}")))?;
    tracing::info!("playground: demo token issued");
    Ok(DemoTokenIssued {
        token,
        policy_hash: policy.hash().to_owned(),
        issuer: playground.issuer.id.to_string(),
        kid: playground.key.kid().to_owned(),
        expires_at: rfc3339_s(exp),
        demo: true,
        agent_id: agent.to_string(),
        agent_label,
        jwks_uri: format!(
            "{}{}/playground/.well-known/jwks.json",
            state.config.public_url,
            super::agentoauth::BASE
        ),
    })
}

/// A random UUID (version 4), as AgentOAuth's SDK writes `jti`.
fn uuid_v4() -> Result<String, ApiError> {
    let mut b = random16()?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = bonafide_core::hex(&b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// `GET /compat/agentoauth/playground/.well-known/jwks.json`: the demo key (CORS `*`,
/// cached an hour).
pub async fn jwks(State(state): State<Arc<AppState>>) -> Response {
    let Some(playground) = state.playground.get() else {
        return super::agentoauth::refusal(off(), false);
    };
    let mut resp = ApiJson(playground.jwks()).into_response();
    resp.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("public, max-age=3600"),
    );
    resp
}

/// The hosted verifier's demo marking: `Some(warning)` when `iss` is the demo issuer.
pub fn demo_warning(state: &AppState, iss: Option<&str>) -> Option<&'static str> {
    let playground = state.playground.get()?;
    (iss? == playground.issuer.id.as_str()).then_some(DEMO_WARNING)
}

tokio::task_local! {
    /// Set while the AgentOAuth hosted-verifier surface checks a token with the
    /// playground on: the one place a demo token is accepted.
    static DEMO_ACCEPTED: ();
}

/// Runs `f` (the hosted verifier's native call) accepting demo tokens, when the
/// playground is on; as it is otherwise.
pub async fn accepting_demo<F: std::future::Future>(state: &AppState, f: F) -> F::Output {
    if state.playground.get().is_some() {
        DEMO_ACCEPTED.scope((), f).await
    } else {
        f.await
    }
}

/// Whether a token signed by an issuer named `issuer_name` must be refused here: a
/// demo token outside [`accepting_demo`].
pub fn refused_here(issuer_name: &str) -> bool {
    is_reserved_name(issuer_name) && DEMO_ACCEPTED.try_with(|()| ()).is_err()
}
