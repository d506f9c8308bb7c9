#!/usr/bin/env bash
# The services' least-privilege logins (deploy/README.md, "Database logins"),
# created once when the PostgreSQL volume is new. The owner (POSTGRES_USER)
# runs the migrations and the CLI; router and sender log in as
# switchyard_worker (member of switchyard_app), ingest as switchyard_edge
# (member of switchyard_ingest): neither is a superuser, has BYPASSRLS or owns
# a table, so row-level security binds them. The migrations grant the group
# roles their rights; the group roles are created here already (NOLOGIN, as
# the migrations would) so the logins can join them before the schema exists.
set -euo pipefail
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    -v worker_password="$WORKER_DB_PASSWORD" -v ingest_password="$INGEST_DB_PASSWORD" <<'SQL'
CREATE ROLE switchyard_app NOLOGIN;
CREATE ROLE switchyard_ingest NOLOGIN;
CREATE ROLE switchyard_worker LOGIN PASSWORD :'worker_password' NOSUPERUSER NOBYPASSRLS IN ROLE switchyard_app;
CREATE ROLE switchyard_edge LOGIN PASSWORD :'ingest_password' NOSUPERUSER NOBYPASSRLS IN ROLE switchyard_ingest;
SQL
