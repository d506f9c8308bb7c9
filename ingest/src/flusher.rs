//! The outbox flusher: publishes the events that waited in the outbox, in
//! the order they were received per tenant, under the `Nats-Msg-Id` they
//! would have had, then deletes them and marks their keys `published`.
//!
//! Every ingest replica runs one. A tenant is flushed by one replica at a
//! time, under a lease (`inbound_outbox_leases`, taken and renewed in one
//! upsert whose condition is re-checked under the row lock, so two replicas
//! never both win it): the holder reads the tenant's oldest events
//! (`received_at_ms`, then insertion order), publishes them one after
//! another, each awaiting its ack, and deletes what was acked in one
//! statement that also moves the keys to `published`. A lease not renewed
//! (its replica died) is taken over when it expires; a replica stops a batch
//! at half its lease, so it never publishes a tenant's events beside a
//! successor. Nothing is held open while publishing: the lease is a row,
//! not a transaction or a connection.
//!
//! A crash between the ack and the delete leaves rows that are published
//! again on the next round: the stream's duplicate window (2 min by default)
//! drops them. The flusher also counts the outbox (every
//! `SWITCHYARD_OUTBOX_POLL`) for the caps, the depth gauge and the tenants
//! whose new events must queue behind their outboxed ones.

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use backon::{BackoffBuilder as _, ExponentialBuilder};
use bytes::Bytes;
use futures::{StreamExt as _, stream};
use sqlx::{PgPool, Row as _};
use switchyard_shared::{ids::TenantId, trace_context::TraceContext};
use tokio_util::sync::CancellationToken;

use crate::{
    metrics as m,
    outbox::Outbox,
    publish::{InboundMessage, Published, Publisher},
};

/// Tenants leased per round.
const TENANTS_PER_ROUND: i64 = 16;
/// Tenants flushed at once.
const CONCURRENCY: usize = 8;
/// Events of one tenant read and published per round.
const BATCH: i64 = 256;
/// Longest pause after failed rounds: how late, at worst, flushing resumes
/// once JetStream is back.
const MAX_PAUSE: Duration = Duration::from_secs(2);
/// Bound on every statement of the flusher.
const STATEMENT_BOUND: Duration = Duration::from_secs(10);

/// Takes (or renews) the leases of up to `$3` tenants with events waiting,
/// oldest first, skipping tenants another replica holds. Locks in tenant
/// order so two replicas cannot deadlock.
const LEASE_SQL: &str = r#"
INSERT INTO inbound_outbox_leases AS l (tenant_id, owner, leased_until)
SELECT tenant_id, $1, now() + make_interval(secs => $2)
FROM (
    SELECT o.tenant_id, min(o.seq) AS oldest
    FROM inbound_outbox o
    WHERE NOT EXISTS (
        SELECT 1 FROM inbound_outbox_leases x
        WHERE x.tenant_id = o.tenant_id AND x.owner <> $1 AND x.leased_until > now()
    )
    GROUP BY o.tenant_id
    ORDER BY oldest
    LIMIT $3
) waiting
ORDER BY tenant_id
ON CONFLICT (tenant_id) DO UPDATE
SET owner = excluded.owner, leased_until = excluded.leased_until
WHERE l.owner = excluded.owner OR l.leased_until <= now()
RETURNING tenant_id
"#;

const READ_SQL: &str = r#"
SELECT seq, event_id, payload, received_at_ms, traceparent
FROM inbound_outbox
WHERE tenant_id = $1
ORDER BY received_at_ms, seq
LIMIT $2
"#;

/// Deletes the published rows and marks their keys, in one statement (keys
/// in sorted order, like every key writer).
const DONE_SQL: &str = r#"
WITH gone AS (
    DELETE FROM inbound_outbox WHERE tenant_id = $1 AND seq = ANY($2::bigint[])
    RETURNING tenant_id, event_id
)
INSERT INTO inbound_event_keys AS k (tenant_id, event_id, state, published_at)
SELECT tenant_id, event_id, 'published', now() FROM gone ORDER BY tenant_id, event_id
ON CONFLICT (tenant_id, event_id) DO UPDATE SET state = 'published', published_at = now()
WHERE k.state <> 'published'
"#;

const RELEASE_SQL: &str = "DELETE FROM inbound_outbox_leases WHERE tenant_id = $1 AND owner = $2";
const RELEASE_ALL_SQL: &str = "DELETE FROM inbound_outbox_leases WHERE owner = $1";
const COUNT_SQL: &str = "SELECT tenant_id, count(*) FROM inbound_outbox GROUP BY tenant_id";
/// Leases left by replicas that died, of tenants with nothing waiting.
const FORGET_LEASES_SQL: &str = r#"
DELETE FROM inbound_outbox_leases l
WHERE leased_until < now()
  AND NOT EXISTS (SELECT 1 FROM inbound_outbox o WHERE o.tenant_id = l.tenant_id)
"#;

/// How the flusher runs (from ingest's settings).
#[derive(Debug, Clone, Copy)]
pub struct FlushPolicy {
    /// How often the outbox is counted, and looked at when this replica has
    /// written nothing.
    pub poll: Duration,
    /// How long a tenant stays with one replica without a renewal.
    pub lease: Duration,
}

/// What one round achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Round {
    /// Events were published.
    Progress,
    /// Nothing to lease (empty, or every waiting tenant held elsewhere).
    Idle,
    /// A publish or a statement failed: wait before the next round.
    Failed,
}

/// One replica's flusher.
#[derive(Debug)]
pub struct Flusher {
    db: PgPool,
    publisher: Publisher,
    outbox: Outbox,
    policy: FlushPolicy,
    /// This replica's name in the leases table.
    owner: String,
}

impl Flusher {
    pub fn new(db: PgPool, publisher: Publisher, outbox: Outbox, policy: FlushPolicy) -> Self {
        Self {
            db,
            publisher,
            outbox,
            policy,
            owner: format!("ingest-{:016x}", rand::random::<u64>()),
        }
    }

    /// Flushes until `shutdown`, then gives its leases back.
    pub async fn run(self, shutdown: CancellationToken) {
        let mut last_count: Option<Instant> = None;
        let mut database_up = true;
        let mut backoff = pauses();
        loop {
            if shutdown.is_cancelled() {
                break;
            }
            if last_count.is_none_or(|at| at.elapsed() >= self.policy.poll) {
                last_count = Some(Instant::now());
                let counted = self.count().await;
                if counted != database_up {
                    database_up = counted;
                    if counted {
                        tracing::info!("outbox flusher reaches PostgreSQL again");
                    }
                }
            }
            let waiting = self.outbox.with_depth(|d| d.total() > 0);
            let round = if !waiting {
                Round::Idle
            } else if !self.publisher.is_connected() {
                Round::Failed
            } else {
                self.round(&shutdown).await
            };
            let pause = match round {
                Round::Progress => {
                    backoff = pauses();
                    continue;
                }
                Round::Idle => {
                    backoff = pauses();
                    // Woken early when this replica outboxes something.
                    tokio::select! {
                        () = shutdown.cancelled() => break,
                        () = self.outbox.written() => continue,
                        () = tokio::time::sleep(self.until_next_count(last_count)) => continue,
                    }
                }
                Round::Failed => backoff.next().unwrap_or(MAX_PAUSE),
            };
            tokio::select! {
                () = shutdown.cancelled() => break,
                () = tokio::time::sleep(pause) => {}
            }
        }
        let released = tokio::time::timeout(
            STATEMENT_BOUND,
            sqlx::query(RELEASE_ALL_SQL)
                .bind(&self.owner)
                .execute(&self.db),
        )
        .await;
        if !matches!(released, Ok(Ok(_))) {
            tracing::info!("outbox leases not released on shutdown; they expire by themselves");
        }
    }

    fn until_next_count(&self, last_count: Option<Instant>) -> Duration {
        last_count.map_or(Duration::ZERO, |at| {
            self.policy.poll.saturating_sub(at.elapsed())
        })
    }

    /// Counts the outbox per tenant into the depth estimate and the gauges;
    /// forgets leases of dead replicas. Returns whether PostgreSQL answered.
    async fn count(&self) -> bool {
        self.outbox.with_depth(|d| d.count_started());
        let counted = tokio::time::timeout(
            STATEMENT_BOUND,
            sqlx::query_as::<_, (String, i64)>(COUNT_SQL).fetch_all(&self.db),
        )
        .await;
        let rows = match counted {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "cannot count the outbox");
                return false;
            }
            Err(_) => return false,
        };
        let counts: HashMap<String, u64> = rows
            .into_iter()
            .map(|(tenant, n)| (tenant, u64::try_from(n).unwrap_or(0)))
            .collect();
        let (total, tenants) = self.outbox.with_depth(|d| {
            d.count_ended(counts);
            (d.total(), d.tenants())
        });
        m::outbox_depth(total, tenants);
        let _ = tokio::time::timeout(
            STATEMENT_BOUND,
            sqlx::query(FORGET_LEASES_SQL).execute(&self.db),
        )
        .await;
        true
    }

    /// Leases tenants and flushes one batch of each.
    async fn round(&self, shutdown: &CancellationToken) -> Round {
        let leased = tokio::time::timeout(
            STATEMENT_BOUND,
            sqlx::query_scalar::<_, String>(LEASE_SQL)
                .bind(&self.owner)
                .bind(self.policy.lease.as_secs_f64())
                .bind(TENANTS_PER_ROUND)
                .fetch_all(&self.db),
        )
        .await;
        let tenants = match leased {
            Ok(Ok(tenants)) => tenants,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "cannot lease outbox tenants");
                m::outbox_flush_failed("database");
                return Round::Failed;
            }
            Err(_) => {
                m::outbox_flush_failed("database");
                return Round::Failed;
            }
        };
        if tenants.is_empty() {
            return Round::Idle;
        }
        let outcomes: Vec<Round> = stream::iter(tenants)
            .map(|tenant| self.flush_tenant(tenant, shutdown))
            .buffer_unordered(CONCURRENCY)
            .collect()
            .await;
        if outcomes.contains(&Round::Failed) {
            Round::Failed
        } else if outcomes.contains(&Round::Progress) {
            Round::Progress
        } else {
            Round::Idle
        }
    }

    /// Publishes the oldest waiting events of one leased tenant, in order,
    /// stopping at the first failure (or at shutdown, after deleting what
    /// was published).
    async fn flush_tenant(&self, raw_tenant: String, shutdown: &CancellationToken) -> Round {
        let started = Instant::now();
        let Ok(tenant) = TenantId::parse(&raw_tenant) else {
            // The table's CHECK makes this impossible; never publish it.
            tracing::error!(tenant.raw = ?raw_tenant, "outbox row with an invalid tenant id left alone");
            return Round::Failed;
        };
        let read = tokio::time::timeout(
            STATEMENT_BOUND,
            sqlx::query(READ_SQL)
                .bind(tenant.as_str())
                .bind(BATCH)
                .fetch_all(&self.db),
        )
        .await;
        let rows = match read {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                tracing::warn!(tenant.id = %tenant, error = %e, "cannot read the outbox");
                m::outbox_flush_failed("database");
                return Round::Failed;
            }
            Err(_) => {
                m::outbox_flush_failed("database");
                return Round::Failed;
            }
        };
        let mut done: Vec<i64> = Vec::with_capacity(rows.len());
        let mut failed = false;
        for row in &rows {
            // Never publish beside a replica that may take the lease over.
            if started.elapsed() >= self.policy.lease / 2 || shutdown.is_cancelled() {
                break;
            }
            let (Ok(seq), Ok(event_id), Ok(payload), Ok(received_at_ms), Ok(traceparent)) = (
                row.try_get::<i64, _>(0),
                row.try_get::<String, _>(1),
                row.try_get::<Vec<u8>, _>(2),
                row.try_get::<i64, _>(3),
                row.try_get::<String, _>(4),
            ) else {
                failed = true;
                break;
            };
            let message = InboundMessage::from_outbox(
                tenant.clone(),
                event_id,
                Bytes::from(payload),
                received_at_ms,
                TraceContext::from_stored(traceparent),
            );
            match self.publisher.publish(&message, || false).await {
                Ok(published) => {
                    m::outbox_flushed(published == Published::Duplicate);
                    done.push(seq);
                }
                Err(failure) => {
                    tracing::warn!(
                        tenant.id = %tenant,
                        event.id = message.event_id(),
                        error = %failure,
                        "outboxed event not published yet; will retry"
                    );
                    m::outbox_flush_failed("publish");
                    failed = true;
                    break;
                }
            }
        }
        if !done.is_empty() {
            let deleted = tokio::time::timeout(
                STATEMENT_BOUND,
                sqlx::query(DONE_SQL)
                    .bind(tenant.as_str())
                    .bind(&done)
                    .execute(&self.db),
            )
            .await;
            match deleted {
                Ok(Ok(_)) => self
                    .outbox
                    .with_depth(|d| d.flushed(tenant.as_str(), done.len() as u64)),
                other => {
                    // Published but still there: the next round publishes
                    // them again, and the duplicate window drops them.
                    if let Ok(Err(e)) = other {
                        tracing::warn!(tenant.id = %tenant, error = %e, "cannot delete flushed outbox rows");
                    }
                    m::outbox_flush_failed("database");
                    return Round::Failed;
                }
            }
        }
        let drained = !failed && done.len() == rows.len() && (rows.len() as i64) < BATCH;
        // Otherwise the lease stays: renewed next round, or given back at
        // shutdown, or left to expire if this replica dies.
        if drained {
            let _ = tokio::time::timeout(
                STATEMENT_BOUND,
                sqlx::query(RELEASE_SQL)
                    .bind(tenant.as_str())
                    .bind(&self.owner)
                    .execute(&self.db),
            )
            .await;
        }
        if failed {
            Round::Failed
        } else if done.is_empty() {
            Round::Idle
        } else {
            Round::Progress
        }
    }
}

/// Pauses after failed rounds: 100 ms doubling to [`MAX_PAUSE`], with jitter.
fn pauses() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(MAX_PAUSE)
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}
