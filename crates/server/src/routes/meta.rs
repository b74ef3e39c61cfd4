//! Discovery and housekeeping: JWKS, public key, discovery document, scopes catalog,
//! health, OpenAPI.

use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use bonafide_core::scopes::{self, CATALOG};
use serde::Serialize;
use serde_json::{Value, json};
use utoipa::{OpenApi, ToSchema};

use crate::error::{ApiError, ApiJson, ErrorCode};
use crate::state::AppState;

/// How long receivers may cache the JWKS and public key, in seconds. Short enough that
/// a rotation reaches them well before the old key's tokens expire.
const KEY_CACHE_SECS: u32 = 300;

/// The registry's token keys (RFC 7517 JWK Set): the active token-signing key and
/// retired ones until every token they signed has expired. The receipt key is not
/// here (it is at `/.well-known/receipt-jwks.json`): a verifier that accepts whatever
/// this set holds must never accept a receipt as a token.
#[utoipa::path(get, path = "/.well-known/jwks.json", tag = "discovery",
    responses((status = 200, description = "JWK Set", content_type = "application/jwk-set+json")))]
pub async fn jwks(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    jwk_set(state.keys().verifying.to_jwks())
}

/// The receipt key (RFC 7517 JWK Set of one Ed25519 key): it signs only `typ
/// receipt+jwt`, never a token, and is kept out of the token JWKS so that no JWT
/// library configured with that set can take a receipt for a token.
#[utoipa::path(get, path = "/.well-known/receipt-jwks.json", tag = "discovery",
    responses((status = 200, description = "JWK Set", content_type = "application/jwk-set+json")))]
pub async fn receipt_jwks(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    jwk_set(bonafide_core::keys::Jwks {
        keys: vec![state.receipt_key.verifying_key().jwk().clone()],
    })
}

pub(crate) fn jwk_set(set: bonafide_core::keys::Jwks) -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "application/jwk-set+json".to_owned()),
            (
                header::CACHE_CONTROL,
                format!("public, max-age={KEY_CACHE_SECS}"),
            ),
        ],
        ApiJson(set),
    )
}

/// The active signing key as PEM (ImaRobot compatibility).
#[utoipa::path(get, path = "/.well-known/public-key.pem", tag = "discovery",
    responses((status = 200, description = "PEM SubjectPublicKeyInfo", content_type = "application/x-pem-file")))]
pub async fn public_key_pem(
    State(state): State<Arc<AppState>>,
) -> Result<impl IntoResponse, ApiError> {
    let pem = state.keys().active.verifying_key().public_pem()?;
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-pem-file".to_owned()),
            (
                header::CACHE_CONTROL,
                format!("public, max-age={KEY_CACHE_SECS}"),
            ),
        ],
        pem,
    ))
}

/// Discovery document: every endpoint, algorithms, limits.
#[utoipa::path(get, path = "/.well-known/bonafide-configuration", tag = "discovery",
    responses((status = 200, description = "discovery document")))]
pub async fn configuration(State(state): State<Arc<AppState>>) -> ApiJson<Value> {
    let base = &state.config.public_url;
    let ring = state.keys();
    ApiJson(json!({
        "issuer": base,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "public_key_uri": format!("{base}/.well-known/public-key.pem"),
        "verify_endpoint": format!("{base}/v1/verify"),
        "introspection_endpoint": format!("{base}/v1/introspect"),
        "registration_endpoint": format!("{base}/v1/agents/register"),
        "revocation_endpoint": format!("{base}/v1/tokens/revoke"),
        "token_endpoint": format!("{base}/v1/token"),
        "grant_types_supported": [crate::routes::token_exchange::GRANT_TYPE],
        "max_delegation_depth": state.config.max_delegation_depth,
        "issuer_keys_endpoint": format!("{base}/v1/issuer/keys"),
        "scopes_endpoint": format!("{base}/v1/scopes"),
        "openapi_uri": format!("{base}/openapi.json"),
        "token_types_supported": [bonafide_core::token::AGENT_TOKEN_TYP],
        "token_signing_alg_values_supported": ["RS256", "ES256", "EdDSA"],
        "signing_alg": ring.active.alg().as_str(),
        "signing_kid": ring.active.kid(),
        "leeway_seconds": state.config.leeway_secs,
        "max_token_bytes": state.config.max_token_bytes,
        "did_method": "did:web",
        "audit_log": {
            "origin": state.audit.origin(),
            "log_key": state.audit.verifier_key(),
            "checkpoint_uri": format!("{base}/v1/audit/checkpoint"),
            "entries_uri": format!("{base}/v1/audit/entries"),
            "inclusion_proof_uri": format!("{base}/v1/audit/proof/inclusion"),
            "consistency_proof_uri": format!("{base}/v1/audit/proof/consistency"),
            "proof_bundle_uri": format!("{base}/v1/audit/proof/bundle"),
            "tiles_uri": format!("{base}/v1/audit/tile/"),
            "verify_decisions_logged": state.config.audit_verify,
        },
        "simulate_endpoint": format!("{base}/v1/simulate"),
        "receipts_endpoint": format!("{base}/v1/receipts/"),
        "receipt_types_supported": [bonafide_core::receipt::RECEIPT_TYP],
        "receipt_signing_alg": "EdDSA",
        "receipt_signing_kid": state.receipt_key.kid(),
        "receipt_jwks_uri": format!("{base}/.well-known/receipt-jwks.json"),
        "status_list_jwks_uri": format!("{base}/.well-known/status-list-jwks.json"),
        "status_list_signing_kid": state.status_lists.key().kid(),
        "status_list_allocation_endpoint": format!("{base}/v1/status-lists/allocations"),
        "policy_versions_supported": [bonafide_core::policy::POLICY_VERSION],
        "policy_lint_endpoint": format!("{base}/v1/policies/lint"),
        "proof_types_supported": ["dpop", "http-signature"],
        "dpop_signing_alg_values_supported": ["EdDSA", "ES256", "RS256"],
        "http_signature_algorithms_supported": ["ed25519", "ecdsa-p256-sha256"],
        "http_signature_directory_uri_template":
            format!("{base}/agents/{{agent_id}}/.well-known/http-message-signatures-directory"),
    }))
}

/// The scopes catalog.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeCatalog {
    /// Built-in scopes with risk levels.
    pub scopes: Vec<ScopeEntry>,
    /// The grammar every scope, built-in or the issuer's own, must follow.
    pub grammar: String,
}

/// One catalog entry.
#[derive(Debug, Serialize, ToSchema)]
pub struct ScopeEntry {
    /// The scope.
    pub scope: String,
    /// `low`, `medium` or `high`.
    pub risk: String,
    /// What it allows.
    pub description: String,
}

/// The scopes catalog, with risk levels and the grammar for custom scopes.
#[utoipa::path(get, path = "/v1/scopes", tag = "discovery", responses((status = 200, body = ScopeCatalog)))]
pub async fn scopes() -> ApiJson<ScopeCatalog> {
    ApiJson(ScopeCatalog {
        scopes: CATALOG
            .iter()
            .map(|s| ScopeEntry {
                scope: s.scope.to_owned(),
                risk: match s.risk {
                    scopes::Risk::Low => "low",
                    scopes::Risk::Medium => "medium",
                    scopes::Risk::High => "high",
                }
                .to_owned(),
                description: s.description.to_owned(),
            })
            .collect(),
        grammar: format!(
            "verb:resource[:qualifier…], each part [a-z0-9][a-z0-9_.-]*, 2 to 4 parts, or resource.verb (payments.send), 2 to 4 parts of [a-z0-9][a-z0-9_-]*; at most {} characters; issuers may grant their own scopes that follow it",
            scopes::MAX_SCOPE_LEN
        ),
    })
}

/// Version and feature flags.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
    /// Server version.
    pub version: String,
    /// Which optional features this build has.
    pub features: Features,
    /// Counts since this process started.
    pub counters: Counters,
}

/// Feature flags.
#[derive(Debug, Serialize, ToSchema)]
pub struct Features {
    /// Registry-signed tokens.
    pub registry_signing: bool,
    /// Issuer-signed (self-custody) tokens: issuers register public keys
    /// (`/v1/issuer/keys`) and sign tokens themselves, as `agent+jwt` tokens or as
    /// AgentOAuth `act.v0.2`/`act.v0.3` consent tokens (EdDSA).
    pub self_custody: bool,
    /// Consent policies and budgets.
    pub policies: bool,
    /// Signed verify receipts.
    pub receipts: bool,
    /// Merkle audit log.
    pub audit_log: bool,
    /// Proof of possession (DPoP, HTTP message signatures).
    pub proof_of_possession: bool,
    /// Delegation by RFC 8693 token exchange (`POST /v1/token`).
    pub delegation: bool,
    /// Storage backend in use.
    pub storage: String,
}

/// Counts since this process started.
#[derive(Debug, Serialize, ToSchema)]
pub struct Counters {
    /// Tokens refused because they did not verify (unparseable, bad signature,
    /// unknown key, expired…): they concern no agent, so they are counted here and in
    /// the access log, never written to the audit log.
    pub unverifiable_tokens: u64,
}

/// Version, feature flags, a store round trip, and whether the store can write.
///
/// 503 `STORAGE_FULL` or `STORE_UNAVAILABLE` while it cannot (its latest write failed
/// for want of space or for I/O, and nothing since showed otherwise).
#[utoipa::path(get, path = "/v1/health", tag = "discovery", responses((status = 200, body = Health), (status = 503, description = "the store is not answering, or cannot write (`STORAGE_FULL`, `STORE_UNAVAILABLE`)")))]
pub async fn health(State(state): State<Arc<AppState>>) -> Result<ApiJson<Health>, ApiError> {
    state.store.has_admin_key().await.map_err(|e| {
        // The detail is for the operator's log, not for anonymous callers.
        tracing::error!(error = %e, "health check: store unavailable");
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StoreUnavailable,
            "the store is not answering",
        )
    })?;
    state.store.writable().await.map_err(cannot_write)?;
    Ok(ApiJson(Health {
        status: "ok".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        features: Features {
            registry_signing: true,
            self_custody: true,
            policies: true,
            receipts: true,
            audit_log: true,
            proof_of_possession: true,
            delegation: true,
            storage: state.store.backend().into(),
        },
        counters: Counters {
            unverifiable_tokens: state.unverifiable_tokens(),
        },
    }))
}

/// `GET /v1/health` under the path ImaRobot (and most load balancers) ask: the same
/// answer.
#[utoipa::path(get, path = "/health", tag = "discovery", responses((status = 200, body = Health), (status = 503, description = "the store is not answering, or cannot write (`STORAGE_FULL`, `STORE_UNAVAILABLE`)")))]
pub async fn health_alias(state: State<Arc<AppState>>) -> Result<ApiJson<Health>, ApiError> {
    health(state).await
}

/// Liveness and writability: the process answers and its store can write.
///
/// Cheap, for load balancers: no store round trip unless the latest write failed.
#[utoipa::path(get, path = "/healthz", tag = "discovery", responses((status = 200, description = "ok"), (status = 503, description = "the store cannot write (`STORAGE_FULL`, `STORE_UNAVAILABLE`)")))]
pub async fn healthz(State(state): State<Arc<AppState>>) -> Result<&'static str, ApiError> {
    state.store.writable().await.map_err(cannot_write)?;
    Ok("ok")
}

/// Prometheus metrics (OpenMetrics text): requests by route template and status,
/// verify decisions by outcome and code, audit group commits, checkpoint age, cache
/// hit rates. Admins only here; `serve --metrics-listen` serves them elsewhere
/// without a key.
#[utoipa::path(get, path = "/metrics", tag = "discovery", security(("api_key" = [])),
    responses((status = 200, description = "OpenMetrics text", content_type = "application/openmetrics-text"),
        (status = 401), (status = 403)))]
pub async fn metrics(
    State(state): State<Arc<AppState>>,
    _admin: crate::auth::Admin,
) -> Result<axum::response::Response, ApiError> {
    metrics_text(&state)
}

/// `GET /metrics` on `serve --metrics-listen`'s address: no key (only this route is
/// served there).
pub async fn metrics_keyless(
    State(state): State<Arc<AppState>>,
) -> Result<axum::response::Response, ApiError> {
    metrics_text(&state)
}

/// The metrics as served, for the route and the separate listener.
pub fn metrics_text(state: &AppState) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let latest = state.audit.latest();
    // The audit log keeps system time (not the configured clock).
    let age_ms = crate::time::now_ms().saturating_sub(state.audit.latest_at_ms());
    let text = state
        .metrics
        .encode(&crate::metrics::AuditGauges {
            checkpoint_age_s: age_ms.max(0) as f64 / 1000.0,
            checkpoint_entries: latest.size,
            upper_hashes: state.audit.upper_hashes_held(),
            pool: state.store.pool_status(),
        })
        .map_err(|_| ApiError::internal("metrics could not be encoded"))?;
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            crate::metrics::CONTENT_TYPE,
        )],
        text,
    )
        .into_response())
}

/// The store cannot write: 503 with the reason's code; the detail goes to the log.
fn cannot_write(e: bonafide_store::StoreError) -> ApiError {
    let (code, message) = match &e {
        bonafide_store::StoreError::Full(_) => (
            ErrorCode::StorageFull,
            "the store cannot write: its storage is full",
        ),
        _ => (ErrorCode::StoreUnavailable, "the store cannot write"),
    };
    // The store logs when it starts and stops failing; this is every poll.
    tracing::debug!(error = %e, "health check: the store cannot write");
    ApiError::new(axum::http::StatusCode::SERVICE_UNAVAILABLE, code, message)
}

/// This API's OpenAPI 3.1 document, generated from the code.
#[utoipa::path(get, path = "/openapi.json", tag = "discovery", responses((status = 200, description = "OpenAPI 3.1")))]
pub async fn openapi() -> ApiJson<utoipa::openapi::OpenApi> {
    ApiJson(crate::openapi::ApiDoc::openapi())
}
