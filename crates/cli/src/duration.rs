//! Durations on the command line: `3600`, `90s`, `30m`, `24h`, `7d`.

use anyhow::Result;

use crate::failure::Failure;

/// Shortest token lifetime (`--ttl`), seconds: a shorter token may expire before it is
/// used; the registry refuses one too.
pub const MIN_TTL_SECS: i64 = 60;
/// Longest token lifetime (`--ttl`), seconds (365 days): the most a registry's
/// `max_token_ttl` may be; the registry refuses what is over its own setting (30 days
/// by default).
pub const MAX_TTL_SECS: i64 = 365 * 86_400;

/// Parses a `--ttl` (and `serve --max-token-ttl`): a duration from 60s to 365d, said
/// so in the error.
pub fn ttl(text: &str) -> Result<i64> {
    let secs = parse(text)?;
    if secs < MIN_TTL_SECS {
        return Err(Failure::usage(format!(
            "--ttl `{text}`: the lifetime must be at least 60s (allowed: 60s to 365d)"
        )));
    }
    if secs > MAX_TTL_SECS {
        return Err(Failure::usage(format!(
            "--ttl `{text}`: the lifetime must be at most 365d (allowed: 60s to 365d)"
        )));
    }
    Ok(secs)
}

/// Parses a duration into seconds.
pub fn parse(text: &str) -> Result<i64> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: i64 = num.parse().map_err(|_| {
        Failure::usage(format!(
            "invalid duration `{text}`: use e.g. 3600, 90s, 30m, 24h or 7d"
        ))
    })?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(Failure::usage(format!(
                "invalid duration unit in `{text}`: use s, m, h or d"
            )));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| Failure::usage(format!("duration `{text}` is too long")))
}

/// Shortest receipt retention: receipts are purged hourly, so less means nothing.
const MIN_RETENTION_S: i64 = 3600;

/// Parses `serve --receipt-retention` (clap `value_parser`): a duration of at least 1h.
pub fn retention(text: &str) -> Result<std::time::Duration, String> {
    let secs = parse(text).map_err(|e| e.to_string())?;
    if secs < MIN_RETENTION_S {
        return Err(format!(
            "receipt retention `{text}` is too short: at least 1h (receipts are purged hourly)"
        ));
    }
    Ok(std::time::Duration::from_secs(secs.unsigned_abs()))
}

/// Parses `serve --signing-key-lifetime` (clap `value_parser`): 1h to 3650d. The
/// next key is published about 5 minutes ahead, so a shorter lifetime would rotate
/// keys before receivers' caches hold them.
pub fn key_lifetime(text: &str) -> Result<std::time::Duration, String> {
    let secs = parse(text).map_err(|e| e.to_string())?;
    let min = bonafide_server::rotation::MIN_LIFETIME.as_secs();
    if !(i64::try_from(min).unwrap_or(i64::MAX)..=3650 * 86_400).contains(&secs) {
        return Err(format!(
            "signing key lifetime `{text}` is out of range: from 1h to 3650d (the next key is published 5 minutes ahead of its rotation)"
        ));
    }
    Ok(std::time::Duration::from_secs(secs.unsigned_abs()))
}

/// Parses `serve --status-list-ttl` (clap `value_parser`): 1s to 30m (half of a
/// list's one-hour validity, so a cached list is never past its `exp`).
pub fn status_list_ttl(text: &str) -> Result<std::time::Duration, String> {
    let secs = parse(text).map_err(|e| e.to_string())?;
    if !(1..=1800).contains(&secs) {
        return Err(format!(
            "status list ttl `{text}` is out of range: from 1s to 30m"
        ));
    }
    Ok(std::time::Duration::from_secs(secs.unsigned_abs()))
}

/// Longest timeout a `serve` flag takes: beyond a day a bound no longer bounds.
const MAX_TIMEOUT_S: i64 = 86_400;

/// Parses a server timeout flag (clap `value_parser`): a duration from 1s to 24h.
pub fn timeout(text: &str) -> Result<std::time::Duration, String> {
    let secs = parse(text).map_err(|e| e.to_string())?;
    if secs < 1 {
        return Err(format!("timeout `{text}` is too short: at least 1s"));
    }
    if secs > MAX_TIMEOUT_S {
        return Err(format!("timeout `{text}` is too long: at most 24h"));
    }
    u64::try_from(secs)
        .map(std::time::Duration::from_secs)
        .map_err(|_| format!("invalid timeout `{text}`"))
}

#[cfg(test)]
mod tests {
    use super::{parse, timeout, ttl};

    #[test]
    fn lifetimes_are_60s_to_365d() {
        assert_eq!(ttl("60s").unwrap(), 60);
        assert_eq!(ttl("30d").unwrap(), 30 * 86_400);
        assert_eq!(ttl("365d").unwrap(), 365 * 86_400);
        let short = ttl("59s").unwrap_err().to_string();
        assert!(
            short.contains("the lifetime must be at least 60s"),
            "{short}"
        );
        assert!(short.contains("60s to 365d"), "{short}");
        let long = ttl("366d").unwrap_err().to_string();
        assert!(long.contains("at most 365d"), "{long}");
        assert!(ttl("5w").unwrap_err().to_string().contains("unit"));
    }

    #[test]
    fn timeouts_are_bounded() {
        assert_eq!(timeout("90s").unwrap().as_secs(), 90);
        assert_eq!(timeout("1").unwrap().as_secs(), 1);
        assert_eq!(timeout("24h").unwrap().as_secs(), 86_400);
        assert!(timeout("0").unwrap_err().contains("at least 1s"));
        assert!(timeout("25h").unwrap_err().contains("at most 24h"));
        assert!(timeout("5w").unwrap_err().contains("use s, m, h or d"));
        assert!(timeout("-1s").unwrap_err().contains("invalid duration"));
    }

    #[test]
    fn parses_units() {
        assert_eq!(parse("3600").unwrap(), 3600);
        assert_eq!(parse("90s").unwrap(), 90);
        assert_eq!(parse("30m").unwrap(), 1800);
        assert_eq!(parse("24h").unwrap(), 86_400);
        assert_eq!(parse("7d").unwrap(), 604_800);
        assert!(parse("").is_err());
        assert!(parse("h").is_err());
        assert!(parse("5w").is_err());
        assert!(parse("-5s").is_err());
        assert!(parse("99999999999999999999d").is_err());
    }
}
