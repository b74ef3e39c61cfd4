//! Agents' own keys (self-custody for agents): an agent keeps its private key, its
//! issuer registers the public half (a JWK, or KairosAI's PEM `signing_key_pub` with
//! `key_algorithm`), and the agent's tokens are bound to it by `cnf.jkt` (RFC 7800,
//! RFC 9449 §6.1). The registry never generates, holds or returns an agent's private
//! key: a JWK with private members or a private PEM is refused with 400.
//!
//! Rotation (`PUT /v1/agents/{id}/keys`) keeps the agent id: the previous key stays
//! valid for a grace period, then tokens bound to it answer `TOKEN_REVOKED` with
//! `KEY_ROTATED`. A key past its `key_expires_at` makes its tokens `TOKEN_EXPIRED` with
//! `KEY_EXPIRED`. `GET /agents/{id}/did.json` publishes the usable keys in the agent's
//! `did:web` DID document; a suspended or revoked agent's DID is deactivated (410).
//!
//! Once an agent has a key it accepts only tokens bound to it, unless its issuer
//! opted out at registration (`allow_bearer_tokens`; `token_check::check_token`).
//! Proof of possession on each request (DPoP, HTTP message signatures) is checked by
//! `crate::proof`.

use std::sync::Arc;

use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bonafide_core::audit::{Actor, EventType};
use bonafide_core::ids::AgentId;
use bonafide_core::keys::{Algorithm, Jwk, KeyValidity, VerifyingKey};
use bonafide_store::{AgentKey, AgentStatus, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::audit_change;
use crate::auth::IssuerAuth;
use crate::error::{ApiError, ApiJson, ApiPath, ErrorCode};
use crate::state::AppState;
use crate::time::{rfc3339_ms, rfc3339_s};
use crate::write::{Change, Part};
pub use bonafide_api::agents::AgentKeyView;

/// `key_expires_at` when none is asked: 90 days after registration or rotation.
pub const DEFAULT_KEY_LIFETIME_S: i64 = 90 * 86_400;
/// Shortest `key_expires_in`: one day.
pub const MIN_KEY_LIFETIME_S: i64 = 86_400;
/// Longest `key_expires_in`: 365 days.
pub const MAX_KEY_LIFETIME_S: i64 = 365 * 86_400;
/// Grace period of the previous key when none is asked: 24 hours.
pub const DEFAULT_GRACE_S: i64 = 86_400;
/// Longest grace period: 30 days.
pub const MAX_GRACE_S: i64 = 30 * 86_400;

/// The agent's public key as sent: a JWK, or a PEM with its algorithm (KairosAI).
#[derive(Debug, Default)]
pub struct KeyInput<'a> {
    /// `public_key`.
    pub jwk: Option<&'a Jwk>,
    /// `signing_key_pub`.
    pub pem: Option<&'a str>,
    /// `key_algorithm`.
    pub algorithm: Option<&'a str>,
}

fn key_invalid(message: impl Into<String>) -> ApiError {
    ApiError::new(
        StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::KeyInvalid,
        message,
    )
}

fn private_refused(what: impl std::fmt::Display) -> ApiError {
    ApiError::new(
        StatusCode::BAD_REQUEST,
        ErrorCode::PrivateKeyRefused,
        format!(
            "{what}: the registry never holds an agent's private key; send the public key only, and keep the private key with the agent"
        ),
    )
}

/// Checks the key input: `None` when no key was sent; private material is 400,
/// anything else unusable (RSA, both forms, an algorithm that does not fit) is 422.
pub fn parse_key(input: &KeyInput<'_>) -> Result<Option<VerifyingKey>, ApiError> {
    let key = match (input.jwk, input.pem, input.algorithm) {
        (None, None, None) => return Ok(None),
        (Some(_), Some(_), _) | (Some(_), None, Some(_)) => {
            return Err(key_invalid(
                "give the agent's key once: either `public_key` (a JWK) or `signing_key_pub` (PEM) with `key_algorithm`, not both",
            ));
        }
        (None, Some(_), None) => {
            return Err(key_invalid(
                "`signing_key_pub` needs `key_algorithm` (`Ed25519` or `ES256`)",
            ));
        }
        (None, None, Some(_)) => {
            return Err(key_invalid(
                "`key_algorithm` goes with `signing_key_pub` (a PEM public key)",
            ));
        }
        (Some(jwk), None, None) => {
            jwk.check_public().map_err(private_refused)?;
            VerifyingKey::from_jwk(jwk)
                .map_err(|e| key_invalid(format!("`public_key` is not a usable public key: {e}")))?
        }
        (None, Some(pem), Some(alg)) => {
            if pem.contains("PRIVATE KEY") {
                return Err(private_refused("`signing_key_pub` is a private key"));
            }
            let wanted = match alg {
                "Ed25519" | "EdDSA" => Algorithm::EdDSA,
                "ES256" | "P-256" => Algorithm::ES256,
                other => {
                    return Err(key_invalid(format!(
                        "`key_algorithm` `{}` is not supported: use `Ed25519` (or `EdDSA`) or `ES256` (or `P-256`)",
                        other.chars().take(32).collect::<String>()
                    )));
                }
            };
            let key = VerifyingKey::from_public_pem(pem).map_err(|e| {
                key_invalid(format!(
                    "`signing_key_pub` is not a usable PEM public key: {e}"
                ))
            })?;
            if key.alg() != wanted && key.alg() != Algorithm::RS256 {
                return Err(key_invalid(format!(
                    "`key_algorithm` is `{alg}` but `signing_key_pub` is a {} key",
                    key.alg()
                )));
            }
            key
        }
    };
    if key.alg() == Algorithm::RS256 {
        return Err(key_invalid(
            "agent keys must be Ed25519 (OKP) or P-256 (EC): RSA is not accepted for agents",
        ));
    }
    Ok(Some(key))
}

/// `key_expires_in` checked: the key's lifetime in seconds.
pub fn key_lifetime(requested: Option<i64>) -> Result<i64, ApiError> {
    let s = requested.unwrap_or(DEFAULT_KEY_LIFETIME_S);
    if !(MIN_KEY_LIFETIME_S..=MAX_KEY_LIFETIME_S).contains(&s) {
        return Err(ApiError::invalid(format!(
            "`key_expires_in` must be between {MIN_KEY_LIFETIME_S} (1 day) and {MAX_KEY_LIFETIME_S} (365 days) seconds"
        )));
    }
    Ok(s)
}

/// The stored record of a new current key.
pub fn key_record(
    agent: &AgentId,
    key: &VerifyingKey,
    now_ms: i64,
    lifetime_s: i64,
) -> Result<AgentKey, ApiError> {
    Ok(AgentKey {
        agent_id: agent.clone(),
        jkt: key.kid().to_owned(),
        jwk: serde_json::to_string(key.jwk())
            .map_err(|e| ApiError::internal(format!("agent key JSON: {e}")))?,
        alg: key.alg(),
        created_at_ms: now_ms,
        expires_at_ms: now_ms.saturating_add(lifetime_s.saturating_mul(1000)),
        retired_at_ms: None,
        grace_until_ms: None,
    })
}

/// When tokens bound to `k` may verify: core's one key-validity rule (current or in
/// grace, not expired).
fn validity(k: &AgentKey) -> KeyValidity {
    KeyValidity::agent_key(k.expires_at_ms, k.grace_until_ms)
}

/// The view of a stored key at `now_ms`.
pub fn key_view(k: &AgentKey, now_ms: i64) -> Result<AgentKeyView, ApiError> {
    let validity = validity(k);
    // Expiry is shown before rotation.
    let status = match validity.check(now_ms) {
        Ok(()) if k.grace_until_ms.is_some() => "grace",
        Ok(()) => "current",
        Err(_) if validity.expired(now_ms) => "expired",
        Err(_) => "retired",
    };
    Ok(AgentKeyView {
        jkt: k.jkt.clone(),
        alg: k.alg.as_str().to_owned(),
        jwk: serde_json::from_str(&k.jwk)
            .map_err(|e| ApiError::internal(format!("stored agent key {}: {e}", k.jkt)))?,
        status: status.to_owned(),
        created_at: rfc3339_ms(k.created_at_ms),
        key_expires_at: rfc3339_ms(k.expires_at_ms),
        retired_at: k.retired_at_ms.map(rfc3339_ms),
        grace_until: k.grace_until_ms.map(rfc3339_ms),
    })
}

/// `PUT /v1/agents/{id}/keys` body: the new key, as at registration.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateAgentKey {
    /// The agent's new public JWK: OKP Ed25519 or EC P-256. Private members are
    /// refused with 400.
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::values::AgentPublicJwk>)]
    pub public_key: Option<Jwk>,
    /// Or the new public key as PEM SubjectPublicKeyInfo (KairosAI), with
    /// `key_algorithm`.
    #[serde(default)]
    pub signing_key_pub: Option<String>,
    /// `Ed25519` (or `EdDSA`) or `ES256` (or `P-256`), with `signing_key_pub`.
    #[serde(default)]
    #[schema(value_type = Option<crate::openapi::values::AgentKeyAlgorithm>)]
    pub key_algorithm: Option<String>,
    /// How long tokens bound to the previous key keep verifying, seconds: 0 to
    /// 2592000 (30 days); default 86400.
    #[serde(default)]
    #[schema(minimum = 0, maximum = 2592000)]
    pub grace_seconds: Option<i64>,
    /// Lifetime of the new key, seconds: 86400 (1 day) to 31536000 (365 days);
    /// default 90 days.
    #[serde(default)]
    #[schema(minimum = 86400, maximum = 31536000)]
    pub key_expires_in: Option<i64>,
}

/// `PUT /v1/agents/{id}/keys` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AgentKeysRotated {
    /// `agt_…`, unchanged.
    pub agent_id: String,
    /// Every key of the agent, oldest first (the new one last, `current`).
    pub keys: Vec<AgentKeyView>,
    /// A fresh token bound to the new key (`cnf.jkt`); absent while the agent is
    /// suspended (reactivate it, then `POST /v1/agents/{id}/issue-token`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// Its `jti`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// When it expires (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
}

/// Rotates an agent's own key, keeping its agent id: the new key becomes current,
/// the previous one stays valid for `grace_seconds` (tokens bound to it verify until
/// then, and answer `TOKEN_REVOKED` with `KEY_ROTATED` after). An agent registered
/// without a key gets its first one. The answer has the agent's keys and a fresh
/// token bound to the new key.
#[utoipa::path(put, path = "/v1/agents/{id}/keys", tag = "issuer", request_body = RotateAgentKey,
    params(("id" = crate::openapi::values::AgentId, Path, description = "agent id (any other text is a 404)")), security(("api_key" = [])),
    responses((status = 200, body = AgentKeysRotated),
              (status = 400, description = "a private key was sent"), (status = 401), (status = 403), (status = 404),
              (status = 409, description = "the agent is revoked, or the key is already one of its keys"),
              (status = 422)))]
pub async fn rotate(
    State(state): State<Arc<AppState>>,
    IssuerAuth(issuer): IssuerAuth,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RotateAgentKey>,
) -> Result<ApiJson<AgentKeysRotated>, ApiError> {
    let agent = super::agents::own_agent(&state, &issuer, &id).await?;
    if agent.status == AgentStatus::Revoked {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::AgentRevoked,
            "agent is revoked; register a new agent",
        ));
    }
    let key = parse_key(&KeyInput {
        jwk: body.public_key.as_ref(),
        pem: body.signing_key_pub.as_deref(),
        algorithm: body.key_algorithm.as_deref(),
    })?
    .ok_or_else(|| {
        ApiError::invalid(
            "send the agent's new public key: `public_key` (a JWK) or `signing_key_pub` (PEM) with `key_algorithm`",
        )
    })?;
    let grace_s = body.grace_seconds.unwrap_or(DEFAULT_GRACE_S);
    if !(0..=MAX_GRACE_S).contains(&grace_s) {
        return Err(ApiError::invalid(format!(
            "`grace_seconds` must be between 0 and {MAX_GRACE_S} (30 days)"
        )));
    }
    let lifetime = key_lifetime(body.key_expires_in)?;
    let now = state.now_ms();
    let record = key_record(&agent.id, &key, now, lifetime)?;
    if state
        .store
        .agent_keys(&agent.id)
        .await?
        .iter()
        .any(|k| k.jkt == record.jkt)
    {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::KeyAlreadyRegistered,
            "this key is already one of the agent's keys (current or rotated out): send a new key",
        ));
    }
    let audit = audit_change(
        EventType::KeyRotated,
        now,
        Actor::Issuer {
            id: issuer.id.to_string(),
        },
        Some(&agent.id),
        Some(&issuer.id),
        |e| e.kid = Some(record.jkt.clone()),
    )?;
    let issuer_id = issuer.id.clone();
    let agent_id = agent.id.clone();
    let new_key = record.clone();
    let grace_until = now.saturating_add(grace_s.saturating_mul(1000));
    let keys = state
        .commit(
            "rotate",
            Part::AgentKeys(agent.id.clone()),
            Box::new(move |state| {
                Box::pin(async move {
                    let keys = state
                        .store
                        .rotate_agent_key(&issuer_id, &agent_id, &new_key, grace_until, now, &audit)
                        .await
                        .map_err(|e| match e {
                            StoreError::NotFound => ApiError::not_found("agent"),
                            other => other.into(),
                        })?;
                    Ok((keys, Change::None))
                })
            }),
        )
        .await?;
    tracing::info!(issuer_id = %issuer.id, agent_id = %agent.id, jkt = %record.jkt, "agent key rotated");
    let (token, jti, expires_at) = if agent.status == AgentStatus::Active {
        let (token, t) =
            super::agents::issue_bound_token(&state, &issuer, &agent, &record.jkt).await?;
        (
            Some(token),
            Some(t.jti.to_string()),
            Some(rfc3339_s(t.expires_at_s)),
        )
    } else {
        (None, None, None)
    };
    Ok(ApiJson(AgentKeysRotated {
        agent_id: agent.id.to_string(),
        keys: keys
            .iter()
            .map(|k| key_view(k, now))
            .collect::<Result<_, _>>()?,
        token,
        jti,
        expires_at,
    }))
}

/// Media type of a DID resolution result (W3C DID Resolution, HTTP(S) binding).
pub const DID_RESOLUTION_MEDIA_TYPE: &str = "application/did-resolution";

/// The `did:web` DID document of an agent (W3C DID Core): its usable keys (current
/// and in grace, not expired) as `JsonWebKey2020` verification methods, listed under
/// `authentication` and `assertionMethod`. 404 for an unknown agent or one without a
/// usable key. A suspended or revoked agent's DID is deactivated: 410 with a DID
/// resolution result (`application/did-resolution`) whose `didDocumentMetadata` is
/// `{"deactivated": true}` and whose `didDocument` has no key (DID Resolution's
/// HTTP(S) binding answers a deactivated DID with 410), plus the usual `error`
/// (`AGENT_SUSPENDED`, `AGENT_REVOKED`), `Cache-Control: no-store` (a suspension
/// ends). Open: no key needed.
#[utoipa::path(get, path = "/agents/{id}/did.json", tag = "discovery",
    params(("id" = crate::openapi::values::AgentId, Path, description = "agent id (any other text is a 404)")),
    responses((status = 200, description = "DID document (application/did+ld+json)", body = Object),
              (status = 404),
              (status = 410, description = "the agent is suspended or revoked: a DID resolution result (application/did-resolution) with `didDocumentMetadata.deactivated: true`", body = Object, content_type = "application/did-resolution")))]
pub async fn did_document(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let context = json!([
        "https://www.w3.org/ns/did/v1",
        "https://w3id.org/security/suites/jws-2020/v1",
    ]);
    let (id, keys) = match published_keys(&state, &id).await? {
        Published::Keys(id, keys) => (id, keys),
        Published::Deactivated(id, error) => {
            let did = state.agent_did(id.as_str());
            let mut result = serde_json::Map::new();
            result.insert(
                "@context".into(),
                Value::from("https://w3id.org/did-resolution/v1"),
            );
            result.insert(
                "didDocument".into(),
                json!({"@context": context, "id": did}),
            );
            result.insert(
                "didResolutionMetadata".into(),
                json!({"contentType": "application/did+ld+json"}),
            );
            result.insert("didDocumentMetadata".into(), json!({"deactivated": true}));
            return Ok(error.into_response_with(DID_RESOLUTION_MEDIA_TYPE, result));
        }
    };
    let did = state.agent_did(id.as_str());
    let mut methods = Vec::new();
    let mut refs = Vec::new();
    for (jkt, jwk) in keys {
        let method = format!("{did}#{jkt}");
        methods.push(json!({
            "id": method,
            "type": "JsonWebKey2020",
            "controller": did,
            "publicKeyJwk": jwk,
        }));
        refs.push(Value::from(method));
    }
    let doc = json!({
        "@context": context,
        "id": did,
        "verificationMethod": methods,
        "authentication": refs,
        "assertionMethod": refs,
    });
    let body = serde_json::to_vec(&doc).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/did+ld+json"),
        )],
        body,
    )
        .into_response())
}

/// What an agent's key documents publish.
enum Published {
    /// Its usable keys (current and in grace, not expired) as (thumbprint, JWK).
    Keys(AgentId, Vec<(String, Value)>),
    /// Suspended or revoked: no key is published, and the error says which.
    Deactivated(AgentId, ApiError),
}

/// An agent's usable keys, for the documents that publish them: 404 for an unknown
/// agent or one without a usable key; deactivated (410) while suspended and once
/// revoked, read from the store so both documents follow its status at once.
async fn published_keys(state: &AppState, id: &str) -> Result<Published, ApiError> {
    let id = AgentId::try_from(id).map_err(|_| ApiError::not_found("agent"))?;
    let agent = state
        .store
        .agent(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("agent"))?;
    match agent.status {
        AgentStatus::Revoked => {
            return Ok(Published::Deactivated(
                agent.id,
                ApiError::new(
                    StatusCode::GONE,
                    ErrorCode::AgentRevoked,
                    "agent is revoked: its DID is deactivated and its keys are no longer published",
                ),
            ));
        }
        AgentStatus::Suspended => {
            return Ok(Published::Deactivated(
                agent.id,
                ApiError::new(
                    StatusCode::GONE,
                    ErrorCode::AgentSuspended,
                    "agent is suspended by its issuer: its DID is deactivated and its keys are not published until it is reactivated",
                ),
            ));
        }
        AgentStatus::Active => {}
    }
    let now = state.now_ms();
    let mut keys = Vec::new();
    for k in state.store.agent_keys(&agent.id).await? {
        if !validity(&k).usable(now) {
            continue;
        }
        let jwk: Value = serde_json::from_str(&k.jwk)
            .map_err(|e| ApiError::internal(format!("stored agent key {}: {e}", k.jkt)))?;
        keys.push((k.jkt, jwk));
    }
    if keys.is_empty() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            ErrorCode::NoAgentKey,
            "this agent has no current key: its issuer registers one with `PUT /v1/agents/{id}/keys`",
        ));
    }
    Ok(Published::Keys(agent.id, keys))
}

/// The agent's keys as an HTTP Message Signatures key directory (Web Bot Auth:
/// `application/http-message-signatures-directory+json`, `{"keys": [JWK, …]}`), so a
/// receiver can check the message signatures an agent sends (`keyid` is a key's RFC
/// 7638 thumbprint). The same usable keys as the DID document. The directory is not
/// itself signed: that would take the agent's private key, which the registry never
/// holds. 404 for an unknown agent or one without a usable key. A suspended or
/// revoked agent: 410 with an empty key set, `"deactivated": true` and the usual
/// `error` (`AGENT_SUSPENDED`, `AGENT_REVOKED`), `Cache-Control: no-store`.
#[utoipa::path(get, path = "/agents/{id}/.well-known/http-message-signatures-directory", tag = "discovery",
    params(("id" = crate::openapi::values::AgentId, Path, description = "agent id (any other text is a 404)")),
    responses((status = 200, description = "key directory (application/http-message-signatures-directory+json)", body = Object),
              (status = 404),
              (status = 410, description = "the agent is suspended or revoked: `{\"keys\": [], \"deactivated\": true, \"error\": …}`", body = Object, content_type = "application/http-message-signatures-directory+json")))]
pub async fn signatures_directory(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let keys = match published_keys(&state, &id).await? {
        Published::Keys(_, keys) => keys,
        Published::Deactivated(_, error) => {
            let mut doc = serde_json::Map::new();
            doc.insert("keys".into(), json!([]));
            doc.insert("deactivated".into(), Value::Bool(true));
            return Ok(error.into_response_with(bonafide_core::httpsig::DIRECTORY_MEDIA_TYPE, doc));
        }
    };
    let doc = json!({"keys": keys.into_iter().map(|(_, jwk)| jwk).collect::<Vec<_>>()});
    let body = serde_json::to_vec(&doc).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok((
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static(bonafide_core::httpsig::DIRECTORY_MEDIA_TYPE),
        )],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_input_forms() {
        assert!(parse_key(&KeyInput::default()).unwrap().is_none());
        let err = |i: KeyInput<'_>| parse_key(&i).unwrap_err().status;
        let jwk: Jwk = serde_json::from_value(json!({
            "kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
        }))
        .unwrap();
        assert!(
            parse_key(&KeyInput {
                jwk: Some(&jwk),
                ..KeyInput::default()
            })
            .unwrap()
            .is_some()
        );
        assert_eq!(
            err(KeyInput {
                jwk: Some(&jwk),
                pem: Some("x"),
                algorithm: Some("Ed25519")
            }),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            err(KeyInput {
                pem: Some("x"),
                ..KeyInput::default()
            }),
            StatusCode::UNPROCESSABLE_ENTITY
        );
        assert_eq!(
            err(KeyInput {
                pem: Some("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"),
                algorithm: Some("Ed25519"),
                ..KeyInput::default()
            }),
            StatusCode::BAD_REQUEST
        );
    }

    #[test]
    fn lifetimes_are_bounded() {
        assert_eq!(key_lifetime(None).unwrap(), DEFAULT_KEY_LIFETIME_S);
        assert!(key_lifetime(Some(MIN_KEY_LIFETIME_S - 1)).is_err());
        assert!(key_lifetime(Some(MAX_KEY_LIFETIME_S + 1)).is_err());
        assert_eq!(key_lifetime(Some(2 * 86_400)).unwrap(), 2 * 86_400);
    }
}
