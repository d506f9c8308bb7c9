-- Many tenants' rows in one statement: `switchyard_tenant_row` (0019) for
-- every tenant whose row a service needs at the same moment. Issue 20: a
-- start over a thousand tenants reads a thousand rows in each of ingest,
-- router and sender within seconds (every tenant's first event), and each
-- read was a pooled round trip of its own; `switchyard_shared::tenant_reads`
-- group-commits them.
--
-- As in 0019: for each id in turn the function sets the scope to that
-- tenant and reads as its caller (SECURITY INVOKER), so row-level security
-- applies to every row exactly as in a transaction opened for it, and the
-- statement also filters by the id; the caller's scope is put back before
-- it returns. An id without a row (or without one the caller may see)
-- returns nothing; callers match the rows to their ids by `id`.
CREATE FUNCTION switchyard_tenant_rows(p_tenants text[])
RETURNS SETOF tenants
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, public
AS $$
DECLARE
    caller_scope text := current_setting('switchyard.tenant_id', true);
    t text;
BEGIN
    FOREACH t IN ARRAY p_tenants LOOP
        CONTINUE WHEN t IS NULL;
        PERFORM set_config('switchyard.tenant_id', t, true);
        RETURN QUERY SELECT * FROM tenants WHERE id = t;
    END LOOP;
    PERFORM set_config('switchyard.tenant_id', coalesce(caller_scope, ''), true);
END
$$;
REVOKE ALL ON FUNCTION switchyard_tenant_rows(text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchyard_tenant_rows(text[]) TO switchyard_app, switchyard_ingest;

-- 0019's one-row read is left in place: services of the previous release
-- still call it while a rollout replaces them (the migrate job runs first),
-- and so does a rollback to it. A later migration may drop it.
