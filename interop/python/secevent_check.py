"""Independent checks of Bonafide's push events (issue 19), for the server tests.

  set      verify a Security Event Token with PyJWT against the event JWKS
           (typ secevent+jwt, EdDSA) and print its claims as JSON
  webhook  verify a webhook delivery's RFC 9421 message signature and RFC 9530
           Content-Digest with `cryptography` alone: the signature base is rebuilt
           here from the request (method, URL, headers) and the Signature-Input,
           never taken from Bonafide; print the verified parameters as JSON

Input is one JSON object on stdin:
  set:     {"jwks": {...}, "set": "<compact JWS>"}
  webhook: {"jwks": {...}, "method": "POST", "url": "...",
            "headers": [[name, value], ...], "body": "<text>"}

Exit 0 verified, 1 refused (with {"error": ...}), 2 usage.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import sys
from urllib.parse import urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def b64url_decode(s: str) -> bytes:
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def check_set(inp: dict) -> dict:
    header = jwt.get_unverified_header(inp["set"])
    if header.get("typ") != "secevent+jwt":
        raise ValueError(f"typ is {header.get('typ')!r}")
    keys = {k["kid"]: k for k in inp["jwks"]["keys"]}
    jwk = keys.get(header.get("kid"))
    if jwk is None:
        raise ValueError("kid not in the event JWKS")
    key = jwt.PyJWK(jwk)
    # RFC 8417 SETs carry no exp; iat is checked as present.
    return jwt.decode(
        inp["set"],
        key=key.key,
        algorithms=["EdDSA"],
        options={"require": ["iss", "iat", "jti"], "verify_aud": False},
    )


def parse_signature_input(value: str):
    # sig1=("@method" "@target-uri" ...);created=1;expires=2;keyid="..";alg="..";nonce="..";tag=".."
    m = re.fullmatch(r'([a-z0-9_.*-]+)=\((.*?)\)(.*)', value.strip())
    if not m:
        raise ValueError("Signature-Input does not parse")
    label, inner, params = m.group(1), m.group(2), m.group(3)
    components = re.findall(r'"([^"]*)"', inner)
    found = {}
    for pm in re.finditer(r';([a-z]+)=("([^"]*)"|(-?\d+))', params):
        found[pm.group(1)] = pm.group(3) if pm.group(3) is not None else int(pm.group(4))
    return label, components, value.strip()[len(label) + 1:], found


def check_webhook(inp: dict) -> dict:
    headers = {}
    for name, value in inp["headers"]:
        headers[name.lower()] = value
    body = inp["body"].encode()
    digest = "sha-256=:" + base64.b64encode(hashlib.sha256(body).digest()).decode() + ":"
    if headers.get("content-digest") != digest:
        raise ValueError("Content-Digest does not match the body")
    label, components, serialized, params = parse_signature_input(headers["signature-input"])
    url = urlsplit(inp["url"])
    lines = []
    for c in components:
        if c == "@method":
            v = inp["method"]
        elif c == "@target-uri":
            v = inp["url"]
        elif c == "@authority":
            v = url.netloc.lower()
        elif c == "@path":
            v = url.path or "/"
        elif c.startswith("@"):
            raise ValueError(f"component {c} not handled by this checker")
        else:
            v = headers[c].strip()
        lines.append(f'"{c}": {v}')
    lines.append(f'"@signature-params": {serialized}')
    base = "\n".join(lines).encode()
    sig_m = re.fullmatch(re.escape(label) + r'=:([A-Za-z0-9+/=]+):', headers["signature"].strip())
    if not sig_m:
        raise ValueError("Signature does not parse")
    signature = base64.b64decode(sig_m.group(1))
    keys = {k["kid"]: k for k in inp["jwks"]["keys"]}
    jwk = keys.get(params.get("keyid"))
    if jwk is None or jwk.get("kty") != "OKP" or jwk.get("crv") != "Ed25519":
        raise ValueError("keyid names no Ed25519 key of the event JWKS")
    Ed25519PublicKey.from_public_bytes(b64url_decode(jwk["x"])).verify(signature, base)
    return {"label": label, "components": components, "params": params}


def main() -> int:
    if len(sys.argv) != 2 or sys.argv[1] not in ("set", "webhook"):
        print(__doc__, file=sys.stderr)
        return 2
    inp = json.load(sys.stdin)
    try:
        out = check_set(inp) if sys.argv[1] == "set" else check_webhook(inp)
    except Exception as e:  # any refusal is a verdict, reported
        print(json.dumps({"error": f"{type(e).__name__}: {e}"}))
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
