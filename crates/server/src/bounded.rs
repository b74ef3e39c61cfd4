//! The read model's one cache type: a bounded map of shared values, each entry
//! optionally fresh for a while only.
//!
//! Full means emptied, not evicted one by one: the caches hold what is cheap to read
//! again (a policy parse, a store row), so the simplest bound that can never grow
//! without limit is enough, and a hit is one read lock and a clone of an `Arc`.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

/// At most `max` entries; with a `ttl`, an entry older than that is a miss.
#[derive(Debug)]
pub struct Bounded<K, V> {
    map: RwLock<HashMap<K, (Instant, V)>>,
    max: usize,
    ttl: Option<Duration>,
    /// Hits and misses, for the metrics (counted only once [`Bounded::counted`]).
    counters: Option<crate::metrics::CacheCounters>,
}

impl<K: Eq + Hash + Clone, V: Clone> Bounded<K, V> {
    /// An empty cache of at most `max` entries, each kept for `ttl` if given.
    pub fn new(max: usize, ttl: Option<Duration>) -> Self {
        Bounded {
            map: RwLock::new(HashMap::new()),
            max: max.max(1),
            ttl,
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
        let map = self.map.read().unwrap_or_else(PoisonError::into_inner);
        let (at, value) = map.get(key)?;
        if self.ttl.is_some_and(|ttl| at.elapsed() >= ttl) || !accept(value) {
            return None;
        }
        Some(value.clone())
    }

    /// Keeps `value` for `key` (emptying the cache first if it is full).
    pub fn insert(&self, key: K, value: V) {
        let mut map = self.map.write().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= self.max && !map.contains_key(&key) {
            map.clear();
        }
        map.insert(key, (Instant::now(), value));
    }

    /// Drops `key`'s entry.
    pub fn remove(&self, key: &K) {
        self.map
            .write()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(key);
    }

    /// Entries held now.
    pub fn len(&self) -> usize {
        self.map
            .read()
            .unwrap_or_else(PoisonError::into_inner)
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
}
