-- The sender's delivery ledger: one row per reply part, keyed by (tenant,
-- reply id). Checked before a send and written after it, so a redelivered
-- reply is not sent again. 'sending' = an attempt may be under way (a crash
-- between the provider's answer and the update below is the documented
-- double-send window); 'wired' = the provider accepted it (handed to the
-- bridge, not necessarily delivered to the phone); 'dead' = dead-lettered.
-- provider_message_id lets the router recognise our own echoes.
CREATE TABLE deliveries (
    tenant_id            text        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    reply_id             text        NOT NULL CHECK (length(reply_id) BETWEEN 1 AND 300),
    chat_id              text        NOT NULL,
    status               text        NOT NULL DEFAULT 'sending'
                                     CHECK (status IN ('sending', 'wired', 'dead')),
    attempts             integer     NOT NULL DEFAULT 0,
    provider_message_id  text,
    first_attempt_at     timestamptz NOT NULL DEFAULT now(),
    last_attempt_at      timestamptz NOT NULL DEFAULT now(),
    wired_at             timestamptz,
    last_error           text,
    PRIMARY KEY (tenant_id, reply_id)
);

CREATE UNIQUE INDEX deliveries_provider_message_id
    ON deliveries (tenant_id, provider_message_id) WHERE provider_message_id IS NOT NULL;

GRANT SELECT, INSERT, UPDATE ON deliveries TO switchyard_app;

ALTER TABLE deliveries ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON deliveries
    USING (tenant_id = current_setting('switchyard.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('switchyard.tenant_id', true));
