#!/usr/bin/env python3
"""An outside agent's DPoP proof (RFC 9449), made with jwcrypto alone, for Bonafide's
proof-of-possession tests (crates/core/tests/suite/dpop.rs and the server's end-to-end
tests). Nothing here comes from Bonafide: the key is loaded, the thumbprint computed
and the proof signed by jwcrypto.

  dpop_proof.py --key-file FILE --htm METHOD --htu URI --access-token TOKEN
                [--iat SECONDS] [--jti ID] [--json]

  --key-file      the agent's private key: PEM (PKCS#8, or any form jwcrypto reads)
                  or a private JWK (JSON). Ed25519 signs EdDSA, P-256 signs ES256,
                  RSA signs RS256.
  --htm, --htu    the request's method and target URI, written into the proof as
                  given (pass htu without query and fragment).
  --access-token  the token presented with the proof; `ath` is
                  base64url(SHA-256(ASCII of it)).
  --iat           creation time, Unix seconds (default: now).
  --jti           proof id (default: 128 random bits, base64url).
  --json          print a JSON object instead of the bare proof:
                  {"proof", "jkt", "alg", "htm", "htu", "access_token", "iat", "jti"},
                  jkt being the key's RFC 7638 thumbprint as jwcrypto computes it.

stdout: the compact proof JWS (or the JSON object) and a newline.
Header: {"typ":"dpop+jwt","alg":…,"jwk":<public JWK, required members only>}.
Claims: {"jti","htm","htu","iat","ath"}.

Exit codes: 0 ok, 2 usage error, 3 environment error (key unreadable or of an
unsupported type).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time

from jwcrypto import jwk, jws

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_ENV = 3

# Members of a public JWK that RFC 7638 hashes; the proof's jwk carries only these.
REQUIRED = {"OKP": ("kty", "crv", "x"), "EC": ("kty", "crv", "x", "y"), "RSA": ("kty", "n", "e")}


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


class Parser(argparse.ArgumentParser):
    def error(self, message):
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(EXIT_USAGE)


def load_key(path: str) -> jwk.JWK:
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise SystemExit(f"cannot read {path}: {e}") from e
    try:
        if data.lstrip().startswith(b"{"):
            key = jwk.JWK.from_json(data.decode("utf-8"))
        else:
            key = jwk.JWK.from_pem(data)
    except Exception as e:  # noqa: BLE001 - any parse failure is an env error
        raise SystemExit(f"{path} is not a private PEM or JWK: {e}") from e
    if not key.has_private:
        raise SystemExit(f"{path} holds no private key")
    return key


def alg_of(key: jwk.JWK) -> str:
    kty, crv = key.get("kty"), key.get("crv")
    if kty == "OKP" and crv == "Ed25519":
        return "EdDSA"
    if kty == "EC" and crv == "P-256":
        return "ES256"
    if kty == "RSA":
        return "RS256"
    raise SystemExit(f"unsupported key type {kty}/{crv} (use Ed25519, P-256 or RSA)")


def main() -> int:
    p = Parser(prog="dpop_proof.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--key-file", required=True)
    p.add_argument("--htm", required=True)
    p.add_argument("--htu", required=True)
    p.add_argument("--access-token", required=True)
    p.add_argument("--iat", type=int)
    p.add_argument("--jti")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    try:
        token_bytes = args.access_token.encode("ascii")
    except UnicodeEncodeError:
        p.error("--access-token must be ASCII (RFC 9449 §4.2 hashes its ASCII encoding)")

    try:
        key = load_key(args.key_file)
        alg = alg_of(key)
    except SystemExit as e:
        sys.stderr.write(f"error: {e}\n")
        return EXIT_ENV

    public = key.export_public(as_dict=True)
    public = {m: public[m] for m in REQUIRED[public["kty"]]}
    iat = args.iat if args.iat is not None else int(time.time())
    jti = args.jti if args.jti is not None else b64url(os.urandom(16))
    claims = {
        "jti": jti,
        "htm": args.htm,
        "htu": args.htu,
        "iat": iat,
        "ath": b64url(hashlib.sha256(token_bytes).digest()),
    }
    header = {"typ": "dpop+jwt", "alg": alg, "jwk": public}
    token = jws.JWS(json.dumps(claims, separators=(",", ":")).encode("utf-8"))
    token.add_signature(key, alg=alg, protected=json.dumps(header, separators=(",", ":")))
    proof = token.serialize(compact=True)

    if args.json:
        out = {
            "proof": proof,
            "jkt": jwk.JWK(**public).thumbprint(),
            "alg": alg,
            "htm": args.htm,
            "htu": args.htu,
            "access_token": args.access_token,
            "iat": iat,
            "jti": jti,
        }
        sys.stdout.write(json.dumps(out) + "\n")
    else:
        sys.stdout.write(proof + "\n")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
