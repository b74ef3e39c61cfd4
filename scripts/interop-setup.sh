#!/usr/bin/env bash
# Install the third-party JWT libraries used by the interop tests (interop/README.md).
#
#   <repo>/.interop/venv            Python virtualenv with interop/python/requirements.txt
#                                   (the JOSE clients, and the Schemathesis schema fuzzer)
#   <repo>/interop/node/node_modules   `npm ci` of interop/node/package-lock.json
#
# Idempotent and fast when already done: each step is skipped while a stamp file
# matches the hash of its inputs (requirements.txt + interpreter version; package-lock.json
# + node version). Safe to run concurrently (serialised with flock when available).
#
# Environment:
#   PYTHON=python3            interpreter used to create the venv
#   INTEROP_FORCE=1           reinstall everything
#   INTEROP_SKIP_PYTHON=1 / INTEROP_SKIP_NODE=1   skip one side
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
INTEROP_DIR="$ROOT/.interop"
VENV="$INTEROP_DIR/venv"
REQS="$ROOT/interop/python/requirements.txt"
NODE_DIR="$ROOT/interop/node"
PYTHON="${PYTHON:-python3}"
FORCE="${INTEROP_FORCE:-0}"

log() { printf 'interop-setup: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

sha() { sha256sum | cut -d' ' -f1; }

mkdir -p "$INTEROP_DIR"

# Serialise concurrent runs (e.g. several test binaries calling this at once).
if command -v flock >/dev/null 2>&1 && [[ -z "${INTEROP_SETUP_LOCKED:-}" ]]; then
  exec 9>"$INTEROP_DIR/setup.lock"
  flock 9
  export INTEROP_SETUP_LOCKED=1
fi

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

# ---------------------------------------------------------------- Python
setup_python() {
  # A machine with only the Rust toolchain may lack Python: Debian's is enough.
  command -v "$PYTHON" >/dev/null 2>&1 || apt_install python3 python3-venv
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found"
  local pyver want have stamp="$VENV/.bonafide-requirements.sha256"
  pyver="$("$PYTHON" -c 'import sys; print("%d.%d.%d" % sys.version_info[:3])')"
  want="$( { cat "$REQS"; echo "python=$pyver"; } | sha)"
  have="$(cat "$stamp" 2>/dev/null || true)"
  if [[ "$FORCE" != 1 && "$want" == "$have" && -x "$VENV/bin/python" ]] \
     && "$VENV/bin/python" -c 'import jwt, jwcrypto, cryptography, schemathesis' 2>/dev/null; then
    log "python venv up to date: $VENV"
    return
  fi

  # Recreate from scratch: a half-built or stale venv is not worth repairing.
  rm -rf "$VENV"
  if ! "$PYTHON" -m venv "$VENV" >/dev/null 2>"$INTEROP_DIR/venv.err"; then
    # Debian/Ubuntu split `venv`/`ensurepip` into python3-venv (or python3.X-venv).
    log "'$PYTHON -m venv' failed ($(tail -n1 "$INTEROP_DIR/venv.err")); installing python3-venv"
    rm -rf "$VENV"
    local minor
    minor="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    apt_install python3-venv || apt_install "python${minor}-venv"
    "$PYTHON" -m venv "$VENV" >&2 || die "cannot create venv at $VENV"
  fi
  rm -f "$INTEROP_DIR/venv.err"

  log "pip install -r $REQS"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
    --require-virtualenv -r "$REQS" >&2
  "$VENV/bin/python" -c 'import jwt, jwcrypto, cryptography, schemathesis' \
    || die "installed packages do not import"
  "$VENV/bin/schemathesis" --version >/dev/null || die "the schemathesis CLI does not run"
  echo "$want" >"$stamp"
}

# ---------------------------------------------------------------- Node
setup_node() {
  # jose 6 needs node >= 20 (Debian 12's nodejs is 18: then use the machine's own).
  command -v node >/dev/null 2>&1 || apt_install nodejs npm
  command -v npm >/dev/null 2>&1 || apt_install npm
  command -v node >/dev/null 2>&1 || die "node not found"
  command -v npm >/dev/null 2>&1 || die "npm not found"
  local want have stamp="$NODE_DIR/node_modules/.bonafide-lock.sha256"
  want="$( { cat "$NODE_DIR/package-lock.json"; echo "node=$(node --version)"; } | sha)"
  have="$(cat "$stamp" 2>/dev/null || true)"
  if [[ "$FORCE" != 1 && "$want" == "$have" && -d "$NODE_DIR/node_modules/jose" ]]; then
    log "node_modules up to date: $NODE_DIR/node_modules"
    return
  fi
  log "npm ci in $NODE_DIR"
  (cd "$NODE_DIR" && npm ci --no-audit --no-fund --loglevel=error >&2)
  echo "$want" >"$stamp"
}

[[ "${INTEROP_SKIP_PYTHON:-0}" == 1 ]] || setup_python
[[ "${INTEROP_SKIP_NODE:-0}" == 1 ]] || setup_node

# Machine-readable summary on stdout (logs went to stderr).
cat <<EOF
python=$VENV/bin/python
pyjwt_client=$ROOT/interop/python/pyjwt_client.py
jwcrypto_client=$ROOT/interop/python/jwcrypto_client.py
node=$(command -v node)
jose_client=$ROOT/interop/node/jose_client.mjs
schemathesis=$VENV/bin/schemathesis
EOF
