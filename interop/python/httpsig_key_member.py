#!/usr/bin/env python3
"""A Web Bot Auth request signature covering one member of the Signature-Agent
Dictionary (`"signature-agent";key="sig1"`, RFC 9421 §2.1.2), made with Python
`cryptography` alone for Bonafide's tests (crates/server/tests/suite/httpsig_key.rs).
Nothing here comes from Bonafide: the signature base is written out by hand as
RFC 9421 §2.5 says, the thumbprint computed as RFC 7638 says, and the Ed25519
signature made by `cryptography`.

  httpsig_key_member.py --key-file PEM --authority HOST --signature-agent URL
                        [--label sig1] [--created SECS] [--expires SECS]

  --key-file         the agent's Ed25519 private key, PKCS#8 PEM.
  --authority        the request's authority (`@authority`), lowercase host[:port].
  --signature-agent  the agent's directory URL: the header is the Dictionary
                     `<label>="<URL>"` and the signature covers that member.
  --label            the Dictionary label, in Signature-Agent, Signature-Input and
                     Signature alike (default sig1).
  --created          Unix seconds (default now); --expires default created + 300.

stdout: {"keyid", "base", "headers": {"Signature-Agent", "Signature-Input",
"Signature"}} and a newline, `base` being the signature base that was signed.

Exit codes: 0 ok, 2 usage error, 3 environment error (key unreadable or not Ed25519).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import sys
import time

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

EXIT_USAGE = 2
EXIT_ENV = 3


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def sf_string(text: str) -> str:
    """An RFC 8941 sf-string: printable ASCII, `"` and `\\` escaped."""
    if any(ord(c) < 0x20 or ord(c) > 0x7E for c in text):
        raise SystemExit(EXIT_USAGE)
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--key-file", required=True)
    p.add_argument("--authority", required=True)
    p.add_argument("--signature-agent", required=True)
    p.add_argument("--label", default="sig1")
    p.add_argument("--created", type=int)
    p.add_argument("--expires", type=int)
    a = p.parse_args()

    try:
        with open(a.key_file, "rb") as f:
            key = serialization.load_pem_private_key(f.read(), password=None)
    except (OSError, ValueError) as e:
        print(f"cannot read the key: {e}", file=sys.stderr)
        return EXIT_ENV
    if not isinstance(key, Ed25519PrivateKey):
        print("not an Ed25519 key", file=sys.stderr)
        return EXIT_ENV

    raw = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    # RFC 7638 §3.2: the required members in lexicographic order, no whitespace.
    thumb_input = '{"crv":"Ed25519","kty":"OKP","x":"%s"}' % b64url(raw)
    keyid = b64url(hashlib.sha256(thumb_input.encode("ascii")).digest())

    created = a.created if a.created is not None else int(time.time())
    expires = a.expires if a.expires is not None else created + 300
    nonce = base64.b64encode(os.urandom(64)).decode("ascii")
    label = a.label

    # The Dictionary member's value as RFC 9421 §2.1.2 takes it: the member's
    # serialized value (an sf-string here), without its key.
    member_value = sf_string(a.signature_agent)
    signature_agent = f"{label}={member_value}"
    components = '("@authority" "signature-agent";key=%s)' % sf_string(label)
    params = (
        f"{components};created={created};expires={expires};keyid={sf_string(keyid)}"
        f';alg="ed25519";nonce={sf_string(nonce)};tag="web-bot-auth"'
    )
    # RFC 9421 §2.5: one line per covered component, then @signature-params, joined
    # by LF with no trailing LF.
    base = "\n".join(
        [
            f'"@authority": {a.authority}',
            f'"signature-agent";key={sf_string(label)}: {member_value}',
            f'"@signature-params": {params}',
        ]
    )
    signature = key.sign(base.encode("ascii"))
    out = {
        "keyid": keyid,
        "base": base,
        "headers": {
            "Signature-Agent": signature_agent,
            "Signature-Input": f"{label}={params}",
            "Signature": f"{label}=:{base64.b64encode(signature).decode('ascii')}:",
        },
    }
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
