//! The `deliveries` table, the sender's delivery ledger: every query on it.
//!
//! The sender checks it before a send ([`claim`]) and writes it after
//! ([`mark_wired`], [`record_failure`], [`mark_dead`]), and counts a chat's
//! recent sends for the per-contact cap ([`wired_last_hour`]); the router asks
//! whether a `from_me` event is the echo of one of our own sends or a person
//! answering on the phone ([`echo_origin`]). Every query runs by tenant and
//! under the tenant's row-level security scope, since provider ids are
//! unique per account only.
//!
//! A reply part is sent at most once unless the process dies in the window
//! between the provider accepting it and [`mark_wired`] committing: then the
//! redelivered reply finds its row still `sending` and is sent again. That
//! window is one HTTP answer plus one UPDATE long; the provider offers no
//! idempotency key that could close it.

use std::time::Duration;

use sqlx::{PgPool, Row};

use crate::{
    db,
    ids::TenantId,
    message_ids::{ChatId, ProviderMessageId, ReplyId},
};

/// What the ledger says about a reply part about to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not yet accepted by the provider: send. `attempts` failed tries so far;
    /// `age` since the first try.
    Send { attempts: u32, age: Duration },
    /// Already wired: do not send again. (A dead-lettered part that comes
    /// back was replayed by an operator, and gets a fresh round of attempts.)
    AlreadyDone,
}

/// Records an attempt about to start (creating the row on first sight).
pub async fn claim(
    db: &PgPool,
    tenant: &TenantId,
    reply_id: &ReplyId,
    chat_id: &ChatId,
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
    .bind(reply_id.as_str())
    .bind(chat_id.as_str())
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
                age: Duration::from_secs_f64(age_s.max(0.0)),
            }
        }
    })
}

/// The provider accepted the send, with the id it gave the message; `None`
/// when the acceptance was not confirmed with an id, recorded as
/// `unconfirmed:<reply id>` so the row is still unique and never taken for an
/// echo's id.
pub async fn mark_wired(
    db: &PgPool,
    tenant: &TenantId,
    reply_id: &ReplyId,
    provider_message_id: Option<&ProviderMessageId>,
) -> Result<(), sqlx::Error> {
    let mut tx = db::begin_for_tenant(db, tenant).await?;
    sqlx::query(
        "UPDATE deliveries SET status = 'wired', wired_at = now(), \
         provider_message_id = coalesce($3, 'unconfirmed:' || reply_id), \
         attempts = attempts + 1 WHERE tenant_id = $1 AND reply_id = $2",
    )
    .bind(tenant.as_str())
    .bind(reply_id.as_str())
    .bind(provider_message_id.map(ProviderMessageId::as_str))
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// A failed attempt; `spent` says whether it counts towards the limit.
pub async fn record_failure(
    db: &PgPool,
    tenant: &TenantId,
    reply_id: &ReplyId,
    spent: bool,
    error: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = db::begin_for_tenant(db, tenant).await?;
    sqlx::query(
        "UPDATE deliveries SET attempts = attempts + $3::int, last_error = $4 \
         WHERE tenant_id = $1 AND reply_id = $2",
    )
    .bind(tenant.as_str())
    .bind(reply_id.as_str())
    .bind(i32::from(spent))
    .bind(error.chars().take(500).collect::<String>())
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// The reply part was dead-lettered.
pub async fn mark_dead(
    db: &PgPool,
    tenant: &TenantId,
    reply_id: &ReplyId,
) -> Result<(), sqlx::Error> {
    let mut tx = db::begin_for_tenant(db, tenant).await?;
    sqlx::query(
        "UPDATE deliveries SET status = 'dead' \
         WHERE tenant_id = $1 AND reply_id = $2 AND status = 'sending'",
    )
    .bind(tenant.as_str())
    .bind(reply_id.as_str())
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Sends to `chat_id` the provider accepted within the last hour (the
/// per-contact cap), and when the oldest of them leaves the hour.
pub async fn wired_last_hour(
    db: &PgPool,
    tenant: &TenantId,
    chat_id: &ChatId,
) -> Result<(u32, Option<Duration>), sqlx::Error> {
    let mut tx = db::begin_for_tenant(db, tenant).await?;
    let (count, frees_in_s): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), \
           EXTRACT(EPOCH FROM (min(wired_at) + interval '1 hour' - now()))::float8 \
         FROM deliveries WHERE tenant_id = $1 AND chat_id = $2 AND status = 'wired' \
           AND wired_at > now() - interval '1 hour'",
    )
    .bind(tenant.as_str())
    .bind(chat_id.as_str())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((
        u32::try_from(count).unwrap_or(u32::MAX),
        frees_in_s.map(|s| Duration::from_secs_f64(s.max(0.0))),
    ))
}

/// What the ledger says about a `from_me` message id in a chat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EchoOrigin {
    /// One of our sends: ignore it.
    Ours,
    /// Not known yet, but a send to this chat is under way (its answer, and
    /// so its id, has not been recorded): the echo may have overtaken it.
    Undecided,
    /// Not ours and nothing under way: a person answered from the phone.
    Human,
}

/// Classifies a `from_me` message: ours, a person, or not decidable yet
/// because a send to `chat_id` started within `in_flight_window` and has not
/// been recorded as wired.
pub async fn echo_origin(
    db: &PgPool,
    tenant: &TenantId,
    chat_id: &ChatId,
    provider_message_id: &ProviderMessageId,
    in_flight_window: Duration,
) -> Result<EchoOrigin, sqlx::Error> {
    let mut tx = db::begin_for_tenant(db, tenant).await?;
    let (ours, under_way): (bool, bool) = sqlx::query_as(
        "SELECT \
           EXISTS (SELECT 1 FROM deliveries WHERE tenant_id = $1 AND provider_message_id = $2), \
           EXISTS (SELECT 1 FROM deliveries WHERE tenant_id = $1 AND chat_id = $3 \
                   AND status = 'sending' \
                   AND last_attempt_at > now() - make_interval(secs => $4))",
    )
    .bind(tenant.as_str())
    .bind(provider_message_id.as_str())
    .bind(chat_id.as_str())
    .bind(in_flight_window.as_secs_f64())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(if ours {
        EchoOrigin::Ours
    } else if under_way {
        EchoOrigin::Undecided
    } else {
        EchoOrigin::Human
    })
}
