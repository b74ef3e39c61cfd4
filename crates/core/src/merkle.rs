//! The Merkle tree of the audit log: RFC 6962 §2.1 / RFC 9162 §2.1 hashing, inclusion
//! and consistency proofs, and the C2SP `tlog-tiles` coordinates it is served as.
//!
//! What this is: pure math over SHA-256 hashes. Hashes that were stored earlier are
//! read through the small [`HashReader`] trait, which the store implements; nothing
//! here does I/O, and nothing here knows how entries are encoded (the caller passes
//! the entry bytes or their [`leaf_hash`]).
//!
//! What this is not: a log. Sequencing, signing checkpoints ([`crate::note`]) and
//! refusing to sign two inconsistent ones live elsewhere.
//!
//! Layout. Every hash of the tree is kept once, in the order it becomes known while
//! appending: record `n`'s leaf hash followed by the interior nodes it completes. This
//! is the "stored hash index" of Crosby and Wallach (USENIX Security 2009, §3.3), as
//! used by Go's `golang.org/x/mod/sumdb/tlog`; [`stored_hash_index`] maps a node
//! (level, n) to it. Proofs are computed from these stored hashes and are exactly the
//! RFC 6962 §2.1.1 audit paths and §2.1.2 consistency proofs (RFC 9162 §2.1.3 and
//! §2.1.4), so any Certificate Transparency or transparency-dev verifier accepts them.
//!
//! Two verifiers are provided for each proof kind: [`check_record`] and [`check_tree`]
//! walk the tree top-down like the generators (after checking the proof length), and
//! [`rfc9162`] follows the bit-twiddling algorithms of RFC 9162 §2.1.3.2 and §2.1.4.2
//! literally. The tests require that they agree on every input they try.
//!
//! Limits: verifiers accept any `u64` size and never overflow. Generators
//! ([`stored_hashes`], [`tree_hash`], [`prove_record`], [`prove_tree`]) refuse trees
//! larger than [`MAX_TREE_SIZE`], which keeps all stored-hash index arithmetic in range.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

use crate::sha256;

/// Size of a [`struct@Hash`] in bytes.
pub const HASH_SIZE: usize = 32;

/// The largest tree the generators handle: 2^62 records. Stored-hash indexes of such a
/// tree stay below 2^64.
pub const MAX_TREE_SIZE: u64 = 1 << 62;

/// Height of a C2SP tile: each tile spans 8 levels of the tree (c2sp.org/tlog-tiles,
/// "Merkle Tree").
pub const TILE_HEIGHT: u8 = 8;

/// Width of a full tile, in hashes: 2^[`TILE_HEIGHT`].
pub const TILE_WIDTH: u16 = 256;

/// Highest tile level a path may name (c2sp.org/tlog-tiles: "between 0 and 63").
pub const MAX_TILE_LEVEL: u8 = 63;

/// A SHA-256 hash of the tree: a leaf hash, an interior node or a root.
///
/// `Debug` shows a short hex prefix; `Display` is standard padded base64, the form
/// checkpoints (C2SP `tlog-checkpoint`) and Go's `tlog.Hash` use.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash(pub [u8; HASH_SIZE]);

impl Hash {
    /// The hash's bytes.
    pub fn as_bytes(&self) -> &[u8; HASH_SIZE] {
        &self.0
    }

    /// Standard padded base64 (RFC 4648 §4), 44 characters.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }

    /// Parses standard padded base64 of exactly 32 bytes; canonical encodings only.
    pub fn from_base64(text: &str) -> Result<Self, LogError> {
        let bytes = STANDARD.decode(text).map_err(|_| LogError::BadHash)?;
        Self::try_from(bytes.as_slice())
    }

    /// Lowercase hex, 64 characters.
    pub fn to_hex(&self) -> String {
        crate::hex(&self.0)
    }
}

impl TryFrom<&[u8]> for Hash {
    type Error = LogError;

    /// Exactly 32 bytes, or [`LogError::BadHash`].
    fn try_from(bytes: &[u8]) -> Result<Self, LogError> {
        <[u8; HASH_SIZE]>::try_from(bytes)
            .map(Hash)
            .map_err(|_| LogError::BadHash)
    }
}

impl From<[u8; HASH_SIZE]> for Hash {
    fn from(bytes: [u8; HASH_SIZE]) -> Self {
        Hash(bytes)
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let prefix = self.0.get(..6).unwrap_or_default();
        write!(f, "Hash({}…)", crate::hex(prefix))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_base64())
    }
}

/// What went wrong with a Merkle computation, a proof or a tile path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LogError {
    /// A record index is not below the tree size.
    #[error("index {index} is out of range for a tree of size {size}")]
    IndexOutOfRange {
        /// The record index asked for.
        index: u64,
        /// The tree size.
        size: u64,
    },
    /// A consistency proof was asked for or checked from a larger to a smaller tree.
    #[error("old tree size {old} is larger than new tree size {new}")]
    SizeOrder {
        /// The old (first) tree size.
        old: u64,
        /// The new (second) tree size.
        new: u64,
    },
    /// A generator was asked about a tree larger than [`MAX_TREE_SIZE`].
    #[error("tree size {0} is larger than the supported 2^62")]
    TreeTooLarge(u64),
    /// A proof has the wrong number of hashes for its sizes and index.
    #[error("proof has {got} hashes, expected {expected}")]
    ProofLength {
        /// Hashes the proof must have.
        expected: usize,
        /// Hashes it has.
        got: usize,
    },
    /// The proof does not lead to the given root (or, for a consistency proof, to
    /// both roots).
    #[error("proof does not match the root hash")]
    ProofMismatch,
    /// A hash is not 32 bytes of canonical standard base64.
    #[error("malformed hash (want 32 bytes of standard base64)")]
    BadHash,
    /// A tile or entry-bundle path is not in the canonical c2sp.org/tlog-tiles form.
    #[error("malformed tile path: {0}")]
    BadTilePath(&'static str),
    /// A tile's level or width is outside what c2sp.org/tlog-tiles allows.
    #[error("invalid tile: level {level} (max 63), width {width} (1..=256)")]
    BadTile {
        /// The level asked for.
        level: u8,
        /// The width asked for.
        width: u16,
    },
    /// A [`HashReader`] returned a different number of hashes than asked for.
    #[error("hash reader returned {got} hashes for {wanted} indexes")]
    ShortRead {
        /// Hashes asked for.
        wanted: usize,
        /// Hashes returned.
        got: usize,
    },
    /// A stored hash index is not (yet) in the store.
    #[error("stored hash {0} is not available")]
    MissingHash(u64),
    /// The storage behind a [`HashReader`] failed.
    #[error("hash storage failed: {0}")]
    Reader(String),
}

// ---------------------------------------------------------------------------------
// Hashing (RFC 6962 §2.1, RFC 9162 §2.1.1)

/// `SHA-256(0x00 ‖ entry)`: the hash of a record (RFC 6962 §2.1, RFC 9162 §2.1.1).
pub fn leaf_hash(entry: &[u8]) -> Hash {
    let mut buf = Vec::with_capacity(entry.len() + 1);
    buf.push(0x00);
    buf.extend_from_slice(entry);
    Hash(sha256(&buf))
}

/// `SHA-256(0x01 ‖ left ‖ right)`: the hash of an interior node (RFC 6962 §2.1).
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    let mut buf = [0u8; 1 + 2 * HASH_SIZE];
    let (prefix, rest) = buf.split_at_mut(1);
    let (l, r) = rest.split_at_mut(HASH_SIZE);
    prefix.fill(0x01);
    l.copy_from_slice(&left.0);
    r.copy_from_slice(&right.0);
    Hash(sha256(&buf))
}

/// The root of the empty tree, `SHA-256("")` (RFC 6962 §2.1: `MTH({}) = SHA-256()`).
///
/// Go's `tlog.TreeHash(0)` returns all zeros instead; this module follows the RFC.
pub fn empty_tree_hash() -> Hash {
    Hash(sha256(&[]))
}

// ---------------------------------------------------------------------------------
// Stored hash layout (Crosby–Wallach §3.3, as in Go's sumdb/tlog)

/// The position of node `(level, n)` in the stored-hash sequence: the `n`th hash at
/// `level` (level 0 holds leaf hashes) of the tree.
///
/// The `n`th hash at level `L` is stored right after the `(2n+1)`th hash at level
/// `L-1`, which completes it.
///
/// Precondition: the node belongs to a tree of at most [`MAX_TREE_SIZE`] records
/// (`(n + 1) << level <= 2^62`); beyond that the result is meaningless.
pub fn stored_hash_index(level: u8, n: u64) -> u64 {
    // Walk down the right spine to the level-0 leaf that completes the node.
    let mut n = n;
    for _ in 0..level {
        n = n.wrapping_mul(2).wrapping_add(1);
    }
    // Leaf n is stored after n leaves plus the n/2 + n/4 + ... nodes they completed.
    let mut index = 0u64;
    while n > 0 {
        index = index.wrapping_add(n);
        n >>= 1;
    }
    index.wrapping_add(u64::from(level))
}

/// The inverse of [`stored_hash_index`]: which node `(level, n)` is stored at `index`.
pub fn split_stored_hash_index(index: u64) -> (u8, u64) {
    // Leaf n is stored at an index in [n, 2n), so the leaf whose group of hashes holds
    // `index` is at least index/2; step forward from there.
    let mut n = index / 2;
    let mut at = stored_hash_index(0, n);
    loop {
        // Appending leaf n adds 1 + trailing_ones(n) hashes (itself and the nodes it
        // completes); the next leaf starts right after them.
        let next = at
            .saturating_add(1)
            .saturating_add(u64::from(n.trailing_ones()));
        if next > index {
            break;
        }
        n += 1;
        at = next;
    }
    // INVARIANT: index - at <= trailing_ones(n) <= 63, so the level fits in a u8.
    let level = u8::try_from(index - at).unwrap_or(u8::MAX);
    (level, n >> level)
}

/// How many hashes are stored for a tree of `n` records.
pub fn stored_hash_count(n: u64) -> u64 {
    match n.checked_sub(1) {
        None => 0,
        // Everything up to the last leaf, then the subtrees that leaf completed.
        Some(last) => stored_hash_index(0, last) + 1 + u64::from(last.trailing_ones()),
    }
}

/// Reads hashes stored earlier, by stored hash index (see [`stored_hash_index`]).
///
/// The store implements this over its table; `[Hash]` and `Vec<Hash>` implement it in
/// memory, position = stored hash index.
pub trait HashReader {
    /// The hashes at `indexes`, in the same order and the same number; any that is
    /// missing is an error ([`LogError::MissingHash`] or [`LogError::Reader`]).
    /// Callers ask for indexes in increasing order where they can.
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError>;
}

impl HashReader for [Hash] {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        indexes
            .iter()
            .map(|&i| {
                usize::try_from(i)
                    .ok()
                    .and_then(|at| self.get(at))
                    .copied()
                    .ok_or(LogError::MissingHash(i))
            })
            .collect()
    }
}

impl HashReader for Vec<Hash> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        self.as_slice().read_hashes(indexes)
    }
}

impl HashReader for std::collections::HashMap<u64, Hash> {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        indexes
            .iter()
            .map(|i| self.get(i).copied().ok_or(LogError::MissingHash(*i)))
            .collect()
    }
}

/// Stored hashes fetched ahead of a computation: position `i` of `hashes` is the hash
/// at stored index `indexes[i]`.
///
/// Lets an async store answer a proof in one round trip: ask
/// [`inclusion_proof_indexes`] (or [`consistency_proof_indexes`],
/// [`tree_hash_indexes`]) what is needed, fetch those, then compute from this.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Prefetched {
    indexes: Vec<u64>,
    hashes: Vec<Hash>,
}

impl Prefetched {
    /// Pairs up `indexes` and `hashes`; `ShortRead` if their lengths differ.
    pub fn new(indexes: Vec<u64>, hashes: Vec<Hash>) -> Result<Self, LogError> {
        if indexes.len() != hashes.len() {
            return Err(LogError::ShortRead {
                wanted: indexes.len(),
                got: hashes.len(),
            });
        }
        Ok(Prefetched { indexes, hashes })
    }
}

impl HashReader for Prefetched {
    fn read_hashes(&self, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
        // The fast path: asked for exactly what was fetched (the usual case).
        if indexes == self.indexes.as_slice() {
            return Ok(self.hashes.clone());
        }
        indexes
            .iter()
            .map(|i| {
                self.indexes
                    .iter()
                    .position(|x| x == i)
                    .and_then(|at| self.hashes.get(at))
                    .copied()
                    .ok_or(LogError::MissingHash(*i))
            })
            .collect()
    }
}

/// Reads `indexes` and checks the reader kept its side of the contract.
fn read_all<R: HashReader + ?Sized>(reader: &R, indexes: &[u64]) -> Result<Vec<Hash>, LogError> {
    if indexes.is_empty() {
        return Ok(Vec::new());
    }
    let hashes = reader.read_hashes(indexes)?;
    if hashes.len() != indexes.len() {
        return Err(LogError::ShortRead {
            wanted: indexes.len(),
            got: hashes.len(),
        });
    }
    Ok(hashes)
}

fn check_size(size: u64) -> Result<(), LogError> {
    if size > MAX_TREE_SIZE {
        return Err(LogError::TreeTooLarge(size));
    }
    Ok(())
}

/// The hashes to store when appending record `n` with contents `entry`, in order,
/// starting at `stored_hash_index(0, n)`: its [`leaf_hash`] and then every interior
/// node it completes. See [`stored_hashes_for_leaf`].
pub fn stored_hashes<R: HashReader + ?Sized>(
    n: u64,
    entry: &[u8],
    reader: &R,
) -> Result<Vec<Hash>, LogError> {
    stored_hashes_for_leaf(n, leaf_hash(entry), reader)
}

/// Like [`stored_hashes`], given the record's leaf hash instead of its contents.
///
/// Reads at most 62 earlier hashes (one per completed subtree: the left sibling at
/// each level); on average fewer than two hashes are returned.
pub fn stored_hashes_for_leaf<R: HashReader + ?Sized>(
    n: u64,
    leaf: Hash,
    reader: &R,
) -> Result<Vec<Hash>, LogError> {
    check_size(n.saturating_add(1))?;
    // Each trailing 1 bit of n completes a subtree whose left half was stored earlier:
    // at level i that half is node (i, (n >> i) - 1). Read them in increasing order
    // (highest level first).
    let completed = u8::try_from(n.trailing_ones()).unwrap_or(u8::MAX);
    let indexes: Vec<u64> = (0..completed)
        .rev()
        .map(|level| stored_hash_index(level, (n >> level) - 1))
        .collect();
    let siblings = read_all(reader, &indexes)?;
    let mut hashes = Vec::with_capacity(siblings.len() + 1);
    let mut h = leaf;
    hashes.push(h);
    for sibling in siblings.iter().rev() {
        h = node_hash(sibling, &h);
        hashes.push(h);
    }
    Ok(hashes)
}

/// The right edge of a tree: the roots of the perfect subtrees that make up its
/// records, largest (leftmost) first. Enough to append records and to compute the
/// root without reading anything else, because every left sibling an append needs
/// is one of them (or was appended since).
///
/// An appender loads it once per batch (its [`Frontier::indexes`] from the store),
/// then [`Frontier::append`] yields exactly what [`stored_hashes`] would.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frontier {
    size: u64,
    /// One hash per set bit of `size`, highest bit first.
    nodes: Vec<Hash>,
}

impl Frontier {
    /// The frontier of the empty tree.
    pub fn empty() -> Self {
        Frontier {
            size: 0,
            nodes: Vec::new(),
        }
    }

    /// The stored hash indexes of the frontier of a tree of `size` records, largest
    /// subtree first: what [`Frontier::from_hashes`] wants.
    pub fn indexes(size: u64) -> Vec<u64> {
        tree_hash_indexes(size)
    }

    /// The frontier of a tree of `size` records from the hashes at
    /// [`Frontier::indexes`]`(size)`, in that order.
    pub fn from_hashes(size: u64, hashes: Vec<Hash>) -> Result<Self, LogError> {
        check_size(size)?;
        let wanted = size.count_ones() as usize;
        if hashes.len() != wanted {
            return Err(LogError::ShortRead {
                wanted,
                got: hashes.len(),
            });
        }
        Ok(Frontier {
            size,
            nodes: hashes,
        })
    }

    /// The frontier of a tree of `size` records, read from `reader`.
    pub fn read<R: HashReader + ?Sized>(size: u64, reader: &R) -> Result<Self, LogError> {
        let hashes = read_all(reader, &Self::indexes(size))?;
        Self::from_hashes(size, hashes)
    }

    /// Number of records.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Appends a record with leaf hash `leaf`; returns the hashes to store for it,
    /// starting at `stored_hash_index(0, old size)` (the leaf hash, then every
    /// interior node it completes).
    pub fn append(&mut self, leaf: Hash) -> Result<Vec<Hash>, LogError> {
        check_size(self.size.saturating_add(1))?;
        let merges = self.size.trailing_ones();
        let mut out = Vec::with_capacity(merges as usize + 1);
        let mut h = leaf;
        out.push(h);
        for _ in 0..merges {
            // INVARIANT: each trailing 1 bit of size has its subtree on the frontier.
            let left = self.nodes.pop().ok_or(LogError::MissingHash(self.size))?;
            h = node_hash(&left, &h);
            out.push(h);
        }
        self.nodes.push(h);
        self.size += 1;
        Ok(out)
    }

    /// The Merkle tree hash of the records so far (RFC 6962 §2.1).
    pub fn root(&self) -> Hash {
        match self.nodes.split_last() {
            None => empty_tree_hash(),
            Some((last, others)) => others
                .iter()
                .rev()
                .fold(*last, |right, left| node_hash(left, &right)),
        }
    }
}

// ---------------------------------------------------------------------------------
// Tree hashes and proofs from stored hashes (RFC 6962 §2.1, §2.1.1, §2.1.2)

/// `(k, log2 k)` for the largest power of two `k` strictly below `n`; `n >= 2`.
fn split_point(n: u64) -> (u64, u8) {
    // INVARIANT: callers pass n >= 2, so n - 1 >= 1 and the shift is at most 63.
    let log = 63u32.saturating_sub((n - 1).leading_zeros());
    (1u64 << log, u8::try_from(log).unwrap_or(0))
}

/// Appends the stored indexes of the perfect subtrees that make up records
/// `[lo, hi)`, largest (leftmost) first. `lo` must be a multiple of the first one.
fn subtree_indexes(mut lo: u64, hi: u64, need: &mut Vec<u64>) {
    while lo < hi {
        // The largest power of two that fits in [lo, hi).
        let (k, level) = split_point(hi - lo + 1);
        need.push(stored_hash_index(level, lo >> level));
        lo += k;
    }
}

/// The MTH of records `[lo, hi)` from the hashes [`subtree_indexes`] asked for, and
/// what is left of `hashes`.
fn subtree_hash(lo: u64, hi: u64, hashes: &[Hash]) -> Result<(Hash, &[Hash]), LogError> {
    let mut count = 0usize;
    let mut at = lo;
    while at < hi {
        let (k, _) = split_point(hi - at + 1);
        count += 1;
        at += k;
    }
    let (mine, rest) = hashes.split_at_checked(count).ok_or(LogError::ShortRead {
        wanted: count,
        got: hashes.len(),
    })?;
    // The right-most subtree is the deepest; fold leftwards.
    let (last, others) = mine
        .split_last()
        .ok_or(LogError::ShortRead { wanted: 1, got: 0 })?;
    let root = others
        .iter()
        .rev()
        .fold(*last, |right, left| node_hash(left, &right));
    Ok((root, rest))
}

fn ensure_consumed(rest: &[Hash]) -> Result<(), LogError> {
    if rest.is_empty() {
        Ok(())
    } else {
        // More hashes than the computation used: the reader broke its contract.
        Err(LogError::ShortRead {
            wanted: 0,
            got: rest.len(),
        })
    }
}

/// The Merkle Tree Hash of the first `size` records (RFC 6962 §2.1), from at most 62
/// stored hashes read in one call. The empty tree hashes to [`empty_tree_hash`].
pub fn tree_hash<R: HashReader + ?Sized>(size: u64, reader: &R) -> Result<Hash, LogError> {
    check_size(size)?;
    if size == 0 {
        return Ok(empty_tree_hash());
    }
    let mut indexes = Vec::new();
    subtree_indexes(0, size, &mut indexes);
    let hashes = read_all(reader, &indexes)?;
    let (root, rest) = subtree_hash(0, size, &hashes)?;
    ensure_consumed(rest)?;
    Ok(root)
}

/// The stored hash indexes [`tree_hash`] reads for a tree of `size` records, in the
/// order it reads them. Empty for an empty or too large tree.
pub fn tree_hash_indexes(size: u64) -> Vec<u64> {
    let mut need = Vec::new();
    if size > 0 && size <= MAX_TREE_SIZE {
        subtree_indexes(0, size, &mut need);
    }
    need
}

/// The stored hash indexes [`prove_record`] reads for record `index` in a tree of
/// `tree_size` records. Empty when the arguments are out of range (the proof itself
/// then reports the error).
pub fn inclusion_proof_indexes(tree_size: u64, index: u64) -> Vec<u64> {
    let mut need = Vec::new();
    if index < tree_size && tree_size <= MAX_TREE_SIZE {
        record_proof_indexes(0, tree_size, index, &mut need);
    }
    need
}

/// The stored hash indexes [`prove_tree`] reads for a proof from `old_size` to
/// `new_size`. Empty when no hashes are needed or the arguments are out of range.
pub fn consistency_proof_indexes(new_size: u64, old_size: u64) -> Vec<u64> {
    let mut need = Vec::new();
    if old_size > 0 && old_size < new_size && new_size <= MAX_TREE_SIZE {
        tree_proof_indexes(0, new_size, old_size, &mut need);
    }
    need
}

/// Stored indexes needed for the audit path of record `n` in records `[lo, hi)`.
fn record_proof_indexes(lo: u64, hi: u64, n: u64, need: &mut Vec<u64>) {
    if hi - lo <= 1 {
        return;
    }
    let (k, _) = split_point(hi - lo);
    if n < lo + k {
        record_proof_indexes(lo, lo + k, n, need);
        subtree_indexes(lo + k, hi, need);
    } else {
        subtree_indexes(lo, lo + k, need);
        record_proof_indexes(lo + k, hi, n, need);
    }
}

/// `PATH(n, D[lo:hi])` of RFC 6962 §2.1.1, appended to `proof` leaf-side first.
fn record_proof<'a>(
    lo: u64,
    hi: u64,
    n: u64,
    hashes: &'a [Hash],
    proof: &mut Vec<Hash>,
) -> Result<&'a [Hash], LogError> {
    if hi - lo <= 1 {
        // The verifier has the leaf hash itself.
        return Ok(hashes);
    }
    let (k, _) = split_point(hi - lo);
    if n < lo + k {
        // PATH(m, D[0:k]) : MTH(D[k:n])
        let rest = record_proof(lo, lo + k, n, hashes, proof)?;
        let (sibling, rest) = subtree_hash(lo + k, hi, rest)?;
        proof.push(sibling);
        Ok(rest)
    } else {
        // PATH(m - k, D[k:n]) : MTH(D[0:k])
        let (sibling, rest) = subtree_hash(lo, lo + k, hashes)?;
        let rest = record_proof(lo + k, hi, n, rest, proof)?;
        proof.push(sibling);
        Ok(rest)
    }
}

/// The inclusion proof (audit path, RFC 6962 §2.1.1 / RFC 9162 §2.1.3.1) of record
/// `index` in the tree of `tree_size` records, leaf-side first.
pub fn prove_record<R: HashReader + ?Sized>(
    tree_size: u64,
    index: u64,
    reader: &R,
) -> Result<Vec<Hash>, LogError> {
    check_size(tree_size)?;
    if index >= tree_size {
        return Err(LogError::IndexOutOfRange {
            index,
            size: tree_size,
        });
    }
    let mut indexes = Vec::new();
    record_proof_indexes(0, tree_size, index, &mut indexes);
    let hashes = read_all(reader, &indexes)?;
    let mut proof = Vec::with_capacity(64);
    let rest = record_proof(0, tree_size, index, &hashes, &mut proof)?;
    ensure_consumed(rest)?;
    Ok(proof)
}

/// Stored indexes needed for `SUBPROOF(m, D[lo:hi], lo == 0)`.
fn tree_proof_indexes(lo: u64, hi: u64, m: u64, need: &mut Vec<u64>) {
    if m == hi {
        if lo != 0 {
            subtree_indexes(lo, hi, need);
        }
        return;
    }
    let (k, _) = split_point(hi - lo);
    if m <= lo + k {
        tree_proof_indexes(lo, lo + k, m, need);
        subtree_indexes(lo + k, hi, need);
    } else {
        subtree_indexes(lo, lo + k, need);
        tree_proof_indexes(lo + k, hi, m, need);
    }
}

/// `SUBPROOF(m, D[lo:hi], lo == 0)` of RFC 6962 §2.1.2, appended to `proof`.
fn tree_proof<'a>(
    lo: u64,
    hi: u64,
    m: u64,
    hashes: &'a [Hash],
    proof: &mut Vec<Hash>,
) -> Result<&'a [Hash], LogError> {
    if m == hi {
        if lo == 0 {
            // The old tree itself: the verifier knows its root.
            return Ok(hashes);
        }
        let (h, rest) = subtree_hash(lo, hi, hashes)?;
        proof.push(h);
        return Ok(rest);
    }
    let (k, _) = split_point(hi - lo);
    if m <= lo + k {
        // SUBPROOF(m, D[0:k], b) : MTH(D[k:n])
        let rest = tree_proof(lo, lo + k, m, hashes, proof)?;
        let (h, rest) = subtree_hash(lo + k, hi, rest)?;
        proof.push(h);
        Ok(rest)
    } else {
        // SUBPROOF(m - k, D[k:n], false) : MTH(D[0:k])
        let (h, rest) = subtree_hash(lo, lo + k, hashes)?;
        let rest = tree_proof(lo + k, hi, m, rest, proof)?;
        proof.push(h);
        Ok(rest)
    }
}

/// The consistency proof (RFC 6962 §2.1.2 / RFC 9162 §2.1.4.1) that the tree of
/// `old_size` records is a prefix of the tree of `new_size` records.
///
/// Empty when `old_size` is 0 or equals `new_size`: those need no proof.
pub fn prove_tree<R: HashReader + ?Sized>(
    new_size: u64,
    old_size: u64,
    reader: &R,
) -> Result<Vec<Hash>, LogError> {
    check_size(new_size)?;
    if old_size > new_size {
        return Err(LogError::SizeOrder {
            old: old_size,
            new: new_size,
        });
    }
    if old_size == 0 || old_size == new_size {
        return Ok(Vec::new());
    }
    let mut indexes = Vec::new();
    tree_proof_indexes(0, new_size, old_size, &mut indexes);
    let hashes = read_all(reader, &indexes)?;
    let mut proof = Vec::with_capacity(64);
    let rest = tree_proof(0, new_size, old_size, &hashes, &mut proof)?;
    ensure_consumed(rest)?;
    Ok(proof)
}

// ---------------------------------------------------------------------------------
// Verification

/// Bits below which `index` and `size - 1` differ: the levels where the audit path
/// has a sibling inside the perfect part of the tree, plus the hashes on the right
/// border. `index < size`.
fn inclusion_shape(index: u64, size: u64) -> (u32, u32) {
    let inner = u64::BITS - (index ^ (size - 1)).leading_zeros();
    let border = index.checked_shr(inner).unwrap_or(0).count_ones();
    (inner, border)
}

/// Number of hashes in the audit path of `index` in a tree of `size` records.
/// `index < size`.
pub fn inclusion_proof_len(index: u64, size: u64) -> usize {
    let (inner, border) = inclusion_shape(index, size);
    (inner + border) as usize
}

/// Number of hashes in the consistency proof from `old` to `new` records.
/// `old <= new`.
pub fn consistency_proof_len(old: u64, new: u64) -> usize {
    if old == 0 || old >= new {
        return 0;
    }
    // The proof is the audit path of the old tree's last leaf, minus the levels
    // inside the largest perfect subtree ending at `old`, plus that subtree's root
    // unless it is the whole old tree (then the verifier has it).
    let (inner, border) = inclusion_shape(old - 1, new);
    let shift = old.trailing_zeros();
    let seed = u32::from(!old.is_power_of_two());
    (seed + inner.saturating_sub(shift) + border) as usize
}

/// Checks that `proof` shows the record with leaf hash `leaf` at `index` in the tree
/// of `tree_size` records whose root is `root` (RFC 6962 §2.1.1).
///
/// The proof length is checked first, then the path is folded top-down, mirroring
/// how [`prove_record`] builds it. Agrees with [`rfc9162::verify_inclusion`].
pub fn check_record(
    proof: &[Hash],
    tree_size: u64,
    root: &Hash,
    index: u64,
    leaf: &Hash,
) -> Result<(), LogError> {
    if index >= tree_size {
        return Err(LogError::IndexOutOfRange {
            index,
            size: tree_size,
        });
    }
    let expected = inclusion_proof_len(index, tree_size);
    if proof.len() != expected {
        return Err(LogError::ProofLength {
            expected,
            got: proof.len(),
        });
    }
    if run_record_proof(proof, 0, tree_size, index, leaf)? == *root {
        Ok(())
    } else {
        Err(LogError::ProofMismatch)
    }
}

/// The root of records `[lo, hi)` implied by `proof` for leaf `n`. The last proof
/// element is the sibling at the top.
fn run_record_proof(
    proof: &[Hash],
    lo: u64,
    hi: u64,
    n: u64,
    leaf: &Hash,
) -> Result<Hash, LogError> {
    if hi - lo <= 1 {
        return if proof.is_empty() {
            Ok(*leaf)
        } else {
            Err(LogError::ProofMismatch)
        };
    }
    let (sibling, below) = proof.split_last().ok_or(LogError::ProofMismatch)?;
    let (k, _) = split_point(hi - lo);
    if n < lo + k {
        let h = run_record_proof(below, lo, lo + k, n, leaf)?;
        Ok(node_hash(&h, sibling))
    } else {
        let h = run_record_proof(below, lo + k, hi, n, leaf)?;
        Ok(node_hash(sibling, &h))
    }
}

/// Rejects impossible size pairs and settles the cases that need no proof; `None`
/// means a real proof must be checked.
fn trivial_consistency(
    proof: &[Hash],
    new_size: u64,
    new_root: &Hash,
    old_size: u64,
    old_root: &Hash,
) -> Option<Result<(), LogError>> {
    if old_size > new_size {
        return Some(Err(LogError::SizeOrder {
            old: old_size,
            new: new_size,
        }));
    }
    if old_size == 0 || old_size == new_size {
        if !proof.is_empty() {
            return Some(Err(LogError::ProofLength {
                expected: 0,
                got: proof.len(),
            }));
        }
        // Every tree extends the empty one, whose root is fixed; a tree is consistent
        // with itself only under the same root.
        let ok = if old_size == 0 {
            *old_root == empty_tree_hash()
        } else {
            old_root == new_root
        };
        return Some(if ok {
            Ok(())
        } else {
            Err(LogError::ProofMismatch)
        });
    }
    None
}

/// Checks that `proof` shows the tree of `old_size` records with root `old_root` is
/// a prefix of the tree of `new_size` records with root `new_root` (RFC 6962 §2.1.2).
///
/// `old_size == 0` needs an empty proof and `old_root` = [`empty_tree_hash`];
/// `old_size == new_size` needs an empty proof and equal roots. Otherwise the proof
/// length is checked, then the proof is folded top-down, mirroring [`prove_tree`].
/// Agrees with [`rfc9162::verify_consistency`].
pub fn check_tree(
    proof: &[Hash],
    new_size: u64,
    new_root: &Hash,
    old_size: u64,
    old_root: &Hash,
) -> Result<(), LogError> {
    if let Some(done) = trivial_consistency(proof, new_size, new_root, old_size, old_root) {
        return done;
    }
    let expected = consistency_proof_len(old_size, new_size);
    if proof.len() != expected {
        return Err(LogError::ProofLength {
            expected,
            got: proof.len(),
        });
    }
    let (old, new) = run_tree_proof(proof, 0, new_size, old_size, old_root)?;
    if old == *old_root && new == *new_root {
        Ok(())
    } else {
        Err(LogError::ProofMismatch)
    }
}

/// The (old, new) hashes of records `[lo, hi)` implied by `proof`, where the old tree
/// has `m` records (`lo < m <= hi`) and root `old_root`.
fn run_tree_proof(
    proof: &[Hash],
    lo: u64,
    hi: u64,
    m: u64,
    old_root: &Hash,
) -> Result<(Hash, Hash), LogError> {
    if m == hi {
        return match (lo, proof) {
            // The whole old tree: its root is given, not proven.
            (0, []) => Ok((*old_root, *old_root)),
            // A perfect subtree shared by both trees.
            (_, [h]) if lo != 0 => Ok((*h, *h)),
            _ => Err(LogError::ProofMismatch),
        };
    }
    let (top, below) = proof.split_last().ok_or(LogError::ProofMismatch)?;
    let (k, _) = split_point(hi - lo);
    if m <= lo + k {
        // The old tree ends in the left half; the right half is new only.
        let (old, new) = run_tree_proof(below, lo, lo + k, m, old_root)?;
        Ok((old, node_hash(&new, top)))
    } else {
        // The left half is complete in both trees.
        let (old, new) = run_tree_proof(below, lo + k, hi, m, old_root)?;
        Ok((node_hash(top, &old), node_hash(top, &new)))
    }
}

/// The verification algorithms of RFC 9162, followed step by step.
///
/// They work bottom-up on the bits of the index and sizes instead of walking the
/// tree; [`check_record`] and [`check_tree`] must agree with them.
pub mod rfc9162 {
    use super::{Hash, LogError, node_hash, trivial_consistency};

    /// Right-shifts `fn_` and `sn` together until `fn_` has its low bit set or is 0.
    fn shift_while_even(fn_: &mut u64, sn: &mut u64) {
        while *fn_ != 0 && *fn_ & 1 == 0 {
            *fn_ >>= 1;
            *sn >>= 1;
        }
    }

    /// RFC 9162 §2.1.3.2: verifies an inclusion proof of the record with leaf hash
    /// `leaf` at `index` in the tree of `tree_size` records with root `root`.
    ///
    /// Any failure of the algorithm (wrong length included) is
    /// [`LogError::ProofMismatch`].
    pub fn verify_inclusion(
        proof: &[Hash],
        tree_size: u64,
        root: &Hash,
        index: u64,
        leaf: &Hash,
    ) -> Result<(), LogError> {
        // Step 1.
        if index >= tree_size {
            return Err(LogError::IndexOutOfRange {
                index,
                size: tree_size,
            });
        }
        // Steps 2 and 3.
        let mut fn_ = index;
        let mut sn = tree_size - 1;
        let mut r = *leaf;
        // Step 4.
        for p in proof {
            if sn == 0 {
                return Err(LogError::ProofMismatch);
            }
            if fn_ & 1 == 1 || fn_ == sn {
                r = node_hash(p, &r);
                if fn_ & 1 == 0 {
                    shift_while_even(&mut fn_, &mut sn);
                }
            } else {
                r = node_hash(&r, p);
            }
            fn_ >>= 1;
            sn >>= 1;
        }
        // Step 5.
        if sn == 0 && r == *root {
            Ok(())
        } else {
            Err(LogError::ProofMismatch)
        }
    }

    /// RFC 9162 §2.1.4.2: verifies that the tree of `old_size` records with root
    /// `old_root` is a prefix of the tree of `new_size` records with root `new_root`.
    ///
    /// The RFC algorithm covers `0 < old_size < new_size`; the other cases are
    /// settled as in [`super::check_tree`]. Any failure of the algorithm is
    /// [`LogError::ProofMismatch`].
    pub fn verify_consistency(
        proof: &[Hash],
        new_size: u64,
        new_root: &Hash,
        old_size: u64,
        old_root: &Hash,
    ) -> Result<(), LogError> {
        if let Some(done) = trivial_consistency(proof, new_size, new_root, old_size, old_root) {
            return done;
        }
        // Step 1.
        if proof.is_empty() {
            return Err(LogError::ProofMismatch);
        }
        // Step 2: when the old tree is a perfect subtree, its root seeds the path.
        let mut path = Vec::with_capacity(proof.len() + 1);
        if old_size.is_power_of_two() {
            path.push(*old_root);
        }
        path.extend_from_slice(proof);
        // Step 3.
        let mut fn_ = old_size - 1;
        let mut sn = new_size - 1;
        // Step 4.
        while fn_ & 1 == 1 {
            fn_ >>= 1;
            sn >>= 1;
        }
        // Step 5.
        let Some((first, rest)) = path.split_first() else {
            return Err(LogError::ProofMismatch);
        };
        let mut fr = *first;
        let mut sr = *first;
        // Step 6.
        for c in rest {
            if sn == 0 {
                return Err(LogError::ProofMismatch);
            }
            if fn_ & 1 == 1 || fn_ == sn {
                fr = node_hash(c, &fr);
                sr = node_hash(c, &sr);
                if fn_ & 1 == 0 {
                    shift_while_even(&mut fn_, &mut sn);
                }
            } else {
                sr = node_hash(&sr, c);
            }
            fn_ >>= 1;
            sn >>= 1;
        }
        // Step 7.
        if fr == *old_root && sr == *new_root && sn == 0 {
            Ok(())
        } else {
            Err(LogError::ProofMismatch)
        }
    }
}

// ---------------------------------------------------------------------------------
// C2SP tlog-tiles (https://c2sp.org/tlog-tiles)

/// A tile of the tree, as served at `tile/<L>/<N>[.p/<W>]` (c2sp.org/tlog-tiles,
/// "Merkle Tree").
///
/// Tile `n` at level `l` holds `width` consecutive hashes at Merkle level `8·l`,
/// starting with node `n·256`: leaf hashes at level 0, and above that the roots of
/// full tiles of the level below. A tile of width 256 is full; narrower ones are the
/// partial right-most tiles of a tree.
///
/// INVARIANT: `level <= 63` and `1 <= width <= 256`, checked by [`Tile::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tile {
    level: u8,
    n: u64,
    width: u16,
}

/// Longest tile or entry path accepted by the parsers; the longest canonical one,
/// `tile/63/x018/x446/x744/x073/x709/x551/615.p/255`, is 47 bytes.
const MAX_TILE_PATH: usize = 64;

impl Tile {
    /// The tile at `level` with index `n` and `width` hashes.
    pub fn new(level: u8, n: u64, width: u16) -> Result<Self, LogError> {
        if level > MAX_TILE_LEVEL || width == 0 || width > TILE_WIDTH {
            return Err(LogError::BadTile { level, width });
        }
        Ok(Tile { level, n, width })
    }

    /// Tile level: 0 holds leaf hashes.
    pub fn level(&self) -> u8 {
        self.level
    }

    /// Index of the tile within its level.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// Number of hashes in the tile, 1..=256.
    pub fn width(&self) -> u16 {
        self.width
    }

    /// Whether the tile has fewer than 256 hashes.
    pub fn is_partial(&self) -> bool {
        self.width < TILE_WIDTH
    }

    /// Size of the tile's body in bytes: `width · 32`.
    pub fn byte_len(&self) -> usize {
        usize::from(self.width) * HASH_SIZE
    }

    /// The path `tile/<L>/<N>[.p/<W>]`, without the log's URL prefix.
    pub fn path(&self) -> String {
        format!(
            "tile/{}/{}",
            self.level,
            encode_index_width(self.n, self.width)
        )
    }

    /// Parses a path made by [`Tile::path`]; only the canonical spelling is accepted
    /// (no leading zeros, no `x000` groups in front, partial width 1..=255).
    pub fn parse_path(path: &str) -> Result<Self, LogError> {
        if path.len() > MAX_TILE_PATH {
            return Err(LogError::BadTilePath("too long"));
        }
        let rest = path
            .strip_prefix("tile/")
            .ok_or(LogError::BadTilePath("missing `tile/` prefix"))?;
        let (level, rest) = rest
            .split_once('/')
            .ok_or(LogError::BadTilePath("missing level"))?;
        let level = parse_decimal(level, u64::from(MAX_TILE_LEVEL))
            .and_then(|l| u8::try_from(l).ok())
            .ok_or(LogError::BadTilePath("level is not a number 0..=63"))?;
        let (n, width) = decode_index_width(rest)?;
        let tile = Tile::new(level, n, width)?;
        if tile.path() != path {
            return Err(LogError::BadTilePath("not in canonical form"));
        }
        Ok(tile)
    }

    /// The stored hash indexes of the tile's hashes, in order; `None` if the tile
    /// lies beyond [`MAX_TREE_SIZE`] records.
    pub fn stored_hash_indexes(&self) -> Option<Vec<u64>> {
        let merkle_level = u32::from(self.level) * u32::from(TILE_HEIGHT);
        if merkle_level > 62 {
            return None;
        }
        let first = self.n.checked_mul(u64::from(TILE_WIDTH))?;
        let end = first.checked_add(u64::from(self.width))?;
        // Records covered up to the tile's last hash.
        let records = end.checked_mul(1u64 << merkle_level)?;
        if records > MAX_TREE_SIZE {
            return None;
        }
        let level = u8::try_from(merkle_level).ok()?;
        Some((first..end).map(|i| stored_hash_index(level, i)).collect())
    }

    /// The entry bundle behind a level-0 tile; `None` for higher levels.
    pub fn entry_bundle(&self) -> Option<EntryBundle> {
        (self.level == 0).then_some(EntryBundle {
            n: self.n,
            width: self.width,
        })
    }

    /// Whether this tile is one a tree of `size` records is served as (see
    /// [`tiles_for_size`]): a full tile inside it or its right-most partial tile.
    pub fn belongs_to(&self, size: u64) -> bool {
        let shift = u32::from(self.level) * u32::from(TILE_HEIGHT);
        let hashes = size.checked_shr(shift).unwrap_or(0);
        let full = hashes / u64::from(TILE_WIDTH);
        let partial = hashes % u64::from(TILE_WIDTH);
        if self.is_partial() {
            self.n == full && u64::from(self.width) == partial
        } else {
            self.n < full
        }
    }
}

impl fmt::Display for Tile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// A bundle of entries, as served at `tile/entries/<N>[.p/<W>]` (c2sp.org/tlog-tiles,
/// "Log entries"): the entries whose leaf hashes make up the level-0 tile `n`.
///
/// INVARIANT: `1 <= width <= 256`, checked by [`EntryBundle::new`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct EntryBundle {
    n: u64,
    width: u16,
}

impl EntryBundle {
    /// The bundle with index `n` and `width` entries.
    pub fn new(n: u64, width: u16) -> Result<Self, LogError> {
        if width == 0 || width > TILE_WIDTH {
            return Err(LogError::BadTile { level: 0, width });
        }
        Ok(EntryBundle { n, width })
    }

    /// Index of the bundle: entries `n·256 ..` are in it.
    pub fn n(&self) -> u64 {
        self.n
    }

    /// Number of entries in the bundle, 1..=256.
    pub fn width(&self) -> u16 {
        self.width
    }

    /// Whether the bundle has fewer than 256 entries.
    pub fn is_partial(&self) -> bool {
        self.width < TILE_WIDTH
    }

    /// The level-0 tile whose hashes are the leaf hashes of these entries.
    pub fn tile(&self) -> Tile {
        Tile {
            level: 0,
            n: self.n,
            width: self.width,
        }
    }

    /// The path `tile/entries/<N>[.p/<W>]`, without the log's URL prefix.
    pub fn path(&self) -> String {
        format!("tile/entries/{}", encode_index_width(self.n, self.width))
    }

    /// Parses a path made by [`EntryBundle::path`]; canonical spelling only.
    pub fn parse_path(path: &str) -> Result<Self, LogError> {
        if path.len() > MAX_TILE_PATH {
            return Err(LogError::BadTilePath("too long"));
        }
        let rest = path
            .strip_prefix("tile/entries/")
            .ok_or(LogError::BadTilePath("missing `tile/entries/` prefix"))?;
        let (n, width) = decode_index_width(rest)?;
        let bundle = EntryBundle::new(n, width)?;
        if bundle.path() != path {
            return Err(LogError::BadTilePath("not in canonical form"));
        }
        Ok(bundle)
    }
}

impl fmt::Display for EntryBundle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path())
    }
}

/// `<N>[.p/<W>]`: `n` in 3-digit groups, all but the last prefixed with `x`
/// (1234067 → `x001/x234/067`), and the width only for partial tiles.
fn encode_index_width(n: u64, width: u16) -> String {
    let mut groups = Vec::with_capacity(7);
    let mut rest = n;
    loop {
        groups.push(rest % 1000);
        rest /= 1000;
        if rest == 0 {
            break;
        }
    }
    let mut out = String::with_capacity(groups.len() * 5 + 6);
    for (i, group) in groups.iter().rev().enumerate() {
        if i + 1 < groups.len() {
            out.push_str(&format!("x{group:03}/"));
        } else {
            out.push_str(&format!("{group:03}"));
        }
    }
    if width < TILE_WIDTH {
        out.push_str(&format!(".p/{width}"));
    }
    out
}

/// Reads `<N>[.p/<W>]` loosely but without overflow; the callers then insist the
/// result re-encodes to the same text, which rules out every non-canonical spelling.
fn decode_index_width(text: &str) -> Result<(u64, u16), LogError> {
    let (index, width) = match text.split_once(".p/") {
        Some((index, width)) => {
            let width = parse_decimal(width, u64::from(TILE_WIDTH) - 1)
                .filter(|&w| w >= 1)
                .and_then(|w| u16::try_from(w).ok())
                .ok_or(LogError::BadTilePath(
                    "partial width is not a number 1..=255",
                ))?;
            (index, width)
        }
        None => (text, TILE_WIDTH),
    };
    let mut n: u64 = 0;
    let mut groups = index.split('/').peekable();
    while let Some(group) = groups.next() {
        let last = groups.peek().is_none();
        let digits = if last {
            group
        } else {
            group
                .strip_prefix('x')
                .ok_or(LogError::BadTilePath("index group lacks its `x` prefix"))?
        };
        if digits.len() != 3 {
            return Err(LogError::BadTilePath("index group is not 3 digits"));
        }
        let value =
            parse_decimal_digits(digits).ok_or(LogError::BadTilePath("index is not a number"))?;
        n = n
            .checked_mul(1000)
            .and_then(|n| n.checked_add(value))
            .ok_or(LogError::BadTilePath("index is too large"))?;
    }
    Ok((n, width))
}

/// Parses ASCII digits only (no sign, no spaces); leading zeros allowed here.
fn parse_decimal_digits(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

/// A decimal number `<= max` without leading zeros.
fn parse_decimal(text: &str, max: u64) -> Option<u64> {
    if text.len() > 1 && text.starts_with('0') {
        return None;
    }
    parse_decimal_digits(text).filter(|&v| v <= max)
}

/// Every tile a tree of `size` records is served as (c2sp.org/tlog-tiles, "Partial
/// Tiles"), level by level, left to right: at level `l`, `⌊size / 256^(l+1)⌋` full
/// tiles and, if `⌊size / 256^l⌋ mod 256` is not 0, one partial tile of that width.
///
/// A tree of 70,000 records yields 273 full and one partial (width 112) tiles at level
/// 0, one full and one partial (17) at level 1, and one partial (1) at level 2.
pub fn tiles_for_size(size: u64) -> impl Iterator<Item = Tile> {
    // 256^8 = 2^64, so no u64 tree reaches level 8.
    (0..TILE_HEIGHT).flat_map(move |level| {
        let shift = u32::from(level) * u32::from(TILE_HEIGHT);
        let hashes = size.checked_shr(shift).unwrap_or(0);
        let full = hashes / u64::from(TILE_WIDTH);
        let partial = u16::try_from(hashes % u64::from(TILE_WIDTH)).unwrap_or(0);
        let fulls = (0..full).map(move |n| Tile {
            level,
            n,
            width: TILE_WIDTH,
        });
        let last = (partial > 0).then_some(Tile {
            level,
            n: full,
            width: partial,
        });
        fulls.chain(last)
    })
}

/// The partial tiles of a tree of `size` records: at most one per level, at most 8.
/// These are what change between checkpoints besides newly completed full tiles.
pub fn partial_tiles(size: u64) -> Vec<Tile> {
    (0..TILE_HEIGHT)
        .filter_map(|level| {
            let shift = u32::from(level) * u32::from(TILE_HEIGHT);
            let hashes = size.checked_shr(shift).unwrap_or(0);
            let partial = u16::try_from(hashes % u64::from(TILE_WIDTH)).unwrap_or(0);
            (partial > 0).then_some(Tile {
                level,
                n: hashes / u64::from(TILE_WIDTH),
                width: partial,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;

    #[test]
    fn stored_hash_index_matches_the_append_order() {
        // Appending leaves 0..8: leaf 0; leaf 1, node(1,0); leaf 2; leaf 3, node(1,1),
        // node(2,0); leaf 4; leaf 5, node(1,2); leaf 6; leaf 7, node(1,3), node(2,1),
        // node(3,0).
        let order: [(u8, u64); 15] = [
            (0, 0),
            (0, 1),
            (1, 0),
            (0, 2),
            (0, 3),
            (1, 1),
            (2, 0),
            (0, 4),
            (0, 5),
            (1, 2),
            (0, 6),
            (0, 7),
            (1, 3),
            (2, 1),
            (3, 0),
        ];
        for (index, &(level, n)) in order.iter().enumerate() {
            assert_eq!(stored_hash_index(level, n), index as u64, "({level}, {n})");
            assert_eq!(split_stored_hash_index(index as u64), (level, n));
        }
    }

    #[test]
    fn split_inverts_index_everywhere_small() {
        for index in 0..100_000u64 {
            let (level, n) = split_stored_hash_index(index);
            assert_eq!(stored_hash_index(level, n), index);
        }
    }

    #[test]
    fn split_inverts_index_for_large_nodes() {
        for level in 0..40u8 {
            for n in [0u64, 1, 2, 3, 1000, (1 << 20) + 7] {
                let index = stored_hash_index(level, n);
                assert_eq!(split_stored_hash_index(index), (level, n));
            }
        }
        let top = stored_hash_index(62, 0);
        assert_eq!(split_stored_hash_index(top), (62, 0));
    }

    #[test]
    fn stored_hash_count_counts_appends() {
        let mut total = 0u64;
        for n in 0..5000u64 {
            assert_eq!(stored_hash_count(n), total);
            total += 1 + u64::from(n.trailing_ones());
        }
        // 2n - popcount(n) for a perfect tree count: 2^k leaves store 2^(k+1) - 1.
        assert_eq!(stored_hash_count(1 << 20), (1 << 21) - 1);
    }

    #[test]
    fn split_point_is_largest_power_of_two_below() {
        assert_eq!(split_point(2), (1, 0));
        assert_eq!(split_point(3), (2, 1));
        assert_eq!(split_point(4), (2, 1));
        assert_eq!(split_point(5), (4, 2));
        assert_eq!(split_point(u64::MAX), (1 << 63, 63));
        assert_eq!(split_point(1 << 63), (1 << 62, 62));
    }

    #[test]
    fn proof_lengths() {
        assert_eq!(inclusion_proof_len(0, 1), 0);
        assert_eq!(inclusion_proof_len(0, 8), 3);
        assert_eq!(inclusion_proof_len(2, 3), 1);
        assert_eq!(inclusion_proof_len(4, 5), 1);
        assert_eq!(inclusion_proof_len(u64::MAX - 1, u64::MAX), 63);
        assert_eq!(consistency_proof_len(1, 8), 3);
        assert_eq!(consistency_proof_len(6, 8), 3);
        assert_eq!(consistency_proof_len(2, 5), 2);
        assert_eq!(consistency_proof_len(6, 7), 3);
        assert_eq!(consistency_proof_len(4, 4), 0);
        assert_eq!(consistency_proof_len(0, 4), 0);
    }

    #[test]
    fn index_groups_encode_as_the_spec_example() {
        assert_eq!(encode_index_width(1_234_067, 256), "x001/x234/067");
        assert_eq!(encode_index_width(0, 256), "000");
        assert_eq!(encode_index_width(1000, 7), "x001/000.p/7");
        assert_eq!(
            encode_index_width(u64::MAX, 255),
            "x018/x446/x744/x073/x709/x551/615.p/255"
        );
    }

    #[test]
    fn hash_debug_and_display() {
        let h = empty_tree_hash();
        assert_eq!(format!("{h:?}"), "Hash(e3b0c44298fc…)");
        assert_eq!(
            h.to_string(),
            "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
        );
        assert_eq!(Hash::from_base64(&h.to_base64()), Ok(h));
        assert_eq!(Hash::from_base64("47DEQpj8"), Err(LogError::BadHash));
    }
}
