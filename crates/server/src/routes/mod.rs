//! HTTP handlers, one module per area of the API contract (DESIGN.md "HTTP API").

pub mod admin;
pub mod agents;
pub mod meta;
pub mod verify;

use bonafide_core::ids::{AgentId, TokenId};

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

/// Checks a short human-readable text field: trimmed, non-empty, bounded, no control
/// characters.
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
    if v.chars().any(char::is_control) {
        return Err(crate::error::ApiError::invalid(format!(
            "`{field}` contains control characters"
        )));
    }
    Ok(v.to_owned())
}
