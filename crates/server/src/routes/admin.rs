//! Admin endpoints: create issuers, rotate the registry signing key.

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use bonafide_core::apikey::{ApiKey, KeyKind};
use bonafide_core::ids::{IssuerId, ReceiverId};
use bonafide_store::{Issuer, Receiver};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use bonafide_core::audit::{Actor, EventType};

use super::{audit_change, check_text, random16, random20};
use crate::auth::{Admin, Caller};
use crate::error::{ApiError, ApiJson, ApiPath, ErrorCode};
use crate::state::{AppState, new_key_record};
use crate::time::{rfc3339_ms, rfc3339_s};
use crate::write::{Change, Part};

/// `POST /v1/issuers` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateIssuer {
    /// Unique name, usually the organisation's domain (`apexwealth.com`). Names that
    /// differ only by case, a leading `https://` or `http://`, or trailing dots or
    /// slashes are the same name
    /// (a consent token's `iss` may use any of them); a name that is an issuer id
    /// (`iss_…`) is refused.
    #[schema(value_type = crate::openapi::values::Text253)]
    pub name: String,
}

/// `POST /v1/issuers` answer. `api_key` is shown once and never again.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssuerCreated {
    /// `iss_…`.
    #[schema(value_type = crate::openapi::values::IssuerId)]
    pub issuer_id: String,
    /// The name.
    pub name: String,
    /// The issuer's API key (`bfk_iss_…`). Store it now: it cannot be shown again.
    pub api_key: String,
    /// RFC 3339.
    pub created_at: String,
}

/// Creates an issuer and its API key.
#[utoipa::path(post, path = "/v1/issuers", tag = "admin", request_body = CreateIssuer,
    security(("api_key" = [])),
    responses((status = 201, body = IssuerCreated), (status = 401), (status = 403), (status = 409), (status = 422)))]
pub async fn create_issuer(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiJson(body): ApiJson<CreateIssuer>,
) -> Result<(StatusCode, ApiJson<IssuerCreated>), ApiError> {
    let name = super::check_issuer_name(&body.name)?;
    let issuer = Issuer {
        id: IssuerId::from_random(random16()?),
        name,
        created_at_ms: state.now_ms(),
    };
    let key = ApiKey::from_random(KeyKind::Issuer, random20()?);
    let audit = audit_change(
        EventType::IssuerCreated,
        issuer.created_at_ms,
        Actor::Admin,
        None,
        Some(&issuer.id),
        |e| e.note = Some(issuer.name.clone()),
    )?;
    state
        .store
        .create_issuer(&issuer, &key.hash(), &audit)
        .await
        .map_err(|e| match e {
            bonafide_store::StoreError::Conflict(_) => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                format!(
                    "an issuer named `{}` already exists (names differing only by case, `https://` or `http://`, or trailing dots or slashes are one name)",
                    issuer.name
                ),
            ),
            other => other.into(),
        })?;
    tracing::info!(issuer_id = %issuer.id, "issuer created");
    Ok((
        StatusCode::CREATED,
        ApiJson(IssuerCreated {
            issuer_id: issuer.id.to_string(),
            name: issuer.name,
            api_key: key.expose_secret().to_owned(),
            created_at: rfc3339_ms(issuer.created_at_ms),
        }),
    ))
}

/// `POST /v1/receivers` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateReceiver {
    /// Unique name, usually the receiving API's host (`api.shop.example`).
    #[schema(value_type = crate::openapi::values::Text253)]
    pub name: String,
    /// The audiences (`aud` values: names or URLs) it verifies as, 1 to
    /// [`MAX_RECEIVER_AUDIENCES`] of at most 256 characters; default its name. With
    /// its key, a token with `aud` must name one of them.
    #[serde(default)]
    #[schema(value_type = Option<Vec<crate::openapi::values::Text256>>, min_items = 1, max_items = 16)]
    pub audiences: Option<Vec<String>>,
}

/// Most audiences one receiver may have.
pub const MAX_RECEIVER_AUDIENCES: usize = 16;

/// 409 for an audience another receiver holds. It does not say which receiver.
fn audience_taken() -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        ErrorCode::AudienceTaken,
        "one of these audiences belongs to another receiver: an audience is one receiver's, or anyone holding it could verify and spend that receiver's tokens",
    )
}

/// Checks a receiver's audiences: 1 to [`MAX_RECEIVER_AUDIENCES`], each a name as
/// registration takes them (at most 256 characters), duplicates dropped.
pub(crate) fn check_audiences(list: &[String]) -> Result<Vec<String>, ApiError> {
    if list.is_empty() || list.len() > MAX_RECEIVER_AUDIENCES {
        return Err(ApiError::invalid(format!(
            "`audiences` must list 1 to {MAX_RECEIVER_AUDIENCES} audiences"
        )));
    }
    let mut out: Vec<String> = Vec::with_capacity(list.len());
    for a in list {
        let a = check_text("audiences[]", a, 256)?;
        if !out.contains(&a) {
            out.push(a);
        }
    }
    Ok(out)
}

/// `POST /v1/receivers` answer. `api_key` is shown once and never again.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiverCreated {
    /// `rcv_…`.
    #[schema(value_type = crate::openapi::values::ReceiverId)]
    pub receiver_id: String,
    /// The name.
    pub name: String,
    /// The audiences it verifies as.
    pub audiences: Vec<String>,
    /// The receiver's API key (`bfk_rcv_…`): it attributes verifies and is required to
    /// spend budgets or send an `idempotency_key`. Store it now: it cannot be shown again.
    pub api_key: String,
    /// RFC 3339.
    pub created_at: String,
}

/// Creates a receiver (an API that verifies agents) and its API key.
#[utoipa::path(post, path = "/v1/receivers", tag = "admin", request_body = CreateReceiver,
    security(("api_key" = [])),
    responses((status = 201, body = ReceiverCreated), (status = 400), (status = 401), (status = 403), (status = 409), (status = 422)))]
pub async fn create_receiver(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiJson(body): ApiJson<CreateReceiver>,
) -> Result<(StatusCode, ApiJson<ReceiverCreated>), ApiError> {
    let name = check_text("name", &body.name, 253)?;
    let audiences = match &body.audiences {
        Some(list) => check_audiences(list)?,
        None => vec![name.clone()],
    };
    let receiver = Receiver {
        id: ReceiverId::from_random(random16()?),
        name,
        audiences,
        created_at_ms: state.now_ms(),
    };
    let key = ApiKey::from_random(KeyKind::Receiver, random20()?);
    let audit = audit_change(
        EventType::ReceiverCreated,
        receiver.created_at_ms,
        Actor::Admin,
        None,
        None,
        |e| {
            e.note = Some(receiver.name.clone());
            e.target = Some(receiver.id.to_string());
        },
    )?;
    state
        .store
        .create_receiver(&receiver, &key.hash(), &audit)
        .await
        .map_err(|e| match e {
            bonafide_store::StoreError::Conflict(bonafide_store::ConflictKind::AudienceTaken) => {
                audience_taken()
            }
            bonafide_store::StoreError::Conflict(_) => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                format!("a receiver named `{}` already exists", receiver.name),
            ),
            other => other.into(),
        })?;
    tracing::info!(receiver_id = %receiver.id, "receiver created");
    Ok((
        StatusCode::CREATED,
        ApiJson(ReceiverCreated {
            receiver_id: receiver.id.to_string(),
            name: receiver.name,
            audiences: receiver.audiences,
            api_key: key.expose_secret().to_owned(),
            created_at: rfc3339_ms(receiver.created_at_ms),
        }),
    ))
}

/// `PUT /v1/receivers/{id}/audiences` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetAudiences {
    /// The receiver's new audiences (replacing the old), as at creation: 1 to 16.
    #[schema(value_type = Vec<crate::openapi::values::Text256>, min_items = 1, max_items = 16)]
    pub audiences: Vec<String>,
}

/// A receiver's audiences.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiverAudiences {
    /// `rcv_…`.
    #[schema(value_type = crate::openapi::values::ReceiverId)]
    pub receiver_id: String,
    /// Its name.
    pub name: String,
    /// The audiences it verifies as.
    pub audiences: Vec<String>,
}

/// Replaces a receiver's audiences (the registry admin only: a receiver choosing its
/// own could claim an API it does not run). An audience belongs to one receiver
/// (409 `AUDIENCE_TAKEN`). Takes effect at once in this process (others within
/// `key_refresh`).
#[utoipa::path(put, path = "/v1/receivers/{id}/audiences", tag = "admin", request_body = SetAudiences,
    params(("id" = crate::openapi::values::ReceiverId, Path, description = "`rcv_…` (any other text is a 404)")),
    security(("api_key" = [])),
    responses((status = 200, body = ReceiverAudiences), (status = 400), (status = 401),
              (status = 403, description = "not the admin key"),
              (status = 404), (status = 409, description = "`AUDIENCE_TAKEN`: another receiver holds one of them"), (status = 422)))]
pub async fn set_audiences(
    State(state): State<Arc<AppState>>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<SetAudiences>,
) -> Result<ApiJson<ReceiverAudiences>, ApiError> {
    match &caller {
        Caller::Admin => {}
        Caller::Anonymous => {
            return Err(ApiError::unauthorized("send the admin key"));
        }
        _ => {
            return Err(ApiError::forbidden(
                "only the registry admin may change a receiver's audiences",
            ));
        }
    }
    let id = ReceiverId::try_from(id.as_str()).map_err(|_| ApiError::not_found("receiver"))?;
    let audiences = check_audiences(&body.audiences)?;
    let audit = audit_change(
        EventType::ReceiverUpdated,
        state.now_ms(),
        caller.actor(),
        None,
        None,
        |e| {
            e.target = Some(id.to_string());
            e.note = Some(format!("audiences: {}", audiences.join(" ")));
        },
    )?;
    state
        .store
        .set_receiver_audiences(&id, &audiences, &audit)
        .await
        .map_err(|e| match e {
            bonafide_store::StoreError::NotFound => ApiError::not_found("receiver"),
            bonafide_store::StoreError::Conflict(_) => audience_taken(),
            other => other.into(),
        })?;
    state.forget_receiver(&id);
    let receiver = state
        .store
        .receiver(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("receiver"))?;
    tracing::info!(receiver_id = %id, "receiver audiences changed");
    Ok(ApiJson(ReceiverAudiences {
        receiver_id: receiver.id.to_string(),
        name: receiver.name,
        audiences: receiver.audiences,
    }))
}

/// A retired key still published.
#[derive(Debug, Serialize, ToSchema)]
pub struct RetiredKey {
    /// Its kid.
    pub kid: String,
    /// When it leaves the JWKS (the last expiry of a token it signed).
    pub published_until: String,
}

/// `POST /v1/admin/keys/rotate` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Rotated {
    /// The new active key.
    pub kid: String,
    /// Its algorithm.
    pub alg: String,
    /// Keys that still verify until their tokens expire.
    pub retired: Vec<RetiredKey>,
}

/// Rotates the registry signing key. Tokens signed by the old key keep verifying
/// until they expire; the old key stays in the JWKS until then.
#[utoipa::path(post, path = "/v1/admin/keys/rotate", tag = "admin", security(("api_key" = [])),
    responses((status = 200, body = Rotated), (status = 401), (status = 403)))]
pub async fn rotate_keys(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<ApiJson<Rotated>, ApiError> {
    let alg = state.keys().active.alg();
    let now = state.now_ms();
    let record = new_key_record(alg, now, state.kek())?;
    let audit = audit_change(EventType::KeyRotated, now, Actor::Admin, None, None, |e| {
        e.kid = Some(record.kid.clone());
    })?;
    let kid = record.kid.clone();
    state
        .commit(
            "key rotation",
            Part::SigningKeys,
            Box::new(move |state| {
                Box::pin(async move {
                    state
                        .store
                        .rotate_signing_key(&record, now / 1000, &audit)
                        .await?;
                    Ok(((), Change::SigningKeys))
                })
            }),
        )
        .await?;
    let ring = state.keys();
    tracing::info!(kid = %kid, "registry signing key rotated");
    Ok(ApiJson(Rotated {
        kid: ring.active.kid().to_owned(),
        alg: ring.active.alg().to_string(),
        retired: ring
            .retired
            .iter()
            .map(|(kid, until)| RetiredKey {
                kid: kid.clone(),
                published_until: rfc3339_s(*until),
            })
            .collect(),
    }))
}

/// One admin API key, by its id (never the key).
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminKey {
    /// `sha256:` and the first 8 bytes of the key's SHA-256, in hex.
    #[schema(value_type = crate::openapi::values::AdminKeyId)]
    pub id: String,
    /// When it was added.
    pub created_at: String,
}

/// `GET /v1/admin/api-keys` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminKeys {
    /// Oldest first.
    pub keys: Vec<AdminKey>,
}

/// Lists the admin API keys by id.
#[utoipa::path(get, path = "/v1/admin/api-keys", tag = "admin", security(("api_key" = [])),
    responses((status = 200, body = AdminKeys), (status = 401), (status = 403)))]
pub async fn admin_keys(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
) -> Result<ApiJson<AdminKeys>, ApiError> {
    let keys = state.store.admin_keys().await?;
    Ok(ApiJson(AdminKeys {
        keys: keys
            .iter()
            .map(|k| AdminKey {
                id: k.hash.key_id(),
                created_at: rfc3339_ms(k.created_at_ms),
            })
            .collect(),
    }))
}

/// `POST /v1/admin/api-keys/{id}/revoke` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct AdminKeyRevoked {
    /// The revoked key's id.
    pub id: String,
    /// Always true.
    pub revoked: bool,
}

/// Revokes an admin API key (by its id from the list): it authenticates nothing from
/// the next request on. The last admin key cannot be revoked (409): add another first
/// (`BONAFIDE_ADMIN_KEY` on the next `serve`).
#[utoipa::path(post, path = "/v1/admin/api-keys/{id}/revoke", tag = "admin", security(("api_key" = [])),
    params(("id" = crate::openapi::values::AdminKeyId, Path, description = "`sha256:…` from the list (any other text is a 404)")),
    responses((status = 200, body = AdminKeyRevoked), (status = 401), (status = 403), (status = 404), (status = 409)))]
pub async fn revoke_admin_key(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<AdminKeyRevoked>, ApiError> {
    let keys = state.store.admin_keys().await?;
    let key = keys
        .iter()
        .find(|k| k.hash.key_id() == id)
        .ok_or_else(|| ApiError::not_found("admin key"))?;
    let now = state.now_ms();
    let audit = audit_change(EventType::KeyRevoked, now, Actor::Admin, None, None, |e| {
        e.kid = Some(id.clone());
    })?;
    state.store.revoke_admin_key(&key.hash, now, &audit).await.map_err(|e| match e {
        bonafide_store::StoreError::Conflict(_) => ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::LastAdminKey,
            "the last admin key cannot be revoked: add another first (BONAFIDE_ADMIN_KEY on the next `serve`)",
        ),
        other => other.into(),
    })?;
    state.forget_api_key(&key.hash);
    tracing::info!(%id, "admin key revoked");
    Ok(ApiJson(AdminKeyRevoked { id, revoked: true }))
}

/// `POST /v1/admin/api-keys/revoke` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RevokeByHash {
    /// SHA-256 of the key text, 64 lowercase hex digits (never the key itself: a
    /// leaked key is not sent anywhere again).
    #[schema(pattern = "^[0-9a-f]{64}$")]
    pub key_sha256: String,
    /// Why (recorded in the audit entry; at most 200 characters).
    #[serde(default)]
    pub reason: Option<String>,
}

/// `POST /v1/admin/api-keys/revoke` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyRevoked {
    /// The key's id (`sha256:` + 16 hex).
    pub id: String,
    /// admin, issuer or receiver.
    pub kind: String,
    /// The issuer or receiver it belonged to (none for an admin key).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    /// RFC 3339.
    pub revoked_at: String,
}

/// Revokes any API key by its SHA-256 (admin key): a key found leaked (`bonafide keys
/// scan --revoke`). It authenticates nothing from the next request on, on every
/// replica. 404 for a key this registry never issued or revoked already; 409 for the
/// last admin key.
#[utoipa::path(post, path = "/v1/admin/api-keys/revoke", tag = "admin", request_body = RevokeByHash,
    security(("api_key" = [])),
    responses((status = 200, body = ApiKeyRevoked), (status = 401), (status = 403),
              (status = 404, description = "not a key of this registry, or revoked already"),
              (status = 409, description = "`LAST_ADMIN_KEY`"), (status = 422)))]
pub async fn revoke_by_hash(
    State(state): State<Arc<AppState>>,
    _admin: Admin,
    ApiJson(body): ApiJson<RevokeByHash>,
) -> Result<ApiJson<ApiKeyRevoked>, ApiError> {
    let text = body.key_sha256.trim();
    let mut hash = [0u8; 32];
    let ok = text.len() == 64
        && text
            .as_bytes()
            .chunks(2)
            .zip(hash.iter_mut())
            .all(|(pair, out)| {
                std::str::from_utf8(pair)
                    .ok()
                    .filter(|p| p.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')))
                    .and_then(|p| u8::from_str_radix(p, 16).ok())
                    .map(|v| *out = v)
                    .is_some()
            });
    if !ok {
        return Err(ApiError::invalid(
            "`key_sha256` must be 64 lowercase hex digits (SHA-256 of the key text)",
        ));
    }
    let reason = body
        .reason
        .as_deref()
        .map(|r| check_text("reason", r, 200))
        .transpose()?;
    let hash = bonafide_core::apikey::ApiKeyHash(hash);
    let id = hash.key_id();
    let now = state.now_ms();
    let existing = state.store.api_key(&hash).await?;
    let issuer = existing
        .as_ref()
        .filter(|k| k.kind == KeyKind::Issuer)
        .and_then(|k| k.owner.as_deref())
        .and_then(|o| IssuerId::try_from(o).ok());
    let audit = audit_change(
        EventType::KeyRevoked,
        now,
        Actor::Admin,
        None,
        issuer.as_ref(),
        |e| {
            e.kid = Some(id.clone());
            e.note = reason.clone();
        },
    )?;
    let record = state
        .store
        .revoke_api_key(&hash, now, &audit)
        .await
        .map_err(|e| match e {
            bonafide_store::StoreError::NotFound => {
                ApiError::not_found("API key (or it was revoked already)")
            }
            bonafide_store::StoreError::Conflict(_) => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::LastAdminKey,
                "the last admin key cannot be revoked: add another first",
            ),
            other => other.into(),
        })?;
    state.forget_api_key(&hash);
    tracing::info!(%id, kind = record.kind.as_str(), "API key revoked by hash");
    Ok(ApiJson(ApiKeyRevoked {
        id,
        kind: record.kind.as_str().to_owned(),
        owner: record.owner,
        revoked_at: rfc3339_ms(now),
    }))
}
