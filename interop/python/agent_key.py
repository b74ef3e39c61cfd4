#!/usr/bin/env python3
"""An outside agent for Bonafide's agent-key tests, built on `cryptography` alone: it
makes its own key pair (the registry only ever sees the public half) and signs with
it.

  agent_key.py keygen --alg Ed25519|P-256|RSA --key-file FILE
      writes the private key (PKCS#8 PEM, mode 0600) to FILE;
      stdout: JSON {"jwk": public JWK, "pem": public SubjectPublicKeyInfo PEM,
                    "private_jwk": the JWK with its private member `d` (for tests that
                    check the registry refuses it), "jkt": RFC 7638 thumbprint
                    computed here, independently of Bonafide}                   exit 0
  agent_key.py sign --key-file FILE --message TEXT
      stdout: standard base64 (padded) of the Ed25519 signature over TEXT's UTF-8
              bytes                                                              exit 0

Exit codes: 0 ok, 2 usage error, 3 environment error (file unreadable).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


def b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def int_bytes(n: int, size: int | None = None) -> bytes:
    size = size or (n.bit_length() + 7) // 8
    return n.to_bytes(size, "big")


def thumbprint(jwk: dict) -> str:
    """RFC 7638 §3: the required members, sorted, no whitespace."""
    required = {"OKP": ("crv", "kty", "x"), "EC": ("crv", "kty", "x", "y"), "RSA": ("e", "kty", "n")}
    members = {k: jwk[k] for k in required[jwk["kty"]]}
    canonical = json.dumps(members, sort_keys=True, separators=(",", ":"))
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def keygen(alg: str, key_file: str) -> int:
    if alg == "Ed25519":
        key = ed25519.Ed25519PrivateKey.generate()
        raw = key.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        d = key.private_bytes(
            serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
        )
        jwk = {"kty": "OKP", "crv": "Ed25519", "x": b64url(raw)}
        private = {**jwk, "d": b64url(d)}
    elif alg == "P-256":
        key = ec.generate_private_key(ec.SECP256R1())
        nums = key.private_numbers()
        pub = nums.public_numbers
        jwk = {"kty": "EC", "crv": "P-256", "x": b64url(int_bytes(pub.x, 32)), "y": b64url(int_bytes(pub.y, 32))}
        private = {**jwk, "d": b64url(int_bytes(nums.private_value, 32))}
    elif alg == "RSA":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        nums = key.private_numbers()
        pub = nums.public_numbers
        jwk = {"kty": "RSA", "n": b64url(int_bytes(pub.n)), "e": b64url(int_bytes(pub.e))}
        private = {**jwk, "d": b64url(int_bytes(nums.d))}
    else:
        print(f"unknown --alg {alg!r}", file=sys.stderr)
        return 2
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    public_pem = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    print(
        json.dumps(
            {"jwk": jwk, "pem": public_pem.decode("ascii"), "private_jwk": private, "jkt": thumbprint(jwk)}
        )
    )
    return 0


def sign(key_file: str, message: str) -> int:
    try:
        with open(key_file, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except OSError as e:
        print(f"cannot read {key_file}: {e}", file=sys.stderr)
        return 3
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        print("sign needs an Ed25519 key", file=sys.stderr)
        return 2
    print(base64.b64encode(key.sign(message.encode("utf-8"))).decode("ascii"))
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="cmd", required=True)
    k = sub.add_parser("keygen")
    k.add_argument("--alg", required=True)
    k.add_argument("--key-file", required=True)
    s = sub.add_parser("sign")
    s.add_argument("--key-file", required=True)
    s.add_argument("--message", required=True)
    args = parser.parse_args()
    if args.cmd == "keygen":
        return keygen(args.alg, args.key_file)
    return sign(args.key_file, args.message)


if __name__ == "__main__":
    sys.exit(main())
