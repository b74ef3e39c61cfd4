//! The receiver's own replay cache for proofs of possession.
//!
//! A DPoP proof is remembered by `(jkt, jti)` and a message signature by
//! `(keyid, nonce)` (the two live in separate namespaces), each until the last second
//! at which the proof's own checks would still accept it (the `replay_until` core's
//! `dpop::verify` and `httpsig::verify` return); after that the proof is refused as
//! too old anyway, so forgetting it opens nothing. Entries are stored as
//! the SHA-256 of the key, so an entry is 32 bytes plus its expiry whatever the
//! client sent, and hostile keys cannot aim at one hash bucket.
//!
//! What this is not: shared between processes. Two replicas of a receiver each accept
//! a proof once; DPoP proofs carry `htu`, so that only matters for replicas serving
//! the same public URL (RFC 9449 §11.1 leaves replay across servers to the
//! deployment). Put such replicas in online mode, where the registry keeps the
//! cache, if that matters.

use std::collections::HashMap;
use std::sync::Mutex;

/// Default bound on remembered proofs: about 40 MiB at most, enough for 3,300 proofs
/// a second over the default 300 s window.
pub const DEFAULT_CAPACITY: usize = 1_000_000;

/// Shards: concurrent requests rarely contend for one lock.
const SHARDS: usize = 16;

/// Why a proof could not be claimed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayError {
    /// Seen before, within its window.
    Replay,
    /// The cache is full of proofs still inside their windows. Fail closed: the
    /// request is refused (503) rather than a live entry evicted, which would let
    /// that proof be replayed.
    Full,
}

/// Which kind of proof a key belongs to (separate namespaces).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofNamespace {
    /// DPoP, keyed by `(jkt, jti)`.
    Dpop,
    /// HTTP message signature, keyed by `(keyid, nonce)`.
    HttpSignature,
}

#[derive(Debug, Default)]
struct Shard {
    /// Entry hash → last second (Unix) at which the proof is still acceptable.
    seen: HashMap<[u8; 32], i64>,
    /// When expired entries were last swept out.
    last_sweep: i64,
}

/// An in-memory replay cache bounded in size and, per entry, by the proof window.
#[derive(Debug)]
pub struct ReplayCache {
    shards: Vec<Mutex<Shard>>,
    per_shard: usize,
}

impl ReplayCache {
    /// A cache holding at most `capacity` live proofs (at least one per shard).
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: capacity.div_ceil(SHARDS).max(1),
        }
    }

    /// Claims the proof `(id, unique)` of kind `ns`, which stays acceptable until
    /// `last_valid` (Unix seconds, inclusive). `Err(Replay)` if it was claimed before
    /// and has not yet aged out.
    pub fn claim(
        &self,
        ns: ProofNamespace,
        id: &str,
        unique: &str,
        last_valid: i64,
        now: i64,
    ) -> Result<(), ReplayError> {
        let key = entry_key(ns, id, unique);
        let shard = &self.shards[usize::from(key[0]) % SHARDS];
        // A poisoned lock only means another request panicked mid-insert; the map
        // itself is still a valid map.
        let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(&until) = shard.seen.get(&key)
            && until >= now
        {
            return Err(ReplayError::Replay);
        }
        // Sweep expired entries when the shard is half full, at most once a second:
        // a second sweep within the same second can free nothing the first did not
        // (entries added since are live until at least `now`), and sweeping on every
        // claim of a full shard would let a flood of proofs cost a full scan each.
        let len = shard.seen.len();
        if len >= self.per_shard / 2 && shard.last_sweep < now {
            shard.seen.retain(|_, until| *until >= now);
            shard.last_sweep = now;
        }
        if shard.seen.len() >= self.per_shard {
            return Err(ReplayError::Full);
        }
        shard.seen.insert(key, last_valid);
        Ok(())
    }

    /// Live and expired-but-not-yet-swept entries, for tests and metrics.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|p| p.into_inner()).seen.len())
            .sum()
    }

    /// True if nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// SHA-256 of the namespace, then both parts length-prefixed (no two different pairs
/// share an encoding).
fn entry_key(ns: ProofNamespace, id: &str, unique: &str) -> [u8; 32] {
    let mut buf = Vec::with_capacity(1 + 16 + id.len() + unique.len());
    buf.push(match ns {
        ProofNamespace::Dpop => 1,
        ProofNamespace::HttpSignature => 2,
    });
    buf.extend_from_slice(&(id.len() as u64).to_be_bytes());
    buf.extend_from_slice(id.as_bytes());
    buf.extend_from_slice(&(unique.len() as u64).to_be_bytes());
    buf.extend_from_slice(unique.as_bytes());
    bonafide_core::sha256(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_is_claimed_once_within_its_window() {
        let c = ReplayCache::new(100);
        assert_eq!(c.claim(ProofNamespace::Dpop, "k", "j1", 110, 100), Ok(()));
        assert_eq!(
            c.claim(ProofNamespace::Dpop, "k", "j1", 110, 105),
            Err(ReplayError::Replay)
        );
        assert_eq!(
            c.claim(ProofNamespace::Dpop, "k", "j1", 110, 110),
            Err(ReplayError::Replay)
        );
        // Once its window is over, the proof's own checks refuse it; the cache may forget.
        assert_eq!(c.claim(ProofNamespace::Dpop, "k", "j1", 200, 111), Ok(()));
    }

    #[test]
    fn namespaces_and_key_parts_do_not_collide() {
        let c = ReplayCache::new(100);
        assert_eq!(c.claim(ProofNamespace::Dpop, "k", "j", 10, 0), Ok(()));
        assert_eq!(
            c.claim(ProofNamespace::HttpSignature, "k", "j", 10, 0),
            Ok(())
        );
        assert_eq!(c.claim(ProofNamespace::Dpop, "kj", "", 10, 0), Ok(()));
        assert_eq!(c.claim(ProofNamespace::Dpop, "", "kj", 10, 0), Ok(()));
        assert_eq!(c.claim(ProofNamespace::Dpop, "other", "j", 10, 0), Ok(()));
        assert_eq!(c.len(), 5);
    }

    #[test]
    fn full_of_live_proofs_fails_closed_and_expired_ones_make_room() {
        let c = ReplayCache::new(SHARDS); // one entry a shard
        let mut refused = 0;
        for i in 0..200 {
            match c.claim(ProofNamespace::Dpop, "k", &i.to_string(), 50, 0) {
                Ok(()) => {}
                Err(ReplayError::Full) => refused += 1,
                Err(e) => panic!("{e:?}"),
            }
        }
        assert!(refused > 0);
        assert!(c.len() <= SHARDS);
        // Later, every entry has expired: there is room again.
        for i in 200..220 {
            let r = c.claim(ProofNamespace::Dpop, "k", &i.to_string(), 150, 100);
            assert_ne!(r, Err(ReplayError::Replay));
        }
        assert!(c.len() <= SHARDS);
    }
}
