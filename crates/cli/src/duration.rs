//! Durations on the command line: `3600`, `90s`, `30m`, `24h`, `7d`.

use anyhow::{Result, anyhow};

/// Parses a duration into seconds.
pub fn parse(text: &str) -> Result<i64> {
    let t = text.trim();
    let (num, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: i64 = num
        .parse()
        .map_err(|_| anyhow!("invalid duration `{text}`: use e.g. 3600, 90s, 30m, 24h or 7d"))?;
    let mult = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => {
            return Err(anyhow!(
                "invalid duration unit in `{text}`: use s, m, h or d"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| anyhow!("duration `{text}` is too long"))
}

#[cfg(test)]
mod tests {
    use super::parse;

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
