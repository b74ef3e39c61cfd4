//! Wall-clock reads and the RFC 3339 format of answers (UTC, milliseconds, `Z`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds, by the system clock. The server reads time through
/// its [`Clock`] (`AppState::now_ms`); this is the system clock's reading.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Where the server reads the time: the system clock in production, a manual one in
/// tests, so that grace periods, expiry and time windows are tested without sleeping.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now, in Unix milliseconds.
    fn now_ms(&self) -> i64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_ms(&self) -> i64 {
        now_ms()
    }
}

/// A clock that moves only when told to (tests).
#[derive(Debug)]
pub struct ManualClock(std::sync::atomic::AtomicI64);

impl ManualClock {
    /// A clock showing `ms` (Unix milliseconds).
    pub fn at(ms: i64) -> Self {
        ManualClock(std::sync::atomic::AtomicI64::new(ms))
    }

    /// A clock showing the system clock's time now.
    pub fn now() -> Self {
        Self::at(now_ms())
    }

    /// Moves the clock by `by`.
    pub fn advance(&self, by: std::time::Duration) {
        let ms = i64::try_from(by.as_millis()).unwrap_or(i64::MAX);
        self.0.fetch_add(ms, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ms(&self) -> i64 {
        self.0.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// RFC 3339 with milliseconds, e.g. `2026-03-27T18:00:00.000Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    format!("{:.3}", timestamp_ms(ms))
}

/// Unix milliseconds as a timestamp, clamped to the range a timestamp can hold
/// (years −9999 to 9999): a time out of range reads as the nearest end of it, never
/// as 1970.
pub fn timestamp_ms(ms: i64) -> jiff::Timestamp {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => ts,
        Err(_) if ms < 0 => jiff::Timestamp::MIN,
        Err(_) => jiff::Timestamp::MAX,
    }
}

/// RFC 3339 for Unix seconds.
pub fn rfc3339_s(s: i64) -> String {
    rfc3339_ms(s.saturating_mul(1000))
}

/// A duration as people write it: whole days, else hours, minutes or seconds
/// (`90 days`, `36 hours`, `1 second`).
pub fn human_duration(d: std::time::Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = [(86_400, "day"), (3600, "hour"), (60, "minute")]
        .into_iter()
        .find(|(size, _)| secs >= *size && secs.is_multiple_of(*size))
        .map_or((secs, "second"), |(size, unit)| (secs / size, unit));
    format!("{n} {unit}{}", if n == 1 { "" } else { "s" })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds() {
        assert_eq!(rfc3339_ms(1_774_634_400_000), "2026-03-27T18:00:00.000Z");
        assert_eq!(rfc3339_ms(1_774_634_401_234), "2026-03-27T18:00:01.234Z");
        assert_eq!(rfc3339_s(0), "1970-01-01T00:00:00.000Z");
        // Out of range: the nearest end, never 1970.
        assert!(
            rfc3339_s(i64::MAX).starts_with("9999-12-"),
            "{}",
            rfc3339_s(i64::MAX)
        );
        assert!(
            rfc3339_s(i64::MIN).starts_with("-009999-"),
            "{}",
            rfc3339_s(i64::MIN)
        );
    }

    #[test]
    fn durations_read_as_people_write_them() {
        use std::time::Duration;
        for (secs, text) in [
            (90 * 86_400, "90 days"),
            (86_400, "1 day"),
            (36 * 3600, "36 hours"),
            (90 * 60, "90 minutes"),
            (61, "61 seconds"),
            (1, "1 second"),
            (0, "0 seconds"),
        ] {
            assert_eq!(human_duration(Duration::from_secs(secs)), text);
        }
    }
}
