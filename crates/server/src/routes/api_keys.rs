//! API keys as objects (issue 18 item 3): many keys per identity, each named,
//! optionally scoped and expiring, listed without the secret, revoked, rotated with a
//! grace period.
//!
//! Who manages which keys: an issuer or receiver key its own identity's keys; a
//! person (owner or admin of the organisation owning the identity) that identity's
//! keys; an admin key every key (it creates the identities, and only it manages admin
//! keys). A key whose scopes narrow it needs `keys:manage`, and makes keys no broader
//! than itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use bonafide_core::apikey::{ApiKey, KeyKind, KeyScope, parse_public_id};
use bonafide_core::audit::{Actor, AuditEntry, EventType};
use bonafide_core::ids::{IssuerId, ReceiverId};
use bonafide_store::{ApiKeyRecord, InheritedLimit, Owned, StoreError};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::{audit_change, check_text, random20};
use crate::accounts::{Permission, PersonAuth};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery, ErrorCode};
use crate::ratelimit::{Limit, Policy};
use crate::state::AppState;
use crate::time::rfc3339_ms;

/// Default grace period of a rotated key: 24 hours.
pub const DEFAULT_GRACE_S: u64 = 86_400;
/// Longest grace period: 30 days.
pub const MAX_GRACE_S: u64 = 30 * 86_400;
/// Longest lifetime asked for a new key: about 10 years.
pub const MAX_EXPIRES_IN_S: u64 = 10 * 366 * 86_400;

/// Whose keys: `admin`, or an issuer or receiver id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyOwner {
    /// The registry's admin keys.
    Admin,
    /// An issuer's keys.
    Issuer(IssuerId),
    /// A receiver's keys.
    Receiver(ReceiverId),
}

impl KeyOwner {
    fn parse(text: &str) -> Result<Self, ApiError> {
        let text = text.trim();
        if text == "admin" {
            return Ok(KeyOwner::Admin);
        }
        if let Ok(id) = IssuerId::try_from(text) {
            return Ok(KeyOwner::Issuer(id));
        }
        if let Ok(id) = ReceiverId::try_from(text) {
            return Ok(KeyOwner::Receiver(id));
        }
        Err(ApiError::invalid(
            "`owner` is `admin`, an issuer id (`iss_…`) or a receiver id (`rcv_…`)",
        ))
    }

    fn of(record: &ApiKeyRecord) -> Result<Self, ApiError> {
        match (record.kind, record.owner.as_deref()) {
            (KeyKind::Admin, _) => Ok(KeyOwner::Admin),
            (KeyKind::Issuer, Some(o)) => IssuerId::try_from(o)
                .map(KeyOwner::Issuer)
                .map_err(|e| ApiError::internal(e.to_string())),
            (KeyKind::Receiver, Some(o)) => ReceiverId::try_from(o)
                .map(KeyOwner::Receiver)
                .map_err(|e| ApiError::internal(e.to_string())),
            _ => Err(ApiError::internal("API key without owner")),
        }
    }

    fn kind(&self) -> KeyKind {
        match self {
            KeyOwner::Admin => KeyKind::Admin,
            KeyOwner::Issuer(_) => KeyKind::Issuer,
            KeyOwner::Receiver(_) => KeyKind::Receiver,
        }
    }

    fn id(&self) -> Option<String> {
        match self {
            KeyOwner::Admin => None,
            KeyOwner::Issuer(id) => Some(id.to_string()),
            KeyOwner::Receiver(id) => Some(id.to_string()),
        }
    }

    fn issuer(&self) -> Option<&IssuerId> {
        match self {
            KeyOwner::Issuer(id) => Some(id),
            _ => None,
        }
    }
}

/// Who is managing keys.
#[derive(Debug)]
pub enum KeyManager {
    /// A key (its record: kind, owner, scopes).
    Key(Arc<ApiKeyRecord>),
    /// A person, by access token.
    Person(Box<PersonAuth>),
}

impl FromRequestParts<Arc<AppState>> for KeyManager {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        use crate::auth::Credential;
        match crate::auth::credential(parts, state).await? {
            Credential::Person(token) => {
                let who = PersonAuth::from_token(state, token).await?;
                crate::request_id::set_acting_person(who.person.id.as_str());
                Ok(KeyManager::Person(Box::new(who)))
            }
            Credential::Key(record) => Ok(KeyManager::Key(record)),
            Credential::Nothing => Err(ApiError::unauthorized(
                "managing API keys needs an API key (`Authorization: Bearer bfk_…` or `X-API-Key`) or a person's access token",
            )),
        }
    }
}

impl KeyManager {
    /// The audit log's actor and the `created_by` of keys it makes: a person, or the
    /// person at the root of the calling key's chain (a key a person made, or made
    /// through keys a person made, makes keys that are that person's too, so removing
    /// them from the organisation revokes the whole chain); else the key's identity.
    fn actor(&self) -> Result<(Actor, String), ApiError> {
        let root = |record: &ApiKeyRecord, own: String| {
            record
                .created_by
                .clone()
                .filter(|c| c.starts_with("usr_"))
                .unwrap_or(own)
        };
        Ok(match self {
            KeyManager::Person(who) => (who.actor(), who.person.id.to_string()),
            KeyManager::Key(record) => match KeyOwner::of(record)? {
                KeyOwner::Admin => (Actor::Admin, "admin".to_owned()),
                KeyOwner::Issuer(id) => (
                    Actor::Issuer { id: id.to_string() },
                    root(record, id.to_string()),
                ),
                KeyOwner::Receiver(id) => (
                    Actor::Receiver { id: id.to_string() },
                    root(record, id.to_string()),
                ),
            },
        })
    }

    /// The identity whose keys it manages when it names none: its own.
    fn default_owner(&self) -> Result<KeyOwner, ApiError> {
        match self {
            KeyManager::Key(record) => KeyOwner::of(record),
            KeyManager::Person(_) => Err(ApiError::invalid(
                "a person names whose keys: `owner` (`iss_…` or `rcv_…`)",
            )),
        }
    }

    /// Whether it may manage `owner`'s keys: 404 for an identity that is not its to
    /// know of, 403 for one it knows but may not manage (the README's table).
    async fn may_manage(&self, state: &AppState, owner: &KeyOwner) -> Result<(), ApiError> {
        match self {
            KeyManager::Key(record) => match (KeyOwner::of(record)?, owner) {
                (KeyOwner::Admin, _) => Ok(()),
                (mine, theirs) if &mine == theirs => Ok(()),
                (_, KeyOwner::Admin) => {
                    Err(ApiError::forbidden("only an admin key manages admin keys"))
                }
                _ => Err(ApiError::not_found("API keys of this identity")),
            },
            KeyManager::Person(who) => {
                let owned = match owner {
                    KeyOwner::Admin => {
                        return Err(ApiError::forbidden("only an admin key manages admin keys"));
                    }
                    KeyOwner::Issuer(id) => Owned::Issuer(id.clone()),
                    KeyOwner::Receiver(id) => Owned::Receiver(id.clone()),
                };
                let org = state
                    .store
                    .owner_org(&owned)
                    .await?
                    .ok_or_else(|| ApiError::not_found("API keys of this identity"))?;
                who.require(state, &org, Permission::CreateResources)
                    .await
                    .map(|_| ())
                    .map_err(|e| {
                        if e.status == StatusCode::NOT_FOUND {
                            ApiError::not_found("API keys of this identity")
                        } else {
                            e
                        }
                    })
            }
        }
    }

    /// The scopes a key it makes may have: a scoped key makes keys no broader than
    /// itself (a missing list inherits its scopes).
    /// A rotation's new key keeps the old one's scopes: a scoped caller may rotate
    /// only a key whose scopes are among its own (an unscoped key has its kind's full
    /// rights, so it is broader than any scoped caller).
    fn may_rotate(&self, old: &ApiKeyRecord) -> Result<(), ApiError> {
        let KeyManager::Key(record) = self else {
            return Ok(());
        };
        let Some(mine) = &record.scopes else {
            return Ok(());
        };
        match &old.scopes {
            Some(theirs) if theirs.iter().all(|s| mine.contains(s)) => Ok(()),
            _ => Err(ApiError::forbidden(format!(
                "a key with scopes ({}) cannot rotate a broader key",
                mine.join(" ")
            ))),
        }
    }

    /// The latest a key this caller makes may live: a key never outlives the key
    /// that made it (people and admin keys without expiry: no bound).
    fn expiry_bound(&self) -> Option<i64> {
        match self {
            KeyManager::Key(record) => record.expires_at_ms,
            _ => None,
        }
    }

    fn grant(&self, asked: Option<Vec<String>>) -> Result<Option<Vec<String>>, ApiError> {
        let asked = asked.map(check_scopes).transpose()?;
        let KeyManager::Key(record) = self else {
            return Ok(asked);
        };
        let Some(mine) = &record.scopes else {
            return Ok(asked);
        };
        match asked {
            None => Ok(Some(mine.clone())),
            Some(asked) => {
                if let Some(extra) = asked.iter().find(|s| !mine.contains(s)) {
                    return Err(ApiError::forbidden(format!(
                        "a key with scopes ({}) cannot make a key with `{extra}`",
                        mine.join(" ")
                    )));
                }
                Ok(Some(asked))
            }
        }
    }
}

/// Known scope names, each once, in the catalogue's order; at least one.
fn check_scopes(asked: Vec<String>) -> Result<Vec<String>, ApiError> {
    let mut scopes = Vec::new();
    for name in &asked {
        let scope = KeyScope::parse(name.trim()).ok_or_else(|| {
            ApiError::invalid(format!(
                "unknown scope `{}`; scopes are {}",
                name.chars().take(64).collect::<String>(),
                KeyScope::ALL.map(KeyScope::as_str).join(", ")
            ))
        })?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    if scopes.is_empty() {
        return Err(ApiError::invalid(
            "`scopes` lists at least one scope; leave it out for the kind's full rights",
        ));
    }
    scopes.sort();
    Ok(scopes.into_iter().map(|s| s.as_str().to_owned()).collect())
}

/// A key as the API shows it: never the secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyView {
    /// `key_` and 16 hex digits: the key's public id (also its OAuth `client_id`).
    pub id: String,
    /// Its label.
    pub name: String,
    /// `admin`, `issuer` or `receiver`.
    pub kind: String,
    /// `admin`, or the issuer or receiver it speaks for.
    pub owner: String,
    /// Scopes narrowing it; absent: its kind's full rights.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scopes: Option<Vec<String>>,
    /// `active`, `rotating` (replaced, in its grace period), `expired` or `revoked`.
    pub state: String,
    /// `usr_…` (the person who made it, directly or through keys they made),
    /// `admin`, `bootstrap`, or the `iss_…`/`rcv_…` whose key made it when no person
    /// is at the root of that key's chain; absent when unknown (an organisation's
    /// first keys from before keys record it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    /// RFC 3339.
    pub created_at: String,
    /// When it stops working (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<String>,
    /// Last authenticated request, to about a minute (RFC 3339).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<String>,
    /// RFC 3339.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<String>,
    /// The key it replaced.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated_from: Option<String>,
    /// The key that replaced it (in the same listing).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rotated_to: Option<String>,
}

fn view(record: &ApiKeyRecord, rotated_to: Option<String>, now_ms: i64) -> ApiKeyView {
    let state = if record.revoked_at_ms.is_some() {
        "revoked"
    } else if !record.live_at(now_ms) {
        "expired"
    } else if rotated_to.is_some() {
        "rotating"
    } else {
        "active"
    };
    ApiKeyView {
        id: record.hash.public_id(),
        name: record.name.clone(),
        kind: record.kind.as_str().to_owned(),
        owner: record.owner.clone().unwrap_or_else(|| "admin".to_owned()),
        scopes: record.scopes.clone(),
        state: state.to_owned(),
        created_by: record.created_by.clone(),
        created_at: rfc3339_ms(record.created_at_ms),
        expires_at: record.expires_at_ms.map(rfc3339_ms),
        last_used_at: record.last_used_at_ms.map(rfc3339_ms),
        revoked_at: record.revoked_at_ms.map(rfc3339_ms),
        rotated_from: record.rotated_from.clone(),
        rotated_to,
    }
}

/// `POST /v1/api-keys` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateApiKey {
    /// A label (at most 100 characters).
    pub name: String,
    /// Whose key: `admin`, `iss_…` or `rcv_…`; default: the calling key's identity
    /// (a person must name one).
    #[serde(default)]
    pub owner: Option<String>,
    /// Scopes narrowing it (`read`, `write`, `tokens:issue`, `verify`, `events`,
    /// `audit:read`, `keys:manage`); absent: its kind's full rights.
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// Seconds until it expires (1 to about 10 years); absent: never.
    #[serde(default)]
    pub expires_in_seconds: Option<u64>,
}

/// `POST /v1/api-keys` and rotation answer. `secret` is shown once.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyCreated {
    /// The new key.
    pub key: ApiKeyView,
    /// The key itself (`bfk_…`). Store it now: it cannot be shown again.
    pub secret: String,
    /// On rotation: the old key, with the end of its grace period as `expires_at`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous: Option<ApiKeyView>,
}

/// A fresh key and its record; a new public id clashing with a stored one (a 2^-64
/// chance per key) is a 409 to retry, never a silent overwrite.
fn fresh(kind: KeyKind) -> Result<ApiKey, ApiError> {
    Ok(ApiKey::from_random(kind, random20()?))
}

fn store_conflict(e: StoreError) -> ApiError {
    match e {
        StoreError::Conflict(bonafide_store::ConflictKind::TooManyKeys) => ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::Conflict,
            "this identity has as many live API keys as the registry allows (`--max-keys-per-identity`, keys in a grace period included): revoke one first, or rotate with `grace_seconds: 0`",
        ),
        StoreError::Conflict(bonafide_store::ConflictKind::MakerNotMember) => ApiError::forbidden(
            "the person whose key this request uses is no longer a member of the organisation that owns it: their keys are being revoked",
        ),
        StoreError::Conflict(bonafide_store::ConflictKind::LastAdminKey) => ApiError::new(
            StatusCode::CONFLICT,
            ErrorCode::LastAdminKey,
            "the last admin key cannot be revoked: create another admin key first (`bonafide keys create --owner admin`)",
        ),
        other => other.into(),
    }
}

/// The cap on live keys of `owner` (admin keys: none).
fn key_cap(state: &AppState, owner: &KeyOwner) -> Option<u32> {
    match owner {
        KeyOwner::Admin => None,
        _ => state.config.max_keys_per_identity,
    }
}

/// The limit a key of `kind` runs at when no per-key limit is set.
fn default_limit(state: &AppState, kind: KeyKind) -> Limit {
    state.limiter.limits().get(match kind {
        KeyKind::Admin => Policy::Admin,
        KeyKind::Issuer => Policy::Issuer,
        KeyKind::Receiver => Policy::Receiver,
    })
}

/// Whether `a` allows fewer requests a second than `b`.
fn slower(a: Limit, b: Limit) -> bool {
    // a.quota / a.window_s against b.quota / b.window_s, without division.
    u128::from(a.quota) * u128::from(b.window_s) < u128::from(b.quota) * u128::from(a.window_s)
}

/// The per-key rate limit `new` inherits, for the store to decide and set in the
/// transaction that stores the key (so a crash cannot leave the key without it, and a
/// limit set meanwhile on any replica is seen): the slowest of the effective limits of
/// `bounds` (a key's setting as stored, else its kind's default) and, for a key made
/// (`capped`), the new key's own kind's default: a key makes keys no faster than
/// itself, and a raised limit is not passed on; a rotation keeps the rotated key's.
/// Set (and audited) only when it differs from the new key's default. `set` tells,
/// after the store's call, whether it was.
fn inherited(
    state: &AppState,
    new: &ApiKeyRecord,
    bounds: &[&ApiKeyRecord],
    capped: bool,
    actor: &Actor,
    now: i64,
) -> (InheritedLimit, Arc<AtomicBool>) {
    let own = default_limit(state, new.kind);
    let sources: Vec<(String, Limit)> = bounds
        .iter()
        .map(|k| (k.hash.public_id(), default_limit(state, k.kind)))
        .collect();
    let id = new.hash.key_id();
    let name = crate::ratelimit::key_setting(&id);
    let mut entry = AuditEntry::new(EventType::RateLimitSet, now, actor.clone());
    entry.request_id = Some(crate::request_id::current().to_string());
    entry.person = crate::request_id::acting_person();
    entry.target = Some(name.clone());
    entry.kid = Some(id);
    let set = Arc::new(AtomicBool::new(false));
    let told = Arc::clone(&set);
    let decide = move |stored: &[Option<String>]| {
        // A stored value that does not parse is ignored by every limiter (the kind's
        // default applies), so it counts as the default here too.
        let mut lowest: Option<(Limit, &str)> = capped.then_some((own, "the kind's default"));
        for ((from, default), value) in sources.iter().zip(stored) {
            let limit = value
                .as_deref()
                .and_then(|v| Limit::parse(v).ok())
                .unwrap_or(*default);
            if lowest.is_none_or(|(l, _)| slower(limit, l)) {
                lowest = Some((limit, from.as_str()));
            }
        }
        let inherited = lowest.filter(|(l, _)| *l != own);
        told.store(inherited.is_some(), Ordering::Relaxed);
        let Some((limit, from)) = inherited else {
            return Ok(None);
        };
        let value = limit.to_string();
        let mut entry = entry.clone();
        entry.note = Some(format!("{value}, inherited from {from}"));
        let record = crate::audit::record(&entry, None, None)
            .map_err(|e| StoreError::Backend(format!("inherited limit's audit entry: {e}")))?;
        Ok(Some((value, record)))
    };
    let limit = InheritedLimit {
        name,
        from: bounds
            .iter()
            .map(|k| crate::ratelimit::key_setting(&k.hash.key_id()))
            .collect(),
        decide: Box::new(decide),
    };
    (limit, set)
}

/// After a key's store call: if it set an inherited limit, this replica applies it
/// before the secret is answered (nobody holds the key until then); other replicas
/// within `key_refresh`.
async fn apply_inherited(state: &AppState, set: &AtomicBool) {
    // The key is committed: its secret must reach the caller whatever happens here.
    // A reread that fails leaves the limit to the next periodic one (`key_refresh`).
    if set.load(Ordering::Relaxed)
        && let Err(e) = state.limiter.load_overrides(state.store.as_ref()).await
    {
        tracing::warn!(error = %e, "inherited rate limit not reread now; the next refresh applies it");
    }
}

/// Creates an API key. The answer holds the key once; the registry keeps only its
/// SHA-256.
#[utoipa::path(post, path = "/v1/api-keys", tag = "keys", request_body = CreateApiKey,
    security(("api_key" = [])),
    responses((status = 201, body = ApiKeyCreated), (status = 401), (status = 403), (status = 404),
              (status = 409, description = "`CONFLICT`: the identity has as many live keys as allowed (`--max-keys-per-identity`), or a new id clashed (retry)"), (status = 422)))]
pub async fn create(
    State(state): State<Arc<AppState>>,
    who: KeyManager,
    ApiJson(body): ApiJson<CreateApiKey>,
) -> Result<(StatusCode, ApiJson<ApiKeyCreated>), ApiError> {
    let name = check_text("name", &body.name, 100)?;
    let owner = match body.owner.as_deref() {
        Some(o) => KeyOwner::parse(o)?,
        None => who.default_owner()?,
    };
    let scopes = who.grant(body.scopes)?;
    let now = state.now_ms();
    let expires_at_ms = match body.expires_in_seconds {
        None => None,
        Some(s) if (1..=MAX_EXPIRES_IN_S).contains(&s) => {
            Some(now.saturating_add(i64::try_from(s * 1000).unwrap_or(i64::MAX)))
        }
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "`expires_in_seconds` is 1 to {MAX_EXPIRES_IN_S}"
            )));
        }
    };
    who.may_manage(&state, &owner).await?;
    let (actor, created_by) = who.actor()?;
    let key = fresh(owner.kind())?;
    let mut record = ApiKeyRecord::new(
        key.hash(),
        owner.kind(),
        owner.id(),
        &name,
        &created_by,
        now,
    );
    record.scopes = scopes;
    // A key never outlives the key that made it.
    record.expires_at_ms = match (expires_at_ms, who.expiry_bound()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    let id = record.hash.public_id();
    let audit = audit_change(
        EventType::KeyAdded,
        now,
        actor.clone(),
        None,
        owner.issuer(),
        |e| {
            e.kid = Some(id.clone());
            e.target = Some(owner.id().unwrap_or_else(|| "admin".to_owned()));
            e.note = Some(format!("API key created: {name}"));
        },
    )?;
    // A key makes keys no faster than itself (a person's keys start at the default).
    let inheritance = match &who {
        KeyManager::Key(maker) => Some(inherited(
            &state,
            &record,
            &[maker.as_ref()],
            true,
            &actor,
            now,
        )),
        KeyManager::Person(_) => None,
    };
    state
        .store
        .create_api_key(
            &record,
            key_cap(&state, &owner),
            inheritance.as_ref().map(|(l, _)| l),
            &audit,
        )
        .await
        .map_err(store_conflict)?;
    if let Some((_, set)) = &inheritance {
        apply_inherited(&state, set).await;
    }
    tracing::info!(%id, kind = record.kind.as_str(), "API key created");
    Ok((
        StatusCode::CREATED,
        ApiJson(ApiKeyCreated {
            key: view(&record, None, now),
            secret: key.expose_secret().to_owned(),
            previous: None,
        }),
    ))
}

/// `GET /v1/api-keys` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Whose keys: `admin`, `iss_…` or `rcv_…`; default: the calling key's identity.
    pub owner: Option<String>,
}

/// `GET /v1/api-keys` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyList {
    /// Oldest first, revoked and expired ones too.
    pub keys: Vec<ApiKeyView>,
}

/// Lists an identity's API keys (never the secrets), with their rotation state.
#[utoipa::path(get, path = "/v1/api-keys", tag = "keys", params(ListQuery),
    security(("api_key" = [])),
    responses((status = 200, body = ApiKeyList), (status = 401), (status = 403), (status = 404),
              (status = 422)))]
pub async fn list(
    State(state): State<Arc<AppState>>,
    who: KeyManager,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<ApiJson<ApiKeyList>, ApiError> {
    let owner = match query.owner.as_deref() {
        Some(o) => KeyOwner::parse(o)?,
        None => who.default_owner()?,
    };
    who.may_manage(&state, &owner).await?;
    let records = state
        .store
        .api_keys_of(owner.kind(), owner.id().as_deref())
        .await?;
    let now = state.now_ms();
    let keys = records
        .iter()
        .map(|r| {
            let id = r.hash.public_id();
            let next = records
                .iter()
                .find(|n| n.rotated_from.as_deref() == Some(id.as_str()))
                .map(|n| n.hash.public_id());
            view(r, next, now)
        })
        .collect();
    Ok(ApiJson(ApiKeyList { keys }))
}

/// The key a path names, and its owner, if the caller may manage it.
async fn named(
    state: &AppState,
    who: &KeyManager,
    id: &str,
) -> Result<(ApiKeyRecord, KeyOwner), ApiError> {
    let prefix = parse_public_id(id).ok_or_else(|| ApiError::not_found("API key"))?;
    let record = state
        .store
        .api_key_by_prefix(&prefix)
        .await?
        .ok_or_else(|| ApiError::not_found("API key"))?;
    let owner = KeyOwner::of(&record)?;
    who.may_manage(state, &owner).await.map_err(|e| {
        // Another identity's key: as if it did not exist.
        if e.status == StatusCode::NOT_FOUND {
            ApiError::not_found("API key")
        } else {
            e
        }
    })?;
    Ok((record, owner))
}

/// `POST /v1/api-keys/{id}/revoke` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApiKeyRevokedView {
    /// The key as it is now.
    pub key: ApiKeyView,
}

/// Revokes an API key: it authenticates nothing from the next request on, on every
/// replica. The last live admin key cannot be revoked (409 `LAST_ADMIN_KEY`).
#[utoipa::path(post, path = "/v1/api-keys/{id}/revoke", tag = "keys",
    params(("id" = String, Path, description = "`key_…` (any other text is a 404)")),
    security(("api_key" = [])),
    responses((status = 200, body = ApiKeyRevokedView), (status = 401), (status = 403),
              (status = 404, description = "unknown, not the caller's, or revoked already"),
              (status = 409, description = "`LAST_ADMIN_KEY`")))]
pub async fn revoke(
    State(state): State<Arc<AppState>>,
    who: KeyManager,
    ApiPath(id): ApiPath<String>,
) -> Result<ApiJson<ApiKeyRevokedView>, ApiError> {
    let (record, owner) = named(&state, &who, &id).await?;
    if record.revoked_at_ms.is_some() {
        return Err(ApiError::not_found("API key (revoked already)"));
    }
    let (actor, _) = who.actor()?;
    let now = state.now_ms();
    let audit = audit_change(
        EventType::KeyRevoked,
        now,
        actor,
        None,
        owner.issuer(),
        |e| {
            e.kid = Some(id.clone());
            e.target = Some(owner.id().unwrap_or_else(|| "admin".to_owned()));
        },
    )?;
    let revoked = state
        .store
        .revoke_api_key(&record.hash, now, &audit)
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found("API key (revoked already)"),
            other => store_conflict(other),
        })?;
    state.forget_api_key(&record.hash);
    tracing::info!(%id, "API key revoked");
    let shown = ApiKeyRecord {
        revoked_at_ms: Some(now),
        ..revoked
    };
    Ok(ApiJson(ApiKeyRevokedView {
        key: view(&shown, None, now),
    }))
}

/// `POST /v1/api-keys/{id}/rotate` body.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateApiKey {
    /// How long the old key keeps working, in seconds (0 to 30 days; default 24 h).
    #[serde(default)]
    pub grace_seconds: Option<u64>,
}

/// Rotates an API key: a new key with the same name, kind, owner and scopes (shown
/// once), and the old one working until its grace period ends. Both are listed.
#[utoipa::path(post, path = "/v1/api-keys/{id}/rotate", tag = "keys", request_body = RotateApiKey,
    params(("id" = String, Path, description = "`key_…` (any other text is a 404)")),
    security(("api_key" = [])),
    responses((status = 201, body = ApiKeyCreated), (status = 401), (status = 403),
              (status = 404, description = "unknown, not the caller's, revoked or expired"),
              (status = 409, description = "`CONFLICT`: the identity has as many live keys as allowed (`--max-keys-per-identity`); rotate with `grace_seconds: 0` or revoke one"),
              (status = 422)))]
pub async fn rotate(
    State(state): State<Arc<AppState>>,
    who: KeyManager,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<RotateApiKey>,
) -> Result<(StatusCode, ApiJson<ApiKeyCreated>), ApiError> {
    let grace = body.grace_seconds.unwrap_or(DEFAULT_GRACE_S);
    if grace > MAX_GRACE_S {
        return Err(ApiError::invalid(format!(
            "`grace_seconds` is 0 to {MAX_GRACE_S}"
        )));
    }
    let (old, owner) = named(&state, &who, &id).await?;
    let now = state.now_ms();
    if !old.live_at(now) {
        return Err(ApiError::not_found("API key (revoked or expired)"));
    }
    // A scoped caller rotates only keys no broader than itself.
    who.may_rotate(&old)?;
    let (actor, created_by) = who.actor()?;
    let key = fresh(old.kind)?;
    let mut record = ApiKeyRecord::new(
        key.hash(),
        old.kind,
        old.owner.clone(),
        &old.name,
        &created_by,
        now,
    );
    record.scopes = old.scopes.clone();
    // The new key expires when the old one would have (rotation is no way out of an
    // expiry), and never after the key that rotates it.
    record.expires_at_ms = match (old.expires_at_ms, who.expiry_bound()) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    };
    record.rotated_from = Some(id.clone());
    let new_id = record.hash.public_id();
    let grace_end = now.saturating_add(i64::try_from(grace * 1000).unwrap_or(i64::MAX));
    let audit = audit_change(
        EventType::KeyRotated,
        now,
        actor.clone(),
        None,
        owner.issuer(),
        |e| {
            e.kid = Some(new_id.clone());
            e.target = Some(owner.id().unwrap_or_else(|| "admin".to_owned()));
            e.note = Some(format!(
                "API key {id} rotated; it works until {}",
                rfc3339_ms(grace_end)
            ));
        },
    )?;
    // The new key keeps the old one's limit, and no more than a rotating key's own.
    let bounds: Vec<&ApiKeyRecord> = match &who {
        KeyManager::Key(by) => vec![&old, by.as_ref()],
        KeyManager::Person(_) => vec![&old],
    };
    let (limit, set) = inherited(&state, &record, &bounds, false, &actor, now);
    let previous = state
        .store
        .rotate_api_key(
            &old.hash,
            &record,
            grace_end,
            now,
            key_cap(&state, &owner),
            Some(&limit),
            &audit,
        )
        .await
        .map_err(|e| match e {
            StoreError::NotFound => ApiError::not_found("API key (revoked or expired)"),
            other => store_conflict(other),
        })?;
    apply_inherited(&state, &set).await;
    state.forget_api_key(&old.hash);
    tracing::info!(old = %id, new = %new_id, "API key rotated");
    Ok((
        StatusCode::CREATED,
        ApiJson(ApiKeyCreated {
            key: view(&record, None, now),
            secret: key.expose_secret().to_owned(),
            previous: Some(view(&previous, Some(new_id), now)),
        }),
    ))
}

/// Revokes the live keys `person` created for identities `org` owns, each with its
/// audit entry (a person removed from an organisation: what they made for it stops
/// working). Runs after the removal commits, one key at a time; a key revoked
/// meanwhile by someone else is skipped.
pub async fn revoke_created_by(
    state: &AppState,
    org: &bonafide_core::ids::OrgId,
    person: &bonafide_core::ids::PersonId,
    actor: Actor,
    now_ms: i64,
) -> Result<usize, ApiError> {
    let owned = state.store.org_owned(org).await?;
    let mut revoked = 0;
    for record in state.store.api_keys_created_by(person.as_str()).await? {
        let owner = KeyOwner::of(&record)?;
        let ours = match &owner {
            KeyOwner::Admin => false,
            KeyOwner::Issuer(id) => owned.contains(&Owned::Issuer(id.clone())),
            KeyOwner::Receiver(id) => owned.contains(&Owned::Receiver(id.clone())),
        };
        if ours && revoke_departed(state, &record, actor.clone(), now_ms).await? {
            revoked += 1;
        }
    }
    if revoked > 0 {
        tracing::info!(%person, revoked, "API keys of a removed member revoked");
    }
    Ok(revoked)
}

/// Revokes one key whose maker left the organisation owning it (audited, naming
/// them); `false` if it was revoked already.
async fn revoke_departed(
    state: &AppState,
    record: &ApiKeyRecord,
    actor: Actor,
    now_ms: i64,
) -> Result<bool, ApiError> {
    let owner = KeyOwner::of(record)?;
    let id = record.hash.public_id();
    let maker = record.created_by.clone().unwrap_or_default();
    let audit = audit_change(
        EventType::KeyRevoked,
        now_ms,
        actor,
        None,
        owner.issuer(),
        |e| {
            e.kid = Some(id.clone());
            e.target = owner.id();
            e.note = Some(format!(
                "its creator {maker} was removed from the organisation"
            ));
        },
    )?;
    match state
        .store
        .revoke_api_key(&record.hash, now_ms, &audit)
        .await
    {
        Ok(_) => {
            state.forget_api_key(&record.hash);
            Ok(true)
        }
        Err(StoreError::NotFound) => Ok(false),
        Err(e) => Err(e.into()),
    }
}

/// Finishes removals whose revocations did not all happen (the store failed, the
/// process stopped): every minute, the keys whose maker is no longer a member of the
/// organisation owning them are revoked, so none outlives a removal for long
/// whatever happened to the request that made it.
pub async fn sweep_departed(state: std::sync::Arc<AppState>) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let found = match state.store.api_keys_of_departed_makers(1000).await {
            Ok(found) => found,
            Err(e) => {
                tracing::warn!(error = %e, "could not look for keys of removed members");
                continue;
            }
        };
        let now_ms = state.now_ms();
        for record in found.iter().filter(|r| r.live_at(now_ms)) {
            match revoke_departed(&state, record, Actor::Registry, now_ms).await {
                Ok(true) => {
                    tracing::info!(key = %record.hash.public_id(), "a removed member's key revoked by the sweep")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %e.message, "could not revoke a removed member's key")
                }
            }
        }
    }
}

// ---- OAuth 2.0 client credentials (RFC 6749 §4.4)

/// `POST /v1/oauth/token` parameters (form or JSON), for the OpenAPI document.
#[derive(Debug, ToSchema)]
#[allow(dead_code)] // the schema only: the handler reads the parameters itself
pub struct ClientCredentialsRequest {
    /// `client_credentials`, or `refresh_token` to rotate a refresh token.
    pub grant_type: String,
    /// The key's id (`key_…`), unless sent as HTTP Basic (with `refresh_token`, the
    /// family's key's: a key authenticates on refresh too).
    pub client_id: Option<String>,
    /// The key (`bfk_…`), unless sent as HTTP Basic (with `refresh_token`, the
    /// family's key).
    pub client_secret: Option<String>,
    /// With `grant_type=refresh_token`: the refresh token last received (`bfr_…`).
    pub refresh_token: Option<String>,
}

/// `POST /v1/oauth/token` answer (RFC 6749 §5.1).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyAccessToken {
    /// An RFC 9068 access token (`typ at+jwt`) for the key: `sub` and `client_id` are
    /// its id, `sid` its session. Use it as `Authorization: Bearer …` wherever the key
    /// works.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds (900).
    pub expires_in: i64,
    /// Opaque (`bfr_…`), single use: `grant_type=refresh_token` gives a new pair. One
    /// used twice ends the session (every token of this exchange); revoking or
    /// expiring the key ends it too.
    pub refresh_token: String,
    /// Seconds the refresh token lives (7 days, never past the session's 30-day end).
    pub refresh_expires_in: i64,
}

/// The client's id and secret: HTTP Basic (RFC 6749 §2.3.1, each part form-encoded,
/// which key ids and keys never need) or the body, not both.
fn client_credentials(
    headers: &axum::http::HeaderMap,
    params: &[(String, String)],
) -> Result<(String, String), crate::routes::token_exchange::OAuthError> {
    use crate::routes::token_exchange::OAuthError;
    use base64::Engine;
    let in_body = (one(params, "client_id")?, one(params, "client_secret")?);
    let basic = match headers.get(axum::http::header::AUTHORIZATION) {
        None => None,
        Some(v) => {
            let v = v.to_str().ok().and_then(|v| v.split_once(' '));
            let Some((_, rest)) = v.filter(|(s, _)| s.eq_ignore_ascii_case("basic")) else {
                return Err(invalid_client(
                    "use HTTP Basic or the body for client credentials",
                ));
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(rest.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| invalid_client("malformed HTTP Basic credentials"))?;
            let (id, secret) = decoded
                .split_once(':')
                .ok_or_else(|| invalid_client("malformed HTTP Basic credentials"))?;
            Some((id.to_owned(), secret.to_owned()))
        }
    };
    match (basic, in_body) {
        (Some(pair), (None, None)) => Ok(pair),
        (None, (Some(id), Some(secret))) => Ok((id, secret)),
        (Some(_), _) => Err(OAuthError::request(
            "client credentials both in HTTP Basic and in the body: use one",
        )),
        _ => Err(invalid_client(
            "client authentication needed: client_id (the key's id, `key_…`) and client_secret (the key)",
        )),
    }
}

fn invalid_client(description: &str) -> crate::routes::token_exchange::OAuthError {
    let mut e = crate::routes::token_exchange::OAuthError::new(
        "invalid_client",
        ErrorCode::Unauthorized,
        description,
    );
    e.status = StatusCode::UNAUTHORIZED;
    e
}

/// A parameter given at most once (RFC 6749 §3.2: none may repeat).
fn one(
    params: &[(String, String)],
    name: &str,
) -> Result<Option<String>, crate::routes::token_exchange::OAuthError> {
    let mut found = params.iter().filter(|(k, _)| k == name);
    let first = found.next().map(|(_, v)| v.clone());
    if found.next().is_some() {
        return Err(crate::routes::token_exchange::OAuthError::request(format!(
            "`{name}` is repeated"
        )));
    }
    Ok(first)
}

/// Exchanges an API key for a short-lived access token and a refresh token (OAuth 2.0
/// client credentials, RFC 6749 §4.4): `grant_type=client_credentials`, the key's id as
/// `client_id`, the key as `client_secret` (form body or HTTP Basic); each exchange
/// starts a session (a refresh-token family). `grant_type=refresh_token` (RFC 6749 §6)
/// rotates a refresh token by the rule people's sessions follow: a new pair, the old
/// token used up, a token used twice revoking its whole family (and recorded as a
/// security event). The token is worth what the key is, checked again on each use:
/// revoking or expiring the key ends its tokens and its sessions.
#[utoipa::path(post, path = "/v1/oauth/token", tag = "keys",
    request_body(content = ClientCredentialsRequest, content_type = "application/x-www-form-urlencoded",
        description = "RFC 6749 §4.4.2 or §6 parameters (client credentials in the body or as HTTP Basic); a JSON object with the same members is accepted too"),
    responses((status = 200, body = KeyAccessToken),
              (status = 400, body = crate::routes::token_exchange::OAuthErrorBody, description = "`{error, error_description, code, request_id}` (RFC 6749 §5.2): unsupported_grant_type, invalid_request, invalid_scope, invalid_grant (an unknown, expired or reused refresh token, or an ended session)"),
              (status = 401, body = crate::routes::token_exchange::OAuthErrorBody, description = "invalid_client: unknown, revoked or expired key, or an id that is not the key's")))]
pub async fn oauth_token(
    State(state): State<Arc<AppState>>,
    req: axum::extract::Request,
) -> Result<axum::response::Response, crate::routes::token_exchange::OAuthError> {
    use crate::routes::token_exchange::{OAuthError, parameters};
    let headers = req.headers().clone();
    let ip = crate::routes::auth_sessions::client_ip(&state, req.extensions(), &headers)
        .map(|a| a.to_string());
    let params = parameters(req, &state).await?;
    let grant = one(&params, "grant_type")?;
    if one(&params, "scope")?.is_some() {
        return Err(OAuthError::new(
            "invalid_scope",
            ErrorCode::InvalidRequest,
            "tokens carry their key's own scopes: narrow with a scoped key (`POST /v1/api-keys` with `scopes`)",
        ));
    }
    match grant.as_deref() {
        Some("client_credentials") => {
            if one(&params, "refresh_token")?.is_some() {
                return Err(OAuthError::request(
                    "`refresh_token` goes with grant_type=refresh_token",
                ));
            }
            exchange_key(&state, &headers, &params, ip).await
        }
        Some("refresh_token") => refresh_key_session(&state, &headers, &params, ip).await,
        Some(other) => Err(OAuthError::new(
            "unsupported_grant_type",
            ErrorCode::InvalidRequest,
            format!(
                "grant_type `{}` is not taken here: use client_credentials or refresh_token",
                other.chars().take(64).collect::<String>()
            ),
        )),
        None => Err(OAuthError::request("`grant_type` is missing")),
    }
}

/// The answer with a session's tokens, never cached (RFC 6749 §5.1).
fn key_tokens(
    state: &AppState,
    session: &bonafide_store::Session,
    refresh: String,
    now: i64,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let token = crate::accounts::access_token(state, session, now)?;
    let mut resp = ApiJson(KeyAccessToken {
        access_token: token,
        token_type: "Bearer".to_owned(),
        expires_in: crate::accounts::ACCESS_TTL_S,
        refresh_token: refresh,
        refresh_expires_in: (session.expires_at_ms - now).max(0) / 1000,
    })
    .into_response();
    resp.headers_mut().insert(
        axum::http::header::CACHE_CONTROL,
        axum::http::HeaderValue::from_static("no-store"),
    );
    Ok(resp)
}

/// `grant_type=client_credentials`: checks the key and starts its session.
async fn exchange_key(
    state: &Arc<AppState>,
    headers: &axum::http::HeaderMap,
    params: &[(String, String)],
    ip: Option<String>,
) -> Result<axum::response::Response, crate::routes::token_exchange::OAuthError> {
    use crate::routes::token_exchange::OAuthError;
    let (client_id, secret) = client_credentials(headers, params)?;
    let key = ApiKey::parse(secret.trim())
        .map_err(|_| invalid_client("client_secret is not an API key"))?;
    let hash = key.hash();
    let now = state.now_ms();
    let record = state
        .api_key(&hash)
        .await
        .map_err(|e| OAuthError::from(ApiError::from(e)))?
        .filter(|r| bonafide_core::ct_eq(&r.hash.0, &hash.0) && r.live_at(now))
        .ok_or_else(|| invalid_client("unknown, revoked or expired API key"))?;
    let id = record.hash.public_id();
    if client_id.trim() != id {
        return Err(invalid_client("client_id is not this key's id"));
    }
    // Each exchange stores a session and an audit entry: it spends the key's own
    // bucket (the limiter saw no key in the headers and charged only the address), so
    // a key cannot grow the log faster than its limit.
    crate::ratelimit::charge_key(state, record.kind, hash)
        .await
        .map_err(OAuthError::from)?;
    state.note_key_use(&hash);
    let (refresh, refresh_hash) = crate::accounts::new_secret("bfr_")?;
    let session = bonafide_store::Session {
        id: bonafide_core::ids::SessionId::from_random(crate::routes::random16()?),
        subject: bonafide_store::SessionSubject::Key(hash),
        client_id: id.clone(),
        two_factor: false,
        ip,
        user_agent: headers
            .get(axum::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().filter(|c| !c.is_control()).take(200).collect()),
        created_at_ms: now,
        last_used_ms: now,
        expires_at_ms: now + crate::accounts::REFRESH_TTL_MS,
        revoked_at_ms: None,
        revoke_reason: None,
    };
    let actor = crate::auth::caller_of_record(&record)?.actor();
    let audit = crate::routes::accounts::account_audit(
        EventType::SessionCreated,
        now,
        actor,
        None,
        None,
        |e| {
            e.target = Some(session.id.to_string());
            e.kid = Some(id.clone());
            e.note = Some("client_credentials".into());
        },
    )?;
    let new = bonafide_store::NewRefresh {
        hash: refresh_hash,
        expires_at_ms: session.expires_at_ms,
    };
    state
        .store
        .create_session(&session, &new, &audit)
        .await
        .map_err(|e| OAuthError::from(ApiError::from(e)))?;
    Ok(key_tokens(state, &session, refresh, now)?)
}

/// `grant_type=refresh_token`: rotates a key's refresh token (the rule of
/// `auth_sessions::rotate_family`), the client authenticated as the family's key.
async fn refresh_key_session(
    state: &Arc<AppState>,
    headers: &axum::http::HeaderMap,
    params: &[(String, String)],
    ip: Option<String>,
) -> Result<axum::response::Response, crate::routes::token_exchange::OAuthError> {
    use crate::routes::auth_sessions::{Family, rotate_family};
    use crate::routes::token_exchange::OAuthError;
    let presented = one(params, "refresh_token")?
        .ok_or_else(|| OAuthError::request("`refresh_token` is missing"))?;
    // A key is a confidential client: it authenticates on refresh too (RFC 6749 §6),
    // so a refresh token leaked alone is worth nothing. Checked before the token is
    // used up: a wrong client must neither burn nor, sending it again, revoke a family.
    let (id, secret) = client_credentials(headers, params)?;
    let family = state
        .store
        .refresh_token(&crate::accounts::sha256(presented.trim()))
        .await
        .map_err(|e| OAuthError::from(ApiError::from(e)))?
        .and_then(|r| r.session.key().copied());
    if let Some(family) = family {
        let same_key = ApiKey::parse(secret.trim())
            .is_ok_and(|k| bonafide_core::ct_eq(&k.hash().0, &family.0));
        if id.trim() != family.public_id() || !same_key {
            return Err(invalid_client(
                "the client credentials are not this refresh token's key",
            ));
        }
        // Each refresh writes an audit entry: it spends the key's own bucket, as the
        // exchange does.
        if let Some(record) = state
            .api_key(&family)
            .await
            .map_err(|e| OAuthError::from(ApiError::from(e)))?
        {
            crate::ratelimit::charge_key(state, record.kind, family)
                .await
                .map_err(OAuthError::from)?;
        }
    }
    let rotated = rotate_family(state, &presented, Family::Key, ip)
        .await
        .map_err(|e| {
            if e.status == StatusCode::UNAUTHORIZED {
                OAuthError::new(
                    "invalid_grant",
                    ErrorCode::Unauthorized,
                    format!("{}: exchange the key again", e.message),
                )
            } else {
                OAuthError::from(e)
            }
        })?;
    if let Some(key) = &rotated.key {
        state.note_key_use(&key.hash);
    }
    let now = state.now_ms();
    Ok(key_tokens(state, &rotated.session, rotated.refresh, now)?)
}
