-- Per-tenant webhook credentials (shared/src/webhook_credential.rs,
-- docs/operations.md "A leaked webhook URL").
--
-- webhook_generation      which generation of the tenant's webhook URL token
--                         is current. 0 is the token every tenant had before
--                         this migration (the server secret and the tenant id
--                         only), so every URL already at the provider stays
--                         valid; `switchyard tenants rotate-webhook` adds one.
-- webhook_previous_until  until when generation - 1 is still accepted (the
--                         rotation window while the bridge is re-pointed).
--                         NULL: only the current generation is accepted
--                         (never rotated, or revoked with --window 0).
--
-- Only the operator CLI (the owner) writes them; switchyard_app reads them
-- through the table-wide SELECT of 0002.
ALTER TABLE tenants
    ADD COLUMN webhook_generation     integer NOT NULL DEFAULT 0
        CHECK (webhook_generation >= 0),
    ADD COLUMN webhook_previous_until timestamptz,
    ADD CONSTRAINT tenants_webhook_previous_needs_a_rotation
        CHECK (webhook_previous_until IS NULL OR webhook_generation > 0);
