//! Group commit of idempotency keys, on connections the writers own.
//!
//! Every webhook waits for its claim, so the claim's round trips are the
//! request's round trips. A pooled sqlx connection costs a liveness ping when
//! it is taken (`test_before_acquire`) and another when it is given back
//! (always), and `BEGIN` / `SET LOCAL synchronous_commit` / `COMMIT` around the
//! statement three more: six round trips and six PostgreSQL wake-ups per batch,
//! most of PostgreSQL's CPU at moderate rates, where batches are small. So each
//! writer holds one connection of its own, opened with
//! `synchronous_commit=off` and a generic plan for the whole session, and a
//! batch is exactly one statement in one round trip (autocommit).
//!
//! [`write_claims`] runs once per flush slot; the slots share one queue, and a
//! slot takes everything queued when it becomes free, so at most
//! `slots` statements are in flight while the next batch accumulates. A slot
//! whose last batch had company gathers a little longer
//! (`switchyard_shared::group_commit::linger_after`: with 2 ms, CPU per event at
//! half the benchmark's maximum rate fell from ~420 to ~280 µs).
//! [`write_marks`] is a single writer that gathers for a fixed while. A connection that fails or hangs
//! past `STATEMENT_BOUND` is dropped and opened afresh for the next batch;
//! the waiters of a failed batch are told by their dropped reply channel.

use std::{sync::Arc, time::Duration};

use sqlx::{
    Connection, PgConnection, Postgres,
    postgres::{PgArguments, PgConnectOptions, PgRow},
    query::Query,
};
use switchyard_shared::group_commit::{gather, linger_after};
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::{
    idempotency::{Claimed, NextAction},
    metrics as m,
};

/// Longest a writer waits to open its connection.
const CONNECT_BOUND: Duration = Duration::from_secs(5);
/// Longest one statement may run before its connection is given up. Far above
/// any request's claim bound: the requests have long gone degraded by then;
/// this only keeps a hung connection from holding a flush slot forever.
const STATEMENT_BOUND: Duration = Duration::from_secs(30);
/// Shown in `pg_stat_activity`.
const APPLICATION_NAME: &str = "switchyard-ingest-keys";

/// A key as the writers store it.
#[derive(Debug)]
pub struct Key {
    pub tenant: String,
    pub event: String,
}

/// A claim waiting for its batch.
#[derive(Debug)]
pub struct Claim {
    pub key: Key,
    pub reply: oneshot::Sender<Claimed>,
}

/// One statement per batch: insert what is new, report the state of the rest,
/// and whether the key's tenant has events waiting in the outbox (a new event
/// of that tenant must then queue behind them; see [`crate::outbox`]).
/// Keys are inserted in sorted order so two concurrent batches cannot deadlock
/// on each other's uncommitted inserts. The data-modifying CTE's rows are not
/// visible to the outer join, which is why `fresh` comes from `RETURNING`; a
/// key committed by another replica after this statement's snapshot shows as
/// neither fresh nor known, and is treated as claimed elsewhere (republish).
///
/// A known key is read by its primary key for each input row (a subquery),
/// not joined: the writers' connections cache one generic plan for their
/// whole life, and one planned while `inbound_event_keys` was small (a new
/// deployment, or the benchmarks' fresh database) hash-joined a sequential
/// scan of the whole table into every batch, which grew with the table
/// (issue 20: 10 % of PostgreSQL's CPU at 100 events/s after 4,000 events;
/// test `ingest_exactly_once::the_claim_statement_reads_known_keys_by_index_even_when_planned_on_an_empty_table`).
pub const CLAIM_SQL: &str = r#"
WITH input AS (
    SELECT tenant_id, event_id, n
    FROM unnest($1::text[], $2::text[]) WITH ORDINALITY AS t(tenant_id, event_id, n)
), fresh AS (
    INSERT INTO inbound_event_keys (tenant_id, event_id)
    SELECT tenant_id, event_id FROM input ORDER BY tenant_id, event_id
    ON CONFLICT (tenant_id, event_id) DO NOTHING
    RETURNING tenant_id, event_id
)
SELECT input.n, fresh.event_id IS NOT NULL AS fresh,
       (SELECT known.state FROM inbound_event_keys known
        WHERE known.tenant_id = input.tenant_id AND known.event_id = input.event_id) AS state,
       EXISTS (SELECT 1 FROM inbound_outbox o WHERE o.tenant_id = input.tenant_id) AS backlog
FROM input
LEFT JOIN fresh USING (tenant_id, event_id)
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

/// The session settings of the writers' connections ([`connect_options`]).
///
/// Every statement they run finds rows by key, and each plan is made once
/// per connection (a generic plan, for the connection's life), often while
/// the tables are small: a sequential scan chosen then stays when the table
/// has grown. With sequential scans off the planner takes an index wherever
/// one serves: the claim's outbox check reads the tenant's rows of
/// `inbound_outbox` by its index instead of scanning the whole outbox for
/// every key, which matters exactly when the outbox holds a backlog (test
/// `ingest_exactly_once::the_claim_statement_reads_known_keys_by_index_even_when_planned_on_an_empty_table`).
pub const WRITER_SETTINGS: [(&str, &str); 3] = [
    ("synchronous_commit", "off"),
    ("plan_cache_mode", "force_generic_plan"),
    ("enable_seqscan", "off"),
];

/// The options of the writers' connections: the service's database, with
/// commits that do not wait for their WAL flush ([`WRITER_SETTINGS`]).
///
/// Why that is safe: what a claim protects is guarded twice more (the
/// stream's duplicate window and the sender's delivery ledger), and what it
/// answers is durable in JetStream before the 200, so a PostgreSQL *crash*
/// that forgets the last few hundred milliseconds of claims costs nothing but
/// the first guard for those keys. A lost mark leaves a key `claimed`, which
/// costs at most a deduplicated republish. In exchange the disk's fsync tail
/// leaves the request path.
pub fn connect_options(service_db: &PgConnectOptions) -> PgConnectOptions {
    service_db
        .clone()
        .application_name(APPLICATION_NAME)
        .options(WRITER_SETTINGS)
}

/// Why a statement did not run.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WriteError {
    #[error("cannot connect: {0}")]
    Connect(sqlx::Error),
    #[error("no connection within {CONNECT_BOUND:?}")]
    ConnectTimedOut,
    #[error("statement failed: {0}")]
    Statement(sqlx::Error),
    #[error("statement still running after {STATEMENT_BOUND:?}; connection dropped")]
    StatementTimedOut,
}

/// One connection, opened on first use and after any failure.
pub(crate) struct WriterConnection {
    options: PgConnectOptions,
    connection: Option<PgConnection>,
}

impl WriterConnection {
    pub(crate) fn new(options: PgConnectOptions) -> Self {
        Self {
            options,
            connection: None,
        }
    }

    /// Ends the session politely (PostgreSQL then logs no lost client).
    pub(crate) async fn close(self) {
        if let Some(connection) = self.connection {
            let _ = tokio::time::timeout(CONNECT_BOUND, connection.close()).await;
        }
    }

    /// Runs `statement` with `tenants` and `events` as its two array
    /// parameters.
    async fn run(
        &mut self,
        statement: &'static str,
        tenants: &[&str],
        events: &[&str],
    ) -> Result<Vec<PgRow>, WriteError> {
        self.fetch_all(sqlx::query(statement).bind(tenants).bind(events))
            .await
    }

    /// Runs one query and returns its rows. On any failure the connection
    /// is dropped, so a broken or wedged one is never reused.
    pub(crate) async fn fetch_all<'q>(
        &mut self,
        query: Query<'q, Postgres, PgArguments>,
    ) -> Result<Vec<PgRow>, WriteError> {
        if self.connection.is_none() {
            let opened =
                tokio::time::timeout(CONNECT_BOUND, PgConnection::connect_with(&self.options))
                    .await
                    .map_err(|_| WriteError::ConnectTimedOut)?
                    .map_err(WriteError::Connect)?;
            self.connection = Some(opened);
        }
        let Some(connection) = self.connection.as_mut() else {
            return Err(WriteError::ConnectTimedOut);
        };
        let result = match tokio::time::timeout(STATEMENT_BOUND, query.fetch_all(connection)).await
        {
            Ok(Ok(rows)) => return Ok(rows),
            Ok(Err(e)) => WriteError::Statement(e),
            Err(_) => WriteError::StatementTimedOut,
        };
        self.connection = None;
        Err(result)
    }
}

/// One flush slot of the claim writer: takes whatever is queued whenever it
/// is free, writes it as one statement, answers every claim of the batch.
/// Returns once the queue is closed and drained.
pub async fn write_claims(
    options: PgConnectOptions,
    queue: Arc<Mutex<mpsc::Receiver<Claim>>>,
    max_batch: usize,
    linger: Duration,
) {
    let mut connection = WriterConnection::new(options);
    let mut batch = Vec::with_capacity(max_batch);
    let mut previous_batch = 0;
    loop {
        // Only one idle slot waits on the queue; the other slots are busy
        // writing or wait here, so a batch is everything queued meanwhile.
        let wait = linger_after(previous_batch, linger);
        let received = gather(&mut *queue.lock().await, &mut batch, max_batch, wait).await;
        if received == 0 {
            connection.close().await;
            return;
        }
        previous_batch = received;
        flush_claims(&mut connection, std::mem::take(&mut batch)).await;
    }
}

async fn flush_claims(connection: &mut WriterConnection, claims: Vec<Claim>) {
    m::claim_batch(claims.len());
    let (tenants, events): (Vec<&str>, Vec<&str>) = claims
        .iter()
        .map(|c| (c.key.tenant.as_str(), c.key.event.as_str()))
        .unzip();
    let rows = match connection.run(CLAIM_SQL, &tenants, &events).await {
        Ok(rows) => rows,
        Err(e) => {
            // Dropping the reply senders tells every waiter "degraded: error".
            tracing::warn!(error = %e, db.batch = claims.len(), "idempotency claim failed; publishing without claims");
            return;
        }
    };
    // A row that does not come back (it cannot happen) is republished, and
    // its tenant treated as backlogged: the safe side of both.
    let mut actions = vec![
        Claimed {
            next: NextAction::Republish,
            tenant_backlog: Some(true),
        };
        claims.len()
    ];
    for row in &rows {
        let Ok((n, fresh, state, backlog)) =
            <(i64, bool, Option<String>, bool) as sqlx::FromRow<PgRow>>::from_row(row)
        else {
            continue;
        };
        let Some(slot) = usize::try_from(n - 1).ok().and_then(|i| actions.get_mut(i)) else {
            continue;
        };
        *slot = Claimed {
            next: next_action(fresh, state.as_deref()),
            tenant_backlog: Some(backlog),
        };
    }
    for (claim, action) in claims.into_iter().zip(actions) {
        // The requester may have stopped waiting (timeout): nothing to do then.
        let _ = claim.reply.send(action);
    }
}

/// What a claim row says about its delivery.
fn next_action(fresh: bool, state: Option<&str>) -> NextAction {
    match (fresh, state) {
        (true, _) => NextAction::Publish,
        (false, Some("published")) => NextAction::AlreadyPublished,
        (false, Some("outboxed")) => NextAction::AlreadyOutboxed,
        (false, _) => NextAction::Republish,
    }
}

/// The mark writer: one upsert for everything queued within `linger` of the
/// first mark (or `max_batch` marks). Marks are off the request path, so
/// waiting costs nothing but a key staying `claimed` a little longer (a
/// duplicate delivery meanwhile is republished and deduplicated by the
/// stream), and it turns hundreds of small statements a second into a few
/// large ones. Best effort: a failed batch leaves its keys `claimed`.
/// Returns once the queue is closed and drained.
pub async fn write_marks(
    options: PgConnectOptions,
    mut queue: mpsc::Receiver<Key>,
    max_batch: usize,
    linger: Duration,
) {
    let mut connection = WriterConnection::new(options);
    let mut batch = Vec::with_capacity(max_batch);
    while gather(&mut queue, &mut batch, max_batch, linger).await > 0 {
        let (tenants, events): (Vec<&str>, Vec<&str>) = batch
            .iter()
            .map(|k| (k.tenant.as_str(), k.event.as_str()))
            .unzip();
        if let Err(e) = connection.run(MARK_SQL, &tenants, &events).await {
            tracing::warn!(error = %e, db.batch = batch.len(), "marking keys published failed");
        }
        batch.clear();
    }
    connection.close().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_row_maps_to_what_the_delivery_does_next() {
        assert_eq!(next_action(true, Some("claimed")), NextAction::Publish);
        assert_eq!(next_action(false, Some("claimed")), NextAction::Republish);
        assert_eq!(
            next_action(false, None),
            NextAction::Republish,
            "committed elsewhere after our snapshot"
        );
        assert_eq!(
            next_action(false, Some("published")),
            NextAction::AlreadyPublished
        );
        assert_eq!(
            next_action(false, Some("outboxed")),
            NextAction::AlreadyOutboxed
        );
    }
}
