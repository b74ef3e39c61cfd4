//! The audit log at run time: group-committed appends and signed checkpoints.
//!
//! Appends. Verify decisions are queued to one committer task, which takes everything
//! queued while the previous commit was in flight and appends it in one durable
//! transaction (`synchronous=FULL`): one fsync per batch, not per entry. A caller gets
//! its index only after that commit, so every `audit_index` a client ever saw is on
//! disk. State changes append their entry inside their own transaction instead (the
//! store does it), so a change never lands without its entry.
//!
//! Checkpoints. A background task signs a C2SP checkpoint whenever the log has grown,
//! every [`crate::Config::checkpoint_interval`]. Before signing it checks that the new
//! tree is consistent with the last checkpoint signed (a consistency proof over the
//! stored hashes): if the store was edited or rolled back behind the server's back, it
//! refuses to sign and says so in the log, so the registry never signs two
//! inconsistent checkpoints.
//!
//! One signer. Replicas sharing a database take turns through the store
//! (`Store::checkpoint_leader`: PostgreSQL's advisory lock on a dedicated session,
//! always this process on SQLite), asked before every signing; a leader that dies
//! frees the lock with its session and another replica takes it at its next tick.
//! The signer first adopts the latest checkpoint stored (by whichever replica signed
//! it: the log key is the store's, shared), so each checkpoint extends the last one
//! signed by anyone. Followers serve the stored checkpoints and prove against them,
//! waiting briefly for the leader when asked for one that does not cover an index yet.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bonafide_core::audit::{AuditEntry, AuditError};
use bonafide_core::ids::{AgentId, IssuerId};
use bonafide_core::merkle::{self, Hash, Prefetched};
use bonafide_core::note::{self, Checkpoint, NoteSigner, NoteVerifier};
use bonafide_core::sealed::Kek;
use bonafide_store::{
    AuditRecord, CheckpointRecord, Decided, DecisionItem, DecisionOutcome, LogKeyRecord,
    NonceClaim, PrivateKeySlot, QuotaClaim, QuotaGrant, Store, StoreError,
};
use tokio::sync::{mpsc, oneshot};

use crate::audit_archive::{ArchiveError, AuditArchive};
use crate::time::now_ms;

/// Most entries in one group commit.
const MAX_BATCH: usize = 4096;
/// Appends waiting for the committer before callers wait to queue (backpressure).
const QUEUE: usize = 16_384;
/// Longest a follower waits for the leader to sign a checkpoint covering an index
/// (the leader signs every `checkpoint_interval` while the log grows).
const FOLLOW_WAIT: Duration = Duration::from_secs(3);
/// How often a waiting follower reads the stored checkpoint again.
const FOLLOW_POLL: Duration = Duration::from_millis(100);

/// Why the log could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum AuditLogError {
    /// The store failed.
    #[error("audit store: {0}")]
    Store(#[from] StoreError),
    /// The committer is gone (the server is shutting down).
    #[error("the audit log is shutting down")]
    Closed,
    /// The entry could not be encoded.
    #[error("{0}")]
    Entry(#[from] AuditError),
    /// Merkle math on stored hashes failed: the store is inconsistent.
    #[error("audit log hashes: {0}")]
    Hashes(#[from] merkle::LogError),
    /// The stored tree is not an extension of the last signed checkpoint.
    #[error("audit log no longer extends checkpoint {size}: {reason}; refusing to sign")]
    Inconsistent {
        /// Size of the last signed checkpoint.
        size: u64,
        /// What was found.
        reason: String,
    },
    /// Signing the checkpoint failed.
    #[error("checkpoint signing: {0}")]
    Note(#[from] note::NoteError),
    /// A pruned record (or a hash below its tile's root) could not be read from the
    /// log's export.
    #[error("{0}")]
    Archive(#[from] ArchiveError),
    /// Another replica signs checkpoints and has not signed one covering what was
    /// asked yet (or none leads: the database is away).
    #[error("no checkpoint covering {size} records signed yet: another replica signs them")]
    NotSigned {
        /// The size asked for.
        size: u64,
    },
}

/// A signed checkpoint as served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    /// Tree size.
    pub size: u64,
    /// Root hash.
    pub root: Hash,
    /// The signed note text.
    pub note: String,
}

/// What became of an appended verification ([`AuditLog::append_counted`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    /// Durable at `index`; what its quota granted.
    At {
        /// Its audit index.
        index: u64,
        /// Its quota's grant, when it counts against one.
        quota: Option<QuotaGrant>,
    },
    /// Its single-use value was used before: nothing was written.
    NonceReplayed,
    /// Its month's quota is used up: nothing was written.
    QuotaExceeded {
        /// The month's count.
        used: u64,
    },
}

struct Pending {
    item: DecisionItem,
    done: oneshot::Sender<Result<DecisionOutcome, AuditLogError>>,
}

/// Stored hashes at this level and above (roots of complete subtrees of 32 records or
/// more: 1/16 of the stored hashes, 2 MB of hashes per million records) are kept in
/// memory once read: a proof in a large log then reads only the levels below from the
/// store (about 6 records instead of about 20 in a log of a million). Level 8 (1/128,
/// 9 records) left the p99 over 200 µs (bench/RESULTS.md §11.4). Stored hashes never
/// change once written, so a kept one is never stale.
pub const UPPER_LEVEL: u8 = 5;
/// Most upper hashes kept: 2^21 × 32 bytes (plus the map's overhead, about 110 MB in
/// all) covers every upper hash of a log of 2^25 records; past that, proofs read the
/// rest from the store as before.
const MAX_UPPER_HASHES: usize = 1 << 21;

/// The upper levels of the tree, as read ([`UPPER_LEVEL`]).
#[derive(Debug, Default)]
struct UpperHashes {
    hashes: std::sync::RwLock<std::collections::HashMap<u64, Hash>>,
}

impl UpperHashes {
    fn is_upper(index: u64) -> bool {
        merkle::split_stored_hash_index(index).0 >= UPPER_LEVEL
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, std::collections::HashMap<u64, Hash>> {
        // A map of immutable values: a panic elsewhere cannot leave it torn.
        self.hashes
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn keep(&self, read: impl Iterator<Item = (u64, Hash)>) {
        let mut hashes = self
            .hashes
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for (index, hash) in read {
            if hashes.len() >= MAX_UPPER_HASHES {
                return;
            }
            hashes.insert(index, hash);
        }
    }

    fn len(&self) -> usize {
        self.read().len()
    }
}

/// The running audit log. Cheap to share behind an `Arc`.
pub struct AuditLog {
    store: Arc<dyn Store>,
    /// What proofs and tiles read (never the checkpoint checks, which read the store).
    upper: UpperHashes,
    commit_metrics: CommitMetrics,
    /// When `latest` last changed (signed here or adopted), Unix ms.
    latest_at_ms: std::sync::atomic::AtomicI64,
    queue: mpsc::Sender<Pending>,
    signer: NoteSigner,
    origin: String,
    latest: ArcSwap<SignedCheckpoint>,
    /// One signer at a time: checkpoints are signed in increasing size.
    sign_lock: tokio::sync::Mutex<()>,
    /// Whether this process signed checkpoints at its last tick (a hint for
    /// [`AuditLog::checkpoint_covering`]; signing asks the store again).
    leading: std::sync::atomic::AtomicBool,
    /// Where the pruned records are read from (`serve --audit-archive`).
    archive: std::sync::OnceLock<Arc<AuditArchive>>,
    /// Where the pruned prefix ends, as last read from the store. It only grows; a
    /// read that misses a record reads it again (another replica may have pruned).
    pruned: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("origin", &self.origin)
            .field("latest_size", &self.latest.load().size)
            .finish_non_exhaustive()
    }
}

/// Builds the store record of an entry. `agent` and `issuer` decide who may read it.
pub fn record(
    entry: &AuditEntry,
    agent: Option<&AgentId>,
    issuer: Option<&IssuerId>,
) -> Result<AuditRecord, AuditError> {
    Ok(AuditRecord {
        entry: entry.to_canonical()?,
        agent_id: agent.cloned(),
        issuer_id: issuer.cloned(),
        created_at_ms: entry.time_ms,
        prepared: None,
    })
}

/// The default origin for a registry at `public_url`: its host and path, then `/audit`
/// (C2SP origins are schemeless URLs).
pub fn default_origin(public_url: &str) -> String {
    let rest = public_url
        .split_once("://")
        .map_or(public_url, |(_, rest)| rest)
        .trim_end_matches('/');
    let origin = format!("{rest}/audit");
    if note::is_valid_key_name(&origin) {
        origin
    } else {
        "bonafide/audit".to_owned()
    }
}

impl AuditLog {
    /// Loads (or creates, on first start) the log key, loads the last checkpoint, and
    /// starts the committer. Call [`AuditLog::run_checkpoints`] to start signing.
    /// The log key is stored sealed under `kek` ([`crate::sealing`]).
    pub async fn open(
        store: Arc<dyn Store>,
        origin: &str,
        kek: &Kek,
    ) -> Result<Arc<Self>, AuditLogError> {
        let fresh = NoteSigner::generate(origin)?;
        let slot = PrivateKeySlot::AuditLogKey;
        let candidate = LogKeyRecord {
            origin: origin.to_owned(),
            signer_key: crate::sealing::seal(
                kek,
                &slot,
                fresh.signer_key_string()?.expose_secret(),
            )?,
            created_at_ms: now_ms(),
        };
        let stored = store.audit_log_key(&candidate).await?;
        let signer_key = crate::sealing::open(kek, &slot, &stored.signer_key)?;
        let signer = NoteSigner::from_signer_key_string(signer_key.expose_secret())?;
        if stored.origin != origin {
            tracing::debug!(
                stored = %stored.origin,
                asked = %origin,
                "the audit log keeps the origin it was created with"
            );
        }
        let origin = stored.origin;
        let latest = match store.audit_latest_checkpoint().await? {
            Some(cp) => opened_checkpoint(cp, &origin, &signer)?,
            None => SignedCheckpoint {
                size: 0,
                root: merkle::empty_tree_hash(),
                note: String::new(),
            },
        };
        let pruned = store.audit_pruned().await?;
        let (queue, rx) = mpsc::channel(QUEUE);
        let log = Arc::new(AuditLog {
            store: Arc::clone(&store),
            upper: UpperHashes::default(),
            commit_metrics: CommitMetrics::default(),
            latest_at_ms: std::sync::atomic::AtomicI64::new(now_ms()),
            queue,
            signer,
            origin,
            latest: ArcSwap::from_pointee(latest),
            sign_lock: tokio::sync::Mutex::new(()),
            leading: std::sync::atomic::AtomicBool::new(false),
            archive: std::sync::OnceLock::new(),
            pruned: std::sync::atomic::AtomicU64::new(pruned),
        });
        tokio::spawn(commit_loop(store, rx, log.commit_metrics.clone()));
        Ok(log)
    }

    /// The checkpoint origin (also the key name).
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The verifier key string (`<name>+<hex id>+<base64>`) for the discovery document.
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key_string()
    }

    /// The verifier.
    pub fn verifier(&self) -> &NoteVerifier {
        self.signer.verifier()
    }

    /// Appends one entry through the group committer; the index once it is durable.
    pub async fn append(&self, record: AuditRecord) -> Result<u64, AuditLogError> {
        self.append_claiming(record, None).await?.ok_or_else(|| {
            AuditLogError::Store(StoreError::Backend(
                "an audit append that claims no nonce was refused as a replay".into(),
            ))
        })
    }

    /// Appends one entry and claims `nonce` in the same transaction: `None` if the
    /// nonce was already used (then nothing was written), else the entry's index once
    /// durable.
    pub async fn append_claiming(
        &self,
        record: AuditRecord,
        nonce: Option<NonceClaim>,
    ) -> Result<Option<u64>, AuditLogError> {
        match self.append_counted(record, nonce, None).await? {
            Appended::At { index, .. } => Ok(Some(index)),
            Appended::NonceReplayed => Ok(None),
            Appended::QuotaExceeded { .. } => Err(AuditLogError::Store(StoreError::Backend(
                "an audit append that counts no quota was refused for its quota".into(),
            ))),
        }
    }

    /// Appends one verification's entry, claiming `nonce` and counting it against
    /// `quota` in the same transaction (see [`DecisionItem::quota`]).
    pub async fn append_counted(
        &self,
        record: AuditRecord,
        nonce: Option<NonceClaim>,
        quota: Option<QuotaClaim>,
    ) -> Result<Appended, AuditLogError> {
        match self.decide(appending(record, nonce, quota)).await? {
            DecisionOutcome::Recorded {
                audit_index: Some(index),
                quota,
                ..
            } => Ok(Appended::At { index, quota }),
            DecisionOutcome::NonceReplayed => Ok(Appended::NonceReplayed),
            DecisionOutcome::QuotaExceeded { used } => Ok(Appended::QuotaExceeded { used }),
            other => Err(AuditLogError::Store(StoreError::Backend(format!(
                "an audit append was recorded as {other:?}"
            )))),
        }
    }

    /// Records one verify decision (budget charge, idempotency record, receipt and
    /// audit entry together) through the group committer; the outcome once durable.
    pub async fn decide(&self, item: DecisionItem) -> Result<DecisionOutcome, AuditLogError> {
        let (done, wait) = oneshot::channel();
        self.queue
            .send(Pending { item, done })
            .await
            .map_err(|_| AuditLogError::Closed)?;
        wait.await.map_err(|_| AuditLogError::Closed)?
    }

    /// The latest signed checkpoint (size 0 with an empty note before the first).
    pub fn latest(&self) -> Arc<SignedCheckpoint> {
        self.latest.load_full()
    }

    /// A checkpoint covering at least `min_size` records, signing one now if needed.
    /// On a follower (another replica signs), the latest stored one, waiting up to
    /// [`FOLLOW_WAIT`] for the leader to sign one that covers `min_size`.
    pub async fn checkpoint_covering(
        &self,
        min_size: u64,
    ) -> Result<Arc<SignedCheckpoint>, AuditLogError> {
        let covers = |cp: &SignedCheckpoint| cp.size >= min_size && !cp.note.is_empty();
        let latest = self.latest();
        if covers(&latest) {
            return Ok(latest);
        }
        if self.leading.load(std::sync::atomic::Ordering::Relaxed) {
            match self.checkpoint_now().await {
                Err(AuditLogError::NotSigned { .. }) => {} // led no more: follow
                other => return other,
            }
        }
        let deadline = tokio::time::Instant::now() + FOLLOW_WAIT;
        loop {
            let latest = self.adopt_stored().await?;
            if covers(&latest) {
                return Ok(latest);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(AuditLogError::NotSigned { size: min_size });
            }
            tokio::time::sleep(FOLLOW_POLL).await;
        }
    }

    /// The latest checkpoint stored, if larger than the one held (signed by another
    /// replica, or by this one before): checked against the log key and kept.
    async fn adopt_stored(&self) -> Result<Arc<SignedCheckpoint>, AuditLogError> {
        let held = self.latest();
        match self.store.audit_latest_checkpoint().await? {
            Some(cp) if cp.size > held.size || (held.note.is_empty() && cp.size == held.size) => {
                let next = Arc::new(opened_checkpoint(cp, &self.origin, &self.signer)?);
                // Never replaces a newer one signed here meanwhile.
                let prev = self.latest.compare_and_swap(&held, Arc::clone(&next));
                Ok(if Arc::ptr_eq(&prev, &held) {
                    self.latest_at_ms
                        .store(now_ms(), std::sync::atomic::Ordering::Relaxed);
                    next
                } else {
                    self.latest()
                })
            }
            _ => Ok(held),
        }
    }

    /// Signs a checkpoint of the whole stored log if it grew (or none exists yet), after
    /// checking it extends the last one. Returns the latest checkpoint.
    /// `NotSigned` if another replica is the signer.
    pub async fn checkpoint_now(&self) -> Result<Arc<SignedCheckpoint>, AuditLogError> {
        let _one_signer = self.sign_lock.lock().await;
        if !self.store.checkpoint_leader().await? {
            self.leading
                .store(false, std::sync::atomic::Ordering::Relaxed);
            return Err(AuditLogError::NotSigned { size: 0 });
        }
        // What the previous leader signed last: the next checkpoint extends it.
        let last = self.adopt_stored().await?;
        let size = self.store.audit_size().await?;
        if size == last.size && !last.note.is_empty() {
            return Ok(last);
        }
        if size < last.size {
            return Err(AuditLogError::Inconsistent {
                size: last.size,
                reason: format!("the store holds only {size} records (rolled back?)"),
            });
        }
        let root = self.root(size).await?;
        if last.size > 0 {
            let idx = merkle::consistency_proof_indexes(size, last.size);
            let hashes = self.store.audit_hashes(&idx).await?;
            let proof = merkle::prove_tree(size, last.size, &Prefetched::new(idx, hashes)?)?;
            merkle::check_tree(&proof, size, &root, last.size, &last.root).map_err(|e| {
                AuditLogError::Inconsistent {
                    size: last.size,
                    reason: e.to_string(),
                }
            })?;
        }
        let checkpoint = Checkpoint {
            origin: self.origin.clone(),
            size,
            root,
            extensions: Vec::new(),
        };
        let signed = note::sign_checkpoint(&checkpoint, &[&self.signer])?;
        // Stored before it is served: a checkpoint anyone saw survives a crash.
        self.store
            .audit_add_checkpoint(&CheckpointRecord {
                size,
                root,
                note: signed.clone(),
                created_at_ms: now_ms(),
            })
            .await?;
        let next = Arc::new(SignedCheckpoint {
            size,
            root,
            note: signed,
        });
        self.latest.store(Arc::clone(&next));
        self.latest_at_ms
            .store(now_ms(), std::sync::atomic::Ordering::Relaxed);
        Ok(next)
    }

    /// Sets where pruned records are read from (once; later calls change nothing).
    pub fn set_archive(&self, archive: Arc<AuditArchive>) {
        let _first = self.archive.set(archive);
    }

    /// Where pruned records are read from, if configured.
    pub fn archive(&self) -> Option<&Arc<AuditArchive>> {
        self.archive.get()
    }

    /// Where the pruned prefix ends, read from the store now.
    pub async fn refresh_pruned(&self) -> Result<u64, StoreError> {
        let read = self.store.audit_pruned().await?;
        let before = self
            .pruned
            .fetch_max(read, std::sync::atomic::Ordering::Relaxed);
        Ok(before.max(read))
    }

    /// The hashes at `indexes`, in order, for proofs and tiles: those the store keeps
    /// ([`AuditLog::kept_hashes`]), and those below level 8 in a pruned tile
    /// recomputed from the archive's copy of the tile, checked against the tile root
    /// the store kept. `Store(NotFound)` if one is beyond the log.
    pub async fn hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, AuditLogError> {
        let pruned = self.pruned.load(std::sync::atomic::Ordering::Relaxed);
        match self.hashes_below(indexes, pruned).await {
            Err(AuditLogError::Store(StoreError::NotFound)) => {
                // Pruned meanwhile (by another replica, or a prune here)?
                let now = self.refresh_pruned().await?;
                if now > pruned {
                    self.hashes_below(indexes, now).await
                } else {
                    Err(AuditLogError::Store(StoreError::NotFound))
                }
            }
            other => other,
        }
    }

    /// Where a hash lives if the store no longer has it: its level, position and
    /// pruned tile; `None` if the store keeps it.
    fn archived(index: u64, pruned: u64) -> Option<(u8, u64, u64)> {
        let (level, k) = merkle::split_stored_hash_index(index);
        if level >= bonafide_store::PRUNE_TILE_LEVEL {
            return None;
        }
        let last_leaf = k
            .checked_add(1)?
            .checked_shl(u32::from(level))?
            .checked_sub(1)?;
        let tile = u64::from(merkle::TILE_WIDTH);
        (last_leaf < pruned && last_leaf % tile != tile - 1).then_some((level, k, last_leaf / tile))
    }

    async fn hashes_below(&self, indexes: &[u64], pruned: u64) -> Result<Vec<Hash>, AuditLogError> {
        let mut tiles: std::collections::BTreeMap<u64, Vec<(usize, u8, u64)>> =
            std::collections::BTreeMap::new();
        let mut kept = Vec::with_capacity(indexes.len());
        let mut kept_at = Vec::with_capacity(indexes.len());
        for (at, &index) in indexes.iter().enumerate() {
            match Self::archived(index, pruned) {
                Some((level, k, n)) => tiles.entry(n).or_default().push((at, level, k)),
                None => {
                    kept.push(index);
                    kept_at.push(at);
                }
            }
        }
        if tiles.is_empty() {
            return Ok(self.kept_hashes(indexes).await?);
        }
        // The tile roots, read with the rest.
        let roots: Vec<u64> = tiles
            .keys()
            .map(|n| merkle::stored_hash_index(bonafide_store::PRUNE_TILE_LEVEL, *n))
            .collect();
        let asked = kept.len();
        kept.extend_from_slice(&roots);
        let read = self.kept_hashes(&kept).await?;
        let mut found: Vec<Option<Hash>> = vec![None; indexes.len()];
        for (at, hash) in kept_at.iter().zip(&read) {
            found[*at] = Some(*hash);
        }
        let archive = self
            .archive
            .get()
            .ok_or(ArchiveError::NotConfigured { pruned })?;
        for ((n, wanted), root) in tiles.iter().zip(read.get(asked..).unwrap_or_default()) {
            let tile = archive.tile(*n, root).await?;
            for (at, level, k) in wanted {
                found[*at] = tile.hash(*level, *k);
            }
        }
        found
            .into_iter()
            .map(|h| {
                h.ok_or_else(|| {
                    AuditLogError::Store(StoreError::Backend("audit hash missing".into()))
                })
            })
            .collect()
    }

    /// Records `[start, end)` (`end` within the log, at most 10,000 records): the
    /// store's, and those of pruned tiles from the archive (checked against their tile
    /// roots). A pruned record's readers come from its entry: the issuer it names,
    /// else its agent's issuer (what the store resolved for it before).
    pub async fn entries(
        &self,
        start: u64,
        end: u64,
    ) -> Result<Vec<bonafide_store::AuditRow>, AuditLogError> {
        self.entries_read_by(start, end, true).await
    }

    /// [`AuditLog::entries`], with the readers of pruned records found only if
    /// `owners` (a caller who reads every entry, or none, needs no owner: finding
    /// them reads the store once per agent).
    pub async fn entries_read_by(
        &self,
        start: u64,
        end: u64,
        owners: bool,
    ) -> Result<Vec<bonafide_store::AuditRow>, AuditLogError> {
        let rows = self.store.audit_entries(start, end).await?;
        let complete = rows.first().is_some_and(|r| r.index == start)
            && rows.len() as u64 == end.saturating_sub(start);
        if complete || start >= end {
            return Ok(rows);
        }
        let pruned = self.refresh_pruned().await?;
        let upto = pruned.min(end);
        if start >= upto {
            return Ok(rows);
        }
        let archive = self
            .archive
            .get()
            .ok_or(ArchiveError::NotConfigured { pruned })?;
        let width = u64::from(merkle::TILE_WIDTH);
        let mut out = Vec::with_capacity(usize::try_from(end - start).unwrap_or(0));
        let find_owners = owners;
        let mut owner_cache: std::collections::HashMap<String, Option<IssuerId>> =
            std::collections::HashMap::new();
        let mut index = start;
        while index < upto {
            let n = index / width;
            let root = self
                .kept_hashes(&[merkle::stored_hash_index(
                    bonafide_store::PRUNE_TILE_LEVEL,
                    n,
                )])
                .await?;
            let root = root
                .first()
                .ok_or_else(|| StoreError::Backend("tile root missing".into()))?;
            let tile = archive.tile(n, root).await?;
            let tile_end = ((n + 1) * width).min(upto);
            for i in index..tile_end {
                let entry = tile
                    .entry(i)
                    .ok_or_else(|| StoreError::Backend("archived entry missing".into()))?;
                out.push(bonafide_store::AuditRow {
                    index: i,
                    leaf_hash: merkle::leaf_hash(entry),
                    entry: entry.to_vec(),
                    owner: if find_owners {
                        self.owner_of(entry, &mut owner_cache).await?
                    } else {
                        None
                    },
                });
            }
            index = tile_end;
        }
        // Rows read before a prune that ran meanwhile are in `out` already.
        out.extend(rows.into_iter().filter(|r| r.index >= upto));
        Ok(out)
    }

    /// The index of the first record with this leaf hash: a pruned one (found by its
    /// prefix in the leaf index, its full hash checked in the archive's tile) or one
    /// the store keeps.
    pub async fn find(&self, leaf_hash: &Hash) -> Result<Option<u64>, AuditLogError> {
        let mut pruned = None;
        for candidate in self.store.audit_find_pruned(leaf_hash).await? {
            let rows = self
                .entries_read_by(candidate, candidate.saturating_add(1), false)
                .await?;
            if rows
                .first()
                .is_some_and(|r| r.index == candidate && r.leaf_hash == *leaf_hash)
            {
                pruned = Some(candidate);
                break;
            }
        }
        let kept = self.store.audit_find(leaf_hash).await?;
        Ok(match (pruned, kept) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Who may read a pruned entry besides admins, from the entry itself.
    async fn owner_of(
        &self,
        entry: &[u8],
        agents: &mut std::collections::HashMap<String, Option<IssuerId>>,
    ) -> Result<Option<IssuerId>, StoreError> {
        let Ok(parsed) = AuditEntry::from_canonical(entry) else {
            return Ok(None);
        };
        if let Some(issuer) = parsed.issuer.as_deref() {
            return Ok(IssuerId::try_from(issuer).ok());
        }
        let Some(agent) = parsed.agent else {
            return Ok(None);
        };
        if let Some(known) = agents.get(&agent) {
            return Ok(known.clone());
        }
        let owner = match AgentId::try_from(agent.as_str()) {
            Ok(id) => self.store.agent(&id).await?.map(|a| a.issuer_id),
            Err(_) => None,
        };
        agents.insert(agent, owner.clone());
        Ok(owner)
    }

    /// The hashes the store keeps at `indexes`, in order: the upper levels of the tree
    /// from memory once read ([`UPPER_LEVEL`]), the rest in one store read.
    /// `NotFound` if one is not stored (beyond the log, or pruned).
    pub async fn kept_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, StoreError> {
        let mut found: Vec<Option<Hash>> = {
            let upper = self.upper.read();
            indexes.iter().map(|i| upper.get(i).copied()).collect()
        };
        let missing: Vec<u64> = indexes
            .iter()
            .zip(&found)
            .filter(|(_, h)| h.is_none())
            .map(|(i, _)| *i)
            .collect();
        if !missing.is_empty() {
            let read = self.store.audit_hashes(&missing).await?;
            if read.len() != missing.len() {
                return Err(StoreError::Backend(format!(
                    "asked {} audit hashes, got {}",
                    missing.len(),
                    read.len()
                )));
            }
            self.upper.keep(
                missing
                    .iter()
                    .zip(&read)
                    .filter(|(i, _)| UpperHashes::is_upper(**i))
                    .map(|(i, h)| (*i, *h)),
            );
            let mut read = read.into_iter();
            for slot in found.iter_mut().filter(|h| h.is_none()) {
                *slot = read.next();
            }
        }
        found
            .into_iter()
            .map(|h| h.ok_or_else(|| StoreError::Backend("audit hash missing".into())))
            .collect()
    }

    /// Reads every upper hash of the first `size` records into memory (up to
    /// [`MAX_UPPER_HASHES`]), a batch per store read, so that the first proofs after
    /// a start read as few records as later ones. Proofs work without it.
    pub async fn warm_upper_hashes(&self, size: u64) -> Result<(), StoreError> {
        const BATCH: usize = 1024;
        let mut batch = Vec::with_capacity(BATCH);
        let mut level = UPPER_LEVEL;
        // Another replica may have pruned since this one started.
        let pruned = self.refresh_pruned().await?;
        while u32::from(level) < u64::BITS && (size >> level) > 0 {
            for n in 0..(size >> level) {
                if self.upper.len() + batch.len() >= MAX_UPPER_HASHES {
                    break;
                }
                let index = merkle::stored_hash_index(level, n);
                // Not the archive's: those are read on demand.
                if Self::archived(index, pruned).is_some() {
                    continue;
                }
                batch.push(index);
                if batch.len() == BATCH {
                    self.kept_hashes(&batch).await?;
                    batch.clear();
                }
            }
            level += 1;
        }
        if !batch.is_empty() {
            self.kept_hashes(&batch).await?;
        }
        Ok(())
    }

    /// The committer's histograms, for the metrics registry.
    pub fn commit_metrics(&self) -> CommitMetrics {
        self.commit_metrics.clone()
    }

    /// When the latest checkpoint known here was signed here or adopted (or the log
    /// opened), Unix ms.
    pub fn latest_at_ms(&self) -> i64 {
        self.latest_at_ms.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// How many upper hashes are held in memory (for metrics and benchmarks).
    pub fn upper_hashes_held(&self) -> usize {
        self.upper.len()
    }

    /// The root hash of the first `size` stored records.
    pub async fn root(&self, size: u64) -> Result<Hash, AuditLogError> {
        let idx = merkle::tree_hash_indexes(size);
        let hashes = self.store.audit_hashes(&idx).await?;
        Ok(merkle::tree_hash(size, &Prefetched::new(idx, hashes)?)?)
    }

    /// Whether this process signed checkpoints at its last tick.
    pub fn leading(&self) -> bool {
        self.leading.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every `interval` until the log is dropped: asks the store whether this process
    /// leads (taking over from a leader that died); the leader signs a checkpoint if
    /// the log grew, a follower adopts the latest one stored.
    pub fn run_checkpoints(self: &Arc<Self>, interval: Duration) -> tokio::task::JoinHandle<()> {
        use std::sync::atomic::Ordering;
        let weak = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut complained = false;
            loop {
                tick.tick().await;
                let Some(log) = weak.upgrade() else { return };
                let leads = match log.store.checkpoint_leader().await {
                    Ok(leads) => leads,
                    Err(e) => {
                        if !complained {
                            tracing::warn!(error = %e, "cannot tell whether this replica signs checkpoints");
                            complained = true;
                        }
                        false
                    }
                };
                if log.leading.swap(leads, Ordering::Relaxed) != leads {
                    if leads {
                        tracing::info!(
                            "checkpoint leader: this replica signs the audit log's checkpoints"
                        );
                    } else {
                        tracing::info!(
                            "checkpoint follower: another replica signs the audit log's checkpoints"
                        );
                    }
                }
                let outcome = if leads {
                    log.checkpoint_now().await.map(drop)
                } else {
                    log.adopt_stored().await.map(drop)
                };
                match outcome {
                    Ok(()) => complained = false,
                    Err(AuditLogError::NotSigned { .. }) => {}
                    Err(e) if !complained => {
                        tracing::error!(error = %e, "audit checkpoint not signed");
                        complained = true;
                    }
                    Err(_) => {}
                }
            }
        })
    }
}

/// A stored checkpoint, checked: signed by the log key for `origin`, and its row's
/// size and root those of the signed note (a swapped row is caught, not served).
fn opened_checkpoint(
    cp: CheckpointRecord,
    origin: &str,
    signer: &NoteSigner,
) -> Result<SignedCheckpoint, AuditLogError> {
    let opened = note::open_checkpoint(&cp.note, origin, &[signer.verifier().clone()])?;
    if opened.checkpoint().size != cp.size || opened.checkpoint().root != cp.root {
        return Err(AuditLogError::Inconsistent {
            size: cp.size,
            reason: "the stored checkpoint row does not match its signed note".into(),
        });
    }
    Ok(SignedCheckpoint {
        size: cp.size,
        root: cp.root,
        note: cp.note,
    })
}

/// The group committer: one transaction for everything queued since the last one.
/// The committer's histograms (registered by [`crate::metrics::Metrics::register_audit`]).
#[derive(Debug, Clone)]
pub struct CommitMetrics {
    /// Decisions per group commit.
    pub batch_entries: prometheus_client::metrics::histogram::Histogram,
    /// Seconds per group commit.
    pub commit_seconds: prometheus_client::metrics::histogram::Histogram,
}

impl Default for CommitMetrics {
    fn default() -> Self {
        use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
        CommitMetrics {
            // 1 to 4096 (MAX_BATCH).
            batch_entries: Histogram::new(exponential_buckets(1.0, 2.0, 13)),
            // 50 µs to ~26 s.
            commit_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 20)),
        }
    }
}

async fn commit_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::Receiver<Pending>,
    metrics: CommitMetrics,
) {
    let mut items = Vec::with_capacity(MAX_BATCH);
    let mut waiters = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.recv().await {
        items.push(first.item);
        waiters.push(first.done);
        while items.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => {
                    items.push(p.item);
                    waiters.push(p.done);
                }
                Err(_) => break,
            }
        }
        let count = items.len();
        let started = std::time::Instant::now();
        let result = store
            .record_decisions(std::mem::take(&mut items), crate::time::now_ms())
            .await;
        metrics.batch_entries.observe(count as f64);
        metrics
            .commit_seconds
            .observe(started.elapsed().as_secs_f64());
        match result {
            Ok(outcomes) if outcomes.len() == waiters.len() => {
                // A decision that crossed its month's 80 % had its `quota.warning`
                // entry appended by the store in this same transaction.
                for outcome in &outcomes {
                    if let Ok(DecisionOutcome::Recorded {
                        quota: Some(grant), ..
                    }) = outcome
                        && grant.warn
                    {
                        tracing::info!(used = grant.used, "quota: 80 % reached");
                    }
                }
                for (outcome, done) in outcomes.into_iter().zip(waiters.drain(..)) {
                    // The caller may have gone away; its decision is durable all the same.
                    let _ = done.send(outcome.map_err(AuditLogError::Store));
                }
            }
            Ok(outcomes) => {
                tracing::error!(
                    items = count,
                    outcomes = outcomes.len(),
                    "the store answered a decision batch with the wrong number of outcomes"
                );
                for done in waiters.drain(..) {
                    let _ = done.send(Err(AuditLogError::Store(StoreError::Backend(
                        "decision batch outcome count mismatch".into(),
                    ))));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, items = count, "decision batch failed");
                for done in waiters.drain(..) {
                    let _ = done.send(Err(AuditLogError::Store(e.clone())));
                }
            }
        }
        items = Vec::with_capacity(MAX_BATCH);
    }
}

/// An item that appends `record` alone (claiming `nonce`, counted against `quota`).
fn appending(
    record: AuditRecord,
    nonce: Option<NonceClaim>,
    quota: Option<bonafide_store::QuotaClaim>,
) -> DecisionItem {
    DecisionItem {
        nonce,
        quota,
        budget: None,
        idempotency: None,
        // A clone per run (`decide` may run again if the store retries).
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

#[cfg(test)]
mod tests {
    use super::*;
    use bonafide_store::SqliteStore;

    fn records(n: usize) -> Vec<AuditRecord> {
        (0..n)
            .map(|i| AuditRecord {
                entry: format!("{{\"n\":{i}}}").into_bytes(),
                agent_id: None,
                issuer_id: None,
                created_at_ms: 0,
                prepared: None,
            })
            .collect()
    }

    /// After a prune, every hash and entry reads as before: those below level 8 of
    /// the pruned tiles recomputed from the archive, checked against the tile roots
    /// kept; a pruned record is found by its leaf hash; an archive tile that differs
    /// is refused, one missing is unavailable, and without an archive the pruned
    /// records are `NotConfigured` while the rest still reads.
    #[tokio::test]
    async fn a_pruned_log_reads_as_before_through_its_archive() {
        let dir = tempfile::tempdir().unwrap();
        let archive = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
        let size = 700u64;
        let all = records(700);
        store.audit_append(&all).await.unwrap();
        let every: Vec<u64> = (0..merkle::stored_hash_count(size)).collect();
        let hashes = store.audit_hashes(&every).await.unwrap();
        let entries = store.audit_entries(0, size).await.unwrap();
        for n in 0..2u64 {
            let mut body = Vec::new();
            for r in &all[(n as usize * 256)..(n as usize + 1) * 256] {
                body.extend_from_slice(&(r.entry.len() as u16).to_be_bytes());
                body.extend_from_slice(&r.entry);
            }
            let path = archive.path().join(format!("tile/entries/00{n}"));
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        }
        let log = AuditLog::open(
            Arc::clone(&store) as Arc<dyn Store>,
            "test.example/audit",
            &crate::sealing::ephemeral_kek().unwrap(),
        )
        .await
        .unwrap();
        // Signed and stored: the leaf index covers the log, as a prune needs.
        assert_eq!(log.checkpoint_now().await.unwrap().size, size);
        store.audit_prune(0, 512, None).await.unwrap();
        // Not configured: the pruned records are refused, the others read.
        assert!(matches!(
            log.entries(0, 10).await,
            Err(AuditLogError::Archive(ArchiveError::NotConfigured {
                pruned: 512
            }))
        ));
        assert!(matches!(
            log.hashes(&[merkle::stored_hash_index(0, 3)]).await,
            Err(AuditLogError::Archive(ArchiveError::NotConfigured { .. }))
        ));
        assert_eq!(log.entries(512, 700).await.unwrap(), entries[512..]);
        log.set_archive(Arc::new(
            AuditArchive::open(archive.path().to_str().unwrap()).unwrap(),
        ));
        assert_eq!(log.hashes(&every).await.unwrap(), hashes);
        assert_eq!(log.entries(0, size).await.unwrap(), entries);
        assert_eq!(log.entries(250, 260).await.unwrap(), entries[250..260]);
        for i in [0usize, 255, 300, 511, 600] {
            let leaf = merkle::leaf_hash(&all[i].entry);
            assert_eq!(log.find(&leaf).await.unwrap(), Some(i as u64), "{i}");
        }
        assert_eq!(log.find(&Hash([0; 32])).await.unwrap(), None);

        // A fresh log (nothing cached) over an altered and a missing tile.
        let bundle1 = archive.path().join("tile/entries/001");
        let mut altered = std::fs::read(&bundle1).unwrap();
        altered[5] ^= 1;
        std::fs::write(&bundle1, &altered).unwrap();
        std::fs::remove_file(archive.path().join("tile/entries/000")).unwrap();
        let log = AuditLog::open(
            Arc::clone(&store) as Arc<dyn Store>,
            "test.example/audit",
            &crate::sealing::ephemeral_kek().unwrap(),
        )
        .await
        .unwrap();
        log.set_archive(Arc::new(
            AuditArchive::open(archive.path().to_str().unwrap()).unwrap(),
        ));
        assert!(matches!(
            log.entries(256, 260).await,
            Err(AuditLogError::Archive(ArchiveError::Mismatch { .. }))
        ));
        assert!(matches!(
            log.hashes(&[merkle::stored_hash_index(1, 130)]).await,
            Err(AuditLogError::Archive(ArchiveError::Mismatch { .. }))
        ));
        assert!(matches!(
            log.entries(0, 1).await,
            Err(AuditLogError::Archive(ArchiveError::Unavailable(_)))
        ));
        // What the store keeps needs no archive: a tile root, the kept last record.
        assert_eq!(
            log.hashes(&[
                merkle::stored_hash_index(8, 1),
                merkle::stored_hash_index(0, 511)
            ])
            .await
            .unwrap(),
            vec![
                hashes[merkle::stored_hash_index(8, 1) as usize],
                hashes[merkle::stored_hash_index(0, 511) as usize]
            ]
        );
    }

    /// Served hashes are the store's, cold or with the upper levels in memory; the
    /// upper levels are all that is kept; a hash beyond the log is `NotFound` and is
    /// not kept.
    #[tokio::test]
    async fn served_hashes_are_the_stores_with_the_upper_levels_kept() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(dir.path()).await.unwrap());
        let size = 2000u64;
        store.audit_append(&records(2000)).await.unwrap();
        let log = AuditLog::open(
            Arc::clone(&store) as Arc<dyn Store>,
            "test.example/audit",
            &crate::sealing::ephemeral_kek().unwrap(),
        )
        .await
        .unwrap();
        let asks: Vec<Vec<u64>> = [
            (2000, 0),
            (2000, 1999),
            (1500, 700),
            (257, 256),
            (2000, 1024),
        ]
        .iter()
        .map(|&(tree, index)| {
            let mut idx = merkle::inclusion_proof_indexes(tree, index);
            idx.push(merkle::stored_hash_index(0, index));
            idx
        })
        .chain([merkle::consistency_proof_indexes(2000, 300)])
        .collect();
        // Every node at UPPER_LEVEL and above in a tree of 2,000 records.
        let upper: usize = (UPPER_LEVEL..11).map(|l| 2000usize >> l).sum();
        for round in ["cold", "some kept", "all kept"] {
            if round == "all kept" {
                log.warm_upper_hashes(size).await.unwrap();
                assert_eq!(log.upper_hashes_held(), upper);
            }
            for idx in &asks {
                assert_eq!(
                    log.hashes(idx).await.unwrap(),
                    store.audit_hashes(idx).await.unwrap(),
                    "{round}: {idx:?}"
                );
            }
            if round == "cold" {
                assert!(log.upper_hashes_held() > 0, "upper hashes read are kept");
            }
            let held = log.upper_hashes_held();
            assert!(held <= upper, "only upper levels are kept: {held}");
        }
        // The next level-8 node does not exist yet (2048 records would complete it).
        let beyond = merkle::stored_hash_index(8, 7);
        assert!(matches!(
            log.hashes(&[merkle::stored_hash_index(8, 0), beyond]).await,
            Err(AuditLogError::Store(StoreError::NotFound))
        ));
        assert_eq!(log.upper_hashes_held(), upper);
        // Once the log grows past it, it is served (and then kept).
        store.audit_append(&records(48)).await.unwrap();
        assert_eq!(
            log.hashes(&[beyond]).await.unwrap(),
            store.audit_hashes(&[beyond]).await.unwrap()
        );
        assert_eq!(log.upper_hashes_held(), upper + 1);
    }
}
