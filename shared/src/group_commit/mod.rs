//! Group commit for the workers' per-event database steps.
//!
//! Every event takes a few tenant-scoped steps (the router's read before a
//! bot turn and its record after one, the sender's ledger claim before a
//! send and its mark after it), each one statement (migration 0017). At a
//! few hundred events a second that is a round trip, a commit and a
//! PostgreSQL wake-up per step per event: the largest share of the
//! pipeline's CPU per event (issue 20, `docs/benchmarks/cost.md`). A
//! [`GroupCommit`] queues a step's calls from every task of the process and
//! runs them as one statement over arrays (migration 0018: the function sets
//! each row's tenant scope in turn, so row-level security applies per row
//! exactly as before), answering each caller with its own row. One statement
//! may serve several kinds of call (the sender's claims and marks share one,
//! migration 0021), each timed under its own name ([`Statement::call_name`]).
//!
//! Each step stays what it was for its caller: it returns once its statement
//! committed, so the ledger's claim-before-send and mark-after-send hold per
//! batch. `slots` statements may be in flight at once; a slot takes
//! everything queued when it becomes free, and lingers a little only when
//! its last batch had company ([`linger_after`]), so a quiet worker waits for
//! nothing. Connections come from the service's pool (its role, its limits,
//! its acquire timeout); a slot keeps its connection while it is busy
//! ([`held`]: giving one back costs sqlx's release ping, a round trip).
//!
//! Isolation: one tenant's bad row must not fail its neighbours'. A batch
//! the database refuses (an error of the data, say a row whose tenant was
//! deleted meanwhile) is run again one item at a time on the same
//! connection, so every caller gets its own answer or its own error. Trouble
//! of the infrastructure (no connection, a broken one) is everyone's, and
//! every caller of the batch gets it, also the items of a re-run that were
//! still to come when the connection broke: [`shared_error`] keeps its kind,
//! which is what callers classify (`router::backpressure::db_fault`).
//!
//! Written by hand: the batching is a few lines over a tokio channel, and no
//! kept crate does group commit for sqlx.

mod gather;
mod held;

use std::{future::Future, sync::Arc, time::Duration};

use held::{HeldConnection, fit_after};
use sqlx::{PgConnection, PgPool, Row, postgres::PgRow};
use tokio::sync::{Mutex, mpsc, oneshot};

pub use gather::{gather, linger_after};

/// One step that can run for many items in one statement.
pub trait Statement: Send + Sync + 'static {
    /// The step's name in metrics (`step` label).
    const NAME: &'static str;
    /// What one caller asks.
    type Item: Send + 'static;
    /// What one caller gets back.
    type Answer: Send + 'static;
    /// The `step` label of one call's time (`switchyard_db_step_seconds`):
    /// the statement's name, unless it serves several kinds of call.
    fn call_name(_item: &Self::Item) -> &'static str {
        Self::NAME
    }
    /// Runs the step for `items` as one statement on `connection` and
    /// returns one answer per item, in the items' order.
    fn run<'c>(
        &'c self,
        connection: &'c mut PgConnection,
        items: &'c [Self::Item],
    ) -> impl Future<Output = Result<Vec<Self::Answer>, sqlx::Error>> + Send + 'c;
}

/// How a step's batches are cut.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Statements in flight at once.
    pub slots: usize,
    /// Most items in one statement.
    pub max_batch: usize,
    /// How long a busy slot gathers after a batch's first item.
    pub linger: Duration,
    /// How long a slot keeps its connection without a batch before it gives
    /// it back to the pool.
    pub hold_idle: Duration,
}

impl Shape {
    /// The workers' steps: two slots (one statement waiting on a lock does
    /// not stop the step), up to 64 items, 1 ms of gathering while busy
    /// (`SWITCHYARD_DB_STEP_LINGER`: a step is about a millisecond's round
    /// trip, so this at most doubles one step's wait and only under load); a
    /// slot keeps its connection through pauses of up to 100 ms (at a hundred
    /// events a second and more it is rarely given back; an idle service
    /// holds none, and a service whose pool ran dry waits at most that for a
    /// slot's).
    ///
    /// What the linger costs and saves (issue 20, 2026-12-07): it bounds a
    /// backlogged tenant running several chats at ~1,250 msg/s (every turn
    /// waits for company twice; the router benchmark with the spare chats on
    /// drained at 1,970 msg/s without it), and it saves 3–5 % of the CPU per
    /// event end to end at 500–1,000 events/s; in `flood-open` the quiet
    /// tenants' p99 was 10–25 ms with it, 14–86 ms without (four runs each).
    /// At the floor of one chat per backlog (the default) it bounds nothing,
    /// so it stays on; with the spare chats on, `0ms` lets them drain.
    pub const WORKER_STEP: Shape = Shape {
        slots: 2,
        max_batch: 64,
        linger: Duration::from_millis(1),
        hold_idle: Duration::from_millis(100),
    };

    /// The workers' steps with `linger` (`SWITCHYARD_DB_STEP_LINGER`).
    pub const fn worker_step(linger: Duration) -> Shape {
        Shape {
            linger,
            ..Self::WORKER_STEP
        }
    }
}

struct Pending<S: Statement> {
    item: S::Item,
    reply: oneshot::Sender<Result<S::Answer, sqlx::Error>>,
    /// Told once the item's statement has a connection.
    started: oneshot::Sender<()>,
}

/// A step's queue and its flush slots. Cloning shares them; the slots end
/// when the last clone is dropped and the queue has drained.
pub struct GroupCommit<S: Statement> {
    queue: mpsc::Sender<Pending<S>>,
    /// Longest a call waits for its statement to get a connection.
    start_bound: Duration,
}

impl<S: Statement> Clone for GroupCommit<S> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            start_bound: self.start_bound,
        }
    }
}

impl<S: Statement> std::fmt::Debug for GroupCommit<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit")
            .field(
                "queued",
                &(self.queue.max_capacity() - self.queue.capacity()),
            )
            .finish()
    }
}

impl<S: Statement> GroupCommit<S> {
    /// Starts the step's flush slots on the current tokio runtime.
    pub fn start(pool: PgPool, statement: S, shape: Shape) -> Self {
        // Callers wait for their answer, so the queue holds at most what the
        // process has in flight; the bound only stops a runaway.
        let (queue, receiver) = mpsc::channel(shape.max_batch * shape.slots * 16);
        let receiver = Arc::new(Mutex::new(receiver));
        let statement = Arc::new(statement);
        let start_bound = pool.options().get_acquire_timeout();
        for _ in 0..shape.slots.max(1) {
            tokio::spawn(flush_slot(
                pool.clone(),
                Arc::clone(&statement),
                Arc::clone(&receiver),
                shape,
            ));
        }
        Self { queue, start_bound }
    }

    /// Calls waiting for a slot (not those in a statement under way).
    pub fn queued(&self) -> usize {
        self.queue.max_capacity() - self.queue.capacity()
    }

    /// Runs the step for `item` in the next batch and returns its answer
    /// once the batch's statement has committed.
    ///
    /// A call whose statement has no connection within the pool's acquire
    /// timeout (both slots stuck behind a lock, the pool exhausted) fails with
    /// [`sqlx::Error::PoolTimedOut`], as a pooled statement did, and is then
    /// never run: callers rely on that bound to see an overloaded database as
    /// their trouble (`router::backpressure`). Once started, a statement
    /// runs to its end, as before.
    pub async fn run(&self, item: S::Item) -> Result<S::Answer, sqlx::Error> {
        let started = std::time::Instant::now();
        let name = S::call_name(&item);
        let answered = self.call(item).await;
        metrics::histogram!(crate::metrics::DB_STEP_SECONDS, "step" => name)
            .record(started.elapsed().as_secs_f64());
        answered
    }

    async fn call(&self, item: S::Item) -> Result<S::Answer, sqlx::Error> {
        let (reply, answer) = oneshot::channel();
        let (started, has_started) = oneshot::channel();
        let queued = self.queue.send(Pending {
            item,
            reply,
            started,
        });
        let waited = tokio::time::timeout(self.start_bound, async {
            queued.await.map_err(|_| sqlx::Error::PoolClosed)?;
            // An error here: the slot answered without starting (its own
            // error is in `answer`).
            let _ = has_started.await;
            Ok(())
        })
        .await;
        match waited {
            Err(_) => return Err(sqlx::Error::PoolTimedOut),
            Ok(Err(e)) => return Err(e),
            Ok(Ok(())) => {}
        }
        // A dropped reply: the slot's task ended (the runtime is shutting down).
        answer.await.unwrap_or(Err(sqlx::Error::PoolClosed))
    }
}

/// One flush slot: takes whatever is queued whenever it is free and runs it
/// as one statement. Only one idle slot waits on the queue; the others are
/// busy or wait for the lock, so a batch is everything queued meanwhile.
async fn flush_slot<S: Statement>(
    pool: PgPool,
    statement: Arc<S>,
    queue: Arc<Mutex<mpsc::Receiver<Pending<S>>>>,
    shape: Shape,
) {
    let mut batch = Vec::with_capacity(shape.max_batch);
    let mut previous_batch = 0;
    let mut connection = HeldConnection::new(pool);
    loop {
        let wait = linger_after(previous_batch, shape.linger);
        // Waiting for the queue's lock is waiting too: it is inside what
        // `hold_idle` bounds, or a slot behind another would keep its
        // connection for as long as the service stays idle.
        let gathering = async {
            let mut queue = queue.lock().await;
            gather(&mut queue, &mut batch, shape.max_batch, wait).await
        };
        let gathered = if connection.is_held() {
            // `None`: idle for `hold_idle`, or the pool closing (a closed
            // pool waits for every connection to come back).
            let closing = connection.pool_closing();
            tokio::select! {
                gathered = tokio::time::timeout(shape.hold_idle, gathering) => gathered.ok(),
                _ = closing => None,
            }
        } else {
            Some(gathering.await)
        };
        let received = match gathered {
            Some(received) => received,
            None => {
                // The connection goes back. `gather` keeps in `batch`
                // whatever it received meanwhile, and that is run (on a
                // closed pool it fails at once).
                connection.release();
                if batch.is_empty() {
                    continue;
                }
                batch.len()
            }
        };
        if received == 0 {
            return;
        }
        previous_batch = received;
        // Calls that gave up waiting are not run.
        batch.retain(|pending| !pending.reply.is_closed());
        if !batch.is_empty() {
            flush(&mut connection, &*statement, std::mem::take(&mut batch)).await;
        }
    }
}

async fn flush<S: Statement>(held: &mut HeldConnection, statement: &S, batch: Vec<Pending<S>>) {
    crate::metrics::group_commit_batch(S::NAME, batch.len());
    let connection = match held.get().await {
        Ok(connection) => connection,
        Err(e) => {
            let replies = batch.into_iter().map(|pending| pending.reply).collect();
            return answer_all(replies, &e);
        }
    };
    // A call that gave up while the connection was being taken (its start
    // bound ran out) is told nothing more and never run.
    let mut items = Vec::with_capacity(batch.len());
    let mut replies = Vec::with_capacity(batch.len());
    for pending in batch {
        if pending.started.send(()).is_ok() {
            items.push(pending.item);
            replies.push(pending.reply);
        }
    }
    if items.is_empty() {
        return;
    }
    let fit = match statement.run(connection, &items).await {
        Ok(answers) if answers.len() == items.len() => {
            for (reply, answer) in replies.into_iter().zip(answers) {
                // The caller may have stopped waiting: nothing to do then.
                let _ = reply.send(Ok(answer));
            }
            true
        }
        Ok(answers) => {
            let e = sqlx::Error::Protocol(format!(
                "a batched step answered {} rows for {} items",
                answers.len(),
                items.len()
            ));
            answer_all(replies, &e);
            false
        }
        Err(e @ sqlx::Error::Database(_)) if items.len() > 1 && fit_after(&e) => {
            // Refused for one item's data, perhaps: each on its own, until
            // the connection itself fails. The items after that get its
            // error unrun: on a broken connection each would fail anyway,
            // and on a half-open one each would wait out its own timeout.
            let mut broken: Option<sqlx::Error> = None;
            for (item, reply) in items.into_iter().zip(replies) {
                if let Some(e) = &broken {
                    let _ = reply.send(Err(shared_error(e)));
                    continue;
                }
                let answer = statement
                    .run(connection, std::slice::from_ref(&item))
                    .await
                    .and_then(|mut answers| answers.pop().ok_or(sqlx::Error::RowNotFound));
                if let Err(e) = &answer
                    && !fit_after(e)
                {
                    broken = Some(shared_error(e));
                }
                let _ = reply.send(answer);
            }
            broken.is_none()
        }
        Err(e) => {
            answer_all(replies, &e);
            fit_after(&e)
        }
    };
    held.after_statement(fit);
}

/// A batch statement's rows grouped by the item they answer (its `item`
/// column, counting from 1), in the items' order. An item without a row, or
/// a row naming no item, is a protocol error: the batch functions answer
/// every item at least once.
pub fn rows_by_item(items: usize, rows: Vec<PgRow>) -> Result<Vec<Vec<PgRow>>, sqlx::Error> {
    let mut grouped: Vec<Vec<PgRow>> = (0..items).map(|_| Vec::new()).collect();
    for row in rows {
        let item: i32 = row.try_get("item")?;
        usize::try_from(item - 1)
            .ok()
            .and_then(|i| grouped.get_mut(i))
            .ok_or_else(|| {
                sqlx::Error::Protocol(format!("a batch answered item {item} of {items}"))
            })?
            .push(row);
    }
    if grouped.iter().any(Vec::is_empty) {
        return Err(sqlx::Error::Protocol(
            "a batch left an item unanswered".into(),
        ));
    }
    Ok(grouped)
}

fn answer_all<A>(replies: Vec<oneshot::Sender<Result<A, sqlx::Error>>>, error: &sqlx::Error) {
    for reply in replies {
        let _ = reply.send(Err(shared_error(error)));
    }
}

/// A copy of a batch's error for each of its callers (`sqlx::Error` cannot
/// be cloned): the same variant where callers tell variants apart (the pool
/// timing out or closed, an I/O error of that kind, a database error's
/// SQLSTATE), otherwise a protocol error with the same message.
pub fn shared_error(error: &sqlx::Error) -> sqlx::Error {
    match error {
        sqlx::Error::PoolTimedOut => sqlx::Error::PoolTimedOut,
        sqlx::Error::PoolClosed => sqlx::Error::PoolClosed,
        sqlx::Error::Io(e) => sqlx::Error::Io(std::io::Error::new(e.kind(), e.to_string())),
        sqlx::Error::Database(e) => sqlx::Error::Database(Box::new(SharedDatabaseError {
            message: e.message().to_owned(),
            code: e.code().map(|c| c.into_owned()),
        })),
        other => sqlx::Error::Protocol(other.to_string()),
    }
}

/// A database error as it reached a batch, for each of its callers.
#[derive(Debug)]
struct SharedDatabaseError {
    message: String,
    code: Option<String>,
}

impl std::fmt::Display for SharedDatabaseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SharedDatabaseError {}

impl sqlx::error::DatabaseError for SharedDatabaseError {
    fn message(&self) -> &str {
        &self.message
    }

    fn code(&self) -> Option<std::borrow::Cow<'_, str>> {
        self.code.as_deref().map(std::borrow::Cow::Borrowed)
    }

    fn as_error(&self) -> &(dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn as_error_mut(&mut self) -> &mut (dyn std::error::Error + Send + Sync + 'static) {
        self
    }

    fn into_error(self: Box<Self>) -> Box<dyn std::error::Error + Send + Sync + 'static> {
        self
    }

    fn kind(&self) -> sqlx::error::ErrorKind {
        sqlx::error::ErrorKind::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shared_error_keeps_what_callers_classify() {
        let io = sqlx::Error::Io(std::io::Error::from(std::io::ErrorKind::ConnectionRefused));
        assert!(
            matches!(shared_error(&io), sqlx::Error::Io(e) if e.kind() == std::io::ErrorKind::ConnectionRefused)
        );
        assert!(matches!(
            shared_error(&sqlx::Error::PoolTimedOut),
            sqlx::Error::PoolTimedOut
        ));
        assert!(matches!(
            shared_error(&sqlx::Error::PoolClosed),
            sqlx::Error::PoolClosed
        ));
        let db = sqlx::Error::Database(Box::new(SharedDatabaseError {
            message: "insert or update violates foreign key constraint".into(),
            code: Some("23503".into()),
        }));
        match shared_error(&db) {
            sqlx::Error::Database(e) => {
                assert_eq!(e.code().as_deref(), Some("23503"));
                assert_eq!(
                    e.message(),
                    "insert or update violates foreign key constraint"
                );
            }
            other => panic!("expected a database error, got {other:?}"),
        }
        assert!(matches!(
            shared_error(&sqlx::Error::RowNotFound),
            sqlx::Error::Protocol(m) if m.contains("no rows")
        ));
    }
}
