//! People who log in (issue 18): password hashing, access and refresh tokens, the
//! role table, login backoff, and the extractor that turns an access token into a
//! person acting in an organisation.
//!
//! Secrets: passwords are argon2id (OWASP's parameters: m = 19 MiB, t = 2, p = 1);
//! invitation and refresh tokens and recovery codes are 256 random bits shown once
//! and stored as SHA-256, looked up by hash and compared in constant time; TOTP
//! secrets are sealed under the KEK. None of them is ever logged.

use std::sync::{Arc, OnceLock};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm as ArgonAlg, Argon2, Params, Version};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use bonafide_core::access_token::{self, AccessClaims};
use bonafide_core::ids::{OrgId, SessionId};
use bonafide_core::keys::{Algorithm, SigningKey};
use bonafide_core::sealed::Kek;
use bonafide_core::token::KeySet;
use bonafide_store::{
    Organisation, Person, PrivateKeySlot, ReceiptKeyRecord, Role, Session, SessionSubject, Store,
    StoreError,
};

use crate::error::{ApiError, ErrorCode};
use crate::sealing;
use crate::state::AppState;

/// Lifetime of an access token (RFC 9068 JWT), seconds.
pub const ACCESS_TTL_S: i64 = 15 * 60;
/// Lifetime of a refresh token, milliseconds; each use makes a new one.
pub const REFRESH_TTL_MS: i64 = 7 * 86_400_000;
/// Longest a session lives from its login, however often it is refreshed
/// (milliseconds): then its person logs in again.
pub const SESSION_MAX_MS: i64 = 30 * 86_400_000;
/// Lifetime of an invitation, milliseconds.
pub const INVITATION_TTL_MS: i64 = 7 * 86_400_000;
/// Recovery codes made at TOTP enrolment.
pub const RECOVERY_CODES: usize = 10;

/// argon2id per OWASP's Password Storage Cheat Sheet: 19 MiB, 2 passes, 1 lane.
pub const ARGON2_M_KIB: u32 = 19_456;
/// Passes.
pub const ARGON2_T: u32 = 2;
/// Lanes.
pub const ARGON2_P: u32 = 1;

fn argon2() -> Result<Argon2<'static>, ApiError> {
    let params = Params::new(ARGON2_M_KIB, ARGON2_T, ARGON2_P, None)
        .map_err(|e| ApiError::internal(format!("argon2 parameters: {e}")))?;
    Ok(Argon2::new(ArgonAlg::Argon2id, Version::V0x13, params))
}

/// Hashes a password (argon2id, a fresh 128-bit salt) off the async threads: a hash
/// costs tens of milliseconds of CPU.
pub async fn hash_password(password: String) -> Result<String, ApiError> {
    let salt = crate::routes::random16()?;
    tokio::task::spawn_blocking(move || {
        let salt = SaltString::encode_b64(&salt)
            .map_err(|e| ApiError::internal(format!("argon2 salt: {e}")))?;
        argon2()?
            .hash_password(password.as_bytes(), &salt)
            .map(|h| h.to_string())
            .map_err(|e| ApiError::internal(format!("argon2: {e}")))
    })
    .await
    .map_err(|e| ApiError::internal(format!("argon2 task: {e}")))?
}

/// Whether `password` matches the stored PHC string (constant time in the argon2
/// crate). With no stored hash (an unknown email, or a person who never set one), a
/// hash of the same cost is still computed, so the answer takes as long either way.
pub async fn verify_password(stored: Option<String>, password: String) -> Result<bool, ApiError> {
    let dummy = dummy_hash()?;
    tokio::task::spawn_blocking(move || match &stored {
        Some(h) => verify_blocking(h, &password),
        None => verify_blocking(&dummy, &password).map(|_| false),
    })
    .await
    .map_err(|e| ApiError::internal(format!("argon2 task: {e}")))?
}

/// One argon2id check of `password` against a PHC string, on this thread: what a
/// login attempt costs.
pub fn verify_blocking(stored: &str, password: &str) -> Result<bool, ApiError> {
    let parsed = PasswordHash::new(stored)
        .map_err(|e| ApiError::internal(format!("stored password hash: {e}")))?;
    Ok(argon2()?
        .verify_password(password.as_bytes(), &parsed)
        .is_ok())
}

/// A hash of a random password, made once per process, verified against when there
/// is no real hash.
fn dummy_hash() -> Result<String, ApiError> {
    static DUMMY: OnceLock<String> = OnceLock::new();
    if let Some(h) = DUMMY.get() {
        return Ok(h.clone());
    }
    let salt = SaltString::encode_b64(&crate::routes::random16()?)
        .map_err(|e| ApiError::internal(format!("argon2 salt: {e}")))?;
    let password = bonafide_core::hex(&crate::routes::random16()?);
    let hash = argon2()?
        .hash_password(password.as_bytes(), &salt)
        .map_err(|e| ApiError::internal(format!("argon2: {e}")))?
        .to_string();
    Ok(DUMMY.get_or_init(|| hash).clone())
}

/// SHA-256 of a secret's text: what the store keeps.
pub fn sha256(text: &str) -> [u8; 32] {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, text.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// A new one-time secret: `prefix` + 256 random bits (base64url), and its hash.
pub fn new_secret(prefix: &str) -> Result<(String, [u8; 32]), ApiError> {
    let mut b = [0u8; 32];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| ApiError::internal("random source failed"))?;
    let text = format!("{prefix}{}", bonafide_core::b64::encode(&b));
    let hash = sha256(&text);
    Ok((text, hash))
}

/// A recovery code as people type it: 4 groups of 5 base32 characters (100 bits).
pub fn new_recovery_code() -> Result<(String, [u8; 32]), ApiError> {
    let mut b = [0u8; 16];
    aws_lc_rs::rand::fill(&mut b).map_err(|_| ApiError::internal("random source failed"))?;
    let chars: String = bonafide_core::totp::base32_encode(&b)
        .to_ascii_lowercase()
        .chars()
        .take(20)
        .collect();
    let code = format!(
        "{}-{}-{}-{}",
        &chars[0..5],
        &chars[5..10],
        &chars[10..15],
        &chars[15..20]
    );
    let hash = sha256(&normalise_recovery_code(&code));
    Ok((code, hash))
}

/// A recovery code as it is hashed: lower case, without dashes or spaces.
pub fn normalise_recovery_code(code: &str) -> String {
    code.chars()
        .filter(|c| !matches!(c, '-' | ' '))
        .flat_map(char::to_lowercase)
        .collect()
}

/// The access-token key (it signs nothing else) and its JWKS.
#[derive(Debug)]
pub struct SessionKeys {
    key: SigningKey,
    keys: KeySet,
}

impl SessionKeys {
    /// The stored key, or a new Ed25519 key stored now (sealed, one row).
    pub async fn load(store: &dyn Store, kek: &Kek, now_ms: i64) -> Result<Self, StoreError> {
        let slot = PrivateKeySlot::SessionKey;
        let fresh = SigningKey::generate(Algorithm::EdDSA)
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let pem = fresh
            .to_pkcs8_pem()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let candidate = ReceiptKeyRecord {
            private_pem: sealing::seal(kek, &slot, pem.expose_secret())?,
            created_at_ms: now_ms,
        };
        let stored = store.session_key(&candidate).await?;
        let pem = sealing::open(kek, &slot, &stored.private_pem)?;
        let key = SigningKey::from_pkcs8_pem(pem.expose_secret())
            .map_err(|e| StoreError::Backend(format!("session-key: {e}")))?;
        let mut keys = KeySet::new();
        keys.insert(
            bonafide_core::keys::VerifyingKey::from_jwk(key.verifying_key().jwk())
                .map_err(|e| StoreError::Backend(format!("session-key: {e}")))?,
        );
        Ok(SessionKeys { key, keys })
    }

    /// The JWK Set published at `/.well-known/session-jwks.json`.
    pub fn jwks(&self) -> bonafide_core::keys::Jwks {
        bonafide_core::keys::Jwks {
            keys: vec![self.key.verifying_key().jwk().clone()],
        }
    }
}

/// The `aud` of access tokens: the registry's API.
pub fn audience(state: &AppState) -> String {
    format!("{}/v1", state.config.public_url.trim_end_matches('/'))
}

/// Signs an access token for a session, valid [`ACCESS_TTL_S`] from `now_ms`: a
/// person's (`sub` their id, `amr` how they logged in), or an API key's (client
/// credentials: `sub` and `client_id` the key's public id, no `amr`). Either way `sid`
/// is the session, checked on every use.
pub fn access_token(state: &AppState, session: &Session, now_ms: i64) -> Result<String, ApiError> {
    let now_s = now_ms / 1000;
    let (sub, amr) = match &session.subject {
        SessionSubject::Person(person) => {
            let mut amr = vec!["pwd".to_owned()];
            if session.two_factor {
                amr.push("otp".to_owned());
            }
            (person.to_string(), amr)
        }
        SessionSubject::Key(hash) => (hash.public_id(), Vec::new()),
    };
    let claims = AccessClaims {
        iss: state.config.public_url.clone(),
        sub,
        aud: audience(state),
        exp: now_s + ACCESS_TTL_S,
        iat: now_s,
        jti: bonafide_core::hex(&crate::routes::random16()?),
        client_id: session.client_id.clone(),
        sid: session.id.to_string(),
        amr,
    };
    Ok(access_token::sign(&state.sessions.key, &claims)?)
}

/// Verifies an access token's signature (session key only), `typ at+jwt`, issuer,
/// audience and times.
fn verified_claims(state: &AppState, token: &str, hint: &str) -> Result<AccessClaims, ApiError> {
    let now_ms = state.now_ms();
    let aud = audience(state);
    let expect = access_token::Expect {
        issuer: &state.config.public_url,
        audience: &aud,
        now_s: now_ms / 1000,
        leeway_s: 0,
    };
    access_token::verify(token, &state.sessions.keys, expect)
        .map_err(|e| ApiError::unauthorized(format!("{e}: {hint}")))
}

/// The API key an access token was issued for (client credentials), if it is a key's
/// token (`sub` `key_…`); `None` for a person's. A token that does not verify, whose
/// session (refresh-token family) has ended, or whose key is revoked or expired now,
/// is a 401: each use looks them up again.
pub async fn key_of_token(
    state: &AppState,
    token: &str,
) -> Result<Option<Arc<bonafide_store::ApiKeyRecord>>, ApiError> {
    let claims = verified_claims(state, token, "ask for a new token")?;
    if !claims.sub.starts_with("key_") {
        return Ok(None);
    }
    if claims.client_id != claims.sub {
        return Err(ApiError::unauthorized("access token names no API key"));
    }
    let sid = SessionId::try_from(claims.sid.as_str())
        .map_err(|_| ApiError::unauthorized("access token names no session"))?;
    let session = state
        .store
        .session(&sid)
        .await?
        .filter(|s| s.revoked_at_ms.is_none())
        .ok_or_else(|| {
            ApiError::unauthorized("this token's session has ended: ask for a new token")
        })?;
    let now_ms = state.now_ms();
    let record = match session.key() {
        Some(hash) => state.api_key(hash).await?,
        None => None,
    }
    .filter(|r| r.hash.public_id() == claims.sub && r.live_at(now_ms))
    .ok_or_else(|| {
        ApiError::unauthorized("the API key this token was issued for is revoked or expired")
    })?;
    Ok(Some(record))
}

/// What a role may do in its organisation: the README's table, enforced here for
/// people and by the API-key extractors for keys.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Read the organisation, its members, what it owns; read as its issuers.
    Read,
    /// Act as its issuers: agents, tokens, issuer keys.
    ActAsIssuer,
    /// Create issuers and receivers for it.
    CreateResources,
    /// Invite people and change or remove members (owners only by an owner).
    ManageMembers,
    /// Read its security events.
    ReadSecurityEvents,
    /// Read its usage and quota.
    ReadUsage,
    /// Change its settings (require 2FA), make or remove owners.
    ManageOrg,
}

impl Permission {
    /// The least role that has it.
    pub fn least_role(self) -> Role {
        match self {
            Permission::Read => Role::Viewer,
            Permission::ActAsIssuer => Role::Member,
            Permission::CreateResources
            | Permission::ManageMembers
            | Permission::ReadSecurityEvents
            | Permission::ReadUsage => Role::Admin,
            Permission::ManageOrg => Role::Owner,
        }
    }

    /// Words for a refusal.
    fn describe(self) -> &'static str {
        match self {
            Permission::Read => "read this organisation",
            Permission::ActAsIssuer => "act as this organisation's issuers",
            Permission::CreateResources => "create issuers and receivers",
            Permission::ManageMembers => "manage members",
            Permission::ReadSecurityEvents => "read security events",
            Permission::ReadUsage => "read usage and quota",
            Permission::ManageOrg => "change the organisation's settings or owners",
        }
    }
}

/// A person authenticated by an access token whose session is live.
#[derive(Debug, Clone)]
pub struct PersonAuth {
    /// Who.
    pub person: Person,
    /// Their session.
    pub session: Session,
}

impl PersonAuth {
    /// Checks an access token: signature (session key only), `typ at+jwt`, issuer,
    /// audience, times; then its session live and its person present.
    pub async fn from_token(state: &AppState, token: &str) -> Result<Self, ApiError> {
        let claims = verified_claims(state, token, "log in again")?;
        let sid = SessionId::try_from(claims.sid.as_str())
            .map_err(|_| ApiError::unauthorized("access token names no session"))?;
        let session = state
            .store
            .session(&sid)
            .await?
            .filter(|s| {
                s.revoked_at_ms.is_none() && s.person().is_some_and(|p| p.as_str() == claims.sub)
            })
            .ok_or_else(|| ApiError::unauthorized("this session has ended: log in again"))?;
        let person = match session.person() {
            Some(id) => state.store.person(id).await?,
            None => None,
        }
        .ok_or_else(|| ApiError::unauthorized("this account no longer exists"))?;
        Ok(PersonAuth { person, session })
    }

    /// The person an access token names, if its signature, issuer, audience and
    /// expiry check out; the session is not read (the rate limiter's cheap check: the
    /// route still refuses a token whose session ended).
    pub fn person_of_token(state: &AppState, token: &str) -> Option<String> {
        let now_ms = state.now_ms();
        let aud = audience(state);
        let expect = access_token::Expect {
            issuer: &state.config.public_url,
            audience: &aud,
            now_s: now_ms / 1000,
            leeway_s: 0,
        };
        access_token::verify(token, &state.sessions.keys, expect)
            .ok()
            .map(|c| c.sub)
    }

    /// The audit log's actor.
    pub fn actor(&self) -> bonafide_core::audit::Actor {
        bonafide_core::audit::Actor::Person {
            id: self.person.id.to_string(),
        }
    }

    /// The organisation and this person's role in it, if they may do `what` there.
    /// Not a member: 404, as for a missing organisation (nobody learns which exist).
    /// A role short of it: 403. An organisation that requires 2FA, or an owner's or
    /// admin's power used from a session without it by a person who enrolled: 403
    /// `TWO_FACTOR_REQUIRED`.
    pub async fn require(
        &self,
        state: &AppState,
        org: &OrgId,
        what: Permission,
    ) -> Result<(Organisation, Role), ApiError> {
        let role = state
            .store
            .memberships_of(&self.person.id)
            .await?
            .into_iter()
            .find(|m| &m.org_id == org)
            .map(|m| m.role)
            .ok_or_else(|| ApiError::not_found("organisation"))?;
        let organisation = state
            .store
            .org(org)
            .await?
            .ok_or_else(|| ApiError::not_found("organisation"))?;
        if !role.at_least(what.least_role()) {
            return Err(ApiError::forbidden(format!(
                "your role here is {role}; to {} you need {} or above",
                what.describe(),
                what.least_role()
            )));
        }
        if organisation.require_2fa && !self.session.two_factor {
            return Err(two_factor_required(
                "this organisation requires two-factor authentication: enrol (POST /v1/auth/totp/enroll) and log in with a code",
            ));
        }
        Ok((organisation, role))
    }
}

/// 403 `TWO_FACTOR_REQUIRED`.
pub fn two_factor_required(message: &str) -> ApiError {
    ApiError::new(
        axum::http::StatusCode::FORBIDDEN,
        ErrorCode::TwoFactorRequired,
        message,
    )
}

/// The bearer text, when it is an access token (a JWT) rather than a `bfk_` key.
pub fn bearer_access_token(parts: &Parts) -> Option<&str> {
    match crate::auth::presented(&parts.headers) {
        crate::auth::Presented::Person(token) => Some(token),
        _ => None,
    }
}

impl FromRequestParts<Arc<AppState>> for PersonAuth {
    type Rejection = ApiError;
    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let token = bearer_access_token(parts).ok_or_else(|| {
            ApiError::unauthorized(
                "this endpoint needs a person's access token in `Authorization: Bearer …` (POST /v1/auth/login)",
            )
        })?;
        PersonAuth::from_token(state, token).await
    }
}

// ---- login backoff

/// Failures an account may have in a row from one address before backoff begins (the
/// backoff applies to that address only: anyone else can still log in).
pub const ACCOUNT_FREE_FAILURES: u32 = 5;
/// Failures an account may have in a row from all addresses together before backoff
/// begins everywhere: the ceiling for guessing from many addresses, high enough that
/// delaying someone else's login takes a distributed attack.
pub const ACCOUNT_CEILING_FREE_FAILURES: u32 = 100;
/// Failures one address may have in a row before backoff begins (NAT: many people).
pub const IP_FREE_FAILURES: u32 = 20;
/// Longest wait imposed, seconds.
pub const MAX_BACKOFF_S: i64 = bonafide_store::accounts::MAX_BACKOFF_S;
/// A run of failures is forgotten after this long without one, milliseconds.
pub const FAILURE_WINDOW_MS: i64 = 3_600_000;

/// How long until a subject with these failures may try again, milliseconds (0: now).
/// Beyond `free` failures: 2^(n − free) seconds from the last one, at most
/// [`MAX_BACKOFF_S`] (the store applies the same rule when it reserves an attempt).
pub fn backoff_remaining_ms(failures: u32, last_failure_ms: i64, free: u32, now_ms: i64) -> i64 {
    bonafide_store::accounts::backoff_remaining_ms(failures, last_failure_ms, free, now_ms)
}

/// The throttle subject of an account tried from one address (none known: one
/// shared `unknown` address): a hash of both, so the table holds neither.
pub fn pair_subject(email: &str, ip: Option<std::net::IpAddr>) -> String {
    let ip = ip.map_or_else(|| "unknown".to_owned(), ip_subject);
    format!(
        "pair:{}",
        bonafide_core::hex(&sha256(&format!("{email}\n{ip}")))
    )
}

/// The throttle subject of an email (known or not): its SHA-256, so the table holds
/// no address.
pub fn account_subject(email: &str) -> String {
    format!("acct:{}", bonafide_core::hex(&sha256(email)))
}

/// The throttle subject of a client address: an IPv4 address, or an IPv6 address's
/// /64 (one subscriber's prefix: whoever has one address has 2^64 of them).
pub fn ip_subject(ip: std::net::IpAddr) -> String {
    match ip {
        std::net::IpAddr::V4(v4) => format!("ip:{v4}"),
        std::net::IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => format!("ip:{v4}"),
            None => {
                let s = v6.segments();
                format!("ip6:{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn role_table_is_ordered() {
        use Permission::*;
        let table = [
            (Role::Owner, [true, true, true, true, true, true, true]),
            (Role::Admin, [true, true, true, true, true, true, false]),
            (
                Role::Member,
                [true, true, false, false, false, false, false],
            ),
            (
                Role::Viewer,
                [true, false, false, false, false, false, false],
            ),
        ];
        for (role, want) in table {
            let got = [
                Read,
                ActAsIssuer,
                CreateResources,
                ManageMembers,
                ReadSecurityEvents,
                ReadUsage,
                ManageOrg,
            ]
            .map(|p| role.at_least(p.least_role()));
            assert_eq!(got, want, "{role}");
        }
    }

    #[test]
    fn addresses_are_throttled_by_v4_address_or_v6_prefix() {
        let ip = |s: &str| ip_subject(s.parse().unwrap());
        assert_eq!(ip("192.0.2.7"), "ip:192.0.2.7");
        assert_eq!(ip("::ffff:192.0.2.7"), "ip:192.0.2.7");
        assert_eq!(ip("2001:db8:1:2:aaaa::1"), ip("2001:db8:1:2:bbbb::9"));
        assert_ne!(ip("2001:db8:1:2::1"), ip("2001:db8:1:3::1"));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        assert_eq!(backoff_remaining_ms(4, 0, 5, 0), 0);
        assert_eq!(backoff_remaining_ms(5, 0, 5, 0), 1000);
        assert_eq!(backoff_remaining_ms(7, 0, 5, 0), 4000);
        assert_eq!(backoff_remaining_ms(7, 0, 5, 3000), 1000);
        assert_eq!(backoff_remaining_ms(7, 0, 5, 9000), 0);
        assert_eq!(backoff_remaining_ms(60, 0, 5, 0), MAX_BACKOFF_S * 1000);
    }

    #[test]
    fn recovery_codes_normalise() {
        let (code, hash) = new_recovery_code().unwrap();
        assert_eq!(code.len(), 23);
        assert_eq!(sha256(&normalise_recovery_code(&code.to_uppercase())), hash);
        assert_eq!(
            sha256(&normalise_recovery_code(&code.replace('-', " "))),
            hash
        );
    }

    /// The argon2id cost of one login attempt, measured (bench/RESULTS.md):
    /// `cargo test -p bonafide-server --lib argon2id_cost -- --ignored --nocapture`
    /// (argon2 and blake2 are built optimised even in the dev profile).
    #[tokio::test]
    #[ignore = "a measurement, not a check"]
    async fn argon2id_cost_per_login_attempt() {
        let h = hash_password("correct horse battery staple".into())
            .await
            .unwrap();
        let mut times = Vec::new();
        for _ in 0..30 {
            let t = std::time::Instant::now();
            assert!(verify_blocking(&h, "correct horse battery staple").unwrap());
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "argon2id m={ARGON2_M_KIB} KiB t={ARGON2_T} p={ARGON2_P}: min {:?}, median {:?}, max {:?} per verify (30 runs)",
            times[0], times[15], times[29]
        );
    }

    #[tokio::test]
    async fn passwords_hash_with_owasp_argon2id_and_verify() {
        let h = hash_password("correct horse battery".into()).await.unwrap();
        assert!(h.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{h}");
        assert!(
            verify_password(Some(h.clone()), "correct horse battery".into())
                .await
                .unwrap()
        );
        assert!(
            !verify_password(Some(h), "correct horse batterY".into())
                .await
                .unwrap()
        );
        assert!(
            !verify_password(None, "anything at all here".into())
                .await
                .unwrap()
        );
    }
}
