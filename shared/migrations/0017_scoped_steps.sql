-- Scoped steps: the tenant-scoped database steps every event takes (the
-- sender's claim of a new reply part and its mark after the send, the
-- router's read before a bot turn and its record after one), each as one
-- statement instead of a
-- transaction of four round trips (`BEGIN` with the scope, one or two
-- statements, `COMMIT`). Issue 20: PostgreSQL was a third of the CPU per
-- event, most of it per round trip, not per row.
--
-- Each function sets the tenant scope itself, then runs as its caller
-- (SECURITY INVOKER, the default): row-level security applies exactly as in
-- a transaction opened with `switchyard_shared::db::begin_for_tenant`, and
-- every statement also filters by the tenant (belt and braces). Called
-- outside a transaction (the services do), the scope ends with the
-- statement; called inside one, the caller's scope is put back before the
-- function returns, so it never leaks into the caller's later statements.

-- Takes a reply part that has no ledger row yet for one attempt under a
-- lease; false when the row exists (the caller then reads it in a
-- transaction: `deliveries::claim`).
CREATE FUNCTION switchyard_claim_new(
    p_tenant text, p_reply text, p_chat text, p_owner text, p_lease_s float8)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, public
AS $$
DECLARE
    caller_scope text := current_setting('switchyard.tenant_id', true);
    created boolean;
BEGIN
    PERFORM set_config('switchyard.tenant_id', p_tenant, true);
    INSERT INTO deliveries (tenant_id, reply_id, chat_id, lease_owner, lease_until)
    VALUES (p_tenant, p_reply, p_chat, p_owner, now() + make_interval(secs => p_lease_s))
    ON CONFLICT (tenant_id, reply_id) DO NOTHING;
    created := FOUND;
    PERFORM set_config('switchyard.tenant_id', coalesce(caller_scope, ''), true);
    RETURN created;
END
$$;
REVOKE ALL ON FUNCTION switchyard_claim_new(text, text, text, text, float8) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchyard_claim_new(text, text, text, text, float8) TO switchyard_app;

-- The provider accepted a send (`deliveries::mark_wired`); false when the
-- tenant has no such row.
CREATE FUNCTION switchyard_mark_wired(p_tenant text, p_reply text, p_provider_id text)
RETURNS boolean
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, public
AS $$
DECLARE
    caller_scope text := current_setting('switchyard.tenant_id', true);
    marked boolean;
BEGIN
    PERFORM set_config('switchyard.tenant_id', p_tenant, true);
    UPDATE deliveries SET status = 'wired', wired_at = now(),
        provider_message_id = coalesce(p_provider_id, 'unconfirmed:' || reply_id),
        attempts = attempts + 1, lease_owner = NULL, lease_until = NULL
    WHERE tenant_id = p_tenant AND reply_id = p_reply;
    marked := FOUND;
    PERFORM set_config('switchyard.tenant_id', coalesce(caller_scope, ''), true);
    RETURN marked;
END
$$;
REVOKE ALL ON FUNCTION switchyard_mark_wired(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchyard_mark_wired(text, text, text) TO switchyard_app;

-- What the router reads before a bot turn: the chat's conversation (its
-- columns are null when the chat has none yet) and the sender's contact
-- records for `p_phone` (none when it is null). One row per record, at least
-- one row; the records in the resolver's order.
CREATE FUNCTION switchyard_turn_context(p_tenant text, p_chat text, p_phone text)
RETURNS TABLE (conversation_exists boolean, last_menu jsonb, silenced boolean,
               touched_recently boolean,
               id bigint, role text, phone text, resource text, name text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, public
AS $$
DECLARE
    caller_scope text := current_setting('switchyard.tenant_id', true);
BEGIN
    PERFORM set_config('switchyard.tenant_id', p_tenant, true);
    RETURN QUERY
        SELECT c.chat_id IS NOT NULL, c.last_menu,
               coalesce(c.silenced_until > now(), false),
               coalesce(c.last_inbound_at > now() - interval '1 hour', false),
               k.id, k.role, k.phone, k.resource, k.name
        FROM (SELECT 1) AS one
        LEFT JOIN conversations c ON c.tenant_id = p_tenant AND c.chat_id = p_chat
        LEFT JOIN contacts k ON k.tenant_id = p_tenant AND k.phone = p_phone
        ORDER BY k.resource NULLS FIRST, k.id;
    PERFORM set_config('switchyard.tenant_id', coalesce(caller_scope, ''), true);
END
$$;
REVOKE ALL ON FUNCTION switchyard_turn_context(text, text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchyard_turn_context(text, text, text) TO switchyard_app;

-- Records a chat's handled inbound message after its turn
-- (`conversations::record_inbound`): creates the conversation or touches it,
-- and remembers `p_menu` when the turn showed one (null keeps the last).
CREATE FUNCTION switchyard_record_turn(p_tenant text, p_chat text, p_menu jsonb)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, public
AS $$
DECLARE
    caller_scope text := current_setting('switchyard.tenant_id', true);
BEGIN
    PERFORM set_config('switchyard.tenant_id', p_tenant, true);
    INSERT INTO conversations (tenant_id, chat_id, last_menu) VALUES (p_tenant, p_chat, p_menu)
    ON CONFLICT (tenant_id, chat_id) DO UPDATE SET last_inbound_at = now(),
        last_menu = coalesce(EXCLUDED.last_menu, conversations.last_menu);
    PERFORM set_config('switchyard.tenant_id', coalesce(caller_scope, ''), true);
END
$$;
REVOKE ALL ON FUNCTION switchyard_record_turn(text, text, jsonb) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchyard_record_turn(text, text, jsonb) TO switchyard_app;
