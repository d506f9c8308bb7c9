-- Which tenant a signed webhook's `webhook-id` was first delivered to
-- (docs/ingest.md, "Replayed signed webhooks"). Every tenant's webhooks are
-- signed with one Standard Webhooks secret and the signature does not cover
-- the URL, so a request captured on tenant A's URL verifies on tenant B's
-- too; ingest binds each webhook-id to the first tenant that presents it and
-- refuses it on any other tenant's URL. A row is needed only while the
-- signature's timestamp is within the tolerance (after that the signature is
-- refused anyway): ingest deletes rows past `expires_at`.
--
-- The id is kept as its SHA-256: the signer chooses its length, the table
-- keeps fixed-size keys. No row-level security: ingest reads it for every
-- tenant at once, and the tenant-scoped workers have no grant on it.
CREATE TABLE signed_webhook_ids (
    webhook_id_sha256 bytea       PRIMARY KEY CHECK (length(webhook_id_sha256) = 32),
    tenant_id         text        NOT NULL CHECK (tenant_id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    expires_at        timestamptz NOT NULL
);

CREATE INDEX signed_webhook_ids_expires_at ON signed_webhook_ids (expires_at);

REVOKE ALL ON signed_webhook_ids FROM PUBLIC;
