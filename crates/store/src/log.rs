//! The audit log's storage layout, written once for every backend, over a narrow
//! transaction trait ([`LogRead`], [`LogTx`]) that a backend implements with its SQL.
//!
//! Layout: one row per record, in append order. Record `i` stores its leaf hash and
//! the interior hashes it completed (its run of stored hashes, lowest level first;
//! `core::merkle::stored_hashes`), so any stored hash is found by
//! [`locate_hash`] in one known row, a proof's hashes are one read of a few rows by
//! primary key ([`read_hashes`]), and an append reads only the tree's frontier.
//!
//! Every audited write goes through one call: [`lock`] takes the log head as the
//! transaction's first lock, [`Head::append`] appends the write's records. The head
//! is the serialization point of all writes; on a backend with several writers it is
//! a lock held to commit, so indexes are handed out in commit order.
//!
//! Lock order, for every backend and every write: the log head first
//! ([`LogRead::log_head`] inside a write transaction, taken by [`lock`]), then budget
//! rows (`ledger`), then the rows the write changes.

use std::collections::HashMap;

use async_trait::async_trait;
use bonafide_core::merkle::{self, Frontier, Hash};

use crate::{AuditRecord, StoreError};

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
}

/// What the log writes, inside a backend's write transaction (see the module docs for
/// the lock order). Called only by [`Head::append`].
#[async_trait]
pub trait LogTx: LogRead {
    /// Inserts audit rows (consecutive indexes from the log head).
    async fn insert_audit_rows(&mut self, rows: &[LogRow<'_>]) -> Result<(), StoreError>;
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
    let hashes = read_hashes(tx, &Frontier::indexes(size)).await?;
    let frontier = Frontier::from_hashes(size, hashes).map_err(log_err)?;
    Ok(Head { size, frontier })
}

impl Head {
    /// The index the transaction's first appended record gets.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends `records` in order, with their stored hashes; returns the index of the
    /// first (the size, if `records` is empty, and then nothing is written).
    pub async fn append<T: LogTx + ?Sized>(
        self,
        tx: &mut T,
        records: &[AuditRecord],
    ) -> Result<u64, StoreError> {
        if records.is_empty() {
            return Ok(self.size);
        }
        let mut frontier = self.frontier;
        let mut rows = Vec::with_capacity(records.len());
        for record in records {
            let index = frontier.size();
            let stored = frontier
                .append(merkle::leaf_hash(&record.entry))
                .map_err(log_err)?;
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
    }

    fn record(n: usize) -> AuditRecord {
        AuditRecord {
            entry: format!("{{\"n\":{n}}}").into_bytes(),
            agent_id: None,
            issuer_id: None,
            created_at_ms: 0,
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
                    .append(&mut log, &records)
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
            assert_eq!(head.append(&mut log, &[]).await, Ok(0));
            assert!(log.runs.is_empty());
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
