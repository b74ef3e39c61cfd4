#!/usr/bin/env python3
"""Bonafide verify-receipt checker built on PyJWT (https://pyjwt.readthedocs.io).

  receipt_client.py --jwks URL|FILE --receipt-file FILE [--issuer I]
      stdout: {"valid": true, "claims": {...}, "header": {...}}   exit 0
              {"valid": false, "error": "..."}                     exit 1

The receipt (a compact JWS, header typ "receipt+jwt", EdDSA) is checked with
nothing but the registry's published receipt JWKS (/.well-known/receipt-jwks.json): the key is chosen by the header's
kid, must be an Ed25519 key, and PyJWT verifies the signature with EdDSA only
(never the algorithm the header asks for). Receipts have no exp: a receipt
stays a true record of what was decided after its token expires.

Exit codes: 0 ok, 1 verification failure, 2 usage error, 3 environment error
(JWKS/receipt unreadable; no verdict). See interop/README.md.
"""

from __future__ import annotations

import jwt

import common as c

TYP = "receipt+jwt"
ALG = "EdDSA"
# Claims every Bonafide receipt carries (the rest are checked by the caller).
REQUIRED = ["iat", "iss", "sub"]


def build_parser():
    p = c._Parser(prog="receipt_client.py", description=__doc__.splitlines()[0])
    p.add_argument("--jwks", required=True, help="JWKS URL (http/https) or file path")
    p.add_argument("--receipt-file", required=True, help="file holding the receipt JWS")
    p.add_argument("--issuer", help="expected iss (checked if given)")
    return p


def main() -> int:
    args = build_parser().parse_args()
    try:
        jwks_dict = c.load_jwks(args.jwks)
        receipt = c.read_token(args.receipt_file)
    except c.EnvError as e:
        c.emit({"valid": False, "error": str(e), "env_error": True})
        return c.EXIT_ENV
    try:
        header = jwt.get_unverified_header(receipt)
        # PyJWT has no typ option; check it the way an application would.
        if header.get("typ") != TYP:
            raise jwt.InvalidTokenError(f"typ is {header.get('typ')!r}, expected {TYP!r}")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise jwt.InvalidTokenError("receipt header has no kid")
        jwk = next(
            (k for k in jwks_dict["keys"] if isinstance(k, dict) and k.get("kid") == kid),
            None,
        )
        if jwk is None:
            raise jwt.InvalidTokenError(f"no key with kid {kid!r} in JWKS")
        if jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
            raise jwt.InvalidTokenError(f"key {kid!r} is not an Ed25519 key")
        key = jwt.PyJWK.from_dict(jwk, algorithm=ALG)
        claims = jwt.decode(
            receipt,
            key=key,
            algorithms=[ALG],  # the receipt key's alg, never the header's
            issuer=args.issuer,
            options={"require": REQUIRED, "verify_aud": False},
        )
    except (jwt.PyJWTError, ValueError, TypeError) as e:
        c.emit({"valid": False, "error": f"{type(e).__name__}: {e}"})
        return c.EXIT_INVALID
    c.emit({"valid": True, "claims": claims, "header": header})
    return c.EXIT_OK


if __name__ == "__main__":
    c.run(main)
