//! Issuer endpoints: register agents, list and read them, issue and revoke tokens,
//! suspend and reactivate agents.
//!
//! Issuer isolation: every lookup is scoped to the caller's issuer, and another
//! issuer's agent answers exactly as a missing one does (404).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use bonafide_core::ids::{AgentId, TokenId};
use bonafide_core::keys::Jwk;
use bonafide_core::scopes;
use bonafide_core::token::{self, AgentClaims, AgentInfo, Audience, Confirmation, TimeCheck};
use bonafide_store::{Agent, AgentStatus, Issuer, TokenRecord};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use bonafide_core::audit::{Actor, EventType, token_sha256};

use super::agent_keys::{self, KeyInput, parse_key};
use super::{audit_change, check_text, new_agent_id, new_token_id};
use crate::auth::IssuerAuth;
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorCode, JsonOrEmpty};
use crate::state::{AppState, Revoked};
use crate::time::{rfc3339_ms, rfc3339_s};
use crate::write::{Change, Part};
pub use bonafide_api::agents::{
    AgentList, AgentRegistered, AgentRevoked, AgentView, RevokeAgent, RevokeToken, TokenIssued,
    TokenRevoked,
};

/// Most audiences one agent may name.
const MAX_AUDIENCES: usize = 16;

/// One audience or several.
#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum AudienceInput {
    /// One receiver identifier.
    #[schema(value_type = crate::openapi::values::Text256)]
    One(String),
    /// Several: 1 to 16.
    #[schema(value_type = crate::openapi::values::Audiences)]
    Many(Vec<String>),
}

fn check_audience(input: Option<AudienceInput>) -> Result<Option<Vec<String>>, ApiError> {
    let list = match input {
        None => return Ok(None),
        Some(AudienceInput::One(a)) => vec![a],
        Some(AudienceInput::Many(list)) => list,
    };
    if list.is_empty() || list.len() > MAX_AUDIENCES {
        return Err(ApiError::invalid(format!(
            "`audience` must name 1 to {MAX_AUDIENCES} receivers"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for a in list {
        let a = check_text("audience", &a, 256)?;
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(Some(out))
}

fn check_ttl(state: &AppState, requested: Option<i64>, default: i64) -> Result<i64, ApiError> {
    let ttl = requested.unwrap_or(default);
    let max = state.config.max_token_ttl_s;
    if !(60..=max).contains(&ttl) {
        return Err(ApiError::invalid(format!(
            "`expiry_seconds` must be between 60 and {max}"
        )));
    }
    Ok(ttl)
}

/// `POST /v1/agents/register` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegisterAgent {
    /// Display name.
    #[schema(value_type = crate::openapi::values::Text128)]
    pub name: String,
    /// What the agent does.
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::values::Text1024>)]
    pub description: Option<String>,
    /// Scopes to grant (`verb:resource`, see `GET /v1/scopes`): 1 to 64.
    #[schema(value_type = Vec<crate::openapi::values::Scope>, min_items = 1, max_items = 64)]
    pub scopes: Vec<String>,
    /// Token lifetime in seconds (60 to the server's maximum, by default 2592000 =
    /// 30 days; default 86400).
    #[serde(default)]
    #[schema(minimum = 60)]
    pub expiry_seconds: Option<i64>,
    /// Receivers the agent's tokens are for (`aud`).
    #[serde(default)]
    pub audience: Option<AudienceInput>,
    /// Consent policy (AgentOAuth `pol.v0.2`) its tokens carry as `policy` with
    /// `policy_hash`; `POST /v1/policies/lint` checks one.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub policy: Option<Box<serde_json::value::RawValue>>,
    /// On whose behalf the agent acts (`user` claim): a DID, an email or an opaque id.
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::values::Text256>)]
    pub user: Option<String>,
    /// The agent's own public key as a JWK: OKP Ed25519 or EC P-256 (the agent signs
    /// with the private half, which the registry never sees; a JWK with private
    /// members is refused with 400, RSA with 422). Its tokens then carry
    /// `cnf: {"jkt": <RFC 7638 thumbprint>}`.
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::values::AgentPublicJwk>)]
    pub public_key: Option<Jwk>,
    /// Or the agent's public key as PEM SubjectPublicKeyInfo (KairosAI), with
    /// `key_algorithm`; sending both forms is a 422.
    #[serde(default)]
    pub signing_key_pub: Option<String>,
    /// `Ed25519` (or `EdDSA`) or `ES256` (or `P-256`), with `signing_key_pub`.
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::values::AgentKeyAlgorithm>)]
    pub key_algorithm: Option<String>,
    /// Lifetime of the agent key, seconds: 86400 (1 day) to 31536000 (365 days);
    /// default 90 days. Tokens bound to it are refused after `key_expires_at`. Only
    /// with a key (422 otherwise).
    #[serde(default)]
    #[schema(minimum = 86400, maximum = 31536000)]
    pub key_expires_in: Option<i64>,
    /// An agent with its own key (given now or later with `PUT /v1/agents/{id}/keys`)
    /// accepts only tokens bound to it: a token without `cnf` (issuer-signed, or
    /// issued before the agent had a key) is refused with `TOKEN_INVALID`, reason
    /// `BINDING_REQUIRED`. `true` opts out: such tokens still verify. Default false;
    /// said at registration only, it never changes.
    #[serde(default)]
    pub allow_bearer_tokens: bool,
    /// The issuer's domain (ImaRobot's register body). Accepted only when it is the
    /// domain this issuer has verified and whose verification is in force (`POST
    /// /v1/issuer/verify-domain`), compared without case or a trailing dot; anything
    /// else is a 422 saying how to verify it. Nothing is stored: verify answers show
    /// the verified domain as `issuer_domain` either way.
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::values::Text256>)]
    pub issuer_domain: Option<String>,
}

/// Whether a registration's first token is bound to the agent's key (`cnf.jkt`)
/// when one is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FirstToken {
    /// Bound (the native rule: the registry binds what it signs for an agent with a
    /// key).
    Bound,
    /// Unbound: KairosAI's registration unless its issuer asks for binding. Only for
    /// an agent that accepts bearer tokens (`allow_bearer_tokens`), else the token
    /// would never verify.
    Unbound,
}

/// A registration as stored: the agent, its first token and its key.
pub(crate) struct Registered {
    pub issuer: Issuer,
    pub agent: Agent,
    pub token: String,
    pub record: TokenRecord,
    pub key: Option<bonafide_store::AgentKey>,
}

/// `issuer_domain` of a registration: the issuer's verified domain in force, or a
/// 422 that says how to verify it.
fn check_issuer_domain(
    state: &AppState,
    issuer: &Issuer,
    asked: Option<&str>,
) -> Result<(), ApiError> {
    let Some(asked) = asked else { return Ok(()) };
    let asked = check_text("issuer_domain", asked, 253)?;
    let norm = |d: &str| d.trim_end_matches('.').to_ascii_lowercase();
    let how = "verify it first: publish one of your registered issuer keys (POST /v1/issuer/keys) at https://<domain>/.well-known/jwks.json and call POST /v1/issuer/verify-domain (or `bonafide issuer verify-domain`)";
    match state.verified_domain(&state.snapshot(), &issuer.id, state.now_ms()) {
        Some(d) if norm(&d) == norm(&asked) => Ok(()),
        Some(d) => Err(ApiError::invalid(format!(
            "`issuer_domain` `{asked}` is not this issuer's verified domain (`{d}`); to use another domain, {how}"
        ))),
        None => Err(ApiError::invalid(format!(
            "`issuer_domain` `{asked}`: this issuer has no verified domain in force; {how}"
        ))),
    }
}

/// Checks a policy given at registration, from its bytes as sent (so repeated
/// members, depth and size are judged exactly as `POST /v1/policies/lint` judges
/// them): the canonical text to store.
fn check_policy(raw: Option<&serde_json::value::RawValue>) -> Result<Option<String>, ApiError> {
    let Some(raw) = raw else { return Ok(None) };
    let policy = bonafide_core::policy::Policy::parse(raw.get().as_bytes()).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            ErrorCode::PolicyInvalid,
            e.to_string(),
        )
    })?;
    Ok(Some(policy.canonical().to_owned()))
}

/// `policy_hash` of a stored canonical policy (the SHA-256 of the text itself).
fn stored_policy_hash(canonical: Option<&str>) -> Option<String> {
    canonical.map(|c| {
        format!(
            "sha256:{}",
            bonafide_core::hex(&bonafide_core::sha256(c.as_bytes()))
        )
    })
}

/// Signs a new token for `agent`, bound to its key `jkt` if given, and returns it
/// with its record.
async fn mint(
    state: &AppState,
    issuer: &Issuer,
    agent: &Agent,
    ttl_s: i64,
    audience: Option<&[String]>,
    jkt: Option<&str>,
) -> Result<(String, TokenRecord), ApiError> {
    let now_s = state.now_ms() / 1000;
    let jti = new_token_id()?;
    // The stored canonical text parses back to the policy as registered, and hashes
    // to the same `policy_hash` (JCS of JCS is itself).
    let (policy, policy_hash, policy_id) = match &agent.policy {
        None => (None, None, None),
        Some(text) => {
            let parsed = bonafide_core::policy::Policy::parse(text.as_bytes())
                .map_err(|e| ApiError::internal(format!("stored policy of {}: {e}", agent.id)))?;
            (
                Some(parsed.as_value().clone()),
                Some(parsed.hash().to_owned()),
                Some(parsed.id().to_owned()),
            )
        }
    };
    let claims = AgentClaims {
        iss: state.config.public_url.clone(),
        sub: agent.id.clone(),
        aud: audience.map(|a| match a {
            [one] => Audience::One(one.clone()),
            many => Audience::Many(many.to_vec()),
        }),
        iat: now_s,
        nbf: Some(now_s),
        exp: now_s + ttl_s,
        jti: jti.clone(),
        agent: AgentInfo {
            name: agent.name.clone(),
            issuer: issuer.name.clone(),
            scopes: agent.scopes.clone(),
            description: agent.description.clone(),
        },
        scope: Some(agent.scopes.join(" ")),
        user: agent.user.clone(),
        policy,
        policy_hash,
        cnf: jkt.map(|j| Confirmation { jkt: j.to_owned() }),
        act: None,
        ancestor_jtis: None,
        // Allocated before signing: receivers verifying offline read it in the
        // status list (crate::status_lists).
        status: None,
    };
    // A token bound to the agent's key is revoked in its list once that key is
    // rotated out past its grace (verify refuses it then).
    let keys = claims
        .cnf
        .as_ref()
        .map(|c| bonafide_store::AncestorKey {
            agent: agent.id.clone(),
            issuer_kid: None,
            jkt: Some(c.jkt.clone()),
            policy_revocation: None,
        })
        .into_iter()
        .collect();
    let entry = crate::status_lists::entry_of(
        &jti,
        &agent.id,
        &issuer.id,
        claims.exp,
        crate::status_lists::DependsOn {
            policy_id: policy_id.as_deref(),
            keys,
            ..Default::default()
        },
    );
    let claims = AgentClaims {
        status: Some(state.status_lists.allocate(state, &entry).await?),
        ..claims
    };
    let ring = state.keys();
    let text = token::sign(&ring.active, &claims)?;
    // Never hand out a token that verification would refuse for its size.
    let max = state.config.max_token_bytes;
    if text.len() > max {
        return Err(ApiError::invalid(format!(
            "the token would be {} bytes, over the {max}-byte limit: grant fewer or shorter scopes, audiences or a shorter description",
            text.len()
        )));
    }
    let record = TokenRecord {
        jti,
        agent_id: agent.id.clone(),
        issuer_id: issuer.id.clone(),
        kid: ring.active.kid().to_owned(),
        issued_at_s: claims.iat,
        expires_at_s: claims.exp,
        revoked_at_ms: None,
    };
    Ok((text, record))
}

/// Registers an agent and returns its first token.
#[utoipa::path(post, path = "/v1/agents/register", tag = "issuer", request_body = RegisterAgent,
    security(("api_key" = [])),
    responses((status = 201, body = AgentRegistered), (status = 400), (status = 401), (status = 403), (status = 413), (status = 422)))]
pub async fn register(
    State(state): State<Arc<AppState>>,
    IssuerAuth(issuer): IssuerAuth,
    ApiJson(body): ApiJson<RegisterAgent>,
) -> Result<(StatusCode, ApiJson<AgentRegistered>), ApiError> {
    let r = register_agent(&state, issuer, body, FirstToken::Bound).await?;
    let base = &state.config.public_url;
    let answer = registered_answer(
        r,
        format!("{base}/v1/verify"),
        format!("{base}/.well-known/public-key.pem"),
    )?;
    Ok((StatusCode::CREATED, ApiJson(answer)))
}

/// The registration answer, with receivers' verify URL (`{verify_base}/{token}`) and
/// the PEM key's URL as the surface that registered it names them.
pub(crate) fn registered_answer(
    r: Registered,
    verify_base: String,
    public_key_url: String,
) -> Result<AgentRegistered, ApiError> {
    let Registered {
        issuer,
        agent,
        token,
        record,
        key,
    } = r;
    Ok(AgentRegistered {
        agent_id: agent.id.to_string(),
        name: agent.name,
        issuer: issuer.name,
        scopes: agent.scopes,
        verify_url: verify_url(&verify_base, &token),
        token,
        jti: record.jti.to_string(),
        expires_at: rfc3339_s(record.expires_at_s),
        public_key_url,
        policy_hash: stored_policy_hash(agent.policy.as_deref()),
        user: agent.user,
        key: key
            .as_ref()
            .map(|k| agent_keys::key_view(k, agent.created_at_ms))
            .transpose()?,
        allow_bearer_tokens: agent.allow_bearer_tokens,
    })
}

/// ImaRobot's GET-able verify URL: the token in the path. A registry token is
/// base64url and dots, so it needs no escaping.
pub(crate) fn verify_url(verify_base: &str, token: &str) -> String {
    format!("{verify_base}/{token}")
}

/// Registers an agent and records its first token: every rule of a registration
/// (names, scopes, lifetime, audience, policy, the agent's key and who may hold it,
/// `issuer_domain`), for the native route and the compatibility adapters alike.
pub(crate) async fn register_agent(
    state: &AppState,
    issuer: Issuer,
    body: RegisterAgent,
    first_token: FirstToken,
) -> Result<Registered, ApiError> {
    register_agent_as(state, issuer, body, first_token, None).await
}

/// [`register_agent`] under an id the caller chose (`None`: a random one): the
/// playground's demo agents, one per set of actions, are found again by their id.
pub(crate) async fn register_agent_as(
    state: &AppState,
    issuer: Issuer,
    body: RegisterAgent,
    first_token: FirstToken,
    id: Option<AgentId>,
) -> Result<Registered, ApiError> {
    check_issuer_domain(state, &issuer, body.issuer_domain.as_deref())?;
    if first_token == FirstToken::Unbound && !body.allow_bearer_tokens {
        return Err(ApiError::internal(
            "an unbound first token needs an agent that accepts bearer tokens",
        ));
    }
    let name = check_text("name", &body.name, 128)?;
    let description = body
        .description
        .as_deref()
        .map(|d| check_text("description", d, 1024))
        .transpose()?;
    let scopes =
        scopes::validate_all(&body.scopes).map_err(|e| ApiError::invalid(e.to_string()))?;
    let ttl = check_ttl(state, body.expiry_seconds, state.config.default_token_ttl_s)?;
    let audience = check_audience(body.audience)?;
    let policy = check_policy(body.policy.as_deref())?;
    let user = body
        .user
        .as_deref()
        .map(|u| check_text("user", u, 256))
        .transpose()?;
    let own_key = parse_key(&KeyInput {
        jwk: body.public_key.as_ref(),
        pem: body.signing_key_pub.as_deref(),
        algorithm: body.key_algorithm.as_deref(),
    })?;
    let key_lifetime_s = agent_keys::key_lifetime(body.key_expires_in)?;
    if own_key.is_none() && body.key_expires_in.is_some() {
        return Err(ApiError::invalid(
            "`key_expires_in` goes with the agent's key (`public_key` or `signing_key_pub`)",
        ));
    }
    let agent = Agent {
        id: match id {
            Some(id) => id,
            None => new_agent_id()?,
        },
        issuer_id: issuer.id.clone(),
        name,
        description,
        scopes,
        audience,
        token_ttl_s: ttl,
        status: AgentStatus::Active,
        created_at_ms: state.now_ms(),
        revoked_at_ms: None,
        revoke_reason: None,
        policy,
        user,
        suspended_at_ms: None,
        suspend_reason: None,
        allow_bearer_tokens: body.allow_bearer_tokens,
    };
    let key_record = own_key
        .as_ref()
        .map(|k| agent_keys::key_record(&agent.id, k, agent.created_at_ms, key_lifetime_s))
        .transpose()?;
    let jkt = match first_token {
        FirstToken::Bound => key_record.as_ref().map(|k| k.jkt.as_str()),
        FirstToken::Unbound => None,
    };
    let (token, record) = mint(state, &issuer, &agent, ttl, agent.audience.as_deref(), jkt).await?;
    let audit = audit_change(
        EventType::AgentRegistered,
        agent.created_at_ms,
        issuer_actor(&issuer),
        Some(&agent.id),
        Some(&issuer.id),
        |e| {
            e.jti = Some(record.jti.to_string());
            e.token_sha256 = Some(token_sha256(&token));
            e.kid = Some(record.kid.clone());
            e.scopes.clone_from(&agent.scopes);
        },
    )?;
    state
        .store
        .create_agent(&agent, &record, key_record.as_ref(), &audit)
        .await?;
    if key_record.is_some() {
        // Its token's status entry was allocated before this commit: the status
        // publisher may have read the agent's keys meanwhile and found none.
        state.forget_agent_keys(&agent.id);
    }
    tracing::info!(issuer_id = %issuer.id, agent_id = %agent.id, jti = %record.jti, "agent registered");
    Ok(Registered {
        issuer,
        agent,
        token,
        record,
        key: key_record,
    })
}

fn view(issuer: &Issuer, a: Agent) -> AgentView {
    AgentView {
        agent_id: a.id.to_string(),
        name: a.name,
        description: a.description,
        issuer: issuer.name.clone(),
        scopes: a.scopes,
        audience: a.audience,
        status: a.status.as_str().to_owned(),
        expiry_seconds: a.token_ttl_s,
        created_at: rfc3339_ms(a.created_at_ms),
        revoked_at: a.revoked_at_ms.map(rfc3339_ms),
        revoke_reason: a.revoke_reason,
        suspended_at: a.suspended_at_ms.map(rfc3339_ms),
        suspend_reason: a.suspend_reason,
        policy_hash: stored_policy_hash(a.policy.as_deref()),
        policy: a
            .policy
            .as_deref()
            .and_then(|p| serde_json::from_str(p).ok()),
        user: a.user,
        allow_bearer_tokens: a.allow_bearer_tokens,
    }
}

/// `GET /v1/agents` query.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Page size, 1 to 200 (default 50); outside that range the request is refused
    /// with 422 (never clamped).
    #[serde(default)]
    #[param(minimum = 1, maximum = 200)]
    pub limit: Option<u32>,
    /// `next_cursor` from the previous page, exactly as received (opaque base64url).
    #[serde(default)]
    #[param(pattern = "^[A-Za-z0-9_-]+$")]
    pub cursor: Option<String>,
}

fn bad_cursor() -> ApiError {
    ApiError::bad_request(
        "invalid `cursor`: pass back `next_cursor` exactly as received, with the same API key",
    )
}

/// The store's opaque cursor ([`bonafide_store::Cursor`]: it names the agent the
/// caller was shown last, never a position in the registry).
fn decode_cursor(text: &str) -> Result<bonafide_store::Cursor, ApiError> {
    text.parse().map_err(|_| bad_cursor())
}

/// Lists the caller's agents, oldest first, cursor-paginated.
#[utoipa::path(get, path = "/v1/agents", tag = "issuer", params(ListQuery), security(("api_key" = [])),
    responses((status = 200, body = AgentList),
              (status = 400, description = "a parameter that is not a number, an unknown parameter, or a `cursor` not received from this listing (`BAD_REQUEST`)"),
              (status = 401), (status = 403),
              (status = 422, description = "`limit` outside 1–200 (`INVALID_REQUEST`)")))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    IssuerAuth(issuer): IssuerAuth,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<ApiJson<AgentList>, ApiError> {
    let limit = q.limit.unwrap_or(50);
    if !(1..=200).contains(&limit) {
        return Err(ApiError::invalid("`limit` must be between 1 and 200"));
    }
    let after = q.cursor.as_deref().map(decode_cursor).transpose()?;
    // Another issuer's agent, or none: the same refusal, so a cursor tells nobody
    // whether an agent exists.
    let page = match state
        .store
        .list_agents(&issuer.id, after.as_ref(), limit)
        .await
    {
        Err(bonafide_store::StoreError::NotFound) => return Err(bad_cursor()),
        other => other?,
    };
    Ok(ApiJson(AgentList {
        agents: page.items.into_iter().map(|a| view(&issuer, a)).collect(),
        next_cursor: page.next.as_ref().map(ToString::to_string),
    }))
}

/// Maps the store's `NotFound` to a 404 that names `what`.
fn not_found_as(what: &'static str) -> impl Fn(bonafide_store::StoreError) -> ApiError {
    move |e| match e {
        bonafide_store::StoreError::NotFound => ApiError::not_found(what),
        other => other.into(),
    }
}

/// Loads an agent of this issuer; anything else is 404.
pub(crate) async fn own_agent(
    state: &AppState,
    issuer: &Issuer,
    id: &str,
) -> Result<Agent, ApiError> {
    let id = AgentId::try_from(id).map_err(|_| ApiError::not_found("agent"))?;
    match state.store.agent(&id).await? {
        Some(a) if a.issuer_id == issuer.id => Ok(a),
        _ => Err(ApiError::not_found("agent")),
    }
}

/// Reads one of the caller's agents.
#[utoipa::path(get, path = "/v1/agents/{id}", tag = "issuer", params(("id" = crate::openapi::values::AgentId, Path, description = "agent id (any other text is a 404)")),
    security(("api_key" = [])), responses((status = 200, body = AgentView), (status = 401), (status = 404)))]
pub async fn get(
    State(state): State<Arc<AppState>>,
    IssuerAuth(issuer): IssuerAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<AgentView>, ApiError> {
    let agent = own_agent(&state, &issuer, &id).await?;
    Ok(ApiJson(view(&issuer, agent)))
}

/// `POST /v1/agents/{id}/issue-token` body (may be empty `{}`).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IssueToken {
    /// Lifetime in seconds, 60 to the server's maximum; default the agent's.
    #[serde(default)]
    #[schema(minimum = 60)]
    pub expiry_seconds: Option<i64>,
    /// Audiences; default the agent's. Must be within the agent's if it has any.
    #[serde(default)]
    pub audience: Option<AudienceInput>,
}

/// Issues another token for one of the caller's active agents (not a suspended or
/// revoked one: 409).
#[utoipa::path(post, path = "/v1/agents/{id}/issue-token", tag = "issuer", request_body = Option<IssueToken>,
    params(("id" = crate::openapi::values::AgentId, Path, description = "agent id (any other text is a 404)")), security(("api_key" = [])),
    responses((status = 201, body = TokenIssued), (status = 401), (status = 404), (status = 409), (status = 422)))]
pub async fn issue_token(
    State(state): State<Arc<AppState>>,
    IssuerAuth(issuer): IssuerAuth,
    ApiPath(id): ApiPath<String>,
    JsonOrEmpty(body): JsonOrEmpty<IssueToken>,
) -> Result<(StatusCode, ApiJson<TokenIssued>), ApiError> {
    let (token, record) = issue_token_for(&state, &issuer, &id, body).await?;
    let verify_base = format!("{}/v1/verify", state.config.public_url);
    Ok((
        StatusCode::CREATED,
        ApiJson(token_issued(token, &record, &verify_base)),
    ))
}

/// The issue-token answer, with the GET-able verify URL of the surface that issued it.
pub(crate) fn token_issued(token: String, record: &TokenRecord, verify_base: &str) -> TokenIssued {
    TokenIssued {
        agent_id: record.agent_id.to_string(),
        jti: record.jti.to_string(),
        verify_url: verify_url(verify_base, &token),
        token,
        expires_at: rfc3339_s(record.expires_at_s),
    }
}

/// Issues and records another token for one of the issuer's active agents: every
/// rule of `POST /v1/agents/{id}/issue-token`, for the native route and adapters.
pub(crate) async fn issue_token_for(
    state: &AppState,
    issuer: &Issuer,
    id: &str,
    body: IssueToken,
) -> Result<(String, TokenRecord), ApiError> {
    let agent = own_agent(state, issuer, id).await?;
    if agent.status == AgentStatus::Revoked {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::AgentRevoked,
            "agent is revoked; register a new agent",
        ));
    }
    if agent.status == AgentStatus::Suspended {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::AgentSuspended,
            "agent is suspended; reactivate it first (POST /v1/agents/{id}/reactivate)",
        ));
    }
    let ttl = check_ttl(state, body.expiry_seconds, agent.token_ttl_s)?;
    let audience = match check_audience(body.audience)? {
        Some(req) => {
            if let Some(allowed) = &agent.audience
                && let Some(extra) = req.iter().find(|a| !allowed.contains(a))
            {
                return Err(ApiError::invalid(format!(
                    "audience `{extra}` is not among the agent's audiences"
                )));
            }
            Some(req)
        }
        None => agent.audience.clone(),
    };
    let jkt = current_key(state, &agent).await?;
    let (token, record) = mint(
        state,
        issuer,
        &agent,
        ttl,
        audience.as_deref(),
        jkt.as_deref(),
    )
    .await?;
    let audit = audit_change(
        EventType::TokenIssued,
        state.now_ms(),
        issuer_actor(issuer),
        Some(&agent.id),
        Some(&issuer.id),
        |e| {
            e.jti = Some(record.jti.to_string());
            e.token_sha256 = Some(token_sha256(&token));
            e.kid = Some(record.kid.clone());
        },
    )?;
    state.store.record_token(&record, &audit).await?;
    tracing::info!(agent_id = %agent.id, jti = %record.jti, "token issued");
    Ok((token, record))
}

/// The `jkt` of the agent's current key, if it has one (tokens are bound to it); a
/// current key past its `key_expires_at` is a 409: its tokens would never verify.
async fn current_key(state: &AppState, agent: &Agent) -> Result<Option<String>, ApiError> {
    let now = state.now_ms();
    let keys = state.store.agent_keys(&agent.id).await?;
    match keys.into_iter().find(|k| k.retired_at_ms.is_none()) {
        None => Ok(None),
        Some(k) if k.expires_at_ms <= now => Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::KeyExpired,
            "the agent's key has expired; rotate it first (PUT /v1/agents/{id}/keys)",
        )),
        Some(k) => Ok(Some(k.jkt)),
    }
}

/// Issues and records a token for an active agent bound to its key `jkt`, with the
/// agent's default lifetime and audiences (after a key rotation).
pub(crate) async fn issue_bound_token(
    state: &AppState,
    issuer: &Issuer,
    agent: &Agent,
    jkt: &str,
) -> Result<(String, TokenRecord), ApiError> {
    let (token, record) = mint(
        state,
        issuer,
        agent,
        agent.token_ttl_s,
        agent.audience.as_deref(),
        Some(jkt),
    )
    .await?;
    let audit = audit_change(
        EventType::TokenIssued,
        state.now_ms(),
        issuer_actor(issuer),
        Some(&agent.id),
        Some(&issuer.id),
        |e| {
            e.jti = Some(record.jti.to_string());
            e.token_sha256 = Some(token_sha256(&token));
            e.kid = Some(record.kid.clone());
        },
    )?;
    state.store.record_token(&record, &audit).await?;
    tracing::info!(agent_id = %agent.id, jti = %record.jti, "token issued");
    Ok((token, record))
}

/// Revokes an agent and every token it has, from the very next verify on.
#[utoipa::path(post, path = "/v1/agents/{id}/revoke", tag = "issuer", request_body = Option<RevokeAgent>,
    params(("id" = crate::openapi::values::AgentId, Path, description = "agent id (any other text is a 404)")), security(("api_key" = [])),
    responses((status = 200, body = AgentRevoked), (status = 401), (status = 404), (status = 422)))]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    IssuerAuth(issuer): IssuerAuth,
    ApiPath(id): ApiPath<String>,
    JsonOrEmpty(body): JsonOrEmpty<RevokeAgent>,
) -> Result<ApiJson<AgentRevoked>, ApiError> {
    let reason = body
        .reason
        .as_deref()
        .map(|r| check_text("reason", r, 512))
        .transpose()?;
    let id = AgentId::try_from(id.as_str()).map_err(|_| ApiError::not_found("agent"))?;
    // Spawned: if the client goes away mid-request, the commit and the in-memory
    // mirror still happen together.
    let now = state.now_ms();
    let audit = audit_change(
        EventType::AgentRevoked,
        now,
        issuer_actor(&issuer),
        Some(&id),
        Some(&issuer.id),
        |e| e.note.clone_from(&reason),
    )?;
    let issuer_id = issuer.id.clone();
    let agent = state
        .commit(
            "revoke",
            Part::Revocations,
            Box::new(move |state| {
                Box::pin(async move {
                    let agent = state
                        .store
                        .revoke_agent(&issuer_id, &id, reason.as_deref(), now, &audit)
                        .await
                        .map_err(not_found_as("agent"))?;
                    let change = Change::Revoked(Revoked::Agent(agent.id.clone()));
                    Ok((agent, change))
                })
            }),
        )
        .await?;
    tracing::info!(issuer_id = %issuer.id, agent_id = %agent.id, "agent revoked");
    Ok(ApiJson(AgentRevoked {
        revoked: true,
        agent_id: agent.id.to_string(),
        revoked_at: rfc3339_ms(agent.revoked_at_ms.unwrap_or_else(|| state.now_ms())),
        reason: agent.revoke_reason,
    }))
}

/// `POST /v1/agents/{id}/suspend` body (may be empty).
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SuspendAgent {
    /// Why, for the record.
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::values::Text512>)]
    pub reason: Option<String>,
}

/// `POST /v1/agents/{id}/reactivate` body: nothing, or `{}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReactivateAgent {}

/// The store's answers to a suspend or reactivate, as HTTP: another issuer's agent is
/// a 404 like a missing one, a revoked agent a 409.
fn suspension_error(e: bonafide_store::StoreError) -> ApiError {
    match e {
        bonafide_store::StoreError::Conflict(_) => ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::AgentRevoked,
            "agent is revoked; revocation is permanent, so it cannot be suspended or reactivated",
        ),
        other => not_found_as("agent")(other),
    }
}

/// Suspends an agent: from the very next verify on, its tokens answer `valid:false`
/// with `AGENT_SUSPENDED`, until it is reactivated. Suspending a suspended agent
/// changes nothing (the first suspension's time and reason stay).
#[utoipa::path(post, path = "/v1/agents/{id}/suspend", tag = "issuer", request_body = Option<SuspendAgent>,
    params(("id" = crate::openapi::values::AgentId, Path, description = "agent id (any other text is a 404)")), security(("api_key" = [])),
    responses((status = 200, body = AgentView), (status = 401), (status = 403), (status = 404),
              (status = 409, description = "the agent is revoked"), (status = 422)))]
pub async fn suspend(
    State(state): State<Arc<AppState>>,
    IssuerAuth(issuer): IssuerAuth,
    ApiPath(id): ApiPath<String>,
    JsonOrEmpty(body): JsonOrEmpty<SuspendAgent>,
) -> Result<ApiJson<AgentView>, ApiError> {
    let reason = body
        .reason
        .as_deref()
        .map(|r| check_text("reason", r, 512))
        .transpose()?;
    let id = AgentId::try_from(id.as_str()).map_err(|_| ApiError::not_found("agent"))?;
    let now = state.now_ms();
    let audit = audit_change(
        EventType::AgentSuspended,
        now,
        issuer_actor(&issuer),
        Some(&id),
        Some(&issuer.id),
        |e| e.note.clone_from(&reason),
    )?;
    // Spawned, like revoke: the commit and the in-memory mirror happen together even
    // if the client goes away.
    let issuer_id = issuer.id.clone();
    let agent = state
        .commit(
            "suspend",
            Part::Suspensions,
            Box::new(move |state| {
                Box::pin(async move {
                    let agent = state
                        .store
                        .suspend_agent(&issuer_id, &id, reason.as_deref(), now, &audit)
                        .await
                        .map_err(suspension_error)?;
                    Ok((agent.clone(), Change::Suspension(Box::new(agent))))
                })
            }),
        )
        .await?;
    tracing::info!(issuer_id = %issuer.id, agent_id = %agent.id, "agent suspended");
    Ok(ApiJson(view(&issuer, agent)))
}

/// Reactivates a suspended agent: its tokens verify again from the very next verify
/// on (those not expired or revoked). Reactivating an agent that is not suspended
/// changes nothing.
#[utoipa::path(post, path = "/v1/agents/{id}/reactivate", tag = "issuer", request_body = Option<ReactivateAgent>,
    params(("id" = crate::openapi::values::AgentId, Path, description = "agent id (any other text is a 404)")), security(("api_key" = [])),
    responses((status = 200, body = AgentView), (status = 401), (status = 403), (status = 404),
              (status = 409, description = "the agent is revoked"), (status = 422)))]
pub async fn reactivate(
    State(state): State<Arc<AppState>>,
    IssuerAuth(issuer): IssuerAuth,
    ApiPath(id): ApiPath<String>,
    JsonOrEmpty(ReactivateAgent {}): JsonOrEmpty<ReactivateAgent>,
) -> Result<ApiJson<AgentView>, ApiError> {
    let id = AgentId::try_from(id.as_str()).map_err(|_| ApiError::not_found("agent"))?;
    let audit = audit_change(
        EventType::AgentReactivated,
        state.now_ms(),
        issuer_actor(&issuer),
        Some(&id),
        Some(&issuer.id),
        |_| {},
    )?;
    let issuer_id = issuer.id.clone();
    let agent = state
        .commit(
            "reactivate",
            Part::Suspensions,
            Box::new(move |state| {
                Box::pin(async move {
                    let agent = state
                        .store
                        .reactivate_agent(&issuer_id, &id, &audit)
                        .await
                        .map_err(suspension_error)?;
                    Ok((agent.clone(), Change::Suspension(Box::new(agent))))
                })
            }),
        )
        .await?;
    tracing::info!(issuer_id = %issuer.id, agent_id = %agent.id, "agent reactivated");
    Ok(ApiJson(view(&issuer, agent)))
}

/// Revokes one token of one of the caller's agents.
#[utoipa::path(post, path = "/v1/tokens/revoke", tag = "issuer", request_body = RevokeToken, security(("api_key" = [])),
    responses((status = 200, body = TokenRevoked), (status = 401), (status = 404), (status = 422)))]
pub async fn revoke_token(
    State(state): State<Arc<AppState>>,
    IssuerAuth(issuer): IssuerAuth,
    ApiJson(body): ApiJson<RevokeToken>,
) -> Result<ApiJson<TokenRevoked>, ApiError> {
    // An issuer-signed token (self-custody) the registry may never have seen: it is
    // recorded and revoked in one store call.
    let mut self_signed: Option<TokenRecord> = None;
    let unseen_agent = match (&body.agent_id, &body.jti) {
        (Some(a), Some(_)) => Some(
            AgentId::try_from(a.as_str())
                .map_err(|_| ApiError::invalid("`agent_id` is not an agent id (`agt_…`)"))?,
        ),
        (Some(_), None) => {
            return Err(ApiError::invalid(
                "`agent_id` goes with `jti` (a token given whole names its agent)",
            ));
        }
        (None, _) => None,
    };
    // With `jti`: the text the caller gave, which is a registry id (`tok_…`) or the
    // issuer's own `jti` of a token it signed (any kind: agent token or consent token).
    let mut own_jti: Option<String> = None;
    let (mut jti, hash) = match (body.jti, body.token) {
        (Some(text), None) => {
            if !bonafide_core::consent::acceptable_jti(&text) {
                return Err(ApiError::invalid(format!(
                    "`jti` must be 1 to {} visible characters",
                    bonafide_core::consent::MAX_JTI_CHARS
                )));
            }
            let scoped = bonafide_core::token::issuer_token_id(&issuer.id, &text);
            let id = match TokenId::try_from(text.as_str()) {
                Ok(id) => id,
                // Not a registry id: only the caller's own `jti` can name the token.
                Err(_) => scoped,
            };
            own_jti = Some(text);
            (id, None)
        }
        (None, Some(text)) => {
            // Only to identify a genuine token of the caller's, whoever it is for. A
            // token that outlives `max_token_ttl` never verifies: there is nothing
            // to revoke, and its revocation would sit in memory until its `exp`.
            let mut opts = state
                .verify_options(bonafide_core::token::AudienceRule::Unchecked)
                .into_owned();
            opts.time = TimeCheck::Skip;
            let (verified, signer) =
                crate::token_check::verify_signed(&state, &text, &opts, state.now_ms() / 1000)
                    .map_err(|e| {
                        ApiError::invalid(format!(
                            "`token` is not a genuine token of this registry or of a registered issuer key: {e}"
                        ))
                    })?;
            let c = verified.claims;
            if let Some(signer) = signer {
                // Another issuer's key: not the caller's token, a 404 like any other.
                if signer.issuer_id != issuer.id {
                    return Err(ApiError::not_found("token"));
                }
                self_signed = Some(TokenRecord {
                    jti: c.jti.clone(),
                    agent_id: c.sub,
                    issuer_id: signer.issuer_id,
                    kid: signer.kid,
                    issued_at_s: c.iat,
                    expires_at_s: c.exp,
                    revoked_at_ms: None,
                });
            }
            (c.jti, Some(token_sha256(&text)))
        }
        _ => return Err(ApiError::invalid("give exactly one of `jti` and `token`")),
    };
    // The agent, for the audit entry; another issuer's token stays a 404 below.
    let agent = match &self_signed {
        Some(t) => state
            .agent_record(&t.agent_id)
            .await?
            .filter(|a| a.issuer_id == issuer.id)
            .map(|a| a.id.clone()),
        None => {
            // A `jti` names one of the caller's registry-signed tokens, or (its own
            // `jti`) one of its issuer-signed tokens recorded by an earlier revoke:
            // those are stored under the (issuer, jti) id, so another issuer's equal
            // `jti` is never this caller's token.
            let mut return_agent = None;
            let mut found = state
                .store
                .token(&jti)
                .await?
                .filter(|t| t.issuer_id == issuer.id);
            if let (None, Some(own)) = (&found, &own_jti) {
                // One derivation for every kind an issuer signs
                // (`core::token::issuer_token_id`), so its own `jti` finds the token
                // however it was recorded.
                let scoped = bonafide_core::token::issuer_token_id(&issuer.id, own);
                found = state
                    .store
                    .token(&scoped)
                    .await?
                    .filter(|t| t.issuer_id == issuer.id);
                if found.is_some() {
                    jti = scoped;
                } else if let Some(agent_id) = &unseen_agent {
                    // Signed offline and never shown to the registry: recorded under
                    // the (issuer, jti) id, like one revoked whole, until the latest
                    // `exp` any such token could have (its own is not known).
                    let agent = state
                        .agent_record(agent_id)
                        .await?
                        .filter(|a| a.issuer_id == issuer.id)
                        .ok_or_else(|| ApiError::not_found("agent"))?;
                    let now_s = state.now_ms() / 1000;
                    self_signed = Some(TokenRecord {
                        jti: scoped.clone(),
                        agent_id: agent.id.clone(),
                        issuer_id: issuer.id.clone(),
                        kid: UNSEEN_KID.to_owned(),
                        issued_at_s: now_s,
                        expires_at_s: now_s
                            + state.config.max_token_ttl_s
                            + state.config.leeway_secs,
                        revoked_at_ms: None,
                    });
                    jti = scoped;
                    return_agent = Some(agent.id.clone());
                }
            }
            // A named agent must be the token's: never ignored, never widened.
            if let (Some(t), Some(named)) = (&found, &unseen_agent)
                && t.agent_id != *named
            {
                return Err(ApiError::not_found("token"));
            }
            found.map(|t| t.agent_id).or(return_agent)
        }
    };
    let now = state.now_ms();
    let audit = audit_change(
        EventType::TokenRevoked,
        now,
        issuer_actor(&issuer),
        agent.as_ref(),
        Some(&issuer.id),
        |e| {
            e.jti = Some(jti.to_string());
            e.token_sha256 = hash;
        },
    )?;
    let issuer_id = issuer.id.clone();
    let record = state
        .commit(
            "revoke",
            Part::Revocations,
            Box::new(move |state| {
                Box::pin(async move {
                    let record = match self_signed {
                        Some(token) => {
                            state
                                .store
                                .revoke_issuer_signed_token(&issuer_id, &token, now, &audit)
                                .await
                        }
                        None => {
                            state
                                .store
                                .revoke_token(&issuer_id, &jti, now, &audit)
                                .await
                        }
                    }
                    .map_err(not_found_as("token"))?;
                    let change = Change::Revoked(Revoked::Token {
                        jti: record.jti.clone(),
                        expires_at_s: record.expires_at_s,
                    });
                    Ok((record, change))
                })
            }),
        )
        .await?;
    tracing::info!(issuer_id = %issuer.id, jti = %record.jti, "token revoked");
    Ok(ApiJson(TokenRevoked {
        revoked: true,
        jti: record.jti.to_string(),
        agent_id: record.agent_id.to_string(),
        revoked_at: rfc3339_ms(record.revoked_at_ms.unwrap_or_else(|| state.now_ms())),
    }))
}

/// The `kid` recorded for a token revoked by `jti` before the registry saw it: the
/// key that signed it is not known (any of the issuer's keys may have).
const UNSEEN_KID: &str = "unknown";

fn issuer_actor(issuer: &Issuer) -> Actor {
    Actor::Issuer {
        id: issuer.id.to_string(),
    }
}
