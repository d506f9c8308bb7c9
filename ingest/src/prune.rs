//! Forgetting idempotency keys once their events have aged out of the inbound
//! stream. The provider never redelivers (it does not retry), so a key older
//! than the stream's max age protects nothing and only grows the table.
//! Every ingest replica prunes; deleting the same old rows twice is harmless.
//! Keys of events still in the outbox (`outboxed`) are kept whatever their
//! age: they are what answers a repeated delivery as a duplicate until the
//! flusher has published the event.
//!
//! The signed webhook-ids of [`crate::replay_guard`] go once their
//! signatures can no longer verify (`expires_at`).

use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Rows deleted per statement, so a large backlog never holds a long lock.
const BATCH: i64 = 5_000;

/// Deletes keys claimed more than `older_than` ago; returns how many.
pub async fn prune_once(db: &PgPool, older_than: Duration) -> Result<u64, sqlx::Error> {
    in_batches(|| {
        sqlx::query(
            "DELETE FROM inbound_event_keys WHERE ctid IN ( \
               SELECT ctid FROM inbound_event_keys \
               WHERE claimed_at < now() - make_interval(secs => $1) AND state <> 'outboxed' \
               LIMIT $2)",
        )
        .bind(older_than.as_secs_f64())
        .bind(BATCH)
        .execute(db)
    })
    .await
}

/// Deletes the signed webhook-ids past their expiry; returns how many.
pub async fn prune_webhook_ids(db: &PgPool) -> Result<u64, sqlx::Error> {
    in_batches(|| {
        sqlx::query(
            "DELETE FROM signed_webhook_ids WHERE ctid IN ( \
               SELECT ctid FROM signed_webhook_ids WHERE expires_at < now() LIMIT $1)",
        )
        .bind(BATCH)
        .execute(db)
    })
    .await
}

/// Runs a delete of at most [`BATCH`] rows until one deletes fewer; returns
/// the rows deleted in all.
async fn in_batches<F, Fut>(mut delete: F) -> Result<u64, sqlx::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<sqlx::postgres::PgQueryResult, sqlx::Error>>,
{
    let mut total = 0;
    loop {
        let deleted = delete().await?.rows_affected();
        total += deleted;
        if deleted < BATCH as u64 {
            return Ok(total);
        }
    }
}

/// Prunes every `every` until `shutdown`.
pub async fn run(db: PgPool, older_than: Duration, every: Duration, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => match prune_once(&db, older_than).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(keys.pruned = n, "old idempotency keys pruned"),
                Err(e) => tracing::warn!(error = %e, "cannot prune idempotency keys; will try again"),
            },
        }
        if let Err(e) = prune_webhook_ids(&db).await {
            tracing::warn!(error = %e, "cannot prune signed webhook-ids; will try again");
        }
    }
}
