//! Idempotency keys `(tenant, event id)` in PostgreSQL, written by group commit.
//!
//! [`Keys::claim`] answers with a [`NextAction`]: the primary key of
//! `inbound_event_keys` decides who claims (`INSERT … ON CONFLICT DO NOTHING`),
//! never a check-then-insert. A key moves `claimed` → `published` only after
//! the JetStream ack, so a crash between the two leaves `claimed`, and the next
//! delivery publishes again under the same `Nats-Msg-Id` (the stream's
//! duplicate window absorbs the overlap).
//!
//! A key whose event JetStream could not take is `outboxed`: the event waits
//! in `inbound_outbox` (see [`crate::outbox`]) and a repeated delivery is a
//! duplicate. The claim also says whether the tenant has such events waiting.
//!
//! Claims from concurrent requests are queued to writers that turn whatever
//! has accumulated into one statement (group commit: one round trip for many
//! keys; see [`crate::key_writer`]). PostgreSQL is a guard, not a gate: when it is
//! down, slower than the configured bound, or the queue is full, the claim
//! reports [`NextAction::Degraded`] and the caller publishes anyway, so an
//! outage never loses an event; the JetStream duplicate window and the
//! downstream ledger remain the guard. After a failure the writer is skipped
//! for a short cooldown so an outage does not cost every request the full bound.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::postgres::PgConnectOptions;
use switchyard_shared::ids::{EventId, TenantId};
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::{
    key_writer::{self, Claim, Key},
    metrics as m,
};

/// How long claims bypass PostgreSQL after it failed or was too slow.
const COOLDOWN: Duration = Duration::from_secs(1);
/// Claims waiting for the writer; past this, requests go degraded at once.
const CLAIM_QUEUE: usize = 16 * 1024;
/// Claim statements in flight at once, each on its own connection: while they
/// run, the next batch accumulates.
const CLAIM_FLUSH_SLOTS: usize = 2;
/// Marks waiting for the writer; past this, marks are dropped (counted).
const MARK_QUEUE: usize = 64 * 1024;
/// Most keys one mark statement updates.
const MARK_BATCH: usize = 2048;
/// How long the mark writer gathers marks before writing them.
const MARK_LINGER: Duration = Duration::from_millis(100);

/// How claims are written (from ingest's settings).
#[derive(Debug, Clone, Copy)]
pub struct ClaimPolicy {
    /// Past this, a claim is skipped and the event published anyway.
    pub timeout: Duration,
    /// Most keys one statement writes.
    pub max_batch: usize,
    /// How long a flush slot keeps gathering claims after the first one,
    /// while claims arrive faster than one per statement.
    pub linger: Duration,
}

/// What to do with a delivery after its claim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NextAction {
    /// This delivery claimed the key: publish it.
    Publish,
    /// Claimed earlier but not known to be published (an in-flight delivery
    /// elsewhere, or a crash between claim and ack): publish too, under the
    /// same message id; never answer 200 before the event is durable.
    Republish,
    /// Already durable in JetStream: answer 200, publish nothing.
    AlreadyPublished,
    /// Already durable in the outbox (JetStream could not take it; the
    /// flusher will): answer 200, publish nothing.
    AlreadyOutboxed,
    /// PostgreSQL could not decide: publish anyway, and say so.
    Degraded(Degraded),
}

/// A claim's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claimed {
    pub next: NextAction,
    /// Whether the tenant had events in the outbox when the claim ran;
    /// `None` when PostgreSQL could not say (degraded).
    pub tenant_backlog: Option<bool>,
}

impl Claimed {
    fn degraded(why: Degraded) -> Self {
        Self {
            next: NextAction::Degraded(why),
            tenant_backlog: None,
        }
    }
}

/// Why the claim was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Degraded {
    /// No answer within the configured bound.
    Timeout,
    /// The statement failed (connection refused, pool closed, …).
    Error,
    /// The claim queue is full.
    Saturated,
    /// A recent failure: PostgreSQL is skipped for a short cooldown.
    CoolingDown,
}

impl Degraded {
    pub fn as_str(self) -> &'static str {
        match self {
            Degraded::Timeout => "timeout",
            Degraded::Error => "error",
            Degraded::Saturated => "saturated",
            Degraded::CoolingDown => "cooling_down",
        }
    }
}

/// Handle to the key writers; cheap to clone. The writers stop, after writing
/// what is queued, once every handle is dropped.
#[derive(Clone)]
pub struct Keys {
    claims: mpsc::Sender<Claim>,
    marks: mpsc::Sender<Key>,
    timeout: Duration,
    /// Milliseconds since `epoch` before which claims bypass PostgreSQL.
    skip_until_ms: Arc<AtomicU64>,
    epoch: Instant,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keys")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

impl Keys {
    /// Starts the claim and mark writers on `tasks`. They open their own
    /// connections ([`key_writer::connect_options`] of `database`: one per claim
    /// slot plus one for marks), lazily, so ingest starts while PostgreSQL is down.
    pub fn start(database: &PgConnectOptions, policy: ClaimPolicy, tasks: &TaskTracker) -> Self {
        let options = key_writer::connect_options(database);
        let (claims, claim_rx) = mpsc::channel(CLAIM_QUEUE);
        let claim_rx = Arc::new(Mutex::new(claim_rx));
        for _ in 0..CLAIM_FLUSH_SLOTS {
            tasks.spawn(key_writer::write_claims(
                options.clone(),
                Arc::clone(&claim_rx),
                policy.max_batch.max(1),
                policy.linger,
            ));
        }
        let (marks, mark_rx) = mpsc::channel(MARK_QUEUE);
        tasks.spawn(key_writer::write_marks(
            options,
            mark_rx,
            MARK_BATCH,
            MARK_LINGER,
        ));
        Self {
            claims,
            marks,
            timeout: policy.timeout,
            skip_until_ms: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        }
    }

    /// Claims `(tenant, event)`; never takes longer than the configured bound.
    pub async fn claim(&self, tenant: &TenantId, event: &EventId) -> Claimed {
        if self.now_ms() < self.skip_until_ms.load(Ordering::Relaxed) {
            return Claimed::degraded(Degraded::CoolingDown);
        }
        let (reply, answer) = oneshot::channel();
        let claim = Claim {
            key: Key {
                tenant: tenant.as_str().to_owned(),
                event: event.as_str().to_owned(),
            },
            reply,
        };
        if self.claims.try_send(claim).is_err() {
            return Claimed::degraded(Degraded::Saturated);
        }
        let queued = Instant::now();
        let degraded = match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(action)) => {
                m::claim_latency(queued.elapsed());
                return action;
            }
            Ok(Err(_dropped)) => Degraded::Error,
            Err(_elapsed) => Degraded::Timeout,
        };
        self.skip_until_ms.store(
            self.now_ms() + COOLDOWN.as_millis() as u64,
            Ordering::Relaxed,
        );
        Claimed::degraded(degraded)
    }

    /// Records that `(tenant, event)` is durable in JetStream. Best effort and
    /// asynchronous: a lost mark leaves the key `claimed`, which only costs a
    /// deduplicated republish if the event is delivered again.
    pub fn mark_published(&self, tenant: &TenantId, event: &EventId) {
        let key = Key {
            tenant: tenant.as_str().to_owned(),
            event: event.as_str().to_owned(),
        };
        if self.marks.try_send(key).is_err() {
            m::mark_dropped();
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}
