#!/usr/bin/env bash
# Stops the demo stack that deploy/up.sh started: only the processes whose
# pids it recorded under .run/, services first, nats-server last. Logs and the
# `switchyard_demo` database are kept for a look afterwards.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUN_DIR="$REPO_ROOT/.run"

stop() {
  local name="$1" pidfile="$RUN_DIR/$1.pid" pid
  [[ -f "$pidfile" ]] || return 0
  pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
      log "$name (pid $pid) did not stop within 10 s; killing it"
      kill -KILL "$pid" 2>/dev/null || true
    fi
    log "stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
}

for name in ingest router sender wabridges-sim nats; do
  stop "$name"
done
