//! The PostgreSQL backend (13 or newer): one database that any number of registry
//! processes (replicas) share.
//!
//! **Migrations** (`migrations/postgres/`) run on open through sqlx's migrator, on a
//! connection of their own without the statement timeout. The migrator holds a
//! session-level `pg_advisory_lock` (keyed by the database name) from before it reads
//! `_sqlx_migrations` until it has applied everything (sqlx-postgres `migrate.rs`,
//! `lock`/`unlock`; `Migrator::locking` defaults to on), so replicas starting at once
//! wait for each other and the schema is migrated once; a migrator that dies releases
//! the lock with its session.
//!
//! **Serialization.** The audit log's layout, the change feed and the decision batch
//! are written once for every backend (`store::log`, `store::ledger`); this file
//! implements their transaction traits (`LogRead`, `LogTx`, `LedgerTx`) with SQL on
//! a `PgConnection`, and nothing of the Merkle layout. Every audited write begins
//! with `log::lock`, whose first statement locks the one row of `log_head`
//! (`SELECT … FOR UPDATE`; it holds the audit log's size), and ends with the one
//! `Head::append` of its audit records and its `Change`s. So writers, in every
//! process, run one after the other on what matters: audit indexes and change
//! positions are handed out gapless and in commit order, and a budget is read and
//! charged by one transaction at a time. Lock order, always: the log head first,
//! then budget rows (`FOR UPDATE` in the ledger's reads, redundant under the head's
//! lock but a guard if a writer ever skips it), then whatever rows the statement
//! touches. Because every writer takes the head first, writers cannot deadlock with
//! each other, and READ COMMITTED is enough: each statement after the lock sees
//! everything committed before it was granted. The writes that append nothing (a
//! checkpoint, the log and receipt keys: one insert-if-absent each) take no head.
//! Transactions are still retried, a few times with a short back-off, on
//! `serialization_failure` (40001) and `deadlock_detected` (40P01): the closure is run
//! again from `BEGIN`, which the ledger allows (`Decide` is `Fn`). Reads take no lock.
//!
//! **Positions.** A change's position and an agent's listing position (`list_pos`,
//! the audit index of its registration) are handed out under the head's lock, which
//! is released only once the commit is visible; so when a reader sees position N
//! committed, every position below N has committed (or was never used). That is why
//! `changes_since` (`log::changes_since`: the head position, then the rows up to it)
//! needs no snapshot, and why a `list_agents` page boundary (`store::Cursor`, naming
//! the last agent) is never passed by an agent that commits later.
//!
//! **Errors.** A unique violation is `Conflict(ConflictKind)` by constraint name
//! (never the server's text), a foreign-key violation `NotFound`, the database
//! unreachable, shutting down, a read-only standby, a lost connection, a pool or
//! statement timeout `Unavailable` (the server answers 503), a full disk `Full`. A
//! lost connection is never retried here: a `COMMIT` cut off may have committed.
//!
//! **Timeouts.** Each connection sets `statement_timeout` (default
//! [`PostgresOptions::statement_timeout`]; a lock wait counts) and
//! `idle_in_transaction_session_timeout`, so neither a stuck query nor a stalled
//! process holding the log head can hold the registry; the URL's own `options`
//! setting either wins.
//!
//! Architecture invariant: PostgreSQL's SQL stays in this file and in
//! `migrations/postgres/`.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use bonafide_core::apikey::{ApiKeyHash, KeyKind};
use bonafide_core::ids::{AgentId, IssuerId, ReceiptId, ReceiverId, TokenId};
use bonafide_core::merkle::Hash;
use bonafide_core::names;
use bonafide_core::policy::Decimal;
use sqlx::error::DatabaseError;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions};
use sqlx::{Connection, Postgres, QueryBuilder, Transaction};

use crate::ConflictKind;
use crate::PolicyRevocation;
use crate::accounts::{
    InvitationRow, MembershipRow, OrgRow, PersonRow, RefreshRow, SecurityEventRow, SessionRow,
    person_columns, session_columns,
};
use crate::ledger::{self, BudgetRow, Claimed, LedgerTx};
use crate::log;
use crate::rows::{self, *};
use crate::{
    Agent, AgentKey, AgentStatus, ApiKeyRecord, AuditRecord, AuditRow, BudgetKey, Change,
    ChangeFeed, ChangePosition, ChangeSignal, CheckpointRecord, Cursor, DecisionItem,
    DecisionOutcome, DelegationRecord, IdempotencyClaim, Issuer, IssuerKey, KeyState, ListShape,
    LogKeyRecord, NonceClaim, Page, PrivateKeySlot, PublishedStatusList, ReceiptKeyRecord,
    ReceiptRecord, Receiver, Reseal, Revocations, SigningKeyRecord, StatusEntry, StatusEntryRow,
    StatusListRecord, StatusSlot, StatusSubject, Store, StoreError, TokenRecord,
};
use crate::{EventAck, Webhook, WebhookFailure};
use crate::{InheritedLimit, QuotaGrant, QuotaTake, UsageCount, quota};
use crate::{
    Invitation, Membership, NewRefresh, Organisation, Owned, Person, RefreshRecord, Role, Rotation,
    SecurityEvent, Session, Throttle, ThrottleRule,
};
use crate::{NewSdkVerification, ReportOutcome, SdkReportKind, SdkVerification};
use crate::{RateGrant, RateLimitSetting, RateTake, limits};
use bonafide_core::ids::{OrgId, PersonId, SessionId};

/// Largest page `list_agents` returns, whatever the caller asks.
const MAX_PAGE: u32 = 1000;
/// Audit rows per multi-row `INSERT` (7 bound values each; PostgreSQL takes 65,535).
const AUDIT_ROWS_PER_INSERT: usize = 256;
/// Bound values per `IN (…)` list when reading stored hashes or ranges.
const MAX_IN_LIST: usize = 512;
/// Idempotency records deleted per purge statement.
const PURGE_CHUNK: i64 = 5_000;
/// Sessions deleted per transaction by the purge (each with its refresh tokens).
const SESSION_PURGE_CHUNK: i64 = 500;
/// A session `s` that ended before the time bound as `$1`: revoked then, or expired
/// then with every refresh token of its family expired then too. Nothing of it can
/// be used again (a refresh is refused, its access tokens are refused once their
/// session is: see `Store::session`), so it may be deleted with its tokens.
const SESSION_ENDED: &str = "(s.revoked_at_ms < $1 OR (s.expires_at_ms < $1 AND NOT EXISTS \
     (SELECT 1 FROM refresh_tokens r WHERE r.session_id = s.id AND r.expires_at_ms >= $1)))";
/// Largest range `audit_entries` reads at once, whatever the caller asks.
const MAX_AUDIT_RANGE: u64 = 10_000;
/// Receipt and idempotency rows per multi-row `INSERT` (6 bound values each).
const DECISION_ROWS_PER_INSERT: usize = 256;
/// Attempts of a write transaction that fails with a serialization failure or a
/// deadlock (the first included).
const MAX_ATTEMPTS: u32 = 5;
/// Back-off before the second attempt; doubled for each later one.
const FIRST_BACKOFF: Duration = Duration::from_millis(5);
/// How long [`Store::writable`]'s probe may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// What a retryable failure's [`StoreError::Unavailable`] text starts with: the retry
/// loop recognises its own mapping by it (the text never reaches a client).
const RETRYABLE: &str = "transaction conflict (serialization failure or deadlock)";

/// Columns of [`AgentRow`], as a literal for `concat!`.
macro_rules! agent_columns {
    () => {
        "seq, id, issuer_id, name, description, scopes, audience, token_ttl_s, status, \
         created_at_ms, revoked_at_ms, revoke_reason, policy, user_ref, suspended_at_ms, \
         suspend_reason, allow_bearer_tokens"
    };
}

/// Columns of [`TokenRow`], as a literal for `concat!`.
macro_rules! token_columns {
    () => {
        "jti, agent_id, issuer_id, kid, issued_at_s, expires_at_s, revoked_at_ms"
    };
}

/// Columns of [`IssuerKeyRow`], as a literal for `concat!`.
macro_rules! issuer_key_columns {
    () => {
        "kid, issuer_id, alg, jwk, created_at_ms, revoked_at_ms, alias"
    };
}

/// Runs `$body` (a block evaluating to `Result<T, StoreError>`, in which `?` and
/// `return` end the attempt) inside a write transaction (an audited body's first
/// statement is `log::lock`, taking the log head), and commits it when the body
/// returns `Ok`. A serialization failure or deadlock, in the
/// body or at commit, rolls the attempt back and runs the body again in a new
/// transaction, up to [`MAX_ATTEMPTS`]; any other error is returned as it is (the
/// dropped transaction rolls back). `|tx, attempt|` also names the attempt (from 1).
macro_rules! in_write_tx {
    ($store:expr, |$tx:ident| $body:block) => {
        in_write_tx!($store, |$tx, _attempt| $body)
    };
    ($store:expr, |$tx:ident, $attempt:ident| $body:block) => {{
        let mut $attempt: u32 = 0;
        loop {
            $attempt += 1;
            let outcome: Result<_, StoreError> = async {
                #[allow(unused_mut)]
                let mut $tx = $store.begin_write().await?;
                let value: Result<_, StoreError> = $body;
                let value = value?;
                $tx.commit().await.map_err(db_err)?;
                Ok(value)
            }
            .await;
            match outcome {
                Err(e) if retryable(&e) && $attempt < MAX_ATTEMPTS => {
                    tracing::debug!(attempt = $attempt, error = %e, "retrying a write transaction");
                    tokio::time::sleep(FIRST_BACKOFF * 2u32.pow($attempt - 1)).await;
                }
                other => break other,
            }
        }
    }};
}

/// Tuning of a [`PostgresStore`]; [`Default`] suits a registry replica.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresOptions {
    /// `statement_timeout` of every connection (a lock wait counts): a statement
    /// running longer fails with [`StoreError::Unavailable`]. A `statement_timeout` in
    /// the URL's `options` wins.
    pub statement_timeout: Duration,
    /// Most connections this process holds.
    pub max_connections: u32,
    /// How long an operation waits for a free connection before
    /// [`StoreError::Unavailable`].
    pub acquire_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions {
            statement_timeout: Duration::from_secs(5),
            max_connections: 16,
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

impl PostgresOptions {
    /// These options with another statement timeout.
    pub fn with_statement_timeout(mut self, timeout: Duration) -> Self {
        self.statement_timeout = timeout;
        self
    }

    /// These options with another connection cap (at least 1).
    pub fn with_max_connections(mut self, n: u32) -> Self {
        self.max_connections = n.max(1);
        self
    }
}

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// The PostgreSQL [`Store`]. Cheap to share behind an `Arc`; `Debug` shows the
/// server and database, never the password.
pub struct PostgresStore {
    pool: PgPool,
    /// `host:port/database`, for logs.
    target: String,
    /// How the pool connects: the listener and the leader's session connect the same
    /// way, outside the pool (each holds its connection for good).
    connect: PgConnectOptions,
    /// Wakes change-feed readers; the listening task starts on the first
    /// [`Store::change_signal`] (a CLI command that opens the store never listens).
    changes: std::sync::OnceLock<tokio::sync::watch::Sender<u64>>,
    /// The checkpoint leader's session, and whether it holds the lock.
    leader: tokio::sync::Mutex<Option<LeaderSession>>,
}

/// A dedicated connection that holds (or tries for) the checkpoint leader's lock.
struct LeaderSession {
    conn: PgConnection,
    holds: bool,
}

/// The `NOTIFY` channel every write that records a change signals on.
const CHANGES_CHANNEL: &str = "bonafide_changes";
/// The checkpoint leader's advisory lock: the two-key form (`classid`, `objid`),
/// whose key space is apart from the one-key locks sqlx's migrator takes.
const LEADER_LOCK: (i32, i32) = (0x626f_6e61, 1); // "bona", 1
/// Pause after the listening connection failed to come back, before trying again.
const LISTEN_RETRY: Duration = Duration::from_millis(500);

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresStore")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

/// The URL's connection options (`sslmode`, `sslrootcert`, `options`, `host`…, as
/// libpq reads them). The error names the problem, never the URL (it may hold a
/// password).
fn connect_options(url: &str) -> Result<PgConnectOptions, StoreError> {
    PgConnectOptions::from_str(url)
        .map_err(|e| StoreError::Backend(format!("invalid PostgreSQL URL: {}", redact_error(&e))))
}

/// sqlx's configuration errors quote what they could not parse; keep only the kind.
fn redact_error(e: &sqlx::Error) -> &'static str {
    match e {
        sqlx::Error::Configuration(_) => "it does not parse as a postgres:// URL",
        _ => "it cannot be used",
    }
}

impl PostgresStore {
    /// Stores `key` in `state` (and appends `audit`) unless a key is in that state
    /// already (`false`): the first active key at start, the next key of a scheduled
    /// rotation. Under the log head's row lock, which every audited write takes first:
    /// replicas doing it together queue here, and each later one sees the first one's
    /// key (READ COMMITTED reads after the lock see its commit).
    async fn insert_signing_key_unless(
        &self,
        state: KeyState,
        key: &SigningKeyRecord,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let held: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM signing_keys WHERE state = $1 LIMIT 1")
                    .bind(key_state_str(state))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?;
            if held.is_some() {
                return Ok(false);
            }
            sqlx::query(
                "INSERT INTO signing_keys (kid, alg, private_pem, state, created_at_ms, publish_until_s) \
                 VALUES ($1, $2, $3, $4, $5, NULL)",
            )
            .bind(&key.kid)
            .bind(key.alg.as_str())
            .bind(&key.private_pem)
            .bind(key_state_str(state))
            .bind(key.created_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            log.append(
                &mut *tx,
                std::slice::from_ref(audit),
                &[Change::SigningKeysChanged],
            )
            .await?;
            Ok(true)
        })
    }

    /// Opens the database at `url` (`postgres://user:password@host:port/db?sslmode=…`)
    /// with [`PostgresOptions::default`], its schema brought up to date.
    pub async fn open(url: &str) -> Result<Self, StoreError> {
        Self::open_with(url, PostgresOptions::default()).await
    }

    /// Opens the database at `url` with `options`, its schema brought up to date
    /// (under the migrator's advisory lock, see the module docs).
    pub async fn open_with(url: &str, options: PostgresOptions) -> Result<Self, StoreError> {
        let base = connect_options(url)?;
        let target = format!(
            "{}:{}/{}",
            base.get_host(),
            base.get_port(),
            base.get_database().unwrap_or("")
        );
        // Migrations on a connection of their own, without our timeouts: waiting for
        // another replica's migration, or a long one, is not a stuck request.
        // (A one-connection pool: `Migrator::run` on a bare connection is not `Send`.)
        // An unreachable server is retried for `acquire_timeout`, not sqlx's 30 s.
        let migrator = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(base.clone())
            .await
            .map_err(db_err)?;
        let migrated = MIGRATOR.run(&migrator).await;
        migrator.close().await;
        migrated.map_err(|e| StoreError::Backend(format!("migration failed: {e}")))?;

        let set = base.get_options().unwrap_or("").to_owned();
        let mut timeouts: Vec<(&str, String)> = Vec::new();
        if !set.contains("statement_timeout") {
            timeouts.push((
                "statement_timeout",
                options.statement_timeout.as_millis().to_string(),
            ));
        }
        // A process that stalls (or is partitioned away) inside a transaction holds the
        // log head: the server ends such a session after this long, rolling it back.
        if !set.contains("idle_in_transaction_session_timeout") {
            let idle = options.statement_timeout.max(Duration::from_secs(1)) * 2;
            timeouts.push((
                "idle_in_transaction_session_timeout",
                idle.as_millis().to_string(),
            ));
        }
        let mut connect = base.options(timeouts);
        if connect.get_application_name().is_none() {
            connect = connect.application_name("bonafide");
        }
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            // Connections are pinged before use (the default): one the server closed
            // (a restart, `pg_terminate_backend`) is replaced, not handed out.
            .test_before_acquire(true)
            .connect_with(connect.clone())
            .await
            .map_err(db_err)?;
        tracing::debug!(target = %target, "postgres store open");
        Ok(PostgresStore {
            pool,
            target,
            connect,
            changes: std::sync::OnceLock::new(),
            leader: tokio::sync::Mutex::new(None),
        })
    }

    /// Whether a registry's schema exists in the database at `url` (never creates
    /// one).
    pub async fn exists_at(url: &str) -> Result<bool, StoreError> {
        let mut conn = PgConnection::connect_with(&connect_options(url)?)
            .await
            .map_err(db_err)?;
        let found: bool = sqlx::query_scalar("SELECT to_regclass('log_head') IS NOT NULL")
            .fetch_one(&mut conn)
            .await
            .map_err(db_err)?;
        let _ = conn.close().await;
        Ok(found)
    }

    /// Closes every connection, waiting for those in use.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Begins a write transaction (READ COMMITTED). An audited write's first
    /// statement is then [`log::lock`], which locks the log head (see the module docs
    /// for the order).
    pub(crate) async fn begin_write(&self) -> Result<Transaction<'static, Postgres>, StoreError> {
        self.pool.begin().await.map_err(db_err)
    }

    /// Test support for the retry loop: appends `records` as
    /// [`Store::audit_append`] does, but its first `failures` attempts raise SQLSTATE
    /// `sqlstate` from the database after writing (a real error, rolled back as any).
    /// Returns the first index and the number of attempts made.
    #[cfg(feature = "conformance")]
    #[doc(hidden)]
    pub async fn audit_append_failing(
        &self,
        records: &[AuditRecord],
        failures: u32,
        sqlstate: &str,
    ) -> Result<(u64, u32), StoreError> {
        // SQLSTATEs are five characters of [0-9A-Z]; nothing else reaches the SQL.
        if sqlstate.len() != 5
            || !sqlstate
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        {
            return Err(StoreError::Backend("not a SQLSTATE".into()));
        }
        let raise = format!(
            "DO $$ BEGIN RAISE EXCEPTION 'provoked by a test' USING ERRCODE = '{sqlstate}'; END $$"
        );
        let mut attempts = 0;
        let first = in_write_tx!(self, |tx, attempt| {
            attempts = attempt;
            let log = log::lock(&mut *tx).await?;
            let first = log.append(&mut *tx, records, &[]).await?;
            if attempt <= failures {
                sqlx::raw_sql(sqlx::AssertSqlSafe(raise.clone()))
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
            Ok::<_, StoreError>(first)
        })?;
        Ok((first, attempts))
    }
}

/// Test support (the conformance suite's fresh stores): scratch databases on a server
/// whose URL names a role that may create databases.
#[cfg(any(test, feature = "conformance"))]
#[doc(hidden)]
impl PostgresStore {
    /// Creates the empty database `name` (lowercase ASCII letters, digits and `_`,
    /// at most 63 bytes: PostgreSQL would silently truncate a longer name) on the
    /// server at `admin_url`; returns `admin_url` naming it instead.
    pub async fn create_test_database(admin_url: &str, name: &str) -> Result<String, StoreError> {
        let url = url_with_database(admin_url, check_test_database_name(name)?)?;
        let mut conn = PgConnection::connect_with(&connect_options(admin_url)?)
            .await
            .map_err(db_err)?;
        let created = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .execute(&mut conn)
            .await
            .map_err(db_err);
        let _ = conn.close().await;
        created.map(|_| url)
    }

    /// Drops the database `name` on the server at `admin_url`, ending its sessions.
    pub async fn drop_test_database(admin_url: &str, name: &str) -> Result<(), StoreError> {
        let name = check_test_database_name(name)?;
        let mut conn = PgConnection::connect_with(&connect_options(admin_url)?)
            .await
            .map_err(db_err)?;
        let dropped = sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
            "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
        )))
        .execute(&mut conn)
        .await
        .map_err(db_err);
        let _ = conn.close().await;
        dropped.map(drop)
    }
}

/// `name` if it is safe to splice into SQL and a URL as a database name.
#[cfg(any(test, feature = "conformance"))]
fn check_test_database_name(name: &str) -> Result<&str, StoreError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(name)
    } else {
        Err(StoreError::Backend("not a test database name".into()))
    }
}

/// `url` with its path (the database) replaced by `/name`, its query kept.
#[cfg(any(test, feature = "conformance"))]
fn url_with_database(url: &str, name: &str) -> Result<String, StoreError> {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let (scheme, rest) = base
        .split_once("://")
        .ok_or_else(|| StoreError::Backend("not a postgres:// URL".into()))?;
    let authority = rest.split('/').next().unwrap_or_default();
    Ok(match query {
        Some(query) => format!("{scheme}://{authority}/{name}?{query}"),
        None => format!("{scheme}://{authority}/{name}"),
    })
}

/// Whether `e` is this backend's mapping of a serialization failure or deadlock.
fn retryable(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(text) if text.starts_with(RETRYABLE))
}

#[async_trait]
impl Store for PostgresStore {
    async fn add_admin_key(
        &self,
        hash: &ApiKeyHash,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            // A key revoked before stays revoked: supplying it again is refused.
            let revoked: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM api_keys WHERE hash = $1 AND revoked_at_ms IS NOT NULL)",
        )
        .bind(hash.0.as_slice())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
            if revoked {
                return Err(StoreError::Conflict(ConflictKind::KeyRevoked));
            }
            let added = sqlx::query(
                "INSERT INTO api_keys (hash, kind, owner, created_at_ms, name, created_by) \
             VALUES ($1, $2, NULL, $3, 'bootstrap admin key', 'bootstrap') ON CONFLICT (hash) DO NOTHING",
            )
            .bind(hash.0.as_slice())
            .bind(KeyKind::Admin.as_str())
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            log.append(&mut *tx, audited(added > 0, audit), &[]).await?;
            Ok(())
        })
    }

    async fn has_admin_key(&self) -> Result<bool, StoreError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM api_keys WHERE kind = $1 AND revoked_at_ms IS NULL)",
        )
        .bind(KeyKind::Admin.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)
    }

    async fn admin_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        sqlx::query_as::<_, ApiKeyRow>(
            "SELECT hash, kind, owner, created_at_ms, name, scopes, expires_at_ms, created_by, \
             last_used_at_ms, revoked_at_ms, rotated_from FROM api_keys \
             WHERE kind = $1 AND revoked_at_ms IS NULL ORDER BY created_at_ms, hash",
        )
        .bind(KeyKind::Admin.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(ApiKeyRow::into_record)
        .collect()
    }

    async fn revoke_admin_key(
        &self,
        hash: &ApiKeyHash,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        // The log head is held: the count and the update see the same keys.
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let admins: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM api_keys WHERE kind = $1 AND revoked_at_ms IS NULL \
             AND (expires_at_ms IS NULL OR expires_at_ms > $2)",
            )
            .bind(KeyKind::Admin.as_str())
            .bind(now_ms)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            let exists: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM api_keys \
             WHERE hash = $1 AND kind = $2 AND revoked_at_ms IS NULL)",
            )
            .bind(hash.0.as_slice())
            .bind(KeyKind::Admin.as_str())
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            if !exists {
                return Err(StoreError::NotFound);
            }
            if admins <= 1 {
                return Err(StoreError::Conflict(ConflictKind::LastAdminKey));
            }
            sqlx::query("UPDATE api_keys SET revoked_at_ms = $1 WHERE hash = $2 AND kind = $3")
                .bind(now_ms)
                .bind(hash.0.as_slice())
                .bind(KeyKind::Admin.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            log.append(
                &mut *tx,
                std::slice::from_ref(audit),
                &[Change::ApiKeyRevoked(*hash)],
            )
            .await?;
            Ok(())
        })
    }

    async fn api_key(&self, hash: &ApiKeyHash) -> Result<Option<ApiKeyRecord>, StoreError> {
        sqlx::query_as::<_, ApiKeyRow>(
            "SELECT hash, kind, owner, created_at_ms, name, scopes, expires_at_ms, created_by, \
             last_used_at_ms, revoked_at_ms, rotated_from FROM api_keys \
             WHERE hash = $1 AND revoked_at_ms IS NULL",
        )
        .bind(hash.0.as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(ApiKeyRow::into_record)
        .transpose()
    }

    async fn create_api_key(
        &self,
        record: &ApiKeyRecord,
        max_live: Option<u32>,
        limit: Option<&InheritedLimit>,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            if prefix_taken(&mut tx, &record.hash).await? {
                return Err(StoreError::Conflict(ConflictKind::IdTaken));
            }
            insert_api_key(&mut tx, record).await?;
            live_keys_within(&mut tx, record, record.created_at_ms, max_live).await?;
            maker_still_member(&mut tx, record).await?;
            let audits = inherit_limit(&mut tx, limit, record.created_at_ms, audit).await?;
            log.append(&mut *tx, &audits, &[]).await?;
            Ok(())
        })
    }

    async fn api_key_by_prefix(
        &self,
        prefix: &[u8; 8],
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let (low, high) = rows::prefix_range(prefix);
        sqlx::query_as::<_, ApiKeyRow>(concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE hash >= $1 AND hash <= $2 ORDER BY hash LIMIT 1"
        ))
        .bind(low.as_slice())
        .bind(high.as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(ApiKeyRow::into_record)
        .transpose()
    }

    async fn api_keys_of(
        &self,
        kind: KeyKind,
        owner: Option<&str>,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        sqlx::query_as::<_, ApiKeyRow>(concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE kind = $1 AND owner IS NOT DISTINCT FROM $2 \
             ORDER BY created_at_ms, hash"
        ))
        .bind(kind.as_str())
        .bind(owner)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(ApiKeyRow::into_record)
        .collect()
    }

    async fn api_keys_of_departed_makers(
        &self,
        limit: u32,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        sqlx::query_as::<_, ApiKeyRow>(concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys k WHERE k.revoked_at_ms IS NULL AND k.created_by LIKE 'usr\\_%' ESCAPE '\\' \
             AND NOT EXISTS (SELECT 1 FROM memberships m WHERE m.person_id = k.created_by \
             AND m.org_id IN (SELECT org_id FROM org_issuers WHERE issuer_id = k.owner \
             UNION SELECT org_id FROM org_receivers WHERE receiver_id = k.owner)) \
             ORDER BY k.created_at_ms, k.hash LIMIT $1"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(ApiKeyRow::into_record)
        .collect()
    }

    async fn api_keys_created_by(&self, created_by: &str) -> Result<Vec<ApiKeyRecord>, StoreError> {
        sqlx::query_as::<_, ApiKeyRow>(concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE created_by = $1 AND revoked_at_ms IS NULL \
             ORDER BY created_at_ms, hash"
        ))
        .bind(created_by)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(ApiKeyRow::into_record)
        .collect()
    }

    async fn rotate_api_key(
        &self,
        old: &ApiKeyHash,
        new: &ApiKeyRecord,
        old_expires_at_ms: i64,
        now_ms: i64,
        max_live: Option<u32>,
        limit: Option<&InheritedLimit>,
        audit: &AuditRecord,
    ) -> Result<ApiKeyRecord, StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let record = sqlx::query_as::<_, ApiKeyRow>(concat!(
                "SELECT ",
                api_key_columns!(),
                " FROM api_keys WHERE hash = $1 FOR UPDATE"
            ))
            .bind(old.0.as_slice())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .map(ApiKeyRow::into_record)
            .transpose()?
            .filter(|r| r.live_at(now_ms))
            .ok_or(StoreError::NotFound)?;
            if prefix_taken(&mut tx, &new.hash).await? {
                return Err(StoreError::Conflict(ConflictKind::IdTaken));
            }
            let expires = record
                .expires_at_ms
                .map_or(old_expires_at_ms, |e| e.min(old_expires_at_ms));
            sqlx::query("UPDATE api_keys SET expires_at_ms = $1 WHERE hash = $2")
                .bind(expires)
                .bind(old.0.as_slice())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            insert_api_key(&mut tx, new).await?;
            live_keys_within(&mut tx, new, now_ms, max_live).await?;
            maker_still_member(&mut tx, new).await?;
            let audits = inherit_limit(&mut tx, limit, now_ms, audit).await?;
            log.append(&mut *tx, &audits, &[Change::ApiKeyRevoked(*old)])
                .await?;
            Ok(ApiKeyRecord {
                expires_at_ms: Some(expires),
                ..record
            })
        })
    }

    async fn touch_api_key(&self, hash: &ApiKeyHash, now_ms: i64) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE api_keys SET last_used_at_ms = $1 WHERE hash = $2 \
             AND (last_used_at_ms IS NULL OR last_used_at_ms < $1)",
        )
        .bind(now_ms)
        .bind(hash.0.as_slice())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn create_issuer(
        &self,
        issuer: &Issuer,
        key: &ApiKeyHash,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO issuers (id, name, name_key, created_at_ms) VALUES ($1, $2, $3, $4)",
            )
            .bind(issuer.id.as_str())
            .bind(&issuer.name)
            .bind(names::issuer_name_key(&issuer.name))
            .bind(issuer.created_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query(
                "INSERT INTO api_keys (hash, kind, owner, created_at_ms, created_by) VALUES ($1, $2, $3, $4, 'admin')",
            )
            .bind(key.0.as_slice())
            .bind(KeyKind::Issuer.as_str())
            .bind(issuer.id.as_str())
            .bind(issuer.created_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            log.append(&mut *tx, std::slice::from_ref(audit), &[])
                .await?;
            Ok(())
        })
    }

    async fn issuer(&self, id: &IssuerId) -> Result<Option<Issuer>, StoreError> {
        sqlx::query_as::<_, IssuerRow>("SELECT id, name, created_at_ms FROM issuers WHERE id = $1")
            .bind(id.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?
            .map(IssuerRow::into_issuer)
            .transpose()
    }

    async fn issuer_by_name(&self, name: &str) -> Result<Option<Issuer>, StoreError> {
        sqlx::query_as::<_, IssuerRow>(
            "SELECT id, name, created_at_ms FROM issuers WHERE name_key = $1",
        )
        .bind(names::issuer_name_key(name))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(IssuerRow::into_issuer)
        .transpose()
    }

    async fn create_receiver(
        &self,
        receiver: &Receiver,
        key: &ApiKeyHash,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            sqlx::query("INSERT INTO receivers (id, name, created_at_ms) VALUES ($1, $2, $3)")
                .bind(receiver.id.as_str())
                .bind(&receiver.name)
                .bind(receiver.created_at_ms)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            sqlx::query(
                "INSERT INTO api_keys (hash, kind, owner, created_at_ms, created_by) VALUES ($1, $2, $3, $4, 'admin')",
            )
            .bind(key.0.as_slice())
            .bind(KeyKind::Receiver.as_str())
            .bind(receiver.id.as_str())
            .bind(receiver.created_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            insert_audiences(&mut tx, &receiver.id, &receiver.audiences).await?;
            log.append(&mut *tx, std::slice::from_ref(audit), &[])
                .await?;
            Ok(())
        })
    }

    async fn receiver(&self, id: &ReceiverId) -> Result<Option<Receiver>, StoreError> {
        let row = sqlx::query_as::<_, ReceiverRow>(
            "SELECT id, name, created_at_ms FROM receivers WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        let mut receiver = row.into_receiver()?;
        receiver.audiences = sqlx::query_scalar::<_, String>(
            "SELECT audience FROM receiver_audiences WHERE receiver_id = $1 ORDER BY position",
        )
        .bind(id.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(Some(receiver))
    }

    async fn set_receiver_audiences(
        &self,
        id: &ReceiverId,
        audiences: &[String],
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let known = sqlx::query_scalar::<_, i32>("SELECT 1 FROM receivers WHERE id = $1")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
            if known.is_none() {
                return Err(StoreError::NotFound);
            }
            sqlx::query("DELETE FROM receiver_audiences WHERE receiver_id = $1")
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            // Another receiver's audience is a unique violation: `Conflict`, nothing kept.
            insert_audiences(&mut tx, id, audiences).await?;
            log.append(
                &mut *tx,
                std::slice::from_ref(audit),
                &[Change::ReceiverChanged(id.clone())],
            )
            .await?;
            Ok(())
        })
    }

    async fn create_agent(
        &self,
        agent: &Agent,
        first_token: &TokenRecord,
        first_key: Option<&AgentKey>,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        if first_key.is_some_and(|k| k.agent_id != agent.id) {
            return Err(StoreError::Conflict(ConflictKind::KeyNotAgents));
        }
        let scopes = to_json(&agent.scopes)?;
        let audience = agent.audience.as_deref().map(to_json).transpose()?;
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO agents (id, issuer_id, name, description, scopes, audience, \
             token_ttl_s, status, created_at_ms, revoked_at_ms, revoke_reason, policy, user_ref, \
             suspended_at_ms, suspend_reason, allow_bearer_tokens, list_pos) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
            )
            .bind(agent.id.as_str())
            .bind(agent.issuer_id.as_str())
            .bind(&agent.name)
            .bind(agent.description.as_deref())
            .bind(&scopes)
            .bind(&audience)
            .bind(agent.token_ttl_s)
            .bind(stored_status(agent.status))
            .bind(agent.created_at_ms)
            .bind(agent.revoked_at_ms)
            .bind(agent.revoke_reason.as_deref())
            .bind(agent.policy.as_deref())
            .bind(agent.user.as_deref())
            .bind(agent.suspended_at_ms)
            .bind(agent.suspend_reason.as_deref())
            .bind(agent.allow_bearer_tokens)
            // Its place in listings: the index its registration's entry gets, handed
            // out under the log head, so commit order across replicas.
            .bind(to_i64(log.size())?)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let mut changes = Vec::new();
            if insert_token(&mut tx, first_token).await? {
                changes.push(Change::SigningKeysChanged);
            }
            if let Some(key) = first_key {
                refuse_key_held_elsewhere(&mut tx, &key.jkt, &agent.issuer_id).await?;
                insert_agent_key(&mut tx, key).await?;
                changes.push(Change::AgentKeysChanged(agent.id.clone()));
            }
            log.append(&mut *tx, std::slice::from_ref(audit), &changes)
                .await?;
            Ok(())
        })
    }

    async fn rotate_agent_key(
        &self,
        issuer: &IssuerId,
        agent: &AgentId,
        new_key: &AgentKey,
        grace_until_ms: i64,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<Vec<AgentKey>, StoreError> {
        if new_key.agent_id != *agent {
            return Err(StoreError::Conflict(ConflictKind::KeyNotAgents));
        }
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let row = own_agent_row(&mut tx, issuer, agent).await?;
            if row.status == AgentStatus::Revoked.as_str() {
                return Err(StoreError::Conflict(ConflictKind::AgentRevoked));
            }
            let known: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM agent_keys WHERE agent_id = $1 AND jkt = $2")
                    .bind(agent.as_str())
                    .bind(&new_key.jkt)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?;
            if known.is_some() {
                return Err(StoreError::Conflict(ConflictKind::AgentKeyRegistered));
            }
            refuse_key_held_elsewhere(&mut tx, &new_key.jkt, issuer).await?;
            // Keys already in grace end no later than the one retired now: otherwise a
            // key that leaked while in grace could not be cut off by a rotation.
            sqlx::query(
                "UPDATE agent_keys SET grace_until_ms = $1 \
             WHERE agent_id = $2 AND retired_at_ms IS NOT NULL AND grace_until_ms > $3",
            )
            .bind(grace_until_ms)
            .bind(agent.as_str())
            .bind(grace_until_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query(
                "UPDATE agent_keys SET retired_at_ms = $1, grace_until_ms = $2 \
             WHERE agent_id = $3 AND retired_at_ms IS NULL",
            )
            .bind(now_ms)
            .bind(grace_until_ms)
            .bind(agent.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            insert_agent_key(&mut tx, new_key).await?;
            log.append(
                &mut *tx,
                std::slice::from_ref(audit),
                &[Change::AgentKeysChanged(agent.clone())],
            )
            .await?;
            select_agent_keys(&mut tx, agent).await
        })
    }

    async fn agent_keys(&self, agent: &AgentId) -> Result<Vec<AgentKey>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        select_agent_keys(&mut conn, agent).await
    }

    async fn purge_action_nonces(&self, now_ms: i64) -> Result<u64, StoreError> {
        // One statement, autocommitted: it touches nothing a decision reads under the
        // log head (an expired value gives way there anyway).
        let done = sqlx::query("DELETE FROM action_nonces WHERE expires_at_ms <= $1")
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn agent(&self, id: &AgentId) -> Result<Option<Agent>, StoreError> {
        sqlx::query_as::<_, AgentRow>(concat!(
            "SELECT ",
            agent_columns!(),
            " FROM agents WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(AgentRow::into_agent)
        .transpose()
    }

    async fn list_agents(
        &self,
        issuer: &IssuerId,
        after: Option<&Cursor>,
        limit: u32,
    ) -> Result<Page<Agent>, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        // Agents are never deleted, so the agent a cursor names keeps its place.
        let after_pos: i64 = match after {
            // Agents copied from a SQLite registry older than listings in commit order
            // have negative positions (SQLite migration 0016).
            None => i64::MIN,
            Some(cursor) => {
                let id = cursor.agent().ok_or(StoreError::NotFound)?;
                sqlx::query_scalar("SELECT list_pos FROM agents WHERE id = $1 AND issuer_id = $2")
                    .bind(id.as_str())
                    .bind(issuer.as_str())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(db_err)?
                    .ok_or(StoreError::NotFound)?
            }
        };
        // One row more than asked tells whether another page follows.
        let mut rows = sqlx::query_as::<_, AgentRow>(concat!(
            "SELECT ",
            agent_columns!(),
            " FROM agents WHERE issuer_id = $1 AND list_pos > $2 ORDER BY list_pos LIMIT $3"
        ))
        .bind(issuer.as_str())
        .bind(after_pos)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        let more = rows.len() > limit as usize;
        rows.truncate(limit as usize);
        let items: Vec<Agent> = rows
            .into_iter()
            .map(AgentRow::into_agent)
            .collect::<Result<_, _>>()?;
        let next = if more {
            items.last().map(|a| Cursor::after_agent(&a.id))
        } else {
            None
        };
        Ok(Page { items, next })
    }

    async fn revoke_agent(
        &self,
        issuer: &IssuerId,
        id: &AgentId,
        reason: Option<&str>,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<Agent, StoreError> {
        let row = in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let mut row = own_agent_row(&mut tx, issuer, id).await?;
            // Active or suspended (both `active` in the `status` column).
            let was_active = row.status == AgentStatus::Active.as_str();
            if was_active {
                // Revocation ends a suspension: the agent is revoked, no longer suspended.
                sqlx::query(
                    "UPDATE agents SET status = $1, revoked_at_ms = $2, revoke_reason = $3, \
                 suspended_at_ms = NULL, suspend_reason = NULL WHERE seq = $4",
                )
                .bind(AgentStatus::Revoked.as_str())
                .bind(now_ms)
                .bind(reason)
                .bind(row.seq)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                row.status = AgentStatus::Revoked.as_str().to_owned();
                row.revoked_at_ms = Some(now_ms);
                row.revoke_reason = reason.map(str::to_owned);
                row.suspended_at_ms = None;
                row.suspend_reason = None;
            }
            // Also on a repeated call: a token recorded after the first revocation must not
            // stay valid. Tokens already revoked keep their time.
            let tokens = sqlx::query(
            "UPDATE tokens SET revoked_at_ms = $1 WHERE agent_id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(now_ms)
        .bind(id.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
            // A repeated call that revoked late tokens is audited; the agent's revocation
            // (already in the feed) covers them.
            let changes = if was_active {
                vec![Change::AgentRevoked(id.clone())]
            } else {
                Vec::new()
            };
            log.append(&mut *tx, audited(was_active || tokens > 0, audit), &changes)
                .await?;
            Ok(row)
        })?;
        row.into_agent()
    }

    async fn suspend_agent(
        &self,
        issuer: &IssuerId,
        id: &AgentId,
        reason: Option<&str>,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<Agent, StoreError> {
        let row = in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let mut row = own_agent_row(&mut tx, issuer, id).await?;
            if row.status != AgentStatus::Active.as_str() {
                return Err(StoreError::Conflict(ConflictKind::AgentRevoked));
            }
            // Suspending twice keeps the first suspension (time and reason).
            let changed = row.suspended_at_ms.is_none();
            if changed {
                sqlx::query(
                    "UPDATE agents SET suspended_at_ms = $1, suspend_reason = $2 WHERE seq = $3",
                )
                .bind(now_ms)
                .bind(reason)
                .bind(row.seq)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                row.suspended_at_ms = Some(now_ms);
                row.suspend_reason = reason.map(str::to_owned);
            }
            let changes = if changed {
                vec![Change::AgentSuspended(id.clone())]
            } else {
                Vec::new()
            };
            log.append(&mut *tx, audited(changed, audit), &changes)
                .await?;
            Ok(row)
        })?;
        row.into_agent()
    }

    async fn reactivate_agent(
        &self,
        issuer: &IssuerId,
        id: &AgentId,
        audit: &AuditRecord,
    ) -> Result<Agent, StoreError> {
        let row = in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let mut row = own_agent_row(&mut tx, issuer, id).await?;
            if row.status != AgentStatus::Active.as_str() {
                return Err(StoreError::Conflict(ConflictKind::AgentRevoked));
            }
            let changed = row.suspended_at_ms.is_some();
            if changed {
                sqlx::query(
                "UPDATE agents SET suspended_at_ms = NULL, suspend_reason = NULL WHERE seq = $1",
            )
            .bind(row.seq)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
                row.suspended_at_ms = None;
                row.suspend_reason = None;
            }
            let changes = if changed {
                vec![Change::AgentReactivated(id.clone())]
            } else {
                Vec::new()
            };
            log.append(&mut *tx, audited(changed, audit), &changes)
                .await?;
            Ok(row)
        })?;
        row.into_agent()
    }

    async fn suspended_agents(&self) -> Result<Vec<AgentId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM agents WHERE suspended_at_ms IS NOT NULL AND status = $1 ORDER BY seq",
        )
        .bind(AgentStatus::Active.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        ids.iter().map(|id| parse_id(id, "agent id")).collect()
    }

    async fn record_token(
        &self,
        token: &TokenRecord,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let extended = insert_token(&mut tx, token).await?;
            log.append(
                &mut *tx,
                std::slice::from_ref(audit),
                signing_keys_changed(extended),
            )
            .await?;
            Ok(())
        })
    }

    async fn token(&self, jti: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
        sqlx::query_as::<_, TokenRow>(concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens WHERE jti = $1"
        ))
        .bind(jti.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(TokenRow::into_record)
        .transpose()
    }

    async fn record_delegated_token(
        &self,
        token: &TokenRecord,
        delegation: &DelegationRecord,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let extended = insert_token(&mut tx, token).await?;
            sqlx::query(
                "INSERT INTO delegations \
             (jti, parent_jti, actor_id, ancestor_policies, ancestor_keys, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(delegation.jti.as_str())
            .bind(delegation.parent_jti.as_str())
            .bind(delegation.actor_id.as_str())
            .bind(to_json(&delegation.ancestor_policies)?)
            .bind(to_json(&delegation.ancestor_keys)?)
            .bind(delegation.created_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            log.append(
                &mut *tx,
                std::slice::from_ref(audit),
                signing_keys_changed(extended),
            )
            .await?;
            Ok(())
        })
    }

    async fn delegation(&self, jti: &TokenId) -> Result<Option<DelegationRecord>, StoreError> {
        let row: Option<(String, String, String, String, String, i64)> = sqlx::query_as(
            "SELECT jti, parent_jti, actor_id, ancestor_policies, ancestor_keys, created_at_ms \
             FROM delegations WHERE jti = $1",
        )
        .bind(jti.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        row.map(|(jti, parent, actor, policies, keys, at)| {
            Ok(DelegationRecord {
                jti: parse_id(&jti, "delegation jti")?,
                parent_jti: parse_id(&parent, "delegation parent jti")?,
                actor_id: parse_id(&actor, "delegation actor")?,
                ancestor_policies: serde_json::from_str(&policies)
                    .map_err(|_| corrupt("delegation ancestor policies"))?,
                ancestor_keys: serde_json::from_str(&keys)
                    .map_err(|_| corrupt("delegation ancestor keys"))?,
                created_at_ms: at,
            })
        })
        .transpose()
    }

    async fn revoke_token(
        &self,
        issuer: &IssuerId,
        jti: &TokenId,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<TokenRecord, StoreError> {
        let row = in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let changed = sqlx::query(
                "UPDATE tokens SET revoked_at_ms = $1 \
             WHERE jti = $2 AND issuer_id = $3 AND revoked_at_ms IS NULL",
            )
            .bind(now_ms)
            .bind(jti.as_str())
            .bind(issuer.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            let row = sqlx::query_as::<_, TokenRow>(concat!(
                "SELECT ",
                token_columns!(),
                " FROM tokens WHERE jti = $1 AND issuer_id = $2"
            ))
            .bind(jti.as_str())
            .bind(issuer.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound)?;
            let changes = if changed > 0 {
                vec![Change::TokenRevoked {
                    jti: jti.clone(),
                    expires_at_s: row.expires_at_s,
                }]
            } else {
                Vec::new()
            };
            log.append(&mut *tx, audited(changed > 0, audit), &changes)
                .await?;
            Ok(row)
        })?;
        row.into_record()
    }

    async fn revocations(&self) -> Result<Revocations, StoreError> {
        // One snapshot for both lists.
        let mut tx = self
            .pool
            .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            .await
            .map_err(db_err)?;
        let agents: Vec<String> =
            sqlx::query_scalar("SELECT id FROM agents WHERE status = $1 ORDER BY seq")
                .bind(AgentStatus::Revoked.as_str())
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
        let tokens: Vec<String> =
            sqlx::query_scalar("SELECT jti FROM tokens WHERE revoked_at_ms IS NOT NULL")
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(Revocations {
            agents: agents
                .iter()
                .map(|id| parse_id(id, "agent id"))
                .collect::<Result<_, _>>()?,
            tokens: tokens
                .iter()
                .map(|jti| parse_id(jti, "token id"))
                .collect::<Result<_, _>>()?,
        })
    }

    async fn changes_since(
        &self,
        after: ChangePosition,
        expired_by_s: i64,
        limit: u32,
    ) -> Result<ChangeFeed, StoreError> {
        // Two autocommitted statements (the head, then the rows up to it) need no
        // snapshot: see the module docs (positions).
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        log::changes_since(&mut *conn, after, expired_by_s, limit).await
    }

    async fn revoke_issuer_signed_token(
        &self,
        issuer: &IssuerId,
        token: &TokenRecord,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<TokenRecord, StoreError> {
        if token.issuer_id != *issuer {
            return Err(StoreError::NotFound);
        }
        let row = in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            // Unknown until now (the issuer signed it offline): record it. A jti stored
            // already (this issuer's or another's) is left as it is; the ownership check
            // below decides. The (agent, issuer) foreign key refuses another's agent.
            sqlx::query(
            "INSERT INTO tokens (jti, agent_id, issuer_id, kid, issued_at_s, expires_at_s, revoked_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, NULL) ON CONFLICT (jti) DO NOTHING",
        )
        .bind(token.jti.as_str())
        .bind(token.agent_id.as_str())
        .bind(token.issuer_id.as_str())
        .bind(&token.kid)
        .bind(token.issued_at_s)
        .bind(token.expires_at_s)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
            let changed = sqlx::query(
                "UPDATE tokens SET revoked_at_ms = $1 \
             WHERE jti = $2 AND issuer_id = $3 AND revoked_at_ms IS NULL",
            )
            .bind(now_ms)
            .bind(token.jti.as_str())
            .bind(issuer.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            // The issuer chose the `jti` and may have reused it with a later `exp`: the
            // revocation lasts until the latest `exp` it was shown, or a revoked token
            // would verify again once the earlier one expired.
            let extended = sqlx::query(
                "UPDATE tokens SET expires_at_s = $1 \
             WHERE jti = $2 AND issuer_id = $3 AND expires_at_s < $4",
            )
            .bind(token.expires_at_s)
            .bind(token.jti.as_str())
            .bind(issuer.as_str())
            .bind(token.expires_at_s)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            let row = sqlx::query_as::<_, TokenRow>(concat!(
                "SELECT ",
                token_columns!(),
                " FROM tokens WHERE jti = $1 AND issuer_id = $2"
            ))
            .bind(token.jti.as_str())
            .bind(issuer.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound)?;
            // A longer-lived revocation is a change for readers, though not audited again.
            let changes = if changed > 0 || extended > 0 {
                vec![Change::TokenRevoked {
                    jti: token.jti.clone(),
                    expires_at_s: row.expires_at_s,
                }]
            } else {
                Vec::new()
            };
            log.append(&mut *tx, audited(changed > 0, audit), &changes)
                .await?;
            Ok(row)
        })?;
        row.into_record()
    }

    async fn revoke_policy(
        &self,
        issuer: &IssuerId,
        policy_id: &str,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<PolicyRevocation, StoreError> {
        let row = in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            // First time only: a second revocation keeps the first row and appends
            // nothing. The issuer foreign key refuses an unknown issuer (`NotFound`).
            let inserted = sqlx::query(
                "INSERT INTO revoked_policies (issuer_id, policy_id, revoked_at_ms, revocation_id) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (issuer_id, policy_id) DO NOTHING",
            )
            .bind(issuer.as_str())
            .bind(policy_id)
            .bind(now_ms)
            .bind(bonafide_core::token::policy_revocation_id(issuer, policy_id).as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            let row = sqlx::query_as::<_, PolicyRevocationRow>(
                "SELECT issuer_id, policy_id, revoked_at_ms FROM revoked_policies \
                 WHERE issuer_id = $1 AND policy_id = $2",
            )
            .bind(issuer.as_str())
            .bind(policy_id)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound)?;
            // Readers learn of it as a token revocation of the policy's revocation id,
            // which every token carrying the policy is checked against.
            let changes = if inserted > 0 {
                vec![Change::TokenRevoked {
                    jti: bonafide_core::token::policy_revocation_id(issuer, policy_id),
                    expires_at_s: crate::POLICY_REVOCATION_EXPIRES_AT_S,
                }]
            } else {
                Vec::new()
            };
            log.append(&mut *tx, audited(inserted > 0, audit), &changes)
                .await?;
            Ok(row)
        })?;
        row.into_record()
    }

    async fn policy_revocation_by_id(
        &self,
        id: &TokenId,
    ) -> Result<Option<PolicyRevocation>, StoreError> {
        let indexed = sqlx::query_as::<_, PolicyRevocationRow>(
            "SELECT issuer_id, policy_id, revoked_at_ms FROM revoked_policies \
             WHERE revocation_id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        if let Some(row) = indexed {
            return row.into_record().map(Some);
        }
        // Revoked before the id was stored: computed (those rows never grow).
        let legacy = sqlx::query_as::<_, PolicyRevocationRow>(
            "SELECT issuer_id, policy_id, revoked_at_ms FROM revoked_policies \
             WHERE revocation_id IS NULL",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        PolicyRevocationRow::find(legacy, id)
    }

    async fn policy_revocation(
        &self,
        issuer: &IssuerId,
        policy_id: &str,
    ) -> Result<Option<PolicyRevocation>, StoreError> {
        sqlx::query_as::<_, PolicyRevocationRow>(
            "SELECT issuer_id, policy_id, revoked_at_ms FROM revoked_policies \
             WHERE issuer_id = $1 AND policy_id = $2",
        )
        .bind(issuer.as_str())
        .bind(policy_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(PolicyRevocationRow::into_record)
        .transpose()
    }

    async fn add_issuer_key(&self, key: &IssuerKey, audit: &AuditRecord) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO issuer_keys \
                 (kid, issuer_id, alg, jwk, created_at_ms, revoked_at_ms, alias) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7)",
            )
            .bind(&key.kid)
            .bind(key.issuer_id.as_str())
            .bind(key.alg.as_str())
            .bind(&key.jwk)
            .bind(key.created_at_ms)
            .bind(key.revoked_at_ms)
            .bind(key.alias.as_deref())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            log.append(
                &mut *tx,
                std::slice::from_ref(audit),
                &[Change::IssuerKeysChanged(key.issuer_id.clone())],
            )
            .await?;
            Ok(())
        })
    }

    async fn issuer_keys(&self, issuer: &IssuerId) -> Result<Vec<IssuerKey>, StoreError> {
        sqlx::query_as::<_, IssuerKeyRow>(concat!(
            "SELECT ",
            issuer_key_columns!(),
            " FROM issuer_keys WHERE issuer_id = $1 ORDER BY created_at_ms, seq"
        ))
        .bind(issuer.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(IssuerKeyRow::into_record)
        .collect()
    }

    async fn all_issuer_keys(&self) -> Result<Vec<IssuerKey>, StoreError> {
        sqlx::query_as::<_, IssuerKeyRow>(concat!(
            "SELECT ",
            issuer_key_columns!(),
            " FROM issuer_keys ORDER BY seq"
        ))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(IssuerKeyRow::into_record)
        .collect()
    }

    async fn revoke_issuer_key(
        &self,
        issuer: &IssuerId,
        kid: &str,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<IssuerKey, StoreError> {
        let row = in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let changed = sqlx::query(
                "UPDATE issuer_keys SET revoked_at_ms = $1 \
             WHERE kid = $2 AND issuer_id = $3 AND revoked_at_ms IS NULL",
            )
            .bind(now_ms)
            .bind(kid)
            .bind(issuer.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            let row = sqlx::query_as::<_, IssuerKeyRow>(concat!(
                "SELECT ",
                issuer_key_columns!(),
                " FROM issuer_keys WHERE kid = $1 AND issuer_id = $2"
            ))
            .bind(kid)
            .bind(issuer.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .ok_or(StoreError::NotFound)?;
            let changes = if changed > 0 {
                vec![Change::IssuerKeysChanged(issuer.clone())]
            } else {
                Vec::new()
            };
            log.append(&mut *tx, audited(changed > 0, audit), &changes)
                .await?;
            Ok(row)
        })?;
        row.into_record()
    }

    async fn set_issuer_domain(
        &self,
        domain: &crate::IssuerDomain,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            // The key must still be the issuer's and unrevoked now, not only when the
            // JWKS was fetched.
            let live: Option<i32> = sqlx::query_scalar(
            "SELECT 1 FROM issuer_keys WHERE kid = $1 AND issuer_id = $2 AND revoked_at_ms IS NULL",
        )
        .bind(&domain.kid)
        .bind(domain.issuer_id.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
            if live.is_none() {
                return Err(StoreError::NotFound);
            }
            sqlx::query(
            "INSERT INTO issuer_domains (issuer_id, domain, kid, verified_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (issuer_id) DO UPDATE SET domain = excluded.domain, kid = excluded.kid, \
             verified_at_ms = excluded.verified_at_ms",
        )
        .bind(domain.issuer_id.as_str())
        .bind(&domain.domain)
        .bind(&domain.kid)
        .bind(domain.verified_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
            log.append(
                &mut *tx,
                std::slice::from_ref(audit),
                &[Change::IssuerDomainChanged(domain.issuer_id.clone())],
            )
            .await?;
            Ok(())
        })
    }

    async fn issuer_domain(
        &self,
        issuer: &IssuerId,
    ) -> Result<Option<crate::IssuerDomain>, StoreError> {
        sqlx::query_as::<_, IssuerDomainRow>(
            "SELECT issuer_id, domain, kid, verified_at_ms FROM issuer_domains WHERE issuer_id = $1",
        )
        .bind(issuer.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(IssuerDomainRow::into_record)
        .transpose()
    }

    async fn issuer_domains(&self) -> Result<Vec<crate::IssuerDomain>, StoreError> {
        sqlx::query_as::<_, IssuerDomainRow>(
            "SELECT issuer_id, domain, kid, verified_at_ms FROM issuer_domains ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(IssuerDomainRow::into_record)
        .collect()
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        sqlx::query_as::<_, SigningKeyRow>(
            "SELECT kid, alg, private_pem, state, created_at_ms, publish_until_s \
             FROM signing_keys ORDER BY seq",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(SigningKeyRow::into_record)
        .collect()
    }

    async fn rotate_signing_key(
        &self,
        new: &SigningKeyRecord,
        now_s: i64,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            sqlx::query(
                "UPDATE signing_keys SET state = $1, publish_until_s = COALESCE( \
                 (SELECT MAX(expires_at_s) FROM tokens WHERE tokens.kid = signing_keys.kid), $2) \
             WHERE state = $3",
            )
            .bind(key_state_str(KeyState::Retired))
            .bind(now_s)
            .bind(key_state_str(KeyState::Active))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_pem, state, created_at_ms, publish_until_s) \
             VALUES ($1, $2, $3, $4, $5, NULL)",
        )
        .bind(&new.kid)
        .bind(new.alg.as_str())
        .bind(&new.private_pem)
        .bind(key_state_str(KeyState::Active))
        .bind(new.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
            log.append(
                &mut *tx,
                std::slice::from_ref(audit),
                &[Change::SigningKeysChanged],
            )
            .await?;
            Ok(())
        })
    }

    async fn create_first_signing_key(
        &self,
        new: &SigningKeyRecord,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        self.insert_signing_key_unless(KeyState::Active, new, audit)
            .await
    }

    async fn reseal_private_keys(&self, reseal: &Reseal<'_>) -> Result<usize, StoreError> {
        in_write_tx!(self, |tx| {
            let mut changed = 0;
            // FOR UPDATE: a replica sealing at the same time waits, then reads the
            // sealed text and leaves it.
            let keys: Vec<(String, String)> =
                sqlx::query_as("SELECT kid, private_pem FROM signing_keys ORDER BY seq FOR UPDATE")
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(db_err)?;
            for (kid, text) in keys {
                let slot = PrivateKeySlot::SigningKey { kid: kid.clone() };
                if let Some(new) = reseal(&slot, &text)? {
                    sqlx::query("UPDATE signing_keys SET private_pem = $1 WHERE kid = $2")
                        .bind(new)
                        .bind(kid)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    changed += 1;
                }
            }
            // People's TOTP secrets are sealed like keys, bound to their person.
            let secrets: Vec<(String, String)> = sqlx::query_as(
                "SELECT id, totp_secret FROM people WHERE totp_secret IS NOT NULL ORDER BY id FOR UPDATE",
            )
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
            for (person, text) in secrets {
                let slot = PrivateKeySlot::TotpSecret {
                    person: person.clone(),
                };
                if let Some(new) = reseal(&slot, &text)? {
                    sqlx::query("UPDATE people SET totp_secret = $1 WHERE id = $2")
                        .bind(new)
                        .bind(person)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    changed += 1;
                }
            }
            for (table, column, slot) in &crate::SINGLE_KEY_ROWS {
                // Table and column come from the constant list, never from input.
                let text: Option<String> = sqlx::query_scalar(safe_sql(format!(
                    "SELECT {column} FROM {table} WHERE id = 1 FOR UPDATE"
                )))
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
                if let Some(text) = text
                    && let Some(new) = reseal(slot, &text)?
                {
                    sqlx::query(safe_sql(format!(
                        "UPDATE {table} SET {column} = $1 WHERE id = 1"
                    )))
                    .bind(new)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                    changed += 1;
                }
            }
            Ok(changed)
        })
    }

    async fn audit_append(&self, records: &[AuditRecord]) -> Result<u64, StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            log.append(&mut *tx, records, &[]).await
        })
    }

    async fn audit_size(&self) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        audit_size(&mut conn).await
    }

    async fn audit_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        log::read_hashes(&mut *conn, indexes).await
    }

    async fn audit_entries(&self, start: u64, end: u64) -> Result<Vec<AuditRow>, StoreError> {
        let end = end.min(start.saturating_add(MAX_AUDIT_RANGE));
        if start >= end {
            return Ok(Vec::new());
        }
        sqlx::query_as::<_, AuditEntryRow>(
            "SELECT a.idx, a.leaf_hash, a.entry, COALESCE(a.issuer_id, g.issuer_id) AS owner \
             FROM audit_log a LEFT JOIN agents g ON g.id = a.agent_id \
             WHERE a.idx >= $1 AND a.idx < $2 AND octet_length(a.entry) > 0 ORDER BY a.idx",
        )
        // Indexes past i64::MAX cannot exist: clamp rather than fail.
        .bind(i64::try_from(start).unwrap_or(i64::MAX))
        .bind(i64::try_from(end).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(AuditEntryRow::into_row)
        .collect()
    }

    async fn audit_find(&self, leaf_hash: &Hash) -> Result<Option<u64>, StoreError> {
        // One statement, so one snapshot: the index up to `upto`, one seek per epoch
        // of 2^15 records (migration 0005) by the hash's first 8 bytes (0020), the
        // full hash checked in the record, else the records from `upto` on (every
        // one of them is above every indexed one).
        let idx: Option<i64> = sqlx::query_scalar(
            "SELECT COALESCE(\
                (SELECT MIN(i.idx) FROM generate_series(0::bigint, \
                        (SELECT (upto - 1) >> 15 FROM audit_leaf_progress WHERE id = 1)) AS g(e) \
                     CROSS JOIN LATERAL (SELECT MIN(x.idx) AS idx FROM audit_leaf_index x \
                        JOIN audit_log a ON a.idx = x.idx \
                        WHERE x.epoch = g.e AND x.leaf_prefix = substring($1 from 1 for 8) \
                          AND a.leaf_hash = $1) i), \
                (SELECT MIN(idx) FROM audit_log WHERE leaf_hash = $1 AND idx >= \
                    COALESCE((SELECT upto FROM audit_leaf_progress WHERE id = 1), 0)))",
        )
        .bind(leaf_hash.as_bytes().as_slice())
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        idx.map(|i| u64::try_from(i).map_err(|_| corrupt("audit index")))
            .transpose()
    }

    async fn audit_pruned(&self) -> Result<u64, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        audit_pruned(&mut conn).await
    }

    async fn audit_prune(
        &self,
        from: u64,
        to: u64,
        audit: Option<&AuditRecord>,
    ) -> Result<u64, StoreError> {
        if !crate::prune_range_is_tiled(from, to) {
            return Err(StoreError::Conflict(ConflictKind::PruneRange));
        }
        let start = to_i64(from)?;
        let end = to_i64(to)?;
        in_write_tx!(self, |tx| {
            // The log head first (lock order): one pruner at a time, and every
            // checkpoint and leaf-index extension read below has committed.
            let log = log::lock(&mut *tx).await?;
            let pruned = audit_pruned(&mut tx).await?;
            let (signed, indexed): (i64, i64) = sqlx::query_as(
                "SELECT COALESCE((SELECT MAX(size) FROM audit_checkpoints), 0), \
                        COALESCE((SELECT upto FROM audit_leaf_progress WHERE id = 1), 0)",
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            if pruned != from || end > signed || end > indexed || to > log.size() {
                return Err(StoreError::Conflict(ConflictKind::PruneRange));
            }
            // The last record of each tile keeps its hashes (every node at level >= 8).
            sqlx::query(
                "DELETE FROM audit_log WHERE idx >= $1 AND idx < $2 AND (idx & 255) <> 255",
            )
            .bind(start)
            .bind(end)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query(
                "UPDATE audit_log SET entry = ''::bytea, agent_id = NULL, issuer_id = NULL \
                 WHERE idx >= $1 AND idx < $2 AND (idx & 255) = 255",
            )
            .bind(start)
            .bind(end)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query(
                "INSERT INTO audit_pruned (id, through) VALUES (1, $1) \
                 ON CONFLICT (id) DO UPDATE SET through = excluded.through",
            )
            .bind(end)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            log.append(&mut *tx, audit.map_or(&[], std::slice::from_ref), &[])
                .await?;
            Ok(to - from)
        })
    }

    async fn audit_find_pruned(&self, leaf_hash: &Hash) -> Result<Vec<u64>, StoreError> {
        // One seek per epoch below the mark by the hash's first 8 bytes; a record whose
        // row is gone is a pruned one (the last of each tile keeps its row and its
        // full leaf hash: `audit_find` finds it).
        let found: Vec<i64> = sqlx::query_scalar(
            "SELECT x.idx FROM audit_pruned p \
                CROSS JOIN LATERAL generate_series(0::bigint, (p.through - 1) >> 15) AS g(e) \
                JOIN audit_leaf_index x \
                  ON x.epoch = g.e AND x.leaf_prefix = substring($1 from 1 for 8) \
             WHERE p.id = 1 AND x.idx < p.through \
               AND NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.idx = x.idx) \
             ORDER BY x.idx",
        )
        .bind(leaf_hash.as_bytes().as_slice())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        found
            .into_iter()
            .map(|i| u64::try_from(i).map_err(|_| corrupt("audit index")))
            .collect()
    }

    async fn audit_add_checkpoint(&self, checkpoint: &CheckpointRecord) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let inserted = sqlx::query(
            "INSERT INTO audit_checkpoints (size, root, note, created_at_ms) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (size) DO NOTHING",
        )
        .bind(to_i64(checkpoint.size)?)
        .bind(checkpoint.root.as_bytes().as_slice())
        .bind(&checkpoint.note)
        .bind(checkpoint.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
            if inserted == 0 {
                let root: Vec<u8> =
                    sqlx::query_scalar("SELECT root FROM audit_checkpoints WHERE size = $1")
                        .bind(to_i64(checkpoint.size)?)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db_err)?;
                if root.as_slice() != checkpoint.root.as_bytes().as_slice() {
                    return Err(StoreError::Conflict(ConflictKind::CheckpointDiffers));
                }
            }
            extend_leaf_index(&mut tx, checkpoint.size).await
        })
    }

    async fn audit_latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, StoreError> {
        sqlx::query_as::<_, CheckpointRow>(
            "SELECT size, root, note, created_at_ms FROM audit_checkpoints \
             ORDER BY size DESC LIMIT 1",
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(CheckpointRow::into_record)
        .transpose()
    }

    async fn audit_log_key(&self, candidate: &LogKeyRecord) -> Result<LogKeyRecord, StoreError> {
        // Replicas starting at once may each offer a candidate: the first insert wins
        // (another waits on its primary key, then inserts nothing; READ COMMITTED: the
        // read after it sees the winner) and all read the same key.
        let (origin, signer_key, created_at_ms) = in_write_tx!(self, |tx| {
            sqlx::query(
            "INSERT INTO audit_log_key (id, origin, signer_key, created_at_ms) VALUES (1, $1, $2, $3) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&candidate.origin)
        .bind(&candidate.signer_key)
        .bind(candidate.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
            sqlx::query_as::<_, (String, String, i64)>(
                "SELECT origin, signer_key, created_at_ms FROM audit_log_key WHERE id = 1",
            )
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)
        })?;
        Ok(LogKeyRecord {
            origin,
            signer_key,
            created_at_ms,
        })
    }

    async fn record_decisions(
        &self,
        items: Vec<DecisionItem>,
        now_ms: i64,
    ) -> Result<Vec<Result<DecisionOutcome, StoreError>>, StoreError> {
        if items.is_empty() {
            return Ok(Vec::new());
        }
        // The log head is locked first (`ledger::record_decisions` takes `log::lock`):
        // everything the batch reads is read under it, so nothing changes between the
        // reads, decisions and writes. On a retry the whole batch is decided again
        // from what is stored then (`Decide` is `Fn`).
        in_write_tx!(self, |tx| {
            ledger::record_decisions(&mut *tx, &items, now_ms).await
        })
    }

    async fn budget_spent(&self, key: &BudgetKey) -> Result<Decimal, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db_err)?;
        Ok(read_budget(&mut conn, key, false)
            .await?
            .unwrap_or(Decimal::ZERO))
    }

    async fn receipt(&self, id: &ReceiptId) -> Result<Option<ReceiptRecord>, StoreError> {
        sqlx::query_as::<_, ReceiptRow>(
            "SELECT id, receiver_id, issuer_id, claims, audit_index, created_at_ms \
             FROM receipts WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(ReceiptRow::into_record)
        .transpose()
    }

    async fn receipt_key(
        &self,
        candidate: &ReceiptKeyRecord,
    ) -> Result<ReceiptKeyRecord, StoreError> {
        self.single_key("receipt_key", candidate).await
    }

    async fn event_key(
        &self,
        candidate: &ReceiptKeyRecord,
    ) -> Result<ReceiptKeyRecord, StoreError> {
        self.single_key("event_key", candidate).await
    }

    async fn create_webhook(&self, webhook: &Webhook) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhooks (id, receiver_id, url, filter, created_at_ms, delivered_pos, \
             failures, next_attempt_ms) VALUES ($1, $2, $3, $4, $5, $6, 0, $7)",
        )
        .bind(&webhook.id)
        .bind(webhook.receiver_id.as_str())
        .bind(&webhook.url)
        .bind(&webhook.filter)
        .bind(webhook.created_at_ms)
        .bind(to_i64(webhook.delivered.get())?)
        .bind(webhook.next_attempt_ms)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn webhooks(&self, receiver: Option<&ReceiverId>) -> Result<Vec<Webhook>, StoreError> {
        let rows = match receiver {
            Some(r) => sqlx::query_as::<_, rows::WebhookRow>(concat!(
                "SELECT ",
                webhook_columns!(),
                " FROM webhooks WHERE receiver_id = $1 ORDER BY created_at_ms, id"
            ))
            .bind(r.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?,
            None => sqlx::query_as::<_, rows::WebhookRow>(concat!(
                "SELECT ",
                webhook_columns!(),
                " FROM webhooks ORDER BY created_at_ms, id"
            ))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?,
        };
        rows.into_iter()
            .map(rows::WebhookRow::into_webhook)
            .collect()
    }

    async fn delete_webhook(&self, receiver: &ReceiverId, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query("DELETE FROM webhooks WHERE id = $1 AND receiver_id = $2")
            .bind(id)
            .bind(receiver.as_str())
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn resume_webhook(
        &self,
        receiver: &ReceiverId,
        id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE webhooks SET paused_at_ms = NULL, paused_reason = NULL, failures = 0, \
             next_attempt_ms = $1 WHERE id = $2 AND receiver_id = $3",
        )
        .bind(now_ms)
        .bind(id)
        .bind(receiver.as_str())
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn webhook_delivered(
        &self,
        id: &str,
        upto: ChangePosition,
        at_ms: i64,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        let upto = to_i64(upto.get())?;
        in_write_tx!(self, |tx| {
            // The log head first (as every audited write).
            let log = log::lock(&mut *tx).await?;
            sqlx::query(
                "UPDATE webhooks SET delivered_pos = GREATEST(delivered_pos, $1), failures = 0, \
                 last_error = NULL, next_attempt_ms = $2 WHERE id = $3",
            )
            .bind(upto)
            .bind(at_ms)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let acked = sqlx::query(
                "INSERT INTO event_acks (receiver_id, upto_pos, acked_at_ms, via, filter) \
                 SELECT receiver_id, $1, $2, id, filter FROM webhooks WHERE id = $3",
            )
            .bind(upto)
            .bind(at_ms)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            if acked.rows_affected() > 0 {
                log.append(&mut *tx, std::slice::from_ref(audit), &[])
                    .await?;
            }
            Ok(())
        })
    }

    async fn webhook_failed(&self, id: &str, failure: &WebhookFailure) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhooks SET failures = $1, last_error = $2, next_attempt_ms = $3, \
             paused_at_ms = COALESCE(paused_at_ms, $4), \
             paused_reason = COALESCE(paused_reason, $5) WHERE id = $6",
        )
        .bind(i64::from(failure.failures))
        .bind(&failure.error)
        .bind(failure.next_attempt_ms)
        .bind(failure.pause.as_ref().map(|p| p.at_ms))
        .bind(failure.pause.as_ref().map(|p| p.reason.as_str()))
        .bind(id)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn record_event_ack(
        &self,
        ack: &EventAck,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        in_write_tx!(self, |tx| {
            // The log head first (as every audited write); it also queues
            // acknowledgements racing, so the second sees the first.
            let log = log::lock(&mut *tx).await?;
            let done = sqlx::query(
                "INSERT INTO event_acks (receiver_id, upto_pos, acked_at_ms, via, filter) \
             SELECT $1, $2, $3, $4, $5 WHERE NOT EXISTS (SELECT 1 FROM event_acks \
             WHERE receiver_id = $1 AND via = $4 AND filter IS NOT DISTINCT FROM $5 \
             AND upto_pos >= $2)",
            )
            .bind(ack.receiver_id.as_str())
            .bind(to_i64(ack.upto.get())?)
            .bind(ack.acked_at_ms)
            .bind(&ack.via)
            .bind(ack.filter.as_deref())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let recorded = done.rows_affected() > 0;
            if recorded {
                log.append(&mut *tx, std::slice::from_ref(audit), &[])
                    .await?;
            }
            Ok(recorded)
        })
    }

    async fn event_acks(
        &self,
        receiver: &ReceiverId,
        covering: Option<ChangePosition>,
        limit: u32,
    ) -> Result<Vec<EventAck>, StoreError> {
        let rows = match covering {
            Some(pos) => sqlx::query_as::<_, rows::EventAckRow>(
                "SELECT receiver_id, upto_pos, acked_at_ms, via, filter FROM event_acks a \
                 WHERE receiver_id = $1 AND upto_pos >= $2 AND NOT EXISTS (\
                 SELECT 1 FROM event_acks b WHERE b.receiver_id = $1 AND b.via = a.via \
                 AND b.filter IS NOT DISTINCT FROM a.filter AND b.upto_pos >= $2 \
                 AND (b.acked_at_ms < a.acked_at_ms \
                 OR (b.acked_at_ms = a.acked_at_ms AND b.upto_pos < a.upto_pos))) \
                 ORDER BY acked_at_ms, upto_pos LIMIT $3",
            )
            .bind(receiver.as_str())
            .bind(to_i64(pos.get())?)
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?,
            None => sqlx::query_as::<_, rows::EventAckRow>(
                "SELECT receiver_id, upto_pos, acked_at_ms, via, filter FROM event_acks \
                 WHERE receiver_id = $1 ORDER BY acked_at_ms DESC, upto_pos DESC LIMIT $2",
            )
            .bind(receiver.as_str())
            .bind(i64::from(limit))
            .fetch_all(&self.pool)
            .await
            .map_err(db_err)?,
        };
        rows.into_iter().map(rows::EventAckRow::into_ack).collect()
    }

    async fn status_allocate(
        &self,
        entry: &StatusEntry,
        shape: ListShape,
        candidates: &[u64],
        now_ms: i64,
    ) -> Result<(StatusSlot, bool), StoreError> {
        let bits = i64::from(shape.bits);
        let size = to_i64(shape.size)?;
        let chain = StoredChain::encode(entry)?;
        in_write_tx!(self, |tx| {
            let existing: Option<(i64, i64, String, String)> = sqlx::query_as(
                "SELECT list_id, idx, agent_id, issuer_id FROM status_entries WHERE jti = $1",
            )
            .bind(entry.jti.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            if let Some((list_id, idx, agent, issuer)) = existing {
                let slot = same_token_slot(list_id, idx, &agent, &issuer, entry)?;
                // The same token asked again with a later `exp` keeps its slot that long.
                sqlx::query(
                    "UPDATE status_entries SET expires_at_s = GREATEST(expires_at_s, $1) \
                     WHERE jti = $2",
                )
                .bind(entry.expires_at_s)
                .bind(entry.jti.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                Ok((slot, false))
            } else {
                let open: Option<i64> = sqlx::query_scalar(
                    "SELECT id FROM status_lists WHERE bits = $1 AND size = $2 \
                     AND allocated * 2 < size ORDER BY id DESC LIMIT 1",
                )
                .bind(bits)
                .bind(size)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
                let list_id: i64 = match open {
                    Some(id) => id,
                    None => sqlx::query_scalar(
                        "INSERT INTO status_lists (bits, size, allocated, created_at_ms) \
                         VALUES ($1, $2, 0, $3) RETURNING id",
                    )
                    .bind(bits)
                    .bind(size)
                    .bind(now_ms)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_err)?,
                };
                let mut slot = None;
                for candidate in candidates {
                    let idx = to_i64(candidate % shape.size)?;
                    let seq: Option<i64> = sqlx::query_scalar(
                        "INSERT INTO status_entries \
                         (list_id, idx, jti, agent_id, issuer_id, expires_at_s, chain, created_at_ms) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
                         ON CONFLICT (list_id, idx) DO NOTHING RETURNING seq",
                    )
                    .bind(list_id)
                    .bind(idx)
                    .bind(entry.jti.as_str())
                    .bind(entry.agent_id.as_str())
                    .bind(entry.issuer_id.as_str())
                    .bind(entry.expires_at_s)
                    .bind(chain.as_deref())
                    .bind(now_ms)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?;
                    let Some(seq) = seq else { continue };
                    sqlx::query("UPDATE status_lists SET allocated = allocated + 1 WHERE id = $1")
                        .bind(list_id)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    for subject in StoredChain::subjects(entry) {
                        sqlx::query(
                            "INSERT INTO status_chain (subject, entry_seq) VALUES ($1, $2)",
                        )
                        .bind(subject)
                        .bind(seq)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    }
                    slot = Some(status_slot(list_id, idx)?);
                    break;
                }
                slot.map(|s| (s, true))
                    .ok_or(StoreError::Conflict(ConflictKind::IdTaken))
            }
        })
    }

    async fn status_lists(&self) -> Result<Vec<StatusListRecord>, StoreError> {
        sqlx::query_as::<_, StatusListDbRow>(
            "SELECT id, bits, size, allocated, created_at_ms FROM status_lists ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(StatusListDbRow::into_record)
        .collect()
    }

    async fn status_entries(
        &self,
        list_id: u32,
        after: Option<u64>,
        live_after_s: i64,
        limit: u32,
    ) -> Result<Vec<StatusEntryRow>, StoreError> {
        let after = match after {
            Some(a) => to_i64(a)?,
            None => -1,
        };
        sqlx::query_as::<_, StatusEntryDbRow>(safe_sql(format!(
            "SELECT {STATUS_ENTRY_COLUMNS} FROM status_entries e \
             WHERE e.list_id = $1 AND e.idx > $2 AND e.expires_at_s > $3 ORDER BY e.idx LIMIT $4"
        )))
        .bind(i64::from(list_id))
        .bind(after)
        .bind(live_after_s)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(StatusEntryDbRow::into_row)
        .collect()
    }

    async fn status_entries_of(
        &self,
        subject: &StatusSubject,
        live_after_s: i64,
    ) -> Result<Vec<StatusEntryRow>, StoreError> {
        // An issuer key is found through `status_chain` only (no column names it): its
        // own-column branch compares with NULL, which matches nothing.
        let (own, id) = match subject {
            StatusSubject::Agent(a) => ("e.agent_id", a.as_str()),
            StatusSubject::Token(t) => ("e.jti", t.as_str()),
            StatusSubject::IssuerKey(kid) => ("NULL", kid.as_str()),
        };
        sqlx::query_as::<_, StatusEntryDbRow>(safe_sql(format!(
            "SELECT {STATUS_ENTRY_COLUMNS} FROM status_entries e \
             WHERE {own} = $1 AND e.expires_at_s > $2 \
             UNION \
             SELECT {STATUS_ENTRY_COLUMNS} FROM status_chain c \
             JOIN status_entries e ON e.seq = c.entry_seq \
             WHERE c.subject = $3 AND e.expires_at_s > $2"
        )))
        .bind(id)
        .bind(live_after_s)
        .bind(subject_key(subject))
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(StatusEntryDbRow::into_row)
        .collect()
    }

    async fn status_entry_horizon(&self) -> Result<crate::EntryCursor, StoreError> {
        // Every transaction this snapshot does not see as finished: from `xmax` on
        // (not started), and those in progress (`xip`). Any other has committed or
        // aborted for good, so its entries are visible to any read that follows.
        let (xmax, xip): (i64, Vec<i64>) = sqlx::query_as(
            "SELECT pg_snapshot_xmax(s)::text::bigint, \
             ARRAY(SELECT x::text::bigint FROM pg_snapshot_xip(s) x) \
             FROM (SELECT pg_current_snapshot() AS s) q",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        let pending = xip
            .into_iter()
            .map(|x| u64::try_from(x).unwrap_or(0))
            .collect();
        Ok(crate::EntryCursor::with_pending(
            u64::try_from(xmax).unwrap_or(0),
            pending,
        ))
    }

    async fn status_entries_since(
        &self,
        from: &crate::EntryCursor,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<StatusEntryRow>, StoreError> {
        // By transaction, not `seq`: a `seq` is handed out before commit, so an entry
        // can become visible after higher ones were read.
        let pending: Vec<String> = from.pending().iter().map(u64::to_string).collect();
        sqlx::query_as::<_, StatusEntryDbRow>(safe_sql(format!(
            "SELECT {STATUS_ENTRY_COLUMNS} FROM status_entries e \
             WHERE (e.xid >= $1::bigint::text::xid8 \
                    OR e.xid = ANY(ARRAY(SELECT x::xid8 FROM unnest($4::text[]) x))) \
               AND e.seq > $2 \
             ORDER BY e.seq LIMIT $3"
        )))
        // Planned with the values each time: a cached generic plan cannot tell how few
        // entries are new, and walks the whole table by `seq` (measured: 55 ms for
        // 300,000 entries, against 0.1 ms through `status_entries_by_xid`).
        .persistent(false)
        .bind(to_i64(from.get())?)
        .bind(to_i64(after_seq)?)
        .bind(i64::from(limit.max(1)))
        .bind(pending)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(StatusEntryDbRow::into_row)
        .collect()
    }

    async fn purge_status_entries(&self, expired_by_s: i64) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let deleted = in_write_tx!(self, |tx| {
                let seqs: Vec<i64> = sqlx::query_scalar(
                    "SELECT seq FROM status_entries WHERE expires_at_s <= $1 \
                     ORDER BY expires_at_s LIMIT $2",
                )
                .bind(expired_by_s)
                .bind(PURGE_CHUNK)
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
                sqlx::query("DELETE FROM status_chain WHERE entry_seq = ANY($1)")
                    .bind(&seqs)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                sqlx::query("DELETE FROM status_entries WHERE seq = ANY($1)")
                    .bind(&seqs)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)
                    .map(|r| r.rows_affected())
            })?;
            total += deleted;
            if deleted < PURGE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    async fn retire_status_list(&self, list_id: u32) -> Result<bool, StoreError> {
        let id = i64::from(list_id);
        in_write_tx!(self, |tx| {
            // The list's row locked first: an allocation (which updates it) waits.
            let retirable: bool = sqlx::query_scalar(
                "SELECT EXISTS (SELECT 1 FROM status_lists WHERE id = $1 AND allocated * 2 >= size \
                 AND NOT EXISTS (SELECT 1 FROM status_entries WHERE list_id = $1) FOR UPDATE)",
            )
            .bind(id)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
            if retirable {
                sqlx::query("DELETE FROM status_list_tokens WHERE list_id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
            Ok(retirable)
        })
    }

    async fn status_list_published(
        &self,
        list_id: u32,
    ) -> Result<Option<PublishedStatusList>, StoreError> {
        sqlx::query_as::<_, PublishedListDbRow>(
            "SELECT list_id, version, token, issued_at_s, expires_at_s, audit_index \
             FROM status_list_tokens WHERE list_id = $1",
        )
        .bind(i64::from(list_id))
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(PublishedListDbRow::into_record)
        .transpose()
    }

    async fn publish_status_list(
        &self,
        published: &PublishedStatusList,
    ) -> Result<bool, StoreError> {
        let version = to_i64(published.version)?;
        let audit_index = to_i64(published.audit_index)?;
        let stored = in_write_tx!(self, |tx| {
            sqlx::query(
                "INSERT INTO status_list_tokens \
                 (list_id, version, token, issued_at_s, expires_at_s, audit_index) \
                 VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (list_id) DO UPDATE SET version = excluded.version, \
                 token = excluded.token, issued_at_s = excluded.issued_at_s, \
                 expires_at_s = excluded.expires_at_s, audit_index = excluded.audit_index \
                 WHERE status_list_tokens.version < excluded.version",
            )
            .bind(i64::from(published.list_id))
            .bind(version)
            .bind(&published.token)
            .bind(published.issued_at_s)
            .bind(published.expires_at_s)
            .bind(audit_index)
            .execute(&mut *tx)
            .await
            .map_err(db_err)
            .map(|r| r.rows_affected())
        })?;
        Ok(stored == 1)
    }

    async fn status_list_key(
        &self,
        candidate: &ReceiptKeyRecord,
    ) -> Result<ReceiptKeyRecord, StoreError> {
        self.single_key("status_list_key", candidate).await
    }

    async fn publish_next_signing_key(
        &self,
        next: &SigningKeyRecord,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        self.insert_signing_key_unless(KeyState::Next, next, audit)
            .await
    }

    async fn activate_next_signing_key(
        &self,
        kid: &str,
        now_s: i64,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let pending: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM signing_keys WHERE kid = $1 AND state = $2")
                    .bind(kid)
                    .bind(key_state_str(KeyState::Next))
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?;
            if pending.is_none() {
                return Ok(false);
            }
            sqlx::query(
                "UPDATE signing_keys SET state = $1, publish_until_s = COALESCE( \
                 (SELECT MAX(expires_at_s) FROM tokens WHERE tokens.kid = signing_keys.kid), $2) \
                 WHERE state = $3",
            )
            .bind(key_state_str(KeyState::Retired))
            .bind(now_s)
            .bind(key_state_str(KeyState::Active))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query("UPDATE signing_keys SET state = $1 WHERE kid = $2")
                .bind(key_state_str(KeyState::Active))
                .bind(kid)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            log.append(
                &mut *tx,
                std::slice::from_ref(audit),
                &[Change::SigningKeysChanged],
            )
            .await?;
            Ok(true)
        })
    }

    async fn rate_take(
        &self,
        takes: &[RateTake],
        now_ms: i64,
    ) -> Result<Vec<RateGrant>, StoreError> {
        if takes.is_empty() {
            return Ok(Vec::new());
        }
        if takes
            .iter()
            .any(|t| t.bucket.len() > limits::MAX_BUCKET_BYTES)
        {
            return Err(StoreError::Backend("rate bucket name too long".into()));
        }
        // Rows locked in name order, whatever order they were asked in, so two
        // replicas' batches cannot deadlock; no log head (nothing is audited).
        let mut order: Vec<usize> = (0..takes.len()).collect();
        order.sort_by(|a, b| takes[*a].bucket.cmp(&takes[*b].bucket));
        in_write_tx!(self, |tx| {
            let mut grants = vec![
                RateGrant {
                    granted: 0,
                    remaining: 0,
                    next_in_ms: 0
                };
                takes.len()
            ];
            for &i in &order {
                let t = &takes[i];
                // A missing bucket is full: inserting it full first makes every
                // replica lock the same row, never race two inserts.
                sqlx::query(
                    "INSERT INTO rate_buckets (bucket, level, updated_ms) VALUES ($1, $2, $3) \
                     ON CONFLICT (bucket) DO NOTHING",
                )
                .bind(&t.bucket)
                .bind(limits::full_level(t.quota, t.window_ms))
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                let stored: (i64, i64) = sqlx::query_as(
                    "SELECT level, updated_ms FROM rate_buckets WHERE bucket = $1 FOR UPDATE",
                )
                .bind(&t.bucket)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
                let (grant, level, updated) = limits::take(Some(stored), t, now_ms);
                sqlx::query(
                    "UPDATE rate_buckets SET level = $2, updated_ms = $3 WHERE bucket = $1",
                )
                .bind(&t.bucket)
                .bind(level)
                .bind(updated)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                grants[i] = grant;
            }
            Ok(grants)
        })
    }

    async fn purge_rate_buckets(&self, idle_before_ms: i64) -> Result<u64, StoreError> {
        let done = sqlx::query("DELETE FROM rate_buckets WHERE updated_ms < $1")
            .bind(idle_before_ms)
            .execute(&self.pool)
            .await
            .map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn rate_limit_settings(&self) -> Result<Vec<RateLimitSetting>, StoreError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT name, value, set_at_ms FROM rate_limit_settings ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|(name, value, set_at_ms)| RateLimitSetting {
                name,
                value,
                set_at_ms,
            })
            .collect())
    }

    async fn set_rate_limit_setting(
        &self,
        name: &str,
        value: Option<&str>,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        in_write_tx!(self, |tx| {
            // The log head first (as every audited write): settings changes queue.
            let log = log::lock(&mut *tx).await?;
            if !set_named_value(&mut tx, rows::RATE_LIMIT_SETTINGS, name, value, now_ms).await? {
                return Ok(false);
            }
            log.append(&mut *tx, std::slice::from_ref(audit), &[])
                .await?;
            Ok(true)
        })
    }

    async fn quota_take(
        &self,
        takes: &[QuotaTake],
        now_ms: i64,
    ) -> Result<Vec<QuotaGrant>, StoreError> {
        if takes.is_empty() {
            return Ok(Vec::new());
        }
        in_write_tx!(self, |tx| {
            crate::ledger::quota_take(&mut *tx, takes, now_ms).await
        })
    }

    async fn quota_used(&self, org: &OrgId, month: &str) -> Result<u64, StoreError> {
        let used: Option<i64> =
            sqlx::query_scalar("SELECT used FROM quota_usage WHERE org_id = $1 AND month = $2")
                .bind(org.as_str())
                .bind(month)
                .fetch_optional(&self.pool)
                .await
                .map_err(db_err)?;
        Ok(used.map_or(0, |u| u64::try_from(u).unwrap_or(0)))
    }

    async fn org_plans(&self) -> Result<Vec<(OrgId, String)>, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT org_id, plan FROM org_plans ORDER BY org_id")
                .fetch_all(&self.pool)
                .await
                .map_err(db_err)?;
        rows.into_iter()
            .map(|(org, plan)| Ok((parse_id(&org, "organisation id")?, plan)))
            .collect()
    }

    async fn set_org_plan(
        &self,
        org: &OrgId,
        plan: Option<&str>,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        in_write_tx!(self, |tx| {
            // The log head first (as every audited write).
            let log = log::lock(&mut *tx).await?;
            let exists: Option<i32> =
                sqlx::query_scalar("SELECT 1 FROM organisations WHERE id = $1 FOR SHARE")
                    .bind(org.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?;
            if exists.is_none() {
                return Err(StoreError::NotFound);
            }
            if !set_named_value(&mut tx, rows::ORG_PLANS, org.as_str(), plan, now_ms).await? {
                return Ok(false);
            }
            log.append(&mut *tx, std::slice::from_ref(audit), &[])
                .await?;
            Ok(true)
        })
    }

    async fn add_usage(&self, counts: &[UsageCount]) -> Result<(), StoreError> {
        if counts.is_empty() {
            return Ok(());
        }
        if counts.iter().any(|c| {
            c.key.len() > quota::MAX_USAGE_TEXT_BYTES || c.route.len() > quota::MAX_USAGE_TEXT_BYTES
        }) {
            return Err(StoreError::Backend("usage key or route too long".into()));
        }
        // Rows in key order, so two replicas' flushes cannot deadlock.
        let mut sorted: Vec<&UsageCount> = counts.iter().collect();
        sorted.sort_by(|a, b| {
            (a.org_id.as_str(), &a.day, &a.key, &a.route).cmp(&(
                b.org_id.as_str(),
                &b.day,
                &b.key,
                &b.route,
            ))
        });
        in_write_tx!(self, |tx| {
            for c in &sorted {
                sqlx::query(
                    "INSERT INTO usage_daily (org_id, day, key, route, count) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (org_id, day, key, route) \
                     DO UPDATE SET count = usage_daily.count + EXCLUDED.count",
                )
                .bind(c.org_id.as_str())
                .bind(&c.day)
                .bind(&c.key)
                .bind(&c.route)
                .bind(to_i64(c.count)?)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            Ok(())
        })
    }

    async fn usage(
        &self,
        org: &OrgId,
        from: &str,
        to: &str,
    ) -> Result<Vec<UsageCount>, StoreError> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT day, key, route, count FROM usage_daily \
             WHERE org_id = $1 AND day >= $2 AND day <= $3 ORDER BY day, key, route",
        )
        .bind(org.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(rows
            .into_iter()
            .map(|(day, key, route, count)| UsageCount {
                org_id: org.clone(),
                day,
                key,
                route,
                count: u64::try_from(count).unwrap_or(0),
            })
            .collect())
    }

    fn backend(&self) -> &'static str {
        "postgres"
    }

    fn pool_status(&self) -> Option<crate::PoolStatus> {
        Some(crate::PoolStatus {
            open: self.pool.size(),
            idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
            max: self.pool.options().get_max_connections(),
        })
    }

    // ---- organisations, people and sessions (issue 18)

    async fn session_key(
        &self,
        candidate: &ReceiptKeyRecord,
    ) -> Result<ReceiptKeyRecord, StoreError> {
        self.single_key("session_key", candidate).await
    }

    async fn playground_key(
        &self,
        candidate: &ReceiptKeyRecord,
    ) -> Result<ReceiptKeyRecord, StoreError> {
        self.single_key("playground_key", candidate).await
    }

    async fn create_org(
        &self,
        org: &Organisation,
        owner: &Invitation,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            sqlx::query(
            "INSERT INTO organisations (id, name, require_2fa, created_at_ms) VALUES ($1, $2, $3, $4)",
        )
        .bind(org.id.as_str())
        .bind(&org.name)
        .bind(org.require_2fa)
        .bind(org.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
            insert_invitation(&mut tx, owner).await?;
            log.append(&mut *tx, std::slice::from_ref(audit), &[])
                .await?;
            Ok(())
        })
    }

    async fn org(&self, id: &OrgId) -> Result<Option<Organisation>, StoreError> {
        sqlx::query_as::<_, OrgRow>(
            "SELECT id, name, require_2fa, created_at_ms FROM organisations WHERE id = $1",
        )
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(OrgRow::into_org)
        .transpose()
    }

    async fn set_org_require_2fa(
        &self,
        id: &OrgId,
        require: bool,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let current: Option<bool> =
                sqlx::query_scalar("SELECT require_2fa FROM organisations WHERE id = $1")
                    .bind(id.as_str())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?;
            let Some(current) = current else {
                return Err(StoreError::NotFound);
            };
            if current != require {
                sqlx::query("UPDATE organisations SET require_2fa = $1 WHERE id = $2")
                    .bind(require)
                    .bind(id.as_str())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
            log.append(&mut *tx, audited(current != require, audit), &[])
                .await?;
            Ok(())
        })
    }

    async fn create_invitation(
        &self,
        invitation: &Invitation,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            insert_invitation(&mut tx, invitation).await?;
            log.append(&mut *tx, std::slice::from_ref(audit), &[])
                .await?;
            Ok(())
        })
    }

    async fn invitation(&self, token_hash: &[u8; 32]) -> Result<Option<Invitation>, StoreError> {
        sqlx::query_as::<_, InvitationRow>(
            "SELECT token_hash, org_id, email, role, created_at_ms, expires_at_ms, accepted_at_ms \
             FROM invitations WHERE token_hash = $1",
        )
        .bind(token_hash.as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(InvitationRow::into_invitation)
        .transpose()
    }

    async fn accept_invitation(
        &self,
        token_hash: &[u8; 32],
        person: &Person,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<(Person, Membership), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let invitation = sqlx::query_as::<_, InvitationRow>(
            "SELECT token_hash, org_id, email, role, created_at_ms, expires_at_ms, accepted_at_ms \
             FROM invitations WHERE token_hash = $1",
        )
        .bind(token_hash.as_slice())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .map(InvitationRow::into_invitation)
        .transpose()?
        .filter(|i| {
            i.accepted_at_ms.is_none() && now_ms < i.expires_at_ms && i.email == person.email
        })
        .ok_or(StoreError::NotFound)?;
            let existing = sqlx::query_as::<_, PersonRow>(concat!(
                "SELECT ",
                person_columns!(),
                " FROM people WHERE email = $1"
            ))
            .bind(&person.email)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .map(PersonRow::into_person)
            .transpose()?;
            let stored = match existing {
                Some(mut p) => {
                    if p.password_hash.is_none() && person.password_hash.is_some() {
                        sqlx::query("UPDATE people SET password_hash = $1 WHERE id = $2")
                            .bind(&person.password_hash)
                            .bind(p.id.as_str())
                            .execute(&mut *tx)
                            .await
                            .map_err(db_err)?;
                        p.password_hash = person.password_hash.clone();
                    }
                    p
                }
                None => {
                    sqlx::query(
                        "INSERT INTO people (id, email, password_hash, created_at_ms) \
                     VALUES ($1, $2, $3, $4)",
                    )
                    .bind(person.id.as_str())
                    .bind(&person.email)
                    .bind(&person.password_hash)
                    .bind(person.created_at_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                    person.clone()
                }
            };
            let current: Option<(String, i64)> = sqlx::query_as(
                "SELECT role, created_at_ms FROM memberships WHERE org_id = $1 AND person_id = $2",
            )
            .bind(invitation.org_id.as_str())
            .bind(stored.id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            let (role, joined) = match current {
                None => {
                    sqlx::query(
                        "INSERT INTO memberships (org_id, person_id, role, created_at_ms) \
                     VALUES ($1, $2, $3, $4)",
                    )
                    .bind(invitation.org_id.as_str())
                    .bind(stored.id.as_str())
                    .bind(invitation.role.as_str())
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                    (invitation.role, now_ms)
                }
                Some((role, joined)) => {
                    let role = Role::parse(&role)
                        .ok_or_else(|| StoreError::Backend(format!("stored role {role}")))?;
                    if invitation.role.at_least(role) && invitation.role != role {
                        sqlx::query(
                            "UPDATE memberships SET role = $1 WHERE org_id = $2 AND person_id = $3",
                        )
                        .bind(invitation.role.as_str())
                        .bind(invitation.org_id.as_str())
                        .bind(stored.id.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                        (invitation.role, joined)
                    } else {
                        (role, joined)
                    }
                }
            };
            sqlx::query("UPDATE invitations SET accepted_at_ms = $1 WHERE token_hash = $2")
                .bind(now_ms)
                .bind(token_hash.as_slice())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            log.append(&mut *tx, std::slice::from_ref(audit), &[])
                .await?;
            let membership = Membership {
                org_id: invitation.org_id,
                person_id: stored.id.clone(),
                email: stored.email.clone(),
                role,
                created_at_ms: joined,
            };
            Ok((stored, membership))
        })
    }

    async fn person(&self, id: &PersonId) -> Result<Option<Person>, StoreError> {
        sqlx::query_as::<_, PersonRow>(concat!(
            "SELECT ",
            person_columns!(),
            " FROM people WHERE id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(PersonRow::into_person)
        .transpose()
    }

    async fn person_by_email(&self, email: &str) -> Result<Option<Person>, StoreError> {
        sqlx::query_as::<_, PersonRow>(concat!(
            "SELECT ",
            person_columns!(),
            " FROM people WHERE email = $1"
        ))
        .bind(email)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(PersonRow::into_person)
        .transpose()
    }

    async fn memberships_of(&self, person: &PersonId) -> Result<Vec<Membership>, StoreError> {
        sqlx::query_as::<_, MembershipRow>(
            "SELECT m.org_id, m.person_id, p.email, m.role, m.created_at_ms \
             FROM memberships m JOIN people p ON p.id = m.person_id \
             WHERE m.person_id = $1 ORDER BY m.created_at_ms, m.org_id",
        )
        .bind(person.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(MembershipRow::into_membership)
        .collect()
    }

    async fn members(&self, org: &OrgId) -> Result<Vec<Membership>, StoreError> {
        sqlx::query_as::<_, MembershipRow>(
            "SELECT m.org_id, m.person_id, p.email, m.role, m.created_at_ms \
             FROM memberships m JOIN people p ON p.id = m.person_id \
             WHERE m.org_id = $1 ORDER BY m.created_at_ms, m.person_id",
        )
        .bind(org.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(MembershipRow::into_membership)
        .collect()
    }

    async fn set_member_role(
        &self,
        org: &OrgId,
        person: &PersonId,
        role: Role,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let current = member_role(&mut tx, org, person).await?;
            if current == Role::Owner && role != Role::Owner && owners(&mut tx, org).await? <= 1 {
                return Err(StoreError::Conflict(ConflictKind::LastOwner));
            }
            if current != role {
                sqlx::query(
                    "UPDATE memberships SET role = $1 WHERE org_id = $2 AND person_id = $3",
                )
                .bind(role.as_str())
                .bind(org.as_str())
                .bind(person.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            log.append(&mut *tx, audited(current != role, audit), &[])
                .await?;
            Ok(())
        })
    }

    async fn remove_member(
        &self,
        org: &OrgId,
        person: &PersonId,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let current = member_role(&mut tx, org, person).await?;
            if current == Role::Owner && owners(&mut tx, org).await? <= 1 {
                return Err(StoreError::Conflict(ConflictKind::LastOwner));
            }
            sqlx::query("DELETE FROM memberships WHERE org_id = $1 AND person_id = $2")
                .bind(org.as_str())
                .bind(person.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            let elsewhere: i64 =
                sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE person_id = $1")
                    .bind(person.as_str())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_err)?;
            if elsewhere == 0 {
                // A person in no organisation may do nothing: their sessions end now.
                sqlx::query(
                    "UPDATE sessions SET revoked_at_ms = $1, revoke_reason = 'removed' \
                 WHERE person_id = $2 AND revoked_at_ms IS NULL",
                )
                .bind(now_ms)
                .bind(person.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            log.append(&mut *tx, std::slice::from_ref(audit), &[])
                .await?;
            Ok(())
        })
    }

    async fn set_owner_org(
        &self,
        what: &Owned,
        org: &OrgId,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let (select, insert, id) = match what {
                Owned::Issuer(id) => (
                    "SELECT org_id FROM org_issuers WHERE issuer_id = $1",
                    "INSERT INTO org_issuers (issuer_id, org_id) VALUES ($1, $2)",
                    id.as_str(),
                ),
                Owned::Receiver(id) => (
                    "SELECT org_id FROM org_receivers WHERE receiver_id = $1",
                    "INSERT INTO org_receivers (receiver_id, org_id) VALUES ($1, $2)",
                    id.as_str(),
                ),
            };
            let current: Option<String> = sqlx::query_scalar(select)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
            let changed = match current {
                Some(o) if o == org.as_str() => false,
                Some(_) => return Err(StoreError::Conflict(ConflictKind::IdTaken)),
                None => {
                    // A missing issuer or receiver is a foreign-key failure: NotFound.
                    sqlx::query(insert)
                        .bind(id)
                        .bind(org.as_str())
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                    true
                }
            };
            log.append(&mut *tx, audited(changed, audit), &[]).await?;
            Ok(())
        })
    }

    async fn owner_org(&self, what: &Owned) -> Result<Option<OrgId>, StoreError> {
        let (select, id) = match what {
            Owned::Issuer(id) => (
                "SELECT org_id FROM org_issuers WHERE issuer_id = $1",
                id.as_str(),
            ),
            Owned::Receiver(id) => (
                "SELECT org_id FROM org_receivers WHERE receiver_id = $1",
                id.as_str(),
            ),
        };
        let org: Option<String> = sqlx::query_scalar(select)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
        org.map(|o| OrgId::try_from(o.as_str()).map_err(|e| StoreError::Backend(e.to_string())))
            .transpose()
    }

    async fn org_owned(&self, org: &OrgId) -> Result<Vec<Owned>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT 'issuer' AS kind, issuer_id AS id FROM org_issuers WHERE org_id = $1 \
             UNION ALL \
             SELECT 'receiver' AS kind, receiver_id AS id FROM org_receivers WHERE org_id = $2 \
             ORDER BY kind, id",
        )
        .bind(org.as_str())
        .bind(org.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?;
        rows.iter()
            .map(|(kind, id)| crate::accounts::owned(kind, id))
            .collect()
    }

    async fn create_session(
        &self,
        session: &Session,
        refresh: &NewRefresh,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            sqlx::query(
            "INSERT INTO sessions (id, person_id, key_hash, client_id, two_factor, ip, \
             user_agent, created_at_ms, last_used_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(session.id.as_str())
        .bind(session.person().map(|p| p.as_str()))
        .bind(session.key().map(|k| k.0.to_vec()))
        .bind(&session.client_id)
        .bind(session.two_factor)
        .bind(&session.ip)
        .bind(&session.user_agent)
        .bind(session.created_at_ms)
        .bind(session.last_used_ms)
        .bind(session.expires_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, session_id, created_at_ms, expires_at_ms) \
             VALUES ($1, $2, $3, $4)",
            )
            .bind(refresh.hash.as_slice())
            .bind(session.id.as_str())
            .bind(session.created_at_ms)
            .bind(refresh.expires_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            log.append(&mut *tx, std::slice::from_ref(audit), &[])
                .await?;
            Ok(())
        })
    }

    async fn session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        sqlx::query_as::<_, SessionRow>(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions s WHERE s.id = $1"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(SessionRow::into_session)
        .transpose()
    }

    async fn sessions_of(
        &self,
        person: &PersonId,
        now_ms: i64,
    ) -> Result<Vec<Session>, StoreError> {
        sqlx::query_as::<_, SessionRow>(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions s WHERE s.person_id = $1 AND s.revoked_at_ms IS NULL \
             AND s.expires_at_ms > $2 ORDER BY s.created_at_ms DESC, s.id"
        ))
        .bind(person.as_str())
        .bind(now_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(SessionRow::into_session)
        .collect()
    }

    async fn refresh_token(&self, hash: &[u8; 32]) -> Result<Option<RefreshRecord>, StoreError> {
        sqlx::query_as::<_, RefreshRow>(concat!(
            "SELECT ",
            session_columns!(),
            ", r.created_at_ms AS rt_created_at_ms, r.expires_at_ms AS rt_expires_at_ms, \
             r.used_at_ms AS rt_used_at_ms \
             FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id \
             WHERE r.token_hash = $1"
        ))
        .bind(hash.as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(RefreshRow::into_record)
        .transpose()
    }

    async fn rotate_refresh(
        &self,
        old: &[u8; 32],
        new: &NewRefresh,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<Rotation, StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let row: Option<(Option<i64>, i64, String, Option<i64>)> = sqlx::query_as(
                "SELECT r.used_at_ms, r.expires_at_ms, r.session_id, s.revoked_at_ms \
             FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id \
             WHERE r.token_hash = $1",
            )
            .bind(old.as_slice())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            let Some((used, expires, session, revoked)) = row else {
                return Ok(Rotation::Refused);
            };
            if used.is_some() {
                return Ok(Rotation::AlreadyUsed);
            }
            if revoked.is_some() || now_ms >= expires {
                return Ok(Rotation::Refused);
            }
            sqlx::query("UPDATE refresh_tokens SET used_at_ms = $1 WHERE token_hash = $2")
                .bind(now_ms)
                .bind(old.as_slice())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            sqlx::query(
                "INSERT INTO refresh_tokens (token_hash, session_id, created_at_ms, expires_at_ms) \
             VALUES ($1, $2, $3, $4)",
            )
            .bind(new.hash.as_slice())
            .bind(&session)
            .bind(now_ms)
            .bind(new.expires_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query("UPDATE sessions SET last_used_ms = $1, expires_at_ms = $2 WHERE id = $3")
                .bind(now_ms)
                .bind(new.expires_at_ms)
                .bind(&session)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            log.append(&mut *tx, std::slice::from_ref(audit), &[])
                .await?;
            Ok(Rotation::Rotated)
        })
    }

    async fn revoke_session(
        &self,
        id: &SessionId,
        now_ms: i64,
        reason: &str,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let changed = sqlx::query(
                "UPDATE sessions SET revoked_at_ms = $1, revoke_reason = $2 \
             WHERE id = $3 AND revoked_at_ms IS NULL",
            )
            .bind(now_ms)
            .bind(reason)
            .bind(id.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected()
                > 0;
            log.append(&mut *tx, audited(changed, audit), &[]).await?;
            Ok(changed)
        })
    }

    async fn set_password(
        &self,
        person: &PersonId,
        password_hash: &str,
        keep: Option<&SessionId>,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let found = sqlx::query("UPDATE people SET password_hash = $1 WHERE id = $2")
                .bind(password_hash)
                .bind(person.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
            if found == 0 {
                return Err(StoreError::NotFound);
            }
            // No session id is empty: without `keep`, every session ends.
            sqlx::query(
                "UPDATE sessions SET revoked_at_ms = $1, revoke_reason = 'password_changed' \
             WHERE person_id = $2 AND revoked_at_ms IS NULL AND id <> $3",
            )
            .bind(now_ms)
            .bind(person.as_str())
            .bind(keep.map_or("", |k| k.as_str()))
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            log.append(&mut *tx, std::slice::from_ref(audit), &[])
                .await?;
            Ok(())
        })
    }

    async fn set_totp_pending(&self, person: &PersonId, sealed: &str) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let changed = sqlx::query(
                "UPDATE people SET totp_secret = $1, totp_last_step = NULL \
             WHERE id = $2 AND totp_enabled_at_ms IS NULL",
            )
            .bind(sealed)
            .bind(person.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            if changed == 0 {
                let exists: bool =
                    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM people WHERE id = $1)")
                        .bind(person.as_str())
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(db_err)?;
                return Err(if exists {
                    StoreError::Conflict(ConflictKind::TotpEnabled)
                } else {
                    StoreError::NotFound
                });
            }
            Ok(())
        })
    }

    async fn enable_totp(
        &self,
        person: &PersonId,
        step: i64,
        recovery: &[[u8; 32]],
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let changed = sqlx::query(
                "UPDATE people SET totp_enabled_at_ms = $1, totp_last_step = $2 \
             WHERE id = $3 AND totp_secret IS NOT NULL AND totp_enabled_at_ms IS NULL",
            )
            .bind(now_ms)
            .bind(step)
            .bind(person.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            if changed == 0 {
                return Err(StoreError::NotFound);
            }
            sqlx::query("DELETE FROM recovery_codes WHERE person_id = $1")
                .bind(person.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            for hash in recovery {
                sqlx::query("INSERT INTO recovery_codes (person_id, code_hash) VALUES ($1, $2)")
                    .bind(person.as_str())
                    .bind(hash.as_slice())
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
            log.append(&mut *tx, std::slice::from_ref(audit), &[])
                .await?;
            Ok(())
        })
    }

    async fn disable_totp(&self, person: &PersonId, audit: &AuditRecord) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let changed = sqlx::query(
                "UPDATE people SET totp_secret = NULL, totp_enabled_at_ms = NULL, \
             totp_last_step = NULL WHERE id = $1 AND totp_secret IS NOT NULL",
            )
            .bind(person.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected()
                > 0;
            sqlx::query("DELETE FROM recovery_codes WHERE person_id = $1")
                .bind(person.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            log.append(&mut *tx, audited(changed, audit), &[]).await?;
            Ok(())
        })
    }

    async fn claim_totp_step(&self, person: &PersonId, step: i64) -> Result<bool, StoreError> {
        in_write_tx!(self, |tx| {
            let claimed = sqlx::query(
                "UPDATE people SET totp_last_step = $1 WHERE id = $2 \
             AND totp_enabled_at_ms IS NOT NULL \
             AND (totp_last_step IS NULL OR totp_last_step < $3)",
            )
            .bind(step)
            .bind(person.as_str())
            .bind(step)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected()
                > 0;
            Ok(claimed)
        })
    }

    async fn use_recovery_code(
        &self,
        person: &PersonId,
        hash: &[u8; 32],
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let used = sqlx::query(
                "UPDATE recovery_codes SET used_at_ms = $1 \
             WHERE person_id = $2 AND code_hash = $3 AND used_at_ms IS NULL",
            )
            .bind(now_ms)
            .bind(person.as_str())
            .bind(hash.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected()
                > 0;
            log.append(&mut *tx, audited(used, audit), &[]).await?;
            Ok(used)
        })
    }

    async fn recovery_codes_left(&self, person: &PersonId) -> Result<u32, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM recovery_codes WHERE person_id = $1 AND used_at_ms IS NULL",
        )
        .bind(person.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn login_throttle(&self, subjects: &[String]) -> Result<Vec<Throttle>, StoreError> {
        let mut out = Vec::with_capacity(subjects.len());
        for subject in subjects {
            let row: Option<(i64, i64)> = sqlx::query_as(
                "SELECT failures, last_failure_ms FROM login_throttle WHERE subject = $1",
            )
            .bind(subject)
            .fetch_optional(&self.pool)
            .await
            .map_err(db_err)?;
            out.push(
                row.map_or(Throttle::default(), |(failures, last_failure_ms)| {
                    Throttle {
                        failures: u32::try_from(failures).unwrap_or(u32::MAX),
                        last_failure_ms,
                    }
                }),
            );
        }
        Ok(out)
    }

    async fn login_attempt(
        &self,
        subjects: &[String],
        failed: bool,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            for subject in subjects {
                if failed {
                    sqlx::query(
                        "INSERT INTO login_throttle (subject, failures, last_failure_ms) \
                     VALUES ($1, 1, $2) ON CONFLICT (subject) DO UPDATE SET \
                     failures = CASE WHEN login_throttle.last_failure_ms < $3 THEN 1 \
                     ELSE login_throttle.failures + 1 END, last_failure_ms = $4",
                    )
                    .bind(subject)
                    .bind(now_ms)
                    .bind(now_ms.saturating_sub(window_ms))
                    .bind(now_ms)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                } else {
                    sqlx::query("DELETE FROM login_throttle WHERE subject = $1")
                        .bind(subject)
                        .execute(&mut *tx)
                        .await
                        .map_err(db_err)?;
                }
            }
            Ok(())
        })
    }

    async fn login_reserve(
        &self,
        rules: &[ThrottleRule],
        now_ms: i64,
        window_ms: i64,
    ) -> Result<i64, StoreError> {
        // Rows locked in subject order (no deadlock between two attempts). A missing
        // row is inserted first (no failures yet), so every attempt locks the same
        // row: parallel attempts on a fresh subject are checked one after another
        // too, never all at once against nothing.
        let mut rules: Vec<&ThrottleRule> = rules.iter().collect();
        rules.sort_by(|a, b| a.subject.cmp(&b.subject));
        in_write_tx!(self, |tx| {
            let mut wait = 0;
            for rule in &rules {
                sqlx::query(
                    "INSERT INTO login_throttle (subject, failures, last_failure_ms) \
                     VALUES ($1, 0, 0) ON CONFLICT (subject) DO NOTHING",
                )
                .bind(&rule.subject)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            for rule in &rules {
                let row: Option<(i64, i64)> = sqlx::query_as(
                    "SELECT failures, last_failure_ms FROM login_throttle WHERE subject = $1 FOR UPDATE",
                )
                .bind(&rule.subject)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
                if let Some((failures, last)) = row {
                    let failures = u32::try_from(failures).unwrap_or(u32::MAX);
                    wait = wait.max(crate::accounts::backoff_remaining_ms(
                        failures, last, rule.free, now_ms,
                    ));
                }
            }
            if wait > 0 {
                return Ok(wait);
            }
            for rule in &rules {
                sqlx::query(
                    "INSERT INTO login_throttle (subject, failures, last_failure_ms) \
                     VALUES ($1, 1, $2) ON CONFLICT (subject) DO UPDATE SET \
                     failures = CASE WHEN login_throttle.last_failure_ms < $3 THEN 1 \
                     ELSE login_throttle.failures + 1 END, last_failure_ms = $4",
                )
                .bind(&rule.subject)
                .bind(now_ms)
                .bind(now_ms.saturating_sub(window_ms))
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            Ok(0)
        })
    }

    async fn login_release(&self, subjects: &[String]) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            for subject in subjects {
                sqlx::query(
                    "UPDATE login_throttle SET failures = failures - 1 \
                     WHERE subject = $1 AND failures > 0",
                )
                .bind(subject)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            }
            Ok(())
        })
    }

    async fn add_security_event(&self, event: &SecurityEvent) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            sqlx::query(
                "INSERT INTO security_events (kind, person_id, org_id, ip, detail, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(&event.kind)
            .bind(event.person_id.as_ref().map(|p| p.as_str()))
            .bind(event.org_id.as_ref().map(|o| o.as_str()))
            .bind(&event.ip)
            .bind(&event.detail)
            .bind(event.created_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            Ok(())
        })
    }

    async fn security_events(
        &self,
        org: Option<&OrgId>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<SecurityEvent>, StoreError> {
        let limit = i64::from(limit.min(1000));
        let rows = match org {
            Some(org) => {
                sqlx::query_as::<_, SecurityEventRow>(
                    "SELECT id, kind, person_id, org_id, ip, detail, created_at_ms \
                     FROM security_events WHERE id > $1 AND (org_id = $2 OR person_id IN \
                     (SELECT person_id FROM memberships WHERE org_id = $3)) ORDER BY id LIMIT $4",
                )
                .bind(after_id)
                .bind(org.as_str())
                .bind(org.as_str())
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query_as::<_, SecurityEventRow>(
                    "SELECT id, kind, person_id, org_id, ip, detail, created_at_ms \
                     FROM security_events WHERE id > $1 ORDER BY id LIMIT $2",
                )
                .bind(after_id)
                .bind(limit)
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(db_err)?;
        rows.into_iter().map(SecurityEventRow::into_event).collect()
    }

    async fn purge_security_events(&self, before_ms: i64) -> Result<u64, StoreError> {
        let gone = in_write_tx!(self, |tx| {
            let gone = sqlx::query("DELETE FROM security_events WHERE created_at_ms < $1")
                .bind(before_ms)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
            sqlx::query("DELETE FROM login_throttle WHERE last_failure_ms < $1")
                .bind(before_ms)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            Ok(gone)
        })?;
        self.purge_in_chunks(
            "DELETE FROM refresh_tokens WHERE token_hash IN \
             (SELECT token_hash FROM refresh_tokens WHERE expires_at_ms < $1 LIMIT $2)",
            before_ms,
        )
        .await?;
        self.purge_sessions(before_ms).await?;
        Ok(gone)
    }

    async fn create_org_issuer(
        &self,
        issuer: &Issuer,
        key: &ApiKeyHash,
        org: &OrgId,
        created_by: &PersonId,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO issuers (id, name, name_key, created_at_ms) VALUES ($1, $2, $3, $4)",
            )
            .bind(issuer.id.as_str())
            .bind(&issuer.name)
            .bind(names::issuer_name_key(&issuer.name))
            .bind(issuer.created_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query(
                "INSERT INTO api_keys (hash, kind, owner, created_at_ms, created_by) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(key.0.as_slice())
            .bind(KeyKind::Issuer.as_str())
            .bind(issuer.id.as_str())
            .bind(issuer.created_at_ms)
            .bind(created_by.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query("INSERT INTO org_issuers (issuer_id, org_id) VALUES ($1, $2)")
                .bind(issuer.id.as_str())
                .bind(org.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            log.append(&mut *tx, std::slice::from_ref(audit), &[])
                .await?;
            Ok(())
        })
    }

    async fn create_org_receiver(
        &self,
        receiver: &Receiver,
        key: &ApiKeyHash,
        org: &OrgId,
        created_by: &PersonId,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            sqlx::query("INSERT INTO receivers (id, name, created_at_ms) VALUES ($1, $2, $3)")
                .bind(receiver.id.as_str())
                .bind(&receiver.name)
                .bind(receiver.created_at_ms)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            sqlx::query(
                "INSERT INTO api_keys (hash, kind, owner, created_at_ms, created_by) VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(key.0.as_slice())
            .bind(KeyKind::Receiver.as_str())
            .bind(receiver.id.as_str())
            .bind(receiver.created_at_ms)
            .bind(created_by.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            insert_audiences(&mut tx, &receiver.id, &receiver.audiences).await?;
            sqlx::query("INSERT INTO org_receivers (receiver_id, org_id) VALUES ($1, $2)")
                .bind(receiver.id.as_str())
                .bind(org.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            log.append(&mut *tx, std::slice::from_ref(audit), &[])
                .await?;
            Ok(())
        })
    }

    async fn revoke_api_key(
        &self,
        hash: &ApiKeyHash,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<ApiKeyRecord, StoreError> {
        in_write_tx!(self, |tx| {
            let log = log::lock(&mut *tx).await?;
            let record = sqlx::query_as::<_, ApiKeyRow>(
                "SELECT hash, kind, owner, created_at_ms, name, scopes, expires_at_ms, created_by, \
             last_used_at_ms, revoked_at_ms, rotated_from FROM api_keys \
             WHERE hash = $1 AND revoked_at_ms IS NULL",
            )
            .bind(hash.0.as_slice())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?
            .map(ApiKeyRow::into_record)
            .transpose()?
            .ok_or(StoreError::NotFound)?;
            if record.kind == KeyKind::Admin {
                let admins: i64 = sqlx::query_scalar(
                    "SELECT COUNT(*) FROM api_keys WHERE kind = $1 AND revoked_at_ms IS NULL \
             AND (expires_at_ms IS NULL OR expires_at_ms > $2)",
                )
                .bind(KeyKind::Admin.as_str())
                .bind(now_ms)
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
                if admins <= 1 {
                    return Err(StoreError::Conflict(ConflictKind::LastAdminKey));
                }
            }
            sqlx::query("UPDATE api_keys SET revoked_at_ms = $1 WHERE hash = $2")
                .bind(now_ms)
                .bind(hash.0.as_slice())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            // The key's refresh-token families end with it.
            sqlx::query(
                "UPDATE sessions SET revoked_at_ms = $1, revoke_reason = 'key_revoked' \
                 WHERE key_hash = $2 AND revoked_at_ms IS NULL",
            )
            .bind(now_ms)
            .bind(hash.0.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            log.append(
                &mut *tx,
                std::slice::from_ref(audit),
                &[Change::ApiKeyRevoked(*hash)],
            )
            .await?;
            Ok(record)
        })
    }

    async fn writable(&self) -> Result<(), StoreError> {
        // A round trip on a pooled connection, bounded: the server is reachable and
        // not a read-only standby (after a failover, the old primary may be one). A
        // full disk on the server is not seen here; writes answer `Full` meanwhile.
        let probe =
            sqlx::query_scalar::<_, bool>("SELECT pg_is_in_recovery()").fetch_one(&self.pool);
        match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(false)) => Ok(()),
            Ok(Ok(true)) => Err(StoreError::Unavailable(
                "the database is a read-only standby".into(),
            )),
            Ok(Err(e)) => Err(db_err(e)),
            Err(_) => Err(StoreError::Unavailable(format!(
                "the database did not answer within {PROBE_TIMEOUT:?}"
            ))),
        }
    }

    fn change_signal(&self) -> ChangeSignal {
        let sender = self.changes.get_or_init(|| {
            let (tx, _) = tokio::sync::watch::channel(0u64);
            tokio::spawn(listen_for_changes(
                self.connect.clone(),
                self.target.clone(),
                tx.clone(),
            ));
            tx
        });
        ChangeSignal::from_watch(sender.subscribe())
    }

    async fn checkpoint_leader(&self) -> Result<bool, StoreError> {
        let mut slot = self.leader.lock().await;
        if let Some(session) = slot.as_mut()
            && session.holds
        {
            // A session lock lasts as long as its session: a live session still holds
            // it. A dead one released it, and another replica may lead by now.
            let ping = sqlx::query("SELECT 1").execute(&mut session.conn);
            if matches!(tokio::time::timeout(PROBE_TIMEOUT, ping).await, Ok(Ok(_))) {
                return Ok(true);
            }
            tracing::warn!(target = %self.target, "the checkpoint leader's connection failed: no longer leading");
            *slot = None;
        }
        let session = match slot.as_mut() {
            Some(session) => session,
            None => {
                // The server notices a leader that vanished without closing (a host
                // lost, a partition) through TCP keepalives: a few seconds, not hours.
                let options = self.connect.clone().options([
                    ("tcp_keepalives_idle", "2"),
                    ("tcp_keepalives_interval", "1"),
                    ("tcp_keepalives_count", "2"),
                ]);
                let conn =
                    tokio::time::timeout(PROBE_TIMEOUT, PgConnection::connect_with(&options))
                        .await
                        .map_err(|_| {
                            StoreError::Unavailable(format!(
                                "the database did not answer within {PROBE_TIMEOUT:?}"
                            ))
                        })?
                        .map_err(db_err)?;
                slot.insert(LeaderSession { conn, holds: false })
            }
        };
        let take = sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1, $2)")
            .bind(LEADER_LOCK.0)
            .bind(LEADER_LOCK.1)
            .fetch_one(&mut session.conn);
        match tokio::time::timeout(PROBE_TIMEOUT, take).await {
            Ok(Ok(held)) => {
                session.holds = held;
                Ok(held)
            }
            Ok(Err(e)) => {
                *slot = None;
                Err(db_err(e))
            }
            Err(_) => {
                *slot = None;
                Err(StoreError::Unavailable(format!(
                    "the database did not answer within {PROBE_TIMEOUT:?}"
                )))
            }
        }
    }

    async fn purge_idempotency(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.purge_in_chunks(
            "DELETE FROM idempotency WHERE (receiver_id, key) IN \
             (SELECT receiver_id, key FROM idempotency WHERE created_at_ms < $1 LIMIT $2)",
            before_ms,
        )
        .await
    }

    async fn purge_receipts(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.purge_in_chunks(
            "DELETE FROM receipts WHERE id IN \
             (SELECT id FROM receipts WHERE created_at_ms < $1 \
              ORDER BY created_at_ms LIMIT $2)",
            before_ms,
        )
        .await
    }

    async fn record_sdk_verification(&self, v: &NewSdkVerification) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO sdk_verifications (id_sha256, audit_index, agent_id, created_at_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(v.id_sha256.as_slice())
        .bind(to_i64(v.audit_index)?)
        .bind(v.agent_id.as_str())
        .bind(v.created_at_ms)
        .execute(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(())
    }

    async fn sdk_verification(
        &self,
        id_sha256: &[u8; 32],
    ) -> Result<Option<SdkVerification>, StoreError> {
        sqlx::query_as::<_, rows::SdkVerificationRow>(
            "SELECT id_sha256, audit_index, agent_id, created_at_ms, result, result_at_ms, \
             execution, execution_at_ms FROM sdk_verifications WHERE id_sha256 = $1",
        )
        .bind(id_sha256.as_slice())
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?
        .map(rows::SdkVerificationRow::into_verification)
        .transpose()
    }

    async fn report_sdk_verification(
        &self,
        id_sha256: &[u8; 32],
        kind: SdkReportKind,
        body: &str,
        at_ms: i64,
    ) -> Result<ReportOutcome, StoreError> {
        let (body_col, at_col) = rows::sdk_report_columns(kind);
        // One statement: the update happens only while the column is empty, and the
        // row as it then stands says what became of this report.
        let row: Option<(bool, Option<String>)> = sqlx::query_as(safe_sql(format!(
            "WITH set AS (UPDATE sdk_verifications SET {body_col} = $2, {at_col} = $3 \
             WHERE id_sha256 = $1 AND {body_col} IS NULL RETURNING 1) \
             SELECT EXISTS (SELECT 1 FROM set), {body_col} FROM sdk_verifications \
             WHERE id_sha256 = $1"
        )))
        .bind(id_sha256.as_slice())
        .bind(body)
        .bind(at_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_err)?;
        Ok(match row {
            Some((true, _)) => ReportOutcome::Recorded,
            Some((false, first)) => crate::sdk_verifications::outcome_of(Some(first), body),
            None => ReportOutcome::UnknownVerification,
        })
    }

    async fn purge_sdk_verifications(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.purge_in_chunks(
            "DELETE FROM sdk_verifications WHERE id_sha256 IN \
             (SELECT id_sha256 FROM sdk_verifications WHERE created_at_ms < $1 \
              ORDER BY created_at_ms LIMIT $2)",
            before_ms,
        )
        .await
    }
}

impl PostgresStore {
    /// A one-row key table ([`crate::SINGLE_KEY_TABLES`]): the stored key, or
    /// `candidate` stored now if there is none.
    async fn single_key(
        &self,
        table: &'static str,
        candidate: &ReceiptKeyRecord,
    ) -> Result<ReceiptKeyRecord, StoreError> {
        debug_assert!(crate::SINGLE_KEY_TABLES.contains(&table));
        let (private_pem, created_at_ms) = in_write_tx!(self, |tx| {
            sqlx::query(safe_sql(format!(
                "INSERT INTO {table} (id, private_pem, created_at_ms) VALUES (1, $1, $2) \
                 ON CONFLICT (id) DO NOTHING"
            )))
            .bind(&candidate.private_pem)
            .bind(candidate.created_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            sqlx::query_as::<_, (String, i64)>(safe_sql(format!(
                "SELECT private_pem, created_at_ms FROM {table} WHERE id = 1"
            )))
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)
        })?;
        Ok(ReceiptKeyRecord {
            private_pem,
            created_at_ms,
        })
    }

    /// Deletes the sessions that ended before `before_ms` ([`SESSION_ENDED`]) with
    /// their refresh tokens, [`SESSION_PURGE_CHUNK`] sessions per short transaction.
    /// Each round deletes the chunk's tokens, then as many ended sessions left without
    /// tokens (at least the chunk's), so it stops once fewer than a chunk remain.
    async fn purge_sessions(&self, before_ms: i64) -> Result<u64, StoreError> {
        let tokens = format!(
            "DELETE FROM refresh_tokens WHERE session_id IN \
             (SELECT s.id FROM sessions s WHERE {SESSION_ENDED} LIMIT $2)"
        );
        let sessions = format!(
            "DELETE FROM sessions WHERE id IN (SELECT s.id FROM sessions s WHERE {SESSION_ENDED} \
             AND NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.session_id = s.id) \
             LIMIT $2)"
        );
        let mut total = 0;
        loop {
            let deleted = in_write_tx!(self, |tx| {
                sqlx::query(safe_sql(tokens.clone()))
                    .bind(before_ms)
                    .bind(SESSION_PURGE_CHUNK)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
                Ok(sqlx::query(safe_sql(sessions.clone()))
                    .bind(before_ms)
                    .bind(SESSION_PURGE_CHUNK)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?
                    .rows_affected())
            })?;
            total += deleted;
            if deleted < SESSION_PURGE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    /// Runs `delete` (binding a time and [`PURGE_CHUNK`]) until it deletes less than a
    /// chunk, one autocommitted statement each: no long transaction, and no log head
    /// (a decision replaying a key being purged simply misses it, as it would a moment
    /// later; a receipt row is read by id only). How many went.
    async fn purge_in_chunks(
        &self,
        delete: &'static str,
        before_ms: i64,
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let deleted = sqlx::query(delete)
                .bind(before_ms)
                .bind(PURGE_CHUNK)
                .execute(&self.pool)
                .await
                .map_err(db_err)?
                .rows_affected();
            total += deleted;
            if deleted < PURGE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }
}

// ---- decisions internals

/// The ledger's reads and writes ([`LedgerTx`]) in a write transaction, after
/// [`log::lock`] (which `ledger::record_decisions` takes first).
#[async_trait]
impl LedgerTx for PgConnection {
    async fn read_claims(
        &mut self,
        claims: &[&IdempotencyClaim],
    ) -> Result<HashMap<(ReceiverId, String), Claimed>, StoreError> {
        read_claims(self, claims).await
    }

    async fn read_budget(&mut self, key: &BudgetKey) -> Result<Option<Decimal>, StoreError> {
        read_budget(self, key, true).await
    }

    async fn live_nonces(
        &mut self,
        nonces: &[&NonceClaim],
    ) -> Result<HashSet<(AgentId, String)>, StoreError> {
        // Stored values, read in a few statements (row values, two binds each).
        let mut stored: HashMap<(String, String), i64> = HashMap::new();
        for chunk in nonces.chunks(MAX_IN_LIST / 2) {
            let mut select = QueryBuilder::<Postgres>::new(
                "SELECT agent_id, nonce, expires_at_ms FROM action_nonces \
                 WHERE (agent_id, nonce) IN (",
            );
            let mut list = select.separated(", ");
            for n in chunk {
                list.push("(")
                    .push_bind_unseparated(n.agent.as_str())
                    .push_unseparated(", ")
                    .push_bind_unseparated(n.nonce.as_str())
                    .push_unseparated(")");
            }
            select.push(")");
            let rows: Vec<(String, String, i64)> = select
                .build_query_as()
                .fetch_all(&mut *self)
                .await
                .map_err(db_err)?;
            stored.extend(rows.into_iter().map(|(a, n, until)| ((a, n), until)));
        }
        // Live at each claim's own time: one that expired by then gives way.
        Ok(nonces
            .iter()
            .filter(|n| {
                stored
                    .get(&(n.agent.as_str().to_owned(), n.nonce.clone()))
                    .is_some_and(|until| *until > n.now_ms)
            })
            .map(|n| (n.agent.clone(), n.nonce.clone()))
            .collect())
    }

    async fn existing_agents(
        &mut self,
        agents: &[&AgentId],
    ) -> Result<HashSet<AgentId>, StoreError> {
        let mut found = HashSet::new();
        for chunk in agents.chunks(MAX_IN_LIST) {
            let mut select = QueryBuilder::<Postgres>::new("SELECT id FROM agents WHERE id IN (");
            let mut list = select.separated(", ");
            for agent in chunk {
                list.push_bind(agent.as_str());
            }
            select.push(")");
            let ids: Vec<String> = select
                .build_query_scalar()
                .fetch_all(&mut *self)
                .await
                .map_err(db_err)?;
            for id in ids {
                found.insert(AgentId::try_from(id.as_str()).map_err(|_| corrupt("agent id"))?);
            }
        }
        Ok(found)
    }

    async fn upsert_nonces(&mut self, nonces: &[&NonceClaim]) -> Result<(), StoreError> {
        for n in nonces {
            // Decided already: a stored row here is one that expired, replaced.
            sqlx::query(
                "INSERT INTO action_nonces (agent_id, nonce, expires_at_ms) VALUES ($1, $2, $3) \
                 ON CONFLICT (agent_id, nonce) DO UPDATE SET expires_at_ms = excluded.expires_at_ms",
            )
            .bind(n.agent.as_str())
            .bind(&n.nonce)
            .bind(n.expires_at_ms)
            .execute(&mut *self)
            .await
            .map_err(db_err)?;
        }
        Ok(())
    }

    async fn upsert_budgets(&mut self, rows: &[BudgetRow<'_>]) -> Result<(), StoreError> {
        for row in rows {
            sqlx::query(
                "INSERT INTO budgets \
                 (issuer_id, policy_id, period_key, currency, spent, cap, updated_at_ms) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT (issuer_id, policy_id, period_key, currency) DO UPDATE SET \
                 spent = excluded.spent, cap = excluded.cap, updated_at_ms = excluded.updated_at_ms",
            )
            .bind(row.key.issuer_id.as_str())
            .bind(&row.key.policy_id)
            .bind(&row.key.period_key)
            .bind(&row.key.currency)
            .bind(row.spent.to_string())
            .bind(row.cap.to_string())
            .bind(row.at_ms)
            .execute(&mut *self)
            .await
            .map_err(db_err)?;
        }
        Ok(())
    }

    async fn insert_receipts(&mut self, receipts: &[ReceiptRecord]) -> Result<(), StoreError> {
        let rows: Vec<(&ReceiptRecord, Option<i64>)> = receipts
            .iter()
            .map(|r| Ok((r, r.audit_index.map(to_i64).transpose()?)))
            .collect::<Result<_, StoreError>>()?;
        for chunk in rows.chunks(DECISION_ROWS_PER_INSERT) {
            let mut insert = QueryBuilder::<Postgres>::new(
                "INSERT INTO receipts \
                 (id, receiver_id, issuer_id, claims, audit_index, created_at_ms) ",
            );
            insert.push_values(chunk, |mut row, (receipt, audit_index)| {
                row.push_bind(receipt.id.as_str())
                    .push_bind(receipt.receiver_id.as_ref().map(ReceiverId::as_str))
                    .push_bind(receipt.issuer_id.as_ref().map(IssuerId::as_str))
                    .push_bind(receipt.claims.as_slice())
                    .push_bind(*audit_index)
                    .push_bind(receipt.created_at_ms);
            });
            insert.build().execute(&mut *self).await.map_err(db_err)?;
        }
        Ok(())
    }

    async fn insert_claims(
        &mut self,
        claims: &[(&(ReceiverId, String), &Claimed)],
    ) -> Result<(), StoreError> {
        let rows: Vec<(&(ReceiverId, String), &Claimed, Option<i64>)> = claims
            .iter()
            .map(|(key, claimed)| {
                Ok((*key, *claimed, claimed.audit_index.map(to_i64).transpose()?))
            })
            .collect::<Result<_, StoreError>>()?;
        for chunk in rows.chunks(DECISION_ROWS_PER_INSERT) {
            let mut insert = QueryBuilder::<Postgres>::new(
                "INSERT INTO idempotency \
                 (receiver_id, key, request_sha256, answer, audit_index, created_at_ms) ",
            );
            insert.push_values(chunk, |mut row, ((receiver, key), claimed, audit_index)| {
                row.push_bind(receiver.as_str())
                    .push_bind(key.as_str())
                    .push_bind(claimed.request_sha256.as_slice())
                    .push_bind(claimed.answer.as_slice())
                    .push_bind(*audit_index)
                    .push_bind(claimed.created_at_ms);
            });
            insert.build().execute(&mut *self).await.map_err(db_err)?;
        }
        Ok(())
    }

    async fn read_quotas(
        &mut self,
        months: &[(&OrgId, &str)],
    ) -> Result<Vec<Option<(u64, bool)>>, StoreError> {
        // Each row is inserted first (at zero) so every replica locks the same row,
        // never races two inserts; `months` comes sorted, so locks are taken in one
        // order and two replicas' batches cannot deadlock.
        let mut rows = Vec::with_capacity(months.len());
        for (org, month) in months {
            sqlx::query(
                "INSERT INTO quota_usage (org_id, month, used, warned) \
                 VALUES ($1, $2, 0, FALSE) ON CONFLICT (org_id, month) DO NOTHING",
            )
            .bind(org.as_str())
            .bind(*month)
            .execute(&mut *self)
            .await
            .map_err(db_err)?;
            let (used, warned): (i64, bool) = sqlx::query_as(
                "SELECT used, warned FROM quota_usage \
                 WHERE org_id = $1 AND month = $2 FOR UPDATE",
            )
            .bind(org.as_str())
            .bind(*month)
            .fetch_one(&mut *self)
            .await
            .map_err(db_err)?;
            rows.push(Some((
                u64::try_from(used).map_err(|_| corrupt("quota count"))?,
                warned,
            )));
        }
        Ok(rows)
    }

    async fn write_quotas(&mut self, rows: &[(&OrgId, &str, u64, bool)]) -> Result<(), StoreError> {
        for (org, month, used, warned) in rows {
            sqlx::query(
                "UPDATE quota_usage SET used = $3, warned = $4 WHERE org_id = $1 AND month = $2",
            )
            .bind(org.as_str())
            .bind(*month)
            .bind(to_i64(*used)?)
            .bind(*warned)
            .execute(&mut *self)
            .await
            .map_err(db_err)?;
        }
        Ok(())
    }

    async fn add_quota_below(
        &mut self,
        org: &OrgId,
        month: &str,
        n: u64,
        below: u64,
    ) -> Result<Option<u64>, StoreError> {
        let after: Option<i64> = sqlx::query_scalar(
            "UPDATE quota_usage SET used = used + $1 WHERE org_id = $2 AND month = $3 \
             AND used + $1 < $4 RETURNING used",
        )
        .bind(to_i64(n)?)
        .bind(org.as_str())
        .bind(month)
        .bind(to_i64(below)?)
        .fetch_optional(&mut *self)
        .await
        .map_err(db_err)?;
        after
            .map(|u| u64::try_from(u).map_err(|_| corrupt("quota count")))
            .transpose()
    }
}

/// `Conflict(KeyHeldElsewhere)` if the key (`jkt`) is, or was, an agent key of
/// another issuer's agent: an issuer cannot take over a key another issuer's agent
/// registered first (its signatures would then count as the squatter's agent's).
async fn refuse_key_held_elsewhere(
    conn: &mut PgConnection,
    jkt: &str,
    issuer: &IssuerId,
) -> Result<(), StoreError> {
    let elsewhere: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM agent_keys k JOIN agents a ON a.id = k.agent_id \
         WHERE k.jkt = $1 AND a.issuer_id != $2)",
    )
    .bind(jkt)
    .bind(issuer.as_str())
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    if elsewhere {
        return Err(StoreError::Conflict(ConflictKind::KeyHeldElsewhere));
    }
    Ok(())
}

/// What `key` has spent, if it has a record; `lock`ed (`FOR UPDATE`, inside a write
/// transaction, after the log head) until the transaction ends.
async fn read_budget(
    conn: &mut PgConnection,
    key: &BudgetKey,
    lock: bool,
) -> Result<Option<Decimal>, StoreError> {
    let sql = if lock {
        "SELECT spent FROM budgets \
         WHERE issuer_id = $1 AND policy_id = $2 AND period_key = $3 AND currency = $4 \
         FOR UPDATE"
    } else {
        "SELECT spent FROM budgets \
         WHERE issuer_id = $1 AND policy_id = $2 AND period_key = $3 AND currency = $4"
    };
    let spent: Option<String> = sqlx::query_scalar(sql)
        .bind(key.issuer_id.as_str())
        .bind(&key.policy_id)
        .bind(&key.period_key)
        .bind(&key.currency)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
    spent
        .map(|text| text.parse::<Decimal>().map_err(|_| corrupt("budget spent")))
        .transpose()
}

/// The stored idempotency records these claims name: per receiver, `IN` lists on the
/// primary key.
async fn read_claims(
    conn: &mut PgConnection,
    claims: &[&IdempotencyClaim],
) -> Result<HashMap<(ReceiverId, String), Claimed>, StoreError> {
    let mut by_receiver: HashMap<&ReceiverId, Vec<&str>> = HashMap::new();
    for claim in claims {
        by_receiver
            .entry(&claim.receiver_id)
            .or_default()
            .push(claim.key.as_str());
    }
    let mut found = HashMap::new();
    for (receiver, keys) in by_receiver {
        for chunk in keys.chunks(MAX_IN_LIST) {
            let mut select = QueryBuilder::<Postgres>::new(
                "SELECT key, request_sha256, answer, audit_index, created_at_ms \
                 FROM idempotency WHERE receiver_id = ",
            );
            select.push_bind(receiver.as_str()).push(" AND key IN (");
            let mut list = select.separated(", ");
            for key in chunk {
                list.push_bind(*key);
            }
            select.push(")");
            let rows: Vec<ClaimRow> = select
                .build_query_as()
                .fetch_all(&mut *conn)
                .await
                .map_err(db_err)?;
            for row in rows {
                let (key, claimed) = row.into_claimed()?;
                found.insert((receiver.clone(), key), claimed);
            }
        }
    }
    Ok(found)
}

// ---- audit log internals

/// Adds the records below `size` (a checkpoint's, capped at the log's) that the leaf
/// index lacks to it, in one sorted insert, and moves its progress mark. In the
/// checkpoint's write transaction: off the append path, once per checkpoint interval.
/// The progress row is locked first, so two replicas storing checkpoints at once
/// extend it one after the other.
async fn extend_leaf_index(tx: &mut PgConnection, size: u64) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO audit_leaf_progress (id, upto) VALUES (1, 0) ON CONFLICT (id) DO NOTHING",
    )
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    let upto: i64 =
        sqlx::query_scalar("SELECT upto FROM audit_leaf_progress WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
    // Read after the lock: every record below the head's size has committed.
    let size = to_i64(size)?.min(to_i64(audit_size(tx).await?)?);
    if upto >= size {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO audit_leaf_index (epoch, leaf_prefix, idx) \
         SELECT idx >> 15, substring(leaf_hash from 1 for 8), idx FROM audit_log \
         WHERE idx >= $1 AND idx < $2 ORDER BY 1, 2, 3",
    )
    .bind(upto)
    .bind(size)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    sqlx::query("UPDATE audit_leaf_progress SET upto = $1 WHERE id = 1")
        .bind(size)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
    Ok(())
}

/// Where the pruned prefix of the log ends (no row: 0).
async fn audit_pruned(conn: &mut PgConnection) -> Result<u64, StoreError> {
    let through: i64 =
        sqlx::query_scalar("SELECT COALESCE((SELECT through FROM audit_pruned WHERE id = 1), 0)")
            .fetch_one(&mut *conn)
            .await
            .map_err(db_err)?;
    u64::try_from(through).map_err(|_| corrupt("audit pruned mark"))
}

/// The log's size as `log_head` holds it (committed with the rows it counts), for
/// readers: no lock.
async fn audit_size(conn: &mut PgConnection) -> Result<u64, StoreError> {
    let size: i64 = sqlx::query_scalar("SELECT size FROM log_head WHERE id = 1")
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
    u64::try_from(size).map_err(|_| corrupt("audit log size"))
}

/// The audit log's rows and the change feed ([`log::LogRead`]) on any connection: a
/// pooled one for proofs and the feed, a write transaction for appends.
#[async_trait]
impl log::LogRead for PgConnection {
    async fn log_head(&mut self) -> Result<u64, StoreError> {
        // The first lock of every write, held to commit: writers in every process
        // queue here. Under READ COMMITTED a waiter that is granted the row reads the
        // size its predecessor committed, and every later statement sees that
        // predecessor's rows.
        let size: i64 = sqlx::query_scalar("SELECT size FROM log_head WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *self)
            .await
            .map_err(db_err)?;
        u64::try_from(size).map_err(|_| corrupt("audit log size"))
    }

    async fn read_hash_rows(
        &mut self,
        records: &[u64],
    ) -> Result<HashMap<u64, log::HashRun>, StoreError> {
        let mut runs = HashMap::with_capacity(records.len());
        for chunk in records.chunks(MAX_IN_LIST) {
            let mut select = QueryBuilder::<Postgres>::new(
                "SELECT idx, leaf_hash, nodes FROM audit_log WHERE idx IN (",
            );
            let mut list = select.separated(", ");
            for r in chunk {
                list.push_bind(to_i64(*r)?);
            }
            select.push(")");
            let rows: Vec<(i64, Vec<u8>, Vec<u8>)> = select
                .build_query_as()
                .fetch_all(&mut *self)
                .await
                .map_err(db_err)?;
            for (idx, leaf, nodes) in rows {
                let idx = u64::try_from(idx).map_err(|_| corrupt("audit index"))?;
                // `nodes` is the run's interior hashes, 32 bytes each (the schema checks
                // the length is a multiple of 32).
                let nodes = nodes
                    .chunks(32)
                    .map(|h| Hash::try_from(h).map_err(|_| corrupt("audit hashes")))
                    .collect::<Result<_, _>>()?;
                let leaf =
                    Hash::try_from(leaf.as_slice()).map_err(|_| corrupt("audit leaf hash"))?;
                runs.insert(idx, log::HashRun { leaf, nodes });
            }
        }
        Ok(runs)
    }

    async fn change_head(&mut self) -> Result<u64, StoreError> {
        // A backward scan of the primary key. Outside a write this sees committed rows
        // only, and every position below a committed one has committed (module docs).
        let head: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(pos), 0) FROM changes")
            .fetch_one(&mut *self)
            .await
            .map_err(db_err)?;
        u64::try_from(head).map_err(|_| corrupt("change position"))
    }
}

/// The change feed's pages ([`log::ChangeRead`]).
#[async_trait]
impl log::ChangeRead for PgConnection {
    async fn read_changes(
        &mut self,
        after: u64,
        up_to: u64,
        expired_by_s: i64,
        limit: u32,
    ) -> Result<Vec<(u64, log::ChangeRow)>, StoreError> {
        let rows: Vec<(i64, String, Option<String>, Option<i64>)> = sqlx::query_as(
            "SELECT pos, kind, subject, expires_at_s FROM changes \
             WHERE pos > $1 AND pos <= $2 AND (expires_at_s IS NULL OR expires_at_s > $3) \
             ORDER BY pos LIMIT $4",
        )
        .bind(to_i64(after)?)
        .bind(to_i64(up_to)?)
        .bind(expired_by_s)
        .bind(i64::from(limit))
        .fetch_all(&mut *self)
        .await
        .map_err(db_err)?;
        rows.into_iter()
            .map(|(pos, kind, subject, expires_at_s)| {
                let pos = u64::try_from(pos).map_err(|_| corrupt("change position"))?;
                Ok((
                    pos,
                    log::ChangeRow {
                        kind,
                        subject,
                        expires_at_s,
                    },
                ))
            })
            .collect()
    }
}

/// Appends ([`log::LogTx`]) in a write transaction that holds the log head.
#[async_trait]
impl log::LogTx for PgConnection {
    async fn insert_audit_rows(&mut self, rows: &[log::LogRow<'_>]) -> Result<(), StoreError> {
        let (Some(first), Some(last)) = (rows.first(), rows.last()) else {
            return Ok(());
        };
        for chunk in rows.chunks(AUDIT_ROWS_PER_INSERT) {
            let chunk: Vec<(i64, &log::LogRow<'_>)> = chunk
                .iter()
                .map(|row| Ok((to_i64(row.index)?, row)))
                .collect::<Result<_, StoreError>>()?;
            let mut insert = QueryBuilder::<Postgres>::new(
                "INSERT INTO audit_log \
                 (idx, leaf_hash, nodes, entry, agent_id, issuer_id, created_at_ms) ",
            );
            insert.push_values(chunk, |mut b, (index, row)| {
                let nodes: Vec<u8> = row.run.nodes.iter().flat_map(|h| h.0).collect();
                b.push_bind(index)
                    .push_bind(row.run.leaf.0.to_vec())
                    .push_bind(nodes)
                    .push_bind(row.record.packed().into_owned())
                    .push_bind(row.record.agent_id.as_ref().map(|a| a.as_str().to_owned()))
                    .push_bind(row.record.issuer_id.as_ref().map(|i| i.as_str().to_owned()))
                    .push_bind(row.record.created_at_ms);
            });
            insert.build().execute(&mut *self).await.map_err(db_err)?;
        }
        // The head row holds the size readers see (`audit_size`): advance it in the
        // same transaction. Guarded by the size it was at: a mismatch is a bug, never
        // a second writer (the row is locked), and fails the write.
        let moved = sqlx::query("UPDATE log_head SET size = $1 WHERE id = 1 AND size = $2")
            .bind(to_i64(last.index.saturating_add(1))?)
            .bind(to_i64(first.index)?)
            .execute(&mut *self)
            .await
            .map_err(db_err)?
            .rows_affected();
        if moved != 1 {
            return Err(StoreError::Backend(
                "audit log: rows were not appended at the head".into(),
            ));
        }
        Ok(())
    }

    async fn insert_changes(&mut self, rows: &[(u64, log::ChangeRow)]) -> Result<(), StoreError> {
        for chunk in rows.chunks(AUDIT_ROWS_PER_INSERT) {
            let chunk: Vec<(i64, &log::ChangeRow)> = chunk
                .iter()
                .map(|(pos, row)| Ok((to_i64(*pos)?, row)))
                .collect::<Result<_, StoreError>>()?;
            let mut insert = QueryBuilder::<Postgres>::new(
                "INSERT INTO changes (pos, kind, subject, expires_at_s) ",
            );
            insert.push_values(chunk, |mut b, (pos, row)| {
                b.push_bind(pos)
                    .push_bind(row.kind.clone())
                    .push_bind(row.subject.clone())
                    .push_bind(row.expires_at_s);
            });
            insert.build().execute(&mut *self).await.map_err(db_err)?;
        }
        if !rows.is_empty() {
            // Delivered only if this transaction commits, after the rows are visible
            // (and once per transaction, however many changes): other replicas read the
            // feed at once instead of at their next periodic refresh.
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(CHANGES_CHANNEL)
                .execute(&mut *self)
                .await
                .map_err(db_err)?;
        }
        Ok(())
    }
}

/// Stores a token; true if that extended a retired signing key's publication (a
/// change readers mirror).
async fn insert_token(conn: &mut PgConnection, token: &TokenRecord) -> Result<bool, StoreError> {
    sqlx::query(
        "INSERT INTO tokens (jti, agent_id, issuer_id, kid, issued_at_s, expires_at_s, revoked_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(token.jti.as_str())
    .bind(token.agent_id.as_str())
    .bind(token.issuer_id.as_str())
    .bind(&token.kid)
    .bind(token.issued_at_s)
    .bind(token.expires_at_s)
    .bind(token.revoked_at_ms)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    // A token signed just before a rotation may be recorded just after it: its key must
    // then stay published until this token expires too.
    let extended = sqlx::query(
        "UPDATE signing_keys SET publish_until_s = $1 \
         WHERE kid = $2 AND state = 'retired' AND COALESCE(publish_until_s, 0) < $1",
    )
    .bind(token.expires_at_s)
    .bind(&token.kid)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?
    .rows_affected();
    Ok(extended > 0)
}

/// A recorded token's change: none, or the signing keys when it extended a retired
/// key's publication.
fn signing_keys_changed(extended: bool) -> &'static [Change] {
    if extended {
        &[Change::SigningKeysChanged]
    } else {
        &[]
    }
}

// ---- rows: what PostgreSQL hands back, parsed into domain types. A row that does not parse
// is `Backend` (the file was edited or corrupted), never a panic.

/// Writes a receiver's audiences in order. An audience another receiver holds is a
/// unique violation (`Conflict`).
async fn insert_audiences(
    conn: &mut PgConnection,
    id: &ReceiverId,
    audiences: &[String],
) -> Result<(), StoreError> {
    for (position, audience) in audiences.iter().enumerate() {
        let position = i64::try_from(position)
            .map_err(|_| StoreError::Backend("too many audiences".into()))?;
        sqlx::query(
            "INSERT INTO receiver_audiences (audience, receiver_id, position) VALUES ($1, $2, $3)",
        )
        .bind(audience)
        .bind(id.as_str())
        .bind(position)
        .execute(&mut *conn)
        .await
        .map_err(db_err)?;
    }
    Ok(())
}

/// The agent `id` of `issuer`, read inside a write transaction; `NotFound` if it does
/// not exist or is another issuer's.
async fn insert_agent_key(conn: &mut PgConnection, key: &AgentKey) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO agent_keys (agent_id, jkt, jwk, alg, created_at_ms, expires_at_ms, \
         retired_at_ms, grace_until_ms) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(key.agent_id.as_str())
    .bind(&key.jkt)
    .bind(&key.jwk)
    .bind(key.alg.as_str())
    .bind(key.created_at_ms)
    .bind(key.expires_at_ms)
    .bind(key.retired_at_ms)
    .bind(key.grace_until_ms)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(())
}

async fn select_agent_keys(
    conn: &mut PgConnection,
    agent: &AgentId,
) -> Result<Vec<AgentKey>, StoreError> {
    sqlx::query_as::<_, AgentKeyRow>(
        "SELECT agent_id, jkt, jwk, alg, created_at_ms, expires_at_ms, retired_at_ms, \
         grace_until_ms FROM agent_keys WHERE agent_id = $1 ORDER BY created_at_ms, seq",
    )
    .bind(agent.as_str())
    .fetch_all(&mut *conn)
    .await
    .map_err(db_err)?
    .into_iter()
    .map(AgentKeyRow::into_record)
    .collect()
}

async fn own_agent_row(
    conn: &mut PgConnection,
    issuer: &IssuerId,
    id: &AgentId,
) -> Result<AgentRow, StoreError> {
    sqlx::query_as::<_, AgentRow>(concat!(
        "SELECT ",
        agent_columns!(),
        " FROM agents WHERE id = $1 AND issuer_id = $2"
    ))
    .bind(id.as_str())
    .bind(issuer.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?
    .ok_or(StoreError::NotFound)
}

// ---- errors

/// Maps a sqlx error: unique violations are `Conflict` (by constraint name),
/// foreign-key violations `NotFound` (the row referred to does not exist), a full disk
/// `Full`, the database unable to work now (unreachable, shutting down, a standby, a
/// lost connection, a timeout, too many connections) `Unavailable`, a serialization
/// failure or deadlock `Unavailable` marked [`RETRYABLE`], anything else `Backend`.
/// Texts are for logs; they name the constraint or condition, never a bound value.
/// Listens on [`CHANGES_CHANNEL`] and bumps `wake` for every notification, until every
/// [`ChangeSignal`] is gone. A lost connection is re-opened by itself (with a pause
/// while the server stays away), then `wake` is bumped once more: what was notified
/// meanwhile was lost, and the reader catches up from the feed.
async fn listen_for_changes(
    connect: PgConnectOptions,
    target: String,
    wake: tokio::sync::watch::Sender<u64>,
) {
    let bump = || wake.send_modify(|n| *n = n.wrapping_add(1));
    // One connection, outside the main pool; `PgListener` re-opens it and listens
    // again when it is lost.
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(PROBE_TIMEOUT)
        .connect_lazy_with(connect);
    let mut listener: Option<sqlx::postgres::PgListener> = None;
    let mut failing = false;
    loop {
        let step = async {
            let l = match listener.as_mut() {
                Some(l) => l,
                None => {
                    let mut l = sqlx::postgres::PgListener::connect_with(&pool).await?;
                    l.listen(CHANGES_CHANNEL).await?;
                    // Listening from now on; what committed before is in the feed.
                    bump();
                    listener.insert(l)
                }
            };
            l.try_recv().await.map(|n| n.is_some())
        };
        let outcome = tokio::select! {
            _ = wake.closed() => return,
            outcome = step => outcome,
        };
        match outcome {
            Ok(true) => {
                if failing {
                    tracing::info!(target = %target, "listening for changes again");
                    failing = false;
                }
                bump();
            }
            // The connection was lost and re-opened: notifications may be lost.
            Ok(false) => bump(),
            Err(e) => {
                if !failing {
                    tracing::warn!(target = %target, error = %db_err(e), "cannot listen for changes; retrying (periodic refreshes meanwhile)");
                    failing = true;
                }
                listener = None;
                tokio::time::sleep(LISTEN_RETRY).await;
            }
        }
    }
}

pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    match &e {
        // Positions handed out under the log head: taken twice is a bug, not a
        // client's conflict.
        sqlx::Error::Database(db)
            if db.is_unique_violation()
                && matches!(
                    db.constraint(),
                    Some("audit_log_pkey" | "changes_pkey" | "agents_by_issuer_list_pos")
                ) =>
        {
            StoreError::Backend(e.to_string())
        }
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(conflict_kind(db.as_ref()))
        }
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        sqlx::Error::Database(db) => {
            let code = db.code().map(|c| c.into_owned()).unwrap_or_default();
            match code.as_str() {
                // serialization_failure, deadlock_detected: run the transaction again.
                "40001" | "40P01" => StoreError::Unavailable(format!("{RETRYABLE}: {e}")),
                // query_canceled: our statement_timeout (or an operator's cancel).
                "57014" => StoreError::Unavailable(format!(
                    "statement timeout: the database did not finish a statement in time ({e})"
                )),
                // disk_full
                "53100" => StoreError::Full(e.to_string()),
                _ if unavailable_class(&code) => StoreError::Unavailable(e.to_string()),
                _ => StoreError::Backend(e.to_string()),
            }
        }
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::Protocol(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Backend(e.to_string()),
    }
}

/// SQLSTATEs that say the database cannot take the operation now, not that it is
/// wrong: connection exceptions (08), insufficient resources (53), operator
/// intervention (57: shutdown, crash, cannot connect now), lock not available (55P03),
/// a read-only transaction on a standby (25006), an idle transaction ended (25P03).
fn unavailable_class(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || code.starts_with("57")
        || matches!(code, "55P03" | "25006" | "25P03")
}

/// The rule a unique violation broke, by the constraint's name
/// (`migrations/postgres/0001_initial.sql` names them).
fn conflict_kind(db: &dyn DatabaseError) -> ConflictKind {
    match db.constraint().unwrap_or("") {
        "issuers_name_key_unique" | "issuers_name_unique" => ConflictKind::IssuerNameTaken,
        "receivers_name_unique" => ConflictKind::ReceiverNameTaken,
        "receiver_audiences_pkey" => ConflictKind::AudienceTaken,
        "idempotency_pkey" => ConflictKind::IdempotencyKeyUsed,
        "signing_keys_one_active" => ConflictKind::AnotherActiveKey,
        "issuer_keys_pkey" => ConflictKind::IssuerKeyRegistered,
        "issuer_keys_alias" => ConflictKind::IssuerKeyAliasTaken,
        "issuer_domains_domain_unique" => ConflictKind::DomainTaken,
        "organisations_name_key" => ConflictKind::OrgNameTaken,
        // Ids (issuers, receivers, agents, tokens, receipts, api keys, signing keys).
        _ => ConflictKind::IdTaken,
    }
}

// ---- organisations, people and sessions (issue 18): helpers inside a transaction

async fn insert_invitation(
    tx: &mut Transaction<'static, Postgres>,
    invitation: &Invitation,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO invitations (token_hash, org_id, email, role, created_at_ms, expires_at_ms) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(invitation.token_hash.as_slice())
    .bind(invitation.org_id.as_str())
    .bind(&invitation.email)
    .bind(invitation.role.as_str())
    .bind(invitation.created_at_ms)
    .bind(invitation.expires_at_ms)
    .execute(&mut **tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// A member's role (`NotFound` if not a member).
async fn member_role(
    tx: &mut Transaction<'static, Postgres>,
    org: &OrgId,
    person: &PersonId,
) -> Result<Role, StoreError> {
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM memberships WHERE org_id = $1 AND person_id = $2")
            .bind(org.as_str())
            .bind(person.as_str())
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err)?;
    let role = role.ok_or(StoreError::NotFound)?;
    Role::parse(&role).ok_or_else(|| StoreError::Backend(format!("stored role {role}")))
}

/// How many owners an organisation has.
async fn owners(tx: &mut Transaction<'static, Postgres>, org: &OrgId) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE org_id = $1 AND role = 'owner'")
        .bind(org.as_str())
        .fetch_one(&mut **tx)
        .await
        .map_err(db_err)
}

/// Whether a key with this key's public id (its hash's first 8 bytes) exists.
async fn prefix_taken(conn: &mut PgConnection, hash: &ApiKeyHash) -> Result<bool, StoreError> {
    let (low, high) = rows::key_prefix_range(hash);
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM api_keys WHERE hash >= $1 AND hash <= $2)")
        .bind(low.as_slice())
        .bind(high.as_slice())
        .fetch_one(conn)
        .await
        .map_err(db_err)
}

/// Decides and sets a new key's inherited limit ([`InheritedLimit`]) in the caller's
/// write transaction, from the settings stored now (the log head, which every setting
/// change takes first, is held): the audit entries to append (`audit`, then the
/// limit's own if one was set).
async fn inherit_limit(
    conn: &mut PgConnection,
    limit: Option<&InheritedLimit>,
    now_ms: i64,
    audit: &AuditRecord,
) -> Result<Vec<AuditRecord>, StoreError> {
    let mut audits = vec![audit.clone()];
    let Some(limit) = limit else {
        return Ok(audits);
    };
    let t = rows::RATE_LIMIT_SETTINGS;
    let mut stored = Vec::with_capacity(limit.from.len());
    for name in &limit.from {
        let value: Option<String> = sqlx::query_scalar(safe_sql(format!(
            "SELECT {} FROM {} WHERE {} = $1",
            t.value, t.table, t.key
        )))
        .bind(name)
        .fetch_optional(&mut *conn)
        .await
        .map_err(db_err)?;
        stored.push(value);
    }
    if let Some((value, entry)) = (limit.decide)(&stored)?
        && set_named_value(conn, t, &limit.name, Some(&value), now_ms).await?
    {
        audits.push(entry);
    }
    Ok(audits)
}

/// Sets `key`'s value in a [`rows::NamedValues`] table (`None`: removes it) unless it
/// is that already: whether it changed. Inside the caller's audited write, which
/// appends its entry only on a change.
async fn set_named_value(
    conn: &mut PgConnection,
    t: rows::NamedValues,
    key: &str,
    value: Option<&str>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let current: Option<String> = sqlx::query_scalar(safe_sql(format!(
        "SELECT {} FROM {} WHERE {} = $1",
        t.value, t.table, t.key
    )))
    .bind(key)
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?;
    if current.as_deref() == value {
        return Ok(false);
    }
    match value {
        Some(v) => sqlx::query(safe_sql(format!(
            "INSERT INTO {table} ({k}, {v}, set_at_ms) VALUES ($1, $2, $3) \
             ON CONFLICT ({k}) DO UPDATE SET {v} = EXCLUDED.{v}, set_at_ms = EXCLUDED.set_at_ms",
            table = t.table,
            k = t.key,
            v = t.value
        )))
        .bind(key)
        .bind(v)
        .bind(now_ms),
        None => sqlx::query(safe_sql(format!(
            "DELETE FROM {} WHERE {} = $1",
            t.table, t.key
        )))
        .bind(key),
    }
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(true)
}

/// `Conflict(MakerNotMember)` if `r` names a person as its maker (the root of its
/// chain) who is not a member of the organisation owning `r`'s identity any more.
/// Checked in the transaction that stores the key, under the log head's lock that
/// removing a member takes too: a key made while its maker is being removed is either
/// refused here or stored before the removal and then revoked with their keys.
async fn maker_still_member(conn: &mut PgConnection, r: &ApiKeyRecord) -> Result<(), StoreError> {
    let (Some(person), Some(owner)) = (r.created_by.as_deref(), r.owner.as_deref()) else {
        return Ok(());
    };
    if !person.starts_with("usr_") {
        return Ok(());
    }
    let member: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM memberships m WHERE m.person_id = $1 AND m.org_id IN \
         (SELECT org_id FROM org_issuers WHERE issuer_id = $2 \
          UNION SELECT org_id FROM org_receivers WHERE receiver_id = $2))",
    )
    .bind(person)
    .bind(owner)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    if member {
        Ok(())
    } else {
        Err(StoreError::Conflict(ConflictKind::MakerNotMember))
    }
}

/// Inserts a key row with every column of the record.
/// `Conflict(TooManyKeys)` if `r`'s identity (kind and owner) has more than `max` keys
/// live at `now_ms`, `r` included. Run after inserting `r`, under the log lock every
/// key write takes, so the count sees every committed key and no concurrent one.
async fn live_keys_within(
    conn: &mut PgConnection,
    r: &ApiKeyRecord,
    now_ms: i64,
    max: Option<u32>,
) -> Result<(), StoreError> {
    let Some(max) = max else {
        return Ok(());
    };
    let live: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM api_keys WHERE kind = $1 AND owner IS NOT DISTINCT FROM $2 \
         AND revoked_at_ms IS NULL AND (expires_at_ms IS NULL OR expires_at_ms > $3)",
    )
    .bind(r.kind.as_str())
    .bind(r.owner.as_deref())
    .bind(now_ms)
    .fetch_one(&mut *conn)
    .await
    .map_err(db_err)?;
    if live > i64::from(max) {
        return Err(StoreError::Conflict(ConflictKind::TooManyKeys));
    }
    Ok(())
}

async fn insert_api_key(conn: &mut PgConnection, r: &ApiKeyRecord) -> Result<(), StoreError> {
    sqlx::query(concat!(
        "INSERT INTO api_keys (",
        api_key_columns!(),
        ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
    ))
    .bind(r.hash.0.as_slice())
    .bind(r.kind.as_str())
    .bind(r.owner.as_deref())
    .bind(r.created_at_ms)
    .bind(&r.name)
    .bind(rows::scopes_column(&r.scopes))
    .bind(r.expires_at_ms)
    .bind(r.created_by.as_deref())
    .bind(r.last_used_at_ms)
    .bind(r.revoked_at_ms)
    .bind(r.rotated_from.as_deref())
    .execute(conn)
    .await
    .map_err(db_err)?;
    Ok(())
}
