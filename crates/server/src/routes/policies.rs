//! Consent policies: check one before registering it.

use axum::body::Bytes;
use bonafide_core::policy::{Policy, PolicyError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::{ApiError, ApiJson};

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
