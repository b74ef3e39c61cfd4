//! Admin endpoints for rate limits (issue 18 item 4): the limits in force, and a limit
//! of its own for one API key (by its id, `sha256:…`), stored, audited, applied by
//! every replica within `key_refresh`.

use std::sync::Arc;

use axum::extract::State;
use bonafide_core::audit::{Actor, EventType};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit_change;
use crate::auth::Admin;
use crate::error::{ApiError, ApiJson, ApiPath};
use crate::ratelimit::{self, Limit, Policy};
use crate::state::AppState;
use crate::time::rfc3339_ms;

/// One API key's own limit.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyLimit {
    /// The key's id.
    #[schema(value_type = crate::openapi::values::ApiKeyHashId)]
    pub key_id: String,
    /// Its limit, `N/<seconds>s`.
    pub limit: String,
    /// When it was set (RFC 3339).
    pub set_at: String,
}

/// `GET /v1/admin/rate-limits` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct RateLimitsView {
    /// False when the registry runs with `--rate-limits off`.
    pub enabled: bool,
    /// The limit of each policy (`admin`, `issuer`, `receiver`, `person`, `ip`,
    /// `iss`), `N/<seconds>s`.
    pub defaults: std::collections::BTreeMap<String, String>,
    /// Peers whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<String>,
    /// Keys with a limit of their own, by id.
    pub keys: Vec<KeyLimit>,
}

/// The limits in force: each policy's, the trusted proxies, and every key's own.
#[utoipa::path(get, path = "/v1/admin/rate-limits", tag = "admin", security(("api_key" = [])),
    responses((status = 200, body = RateLimitsView), (status = 401), (status = 403)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<ApiJson<RateLimitsView>, ApiError> {
    let limiter = &state.limiter;
    let limits = limiter.limits();
    let keys = state
        .store
        .rate_limit_settings()
        .await?
        .into_iter()
        .filter_map(|s| {
            let id = s.name.strip_prefix("key:")?.to_owned();
            Some(KeyLimit {
                key_id: id,
                limit: Limit::parse(&s.value).map_or(s.value, |l| l.to_string()),
                set_at: rfc3339_ms(s.set_at_ms),
            })
        })
        .collect();
    Ok(ApiJson(RateLimitsView {
        enabled: limits.enabled,
        defaults: Policy::ALL
            .iter()
            .map(|p| (p.name().to_owned(), limits.get(*p).to_string()))
            .collect(),
        trusted_proxies: limiter
            .trusted_proxies()
            .iter()
            .map(ToString::to_string)
            .collect(),
        keys,
    }))
}

/// `PUT /v1/admin/rate-limits/keys/{key_id}` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetKeyLimit {
    /// The key's limit, replacing its kind's default.
    #[schema(value_type = crate::openapi::values::RateLimitText)]
    pub limit: String,
}

fn key_id(id: &str) -> Result<String, ApiError> {
    let ok = id.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 16
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if !ok {
        return Err(ApiError::invalid(
            "a key id is `sha256:` and 16 lowercase hex digits (the first 8 bytes of the key's SHA-256; `bonafide rate-limit` computes it from the key)",
        ));
    }
    Ok(id.to_owned())
}

/// Gives one API key (by id) a limit of its own instead of its kind's default. Audited
/// (`rate_limit.set`); this replica applies it at once, others within `key_refresh`.
/// The key need not be known: the limit applies once a key with this id is used.
#[utoipa::path(put, path = "/v1/admin/rate-limits/keys/{key_id}", tag = "admin", request_body = SetKeyLimit,
    params(("key_id" = crate::openapi::values::ApiKeyHashId, Path, description = "`sha256:…`, the key's id")),
    security(("api_key" = [])),
    responses((status = 200, body = KeyLimit), (status = 400), (status = 401), (status = 403),
              (status = 422, description = "not a key id, or not a rate limit")))]
pub async fn set_key(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SetKeyLimit>,
) -> Result<ApiJson<KeyLimit>, ApiError> {
    let id = key_id(&id)?;
    let limit = Limit::parse(&body.limit).map_err(|e| ApiError::invalid(e.to_string()))?;
    let now = state.now_ms();
    let name = ratelimit::key_setting(&id);
    let value = limit.to_string();
    let audit = audit_change(
        EventType::RateLimitSet,
        now,
        Actor::Admin,
        None,
        None,
        |e| {
            e.target = Some(name.clone());
            e.kid = Some(id.clone());
            e.note = Some(value.clone());
        },
    )?;
    state
        .store
        .set_rate_limit_setting(&name, Some(&value), now, &audit)
        .await?;
    state.limiter.load_overrides(state.store.as_ref()).await?;
    tracing::info!(key_id = %id, limit = %value, "rate limit of an API key set");
    let set_at = state
        .store
        .rate_limit_settings()
        .await?
        .into_iter()
        .find(|s| s.name == name)
        .map_or(now, |s| s.set_at_ms);
    Ok(ApiJson(KeyLimit {
        key_id: id,
        limit: value,
        set_at: rfc3339_ms(set_at),
    }))
}

/// `DELETE /v1/admin/rate-limits/keys/{key_id}` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyLimitCleared {
    /// The key's id.
    #[schema(value_type = crate::openapi::values::ApiKeyHashId)]
    pub key_id: String,
    /// Always true: the key's kind's default applies again.
    pub cleared: bool,
}

/// Removes a key's own limit: its kind's default applies again. Audited. 404 if the
/// key has none.
#[utoipa::path(delete, path = "/v1/admin/rate-limits/keys/{key_id}", tag = "admin",
    params(("key_id" = crate::openapi::values::ApiKeyHashId, Path, description = "`sha256:…`, the key's id")),
    security(("api_key" = [])),
    responses((status = 200, body = KeyLimitCleared), (status = 401), (status = 403),
              (status = 404, description = "the key has no limit of its own"),
              (status = 422, description = "not a key id")))]
pub async fn clear_key(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<KeyLimitCleared>, ApiError> {
    let id = key_id(&id)?;
    let now = state.now_ms();
    let name = ratelimit::key_setting(&id);
    let audit = audit_change(
        EventType::RateLimitSet,
        now,
        Actor::Admin,
        None,
        None,
        |e| {
            e.target = Some(name.clone());
            e.kid = Some(id.clone());
            e.note = Some("cleared".to_owned());
        },
    )?;
    let changed = state
        .store
        .set_rate_limit_setting(&name, None, now, &audit)
        .await?;
    if !changed {
        return Err(ApiError::not_found("rate limit of this key"));
    }
    state.limiter.load_overrides(state.store.as_ref()).await?;
    tracing::info!(key_id = %id, "rate limit of an API key cleared");
    Ok(ApiJson(KeyLimitCleared {
        key_id: id,
        cleared: true,
    }))
}
