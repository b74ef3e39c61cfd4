//! Issuer keys (self-custody): an issuer registers the public half of a key it keeps,
//! and signs its agents' tokens itself (`typ agent+jwt`, `iss` = its issuer id,
//! `kid` = the key's RFC 7638 thumbprint). The registry never holds, generates or
//! returns an issuer's private key: a JWK with private members is refused.
//!
//! Registering a key takes a key proof ([`bonafide_core::key_proof`]) signed by its
//! private half for this issuer at this registry, checked before anything else is
//! looked up: a public key is public, and without the proof anyone could register
//! (squat) a key another party publishes. A key already registered answers the same
//! 409 whoever holds it, and only to a caller who proved it holds the key.
//!
//! A key is revoked for good; from the very next verify on, every token it signed
//! answers `TOKEN_REVOKED` (with `KEY_REVOKED` among the reasons). Another issuer's
//! key answers 404, exactly like a missing one.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use bonafide_core::audit::{Actor, EventType};
use bonafide_core::key_proof::{self, KeyProofError};
use bonafide_core::keys::{Algorithm, Jwk, KeyError, VerifyingKey};
use bonafide_core::token::KeyResolver;
use bonafide_store::{ConflictKind, Issuer, IssuerKey, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::audit_change;
use crate::auth::IssuerAuth;
use crate::error::{ApiError, ApiJson, ApiPath, ErrorCode, JsonOrEmpty};
use crate::state::AppState;
use crate::time::rfc3339_ms;
use crate::write::{Change, Part};

/// `POST /v1/issuer/keys` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddIssuerKey {
    /// The public JWK: OKP Ed25519 (EdDSA), EC P-256 (ES256) or RSA of 2048 to 8192
    /// bits (RS256). Private members (`d`, `p`, `q`, `dp`, `dq`, `qi`, `oth`, `k`) are
    /// refused with 400. A `kid` member, if present, is the key's RFC 7638 thumbprint
    /// (the registry computes it) or the issuer's own name for the key (AgentOAuth's
    /// `key-001`), kept as its `alias`: 1 to 128 characters, no control characters,
    /// unique among the issuer's keys (409). A consent token whose `iss` names the
    /// issuer and whose `kid` is the alias is verified with that key only.
    #[schema(value_type = crate::openapi::values::IssuerPublicJwk)]
    pub jwk: Jwk,
    /// `EdDSA`, `ES256` or `RS256`; defaults from the key type, and must fit it.
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::values::IssuerKeyAlg>)]
    pub alg: Option<String>,
    /// Required: a key proof, a compact JWS with header `typ` `bonafide-key-proof+jwt`
    /// and `kid` this key's RFC 7638 thumbprint, signed by this key's private half,
    /// over exactly `{iss: <issuer id>, aud: <registry public URL>, iat, jkt: <the
    /// thumbprint>, jti?}` with `iat` within 300 s of the registry's clock. `bonafide
    /// issuer-key add` makes one.
    #[serde(default)]
    pub proof: Option<String>,
}

/// `GET /v1/issuer` answer: the calling issuer.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuerSelf {
    /// `iss_…`: the `iss` of the tokens and proofs it signs.
    pub issuer_id: String,
    /// Its registered name.
    pub name: String,
    /// RFC 3339.
    pub created_at: String,
}

/// A registered issuer key.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuerKeyView {
    /// RFC 7638 thumbprint: the `kid` its tokens carry.
    pub kid: String,
    /// The one algorithm it verifies.
    pub alg: String,
    /// The public JWK, with `kid`, `alg` and `use`.
    #[schema(value_type = Object)]
    pub jwk: serde_json::Value,
    /// The issuer (`iss_…`): the `iss` its tokens must carry.
    pub issuer_id: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339, when revoked.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// The issuer's own name for the key (the `kid` it was registered with, when not
    /// the thumbprint): consent tokens may name the key by it, with `iss`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alias: Option<String>,
}

/// `GET /v1/issuer/keys` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuerKeyList {
    /// The caller's keys, revoked ones included, oldest first.
    pub keys: Vec<IssuerKeyView>,
}

/// `POST /v1/issuer/keys/{kid}/revoke` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuerKeyRevoked {
    /// The key.
    pub kid: String,
    /// RFC 3339; the first revocation's time if revoked before.
    pub revoked_at: String,
}

/// `POST /v1/issuer/keys/{kid}/revoke` body: nothing, or `{}`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeIssuerKey {}

fn view(k: &IssuerKey) -> Result<IssuerKeyView, ApiError> {
    Ok(IssuerKeyView {
        kid: k.kid.clone(),
        alg: k.alg.as_str().to_owned(),
        jwk: serde_json::from_str(&k.jwk)
            .map_err(|e| ApiError::internal(format!("stored issuer key {}: {e}", k.kid)))?,
        issuer_id: k.issuer_id.to_string(),
        created_at: rfc3339_ms(k.created_at_ms),
        revoked_at: k.revoked_at_ms.map(rfc3339_ms),
        alias: k.alias.clone(),
    })
}

fn issuer_actor(issuer: &Issuer) -> Actor {
    Actor::Issuer {
        id: issuer.id.to_string(),
    }
}

fn unusable(e: &KeyError) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::KeyInvalid,
        format!("`jwk` is not a usable public key: {e}"),
    )
}

/// Checks a submitted key: private material (400), then usability, algorithm and
/// kid (422). Gives the key and its alias: the submitted `kid` when it is not the
/// thumbprint.
fn check_key(body: &AddIssuerKey) -> Result<(VerifyingKey, Option<String>), ApiError> {
    if let Err(e) = body.jwk.check_public() {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            ErrorCode::PrivateKeyRefused,
            format!(
                "{e}: the registry never holds an issuer's private key; send the public JWK only, and keep the private key to sign tokens yourself"
            ),
        ));
    }
    let asked = body
        .alg
        .as_deref()
        .map(|a| {
            Algorithm::parse(a).ok_or_else(|| {
                unusable(&KeyError::UnsupportedAlgorithm(
                    a.chars().take(32).collect(),
                ))
            })
        })
        .transpose()?;
    let key = VerifyingKey::from_jwk(&body.jwk).map_err(|e| unusable(&e))?;
    if let Some(alg) = asked
        && alg != key.alg()
    {
        return Err(unusable(&KeyError::AlgorithmMismatch {
            alg: alg.to_string(),
            kty: body.jwk.kty.chars().take(16).collect(),
        }));
    }
    let alias = match &body.jwk.kid {
        Some(kid) if kid != key.kid() => {
            let chars = kid.chars().count();
            if chars == 0
                || kid.len() > bonafide_core::jws::MAX_KID_LEN
                || kid.chars().any(char::is_control)
            {
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    ErrorCode::KeyInvalid,
                    format!(
                        "`jwk.kid` is neither this key's RFC 7638 thumbprint (`{}`) nor a usable name for it (1 to {} bytes, no control characters)",
                        key.kid(),
                        bonafide_core::jws::MAX_KID_LEN
                    ),
                ));
            }
            Some(kid.clone())
        }
        _ => None,
    };
    Ok((key, alias))
}

fn proof_invalid(message: String) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::KeyProofInvalid,
        message,
    )
}

/// Checks the key proof: signed by `key` itself, for this issuer at this registry,
/// recently.
fn check_proof(
    state: &AppState,
    issuer: &Issuer,
    key: &VerifyingKey,
    proof: Option<&str>,
) -> Result<(), ApiError> {
    let Some(proof) = proof else {
        return Err(proof_invalid(
            "`proof` is required: a `bonafide-key-proof+jwt` signed by the private half of the key you register (`bonafide issuer-key add` makes one)".into(),
        ));
    };
    let expected = key_proof::Expected {
        issuer: issuer.id.as_str(),
        audience: &state.config.public_url,
        now: state.now_ms() / 1000,
    };
    key_proof::verify(proof, key, &expected).map_err(|e| {
        let hint = match e {
            KeyProofError::Mismatch { .. } | KeyProofError::Stale { .. } => {
                " (sign a new proof for this issuer, key and registry)"
            }
            _ => "",
        };
        proof_invalid(format!("key not registered: {e}{hint}"))
    })?;
    Ok(())
}

/// The calling issuer: its id (the `iss` its tokens and proofs carry) and name.
#[utoipa::path(get, path = "/v1/issuer", tag = "issuer", security(("api_key" = [])),
    responses((status = 200, body = IssuerSelf), (status = 401), (status = 403)))]
pub async fn me(IssuerAuth(issuer): IssuerAuth) -> ApiJson<IssuerSelf> {
    ApiJson(IssuerSelf {
        issuer_id: issuer.id.to_string(),
        name: issuer.name,
        created_at: rfc3339_ms(issuer.created_at_ms),
    })
}

/// Registers a public key the caller signs its agents' tokens with, once it proved it
/// holds the private half.
#[utoipa::path(post, path = "/v1/issuer/keys", tag = "issuer", request_body = AddIssuerKey,
    security(("api_key" = [])),
    responses((status = 201, body = IssuerKeyView),
              (status = 400, description = "the JWK holds private key material"),
              (status = 401), (status = 403),
              (status = 409, description = "this key is already registered (by whom is not said)"),
              (status = 422, description = "not a usable public key, or `alg` does not fit it (`KEY_INVALID`); `proof` missing or does not hold (`KEY_PROOF_INVALID`, with why)")))]
pub async fn add(
    State(state): State<Arc<AppState>>,
    IssuerAuth(issuer): IssuerAuth,
    ApiJson(body): ApiJson<AddIssuerKey>,
) -> Result<(StatusCode, ApiJson<IssuerKeyView>), ApiError> {
    let (key, alias) = check_key(&body)?;
    // Before any lookup: whether a key is registered is told only to its holder.
    check_proof(&state, &issuer, &key, body.proof.as_deref())?;
    // One answer whoever holds it (this issuer, another one, or the registry).
    let taken = format!("key `{}` is already registered", key.kid());
    let conflict = move || ApiError::new(StatusCode::CONFLICT, ErrorCode::Conflict, taken.clone());
    // A registry key's kid would never reach the issuer key (the registry's keys are
    // looked up first): refuse it rather than register a key that cannot verify.
    if state.keys().verifying.key(key.kid()).is_some() {
        return Err(conflict());
    }
    let now = state.now_ms();
    let record = IssuerKey {
        kid: key.kid().to_owned(),
        issuer_id: issuer.id.clone(),
        alg: key.alg(),
        jwk: serde_json::to_string(key.jwk())
            .map_err(|e| ApiError::internal(format!("jwk: {e}")))?,
        created_at_ms: now,
        revoked_at_ms: None,
        alias,
    };
    let audit = audit_change(
        EventType::KeyAdded,
        now,
        issuer_actor(&issuer),
        None,
        Some(&issuer.id),
        |e| e.kid = Some(record.kid.clone()),
    )?;
    let stored = record.clone();
    state
        .commit(
            "add key",
            Part::IssuerKeys,
            Box::new(move |state| {
                Box::pin(async move {
                    state
                        .store
                        .add_issuer_key(&stored, &audit)
                        .await
                        .map_err(|e| match e {
                            // Told only to the issuer itself: its own keys' aliases.
                            StoreError::Conflict(ConflictKind::IssuerKeyAliasTaken) => {
                                ApiError::new(
                                    StatusCode::CONFLICT,
                                    ErrorCode::Conflict,
                                    ConflictKind::IssuerKeyAliasTaken.message(),
                                )
                            }
                            StoreError::Conflict(_) => conflict(),
                            other => other.into(),
                        })?;
                    Ok(((), Change::IssuerKeys))
                })
            }),
        )
        .await?;
    tracing::info!(issuer_id = %issuer.id, kid = %record.kid, "issuer key added");
    Ok((StatusCode::CREATED, ApiJson(view(&record)?)))
}

/// Lists the caller's keys, revoked ones included.
#[utoipa::path(get, path = "/v1/issuer/keys", tag = "issuer", security(("api_key" = [])),
    responses((status = 200, body = IssuerKeyList), (status = 401), (status = 403)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    IssuerAuth(issuer): IssuerAuth,
) -> Result<ApiJson<IssuerKeyList>, ApiError> {
    let keys = state.store.issuer_keys(&issuer.id).await?;
    Ok(ApiJson(IssuerKeyList {
        keys: keys.iter().map(view).collect::<Result<_, _>>()?,
    }))
}

/// Revokes one of the caller's keys, for good: from the very next verify on, every
/// token it signed answers `TOKEN_REVOKED` (reasons `TOKEN_REVOKED`, `KEY_REVOKED`).
/// Revoking twice keeps the first time.
#[utoipa::path(post, path = "/v1/issuer/keys/{kid}/revoke", tag = "issuer",
    request_body = Option<RevokeIssuerKey>,
    params(("kid" = crate::openapi::values::Thumbprint, Path, description = "the key's RFC 7638 thumbprint (any other text is a 404)")),
    security(("api_key" = [])),
    responses((status = 200, body = IssuerKeyRevoked), (status = 401), (status = 403),
              (status = 404, description = "no such key of the caller's")))]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    IssuerAuth(issuer): IssuerAuth,
    ApiPath(kid): ApiPath<String>,
    JsonOrEmpty(RevokeIssuerKey {}): JsonOrEmpty<RevokeIssuerKey>,
) -> Result<ApiJson<IssuerKeyRevoked>, ApiError> {
    // Thumbprints are 43 base64url characters; anything else cannot be a key.
    if kid.is_empty()
        || kid.len() > 128
        || !kid
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ApiError::not_found("issuer key"));
    }
    let now = state.now_ms();
    let audit = audit_change(
        EventType::KeyRevoked,
        now,
        issuer_actor(&issuer),
        None,
        Some(&issuer.id),
        |e| e.kid = Some(kid.clone()),
    )?;
    let issuer_id = issuer.id.clone();
    let record = state
        .commit(
            "revoke key",
            Part::IssuerKeys,
            Box::new(move |state| {
                Box::pin(async move {
                    let record = state
                        .store
                        .revoke_issuer_key(&issuer_id, &kid, now, &audit)
                        .await
                        .map_err(|e| match e {
                            StoreError::NotFound => ApiError::not_found("issuer key"),
                            other => other.into(),
                        })?;
                    Ok((record, Change::IssuerKeys))
                })
            }),
        )
        .await?;
    tracing::info!(issuer_id = %issuer.id, kid = %record.kid, "issuer key revoked");
    Ok(ApiJson(IssuerKeyRevoked {
        kid: record.kid,
        revoked_at: rfc3339_ms(record.revoked_at_ms.unwrap_or(now)),
    }))
}
