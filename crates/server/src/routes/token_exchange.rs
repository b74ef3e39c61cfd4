//! `POST /v1/token`: delegation by OAuth 2.0 token exchange (RFC 8693). An agent's
//! token (`subject_token`) is exchanged for a strictly narrower child token that a
//! sub-agent (`actor_token`) presents, its `act` claim recording the chain (§4.1).
//!
//! # Who may call it
//!
//! The issuer of the subject token's agent, with its issuer key (`bfk_iss_…`, as
//! `Authorization: Bearer` or `X-API-Key`): the client of this token endpoint is the
//! issuer. Possession of tokens alone is not enough, on purpose: a stolen parent token
//! bound to its agent's key (`cnf`) could otherwise be exchanged for a child bound to
//! the thief's own agent's key, turning a token the thief cannot use into one it can.
//! The actor must be an agent of the same issuer, proven registered and live by its
//! own (undelegated) token: cross-issuer delegation is not offered.
//!
//! # Request (RFC 8693 §2.1)
//!
//! `application/x-www-form-urlencoded` as the RFC says, or a JSON object with the same
//! members (string values; `audience` a string or an array). Each parameter at most
//! once, except `audience` (repeatable). `grant_type` =
//! `urn:ietf:params:oauth:grant-type:token-exchange`; `subject_token` and
//! `actor_token`, each with its `*_token_type` `urn:ietf:params:oauth:token-type:jwt`
//! or `…:access_token`; optional `requested_token_type` (the same two), `scope`
//! (space-separated; default the parent's), `audience` (default the parent's),
//! `expires_in` (seconds; default: the parent's expiry) and `policy` (Bonafide
//! extension: the JSON text of a `pol.v0.2` policy; default the parent's). `resource`
//! is not supported (`invalid_target`: name receivers with `audience`).
//!
//! Both tokens go through the whole verify pipeline (signature, expiry, revocation,
//! suspension of every agent in their chains, bound key). The child is signed by the
//! registry's active key, bound (`cnf.jkt`) to the actor's current key if it has one,
//! recorded with its delegation (the ancestors' period budgets it must also charge)
//! and audited (`token.delegated`) in one transaction.
//!
//! # Answers
//!
//! 200 (RFC 8693 §2.2.1): `{access_token, issued_token_type, token_type: "N_A",
//! expires_in, scope, jti}`, with `Cache-Control: no-store`.
//!
//! Errors use the OAuth shape every OAuth client reads (RFC 6749 §5.2), not the
//! `{"error":{…}}` object of the rest of the API: `{error, error_description, code,
//! request_id}`, where `error` is the RFC code and `code` Bonafide's stable code. 400
//! for everything but `invalid_client` (401: no key, an unknown key) and the body
//! limit (413). `DELEGATION_WIDENS` adds `widened`, the dimensions that widened (see
//! `bonafide_core::delegation::Widening::dimension`). RFC codes used:
//! `unsupported_grant_type`; `invalid_request` (a parameter missing, repeated or
//! malformed, an unknown token type, a subject or actor token that does not verify,
//! `code` then being its token error); `invalid_grant` (the subject token is another
//! issuer's); `unauthorized_client` (a key that is not an issuer key); `invalid_scope`
//! and `invalid_target` (widening, see [`widens_error`]).

use std::sync::Arc;

use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use bonafide_core::audit::{Actor, EventType, token_sha256};
use bonafide_core::delegation::{self, DelegationError, Issue, Widenings};
use bonafide_core::ids::AgentId;
use bonafide_core::keys::KeyValidity;
use bonafide_core::policy::Policy;
use bonafide_core::token::{self, AgentClaims, AudienceRule, Confirmation};
use bonafide_store::{AncestorKey, DelegationRecord, TokenRecord};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorCode};
use crate::routes::{audit_change, new_token_id};
use crate::state::AppState;
use crate::verdict::TokenCheck;
pub use bonafide_api::tokens::TokenExchangeResponse;

/// `grant_type` of token exchange (RFC 8693 §2.1).
pub const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Token type of a JWT (RFC 8693 §3): what the child is.
pub const TOKEN_TYPE_JWT: &str = "urn:ietf:params:oauth:token-type:jwt";
/// Token type of an access token (RFC 8693 §3), accepted for agent tokens too.
pub const TOKEN_TYPE_ACCESS: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Most audiences a request may name.
const MAX_AUDIENCES: usize = 16;

/// `POST /v1/token` parameters (form or JSON), for the OpenAPI document.
#[derive(Debug, ToSchema)]
#[allow(dead_code)]
pub struct TokenExchangeRequest {
    /// `urn:ietf:params:oauth:grant-type:token-exchange`.
    pub grant_type: String,
    /// The parent agent's token.
    pub subject_token: String,
    /// `urn:ietf:params:oauth:token-type:jwt` or `…:access_token`.
    pub subject_token_type: String,
    /// The sub-agent's own token (not itself delegated).
    pub actor_token: String,
    /// `urn:ietf:params:oauth:token-type:jwt` or `…:access_token`.
    pub actor_token_type: String,
    /// `urn:ietf:params:oauth:token-type:jwt` or `…:access_token`, if given.
    pub requested_token_type: Option<String>,
    /// Space-separated scopes, each held by the parent; default the parent's.
    pub scope: Option<String>,
    /// Receivers (repeatable), each among the parent's; default the parent's.
    pub audience: Option<Vec<String>>,
    /// Lifetime in seconds, not past the parent's expiry; default until the parent's.
    pub expires_in: Option<i64>,
    /// Bonafide extension: the JSON text of a `pol.v0.2` policy no wider than the
    /// parent's; default the parent's.
    pub policy: Option<String>,
}

/// The body of a token exchange error (RFC 6749 §5.2), as [`OAuthError`] writes it.
#[derive(Debug, Serialize, ToSchema)]
#[allow(dead_code)] // the schema only: the body is written by `OAuthError`
pub struct OAuthErrorBody {
    /// The RFC 6749 / RFC 8693 error: `invalid_request`, `invalid_client`,
    /// `invalid_grant`, `unauthorized_client`, `unsupported_grant_type`,
    /// `invalid_scope`, `invalid_target` or `server_error`.
    error: String,
    /// What went wrong, in words.
    error_description: String,
    /// Bonafide's own code, as in every other error answer (`DELEGATION_WIDENS`, …).
    code: ErrorCode,
    /// This request's id.
    #[schema(pattern = "^req_[0-9a-f]{32}$")]
    request_id: String,
    /// With `DELEGATION_WIDENS`: the dimensions the child would widen.
    #[serde(skip_serializing_if = "Option::is_none")]
    widened: Option<Vec<String>>,
}

/// A 503 of token exchange: the OAuth error (`server_error`) when the store or the
/// audit log cannot take it, the plain error body when the request timed out.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
#[allow(dead_code)] // the schema only
pub enum TokenExchangeUnavailable {
    /// From the handler.
    OAuth(OAuthErrorBody),
    /// From the request timeout.
    Plain(crate::error::ErrorBody),
}

/// An OAuth error answer (RFC 6749 §5.2) with Bonafide's code.
#[derive(Debug)]
pub struct OAuthError {
    status: StatusCode,
    error: &'static str,
    code: ErrorCode,
    description: String,
    widened: Option<Vec<&'static str>>,
}

impl OAuthError {
    fn new(error: &'static str, code: ErrorCode, description: impl Into<String>) -> Self {
        OAuthError {
            status: StatusCode::BAD_REQUEST,
            error,
            code,
            description: description.into(),
            widened: None,
        }
    }

    fn request(description: impl Into<String>) -> Self {
        Self::new("invalid_request", ErrorCode::InvalidRequest, description)
    }
}

impl From<ApiError> for OAuthError {
    fn from(e: ApiError) -> Self {
        let error = match e.status {
            StatusCode::UNAUTHORIZED => "invalid_client",
            s if s.is_server_error() => "server_error",
            _ => "invalid_request",
        };
        if let Some(detail) = &e.internal {
            tracing::error!(request_id = %crate::request_id::current(), detail = %detail, "token exchange failed");
        }
        OAuthError {
            status: e.status,
            error,
            code: e.code,
            description: e.message,
            widened: None,
        }
    }
}

impl IntoResponse for OAuthError {
    fn into_response(self) -> Response {
        let mut body = json!({
            "error": self.error,
            "error_description": self.description,
            "code": self.code,
            "request_id": crate::request_id::current().to_string(),
        });
        if let (Some(w), Some(obj)) = (self.widened, body.as_object_mut()) {
            obj.insert("widened".into(), json!(w));
        }
        let mut resp = (self.status, Json(body)).into_response();
        let h = resp.headers_mut();
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.status == StatusCode::UNAUTHORIZED {
            h.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"bonafide\""),
            );
        }
        resp
    }
}

/// The OAuth error for a widening: `invalid_scope` when the scopes widen (RFC 6749
/// §5.2), `invalid_target` when only the audience does (RFC 8693 §2.2.2), else
/// `invalid_request`; `code` is always `DELEGATION_WIDENS`, `widened` lists them all.
pub fn widens_error(w: &Widenings, actor: &AgentId) -> OAuthError {
    let dims = w.dimensions();
    let error = if dims.contains(&"scope") {
        "invalid_scope"
    } else if dims == ["audience"] {
        "invalid_target"
    } else {
        "invalid_request"
    };
    // What to do about the one widening that is not in the request itself.
    let hint = if dims.contains(&"cnf") {
        format!(" (register the sub-agent's key first: `PUT /v1/agents/{actor}/keys`)")
    } else {
        String::new()
    };
    OAuthError {
        widened: Some(dims),
        ..OAuthError::new(
            error,
            ErrorCode::DelegationWidens,
            format!("the child token would be wider than its parent: {w}{hint}"),
        )
    }
}

/// The request's parameters, in order, from a form or a JSON object.
async fn parameters(
    req: Request,
    state: &Arc<AppState>,
) -> Result<Vec<(String, String)>, OAuthError> {
    let json = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    let too_large = || OAuthError {
        status: StatusCode::PAYLOAD_TOO_LARGE,
        ..OAuthError::new(
            "invalid_request",
            ErrorCode::PayloadTooLarge,
            "request body is too large",
        )
    };
    if !json {
        return match Form::<Vec<(String, String)>>::from_request(req, state).await {
            Ok(Form(p)) => Ok(p),
            Err(r) if r.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(too_large()),
            Err(_) => Err(OAuthError::request(
                "send the parameters as application/x-www-form-urlencoded (RFC 8693 §2.1) or as a JSON object",
            )),
        };
    }
    let bytes = axum::body::Bytes::from_request(req, state)
        .await
        .map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                too_large()
            } else {
                OAuthError::request("request body could not be read")
            }
        })?;
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(&bytes) else {
        return Err(OAuthError::request("request body is not a JSON object"));
    };
    let mut out = Vec::new();
    for (name, value) in map {
        match value {
            Value::String(s) => out.push((name, s)),
            Value::Number(n) if name == "expires_in" => out.push((name, n.to_string())),
            Value::Array(list) if name == "audience" => {
                for v in list {
                    let Value::String(s) = v else {
                        return Err(OAuthError::request("`audience` must be strings"));
                    };
                    out.push((name.clone(), s));
                }
            }
            _ => {
                return Err(OAuthError::request(format!(
                    "`{}` must be a string",
                    name.chars().take(64).collect::<String>()
                )));
            }
        }
    }
    Ok(out)
}

/// The parsed request.
struct Params {
    subject_token: String,
    actor_token: String,
    scope: Option<String>,
    audience: Option<Vec<String>>,
    expires_in: Option<i64>,
    policy: Option<String>,
}

fn check_params(raw: Vec<(String, String)>) -> Result<Params, OAuthError> {
    const SINGLE: [&str; 11] = [
        "grant_type",
        "subject_token",
        "subject_token_type",
        "actor_token",
        "actor_token_type",
        "requested_token_type",
        "scope",
        "expires_in",
        "policy",
        "resource",
        "client_id",
    ];
    let mut single: Vec<(&str, String)> = Vec::new();
    let mut audience: Vec<String> = Vec::new();
    for (name, value) in raw {
        if name == "audience" {
            audience.push(value);
            continue;
        }
        let Some(known) = SINGLE.iter().find(|k| **k == name) else {
            // RFC 6749 §3.2: unknown parameters are ignored.
            continue;
        };
        if single.iter().any(|(k, _)| k == known) {
            return Err(OAuthError::request(format!(
                "`{known}` is given more than once (RFC 6749 §3.2)"
            )));
        }
        single.push((known, value));
    }
    let take = |name: &str| -> Option<String> {
        single
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.clone())
    };
    let required = |name: &str| -> Result<String, OAuthError> {
        take(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| OAuthError::request(format!("`{name}` is required")))
    };
    let grant = required("grant_type")?;
    if grant != GRANT_TYPE {
        return Err(OAuthError::new(
            "unsupported_grant_type",
            ErrorCode::UnsupportedGrantType,
            format!(
                "grant type `{}` is not supported here: use `{GRANT_TYPE}`",
                grant.chars().take(128).collect::<String>()
            ),
        ));
    }
    let token_type = |name: &str, value: &str| -> Result<(), OAuthError> {
        if value == TOKEN_TYPE_JWT || value == TOKEN_TYPE_ACCESS {
            Ok(())
        } else {
            Err(OAuthError::new(
                "invalid_request",
                ErrorCode::UnsupportedTokenType,
                format!(
                    "`{name}` `{}` is not supported: use `{TOKEN_TYPE_JWT}` or `{TOKEN_TYPE_ACCESS}`",
                    value.chars().take(128).collect::<String>()
                ),
            ))
        }
    };
    let subject_token = required("subject_token")?;
    token_type("subject_token_type", &required("subject_token_type")?)?;
    let actor_token = take("actor_token").filter(|v| !v.is_empty()).ok_or_else(|| {
        OAuthError::request(
            "`actor_token` is required: the sub-agent's own token, proving it is a registered agent",
        )
    })?;
    token_type("actor_token_type", &required("actor_token_type")?)?;
    if let Some(t) = take("requested_token_type") {
        token_type("requested_token_type", &t)?;
    }
    if take("resource").is_some() {
        return Err(OAuthError::new(
            "invalid_target",
            ErrorCode::ResourceUnsupported,
            "`resource` is not supported: name receivers with `audience`",
        ));
    }
    if audience.len() > MAX_AUDIENCES {
        return Err(OAuthError::request(format!(
            "at most {MAX_AUDIENCES} `audience` values"
        )));
    }
    for a in &audience {
        if a.is_empty() || a.len() > 256 || bonafide_core::names::forbidden_char(a).is_some() {
            return Err(OAuthError::new(
                "invalid_target",
                ErrorCode::InvalidRequest,
                "each `audience` must be 1 to 256 characters without control, invisible or bidirectional-control characters",
            ));
        }
    }
    let expires_in = match take("expires_in") {
        None => None,
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n > 0 => Some(n),
            _ => {
                return Err(OAuthError::request(
                    "`expires_in` must be a positive whole number of seconds",
                ));
            }
        },
    };
    Ok(Params {
        subject_token,
        actor_token,
        scope: take("scope"),
        audience: (!audience.is_empty()).then_some(audience),
        expires_in,
        policy: take("policy"),
    })
}

/// Verifies one of the two tokens with the whole pipeline; its claims, or the OAuth
/// error naming which token failed and why (`code` is its token error).
async fn verified(
    state: &AppState,
    which: &str,
    text: &str,
    now: i64,
) -> Result<AgentClaims, OAuthError> {
    verified_with_signer(state, which, text, now)
        .await
        .map(|(claims, _)| claims)
}

/// [`verified`], with the kid of the issuer key that signed the token when an issuer
/// signed it itself (a registry token: `None`).
async fn verified_with_signer(
    state: &AppState,
    which: &str,
    text: &str,
    now: i64,
) -> Result<(AgentClaims, Option<String>), OAuthError> {
    // The key that verified the token, not the one its header names.
    // The registry is not the tokens' receiver: their `aud` is what the child keeps
    // or narrows, not something to check here.
    match crate::token_check::check_token_signed(state, text, AudienceRule::Unchecked, now).await? {
        TokenCheck::Valid(v, signer) => Ok((v.claims, signer)),
        TokenCheck::Denied(d) => Err(OAuthError::new(
            "invalid_request",
            ErrorCode::from(&d.error),
            format!("`{which}` does not verify: {}", d.error),
        )),
    }
}

/// Exchanges an agent's token for a narrower child token for a sub-agent (RFC 8693).
/// See the module docs for the contract.
#[utoipa::path(post, path = "/v1/token", tag = "issuer",
    request_body(content = TokenExchangeRequest, content_type = "application/x-www-form-urlencoded",
        description = "RFC 8693 §2.1 parameters; a JSON object with the same members is accepted too"),
    security(("api_key" = [])),
    responses(
        (status = 200, body = TokenExchangeResponse),
        (status = 400, body = OAuthErrorBody, description = "`{error, error_description, code, request_id, widened?}` (RFC 6749 §5.2): unsupported_grant_type, invalid_request, invalid_grant, invalid_scope, invalid_target, unauthorized_client (an admin or receiver key); `code` DELEGATION_WIDENS lists the dimensions in `widened`"),
        (status = 401, body = OAuthErrorBody, description = "invalid_client: no issuer key, or an unknown key"),
        (status = 408, body = crate::error::ErrorBody, description = "the body did not arrive within the request timeout (`REQUEST_TIMEOUT`)"),
        (status = 413, body = OAuthErrorBody, description = "the body is over the size limit (`PAYLOAD_TOO_LARGE`)"),
        (status = 503, body = TokenExchangeUnavailable, description = "a passing condition (`STORAGE_FULL`, `STORE_UNAVAILABLE`, `AUDIT_UNAVAILABLE`, `TIMEOUT`); retry after `Retry-After` seconds")))]
pub async fn exchange(
    State(state): State<Arc<AppState>>,
    caller: Result<Caller, ApiError>,
    req: Request,
) -> Result<Response, OAuthError> {
    let issuer_id = match caller {
        Ok(Caller::Issuer(id)) => id,
        Ok(Caller::Anonymous) => {
            return Err(OAuthError {
                status: StatusCode::UNAUTHORIZED,
                ..OAuthError::new(
                    "invalid_client",
                    ErrorCode::Unauthorized,
                    "send the subject agent's issuer key (`bfk_iss_…`) in `Authorization: Bearer …` or `X-API-Key`",
                )
            });
        }
        Ok(_) => {
            return Err(OAuthError::new(
                "unauthorized_client",
                ErrorCode::Forbidden,
                "token exchange needs an issuer key (`bfk_iss_…`), not an admin or receiver key",
            ));
        }
        Err(e) => return Err(e.into()),
    };
    let params = check_params(parameters(req, &state).await?)?;
    let now = state.now_ms();
    let now_s = now / 1000;

    let (parent, parent_signer) =
        verified_with_signer(&state, "subject_token", &params.subject_token, now).await?;
    if state.issuer_of(&parent.sub).await.map_err(ApiError::from)? != Some(issuer_id.clone()) {
        return Err(OAuthError::new(
            "invalid_grant",
            ErrorCode::Forbidden,
            "`subject_token` is not a token of one of this issuer's agents",
        ));
    }
    let actor_claims = verified(&state, "actor_token", &params.actor_token, now).await?;
    if actor_claims.act.is_some() {
        return Err(OAuthError::request(
            "`actor_token` must be the sub-agent's own token, not a delegated one",
        ));
    }
    let actor = actor_claims.sub;
    if state.issuer_of(&actor).await.map_err(ApiError::from)? != Some(issuer_id.clone()) {
        return Err(OAuthError::request(
            "`actor_token` is not a token of one of this issuer's agents: delegation stays within one issuer",
        ));
    }

    let parent_policy = state
        .policy_of(&parent)
        .map_err(|e| ApiError::internal(format!("verified parent policy: {e}")))?;
    let policy = match &params.policy {
        None => None,
        Some(text) => Some(Policy::parse(text.as_bytes()).map_err(|e| {
            OAuthError::new(
                "invalid_request",
                ErrorCode::PolicyInvalid,
                format!("`policy` is not a valid pol.v0.2 policy: {e}"),
            )
        })?),
    };
    let scopes: Vec<String> = match &params.scope {
        None => parent.agent.scopes.clone(),
        Some(s) => s
            .split(' ')
            .filter(|x| !x.is_empty())
            .map(str::to_owned)
            .collect(),
    };
    // Every token lives at most `max_token_ttl`: a child until min(its parent's
    // `exp`, now + max_token_ttl), or less if it asks (asking past the parent's `exp`
    // is a widening, reported with the others).
    let cap = now_s.saturating_add(state.config.max_token_ttl_s);
    let asked = match params.expires_in {
        None => parent.exp,
        Some(n) => now_s.saturating_add(n),
    };
    let exp = if asked > parent.exp {
        asked
    } else {
        asked.min(cap)
    };
    // The child is bound to the actor's current key, if it has one; core refuses a
    // bearer child of a bound parent (`cnf`).
    let cnf = current_jkt(&state, &actor, now)
        .await?
        .map(|jkt| Confirmation { jkt });
    let request = delegation::Request {
        scopes,
        audience: params.audience,
        exp,
        policy,
        cnf,
    };
    let jti = new_token_id()?;
    let issue = Issue {
        iss: state.config.public_url.clone(),
        jti: jti.clone(),
        iat: now_s,
    };
    let child = delegation::child_claims(
        &parent,
        parent_policy.as_deref(),
        &actor,
        &request,
        issue,
        state.config.max_delegation_depth,
    )
    .map_err(|e| match e {
        DelegationError::Widens(w) => widens_error(&w, &actor),
        DelegationError::ActorInChain(a) => OAuthError::new(
            "invalid_request",
            ErrorCode::DelegationLoop,
            format!(
                "agent `{a}` is already in the delegation chain: a chain never names an agent twice"
            ),
        ),
        DelegationError::Scope(s) => {
            OAuthError::new("invalid_scope", ErrorCode::ScopeInvalid, s.to_string())
        }
        DelegationError::EmptyAudience => {
            OAuthError::new("invalid_target", ErrorCode::InvalidRequest, e.to_string())
        }
        DelegationError::ExpiresBeforeIssued { .. } => OAuthError::request(e.to_string()),
        other => ApiError::internal(format!("delegation: {other}")).into(),
    })?;

    // Its status slot: the chain's agents and ancestor tokens decide it too, so the
    // status list flips it with any of them (crate::status_lists).
    let actors = child
        .act
        .as_ref()
        .map(|act| act.iter().map(|a| a.sub.clone()).collect())
        .unwrap_or_default();
    // The keys behind its ancestors (as `delegation::check` reads them at verify), and
    // the actor key the child itself is bound to.
    let chain_keys = ancestor_keys(&state, &parent, &issuer_id, parent_signer.clone()).await?;
    let mut entry_keys = chain_keys.clone();
    if let Some(cnf) = &child.cnf {
        entry_keys.push(AncestorKey {
            agent: bonafide_core::delegation::current_actor(&child).clone(),
            issuer_kid: None,
            jkt: Some(cnf.jkt.clone()),
            policy_revocation: None,
        });
    }
    // Its own policy's revocation turns it invalid too (as a verify refuses it).
    let policy_id = token::policy_of(&child)
        .ok()
        .flatten()
        .map(|p| p.id().to_owned());
    let entry = crate::status_lists::entry_of(
        &child.jti,
        &child.sub,
        &issuer_id,
        child.exp,
        crate::status_lists::DependsOn {
            actors,
            ancestor_jtis: child.ancestor_jtis.clone().unwrap_or_default(),
            policy_id: policy_id.as_deref(),
            keys: entry_keys,
        },
    );
    let child = AgentClaims {
        status: Some(state.status_lists.allocate(&state, &entry).await?),
        ..child
    };
    let ring = state.keys();
    let text = token::sign(&ring.active, &child).map_err(ApiError::from)?;
    let max = state.config.max_token_bytes;
    if text.len() > max {
        return Err(OAuthError::request(format!(
            "the child token would be {} bytes, over the {max}-byte limit: ask for fewer scopes or audiences, or a smaller policy",
            text.len()
        )));
    }
    let record = TokenRecord {
        jti: jti.clone(),
        agent_id: child.sub.clone(),
        issuer_id: issuer_id.clone(),
        kid: ring.active.kid().to_owned(),
        issued_at_s: child.iat,
        expires_at_s: child.exp,
        revoked_at_ms: None,
    };
    let delegation_record = DelegationRecord {
        jti: jti.clone(),
        parent_jti: parent.jti.clone(),
        actor_id: actor.clone(),
        ancestor_policies: ancestor_policies(&state, &parent, parent_policy.as_deref()).await?,
        ancestor_keys: chain_keys,
        created_at_ms: now,
    };
    let audit = audit_change(
        EventType::TokenDelegated,
        now,
        Actor::Issuer {
            id: issuer_id.to_string(),
        },
        Some(&child.sub),
        Some(&issuer_id),
        |e| {
            e.jti = Some(jti.to_string());
            e.token_sha256 = Some(token_sha256(&text));
            e.kid = Some(record.kid.clone());
            e.scopes.clone_from(&child.agent.scopes);
            e.note = Some(format!("actor {actor}, exchanged from {}", parent.jti));
        },
    )?;
    state
        .store
        .record_delegated_token(&record, &delegation_record, &audit)
        .await
        .map_err(ApiError::from)?;
    tracing::info!(agent_id = %child.sub, actor = %actor, jti = %jti, depth = delegation::depth(&child), "token delegated");
    let body = TokenExchangeResponse {
        access_token: text,
        issued_token_type: TOKEN_TYPE_JWT.to_owned(),
        token_type: "N_A".to_owned(),
        expires_in: child.exp - now_s,
        scope: child.agent.scopes.join(" "),
        jti: jti.to_string(),
    };
    let mut resp = (StatusCode::OK, Json(body)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// The `jkt` of the actor's current key, if it has one: the child is bound to it.
/// A current key past its `key_expires_at` is refused (the child would never verify).
async fn current_jkt(
    state: &AppState,
    actor: &AgentId,
    now: i64,
) -> Result<Option<String>, OAuthError> {
    let keys = state
        .store
        .agent_keys(actor)
        .await
        .map_err(ApiError::from)?;
    match keys.into_iter().find(|k| k.retired_at_ms.is_none()) {
        None => Ok(None),
        // A current key has no grace period: unusable is expired.
        Some(k) if !KeyValidity::agent_key(k.expires_at_ms, k.grace_until_ms).usable(now) => {
            Err(OAuthError::new(
                "invalid_request",
                ErrorCode::KeyExpired,
                "the actor's key has expired: rotate it first (PUT /v1/agents/{id}/keys)",
            ))
        }
        Some(k) => Ok(Some(k.jkt)),
    }
}

/// The policies whose period budgets a spend of the child must also charge, root
/// first: the parent's ancestors' (recorded when the parent was made), then the
/// parent's own if it has a `per_period` budget. A policy is listed once (a child
/// that kept its parent's policy shares its budget).
async fn ancestor_policies(
    state: &AppState,
    parent: &AgentClaims,
    parent_policy: Option<&Policy>,
) -> Result<Vec<String>, OAuthError> {
    let mut out: Vec<(String, String)> = Vec::new();
    if let Some(chain) = crate::delegation::chain_of(state, parent).await? {
        for p in &chain.ancestor_policies {
            push_policy(&mut out, p)?;
        }
    }
    if let Some(p) = parent_policy.filter(|p| p.limits().is_some_and(|l| l.per_period.is_some())) {
        push_policy(&mut out, p)?;
    }
    Ok(out.into_iter().map(|(_, text)| text).collect())
}

/// The keys behind the child's ancestors: the parent's own ancestors' (from its
/// recorded delegation), then the parent's: the issuer key that signed it (when an
/// issuer did) and the agent key it is bound to, and the revocation id of the consent
/// policy it carries (of `issuer`, the chain's root agent's issuer). Revoking or
/// rotating out any of them, or revoking that policy, ends the child too
/// ([`crate::delegation::check`]), whatever policy the child itself carries.
async fn ancestor_keys(
    state: &AppState,
    parent: &AgentClaims,
    issuer: &bonafide_core::ids::IssuerId,
    signer: Option<String>,
) -> Result<Vec<AncestorKey>, OAuthError> {
    let mut keys = match crate::delegation::chain_of(state, parent).await? {
        Some(chain) => chain.ancestor_keys.clone(),
        None => Vec::new(),
    };
    keys.push(AncestorKey {
        agent: bonafide_core::delegation::current_actor(parent).clone(),
        issuer_kid: signer,
        jkt: parent.cnf.as_ref().map(|c| c.jkt.clone()),
        policy_revocation: token::policy_of(parent)
            .ok()
            .flatten()
            .map(|p| token::policy_revocation_id(issuer, p.id())),
    });
    Ok(keys)
}

fn push_policy(out: &mut Vec<(String, String)>, p: &Policy) -> Result<(), OAuthError> {
    if out.iter().any(|(hash, _)| hash == p.hash()) {
        return Ok(());
    }
    let text = serde_json::to_string(p.as_value())
        .map_err(|e| ApiError::internal(format!("policy text: {e}")))?;
    out.push((p.hash().to_owned(), text));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn parameters_are_checked_in_order() {
        let base = [
            ("grant_type", GRANT_TYPE),
            ("subject_token", "s"),
            ("subject_token_type", TOKEN_TYPE_JWT),
            ("actor_token", "a"),
            ("actor_token_type", TOKEN_TYPE_ACCESS),
        ];
        assert!(check_params(params(&base)).is_ok());
        let code = |p: &[(&str, &str)]| check_params(params(p)).err().map(|e| (e.error, e.code));
        assert_eq!(
            code(&[("grant_type", "password")]),
            Some(("unsupported_grant_type", ErrorCode::UnsupportedGrantType))
        );
        assert_eq!(
            code(&[]),
            Some(("invalid_request", ErrorCode::InvalidRequest))
        );
        let mut dup = base.to_vec();
        dup.push(("scope", "a"));
        dup.push(("scope", "b"));
        assert_eq!(
            code(&dup),
            Some(("invalid_request", ErrorCode::InvalidRequest))
        );
        let mut bad_type = base.to_vec();
        bad_type[2] = (
            "subject_token_type",
            "urn:ietf:params:oauth:token-type:saml2",
        );
        assert_eq!(
            code(&bad_type),
            Some(("invalid_request", ErrorCode::UnsupportedTokenType))
        );
        let mut res = base.to_vec();
        res.push(("resource", "https://x.example"));
        assert_eq!(
            code(&res),
            Some(("invalid_target", ErrorCode::ResourceUnsupported))
        );
        let mut exp = base.to_vec();
        exp.push(("expires_in", "-1"));
        assert_eq!(
            code(&exp),
            Some(("invalid_request", ErrorCode::InvalidRequest))
        );
        // Unknown parameters are ignored; audience repeats.
        let mut ok = base.to_vec();
        ok.push(("foo", "bar"));
        ok.push(("audience", "a.example"));
        ok.push(("audience", "b.example"));
        let p = check_params(params(&ok)).ok().map(|p| p.audience);
        assert_eq!(
            p,
            Some(Some(vec!["a.example".to_owned(), "b.example".to_owned()]))
        );
    }
}
