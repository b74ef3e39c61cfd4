//! The store conformance suite: what every [`Store`] backend must do, written once.
//!
//! Each case is a `pub async fn` taking a fresh, empty store. [`conformance_tests!`]
//! expands to one `#[tokio::test]` per case for a backend, so every case shows up by
//! name in `cargo test`; the SQLite backend runs it in `tests/sqlite.rs`, the
//! PostgreSQL backend in `tests/postgres.rs`, the same cases unchanged. [`run_at`]
//! runs the same list ([`cases`]) against the store at a URL, either backend's.
//!
//! This is test support compiled into the library (so other crates' tests can run it):
//! cases panic on failure, like tests do.
//!
//! [`conformance_tests!`]: crate::conformance_tests

use std::collections::HashSet;
use std::future::Future;
use std::pin::Pin;

use crate::Location;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bonafide_core::apikey::{ApiKey, ApiKeyHash, KeyKind};
use bonafide_core::ids::{AgentId, IssuerId, ReceiptId, ReceiverId, TokenId};
use bonafide_core::keys::{Algorithm, SigningKey};
use bonafide_core::merkle::{self, Hash};
use bonafide_core::policy::Decimal;
use tokio::task::JoinSet;

use crate::{
    Agent, AgentKey, AgentStatus, AncestorBudget, ApiKeyRecord, AuditRecord, BudgetCharge,
    BudgetKey, Change, ChangeFeed, ChangePosition, CheckpointRecord, ConflictKind, Cursor, Decided,
    DecisionItem, DecisionOutcome, DelegationRecord, IdempotencyClaim, Issuer, IssuerKey, KeyState,
    ListShape, LogKeyRecord, PrivateKeySlot, PublishedStatusList, ReceiptKeyRecord, ReceiptRecord,
    Receiver, Revocations, SigningKeyRecord, StatusEntry, StatusEntryRow, StatusSubject, Store,
    StoreError, TokenRecord,
};
use crate::{EventAck, Paused, Webhook, WebhookFailure};

#[path = "conformance_accounts.rs"]
mod accounts;
pub use accounts::*;

/// Expands to one `#[tokio::test]` per conformance case.
///
/// `$fresh` is the path of an `async fn() -> (S, G)` returning a new, empty store `S`
/// and a guard `G` kept alive for the test (a temporary directory, a database). The
/// calling crate needs `tokio` with the `macros` and `rt-multi-thread` features.
///
/// ```no_run
/// use bonafide_store::SqliteStore;
///
/// async fn fresh() -> (SqliteStore, tempfile::TempDir) {
///     let dir = tempfile::tempdir().unwrap();
///     let store = SqliteStore::open(dir.path()).await.unwrap();
///     (store, dir)
/// }
///
/// mod sqlite {
///     bonafide_store::conformance_tests!(super::fresh);
/// }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! conformance_tests {
    ($fresh:path) => {
        $crate::__conformance_cases!(conformance_tests { @cases $fresh });
    };
    (@cases $fresh:path; $($case:ident),* $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $case() {
                let (store, _guard) = $fresh().await;
                $crate::conformance::$case(::std::sync::Arc::new(store)).await;
            }
        )*
    };
    (@table; $($case:ident),* $(,)?) => {
        vec![$(
            (
                stringify!($case),
                (|store: ::std::sync::Arc<dyn $crate::Store>| {
                    $crate::conformance::boxed($crate::conformance::$case(store))
                }) as $crate::conformance::Case,
            )
        ),*]
    };
}

/// The one list of conformance cases: calls `$crate::$callback! { $args ; cases… }`.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_cases {
    ($callback:ident { $($args:tt)* }) => {
        $crate::$callback! { $($args)*;
            admin_keys,
            revoke_admin_key_keeps_the_last,
            an_agent_key_is_held_by_one_issuer,
            create_issuer_stores_issuer_and_key,
            create_issuer_rejects_taken_name,
            equivalent_issuer_names_are_one_name,
            create_agent_round_trips,
            create_agent_is_atomic,
            create_agent_for_unknown_issuer_is_not_found,
            list_agents_paginates_oldest_first,
            list_agents_is_isolated_by_issuer,
            list_agents_pages_in_commit_order_while_agents_are_added,
            revoke_agent_revokes_its_tokens,
            revoke_agent_twice_keeps_first_revocation,
            revoke_agent_of_another_issuer_is_not_found,
            suspend_and_reactivate_agent,
            suspend_agent_twice_keeps_first_suspension,
            reactivate_agent_not_suspended_changes_nothing,
            suspend_or_reactivate_revoked_agent_conflicts,
            revoke_agent_ends_its_suspension,
            suspend_agent_of_another_issuer_is_not_found,
            suspended_agents_lists_exactly_the_suspended,
            concurrent_suspend_agent_appends_once,
            revoke_token_keeps_first_time,
            revoke_token_unknown_or_foreign_is_not_found,
            record_token_for_unknown_agent_is_not_found,
            record_token_twice_conflicts,
            revocations_list_revoked_agents_and_tokens,
            changes_since_names_every_change_in_commit_order,
            changes_since_pages_and_leaves_out_expired_tokens,
            changes_since_misses_nothing_under_concurrent_writers,
            signing_key_first_rotation,
            first_signing_key_is_created_once,
            concurrent_first_signing_keys_agree_on_one,
            reseal_private_keys_rewrites_every_key,
            reseal_private_keys_is_all_or_nothing,
            playground_key_is_stored_once_and_resealed,
            concurrent_reseals_seal_each_key_once,
            signing_key_rotation_publishes_until_last_expiry,
            late_token_of_a_retired_key_extends_its_publication,
            concurrent_record_token,
            concurrent_create_issuer,
            concurrent_revoke_agent_agrees,
            audit_append_stores_every_hash,
            audit_state_changes_append_one_entry_each,
            audit_entries_name_their_owner,
            audit_find_by_leaf_hash,
            audit_find_across_checkpoints,
            audit_find_across_epochs,
            audit_missing_hashes_are_not_found,
            audit_prune_drops_entries_and_keeps_tile_roots,
            audit_checkpoints_keep_latest_and_refuse_another_root,
            audit_log_key_is_created_once,
            concurrent_audit_appends_form_one_sequence,
            create_receiver_stores_receiver_and_key,
            create_receiver_rejects_taken_name,
            set_receiver_audiences_replaces_them_with_the_audit_record,
            agent_policy_and_user_round_trip,
            budget_charges_add_up_exactly,
            charge_over_the_cap_writes_nothing,
            decide_error_fails_only_its_item,
            charge_without_a_budget_writes_nothing,
            budgets_are_separate_per_currency_and_issuer,
            ancestor_budgets_are_charged_together,
            delegated_token_round_trips_with_its_delegation,
            delegated_token_is_atomic,
            idempotency_replay_returns_the_first_answer,
            idempotency_key_with_another_request_conflicts,
            idempotency_key_twice_in_one_batch,
            idempotency_keys_are_per_receiver,
            receipts_carry_their_audit_index,
            purged_receipts_leave_their_audit_entries,
            sdk_verification_reports_are_kept_once,
            receipt_without_audit_has_no_index,
            failed_batch_writes_nothing,
            the_log_stays_whole_across_failed_batches_and_other_appends,
            concurrent_decisions_and_other_appends_form_one_log,
            purge_idempotency_deletes_only_older_records,
            receipt_key_is_created_once,
            push_events_store_webhooks_and_acks,
            concurrent_decisions_never_exceed_the_cap,
            issuer_keys_add_and_list,
            issuer_key_kid_taken_conflicts,
            issuer_key_alias_is_unique_per_issuer,
            issuer_key_for_unknown_issuer_is_not_found,
            revoke_issuer_key_keeps_first_time,
            revoke_issuer_key_of_another_issuer_is_not_found,
            issuer_key_changes_are_audited,
            revoke_issuer_signed_token_records_and_revokes,
            revoke_issuer_signed_token_of_another_issuer_is_not_found,
            revoke_policy_keeps_first_time_and_feeds_its_id,
            revoke_policy_of_unknown_issuer_is_not_found,
            create_agent_with_key_round_trips,
            rotate_agent_key_retires_the_current_key,
            rotate_agent_key_refusals_write_nothing,
            rotate_agent_key_cuts_every_grace_to_the_new_one,
            action_nonce_is_accepted_once_until_it_expires,
            nonce_claim_is_part_of_the_decision,
            issuer_domain_set_replace_and_list,
            issuer_domain_of_another_issuer_conflicts,
            issuer_domain_needs_a_live_key_of_the_issuer,
            status_slots_are_allocated_once_per_token,
            status_entries_are_found_by_subject,
            status_list_versions_only_move_forward,
            a_status_list_retires_only_closed_and_empty,
            next_signing_key_is_published_then_activated_once,
            rate_buckets_lease_refill_and_purge,
            concurrent_rate_takes_never_grant_more_than_the_bucket,
            rate_limit_settings_are_audited_only_when_they_change,
            accounts_invitations_are_single_use_and_audited,
            accounts_an_organisation_keeps_an_owner,
            accounts_refresh_tokens_rotate_once,
            accounts_key_sessions_rotate_and_end_with_their_key,
            accounts_an_org_identitys_first_key_is_its_makers,
            api_keys_live_per_identity_are_capped,
            accounts_password_change_ends_other_sessions,
            accounts_totp_steps_and_recovery_codes_are_single_use,
            accounts_login_throttle_and_security_events,
            accounts_ended_sessions_are_purged_with_their_tokens,
            accounts_any_api_key_is_revoked_by_hash_but_not_the_last_admin,
            api_keys_are_objects_created_listed_rotated_and_touched,
            api_key_inherited_limit_is_set_in_the_keys_transaction,
            api_key_expired_admin_keys_do_not_count_as_the_last,
            quota_counts_exactly_across_concurrent_batches_and_warns_once,
            quota_counted_with_decisions_admits_exactly_the_limit,
            org_plans_are_audited_and_usage_adds_up,
            login_reservations_check_and_record_in_one_step,
        }
    };
}

/// One conformance case, run on a fresh, empty store.
pub type Case = fn(Arc<dyn Store>) -> Pin<Box<dyn Future<Output = ()>>>;

/// A case's future, boxed (for [`Case`]).
#[doc(hidden)]
pub fn boxed(case: impl Future<Output = ()> + 'static) -> Pin<Box<dyn Future<Output = ()>>> {
    Box::pin(case)
}

/// Every case, by name (what [`conformance_tests!`] expands to tests).
///
/// [`conformance_tests!`]: crate::conformance_tests
pub fn cases() -> Vec<(&'static str, Case)> {
    crate::__conformance_cases!(conformance_tests { @table })
}

/// The environment variable naming a second store to run the suite against (see
/// [`run_at_env_url`]).
pub const STORE_URL_ENV: &str = "BONAFIDE_TEST_STORE_URL";

/// Runs every case against the store at [`STORE_URL_ENV`], if it is set; a note on
/// stderr if not. Panics (fails the test) on a URL this build cannot open: an unknown
/// or unsupported scheme is never skipped silently.
pub async fn run_at_env_url() {
    match std::env::var(STORE_URL_ENV) {
        Ok(url) => run_at(&url).await,
        Err(std::env::VarError::NotPresent) => {
            eprintln!("{STORE_URL_ENV} is not set: the suite runs on the built-in backend only");
        }
        Err(e) => panic!("{STORE_URL_ENV}: {e}"),
    }
}

/// Runs every case against the store at `url` ([`Location::parse`]), each on a fresh,
/// empty store made there and removed afterwards:
/// - `sqlite://<dir>`: `<dir>` is a parent directory; each case gets a new data dir
///   inside it.
/// - `postgres://…`: the URL of a server and a role that may create databases; each
///   case creates its own database there and drops it afterwards.
///
/// Panics on a URL this build cannot open, naming the URL (its password never) and
/// why.
pub async fn run_at(url: &str) {
    let shown = crate::redact_url(url);
    let location =
        Location::parse(url).unwrap_or_else(|e| panic!("{STORE_URL_ENV}=`{shown}`: {e}"));
    for (name, case) in cases() {
        eprintln!("conformance at {shown}: {name}");
        let (store, _fresh) = fresh_at(&location, name).await;
        case(store).await;
    }
}

/// A fresh, empty store at `location` for one case, and what removes it on drop.
async fn fresh_at(location: &Location, case: &str) -> (Arc<dyn Store>, Fresh) {
    let tag = bonafide_core::hex(&unique::<8>());
    let (fresh, at) = match location {
        Location::DataDir(parent) => {
            let dir = parent.join(format!("conformance-{case}-{tag}"));
            (Fresh::Dir(dir.clone()), Location::DataDir(dir))
        }
        Location::Postgres(admin) => {
            // The tag, not the case name: database names are cut at 63 bytes.
            let name = format!("bonafide_conformance_{tag}");
            let url = crate::PostgresStore::create_test_database(admin, &name)
                .await
                .unwrap_or_else(|e| panic!("cannot create database {name} for {case}: {e}"));
            let fresh = Fresh::Database {
                admin: admin.clone(),
                name,
            };
            (fresh, Location::Postgres(url))
        }
    };
    let store = crate::open(&at)
        .await
        .unwrap_or_else(|e| panic!("cannot open a fresh store at {at}: {e}"));
    (store, fresh)
}

/// Removes a case's store when the case ends (also when it fails).
enum Fresh {
    Dir(std::path::PathBuf),
    /// A database on the server at `admin`.
    Database {
        admin: String,
        name: String,
    },
}

impl Drop for Fresh {
    fn drop(&mut self) {
        match self {
            // Best effort: a leftover directory is named after its case.
            Fresh::Dir(dir) => {
                let _ = std::fs::remove_dir_all(dir);
            }
            // Drop runs outside async (and maybe inside a runtime): a thread with a
            // runtime of its own. Best effort, but said: a leftover database is named.
            Fresh::Database { admin, name } => {
                let (admin, shown) = (admin.clone(), name.clone());
                let dropped = std::thread::spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| StoreError::Backend(e.to_string()))?;
                    runtime.block_on(crate::PostgresStore::drop_test_database(&admin, &shown))
                })
                .join();
                if !matches!(dropped, Ok(Ok(()))) {
                    eprintln!("could not drop the conformance database {name}");
                }
            }
        }
    }
}

// ---- fixtures

/// Base time of every case: 2023-11-14T22:13:20Z.
const T0_MS: i64 = 1_700_000_000_000;
const T0_S: i64 = T0_MS / 1000;

/// Bytes distinct per call and per process: a counter, a random number drawn once per
/// process (the OS seeds `RandomState`; the store's code reads no clock, its tests
/// neither) and the pid. Ids from them never collide, even in a database shared
/// between test runs.
fn unique<const N: usize>() -> [u8; N] {
    use std::hash::BuildHasher;
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    static SEED: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let count = COUNTER.fetch_add(1, Ordering::Relaxed);
    let seed = *SEED.get_or_init(|| std::collections::hash_map::RandomState::new().hash_one(0u8));
    let seed = count
        .to_le_bytes()
        .into_iter()
        .chain(seed.to_le_bytes())
        .chain(std::process::id().to_le_bytes());
    let mut out = [0u8; N];
    for (byte, value) in out.iter_mut().zip(seed) {
        *byte = value;
    }
    out
}

/// A distinct audit record that concerns no one (for cases about something else).
pub fn audit_note() -> AuditRecord {
    audit_record(None, None)
}

fn audit_record(agent: Option<&AgentId>, issuer: Option<&IssuerId>) -> AuditRecord {
    let tag: [u8; 16] = unique();
    AuditRecord {
        entry: format!("{{\"test\":\"{}\"}}", bonafide_core::hex(&tag)).into_bytes(),
        agent_id: agent.cloned(),
        issuer_id: issuer.cloned(),
        created_at_ms: T0_MS,
        prepared: None,
    }
}

/// Every stored hash of the log, read back, equals what core computes from its
/// entries; and the tree hash of every prefix matches.
async fn assert_log_matches(store: &dyn Store, entries: &[Vec<u8>]) {
    let size = entries.len() as u64;
    assert_eq!(store.audit_size().await.unwrap(), size);
    let mut expected: Vec<Hash> = Vec::new();
    for (n, entry) in entries.iter().enumerate() {
        expected.extend(merkle::stored_hashes(n as u64, entry, &expected).unwrap());
    }
    let all: Vec<u64> = (0..expected.len() as u64).collect();
    assert_eq!(store.audit_hashes(&all).await.unwrap(), expected);
    for probe in [1, size / 2, size] {
        if probe == 0 {
            continue;
        }
        let idx = merkle::tree_hash_indexes(probe);
        let got =
            merkle::Prefetched::new(idx.clone(), store.audit_hashes(&idx).await.unwrap()).unwrap();
        assert_eq!(
            merkle::tree_hash(probe, &got).unwrap(),
            merkle::tree_hash(probe, &expected).unwrap()
        );
    }
}

fn key_hash(kind: KeyKind) -> ApiKeyHash {
    ApiKey::from_random(kind, unique()).hash()
}

fn new_issuer() -> Issuer {
    let id = IssuerId::from_random(unique());
    Issuer {
        name: format!("{}.example.com", id.as_str()),
        id,
        created_at_ms: T0_MS,
    }
}

/// Creates an issuer with its key.
async fn issuer(store: &dyn Store) -> (Issuer, ApiKeyHash) {
    let issuer = new_issuer();
    let key = key_hash(KeyKind::Issuer);
    store
        .create_issuer(&issuer, &key, &audit_note())
        .await
        .unwrap();
    (issuer, key)
}

fn new_agent(issuer: &IssuerId, created_at_ms: i64) -> Agent {
    Agent {
        id: AgentId::from_random(unique()),
        issuer_id: issuer.clone(),
        name: "payments bot".to_owned(),
        description: Some("moves money, carefully".to_owned()),
        scopes: vec!["payments:read".to_owned(), "payments:write".to_owned()],
        audience: Some(vec!["https://api.bank.example".to_owned()]),
        token_ttl_s: 900,
        status: AgentStatus::Active,
        created_at_ms,
        revoked_at_ms: None,
        revoke_reason: None,
        policy: Some(
            r#"{"id":"pol_groceries","limits":{"currency":"EUR","per_txn":"50.00"},"v":"pol.v0.2"}"#
                .to_owned(),
        ),
        user: Some("did:example:alice".to_owned()),
        suspended_at_ms: None,
        suspend_reason: None,
        // The opposite of the default, so a column that is not written shows.
        allow_bearer_tokens: true,
    }
}

fn new_token(agent: &Agent, kid: &str, issued_at_s: i64, expires_at_s: i64) -> TokenRecord {
    TokenRecord {
        jti: TokenId::from_random(unique()),
        agent_id: agent.id.clone(),
        issuer_id: agent.issuer_id.clone(),
        kid: kid.to_owned(),
        issued_at_s,
        expires_at_s,
        revoked_at_ms: None,
    }
}

/// Creates an agent of `issuer` with its first token; returns both.
async fn agent(store: &dyn Store, issuer: &IssuerId) -> (Agent, TokenRecord) {
    let agent = new_agent(issuer, T0_MS);
    let token = new_token(&agent, "kid-1", T0_S, T0_S + 900);
    store
        .create_agent(&agent, &token, None, &audit_note())
        .await
        .unwrap();
    (agent, token)
}

/// A real signing key, so backends store genuine PEM text.
fn signing_key(created_at_ms: i64) -> SigningKeyRecord {
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    SigningKeyRecord {
        kid: key.kid().to_owned(),
        alg: key.alg(),
        private_pem: key.to_pkcs8_pem().unwrap().expose_secret().to_owned(),
        state: KeyState::Active,
        created_at_ms,
        publish_until_s: None,
    }
}

fn active_kids(keys: &[SigningKeyRecord]) -> Vec<&str> {
    keys.iter()
        .filter(|k| k.state == KeyState::Active)
        .map(|k| k.kid.as_str())
        .collect()
}

fn find<'a>(keys: &'a [SigningKeyRecord], kid: &str) -> &'a SigningKeyRecord {
    keys.iter()
        .find(|k| k.kid == kid)
        .unwrap_or_else(|| panic!("signing key `{kid}` missing"))
}

fn new_receiver() -> Receiver {
    let id = ReceiverId::from_random(unique());
    let name = format!("{}.api.example", id.as_str());
    Receiver {
        audiences: vec![name.clone(), format!("https://{}.example/ünï", id.as_str())],
        name,
        id,
        created_at_ms: T0_MS,
    }
}

/// Creates a receiver with its key.
async fn receiver(store: &dyn Store) -> Receiver {
    let receiver = new_receiver();
    store
        .create_receiver(&receiver, &key_hash(KeyKind::Receiver), &audit_note())
        .await
        .unwrap();
    receiver
}

fn dec(text: &str) -> Decimal {
    text.parse().unwrap()
}

/// A budget of `issuer`'s policy `pol_daily` on 2023-11-14.
fn budget_key(issuer: &IssuerId, currency: &str) -> BudgetKey {
    BudgetKey {
        issuer_id: issuer.clone(),
        policy_id: "pol_daily".to_owned(),
        period_key: "2023-11-14".to_owned(),
        currency: currency.to_owned(),
    }
}

fn budget(key: &BudgetKey, cap: &str) -> Option<BudgetCharge> {
    Some(BudgetCharge {
        key: key.clone(),
        cap: dec(cap),
        ancestors: Vec::new(),
    })
}

fn claim(receiver: &ReceiverId, key: &str, request: u8) -> Option<IdempotencyClaim> {
    Some(IdempotencyClaim {
        receiver_id: receiver.clone(),
        key: key.to_owned(),
        request_sha256: [request; 32],
    })
}

/// A logged decision with a receipt, charging `charge`, answering `answer`.
fn logged(charge: Option<&str>, answer: &str) -> Decided {
    let audit = audit_note();
    Decided {
        receipt: Some(new_receipt(None, None, audit.created_at_ms)),
        audit: Some(audit),
        charge: charge.map(dec),
        answer: answer.as_bytes().to_vec(),
    }
}

fn new_receipt(
    receiver: Option<&ReceiverId>,
    issuer: Option<&IssuerId>,
    created_at_ms: i64,
) -> ReceiptRecord {
    let id = ReceiptId::from_random(unique());
    ReceiptRecord {
        claims: format!("{{\"rcp\":\"{}\"}}", id.as_str()).into_bytes(),
        id,
        receiver_id: receiver.cloned(),
        issuer_id: issuer.cloned(),
        audit_index: None,
        created_at_ms,
    }
}

/// An item whose `decide` returns `decided` whatever the budget has spent.
fn item(
    budget: Option<BudgetCharge>,
    idempotency: Option<IdempotencyClaim>,
    decided: Decided,
) -> DecisionItem {
    DecisionItem {
        quota: None,
        nonce: None,
        budget,
        idempotency,
        decide: Box::new(move |_| Ok(decided.clone())),
    }
}

/// An item whose `decide` must not run (a replay or a conflict).
fn item_not_decided(
    budget: Option<BudgetCharge>,
    idempotency: Option<IdempotencyClaim>,
    decided: Decided,
) -> (DecisionItem, Arc<AtomicBool>) {
    let ran = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&ran);
    let item = DecisionItem {
        quota: None,
        nonce: None,
        budget,
        idempotency,
        decide: Box::new(move |_| {
            flag.store(true, Ordering::SeqCst);
            Ok(decided.clone())
        }),
    };
    (item, ran)
}

fn recorded(audit_index: Option<u64>, spent_before: Option<&str>) -> DecisionOutcome {
    DecisionOutcome::Recorded {
        audit_index,
        spent_before: spent_before.map(dec),
        quota: None,
    }
}

/// The entry stored at `index`.
async fn entry_at(store: &dyn Store, index: u64) -> Vec<u8> {
    let rows = store.audit_entries(index, index + 1).await.unwrap();
    assert_eq!(rows.len(), 1, "no audit entry at {index}");
    rows.into_iter().next().unwrap().entry
}

// ---- API keys

/// Admin keys: none at first, added idempotently, found by hash with kind and no owner.
pub async fn admin_keys(store: Arc<dyn Store>) {
    assert!(!store.has_admin_key().await.unwrap());
    let hash = key_hash(KeyKind::Admin);
    assert_eq!(store.api_key(&hash).await.unwrap(), None);

    store
        .add_admin_key(&hash, T0_MS, &audit_note())
        .await
        .unwrap();
    store
        .add_admin_key(&hash, T0_MS + 5, &audit_note())
        .await
        .unwrap();
    assert!(store.has_admin_key().await.unwrap());
    assert_eq!(
        store.api_key(&hash).await.unwrap(),
        Some(ApiKeyRecord::new(
            hash,
            KeyKind::Admin,
            None,
            "bootstrap admin key",
            "bootstrap",
            T0_MS
        ))
    );
    assert_eq!(
        store.api_key(&key_hash(KeyKind::Admin)).await.unwrap(),
        None
    );
}

/// Admin keys are listed oldest first; one is revoked with its entry while another
/// remains; the last one, an unknown hash and a non-admin key are refused, writing
/// nothing.
pub async fn revoke_admin_key_keeps_the_last(store: Arc<dyn Store>) {
    let first = key_hash(KeyKind::Admin);
    let second = key_hash(KeyKind::Admin);
    store
        .add_admin_key(&first, T0_MS, &audit_note())
        .await
        .unwrap();
    store
        .add_admin_key(&second, T0_MS + 1, &audit_note())
        .await
        .unwrap();
    let listed: Vec<_> = store
        .admin_keys()
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.hash)
        .collect();
    assert_eq!(listed, [first, second]);
    let (_, issuer_key) = issuer(&*store).await;
    let size = store.audit_size().await.unwrap();
    for (hash, why) in [
        (key_hash(KeyKind::Admin), "unknown"),
        (issuer_key, "an issuer's key"),
    ] {
        assert_eq!(
            store.revoke_admin_key(&hash, T0_MS, &audit_note()).await,
            Err(StoreError::NotFound),
            "{why}"
        );
    }
    assert_eq!(store.audit_size().await.unwrap(), size);
    store
        .revoke_admin_key(&first, T0_MS, &audit_note())
        .await
        .unwrap();
    assert_eq!(store.audit_size().await.unwrap(), size + 1);
    assert_eq!(store.api_key(&first).await.unwrap(), None);
    assert!(store.api_key(&issuer_key).await.unwrap().is_some());
    assert!(matches!(
        store.revoke_admin_key(&second, T0_MS, &audit_note()).await,
        Err(StoreError::Conflict(ConflictKind::LastAdminKey))
    ));
    assert_eq!(store.audit_size().await.unwrap(), size + 1);
    assert!(store.api_key(&second).await.unwrap().is_some());
    // A revoked key supplied again (an old BONAFIDE_ADMIN_KEY) stays revoked.
    assert_eq!(
        store.add_admin_key(&first, T0_MS + 9, &audit_note()).await,
        Err(StoreError::Conflict(ConflictKind::KeyRevoked))
    );
    assert_eq!(store.api_key(&first).await.unwrap(), None);
    assert_eq!(store.audit_size().await.unwrap(), size + 1);
}

// ---- issuers

/// The issuer reads back, and its key is found by hash as an issuer key it owns.
pub async fn create_issuer_stores_issuer_and_key(store: Arc<dyn Store>) {
    let (issuer, key) = issuer(&*store).await;
    assert_eq!(
        store.issuer(&issuer.id).await.unwrap(),
        Some(issuer.clone())
    );
    assert_eq!(
        store.api_key(&key).await.unwrap(),
        Some(ApiKeyRecord::new(
            key,
            KeyKind::Issuer,
            Some(issuer.id.as_str().to_owned()),
            "initial key",
            "admin",
            issuer.created_at_ms
        ))
    );
    // An issuer key is not an admin key.
    assert!(!store.has_admin_key().await.unwrap());
    assert_eq!(
        store
            .issuer(&IssuerId::from_random(unique()))
            .await
            .unwrap(),
        None
    );
}

/// A taken name is `Conflict`, and nothing of the second issuer is stored.
pub async fn create_issuer_rejects_taken_name(store: Arc<dyn Store>) {
    let (first, _) = issuer(&*store).await;
    let second = Issuer {
        id: IssuerId::from_random(unique()),
        name: first.name.clone(),
        created_at_ms: T0_MS + 1,
    };
    let key = key_hash(KeyKind::Issuer);
    let err = store
        .create_issuer(&second, &key, &audit_note())
        .await
        .unwrap_err();
    // The rule broken, never the backend's text.
    assert_eq!(err, StoreError::Conflict(ConflictKind::IssuerNameTaken));
    assert_eq!(store.issuer(&second.id).await.unwrap(), None);
    assert_eq!(store.api_key(&key).await.unwrap(), None);
    assert_eq!(store.issuer(&first.id).await.unwrap(), Some(first));
}

/// Names that differ only by case, a leading `https://` or trailing dots are one
/// name: the second is `Conflict`, and the name finds its one holder in any spelling.
pub async fn equivalent_issuer_names_are_one_name(store: Arc<dyn Store>) {
    let (first, _) = issuer(&*store).await;
    let upper = first.name.to_uppercase();
    for same in [
        upper.clone(),
        format!("{}.", first.name),
        format!("https://{}", first.name),
        format!("HTTPS://{upper}."),
    ] {
        let twin = Issuer {
            id: IssuerId::from_random(unique()),
            name: same.clone(),
            created_at_ms: T0_MS + 1,
        };
        let err = store
            .create_issuer(&twin, &key_hash(KeyKind::Issuer), &audit_note())
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{same}: {err:?}");
        assert_eq!(store.issuer(&twin.id).await.unwrap(), None);
        assert_eq!(
            store.issuer_by_name(&same).await.unwrap(),
            Some(first.clone()),
            "{same}"
        );
    }
    assert_eq!(store.issuer_by_name("nobody.example").await.unwrap(), None);
}

// ---- agents

/// Agents and their first token read back field for field, with and without optional
/// fields.
pub async fn create_agent_round_trips(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let (full, full_token) = agent(&*store, &issuer.id).await;
    assert_eq!(store.agent(&full.id).await.unwrap(), Some(full.clone()));
    assert_eq!(
        store.token(&full_token.jti).await.unwrap(),
        Some(full_token)
    );

    let bare = Agent {
        description: None,
        audience: None,
        scopes: Vec::new(),
        policy: None,
        user: None,
        allow_bearer_tokens: false,
        name: "bare \"quoted\" ünïcode".to_owned(),
        ..new_agent(&issuer.id, T0_MS + 1)
    };
    let bare_token = new_token(&bare, "kid-2", T0_S + 1, T0_S + 61);
    store
        .create_agent(&bare, &bare_token, None, &audit_note())
        .await
        .unwrap();
    assert_eq!(store.agent(&bare.id).await.unwrap(), Some(bare));
    assert_eq!(
        store.token(&bare_token.jti).await.unwrap(),
        Some(bare_token)
    );

    assert_eq!(
        store.agent(&AgentId::from_random(unique())).await.unwrap(),
        None
    );
    assert_eq!(
        store.token(&TokenId::from_random(unique())).await.unwrap(),
        None
    );
}

/// If the first token cannot be stored (its jti is taken), the agent is not stored
/// either.
pub async fn create_agent_is_atomic(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let (_, taken) = agent(&*store, &issuer.id).await;
    let second = new_agent(&issuer.id, T0_MS + 1);
    let clash = TokenRecord {
        agent_id: second.id.clone(),
        ..taken.clone()
    };
    let err = store
        .create_agent(&second, &clash, None, &audit_note())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.agent(&second.id).await.unwrap(), None);
    assert_eq!(store.token(&taken.jti).await.unwrap(), Some(taken));
}

/// An agent of an issuer that does not exist is `NotFound`.
pub async fn create_agent_for_unknown_issuer_is_not_found(store: Arc<dyn Store>) {
    let ghost = IssuerId::from_random(unique());
    let agent = new_agent(&ghost, T0_MS);
    let token = new_token(&agent, "kid-1", T0_S, T0_S + 900);
    assert_eq!(
        store
            .create_agent(&agent, &token, None, &audit_note())
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(store.agent(&agent.id).await.unwrap(), None);
    assert_eq!(store.token(&token.jti).await.unwrap(), None);
}

/// 25 agents in pages of 10: 10, 10, 5, oldest first, no duplicates, `next` only while
/// more may follow. A page that ends exactly at the last agent has no `next`.
pub async fn list_agents_paginates_oldest_first(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let mut created = Vec::new();
    for i in 0..25 {
        let agent = new_agent(&issuer.id, T0_MS + i);
        let token = new_token(&agent, "kid-1", T0_S, T0_S + 900);
        store
            .create_agent(&agent, &token, None, &audit_note())
            .await
            .unwrap();
        created.push(agent);
    }

    let mut seen = Vec::new();
    let mut sizes = Vec::new();
    let mut after: Option<Cursor> = None;
    loop {
        let page = store
            .list_agents(&issuer.id, after.as_ref(), 10)
            .await
            .unwrap();
        sizes.push(page.items.len());
        // `next` is after the page's last agent, and reads back as written.
        if let Some(next) = &page.next {
            assert_eq!(
                Some(next),
                page.items
                    .last()
                    .map(|a| Cursor::after_agent(&a.id))
                    .as_ref()
            );
            assert_eq!(next.to_string().parse::<Cursor>().as_ref(), Ok(next));
        }
        seen.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
        assert!(sizes.len() <= 3, "more pages than agents: {sizes:?}");
    }
    assert_eq!(sizes, [10, 10, 5]);
    assert_eq!(seen, created, "oldest first, each once");
    let distinct: HashSet<_> = seen.iter().map(|a| a.id.clone()).collect();
    assert_eq!(distinct.len(), 25);

    let all = store.list_agents(&issuer.id, None, 25).await.unwrap();
    assert_eq!(all.items.len(), 25);
    assert_eq!(all.next, None, "an exact fit has no next page");
    let one = store.list_agents(&issuer.id, None, 1).await.unwrap();
    assert_eq!(one.items, created[..1]);
    assert_eq!(one.next, Some(Cursor::after_agent(&created[0].id)));
}

/// Agents registered while a caller pages (interleaved with its pages, and by
/// concurrent writers) come after every cursor handed out before they committed:
/// the pages hold every agent exactly once, in commit order.
pub async fn list_agents_pages_in_commit_order_while_agents_are_added(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    for _ in 0..3 {
        agent(&*store, &issuer.id).await;
    }
    let writers: Vec<_> = (0..4)
        .map(|_| {
            let store = Arc::clone(&store);
            let issuer = issuer.id.clone();
            tokio::spawn(async move {
                for _ in 0..5 {
                    agent(&*store, &issuer).await;
                    tokio::task::yield_now().await;
                }
            })
        })
        .collect();
    let mut seen: Vec<AgentId> = Vec::new();
    let mut after: Option<Cursor> = None;
    let mut writers_done = false;
    loop {
        let page = store
            .list_agents(&issuer.id, after.as_ref(), 2)
            .await
            .unwrap();
        seen.extend(page.items.iter().map(|a| a.id.clone()));
        // One more agent between pages, whatever the writers do.
        agent(&*store, &issuer.id).await;
        if let Some(last) = page.items.last() {
            after = Some(Cursor::after_agent(&last.id));
        }
        if page.next.is_none() {
            if writers_done {
                break;
            }
            for w in &writers {
                while !w.is_finished() {
                    tokio::task::yield_now().await;
                }
            }
            writers_done = true;
        }
    }
    for w in writers {
        w.await.unwrap();
    }
    // The agent added after the last page is read by one more page from its cursor.
    let tail = store
        .list_agents(&issuer.id, after.as_ref(), 1000)
        .await
        .unwrap();
    seen.extend(tail.items.iter().map(|a| a.id.clone()));
    let all = store.list_agents(&issuer.id, None, 1000).await.unwrap();
    let all: Vec<AgentId> = all.items.into_iter().map(|a| a.id).collect();
    assert_eq!(seen, all, "every agent once, in the listing's order");
    let distinct: HashSet<&AgentId> = seen.iter().collect();
    assert_eq!(distinct.len(), seen.len());
}

/// An issuer lists only its own agents.
pub async fn list_agents_is_isolated_by_issuer(store: Arc<dyn Store>) {
    let (a, _) = issuer(&*store).await;
    let (b, _) = issuer(&*store).await;
    let (c, _) = issuer(&*store).await;
    let (a1, _) = agent(&*store, &a.id).await;
    let (b1, _) = agent(&*store, &b.id).await;
    let (a2, _) = agent(&*store, &a.id).await;

    let page = store.list_agents(&a.id, None, 100).await.unwrap();
    assert_eq!(page.items, [a1.clone(), a2.clone()]);
    assert_eq!(page.next, None);
    let page = store.list_agents(&b.id, None, 100).await.unwrap();
    assert_eq!(page.items, std::slice::from_ref(&b1));
    let page = store.list_agents(&c.id, None, 100).await.unwrap();
    assert!(page.items.is_empty());
    assert_eq!(page.next, None);
    let ghost = IssuerId::from_random(unique());
    let page = store.list_agents(&ghost, None, 100).await.unwrap();
    assert!(page.items.is_empty());
    // A page after another issuer's agent, or an unknown one, is `NotFound`: one
    // issuer's cursor is no position in another's list.
    assert_eq!(
        store
            .list_agents(&a.id, Some(&Cursor::after_agent(&b1.id)), 100)
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store
            .list_agents(
                &a.id,
                Some(&Cursor::after_agent(&AgentId::from_random(unique()))),
                100
            )
            .await,
        Err(StoreError::NotFound)
    );
    // Well-formed text that names no agent at all.
    let text: Cursor = bonafide_core::b64::encode(b"iss_x").parse().unwrap();
    assert_eq!(
        store.list_agents(&a.id, Some(&text), 100).await,
        Err(StoreError::NotFound)
    );
    let page = store
        .list_agents(&a.id, Some(&Cursor::after_agent(&a1.id)), 100)
        .await
        .unwrap();
    assert_eq!(page.items, [a2]);
}

/// Revoking an agent revokes every token it has at the same time; a token revoked
/// before keeps its own time; tokens of other agents are untouched.
pub async fn revoke_agent_revokes_its_tokens(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let (agent, first) = agent(&*store, &issuer.id).await;
    let (bystander, bystander_token) = self::agent(&*store, &issuer.id).await;
    let second = new_token(&agent, "kid-1", T0_S + 10, T0_S + 910);
    let early = new_token(&agent, "kid-1", T0_S + 20, T0_S + 920);
    store.record_token(&second, &audit_note()).await.unwrap();
    store.record_token(&early, &audit_note()).await.unwrap();
    store
        .revoke_token(&issuer.id, &early.jti, T0_MS + 100, &audit_note())
        .await
        .unwrap();

    let at = T0_MS + 5_000;
    let revoked = store
        .revoke_agent(&issuer.id, &agent.id, Some("key leaked"), at, &audit_note())
        .await
        .unwrap();
    let expected = Agent {
        status: AgentStatus::Revoked,
        revoked_at_ms: Some(at),
        revoke_reason: Some("key leaked".to_owned()),
        ..agent.clone()
    };
    assert_eq!(revoked, expected);
    assert_eq!(store.agent(&agent.id).await.unwrap(), Some(expected));

    for (token, when) in [(&first, at), (&second, at), (&early, T0_MS + 100)] {
        let stored = store.token(&token.jti).await.unwrap().unwrap();
        assert_eq!(stored.revoked_at_ms, Some(when), "{:?}", token.jti);
    }
    let untouched = store.token(&bystander_token.jti).await.unwrap().unwrap();
    assert_eq!(untouched.revoked_at_ms, None);
    assert_eq!(
        store.agent(&bystander.id).await.unwrap().unwrap().status,
        AgentStatus::Active
    );

    let revocations = store.revocations().await.unwrap();
    assert_eq!(revocations.agents, std::slice::from_ref(&agent.id));
    let tokens: HashSet<_> = revocations.tokens.into_iter().collect();
    assert_eq!(tokens, HashSet::from([first.jti, second.jti, early.jti]));
}

/// A second revocation changes nothing and returns the first one.
pub async fn revoke_agent_twice_keeps_first_revocation(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let (agent, token) = agent(&*store, &issuer.id).await;
    let first = store
        .revoke_agent(
            &issuer.id,
            &agent.id,
            Some("first"),
            T0_MS + 1,
            &audit_note(),
        )
        .await
        .unwrap();
    let again = store
        .revoke_agent(
            &issuer.id,
            &agent.id,
            Some("second"),
            T0_MS + 2,
            &audit_note(),
        )
        .await
        .unwrap();
    assert_eq!(again, first);
    assert_eq!(again.revoked_at_ms, Some(T0_MS + 1));
    assert_eq!(again.revoke_reason.as_deref(), Some("first"));
    let again = store
        .revoke_agent(&issuer.id, &agent.id, None, T0_MS + 3, &audit_note())
        .await
        .unwrap();
    assert_eq!(again, first);
    let token = store.token(&token.jti).await.unwrap().unwrap();
    assert_eq!(token.revoked_at_ms, Some(T0_MS + 1));

    // Without a reason, the reason stays empty.
    let (quiet, _) = self::agent(&*store, &issuer.id).await;
    let revoked = store
        .revoke_agent(&issuer.id, &quiet.id, None, T0_MS + 4, &audit_note())
        .await
        .unwrap();
    assert_eq!(revoked.revoke_reason, None);
    assert_eq!(revoked.status, AgentStatus::Revoked);
}

/// Another issuer's agent, or no agent at all, is `NotFound`, and nothing changes.
pub async fn revoke_agent_of_another_issuer_is_not_found(store: Arc<dyn Store>) {
    let (owner, _) = issuer(&*store).await;
    let (other, _) = issuer(&*store).await;
    let (agent, token) = agent(&*store, &owner.id).await;
    assert_eq!(
        store
            .revoke_agent(&other.id, &agent.id, Some("hostile"), T0_MS, &audit_note())
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store
            .revoke_agent(
                &owner.id,
                &AgentId::from_random(unique()),
                None,
                T0_MS,
                &audit_note()
            )
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(store.agent(&agent.id).await.unwrap(), Some(agent));
    let token = store.token(&token.jti).await.unwrap().unwrap();
    assert_eq!(token.revoked_at_ms, None);
    assert_eq!(store.revocations().await.unwrap(), Revocations::default());
}

/// Suspending sets the status, time and reason (read back by `agent` and
/// `list_agents`) and revokes nothing; reactivating clears them; an agent can be
/// suspended again after that. Each change appends exactly one audit record.
pub async fn suspend_and_reactivate_agent(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let (agent, token) = agent(&*store, &issuer.id).await;
    let size = store.audit_size().await.unwrap();

    let at = T0_MS + 5_000;
    let suspended = store
        .suspend_agent(&issuer.id, &agent.id, Some("odd trades"), at, &audit_note())
        .await
        .unwrap();
    let expected = Agent {
        status: AgentStatus::Suspended,
        suspended_at_ms: Some(at),
        suspend_reason: Some("odd trades".to_owned()),
        ..agent.clone()
    };
    assert_eq!(suspended, expected);
    assert_eq!(
        store.agent(&agent.id).await.unwrap(),
        Some(expected.clone())
    );
    let page = store.list_agents(&issuer.id, None, 10).await.unwrap();
    assert_eq!(page.items, [expected]);
    assert_eq!(store.audit_size().await.unwrap(), size + 1);
    // Suspension is not revocation: no token is revoked, the agent is not listed.
    assert_eq!(store.revocations().await.unwrap(), Revocations::default());
    assert_eq!(store.token(&token.jti).await.unwrap(), Some(token.clone()));
    assert_eq!(
        store.suspended_agents().await.unwrap(),
        std::slice::from_ref(&agent.id)
    );

    let reactivated = store
        .reactivate_agent(&issuer.id, &agent.id, &audit_note())
        .await
        .unwrap();
    assert_eq!(reactivated, agent);
    assert_eq!(store.agent(&agent.id).await.unwrap(), Some(agent.clone()));
    assert_eq!(store.audit_size().await.unwrap(), size + 2);
    assert_eq!(store.suspended_agents().await.unwrap(), []);
    assert_eq!(store.token(&token.jti).await.unwrap(), Some(token));

    // Reversible as often as the issuer likes; a new suspension has its own time, and
    // no reason when none is given.
    let again = store
        .suspend_agent(&issuer.id, &agent.id, None, at + 1, &audit_note())
        .await
        .unwrap();
    assert_eq!(again.status, AgentStatus::Suspended);
    assert_eq!(again.suspended_at_ms, Some(at + 1));
    assert_eq!(again.suspend_reason, None);
    assert_eq!(store.audit_size().await.unwrap(), size + 3);
}

/// A second suspension changes nothing, returns the first one and appends nothing.
pub async fn suspend_agent_twice_keeps_first_suspension(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let (agent, _) = agent(&*store, &issuer.id).await;
    let first = store
        .suspend_agent(
            &issuer.id,
            &agent.id,
            Some("first"),
            T0_MS + 1,
            &audit_note(),
        )
        .await
        .unwrap();
    let size = store.audit_size().await.unwrap();
    for reason in [Some("second"), None] {
        let again = store
            .suspend_agent(&issuer.id, &agent.id, reason, T0_MS + 2, &audit_note())
            .await
            .unwrap();
        assert_eq!(again, first);
    }
    assert_eq!(first.suspended_at_ms, Some(T0_MS + 1));
    assert_eq!(first.suspend_reason.as_deref(), Some("first"));
    assert_eq!(store.agent(&agent.id).await.unwrap(), Some(first));
    assert_eq!(
        store.audit_size().await.unwrap(),
        size,
        "suspending a suspended agent appends nothing"
    );
}

/// Reactivating an agent that is not suspended returns it unchanged and appends
/// nothing, also right after a reactivation.
pub async fn reactivate_agent_not_suspended_changes_nothing(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let (agent, _) = agent(&*store, &issuer.id).await;
    let size = store.audit_size().await.unwrap();
    let same = store
        .reactivate_agent(&issuer.id, &agent.id, &audit_note())
        .await
        .unwrap();
    assert_eq!(same, agent);
    assert_eq!(store.audit_size().await.unwrap(), size);

    store
        .suspend_agent(&issuer.id, &agent.id, None, T0_MS + 1, &audit_note())
        .await
        .unwrap();
    store
        .reactivate_agent(&issuer.id, &agent.id, &audit_note())
        .await
        .unwrap();
    let size = store.audit_size().await.unwrap();
    let same = store
        .reactivate_agent(&issuer.id, &agent.id, &audit_note())
        .await
        .unwrap();
    assert_eq!(same, agent);
    assert_eq!(store.audit_size().await.unwrap(), size);
}

/// A revoked agent can be neither suspended nor reactivated (`Conflict`): revocation
/// is permanent. Nothing changes and nothing is appended.
pub async fn suspend_or_reactivate_revoked_agent_conflicts(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let (agent, _) = agent(&*store, &issuer.id).await;
    let revoked = store
        .revoke_agent(
            &issuer.id,
            &agent.id,
            Some("gone"),
            T0_MS + 1,
            &audit_note(),
        )
        .await
        .unwrap();
    let size = store.audit_size().await.unwrap();
    let err = store
        .suspend_agent(&issuer.id, &agent.id, Some("x"), T0_MS + 2, &audit_note())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let err = store
        .reactivate_agent(&issuer.id, &agent.id, &audit_note())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.agent(&agent.id).await.unwrap(), Some(revoked));
    assert_eq!(store.audit_size().await.unwrap(), size);
    assert_eq!(store.suspended_agents().await.unwrap(), []);
    assert_eq!(
        store.revocations().await.unwrap().agents,
        std::slice::from_ref(&agent.id)
    );
}

/// Revoking a suspended agent revokes it (and its tokens) and ends the suspension.
pub async fn revoke_agent_ends_its_suspension(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let (agent, token) = agent(&*store, &issuer.id).await;
    store
        .suspend_agent(
            &issuer.id,
            &agent.id,
            Some("look"),
            T0_MS + 1,
            &audit_note(),
        )
        .await
        .unwrap();
    let size = store.audit_size().await.unwrap();
    let revoked = store
        .revoke_agent(&issuer.id, &agent.id, Some("bad"), T0_MS + 2, &audit_note())
        .await
        .unwrap();
    let expected = Agent {
        status: AgentStatus::Revoked,
        revoked_at_ms: Some(T0_MS + 2),
        revoke_reason: Some("bad".to_owned()),
        ..agent.clone()
    };
    assert_eq!(revoked, expected);
    assert_eq!(store.agent(&agent.id).await.unwrap(), Some(expected));
    assert_eq!(store.audit_size().await.unwrap(), size + 1);
    assert_eq!(store.suspended_agents().await.unwrap(), []);
    let revocations = store.revocations().await.unwrap();
    assert_eq!(revocations.agents, [agent.id]);
    assert_eq!(revocations.tokens, [token.jti]);
}

/// Another issuer's agent, or no agent at all, is `NotFound` for both calls; nothing
/// changes and nothing is appended.
pub async fn suspend_agent_of_another_issuer_is_not_found(store: Arc<dyn Store>) {
    let (owner, _) = issuer(&*store).await;
    let (other, _) = issuer(&*store).await;
    let (agent, _) = agent(&*store, &owner.id).await;
    let (held, _) = self::agent(&*store, &owner.id).await;
    let held = store
        .suspend_agent(&owner.id, &held.id, None, T0_MS, &audit_note())
        .await
        .unwrap();
    let size = store.audit_size().await.unwrap();
    let ghost = AgentId::from_random(unique());
    for (issuer, id) in [(&other.id, &agent.id), (&owner.id, &ghost)] {
        assert_eq!(
            store
                .suspend_agent(issuer, id, Some("hostile"), T0_MS, &audit_note())
                .await,
            Err(StoreError::NotFound)
        );
        assert_eq!(
            store.reactivate_agent(issuer, id, &audit_note()).await,
            Err(StoreError::NotFound)
        );
    }
    // Nor can another issuer end a suspension.
    assert_eq!(
        store
            .reactivate_agent(&other.id, &held.id, &audit_note())
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(store.agent(&agent.id).await.unwrap(), Some(agent));
    assert_eq!(store.agent(&held.id).await.unwrap(), Some(held.clone()));
    assert_eq!(store.audit_size().await.unwrap(), size);
    assert_eq!(store.suspended_agents().await.unwrap(), [held.id]);
}

/// `suspended_agents` (what the server mirrors in memory) is empty on a fresh store
/// and lists exactly the agents suspended now, whatever their issuer: not reactivated
/// ones, not revoked ones, not active ones.
pub async fn suspended_agents_lists_exactly_the_suspended(store: Arc<dyn Store>) {
    assert_eq!(store.suspended_agents().await.unwrap(), []);
    let (a, _) = issuer(&*store).await;
    let (b, _) = issuer(&*store).await;
    let (held_a, _) = agent(&*store, &a.id).await;
    let (held_b, _) = agent(&*store, &b.id).await;
    let (released, _) = agent(&*store, &a.id).await;
    let (revoked, _) = agent(&*store, &a.id).await;
    let (active, _) = agent(&*store, &b.id).await;
    for (issuer, id) in [
        (&a.id, &held_a.id),
        (&b.id, &held_b.id),
        (&a.id, &released.id),
        (&a.id, &revoked.id),
    ] {
        store
            .suspend_agent(issuer, id, None, T0_MS, &audit_note())
            .await
            .unwrap();
    }
    store
        .reactivate_agent(&a.id, &released.id, &audit_note())
        .await
        .unwrap();
    store
        .revoke_agent(&a.id, &revoked.id, None, T0_MS + 1, &audit_note())
        .await
        .unwrap();

    let listed: HashSet<_> = store
        .suspended_agents()
        .await
        .unwrap()
        .into_iter()
        .collect();
    assert_eq!(listed, HashSet::from([held_a.id, held_b.id]));
    assert!(!listed.contains(&active.id));
    assert_eq!(store.revocations().await.unwrap().agents, [revoked.id]);
}

/// Ten suspensions of one agent at once: one wins, all ten report it, one record.
pub async fn concurrent_suspend_agent_appends_once(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let (agent, _) = agent(&*store, &issuer.id).await;
    let size = store.audit_size().await.unwrap();
    let mut tasks = JoinSet::new();
    for i in 0..10 {
        let store = Arc::clone(&store);
        let (issuer, id) = (issuer.id.clone(), agent.id.clone());
        tasks.spawn(async move {
            let reason = format!("reason {i}");
            store
                .suspend_agent(&issuer, &id, Some(&reason), T0_MS + i, &audit_note())
                .await
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.unwrap().unwrap());
    }
    let stored = store.agent(&agent.id).await.unwrap().unwrap();
    assert_eq!(stored.status, AgentStatus::Suspended);
    assert!(results.iter().all(|r| *r == stored), "{results:#?}");
    assert_eq!(store.audit_size().await.unwrap(), size + 1);
}

// ---- tokens

/// Revoking a token sets its time once; a second call keeps the first time.
pub async fn revoke_token_keeps_first_time(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let (agent, token) = agent(&*store, &issuer.id).await;
    let revoked = store
        .revoke_token(&issuer.id, &token.jti, T0_MS + 7, &audit_note())
        .await
        .unwrap();
    let expected = TokenRecord {
        revoked_at_ms: Some(T0_MS + 7),
        ..token.clone()
    };
    assert_eq!(revoked, expected);
    let again = store
        .revoke_token(&issuer.id, &token.jti, T0_MS + 9, &audit_note())
        .await
        .unwrap();
    assert_eq!(again, expected);
    assert_eq!(store.token(&token.jti).await.unwrap(), Some(expected));
    // Revoking a token does not revoke its agent.
    assert_eq!(
        store.agent(&agent.id).await.unwrap().unwrap().status,
        AgentStatus::Active
    );
}

/// An unknown token, or another issuer's, is `NotFound`, and nothing changes.
pub async fn revoke_token_unknown_or_foreign_is_not_found(store: Arc<dyn Store>) {
    let (owner, _) = issuer(&*store).await;
    let (other, _) = issuer(&*store).await;
    let (_, token) = agent(&*store, &owner.id).await;
    assert_eq!(
        store
            .revoke_token(
                &owner.id,
                &TokenId::from_random(unique()),
                T0_MS,
                &audit_note()
            )
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store
            .revoke_token(&other.id, &token.jti, T0_MS, &audit_note())
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(store.token(&token.jti).await.unwrap(), Some(token));
    assert_eq!(store.revocations().await.unwrap(), Revocations::default());
}

/// A token for an agent that does not exist is `NotFound`.
pub async fn record_token_for_unknown_agent_is_not_found(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let ghost = new_agent(&issuer.id, T0_MS);
    let token = new_token(&ghost, "kid-1", T0_S, T0_S + 900);
    assert_eq!(
        store.record_token(&token, &audit_note()).await,
        Err(StoreError::NotFound)
    );
    assert_eq!(store.token(&token.jti).await.unwrap(), None);
}

/// A jti is recorded once: the same jti again is `Conflict`, the first record stays.
pub async fn record_token_twice_conflicts(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let (agent, _) = agent(&*store, &issuer.id).await;
    let token = new_token(&agent, "kid-1", T0_S, T0_S + 900);
    store.record_token(&token, &audit_note()).await.unwrap();
    let clash = TokenRecord {
        expires_at_s: T0_S + 99_999,
        ..token.clone()
    };
    let err = store.record_token(&clash, &audit_note()).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.token(&token.jti).await.unwrap(), Some(token));
}

/// `revocations` is empty on a fresh store and lists exactly what was revoked.
pub async fn revocations_list_revoked_agents_and_tokens(store: Arc<dyn Store>) {
    assert_eq!(store.revocations().await.unwrap(), Revocations::default());
    let (issuer, _) = issuer(&*store).await;
    let (gone, gone_token) = agent(&*store, &issuer.id).await;
    let (kept, kept_token) = agent(&*store, &issuer.id).await;
    let (_, live_token) = agent(&*store, &issuer.id).await;
    store
        .revoke_agent(&issuer.id, &gone.id, None, T0_MS + 1, &audit_note())
        .await
        .unwrap();
    store
        .revoke_token(&issuer.id, &kept_token.jti, T0_MS + 2, &audit_note())
        .await
        .unwrap();

    let revocations = store.revocations().await.unwrap();
    assert_eq!(revocations.agents, [gone.id]);
    assert!(!revocations.agents.contains(&kept.id));
    let tokens: HashSet<_> = revocations.tokens.into_iter().collect();
    assert_eq!(tokens, HashSet::from([gone_token.jti, kept_token.jti]));
    assert!(!tokens.contains(&live_token.jti));
}

// ---- signing keys

/// No keys at first; the first rotation stores the key active, field for field.
pub async fn signing_key_first_rotation(store: Arc<dyn Store>) {
    assert_eq!(store.signing_keys().await.unwrap(), []);
    let mut key = signing_key(T0_MS);
    // The stored state is active whatever the record says.
    key.state = KeyState::Retired;
    store
        .rotate_signing_key(&key, T0_S, &audit_note())
        .await
        .unwrap();
    let expected = SigningKeyRecord {
        state: KeyState::Active,
        ..key
    };
    assert_eq!(store.signing_keys().await.unwrap(), [expected]);
}

/// The first signing key is stored, active, with its audit entry and change; once a
/// key is active, another is refused (nothing written).
pub async fn first_signing_key_is_created_once(store: Arc<dyn Store>) {
    let first = signing_key(T0_MS);
    assert!(
        store
            .create_first_signing_key(&first, &audit_note())
            .await
            .unwrap()
    );
    assert_eq!(
        store.signing_keys().await.unwrap(),
        std::slice::from_ref(&first)
    );
    assert_eq!(store.audit_size().await.unwrap(), 1);
    let feed = store
        .changes_since(ChangePosition::START, 0, 100)
        .await
        .unwrap();
    assert_eq!(feed.changes, [Change::SigningKeysChanged]);
    assert!(
        !store
            .create_first_signing_key(&signing_key(T0_MS + 1), &audit_note())
            .await
            .unwrap()
    );
    assert_eq!(store.signing_keys().await.unwrap(), [first]);
    assert_eq!(store.audit_size().await.unwrap(), 1);
}

/// Replicas starting together on a new database each offer a first key: exactly one
/// is stored and every one of them reads that one back.
pub async fn concurrent_first_signing_keys_agree_on_one(store: Arc<dyn Store>) {
    let mut tasks = JoinSet::new();
    for i in 0..8 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let key = signing_key(T0_MS + i);
            let stored = store
                .create_first_signing_key(&key, &audit_note())
                .await
                .unwrap();
            (stored, key.kid)
        });
    }
    let mut winners = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        let (stored, kid) = joined.unwrap();
        if stored {
            winners.push(kid);
        }
    }
    assert_eq!(winners.len(), 1, "one first key: {winners:?}");
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(active_kids(&keys), [winners[0].as_str()]);
    assert_eq!(keys.len(), 1);
    assert_eq!(store.audit_size().await.unwrap(), 1);
}

/// Stores a signing key (two, after a rotation), the receipt key and the log key.
async fn store_every_private_key(
    store: &dyn Store,
) -> (Vec<SigningKeyRecord>, ReceiptKeyRecord, LogKeyRecord) {
    store
        .rotate_signing_key(&signing_key(T0_MS), T0_S, &audit_note())
        .await
        .unwrap();
    store
        .rotate_signing_key(&signing_key(T0_MS + 1), T0_S, &audit_note())
        .await
        .unwrap();
    let receipt = ReceiptKeyRecord {
        private_pem: "-----BEGIN PRIVATE KEY-----\nreceipt\n-----END PRIVATE KEY-----\n".into(),
        created_at_ms: T0_MS,
    };
    let log_key = LogKeyRecord {
        origin: "example.com/audit".into(),
        signer_key: "PRIVATE+KEY+example.com/audit+00+AAAA".into(),
        created_at_ms: T0_MS,
    };
    let receipt = store.receipt_key(&receipt).await.unwrap();
    let log_key = store.audit_log_key(&log_key).await.unwrap();
    (store.signing_keys().await.unwrap(), receipt, log_key)
}

/// A stand-in for sealing: marks the text with its slot.
fn mark(slot: &PrivateKeySlot, text: &str) -> String {
    format!("sealed:{}:{text}", slot.identity())
}

/// `reseal_private_keys` shows every stored private key with its slot and stores what
/// it returns, changing nothing else; `None` leaves a row alone.
pub async fn reseal_private_keys_rewrites_every_key(store: Arc<dyn Store>) {
    let none = store
        .reseal_private_keys(&|_: &PrivateKeySlot, _: &str| panic!("an empty store has no keys"))
        .await
        .unwrap();
    assert_eq!(none, 0);
    let (keys, receipt, log_key) = store_every_private_key(store.as_ref()).await;
    let seen = Mutex::new(Vec::new());
    let changed = store
        .reseal_private_keys(&|slot: &PrivateKeySlot, text: &str| {
            seen.lock().unwrap().push((slot.clone(), text.to_owned()));
            Ok(Some(mark(slot, text)))
        })
        .await
        .unwrap();
    assert_eq!(changed, 4);
    let mut seen = seen.into_inner().unwrap();
    seen.sort_by_key(|(slot, _)| slot.identity());
    let mut expected = vec![
        (PrivateKeySlot::AuditLogKey, log_key.signer_key.clone()),
        (PrivateKeySlot::ReceiptKey, receipt.private_pem.clone()),
    ];
    for k in &keys {
        expected.push((
            PrivateKeySlot::SigningKey { kid: k.kid.clone() },
            k.private_pem.clone(),
        ));
    }
    expected.sort_by_key(|(slot, _)| slot.identity());
    assert_eq!(seen, expected);
    let resealed: Vec<SigningKeyRecord> = keys
        .iter()
        .map(|k| SigningKeyRecord {
            private_pem: mark(
                &PrivateKeySlot::SigningKey { kid: k.kid.clone() },
                &k.private_pem,
            ),
            ..k.clone()
        })
        .collect();
    assert_eq!(store.signing_keys().await.unwrap(), resealed);
    let other = ReceiptKeyRecord {
        private_pem: "other".into(),
        created_at_ms: 0,
    };
    assert_eq!(
        store.receipt_key(&other).await.unwrap(),
        ReceiptKeyRecord {
            private_pem: mark(&PrivateKeySlot::ReceiptKey, &receipt.private_pem),
            ..receipt
        }
    );
    let other = LogKeyRecord {
        origin: "other".into(),
        signer_key: "other".into(),
        created_at_ms: 0,
    };
    assert_eq!(
        store.audit_log_key(&other).await.unwrap(),
        LogKeyRecord {
            signer_key: mark(&PrivateKeySlot::AuditLogKey, &log_key.signer_key),
            ..log_key
        }
    );
    // Nothing audited, nothing fed: the keys are the same keys.
    assert_eq!(store.audit_size().await.unwrap(), 2);
    let again = store
        .reseal_private_keys(&|_: &PrivateKeySlot, _: &str| Ok(None))
        .await
        .unwrap();
    assert_eq!(again, 0);
    assert_eq!(store.signing_keys().await.unwrap(), resealed);
}

/// The playground's demo key: the first one stored is the one every later caller gets,
/// and a KEK rotation re-seals it under its own slot.
pub async fn playground_key_is_stored_once_and_resealed(store: Arc<dyn Store>) {
    let first = ReceiptKeyRecord {
        private_pem: "first".into(),
        created_at_ms: 1,
    };
    let second = ReceiptKeyRecord {
        private_pem: "second".into(),
        created_at_ms: 2,
    };
    assert_eq!(store.playground_key(&first).await.unwrap(), first);
    assert_eq!(store.playground_key(&second).await.unwrap(), first);
    let seen = Mutex::new(Vec::new());
    store
        .reseal_private_keys(&|slot: &PrivateKeySlot, text: &str| {
            seen.lock().unwrap().push(slot.clone());
            Ok(Some(mark(slot, text)))
        })
        .await
        .unwrap();
    assert!(
        seen.into_inner()
            .unwrap()
            .contains(&PrivateKeySlot::PlaygroundKey)
    );
    assert_eq!(
        store.playground_key(&second).await.unwrap().private_pem,
        mark(&PrivateKeySlot::PlaygroundKey, "first")
    );
}

/// An error from `reseal` on the last key leaves every key as it was.
pub async fn reseal_private_keys_is_all_or_nothing(store: Arc<dyn Store>) {
    let (keys, receipt, log_key) = store_every_private_key(store.as_ref()).await;
    let refused = store
        .reseal_private_keys(&|slot: &PrivateKeySlot, text: &str| match slot {
            PrivateKeySlot::AuditLogKey => Err(StoreError::Backend("refused".into())),
            _ => Ok(Some(mark(slot, text))),
        })
        .await
        .unwrap_err();
    assert_eq!(refused, StoreError::Backend("refused".into()));
    assert_eq!(store.signing_keys().await.unwrap(), keys);
    assert_eq!(store.receipt_key(&receipt).await.unwrap(), receipt);
    assert_eq!(store.audit_log_key(&log_key).await.unwrap(), log_key);
}

/// Replicas sealing a plaintext database at once: each key is sealed exactly once
/// (a later sealer sees the earlier one's text).
pub async fn concurrent_reseals_seal_each_key_once(store: Arc<dyn Store>) {
    store_every_private_key(store.as_ref()).await;
    let mut tasks = JoinSet::new();
    for _ in 0..6 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            store
                .reseal_private_keys(&|slot: &PrivateKeySlot, text: &str| {
                    Ok((!text.starts_with("sealed:")).then(|| mark(slot, text)))
                })
                .await
                .unwrap()
        });
    }
    let mut total = 0;
    while let Some(joined) = tasks.join_next().await {
        total += joined.unwrap();
    }
    assert_eq!(total, 4);
    for k in store.signing_keys().await.unwrap() {
        assert!(k.private_pem.starts_with("sealed:signing-key/"));
        assert!(!k.private_pem.starts_with("sealed:signing-key/sealed:"));
    }
}

/// Each rotation retires the active key, published until the latest `exp` of the
/// tokens it signed (or `now_s` if it signed none), and leaves exactly one active key.
pub async fn signing_key_rotation_publishes_until_last_expiry(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let first = signing_key(T0_MS);
    store
        .rotate_signing_key(&first, T0_S, &audit_note())
        .await
        .unwrap();

    // Tokens signed by the first key, latest expiry not last recorded; and one by an
    // unrelated kid with a later expiry, which must not count.
    let agent = new_agent(&issuer.id, T0_MS);
    let token = new_token(&agent, &first.kid, T0_S, T0_S + 100);
    store
        .create_agent(&agent, &token, None, &audit_note())
        .await
        .unwrap();
    for exp in [T0_S + 300, T0_S + 200] {
        let token = new_token(&agent, &first.kid, T0_S, exp);
        store.record_token(&token, &audit_note()).await.unwrap();
    }
    let stray = new_token(&agent, "some-other-kid", T0_S, T0_S + 9_999);
    store.record_token(&stray, &audit_note()).await.unwrap();

    let second = signing_key(T0_MS + 1);
    store
        .rotate_signing_key(&second, T0_S + 50, &audit_note())
        .await
        .unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(active_kids(&keys), [second.kid.as_str()]);
    let retired = find(&keys, &first.kid);
    assert_eq!(retired.state, KeyState::Retired);
    assert_eq!(retired.publish_until_s, Some(T0_S + 300));
    assert_eq!(retired.private_pem, first.private_pem);
    assert_eq!(find(&keys, &second.kid).publish_until_s, None);

    // The second key signed nothing: published until the rotation time.
    let third = signing_key(T0_MS + 2);
    store
        .rotate_signing_key(&third, T0_S + 777, &audit_note())
        .await
        .unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 3);
    assert_eq!(active_kids(&keys), [third.kid.as_str()]);
    assert_eq!(find(&keys, &second.kid).state, KeyState::Retired);
    assert_eq!(find(&keys, &second.kid).publish_until_s, Some(T0_S + 777));
    assert_eq!(
        find(&keys, &first.kid).publish_until_s,
        Some(T0_S + 300),
        "an already retired key is left alone"
    );
}

/// A token signed just before a rotation and recorded just after it keeps its (now
/// retired) key published until the token expires; earlier or later expiries never
/// shorten the window, and active keys are untouched.
pub async fn late_token_of_a_retired_key_extends_its_publication(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let first = signing_key(T0_MS);
    store
        .rotate_signing_key(&first, T0_S, &audit_note())
        .await
        .unwrap();
    let agent = new_agent(&issuer.id, T0_MS);
    store
        .create_agent(
            &agent,
            &new_token(&agent, &first.kid, T0_S, T0_S + 100),
            None,
            &audit_note(),
        )
        .await
        .unwrap();
    let second = signing_key(T0_MS + 1);
    store
        .rotate_signing_key(&second, T0_S + 10, &audit_note())
        .await
        .unwrap();
    assert_eq!(
        find(&store.signing_keys().await.unwrap(), &first.kid).publish_until_s,
        Some(T0_S + 100)
    );
    // Recorded after the rotation, signed before it by the first key.
    store
        .record_token(
            &new_token(&agent, &first.kid, T0_S + 9, T0_S + 86_400),
            &audit_note(),
        )
        .await
        .unwrap();
    store
        .record_token(
            &new_token(&agent, &first.kid, T0_S + 9, T0_S + 50),
            &audit_note(),
        )
        .await
        .unwrap();
    store
        .record_token(
            &new_token(&agent, &second.kid, T0_S + 11, T0_S + 99_999),
            &audit_note(),
        )
        .await
        .unwrap();
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(find(&keys, &first.kid).publish_until_s, Some(T0_S + 86_400));
    assert_eq!(
        find(&keys, &second.kid).publish_until_s,
        None,
        "active key untouched"
    );
}

// ---- concurrency

/// 50 tokens recorded at once all succeed.
pub async fn concurrent_record_token(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let (agent, _) = agent(&*store, &issuer.id).await;
    let mut tasks = JoinSet::new();
    for i in 0..50 {
        let token = new_token(&agent, "kid-1", T0_S + i, T0_S + 900 + i);
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            store
                .record_token(&token, &audit_note())
                .await
                .map(|()| token)
        });
    }
    let mut count = 0;
    while let Some(joined) = tasks.join_next().await {
        let token = joined.unwrap().unwrap();
        assert_eq!(store.token(&token.jti).await.unwrap(), Some(token));
        count += 1;
    }
    assert_eq!(count, 50);
}

/// 20 issuers with distinct names created at once all succeed.
pub async fn concurrent_create_issuer(store: Arc<dyn Store>) {
    let mut tasks = JoinSet::new();
    for _ in 0..20 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let issuer = new_issuer();
            let key = key_hash(KeyKind::Issuer);
            store
                .create_issuer(&issuer, &key, &audit_note())
                .await
                .map(|()| issuer)
        });
    }
    let mut count = 0;
    while let Some(joined) = tasks.join_next().await {
        let issuer = joined.unwrap().unwrap();
        assert_eq!(store.issuer(&issuer.id).await.unwrap(), Some(issuer));
        count += 1;
    }
    assert_eq!(count, 20);
}

/// Ten revocations of one agent at once: one wins, and all ten report that one.
pub async fn concurrent_revoke_agent_agrees(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let (agent, _) = agent(&*store, &issuer.id).await;
    let mut tasks = JoinSet::new();
    for i in 0..10 {
        let store = Arc::clone(&store);
        let (issuer, id) = (issuer.id.clone(), agent.id.clone());
        tasks.spawn(async move {
            let reason = format!("reason {i}");
            store
                .revoke_agent(&issuer, &id, Some(&reason), T0_MS + i, &audit_note())
                .await
        });
    }
    let mut results = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        results.push(joined.unwrap().unwrap());
    }
    let stored = store.agent(&agent.id).await.unwrap().unwrap();
    assert_eq!(stored.status, AgentStatus::Revoked);
    assert!(results.iter().all(|r| *r == stored), "{results:#?}");
}

// ---- audit log

/// Appends of one record and of large batches get consecutive indexes and store
/// exactly the hashes core computes.
pub async fn audit_append_stores_every_hash(store: Arc<dyn Store>) {
    assert_eq!(store.audit_size().await.unwrap(), 0);
    assert_eq!(store.audit_append(&[]).await.unwrap(), 0);
    let mut entries = Vec::new();
    let mut next = 0u64;
    for batch in [1usize, 300, 5, 1, 700] {
        let records: Vec<AuditRecord> = (0..batch).map(|_| audit_note()).collect();
        assert_eq!(store.audit_append(&records).await.unwrap(), next);
        next += batch as u64;
        entries.extend(records.into_iter().map(|r| r.entry));
    }
    assert_log_matches(&*store, &entries).await;
    let rows = store.audit_entries(300, 310).await.unwrap();
    assert_eq!(rows.len(), 10);
    for (i, row) in rows.iter().enumerate() {
        assert_eq!(row.index, 300 + i as u64);
        assert_eq!(row.entry, entries[300 + i]);
        assert_eq!(row.leaf_hash, merkle::leaf_hash(&entries[300 + i]));
        assert_eq!(row.owner, None);
    }
    // Ranges past the end return what exists; empty and reversed ranges nothing.
    assert_eq!(store.audit_entries(1000, 2000).await.unwrap().len(), 7);
    assert!(store.audit_entries(5, 5).await.unwrap().is_empty());
    assert!(store.audit_entries(9, 3).await.unwrap().is_empty());
    assert!(
        store
            .audit_entries(u64::MAX - 1, u64::MAX)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Each state change appends its entry in the same transaction; calls that change
/// nothing, and calls that fail, append nothing.
pub async fn audit_state_changes_append_one_entry_each(store: Arc<dyn Store>) {
    let size = || async { store.audit_size().await.unwrap() };
    let admin = key_hash(KeyKind::Admin);
    store
        .add_admin_key(&admin, T0_MS, &audit_note())
        .await
        .unwrap();
    assert_eq!(size().await, 1);
    store
        .add_admin_key(&admin, T0_MS, &audit_note())
        .await
        .unwrap();
    assert_eq!(
        size().await,
        1,
        "adding the same admin key again changes nothing"
    );

    let (first, _) = issuer(&*store).await;
    assert_eq!(size().await, 2);
    let mut clash = new_issuer();
    clash.name.clone_from(&first.name);
    let err = store
        .create_issuer(&clash, &key_hash(KeyKind::Issuer), &audit_note())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)));
    assert_eq!(size().await, 2, "a failed change appends nothing");

    let (agent, token) = agent(&*store, &first.id).await;
    assert_eq!(size().await, 3);
    let second = new_token(&agent, "kid-1", T0_S, T0_S + 900);
    store.record_token(&second, &audit_note()).await.unwrap();
    assert_eq!(size().await, 4);
    store
        .revoke_token(&first.id, &token.jti, T0_MS, &audit_note())
        .await
        .unwrap();
    assert_eq!(size().await, 5);
    store
        .revoke_token(&first.id, &token.jti, T0_MS + 1, &audit_note())
        .await
        .unwrap();
    assert_eq!(size().await, 5, "revoking a token twice changes nothing");
    store
        .revoke_agent(&first.id, &agent.id, None, T0_MS, &audit_note())
        .await
        .unwrap();
    assert_eq!(size().await, 6);
    store
        .revoke_agent(&first.id, &agent.id, None, T0_MS + 1, &audit_note())
        .await
        .unwrap();
    assert_eq!(size().await, 6, "revoking an agent twice changes nothing");
    let (other, _) = issuer(&*store).await;
    assert_eq!(size().await, 7);
    let err = store
        .revoke_agent(&other.id, &agent.id, None, T0_MS, &audit_note())
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::NotFound);
    assert_eq!(size().await, 7);
    store
        .rotate_signing_key(&signing_key(T0_MS + 7), T0_S, &audit_note())
        .await
        .unwrap();
    assert_eq!(size().await, 8);
}

/// An entry's owner is its issuer, or else its agent's issuer.
pub async fn audit_entries_name_their_owner(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let (agent, _) = agent(&*store, &issuer.id).await;
    let start = store.audit_size().await.unwrap();
    let unknown = AgentId::from_random(unique());
    store
        .audit_append(&[
            audit_record(Some(&agent.id), None),
            audit_record(None, Some(&issuer.id)),
            audit_record(None, None),
            audit_record(Some(&unknown), None),
        ])
        .await
        .unwrap();
    let owners: Vec<_> = store
        .audit_entries(start, start + 4)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.owner)
        .collect();
    assert_eq!(
        owners,
        vec![Some(issuer.id.clone()), Some(issuer.id.clone()), None, None]
    );
}

/// Records are found by leaf hash (the first, if an entry repeats).
pub async fn audit_find_by_leaf_hash(store: Arc<dyn Store>) {
    let records: Vec<AuditRecord> = (0..20).map(|_| audit_note()).collect();
    store.audit_append(&records).await.unwrap();
    store.audit_append(&records[7..8]).await.unwrap();
    for (i, r) in records.iter().enumerate() {
        assert_eq!(
            store
                .audit_find(&merkle::leaf_hash(&r.entry))
                .await
                .unwrap(),
            Some(i as u64)
        );
    }
    assert_eq!(store.audit_find(&Hash([0; 32])).await.unwrap(), None);
}

/// The leaf index is extended when checkpoints are stored, off the append path: a
/// record is found the same (the first of a repeated entry) whether it is below the
/// last checkpoint, above it, or a repeat straddles it; a checkpoint claiming more
/// than the log holds indexes only what is there, and what is appended after it is
/// still found.
pub async fn audit_find_across_checkpoints(store: Arc<dyn Store>) {
    let records: Vec<AuditRecord> = (0..30).map(|_| audit_note()).collect();
    let cp = |size: u64| CheckpointRecord {
        size,
        root: Hash([size as u8; 32]),
        note: format!("note {size}\n"),
        created_at_ms: T0_MS,
    };
    let expect = |upto: usize| {
        let records = &records;
        let store = &store;
        async move {
            for (i, r) in records.iter().enumerate() {
                let found = store
                    .audit_find(&merkle::leaf_hash(&r.entry))
                    .await
                    .unwrap();
                assert_eq!(found, (i < upto).then_some(i as u64), "record {i}");
            }
            assert_eq!(store.audit_find(&Hash([0; 32])).await.unwrap(), None);
        }
    };
    expect(0).await;
    store.audit_append(&records[..10]).await.unwrap();
    expect(10).await;
    store.audit_add_checkpoint(&cp(6)).await.unwrap();
    expect(10).await;
    // Records 3 and 8 again (indexes 10, 11): one below the checkpoint, one above.
    store.audit_append(&records[3..4]).await.unwrap();
    store.audit_append(&records[8..9]).await.unwrap();
    // A checkpoint past the log (12 records): indexes 12 at most.
    store.audit_add_checkpoint(&cp(40)).await.unwrap();
    store.audit_append(&records[10..20]).await.unwrap();
    let first: Vec<Option<u64>> = {
        let mut found = Vec::new();
        for r in &records[10..20] {
            found.push(
                store
                    .audit_find(&merkle::leaf_hash(&r.entry))
                    .await
                    .unwrap(),
            );
        }
        found
    };
    assert_eq!(first, (12..22).map(Some).collect::<Vec<_>>());
    store.audit_add_checkpoint(&cp(22)).await.unwrap();
    for (i, r) in records[..10].iter().enumerate() {
        assert_eq!(
            store
                .audit_find(&merkle::leaf_hash(&r.entry))
                .await
                .unwrap(),
            Some(i as u64),
            "record {i}, repeated or not"
        );
    }
    // The same checkpoint stored again changes nothing.
    store.audit_add_checkpoint(&cp(22)).await.unwrap();
    assert_eq!(
        store
            .audit_find(&merkle::leaf_hash(&records[15].entry))
            .await
            .unwrap(),
        Some(17)
    );
    assert_eq!(store.audit_size().await.unwrap(), 22);
}

/// The leaf index is kept by epoch (2^15 records): a record is found in any epoch,
/// at its first index when a repeat lies in a later epoch, and in the tail past the
/// last checkpoint.
pub async fn audit_find_across_epochs(store: Arc<dyn Store>) {
    const N: usize = 70_000;
    let records: Vec<AuditRecord> = (0..N).map(|_| audit_note()).collect();
    for chunk in records.chunks(4096) {
        store.audit_append(chunk).await.unwrap();
    }
    // Record 5 again, in epoch 2.
    store.audit_append(&records[5..6]).await.unwrap();
    store
        .audit_add_checkpoint(&CheckpointRecord {
            size: N as u64 + 1,
            root: Hash([7; 32]),
            note: "note\n".to_owned(),
            created_at_ms: T0_MS,
        })
        .await
        .unwrap();
    // One more after the checkpoint: found in the tail.
    let tail = audit_note();
    store
        .audit_append(std::slice::from_ref(&tail))
        .await
        .unwrap();
    for i in [0usize, 5, 32_767, 32_768, 65_535, 65_536, N - 1] {
        assert_eq!(
            store
                .audit_find(&merkle::leaf_hash(&records[i].entry))
                .await
                .unwrap(),
            Some(i as u64),
            "record {i}"
        );
    }
    assert_eq!(
        store
            .audit_find(&merkle::leaf_hash(&tail.entry))
            .await
            .unwrap(),
        Some(N as u64 + 1)
    );
    assert_eq!(store.audit_find(&Hash([0; 32])).await.unwrap(), None);
}

/// Pruning drops whole tiles of records from the hot database: the entries go, the
/// last record of each tile keeps its hashes (so every hash at level >= 8, the tile
/// roots among them, stays readable and appends and roots are unchanged); the mark
/// moves with each prune, which continues it by whole tiles within the signed and
/// indexed log or is refused with nothing written; the audit record is appended with
/// it; pruned records are found by leaf-hash prefix.
pub async fn audit_prune_drops_entries_and_keeps_tile_roots(store: Arc<dyn Store>) {
    use crate::PRUNE_TILE_LEVEL;
    let records: Vec<AuditRecord> = (0..1000).map(|_| audit_note()).collect();
    for chunk in records.chunks(300) {
        store.audit_append(chunk).await.unwrap();
    }
    let mut entries: Vec<Vec<u8>> = records.iter().map(|r| r.entry.clone()).collect();
    let mut expected: Vec<Hash> = Vec::new();
    for (n, entry) in entries.iter().enumerate() {
        expected.extend(merkle::stored_hashes(n as u64, entry, &expected).unwrap());
    }
    let cp = |size: u64, expected: &[Hash]| CheckpointRecord {
        size,
        root: merkle::tree_hash(size, expected).unwrap(),
        note: format!("note {size}\n"),
        created_at_ms: T0_MS,
    };
    store
        .audit_add_checkpoint(&cp(600, &expected))
        .await
        .unwrap();
    assert_eq!(store.audit_pruned().await.unwrap(), 0);
    assert!(
        store
            .audit_find_pruned(&merkle::leaf_hash(&entries[3]))
            .await
            .unwrap()
            .is_empty()
    );

    // Refused, nothing written: not whole tiles, not from the mark, beyond the
    // latest checkpoint (600), empty.
    for (from, to) in [(0, 100), (0, 300), (256, 512), (0, 768), (0, 0), (256, 0)] {
        assert_eq!(
            store.audit_prune(from, to, Some(&audit_note())).await,
            Err(StoreError::Conflict(ConflictKind::PruneRange)),
            "[{from}, {to})"
        );
    }
    assert_eq!(store.audit_pruned().await.unwrap(), 0);
    assert_eq!(store.audit_size().await.unwrap(), 1000);
    assert_eq!(store.audit_entries(0, 1000).await.unwrap().len(), 1000);

    let note = audit_note();
    assert_eq!(store.audit_prune(0, 256, Some(&note)).await.unwrap(), 256);
    entries.push(note.entry.clone());
    expected.extend(merkle::stored_hashes(1000, &note.entry, &expected).unwrap());
    assert_eq!(store.audit_pruned().await.unwrap(), 256);
    assert_eq!(store.audit_size().await.unwrap(), 1001);
    assert_eq!(entry_at(&*store, 1000).await, note.entry);
    // Continuing from the mark; the same range again is refused.
    assert_eq!(store.audit_prune(256, 512, None).await.unwrap(), 256);
    assert_eq!(
        store.audit_prune(256, 512, None).await,
        Err(StoreError::Conflict(ConflictKind::PruneRange))
    );
    assert_eq!(store.audit_pruned().await.unwrap(), 512);

    // The entries below the mark are gone, the rest as they were.
    let rows = store.audit_entries(0, 600).await.unwrap();
    assert_eq!(rows.first().map(|r| r.index), Some(512));
    assert_eq!(rows.len(), 88);
    for row in &rows {
        assert_eq!(row.entry, entries[row.index as usize]);
    }
    // Every hash at level >= 8 is kept, and each tile's last leaf; the other
    // hashes below the mark are not.
    let mut kept = Vec::new();
    let mut gone = Vec::new();
    for i in 0..expected.len() as u64 {
        let (level, n) = merkle::split_stored_hash_index(i);
        let last_leaf = ((n + 1) << level) - 1;
        let pruned = last_leaf < 512;
        if !pruned || level >= PRUNE_TILE_LEVEL || last_leaf % 256 == 255 {
            kept.push(i);
        } else {
            gone.push(i);
        }
    }
    let read = store.audit_hashes(&kept).await.unwrap();
    for (i, h) in kept.iter().zip(&read) {
        assert_eq!(*h, expected[*i as usize], "stored hash {i}");
    }
    // Per tile: 510 hashes below level 8, 8 of them (the rightmost of each level) kept.
    assert_eq!(gone.len(), 2 * (510 - 8));
    for i in [gone[0], gone[gone.len() / 2], gone[gone.len() - 1]] {
        assert_eq!(
            store.audit_hashes(&[i]).await,
            Err(StoreError::NotFound),
            "{i}"
        );
    }
    // Appends and roots over the kept hashes are unchanged.
    let more: Vec<AuditRecord> = (0..20).map(|_| audit_note()).collect();
    assert_eq!(store.audit_append(&more).await.unwrap(), 1001);
    for r in &more {
        let n = entries.len() as u64;
        expected.extend(merkle::stored_hashes(n, &r.entry, &expected).unwrap());
        entries.push(r.entry.clone());
    }
    for size in [512u64, 600, 1021] {
        let idx = merkle::tree_hash_indexes(size);
        let got =
            merkle::Prefetched::new(idx.clone(), store.audit_hashes(&idx).await.unwrap()).unwrap();
        assert_eq!(
            merkle::tree_hash(size, &got).unwrap(),
            merkle::tree_hash(size, &expected).unwrap(),
            "root at {size}"
        );
    }

    // Lookup by leaf hash: a pruned record by its prefix, the kept last record of a
    // tile and the records above the mark as before.
    for i in [0usize, 3, 254, 256, 510] {
        let leaf = merkle::leaf_hash(&entries[i]);
        assert_eq!(
            store.audit_find_pruned(&leaf).await.unwrap(),
            vec![i as u64],
            "{i}"
        );
        assert_eq!(store.audit_find(&leaf).await.unwrap(), None, "{i}");
    }
    for i in [255usize, 511, 512, 599, 1020] {
        let leaf = merkle::leaf_hash(&entries[i]);
        assert!(
            store.audit_find_pruned(&leaf).await.unwrap().is_empty(),
            "{i}"
        );
        assert_eq!(
            store.audit_find(&leaf).await.unwrap(),
            Some(i as u64),
            "{i}"
        );
    }
    assert!(
        store
            .audit_find_pruned(&Hash([0; 32]))
            .await
            .unwrap()
            .is_empty()
    );

    // Not beyond the leaf index either: a checkpoint past the log indexes what is
    // there, and the prune stops at the last whole tile of it.
    store
        .audit_add_checkpoint(&cp(1021, &expected))
        .await
        .unwrap();
    assert_eq!(
        store.audit_prune(512, 1280, None).await,
        Err(StoreError::Conflict(ConflictKind::PruneRange))
    );
    assert_eq!(
        store.audit_prune(512, 1024, None).await,
        Err(StoreError::Conflict(ConflictKind::PruneRange))
    );
    assert_eq!(store.audit_prune(512, 768, None).await.unwrap(), 256);
    assert_eq!(
        store.audit_entries(0, 2000).await.unwrap().len(),
        1021 - 768
    );
}

/// Hashes beyond the log, or at absurd indexes, are `NotFound`, never a panic.
pub async fn audit_missing_hashes_are_not_found(store: Arc<dyn Store>) {
    assert_eq!(store.audit_hashes(&[]).await.unwrap(), Vec::<Hash>::new());
    assert_eq!(store.audit_hashes(&[0]).await, Err(StoreError::NotFound));
    store
        .audit_append(&[audit_note(), audit_note()])
        .await
        .unwrap();
    assert_eq!(store.audit_hashes(&[0, 1, 2]).await.unwrap().len(), 3);
    for bad in [3, 1000, u64::MAX / 2, u64::MAX] {
        assert_eq!(
            store.audit_hashes(&[0, bad]).await,
            Err(StoreError::NotFound),
            "{bad}"
        );
    }
}

/// The latest checkpoint is the largest; storing one again is a no-op; another root
/// at a stored size is refused.
pub async fn audit_checkpoints_keep_latest_and_refuse_another_root(store: Arc<dyn Store>) {
    assert_eq!(store.audit_latest_checkpoint().await.unwrap(), None);
    let cp = |size: u64, root: u8| CheckpointRecord {
        size,
        root: Hash([root; 32]),
        note: format!("note {size} {root}\n"),
        created_at_ms: T0_MS,
    };
    store.audit_add_checkpoint(&cp(5, 1)).await.unwrap();
    store.audit_add_checkpoint(&cp(9, 2)).await.unwrap();
    store.audit_add_checkpoint(&cp(7, 3)).await.unwrap();
    assert_eq!(
        store.audit_latest_checkpoint().await.unwrap(),
        Some(cp(9, 2))
    );
    store.audit_add_checkpoint(&cp(9, 2)).await.unwrap();
    let err = store.audit_add_checkpoint(&cp(9, 4)).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(
        store.audit_latest_checkpoint().await.unwrap(),
        Some(cp(9, 2))
    );
}

/// The first log key offered is kept for good.
pub async fn audit_log_key_is_created_once(store: Arc<dyn Store>) {
    let first = LogKeyRecord {
        origin: "first.example/log".into(),
        signer_key: "PRIVATE+KEY+first".into(),
        created_at_ms: T0_MS,
    };
    let second = LogKeyRecord {
        origin: "second.example/log".into(),
        signer_key: "PRIVATE+KEY+second".into(),
        created_at_ms: T0_MS + 1,
    };
    assert_eq!(store.audit_log_key(&first).await.unwrap(), first);
    assert_eq!(store.audit_log_key(&second).await.unwrap(), first);
    assert!(!format!("{first:?}").contains("PRIVATE"));
}

/// Batches appended at once, with state changes between them, form one sequence with
/// no gap or repeat, and its hashes are those of that sequence.
pub async fn concurrent_audit_appends_form_one_sequence(store: Arc<dyn Store>) {
    let mut tasks = JoinSet::new();
    for t in 0..16u64 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            if t % 4 == 0 {
                let issuer = new_issuer();
                store
                    .create_issuer(&issuer, &key_hash(KeyKind::Issuer), &audit_note())
                    .await
                    .unwrap();
            }
            let records: Vec<AuditRecord> = (0..=t).map(|_| audit_note()).collect();
            let first = store.audit_append(&records).await.unwrap();
            (first, records)
        });
    }
    let mut batches = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        batches.push(joined.unwrap());
    }
    let size = store.audit_size().await.unwrap();
    assert_eq!(size, (1..=16).sum::<u64>() + 4);
    let rows = store.audit_entries(0, size).await.unwrap();
    assert_eq!(rows.len() as u64, size);
    for (first, records) in &batches {
        for (i, r) in records.iter().enumerate() {
            assert_eq!(rows[*first as usize + i].entry, r.entry);
        }
    }
    let entries: Vec<Vec<u8>> = rows.into_iter().map(|r| r.entry).collect();
    assert_log_matches(&*store, &entries).await;
}

// ---- receivers

/// The receiver reads back, its key is found as a receiver key it owns, and its
/// creation is audited.
pub async fn create_receiver_stores_receiver_and_key(store: Arc<dyn Store>) {
    let before = store.audit_size().await.unwrap();
    let receiver = new_receiver();
    let key = key_hash(KeyKind::Receiver);
    let audit = audit_note();
    store
        .create_receiver(&receiver, &key, &audit)
        .await
        .unwrap();
    assert_eq!(
        store.receiver(&receiver.id).await.unwrap(),
        Some(receiver.clone())
    );
    assert_eq!(
        store.api_key(&key).await.unwrap(),
        Some(ApiKeyRecord::new(
            key,
            KeyKind::Receiver,
            Some(receiver.id.as_str().to_owned()),
            "initial key",
            "admin",
            receiver.created_at_ms
        ))
    );
    assert_eq!(store.audit_size().await.unwrap(), before + 1);
    assert_eq!(entry_at(&*store, before).await, audit.entry);
    assert!(!store.has_admin_key().await.unwrap());
    assert_eq!(
        store
            .receiver(&ReceiverId::from_random(unique()))
            .await
            .unwrap(),
        None
    );
}

/// A taken name is `Conflict`: nothing of the second receiver is stored or audited.
pub async fn create_receiver_rejects_taken_name(store: Arc<dyn Store>) {
    let first = receiver(&*store).await;
    let size = store.audit_size().await.unwrap();
    let second = Receiver {
        id: ReceiverId::from_random(unique()),
        name: first.name.clone(),
        audiences: vec![first.name.clone()],
        created_at_ms: T0_MS + 1,
    };
    let key = key_hash(KeyKind::Receiver);
    let err = store
        .create_receiver(&second, &key, &audit_note())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.receiver(&second.id).await.unwrap(), None);
    assert_eq!(store.api_key(&key).await.unwrap(), None);
    assert_eq!(store.audit_size().await.unwrap(), size);
    assert_eq!(store.receiver(&first.id).await.unwrap(), Some(first));
}

/// Audiences are replaced with their audit record in one transaction; an unknown
/// receiver is `NotFound` and nothing is audited.
pub async fn set_receiver_audiences_replaces_them_with_the_audit_record(store: Arc<dyn Store>) {
    let receiver = receiver(&*store).await;
    let size = store.audit_size().await.unwrap();
    let audit = audit_note();
    let new = vec!["bank-eu".to_owned(), "https://api.bank.example".to_owned()];
    store
        .set_receiver_audiences(&receiver.id, &new, &audit)
        .await
        .unwrap();
    let got = store.receiver(&receiver.id).await.unwrap().unwrap();
    assert_eq!(got.audiences, new);
    assert_eq!(got.name, receiver.name);
    assert_eq!(store.audit_size().await.unwrap(), size + 1);
    assert_eq!(entry_at(&*store, size).await, audit.entry);

    let err = store
        .set_receiver_audiences(&ReceiverId::from_random(unique()), &new, &audit_note())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    assert_eq!(store.audit_size().await.unwrap(), size + 1);

    // An audience belongs to one receiver: taking another's is `Conflict`, and
    // nothing of the change is kept (neither receiver's audiences, nor the audit).
    let other = self::receiver(&*store).await;
    let err = store
        .set_receiver_audiences(
            &other.id,
            &["mine".to_owned(), "bank-eu".to_owned()],
            &audit_note(),
        )
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let size = store.audit_size().await.unwrap();
    assert_eq!(
        store.receiver(&other.id).await.unwrap().unwrap().audiences,
        other.audiences
    );
    assert_eq!(
        store
            .receiver(&receiver.id)
            .await
            .unwrap()
            .unwrap()
            .audiences,
        new
    );
    let mut taken = new_receiver();
    taken.audiences = vec!["https://api.bank.example".to_owned()];
    let err = store
        .create_receiver(&taken, &key_hash(KeyKind::Receiver), &audit_note())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    assert_eq!(store.receiver(&taken.id).await.unwrap(), None);
    assert_eq!(store.audit_size().await.unwrap(), size);
}

// ---- agents: policy and user

/// An agent's policy and user read back from every read, and survive revocation.
pub async fn agent_policy_and_user_round_trip(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let with = Agent {
        policy: Some(r#"{"id":"pol_ünï","v":"pol.v0.2"}"#.to_owned()),
        user: Some("alice@example.com".to_owned()),
        ..new_agent(&issuer.id, T0_MS)
    };
    let only_user = Agent {
        policy: None,
        user: Some("opaque-42".to_owned()),
        ..new_agent(&issuer.id, T0_MS + 1)
    };
    for agent in [&with, &only_user] {
        store
            .create_agent(
                agent,
                &new_token(agent, "kid-1", T0_S, T0_S + 60),
                None,
                &audit_note(),
            )
            .await
            .unwrap();
    }
    assert_eq!(store.agent(&with.id).await.unwrap(), Some(with.clone()));
    assert_eq!(
        store.agent(&only_user.id).await.unwrap(),
        Some(only_user.clone())
    );
    let page = store.list_agents(&issuer.id, None, 10).await.unwrap();
    assert_eq!(page.items, [with.clone(), only_user]);
    let revoked = store
        .revoke_agent(&issuer.id, &with.id, None, T0_MS + 5, &audit_note())
        .await
        .unwrap();
    assert_eq!(revoked.policy, with.policy);
    assert_eq!(revoked.user, with.user);
}

// ---- decisions: budgets

/// Charges of 0.10 add up to exactly 0.30, within a batch and across calls; `decide`
/// sees the spending so far, as the outcome reports it.
pub async fn budget_charges_add_up_exactly(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let key = budget_key(&issuer.id, "EUR");
    assert_eq!(store.budget_spent(&key).await.unwrap(), Decimal::ZERO);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let charging = |seen: &Arc<Mutex<Vec<Option<Decimal>>>>| {
        let seen = Arc::clone(seen);
        DecisionItem {
            quota: None,
            nonce: None,
            budget: budget(&key, "1.00"),
            idempotency: None,
            decide: Box::new(move |spent| {
                seen.lock().unwrap().push(spent);
                Ok(logged(Some("0.10"), ""))
            }),
        }
    };

    let start = store.audit_size().await.unwrap();
    let first = store
        .record_decisions(vec![charging(&seen)], T0_MS)
        .await
        .unwrap();
    assert_eq!(first, [Ok(recorded(Some(start), Some("0")))]);
    let rest = store
        .record_decisions(vec![charging(&seen), charging(&seen)], T0_MS)
        .await
        .unwrap();
    assert_eq!(
        rest,
        [
            Ok(recorded(Some(start + 1), Some("0.10"))),
            Ok(recorded(Some(start + 2), Some("0.20"))),
        ]
    );
    assert_eq!(
        *seen.lock().unwrap(),
        [Some(dec("0")), Some(dec("0.10")), Some(dec("0.20"))]
    );
    let spent = store.budget_spent(&key).await.unwrap();
    assert_eq!(spent, dec("0.30"));
    assert_eq!(spent.to_string(), "0.30", "exact decimal, no float");
    assert_eq!(store.audit_size().await.unwrap(), start + 3);

    // Another period is another budget.
    let tomorrow = BudgetKey {
        period_key: "2023-11-15".to_owned(),
        ..key.clone()
    };
    assert_eq!(store.budget_spent(&tomorrow).await.unwrap(), Decimal::ZERO);
    // A decision with a budget that charges nothing leaves it as it is.
    let out = store
        .record_decisions(
            vec![item(budget(&key, "1.00"), None, logged(None, ""))],
            T0_MS,
        )
        .await
        .unwrap();
    assert_eq!(out, [Ok(recorded(Some(start + 3), Some("0.30")))]);
    assert_eq!(store.budget_spent(&key).await.unwrap(), dec("0.30"));
}

/// A charge that would take the budget over its cap is `Conflict` for that item:
/// no audit entry, receipt, idempotency record or spending of it is stored. A charge
/// up to exactly the cap is fine.
pub async fn charge_over_the_cap_writes_nothing(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let rcv = receiver(&*store).await;
    let key = budget_key(&issuer.id, "USD");
    store
        .record_decisions(
            vec![item(budget(&key, "1.00"), None, logged(Some("0.90"), ""))],
            T0_MS,
        )
        .await
        .unwrap();
    let size = store.audit_size().await.unwrap();

    let over = logged(Some("0.11"), "over");
    let over_receipt = over.receipt.clone().unwrap();
    let fits = logged(Some("0.10"), "fits");
    let out = store
        .record_decisions(
            vec![
                item(budget(&key, "1.00"), claim(&rcv.id, "over", 1), over),
                item(budget(&key, "1.00"), None, fits.clone()),
            ],
            T0_MS,
        )
        .await
        .unwrap();
    assert!(
        matches!(&out[0], Err(StoreError::Conflict(_))),
        "{:?}",
        out[0]
    );
    assert_eq!(out[1], Ok(recorded(Some(size), Some("0.90"))));
    assert_eq!(store.audit_size().await.unwrap(), size + 1);
    assert_eq!(entry_at(&*store, size).await, fits.audit.unwrap().entry);
    assert_eq!(store.budget_spent(&key).await.unwrap(), dec("1.00"));
    assert_eq!(store.receipt(&over_receipt.id).await.unwrap(), None);

    // The refused item's idempotency key was not stored: it records afresh.
    let out = store
        .record_decisions(
            vec![item(None, claim(&rcv.id, "over", 2), logged(None, ""))],
            T0_MS,
        )
        .await
        .unwrap();
    assert_eq!(out, [Ok(recorded(Some(size + 1), None))]);
    // Full: even the smallest charge is refused; a charge of nothing is not.
    let out = store
        .record_decisions(
            vec![
                item(budget(&key, "1.00"), None, logged(Some("0.01"), "")),
                item(budget(&key, "1.00"), None, logged(Some("0"), "")),
            ],
            T0_MS,
        )
        .await
        .unwrap();
    assert!(matches!(out[0], Err(StoreError::Conflict(_))), "{out:?}");
    assert_eq!(out[1], Ok(recorded(Some(size + 2), Some("1.00"))));
    // A negative charge would give spending back: refused.
    let out = store
        .record_decisions(
            vec![item(budget(&key, "1.00"), None, logged(Some("-0.50"), ""))],
            T0_MS,
        )
        .await
        .unwrap();
    assert!(matches!(out[0], Err(StoreError::Conflict(_))), "{out:?}");
    assert_eq!(store.budget_spent(&key).await.unwrap(), dec("1.00"));
    assert_eq!(store.audit_size().await.unwrap(), size + 3);
}

/// An error from `decide` is that item's result; the items around it are recorded,
/// with consecutive audit indexes, and nothing of the failed one is stored.
pub async fn decide_error_fails_only_its_item(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let rcv = receiver(&*store).await;
    let key = budget_key(&issuer.id, "EUR");
    let size = store.audit_size().await.unwrap();
    let before = logged(Some("1"), "before");
    let after = logged(Some("2"), "after");
    let failed = DecisionItem {
        quota: None,
        nonce: None,
        budget: budget(&key, "100"),
        idempotency: claim(&rcv.id, "failed", 1),
        decide: Box::new(|_| Err(StoreError::NotFound)),
    };
    let out = store
        .record_decisions(
            vec![
                item(
                    budget(&key, "100"),
                    claim(&rcv.id, "before", 1),
                    before.clone(),
                ),
                failed,
                item(
                    budget(&key, "100"),
                    claim(&rcv.id, "after", 1),
                    after.clone(),
                ),
            ],
            T0_MS,
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            Ok(recorded(Some(size), Some("0"))),
            Err(StoreError::NotFound),
            Ok(recorded(Some(size + 1), Some("1"))),
        ]
    );
    assert_eq!(store.audit_size().await.unwrap(), size + 2);
    assert_eq!(entry_at(&*store, size).await, before.audit.unwrap().entry);
    assert_eq!(
        entry_at(&*store, size + 1).await,
        after.audit.unwrap().entry
    );
    assert_eq!(store.budget_spent(&key).await.unwrap(), dec("3"));
    let out = store
        .record_decisions(
            vec![item(None, claim(&rcv.id, "failed", 2), logged(None, ""))],
            T0_MS,
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        [Ok(recorded(Some(size + 2), None))],
        "the failed item's key was not stored"
    );
}

/// A decision without a budget that asks to charge is refused; nothing is written.
pub async fn charge_without_a_budget_writes_nothing(store: Arc<dyn Store>) {
    let size = store.audit_size().await.unwrap();
    let stray = logged(Some("1"), "");
    let receipt = stray.receipt.clone().unwrap();
    let out = store
        .record_decisions(vec![item(None, None, stray)], T0_MS)
        .await
        .unwrap();
    assert!(matches!(out[0], Err(StoreError::Conflict(_))), "{out:?}");
    assert_eq!(store.audit_size().await.unwrap(), size);
    assert_eq!(store.receipt(&receipt.id).await.unwrap(), None);
}

/// A budget is per issuer, policy, period and currency: a charge in another currency,
/// or of another issuer's policy with the same id, starts from zero and leaves the
/// others alone.
pub async fn budgets_are_separate_per_currency_and_issuer(store: Arc<dyn Store>) {
    let (a, _) = issuer(&*store).await;
    let (b, _) = issuer(&*store).await;
    let usd = budget_key(&a.id, "USD");
    let eur = budget_key(&a.id, "EUR");
    let other = budget_key(&b.id, "USD");
    let size = store.audit_size().await.unwrap();
    let out = store
        .record_decisions(
            vec![
                item(budget(&usd, "10"), None, logged(Some("9"), "")),
                item(budget(&eur, "10"), None, logged(Some("7"), "")),
                item(budget(&other, "10"), None, logged(Some("10"), "")),
                item(budget(&usd, "10"), None, logged(Some("1"), "")),
            ],
            T0_MS,
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            Ok(recorded(Some(size), Some("0"))),
            Ok(recorded(Some(size + 1), Some("0"))),
            Ok(recorded(Some(size + 2), Some("0"))),
            Ok(recorded(Some(size + 3), Some("9"))),
        ]
    );
    assert_eq!(store.budget_spent(&usd).await.unwrap(), dec("10"));
    assert_eq!(store.budget_spent(&eur).await.unwrap(), dec("7"));
    assert_eq!(store.budget_spent(&other).await.unwrap(), dec("10"));
}

/// A delegated token's charge goes to its own budget and each ancestor's (one shared
/// with its own counted once); `decide` sees the tightest remaining as spent; a charge
/// over any cap refuses the whole item and charges none of them.
pub async fn ancestor_budgets_are_charged_together(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let key = |policy: &str| BudgetKey {
        policy_id: policy.to_owned(),
        ..budget_key(&issuer.id, "USD")
    };
    let (own, parent, root) = (key("pol_own"), key("pol_parent"), key("pol_root"));
    let charge = |cap: &str| BudgetCharge {
        key: own.clone(),
        cap: dec(cap),
        ancestors: vec![
            AncestorBudget {
                key: root.clone(),
                cap: dec("10"),
            },
            AncestorBudget {
                key: parent.clone(),
                cap: dec("100"),
            },
            // The child kept an ancestor's policy: the same budget, charged once.
            AncestorBudget {
                key: own.clone(),
                cap: dec("8"),
            },
        ],
    };
    let size = store.audit_size().await.unwrap();
    // The root alone, spent 7 by a sibling: 3 left of 10.
    let out = store
        .record_decisions(
            vec![item(budget(&root, "10"), None, logged(Some("7"), ""))],
            T0_MS,
        )
        .await
        .unwrap();
    assert_eq!(out, [Ok(recorded(Some(size), Some("0")))]);
    let seen = Arc::new(Mutex::new(Vec::new()));
    let seen_by = |amount: &'static str| {
        let seen = Arc::clone(&seen);
        DecisionItem {
            quota: None,
            nonce: None,
            budget: Some(charge("8")),
            idempotency: None,
            decide: Box::new(move |spent| {
                seen.lock().unwrap().push(spent);
                Ok(logged(Some(amount), ""))
            }),
        }
    };
    let out = store
        .record_decisions(vec![seen_by("2"), seen_by("2")], T0_MS)
        .await
        .unwrap();
    // Own cap 8, root has 3 left: seen as 5 spent; after 2 more, root has 1 left.
    assert_eq!(out[0], Ok(recorded(Some(size + 1), Some("5"))));
    assert!(matches!(out[1], Err(StoreError::Conflict(_))), "{out:?}");
    assert_eq!(*seen.lock().unwrap(), [Some(dec("5")), Some(dec("7"))]);
    assert_eq!(store.budget_spent(&own).await.unwrap(), dec("2"));
    assert_eq!(store.budget_spent(&parent).await.unwrap(), dec("2"));
    assert_eq!(store.budget_spent(&root).await.unwrap(), dec("9"));
    assert_eq!(store.audit_size().await.unwrap(), size + 2);
    // `seen_spent` is the same rule.
    let spent = |k: &BudgetKey| {
        if *k == root { dec("9") } else { dec("2") }
    };
    assert_eq!(charge("8").seen_spent(spent), dec("7"));
    assert_eq!(charge("0.5").seen_spent(spent), dec("2"));
}

fn new_delegation(token: &TokenRecord, parent: &TokenRecord, actor: &Agent) -> DelegationRecord {
    DelegationRecord {
        jti: token.jti.clone(),
        parent_jti: parent.jti.clone(),
        actor_id: actor.id.clone(),
        ancestor_policies: vec![
            r#"{"id":"pol_root","v":"pol.v0.2"}"#.to_owned(),
            "{\"id\":\"é ✓\"}".to_owned(),
        ],
        ancestor_keys: vec![
            crate::AncestorKey {
                agent: parent.agent_id.clone(),
                issuer_kid: Some("kid-of-the-root-signer".into()),
                jkt: None,
                policy_revocation: None,
            },
            crate::AncestorKey {
                agent: actor.id.clone(),
                issuer_kid: None,
                jkt: Some("jkt-of-the-parent".into()),
                policy_revocation: None,
            },
        ],
        created_at_ms: T0_MS + 5,
    }
}

/// A delegated token is stored as a token, with its delegation and audit record;
/// other tokens have no delegation.
pub async fn delegated_token_round_trips_with_its_delegation(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let (root, root_token) = agent(&*store, &issuer.id).await;
    let (actor, _) = agent(&*store, &issuer.id).await;
    let child = new_token(&root, "kid-1", T0_S + 1, T0_S + 600);
    let delegation = new_delegation(&child, &root_token, &actor);
    let size = store.audit_size().await.unwrap();
    store
        .record_delegated_token(&child, &delegation, &audit_note())
        .await
        .unwrap();
    assert_eq!(store.audit_size().await.unwrap(), size + 1);
    assert_eq!(store.token(&child.jti).await.unwrap(), Some(child.clone()));
    assert_eq!(
        store.delegation(&child.jti).await.unwrap(),
        Some(delegation.clone())
    );
    assert_eq!(store.delegation(&root_token.jti).await.unwrap(), None);
    // Revoking the subject agent revokes its delegated tokens too.
    store
        .revoke_agent(&issuer.id, &root.id, None, T0_MS + 9, &audit_note())
        .await
        .unwrap();
    assert!(
        store
            .revocations()
            .await
            .unwrap()
            .tokens
            .contains(&child.jti)
    );
}

/// Nothing is written when any part fails: a taken jti, an unknown actor.
pub async fn delegated_token_is_atomic(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let (root, root_token) = agent(&*store, &issuer.id).await;
    let (actor, _) = agent(&*store, &issuer.id).await;
    let size = store.audit_size().await.unwrap();
    let taken = new_delegation(&root_token, &root_token, &actor);
    let err = store
        .record_delegated_token(&root_token, &taken, &audit_note())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
    let child = new_token(&root, "kid-1", T0_S + 1, T0_S + 600);
    let stranger = new_agent(&issuer.id, T0_MS);
    let err = store
        .record_delegated_token(
            &child,
            &new_delegation(&child, &root_token, &stranger),
            &audit_note(),
        )
        .await
        .unwrap_err();
    assert_eq!(err, StoreError::NotFound);
    assert_eq!(store.token(&child.jti).await.unwrap(), None);
    assert_eq!(store.delegation(&child.jti).await.unwrap(), None);
    assert_eq!(store.audit_size().await.unwrap(), size);
}

// ---- decisions: idempotency

/// A retry with the same key and request replays the first answer and audit index,
/// without running `decide` or writing anything, even if it would charge.
pub async fn idempotency_replay_returns_the_first_answer(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let rcv = receiver(&*store).await;
    let key = budget_key(&issuer.id, "EUR");
    let size = store.audit_size().await.unwrap();
    let out = store
        .record_decisions(
            vec![
                item(
                    budget(&key, "10"),
                    claim(&rcv.id, "k1", 1),
                    logged(Some("4"), "first"),
                ),
                // Not logged: its replay has no audit index.
                item(
                    None,
                    claim(&rcv.id, "k2", 1),
                    Decided {
                        audit: None,
                        receipt: None,
                        charge: None,
                        answer: b"unlogged".to_vec(),
                    },
                ),
            ],
            T0_MS,
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            Ok(recorded(Some(size), Some("0"))),
            Ok(recorded(None, None))
        ]
    );

    let retry = logged(Some("4"), "second");
    let retry_receipt = retry.receipt.clone().unwrap();
    let (retry, ran) = item_not_decided(budget(&key, "10"), claim(&rcv.id, "k1", 1), retry);
    let (retry_unlogged, ran_unlogged) =
        item_not_decided(None, claim(&rcv.id, "k2", 1), logged(None, "again"));
    let out = store
        .record_decisions(vec![retry, retry_unlogged], T0_MS)
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            Ok(DecisionOutcome::Replay {
                answer: b"first".to_vec(),
                audit_index: Some(size),
            }),
            Ok(DecisionOutcome::Replay {
                answer: b"unlogged".to_vec(),
                audit_index: None,
            }),
        ]
    );
    assert!(!ran.load(Ordering::SeqCst) && !ran_unlogged.load(Ordering::SeqCst));
    assert_eq!(store.audit_size().await.unwrap(), size + 1);
    assert_eq!(store.budget_spent(&key).await.unwrap(), dec("4"));
    assert_eq!(store.receipt(&retry_receipt.id).await.unwrap(), None);
}

/// The same key with another request is `IdempotencyConflict`; nothing is written and
/// the first record stays.
pub async fn idempotency_key_with_another_request_conflicts(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let rcv = receiver(&*store).await;
    let key = budget_key(&issuer.id, "EUR");
    let size = store.audit_size().await.unwrap();
    store
        .record_decisions(
            vec![item(
                budget(&key, "10"),
                claim(&rcv.id, "k", 1),
                logged(Some("1"), "first"),
            )],
            T0_MS,
        )
        .await
        .unwrap();
    let (other, ran) = item_not_decided(
        budget(&key, "10"),
        claim(&rcv.id, "k", 2),
        logged(Some("1"), "x"),
    );
    let out = store.record_decisions(vec![other], T0_MS).await.unwrap();
    assert_eq!(out, [Ok(DecisionOutcome::IdempotencyConflict)]);
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(store.audit_size().await.unwrap(), size + 1);
    assert_eq!(store.budget_spent(&key).await.unwrap(), dec("1"));
    let out = store
        .record_decisions(
            vec![item(None, claim(&rcv.id, "k", 1), logged(None, ""))],
            T0_MS,
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        [Ok(DecisionOutcome::Replay {
            answer: b"first".to_vec(),
            audit_index: Some(size),
        })]
    );
}

/// Inside one batch, a later item with the same key sees the earlier one's record.
pub async fn idempotency_key_twice_in_one_batch(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let rcv = receiver(&*store).await;
    let key = budget_key(&issuer.id, "EUR");
    let size = store.audit_size().await.unwrap();
    let (again, ran_again) = item_not_decided(
        budget(&key, "10"),
        claim(&rcv.id, "k", 1),
        logged(Some("1"), "b"),
    );
    let (other, ran_other) = item_not_decided(
        budget(&key, "10"),
        claim(&rcv.id, "k", 2),
        logged(Some("1"), "c"),
    );
    let out = store
        .record_decisions(
            vec![
                item(
                    budget(&key, "10"),
                    claim(&rcv.id, "k", 1),
                    logged(Some("1"), "a"),
                ),
                again,
                other,
            ],
            T0_MS,
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            Ok(recorded(Some(size), Some("0"))),
            Ok(DecisionOutcome::Replay {
                answer: b"a".to_vec(),
                audit_index: Some(size),
            }),
            Ok(DecisionOutcome::IdempotencyConflict),
        ]
    );
    assert!(!ran_again.load(Ordering::SeqCst) && !ran_other.load(Ordering::SeqCst));
    assert_eq!(store.audit_size().await.unwrap(), size + 1);
    assert_eq!(store.budget_spent(&key).await.unwrap(), dec("1"));
}

/// Keys are scoped to their receiver: the same key for two receivers is two records.
pub async fn idempotency_keys_are_per_receiver(store: Arc<dyn Store>) {
    let one = receiver(&*store).await;
    let two = receiver(&*store).await;
    let size = store.audit_size().await.unwrap();
    let out = store
        .record_decisions(
            vec![
                item(None, claim(&one.id, "k", 1), logged(None, "one")),
                item(None, claim(&two.id, "k", 2), logged(None, "two")),
            ],
            T0_MS,
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            Ok(recorded(Some(size), None)),
            Ok(recorded(Some(size + 1), None))
        ]
    );
    let out = store
        .record_decisions(
            vec![
                item(None, claim(&two.id, "k", 2), logged(None, "")),
                item(None, claim(&one.id, "k", 1), logged(None, "")),
                item(None, claim(&one.id, "k", 2), logged(None, "")),
            ],
            T0_MS,
        )
        .await
        .unwrap();
    assert_eq!(
        out,
        [
            Ok(DecisionOutcome::Replay {
                answer: b"two".to_vec(),
                audit_index: Some(size + 1),
            }),
            Ok(DecisionOutcome::Replay {
                answer: b"one".to_vec(),
                audit_index: Some(size),
            }),
            Ok(DecisionOutcome::IdempotencyConflict),
        ]
    );
}

/// Each receipt is stored with its own decision's audit index (whatever `decide` put
/// there), and that index holds exactly the decision's audit entry.
pub async fn receipts_carry_their_audit_index(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let rcv = receiver(&*store).await;
    store
        .audit_append(&[audit_note(), audit_note()])
        .await
        .unwrap();
    let size = store.audit_size().await.unwrap();
    let mut items = Vec::new();
    let mut made = Vec::new();
    for n in 0..5i64 {
        let audit = audit_record(None, Some(&issuer.id));
        let mut receipt = new_receipt(Some(&rcv.id), Some(&issuer.id), T0_MS + n);
        receipt.audit_index = Some(999);
        made.push((receipt.clone(), audit.entry.clone()));
        items.push(item(
            None,
            None,
            Decided {
                audit: Some(audit),
                receipt: Some(receipt),
                charge: None,
                answer: Vec::new(),
            },
        ));
        // An unlogged decision between them takes no index.
        items.push(item(
            None,
            None,
            Decided {
                audit: None,
                receipt: None,
                charge: None,
                answer: Vec::new(),
            },
        ));
    }
    let out = store.record_decisions(items, T0_MS).await.unwrap();
    assert_eq!(out.len(), 10);
    for (n, (receipt, entry)) in made.iter().enumerate() {
        let index = size + n as u64;
        assert_eq!(out[2 * n], Ok(recorded(Some(index), None)));
        assert_eq!(out[2 * n + 1], Ok(recorded(None, None)));
        let stored = store.receipt(&receipt.id).await.unwrap().unwrap();
        assert_eq!(
            stored,
            ReceiptRecord {
                audit_index: Some(index),
                ..receipt.clone()
            }
        );
        assert_eq!(&entry_at(&*store, index).await, entry);
    }
    assert_eq!(store.audit_size().await.unwrap(), size + 5);
    assert_eq!(
        store
            .receipt(&ReceiptId::from_random(unique()))
            .await
            .unwrap(),
        None
    );
}

/// The id of a receipt of kind `n % 4` made at `at_ms` in the purge test: each kind
/// a store may meet. The server's (its time is the receipt's), one dated earlier,
/// a random one (as ids were before they carried their time), one dated later than
/// the receipt (`ReceiptRecord::dated_by_id` false: its time does not find it).
fn purge_test_receipt_id(n: usize, at_ms: i64) -> ReceiptId {
    let random = |shift: u8| -> [u8; ReceiptId::TIMED_RANDOM_BYTES] {
        let mut out: [u8; ReceiptId::TIMED_RANDOM_BYTES] = unique();
        out[0] ^= shift;
        out
    };
    let at = u64::try_from(at_ms).unwrap_or(0);
    match n % 4 {
        0 => ReceiptId::from_time_and_random(at, random(0)),
        1 => ReceiptId::from_time_and_random(at - 3_600_000, random(1)),
        2 => ReceiptId::from_random(unique()),
        _ => ReceiptId::from_time_and_random(at + 86_400_000, random(3)),
    }
}

/// Receipts created before the cut are purged, all of them (more than one chunk)
/// and only them, whatever their ids say of their time; their audit entries stay,
/// byte for byte, and the log does not move.
pub async fn purged_receipts_leave_their_audit_entries(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let rcv = receiver(&*store).await;
    let cut = T0_MS + 100_000;
    let first = store.audit_size().await.unwrap();
    // Before the cut: 5,003 of the server's receipts made in one millisecond and
    // 5,003 random ids (each past one purge chunk of 5,000 found one way), then 400
    // of every kind in turn; from the cut on, 4 of every kind.
    let times: Vec<(i64, usize)> = std::iter::repeat_n((T0_MS, 0), 5_003)
        .chain(std::iter::repeat_n((T0_MS + 1, 2), 5_003))
        .chain((0..400).map(|n| (T0_MS + 2 + n, n as usize)))
        .chain((0..4).map(|n| (cut + n, n as usize)))
        .collect();
    let before_cut = times.len() - 4;
    let mut made = Vec::new();
    for chunk in times.chunks(1_000) {
        let mut items = Vec::new();
        for &(at, kind) in chunk {
            let audit = audit_record(None, Some(&issuer.id));
            let receipt = ReceiptRecord {
                id: purge_test_receipt_id(kind, at),
                ..new_receipt(Some(&rcv.id), Some(&issuer.id), at)
            };
            made.push((receipt.id.clone(), at, audit.entry.clone()));
            items.push(item(
                None,
                None,
                Decided {
                    audit: Some(audit),
                    receipt: Some(receipt),
                    charge: None,
                    answer: Vec::new(),
                },
            ));
        }
        let out = store.record_decisions(items, T0_MS).await.unwrap();
        assert!(out.iter().all(Result::is_ok));
    }
    let size = store.audit_size().await.unwrap();
    assert_eq!(size, first + times.len() as u64);
    assert_eq!(store.purge_receipts(cut).await.unwrap(), before_cut as u64);
    for (n, (id, at, entry)) in made.iter().enumerate() {
        let stored = store.receipt(id).await.unwrap();
        assert_eq!(stored.is_some(), *at >= cut, "receipt {n} made at {at}");
        assert_eq!(
            &entry_at(&*store, first + n as u64).await,
            entry,
            "entry {n}"
        );
    }
    assert_eq!(store.audit_size().await.unwrap(), size);
    // Nothing left before the cut; the rest go with a later one.
    assert_eq!(store.purge_receipts(cut).await.unwrap(), 0);
    assert_eq!(store.purge_receipts(cut + 3).await.unwrap(), 3);
    assert_eq!(store.purge_receipts(cut + 4).await.unwrap(), 1);
}

/// A receipt of a decision that was not logged is stored without an audit index.
pub async fn receipt_without_audit_has_no_index(store: Arc<dyn Store>) {
    let size = store.audit_size().await.unwrap();
    let mut receipt = new_receipt(None, None, T0_MS);
    receipt.audit_index = Some(3);
    let out = store
        .record_decisions(
            vec![item(
                None,
                None,
                Decided {
                    audit: None,
                    receipt: Some(receipt.clone()),
                    charge: None,
                    answer: Vec::new(),
                },
            )],
            T0_MS,
        )
        .await
        .unwrap();
    assert_eq!(out, [Ok(recorded(None, None))]);
    assert_eq!(
        store.receipt(&receipt.id).await.unwrap(),
        Some(ReceiptRecord {
            audit_index: None,
            ..receipt
        })
    );
    assert_eq!(store.audit_size().await.unwrap(), size);
}

/// A batch the backend cannot write (a receipt id already stored) writes nothing of
/// its items: either the whole call fails, or only that item does.
pub async fn failed_batch_writes_nothing(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let rcv = receiver(&*store).await;
    let key = budget_key(&issuer.id, "EUR");
    let taken = logged(None, "");
    let taken_receipt = taken.receipt.clone().unwrap();
    store
        .record_decisions(vec![item(None, None, taken)], T0_MS)
        .await
        .unwrap();
    let size = store.audit_size().await.unwrap();

    let good = logged(Some("5"), "good");
    let good_receipt = good.receipt.clone().unwrap();
    let mut clash = logged(None, "clash");
    clash.receipt = Some(new_receipt(Some(&rcv.id), None, T0_MS + 9));
    if let Some(r) = clash.receipt.as_mut() {
        r.id = taken_receipt.id.clone();
    }
    let result = store
        .record_decisions(
            vec![
                item(budget(&key, "10"), claim(&rcv.id, "good", 1), good),
                item(None, claim(&rcv.id, "clash", 1), clash),
            ],
            T0_MS,
        )
        .await;
    match result {
        Err(_) => {
            assert_eq!(store.audit_size().await.unwrap(), size);
            assert_eq!(store.budget_spent(&key).await.unwrap(), Decimal::ZERO);
            assert_eq!(store.receipt(&good_receipt.id).await.unwrap(), None);
            let out = store
                .record_decisions(
                    vec![item(None, claim(&rcv.id, "good", 2), logged(None, ""))],
                    T0_MS,
                )
                .await
                .unwrap();
            assert_eq!(out, [Ok(recorded(Some(size), None))], "key was not stored");
        }
        Ok(out) => {
            assert_eq!(out[0], Ok(recorded(Some(size), Some("0"))));
            assert!(out[1].is_err(), "{out:?}");
            assert_eq!(store.audit_size().await.unwrap(), size + 1);
            assert_eq!(store.budget_spent(&key).await.unwrap(), dec("5"));
        }
    }
    assert_eq!(
        store.receipt(&taken_receipt.id).await.unwrap(),
        Some(ReceiptRecord {
            audit_index: Some(size - 1),
            ..taken_receipt
        }),
        "the stored receipt is untouched"
    );
}

/// Decision batches, a batch that fails after its entries were appended (and so is
/// rolled back), and appends by other writes, interleaved: every stored hash is still
/// the one its entries give. (A writer that keeps the tree's frontier between commits
/// must drop what a rolled-back batch appended: other appends then reach the same
/// size with other entries.)
pub async fn the_log_stays_whole_across_failed_batches_and_other_appends(store: Arc<dyn Store>) {
    let decide = |store: Arc<dyn Store>, n: usize| async move {
        let items = (0..n).map(|_| item(None, None, logged(None, ""))).collect();
        let out = store.record_decisions(items, T0_MS).await.unwrap();
        assert!(out.iter().all(Result::is_ok), "{out:?}");
    };
    decide(Arc::clone(&store), 1).await;
    let first = logged(None, "");
    let first_receipt = first.receipt.clone().unwrap();
    store
        .record_decisions(vec![item(None, None, first)], T0_MS)
        .await
        .unwrap();
    let size = store.audit_size().await.unwrap();
    // Two entries, then a receipt id already stored.
    let mut clash = logged(None, "clash");
    if let Some(r) = clash.receipt.as_mut() {
        r.id = first_receipt.id.clone();
    }
    let failed = store
        .record_decisions(
            vec![item(None, None, logged(None, "")), item(None, None, clash)],
            T0_MS,
        )
        .await;
    if store.backend() == "sqlite" {
        // SQLite fails the whole batch: the case this test is for.
        assert!(matches!(failed, Err(StoreError::Conflict(_))), "{failed:?}");
    }
    if failed.is_err() {
        assert_eq!(store.audit_size().await.unwrap(), size, "rolled back");
        // Other writes append two other entries: the log is again as long as the
        // failed batch had made it.
        store
            .audit_append(&[audit_note(), audit_note()])
            .await
            .unwrap();
    }
    // Enough entries to complete the node over every entry so far: its left half is
    // the frontier the writer holds.
    let grown = store.audit_size().await.unwrap();
    decide(Arc::clone(&store), grown.next_power_of_two() as usize).await;
    store.audit_append(&[audit_note()]).await.unwrap();
    decide(Arc::clone(&store), 1).await;
    decide(Arc::clone(&store), 2).await;
    let size = store.audit_size().await.unwrap();
    let entries: Vec<Vec<u8>> = store
        .audit_entries(0, size)
        .await
        .unwrap()
        .into_iter()
        .map(|row| row.entry)
        .collect();
    assert_log_matches(&*store, &entries).await;
}

/// Decision batches and other writes' appends at once (on SQLite: the ledger writer
/// and the other writer, behind one gate): one log, every stored hash the one its
/// entries give, every decision's index its entry's.
pub async fn concurrent_decisions_and_other_appends_form_one_log(store: Arc<dyn Store>) {
    let mut tasks = JoinSet::new();
    for t in 0..24u64 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            if t % 3 == 0 {
                let records: Vec<AuditRecord> = (0..=t % 5).map(|_| audit_note()).collect();
                let first = store.audit_append(&records).await.unwrap();
                records
                    .into_iter()
                    .zip(first..)
                    .map(|(r, i)| (i, r.entry))
                    .collect::<Vec<_>>()
            } else {
                // Half of them made ahead as the server makes them (prepared).
                let decided: Vec<Decided> = (0..=t % 4)
                    .map(|k| {
                        let mut d = logged(None, "");
                        if let Some(a) = d.audit.as_mut().filter(|_| k % 2 == 0) {
                            a.prepare();
                        }
                        d
                    })
                    .collect();
                let items = decided
                    .iter()
                    .cloned()
                    .map(|d| item(None, None, d))
                    .collect();
                let out = store.record_decisions(items, T0_MS).await.unwrap();
                out.into_iter()
                    .zip(decided)
                    .map(|(o, d)| match o {
                        Ok(DecisionOutcome::Recorded {
                            audit_index: Some(i),
                            ..
                        }) => (i, d.audit.unwrap().entry),
                        other => panic!("{other:?}"),
                    })
                    .collect()
            }
        });
    }
    let mut placed = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        placed.extend(joined.unwrap());
    }
    let size = store.audit_size().await.unwrap();
    assert_eq!(size, placed.len() as u64);
    let rows = store.audit_entries(0, size).await.unwrap();
    for (index, entry) in &placed {
        assert_eq!(&rows[*index as usize].entry, entry, "entry {index}");
    }
    let entries: Vec<Vec<u8>> = rows.into_iter().map(|r| r.entry).collect();
    assert_log_matches(&*store, &entries).await;
}

/// Records of decisions made before the cut-off are deleted; a later one stays. A
/// deleted key records afresh.
pub async fn purge_idempotency_deletes_only_older_records(store: Arc<dyn Store>) {
    let rcv = receiver(&*store).await;
    let at = |ms: i64, answer: &str| {
        let mut decided = logged(None, answer);
        if let Some(a) = decided.audit.as_mut() {
            a.created_at_ms = ms;
        }
        decided
    };
    store
        .record_decisions(
            vec![
                item(None, claim(&rcv.id, "old", 1), at(T0_MS, "old")),
                item(None, claim(&rcv.id, "edge", 1), at(T0_MS + 10, "edge")),
                item(None, claim(&rcv.id, "new", 1), at(T0_MS + 20, "new")),
            ],
            T0_MS,
        )
        .await
        .unwrap();
    assert_eq!(store.purge_idempotency(T0_MS).await.unwrap(), 0);
    assert_eq!(store.purge_idempotency(T0_MS + 10).await.unwrap(), 1);
    assert_eq!(store.purge_idempotency(T0_MS + 10).await.unwrap(), 0);
    let size = store.audit_size().await.unwrap();
    let out = store
        .record_decisions(
            vec![
                item(None, claim(&rcv.id, "old", 2), at(T0_MS + 30, "")),
                item(None, claim(&rcv.id, "edge", 1), at(T0_MS + 30, "")),
                item(None, claim(&rcv.id, "new", 1), at(T0_MS + 30, "")),
            ],
            T0_MS,
        )
        .await
        .unwrap();
    assert_eq!(out[0], Ok(recorded(Some(size), None)));
    assert!(
        matches!(&out[1], Ok(DecisionOutcome::Replay { answer, .. }) if answer == b"edge"),
        "{out:?}"
    );
    assert!(
        matches!(&out[2], Ok(DecisionOutcome::Replay { answer, .. }) if answer == b"new"),
        "{out:?}"
    );
    assert_eq!(store.purge_idempotency(T0_MS + 31).await.unwrap(), 3);
}

/// The first receipt key offered is kept for good, and `Debug` hides it.
pub async fn receipt_key_is_created_once(store: Arc<dyn Store>) {
    let first = ReceiptKeyRecord {
        private_pem: "-----BEGIN PRIVATE KEY-----\nfirst\n-----END PRIVATE KEY-----\n".into(),
        created_at_ms: T0_MS,
    };
    let second = ReceiptKeyRecord {
        private_pem: "-----BEGIN PRIVATE KEY-----\nsecond\n-----END PRIVATE KEY-----\n".into(),
        created_at_ms: T0_MS + 1,
    };
    assert_eq!(store.receipt_key(&first).await.unwrap(), first);
    assert_eq!(store.receipt_key(&second).await.unwrap(), first);
    assert!(!format!("{first:?}").contains("PRIVATE"));
}

/// 32 tasks charge one budget at once, two batches each, every `decide` charging only
/// what fits. The budget ends exactly at its cap (demand is far above it) and equals
/// the sum of the charges granted; every logged decision got its own index.
pub async fn concurrent_decisions_never_exceed_the_cap(store: Arc<dyn Store>) {
    const CAP: i64 = 100;
    let (issuer, _) = issuer(&*store).await;
    let key = budget_key(&issuer.id, "EUR");
    let size = store.audit_size().await.unwrap();
    let mut tasks = JoinSet::new();
    for t in 0..32usize {
        let store = Arc::clone(&store);
        let key = key.clone();
        tasks.spawn(async move {
            let mut results = Vec::new();
            for round in 0..2usize {
                // 7 down to 2 in a rotated order, then seven 1s: a batch either gets
                // every charge or leaves the budget exactly full.
                let mut amounts: Vec<i64> = (2..=7).rev().collect();
                amounts.rotate_left((t + round) % 6);
                amounts.extend([1; 7]);
                let items = amounts
                    .iter()
                    .map(|&amount| DecisionItem {
                        quota: None,
                        nonce: None,
                        budget: Some(BudgetCharge {
                            key: key.clone(),
                            cap: Decimal::from(CAP),
                            ancestors: Vec::new(),
                        }),
                        idempotency: None,
                        decide: Box::new(move |spent| {
                            let Some(spent) = spent else {
                                return Err(StoreError::Backend("no spending given".into()));
                            };
                            let fits = spent + Decimal::from(amount) <= Decimal::from(CAP);
                            let mut decided = logged(None, "");
                            decided.charge = fits.then(|| Decimal::from(amount));
                            Ok(decided)
                        }),
                    })
                    .collect();
                let out = store.record_decisions(items, T0_MS).await.unwrap();
                results.extend(amounts.into_iter().zip(out));
            }
            results
        });
    }
    let mut granted = Decimal::ZERO;
    let mut indexes = HashSet::new();
    let mut count = 0u64;
    while let Some(joined) = tasks.join_next().await {
        for (amount, outcome) in joined.unwrap() {
            let Ok(DecisionOutcome::Recorded {
                audit_index: Some(index),
                spent_before: Some(before),
                quota: None,
            }) = outcome
            else {
                panic!("unexpected outcome {outcome:?}");
            };
            assert!(before <= Decimal::from(CAP), "spent {before} over the cap");
            if before + Decimal::from(amount) <= Decimal::from(CAP) {
                granted += Decimal::from(amount);
            }
            assert!(indexes.insert(index), "audit index {index} given twice");
            count += 1;
        }
    }
    assert_eq!(count, 32 * 2 * 13);
    assert_eq!(store.audit_size().await.unwrap(), size + count);
    assert_eq!(indexes, (size..size + count).collect::<HashSet<_>>());
    let spent = store.budget_spent(&key).await.unwrap();
    assert_eq!(
        spent, granted,
        "the budget is the sum of the charges granted"
    );
    assert_eq!(
        spent,
        Decimal::from(CAP),
        "demand exceeds the cap: it fills"
    );
}

// ---- issuer keys (self-custody)

/// A real public key as an issuer would register it (thumbprint kid, public JWK).
fn new_issuer_key(issuer: &IssuerId, created_at_ms: i64) -> IssuerKey {
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    IssuerKey {
        kid: key.kid().to_owned(),
        issuer_id: issuer.clone(),
        alg: key.alg(),
        jwk: serde_json::to_string(key.verifying_key().jwk()).unwrap(),
        created_at_ms,
        revoked_at_ms: None,
        alias: None,
    }
}

/// Keys round-trip; each issuer lists only its own, `all_issuer_keys` lists all.
pub async fn issuer_keys_add_and_list(store: Arc<dyn Store>) {
    let (a, _) = issuer(&*store).await;
    let (b, _) = issuer(&*store).await;
    let a1 = new_issuer_key(&a.id, T0_MS);
    let a2 = new_issuer_key(&a.id, T0_MS + 1);
    let b1 = new_issuer_key(&b.id, T0_MS + 2);
    for k in [&a1, &a2, &b1] {
        store.add_issuer_key(k, &audit_note()).await.unwrap();
    }
    assert_eq!(
        store.issuer_keys(&a.id).await.unwrap(),
        vec![a1.clone(), a2.clone()]
    );
    assert_eq!(store.issuer_keys(&b.id).await.unwrap(), vec![b1.clone()]);
    let all = store.all_issuer_keys().await.unwrap();
    assert_eq!(all.len(), 3);
    for k in [&a1, &a2, &b1] {
        assert!(all.contains(k), "{} missing from all_issuer_keys", k.kid);
    }
}

/// A kid registered already, by the same issuer or another, is a `Conflict`, and the
/// first registration stays.
pub async fn issuer_key_kid_taken_conflicts(store: Arc<dyn Store>) {
    let (a, _) = issuer(&*store).await;
    let (b, _) = issuer(&*store).await;
    let key = new_issuer_key(&a.id, T0_MS);
    store.add_issuer_key(&key, &audit_note()).await.unwrap();
    let size = store.audit_size().await.unwrap();
    let again = store.add_issuer_key(&key, &audit_note()).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let theirs = IssuerKey {
        issuer_id: b.id.clone(),
        ..key.clone()
    };
    let other = store.add_issuer_key(&theirs, &audit_note()).await;
    assert!(matches!(other, Err(StoreError::Conflict(_))), "{other:?}");
    assert_eq!(store.issuer_keys(&a.id).await.unwrap(), vec![key]);
    assert!(store.issuer_keys(&b.id).await.unwrap().is_empty());
    assert_eq!(store.audit_size().await.unwrap(), size);
}

/// An alias (the issuer's own `kid` for a key) round-trips and names one key per
/// issuer: a second key of the same issuer under it is `Conflict`
/// (`IssuerKeyAliasTaken`, nothing appended), another issuer may use it, and keys
/// without one never collide.
pub async fn issuer_key_alias_is_unique_per_issuer(store: Arc<dyn Store>) {
    let (a, _) = issuer(&*store).await;
    let (b, _) = issuer(&*store).await;
    let named = IssuerKey {
        alias: Some("key-001".into()),
        ..new_issuer_key(&a.id, T0_MS)
    };
    store.add_issuer_key(&named, &audit_note()).await.unwrap();
    let size = store.audit_size().await.unwrap();
    let twin = IssuerKey {
        alias: Some("key-001".into()),
        ..new_issuer_key(&a.id, T0_MS + 1)
    };
    assert_eq!(
        store.add_issuer_key(&twin, &audit_note()).await,
        Err(StoreError::Conflict(ConflictKind::IssuerKeyAliasTaken))
    );
    assert_eq!(store.audit_size().await.unwrap(), size);
    let theirs = IssuerKey {
        alias: Some("key-001".into()),
        ..new_issuer_key(&b.id, T0_MS + 2)
    };
    store.add_issuer_key(&theirs, &audit_note()).await.unwrap();
    let plain = [
        new_issuer_key(&a.id, T0_MS + 3),
        new_issuer_key(&a.id, T0_MS + 4),
    ];
    for k in &plain {
        store.add_issuer_key(k, &audit_note()).await.unwrap();
    }
    assert_eq!(
        store.issuer_keys(&a.id).await.unwrap(),
        vec![named.clone(), plain[0].clone(), plain[1].clone()]
    );
    assert_eq!(
        store.issuer_keys(&b.id).await.unwrap(),
        vec![theirs.clone()]
    );
    let all = store.all_issuer_keys().await.unwrap();
    assert!(all.contains(&named) && all.contains(&theirs), "{all:?}");
}

/// A key for an issuer that does not exist is `NotFound`.
pub async fn issuer_key_for_unknown_issuer_is_not_found(store: Arc<dyn Store>) {
    let ghost = IssuerId::from_random(unique());
    assert_eq!(
        store
            .add_issuer_key(&new_issuer_key(&ghost, T0_MS), &audit_note())
            .await,
        Err(StoreError::NotFound)
    );
    assert!(store.all_issuer_keys().await.unwrap().is_empty());
}

/// Revocation is permanent and keeps its first time; the second call appends nothing.
pub async fn revoke_issuer_key_keeps_first_time(store: Arc<dyn Store>) {
    let (a, _) = issuer(&*store).await;
    let key = new_issuer_key(&a.id, T0_MS);
    store.add_issuer_key(&key, &audit_note()).await.unwrap();
    let expected = IssuerKey {
        revoked_at_ms: Some(T0_MS + 5),
        ..key.clone()
    };
    let first = store
        .revoke_issuer_key(&a.id, &key.kid, T0_MS + 5, &audit_note())
        .await
        .unwrap();
    assert_eq!(first, expected);
    let size = store.audit_size().await.unwrap();
    let again = store
        .revoke_issuer_key(&a.id, &key.kid, T0_MS + 9, &audit_note())
        .await
        .unwrap();
    assert_eq!(again, expected);
    assert_eq!(store.audit_size().await.unwrap(), size);
    assert_eq!(
        store.issuer_keys(&a.id).await.unwrap(),
        vec![expected.clone()]
    );
    assert_eq!(store.all_issuer_keys().await.unwrap(), vec![expected]);
}

/// Another issuer's key, or an unknown kid, is `NotFound`, and nothing changes.
pub async fn revoke_issuer_key_of_another_issuer_is_not_found(store: Arc<dyn Store>) {
    let (a, _) = issuer(&*store).await;
    let (b, _) = issuer(&*store).await;
    let key = new_issuer_key(&a.id, T0_MS);
    store.add_issuer_key(&key, &audit_note()).await.unwrap();
    let size = store.audit_size().await.unwrap();
    assert_eq!(
        store
            .revoke_issuer_key(&b.id, &key.kid, T0_MS, &audit_note())
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store
            .revoke_issuer_key(&a.id, "no-such-kid", T0_MS, &audit_note())
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(store.issuer_keys(&a.id).await.unwrap(), vec![key]);
    assert_eq!(store.audit_size().await.unwrap(), size);
}

/// Adding and revoking a key each append exactly the record given, in the same
/// transaction, readable by the issuer.
pub async fn issuer_key_changes_are_audited(store: Arc<dyn Store>) {
    let (a, _) = issuer(&*store).await;
    let key = new_issuer_key(&a.id, T0_MS);
    let added = audit_record(None, Some(&a.id));
    let start = store.audit_size().await.unwrap();
    store.add_issuer_key(&key, &added).await.unwrap();
    let revoked = audit_record(None, Some(&a.id));
    store
        .revoke_issuer_key(&a.id, &key.kid, T0_MS + 1, &revoked)
        .await
        .unwrap();
    let rows = store.audit_entries(start, start + 10).await.unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0].entry, added.entry);
    assert_eq!(rows[1].entry, revoked.entry);
    assert_eq!(rows[0].owner, Some(a.id.clone()));
    assert_eq!(rows[1].owner, Some(a.id.clone()));
}

/// A token the issuer signed itself (unknown to the store) is recorded and revoked in
/// one call; its jti is then in the revocations; a second call keeps the first time.
pub async fn revoke_issuer_signed_token_records_and_revokes(store: Arc<dyn Store>) {
    let (a, _) = issuer(&*store).await;
    let (agent, _) = agent(&*store, &a.id).await;
    let key = new_issuer_key(&a.id, T0_MS);
    store.add_issuer_key(&key, &audit_note()).await.unwrap();
    let token = new_token(&agent, &key.kid, T0_S, T0_S + 600);
    let start = store.audit_size().await.unwrap();
    let revoked = store
        .revoke_issuer_signed_token(&a.id, &token, T0_MS + 3, &audit_note())
        .await
        .unwrap();
    let expected = TokenRecord {
        revoked_at_ms: Some(T0_MS + 3),
        ..token.clone()
    };
    assert_eq!(revoked, expected);
    assert_eq!(
        store.token(&token.jti).await.unwrap(),
        Some(expected.clone())
    );
    assert!(
        store
            .revocations()
            .await
            .unwrap()
            .tokens
            .contains(&token.jti)
    );
    assert_eq!(store.audit_size().await.unwrap(), start + 1);
    let again = store
        .revoke_issuer_signed_token(&a.id, &token, T0_MS + 9, &audit_note())
        .await
        .unwrap();
    assert_eq!(again, expected);
    assert_eq!(store.audit_size().await.unwrap(), start + 1);
}

/// A jti stored for another issuer, or a token naming another issuer's agent, is
/// `NotFound`, and nothing is written.
pub async fn revoke_issuer_signed_token_of_another_issuer_is_not_found(store: Arc<dyn Store>) {
    let (a, _) = issuer(&*store).await;
    let (b, _) = issuer(&*store).await;
    let (agent_a, token_a) = agent(&*store, &a.id).await;
    let (agent_b, _) = agent(&*store, &b.id).await;
    let start = store.audit_size().await.unwrap();
    // B presents a token whose jti is A's stored token.
    let stolen_jti = TokenRecord {
        agent_id: agent_b.id.clone(),
        issuer_id: b.id.clone(),
        ..token_a.clone()
    };
    assert_eq!(
        store
            .revoke_issuer_signed_token(&b.id, &stolen_jti, T0_MS, &audit_note())
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(store.token(&token_a.jti).await.unwrap(), Some(token_a));
    // B presents a new token naming A's agent.
    let foreign_agent = TokenRecord {
        issuer_id: b.id.clone(),
        ..new_token(&agent_a, "kid-b", T0_S, T0_S + 600)
    };
    assert_eq!(
        store
            .revoke_issuer_signed_token(&b.id, &foreign_agent, T0_MS, &audit_note())
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(store.token(&foreign_agent.jti).await.unwrap(), None);
    // A record that names another issuer than the caller is refused outright.
    let mismatched = new_token(&agent_a, "kid-a", T0_S, T0_S + 600);
    assert_eq!(
        store
            .revoke_issuer_signed_token(&b.id, &mismatched, T0_MS, &audit_note())
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(store.revocations().await.unwrap(), Revocations::default());
    assert_eq!(store.audit_size().await.unwrap(), start);
}

/// A policy revocation is recorded once (first time kept), audited once, and fed
/// as a never-expiring token revocation of the policy's revocation id; the same id
/// of another issuer is another policy.
pub async fn revoke_policy_keeps_first_time_and_feeds_its_id(store: Arc<dyn Store>) {
    let (a, _) = issuer(&*store).await;
    let (b, _) = issuer(&*store).await;
    let start = store.audit_size().await.unwrap();
    let feed_start = store
        .changes_since(ChangePosition::START, 0, 10_000)
        .await
        .unwrap()
        .next;
    assert_eq!(store.policy_revocation(&a.id, "pol_1").await.unwrap(), None);
    let first = store
        .revoke_policy(&a.id, "pol_1", T0_MS + 3, &audit_note())
        .await
        .unwrap();
    let expected = crate::PolicyRevocation {
        issuer_id: a.id.clone(),
        policy_id: "pol_1".to_owned(),
        revoked_at_ms: T0_MS + 3,
    };
    assert_eq!(first, expected);
    assert_eq!(store.audit_size().await.unwrap(), start + 1);
    let again = store
        .revoke_policy(&a.id, "pol_1", T0_MS + 9, &audit_note())
        .await
        .unwrap();
    assert_eq!(again, expected);
    assert_eq!(store.audit_size().await.unwrap(), start + 1);
    assert_eq!(
        store.policy_revocation(&a.id, "pol_1").await.unwrap(),
        Some(expected)
    );
    // Another issuer's policy of the same id is not revoked.
    assert_eq!(store.policy_revocation(&b.id, "pol_1").await.unwrap(), None);
    // Fed once, never left out as expired.
    let feed = store
        .changes_since(feed_start, i64::MAX - 1, 10_000)
        .await
        .unwrap();
    assert_eq!(
        feed.changes,
        vec![Change::TokenRevoked {
            jti: bonafide_core::token::policy_revocation_id(&a.id, "pol_1"),
            expires_at_s: crate::POLICY_REVOCATION_EXPIRES_AT_S,
        }]
    );
    // B revoking the same id is its own revocation, with its own id.
    store
        .revoke_policy(&b.id, "pol_1", T0_MS + 10, &audit_note())
        .await
        .unwrap();
    assert_eq!(store.audit_size().await.unwrap(), start + 2);
    let feed = store.changes_since(feed.next, 0, 10_000).await.unwrap();
    assert_eq!(
        feed.changes,
        vec![Change::TokenRevoked {
            jti: bonafide_core::token::policy_revocation_id(&b.id, "pol_1"),
            expires_at_s: crate::POLICY_REVOCATION_EXPIRES_AT_S,
        }]
    );
    // Each revocation is found by its revocation id (what the feed names), and
    // nothing by an id no revocation has.
    for issuer in [&a.id, &b.id] {
        let found = store
            .policy_revocation_by_id(&bonafide_core::token::policy_revocation_id(issuer, "pol_1"))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&found.issuer_id, issuer);
        assert_eq!(found.policy_id, "pol_1");
    }
    assert_eq!(
        store
            .policy_revocation_by_id(&bonafide_core::token::policy_revocation_id(&a.id, "pol_2"))
            .await
            .unwrap(),
        None
    );
}

/// An issuer that does not exist revokes nothing, and nothing is written.
pub async fn revoke_policy_of_unknown_issuer_is_not_found(store: Arc<dyn Store>) {
    let start = store.audit_size().await.unwrap();
    let ghost = IssuerId::from_random([0x5a; 16]);
    assert_eq!(
        store
            .revoke_policy(&ghost, "pol_1", T0_MS, &audit_note())
            .await,
        Err(StoreError::NotFound)
    );
    assert_eq!(
        store.policy_revocation(&ghost, "pol_1").await.unwrap(),
        None
    );
    assert_eq!(store.audit_size().await.unwrap(), start);
}

// ---- agent keys

fn new_agent_key(agent: &AgentId, created_at_ms: i64) -> AgentKey {
    let key = SigningKey::generate(Algorithm::EdDSA).unwrap();
    AgentKey {
        agent_id: agent.clone(),
        jkt: key.kid().to_owned(),
        jwk: serde_json::to_string(key.verifying_key().jwk()).unwrap(),
        alg: key.alg(),
        created_at_ms,
        expires_at_ms: created_at_ms + 90 * 86_400_000,
        retired_at_ms: None,
        grace_until_ms: None,
    }
}

/// A public key another issuer's agent registered cannot be registered (or rotated
/// to) by a second issuer; the same issuer may give it to another of its agents.
pub async fn an_agent_key_is_held_by_one_issuer(store: Arc<dyn Store>) {
    let (a, _) = issuer(&*store).await;
    let (b, _) = issuer(&*store).await;
    let first = new_agent(&a.id, T0_MS);
    let key = new_agent_key(&first.id, T0_MS);
    store
        .create_agent(
            &first,
            &new_token(&first, "kid-1", T0_S, T0_S + 900),
            Some(&key),
            &audit_note(),
        )
        .await
        .unwrap();
    let size = store.audit_size().await.unwrap();
    // Another issuer, at registration and by rotation: refused, nothing written.
    let squatter = new_agent(&b.id, T0_MS);
    let mut taken = key.clone();
    taken.agent_id = squatter.id.clone();
    assert_eq!(
        store
            .create_agent(
                &squatter,
                &new_token(&squatter, "kid-1", T0_S, T0_S + 900),
                Some(&taken),
                &audit_note(),
            )
            .await,
        Err(StoreError::Conflict(ConflictKind::KeyHeldElsewhere))
    );
    assert_eq!(store.agent(&squatter.id).await.unwrap(), None);
    let other = new_agent(&b.id, T0_MS);
    store
        .create_agent(
            &other,
            &new_token(&other, "kid-1", T0_S, T0_S + 900),
            None,
            &audit_note(),
        )
        .await
        .unwrap();
    let size = size + 1;
    let mut rotated = key.clone();
    rotated.agent_id = other.id.clone();
    assert_eq!(
        store
            .rotate_agent_key(&b.id, &other.id, &rotated, T0_MS, T0_MS, &audit_note())
            .await,
        Err(StoreError::Conflict(ConflictKind::KeyHeldElsewhere))
    );
    assert_eq!(store.audit_size().await.unwrap(), size);
    // The same issuer's other agent may use it.
    let sibling = new_agent(&a.id, T0_MS);
    let mut shared = key.clone();
    shared.agent_id = sibling.id.clone();
    store
        .create_agent(
            &sibling,
            &new_token(&sibling, "kid-1", T0_S, T0_S + 900),
            Some(&shared),
            &audit_note(),
        )
        .await
        .unwrap();
}

/// The first key is stored with the agent, in the same transaction; an agent without
/// one has none.
pub async fn create_agent_with_key_round_trips(store: Arc<dyn Store>) {
    let (iss, _) = issuer(&*store).await;
    let agent = new_agent(&iss.id, T0_MS);
    let key = new_agent_key(&agent.id, T0_MS);
    let token = new_token(&agent, "kid-1", T0_S, T0_S + 900);
    store
        .create_agent(&agent, &token, Some(&key), &audit_note())
        .await
        .unwrap();
    assert_eq!(store.agent_keys(&agent.id).await.unwrap(), vec![key]);
    let (bare, _) = self::agent(&*store, &iss.id).await;
    assert_eq!(store.agent_keys(&bare.id).await.unwrap(), vec![]);
    let unknown = AgentId::from_random(unique());
    assert_eq!(store.agent_keys(&unknown).await.unwrap(), vec![]);
    // A key naming another agent is refused, and nothing is written.
    let other = new_agent(&iss.id, T0_MS);
    let wrong = new_agent_key(&agent.id, T0_MS);
    let size = store.audit_size().await.unwrap();
    let err = store
        .create_agent(
            &other,
            &new_token(&other, "kid-1", T0_S, T0_S + 900),
            Some(&wrong),
            &audit_note(),
        )
        .await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    assert_eq!(store.agent(&other.id).await.unwrap(), None);
    assert_eq!(store.audit_size().await.unwrap(), size);
}

/// Rotation retires the current key with its grace period, keeps the agent, appends
/// one entry; a second rotation leaves the first retired key's grace as it was.
pub async fn rotate_agent_key_retires_the_current_key(store: Arc<dyn Store>) {
    let (iss, _) = issuer(&*store).await;
    let agent = new_agent(&iss.id, T0_MS);
    let first = new_agent_key(&agent.id, T0_MS);
    store
        .create_agent(
            &agent,
            &new_token(&agent, "kid-1", T0_S, T0_S + 900),
            Some(&first),
            &audit_note(),
        )
        .await
        .unwrap();
    let size = store.audit_size().await.unwrap();
    let second = new_agent_key(&agent.id, T0_MS + 10);
    let keys = store
        .rotate_agent_key(
            &iss.id,
            &agent.id,
            &second,
            T0_MS + 1_000,
            T0_MS + 10,
            &audit_note(),
        )
        .await
        .unwrap();
    let mut retired = first.clone();
    retired.retired_at_ms = Some(T0_MS + 10);
    retired.grace_until_ms = Some(T0_MS + 1_000);
    assert_eq!(keys, vec![retired.clone(), second.clone()]);
    assert_eq!(store.agent_keys(&agent.id).await.unwrap(), keys);
    assert_eq!(store.audit_size().await.unwrap(), size + 1);

    let third = new_agent_key(&agent.id, T0_MS + 20);
    let keys = store
        .rotate_agent_key(
            &iss.id,
            &agent.id,
            &third,
            T0_MS + 2_000,
            T0_MS + 20,
            &audit_note(),
        )
        .await
        .unwrap();
    let mut second_retired = second.clone();
    second_retired.retired_at_ms = Some(T0_MS + 20);
    second_retired.grace_until_ms = Some(T0_MS + 2_000);
    assert_eq!(keys, vec![retired, second_retired, third]);
    assert_eq!(keys.iter().filter(|k| k.retired_at_ms.is_none()).count(), 1);
    // An agent registered without a key gets its first one by rotation.
    let (bare, _) = self::agent(&*store, &iss.id).await;
    let only = new_agent_key(&bare.id, T0_MS + 30);
    let keys = store
        .rotate_agent_key(&iss.id, &bare.id, &only, T0_MS, T0_MS + 30, &audit_note())
        .await
        .unwrap();
    assert_eq!(keys, vec![only]);
}

/// A rotation ends every grace no later than its own: a key that leaked while in
/// grace is killed by rotating again with no grace. A later grace end never extends
/// an earlier one.
pub async fn rotate_agent_key_cuts_every_grace_to_the_new_one(store: Arc<dyn Store>) {
    let (iss, _) = issuer(&*store).await;
    let agent = new_agent(&iss.id, T0_MS);
    let k1 = new_agent_key(&agent.id, T0_MS);
    store
        .create_agent(
            &agent,
            &new_token(&agent, "kid-1", T0_S, T0_S + 900),
            Some(&k1),
            &audit_note(),
        )
        .await
        .unwrap();
    let day = 86_400_000;
    let k2 = new_agent_key(&agent.id, T0_MS + 10);
    store
        .rotate_agent_key(
            &iss.id,
            &agent.id,
            &k2,
            T0_MS + 10 + day,
            T0_MS + 10,
            &audit_note(),
        )
        .await
        .unwrap();
    // No grace: K1 (in grace for a day) and K2 both end now.
    let k3 = new_agent_key(&agent.id, T0_MS + 20);
    let keys = store
        .rotate_agent_key(
            &iss.id,
            &agent.id,
            &k3,
            T0_MS + 20,
            T0_MS + 20,
            &audit_note(),
        )
        .await
        .unwrap();
    let mut k1_retired = k1.clone();
    k1_retired.retired_at_ms = Some(T0_MS + 10);
    k1_retired.grace_until_ms = Some(T0_MS + 20);
    let mut k2_retired = k2.clone();
    k2_retired.retired_at_ms = Some(T0_MS + 20);
    k2_retired.grace_until_ms = Some(T0_MS + 20);
    assert_eq!(
        keys,
        vec![k1_retired.clone(), k2_retired.clone(), k3.clone()]
    );
    assert_eq!(store.agent_keys(&agent.id).await.unwrap(), keys);
    // A longer grace afterwards shortens nothing further and extends nothing.
    let k4 = new_agent_key(&agent.id, T0_MS + 30);
    let keys = store
        .rotate_agent_key(
            &iss.id,
            &agent.id,
            &k4,
            T0_MS + 30 + day,
            T0_MS + 30,
            &audit_note(),
        )
        .await
        .unwrap();
    let mut k3_retired = k3.clone();
    k3_retired.retired_at_ms = Some(T0_MS + 30);
    k3_retired.grace_until_ms = Some(T0_MS + 30 + day);
    assert_eq!(keys, vec![k1_retired, k2_retired, k3_retired, k4]);
}

/// Another issuer's or an unknown agent is `NotFound`; a revoked agent and a key the
/// agent has (current or retired) are `Conflict`; none of them writes anything.
pub async fn rotate_agent_key_refusals_write_nothing(store: Arc<dyn Store>) {
    let (iss, _) = issuer(&*store).await;
    let (other, _) = issuer(&*store).await;
    let agent = new_agent(&iss.id, T0_MS);
    let first = new_agent_key(&agent.id, T0_MS);
    store
        .create_agent(
            &agent,
            &new_token(&agent, "kid-1", T0_S, T0_S + 900),
            Some(&first),
            &audit_note(),
        )
        .await
        .unwrap();
    let second = new_agent_key(&agent.id, T0_MS + 1);
    store
        .rotate_agent_key(
            &iss.id,
            &agent.id,
            &second,
            T0_MS + 5,
            T0_MS + 1,
            &audit_note(),
        )
        .await
        .unwrap();
    let before = store.agent_keys(&agent.id).await.unwrap();
    let size = store.audit_size().await.unwrap();
    let fresh = new_agent_key(&agent.id, T0_MS + 2);
    assert_eq!(
        store
            .rotate_agent_key(
                &other.id,
                &agent.id,
                &fresh,
                T0_MS,
                T0_MS + 2,
                &audit_note()
            )
            .await,
        Err(StoreError::NotFound)
    );
    let unknown = AgentId::from_random(unique());
    let mut stray = fresh.clone();
    stray.agent_id = unknown.clone();
    assert_eq!(
        store
            .rotate_agent_key(&iss.id, &unknown, &stray, T0_MS, T0_MS + 2, &audit_note())
            .await,
        Err(StoreError::NotFound)
    );
    for again in [&first, &second] {
        let mut again = again.clone();
        again.retired_at_ms = None;
        again.grace_until_ms = None;
        let err = store
            .rotate_agent_key(&iss.id, &agent.id, &again, T0_MS, T0_MS + 2, &audit_note())
            .await;
        assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    }
    store
        .revoke_agent(&iss.id, &agent.id, None, T0_MS + 3, &audit_note())
        .await
        .unwrap();
    let size = size + 1;
    let err = store
        .rotate_agent_key(&iss.id, &agent.id, &fresh, T0_MS, T0_MS + 4, &audit_note())
        .await;
    assert!(matches!(err, Err(StoreError::Conflict(_))), "{err:?}");
    assert_eq!(store.agent_keys(&agent.id).await.unwrap(), before);
    assert_eq!(store.audit_size().await.unwrap(), size);
}

/// A decision that claims `nonce` (the only way a nonce is claimed): `Ok(true)` if it
/// was recorded, `Ok(false)` if the nonce was already used, the item's error else.
async fn claim_nonce(
    store: &dyn Store,
    agent: &AgentId,
    nonce: &str,
    expires_at_ms: i64,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let mut item = item(None, None, logged(None, "ok"));
    item.nonce = Some(crate::NonceClaim {
        agent: agent.clone(),
        nonce: nonce.to_owned(),
        expires_at_ms,
        now_ms,
    });
    let mut out = store.record_decisions(vec![item], T0_MS).await?;
    match out.pop() {
        Some(Ok(DecisionOutcome::NonceReplayed)) => Ok(false),
        Some(Ok(_)) => Ok(true),
        Some(Err(e)) => Err(e),
        None => Err(StoreError::Backend("no outcome".into())),
    }
}

/// A nonce is accepted once per agent while live; another agent may use it; once
/// expired it is accepted again and the purge deletes exactly the expired records.
pub async fn action_nonce_is_accepted_once_until_it_expires(store: Arc<dyn Store>) {
    let (iss, _) = issuer(&*store).await;
    let (a, _) = self::agent(&*store, &iss.id).await;
    let (b, _) = self::agent(&*store, &iss.id).await;
    let exp = T0_MS + 300_000;
    assert!(
        claim_nonce(&*store, &a.id, "n-1", exp, T0_MS)
            .await
            .unwrap()
    );
    assert!(
        !claim_nonce(&*store, &a.id, "n-1", exp, T0_MS + 1)
            .await
            .unwrap()
    );
    assert!(
        !claim_nonce(&*store, &a.id, "n-1", exp + 5, exp - 1)
            .await
            .unwrap()
    );
    assert!(
        claim_nonce(&*store, &b.id, "n-1", exp, T0_MS)
            .await
            .unwrap()
    );
    assert!(
        claim_nonce(&*store, &a.id, "n-2", exp + 10, T0_MS)
            .await
            .unwrap()
    );
    // Expired: accepted again (the timestamp window refuses the old request anyway).
    assert!(
        claim_nonce(&*store, &a.id, "n-1", exp + 300_000, exp)
            .await
            .unwrap()
    );
    assert!(
        !claim_nonce(&*store, &a.id, "n-1", exp + 300_000, exp + 1)
            .await
            .unwrap()
    );
    // Purge at exp: b's n-1 (exp) goes; a's n-2 (exp + 10) and a's renewed n-1 stay.
    assert_eq!(store.purge_action_nonces(exp).await.unwrap(), 1);
    assert!(
        !claim_nonce(&*store, &a.id, "n-2", exp + 20, exp)
            .await
            .unwrap()
    );
    assert!(
        claim_nonce(&*store, &b.id, "n-1", exp + 20, exp)
            .await
            .unwrap()
    );
    let unknown = AgentId::from_random(unique());
    assert_eq!(
        claim_nonce(&*store, &unknown, "n-1", exp, T0_MS).await,
        Err(StoreError::NotFound)
    );
}
/// A decision's nonce is claimed in its transaction: a used one (stored, or earlier in
/// the same batch) writes nothing and does not run `decide`; an unknown agent fails
/// only its own item; the standalone claim sees decisions' claims and vice versa.
pub async fn nonce_claim_is_part_of_the_decision(store: Arc<dyn Store>) {
    let (iss, _) = issuer(&*store).await;
    let (a, _) = self::agent(&*store, &iss.id).await;
    let exp = T0_MS + 300_000;
    let with_nonce = |agent: &AgentId, nonce: &str, now_ms: i64| {
        let (mut item, ran) = item_not_decided(None, None, logged(None, "ok"));
        item.nonce = Some(crate::NonceClaim {
            agent: agent.clone(),
            nonce: nonce.to_owned(),
            expires_at_ms: exp,
            now_ms,
        });
        (item, ran)
    };
    let size = store.audit_size().await.unwrap();
    let (first, ran) = with_nonce(&a.id, "dpop:j1", T0_MS);
    let out = store.record_decisions(vec![first], T0_MS).await.unwrap();
    assert_eq!(out, vec![Ok(recorded(Some(size), None))]);
    assert!(ran.load(Ordering::SeqCst));
    // The same value again, later batch: nothing decided, nothing written.
    let (again, ran) = with_nonce(&a.id, "dpop:j1", T0_MS + 1);
    let out = store.record_decisions(vec![again], T0_MS).await.unwrap();
    assert_eq!(out, vec![Ok(DecisionOutcome::NonceReplayed)]);
    assert!(!ran.load(Ordering::SeqCst));
    assert_eq!(store.audit_size().await.unwrap(), size + 1);
    // Twice in one batch, and an unknown agent between them: only the first is
    // recorded; the unknown agent's item fails alone.
    let unknown = AgentId::from_random(unique());
    let (x1, ran1) = with_nonce(&a.id, "dpop:j2", T0_MS);
    let (bad, ran_bad) = with_nonce(&unknown, "dpop:j2", T0_MS);
    let (x2, ran2) = with_nonce(&a.id, "dpop:j2", T0_MS);
    let out = store
        .record_decisions(vec![x1, bad, x2], T0_MS)
        .await
        .unwrap();
    assert_eq!(
        out,
        vec![
            Ok(recorded(Some(size + 1), None)),
            Err(StoreError::NotFound),
            Ok(DecisionOutcome::NonceReplayed),
        ]
    );
    assert!(ran1.load(Ordering::SeqCst));
    assert!(!ran_bad.load(Ordering::SeqCst) && !ran2.load(Ordering::SeqCst));
    assert_eq!(store.audit_size().await.unwrap(), size + 2);
    // A later claim sees it, and an expired record gives way.
    assert!(
        !claim_nonce(&*store, &a.id, "dpop:j2", exp, T0_MS + 2)
            .await
            .unwrap()
    );
    let (late, ran) = with_nonce(&a.id, "dpop:j1", exp);
    let out = store.record_decisions(vec![late], T0_MS).await.unwrap();
    assert_eq!(out, vec![Ok(recorded(Some(size + 2), None))]);
    assert!(ran.load(Ordering::SeqCst));
    // A large batch (more values than one statement reads) of fresh values with a
    // live one among them: only that one is refused.
    let (b, _) = self::agent(&*store, &iss.id).await;
    let mut items = Vec::new();
    for i in 0..600 {
        let agent = if i % 2 == 0 { &a.id } else { &b.id };
        items.push(with_nonce(agent, &format!("dpop:bulk{i}"), T0_MS).0);
    }
    items.push(with_nonce(&a.id, "dpop:j2", T0_MS).0);
    let out = store.record_decisions(items, T0_MS).await.unwrap();
    assert_eq!(out.len(), 601);
    assert!(
        out[..600]
            .iter()
            .all(|o| matches!(o, Ok(DecisionOutcome::Recorded { .. })))
    );
    assert_eq!(out[600], Ok(DecisionOutcome::NonceReplayed));
}

fn domain_of(issuer: &IssuerId, domain: &str, kid: &str, at: i64) -> crate::IssuerDomain {
    crate::IssuerDomain {
        issuer_id: issuer.clone(),
        domain: domain.to_owned(),
        kid: kid.to_owned(),
        verified_at_ms: at,
    }
}

/// A verified domain round-trips with its audit record; verifying again replaces it
/// (one domain per issuer), and `issuer_domains` lists every issuer's.
pub async fn issuer_domain_set_replace_and_list(store: Arc<dyn Store>) {
    let (a, _) = issuer(&*store).await;
    let (b, _) = issuer(&*store).await;
    let ka = new_issuer_key(&a.id, T0_MS);
    let kb = new_issuer_key(&b.id, T0_MS);
    store.add_issuer_key(&ka, &audit_note()).await.unwrap();
    store.add_issuer_key(&kb, &audit_note()).await.unwrap();
    assert_eq!(store.issuer_domain(&a.id).await.unwrap(), None);
    let size = store.audit_size().await.unwrap();
    let first = domain_of(&a.id, "a.example", &ka.kid, T0_MS + 1);
    store
        .set_issuer_domain(&first, &audit_note())
        .await
        .unwrap();
    assert_eq!(store.audit_size().await.unwrap(), size + 1);
    assert_eq!(store.issuer_domain(&a.id).await.unwrap(), Some(first));
    let moved = domain_of(&a.id, "new.a.example", &ka.kid, T0_MS + 2);
    store
        .set_issuer_domain(&moved, &audit_note())
        .await
        .unwrap();
    let theirs = domain_of(&b.id, "b.example", &kb.kid, T0_MS + 3);
    store
        .set_issuer_domain(&theirs, &audit_note())
        .await
        .unwrap();
    assert_eq!(
        store.issuer_domain(&a.id).await.unwrap(),
        Some(moved.clone())
    );
    let all = store.issuer_domains().await.unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert!(all.contains(&moved) && all.contains(&theirs), "{all:?}");
    // The domain `a` left is free again.
    let (c, _) = issuer(&*store).await;
    let kc = new_issuer_key(&c.id, T0_MS);
    store.add_issuer_key(&kc, &audit_note()).await.unwrap();
    store
        .set_issuer_domain(
            &domain_of(&c.id, "a.example", &kc.kid, T0_MS + 4),
            &audit_note(),
        )
        .await
        .unwrap();
}

/// A domain another issuer holds is a `Conflict`; nothing is written or appended.
pub async fn issuer_domain_of_another_issuer_conflicts(store: Arc<dyn Store>) {
    let (a, _) = issuer(&*store).await;
    let (b, _) = issuer(&*store).await;
    let ka = new_issuer_key(&a.id, T0_MS);
    let kb = new_issuer_key(&b.id, T0_MS);
    store.add_issuer_key(&ka, &audit_note()).await.unwrap();
    store.add_issuer_key(&kb, &audit_note()).await.unwrap();
    let held = domain_of(&a.id, "shared.example", &ka.kid, T0_MS);
    store.set_issuer_domain(&held, &audit_note()).await.unwrap();
    let size = store.audit_size().await.unwrap();
    let taken = store
        .set_issuer_domain(
            &domain_of(&b.id, "shared.example", &kb.kid, T0_MS + 1),
            &audit_note(),
        )
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");
    assert_eq!(store.issuer_domain(&b.id).await.unwrap(), None);
    assert_eq!(store.issuer_domain(&a.id).await.unwrap(), Some(held));
    assert_eq!(store.audit_size().await.unwrap(), size);
}

/// The key found in the JWKS must be one of the issuer's, unrevoked, when the store
/// commits: another issuer's key, a revoked key or an unknown kid is `NotFound`, and
/// nothing is written or appended.
pub async fn issuer_domain_needs_a_live_key_of_the_issuer(store: Arc<dyn Store>) {
    let (a, _) = issuer(&*store).await;
    let (b, _) = issuer(&*store).await;
    let ka = new_issuer_key(&a.id, T0_MS);
    let kb = new_issuer_key(&b.id, T0_MS);
    store.add_issuer_key(&ka, &audit_note()).await.unwrap();
    store.add_issuer_key(&kb, &audit_note()).await.unwrap();
    store
        .revoke_issuer_key(&a.id, &ka.kid, T0_MS + 1, &audit_note())
        .await
        .unwrap();
    let size = store.audit_size().await.unwrap();
    for kid in [ka.kid.as_str(), kb.kid.as_str(), "no-such-kid"] {
        assert_eq!(
            store
                .set_issuer_domain(
                    &domain_of(&a.id, "a.example", kid, T0_MS + 2),
                    &audit_note()
                )
                .await,
            Err(StoreError::NotFound),
            "{kid}"
        );
    }
    assert_eq!(store.issuer_domain(&a.id).await.unwrap(), None);
    assert!(store.issuer_domains().await.unwrap().is_empty());
    assert_eq!(store.audit_size().await.unwrap(), size);
}

// ---- the change feed

/// Everything after `after`, read in one go (the feed's cap is far above a case's).
async fn changes_after(store: &dyn Store, after: ChangePosition, expired_by_s: i64) -> ChangeFeed {
    let feed = store
        .changes_since(after, expired_by_s, crate::log::MAX_CHANGES)
        .await
        .unwrap();
    assert!(!feed.more, "a case's changes fit one read");
    feed
}

/// Every kind of write that changes what readers mirror records its change, in commit
/// order, once; writes that change nothing (a second revocation, a second suspension,
/// a decision, a plain audit append) and writes that fail record none.
pub async fn changes_since_names_every_change_in_commit_order(store: Arc<dyn Store>) {
    let start = changes_after(&*store, ChangePosition::START, 0).await;
    assert_eq!(start.changes, []);
    let mut expected = Vec::new();

    // API keys: adding changes nothing mirrored; revoking does.
    let (kept, gone) = (key_hash(KeyKind::Admin), key_hash(KeyKind::Admin));
    for hash in [&kept, &gone] {
        store
            .add_admin_key(hash, T0_MS, &audit_note())
            .await
            .unwrap();
    }
    store
        .revoke_admin_key(&gone, T0_MS, &audit_note())
        .await
        .unwrap();
    expected.push(Change::ApiKeyRevoked(gone));

    // Receivers: new audiences; a refused change records nothing.
    let (issuer, _) = issuer(&*store).await;
    let rcv = receiver(&*store).await;
    let other = receiver(&*store).await;
    store
        .set_receiver_audiences(&rcv.id, &["aud-1".to_owned()], &audit_note())
        .await
        .unwrap();
    expected.push(Change::ReceiverChanged(rcv.id.clone()));
    let taken = store
        .set_receiver_audiences(&other.id, &["aud-1".to_owned()], &audit_note())
        .await;
    assert!(matches!(taken, Err(StoreError::Conflict(_))), "{taken:?}");

    // Agent keys: registered with a key, then rotated.
    let a = new_agent(&issuer.id, T0_MS);
    let a_token = new_token(&a, "kid-1", T0_S, T0_S + 900);
    let a_key = new_agent_key(&a.id, T0_MS);
    store
        .create_agent(&a, &a_token, Some(&a_key), &audit_note())
        .await
        .unwrap();
    expected.push(Change::AgentKeysChanged(a.id.clone()));
    store
        .rotate_agent_key(
            &issuer.id,
            &a.id,
            &new_agent_key(&a.id, T0_MS + 1),
            T0_MS + 10,
            T0_MS + 1,
            &audit_note(),
        )
        .await
        .unwrap();
    expected.push(Change::AgentKeysChanged(a.id.clone()));

    // Suspensions, each once.
    for _ in 0..2 {
        store
            .suspend_agent(&issuer.id, &a.id, None, T0_MS + 2, &audit_note())
            .await
            .unwrap();
    }
    expected.push(Change::AgentSuspended(a.id.clone()));
    for _ in 0..2 {
        store
            .reactivate_agent(&issuer.id, &a.id, &audit_note())
            .await
            .unwrap();
    }
    expected.push(Change::AgentReactivated(a.id.clone()));

    // Revocations, each once: a token, then an agent (covering its tokens).
    let (b, b_token) = agent(&*store, &issuer.id).await;
    for _ in 0..2 {
        store
            .revoke_token(&issuer.id, &b_token.jti, T0_MS + 3, &audit_note())
            .await
            .unwrap();
    }
    expected.push(Change::TokenRevoked {
        jti: b_token.jti.clone(),
        expires_at_s: b_token.expires_at_s,
    });
    for _ in 0..2 {
        store
            .revoke_agent(&issuer.id, &b.id, None, T0_MS + 4, &audit_note())
            .await
            .unwrap();
    }
    expected.push(Change::AgentRevoked(b.id.clone()));

    // Issuer keys and domain.
    let ikey = new_issuer_key(&issuer.id, T0_MS);
    store.add_issuer_key(&ikey, &audit_note()).await.unwrap();
    expected.push(Change::IssuerKeysChanged(issuer.id.clone()));
    store
        .set_issuer_domain(
            &domain_of(&issuer.id, "feed.example", &ikey.kid, T0_MS),
            &audit_note(),
        )
        .await
        .unwrap();
    expected.push(Change::IssuerDomainChanged(issuer.id.clone()));
    for _ in 0..2 {
        store
            .revoke_issuer_key(&issuer.id, &ikey.kid, T0_MS + 5, &audit_note())
            .await
            .unwrap();
    }
    expected.push(Change::IssuerKeysChanged(issuer.id.clone()));

    // Signing keys: two rotations, then a late token of the retired key that extends
    // its publication (one that does not extend it changes nothing).
    let first = signing_key(T0_MS);
    store
        .rotate_signing_key(&first, T0_S, &audit_note())
        .await
        .unwrap();
    store
        .rotate_signing_key(&signing_key(T0_MS + 1), T0_S + 1, &audit_note())
        .await
        .unwrap();
    expected.extend([Change::SigningKeysChanged, Change::SigningKeysChanged]);
    let late = new_token(&a, &first.kid, T0_S, T0_S + 5_000);
    store.record_token(&late, &audit_note()).await.unwrap();
    expected.push(Change::SigningKeysChanged);
    let early = new_token(&a, &first.kid, T0_S, T0_S + 10);
    store.record_token(&early, &audit_note()).await.unwrap();

    // An issuer-signed token: revoked, then shown again with a later `exp`.
    let mut signed = new_token(&a, &ikey.kid, T0_S, T0_S + 600);
    store
        .revoke_issuer_signed_token(&issuer.id, &signed, T0_MS + 6, &audit_note())
        .await
        .unwrap();
    expected.push(Change::TokenRevoked {
        jti: signed.jti.clone(),
        expires_at_s: T0_S + 600,
    });
    signed.expires_at_s = T0_S + 1_200;
    store
        .revoke_issuer_signed_token(&issuer.id, &signed, T0_MS + 7, &audit_note())
        .await
        .unwrap();
    expected.push(Change::TokenRevoked {
        jti: signed.jti.clone(),
        expires_at_s: T0_S + 1_200,
    });

    // Decisions and plain appends change nothing mirrored.
    store
        .record_decisions(vec![item(None, None, logged(None, "ok"))], T0_MS)
        .await
        .unwrap();
    store.audit_append(&[audit_note()]).await.unwrap();

    let feed = changes_after(&*store, start.next, 0).await;
    assert_eq!(feed.changes, expected);
    assert!(feed.next > start.next);
    let again = changes_after(&*store, feed.next, 0).await;
    assert_eq!(again.changes, []);
    assert_eq!(again.next, feed.next, "nothing new: the same position");
}

/// A long feed is read in pages: at most `limit` changes each, `more` while more
/// follow, the pages together exactly the whole; token revocations expired by the
/// reader's time are left out (agents never are), also when they end a page.
pub async fn changes_since_pages_and_leaves_out_expired_tokens(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let mut all = Vec::new();
    for n in 0..7i64 {
        let (agent, token) = agent(&*store, &issuer.id).await;
        let short = new_token(&agent, "kid-1", T0_S, T0_S + 10 * n);
        store.record_token(&short, &audit_note()).await.unwrap();
        store
            .revoke_token(&issuer.id, &short.jti, T0_MS, &audit_note())
            .await
            .unwrap();
        all.push(Change::TokenRevoked {
            jti: short.jti,
            expires_at_s: T0_S + 10 * n,
        });
        if n % 3 == 0 {
            store
                .revoke_agent(&issuer.id, &agent.id, None, T0_MS, &audit_note())
                .await
                .unwrap();
            all.push(Change::AgentRevoked(agent.id));
        }
        drop(token);
    }
    let whole = changes_after(&*store, ChangePosition::START, 0).await;
    assert_eq!(whole.changes, all);

    for limit in [1u32, 2, 3, 100] {
        let mut read = Vec::new();
        let mut at = ChangePosition::START;
        let mut pages = 0;
        loop {
            let page = store.changes_since(at, 0, limit).await.unwrap();
            assert!(page.changes.len() <= limit as usize);
            assert!(page.next >= at, "positions never go back");
            pages += 1;
            read.extend(page.changes);
            at = page.next;
            if !page.more {
                break;
            }
            assert!(pages <= all.len(), "paging does not advance");
        }
        assert_eq!(read, all, "pages of {limit}");
        assert_eq!(at, whole.next);
    }

    // Tokens that expired by T0_S + 30 (exp ≤ it) are left out; agents stay.
    let live: Vec<Change> = all
        .iter()
        .filter(|c| !matches!(c, Change::TokenRevoked { expires_at_s, .. } if *expires_at_s <= T0_S + 30))
        .cloned()
        .collect();
    assert_eq!(
        changes_after(&*store, ChangePosition::START, T0_S + 30)
            .await
            .changes,
        live
    );
    // Only expired rows after a position: none returned, and the position passes them.
    let last_agent = all
        .iter()
        .rposition(|c| matches!(c, Change::AgentRevoked(_)))
        .unwrap();
    let mut at = ChangePosition::START;
    for _ in 0..=last_agent {
        at = store.changes_since(at, 0, 1).await.unwrap().next;
    }
    let tail = changes_after(&*store, at, i64::MAX).await;
    assert_eq!(tail.changes, []);
    assert_eq!(tail.next, whole.next);
    // A limit of 0 still reads one.
    let one = store
        .changes_since(ChangePosition::START, 0, 0)
        .await
        .unwrap();
    assert_eq!(one.changes, all[..1]);
    assert!(one.more);
}

/// Readers polling while several writers commit miss nothing and see nothing twice:
/// every change, once, in the order of the whole feed read afterwards.
pub async fn changes_since_misses_nothing_under_concurrent_writers(store: Arc<dyn Store>) {
    let (issuer, _) = issuer(&*store).await;
    let mut agents = Vec::new();
    for _ in 0..4 {
        agents.push(agent(&*store, &issuer.id).await);
    }
    let start = changes_after(&*store, ChangePosition::START, 0).await.next;
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let store = Arc::clone(&store);
        let done = Arc::clone(&done);
        tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut at = start;
            loop {
                // Read `done` before the feed: a read after it sees every commit.
                let finished = done.load(Ordering::SeqCst);
                let page = store.changes_since(at, 0, 3).await.unwrap();
                seen.extend(page.changes);
                at = page.next;
                if finished && !page.more {
                    return seen;
                }
                tokio::task::yield_now().await;
            }
        })
    };
    let mut writers = JoinSet::new();
    for (agent, _) in agents {
        let store = Arc::clone(&store);
        let issuer = issuer.id.clone();
        writers.spawn(async move {
            let mut made = Vec::new();
            for round in 0..5 {
                let token = new_token(&agent, "kid-1", T0_S, T0_S + 900 + round);
                store.record_token(&token, &audit_note()).await.unwrap();
                store
                    .revoke_token(&issuer, &token.jti, T0_MS, &audit_note())
                    .await
                    .unwrap();
                made.push(Change::TokenRevoked {
                    jti: token.jti,
                    expires_at_s: T0_S + 900 + round,
                });
                store
                    .suspend_agent(&issuer, &agent.id, None, T0_MS, &audit_note())
                    .await
                    .unwrap();
                store
                    .reactivate_agent(&issuer, &agent.id, &audit_note())
                    .await
                    .unwrap();
                made.push(Change::AgentSuspended(agent.id.clone()));
                made.push(Change::AgentReactivated(agent.id.clone()));
            }
            made
        });
    }
    let mut made = Vec::new();
    while let Some(writer) = writers.join_next().await {
        made.extend(writer.unwrap());
    }
    done.store(true, Ordering::SeqCst);
    let seen = reader.await.unwrap();
    let whole = changes_after(&*store, start, 0).await.changes;
    assert_eq!(
        seen, whole,
        "the polled pages are the feed, in order, once each"
    );
    assert_eq!(seen.len(), made.len());
    let seen_set: HashSet<&Change> = seen.iter().collect();
    assert!(made.iter().all(|c| seen_set.contains(c)));
    // Each writer's changes appear in the order it made them.
    for agent_changes in made.chunks(15) {
        let positions: Vec<usize> = agent_changes
            .iter()
            .map(|c| seen.iter().position(|s| s == c).unwrap())
            .collect();
        // A suspension of the same agent repeats: compare the token revocations only.
        let tokens: Vec<usize> = agent_changes
            .iter()
            .zip(&positions)
            .filter(|(c, _)| matches!(c, Change::TokenRevoked { .. }))
            .map(|(_, p)| *p)
            .collect();
        assert!(tokens.windows(2).all(|w| w[0] < w[1]), "{tokens:?}");
    }
}

/// Push events (issue 19): the event key is created once; each change's position is
/// named; a webhook round-trips, fails, pauses, resumes, delivers (recording the
/// acknowledgement) and is deleted; acknowledgements are kept and found by event.
pub async fn push_events_store_webhooks_and_acks(store: Arc<dyn Store>) {
    let first = ReceiptKeyRecord {
        private_pem: "-----BEGIN PRIVATE KEY-----\nevent\n-----END PRIVATE KEY-----\n".into(),
        created_at_ms: T0_MS,
    };
    let other = ReceiptKeyRecord {
        private_pem: "-----BEGIN PRIVATE KEY-----\nother\n-----END PRIVATE KEY-----\n".into(),
        created_at_ms: T0_MS + 1,
    };
    assert_eq!(store.event_key(&first).await.unwrap(), first);
    assert_eq!(store.event_key(&other).await.unwrap(), first);

    let (issuer, _) = issuer(store.as_ref()).await;
    let (one, _) = agent(store.as_ref(), &issuer.id).await;
    let (two, _) = agent(store.as_ref(), &issuer.id).await;
    let before = store
        .changes_since(ChangePosition::START, 0, 10_000)
        .await
        .unwrap();
    for a in [&one, &two] {
        store
            .revoke_agent(&issuer.id, &a.id, None, T0_MS, &audit_note())
            .await
            .unwrap();
    }
    let feed = store.changes_since(before.next, 0, 10_000).await.unwrap();
    assert_eq!(feed.changes.len(), 2);
    assert_eq!(feed.positions.len(), 2);
    assert!(before.next < feed.positions[0] && feed.positions[0] < feed.positions[1]);
    assert_eq!(feed.positions[1], feed.next);

    let rcv = receiver(store.as_ref()).await;
    let other_rcv = receiver(store.as_ref()).await;
    let hook = Webhook {
        id: "whk_conformance1".into(),
        receiver_id: rcv.id.clone(),
        url: "https://hooks.example/bonafide".into(),
        filter: r#"{"issuers":[]}"#.into(),
        created_at_ms: T0_MS,
        delivered: before.next,
        failures: 0,
        next_attempt_ms: T0_MS,
        last_error: None,
        paused: None,
    };
    store.create_webhook(&hook).await.unwrap();
    assert_eq!(
        store.webhooks(Some(&rcv.id)).await.unwrap(),
        vec![hook.clone()]
    );
    assert!(
        store
            .webhooks(Some(&other_rcv.id))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.webhooks(None).await.unwrap().len(), 1);

    let pause = Paused {
        at_ms: T0_MS + 5,
        reason: "8 deliveries failed".into(),
    };
    store
        .webhook_failed(
            &hook.id,
            &WebhookFailure {
                error: "the server answered 500".into(),
                failures: 8,
                next_attempt_ms: T0_MS + 100,
                pause: Some(pause.clone()),
            },
        )
        .await
        .unwrap();
    let got = &store.webhooks(Some(&rcv.id)).await.unwrap()[0];
    assert_eq!(got.failures, 8);
    assert_eq!(got.last_error.as_deref(), Some("the server answered 500"));
    assert_eq!(got.paused, Some(pause));
    // Another receiver cannot resume or delete it.
    assert!(
        !store
            .resume_webhook(&other_rcv.id, &hook.id, T0_MS)
            .await
            .unwrap()
    );
    assert!(!store.delete_webhook(&other_rcv.id, &hook.id).await.unwrap());
    assert!(
        store
            .resume_webhook(&rcv.id, &hook.id, T0_MS + 7)
            .await
            .unwrap()
    );
    let got = &store.webhooks(Some(&rcv.id)).await.unwrap()[0];
    assert_eq!(
        (got.paused.clone(), got.failures, got.next_attempt_ms),
        (None, 0, T0_MS + 7)
    );

    store
        .webhook_delivered(&hook.id, feed.positions[0], T0_MS + 10, &audit_note())
        .await
        .unwrap();
    store
        .webhook_delivered(&hook.id, feed.next, T0_MS + 20, &audit_note())
        .await
        .unwrap();
    // Never back.
    store
        .webhook_delivered(&hook.id, feed.positions[0], T0_MS + 30, &audit_note())
        .await
        .unwrap();
    let got = &store.webhooks(Some(&rcv.id)).await.unwrap()[0];
    assert_eq!(got.delivered, feed.next);
    assert_eq!(got.last_error, None);

    let sse = EventAck {
        receiver_id: rcv.id.clone(),
        upto: feed.positions[0],
        acked_at_ms: T0_MS + 15,
        via: "sse".into(),
        filter: Some(r#"{"issuers":["a"]}"#.into()),
    };
    assert!(store.record_event_ack(&sse, &audit_note()).await.unwrap());
    // Not as far as already acknowledged: not recorded again.
    assert!(!store.record_event_ack(&sse, &audit_note()).await.unwrap());
    // A stream following something else is another stream: recorded.
    let other_stream = EventAck {
        acked_at_ms: T0_MS + 16,
        filter: Some(r#"{"agents":["b"]}"#.into()),
        ..sse.clone()
    };
    assert!(
        store
            .record_event_ack(&other_stream, &audit_note())
            .await
            .unwrap()
    );
    assert!(
        !store
            .record_event_ack(&other_stream, &audit_note())
            .await
            .unwrap()
    );
    // Covering an event: the first acknowledgement of each stream reaching it, with
    // what that stream follows (the webhook's filter for a delivery).
    let firsts = store
        .event_acks(&rcv.id, Some(feed.positions[0]), 10)
        .await
        .unwrap();
    assert_eq!(
        firsts
            .iter()
            .map(|a| (a.acked_at_ms, a.via.as_str(), a.filter.as_deref()))
            .collect::<Vec<_>>(),
        vec![
            (T0_MS + 10, "whk_conformance1", Some(hook.filter.as_str())),
            (T0_MS + 15, "sse", sse.filter.as_deref()),
            (T0_MS + 16, "sse", other_stream.filter.as_deref()),
        ]
    );
    let covering = store
        .event_acks(&rcv.id, Some(feed.positions[1]), 10)
        .await
        .unwrap();
    assert_eq!(
        covering.iter().map(|a| a.acked_at_ms).collect::<Vec<_>>(),
        vec![T0_MS + 20]
    );
    let first_ack = &store
        .event_acks(&rcv.id, Some(feed.positions[0]), 1)
        .await
        .unwrap()[0];
    assert_eq!(
        (first_ack.acked_at_ms, first_ack.via.as_str()),
        (T0_MS + 10, "whk_conformance1")
    );
    let latest = store.event_acks(&rcv.id, None, 2).await.unwrap();
    assert_eq!(latest[0].acked_at_ms, T0_MS + 30);
    assert!(
        store
            .event_acks(&other_rcv.id, None, 10)
            .await
            .unwrap()
            .is_empty()
    );

    assert!(store.delete_webhook(&rcv.id, &hook.id).await.unwrap());
    assert!(store.webhooks(None).await.unwrap().is_empty());
    // A delivery recorded after the delete writes nothing.
    store
        .webhook_delivered(&hook.id, feed.next, T0_MS + 40, &audit_note())
        .await
        .unwrap();
    assert_eq!(store.event_acks(&rcv.id, None, 10).await.unwrap().len(), 5);
}

fn status_entry(issuer: &IssuerId, agent: &AgentId, expires_at_s: i64) -> StatusEntry {
    StatusEntry {
        jti: TokenId::from_random(unique()),
        agent_id: agent.clone(),
        issuer_id: issuer.clone(),
        expires_at_s,
        actors: Vec::new(),
        ancestor_jtis: Vec::new(),
        keys: Vec::new(),
    }
}

/// Status list slots: random candidates, one entry per jti (the same token asking
/// again gets its slot back, another token's jti is refused), a new list once one is
/// half full, every candidate taken a conflict.
pub async fn status_slots_are_allocated_once_per_token(store: Arc<dyn Store>) {
    let shape = ListShape { bits: 2, size: 8 };
    let issuer = IssuerId::from_random(unique());
    let agent = AgentId::from_random(unique());
    let first = status_entry(&issuer, &agent, 2_000);
    let (slot, new) = store
        .status_allocate(&first, shape, &[13, 2], T0_MS)
        .await
        .unwrap();
    assert!(new);
    assert_eq!(
        slot.idx,
        13 % 8,
        "the first free candidate, modulo the size"
    );
    // The same token again: its slot, whatever the candidates; a later `exp` kept.
    let later = StatusEntry {
        expires_at_s: 9_000,
        ..first.clone()
    };
    let again = store
        .status_allocate(&later, shape, &[1], T0_MS)
        .await
        .unwrap();
    assert_eq!(again, (slot, false));
    assert_eq!(store.purge_status_entries(2_000).await.unwrap(), 0);
    // The same jti for another agent: refused.
    let mut other = first.clone();
    other.agent_id = AgentId::from_random(unique());
    assert_eq!(
        store.status_allocate(&other, shape, &[1], T0_MS).await,
        Err(StoreError::Conflict(ConflictKind::IdTaken))
    );
    // A taken candidate is skipped; all taken is a conflict.
    let second = status_entry(&issuer, &agent, 2_000);
    let (s2, _) = store
        .status_allocate(&second, shape, &[5, 6], T0_MS)
        .await
        .unwrap();
    assert_eq!((s2.list_id, s2.idx), (slot.list_id, 6));
    let third = status_entry(&issuer, &agent, 2_000);
    assert_eq!(
        store.status_allocate(&third, shape, &[5, 14], T0_MS).await,
        Err(StoreError::Conflict(ConflictKind::IdTaken))
    );
    let (s3, _) = store
        .status_allocate(&third, shape, &[0], T0_MS)
        .await
        .unwrap();
    assert_eq!(s3.list_id, slot.list_id);
    // Four of eight taken: half full, so the next entry opens a new list.
    let fourth = status_entry(&issuer, &agent, 2_000);
    store
        .status_allocate(&fourth, shape, &[1], T0_MS)
        .await
        .unwrap();
    let fifth = status_entry(&issuer, &agent, 2_000);
    let (s5, _) = store
        .status_allocate(&fifth, shape, &[1], T0_MS)
        .await
        .unwrap();
    assert_ne!(s5.list_id, slot.list_id);
    let lists = store.status_lists().await.unwrap();
    assert_eq!(lists.len(), 2);
    assert_eq!(lists[0].allocated, 4);
    assert_eq!(lists[0].shape, shape);
    assert_eq!(lists[1].allocated, 1);
    // Another shape never shares a list.
    let wide = ListShape { bits: 1, size: 8 };
    let (s6, _) = store
        .status_allocate(&status_entry(&issuer, &agent, 2_000), wide, &[1], T0_MS)
        .await
        .unwrap();
    assert!(s6.list_id != slot.list_id && s6.list_id != s5.list_id);
}

/// Entries are found by what their status depends on: an agent's own tokens and the
/// delegated tokens it acts in, a token and those delegated from it; expired ones
/// are left out and purged; new ones are read in allocation order.
pub async fn status_entries_are_found_by_subject(store: Arc<dyn Store>) {
    let shape = ListShape {
        bits: 2,
        size: 1 << 16,
    };
    let issuer = IssuerId::from_random(unique());
    let (root, actor) = (
        AgentId::from_random(unique()),
        AgentId::from_random(unique()),
    );
    let parent = status_entry(&issuer, &root, 5_000);
    let mut child = status_entry(&issuer, &root, 5_000);
    child.actors = vec![actor.clone()];
    child.ancestor_jtis = vec![parent.jti.clone()];
    let old = status_entry(&issuer, &root, 1_000);
    let mut slots = Vec::new();
    for (n, e) in [&parent, &child, &old].into_iter().enumerate() {
        let (slot, _) = store
            .status_allocate(e, shape, &[100 + n as u64], T0_MS)
            .await
            .unwrap();
        slots.push(slot);
    }
    let jtis = |rows: Vec<StatusEntryRow>| -> HashSet<TokenId> {
        rows.into_iter().map(|r| r.entry.jti).collect()
    };
    let of_root = store
        .status_entries_of(&StatusSubject::Agent(root.clone()), 2_000)
        .await
        .unwrap();
    assert_eq!(
        jtis(of_root),
        HashSet::from([parent.jti.clone(), child.jti.clone()])
    );
    let of_actor = store
        .status_entries_of(&StatusSubject::Agent(actor.clone()), 2_000)
        .await
        .unwrap();
    assert_eq!(of_actor.len(), 1);
    assert_eq!(of_actor[0].entry, child, "the chain round-trips");
    assert_eq!(of_actor[0].slot, slots[1]);
    let of_parent = store
        .status_entries_of(&StatusSubject::Token(parent.jti.clone()), 2_000)
        .await
        .unwrap();
    assert_eq!(
        jtis(of_parent),
        HashSet::from([parent.jti.clone(), child.jti.clone()])
    );
    // The keys behind a token: the issuer key that signed its root, the agent key a
    // token is bound to (the holder found as an agent).
    let holder = AgentId::from_random(unique());
    let mut keyed = status_entry(&issuer, &root, 5_000);
    keyed.keys = vec![
        crate::AncestorKey {
            agent: root.clone(),
            issuer_kid: Some("kid-one".into()),
            jkt: None,
            policy_revocation: None,
        },
        crate::AncestorKey {
            agent: holder.clone(),
            issuer_kid: None,
            jkt: Some("jkt-one".into()),
            policy_revocation: None,
        },
    ];
    store
        .status_allocate(&keyed, shape, &[200], T0_MS)
        .await
        .unwrap();
    let of_kid = store
        .status_entries_of(&StatusSubject::IssuerKey("kid-one".into()), 2_000)
        .await
        .unwrap();
    assert_eq!(of_kid.len(), 1);
    assert_eq!(of_kid[0].entry, keyed, "the keys round-trip");
    assert!(
        store
            .status_entries_of(&StatusSubject::IssuerKey("kid-two".into()), 2_000)
            .await
            .unwrap()
            .is_empty()
    );
    let of_holder = store
        .status_entries_of(&StatusSubject::Agent(holder.clone()), 2_000)
        .await
        .unwrap();
    assert_eq!(jtis(of_holder), HashSet::from([keyed.jti.clone()]));
    // The expired one shows only to an earlier `live_after_s`.
    let of_old = store
        .status_entries_of(&StatusSubject::Token(old.jti.clone()), 999)
        .await
        .unwrap();
    assert_eq!(of_old.len(), 1);
    // By list, paged by index.
    let list = slots[0].list_id;
    let page = store.status_entries(list, None, 999, 2).await.unwrap();
    assert_eq!(
        page.iter().map(|r| r.slot.idx).collect::<Vec<_>>(),
        vec![100, 101]
    );
    let rest = store.status_entries(list, Some(101), 999, 2).await.unwrap();
    assert_eq!(
        rest.iter().map(|r| r.slot.idx).collect::<Vec<_>>(),
        vec![102, 200]
    );
    // In allocation order.
    let since = store
        .status_entries_since(&crate::EntryCursor::START, 0, 10)
        .await
        .unwrap();
    assert_eq!(
        since
            .iter()
            .map(|r| r.entry.jti.clone())
            .collect::<Vec<_>>(),
        vec![
            parent.jti.clone(),
            child.jti.clone(),
            old.jti.clone(),
            keyed.jti.clone()
        ]
    );
    let after_first = store
        .status_entries_since(&crate::EntryCursor::START, since[0].seq, 10)
        .await
        .unwrap();
    assert_eq!(after_first.len(), 3);
    // From a horizon: whatever committed after it was taken, page by page (entries
    // committed before may come again, never one after it is missed).
    let horizon = store.status_entry_horizon().await.unwrap();
    let bystander = AgentId::from_random(unique());
    let late = status_entry(&issuer, &bystander, 9_000);
    let later = status_entry(&issuer, &bystander, 9_000);
    for e in [&late, &later] {
        store
            .status_allocate(
                e,
                ListShape {
                    bits: 2,
                    size: 1024,
                },
                &[7, 8],
                T0_MS,
            )
            .await
            .unwrap();
    }
    let mut read = Vec::new();
    let mut after = 0;
    loop {
        let page = store
            .status_entries_since(&horizon, after, 1)
            .await
            .unwrap();
        assert!(page.len() <= 1, "the limit holds");
        let Some(last) = page.last() else { break };
        assert!(last.seq > after, "pages move forward");
        after = last.seq;
        read.push(last.entry.jti.clone());
        assert!(read.len() <= 10, "bounded");
    }
    assert!(
        read.contains(&late.jti) && read.contains(&later.jti),
        "{read:?}"
    );
    let next = store.status_entry_horizon().await.unwrap();
    assert!(next.get() >= horizon.get(), "a horizon never moves back");
    // Nor is one passed by an entry made after the newest was purged: the store never
    // hands out an entry's place in its order again.
    let gone = status_entry(&issuer, &bystander, 1_500);
    store
        .status_allocate(
            &gone,
            ListShape {
                bits: 2,
                size: 1024,
            },
            &[9],
            T0_MS,
        )
        .await
        .unwrap();
    let before_purge = store.status_entry_horizon().await.unwrap();
    assert_eq!(store.purge_status_entries(1_500).await.unwrap(), 2);
    let after_purge = status_entry(&issuer, &bystander, 9_000);
    store
        .status_allocate(
            &after_purge,
            ListShape {
                bits: 2,
                size: 1024,
            },
            &[10],
            T0_MS,
        )
        .await
        .unwrap();
    let fresh = store
        .status_entries_since(&before_purge, 0, 100)
        .await
        .unwrap();
    assert!(
        fresh.iter().any(|r| r.entry.jti == after_purge.jti),
        "an entry made after a purge is read from the horizon before it"
    );
    // Purged once expired, chain and all (`old`, and `gone` above).
    assert!(
        store
            .status_entries_of(&StatusSubject::Token(old.jti.clone()), 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(store.purge_status_entries(5_000).await.unwrap(), 3);
    assert!(
        store
            .status_entries_of(&StatusSubject::Agent(actor), 0)
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        store
            .status_entries_of(&StatusSubject::IssuerKey("kid-one".into()), 0)
            .await
            .unwrap()
            .is_empty()
    );
}

/// A published list is replaced only by a newer version; the status-list key is made
/// once.
pub async fn status_list_versions_only_move_forward(store: Arc<dyn Store>) {
    let issuer = IssuerId::from_random(unique());
    let agent = AgentId::from_random(unique());
    let (slot, _) = store
        .status_allocate(
            &status_entry(&issuer, &agent, 9_000),
            ListShape { bits: 2, size: 64 },
            &[1],
            T0_MS,
        )
        .await
        .unwrap();
    assert_eq!(
        store.status_list_published(slot.list_id).await.unwrap(),
        None
    );
    let v = |version: u64| PublishedStatusList {
        list_id: slot.list_id,
        version,
        token: format!("token-{version}"),
        issued_at_s: 1_000 + version as i64,
        expires_at_s: 90_000,
        audit_index: version * 10,
    };
    assert!(store.publish_status_list(&v(2)).await.unwrap());
    assert!(!store.publish_status_list(&v(1)).await.unwrap());
    assert!(!store.publish_status_list(&v(2)).await.unwrap());
    assert_eq!(
        store.status_list_published(slot.list_id).await.unwrap(),
        Some(v(2))
    );
    assert!(store.publish_status_list(&v(3)).await.unwrap());
    assert_eq!(
        store.status_list_published(slot.list_id).await.unwrap(),
        Some(v(3))
    );
    let first = ReceiptKeyRecord {
        private_pem: "first".into(),
        created_at_ms: 1,
    };
    let second = ReceiptKeyRecord {
        private_pem: "second".into(),
        created_at_ms: 2,
    };
    assert_eq!(store.status_list_key(&first).await.unwrap(), first);
    assert_eq!(store.status_list_key(&second).await.unwrap(), first);
}

/// A list retires only once it takes no new slots (half its indexes handed out) and
/// every entry is purged: then its published token is gone for good.
pub async fn a_status_list_retires_only_closed_and_empty(store: Arc<dyn Store>) {
    let issuer = IssuerId::from_random(unique());
    let agent = AgentId::from_random(unique());
    let shape = ListShape { bits: 2, size: 4 };
    let mut slots = Vec::new();
    for (exp, idx) in [(1_000, 0), (3_000, 1)] {
        let (slot, _) = store
            .status_allocate(&status_entry(&issuer, &agent, exp), shape, &[idx], T0_MS)
            .await
            .unwrap();
        slots.push(slot);
    }
    let closed = slots[0].list_id;
    assert_eq!(slots[1].list_id, closed);
    // The next goes to a new list (this one is half full): open, and never retired.
    let (open, _) = store
        .status_allocate(&status_entry(&issuer, &agent, 1_000), shape, &[0], T0_MS)
        .await
        .unwrap();
    assert_ne!(open.list_id, closed);
    let published = PublishedStatusList {
        list_id: closed,
        version: 1,
        token: "token-1".into(),
        issued_at_s: 900,
        expires_at_s: 90_000,
        audit_index: 1,
    };
    assert!(store.publish_status_list(&published).await.unwrap());
    assert!(!store.retire_status_list(closed).await.unwrap());
    assert_eq!(store.purge_status_entries(1_000).await.unwrap(), 2);
    // One entry left in it.
    assert!(!store.retire_status_list(closed).await.unwrap());
    assert!(store.status_list_published(closed).await.unwrap().is_some());
    assert_eq!(store.purge_status_entries(3_000).await.unwrap(), 1);
    assert!(store.retire_status_list(closed).await.unwrap());
    assert_eq!(store.status_list_published(closed).await.unwrap(), None);
    assert!(store.retire_status_list(closed).await.unwrap());
    // Empty but open: allocations may still land there.
    assert!(!store.retire_status_list(open.list_id).await.unwrap());
    assert!(!store.retire_status_list(999_999).await.unwrap());
}

/// An SDK verification round-trips; each report kind is recorded once (a retry is
/// `AlreadyRecorded`, a different report a `Conflict` that leaves the first); the
/// purge drops only older verifications.
pub async fn sdk_verification_reports_are_kept_once(store: Arc<dyn Store>) {
    use crate::{NewSdkVerification, ReportOutcome, SdkReportKind};
    let agent = AgentId::from_random(unique());
    let old = NewSdkVerification {
        id_sha256: [1; 32],
        audit_index: 7,
        agent_id: agent.clone(),
        created_at_ms: 1_000,
    };
    let new = NewSdkVerification {
        id_sha256: [2; 32],
        audit_index: 9,
        agent_id: agent.clone(),
        created_at_ms: 5_000,
    };
    store.record_sdk_verification(&old).await.unwrap();
    store.record_sdk_verification(&new).await.unwrap();
    let read = store.sdk_verification(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(read.record, old);
    assert_eq!((read.result, read.execution), (None, None));
    assert!(store.sdk_verification(&[3; 32]).await.unwrap().is_none());

    let ok = r#"{"result":"success"}"#;
    let report = |id: [u8; 32], kind, body: &'static str, at| {
        let store = Arc::clone(&store);
        async move {
            store
                .report_sdk_verification(&id, kind, body, at)
                .await
                .unwrap()
        }
    };
    assert_eq!(
        report([1; 32], SdkReportKind::Result, ok, 2_000).await,
        ReportOutcome::Recorded
    );
    assert_eq!(
        report([1; 32], SdkReportKind::Result, ok, 2_500).await,
        ReportOutcome::AlreadyRecorded
    );
    assert_eq!(
        report(
            [1; 32],
            SdkReportKind::Result,
            r#"{"result":"failure"}"#,
            2_600
        )
        .await,
        ReportOutcome::Conflict
    );
    assert_eq!(
        report(
            [1; 32],
            SdkReportKind::Execution,
            r#"{"executed":true}"#,
            3_000
        )
        .await,
        ReportOutcome::Recorded
    );
    assert_eq!(
        report([3; 32], SdkReportKind::Result, ok, 3_000).await,
        ReportOutcome::UnknownVerification
    );
    let read = store.sdk_verification(&[1; 32]).await.unwrap().unwrap();
    let result = read.result.unwrap();
    assert_eq!((result.body.as_str(), result.at_ms), (ok, 2_000));
    assert_eq!(read.execution.unwrap().body, r#"{"executed":true}"#);
    assert!(
        store
            .sdk_verification(&[2; 32])
            .await
            .unwrap()
            .unwrap()
            .result
            .is_none()
    );

    assert_eq!(store.purge_sdk_verifications(5_000).await.unwrap(), 1);
    assert!(store.sdk_verification(&[1; 32]).await.unwrap().is_none());
    assert!(store.sdk_verification(&[2; 32]).await.unwrap().is_some());
}

/// A next signing key is stored as `next` (one at most), with its audit entry and a
/// change; activating it retires the active key (published until its tokens' last
/// `exp`) in one transaction; activating a kid that is not the next key changes
/// nothing.
pub async fn next_signing_key_is_published_then_activated_once(store: Arc<dyn Store>) {
    let first = signing_key(T0_MS);
    assert!(
        store
            .create_first_signing_key(&first, &audit_note())
            .await
            .unwrap()
    );
    let (issuer, _) = issuer(store.as_ref()).await;
    let agent = new_agent(&issuer.id, T0_MS);
    let token = new_token(&agent, &first.kid, T0_S, T0_S + 900);
    store
        .create_agent(&agent, &token, None, &audit_note())
        .await
        .unwrap();
    let size = store.audit_size().await.unwrap();
    let mut next = signing_key(T0_MS + 1);
    // The stored state is `next` whatever the record says.
    next.state = KeyState::Active;
    assert!(
        !store
            .activate_next_signing_key(&next.kid, T0_S, &audit_note())
            .await
            .unwrap(),
        "no next key yet"
    );
    assert!(
        store
            .publish_next_signing_key(&next, &audit_note())
            .await
            .unwrap()
    );
    assert!(
        !store
            .publish_next_signing_key(&signing_key(T0_MS + 2), &audit_note())
            .await
            .unwrap(),
        "one next key at a time"
    );
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!(find(&keys, &next.kid).state, KeyState::Next);
    assert_eq!(active_kids(&keys), [first.kid.as_str()]);
    assert_eq!(store.audit_size().await.unwrap(), size + 1);
    assert!(
        !store
            .activate_next_signing_key(&first.kid, T0_S + 10, &audit_note())
            .await
            .unwrap(),
        "the active key is not the next one"
    );
    assert!(
        store
            .activate_next_signing_key(&next.kid, T0_S + 10, &audit_note())
            .await
            .unwrap()
    );
    let keys = store.signing_keys().await.unwrap();
    assert_eq!(active_kids(&keys), [next.kid.as_str()]);
    let old = find(&keys, &first.kid);
    assert_eq!(old.state, KeyState::Retired);
    assert_eq!(old.publish_until_s, Some(T0_S + 900));
    assert_eq!(store.audit_size().await.unwrap(), size + 2);
    assert!(
        !store
            .activate_next_signing_key(&next.kid, T0_S + 20, &audit_note())
            .await
            .unwrap(),
        "activated once"
    );
    let feed = store
        .changes_since(ChangePosition::START, 0, 100)
        .await
        .unwrap();
    let key_changes = feed
        .changes
        .iter()
        .filter(|c| **c == Change::SigningKeysChanged)
        .count();
    assert_eq!(key_changes, 3, "first key, published, activated");
    // A next key again after the rotation.
    assert!(
        store
            .publish_next_signing_key(&signing_key(T0_MS + 3), &audit_note())
            .await
            .unwrap()
    );
}

fn rate(bucket: &str, quota: u64, window_ms: i64, want: u64) -> crate::RateTake {
    crate::RateTake {
        bucket: bucket.to_owned(),
        quota,
        window_ms,
        want,
    }
}

/// Leases come out of a full bucket until it is empty, whole requests only; it
/// refills at its rate; buckets are independent; idle buckets are purged (and are
/// then full again); nothing is audited.
pub async fn rate_buckets_lease_refill_and_purge(store: Arc<dyn Store>) {
    let g = store
        .rate_take(&[rate("a", 10, 60_000, 4), rate("b", 3, 60_000, 5)], T0_MS)
        .await
        .unwrap();
    assert_eq!((g[0].granted, g[0].remaining), (4, 6));
    assert_eq!(
        (g[1].granted, g[1].remaining, g[1].next_in_ms),
        (3, 0, 20_000)
    );
    let g = store
        .rate_take(&[rate("a", 10, 60_000, 10)], T0_MS)
        .await
        .unwrap();
    assert_eq!(g[0].granted, 6);
    let g = store
        .rate_take(&[rate("a", 10, 60_000, 1)], T0_MS + 5_999)
        .await
        .unwrap();
    assert_eq!((g[0].granted, g[0].next_in_ms), (0, 1));
    let g = store
        .rate_take(&[rate("a", 10, 60_000, 1)], T0_MS + 6_000)
        .await
        .unwrap();
    assert_eq!((g[0].granted, g[0].remaining), (1, 0));
    assert_eq!(store.rate_take(&[], T0_MS).await.unwrap(), []);
    let long = "x".repeat(crate::limits::MAX_BUCKET_BYTES + 1);
    assert!(
        store
            .rate_take(&[rate(&long, 1, 1, 1)], T0_MS)
            .await
            .is_err()
    );
    // `b` was last taken from at T0, `a` at T0 + 6 s.
    assert_eq!(store.purge_rate_buckets(T0_MS + 1).await.unwrap(), 1);
    let g = store
        .rate_take(&[rate("b", 3, 60_000, 5)], T0_MS + 2)
        .await
        .unwrap();
    assert_eq!(g[0].granted, 3, "a purged bucket is full");
    assert_eq!(store.audit_size().await.unwrap(), 0);
}

/// Many takers at once (replicas' lease batches) never get more than the bucket
/// holds in total.
pub async fn concurrent_rate_takes_never_grant_more_than_the_bucket(store: Arc<dyn Store>) {
    let mut tasks = JoinSet::new();
    for i in 0..8u64 {
        let store = Arc::clone(&store);
        tasks.spawn(async move {
            let mut got = 0;
            for _ in 0..10 {
                // Two buckets per batch, in both orders across tasks.
                let takes = if i % 2 == 0 {
                    [
                        rate("shared", 50, 3_600_000, 3),
                        rate("other", 50, 3_600_000, 1),
                    ]
                } else {
                    [
                        rate("other", 50, 3_600_000, 1),
                        rate("shared", 50, 3_600_000, 3),
                    ]
                };
                let g = store.rate_take(&takes, T0_MS).await.unwrap();
                got += if i % 2 == 0 {
                    g[0].granted
                } else {
                    g[1].granted
                };
            }
            got
        });
    }
    let mut total = 0;
    while let Some(got) = tasks.join_next().await {
        total += got.unwrap();
    }
    assert_eq!(total, 50, "exactly the bucket, no more and no less");
}

/// A setting is stored, replaced and removed, each change with its audit entry in the
/// same transaction; setting the same value, or removing a missing one, appends
/// nothing.
pub async fn rate_limit_settings_are_audited_only_when_they_change(store: Arc<dyn Store>) {
    assert_eq!(store.rate_limit_settings().await.unwrap(), []);
    assert!(
        store
            .set_rate_limit_setting("key:a", Some("10/60s"), T0_MS, &audit_note())
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_rate_limit_setting("key:a", Some("10/60s"), T0_MS + 1, &audit_note())
            .await
            .unwrap()
    );
    assert!(
        store
            .set_rate_limit_setting("defaults", Some("ip=1/1s"), T0_MS + 2, &audit_note())
            .await
            .unwrap()
    );
    assert!(
        store
            .set_rate_limit_setting("key:a", Some("20/60s"), T0_MS + 3, &audit_note())
            .await
            .unwrap()
    );
    let settings = store.rate_limit_settings().await.unwrap();
    assert_eq!(
        settings,
        [
            crate::RateLimitSetting {
                name: "defaults".into(),
                value: "ip=1/1s".into(),
                set_at_ms: T0_MS + 2
            },
            crate::RateLimitSetting {
                name: "key:a".into(),
                value: "20/60s".into(),
                set_at_ms: T0_MS + 3
            },
        ]
    );
    assert_eq!(store.audit_size().await.unwrap(), 3);
    assert!(
        store
            .set_rate_limit_setting("key:a", None, T0_MS + 4, &audit_note())
            .await
            .unwrap()
    );
    assert!(
        !store
            .set_rate_limit_setting("key:a", None, T0_MS + 5, &audit_note())
            .await
            .unwrap()
    );
    assert_eq!(store.audit_size().await.unwrap(), 4);
    assert_eq!(store.rate_limit_settings().await.unwrap().len(), 1);
}
