-- A tenant's contacts: staff and customer records, each a phone number
-- (digits only, normalised by switchyard_shared::contacts::PhoneNumber) with
-- an optional resource id (what the record is about: an order, a project).
-- The router's sender resolver reads them; `switchyard contacts` (the owner)
-- writes them. One phone may have several records (a customer with two
-- orders): the resolver then answers "ambiguous" and the bot shows a picker.
CREATE TABLE contacts (
    tenant_id   text        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    id          bigint      GENERATED ALWAYS AS IDENTITY,
    role        text        NOT NULL CHECK (role IN ('staff', 'customer')),
    phone       text        NOT NULL CHECK (phone ~ '^[0-9]{7,15}$'),
    resource    text        CHECK (resource ~ '^[A-Za-z0-9._-]{1,64}$'),
    name        text        NOT NULL DEFAULT '' CHECK (length(name) <= 200),
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, id)
);

-- One record per (role, phone, resource): re-importing a file adds nothing.
CREATE UNIQUE INDEX contacts_one_record
    ON contacts (tenant_id, role, phone, coalesce(resource, ''));
-- The resolver's lookup.
CREATE INDEX contacts_by_phone ON contacts (tenant_id, phone);

-- The workers only read contacts (invariant 4: tenant-scoped, under RLS).
GRANT SELECT ON contacts TO switchyard_app;

ALTER TABLE contacts ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON contacts
    USING (tenant_id = current_setting('switchyard.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('switchyard.tenant_id', true));
