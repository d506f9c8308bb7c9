-- The customer-service window of a Cloud API chat (issue 22 point 6,
-- docs/cloud-api.md section 7): Meta lets a business send free-form
-- messages to a user only within 24 hours of that user's last message.
-- One row per (tenant, chat): when the customer last wrote, from Meta's own
-- message `timestamp` (not the time we received it: a delivery Meta retried
-- for hours must not reopen a window that is closed). The router records it
-- for every Cloud message it handles; the sender reads it before a free-form
-- send and dead-letters the reply (`window_closed`) without a call once the
-- window has closed.
--
-- A table of its own rather than a column of `conversations`: a
-- conversation row is created only by a turn that got through, and its
-- `last_inbound_at` is the time we handled the message.
CREATE TABLE cloud_windows (
    tenant_id        text        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    chat_id          text        NOT NULL CHECK (length(chat_id) BETWEEN 1 AND 256),
    -- Meta's `timestamp` of the newest message of this chat seen so far; an
    -- older message handled later (retries, replays) never moves it back.
    last_inbound_at  timestamptz NOT NULL,
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, chat_id)
);

-- The router writes it, the sender reads it (tenant-scoped, under RLS);
-- nothing for ingest.
GRANT SELECT, INSERT, UPDATE ON cloud_windows TO switchyard_app;

ALTER TABLE cloud_windows ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON cloud_windows
    USING (tenant_id = current_setting('switchyard.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('switchyard.tenant_id', true));

-- Chats of Cloud tenants answered before this table existed: their last
-- handled message is the best approximation there is, so replies already in
-- the outbound stream at the upgrade are not refused for want of a row.
INSERT INTO cloud_windows (tenant_id, chat_id, last_inbound_at)
SELECT c.tenant_id, c.chat_id, c.last_inbound_at
  FROM conversations c JOIN tenants t ON t.id = c.tenant_id
 WHERE t.channel = 'cloud_api';
