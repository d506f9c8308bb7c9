-- One ledger statement for the sender: the claims of new reply parts (before
-- their sends) and the marks of accepted sends (after them) that are in
-- flight at once share one statement and one commit, where 0018 gave each
-- its own (issue 20: at 500 events/s a batch of either holds about two
-- items, so the sender paid two commits, two round trips and two function
-- calls per event; the commit is the claim's wait either way).
--
-- Each item is a claim (`switchyard_claim_new`) or a mark
-- (`switchyard_mark_wired`), per `p_marks`; the columns the other kind does
-- not use are null. As in 0018, each item runs under its own tenant's scope
-- (row-level security per row, every statement also filtered by the
-- tenant), items are taken in (tenant, reply) order so two batches that
-- share rows lock them in the same order, the answers name their item by
-- its position (`item`, from 1; `done`: the claim created the row, the mark
-- found it), and the caller's scope is put back before the function
-- returns. 0018's two functions stay for senders of the previous release
-- during a rolling deploy.
CREATE FUNCTION switchyard_ledger_batch(
    p_marks boolean[], p_tenants text[], p_replies text[], p_chats text[], p_owners text[],
    p_lease_s float8[], p_provider_ids text[])
RETURNS TABLE (item int, done boolean)
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, public
AS $$
DECLARE
    caller_scope text := current_setting('switchyard.tenant_id', true);
    r record;
BEGIN
    FOR r IN
        SELECT t.mark, t.tenant, t.reply, t.chat, t.owner, t.lease_s, t.provider_id, t.n
        FROM unnest(p_marks, p_tenants, p_replies, p_chats, p_owners, p_lease_s, p_provider_ids)
             WITH ORDINALITY AS t(mark, tenant, reply, chat, owner, lease_s, provider_id, n)
        ORDER BY t.tenant, t.reply, t.n
    LOOP
        PERFORM set_config('switchyard.tenant_id', r.tenant, true);
        IF r.mark THEN
            UPDATE deliveries SET status = 'wired', wired_at = now(),
                provider_message_id = coalesce(r.provider_id, 'unconfirmed:' || reply_id),
                attempts = attempts + 1, lease_owner = NULL, lease_until = NULL
            WHERE tenant_id = r.tenant AND reply_id = r.reply;
        ELSE
            INSERT INTO deliveries (tenant_id, reply_id, chat_id, lease_owner, lease_until)
            VALUES (r.tenant, r.reply, r.chat, r.owner, now() + make_interval(secs => r.lease_s))
            ON CONFLICT (tenant_id, reply_id) DO NOTHING;
        END IF;
        item := r.n;
        done := FOUND;
        RETURN NEXT;
    END LOOP;
    PERFORM set_config('switchyard.tenant_id', coalesce(caller_scope, ''), true);
END
$$;
REVOKE ALL ON FUNCTION switchyard_ledger_batch(
    boolean[], text[], text[], text[], text[], float8[], text[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION switchyard_ledger_batch(
    boolean[], text[], text[], text[], text[], float8[], text[]) TO switchyard_app;
