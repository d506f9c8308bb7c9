-- Send leases on the delivery ledger (docs/architecture.md, invariant 5).
--
-- lease_owner / lease_until  the sender instance whose attempt at this reply
--                     part is under way, and until when that claim holds. A
--                     row with a live lease of another owner is not sent: an
--                     attempt is running elsewhere. NULL = no attempt under
--                     way, or the last one ended with a known outcome (wired,
--                     refused, dead). An owner that died mid-send leaves its
--                     lease to expire; a timed-out call leaves it expired at
--                     once: in both cases the outcome is unknown (the send
--                     may have gone out), and whoever takes the row next
--                     looks for the echo below before sending again.
-- echo_message_id     the provider id of a `from_me` echo that arrived in this
--                     chat, not matching any recorded send, while an attempt
--                     of this row was under way or in doubt: evidence that the
--                     attempt reached the phone. Recorded by the router's echo
--                     check (deliveries::echo_origin), read when an in-doubt
--                     row is taken over.
--
-- The table-wide grants of 0003 (SELECT, INSERT, UPDATE to switchyard_app)
-- and its tenant_isolation policy cover the new columns.
ALTER TABLE deliveries
    ADD COLUMN lease_owner     text CHECK (length(lease_owner) BETWEEN 1 AND 200),
    ADD COLUMN lease_until     timestamptz,
    ADD COLUMN echo_message_id text CHECK (length(echo_message_id) BETWEEN 1 AND 300),
    ADD CONSTRAINT deliveries_lease_complete
        CHECK ((lease_owner IS NULL) = (lease_until IS NULL));
