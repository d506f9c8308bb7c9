-- WhatsApp-native behaviour, per tenant (docs/whatsapp.md explains every
-- default and why). Typed columns with CHECK constraints, so a bad value can
-- never reach the sender or the router.
--
-- min_send_gap_ms     minimum time between two sends on the tenant's bridge,
--                     plus up to half of it again as jitter; 0 = off. Off by
--                     default so the migration does not change how existing
--                     tenants send; a newly paired number is paced anyway by
--                     the warm-up below.
-- contact_hourly_cap  most sends to one chat per rolling hour; 0 = no cap.
-- takeover_minutes    how long the bot stays silent in a chat after a person
--                     answered from the phone; 0 = never silent.
-- debounce_ms         gather a chat's burst for this long into one bot turn; 0 = off.
-- bulk_share_percent  most of the fleet budget bulk (replays) may take.
-- paired_at           when the number was paired (first `connected`); drives
--                     the warm-up of a new number. NULL = unknown (no warm-up).
ALTER TABLE tenants
    ADD COLUMN min_send_gap_ms    integer NOT NULL DEFAULT 0
        CHECK (min_send_gap_ms BETWEEN 0 AND 600000),
    ADD COLUMN contact_hourly_cap integer NOT NULL DEFAULT 0
        CHECK (contact_hourly_cap BETWEEN 0 AND 10000),
    ADD COLUMN takeover_minutes   integer NOT NULL DEFAULT 30
        CHECK (takeover_minutes BETWEEN 0 AND 10080),
    ADD COLUMN debounce_ms        integer NOT NULL DEFAULT 0
        CHECK (debounce_ms BETWEEN 0 AND 10000),
    ADD COLUMN bulk_share_percent integer NOT NULL DEFAULT 50
        CHECK (bulk_share_percent BETWEEN 1 AND 100),
    ADD COLUMN paired_at          timestamptz;

-- The router records paired_at on a number's first `connected`.
GRANT UPDATE (paired_at) ON tenants TO switchyard_app;

-- "Has this chat a send under way?" (an echo that overtakes its own send's
-- answer) and "how many sends to this chat in the last hour?" (contact cap).
CREATE INDEX deliveries_chat_recent
    ON deliveries (tenant_id, chat_id, last_attempt_at);
