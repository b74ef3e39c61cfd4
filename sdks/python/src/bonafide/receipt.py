"""Verify receipts: the registry's signed statement of one `POST /v1/verify` decision
(`typ receipt+jwt`, signed by its receipt key, published apart from the token keys at
`/.well-known/receipt-jwks.json`), and the digest of the request it binds, as the Rust
core (`crates/core/src/receipt.rs`) checks them. A receipt says what the registry
decided at `verified_at`, not whether the token is still good now."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from . import jws, policy
from ._jcs import canonicalize
from .errors import BonafideError
from .keys import PublicKey
from .token import is_id

RECEIPT_TYP = "receipt+jwt"
MAX_RECEIPT_BYTES = 16 * 1024
REQUEST_MEMBERS = (
    "token",
    "proof",
    "audience",
    "target_resource",
    "scopes_requested",
    "action",
    "resource",
    "amount",
    "currency",
    "idempotency_key",
)
_CLAIMS = {
    "iss": True,
    "iat": True,
    "sub": True,
    "receipt_id": True,
    "decision": True,
    "valid": True,
    "reasons": True,
    "token_sha256": True,
    "agent_id": False,
    "jti": False,
    "policy_hash": False,
    "request_sha256": True,
    "verified_at": True,
    "remaining": False,
    "audit_index": False,
    "receiver": False,
}
_HEX64 = re.compile(r"[0-9a-f]{64}\Z")
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})\Z")
_ID = re.compile(r"[a-z2-7]{26}\Z")


class ReceiptError(BonafideError):
    """A receipt that does not verify, or a request it was not issued for."""


def _receipt_id(v: Any) -> bool:
    return isinstance(v, str) and v.startswith("rcp_") and _ID.match(v[4:]) is not None


def _rfc3339(text: str) -> bool:
    m = _RFC3339.match(text)
    if m is None:
        return False
    y, mo, d, h, mi, s = (int(g) for g in m.groups()[:6])
    try:
        datetime(y, mo, d, h, mi, min(s, 59))
    except ValueError:
        return False
    return s <= 60


def _check_claims(c: Mapping[str, Any]) -> None:
    def bad(msg: str) -> ReceiptError:
        return ReceiptError(f"receipt claims are invalid: {msg}")

    for name in c:
        if name not in _CLAIMS:
            raise bad(f"unknown field `{name[:64]}`")
    for name, required in _CLAIMS.items():
        if required and c.get(name) is None:
            raise bad(f"missing field `{name}`")
    strings = ("iss", "token_sha256", "request_sha256", "verified_at", "policy_hash")
    if any(c.get(n) is not None and not isinstance(c[n], str) for n in strings):
        raise bad("a string member is not a string")
    if type(c["iat"]) is not int or not isinstance(c["valid"], bool) or c["decision"] not in ("allow", "deny"):
        raise bad("`iat`, `valid` or `decision` has the wrong type")
    if not isinstance(c["reasons"], list) or not all(isinstance(r, str) for r in c["reasons"]):
        raise bad("`reasons` is not an array of strings")
    if not (_receipt_id(c["sub"]) and _receipt_id(c["receipt_id"])):
        raise bad("`sub` or `receipt_id` is not a receipt id")
    if c.get("agent_id") is not None and not is_id("agt_", c["agent_id"]):
        raise bad("`agent_id` is not an agent id")
    if c.get("jti") is not None and not is_id("tok_", c["jti"]):
        raise bad("`jti` is not a token id")
    receiver = c.get("receiver")
    if receiver is not None and not (
        isinstance(receiver, str) and receiver.startswith("rcv_") and _ID.match(receiver[4:])
    ):
        raise bad("`receiver` is not a receiver id")
    idx = c.get("audit_index")
    if idx is not None and (type(idx) is not int or not 0 <= idx < 2**64):
        raise bad("`audit_index` is not an unsigned integer")
    rem = c.get("remaining")
    if rem is not None and (
        not isinstance(rem, dict)
        or set(rem) != {"amount", "currency", "period", "period_ends"}
        or not all(isinstance(v, str) for v in rem.values())
    ):
        raise bad("`remaining` is not `{amount, currency, period, period_ends}`")
    # Consistency.
    if c["sub"] != c["receipt_id"]:
        raise bad("`sub` is not the receipt's own `receipt_id`")
    if not _HEX64.match(c["token_sha256"]):
        raise bad("`token_sha256` is not 64 lowercase hex digits")
    if not _HEX64.match(c["request_sha256"]):
        raise bad("`request_sha256` is not 64 lowercase hex digits")
    ph = c.get("policy_hash")
    if ph is not None and not (ph.startswith("sha256:") and _HEX64.match(ph[7:])):
        raise bad("`policy_hash` is not `sha256:` and 64 lowercase hex digits")
    if not _rfc3339(c["verified_at"]):
        raise bad("`verified_at` is not an RFC 3339 time")
    if c["decision"] == "allow" and not c["valid"]:
        raise bad("`decision` is allow but `valid` is false")


def verify(receipt: str, keys: Mapping[str, PublicKey]) -> dict[str, Any]:
    """Verifies a receipt with the registry's receipt keys (by thumbprint `kid`);
    returns its claims. Time is not checked: it records a past decision."""

    def key_for(h: jws.Protected) -> PublicKey:
        k = keys.get(h.kid)
        if k is None:
            raise ReceiptError("receipt does not verify: no key with this `kid`")
        return k

    try:
        _, _, claims = jws.open_jws(receipt, typ=RECEIPT_TYP, key_for=key_for, max_bytes=MAX_RECEIPT_BYTES)
    except jws.JwsError as e:
        raise ReceiptError(f"receipt does not verify: {e.message}") from None
    _check_claims(claims)
    return claims


def request_canonical(request: Mapping[str, Any]) -> str:
    """The RFC 8785 form of what a receipt binds of a `POST /v1/verify` body: `token`
    and `proof` left out, `target_resource` read as `audience`, `amount` with the
    currency's minor units, scopes sorted and deduplicated."""

    def bad(msg: str) -> ReceiptError:
        return ReceiptError(f"invalid verify request: {msg}")

    out: dict[str, Any] = {}
    target = None
    amount = currency = None
    for name, value in request.items():
        if name not in REQUEST_MEMBERS:
            raise bad(f"unknown member `{name[:64]}` (expected one of {', '.join(REQUEST_MEMBERS)})")
        if value is None or name in ("token", "proof"):
            continue
        if name in ("audience", "target_resource", "action", "idempotency_key"):
            if not isinstance(value, str):
                raise bad(f"`{name}` must be a string")
            if name == "target_resource":
                target = value
            else:
                out[name] = value
        elif name == "scopes_requested":
            if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
                raise bad(f"`{name}` must be an array of strings")
            if value:
                out[name] = sorted(set(value))
        elif name == "resource":
            if not isinstance(value, dict):
                raise bad("`resource` must be an object `{type, id}`")
            other = next((k for k in value if k not in ("type", "id")), None)
            if other is not None:
                raise bad(f"unknown member `resource.{other[:64]}` (expected type, id)")
            for k in ("type", "id"):
                if k not in value:
                    raise bad(f"`resource.{k}` is missing")
                if not isinstance(value[k], str):
                    raise bad(f"`resource.{k}` must be a string")
            out["resource"] = {"type": value["type"], "id": value["id"]}
        elif name == "amount":
            amount = value
        elif name == "currency":
            currency = value
    if "audience" not in out and target is not None:
        out["audience"] = target
    if amount is not None and currency is not None:
        try:
            money = policy.money_from_json(amount, currency)
        except policy.PolicyError as e:
            raise bad(str(e)) from None
        out["amount"] = policy.format_amount(money.amount, money.currency)
        out["currency"] = money.currency
    elif amount is not None:
        raise bad("`amount` needs a `currency`")
    elif currency is not None:
        raise bad("`currency` needs an `amount`")
    return canonicalize(out)


def request_sha256(request: Mapping[str, Any]) -> str:
    return hashlib.sha256(request_canonical(request).encode()).hexdigest()


def check_request(claims: Mapping[str, Any], request: Mapping[str, Any] | str | bytes) -> None:
    """Raises ReceiptError unless the receipt was issued for this verify request (its
    body, as a mapping or JSON text)."""
    body = json.loads(request) if isinstance(request, (str, bytes)) else request
    if not isinstance(body, Mapping):
        raise ReceiptError("invalid verify request: a verify request is a JSON object")
    found = request_sha256(body)
    if claims["request_sha256"] != found:
        raise ReceiptError(
            f"the receipt is for another request: it names request_sha256 {claims['request_sha256'][:64]}, "
            f"this request is {found}"
        )
