//! Wall-clock reads and the RFC 3339 format of answers (UTC, milliseconds, `Z`).

use std::time::{SystemTime, UNIX_EPOCH};

/// Now, in Unix milliseconds.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// RFC 3339 with milliseconds, e.g. `2026-03-27T18:00:00.000Z`.
pub fn rfc3339_ms(ms: i64) -> String {
    match jiff::Timestamp::from_millisecond(ms) {
        Ok(ts) => format!("{ts:.3}"),
        Err(_) => "1970-01-01T00:00:00.000Z".to_owned(),
    }
}

/// RFC 3339 for Unix seconds.
pub fn rfc3339_s(s: i64) -> String {
    rfc3339_ms(s.saturating_mul(1000))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_with_milliseconds() {
        assert_eq!(rfc3339_ms(1_774_634_400_000), "2026-03-27T18:00:00.000Z");
        assert_eq!(rfc3339_ms(1_774_634_401_234), "2026-03-27T18:00:01.234Z");
        assert_eq!(rfc3339_s(0), "1970-01-01T00:00:00.000Z");
    }
}
