//! The embedded backend: one SQLite file, `<data_dir>/bonafide.db`, in WAL mode.
//!
//! SQLite allows one writer at a time. Writes therefore go through a pool of exactly
//! one connection (and the ledger's transactions through the ledger writer, `writer`,
//! a second connection behind the same write gate), and every multi-statement write
//! is a `BEGIN IMMEDIATE` transaction:
//! concurrent callers queue on the pool instead of failing with `SQLITE_BUSY`, and no
//! transaction ever upgrades from a read lock to a write lock (the one case SQLite's
//! busy handler cannot wait out). Reads use a separate small pool; WAL lets them run
//! beside the writer. Another process writing the same file (say, the CLI while a
//! server runs) waits up to [`BUSY_TIMEOUT`].
//!
//! The file holds the registry's private signing keys: the data directory is created
//! mode 0700 and the database files are kept mode 0600 (Unix).
//!
//! A full disk is survived. When a write finds no space (or an I/O error), SQLite may
//! roll the whole transaction back by itself; sqlx's `ROLLBACK` then fails and its
//! connection still counts itself inside a transaction, refusing every later `BEGIN`.
//! So the writer is checked each time it is handed out, and one still inside a
//! transaction is closed (closing rolls back whatever SQLite still had open) and a new
//! one opened: writes resume by themselves once space is back. Such failures are
//! [`StoreError::Full`] or [`StoreError::Unavailable`], and the latest one is kept for
//! [`Store::writable`] until a commit succeeds or a probe of the data dir shows space.
//!
//! Architecture invariant: SQL stays in this file, `sqlite/writer.rs` and
//! `migrations/sqlite/`.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bonafide_core::apikey::{ApiKeyHash, KeyKind};
use bonafide_core::ids::{AgentId, IssuerId, ReceiptId, ReceiverId, TokenId};
use bonafide_core::merkle::Hash;
use bonafide_core::names;
use bonafide_core::policy::Decimal;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, Sqlite, SqliteConnection, SqlitePool, Transaction};

use crate::ConflictKind;
use crate::accounts::{
    InvitationRow, MembershipRow, OrgRow, PersonRow, RefreshRow, SecurityEventRow, SessionRow,
    person_columns, session_columns,
};
use crate::ledger;
use crate::log;
use crate::rows::{self, *};
use crate::{
    Agent, AgentKey, AgentStatus, ApiKeyRecord, AuditRecord, AuditRow, BudgetKey, Change,
    ChangeFeed, ChangePosition, CheckpointRecord, Cursor, DecisionItem, DecisionOutcome,
    DelegationRecord, Issuer, IssuerKey, KeyState, ListShape, LogKeyRecord, Page, PolicyRevocation,
    PrivateKeySlot, PublishedStatusList, ReceiptKeyRecord, ReceiptRecord, Receiver, Reseal,
    Revocations, SigningKeyRecord, StatusEntry, StatusEntryRow, StatusListRecord, StatusSlot,
    StatusSubject, Store, StoreError, TokenRecord,
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

/// Name of the database file inside the data directory.
const DB_FILE: &str = "bonafide.db";
/// How long a statement waits for another process's write lock before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Read connections. Reads are short (point lookups, one page), so a few suffice.
const READERS: u32 = 4;
/// Largest page `list_agents` returns, whatever the caller asks.
const MAX_PAGE: u32 = 1000;
/// Audit rows per multi-row `INSERT` (7 bound values each, well under SQLite's limit).
const AUDIT_ROWS_PER_INSERT: usize = 256;
/// Prepared statements each writer keeps. Batch statements are written for row counts
/// rounded up to a power of two ([`padded_values_sql`], [`padded_in_list_sql`]): at
/// most ten texts per statement, all of which stay prepared (~2 MB for the largest
/// ones); sqlx's default of 100 prepared a batch's statements again and again.
const WRITER_STATEMENTS: usize = 256;
/// Bound values per `IN (…)` list when reading stored hashes or ranges.
const MAX_IN_LIST: usize = 512;
/// Idempotency records deleted per purge transaction.
const PURGE_CHUNK: i64 = 5_000;
/// Sessions deleted per transaction by the purge (each with its refresh tokens).
const SESSION_PURGE_CHUNK: i64 = 500;
/// A session `s` that ended before the time bound as `?1`: revoked then, or expired
/// then with every refresh token of its family expired then too. Nothing of it can
/// be used again (a refresh is refused, its access tokens are refused once their
/// session is: see `Store::session`), so it may be deleted with its tokens.
const SESSION_ENDED: &str = "(s.revoked_at_ms < ?1 OR (s.expires_at_ms < ?1 AND NOT EXISTS \
     (SELECT 1 FROM refresh_tokens r WHERE r.session_id = s.id AND r.expires_at_ms >= ?1)))";
/// Largest range `audit_entries` reads at once, whatever the caller asks.
const MAX_AUDIT_RANGE: u64 = 10_000;
/// Receipt and idempotency rows per multi-row `INSERT` (6 bound values each).
const DECISION_ROWS_PER_INSERT: usize = 256;
/// How long a writer waits for the other at the store's write gate before the write
/// fails `Unavailable` (and `writable` says so): what sqlx's pool waited for its one
/// connection before the gate existed.
const GATE_WAIT: Duration = Duration::from_secs(30);
/// While writes fail, how often `writable` may probe the data dir for space.
const PROBE_EVERY: Duration = Duration::from_secs(1);
/// How long the probe waits for the database's write lock.
const PROBE_LOCK_WAIT: Duration = Duration::from_millis(200);
/// What the probe writes (and syncs, then deletes): room for a few transactions.
const PROBE_BYTES: usize = 64 * 1024;
/// The probe's file, next to the database.
const PROBE_FILE: &str = ".write-probe";

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

mod writer;

static MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");

/// The SQLite [`Store`]. Cheap to share behind an `Arc`; `Debug` shows only the path.
pub struct SqliteStore {
    path: PathBuf,
    /// Exactly one connection: the writer of everything but the ledger's
    /// transactions (see the module docs).
    writer: SqlitePool,
    /// The writer of decision batches and quota takes, on a thread of its own
    /// (`writer.rs`).
    ledger: writer::LedgerWriter,
    /// Taken by both writers before `BEGIN IMMEDIATE`: they queue here, in order,
    /// not in SQLite's busy handler.
    gate: Arc<tokio::sync::Mutex<()>>,
    /// Read-only use by convention: nothing but `SELECT` runs on it.
    reader: SqlitePool,
    /// The latest write's failure, while writes fail.
    health: Arc<WriteHealth>,
}

impl fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

/// Gives every issuer without a name key (those created before migration 0013) its
/// key, oldest first; an issuer whose name an older one holds keeps none (`OR
/// IGNORE`): it is then found by id only, never by name.
async fn fill_issuer_name_keys(writer: &SqlitePool) -> Result<(), StoreError> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT id, name FROM issuers WHERE name_key IS NULL ORDER BY created_at_ms, rowid",
    )
    .fetch_all(writer)
    .await
    .map_err(db_err)?;
    for (id, name) in rows {
        sqlx::query("UPDATE OR IGNORE issuers SET name_key = ? WHERE id = ?")
            .bind(names::issuer_name_key(&name))
            .bind(&id)
            .execute(writer)
            .await
            .map_err(db_err)?;
    }
    Ok(())
}

impl SqliteStore {
    /// Stores `key` in `state` (and appends `audit`) unless a key is in that state
    /// already (`false`): the first active key at start, the next key of a scheduled
    /// rotation. BEGIN IMMEDIATE holds the write lock from the check to the insert, so
    /// processes doing it at once on one file store one key.
    async fn insert_signing_key_unless(
        &self,
        state: KeyState,
        key: &SigningKeyRecord,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let held: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM signing_keys WHERE state = ? LIMIT 1")
                .bind(key_state_str(state))
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        if held.is_some() {
            tx.commit().await.map_err(db_err)?;
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_pem, state, created_at_ms, publish_until_s) \
             VALUES (?, ?, ?, ?, ?, NULL)",
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
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    /// Whether `<data_dir>/bonafide.db` exists.
    pub fn exists_in(data_dir: &Path) -> bool {
        data_dir.join(DB_FILE).is_file()
    }

    /// Opens (creating if missing) `<data_dir>/bonafide.db` and brings its schema up to
    /// date.
    ///
    /// A missing `data_dir` is created with mode 0700; an existing one is left as it is.
    /// The database file and its `-wal`/`-shm` companions are set to mode 0600.
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        create_private_dir(data_dir).await?;
        let path = data_dir.join(DB_FILE);
        create_private_file(&path).await?;

        let options = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .foreign_keys(true)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(BUSY_TIMEOUT);
        // Switching to WAL needs an exclusive lock the busy handler cannot wait for, so
        // only the writer asks; the mode is persistent, readers inherit it from the file.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            // SQLite connections do not drop like network ones; skip the ping.
            .test_before_acquire(false)
            // A writer still inside a transaction when it is handed out is one whose
            // COMMIT or ROLLBACK failed (see the module docs): it would refuse every
            // BEGIN from now on. The pool closes it and opens another.
            .before_acquire(|conn, _| {
                Box::pin(async move {
                    let stuck = conn.is_in_transaction();
                    if stuck {
                        tracing::warn!(
                            "the database writer is stuck in a failed transaction; reopening it"
                        );
                    }
                    Ok(!stuck)
                })
            })
            .connect_with(
                options
                    .clone()
                    .journal_mode(SqliteJournalMode::Wal)
                    // Its batch statements stay prepared (see WRITER_STATEMENTS):
                    // re-preparing them was a tenth of the writer thread's time
                    // under verify load.
                    .statement_cache_capacity(WRITER_STATEMENTS),
            )
            .await
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        MIGRATOR
            .run(&writer)
            .await
            .map_err(|e| StoreError::Backend(format!("migration failed: {e}")))?;
        fill_issuer_name_keys(&writer).await?;
        let reader = SqlitePoolOptions::new()
            .max_connections(READERS)
            .test_before_acquire(false)
            .connect_with(options)
            .await
            .map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;

        // WAL mode now exists on disk, so the companions exist too.
        for file in [
            path.clone(),
            companion(&path, "-wal"),
            companion(&path, "-shm"),
        ] {
            restrict_file(&file).await?;
        }
        let health = Arc::<WriteHealth>::default();
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        let ledger = writer::LedgerWriter::start(&path, Arc::clone(&health), Arc::clone(&gate))?;
        tracing::debug!(path = %path.display(), "sqlite store open");
        Ok(SqliteStore {
            path,
            writer,
            ledger,
            gate,
            reader,
            health,
        })
    }

    /// A reading connection (for [`crate::copy`]).
    pub(crate) async fn reader_connection(
        &self,
    ) -> Result<sqlx::pool::PoolConnection<Sqlite>, StoreError> {
        self.reader.acquire().await.map_err(db_err)
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Closes every connection, waiting for those in use. The writer closes last, so
    /// SQLite checkpoints the WAL into the main file.
    pub async fn close(&self) {
        self.reader.close().await;
        self.ledger.close().await;
        self.writer.close().await;
    }

    /// Starts a write transaction holding SQLite's write lock from its first statement.
    async fn write_tx(&self) -> Result<WriteTx<'_>, StoreError> {
        let gate = self.enter_gate().await?;
        match self.writer.begin_with("BEGIN IMMEDIATE").await {
            Ok(tx) => Ok(WriteTx {
                tx: Some(tx),
                gate: Some(gate),
                health: &self.health,
            }),
            Err(e) => {
                let e = db_err(e);
                self.health.failed(&e);
                Err(e)
            }
        }
    }

    /// The store's write gate, waited for at most [`GATE_WAIT`]: a writer stuck
    /// behind it (a hung disk) fails `Unavailable` and is recorded for `writable`.
    async fn enter_gate(&self) -> Result<tokio::sync::OwnedMutexGuard<()>, StoreError> {
        match tokio::time::timeout(GATE_WAIT, Arc::clone(&self.gate).lock_owned()).await {
            Ok(gate) => Ok(gate),
            Err(_) => {
                let e = StoreError::Unavailable(format!(
                    "no write finished within {} s",
                    GATE_WAIT.as_secs()
                ));
                self.health.failed(&e);
                Err(e)
            }
        }
    }

    /// Writes, syncs and deletes [`PROBE_BYTES`] in the data dir: whether the file
    /// system takes writes again.
    async fn probe(&self) -> Result<(), StoreError> {
        use tokio::io::AsyncWriteExt;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        let probe = dir.join(PROBE_FILE);
        let written = async {
            let mut file = tokio::fs::File::create(&probe).await?;
            file.write_all(&vec![0u8; PROBE_BYTES]).await?;
            file.sync_all().await
        }
        .await;
        let removed = tokio::fs::remove_file(&probe).await;
        match written.and(removed) {
            // The directory takes writes; the database must too: another process may
            // hold its write lock (a backup, a stray `sqlite3` shell). The lock is
            // taken and rolled back on a connection of the probe's own, never the
            // pool's writer: a health request cancelled halfway must not leave the
            // writer inside a transaction or with another busy timeout. Briefly: a
            // health check must answer well before a load balancer gives up.
            Ok(()) => {
                let options = SqliteConnectOptions::new()
                    .filename(&self.path)
                    .busy_timeout(PROBE_LOCK_WAIT);
                let mut conn = SqliteConnection::connect_with(&options)
                    .await
                    .map_err(db_err)?;
                let locked = match sqlx::query("BEGIN IMMEDIATE").execute(&mut conn).await {
                    Ok(_) => sqlx::query("ROLLBACK").execute(&mut conn).await.map(drop),
                    Err(e) => Err(e),
                };
                // Closing ends any transaction the probe still had.
                let _ = conn.close().await;
                locked.map_err(db_err)
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
                ) =>
            {
                Err(StoreError::Full(format!("probe {}: {e}", probe.display())))
            }
            Err(e) => Err(StoreError::Unavailable(format!(
                "probe {}: {e}",
                probe.display()
            ))),
        }
    }
}

/// A write transaction on the one writer. Statements run on it as on the connection;
/// [`WriteTx::commit`] records the outcome for [`Store::writable`], and so does a
/// drop without a commit when the statement that ended it failed for space or I/O.
struct WriteTx<'a> {
    /// `None` only inside `commit` and `drop`.
    tx: Option<Transaction<'static, Sqlite>>,
    /// The store's write gate, held until the transaction has ended (so after a
    /// drop's rollback too).
    gate: Option<tokio::sync::OwnedMutexGuard<()>>,
    health: &'a Arc<WriteHealth>,
}

impl WriteTx<'_> {
    async fn commit(mut self) -> Result<(), sqlx::Error> {
        let Some(tx) = self.tx.take() else {
            // Cannot happen: only `commit` (which takes `self`) and `drop` empty it.
            return Ok(());
        };
        match tx.commit().await {
            Ok(()) => {
                self.health.committed();
                Ok(())
            }
            Err(e) => {
                self.health.failed(&db_err_ref(&e));
                Err(e)
            }
        }
    }
}

impl Drop for WriteTx<'_> {
    /// Dropped without a commit: an error ended the transaction (or its caller went
    /// away). The connection's last failed call says which; if it was for space or
    /// I/O, the store cannot write. Asking takes a round trip to the connection's
    /// thread, so a task does it, then drops the transaction (which rolls it back);
    /// the writer is not handed out again before that.
    fn drop(&mut self) {
        let Some(mut tx) = self.tx.take() else {
            return;
        };
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let health = Arc::clone(self.health);
        let gate = self.gate.take();
        runtime.spawn(async move {
            if let Ok(mut handle) = tx.lock_handle().await
                && let Some(e) = handle.last_error()
            {
                health.failed(&db_err(sqlx::Error::Database(Box::new(e))));
            }
            // Rolled back before the gate opens: the other writer's `BEGIN` must not
            // meet this transaction's lock. A rollback that fails leaves the
            // connection to the pool's check (see the module docs).
            let _ = tx.rollback().await;
            drop(gate);
        });
    }
}

impl std::ops::Deref for WriteTx<'_> {
    type Target = SqliteConnection;
    fn deref(&self) -> &SqliteConnection {
        match &self.tx {
            Some(tx) => tx,
            None => unreachable!("a WriteTx is used only before its commit or drop"),
        }
    }
}

impl std::ops::DerefMut for WriteTx<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        match &mut self.tx {
            Some(tx) => tx,
            None => unreachable!("a WriteTx is used only before its commit or drop"),
        }
    }
}

/// The latest write failure for want of space or I/O, until a commit succeeds or a
/// probe shows the data dir takes writes again.
#[derive(Debug, Default)]
struct WriteHealth {
    failing: std::sync::Mutex<Option<Failing>>,
}

/// The one clock the store reads: a monotonic `Instant` pacing the health probe of a
/// failing data dir (at most one probe per [`PROBE_EVERY`]). It is no time of the
/// registry's: nothing stored or decided depends on it, which is why it is not passed
/// in like `now_ms`.
#[derive(Debug)]
struct Failing {
    error: StoreError,
    /// When it was recorded: a probe clears only the failure it was run for.
    since: Instant,
    /// No probe before this.
    next_probe: Instant,
}

impl WriteHealth {
    fn lock(&self) -> std::sync::MutexGuard<'_, Option<Failing>> {
        // The guarded value is always whole: a panic elsewhere cannot leave it torn.
        self.failing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn committed(&self) {
        if let Some(f) = self.lock().take() {
            tracing::info!(after = %f.error, "the store writes again");
        }
    }

    /// Records `e` if it says the store cannot write (space, I/O); anything else
    /// (a conflict, a missing row) says nothing about the store.
    fn failed(&self, e: &StoreError) {
        if !matches!(e, StoreError::Full(_) | StoreError::Unavailable(_)) {
            return;
        }
        let now = Instant::now();
        let mut failing = self.lock();
        if failing.is_none() {
            tracing::warn!(error = %e, "the store cannot write");
        }
        *failing = Some(Failing {
            error: e.clone(),
            since: now,
            next_probe: now + PROBE_EVERY,
        });
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn add_admin_key(
        &self,
        hash: &ApiKeyHash,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        // A key revoked before stays revoked: supplying it again is refused.
        let revoked: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM api_keys WHERE hash = ? AND revoked_at_ms IS NOT NULL)",
        )
        .bind(hash.0.as_slice())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        if revoked {
            return Err(StoreError::Conflict(ConflictKind::KeyRevoked));
        }
        let added = sqlx::query(
            "INSERT OR IGNORE INTO api_keys (hash, kind, owner, created_at_ms, name, created_by) \
             VALUES (?, ?, NULL, ?, 'bootstrap admin key', 'bootstrap')",
        )
        .bind(hash.0.as_slice())
        .bind(KeyKind::Admin.as_str())
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        log.append(&mut *tx, audited(added > 0, audit), &[]).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn has_admin_key(&self) -> Result<bool, StoreError> {
        sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM api_keys WHERE kind = ? AND revoked_at_ms IS NULL)",
        )
        .bind(KeyKind::Admin.as_str())
        .fetch_one(&self.reader)
        .await
        .map_err(db_err)
    }

    async fn admin_keys(&self) -> Result<Vec<ApiKeyRecord>, StoreError> {
        sqlx::query_as::<_, ApiKeyRow>(
            "SELECT hash, kind, owner, created_at_ms, name, scopes, expires_at_ms, created_by, \
             last_used_at_ms, revoked_at_ms, rotated_from FROM api_keys \
             WHERE kind = ? AND revoked_at_ms IS NULL ORDER BY created_at_ms, hash",
        )
        .bind(KeyKind::Admin.as_str())
        .fetch_all(&self.reader)
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
        // One writer: the count and the delete see the same keys.
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let admins: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM api_keys WHERE kind = ? AND revoked_at_ms IS NULL \
             AND (expires_at_ms IS NULL OR expires_at_ms > ?)",
        )
        .bind(KeyKind::Admin.as_str())
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let exists: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM api_keys \
             WHERE hash = ? AND kind = ? AND revoked_at_ms IS NULL)",
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
        sqlx::query("UPDATE api_keys SET revoked_at_ms = ? WHERE hash = ? AND kind = ?")
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
        tx.commit().await.map_err(db_err)
    }

    async fn api_key(&self, hash: &ApiKeyHash) -> Result<Option<ApiKeyRecord>, StoreError> {
        sqlx::query_as::<_, ApiKeyRow>(
            "SELECT hash, kind, owner, created_at_ms, name, scopes, expires_at_ms, created_by, \
             last_used_at_ms, revoked_at_ms, rotated_from FROM api_keys \
             WHERE hash = ? AND revoked_at_ms IS NULL",
        )
        .bind(hash.0.as_slice())
        .fetch_optional(&self.reader)
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let (low, high) = rows::key_prefix_range(&record.hash);
        let taken: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM api_keys WHERE hash >= ? AND hash <= ?)",
        )
        .bind(low.as_slice())
        .bind(high.as_slice())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        if taken {
            return Err(StoreError::Conflict(ConflictKind::IdTaken));
        }
        insert_api_key(&mut tx, record).await?;
        live_keys_within(&mut tx, record, record.created_at_ms, max_live).await?;
        maker_still_member(&mut tx, record).await?;
        let audits = inherit_limit(&mut tx, limit, record.created_at_ms, audit).await?;
        log.append(&mut *tx, &audits, &[]).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn api_key_by_prefix(
        &self,
        prefix: &[u8; 8],
    ) -> Result<Option<ApiKeyRecord>, StoreError> {
        let (low, high) = rows::prefix_range(prefix);
        sqlx::query_as::<_, ApiKeyRow>(concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE hash >= ? AND hash <= ? ORDER BY hash LIMIT 1"
        ))
        .bind(low.as_slice())
        .bind(high.as_slice())
        .fetch_optional(&self.reader)
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
            " FROM api_keys WHERE kind = ? AND owner IS ? ORDER BY created_at_ms, hash"
        ))
        .bind(kind.as_str())
        .bind(owner)
        .fetch_all(&self.reader)
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
             ORDER BY k.created_at_ms, k.hash LIMIT ?"
        ))
        .bind(i64::from(limit))
        .fetch_all(&self.reader)
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
            " FROM api_keys WHERE created_by = ? AND revoked_at_ms IS NULL \
             ORDER BY created_at_ms, hash"
        ))
        .bind(created_by)
        .fetch_all(&self.reader)
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let record = sqlx::query_as::<_, ApiKeyRow>(concat!(
            "SELECT ",
            api_key_columns!(),
            " FROM api_keys WHERE hash = ?"
        ))
        .bind(old.0.as_slice())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?
        .map(ApiKeyRow::into_record)
        .transpose()?
        .filter(|r| r.live_at(now_ms))
        .ok_or(StoreError::NotFound)?;
        let (low, high) = rows::key_prefix_range(&new.hash);
        let taken: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM api_keys WHERE hash >= ? AND hash <= ?)",
        )
        .bind(low.as_slice())
        .bind(high.as_slice())
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        if taken {
            return Err(StoreError::Conflict(ConflictKind::IdTaken));
        }
        let expires = record
            .expires_at_ms
            .map_or(old_expires_at_ms, |e| e.min(old_expires_at_ms));
        sqlx::query("UPDATE api_keys SET expires_at_ms = ? WHERE hash = ?")
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
        tx.commit().await.map_err(db_err)?;
        Ok(ApiKeyRecord {
            expires_at_ms: Some(expires),
            ..record
        })
    }

    async fn touch_api_key(&self, hash: &ApiKeyHash, now_ms: i64) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE api_keys SET last_used_at_ms = ? WHERE hash = ? \
             AND (last_used_at_ms IS NULL OR last_used_at_ms < ?)",
        )
        .bind(now_ms)
        .bind(hash.0.as_slice())
        .bind(now_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn create_issuer(
        &self,
        issuer: &Issuer,
        key: &ApiKeyHash,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        sqlx::query("INSERT INTO issuers (id, name, name_key, created_at_ms) VALUES (?, ?, ?, ?)")
            .bind(issuer.id.as_str())
            .bind(&issuer.name)
            .bind(names::issuer_name_key(&issuer.name))
            .bind(issuer.created_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("INSERT INTO api_keys (hash, kind, owner, created_at_ms, created_by) VALUES (?, ?, ?, ?, 'admin')")
            .bind(key.0.as_slice())
            .bind(KeyKind::Issuer.as_str())
            .bind(issuer.id.as_str())
            .bind(issuer.created_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        log.append(&mut *tx, std::slice::from_ref(audit), &[])
            .await?;
        tx.commit().await.map_err(db_err)
    }

    async fn issuer(&self, id: &IssuerId) -> Result<Option<Issuer>, StoreError> {
        sqlx::query_as::<_, IssuerRow>("SELECT id, name, created_at_ms FROM issuers WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?
            .map(IssuerRow::into_issuer)
            .transpose()
    }

    async fn issuer_by_name(&self, name: &str) -> Result<Option<Issuer>, StoreError> {
        sqlx::query_as::<_, IssuerRow>(
            "SELECT id, name, created_at_ms FROM issuers WHERE name_key = ?",
        )
        .bind(names::issuer_name_key(name))
        .fetch_optional(&self.reader)
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        sqlx::query("INSERT INTO receivers (id, name, created_at_ms) VALUES (?, ?, ?)")
            .bind(receiver.id.as_str())
            .bind(&receiver.name)
            .bind(receiver.created_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("INSERT INTO api_keys (hash, kind, owner, created_at_ms, created_by) VALUES (?, ?, ?, ?, 'admin')")
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
        tx.commit().await.map_err(db_err)
    }

    async fn receiver(&self, id: &ReceiverId) -> Result<Option<Receiver>, StoreError> {
        let row = sqlx::query_as::<_, ReceiverRow>(
            "SELECT id, name, created_at_ms FROM receivers WHERE id = ?",
        )
        .bind(id.as_str())
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?;
        let Some(row) = row else { return Ok(None) };
        let mut receiver = row.into_receiver()?;
        receiver.audiences = sqlx::query_scalar::<_, String>(
            "SELECT audience FROM receiver_audiences WHERE receiver_id = ? ORDER BY position",
        )
        .bind(id.as_str())
        .fetch_all(&self.reader)
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let known = sqlx::query_scalar::<_, i64>("SELECT 1 FROM receivers WHERE id = ?")
            .bind(id.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if known.is_none() {
            return Err(StoreError::NotFound);
        }
        sqlx::query("DELETE FROM receiver_audiences WHERE receiver_id = ?")
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
        tx.commit().await.map_err(db_err)
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO agents (id, issuer_id, name, description, scopes, audience, \
             token_ttl_s, status, created_at_ms, revoked_at_ms, revoke_reason, policy, user_ref, \
             suspended_at_ms, suspend_reason, allow_bearer_tokens, list_pos) \
             VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(agent.id.as_str())
        .bind(agent.issuer_id.as_str())
        .bind(&agent.name)
        .bind(agent.description.as_deref())
        .bind(scopes)
        .bind(audience)
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
        // Its place in listings: the index its registration's entry gets (commit
        // order, see `0016_agent_commit_order.sql`).
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
        tx.commit().await.map_err(db_err)
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let row = own_agent_row(&mut tx, issuer, agent).await?;
        if row.status == AgentStatus::Revoked.as_str() {
            return Err(StoreError::Conflict(ConflictKind::AgentRevoked));
        }
        let known: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM agent_keys WHERE agent_id = ? AND jkt = ?")
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
            "UPDATE agent_keys SET grace_until_ms = ? \
             WHERE agent_id = ? AND retired_at_ms IS NOT NULL AND grace_until_ms > ?",
        )
        .bind(grace_until_ms)
        .bind(agent.as_str())
        .bind(grace_until_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "UPDATE agent_keys SET retired_at_ms = ?, grace_until_ms = ? \
             WHERE agent_id = ? AND retired_at_ms IS NULL",
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
        let keys = select_agent_keys(&mut tx, agent).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(keys)
    }

    async fn agent_keys(&self, agent: &AgentId) -> Result<Vec<AgentKey>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db_err)?;
        select_agent_keys(&mut conn, agent).await
    }

    async fn purge_action_nonces(&self, now_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM action_nonces WHERE expires_at_ms <= ?")
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(done.rows_affected())
    }

    async fn agent(&self, id: &AgentId) -> Result<Option<Agent>, StoreError> {
        sqlx::query_as::<_, AgentRow>(concat!(
            "SELECT ",
            agent_columns!(),
            " FROM agents WHERE id = ?"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.reader)
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
            None => i64::MIN,
            Some(cursor) => {
                let id = cursor.agent().ok_or(StoreError::NotFound)?;
                let pos: Option<Option<i64>> = sqlx::query_scalar(
                    "SELECT list_pos FROM agents WHERE id = ? AND issuer_id = ?",
                )
                .bind(id.as_str())
                .bind(issuer.as_str())
                .fetch_optional(&self.reader)
                .await
                .map_err(db_err)?;
                pos.ok_or(StoreError::NotFound)?
                    .ok_or_else(|| corrupt("agent list position"))?
            }
        };
        // One row more than asked tells whether another page follows.
        let mut rows = sqlx::query_as::<_, AgentRow>(concat!(
            "SELECT ",
            agent_columns!(),
            " FROM agents WHERE issuer_id = ? AND list_pos > ? ORDER BY list_pos LIMIT ?"
        ))
        .bind(issuer.as_str())
        .bind(after_pos)
        .bind(i64::from(limit) + 1)
        .fetch_all(&self.reader)
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let mut row = own_agent_row(&mut tx, issuer, id).await?;
        // Active or suspended (both `active` in the `status` column).
        let was_active = row.status == AgentStatus::Active.as_str();
        if was_active {
            // Revocation ends a suspension: the agent is revoked, no longer suspended.
            sqlx::query(
                "UPDATE agents SET status = ?, revoked_at_ms = ?, revoke_reason = ?, \
                 suspended_at_ms = NULL, suspend_reason = NULL WHERE seq = ?",
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
            "UPDATE tokens SET revoked_at_ms = ? WHERE agent_id = ? AND revoked_at_ms IS NULL",
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
        tx.commit().await.map_err(db_err)?;
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let mut row = own_agent_row(&mut tx, issuer, id).await?;
        if row.status != AgentStatus::Active.as_str() {
            return Err(StoreError::Conflict(ConflictKind::AgentRevoked));
        }
        // Suspending twice keeps the first suspension (time and reason).
        let changed = row.suspended_at_ms.is_none();
        if changed {
            sqlx::query("UPDATE agents SET suspended_at_ms = ?, suspend_reason = ? WHERE seq = ?")
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
        tx.commit().await.map_err(db_err)?;
        row.into_agent()
    }

    async fn reactivate_agent(
        &self,
        issuer: &IssuerId,
        id: &AgentId,
        audit: &AuditRecord,
    ) -> Result<Agent, StoreError> {
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let mut row = own_agent_row(&mut tx, issuer, id).await?;
        if row.status != AgentStatus::Active.as_str() {
            return Err(StoreError::Conflict(ConflictKind::AgentRevoked));
        }
        let changed = row.suspended_at_ms.is_some();
        if changed {
            sqlx::query(
                "UPDATE agents SET suspended_at_ms = NULL, suspend_reason = NULL WHERE seq = ?",
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
        tx.commit().await.map_err(db_err)?;
        row.into_agent()
    }

    async fn suspended_agents(&self) -> Result<Vec<AgentId>, StoreError> {
        let ids: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM agents WHERE suspended_at_ms IS NOT NULL AND status = ? ORDER BY seq",
        )
        .bind(AgentStatus::Active.as_str())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        ids.iter().map(|id| parse_id(id, "agent id")).collect()
    }

    async fn record_token(
        &self,
        token: &TokenRecord,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let extended = insert_token(&mut tx, token).await?;
        let changes = if extended {
            vec![Change::SigningKeysChanged]
        } else {
            Vec::new()
        };
        log.append(&mut *tx, std::slice::from_ref(audit), &changes)
            .await?;
        tx.commit().await.map_err(db_err)
    }

    async fn token(&self, jti: &TokenId) -> Result<Option<TokenRecord>, StoreError> {
        sqlx::query_as::<_, TokenRow>(concat!(
            "SELECT ",
            token_columns!(),
            " FROM tokens WHERE jti = ?"
        ))
        .bind(jti.as_str())
        .fetch_optional(&self.reader)
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let extended = insert_token(&mut tx, token).await?;
        sqlx::query(
            "INSERT INTO delegations \
             (jti, parent_jti, actor_id, ancestor_policies, ancestor_keys, created_at_ms) \
             VALUES (?, ?, ?, ?, ?, ?)",
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
        let changes = if extended {
            vec![Change::SigningKeysChanged]
        } else {
            Vec::new()
        };
        log.append(&mut *tx, std::slice::from_ref(audit), &changes)
            .await?;
        tx.commit().await.map_err(db_err)
    }

    async fn delegation(&self, jti: &TokenId) -> Result<Option<DelegationRecord>, StoreError> {
        let row: Option<(String, String, String, String, String, i64)> = sqlx::query_as(
            "SELECT jti, parent_jti, actor_id, ancestor_policies, ancestor_keys, created_at_ms \
             FROM delegations WHERE jti = ?",
        )
        .bind(jti.as_str())
        .fetch_optional(&self.reader)
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let changed = sqlx::query(
            "UPDATE tokens SET revoked_at_ms = ? \
             WHERE jti = ? AND issuer_id = ? AND revoked_at_ms IS NULL",
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
            " FROM tokens WHERE jti = ? AND issuer_id = ?"
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
        tx.commit().await.map_err(db_err)?;
        row.into_record()
    }

    async fn revocations(&self) -> Result<Revocations, StoreError> {
        // One read transaction: both lists come from the same snapshot.
        let mut tx = self.reader.begin().await.map_err(db_err)?;
        let agents: Vec<String> =
            sqlx::query_scalar("SELECT id FROM agents WHERE status = ? ORDER BY seq")
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
        let mut conn = self.reader.acquire().await.map_err(db_err)?;
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        // Unknown until now (the issuer signed it offline): record it. A jti stored
        // already (this issuer's or another's) is left as it is; the ownership check
        // below decides. The (agent, issuer) foreign key refuses another's agent.
        sqlx::query(
            "INSERT INTO tokens (jti, agent_id, issuer_id, kid, issued_at_s, expires_at_s, revoked_at_ms) \
             VALUES (?, ?, ?, ?, ?, ?, NULL) ON CONFLICT (jti) DO NOTHING",
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
            "UPDATE tokens SET revoked_at_ms = ? \
             WHERE jti = ? AND issuer_id = ? AND revoked_at_ms IS NULL",
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
            "UPDATE tokens SET expires_at_s = ? \
             WHERE jti = ? AND issuer_id = ? AND expires_at_s < ?",
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
            " FROM tokens WHERE jti = ? AND issuer_id = ?"
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
        tx.commit().await.map_err(db_err)?;
        row.into_record()
    }

    async fn revoke_policy(
        &self,
        issuer: &IssuerId,
        policy_id: &str,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<PolicyRevocation, StoreError> {
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        // First time only: a second revocation keeps the first row and appends
        // nothing. The issuer foreign key refuses an unknown issuer (`NotFound`).
        let inserted = sqlx::query(
            "INSERT INTO revoked_policies (issuer_id, policy_id, revoked_at_ms, revocation_id) \
                 VALUES (?, ?, ?, ?) ON CONFLICT (issuer_id, policy_id) DO NOTHING",
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
                 WHERE issuer_id = ? AND policy_id = ?",
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
        tx.commit().await.map_err(db_err)?;
        row.into_record()
    }

    async fn policy_revocation_by_id(
        &self,
        id: &TokenId,
    ) -> Result<Option<PolicyRevocation>, StoreError> {
        let indexed = sqlx::query_as::<_, PolicyRevocationRow>(
            "SELECT issuer_id, policy_id, revoked_at_ms FROM revoked_policies \
             WHERE revocation_id = ?",
        )
        .bind(id.as_str())
        .fetch_optional(&self.reader)
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
        .fetch_all(&self.reader)
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
             WHERE issuer_id = ? AND policy_id = ?",
        )
        .bind(issuer.as_str())
        .bind(policy_id)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .map(PolicyRevocationRow::into_record)
        .transpose()
    }

    async fn add_issuer_key(&self, key: &IssuerKey, audit: &AuditRecord) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO issuer_keys \
             (kid, issuer_id, alg, jwk, created_at_ms, revoked_at_ms, alias) \
             VALUES (?, ?, ?, ?, ?, ?, ?)",
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
        tx.commit().await.map_err(db_err)
    }

    async fn issuer_keys(&self, issuer: &IssuerId) -> Result<Vec<IssuerKey>, StoreError> {
        sqlx::query_as::<_, IssuerKeyRow>(concat!(
            "SELECT ",
            issuer_key_columns!(),
            " FROM issuer_keys WHERE issuer_id = ? ORDER BY created_at_ms, rowid"
        ))
        .bind(issuer.as_str())
        .fetch_all(&self.reader)
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
            " FROM issuer_keys ORDER BY rowid"
        ))
        .fetch_all(&self.reader)
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let changed = sqlx::query(
            "UPDATE issuer_keys SET revoked_at_ms = ? \
             WHERE kid = ? AND issuer_id = ? AND revoked_at_ms IS NULL",
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
            " FROM issuer_keys WHERE kid = ? AND issuer_id = ?"
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
        tx.commit().await.map_err(db_err)?;
        row.into_record()
    }

    async fn set_issuer_domain(
        &self,
        domain: &crate::IssuerDomain,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        // The key must still be the issuer's and unrevoked now, not only when the
        // JWKS was fetched.
        let live: Option<i64> = sqlx::query_scalar(
            "SELECT 1 FROM issuer_keys WHERE kid = ? AND issuer_id = ? AND revoked_at_ms IS NULL",
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
            "INSERT INTO issuer_domains (issuer_id, domain, kid, verified_at_ms) VALUES (?, ?, ?, ?) \
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
        tx.commit().await.map_err(db_err)
    }

    async fn issuer_domain(
        &self,
        issuer: &IssuerId,
    ) -> Result<Option<crate::IssuerDomain>, StoreError> {
        sqlx::query_as::<_, IssuerDomainRow>(
            "SELECT issuer_id, domain, kid, verified_at_ms FROM issuer_domains WHERE issuer_id = ?",
        )
        .bind(issuer.as_str())
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .map(IssuerDomainRow::into_record)
        .transpose()
    }

    async fn issuer_domains(&self) -> Result<Vec<crate::IssuerDomain>, StoreError> {
        sqlx::query_as::<_, IssuerDomainRow>(
            "SELECT issuer_id, domain, kid, verified_at_ms FROM issuer_domains ORDER BY rowid",
        )
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(IssuerDomainRow::into_record)
        .collect()
    }

    async fn signing_keys(&self) -> Result<Vec<SigningKeyRecord>, StoreError> {
        sqlx::query_as::<_, SigningKeyRow>(
            "SELECT kid, alg, private_pem, state, created_at_ms, publish_until_s \
             FROM signing_keys ORDER BY rowid",
        )
        .fetch_all(&self.reader)
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        sqlx::query(
            "UPDATE signing_keys SET state = ?, publish_until_s = COALESCE( \
                 (SELECT MAX(expires_at_s) FROM tokens WHERE tokens.kid = signing_keys.kid), ?) \
             WHERE state = ?",
        )
        .bind(key_state_str(KeyState::Retired))
        .bind(now_s)
        .bind(key_state_str(KeyState::Active))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO signing_keys (kid, alg, private_pem, state, created_at_ms, publish_until_s) \
             VALUES (?, ?, ?, ?, ?, NULL)",
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
        tx.commit().await.map_err(db_err)
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
        let mut tx = self.write_tx().await?;
        // The rows' old text must not survive in the file's free space: SQLite zeroes
        // what it frees while this is on (restored after), and the WAL holding the
        // old pages is truncated after the commit.
        let secure_delete: i64 = sqlx::query_scalar("PRAGMA secure_delete")
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("PRAGMA secure_delete = ON")
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let mut changed = 0;
        let keys: Vec<(String, String)> =
            sqlx::query_as("SELECT kid, private_pem FROM signing_keys ORDER BY rowid")
                .fetch_all(&mut *tx)
                .await
                .map_err(db_err)?;
        for (kid, text) in keys {
            let slot = PrivateKeySlot::SigningKey { kid: kid.clone() };
            if let Some(new) = reseal(&slot, &text)? {
                sqlx::query("UPDATE signing_keys SET private_pem = ? WHERE kid = ?")
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
            "SELECT id, totp_secret FROM people WHERE totp_secret IS NOT NULL ORDER BY id",
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db_err)?;
        for (person, text) in secrets {
            let slot = PrivateKeySlot::TotpSecret {
                person: person.clone(),
            };
            if let Some(new) = reseal(&slot, &text)? {
                sqlx::query("UPDATE people SET totp_secret = ? WHERE id = ?")
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
                "SELECT {column} FROM {table} WHERE id = 1"
            )))
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            if let Some(text) = text
                && let Some(new) = reseal(slot, &text)?
            {
                sqlx::query(safe_sql(format!(
                    "UPDATE {table} SET {column} = ? WHERE id = 1"
                )))
                .bind(new)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
                changed += 1;
            }
        }
        sqlx::query(if secure_delete != 0 {
            "PRAGMA secure_delete = ON"
        } else {
            "PRAGMA secure_delete = OFF"
        })
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        if changed > 0 {
            // Copies the new pages into the main file and empties the WAL. Readers
            // still on old pages may keep it from finishing: it is retried on the
            // next write, so only the zeroing above is relied upon for the file.
            // Behind the write gate: it holds the write lock while it waits.
            let _gate = self.enter_gate().await?;
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
                .execute(&self.writer)
                .await
                .map_err(db_err)?;
        }
        Ok(changed)
    }

    async fn audit_append(&self, records: &[AuditRecord]) -> Result<u64, StoreError> {
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let first = log.append(&mut *tx, records, &[]).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(first)
    }

    async fn audit_size(&self) -> Result<u64, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db_err)?;
        audit_size(&mut conn).await
    }

    async fn audit_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db_err)?;
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
             WHERE a.idx >= ? AND a.idx < ? AND length(a.entry) > 0 ORDER BY a.idx",
        )
        // Indexes past i64::MAX cannot exist: clamp rather than fail.
        .bind(i64::try_from(start).unwrap_or(i64::MAX))
        .bind(i64::try_from(end).unwrap_or(i64::MAX))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(AuditEntryRow::into_row)
        .collect()
    }

    async fn audit_find(&self, leaf_hash: &Hash) -> Result<Option<u64>, StoreError> {
        // One statement, so one snapshot: the index up to `upto`, one seek per epoch
        // of 2^15 records (migration 0021) by the hash's first 8 bytes (0036), the
        // full hash checked in the record, else the records from `upto` on (every
        // one of them is above every indexed one).
        let idx: Option<i64> = sqlx::query_scalar(
            "WITH RECURSIVE \
                last(e) AS (SELECT (COALESCE((SELECT upto FROM audit_leaf_progress \
                                              WHERE id = 1), 0) - 1) >> 15), \
                epochs(e) AS (SELECT 0 FROM last WHERE last.e >= 0 \
                              UNION ALL SELECT epochs.e + 1 FROM epochs, last \
                              WHERE epochs.e < last.e) \
             SELECT COALESCE(\
                (SELECT MIN((SELECT MIN(i.idx) FROM audit_leaf_index i \
                             JOIN audit_log a ON a.idx = i.idx \
                             WHERE i.epoch = epochs.e AND i.leaf_prefix = substr(?1, 1, 8) \
                               AND a.leaf_hash = ?1)) FROM epochs), \
                (SELECT MIN(idx) FROM audit_log WHERE leaf_hash = ?1 AND idx >= \
                    COALESCE((SELECT upto FROM audit_leaf_progress WHERE id = 1), 0)))",
        )
        .bind(leaf_hash.as_bytes().as_slice())
        .fetch_one(&self.reader)
        .await
        .map_err(db_err)?;
        idx.map(|i| u64::try_from(i).map_err(|_| corrupt("audit index")))
            .transpose()
    }

    async fn audit_pruned(&self) -> Result<u64, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db_err)?;
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
        let mut tx = self.write_tx().await?;
        // The log head first (lock order), then the mark: one pruner at a time.
        let log = log::lock(&mut *tx).await?;
        let pruned = audit_pruned(&mut tx).await?;
        let (signed, indexed): (i64, i64) = sqlx::query_as(
            "SELECT COALESCE((SELECT MAX(size) FROM audit_checkpoints), 0), \
                    COALESCE((SELECT upto FROM audit_leaf_progress WHERE id = 1), 0)",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        let end = to_i64(to)?;
        if pruned != from || end > signed || end > indexed || to > log.size() {
            return Err(StoreError::Conflict(ConflictKind::PruneRange));
        }
        let start = to_i64(from)?;
        // The last record of each tile keeps its hashes (every node at level >= 8).
        sqlx::query("DELETE FROM audit_log WHERE idx >= ? AND idx < ? AND (idx & 255) <> 255")
            .bind(start)
            .bind(end)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(
            "UPDATE audit_log SET entry = x'', agent_id = NULL, issuer_id = NULL \
             WHERE idx >= ? AND idx < ? AND (idx & 255) = 255",
        )
        .bind(start)
        .bind(end)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO audit_pruned (id, through) VALUES (1, ?) \
             ON CONFLICT (id) DO UPDATE SET through = excluded.through",
        )
        .bind(end)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        log.append(&mut *tx, audit.map_or(&[], std::slice::from_ref), &[])
            .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(to - from)
    }

    async fn audit_find_pruned(&self, leaf_hash: &Hash) -> Result<Vec<u64>, StoreError> {
        // One seek per epoch below the mark by the hash's first 8 bytes; a record whose
        // row is gone is a pruned one (the last of each tile keeps its row and its
        // full leaf hash: `audit_find` finds it).
        let found: Vec<i64> = sqlx::query_scalar(
            "WITH RECURSIVE \
                mark(t) AS (SELECT COALESCE((SELECT through FROM audit_pruned WHERE id = 1), 0)), \
                epochs(e) AS (SELECT 0 FROM mark WHERE mark.t > 0 \
                              UNION ALL SELECT epochs.e + 1 FROM epochs, mark \
                              WHERE epochs.e < (mark.t - 1) >> 15) \
             SELECT i.idx FROM epochs, mark JOIN audit_leaf_index i \
                ON i.epoch = epochs.e AND i.leaf_prefix = substr(?1, 1, 8) \
             WHERE i.idx < mark.t AND NOT EXISTS (SELECT 1 FROM audit_log a WHERE a.idx = i.idx) \
             ORDER BY i.idx",
        )
        .bind(leaf_hash.as_bytes().as_slice())
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?;
        found
            .into_iter()
            .map(|i| u64::try_from(i).map_err(|_| corrupt("audit index")))
            .collect()
    }

    async fn audit_add_checkpoint(&self, checkpoint: &CheckpointRecord) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let inserted = sqlx::query(
            "INSERT INTO audit_checkpoints (size, root, note, created_at_ms) VALUES (?, ?, ?, ?) \
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
                sqlx::query_scalar("SELECT root FROM audit_checkpoints WHERE size = ?")
                    .bind(to_i64(checkpoint.size)?)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(db_err)?;
            if root.as_slice() != checkpoint.root.as_bytes().as_slice() {
                return Err(StoreError::Conflict(ConflictKind::CheckpointDiffers));
            }
        }
        extend_leaf_index(&mut tx, checkpoint.size).await?;
        tx.commit().await.map_err(db_err)
    }

    async fn audit_latest_checkpoint(&self) -> Result<Option<CheckpointRecord>, StoreError> {
        sqlx::query_as::<_, CheckpointRow>(
            "SELECT size, root, note, created_at_ms FROM audit_checkpoints \
             ORDER BY size DESC LIMIT 1",
        )
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .map(CheckpointRow::into_record)
        .transpose()
    }

    async fn audit_log_key(&self, candidate: &LogKeyRecord) -> Result<LogKeyRecord, StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO audit_log_key (id, origin, signer_key, created_at_ms) VALUES (1, ?, ?, ?) \
             ON CONFLICT (id) DO NOTHING",
        )
        .bind(&candidate.origin)
        .bind(&candidate.signer_key)
        .bind(candidate.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let (origin, signer_key, created_at_ms): (String, String, i64) = sqlx::query_as(
            "SELECT origin, signer_key, created_at_ms FROM audit_log_key WHERE id = 1",
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
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
        // The write lock is taken at BEGIN IMMEDIATE: everything the batch reads is
        // read under it, so nothing changes between the reads, decisions and writes.
        // The whole transaction runs on the ledger writer's thread.
        self.ledger
            .run(move |tx| writer::finish(ledger::record_decisions(tx, &items, now_ms))?)
            .await
    }

    async fn budget_spent(&self, key: &BudgetKey) -> Result<Decimal, StoreError> {
        let mut conn = self.reader.acquire().await.map_err(db_err)?;
        Ok(read_budget(&mut conn, key).await?.unwrap_or(Decimal::ZERO))
    }

    async fn receipt(&self, id: &ReceiptId) -> Result<Option<ReceiptRecord>, StoreError> {
        sqlx::query_as::<_, ReceiptRow>(
            "SELECT id, receiver_id, issuer_id, claims, audit_index, created_at_ms \
             FROM receipts WHERE id = ?",
        )
        .bind(id.as_str())
        .fetch_optional(&self.reader)
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
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO webhooks (id, receiver_id, url, filter, created_at_ms, delivered_pos, \
             failures, next_attempt_ms) VALUES (?, ?, ?, ?, ?, ?, 0, ?)",
        )
        .bind(&webhook.id)
        .bind(webhook.receiver_id.as_str())
        .bind(&webhook.url)
        .bind(&webhook.filter)
        .bind(webhook.created_at_ms)
        .bind(to_i64(webhook.delivered.get())?)
        .bind(webhook.next_attempt_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn webhooks(&self, receiver: Option<&ReceiverId>) -> Result<Vec<Webhook>, StoreError> {
        let rows = match receiver {
            Some(r) => sqlx::query_as::<_, rows::WebhookRow>(concat!(
                "SELECT ",
                webhook_columns!(),
                " FROM webhooks WHERE receiver_id = ? ORDER BY created_at_ms, id"
            ))
            .bind(r.as_str())
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?,
            None => sqlx::query_as::<_, rows::WebhookRow>(concat!(
                "SELECT ",
                webhook_columns!(),
                " FROM webhooks ORDER BY created_at_ms, id"
            ))
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?,
        };
        rows.into_iter()
            .map(rows::WebhookRow::into_webhook)
            .collect()
    }

    async fn delete_webhook(&self, receiver: &ReceiverId, id: &str) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query("DELETE FROM webhooks WHERE id = ? AND receiver_id = ?")
            .bind(id)
            .bind(receiver.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(done.rows_affected() > 0)
    }

    async fn resume_webhook(
        &self,
        receiver: &ReceiverId,
        id: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let done = sqlx::query(
            "UPDATE webhooks SET paused_at_ms = NULL, paused_reason = NULL, failures = 0, \
             next_attempt_ms = ? WHERE id = ? AND receiver_id = ?",
        )
        .bind(now_ms)
        .bind(id)
        .bind(receiver.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        sqlx::query(
            "UPDATE webhooks SET delivered_pos = MAX(delivered_pos, ?), failures = 0, \
             last_error = NULL, next_attempt_ms = ? WHERE id = ?",
        )
        .bind(upto)
        .bind(at_ms)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let acked = sqlx::query(
            "INSERT INTO event_acks (receiver_id, upto_pos, acked_at_ms, via, filter) \
             SELECT receiver_id, ?, ?, id, filter FROM webhooks WHERE id = ?",
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
        tx.commit().await.map_err(db_err)
    }

    async fn webhook_failed(&self, id: &str, failure: &WebhookFailure) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "UPDATE webhooks SET failures = ?, last_error = ?, next_attempt_ms = ?, \
             paused_at_ms = COALESCE(paused_at_ms, ?), \
             paused_reason = COALESCE(paused_reason, ?) WHERE id = ?",
        )
        .bind(i64::from(failure.failures))
        .bind(&failure.error)
        .bind(failure.next_attempt_ms)
        .bind(failure.pause.as_ref().map(|p| p.at_ms))
        .bind(failure.pause.as_ref().map(|p| p.reason.as_str()))
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)
    }

    async fn record_event_ack(
        &self,
        ack: &EventAck,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let done = sqlx::query(
            "INSERT INTO event_acks (receiver_id, upto_pos, acked_at_ms, via, filter) \
             SELECT ?1, ?2, ?3, ?4, ?5 WHERE NOT EXISTS (SELECT 1 FROM event_acks \
             WHERE receiver_id = ?1 AND via = ?4 AND filter IS ?5 AND upto_pos >= ?2)",
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
        tx.commit().await.map_err(db_err)?;
        Ok(recorded)
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
                 WHERE receiver_id = ?1 AND upto_pos >= ?2 AND NOT EXISTS (\
                 SELECT 1 FROM event_acks b WHERE b.receiver_id = ?1 AND b.via = a.via \
                 AND b.filter IS a.filter AND b.upto_pos >= ?2 \
                 AND (b.acked_at_ms < a.acked_at_ms \
                 OR (b.acked_at_ms = a.acked_at_ms AND b.upto_pos < a.upto_pos))) \
                 ORDER BY acked_at_ms, upto_pos LIMIT ?3",
            )
            .bind(receiver.as_str())
            .bind(to_i64(pos.get())?)
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
            .await
            .map_err(db_err)?,
            None => sqlx::query_as::<_, rows::EventAckRow>(
                "SELECT receiver_id, upto_pos, acked_at_ms, via, filter FROM event_acks \
                 WHERE receiver_id = ? ORDER BY acked_at_ms DESC, upto_pos DESC LIMIT ?",
            )
            .bind(receiver.as_str())
            .bind(i64::from(limit))
            .fetch_all(&self.reader)
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
        let mut tx = self.write_tx().await?;
        let existing: Option<(i64, i64, String, String)> = sqlx::query_as(
            "SELECT list_id, idx, agent_id, issuer_id FROM status_entries WHERE jti = ?",
        )
        .bind(entry.jti.as_str())
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        if let Some((list_id, idx, agent, issuer)) = existing {
            let slot = same_token_slot(list_id, idx, &agent, &issuer, entry)?;
            // The same token asked again with a later `exp` keeps its slot that long.
            sqlx::query(
                "UPDATE status_entries SET expires_at_s = MAX(expires_at_s, ?) WHERE jti = ?",
            )
            .bind(entry.expires_at_s)
            .bind(entry.jti.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            tx.commit().await.map_err(db_err)?;
            return Ok((slot, false));
        }
        let bits = i64::from(shape.bits);
        let size = to_i64(shape.size)?;
        let open: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM status_lists WHERE bits = ? AND size = ? AND allocated * 2 < size \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(bits)
        .bind(size)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db_err)?;
        let list_id = match open {
            Some(id) => id,
            None => sqlx::query_scalar(
                "INSERT INTO status_lists (bits, size, allocated, created_at_ms) \
                 VALUES (?, ?, 0, ?) RETURNING id",
            )
            .bind(bits)
            .bind(size)
            .bind(now_ms)
            .fetch_one(&mut *tx)
            .await
            .map_err(db_err)?,
        };
        let chain = StoredChain::encode(entry)?;
        for candidate in candidates {
            let idx = to_i64(candidate % shape.size)?;
            let seq: Option<i64> = sqlx::query_scalar(
                "INSERT INTO status_entries \
                 (list_id, idx, jti, agent_id, issuer_id, expires_at_s, chain, created_at_ms) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (list_id, idx) DO NOTHING RETURNING seq",
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
            sqlx::query("UPDATE status_lists SET allocated = allocated + 1 WHERE id = ?")
                .bind(list_id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            for subject in StoredChain::subjects(entry) {
                sqlx::query("INSERT INTO status_chain (subject, entry_seq) VALUES (?, ?)")
                    .bind(subject)
                    .bind(seq)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
            tx.commit().await.map_err(db_err)?;
            return Ok((status_slot(list_id, idx)?, true));
        }
        Err(StoreError::Conflict(ConflictKind::IdTaken))
    }

    async fn status_lists(&self) -> Result<Vec<StatusListRecord>, StoreError> {
        sqlx::query_as::<_, StatusListDbRow>(
            "SELECT id, bits, size, allocated, created_at_ms FROM status_lists ORDER BY id",
        )
        .fetch_all(&self.reader)
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
             WHERE e.list_id = ? AND e.idx > ? AND e.expires_at_s > ? ORDER BY e.idx LIMIT ?"
        )))
        .bind(i64::from(list_id))
        .bind(after)
        .bind(live_after_s)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.reader)
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
             WHERE {own} = ? AND e.expires_at_s > ? \
             UNION \
             SELECT {STATUS_ENTRY_COLUMNS} FROM status_chain c \
             JOIN status_entries e ON e.seq = c.entry_seq \
             WHERE c.subject = ? AND e.expires_at_s > ?"
        )))
        .bind(id)
        .bind(live_after_s)
        .bind(subject_key(subject))
        .bind(live_after_s)
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(StatusEntryDbRow::into_row)
        .collect()
    }

    async fn status_entry_horizon(&self) -> Result<crate::EntryCursor, StoreError> {
        // One writer: an entry not visible now gets a `seq` above every visible one.
        let next: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) + 1 FROM status_entries")
            .fetch_one(&self.reader)
            .await
            .map_err(db_err)?;
        Ok(crate::EntryCursor::new(u64::try_from(next).unwrap_or(0)))
    }

    async fn status_entries_since(
        &self,
        from: &crate::EntryCursor,
        after_seq: u64,
        limit: u32,
    ) -> Result<Vec<StatusEntryRow>, StoreError> {
        sqlx::query_as::<_, StatusEntryDbRow>(safe_sql(format!(
            "SELECT {STATUS_ENTRY_COLUMNS} FROM status_entries e WHERE e.seq >= ? \
             AND e.seq > ? ORDER BY e.seq LIMIT ?"
        )))
        .bind(to_i64(from.get())?)
        .bind(to_i64(after_seq)?)
        .bind(i64::from(limit.max(1)))
        .fetch_all(&self.reader)
        .await
        .map_err(db_err)?
        .into_iter()
        .map(StatusEntryDbRow::into_row)
        .collect()
    }

    async fn purge_status_entries(&self, expired_by_s: i64) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let mut tx = self.write_tx().await?;
            sqlx::query(
                "DELETE FROM status_chain WHERE entry_seq IN (SELECT seq FROM status_entries \
                 WHERE expires_at_s <= ? ORDER BY expires_at_s LIMIT ?)",
            )
            .bind(expired_by_s)
            .bind(PURGE_CHUNK)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            let deleted = sqlx::query(
                "DELETE FROM status_entries WHERE seq IN (SELECT seq FROM status_entries \
                 WHERE expires_at_s <= ? ORDER BY expires_at_s LIMIT ?)",
            )
            .bind(expired_by_s)
            .bind(PURGE_CHUNK)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
            tx.commit().await.map_err(db_err)?;
            total += deleted;
            if deleted < PURGE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    async fn retire_status_list(&self, list_id: u32) -> Result<bool, StoreError> {
        let id = i64::from(list_id);
        let mut tx = self.write_tx().await?;
        // Read and deleted in one write transaction: an allocation cannot slip in.
        let retirable: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM status_lists WHERE id = ?1 AND allocated * 2 >= size \
             AND NOT EXISTS (SELECT 1 FROM status_entries WHERE list_id = ?1))",
        )
        .bind(id)
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        if retirable {
            sqlx::query("DELETE FROM status_list_tokens WHERE list_id = ?")
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(retirable)
    }

    async fn status_list_published(
        &self,
        list_id: u32,
    ) -> Result<Option<PublishedStatusList>, StoreError> {
        sqlx::query_as::<_, PublishedListDbRow>(
            "SELECT list_id, version, token, issued_at_s, expires_at_s, audit_index \
             FROM status_list_tokens WHERE list_id = ?",
        )
        .bind(i64::from(list_id))
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .map(PublishedListDbRow::into_record)
        .transpose()
    }

    async fn publish_status_list(
        &self,
        published: &PublishedStatusList,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let stored = sqlx::query(
            "INSERT INTO status_list_tokens \
             (list_id, version, token, issued_at_s, expires_at_s, audit_index) \
             VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (list_id) DO UPDATE SET version = excluded.version, \
             token = excluded.token, issued_at_s = excluded.issued_at_s, \
             expires_at_s = excluded.expires_at_s, audit_index = excluded.audit_index \
             WHERE status_list_tokens.version < excluded.version",
        )
        .bind(i64::from(published.list_id))
        .bind(to_i64(published.version)?)
        .bind(&published.token)
        .bind(published.issued_at_s)
        .bind(published.expires_at_s)
        .bind(to_i64(published.audit_index)?)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        tx.commit().await.map_err(db_err)?;
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let pending: Option<i64> =
            sqlx::query_scalar("SELECT 1 FROM signing_keys WHERE kid = ? AND state = ?")
                .bind(kid)
                .bind(key_state_str(KeyState::Next))
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        if pending.is_none() {
            tx.commit().await.map_err(db_err)?;
            return Ok(false);
        }
        sqlx::query(
            "UPDATE signing_keys SET state = ?, publish_until_s = COALESCE( \
                 (SELECT MAX(expires_at_s) FROM tokens WHERE tokens.kid = signing_keys.kid), ?) \
             WHERE state = ?",
        )
        .bind(key_state_str(KeyState::Retired))
        .bind(now_s)
        .bind(key_state_str(KeyState::Active))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query("UPDATE signing_keys SET state = ? WHERE kid = ?")
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
        tx.commit().await.map_err(db_err)?;
        Ok(true)
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
        // One write transaction for the whole batch: the server gathers every lease
        // asked meanwhile into one call, so buckets cost one commit per batch.
        let mut tx = self.write_tx().await?;
        let mut grants = Vec::with_capacity(takes.len());
        for t in takes {
            let stored: Option<(i64, i64)> =
                sqlx::query_as("SELECT level, updated_ms FROM rate_buckets WHERE bucket = ?")
                    .bind(&t.bucket)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(db_err)?;
            let (grant, level, updated) = limits::take(stored, t, now_ms);
            sqlx::query(
                "INSERT INTO rate_buckets (bucket, level, updated_ms) VALUES (?, ?, ?) \
                 ON CONFLICT (bucket) DO UPDATE SET level = excluded.level, \
                 updated_ms = excluded.updated_ms",
            )
            .bind(&t.bucket)
            .bind(level)
            .bind(updated)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
            grants.push(grant);
        }
        tx.commit().await.map_err(db_err)?;
        Ok(grants)
    }

    async fn purge_rate_buckets(&self, idle_before_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.write_tx().await?;
        let n = sqlx::query("DELETE FROM rate_buckets WHERE updated_ms < ?")
            .bind(idle_before_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        tx.commit().await.map_err(db_err)?;
        Ok(n)
    }

    async fn rate_limit_settings(&self) -> Result<Vec<RateLimitSetting>, StoreError> {
        let rows: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT name, value, set_at_ms FROM rate_limit_settings ORDER BY name")
                .fetch_all(&self.reader)
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        if !set_named_value(&mut tx, rows::RATE_LIMIT_SETTINGS, name, value, now_ms).await? {
            tx.commit().await.map_err(db_err)?;
            return Ok(false);
        }
        log.append(&mut *tx, std::slice::from_ref(audit), &[])
            .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
    }

    async fn quota_take(
        &self,
        takes: &[QuotaTake],
        now_ms: i64,
    ) -> Result<Vec<QuotaGrant>, StoreError> {
        if takes.is_empty() {
            return Ok(Vec::new());
        }
        // One write transaction per batch (SQLite's one writer serialises replicas'
        // batches on one data dir).
        let takes = takes.to_vec();
        self.ledger
            .run(move |tx| writer::finish(ledger::quota_take(tx, &takes, now_ms))?)
            .await
    }

    async fn quota_used(&self, org: &OrgId, month: &str) -> Result<u64, StoreError> {
        let used: Option<i64> =
            sqlx::query_scalar("SELECT used FROM quota_usage WHERE org_id = ? AND month = ?")
                .bind(org.as_str())
                .bind(month)
                .fetch_optional(&self.reader)
                .await
                .map_err(db_err)?;
        Ok(used.map_or(0, |u| u64::try_from(u).unwrap_or(0)))
    }

    async fn org_plans(&self) -> Result<Vec<(OrgId, String)>, StoreError> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT org_id, plan FROM org_plans ORDER BY org_id")
                .fetch_all(&self.reader)
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let exists: Option<i64> = sqlx::query_scalar("SELECT 1 FROM organisations WHERE id = ?")
            .bind(org.as_str())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
        if exists.is_none() {
            return Err(StoreError::NotFound);
        }
        if !set_named_value(&mut tx, rows::ORG_PLANS, org.as_str(), plan, now_ms).await? {
            tx.commit().await.map_err(db_err)?;
            return Ok(false);
        }
        log.append(&mut *tx, std::slice::from_ref(audit), &[])
            .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(true)
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
        let mut tx = self.write_tx().await?;
        for c in counts {
            sqlx::query(
                "INSERT INTO usage_daily (org_id, day, key, route, count) VALUES (?, ?, ?, ?, ?) \
                 ON CONFLICT (org_id, day, key, route) DO UPDATE SET count = count + excluded.count",
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
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn usage(
        &self,
        org: &OrgId,
        from: &str,
        to: &str,
    ) -> Result<Vec<UsageCount>, StoreError> {
        let rows: Vec<(String, String, String, i64)> = sqlx::query_as(
            "SELECT day, key, route, count FROM usage_daily \
             WHERE org_id = ? AND day >= ? AND day <= ? ORDER BY day, key, route",
        )
        .bind(org.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&self.reader)
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
        "sqlite"
    }

    fn pool_status(&self) -> Option<crate::PoolStatus> {
        // The readers' pool (the writer is one connection, always open).
        Some(crate::PoolStatus {
            open: self.reader.size(),
            idle: u32::try_from(self.reader.num_idle()).unwrap_or(u32::MAX),
            max: READERS,
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO organisations (id, name, require_2fa, created_at_ms) VALUES (?, ?, ?, ?)",
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
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn org(&self, id: &OrgId) -> Result<Option<Organisation>, StoreError> {
        sqlx::query_as::<_, OrgRow>(
            "SELECT id, name, require_2fa, created_at_ms FROM organisations WHERE id = ?",
        )
        .bind(id.as_str())
        .fetch_optional(&self.reader)
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let current: Option<bool> =
            sqlx::query_scalar("SELECT require_2fa FROM organisations WHERE id = ?")
                .bind(id.as_str())
                .fetch_optional(&mut *tx)
                .await
                .map_err(db_err)?;
        let Some(current) = current else {
            return Err(StoreError::NotFound);
        };
        if current != require {
            sqlx::query("UPDATE organisations SET require_2fa = ? WHERE id = ?")
                .bind(require)
                .bind(id.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        log.append(&mut *tx, audited(current != require, audit), &[])
            .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn create_invitation(
        &self,
        invitation: &Invitation,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        insert_invitation(&mut tx, invitation).await?;
        log.append(&mut *tx, std::slice::from_ref(audit), &[])
            .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn invitation(&self, token_hash: &[u8; 32]) -> Result<Option<Invitation>, StoreError> {
        sqlx::query_as::<_, InvitationRow>(
            "SELECT token_hash, org_id, email, role, created_at_ms, expires_at_ms, accepted_at_ms \
             FROM invitations WHERE token_hash = ?",
        )
        .bind(token_hash.as_slice())
        .fetch_optional(&self.reader)
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let invitation = sqlx::query_as::<_, InvitationRow>(
            "SELECT token_hash, org_id, email, role, created_at_ms, expires_at_ms, accepted_at_ms \
             FROM invitations WHERE token_hash = ?",
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
            " FROM people WHERE email = ?"
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
                    sqlx::query("UPDATE people SET password_hash = ? WHERE id = ?")
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
                     VALUES (?, ?, ?, ?)",
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
            "SELECT role, created_at_ms FROM memberships WHERE org_id = ? AND person_id = ?",
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
                     VALUES (?, ?, ?, ?)",
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
                        "UPDATE memberships SET role = ? WHERE org_id = ? AND person_id = ?",
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
        sqlx::query("UPDATE invitations SET accepted_at_ms = ? WHERE token_hash = ?")
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
        tx.commit().await.map_err(db_err)?;
        Ok((stored, membership))
    }

    async fn person(&self, id: &PersonId) -> Result<Option<Person>, StoreError> {
        sqlx::query_as::<_, PersonRow>(concat!(
            "SELECT ",
            person_columns!(),
            " FROM people WHERE id = ?"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .map(PersonRow::into_person)
        .transpose()
    }

    async fn person_by_email(&self, email: &str) -> Result<Option<Person>, StoreError> {
        sqlx::query_as::<_, PersonRow>(concat!(
            "SELECT ",
            person_columns!(),
            " FROM people WHERE email = ?"
        ))
        .bind(email)
        .fetch_optional(&self.reader)
        .await
        .map_err(db_err)?
        .map(PersonRow::into_person)
        .transpose()
    }

    async fn memberships_of(&self, person: &PersonId) -> Result<Vec<Membership>, StoreError> {
        sqlx::query_as::<_, MembershipRow>(
            "SELECT m.org_id, m.person_id, p.email, m.role, m.created_at_ms \
             FROM memberships m JOIN people p ON p.id = m.person_id \
             WHERE m.person_id = ? ORDER BY m.created_at_ms, m.org_id",
        )
        .bind(person.as_str())
        .fetch_all(&self.reader)
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
             WHERE m.org_id = ? ORDER BY m.created_at_ms, m.person_id",
        )
        .bind(org.as_str())
        .fetch_all(&self.reader)
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let current = member_role(&mut tx, org, person).await?;
        if current == Role::Owner && role != Role::Owner && owners(&mut tx, org).await? <= 1 {
            return Err(StoreError::Conflict(ConflictKind::LastOwner));
        }
        if current != role {
            sqlx::query("UPDATE memberships SET role = ? WHERE org_id = ? AND person_id = ?")
                .bind(role.as_str())
                .bind(org.as_str())
                .bind(person.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        log.append(&mut *tx, audited(current != role, audit), &[])
            .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn remove_member(
        &self,
        org: &OrgId,
        person: &PersonId,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let current = member_role(&mut tx, org, person).await?;
        if current == Role::Owner && owners(&mut tx, org).await? <= 1 {
            return Err(StoreError::Conflict(ConflictKind::LastOwner));
        }
        sqlx::query("DELETE FROM memberships WHERE org_id = ? AND person_id = ?")
            .bind(org.as_str())
            .bind(person.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        let elsewhere: i64 =
            sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE person_id = ?")
                .bind(person.as_str())
                .fetch_one(&mut *tx)
                .await
                .map_err(db_err)?;
        if elsewhere == 0 {
            // A person in no organisation may do nothing: their sessions end now.
            sqlx::query(
                "UPDATE sessions SET revoked_at_ms = ?, revoke_reason = 'removed' \
                 WHERE person_id = ? AND revoked_at_ms IS NULL",
            )
            .bind(now_ms)
            .bind(person.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        log.append(&mut *tx, std::slice::from_ref(audit), &[])
            .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn set_owner_org(
        &self,
        what: &Owned,
        org: &OrgId,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let (select, insert, id) = match what {
            Owned::Issuer(id) => (
                "SELECT org_id FROM org_issuers WHERE issuer_id = ?",
                "INSERT INTO org_issuers (issuer_id, org_id) VALUES (?, ?)",
                id.as_str(),
            ),
            Owned::Receiver(id) => (
                "SELECT org_id FROM org_receivers WHERE receiver_id = ?",
                "INSERT INTO org_receivers (receiver_id, org_id) VALUES (?, ?)",
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
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn owner_org(&self, what: &Owned) -> Result<Option<OrgId>, StoreError> {
        let (select, id) = match what {
            Owned::Issuer(id) => (
                "SELECT org_id FROM org_issuers WHERE issuer_id = ?",
                id.as_str(),
            ),
            Owned::Receiver(id) => (
                "SELECT org_id FROM org_receivers WHERE receiver_id = ?",
                id.as_str(),
            ),
        };
        let org: Option<String> = sqlx::query_scalar(select)
            .bind(id)
            .fetch_optional(&self.reader)
            .await
            .map_err(db_err)?;
        org.map(|o| OrgId::try_from(o.as_str()).map_err(|e| StoreError::Backend(e.to_string())))
            .transpose()
    }

    async fn org_owned(&self, org: &OrgId) -> Result<Vec<Owned>, StoreError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT 'issuer' AS kind, issuer_id AS id FROM org_issuers WHERE org_id = ? \
             UNION ALL \
             SELECT 'receiver' AS kind, receiver_id AS id FROM org_receivers WHERE org_id = ? \
             ORDER BY kind, id",
        )
        .bind(org.as_str())
        .bind(org.as_str())
        .fetch_all(&self.reader)
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        sqlx::query(
            "INSERT INTO sessions (id, person_id, key_hash, client_id, two_factor, ip, \
             user_agent, created_at_ms, last_used_ms, expires_at_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
             VALUES (?, ?, ?, ?)",
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
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        sqlx::query_as::<_, SessionRow>(concat!(
            "SELECT ",
            session_columns!(),
            " FROM sessions s WHERE s.id = ?"
        ))
        .bind(id.as_str())
        .fetch_optional(&self.reader)
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
            " FROM sessions s WHERE s.person_id = ? AND s.revoked_at_ms IS NULL \
             AND s.expires_at_ms > ? ORDER BY s.created_at_ms DESC, s.id"
        ))
        .bind(person.as_str())
        .bind(now_ms)
        .fetch_all(&self.reader)
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
             WHERE r.token_hash = ?"
        ))
        .bind(hash.as_slice())
        .fetch_optional(&self.reader)
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let row: Option<(Option<i64>, i64, String, Option<i64>)> = sqlx::query_as(
            "SELECT r.used_at_ms, r.expires_at_ms, r.session_id, s.revoked_at_ms \
             FROM refresh_tokens r JOIN sessions s ON s.id = r.session_id \
             WHERE r.token_hash = ?",
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
        sqlx::query("UPDATE refresh_tokens SET used_at_ms = ? WHERE token_hash = ?")
            .bind(now_ms)
            .bind(old.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query(
            "INSERT INTO refresh_tokens (token_hash, session_id, created_at_ms, expires_at_ms) \
             VALUES (?, ?, ?, ?)",
        )
        .bind(new.hash.as_slice())
        .bind(&session)
        .bind(now_ms)
        .bind(new.expires_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        sqlx::query("UPDATE sessions SET last_used_ms = ?, expires_at_ms = ? WHERE id = ?")
            .bind(now_ms)
            .bind(new.expires_at_ms)
            .bind(&session)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        log.append(&mut *tx, std::slice::from_ref(audit), &[])
            .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(Rotation::Rotated)
    }

    async fn revoke_session(
        &self,
        id: &SessionId,
        now_ms: i64,
        reason: &str,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let changed = sqlx::query(
            "UPDATE sessions SET revoked_at_ms = ?, revoke_reason = ? \
             WHERE id = ? AND revoked_at_ms IS NULL",
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
        tx.commit().await.map_err(db_err)?;
        Ok(changed)
    }

    async fn set_password(
        &self,
        person: &PersonId,
        password_hash: &str,
        keep: Option<&SessionId>,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let found = sqlx::query("UPDATE people SET password_hash = ? WHERE id = ?")
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
            "UPDATE sessions SET revoked_at_ms = ?, revoke_reason = 'password_changed' \
             WHERE person_id = ? AND revoked_at_ms IS NULL AND id <> ?",
        )
        .bind(now_ms)
        .bind(person.as_str())
        .bind(keep.map_or("", |k| k.as_str()))
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        log.append(&mut *tx, std::slice::from_ref(audit), &[])
            .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn set_totp_pending(&self, person: &PersonId, sealed: &str) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let changed = sqlx::query(
            "UPDATE people SET totp_secret = ?, totp_last_step = NULL \
             WHERE id = ? AND totp_enabled_at_ms IS NULL",
        )
        .bind(sealed)
        .bind(person.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected();
        if changed == 0 {
            let exists: bool =
                sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM people WHERE id = ?)")
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
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn enable_totp(
        &self,
        person: &PersonId,
        step: i64,
        recovery: &[[u8; 32]],
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let changed = sqlx::query(
            "UPDATE people SET totp_enabled_at_ms = ?, totp_last_step = ? \
             WHERE id = ? AND totp_secret IS NOT NULL AND totp_enabled_at_ms IS NULL",
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
        sqlx::query("DELETE FROM recovery_codes WHERE person_id = ?")
            .bind(person.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        for hash in recovery {
            sqlx::query("INSERT INTO recovery_codes (person_id, code_hash) VALUES (?, ?)")
                .bind(person.as_str())
                .bind(hash.as_slice())
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
        }
        log.append(&mut *tx, std::slice::from_ref(audit), &[])
            .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn disable_totp(&self, person: &PersonId, audit: &AuditRecord) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let changed = sqlx::query(
            "UPDATE people SET totp_secret = NULL, totp_enabled_at_ms = NULL, \
             totp_last_step = NULL WHERE id = ? AND totp_secret IS NOT NULL",
        )
        .bind(person.as_str())
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected()
            > 0;
        sqlx::query("DELETE FROM recovery_codes WHERE person_id = ?")
            .bind(person.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        log.append(&mut *tx, audited(changed, audit), &[]).await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn claim_totp_step(&self, person: &PersonId, step: i64) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let claimed = sqlx::query(
            "UPDATE people SET totp_last_step = ? WHERE id = ? \
             AND totp_enabled_at_ms IS NOT NULL \
             AND (totp_last_step IS NULL OR totp_last_step < ?)",
        )
        .bind(step)
        .bind(person.as_str())
        .bind(step)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?
        .rows_affected()
            > 0;
        tx.commit().await.map_err(db_err)?;
        Ok(claimed)
    }

    async fn use_recovery_code(
        &self,
        person: &PersonId,
        hash: &[u8; 32],
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let used = sqlx::query(
            "UPDATE recovery_codes SET used_at_ms = ? \
             WHERE person_id = ? AND code_hash = ? AND used_at_ms IS NULL",
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
        tx.commit().await.map_err(db_err)?;
        Ok(used)
    }

    async fn recovery_codes_left(&self, person: &PersonId) -> Result<u32, StoreError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM recovery_codes WHERE person_id = ? AND used_at_ms IS NULL",
        )
        .bind(person.as_str())
        .fetch_one(&self.reader)
        .await
        .map_err(db_err)?;
        Ok(u32::try_from(n).unwrap_or(u32::MAX))
    }

    async fn login_throttle(&self, subjects: &[String]) -> Result<Vec<Throttle>, StoreError> {
        let mut out = Vec::with_capacity(subjects.len());
        for subject in subjects {
            let row: Option<(i64, i64)> = sqlx::query_as(
                "SELECT failures, last_failure_ms FROM login_throttle WHERE subject = ?",
            )
            .bind(subject)
            .fetch_optional(&self.reader)
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
        let mut tx = self.write_tx().await?;
        for subject in subjects {
            if failed {
                sqlx::query(
                    "INSERT INTO login_throttle (subject, failures, last_failure_ms) \
                     VALUES (?, 1, ?) ON CONFLICT (subject) DO UPDATE SET \
                     failures = CASE WHEN login_throttle.last_failure_ms < ? THEN 1 \
                     ELSE login_throttle.failures + 1 END, last_failure_ms = ?",
                )
                .bind(subject)
                .bind(now_ms)
                .bind(now_ms.saturating_sub(window_ms))
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            } else {
                sqlx::query("DELETE FROM login_throttle WHERE subject = ?")
                    .bind(subject)
                    .execute(&mut *tx)
                    .await
                    .map_err(db_err)?;
            }
        }
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn login_reserve(
        &self,
        rules: &[ThrottleRule],
        now_ms: i64,
        window_ms: i64,
    ) -> Result<i64, StoreError> {
        // The one writer: the check and the record are one step for every replica.
        let mut tx = self.write_tx().await?;
        let mut wait = 0;
        for rule in rules {
            let row: Option<(i64, i64)> = sqlx::query_as(
                "SELECT failures, last_failure_ms FROM login_throttle WHERE subject = ?",
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
            tx.commit().await.map_err(db_err)?;
            return Ok(wait);
        }
        for rule in rules {
            sqlx::query(
                "INSERT INTO login_throttle (subject, failures, last_failure_ms) \
                     VALUES (?, 1, ?) ON CONFLICT (subject) DO UPDATE SET \
                     failures = CASE WHEN login_throttle.last_failure_ms < ? THEN 1 \
                     ELSE login_throttle.failures + 1 END, last_failure_ms = ?",
            )
            .bind(&rule.subject)
            .bind(now_ms)
            .bind(now_ms.saturating_sub(window_ms))
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(0)
    }

    async fn login_release(&self, subjects: &[String]) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        for subject in subjects {
            sqlx::query(
                "UPDATE login_throttle SET failures = failures - 1 \
                     WHERE subject = ? AND failures > 0",
            )
            .bind(subject)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        }
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn add_security_event(&self, event: &SecurityEvent) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO security_events (kind, person_id, org_id, ip, detail, created_at_ms) \
             VALUES (?, ?, ?, ?, ?, ?)",
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
        tx.commit().await.map_err(db_err)?;
        Ok(())
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
                     FROM security_events WHERE id > ? AND (org_id = ? OR person_id IN \
                     (SELECT person_id FROM memberships WHERE org_id = ?)) ORDER BY id LIMIT ?",
                )
                .bind(after_id)
                .bind(org.as_str())
                .bind(org.as_str())
                .bind(limit)
                .fetch_all(&self.reader)
                .await
            }
            None => {
                sqlx::query_as::<_, SecurityEventRow>(
                    "SELECT id, kind, person_id, org_id, ip, detail, created_at_ms \
                     FROM security_events WHERE id > ? ORDER BY id LIMIT ?",
                )
                .bind(after_id)
                .bind(limit)
                .fetch_all(&self.reader)
                .await
            }
        }
        .map_err(db_err)?;
        rows.into_iter().map(SecurityEventRow::into_event).collect()
    }

    async fn purge_security_events(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut tx = self.write_tx().await?;
        let gone = sqlx::query("DELETE FROM security_events WHERE created_at_ms < ?")
            .bind(before_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?
            .rows_affected();
        sqlx::query("DELETE FROM login_throttle WHERE last_failure_ms < ?")
            .bind(before_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        self.purge_in_chunks(
            "DELETE FROM refresh_tokens WHERE token_hash IN \
             (SELECT token_hash FROM refresh_tokens WHERE expires_at_ms < ? LIMIT ?)",
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
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        sqlx::query("INSERT INTO issuers (id, name, name_key, created_at_ms) VALUES (?, ?, ?, ?)")
            .bind(issuer.id.as_str())
            .bind(&issuer.name)
            .bind(names::issuer_name_key(&issuer.name))
            .bind(issuer.created_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("INSERT INTO api_keys (hash, kind, owner, created_at_ms, created_by) VALUES (?, ?, ?, ?, ?)")
            .bind(key.0.as_slice())
            .bind(KeyKind::Issuer.as_str())
            .bind(issuer.id.as_str())
            .bind(issuer.created_at_ms)
            .bind(created_by.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("INSERT INTO org_issuers (issuer_id, org_id) VALUES (?, ?)")
            .bind(issuer.id.as_str())
            .bind(org.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        log.append(&mut *tx, std::slice::from_ref(audit), &[])
            .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn create_org_receiver(
        &self,
        receiver: &Receiver,
        key: &ApiKeyHash,
        org: &OrgId,
        created_by: &PersonId,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        sqlx::query("INSERT INTO receivers (id, name, created_at_ms) VALUES (?, ?, ?)")
            .bind(receiver.id.as_str())
            .bind(&receiver.name)
            .bind(receiver.created_at_ms)
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        sqlx::query("INSERT INTO api_keys (hash, kind, owner, created_at_ms, created_by) VALUES (?, ?, ?, ?, ?)")
            .bind(key.0.as_slice())
            .bind(KeyKind::Receiver.as_str())
            .bind(receiver.id.as_str())
            .bind(receiver.created_at_ms)
            .bind(created_by.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        insert_audiences(&mut tx, &receiver.id, &receiver.audiences).await?;
        sqlx::query("INSERT INTO org_receivers (receiver_id, org_id) VALUES (?, ?)")
            .bind(receiver.id.as_str())
            .bind(org.as_str())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        log.append(&mut *tx, std::slice::from_ref(audit), &[])
            .await?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn revoke_api_key(
        &self,
        hash: &ApiKeyHash,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<ApiKeyRecord, StoreError> {
        let mut tx = self.write_tx().await?;
        let log = log::lock(&mut *tx).await?;
        let record = sqlx::query_as::<_, ApiKeyRow>(
            "SELECT hash, kind, owner, created_at_ms, name, scopes, expires_at_ms, created_by, \
             last_used_at_ms, revoked_at_ms, rotated_from FROM api_keys \
             WHERE hash = ? AND revoked_at_ms IS NULL",
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
                "SELECT COUNT(*) FROM api_keys WHERE kind = ? AND revoked_at_ms IS NULL \
             AND (expires_at_ms IS NULL OR expires_at_ms > ?)",
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
        sqlx::query("UPDATE api_keys SET revoked_at_ms = ? WHERE hash = ?")
            .bind(now_ms)
            .bind(hash.0.as_slice())
            .execute(&mut *tx)
            .await
            .map_err(db_err)?;
        // The key's refresh-token families end with it.
        sqlx::query(
            "UPDATE sessions SET revoked_at_ms = ?, revoke_reason = 'key_revoked' \
             WHERE key_hash = ? AND revoked_at_ms IS NULL",
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
        tx.commit().await.map_err(db_err)?;
        Ok(record)
    }

    async fn writable(&self) -> Result<(), StoreError> {
        let since = {
            let mut failing = self.health.lock();
            let Some(f) = failing.as_mut() else {
                return Ok(());
            };
            let now = Instant::now();
            if now < f.next_probe {
                return Err(f.error.clone());
            }
            f.next_probe = now + PROBE_EVERY;
            f.since
        };
        let probed = self.probe().await;
        let mut failing = self.health.lock();
        match (probed, failing.as_mut()) {
            // Cleared meanwhile by a commit.
            (_, None) => Ok(()),
            // A write failed again while the probe ran: that is the newer word.
            (_, Some(f)) if f.since != since => Err(f.error.clone()),
            (Ok(()), Some(f)) => {
                tracing::info!(after = %f.error, "the store's data dir takes writes again");
                *failing = None;
                Ok(())
            }
            (Err(e), Some(_)) => Err(e),
        }
    }

    async fn purge_idempotency(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.purge_in_chunks(
            "DELETE FROM idempotency WHERE (receiver_id, key) IN \
             (SELECT receiver_id, key FROM idempotency WHERE created_at_ms < ? LIMIT ?)",
            before_ms,
        )
        .await
    }

    /// By the ids' time, without an index on age (0039): each of
    /// [`ReceiptId::ranges_before`]'s ranges a chunk at a time, every row's own
    /// `created_at_ms` checked too; first those kept by age (`receipts_undated`).
    async fn purge_receipts(&self, before_ms: i64) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let mut tx = self.write_tx().await?;
            let ids: Vec<String> = sqlx::query_scalar(
                "DELETE FROM receipts_undated WHERE (created_at_ms, id) IN \
                 (SELECT created_at_ms, id FROM receipts_undated WHERE created_at_ms < ? \
                  ORDER BY created_at_ms, id LIMIT ?) RETURNING id",
            )
            .bind(before_ms)
            .bind(PURGE_CHUNK)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_err)?;
            if !ids.is_empty() {
                let list = serde_json::to_string(&ids)
                    .map_err(|e| StoreError::Backend(format!("receipt ids: {e}")))?;
                // The receipt's own age is checked too, as in the ranges below: the two
                // rows are written together with one time, and if they ever differ the
                // receipt is kept, never dropped early.
                total += sqlx::query(
                    "DELETE FROM receipts WHERE id IN (SELECT value FROM json_each(?)) \
                     AND created_at_ms < ?",
                )
                .bind(list)
                .bind(before_ms)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
            }
            tx.commit().await.map_err(db_err)?;
            if ids.len() < PURGE_CHUNK as usize {
                break;
            }
        }
        // Nothing is dated before the epoch.
        let before = u64::try_from(before_ms).unwrap_or(0);
        for (lo, hi) in ReceiptId::ranges_before(before) {
            total += self
                .purge_in_chunks_with(
                    "DELETE FROM receipts WHERE id IN \
                     (SELECT id FROM receipts WHERE id >= ?3 AND id < ?4 AND created_at_ms < ?1 \
                      LIMIT ?2)",
                    before_ms,
                    &[&lo, &hi],
                )
                .await?;
        }
        Ok(total)
    }

    async fn record_sdk_verification(&self, v: &NewSdkVerification) -> Result<(), StoreError> {
        let mut tx = self.write_tx().await?;
        sqlx::query(
            "INSERT INTO sdk_verifications (id_sha256, audit_index, agent_id, created_at_ms) \
             VALUES (?1, ?2, ?3, ?4)",
        )
        .bind(v.id_sha256.as_slice())
        .bind(to_i64(v.audit_index)?)
        .bind(v.agent_id.as_str())
        .bind(v.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
        Ok(())
    }

    async fn sdk_verification(
        &self,
        id_sha256: &[u8; 32],
    ) -> Result<Option<SdkVerification>, StoreError> {
        sqlx::query_as::<_, rows::SdkVerificationRow>(
            "SELECT id_sha256, audit_index, agent_id, created_at_ms, result, result_at_ms, \
             execution, execution_at_ms FROM sdk_verifications WHERE id_sha256 = ?",
        )
        .bind(id_sha256.as_slice())
        .fetch_optional(&self.reader)
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
        let mut tx = self.write_tx().await?;
        let set = sqlx::query(safe_sql(format!(
            "UPDATE sdk_verifications SET {body_col} = ?2, {at_col} = ?3 \
             WHERE id_sha256 = ?1 AND {body_col} IS NULL"
        )))
        .bind(id_sha256.as_slice())
        .bind(body)
        .bind(at_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let outcome = if set.rows_affected() > 0 {
            ReportOutcome::Recorded
        } else {
            let first: Option<(Option<String>,)> = sqlx::query_as(safe_sql(format!(
                "SELECT {body_col} FROM sdk_verifications WHERE id_sha256 = ?1"
            )))
            .bind(id_sha256.as_slice())
            .fetch_optional(&mut *tx)
            .await
            .map_err(db_err)?;
            crate::sdk_verifications::outcome_of(first.map(|(b,)| b), body)
        };
        tx.commit().await.map_err(db_err)?;
        Ok(outcome)
    }

    async fn purge_sdk_verifications(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.purge_in_chunks(
            "DELETE FROM sdk_verifications WHERE id_sha256 IN \
             (SELECT id_sha256 FROM sdk_verifications WHERE created_at_ms < ? \
              ORDER BY created_at_ms LIMIT ?)",
            before_ms,
        )
        .await
    }
}

impl SqliteStore {
    /// A one-row key table ([`crate::SINGLE_KEY_TABLES`]): the stored key, or
    /// `candidate` stored now if there is none.
    async fn single_key(
        &self,
        table: &'static str,
        candidate: &ReceiptKeyRecord,
    ) -> Result<ReceiptKeyRecord, StoreError> {
        debug_assert!(crate::SINGLE_KEY_TABLES.contains(&table));
        let mut tx = self.write_tx().await?;
        sqlx::query(safe_sql(format!(
            "INSERT INTO {table} (id, private_pem, created_at_ms) VALUES (1, ?, ?) \
             ON CONFLICT (id) DO NOTHING"
        )))
        .bind(&candidate.private_pem)
        .bind(candidate.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(db_err)?;
        let (private_pem, created_at_ms): (String, i64) = sqlx::query_as(safe_sql(format!(
            "SELECT private_pem, created_at_ms FROM {table} WHERE id = 1"
        )))
        .fetch_one(&mut *tx)
        .await
        .map_err(db_err)?;
        tx.commit().await.map_err(db_err)?;
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
             (SELECT s.id FROM sessions s WHERE {SESSION_ENDED} LIMIT ?)"
        );
        let sessions = format!(
            "DELETE FROM sessions WHERE id IN (SELECT s.id FROM sessions s WHERE {SESSION_ENDED} \
             AND NOT EXISTS (SELECT 1 FROM refresh_tokens r WHERE r.session_id = s.id) \
             LIMIT ?)"
        );
        let mut total = 0;
        loop {
            let mut tx = self.write_tx().await?;
            sqlx::query(safe_sql(tokens.clone()))
                .bind(before_ms)
                .bind(SESSION_PURGE_CHUNK)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?;
            let deleted = sqlx::query(safe_sql(sessions.clone()))
                .bind(before_ms)
                .bind(SESSION_PURGE_CHUNK)
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
            tx.commit().await.map_err(db_err)?;
            total += deleted;
            if deleted < SESSION_PURGE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }

    /// Runs `delete` (binding a time and [`PURGE_CHUNK`]) until it deletes less than a
    /// chunk, one short transaction each: the single writer is never held for long,
    /// so verifies keep committing while a day's records are purged. How many went.
    async fn purge_in_chunks(
        &self,
        delete: &'static str,
        before_ms: i64,
    ) -> Result<u64, StoreError> {
        self.purge_in_chunks_with(delete, before_ms, &[]).await
    }

    /// [`SqliteStore::purge_in_chunks`] with more parameters, bound after those two.
    async fn purge_in_chunks_with(
        &self,
        delete: &'static str,
        before_ms: i64,
        more: &[&str],
    ) -> Result<u64, StoreError> {
        let mut total = 0;
        loop {
            let mut tx = self.write_tx().await?;
            let mut query = sqlx::query(delete).bind(before_ms).bind(PURGE_CHUNK);
            for value in more {
                query = query.bind(*value);
            }
            let deleted = query
                .execute(&mut *tx)
                .await
                .map_err(db_err)?
                .rows_affected();
            tx.commit().await.map_err(db_err)?;
            total += deleted;
            if deleted < PURGE_CHUNK as u64 {
                return Ok(total);
            }
        }
    }
}

// ---- decisions: the ledger's transactions run on the ledger writer (`writer.rs`)

/// `Conflict(KeyHeldElsewhere)` if the key (`jkt`) is, or was, an agent key of
/// another issuer's agent: an issuer cannot take over a key another issuer's agent
/// registered first (its signatures would then count as the squatter's agent's).
async fn refuse_key_held_elsewhere(
    conn: &mut SqliteConnection,
    jkt: &str,
    issuer: &IssuerId,
) -> Result<(), StoreError> {
    let elsewhere: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM agent_keys k JOIN agents a ON a.id = k.agent_id \
         WHERE k.jkt = ? AND a.issuer_id != ?)",
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

/// What `key` has spent, if it has a record.
async fn read_budget(
    conn: &mut SqliteConnection,
    key: &BudgetKey,
) -> Result<Option<Decimal>, StoreError> {
    let spent: Option<String> = sqlx::query_scalar(BUDGET_SPENT_SQL)
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

/// Appends `SELECT * FROM (VALUES …) WHERE column1 IS NOT NULL` to `head` (an `INSERT
/// INTO t (…) ` of `columns` columns): `rows` rows of parameters, then rows of NULLs
/// up to the next power of two, which the `WHERE` drops. A connection then sees one
/// text per power of two (not one per row count) and keeps them prepared. The first
/// column of every real row must not be NULL. Both writers build batches with it.
fn padded_values_sql(head: &str, columns: usize, rows: usize) -> String {
    let row = |item: &str| format!("({})", vec![item; columns].join(", "));
    let (real, pad) = (row("?"), row("NULL"));
    let all: Vec<&str> = std::iter::repeat_n(real.as_str(), rows)
        .chain(std::iter::repeat_n(
            pad.as_str(),
            rows.next_power_of_two() - rows,
        ))
        .collect();
    format!(
        "{head}SELECT * FROM (VALUES {}) WHERE column1 IS NOT NULL",
        all.join(", ")
    )
}

/// `(item, …, pad, …)`: an `IN` list of `n` items (`?`, or a row value of them) padded
/// with `pad` (`NULL`, or a row of NULLs), which matches nothing, up to the next power
/// of two: one text per power of two.
fn padded_in_list_sql(item: &str, pad: &str, n: usize) -> String {
    let all: Vec<&str> = std::iter::repeat_n(item, n)
        .chain(std::iter::repeat_n(pad, n.next_power_of_two() - n))
        .collect();
    format!("({})", all.join(", "))
}

/// The log's size: `idx` is the rowid, so MAX is one B-tree descent.
const AUDIT_SIZE_SQL: &str = "SELECT COALESCE(MAX(idx) + 1, 0) FROM audit_log";
/// The change feed's head: `pos` is the rowid.
const CHANGE_HEAD_SQL: &str = "SELECT COALESCE(MAX(pos), 0) FROM changes";
/// What a budget has spent.
const BUDGET_SPENT_SQL: &str = "SELECT spent FROM budgets \
     WHERE issuer_id = ? AND policy_id = ? AND period_key = ? AND currency = ?";

/// The stored hash runs of `n` records (parameters: their indexes).
fn hash_rows_sql(n: usize) -> String {
    format!(
        "SELECT idx, leaf_hash, nodes FROM audit_log WHERE idx IN {}",
        padded_in_list_sql("?", "NULL", n)
    )
}

/// Inserts `n` audit rows (parameters: [`AuditRowValues`] in order, per row).
fn audit_rows_sql(n: usize) -> String {
    padded_values_sql(
        "INSERT INTO audit_log \
         (idx, leaf_hash, nodes, entry, agent_id, issuer_id, created_at_ms) ",
        7,
        n,
    )
}

/// Inserts `n` change rows (parameters: position, kind, subject, expiry, per row).
fn change_rows_sql(n: usize) -> String {
    padded_values_sql(
        "INSERT INTO changes (pos, kind, subject, expires_at_s) ",
        4,
        n,
    )
}

/// One audit row's columns, in [`audit_rows_sql`]'s order.
struct AuditRowValues<'a> {
    index: i64,
    leaf: &'a [u8],
    /// The run's interior hashes, 32 bytes each (0002_audit.sql).
    nodes: Vec<u8>,
    /// Packed (`core::audit_pack`).
    entry: std::borrow::Cow<'a, [u8]>,
    agent_id: Option<&'a str>,
    issuer_id: Option<&'a str>,
    created_at_ms: i64,
}

impl<'a> AuditRowValues<'a> {
    fn of(row: &'a log::LogRow<'a>) -> Result<Self, StoreError> {
        Ok(AuditRowValues {
            index: to_i64(row.index)?,
            leaf: &row.run.leaf.0,
            nodes: row.run.nodes.iter().flat_map(|h| h.0).collect(),
            entry: row.record.packed(),
            agent_id: row.record.agent_id.as_ref().map(AgentId::as_str),
            issuer_id: row.record.issuer_id.as_ref().map(IssuerId::as_str),
            created_at_ms: row.record.created_at_ms,
        })
    }
}

/// A stored run as read: the leaf hash and the interior hashes, 32 bytes each.
fn hash_run(leaf: &[u8], nodes: &[u8]) -> Result<log::HashRun, StoreError> {
    let nodes = nodes
        .chunks(32)
        .map(|h| Hash::try_from(h).map_err(|_| corrupt("audit hashes")))
        .collect::<Result<_, _>>()?;
    let leaf = Hash::try_from(leaf).map_err(|_| corrupt("audit leaf hash"))?;
    Ok(log::HashRun { leaf, nodes })
}

// ---- audit log internals

/// Adds the records below `size` (a checkpoint's, capped at the log's) that the leaf
/// index lacks to it, in one sorted insert, and moves its progress mark. In the
/// checkpoint's write transaction: off the append path, once per checkpoint interval.
async fn extend_leaf_index(tx: &mut SqliteConnection, size: u64) -> Result<(), StoreError> {
    let size = to_i64(size)?.min(to_i64(audit_size(tx).await?)?);
    let upto: i64 = sqlx::query_scalar(
        "SELECT COALESCE((SELECT upto FROM audit_leaf_progress WHERE id = 1), 0)",
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(db_err)?;
    if upto >= size {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO audit_leaf_index (epoch, leaf_prefix, idx) \
         SELECT idx >> 15, substr(leaf_hash, 1, 8), idx FROM audit_log \
         WHERE idx >= ? AND idx < ? ORDER BY 1, 2, 3",
    )
    .bind(upto)
    .bind(size)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    sqlx::query(
        "INSERT INTO audit_leaf_progress (id, upto) VALUES (1, ?) \
         ON CONFLICT (id) DO UPDATE SET upto = excluded.upto",
    )
    .bind(size)
    .execute(&mut *tx)
    .await
    .map_err(db_err)?;
    Ok(())
}

/// Where the pruned prefix of the log ends (no row: 0).
async fn audit_pruned(conn: &mut SqliteConnection) -> Result<u64, StoreError> {
    let through: i64 =
        sqlx::query_scalar("SELECT COALESCE((SELECT through FROM audit_pruned WHERE id = 1), 0)")
            .fetch_one(&mut *conn)
            .await
            .map_err(db_err)?;
    u64::try_from(through).map_err(|_| corrupt("audit pruned mark"))
}

async fn audit_size(conn: &mut SqliteConnection) -> Result<u64, StoreError> {
    let size: i64 = sqlx::query_scalar(AUDIT_SIZE_SQL)
        .fetch_one(&mut *conn)
        .await
        .map_err(db_err)?;
    u64::try_from(size).map_err(|_| corrupt("audit log size"))
}

/// The audit log's rows ([`log::LogRead`]) on any SQLite connection: the pooled
/// reader for proofs, the writer's transaction for appends.
#[async_trait]
impl log::LogRead for SqliteConnection {
    async fn log_head(&mut self) -> Result<u64, StoreError> {
        // Inside `BEGIN IMMEDIATE` the write lock is held already: this is the head.
        audit_size(self).await
    }

    async fn read_hash_rows(
        &mut self,
        records: &[u64],
    ) -> Result<HashMap<u64, log::HashRun>, StoreError> {
        let mut runs = HashMap::with_capacity(records.len());
        for chunk in records.chunks(MAX_IN_LIST) {
            let sql = hash_rows_sql(chunk.len());
            let mut select = sqlx::query_as(sqlx::AssertSqlSafe(sql));
            for r in chunk {
                select = select.bind(to_i64(*r)?);
            }
            let rows: Vec<(i64, Vec<u8>, Vec<u8>)> =
                select.fetch_all(&mut *self).await.map_err(db_err)?;
            for (idx, leaf, nodes) in rows {
                let idx = u64::try_from(idx).map_err(|_| corrupt("audit index"))?;
                runs.insert(idx, hash_run(&leaf, &nodes)?);
            }
        }
        Ok(runs)
    }

    async fn change_head(&mut self) -> Result<u64, StoreError> {
        let head: i64 = sqlx::query_scalar(CHANGE_HEAD_SQL)
            .fetch_one(&mut *self)
            .await
            .map_err(db_err)?;
        u64::try_from(head).map_err(|_| corrupt("change position"))
    }
}

/// The change feed's pages ([`log::ChangeRead`]).
#[async_trait]
impl log::ChangeRead for SqliteConnection {
    async fn read_changes(
        &mut self,
        after: u64,
        up_to: u64,
        expired_by_s: i64,
        limit: u32,
    ) -> Result<Vec<(u64, log::ChangeRow)>, StoreError> {
        let rows: Vec<(i64, String, Option<String>, Option<i64>)> = sqlx::query_as(
            "SELECT pos, kind, subject, expires_at_s FROM changes \
             WHERE pos > ? AND pos <= ? AND (expires_at_s IS NULL OR expires_at_s > ?) \
             ORDER BY pos LIMIT ?",
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

/// Appends ([`log::LogTx`]) on the writer's transaction.
#[async_trait]
impl log::LogTx for SqliteConnection {
    async fn insert_audit_rows(&mut self, rows: &[log::LogRow<'_>]) -> Result<(), StoreError> {
        for chunk in rows.chunks(AUDIT_ROWS_PER_INSERT) {
            let values = chunk
                .iter()
                .map(AuditRowValues::of)
                .collect::<Result<Vec<_>, _>>()?;
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(audit_rows_sql(chunk.len())));
            for v in &values {
                insert = insert
                    .bind(v.index)
                    .bind(v.leaf)
                    .bind(v.nodes.as_slice())
                    .bind(&*v.entry)
                    .bind(v.agent_id)
                    .bind(v.issuer_id)
                    .bind(v.created_at_ms);
            }
            insert.execute(&mut *self).await.map_err(db_err)?;
        }
        Ok(())
    }

    async fn insert_changes(&mut self, rows: &[(u64, log::ChangeRow)]) -> Result<(), StoreError> {
        for chunk in rows.chunks(AUDIT_ROWS_PER_INSERT) {
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(change_rows_sql(chunk.len())));
            for (pos, row) in chunk {
                insert = insert
                    .bind(to_i64(*pos)?)
                    .bind(row.kind.as_str())
                    .bind(row.subject.as_deref())
                    .bind(row.expires_at_s);
            }
            insert.execute(&mut *self).await.map_err(db_err)?;
        }
        Ok(())
    }
}

/// Stores a token; true if that extended a retired signing key's publication (a
/// change readers mirror).
async fn insert_token(
    conn: &mut sqlx::SqliteConnection,
    token: &TokenRecord,
) -> Result<bool, StoreError> {
    sqlx::query(
        "INSERT INTO tokens (jti, agent_id, issuer_id, kid, issued_at_s, expires_at_s, revoked_at_ms) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
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
        "UPDATE signing_keys SET publish_until_s = ? \
         WHERE kid = ? AND state = 'retired' AND COALESCE(publish_until_s, 0) < ?",
    )
    .bind(token.expires_at_s)
    .bind(&token.kid)
    .bind(token.expires_at_s)
    .execute(&mut *conn)
    .await
    .map_err(db_err)?
    .rows_affected();
    Ok(extended > 0)
}

// ---- rows: what SQLite hands back, parsed into domain types. A row that does not parse
// is `Backend` (the file was edited or corrupted), never a panic.

/// Writes a receiver's audiences in order. An audience another receiver holds is a
/// unique violation (`Conflict`).
async fn insert_audiences(
    conn: &mut SqliteConnection,
    id: &ReceiverId,
    audiences: &[String],
) -> Result<(), StoreError> {
    for (position, audience) in audiences.iter().enumerate() {
        let position = i64::try_from(position)
            .map_err(|_| StoreError::Backend("too many audiences".into()))?;
        sqlx::query(
            "INSERT INTO receiver_audiences (audience, receiver_id, position) VALUES (?, ?, ?)",
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
async fn insert_agent_key(conn: &mut SqliteConnection, key: &AgentKey) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO agent_keys (agent_id, jkt, jwk, alg, created_at_ms, expires_at_ms, \
         retired_at_ms, grace_until_ms) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
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
    conn: &mut SqliteConnection,
    agent: &AgentId,
) -> Result<Vec<AgentKey>, StoreError> {
    sqlx::query_as::<_, AgentKeyRow>(
        "SELECT agent_id, jkt, jwk, alg, created_at_ms, expires_at_ms, retired_at_ms, \
         grace_until_ms FROM agent_keys WHERE agent_id = ? ORDER BY created_at_ms, rowid",
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
    conn: &mut SqliteConnection,
    issuer: &IssuerId,
    id: &AgentId,
) -> Result<AgentRow, StoreError> {
    sqlx::query_as::<_, AgentRow>(concat!(
        "SELECT ",
        agent_columns!(),
        " FROM agents WHERE id = ? AND issuer_id = ?"
    ))
    .bind(id.as_str())
    .bind(issuer.as_str())
    .fetch_optional(&mut *conn)
    .await
    .map_err(db_err)?
    .ok_or(StoreError::NotFound)
}

// ---- errors

/// Maps a sqlx error: unique violations are `Conflict`, foreign-key violations
/// `NotFound` (the row referred to does not exist), no space `Full`, the store unable
/// to work now (I/O, locks, a closed pool) `Unavailable`, anything else `Backend`.
/// Messages name the constraint, never a bound value.
pub(crate) fn db_err(e: sqlx::Error) -> StoreError {
    db_err_ref(&e)
}

/// A failure SQLite reported with `code` (a result code, extended or not), other than
/// a constraint: no space is `Full`; the file, its lock or memory unusable is
/// `Unavailable` (both recorded for `writable`); anything else `Backend`. Both
/// writers' errors are classified by it.
fn sqlite_failure(code: Option<i32>, text: String) -> StoreError {
    // SQLite's primary result codes (the low byte of an extended code).
    const BUSY: i32 = 5;
    const LOCKED: i32 = 6;
    const NOMEM: i32 = 7;
    const READONLY: i32 = 8;
    const IOERR: i32 = 10;
    const FULL: i32 = 13;
    const CANTOPEN: i32 = 14;
    match code.map(|c| c & 0xff) {
        Some(FULL) => StoreError::Full(text),
        Some(BUSY | LOCKED | NOMEM | READONLY | IOERR | CANTOPEN) => StoreError::Unavailable(text),
        _ => StoreError::Backend(text),
    }
}

fn db_err_ref(e: &sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(conflict_kind(db.message()))
        }
        sqlx::Error::Database(db) if db.is_foreign_key_violation() => StoreError::NotFound,
        sqlx::Error::Database(db) => {
            sqlite_failure(db.code().and_then(|c| c.parse::<i32>().ok()), e.to_string())
        }
        sqlx::Error::Io(io)
            if matches!(
                io.kind(),
                io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
            ) =>
        {
            StoreError::Full(e.to_string())
        }
        sqlx::Error::Io(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e.to_string()),
        _ => StoreError::Backend(e.to_string()),
    }
}

/// SQLite says `UNIQUE constraint failed: <table>.<column>`; say it in domain words.
fn conflict_kind(message: &str) -> ConflictKind {
    const KINDS: [(&str, ConflictKind); 17] = [
        ("organisations.name", ConflictKind::OrgNameTaken),
        ("issuers.name_key", ConflictKind::IssuerNameTaken),
        ("issuers.name", ConflictKind::IssuerNameTaken),
        ("issuers.id", ConflictKind::IdTaken),
        ("receivers.name", ConflictKind::ReceiverNameTaken),
        ("receivers.id", ConflictKind::IdTaken),
        ("receiver_audiences.audience", ConflictKind::AudienceTaken),
        ("receipts.id", ConflictKind::IdTaken),
        ("idempotency.receiver_id", ConflictKind::IdempotencyKeyUsed),
        ("api_keys.hash", ConflictKind::IdTaken),
        ("agents.id", ConflictKind::IdTaken),
        ("tokens.jti", ConflictKind::IdTaken),
        ("signing_keys.kid", ConflictKind::IdTaken),
        ("signing_keys.state", ConflictKind::AnotherActiveKey),
        ("issuer_keys.kid", ConflictKind::IssuerKeyRegistered),
        ("issuer_keys.alias", ConflictKind::IssuerKeyAliasTaken),
        ("issuer_domains.domain", ConflictKind::DomainTaken),
    ];
    KINDS
        .iter()
        .find(|(column, _)| message.contains(column))
        .map_or(ConflictKind::IdTaken, |(_, kind)| *kind)
}

// ---- files

/// `-wal` and `-shm` sit next to the database, named by appending to its name.
fn companion(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn io_err(action: &str, path: &Path, e: io::Error) -> StoreError {
    StoreError::Backend(format!("cannot {action} {}: {e}", path.display()))
}

async fn create_private_dir(dir: &Path) -> Result<(), StoreError> {
    let mut builder = tokio::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    builder.mode(0o700);
    builder
        .create(dir)
        .await
        .map_err(|e| io_err("create directory", dir, e))
}

/// Creates the database file empty with mode 0600 if it does not exist, so it is never
/// readable by others, not even for a moment. An existing file is not opened here:
/// closing a descriptor drops every POSIX lock this process holds on the file, which
/// would break SQLite's locking if another connection in the process had it open.
async fn create_private_file(path: &Path) -> Result<(), StoreError> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.mode(0o600);
    match options.open(path).await {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(io_err("create", path, e)),
    }
}

/// Sets mode 0600 on `path` if it exists.
async fn restrict_file(path: &Path) -> Result<(), StoreError> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        match tokio::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(io_err("restrict permissions of", path, e)),
        }
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        Ok(())
    }
}

// ---- organisations, people and sessions (issue 18): helpers inside a transaction

async fn insert_invitation(
    tx: &mut WriteTx<'_>,
    invitation: &Invitation,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO invitations (token_hash, org_id, email, role, created_at_ms, expires_at_ms) \
         VALUES (?, ?, ?, ?, ?, ?)",
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
    tx: &mut WriteTx<'_>,
    org: &OrgId,
    person: &PersonId,
) -> Result<Role, StoreError> {
    let role: Option<String> =
        sqlx::query_scalar("SELECT role FROM memberships WHERE org_id = ? AND person_id = ?")
            .bind(org.as_str())
            .bind(person.as_str())
            .fetch_optional(&mut **tx)
            .await
            .map_err(db_err)?;
    let role = role.ok_or(StoreError::NotFound)?;
    Role::parse(&role).ok_or_else(|| StoreError::Backend(format!("stored role {role}")))
}

/// How many owners an organisation has.
async fn owners(tx: &mut WriteTx<'_>, org: &OrgId) -> Result<i64, StoreError> {
    sqlx::query_scalar("SELECT COUNT(*) FROM memberships WHERE org_id = ? AND role = 'owner'")
        .bind(org.as_str())
        .fetch_one(&mut **tx)
        .await
        .map_err(db_err)
}

/// Sets `key`'s value in a [`rows::NamedValues`] table (`None`: removes it) unless it
/// is that already: whether it changed. Inside the caller's audited write, which
/// appends its entry only on a change.
async fn set_named_value(
    conn: &mut SqliteConnection,
    t: rows::NamedValues,
    key: &str,
    value: Option<&str>,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let current: Option<String> = sqlx::query_scalar(safe_sql(format!(
        "SELECT {} FROM {} WHERE {} = ?",
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
            "INSERT INTO {table} ({k}, {v}, set_at_ms) VALUES (?, ?, ?) \
             ON CONFLICT ({k}) DO UPDATE SET {v} = excluded.{v}, set_at_ms = excluded.set_at_ms",
            table = t.table,
            k = t.key,
            v = t.value
        )))
        .bind(key)
        .bind(v)
        .bind(now_ms),
        None => sqlx::query(safe_sql(format!(
            "DELETE FROM {} WHERE {} = ?",
            t.table, t.key
        )))
        .bind(key),
    }
    .execute(&mut *conn)
    .await
    .map_err(db_err)?;
    Ok(true)
}

/// Decides and sets a new key's inherited limit ([`InheritedLimit`]) in the caller's
/// write transaction, from the settings stored now: the audit entries to append
/// (`audit`, then the limit's own if one was set).
async fn inherit_limit(
    conn: &mut SqliteConnection,
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
            "SELECT {} FROM {} WHERE {} = ?",
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

/// `Conflict(MakerNotMember)` if `r` names a person as its maker (the root of its
/// chain) who is not a member of the organisation owning `r`'s identity any more.
/// Checked in the transaction that stores the key, under the log head's lock that
/// removing a member takes too: a key made while its maker is being removed is either
/// refused here or stored before the removal and then revoked with their keys.
async fn maker_still_member(
    conn: &mut SqliteConnection,
    r: &ApiKeyRecord,
) -> Result<(), StoreError> {
    let (Some(person), Some(owner)) = (r.created_by.as_deref(), r.owner.as_deref()) else {
        return Ok(());
    };
    if !person.starts_with("usr_") {
        return Ok(());
    }
    let member: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM memberships m WHERE m.person_id = ? AND m.org_id IN \
         (SELECT org_id FROM org_issuers WHERE issuer_id = ? \
          UNION SELECT org_id FROM org_receivers WHERE receiver_id = ?))",
    )
    .bind(person)
    .bind(owner)
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
    conn: &mut SqliteConnection,
    r: &ApiKeyRecord,
    now_ms: i64,
    max: Option<u32>,
) -> Result<(), StoreError> {
    let Some(max) = max else {
        return Ok(());
    };
    let live: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM api_keys WHERE kind = ? AND owner IS ? AND revoked_at_ms IS NULL \
         AND (expires_at_ms IS NULL OR expires_at_ms > ?)",
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

async fn insert_api_key(conn: &mut SqliteConnection, r: &ApiKeyRecord) -> Result<(), StoreError> {
    sqlx::query(concat!(
        "INSERT INTO api_keys (",
        api_key_columns!(),
        ") VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::audit_note;

    #[tokio::test]
    async fn padded_batches_insert_and_match_only_their_own_rows() {
        use sqlx::Connection;
        let mut conn = SqliteConnection::connect("sqlite::memory:").await.unwrap();
        sqlx::query("CREATE TABLE t (a INTEGER NOT NULL, b TEXT)")
            .execute(&mut conn)
            .await
            .unwrap();
        let mut total = 0i64;
        for n in [1usize, 2, 3, 5, 8, 9, 200] {
            let rows: Vec<(i64, String)> = (0..n)
                .map(|i| (total + i as i64, format!("r{i}")))
                .collect();
            let mut insert = sqlx::query(sqlx::AssertSqlSafe(padded_values_sql(
                "INSERT INTO t (a, b) ",
                2,
                n,
            )));
            for (a, text) in &rows {
                insert = insert.bind(*a).bind(text.as_str());
            }
            let done = insert.execute(&mut conn).await.unwrap();
            assert_eq!(done.rows_affected(), n as u64, "{n} rows, padded");
            total += n as i64;
            // An IN list padded with NULLs matches exactly its items.
            let sql = format!(
                "SELECT COUNT(*) FROM t WHERE a IN {}",
                padded_in_list_sql("?", "NULL", n)
            );
            let mut select = sqlx::query_scalar(sqlx::AssertSqlSafe(sql));
            for (a, _) in &rows {
                select = select.bind(*a);
            }
            let found: i64 = select.fetch_one(&mut conn).await.unwrap();
            assert_eq!(found, n as i64);
        }
        let (count, nulls): (i64, i64) =
            sqlx::query_as("SELECT COUNT(*), COUNT(*) - COUNT(b) FROM t")
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!((count, nulls), (total, 0), "no padding row was inserted");
    }

    fn issuer(n: u32) -> (Issuer, ApiKeyHash) {
        let mut id = [0u8; 16];
        id[..4].copy_from_slice(&n.to_le_bytes());
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(&n.to_le_bytes());
        let issuer = Issuer {
            id: IssuerId::from_random(id),
            // Long names fill pages quickly.
            name: format!("{n}-{}", "x".repeat(400)),
            created_at_ms: 0,
        };
        (issuer, ApiKeyHash(key))
    }

    /// SQLite rolls a transaction back by itself when a write finds no space (here: the
    /// writer's `max_page_count`, as a full disk would); the writer must not stay wedged.
    #[tokio::test]
    async fn a_writer_whose_transaction_failed_for_space_is_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let pages: i64 = sqlx::query_scalar("PRAGMA page_count")
            .fetch_one(&store.writer)
            .await
            .unwrap();
        let _: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "PRAGMA max_page_count = {pages}"
        )))
        .fetch_one(&store.writer)
        .await
        .unwrap();

        let mut stored = Vec::new();
        let mut failure = None;
        for n in 0..1000 {
            let (issuer, key) = issuer(n);
            match store.create_issuer(&issuer, &key, &audit_note()).await {
                Ok(()) => stored.push(issuer),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let failure = failure.expect("a write past max_page_count failed");
        assert!(matches!(failure, StoreError::Full(_)), "{failure:?}");
        // The store says it cannot write (once the dropped transaction's task has
        // looked, a moment later; the probe waits a second after a failure).
        let deadline = Instant::now() + Duration::from_millis(500);
        while store.writable().await.is_ok() && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let said = store.writable().await;
        assert!(matches!(said, Err(StoreError::Full(_))), "{said:?}");

        // The next write goes through a new writer connection (the old one was the only
        // one capped), and succeeds; so the store is writable again.
        let (issuer, key) = issuer(5000);
        store
            .create_issuer(&issuer, &key, &audit_note())
            .await
            .unwrap();
        stored.push(issuer);
        assert_eq!(store.writable().await, Ok(()));
        let cap: i64 = sqlx::query_scalar("PRAGMA max_page_count")
            .fetch_one(&store.writer)
            .await
            .unwrap();
        assert!(cap > pages, "still the capped writer: {cap}");
        // Everything committed before the failure is there.
        for issuer in &stored {
            assert_eq!(
                store.issuer(&issuer.id).await.unwrap().as_ref(),
                Some(issuer)
            );
        }
    }

    /// A failure that says nothing about the store (a taken name) leaves it writable,
    /// and the writer it rolled back is kept.
    #[tokio::test]
    async fn a_conflict_is_not_a_storage_failure() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let (first, key) = issuer(1);
        store
            .create_issuer(&first, &key, &audit_note())
            .await
            .unwrap();
        let (mut twin, key) = issuer(2);
        twin.name = first.name.clone();
        let e = store.create_issuer(&twin, &key, &audit_note()).await;
        assert!(matches!(e, Err(StoreError::Conflict(_))), "{e:?}");
        assert_eq!(store.writable().await, Ok(()));
        let (next, key) = issuer(3);
        store
            .create_issuer(&next, &key, &audit_note())
            .await
            .unwrap();
    }

    /// The probe's lock check runs on a connection of its own: a probe cancelled
    /// at any point leaves the pool's writer able to write, with its own timeout.
    #[tokio::test]
    async fn a_cancelled_probe_leaves_the_writer_usable() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        for micros in [0u64, 50, 200, 1_000, 5_000] {
            let _ = tokio::time::timeout(Duration::from_micros(micros), store.probe()).await;
            let (i, key) = issuer(u32::try_from(micros).unwrap_or(0) + 100);
            store
                .create_issuer(&i, &key, &audit_note())
                .await
                .unwrap_or_else(|e| panic!("after a probe cut at {micros} µs: {e}"));
        }
        assert_eq!(store.probe().await, Ok(()));
    }

    /// While writes fail, `writable` probes the data dir at most once per interval: a
    /// data dir that cannot take a file keeps it failing, one that can clears it.
    #[tokio::test]
    async fn writable_probes_the_data_dir_while_failing() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path()).await.unwrap();
        let full = StoreError::Full("test".into());
        store.health.failed(&full);
        assert_eq!(store.writable().await, Err(full.clone()));
        // The probe cannot create its file where a directory of its name stands.
        let blocker = dir.path().join(PROBE_FILE);
        std::fs::create_dir(&blocker).unwrap();
        if let Some(f) = store.health.lock().as_mut() {
            f.next_probe = Instant::now();
        }
        let e = store.writable().await;
        assert!(matches!(e, Err(StoreError::Unavailable(_))), "{e:?}");
        // Not probed again before the interval: the recorded failure answers.
        assert_eq!(store.writable().await, Err(full));
        std::fs::remove_dir(&blocker).unwrap();
        if let Some(f) = store.health.lock().as_mut() {
            f.next_probe = Instant::now();
        }
        assert_eq!(store.writable().await, Ok(()));
        assert!(!blocker.exists(), "the probe leaves nothing behind");
    }
}
