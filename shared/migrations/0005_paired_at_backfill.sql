-- Warm-up of newly paired numbers (docs/whatsapp.md): the router records
-- paired_at on a number's first `connected` (only while it is NULL), and the
-- sender gives a number lower limits for its first days after that instant.
--
-- Without this backfill, every number that was already paired before 0004
-- would meet its next `connected` (linked devices reconnect about every 30
-- minutes) with paired_at NULL and be put into warm-up as if it were new.
-- A tenant whose bridge has ever reported a state was paired at some point
-- after its creation; bridge_state_at is only the latest report (a flap), so
-- the creation is the best lower bound we have: a number that really is only
-- a few days old stays in warm-up for its remaining days, old ones are left
-- alone. Tenants never seen connected or disconnected stay NULL and get their
-- paired_at from their first `connected`.
UPDATE tenants
   SET paired_at = created_at
 WHERE paired_at IS NULL
   AND bridge_state IN ('connected', 'disconnected');
