"""Consent policies (AgentOAuth `pol.v0.2`): parsing with JSON-path errors, the
`policy_hash`, and the pure evaluation of one request, as the Rust core
(`crates/core/src/policy`) decides them. Offline this is for display: spending and
budgets are the registry's (`POST /v1/verify`), never decided here."""

from __future__ import annotations

import hashlib
import json
import secrets
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from . import _json
from ._currencies import LEGACY, MINOR_UNITS, SPECIAL, SUPERSEDED
from ._jcs import canonicalize
from .errors import BonafideError

POLICY_VERSION = "pol.v0.2"
MAX_POLICY_BYTES = 16 * 1024
MAX_META_BYTES = 4 * 1024
MAX_POLICY_DEPTH = 12
MAX_AMOUNT_DIGITS = 15
MAX_PROBLEMS = 100
_MAX_ID, _MAX_ACTIONS, _MAX_RESOURCES, _MAX_MATCHES, _MAX_MATCH_LEN = 128, 64, 64, 256, 256
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
PERIODS = ("hour", "day", "week", "month")
SEPARATORS = ("/", ":")
UTC = timezone.utc

# Characters names refuse besides controls (crates/core/src/names.rs).
_FORBIDDEN_RANGES = ((0x200B, 0x200F), (0x202A, 0x202E), (0x2066, 0x2069), (0x2060, 0x2064))
_FORBIDDEN_SINGLE = frozenset((0x061C, 0xFEFF, 0x2028, 0x2029))


class PolicyError(BonafideError):
    """A policy (or a request amount) that is refused, with the JSON path of the
    problem: `str(e)` is `path: problem`."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(f"{path}: {problem}" if path else problem)
        self.path = path
        self.problem = problem


class PolicyErrors(PolicyError):
    """Every problem of a policy, in document order (at most 100, then a count)."""

    def __init__(self, errors: list[PolicyError]) -> None:
        first = errors[0]
        super().__init__(first.path, first.problem)
        self.errors = errors


def _forbidden_char(s: str) -> str | None:
    for c in s:
        o = ord(c)
        if o < 0x20 or 0x7F <= o <= 0x9F or o in _FORBIDDEN_SINGLE or any(a <= o <= b for a, b in _FORBIDDEN_RANGES):
            return c
    return None


# ---- money ---------------------------------------------------------------------


def parse_currency(code: str) -> str:
    shown = code[:16]
    if code in LEGACY:
        raise ValueError(f"`{shown}` is a withdrawn ISO 4217 code; use `{LEGACY[code]}`")
    if code in SUPERSEDED:
        raise ValueError(f"`{shown}` is a withdrawn ISO 4217 code; use `{SUPERSEDED[code]}`")
    if code in SPECIAL:
        raise ValueError(f"`{shown}` is a special ISO 4217 code (metal, test or no currency), not a spendable currency")
    if code not in MINOR_UNITS:
        raise ValueError(f"`{shown}` is not an ISO 4217 currency code")
    return code


def _clip(s: str) -> str:
    return s if len(s) <= 40 else s[:40] + "…"


def _parse_amount_str(s: str, currency: str) -> Decimal:
    if not s:
        raise ValueError("`` is not a plain decimal (digits, optionally `.` and digits)")
    if s[0] == "-":
        raise ValueError("negative amounts are refused")
    if s.lower().lstrip("+") in ("nan", "inf", "infinity", "snan"):
        raise ValueError(f"`{_clip(s)}` is not a number")
    if s[0].isascii() and s[0].isdigit() and ("e" in s or "E" in s):
        raise ValueError(f"exponent form `{_clip(s)}` is refused: write the digits out")
    whole, dot, frac = s.partition(".")

    def digits(p: str) -> bool:
        return bool(p) and p.isascii() and p.isdigit()

    if not (digits(whole) and (whole == "0" or not whole.startswith("0")) and (not dot or digits(frac))):
        raise ValueError(f"`{_clip(s)}` is not a plain decimal (digits, optionally `.` and digits)")
    if len(whole) > MAX_AMOUNT_DIGITS:
        raise ValueError(f"`{_clip(s)}` is too large (at most 15 digits before the decimal point)")
    units = MINOR_UNITS[currency]
    if len(frac) > units:
        raise ValueError(f"`{_clip(s)}` has more than {units} decimals (the minor units of {currency})")
    return Decimal(s)


def parse_amount(value: Any, currency: str) -> Decimal:
    """A JSON string (`"10.50"`) or integer (`500`) amount; floats, signs, exponents and
    more decimals than the currency has are refused."""
    if isinstance(value, str):
        return _parse_amount_str(value, currency)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError('an amount must be a string such as `"10.50"` or an integer')
    if isinstance(value, float):
        if value < 0:
            raise ValueError("negative amounts are refused")
        raise ValueError(f'JSON floats are refused: write the amount as a string, e.g. `"{value}"`')
    if value < 0:
        raise ValueError("negative amounts are refused")
    if value >= 10**MAX_AMOUNT_DIGITS:
        raise ValueError(f"`{_clip(str(value))}` is too large (at most 15 digits before the decimal point)")
    return Decimal(value)


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str


def money_from_json(amount: Any, currency: Any) -> Money:
    """A request's amount and currency (`POST /v1/verify`'s rules): a spend of 0 is
    refused too."""
    if not isinstance(currency, str):
        raise PolicyError("currency", 'a currency must be a string such as `"USD"`')
    try:
        code = parse_currency(currency)
    except ValueError as e:
        raise PolicyError("currency", str(e)) from None
    try:
        d = parse_amount(amount, code)
    except ValueError as e:
        raise PolicyError("amount", str(e)) from None
    if d == 0:
        raise PolicyError("amount", "a spend of 0 is refused: an amount must be positive")
    return Money(d, code)


def format_amount(d: Decimal, currency: str) -> str:
    """`d` with exactly the currency's minor units (`1099.50`, `1000` for JPY)."""
    return format(d.quantize(Decimal(1).scaleb(-MINOR_UNITS.get(currency, 0))), "f")


# ---- time zones and periods -------------------------------------------------------


@lru_cache(maxsize=1)
def _zone_names() -> dict[str, str]:
    return {n.lower(): n for n in available_timezones()}


@lru_cache(maxsize=512)
def time_zone(name: str) -> ZoneInfo:
    """An IANA zone spelled exactly as in the tz database; ValueError otherwise."""
    shown = name[:64]
    if not name or len(name) > 64 or name in ("Etc/Unknown", "Factory", "localtime", "posixrules"):
        raise ValueError(f"`{shown}` is not an IANA time zone name (such as `America/New_York`)")
    canonical = _zone_names().get(name.lower())
    if canonical is not None and canonical != name:
        raise ValueError(f"`{shown}`: time zone names are case-sensitive, use `{canonical}`")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ValueError(f"`{shown}` is not an IANA time zone name (such as `America/New_York`)") from None


@dataclass(frozen=True, slots=True)
class PeriodWindow:
    key: str
    start: datetime
    end: datetime


def _instant(tz: ZoneInfo, d: date, later: bool) -> datetime:
    """Local midnight of `d` as an instant: in a gap, the time after it; in a fold, the
    earlier occurrence (or the later one with `later`)."""
    return datetime(d.year, d.month, d.day, tzinfo=tz, fold=1 if later else 0).astimezone(UTC)


def _offset(tz: ZoneInfo, t: datetime) -> timedelta:
    off = t.astimezone(tz).utcoffset()
    assert off is not None
    return off


def _transition(tz: ZoneInfo, lo: datetime, hi: datetime) -> datetime:
    """The first instant in (lo, hi] whose offset is hi's, given lo's differs (second
    precision, as tz transitions are)."""
    target = _offset(tz, hi)
    a, b = int(lo.timestamp()), int(hi.timestamp())
    while b - a > 1:
        mid = (a + b) // 2
        if _offset(tz, datetime.fromtimestamp(mid, UTC)) == target:
            b = mid
        else:
            a = mid
    return datetime.fromtimestamp(b, UTC)


def period_of(period: str, tz: ZoneInfo, now: datetime) -> PeriodWindow:
    """The calendar hour, day, ISO week or month containing `now` in `tz`, with the key
    the registry's budgets use (`2026-11-01T01-04:00`, `2026-11-25`, `2026-W48`,
    `2026-11`)."""
    local = now.astimezone(tz)
    d = local.date()
    if period == "day":
        return PeriodWindow(d.isoformat(), _instant(tz, d, False), _instant(tz, d + timedelta(days=1), True))
    if period == "week":
        monday = d - timedelta(days=d.weekday())
        iso = d.isocalendar()
        return PeriodWindow(
            f"{iso[0]:04d}-W{iso[1]:02d}", _instant(tz, monday, False), _instant(tz, monday + timedelta(days=7), True)
        )
    if period == "month":
        first = d.replace(day=1)
        nxt = date(first.year + (first.month == 12), first.month % 12 + 1, 1)
        return PeriodWindow(f"{d.year:04d}-{d.month:02d}", _instant(tz, first, False), _instant(tz, nxt, True))
    # hour: the wall-clock hour at the current offset, cut by an offset change inside it.
    now_utc = now.astimezone(UTC)
    start = now_utc - timedelta(minutes=local.minute, seconds=local.second, microseconds=local.microsecond)
    end = start + timedelta(hours=1)
    off = _offset(tz, now_utc)
    if _offset(tz, start) != off:
        start = _transition(tz, start, now_utc)
    last = end - timedelta(seconds=1)
    if last > now_utc and _offset(tz, last) != off:
        end = _transition_after(tz, now_utc, last)
    secs = int(off.total_seconds())
    sign = "-" if secs < 0 else "+"
    secs = abs(secs)
    key = f"{d.isoformat()}T{local.hour:02d}{sign}{secs // 3600:02d}:{(secs // 60) % 60:02d}"
    return PeriodWindow(key, start, end)


def _transition_after(tz: ZoneInfo, lo: datetime, hi: datetime) -> datetime:
    """The first instant in (lo, hi] whose offset differs from lo's."""
    base = _offset(tz, lo)
    a, b = int(lo.timestamp()), int(hi.timestamp())
    while b - a > 1:
        mid = (a + b) // 2
        if _offset(tz, datetime.fromtimestamp(mid, UTC)) != base:
            b = mid
        else:
            a = mid
    return datetime.fromtimestamp(b, UTC)


def format_instant(t: datetime) -> str:
    """RFC 3339 in UTC with `Z` (fractions only when present)."""
    t = t.astimezone(UTC)
    text = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        text += f".{t.microsecond:06d}".rstrip("0")
    return text + "Z"


def parse_instant(text: str) -> datetime:
    """An RFC 3339 timestamp (`2026-11-25T13:00:00Z`)."""
    t = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    if t.tzinfo is None:
        raise ValueError(f"`{text[:64]}` has no UTC offset")
    return t.astimezone(UTC)


# ---- the policy -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResourceRule:
    kind: str
    ids: tuple[str, ...]
    prefixes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Limits:
    currency: str
    per_txn: Decimal | None
    per_period: tuple[Decimal, str] | None


@dataclass(frozen=True, slots=True)
class TimeWindow:
    days: int  # bit 0 Monday … bit 6 Sunday
    hours: tuple[int, int] | None  # minutes of the day, start != end

    def contains(self, tz: ZoneInfo, now: datetime) -> bool:
        local = now.astimezone(tz)
        today = local.weekday()

        def on(offset: int) -> bool:
            return bool(self.days & (1 << (offset % 7)))

        if self.hours is None:
            return on(today)
        start, end = self.hours
        minute = local.hour * 60 + local.minute
        if start < end:
            return on(today) and start <= minute < end
        # Crosses midnight: the evening belongs to today's window, the morning to
        # yesterday's.
        return (minute >= start and on(today)) or (minute < end and on(today - 1))


@dataclass(frozen=True, slots=True)
class Reason:
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class Remaining:
    amount: Decimal
    currency: str
    period: str
    period_ends: datetime

    def to_json(self) -> dict[str, str]:
        return {
            "amount": format_amount(self.amount, self.currency),
            "currency": self.currency,
            "period": self.period,
            "period_ends": format_instant(self.period_ends),
        }


@dataclass(frozen=True, slots=True)
class Spend:
    period: PeriodWindow
    amount: Decimal
    currency: str
    cap: Decimal


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reasons: tuple[Reason, ...]
    remaining: Remaining | None
    spend: Spend | None

    @property
    def codes(self) -> list[str]:
        return [r.code for r in self.reasons]

    @property
    def message(self) -> str:
        return "allowed" if self.allowed else "; ".join(r.message for r in self.reasons)


@dataclass(frozen=True, slots=True)
class Resource:
    """A request's resource (`type/id`)."""

    type: str
    id: str


def prefix_matches(prefix: str, rid: str) -> bool:
    """`acct/12` matches `acct/12`, `acct/12/x`, `acct/12:x`, not `acct/123`; an id
    with an empty, `.` or `..` segment matches no prefix."""
    if not rid.startswith(prefix):
        return False
    rest = rid[len(prefix) :]
    on_boundary = not rest or prefix.endswith(SEPARATORS) or rest.startswith(SEPARATORS)
    clean = all(seg not in ("", ".", "..") for seg in rid.replace(":", "/").split("/"))
    return on_boundary and clean


class Policy:
    """A parsed, checked policy with its RFC 8785 form and `policy_hash`."""

    __slots__ = ("actions", "canonical", "hash", "id", "limits", "resources", "strict", "time", "value", "zone")

    id: str
    actions: tuple[str, ...]
    resources: tuple[ResourceRule, ...]
    limits: Limits | None
    time: TimeWindow | None
    zone: ZoneInfo | timezone
    strict: bool
    value: Any
    canonical: str
    hash: str

    @classmethod
    def parse(cls, data: bytes | str) -> Policy:
        """From JSON text (strict: duplicate members refused, depth 12, 16 KiB)."""
        raw = data.encode() if isinstance(data, str) else data
        if len(raw) > MAX_POLICY_BYTES:
            raise PolicyError("", f"policy: {len(raw)} bytes, at most {MAX_POLICY_BYTES}")
        try:
            value = _json.loads(raw, MAX_POLICY_DEPTH)
        except _json.JsonError as e:
            raise PolicyError("", f"policy: {e}") from None
        return cls.from_value(value)

    @classmethod
    def from_value(cls, value: Any) -> Policy:
        """From a parsed JSON value (a token's `policy` claim). Raises PolicyErrors with
        every problem found."""
        try:
            canonical = canonicalize(value)
        except (ValueError, OverflowError):
            raise PolicyError("policy", "must be JSON that RFC 8785 can canonicalize") from None
        if len(canonical.encode()) > MAX_POLICY_BYTES:
            raise PolicyError("", f"policy: {len(canonical.encode())} bytes, at most {MAX_POLICY_BYTES}")
        p = cls.__new__(cls)
        _Walk(p).policy(value)
        p.value = value
        p.canonical = canonical
        p.hash = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
        return p

    def hash_matches(self, claimed: str) -> bool:
        return secrets.compare_digest(self.hash.encode(), claimed.encode())

    def evaluate(
        self,
        *,
        action: str,
        resource: Resource | None = None,
        money: Money | None = None,
        now: datetime,
        spent_in_period: Decimal = Decimal(0),
    ) -> Decision:
        """Every check, in the registry's order, each failure adding its reason:
        POLICY_ACTION, POLICY_RESOURCE, TIME_WINDOW, AMOUNT_REQUIRED /
        AMOUNT_NOT_ALLOWED / AMOUNT_INVALID / CURRENCY_MISMATCH, LIMIT_PER_TXN,
        LIMIT_PER_PERIOD. `spent_in_period` is what the period's budget had spent (only
        the registry knows it: offline this is a display of what the policy says)."""
        reasons: list[Reason] = []

        def deny(code: str, message: str) -> None:
            reasons.append(Reason(code, message))

        if action not in self.actions:
            deny("POLICY_ACTION", f"action `{action[:64]}` is not granted by policy `{self.id[:64]}`")
        if resource is None and self.resources:
            deny("POLICY_RESOURCE", "the policy grants named resources only and the request names none")
        elif resource is not None and not self.resources and self.strict:
            deny(
                "POLICY_RESOURCE",
                f"resource `{resource.type[:64]}` `{resource.id[:64]}` is not granted: the strict policy names no resource",
            )
        elif resource is not None and self.resources and not self._granted(resource):
            deny("POLICY_RESOURCE", f"resource `{resource.type[:64]}` `{resource.id[:64]}` is not granted")
        if self.time is not None and not self.time.contains(self.zone, now):  # type: ignore[arg-type]
            deny("TIME_WINDOW", "outside the policy's time window")
        comparable: Decimal | None = None
        lim = self.limits
        if lim is None and money is not None:
            deny("AMOUNT_NOT_ALLOWED", "the policy has no limits, so it grants no spending")
        elif lim is not None and money is None:
            deny("AMOUNT_REQUIRED", "the policy has limits: the request must state an amount and currency")
        elif lim is not None and money is not None:
            problem = _check_amount(money.amount, money.currency)
            if problem is not None:
                deny("AMOUNT_INVALID", f"amount: {problem}")
            elif money.currency != lim.currency:
                deny("CURRENCY_MISMATCH", f"currency `{money.currency}` differs from the policy's `{lim.currency}`")
            else:
                comparable = money.amount
        if lim is not None and comparable is not None and lim.per_txn is not None and comparable > lim.per_txn:
            deny(
                "LIMIT_PER_TXN",
                f"{_fmt(comparable, lim.currency)} is above the per-transaction limit of {_fmt(lim.per_txn, lim.currency)}",
            )
        remaining: Remaining | None = None
        charge: tuple[PeriodWindow, Decimal] | None = None
        if lim is not None and lim.per_period is not None:
            cap, period = lim.per_period
            window = period_of(period, self.zone, now)  # type: ignore[arg-type]
            if spent_in_period < 0:
                deny("LIMIT_PER_PERIOD", "the recorded spending is invalid")
            elif comparable is not None:
                if spent_in_period + comparable <= cap:
                    charge = (window, comparable)
                else:
                    deny(
                        "LIMIT_PER_PERIOD",
                        f"{_fmt(comparable, lim.currency)} would take this {period}'s spending above its limit of "
                        f"{_fmt(cap, lim.currency)} ({_fmt(max(cap - spent_in_period, Decimal(0)), lim.currency)} left)",
                    )
            remaining = Remaining(Decimal(0), lim.currency, period, window.end)
        allowed = not reasons
        spent_after = spent_in_period + charge[1] if (charge is not None and allowed) else spent_in_period
        spend = None
        if charge is not None and allowed and lim is not None and lim.per_period is not None:
            spend = Spend(charge[0], charge[1], lim.currency, lim.per_period[0])
        if remaining is not None and lim is not None and lim.per_period is not None:
            left = max(lim.per_period[0] - spent_after, Decimal(0))
            remaining = Remaining(left, remaining.currency, remaining.period, remaining.period_ends)
        return Decision(allowed, tuple(reasons), remaining, spend)

    def _granted(self, r: Resource) -> bool:
        return any(
            rule.kind == r.type and (r.id in rule.ids or any(prefix_matches(p, r.id) for p in rule.prefixes))
            for rule in self.resources
        )


def _fmt(d: Decimal, currency: str) -> str:
    return f"{format_amount(d, currency)} {currency}"


def _check_amount(amount: Decimal, currency: str) -> str | None:
    if amount < 0:
        return "negative amounts are refused"
    if abs(amount.to_integral_value(rounding="ROUND_DOWN")) >= 10**MAX_AMOUNT_DIGITS:
        return f"`{_clip(str(amount))}` is too large (at most 15 digits before the decimal point)"
    exponent = amount.normalize().as_tuple().exponent
    scale = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    if scale > MINOR_UNITS.get(currency, 0):
        return f"`{amount}` has more than {MINOR_UNITS.get(currency, 0)} decimals (the minor units of {currency})"
    return None


def policy_of(claims: dict[str, Any]) -> Policy | None:
    """A token's policy, checked against its `policy_hash` (None without one). Raises
    PolicyError for a policy that does not parse or a hash that does not match (a
    token with either is `TOKEN_INVALID`)."""
    value, claimed = claims.get("policy"), claims.get("policy_hash")
    if value is None or claimed is None:
        return None
    policy = Policy.from_value(value)
    if not policy.hash_matches(claimed):
        raise PolicyError("policy_hash", "`policy_hash` does not match `policy`")
    return policy


# ---- the walk ---------------------------------------------------------------------

_TOP = ("version", "id", "actions", "resources", "limits", "constraints", "strict", "meta")
_Fail = object()


class _Walk:
    """Reads a policy value field by field, keeping every problem (as lint shows them)."""

    def __init__(self, p: Policy) -> None:
        self.p = p
        self.errors: list[PolicyError] = []
        self.more = 0

    def push(self, path: str, problem: str) -> None:
        if len(self.errors) < MAX_PROBLEMS:
            self.errors.append(PolicyError(path, problem))
        else:
            self.more += 1

    @staticmethod
    def join(path: str, key: str) -> str:
        return f"{path}.{key}" if path else key

    def obj(self, v: Any, path: str, allowed: tuple[str, ...]) -> dict[str, Any] | None:
        if not isinstance(v, dict):
            self.push(path or "policy", "must be an object")
            return None
        for k in v:
            if k not in allowed:
                self.push(self.join(path, k[:64]), f"unknown field (expected one of {', '.join(allowed)})")
        return v

    def text(self, v: Any, path: str, max_len: int) -> Any:
        if not isinstance(v, str):
            self.push(path, "must be a string")
            return _Fail
        if not v or len(v) > max_len:
            self.push(path, f"must be 1 to {max_len} characters")
            return _Fail
        c = _forbidden_char(v)
        if c is not None:
            self.push(
                path,
                f"U+{ord(c):04X} is refused (control, invisible, bidirectional-control and line-separator characters are)",
            )
            return _Fail
        return v

    def name(self, v: Any, path: str) -> Any:
        if not isinstance(v, str):
            self.push(path, "must be a string")
            return _Fail
        if not (0 < len(v) <= _MAX_ID and v.isascii() and all(c.isalnum() or c in "_:.-" for c in v)):
            self.push(path, f"`{v[:64]}` must be 1 to 128 characters of a-z A-Z 0-9 _ : . -")
            return _Fail
        return v

    def array(self, v: Any, path: str, lo: int, hi: int) -> Any:
        if not isinstance(v, list):
            self.push(path, "must be an array")
            return _Fail
        if not lo <= len(v) <= hi:
            self.push(path, f"must have {lo} to {hi} entries")
            return _Fail
        return v

    def strings(self, items: list[Any], path: str, read: Any) -> Any:
        seen: set[str] = set()
        out: list[str] = []
        ok = True
        for i, it in enumerate(items):
            p = f"{path}[{i}]"
            s = read(it, p)
            if s is _Fail:
                ok = False
            elif s in seen:
                self.push(p, f"`{s}` appears twice")
                ok = False
            else:
                seen.add(s)
                out.append(s)
        return tuple(out) if ok else _Fail

    def policy(self, v: Any) -> None:
        m = self.obj(v, "", _TOP)
        if m is None:
            raise PolicyErrors(self.finish())
        p = self.p
        if "version" not in m:
            self.push("version", "missing")
        elif not isinstance(m["version"], str):
            self.push("version", "must be a string")
        elif m["version"] != POLICY_VERSION:
            self.push("version", f"unsupported version `{m['version'][:32]}` (only `pol.v0.2`)")
        pid = self.text(m["id"], "id", _MAX_ID) if "id" in m else self.missing("id")
        actions: Any = _Fail
        if "actions" not in m:
            self.push("actions", "missing")
        else:
            items = self.array(m["actions"], "actions", 1, _MAX_ACTIONS)
            if items is not _Fail:
                actions = self.strings(items, "actions", self.name)
        resources: Any = ()
        if "resources" in m:
            items = self.array(m["resources"], "resources", 0, _MAX_RESOURCES)
            if items is _Fail:
                resources = _Fail
            else:
                rules = [self.resource(it, f"resources[{i}]") for i, it in enumerate(items)]
                resources = _Fail if any(r is _Fail for r in rules) else tuple(rules)
        limits = self.limits(m["limits"]) if "limits" in m else None
        time_and_zone: Any = (None, UTC)
        if "constraints" in m:
            c = self.obj(m["constraints"], "constraints", ("time",))
            if c is None:
                time_and_zone = _Fail
            elif "time" in c:
                time_and_zone = self.time(c["time"])
        strict: Any = False
        if "strict" in m:
            if isinstance(m["strict"], bool):
                strict = m["strict"]
            else:
                self.push("strict", "must be a boolean")
        if "meta" in m:
            meta = m["meta"]
            if not isinstance(meta, dict):
                self.push("meta", "must be an object")
            else:
                size = len(json.dumps(meta, separators=(",", ":"), ensure_ascii=False).encode())
                if size > MAX_META_BYTES:
                    self.push("meta", f"{size} bytes, at most {MAX_META_BYTES}")
        if self.errors or _Fail in (pid, actions, resources, limits, time_and_zone):
            raise PolicyErrors(self.finish())
        p.id, p.actions, p.resources, p.limits = pid, actions, resources, limits
        p.time, p.zone = time_and_zone
        p.strict = strict

    def missing(self, path: str) -> Any:
        self.push(path, "missing")
        return _Fail

    def finish(self) -> list[PolicyError]:
        errors = list(self.errors)
        if self.more:
            errors.append(PolicyError("", f"and {self.more} more problems (fix these first)"))
        if not errors:
            errors.append(PolicyError("policy", "must be a valid policy"))
        return errors

    def resource(self, v: Any, path: str) -> Any:
        m = self.obj(v, path, ("type", "match"))
        if m is None:
            return _Fail
        kind = self.name(m["type"], self.join(path, "type")) if "type" in m else self.missing(self.join(path, "type"))
        mpath = self.join(path, "match")
        ids: Any = _Fail
        prefixes: Any = _Fail
        if "match" not in m:
            self.push(mpath, "missing")
        else:
            mm = self.obj(m["match"], mpath, ("ids", "prefixes"))
            if mm is not None:
                lists = []
                for key in ("ids", "prefixes"):
                    p = self.join(mpath, key)
                    if key not in mm:
                        lists.append(())
                        continue
                    items = self.array(mm[key], p, 0, _MAX_MATCHES)
                    lists.append(
                        _Fail
                        if items is _Fail
                        else self.strings(items, p, lambda v, q: self.text(v, q, _MAX_MATCH_LEN))
                    )
                ids, prefixes = lists
        if _Fail in (kind, ids, prefixes):
            return _Fail
        total = len(ids) + len(prefixes)
        if total == 0:
            self.push(mpath, "needs at least one of `ids` or `prefixes` (non-empty)")
            return _Fail
        if total > _MAX_MATCHES:
            self.push(mpath, f"must have 1 to {_MAX_MATCHES} entries")
            return _Fail
        return ResourceRule(kind, ids, prefixes)

    def money(self, m: dict[str, Any], path: str) -> Any:
        cpath = self.join(path, "currency")
        currency: Any = _Fail
        if "currency" not in m:
            self.push(cpath, "missing")
        elif not isinstance(m["currency"], str):
            self.push(cpath, 'a currency must be a string such as `"USD"`')
        else:
            try:
                currency = parse_currency(m["currency"])
            except ValueError as e:
                self.push(cpath, str(e))
        apath = self.join(path, "amount")
        if "amount" not in m:
            self.push(apath, "missing")
            return _Fail
        if currency is _Fail:
            return _Fail
        try:
            return (parse_amount(m["amount"], currency), currency)
        except ValueError as e:
            self.push(apath, str(e))
            return _Fail

    def limits(self, v: Any) -> Any:
        m = self.obj(v, "limits", ("per_txn", "per_period"))
        if m is None:
            return _Fail
        per_txn: Any = None
        if "per_txn" in m:
            t = self.obj(m["per_txn"], "limits.per_txn", ("amount", "currency"))
            per_txn = _Fail if t is None else self.money(t, "limits.per_txn")
        per_period: Any = None
        if "per_period" in m:
            path = "limits.per_period"
            pp = self.obj(m["per_period"], path, ("amount", "currency", "period"))
            if pp is None:
                per_period = _Fail
            else:
                money = self.money(pp, path)
                ppath = self.join(path, "period")
                period: Any = _Fail
                if "period" not in pp:
                    self.push(ppath, "missing")
                elif not isinstance(pp["period"], str):
                    self.push(ppath, "must be a string")
                elif pp["period"] not in PERIODS:
                    self.push(ppath, f"`{pp['period'][:32]}` is not a period (use hour, day, week or month)")
                else:
                    period = pp["period"]
                per_period = _Fail if _Fail in (money, period) else (money[0], money[1], period)
        if _Fail in (per_txn, per_period):
            return _Fail
        if per_txn is not None and per_period is not None and per_txn[1] != per_period[1]:
            self.push(
                "limits.per_period.currency",
                f"`{per_period[1]}` differs from `limits.per_txn.currency` `{per_txn[1]}`",
            )
            return _Fail
        if per_txn is None and per_period is None:
            self.push("limits", "needs at least one of `per_txn`, `per_period`")
            return _Fail
        currency = per_txn[1] if per_txn is not None else per_period[1]
        return Limits(
            currency,
            per_txn[0] if per_txn is not None else None,
            (per_period[0], per_period[2]) if per_period is not None else None,
        )

    def time(self, v: Any) -> Any:
        path = "constraints.time"
        m = self.obj(v, path, ("dow", "start", "end", "tz"))
        if m is None:
            return _Fail
        tzpath = self.join(path, "tz")
        zone: Any = UTC
        if "tz" in m:
            if not isinstance(m["tz"], str):
                self.push(tzpath, "must be a string")
                zone = _Fail
            else:
                try:
                    zone = time_zone(m["tz"])
                except ValueError as e:
                    self.push(tzpath, str(e))
                    zone = _Fail
        days: Any = 0x7F
        if "dow" in m:
            dpath = self.join(path, "dow")
            items = self.array(m["dow"], dpath, 1, 7)
            if items is _Fail:
                days = _Fail
            else:
                mask, ok = 0, True
                for i, day in enumerate(items):
                    p = f"{dpath}[{i}]"
                    if not isinstance(day, str):
                        self.push(p, "must be a string")
                        ok = False
                    elif day not in DAYS:
                        self.push(p, f"`{day[:16]}` is not a day (use Mon, Tue, Wed, Thu, Fri, Sat or Sun)")
                        ok = False
                    elif mask & (1 << DAYS.index(day)):
                        self.push(p, f"`{day}` appears twice")
                        ok = False
                    else:
                        mask |= 1 << DAYS.index(day)
                days = mask if ok else _Fail
        clock: dict[str, Any] = {}
        for key in ("start", "end"):
            p = self.join(path, key)
            if key not in m:
                clock[key] = None
            elif not isinstance(m[key], str):
                self.push(p, "must be a string")
                clock[key] = _Fail
            else:
                minutes = _hh_mm(m[key])
                if minutes is None:
                    self.push(p, f"`{m[key][:16]}` is not a time of day `HH:MM` (00:00 to 23:59)")
                    clock[key] = _Fail
                else:
                    clock[key] = minutes
        start, end = clock["start"], clock["end"]
        if _Fail in (start, end):
            return _Fail
        hours = None
        if start is not None and end is not None:
            if start == end:
                self.push(self.join(path, "end"), "`start` equals `end`; omit both for the whole day")
                return _Fail
            hours = (start, end)
        elif start is not None:
            self.push(self.join(path, "end"), "`start` and `end` go together")
            return _Fail
        elif end is not None:
            self.push(self.join(path, "start"), "`start` and `end` go together")
            return _Fail
        if _Fail in (days, zone):
            return _Fail
        window = TimeWindow(days, hours) if (days != 0x7F or hours is not None) else None
        return (window, zone)


def _hh_mm(s: str) -> int | None:
    if len(s) != 5 or s[2] != ":" or not (s[:2] + s[3:]).isascii() or not (s[:2] + s[3:]).isdigit():
        return None
    h, m = int(s[:2]), int(s[3:])
    return h * 60 + m if h < 24 and m < 60 else None
