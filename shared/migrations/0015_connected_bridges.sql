-- The silent-bridge watchdog (issue 21 point 2) learns who was heard from
-- from the INBOUND stream's per-tenant counts; a tenant with no event left
-- there (quiet for longer than the stream's max age) was never probed,
-- whatever its bridge did. This lists the tenants whose bridge is believed
-- connected, so the watchdog covers those too: a cross-tenant question the
-- workers' role cannot ask under row-level security, answered with the
-- owner's rights and ids only.
CREATE FUNCTION switchyard_connected_bridges()
RETURNS TABLE (tenant_id text)
LANGUAGE sql STABLE SECURITY DEFINER
SET search_path = pg_catalog, public
AS $$
    SELECT id FROM tenants
     WHERE status = 'active' AND channel = 'wabridges' AND bridge_state = 'connected'
     ORDER BY id
$$;
REVOKE ALL ON FUNCTION switchyard_connected_bridges() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchyard_connected_bridges() TO switchyard_app;
