//! A message taken from a tenant's lane, wherever it came from (a partition
//! consumer or the tenant's spill lane), with what a handler needs: the tenant
//! (from the subject, never the payload), the payload and headers, and how
//! often it was delivered. Its fields are read-only: only the lanes build one,
//! from the stored message, so the tenant cannot be swapped on the way.

use std::{
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, Instant},
};

use async_nats::{HeaderMap, jetstream::AckKind};
use bytes::Bytes;

use crate::{ids::TenantId, metrics as m, subjects::Direction};

/// Header that keeps a message's original subject when it is spilled or dead-lettered.
pub const HEADER_ORIGINAL_SUBJECT: &str = "Switchyard-Original-Subject";

/// Header that records, on a spilled message, the work partition it was read
/// from, so a replica that gains the partition can find the backlog
/// ([`super::spill::backlog_partition`]).
pub const HEADER_PARTITION: &str = "Switchyard-Partition";

/// How often a message that is held (gathered, being handled, waiting for an
/// in-place retry) is kept alive: well below the smallest `ack_wait` allowed,
/// so a slow bot or provider call never gets its message redelivered meanwhile.
pub const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(1);

/// How long after its last contact with the server (its delivery, or its
/// last progress ack) a held message needs a progress ack, for a consumer
/// whose `ack_wait` is `ack_wait`: a third of it, and at least 3 s short of
/// it (`0`, every [`KEEP_ALIVE_EVERY`], for an `ack_wait` of 3 s or less).
/// The holders tick every [`KEEP_ALIVE_EVERY`] and skip messages not yet due,
/// so the longest silence is this plus one tick: at the default 5 s, a
/// progress ack at most every 2.7 s instead of every second (issue 20: a
/// held backlog cost one NATS message per held message per second), with
/// 2.3 s to spare before a redelivery.
pub fn keep_alive_spacing(ack_wait: Duration) -> Duration {
    ack_wait
        .saturating_sub(Duration::from_secs(3))
        .min(ack_wait / 3)
}

/// One unit of a tenant's work.
pub struct LaneMessage {
    tenant: TenantId,
    direction: Direction,
    subject: String,
    payload: Bytes,
    headers: HeaderMap,
    delivered: u32,
    message_id: String,
    jetstream: async_nats::jetstream::Message,
    /// When this copy was taken from the server (its delivery).
    taken_at: Instant,
    /// When the server stored it (its clock), if the delivery said.
    stored_at: Option<time::OffsetDateTime>,
    /// Whether this is the first delivery of a copy read straight from its
    /// work stream (not a redelivery, not a spilled copy).
    fresh: bool,
    /// Milliseconds after `taken_at` of the last progress ack sent.
    last_contact_ms: AtomicU64,
    /// [`keep_alive_spacing`] of its consumer's `ack_wait` (zero: every tick).
    keep_alive_after: Duration,
}

impl std::fmt::Debug for LaneMessage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaneMessage")
            .field("tenant", &self.tenant)
            .field("subject", &self.subject)
            .field("message_id", &self.message_id)
            .field("delivered", &self.delivered)
            .finish()
    }
}

impl LaneMessage {
    /// Wraps a JetStream message whose tenant was taken from its subject.
    /// The lanes build these; the sender's FIFO baseline reads a plain consumer.
    pub fn new(
        tenant: TenantId,
        direction: Direction,
        jetstream: async_nats::jetstream::Message,
    ) -> Self {
        let headers = jetstream.headers.clone().unwrap_or_default();
        let (delivered, sequence, stored_at, from_work_stream) = jetstream
            .info()
            .map(|i| {
                (
                    u32::try_from(i.delivered).unwrap_or(u32::MAX),
                    i.stream_sequence,
                    Some(i.published),
                    i.stream == direction.stream(),
                )
            })
            .unwrap_or((1, 0, None, false));
        let message_id = headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_else(|| format!("{}:{sequence}", direction.stream()));
        let subject = headers
            .get(HEADER_ORIGINAL_SUBJECT)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_else(|| crate::subjects::work(direction, &tenant));
        Self {
            tenant,
            direction,
            subject,
            payload: jetstream.payload.clone(),
            headers,
            delivered,
            message_id,
            jetstream,
            taken_at: Instant::now(),
            stored_at,
            fresh: delivered == 1 && from_work_stream,
            last_contact_ms: AtomicU64::new(0),
            keep_alive_after: Duration::ZERO,
        }
    }

    /// Keeps the message alive only every `spacing` (see
    /// [`keep_alive_spacing`]); the lanes set it from their `ack_wait`.
    pub fn with_keep_alive_after(mut self, spacing: Duration) -> Self {
        self.keep_alive_after = spacing;
        self
    }

    /// Records its age now (see [`m::LANE_MESSAGE_AGE_SECONDS`]): `at` is
    /// `taken` or `handled`.
    pub fn record_age(&self, at: &'static str) {
        let Some(age) = self.age() else {
            return;
        };
        metrics::histogram!(m::LANE_MESSAGE_AGE_SECONDS, "direction" => self.direction.as_str(), "at" => at)
            .record(age.as_secs_f64());
    }

    /// Time since the server stored it (0 if the server's clock is ahead),
    /// if the delivery said when.
    fn age(&self) -> Option<Duration> {
        let stored_at = self.stored_at?;
        let age = (time::OffsetDateTime::now_utc() - stored_at).as_seconds_f64();
        Some(Duration::try_from_secs_f64(age.max(0.0)).unwrap_or(Duration::MAX))
    }

    /// Its age, for a first delivery read straight from its work stream:
    /// how long the shared path (the server, the partition reader, the
    /// tenant's lane) took to bring it here. `None` for a redelivery or a
    /// spilled copy, whose age says how long a fault or a backlog held it.
    pub fn fresh_age(&self) -> Option<Duration> {
        if self.fresh { self.age() } else { None }
    }

    /// The tenant, taken from the stored subject (never from the payload).
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// The work stream it came from.
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// The plain per-tenant subject the publisher used (`inbound.<tenant>`).
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// The body exactly as published.
    pub fn payload(&self) -> &Bytes {
        &self.payload
    }

    /// Every header, as published.
    pub fn headers(&self) -> &HeaderMap {
        &self.headers
    }

    /// JetStream deliveries of this copy (a crash-looping message climbs here).
    pub fn delivered(&self) -> u32 {
        self.delivered
    }

    /// Stable id: the publisher's `Nats-Msg-Id`, else the stream sequence.
    pub fn message_id(&self) -> &str {
        &self.message_id
    }

    /// A header's value, if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.as_str())
    }

    /// Marks the message done, waiting at most [`ACK_CONFIRM_WAIT`] for the
    /// server to confirm. Errors are logged: an unacked message is
    /// redelivered, which downstream idempotency absorbs.
    pub async fn ack(&self) {
        match tokio::time::timeout(ACK_CONFIRM_WAIT, self.jetstream.double_ack()).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(tenant.id = %self.tenant, message.id = %self.message_id, error = %e, "ack failed; the message will be redelivered");
            }
            Err(_) => {
                metrics::counter!(m::LANE_ACK_UNCONFIRMED).increment(1);
                tracing::debug!(tenant.id = %self.tenant, message.id = %self.message_id, "ack not confirmed in time; it may still land, else the message is redelivered");
            }
        }
    }

    /// Marks the message done without waiting for the server to confirm:
    /// one message and one wake-up fewer than [`Self::ack`], and the caller's
    /// next step does not wait. A lost ack is redelivered either way (a
    /// confirmation that does not come is counted, not re-sent), so this is
    /// for the per-event paths whose redelivery is absorbed downstream: the
    /// sender's delivered reply (its ledger row says it went out: answered
    /// "already sent") and the router's finished turn (the same reply ids,
    /// deduplicated by JetStream and the ledger). The rarer paths (spills,
    /// notifications, the sender's other outcomes) keep [`Self::ack`], whose
    /// wait also tells the log and `switchyard_lane_ack_unconfirmed_total`
    /// when an ack may not have landed.
    pub async fn ack_unconfirmed(&self) {
        if let Err(e) = self.jetstream.ack().await {
            tracing::debug!(tenant.id = %self.tenant, message.id = %self.message_id, error = %e, "ack not sent; the message will be redelivered");
        }
    }

    /// Resets the redelivery timer of a message that is waiting or being
    /// retried, once [`Self::with_keep_alive_after`]'s spacing has passed
    /// since its delivery or its last progress ack (holders call this every
    /// [`KEEP_ALIVE_EVERY`]).
    pub async fn keep_alive(&self) {
        let now_ms = u64::try_from(self.taken_at.elapsed().as_millis()).unwrap_or(u64::MAX);
        let last_ms = self.last_contact_ms.load(Ordering::Relaxed);
        if !keep_alive_due(now_ms.saturating_sub(last_ms), self.keep_alive_after) {
            return;
        }
        self.last_contact_ms.store(now_ms, Ordering::Relaxed);
        let _ = self.jetstream.ack_with(AckKind::Progress).await;
    }

    /// Ends the message for good (after it has been dead-lettered).
    pub async fn terminate(&self) {
        if let Err(e) = self.jetstream.ack_with(AckKind::Term).await {
            tracing::warn!(tenant.id = %self.tenant, message.id = %self.message_id, error = %e, "terminate failed");
        }
    }

    /// Gives the message back for redelivery after `delay` (shutdown, hand-over).
    pub async fn release(&self, delay: Duration) {
        let _ = self.jetstream.ack_with(AckKind::Nak(Some(delay))).await;
    }
}

impl AsRef<LaneMessage> for LaneMessage {
    fn as_ref(&self) -> &LaneMessage {
        self
    }
}

/// How long [`LaneMessage::ack`] waits for the server's confirmation. The
/// caller's next step waits with it (a chat's next message, in order), so
/// while a consumer has no leader (a NATS node lost, an election of 4–9 s)
/// the client's 10 s request timeout kept a chat waiting up to 10 s after
/// the new leader was there (issue 16's chaos runs: replies 17 s after the
/// kill). A healthy confirmation takes a millisecond or two; an ack that is
/// not confirmed may still land, and if it does not the message comes back
/// after `ack_wait`, as after any lost ack.
pub const ACK_CONFIRM_WAIT: Duration = Duration::from_millis(500);

/// Runs `work` while keeping `messages` alive every [`KEEP_ALIVE_EVERY`], so
/// a slow bot, provider call or our own infrastructure's trouble never gets
/// them redelivered meanwhile (router turns, sender deliveries).
pub async fn keep_alive_during<M: AsRef<LaneMessage>, F: Future>(
    messages: &[M],
    work: F,
) -> F::Output {
    let mut work = std::pin::pin!(work);
    // The first tick is at once: a message handed over from another holder
    // (a chat queue, a gathered burst) may have been silent for up to a
    // tick already, and waiting a whole tick more could reach `ack_wait`.
    // A check costs nothing unless the message is due.
    let mut tick = tokio::time::interval(KEEP_ALIVE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => {
                for message in messages {
                    message.as_ref().keep_alive().await;
                }
            }
        }
    }
}

/// Whether a message silent for `silent_ms` needs a progress ack at `spacing`.
fn keep_alive_due(silent_ms: u64, spacing: Duration) -> bool {
    u128::from(silent_ms) >= spacing.as_millis()
}

#[cfg(test)]
mod keep_alive_tests {
    use super::*;

    #[test]
    fn the_spacing_leaves_a_second_to_spare_before_a_redelivery() {
        for secs in [2, 3, 4, 5, 10, 30, 120] {
            let ack_wait = Duration::from_secs(secs);
            let spacing = keep_alive_spacing(ack_wait);
            // Longest silence: the spacing, then up to one holder tick.
            let longest = spacing + KEEP_ALIVE_EVERY;
            assert!(
                longest + Duration::from_secs(1) <= ack_wait,
                "ack_wait {ack_wait:?}: silent up to {longest:?}"
            );
        }
        assert_eq!(keep_alive_spacing(Duration::from_secs(2)), Duration::ZERO);
        assert_eq!(keep_alive_spacing(Duration::from_secs(3)), Duration::ZERO);
        assert_eq!(
            keep_alive_spacing(Duration::from_secs(5)),
            Duration::from_secs(5) / 3
        );
        assert_eq!(
            keep_alive_spacing(Duration::from_secs(30)),
            Duration::from_secs(10)
        );
    }

    #[test]
    fn a_message_is_kept_alive_once_its_spacing_has_passed() {
        let spacing = Duration::from_millis(1666);
        assert!(!keep_alive_due(0, spacing));
        assert!(!keep_alive_due(1000, spacing));
        assert!(keep_alive_due(1666, spacing));
        assert!(keep_alive_due(2000, spacing));
        assert!(keep_alive_due(0, Duration::ZERO), "no spacing: every tick");
    }
}
