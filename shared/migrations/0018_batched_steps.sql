-- Batched steps: the scoped steps of 0017 for many items in one statement,
-- so the calls of many events in flight at once cost one round trip and one
-- commit (`switchyard_shared::group_commit`; issue 20: the round trips and
-- wake-ups per event were the largest share of the pipeline's CPU).
--
-- Each function walks its items one by one, setting the item's tenant scope
-- before touching its rows, so row-level security applies to every item
-- exactly as in its single-item function (and every statement also filters
-- by the item's tenant). Items are taken in key order, so two batches that
-- share rows lock them in the same order and cannot deadlock. The answer
-- rows name their item by its position in the arrays (`item`, from 1). The
-- caller's scope is put back before the function returns.

-- `switchyard_claim_new` for many reply parts.
CREATE FUNCTION switchyard_claim_new_batch(
    p_tenants text[], p_replies text[], p_chats text[], p_owners text[], p_lease_s float8[])
RETURNS TABLE (item int, created boolean)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, public
AS $$
DECLARE
    caller_scope text := current_setting('switchyard.tenant_id', true);
    r record;
BEGIN
    FOR r IN
        SELECT t.tenant, t.reply, t.chat, t.owner, t.lease_s, t.n
        FROM unnest(p_tenants, p_replies, p_chats, p_owners, p_lease_s)
             WITH ORDINALITY AS t(tenant, reply, chat, owner, lease_s, n)
        ORDER BY t.tenant, t.reply, t.n
    LOOP
        PERFORM set_config('switchyard.tenant_id', r.tenant, true);
        INSERT INTO deliveries (tenant_id, reply_id, chat_id, lease_owner, lease_until)
        VALUES (r.tenant, r.reply, r.chat, r.owner, now() + make_interval(secs => r.lease_s))
        ON CONFLICT (tenant_id, reply_id) DO NOTHING;
        item := r.n;
        created := FOUND;
        RETURN NEXT;
    END LOOP;
    PERFORM set_config('switchyard.tenant_id', coalesce(caller_scope, ''), true);
END
$$;
REVOKE ALL ON FUNCTION switchyard_claim_new_batch(text[], text[], text[], text[], float8[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchyard_claim_new_batch(text[], text[], text[], text[], float8[]) TO switchyard_app;

-- `switchyard_mark_wired` for many sends.
CREATE FUNCTION switchyard_mark_wired_batch(
    p_tenants text[], p_replies text[], p_provider_ids text[])
RETURNS TABLE (item int, marked boolean)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, public
AS $$
DECLARE
    caller_scope text := current_setting('switchyard.tenant_id', true);
    r record;
BEGIN
    FOR r IN
        SELECT t.tenant, t.reply, t.provider_id, t.n
        FROM unnest(p_tenants, p_replies, p_provider_ids)
             WITH ORDINALITY AS t(tenant, reply, provider_id, n)
        ORDER BY t.tenant, t.reply, t.n
    LOOP
        PERFORM set_config('switchyard.tenant_id', r.tenant, true);
        UPDATE deliveries SET status = 'wired', wired_at = now(),
            provider_message_id = coalesce(r.provider_id, 'unconfirmed:' || reply_id),
            attempts = attempts + 1, lease_owner = NULL, lease_until = NULL
        WHERE tenant_id = r.tenant AND reply_id = r.reply;
        item := r.n;
        marked := FOUND;
        RETURN NEXT;
    END LOOP;
    PERFORM set_config('switchyard.tenant_id', coalesce(caller_scope, ''), true);
END
$$;
REVOKE ALL ON FUNCTION switchyard_mark_wired_batch(text[], text[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchyard_mark_wired_batch(text[], text[], text[]) TO switchyard_app;

-- `switchyard_turn_context` for many turns: each item's rows, at least one.
CREATE FUNCTION switchyard_turn_context_batch(
    p_tenants text[], p_chats text[], p_phones text[])
RETURNS TABLE (item int, conversation_exists boolean, last_menu jsonb, silenced boolean,
               touched_recently boolean,
               id bigint, role text, phone text, resource text, name text)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, public
AS $$
DECLARE
    caller_scope text := current_setting('switchyard.tenant_id', true);
    r record;
BEGIN
    FOR r IN
        SELECT t.tenant, t.chat, t.phone_number, t.n
        FROM unnest(p_tenants, p_chats, p_phones) WITH ORDINALITY AS t(tenant, chat, phone_number, n)
        ORDER BY t.n
    LOOP
        PERFORM set_config('switchyard.tenant_id', r.tenant, true);
        RETURN QUERY
            SELECT r.n::int, c.chat_id IS NOT NULL, c.last_menu,
                   coalesce(c.silenced_until > now(), false),
                   coalesce(c.last_inbound_at > now() - interval '1 hour', false),
                   k.id, k.role, k.phone, k.resource, k.name
            FROM (SELECT 1) AS one
            LEFT JOIN conversations c ON c.tenant_id = r.tenant AND c.chat_id = r.chat
            LEFT JOIN contacts k ON k.tenant_id = r.tenant AND k.phone = r.phone_number
            ORDER BY k.resource NULLS FIRST, k.id;
    END LOOP;
    PERFORM set_config('switchyard.tenant_id', coalesce(caller_scope, ''), true);
END
$$;
REVOKE ALL ON FUNCTION switchyard_turn_context_batch(text[], text[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchyard_turn_context_batch(text[], text[], text[]) TO switchyard_app;

-- `switchyard_record_turn` for many turns.
CREATE FUNCTION switchyard_record_turn_batch(p_tenants text[], p_chats text[], p_menus jsonb[])
RETURNS TABLE (item int)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, public
AS $$
DECLARE
    caller_scope text := current_setting('switchyard.tenant_id', true);
    r record;
BEGIN
    FOR r IN
        SELECT t.tenant, t.chat, t.menu, t.n
        FROM unnest(p_tenants, p_chats, p_menus) WITH ORDINALITY AS t(tenant, chat, menu, n)
        ORDER BY t.tenant, t.chat, t.n
    LOOP
        PERFORM set_config('switchyard.tenant_id', r.tenant, true);
        INSERT INTO conversations (tenant_id, chat_id, last_menu) VALUES (r.tenant, r.chat, r.menu)
        ON CONFLICT (tenant_id, chat_id) DO UPDATE SET last_inbound_at = now(),
            last_menu = coalesce(EXCLUDED.last_menu, conversations.last_menu);
        item := r.n;
        RETURN NEXT;
    END LOOP;
    PERFORM set_config('switchyard.tenant_id', coalesce(caller_scope, ''), true);
END
$$;
REVOKE ALL ON FUNCTION switchyard_record_turn_batch(text[], text[], jsonb[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchyard_record_turn_batch(text[], text[], jsonb[]) TO switchyard_app;
