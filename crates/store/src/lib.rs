//! Bonafide persistence: one domain-shaped trait, [`Store`], and its backends.
//!
//! The trait speaks the registry's language (create an issuer with its key, revoke an
//! agent and its tokens, rotate the signing key), never SQL: each backend is free in
//! how it stores things, and the same conformance suite ([`conformance`]) must pass on
//! every backend. The backend is chosen once, at start-up.
//!
//! What does not depend on the backend is written once, over narrow transaction
//! traits a backend implements with its SQL: [`ledger`] (the decision batch) and
//! [`log`] (the audit log's layout, the change feed, the lock order). Each backend
//! (`sqlite.rs`, `postgres.rs`) implements those traits and [`Store`], and passes the
//! conformance suite: its own tests expand `conformance_tests!` with a `fresh` store,
//! and `conformance::run_at` runs the same cases against the store at a URL
//! (`BONAFIDE_TEST_STORE_URL`; each case on a fresh, empty store).
//!
//! Architecture invariant: only this crate knows SQL, and each backend's SQL stays in
//! its module and its migrations (`sqlite.rs` and `migrations/sqlite/`, `postgres.rs`
//! and `migrations/postgres/`); the shared logic (`ledger`, `log`) has none. Times are
//! Unix milliseconds (`_ms`) unless a field says seconds (`_s`, as in JWT claims); the
//! caller passes `now`, the store reads no clock for what it stores or decides.

use std::fmt;

use async_trait::async_trait;
use bonafide_core::apikey::{ApiKeyHash, KeyKind};
use bonafide_core::ids::{
    AgentId, IssuerId, OrgId, PersonId, ReceiptId, ReceiverId, SessionId, TokenId,
};
use bonafide_core::keys::Algorithm;
use bonafide_core::merkle::Hash;
use bonafide_core::policy::Decimal;

/// The columns `rows::ApiKeyRow` reads, as a literal (sqlx takes only static SQL).
macro_rules! api_key_columns {
    () => {
        "hash, kind, owner, created_at_ms, name, scopes, expires_at_ms, created_by, \
         last_used_at_ms, revoked_at_ms, rotated_from"
    };
}

pub mod accounts;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
pub mod copy;
pub mod events;
pub mod ledger;
pub mod limits;
pub mod log;
mod postgres;
pub mod quota;
mod rows;
pub mod sdk_verifications;
mod sqlite;

pub use accounts::{
    Invitation, Membership, NewRefresh, Organisation, Owned, Person, RefreshRecord, Role, Rotation,
    SecurityEvent, Session, SessionSubject, Throttle, ThrottleRule,
};
pub use events::{EventAck, Paused, Webhook, WebhookFailure};
pub use limits::{InheritDecide, InheritedLimit, RateGrant, RateLimitSetting, RateTake};
pub use postgres::{PostgresOptions, PostgresStore};
pub use quota::{QuotaClaim, QuotaGrant, QuotaTake, UsageCount};
pub use sdk_verifications::{
    NewSdkVerification, ReportOutcome, SdkReport, SdkReportKind, SdkVerification,
};
pub use sqlite::SqliteStore;

/// Where a registry keeps its data. `serve` and every CLI command that opens the store
/// directly (`keys rotate`) go through [`open`], so they always agree on the backend.
///
/// `Debug` and `Display` never show a PostgreSQL URL's password.
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Location {
    /// Embedded SQLite: `<dir>/bonafide.db`.
    DataDir(std::path::PathBuf),
    /// A PostgreSQL database: a `postgres://` or `postgresql://` URL, with libpq's
    /// parameters (`sslmode`, `sslrootcert`, `options`, …).
    Postgres(String),
}

/// Text that names no store this build can open ([`Location::parse`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LocationError {
    /// Not `<scheme>:<rest>`, or nothing after the scheme.
    #[error("`{0}` is not a store URL: expected `sqlite://<data dir>` or `postgres://…`")]
    Malformed(String),
    /// A scheme this build has no backend for.
    #[error("no `{0}` backend in this build (backends: `sqlite://<data dir>`, `postgres://…`)")]
    UnsupportedScheme(String),
}

impl Location {
    /// Parses a store URL: `sqlite://<data dir>` (or `sqlite:<data dir>`; a path, so
    /// `sqlite:///var/lib/bonafide` is absolute), or a `postgres://` /
    /// `postgresql://` URL, kept whole for libpq-style parsing at open. Any other
    /// scheme is [`LocationError::UnsupportedScheme`], never a silent fallback. An
    /// error never repeats a PostgreSQL URL (it may hold a password).
    pub fn parse(text: &str) -> Result<Location, LocationError> {
        let malformed = || LocationError::Malformed(text.to_owned());
        let (scheme, rest) = text.split_once(':').ok_or_else(malformed)?;
        if scheme.is_empty()
            || !scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        {
            return Err(malformed());
        }
        match scheme.to_ascii_lowercase().as_str() {
            "sqlite" => {
                let path = rest.strip_prefix("//").unwrap_or(rest);
                if path.is_empty() {
                    return Err(malformed());
                }
                Ok(Location::DataDir(std::path::PathBuf::from(path)))
            }
            "postgres" | "postgresql" => match rest.strip_prefix("//") {
                Some(after) if !after.is_empty() => Ok(Location::Postgres(text.to_owned())),
                _ => Err(LocationError::Malformed(format!("{scheme}:…"))),
            },
            other => Err(LocationError::UnsupportedScheme(other.to_owned())),
        }
    }

    /// Whether a registry exists there already (never creates one). PostgreSQL:
    /// whether the database holds a registry's schema (an unreachable server is an
    /// error, not a "no").
    pub async fn exists(&self) -> Result<bool, StoreError> {
        match self {
            Location::DataDir(dir) => Ok(SqliteStore::exists_in(dir)),
            Location::Postgres(url) => PostgresStore::exists_at(url).await,
        }
    }
}

/// Whether `text` names a PostgreSQL database (scheme compared case-insensitively).
pub fn is_postgres_url(text: &str) -> bool {
    let scheme = text.split_once("://").map(|(s, _)| s);
    scheme
        .is_some_and(|s| s.eq_ignore_ascii_case("postgres") || s.eq_ignore_ascii_case("postgresql"))
}

/// `url` with any password replaced by `***`: the one in the user-info part
/// (`user:secret@host`) and a `password=` query parameter.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _)) => format!("{user}:***@{host}"),
            None => format!("{userinfo}@{host}"),
        },
        None => authority.to_owned(),
    };
    let tail = match tail.split_once('?') {
        Some((path, query)) => {
            let params: Vec<String> = query
                .split('&')
                .map(|param| match param.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => param.to_owned(),
                })
                .collect();
            format!("{path}?{}", params.join("&"))
        }
        None => tail.to_owned(),
    };
    format!("{scheme}://{authority}{tail}")
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::DataDir(dir) => write!(f, "the data dir `{}`", dir.display()),
            Location::Postgres(url) => write!(f, "the database `{}`", redact_url(url)),
        }
    }
}

impl fmt::Debug for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::DataDir(dir) => f.debug_tuple("DataDir").field(dir).finish(),
            Location::Postgres(url) => f.debug_tuple("Postgres").field(&redact_url(url)).finish(),
        }
    }
}

/// Opens (creating if missing) the store at `location`, schema brought up to date.
/// A PostgreSQL database must exist; its tables are created on first open.
pub async fn open(location: &Location) -> Result<std::sync::Arc<dyn Store>, StoreError> {
    match location {
        Location::DataDir(dir) => Ok(std::sync::Arc::new(SqliteStore::open(dir).await?)),
        Location::Postgres(url) => Ok(std::sync::Arc::new(PostgresStore::open(url).await?)),
    }
}

/// Which rule a [`StoreError::Conflict`] broke. Backends map their constraint
/// violations to these; clients see [`ConflictKind::message`], never a backend's text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ConflictKind {
    /// An issuer with an equivalent name exists.
    IssuerNameTaken,
    /// A receiver with this name exists.
    ReceiverNameTaken,
    /// Another receiver holds this audience.
    AudienceTaken,
    /// A domain another issuer verified.
    DomainTaken,
    /// The issuer key is registered already.
    IssuerKeyRegistered,
    /// Another of the issuer's keys has this alias.
    IssuerKeyAliasTaken,
    /// The key is one of the agent's keys already.
    AgentKeyRegistered,
    /// The key belongs to another agent.
    KeyNotAgents,
    /// The public key is (or was) another issuer's agent's key.
    KeyHeldElsewhere,
    /// The agent is revoked, for good.
    AgentRevoked,
    /// The only admin key.
    LastAdminKey,
    /// The key was revoked; it never becomes valid again.
    KeyRevoked,
    /// A checkpoint of the same size with another root.
    CheckpointDiffers,
    /// An idempotency key used before.
    IdempotencyKeyUsed,
    /// A budget charge above the cap, negative, or without a budget.
    BudgetCharge,
    /// The decision cannot be written to the audit log.
    Unauditable,
    /// Another signing key is active.
    AnotherActiveKey,
    /// An object with this id exists (ids are random: a bug or a replayed write).
    IdTaken,
    /// An organisation with this name exists.
    OrgNameTaken,
    /// The organisation's only owner cannot stop being one.
    LastOwner,
    /// The identity has as many live API keys as it may have.
    TooManyKeys,
    /// The person a key's chain was made by is no longer a member of the organisation
    /// owning the key's identity.
    MakerNotMember,
    /// Two-factor authentication is on already.
    TotpEnabled,
    /// An audit prune that does not continue the pruned prefix up to a tile boundary
    /// within the signed, indexed log.
    PruneRange,
}

impl ConflictKind {
    /// What clients are told.
    pub fn message(self) -> &'static str {
        match self {
            Self::IssuerNameTaken => "issuer name is taken",
            Self::ReceiverNameTaken => "receiver name is taken",
            Self::AudienceTaken => "audience held by another receiver",
            Self::DomainTaken => "domain held by another issuer",
            Self::IssuerKeyRegistered => "this key is already registered",
            Self::IssuerKeyAliasTaken => {
                "another of your keys is registered under this `kid`: an alias names one key"
            }
            Self::AgentKeyRegistered => "this key is already one of the agent's keys",
            Self::KeyNotAgents => "the key is not this agent's",
            Self::KeyHeldElsewhere => {
                "this public key is registered to another issuer's agent: an agent's key is held by one issuer"
            }
            Self::AgentRevoked => "agent is revoked; revocation is permanent",
            Self::LastAdminKey => "the last admin key cannot be revoked",
            Self::KeyRevoked => "this key was revoked; make a new one",
            Self::CheckpointDiffers => "a checkpoint of this size with another root hash exists",
            Self::IdempotencyKeyUsed => "idempotency key already used",
            Self::BudgetCharge => "the charge would take the budget above its cap",
            Self::Unauditable => "this request cannot be audited",
            Self::AnotherActiveKey => "another signing key is active",
            Self::IdTaken => "already exists",
            Self::OrgNameTaken => "organisation name is taken",
            Self::TotpEnabled => {
                "two-factor authentication is on already: turn it off first to enrol again"
            }
            Self::LastOwner => "an organisation needs an owner: make another member owner first",
            Self::TooManyKeys => {
                "this identity has as many live API keys as it may have: revoke one first (or rotate without a grace period)"
            }
            Self::PruneRange => {
                "the audit log is pruned from where its pruned prefix ends, by whole tiles of 256 records, up to its latest signed checkpoint"
            }
            Self::MakerNotMember => {
                "the person whose key made this one is no longer a member of the organisation that owns it: their keys are revoked"
            }
        }
    }
}

impl fmt::Display for ConflictKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// What went wrong in the store.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No such object, or not the caller's (the store never tells the two apart).
    #[error("not found")]
    NotFound,
    /// The operation contradicts what is stored (a name taken, a revoked agent, a
    /// budget's cap): which rule, never a backend's message text.
    #[error("conflict: {0}")]
    Conflict(ConflictKind),
    /// The backend failed; the text is for logs, not for clients.
    #[error("storage backend error: {0}")]
    Backend(String),
    /// No space left for the write (a full disk): nothing of the operation was
    /// written, and the same call succeeds once space is freed. The text is for logs.
    #[error("storage full: {0}")]
    Full(String),
    /// The store cannot take the operation now for another reason of its own (an I/O
    /// error, a read-only file, a lock held too long, a closed pool): nothing of it was
    /// written; retrying later may succeed. The text is for logs.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// A stored API key: only its SHA-256 hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiKeyRecord {
    /// SHA-256 of the key text.
    pub hash: ApiKeyHash,
    /// Admin, issuer or receiver.
    pub kind: KeyKind,
    /// The issuer or receiver id the key belongs to; `None` for admin keys.
    pub owner: Option<String>,
    /// Creation time.
    pub created_at_ms: i64,
    /// A label for people (not unique).
    pub name: String,
    /// Scopes narrowing what it may do (`bonafide_core::apikey::KeyScope` names);
    /// `None` = its kind's full rights.
    pub scopes: Option<Vec<String>>,
    /// When it stops authenticating (a rotated key's grace period ends); `None` =
    /// never.
    pub expires_at_ms: Option<i64>,
    /// Who made it: `usr_…`, `admin`, `bootstrap`, the `iss_…`/`rcv_…` whose key made
    /// it; `None` when unknown (an organisation's first keys from before keys were
    /// objects).
    pub created_by: Option<String>,
    /// Last authenticated request, written at most about once a minute.
    pub last_used_at_ms: Option<i64>,
    /// When it was revoked.
    pub revoked_at_ms: Option<i64>,
    /// The public id of the key this one replaced (rotation).
    pub rotated_from: Option<String>,
}

impl ApiKeyRecord {
    /// A new live key: no scopes, expiry, use, or predecessor.
    pub fn new(
        hash: ApiKeyHash,
        kind: KeyKind,
        owner: Option<String>,
        name: &str,
        created_by: &str,
        created_at_ms: i64,
    ) -> Self {
        ApiKeyRecord {
            hash,
            kind,
            owner,
            created_at_ms,
            name: name.to_owned(),
            scopes: None,
            expires_at_ms: None,
            created_by: Some(created_by.to_owned()),
            last_used_at_ms: None,
            revoked_at_ms: None,
            rotated_from: None,
        }
    }

    /// Whether it authenticates at `now_ms`: not revoked, not expired.
    pub fn live_at(&self, now_ms: i64) -> bool {
        self.revoked_at_ms.is_none() && self.expires_at_ms.is_none_or(|e| now_ms < e)
    }
}

/// An organisation that owns agents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issuer {
    /// `iss_…`.
    pub id: IssuerId,
    /// Unique display name, usually a domain (`apexwealth.com`).
    pub name: String,
    /// Creation time.
    pub created_at_ms: i64,
}

/// Lifecycle state of an agent.
///
/// Active ⇄ suspended, any time, as often as the issuer likes; either → revoked, once
/// and for good (a revoked agent cannot be suspended or reactivated).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentStatus {
    /// Tokens verify.
    Active,
    /// Suspended by its issuer: no token verifies until it is reactivated.
    Suspended,
    /// Permanently revoked: no token of this agent verifies again.
    Revoked,
}

impl AgentStatus {
    /// Wire form (`active`, `suspended`, `revoked`).
    pub fn as_str(self) -> &'static str {
        match self {
            AgentStatus::Active => "active",
            AgentStatus::Suspended => "suspended",
            AgentStatus::Revoked => "revoked",
        }
    }
}

/// A registered agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    /// `agt_…`.
    pub id: AgentId,
    /// Owner.
    pub issuer_id: IssuerId,
    /// Display name.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// Granted scopes (validated, deduplicated).
    pub scopes: Vec<String>,
    /// Audiences its tokens are for; `None` for any receiver.
    pub audience: Option<Vec<String>>,
    /// Lifetime of tokens issued for it, in seconds.
    pub token_ttl_s: i64,
    /// Active, suspended or revoked.
    pub status: AgentStatus,
    /// Registration time.
    pub created_at_ms: i64,
    /// When revoked.
    pub revoked_at_ms: Option<i64>,
    /// Why revoked, as the issuer said.
    pub revoke_reason: Option<String>,
    /// When suspended; set exactly while `status` is [`AgentStatus::Suspended`].
    pub suspended_at_ms: Option<i64>,
    /// Why suspended, as the issuer said; only while suspended.
    pub suspend_reason: Option<String>,
    /// Consent policy (`pol.v0.2`) its tokens carry: RFC 8785 canonical JSON text.
    pub policy: Option<String>,
    /// On whose behalf it acts (`user` claim): a DID, an email or an opaque id.
    pub user: Option<String>,
    /// Its issuer opted out, at registration, of the rule that an agent with its own
    /// key accepts only tokens bound to that key: tokens without `cnf` still verify.
    /// Never changes.
    pub allow_bearer_tokens: bool,
}

/// An API that verifies agents' tokens with a receiver key (`bfk_rcv_…`): the key
/// attributes its verifies and lets it spend budgets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receiver {
    /// `rcv_…`.
    pub id: ReceiverId,
    /// Display name (unique).
    pub name: String,
    /// The audiences (`aud` values) it verifies as: with its key, a token with `aud`
    /// must name one of them. Its name unless it registered others.
    pub audiences: Vec<String>,
    /// Creation time.
    pub created_at_ms: i64,
}

/// Which budget a charge goes to: one per issuer, policy id, calendar period and
/// currency (policy ids are the issuer's own strings, so two issuers never share one).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BudgetKey {
    /// The agent's issuer.
    pub issuer_id: IssuerId,
    /// The policy's `id`.
    pub policy_id: String,
    /// `core::policy::PeriodWindow::key` (`2026-11-25`, `2026-W48`, …).
    pub period_key: String,
    /// ISO 4217 code of the cap.
    pub currency: String,
}

/// A decision that may charge a budget: its key and the period cap.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BudgetCharge {
    /// The budget.
    pub key: BudgetKey,
    /// The `per_period` amount: the store never lets `spent` exceed it.
    pub cap: Decimal,
    /// A delegated token's ancestors' budgets (RFC 8693 token exchange), in the same
    /// currency: a charge is added to each of them too, and refused if it would take
    /// any above its cap. Empty for a token that was not delegated. An ancestor whose
    /// key is `key` (a child that kept its parent's policy) is charged once.
    pub ancestors: Vec<AncestorBudget>,
}

/// One ancestor's budget that a delegated token's spending also counts against.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AncestorBudget {
    /// The budget.
    pub key: BudgetKey,
    /// Its `per_period` amount.
    pub cap: Decimal,
}

impl BudgetCharge {
    /// What a decision sees as spent: the own budget's spending, or more when an
    /// ancestor's budget has less left than the own one, so that `cap - seen` is the
    /// tightest remaining of all. `spent_of` gives what each budget has spent.
    pub fn seen_spent(&self, mut spent_of: impl FnMut(&BudgetKey) -> Decimal) -> Decimal {
        let own = spent_of(&self.key);
        self.ancestors
            .iter()
            .filter(|a| a.key != self.key)
            .fold(own, |seen, a| {
                let left = a
                    .cap
                    .checked_sub(spent_of(&a.key))
                    .unwrap_or(Decimal::ZERO)
                    .max(Decimal::ZERO);
                seen.max(self.cap.checked_sub(left).unwrap_or(seen))
            })
    }
}

/// What the registry records about a token it made by token exchange: enough to
/// charge the ancestors' budgets on every later spend of the child (the ancestors'
/// policies are in the ancestor tokens, which a verify of the child never sees).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelegationRecord {
    /// The child token's `jti`.
    pub jti: TokenId,
    /// The token it was exchanged from (the last of its `ancestor_jtis`).
    pub parent_jti: TokenId,
    /// The sub-agent it was made for (its current actor).
    pub actor_id: AgentId,
    /// The policies (`pol.v0.2` JSON text) of every ancestor token that has a
    /// `per_period` budget, root first.
    pub ancestor_policies: Vec<String>,
    /// The keys behind every ancestor token, root first: a descendant fails when one
    /// of them is revoked or rotated out.
    pub ancestor_keys: Vec<AncestorKey>,
    /// When it was made.
    pub created_at_ms: i64,
}

/// The keys behind one ancestor token of a delegated token, and the consent policy it
/// carried: revoking any of them ends its descendants.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AncestorKey {
    /// The ancestor token's agent (the one its `cnf` binds).
    pub agent: AgentId,
    /// The issuer key that signed it, for an issuer-signed root token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer_kid: Option<String>,
    /// The agent key it was bound to (`cnf.jkt`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jkt: Option<String>,
    /// The revocation id of the consent policy it carried
    /// ([`bonafide_core::token::policy_revocation_id`]): a child may carry a narrower
    /// policy of another `id`, and revoking its ancestor's policy must end it too.
    /// Absent in chains recorded before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy_revocation: Option<TokenId>,
}

/// An `idempotency_key` a receiver sent with a decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyClaim {
    /// The receiver (keys are scoped to it).
    pub receiver_id: ReceiverId,
    /// The key as sent.
    pub key: String,
    /// SHA-256 identifying the request (token and request facts): the same key with
    /// another request is a conflict.
    pub request_sha256: [u8; 32],
}

/// A verify receipt as stored: its claims without the audit index (the store fills
/// that in, being the one that assigns it). The server signs the claims on read;
/// Ed25519 signatures are deterministic, so every read yields the same JWS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiptRecord {
    /// `rcp_…`.
    pub id: ReceiptId,
    /// The receiver that asked, if it presented its key: it may read the receipt.
    pub receiver_id: Option<ReceiverId>,
    /// The issuer of the agent concerned, if the token was genuine: it may read it.
    pub issuer_id: Option<IssuerId>,
    /// The receipt claims as JSON (`core::receipt::ReceiptClaims` without
    /// `audit_index`).
    pub claims: Vec<u8>,
    /// The decision's audit log index, when it was logged.
    pub audit_index: Option<u64>,
    /// When it was made.
    pub created_at_ms: i64,
}

impl ReceiptRecord {
    /// True when the id's time ([`ReceiptId::time_ms`]) is no later than the
    /// receipt's creation, as for every id the server makes
    /// ([`ReceiptId::from_time_and_random`] at the decision's time): a store that
    /// purges by the id's time ([`ReceiptId::ranges_before`]) then reaches it at its
    /// retention's end. Any other receipt (a random id, one made before ids carried
    /// their time) must be found by its age another way.
    pub fn dated_by_id(&self) -> bool {
        // Past the times ids hold, an id's time has wrapped: not a date.
        u64::try_from(self.created_at_ms)
            .is_ok_and(|created| created < ReceiptId::TIME_LIMIT_MS && self.id.time_ms() <= created)
    }
}

/// What one decision writes. Built by [`DecisionItem::decide`] inside the store's
/// transaction, after the store has read the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decided {
    /// The audit entry, if decisions are logged. The store assigns its index and puts
    /// it in `receipt.audit_index` and the idempotency record.
    pub audit: Option<AuditRecord>,
    /// The receipt, if one is made (only with `audit`).
    pub receipt: Option<ReceiptRecord>,
    /// Amount to add to the budget (only with a [`BudgetCharge`]). The store refuses
    /// the whole item with [`StoreError::Conflict`] if it would take `spent` above
    /// the cap: `decide` must not ask for that.
    pub charge: Option<Decimal>,
    /// The answer to give again for a retry with the same idempotency key (only with
    /// an [`IdempotencyClaim`]); opaque to the store.
    pub answer: Vec<u8>,
}

/// Builds a decision from the budget's current spending (`None` without a
/// [`BudgetCharge`]). Runs inside the write transaction: keep it short and pure. `Fn`:
/// a backend may run a transaction again (after a serialization failure), and with it
/// every `decide`.
pub type Decide = Box<dyn Fn(Option<Decimal>) -> Result<Decided, StoreError> + Send + Sync>;

/// A single-use value (a signed action's nonce, a DPoP proof's `jti`, an HTTP message
/// signature's `nonce`) that a decision claims in its own transaction: the claim and
/// the decision it allowed are durable together, or neither is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceClaim {
    /// The agent that used it.
    pub agent: AgentId,
    /// The value, namespaced by its kind so that kinds never collide.
    pub nonce: String,
    /// Until then (Unix ms) the same value is refused again.
    pub expires_at_ms: i64,
    /// The time of the decision: a record that expired by then gives way.
    pub now_ms: i64,
}

/// One decision to record (see [`Store::record_decisions`]).
pub struct DecisionItem {
    /// The budget it may charge.
    pub budget: Option<BudgetCharge>,
    /// Its idempotency key.
    pub idempotency: Option<IdempotencyClaim>,
    /// A single-use value to claim first: if it is already used (stored and live, or
    /// earlier in the same batch) nothing is decided or written and the outcome is
    /// [`DecisionOutcome::NonceReplayed`].
    pub nonce: Option<NonceClaim>,
    /// A verification to count against an organisation's monthly quota, after the
    /// single-use value is checked and before anything is decided: over the limit,
    /// nothing is claimed, decided or written and the outcome is
    /// [`DecisionOutcome::QuotaExceeded`]; otherwise it is counted with the decision
    /// (not when `decide` fails, nor for a replayed idempotency key: the same answer
    /// given again is not another verification). The decision that sets the month's
    /// warning flag has the month's `quota.warning` entry
    /// ([`quota::warning_record`]) appended right after its own, in the same
    /// transaction.
    pub quota: Option<QuotaClaim>,
    /// Makes the decision once the budget is read.
    pub decide: Decide,
}

impl fmt::Debug for DecisionItem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DecisionItem")
            .field("budget", &self.budget)
            .field("idempotency", &self.idempotency)
            .field("nonce", &self.nonce)
            .field("quota", &self.quota)
            .finish_non_exhaustive()
    }
}

/// What became of one [`DecisionItem`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionOutcome {
    /// Recorded: the audit index (if logged) and the budget's spending before this
    /// decision (if it had a budget).
    Recorded {
        /// Index of its audit entry.
        audit_index: Option<u64>,
        /// `spent` the decision was made against.
        spent_before: Option<Decimal>,
        /// What its [`DecisionItem::quota`] got (always one verification granted).
        quota: Option<QuotaGrant>,
    },
    /// The idempotency key was used before for the same request: nothing was written;
    /// the first decision's answer and audit index.
    Replay {
        /// [`Decided::answer`] of the first decision.
        answer: Vec<u8>,
        /// Its audit index.
        audit_index: Option<u64>,
    },
    /// The idempotency key was used before for another request: nothing was written.
    IdempotencyConflict,
    /// The [`NonceClaim`] was already used: nothing was written.
    NonceReplayed,
    /// The [`DecisionItem::quota`]'s month is used up: nothing was claimed or written.
    QuotaExceeded {
        /// The month's count.
        used: u64,
    },
}

/// An Ed25519 key that signs receipts (separate from the token-signing keys). `Debug`
/// redacts the key.
#[derive(Clone, PartialEq, Eq)]
pub struct ReceiptKeyRecord {
    /// The private key (PKCS#8 PEM) as stored: sealed under the registry's KEK
    /// (`bonafide_core::sealed`) by the server, plaintext only in a database made
    /// before sealing and not opened since. The store treats it as opaque text.
    pub private_pem: String,
    /// When it was made.
    pub created_at_ms: i64,
}

impl fmt::Debug for ReceiptKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ReceiptKeyRecord")
            .field("private_pem", &"<redacted>")
            .field("created_at_ms", &self.created_at_ms)
            .finish()
    }
}

/// One page of a listing: its items in commit order (the order in which their
/// creations committed) and, if more may follow, the [`Cursor`] after the last one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T, C = Cursor> {
    /// The items, oldest first.
    pub items: Vec<T>,
    /// Where the next page starts, if more may follow.
    pub next: Option<C>,
}

/// Where a listing resumes: after an item the caller has just been shown.
///
/// Opaque text on the wire (base64url, [`fmt::Display`] and [`std::str::FromStr`]).
/// It names the item, never an internal position, so it shows nothing of how many
/// items others created. Listings are in commit order, which every backend keeps
/// (each creation takes the audit log head, see [`log`]): an item whose creation
/// commits after a page was read sorts after that page's cursor, so paging while
/// items are being created never repeats or skips one.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Cursor {
    /// The id of the last item shown.
    after: String,
}

/// Longest cursor text accepted (an id is far shorter).
const MAX_CURSOR_LEN: usize = 256;

impl Cursor {
    /// The cursor after the agent `id`, for [`Store::list_agents`].
    pub fn after_agent(id: &AgentId) -> Self {
        Cursor {
            after: id.as_str().to_owned(),
        }
    }

    /// The agent the cursor is after, if it names one.
    pub fn agent(&self) -> Option<AgentId> {
        AgentId::try_from(self.after.as_str()).ok()
    }
}

impl fmt::Debug for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("Cursor").field(&self.after).finish()
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&bonafide_core::b64::encode(self.after.as_bytes()))
    }
}

/// Text that is not a cursor a listing gave out.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a cursor: pass back `next_cursor` exactly as received")]
pub struct CursorError;

impl std::str::FromStr for Cursor {
    type Err = CursorError;

    /// Accepts what [`Cursor`]'s `Display` writes: base64url of printable ASCII. A
    /// well-formed cursor may still name nothing; the listing then says `NotFound`.
    fn from_str(text: &str) -> Result<Self, CursorError> {
        if text.is_empty() || text.len() > MAX_CURSOR_LEN {
            return Err(CursorError);
        }
        let bytes = bonafide_core::b64::decode(text).map_err(|_| CursorError)?;
        if bytes.is_empty() || !bytes.iter().all(u8::is_ascii_graphic) {
            return Err(CursorError);
        }
        let after = String::from_utf8(bytes).map_err(|_| CursorError)?;
        Ok(Cursor { after })
    }
}

/// An issuer's revocation of one of its consent policies (`policy.id`): every token
/// of its agents carrying a policy of that id is refused from then on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRevocation {
    /// The issuer that revoked it.
    pub issuer_id: IssuerId,
    /// The policy's `id`, as the issuer's tokens carry it.
    pub policy_id: String,
    /// When it was first revoked, Unix milliseconds.
    pub revoked_at_ms: i64,
}

/// The `exp` a policy revocation is recorded with in the change feed: it never
/// expires (tokens carrying the policy may be signed at any time after it).
pub const POLICY_REVOCATION_EXPIRES_AT_S: i64 = i64::MAX;

/// A token the registry issued (never the token text).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// `jti`.
    pub jti: TokenId,
    /// Its agent.
    pub agent_id: AgentId,
    /// The agent's issuer.
    pub issuer_id: IssuerId,
    /// The signing key's kid.
    pub kid: String,
    /// `iat`, Unix seconds.
    pub issued_at_s: i64,
    /// `exp`, Unix seconds.
    pub expires_at_s: i64,
    /// When revoked.
    pub revoked_at_ms: Option<i64>,
}

/// An issuer's own public key (self-custody): the issuer signs its agents' tokens
/// with the private half, which the registry never holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerKey {
    /// RFC 7638 thumbprint; unique across all issuers.
    pub kid: String,
    /// The issuer it belongs to.
    pub issuer_id: IssuerId,
    /// The one algorithm it verifies.
    pub alg: Algorithm,
    /// The public JWK as JSON text (`kid`, `alg`, `use` set; no private members).
    pub jwk: String,
    /// When it was registered.
    pub created_at_ms: i64,
    /// When it was revoked; permanent.
    pub revoked_at_ms: Option<i64>,
    /// The issuer's own name for the key (the JWK's `kid` at registration when it is
    /// not the thumbprint, as AgentOAuth's `key-001`): unique per issuer, so a consent
    /// token whose `iss` names the issuer and whose `kid` is the alias uses this key.
    pub alias: Option<String>,
}

/// An agent's own public key: the agent signs with the private half, which the
/// registry never holds; tokens are bound to it by `cnf.jkt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentKey {
    /// The agent.
    pub agent_id: AgentId,
    /// RFC 7638 thumbprint; unique per agent.
    pub jkt: String,
    /// The public JWK as JSON text (`kid`, `alg`, `use` set; no private members).
    pub jwk: String,
    /// `EdDSA` or `ES256`.
    pub alg: Algorithm,
    /// When it was registered.
    pub created_at_ms: i64,
    /// `key_expires_at`: tokens bound to it are refused from then on.
    pub expires_at_ms: i64,
    /// When a rotation replaced it; `None` while it is the agent's current key.
    pub retired_at_ms: Option<i64>,
    /// Set with `retired_at_ms`: tokens bound to it verify until then.
    pub grace_until_ms: Option<i64>,
}

/// A domain an issuer proved it controls: its JWKS at
/// `https://<domain>/.well-known/jwks.json` held one of its registered, unrevoked keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerDomain {
    /// The issuer.
    pub issuer_id: IssuerId,
    /// Lowercase ASCII DNS name; held by at most one issuer.
    pub domain: String,
    /// The issuer key (RFC 7638 thumbprint) found in the published JWKS.
    pub kid: String,
    /// When the verification succeeded.
    pub verified_at_ms: i64,
}

/// A token's entry in a Token Status List: what its status depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntry {
    /// The token's `jti` (one entry per token).
    pub jti: TokenId,
    /// Its `sub`.
    pub agent_id: AgentId,
    /// Its agent's issuer.
    pub issuer_id: IssuerId,
    /// Its `exp`, Unix seconds: the entry matters until then.
    pub expires_at_s: i64,
    /// For a delegated token: the agents acting in its chain (`act`), whose
    /// revocation or suspension is its own.
    pub actors: Vec<AgentId>,
    /// For a delegated token: its ancestor tokens, whose revocation is its own.
    pub ancestor_jtis: Vec<TokenId>,
    /// The keys behind the token and its ancestors (the issuer key that signed it or
    /// its issuer-signed root, the agent keys they are bound to): a key revoked, or
    /// rotated out past its grace, ends the token as it does at verify.
    pub keys: Vec<AncestorKey>,
}

/// Where a token's status is: list and index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatusSlot {
    /// The list.
    pub list_id: u32,
    /// The index in it.
    pub idx: u64,
}

/// A stored status entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusEntryRow {
    /// Allocation order (increasing; gaps possible).
    pub seq: u64,
    /// Its place.
    pub slot: StatusSlot,
    /// The entry.
    pub entry: StatusEntry,
    /// When it was allocated.
    pub created_at_ms: i64,
}

/// The shape of new status lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListShape {
    /// Bits per status (1, 2, 4 or 8).
    pub bits: u8,
    /// Entries per list.
    pub size: u64,
}

/// A status list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusListRecord {
    /// Its id (in its URI).
    pub id: u32,
    /// Its shape.
    pub shape: ListShape,
    /// Indexes handed out.
    pub allocated: u64,
    /// When it was made.
    pub created_at_ms: i64,
}

/// What a status entry depends on: an agent, a token or an issuer key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum StatusSubject {
    /// An agent: its own tokens, every delegated token it acts in, and every token
    /// bound to one of its keys.
    Agent(AgentId),
    /// A token: itself and every token delegated from it.
    Token(TokenId),
    /// An issuer key, by kid: the tokens it signed, and the tokens delegated from them.
    IssuerKey(String),
}

/// A published Status List Token (the latest version of a list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishedStatusList {
    /// The list.
    pub list_id: u32,
    /// Its version (increasing).
    pub version: u64,
    /// The signed token, as served.
    pub token: String,
    /// Its `iat`.
    pub issued_at_s: i64,
    /// Its `exp`.
    pub expires_at_s: i64,
    /// The index of its `status_list.published` audit entry.
    pub audit_index: u64,
}

/// Everything revoked, loaded at start-up into the in-memory hot path.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Revocations {
    /// Revoked agents.
    pub agents: Vec<AgentId>,
    /// Revoked tokens (including tokens of revoked agents, if stored so).
    pub tokens: Vec<TokenId>,
}

/// A position in the change feed ([`Store::changes_since`]): how far a reader has
/// read. Opaque; [`ChangePosition::START`] is before every change, and a position
/// kept elsewhere (a replica's state file) round-trips through [`ChangePosition::get`]
/// and [`ChangePosition::new`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ChangePosition(u64);

impl ChangePosition {
    /// Before the first change.
    pub const START: ChangePosition = ChangePosition(0);

    /// A position a store handed out, as [`ChangePosition::get`] gave it.
    pub const fn new(position: u64) -> Self {
        ChangePosition(position)
    }

    /// The position as a number (for keeping it; its value means nothing else).
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for ChangePosition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Where a reader of new status entries stands ([`Store::status_entry_horizon`],
/// [`Store::status_entries_since`]). Opaque: SQLite's is an entry `seq` (one writer,
/// so `seq` order is commit order), PostgreSQL's a snapshot's `xmax` and the
/// transactions it saw in progress (`seq`s are handed out before commit there, so an
/// entry can become visible after higher ones were read). [`EntryCursor::START`] is
/// before every entry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct EntryCursor {
    pos: u64,
    pending: Vec<u64>,
}

impl EntryCursor {
    /// Before the first entry.
    pub const START: EntryCursor = EntryCursor {
        pos: 0,
        pending: Vec::new(),
    };

    /// A cursor a store handed out, as [`EntryCursor::get`] gave it.
    pub const fn new(cursor: u64) -> Self {
        EntryCursor {
            pos: cursor,
            pending: Vec::new(),
        }
    }

    /// A cursor at `cursor` that also covers `pending`: positions below it not
    /// finished when it was taken (PostgreSQL: the transactions a snapshot saw in
    /// progress), each read again from it.
    pub fn with_pending(cursor: u64, pending: Vec<u64>) -> Self {
        EntryCursor {
            pos: cursor,
            pending,
        }
    }

    /// The cursor as a number (its value means nothing else).
    pub const fn get(&self) -> u64 {
        self.pos
    }

    /// The positions below [`EntryCursor::get`] it also covers.
    pub fn pending(&self) -> &[u64] {
        &self.pending
    }
}

/// What a committed write changed that a reader mirroring the store (the server's
/// read model, a replica) must reflect. Each write records its changes in the same
/// transaction as its audit entries ([`log::Head::append`]); a write that changes
/// nothing records none.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Change {
    /// The agent is revoked, for good: it covers every token it has (which are not
    /// listed) and ends its suspension, if it had one.
    AgentRevoked(AgentId),
    /// The agent is suspended.
    AgentSuspended(AgentId),
    /// The agent's suspension ended.
    AgentReactivated(AgentId),
    /// The agent's own keys changed (registered with a key, or a rotation).
    AgentKeysChanged(AgentId),
    /// A token is revoked (or its revocation now lasts to a later `exp`).
    TokenRevoked {
        /// Its `jti`.
        jti: TokenId,
        /// Its `exp`, Unix seconds: the revocation matters until then.
        expires_at_s: i64,
    },
    /// An issuer's own keys changed (one added or revoked).
    IssuerKeysChanged(IssuerId),
    /// An issuer's verified domain changed.
    IssuerDomainChanged(IssuerId),
    /// The registry's signing keys changed: a rotation, or a retired key's
    /// publication extended by a token recorded late.
    SigningKeysChanged,
    /// A receiver's audiences changed.
    ReceiverChanged(ReceiverId),
    /// An API key was revoked: it authenticates nothing any more.
    ApiKeyRevoked(ApiKeyHash),
}

/// A wake-up for a reader of the change feed ([`Store::change_signal`]): another
/// process may have committed changes. Only a hint: the feed
/// ([`Store::changes_since`]) stays the source of truth, so a lost or spurious wake
/// costs at most one read, and a reader still reads on its own schedule.
#[derive(Debug)]
pub struct ChangeSignal(Option<tokio::sync::watch::Receiver<u64>>);

impl ChangeSignal {
    /// A signal that never fires: every [`ChangeSignal::wait`] lasts its timeout (one
    /// process: its own writes reach its readers directly).
    pub fn none() -> Self {
        ChangeSignal(None)
    }

    /// Fires whenever the sender's value changes.
    pub(crate) fn from_watch(rx: tokio::sync::watch::Receiver<u64>) -> Self {
        ChangeSignal(Some(rx))
    }

    /// Waits until a change may have been committed since the last wait returned, or
    /// `timeout` passes; `true` when woken early. A wake that came while the caller
    /// was busy is kept for the next wait, never lost.
    pub async fn wait(&mut self, timeout: std::time::Duration) -> bool {
        let Some(rx) = self.0.as_mut() else {
            tokio::time::sleep(timeout).await;
            return false;
        };
        match tokio::time::timeout(timeout, rx.changed()).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => {
                // The sender is gone (the store is closing): periodic reads only.
                self.0 = None;
                tokio::time::sleep(timeout).await;
                false
            }
            Err(_) => false,
        }
    }
}

/// Changes committed after a position ([`Store::changes_since`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChangeFeed {
    /// The changes, in commit order.
    pub changes: Vec<Change>,
    /// Each change's own position, in the same order as `changes` (push events use
    /// it as the event id).
    pub positions: Vec<ChangePosition>,
    /// The position to pass as `after` next time.
    pub next: ChangePosition,
    /// More changes follow `next` already: read again at once (a reader that was away
    /// catches up page by page).
    pub more: bool,
}

/// State of a registry signing key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyState {
    /// Signs new tokens. Exactly one key is active once the registry has started.
    Active,
    /// Signs nothing; still published (and verifies) until `publish_until_s`.
    Retired,
    /// Signs nothing yet: published ahead of a scheduled rotation, so receivers'
    /// cached key sets hold it before it signs anything. At most one.
    Next,
}

/// A registry signing key. `Debug` redacts the private key.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// RFC 7638 thumbprint.
    pub kid: String,
    /// Its algorithm.
    pub alg: Algorithm,
    /// The private key (PKCS#8 PEM) as stored: sealed under the registry's KEK
    /// (`bonafide_core::sealed`) by the server, plaintext only in a database made
    /// before sealing and not opened since. The store treats it as opaque text.
    pub private_pem: String,
    /// Active or retired.
    pub state: KeyState,
    /// Creation time.
    pub created_at_ms: i64,
    /// For retired keys: the latest `exp` of any token it signed; the key leaves the
    /// JWKS after this (plus leeway).
    pub publish_until_s: Option<i64>,
}

impl fmt::Debug for SigningKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKeyRecord")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .field("private_pem", &"<redacted>")
            .field("state", &self.state)
            .field("created_at_ms", &self.created_at_ms)
            .field("publish_until_s", &self.publish_until_s)
            .finish()
    }
}

/// Which stored private key a row holds: what a sealed key is bound to (its
/// associated data), so it cannot be moved to another row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PrivateKeySlot {
    /// A registry signing key, by kid.
    SigningKey {
        /// Its kid.
        kid: String,
    },
    /// The receipt-signing key (one row).
    ReceiptKey,
    /// The audit log's note-signing key (one row).
    AuditLogKey,
    /// The key that signs push events, Security Event Tokens (one row).
    EventKey,
    /// The status-list signing key (one row).
    StatusListKey,
    /// The key that signs people's access tokens (one row).
    SessionKey,
    /// The AgentOAuth playground's demo issuer key (one row, only with `--playground`).
    PlaygroundKey,
    /// A person's TOTP secret (not a key, sealed the same way).
    TotpSecret {
        /// The person (`usr_…`).
        person: String,
    },
}

impl PrivateKeySlot {
    /// The row's identity as sealed keys bind it: `signing-key/<kid>`, `receipt-key`,
    /// `audit-log-key`, `event-key`, `status-list-key`.
    pub fn identity(&self) -> String {
        match self {
            PrivateKeySlot::SigningKey { kid } => format!("signing-key/{kid}"),
            PrivateKeySlot::ReceiptKey => "receipt-key".to_owned(),
            PrivateKeySlot::AuditLogKey => "audit-log-key".to_owned(),
            PrivateKeySlot::EventKey => "event-key".to_owned(),
            PrivateKeySlot::StatusListKey => "status-list-key".to_owned(),
            PrivateKeySlot::SessionKey => "session-key".to_owned(),
            PrivateKeySlot::PlaygroundKey => "playground-key".to_owned(),
            PrivateKeySlot::TotpSecret { person } => format!("totp-secret/{person}"),
        }
    }
}

/// The one-row private-key tables (`id = 1`): table, key column and slot. Both backends
/// re-seal them from this list, and make or read the PKCS#8 ones by name.
pub(crate) const SINGLE_KEY_ROWS: [(&str, &str, PrivateKeySlot); 6] = [
    ("receipt_key", "private_pem", PrivateKeySlot::ReceiptKey),
    ("event_key", "private_pem", PrivateKeySlot::EventKey),
    (
        "status_list_key",
        "private_pem",
        PrivateKeySlot::StatusListKey,
    ),
    ("audit_log_key", "signer_key", PrivateKeySlot::AuditLogKey),
    ("session_key", "private_pem", PrivateKeySlot::SessionKey),
    (
        "playground_key",
        "private_pem",
        PrivateKeySlot::PlaygroundKey,
    ),
];

/// The one-row key tables holding a PKCS#8 key and its creation time
/// (`ReceiptKeyRecord`): what the backends' get-or-create reads and writes.
pub(crate) const SINGLE_KEY_TABLES: [&str; 5] = [
    "receipt_key",
    "event_key",
    "status_list_key",
    "session_key",
    "playground_key",
];

/// What [`Store::reseal_private_keys`] calls for each stored private key: its new
/// stored text, or `None` to leave the row as it is.
pub type Reseal<'a> =
    dyn Fn(&PrivateKeySlot, &str) -> Result<Option<String>, StoreError> + Send + Sync + 'a;

/// An audit entry to append: canonical JSON bytes (`bonafide_core::audit`) and who may
/// read them in full.
#[derive(Debug, Clone)]
pub struct AuditRecord {
    /// RFC 8785 canonical JSON of the entry; hashed as the Merkle leaf.
    pub entry: Vec<u8>,
    /// The agent the entry concerns; its issuer may read the entry.
    pub agent_id: Option<AgentId>,
    /// The issuer the entry concerns; it may read the entry.
    pub issuer_id: Option<IssuerId>,
    /// When it was appended.
    pub created_at_ms: i64,
    /// The entry's leaf hash and packed form, made ahead of its transaction by
    /// [`AuditRecord::prepare`] (on the caller's task, off the store's serial
    /// commit path); `None`: made when it is appended. Only `prepare` makes one,
    /// from `entry` as it then is: change `entry` only before (nothing does after;
    /// tests assert the hash against `entry`). Both forms come from the same bytes,
    /// so the stored entry and its leaf hash always agree.
    pub prepared: Option<PreparedEntry>,
}

/// What [`AuditRecord::prepare`] makes: the entry's leaf hash (`SHA-256(0x00 ‖
/// entry)`) and packed form (`core::audit_pack`, as stored).
#[derive(Debug, Clone)]
pub struct PreparedEntry {
    leaf: Hash,
    /// Shared: a record is cloned into its decision (on the store's commit path).
    packed: std::sync::Arc<[u8]>,
}

impl AuditRecord {
    /// Makes the entry's leaf hash and packed form now, so that appending it does
    /// not (see [`AuditRecord::prepared`]).
    pub fn prepare(&mut self) {
        self.prepared = Some(PreparedEntry {
            leaf: bonafide_core::merkle::leaf_hash(&self.entry),
            packed: bonafide_core::audit_pack::pack(&self.entry).into(),
        });
    }

    /// The entry's Merkle leaf hash.
    pub fn leaf_hash(&self) -> Hash {
        match &self.prepared {
            Some(p) => {
                debug_assert_eq!(p.leaf, bonafide_core::merkle::leaf_hash(&self.entry));
                p.leaf
            }
            None => bonafide_core::merkle::leaf_hash(&self.entry),
        }
    }

    /// The entry as stored (`core::audit_pack`).
    pub fn packed(&self) -> std::borrow::Cow<'_, [u8]> {
        match &self.prepared {
            Some(p) => std::borrow::Cow::Borrowed(&p.packed),
            None => bonafide_core::audit_pack::pack(&self.entry),
        }
    }
}

/// Records are the same when their entry and readers are: whether one was prepared
/// (its derived forms made early) is no part of it.
impl PartialEq for AuditRecord {
    fn eq(&self, other: &Self) -> bool {
        self.entry == other.entry
            && self.agent_id == other.agent_id
            && self.issuer_id == other.issuer_id
            && self.created_at_ms == other.created_at_ms
    }
}

impl Eq for AuditRecord {}

/// A stored audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Position in the log, from 0.
    pub index: u64,
    /// `SHA-256(0x00 ‖ entry)`.
    pub leaf_hash: Hash,
    /// The canonical entry bytes.
    pub entry: Vec<u8>,
    /// The issuer that may read it in full: the entry's issuer, else its agent's
    /// issuer; `None` if only admins may.
    pub owner: Option<IssuerId>,
}

/// Tiles of 2^8 records: the unit the log is pruned by (C2SP tlog-tiles' width).
/// Every hash at this level and above is kept by a prune.
pub const PRUNE_TILE_LEVEL: u8 = 8;
/// Records pruned per transaction (`Store::audit_prune` chunks): 64 tiles.
pub const AUDIT_PRUNE_CHUNK: u64 = 16_384;

/// Whether `[from, to)` is a prunable range by shape alone (tile boundaries, not
/// empty); the store checks the rest under its lock.
pub fn prune_range_is_tiled(from: u64, to: u64) -> bool {
    let tile = 1u64 << PRUNE_TILE_LEVEL;
    from < to && from.is_multiple_of(tile) && to.is_multiple_of(tile)
}

/// A checkpoint the registry signed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointRecord {
    /// Tree size.
    pub size: u64,
    /// Root hash of the first `size` records.
    pub root: Hash,
    /// The C2SP signed note, verbatim.
    pub note: String,
    /// When it was signed.
    pub created_at_ms: i64,
}

/// The audit log's identity: origin and Ed25519 checkpoint key. `Debug` redacts the key.
#[derive(Clone, PartialEq, Eq)]
pub struct LogKeyRecord {
    /// The checkpoint origin line (also the key name).
    pub origin: String,
    /// C2SP signer key string (`PRIVATE+KEY+…`) as stored: sealed like
    /// [`SigningKeyRecord::private_pem`].
    pub signer_key: String,
    /// When it was made.
    pub created_at_ms: i64,
}

impl fmt::Debug for LogKeyRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LogKeyRecord")
            .field("origin", &self.origin)
            .field("signer_key", &"<redacted>")
            .field("created_at_ms", &self.created_at_ms)
            .finish()
    }
}

/// A store's connections ([`Store::pool_status`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Open connections (idle or in use).
    pub open: u32,
    /// Of those, idle.
    pub idle: u32,
    /// The most the pool opens.
    pub max: u32,
}

/// Everything Bonafide persists.
///
/// Every state change takes the [`AuditRecord`] describing it and appends it in the
/// same transaction, so no change is ever made without its entry (nor the reverse),
/// with the [`Change`]s readers must mirror ([`Store::changes_since`]), in one
/// [`log::Head::append`]. A call that changes nothing (revoking twice) appends
/// nothing. Lock order, for every backend: the log head first ([`log::lock`]), then
/// budget rows, then the rows the write changes.
#[async_trait]
pub trait Store: Send + Sync + fmt::Debug + 'static {
    // ---- API keys
    /// Stores an admin key hash (bootstrap). Inserting the same hash twice is a no-op;
    /// a revoked one is refused (`Conflict(KeyRevoked)`).
    async fn add_admin_key(
        &self,
        hash: &ApiKeyHash,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// True if any admin key exists.
    async fn has_admin_key(&self) -> Result<bool, StoreError>;
    /// Every admin key, oldest first.
    async fn admin_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Revokes an admin key at `now_ms`, with its audit entry: it authenticates
    /// nothing from the next request on, and [`Store::add_admin_key`] refuses it
    /// ever after. [`StoreError::NotFound`] if no live admin key has this hash;
    /// [`StoreError::Conflict`] if it is the last one (nobody could administer the
    /// registry any more; add another first).
    async fn revoke_admin_key(
        &self,
        hash: &ApiKeyHash,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// Revokes an API key of any kind by its hash (a key found leaked: `keys scan
    /// --revoke`): it authenticates nothing from the next request on, on every
    /// replica (`Change::ApiKeyRevoked`). `NotFound` for a key unknown or revoked
    /// already; the last admin key: `Conflict(LastAdminKey)`. The record it was.
    async fn revoke_api_key(
        &self,
        hash: &ApiKeyHash,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<ApiKeyRecord, StoreError>;
    /// The key record with this hash. Backends look up by hash (an index), and the
    /// caller already holds the full hash, so no timing leak about other keys.
    async fn api_key(&self, hash: &ApiKeyHash) -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Stores a new key of any kind with its audit entry. `Conflict(IdTaken)` if its
    /// hash, or its public id (the hash's first 8 bytes), is taken;
    /// `Conflict(TooManyKeys)` if its identity (kind and owner) would then have more
    /// than `max_live` keys live at its creation time (counted in the transaction, so
    /// concurrent creations never pass the cap together). With `limit`, the per-key
    /// rate limit it inherits is decided and set in the same transaction (its own
    /// entry appended after `audit`).
    async fn create_api_key(
        &self,
        record: &ApiKeyRecord,
        max_live: Option<u32>,
        limit: Option<&InheritedLimit>,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// The key whose public id is `key_` + hex of `prefix` (the hash's first 8
    /// bytes), revoked or not.
    async fn api_key_by_prefix(&self, prefix: &[u8; 8])
    -> Result<Option<ApiKeyRecord>, StoreError>;
    /// Every key of one identity (admin keys: `owner` `None`), revoked ones too,
    /// oldest first.
    async fn api_keys_of(
        &self,
        kind: KeyKind,
        owner: Option<&str>,
    ) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// The live keys `created_by` made (a person leaving an organisation), oldest
    /// first.
    async fn api_keys_created_by(&self, created_by: &str) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Unrevoked keys whose maker is a person who is not a member of the organisation
    /// owning the key's identity (any more), at most `limit`: what a member's removal
    /// revokes, for a sweep that finishes a removal whose revocations failed.
    async fn api_keys_of_departed_makers(
        &self,
        limit: u32,
    ) -> Result<Vec<ApiKeyRecord>, StoreError>;
    /// Rotates a key: stores `new` (its `rotated_from` names `old`) and makes `old`
    /// expire at `old_expires_at_ms` (never later than it would have), in one
    /// transaction with the audit entry; replicas forget their cached `old`
    /// (`Change::ApiKeyRevoked`). `NotFound` if `old` is revoked, expired at `now_ms`
    /// or unknown; `Conflict(IdTaken)` and `Conflict(TooManyKeys)` as
    /// [`Store::create_api_key`] (at `now_ms`, the old key counted while its grace
    /// period lasts); `limit` as [`Store::create_api_key`]. The old record as it is now.
    #[allow(clippy::too_many_arguments)]
    async fn rotate_api_key(
        &self,
        old: &ApiKeyHash,
        new: &ApiKeyRecord,
        old_expires_at_ms: i64,
        now_ms: i64,
        max_live: Option<u32>,
        limit: Option<&InheritedLimit>,
        audit: &AuditRecord,
    ) -> Result<ApiKeyRecord, StoreError>;
    /// Records a key's use at `now_ms` (only ever moves forward). Telemetry, not a
    /// change of state: no audit entry. Callers write it at most about once a minute
    /// per key, off the request path.
    async fn touch_api_key(&self, hash: &ApiKeyHash, now_ms: i64) -> Result<(), StoreError>;

    // ---- issuers
    /// Creates an issuer and its first API key, atomically. `Conflict` if the name is
    /// taken.
    async fn create_issuer(
        &self,
        issuer: &Issuer,
        key: &ApiKeyHash,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// The issuer with this id.
    async fn issuer(&self, id: &IssuerId) -> Result<Option<Issuer>, StoreError>;
    /// The issuer that holds `name`, compared as
    /// [`bonafide_core::names::issuer_name_key`] compares names (case, a leading
    /// `https://`, trailing dots). At most one issuer holds a name; of twins created
    /// before that rule, the oldest.
    async fn issuer_by_name(&self, name: &str) -> Result<Option<Issuer>, StoreError>;

    // ---- receivers
    /// Creates a receiver and its API key, atomically. `Conflict` if the name is taken.
    async fn create_receiver(
        &self,
        receiver: &Receiver,
        key: &ApiKeyHash,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// The receiver with this id.
    async fn receiver(&self, id: &ReceiverId) -> Result<Option<Receiver>, StoreError>;
    /// Replaces a receiver's audiences, with its audit record, atomically. `NotFound`
    /// for an unknown receiver (nothing audited).
    async fn set_receiver_audiences(
        &self,
        id: &ReceiverId,
        audiences: &[String],
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;

    // ---- agents
    /// Registers an agent, the first token issued to it and, if given, its own public
    /// key (its `agent_id` must be the agent's), atomically.
    async fn create_agent(
        &self,
        agent: &Agent,
        first_token: &TokenRecord,
        first_key: Option<&AgentKey>,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// The agent with this id, whoever owns it.
    async fn agent(&self, id: &AgentId) -> Result<Option<Agent>, StoreError>;
    /// The issuer's agents in commit order (oldest first), after the cursor `after`
    /// (a `next` of an earlier page), at most `limit`. An agent registered while a
    /// caller pages comes after every cursor handed out before it committed: no agent
    /// is repeated or skipped. `NotFound` if `after` names no agent of this issuer.
    async fn list_agents(
        &self,
        issuer: &IssuerId,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Agent>, StoreError>;
    /// Revokes an agent of this issuer and every token it has. `NotFound` if the agent
    /// does not exist or is another issuer's. Revoking twice returns the first
    /// revocation unchanged. Revoking a suspended agent ends its suspension: it is
    /// revoked, and no longer suspended.
    async fn revoke_agent(
        &self,
        issuer: &IssuerId,
        id: &AgentId,
        reason: Option<&str>,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<Agent, StoreError>;
    /// Suspends an agent of this issuer: its tokens stop verifying until
    /// [`Store::reactivate_agent`]. `NotFound` if the agent does not exist or is
    /// another issuer's; `Conflict` if it is revoked (revocation is permanent).
    /// Suspending a suspended agent returns it unchanged (first time and reason kept)
    /// and appends nothing.
    async fn suspend_agent(
        &self,
        issuer: &IssuerId,
        id: &AgentId,
        reason: Option<&str>,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<Agent, StoreError>;
    /// Ends the suspension of an agent of this issuer. `NotFound` as for
    /// [`Store::suspend_agent`]; `Conflict` if it is revoked. Reactivating an agent
    /// that is not suspended returns it unchanged and appends nothing.
    async fn reactivate_agent(
        &self,
        issuer: &IssuerId,
        id: &AgentId,
        audit: &AuditRecord,
    ) -> Result<Agent, StoreError>;
    /// Every agent suspended now (never a revoked one). The server replaces its
    /// in-memory set with this on every refresh: suspensions end, so merging would
    /// keep ended ones.
    async fn suspended_agents(&self) -> Result<Vec<AgentId>, StoreError>;

    // ---- agent keys
    /// Makes `new_key` the agent's current key, in one transaction: the current key
    /// (if any) is retired at `now_ms` with `grace_until_ms`, keys retired before keep
    /// their own grace but never beyond `grace_until_ms` (a rotation with no grace
    /// ends every grace: it is how a key leaked while in grace is killed), the audit
    /// record is appended. `NotFound` if the agent does not
    /// exist or is another issuer's; `Conflict` if it is revoked, or if `new_key` is
    /// one of its keys already (current or retired). Returns every key of the agent,
    /// oldest first.
    async fn rotate_agent_key(
        &self,
        issuer: &IssuerId,
        agent: &AgentId,
        new_key: &AgentKey,
        grace_until_ms: i64,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<Vec<AgentKey>, StoreError>;
    /// Every key of the agent (current and retired), oldest first; empty for an
    /// unknown agent.
    async fn agent_keys(&self, agent: &AgentId) -> Result<Vec<AgentKey>, StoreError>;

    // ---- signed actions: replay cache
    /// Deletes nonce records that expired at or before `now_ms`; how many.
    async fn purge_action_nonces(&self, now_ms: i64) -> Result<u64, StoreError>;

    // ---- tokens
    /// Records a newly issued token. `NotFound` if its agent does not exist. If the
    /// token's key was retired meanwhile (signed just before a rotation), the key's
    /// `publish_until_s` is raised to the token's expiry in the same transaction.
    async fn record_token(
        &self,
        token: &TokenRecord,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// The token with this jti.
    async fn token(&self, jti: &TokenId) -> Result<Option<TokenRecord>, StoreError>;
    /// Records a token made by token exchange and its delegation, in one transaction
    /// (as [`Store::record_token`], plus the delegation). `NotFound` if its agent or
    /// the actor does not exist; `Conflict` if the jti is recorded already.
    async fn record_delegated_token(
        &self,
        token: &TokenRecord,
        delegation: &DelegationRecord,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// The delegation of a token made by token exchange; `None` for any other token.
    async fn delegation(&self, jti: &TokenId) -> Result<Option<DelegationRecord>, StoreError>;
    /// Revokes one token of this issuer. `NotFound` if unknown or another issuer's.
    /// Revoking twice keeps the first time.
    async fn revoke_token(
        &self,
        issuer: &IssuerId,
        jti: &TokenId,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<TokenRecord, StoreError>;
    /// Every revoked agent and token, ever (for inspection; the server reads
    /// [`Store::changes_since`]).
    async fn revocations(&self) -> Result<Revocations, StoreError>;
    /// What changed after position `after` (from [`ChangePosition::START`]: every
    /// change recorded, which includes every revocation and the suspensions in force
    /// when the feed was introduced), in commit order, at most `limit` changes (at
    /// least one; the store caps it), and the position to pass next time. Token
    /// revocations whose `exp` is at or before `expired_by_s` are left out: those
    /// tokens can no longer verify.
    ///
    /// INVARIANT: a position is never passed by a change that commits later, so reading
    /// from `next` misses nothing. Positions are handed out under the audit log's head
    /// lock, the first lock of every write ([`log`]), so they follow commit order on
    /// any backend; the read takes the head position before the rows up to it.
    async fn changes_since(
        &self,
        after: ChangePosition,
        expired_by_s: i64,
        limit: u32,
    ) -> Result<ChangeFeed, StoreError>;

    /// Records a genuine issuer-signed token of this issuer (one the registry never
    /// issued, so it may not be stored yet) and revokes it, in one transaction. If the
    /// jti is already stored for this issuer it is revoked as by
    /// [`Store::revoke_token`] (first time kept); `NotFound` if the jti is another
    /// issuer's, or if the token's agent is not this issuer's.
    async fn revoke_issuer_signed_token(
        &self,
        issuer: &IssuerId,
        token: &TokenRecord,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<TokenRecord, StoreError>;

    /// Revokes one of the issuer's consent policies by its `id`, for good: records it
    /// and appends, in one transaction, the audit entry and a
    /// [`Change::TokenRevoked`] of [`bonafide_core::token::policy_revocation_id`]
    /// that never expires ([`POLICY_REVOCATION_EXPIRES_AT_S`]), which is how readers
    /// learn of it. Revoking twice returns the first revocation unchanged and appends
    /// nothing. `NotFound` if the issuer does not exist.
    async fn revoke_policy(
        &self,
        issuer: &IssuerId,
        policy_id: &str,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<PolicyRevocation, StoreError>;
    /// The issuer's revocation of this policy id, if it revoked it.
    async fn policy_revocation(
        &self,
        issuer: &IssuerId,
        policy_id: &str,
    ) -> Result<Option<PolicyRevocation>, StoreError>;
    /// The policy revocation whose revocation id
    /// ([`bonafide_core::token::policy_revocation_id`]) is `id`, if any: what a
    /// reader of the change feed's `TokenRevoked` of such an id (which names no
    /// issuer) learns it from. One indexed read (revocations recorded before the id
    /// was stored, SQLite 0033 / PostgreSQL 0017, are matched by computing theirs).
    async fn policy_revocation_by_id(
        &self,
        id: &TokenId,
    ) -> Result<Option<PolicyRevocation>, StoreError>;

    // ---- issuer keys (self-custody)
    /// Registers an issuer's public key. `Conflict` if the kid is registered already
    /// (by any issuer); `NotFound` if the issuer does not exist.
    async fn add_issuer_key(&self, key: &IssuerKey, audit: &AuditRecord) -> Result<(), StoreError>;
    /// The issuer's keys, revoked ones included, oldest first.
    async fn issuer_keys(&self, issuer: &IssuerId) -> Result<Vec<IssuerKey>, StoreError>;
    /// Every issuer's keys, revoked ones included (the server's in-memory resolver).
    async fn all_issuer_keys(&self) -> Result<Vec<IssuerKey>, StoreError>;
    /// Revokes one of the issuer's keys, for good. `NotFound` if the kid is unknown or
    /// another issuer's. Revoking twice returns the first revocation unchanged and
    /// appends nothing.
    async fn revoke_issuer_key(
        &self,
        issuer: &IssuerId,
        kid: &str,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<IssuerKey, StoreError>;

    /// Marks `domain.domain` verified for `domain.issuer_id`, replacing any domain
    /// the issuer verified before (one domain per issuer), if `domain.kid` is one of
    /// the issuer's unrevoked keys, checked in the same transaction (`NotFound`
    /// otherwise). `Conflict` if another issuer holds the domain.
    async fn set_issuer_domain(
        &self,
        domain: &IssuerDomain,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// The issuer's verified domain, if any.
    async fn issuer_domain(&self, issuer: &IssuerId) -> Result<Option<IssuerDomain>, StoreError>;
    /// Every verified domain (the server's in-memory trust levels).
    async fn issuer_domains(&self) -> Result<Vec<IssuerDomain>, StoreError>;

    // ---- registry signing keys
    /// Every signing key, active and retired.
    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError>;
    /// Makes `new` the active key. In one transaction: the previously active key (if
    /// any) becomes retired with `publish_until_s` = the latest `exp` of the tokens it
    /// signed (or `now_s` if none), and `new` is stored as active.
    async fn rotate_signing_key(
        &self,
        new: &SigningKeyRecord,
        now_s: i64,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;

    /// Stores `next` (its state is ignored) as the next signing key: published, signing
    /// nothing until [`Store::activate_next_signing_key`], in one transaction with its
    /// audit entry; false (nothing written) if a next key is stored already.
    async fn publish_next_signing_key(
        &self,
        next: &SigningKeyRecord,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError>;
    /// Makes the next key `kid` the active one, as [`Store::rotate_signing_key`] does
    /// for a new key (the active key retired, published until the last `exp` of its
    /// tokens or `now_s`), in one transaction with its audit entry; false (nothing
    /// written) if `kid` is not the next key (another replica activated it first).
    async fn activate_next_signing_key(
        &self,
        kid: &str,
        now_s: i64,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError>;

    /// Stores `new` as the active signing key only if there is no active key yet, in
    /// one transaction with its audit entry; whether it was stored. Replicas starting
    /// together on a new database each offer a key and agree on the one stored first.
    async fn create_first_signing_key(
        &self,
        new: &SigningKeyRecord,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError>;
    /// Rewrites stored private keys (signing keys, the receipt key, the log key) in
    /// one transaction: `reseal` sees each one's slot and stored text and returns its
    /// replacement, or `None` to keep it; how many rows changed. An error from
    /// `reseal` rolls everything back. The rows are locked while it runs (replicas
    /// sealing at once queue, the later ones seeing sealed text). Used to seal keys
    /// stored in plaintext before sealing existed; the keys themselves do not change,
    /// so nothing is audited nor fed to readers.
    async fn reseal_private_keys(&self, reseal: &Reseal<'_>) -> Result<usize, StoreError>;

    // ---- audit log
    /// Appends `records` in order, in one durable transaction, with their stored
    /// hashes; returns the index of the first (the tree size before, if `records` is
    /// empty). Appends never interleave: the log is one linear sequence.
    async fn audit_append(&self, records: &[AuditRecord]) -> Result<u64, StoreError>;
    /// Number of records in the log.
    async fn audit_size(&self) -> Result<u64, StoreError>;
    /// The stored hashes at these stored-hash indexes (`core::merkle`), in the same
    /// order. `NotFound` if any is not stored.
    async fn audit_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError>;
    /// Records `[start, end)` that exist, in order; at most 10,000 (a longer range is
    /// cut there: callers page).
    async fn audit_entries(&self, start: u64, end: u64) -> Result<Vec<AuditRow>, StoreError>;
    /// The index of the first record with this leaf hash.
    async fn audit_find(&self, leaf_hash: &Hash) -> Result<Option<u64>, StoreError>;
    /// Stores a signed checkpoint. Storing the same one again is a no-op; another
    /// checkpoint of the same size is a `Conflict`.
    async fn audit_add_checkpoint(&self, checkpoint: &CheckpointRecord) -> Result<(), StoreError>;
    /// The largest checkpoint stored.
    async fn audit_latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, StoreError>;
    /// The log key: the stored one, or `candidate` stored now if there is none.
    async fn audit_log_key(&self, candidate: &LogKeyRecord) -> Result<LogKeyRecord, StoreError>;
    /// Where the pruned prefix of the log ends (0: nothing pruned). Below it the
    /// records' entries are gone from the store (served from an export of the log's
    /// tiles, `bonafide audit export`); every hash at level >= [`PRUNE_TILE_LEVEL`]
    /// stays (the records with index % 256 == 255 keep their hashes), so proofs above
    /// a tile and appends need nothing else, and each full tile's root is kept.
    async fn audit_pruned(&self) -> Result<u64, StoreError>;
    /// Prunes records `[from, to)`, in one transaction: deletes them except the last
    /// of each tile of 256 (index % 256 == 255), whose entry and readers are emptied
    /// while its hashes stay; moves the pruned mark to `to`; appends `audit` (if any)
    /// in the same transaction. `from` must be the current mark, `from < to`, both
    /// multiples of 256, and `to` at most the latest stored checkpoint's size and the
    /// leaf index's progress: else `Conflict(PruneRange)` and nothing is written.
    /// Returns how many records were pruned (`to - from`). Callers prune in chunks
    /// ([`AUDIT_PRUNE_CHUNK`]) so that appends keep committing meanwhile.
    async fn audit_prune(
        &self,
        from: u64,
        to: u64,
        audit: Option<&AuditRecord>,
    ) -> Result<u64, StoreError>;
    /// The pruned records (below the mark, entry gone) whose leaf hash may be
    /// `leaf_hash`, ascending: the leaf index keeps 8 bytes of each hash, so the
    /// caller checks the full hash against the export.
    async fn audit_find_pruned(&self, leaf_hash: &Hash) -> Result<Vec<u64>, StoreError>;

    // ---- decisions: budgets, idempotency, receipts
    /// Records verify decisions in order, in one durable transaction. For each item:
    /// 1. with an idempotency claim whose (receiver, key) is stored: the same
    ///    `request_sha256` gives [`DecisionOutcome::Replay`], another gives
    ///    [`DecisionOutcome::IdempotencyConflict`]; nothing is written for it;
    /// 2. with a budget, its current `spent` is read (zero if none);
    /// 3. `decide` runs with it; an error from `decide` is that item's error and
    ///    nothing is written for it;
    /// 4. the charge is added to the budget (`Conflict` for the item, nothing
    ///    written, if it would exceed the cap, is negative or has no budget; a
    ///    charge in another currency goes to another budget, see [`BudgetKey`]),
    ///    the audit entry is appended, the receipt and the idempotency record
    ///    (answer, audit index) stored.
    ///
    /// Budgets are read and charged inside the transaction, so under any concurrency
    /// (and across processes sharing the database) the sum of charges in a period
    /// never exceeds its cap. An `Err` for the whole call means nothing was written.
    /// `now_ms` is the time of records whose decision carries none (the store never
    /// reads a clock). Backends implement this with [`ledger::record_decisions`] over
    /// their transaction ([`ledger::LedgerTx`]; its docs give the lock order).
    async fn record_decisions(
        &self,
        items: Vec<DecisionItem>,
        now_ms: i64,
    ) -> Result<Vec<Result<DecisionOutcome, StoreError>>, StoreError>;
    /// What a budget has spent (zero if it has no record).
    async fn budget_spent(&self, key: &BudgetKey) -> Result<Decimal, StoreError>;
    /// A stored receipt.
    async fn receipt(&self, id: &ReceiptId) -> Result<Option<ReceiptRecord>, StoreError>;
    /// The receipt-signing key: the stored one, or `candidate` stored now if none.
    async fn receipt_key(
        &self,
        candidate: &ReceiptKeyRecord,
    ) -> Result<ReceiptKeyRecord, StoreError>;

    // ---- push events (issue 19): webhooks and acknowledgements

    /// The event-signing key (it signs only Security Event Tokens), in the receipt
    /// key's shape: the stored one, or `candidate` stored now if none.
    async fn event_key(&self, candidate: &ReceiptKeyRecord)
    -> Result<ReceiptKeyRecord, StoreError>;
    /// Stores a new webhook (its id is new).
    async fn create_webhook(&self, webhook: &Webhook) -> Result<(), StoreError>;
    /// A receiver's webhooks (every receiver's when `None`), oldest first.
    async fn webhooks(&self, receiver: Option<&ReceiverId>) -> Result<Vec<Webhook>, StoreError>;
    /// Deletes a receiver's webhook; false if it has none by that id.
    async fn delete_webhook(&self, receiver: &ReceiverId, id: &str) -> Result<bool, StoreError>;
    /// Unpauses a receiver's webhook (failures forgotten, next attempt at `now_ms`);
    /// false if it has none by that id.
    async fn resume_webhook(
        &self,
        receiver: &ReceiverId,
        id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Its target acknowledged every event up to `upto` at `at_ms`: the delivery
    /// position moves on (never back), failures are forgotten and the acknowledgement
    /// is recorded ([`Store::event_acks`], `via` the webhook's id, `filter` its
    /// filter) with `audit`, in one transaction. Nothing happens (nor is appended)
    /// for a webhook deleted meanwhile.
    async fn webhook_delivered(
        &self,
        id: &str,
        upto: ChangePosition,
        at_ms: i64,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// A delivery attempt failed (and perhaps paused the webhook).
    async fn webhook_failed(&self, id: &str, failure: &WebhookFailure) -> Result<(), StoreError>;
    /// Records an acknowledgement, unless the receiver already acknowledged as far
    /// over the same `via` and `filter`; true if recorded, with `audit` appended in
    /// the same transaction (an acknowledgement not recorded appends nothing).
    async fn record_event_ack(
        &self,
        ack: &EventAck,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError>;
    /// A receiver's acknowledgements: with `covering`, the first acknowledgement
    /// reaching that event of each stream (each `via` and `filter`), earliest first
    /// (whether a stream's filter follows the event is the server's to judge);
    /// without, the latest first. At most `limit`.
    async fn event_acks(
        &self,
        receiver: &ReceiverId,
        covering: Option<ChangePosition>,
        limit: u32,
    ) -> Result<Vec<EventAck>, StoreError>;
    /// Deletes idempotency records created before `before_ms`; how many. A record's
    /// time is its decision's: the audit entry's `created_at_ms`, else the receipt's,
    /// else the store's clock when it was written.
    async fn purge_idempotency(&self, before_ms: i64) -> Result<u64, StoreError>;
    /// Deletes receipts created before `before_ms` (a retention's end); how many. Their
    /// audit entries stay: the decision remains provable, only the stored receipt goes.
    /// In chunks, each its own short write, so decisions keep committing meanwhile.
    async fn purge_receipts(&self, before_ms: i64) -> Result<u64, StoreError>;

    // ---- AIM SDK verifications (crate::sdk_verifications)

    /// Records a verification made through AIM's SDK surface.
    async fn record_sdk_verification(&self, v: &NewSdkVerification) -> Result<(), StoreError>;
    /// The verification whose id hashes to `id_sha256`, with its reports.
    async fn sdk_verification(
        &self,
        id_sha256: &[u8; 32],
    ) -> Result<Option<SdkVerification>, StoreError>;
    /// Records a report about a verification unless one of its kind exists: a retry of
    /// the same `body` is [`ReportOutcome::AlreadyRecorded`], a different one a
    /// [`ReportOutcome::Conflict`] (the first stays).
    async fn report_sdk_verification(
        &self,
        id_sha256: &[u8; 32],
        kind: SdkReportKind,
        body: &str,
        at_ms: i64,
    ) -> Result<ReportOutcome, StoreError>;
    /// Deletes verifications (and their reports) made before `before_ms`; how many. Their
    /// audit entries stay. Kept as long as receipts are.
    async fn purge_sdk_verifications(&self, before_ms: i64) -> Result<u64, StoreError>;

    // ---- status lists (draft-ietf-oauth-status-list)
    /// Gives `entry` a slot in the newest list of `shape` less than half full (a new
    /// list if none): the first of `candidates` (random indexes, taken modulo the
    /// list's size) that is free. The same jti again, for the same agent and issuer,
    /// gets its slot back (`false`: not new); another agent's or issuer's jti is a
    /// `Conflict`, and so is every candidate taken (ask again with others).
    async fn status_allocate(
        &self,
        entry: &StatusEntry,
        shape: ListShape,
        candidates: &[u64],
        now_ms: i64,
    ) -> Result<(StatusSlot, bool), StoreError>;
    /// Every status list, by id.
    async fn status_lists(&self) -> Result<Vec<StatusListRecord>, StoreError>;
    /// A list's entries of tokens expiring after `live_after_s`, by index from after
    /// `after`, at most `limit` (callers page).
    async fn status_entries(
        &self,
        list_id: u32,
        after: Option<u64>,
        live_after_s: i64,
        limit: u32,
    ) -> Result<Vec<StatusEntryRow>, StoreError>;
    /// The entries (of tokens expiring after `live_after_s`) whose status depends on
    /// `subject`: an agent's own tokens and those it acts in; a token and those
    /// delegated from it.
    async fn status_entries_of(
        &self,
        subject: &StatusSubject,
        live_after_s: i64,
    ) -> Result<Vec<StatusEntryRow>, StoreError>;
    /// The cursor a reader of new entries passes to [`Store::status_entries_since`]
    /// next time, taken BEFORE it reads: every entry that is not visible yet when the
    /// horizon is taken is returned by a later read from it.
    async fn status_entry_horizon(&self) -> Result<EntryCursor, StoreError>;
    /// The entries that may have become visible since `from` was taken
    /// ([`Store::status_entry_horizon`]): every entry committed after that is among
    /// them, and some committed before may be again. By `seq` after `after_seq` (0 for
    /// the first page), at most `limit`.
    ///
    /// INVARIANT: an entry committed late (its transaction open across a read) is
    /// still returned by the read from the horizon taken before that read. SQLite
    /// reads by `seq` (one writer: `seq` order is commit order); PostgreSQL by the
    /// allocating transaction's id: every transaction the horizon's snapshot did not
    /// see as finished (its `xmax` and above, and those in progress, `xip`). So one
    /// long-open transaction makes only its own entries read again, not every entry
    /// allocated since it began.
    async fn status_entries_since(
        &self,
        from: &EntryCursor,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<StatusEntryRow>, StoreError>;
    /// Deletes entries of tokens that expired at or before `expired_by_s` (their
    /// indexes are not handed out again); how many. In chunks.
    async fn purge_status_entries(&self, expired_by_s: i64) -> Result<u64, StoreError>;
    /// Retires list `list_id` if it takes no new slots (at least half its indexes
    /// handed out, so [`Store::status_allocate`] never picks it again) and holds no
    /// entry (every one purged, so no token that can still verify names it): its
    /// published token is deleted, and nothing publishes it again. True if the list is
    /// retired (now or before); false if it is not retirable, or unknown.
    async fn retire_status_list(&self, list_id: u32) -> Result<bool, StoreError>;
    /// The latest published version of a list.
    async fn status_list_published(
        &self,
        list_id: u32,
    ) -> Result<Option<PublishedStatusList>, StoreError>;
    /// Stores a published version if it is newer than the stored one; whether it was.
    async fn publish_status_list(
        &self,
        published: &PublishedStatusList,
    ) -> Result<bool, StoreError>;
    /// The status-list signing key: the stored one, or `candidate` stored now if none.
    async fn status_list_key(
        &self,
        candidate: &ReceiptKeyRecord,
    ) -> Result<ReceiptKeyRecord, StoreError>;

    // ---- rate limits (issue 18 item 4)
    /// Takes leases from shared token buckets ([`limits::take`]'s rule), all in one
    /// short transaction (each bucket's row locked while it is read and written, in
    /// the order given; callers pass each bucket once): one grant per take, in order.
    /// Not audited and recorded in no feed: buckets are counters, not registry state.
    async fn rate_take(
        &self,
        takes: &[RateTake],
        now_ms: i64,
    ) -> Result<Vec<RateGrant>, StoreError>;
    /// Deletes buckets last taken from before `idle_before_ms` (a bucket idle for its
    /// whole window is full, as a missing one is); how many.
    async fn purge_rate_buckets(&self, idle_before_ms: i64) -> Result<u64, StoreError>;
    /// Every rate-limit setting, by name.
    async fn rate_limit_settings(&self) -> Result<Vec<RateLimitSetting>, StoreError>;
    /// Sets (`Some`) or removes (`None`) the setting `name`, with its audit entry in
    /// the same transaction; whether anything changed (setting the value it has, or
    /// removing a missing one, appends nothing).
    async fn set_rate_limit_setting(
        &self,
        name: &str,
        value: Option<&str>,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError>;
    // ---- quotas and usage (issue 18 item 5)
    /// Counts verifications against organisations' monthly quotas ([`quota::take`]'s
    /// rule), all in one short transaction (each month's row locked while it is read
    /// and written; callers pass each organisation and month once): one grant per
    /// take, in order. A take that sets its month's warning flag appends the month's
    /// `quota.warning` audit entry ([`quota::warning_record`], at `now_ms`) in the
    /// same transaction.
    async fn quota_take(
        &self,
        takes: &[QuotaTake],
        now_ms: i64,
    ) -> Result<Vec<QuotaGrant>, StoreError>;
    /// An organisation's count for a month (0 if nothing was counted).
    async fn quota_used(&self, org: &OrgId, month: &str) -> Result<u64, StoreError>;
    /// Every organisation's assigned plan (organisations without one are on the
    /// registry's default plan).
    async fn org_plans(&self) -> Result<Vec<(OrgId, String)>, StoreError>;
    /// Assigns (`Some`) or clears (`None`) an organisation's plan, with its audit entry
    /// in the same transaction; whether anything changed. `NotFound` for an unknown
    /// organisation.
    async fn set_org_plan(
        &self,
        org: &OrgId,
        plan: Option<&str>,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError>;
    /// Adds request counts to the daily usage table (one transaction).
    async fn add_usage(&self, counts: &[UsageCount]) -> Result<(), StoreError>;
    /// An organisation's usage rows from day `from` to day `to` (`YYYY-MM-DD`, both
    /// included), by day, key and route.
    async fn usage(&self, org: &OrgId, from: &str, to: &str)
    -> Result<Vec<UsageCount>, StoreError>;
    // ---- organisations, people and sessions (issue 18)

    /// The key that signs people's access tokens (`at+jwt`, nothing else): the stored
    /// one, or `candidate` stored now if none.
    async fn session_key(
        &self,
        candidate: &ReceiptKeyRecord,
    ) -> Result<ReceiptKeyRecord, StoreError>;
    /// The AgentOAuth playground's demo issuer key (signs demo consent tokens only):
    /// the stored one, or `candidate` stored now if none.
    async fn playground_key(
        &self,
        candidate: &ReceiptKeyRecord,
    ) -> Result<ReceiptKeyRecord, StoreError>;
    /// Creates an organisation with the invitation of its first owner (name taken:
    /// `Conflict(OrgNameTaken)`).
    async fn create_org(
        &self,
        org: &Organisation,
        owner: &Invitation,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// An organisation.
    async fn org(&self, id: &OrgId) -> Result<Option<Organisation>, StoreError>;
    /// Sets whether every member needs a second factor.
    async fn set_org_require_2fa(
        &self,
        id: &OrgId,
        require: bool,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// Stores an invitation into an existing organisation.
    async fn create_invitation(
        &self,
        invitation: &Invitation,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// An invitation by its token's hash.
    async fn invitation(&self, token_hash: &[u8; 32]) -> Result<Option<Invitation>, StoreError>;
    /// Accepts an invitation: the person (made now if `person` is new, else found by
    /// email; `password_hash` set only on a person who has none) joins with the
    /// invitation's role, a membership they have keeping the higher role. Refused
    /// (`NotFound`) unless unaccepted and unexpired at `now_ms`: single use, atomic.
    async fn accept_invitation(
        &self,
        token_hash: &[u8; 32],
        person: &Person,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<(Person, Membership), StoreError>;
    /// A person by id.
    async fn person(&self, id: &PersonId) -> Result<Option<Person>, StoreError>;
    /// A person by normalised email.
    async fn person_by_email(&self, email: &str) -> Result<Option<Person>, StoreError>;
    /// A person's memberships, oldest first.
    async fn memberships_of(&self, person: &PersonId) -> Result<Vec<Membership>, StoreError>;
    /// An organisation's members, oldest first.
    async fn members(&self, org: &OrgId) -> Result<Vec<Membership>, StoreError>;
    /// Changes a member's role (`NotFound` if not a member; the last owner cannot
    /// stop being one: `Conflict(LastOwner)`).
    async fn set_member_role(
        &self,
        org: &OrgId,
        person: &PersonId,
        role: Role,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// Removes a member (not the last owner) and ends their sessions if they belong to
    /// no other organisation.
    async fn remove_member(
        &self,
        org: &OrgId,
        person: &PersonId,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// Records that an organisation owns an issuer or a receiver (an existing one
    /// without an owner; one owned by another organisation: `Conflict(IdTaken)`).
    async fn set_owner_org(
        &self,
        what: &Owned,
        org: &OrgId,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// Creates an issuer with its key, owned by `org`, in one transaction; the key's
    /// `created_by` is the person who asked.
    async fn create_org_issuer(
        &self,
        issuer: &Issuer,
        key: &ApiKeyHash,
        org: &OrgId,
        created_by: &PersonId,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// Creates a receiver with its key, owned by `org`, in one transaction; the key's
    /// `created_by` is the person who asked.
    async fn create_org_receiver(
        &self,
        receiver: &Receiver,
        key: &ApiKeyHash,
        org: &OrgId,
        created_by: &PersonId,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// The organisation owning an issuer or a receiver, if any.
    async fn owner_org(&self, what: &Owned) -> Result<Option<OrgId>, StoreError>;
    /// What an organisation owns.
    async fn org_owned(&self, org: &OrgId) -> Result<Vec<Owned>, StoreError>;
    /// Starts a session with its first refresh token.
    async fn create_session(
        &self,
        session: &Session,
        refresh: &NewRefresh,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// A session by id.
    async fn session(&self, id: &SessionId) -> Result<Option<Session>, StoreError>;
    /// A person's sessions not revoked and not expired at `now_ms`, newest first.
    async fn sessions_of(&self, person: &PersonId, now_ms: i64)
    -> Result<Vec<Session>, StoreError>;
    /// A refresh token by hash, with its session.
    async fn refresh_token(&self, hash: &[u8; 32]) -> Result<Option<RefreshRecord>, StoreError>;
    /// Rotates a refresh token: marks `old` used and stores `new` in its session, in
    /// one transaction, only if `old` is unused, unexpired and its session live at
    /// `now_ms` (two concurrent uses: one rotates, the other is `AlreadyUsed`).
    async fn rotate_refresh(
        &self,
        old: &[u8; 32],
        new: &NewRefresh,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<Rotation, StoreError>;
    /// Ends a session; whether it was live (nothing appended otherwise).
    async fn revoke_session(
        &self,
        id: &SessionId,
        now_ms: i64,
        reason: &str,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError>;
    /// Sets a person's password and ends their other sessions (all, without `keep`).
    async fn set_password(
        &self,
        person: &PersonId,
        password_hash: &str,
        keep: Option<&SessionId>,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// Stores a TOTP secret (sealed) not yet confirmed, replacing any unconfirmed one
    /// (`Conflict(IdTaken)` when TOTP is already enabled).
    async fn set_totp_pending(&self, person: &PersonId, sealed: &str) -> Result<(), StoreError>;
    /// Confirms the pending TOTP secret at `step` with these recovery codes' hashes
    /// (any earlier codes dropped).
    async fn enable_totp(
        &self,
        person: &PersonId,
        step: i64,
        recovery: &[[u8; 32]],
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<(), StoreError>;
    /// Turns TOTP off and drops the recovery codes.
    async fn disable_totp(&self, person: &PersonId, audit: &AuditRecord) -> Result<(), StoreError>;
    /// Claims a TOTP time step: true only if it is later than the last one used
    /// (a code is single use, across replicas).
    async fn claim_totp_step(&self, person: &PersonId, step: i64) -> Result<bool, StoreError>;
    /// Uses a recovery code: true only if it is the person's and unused.
    async fn use_recovery_code(
        &self,
        person: &PersonId,
        hash: &[u8; 32],
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError>;
    /// Unused recovery codes left.
    async fn recovery_codes_left(&self, person: &PersonId) -> Result<u32, StoreError>;
    /// Login failures of each subject (missing ones: none).
    async fn login_throttle(&self, subjects: &[String]) -> Result<Vec<Throttle>, StoreError>;
    /// Records a failure for each subject (a run of failures older than `window_ms`
    /// starts again at 1), or, with `failed` false, clears them.
    async fn login_attempt(
        &self,
        subjects: &[String],
        failed: bool,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<(), StoreError>;
    /// Checks and records a login attempt in one transaction (each subject's row
    /// locked): if any subject is backing off ([`accounts::backoff_remaining_ms`] with
    /// its rule's `free`), nothing is written and the longest wait is returned;
    /// otherwise a failure is recorded for every subject (reserved before the password
    /// is checked, so parallel attempts cannot all pass the check) and 0 returned. A
    /// login that then succeeds clears or releases what it reserved.
    async fn login_reserve(
        &self,
        rules: &[ThrottleRule],
        now_ms: i64,
        window_ms: i64,
    ) -> Result<i64, StoreError>;
    /// Takes back one reserved failure of each subject (an attempt that turned out
    /// not to be a failure).
    async fn login_release(&self, subjects: &[String]) -> Result<(), StoreError>;
    /// Stores a security event.
    async fn add_security_event(&self, event: &SecurityEvent) -> Result<(), StoreError>;
    /// Security events after `after_id`, oldest first, at most `limit`: an
    /// organisation's (its own and its members'), or every one with `None`.
    async fn security_events(
        &self,
        org: Option<&OrgId>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<SecurityEvent>, StoreError>;
    /// Drops security events older than `before_ms` and stale login failures, refresh
    /// tokens that expired before `before_ms`, and sessions that ended before it
    /// (revoked, or expired with every refresh token of theirs) with their tokens, in
    /// short chunks; how many security events went. A session still usable, and its
    /// tokens that have not expired by `before_ms` (a past time: the server passes
    /// now minus the security events' retention), are kept.
    async fn purge_security_events(&self, before_ms: i64) -> Result<u64, StoreError>;

    // ---- health

    /// The backend's name, as health answers show it (`sqlite`, `postgres`).
    fn backend(&self) -> &'static str {
        "unknown"
    }

    /// The connection pool's state now, for metrics (`None`: the backend has none).
    fn pool_status(&self) -> Option<PoolStatus> {
        None
    }

    /// Whether writes can commit now, answered cheaply for health checks: `Ok` unless
    /// the latest write failed for want of space or for I/O ([`StoreError::Full`],
    /// [`StoreError::Unavailable`]) and nothing since has shown that writes work again
    /// (a later commit, or the backend's own probe of its storage, run at most about
    /// once a second while failing). Never adds a row.
    async fn writable(&self) -> Result<(), StoreError>;

    // ---- replicas

    /// Wakes a reader of the change feed when another process may have committed a
    /// change ([`ChangeSignal`]). Default: never (one process: SQLite). PostgreSQL:
    /// `LISTEN`, woken by the `NOTIFY` every write that records a change sends inside
    /// its transaction (so it is delivered only on commit), and once more after a lost
    /// listening connection is back (notifications may have been missed meanwhile).
    fn change_signal(&self) -> ChangeSignal {
        ChangeSignal::none()
    }

    /// Whether this process is the one that signs the audit log's checkpoints now,
    /// trying to become it if no process is; call it before each signing. Default:
    /// always (one process: SQLite). PostgreSQL: a session advisory lock held on a
    /// dedicated connection, so the leader's death (its session ending) frees it for
    /// the next caller; a leader whose connection failed is no longer one. An `Err`
    /// means "not now" (the database cannot be reached).
    async fn checkpoint_leader(&self) -> Result<bool, StoreError> {
        Ok(true)
    }
}

#[cfg(test)]
mod tests {

    /// A prepared record appends as the same record: its leaf hash and packed form
    /// are the entry's, and it equals the record unprepared.
    #[test]
    fn a_prepared_record_is_the_record_it_was() {
        let plain = AuditRecord {
            entry: br#"{"decision":"allowed","kind":"verify","reasons":[]}"#.to_vec(),
            agent_id: None,
            issuer_id: None,
            created_at_ms: 1,
            prepared: None,
        };
        let mut prepared = plain.clone();
        prepared.prepare();
        assert!(prepared.prepared.is_some());
        assert_eq!(prepared, plain);
        assert_eq!(
            prepared.leaf_hash(),
            bonafide_core::merkle::leaf_hash(&plain.entry)
        );
        assert_eq!(prepared.leaf_hash(), plain.leaf_hash());
        assert_eq!(prepared.packed(), plain.packed());
        assert_eq!(
            bonafide_core::audit_pack::unpack(&prepared.packed()).unwrap(),
            plain.entry
        );
    }
    use super::*;

    #[test]
    fn store_urls_name_a_backend_or_fail_clearly() {
        assert_eq!(
            Location::parse("sqlite:///var/lib/bonafide"),
            Ok(Location::DataDir("/var/lib/bonafide".into()))
        );
        assert_eq!(
            Location::parse("SQLite:data"),
            Ok(Location::DataDir("data".into()))
        );
        for url in [
            "postgres://localhost/bonafide",
            "PostgreSQL://h/db?sslmode=require",
        ] {
            assert_eq!(Location::parse(url), Ok(Location::Postgres(url.into())));
        }
        let e = Location::parse("mysql://x");
        assert_eq!(e, Err(LocationError::UnsupportedScheme("mysql".into())));
        let text = e.unwrap_err().to_string();
        assert!(
            text.contains("sqlite://") && text.contains("postgres://"),
            "{text}"
        );
        for bad in [
            "",
            "/var/lib/bonafide",
            "sqlite://",
            "sqlite:",
            ":x",
            "a b:c",
            "postgres://",
            "postgres:user:s3cret@host/db",
        ] {
            let e = Location::parse(bad);
            assert!(matches!(e, Err(LocationError::Malformed(_))), "{bad:?}");
            assert!(!e.unwrap_err().to_string().contains("s3cret"), "{bad:?}");
        }
    }

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let id = AgentId::from_random([7; 16]);
        let cursor = Cursor::after_agent(&id);
        let text = cursor.to_string();
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
            "{text}"
        );
        assert_eq!(text.parse::<Cursor>(), Ok(cursor.clone()));
        assert_eq!(cursor.agent(), Some(id));
        let long = "A".repeat(MAX_CURSOR_LEN + 1);
        for bad in ["", "!!not-a-cursor!!", "Zm9v=", "AA", "_w", long.as_str()] {
            assert_eq!(bad.parse::<Cursor>(), Err(CursorError), "{bad:?}");
        }
        // Well-formed, naming no agent: parsed, and the listing says `NotFound`.
        let other: Cursor = bonafide_core::b64::encode(b"foo")
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(other.agent(), None);
    }
}
