//! One tenant's lane: a bounded in-memory queue in front of the tenant's own
//! durable spill lane.
//!
//! Order within a tenant is the stream's order: messages queued before the
//! lane started spilling come first, then the spilled ones (fetched in
//! order), and only once the spill lane is fully delivered does the lane take
//! direct messages again. The partition reader and the lane's consumer share
//! one lock per tenant, so the switch back to direct cannot race a spill.

use std::{
    collections::VecDeque,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream::{self, consumer::pull};
use tokio::sync::{Mutex, Notify};

use crate::{
    ids::TenantId,
    lanes::{LaneMessage, settings::LaneSettings, spill},
    metrics as m,
    subjects::Direction,
};

/// How often a lane with a spill backlog looks for spilled messages that
/// became fetchable (a spill is stored a little after it is sent).
const SPILL_POLL: Duration = Duration::from_millis(200);

/// What [`TenantLane::offer`] did with a message.
#[derive(Debug)]
pub enum Offered {
    /// Queued in memory (still unacked on its partition).
    Queued,
    /// Sent to the tenant's spill lane; finish it with [`TenantLane::finish_spill`].
    Spilling(Box<PendingSpill>),
}

/// A spill sent but not yet known to be stored.
pub struct PendingSpill {
    ack: jetstream::context::PublishAckFuture,
    message: LaneMessage,
}

impl std::fmt::Debug for PendingSpill {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingSpill")
            .field("message", &self.message)
            .finish()
    }
}

struct SpillState {
    consumer: Option<jetstream::consumer::Consumer<pull::Config>>,
    buffer: VecDeque<LaneMessage>,
}

struct LaneState {
    queue: VecDeque<LaneMessage>,
    /// `Some` while the tenant has a backlog in its spill lane.
    spilling: Option<SpillState>,
}

/// A tenant's in-process lane.
pub struct TenantLane {
    tenant: TenantId,
    direction: Direction,
    partition: u16,
    js: jetstream::Context,
    settings: LaneSettings,
    state: Mutex<LaneState>,
    notify: Notify,
    closed: AtomicBool,
    /// Spills sent but not yet stored: the lane may not go back to direct
    /// delivery while any is on its way (it would overtake them).
    spills_in_flight: AtomicUsize,
}

impl std::fmt::Debug for TenantLane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantLane")
            .field("tenant", &self.tenant)
            .field("partition", &self.partition)
            .finish()
    }
}

impl TenantLane {
    /// A lane for `tenant`; starts in spill mode when the tenant's spill lane
    /// holds a `backlog` (left by an earlier owner of the partition), which
    /// the caller found out ([`super::dispatch`]).
    pub(crate) fn open(
        tenant: TenantId,
        direction: Direction,
        partition: u16,
        js: jetstream::Context,
        settings: LaneSettings,
        backlog: bool,
    ) -> Arc<Self> {
        Arc::new(Self {
            tenant,
            direction,
            partition,
            js,
            settings,
            state: Mutex::new(LaneState {
                queue: VecDeque::new(),
                spilling: backlog.then(|| SpillState {
                    consumer: None,
                    buffer: VecDeque::new(),
                }),
            }),
            notify: Notify::new(),
            closed: AtomicBool::new(false),
            spills_in_flight: AtomicUsize::new(0),
        })
    }

    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    pub fn partition(&self) -> u16 {
        self.partition
    }

    /// The work this lane carries (the sender reads live and bulk lanes).
    pub fn direction(&self) -> Direction {
        self.direction
    }

    /// Whether the lane holds a spill backlog right now.
    pub async fn is_spilling(&self) -> bool {
        self.state.lock().await.spilling.is_some()
    }

    /// Switches a lane in direct delivery to its spill backlog, one that
    /// appeared after the lane opened (a spill of the partition's previous
    /// owner that was stored late). Messages already queued are delivered
    /// first. Returns whether the lane switched.
    pub(crate) async fn adopt_backlog(&self) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        let mut state = self.state.lock().await;
        if state.spilling.is_some() {
            return false;
        }
        state.spilling = Some(SpillState {
            consumer: None,
            buffer: VecDeque::new(),
        });
        drop(state);
        self.notify.notify_one();
        true
    }

    /// Messages waiting in memory (queued plus fetched from the spill lane).
    pub async fn in_memory(&self) -> usize {
        let state = self.state.lock().await;
        state.queue.len() + state.spilling.as_ref().map_or(0, |s| s.buffer.len())
    }

    /// Takes a message from the partition reader: queues it while there is
    /// room and no backlog, else spills it (and acks it on the partition once
    /// the spill is stored). On error the message was neither queued nor
    /// acked, and the caller should release it for redelivery.
    pub(crate) async fn offer(
        &self,
        message: LaneMessage,
    ) -> Result<Offered, (LaneMessage, async_nats::Error)> {
        let mut state = self.state.lock().await;
        if state.spilling.is_none() && state.queue.len() < self.settings.queue_bound {
            state.queue.push_back(message);
            drop(state);
            self.notify.notify_one();
            return Ok(Offered::Queued);
        }
        let ack = match spill::start_spill(&self.js, &message, self.partition).await {
            Ok(ack) => ack,
            Err(e) => return Err((message, e)),
        };
        self.spills_in_flight.fetch_add(1, Ordering::AcqRel);
        if state.spilling.is_none() {
            tracing::info!(tenant.id = %self.tenant, lane.direction = self.direction.as_str(), "tenant backlog passed the queue bound; spilling to its own lane");
            metrics::counter!(m::LANE_SPILL_STARTED, "direction" => self.direction.as_str())
                .increment(1);
            state.spilling = Some(SpillState {
                consumer: None,
                buffer: VecDeque::new(),
            });
        }
        drop(state);
        Ok(Offered::Spilling(Box::new(PendingSpill { ack, message })))
    }

    /// Waits until a spill is stored, then acks the original on its
    /// partition; if the spill failed, gives the original back for redelivery.
    pub(crate) async fn finish_spill(&self, pending: Box<PendingSpill>) {
        match pending.ack.await {
            Ok(_) => {
                pending.message.ack().await;
                metrics::counter!(m::LANE_SPILLED, "direction" => self.direction.as_str())
                    .increment(1);
            }
            Err(e) => {
                tracing::warn!(tenant.id = %self.tenant, error = %e, "spill not stored; message released for redelivery");
                pending.message.release(Duration::from_secs(1)).await;
            }
        }
        self.spills_in_flight.fetch_sub(1, Ordering::AcqRel);
        self.notify.notify_one();
    }

    /// The next message in order without waiting for new work; may fetch from
    /// the spill lane. `Ok(None)` means nothing is available right now.
    ///
    /// The message leaves the lane's keep-alive here, and its next holder
    /// checks it only a tick later: it is checked on the way out, so the
    /// hand-over adds no silence (with an `ack_wait` of 2 s the gaps of
    /// the lane, the chat queue and the turn once added up to the whole
    /// `ack_wait`, and a held turn was redelivered and run twice).
    pub async fn try_next(&self) -> Result<Option<LaneMessage>, async_nats::Error> {
        let message = self.pop_next().await?;
        if let Some(message) = &message {
            message.keep_alive().await;
        }
        Ok(message)
    }

    async fn pop_next(&self) -> Result<Option<LaneMessage>, async_nats::Error> {
        if self.closed.load(Ordering::Acquire) {
            return Ok(None);
        }
        let mut state = self.state.lock().await;
        if let Some(message) = state.queue.pop_front() {
            return Ok(Some(message));
        }
        let Some(spilling) = state.spilling.as_mut() else {
            return Ok(None);
        };
        if let Some(message) = spilling.buffer.pop_front() {
            return Ok(Some(message));
        }
        let consumer = match spilling.consumer.as_mut() {
            Some(c) => c,
            None => spilling.consumer.insert(
                spill::consumer(&self.js, self.direction, &self.tenant, &self.settings).await?,
            ),
        };
        let spacing = self.settings.keep_alive_after();
        let batch: Vec<LaneMessage> = spill::fetch(
            consumer,
            self.direction,
            &self.tenant,
            self.settings.queue_bound,
        )
        .await?
        .into_iter()
        .map(|m| m.with_keep_alive_after(spacing))
        .collect();
        if batch.is_empty() {
            if self.spills_in_flight.load(Ordering::Acquire) == 0
                && spill::fully_delivered(consumer).await?
            {
                tracing::info!(tenant.id = %self.tenant, lane.direction = self.direction.as_str(), "spill lane drained; back to direct delivery");
                state.spilling = None;
            }
            return Ok(None);
        }
        spilling.buffer.extend(batch);
        Ok(spilling.buffer.pop_front())
    }

    /// The next message in order, waiting for one; `None` once the lane is
    /// closed (its partition moved away or the service is stopping).
    pub async fn next(&self) -> Option<LaneMessage> {
        loop {
            if self.closed.load(Ordering::Acquire) {
                return None;
            }
            let notified = self.notify.notified();
            match self.try_next().await {
                Ok(Some(message)) => return Some(message),
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(tenant.id = %self.tenant, error = %e, "cannot read the spill lane; retrying");
                }
            }
            // A spilled backlog is polled; direct work wakes us through
            // notify (every change a waiter must see notifies: a message
            // queued or put back, a backlog adopted, a spill stored, the
            // lane closed). An idle lane in direct delivery therefore
            // sleeps until then: 1,000 idle lanes used to wake 5,000 times
            // a second between them (issue 20).
            if self.is_spilling().await {
                let _ = tokio::time::timeout(SPILL_POLL, notified).await;
            } else {
                notified.await;
            }
        }
    }

    /// Puts a message taken with [`TenantLane::try_next`] back at the head
    /// of the lane (a send that must wait), keeping the lane's order. It
    /// stays unacked and is kept alive like any queued message.
    pub async fn push_front(&self, message: LaneMessage) {
        if self.closed.load(Ordering::Acquire) {
            // The partition moved away: let its next owner have it.
            message.release(Duration::ZERO).await;
            return;
        }
        self.state.lock().await.queue.push_front(message);
        self.notify.notify_one();
    }

    /// Resets the redelivery timer of every message waiting in memory.
    pub(crate) async fn keep_alive(&self) {
        let state = self.state.lock().await;
        let spilled = state.spilling.iter().flat_map(|s| s.buffer.iter());
        for message in state.queue.iter().chain(spilled) {
            message.keep_alive().await;
        }
    }

    /// Closes the lane and gives every waiting message back for immediate
    /// redelivery, so the partition's next owner gets them first, in order.
    pub(crate) async fn close_and_release(&self) {
        self.closed.store(true, Ordering::Release);
        let mut state = self.state.lock().await;
        let mut released = 0usize;
        while let Some(message) = state.queue.pop_front() {
            message.release(Duration::ZERO).await;
            released += 1;
        }
        if let Some(spilling) = state.spilling.as_mut() {
            while let Some(message) = spilling.buffer.pop_front() {
                message.release(Duration::ZERO).await;
                released += 1;
            }
        }
        drop(state);
        self.notify.notify_waiters();
        if released > 0 {
            tracing::debug!(tenant.id = %self.tenant, released, "lane closed; waiting messages released");
        }
    }
}
