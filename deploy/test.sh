#!/usr/bin/env bash
# Runs the whole test suite against real dependencies: a private nats-server
# 2.15.1 per test (installed into .tools/ if missing, like schemathesis for the
# schema-driven ingest check) and PostgreSQL
# (DATABASE_URL, else 127.0.0.1:5432). Extra arguments go to cargo nextest.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
install_nats_server
ensure_schemathesis
find_postgres
ensure_nextest
cd "$REPO_ROOT"
log "checking the deployment artefacts (YAML, Dockerfile, Kubernetes, KEDA, compose)"
bash "$REPO_ROOT/deploy/check-manifests.sh"
log "running the test suite (DATABASE_URL points at $(sed -E 's#//[^@]*@#//***@#' <<<"$DATABASE_URL"))"
cargo nextest run --workspace --no-fail-fast "$@"
