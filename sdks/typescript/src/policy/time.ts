// Wall clocks of IANA zones through Intl (no bundled database: the runtime's ICU
// data), and the calendar budget periods of the Rust core's `policy::period`: the
// hour, day, ISO week (Monday first) or month that contains an instant, read on the
// wall clock of the policy's zone.

/** A local civil time. */
export interface Civil {
  year: number;
  month: number;
  day: number;
  hour: number;
  minute: number;
  second: number;
  /** 0 = Monday … 6 = Sunday. */
  weekday: number;
}

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(tz: string): Intl.DateTimeFormat {
  let f = formatters.get(tz);
  if (!f) {
    f = new Intl.DateTimeFormat("en-US", {
      timeZone: tz,
      hourCycle: "h23",
      year: "numeric",
      month: "numeric",
      day: "numeric",
      hour: "numeric",
      minute: "numeric",
      second: "numeric",
      era: "short",
    });
    if (formatters.size > 512) formatters.clear();
    formatters.set(tz, f);
  }
  return f;
}

/** Checks an IANA zone name the runtime knows; returns an error message or undefined. */
export function checkTimeZone(name: string): string | undefined {
  const shown = [...name].slice(0, 64).join("");
  const bad = `\`${shown}\` is not an IANA time zone name (such as \`America/New_York\`)`;
  if (name.length === 0 || name.length > 64 || name === "Etc/Unknown") return bad;
  let resolved: string;
  try {
    resolved = new Intl.DateTimeFormat("en-US", { timeZone: name }).resolvedOptions().timeZone;
  } catch {
    return bad;
  }
  // Offsets such as "+01:00" are not IANA names.
  if (/^[+-]/.test(name)) return bad;
  if (resolved !== name && resolved.toLowerCase() === name.toLowerCase()) {
    return `\`${shown}\`: time zone names are case-sensitive, use \`${resolved}\``;
  }
  if (resolved !== name) {
    // An alias the runtime canonicalised: accept it if some spelling in the
    // runtime's list matches exactly, or it is not in the list at all (aliases).
    const listed = Intl.supportedValuesOf("timeZone");
    const folded = listed.find((z) => z.toLowerCase() === name.toLowerCase());
    if (folded && folded !== name) return `\`${shown}\`: time zone names are case-sensitive, use \`${folded}\``;
  }
  return undefined;
}

/** The wall-clock time of `tz` at `ms` (Unix milliseconds). */
export function civilAt(tz: string, ms: number): Civil {
  const off = offsetAt(tz, ms);
  const d = new Date(ms + off * 1000);
  return {
    year: d.getUTCFullYear(),
    month: d.getUTCMonth() + 1,
    day: d.getUTCDate(),
    hour: d.getUTCHours(),
    minute: d.getUTCMinutes(),
    second: d.getUTCSeconds(),
    weekday: (d.getUTCDay() + 6) % 7,
  };
}

/** UTC offset of `tz` at `ms`, in seconds. */
export function offsetAt(tz: string, ms: number): number {
  if (tz === "UTC") return 0;
  const whole = Math.floor(ms / 1000) * 1000;
  const parts = formatter(tz).formatToParts(new Date(whole));
  let year = 0;
  let month = 0;
  let day = 0;
  let hour = 0;
  let minute = 0;
  let second = 0;
  let bc = false;
  for (const p of parts) {
    switch (p.type) {
      case "year":
        year = Number(p.value);
        break;
      case "month":
        month = Number(p.value);
        break;
      case "day":
        day = Number(p.value);
        break;
      case "hour":
        hour = Number(p.value);
        break;
      case "minute":
        minute = Number(p.value);
        break;
      case "second":
        second = Number(p.value);
        break;
      case "era":
        bc = p.value.startsWith("B");
        break;
    }
  }
  const y = bc ? 1 - year : year;
  const local = civilMs(y, month, day, hour, minute, second);
  return Math.round((local - whole) / 1000);
}

/** A civil time read as if it were UTC, in ms. */
export function civilMs(year: number, month: number, day: number, hour = 0, minute = 0, second = 0): number {
  const d = new Date(0);
  d.setUTCFullYear(year, month - 1, day);
  d.setUTCHours(hour, minute, second, 0);
  return d.getTime();
}

const DAY_MS = 86_400_000;

/**
 * The instant of local time `local` (ms as if UTC) in `tz`: `earlier` picks the first
 * of a repeated time, `later` the second; a skipped time maps past the gap either way
 * (jiff's `compatible` and `later`).
 */
export function instantOf(tz: string, local: number, pick: "earlier" | "later"): number {
  const before = offsetAt(tz, local - DAY_MS);
  const after = offsetAt(tz, local + DAY_MS);
  const valid: number[] = [];
  for (const off of before === after ? [before] : [before, after]) {
    const t = local - off * 1000;
    if (offsetAt(tz, t) === off) valid.push(t);
  }
  if (valid.length === 0) return local - before * 1000;
  return pick === "earlier" ? Math.min(...valid) : Math.max(...valid);
}

/** The first instant after `lo` (exclusive) at which the offset differs from at `lo`; `hi` has another offset. */
function transitionBetween(tz: string, lo: number, hi: number): number {
  const base = offsetAt(tz, lo);
  let a = Math.floor(lo / 1000);
  let b = Math.ceil(hi / 1000);
  while (b - a > 1) {
    const mid = Math.floor((a + b) / 2);
    if (offsetAt(tz, mid * 1000) === base) a = mid;
    else b = mid;
  }
  return b * 1000;
}

/** A budget period. */
export type BudgetPeriod = "hour" | "day" | "week" | "month";

/** One calendar period: `[start, end)` in ms and the key a store files its budget under. */
export interface PeriodWindow {
  key: string;
  start: number;
  end: number;
}

const pad = (n: number, w = 2) => String(n).padStart(w, "0");

function addDays(y: number, m: number, d: number, days: number): [number, number, number] {
  const t = new Date(civilMs(y, m, d) + days * DAY_MS);
  return [t.getUTCFullYear(), t.getUTCMonth() + 1, t.getUTCDate()];
}

/** ISO 8601 week-numbering year and week of a civil date. */
export function isoWeek(y: number, m: number, d: number): [number, number] {
  const t = new Date(civilMs(y, m, d));
  const wd = (t.getUTCDay() + 6) % 7;
  // The Thursday of this week decides the year.
  const thu = new Date(t.getTime() + (3 - wd) * DAY_MS);
  const year = thu.getUTCFullYear();
  const jan1 = civilMs(year, 1, 1);
  const week = Math.floor((thu.getTime() - jan1) / DAY_MS / 7) + 1;
  return [year, week];
}

/** The period of `tz` that contains `now` (ms). */
export function periodOf(period: BudgetPeriod, tz: string, now: number): PeriodWindow {
  const c = civilAt(tz, now);
  const first = (y: number, m: number, d: number) => instantOf(tz, civilMs(y, m, d), "earlier");
  const last = (y: number, m: number, d: number) => instantOf(tz, civilMs(y, m, d), "later");
  switch (period) {
    case "hour":
      return hourOf(tz, now, c);
    case "day": {
      const [ny, nm, nd] = addDays(c.year, c.month, c.day, 1);
      return {
        key: `${pad(c.year, 4)}-${pad(c.month)}-${pad(c.day)}`,
        start: first(c.year, c.month, c.day),
        end: last(ny, nm, nd),
      };
    }
    case "week": {
      const [my, mm, md] = addDays(c.year, c.month, c.day, -c.weekday);
      const [ny, nm, nd] = addDays(my, mm, md, 7);
      const [wy, wn] = isoWeek(c.year, c.month, c.day);
      return { key: `${pad(wy, 4)}-W${pad(wn)}`, start: first(my, mm, md), end: last(ny, nm, nd) };
    }
    case "month": {
      const ny = c.month === 12 ? c.year + 1 : c.year;
      const nm = c.month === 12 ? 1 : c.month + 1;
      return { key: `${pad(c.year, 4)}-${pad(c.month)}`, start: first(c.year, c.month, 1), end: last(ny, nm, 1) };
    }
  }
}

function hourOf(tz: string, now: number, c: Civil): PeriodWindow {
  const offset = offsetAt(tz, now);
  const into = (c.minute * 60 + c.second) * 1000 + (((now % 1000) + 1000) % 1000);
  let start = now - into;
  let end = start + 3_600_000;
  // Cut by an offset change inside the hour (half-hour changes, as Lord Howe's).
  if (offsetAt(tz, start) !== offset) start = transitionBetween(tz, start, now);
  if (offsetAt(tz, end - 1000) !== offset) end = transitionBetween(tz, now, end - 1000);
  const sign = offset < 0 ? "-" : "+";
  const abs = Math.abs(offset);
  return {
    key: `${pad(c.year, 4)}-${pad(c.month)}-${pad(c.day)}T${pad(c.hour)}${sign}${pad(Math.floor(abs / 3600))}:${pad(Math.floor(abs / 60) % 60)}`,
    start,
    end,
  };
}

/** RFC 3339 UTC text of an instant (whole seconds without a fraction). */
export function rfc3339(ms: number): string {
  const iso = new Date(ms).toISOString();
  return iso.endsWith(".000Z") ? `${iso.slice(0, -5)}Z` : iso;
}
