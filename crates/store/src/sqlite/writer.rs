//! The ledger's writer: decision batches and quota takes run as whole transactions on
//! one thread that owns its own SQLite connection and prepared statements.
//!
//! Through sqlx every statement is a round trip to the connection's thread and back
//! to the awaiting task: a decision batch's transaction (`BEGIN`, the log head, its
//! frontier, the inserts, `COMMIT`) was six of them, each a wake-up on both sides and,
//! on a busy runtime, a wait in its queue. Here the awaiting task hands the whole
//! transaction over once and is woken once, when it has committed (or not). The
//! ledger's logic is the same code as on every backend (`ledger::record_decisions`,
//! `ledger::quota_take`): its `LedgerTx` is implemented below on this connection, and
//! each of its awaits finishes at once (a statement on this thread), so one poll runs
//! the whole transaction ([`finish`]).
//!
//! Two writers share one database file: this connection and the store's sqlx writer
//! (every other write). Both take the store's write gate before `BEGIN IMMEDIATE`,
//! so within the process they queue in order instead of meeting SQLite's busy handler
//! (which sleeps); another process is still waited for by the busy timeout.
//!
//! Failures for space or I/O are recorded for `Store::writable` as the sqlx writer's
//! are, and a connection left inside a transaction (a failed `COMMIT` or `ROLLBACK`)
//! is closed, which rolls back whatever SQLite still had, and reopened for the next
//! job.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::pin::pin;
use std::sync::{Arc, Mutex, mpsc};
use std::task::{Context, Poll, Waker};

use async_trait::async_trait;
use bonafide_core::ids::{AgentId, OrgId, ReceiverId};
use bonafide_core::merkle::Frontier;
use bonafide_core::policy::Decimal;
use rusqlite::{Connection, OpenFlags, Statement, ffi};

use super::{
    AUDIT_SIZE_SQL, BUDGET_SPENT_SQL, BUSY_TIMEOUT, CHANGE_HEAD_SQL, DECISION_ROWS_PER_INSERT,
    GATE_WAIT, MAX_IN_LIST, WRITER_STATEMENTS, WriteHealth, audit_rows_sql, change_rows_sql,
    conflict_kind, hash_rows_sql, padded_in_list_sql, padded_values_sql,
};
use crate::ledger::{BudgetRow, Claimed, LedgerTx};
use crate::log::{self, ChangeRow, HashRun, LogRow};
use crate::rows::{ClaimRow, corrupt, to_i64};
use crate::{BudgetKey, IdempotencyClaim, NonceClaim, ReceiptRecord, StoreError};

/// A transaction's work, run on the writer's thread.
type Job = Box<dyn FnOnce(&mut Writer) + Send>;

/// The handle the store keeps: sends jobs to the writer's thread.
pub(super) struct LedgerWriter {
    /// `None` once closed.
    jobs: Mutex<Option<mpsc::Sender<Job>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl LedgerWriter {
    /// Opens the writer's connection on `path` (an existing database, migrated) and
    /// starts its thread.
    pub(super) fn start(
        path: &Path,
        health: Arc<WriteHealth>,
        gate: Arc<tokio::sync::Mutex<()>>,
    ) -> Result<Self, StoreError> {
        let conn = open(path)?;
        let mut writer = Writer {
            path: path.to_owned(),
            conn: Some(conn),
            frontier: None,
            health,
            gate,
        };
        let (jobs, queue) = mpsc::channel::<Job>();
        let thread = std::thread::Builder::new()
            .name("bonafide-sqlite-ledger".into())
            .spawn(move || {
                // Ends when the store is closed or dropped (every sender gone).
                for job in queue {
                    // A panic outside a job's own work (in SQLite's wrapper, say) ends
                    // that job, whose caller is told the writer stopped, not the
                    // thread: the connection, perhaps mid-transaction, is reopened.
                    if std::panic::catch_unwind(AssertUnwindSafe(|| job(&mut writer))).is_err() {
                        writer.conn = None;
                        writer.frontier = None;
                        writer.health.failed(&StoreError::Unavailable(
                            "the ledger writer failed a transaction".into(),
                        ));
                    }
                }
            })
            .map_err(|e| StoreError::Unavailable(format!("cannot start the ledger writer: {e}")))?;
        Ok(LedgerWriter {
            jobs: Mutex::new(Some(jobs)),
            thread: Mutex::new(Some(thread)),
        })
    }

    /// Runs `work` in one write transaction on the writer's thread: committed if it
    /// returns `Ok`, rolled back otherwise. Dropping the returned future does not stop
    /// a job already handed over (as with any write: it may still commit).
    pub(super) async fn run<T, F>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Tx<'_>) -> Result<T, StoreError> + Send + 'static,
    {
        let (done, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move |writer: &mut Writer| {
            // The caller may have gone away; what was committed stays committed.
            let _ = done.send(writer.transaction(work));
        });
        let sent = match &*lock(&self.jobs) {
            Some(jobs) => jobs.send(job).is_ok(),
            None => false,
        };
        if !sent {
            return Err(StoreError::Unavailable("the store is closed".into()));
        }
        answer
            .await
            .map_err(|_| StoreError::Unavailable("the ledger writer stopped".into()))?
    }

    /// Stops taking jobs, lets the thread finish those queued, and waits for it (its
    /// connection is closed when it ends).
    pub(super) async fn close(&self) {
        drop(lock(&self.jobs).take());
        let thread = lock(&self.thread).take();
        if let Some(thread) = thread {
            let _ = tokio::task::spawn_blocking(move || thread.join()).await;
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // What it guards is replaced whole: a panic cannot leave it torn.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The thread's state: its connection (reopened after a failure left it unusable).
struct Writer {
    path: PathBuf,
    conn: Option<Connection>,
    /// The log's frontier after this connection's last committed append: the next
    /// transaction reads no hashes while the log has not grown meanwhile.
    frontier: Option<Frontier>,
    health: Arc<WriteHealth>,
    gate: Arc<tokio::sync::Mutex<()>>,
}

impl Writer {
    fn transaction<T>(
        &mut self,
        work: impl FnOnce(&mut Tx<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // The store's write gate, as the sqlx writer takes it (see the module docs).
        let _gate = match enter_gate(&self.gate, GATE_WAIT) {
            Some(gate) => gate,
            None => {
                let e = StoreError::Unavailable(format!(
                    "no write finished within {} s",
                    GATE_WAIT.as_secs()
                ));
                self.health.failed(&e);
                return Err(e);
            }
        };
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => match open(&self.path) {
                Ok(conn) => self.conn.insert(conn),
                Err(e) => {
                    self.health.failed(&e);
                    return Err(e);
                }
            },
        };
        if let Err(e) = run(conn, "BEGIN IMMEDIATE") {
            let e = sql_err(e);
            self.health.failed(&e);
            return Err(e);
        }
        let mut tx = Tx {
            conn,
            kept: self.frontier.take(),
            after: None,
        };
        // A panic in a decision's closure fails this transaction, not the thread.
        let done =
            std::panic::catch_unwind(AssertUnwindSafe(|| work(&mut tx))).unwrap_or_else(|_| {
                Err(StoreError::Backend(
                    "a decision batch panicked; rolled back".into(),
                ))
            });
        let Tx { conn, after, .. } = tx;
        let done = done.and_then(|value| match run(conn, "COMMIT") {
            Ok(()) => Ok(value),
            Err(e) => Err(sql_err(e)),
        });
        match &done {
            Ok(_) => {
                // Kept only once committed (see `LogRead::keep_frontier`).
                self.frontier = after;
                self.health.committed();
            }
            Err(e) => {
                self.health.failed(e);
                // SQLite may have rolled back by itself (no space, I/O); otherwise it
                // is done here. A connection still inside a transaction is closed
                // (which rolls back) and a new one opened for the next job.
                if !conn.is_autocommit() {
                    let _ = conn.execute_batch("ROLLBACK");
                }
                if !conn.is_autocommit() {
                    tracing::warn!(
                        "the ledger writer is stuck in a failed transaction; reopening it"
                    );
                    self.conn = None;
                }
            }
        }
        done
    }
}

/// The write gate, waited for at most [`GATE_WAIT`] (`None` past it): its lock
/// future polled on this thread, which sleeps until the gate wakes it (as tokio's
/// `blocking_lock`, which has no time limit) or the deadline passes.
fn enter_gate(
    gate: &tokio::sync::Mutex<()>,
    wait: std::time::Duration,
) -> Option<tokio::sync::MutexGuard<'_, ()>> {
    struct Unpark(std::thread::Thread);
    impl std::task::Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let deadline = std::time::Instant::now() + wait;
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut lock = pin!(gate.lock());
    loop {
        if let Poll::Ready(held) = lock.as_mut().poll(&mut cx) {
            return Some(held);
        }
        let now = std::time::Instant::now();
        if now >= deadline {
            return None;
        }
        // A spurious wake-up only polls again.
        std::thread::park_timeout(deadline - now);
    }
}

/// Runs a statement without parameters, kept prepared (`BEGIN`, `COMMIT`: parsing
/// them again for every transaction is wasted work on the writer's serial path).
fn run(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.raw_execute().map(drop)
}

/// The writer's connection: the same settings as the sqlx writer's (durable commits,
/// foreign keys, the busy timeout for other processes), its statements kept prepared.
fn open(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| StoreError::Unavailable(format!("cannot open {}: {e}", path.display())))?;
    conn.busy_timeout(BUSY_TIMEOUT).map_err(sql_err)?;
    // WAL is the file's mode already (set by the sqlx writer at open, persistent).
    conn.execute_batch("PRAGMA foreign_keys = ON; PRAGMA synchronous = FULL;")
        .map_err(sql_err)?;
    conn.set_prepared_statement_cache_capacity(WRITER_STATEMENTS);
    Ok(conn)
}

/// Polls `work` once: the writer's transactions await only statements on this thread,
/// which are done when polled, so one poll finishes them. Anything else is an error,
/// not a wait.
pub(super) fn finish<F: Future>(work: F) -> Result<F::Output, StoreError> {
    let mut work = pin!(work);
    match work.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(out) => Ok(out),
        Poll::Pending => Err(StoreError::Backend(
            "a ledger transaction waited on something other than its statements".into(),
        )),
    }
}

/// SQLite's answer as the store's error, classified as the sqlx writer's are
/// (`super::db_err`): a unique violation is a conflict, a foreign key a missing row,
/// no space `Full`, the file or lock unusable `Unavailable`.
fn sql_err(e: rusqlite::Error) -> StoreError {
    match &e {
        rusqlite::Error::SqliteFailure(failure, message) => match failure.extended_code {
            ffi::SQLITE_CONSTRAINT_UNIQUE | ffi::SQLITE_CONSTRAINT_PRIMARYKEY => {
                StoreError::Conflict(conflict_kind(message.as_deref().unwrap_or("")))
            }
            ffi::SQLITE_CONSTRAINT_FOREIGNKEY => StoreError::NotFound,
            code => super::sqlite_failure(Some(code), e.to_string()),
        },
        _ => StoreError::Backend(e.to_string()),
    }
}

/// A write transaction on the writer's connection (between the writer's `BEGIN` and
/// `COMMIT`): the log's and the ledger's statements.
pub(super) struct Tx<'c> {
    conn: &'c mut Connection,
    /// The writer's kept frontier, handed to the log's `lock` if its size is the log's.
    kept: Option<Frontier>,
    /// The frontier once this transaction has locked (and appended to) the log.
    after: Option<Frontier>,
}

impl Tx<'_> {
    /// `sql`, prepared once and kept, with `bind` binding its parameters, and each row
    /// read by `read`.
    fn query<T>(
        &self,
        sql: &str,
        bind: impl FnOnce(&mut Statement<'_>) -> rusqlite::Result<()>,
        mut read: impl FnMut(&rusqlite::Row<'_>) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let mut statement = self.conn.prepare_cached(sql).map_err(sql_err)?;
        bind(&mut statement).map_err(sql_err)?;
        let mut rows = statement.raw_query();
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(sql_err)? {
            out.push(read(row)?);
        }
        Ok(out)
    }

    /// `sql`, prepared once and kept, executed with `bind`'s parameters.
    fn execute(
        &self,
        sql: &str,
        bind: impl FnOnce(&mut Statement<'_>) -> rusqlite::Result<()>,
    ) -> Result<usize, StoreError> {
        let mut statement = self.conn.prepare_cached(sql).map_err(sql_err)?;
        bind(&mut statement).map_err(sql_err)?;
        statement.raw_execute().map_err(sql_err)
    }

    /// The one integer a statement answers.
    fn scalar(&self, sql: &str) -> Result<i64, StoreError> {
        self.query(sql, |_| Ok(()), |row| row.get::<_, i64>(0).map_err(sql_err))?
            .into_iter()
            .next()
            .ok_or_else(|| StoreError::Backend(format!("no row from {sql}")))
    }
}

/// Binds `values` to parameters 1, 2, … in order.
struct Binder<'s, 'c> {
    statement: &'s mut Statement<'c>,
    next: usize,
}

impl<'s, 'c> Binder<'s, 'c> {
    fn new(statement: &'s mut Statement<'c>) -> Self {
        Binder { statement, next: 1 }
    }

    fn bind<V: rusqlite::ToSql>(&mut self, value: V) -> rusqlite::Result<&mut Self> {
        self.statement.raw_bind_parameter(self.next, value)?;
        self.next += 1;
        Ok(self)
    }
}

fn to_u64(n: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(n).map_err(|_| corrupt(what))
}

#[async_trait]
impl log::LogRead for Tx<'_> {
    async fn log_head(&mut self) -> Result<u64, StoreError> {
        // Inside `BEGIN IMMEDIATE` the write lock is held already: this is the head.
        to_u64(self.scalar(AUDIT_SIZE_SQL)?, "audit log size")
    }

    async fn read_hash_rows(
        &mut self,
        records: &[u64],
    ) -> Result<HashMap<u64, HashRun>, StoreError> {
        let mut runs = HashMap::with_capacity(records.len());
        for chunk in records.chunks(MAX_IN_LIST) {
            let indexes = chunk
                .iter()
                .map(|r| to_i64(*r))
                .collect::<Result<Vec<_>, _>>()?;
            let rows = self.query(
                &hash_rows_sql(chunk.len()),
                |s| {
                    let mut b = Binder::new(s);
                    for index in &indexes {
                        b.bind(index)?;
                    }
                    Ok(())
                },
                |row| {
                    let idx: i64 = row.get(0).map_err(sql_err)?;
                    let leaf: Vec<u8> = row.get(1).map_err(sql_err)?;
                    let nodes: Vec<u8> = row.get(2).map_err(sql_err)?;
                    Ok((idx, leaf, nodes))
                },
            )?;
            for (idx, leaf, nodes) in rows {
                runs.insert(to_u64(idx, "audit index")?, super::hash_run(&leaf, &nodes)?);
            }
        }
        Ok(runs)
    }

    async fn change_head(&mut self) -> Result<u64, StoreError> {
        to_u64(self.scalar(CHANGE_HEAD_SQL)?, "change position")
    }

    fn kept_frontier(&mut self, size: u64) -> Option<Frontier> {
        let kept = self.kept.take().filter(|f| f.size() == size);
        // An append of nothing leaves the log as it was: still its frontier.
        self.after.clone_from(&kept);
        kept
    }

    fn keep_frontier(&mut self, frontier: &Frontier) {
        self.after = Some(frontier.clone());
    }
}

#[async_trait]
impl log::LogTx for Tx<'_> {
    async fn insert_audit_rows(&mut self, rows: &[LogRow<'_>]) -> Result<(), StoreError> {
        for chunk in rows.chunks(super::AUDIT_ROWS_PER_INSERT) {
            let values = chunk
                .iter()
                .map(super::AuditRowValues::of)
                .collect::<Result<Vec<_>, _>>()?;
            self.execute(&audit_rows_sql(chunk.len()), |s| {
                let mut b = Binder::new(s);
                for v in &values {
                    b.bind(v.index)?
                        .bind(v.leaf)?
                        .bind(&v.nodes)?
                        .bind(&*v.entry)?
                        .bind(v.agent_id)?
                        .bind(v.issuer_id)?
                        .bind(v.created_at_ms)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    async fn insert_changes(&mut self, rows: &[(u64, ChangeRow)]) -> Result<(), StoreError> {
        for chunk in rows.chunks(super::AUDIT_ROWS_PER_INSERT) {
            let positions = chunk
                .iter()
                .map(|(pos, _)| to_i64(*pos))
                .collect::<Result<Vec<_>, _>>()?;
            self.execute(&change_rows_sql(chunk.len()), |s| {
                let mut b = Binder::new(s);
                for (pos, (_, row)) in positions.iter().zip(chunk) {
                    b.bind(pos)?
                        .bind(&row.kind)?
                        .bind(&row.subject)?
                        .bind(row.expires_at_s)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }
}

/// The ledger's reads and writes ([`LedgerTx`]) on the writer's transaction. SQL of
/// the ledger lives only here (the sqlx writer never decides).
#[async_trait]
impl LedgerTx for Tx<'_> {
    async fn read_claims(
        &mut self,
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
                let sql = format!(
                    "SELECT key, request_sha256, answer, audit_index, created_at_ms \
                     FROM idempotency WHERE receiver_id = ? AND key IN {}",
                    padded_in_list_sql("?", "NULL", chunk.len())
                );
                let rows = self.query(
                    &sql,
                    |s| {
                        let mut b = Binder::new(s);
                        b.bind(receiver.as_str())?;
                        for key in chunk {
                            b.bind(*key)?;
                        }
                        Ok(())
                    },
                    |row| {
                        Ok(ClaimRow {
                            key: row.get(0).map_err(sql_err)?,
                            request_sha256: row.get(1).map_err(sql_err)?,
                            answer: row.get(2).map_err(sql_err)?,
                            audit_index: row.get(3).map_err(sql_err)?,
                            created_at_ms: row.get(4).map_err(sql_err)?,
                        })
                    },
                )?;
                for row in rows {
                    let (key, claimed) = row.into_claimed()?;
                    found.insert((receiver.clone(), key), claimed);
                }
            }
        }
        Ok(found)
    }

    async fn read_budget(&mut self, key: &BudgetKey) -> Result<Option<Decimal>, StoreError> {
        let spent = self.query(
            BUDGET_SPENT_SQL,
            |s| {
                Binder::new(s)
                    .bind(key.issuer_id.as_str())?
                    .bind(&key.policy_id)?
                    .bind(&key.period_key)?
                    .bind(&key.currency)?;
                Ok(())
            },
            |row| row.get::<_, String>(0).map_err(sql_err),
        )?;
        spent
            .into_iter()
            .next()
            .map(|text| text.parse::<Decimal>().map_err(|_| corrupt("budget spent")))
            .transpose()
    }

    async fn live_nonces(
        &mut self,
        nonces: &[&NonceClaim],
    ) -> Result<HashSet<(AgentId, String)>, StoreError> {
        // Stored values, read in a few statements (row values, two binds each).
        let mut stored: HashMap<(String, String), i64> = HashMap::new();
        for chunk in nonces.chunks(MAX_IN_LIST / 2) {
            let sql = format!(
                "SELECT agent_id, nonce, expires_at_ms FROM action_nonces \
                 WHERE (agent_id, nonce) IN {}",
                padded_in_list_sql("(?, ?)", "(NULL, NULL)", chunk.len())
            );
            let rows = self.query(
                &sql,
                |s| {
                    let mut b = Binder::new(s);
                    for n in chunk {
                        b.bind(n.agent.as_str())?.bind(&n.nonce)?;
                    }
                    Ok(())
                },
                |row| {
                    Ok((
                        row.get::<_, String>(0).map_err(sql_err)?,
                        row.get::<_, String>(1).map_err(sql_err)?,
                        row.get::<_, i64>(2).map_err(sql_err)?,
                    ))
                },
            )?;
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
            let sql = format!(
                "SELECT id FROM agents WHERE id IN {}",
                padded_in_list_sql("?", "NULL", chunk.len())
            );
            let ids = self.query(
                &sql,
                |s| {
                    let mut b = Binder::new(s);
                    for agent in chunk {
                        b.bind(agent.as_str())?;
                    }
                    Ok(())
                },
                |row| row.get::<_, String>(0).map_err(sql_err),
            )?;
            for id in ids {
                found.insert(AgentId::try_from(id.as_str()).map_err(|_| corrupt("agent id"))?);
            }
        }
        Ok(found)
    }

    async fn upsert_nonces(&mut self, nonces: &[&NonceClaim]) -> Result<(), StoreError> {
        for n in nonces {
            // Decided already: a stored row here is one that expired, replaced.
            self.execute(
                "INSERT INTO action_nonces (agent_id, nonce, expires_at_ms) VALUES (?, ?, ?) \
                 ON CONFLICT (agent_id, nonce) DO UPDATE SET expires_at_ms = excluded.expires_at_ms",
                |s| {
                    Binder::new(s)
                        .bind(n.agent.as_str())?
                        .bind(&n.nonce)?
                        .bind(n.expires_at_ms)?;
                    Ok(())
                },
            )?;
        }
        Ok(())
    }

    async fn upsert_budgets(&mut self, rows: &[BudgetRow<'_>]) -> Result<(), StoreError> {
        for row in rows {
            self.execute(
                "INSERT INTO budgets \
                 (issuer_id, policy_id, period_key, currency, spent, cap, updated_at_ms) \
                 VALUES (?, ?, ?, ?, ?, ?, ?) \
                 ON CONFLICT (issuer_id, policy_id, period_key, currency) DO UPDATE SET \
                 spent = excluded.spent, cap = excluded.cap, updated_at_ms = excluded.updated_at_ms",
                |s| {
                    Binder::new(s)
                        .bind(row.key.issuer_id.as_str())?
                        .bind(&row.key.policy_id)?
                        .bind(&row.key.period_key)?
                        .bind(&row.key.currency)?
                        .bind(row.spent.to_string())?
                        .bind(row.cap.to_string())?
                        .bind(row.at_ms)?;
                    Ok(())
                },
            )?;
        }
        Ok(())
    }

    async fn insert_receipts(&mut self, receipts: &[ReceiptRecord]) -> Result<(), StoreError> {
        for chunk in receipts.chunks(DECISION_ROWS_PER_INSERT) {
            let indexes = chunk
                .iter()
                .map(|r| r.audit_index.map(to_i64).transpose())
                .collect::<Result<Vec<_>, _>>()?;
            let sql = padded_values_sql(
                "INSERT INTO receipts \
                 (id, receiver_id, issuer_id, claims, audit_index, created_at_ms) ",
                6,
                chunk.len(),
            );
            self.execute(&sql, |s| {
                let mut b = Binder::new(s);
                for (receipt, audit_index) in chunk.iter().zip(&indexes) {
                    b.bind(receipt.id.as_str())?
                        .bind(receipt.receiver_id.as_ref().map(ReceiverId::as_str))?
                        .bind(receipt.issuer_id.as_ref().map(|i| i.as_str()))?
                        .bind(receipt.claims.as_slice())?
                        .bind(audit_index)?
                        .bind(receipt.created_at_ms)?;
                }
                Ok(())
            })?;
        }
        // The purge finds a receipt by its id's time (SQLite 0039); one whose id does
        // not carry it is kept by age too. The server's never are: no statement then.
        let undated: Vec<&ReceiptRecord> = receipts.iter().filter(|r| !r.dated_by_id()).collect();
        for chunk in undated.chunks(DECISION_ROWS_PER_INSERT) {
            let sql = padded_values_sql(
                "INSERT INTO receipts_undated (created_at_ms, id) ",
                2,
                chunk.len(),
            );
            self.execute(&sql, |s| {
                let mut b = Binder::new(s);
                for receipt in chunk {
                    b.bind(receipt.created_at_ms)?.bind(receipt.id.as_str())?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    async fn insert_claims(
        &mut self,
        claims: &[(&(ReceiverId, String), &Claimed)],
    ) -> Result<(), StoreError> {
        for chunk in claims.chunks(DECISION_ROWS_PER_INSERT) {
            let indexes = chunk
                .iter()
                .map(|(_, c)| c.audit_index.map(to_i64).transpose())
                .collect::<Result<Vec<_>, _>>()?;
            let sql = padded_values_sql(
                "INSERT INTO idempotency \
                 (receiver_id, key, request_sha256, answer, audit_index, created_at_ms) ",
                6,
                chunk.len(),
            );
            self.execute(&sql, |s| {
                let mut b = Binder::new(s);
                for (((receiver, key), claimed), audit_index) in chunk.iter().zip(&indexes) {
                    b.bind(receiver.as_str())?
                        .bind(key.as_str())?
                        .bind(claimed.request_sha256.as_slice())?
                        .bind(claimed.answer.as_slice())?
                        .bind(audit_index)?
                        .bind(claimed.created_at_ms)?;
                }
                Ok(())
            })?;
        }
        Ok(())
    }

    async fn read_quotas(
        &mut self,
        months: &[(&OrgId, &str)],
    ) -> Result<Vec<Option<(u64, bool)>>, StoreError> {
        // SQLite's one writer holds the database: a count read here is the count written.
        let mut out = Vec::with_capacity(months.len());
        for (org, month) in months {
            let row = self.query(
                "SELECT used, warned FROM quota_usage WHERE org_id = ? AND month = ?",
                |s| {
                    Binder::new(s).bind(org.as_str())?.bind(*month)?;
                    Ok(())
                },
                |row| {
                    let used: i64 = row.get(0).map_err(sql_err)?;
                    let warned: bool = row.get(1).map_err(sql_err)?;
                    Ok((to_u64(used, "quota count")?, warned))
                },
            )?;
            out.push(row.into_iter().next());
        }
        Ok(out)
    }

    async fn write_quotas(&mut self, rows: &[(&OrgId, &str, u64, bool)]) -> Result<(), StoreError> {
        for (org, month, used, warned) in rows {
            let used = to_i64(*used)?;
            self.execute(
                "INSERT INTO quota_usage (org_id, month, used, warned) VALUES (?, ?, ?, ?) \
                 ON CONFLICT (org_id, month) DO UPDATE SET used = excluded.used, \
                 warned = excluded.warned",
                |s| {
                    Binder::new(s)
                        .bind(org.as_str())?
                        .bind(*month)?
                        .bind(used)?
                        .bind(*warned)?;
                    Ok(())
                },
            )?;
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
        let (n, below) = (to_i64(n)?, to_i64(below)?);
        let after = self.query(
            "UPDATE quota_usage SET used = used + ?1 WHERE org_id = ?2 AND month = ?3 \
             AND used + ?1 < ?4 RETURNING used",
            |s| {
                s.raw_bind_parameter(1, n)?;
                s.raw_bind_parameter(2, org.as_str())?;
                s.raw_bind_parameter(3, month)?;
                s.raw_bind_parameter(4, below)
            },
            |row| row.get::<_, i64>(0).map_err(sql_err),
        )?;
        after
            .into_iter()
            .next()
            .map(|u| to_u64(u, "quota count"))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{AuditRecord, Decided, DecisionItem, Store};

    /// A decision whose audit entry is `bytes` long.
    fn big_decision(n: u32, bytes: usize) -> DecisionItem {
        let record = AuditRecord {
            entry: format!("{{\"n\":{n},\"pad\":\"{}\"}}", "x".repeat(bytes)).into_bytes(),
            agent_id: None,
            issuer_id: None,
            created_at_ms: 0,
            prepared: None,
        };
        DecisionItem {
            budget: None,
            idempotency: None,
            nonce: None,
            quota: None,
            decide: Box::new(move |_| {
                Ok(Decided {
                    audit: Some(record.clone()),
                    receipt: None,
                    charge: None,
                    answer: Vec::new(),
                })
            }),
        }
    }

    /// SQLite rolls a transaction back by itself when a write finds no space (here:
    /// the ledger connection's `max_page_count`, as a full disk would): the batch is
    /// `Full`, the store says it cannot write, nothing of the batch is stored, and
    /// once there is room again the same writer commits and the store is writable.
    #[tokio::test]
    async fn a_ledger_batch_that_finds_no_space_fails_whole_and_the_writer_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::SqliteStore::open(dir.path()).await.unwrap();
        let pages = store
            .ledger
            .run(|tx| {
                let pages = tx.scalar("PRAGMA page_count")?;
                tx.scalar(&format!("PRAGMA max_page_count = {}", pages + 8))?;
                Ok(pages)
            })
            .await
            .unwrap();
        let mut failure = None;
        let mut committed = 0;
        for n in 0..200 {
            match store.record_decisions(vec![big_decision(n, 3000)], 0).await {
                Ok(out) => {
                    assert!(out[0].is_ok(), "{out:?}");
                    committed += 1;
                }
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        let failure = failure.expect("a batch past max_page_count failed");
        assert!(matches!(failure, StoreError::Full(_)), "{failure:?}");
        // Nothing of the failed batch was written.
        let size = store.audit_size().await.unwrap();
        assert!(size > 0, "some batches fitted");
        assert_eq!(size, committed);
        let said = store.writable().await;
        assert!(matches!(said, Err(StoreError::Full(_))), "{said:?}");
        store
            .ledger
            .run(move |tx| tx.scalar(&format!("PRAGMA max_page_count = {}", pages * 1000)))
            .await
            .unwrap();
        let out = store
            .record_decisions(vec![big_decision(999, 3000)], 0)
            .await
            .unwrap();
        assert!(matches!(
            out[0],
            Ok(crate::DecisionOutcome::Recorded { audit_index: Some(i), .. }) if i == size
        ));
        assert_eq!(store.writable().await, Ok(()));
    }

    /// A decision whose closure panics fails its batch (rolled back), not the writer:
    /// the next batch commits at the same index.
    #[tokio::test]
    async fn a_panicking_decision_fails_its_batch_and_the_writer_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = super::super::SqliteStore::open(dir.path()).await.unwrap();
        let panics = DecisionItem {
            budget: None,
            idempotency: None,
            nonce: None,
            quota: None,
            decide: Box::new(|_| panic!("a decision that panics")),
        };
        let failed = store
            .record_decisions(vec![big_decision(0, 10), panics], 0)
            .await;
        assert!(matches!(failed, Err(StoreError::Backend(_))), "{failed:?}");
        assert_eq!(store.audit_size().await.unwrap(), 0);
        let out = store
            .record_decisions(vec![big_decision(1, 10)], 0)
            .await
            .unwrap();
        assert!(matches!(
            out[0],
            Ok(crate::DecisionOutcome::Recorded {
                audit_index: Some(0),
                ..
            })
        ));
        assert_eq!(store.writable().await, Ok(()));
    }

    /// The writer's thread waits for the gate until it is free (woken, not polling
    /// past its deadline), and gives up at the deadline while another holds it.
    #[test]
    fn the_gate_is_entered_once_free_and_given_up_at_the_deadline() {
        let gate = Arc::new(tokio::sync::Mutex::new(()));
        let held = gate.try_lock().unwrap();
        assert!(enter_gate(&gate, std::time::Duration::from_millis(30)).is_none());
        let waiting = {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || {
                enter_gate(&gate, std::time::Duration::from_secs(60)).is_some()
            })
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        drop(held);
        assert!(waiting.join().unwrap(), "entered once the holder left");
        assert!(
            enter_gate(&gate, std::time::Duration::ZERO).is_some(),
            "free: at once"
        );
    }

    #[test]
    fn work_that_waits_on_anything_but_its_statements_is_refused() {
        let ready = finish(async { 7 });
        assert_eq!(ready, Ok(7));
        let waits = finish(std::future::pending::<()>());
        assert!(matches!(waits, Err(StoreError::Backend(_))), "{waits:?}");
    }

    #[test]
    fn sqlite_failures_are_classified_as_the_sqlx_writers_are() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE receipts (id TEXT PRIMARY KEY); INSERT INTO receipts VALUES ('a');",
        )
        .unwrap();
        let unique = conn
            .execute_batch("INSERT INTO receipts VALUES ('a')")
            .unwrap_err();
        assert_eq!(
            sql_err(unique),
            StoreError::Conflict(crate::ConflictKind::IdTaken)
        );
        let syntax = conn.execute_batch("SELEKT 1").unwrap_err();
        assert!(matches!(sql_err(syntax), StoreError::Backend(_)));
        let full = rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_FULL), None);
        assert!(matches!(sql_err(full), StoreError::Full(_)));
        let io = rusqlite::Error::SqliteFailure(ffi::Error::new(ffi::SQLITE_IOERR_FSYNC), None);
        assert!(matches!(sql_err(io), StoreError::Unavailable(_)));
    }
}
