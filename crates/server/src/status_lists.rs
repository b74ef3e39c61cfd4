//! Token Status Lists (draft-ietf-oauth-status-list): how a receiver that verifies
//! offline sees revocations and suspensions.
//!
//! **Slots.** Every token the registry signs carries `status.status_list` (`idx`,
//! `uri`): a slot allocated in the store before signing ([`StatusLists::allocate`]),
//! at a random index of a large list ([`Config::status_list_size`], default 2^20
//! entries) shared by every issuer, so a list says nothing about who holds which
//! index (the draft's herd privacy). A list takes entries until half full, then a new
//! one opens. Issuers allocate slots for their own signed tokens the same way
//! (`POST /v1/status-lists/allocations`).
//!
//! **Publishing.** One task ([`run`]) keeps every list's statuses in memory and
//! publishes a new version when one changes: it reads the store's change feed (woken
//! by [`AppState::feed_wake`] at once after a local commit, or by another replica's
//! signal), finds the entries a change concerns (an agent's tokens and the delegated
//! tokens it acts in, a token and those delegated from it), recomputes their status
//! with [`verdict::list_status`] — the same rule a verify applies — and for each list
//! that changed: appends a `status_list.published` audit entry (its statuses'
//! SHA-256, [`status_list::published_entry`]), waits for a signed checkpoint that
//! includes it, signs the Status List Token naming both (`version`, `audit`), and
//! stores it. Every replica serves the stored token, so every receiver is served a
//! version the log holds: a split view leaves proof. Every list is also re-signed at
//! least every [`RESIGN_EVERY`] (5 minutes), so its `iat` says how current it is. Only the checkpoint signer publishes
//! (`Store::checkpoint_leader`); a new leader rebuilds from the store.
//!
//! **Allocations racing a change.** An entry allocated after the publisher processed
//! a revocation of its agent would keep status valid, so the publisher also reads
//! every entry that became visible since its last round
//! ([`Store::status_entries_since`] from the horizon taken before that round's read).
//! On PostgreSQL that is by transaction visibility, not `seq` nor a clock window: a
//! `seq` is handed out before commit, and an allocation whose transaction commits
//! late, however late, is read in the first round after it commits.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bonafide_api::error::ErrorCode;
use bonafide_core::ids::{AgentId, IssuerId, TokenId};
use bonafide_core::keys::{Algorithm, SigningKey};
use bonafide_core::sealed::Kek;
use bonafide_core::status_list::{
    self, Bits, LogPosition, Status, StatusClaim, StatusList, StatusListClaims, StatusRef,
};
use bonafide_core::token::TokenError;
use bonafide_store::{
    AncestorKey, Change as FeedChange, ChangePosition, EntryCursor, ListShape, PrivateKeySlot,
    PublishedStatusList, ReceiptKeyRecord, StatusEntry, StatusEntryRow, StatusSubject, Store,
    StoreError,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::audit::AuditLogError;
use crate::auth::IssuerAuth;
use crate::error::ApiError;
use crate::error::{ApiJson, ApiPath};
use crate::state::AppState;
use crate::{sealing, verdict};

/// Bits per status: valid, revoked (invalid), suspended.
const BITS: u8 = 2;
/// Random candidates per allocation attempt: a list is at most half full, so all of
/// them are taken with probability under 2^-16.
const CANDIDATES: usize = 16;
/// Entries read per page when a list is rebuilt.
const PAGE: u32 = 10_000;
/// Longest the publisher sleeps without a wake-up.
const TICK: Duration = Duration::from_secs(1);
/// Every list is re-signed at least this often, changed or not: its `iat` is how
/// receivers tell a list the registry still stands behind from one replayed or left
/// behind by a publisher that stopped (their staleness bound, 10 minutes by default,
/// is counted from it).
pub const RESIGN_EVERY: Duration = Duration::from_secs(300);
/// How often expired entries are purged.
const PURGE_EVERY: Duration = Duration::from_secs(3600);

/// The status-list signer and allocator (see the module docs).
#[derive(Debug)]
pub struct StatusLists {
    key: SigningKey,
    shape: ListShape,
}

impl StatusLists {
    /// Loads (or makes, once) the status-list signing key.
    pub async fn load(
        store: &dyn Store,
        kek: &Kek,
        size: u64,
        now_ms: i64,
    ) -> Result<Self, StoreError> {
        let fresh = SigningKey::generate(Algorithm::EdDSA)
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let pem = fresh
            .to_pkcs8_pem()
            .map_err(|e| StoreError::Backend(e.to_string()))?;
        let slot = PrivateKeySlot::StatusListKey;
        let stored = store
            .status_list_key(&ReceiptKeyRecord {
                private_pem: sealing::seal(kek, &slot, pem.expose_secret())?,
                created_at_ms: now_ms,
            })
            .await?;
        let pem = sealing::open(kek, &slot, &stored.private_pem)?;
        let key = SigningKey::from_pkcs8_pem(pem.expose_secret())
            .map_err(|e| StoreError::Backend(format!("status-list key: {e}")))?;
        if key.alg() != Algorithm::EdDSA {
            return Err(StoreError::Backend(
                "the status-list key is not Ed25519".into(),
            ));
        }
        Ok(StatusLists {
            key,
            shape: ListShape { bits: BITS, size },
        })
    }

    /// The key that signs status lists (and nothing else).
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Allocates the token's slot and returns the `status` claim it carries. The same
    /// jti again (same agent and issuer) gets its slot back; a jti another agent's
    /// token holds is a 409.
    pub async fn allocate(
        &self,
        state: &AppState,
        entry: &StatusEntry,
    ) -> Result<StatusClaim, ApiError> {
        for _ in 0..3 {
            let mut candidates = [0u64; CANDIDATES];
            for c in &mut candidates {
                *c = random_u64()?;
            }
            match state
                .store
                .status_allocate(entry, self.shape, &candidates, state.now_ms())
                .await
            {
                Ok((slot, new)) => {
                    if !new {
                        self.same_dependencies(state, entry).await?;
                    }
                    return Ok(StatusClaim {
                        status_list: Some(StatusRef {
                            idx: slot.idx,
                            uri: list_uri(&state.config.public_url, slot.list_id),
                        }),
                    });
                }
                // Every candidate taken (or a lost race for a new list): draw again,
                // unless the jti is the conflict.
                Err(StoreError::Conflict(_)) => {
                    if let Some(existing) = state
                        .store
                        .status_entries_of(&StatusSubject::Token(entry.jti.clone()), i64::MIN)
                        .await?
                        .into_iter()
                        .find(|r| r.entry.jti == entry.jti)
                        && (existing.entry.agent_id != entry.agent_id
                            || existing.entry.issuer_id != entry.issuer_id)
                    {
                        return Err(ApiError::new(
                            StatusCode::CONFLICT,
                            ErrorCode::Conflict,
                            "this jti already has a status slot for another agent's token",
                        ));
                    }
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StatusListUnavailable,
            "no free status-list index was found; retry",
        ))
    }
}

impl StatusLists {
    /// A jti asked for again gets its slot back only if its entry depends on the same
    /// agents, tokens, policy and keys: the stored entry is what the publisher reads,
    /// so a second ask naming a key or policy the first did not would be answered with
    /// a slot that never flips with them. Such an ask is a 409, not a silent slot.
    async fn same_dependencies(
        &self,
        state: &AppState,
        entry: &StatusEntry,
    ) -> Result<(), ApiError> {
        let stored = state
            .store
            .status_entries_of(&StatusSubject::Token(entry.jti.clone()), i64::MIN)
            .await?
            .into_iter()
            .find(|r| r.entry.jti == entry.jti);
        let sorted = |e: &StatusEntry| {
            let mut actors = e.actors.clone();
            actors.sort();
            let mut ancestors = e.ancestor_jtis.clone();
            ancestors.sort();
            let mut keys: Vec<String> = e
                .keys
                .iter()
                .map(|k| format!("{}|{:?}|{:?}", k.agent, k.issuer_kid, k.jkt))
                .collect();
            keys.sort();
            (actors, ancestors, keys)
        };
        match stored {
            Some(row) if sorted(&row.entry) != sorted(entry) => Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::Conflict,
                "this jti already has a status slot that depends on another key, policy or chain: ask again with the same `kid`, `jkt` and `policy_id`, or sign the token with a new jti",
            )),
            _ => Ok(()),
        }
    }
}

/// A list's URI: what tokens name and what it is served at.
pub fn list_uri(public_url: &str, list_id: u32) -> String {
    format!(
        "{}/v1/status-lists/{list_id}",
        public_url.trim_end_matches('/')
    )
}

/// A random candidate index (taken modulo the list's size by the store).
fn random_u64() -> Result<u64, ApiError> {
    let [a, b, c, d, e, f, g, h, ..] = crate::routes::random16()?;
    Ok(u64::from_le_bytes([a, b, c, d, e, f, g, h]))
}

/// The status entry of a token about to be signed: its chain's agents and ancestor
/// tokens, and the keys behind it and its ancestors (`keys`), decide its status too. A
/// token carrying a consent policy (`policy_id`) has the policy's revocation id
/// ([`bonafide_core::token::policy_revocation_id`] of the agent's issuer) among its
/// ancestors: revoking the policy is a revocation of that id, which the publisher
/// finds the entry by and [`verdict::list_status`] reads as revoked, as a verify
/// refuses the token.
pub fn entry_of(
    jti: &TokenId,
    agent: &AgentId,
    issuer: &IssuerId,
    expires_at_s: i64,
    depends: DependsOn<'_>,
) -> StatusEntry {
    let DependsOn {
        actors,
        mut ancestor_jtis,
        policy_id,
        keys,
    } = depends;
    if let Some(policy_id) = policy_id {
        ancestor_jtis.push(bonafide_core::token::policy_revocation_id(
            issuer, policy_id,
        ));
    }
    // Its ancestors' policies too (a delegated child's own may have another `id`).
    for id in keys.iter().filter_map(|k| k.policy_revocation.as_ref()) {
        if !ancestor_jtis.contains(id) {
            ancestor_jtis.push(id.clone());
        }
    }
    StatusEntry {
        jti: jti.clone(),
        agent_id: agent.clone(),
        issuer_id: issuer.clone(),
        expires_at_s,
        actors,
        ancestor_jtis,
        keys,
    }
}

/// What a token's status depends on beyond itself and its agent ([`entry_of`]).
#[derive(Debug, Default)]
pub struct DependsOn<'a> {
    /// The agents acting in its delegation chain.
    pub actors: Vec<AgentId>,
    /// Its ancestor tokens (and ids revoked in their stead).
    pub ancestor_jtis: Vec<TokenId>,
    /// The `id` of the consent policy it carries.
    pub policy_id: Option<&'a str>,
    /// The keys behind it and its ancestors.
    pub keys: Vec<AncestorKey>,
}

// ---- publishing

/// Why a round of publishing failed (retried at the next round).
#[derive(Debug, thiserror::Error)]
enum PublishError {
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("audit log: {0}")]
    Audit(#[from] AuditLogError),
    #[error("status list: {0}")]
    List(#[from] status_list::StatusListError),
    #[error("signing: {0}")]
    Sign(#[from] bonafide_core::keys::KeyError),
    #[error("audit entry: {0}")]
    Entry(#[from] bonafide_core::audit::AuditError),
}

/// One list as the publisher holds it.
#[derive(Debug)]
struct Held {
    list: StatusList,
    /// Statuses changed since the stored version.
    dirty: bool,
    /// The stored version: number and `iat`.
    version: u64,
    issued_at_s: i64,
}

/// The publisher's state: every list, the change feed's and the entries' positions.
#[derive(Debug, Default)]
struct Publisher {
    lists: BTreeMap<u32, Held>,
    feed: ChangePosition,
    /// Where the next read of new entries starts ([`Store::status_entry_horizon`]).
    entries: EntryCursor,
    loaded: bool,
    /// When a bound agent key still usable stops being so (its grace after a rotation
    /// ends, or it expires), with its agent: no change marks that moment, so the
    /// agent's entries are looked at again then.
    deadlines: BTreeSet<(i64, AgentId)>,
    /// Lists retired ([`Store::retire_status_list`]): never held nor published again.
    retired: BTreeSet<u32>,
}

/// Publishes the status lists while this process is the checkpoint signer; runs
/// until the state is dropped.
pub async fn run(state: Arc<AppState>) {
    let mut wake = state.feed_wake();
    let mut publisher = Publisher::default();
    let mut failing = false;
    let mut last_purge = tokio::time::Instant::now();
    loop {
        let outcome = round(&state, &mut publisher).await;
        match outcome {
            Ok(()) if failing => {
                tracing::info!("status lists are published again");
                failing = false;
            }
            Ok(()) => {}
            Err(e) => {
                if !failing {
                    tracing::warn!(error = %e, "could not publish status lists; retrying");
                }
                failing = true;
                // Rebuild from the store next time: what is held may be behind.
                publisher = Publisher::default();
            }
        }
        if last_purge.elapsed() >= PURGE_EVERY {
            last_purge = tokio::time::Instant::now();
            // Kept a list validity past `exp`: a receiver holding a list that old still
            // reads the entry, so its index must not be anyone else's yet.
            let margin = state.config.status_list_validity.as_secs() as i64;
            let by = state.now_ms() / 1000 - state.config.leeway_secs - margin;
            match state.store.purge_status_entries(by).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(purged = n, "expired status entries dropped"),
                Err(e) => tracing::warn!(error = %e, "could not purge status entries"),
            }
        }
        wake.wait(TICK).await;
    }
}

/// One round: lead or step back, catch up with the feed and new entries, publish what
/// changed or ages.
async fn round(state: &AppState, p: &mut Publisher) -> Result<(), PublishError> {
    if !state.store.checkpoint_leader().await? {
        // Another replica publishes; rebuild if this one leads later.
        *p = Publisher::default();
        return Ok(());
    }
    let now_s = state.now_ms() / 1000;
    let live_after_s = now_s - state.config.leeway_secs;
    if !p.loaded {
        load(state, p, live_after_s).await?;
    } else {
        // Taken before anything of this round is read (lists, feed, entries): an entry
        // whose list is created after this is read next round, with its list known;
        // read later, the entry could be read before its list and then be behind the
        // cursor for good.
        let horizon = state.store.status_entry_horizon().await?;
        let mut subjects = read_feed(state, p, now_s).await?;
        let now_ms = state.now_ms();
        while let Some(first) = p.deadlines.first()
            && first.0 <= now_ms
        {
            if let Some((_, agent)) = p.deadlines.pop_first() {
                subjects.insert(StatusSubject::Agent(agent));
            }
        }
        // The snapshot must reflect at least what the feed said (another replica's
        // change may not be applied yet).
        state.refresh().await?;
        let snapshot = state.snapshot();
        for subject in subjects {
            let rows = state
                .store
                .status_entries_of(&subject, live_after_s)
                .await?;
            let keys = agent_keys_of(state, &rows).await?;
            for row in &rows {
                set(p, row, &snapshot, &keys, now_ms)?;
            }
        }
        new_lists(state, p).await?;
        new_entries(state, p, &snapshot, horizon).await?;
    }
    let validity = state.config.status_list_validity.as_secs() as i64;
    let refresh = (validity / 2).min(RESIGN_EVERY.as_secs() as i64);
    // Changed lists first: a revocation is not kept waiting behind re-signing.
    let mut due: Vec<(bool, u32)> = p
        .lists
        .iter()
        .filter_map(|(id, held)| {
            let ageing = held.version == 0 || now_s - held.issued_at_s >= refresh;
            (held.dirty || ageing).then_some((!held.dirty, *id))
        })
        .collect();
    due.sort_unstable();
    let mut publishing = Vec::with_capacity(due.len());
    for (ageing, id) in due {
        // A list only ageing may be one no token can name any more: retired rather
        // than signed again.
        if ageing && state.store.retire_status_list(id).await? {
            p.lists.remove(&id);
            p.retired.insert(id);
            tracing::info!(
                list = id,
                "status list retired: every token it held expired"
            );
            continue;
        }
        publishing.push(id);
    }
    publish(state, p, &publishing, now_s).await
}

/// Rebuilds every list from the store: the feed's end first, so no change after the
/// statuses read is missed.
async fn load(state: &AppState, p: &mut Publisher, live_after_s: i64) -> Result<(), PublishError> {
    // Taken before any entry is read: whatever is not visible yet is read from it.
    let entries = state.store.status_entry_horizon().await?;
    let mut feed = ChangePosition::START;
    loop {
        let page = state.store.changes_since(feed, i64::MAX, 10_000).await?;
        feed = page.next;
        if !page.more {
            break;
        }
    }
    state.refresh().await?;
    let snapshot = state.snapshot();
    let now_ms = state.now_ms();
    let mut deadlines = BTreeSet::new();
    let mut lists = BTreeMap::new();
    let mut retired = BTreeSet::new();
    for record in state.store.status_lists().await? {
        if closed(&record) && state.store.retire_status_list(record.id).await? {
            retired.insert(record.id);
            continue;
        }
        let mut list =
            StatusList::new(Bits::new(u64::from(record.shape.bits))?, record.shape.size)?;
        let mut after = None;
        loop {
            let rows = state
                .store
                .status_entries(record.id, after, live_after_s, PAGE)
                .await?;
            let keys = agent_keys_of(state, &rows).await?;
            for row in &rows {
                let status = status_of(&snapshot, row, &keys, now_ms, &mut deadlines);
                if status != Status::Valid {
                    list.set(row.slot.idx, status)?;
                }
            }
            match rows.last() {
                Some(last) if rows.len() == PAGE as usize => after = Some(last.slot.idx),
                _ => break,
            }
        }
        let stored = state.store.status_list_published(record.id).await?;
        let (dirty, version, issued_at_s) = match stored {
            None => (true, 0, 0),
            Some(s) => (published_list(&s.token)? != list, s.version, s.issued_at_s),
        };
        lists.insert(
            record.id,
            Held {
                list,
                dirty,
                version,
                issued_at_s,
            },
        );
    }
    p.lists = lists;
    p.retired = retired;
    p.deadlines = deadlines;
    p.feed = feed;
    p.entries = entries;
    p.loaded = true;
    Ok(())
}

/// The list takes no new slots: at least half its indexes were handed out (the
/// store's rule, [`Store::status_allocate`]), so it may retire once empty.
fn closed(record: &bonafide_store::StatusListRecord) -> bool {
    record.allocated.saturating_mul(2) >= record.shape.size
}

/// The statuses of a stored Status List Token (this registry's own, so trusted).
fn published_list(token: &str) -> Result<StatusList, PublishError> {
    let payload = token
        .split('.')
        .nth(1)
        .ok_or_else(|| StoreError::Backend("stored status list token is not a JWS".into()))?;
    let bytes = bonafide_core::b64::decode(payload)
        .map_err(|_| StoreError::Backend("stored status list token does not decode".into()))?;
    let claims: StatusListClaims = serde_json::from_slice(&bytes)
        .map_err(|_| StoreError::Backend("stored status list token does not parse".into()))?;
    Ok(StatusList::decode(&claims.status_list)?)
}

/// Reads the change feed from where the publisher stopped; the subjects whose
/// entries may have changed status.
async fn read_feed(
    state: &AppState,
    p: &mut Publisher,
    now_s: i64,
) -> Result<HashSet<StatusSubject>, PublishError> {
    let mut subjects = HashSet::new();
    loop {
        let page = state
            .store
            .changes_since(p.feed, now_s - state.config.leeway_secs, 10_000)
            .await?;
        for change in page.changes {
            match change {
                FeedChange::AgentRevoked(a)
                | FeedChange::AgentSuspended(a)
                | FeedChange::AgentReactivated(a) => {
                    subjects.insert(StatusSubject::Agent(a));
                }
                FeedChange::TokenRevoked { jti, .. } => {
                    subjects.insert(StatusSubject::Token(jti));
                }
                // A rotation (or a key registered): the tokens bound to the agent's
                // keys, which may now be past their grace.
                FeedChange::AgentKeysChanged(a) => {
                    subjects.insert(StatusSubject::Agent(a));
                }
                // A key added or revoked: the tokens any of the issuer's keys signed
                // (the change does not say which key).
                FeedChange::IssuerKeysChanged(i) => {
                    for key in state.store.issuer_keys(&i).await? {
                        subjects.insert(StatusSubject::IssuerKey(key.kid));
                    }
                }
                _ => {}
            }
        }
        p.feed = page.next;
        if !page.more {
            return Ok(subjects);
        }
    }
}

/// Lists made since the last round (by allocations, here or on another replica).
async fn new_lists(state: &AppState, p: &mut Publisher) -> Result<(), PublishError> {
    for record in state.store.status_lists().await? {
        if p.lists.contains_key(&record.id) || p.retired.contains(&record.id) {
            continue;
        }
        let list = StatusList::new(Bits::new(u64::from(record.shape.bits))?, record.shape.size)?;
        p.lists.insert(
            record.id,
            Held {
                list,
                dirty: true,
                version: 0,
                issued_at_s: 0,
            },
        );
    }
    Ok(())
}

/// Entries that became visible since the last read: any whose status is not valid
/// already (allocated while a change was being published) is set.
///
/// `next` is the horizon taken at the start of the round, before the lists were read:
/// an entry committed since is read again next round.
async fn new_entries(
    state: &AppState,
    p: &mut Publisher,
    snapshot: &crate::state::Snapshot,
    next: EntryCursor,
) -> Result<(), PublishError> {
    let mut after = 0;
    let now_ms = state.now_ms();
    loop {
        let rows = state
            .store
            .status_entries_since(&p.entries, after, PAGE)
            .await?;
        let keys = agent_keys_of(state, &rows).await?;
        for row in &rows {
            set(p, row, snapshot, &keys, now_ms)?;
        }
        match rows.last() {
            Some(last) if rows.len() == PAGE as usize => after = last.seq,
            _ => break,
        }
    }
    p.entries = next;
    Ok(())
}

/// The keys of every agent an entry of `rows` is bound to a key of, read before the
/// statuses are worked out from memory ([`status_of`]).
async fn agent_keys_of(state: &AppState, rows: &[StatusEntryRow]) -> Result<AgentKeys, StoreError> {
    let mut keys = AgentKeys::default();
    for row in rows {
        for key in &row.entry.keys {
            let Some(jkt) = &key.jkt else { continue };
            if !keys.usable.contains_key(&key.agent) {
                keys.usable
                    .insert(key.agent.clone(), state.agent_keys(&key.agent).await?);
            }
            let known = |keys: &AgentKeys| {
                keys.usable
                    .get(&key.agent)
                    .is_some_and(|entries| entries.iter().any(|e| e.record.jkt == *jkt))
            };
            let pair = (key.agent.clone(), jkt.clone());
            if known(&keys) || keys.unusable.contains(&pair) || !keys.asked.insert(pair.clone()) {
                continue;
            }
            // Not among the keys the cache holds: a cache older than the key (another
            // replica's registration, until the feed drops it), a key stored but that
            // no longer loads (a damaged JWK), or one not committed yet. Rare: the
            // store, read afresh and loaded, tells which, once per (agent, key).
            let stored = state.store.agent_keys(&key.agent).await?;
            let has_row = stored.iter().any(|s| s.jkt == *jkt);
            let fresh = crate::state::load_agent_keys(stored);
            keys.usable.insert(key.agent.clone(), fresh);
            if has_row && !known(&keys) {
                keys.unusable.insert(pair);
            }
        }
    }
    Ok(keys)
}

/// Agents' keys, by agent, for [`status_of`].
#[derive(Default)]
struct AgentKeys {
    /// The keys that load, by agent.
    usable: HashMap<AgentId, Arc<[crate::state::AgentKeyEntry]>>,
    /// (agent, jkt) of keys stored but not loadable: their tokens fail every verify.
    unusable: HashSet<(AgentId, String)>,
    /// (agent, jkt) already read afresh from the store.
    asked: HashSet<(AgentId, String)>,
}

/// What a verify of the entry's token would find of its standing: revocation and
/// suspension along its chain ([`verdict::list_status`]), then the keys behind it
/// ([`verdict::key_standing`], the rule `delegation::check` applies). A bound key still
/// usable that stops being so later adds its moment to `deadlines`.
fn status_of(
    snapshot: &crate::state::Snapshot,
    row: &StatusEntryRow,
    agent_keys: &AgentKeys,
    now_ms: i64,
    deadlines: &mut BTreeSet<(i64, AgentId)>,
) -> Status {
    let status = verdict::list_status(
        snapshot,
        &row.entry.agent_id,
        &row.entry.jti,
        &row.entry.actors,
        &row.entry.ancestor_jtis,
    );
    if status == Status::Invalid {
        return status;
    }
    for key in &row.entry.keys {
        let keys = agent_keys
            .usable
            .get(&key.agent)
            .map_or(&[][..], |k| &k[..]);
        match verdict::key_standing(&snapshot.issuer_keys, keys, key, now_ms) {
            None => {}
            // A key stored but that no longer loads: no verify accepts its tokens.
            Some(TokenError::Claims(_))
                if key.jkt.as_ref().is_some_and(|jkt| {
                    agent_keys
                        .unusable
                        .contains(&(key.agent.clone(), jkt.clone()))
                }) =>
            {
                return Status::Invalid;
            }
            // A key not stored (yet): agent keys are never deleted, so this is a
            // registration whose token's entry was allocated before its agent and
            // key committed (or one that failed, whose token nobody holds). Not
            // revoked: the key's `AgentKeysChanged` reads the entry again.
            Some(TokenError::Claims(_)) => {}
            Some(_) => return Status::Invalid,
        }
        if let Some(jkt) = &key.jkt
            && let Some(entry) = keys.iter().find(|k| k.record.jkt == *jkt)
        {
            for end in [
                entry.record.grace_until_ms,
                Some(entry.record.expires_at_ms),
            ]
            .into_iter()
            .flatten()
            .filter(|end| *end > now_ms && *end < i64::MAX)
            {
                deadlines.insert((end, key.agent.clone()));
            }
        }
    }
    status
}

/// Sets one entry's status in its list, marking the list dirty if it changed.
fn set(
    p: &mut Publisher,
    row: &StatusEntryRow,
    snapshot: &crate::state::Snapshot,
    agent_keys: &AgentKeys,
    now_ms: i64,
) -> Result<(), PublishError> {
    let status = status_of(snapshot, row, agent_keys, now_ms, &mut p.deadlines);
    let Some(held) = p.lists.get_mut(&row.slot.list_id) else {
        // A list made after this round read the lists: the next round has it.
        return Ok(());
    };
    if held.list.get(row.slot.idx)? != status {
        held.list.set(row.slot.idx, status)?;
        held.dirty = true;
    }
    Ok(())
}

/// A version logged, waiting for the checkpoint that includes it.
struct Logged {
    id: u32,
    version: u64,
    index: u64,
    uri: String,
}

/// Logs the next version of each list of `ids`, then takes ONE checkpoint covering
/// them all (several lists due at once share it, rather than a signature each), then
/// signs and stores each version naming it.
async fn publish(
    state: &AppState,
    p: &mut Publisher,
    ids: &[u32],
    now_s: i64,
) -> Result<(), PublishError> {
    let mut pending = Vec::with_capacity(ids.len());
    let mut records = Vec::with_capacity(ids.len());
    for &id in ids {
        let Some(held) = p.lists.get(&id) else {
            continue;
        };
        let uri = list_uri(&state.config.public_url, id);
        // Never behind a version another leader stored.
        let stored = state.store.status_list_published(id).await?;
        let version = stored.map_or(0, |s| s.version).max(held.version) + 1;
        let entry = status_list::published_entry(&uri, version, now_s, &held.list);
        records.push(crate::audit::record(&entry, None, None)?);
        pending.push((id, version, uri));
    }
    // Appended together: the log's group commit makes them durable in one write.
    let indexes = futures_util::future::try_join_all(
        records.into_iter().map(|record| state.audit.append(record)),
    )
    .await?;
    let logged: Vec<Logged> = pending
        .into_iter()
        .zip(indexes)
        .map(|((id, version, uri), index)| Logged {
            id,
            version,
            index,
            uri,
        })
        .collect();
    let Some(last) = logged.iter().map(|l| l.index).max() else {
        return Ok(());
    };
    let checkpoint = state.audit.checkpoint_covering(last + 1).await?;
    for l in logged {
        store_version(state, p, l, checkpoint.size, now_s).await?;
    }
    Ok(())
}

/// Signs and stores a logged version of a list, naming the checkpoint of
/// `tree_size` that includes its entry.
async fn store_version(
    state: &AppState,
    p: &mut Publisher,
    logged: Logged,
    tree_size: u64,
    now_s: i64,
) -> Result<(), PublishError> {
    let Logged {
        id,
        version,
        index,
        uri,
    } = logged;
    let Some(held) = p.lists.get(&id) else {
        return Ok(());
    };
    let mut extra = serde_json::Map::new();
    extra.insert(status_list::VERSION_CLAIM.into(), version.into());
    extra.insert(
        status_list::AUDIT_CLAIM.into(),
        serde_json::to_value(LogPosition { index, tree_size })
            .map_err(|e| StoreError::Backend(e.to_string()))?,
    );
    let validity = state.config.status_list_validity.as_secs() as i64;
    let claims = StatusListClaims {
        iss: Some(state.config.public_url.clone()),
        sub: uri,
        iat: now_s,
        exp: Some(now_s + validity),
        ttl: Some(state.config.status_list_ttl.as_secs().max(1)),
        status_list: held.list.encode(),
        extra,
    };
    let token = status_list::sign(state.status_lists.key(), &claims)?;
    let stored = state
        .store
        .publish_status_list(&PublishedStatusList {
            list_id: id,
            version,
            token,
            issued_at_s: now_s,
            expires_at_s: now_s + validity,
            audit_index: index,
        })
        .await?;
    if !stored {
        // Another leader stored this version meanwhile (a takeover): what it holds
        // may lack our statuses, so publish again, after it, next round.
        let theirs = state
            .store
            .status_list_published(id)
            .await?
            .map_or(version, |s| s.version);
        if let Some(held) = p.lists.get_mut(&id) {
            held.version = theirs;
            held.dirty = true;
        }
        return Ok(());
    }
    if let Some(held) = p.lists.get_mut(&id) {
        held.dirty = false;
        held.version = version;
        held.issued_at_s = now_s;
    }
    tracing::debug!(
        list = id,
        version,
        index,
        tree_size,
        "status list published"
    );
    Ok(())
}

// ---- routes

/// A Status List Token (draft-ietf-oauth-status-list §8): the latest version of list
/// `id`, signed by the status-list key (`/.well-known/status-list-jwks.json`), with
/// `ETag` (`If-None-Match` gives 304) and `Cache-Control: max-age` = its `ttl`.
#[utoipa::path(get, path = "/v1/status-lists/{id}", tag = "status",
    params(("id" = u32, Path, description = "list id, from a token's status.status_list.uri")),
    responses(
        (status = 200, description = "Status List Token", content_type = "application/statuslist+jwt", body = String),
        (status = 304, description = "not modified since the ETag given"),
        (status = 404, description = "no such list, or a retired one (every token it held expired; `NOT_FOUND`)", body = bonafide_api::error::ErrorBody),
        (status = 503, description = "the list is not published yet (a new list is, within a second)", body = bonafide_api::error::ErrorBody)))]
pub async fn get_list(
    State(state): State<Arc<AppState>>,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let unknown = || ApiError::not_found("status list");
    // Digits only: `+1` or `01` name no list.
    if id.is_empty()
        || id.len() > 10
        || !id.bytes().all(|b| b.is_ascii_digit())
        || id.starts_with('0')
    {
        return Err(unknown());
    }
    let id: u32 = id.parse().map_err(|_| unknown())?;
    let Some(published) = state.store.status_list_published(id).await? else {
        let lists = state.store.status_lists().await?;
        let Some(record) = lists.iter().find(|l| l.id == id) else {
            return Err(unknown());
        };
        // Retired (closed, every entry purged): the publisher deleted its token.
        let retired = closed(record)
            && state
                .store
                .status_entries(id, None, i64::MIN, 1)
                .await?
                .is_empty();
        if retired {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                ErrorCode::NotFound,
                format!(
                    "status list {id} is retired: every token it held expired, so no token that can still verify names it"
                ),
            ));
        }
        // A new list, published within a round.
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::StatusListUnavailable,
            "this status list is not published yet; retry in a second",
        ));
    };
    let etag = format!("\"{id}.{}\"", published.version);
    let max_age = state.config.status_list_ttl.as_secs().max(1);
    let mut response = if if_none_match(&headers, &etag) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        (
            [(header::CONTENT_TYPE, status_list::STATUS_LIST_MEDIA_TYPE)],
            published.token,
        )
            .into_response()
    };
    let h = response.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&etag) {
        h.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("max-age={max_age}")) {
        h.insert(header::CACHE_CONTROL, v);
    }
    Ok(response)
}

/// RFC 9110 §13.1.2: `*`, or any listed tag equal by weak comparison.
fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    headers
        .get_all(header::IF_NONE_MATCH)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag.trim_start_matches("W/") == etag)
}

/// The status-list key (RFC 7517 JWK Set of one Ed25519 key): it signs only `typ
/// statuslist+jwt`, and is kept out of the token JWKS so that no JWT library
/// configured with that set can take a status list for a token.
#[utoipa::path(get, path = "/.well-known/status-list-jwks.json", tag = "discovery",
    responses((status = 200, description = "JWK Set", content_type = "application/jwk-set+json")))]
pub async fn jwks(State(state): State<Arc<AppState>>) -> impl IntoResponse {
    crate::routes::meta::jwk_set(bonafide_core::keys::Jwks {
        keys: vec![state.status_lists.key().verifying_key().jwk().clone()],
    })
}

/// `POST /v1/status-lists/allocations`: a slot for an issuer-signed token.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AllocateStatus {
    /// The token's agent (one of the issuer's).
    pub agent_id: String,
    /// The token's `jti`.
    pub jti: String,
    /// The token's `exp`, Unix seconds: in the future, within the registry's longest
    /// token lifetime.
    pub expires_at: i64,
    /// The kid of the issuer key that will sign it (one of the issuer's live keys): its
    /// revocation then revokes the token in its list, as verify refuses it. Required:
    /// every issuer-signed token is signed by one, and a slot not naming it would stay
    /// valid after that key's revocation.
    #[serde(default)]
    #[schema(required = true)]
    pub kid: Option<String>,
    /// The token's `cnf.jkt`, when it is bound to one of the agent's registered keys:
    /// that key rotated out past its grace then revokes the token in its list. It
    /// must be the `cnf.jkt` the token carries, and absent only if the token has no
    /// `cnf`: the list follows what is asked here, not the token signed later.
    /// Required when the agent has keys and was not registered with
    /// `allow_bearer_tokens` (its unbound tokens never verify).
    #[serde(default)]
    pub jkt: Option<String>,
    /// The `id` of the consent policy the token carries (`policy.id`), if it carries
    /// one: revoking that policy (`POST /v1/policies/revoke`) then turns this slot
    /// invalid too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128)]
    pub policy_id: Option<String>,
}

/// The slot: put `status` into the token's claims as it is.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatusAllocated {
    /// `{"status_list": {"idx": …, "uri": …}}`.
    #[schema(value_type = Object)]
    pub status: StatusClaim,
}

/// Allocates a status-list slot for a token the issuer signs itself, so receivers
/// verifying offline see its revocation. The same `jti` again returns its slot (for
/// the same agent; another agent's is a 409).
#[utoipa::path(post, path = "/v1/status-lists/allocations", tag = "issuer",
    request_body = AllocateStatus, security(("api_key" = [])),
    responses((status = 201, body = StatusAllocated), (status = 401), (status = 404),
        (status = 409, description = "the agent is revoked or suspended, or the jti is another token's"),
        (status = 422, description = "a bad `jti`, `expires_at` or `policy_id`, no `kid` or one that is not a live key of the issuer, a `jkt` that is no usable key of the agent, or none for an agent whose tokens must be bound (`INVALID_REQUEST`)"),
        (status = 429, description = "the issuer's allocation limit (`allocations`, default 1000/min) is reached (`RATE_LIMITED`, with `Retry-After` and the `RateLimit` fields)")))]
pub async fn allocate(
    State(state): State<Arc<AppState>>,
    IssuerAuth(issuer): IssuerAuth,
    ApiJson(body): ApiJson<AllocateStatus>,
) -> Result<(StatusCode, ApiJson<StatusAllocated>), ApiError> {
    // Every ask counts, answered or refused: asking is what fills the shared lists.
    crate::ratelimit::charge_allocation(&state, issuer.id.as_str()).await?;
    let jti = TokenId::try_from(body.jti.as_str())
        .map_err(|_| ApiError::invalid("`jti` is not a token id (`tok_…`)"))?;
    let agent = crate::routes::agents::own_agent(&state, &issuer, &body.agent_id).await?;
    match agent.status {
        bonafide_store::AgentStatus::Revoked => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::AgentRevoked,
                "agent is revoked; its tokens can never verify",
            ));
        }
        bonafide_store::AgentStatus::Suspended => {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::AgentSuspended,
                "agent is suspended; reactivate it first",
            ));
        }
        bonafide_store::AgentStatus::Active => {}
    }
    let now_s = state.now_ms() / 1000;
    if body.expires_at <= now_s || body.expires_at > now_s + state.config.max_token_ttl_s {
        return Err(ApiError::invalid(format!(
            "`expires_at` must be in the future and at most {} s from now",
            state.config.max_token_ttl_s
        )));
    }
    if let Some(policy_id) = &body.policy_id {
        bonafide_core::policy::check_id(policy_id).map_err(|e| {
            ApiError::invalid(format!("`policy_id` is not a policy id: {}", e.message()))
        })?;
    }
    // Revocations and verify name an issuer-signed token by its (issuer, jti) id:
    // two issuers' equal `jti`s are two tokens.
    let scoped = bonafide_core::token::issuer_token_id(&issuer.id, jti.as_str());
    // A consent token revoked under the id consent tokens had before (which verify
    // still refuses, `verdict::standing`) is revoked in its list too: that id stands
    // beside the token's own as one whose revocation is the token's.
    let legacy = bonafide_core::consent::legacy_token_id(&issuer.id, jti.as_str());
    let now_ms = state.now_ms();
    // Checked before anything is read for it, and required (not optional as it once
    // was): a slot without it never followed the signing key's revocation.
    let Some(kid) = body.kid.as_deref() else {
        return Err(ApiError::invalid(
            "`kid` is required: give the kid (RFC 7638 thumbprint) of your issuer key that signs the token, so that revoking that key revokes the token in its list",
        ));
    };
    {
        let snapshot = state.snapshot();
        let live = snapshot.issuer_keys.get(kid).is_some_and(|k| {
            k.issuer_id == issuer.id
                && bonafide_core::keys::KeyValidity::issuer_key(k.revoked_at_ms).usable(now_ms)
        });
        if !live {
            return Err(ApiError::invalid(
                "`kid` names no live key of yours: give the kid (RFC 7638 thumbprint) of the issuer key that signs the token",
            ));
        }
    }
    if body.jkt.is_none() && crate::token_check::agent_refuses_bearer(&state, &agent.id).await? {
        // Verify refuses this agent's unbound tokens (`BINDING_REQUIRED`); a slot
        // naming no key would also stay valid after the key's rotation, for receivers
        // checking only the list offline.
        return Err(ApiError::invalid(
            "`jkt` is required: this agent has keys of its own and does not allow bearer tokens, so its tokens must be bound to one of them (`cnf.jkt`); give that key's thumbprint",
        ));
    }
    if let Some(jkt) = &body.jkt {
        let keys = state.agent_keys(&agent.id).await?;
        crate::state::bound_key(&keys, jkt, now_ms).map_err(|_| {
            ApiError::invalid(
                "`jkt` names no usable key of this agent: give the thumbprint of the agent key the token is bound to (`cnf.jkt`)",
            )
        })?;
    }
    let keys = vec![AncestorKey {
        agent: agent.id.clone(),
        issuer_kid: Some(kid.to_owned()),
        jkt: body.jkt.clone(),
        policy_revocation: None,
    }];
    let entry = entry_of(
        &scoped,
        &agent.id,
        &issuer.id,
        body.expires_at,
        DependsOn {
            ancestor_jtis: vec![legacy],
            policy_id: body.policy_id.as_deref(),
            keys,
            ..DependsOn::default()
        },
    );
    let status = state.status_lists.allocate(&state, &entry).await?;
    Ok((StatusCode::CREATED, ApiJson(StatusAllocated { status })))
}
