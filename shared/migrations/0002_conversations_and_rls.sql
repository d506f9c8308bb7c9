-- Conversations: one row per (tenant, chat), created on first sight. Holds
-- what the rules bot needs between turns (the menu last shown, so a numeric
-- answer maps back to an option) and when the bot must stay silent.
CREATE TABLE conversations (
    tenant_id        text        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    chat_id          text        NOT NULL CHECK (length(chat_id) BETWEEN 1 AND 256),
    created_at       timestamptz NOT NULL DEFAULT now(),
    last_inbound_at  timestamptz NOT NULL DEFAULT now(),
    last_menu        jsonb,
    silenced_until   timestamptz,
    PRIMARY KEY (tenant_id, chat_id)
);

-- The role the services use for tenant-scoped work. It owns nothing, so the
-- row-level security policies below apply to it: a query that forgets its
-- tenant filter still sees only the tenant of the current transaction
-- (set with set_config('switchyard.tenant_id', ..., true)).
-- Roles are cluster-wide and tests migrate many databases at once: tolerate
-- a concurrent creation.
DO $$
BEGIN
    CREATE ROLE switchyard_app NOLOGIN;
EXCEPTION
    WHEN duplicate_object OR unique_violation THEN NULL;
END
$$;

GRANT SELECT, UPDATE (bridge_state, bridge_state_at, updated_at) ON tenants TO switchyard_app;
GRANT SELECT, INSERT, UPDATE ON conversations TO switchyard_app;

ALTER TABLE tenants ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenants
    USING (id = current_setting('switchyard.tenant_id', true));

ALTER TABLE conversations ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON conversations
    USING (tenant_id = current_setting('switchyard.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('switchyard.tenant_id', true));
