-- A tenant's row in one statement: the read every service makes on a
-- tenant's first event and then once per cache TTL
-- (`switchyard_shared::tenant_cache`) was a transaction of three round trips
-- (`BEGIN` with the scope, the `SELECT`, `COMMIT`). Issue 20: over a
-- thousand tenants, every tenant's first event costs that read in each of
-- ingest, router and sender, all in the first seconds after a start.
--
-- As in 0017: the function sets the scope to the tenant it is asked for,
-- then runs as its caller (SECURITY INVOKER), so row-level security applies
-- exactly as in a transaction opened for that tenant, and the statement
-- also filters by the id; the caller's scope is put back before it returns.
CREATE FUNCTION switchyard_tenant_row(p_tenant text)
RETURNS SETOF tenants
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, public
AS $$
DECLARE
    caller_scope text := current_setting('switchyard.tenant_id', true);
BEGIN
    PERFORM set_config('switchyard.tenant_id', p_tenant, true);
    RETURN QUERY SELECT * FROM tenants WHERE id = p_tenant;
    PERFORM set_config('switchyard.tenant_id', coalesce(caller_scope, ''), true);
END
$$;
REVOKE ALL ON FUNCTION switchyard_tenant_row(text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchyard_tenant_row(text) TO switchyard_app, switchyard_ingest;
