//! Calendar budget periods in a policy's time zone.
//!
//! A period is the calendar hour, day, ISO week (Monday first) or month that contains
//! an instant, read on the wall clock of the policy's zone. Its `key` names it for the
//! store, which keeps one budget per (issuer, policy id, key):
//!
//! | period | key | example |
//! |---|---|---|
//! | hour | local date, `T`, hour, UTC offset | `2026-11-01T01-04:00` |
//! | day | local date | `2026-11-25` |
//! | week | ISO week-numbering year and week | `2026-W48` |
//! | month | local year and month | `2026-11` |
//!
//! The hour key carries the offset because a wall-clock hour can happen twice: on
//! 2026-11-01 in America/New_York, 01:00–02:00 runs once in EDT (`-04:00`) and again in
//! EST (`-05:00`); those are two hours and two budgets. An hour skipped by a DST change
//! (02:00–03:00 on 2026-03-08 there) has no instant and so no period. Days, weeks and
//! months run from the first instant of their first local day to the first instant of
//! the next one, so the day of the spring change in New York is 23 hours long and the
//! day of the autumn change 25.
//!
//! INVARIANT: for every instant `t`, `start <= t < end`, and the period that contains
//! `end` starts no later than `end` (no gaps). Periods also never overlap, except in
//! the few zones whose clocks once fell back *across* midnight (America/Goose_Bay in
//! 2009, America/St_Johns and America/Moncton before 2011, Asia/Colombo in 1996): there the local date goes back for an hour,
//! and a day ends at the last occurrence of the next midnight while the next day
//! starts at its first. Each instant still belongs to exactly one key, which is what
//! a budget needs. The test `periods_tile_time_in_every_zone` checks this around
//! every transition of every bundled zone.

use jiff::civil::{Date, DateTime};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, ToSpan};

use super::PolicyError;

/// The length of a `per_period` budget (`hour | day | week | month`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BudgetPeriod {
    /// A wall-clock hour.
    Hour,
    /// A local calendar day.
    Day,
    /// An ISO 8601 week, Monday to Sunday.
    Week,
    /// A calendar month.
    Month,
}

impl BudgetPeriod {
    /// The policy spelling (`"hour"`, `"day"`, `"week"`, `"month"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hour => "hour",
            Self::Day => "day",
            Self::Week => "week",
            Self::Month => "month",
        }
    }

    /// Parses the policy spelling.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "hour" => Some(Self::Hour),
            "day" => Some(Self::Day),
            "week" => Some(Self::Week),
            "month" => Some(Self::Month),
            _ => None,
        }
    }
}

/// One calendar period: `[start, end)` and the key a store files its budget under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodWindow {
    /// Stable name of the period (see the module docs for the formats).
    pub key: String,
    /// First instant of the period.
    pub start: Timestamp,
    /// First instant after the period.
    pub end: Timestamp,
}

/// The `period` of `tz` that contains `now`.
///
/// Fails only for instants within a day of the ends of the representable range
/// (years -9999 and 9999).
pub fn period_of(
    period: BudgetPeriod,
    tz: &TimeZone,
    now: Timestamp,
) -> Result<PeriodWindow, PolicyError> {
    let local = tz.to_datetime(now);
    let date = local.date();
    match period {
        BudgetPeriod::Hour => hour_of(tz, now, local),
        BudgetPeriod::Day => {
            let next = date.tomorrow().map_err(|_| PolicyError::TimeOutOfRange)?;
            Ok(PeriodWindow {
                key: format!("{:04}-{:02}-{:02}", date.year(), date.month(), date.day()),
                start: first_instant(tz, date)?,
                end: last_midnight(tz, next)?,
            })
        }
        BudgetPeriod::Week => {
            let back = i64::from(date.weekday().to_monday_zero_offset());
            let monday = date
                .checked_sub(back.days())
                .map_err(|_| PolicyError::TimeOutOfRange)?;
            let next = monday
                .checked_add(7.days())
                .map_err(|_| PolicyError::TimeOutOfRange)?;
            let iso = date.iso_week_date();
            Ok(PeriodWindow {
                key: format!("{:04}-W{:02}", iso.year(), iso.week()),
                start: first_instant(tz, monday)?,
                end: last_midnight(tz, next)?,
            })
        }
        BudgetPeriod::Month => {
            let first = date.first_of_month();
            let next = first
                .checked_add(1.month())
                .map_err(|_| PolicyError::TimeOutOfRange)?;
            Ok(PeriodWindow {
                key: format!("{:04}-{:02}", date.year(), date.month()),
                start: first_instant(tz, first)?,
                end: last_midnight(tz, next)?,
            })
        }
    }
}

/// The first instant of local day `date` (after the gap if midnight is skipped; the
/// earlier one if midnight repeats).
fn first_instant(tz: &TimeZone, date: Date) -> Result<Timestamp, PolicyError> {
    tz.to_ambiguous_timestamp(DateTime::from(date))
        .compatible()
        .map_err(|_| PolicyError::TimeOutOfRange)
}

/// The end of the period before local day `date`: its midnight, the later one if
/// midnight repeats (after the gap if it is skipped).
fn last_midnight(tz: &TimeZone, date: Date) -> Result<Timestamp, PolicyError> {
    tz.to_ambiguous_timestamp(DateTime::from(date))
        .later()
        .map_err(|_| PolicyError::TimeOutOfRange)
}

fn hour_of(tz: &TimeZone, now: Timestamp, local: DateTime) -> Result<PeriodWindow, PolicyError> {
    let offset = tz.to_offset(now);
    let into_hour = SignedDuration::new(
        i64::from(local.minute()) * 60 + i64::from(local.second()),
        local.subsec_nanosecond(),
    );
    // The wall-clock hour at the current offset…
    let top = now
        .checked_sub(into_hour)
        .map_err(|_| PolicyError::TimeOutOfRange)?;
    let mut start = top;
    let mut end = top
        .checked_add(SignedDuration::from_hours(1))
        .map_err(|_| PolicyError::TimeOutOfRange)?;
    // …cut by an offset change inside it. US-style changes fall on the hour and never
    // cut; half-hour ones (Australia/Lord_Howe) do, and without the cut two periods
    // would overlap.
    let just_after = now
        .checked_add(SignedDuration::from_nanos(1))
        .map_err(|_| PolicyError::TimeOutOfRange)?;
    if let Some(t) = tz.preceding(just_after).next() {
        let at = t.timestamp();
        if at > start && changes_offset(tz, at) {
            start = at;
        }
    }
    if let Some(t) = tz.following(now).next() {
        let at = t.timestamp();
        if at < end && changes_offset(tz, at) {
            end = at;
        }
    }
    let date = local.date();
    let secs = offset.seconds();
    let sign = if secs < 0 { '-' } else { '+' };
    let abs = secs.unsigned_abs();
    Ok(PeriodWindow {
        key: format!(
            "{:04}-{:02}-{:02}T{:02}{sign}{:02}:{:02}",
            date.year(),
            date.month(),
            date.day(),
            local.hour(),
            abs / 3600,
            (abs / 60) % 60,
        ),
        start,
        end,
    })
}

/// True if the offset in force from `at` differs from the one just before it (some
/// transitions only rename the zone's abbreviation).
fn changes_offset(tz: &TimeZone, at: Timestamp) -> bool {
    match at.checked_sub(SignedDuration::from_nanos(1)) {
        Ok(before) => tz.to_offset(before) != tz.to_offset(at),
        Err(_) => true,
    }
}
