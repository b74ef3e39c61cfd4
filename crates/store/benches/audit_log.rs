//! The audit log's write and read paths on the SQLite store (issue 4), on a real disk,
//! each against a floor measured in the same run.
//!
//! Appends, reported as entries/s:
//! - `audit_append/batch_N/store`: `SqliteStore::audit_append` of N verify entries in
//!   one durable transaction (WAL, `synchronous=FULL`: one fsync per commit), into a
//!   log that grows through the run.
//! - `audit_append/batch_N/floor`: the floor, the same entries appended to a plain
//!   SQLite table (`idx` primary key, leaf hash, entry) with the same settings, one
//!   transaction per batch; no frontier, no interior hashes, no index.
//!   `…/floor_leaf_index`: the same plus an index on the leaf hash, as the store had
//!   in its append transaction before migration 0019 (what such a random-key index
//!   costs on the commit path; the store now extends its leaf index per checkpoint).
//! - `audit_append/group_commit/callers_C`: the server's group committer
//!   (`bonafide_server::audit::AuditLog::append`) over a fresh store: C tasks on a
//!   multi-thread tokio runtime (one worker per CPU) each append in a closed loop
//!   (send, wait until durable, repeat); the committer takes everything queued while
//!   the previous commit was in flight; as in the server, a checkpoint is signed every
//!   500 ms meanwhile. The figure the goal (≥ 50,000 entries/s) is about;
//!   entries per commit are printed.
//!
//! - `audit_entry/verify_record`: the per-request work before an entry is queued
//!   (token SHA-256, `AuditEntry`, canonical JSON), for scale.
//!
//! Proofs, in a log of 1,000,000 records built first with `audit_append` in batches of
//! 4096 (build time printed):
//! - `audit_proof/log_1000000/inclusion`: an inclusion proof of a random record as
//!   `GET /v1/audit/proof/inclusion` computes it once it knows the tree size: the
//!   stored-hash indexes (`inclusion_proof_indexes` plus the leaf), one
//!   `audit_hashes` read, `prove_record`.
//! - `audit_proof/log_1000000/inclusion_served`: the same as the server serves it
//!   (`AuditLog::hashes`): the stored hashes at `audit::UPPER_LEVEL` and above
//!   (preloaded, as the server does at start; count and bytes printed) from memory,
//!   the rest in one read.
//! - `audit_proof/log_1000000/store_round_trip`: the floor, one read through the same
//!   reader pool (`audit_size`: one B-tree descent).
//! - Then p50/p90/p99/max of 10,000 each of inclusion proofs (store only, served),
//!   consistency proofs (served, from a random older size) and round trips,
//!   interleaved, each timed on its own (criterion reports no tail percentiles); every
//!   proof is checked against the root, outside the timed part.
//!
//! Entries are realistic: canonical (RFC 8785) `AuditEntry` verify decisions as the
//! server writes them (receiver actor, agent, jti, token SHA-256, allow, one scope,
//! request id), 366 bytes, each distinct (request id and time differ), built before
//! the timed part.
//!
//! Stores live under `CARGO_TARGET_TMPDIR` (`target/tmp`, on the disk that holds the
//! target dir), not `/tmp`, which may be a tmpfs where fsync is free; the file system
//! is printed. Knobs: `BONAFIDE_PROOF_LOG_SIZE` (default 1000000),
//! `BONAFIDE_PROOF_SAMPLES` (default 10000). About 5 minutes in all.
//!
//! Run: `cargo bench -p bonafide-store --bench audit_log`
//! Parts: `cargo bench -p bonafide-store --bench audit_log -- group_commit`
//! (criterion filters: `batch_1024`, `group_commit`, `audit_proof`, …)
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bonafide_core::apikey::ApiKeyHash;
use bonafide_core::audit::{Actor, AuditEntry, Decision, EventType, token_sha256};
use bonafide_core::ids::{AgentId, IssuerId, ReceiptId, ReceiverId, TokenId};
use bonafide_core::ids::{OrgId, PersonId, SessionId};
use bonafide_core::merkle::{self, Hash, HashReader, Prefetched};
use bonafide_core::policy::Decimal;
use bonafide_server::audit::AuditLog;
use bonafide_store::{
    Agent, AgentKey, ApiKeyRecord, AuditRecord, AuditRow, BudgetKey, ChangeFeed, ChangePosition,
    CheckpointRecord, Cursor, DecisionItem, DecisionOutcome, Issuer, IssuerKey, LogKeyRecord, Page,
    ReceiptKeyRecord, ReceiptRecord, Receiver, Revocations, SigningKeyRecord, SqliteStore, Store,
    StoreError, TokenRecord,
};
use bonafide_store::{
    Invitation, Membership, NewRefresh, Organisation, Owned, Person, RefreshRecord, Role, Rotation,
    SecurityEvent, Session, Throttle,
};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Sqlite, SqlitePool};
use tokio::runtime::Runtime;

const T0_MS: i64 = 1_764_000_000_000;
/// Batch sizes for `audit_append/store`.
const BATCHES: [usize; 4] = [1, 32, 256, 1024];
/// Concurrent appenders for `audit_append/group_commit`. 32 is the load harness's
/// connection count; the committer takes at most 4096 per commit.
const CALLERS: [usize; 4] = [32, 256, 1024, 4096];
/// Batch size used to build the proof log (the committer's largest batch).
const BUILD_BATCH: usize = 4096;

/// Verify-decision entries as `routes::verify::audit_decision` writes them; the n-th
/// has its own request id and time, so every leaf hash differs.
#[derive(Debug)]
struct Entries {
    agent: AgentId,
    jti: String,
    token_sha256: String,
    next: u64,
}

impl Entries {
    fn new() -> Self {
        Entries {
            agent: AgentId::from_random([0x5a; 16]),
            jti: TokenId::from_random([0xa5; 16]).to_string(),
            // What the harness's token hashes to is irrelevant; a token-sized string.
            token_sha256: token_sha256(&"eyJ".repeat(200)),
            next: 0,
        }
    }

    fn record(&mut self) -> AuditRecord {
        let n = self.next;
        self.next += 1;
        let time_ms = T0_MS + i64::try_from(n / 16).unwrap();
        let mut entry = AuditEntry::new(
            EventType::Verify,
            time_ms,
            Actor::Receiver {
                id: "rcv_5wdfbf6vrh6hf7ctvlpcdm3cvu".to_owned(),
            },
        );
        entry.agent = Some(self.agent.to_string());
        entry.jti = Some(self.jti.clone());
        entry.token_sha256 = Some(self.token_sha256.clone());
        entry.decision = Some(Decision::Allow);
        entry.scopes = vec!["read:portfolio".to_owned()];
        entry.request_id = Some(format!("req_3f9a1c07d2e4b5a6{n:08x}"));
        AuditRecord {
            entry: entry.to_canonical().unwrap(),
            agent_id: Some(self.agent.clone()),
            issuer_id: None,
            created_at_ms: time_ms,
            prepared: None,
        }
    }

    fn batch(&mut self, n: usize) -> Vec<AuditRecord> {
        (0..n).map(|_| self.record()).collect()
    }
}

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Where stores go: `target/tmp`, the real disk.
fn bench_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("audit_log_bench")
}

/// A fresh store in its own temp dir under [`bench_dir`].
fn fresh_store(rt: &Runtime) -> (Arc<SqliteStore>, tempfile::TempDir) {
    let root = bench_dir();
    std::fs::create_dir_all(&root).unwrap();
    let dir = tempfile::tempdir_in(&root).unwrap();
    let store = rt.block_on(SqliteStore::open(dir.path())).unwrap();
    (Arc::new(store), dir)
}

/// The file system `path` is on (longest mount point prefix in `/proc/self/mounts`).
fn file_system(path: &Path) -> String {
    let path = path.canonicalize().unwrap_or_else(|_| path.to_owned());
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 3).then(|| (f[0], f[1], f[2]))
        })
        .filter(|(_, mount, _)| path.starts_with(mount))
        .max_by_key(|(_, mount, _)| mount.len())
        .map_or_else(
            || "unknown".to_owned(),
            |(dev, mount, fs)| format!("{fs} ({dev} on {mount})"),
        )
}

fn bench_append(c: &mut Criterion) {
    let rt = runtime();
    let root = bench_dir();
    std::fs::create_dir_all(&root).unwrap();
    let sample = Entries::new().record();
    eprintln!(
        "audit_log bench: stores under {} on {}; one verify entry = {} bytes: {}",
        root.display(),
        file_system(&root),
        sample.entry.len(),
        String::from_utf8_lossy(&sample.entry)
    );

    for batch in BATCHES {
        let mut group = c.benchmark_group(format!("audit_append/batch_{batch}"));
        group
            .sampling_mode(SamplingMode::Flat)
            .sample_size(20)
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(6))
            .throughput(Throughput::Elements(batch as u64));
        for leaf_index in [false, true] {
            let name = if leaf_index {
                "floor_leaf_index"
            } else {
                "floor"
            };
            let mut state: Option<(Floor, Entries)> = None;
            group.bench_function(name, |b| {
                let (floor, entries) = state
                    .get_or_insert_with(|| (rt.block_on(Floor::open(leaf_index)), Entries::new()));
                b.iter_custom(|iters| {
                    let batches: Vec<Vec<AuditRecord>> =
                        (0..iters).map(|_| entries.batch(batch)).collect();
                    rt.block_on(async {
                        let start = Instant::now();
                        for records in &batches {
                            floor.append(records).await;
                        }
                        start.elapsed()
                    })
                });
            });
            if let Some((floor, _)) = &state {
                eprintln!(
                    "  {name}, batch {batch}: table holds {} rows at the end",
                    floor.next
                );
            }
        }
        // One store per batch size, made only if this benchmark is selected.
        let mut state: Option<(Arc<SqliteStore>, tempfile::TempDir, Entries)> = None;
        group.bench_function("store", |b| {
            let (store, _dir, entries) = state.get_or_insert_with(|| {
                let (store, dir) = fresh_store(&rt);
                (store, dir, Entries::new())
            });
            b.iter_custom(|iters| {
                let batches: Vec<Vec<AuditRecord>> =
                    (0..iters).map(|_| entries.batch(batch)).collect();
                rt.block_on(async {
                    let start = Instant::now();
                    for records in &batches {
                        black_box(store.audit_append(records).await.unwrap());
                    }
                    start.elapsed()
                })
            });
        });
        if let Some((store, _, _)) = &state {
            let size = rt.block_on(store.audit_size()).unwrap();
            eprintln!("  store, batch {batch}: the log holds {size} records at the end");
        }
        group.finish();
    }

    // What the verify handler does per request before it queues the entry: build the
    // entry (token SHA-256, ids, request id) and encode it canonically.
    let mut entries = Entries::new();
    let token = "eyJ".repeat(200);
    c.bench_function("audit_entry/verify_record", |b| {
        b.iter(|| {
            entries.token_sha256 = token_sha256(black_box(&token));
            black_box(entries.record())
        });
    });

    let postgres = std::env::var("BONAFIDE_BENCH_PG_URL")
        .ok()
        .filter(|u| !u.is_empty());
    if postgres.is_none() {
        eprintln!(
            "audit_append/group_commit_postgres: not measured (set BONAFIDE_BENCH_PG_URL to \
             an admin URL of a PostgreSQL server; each run makes its own database)"
        );
    }
    for (name, on) in [
        ("audit_append/group_commit", None),
        ("audit_append/group_commit_postgres", postgres.as_deref()),
    ] {
        if name.ends_with("postgres") && on.is_none() {
            continue;
        }
        group_commit(c, &rt, name, on);
    }
}

/// The group committer's figures over SQLite (`postgres` `None`) or a fresh database
/// on the PostgreSQL server at `postgres`.
fn group_commit(c: &mut Criterion, rt: &Runtime, name: &str, postgres: Option<&str>) {
    let mut group = c.benchmark_group(name);
    group
        .sampling_mode(SamplingMode::Flat)
        .sample_size(20)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(6));
    for callers in CALLERS {
        group.throughput(Throughput::Elements(callers as u64));
        let mut state: Option<GroupCommit> = None;
        group.bench_function(format!("callers_{callers}"), |b| {
            let gc = state.get_or_insert_with(|| GroupCommit::new(rt, postgres));
            b.iter_custom(|iters| gc.run(rt, callers, iters));
        });
        if let Some(gc) = &state {
            let size = rt.block_on(gc.store.audit_size()).unwrap();
            let commits = gc.commits.load(Ordering::Relaxed);
            eprintln!(
                "  callers {callers}: store holds {size} records at the end; {} appends, \
                 mean {:.1} entries per commit",
                gc.appended.load(Ordering::Relaxed),
                gc.appended.load(Ordering::Relaxed) as f64 / commits.max(1) as f64
            );
        }
        if let Some(gc) = state {
            gc.finish(rt);
        }
    }
    group.finish();
}

/// A fresh database on the PostgreSQL server whose admin URL is `admin` (its name
/// random), and the store over it; the database's URL for dropping it.
fn fresh_postgres(rt: &Runtime, admin: &str) -> (Arc<dyn Store>, String) {
    use sqlx::Connection;
    let name = format!("bench_{}", bonafide_core::hex(&rand_tag()));
    rt.block_on(async {
        let mut conn = sqlx::PgConnection::connect(admin).await.unwrap();
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .execute(&mut conn)
            .await
            .unwrap();
        conn.close().await.unwrap();
    });
    let (base, query) = admin.split_once('?').map_or((admin, ""), |(b, q)| (b, q));
    let base = base.rsplit_once('/').map_or(base, |(b, _)| b);
    let url = if query.is_empty() {
        format!("{base}/{name}")
    } else {
        format!("{base}/{name}?{query}")
    };
    let store = rt
        .block_on(bonafide_store::PostgresStore::open(&url))
        .unwrap();
    (Arc::new(store), name)
}

/// Distinct per run (a name, not a secret).
fn rand_tag() -> [u8; 12] {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    let mut tag = [0; 12];
    tag[..8].copy_from_slice(&nanos.to_be_bytes());
    tag[8..].copy_from_slice(&std::process::id().to_be_bytes());
    tag
}

/// The floor for appends: the same entries appended durably to a plain SQLite table
/// (`idx INTEGER PRIMARY KEY, leaf_hash, entry`) with the store's settings (WAL,
/// `synchronous=FULL`, one writer connection, `BEGIN IMMEDIATE`, 256 rows per
/// `INSERT`, one transaction per batch) and nothing else: no frontier read, no
/// interior hashes, and without `leaf_index` no index. With `leaf_index`, an index on
/// the leaf hash in the append transaction, as the store had before migration 0019.
#[derive(Debug)]
struct Floor {
    pool: SqlitePool,
    next: i64,
    _dir: tempfile::TempDir,
}

impl Floor {
    async fn open(leaf_index: bool) -> Self {
        let root = bench_dir();
        std::fs::create_dir_all(&root).unwrap();
        let dir = tempfile::tempdir_in(&root).unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("floor.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full);
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(options)
            .await
            .unwrap();
        sqlx::query(
            "CREATE TABLE plain (idx INTEGER NOT NULL PRIMARY KEY, leaf_hash BLOB NOT NULL, \
             entry BLOB NOT NULL)",
        )
        .execute(&pool)
        .await
        .unwrap();
        if leaf_index {
            sqlx::query("CREATE INDEX plain_by_leaf ON plain (leaf_hash)")
                .execute(&pool)
                .await
                .unwrap();
        }
        Floor {
            pool,
            next: 0,
            _dir: dir,
        }
    }

    async fn append(&mut self, records: &[AuditRecord]) {
        let first = self.next;
        let rows: Vec<(i64, Hash, &AuditRecord)> = records
            .iter()
            .zip(first..)
            .map(|(r, i)| (i, merkle::leaf_hash(&r.entry), r))
            .collect();
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
        for chunk in rows.chunks(256) {
            let mut insert =
                QueryBuilder::<Sqlite>::new("INSERT INTO plain (idx, leaf_hash, entry) ");
            insert.push_values(chunk, |mut row, (index, leaf, record)| {
                row.push_bind(*index)
                    .push_bind(leaf.0.to_vec())
                    .push_bind(record.entry.clone());
            });
            insert.build().execute(&mut *tx).await.unwrap();
        }
        tx.commit().await.unwrap();
        self.next = first + i64::try_from(records.len()).unwrap();
    }
}

/// The real group committer on a fresh store, fed from a pool of distinct entries.
#[derive(Debug)]
struct GroupCommit {
    store: Arc<dyn Store>,
    log: Arc<AuditLog>,
    _dir: Option<tempfile::TempDir>,
    /// The PostgreSQL admin URL and the database made for this run, dropped at the end.
    database: Option<(String, String)>,
    checkpoints: tokio::task::JoinHandle<()>,
    pool: Arc<Vec<AuditRecord>>,
    next: Arc<AtomicU64>,
    appended: AtomicU64,
    commits: Arc<AtomicU64>,
}

impl GroupCommit {
    /// Distinct entries in the pool; appends cycle through it.
    const POOL: usize = 1 << 16;

    fn new(rt: &Runtime, postgres: Option<&str>) -> Self {
        let (store, dir, database): (Arc<dyn Store>, _, _) = match postgres {
            None => {
                let (store, dir) = fresh_store(rt);
                (store, Some(dir), None)
            }
            Some(admin) => {
                let (store, name) = fresh_postgres(rt, admin);
                (store, None, Some((admin.to_owned(), name)))
            }
        };
        let commits = Arc::new(AtomicU64::new(0));
        let counting: Arc<dyn Store> = Arc::new(CountingStore {
            inner: Arc::clone(&store),
            commits: Arc::clone(&commits),
        });
        let log = rt
            .block_on(AuditLog::open(
                counting,
                "bench.example/audit",
                &bonafide_server::sealing::ephemeral_kek().unwrap(),
            ))
            .unwrap();
        // As in the server: a checkpoint signed every 500 ms while the log grows (it
        // reads stored hashes and writes through the same writer connection).
        let _in_runtime = rt.enter();
        let checkpoints = log.run_checkpoints(Duration::from_millis(500));
        GroupCommit {
            store,
            log,
            _dir: dir,
            database,
            checkpoints,
            pool: Arc::new(Entries::new().batch(Self::POOL)),
            next: Arc::new(AtomicU64::new(0)),
            appended: AtomicU64::new(0),
            commits,
        }
    }

    /// `callers` tasks, each appending `iters` entries one after the other (closed
    /// loop); the time until all are durable.
    /// Stops the checkpoints and drops the run's PostgreSQL database, if any.
    fn finish(self, rt: &Runtime) {
        use sqlx::Connection;
        self.checkpoints.abort();
        drop(self.log);
        drop(self.store);
        if let Some((admin, name)) = self.database {
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await
                .unwrap();
            });
        }
    }

    fn run(&self, rt: &Runtime, callers: usize, iters: u64) -> Duration {
        self.appended
            .fetch_add(iters * callers as u64, Ordering::Relaxed);
        rt.block_on(async {
            let start = Instant::now();
            let tasks: Vec<_> = (0..callers)
                .map(|_| {
                    let log = Arc::clone(&self.log);
                    let pool = Arc::clone(&self.pool);
                    let next = Arc::clone(&self.next);
                    tokio::spawn(async move {
                        for _ in 0..iters {
                            let n = next.fetch_add(1, Ordering::Relaxed) as usize % pool.len();
                            black_box(log.append(pool[n].clone()).await.unwrap());
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await.unwrap();
            }
            start.elapsed()
        })
    }
}

type StoreResult<T> = Result<T, StoreError>;

/// Passes everything through, counting `record_decisions` calls (= group commits).
#[derive(Debug)]
struct CountingStore {
    inner: Arc<dyn Store>,
    commits: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl Store for CountingStore {
    async fn create_api_key(
        &self,
        r: &ApiKeyRecord,
        m: Option<u32>,
        l: Option<&bonafide_store::InheritedLimit>,
        a: &AuditRecord,
    ) -> StoreResult<()> {
        self.inner.create_api_key(r, m, l, a).await
    }
    async fn api_key_by_prefix(&self, p: &[u8; 8]) -> StoreResult<Option<ApiKeyRecord>> {
        self.inner.api_key_by_prefix(p).await
    }
    async fn api_keys_of(
        &self,
        k: bonafide_core::apikey::KeyKind,
        o: Option<&str>,
    ) -> StoreResult<Vec<ApiKeyRecord>> {
        self.inner.api_keys_of(k, o).await
    }
    async fn api_keys_created_by(&self, c: &str) -> StoreResult<Vec<ApiKeyRecord>> {
        self.inner.api_keys_created_by(c).await
    }
    async fn api_keys_of_departed_makers(&self, limit: u32) -> StoreResult<Vec<ApiKeyRecord>> {
        self.inner.api_keys_of_departed_makers(limit).await
    }
    async fn rotate_api_key(
        &self,
        o: &ApiKeyHash,
        n: &ApiKeyRecord,
        e: i64,
        t: i64,
        m: Option<u32>,
        l: Option<&bonafide_store::InheritedLimit>,
        a: &AuditRecord,
    ) -> StoreResult<ApiKeyRecord> {
        self.inner.rotate_api_key(o, n, e, t, m, l, a).await
    }
    async fn touch_api_key(&self, h: &ApiKeyHash, t: i64) -> StoreResult<()> {
        self.inner.touch_api_key(h, t).await
    }
    async fn revoke_api_key(
        &self,
        h: &ApiKeyHash,
        t: i64,
        a: &AuditRecord,
    ) -> StoreResult<ApiKeyRecord> {
        self.inner.revoke_api_key(h, t, a).await
    }
    async fn session_key(
        &self,
        candidate: &ReceiptKeyRecord,
    ) -> Result<ReceiptKeyRecord, StoreError> {
        self.inner.session_key(candidate).await
    }
    async fn playground_key(
        &self,
        candidate: &ReceiptKeyRecord,
    ) -> Result<ReceiptKeyRecord, StoreError> {
        self.inner.playground_key(candidate).await
    }
    async fn create_org(
        &self,
        org: &Organisation,
        owner: &Invitation,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.inner.create_org(org, owner, audit).await
    }
    async fn org(&self, id: &OrgId) -> Result<Option<Organisation>, StoreError> {
        self.inner.org(id).await
    }
    async fn set_org_require_2fa(
        &self,
        id: &OrgId,
        require: bool,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.inner.set_org_require_2fa(id, require, audit).await
    }
    async fn create_invitation(
        &self,
        invitation: &Invitation,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.inner.create_invitation(invitation, audit).await
    }
    async fn invitation(&self, token_hash: &[u8; 32]) -> Result<Option<Invitation>, StoreError> {
        self.inner.invitation(token_hash).await
    }
    async fn accept_invitation(
        &self,
        token_hash: &[u8; 32],
        person: &Person,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<(Person, Membership), StoreError> {
        self.inner
            .accept_invitation(token_hash, person, now_ms, audit)
            .await
    }
    async fn person(&self, id: &PersonId) -> Result<Option<Person>, StoreError> {
        self.inner.person(id).await
    }
    async fn person_by_email(&self, email: &str) -> Result<Option<Person>, StoreError> {
        self.inner.person_by_email(email).await
    }
    async fn memberships_of(&self, person: &PersonId) -> Result<Vec<Membership>, StoreError> {
        self.inner.memberships_of(person).await
    }
    async fn members(&self, org: &OrgId) -> Result<Vec<Membership>, StoreError> {
        self.inner.members(org).await
    }
    async fn set_member_role(
        &self,
        org: &OrgId,
        person: &PersonId,
        role: Role,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.inner.set_member_role(org, person, role, audit).await
    }
    async fn remove_member(
        &self,
        org: &OrgId,
        person: &PersonId,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.inner.remove_member(org, person, now_ms, audit).await
    }
    async fn set_owner_org(
        &self,
        what: &Owned,
        org: &OrgId,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.inner.set_owner_org(what, org, audit).await
    }
    async fn create_org_issuer(
        &self,
        issuer: &Issuer,
        key: &ApiKeyHash,
        org: &OrgId,
        created_by: &PersonId,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.inner
            .create_org_issuer(issuer, key, org, created_by, audit)
            .await
    }
    async fn create_org_receiver(
        &self,
        receiver: &Receiver,
        key: &ApiKeyHash,
        org: &OrgId,
        created_by: &PersonId,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.inner
            .create_org_receiver(receiver, key, org, created_by, audit)
            .await
    }
    async fn owner_org(&self, what: &Owned) -> Result<Option<OrgId>, StoreError> {
        self.inner.owner_org(what).await
    }
    async fn org_owned(&self, org: &OrgId) -> Result<Vec<Owned>, StoreError> {
        self.inner.org_owned(org).await
    }
    async fn create_session(
        &self,
        session: &Session,
        refresh: &NewRefresh,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.inner.create_session(session, refresh, audit).await
    }
    async fn session(&self, id: &SessionId) -> Result<Option<Session>, StoreError> {
        self.inner.session(id).await
    }
    async fn sessions_of(
        &self,
        person: &PersonId,
        now_ms: i64,
    ) -> Result<Vec<Session>, StoreError> {
        self.inner.sessions_of(person, now_ms).await
    }
    async fn refresh_token(&self, hash: &[u8; 32]) -> Result<Option<RefreshRecord>, StoreError> {
        self.inner.refresh_token(hash).await
    }
    async fn rotate_refresh(
        &self,
        old: &[u8; 32],
        new: &NewRefresh,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<Rotation, StoreError> {
        self.inner.rotate_refresh(old, new, now_ms, audit).await
    }
    async fn revoke_session(
        &self,
        id: &SessionId,
        now_ms: i64,
        reason: &str,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        self.inner.revoke_session(id, now_ms, reason, audit).await
    }
    async fn set_password(
        &self,
        person: &PersonId,
        password_hash: &str,
        keep: Option<&SessionId>,
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.inner
            .set_password(person, password_hash, keep, now_ms, audit)
            .await
    }
    async fn set_totp_pending(&self, person: &PersonId, sealed: &str) -> Result<(), StoreError> {
        self.inner.set_totp_pending(person, sealed).await
    }
    async fn enable_totp(
        &self,
        person: &PersonId,
        step: i64,
        recovery: &[[u8; 32]],
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<(), StoreError> {
        self.inner
            .enable_totp(person, step, recovery, now_ms, audit)
            .await
    }
    async fn disable_totp(&self, person: &PersonId, audit: &AuditRecord) -> Result<(), StoreError> {
        self.inner.disable_totp(person, audit).await
    }
    async fn claim_totp_step(&self, person: &PersonId, step: i64) -> Result<bool, StoreError> {
        self.inner.claim_totp_step(person, step).await
    }
    async fn use_recovery_code(
        &self,
        person: &PersonId,
        hash: &[u8; 32],
        now_ms: i64,
        audit: &AuditRecord,
    ) -> Result<bool, StoreError> {
        self.inner
            .use_recovery_code(person, hash, now_ms, audit)
            .await
    }
    async fn recovery_codes_left(&self, person: &PersonId) -> Result<u32, StoreError> {
        self.inner.recovery_codes_left(person).await
    }
    async fn login_throttle(&self, subjects: &[String]) -> Result<Vec<Throttle>, StoreError> {
        self.inner.login_throttle(subjects).await
    }
    async fn login_attempt(
        &self,
        subjects: &[String],
        failed: bool,
        now_ms: i64,
        window_ms: i64,
    ) -> Result<(), StoreError> {
        self.inner
            .login_attempt(subjects, failed, now_ms, window_ms)
            .await
    }
    async fn add_security_event(&self, event: &SecurityEvent) -> Result<(), StoreError> {
        self.inner.add_security_event(event).await
    }
    async fn security_events(
        &self,
        org: Option<&OrgId>,
        after_id: i64,
        limit: u32,
    ) -> Result<Vec<SecurityEvent>, StoreError> {
        self.inner.security_events(org, after_id, limit).await
    }
    async fn purge_security_events(&self, before_ms: i64) -> Result<u64, StoreError> {
        self.inner.purge_security_events(before_ms).await
    }
    async fn audit_append(&self, records: &[AuditRecord]) -> StoreResult<u64> {
        self.inner.audit_append(records).await
    }
    async fn add_admin_key(&self, h: &ApiKeyHash, t: i64, a: &AuditRecord) -> StoreResult<()> {
        self.inner.add_admin_key(h, t, a).await
    }
    async fn admin_keys(&self) -> StoreResult<Vec<ApiKeyRecord>> {
        self.inner.admin_keys().await
    }
    async fn revoke_admin_key(&self, h: &ApiKeyHash, t: i64, a: &AuditRecord) -> StoreResult<()> {
        self.inner.revoke_admin_key(h, t, a).await
    }
    async fn has_admin_key(&self) -> StoreResult<bool> {
        self.inner.has_admin_key().await
    }
    async fn writable(&self) -> StoreResult<()> {
        self.inner.writable().await
    }
    async fn api_key(&self, h: &ApiKeyHash) -> StoreResult<Option<ApiKeyRecord>> {
        self.inner.api_key(h).await
    }
    async fn create_issuer(&self, i: &Issuer, k: &ApiKeyHash, a: &AuditRecord) -> StoreResult<()> {
        self.inner.create_issuer(i, k, a).await
    }
    async fn issuer(&self, id: &IssuerId) -> StoreResult<Option<Issuer>> {
        self.inner.issuer(id).await
    }
    async fn issuer_by_name(&self, name: &str) -> StoreResult<Option<Issuer>> {
        self.inner.issuer_by_name(name).await
    }
    async fn create_agent(
        &self,
        g: &Agent,
        t: &TokenRecord,
        k: Option<&AgentKey>,
        a: &AuditRecord,
    ) -> StoreResult<()> {
        self.inner.create_agent(g, t, k, a).await
    }
    async fn agent(&self, id: &AgentId) -> StoreResult<Option<Agent>> {
        self.inner.agent(id).await
    }
    async fn list_agents(
        &self,
        i: &IssuerId,
        after: Option<&Cursor>,
        limit: u32,
    ) -> StoreResult<Page<Agent>> {
        self.inner.list_agents(i, after, limit).await
    }
    async fn revoke_agent(
        &self,
        i: &IssuerId,
        id: &AgentId,
        reason: Option<&str>,
        t: i64,
        a: &AuditRecord,
    ) -> StoreResult<Agent> {
        self.inner.revoke_agent(i, id, reason, t, a).await
    }
    async fn suspend_agent(
        &self,
        i: &IssuerId,
        id: &AgentId,
        reason: Option<&str>,
        t: i64,
        a: &AuditRecord,
    ) -> StoreResult<Agent> {
        self.inner.suspend_agent(i, id, reason, t, a).await
    }
    async fn reactivate_agent(
        &self,
        i: &IssuerId,
        id: &AgentId,
        a: &AuditRecord,
    ) -> StoreResult<Agent> {
        self.inner.reactivate_agent(i, id, a).await
    }
    async fn suspended_agents(&self) -> StoreResult<Vec<AgentId>> {
        self.inner.suspended_agents().await
    }
    async fn rotate_agent_key(
        &self,
        i: &IssuerId,
        g: &AgentId,
        k: &AgentKey,
        grace: i64,
        t: i64,
        a: &AuditRecord,
    ) -> StoreResult<Vec<AgentKey>> {
        self.inner.rotate_agent_key(i, g, k, grace, t, a).await
    }
    async fn agent_keys(&self, g: &AgentId) -> StoreResult<Vec<AgentKey>> {
        self.inner.agent_keys(g).await
    }
    async fn purge_action_nonces(&self, now: i64) -> StoreResult<u64> {
        self.inner.purge_action_nonces(now).await
    }
    async fn record_token(&self, t: &TokenRecord, a: &AuditRecord) -> StoreResult<()> {
        self.inner.record_token(t, a).await
    }
    async fn token(&self, jti: &TokenId) -> StoreResult<Option<TokenRecord>> {
        self.inner.token(jti).await
    }
    async fn record_delegated_token(
        &self,
        t: &TokenRecord,
        d: &bonafide_store::DelegationRecord,
        a: &AuditRecord,
    ) -> StoreResult<()> {
        self.inner.record_delegated_token(t, d, a).await
    }
    async fn delegation(
        &self,
        jti: &TokenId,
    ) -> StoreResult<Option<bonafide_store::DelegationRecord>> {
        self.inner.delegation(jti).await
    }
    async fn revoke_token(
        &self,
        i: &IssuerId,
        jti: &TokenId,
        t: i64,
        a: &AuditRecord,
    ) -> StoreResult<TokenRecord> {
        self.inner.revoke_token(i, jti, t, a).await
    }
    async fn revocations(&self) -> StoreResult<Revocations> {
        self.inner.revocations().await
    }
    async fn changes_since(
        &self,
        after: ChangePosition,
        expired_by_s: i64,
        limit: u32,
    ) -> StoreResult<ChangeFeed> {
        self.inner.changes_since(after, expired_by_s, limit).await
    }
    async fn revoke_issuer_signed_token(
        &self,
        i: &IssuerId,
        token: &TokenRecord,
        t: i64,
        a: &AuditRecord,
    ) -> StoreResult<TokenRecord> {
        self.inner.revoke_issuer_signed_token(i, token, t, a).await
    }
    async fn revoke_policy(
        &self,
        i: &IssuerId,
        policy_id: &str,
        t: i64,
        a: &AuditRecord,
    ) -> StoreResult<bonafide_store::PolicyRevocation> {
        self.inner.revoke_policy(i, policy_id, t, a).await
    }
    async fn policy_revocation_by_id(
        &self,
        id: &bonafide_core::ids::TokenId,
    ) -> Result<Option<bonafide_store::PolicyRevocation>, StoreError> {
        self.inner.policy_revocation_by_id(id).await
    }
    async fn policy_revocation(
        &self,
        i: &IssuerId,
        policy_id: &str,
    ) -> StoreResult<Option<bonafide_store::PolicyRevocation>> {
        self.inner.policy_revocation(i, policy_id).await
    }
    async fn add_issuer_key(&self, k: &IssuerKey, a: &AuditRecord) -> StoreResult<()> {
        self.inner.add_issuer_key(k, a).await
    }
    async fn issuer_keys(&self, i: &IssuerId) -> StoreResult<Vec<IssuerKey>> {
        self.inner.issuer_keys(i).await
    }
    async fn all_issuer_keys(&self) -> StoreResult<Vec<IssuerKey>> {
        self.inner.all_issuer_keys().await
    }
    async fn revoke_issuer_key(
        &self,
        i: &IssuerId,
        kid: &str,
        t: i64,
        a: &AuditRecord,
    ) -> StoreResult<IssuerKey> {
        self.inner.revoke_issuer_key(i, kid, t, a).await
    }
    async fn set_issuer_domain(
        &self,
        d: &bonafide_store::IssuerDomain,
        a: &AuditRecord,
    ) -> StoreResult<()> {
        self.inner.set_issuer_domain(d, a).await
    }
    async fn issuer_domain(
        &self,
        i: &IssuerId,
    ) -> StoreResult<Option<bonafide_store::IssuerDomain>> {
        self.inner.issuer_domain(i).await
    }
    async fn issuer_domains(&self) -> StoreResult<Vec<bonafide_store::IssuerDomain>> {
        self.inner.issuer_domains().await
    }
    async fn signing_keys(&self) -> StoreResult<Vec<SigningKeyRecord>> {
        self.inner.signing_keys().await
    }
    async fn create_first_signing_key(
        &self,
        k: &SigningKeyRecord,
        a: &AuditRecord,
    ) -> StoreResult<bool> {
        self.inner.create_first_signing_key(k, a).await
    }
    async fn reseal_private_keys(&self, r: &bonafide_store::Reseal<'_>) -> StoreResult<usize> {
        self.inner.reseal_private_keys(r).await
    }
    async fn rotate_signing_key(
        &self,
        k: &SigningKeyRecord,
        t: i64,
        a: &AuditRecord,
    ) -> StoreResult<()> {
        self.inner.rotate_signing_key(k, t, a).await
    }
    async fn audit_size(&self) -> StoreResult<u64> {
        self.inner.audit_size().await
    }
    async fn audit_hashes(&self, indexes: &[u64]) -> StoreResult<Vec<Hash>> {
        self.inner.audit_hashes(indexes).await
    }
    async fn audit_entries(&self, start: u64, end: u64) -> StoreResult<Vec<AuditRow>> {
        self.inner.audit_entries(start, end).await
    }
    async fn audit_find(&self, leaf: &Hash) -> StoreResult<Option<u64>> {
        self.inner.audit_find(leaf).await
    }
    async fn audit_pruned(&self) -> StoreResult<u64> {
        self.inner.audit_pruned().await
    }
    async fn audit_prune(
        &self,
        from: u64,
        to: u64,
        audit: Option<&AuditRecord>,
    ) -> StoreResult<u64> {
        self.inner.audit_prune(from, to, audit).await
    }
    async fn audit_find_pruned(&self, leaf: &Hash) -> StoreResult<Vec<u64>> {
        self.inner.audit_find_pruned(leaf).await
    }
    async fn audit_add_checkpoint(&self, c: &CheckpointRecord) -> StoreResult<()> {
        self.inner.audit_add_checkpoint(c).await
    }
    async fn audit_latest_checkpoint(&self) -> StoreResult<Option<CheckpointRecord>> {
        self.inner.audit_latest_checkpoint().await
    }
    async fn audit_log_key(&self, c: &LogKeyRecord) -> StoreResult<LogKeyRecord> {
        self.inner.audit_log_key(c).await
    }
    async fn create_receiver(
        &self,
        r: &Receiver,
        k: &ApiKeyHash,
        a: &AuditRecord,
    ) -> StoreResult<()> {
        self.inner.create_receiver(r, k, a).await
    }
    async fn receiver(&self, id: &ReceiverId) -> StoreResult<Option<Receiver>> {
        self.inner.receiver(id).await
    }
    async fn set_receiver_audiences(
        &self,
        id: &ReceiverId,
        audiences: &[String],
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        self.inner
            .set_receiver_audiences(id, audiences, audit)
            .await
    }
    async fn record_decisions(
        &self,
        items: Vec<DecisionItem>,
        now_ms: i64,
    ) -> StoreResult<Vec<StoreResult<DecisionOutcome>>> {
        // The group committer writes each batch here (one transaction, one fsync).
        self.commits.fetch_add(1, Ordering::Relaxed);
        self.inner.record_decisions(items, now_ms).await
    }
    async fn budget_spent(&self, key: &BudgetKey) -> StoreResult<Decimal> {
        self.inner.budget_spent(key).await
    }
    async fn receipt(&self, id: &ReceiptId) -> StoreResult<Option<ReceiptRecord>> {
        self.inner.receipt(id).await
    }
    async fn receipt_key(&self, c: &ReceiptKeyRecord) -> StoreResult<ReceiptKeyRecord> {
        self.inner.receipt_key(c).await
    }
    async fn event_key(&self, c: &ReceiptKeyRecord) -> StoreResult<ReceiptKeyRecord> {
        self.inner.event_key(c).await
    }
    async fn create_webhook(&self, w: &bonafide_store::Webhook) -> StoreResult<()> {
        self.inner.create_webhook(w).await
    }
    async fn webhooks(
        &self,
        r: Option<&bonafide_core::ids::ReceiverId>,
    ) -> StoreResult<Vec<bonafide_store::Webhook>> {
        self.inner.webhooks(r).await
    }
    async fn delete_webhook(
        &self,
        r: &bonafide_core::ids::ReceiverId,
        id: &str,
    ) -> StoreResult<bool> {
        self.inner.delete_webhook(r, id).await
    }
    async fn resume_webhook(
        &self,
        r: &bonafide_core::ids::ReceiverId,
        id: &str,
        now_ms: i64,
    ) -> StoreResult<bool> {
        self.inner.resume_webhook(r, id, now_ms).await
    }
    async fn webhook_delivered(
        &self,
        id: &str,
        upto: bonafide_store::ChangePosition,
        at_ms: i64,
        audit: &AuditRecord,
    ) -> StoreResult<()> {
        self.inner.webhook_delivered(id, upto, at_ms, audit).await
    }
    async fn webhook_failed(
        &self,
        id: &str,
        f: &bonafide_store::WebhookFailure,
    ) -> StoreResult<()> {
        self.inner.webhook_failed(id, f).await
    }
    async fn record_event_ack(
        &self,
        a: &bonafide_store::EventAck,
        audit: &AuditRecord,
    ) -> StoreResult<bool> {
        self.inner.record_event_ack(a, audit).await
    }
    async fn event_acks(
        &self,
        r: &bonafide_core::ids::ReceiverId,
        covering: Option<bonafide_store::ChangePosition>,
        limit: u32,
    ) -> StoreResult<Vec<bonafide_store::EventAck>> {
        self.inner.event_acks(r, covering, limit).await
    }
    async fn status_allocate(
        &self,
        e: &bonafide_store::StatusEntry,
        shape: bonafide_store::ListShape,
        candidates: &[u64],
        now_ms: i64,
    ) -> StoreResult<(bonafide_store::StatusSlot, bool)> {
        self.inner
            .status_allocate(e, shape, candidates, now_ms)
            .await
    }
    async fn status_lists(&self) -> StoreResult<Vec<bonafide_store::StatusListRecord>> {
        self.inner.status_lists().await
    }
    async fn status_entries(
        &self,
        list: u32,
        after: Option<u64>,
        live_after_s: i64,
        limit: u32,
    ) -> StoreResult<Vec<bonafide_store::StatusEntryRow>> {
        self.inner
            .status_entries(list, after, live_after_s, limit)
            .await
    }
    async fn status_entries_of(
        &self,
        s: &bonafide_store::StatusSubject,
        live_after_s: i64,
    ) -> StoreResult<Vec<bonafide_store::StatusEntryRow>> {
        self.inner.status_entries_of(s, live_after_s).await
    }
    async fn status_entry_horizon(&self) -> StoreResult<bonafide_store::EntryCursor> {
        self.inner.status_entry_horizon().await
    }
    async fn status_entries_since(
        &self,
        from: &bonafide_store::EntryCursor,
        after: u64,
        limit: u32,
    ) -> StoreResult<Vec<bonafide_store::StatusEntryRow>> {
        self.inner.status_entries_since(from, after, limit).await
    }
    async fn purge_status_entries(&self, by_s: i64) -> StoreResult<u64> {
        self.inner.purge_status_entries(by_s).await
    }
    async fn retire_status_list(&self, list_id: u32) -> StoreResult<bool> {
        self.inner.retire_status_list(list_id).await
    }
    async fn status_list_published(
        &self,
        list: u32,
    ) -> StoreResult<Option<bonafide_store::PublishedStatusList>> {
        self.inner.status_list_published(list).await
    }
    async fn publish_status_list(
        &self,
        p: &bonafide_store::PublishedStatusList,
    ) -> StoreResult<bool> {
        self.inner.publish_status_list(p).await
    }
    async fn status_list_key(&self, c: &ReceiptKeyRecord) -> StoreResult<ReceiptKeyRecord> {
        self.inner.status_list_key(c).await
    }
    async fn publish_next_signing_key(
        &self,
        k: &SigningKeyRecord,
        a: &AuditRecord,
    ) -> StoreResult<bool> {
        self.inner.publish_next_signing_key(k, a).await
    }
    async fn activate_next_signing_key(
        &self,
        kid: &str,
        now_s: i64,
        a: &AuditRecord,
    ) -> StoreResult<bool> {
        self.inner.activate_next_signing_key(kid, now_s, a).await
    }
    async fn rate_take(
        &self,
        takes: &[bonafide_store::RateTake],
        now_ms: i64,
    ) -> StoreResult<Vec<bonafide_store::RateGrant>> {
        self.inner.rate_take(takes, now_ms).await
    }
    async fn purge_rate_buckets(&self, before_ms: i64) -> StoreResult<u64> {
        self.inner.purge_rate_buckets(before_ms).await
    }
    async fn rate_limit_settings(&self) -> StoreResult<Vec<bonafide_store::RateLimitSetting>> {
        self.inner.rate_limit_settings().await
    }
    async fn set_rate_limit_setting(
        &self,
        name: &str,
        value: Option<&str>,
        now_ms: i64,
        a: &AuditRecord,
    ) -> StoreResult<bool> {
        self.inner
            .set_rate_limit_setting(name, value, now_ms, a)
            .await
    }
    async fn quota_take(
        &self,
        takes: &[bonafide_store::QuotaTake],
        now_ms: i64,
    ) -> StoreResult<Vec<bonafide_store::QuotaGrant>> {
        self.inner.quota_take(takes, now_ms).await
    }
    async fn quota_used(&self, org: &bonafide_core::ids::OrgId, month: &str) -> StoreResult<u64> {
        self.inner.quota_used(org, month).await
    }
    async fn org_plans(&self) -> StoreResult<Vec<(bonafide_core::ids::OrgId, String)>> {
        self.inner.org_plans().await
    }
    async fn set_org_plan(
        &self,
        org: &bonafide_core::ids::OrgId,
        plan: Option<&str>,
        now_ms: i64,
        a: &AuditRecord,
    ) -> StoreResult<bool> {
        self.inner.set_org_plan(org, plan, now_ms, a).await
    }
    async fn add_usage(&self, counts: &[bonafide_store::UsageCount]) -> StoreResult<()> {
        self.inner.add_usage(counts).await
    }
    async fn usage(
        &self,
        org: &bonafide_core::ids::OrgId,
        from: &str,
        to: &str,
    ) -> StoreResult<Vec<bonafide_store::UsageCount>> {
        self.inner.usage(org, from, to).await
    }
    async fn login_reserve(
        &self,
        rules: &[bonafide_store::accounts::ThrottleRule],
        now_ms: i64,
        window_ms: i64,
    ) -> StoreResult<i64> {
        self.inner.login_reserve(rules, now_ms, window_ms).await
    }
    async fn login_release(&self, subjects: &[String]) -> StoreResult<()> {
        self.inner.login_release(subjects).await
    }
    async fn purge_idempotency(&self, before_ms: i64) -> StoreResult<u64> {
        self.inner.purge_idempotency(before_ms).await
    }
    async fn purge_receipts(&self, before_ms: i64) -> StoreResult<u64> {
        self.inner.purge_receipts(before_ms).await
    }
    async fn record_sdk_verification(
        &self,
        v: &bonafide_store::NewSdkVerification,
    ) -> StoreResult<()> {
        self.inner.record_sdk_verification(v).await
    }
    async fn sdk_verification(
        &self,
        id_sha256: &[u8; 32],
    ) -> StoreResult<Option<bonafide_store::SdkVerification>> {
        self.inner.sdk_verification(id_sha256).await
    }
    async fn report_sdk_verification(
        &self,
        id_sha256: &[u8; 32],
        kind: bonafide_store::SdkReportKind,
        body: &str,
        at_ms: i64,
    ) -> StoreResult<bonafide_store::ReportOutcome> {
        self.inner
            .report_sdk_verification(id_sha256, kind, body, at_ms)
            .await
    }
    async fn purge_sdk_verifications(&self, before_ms: i64) -> StoreResult<u64> {
        self.inner.purge_sdk_verifications(before_ms).await
    }
}

/// A log of `size` records, built once, to prove inclusion in.
#[derive(Debug)]
struct ProofLog {
    store: Arc<SqliteStore>,
    /// The server's log over the same store: its upper hashes preloaded.
    log: Arc<AuditLog>,
    _dir: tempfile::TempDir,
    size: u64,
    root: Hash,
}

impl ProofLog {
    fn build(rt: &Runtime, size: u64) -> Self {
        let (store, dir) = fresh_store(rt);
        let mut entries = Entries::new();
        // The root kept in memory alongside, to check the store's answers against.
        let mut frontier = merkle::Frontier::empty();
        let mut in_commits = Duration::ZERO;
        let started = Instant::now();
        let mut left = size;
        while left > 0 {
            let n = left.min(BUILD_BATCH as u64);
            let batch = entries.batch(usize::try_from(n).unwrap());
            for r in &batch {
                frontier.append(merkle::leaf_hash(&r.entry)).unwrap();
            }
            let t = Instant::now();
            rt.block_on(store.audit_append(&batch)).unwrap();
            in_commits += t.elapsed();
            left -= n;
        }
        let total = started.elapsed();
        assert_eq!(rt.block_on(store.audit_size()).unwrap(), size);
        let root = rt.block_on(async {
            let idx = merkle::tree_hash_indexes(size);
            let hashes = store.audit_hashes(&idx).await.unwrap();
            merkle::tree_hash(size, &Prefetched::new(idx, hashes).unwrap()).unwrap()
        });
        assert_eq!(
            root,
            frontier.root(),
            "the store's root differs from the frontier's"
        );
        let bytes: u64 = ["bonafide.db", "bonafide.db-wal"]
            .iter()
            .filter_map(|f| std::fs::metadata(dir.path().join(f)).ok())
            .map(|m| m.len())
            .sum();
        eprintln!(
            "  built a log of {size} records in {:.1} s ({:.1} s in audit_append, batches of \
             {BUILD_BATCH}: {:.0} entries/s); database {:.0} MB, {:.0} bytes per record",
            total.as_secs_f64(),
            in_commits.as_secs_f64(),
            size as f64 / in_commits.as_secs_f64(),
            bytes as f64 / 1e6,
            bytes as f64 / size as f64
        );
        let log = rt.block_on(async {
            let log = AuditLog::open(
                Arc::clone(&store) as Arc<dyn Store>,
                "bench.example/audit",
                &bonafide_server::sealing::ephemeral_kek().unwrap(),
            )
            .await
            .unwrap();
            let t = Instant::now();
            log.warm_upper_hashes(size).await.unwrap();
            eprintln!(
                "  upper hashes (level >= {}) preloaded: {} in {:.1} ms, {} bytes of hashes \
                 ({:.0} bytes per million records)",
                bonafide_server::audit::UPPER_LEVEL,
                log.upper_hashes_held(),
                t.elapsed().as_secs_f64() * 1e3,
                log.upper_hashes_held() * 32,
                log.upper_hashes_held() as f64 * 32.0 * 1e6 / size as f64
            );
            log
        });
        ProofLog {
            store,
            log,
            _dir: dir,
            size,
            root,
        }
    }

    /// What the server does: the same as [`ProofLog::prove`], the upper levels of the
    /// tree from memory (`AuditLog::hashes`), the rest in one store read.
    async fn prove_served(&self, index: u64) -> (Hash, Vec<Hash>) {
        let mut indexes = merkle::inclusion_proof_indexes(self.size, index);
        let leaf_at = merkle::stored_hash_index(0, index);
        indexes.push(leaf_at);
        let hashes = self.log.hashes(&indexes).await.unwrap();
        let pre = Prefetched::new(indexes, hashes).unwrap();
        let leaf = pre.read_hashes(&[leaf_at]).unwrap()[0];
        (leaf, merkle::prove_record(self.size, index, &pre).unwrap())
    }

    /// The root of the first `old` records, from the store (for checking).
    async fn root_of(&self, old: u64) -> Hash {
        let idx = merkle::tree_hash_indexes(old);
        let hashes = self.store.audit_hashes(&idx).await.unwrap();
        merkle::tree_hash(old, &Prefetched::new(idx, hashes).unwrap()).unwrap()
    }

    /// A consistency proof from a tree of `old` records to the whole log, as served.
    async fn prove_consistency_served(&self, old: u64) -> Vec<Hash> {
        let indexes = merkle::consistency_proof_indexes(self.size, old);
        let hashes = self.log.hashes(&indexes).await.unwrap();
        let pre = Prefetched::new(indexes, hashes).unwrap();
        merkle::prove_tree(self.size, old, &pre).unwrap()
    }

    /// What `GET /v1/audit/proof/inclusion` does once it has the tree size: the leaf
    /// hash and the audit path, from one read of the store.
    async fn prove(&self, index: u64) -> (Hash, Vec<Hash>) {
        let mut indexes = merkle::inclusion_proof_indexes(self.size, index);
        let leaf_at = merkle::stored_hash_index(0, index);
        indexes.push(leaf_at);
        let hashes = self.store.audit_hashes(&indexes).await.unwrap();
        let pre = Prefetched::new(indexes, hashes).unwrap();
        let leaf = pre.read_hashes(&[leaf_at]).unwrap()[0];
        (leaf, merkle::prove_record(self.size, index, &pre).unwrap())
    }
}

/// SplitMix64: reproducible random record indexes without a dependency.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        (z ^ (z >> 31)) % n
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn bench_proof(c: &mut Criterion) {
    let rt = runtime();
    let size = env_u64("BONAFIDE_PROOF_LOG_SIZE", 1_000_000).max(1);
    let samples = env_u64("BONAFIDE_PROOF_SAMPLES", 10_000).max(1);
    let mut group = c.benchmark_group(format!("audit_proof/log_{size}"));
    group
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5));
    let mut state: Option<ProofLog> = None;
    let mut rng = Rng(0x00c0_ffee);
    group.bench_function("inclusion", |b| {
        let log = state.get_or_insert_with(|| ProofLog::build(&rt, size));
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(log.prove(rng.below(size)).await);
                }
                start.elapsed()
            })
        });
    });
    group.bench_function("inclusion_served", |b| {
        let log = state.get_or_insert_with(|| ProofLog::build(&rt, size));
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(log.prove_served(rng.below(size)).await);
                }
                start.elapsed()
            })
        });
    });
    // The floor: one read through the same store and reader pool (`audit_size`, one
    // B-tree descent), the least a proof served from the store can cost.
    group.bench_function("store_round_trip", |b| {
        let log = state.get_or_insert_with(|| ProofLog::build(&rt, size));
        b.iter_custom(|iters| {
            rt.block_on(async {
                let start = Instant::now();
                for _ in 0..iters {
                    black_box(log.store.audit_size().await.unwrap());
                }
                start.elapsed()
            })
        });
    });
    group.finish();
    let Some(log) = &state else { return };

    // Tail latency, which criterion does not report: each proof timed on its own,
    // alternating with a timed round trip so that both see the same machine.
    let capacity = usize::try_from(samples).unwrap();
    let mut proofs = Vec::with_capacity(capacity);
    let mut served = Vec::with_capacity(capacity);
    let mut consistency = Vec::with_capacity(capacity);
    let mut trips = Vec::with_capacity(capacity);
    let timed = |t: Instant| t.elapsed().as_secs_f64() * 1e6;
    rt.block_on(async {
        for _ in 0..samples {
            let index = rng.below(size);
            let t = Instant::now();
            let (leaf, proof) = log.prove(index).await;
            proofs.push(timed(t));
            // Checked outside the timed part: the proofs are real ones.
            merkle::check_record(&proof, size, &log.root, index, &leaf).unwrap();
            let index = rng.below(size);
            let t = Instant::now();
            let (leaf, proof) = log.prove_served(index).await;
            served.push(timed(t));
            merkle::check_record(&proof, size, &log.root, index, &leaf).unwrap();
            let old = 1 + rng.below(size);
            let t = Instant::now();
            let proof = log.prove_consistency_served(old).await;
            consistency.push(timed(t));
            let old_root = log.root_of(old).await;
            merkle::check_tree(&proof, size, &log.root, old, &old_root).unwrap();
            let t = Instant::now();
            black_box(log.store.audit_size().await.unwrap());
            trips.push(timed(t));
        }
    });
    let proofs = Percentiles::new(proofs);
    let served = Percentiles::new(served);
    let consistency = Percentiles::new(consistency);
    let trips = Percentiles::new(trips);
    eprintln!(
        "audit_proof/log_{size}: {samples} each of inclusion proofs read wholly from the store, \
         inclusion proofs as served (upper levels in memory), consistency proofs as served \
         (random old size) and store round trips, interleaved, each timed on its own and \
         checked against the root:"
    );
    eprintln!("  inclusion, store only:   {proofs}");
    eprintln!("  inclusion, served:       {served}");
    eprintln!("  consistency, served:     {consistency}");
    eprintln!("  store round trip:        {trips}");
    let verdict = |p: &Percentiles| if p.p99 < 200.0 { "met" } else { "MISSED" };
    eprintln!(
        "  served / round trip: p50 {:.2}x, p99 {:.2}x; goal p99 < 200 µs: inclusion {}, \
         consistency {}",
        served.p50 / trips.p50,
        served.p99 / trips.p99,
        verdict(&served),
        verdict(&consistency)
    );
}

/// Nearest-rank percentiles of samples in µs.
#[derive(Debug)]
struct Percentiles {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    mean: f64,
}

impl Percentiles {
    fn new(mut us: Vec<f64>) -> Self {
        us.sort_by(f64::total_cmp);
        let rank =
            |p: f64| us[((p / 100.0 * us.len() as f64).ceil() as usize).clamp(1, us.len()) - 1];
        Percentiles {
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: us[us.len() - 1],
            mean: us.iter().sum::<f64>() / us.len() as f64,
        }
    }
}

impl std::fmt::Display for Percentiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "p50 {:.1} µs, p90 {:.1} µs, p99 {:.1} µs, max {:.1} µs, mean {:.1} µs",
            self.p50, self.p90, self.p99, self.max, self.mean
        )
    }
}

criterion_group!(benches, bench_append, bench_proof);
criterion_main!(benches);
