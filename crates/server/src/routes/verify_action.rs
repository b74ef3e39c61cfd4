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
use bonafide_core::policy::Policy;
use bonafide_store::NonceClaim;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::state::AppState;
use crate::verdict::action::{self, ActionVerdict, SignedAction};

pub use crate::verdict::action::ACTION_WINDOW_S;

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
    /// Single use per agent: 1 to 128 characters of `A-Z a-z 0-9 - _ . + / =` (a
    /// base64 nonce in either alphabet).
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

fn visible(s: &str) -> bool {
    bonafide_core::names::forbidden_char(s).is_none()
}

/// The bound on what a signed action names as its action (it reaches the audit
/// entry): 1 to 128 visible characters. `field` names it in the message.
pub(crate) fn check_action(field: &str, action: &str) -> Result<(), ApiError> {
    if action.is_empty() || action.chars().count() > 128 || !visible(action) {
        return Err(ApiError::invalid(format!(
            "`{field}` must be 1 to 128 characters, no control, invisible or bidirectional-control characters"
        )));
    }
    Ok(())
}

/// The bound on a signed action's resource: 1 to 256 visible characters.
pub(crate) fn resource_in_bounds(resource: &str) -> bool {
    !resource.is_empty() && resource.chars().count() <= 256 && visible(resource)
}

fn check_request(req: &VerifyActionRequest) -> Result<(), ApiError> {
    check_action("action", &req.action)?;
    if !resource_in_bounds(&req.resource) || req.resource.contains(':') {
        return Err(ApiError::invalid(
            "`resource` must be 1 to 256 characters, no `:` and no control, invisible or bidirectional-control characters",
        ));
    }
    if req.nonce.is_empty()
        || req.nonce.len() > 128
        || !req.nonce.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+' | b'/' | b'=')
        })
    {
        // Standard base64 (`+ / =`) is allowed: AIM's own example makes its nonce
        // with `base64.b64encode`. None of these is `:`, so the signed message still
        // splits one way.
        return Err(ApiError::invalid(
            "`nonce` must be 1 to 128 characters of `A-Z a-z 0-9 - _ . + / =`",
        ));
    }
    Ok(())
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
    let counting = crate::quota::counting(&state, &caller).await?;
    let id = AgentId::try_from(id.as_str()).map_err(|_| ApiError::not_found("agent"))?;
    let agent = state
        .agent_record(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    let now = state.now_ms();
    // The facts (the only awaits), then the pure verdict: the signature first, so an
    // unsigned request costs no policy parse and learns nothing of the agent.
    let keys = state.agent_keys(&id).await?;
    let signed = SignedAction {
        agent: &id,
        action: &req.action,
        resource: &req.resource,
        timestamp_s: req.timestamp,
        nonce: &req.nonce,
        signature: &req.signature,
    };
    // Only a request the agent signed concerns it: anything refused before its
    // signature checks out is counted, never written to the permanent log.
    if let Err(refusal) = action::authenticate(&keys, &signed, now) {
        state.count_unverifiable(refusal.code);
        counting.alone(&state).await?;
        return Ok(ApiJson(VerifyActionResponse {
            allowed: false,
            reason: Some(refusal.message),
            reasons: vec![refusal.code.to_owned()],
            audit_index: None,
            receipt_id: None,
        }));
    }
    let policy = stored_policy(&agent)?;
    let view = state.view();
    let verdict = action::judge(
        &view,
        &agent.scopes,
        policy.as_ref(),
        &agent.issuer_id,
        &signed,
        now,
    );
    let decided = record_verdict(
        &state,
        &caller,
        &id,
        &req.action,
        now,
        verdict,
        Spend {
            nonce: &req.nonce,
            timestamp_s: req.timestamp,
            counting: &counting,
        },
    )
    .await?;
    let allowed = decided.code.is_none();
    Ok(ApiJson(VerifyActionResponse {
        allowed,
        reason: (!allowed).then_some(decided.message),
        reasons: decided.code.map(str::to_owned).into_iter().collect(),
        audit_index: decided.audit_index,
        receipt_id: None,
    }))
}

/// The agent's consent policy, parsed, if it has one (a stored policy that does not
/// parse is the registry's fault: a 500).
pub(crate) fn stored_policy(agent: &bonafide_store::Agent) -> Result<Option<Policy>, ApiError> {
    agent
        .policy
        .as_deref()
        .map(|p| Policy::parse(p.as_bytes()))
        .transpose()
        .map_err(|e| ApiError::internal(format!("stored policy of {}: {e}", agent.id)))
}

/// What a signed action spends: its single-use value (and when it was signed), and
/// a verification of its organisation's quota.
pub(crate) struct Spend<'a> {
    /// Unique per agent while the signature could be accepted.
    pub nonce: &'a str,
    /// When the agent signed, Unix seconds.
    pub timestamp_s: i64,
    /// The quota it counts against, if any.
    pub counting: &'a crate::quota::Counting,
}

/// A recorded decision on a signed action.
pub(crate) struct Recorded {
    /// The refusal's code; `None`: allowed.
    pub code: Option<&'static str>,
    /// Why not, in words (empty when allowed).
    pub message: String,
    /// Its audit entry.
    pub audit_index: Option<u64>,
}

/// Records the verdict on an authenticated action: its audit entry, with the nonce
/// spent in the same transaction when the agent stands; a nonce already spent makes
/// it a `REPLAY`, recorded as such.
pub(crate) async fn record_verdict(
    state: &AppState,
    caller: &Caller,
    id: &AgentId,
    action: &str,
    now: i64,
    verdict: ActionVerdict,
    spend: Spend<'_>,
) -> Result<Recorded, ApiError> {
    let counting = spend.counting;
    let (refusal, nonce) = match verdict {
        // `judge` only sees authenticated actions.
        ActionVerdict::Unsigned(refusal) => (Some(refusal), None),
        ActionVerdict::Fallen(refusal) => (Some(refusal), None),
        // The nonce is claimed with the decision's audit entry, below.
        ActionVerdict::Standing(refusal) => (
            refusal,
            Some(NonceClaim {
                agent: id.clone(),
                nonce: spend.nonce.to_owned(),
                // The window admits `timestamp + 300` for that whole second: the
                // record lives until the second after it ends.
                expires_at_ms: spend
                    .timestamp_s
                    .saturating_add(ACTION_WINDOW_S + 1)
                    .saturating_mul(1000),
                now_ms: now,
            }),
        ),
    };
    let (reason_code, message) = match refusal {
        Some(r) => (Some(r.code), r.message),
        None => (None, String::new()),
    };
    let decided =
        record_action(state, caller, id, action, now, reason_code, nonce, counting).await?;
    Ok(match decided {
        Some(audit_index) => Recorded {
            code: reason_code,
            message,
            audit_index,
        },
        // Claimed by an earlier request (or a concurrent one that won): a replay,
        // recorded as such.
        None => {
            let code = Some("REPLAY");
            let index = record_action(state, caller, id, action, now, code, None, counting).await?;
            Recorded {
                code,
                message: "this nonce was already used by this agent".to_owned(),
                audit_index: index.flatten(),
            }
        }
    })
}

/// Writes the decision's audit entry through the group committer, claiming `nonce`
/// and counting the verification against its quota in the same transaction: `Ok(None)`
/// if the nonce was already used (nothing was written), else the entry's index.
#[expect(
    clippy::too_many_arguments,
    reason = "one decision's facts, each used once"
)]
async fn record_action(
    state: &AppState,
    caller: &Caller,
    id: &AgentId,
    action: &str,
    now: i64,
    reason_code: Option<&'static str>,
    nonce: Option<NonceClaim>,
    counting: &crate::quota::Counting,
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
    entry.target = Some(action.to_owned());
    entry.request_id = Some(crate::request_id::current().to_string());
    let record = crate::audit::record(&entry, Some(id), None).map_err(|e| {
        ApiError::invalid(format!(
            "this request cannot be audited: {e}; send a shorter `action`"
        ))
    })?;
    match state
        .audit
        .append_counted(record, nonce, counting.claim())
        .await?
    {
        crate::audit::Appended::At { index, quota } => {
            counting.granted(state, quota);
            Ok(Some(Some(index)))
        }
        crate::audit::Appended::NonceReplayed => Ok(None),
        crate::audit::Appended::QuotaExceeded { used } => Err(counting.exceeded(state, used)),
    }
}
