#!/usr/bin/env python3
"""Writes the receipt vectors of this directory, with Python's `cryptography`, an
implementation independent of Bonafide's Rust code.

Keys: RFC 8037 Appendix A.1 (Ed25519, deterministic signatures, thumbprint
`kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k` per A.3) signs every receipt; a second
Ed25519 key, seeded with SHA-256("bonafide receipt test: foreign key"), plays a key
the verifier does not know.

Receipts: the payload is the claims as compact JSON in ReceiptClaims member order,
absent optional members left out (what `receipt::sign` writes), the header
`{"alg":"EdDSA","typ":"receipt+jwt","kid":...}`. `request_sha256` of the allow
receipt is the digest of `requests/full_request.json` from expected.json, so run
make_digests.py first.

Run in this directory: python3 make_receipts.py
"""

import base64
import hashlib
import json

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

RFC8037_D = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A"
RFC8037_X = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"
RFC8037_KID = "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def unb64u(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def compact(value) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode()


def ident(prefix: str, seed: int) -> str:
    raw = bytes((seed + i) % 256 for i in range(16))
    return prefix + base64.b32encode(raw).decode().lower().rstrip("=")


def thumbprint(x: str) -> str:
    # RFC 7638 §3.2 / RFC 8037 §2: required members in lexicographic order.
    return b64u(hashlib.sha256(compact({"crv": "Ed25519", "kty": "OKP", "x": x})).digest())


KEY = Ed25519PrivateKey.from_private_bytes(unb64u(RFC8037_D))
FOREIGN = Ed25519PrivateKey.from_private_bytes(
    hashlib.sha256(b"bonafide receipt test: foreign key").digest()
)
assert b64u(KEY.public_key().public_bytes_raw()) == RFC8037_X
assert thumbprint(RFC8037_X) == RFC8037_KID
FOREIGN_KID = thumbprint(b64u(FOREIGN.public_key().public_bytes_raw()))


def header(typ="receipt+jwt", kid=RFC8037_KID, alg="EdDSA", **extra):
    h = {"alg": alg}
    if typ is not None:
        h["typ"] = typ
    h["kid"] = kid
    h.update(extra)
    return h


def sign(claims_bytes: bytes, hdr=None, key=KEY) -> str:
    signing_input = b64u(compact(hdr or header())) + "." + b64u(claims_bytes)
    return signing_input + "." + b64u(key.sign(signing_input.encode()))


with open("expected.json", encoding="utf-8") as f:
    REQUEST_SHA256 = json.load(f)["full_request"]["sha256"]

ALLOW = {
    "iss": "https://registry.example",
    "iat": 1764052418,
    "sub": ident("rcp_", 0),
    "receipt_id": ident("rcp_", 0),
    "decision": "allow",
    "valid": True,
    "reasons": [],
    "token_sha256": hashlib.sha256(b"eyJhbGciOiJFZERTQSJ9.e30.sig").hexdigest(),
    "agent_id": ident("agt_", 16),
    "jti": ident("tok_", 32),
    "policy_hash": "sha256:" + hashlib.sha256(b"{}").hexdigest(),
    "request_sha256": REQUEST_SHA256,
    "verified_at": "2025-11-25T06:33:38.123Z",
    "remaining": {
        "amount": "1249.50",
        "currency": "EUR",
        "period": "month",
        "period_ends": "2025-12-01T00:00:00Z",
    },
    "audit_index": 42,
    "receiver": ident("rcv_", 48),
}

DENY = {
    "iss": "https://registry.example",
    "iat": 1764052419,
    "sub": ident("rcp_", 64),
    "receipt_id": ident("rcp_", 64),
    "decision": "deny",
    "valid": False,
    "reasons": ["TOKEN_EXPIRED"],
    "token_sha256": hashlib.sha256(b"an.expired.token").hexdigest(),
    "request_sha256": hashlib.sha256(b"{}").hexdigest(),
    "verified_at": "2025-11-25T06:33:39.000Z",
}

JWK = {"kty": "OKP", "crv": "Ed25519", "x": RFC8037_X}
SOURCE = "make_receipts.py; key RFC 8037 A.1"


def write(name, value):
    with open(name, "w", encoding="utf-8") as f:
        f.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


def good(name, description, claims):
    write(name, {
        "description": description,
        "source": SOURCE,
        "jwk": JWK,
        "claims": claims,
        "jws": sign(compact(claims)),
    })


def bad(name, description, jws, error):
    write(name, {
        "description": description,
        "source": SOURCE,
        "jwk": JWK,
        "jws": jws,
        "error": error,
    })


good("receipt_allow.json", "an allow with every optional claim", ALLOW)
good("receipt_deny_invalid_token.json", "a deny for an expired token: no agent, no jti", DENY)

allow_jws = sign(compact(ALLOW))
h, p, s = allow_jws.split(".")
forged = dict(ALLOW, audit_index=43)
bad("fail_receipt_payload_changed.json",
    "the allow receipt with audit_index 43 instead of 42, signature kept",
    f"{h}.{b64u(compact(forged))}.{s}",
    "receipt does not verify: signature does not verify")
sig = bytearray(unb64u(s))
sig[0] ^= 1
bad("fail_receipt_signature_changed.json",
    "the allow receipt with one bit of its signature flipped",
    f"{h}.{p}.{b64u(bytes(sig))}",
    "receipt does not verify: signature does not verify")
bad("fail_receipt_foreign_key.json",
    "the allow claims signed by a key the verifier does not hold",
    sign(compact(ALLOW), header(kid=FOREIGN_KID), FOREIGN),
    "receipt does not verify: no key with this `kid`")
bad("fail_receipt_typ_agent_jwt.json",
    "the allow claims signed with typ agent+jwt: an agent token's type",
    sign(compact(ALLOW), header(typ="agent+jwt")),
    "not a receipt: its type is `agent+jwt`, not `receipt+jwt`")
bad("fail_receipt_typ_missing.json",
    "the allow claims signed with no typ",
    sign(compact(ALLOW), header(typ=None)),
    "not a receipt: its type is ``, not `receipt+jwt`")
bad("fail_receipt_alg_hs256.json",
    "header alg HS256 (an HMAC with the public key as secret is the classic attack)",
    sign(compact(ALLOW), header(alg="HS256")),
    "receipt does not verify: algorithm `HS256` is not allowed")
bad("fail_receipt_jwk_in_header.json",
    "a header that carries its own key",
    sign(compact(ALLOW), header(jwk=JWK)),
    "receipt does not verify: header parameter `jwk` is not accepted: keys come only from the registry")
bad("fail_receipt_unknown_claim.json",
    "validly signed claims with a member receipts do not have",
    sign(compact(dict(ALLOW, approved_by="me"))),
    "receipt claims are invalid: unknown field `approved_by`, expected one of `iss`, `iat`, `sub`, `receipt_id`, `decision`, `valid`, `reasons`, `token_sha256`, `agent_id`, `jti`, `policy_hash`, `request_sha256`, `verified_at`, `remaining`, `audit_index`, `receiver`")
bad("fail_receipt_sub_not_receipt_id.json",
    "validly signed claims whose sub is another receipt's id, not its own receipt_id",
    sign(compact(dict(ALLOW, sub=ident("rcp_", 16)))),
    "receipt claims are invalid: `sub` is not the receipt's own `receipt_id`")
bad("fail_receipt_duplicate_claim.json",
    "validly signed claims naming decision twice (deny, then allow)",
    sign(compact(DENY)[:-1] + b',"decision":"allow"}'),
    "receipt claims are invalid: duplicate member `decision`")
