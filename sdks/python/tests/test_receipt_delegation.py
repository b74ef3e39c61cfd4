"""Receipts and delegated tokens' chains with locally made inputs (the conformance
vectors cover them too: receipts.json, delegation.json's `tokens`)."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest

from bonafide import receipt
from bonafide.delegation import RevokedSet
from bonafide.keys import PrivateKey
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
PARENT_JTI, CHILD_JTI = rand_id("tok_"), rand_id("tok_")
# A grandchild as the registry mints it (POST /v1/token, twice): the receiver only
# reads its chain.
GRANDCHILD: dict[str, Any] = {
    "iss": "https://registry.example",
    "sub": ROOT,
    "aud": "https://bank.example",
    "iat": 1_800_000_000,
    "exp": 1_800_001_800,
    "jti": rand_id("tok_"),
    "agent": {"name": "PortfolioBot", "issuer": "apexwealth.example", "scopes": ["read:portfolio"]},
    "act": {"sub": THIRD, "act": {"sub": ACTOR}},
    "ancestor_jtis": [PARENT_JTI, CHILD_JTI],
}


def test_a_delegated_token_is_refused_for_any_revoked_link() -> None:
    for revoked, code in [
        (RevokedSet(jtis={PARENT_JTI}), "TOKEN_REVOKED"),
        (RevokedSet(jtis={GRANDCHILD["jti"]}), "TOKEN_REVOKED"),
        (RevokedSet(agents={ACTOR}), "TOKEN_REVOKED"),
        (RevokedSet(suspended={ROOT}), "AGENT_SUSPENDED"),
        (RevokedSet(suspended={THIRD}), "AGENT_SUSPENDED"),
    ]:
        refusal = revoked.refusal(GRANDCHILD)
        assert refusal is not None and refusal.code == code, revoked
    assert RevokedSet(agents={rand_id("agt_")}, jtis={rand_id("tok_")}).refusal(GRANDCHILD) is None


def test_the_sdk_does_not_mint_delegated_tokens() -> None:
    # Minting (and its narrowing refusals) is the registry's rule alone: POST /v1/token.
    import bonafide.delegation as d

    assert not hasattr(d, "child_claims") and not hasattr(d, "ChildRequest") and not hasattr(d, "DelegationError")
