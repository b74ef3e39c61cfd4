//! HTTP handlers, one module per area of the API contract (docs/design.md, "HTTP API").

pub mod accounts;
pub mod admin;
pub mod agent_keys;
pub mod agents;
pub mod api_keys;
pub mod audit;
pub mod audit_prune;
pub mod auth_sessions;
pub mod events;
pub mod issuer_domain;
pub mod issuer_keys;
pub mod meta;
pub mod policies;
pub mod rate_limits;
pub mod receipts;
pub mod token_exchange;
pub mod usage;
pub mod verify;
pub mod verify_action;

use bonafide_core::audit::{Actor, AuditEntry, EventType};
use bonafide_core::ids::{AgentId, IssuerId, TokenId};
use bonafide_store::AuditRecord;

/// 16 fresh random bytes for an id.
pub(crate) fn random16() -> Result<[u8; 16], crate::error::ApiError> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b)
        .map_err(|_| crate::error::ApiError::internal("random source failed"))?;
    Ok(b)
}

/// 20 fresh random bytes for an API key.
pub(crate) fn random20() -> Result<[u8; 20], crate::error::ApiError> {
    let mut b = [0u8; 20];
    aws_lc_rs::rand::fill(&mut b)
        .map_err(|_| crate::error::ApiError::internal("random source failed"))?;
    Ok(b)
}

pub(crate) fn new_agent_id() -> Result<AgentId, crate::error::ApiError> {
    Ok(AgentId::from_random(random16()?))
}

pub(crate) fn new_token_id() -> Result<TokenId, crate::error::ApiError> {
    Ok(TokenId::from_random(random16()?))
}

/// Checks a short human-readable text field (every name, reason and description):
/// trimmed, non-empty, bounded, and none of the characters
/// [`bonafide_core::names::is_forbidden`] refuses (controls, invisible and
/// bidirectional-control characters, line separators), named by code point.
/// A new issuer's name: text as [`check_text`] takes it (at most 253 characters), not
/// one that reads as an issuer id (a consent token's `iss` is an id or a name: it
/// would name two issuers), and not the playground's reserved name.
pub(crate) fn check_issuer_name(name: &str) -> Result<String, crate::error::ApiError> {
    let name = check_text("name", name, 253)?;
    if bonafide_core::ids::IssuerId::try_from(bonafide_core::names::issuer_name_key(&name).as_str())
        .is_ok()
    {
        return Err(crate::error::ApiError::invalid(
            "`name` must not be an issuer id (`iss_…`): choose the organisation's domain or name",
        ));
    }
    if crate::compat::playground::is_reserved_name(&name) {
        return Err(crate::error::ApiError::invalid(format!(
            "`{}` is reserved for the registry's AgentOAuth playground: choose another name",
            crate::compat::playground::ISSUER_NAME
        )));
    }
    Ok(name)
}

pub(crate) fn check_text(
    field: &str,
    value: &str,
    max: usize,
) -> Result<String, crate::error::ApiError> {
    let v = value.trim();
    if v.is_empty() {
        return Err(crate::error::ApiError::invalid(format!(
            "`{field}` must not be empty"
        )));
    }
    if v.chars().count() > max {
        return Err(crate::error::ApiError::invalid(format!(
            "`{field}` is longer than {max} characters"
        )));
    }
    if let Some(c) = bonafide_core::names::forbidden_char(v) {
        return Err(crate::error::ApiError::invalid(format!(
            "`{field}` contains {}: control, invisible, bidirectional-control and line-separator characters are refused",
            bonafide_core::names::describe(c)
        )));
    }
    Ok(v.to_owned())
}

/// The audit record of a state change, for the store to append in the change's own
/// transaction. `agent` and `issuer` are written into the entry and decide who may
/// read it; `fill` adds the rest (token hash, kid, note).
pub(crate) fn audit_change(
    event: EventType,
    now_ms: i64,
    actor: Actor,
    agent: Option<&AgentId>,
    issuer: Option<&IssuerId>,
    fill: impl FnOnce(&mut AuditEntry),
) -> Result<AuditRecord, crate::error::ApiError> {
    let mut entry = AuditEntry::new(event, now_ms, actor);
    entry.agent = agent.map(ToString::to_string);
    entry.issuer = issuer.map(ToString::to_string);
    entry.request_id = Some(crate::request_id::current().to_string());
    // A person acting for the issuer (issue 18) is named beside it.
    entry.person = crate::request_id::acting_person();
    fill(&mut entry);
    crate::audit::record(&entry, agent, issuer)
        .map_err(|e| crate::error::ApiError::invalid(format!(
            "this change cannot be audited: {e}; shorten the free-text fields (name, description, reason)"
        )))
}
