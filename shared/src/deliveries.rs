//! Reading the sender's delivery ledger from elsewhere: the router asks
//! whether a `from_me` event is the echo of one of our own sends (or a person
//! answering on the phone). The sender writes the ledger (`switchyard_sender::ledger`);
//! the queries here only read it, always by tenant and under the tenant's
//! row-level security scope, since provider ids are unique per account only.

use std::time::Duration;

use sqlx::PgPool;

use crate::{db, ids::TenantId};

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

/// Whether `provider_message_id` is one of our own sends for `tenant`.
pub async fn is_our_send(
    db: &PgPool,
    tenant: &TenantId,
    provider_message_id: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = db::begin_for_tenant(db, tenant).await?;
    let found: Option<i32> = sqlx::query_scalar(
        "SELECT 1 FROM deliveries WHERE tenant_id = $1 AND provider_message_id = $2",
    )
    .bind(tenant.as_str())
    .bind(provider_message_id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(found.is_some())
}

/// Classifies a `from_me` message: ours, a person, or not decidable yet
/// because a send to `chat_id` started within `in_flight_window` and has not
/// been recorded as wired.
pub async fn echo_origin(
    db: &PgPool,
    tenant: &TenantId,
    chat_id: &str,
    provider_message_id: &str,
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
    .bind(provider_message_id)
    .bind(chat_id)
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

/// Sends to `chat_id` the provider accepted within the last hour (the
/// per-contact cap), and when the oldest of them leaves the hour.
pub async fn wired_last_hour(
    db: &PgPool,
    tenant: &TenantId,
    chat_id: &str,
) -> Result<(u32, Option<Duration>), sqlx::Error> {
    let mut tx = db::begin_for_tenant(db, tenant).await?;
    let (count, frees_in_s): (i64, Option<f64>) = sqlx::query_as(
        "SELECT count(*), \
           EXTRACT(EPOCH FROM (min(wired_at) + interval '1 hour' - now()))::float8 \
         FROM deliveries WHERE tenant_id = $1 AND chat_id = $2 AND status = 'wired' \
           AND wired_at > now() - interval '1 hour'",
    )
    .bind(tenant.as_str())
    .bind(chat_id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok((
        u32::try_from(count).unwrap_or(u32::MAX),
        frees_in_s.map(|s| Duration::from_secs_f64(s.max(0.0))),
    ))
}
