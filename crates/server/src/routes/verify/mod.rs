//! Receiver endpoints: verify a token (ImaRobot GET shape, KairosAI POST shape) and
//! RFC 7662 introspection. No key is needed (a key adds attribution in the audit log).
//! The decision itself reads only memory (keys and revocation sets); each verify
//! decision is then written to the audit log, and the answer waits until it is
//! durable (see [`crate::audit`]).

use std::sync::Arc;

use axum::Form;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bonafide_api::{ErrorCode, ErrorDetail};
use bonafide_core::audit::{AuditEntry, Decision, EventType, token_sha256};
use bonafide_core::ids::{AgentId, ReceiptId, ReceiverId, TokenId};
use bonafide_core::policy::money_from_literal;
use bonafide_core::receipt::RequestFacts;
use bonafide_core::token::{self, AudienceRule, TokenError, VerifiedToken};
use bonafide_store::{DecisionItem, DecisionOutcome, IdempotencyClaim, NonceClaim};
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

pub use bonafide_api::verify::{IntrospectResponse, SimpleVerify};

use crate::auth::Caller;
use crate::decision::{Asked, Checked, Deciding, ValidToken};
pub use crate::decision::{VerifiedAgent, VerifyResponse};
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::proof::{self, Possession, ProofInput};
use crate::routes::random16;
use crate::state::AppState;
use crate::time::{rfc3339_ms, rfc3339_s};

/// The one reason a decision can gain from the budget's real spending.
const LIMIT_PER_PERIOD: &str = "LIMIT_PER_PERIOD";

/// Most scopes one verify may ask about.
const MAX_SCOPES_REQUESTED: usize = 64;

/// Longest scope one verify may ask about, in bytes (the scope grammar allows 64
/// ASCII characters; a longer one is a malformed request, not a decision to log).
const MAX_SCOPE_BYTES: usize = 64;

use crate::token_check::{Denied, TokenCheck, check_token, second_reason};

mod decide;
mod record;
mod request;

use self::decide::*;
use self::record::*;
pub use self::request::*;

/// Verifies a token given in the path. Always 200 with `valid` true or false.
#[utoipa::path(get, path = "/v1/verify/{token}", tag = "receiver",
    params(("token" = String, Path, description = "the agent token"), AudienceQuery),
    security((), ("api_key" = [])),
    responses((status = 200, body = SimpleVerify), (status = 401),
              (status = 403, description = "a receiver key with an `audience` that is not the receiver's (`AUDIENCE_FORBIDDEN`)"),
              (status = 422, description = "an unknown query parameter, or an `audience` that is empty, too long or holds a forbidden character"),
              (status = 503, description = "the audit log cannot take the decision")))]
pub async fn verify_get(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(text): ApiPath<String>,
    query: Result<Query<AudienceQuery>, QueryRejection>,
) -> Result<ApiJson<SimpleVerify>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid(format!("query: {}", e.body_text())))?;
    let counting = crate::quota::counting(&state, &caller).await?;
    let now = state.now_ms();
    let checked = check_and_audit(
        &state,
        &caller,
        &text,
        query.audience.as_deref(),
        now,
        true,
        &counting,
    )
    .await?;
    Ok(ApiJson(match checked.token() {
        Ok(v) => {
            let trust_level = state.trust_level(&v.claims.sub, now).await?;
            let issuer_domain = state.issuer_domain(&v.claims.sub, now).await?;
            let delegation = crate::delegation::hops(&state, &v.claims).await?;
            let c = v.claims;
            SimpleVerify {
                delegation,
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
                trust_level: trust_level.map(str::to_owned),
                issuer_domain,
            }
        }
        Err(d) => SimpleVerify::invalid(ErrorDetail {
            code: ErrorCode::from(&d.error),
            message: d.error.to_string(),
            request_id: crate::request_id::current().to_string(),
            reset: None,
        }),
    }))
}

/// Verifies a token and decides one request: scopes, then the token's consent policy
/// (action, resource, time window, amount), charging the policy's budget atomically
/// when allowed. Every decision, allow or deny, is written to the audit log and gets
/// a signed receipt before the answer is sent.
#[utoipa::path(post, path = "/v1/verify", tag = "receiver", request_body = VerifyRequest,
    security((), ("api_key" = [])),
    responses((status = 200, body = VerifyResponse), (status = 400), (status = 401, description = "an `amount` or `idempotency_key` without a key, or a wrong key"),
              (status = 403, description = "an `amount` or `idempotency_key` with an admin or issuer key"),
              (status = 409, description = "`idempotency_key` already used for another request"),
              (status = 413), (status = 422),
              (status = 503, description = "the audit log cannot take the decision")))]
pub async fn verify_post(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> Result<Response, ApiError> {
    let asked = check_request(&req, &caller)?;
    let counting = crate::quota::counting(&state, &caller).await?;
    let now = state.now_ms();
    let (deciding, nonce) =
        check_for_decision(&state, &caller, &req, asked, now, state.config.audit_verify).await?;
    // A token that did not verify concerns no agent: it is counted and answered,
    // never written to the permanent log (issue 13).
    let audited = state.config.audit_verify && deciding.concerns_agent();
    if let Checked::Invalid {
        code,
        subject: None,
        ..
    } = &deciding.checked
    {
        state.count_unverifiable(code.as_str());
    }
    let replayed_kind = match &req.proof {
        Some(ProofInput::Dpop { .. }) => "jti",
        _ => "nonce",
    };
    let proof_sha256 = req.proof.as_ref().map(ProofInput::sha256_hex);
    record_decision(
        &state,
        deciding,
        nonce,
        replayed_kind,
        audited,
        proof_sha256.as_deref(),
        &counting,
    )
    .await
}

/// Decides a request exactly as `POST /v1/verify` would, against the budget as it
/// stands, and changes nothing: no budget spent, no idempotency record, no receipt,
/// no audit entry. The answer says `simulated: true`. It counts against the
/// organisation's quota as a verification.
#[utoipa::path(post, path = "/v1/simulate", tag = "receiver", request_body = VerifyRequest,
    security((), ("api_key" = [])),
    responses((status = 200, body = VerifyResponse), (status = 400), (status = 401), (status = 403), (status = 413), (status = 422)))]
pub async fn simulate(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(req): ApiJson<VerifyRequest>,
) -> Result<ApiJson<VerifyResponse>, ApiError> {
    let asked = check_request(&req, &caller)?;
    // It answers everything a verify does (the token's validity, the decision), so it
    // counts as one: otherwise it would be a verify outside the quota.
    let counting = crate::quota::counting(&state, &caller).await?;
    let now = state.now_ms();
    let (deciding, _proof_not_claimed) =
        check_for_decision(&state, &caller, &req, asked, now, false).await?;
    counting.alone(&state).await?;
    let spent = match deciding.budget() {
        Some(b) => Some(crate::delegation::seen_spent(&state, &b).await?),
        None => None,
    };
    let o = deciding.outcome(spent);
    let mut answer = deciding.response(&o, None);
    answer.simulated = true;
    Ok(ApiJson(answer))
}

/// RFC 7662 §2.1 request (form-encoded).
#[derive(Debug, Deserialize, ToSchema)]
pub struct IntrospectRequest {
    /// The token.
    pub token: String,
    /// Ignored hint (RFC 7662 allows ignoring it).
    #[serde(default)]
    pub token_type_hint: Option<String>,
    /// Who the caller verifies as (or `?audience=`): one of the token's audiences,
    /// required for a token that has them (see [`audience_rule`]).
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::values::NamedAudience>)]
    pub audience: Option<String>,
}

/// RFC 7662 token introspection. Open like `/v1/verify`: it reveals nothing the
/// token holder could not read from the token itself.
#[utoipa::path(post, path = "/v1/introspect", tag = "receiver", params(AudienceQuery),
    request_body(content = IntrospectRequest, content_type = "application/x-www-form-urlencoded"),
    security((), ("api_key" = [])),
    responses((status = 200, body = IntrospectResponse), (status = 400), (status = 401),
              (status = 403, description = "a receiver key with an `audience` that is not the receiver's (`AUDIENCE_FORBIDDEN`)"),
              (status = 415, description = "the body is not `application/x-www-form-urlencoded` (`UNSUPPORTED_MEDIA_TYPE`)"),
              (status = 422, description = "an unknown query parameter, or an `audience` that is invalid or given twice with different values"),
              (status = 503, description = "the audit log cannot take the decision")))]
pub async fn introspect(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    query: Result<Query<AudienceQuery>, QueryRejection>,
    form: Result<Form<IntrospectRequest>, axum::extract::rejection::FormRejection>,
) -> Result<ApiJson<IntrospectResponse>, ApiError> {
    let Query(query) = query.map_err(|e| ApiError::invalid(format!("query: {}", e.body_text())))?;
    let Form(req) = form.map_err(|r| match r.status() {
        axum::http::StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            r.status(),
            ErrorCode::PayloadTooLarge,
            "request body is too large",
        ),
        axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
            r.status(),
            ErrorCode::UnsupportedMediaType,
            "send `token=…` as application/x-www-form-urlencoded (RFC 7662 §2.1)",
        ),
        _ => ApiError::bad_request(
            "send `token=…` as application/x-www-form-urlencoded (RFC 7662 §2.1)",
        ),
    })?;
    let inactive = IntrospectResponse::inactive();
    let now = state.now_ms();
    // Introspection is a verification too: it is logged like one.
    let audience = match (query.audience.as_deref(), req.audience.as_deref()) {
        (Some(q), Some(f)) if q != f => {
            return Err(ApiError::invalid(
                "`audience` given twice (query and form) with different values",
            ));
        }
        (q, f) => q.or(f),
    };
    let counting = crate::quota::counting(&state, &caller).await?;
    let checked =
        check_and_audit(&state, &caller, &req.token, audience, now, false, &counting).await?;
    Ok(ApiJson(match checked.token() {
        Ok(v) => {
            let trust_level = state.trust_level(&v.claims.sub, now).await?;
            let issuer_domain = state.issuer_domain(&v.claims.sub, now).await?;
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
                cnf: c.cnf,
                trust_level: trust_level.map(str::to_owned),
                issuer_domain,
            }
        }
        Err(_) => inactive,
    }))
}
