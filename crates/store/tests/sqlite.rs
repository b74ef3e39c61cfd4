//! The SQLite backend: the shared conformance suite, plus what only a file-backed store
//! has (permissions, reopening, a corrupted row).

use std::path::Path;

use bonafide_core::apikey::{ApiKey, KeyKind};
use bonafide_core::ids::{AgentId, IssuerId, TokenId};
use bonafide_store::conformance::audit_note;
use bonafide_store::{
    Agent, AgentStatus, BudgetCharge, BudgetKey, Change, ChangePosition, Decided, DecisionItem,
    Issuer, KeyState, SigningKeyRecord, SqliteStore, Store, StoreError, TokenRecord,
};
use tempfile::TempDir;

/// A new store in a directory that does not exist yet, inside a fresh temp dir.
async fn fresh() -> (SqliteStore, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("data")).await.unwrap();
    (store, dir)
}

mod conformance {
    bonafide_store::conformance_tests!(super::fresh);
}

/// A connection of its own to the database file at `path`, outside the store: to put
/// a database back to what an older build left.
async fn raw_connection(path: &Path) -> sqlx::SqliteConnection {
    <sqlx::SqliteConnection as sqlx::Connection>::connect(&format!("sqlite://{}", path.display()))
        .await
        .unwrap()
}

async fn close_raw(conn: sqlx::SqliteConnection) {
    <sqlx::SqliteConnection as sqlx::Connection>::close(conn)
        .await
        .unwrap();
}

/// The whole suite once more against the store at `BONAFIDE_TEST_STORE_URL`, when it
/// is set: a second backend's (or SQLite's elsewhere, `sqlite://<parent dir>`), each
/// case on a fresh, empty store. An unknown or unsupported scheme fails here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_at_bonafide_test_store_url() {
    bonafide_store::conformance::run_at_env_url().await;
}

const T0_MS: i64 = 1_700_000_000_000;

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
        policy: Some(r#"{"id":"pol_1","v":"pol.v0.2"}"#.to_owned()),
        user: Some("did:example:bob".to_owned()),
        suspended_at_ms: None,
        suspend_reason: None,
        allow_bearer_tokens: false,
    };
    let token = TokenRecord {
        jti: TokenId::from_random([n; 16]),
        agent_id: agent.id.clone(),
        issuer_id: issuer.id.clone(),
        kid: "kid".to_owned(),
        issued_at_s: T0_MS / 1000,
        expires_at_s: T0_MS / 1000 + 60,
        revoked_at_ms: None,
    };
    (agent, token)
}

#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[cfg(unix)]
#[tokio::test]
async fn files_are_private() {
    let (store, dir) = fresh().await;
    let data = dir.path().join("data");
    assert_eq!(mode(&data), 0o700, "data directory");
    let db = data.join("bonafide.db");
    assert_eq!(store.path(), db);
    // Make sure the WAL has content, then check every file SQLite made.
    store
        .add_admin_key(
            &ApiKey::from_random(KeyKind::Admin, [1; 20]).hash(),
            T0_MS,
            &audit_note(),
        )
        .await
        .unwrap();
    for name in ["bonafide.db", "bonafide.db-wal", "bonafide.db-shm"] {
        let path = data.join(name);
        assert!(path.exists(), "{name} missing");
        assert_eq!(mode(&path), 0o600, "{name}");
    }
}

#[cfg(unix)]
#[tokio::test]
async fn reopening_tightens_a_loose_database_file() {
    use std::os::unix::fs::PermissionsExt;
    let (store, dir) = fresh().await;
    store.close().await;
    let db = dir.path().join("data").join("bonafide.db");
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    let _store = SqliteStore::open(&dir.path().join("data")).await.unwrap();
    assert_eq!(mode(&db), 0o600);
}

#[tokio::test]
async fn existing_directory_is_used_as_is() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    assert!(dir.path().join("bonafide.db").exists());
    assert!(!store.has_admin_key().await.unwrap());
}

#[tokio::test]
async fn data_survives_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("nested").join("data");
    let admin = ApiKey::from_random(KeyKind::Admin, [2; 20]).hash();
    let iss = issuer(1);
    let iss_key = ApiKey::from_random(KeyKind::Issuer, [3; 20]).hash();
    let (agent, token) = agent(&iss, 4);
    let (gone, gone_token) = self::agent(&iss, 5);
    let key = {
        let key = bonafide_core::keys::SigningKey::generate(bonafide_core::keys::Algorithm::ES256)
            .unwrap();
        SigningKeyRecord {
            kid: key.kid().to_owned(),
            alg: key.alg(),
            private_pem: key.to_pkcs8_pem().unwrap().expose_secret().to_owned(),
            state: KeyState::Active,
            created_at_ms: T0_MS,
            publish_until_s: None,
        }
    };

    let store = SqliteStore::open(&data).await.unwrap();
    store
        .add_admin_key(&admin, T0_MS, &audit_note())
        .await
        .unwrap();
    store
        .create_issuer(&iss, &iss_key, &audit_note())
        .await
        .unwrap();
    store
        .create_agent(&agent, &token, None, &audit_note())
        .await
        .unwrap();
    store
        .create_agent(&gone, &gone_token, None, &audit_note())
        .await
        .unwrap();
    let revoked = store
        .revoke_agent(&iss.id, &gone.id, Some("test"), T0_MS + 1, &audit_note())
        .await
        .unwrap();
    store
        .rotate_signing_key(&key, T0_MS / 1000, &audit_note())
        .await
        .unwrap();
    store.close().await;
    drop(store);

    // Opening again runs the migrations again: they must be a no-op.
    let store = SqliteStore::open(&data).await.unwrap();
    assert!(store.has_admin_key().await.unwrap());
    assert!(store.api_key(&iss_key).await.unwrap().is_some());
    assert_eq!(store.issuer(&iss.id).await.unwrap(), Some(iss.clone()));
    assert_eq!(store.agent(&agent.id).await.unwrap(), Some(agent.clone()));
    assert_eq!(store.agent(&gone.id).await.unwrap(), Some(revoked));
    assert_eq!(store.token(&token.jti).await.unwrap(), Some(token));
    assert_eq!(store.signing_keys().await.unwrap(), [key]);
    let revocations = store.revocations().await.unwrap();
    assert_eq!(revocations.agents, [gone.id]);
    assert_eq!(revocations.tokens, [gone_token.jti]);
    // Pagination positions continue after the reopened rows.
    let page = store.list_agents(&iss.id, None, 10).await.unwrap();
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.next, None);
}

/// A database made before the revocation feed (migration 0011) gets its earlier
/// revocations into the change feed when it is opened (0011, then 0017 copying that
/// feed, then 0018 dropping it): a revoked agent once (not its tokens), a token
/// revoked on its own with its expiry.
#[tokio::test]
async fn the_change_feed_starts_with_the_revocations_made_before_it() {
    let (store, dir) = fresh().await;
    let iss = issuer(1);
    let iss_key = ApiKey::from_random(KeyKind::Issuer, [3; 20]).hash();
    store
        .create_issuer(&iss, &iss_key, &audit_note())
        .await
        .unwrap();
    let (gone, _) = agent(&iss, 2);
    let (kept, kept_token) = agent(&iss, 3);
    let (live, _) = agent(&iss, 4);
    for (a, t) in [agent(&iss, 2), agent(&iss, 3), agent(&iss, 4)] {
        store
            .create_agent(&a, &t, None, &audit_note())
            .await
            .unwrap();
    }
    store
        .revoke_agent(&iss.id, &gone.id, None, T0_MS + 1, &audit_note())
        .await
        .unwrap();
    store
        .revoke_token(&iss.id, &kept_token.jti, T0_MS + 2, &audit_note())
        .await
        .unwrap();
    let path = store.path().to_path_buf();
    store.close().await;
    drop(store);

    // Back to the schema before 0011 (which 0018 dropped again), without 0017's feed.
    let mut conn = raw_connection(&path).await;
    for sql in [
        "DROP TABLE changes",
        "DELETE FROM _sqlx_migrations WHERE version IN (11, 17, 18)",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    close_raw(conn).await;

    let store = SqliteStore::open(&dir.path().join("data")).await.unwrap();
    let feed = store
        .changes_since(bonafide_store::ChangePosition::START, 0, 1000)
        .await
        .unwrap();
    assert_eq!(
        feed.changes,
        [
            bonafide_store::Change::AgentRevoked(gone.id),
            bonafide_store::Change::TokenRevoked {
                jti: kept_token.jti,
                expires_at_s: kept_token.expires_at_s
            }
        ]
    );
    assert!(feed.next > bonafide_store::ChangePosition::START);
    let _ = (kept, live);
}

#[tokio::test]
async fn a_corrupt_row_is_a_backend_error() {
    let (store, _dir) = fresh().await;
    let iss = issuer(1);
    store
        .create_issuer(
            &iss,
            &ApiKey::from_random(KeyKind::Issuer, [1; 20]).hash(),
            &audit_note(),
        )
        .await
        .unwrap();
    let (agent, token) = agent(&iss, 2);
    store
        .create_agent(&agent, &token, None, &audit_note())
        .await
        .unwrap();

    // Edit the file behind the store's back, as a damaged or hand-edited file would be.
    let mut conn = raw_connection(store.path()).await;
    sqlx::query("UPDATE agents SET scopes = 'not json' WHERE id = ?")
        .bind(agent.id.as_str())
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(matches!(
        store.agent(&agent.id).await,
        Err(StoreError::Backend(_))
    ));
    assert!(matches!(
        store.list_agents(&iss.id, None, 10).await,
        Err(StoreError::Backend(_))
    ));
}

#[tokio::test]
async fn a_corrupt_budget_is_a_backend_error() {
    let (store, _dir) = fresh().await;
    let key = BudgetKey {
        issuer_id: IssuerId::from_random([7; 16]),
        policy_id: "pol_1".to_owned(),
        period_key: "2023-11-14".to_owned(),
        currency: "EUR".to_owned(),
    };
    let charge = |amount: &str| DecisionItem {
        quota: None,
        nonce: None,
        budget: Some(BudgetCharge {
            key: key.clone(),
            cap: "100".parse().unwrap(),
            ancestors: Vec::new(),
        }),
        idempotency: None,
        decide: {
            let amount = amount.parse().unwrap();
            Box::new(move |_| {
                Ok(Decided {
                    audit: Some(audit_note()),
                    receipt: None,
                    charge: Some(amount),
                    answer: Vec::new(),
                })
            })
        },
    };
    store
        .record_decisions(vec![charge("1.50")], 0)
        .await
        .unwrap();
    assert_eq!(store.budget_spent(&key).await.unwrap().to_string(), "1.50");
    let size = store.audit_size().await.unwrap();

    let mut conn = raw_connection(store.path()).await;
    sqlx::query("UPDATE budgets SET spent = '1.5 EUR'")
        .execute(&mut conn)
        .await
        .unwrap();
    assert!(matches!(
        store.budget_spent(&key).await,
        Err(StoreError::Backend(_))
    ));
    // The whole call fails and writes nothing: never a charge against a guess.
    assert!(matches!(
        store.record_decisions(vec![charge("1")], 0).await,
        Err(StoreError::Backend(_))
    ));
    assert_eq!(store.audit_size().await.unwrap(), size);
}

#[tokio::test]
async fn debug_shows_the_path_and_no_secrets() {
    let (store, _dir) = fresh().await;
    let shown = format!("{store:?}");
    assert!(shown.starts_with("SqliteStore"), "{shown}");
    assert!(shown.contains("bonafide.db"), "{shown}");
}

/// The schema keeps the suspension invariant itself (`0004_suspend.sql`): a revoked
/// agent is never suspended, a reason needs a suspension. Suspensions survive a
/// reopen.
#[tokio::test]
async fn the_schema_never_holds_a_suspended_revoked_agent() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let iss = issuer(1);
    store
        .create_issuer(
            &iss,
            &ApiKey::from_random(KeyKind::Issuer, [1; 20]).hash(),
            &audit_note(),
        )
        .await
        .unwrap();
    let (held, held_token) = agent(&iss, 2);
    let (gone, gone_token) = agent(&iss, 3);
    for (a, t) in [(&held, &held_token), (&gone, &gone_token)] {
        store.create_agent(a, t, None, &audit_note()).await.unwrap();
    }
    store
        .suspend_agent(&iss.id, &held.id, Some("why"), T0_MS, &audit_note())
        .await
        .unwrap();
    store
        .revoke_agent(&iss.id, &gone.id, None, T0_MS, &audit_note())
        .await
        .unwrap();

    let mut conn = raw_connection(store.path()).await;
    for (sql, id) in [
        (
            "UPDATE agents SET suspended_at_ms = 1 WHERE id = ?",
            &gone.id,
        ),
        (
            "UPDATE agents SET status = 'revoked' WHERE id = ?",
            &held.id,
        ),
        (
            "UPDATE agents SET suspended_at_ms = NULL WHERE id = ?",
            &held.id,
        ),
    ] {
        let err = sqlx::query(sql)
            .bind(id.as_str())
            .execute(&mut conn)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("CHECK"), "{sql}: {err}");
    }
    drop(conn);

    store.close().await;
    let store = SqliteStore::open(dir.path()).await.unwrap();
    let stored = store.agent(&held.id).await.unwrap().unwrap();
    assert_eq!(stored.status, AgentStatus::Suspended);
    assert_eq!(stored.suspended_at_ms, Some(T0_MS));
    assert_eq!(stored.suspend_reason.as_deref(), Some("why"));
    assert_eq!(store.suspended_agents().await.unwrap(), [held.id]);
}

/// Equivalent issuer names registered before names were unique by key (migration
/// 0013): opening the store never fails on them, the oldest keeps the name, the
/// younger twin is still there (by id) but holds no name.
#[tokio::test]
async fn issuer_twins_from_before_name_keys_leave_the_name_to_the_oldest() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let store = SqliteStore::open(&data).await.unwrap();
    let (older, younger) = (issuer(1), issuer(2));
    for (n, i) in [(1, &older), (2, &younger)] {
        store
            .create_issuer(
                i,
                &ApiKey::from_random(KeyKind::Issuer, [n; 20]).hash(),
                &audit_note(),
            )
            .await
            .unwrap();
    }
    // As a registry from before 0013 holds them: twins, no name keys.
    let mut conn = raw_connection(store.path()).await;
    for (i, name, at) in [
        (&younger, "https://Twin.example.", T0_MS + 1),
        (&older, "twin.example", T0_MS),
    ] {
        sqlx::query("UPDATE issuers SET name = ?, name_key = NULL, created_at_ms = ? WHERE id = ?")
            .bind(name)
            .bind(at)
            .bind(i.id.as_str())
            .execute(&mut conn)
            .await
            .unwrap();
    }
    drop(conn);
    store.close().await;

    let store = SqliteStore::open(&data).await.unwrap();
    let holder = store.issuer_by_name("TWIN.example").await.unwrap().unwrap();
    assert_eq!(holder.id, older.id);
    assert_eq!(
        store.issuer(&younger.id).await.unwrap().unwrap().name,
        "https://Twin.example."
    );
    // And no third twin gets in.
    let third = Issuer {
        id: IssuerId::from_random([3; 16]),
        name: "Twin.Example".into(),
        created_at_ms: T0_MS + 2,
    };
    let err = store
        .create_issuer(
            &third,
            &ApiKey::from_random(KeyKind::Issuer, [3; 20]).hash(),
            &audit_note(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
}

/// A database made before commit-ordered listings and the change feed (migrations
/// 0016 and 0017): its agents keep their order and agents registered after the
/// upgrade page after them; the feed starts with the revocations and suspensions
/// made before it, and goes on with the changes made after.
#[tokio::test]
async fn a_database_from_before_the_change_feed_keeps_paging_and_its_revocations() {
    let (store, dir) = fresh().await;
    let iss = issuer(1);
    store
        .create_issuer(
            &iss,
            &ApiKey::from_random(KeyKind::Issuer, [3; 20]).hash(),
            &audit_note(),
        )
        .await
        .unwrap();
    let made: Vec<(Agent, TokenRecord)> = (2..5).map(|n| agent(&iss, n)).collect();
    for (a, t) in &made {
        store.create_agent(a, t, None, &audit_note()).await.unwrap();
    }
    let [(a1, t1), (a2, _), (a3, _)] = <[_; 3]>::try_from(made).unwrap();
    store
        .suspend_agent(&iss.id, &a2.id, None, T0_MS + 1, &audit_note())
        .await
        .unwrap();
    store
        .revoke_agent(&iss.id, &a3.id, None, T0_MS + 2, &audit_note())
        .await
        .unwrap();
    store
        .revoke_token(&iss.id, &t1.jti, T0_MS + 3, &audit_note())
        .await
        .unwrap();
    let path = store.path().to_path_buf();
    store.close().await;
    drop(store);

    // Back to the schema before 0016.
    let mut conn = raw_connection(&path).await;
    for sql in [
        "DROP TABLE changes",
        "DROP INDEX agents_by_issuer_list_pos",
        "ALTER TABLE agents DROP COLUMN list_pos",
        // 0011 again too: it rebuilds the revocation feed 0017 reads (0018 dropped it).
        "DELETE FROM _sqlx_migrations WHERE version IN (11, 16, 17, 18)",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    close_raw(conn).await;

    let store = SqliteStore::open(&dir.path().join("data")).await.unwrap();
    let page = store.list_agents(&iss.id, None, 2).await.unwrap();
    let ids: Vec<&AgentId> = page.items.iter().map(|a| &a.id).collect();
    assert_eq!(ids, [&a1.id, &a2.id]);
    let (a4, t4) = agent(&iss, 5);
    store
        .create_agent(&a4, &t4, None, &audit_note())
        .await
        .unwrap();
    let rest = store
        .list_agents(&iss.id, page.next.as_ref(), 10)
        .await
        .unwrap();
    let ids: Vec<&AgentId> = rest.items.iter().map(|a| &a.id).collect();
    assert_eq!(ids, [&a3.id, &a4.id], "the new agent after the old ones");
    assert_eq!(rest.next, None);

    let feed = store
        .changes_since(ChangePosition::START, 0, 100)
        .await
        .unwrap();
    assert_eq!(
        feed.changes,
        [
            Change::AgentRevoked(a3.id.clone()),
            Change::TokenRevoked {
                jti: t1.jti.clone(),
                expires_at_s: t1.expires_at_s
            },
            Change::AgentSuspended(a2.id.clone()),
        ]
    );
    store
        .reactivate_agent(&iss.id, &a2.id, &audit_note())
        .await
        .unwrap();
    let next = store.changes_since(feed.next, 0, 100).await.unwrap();
    assert_eq!(next.changes, [Change::AgentReactivated(a2.id)]);
}

/// A database from before the deferred leaf index (migrations 0019 and 0021) has every
/// record indexed when it is opened: each found at its first index, the progress mark
/// at the log's size, and the old random-key index gone from the commit path.
#[tokio::test]
async fn a_log_from_before_the_deferred_leaf_index_is_indexed_whole() {
    let (store, dir) = fresh().await;
    let records: Vec<_> = (0..50).map(|_| audit_note()).collect();
    store.audit_append(&records).await.unwrap();
    // A repeated entry: found at its first index.
    store.audit_append(&records[4..5]).await.unwrap();
    let path = store.path().to_path_buf();
    store.close().await;
    drop(store);

    let mut conn = raw_connection(&path).await;
    for sql in [
        "DROP TABLE audit_leaf_index",
        "DROP TABLE audit_leaf_progress",
        "CREATE INDEX audit_log_by_leaf ON audit_log (leaf_hash)",
        // 0036 rebuilds the index with 8-byte prefixes: it runs again after 0021.
        "DELETE FROM _sqlx_migrations WHERE version IN (19, 21, 36)",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    close_raw(conn).await;

    let store = SqliteStore::open(&dir.path().join("data")).await.unwrap();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            store
                .audit_find(&bonafide_core::merkle::leaf_hash(&r.entry))
                .await
                .unwrap(),
            Some(i as u64),
            "record {i}"
        );
    }
    let path = store.path().to_path_buf();
    store.close().await;
    let mut conn = raw_connection(&path).await;
    let (indexed, upto, old_index): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM audit_leaf_index), \
                (SELECT upto FROM audit_leaf_progress WHERE id = 1), \
                (SELECT COUNT(*) FROM sqlite_schema WHERE name = 'audit_log_by_leaf')",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((indexed, upto, old_index), (51, 51, 0));
}

/// The leaf index keeps 8 bytes of each leaf hash (0036): an indexed record that
/// shares a hash's prefix but not the hash is passed over, and the record that has
/// it is found.
#[tokio::test]
async fn a_leaf_hash_prefix_shared_with_another_record_is_not_a_match() {
    let (store, dir) = fresh().await;
    let records: Vec<_> = (0..20).map(|_| audit_note()).collect();
    store.audit_append(&records).await.unwrap();
    let path = store.path().to_path_buf();
    store.close().await;
    drop(store);
    let mut conn = raw_connection(&path).await;
    // Record 3 indexed under record 10's prefix too (what a 2^-64 collision looks
    // like), below record 10 itself.
    for sql in [
        "INSERT INTO audit_leaf_index (epoch, leaf_prefix, idx) \
         SELECT idx >> 15, substr(leaf_hash, 1, 8), idx FROM audit_log",
        "INSERT INTO audit_leaf_index (epoch, leaf_prefix, idx) \
         SELECT 0, substr(leaf_hash, 1, 8), 3 FROM audit_log WHERE idx = 10",
        "INSERT INTO audit_leaf_progress (id, upto) VALUES (1, 20) \
         ON CONFLICT (id) DO UPDATE SET upto = 20",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    close_raw(conn).await;
    let store = SqliteStore::open(&dir.path().join("data")).await.unwrap();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            store
                .audit_find(&bonafide_core::merkle::leaf_hash(&r.entry))
                .await
                .unwrap(),
            Some(i as u64),
            "record {i}"
        );
    }
    assert_eq!(
        store
            .audit_find(&bonafide_core::merkle::Hash([7; 32]))
            .await
            .unwrap(),
        None
    );
}

/// A policy revoked before revocation ids were stored (SQLite 0033) is still found by
/// its revocation id, and one revoked since by the index.
#[tokio::test]
async fn policy_revocations_from_before_their_stored_id_are_found_by_it() {
    let (store, _dir) = fresh().await;
    let iss = issuer(1);
    store
        .create_issuer(
            &iss,
            &ApiKey::from_random(KeyKind::Issuer, [1; 20]).hash(),
            &audit_note(),
        )
        .await
        .unwrap();
    store
        .revoke_policy(&iss.id, "pol_new", T0_MS, &audit_note())
        .await
        .unwrap();
    // A row as the store wrote it before 0033: no revocation id.
    let mut conn = raw_connection(store.path()).await;
    sqlx::query(
        "INSERT INTO revoked_policies (issuer_id, policy_id, revoked_at_ms) VALUES (?, 'pol_old', ?)",
    )
    .bind(iss.id.as_str())
    .bind(T0_MS - 1)
    .execute(&mut conn)
    .await
    .unwrap();
    let (stored,): (Option<String>,) =
        sqlx::query_as("SELECT revocation_id FROM revoked_policies WHERE policy_id = 'pol_new'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    let new_id = bonafide_core::token::policy_revocation_id(&iss.id, "pol_new");
    assert_eq!(stored.as_deref(), Some(new_id.as_str()));
    close_raw(conn).await;
    for (policy, at) in [("pol_new", T0_MS), ("pol_old", T0_MS - 1)] {
        let id = bonafide_core::token::policy_revocation_id(&iss.id, policy);
        let found = store.policy_revocation_by_id(&id).await.unwrap().unwrap();
        assert_eq!(found.policy_id, policy);
        assert_eq!(found.revoked_at_ms, at);
    }
    let unknown = bonafide_core::token::policy_revocation_id(&iss.id, "pol_none");
    assert_eq!(store.policy_revocation_by_id(&unknown).await.unwrap(), None);
}

/// A database from before key sessions (0035) that holds people's sessions and
/// refresh tokens opens: the rebuilt tables keep every row, and the refresh tokens
/// still refer to their sessions (a migration that dropped the parent under its
/// children failed at commit on any such database).
#[tokio::test]
async fn sessions_and_refresh_tokens_survive_the_key_sessions_rebuild() {
    let (store, dir) = fresh().await;
    let path = store.path().to_path_buf();
    store.close().await;
    drop(store);
    let url = format!("sqlite://{}", path.display());
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    for sql in [
        // The tables as 0027 made them, holding a person's session and two tokens.
        "DROP TABLE refresh_tokens",
        "DROP TABLE sessions",
        "CREATE TABLE sessions (id TEXT NOT NULL PRIMARY KEY, \
            person_id TEXT NOT NULL REFERENCES people (id), client_id TEXT NOT NULL, \
            two_factor INTEGER NOT NULL CHECK (two_factor IN (0, 1)), ip TEXT, \
            user_agent TEXT, created_at_ms INTEGER NOT NULL, last_used_ms INTEGER NOT NULL, \
            expires_at_ms INTEGER NOT NULL, revoked_at_ms INTEGER, revoke_reason TEXT)",
        "CREATE INDEX sessions_by_person ON sessions (person_id, created_at_ms)",
        "CREATE TABLE refresh_tokens (token_hash BLOB NOT NULL PRIMARY KEY \
            CHECK (length(token_hash) = 32), session_id TEXT NOT NULL REFERENCES sessions (id), \
            created_at_ms INTEGER NOT NULL, expires_at_ms INTEGER NOT NULL, used_at_ms INTEGER) \
            WITHOUT ROWID",
        "CREATE INDEX refresh_tokens_by_session ON refresh_tokens (session_id)",
        "INSERT INTO people (id, email, created_at_ms) VALUES ('usr_old', 'old@example.com', 1)",
        "INSERT INTO sessions (id, person_id, client_id, two_factor, created_at_ms, \
            last_used_ms, expires_at_ms) VALUES ('ses_old', 'usr_old', 'cli', 0, 1, 2, 3)",
        "INSERT INTO refresh_tokens (token_hash, session_id, created_at_ms, expires_at_ms, \
            used_at_ms) VALUES (zeroblob(32), 'ses_old', 1, 3, 2)",
        "INSERT INTO refresh_tokens (token_hash, session_id, created_at_ms, expires_at_ms) \
            VALUES (randomblob(32), 'ses_old', 2, 3)",
        "DELETE FROM _sqlx_migrations WHERE version = 35",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    close_raw(conn).await;

    let store = SqliteStore::open(&dir.path().join("data")).await.unwrap();
    store.close().await;
    let mut conn = <sqlx::SqliteConnection as sqlx::Connection>::connect(&url)
        .await
        .unwrap();
    let (sessions, tokens, used, broken): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM sessions WHERE person_id = 'usr_old'), \
                (SELECT COUNT(*) FROM refresh_tokens WHERE session_id = 'ses_old'), \
                (SELECT COUNT(*) FROM refresh_tokens WHERE used_at_ms = 2), \
                (SELECT COUNT(*) FROM pragma_foreign_key_check)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((sessions, tokens, used, broken), (1, 2, 1, 0));
    // The reference is still enforced: a token of no session is refused.
    let orphan = sqlx::query(
        "INSERT INTO refresh_tokens (token_hash, session_id, created_at_ms, expires_at_ms) \
         VALUES (randomblob(32), 'ses_none', 1, 2)",
    )
    .execute(&mut conn)
    .await;
    assert!(orphan.is_err(), "{orphan:?}");
}

/// A receipt kept by age is dropped only when its own row is old enough too: an
/// undated row that says it is older (the store never writes one so) does not drop
/// a young receipt.
#[tokio::test]
async fn an_undated_row_never_drops_a_young_receipt() {
    use bonafide_core::ids::ReceiptId;
    let (store, dir) = fresh().await;
    let path = store.path().to_path_buf();
    store.close().await;
    drop(store);
    let id = ReceiptId::from_random([9; 16]);
    let mut conn = raw_connection(&path).await;
    sqlx::query(
        "INSERT INTO receipts (id, receiver_id, issuer_id, claims, audit_index, created_at_ms) \
         VALUES (?, NULL, NULL, x'7b7d', NULL, 10000)",
    )
    .bind(id.as_str())
    .execute(&mut conn)
    .await
    .unwrap();
    sqlx::query("INSERT INTO receipts_undated (created_at_ms, id) VALUES (1000, ?)")
        .bind(id.as_str())
        .execute(&mut conn)
        .await
        .unwrap();
    close_raw(conn).await;
    let store = SqliteStore::open(&dir.path().join("data")).await.unwrap();
    assert_eq!(store.purge_receipts(5_000).await.unwrap(), 0);
    assert!(store.receipt(&id).await.unwrap().is_some());
    assert_eq!(
        store.purge_receipts(20_000).await.unwrap(),
        0,
        "its undated row went first"
    );
}

/// A database from before receipts were purged by their ids (0039) keeps every
/// receipt it holds by age: ones with random ids (as all were before ids carried
/// their time) are purged at their retention's end, and only they; the age index
/// is gone from the commit path.
#[tokio::test]
async fn receipts_from_before_dated_ids_are_purged_by_age() {
    use bonafide_core::ids::ReceiptId;
    let (store, dir) = fresh().await;
    let path = store.path().to_path_buf();
    store.close().await;
    drop(store);
    let mut conn = raw_connection(&path).await;
    for sql in [
        "DROP TABLE receipts_undated",
        "CREATE INDEX receipts_by_age ON receipts (created_at_ms)",
        "DELETE FROM _sqlx_migrations WHERE version = 39",
    ] {
        sqlx::query(sql).execute(&mut conn).await.unwrap();
    }
    // Random ids, as the store was given them then: 20 old, 20 young.
    let made: Vec<(ReceiptId, i64)> = (1..=40u8)
        .map(|n| {
            let mut bytes = [n; 16];
            bytes[15] = n.wrapping_mul(37);
            (
                ReceiptId::from_random(bytes),
                if n <= 20 {
                    1_000 + i64::from(n)
                } else {
                    10_000
                },
            )
        })
        .collect();
    for (id, at) in &made {
        sqlx::query(
            "INSERT INTO receipts (id, receiver_id, issuer_id, claims, audit_index, created_at_ms) \
             VALUES (?, NULL, NULL, x'7b7d', NULL, ?)",
        )
        .bind(id.as_str())
        .bind(at)
        .execute(&mut conn)
        .await
        .unwrap();
    }
    close_raw(conn).await;

    let store = SqliteStore::open(&dir.path().join("data")).await.unwrap();
    assert_eq!(store.purge_receipts(5_000).await.unwrap(), 20);
    for (id, at) in &made {
        assert_eq!(
            store.receipt(id).await.unwrap().is_some(),
            *at >= 5_000,
            "{id} made at {at}"
        );
    }
    assert_eq!(store.purge_receipts(5_000).await.unwrap(), 0);
    assert_eq!(store.purge_receipts(10_001).await.unwrap(), 20);
    let path = store.path().to_path_buf();
    store.close().await;
    let mut conn = raw_connection(&path).await;
    let (age_index, undated): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COUNT(*) FROM sqlite_schema WHERE name = 'receipts_by_age'), \
                (SELECT COUNT(*) FROM receipts_undated)",
    )
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((age_index, undated), (0, 0));
}
