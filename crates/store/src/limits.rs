//! What rate limits (issue 18 item 4) store: token buckets shared by replicas, taken
//! from in small leases ([`crate::Store::rate_take`]), and the limits an admin set
//! ([`crate::Store::set_rate_limit_setting`]). The refill rule is written here once,
//! for both backends; each backend keeps only its SQL.

// A bucket's level is stored in units of 1/`window_ms` of a request: a refill of
// `quota` per `window_ms` is then exactly `quota` units a millisecond, so refills
// lose nothing to rounding however often the bucket is taken from.

/// Longest bucket name a backend stores, bytes.
pub const MAX_BUCKET_BYTES: usize = 200;

/// One lease asked of a shared bucket: up to `want` requests from `bucket`, which
/// holds at most `quota` and refills `quota` per `window_ms`. A bucket never taken
/// from is full.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateTake {
    /// The bucket's name (the server's: policy and a hash of who is limited).
    pub bucket: String,
    /// Most requests the bucket holds (at least 1).
    pub quota: u64,
    /// How long a full refill takes, milliseconds (at least 1).
    pub window_ms: i64,
    /// Requests wanted now (0 only reads the level).
    pub want: u64,
}

/// What a lease got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateGrant {
    /// Requests granted: at most `want`, and only whole ones.
    pub granted: u64,
    /// Whole requests left in the bucket after the take.
    pub remaining: u64,
    /// Milliseconds until the bucket holds one more whole request (at least 1).
    pub next_in_ms: i64,
}

/// A limit an admin set, stored as the server wrote it (opaque to the store): `name`
/// says what it applies to, `value` the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitSetting {
    /// What it applies to (the server's naming).
    pub name: String,
    /// The limit (the server's text).
    pub value: String,
    /// When it was last set.
    pub set_at_ms: i64,
}

/// The per-key limit a new key inherits, decided and written in the transaction that
/// stores the key ([`crate::Store::create_api_key`], [`crate::Store::rotate_api_key`]):
/// the settings it depends on are read there, under the log head's lock that every
/// setting change takes, so no change to them (on any replica) slips between the read
/// and the key, and the key never exists without its limit.
pub struct InheritedLimit {
    /// The new key's setting name.
    pub name: String,
    /// The settings that bound it (its maker's key, the rotated key), by name.
    pub from: Vec<String>,
    /// Given each of `from`'s stored value (`None`: none set), the new key's value and
    /// the audit entry recording it, or `None` to set nothing (the kind's default
    /// applies). The server's rule: the store keeps the values opaque. `Fn`: a backend
    /// may run a transaction again.
    pub decide: InheritDecide,
}

/// [`InheritedLimit::decide`].
pub type InheritDecide = Box<
    dyn Fn(&[Option<String>]) -> Result<Option<(String, crate::AuditRecord)>, crate::StoreError>
        + Send
        + Sync,
>;

impl std::fmt::Debug for InheritedLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InheritedLimit")
            .field("name", &self.name)
            .field("from", &self.from)
            .finish_non_exhaustive()
    }
}

/// A full bucket's level (what a missing row stands for).
pub fn full_level(quota: u64, window_ms: i64) -> i64 {
    i64::try_from(i128::from(quota.max(1)) * i128::from(window_ms.max(1))).unwrap_or(i64::MAX)
}

/// The bucket refilled from its stored level (as of `updated_ms`; `None`: never taken
/// from, so full) to `now_ms`, then `take.want` taken from it as far as whole requests
/// allow; the new level and time to store. Pure: both backends call it inside their
/// write transaction, on the row they locked. A clock behind `updated_ms` (another
/// replica's) refills nothing.
pub fn take(stored: Option<(i64, i64)>, take: &RateTake, now_ms: i64) -> (RateGrant, i64, i64) {
    let quota = i128::from(take.quota.max(1));
    let window = i128::from(take.window_ms.max(1));
    let full = i128::from(full_level(take.quota, take.window_ms));
    let (level, updated) = match stored {
        Some((level, updated)) => (i128::from(level), updated),
        None => (full, now_ms),
    };
    let elapsed = i128::from(now_ms.saturating_sub(updated).max(0));
    let refilled = (level + elapsed * quota).clamp(0, full);
    let whole = refilled / window;
    let granted = whole.min(i128::from(take.want));
    let after = refilled - granted * window;
    // Units missing to the next whole request, refilled at `quota` a millisecond.
    let missing = window - after % window;
    let grant = RateGrant {
        granted: u64::try_from(granted).unwrap_or(0),
        remaining: u64::try_from(after / window).unwrap_or(0),
        next_in_ms: i64::try_from((missing + quota - 1) / quota)
            .unwrap_or(i64::MAX)
            .max(1),
    };
    (
        grant,
        i64::try_from(after).unwrap_or(i64::MAX),
        now_ms.max(updated),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(quota: u64, window_ms: i64, want: u64) -> RateTake {
        RateTake {
            bucket: "b".into(),
            quota,
            window_ms,
            want,
        }
    }

    #[test]
    fn a_new_bucket_is_full_and_refills_at_its_rate() {
        let (g, level, at) = take(None, &t(100, 60_000, 30), 1_000);
        assert_eq!((g.granted, g.remaining), (30, 70));
        assert_eq!((level, at), (70 * 60_000, 1_000));
        // 600 ms of 100 a minute is one request.
        let (g, _, _) = take(Some((0, 1_000)), &t(100, 60_000, 5), 1_600);
        assert_eq!((g.granted, g.remaining, g.next_in_ms), (1, 0, 600));
        // Never above the quota, however long idle.
        let (g, _, _) = take(Some((0, 0)), &t(100, 60_000, 500), 10_000_000);
        assert_eq!(g.granted, 100);
    }

    #[test]
    fn refills_lose_nothing_to_rounding() {
        // 7 a minute, taken from every millisecond: exactly 7 a minute.
        let mut stored = Some((0, 0));
        let mut granted = 0;
        for now in 1..=60_000 {
            let (g, level, at) = take(stored, &t(7, 60_000, 1), now);
            granted += g.granted;
            stored = Some((level, at));
        }
        assert_eq!(granted, 7);
    }

    #[test]
    fn only_whole_requests_are_granted_and_a_clock_behind_refills_nothing() {
        let (g, level, _) = take(Some((999, 0)), &t(10, 1_000, 1), 0);
        assert_eq!((g.granted, level, g.next_in_ms), (0, 999, 1));
        let (g, level, at) = take(Some((500, 5_000)), &t(10, 1_000, 1), 4_000);
        assert_eq!((g.granted, level, at), (0, 500, 5_000));
        assert_eq!(g.next_in_ms, 50);
    }

    #[test]
    fn extreme_values_do_not_overflow() {
        let (g, _, _) = take(Some((0, i64::MIN)), &t(u64::MAX, 1, u64::MAX), i64::MAX);
        assert!(g.granted > 0);
        let (g, _, _) = take(None, &t(0, 0, 1), 0);
        assert_eq!(g.granted, 1);
    }
}
