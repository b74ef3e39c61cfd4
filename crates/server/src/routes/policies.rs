//! Consent policies: check one before registering it; revoke one by its `id`.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use bonafide_api::agents::{PolicyRevoked, RevokePolicy};
use bonafide_core::audit::{Actor, EventType};
use bonafide_core::policy::{Policy, PolicyError};
use bonafide_store::PolicyRevocation;
use serde::Serialize;
use utoipa::ToSchema;

use super::audit_change;
use crate::auth::IssuerAuth;
use crate::error::{ApiError, ApiJson};
use crate::state::{AppState, Revoked};
use crate::time::rfc3339_ms;
use crate::write::{Change, Part};

/// One problem found in a policy.
#[derive(Debug, Serialize, ToSchema)]
pub struct LintError {
    /// JSON path of the field (`limits.per_txn.amount`); absent when the problem is
    /// the document itself (not JSON, too large).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// What is wrong, in words.
    pub message: String,
}

/// `POST /v1/policies/lint` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct LintResult {
    /// Whether registration would accept the policy.
    pub valid: bool,
    /// Every problem found (empty when valid), in document order.
    pub errors: Vec<LintError>,
    /// `sha256:<hex>` of the canonical form, as tokens carry it (when valid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_hash: Option<String>,
    /// The RFC 8785 (JCS) form that is hashed (when valid).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub canonical: Option<String>,
}

fn lint_error(e: &PolicyError) -> LintError {
    LintError {
        path: e.path().map(str::to_owned),
        message: e.message(),
    }
}

/// Checks a consent policy (`pol.v0.2`, the request body) exactly as registration
/// would, and gives its `policy_hash`. 200 for any body: an invalid policy (even one
/// that is not JSON) is an answer, not an error; only a missing (empty) body is a 400.
/// No key needed; nothing is stored.
#[utoipa::path(post, path = "/v1/policies/lint", tag = "issuer",
    request_body(content = Object, description = "the policy (any bytes: what is not a policy is answered `valid: false`); required", content_type = "application/json"),
    responses((status = 200, body = LintResult),
              (status = 400, description = "no body (`BAD_REQUEST`): send the policy to check")))]
pub async fn lint(body: Bytes) -> Result<ApiJson<LintResult>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::bad_request(
            "no policy to check: send it as the request body (`Content-Type: application/json`)",
        ));
    }
    Ok(ApiJson(lint_result(&body)))
}

/// The lint answer for these bytes: what `POST /v1/policies/lint` answers and what
/// `bonafide policy lint` prints, from the one check (core's `Policy::lint`).
pub fn lint_result(bytes: &[u8]) -> LintResult {
    match Policy::lint(bytes) {
        Ok(p) => LintResult {
            valid: true,
            errors: Vec::new(),
            policy_hash: Some(p.hash().to_owned()),
            canonical: Some(p.canonical().to_owned()),
        },
        Err(errors) => LintResult {
            valid: false,
            errors: errors.iter().map(lint_error).collect(),
            policy_hash: None,
            canonical: None,
        },
    }
}

/// Revokes one of the caller's consent policies by its `id`, for good: from then on
/// every token of the caller's agents whose `policy.id` is this one is refused at
/// verify (`TOKEN_REVOKED`, reason `POLICY_REVOKED`), on every route that checks a
/// token, whoever signed it (the registry, or the issuer itself: an AgentOAuth consent
/// token the registry never saw), and the tokens' status-list entries turn invalid.
/// Another issuer's policy of the same `id` is not touched. Revoking again answers
/// the first revocation.
#[utoipa::path(post, path = "/v1/policies/revoke", tag = "issuer", operation_id = "revoke_policy", request_body = RevokePolicy,
    security(("api_key" = [])),
    responses((status = 200, body = PolicyRevoked),
        (status = 422, description = "`policy_id` is not a policy id (1 to 128 characters, no control, invisible or bidirectional-control character)")))]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    IssuerAuth(issuer): IssuerAuth,
    ApiJson(body): ApiJson<RevokePolicy>,
) -> Result<ApiJson<PolicyRevoked>, ApiError> {
    let (record, _) = revoke_policy(&state, &issuer, &body.policy_id).await?;
    Ok(ApiJson(PolicyRevoked {
        policy_id: record.policy_id,
        revoked_at: rfc3339_ms(record.revoked_at_ms),
    }))
}

/// The revocation behind `POST /v1/policies/revoke` (and AgentOAuth's
/// `POST /revoke {policy_id}`): the policy id checked by the policy module's rule,
/// then recorded with its audit entry and fed to the read model as a revocation of
/// [`bonafide_core::token::policy_revocation_id`]. Also says whether this call
/// revoked it (`false`: it was revoked before, and the first time is kept).
pub(crate) async fn revoke_policy(
    state: &Arc<AppState>,
    issuer: &bonafide_store::Issuer,
    policy_id: &str,
) -> Result<(PolicyRevocation, bool), ApiError> {
    bonafide_core::policy::check_id(policy_id).map_err(|e| {
        ApiError::invalid(format!("`policy_id` is not a policy id: {}", e.message()))
    })?;
    let revocation_id = bonafide_core::token::policy_revocation_id(&issuer.id, policy_id);
    let now = state.now_ms();
    let audit = audit_change(
        EventType::PolicyRevoked,
        now,
        Actor::Issuer {
            id: issuer.id.to_string(),
        },
        None,
        Some(&issuer.id),
        |e| {
            e.jti = Some(revocation_id.to_string());
            e.target = Some(policy_id.to_owned());
        },
    )?;
    let issuer_id = issuer.id.clone();
    let policy = policy_id.to_owned();
    let record = state
        .commit(
            "revoke policy",
            Part::Revocations,
            Box::new(move |state| {
                Box::pin(async move {
                    let record = state
                        .store
                        .revoke_policy(&issuer_id, &policy, now, &audit)
                        .await?;
                    let change = Change::Revoked(Revoked::Token {
                        jti: revocation_id,
                        expires_at_s: bonafide_store::POLICY_REVOCATION_EXPIRES_AT_S,
                    });
                    Ok((record, change))
                })
            }),
        )
        .await?;
    let first = record.revoked_at_ms == now;
    tracing::info!(issuer_id = %issuer.id, policy_id = %record.policy_id, first, "policy revoked");
    Ok((record, first))
}
