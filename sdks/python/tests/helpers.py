"""Test helpers: a throwaway "registry" key that signs agent tokens and status lists as
the registry does (the same header and claims shapes), for unit tests that need no
server. The integration tests use the real registry."""

from __future__ import annotations

import base64
import json
import secrets
import time
import zlib
from typing import Any

from bonafide._b64 import b64url_encode
from bonafide.keys import PrivateKey

REGISTRY = "https://registry.example"


def rand_id(prefix: str) -> str:
    alphabet = "abcdefghijklmnopqrstuvwxyz234567"
    return prefix + "".join(secrets.choice(alphabet) for _ in range(26))


def sign_jws(key: PrivateKey, typ: str, claims: dict[str, Any], header: dict[str, Any] | None = None) -> str:
    h = header if header is not None else {"alg": key.alg, "typ": typ, "kid": key.kid}
    si = (
        b64url_encode(json.dumps(h, separators=(",", ":")).encode())
        + "."
        + b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    )
    return si + "." + b64url_encode(key.sign(si.encode()))


def agent_claims(**over: Any) -> dict[str, Any]:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": REGISTRY,
        "sub": rand_id("agt_"),
        "iat": now - 5,
        "nbf": now - 5,
        "exp": now + 600,
        "jti": rand_id("tok_"),
        "agent": {"name": "PortfolioBot", "issuer": "apexwealth.example", "scopes": ["read:portfolio"]},
        "scope": "read:portfolio",
    }
    claims.update(over)
    return {k: v for k, v in claims.items() if v is not None}


def status_list_token(key: PrivateKey, uri: str, statuses: dict[int, int], size: int = 64, **over: Any) -> str:
    raw = bytearray(size // 4)
    for idx, value in statuses.items():
        raw[idx // 4] |= value << ((idx % 4) * 2)
    lst = base64.urlsafe_b64encode(zlib.compress(bytes(raw))).rstrip(b"=").decode()
    now = int(time.time())
    claims: dict[str, Any] = {
        "sub": uri,
        "iat": now,
        "exp": now + 3600,
        "ttl": 60,
        "status_list": {"bits": 2, "lst": lst},
    }
    claims.update(over)
    return sign_jws(key, "statuslist+jwt", claims)
