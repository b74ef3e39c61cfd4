//! The audit log's export, read back (`serve --audit-archive DIR_OR_URL`, issue 17 goal
//! 6): where the records of the pruned prefix of the log are served from.
//!
//! `bonafide audit export` writes the log as C2SP tlog-tiles files; `Store::audit_prune`
//! then drops whole tiles of 256 records from the database, keeping every hash at
//! level 8 and above (so each full tile's root, the level-8 node). A pruned tile is read
//! here from its entry bundle (`tile/entries/<N>`): its 256 entries are hashed into
//! leaf hashes and up to the tile's root, which must equal the root the database kept;
//! only then is anything of it served (its entries, and the hashes below level 8 that
//! proofs and hash tiles need). An archive that was altered, or serves another log,
//! is refused with [`ArchiveError::Mismatch`], never served.
//!
//! Memory: at most [`CACHED_TILES`] verified tiles are kept (least recently used
//! first out), each its 256 entries and its 511 hashes below the root: about 150 KB
//! for verify entries (about 500 bytes each), under 10 MB in all.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bonafide_core::merkle::{self, EntryBundle, Hash, TILE_WIDTH, Tile};

/// Verified tiles kept in memory.
pub const CACHED_TILES: usize = 64;
/// Longest an archive read may take (connect and body).
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Archive reads in flight at once.
const ARCHIVE_READS: usize = 4;
/// Largest file read from an archive: a full entry bundle of 256 entries of at most
/// 65,535 bytes each, with their 2-byte lengths.
const MAX_FILE: usize = 256 * (65_535 + 2);
/// Merkle levels in a tile: a tile's root is 8 levels above its leaves.
const TILE_LEVELS: usize = merkle::TILE_HEIGHT as usize;

/// Why the archive could not serve what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The records asked for were pruned and no archive is configured.
    #[error(
        "records below {pruned} were pruned from the database and no audit archive is configured: start the server with `--audit-archive DIR_OR_URL` (where `bonafide audit export` wrote the log)"
    )]
    NotConfigured {
        /// Where the pruned prefix ends.
        pruned: u64,
    },
    /// The archive cannot be read now (a missing file, a server away).
    #[error("the audit archive cannot be read: {0}")]
    Unavailable(String),
    /// The archive does not match the log (altered, or another log's).
    #[error("the audit archive's `{path}` does not match the log: {reason}")]
    Mismatch {
        /// The file.
        path: String,
        /// What differs.
        reason: String,
    },
}

/// One verified full tile: its entries and every hash from its leaves to its root.
#[derive(Debug)]
pub struct ArchivedTile {
    n: u64,
    entries: Vec<Vec<u8>>,
    /// `levels[l][k]`: the node at level `l` (0 = leaves) and position `k` within the
    /// tile; `levels[8]` holds the root alone.
    levels: Vec<Vec<Hash>>,
}

impl ArchivedTile {
    /// Parses an entry bundle of 256 entries (`u16` big-endian length, then the entry,
    /// c2sp.org/tlog-tiles "Log entries") and hashes it up to its root.
    pub fn from_bundle(n: u64, body: &[u8]) -> Result<Self, String> {
        let mut entries = Vec::with_capacity(usize::from(TILE_WIDTH));
        let mut rest = body;
        while !rest.is_empty() {
            let Some((len, tail)) = rest.split_first_chunk::<2>() else {
                return Err("the bundle ends inside an entry's length".to_owned());
            };
            let len = usize::from(u16::from_be_bytes(*len));
            if tail.len() < len {
                return Err("the bundle ends inside an entry".to_owned());
            }
            let (entry, tail) = tail.split_at(len);
            entries.push(entry.to_vec());
            rest = tail;
        }
        if entries.len() != usize::from(TILE_WIDTH) {
            return Err(format!(
                "a full bundle holds {TILE_WIDTH} entries, this one {}",
                entries.len()
            ));
        }
        let mut levels: Vec<Vec<Hash>> = Vec::with_capacity(TILE_LEVELS + 1);
        levels.push(entries.iter().map(|e| merkle::leaf_hash(e)).collect());
        for _ in 0..TILE_LEVELS {
            let below = levels.last().map(Vec::as_slice).unwrap_or_default();
            let next: Vec<Hash> = below
                .chunks_exact(2)
                .map(|pair| merkle::node_hash(&pair[0], &pair[1]))
                .collect();
            levels.push(next);
        }
        Ok(ArchivedTile { n, entries, levels })
    }

    /// The tile's index (records `n·256 .. n·256 + 256`).
    pub fn n(&self) -> u64 {
        self.n
    }

    /// The tile's root: the level-8 node over its 256 leaves.
    pub fn root(&self) -> Hash {
        self.levels
            .get(TILE_LEVELS)
            .and_then(|l| l.first())
            .copied()
            .unwrap_or_else(merkle::empty_tree_hash)
    }

    /// Its leaf hashes, in order.
    pub fn leaves(&self) -> &[Hash] {
        self.levels.first().map(Vec::as_slice).unwrap_or_default()
    }

    /// The entry of record `index`, if it is in this tile.
    pub fn entry(&self, index: u64) -> Option<&[u8]> {
        let first = self.n.checked_mul(u64::from(TILE_WIDTH))?;
        let at = usize::try_from(index.checked_sub(first)?).ok()?;
        self.entries.get(at).map(Vec::as_slice)
    }

    /// The node at Merkle `level` (< 8) and position `k` in the whole tree, if it lies
    /// in this tile.
    pub fn hash(&self, level: u8, k: u64) -> Option<Hash> {
        let per_tile = u64::from(TILE_WIDTH) >> level;
        if k / per_tile != self.n {
            return None;
        }
        let at = usize::try_from(k % per_tile).ok()?;
        self.levels.get(usize::from(level))?.get(at).copied()
    }
}

enum Source {
    Dir(PathBuf),
    Url {
        base: String,
        client: reqwest::Client,
    },
}

/// The configured archive, with its cache of verified tiles.
pub struct AuditArchive {
    source: Source,
    cache: Mutex<VecDeque<Arc<ArchivedTile>>>,
    /// Tile reads in flight at once: anyone may ask for proofs over pruned records, so
    /// reads (each up to a whole bundle, then hashed) are bounded, and requests for a
    /// tile being read wait for it and find it cached.
    reads: tokio::sync::Semaphore,
}

impl std::fmt::Debug for AuditArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditArchive")
            .field("location", &self.location())
            .finish_non_exhaustive()
    }
}

impl AuditArchive {
    /// The archive at `location`: an `http(s)://` base URL (an operator's own server:
    /// loopback and private addresses are allowed) or a local directory, as `bonafide
    /// audit export --to` wrote it.
    pub fn open(location: &str) -> Result<Self, String> {
        let source = if location.starts_with("http://") || location.starts_with("https://") {
            let client = reqwest::Client::builder()
                .timeout(READ_TIMEOUT)
                .connect_timeout(READ_TIMEOUT)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .map_err(|e| format!("audit archive client: {e}"))?;
            Source::Url {
                base: location.trim_end_matches('/').to_owned(),
                client,
            }
        } else {
            let dir = PathBuf::from(location);
            if !dir.is_dir() {
                return Err(format!(
                    "--audit-archive `{location}` is neither an http(s) URL nor a directory"
                ));
            }
            Source::Dir(dir)
        };
        Ok(AuditArchive {
            source,
            cache: Mutex::new(VecDeque::with_capacity(CACHED_TILES)),
            reads: tokio::sync::Semaphore::new(ARCHIVE_READS),
        })
    }

    /// Where it is, for messages.
    pub fn location(&self) -> String {
        match &self.source {
            Source::Dir(dir) => dir.display().to_string(),
            Source::Url { base, .. } => base.clone(),
        }
    }

    /// The file at `path` (`checkpoint`, `tile/…`); `None` if the archive lacks it.
    pub async fn read(&self, path: &str) -> Result<Option<Vec<u8>>, ArchiveError> {
        let unavailable = |e: String| ArchiveError::Unavailable(format!("`{path}`: {e}"));
        match &self.source {
            Source::Dir(dir) => {
                let file = dir.join(path);
                match tokio::fs::metadata(&file).await {
                    Ok(m) if m.len() > MAX_FILE as u64 => {
                        return Err(unavailable("larger than any archive file".to_owned()));
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
                    _ => {}
                }
                match tokio::fs::read(&file).await {
                    Ok(bytes) => Ok(Some(bytes)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                    Err(e) => Err(unavailable(e.to_string())),
                }
            }
            Source::Url { base, client } => {
                let response = client
                    .get(format!("{base}/{path}"))
                    .send()
                    .await
                    .map_err(|e| unavailable(e.to_string()))?;
                if response.status() == reqwest::StatusCode::NOT_FOUND {
                    return Ok(None);
                }
                if !response.status().is_success() {
                    return Err(unavailable(format!("HTTP {}", response.status())));
                }
                if response
                    .content_length()
                    .is_some_and(|l| l > MAX_FILE as u64)
                {
                    return Err(unavailable("larger than any archive file".to_owned()));
                }
                let mut response = response;
                let mut body = Vec::new();
                while let Some(chunk) = response
                    .chunk()
                    .await
                    .map_err(|e| unavailable(e.to_string()))?
                {
                    if body.len() + chunk.len() > MAX_FILE {
                        return Err(unavailable("larger than any archive file".to_owned()));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(Some(body))
            }
        }
    }

    /// Reads `path`, which the archive must have.
    pub async fn require(&self, path: &str) -> Result<Vec<u8>, ArchiveError> {
        self.read(path).await?.ok_or_else(|| {
            ArchiveError::Unavailable(format!("`{path}` is missing from {}", self.location()))
        })
    }

    /// Full tile `n`, verified against `root` (the level-8 node the database kept):
    /// from the cache, else read, hashed and checked.
    pub async fn tile(&self, n: u64, root: &Hash) -> Result<Arc<ArchivedTile>, ArchiveError> {
        if let Some(tile) = self.cached(n).filter(|t| t.root() == *root) {
            return Ok(tile);
        }
        let _permit = self
            .reads
            .acquire()
            .await
            .map_err(|_| ArchiveError::Unavailable("the archive is closed".to_owned()))?;
        // Read meanwhile by the request this one waited for?
        if let Some(tile) = self.cached(n).filter(|t| t.root() == *root) {
            return Ok(tile);
        }
        let path = EntryBundle::new(n, TILE_WIDTH)
            .map_err(|e| ArchiveError::Unavailable(e.to_string()))?
            .path();
        let body = self.require(&path).await?;
        let tile =
            ArchivedTile::from_bundle(n, &body).map_err(|reason| ArchiveError::Mismatch {
                path: path.clone(),
                reason,
            })?;
        if tile.root() != *root {
            return Err(ArchiveError::Mismatch {
                path,
                reason: format!(
                    "its entries hash to tile root {}, the registry kept {}",
                    tile.root().to_base64(),
                    root.to_base64()
                ),
            });
        }
        let tile = Arc::new(tile);
        self.keep(Arc::clone(&tile));
        Ok(tile)
    }

    /// The level-0 hash tile `n` (full), as raw hashes.
    pub async fn hash_tile(&self, n: u64) -> Result<Vec<u8>, ArchiveError> {
        let path = Tile::new(0, n, TILE_WIDTH)
            .map_err(|e| ArchiveError::Unavailable(e.to_string()))?
            .path();
        let _permit = self
            .reads
            .acquire()
            .await
            .map_err(|_| ArchiveError::Unavailable("the archive is closed".to_owned()))?;
        self.require(&path).await
    }

    fn cached(&self, n: u64) -> Option<Arc<ArchivedTile>> {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = cache.iter().position(|t| t.n == n)?;
        // Most recently used last.
        let tile = cache.remove(at)?;
        cache.push_back(Arc::clone(&tile));
        Some(tile)
    }

    fn keep(&self, tile: Arc<ArchivedTile>) {
        let mut cache = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        cache.retain(|t| t.n != tile.n);
        if cache.len() >= CACHED_TILES {
            cache.pop_front();
        }
        cache.push_back(tile);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(entries: &[Vec<u8>]) -> Vec<u8> {
        let mut body = Vec::new();
        for e in entries {
            body.extend_from_slice(&(e.len() as u16).to_be_bytes());
            body.extend_from_slice(e);
        }
        body
    }

    #[test]
    fn a_tile_hashes_to_the_trees_nodes() {
        let entries: Vec<Vec<u8>> = (0..512)
            .map(|i| format!("{{\"n\":{i}}}").into_bytes())
            .collect();
        let mut stored: Vec<Hash> = Vec::new();
        for (i, e) in entries.iter().enumerate() {
            stored.extend(merkle::stored_hashes(i as u64, e, &stored).unwrap());
        }
        let tile = ArchivedTile::from_bundle(1, &bundle(&entries[256..])).unwrap();
        let at = |level: u8, k: u64| stored[merkle::stored_hash_index(level, k) as usize];
        assert_eq!(tile.root(), at(8, 1));
        for level in 0..8u8 {
            let per = 256u64 >> level;
            for k in [per, per + 1, 2 * per - 1] {
                assert_eq!(tile.hash(level, k), Some(at(level, k)), "{level} {k}");
            }
            assert_eq!(tile.hash(level, per - 1), None);
            assert_eq!(tile.hash(level, 2 * per), None);
        }
        assert_eq!(tile.entry(300), Some(entries[300].as_slice()));
        assert_eq!(tile.entry(255), None);
        assert_eq!(tile.entry(512), None);
    }

    #[test]
    fn bundles_of_another_shape_are_refused() {
        let entries: Vec<Vec<u8>> = (0..256).map(|i| vec![b'a'; i % 7]).collect();
        let good = bundle(&entries);
        assert!(ArchivedTile::from_bundle(0, &good).is_ok());
        assert!(ArchivedTile::from_bundle(0, &good[..good.len() - 1]).is_err());
        assert!(ArchivedTile::from_bundle(0, &bundle(&entries[1..])).is_err());
        let mut longer = good.clone();
        longer.extend_from_slice(&[0, 0]);
        assert!(ArchivedTile::from_bundle(0, &longer).is_err());
        assert!(ArchivedTile::from_bundle(0, &[0]).is_err());
    }
}
