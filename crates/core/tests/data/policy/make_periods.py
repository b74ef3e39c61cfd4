#!/usr/bin/env python3
"""Writes periods.json: calendar budget periods computed with Python's zoneinfo, an
oracle independent of jiff. Run from this directory: python3 make_periods.py"""
import json
from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

CASES = [
    # name, period, tz, now (UTC)
    ("hour_plain_utc", "hour", "UTC", "2026-11-25T13:45:10Z"),
    ("hour_half_offset_kolkata", "hour", "Asia/Kolkata", "2026-11-25T13:45:00Z"),
    ("hour_ny_before_spring_gap", "hour", "America/New_York", "2026-03-08T06:59:59Z"),
    ("hour_ny_after_spring_gap", "hour", "America/New_York", "2026-03-08T07:00:00Z"),
    ("hour_ny_fall_first_0130", "hour", "America/New_York", "2026-11-01T05:30:00Z"),
    ("hour_ny_fall_second_0130", "hour", "America/New_York", "2026-11-01T06:30:00Z"),
    ("hour_rollover_year_utc", "hour", "UTC", "2026-12-31T23:59:59.999Z"),
    ("hour_rollover_year_utc_next", "hour", "UTC", "2027-01-01T00:00:00Z"),
    ("day_ny_spring_23h", "day", "America/New_York", "2026-03-08T12:00:00Z"),
    ("day_ny_fall_25h", "day", "America/New_York", "2026-11-01T12:00:00Z"),
    ("day_ny_fall_repeated_hour", "day", "America/New_York", "2026-11-01T06:30:00Z"),
    ("day_tokyo_last_second", "day", "Asia/Tokyo", "2026-11-25T14:59:59Z"),
    ("day_tokyo_first_second", "day", "Asia/Tokyo", "2026-11-25T15:00:00Z"),
    ("day_leap_day", "day", "Europe/Berlin", "2028-02-29T10:00:00Z"),
    ("day_after_leap_day", "day", "Europe/Berlin", "2028-02-29T23:00:00Z"),
    ("week_iso_w48", "week", "UTC", "2026-11-25T13:00:00Z"),
    ("week_2026_w53_in_january", "week", "UTC", "2027-01-01T12:00:00Z"),
    ("week_2026_w53_sunday_night", "week", "Europe/Paris", "2027-01-03T22:59:59Z"),
    ("week_2027_w01_monday", "week", "Europe/Paris", "2027-01-03T23:00:00Z"),
    ("week_2024_w01_starts_in_2023", "week", "UTC", "2024-01-01T00:00:00Z"),
    ("week_ny_with_spring_change", "week", "America/New_York", "2026-03-10T12:00:00Z"),
    ("week_leap_day", "week", "UTC", "2028-02-29T00:00:00Z"),
    ("month_november_ny_with_fall_change", "month", "America/New_York", "2026-11-15T12:00:00Z"),
    ("month_december_last_instant_tokyo", "month", "Asia/Tokyo", "2026-12-31T14:59:59Z"),
    ("month_january_first_instant_tokyo", "month", "Asia/Tokyo", "2026-12-31T15:00:00Z"),
    ("month_february_leap", "month", "UTC", "2028-02-29T23:59:59Z"),
    ("month_march_after_leap", "month", "UTC", "2028-03-01T00:00:00Z"),
    ("month_new_year_auckland", "month", "Pacific/Auckland", "2026-12-31T11:00:00Z"),
]


def utc(dt):
    s = dt.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")
    return s


def midnight(d, tz):
    return datetime(d.year, d.month, d.day, tzinfo=tz)


def offset(dt):
    secs = int(dt.utcoffset().total_seconds())
    sign = "-" if secs < 0 else "+"
    secs = abs(secs)
    return f"{sign}{secs // 3600:02}:{secs // 60 % 60:02}"


def period(kind, tzname, now):
    tz = ZoneInfo(tzname)
    t = datetime.fromisoformat(now.replace("Z", "+00:00"))
    local = t.astimezone(tz)
    d = local.date()
    if kind == "hour":
        top = t - timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)
        return f"{d.isoformat()}T{local.hour:02}{offset(local)}", top, top + timedelta(hours=1)
    if kind == "day":
        return d.isoformat(), midnight(d, tz), midnight(d + timedelta(days=1), tz)
    if kind == "week":
        mon = d - timedelta(days=d.weekday())
        y, w, _ = d.isocalendar()
        return f"{y}-W{w:02}", midnight(mon, tz), midnight(mon + timedelta(days=7), tz)
    if kind == "month":
        first = d.replace(day=1)
        nxt = (first + timedelta(days=32)).replace(day=1)
        return f"{d.year}-{d.month:02}", midnight(first, tz), midnight(nxt, tz)
    raise ValueError(kind)


out = []
for name, kind, tzname, now in CASES:
    key, start, end = period(kind, tzname, now)
    out.append({"name": name, "period": kind, "tz": tzname, "now": now,
                "key": key, "start": utc(start), "end": utc(end)})
with open("periods.json", "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
