//! API-key authentication as extractors with typed 401/403 rejections.
//!
//! Keys come in `Authorization: Bearer bfk_…` or `X-API-Key: bfk_…`. The key is
//! checked for shape and checksum, hashed with SHA-256, looked up by hash, and the
//! stored hash compared in constant time. Keys are never logged.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use bonafide_core::apikey::{ApiKey, KeyKind, KeyScope};
use bonafide_core::ids::IssuerId;
use bonafide_store::{ApiKeyRecord, Issuer};

use crate::error::ApiError;
use crate::state::AppState;

/// The credential a request presents, as authentication reads it: a person's access
/// token (a JWT in `Authorization: Bearer`) first, else an API key from `X-API-Key`,
/// else from `Authorization: Bearer`. The one place that decides: the extractors and
/// the rate limiter both call [`presented`], so a limit is charged to the credential
/// the request is authenticated by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presented<'a> {
    /// A person's access token.
    Person(&'a str),
    /// An API key's text (not yet parsed).
    Key(&'a str),
    /// A header that is not text or another scheme: what is wrong with it.
    Malformed(&'static str),
    /// No credential.
    None,
}

/// The credential of a request (see [`Presented`]).
pub fn presented(headers: &axum::http::HeaderMap) -> Presented<'_> {
    let authorization = headers.get(axum::http::header::AUTHORIZATION);
    let bearer = authorization
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, rest)| rest.trim());
    if let Some(token) = bearer
        && !token.starts_with("bfk_")
        && token.matches('.').count() == 2
    {
        return Presented::Person(token);
    }
    if let Some(v) = headers.get("x-api-key") {
        return match v.to_str() {
            Ok(text) => Presented::Key(text.trim()),
            Err(_) => Presented::Malformed("malformed API key"),
        };
    }
    match (authorization, bearer) {
        (None, _) => Presented::None,
        (Some(_), Some(key)) => Presented::Key(key),
        (Some(v), None) if v.to_str().is_err() => {
            Presented::Malformed("malformed Authorization header")
        }
        (Some(_), None) => {
            Presented::Malformed("use `Authorization: Bearer bfk_…` or `X-API-Key: bfk_…`")
        }
    }
}

fn presented_key(parts: &Parts) -> Result<Option<ApiKey>, ApiError> {
    let text = match presented(&parts.headers) {
        Presented::Key(text) => text,
        Presented::Malformed(why) => return Err(ApiError::unauthorized(why)),
        Presented::Person(_) | Presented::None => return Ok(None),
    };
    ApiKey::parse(text)
        .map(Some)
        .map_err(|e| ApiError::unauthorized(format!("invalid API key: {e}")))
}

/// A person's access token where an API key was expected: refused with 403 (it is a
/// valid credential of another kind), or 401 if it does not verify.
async fn refuse_person(state: &AppState, token: &str, what: &str) -> ApiError {
    match crate::accounts::PersonAuth::from_token(state, token).await {
        Ok(_) => ApiError::forbidden(format!(
            "{what}; a person's access token acts only on /v1/orgs, /v1/auth and, with `X-Bonafide-Issuer`, on issuer endpoints"
        )),
        Err(e) => e,
    }
}

/// The scope an endpoint needs of a key whose scopes narrow it, by route template
/// and method (the README's table). Keys without scopes are not asked.
pub fn needed_scope(method: &axum::http::Method, template: &str) -> KeyScope {
    let under = |prefix: &str| {
        template == prefix
            || template
                .strip_prefix(prefix)
                .is_some_and(|rest| rest.starts_with('/'))
    };
    if under("/v1/api-keys") || under("/v1/admin/api-keys") {
        KeyScope::KeysManage
    } else if under("/v1/audit") {
        KeyScope::AuditRead
    } else if under("/v1/events") || under("/v1/webhooks") {
        KeyScope::Events
    } else if under("/v1/verify")
        || template == "/v1/introspect"
        || template == "/v1/simulate"
        || template == "/v1/agents/{id}/verify-action"
        // The compatibility surfaces' verifies are verifies too.
        || under("/compat/imarobot/v1/verify")
        || template == "/api/v1/verify"
        || template == "/api/v1/agents/{id}/verify-action"
        || under("/api/v1/sdk-api/verifications")
        || template == "/compat/agentoauth/verify"
        || template == "/compat/agentoauth/simulate"
    {
        KeyScope::Verify
    } else if template == "/v1/agents/{id}/issue-token"
        || template == "/v1/token"
        || template == "/compat/imarobot/v1/agents/{id}/issue-token"
    {
        KeyScope::TokensIssue
    } else if matches!(*method, axum::http::Method::GET | axum::http::Method::HEAD) {
        KeyScope::Read
    } else {
        KeyScope::Write
    }
}

/// Looks a presented key up and checks it: known, not revoked, not expired (both
/// 401, so a stolen expired key learns nothing more), and, when its scopes narrow
/// it, holding the scope this endpoint needs (403). Records its use.
pub async fn check_key(
    parts: &Parts,
    state: &AppState,
    key: &ApiKey,
) -> Result<Arc<ApiKeyRecord>, ApiError> {
    let hash = key.hash();
    let record = state
        .api_key(&hash)
        .await?
        .filter(|r| bonafide_core::ct_eq(&r.hash.0, &hash.0))
        .ok_or_else(|| ApiError::unauthorized("unknown API key"))?;
    check_record(parts, state, record)
}

/// [`check_key`]'s checks of a key's record: live, and its scopes.
pub fn check_record(
    parts: &Parts,
    state: &AppState,
    record: Arc<ApiKeyRecord>,
) -> Result<Arc<ApiKeyRecord>, ApiError> {
    if !record.live_at(state.now_ms()) {
        return Err(ApiError::unauthorized(
            "this API key has expired (a rotated key's grace period ended)",
        ));
    }
    if let Some(scopes) = &record.scopes {
        let template = parts
            .extensions
            .get::<axum::extract::MatchedPath>()
            .map(|m| m.as_str())
            .unwrap_or_else(|| parts.uri.path());
        let need = needed_scope(&parts.method, template);
        if !scopes.iter().any(|s| s == need.as_str()) {
            return Err(ApiError::forbidden(format!(
                "this API key's scopes ({}) do not include `{}`, which this endpoint needs",
                scopes.join(" "),
                need.as_str()
            )));
        }
    }
    state.note_key_use(&record.hash);
    crate::request_id::set_acting_key(&record.hash.public_id());
    Ok(record)
}

/// What a request presents: nothing, an API key (itself, or an access token issued
/// for it at `/v1/oauth/token`), checked by [`check_record`], or a person's access
/// token (not checked here).
#[allow(missing_debug_implementations)] // holds a token: never printed
pub enum Credential<'a> {
    /// No credential.
    Nothing,
    /// A checked key.
    Key(Arc<ApiKeyRecord>),
    /// A person's access token, to check or refuse.
    Person(&'a str),
}

/// A request's API key (itself, or an access token issued for it at
/// `/v1/oauth/token`), looked up once by the front layer ([`crate::front`]) and handed
/// to the extractors in the request's extensions, so the key is parsed, hashed and
/// looked up once per request. Its liveness and scopes are checked where the route
/// is known ([`check_record`]), as for a key looked up there.
#[derive(Clone)]
#[allow(missing_debug_implementations)] // holds the credential's text: never printed
pub struct ResolvedKey {
    /// The credential as presented: the hand-over applies to it alone.
    presented: Box<str>,
    record: Arc<ApiKeyRecord>,
}

impl ResolvedKey {
    /// The key's record, if it is live at `now_ms`.
    pub fn live_record(&self, now_ms: i64) -> Option<&ApiKeyRecord> {
        self.record.live_at(now_ms).then_some(&*self.record)
    }
}

/// The key a request presents (as [`presented`] classifies it), looked up: `None`
/// for no key, a person's access token, or a credential that does not resolve (the
/// extractors then resolve it themselves and give their own errors).
pub async fn resolve_key(state: &AppState, headers: &axum::http::HeaderMap) -> Option<ResolvedKey> {
    let (presented, record) = match presented(headers) {
        Presented::Person(token) => (
            token,
            crate::accounts::key_of_token(state, token).await.ok()??,
        ),
        Presented::Key(text) => {
            let hash = ApiKey::parse(text).ok()?.hash();
            let record = state.api_key(&hash).await.ok()??;
            if !bonafide_core::ct_eq(&record.hash.0, &hash.0) {
                return None;
            }
            (text, record)
        }
        Presented::Malformed(_) | Presented::None => return None,
    };
    Some(ResolvedKey {
        presented: presented.into(),
        record,
    })
}

/// The record the front layer resolved for exactly this credential text.
fn handed(parts: &Parts, presented: &str) -> Option<Arc<ApiKeyRecord>> {
    parts
        .extensions
        .get::<ResolvedKey>()
        .filter(|r| bonafide_core::ct_eq(r.presented.as_bytes(), presented.as_bytes()))
        .map(|r| Arc::clone(&r.record))
}

/// Reads and checks the request's credential ([`Credential`]), as [`presented`]
/// classifies it.
pub async fn credential<'a>(
    parts: &'a Parts,
    state: &AppState,
) -> Result<Credential<'a>, ApiError> {
    if let Some(token) = crate::accounts::bearer_access_token(parts) {
        if let Some(record) = handed(parts, token) {
            return check_record(parts, state, record).map(Credential::Key);
        }
        return match crate::accounts::key_of_token(state, token).await? {
            Some(record) => check_record(parts, state, record).map(Credential::Key),
            None => Ok(Credential::Person(token)),
        };
    }
    if let Presented::Key(text) = presented(&parts.headers)
        && let Some(record) = handed(parts, text)
    {
        return check_record(parts, state, record).map(Credential::Key);
    }
    match presented_key(parts)? {
        None => Ok(Credential::Nothing),
        Some(key) => check_key(parts, state, &key).await.map(Credential::Key),
    }
}

async fn authenticate(
    parts: &Parts,
    state: &AppState,
    want: KeyKind,
) -> Result<Option<String>, ApiError> {
    let record = match credential(parts, state).await? {
        Credential::Key(record) => record,
        Credential::Person(token) => {
            return Err(refuse_person(
                state,
                token,
                &format!("this endpoint needs an {} API key", want.as_str()),
            )
            .await);
        }
        Credential::Nothing => {
            return Err(ApiError::unauthorized(format!(
                "this endpoint needs an {} API key in `Authorization: Bearer …` or `X-API-Key`",
                want.as_str()
            )));
        }
    };
    if record.kind != want {
        return Err(ApiError::forbidden(format!(
            "this endpoint needs an {} API key; this is an {} key",
            want.as_str(),
            record.kind.as_str()
        )));
    }
    Ok(record.owner.clone())
}

/// The caller holds an admin key.
#[derive(Debug)]
pub struct Admin;

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        authenticate(parts, state, KeyKind::Admin).await?;
        Ok(Admin)
    }
}

/// The caller holds an issuer key; the issuer it belongs to.
#[derive(Debug)]
pub struct IssuerAuth(pub Issuer);

impl FromRequestParts<Arc<AppState>> for IssuerAuth {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let record = match credential(parts, state).await? {
            Credential::Person(token) => {
                return person_as_issuer(parts, state, token).await.map(IssuerAuth);
            }
            Credential::Nothing => {
                return Err(ApiError::unauthorized(
                    "this endpoint needs an issuer API key in `Authorization: Bearer …` or `X-API-Key`",
                ));
            }
            Credential::Key(record) => record,
        };
        if record.kind != KeyKind::Issuer {
            return Err(ApiError::forbidden(format!(
                "this endpoint needs an issuer API key; this is an {} key",
                record.kind.as_str()
            )));
        }
        let owner = record
            .owner
            .clone()
            .ok_or_else(|| ApiError::internal("issuer key without owner"))?;
        let id =
            IssuerId::try_from(owner.as_str()).map_err(|e| ApiError::internal(e.to_string()))?;
        let issuer =
            state.store.issuer(&id).await?.ok_or_else(|| {
                ApiError::unauthorized("the issuer of this API key no longer exists")
            })?;
        Ok(IssuerAuth(issuer))
    }
}

/// A person acting for an issuer their organisation owns: `X-Bonafide-Issuer` names
/// it; reading (GET, HEAD) needs any role there, anything else member or above (the
/// README's role table), and the organisation's 2FA rule applies. An issuer that is
/// not their organisation's is a 404, as for another issuer's key.
async fn person_as_issuer(
    parts: &Parts,
    state: &AppState,
    token: &str,
) -> Result<Issuer, ApiError> {
    use crate::accounts::{Permission, PersonAuth};
    let who = PersonAuth::from_token(state, token).await?;
    let named = parts
        .headers
        .get("x-bonafide-issuer")
        .ok_or_else(|| {
            ApiError::bad_request(
                "a person acting for an issuer names it in `X-Bonafide-Issuer: iss_…`",
            )
        })?
        .to_str()
        .map_err(|_| ApiError::bad_request("malformed `X-Bonafide-Issuer`"))?;
    let id = IssuerId::try_from(named.trim()).map_err(|_| ApiError::not_found("issuer"))?;
    let org = state
        .store
        .owner_org(&bonafide_store::Owned::Issuer(id.clone()))
        .await?
        .ok_or_else(|| ApiError::not_found("issuer"))?;
    let read = matches!(
        parts.method,
        axum::http::Method::GET | axum::http::Method::HEAD
    );
    let need = if read {
        Permission::Read
    } else {
        Permission::ActAsIssuer
    };
    crate::request_id::set_acting_person(who.person.id.as_str());
    who.require(state, &org, need).await.map_err(|e| {
        // Not a member of the owner: the issuer is not theirs to know of.
        if e.status == axum::http::StatusCode::NOT_FOUND {
            ApiError::not_found("issuer")
        } else {
            e
        }
    })?;
    state
        .store
        .issuer(&id)
        .await?
        .ok_or_else(|| ApiError::not_found("issuer"))
}

/// Whoever called, if they presented a key: for endpoints open to everyone where a key
/// adds attribution (verify) or visibility (audit entries). A key that is presented
/// but wrong is still a 401: a typo must not silently downgrade the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Caller {
    /// No key.
    Anonymous,
    /// An admin key.
    Admin,
    /// An issuer key, and its issuer id.
    Issuer(IssuerId),
    /// A receiver key, and its receiver id.
    Receiver(String),
}

impl Caller {
    /// The audit log's actor for this caller.
    pub fn actor(&self) -> bonafide_core::audit::Actor {
        use bonafide_core::audit::Actor;
        match self {
            Caller::Anonymous => Actor::Anonymous,
            Caller::Admin => Actor::Admin,
            Caller::Issuer(id) => Actor::Issuer { id: id.to_string() },
            Caller::Receiver(id) => Actor::Receiver { id: id.clone() },
        }
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let record = match credential(parts, state).await? {
            Credential::Nothing => return Ok(Caller::Anonymous),
            Credential::Person(token) => {
                return Err(refuse_person(state, token, "this endpoint takes API keys").await);
            }
            Credential::Key(record) => record,
        };
        caller_of_record(&record)
    }
}

/// The caller a key's record makes: its kind and owner.
pub fn caller_of_record(record: &ApiKeyRecord) -> Result<Caller, ApiError> {
    let owner = || {
        record
            .owner
            .clone()
            .ok_or_else(|| ApiError::internal("API key without owner"))
    };
    Ok(match record.kind {
        KeyKind::Admin => Caller::Admin,
        KeyKind::Issuer => Caller::Issuer(
            IssuerId::try_from(owner()?.as_str()).map_err(|e| ApiError::internal(e.to_string()))?,
        ),
        KeyKind::Receiver => Caller::Receiver(owner()?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts_presenting(key: &str) -> Parts {
        let (parts, ()) = axum::http::Request::builder()
            .header("x-api-key", key)
            .body(())
            .unwrap()
            .into_parts();
        parts
    }

    fn resolved(key: &ApiKey) -> ResolvedKey {
        ResolvedKey {
            presented: key.expose_secret().into(),
            record: Arc::new(ApiKeyRecord::new(
                key.hash(),
                KeyKind::Receiver,
                Some("rcv_test".into()),
                "test",
                "admin",
                0,
            )),
        }
    }

    #[test]
    fn a_resolved_key_is_handed_over_only_to_the_credential_it_was_resolved_for() {
        let a = ApiKey::from_random(KeyKind::Receiver, [1; 20]);
        let b = ApiKey::from_random(KeyKind::Receiver, [2; 20]);
        let mut parts = parts_presenting(a.expose_secret());
        parts.extensions.insert(resolved(&a));
        let handed_a = handed(&parts, a.expose_secret()).map(|r| r.hash);
        assert_eq!(handed_a, Some(a.hash()));
        // Another credential (a request rebuilt with other headers keeps its
        // extensions) never gets the record resolved for the first.
        assert!(handed(&parts, b.expose_secret()).is_none());
        let mut other = parts_presenting(b.expose_secret());
        other.extensions.insert(resolved(&a));
        assert!(handed(&other, b.expose_secret()).is_none());
    }
}
