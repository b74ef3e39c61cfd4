"""Delegation (RFC 8693 token exchange): what a delegated token's chain means to a
receiver, and the narrowing rule the registry applies when it mints a child.

- `RevokedSet`: revocations and suspensions a receiver learned (push events, or its own
  list): a delegated token is refused when its `jti` or any of its `ancestor_jtis` is
  revoked, or any agent of its chain is revoked (`TOKEN_REVOKED`) or suspended
  (`AGENT_SUSPENDED`), as the registry's verify does.
- `child_claims`: the child the registry mints for an actor, or why it refuses
  (`DELEGATION_WIDENS` with every widened dimension, `DELEGATION_LOOP`,
  `SCOPE_INVALID`), the Rust core's `delegation` module rule for rule. Agents call
  `RegistryClient.exchange_token` (`POST /v1/token`): the registry mints; this lets a
  client see beforehand whether a request narrows, and is checked against the
  conformance vectors."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import token as token_mod
from .errors import AGENT_SUSPENDED, TOKEN_REVOKED, BonafideError, TokenError
from .policy import Limits, Policy, ResourceRule, TimeWindow, prefix_matches

DEFAULT_MAX_DEPTH = 4
MAX_SCOPES = 64
MAX_SCOPE_LEN = 64
_SCOPE_PART = {":": re.compile(r"[a-z0-9][a-z0-9_.\-]*\Z"), ".": re.compile(r"[a-z0-9][a-z0-9_\-]*\Z")}
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass
class RevokedSet:
    """Revoked token ids, revoked agents and suspended agents."""

    jtis: set[str] = field(default_factory=set)
    agents: set[str] = field(default_factory=set)
    suspended: set[str] = field(default_factory=set)

    def refusal(self, claims: Mapping[str, Any]) -> TokenError | None:
        """Why a verified token is refused by this set, or None."""
        tokens = [claims["jti"], *(claims.get("ancestor_jtis") or [])]
        if any(t in self.jtis for t in tokens):
            return TokenError(TOKEN_REVOKED, "token has been revoked")
        chain = token_mod.actors(claims)
        if any(a in self.agents for a in chain):
            return TokenError(TOKEN_REVOKED, "token has been revoked")
        if any(a in self.suspended for a in chain):
            return TokenError(AGENT_SUSPENDED, "agent is suspended by its issuer")
        return None


class DelegationError(BonafideError):
    """The registry would refuse this exchange: `code` is its wire code
    (`DELEGATION_WIDENS` with `widened`, `DELEGATION_LOOP`, `SCOPE_INVALID`,
    `INVALID_REQUEST`)."""

    def __init__(self, code: str, message: str, widened: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.code = code
        self.widened = list(widened)


@dataclass(frozen=True, slots=True)
class ChildRequest:
    scopes: Sequence[str]
    exp: int
    audience: Sequence[str] | None = None  # None: keep the parent's
    policy: Policy | None = None  # None: keep the parent's
    cnf: Mapping[str, str] | None = None  # the actor's key binding


def validate_scope(scope: str) -> bool:
    if not scope or len(scope) > MAX_SCOPE_LEN:
        return False
    sep = ":" if ":" in scope else "."
    parts = scope.split(sep)
    return 2 <= len(parts) <= 4 and all(_SCOPE_PART[sep].match(p) for p in parts)


def validate_scopes(scopes: Sequence[str]) -> list[str]:
    if not scopes:
        raise DelegationError("SCOPE_INVALID", "no scopes: name at least one")
    if len(scopes) > MAX_SCOPES:
        raise DelegationError("SCOPE_INVALID", f"{len(scopes)} scopes, at most {MAX_SCOPES}")
    out: list[str] = []
    for s in scopes:
        if not validate_scope(s):
            raise DelegationError("SCOPE_INVALID", f"`{s[:72]}` is not a scope")
        if s not in out:
            out.append(s)
    return out


def widenings(parent: Mapping[str, Any], parent_policy: Policy | None, req: ChildRequest, max_depth: int) -> list[str]:
    """Every dimension in which the child would be wider than its parent, in the
    registry's order."""
    out: list[str] = []
    granted = parent["agent"]["scopes"]
    if any(s not in granted for s in req.scopes):
        out.append("scope")
    parent_aud = parent.get("aud")
    if parent_aud is not None and req.audience is not None:
        auds = [parent_aud] if isinstance(parent_aud, str) else parent_aud
        if any(a not in auds for a in req.audience):
            out.append("audience")
    if req.exp > parent["exp"]:
        out.append("exp")
    depth = len(token_mod.actors(parent)) - 1
    if depth + 1 > min(max_depth, token_mod.MAX_ACT_DEPTH):
        out.append("depth")
    if parent.get("cnf") is not None and req.cnf is None:
        out.append("cnf")
    if req.policy is not None:
        if parent_policy is None:
            out.append("policy")
        else:
            out.extend(_policy_widenings(parent_policy, req.policy))
    return out


def _policy_widenings(p: Policy, c: Policy) -> list[str]:
    out: list[str] = []
    if any(a not in p.actions for a in c.actions):
        out.append("policy.actions")
    pr, cr = p.resources, c.resources
    if not pr and cr:
        if p.strict:
            out.append("policy.resources")
    elif pr and not cr:
        out.append("policy.resources")
    elif pr and cr:
        out.extend("policy.resources" for rule in cr if _uncovered(pr, rule))
    if (p.limits is not None and c.limits is None) or (p.limits is None and c.limits is not None):
        out.append("policy.limits")
    elif p.limits is not None and c.limits is not None:
        out.extend(_limit_widenings(p.limits, c.limits))
    if _time_widens(p, c):
        out.append("policy.time")
    if p.strict and not c.strict:
        out.append("policy.strict")
    return out


def _uncovered(parent: Iterable[ResourceRule], rule: ResourceRule) -> bool:
    same = [p for p in parent if p.kind == rule.kind]
    ids = [i for i in rule.ids if not any(i in p.ids or any(prefix_matches(q, i) for q in p.prefixes) for p in same)]
    prefixes = [c for c in rule.prefixes if not any(any(_prefix_covers(q, c) for q in p.prefixes) for p in same)]
    return bool(ids or prefixes)


def _prefix_covers(parent: str, child: str) -> bool:
    if not child.startswith(parent):
        return False
    rest = child[len(parent) :]
    return not rest or parent.endswith(("/", ":")) or rest.startswith(("/", ":"))


def _limit_widenings(p: Limits, c: Limits) -> list[str]:
    if p.currency != c.currency:
        return ["policy.currency"]  # amounts in different currencies do not compare
    out: list[str] = []
    if p.per_txn is not None and (c.per_txn is None or c.per_txn > p.per_txn):
        out.append("policy.limits.per_txn")
    if p.per_period is not None and (
        c.per_period is None or c.per_period[1] != p.per_period[1] or c.per_period[0] > p.per_period[0]
    ):
        out.append("policy.limits.per_period")
    return out


def _allows(w: TimeWindow, day: int, minute: int) -> bool:
    def on(d: int) -> bool:
        return bool(w.days & (1 << (d % 7)))

    if w.hours is None:
        return on(day)
    start, end = w.hours
    if start < end:
        return on(day) and start <= minute < end
    return (minute >= start and on(day)) or (minute < end and on(day + 6))


def _time_widens(p: Policy, c: Policy) -> bool:
    if p.time is None:
        return False
    if c.time is None:
        return True
    if str(p.zone) != str(c.zone):
        return True
    # 7 × 1440 minutes: exact for any mix of day sets and windows across midnight.
    return any(_allows(c.time, d, m) and not _allows(p.time, d, m) for d in range(7) for m in range(1440))


def child_claims(
    parent: Mapping[str, Any],
    parent_policy: Policy | None,
    actor: str,
    req: ChildRequest,
    *,
    iss: str,
    jti: str,
    iat: int,
    max_depth: int = DEFAULT_MAX_DEPTH,
) -> dict[str, Any]:
    """The claims of the child token the registry mints (for `iss`, `jti`, `iat`), or
    DelegationError."""
    claimed = parent.get("policy_hash")
    if (claimed is None) != (parent_policy is None) or (
        parent_policy is not None and claimed is not None and not parent_policy.hash_matches(claimed)
    ):
        raise DelegationError("INTERNAL", "the parent policy given does not match the parent token's `policy_hash`")
    scopes = validate_scopes(req.scopes)
    if req.audience is not None and not req.audience:
        raise DelegationError("INVALID_REQUEST", "`audience` is empty: name at least one receiver, or omit it")
    if req.exp <= iat:
        raise DelegationError("INVALID_REQUEST", f"`exp` {req.exp} is not after the issue time {iat}")
    chain = token_mod.actors(parent)
    if actor in chain:
        raise DelegationError(
            "DELEGATION_LOOP",
            f"agent `{actor}` is already in the delegation chain: a chain never names an agent twice",
        )
    widened = widenings(parent, parent_policy, req, max_depth)
    if widened:
        raise DelegationError("DELEGATION_WIDENS", f"delegation widens the parent token: {', '.join(widened)}", widened)
    act: dict[str, Any] = {"sub": actor}
    if parent.get("act") is not None:
        act["act"] = parent["act"]
    aud: Any
    if req.audience is None:
        aud = parent.get("aud")
    else:
        aud = req.audience[0] if len(req.audience) == 1 else list(req.audience)
    nbf = parent.get("nbf")
    claims: dict[str, Any] = {
        "iss": iss,
        "sub": parent["sub"],
        "aud": aud,
        "iat": iat,
        "nbf": iat if nbf is None else max(nbf, iat),
        "exp": req.exp,
        "jti": jti,
        "agent": {**parent["agent"], "scopes": scopes},
        "scope": " ".join(scopes),
        "user": parent.get("user"),
        "policy": req.policy.value if req.policy is not None else parent.get("policy"),
        "policy_hash": req.policy.hash if req.policy is not None else parent.get("policy_hash"),
        "cnf": dict(req.cnf) if req.cnf is not None else None,
        "act": act,
        "ancestor_jtis": [*(parent.get("ancestor_jtis") or []), parent["jti"]],
    }
    return {k: v for k, v in claims.items() if v is not None}
