#!/usr/bin/env bash
# Tests of the Python SDK (sdks/python): installs its pinned tooling into a git-ignored
# virtualenv (sdks/python/.venv, from sdks/python/requirements-dev.txt), then lints
# (ruff), type-checks (mypy --strict), runs the unit and conformance tests (pytest:
# every file of conformance/), builds the sdist and wheel (python -m build), installs
# the wheel in a clean temporary virtualenv and imports it, and runs the integration
# tests against the real registry.
#
# Environment:
#   PYTHON=python3        interpreter for the venv (3.10 or newer)
#   BONAFIDE_BIN=PATH     the registry binary for the integration tests; default the
#                         repo's target/debug/bonafide (or $CARGO_TARGET_DIR/debug/bonafide),
#                         built with `cargo build --bin bonafide` when missing
#   SDK_PY_FORCE=1        reinstall the venv
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
SDK="$ROOT/sdks/python"
VENV="$SDK/.venv"
REQS="$SDK/requirements-dev.txt"
PYTHON="${PYTHON:-python3}"

log() { printf 'test-sdk-python: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
sha() { sha256sum | cut -d' ' -f1; }

apt_updated=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not available to install: $*"
  local sudo=()
  if [[ "$(id -u)" != 0 ]]; then
    command -v sudo >/dev/null 2>&1 || die "need root (or sudo) to install: $*"
    sudo=(sudo)
  fi
  if [[ $apt_updated == 0 ]]; then
    log "apt-get update"
    "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
    apt_updated=1
  fi
  log "apt-get install $*"
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >&2
}

# ---------------------------------------------------------------- the venv
command -v "$PYTHON" >/dev/null 2>&1 || apt_install python3 python3-venv
command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found"
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || die "$PYTHON is $("$PYTHON" -V 2>&1); the SDK needs Python 3.10 or newer"
pyver="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
want="$( { cat "$REQS"; echo "python=$pyver"; } | sha)"
stamp="$VENV/.requirements.sha256"
if [[ "${SDK_PY_FORCE:-0}" == 1 || "$(cat "$stamp" 2>/dev/null || true)" != "$want" || ! -x "$VENV/bin/python" ]]; then
  rm -rf "$VENV"
  if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>&1; then
    # Debian/Ubuntu split `venv`/`ensurepip` into python3-venv (or python3.X-venv).
    rm -rf "$VENV"
    minor="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    apt_install python3-venv || apt_install "python${minor}-venv"
    "$PYTHON" -m venv "$VENV" || die "cannot create a virtualenv with $PYTHON"
  fi
  log "installing the pinned tooling into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r "$REQS" >&2
  echo "$want" > "$stamp"
else
  log "venv up to date: $VENV"
fi
PY="$VENV/bin/python"
cd "$SDK"

# ---------------------------------------------------------------- versions and licence
workspace_version="$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$ROOT/Cargo.toml" | head -n1)"
[[ -n "$workspace_version" ]] || die "no version in the workspace Cargo.toml"
sdk_version="$(sed -n 's/^version *= *"\(.*\)"/\1/p' pyproject.toml | head -n1)"
init_version="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' src/bonafide/__init__.py)"
[[ "$sdk_version" == "$workspace_version" && "$init_version" == "$workspace_version" ]] \
  || die "versions differ: workspace $workspace_version, pyproject $sdk_version, __version__ $init_version"
cmp -s "$ROOT/LICENSE" LICENSE || die "sdks/python/LICENSE differs from the repository's LICENSE"

# ---------------------------------------------------------------- lint, types, tests
log "ruff"
"$PY" -m ruff check .
"$PY" -m ruff format --check .
log "mypy --strict"
"$PY" -m mypy
log "pytest: unit and conformance tests"
"$PY" -m pytest -q -rs tests

# ---------------------------------------------------------------- the built artefact
log "python -m build"
rm -rf dist
"$PY" -m build --no-isolation --outdir dist . >/dev/null
wheel="$(ls dist/bonafide-"$sdk_version"-py3-none-any.whl)"
ls dist/bonafide-"$sdk_version".tar.gz >/dev/null
clean="$(mktemp -d)"
trap 'rm -rf "$clean"' EXIT
"$PYTHON" -m venv "$clean/venv"
# The runtime dependencies at the pinned versions (constraints), nothing else.
"$clean/venv/bin/python" -m pip install -q --disable-pip-version-check -c "$REQS" "$wheel" >&2
(cd "$clean" && "$clean/venv/bin/python" - "$sdk_version" <<'PYEOF'
import importlib.metadata as md, sys
import bonafide
from bonafide import PrivateKey, ReceiverConfig, Receiver, dpop
assert bonafide.__version__ == sys.argv[1], bonafide.__version__
assert md.version("bonafide") == sys.argv[1]
requires = sorted(r.split(">")[0].split("=")[0].split(";")[0].strip() for r in md.requires("bonafide") or [])
assert requires == ["cryptography", "httpx"], requires
assert any(f.name == "LICENSE" for f in md.files("bonafide")), "LICENSE not in the wheel"
assert any(f.name == "py.typed" for f in md.files("bonafide")), "py.typed not in the wheel"
key = PrivateKey.generate()
proof = dpop.sign(key, htm="GET", htu="https://api.example/x", access_token="t", iat=1)
assert dpop.verify(proof, htm="GET", htu="https://api.example/x", jkt=key.kid, access_token="t", now=1).jkt == key.kid
Receiver(ReceiverConfig.offline("https://registry.example"))
print("installed wheel imports and verifies:", bonafide.__file__)
PYEOF
) >&2

# ---------------------------------------------------------------- the real registry
if [[ -z "${BONAFIDE_BIN:-}" ]]; then
  BONAFIDE_BIN="${CARGO_TARGET_DIR:-$ROOT/target}/debug/bonafide"
  if [[ ! -x "$BONAFIDE_BIN" ]]; then
    log "building the registry: cargo build --bin bonafide"
    (cd "$ROOT" && cargo build --bin bonafide) >&2
  fi
fi
[[ -x "$BONAFIDE_BIN" ]] || die "BONAFIDE_BIN=$BONAFIDE_BIN is not an executable"
export BONAFIDE_BIN
log "pytest: integration tests against $BONAFIDE_BIN"
"$PY" -m pytest -q tests_integration
