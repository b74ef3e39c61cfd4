#!/usr/bin/env bash
# Load harness: POST /v1/verify (EdDSA token, scope check) vs a minimal axum endpoint
# doing one Ed25519 verify, same machine, same run, same connections.
#
#   bash bench/run-load.sh                       # defaults: 16 connections, 2 s + 10 s, 2 rounds
#   bash bench/run-load.sh --connections 32 --json bench/load-results.json
#   bash bench/run-load.sh --compare-audit --interleave   # audit log on vs off, 32 connections
#   bash bench/run-load.sh --compare-backend --interleave --data-dir /work/bench-data   # PostgreSQL vs SQLite
#
# Builds in release (bonafide-load, and the bonafide binary the replica modes run as
# server processes), then runs bonafide-load with the given arguments (see --help).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p bonafide-load -p bonafide
target_dir="$(cargo metadata --format-version 1 --no-deps \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')"
exec "${target_dir:-target}/release/bonafide-load" "$@"
