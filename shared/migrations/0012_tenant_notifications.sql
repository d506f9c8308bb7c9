-- Tenant notifications (issue 21 point 3): a tenant may have a URL to which
-- the sender's notifier posts its bridge state changes, stuck pairing and
-- dead-lettered replies, signed with the tenant's own Standard Webhooks
-- secret (`whsec_` + base64 of 32 random bytes, made by
-- `switchyard tenants notify`).
--
-- A table of its own rather than columns of `tenants`: ingest's login reads
-- `tenants` (every column, 0010) and must never see a signing secret; here
-- only the workers' role is granted anything. The secret is stored as is:
-- the notifier must sign with it, so it cannot be a hash.
CREATE TABLE tenant_notifications (
    tenant_id          text        PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    url                text        NOT NULL CHECK (length(url) BETWEEN 1 AND 2048),
    secret             text        NOT NULL CHECK (secret ~ '^whsec_[A-Za-z0-9+/=]{32,}$'),
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    -- The bridge_state_at of the stuck episode last notified: one
    -- `pairing.stuck` per episode, whichever sender replica notices it.
    stuck_notified_for timestamptz
);

-- The notifier reads a tenant's URL and secret (tenant-scoped, under RLS);
-- the stuck check records the episode it notified. Nothing for ingest.
GRANT SELECT, UPDATE (stuck_notified_for) ON tenant_notifications TO switchyard_app;

ALTER TABLE tenant_notifications ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON tenant_notifications
    USING (tenant_id = current_setting('switchyard.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('switchyard.tenant_id', true));

-- Which tenants with notifications on have a bridge stuck for at least
-- `older_than` and were not yet notified of this episode. A cross-tenant
-- question the workers' role cannot ask under row-level security, so it is
-- answered by this function with its owner's rights, and answers only ids,
-- states and ages: no URL, no secret.
CREATE FUNCTION switchyard_stuck_unnotified(older_than interval)
RETURNS TABLE (tenant_id text, bridge_state text, state_at timestamptz, for_seconds bigint)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT t.id, t.bridge_state, COALESCE(t.bridge_state_at, t.created_at),
           GREATEST(0, EXTRACT(EPOCH FROM (now() - COALESCE(t.bridge_state_at, t.created_at))))::bigint
    FROM tenants t
    JOIN tenant_notifications n ON n.tenant_id = t.id
    WHERE t.status = 'active'
      AND t.bridge_id IS NOT NULL
      AND t.bridge_state NOT IN ('connected', 'unprovisioned', 'missing')
      AND COALESCE(t.bridge_state_at, t.created_at) <= now() - older_than
      AND n.stuck_notified_for IS DISTINCT FROM COALESCE(t.bridge_state_at, t.created_at)
    ORDER BY t.id
$$;
REVOKE ALL ON FUNCTION switchyard_stuck_unnotified(interval) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchyard_stuck_unnotified(interval) TO switchyard_app;
