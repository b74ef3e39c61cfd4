"""JWS Compact Serialization (RFC 7515 §7.1), hardened per RFC 8725: the one verify
sequence of every kind of JWS this package opens (agent tokens, DPoP proofs, status
list tokens), in the Rust core's order, first failure deciding:

1. size, then shape (three segments, non-empty header and payload);
2. the protected header: strict base64url and JSON, `alg`/`typ`/`kid` strings, no
   `crit`, none of FORBIDDEN_HEADERS (but `jwk` for DPoP), a supported `alg`, a `kid`
   of 1–128 bytes (unless the key is embedded); then the kind's `alg` allow-list, its
   `typ`, and for DPoP a public embedded `jwk`;
3. the key the caller chooses from the header, and its algorithm equal to `alg`;
4. the signature, before anything in the payload is read;
5. the claims: strict JSON, an object.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import _json
from ._b64 import Base64Error, b64url_decode
from .errors import KeyError_
from .keys import ALGORITHMS, PublicKey, check_jwk_shape, private_member

FORBIDDEN_HEADERS = ("jwk", "jku", "x5u", "x5c", "x5t", "x5t#S256", "b64")
MAX_KID_LEN = 128


class JwsError(Exception):
    """Why a JWS could not be opened; `kind` names the failure (for callers that map
    some kinds to other codes)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class Protected:
    """A protected header that passed the header checks."""

    alg: str
    kid: str
    typ: str | None
    jwk: Mapping[str, Any] | None = None


def byte_len(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def split(jws: str, max_bytes: int) -> tuple[str, str, str]:
    size = byte_len(jws)
    if size > max_bytes:
        raise JwsError("too_large", f"JWS is {size} bytes, more than the {max_bytes} allowed")
    parts = jws.split(".")
    if len(parts) != 3 or not parts[0] or not parts[1]:
        raise JwsError("shape", "not a compact JWS (three base64url segments separated by dots)")
    return parts[0], parts[1], parts[2]


def typ_matches(typ: str | None, expected: str) -> bool:
    """RFC 7515 §4.1.9: case-insensitive, the `application/` prefix optional."""
    if typ is None:
        return False
    bare = typ[12:] if typ[:12].lower() == "application/" else typ
    return bare.lower() == expected.lower()


def _string_member(members: Mapping[str, Any], name: str) -> str | None:
    v = members.get(name)
    if v is None or isinstance(v, str):
        return v
    raise JwsError("header_not_object", "JWS header is not a valid JOSE header")


def check_header(
    header_b64: str,
    *,
    typ: str,
    typ_optional: bool = False,
    embedded_jwk: bool = False,
    algs: tuple[str, ...] = ALGORITHMS,
    max_depth: int = _json.DEFAULT_MAX_DEPTH,
) -> Protected:
    """Step 2 on its own: decode and check a protected header."""
    try:
        raw = b64url_decode(header_b64)
    except Base64Error as e:
        raise JwsError("base64", "JWS header is not strict base64url") from e
    try:
        members = _json.loads(raw, max_depth)
    except _json.JsonError as e:
        raise JwsError("json", f"JWS header JSON is invalid: {e}") from e
    if not isinstance(members, dict):
        raise JwsError("header_not_object", "JWS header is not a valid JOSE header")
    alg = _string_member(members, "alg")
    typ_value = _string_member(members, "typ")
    kid = None if embedded_jwk else _string_member(members, "kid")
    if "crit" in members:
        raise JwsError("crit", "`crit` header parameter is not supported")
    for name in FORBIDDEN_HEADERS:
        if name in members and not (embedded_jwk and name == "jwk"):
            raise JwsError("forbidden_header", f"header parameter `{name}` is not accepted")
    if alg is None:
        raise JwsError("missing_header", "JWS header has no `alg`")
    if alg not in ALGORITHMS:
        raise JwsError("alg", f"algorithm `{alg[:32]}` is not allowed")
    if not embedded_jwk:
        if kid is None:
            raise JwsError("missing_header", "JWS header has no `kid`")
        if not kid or byte_len(kid) > MAX_KID_LEN:
            raise JwsError("bad_kid", "`kid` names no key")
    if alg not in algs:
        raise JwsError("alg", f"algorithm `{alg[:32]}` is not allowed")
    if not (typ_matches(typ_value, typ) or (typ_optional and typ_value is None)):
        raise JwsError(
            "typ",
            f"type `{(typ_value or '')[:64]}` is not `{typ}`"
            if typ_value is not None
            else f"no `typ` (`{typ}` expected)",
        )
    jwk = None
    if embedded_jwk:
        jwk = members.get("jwk")
        if jwk is None:
            raise JwsError("missing_header", "JWS header has no `jwk`")
        try:
            check_jwk_shape(jwk)
        except KeyError_ as e:
            raise JwsError("malformed_jwk", "`jwk` is not a JWK object") from e
        priv = private_member(jwk)
        if priv is not None:
            raise JwsError("jwk", f"`jwk` is not usable: JWK contains private key member `{priv}`")
    return Protected(alg=alg, kid=kid or "", typ=typ_value, jwk=jwk)


def open_jws(
    jws: str,
    *,
    typ: str,
    key_for: Callable[[Protected], PublicKey],
    max_bytes: int,
    embedded_jwk: bool = False,
    typ_optional: bool = False,
    algs: tuple[str, ...] = ALGORITHMS,
    max_depth: int = _json.DEFAULT_MAX_DEPTH,
    known: Mapping[str, tuple[Protected, PublicKey]] | None = None,
) -> tuple[Protected, PublicKey, dict[str, Any]]:
    """Opens a compact JWS: the checked header, the key it verified with, the claims.
    `known` maps header segments already checked (the headers the registry writes for
    its own keys) to their header and key, skipping the decode."""
    h, p, s = split(jws, max_bytes)
    hit = known.get(h) if known is not None else None
    if hit is not None:
        header, key = hit
    else:
        header = check_header(
            h, typ=typ, typ_optional=typ_optional, embedded_jwk=embedded_jwk, algs=algs, max_depth=max_depth
        )
        key = key_for(header)
    if key.alg != header.alg:
        raise JwsError("alg_key_mismatch", f"algorithm `{header.alg}` does not match the key's algorithm `{key.alg}`")
    try:
        sig = b64url_decode(s)
    except Base64Error as e:
        raise JwsError("base64", "JWS signature is not strict base64url") from e
    if not key.verify(f"{h}.{p}".encode(), sig):
        raise JwsError("bad_signature", "signature does not verify")
    try:
        payload = b64url_decode(p)
    except Base64Error as e:
        raise JwsError("base64", "JWS payload is not strict base64url") from e
    try:
        claims = _json.loads(payload, max_depth)
    except _json.JsonError as e:
        raise JwsError("json", f"JWS payload JSON is invalid: {e}") from e
    if not isinstance(claims, dict):
        raise JwsError("claims", "claims are not a JSON object")
    return header, key, claims
