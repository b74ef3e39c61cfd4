#!/usr/bin/env python3
"""An outside issuer for Bonafide's self-custody tests, built on `cryptography` and
PyJWT: it makes its own Ed25519 key (the registry only ever sees the public half)
and signs agent tokens with it.

  issuer_signer.py keygen --key-file FILE
      writes the private key (PKCS#8 PEM, mode 0600) to FILE;
      stdout: the public JWK (RFC 8037: kty OKP, crv Ed25519, x)          exit 0
  issuer_signer.py sign --key-file FILE --kid KID --payload-file FILE
      stdout: a compact JWS over the payload's JSON claims, header
              {"alg": "EdDSA", "typ": "agent+jwt", "kid": KID}            exit 0

Exit codes: 0 ok, 2 usage error, 3 environment error (file unreadable).
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import sys

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def keygen(key_file: str) -> int:
    key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    print(json.dumps({"kty": "OKP", "crv": "Ed25519", "x": b64url(public)}))
    return 0


def sign(key_file: str, kid: str, payload_file: str) -> int:
    try:
        with open(key_file, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
        with open(payload_file, "rb") as f:
            claims = json.loads(f.read())
    except (OSError, ValueError) as e:
        print(f"cannot read input: {e}", file=sys.stderr)
        return 3
    token = jwt.encode(
        claims, key, algorithm="EdDSA", headers={"typ": "agent+jwt", "kid": kid}
    )
    print(token)
    return 0


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    g = sub.add_parser("keygen")
    g.add_argument("--key-file", required=True)
    s = sub.add_parser("sign")
    s.add_argument("--key-file", required=True)
    s.add_argument("--kid", required=True)
    s.add_argument("--payload-file", required=True)
    try:
        args = p.parse_args()
    except SystemExit as e:
        return 2 if e.code else 0
    if args.cmd == "keygen":
        return keygen(args.key_file)
    return sign(args.key_file, args.kid, args.payload_file)


if __name__ == "__main__":
    sys.exit(main())
