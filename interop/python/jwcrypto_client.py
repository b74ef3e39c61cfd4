#!/usr/bin/env python3
"""Bonafide interop client built on jwcrypto (https://jwcrypto.readthedocs.io).

  jwcrypto_client.py verify --jwks URL|FILE --token-file FILE [--audience A] [--issuer I]
      stdout: {"valid": true, "claims": {...}, "header": {...}}   exit 0
              {"valid": false, "error": "..."}                     exit 1
  jwcrypto_client.py attack --kind KIND --out-file FILE --token-file FILE [--jwks URL|FILE]
      writes one malicious compact JWS to FILE, prints nothing     exit 0

Exit codes: 0 ok, 1 verification failure, 2 usage error, 3 environment error
(JWKS/token unreadable; no verdict). See interop/README.md.

Note: jwcrypto applies its default 60 s leeway to exp/nbf.
"""

from __future__ import annotations

import json
import time

from jwcrypto import jwk, jws, jwt
from jwcrypto.common import JWException

import common as c

TYP = "agent+jwt"
KINDS = ("none", "hs256-pubkey", "embedded-jwk", "jku", "x5u", "crit", "tampered-payload")


# ------------------------------------------------------------------ verify
def verify(args) -> int:
    try:
        jwks_text = c.load_jwks_text(args.jwks)
        token = c.read_token(args.token_file)
    except c.EnvError as e:
        c.emit({"valid": False, "error": str(e), "env_error": True})
        return c.EXIT_ENV
    detail = ""
    try:
        keyset = jwk.JWKSet.from_json(jwks_text)
        # Unverified look at the header, only to learn the kid (and so the alg
        # of the published key, which is the only alg we accept).
        probe = jws.JWS()
        probe.deserialize(token)
        header = probe.jose_header
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise ValueError("token header has no kid")
        key = keyset.get_key(kid)
        if key is None:
            raise ValueError(f"no key with kid {kid!r} in JWKS")
        alg = key.get("alg")
        if not alg:
            raise ValueError(f"JWKS key {kid!r} has no alg")
        # None = must be present (exp/nbf are then checked against the clock).
        check = {"exp": None, "iat": None, "sub": None, "iss": args.issuer}
        if args.audience is not None:
            check["aud"] = args.audience
        # An explicit check_claims turns off jwcrypto's implicit exp/nbf checks,
        # and listing a claim makes it mandatory; nbf is optional in Bonafide
        # tokens, so list it when the token carries one (a forged removal of nbf
        # breaks the signature anyway).
        unverified = json.loads(probe.objects.get("payload") or b"{}")
        if isinstance(unverified, dict) and "nbf" in unverified:
            check["nbf"] = None
        t = jwt.JWT(algs=[alg], check_claims=check, expected_type="JWS")
        try:
            # Same as jwt.JWT(jwt=token, key=keyset, ...): with a JWKSet, jwcrypto
            # itself selects the key by the header's kid.
            t.deserialize(token, keyset)
        except JWException:
            # With a key set jwcrypto reports any signature failure as "Missing
            # Key"; its verify log says why.
            log = getattr(getattr(t, "token", None), "verifylog", None)
            if log and "Success" not in log:
                detail = f" {log}"
            raise
        claims = json.loads(t.claims)
        if header.get("typ") != TYP:
            raise ValueError(f"typ is {header.get('typ')!r}, expected {TYP!r}")
    except (JWException, ValueError, TypeError, KeyError) as e:
        c.emit({"valid": False, "error": f"{type(e).__name__}: {e}{detail}"})
        return c.EXIT_INVALID
    c.emit({"valid": True, "claims": claims, "header": header})
    return c.EXIT_OK


# ------------------------------------------------------------------ attack
def attacker_key(alg: str) -> jwk.JWK:
    if alg == "ES256":
        return jwk.JWK.generate(kty="EC", crv="P-256")
    if alg == "RS256":
        return jwk.JWK.generate(kty="RSA", size=2048)
    return jwk.JWK.generate(kty="OKP", crv="Ed25519")


def sign_with_attacker_key(claims: dict, alg: str, extra_header: dict) -> str:
    alg = alg if alg in ("ES256", "RS256", "EdDSA") else "EdDSA"
    key = attacker_key(alg)
    header = {"alg": alg, "typ": TYP, **extra_header}
    if "jwk" in header and header["jwk"] is None:
        header["jwk"] = key.export_public(as_dict=True)
    if "crit" in header:
        # jwcrypto refuses to produce a critical header it does not know; the
        # library's own extension point (header_registry) makes it known.
        registry = {
            name: jws.JWSEHeaderParameter(f"extension {name}", False, True, None)
            for name in header["crit"]
        }
        s = jws.JWS(c.json_compact(claims), header_registry=registry)
        s.allowed_algs = [alg]
        s.add_signature(key, alg=None, protected=c.json_compact(header).decode())
        return s.serialize(compact=True)
    t = jwt.JWT(header=header, claims=claims, algs=[alg])
    t.make_signed_token(key)
    return t.serialize()


def attack(args) -> int:
    if not args.token_file:
        raise c.UsageError("attack needs --token-file (a genuine token to copy from)")
    token = c.read_token(args.token_file)
    header, claims, parts = c.split_token(token)
    kid = header.get("kid")
    alg = header.get("alg")
    kind = args.kind

    if kind == "none":
        # jwcrypto implements alg=none ("_RawNone"): it must be allowed
        # explicitly and "signs" with an empty oct key.
        t = jwt.JWT(header={"alg": "none", "typ": TYP, "kid": kid}, claims=claims, algs=["none"])
        t.make_signed_token(jwk.JWK(kty="oct", k=""))
        out = t.serialize()
    elif kind == "hs256-pubkey":
        if not args.jwks:
            raise c.UsageError("hs256-pubkey needs --jwks")
        real = jwk.JWK(**c.find_jwk(c.load_jwks(args.jwks), kid))
        pem = real.export_to_pem()  # public key, SubjectPublicKeyInfo PEM
        # jwcrypto happily signs with any oct key, so the library does the HMAC.
        secret = jwk.JWK(kty="oct", k=c.b64url_encode(pem))
        t = jwt.JWT(header={"alg": "HS256", "typ": TYP, "kid": kid}, claims=claims, algs=["HS256"])
        t.make_signed_token(secret)
        out = t.serialize()
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
    else:
        raise c.UsageError(f"unknown kind {kind}")
    c.write_token(args.out_file, out)
    return c.EXIT_OK


def main() -> int:
    args = c.build_parser("jwcrypto_client.py", __doc__.splitlines()[0], KINDS).parse_args()
    return verify(args) if args.command == "verify" else attack(args)


if __name__ == "__main__":
    c.run(main)
