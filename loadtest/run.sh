#!/usr/bin/env bash
# Runs every load scenario (fair scheduler and fifo baseline) against a local
# deployment the tool starts itself, and writes docs/benchmarks/latest.{json,md}
# and latest-latency.svg (--out-dir to write elsewhere). Builds the release binaries first. Extra arguments go
# to switchyard-load (e.g. `bash loadtest/run.sh flood --duration 30s`;
# `--help` lists every knob). Needs PostgreSQL (DATABASE_URL, a role that may
# create databases) and installs the pinned nats-server into .tools/ if missing.
source "$(dirname "${BASH_SOURCE[0]}")/../deploy/lib.sh"
install_nats_server
find_postgres
cd "$REPO_ROOT"
log "building release binaries (target dir $CARGO_TARGET_DIR)"
cargo build --quiet --release --bins -p switchyard-ingest -p switchyard-router \
  -p switchyard-sender -p switchyard-loadtest
exec "$CARGO_TARGET_DIR/release/switchyard-load" "$@"
