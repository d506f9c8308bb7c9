-- A second channel (issue 22): a tenant's number is either a WA Bridges
-- bridge (`wabridges`, every tenant so far) or a phone number on Meta's
-- WhatsApp Cloud API (`cloud_api`, docs/cloud-api.md).
ALTER TABLE tenants
    ADD COLUMN channel text NOT NULL DEFAULT 'wabridges'
        CHECK (channel IN ('wabridges', 'cloud_api'));

-- A Cloud API tenant's number and credential. A table of its own, not
-- columns of `tenants`: ingest's login reads `tenants` (0010) and must never
-- see a token, even encrypted. The business token is sealed with
-- XChaCha20-Poly1305 under one of the operators' keys
-- (SWITCHYARD_CLOUD_TOKEN_KEYS; `token_key_id` names which), the tenant id
-- as associated data, so a ciphertext copied to another tenant's row does
-- not open.
CREATE TABLE cloud_channels (
    tenant_id            text        PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    -- Meta's ids are digits; the simulator's may carry letters.
    phone_number_id      text        NOT NULL UNIQUE CHECK (phone_number_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    waba_id              text        NOT NULL CHECK (waba_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    display_phone_number text        CHECK (length(display_phone_number) <= 32),
    token_sealed         bytea       CHECK (length(token_sealed) BETWEEN 41 AND 8192),
    token_key_id         text        CHECK (token_key_id ~ '^[A-Za-z0-9_-]{1,32}$'),
    -- `active`: sends use the token; `revoked`: an operator revoked it;
    -- `rejected`: Meta refused it (codes 0/190, an uninstall): the tenant is
    -- held until a new token is connected.
    token_state          text        NOT NULL DEFAULT 'active'
                                     CHECK (token_state IN ('active', 'revoked', 'rejected')),
    token_expires_at     timestamptz,
    -- Messages per second this tenant may send (docs/cloud-api.md section 6).
    mps                  integer     NOT NULL DEFAULT 20 CHECK (mps BETWEEN 1 AND 1000),
    quality              text        CHECK (length(quality) <= 32),
    messaging_limit      text        CHECK (length(messaging_limit) <= 32),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    CHECK ((token_sealed IS NULL) = (token_key_id IS NULL))
);

CREATE INDEX cloud_channels_waba ON cloud_channels (waba_id);

-- The sender reads its tenant's row and records what Meta said of the token,
-- the quality and the limit; nothing for ingest.
GRANT SELECT, UPDATE (token_state, quality, messaging_limit, mps, updated_at)
    ON cloud_channels TO switchyard_app;

ALTER TABLE cloud_channels ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON cloud_channels
    USING (tenant_id = current_setting('switchyard.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('switchyard.tenant_id', true));

-- Ingest routes every item of a Cloud webhook batch by its phone number id
-- (or, for account-level changes, its WABA id) before any tenant is known:
-- a cross-tenant question its login cannot ask under row-level security. This
-- function answers it with its owner's rights and returns routing facts only
-- (no token, no state of the credential).
CREATE FUNCTION switchyard_cloud_routes(numbers text[], wabas text[])
RETURNS TABLE (tenant_id text, phone_number_id text, waba_id text,
               display_phone_number text, active boolean)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT c.tenant_id, c.phone_number_id, c.waba_id, c.display_phone_number,
           t.status = 'active' AND t.channel = 'cloud_api'
      FROM cloud_channels c JOIN tenants t ON t.id = c.tenant_id
     WHERE c.phone_number_id = ANY (numbers) OR c.waba_id = ANY (wabas)
$$;
REVOKE ALL ON FUNCTION switchyard_cloud_routes(text[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchyard_cloud_routes(text[], text[]) TO switchyard_ingest;

-- Delivery statuses of a Cloud API send (`sent` < `delivered` < `read`, or
-- `failed` with Meta's code), recorded against the reply's ledger row from
-- the status webhooks. The ledger's own `status` stays the sender's view
-- (sending / wired / dead); this is the recipient's side.
ALTER TABLE deliveries
    ADD COLUMN recipient_status    text CHECK (recipient_status IN ('sent', 'delivered', 'read', 'failed')),
    ADD COLUMN recipient_status_at timestamptz,
    ADD COLUMN recipient_error     text CHECK (length(recipient_error) <= 200);
