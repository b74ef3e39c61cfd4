"""Receipts and delegation with locally made inputs (the conformance vectors cover them
too, once `conformance/` carries receipts.json and delegation.json)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from bonafide import receipt
from bonafide.delegation import ChildRequest, DelegationError, RevokedSet, child_claims
from bonafide.keys import PrivateKey
from bonafide.policy import Policy
from helpers import rand_id, sign_jws

KEY = PrivateKey.generate("EdDSA")
KEYS = {KEY.kid: KEY.public_key}


def receipt_claims(request: dict[str, Any], **over: Any) -> dict[str, Any]:
    rid = rand_id("rcp_")
    claims: dict[str, Any] = {
        "iss": "https://registry.example",
        "iat": 1_800_000_000,
        "sub": rid,
        "receipt_id": rid,
        "decision": "allow",
        "valid": True,
        "reasons": [],
        "token_sha256": hashlib.sha256(b"token").hexdigest(),
        "request_sha256": receipt.request_sha256(request),
        "verified_at": "2027-01-15T08:00:00.123Z",
    }
    claims.update(over)
    return claims


def test_a_receipt_verifies_and_binds_its_request() -> None:
    request = {
        "token": "t",
        "action": "payments.send",
        "amount": "10",
        "currency": "EUR",
        "scopes_requested": ["b:x", "a:x", "b:x"],
    }
    assert receipt.request_canonical(request) == (
        '{"action":"payments.send","amount":"10.00","currency":"EUR","scopes_requested":["a:x","b:x"]}'
    )
    claims = receipt.verify(sign_jws(KEY, "receipt+jwt", receipt_claims(request)), KEYS)
    receipt.check_request(claims, request)
    receipt.check_request(claims, {**request, "amount": 10, "token": "another"})  # same request, other spelling
    with pytest.raises(receipt.ReceiptError, match="another request"):
        receipt.check_request(claims, {**request, "amount": "11"})


@pytest.mark.parametrize(
    ("over", "why"),
    [
        ({"sub": rand_id("rcp_")}, "receipt_id"),
        ({"decision": "allow", "valid": False}, "allow"),
        ({"request_sha256": "ABC"}, "hex"),
        ({"extra": 1}, "unknown field"),
        ({"verified_at": "yesterday"}, "RFC 3339"),
    ],
)
def test_a_receipt_with_bad_claims_is_refused(over: dict[str, Any], why: str) -> None:
    with pytest.raises(receipt.ReceiptError, match=why):
        receipt.verify(sign_jws(KEY, "receipt+jwt", receipt_claims({}, **over)), KEYS)


def test_a_receipt_is_not_a_token() -> None:
    with pytest.raises(receipt.ReceiptError, match="not `receipt\\+jwt`"):
        receipt.verify(sign_jws(KEY, "agent+jwt", receipt_claims({})), KEYS)
    other = PrivateKey.generate()
    with pytest.raises(receipt.ReceiptError, match="no key"):
        receipt.verify(sign_jws(other, "receipt+jwt", receipt_claims({})), KEYS)


ROOT, ACTOR, THIRD = rand_id("agt_"), rand_id("agt_"), rand_id("agt_")
PARENT: dict[str, Any] = {
    "iss": "https://registry.example",
    "sub": ROOT,
    "aud": ["https://bank.example", "https://shop.example"],
    "iat": 1_799_999_990,
    "exp": 1_800_003_600,
    "jti": rand_id("tok_"),
    "agent": {"name": "PortfolioBot", "issuer": "apexwealth.example", "scopes": ["read:portfolio", "payments:write"]},
}


def mint(
    req: ChildRequest, parent: dict[str, Any] = PARENT, actor: str = ACTOR, policy: Policy | None = None
) -> dict[str, Any]:
    return child_claims(
        parent, policy, actor, req, iss="https://registry.example", jti=rand_id("tok_"), iat=1_800_000_000
    )


def test_a_narrower_child() -> None:
    child = mint(ChildRequest(scopes=["read:portfolio"], exp=1_800_001_800, audience=["https://bank.example"]))
    assert child["sub"] == ROOT and child["act"] == {"sub": ACTOR} and child["ancestor_jtis"] == [PARENT["jti"]]
    assert (child["aud"], child["scope"], child["nbf"]) == ("https://bank.example", "read:portfolio", 1_800_000_000)
    grandchild = mint(ChildRequest(scopes=["read:portfolio"], exp=1_800_001_800), parent=child, actor=THIRD)
    assert grandchild["act"] == {"sub": THIRD, "act": {"sub": ACTOR}}
    assert grandchild["ancestor_jtis"] == [PARENT["jti"], child["jti"]]
    revoked = RevokedSet(jtis={PARENT["jti"]})
    refusal = revoked.refusal(grandchild)
    assert refusal is not None and refusal.code == "TOKEN_REVOKED"
    refusal = RevokedSet(suspended={ACTOR}).refusal(grandchild)
    assert refusal is not None and refusal.code == "AGENT_SUSPENDED"
    assert RevokedSet(agents={rand_id("agt_")}).refusal(grandchild) is None


def test_every_widening_is_reported() -> None:
    with pytest.raises(DelegationError) as e:
        mint(ChildRequest(scopes=["admin:all"], exp=1_800_007_200, audience=["https://evil.example"]))
    assert (e.value.code, e.value.widened) == ("DELEGATION_WIDENS", ["scope", "audience", "exp"])
    with pytest.raises(DelegationError) as e:
        mint(ChildRequest(scopes=["read:portfolio"], exp=1_800_001_800), actor=ROOT)
    assert e.value.code == "DELEGATION_LOOP"
    with pytest.raises(DelegationError) as e:
        mint(ChildRequest(scopes=[], exp=1_800_001_800))
    assert e.value.code == "SCOPE_INVALID"


def test_policy_narrowing() -> None:
    base = {
        "version": "pol.v0.2",
        "id": "p",
        "actions": ["payments.send", "payments.refund"],
        "limits": {
            "per_txn": {"amount": "100", "currency": "EUR"},
            "per_period": {"amount": "500", "currency": "EUR", "period": "week"},
        },
        "constraints": {"time": {"dow": ["Mon", "Tue"], "start": "09:00", "end": "17:00", "tz": "Europe/Paris"}},
    }
    parent_policy = Policy.from_value(base)
    parent = {**PARENT, "policy": base, "policy_hash": parent_policy.hash}
    narrower = {
        **base,
        "actions": ["payments.send"],
        "limits": {
            "per_txn": {"amount": "50", "currency": "EUR"},
            "per_period": {"amount": "100", "currency": "EUR", "period": "week"},
        },
        "constraints": {"time": {"dow": ["Mon"], "start": "10:00", "end": "12:00", "tz": "Europe/Paris"}},
    }
    child = mint(
        ChildRequest(scopes=["payments:write"], exp=1_800_001_800, policy=Policy.from_value(narrower)),
        parent=parent,
        policy=parent_policy,
    )
    assert child["policy"] == narrower
    wider = {
        **narrower,
        "actions": ["payments.send", "admin.all"],
        "limits": {"per_txn": {"amount": "200", "currency": "EUR"}},
        "constraints": {"time": {"dow": ["Mon"], "start": "08:00", "end": "12:00", "tz": "Europe/Paris"}},
    }
    with pytest.raises(DelegationError) as e:
        mint(
            ChildRequest(scopes=["payments:write"], exp=1_800_001_800, policy=Policy.from_value(wider)),
            parent=parent,
            policy=parent_policy,
        )
    assert e.value.widened == ["policy.actions", "policy.limits.per_txn", "policy.limits.per_period", "policy.time"]
