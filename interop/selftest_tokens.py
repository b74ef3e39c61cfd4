#!/usr/bin/env python3
"""Fixture maker for interop/selftest.sh (no Bonafide server needed).

  selftest_tokens.py make DIR ISSUER
      DIR/jwks.json                 RS256 + ES256 + EdDSA public keys, Bonafide JWKS format
      DIR/<ALG>.valid.jwt           genuine token, no aud
      DIR/<ALG>.aud.jwt             genuine token, aud = "svc:receiver"
      DIR/<ALG>.expired.jwt         exp an hour ago
      DIR/<ALG>.typ-jwt.jwt         typ "JWT" instead of "agent+jwt"
      DIR/<ALG>.not-yet-valid.jwt   nbf an hour ahead
      DIR/<ALG>.no-nbf.jwt          genuine token without the optional nbf
      DIR/<ALG>.unknown-kid.jwt     signed by a key that is not in the JWKS
      DIR/kids.json                 {"RS256": kid, ...}
  selftest_tokens.py check-attack KIND ATTACK_FILE GENUINE_FILE JWKS_FILE
      sanity-checks the shape of an attack token against the genuine one (and, for
      hs256-pubkey, that the HMAC key really is the published key's SPKI PEM)

Signing is done with the `cryptography` package directly (not with any of the
libraries under test), following RFC 7515/7518/8037, and kids are RFC 7638
thumbprints computed here and cross-checked against jwcrypto's.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import secrets
import sys
import time

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

B32 = "abcdefghijklmnopqrstuvwxyz234567"


def b64u(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64u_dec(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def int_b64u(n: int, length: int | None = None) -> str:
    length = length or (n.bit_length() + 7) // 8
    return b64u(n.to_bytes(length, "big"))


def compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True).encode()


def thumbprint(jwk: dict) -> str:
    """RFC 7638: SHA-256 of the required members, lexicographic order, no whitespace."""
    required = {"RSA": ("e", "kty", "n"), "EC": ("crv", "kty", "x", "y"), "OKP": ("crv", "kty", "x")}
    members = {k: jwk[k] for k in required[jwk["kty"]]}
    return b64u(hashlib.sha256(compact(members)).digest())


def new_key(alg: str):
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    return ed25519.Ed25519PrivateKey.generate()


def public_jwk(alg: str, priv) -> dict:
    pub = priv.public_key()
    if alg == "RS256":
        nums = pub.public_numbers()
        jwk = {"kty": "RSA", "n": int_b64u(nums.n), "e": int_b64u(nums.e)}
    elif alg == "ES256":
        nums = pub.public_numbers()
        jwk = {"kty": "EC", "crv": "P-256", "x": int_b64u(nums.x, 32), "y": int_b64u(nums.y, 32)}
    else:
        raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64u(raw)}
    jwk.update({"kid": thumbprint(jwk), "alg": alg, "use": "sig"})
    return jwk


def sign(alg: str, priv, header: dict, claims: dict) -> str:
    signing_input = f"{b64u(compact(header))}.{b64u(compact(claims))}".encode()
    if alg == "RS256":
        sig = priv.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    elif alg == "ES256":
        r, s = decode_dss_signature(priv.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        sig = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        sig = priv.sign(signing_input)
    return f"{signing_input.decode()}.{b64u(sig)}"


def rand_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(B32) for _ in range(26))


def claims_for(issuer: str, now: int, **over) -> dict:
    scopes = ["read:portfolio", "read:transactions"]
    c = {
        "iss": issuer,
        "sub": rand_id("agt_"),
        "iat": now,
        "nbf": now,
        "exp": now + 900,
        "jti": rand_id("tok_"),
        "agent": {
            "name": "interop-bot",
            "issuer": "acme",
            "scopes": scopes,
            "description": "selftest agent",
        },
        "scope": " ".join(scopes),
    }
    c.update(over)
    return c


def make(out_dir: str, issuer: str) -> None:
    os.makedirs(out_dir, exist_ok=True)
    now = int(time.time())
    keys, kids = [], {}
    for alg in ("RS256", "ES256", "EdDSA"):
        priv = new_key(alg)
        jwk = public_jwk(alg, priv)
        keys.append(jwk)
        kids[alg] = jwk["kid"]
        try:  # cross-check the thumbprint with an independent implementation
            from jwcrypto import jwk as jw

            assert jw.JWK(**jwk).thumbprint() == jwk["kid"], "RFC 7638 thumbprint mismatch"
        except ImportError:
            pass
        hdr = {"alg": alg, "typ": "agent+jwt", "kid": jwk["kid"]}
        tokens = {
            "valid": sign(alg, priv, hdr, claims_for(issuer, now)),
            "aud": sign(alg, priv, hdr, claims_for(issuer, now, aud="svc:receiver")),
            "expired": sign(
                alg, priv, hdr, claims_for(issuer, now - 7200, exp=now - 3600)
            ),
            "typ-jwt": sign(alg, priv, {**hdr, "typ": "JWT"}, claims_for(issuer, now)),
            "not-yet-valid": sign(alg, priv, hdr, claims_for(issuer, now, nbf=now + 3600)),
            "no-nbf": sign(
                alg, priv, hdr, {k: v for k, v in claims_for(issuer, now).items() if k != "nbf"}
            ),
        }
        stranger = new_key(alg)
        tokens["unknown-kid"] = sign(
            alg, stranger, {**hdr, "kid": public_jwk(alg, stranger)["kid"]}, claims_for(issuer, now)
        )
        for name, tok in tokens.items():
            with open(os.path.join(out_dir, f"{alg}.{name}.jwt"), "w") as f:
                f.write(tok)
    with open(os.path.join(out_dir, "jwks.json"), "w") as f:
        json.dump({"keys": keys}, f, indent=2)
    with open(os.path.join(out_dir, "kids.json"), "w") as f:
        json.dump(kids, f)


def spki_pem(jwk: dict) -> bytes:
    if jwk["kty"] == "RSA":
        n = int.from_bytes(b64u_dec(jwk["n"]), "big")
        e = int.from_bytes(b64u_dec(jwk["e"]), "big")
        pub = rsa.RSAPublicNumbers(e, n).public_key()
    elif jwk["kty"] == "EC":
        x = int.from_bytes(b64u_dec(jwk["x"]), "big")
        y = int.from_bytes(b64u_dec(jwk["y"]), "big")
        pub = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    else:
        pub = ed25519.Ed25519PublicKey.from_public_bytes(b64u_dec(jwk["x"]))
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def check_attack(kind: str, attack_file: str, genuine_file: str, jwks_file: str) -> None:
    tok = open(attack_file).read().strip()
    gen = open(genuine_file).read().strip()
    parts, gparts = tok.split("."), gen.split(".")
    assert len(parts) == 3, "not 3 segments"
    h = json.loads(b64u_dec(parts[0]))
    c = json.loads(b64u_dec(parts[1]))
    gh = json.loads(b64u_dec(gparts[0]))
    gc = json.loads(b64u_dec(gparts[1]))
    assert h.get("kid") == gh["kid"], f"kid {h.get('kid')} != real {gh['kid']}"
    if kind == "tampered-payload":
        assert parts[0] == gparts[0] and parts[2] == gparts[2], "header/signature not kept"
        assert "admin:all" in c["scope"].split() and "admin:all" in c["agent"]["scopes"]
        assert {k: v for k, v in c.items() if k not in ("scope", "agent")} == {
            k: v for k, v in gc.items() if k not in ("scope", "agent")
        }
        return
    assert c == gc, "claims not copied verbatim"
    assert h.get("typ") == "agent+jwt", f"typ {h.get('typ')}"
    if kind == "none":
        assert h["alg"] == "none" and parts[2] == "", "not an unsigned alg=none token"
        return
    assert parts[2], "empty signature"
    if kind == "hs256-pubkey":
        assert h["alg"] == "HS256"
        real = next(k for k in json.load(open(jwks_file))["keys"] if k["kid"] == gh["kid"])
        mac = hmac.new(spki_pem(real), f"{parts[0]}.{parts[1]}".encode(), hashlib.sha256)
        assert b64u(mac.digest()) == parts[2], "HMAC key is not the published key's SPKI PEM"
        return
    assert h["alg"] == gh["alg"], f"attacker alg {h['alg']} != genuine {gh['alg']}"
    if kind == "embedded-jwk":
        jwk = h["jwk"]
        assert isinstance(jwk, dict) and "d" not in jwk and jwk.get("kty") in ("RSA", "EC", "OKP")
        assert thumbprint(jwk) != gh["kid"], "embedded key is the real key?"
    elif kind == "jku":
        assert h["jku"].startswith("https://attacker.example/")
    elif kind == "x5u":
        assert h["x5u"].startswith("https://attacker.example/")
    elif kind == "crit":
        assert h["crit"] == ["exp"] and isinstance(h["exp"], int)
    else:
        raise AssertionError(f"unknown kind {kind}")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "make":
        make(sys.argv[2], sys.argv[3])
    elif len(sys.argv) == 6 and sys.argv[1] == "check-attack":
        try:
            check_attack(*sys.argv[2:])
        except (AssertionError, KeyError, ValueError) as e:
            print(f"bad {sys.argv[2]} token: {e!r}", file=sys.stderr)
            sys.exit(1)
    else:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
