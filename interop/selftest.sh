#!/usr/bin/env bash
# Self-test of the interop clients, without a Bonafide server.
#
# Makes RS256/ES256/EdDSA keys, a Bonafide-format JWKS and tokens in a throwaway
# temp dir (interop/selftest_tokens.py), serves the JWKS over loopback HTTP, then
# checks every client's verify (valid / wrong iss / wrong or missing aud / expired /
# not yet valid / no nbf / wrong typ / unknown kid), its exit codes for usage and
# environment errors, and that every attack kind of every client is produced, is well-formed, and is
# refused by all three verifiers.
#
#   bash interop/selftest.sh          (runs scripts/interop-setup.sh first)
#   INTEROP_SKIP_SETUP=1 bash interop/selftest.sh
#   VERBOSE=1 ...                     print every check
#
# Last line: "selftest: N passed, M failed"; exit 1 if anything failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [[ "${INTEROP_SKIP_SETUP:-0}" != 1 ]]; then
  bash scripts/interop-setup.sh >/dev/null
fi

PY="$ROOT/.interop/venv/bin/python"
NODE="$(command -v node)"
PYJWT=("$PY" "$ROOT/interop/python/pyjwt_client.py")
JWCRYPTO=("$PY" "$ROOT/interop/python/jwcrypto_client.py")
JOSE=("$NODE" "$ROOT/interop/node/jose_client.mjs")
CLIENTS=(pyjwt jwcrypto jose)
ALGS=(RS256 ES256 EdDSA)
KINDS=(none hs256-pubkey embedded-jwk jku x5u crit tampered-payload)
ISS="http://127.0.0.1:8787"

TMP="$(mktemp -d "${TMPDIR:-/tmp}/bonafide-interop-selftest.XXXXXX")"
SERVER_PID=""
cleanup() {
  if [[ -n "$SERVER_PID" ]]; then kill "$SERVER_PID" 2>/dev/null || true; wait "$SERVER_PID" 2>/dev/null || true; fi
  rm -rf "$TMP"
}
trap cleanup EXIT

client() {  # client NAME args... -> runs that client
  local name="$1"; shift
  case "$name" in
    pyjwt) "${PYJWT[@]}" "$@" ;;
    jwcrypto) "${JWCRYPTO[@]}" "$@" ;;
    jose) "${JOSE[@]}" "$@" ;;
  esac
}

pass=0 fail=0
ok() { pass=$((pass + 1)); [[ "${VERBOSE:-0}" != 1 ]] || echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [[ -z "${2:-}" ]] || printf '     %s\n' "$2" | head -c 2000; }

# expect_verify LABEL WANT_RC CLIENT verify-args...
# WANT_RC 0 => stdout has "valid": true; 1 => "valid": false; 2/3 => just the code.
expect_verify() {
  local label="$1" want="$2" name="$3"; shift 3
  local out rc=0
  out="$(client "$name" verify "$@" 2>"$TMP/stderr")" || rc=$?
  if [[ "$rc" != "$want" ]]; then
    bad "$label: exit $rc, want $want" "$out $(head -c 500 "$TMP/stderr")"
  elif [[ "$want" == 0 && ! "$out" =~ \"valid\":\ ?true ]]; then
    bad "$label: exit 0 without \"valid\": true" "$out"
  elif [[ "$want" == 1 && ! "$out" =~ \"valid\":\ ?false ]]; then
    bad "$label: exit 1 without \"valid\": false" "$out"
  else
    ok "$label${VERBOSE:+ ${out:0:160}}"
  fi
}

"$PY" interop/selftest_tokens.py make "$TMP" "$ISS"
JWKS="$TMP/jwks.json"

# Serve the JWKS over loopback HTTP to exercise the URL path of each client.
PORT="$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')"
"$PY" -m http.server --bind 127.0.0.1 --directory "$TMP" "$PORT" >/dev/null 2>&1 &
SERVER_PID=$!
JWKS_URL="http://127.0.0.1:$PORT/jwks.json"
"$PY" - "$JWKS_URL" <<'EOF'
import sys, time, urllib.request
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
for _ in range(100):
    try:
        opener.open(sys.argv[1], timeout=1).read(); sys.exit(0)
    except Exception:
        time.sleep(0.05)
sys.exit("JWKS test server did not come up")
EOF

# ---------------------------------------------------------------- verify
for c in "${CLIENTS[@]}"; do
  for a in "${ALGS[@]}"; do
    t="$TMP/$a"
    expect_verify "$c $a valid (file JWKS)"        0 "$c" --jwks "$JWKS" --token-file "$t.valid.jwt" --issuer "$ISS"
    expect_verify "$c $a valid (URL JWKS)"         0 "$c" --jwks "$JWKS_URL" --token-file "$t.valid.jwt" --issuer "$ISS"
    expect_verify "$c $a valid (no --issuer)"      0 "$c" --jwks "$JWKS" --token-file "$t.valid.jwt"
    expect_verify "$c $a wrong issuer"             1 "$c" --jwks "$JWKS" --token-file "$t.valid.jwt" --issuer "http://127.0.0.1:1"
    expect_verify "$c $a aud ok"                   0 "$c" --jwks "$JWKS_URL" --token-file "$t.aud.jwt" --issuer "$ISS" --audience svc:receiver
    expect_verify "$c $a wrong audience"           1 "$c" --jwks "$JWKS" --token-file "$t.aud.jwt" --issuer "$ISS" --audience svc:other
    expect_verify "$c $a audience wanted, no aud"  1 "$c" --jwks "$JWKS" --token-file "$t.valid.jwt" --issuer "$ISS" --audience svc:receiver
    expect_verify "$c $a expired"                  1 "$c" --jwks "$JWKS" --token-file "$t.expired.jwt" --issuer "$ISS"
    expect_verify "$c $a not yet valid (nbf)"      1 "$c" --jwks "$JWKS" --token-file "$t.not-yet-valid.jwt" --issuer "$ISS"
    expect_verify "$c $a no nbf (optional)"        0 "$c" --jwks "$JWKS" --token-file "$t.no-nbf.jwt" --issuer "$ISS"
    expect_verify "$c $a typ JWT"                  1 "$c" --jwks "$JWKS" --token-file "$t.typ-jwt.jwt" --issuer "$ISS"
    expect_verify "$c $a unknown kid"              1 "$c" --jwks "$JWKS_URL" --token-file "$t.unknown-kid.jwt" --issuer "$ISS"
  done
  # usage and environment errors
  expect_verify "$c usage: missing --token-file"   2 "$c" --jwks "$JWKS"
  expect_verify "$c usage: unknown flag"           2 "$c" --jwks "$JWKS" --token-file "$TMP/RS256.valid.jwt" --bogus x
  expect_verify "$c env: JWKS URL unreachable"     3 "$c" --jwks "http://127.0.0.1:1/.well-known/jwks.json" --token-file "$TMP/RS256.valid.jwt"
  expect_verify "$c env: JWKS URL 404"             3 "$c" --jwks "http://127.0.0.1:$PORT/nope.json" --token-file "$TMP/RS256.valid.jwt"
  expect_verify "$c env: token file missing"       3 "$c" --jwks "$JWKS" --token-file "$TMP/nope.jwt"
  rc=0; client "$c" >/dev/null 2>&1 || rc=$?
  [[ $rc == 2 ]] && ok "$c usage: no command" || bad "$c usage: no command: exit $rc, want 2"
  rc=0; client "$c" attack --kind bogus --out-file "$TMP/x.jwt" --token-file "$TMP/RS256.valid.jwt" >/dev/null 2>&1 || rc=$?
  [[ $rc == 2 ]] && ok "$c usage: unknown attack kind" || bad "$c usage: unknown attack kind: exit $rc, want 2"
done

# ---------------------------------------------------------------- attack
for c in "${CLIENTS[@]}"; do
  for k in "${KINDS[@]}"; do
    for a in "${ALGS[@]}"; do
      out_file="$TMP/attack.$c.$k.$a.jwt"
      label="$c attack $k ($a)"
      rc=0
      out="$(client "$c" attack --kind "$k" --out-file "$out_file" --jwks "$JWKS_URL" --token-file "$TMP/$a.valid.jwt" 2>"$TMP/stderr")" || rc=$?
      if [[ $rc != 0 || -n "$out" || ! -s "$out_file" ]]; then
        bad "$label: exit $rc, stdout '${out:0:100}'" "$(head -c 500 "$TMP/stderr")"
        continue
      fi
      if ! "$PY" interop/selftest_tokens.py check-attack "$k" "$out_file" "$TMP/$a.valid.jwt" "$JWKS" 2>"$TMP/stderr"; then
        bad "$label: malformed" "$(cat "$TMP/stderr")"
        continue
      fi
      ok "$label"
      for v in "${CLIENTS[@]}"; do
        expect_verify "$v refuses $label" 1 "$v" --jwks "$JWKS" --token-file "$out_file" --issuer "$ISS"
      done
    done
  done
done

echo "selftest: $pass passed, $fail failed"
[[ $fail == 0 ]]
