//! Idempotency keys `(tenant, event id)` in PostgreSQL, written by group commit.
//!
//! [`Keys::claim`] answers with a [`NextAction`]: the primary key of
//! `inbound_event_keys` decides who claims (`INSERT … ON CONFLICT DO NOTHING`),
//! never a check-then-insert. A key moves `claimed` → `published` only after
//! the JetStream ack, so a crash between the two leaves `claimed`, and the next
//! delivery publishes again under the same `Nats-Msg-Id` (the stream's
//! duplicate window absorbs the overlap).
//!
//! Claims from concurrent requests are queued to a writer that turns whatever
//! has accumulated into one statement (group commit: one round trip and one
//! WAL flush for many keys). PostgreSQL is a guard, not a gate: when it is
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

use sqlx::PgPool;
use switchyard_shared::ids::{EventId, TenantId};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::metrics;

/// How long claims bypass PostgreSQL after it failed or was too slow.
const COOLDOWN: Duration = Duration::from_secs(1);
/// Claims waiting for the writer; past this, requests go degraded at once.
const CLAIM_QUEUE: usize = 16 * 1024;
/// Statements the claim writer may have in flight at once (pipelining).
const CONCURRENT_FLUSHES: usize = 2;
/// Marks waiting for the writer; past this, marks are dropped (counted).
const MARK_QUEUE: usize = 64 * 1024;
/// Most keys one mark statement updates.
const MARK_BATCH: usize = 2048;

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
    /// PostgreSQL could not decide: publish anyway, and say so.
    Degraded(Degraded),
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

struct Key {
    tenant: String,
    event: String,
}

struct Claim {
    key: Key,
    reply: oneshot::Sender<NextAction>,
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
    /// Starts the claim and mark writers on `tasks`.
    pub fn start(pool: PgPool, timeout: Duration, max_batch: usize, tasks: &TaskTracker) -> Self {
        let (claims, claim_rx) = mpsc::channel(CLAIM_QUEUE);
        let (marks, mark_rx) = mpsc::channel(MARK_QUEUE);
        tasks.spawn(write_claims(
            pool.clone(),
            claim_rx,
            max_batch.max(1),
            tasks.clone(),
        ));
        tasks.spawn(write_marks(pool, mark_rx));
        Self {
            claims,
            marks,
            timeout,
            skip_until_ms: Arc::new(AtomicU64::new(0)),
            epoch: Instant::now(),
        }
    }

    /// Claims `(tenant, event)`; never takes longer than the configured bound.
    pub async fn claim(&self, tenant: &TenantId, event: &EventId) -> NextAction {
        if self.now_ms() < self.skip_until_ms.load(Ordering::Relaxed) {
            return NextAction::Degraded(Degraded::CoolingDown);
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
            return NextAction::Degraded(Degraded::Saturated);
        }
        let degraded = match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(action)) => return action,
            Ok(Err(_dropped)) => Degraded::Error,
            Err(_elapsed) => Degraded::Timeout,
        };
        self.skip_until_ms.store(
            self.now_ms() + COOLDOWN.as_millis() as u64,
            Ordering::Relaxed,
        );
        NextAction::Degraded(degraded)
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
            metrics::mark_dropped();
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }
}

/// One statement per batch: insert what is new, report the state of the rest.
/// Keys are inserted in sorted order so two concurrent batches cannot deadlock
/// on each other's uncommitted inserts. The data-modifying CTE's rows are not
/// visible to the outer join, which is why `fresh` comes from `RETURNING`; a
/// key committed by another replica after this statement's snapshot shows as
/// neither fresh nor known, and is treated as claimed elsewhere (republish).
const CLAIM_SQL: &str = r#"
WITH input AS (
    SELECT tenant_id, event_id, n
    FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(tenant_id, event_id, n)
), fresh AS (
    INSERT INTO inbound_event_keys (tenant_id, event_id)
    SELECT tenant_id, event_id FROM input ORDER BY tenant_id, event_id
    ON CONFLICT (tenant_id, event_id) DO NOTHING
    RETURNING tenant_id, event_id
)
SELECT input.n, fresh.event_id IS NOT NULL AS fresh, known.state
FROM input
LEFT JOIN fresh USING (tenant_id, event_id)
LEFT JOIN inbound_event_keys known USING (tenant_id, event_id)
"#;

/// An upsert, not an update: a claim that timed out (the event was published
/// degraded) may still be waiting on a lock and commit after its mark ran;
/// the mark then writes the key as published and the late claim finds it so.
/// Sorted like the claims, so the two writers cannot deadlock.
const MARK_SQL: &str = r#"
INSERT INTO inbound_event_keys AS k (tenant_id, event_id, state, published_at)
SELECT DISTINCT tenant_id, event_id, 'published', now()
FROM unnest($1::text[], $2::text[]) AS t(tenant_id, event_id)
ORDER BY tenant_id, event_id
ON CONFLICT (tenant_id, event_id) DO UPDATE
SET state = 'published', published_at = now()
WHERE k.state = 'claimed'
"#;

async fn write_claims(
    pool: PgPool,
    mut queue: mpsc::Receiver<Claim>,
    max_batch: usize,
    tasks: TaskTracker,
) {
    let flushes = Arc::new(Semaphore::new(CONCURRENT_FLUSHES));
    let mut batch = Vec::with_capacity(max_batch);
    loop {
        // Wait for a free flush slot first: while both are busy, claims pile
        // up in the queue and the next statement takes them all at once.
        let Ok(permit) = flushes.clone().acquire_owned().await else {
            return;
        };
        if queue.recv_many(&mut batch, max_batch).await == 0 {
            return;
        }
        let claims = std::mem::replace(&mut batch, Vec::with_capacity(max_batch));
        let pool = pool.clone();
        tasks.spawn(async move {
            flush_claims(&pool, claims).await;
            drop(permit);
        });
    }
}

async fn flush_claims(pool: &PgPool, claims: Vec<Claim>) {
    metrics::claim_batch(claims.len());
    let (tenants, events): (Vec<&str>, Vec<&str>) = claims
        .iter()
        .map(|c| (c.key.tenant.as_str(), c.key.event.as_str()))
        .unzip();
    let rows = match claim_batch(pool, &tenants, &events).await {
        Ok(rows) => rows,
        Err(e) => {
            // Dropping the reply senders tells every waiter "degraded: error".
            tracing::warn!(error = %e, db.batch = claims.len(), "idempotency claim failed; publishing without claims");
            return;
        }
    };
    let mut actions = vec![NextAction::Republish; claims.len()];
    for (n, fresh, state) in rows {
        let Some(slot) = usize::try_from(n - 1).ok().and_then(|i| actions.get_mut(i)) else {
            continue;
        };
        *slot = match (fresh, state.as_deref()) {
            (true, _) => NextAction::Publish,
            (false, Some("published")) => NextAction::AlreadyPublished,
            (false, _) => NextAction::Republish,
        };
    }
    for (claim, action) in claims.into_iter().zip(actions) {
        // The requester may have stopped waiting (timeout): nothing to do then.
        let _ = claim.reply.send(action);
    }
}

/// Claims in a transaction that does not wait for its WAL flush. What the
/// claim protects is already guarded twice more (the stream's duplicate
/// window and the sender's delivery ledger), and what it answers is durable
/// in JetStream before the 200, so a PostgreSQL crash that forgets the last
/// few hundred milliseconds of claims costs nothing but the first guard for
/// those keys; the disk's fsync tail, which every request used to wait for,
/// leaves the request path.
async fn claim_batch(
    pool: &PgPool,
    tenants: &[&str],
    events: &[&str],
) -> Result<Vec<(i64, bool, Option<String>)>, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    let rows = sqlx::query_as(CLAIM_SQL)
        .bind(tenants)
        .bind(events)
        .fetch_all(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(rows)
}

async fn write_marks(pool: PgPool, mut queue: mpsc::Receiver<Key>) {
    let mut batch = Vec::with_capacity(MARK_BATCH);
    while queue.recv_many(&mut batch, MARK_BATCH).await > 0 {
        let (tenants, events): (Vec<&str>, Vec<&str>) = batch
            .iter()
            .map(|k| (k.tenant.as_str(), k.event.as_str()))
            .unzip();
        let result = mark_batch(&pool, &tenants, &events).await;
        if let Err(e) = result {
            // The keys stay 'claimed': a redelivery republishes, deduplicated.
            tracing::warn!(error = %e, db.batch = batch.len(), "marking keys published failed");
        }
        batch.clear();
    }
}

/// Marks in a transaction that does not wait for its WAL flush: a mark lost
/// to a PostgreSQL crash leaves the key 'claimed', which costs at most a
/// deduplicated republish, so it is not worth an fsync on the hot path.
async fn mark_batch(pool: &PgPool, tenants: &[&str], events: &[&str]) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET LOCAL synchronous_commit = off")
        .execute(&mut *tx)
        .await?;
    sqlx::query(MARK_SQL)
        .bind(tenants)
        .bind(events)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}
