-- Least-privilege logins (docs/architecture.md invariant 4, deploy/README.md
-- "Database logins"). The services log in as roles that are not superusers,
-- have no BYPASSRLS and own no table, so row-level security binds the login
-- itself, whatever a statement does to the session's role:
--
--   switchyard_app     (0002) router and sender: tenant-scoped work on
--                      tenants, conversations, deliveries, under the
--                      tenant_isolation policies;
--   switchyard_ingest  (here) ingest: its own tables, which hold every tenant
--                      at once (idempotency keys, outbox, outbox leases,
--                      signed webhook-ids), and the tenants table under the
--                      tenant_isolation policy (its webhook credential, read
--                      inside a tenant-scoped transaction). Nothing of the
--                      workers' (conversations, deliveries).
--
-- Logins are the deployment's business (passwords do not belong in a
-- migration): `CREATE ROLE <login> LOGIN PASSWORD '…' NOSUPERUSER
-- NOBYPASSRLS IN ROLE switchyard_app` (or switchyard_ingest). The operator
-- CLI logs in as the owner, which runs migrations and manages tenants.
-- Roles are cluster-wide and tests migrate many databases at once: tolerate
-- a concurrent creation, as 0002 does.
DO $$
BEGIN
    CREATE ROLE switchyard_ingest NOLOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

GRANT SELECT, INSERT, UPDATE, DELETE ON inbound_event_keys TO switchyard_ingest;
GRANT SELECT, INSERT, UPDATE, DELETE ON inbound_outbox TO switchyard_ingest;
GRANT SELECT, INSERT, UPDATE, DELETE ON inbound_outbox_leases TO switchyard_ingest;
GRANT SELECT, INSERT, DELETE ON signed_webhook_ids TO switchyard_ingest;
GRANT SELECT ON tenants TO switchyard_ingest;

-- `switchyard migrate --check` (the workers' wait-for-schema step) reads
-- which migrations ran, with the workers' own login.
GRANT SELECT ON _sqlx_migrations TO switchyard_app, switchyard_ingest;
