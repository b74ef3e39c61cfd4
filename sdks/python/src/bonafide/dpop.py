"""DPoP proofs (RFC 9449): verify one against the request it came with, or make one.

Every refusal is `PROOF_INVALID` (the Rust core's `dpop::verify`, same order). Not a
replay cache: `VerifiedProof.replay_until` says how long to remember its `jti`."""

from __future__ import annotations

import functools
import hashlib
import json
import re
import secrets
from dataclasses import dataclass
from typing import Any

from . import jws
from ._b64 import b64url_encode
from .errors import PROOF_INVALID, KeyError_, TokenError
from .keys import PrivateKey, PublicKey, thumbprint

DPOP_TYP = "dpop+jwt"
DEFAULT_MAX_AGE_SECS = 300
DEFAULT_LEEWAY_SECS = 60
DEFAULT_MAX_PROOF_BYTES = 8 * 1024
MAX_JTI_LEN = 256
MAX_CLAIM_LEN = 4096
_UNRESERVED = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~")
_PATH_OK = _UNRESERVED | frozenset(b"!$&'()*+,;=:@/")
_NOT_GRAPHIC = re.compile(r"[^\x21-\x7e]")
_PLAIN_PATH = re.compile(r"[A-Za-z0-9\-._~!$&'()*+,;=:@/]*\Z")
_HOST_OK = _UNRESERVED | frozenset(b"!$&'()*+,;=")


class DpopError(TokenError):
    """A DPoP proof that does not hold: always `PROOF_INVALID`."""

    def __init__(self, message: str) -> None:
        super().__init__(PROOF_INVALID, message)


@dataclass(frozen=True, slots=True)
class VerifiedProof:
    jti: str
    iat: int
    alg: str
    jkt: str
    replay_until: int  # the last second at which this proof would be accepted again


def access_token_hash(access_token: str) -> str:
    """`ath`: base64url(SHA-256(the token's ASCII))."""
    return b64url_encode(hashlib.sha256(access_token.encode()).digest())


def _string_claim(claims: dict[str, Any], name: str, max_len: int) -> str:
    if name not in claims:
        raise DpopError(f"DPoP proof has no `{name}` claim")
    v = claims[name]
    if not isinstance(v, str) or not v or jws.byte_len(v) > max_len:
        raise DpopError(f"DPoP proof claim `{name}` is invalid")
    return v


def verify(
    proof: str,
    *,
    htm: str,
    htu: str,
    jkt: str,
    access_token: str | None,
    now: int,
    max_age: int = DEFAULT_MAX_AGE_SECS,
    leeway: int = DEFAULT_LEEWAY_SECS,
    max_bytes: int = DEFAULT_MAX_PROOF_BYTES,
    known_key: PublicKey | None = None,
    header_cache: dict[str, tuple[jws.Protected, PublicKey]] | None = None,
) -> VerifiedProof:
    """Verifies a DPoP proof (RFC 9449 §4.3 but replay): header, the key's thumbprint
    against `jkt` before it is used, signature, then `jti`, `htm`, `htu` (normalised,
    query and fragment ignored), `iat` within [now - max_age, now + leeway] and `ath`.
    `known_key`: the bound key already parsed (a cache by thumbprint); the proof's
    `jwk` must then carry exactly its public members. `header_cache`: header segments
    already checked, with their key (a receiver's; an agent's proofs carry the same
    header every time), filled here after a proof verifies."""

    def key_for(header: jws.Protected) -> PublicKey:
        jwk = header.jwk
        assert jwk is not None
        if known_key is not None:
            same = all(jwk.get(m) == known_key.jwk.get(m) for m in ("kty", "crv", "x", "y", "n", "e"))
            if not (secrets.compare_digest(known_key.kid.encode(), jkt.encode()) and same):
                raise DpopError("DPoP proof key is not the key the token is bound to (`cnf.jkt`)")
            return known_key
        try:
            proof_jkt = thumbprint(jwk)
        except KeyError_ as e:
            raise DpopError(f"DPoP proof `jwk` is not usable: {e}") from None
        if not secrets.compare_digest(proof_jkt.encode(), jkt.encode()):
            raise DpopError("DPoP proof key is not the key the token is bound to (`cnf.jkt`)")
        try:
            return PublicKey.from_jwk(jwk)
        except KeyError_ as e:
            raise DpopError(f"DPoP proof `jwk` is not usable: {e}") from None

    known = None
    if header_cache is not None:
        header_b64 = proof.split(".", 1)[0]
        hit = header_cache.get(header_b64)
        if hit is not None:
            # The key is the token's before anything is done with it.
            if not secrets.compare_digest(hit[1].kid.encode(), jkt.encode()):
                raise DpopError("DPoP proof key is not the key the token is bound to (`cnf.jkt`)")
            known = {header_b64: hit}
    try:
        header, key, claims = jws.open_jws(
            proof, typ=DPOP_TYP, key_for=key_for, max_bytes=max_bytes, embedded_jwk=True, known=known
        )
    except jws.JwsError as e:
        raise DpopError(f"DPoP proof: {e.message}") from None
    jti = _string_claim(claims, "jti", MAX_JTI_LEN)
    proof_htm = _string_claim(claims, "htm", MAX_CLAIM_LEN)
    proof_htu = _string_claim(claims, "htu", MAX_CLAIM_LEN)
    if "iat" not in claims:
        raise DpopError("DPoP proof has no `iat` claim")
    iat = claims["iat"]
    if type(iat) is not int or not -(2**63) <= iat < 2**63:
        raise DpopError("DPoP proof claim `iat` is invalid")
    ath = claims.get("ath")
    if "ath" in claims and not isinstance(ath, str):
        raise DpopError("DPoP proof claim `ath` is invalid")
    if proof_htm != htm:
        raise DpopError("DPoP proof `htm` does not match the request method")
    want = normalize_htu(htu)
    if normalize_htu(proof_htu) != want:
        raise DpopError("DPoP proof `htu` does not match the request URI")
    if iat < now - max_age or iat > now + leeway:
        raise DpopError(f"DPoP proof `iat` {iat} is outside the accepted window around {now}")
    if access_token is not None:
        if ath is None:
            raise DpopError("DPoP proof has no `ath` claim")
        if not secrets.compare_digest(ath.encode(), access_token_hash(access_token).encode()):
            raise DpopError("DPoP proof `ath` does not match the access token")
    if header_cache is not None and known is None:
        if len(header_cache) >= 10_000:
            header_cache.clear()
        header_cache[proof.split(".", 1)[0]] = (header, key)
    return VerifiedProof(jti=jti, iat=iat, alg=header.alg, jkt=key.kid, replay_until=iat + max_age)


def sign(
    key: PrivateKey,
    *,
    htm: str,
    htu: str,
    access_token: str | None,
    iat: int,
    jti: str | None = None,
) -> str:
    """A DPoP proof for the request `htm htu` (pass `htu` without query and fragment):
    header `{typ, alg, jwk}` with the bare public key, claims `{jti, htm, htu, iat,
    ath}`. `jti` defaults to 128 random bits."""
    header = {"typ": DPOP_TYP, "alg": key.alg, "jwk": key.public_jwk()}
    claims: dict[str, Any] = {
        "jti": jti if jti is not None else secrets.token_urlsafe(16),
        "htm": htm,
        "htu": htu,
        "iat": iat,
    }
    if access_token is not None:
        claims["ath"] = access_token_hash(access_token)
    signing_input = (
        b64url_encode(json.dumps(header, separators=(",", ":")).encode())
        + "."
        + b64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    )
    return signing_input + "." + b64url_encode(key.sign(signing_input.encode()))


def proof_key(proof: str) -> PublicKey | None:
    """The key a proof's `jwk` header carries (for a cache of keys by thumbprint; call
    it only for a proof that verified), or None."""
    try:
        header = jws.check_header(jws.split(proof, DEFAULT_MAX_PROOF_BYTES)[0], typ=DPOP_TYP, embedded_jwk=True)
        return PublicKey.from_jwk(header.jwk) if header.jwk is not None else None
    except (jws.JwsError, KeyError_):
        return None


class HtuError(DpopError):
    pass


@functools.lru_cache(maxsize=4096)
def normalize_htu(url: str) -> str:
    """RFC 9449 §4.3 with RFC 3986 §6.2.2–6.2.3 normalisation, query and fragment
    dropped: scheme and host lowercased, default port dropped, empty path `/`,
    percent-encodings uppercased (unreserved ones decoded), dot segments removed."""
    if jws.byte_len(url) > MAX_CLAIM_LEN:
        raise HtuError("invalid HTTP target URI: longer than 4096 bytes")
    if _NOT_GRAPHIC.search(url):
        raise HtuError("invalid HTTP target URI: contains whitespace, control or non-ASCII characters")
    for i, c in enumerate(url):
        if c in "?#":
            url = url[:i]
            break
    scheme, sep, rest = url.partition(":")
    if not sep:
        raise HtuError("invalid HTTP target URI: no scheme")
    scheme = scheme.lower()
    if scheme == "https":
        default_port = 443
    elif scheme == "http":
        default_port = 80
    else:
        raise HtuError("invalid HTTP target URI: scheme is not http or https")
    if not rest.startswith("//"):
        raise HtuError("invalid HTTP target URI: no authority")
    rest = rest[2:]
    slash = rest.find("/")
    authority, path = (rest, "") if slash < 0 else (rest[:slash], rest[slash:])
    if "@" in authority:
        raise HtuError("invalid HTTP target URI: userinfo is not allowed")
    host, port = _split_host_port(authority)
    out = f"{scheme}://{host}"
    if port is not None and port != default_port:
        out += f":{port}"
    path = _remove_dot_segments(_normalize_percent(path))
    return out + (path or "/")


def _split_host_port(authority: str) -> tuple[str, int | None]:
    if authority.startswith("["):
        inside, sep, after = authority[1:].partition("]")
        if not sep:
            raise HtuError("invalid HTTP target URI: unterminated IP literal")
        if not inside or not all(c in "0123456789abcdefABCDEF:." for c in inside):
            raise HtuError("invalid HTTP target URI: invalid IP literal")
        if after and not after.startswith(":"):
            raise HtuError("invalid HTTP target URI: invalid authority")
        host, port_text = f"[{inside.lower()}]", (after[1:] if after else None)
    else:
        h, sep, p = authority.rpartition(":")
        host, port_text = (h, p) if sep else (authority, None)
        if not host:
            raise HtuError("invalid HTTP target URI: no host")
        if not all(b in _HOST_OK for b in host.encode()):
            raise HtuError("invalid HTTP target URI: invalid host")
        host = host.lower()
    if not port_text:
        return host, None
    if len(port_text) > 5 or not port_text.isdigit() or int(port_text) > 65535:
        raise HtuError("invalid HTTP target URI: invalid port")
    return host, int(port_text)


def _normalize_percent(path: str) -> str:
    if _PLAIN_PATH.match(path):
        return path  # nothing to decode or refuse (the common case)
    out: list[str] = []
    raw = path.encode()
    i = 0
    hexdigits = "0123456789abcdefABCDEF"
    while i < len(raw):
        b = raw[i]
        if b == 0x25:  # '%'
            digits = []
            for j in (i + 1, i + 2):
                if j >= len(raw):
                    raise HtuError("invalid HTTP target URI: truncated percent-encoding")
                if chr(raw[j]) not in hexdigits:
                    raise HtuError("invalid HTTP target URI: invalid percent-encoding")
                digits.append(chr(raw[j]))
            h1, h2 = digits
            value = int(h1 + h2, 16)
            out.append(chr(value) if value in _UNRESERVED else f"%{value:02X}")
            i += 3
        else:
            if b not in _PATH_OK:
                raise HtuError("invalid HTTP target URI: invalid character in path")
            out.append(chr(b))
            i += 1
    return "".join(out)


def _remove_dot_segments(path: str) -> str:
    """RFC 3986 §5.2.4."""
    output: list[str] = []
    inp = path
    while inp:
        if inp.startswith("../"):
            inp = inp[3:]
        elif inp.startswith("./") or inp.startswith("/./"):
            inp = inp[2:]
        elif inp == "/.":
            inp = "/"
        elif inp.startswith("/../"):
            inp = inp[3:]
            if output:
                output.pop()
        elif inp == "/..":
            inp = "/"
            if output:
                output.pop()
        elif inp in (".", ".."):
            inp = ""
        else:
            start = 1 if inp.startswith("/") else 0
            nxt = inp.find("/", start)
            end = len(inp) if nxt < 0 else nxt
            output.append(inp[:end])
            inp = inp[end:]
    return "".join(output)
