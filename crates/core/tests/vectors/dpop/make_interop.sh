#!/usr/bin/env bash
# Regenerates the interop vectors of this directory (jwcrypto_*.json, jose_*.json):
# DPoP proofs made by interop/python/dpop_proof.py (jwcrypto) and
# interop/node/dpop_proof.mjs (jose) with fresh keys from interop/python/agent_key.py.
# The private keys are thrown away; each proof carries its public key.
#
#   bash crates/core/tests/vectors/dpop/make_interop.sh
#
# Needs the pinned interop environment (bash scripts/interop-setup.sh).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../../../../.." && pwd)"
py="$repo/.interop/venv/bin/python"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

IAT=1764072000
TOKEN='eyJhbGciOiJFZERTQSIsInR5cCI6ImFnZW50K2p3dCJ9.eyJzdWIiOiJhZ3RfMDEifQ.c2ln~_-'

keygen() { # alg name -> $tmp/name.pem, $tmp/name.jwk
  "$py" "$repo/interop/python/agent_key.py" keygen --alg "$1" --key-file "$tmp/$2.pem" \
    | "$py" -c 'import json,sys; print(json.dumps(json.load(sys.stdin)["private_jwk"]))' >"$tmp/$2.jwk"
}

# vector FILE SOURCE -- generator args...
vector() {
  local file="$1" source="$2"; shift 3
  "$@" --json | "$py" -c '
import json, sys
v = json.load(sys.stdin)
print(json.dumps({"source": sys.argv[1], **v}, indent=2))' "$source" >"$here/$file"
  echo "wrote $file" >&2
}

keygen Ed25519 ed; keygen P-256 ec; keygen RSA rsa
jwcrypto() { "$py" "$repo/interop/python/dpop_proof.py" "$@"; }
jose() { node "$repo/interop/node/dpop_proof.mjs" "$@"; }
common=(--access-token "$TOKEN" --iat "$IAT")

vector jwcrypto_eddsa.json "interop/python/dpop_proof.py (jwcrypto 1.6.1), Ed25519 PEM key" -- \
  jwcrypto --key-file "$tmp/ed.pem" --htm POST --htu https://api.example.com/v1/orders --jti py-ed-1 "${common[@]}"
vector jwcrypto_es256.json "interop/python/dpop_proof.py (jwcrypto 1.6.1), P-256 PEM key" -- \
  jwcrypto --key-file "$tmp/ec.pem" --htm GET --htu https://api.example.com/v1/portfolio --jti py-ec-1 "${common[@]}"
vector jwcrypto_rs256.json "interop/python/dpop_proof.py (jwcrypto 1.6.1), RSA-2048 PEM key" -- \
  jwcrypto --key-file "$tmp/rsa.pem" --htm DELETE --htu https://api.example.com/v1/orders/42 --jti py-rsa-1 "${common[@]}"
vector jose_eddsa.json "interop/node/dpop_proof.mjs (jose 6.2.18), Ed25519 private JWK file" -- \
  jose --key-file "$tmp/ed.jwk" --htm POST --htu https://api.example.com/v1/orders --jti js-ed-1 "${common[@]}"
vector jose_es256.json "interop/node/dpop_proof.mjs (jose 6.2.18), P-256 PEM key" -- \
  jose --key-file "$tmp/ec.pem" --htm PUT --htu http://localhost:8080/v1/items/7 --jti js-ec-1 "${common[@]}"
vector jose_rs256.json "interop/node/dpop_proof.mjs (jose 6.2.18), RSA-2048 PEM key" -- \
  jose --key-file "$tmp/rsa.pem" --htm GET --htu https://api.example.com/ --jti js-rsa-1 "${common[@]}"
