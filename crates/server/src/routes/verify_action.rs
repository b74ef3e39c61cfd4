//! Signed action verification (AIM's flow): an agent signs
//! `{agent_id}:{action}:{resource}:{timestamp}:{nonce}` with its own Ed25519 key, and
//! a receiver asks the registry whether the action is genuine and allowed.
//!
//! The signature is checked against the agent's *registered* keys only (current, or
//! rotated out and within its grace period, not expired): any key in the request is
//! ignored, so a signature by a key the registry does not hold never verifies. The
//! timestamp must be within ±300 s of the registry's clock and a nonce is accepted
//! once per agent (the replay cache is in the store, so it survives a restart; it is
//! written only after the signature verified, so nobody else can use up an agent's
//! nonces). Every decision is written to the audit log (`verify` event, the action as
//! target) before the answer is sent.
//!
//! The message is unambiguous because `resource` and `nonce` may not contain `:`
//! (the agent id never does): it splits from the right in exactly one way.

use std::sync::Arc;

use axum::extract::State;
use bonafide_core::audit::{AuditEntry, Decision, EventType};
use bonafide_core::ids::AgentId;
use bonafide_core::keys::{Algorithm, KeyValidity};
use bonafide_core::policy::{Decimal, Policy, PolicyRequest, ResourceRef};
use bonafide_store::NonceClaim;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::state::AppState;

/// Largest difference between the request's `timestamp` and the registry's clock.
pub const ACTION_WINDOW_S: i64 = 300;

/// `POST /v1/agents/{id}/verify-action` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyActionRequest {
    /// What the agent does: a scope (`verb:resource`) or an action of its policy;
    /// 1 to 128 characters.
    #[schema(value_type = crate::openapi::values::SignedAction)]
    pub action: String,
    /// What it acts on: 1 to 256 characters, no `:`. Read as `type/id` (split at the
    /// first `/`) by the agent's policy's resource rules.
    #[schema(value_type = crate::openapi::values::SignedResource)]
    pub resource: String,
    /// When the agent signed, Unix seconds; within ±300 s of the registry's clock.
    pub timestamp: i64,
    /// Single use per agent: 1 to 128 characters of `A-Z a-z 0-9 - _ .`.
    #[schema(value_type = crate::openapi::values::Nonce)]
    pub nonce: String,
    /// Ed25519 signature over `{agent_id}:{action}:{resource}:{timestamp}:{nonce}`
    /// (UTF-8), base64 (standard, padded; base64url accepted too).
    pub signature: String,
    /// Ignored: only the agent's registered keys are used. Accepted so that clients
    /// sending their key (as AIM's do) are not refused.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub public_key: Option<serde_json::Value>,
}

/// `POST /v1/agents/{id}/verify-action` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct VerifyActionResponse {
    /// The signature is the agent's, fresh, not replayed, the agent active and the
    /// action granted.
    pub allowed: bool,
    /// Why not, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Why not, machine-readable: the first failing check of
    /// `TIMESTAMP_OUT_OF_WINDOW`, `NO_AGENT_KEY`, `SIGNATURE_INVALID`,
    /// `AGENT_REVOKED`, `AGENT_SUSPENDED`, `REPLAY`, then `SCOPE_NOT_GRANTED` (no
    /// policy: the action is not a scope) or the policy's own codes (`POLICY_ACTION`,
    /// `POLICY_RESOURCE`, `TIME_WINDOW`, `AMOUNT_REQUIRED`).
    pub reasons: Vec<String>,
    /// Index of this decision's audit entry, durable before the answer was sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub audit_index: Option<u64>,
    /// Not issued for signed actions yet: always absent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub receipt_id: Option<String>,
}

fn check_request(req: &VerifyActionRequest) -> Result<(), ApiError> {
    let visible = |s: &str| bonafide_core::names::forbidden_char(s).is_none();
    if req.action.is_empty() || req.action.chars().count() > 128 || !visible(&req.action) {
        return Err(ApiError::invalid(
            "`action` must be 1 to 128 characters, no control, invisible or bidirectional-control characters",
        ));
    }
    if req.resource.is_empty()
        || req.resource.chars().count() > 256
        || !visible(&req.resource)
        || req.resource.contains(':')
    {
        return Err(ApiError::invalid(
            "`resource` must be 1 to 256 characters, no `:` and no control, invisible or bidirectional-control characters",
        ));
    }
    if req.nonce.is_empty()
        || req.nonce.len() > 128
        || !req
            .nonce
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    {
        return Err(ApiError::invalid(
            "`nonce` must be 1 to 128 characters of `A-Z a-z 0-9 - _ .`",
        ));
    }
    Ok(())
}

/// Base64 in either alphabet, padded or not, to bytes; `None` if it is neither.
fn decode_signature(text: &str) -> Option<Vec<u8>> {
    let trimmed = text.strip_suffix("==").or_else(|| text.strip_suffix('='));
    let unpadded = trimmed.unwrap_or(text);
    if trimmed.is_some() && !text.len().is_multiple_of(4) {
        return None;
    }
    let url: String = unpadded
        .chars()
        .map(|c| match c {
            '+' => '-',
            '/' => '_',
            other => other,
        })
        .collect();
    bonafide_core::b64::decode(&url).ok()
}

/// Why `action` on `resource` is not granted, if it is not: without a policy the
/// action must be one of the agent's scopes (`SCOPE_NOT_GRANTED`); with one, the
/// policy decides alone (a matching scope never bypasses it): its action, resource
/// and time window are evaluated at `now_ms`, and a policy with spending limits
/// refuses the action (`AMOUNT_REQUIRED`: a signed action carries no amount).
/// `resource` is read as `type/id` (split at the first `/`) for the policy's
/// resource rules; one without `/` has no type and matches no rule.
fn not_granted(
    scopes: &[String],
    policy: Option<&Policy>,
    action: &str,
    resource: &str,
    now_ms: i64,
) -> Option<(&'static str, String)> {
    let Some(policy) = policy else {
        return (!scopes.iter().any(|s| s == action)).then(|| {
            (
                "SCOPE_NOT_GRANTED",
                "the action is not one of this agent's scopes".to_owned(),
            )
        });
    };
    let (kind, id) = resource.split_once('/').unwrap_or(("", resource));
    let req = PolicyRequest {
        action,
        resource: Some(ResourceRef { kind, id }),
        money: None,
    };
    let now = crate::time::timestamp_ms(now_ms);
    let decision = policy.evaluate(&req, now, Decimal::ZERO);
    let code = decision.reasons.first()?.code.as_str();
    Some((code, decision.message()))
}

/// Verifies an action signed by an agent's own registered Ed25519 key (AIM's
/// flow) and decides it against the agent's status, scopes and policy. Open like
/// `POST /v1/verify`: a key, if sent, is recorded as the actor. Unknown agent: 404.
#[utoipa::path(post, path = "/v1/agents/{id}/verify-action", tag = "receiver", request_body = VerifyActionRequest,
    params(("id" = crate::openapi::values::AgentId, Path, description = "agent id (any other text is a 404)")),
    security((), ("api_key" = [])),
    responses((status = 200, body = VerifyActionResponse), (status = 400), (status = 401), (status = 404), (status = 422),
              (status = 503, description = "the audit log cannot take the decision")))]
pub async fn verify_action(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<VerifyActionRequest>,
) -> Result<ApiJson<VerifyActionResponse>, ApiError> {
    check_request(&req)?;
    let id = AgentId::try_from(id.as_str()).map_err(|_| ApiError::not_found("agent"))?;
    let agent = state
        .agent_record(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    let now = state.now_ms();
    // Set once the signature is genuine: only then is the nonce spent.
    let mut nonce: Option<NonceClaim> = None;
    // Only a request the agent signed concerns it: anything refused before its
    // signature checks out is counted, never written to the permanent log (issue 13).
    let mut signed = false;
    let (reason_code, message): (Option<&'static str>, String) = 'decide: {
        if now.div_euclid(1000).abs_diff(req.timestamp) > ACTION_WINDOW_S.unsigned_abs() {
            break 'decide (
                Some("TIMESTAMP_OUT_OF_WINDOW"),
                format!("`timestamp` is more than {ACTION_WINDOW_S} s from the registry's clock"),
            );
        }
        let keys = state.agent_keys(&id).await?;
        let usable: Vec<_> = keys
            .iter()
            .filter(|k| {
                k.key.alg() == Algorithm::EdDSA
                    && KeyValidity::agent_key(k.record.expires_at_ms, k.record.grace_until_ms)
                        .usable(now)
            })
            .collect();
        if usable.is_empty() {
            break 'decide (
                Some("NO_AGENT_KEY"),
                "the agent has no registered Ed25519 key in force: its issuer registers one with `PUT /v1/agents/{id}/keys`".into(),
            );
        }
        let message = format!(
            "{}:{}:{}:{}:{}",
            id, req.action, req.resource, req.timestamp, req.nonce
        );
        let genuine = decode_signature(&req.signature).is_some_and(|sig| {
            usable
                .iter()
                .any(|k| k.key.verify(message.as_bytes(), &sig))
        });
        if !genuine {
            break 'decide (
                Some("SIGNATURE_INVALID"),
                "the signature is not by any registered key of this agent".into(),
            );
        }
        signed = true;
        // Status only after the signature: nobody else learns it.
        let revoked = state
            .revoked
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .agents
            .contains(&id);
        if revoked {
            break 'decide (Some("AGENT_REVOKED"), "the agent is revoked".into());
        }
        if state.is_suspended(&id) {
            break 'decide (
                Some("AGENT_SUSPENDED"),
                "the agent is suspended by its issuer".into(),
            );
        }
        // The nonce is claimed with the decision's audit entry, below.
        nonce = Some(NonceClaim {
            agent: id.clone(),
            nonce: req.nonce.clone(),
            // The window admits `timestamp + 300` for that whole second: the record
            // lives until the second after it ends.
            expires_at_ms: req
                .timestamp
                .saturating_add(ACTION_WINDOW_S + 1)
                .saturating_mul(1000),
            now_ms: now,
        });
        let policy = agent
            .policy
            .as_deref()
            .map(|p| Policy::parse(p.as_bytes()))
            .transpose()
            .map_err(|e| ApiError::internal(format!("stored policy of {id}: {e}")))?;
        if let Some((code, message)) = not_granted(
            &agent.scopes,
            policy.as_ref(),
            &req.action,
            &req.resource,
            now,
        ) {
            break 'decide (Some(code), message);
        }
        (None, String::new())
    };
    if !signed {
        let code = reason_code.unwrap_or("SIGNATURE_INVALID");
        state.count_unverifiable(code);
        return Ok(ApiJson(VerifyActionResponse {
            allowed: false,
            reason: Some(message),
            reasons: vec![code.to_owned()],
            audit_index: None,
            receipt_id: None,
        }));
    }
    let decided = record_action(&state, &caller, &id, &req, now, reason_code, nonce).await?;
    let (reason_code, message, audit_index) = match decided {
        Some(audit_index) => (reason_code, message, audit_index),
        // Claimed by an earlier request (or a concurrent one that won): a replay,
        // recorded as such.
        None => {
            let code = Some("REPLAY");
            let index = record_action(&state, &caller, &id, &req, now, code, None).await?;
            let message = "this nonce was already used by this agent".to_owned();
            (code, message, index.flatten())
        }
    };
    let allowed = reason_code.is_none();
    Ok(ApiJson(VerifyActionResponse {
        allowed,
        reason: (!allowed).then_some(message),
        reasons: reason_code.map(str::to_owned).into_iter().collect(),
        audit_index,
        receipt_id: None,
    }))
}

/// Writes the decision's audit entry through the group committer, claiming `nonce`
/// in the same transaction: `Ok(None)` if the nonce was already used (nothing was
/// written), else the entry's index.
async fn record_action(
    state: &AppState,
    caller: &Caller,
    id: &AgentId,
    req: &VerifyActionRequest,
    now: i64,
    reason_code: Option<&'static str>,
    nonce: Option<NonceClaim>,
) -> Result<Option<Option<u64>>, ApiError> {
    let allowed = reason_code.is_none();
    let mut entry = AuditEntry::new(EventType::Verify, now, caller.actor());
    entry.agent = Some(id.to_string());
    entry.decision = Some(if allowed {
        Decision::Allow
    } else {
        Decision::Deny
    });
    entry.reasons = reason_code.map(str::to_owned).into_iter().collect();
    entry.target = Some(req.action.clone());
    entry.request_id = Some(crate::request_id::current().to_string());
    let record = crate::audit::record(&entry, Some(id), None).map_err(|e| {
        ApiError::invalid(format!(
            "this request cannot be audited: {e}; send a shorter `action`"
        ))
    })?;
    Ok(state.audit.append_claiming(record, nonce).await?.map(Some))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_decode_from_either_alphabet() {
        let bytes: Vec<u8> = (0..64).map(|i| (i * 37 % 256) as u8).collect();
        let url = bonafide_core::b64::encode(&bytes);
        let std_padded = format!("{}==", url.replace('-', "+").replace('_', "/"));
        assert_eq!(decode_signature(&url), Some(bytes.clone()));
        assert_eq!(decode_signature(&std_padded), Some(bytes));
        assert_eq!(decode_signature("a="), None);
        assert_eq!(decode_signature("!!!!"), None);
    }
}
