// Consent policies (AgentOAuth `pol.v0.2`) and their pure evaluation, as the Rust
// core's `policy` module: the same walk (every problem with its JSON path), the same
// hash (`sha256:` + hex of the RFC 8785 form) and the same checks, in the same order,
// with the same reason codes. Offline this is for display and early refusal: spending
// is decided only by the registry, which holds the budgets.

import { canonicalize, isObject, JsonError, type JsonValue, parse as parseJson } from "../json.js";
import { ctEqual, hex, sha256 } from "../keys.js";
import { checkAmount, Decimal, formatMoney, type Money, MoneyError, minorUnits, parseAmount, parseCurrency } from "./money.js";
import { type BudgetPeriod, checkTimeZone, civilAt, type PeriodWindow, periodOf, rfc3339 } from "./time.js";

export { Decimal, type Money, MoneyError, moneyFromJson, parseCurrency, parseAmount } from "./money.js";
export { type BudgetPeriod, type PeriodWindow, periodOf } from "./time.js";

/** The only version accepted. */
export const POLICY_VERSION = "pol.v0.2";
/** Largest policy, bytes (as given and canonical). */
export const MAX_POLICY_BYTES = 16 * 1024;
const MAX_META_BYTES = 4 * 1024;
const MAX_POLICY_DEPTH = 12;
const MAX_ID = 128;
const MAX_ACTIONS = 64;
const MAX_RESOURCES = 64;
const MAX_MATCHES = 256;
const MAX_MATCH_LEN = 256;
/** Most problems one lint lists. */
export const MAX_PROBLEMS = 100;

/** One problem of a policy: its JSON path (`limits.per_txn.amount`) and what is wrong. */
export interface PolicyProblem {
  path: string | null;
  message: string;
}

/** A policy that does not validate: every problem, in document order. */
export class PolicyError extends Error {
  constructor(readonly problems: PolicyProblem[]) {
    const p = problems[0];
    super(p ? (p.path ? `${p.path}: ${p.message}` : p.message) : "policy: invalid");
    this.name = "PolicyError";
  }
}

/** One entry of `resources`. */
export interface ResourceRule {
  type: string;
  ids: string[];
  prefixes: string[];
}

/** `limits`, in one currency. */
export interface Limits {
  currency: string;
  perTxn: Decimal | undefined;
  perPeriod: { amount: Decimal; period: BudgetPeriod } | undefined;
}

/** `constraints.time` without its zone: days (bit 0 = Monday) and `[start, end)` minutes. */
export interface TimeWindow {
  days: number;
  hours: [number, number] | undefined;
}

/** What a request asks, as evaluation sees it. */
export interface PolicyRequest {
  action: string;
  resource?: { type: string; id: string } | undefined;
  money?: Money | undefined;
}

/** Reason codes, in check order. */
export type ReasonCode =
  | "POLICY_ACTION"
  | "POLICY_RESOURCE"
  | "TIME_WINDOW"
  | "AMOUNT_REQUIRED"
  | "AMOUNT_NOT_ALLOWED"
  | "AMOUNT_INVALID"
  | "CURRENCY_MISMATCH"
  | "LIMIT_PER_TXN"
  | "LIMIT_PER_PERIOD";

/** One reason a request was refused. */
export interface Reason {
  code: ReasonCode;
  message: string;
}

/** What is left of the period budget after the decision. */
export interface Remaining {
  amount: string;
  currency: string;
  period: BudgetPeriod;
  /** RFC 3339: the first instant of the next period. */
  period_ends: string;
}

/** The charge an allowing decision asks the registry to record. */
export interface Spend {
  period: PeriodWindow;
  amount: Decimal;
  currency: string;
  cap: Decimal;
}

/** The outcome of {@link Policy.evaluate}. */
export interface Decision {
  allowed: boolean;
  reasons: Reason[];
  remaining: Remaining | undefined;
  spend: Spend | undefined;
}

const SEPARATORS = /[/:]/;

/** Segment-boundary prefix match (`acct/12` matches `acct/12/x` and `acct/12:x`, not `acct/123`). */
export function prefixMatches(prefix: string, id: string): boolean {
  if (!id.startsWith(prefix)) return false;
  const rest = id.slice(prefix.length);
  const boundary = rest.length === 0 || /[/:]$/.test(prefix) || /^[/:]/.test(rest);
  const clean = id.split(SEPARATORS).every((s) => s !== "" && s !== "." && s !== "..");
  return boundary && clean;
}

/** A parsed, validated `pol.v0.2` consent policy. */
export class Policy {
  private constructor(
    readonly id: string,
    readonly actions: string[],
    readonly resources: ResourceRule[],
    readonly limits: Limits | undefined,
    readonly time: TimeWindow | undefined,
    /** The policy's zone: `constraints.time.tz`, or UTC. */
    readonly zone: string,
    readonly strict: boolean,
    /** The policy as given. */
    readonly value: JsonValue,
    /** RFC 8785 form. */
    readonly canonical: string,
    /** `sha256:` + hex of the canonical form. */
    readonly hash: string,
  ) {}

  /** Parses and validates a policy from its JSON text; throws {@link PolicyError} with every problem. */
  static async parse(text: string): Promise<Policy> {
    const size = new TextEncoder().encode(text).length;
    if (size > MAX_POLICY_BYTES) {
      throw new PolicyError([{ path: null, message: `policy: ${size} bytes, at most ${MAX_POLICY_BYTES}` }]);
    }
    let value: JsonValue;
    try {
      value = parseJson(text, MAX_POLICY_DEPTH);
    } catch (e) {
      if (e instanceof JsonError) throw new PolicyError([{ path: null, message: `policy: ${e.message}` }]);
      throw e;
    }
    return Policy.fromValue(value);
  }

  /** Validates a policy already parsed by the strict parser (token claims are). */
  static async fromValue(value: JsonValue): Promise<Policy> {
    let canonical: string;
    try {
      canonical = canonicalize(value);
    } catch {
      throw new PolicyError([{ path: "policy", message: "must be JSON that RFC 8785 can canonicalize" }]);
    }
    const size = new TextEncoder().encode(canonical).length;
    if (size > MAX_POLICY_BYTES) {
      throw new PolicyError([{ path: null, message: `policy: ${size} bytes, at most ${MAX_POLICY_BYTES}` }]);
    }
    const sink = new Sink();
    const parsed = walk(value, sink);
    if (!parsed || sink.problems.length > 0) throw new PolicyError(sink.done());
    const hash = `sha256:${hex(await sha256(canonical))}`;
    return new Policy(
      parsed.id,
      parsed.actions,
      parsed.resources,
      parsed.limits,
      parsed.time,
      parsed.zone,
      parsed.strict,
      value,
      canonical,
      hash,
    );
  }

  /** True if `claimed` (a token's `policy_hash`) is this policy's hash. */
  hashMatches(claimed: string): boolean {
    return ctEqual(this.hash, claimed);
  }

  /** Evaluates `req` at `nowMs`, given what the period's budget already spent. Pure. */
  evaluate(req: PolicyRequest, nowMs: number, spentInPeriod: Decimal = Decimal.ZERO): Decision {
    const reasons: Reason[] = [];
    const deny = (code: ReasonCode, message: string) => reasons.push({ code, message });
    const shown = (s: string) => [...s].slice(0, 64).join("");

    if (!this.actions.includes(req.action)) {
      deny("POLICY_ACTION", `action \`${shown(req.action)}\` is not granted by policy \`${shown(this.id)}\``);
    }
    const r = req.resource;
    if (!r && this.resources.length > 0) {
      deny("POLICY_RESOURCE", "the policy grants named resources only and the request names none");
    } else if (r && this.resources.length === 0 && this.strict) {
      deny(
        "POLICY_RESOURCE",
        `resource \`${shown(r.type)}\` \`${shown(r.id)}\` is not granted: the strict policy names no resource`,
      );
    } else if (r && this.resources.length > 0 && !this.resourceGranted(r)) {
      deny("POLICY_RESOURCE", `resource \`${shown(r.type)}\` \`${shown(r.id)}\` is not granted`);
    }
    if (this.time && !windowContains(this.time, this.zone, nowMs)) {
      deny("TIME_WINDOW", "outside the policy's time window");
    }
    let comparable: Decimal | undefined;
    const l = this.limits;
    const m = req.money;
    if (!l && m) {
      deny("AMOUNT_NOT_ALLOWED", "the policy has no limits, so it grants no spending");
    } else if (l && !m) {
      deny("AMOUNT_REQUIRED", "the policy has limits: the request must state an amount and currency");
    } else if (l && m) {
      let bad: string | undefined;
      try {
        checkAmount(m.amount, m.currency);
      } catch (e) {
        bad = (e as Error).message;
      }
      if (bad !== undefined) deny("AMOUNT_INVALID", `amount: ${bad}`);
      else if (m.currency !== l.currency) {
        deny("CURRENCY_MISMATCH", `currency \`${m.currency}\` differs from the policy's \`${l.currency}\``);
      } else comparable = m.amount;
    }
    if (l && comparable && l.perTxn && comparable.cmp(l.perTxn) > 0) {
      deny(
        "LIMIT_PER_TXN",
        `${formatMoney(comparable, l.currency)} is above the per-transaction limit of ${formatMoney(l.perTxn, l.currency)}`,
      );
    }
    let remaining: Remaining | undefined;
    let charge: { window: PeriodWindow; amount: Decimal } | undefined;
    if (l?.perPeriod) {
      const { amount: cap, period } = l.perPeriod;
      const window = periodOf(period, this.zone, nowMs);
      if (spentInPeriod.isNegative()) {
        deny("LIMIT_PER_PERIOD", "the recorded spending is invalid");
      } else if (comparable) {
        const total = spentInPeriod.add(comparable);
        if (total.cmp(cap) <= 0) charge = { window, amount: comparable };
        else {
          deny(
            "LIMIT_PER_PERIOD",
            `${formatMoney(comparable, l.currency)} would take this ${period}'s spending above its limit of ${formatMoney(cap, l.currency)} (${formatMoney(left(cap, spentInPeriod), l.currency)} left)`,
          );
        }
      }
      remaining = { amount: "0", currency: l.currency, period, period_ends: rfc3339(window.end) };
    }
    const allowed = reasons.length === 0;
    const spentAfter = charge && allowed ? spentInPeriod.add(charge.amount) : spentInPeriod;
    let spend: Spend | undefined;
    if (charge && allowed && l?.perPeriod) {
      spend = { period: charge.window, amount: charge.amount, currency: l.currency, cap: l.perPeriod.amount };
    }
    if (remaining && l?.perPeriod) {
      remaining.amount = left(l.perPeriod.amount, spentAfter).rescale(minorUnits(l.currency)).toString();
    }
    return { allowed, reasons, remaining, spend };
  }

  private resourceGranted(r: { type: string; id: string }): boolean {
    return this.resources.some(
      (rule) => rule.type === r.type && (rule.ids.includes(r.id) || rule.prefixes.some((p) => prefixMatches(p, r.id))),
    );
  }
}

function left(cap: Decimal, spent: Decimal): Decimal {
  const d = cap.sub(spent);
  return d.isNegative() ? Decimal.ZERO : d;
}

/** True if `nowMs`, on the wall clock of `zone`, is inside the window. */
export function windowContains(w: TimeWindow, zone: string, nowMs: number): boolean {
  const c = civilAt(zone, nowMs);
  const dayOn = (offset: number) => (w.days & (1 << (((offset % 7) + 7) % 7))) !== 0;
  if (!w.hours) return dayOn(c.weekday);
  const [start, end] = w.hours;
  const minute = c.hour * 60 + c.minute;
  if (start < end) return dayOn(c.weekday) && start <= minute && minute < end;
  // Crosses midnight: the evening belongs to today's window, the morning to yesterday's.
  return (minute >= start && dayOn(c.weekday)) || (minute < end && dayOn(c.weekday - 1));
}

// ---- the walk: every problem kept, siblings still checked -----------------------

class Sink {
  problems: PolicyProblem[] = [];
  more = 0;
  push(path: string | null, message: string): void {
    if (this.problems.length < MAX_PROBLEMS) this.problems.push({ path, message });
    else this.more++;
  }
  keep<T>(f: () => T): T | undefined {
    try {
      return f();
    } catch (e) {
      if (e instanceof FieldError) {
        this.push(e.path, e.message);
        return undefined;
      }
      throw e;
    }
  }
  done(): PolicyProblem[] {
    const out = [...this.problems];
    if (this.more > 0) out.push({ path: null, message: `and ${this.more} more problems (fix these first)` });
    if (out.length === 0) out.push({ path: "policy", message: "must be a valid policy" });
    return out;
  }
}

class FieldError extends Error {
  constructor(
    readonly path: string,
    message: string,
  ) {
    super(message);
  }
}

const join = (path: string, key: string) => (path === "" ? key : `${path}.${key}`);
const chars = (s: string, n: number) => [...s].slice(0, n).join("");

function object(v: unknown, path: string, allowed: string[], expected: string, sink: Sink): Record<string, JsonValue> | undefined {
  const shown = path === "" ? "policy" : path;
  if (!isObject(v)) {
    sink.push(shown, "must be an object");
    return undefined;
  }
  for (const k of Object.keys(v)) {
    if (!allowed.includes(k)) sink.push(join(path, chars(k, 64)), `unknown field (expected one of ${expected})`);
  }
  return v;
}

function required(map: Record<string, JsonValue>, path: string, key: string): JsonValue {
  if (!Object.hasOwn(map, key)) throw new FieldError(join(path, key), "missing");
  return map[key] as JsonValue;
}

function str(v: unknown, path: string): string {
  if (typeof v !== "string") throw new FieldError(path, "must be a string");
  return v;
}

function array(v: unknown, path: string, min: number, max: number): JsonValue[] {
  if (!Array.isArray(v)) throw new FieldError(path, "must be an array");
  if (v.length < min || v.length > max) throw new FieldError(path, `must have ${min} to ${max} entries`);
  return v;
}

function isForbidden(cp: number): boolean {
  return (
    cp < 0x20 ||
    (cp >= 0x7f && cp <= 0x9f) ||
    cp === 0x061c ||
    (cp >= 0x200b && cp <= 0x200f) ||
    (cp >= 0x2028 && cp <= 0x202e) ||
    (cp >= 0x2060 && cp <= 0x2064) ||
    (cp >= 0x2066 && cp <= 0x2069) ||
    cp === 0xfeff
  );
}

function text(v: unknown, path: string, max: number): string {
  const s = str(v, path);
  const cps = [...s];
  if (cps.length === 0 || cps.length > max) throw new FieldError(path, `must be 1 to ${max} characters`);
  for (const c of cps) {
    const cp = c.codePointAt(0) as number;
    if (isForbidden(cp)) {
      const u = `U+${cp.toString(16).toUpperCase().padStart(4, "0")}`;
      throw new FieldError(
        path,
        `${u} is refused (control, invisible, bidirectional-control and line-separator characters are)`,
      );
    }
  }
  return s;
}

function name(v: unknown, path: string): string {
  const s = str(v, path);
  if (!/^[a-zA-Z0-9_:.-]{1,128}$/.test(s)) {
    throw new FieldError(path, `\`${chars(s, 64)}\` must be 1 to 128 characters of a-z A-Z 0-9 _ : . -`);
  }
  return s;
}

function strings(items: JsonValue[], path: string, sink: Sink, read: (v: unknown, p: string) => string): string[] | undefined {
  const seen = new Set<string>();
  const out: string[] = [];
  let all = true;
  items.forEach((it, i) => {
    const p = `${path}[${i}]`;
    const s = sink.keep(() => read(it, p));
    if (s === undefined) all = false;
    else if (seen.has(s)) {
      sink.push(p, `\`${s}\` appears twice`);
      all = false;
    } else {
      seen.add(s);
      out.push(s);
    }
  });
  return all ? out : undefined;
}

const TOP = ["version", "id", "actions", "resources", "limits", "constraints", "strict", "meta"];

interface Parsed {
  id: string;
  actions: string[];
  resources: ResourceRule[];
  limits: Limits | undefined;
  time: TimeWindow | undefined;
  zone: string;
  strict: boolean;
}

function walk(v: JsonValue, sink: Sink): Parsed | undefined {
  const map = object(v, "", TOP, TOP.join(", "), sink);
  if (!map) return undefined;
  const version = sink.keep(() => {
    const version = str(required(map, "", "version"), "version");
    if (version !== POLICY_VERSION) throw new FieldError("version", `unsupported version \`${chars(version, 32)}\` (only \`pol.v0.2\`)`);
    return true;
  });
  const id = sink.keep(() => text(required(map, "", "id"), "id", MAX_ID));
  const actionItems = sink.keep(() => array(required(map, "", "actions"), "actions", 1, MAX_ACTIONS));
  const actions = actionItems ? strings(actionItems, "actions", sink, name) : undefined;

  let resources: ResourceRule[] | undefined = [];
  if (Object.hasOwn(map, "resources")) {
    const items = sink.keep(() => array(map.resources, "resources", 0, MAX_RESOURCES));
    if (!items) resources = undefined;
    else {
      const out: ResourceRule[] = [];
      let all = true;
      items.forEach((it, i) => {
        const r = resource(it, `resources[${i}]`, sink);
        if (r) out.push(r);
        else all = false;
      });
      resources = all ? out : undefined;
    }
  }

  let limitsOk = true;
  let lim: Limits | undefined;
  if (Object.hasOwn(map, "limits")) {
    lim = limits(map.limits, sink);
    limitsOk = lim !== undefined;
  }

  let time: TimeWindow | undefined;
  let zone: string | undefined = "UTC";
  if (Object.hasOwn(map, "constraints")) {
    const c = object(map.constraints, "constraints", ["time"], "time", sink);
    if (!c) zone = undefined;
    else if (Object.hasOwn(c, "time")) {
      const t = timeConstraint(c.time, sink);
      if (!t) zone = undefined;
      else [time, zone] = t;
    }
  }

  let strict: boolean | undefined = false;
  if (Object.hasOwn(map, "strict")) {
    strict = sink.keep(() => {
      if (typeof map.strict !== "boolean") throw new FieldError("strict", "must be a boolean");
      return map.strict;
    });
  }

  if (Object.hasOwn(map, "meta")) {
    if (!isObject(map.meta)) sink.push("meta", "must be an object");
    else {
      const size = new TextEncoder().encode(JSON.stringify(map.meta)).length;
      if (size > MAX_META_BYTES) sink.push("meta", `${size} bytes, at most ${MAX_META_BYTES}`);
    }
  }
  if (!version || id === undefined || !actions || !resources || !limitsOk || zone === undefined || strict === undefined) {
    return undefined;
  }
  return { id, actions, resources, limits: lim, time, zone, strict };
}

function resource(v: JsonValue, path: string, sink: Sink): ResourceRule | undefined {
  const map = object(v, path, ["type", "match"], "type, match", sink);
  if (!map) return undefined;
  const type = sink.keep(() => name(required(map, path, "type"), join(path, "type")));
  const mpath = join(path, "match");
  const mv = sink.keep(() => required(map, path, "match"));
  const m = mv === undefined ? undefined : object(mv, mpath, ["ids", "prefixes"], "ids, prefixes", sink);
  let ids: string[] | undefined;
  let prefixes: string[] | undefined;
  if (m) {
    const list = (key: string): string[] | undefined => {
      const p = join(mpath, key);
      if (!Object.hasOwn(m, key)) return [];
      const items = sink.keep(() => array(m[key], p, 0, MAX_MATCHES));
      return items ? strings(items, p, sink, (x, q) => text(x, q, MAX_MATCH_LEN)) : undefined;
    };
    ids = list("ids");
    prefixes = list("prefixes");
  }
  if (type === undefined || !ids || !prefixes) return undefined;
  const total = ids.length + prefixes.length;
  if (total === 0) {
    sink.push(mpath, "needs at least one of `ids` or `prefixes` (non-empty)");
    return undefined;
  }
  if (total > MAX_MATCHES) {
    sink.push(mpath, `must have 1 to ${MAX_MATCHES} entries`);
    return undefined;
  }
  return { type, ids, prefixes };
}

function moneyOf(map: Record<string, JsonValue>, path: string, sink: Sink): [Decimal, string] | undefined {
  const cpath = join(path, "currency");
  const currency = sink.keep(() => {
    const c = required(map, path, "currency");
    if (typeof c !== "string") throw new FieldError(cpath, "a currency must be a string such as `\"USD\"`");
    try {
      return parseCurrency(c);
    } catch (e) {
      throw new FieldError(cpath, (e as Error).message);
    }
  });
  const apath = join(path, "amount");
  const raw = sink.keep(() => required(map, path, "amount"));
  let amount: Decimal | undefined;
  if (raw !== undefined && currency !== undefined) {
    amount = sink.keep(() => {
      try {
        return parseAmount(raw, currency);
      } catch (e) {
        if (e instanceof MoneyError) throw new FieldError(apath, e.message);
        throw e;
      }
    });
  }
  return amount !== undefined && currency !== undefined ? [amount, currency] : undefined;
}

const PERIODS = ["hour", "day", "week", "month"];

function limits(v: JsonValue | undefined, sink: Sink): Limits | undefined {
  const map = object(v, "limits", ["per_txn", "per_period"], "per_txn, per_period", sink);
  if (!map) return undefined;
  let perTxn: [Decimal, string] | null | undefined = null;
  if (Object.hasOwn(map, "per_txn")) {
    const t = object(map.per_txn, "limits.per_txn", ["amount", "currency"], "amount, currency", sink);
    perTxn = t ? moneyOf(t, "limits.per_txn", sink) : undefined;
  }
  let perPeriod: [Decimal, string, BudgetPeriod] | null | undefined = null;
  if (Object.hasOwn(map, "per_period")) {
    const path = "limits.per_period";
    const p = object(map.per_period, path, ["amount", "currency", "period"], "amount, currency, period", sink);
    if (!p) perPeriod = undefined;
    else {
      const money = moneyOf(p, path, sink);
      const ppath = join(path, "period");
      const period = sink.keep(() => {
        const s = str(required(p, path, "period"), ppath);
        if (!PERIODS.includes(s)) throw new FieldError(ppath, `\`${chars(s, 32)}\` is not a period (use hour, day, week or month)`);
        return s as BudgetPeriod;
      });
      perPeriod = money && period ? [money[0], money[1], period] : undefined;
    }
  }
  if (perTxn === undefined || perPeriod === undefined) return undefined;
  if (perTxn && perPeriod && perTxn[1] !== perPeriod[1]) {
    sink.push("limits.per_period.currency", `\`${perPeriod[1]}\` differs from \`limits.per_txn.currency\` \`${perTxn[1]}\``);
    return undefined;
  }
  const currency = perTxn?.[1] ?? perPeriod?.[1];
  if (!currency) {
    sink.push("limits", "needs at least one of `per_txn`, `per_period`");
    return undefined;
  }
  return {
    currency,
    perTxn: perTxn ? perTxn[0] : undefined,
    perPeriod: perPeriod ? { amount: perPeriod[0], period: perPeriod[2] } : undefined,
  };
}

const DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

function hhmm(s: string): number | undefined {
  const m = /^([0-9]{2}):([0-9]{2})$/.exec(s);
  if (!m) return undefined;
  const h = Number(m[1]);
  const min = Number(m[2]);
  return h < 24 && min < 60 ? h * 60 + min : undefined;
}

function timeConstraint(v: JsonValue | undefined, sink: Sink): [TimeWindow | undefined, string] | undefined {
  const path = "constraints.time";
  const map = object(v, path, ["dow", "start", "end", "tz"], "dow, start, end, tz", sink);
  if (!map) return undefined;
  const tzpath = join(path, "tz");
  let zone: string | undefined = "UTC";
  if (Object.hasOwn(map, "tz")) {
    zone = sink.keep(() => {
      const tz = str(map.tz, tzpath);
      const problem = checkTimeZone(tz);
      if (problem) throw new FieldError(tzpath, problem);
      return tz;
    });
  }
  let days: number | undefined = 0x7f;
  if (Object.hasOwn(map, "dow")) {
    const dpath = join(path, "dow");
    const items = sink.keep(() => array(map.dow, dpath, 1, 7));
    if (!items) days = undefined;
    else {
      let mask = 0;
      let all = true;
      items.forEach((day, i) => {
        const p = `${dpath}[${i}]`;
        const bit = sink.keep(() => {
          const s = str(day, p);
          const at = DAYS.indexOf(s);
          if (at < 0) throw new FieldError(p, `\`${chars(s, 16)}\` is not a day (use Mon, Tue, Wed, Thu, Fri, Sat or Sun)`);
          if (mask & (1 << at)) throw new FieldError(p, `\`${s}\` appears twice`);
          return 1 << at;
        });
        if (bit === undefined) all = false;
        else mask |= bit;
      });
      days = all ? mask : undefined;
    }
  }
  const clock = (key: string): number | null | undefined => {
    const p = join(path, key);
    if (!Object.hasOwn(map, key)) return null;
    const r = sink.keep(() => {
      const s = str(map[key], p);
      const m = hhmm(s);
      if (m === undefined) throw new FieldError(p, `\`${chars(s, 16)}\` is not a time of day \`HH:MM\` (00:00 to 23:59)`);
      return m;
    });
    return r;
  };
  const start = clock("start");
  const end = clock("end");
  if (start === undefined || end === undefined) return undefined;
  let hours: [number, number] | undefined;
  if (start !== null && end !== null) {
    if (start === end) {
      sink.push(join(path, "end"), "`start` equals `end`; omit both for the whole day");
      return undefined;
    }
    hours = [start, end];
  } else if (start !== null) {
    sink.push(join(path, "end"), "`start` and `end` go together");
    return undefined;
  } else if (end !== null) {
    sink.push(join(path, "start"), "`start` and `end` go together");
    return undefined;
  }
  if (days === undefined || zone === undefined) return undefined;
  const window = days !== 0x7f || hours ? { days, hours } : undefined;
  return [window, zone];
}
