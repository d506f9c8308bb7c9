//! The outbox: where an event goes when JetStream cannot take it, so that
//! ingest can still answer 200 (the provider never retries: a refused event
//! is gone). A row of `inbound_outbox` holds the body and what the headers
//! are made of; the idempotency key of the event becomes `outboxed` in the
//! same statement, so a repeated delivery is answered as a duplicate. The
//! [`crate::flusher`] publishes the rows later, under the same `Nats-Msg-Id`.
//!
//! **Written with synchronous commit.** The key writers commit without
//! waiting for the WAL flush because everything they answer 200 for is
//! already in JetStream; an outboxed event is in PostgreSQL *only*, so its
//! commit must be on disk before the 200: a PostgreSQL crash must not forget
//! it. The writer's connection is opened with `synchronous_commit=on` (not
//! `local`: with a synchronous standby configured the row also survives a
//! fail-over), whatever the server's or the role's default. Its WAL record
//! comes after the (asynchronous) claim of the same key, and a flush covers
//! everything before it, so the claim is on disk too.
//!
//! **Group commit**, like the keys: one writer with a connection of its
//! own (`application_name = switchyard-ingest-outbox`) takes everything queued
//! and writes it as one statement, so one fsync serves a whole batch during
//! an outage, when every event comes this way. One writer per replica also
//! keeps one replica's rows of a tenant in the order they were queued.
//!
//! **Bounded.** `SWITCHYARD_OUTBOX_MAX_EVENTS` rows in all and
//! `SWITCHYARD_OUTBOX_MAX_PER_TENANT` per tenant; past either, the event is
//! refused (and answered 503 unless JetStream takes it). The depth is known
//! from the flusher's count (every `SWITCHYARD_OUTBOX_POLL`) plus what this
//! replica wrote since and has in flight: never less than the truth for one
//! replica; replicas see each other's writes at the next count, so a fleet
//! may exceed a cap by what the others wrote within one poll.
//!
//! **Never a 503 that is then processed.** A request gives up waiting after
//! `SWITCHYARD_OUTBOX_WRITE_TIMEOUT`; the writer skips an event whose
//! request has given up before its statement starts, and the statement is
//! bounded by the same time (`statement_timeout`). An event whose statement
//! was already running when its request gave up may still commit: it is
//! then published although the caller got 503; those are counted
//! (`switchyard_ingest_unavailable_uncertain_total`).

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use sqlx::postgres::{PgConnectOptions, PgRow};
use switchyard_shared::ids::TenantId;
use tokio::sync::{Notify, mpsc, oneshot};
use tokio_util::task::TaskTracker;

use crate::{key_writer::WriterConnection, metrics as m, publish::InboundMessage};

/// Events waiting for the writer; past this, an event is refused at once.
const WRITE_QUEUE: usize = 16 * 1024;
/// Most events one statement writes.
const WRITE_BATCH: usize = 256;
/// Shown in `pg_stat_activity`.
const APPLICATION_NAME: &str = "switchyard-ingest-outbox";

/// Keep the event in a row and the key `outboxed`, unless the key says the
/// event is durable already (`published`, or `outboxed` by another
/// delivery): then nothing is written and the delivery is a duplicate. Keys
/// in sorted order, like the key writers, so concurrent statements cannot
/// deadlock; rows in the order they were queued, which the identity column
/// records.
const OUTBOX_SQL: &str = r#"
WITH input AS (
    SELECT tenant_id, event_id, payload, received_at_ms, traceparent, n
    FROM unnest($1::text[], $2::text[], $3::bytea[], $4::bigint[], $5::text[])
        WITH ORDINALITY AS t(tenant_id, event_id, payload, received_at_ms, traceparent, n)
), keyed AS (
    INSERT INTO inbound_event_keys AS k (tenant_id, event_id, state)
    SELECT tenant_id, event_id, 'outboxed' FROM input ORDER BY tenant_id, event_id
    ON CONFLICT (tenant_id, event_id) DO UPDATE SET state = 'outboxed'
    WHERE k.state = 'claimed'
    RETURNING tenant_id, event_id
), stored AS (
    INSERT INTO inbound_outbox (tenant_id, event_id, payload, received_at_ms, traceparent)
    SELECT input.tenant_id, input.event_id, input.payload, input.received_at_ms, input.traceparent
    FROM input JOIN keyed USING (tenant_id, event_id)
    ORDER BY input.n
    ON CONFLICT (tenant_id, event_id) DO NOTHING
    RETURNING tenant_id, event_id
)
SELECT input.n, stored.event_id IS NOT NULL AS stored
FROM input LEFT JOIN stored USING (tenant_id, event_id)
"#;

/// The outbox's limits (from ingest's settings).
#[derive(Debug, Clone, Copy)]
pub struct OutboxPolicy {
    /// Most events in the outbox (fleet-wide); 0 turns the outbox off.
    pub max_events: u64,
    /// Most events of one tenant in the outbox.
    pub max_per_tenant: u64,
    /// Longest a request waits for its event to be written.
    pub write_timeout: Duration,
}

/// How a write ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// The event is in the outbox now.
    New,
    /// The event was durable already (published, or outboxed by another delivery).
    Duplicate,
}

/// Why the outbox did not take an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the outbox is turned off (SWITCHYARD_OUTBOX_MAX_EVENTS=0)")]
    Disabled,
    #[error("the outbox holds SWITCHYARD_OUTBOX_MAX_EVENTS events")]
    Full,
    #[error("the outbox holds SWITCHYARD_OUTBOX_MAX_PER_TENANT events of this tenant")]
    TenantFull,
    #[error("the outbox writer's queue is full")]
    Saturated,
    #[error("no answer from PostgreSQL within SWITCHYARD_OUTBOX_WRITE_TIMEOUT")]
    Timeout,
    #[error("PostgreSQL did not take the write")]
    Error,
}

impl Refused {
    pub fn as_str(self) -> &'static str {
        match self {
            Refused::Disabled => "disabled",
            Refused::Full => "full",
            Refused::TenantFull => "tenant_full",
            Refused::Saturated => "saturated",
            Refused::Timeout => "timeout",
            Refused::Error => "error",
        }
    }
}

/// A refusal, and whether the event may be in the outbox all the same (its
/// statement was running when the request gave up).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NotStored {
    pub why: Refused,
    pub may_be_stored: bool,
}

impl From<Refused> for NotStored {
    fn from(why: Refused) -> Self {
        Self {
            why,
            may_be_stored: false,
        }
    }
}

/// An event waiting for the writer.
struct Write {
    message: InboundMessage,
    /// Past this the request no longer waits: the writer skips the event.
    deadline: Instant,
    /// Set by the writer when the event goes into a statement.
    taken: Arc<AtomicBool>,
    reply: oneshot::Sender<Result<Stored, Refused>>,
}

/// Handle to the outbox writer and the depth this replica knows; cheap to
/// clone. The writer stops, after writing what is queued, once every handle
/// is dropped.
#[derive(Clone)]
pub struct Outbox {
    writes: mpsc::Sender<Write>,
    policy: OutboxPolicy,
    depth: Arc<Mutex<Depth>>,
    written: Arc<Notify>,
}

impl std::fmt::Debug for Outbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbox")
            .field("policy", &self.policy)
            .finish_non_exhaustive()
    }
}

impl Outbox {
    /// Starts the writer on `tasks`; it connects lazily, on its first batch.
    pub fn start(database: &PgConnectOptions, policy: OutboxPolicy, tasks: &TaskTracker) -> Self {
        let (writes, queue) = mpsc::channel(WRITE_QUEUE);
        let depth = Arc::new(Mutex::new(Depth::default()));
        let written = Arc::new(Notify::new());
        tasks.spawn(write_events(
            connect_options(database, policy.write_timeout),
            queue,
            Arc::clone(&depth),
            Arc::clone(&written),
        ));
        Self {
            writes,
            policy,
            depth,
            written,
        }
    }

    pub fn enabled(&self) -> bool {
        self.policy.max_events > 0
    }

    /// Whether this replica knows of events of `tenant` in the outbox (its
    /// last count, plus what it wrote since). Used when the claim could not
    /// tell, and before a publish is retried.
    pub fn has_backlog(&self, tenant: &TenantId) -> bool {
        self.with_depth(|d| d.tenant(tenant.as_str()) > 0)
    }

    /// Keeps `message` in the outbox, durably, or says why not. Never waits
    /// longer than the write timeout.
    pub async fn store(&self, message: &InboundMessage) -> Result<Stored, NotStored> {
        if !self.enabled() {
            return Err(Refused::Disabled.into());
        }
        let tenant = message.tenant().as_str().to_owned();
        self.with_depth(|d| d.reserve(&tenant, &self.policy))?;
        let (reply, answer) = oneshot::channel();
        let taken = Arc::new(AtomicBool::new(false));
        let started = Instant::now();
        let write = Write {
            message: message.clone(),
            deadline: started + self.policy.write_timeout,
            taken: Arc::clone(&taken),
            reply,
        };
        if self.writes.try_send(write).is_err() {
            self.with_depth(|d| d.settle(&tenant, false));
            return Err(Refused::Saturated.into());
        }
        // The writer settles the reservation: it alone knows whether a
        // statement that outlived this wait committed.
        match tokio::time::timeout(self.policy.write_timeout, answer).await {
            Ok(Ok(Ok(stored))) => {
                m::outbox_write_latency(started.elapsed());
                Ok(stored)
            }
            Ok(Ok(Err(why))) => Err(why.into()),
            Ok(Err(_dropped)) => Err(Refused::Error.into()),
            Err(_elapsed) => Err(NotStored {
                why: Refused::Timeout,
                may_be_stored: taken.load(Ordering::Acquire),
            }),
        }
    }

    /// Waits until this replica's writer has stored something.
    pub(crate) async fn written(&self) {
        self.written.notified().await;
    }

    pub(crate) fn with_depth<T>(&self, f: impl FnOnce(&mut Depth) -> T) -> T {
        let mut depth = self.depth.lock().unwrap_or_else(|poisoned| {
            // The counts are estimates; a panic elsewhere does not make them unusable.
            poisoned.into_inner()
        });
        f(&mut depth)
    }
}

/// The writer's connection: the service's database, commits that wait for
/// their WAL flush, statements bounded like the requests that wait for them.
pub fn connect_options(service_db: &PgConnectOptions, bound: Duration) -> PgConnectOptions {
    let statement_timeout = format!("{}ms", bound.as_millis().max(1));
    service_db
        .clone()
        .application_name(APPLICATION_NAME)
        .options([
            ("synchronous_commit", "on"),
            ("statement_timeout", statement_timeout.as_str()),
        ])
}

/// The writer: everything queued, as one statement. Returns once every
/// handle is dropped and the queue drained.
async fn write_events(
    options: PgConnectOptions,
    mut queue: mpsc::Receiver<Write>,
    depth: Arc<Mutex<Depth>>,
    written: Arc<Notify>,
) {
    let mut connection = WriterConnection::new(options);
    let mut batch = Vec::with_capacity(WRITE_BATCH);
    while switchyard_shared::group_commit::gather(
        &mut queue,
        &mut batch,
        WRITE_BATCH,
        Duration::ZERO,
    )
    .await
        > 0
    {
        let outcomes = write_batch(&mut connection, &mut batch).await;
        let mut stored_any = false;
        {
            let mut depth = depth.lock().unwrap_or_else(|p| p.into_inner());
            for (write, outcome) in batch.drain(..).zip(outcomes) {
                let tenant = write.message.tenant().as_str();
                let new = outcome == Ok(Stored::New);
                depth.settle(tenant, new);
                stored_any |= new;
                if write.reply.send(outcome).is_err() && new {
                    // Its request gave up (503) or went away, and the event
                    // will be published all the same.
                    tracing::warn!(
                        tenant.id = %tenant,
                        event.id = write.message.event_id(),
                        "event outboxed after its request stopped waiting"
                    );
                }
            }
        }
        if stored_any {
            written.notify_one();
        }
    }
    connection.close().await;
}

/// Writes the events still waited for; returns one outcome per event of
/// `batch`, in order.
async fn write_batch(
    connection: &mut WriterConnection,
    batch: &mut [Write],
) -> Vec<Result<Stored, Refused>> {
    let now = Instant::now();
    let mut outcomes: Vec<Result<Stored, Refused>> = vec![Err(Refused::Timeout); batch.len()];
    // The first write of each key; a repeat in the same batch (it cannot
    // happen: deliveries of one event in flight share one outcome) follows it.
    let mut first: HashMap<(&str, &str), usize> = HashMap::new();
    let mut rows: Vec<usize> = Vec::new();
    let mut repeats: Vec<(usize, usize)> = Vec::new();
    for (i, write) in batch.iter().enumerate() {
        if write.deadline <= now || write.reply.is_closed() {
            continue; // the request gave up: never store what was refused
        }
        let key = (write.message.tenant().as_str(), write.message.event_id());
        match first.get(&key) {
            Some(&j) => repeats.push((i, j)),
            None => {
                first.insert(key, i);
                rows.push(i);
            }
        }
    }
    if rows.is_empty() {
        return outcomes;
    }
    for &i in &rows {
        batch[i].taken.store(true, Ordering::Release);
    }
    m::outbox_batch(rows.len());
    let pick = |f: &dyn Fn(&InboundMessage) -> String| -> Vec<String> {
        rows.iter().map(|&i| f(&batch[i].message)).collect()
    };
    let tenants = pick(&|m| m.tenant().as_str().to_owned());
    let events = pick(&|m| m.event_id().to_owned());
    let traceparents = pick(&|m| m.trace().as_str().to_owned());
    let payloads: Vec<Vec<u8>> = rows
        .iter()
        .map(|&i| batch[i].message.body().to_vec())
        .collect();
    let received: Vec<i64> = rows
        .iter()
        .map(|&i| batch[i].message.received_at_ms())
        .collect();
    let query = sqlx::query(OUTBOX_SQL)
        .bind(&tenants)
        .bind(&events)
        .bind(&payloads)
        .bind(&received)
        .bind(&traceparents);
    match connection.fetch_all(query).await {
        Ok(result) => {
            // Rows missing from the answer (they cannot be) stay refused:
            // the request answers 503 rather than 200 for something unknown.
            for row in &result {
                let Ok((n, stored)) = <(i64, bool) as sqlx::FromRow<PgRow>>::from_row(row) else {
                    continue;
                };
                if let Some(&i) = usize::try_from(n - 1).ok().and_then(|k| rows.get(k)) {
                    outcomes[i] = Ok(if stored {
                        Stored::New
                    } else {
                        Stored::Duplicate
                    });
                }
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, db.batch = rows.len(), "outbox write failed");
            for &i in &rows {
                outcomes[i] = Err(Refused::Error);
            }
        }
    }
    for (i, j) in repeats {
        outcomes[i] = match outcomes[j] {
            Ok(_) => Ok(Stored::Duplicate),
            Err(why) => Err(why),
        };
    }
    outcomes
}

/// What this replica knows of the outbox's depth, per tenant: the last count
/// (fleet-wide), plus its own writes in flight and those that committed after
/// the count began. Errs on the high side (a write is counted until a count
/// that surely includes it), which is the safe side of a cap.
#[derive(Debug, Default)]
pub struct Depth {
    counted: HashMap<String, u64>,
    counted_total: u64,
    /// Reserved, write not finished.
    pending: HashMap<String, u64>,
    /// Committed since the running (or next) count began.
    committed: HashMap<String, u64>,
    /// Committed before the running count began (it includes them): dropped
    /// when that count ends.
    committed_before_count: HashMap<String, u64>,
}

impl Depth {
    /// The estimate for `tenant`.
    pub fn tenant(&self, tenant: &str) -> u64 {
        [
            &self.counted,
            &self.pending,
            &self.committed,
            &self.committed_before_count,
        ]
        .iter()
        .map(|m| m.get(tenant).copied().unwrap_or(0))
        .sum()
    }

    /// The estimate for the whole outbox.
    pub fn total(&self) -> u64 {
        self.counted_total
            + [&self.pending, &self.committed, &self.committed_before_count]
                .iter()
                .map(|m| m.values().sum::<u64>())
                .sum::<u64>()
    }

    /// Takes a place for one event of `tenant`, or refuses it by the caps.
    pub fn reserve(&mut self, tenant: &str, policy: &OutboxPolicy) -> Result<(), Refused> {
        if self.total() >= policy.max_events {
            return Err(Refused::Full);
        }
        if self.tenant(tenant) >= policy.max_per_tenant {
            return Err(Refused::TenantFull);
        }
        *self.pending.entry(tenant.to_owned()).or_default() += 1;
        Ok(())
    }

    /// Ends a reservation: `stored` if the event is now in the outbox.
    pub fn settle(&mut self, tenant: &str, stored: bool) {
        decrement(&mut self.pending, tenant, 1);
        if stored {
            *self.committed.entry(tenant.to_owned()).or_default() += 1;
        }
    }

    /// A count of the outbox is about to start.
    pub fn count_started(&mut self) {
        let committed = std::mem::take(&mut self.committed);
        for (tenant, n) in committed {
            *self.committed_before_count.entry(tenant).or_default() += n;
        }
    }

    /// The count that started last has ended with `counts` (tenant → rows).
    pub fn count_ended(&mut self, counts: HashMap<String, u64>) {
        self.counted_total = counts.values().sum();
        self.counted = counts;
        self.committed_before_count.clear();
    }

    /// The flusher published and deleted `n` events of `tenant`.
    pub fn flushed(&mut self, tenant: &str, n: u64) {
        let taken = decrement(&mut self.counted, tenant, n);
        self.counted_total = self.counted_total.saturating_sub(taken);
        let mut left = n - taken;
        left -= decrement(&mut self.committed_before_count, tenant, left);
        decrement(&mut self.committed, tenant, left);
    }

    /// Tenants with events in the outbox, as far as this replica knows.
    pub fn tenants(&self) -> usize {
        let mut all: Vec<&String> = self
            .counted
            .keys()
            .chain(self.pending.keys())
            .chain(self.committed.keys())
            .chain(self.committed_before_count.keys())
            .collect();
        all.sort();
        all.dedup();
        all.len()
    }
}

/// Takes up to `n` from `tenant`'s entry (removing it at zero); returns how much.
fn decrement(map: &mut HashMap<String, u64>, tenant: &str, n: u64) -> u64 {
    let Some(have) = map.get_mut(tenant) else {
        return 0;
    };
    let taken = (*have).min(n);
    *have -= taken;
    if *have == 0 {
        map.remove(tenant);
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(max_events: u64, max_per_tenant: u64) -> OutboxPolicy {
        OutboxPolicy {
            max_events,
            max_per_tenant,
            write_timeout: Duration::from_secs(1),
        }
    }

    #[test]
    fn the_caps_hold_for_writes_in_flight_and_written() {
        let policy = policy(3, 2);
        let mut d = Depth::default();
        d.reserve("acme", &policy).unwrap();
        d.reserve("acme", &policy).unwrap();
        assert_eq!(d.reserve("acme", &policy), Err(Refused::TenantFull));
        d.reserve("globex", &policy).unwrap();
        assert_eq!(d.reserve("initech", &policy), Err(Refused::Full));
        d.settle("acme", true);
        d.settle("acme", false);
        assert_eq!(d.tenant("acme"), 1);
        d.reserve("acme", &policy).unwrap();
        assert_eq!(d.total(), 3);
    }

    #[test]
    fn a_count_replaces_what_it_surely_includes_and_keeps_later_writes() {
        let policy = policy(100, 100);
        let mut d = Depth::default();
        d.reserve("acme", &policy).unwrap();
        d.settle("acme", true); // committed before the count
        d.count_started();
        d.reserve("acme", &policy).unwrap();
        d.settle("acme", true); // committed while it runs: maybe in it, kept
        assert_eq!(d.tenant("acme"), 2);
        d.count_ended(HashMap::from([
            ("acme".to_owned(), 1),
            ("globex".to_owned(), 4),
        ]));
        assert_eq!(d.tenant("acme"), 2, "errs on the high side");
        assert_eq!(d.total(), 6);
        d.count_started();
        d.count_ended(HashMap::from([("acme".to_owned(), 2)]));
        assert_eq!(d.tenant("acme"), 2);
        assert_eq!(d.tenant("globex"), 0);
        assert_eq!(d.tenants(), 1);
    }

    #[test]
    fn flushing_lowers_the_estimate_at_once() {
        let policy = policy(100, 100);
        let mut d = Depth::default();
        d.count_started();
        d.count_ended(HashMap::from([("acme".to_owned(), 3)]));
        d.reserve("acme", &policy).unwrap();
        d.settle("acme", true);
        assert_eq!(d.tenant("acme"), 4);
        d.flushed("acme", 4);
        assert_eq!((d.tenant("acme"), d.total(), d.tenants()), (0, 0, 0));
        d.flushed("acme", 2);
        assert_eq!(d.total(), 0, "never below zero");
    }
}
