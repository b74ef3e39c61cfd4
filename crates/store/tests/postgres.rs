//! The PostgreSQL backend: the shared conformance suite, every case, plus what only a
//! networked, many-writer database can do wrong (serialization failures and deadlocks
//! retried, a lost connection, a statement timeout, replicas sharing one log and one
//! budget).
//!
//! Needs a PostgreSQL server: `BONAFIDE_TEST_PG_URL` names it with a role that may
//! create databases (each case gets a new, empty one, dropped afterwards).
//! `scripts/test` starts a throwaway cluster for the whole suite; for this file alone:
//!
//! ```sh
//! eval "$(scripts/pg-test-cluster start)"
//! cargo test -p bonafide-store --test postgres
//! scripts/pg-test-cluster stop
//! ```
//!
//! Without the variable every test fails and says so: nothing is skipped silently.

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bonafide_core::apikey::{ApiKey, KeyKind};
use bonafide_core::ids::{AgentId, IssuerId, TokenId};
use bonafide_core::merkle::{self, Hash};
use bonafide_core::policy::Decimal;
use bonafide_store::conformance::audit_note;
use bonafide_store::{
    Agent, AgentStatus, BudgetCharge, BudgetKey, Change, ChangePosition, Decided, DecisionItem,
    DecisionOutcome, Issuer, ListShape, Location, PostgresOptions, PostgresStore, StatusEntry,
    Store, StoreError, TokenRecord,
};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, Executor};

const URL_VAR: &str = "BONAFIDE_TEST_PG_URL";
const T0_MS: i64 = 1_700_000_000_000;

/// The server's admin URL, or a failure that says how to get one.
fn admin_url() -> String {
    match std::env::var(URL_VAR) {
        Ok(url) if !url.trim().is_empty() => url,
        _ => panic!(
            "{URL_VAR} is not set: these tests need a PostgreSQL server. Run the whole suite \
             with `scripts/test` (it starts a throwaway cluster), or this file with \
             `eval \"$(scripts/pg-test-cluster start)\"` then \
             `cargo test -p bonafide-store --test postgres` (and `scripts/pg-test-cluster stop`)"
        ),
    }
}

fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "t_{}_{}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos
    )
}

async fn admin_connection(url: &str) -> PgConnection {
    let options = PgConnectOptions::from_str(url).unwrap();
    PgConnection::connect_with(&options)
        .await
        .unwrap_or_else(|e| panic!("cannot connect to {URL_VAR}: {e}"))
}

/// A new, empty database on the test server; dropped (connections and all) with it.
struct TestDb {
    admin: String,
    name: String,
    url: String,
}

impl TestDb {
    async fn create() -> TestDb {
        let admin = admin_url();
        let name = unique_name();
        let url = PostgresStore::create_test_database(&admin, &name)
            .await
            .unwrap_or_else(|e| panic!("cannot create a database at {URL_VAR}: {e}"));
        TestDb { admin, name, url }
    }

    /// A connection to this database outside any store.
    async fn connect(&self) -> PgConnection {
        admin_connection(&self.url).await
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        // Drop runs outside async: a thread of its own with its own runtime.
        let (admin, name) = (self.admin.clone(), self.name.clone());
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(PostgresStore::drop_test_database(&admin, &name))
        })
        .join();
        if !matches!(dropped, Ok(Ok(()))) {
            eprintln!("could not drop test database {}", self.name);
        }
    }
}

fn test_options() -> PostgresOptions {
    PostgresOptions::default().with_max_connections(8)
}

/// A store on a new, empty database.
async fn fresh() -> (PostgresStore, TestDb) {
    let db = TestDb::create().await;
    let store = PostgresStore::open_with(&db.url, test_options())
        .await
        .unwrap();
    (store, db)
}

mod conformance {
    bonafide_store::conformance_tests!(super::fresh);
}

// ---- fixtures

fn issuer(n: u8) -> Issuer {
    Issuer {
        id: IssuerId::from_random([n; 16]),
        name: format!("issuer-{n}.example"),
        created_at_ms: T0_MS,
    }
}

fn agent(issuer: &Issuer, n: u8) -> (Agent, TokenRecord) {
    let agent = Agent {
        id: AgentId::from_random([n; 16]),
        issuer_id: issuer.id.clone(),
        name: format!("agent {n}"),
        description: None,
        scopes: vec!["read".to_owned()],
        audience: None,
        token_ttl_s: 60,
        status: AgentStatus::Active,
        created_at_ms: T0_MS,
        revoked_at_ms: None,
        revoke_reason: None,
        policy: None,
        user: None,
        suspended_at_ms: None,
        suspend_reason: None,
        allow_bearer_tokens: false,
    };
    let token = token_of(&agent, [n; 16]);
    (agent, token)
}

fn token_of(agent: &Agent, id: [u8; 16]) -> TokenRecord {
    TokenRecord {
        jti: TokenId::from_random(id),
        agent_id: agent.id.clone(),
        issuer_id: agent.issuer_id.clone(),
        kid: "kid".to_owned(),
        issued_at_s: T0_MS / 1000,
        expires_at_s: T0_MS / 1000 + 3600,
        revoked_at_ms: None,
    }
}

async fn new_issuer(store: &dyn Store, n: u8) -> Issuer {
    let issuer = issuer(n);
    let key = ApiKey::from_random(KeyKind::Issuer, [n; 20]).hash();
    store
        .create_issuer(&issuer, &key, &audit_note())
        .await
        .unwrap();
    issuer
}

/// Every stored hash of the log equals what core computes from the stored entries,
/// and the entries are exactly indexes `0..size`.
async fn assert_log_is_one_sequence(store: &dyn Store) -> u64 {
    let size = store.audit_size().await.unwrap();
    let mut entries = Vec::new();
    while (entries.len() as u64) < size {
        let rows = store
            .audit_entries(entries.len() as u64, size)
            .await
            .unwrap();
        assert!(!rows.is_empty(), "a gap at {}", entries.len());
        for row in rows {
            assert_eq!(row.index, entries.len() as u64, "indexes are gapless");
            entries.push(row.entry);
        }
    }
    let mut expected: Vec<Hash> = Vec::new();
    for (n, entry) in entries.iter().enumerate() {
        expected.extend(merkle::stored_hashes(n as u64, entry, &expected).unwrap());
    }
    let all: Vec<u64> = (0..expected.len() as u64).collect();
    assert_eq!(store.audit_hashes(&all).await.unwrap(), expected);
    size
}

/// Waits until a backend of `db` other than `conn`'s waits for a lock; its pid.
/// `conn` must not be inside a transaction: there, `pg_stat_activity` is read once
/// and kept until it ends, so a waiter that starts after the first poll is never seen.
async fn lock_waiter(conn: &mut PgConnection) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let pid: Option<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() \
             AND pid <> pg_backend_pid() AND wait_event_type = 'Lock' LIMIT 1",
        )
        .fetch_optional(&mut *conn)
        .await
        .unwrap();
        if let Some(pid) = pid {
            return pid;
        }
        assert!(Instant::now() < deadline, "no store transaction waits");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---- the URL and the location

#[test]
fn location_parses_urls_and_never_shows_the_password() {
    let url = "postgres://bonafide:s3cret@db.internal:5432/registry?sslmode=require&password=other";
    let location = Location::parse(url).unwrap();
    assert_eq!(location, Location::Postgres(url.to_owned()));
    let shown = format!("{location} {location:?}");
    assert!(
        !shown.contains("s3cret") && !shown.contains("other"),
        "{shown}"
    );
    assert!(shown.contains("db.internal:5432/registry"), "{shown}");
    assert!(matches!(
        Location::parse("postgresql://h/db"),
        Ok(Location::Postgres(_))
    ));
    assert_eq!(
        Location::parse("sqlite://./bonafide-data"),
        Ok(Location::DataDir("./bonafide-data".into()))
    );
}

#[tokio::test]
async fn a_bad_url_is_refused_without_echoing_it() {
    let e = PostgresStore::open("postgres://user:s3cret@host:notaport/db")
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Backend(_)), "{e:?}");
    assert!(!e.to_string().contains("s3cret"), "{e}");
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable() {
    // Port 1: nobody listens there. Connecting is retried until `acquire_timeout`.
    let mut options = PostgresOptions::default();
    options.acquire_timeout = Duration::from_millis(300);
    let e = PostgresStore::open_with("postgres://postgres@127.0.0.1:1/postgres", options)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
}

#[tokio::test]
async fn exists_says_whether_the_schema_is_there() {
    let db = TestDb::create().await;
    let location = Location::Postgres(db.url.clone());
    assert!(!location.exists().await.unwrap());
    let store = bonafide_store::open(&location).await.unwrap();
    assert!(location.exists().await.unwrap());
    assert_eq!(store.writable().await, Ok(()));
}

// ---- retries

#[tokio::test]
async fn serialization_failures_and_deadlocks_are_retried() {
    let (store, _db) = fresh().await;
    for (n, code) in ["40001", "40P01"].into_iter().enumerate() {
        // Two attempts fail with a real error from the server, after writing: both are
        // rolled back, the third commits, and the log has one entry more.
        let (first, attempts) = store
            .audit_append_failing(&[audit_note()], 2, code)
            .await
            .unwrap();
        assert_eq!((first, attempts), (n as u64, 3), "{code}");
    }
    assert_eq!(assert_log_is_one_sequence(&store).await, 2);
}

#[tokio::test]
async fn retries_are_bounded_and_write_nothing() {
    let (store, _db) = fresh().await;
    let e = store
        .audit_append_failing(&[audit_note()], 100, "40001")
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    assert_eq!(store.audit_size().await.unwrap(), 0);
    // Another error is not retried: the first attempt's error is the answer.
    let e = store
        .audit_append_failing(&[audit_note()], 1, "22012")
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Backend(_)), "{e:?}");
    assert_eq!(store.audit_size().await.unwrap(), 0);
    store.audit_append(&[audit_note()]).await.unwrap();
    assert_eq!(assert_log_is_one_sequence(&store).await, 1);
}

// ---- faults

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_lost_mid_transaction_is_unavailable_then_recovers() {
    let (store, db) = fresh().await;
    let store = Arc::new(store);
    store.audit_append(&[audit_note()]).await.unwrap();

    // Hold the log head from outside: the store's next write begins, then waits.
    let mut holder = db.connect().await;
    holder.execute("BEGIN").await.unwrap();
    holder
        .execute("SELECT size FROM log_head WHERE id = 1 FOR UPDATE")
        .await
        .unwrap();
    let writer = tokio::spawn({
        let store = Arc::clone(&store);
        async move { store.audit_append(&[audit_note()]).await }
    });
    let mut admin = db.connect().await;
    let pid = lock_waiter(&mut admin).await;
    let killed: bool = sqlx::query_scalar("SELECT pg_terminate_backend($1)")
        .bind(pid)
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert!(killed);
    let e = writer.await.unwrap().unwrap_err();
    assert!(matches!(e, StoreError::Unavailable(_)), "{e:?}");
    holder.execute("ROLLBACK").await.unwrap();

    // The pool replaces the dead connection: writes and reads work again, and the
    // write that was cut off left nothing.
    assert_eq!(store.writable().await, Ok(()));
    assert_eq!(store.audit_append(&[audit_note()]).await.unwrap(), 1);
    assert_eq!(assert_log_is_one_sequence(&*store).await, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_statement_timeout_is_a_clear_unavailable() {
    let db = TestDb::create().await;
    let store = PostgresStore::open_with(
        &db.url,
        test_options().with_statement_timeout(Duration::from_millis(300)),
    )
    .await
    .unwrap();
    let mut holder = db.connect().await;
    holder.execute("BEGIN").await.unwrap();
    holder
        .execute("SELECT size FROM log_head WHERE id = 1 FOR UPDATE")
        .await
        .unwrap();
    let started = Instant::now();
    let e = store.audit_append(&[audit_note()]).await.unwrap_err();
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    match &e {
        StoreError::Unavailable(text) => assert!(text.contains("statement timeout"), "{text}"),
        other => panic!("{other:?}"),
    }
    holder.execute("ROLLBACK").await.unwrap();
    assert_eq!(store.audit_append(&[audit_note()]).await.unwrap(), 0);
}

// ---- replicas

/// Three stores on one database behave as one registry: migrations run once though
/// they open at once, the audit log stays one gapless sequence, a shared budget is
/// charged exactly up to its cap, and a reader of the change feed on one never misses
/// a revocation committed through another, nor sees a position twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_one_log_one_budget_and_one_change_feed() {
    const REPLICAS: usize = 3;
    const SPENDS: usize = 150;
    const CAP: i64 = 100;
    let db = TestDb::create().await;
    let opened = futures_join_all((0..REPLICAS).map(|_| {
        let url = db.url.clone();
        async move { PostgresStore::open_with(&url, test_options()).await }
    }))
    .await;
    let replicas: Vec<Arc<PostgresStore>> =
        opened.into_iter().map(|s| Arc::new(s.unwrap())).collect();
    let mut conn = db.connect().await;
    let migrations: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM _sqlx_migrations")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    // Each migration applied once, though three replicas started at once.
    let files = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/postgres"))
        .unwrap()
        .count();
    assert_eq!(migrations, files as i64);

    let issuer = new_issuer(&*replicas[0], 1).await;
    let (agent, _) = agent(&issuer, 1);
    replicas[1]
        .create_agent(&agent, &token_of(&agent, [0; 16]), None, &audit_note())
        .await
        .unwrap();
    let key = BudgetKey {
        issuer_id: issuer.id.clone(),
        policy_id: "pol_daily".to_owned(),
        period_key: "2023-11-14".to_owned(),
        currency: "EUR".to_owned(),
    };
    let cap = Decimal::from(CAP);
    let size_before = replicas[0].audit_size().await.unwrap();

    let mut tasks = tokio::task::JoinSet::new();
    // Spends, one per call, spread over the replicas: allowed while they fit.
    for n in 0..SPENDS {
        let store = Arc::clone(&replicas[n % REPLICAS]);
        let key = key.clone();
        tasks.spawn(async move {
            let item = DecisionItem {
                quota: None,
                budget: Some(BudgetCharge {
                    key,
                    cap,
                    ancestors: Vec::new(),
                }),
                idempotency: None,
                nonce: None,
                decide: Box::new(move |spent| {
                    let fits = spent.unwrap_or(Decimal::ZERO) + Decimal::ONE <= cap;
                    Ok(Decided {
                        audit: Some(audit_note()),
                        receipt: None,
                        charge: fits.then_some(Decimal::ONE),
                        answer: Vec::new(),
                    })
                }),
            };
            let outcome = store
                .record_decisions(vec![item], T0_MS)
                .await
                .unwrap()
                .remove(0)
                .unwrap();
            match outcome {
                DecisionOutcome::Recorded {
                    audit_index: Some(index),
                    spent_before: Some(spent),
                    ..
                } => (Some(index), spent < cap),
                other => panic!("{other:?}"),
            }
        });
    }
    // Plain appends, batches of three, beside them.
    for n in 0..30 {
        let store = Arc::clone(&replicas[n % REPLICAS]);
        tasks.spawn(async move {
            let first = store
                .audit_append(&[audit_note(), audit_note(), audit_note()])
                .await
                .unwrap();
            (Some(first), false)
        });
    }
    // Revocations through every replica while one reader follows the feed.
    let mut tokens = Vec::new();
    for n in 0..30u8 {
        let token = token_of(&agent, [n + 1; 16]);
        replicas[usize::from(n) % REPLICAS]
            .record_token(&token, &audit_note())
            .await
            .unwrap();
        tokens.push(token);
    }
    for (n, token) in tokens.iter().enumerate() {
        let store = Arc::clone(&replicas[n % REPLICAS]);
        let (issuer, jti) = (issuer.id.clone(), token.jti.clone());
        tasks.spawn(async move {
            store
                .revoke_token(&issuer, &jti, T0_MS, &audit_note())
                .await
                .unwrap();
            (None, false)
        });
    }
    let reader = {
        let store = Arc::clone(&replicas[2]);
        let expected = tokens.len();
        tokio::spawn(async move {
            let mut seen = HashSet::new();
            let mut after = ChangePosition::START;
            let deadline = Instant::now() + Duration::from_secs(60);
            while seen.len() < expected {
                assert!(Instant::now() < deadline, "the feed missed a revocation");
                // Small pages: the reader pages while writers commit.
                let feed = store.changes_since(after, 0, 7).await.unwrap();
                assert!(feed.next >= after);
                for change in feed.changes {
                    match change {
                        Change::TokenRevoked { jti, .. } => {
                            assert!(seen.insert(jti), "a revocation read twice");
                        }
                        other => panic!("unexpected change {other:?}"),
                    }
                }
                after = feed.next;
            }
            seen
        })
    };

    let mut allowed = 0;
    let mut indexes = HashSet::new();
    while let Some(done) = tasks.join_next().await {
        let (index, charged) = done.unwrap();
        if let Some(index) = index {
            assert!(indexes.insert(index), "index {index} handed out twice");
        }
        allowed += usize::from(charged);
    }
    assert_eq!(allowed, CAP as usize, "exactly cap / amount spends allowed");
    assert_eq!(replicas[1].budget_spent(&key).await.unwrap(), cap);
    let seen = reader.await.unwrap();
    assert_eq!(seen.len(), tokens.len());
    // Change positions, handed out by three processes' writers, are gapless: the last
    // is the number of changes.
    let all = replicas[0]
        .changes_since(ChangePosition::START, 0, 1000)
        .await
        .unwrap();
    assert_eq!(all.changes.len(), tokens.len());
    assert_eq!(all.next, ChangePosition::new(tokens.len() as u64));

    let size = assert_log_is_one_sequence(&*replicas[2]).await;
    // Every spend, every append, each token's record and revocation: nothing lost.
    assert_eq!(
        size,
        size_before + SPENDS as u64 + 30 * 3 + 2 * tokens.len() as u64
    );
    // A decision's index holds that decision's entry: every index any replica
    // answered exists.
    assert!(indexes.iter().all(|i| *i < size));
}

/// `join_all` without a futures dependency: spawn each, await in order.
async fn futures_join_all<F>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}

// ---- copying a SQLite registry (`bonafide_store::copy`, `bonafide migrate`)

/// A SQLite registry: two issuers' agents (one listed from before listings followed
/// commit order, at a negative position, as SQLite migration 0016 left it), tokens, a
/// revoked agent and token, a suspension, a signing key, a checkpoint.
async fn sqlite_registry(dir: &std::path::Path) -> (bonafide_store::SqliteStore, Vec<AgentId>) {
    let store = bonafide_store::SqliteStore::open(dir).await.unwrap();
    let mut ids = Vec::new();
    for n in 1..=2u8 {
        let issuer = new_issuer(&store, n).await;
        for m in 0..3u8 {
            let (agent, token) = agent(&issuer, n * 10 + m);
            store
                .create_agent(&agent, &token, None, &audit_note())
                .await
                .unwrap();
            ids.push(agent.id);
        }
    }
    let (revoked_issuer, _) = (issuer(1), ());
    store
        .revoke_agent(
            &revoked_issuer.id,
            &ids[1],
            Some("gone"),
            T0_MS + 1,
            &audit_note(),
        )
        .await
        .unwrap();
    let (a, _) = agent(&revoked_issuer, 12);
    store
        .revoke_token(
            &revoked_issuer.id,
            &token_of(&a, [12; 16]).jti,
            T0_MS + 2,
            &audit_note(),
        )
        .await
        .unwrap();
    store
        .suspend_agent(
            &issuer(2).id,
            &ids[4],
            Some("paused"),
            T0_MS + 3,
            &audit_note(),
        )
        .await
        .unwrap();
    let key = bonafide_store::SigningKeyRecord {
        kid: "kid-1".to_owned(),
        alg: bonafide_core::keys::Algorithm::EdDSA,
        private_pem: "plain private key text".to_owned(),
        state: bonafide_store::KeyState::Active,
        created_at_ms: T0_MS,
        publish_until_s: None,
    };
    assert!(
        store
            .create_first_signing_key(&key, &audit_note())
            .await
            .unwrap()
    );
    let size = store.audit_size().await.unwrap();
    store
        .audit_add_checkpoint(&bonafide_store::CheckpointRecord {
            size,
            root: [7; 32].into(),
            note: "a signed note".to_owned(),
            created_at_ms: T0_MS + 4,
        })
        .await
        .unwrap();
    // The first agent as a registry older than SQLite migration 0016 left it.
    let mut raw = sqlx::SqliteConnection::connect(&format!("sqlite://{}", store.path().display()))
        .await
        .unwrap();
    sqlx::query("UPDATE agents SET list_pos = -1 WHERE id = ?")
        .bind(ids[0].as_str())
        .execute(&mut raw)
        .await
        .unwrap();
    raw.close().await.unwrap();
    (store, ids)
}

/// SQLite keeps receipts whose ids do not date them by age in a table of its own
/// (`receipts_undated`, 0039), which the copy leaves behind (`copy::SQLITE_ONLY`):
/// the receipts arrive, and PostgreSQL's purge finds them by their age.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_sqlite_keeps_by_age_are_copied_and_purged_by_age() {
    use bonafide_core::ids::ReceiptId;
    let tmp = tempfile::tempdir().unwrap();
    let source = bonafide_store::SqliteStore::open(tmp.path()).await.unwrap();
    let path = source.path().to_path_buf();
    source.close().await;
    drop(source);
    let made = [
        (ReceiptId::from_random([0x61; 16]), 1_000i64),
        (ReceiptId::from_random([0x62; 16]), 10_000),
    ];
    let mut raw = <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!(
        "sqlite://{}",
        path.display()
    ))
    .await
    .unwrap();
    for (id, at) in &made {
        for sql in [
            "INSERT INTO receipts (id, receiver_id, issuer_id, claims, audit_index, created_at_ms) \
             VALUES (?1, NULL, NULL, x'7b7d', NULL, ?2)",
            "INSERT INTO receipts_undated (id, created_at_ms) VALUES (?1, ?2)",
        ] {
            sqlx::query(sql)
                .bind(id.as_str())
                .bind(at)
                .execute(&mut raw)
                .await
                .unwrap();
        }
    }
    <sqlx::SqliteConnection as sqlx::Connection>::close(raw)
        .await
        .unwrap();
    let source = bonafide_store::SqliteStore::open(tmp.path()).await.unwrap();
    let (target, _db) = fresh().await;
    let keep = |_: &bonafide_store::PrivateKeySlot, text: &str| Ok(Some(text.to_owned()));
    let report = bonafide_store::copy::sqlite_to_postgres(&source, &target, &keep)
        .await
        .unwrap();
    let rows: std::collections::BTreeMap<_, _> = report.tables.iter().cloned().collect();
    assert_eq!(rows["receipts"], 2);
    assert!(!rows.contains_key("receipts_undated"), "{rows:?}");
    for (id, _) in &made {
        assert!(target.receipt(id).await.unwrap().is_some(), "{id}");
    }
    assert_eq!(target.purge_receipts(5_000).await.unwrap(), 1);
    assert!(target.receipt(&made[0].0).await.unwrap().is_none());
    assert!(target.receipt(&made[1].0).await.unwrap().is_some());
}

/// Everything a reader of either backend sees is the same after the copy; the keys
/// went through the re-sealing callback; a second copy into the same database is
/// refused and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_registry_is_copied_whole_and_only_into_an_empty_database() {
    let tmp = tempfile::tempdir().unwrap();
    let (source, ids) = sqlite_registry(tmp.path()).await;
    let (target, _db) = fresh().await;
    let reseal = |slot: &bonafide_store::PrivateKeySlot, text: &str| {
        Ok(Some(format!("{}|{text}", slot.identity())))
    };
    let report = bonafide_store::copy::sqlite_to_postgres(&source, &target, &reseal)
        .await
        .unwrap();
    assert_eq!(report.keys_resealed, 1);
    assert_eq!(report.audit_size, source.audit_size().await.unwrap());
    let rows: std::collections::BTreeMap<_, _> = report.tables.iter().cloned().collect();
    assert_eq!(rows["agents"], 6);
    assert_eq!(rows["tokens"], 6);
    assert_eq!(rows["audit_checkpoints"], 1);

    for id in &ids {
        assert_eq!(
            target.agent(id).await.unwrap(),
            source.agent(id).await.unwrap()
        );
    }
    for n in 1..=2 {
        let issuer = issuer(n);
        let (s, t) = (
            source.list_agents(&issuer.id, None, 100).await.unwrap(),
            target.list_agents(&issuer.id, None, 100).await.unwrap(),
        );
        assert_eq!(
            t.items.iter().map(|a| &a.id).collect::<Vec<_>>(),
            s.items.iter().map(|a| &a.id).collect::<Vec<_>>(),
            "listing order, the legacy position first"
        );
    }
    assert_eq!(
        target.revocations().await.unwrap(),
        source.revocations().await.unwrap()
    );
    assert_eq!(
        target.suspended_agents().await.unwrap(),
        source.suspended_agents().await.unwrap()
    );
    assert_eq!(
        target
            .changes_since(ChangePosition::START, 0, 1000)
            .await
            .unwrap(),
        source
            .changes_since(ChangePosition::START, 0, 1000)
            .await
            .unwrap()
    );
    assert_eq!(
        assert_log_is_one_sequence(&target).await,
        source.audit_size().await.unwrap()
    );
    assert_eq!(
        target.audit_latest_checkpoint().await.unwrap(),
        source.audit_latest_checkpoint().await.unwrap()
    );
    let keys = target.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        keys[0].private_pem,
        "signing-key/kid-1|plain private key text"
    );

    // The copy keeps writing where the source stopped: the log head, and the
    // identity sequences past the copied rows.
    let before = target.audit_size().await.unwrap();
    let issuer3 = new_issuer(&target, 3).await;
    let (a, t) = agent(&issuer3, 30);
    target
        .create_agent(&a, &t, None, &audit_note())
        .await
        .unwrap();
    assert_eq!(target.audit_size().await.unwrap(), before + 2);
    assert_log_is_one_sequence(&target).await;

    let again = bonafide_store::copy::sqlite_to_postgres(&source, &target, &reseal).await;
    assert!(
        matches!(
            again,
            Err(bonafide_store::copy::CopyError::TargetNotEmpty { .. })
        ),
        "{again:?}"
    );
    assert_eq!(target.audit_size().await.unwrap(), before + 2);
}

/// A pruned log (`Store::audit_prune`) is copied as it is: the mark, the kept last
/// record of each pruned tile, the rest; the target reads, finds and appends as the
/// source does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruned_log_is_copied_as_it_is() {
    let tmp = tempfile::tempdir().unwrap();
    let source = bonafide_store::SqliteStore::open(tmp.path()).await.unwrap();
    let records: Vec<_> = (0..600).map(|_| audit_note()).collect();
    source.audit_append(&records).await.unwrap();
    source
        .audit_add_checkpoint(&bonafide_store::CheckpointRecord {
            size: 600,
            root: [7; 32].into(),
            note: "a signed note".to_owned(),
            created_at_ms: T0_MS,
        })
        .await
        .unwrap();
    source
        .audit_prune(0, 512, Some(&audit_note()))
        .await
        .unwrap();
    let (target, _db) = fresh().await;
    let keep = |_: &bonafide_store::PrivateKeySlot, _: &str| Ok(None);
    let report = bonafide_store::copy::sqlite_to_postgres(&source, &target, &keep)
        .await
        .unwrap();
    assert_eq!(report.audit_size, 601);
    assert_eq!(target.audit_pruned().await.unwrap(), 512);
    assert_eq!(
        target.audit_entries(0, 601).await.unwrap(),
        source.audit_entries(0, 601).await.unwrap()
    );
    let idx = merkle::tree_hash_indexes(601);
    assert_eq!(
        target.audit_hashes(&idx).await.unwrap(),
        source.audit_hashes(&idx).await.unwrap()
    );
    let leaf = merkle::leaf_hash(&records[3].entry);
    assert_eq!(target.audit_find_pruned(&leaf).await.unwrap(), vec![3]);
    assert_eq!(target.audit_append(&[audit_note()]).await.unwrap(), 601);
}

/// A write to the source while it is read (a server still running on it) aborts the
/// copy with nothing written to the target; a re-sealing failure does too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_cannot_finish_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let (source, _) = sqlite_registry(tmp.path()).await;
    let (target, db) = fresh().await;

    // Another process's write, made while the copy holds its snapshot (the callback
    // runs mid-copy; a thread of its own, since it is not async).
    let dir = tmp.path().to_owned();
    let writes_meanwhile = move |_: &bonafide_store::PrivateKeySlot, _: &str| {
        let dir = dir.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let other = bonafide_store::SqliteStore::open(&dir).await.unwrap();
                other.audit_append(&[audit_note()]).await.unwrap();
                other.close().await;
            });
        })
        .join()
        .unwrap();
        Ok(None)
    };
    let copied =
        bonafide_store::copy::sqlite_to_postgres(&source, &target, &writes_meanwhile).await;
    assert!(
        matches!(copied, Err(bonafide_store::copy::CopyError::SourceChanged)),
        "{copied:?}"
    );
    let refuses = |_: &bonafide_store::PrivateKeySlot, _: &str| {
        Err(StoreError::Backend("the KEK does not open it".to_owned()))
    };
    let copied = bonafide_store::copy::sqlite_to_postgres(&source, &target, &refuses).await;
    assert!(
        matches!(copied, Err(bonafide_store::copy::CopyError::Store(_))),
        "{copied:?}"
    );

    let mut conn = db.connect().await;
    for table in bonafide_store::copy::TABLES {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM {table}")))
                .fetch_one(&mut conn)
                .await
                .unwrap();
        assert_eq!(n, 0, "{table} stays empty");
    }
    assert_eq!(target.audit_size().await.unwrap(), 0);

    // And with the source quiet, the same copy goes through.
    let keep = |_: &bonafide_store::PrivateKeySlot, _: &str| Ok(None);
    bonafide_store::copy::sqlite_to_postgres(&source, &target, &keep)
        .await
        .unwrap();
    assert_eq!(
        target.audit_size().await.unwrap(),
        source.audit_size().await.unwrap()
    );
}

// ---- status entries committed late

/// An allocation whose transaction commits late — after an entry with a higher `seq`
/// committed and was read, and after reader rounds moved their horizon on — is still
/// read, in the first round after it commits: new entries are read by transaction
/// visibility (`xid8`, `pg_snapshot_xmin`), so no clock window bounds how late a commit
/// may be. A `seq` cursor would have passed it (its `seq` is below the one read).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_status_entry_committed_late_is_still_read_after_it_commits() {
    let (store, db) = fresh().await;
    let store = Arc::new(store);
    let issuer = IssuerId::from_random([7; 16]);
    let agent = AgentId::from_random([8; 16]);
    let entry = |n: u8| StatusEntry {
        jti: TokenId::from_random([n; 16]),
        agent_id: agent.clone(),
        issuer_id: issuer.clone(),
        expires_at_s: T0_MS / 1000 + 3600,
        actors: Vec::new(),
        ancestor_jtis: Vec::new(),
        keys: Vec::new(),
    };
    let shape = ListShape {
        bits: 2,
        size: 1024,
    };
    let (first, _) = store
        .status_allocate(&entry(1), shape, &[1], T0_MS)
        .await
        .unwrap();
    let mut reader_horizon = store.status_entry_horizon().await.unwrap();

    // Another session holds the list's row: an allocation into it inserts its entry
    // (taking its `seq`), then waits to count it, its transaction open.
    let mut blocker = db.connect().await;
    blocker.execute("BEGIN").await.unwrap();
    sqlx::query("SELECT 1 FROM status_lists WHERE id = $1 FOR UPDATE")
        .bind(i64::from(first.list_id))
        .execute(&mut blocker)
        .await
        .unwrap();
    let late = entry(2);
    let pending = tokio::spawn({
        let (store, late) = (store.clone(), late.clone());
        async move { store.status_allocate(&late, shape, &[2], T0_MS).await }
    });
    let mut watcher = db.connect().await;
    lock_waiter(&mut watcher).await;

    // Meanwhile an entry in another list commits, with a higher `seq`, and reader
    // rounds read it and move on; the late entry is in none of them.
    let other = entry(3);
    store
        .status_allocate(
            &other,
            ListShape {
                bits: 2,
                size: 2048,
            },
            &[3],
            T0_MS,
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..3 {
        let next = store.status_entry_horizon().await.unwrap();
        let rows = store
            .status_entries_since(&reader_horizon, 0, 100)
            .await
            .unwrap();
        assert!(
            rows.iter().all(|r| r.entry.jti != late.jti),
            "not committed yet"
        );
        seen.extend(rows);
        reader_horizon = next;
    }
    let other_seq = seen
        .iter()
        .find(|r| r.entry.jti == other.jti)
        .map(|r| r.seq)
        .expect("the committed entry was read");
    // Read once: the open transactions make only their own entries come again, not
    // every entry committed since they began.
    assert_eq!(
        seen.iter().filter(|r| r.entry.jti == other.jti).count(),
        1,
        "an entry committed and read is not read again while another transaction stays open"
    );

    // The late transaction commits: the next round reads it.
    blocker.execute("COMMIT").await.unwrap();
    let (_, new) = pending.await.unwrap().unwrap();
    assert!(new);
    let rows = store
        .status_entries_since(&reader_horizon, 0, 100)
        .await
        .unwrap();
    let late_row = rows
        .iter()
        .find(|r| r.entry.jti == late.jti)
        .expect("the entry committed late is read after it commits");
    assert!(
        late_row.seq < other_seq,
        "its seq ({}) is below one read before it committed ({other_seq}): a seq cursor would miss it",
        late_row.seq
    );
}
