-- Cloud API message templates (issue 22 point 5, docs/cloud-api.md
-- section 8): Meta lets a business start a conversation, or answer once the
-- customer-service window has closed, only with a template it approved.
-- One row per (tenant, name, language), as Meta keys them. Operators add
-- them with `switchyard tenants cloud templates add` (submitted to Meta with
-- the tenant's own token); Meta's review moves `status` by the
-- `message_template_status_update` webhook (the router) and by a listing
-- (`templates sync`).
CREATE TABLE cloud_templates (
    tenant_id        text        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    -- Meta's rule for names.
    name             text        NOT NULL CHECK (name ~ '^[a-z0-9_]+$' AND length(name) <= 512),
    -- `en`, `en_US`, `zh_HK`, `es_419`: a language with an optional region.
    language         text        NOT NULL CHECK (language ~ '^[a-z]{2,3}(_[A-Za-z0-9]{2,4})?$'),
    category         text        NOT NULL CHECK (category IN ('MARKETING', 'UTILITY', 'AUTHENTICATION')),
    -- Meta's `components` array as submitted (HEADER, BODY, FOOTER, BUTTONS).
    components       jsonb       NOT NULL CHECK (jsonb_typeof(components) = 'array'
                                                 AND pg_column_size(components) <= 65536),
    -- The placeholders of the body and of a text header, counted from
    -- `components` when the row is written: what a send must fill.
    body_params      integer     NOT NULL CHECK (body_params BETWEEN 0 AND 100),
    header_params    integer     NOT NULL CHECK (header_params BETWEEN 0 AND 1),
    -- Meta's vocabulary, kept as text so that a value Meta adds later is
    -- recorded rather than refused (APPROVED, PENDING, REJECTED, PAUSED,
    -- DISABLED, IN_APPEAL, …).
    status           text        NOT NULL CHECK (status ~ '^[A-Z_]{1,32}$'),
    meta_id          text        CHECK (meta_id ~ '^[A-Za-z0-9_.-]{1,64}$'),
    rejection_reason text        CHECK (length(rejection_reason) <= 300),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, name, language)
);

-- The sender reads a tenant's templates; the router records what Meta's
-- webhook says of them (a template is never created from a webhook). The
-- operator CLI writes them as the owner. Nothing for ingest.
GRANT SELECT, UPDATE (status, rejection_reason, meta_id, updated_at)
    ON cloud_templates TO switchyard_app;

ALTER TABLE cloud_templates ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON cloud_templates
    USING (tenant_id = current_setting('switchyard.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('switchyard.tenant_id', true));

-- The tenant's fallback template: what a reply becomes once the chat's
-- customer-service window has closed (docs/cloud-api.md section 7). Both
-- columns or neither; it must be one of the tenant's templates, and
-- removing that template clears the choice.
ALTER TABLE cloud_channels
    ADD COLUMN fallback_template_name     text,
    ADD COLUMN fallback_template_language text,
    ADD CONSTRAINT cloud_channels_fallback_both
        CHECK ((fallback_template_name IS NULL) = (fallback_template_language IS NULL)),
    ADD CONSTRAINT cloud_channels_fallback_template
        FOREIGN KEY (tenant_id, fallback_template_name, fallback_template_language)
        REFERENCES cloud_templates (tenant_id, name, language)
        ON DELETE SET NULL (fallback_template_name, fallback_template_language);

-- When the fallback template was last sent to a chat, and for which reply:
-- it goes at most once per chat per closed window (a later reply to the
-- same chat, before the customer writes again, is dead-lettered). The
-- sender claims the row before its call (a retry of the same reply keeps
-- its claim) and gives it back when the call certainly sent nothing.
CREATE TABLE cloud_fallback_sends (
    tenant_id  text        NOT NULL REFERENCES tenants (id) ON DELETE CASCADE,
    chat_id    text        NOT NULL CHECK (length(chat_id) BETWEEN 1 AND 256),
    reply_id   text        NOT NULL CHECK (length(reply_id) BETWEEN 1 AND 256),
    sent_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, chat_id)
);

GRANT SELECT, INSERT, UPDATE, DELETE ON cloud_fallback_sends TO switchyard_app;

ALTER TABLE cloud_fallback_sends ENABLE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON cloud_fallback_sends
    USING (tenant_id = current_setting('switchyard.tenant_id', true))
    WITH CHECK (tenant_id = current_setting('switchyard.tenant_id', true));
