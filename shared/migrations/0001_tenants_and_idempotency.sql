-- Tenants: the single source of truth for who exists, which bridge is theirs,
-- and how much of the fleet they may use. id = the bridge's customer_ref.
CREATE TABLE tenants (
    id                   text PRIMARY KEY CHECK (id ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    display_name         text        NOT NULL DEFAULT '',
    status               text        NOT NULL DEFAULT 'active'
                                     CHECK (status IN ('active', 'suspended')),
    bridge_id            bigint      UNIQUE CHECK (bridge_id > 0),
    bridge_state         text        NOT NULL DEFAULT 'unprovisioned'
                                     CHECK (length(bridge_state) BETWEEN 1 AND 64),
    bridge_state_at      timestamptz,
    weight               integer     NOT NULL DEFAULT 1 CHECK (weight BETWEEN 1 AND 1000),
    sends_per_minute     integer     NOT NULL DEFAULT 60 CHECK (sends_per_minute BETWEEN 1 AND 100000),
    send_burst           integer     NOT NULL DEFAULT 10 CHECK (send_burst BETWEEN 1 AND 10000),
    max_in_flight        integer     NOT NULL DEFAULT 4 CHECK (max_in_flight BETWEEN 1 AND 1000),
    bot_kind             text        NOT NULL DEFAULT 'rules' CHECK (bot_kind IN ('rules', 'http', 'echo')),
    bot_config           jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now()
);

-- Ingest's idempotency keys: (tenant, event id) decided by the primary key,
-- never by a check-then-insert. 'claimed' = key written, publish not yet acked;
-- 'published' = durable in JetStream. A claimed key is republished on the next
-- delivery (JetStream's duplicate window absorbs the overlap). No foreign key to
-- tenants: unknown tenants are dropped downstream, by the router, with a count.
CREATE TABLE inbound_event_keys (
    tenant_id    text        NOT NULL,
    event_id     text        NOT NULL,
    state        text        NOT NULL DEFAULT 'claimed' CHECK (state IN ('claimed', 'published')),
    claimed_at   timestamptz NOT NULL DEFAULT now(),
    published_at timestamptz,
    PRIMARY KEY (tenant_id, event_id)
);

CREATE INDEX inbound_event_keys_claimed_at ON inbound_event_keys (claimed_at);
