-- no-transaction
-- Ingest's outbox (docs/ingest.md, "When JetStream cannot take an event"):
-- an event verified while JetStream cannot take it is kept here, written
-- with synchronous commit, before ingest answers 200; ingest's flusher
-- publishes it later with the same Nats-Msg-Id and deletes the row.
--
-- Without a transaction, and every step repeatable (IF EXISTS / IF NOT
-- EXISTS), so that the state CHECK of inbound_event_keys (a large, busy
-- table) is swapped without holding an exclusive lock while it is
-- validated: ADD ... NOT VALID takes the lock only for an instant, VALIDATE
-- scans while writes go on.

-- A key whose event is in the outbox is 'outboxed': durable (in PostgreSQL,
-- not yet in JetStream), so a repeated delivery is answered as a duplicate.
-- The flusher moves it to 'published' in the statement that deletes the
-- outbox row.
ALTER TABLE inbound_event_keys DROP CONSTRAINT IF EXISTS inbound_event_keys_state_check;
ALTER TABLE inbound_event_keys ADD CONSTRAINT inbound_event_keys_state_check
    CHECK (state IN ('claimed', 'published', 'outboxed')) NOT VALID;
ALTER TABLE inbound_event_keys VALIDATE CONSTRAINT inbound_event_keys_state_check;

-- One row per event waiting for JetStream. A table of its own rather than
-- columns on inbound_event_keys: it is empty almost always and small during
-- an outage, so the flusher's scans, the claim's "has this tenant a
-- backlog?" probe and the depth count touch only waiting events, rows leave
-- by DELETE (no wide dead versions of key rows), and the keys table keeps
-- its narrow rows, its asynchronous group commit and its pruning.
-- The tenant id is checked like tenants.id: it becomes a subject token.
CREATE TABLE IF NOT EXISTS inbound_outbox (
    tenant_id      text        NOT NULL CHECK (tenant_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    event_id       text        NOT NULL CHECK (length(event_id) BETWEEN 1 AND 200),
    -- Insertion order; ties of received_at_ms are published in this order.
    seq            bigint      GENERATED ALWAYS AS IDENTITY,
    -- The Switchyard-Received-At-Ms header; publishing order within a tenant.
    received_at_ms bigint      NOT NULL,
    -- The traceparent header the first publish attempt carried.
    traceparent    text        NOT NULL,
    -- The body exactly as received.
    payload        bytea       NOT NULL,
    outboxed_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, event_id)
);

CREATE INDEX IF NOT EXISTS inbound_outbox_tenant_order
    ON inbound_outbox (tenant_id, received_at_ms, seq);

-- Which ingest replica flushes which tenant: one at a time per tenant, so a
-- tenant's events leave in order; a lease that is not renewed (the replica
-- died) is taken over once it has expired.
CREATE TABLE IF NOT EXISTS inbound_outbox_leases (
    tenant_id    text        PRIMARY KEY,
    owner        text        NOT NULL,
    leased_until timestamptz NOT NULL
);

-- No row-level security and no grant to switchyard_app, like
-- inbound_event_keys: only ingest (which logs in as the owning role) reads
-- or writes these tables, for every tenant at once; the tenant-scoped
-- workers (router, sender, acting as switchyard_app) cannot see them.
REVOKE ALL ON inbound_outbox, inbound_outbox_leases FROM PUBLIC;
