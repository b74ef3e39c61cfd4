//! Login and sessions (issue 18): `POST /v1/auth/login` gives a 15-minute access
//! token (RFC 9068, `typ at+jwt`, signed by the session key alone, published at
//! `/.well-known/session-jwks.json`) and a 7-day refresh token rotated on every use;
//! a refresh token used twice revokes its whole session (family) and the reuse is a
//! security event. TOTP (RFC 6238) enrolment, recovery codes, logout, sessions,
//! password change. Failed logins back off per account and per address, and every
//! failure gets the same answer whether the email has an account or not.

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use bonafide_core::audit::EventType;
use bonafide_core::ids::{PersonId, SessionId};
use bonafide_core::totp;
use bonafide_store::{
    NewRefresh, Person, PrivateKeySlot, Rotation, SecurityEvent, Session, SessionSubject,
    ThrottleRule,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::accounts::account_audit;
use super::random16;
use crate::accounts::{self, PersonAuth};
use crate::error::{ApiError, ApiJson, ApiPath, ErrorCode};
use crate::sealing;
use crate::state::AppState;
use crate::time::rfc3339_ms;

/// The routes of this module.
pub fn routes() -> Router<Arc<AppState>> {
    Router::new()
        .route("/v1/auth/login", post(login))
        .route("/v1/auth/refresh", post(refresh))
        .route("/v1/auth/logout", post(logout))
        .route("/v1/auth/me", get(me))
        .route("/v1/auth/sessions", get(sessions))
        .route("/v1/auth/sessions/{id}", delete(revoke_session))
        .route("/v1/auth/password", post(change_password))
        .route("/v1/auth/totp/enroll", post(totp_enroll))
        .route("/v1/auth/totp/confirm", post(totp_confirm))
        .route("/v1/auth/totp/disable", post(totp_disable))
        .route("/.well-known/session-jwks.json", get(session_jwks))
}

/// The key that signs access tokens (it signs nothing else): RFC 7517 JWK Set.
#[utoipa::path(get, path = "/.well-known/session-jwks.json", tag = "discovery",
    responses((status = 200, description = "JWK Set", content_type = "application/jwk-set+json")))]
pub async fn session_jwks(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    super::meta::jwk_set(state.sessions.jwks())
}

/// `POST /v1/auth/login` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Login {
    /// The account's email.
    pub email: String,
    /// Its password.
    pub password: String,
    /// The current 6-digit TOTP code, for an account with two-factor authentication.
    #[serde(default)]
    pub totp_code: Option<String>,
    /// Or one of its recovery codes (each works once).
    #[serde(default)]
    pub recovery_code: Option<String>,
    /// Names the client in the session list (default `bonafide`; 1–64 characters).
    #[serde(default)]
    pub client_id: Option<String>,
}

/// Tokens for a session.
#[derive(Debug, Serialize, ToSchema)]
pub struct Tokens {
    /// RFC 9068 JWT (`typ at+jwt`), 15 minutes: `Authorization: Bearer …`.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: String,
    /// Seconds the access token lives (900).
    pub expires_in: i64,
    /// Opaque (`bfr_…`), 7 days, single use: `POST /v1/auth/refresh` gives a new pair.
    /// A refresh token used twice ends the session.
    pub refresh_token: String,
    /// Seconds the refresh token lives.
    pub refresh_expires_in: i64,
    /// `ses_…`.
    pub session_id: String,
    /// Whether a second factor was checked for this session.
    pub two_factor: bool,
}

fn tokens(
    state: &AppState,
    session: &Session,
    refresh: String,
    now_ms: i64,
) -> Result<Tokens, ApiError> {
    Ok(Tokens {
        access_token: accounts::access_token(state, session, now_ms)?,
        token_type: "Bearer".into(),
        expires_in: accounts::ACCESS_TTL_S,
        refresh_token: refresh,
        refresh_expires_in: (session.expires_at_ms - now_ms).max(0) / 1000,
        session_id: session.id.to_string(),
        two_factor: session.two_factor,
    })
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::InvalidCredentials,
        "the email, password or code is wrong",
    )
}

/// The client's address as the rate limits see it (the TCP peer, or the address a
/// trusted proxy names: `ratelimit::client_ip`): one rule for both, so a registry
/// behind a proxy does not back off every person together as the proxy's address.
pub(crate) fn client_ip(
    state: &AppState,
    ext: &axum::http::Extensions,
    headers: &HeaderMap,
) -> Option<std::net::IpAddr> {
    let peer = ext
        .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()?
        .0
        .ip();
    Some(crate::ratelimit::client_ip(
        peer,
        headers,
        &state.config.trusted_proxies,
    ))
}

fn user_agent(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().filter(|c| !c.is_control()).take(200).collect())
}

async fn security_event(
    state: &AppState,
    kind: &str,
    person: Option<&PersonId>,
    ip: Option<&String>,
    detail: &str,
) {
    security_event_in(state, kind, person, None, ip, detail).await;
}

/// A security event about a person, or (an API key's) about an organisation.
async fn security_event_in(
    state: &AppState,
    kind: &str,
    person: Option<&PersonId>,
    org: Option<&bonafide_core::ids::OrgId>,
    ip: Option<&String>,
    detail: &str,
) {
    let event = SecurityEvent {
        id: 0,
        kind: kind.into(),
        person_id: person.cloned(),
        org_id: org.cloned(),
        ip: ip.cloned(),
        detail: detail.into(),
        created_at_ms: state.now_ms(),
    };
    // Bookkeeping: a store that cannot take it must not turn a refusal into a 503.
    if let Err(e) = state.store.add_security_event(&event).await {
        tracing::warn!(error = %e, kind, "could not record a security event");
    }
}

fn throttled(wait_ms: i64) -> Response {
    let secs = ((wait_ms + 999) / 1000).max(1);
    let mut resp = ApiError::new(
        StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::LoginThrottled,
        format!("too many failed logins: try again in {secs} s"),
    )
    .into_response();
    if let Ok(v) = HeaderValue::from_str(&secs.to_string()) {
        resp.headers_mut().insert(header::RETRY_AFTER, v);
    }
    resp
}

/// Whether the second factor given holds (consuming it: a TOTP step or a recovery
/// code works once). `None`: none was given.
async fn second_factor(
    state: &AppState,
    person: &Person,
    totp_code: Option<&str>,
    recovery_code: Option<&str>,
    now_ms: i64,
) -> Result<Option<bool>, ApiError> {
    if let Some(code) = totp_code {
        let Some(sealed) = &person.totp_secret else {
            return Ok(Some(false));
        };
        let slot = PrivateKeySlot::TotpSecret {
            person: person.id.to_string(),
        };
        let secret = sealing::open(state.kek(), &slot, sealed)?;
        let secret = totp::base32_decode(secret.expose_secret())
            .ok_or_else(|| ApiError::internal("stored TOTP secret is not base32"))?;
        let last = person.totp_last_step.and_then(|s| u64::try_from(s).ok());
        let Some(step) = totp::check(&secret, code, now_ms / 1000, last) else {
            return Ok(Some(false));
        };
        let step = i64::try_from(step).map_err(|_| ApiError::internal("TOTP step"))?;
        return Ok(Some(state.store.claim_totp_step(&person.id, step).await?));
    }
    if let Some(code) = recovery_code {
        let hash = accounts::sha256(&accounts::normalise_recovery_code(code));
        let audit = account_audit(
            EventType::TotpChanged,
            now_ms,
            bonafide_core::audit::Actor::Person {
                id: person.id.to_string(),
            },
            None,
            Some(&person.id),
            |e| e.note = Some("recovery code used".into()),
        )?;
        return Ok(Some(
            state
                .store
                .use_recovery_code(&person.id, &hash, now_ms, &audit)
                .await?,
        ));
    }
    Ok(None)
}

/// Logs a person in: a new session, its access token and first refresh token.
#[utoipa::path(post, path = "/v1/auth/login", tag = "accounts", request_body = Login,
    responses((status = 200, body = Tokens),
              (status = 401, description = "`INVALID_CREDENTIALS` (the same whether or not the email has an account), or `TWO_FACTOR_REQUIRED`: the account has two-factor authentication, send `totp_code` or `recovery_code`"),
              (status = 422),
              (status = 429, description = "`LOGIN_THROTTLED`: too many failures for this account or address; `Retry-After` says when",
               headers(("Retry-After" = u64, description = "seconds")))))]
pub async fn login(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    ext: axum::http::Extensions,
    ApiJson(body): ApiJson<Login>,
) -> Result<Response, ApiError> {
    let now_ms = state.now_ms();
    let client_id = match &body.client_id {
        Some(c) => super::check_text("client_id", c, 64)?,
        None => "bonafide".to_owned(),
    };
    if body.password.chars().count() > bonafide_core::password::MAX_CHARS {
        // Not worth hashing: no account has such a password.
        return Err(invalid_credentials());
    }
    // A malformed address can be no account's: the generic answer all the same.
    let email = bonafide_core::password::normalise_email(&body.email)
        .unwrap_or_else(|| body.email.trim().to_ascii_lowercase());
    let addr = client_ip(&state, &ext, &headers);
    let ip = addr.map(|a| a.to_string());
    // The account from this address, the account from anywhere (a much higher
    // ceiling), the address: checked and the attempt recorded as a failure in one
    // step, before the password's hash is computed, so parallel wrong attempts cannot
    // all pass the check; a success takes its reservation back.
    let mut rules = vec![
        ThrottleRule {
            subject: accounts::pair_subject(&email, addr),
            free: accounts::ACCOUNT_FREE_FAILURES,
        },
        ThrottleRule {
            subject: accounts::account_subject(&email),
            free: accounts::ACCOUNT_CEILING_FREE_FAILURES,
        },
    ];
    if let Some(addr) = addr {
        rules.push(ThrottleRule {
            subject: accounts::ip_subject(addr),
            free: accounts::IP_FREE_FAILURES,
        });
    }
    let wait = state
        .store
        .login_reserve(&rules, now_ms, accounts::FAILURE_WINDOW_MS)
        .await?;
    if wait > 0 {
        // Not a security event: refused attempts would let anyone grow the table at
        // request rate. The failures that started the backoff are recorded.
        return Ok(throttled(wait));
    }
    let subjects: Vec<String> = rules.into_iter().map(|r| r.subject).collect();
    let person = state.store.person_by_email(&email).await?;
    let password_ok = accounts::verify_password(
        person.as_ref().and_then(|p| p.password_hash.clone()),
        body.password,
    )
    .await?;
    // The failure was recorded when the attempt was reserved.
    let fail = |kind: &'static str, detail: &'static str, who: Option<PersonId>| {
        let state = Arc::clone(&state);
        let ip = ip.clone();
        async move {
            security_event(&state, kind, who.as_ref(), ip.as_ref(), detail).await;
            Ok::<_, ApiError>(invalid_credentials())
        }
    };
    let person = match person {
        Some(p) if password_ok => p,
        Some(p) => return Err(fail("login_failed", "wrong password", Some(p.id)).await?),
        None => return Err(fail("login_failed", "no account with this email", None).await?),
    };
    let two_factor = if person.totp_enabled() {
        match second_factor(
            &state,
            &person,
            body.totp_code.as_deref(),
            body.recovery_code.as_deref(),
            now_ms,
        )
        .await?
        {
            Some(true) => true,
            Some(false) => {
                return Err(fail(
                    "totp_failed",
                    "wrong or reused second factor",
                    Some(person.id),
                )
                .await?);
            }
            None => {
                // The right password without its second factor: not a failure.
                state.store.login_release(&subjects).await?;
                return Err(ApiError::new(
                    StatusCode::UNAUTHORIZED,
                    ErrorCode::TwoFactorRequired,
                    "this account has two-factor authentication: send `totp_code` (or a `recovery_code`)",
                ));
            }
        }
    } else {
        false
    };
    // The account's runs of failures end (from this address and overall); the
    // address only gets this attempt back: a success must not reset an address that
    // is guessing other accounts.
    state
        .store
        .login_attempt(&subjects[..2], false, now_ms, accounts::FAILURE_WINDOW_MS)
        .await?;
    state.store.login_release(&subjects[2..]).await?;
    let (refresh, hash) = accounts::new_secret("bfr_")?;
    let session = Session {
        id: SessionId::from_random(random16()?),
        subject: SessionSubject::Person(person.id.clone()),
        client_id,
        two_factor,
        ip,
        user_agent: user_agent(&headers),
        created_at_ms: now_ms,
        last_used_ms: now_ms,
        expires_at_ms: now_ms + accounts::REFRESH_TTL_MS,
        revoked_at_ms: None,
        revoke_reason: None,
    };
    let audit = account_audit(
        EventType::SessionCreated,
        now_ms,
        bonafide_core::audit::Actor::Person {
            id: person.id.to_string(),
        },
        None,
        Some(&person.id),
        |e| {
            e.target = Some(session.id.to_string());
            e.note = Some(if two_factor { "pwd+otp" } else { "pwd" }.into());
        },
    )?;
    let refresh_new = NewRefresh {
        hash,
        expires_at_ms: session.expires_at_ms,
    };
    state
        .store
        .create_session(&session, &refresh_new, &audit)
        .await?;
    Ok(ApiJson(tokens(&state, &session, refresh, now_ms)?).into_response())
}

/// `POST /v1/auth/refresh` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Refresh {
    /// The refresh token last received (`bfr_…`).
    pub refresh_token: String,
}

fn refresh_refused(message: &str) -> ApiError {
    ApiError::unauthorized(format!("{message}: log in again"))
}

/// Whose refresh-token families an endpoint rotates: people's at `/v1/auth/refresh`,
/// API keys' at `/v1/oauth/token`. A token of the other kind is unknown there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    /// Sessions of people who logged in.
    Person,
    /// Sessions of API keys exchanged for tokens (client credentials).
    Key,
}

/// A family rotated by [`rotate_family`].
#[derive(Debug)]
pub(crate) struct Rotated {
    /// The session as it is now.
    pub session: Session,
    /// The new refresh token's text (shown once).
    pub refresh: String,
    /// A key's session: its key, live.
    pub key: Option<Arc<bonafide_store::ApiKeyRecord>>,
}

/// Who a session's changes are audited as, and the audit entry's person and key.
struct SessionParty {
    actor: bonafide_core::audit::Actor,
    person: Option<PersonId>,
    kid: Option<String>,
    org: Option<bonafide_core::ids::OrgId>,
}

impl SessionParty {
    async fn of(
        state: &AppState,
        session: &Session,
        key: Option<&bonafide_store::ApiKeyRecord>,
    ) -> Self {
        match &session.subject {
            SessionSubject::Person(p) => SessionParty {
                actor: bonafide_core::audit::Actor::Person { id: p.to_string() },
                person: Some(p.clone()),
                kid: None,
                org: None,
            },
            SessionSubject::Key(hash) => {
                let caller = key.and_then(|k| crate::auth::caller_of_record(k).ok());
                SessionParty {
                    actor: caller
                        .as_ref()
                        .map_or(bonafide_core::audit::Actor::Registry, |c| c.actor()),
                    person: None,
                    kid: Some(hash.public_id()),
                    // The organisation owning the key's identity reads its events.
                    org: match caller {
                        Some(crate::auth::Caller::Issuer(id)) => {
                            key_org(state, bonafide_store::Owned::Issuer(id)).await
                        }
                        Some(crate::auth::Caller::Receiver(id)) => {
                            match bonafide_core::ids::ReceiverId::try_from(id.as_str()) {
                                Ok(id) => key_org(state, bonafide_store::Owned::Receiver(id)).await,
                                Err(_) => None,
                            }
                        }
                        _ => None,
                    },
                }
            }
        }
    }

    fn audit(
        &self,
        event: EventType,
        now_ms: i64,
        actor: bonafide_core::audit::Actor,
        session: &Session,
        note: Option<&str>,
    ) -> Result<bonafide_store::AuditRecord, ApiError> {
        account_audit(event, now_ms, actor, None, self.person.as_ref(), |e| {
            e.target = Some(session.id.to_string());
            e.kid = self.kid.clone();
            e.note = note.map(str::to_owned);
        })
    }
}

async fn key_org(
    state: &AppState,
    owned: bonafide_store::Owned,
) -> Option<bonafide_core::ids::OrgId> {
    state.store.owner_org(&owned).await.ok().flatten()
}

/// Ends a session for a reason the registry found (a reused refresh token, its key
/// revoked or expired), audited as the registry's act, with a security event for a
/// reuse.
async fn end_family(
    state: &AppState,
    session: &Session,
    party: &SessionParty,
    reason: &str,
    ip: Option<&String>,
    now_ms: i64,
) -> Result<(), ApiError> {
    let audit = party.audit(
        EventType::SessionRevoked,
        now_ms,
        bonafide_core::audit::Actor::Registry,
        session,
        Some(reason),
    )?;
    state
        .store
        .revoke_session(&session.id, now_ms, reason, &audit)
        .await?;
    if reason == "refresh_reuse" {
        security_event_in(
            state,
            "refresh_reuse",
            party.person.as_ref(),
            party.org.as_ref(),
            ip,
            "a refresh token was used twice: its session is revoked",
        )
        .await;
    }
    Ok(())
}

/// Rotates a refresh token of a `family` session: the one rule for people's and API
/// keys' sessions. The token sent is used up and a new one made; sending a used one
/// again revokes the whole session (every token descended from the same login or
/// exchange) and records a security event. A session lives at most
/// [`accounts::SESSION_MAX_MS`] from its start; a key's session ends with its key
/// (revoked, expired, or past a rotation's grace period). Refusals are 401s whose
/// message names the reason.
pub(crate) async fn rotate_family(
    state: &Arc<AppState>,
    presented: &str,
    family: Family,
    ip: Option<String>,
) -> Result<Rotated, ApiError> {
    let now_ms = state.now_ms();
    let hash = accounts::sha256(presented.trim());
    let record = state
        .store
        .refresh_token(&hash)
        .await?
        .filter(|r| match family {
            Family::Person => r.session.person().is_some(),
            Family::Key => r.session.key().is_some(),
        })
        .ok_or_else(|| ApiError::unauthorized("unknown refresh token"))?;
    let session = record.session;
    let key = match session.key() {
        Some(h) => state
            .api_key(h)
            .await?
            .filter(|k| bonafide_core::ct_eq(&k.hash.0, &h.0)),
        None => None,
    };
    let party = SessionParty::of(state, &session, key.as_deref()).await;
    if record.used_at_ms.is_some() {
        if session.revoked_at_ms.is_none() {
            end_family(
                state,
                &session,
                &party,
                "refresh_reuse",
                ip.as_ref(),
                now_ms,
            )
            .await?;
            return Err(ApiError::unauthorized(
                "this refresh token was used before, so its session is revoked",
            ));
        }
        // Already revoked (by an earlier reuse, logout, its key): record the attempt only.
        security_event_in(
            state,
            "refresh_reuse",
            party.person.as_ref(),
            party.org.as_ref(),
            ip.as_ref(),
            "a used refresh token of an ended session was sent again",
        )
        .await;
        return Err(ApiError::unauthorized("this session has ended"));
    }
    if session.revoked_at_ms.is_some() {
        return Err(ApiError::unauthorized("this session has ended"));
    }
    if session.key().is_some() && !key.as_ref().is_some_and(|k| k.live_at(now_ms)) {
        end_family(state, &session, &party, "key_ended", ip.as_ref(), now_ms).await?;
        return Err(ApiError::unauthorized(
            "the API key of this session is revoked or expired, so the session has ended",
        ));
    }
    if now_ms >= record.expires_at_ms {
        return Err(ApiError::unauthorized("this refresh token has expired"));
    }
    // Refreshing never takes a session past its absolute end.
    let expires_at_ms =
        (now_ms + accounts::REFRESH_TTL_MS).min(session.created_at_ms + accounts::SESSION_MAX_MS);
    if expires_at_ms <= now_ms {
        return Err(ApiError::unauthorized(
            "this session has reached its 30-day end",
        ));
    }
    let (next, next_hash) = accounts::new_secret("bfr_")?;
    let new = NewRefresh {
        hash: next_hash,
        expires_at_ms,
    };
    let audit = party.audit(
        EventType::SessionRefreshed,
        now_ms,
        party.actor.clone(),
        &session,
        None,
    )?;
    match state
        .store
        .rotate_refresh(&hash, &new, now_ms, &audit)
        .await?
    {
        Rotation::Rotated => {
            let mut session = session;
            session.last_used_ms = now_ms;
            session.expires_at_ms = new.expires_at_ms;
            Ok(Rotated {
                session,
                refresh: next,
                key,
            })
        }
        // Another request used it first: this is the second use.
        Rotation::AlreadyUsed => {
            end_family(
                state,
                &session,
                &party,
                "refresh_reuse",
                ip.as_ref(),
                now_ms,
            )
            .await?;
            Err(ApiError::unauthorized(
                "this refresh token was used before, so its session is revoked",
            ))
        }
        Rotation::Refused => Err(ApiError::unauthorized("this session has ended")),
    }
}

/// Rotates a refresh token: a new access token and a new refresh token; the one
/// sent is used up. Sending a used one again revokes the whole session (every
/// token descended from the same login) and records a security event.
#[utoipa::path(post, path = "/v1/auth/refresh", tag = "accounts", request_body = Refresh,
    responses((status = 200, body = Tokens),
              (status = 401, description = "unknown, expired or reused refresh token, or an ended session (`UNAUTHORIZED`)"),
              (status = 422)))]
pub async fn refresh(
    State(state): State<Arc<AppState>>,
    ext: axum::http::Extensions,
    headers: HeaderMap,
    ApiJson(body): ApiJson<Refresh>,
) -> Result<ApiJson<Tokens>, ApiError> {
    let ip = client_ip(&state, &ext, &headers).map(|a| a.to_string());
    let rotated = rotate_family(&state, &body.refresh_token, Family::Person, ip)
        .await
        .map_err(|e| {
            if e.status == StatusCode::UNAUTHORIZED {
                refresh_refused(&e.message)
            } else {
                e
            }
        })?;
    let now_ms = state.now_ms();
    Ok(ApiJson(tokens(
        &state,
        &rotated.session,
        rotated.refresh,
        now_ms,
    )?))
}

/// Ends the session the access token belongs to.
#[utoipa::path(post, path = "/v1/auth/logout", tag = "accounts",
    security(("access_token" = [])),
    responses((status = 204, description = "ended"), (status = 401)))]
pub async fn logout(
    State(state): State<Arc<AppState>>,
    who: PersonAuth,
) -> Result<StatusCode, ApiError> {
    end_session(&state, &who, &who.session.id, "logout").await?;
    Ok(StatusCode::NO_CONTENT)
}

async fn end_session(
    state: &AppState,
    who: &PersonAuth,
    id: &SessionId,
    reason: &str,
) -> Result<bool, ApiError> {
    let now_ms = state.now_ms();
    let audit = account_audit(
        EventType::SessionRevoked,
        now_ms,
        who.actor(),
        None,
        Some(&who.person.id),
        |e| {
            e.target = Some(id.to_string());
            e.note = Some(reason.to_owned());
        },
    )?;
    Ok(state
        .store
        .revoke_session(id, now_ms, reason, &audit)
        .await?)
}

/// One session.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionView {
    /// `ses_…`.
    pub session_id: String,
    /// The client named at login.
    pub client_id: String,
    /// RFC 3339.
    pub created_at: String,
    /// RFC 3339: the last login or refresh.
    pub last_used_at: String,
    /// RFC 3339: when its refresh token expires.
    pub expires_at: String,
    /// The address at login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// The `User-Agent` at login.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_agent: Option<String>,
    /// Whether a second factor was checked.
    pub two_factor: bool,
    /// The session of the token that asked.
    pub current: bool,
}

/// `GET /v1/auth/sessions` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionList {
    /// Live sessions, newest first.
    pub sessions: Vec<SessionView>,
}

/// The caller's live sessions.
#[utoipa::path(get, path = "/v1/auth/sessions", tag = "accounts",
    security(("access_token" = [])),
    responses((status = 200, body = SessionList), (status = 401)))]
pub async fn sessions(
    State(state): State<Arc<AppState>>,
    who: PersonAuth,
) -> Result<ApiJson<SessionList>, ApiError> {
    let list = state
        .store
        .sessions_of(&who.person.id, state.now_ms())
        .await?
        .into_iter()
        .map(|s| SessionView {
            current: s.id == who.session.id,
            session_id: s.id.to_string(),
            client_id: s.client_id,
            created_at: rfc3339_ms(s.created_at_ms),
            last_used_at: rfc3339_ms(s.last_used_ms),
            expires_at: rfc3339_ms(s.expires_at_ms),
            ip: s.ip,
            user_agent: s.user_agent,
            two_factor: s.two_factor,
        })
        .collect();
    Ok(ApiJson(SessionList { sessions: list }))
}

/// Ends one of the caller's sessions (its access tokens stop at once).
#[utoipa::path(delete, path = "/v1/auth/sessions/{id}", tag = "accounts",
    params(("id" = String, Path, description = "`ses_…`")),
    security(("access_token" = [])),
    responses((status = 204, description = "ended"), (status = 401), (status = 404, description = "not one of your live sessions")))]
pub async fn revoke_session(
    State(state): State<Arc<AppState>>,
    who: PersonAuth,
    ApiPath(id): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let id = SessionId::try_from(id.as_str()).map_err(|_| ApiError::not_found("session"))?;
    let mine = state
        .store
        .session(&id)
        .await?
        .filter(|s| s.person() == Some(&who.person.id) && s.revoked_at_ms.is_none())
        .ok_or_else(|| ApiError::not_found("session"))?;
    end_session(&state, &who, &mine.id, "revoked").await?;
    Ok(StatusCode::NO_CONTENT)
}

/// One membership.
#[derive(Debug, Serialize, ToSchema)]
pub struct MembershipView {
    /// `org_…`.
    pub org_id: String,
    /// Its name.
    pub name: String,
    /// The role there.
    pub role: String,
}

/// `GET /v1/auth/me` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    /// `usr_…`.
    pub person_id: String,
    /// The email.
    pub email: String,
    /// TOTP on.
    pub two_factor_enabled: bool,
    /// Unused recovery codes.
    pub recovery_codes_left: u32,
    /// This session's id.
    pub session_id: String,
    /// Organisations and roles.
    pub memberships: Vec<MembershipView>,
}

/// Who the access token belongs to, and where they belong.
#[utoipa::path(get, path = "/v1/auth/me", tag = "accounts",
    security(("access_token" = [])),
    responses((status = 200, body = Me), (status = 401)))]
pub async fn me(
    State(state): State<Arc<AppState>>,
    who: PersonAuth,
) -> Result<ApiJson<Me>, ApiError> {
    let mut memberships = Vec::new();
    for m in state.store.memberships_of(&who.person.id).await? {
        let name = state
            .store
            .org(&m.org_id)
            .await?
            .map(|o| o.name)
            .unwrap_or_default();
        memberships.push(MembershipView {
            org_id: m.org_id.to_string(),
            name,
            role: m.role.as_str().to_owned(),
        });
    }
    Ok(ApiJson(Me {
        person_id: who.person.id.to_string(),
        email: who.person.email.clone(),
        two_factor_enabled: who.person.totp_enabled(),
        recovery_codes_left: state.store.recovery_codes_left(&who.person.id).await?,
        session_id: who.session.id.to_string(),
        memberships,
    }))
}

/// `POST /v1/auth/password` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChangePassword {
    /// The password now.
    pub current_password: String,
    /// The new one: 15 to 128 characters, any characters, no other rule.
    pub new_password: String,
}

/// Changes the caller's password; every other session of theirs ends.
#[utoipa::path(post, path = "/v1/auth/password", tag = "accounts", request_body = ChangePassword,
    security(("access_token" = [])),
    responses((status = 204, description = "changed; other sessions ended"),
              (status = 401, description = "`INVALID_CREDENTIALS`: the current password is wrong"),
              (status = 422, description = "the new password breaks the length rule")))]
pub async fn change_password(
    State(state): State<Arc<AppState>>,
    who: PersonAuth,
    ApiJson(body): ApiJson<ChangePassword>,
) -> Result<StatusCode, ApiError> {
    if !accounts::verify_password(who.person.password_hash.clone(), body.current_password).await? {
        return Err(invalid_credentials());
    }
    bonafide_core::password::check(&body.new_password, &who.person.email)
        .map_err(|e| ApiError::invalid(e.to_string()))?;
    let hash = accounts::hash_password(body.new_password).await?;
    let now_ms = state.now_ms();
    let audit = account_audit(
        EventType::PasswordChanged,
        now_ms,
        who.actor(),
        None,
        Some(&who.person.id),
        |_| {},
    )?;
    state
        .store
        .set_password(&who.person.id, &hash, Some(&who.session.id), now_ms, &audit)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// `POST /v1/auth/totp/enroll` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct Enrolment {
    /// The shared secret, RFC 4648 base32 (for typing into an app).
    pub secret: String,
    /// `otpauth://totp/…` for a QR code: SHA1, 6 digits, 30 s.
    pub otpauth_uri: String,
}

/// Starts TOTP enrolment: a new secret (replacing an unconfirmed one). Confirm it
/// with a code from the app (`POST /v1/auth/totp/confirm`).
#[utoipa::path(post, path = "/v1/auth/totp/enroll", tag = "accounts",
    security(("access_token" = [])),
    responses((status = 200, body = Enrolment), (status = 401),
              (status = 409, description = "two-factor authentication is on already")))]
pub async fn totp_enroll(
    State(state): State<Arc<AppState>>,
    who: PersonAuth,
) -> Result<ApiJson<Enrolment>, ApiError> {
    let mut secret = [0u8; totp::SECRET_BYTES];
    aws_lc_rs::rand::fill(&mut secret).map_err(|_| ApiError::internal("random source failed"))?;
    let text = totp::base32_encode(&secret);
    let slot = PrivateKeySlot::TotpSecret {
        person: who.person.id.to_string(),
    };
    let sealed = sealing::seal(state.kek(), &slot, &text)?;
    state
        .store
        .set_totp_pending(&who.person.id, &sealed)
        .await?;
    let issuer = state
        .config
        .public_url
        .split_once("://")
        .map_or(state.config.public_url.as_str(), |(_, h)| h)
        .trim_end_matches('/');
    Ok(ApiJson(Enrolment {
        otpauth_uri: totp::otpauth_uri(&format!("Bonafide {issuer}"), &who.person.email, &secret),
        secret: text,
    }))
}

/// `POST /v1/auth/totp/confirm` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Confirm {
    /// The app's current 6-digit code.
    pub code: String,
}

/// `POST /v1/auth/totp/confirm` answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecoveryCodes {
    /// Ten single-use codes for when the app is lost: shown this once, stored hashed.
    pub recovery_codes: Vec<String>,
}

/// Confirms TOTP enrolment with a code: from now on logging in needs a code; the
/// answer holds the recovery codes (shown once). Log in again for a session that
/// counts as two-factor.
#[utoipa::path(post, path = "/v1/auth/totp/confirm", tag = "accounts", request_body = Confirm,
    security(("access_token" = [])),
    responses((status = 200, body = RecoveryCodes), (status = 401),
              (status = 404, description = "no enrolment in progress"),
              (status = 422, description = "the code is wrong")))]
pub async fn totp_confirm(
    State(state): State<Arc<AppState>>,
    who: PersonAuth,
    ApiJson(body): ApiJson<Confirm>,
) -> Result<ApiJson<RecoveryCodes>, ApiError> {
    let person = &who.person;
    let sealed = match (&person.totp_secret, person.totp_enabled()) {
        (Some(s), false) => s,
        _ => return Err(ApiError::not_found("TOTP enrolment in progress")),
    };
    let slot = PrivateKeySlot::TotpSecret {
        person: person.id.to_string(),
    };
    let secret = sealing::open(state.kek(), &slot, sealed)?;
    let secret = totp::base32_decode(secret.expose_secret())
        .ok_or_else(|| ApiError::internal("stored TOTP secret is not base32"))?;
    let now_ms = state.now_ms();
    let step = totp::check(&secret, &body.code, now_ms / 1000, None)
        .ok_or_else(|| ApiError::invalid("that code is not the app's current one"))?;
    let mut shown = Vec::with_capacity(accounts::RECOVERY_CODES);
    let mut hashes = Vec::with_capacity(accounts::RECOVERY_CODES);
    for _ in 0..accounts::RECOVERY_CODES {
        let (code, hash) = accounts::new_recovery_code()?;
        shown.push(code);
        hashes.push(hash);
    }
    let audit = account_audit(
        EventType::TotpEnabled,
        now_ms,
        who.actor(),
        None,
        Some(&person.id),
        |_| {},
    )?;
    let step = i64::try_from(step).map_err(|_| ApiError::internal("TOTP step"))?;
    state
        .store
        .enable_totp(&person.id, step, &hashes, now_ms, &audit)
        .await?;
    Ok(ApiJson(RecoveryCodes {
        recovery_codes: shown,
    }))
}

/// `POST /v1/auth/totp/disable` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Disable {
    /// The account's password.
    pub password: String,
    /// A current TOTP code.
    #[serde(default)]
    pub totp_code: Option<String>,
    /// Or a recovery code.
    #[serde(default)]
    pub recovery_code: Option<String>,
}

/// Turns TOTP off (password and a second factor); the recovery codes go with it.
#[utoipa::path(post, path = "/v1/auth/totp/disable", tag = "accounts", request_body = Disable,
    security(("access_token" = [])),
    responses((status = 204, description = "off"),
              (status = 401, description = "`INVALID_CREDENTIALS`"),
              (status = 422)))]
pub async fn totp_disable(
    State(state): State<Arc<AppState>>,
    who: PersonAuth,
    ApiJson(body): ApiJson<Disable>,
) -> Result<StatusCode, ApiError> {
    if !accounts::verify_password(who.person.password_hash.clone(), body.password).await? {
        return Err(invalid_credentials());
    }
    let now_ms = state.now_ms();
    if who.person.totp_enabled() {
        let ok = second_factor(
            &state,
            &who.person,
            body.totp_code.as_deref(),
            body.recovery_code.as_deref(),
            now_ms,
        )
        .await?;
        if ok != Some(true) {
            return Err(invalid_credentials());
        }
    }
    let audit = account_audit(
        EventType::TotpChanged,
        now_ms,
        who.actor(),
        None,
        Some(&who.person.id),
        |e| e.note = Some("disabled".into()),
    )?;
    state.store.disable_totp(&who.person.id, &audit).await?;
    Ok(StatusCode::NO_CONTENT)
}
