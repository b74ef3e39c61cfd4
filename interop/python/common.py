"""Plumbing shared by the Python interop clients (pyjwt_client.py, jwcrypto_client.py).

Only I/O, argument parsing and JSON/base64url helpers live here; every
verification and every signature is done by the library under test in the
client script itself.

CLI contract (identical for all interop clients, see interop/README.md):
  exit 0  success (verify: token valid; attack: token written)
  exit 1  verification failure (verify: {"valid": false, "error": ...})
  exit 2  usage error (bad/missing flags, unknown attack kind)
  exit 3  environment error: the JWKS or token file could not be read/fetched,
          so no verdict was reached (never to be mistaken for a refusal)
"""

from __future__ import annotations

import argparse
import base64
import json
import sys
import urllib.request

EXIT_OK = 0
EXIT_INVALID = 1
EXIT_USAGE = 2
EXIT_ENV = 3

# Where the jku / x5u attacks point. Nothing is served there: a verifier that
# dereferences it (it must not) would fail closed or time out.
ATTACKER_URL = "https://attacker.example/jwks.json"
ATTACKER_X5U = "https://attacker.example/cert.pem"
# Scope added by the tampered-payload attack.
TAMPER_SCOPE = "admin:all"


class EnvError(Exception):
    """The inputs could not be obtained (exit 3)."""


class UsageError(Exception):
    """Bad invocation detected after argument parsing (exit 2)."""


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def json_compact(obj) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def load_jwks_text(source: str) -> str:
    """JWKS JSON text from an http(s) URL or a file path."""
    try:
        if source.startswith(("http://", "https://")):
            # No proxies: the registry under test listens on loopback.
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
            req = urllib.request.Request(source, headers={"Accept": "application/json"})
            with opener.open(req, timeout=10) as resp:
                return resp.read().decode("utf-8")
        with open(source, encoding="utf-8") as f:
            return f.read()
    except Exception as e:  # noqa: BLE001 - any failure here is an env error
        raise EnvError(f"cannot load JWKS from {source}: {e}") from e


def load_jwks(source: str) -> dict:
    text = load_jwks_text(source)
    try:
        jwks = json.loads(text)
    except ValueError as e:
        raise EnvError(f"JWKS from {source} is not JSON: {e}") from e
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise EnvError(f"JWKS from {source} has no 'keys' array")
    return jwks


def read_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().strip()
    except OSError as e:
        raise EnvError(f"cannot read token file {path}: {e}") from e


def write_token(path: str, token: str) -> None:
    try:
        with open(path, "w", encoding="utf-8") as f:
            f.write(token)
    except OSError as e:
        raise EnvError(f"cannot write {path}: {e}") from e


def split_token(token: str):
    """(header dict, claims dict, raw segments) of a compact JWS, unverified.

    Used by the attack side only, to copy a genuine token's header and claims.
    """
    parts = token.split(".")
    if len(parts) != 3:
        raise EnvError("token is not a 3-segment compact JWS")
    try:
        header = json.loads(b64url_decode(parts[0]))
        claims = json.loads(b64url_decode(parts[1]))
    except ValueError as e:
        raise EnvError(f"token segments are not base64url JSON: {e}") from e
    return header, claims, parts


def find_jwk(jwks: dict, kid: str) -> dict:
    for k in jwks["keys"]:
        if isinstance(k, dict) and k.get("kid") == kid:
            return k
    raise EnvError(f"kid {kid!r} not in JWKS")


def tamper_claims(claims: dict) -> dict:
    """Copy of claims with one extra granted scope (scope string and agent.scopes)."""
    out = json.loads(json.dumps(claims))
    scope = out.get("scope") or ""
    out["scope"] = (scope + " " + TAMPER_SCOPE).strip()
    agent = out.get("agent")
    if isinstance(agent, dict):
        scopes = agent.get("scopes")
        agent["scopes"] = (list(scopes) if isinstance(scopes, list) else []) + [TAMPER_SCOPE]
    return out


def emit(obj) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse's own exit code is 2 already; keep it
        self.print_usage(sys.stderr)
        sys.stderr.write(f"{self.prog}: error: {message}\n")
        sys.exit(EXIT_USAGE)


def build_parser(prog: str, description: str, kinds) -> argparse.ArgumentParser:
    p = _Parser(prog=prog, description=description)
    sub = p.add_subparsers(dest="command", required=True, parser_class=_Parser)

    v = sub.add_parser("verify", help="verify a Bonafide token against a JWKS")
    v.add_argument("--jwks", required=True, help="JWKS URL (http/https) or file path")
    v.add_argument("--token-file", required=True, help="file holding the compact JWS")
    v.add_argument("--audience", help="expected aud (checked if given)")
    v.add_argument("--issuer", help="expected iss (checked if given)")

    a = sub.add_parser("attack", help="write a malicious token to --out-file")
    a.add_argument("--kind", required=True, choices=list(kinds))
    a.add_argument("--out-file", required=True)
    a.add_argument("--jwks", help="JWKS URL or file (needed by hs256-pubkey)")
    a.add_argument("--token-file", help="genuine token to copy header/claims from")
    return p


def run(main_fn) -> None:
    """Run main_fn(), mapping exceptions to the exit-code contract."""
    try:
        code = main_fn()
    except UsageError as e:
        sys.stderr.write(f"usage error: {e}\n")
        code = EXIT_USAGE
    except EnvError as e:
        sys.stderr.write(f"error: {e}\n")
        code = EXIT_ENV
    sys.exit(code)
