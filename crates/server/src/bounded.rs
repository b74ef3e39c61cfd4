//! The read model's one cache type: a bounded map of shared values, each entry
//! optionally fresh for a while only.
//!
//! Full means emptied, not evicted one by one: the caches hold what is cheap to read
//! again (a policy parse, a store row), so the simplest bound that can never grow
//! without limit is enough, and a hit is one read lock and a clone of an `Arc`.
//!
//! A value read from the store while a write drops its key may predate the write: a
//! fill is therefore taken with a [`Fill`] before the read and kept only if no key of
//! its bucket was dropped since ([`Bounded::fill`]), so a dropped entry never comes
//! back stale.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, RandomState};
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

/// At most `max` entries; with a `ttl`, an entry older than that is a miss.
#[derive(Debug)]
pub struct Bounded<K, V> {
    map: RwLock<Entries<K, V>>,
    max: usize,
    ttl: Option<Duration>,
    /// Chooses a key's removal bucket.
    hasher: RandomState,
    /// Hits and misses, for the metrics (counted only once [`Bounded::counted`]).
    counters: Option<crate::metrics::CacheCounters>,
}

#[derive(Debug)]
struct Entries<K, V> {
    map: HashMap<K, (Instant, V)>,
    /// Per bucket of keys, how many times one of its keys was dropped
    /// ([`Bounded::remove`]): a [`Fill`] of a key taken before one in its bucket is
    /// refused. Buckets, not one counter, so that a busy writer (registrations, the
    /// change feed) does not refuse every fill of the cache.
    removals: [u64; BUCKETS],
}

/// Buckets of keys the removals are counted in.
const BUCKETS: usize = 64;

/// A read from the store about to fill a [`Bounded`], taken before the read.
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct Fill {
    bucket: usize,
    removals: u64,
}

impl<K: Eq + Hash + Clone, V: Clone> Bounded<K, V> {
    /// An empty cache of at most `max` entries, each kept for `ttl` if given.
    pub fn new(max: usize, ttl: Option<Duration>) -> Self {
        Bounded {
            map: RwLock::new(Entries {
                map: HashMap::new(),
                removals: [0; BUCKETS],
            }),
            max: max.max(1),
            ttl,
            hasher: RandomState::new(),
            counters: None,
        }
    }

    /// Counts hits and misses of [`Bounded::get_if`] in `counters`.
    pub fn counted(mut self, counters: crate::metrics::CacheCounters) -> Self {
        self.counters = Some(counters);
        self
    }

    /// The entry for `key`, if present and fresh.
    pub fn get(&self, key: &K) -> Option<V> {
        self.get_if(key, |_| true)
    }

    /// The entry for `key`, if present, fresh and `accept`ed (a hash hit whose value
    /// must also match).
    pub fn get_if(&self, key: &K, accept: impl FnOnce(&V) -> bool) -> Option<V> {
        let found = self.lookup(key, accept);
        if let Some(c) = &self.counters {
            if found.is_some() {
                c.hits.inc();
            } else {
                c.misses.inc();
            }
        }
        found
    }

    fn lookup(&self, key: &K, accept: impl FnOnce(&V) -> bool) -> Option<V> {
        let entries = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let (at, value) = entries.map.get(key)?;
        if self.ttl.is_some_and(|ttl| at.elapsed() >= ttl) || !accept(value) {
            return None;
        }
        Some(value.clone())
    }

    /// Keeps `value` for `key` (emptying the cache first if it is full), for values
    /// that never change once written (a parse of the key itself); a value read from
    /// a store that writes may drop goes in by [`Bounded::fill`].
    pub fn insert(&self, key: K, value: V) {
        let mut entries = self.map.write().unwrap_or_else(PoisonError::into_inner);
        Self::put(&mut entries, self.max, key, value);
    }

    fn put(entries: &mut Entries<K, V>, max: usize, key: K, value: V) {
        if entries.map.len() >= max && !entries.map.contains_key(&key) {
            entries.map.clear();
        }
        entries.map.insert(key, (Instant::now(), value));
    }

    fn bucket(&self, key: &K) -> usize {
        // The remainder is below BUCKETS: the cast back cannot truncate.
        (self.hasher.hash_one(key) % BUCKETS as u64) as usize
    }

    /// Taken before reading the store for `key`'s value to [`Bounded::fill`] with.
    pub fn start_fill(&self, key: &K) -> Fill {
        let bucket = self.bucket(key);
        let entries = self.map.read().unwrap_or_else(PoisonError::into_inner);
        Fill {
            bucket,
            removals: entries.removals.get(bucket).copied().unwrap_or_default(),
        }
    }

    /// Keeps `value` for `key` if no key of its bucket was dropped since `fill` was
    /// taken: the value may have been read before the write that dropped it committed,
    /// and a dropped entry must not come back stale. Whether it was kept.
    pub fn fill(&self, fill: Fill, key: K, value: V) -> bool {
        let mut entries = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if fill.bucket != self.bucket(&key)
            || entries.removals.get(fill.bucket).copied() != Some(fill.removals)
        {
            return false;
        }
        Self::put(&mut entries, self.max, key, value);
        true
    }

    /// Drops `key`'s entry, and refuses every fill of a key of its bucket started
    /// before.
    ///
    /// INVARIANT: a write that changes what a key's entry would hold calls this after
    /// it commits and before it answers.
    pub fn remove(&self, key: &K) {
        let bucket = self.bucket(key);
        let mut entries = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = entries.removals.get_mut(bucket) {
            *n = n.wrapping_add(1);
        }
        entries.map.remove(key);
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .map
            .len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_holds_more_than_its_bound() {
        let c = Bounded::new(3, None);
        for i in 0..10 {
            c.insert(i, i * 10);
            assert!(c.len() <= 3);
            assert_eq!(c.get(&i), Some(i * 10));
        }
        // Replacing a present key never empties it.
        c.insert(9, 1);
        assert_eq!(c.get(&9), Some(1));
    }

    #[test]
    fn counted_lookups_are_hits_or_misses() {
        let counters = crate::metrics::CacheCounters::default();
        let c = Bounded::new(8, None).counted(counters.clone());
        assert_eq!(c.get(&"k"), None);
        c.insert("k", 1);
        assert_eq!(c.get(&"k"), Some(1));
        assert_eq!(c.get_if(&"k", |v| *v == 2), None);
        assert_eq!((counters.hits.get(), counters.misses.get()), (1, 2));
    }

    #[test]
    fn stale_and_refused_entries_are_misses() {
        let c = Bounded::new(8, Some(Duration::ZERO));
        c.insert("k", 1);
        assert_eq!(c.get(&"k"), None);
        let c = Bounded::new(8, None);
        c.insert("k", 1);
        assert_eq!(c.get_if(&"k", |v| *v == 2), None);
        assert_eq!(c.get_if(&"k", |v| *v == 1), Some(1));
        c.remove(&"k");
        assert!(c.is_empty());
    }

    #[test]
    fn a_fill_started_before_a_removal_is_refused() {
        let c = Bounded::new(8, None);
        // Read before the write that drops the key: the value may be stale.
        let before = c.start_fill(&"k".to_string());
        c.remove(&"k".to_string());
        assert!(!c.fill(before, "k".to_string(), "stale"));
        assert_eq!(c.get(&"k".to_string()), None);
        // A removal of a key in another bucket leaves the fill alone.
        let other = (0..1000)
            .map(|i| format!("other{i}"))
            .find(|o| c.bucket(o) != c.bucket(&"k".to_string()))
            .unwrap();
        let before = c.start_fill(&"k".to_string());
        c.remove(&other);
        assert!(c.fill(before, "k".to_string(), "fresh"));
        assert_eq!(c.get(&"k".to_string()), Some("fresh"));
        // A fill that went in before the removal is dropped by it.
        c.remove(&"k".to_string());
        assert_eq!(c.get(&"k".to_string()), None);
        // A fill is for the key it was taken for (`other` is of another bucket).
        let taken = c.start_fill(&"k".to_string());
        assert!(!c.fill(taken, other, "wrong key"));
    }
}
