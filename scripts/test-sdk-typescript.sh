#!/usr/bin/env bash
# The TypeScript SDK's tests (sdks/typescript): installs its pinned tooling
# (`npm ci` of sdks/typescript/package-lock.json into its git-ignored node_modules),
# type-checks, lints (biome), builds with tsc, runs the unit and conformance tests
# (every file of conformance/), packs the package with `npm pack` and installs the
# artefact in a clean temp project that imports it, then runs the integration tests
# against the real registry.
#
# Environment:
#   BONAFIDE_BIN   the `bonafide` binary for the integration tests; default
#                  target/debug/bonafide of this repository (built with
#                  `cargo build --bin bonafide` when missing)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SDK="$ROOT/sdks/typescript"

log() { printf 'test-sdk-typescript: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "node and npm are needed (Node 20+), and apt-get is not available to install them"
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: $*"
    sudo=(sudo)
  fi
  log "apt-get install $*"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

command -v node >/dev/null 2>&1 || apt_install nodejs npm
command -v npm >/dev/null 2>&1 || apt_install npm
command -v node >/dev/null 2>&1 || die "node not found"
command -v npm >/dev/null 2>&1 || die "npm not found"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[[ "$node_major" -ge 20 ]] || die "Node 20 or newer is needed (found $(node --version))"

cd "$SDK"
# Versioned with the server: the package's version is the workspace's.
workspace_version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1)"
[[ -n "$workspace_version" ]] || die "no version in the workspace Cargo.toml"
sdk_version="$(node -p 'require("./package.json").version')"
[[ "$sdk_version" == "$workspace_version" ]] || die "versions differ: workspace $workspace_version, sdks/typescript/package.json $sdk_version"
cmp -s "$ROOT/LICENSE" LICENSE || die "sdks/typescript/LICENSE differs from the repository's LICENSE"

# Pinned tooling, reinstalled only when the lockfile or node changes.
stamp="node_modules/.bonafide-lock.sha256"
want="$( { cat package-lock.json; echo "node=$(node --version)"; } | sha256sum | cut -d' ' -f1)"
if [[ "$want" != "$(cat "$stamp" 2>/dev/null || true)" || ! -d node_modules/typescript ]]; then
  log "npm ci in $SDK"
  npm ci --no-audit --no-fund --loglevel=error >&2
  echo "$want" >"$stamp"
fi

echo "== tsc --noEmit (sources, tests, benchmarks)"
npx --no-install tsc -p tsconfig.test.json --noEmit
echo "== biome lint"
npx --no-install biome lint --error-on-warnings src test bench
echo "== tsc (package build)"
rm -rf dist build
npx --no-install tsc -p tsconfig.json
npx --no-install tsc -p tsconfig.test.json

echo "== unit and conformance tests"
node --test --test-reporter=spec build/test/unit.test.js build/test/conformance.test.js

echo "== npm pack, installed in a clean project"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
npm pack --silent --pack-destination "$tmp" >/dev/null
tarball="$(ls "$tmp"/*.tgz)"
mkdir "$tmp/app"
(
  cd "$tmp/app"
  printf '{"name":"sdk-install-check","version":"0.0.0","private":true,"type":"module"}\n' >package.json
  # The artefact's one runtime dependency (jose) comes from the registry as pinned.
  npm install --no-audit --no-fund --loglevel=error "$tarball" >&2
  cat >check.mjs <<'JS'
import { Receiver, AgentKey, dpopProof, verifyProof, Policy } from "@bonafide/sdk";
import { agentAuth as expressAuth } from "@bonafide/sdk/express";
import { agentAuth as honoAuth } from "@bonafide/sdk/hono";
const key = await AgentKey.generate("EdDSA");
const proof = await dpopProof(key, { htm: "GET", htu: "https://api.example/x", accessToken: "t" });
const v = await verifyProof(proof, { htm: "GET", htu: "https://api.example/x", jkt: key.kid, accessToken: "t", now: Math.floor(Date.now() / 1000) });
if (v.jkt !== key.kid || typeof Receiver.create !== "function" || typeof expressAuth !== "function" || typeof honoAuth !== "function") process.exit(1);
await Policy.parse('{"version":"pol.v0.2","id":"p","actions":["a.b"]}');
console.log("installed package imports and verifies");
JS
  node check.mjs
)

echo "== integration tests against the real registry"
if [[ -z "${BONAFIDE_BIN:-}" ]]; then
  BONAFIDE_BIN="$ROOT/target/debug/bonafide"
  if [[ ! -x "$BONAFIDE_BIN" ]]; then
    log "building $BONAFIDE_BIN"
    (cd "$ROOT" && cargo build --bin bonafide >&2)
  fi
fi
[[ -x "$BONAFIDE_BIN" ]] || die "BONAFIDE_BIN=$BONAFIDE_BIN is not an executable"
export BONAFIDE_BIN
node --test --test-reporter=spec build/test/integration.test.js
