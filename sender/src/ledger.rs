//! The delivery ledger: checked before a send, written after it.
//!
//! A reply part is sent at most once unless the process dies in the window
//! between the provider accepting it and [`mark_wired`] committing: then the
//! redelivered reply finds its row still `sending` and is sent again. That
//! window is one HTTP answer plus one UPDATE long; the provider offers no
//! idempotency key that could close it.

use sqlx::{PgPool, Row};
use switchyard_shared::{db, ids::TenantId};

/// What the ledger says about a reply part about to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not yet accepted by the provider: send. `attempts` failed tries so far;
    /// `age` since the first try.
    Send {
        attempts: u32,
        age: std::time::Duration,
    },
    /// Already wired: do not send again. (A dead-lettered part that comes
    /// back was replayed by an operator, and gets a fresh round of attempts.)
    AlreadyDone,
}

/// Records an attempt about to start (creating the row on first sight).
pub async fn claim(
    db: &PgPool,
    tenant: &TenantId,
    reply_id: &str,
    chat_id: &str,
) -> Result<Claim, sqlx::Error> {
    let mut tx = db::begin_for_tenant(db, tenant).await?;
    let row = sqlx::query(
        "INSERT INTO deliveries (tenant_id, reply_id, chat_id) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id, reply_id) DO UPDATE SET last_attempt_at = now(), \
           status = 'sending', \
           attempts = CASE WHEN deliveries.status = 'dead' THEN 0 ELSE deliveries.attempts END, \
           first_attempt_at = CASE WHEN deliveries.status = 'dead' THEN now() ELSE deliveries.first_attempt_at END \
         WHERE deliveries.status IN ('sending', 'dead') \
         RETURNING attempts, EXTRACT(EPOCH FROM (now() - first_attempt_at))::float8 AS age_s",
    )
    .bind(tenant.as_str())
    .bind(reply_id)
    .bind(chat_id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(match row {
        None => Claim::AlreadyDone,
        Some(row) => {
            let attempts: i32 = row.try_get("attempts")?;
            let age_s: f64 = row.try_get("age_s")?;
            Claim::Send {
                attempts: u32::try_from(attempts).unwrap_or(0),
                age: std::time::Duration::from_secs_f64(age_s.max(0.0)),
            }
        }
    })
}

/// The provider accepted the send.
pub async fn mark_wired(
    db: &PgPool,
    tenant: &TenantId,
    reply_id: &str,
    provider_message_id: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = db::begin_for_tenant(db, tenant).await?;
    sqlx::query(
        "UPDATE deliveries SET status = 'wired', wired_at = now(), provider_message_id = $3, \
         attempts = attempts + 1 WHERE tenant_id = $1 AND reply_id = $2",
    )
    .bind(tenant.as_str())
    .bind(reply_id)
    .bind(provider_message_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// A failed attempt; `spent` says whether it counts towards the limit.
pub async fn record_failure(
    db: &PgPool,
    tenant: &TenantId,
    reply_id: &str,
    spent: bool,
    error: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = db::begin_for_tenant(db, tenant).await?;
    sqlx::query(
        "UPDATE deliveries SET attempts = attempts + $3::int, last_error = $4 \
         WHERE tenant_id = $1 AND reply_id = $2",
    )
    .bind(tenant.as_str())
    .bind(reply_id)
    .bind(i32::from(spent))
    .bind(error.chars().take(500).collect::<String>())
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// The reply part was dead-lettered.
pub async fn mark_dead(db: &PgPool, tenant: &TenantId, reply_id: &str) -> Result<(), sqlx::Error> {
    let mut tx = db::begin_for_tenant(db, tenant).await?;
    sqlx::query(
        "UPDATE deliveries SET status = 'dead' \
         WHERE tenant_id = $1 AND reply_id = $2 AND status = 'sending'",
    )
    .bind(tenant.as_str())
    .bind(reply_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Whether `provider_message_id` is one of our own sends for `tenant`
/// (the query lives in `switchyard_shared::deliveries`, shared with the router).
pub use switchyard_shared::deliveries::is_our_send;
