//! Receiver endpoints: verify a token (ImaRobot GET shape, KairosAI POST shape) and
//! RFC 7662 introspection. No key is needed (a key adds attribution in the audit log).
//! The decision itself reads only memory (keys and revocation sets); each verify
//! decision is then written to the audit log, and the answer waits until it is
//! durable (see [`crate::audit`]).

use std::sync::Arc;

use axum::Form;
use axum::extract::State;
use bonafide_core::audit::{AuditEntry, Decision, EventType, token_sha256};
use bonafide_core::ids::{AgentId, TokenId};
use bonafide_core::token::{self, TokenError, VerifiedToken};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::state::AppState;
use crate::time::{now_ms, rfc3339_ms, rfc3339_s};

/// Most scopes one verify may ask about.
const MAX_SCOPES_REQUESTED: usize = 64;

/// A token that did not verify, with what is known about it.
#[derive(Debug)]
pub struct Denied {
    /// Why.
    pub error: TokenError,
    /// Agent and token id, when the signature checked out (revoked tokens).
    pub subject: Option<(AgentId, TokenId)>,
}

/// Runs pipeline steps 1–5 against the in-memory keys and revocations.
pub fn check_token(
    state: &AppState,
    text: &str,
    audience: Option<String>,
    now_ms: i64,
) -> Result<VerifiedToken, Denied> {
    let keys = state.keys.load();
    let verified = token::verify(
        text,
        &keys.verifying,
        &state.verify_options(audience),
        now_ms / 1000,
    )
    .map_err(|error| Denied {
        error,
        subject: None,
    })?;
    if let Some(what) = state.is_revoked(&verified.claims.sub, &verified.claims.jti) {
        return Err(Denied {
            error: TokenError::Revoked(what),
            subject: Some((verified.claims.sub, verified.claims.jti)),
        });
    }
    Ok(verified)
}

/// One verify decision, for the audit log.
struct Decided<'a> {
    token: &'a str,
    subject: Option<(&'a AgentId, &'a TokenId)>,
    allowed: bool,
    reasons: &'a [String],
    scopes: &'a [String],
    target: Option<&'a str>,
}

/// The reasons and the (agent, token id) of a token check, for its audit entry.
fn facts(checked: &Result<VerifiedToken, Denied>) -> (Vec<String>, Option<(&AgentId, &TokenId)>) {
    match checked {
        Ok(v) => (Vec::new(), Some((&v.claims.sub, &v.claims.jti))),
        Err(d) => (
            vec![d.error.code().as_str().to_owned()],
            d.subject.as_ref().map(|(a, j)| (a, j)),
        ),
    }
}

/// Steps 1–5 with no audience or scopes asked (GET verify, introspection), and the
/// decision written to the audit log before anything is answered.
async fn check_and_audit(
    state: &AppState,
    caller: &Caller,
    text: &str,
    now_ms: i64,
) -> Result<Result<VerifiedToken, Denied>, ApiError> {
    let checked = check_token(state, text, None, now_ms);
    let (reasons, subject) = facts(&checked);
    audit_decision(
        state,
        caller,
        now_ms,
        Decided {
            token: text,
            subject,
            allowed: checked.is_ok(),
            reasons: &reasons,
            scopes: &[],
            target: None,
        },
    )
    .await?;
    Ok(checked)
}

/// Writes a verify decision to the audit log; its index once durable, or `None` when
/// verify decisions are not audited ([`crate::Config::audit_verify`]).
async fn audit_decision(
    state: &AppState,
    caller: &Caller,
    now_ms: i64,
    d: Decided<'_>,
) -> Result<Option<u64>, ApiError> {
    if !state.config.audit_verify {
        return Ok(None);
    }
    let mut entry = AuditEntry::new(EventType::Verify, now_ms, caller.actor());
    entry.agent = d.subject.map(|(agent, _)| agent.to_string());
    entry.jti = d.subject.map(|(_, jti)| jti.to_string());
    entry.token_sha256 = Some(token_sha256(d.token));
    entry.decision = Some(if d.allowed {
        Decision::Allow
    } else {
        Decision::Deny
    });
    entry.reasons = d.reasons.to_vec();
    entry.scopes = d.scopes.to_vec();
    entry.target = d.target.map(str::to_owned);
    entry.request_id = Some(crate::request_id::current().to_string());
    let record = crate::audit::record(&entry, d.subject.map(|(agent, _)| agent), None)
        .map_err(|e| {
            ApiError::invalid(format!(
                "this request cannot be audited: {e}; send fewer or shorter `scopes_requested`, or a shorter audience"
            ))
        })?;
    Ok(Some(state.audit.append(record).await?))
}

/// `GET /v1/verify/{token}` answer (ImaRobot shape).
#[derive(Debug, Serialize, ToSchema)]
pub struct SimpleVerify {
    /// Whether the token is genuine, live and not revoked.
    pub valid: bool,
    /// `TOKEN_INVALID`, `TOKEN_EXPIRED`, `TOKEN_REVOKED`, … when not valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// `agt_…`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_id: Option<String>,
    /// Agent name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The agent's issuer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Granted scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// What the agent does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// RFC 3339 with milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub issued_at: Option<String>,
    /// RFC 3339 with milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// RFC 3339 with milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<String>,
}

/// Verifies a token given in the path. Always 200 with `valid` true or false.
#[utoipa::path(get, path = "/v1/verify/{token}", tag = "receiver",
    params(("token" = String, Path, description = "the agent token")),
    responses((status = 200, body = SimpleVerify), (status = 401),
              (status = 503, description = "the audit log cannot take the decision")))]
pub async fn verify_get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(text): ApiPath<String>,
) -> Result<ApiJson<SimpleVerify>, ApiError> {
    let now = now_ms();
    let checked = check_and_audit(&state, &caller, &text, now).await?;
    Ok(ApiJson(match checked {
        Ok(v) => {
            let c = v.claims;
            SimpleVerify {
                valid: true,
                error: None,
                agent_id: Some(c.sub.to_string()),
                name: Some(c.agent.name),
                issuer: Some(c.agent.issuer),
                scopes: Some(c.agent.scopes),
                description: c.agent.description,
                issued_at: Some(rfc3339_s(c.iat)),
                expires_at: Some(rfc3339_s(c.exp)),
                verified_at: Some(rfc3339_ms(now)),
            }
        }
        Err(d) => SimpleVerify {
            valid: false,
            error: Some(d.error.code().as_str().to_owned()),
            agent_id: None,
            name: None,
            issuer: None,
            scopes: None,
            description: None,
            issued_at: None,
            expires_at: None,
            verified_at: None,
        },
    }))
}

/// `POST /v1/verify` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// The agent token.
    pub token: String,
    /// The receiver's identifier; a token with `aud` must name it.
    #[serde(default)]
    pub audience: Option<String>,
    /// The receiver's service (KairosAI); used as the audience when `audience` is absent.
    #[serde(default)]
    pub target_resource: Option<String>,
    /// Scopes this request needs; all must be granted for `allowed`.
    #[serde(default)]
    pub scopes_requested: Option<Vec<String>>,
}

/// The agent in a verify answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifiedAgent {
    /// `agt_…`.
    pub id: String,
    /// `did:web:<registry>:agents:<id>`.
    pub did: String,
    /// Display name.
    pub name: String,
    /// The agent's issuer.
    pub issuer: String,
    /// The requested scopes if all are granted, else every granted scope.
    pub active_scopes: Vec<String>,
}

/// `POST /v1/verify` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyResponse {
    /// Genuine, live, not revoked (steps 1–7).
    pub valid: bool,
    /// Valid, and this request is within the token's grant (steps 8–9).
    pub allowed: bool,
    /// The token error code when not valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Why, in words, when not allowed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Machine-readable reasons when not allowed (`SCOPE_NOT_GRANTED`, or the error).
    pub reasons: Vec<String>,
    /// The agent, when valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<VerifiedAgent>,
    /// RFC 3339 with milliseconds, when valid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// RFC 3339 with milliseconds.
    pub verified_at: String,
    /// Index of this decision's entry in the audit log, durable before this answer
    /// was sent (`/v1/audit/proof/inclusion?index=…` proves it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_index: Option<u64>,
}

/// Verifies a token and checks the requested scopes.
#[utoipa::path(post, path = "/v1/verify", tag = "receiver", request_body = VerifyRequest,
    responses((status = 200, body = VerifyResponse), (status = 400), (status = 401), (status = 413), (status = 422),
              (status = 503, description = "the audit log cannot take the decision")))]
pub async fn verify_post(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> Result<ApiJson<VerifyResponse>, ApiError> {
    let requested = req.scopes_requested.unwrap_or_default();
    if requested.len() > MAX_SCOPES_REQUESTED {
        return Err(ApiError::invalid(format!(
            "at most {MAX_SCOPES_REQUESTED} `scopes_requested`"
        )));
    }
    let now = now_ms();
    let audience = req.audience.or(req.target_resource);
    let verified = match check_token(&state, &req.token, audience.clone(), now) {
        Ok(v) => v,
        Err(d) => {
            let code = d.error.code().as_str().to_owned();
            let reasons = vec![code.clone()];
            let audit_index = audit_decision(
                &state,
                &caller,
                now,
                Decided {
                    token: &req.token,
                    subject: d.subject.as_ref().map(|(a, j)| (a, j)),
                    allowed: false,
                    reasons: &reasons,
                    scopes: &requested,
                    target: audience.as_deref(),
                },
            )
            .await?;
            return Ok(ApiJson(VerifyResponse {
                valid: false,
                allowed: false,
                error: Some(code),
                reason: Some(d.error.to_string()),
                reasons,
                agent: None,
                expires_at: None,
                verified_at: rfc3339_ms(now),
                audit_index,
            }));
        }
    };
    let c = verified.claims;
    let missing: Vec<&String> = requested
        .iter()
        .filter(|s| !c.agent.scopes.contains(s))
        .collect();
    let (allowed, reason, reasons, active) = if missing.is_empty() {
        let active = if requested.is_empty() {
            c.agent.scopes.clone()
        } else {
            requested.clone()
        };
        (true, None, Vec::new(), active)
    } else {
        let names: Vec<String> = missing
            .iter()
            .map(|s| format!("`{}`", s.chars().take(64).collect::<String>()))
            .collect();
        (
            false,
            Some(format!(
                "scope {} not granted to this agent",
                names.join(", ")
            )),
            vec!["SCOPE_NOT_GRANTED".to_owned()],
            c.agent.scopes.clone(),
        )
    };
    let audit_index = audit_decision(
        &state,
        &caller,
        now,
        Decided {
            token: &req.token,
            subject: Some((&c.sub, &c.jti)),
            allowed,
            reasons: &reasons,
            scopes: &requested,
            target: audience.as_deref(),
        },
    )
    .await?;
    Ok(ApiJson(VerifyResponse {
        valid: true,
        allowed,
        error: None,
        reason,
        reasons,
        agent: Some(VerifiedAgent {
            id: c.sub.to_string(),
            did: state.agent_did(c.sub.as_str()),
            name: c.agent.name,
            issuer: c.agent.issuer,
            active_scopes: active,
        }),
        expires_at: Some(rfc3339_s(c.exp)),
        verified_at: rfc3339_ms(now),
        audit_index,
    }))
}

/// RFC 7662 §2.1 request (form-encoded).
#[derive(Debug, Deserialize, ToSchema)]
pub struct IntrospectRequest {
    /// The token.
    pub token: String,
    /// Ignored hint (RFC 7662 allows ignoring it).
    #[serde(default)]
    pub token_type_hint: Option<String>,
}

/// RFC 7662 §2.2 answer. An inactive token answers `{"active": false}` only.
#[derive(Debug, Serialize, ToSchema)]
pub struct IntrospectResponse {
    /// Whether the token is currently active.
    pub active: bool,
    /// Space-separated scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// `agent+jwt`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<String>,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Unix seconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The agent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// Audiences.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<Vec<String>>,
    /// The registry.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// Token id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The agent's name (RFC 7662 `username`: a human-readable identifier).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub username: Option<String>,
}

/// RFC 7662 token introspection. Open like `/v1/verify`: it reveals nothing the
/// token holder could not read from the token itself.
#[utoipa::path(post, path = "/v1/introspect", tag = "receiver",
    request_body(content = IntrospectRequest, content_type = "application/x-www-form-urlencoded"),
    responses((status = 200, body = IntrospectResponse), (status = 400), (status = 401),
              (status = 503, description = "the audit log cannot take the decision")))]
pub async fn introspect(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    form: Result<Form<IntrospectRequest>, axum::extract::rejection::FormRejection>,
) -> Result<ApiJson<IntrospectResponse>, ApiError> {
    let Form(req) = form.map_err(|r| match r.status() {
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(r.status(), "PAYLOAD_TOO_LARGE", "request body is too large")
        }
        axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            r.status(),
            "UNSUPPORTED_MEDIA_TYPE",
            "send `token=…` as application/x-www-form-urlencoded (RFC 7662 §2.1)",
        ),
        _ => ApiError::bad_request(
            "send `token=…` as application/x-www-form-urlencoded (RFC 7662 §2.1)",
        ),
    })?;
    let inactive = IntrospectResponse {
        active: false,
        scope: None,
        token_type: None,
        exp: None,
        iat: None,
        nbf: None,
        sub: None,
        aud: None,
        iss: None,
        jti: None,
        username: None,
    };
    let now = now_ms();
    // Introspection is a verification too: it is logged like one.
    let checked = check_and_audit(&state, &caller, &req.token, now).await?;
    Ok(ApiJson(match checked {
        Ok(v) => {
            let c = v.claims;
            IntrospectResponse {
                active: true,
                scope: Some(c.agent.scopes.join(" ")),
                token_type: Some(token::AGENT_TOKEN_TYP.to_owned()),
                exp: Some(c.exp),
                iat: Some(c.iat),
                nbf: c.nbf,
                sub: Some(c.sub.to_string()),
                aud: c.aud.map(|a| a.to_vec()),
                iss: Some(c.iss),
                jti: Some(c.jti.to_string()),
                username: Some(c.agent.name),
            }
        }
        Err(_) => inactive,
    }))
}
