//! The `deliveries` table, the sender's delivery ledger: every query on it.
//!
//! The sender checks it before a send ([`claim`]) and writes it after
//! ([`mark_wired`], [`record_failure`], [`release`], [`mark_dead`]), and counts a chat's
//! recent sends for the per-contact cap ([`wired_last_hour`]); the router asks
//! whether a `from_me` event is the echo of one of our own sends or a person
//! answering on the phone ([`echo_origin`]). Every query runs by tenant and
//! under the tenant's row-level security scope, since provider ids are
//! unique per account only.
//!
//! **Leases.** A claim takes the row for one attempt: `lease_owner` names the
//! sender instance, `lease_until` bounds the claim, and the owner extends it
//! ([`renew`]) while the attempt runs. While a live lease is held by another owner, [`claim`]
//! answers [`Claim::Leased`] and the caller waits: an attempt is under way
//! elsewhere. A known outcome clears the lease. An unknown one leaves the row
//! *in doubt*: its owner died mid-send (the lease runs out by itself) or the
//! call timed out (the lease is expired at once). The next claim of an
//! in-doubt row looks for the echo of the earlier attempt first: a `from_me`
//! event that arrived in the chat while the attempt was under way and matched
//! no recorded send is written on the row by [`echo_origin`]; if there is
//! one, the row is recorded as wired with the echo's id and nothing is sent
//! again ([`Claim::EchoArrived`]).
//!
//! What remains (the documented double-send window): an in-doubt attempt that
//! did reach the phone but whose echo had not been recorded when the row was
//! taken over (no router running, the router far behind, PostgreSQL down for
//! the router, or two in-doubt rows of one chat at once) is sent again. The
//! provider offers no idempotency key and no way to look a sent message up.

mod batched;

use std::time::Duration;

use sqlx::{PgPool, Row};

pub use batched::SendSteps;

use crate::{
    db,
    ids::TenantId,
    message_ids::{ChatId, ProviderMessageId, ReplyId},
};

/// Who claims reply parts, and for how long one attempt holds a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The sender instance (a process, not only a replica name: a restarted
    /// replica is another owner, so it checks its predecessor's attempts).
    pub owner: String,
    /// How long a claim (or a renewal) holds the row.
    pub duration: Duration,
}

/// What the ledger says about a reply part about to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Not yet accepted by the provider, and now leased to the caller: send.
    /// `attempts` failed tries so far; `age` since the first try;
    /// `in_doubt`: an earlier attempt's outcome is unknown (its owner died
    /// mid-send or its call timed out) and no echo of it was recorded, so
    /// this send may repeat it.
    Send {
        attempts: u32,
        age: Duration,
        in_doubt: bool,
    },
    /// Already wired: do not send again. (A dead-lettered part that comes
    /// back was replayed by an operator, and gets a fresh round of attempts.)
    AlreadyDone,
    /// An earlier attempt's outcome was unknown, but its echo had arrived:
    /// the row is now recorded as wired with the echo's id. Do not send.
    EchoArrived,
    /// Another sender holds a live lease on it: an attempt is under way
    /// there. Do not send; look again after at most `expires_in`.
    Leased { expires_in: Duration },
}

/// A row as [`claim`] finds it (an existing one).
#[derive(Debug, Clone, PartialEq)]
struct Found {
    status: String,
    lease_owner: Option<String>,
    /// Seconds until the lease ends (negative: ended); `None`: no lease.
    lease_left_s: Option<f64>,
    /// The recorded echo, unless that id is another row's own send.
    echo: Option<String>,
}

/// What [`claim`] does with an existing row: the pure part of the claim.
#[derive(Debug, Clone, PartialEq)]
enum ClaimStep {
    Done,
    Wait(Duration),
    Confirm(String),
    Take { reset: bool, in_doubt: bool },
}

/// Decides a claim on an existing row, for `owner`.
fn claim_step(row: &Found, owner: &str) -> ClaimStep {
    match row.status.as_str() {
        "wired" => return ClaimStep::Done,
        "dead" => {
            return ClaimStep::Take {
                reset: true,
                in_doubt: false,
            };
        }
        _ => {}
    }
    let Some(holder) = row.lease_owner.as_deref() else {
        return ClaimStep::Take {
            reset: false,
            in_doubt: false,
        };
    };
    let left = row.lease_left_s.unwrap_or(0.0);
    if left > 0.0 && holder != owner {
        return ClaimStep::Wait(Duration::from_secs_f64(left));
    }
    // An attempt that never reported its outcome: an owner that died (or lost
    // the message) mid-send, a call that timed out, or this owner's own
    // attempt that ended before the call (its release failed). The echo of
    // the earlier send, if it arrived, settles it.
    match &row.echo {
        Some(echo) => ClaimStep::Confirm(echo.clone()),
        None => ClaimStep::Take {
            reset: false,
            in_doubt: holder != owner || left <= 0.0,
        },
    }
}

/// Claims a reply part for one attempt under `lease` (creating its row on
/// first sight); see the module docs for what each answer means. The common
/// case, a part seen for the first time, is one group-committed statement
/// (`steps`); a part with a row is read and taken in a transaction on `db`,
/// its row locked.
pub async fn claim(
    db: &PgPool,
    steps: &SendSteps,
    tenant: &TenantId,
    reply_id: &ReplyId,
    chat_id: &ChatId,
    lease: &Lease,
) -> Result<Claim, sqlx::Error> {
    if steps.claim_new(tenant, reply_id, chat_id, lease).await? {
        return Ok(Claim::Send {
            attempts: 0,
            age: Duration::ZERO,
            in_doubt: false,
        });
    }
    let mut tx = db::begin_for_tenant(db, tenant).await?;
    let row = sqlx::query(
        "SELECT status, lease_owner, \
           EXTRACT(EPOCH FROM (lease_until - now()))::float8 AS lease_left_s, \
           CASE WHEN echo_message_id IS NOT NULL AND NOT EXISTS ( \
                  SELECT 1 FROM deliveries o WHERE o.tenant_id = d.tenant_id \
                  AND o.provider_message_id = d.echo_message_id) \
                THEN echo_message_id END AS echo \
         FROM deliveries d WHERE tenant_id = $1 AND reply_id = $2 FOR UPDATE",
    )
    .bind(tenant.as_str())
    .bind(reply_id.as_str())
    .fetch_one(&mut *tx)
    .await?;
    let found = Found {
        status: row.try_get("status")?,
        lease_owner: row.try_get("lease_owner")?,
        lease_left_s: row.try_get("lease_left_s")?,
        echo: row.try_get("echo")?,
    };
    let claim = match claim_step(&found, &lease.owner) {
        ClaimStep::Done => Claim::AlreadyDone,
        ClaimStep::Wait(expires_in) => Claim::Leased { expires_in },
        ClaimStep::Confirm(echo) => {
            sqlx::query(
                "UPDATE deliveries SET status = 'wired', wired_at = now(), \
                   provider_message_id = $3, attempts = attempts + 1, \
                   lease_owner = NULL, lease_until = NULL \
                 WHERE tenant_id = $1 AND reply_id = $2",
            )
            .bind(tenant.as_str())
            .bind(reply_id.as_str())
            .bind(&echo)
            .execute(&mut *tx)
            .await?;
            Claim::EchoArrived
        }
        ClaimStep::Take { reset, in_doubt } => {
            let row = sqlx::query(
                "UPDATE deliveries SET status = 'sending', last_attempt_at = now(), \
                   lease_owner = $3, lease_until = now() + make_interval(secs => $4), \
                   echo_message_id = NULL, \
                   attempts = CASE WHEN $5 THEN 0 ELSE attempts END, \
                   first_attempt_at = CASE WHEN $5 THEN now() ELSE first_attempt_at END \
                 WHERE tenant_id = $1 AND reply_id = $2 \
                 RETURNING attempts, EXTRACT(EPOCH FROM (now() - first_attempt_at))::float8 AS age_s",
            )
            .bind(tenant.as_str())
            .bind(reply_id.as_str())
            .bind(&lease.owner)
            .bind(lease.duration.as_secs_f64())
            .bind(reset)
            .fetch_one(&mut *tx)
            .await?;
            let attempts: i32 = row.try_get("attempts")?;
            let age_s: f64 = row.try_get("age_s")?;
            Claim::Send {
                attempts: u32::try_from(attempts).unwrap_or(0),
                age: Duration::from_secs_f64(age_s.max(0.0)),
                in_doubt,
            }
        }
    };
    tx.commit().await?;
    Ok(claim)
}

/// Extends `owner`'s live lease on a reply part by `duration` from now, while
/// its attempt runs. A lease that ended (a call that timed out leaves it
/// ended on purpose), was given up or was taken by another owner stays as it
/// is. Returns whether the lease was extended.
pub async fn renew(
    db: &PgPool,
    tenant: &TenantId,
    reply_id: &ReplyId,
    lease: &Lease,
) -> Result<bool, sqlx::Error> {
    let mut tx = db::begin_for_tenant(db, tenant).await?;
    let renewed = sqlx::query(
        "UPDATE deliveries SET lease_until = now() + make_interval(secs => $4) \
         WHERE tenant_id = $1 AND reply_id = $2 AND status = 'sending' \
           AND lease_owner = $3 AND lease_until > now()",
    )
    .bind(tenant.as_str())
    .bind(reply_id.as_str())
    .bind(&lease.owner)
    .bind(lease.duration.as_secs_f64())
    .execute(&mut *tx)
    .await?
    .rows_affected();
    tx.commit().await?;
    Ok(renewed == 1)
}

/// The provider accepted the send, with the id it gave the message; `None`
/// when the acceptance was not confirmed with an id, recorded as
/// `unconfirmed:<reply id>` so the row is still unique and never taken for an
/// echo's id. Ends the attempt's lease. Group-committed with the other
/// sends' marks (`steps`): it runs after every send.
pub async fn mark_wired(
    steps: &SendSteps,
    tenant: &TenantId,
    reply_id: &ReplyId,
    provider_message_id: Option<&ProviderMessageId>,
) -> Result<(), sqlx::Error> {
    steps
        .mark_wired(tenant, reply_id, provider_message_id)
        .await?;
    Ok(())
}

/// How a failed attempt ended, for [`record_failure`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// It counts towards the attempt limit.
    pub spent: bool,
    /// The provider may have acted anyway (a timeout, a connection lost
    /// mid-call): the row stays in doubt, its lease expired at once, so the
    /// next claim looks for the echo before sending again.
    pub in_doubt: bool,
}

/// A failed attempt of `owner`. A known failure ends the owner's lease; an
/// attempt in doubt leaves it expired (see [`Failure::in_doubt`]). A lease
/// that another owner has taken meanwhile is left alone.
pub async fn record_failure(
    db: &PgPool,
    tenant: &TenantId,
    reply_id: &ReplyId,
    owner: &str,
    failure: Failure,
    error: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = db::begin_for_tenant(db, tenant).await?;
    sqlx::query(
        "UPDATE deliveries SET attempts = attempts + $3::int, last_error = $4, \
           lease_owner = CASE WHEN lease_owner = $5 AND NOT $6 THEN NULL ELSE lease_owner END, \
           lease_until = CASE WHEN lease_owner = $5 AND NOT $6 THEN NULL \
                              WHEN lease_owner = $5 THEN least(lease_until, now()) \
                              ELSE lease_until END, \
           echo_message_id = CASE WHEN lease_owner = $5 AND NOT $6 THEN NULL ELSE echo_message_id END \
         WHERE tenant_id = $1 AND reply_id = $2",
    )
    .bind(tenant.as_str())
    .bind(reply_id.as_str())
    .bind(i32::from(failure.spent))
    .bind(error.chars().take(500).collect::<String>())
    .bind(owner)
    .bind(failure.in_doubt)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Gives up `owner`'s lease without a provider call having been made (the
/// attempt stopped before it, e.g. on our own trouble). A claim that took
/// over a row in doubt leaves it in doubt (`in_doubt`): its lease is
/// expired, not cleared, so the echo is still looked for.
pub async fn release(
    db: &PgPool,
    tenant: &TenantId,
    reply_id: &ReplyId,
    owner: &str,
    in_doubt: bool,
) -> Result<(), sqlx::Error> {
    let mut tx = db::begin_for_tenant(db, tenant).await?;
    sqlx::query(
        "UPDATE deliveries SET \
           lease_owner = CASE WHEN $4 THEN lease_owner END, \
           lease_until = CASE WHEN $4 THEN least(lease_until, now()) END \
         WHERE tenant_id = $1 AND reply_id = $2 AND status = 'sending' AND lease_owner = $3",
    )
    .bind(tenant.as_str())
    .bind(reply_id.as_str())
    .bind(owner)
    .bind(in_doubt)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// The reply part was dead-lettered (its lease ends).
pub async fn mark_dead(
    db: &PgPool,
    tenant: &TenantId,
    reply_id: &ReplyId,
) -> Result<(), sqlx::Error> {
    let mut tx = db::begin_for_tenant(db, tenant).await?;
    sqlx::query(
        "UPDATE deliveries SET status = 'dead', lease_owner = NULL, lease_until = NULL \
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
///
/// An undecided one is also written on the chat's attempt under way (or in
/// doubt) as its possible echo, when exactly one such attempt started within
/// `in_flight_window`: if that attempt's outcome is never reported (its owner
/// died, its call timed out), the next [`claim`] takes the echo as proof that
/// it went out instead of sending again.
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
    if !ours && under_way {
        note_possible_echo(
            &mut tx,
            tenant,
            chat_id,
            provider_message_id,
            in_flight_window,
        )
        .await?;
    }
    tx.commit().await?;
    Ok(if ours {
        EchoOrigin::Ours
    } else if under_way {
        EchoOrigin::Undecided
    } else {
        EchoOrigin::Human
    })
}

/// Writes an unknown `from_me` id on the chat's one attempt under way or in
/// doubt (lease set, no echo yet, started within `window`), unless that id is
/// already written on a row or two such attempts make it ambiguous.
async fn note_possible_echo(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    tenant: &TenantId,
    chat_id: &ChatId,
    provider_message_id: &ProviderMessageId,
    window: Duration,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "WITH candidates AS ( \
           SELECT reply_id FROM deliveries \
           WHERE tenant_id = $1 AND chat_id = $3 AND status = 'sending' \
             AND lease_owner IS NOT NULL AND echo_message_id IS NULL \
             AND last_attempt_at > now() - make_interval(secs => $4) \
           LIMIT 2), \
         one AS (SELECT min(reply_id) AS reply_id FROM candidates HAVING count(*) = 1) \
         UPDATE deliveries d SET echo_message_id = $2 FROM one \
         WHERE d.tenant_id = $1 AND d.reply_id = one.reply_id \
           AND NOT EXISTS (SELECT 1 FROM deliveries e \
                           WHERE e.tenant_id = $1 AND e.echo_message_id = $2)",
    )
    .bind(tenant.as_str())
    .bind(provider_message_id.as_str())
    .bind(chat_id.as_str())
    .bind(window.as_secs_f64())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sending(owner: Option<&str>, left_s: Option<f64>, echo: Option<&str>) -> Found {
        Found {
            status: "sending".to_owned(),
            lease_owner: owner.map(str::to_owned),
            lease_left_s: left_s,
            echo: echo.map(str::to_owned),
        }
    }

    #[test]
    fn a_wired_row_is_done_and_a_dead_one_starts_a_fresh_round() {
        let mut row = sending(None, None, None);
        row.status = "wired".to_owned();
        assert_eq!(claim_step(&row, "me"), ClaimStep::Done);
        row.status = "dead".to_owned();
        assert_eq!(
            claim_step(&row, "me"),
            ClaimStep::Take {
                reset: true,
                in_doubt: false
            }
        );
    }

    #[test]
    fn a_row_without_a_lease_is_taken_plainly() {
        assert_eq!(
            claim_step(&sending(None, None, None), "me"),
            ClaimStep::Take {
                reset: false,
                in_doubt: false
            }
        );
    }

    #[test]
    fn a_live_lease_of_another_owner_means_wait_until_it_ends_at_most() {
        assert_eq!(
            claim_step(&sending(Some("other"), Some(7.5), None), "me"),
            ClaimStep::Wait(Duration::from_millis(7500))
        );
        // Even with an echo: the owner is alive and will record its own answer.
        assert_eq!(
            claim_step(&sending(Some("other"), Some(7.5), Some("E1")), "me"),
            ClaimStep::Wait(Duration::from_millis(7500))
        );
    }

    #[test]
    fn an_expired_lease_is_taken_over_in_doubt_unless_its_echo_arrived() {
        assert_eq!(
            claim_step(&sending(Some("dead"), Some(-3.0), None), "me"),
            ClaimStep::Take {
                reset: false,
                in_doubt: true
            }
        );
        assert_eq!(
            claim_step(&sending(Some("dead"), Some(-3.0), Some("E1")), "me"),
            ClaimStep::Confirm("E1".to_owned())
        );
        // A timed-out call of this very owner is in doubt too.
        assert_eq!(
            claim_step(&sending(Some("me"), Some(0.0), None), "me"),
            ClaimStep::Take {
                reset: false,
                in_doubt: true
            }
        );
    }

    #[test]
    fn the_owners_own_live_lease_is_taken_again() {
        // Its earlier attempt stopped before the call and could not release.
        assert_eq!(
            claim_step(&sending(Some("me"), Some(12.0), None), "me"),
            ClaimStep::Take {
                reset: false,
                in_doubt: false
            }
        );
    }
}

/// What a recipient-side status did to the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusRecorded {
    /// The row moved forward.
    Moved,
    /// The row is already at or past this status (a late or repeated webhook).
    Stale,
    /// No send of this tenant has that provider id (yet: a status can overtake
    /// the sender's ledger write, or the id is not ours).
    Unknown,
}

impl StatusRecorded {
    pub fn as_str(self) -> &'static str {
        match self {
            StatusRecorded::Moved => "moved",
            StatusRecorded::Stale => "stale",
            StatusRecorded::Unknown => "unknown",
        }
    }
}

/// Records a Cloud API delivery status against the reply whose send got
/// `provider_id`, forward only (`sent` < `delivered` < `read`; `failed`
/// final): statuses arrive unordered and `read` may come without
/// `delivered`. `error` is Meta's code and title for a failure.
pub async fn record_recipient_status(
    pool: &PgPool,
    tenant: &TenantId,
    provider_id: &ProviderMessageId,
    status: &str,
    at_unix: Option<i64>,
    error: Option<&str>,
) -> Result<StatusRecorded, sqlx::Error> {
    let mut tx = db::begin_for_tenant(pool, tenant).await?;
    let moved = sqlx::query(
        "UPDATE deliveries SET recipient_status = $3, \
                recipient_status_at = COALESCE(to_timestamp($4), now()), recipient_error = $5 \
          WHERE tenant_id = $1 AND provider_message_id = $2 \
            AND (CASE recipient_status WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 \
                      WHEN 'read' THEN 3 WHEN 'failed' THEN 4 ELSE 0 END) \
              < (CASE $3 WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 \
                      WHEN 'read' THEN 3 WHEN 'failed' THEN 4 ELSE 0 END)",
    )
    .bind(tenant.as_str())
    .bind(provider_id.as_str())
    .bind(status)
    .bind(at_unix.map(|s| s as f64))
    .bind(error)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    let outcome = if moved > 0 {
        StatusRecorded::Moved
    } else {
        let exists = sqlx::query(
            "SELECT 1 FROM deliveries WHERE tenant_id = $1 AND provider_message_id = $2",
        )
        .bind(tenant.as_str())
        .bind(provider_id.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        if exists.is_some() {
            StatusRecorded::Stale
        } else {
            StatusRecorded::Unknown
        }
    };
    tx.commit().await?;
    Ok(outcome)
}
