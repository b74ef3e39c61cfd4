"""Public and private keys for RS256, ES256 and EdDSA (Ed25519): JWK (RFC 7517, 7518 §6,
8037) and PEM forms, and RFC 7638 thumbprints. A key has exactly one algorithm, so a
token never chooses how its signature is checked (RFC 8725 §3.1)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import (
    decode_dss_signature,
    encode_dss_signature,
)

from ._b64 import Base64Error, b64url_decode, b64url_encode
from .errors import KeyError_

ALGORITHMS = ("RS256", "ES256", "EdDSA")
MIN_RSA_BITS = 2048
MAX_RSA_BITS = 8192
PRIVATE_MEMBERS = ("d", "p", "q", "dp", "dq", "qi", "oth", "k")
_STRING_MEMBERS = ("kty", "kid", "alg", "use", "crv", "x", "y", "n", "e")

# Ed25519 public keys of small order (their y coordinate, sign bit cleared): a
# signature under one proves nothing. The Rust core refuses the same list.
_P_MINUS = bytes.fromhex("ff" * 31)
_SMALL_ORDER_Y = {
    bytes(32),
    bytes([1]) + bytes(31),
    bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
    *(bytes([low]) + _P_MINUS[:30] + b"\x7f" for low in (0xEC, 0xED, 0xEE)),
}


def _small_order(x: bytes) -> bool:
    return len(x) == 32 and (x[:31] + bytes([x[31] & 0x7F])) in _SMALL_ORDER_Y


def check_jwk_shape(jwk: Any) -> None:
    """A JWK object: `kty` a string, the other named members strings when present (null
    counts as absent)."""
    if not isinstance(jwk, Mapping) or not isinstance(jwk.get("kty"), str):
        raise KeyError_("not a JWK object with a string `kty`")
    for name in _STRING_MEMBERS:
        v = jwk.get(name)
        if v is not None and not isinstance(v, str):
            raise KeyError_(f"JWK member `{name}` is not a string")


def private_member(jwk: Mapping[str, Any]) -> str | None:
    """The first private-key member present (non-null), if any."""
    for name in PRIVATE_MEMBERS:
        if jwk.get(name) is not None:
            return name
    return None


def thumbprint(jwk: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint, base64url."""
    check_jwk_shape(jwk)
    kty = jwk["kty"]
    members: tuple[str, ...]
    if kty == "RSA":
        members = ("e", "kty", "n")
    elif kty == "EC":
        members = ("crv", "kty", "x", "y")
    elif kty == "OKP":
        members = ("crv", "kty", "x")
    else:
        raise KeyError_(f"unsupported key type `{str(kty)[:16]}` (use RSA, EC P-256 or OKP Ed25519)")
    canonical = {}
    for m in members:
        if not isinstance(jwk.get(m), str):
            raise KeyError_(f"JWK member `{m}` is missing or not valid base64url")
        canonical[m] = jwk[m]
    text = json.dumps(canonical, separators=(",", ":"), sort_keys=True)
    return b64url_encode(hashlib.sha256(text.encode()).digest())


def _member(jwk: Mapping[str, Any], name: str) -> bytes:
    v = jwk.get(name)
    if not isinstance(v, str):
        raise KeyError_(f"JWK member `{name}` is missing or not valid base64url")
    try:
        return b64url_decode(v)
    except Base64Error as e:
        raise KeyError_(f"JWK member `{name}` is missing or not valid base64url") from e


class PublicKey:
    """A verifying key of one algorithm; `kid` is its RFC 7638 thumbprint."""

    __slots__ = ("_key", "alg", "jwk", "kid")

    def __init__(self, alg: str, kid: str, jwk: dict[str, str], key: Any) -> None:
        self.alg = alg
        self.kid = kid
        self.jwk = jwk
        self._key = key

    def __repr__(self) -> str:
        return f"PublicKey(alg={self.alg!r}, kid={self.kid!r})"

    @classmethod
    def from_jwk(cls, jwk: Mapping[str, Any]) -> PublicKey:
        """Parses a public JWK (private members refused). The JWK's own `kid` is not
        trusted: the key is known by its thumbprint."""
        check_jwk_shape(jwk)
        priv = private_member(jwk)
        if priv is not None:
            raise KeyError_(f"JWK contains private key member `{priv}`; register public keys only")
        declared = jwk.get("alg")
        if declared is not None and declared not in ALGORITHMS:
            raise KeyError_(f"unsupported algorithm `{declared[:32]}` (use RS256, ES256 or EdDSA)")
        kty, crv = jwk["kty"], jwk.get("crv")
        key: Any
        if kty == "RSA":
            alg = declared or "RS256"
            if alg != "RS256":
                raise KeyError_(f"algorithm `{alg}` does not fit a `RSA` key")
            n = int.from_bytes(_member(jwk, "n"), "big")
            e = int.from_bytes(_member(jwk, "e"), "big")
            if not MIN_RSA_BITS <= n.bit_length() <= MAX_RSA_BITS:
                raise KeyError_(f"RSA modulus of {n.bit_length()} bits is outside 2048..=8192")
            try:
                key = rsa.RSAPublicNumbers(e, n).public_key()
            except ValueError as err:
                raise KeyError_(f"key material rejected: {err}") from err
        elif kty == "EC" and crv == "P-256":
            alg = declared or "ES256"
            if alg != "ES256":
                raise KeyError_(f"algorithm `{alg}` does not fit a `EC` key")
            x, y = _member(jwk, "x"), _member(jwk, "y")
            if len(x) != 32 or len(y) != 32:
                raise KeyError_(f"JWK member `{'x' if len(x) != 32 else 'y'}` is missing or not valid base64url")
            try:
                key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), b"\x04" + x + y)
            except ValueError as err:
                raise KeyError_(f"key material rejected: {err}") from err
        elif kty == "OKP" and crv == "Ed25519":
            alg = declared or "EdDSA"
            if alg != "EdDSA":
                raise KeyError_(f"algorithm `{alg}` does not fit a `OKP` key")
            x = _member(jwk, "x")
            if len(x) != 32:
                raise KeyError_("JWK member `x` is missing or not valid base64url")
            if _small_order(x):
                raise KeyError_("key material rejected: Ed25519 public key of small order")
            key = ed25519.Ed25519PublicKey.from_public_bytes(x)
        else:
            shown = f"{kty}/{crv}" if crv is not None else kty
            raise KeyError_(f"unsupported key type `{shown[:32]}` (use RSA, EC P-256 or OKP Ed25519)")
        kid = thumbprint(jwk)
        clean = {m: jwk[m] for m in ("kty", "crv", "x", "y", "n", "e") if jwk.get(m) is not None}
        clean.update(kid=kid, alg=alg, use="sig")
        return cls(alg, kid, clean, key)

    @classmethod
    def from_pem(cls, pem: str | bytes) -> PublicKey:
        """A PEM `PUBLIC KEY` (SubjectPublicKeyInfo) of an Ed25519, P-256 or RSA key."""
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_public_key(data)
        except ValueError as e:
            raise KeyError_("not a PEM `PUBLIC KEY`") from e
        return cls.from_jwk(_public_jwk(key))

    def verify(self, message: bytes, signature: bytes) -> bool:
        """True if `signature` (JWS form: r‖s for ES256) is valid for `message`."""
        try:
            if self.alg == "EdDSA":
                self._key.verify(signature, message)
            elif self.alg == "ES256":
                if len(signature) != 64:
                    return False
                der = encode_dss_signature(int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big"))
                self._key.verify(der, message, ec.ECDSA(hashes.SHA256()))
            else:
                self._key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
        except InvalidSignature:
            return False
        return True

    def to_pem(self) -> str:
        return self._key.public_bytes(  # type: ignore[no-any-return]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ).decode()


def _public_jwk(key: Any) -> dict[str, str]:
    if isinstance(key, ed25519.Ed25519PublicKey):
        raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        return {"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(raw)}
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        nums = key.public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url_encode(nums.x.to_bytes(32, "big")),
            "y": b64url_encode(nums.y.to_bytes(32, "big")),
        }
    if isinstance(key, rsa.RSAPublicKey):
        rsa_nums = key.public_numbers()
        n_len = (rsa_nums.n.bit_length() + 7) // 8
        e_len = (rsa_nums.e.bit_length() + 7) // 8
        return {
            "kty": "RSA",
            "n": b64url_encode(rsa_nums.n.to_bytes(n_len, "big")),
            "e": b64url_encode(rsa_nums.e.to_bytes(e_len, "big")),
        }
    raise KeyError_("not an Ed25519, P-256 or RSA key")


class PrivateKey:
    """A signing key (an agent's, for DPoP proofs and message signatures)."""

    __slots__ = ("_key", "alg", "public_key")

    def __init__(self, key: Any) -> None:
        self._key = key
        self.public_key = PublicKey.from_jwk(_public_jwk(key.public_key()))
        self.alg = self.public_key.alg

    def __repr__(self) -> str:
        return f"PrivateKey(alg={self.alg!r}, kid={self.kid!r})"

    @property
    def kid(self) -> str:
        """The RFC 7638 thumbprint of the public half (the token's `cnf.jkt`)."""
        return self.public_key.kid

    @classmethod
    def generate(cls, alg: str = "EdDSA") -> PrivateKey:
        if alg == "EdDSA":
            return cls(ed25519.Ed25519PrivateKey.generate())
        if alg == "ES256":
            return cls(ec.generate_private_key(ec.SECP256R1()))
        if alg == "RS256":
            return cls(rsa.generate_private_key(public_exponent=65537, key_size=2048))
        raise KeyError_(f"unsupported algorithm `{alg[:32]}` (use RS256, ES256 or EdDSA)")

    @classmethod
    def from_pem(cls, pem: str | bytes, password: bytes | None = None) -> PrivateKey:
        """A PKCS#8 PEM private key (what `bonafide keys generate` writes)."""
        data = pem.encode() if isinstance(pem, str) else pem
        try:
            key = serialization.load_pem_private_key(data, password=password)
        except (ValueError, TypeError) as e:
            raise KeyError_(f"not a usable PEM private key: {e}") from e
        return cls(key)

    @classmethod
    def from_ed25519_seed(cls, seed: bytes) -> PrivateKey:
        return cls(ed25519.Ed25519PrivateKey.from_private_bytes(seed))

    def to_pem(self) -> str:
        return self._key.private_bytes(  # type: ignore[no-any-return]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode()

    def public_jwk(self) -> dict[str, str]:
        """The bare public JWK (required members only)."""
        return {k: v for k, v in self.public_key.jwk.items() if k not in ("kid", "alg", "use")}

    def sign(self, message: bytes) -> bytes:
        """A JWS-form signature (r‖s for ES256)."""
        if self.alg == "EdDSA":
            return self._key.sign(message)  # type: ignore[no-any-return]
        if self.alg == "ES256":
            der = self._key.sign(message, ec.ECDSA(hashes.SHA256()))
            r, s = decode_dss_signature(der)
            return r.to_bytes(32, "big") + s.to_bytes(32, "big")
        return self._key.sign(message, padding.PKCS1v15(), hashes.SHA256())  # type: ignore[no-any-return]


def jwks_keys(jwks: Any) -> dict[str, PublicKey]:
    """A JWKS's keys by thumbprint, refusing it whole if any key is unusable (as the
    Rust `KeySet::from_jwks`)."""
    if not isinstance(jwks, Mapping) or not isinstance(jwks.get("keys"), list):
        raise KeyError_("not a JWKS (an object with a `keys` array)")
    out: dict[str, PublicKey] = {}
    for jwk in jwks["keys"]:
        key = PublicKey.from_jwk(jwk)
        out[key.kid] = key
    return out
