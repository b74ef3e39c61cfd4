//! Times as the CLI prints them: RFC 3339 to the second, with how far from now
//! (`2026-12-04T10:00:00Z (12 minutes ago)`, `… (in 23 hours)`). Every expiry the CLI
//! shows (tokens, agent keys, the times in a verify reason) goes through here.

use jiff::Timestamp;

/// An RFC 3339 time (as the API writes it) with its distance from now; the text
/// unchanged if it is not one.
pub fn rfc3339(text: &str) -> String {
    match text.parse::<Timestamp>() {
        Ok(t) => at(t, Timestamp::now()),
        Err(_) => text.to_owned(),
    }
}

/// Unix seconds as [`rfc3339`] shows them.
pub fn unix(secs: i64) -> String {
    match Timestamp::from_second(secs) {
        Ok(t) => at(t, Timestamp::now()),
        Err(_) => secs.to_string(),
    }
}

/// A verify `reason` with the Unix time it ends with (`token expired at 1733306400`,
/// `… not valid before 1733306400`) written as [`unix`] writes it.
pub fn in_reason(reason: &str) -> String {
    let Some((head, last)) = reason.rsplit_once(' ') else {
        return reason.to_owned();
    };
    let follows_a_time_word = head.ends_with(" at") || head.ends_with(" before");
    let plausible = (9..=11).contains(&last.len()) && last.bytes().all(|b| b.is_ascii_digit());
    match last.parse::<i64>() {
        Ok(secs) if follows_a_time_word && plausible => format!("{head} {}", unix(secs)),
        _ => reason.to_owned(),
    }
}

/// `t` to the second, and how far it is from `now`.
fn at(t: Timestamp, now: Timestamp) -> String {
    let shown = Timestamp::from_second(t.as_second()).unwrap_or(t);
    format!("{shown} ({})", relative(t.as_second() - now.as_second()))
}

/// `in 23 hours`, `12 minutes ago`, `now`: `delta` seconds (positive: the future),
/// rounded to the nearest second, minute, hour or day.
fn relative(delta: i64) -> String {
    let abs = delta.unsigned_abs();
    if abs == 0 {
        return "now".to_owned();
    }
    let (n, unit) = match abs {
        0..60 => (abs, "second"),
        60..3_600 => ((abs + 30) / 60, "minute"),
        3_600..172_800 => ((abs + 1_800) / 3_600, "hour"),
        _ => ((abs + 43_200) / 86_400, "day"),
    };
    let plural = if n == 1 { "" } else { "s" };
    if delta > 0 {
        format!("in {n} {unit}{plural}")
    } else {
        format!("{n} {unit}{plural} ago")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_rounds_to_the_nearest_unit() {
        assert_eq!(relative(0), "now");
        assert_eq!(relative(1), "in 1 second");
        assert_eq!(relative(-59), "59 seconds ago");
        assert_eq!(relative(-60), "1 minute ago");
        assert_eq!(relative(-12 * 60 - 10), "12 minutes ago");
        assert_eq!(relative(3_599), "in 60 minutes");
        assert_eq!(relative(23 * 3_600 + 59 * 60), "in 24 hours");
        assert_eq!(relative(23 * 3_600 + 10), "in 23 hours");
        assert_eq!(relative(47 * 3_600), "in 47 hours");
        assert_eq!(relative(90 * 86_400), "in 90 days");
        assert_eq!(relative(-3 * 86_400), "3 days ago");
    }

    #[test]
    fn times_are_shown_to_the_second() {
        let now: Timestamp = "2026-12-04T10:12:00Z".parse().unwrap();
        let t: Timestamp = "2026-12-04T10:00:00.250Z".parse().unwrap();
        assert_eq!(at(t, now), "2026-12-04T10:00:00Z (12 minutes ago)");
        let later: Timestamp = "2026-12-05T09:12:00Z".parse().unwrap();
        assert_eq!(at(later, now), "2026-12-05T09:12:00Z (in 23 hours)");
        assert_eq!(rfc3339("not a time"), "not a time");
    }

    #[test]
    fn a_reason_ending_in_a_unix_time_gets_a_readable_one() {
        let r = in_reason("token expired at 1733306400");
        assert!(
            r.starts_with("token expired at 2024-12-04T10:00:00Z ("),
            "{r}"
        );
        assert!(r.ends_with(" ago)"), "{r}");
        let r = in_reason("token is not valid before 1733306400");
        assert!(r.contains("before 2024-12-04T10:00:00Z ("), "{r}");
        for unchanged in [
            "signature does not verify",
            "limit of 500 USD",
            "spent at 12",
            "",
        ] {
            assert_eq!(in_reason(unchanged), unchanged);
        }
    }
}
