//! What organisations, people and sessions (issue 18) store. Secrets never appear
//! here as given: passwords are argon2id PHC strings (made by the server), tokens
//! and recovery codes SHA-256 hashes, TOTP secrets sealed text.

use std::fmt;

use bonafide_core::ids::{IssuerId, OrgId, PersonId, ReceiverId, SessionId};

/// A person's role in an organisation. What each may do is the server's table
/// (`server::accounts::Permission`), documented in the README.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Everything, including the organisation's settings and other owners.
    Owner,
    /// Manages members (not owners), issuers, receivers and agents.
    Admin,
    /// Acts for the organisation's issuers and receivers: agents, tokens.
    Member,
    /// Reads only.
    Viewer,
}

impl Role {
    /// The stored and wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    /// Parses a stored or wire name.
    pub fn parse(text: &str) -> Option<Role> {
        Some(match text {
            "owner" => Role::Owner,
            "admin" => Role::Admin,
            "member" => Role::Member,
            "viewer" => Role::Viewer,
            _ => return None,
        })
    }

    /// Whether this role includes everything `other` may do (owner ⊇ admin ⊇ member ⊇
    /// viewer).
    pub fn at_least(self, other: Role) -> bool {
        self <= other
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An organisation: owns issuers and receivers; people belong to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Organisation {
    /// `org_…`.
    pub id: OrgId,
    /// Unique display name.
    pub name: String,
    /// Every member needs a second factor to act in it.
    pub require_2fa: bool,
    /// Creation time.
    pub created_at_ms: i64,
}

/// A person who logs in. `Debug` redacts the secrets.
#[derive(Clone, PartialEq, Eq)]
pub struct Person {
    /// `usr_…`.
    pub id: PersonId,
    /// Normalised email (`bonafide_core::password::normalise_email`).
    pub email: String,
    /// argon2id PHC string; `None` until an invitation is accepted.
    pub password_hash: Option<String>,
    /// The TOTP secret, sealed; with `totp_enabled_at_ms` `None`, an enrolment not
    /// yet confirmed.
    pub totp_secret: Option<String>,
    /// When TOTP was confirmed: from then on login needs a code.
    pub totp_enabled_at_ms: Option<i64>,
    /// The last TOTP time step accepted (codes are single use).
    pub totp_last_step: Option<i64>,
    /// Creation time.
    pub created_at_ms: i64,
}

impl Person {
    /// Whether login needs a second factor.
    pub fn totp_enabled(&self) -> bool {
        self.totp_enabled_at_ms.is_some() && self.totp_secret.is_some()
    }
}

impl fmt::Debug for Person {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Person")
            .field("id", &self.id)
            .field("email", &self.email)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "totp_secret",
                &self.totp_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("totp_enabled_at_ms", &self.totp_enabled_at_ms)
            .field("created_at_ms", &self.created_at_ms)
            .finish()
    }
}

/// A person's place in an organisation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    /// The organisation.
    pub org_id: OrgId,
    /// The person.
    pub person_id: PersonId,
    /// The person's email, for listings.
    pub email: String,
    /// Their role.
    pub role: Role,
    /// When they joined.
    pub created_at_ms: i64,
}

/// An invitation to join an organisation, by the SHA-256 of its one-time token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invitation {
    /// SHA-256 of the token text.
    pub token_hash: [u8; 32],
    /// Into which organisation.
    pub org_id: OrgId,
    /// For whom (normalised email).
    pub email: String,
    /// With which role.
    pub role: Role,
    /// When made.
    pub created_at_ms: i64,
    /// Not accepted after this.
    pub expires_at_ms: i64,
    /// When accepted (once only).
    pub accepted_at_ms: Option<i64>,
}

/// Whose a session is: a person's (a login) or an API key's (a client-credentials
/// exchange at the token endpoint). One rotation and reuse rule for both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionSubject {
    /// A person who logged in.
    Person(PersonId),
    /// An API key, by its hash.
    Key(bonafide_core::apikey::ApiKeyHash),
}

/// A session: one refresh-token family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// `ses_…`.
    pub id: SessionId,
    /// Whose.
    pub subject: SessionSubject,
    /// The client it was made for.
    pub client_id: String,
    /// Whether a second factor was checked at login (never, for a key).
    pub two_factor: bool,
    /// The client address at login, as the server saw it.
    pub ip: Option<String>,
    /// The `User-Agent` at login (bounded by the server).
    pub user_agent: Option<String>,
    /// Login time.
    pub created_at_ms: i64,
    /// Last login or refresh.
    pub last_used_ms: i64,
    /// When its current refresh token expires.
    pub expires_at_ms: i64,
    /// When it ended, if it did.
    pub revoked_at_ms: Option<i64>,
    /// Why (`logout`, `revoked`, `refresh_reuse`, `password_changed`, …).
    pub revoke_reason: Option<String>,
}

/// A refresh token as stored, with its session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    /// Its session (family).
    pub session: Session,
    /// When it was made.
    pub created_at_ms: i64,
    /// When it expires.
    pub expires_at_ms: i64,
    /// When it was used (rotated): a second use is reuse.
    pub used_at_ms: Option<i64>,
}

/// A new refresh token: its hash and expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NewRefresh {
    /// SHA-256 of the token text.
    pub hash: [u8; 32],
    /// When it expires.
    pub expires_at_ms: i64,
}

impl Session {
    /// The person, if it is a person's session.
    pub fn person(&self) -> Option<&PersonId> {
        match &self.subject {
            SessionSubject::Person(p) => Some(p),
            SessionSubject::Key(_) => None,
        }
    }

    /// The API key's hash, if it is a key's session.
    pub fn key(&self) -> Option<&bonafide_core::apikey::ApiKeyHash> {
        match &self.subject {
            SessionSubject::Key(k) => Some(k),
            SessionSubject::Person(_) => None,
        }
    }
}

/// What a [`crate::Store::rotate_refresh`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rotation {
    /// The old token was marked used and the new one stored.
    Rotated,
    /// The old token was used before (or concurrently): nothing stored.
    AlreadyUsed,
    /// The session ended, or the token is unknown or expired: nothing stored.
    Refused,
}

/// Who owns an issuer or a receiver.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Owned {
    /// An issuer.
    Issuer(IssuerId),
    /// A receiver.
    Receiver(ReceiverId),
}

/// A security event (login failure, refused refresh reuse, lockout): kept for a
/// retention period, outside the permanent log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecurityEvent {
    /// Its number (0 when not yet stored).
    pub id: i64,
    /// `login_failed`, `totp_failed`, `refresh_reuse`.
    pub kind: String,
    /// The person it concerns, when the email was an account's.
    pub person_id: Option<PersonId>,
    /// The organisation it concerns, when one.
    pub org_id: Option<OrgId>,
    /// The client address.
    pub ip: Option<String>,
    /// What happened, in words (never a secret, never the email tried).
    pub detail: String,
    /// When.
    pub created_at_ms: i64,
}

/// Login failures of one subject (an account key or an address).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Throttle {
    /// Failures in a row.
    pub failures: u32,
    /// The last one.
    pub last_failure_ms: i64,
}

/// One subject of a login reservation ([`crate::Store::login_reserve`]): its name and
/// the failures it may have in a row before backoff begins.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ThrottleRule {
    /// The subject (the server's naming: an account, an account from one address, an
    /// address).
    pub subject: String,
    /// Failures in a row allowed before backoff.
    pub free: u32,
}

/// Longest wait backoff imposes, seconds.
pub const MAX_BACKOFF_S: i64 = 15 * 60;

/// How long until a subject with these failures may try again, milliseconds (0: now).
/// Beyond `free` failures: 2^(n − free) seconds from the last one, at most
/// [`MAX_BACKOFF_S`]. Pure: both backends apply it inside their transaction.
pub fn backoff_remaining_ms(failures: u32, last_failure_ms: i64, free: u32, now_ms: i64) -> i64 {
    if failures < free {
        return 0;
    }
    let exp = (failures - free).min(20);
    let wait_s = (1i64 << exp).min(MAX_BACKOFF_S);
    last_failure_ms
        .saturating_add(wait_s * 1000)
        .saturating_sub(now_ms)
        .max(0)
}

// ---- rows both backends read (no SQL here: the column lists are the backends')

use crate::StoreError;

fn bad(what: &str, e: impl fmt::Display) -> StoreError {
    StoreError::Backend(format!("stored {what} does not parse: {e}"))
}

fn hash32(what: &str, bytes: Vec<u8>) -> Result<[u8; 32], StoreError> {
    <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| bad(what, "not 32 bytes"))
}

fn role(text: &str) -> Result<Role, StoreError> {
    Role::parse(text).ok_or_else(|| bad("role", text))
}

#[derive(sqlx::FromRow)]
pub(crate) struct OrgRow {
    pub(crate) id: String,
    pub(crate) name: String,
    pub(crate) require_2fa: bool,
    pub(crate) created_at_ms: i64,
}

impl OrgRow {
    pub(crate) fn into_org(self) -> Result<Organisation, StoreError> {
        Ok(Organisation {
            id: OrgId::try_from(self.id.as_str()).map_err(|e| bad("organisation", e))?,
            name: self.name,
            require_2fa: self.require_2fa,
            created_at_ms: self.created_at_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct PersonRow {
    pub(crate) id: String,
    pub(crate) email: String,
    pub(crate) password_hash: Option<String>,
    pub(crate) totp_secret: Option<String>,
    pub(crate) totp_enabled_at_ms: Option<i64>,
    pub(crate) totp_last_step: Option<i64>,
    pub(crate) created_at_ms: i64,
}

impl PersonRow {
    pub(crate) fn into_person(self) -> Result<Person, StoreError> {
        Ok(Person {
            id: PersonId::try_from(self.id.as_str()).map_err(|e| bad("person", e))?,
            email: self.email,
            password_hash: self.password_hash,
            totp_secret: self.totp_secret,
            totp_enabled_at_ms: self.totp_enabled_at_ms,
            totp_last_step: self.totp_last_step,
            created_at_ms: self.created_at_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct MembershipRow {
    pub(crate) org_id: String,
    pub(crate) person_id: String,
    pub(crate) email: String,
    pub(crate) role: String,
    pub(crate) created_at_ms: i64,
}

impl MembershipRow {
    pub(crate) fn into_membership(self) -> Result<Membership, StoreError> {
        Ok(Membership {
            org_id: OrgId::try_from(self.org_id.as_str()).map_err(|e| bad("membership", e))?,
            person_id: PersonId::try_from(self.person_id.as_str())
                .map_err(|e| bad("membership", e))?,
            email: self.email,
            role: role(&self.role)?,
            created_at_ms: self.created_at_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct InvitationRow {
    pub(crate) token_hash: Vec<u8>,
    pub(crate) org_id: String,
    pub(crate) email: String,
    pub(crate) role: String,
    pub(crate) created_at_ms: i64,
    pub(crate) expires_at_ms: i64,
    pub(crate) accepted_at_ms: Option<i64>,
}

impl InvitationRow {
    pub(crate) fn into_invitation(self) -> Result<Invitation, StoreError> {
        Ok(Invitation {
            token_hash: hash32("invitation", self.token_hash)?,
            org_id: OrgId::try_from(self.org_id.as_str()).map_err(|e| bad("invitation", e))?,
            email: self.email,
            role: role(&self.role)?,
            created_at_ms: self.created_at_ms,
            expires_at_ms: self.expires_at_ms,
            accepted_at_ms: self.accepted_at_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    pub(crate) id: String,
    pub(crate) person_id: Option<String>,
    pub(crate) key_hash: Option<Vec<u8>>,
    pub(crate) client_id: String,
    pub(crate) two_factor: bool,
    pub(crate) ip: Option<String>,
    pub(crate) user_agent: Option<String>,
    pub(crate) created_at_ms: i64,
    pub(crate) last_used_ms: i64,
    pub(crate) expires_at_ms: i64,
    pub(crate) revoked_at_ms: Option<i64>,
    pub(crate) revoke_reason: Option<String>,
}

impl SessionRow {
    pub(crate) fn into_session(self) -> Result<Session, StoreError> {
        let subject = match (self.person_id, self.key_hash) {
            (Some(p), None) => SessionSubject::Person(
                PersonId::try_from(p.as_str()).map_err(|e| bad("session", e))?,
            ),
            (None, Some(k)) => {
                SessionSubject::Key(bonafide_core::apikey::ApiKeyHash(hash32("session key", k)?))
            }
            _ => return Err(bad("session", "not exactly one of person and key")),
        };
        Ok(Session {
            id: SessionId::try_from(self.id.as_str()).map_err(|e| bad("session", e))?,
            subject,
            client_id: self.client_id,
            two_factor: self.two_factor,
            ip: self.ip,
            user_agent: self.user_agent,
            created_at_ms: self.created_at_ms,
            last_used_ms: self.last_used_ms,
            expires_at_ms: self.expires_at_ms,
            revoked_at_ms: self.revoked_at_ms,
            revoke_reason: self.revoke_reason,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct RefreshRow {
    #[sqlx(flatten)]
    pub(crate) session: SessionRow,
    pub(crate) rt_created_at_ms: i64,
    pub(crate) rt_expires_at_ms: i64,
    pub(crate) rt_used_at_ms: Option<i64>,
}

impl RefreshRow {
    pub(crate) fn into_record(self) -> Result<RefreshRecord, StoreError> {
        Ok(RefreshRecord {
            session: self.session.into_session()?,
            created_at_ms: self.rt_created_at_ms,
            expires_at_ms: self.rt_expires_at_ms,
            used_at_ms: self.rt_used_at_ms,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SecurityEventRow {
    pub(crate) id: i64,
    pub(crate) kind: String,
    pub(crate) person_id: Option<String>,
    pub(crate) org_id: Option<String>,
    pub(crate) ip: Option<String>,
    pub(crate) detail: String,
    pub(crate) created_at_ms: i64,
}

impl SecurityEventRow {
    pub(crate) fn into_event(self) -> Result<SecurityEvent, StoreError> {
        Ok(SecurityEvent {
            id: self.id,
            kind: self.kind,
            person_id: self
                .person_id
                .map(|p| PersonId::try_from(p.as_str()).map_err(|e| bad("security event", e)))
                .transpose()?,
            org_id: self
                .org_id
                .map(|o| OrgId::try_from(o.as_str()).map_err(|e| bad("security event", e)))
                .transpose()?,
            ip: self.ip,
            detail: self.detail,
            created_at_ms: self.created_at_ms,
        })
    }
}

/// Parses an owned row (`kind`, `id`).
pub(crate) fn owned(kind: &str, id: &str) -> Result<Owned, StoreError> {
    match kind {
        "issuer" => Ok(Owned::Issuer(
            IssuerId::try_from(id).map_err(|e| bad("owned issuer", e))?,
        )),
        "receiver" => Ok(Owned::Receiver(
            ReceiverId::try_from(id).map_err(|e| bad("owned receiver", e))?,
        )),
        other => Err(bad("owned kind", other)),
    }
}

/// The column lists, as literals for `concat!` in both backends.
macro_rules! person_columns {
    () => {
        "id, email, password_hash, totp_secret, totp_enabled_at_ms, totp_last_step, created_at_ms"
    };
}
macro_rules! session_columns {
    () => {
        "s.id, s.person_id, s.key_hash, s.client_id, s.two_factor, s.ip, s.user_agent, s.created_at_ms, \
         s.last_used_ms, s.expires_at_ms, s.revoked_at_ms, s.revoke_reason"
    };
}
pub(crate) use {person_columns, session_columns};
