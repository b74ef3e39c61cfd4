//! The audit log's storage layout, written once for every backend, over a narrow
//! transaction trait ([`LogRead`], [`LogTx`]) that a backend implements with its SQL.
//!
//! Layout: one row per record, in append order. Record `i` stores its leaf hash and
//! the interior hashes it completed (its run of stored hashes, lowest level first;
//! `core::merkle::stored_hashes`), so any stored hash is found by
//! [`locate_hash`] in one known row, a proof's hashes are one read of a few rows by
//! primary key ([`read_hashes`]), and an append reads only the tree's frontier.
//!
//! Every write goes through one call: [`lock`] takes the log head as the
//! transaction's first lock, [`Head::append`] appends the write's audit records and
//! its [`Change`]s (the change feed, [`changes_since`]). The head is the serialization
//! point of all writes; on a backend with several writers it is a lock held to commit,
//! so audit indexes and change positions are handed out in commit order: a reader
//! that has seen position N never later finds a change below N it had not seen.
//!
//! Lock order, for every backend and every write: the log head first
//! ([`LogRead::log_head`] inside a write transaction, taken by [`lock`]), then budget
//! rows (`ledger`), then the rows the write changes.

use std::collections::HashMap;

use async_trait::async_trait;
use bonafide_core::merkle::{self, Frontier, Hash};

use bonafide_core::b64;

use crate::{AuditRecord, Change, ChangeFeed, ChangePosition, StoreError};

/// Most changes one [`changes_since`] answer holds, whatever the caller asks.
pub const MAX_CHANGES: u32 = 10_000;

/// A [`Change`] as a backend stores it: a kind, the id it concerns and, for a token,
/// its expiry. One encoding for every backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChangeRow {
    /// What changed (`agent_revoked`, `token_revoked`, …).
    pub kind: String,
    /// The agent, token, issuer or receiver id, or the API key hash (base64url).
    pub subject: Option<String>,
    /// A revoked token's `exp`, Unix seconds (only for tokens).
    pub expires_at_s: Option<i64>,
}

impl From<&Change> for ChangeRow {
    fn from(change: &Change) -> Self {
        let row = |kind: &str, subject: &str| ChangeRow {
            kind: kind.to_owned(),
            subject: Some(subject.to_owned()),
            expires_at_s: None,
        };
        match change {
            Change::AgentRevoked(id) => row("agent_revoked", id.as_str()),
            Change::AgentSuspended(id) => row("agent_suspended", id.as_str()),
            Change::AgentReactivated(id) => row("agent_reactivated", id.as_str()),
            Change::AgentKeysChanged(id) => row("agent_keys", id.as_str()),
            Change::TokenRevoked { jti, expires_at_s } => ChangeRow {
                expires_at_s: Some(*expires_at_s),
                ..row("token_revoked", jti.as_str())
            },
            Change::IssuerKeysChanged(id) => row("issuer_keys", id.as_str()),
            Change::IssuerDomainChanged(id) => row("issuer_domain", id.as_str()),
            Change::SigningKeysChanged => ChangeRow {
                kind: "signing_keys".to_owned(),
                subject: None,
                expires_at_s: None,
            },
            Change::ReceiverChanged(id) => row("receiver", id.as_str()),
            Change::ApiKeyRevoked(hash) => row("api_key_revoked", &b64::encode(&hash.0)),
        }
    }
}

impl TryFrom<ChangeRow> for Change {
    type Error = StoreError;

    /// A row that does not parse is `Backend` (the data was edited or corrupted).
    fn try_from(row: ChangeRow) -> Result<Self, StoreError> {
        fn id<T: for<'a> TryFrom<&'a str>>(subject: Option<&str>) -> Result<T, StoreError> {
            subject
                .and_then(|s| T::try_from(s).ok())
                .ok_or_else(|| StoreError::Backend("stored change does not parse".into()))
        }
        let subject = row.subject.as_deref();
        Ok(match row.kind.as_str() {
            "agent_revoked" => Change::AgentRevoked(id(subject)?),
            "agent_suspended" => Change::AgentSuspended(id(subject)?),
            "agent_reactivated" => Change::AgentReactivated(id(subject)?),
            "agent_keys" => Change::AgentKeysChanged(id(subject)?),
            "token_revoked" => Change::TokenRevoked {
                jti: id(subject)?,
                expires_at_s: row.expires_at_s.ok_or_else(|| {
                    StoreError::Backend("stored token change has no expiry".into())
                })?,
            },
            "issuer_keys" => Change::IssuerKeysChanged(id(subject)?),
            "issuer_domain" => Change::IssuerDomainChanged(id(subject)?),
            "signing_keys" => Change::SigningKeysChanged,
            "receiver" => Change::ReceiverChanged(id(subject)?),
            "api_key_revoked" => {
                let hash = subject
                    .and_then(|s| b64::decode(s).ok())
                    .and_then(|bytes| <[u8; 32]>::try_from(bytes.as_slice()).ok())
                    .ok_or_else(|| {
                        StoreError::Backend("stored API key change does not parse".into())
                    })?;
                Change::ApiKeyRevoked(bonafide_core::apikey::ApiKeyHash(hash))
            }
            _ => {
                return Err(StoreError::Backend(
                    "stored change of an unknown kind".into(),
                ));
            }
        })
    }
}

/// The hashes one record stores: its leaf hash and the interior nodes it completed,
/// lowest level first (so `nodes[k]` is at level `k + 1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HashRun {
    /// `SHA-256(0x00 ‖ entry)`.
    pub leaf: Hash,
    /// Interior hashes completed by this record.
    pub nodes: Vec<Hash>,
}

/// One audit row to insert: its index, stored hashes and record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow<'a> {
    /// Position in the log.
    pub index: u64,
    /// Its stored hashes.
    pub run: HashRun,
    /// The entry and who may read it.
    pub record: &'a AuditRecord,
}

/// What the log reads: in a write transaction, or in a read snapshot (proofs).
#[async_trait]
pub trait LogRead: Send {
    /// The log's size: the index the next appended entry gets. In a write transaction
    /// this is the first statement and takes the log-head lock, held to commit
    /// (SQLite: `BEGIN IMMEDIATE` already holds its one write lock; PostgreSQL: lock
    /// the head row, `SELECT … FOR UPDATE`).
    async fn log_head(&mut self) -> Result<u64, StoreError>;
    /// The stored runs of these records, by record index; a record not stored is
    /// absent from the map.
    async fn read_hash_rows(
        &mut self,
        records: &[u64],
    ) -> Result<HashMap<u64, HashRun>, StoreError>;
    /// The position of the last change recorded (0 if none).
    async fn change_head(&mut self) -> Result<u64, StoreError>;
    /// The frontier of a log of `size` entries that this connection kept from its
    /// last committed append (see [`LogRead::keep_frontier`]), if it has one of that
    /// size: [`lock`] then reads no hashes. A log only grows and its entries never
    /// change, so a frontier of the same size is the log's.
    fn kept_frontier(&mut self, _size: u64) -> Option<Frontier> {
        None
    }
    /// Offers the frontier after this transaction's append. A backend keeping it
    /// must keep it only once the transaction has committed (a rolled-back append
    /// leaves the log at its old size, and another writer may then append other
    /// entries up to the same size).
    fn keep_frontier(&mut self, _frontier: &Frontier) {}
}

/// What the change feed's readers read besides the head (any connection; a write
/// transaction never pages the feed).
#[async_trait]
pub trait ChangeRead: LogRead {
    /// The changes at positions in `(after, up_to]`, in position order, at most
    /// `limit`, leaving out rows whose `expires_at_s` is at or before `expired_by_s`.
    async fn read_changes(
        &mut self,
        after: u64,
        up_to: u64,
        expired_by_s: i64,
        limit: u32,
    ) -> Result<Vec<(u64, ChangeRow)>, StoreError>;
}

/// What the log writes, inside a backend's write transaction (see the module docs for
/// the lock order). Called only by [`Head::append`].
#[async_trait]
pub trait LogTx: LogRead {
    /// Inserts audit rows (consecutive indexes from the log head).
    async fn insert_audit_rows(&mut self, rows: &[LogRow<'_>]) -> Result<(), StoreError>;
    /// Inserts change rows at these positions (consecutive, after the change head).
    async fn insert_changes(&mut self, rows: &[(u64, ChangeRow)]) -> Result<(), StoreError>;
}

/// The log head, taken by [`lock`]: the log's size and frontier when the transaction
/// took it, which it keeps until commit. Appending consumes it: one append per
/// transaction.
#[derive(Debug)]
#[must_use = "a write appends its audit records with `Head::append`"]
pub struct Head {
    size: u64,
    frontier: Frontier,
}

/// Takes the log head: the first thing every write transaction does (see the module
/// docs for the lock order). Reads the tree's frontier with it (at most 62 hashes, one
/// read): every left sibling an append needs is on it (`core::merkle::Frontier`), and
/// so every read of a write comes before its first write.
pub async fn lock<T: LogTx + ?Sized>(tx: &mut T) -> Result<Head, StoreError> {
    let size = tx.log_head().await?;
    let frontier = match tx.kept_frontier(size) {
        Some(kept) => kept,
        None => {
            let hashes = read_hashes(tx, &Frontier::indexes(size)).await?;
            Frontier::from_hashes(size, hashes).map_err(log_err)?
        }
    };
    Ok(Head { size, frontier })
}

impl Head {
    /// The index the transaction's first appended record gets.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a write's audit `records` in order, with their stored hashes, and its
    /// `changes` to the change feed, at the next positions (read now, under the head
    /// lock: so positions follow commit order). Returns the index of the first record
    /// (the size if there is none). Nothing is written for empty lists.
    pub async fn append<T: LogTx + ?Sized>(
        self,
        tx: &mut T,
        records: &[AuditRecord],
        changes: &[Change],
    ) -> Result<u64, StoreError> {
        if !changes.is_empty() {
            let last = tx.change_head().await?;
            let rows: Vec<(u64, ChangeRow)> = (last.saturating_add(1)..)
                .zip(changes.iter().map(ChangeRow::from))
                .collect();
            tx.insert_changes(&rows).await?;
        }
        if records.is_empty() {
            return Ok(self.size);
        }
        let mut frontier = self.frontier;
        let mut rows = Vec::with_capacity(records.len());
        for record in records {
            let index = frontier.size();
            let stored = frontier.append(record.leaf_hash()).map_err(log_err)?;
            let (leaf, nodes) = stored
                .split_first()
                .ok_or_else(|| StoreError::Backend("audit log: no leaf hash".into()))?;
            rows.push(LogRow {
                index,
                run: HashRun {
                    leaf: *leaf,
                    nodes: nodes.to_vec(),
                },
                record,
            });
        }
        tx.insert_audit_rows(&rows).await?;
        tx.keep_frontier(&frontier);
        Ok(self.size)
    }
}

/// The record that stores hash `index` (a stored-hash index, `core::merkle`), and the
/// hash's position in that record's run (0 = leaf hash, k = k-th interior node).
/// `None` beyond the largest supported tree.
pub fn locate_hash(index: u64) -> Option<(u64, usize)> {
    // Beyond the largest supported tree the index math is meaningless (and slow).
    if index >= merkle::stored_hash_count(merkle::MAX_TREE_SIZE) {
        return None;
    }
    let (level, n) = merkle::split_stored_hash_index(index);
    // The node (level, n) is completed by the last leaf under it.
    let record = n
        .checked_add(1)?
        .checked_shl(u32::from(level))?
        .checked_sub(1)?;
    if record > merkle::MAX_TREE_SIZE {
        return None;
    }
    Some((record, usize::from(level)))
}

/// The stored hashes at these stored-hash indexes, in the same order: one read of
/// every record they live in (what a proof prefetches). `NotFound` if any is not
/// stored.
pub async fn read_hashes<T: LogRead + ?Sized>(
    tx: &mut T,
    indexes: &[u64],
) -> Result<Vec<Hash>, StoreError> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let located: Vec<(u64, usize)> = indexes
        .iter()
        .map(|&i| locate_hash(i).ok_or(StoreError::NotFound))
        .collect::<Result<_, _>>()?;
    let mut records: Vec<u64> = located.iter().map(|(r, _)| *r).collect();
    records.sort_unstable();
    records.dedup();
    let runs = tx.read_hash_rows(&records).await?;
    located
        .iter()
        .map(|(record, level)| {
            let run = runs.get(record).ok_or(StoreError::NotFound)?;
            match level.checked_sub(1) {
                None => Ok(run.leaf),
                // A record stores exactly the nodes it completed: a missing one is a
                // row that does not match the layout.
                Some(k) => run
                    .nodes
                    .get(k)
                    .copied()
                    .ok_or_else(|| StoreError::Backend("stored audit hashes are short".into())),
            }
        })
        .collect()
}

/// [`Store::changes_since`](crate::Store::changes_since) over a backend's read
/// connection. The head position is read first and the rows only up to it: a change
/// committed meanwhile is left to the next read, never skipped, even without a
/// snapshot (every position up to a visible one has committed, see the module docs).
pub async fn changes_since<T: ChangeRead + ?Sized>(
    tx: &mut T,
    after: ChangePosition,
    expired_by_s: i64,
    limit: u32,
) -> Result<ChangeFeed, StoreError> {
    let limit = limit.clamp(1, MAX_CHANGES);
    let head = tx.change_head().await?;
    let mut rows = tx
        .read_changes(after.get(), head, expired_by_s, limit.saturating_add(1))
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = match rows.last() {
        Some((position, _)) if more => *position,
        // Read up to the head: expired rows after the last one kept are passed too.
        _ => head.max(after.get()),
    };
    let positions = rows
        .iter()
        .map(|(position, _)| ChangePosition::new(*position))
        .collect();
    Ok(ChangeFeed {
        changes: rows
            .into_iter()
            .map(|(_, row)| Change::try_from(row))
            .collect::<Result<_, _>>()?,
        positions,
        next: ChangePosition::new(next),
        more,
    })
}

fn log_err(e: merkle::LogError) -> StoreError {
    StoreError::Backend(format!("audit log: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A log in memory, laid out as a backend stores it.
    #[derive(Default)]
    struct Memory {
        runs: Vec<HashRun>,
        changes: Vec<(u64, ChangeRow)>,
    }

    #[async_trait]
    impl LogRead for Memory {
        async fn log_head(&mut self) -> Result<u64, StoreError> {
            Ok(self.runs.len() as u64)
        }
        async fn read_hash_rows(
            &mut self,
            records: &[u64],
        ) -> Result<HashMap<u64, HashRun>, StoreError> {
            Ok(records
                .iter()
                .filter_map(|&r| Some((r, self.runs.get(usize::try_from(r).ok()?)?.clone())))
                .collect())
        }
        async fn change_head(&mut self) -> Result<u64, StoreError> {
            Ok(self.changes.last().map_or(0, |(p, _)| *p))
        }
    }

    #[async_trait]
    impl ChangeRead for Memory {
        async fn read_changes(
            &mut self,
            after: u64,
            up_to: u64,
            expired_by_s: i64,
            limit: u32,
        ) -> Result<Vec<(u64, ChangeRow)>, StoreError> {
            Ok(self
                .changes
                .iter()
                .filter(|(p, r)| {
                    *p > after && *p <= up_to && r.expires_at_s.is_none_or(|e| e > expired_by_s)
                })
                .take(limit as usize)
                .cloned()
                .collect())
        }
    }

    #[async_trait]
    impl LogTx for Memory {
        async fn insert_audit_rows(&mut self, rows: &[LogRow<'_>]) -> Result<(), StoreError> {
            for row in rows {
                assert_eq!(row.index, self.runs.len() as u64, "rows are consecutive");
                self.runs.push(row.run.clone());
            }
            Ok(())
        }
        async fn insert_changes(&mut self, rows: &[(u64, ChangeRow)]) -> Result<(), StoreError> {
            self.changes.extend_from_slice(rows);
            Ok(())
        }
    }

    fn record(n: usize) -> AuditRecord {
        AuditRecord {
            entry: format!("{{\"n\":{n}}}").into_bytes(),
            agent_id: None,
            issuer_id: None,
            created_at_ms: 0,
            prepared: None,
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .map(|rt| rt.block_on(f))
            .unwrap_or_else(|e| panic!("runtime: {e}"))
    }

    /// Appends in batches of every size store exactly the hashes core computes, and
    /// each is read back where `locate_hash` says it lives.
    #[test]
    fn appends_store_every_hash_where_it_is_located() {
        block_on(async {
            let mut log = Memory::default();
            let mut entries = Vec::new();
            for batch in [1usize, 2, 3, 5, 8, 13] {
                let records: Vec<AuditRecord> =
                    (entries.len()..entries.len() + batch).map(record).collect();
                let head = lock(&mut log).await.unwrap_or_else(|e| panic!("{e}"));
                let first = head.size();
                let at = head
                    .append(&mut log, &records, &[])
                    .await
                    .unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(at, first);
                entries.extend(records.into_iter().map(|r| r.entry));
            }
            let mut expected: Vec<Hash> = Vec::new();
            for (n, entry) in entries.iter().enumerate() {
                expected.extend(
                    merkle::stored_hashes(n as u64, entry, &expected)
                        .unwrap_or_else(|e| panic!("{e}")),
                );
            }
            let indexes: Vec<u64> = (0..expected.len() as u64).collect();
            let read = read_hashes(&mut log, &indexes)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(read, expected);
            let beyond = read_hashes(&mut log, &[expected.len() as u64]).await;
            assert_eq!(beyond, Err(StoreError::NotFound));
        });
    }

    #[test]
    fn an_empty_append_writes_nothing() {
        block_on(async {
            let mut log = Memory::default();
            let head = lock(&mut log).await.unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(head.append(&mut log, &[], &[]).await, Ok(0));
            assert!(log.runs.is_empty() && log.changes.is_empty());
        });
    }

    /// Every kind of change survives its row form; a row of an unknown kind or without
    /// its subject is a backend error, never a panic.
    #[test]
    fn changes_round_trip_through_their_rows() {
        use bonafide_core::apikey::ApiKeyHash;
        use bonafide_core::ids::{AgentId, IssuerId, ReceiverId, TokenId};
        let agent = AgentId::from_random([1; 16]);
        let every = [
            Change::AgentRevoked(agent.clone()),
            Change::AgentSuspended(agent.clone()),
            Change::AgentReactivated(agent.clone()),
            Change::AgentKeysChanged(agent),
            Change::TokenRevoked {
                jti: TokenId::from_random([2; 16]),
                expires_at_s: 7,
            },
            Change::IssuerKeysChanged(IssuerId::from_random([3; 16])),
            Change::IssuerDomainChanged(IssuerId::from_random([3; 16])),
            Change::SigningKeysChanged,
            Change::ReceiverChanged(ReceiverId::from_random([4; 16])),
            Change::ApiKeyRevoked(ApiKeyHash([5; 32])),
        ];
        for change in every {
            assert_eq!(Change::try_from(ChangeRow::from(&change)), Ok(change));
        }
        let row = |kind: &str, subject: Option<&str>| ChangeRow {
            kind: kind.to_owned(),
            subject: subject.map(str::to_owned),
            expires_at_s: None,
        };
        let jti = TokenId::from_random([2; 16]);
        for bad in [
            row("dropped_table", None),
            row("agent_revoked", None),
            row("agent_revoked", Some("iss_not_an_agent")),
            row("token_revoked", Some(jti.as_str())),
            row("api_key_revoked", Some("short")),
        ] {
            let parsed = Change::try_from(bad.clone());
            assert!(matches!(parsed, Err(StoreError::Backend(_))), "{bad:?}");
        }
    }

    /// Pages of the feed: `more` while rows follow, `next` after the last row kept,
    /// expired token rows skipped (and passed), positions numbered on from the head.
    #[test]
    fn the_change_feed_pages_in_position_order() {
        use bonafide_core::ids::{AgentId, TokenId};
        block_on(async {
            let mut log = Memory::default();
            let agents: Vec<Change> = (0..5u8)
                .map(|n| Change::AgentSuspended(AgentId::from_random([n; 16])))
                .collect();
            let expired = Change::TokenRevoked {
                jti: TokenId::from_random([9; 16]),
                expires_at_s: 10,
            };
            let head = lock(&mut log).await.unwrap_or_else(|e| panic!("{e}"));
            head.append(&mut log, &[record(0)], &agents[..3])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let head = lock(&mut log).await.unwrap_or_else(|e| panic!("{e}"));
            head.append(&mut log, &[], &[agents[3].clone(), expired.clone()])
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let positions: Vec<u64> = log.changes.iter().map(|(p, _)| *p).collect();
            assert_eq!(positions, [1, 2, 3, 4, 5]);

            let page = changes_since(&mut log, ChangePosition::START, 10, 2)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(page.changes, agents[..2]);
            assert!(page.more);
            assert_eq!(page.next, ChangePosition::new(2));
            let page = changes_since(&mut log, page.next, 10, 2)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(page.changes, agents[2..4]);
            // The expired row is all that follows: not returned, and passed.
            assert!(!page.more);
            assert_eq!(page.next, ChangePosition::new(5));
            let live = changes_since(&mut log, ChangePosition::new(4), 9, 100)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(live.changes, [expired]);
            let none = changes_since(&mut log, ChangePosition::new(5), 0, 0)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(none.changes, []);
            assert_eq!(none.next, ChangePosition::new(5));
        });
    }

    #[test]
    fn locate_hash_refuses_indexes_beyond_the_largest_tree() {
        assert_eq!(locate_hash(0), Some((0, 0)));
        assert_eq!(
            locate_hash(merkle::stored_hash_count(merkle::MAX_TREE_SIZE)),
            None
        );
        assert_eq!(locate_hash(u64::MAX), None);
    }
}
