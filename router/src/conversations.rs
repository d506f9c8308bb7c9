//! Conversations: one row per (tenant, chat), created by the first turn that
//! got through (or a takeover), always read and written inside the tenant's
//! row-level security scope and with an explicit tenant filter (belt and
//! braces).
//!
//! The router's step reads a conversation before the bot call and records it
//! after, each in one statement, group-committed with other turns' steps
//! ([`TurnSteps`], [`record_inbound`]): no
//! connection and no row lock is held while a tenant's bot takes its time (a
//! slow bot once held the pool's connections and timed out every other
//! tenant's steps). Two steps of one chat never overlap: the lane runner
//! handles a chat's messages in order.

use std::time::Duration;

use backon::{ExponentialBuilder, Retryable as _};
use sqlx::{Postgres, Row, Transaction, postgres::PgRow};
use switchyard_shared::{
    contacts::{self, Contact, PhoneNumber},
    ids::TenantId,
    message_ids::ChatId,
};

use crate::{
    backpressure::{self, Fault},
    turn_steps::TurnSteps,
};

/// What the bot may know about a chat between turns.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub chat_id: ChatId,
    /// Whether this is the first message we have seen in this chat.
    pub is_new: bool,
    /// Option ids of the menu last shown, in display order (for numeric answers).
    pub last_menu: Vec<String>,
    /// A person answered from the phone recently: the bot stays quiet here.
    pub silenced: bool,
    /// The row exists and its `last_inbound_at` is younger than an hour: a
    /// turn that shows no menu changes nothing worth a transaction (see
    /// [`Conversation::needs_record`]).
    pub touched_recently: bool,
}

impl Conversation {
    /// Whether the turn must be recorded: a new chat (its row makes the next
    /// message not new), a menu to remember, or a `last_inbound_at` older
    /// than an hour. The column is for operators (when did this chat last
    /// write to us, to the hour); rewriting it on every message cost one
    /// transaction of the four or five per event (issue 20).
    pub fn needs_record(&self, shows_menu: bool) -> bool {
        self.is_new || shows_menu || !self.touched_recently
    }
}

/// What a turn reads before its bot call: the conversation as it stands
/// (without creating it) and the sender's contact records in this tenant
/// (none when the sender has no phone number), in one statement
/// (`switchyard_turn_context`, migration 0017): it sets the tenant's
/// row-level security scope itself, so on the pool it is one round trip
/// instead of a transaction of four; inside a tenant-scoped transaction (a
/// Cloud API tenant records the chat's window in the same one) it leaves the
/// caller's scope as it was. The step holds no connection while the bot runs.
/// Outside a transaction the router reads through [`TurnSteps::read`] (the
/// same read, group-committed).
///
/// A chat with no row yet is new; it stays new until a turn is recorded, so
/// the retry of a first message whose bot call failed still says `is_new`.
pub async fn read_turn<'e, E>(
    executor: E,
    tenant: &TenantId,
    chat_id: &ChatId,
    phone: Option<&PhoneNumber>,
) -> Result<(Conversation, Vec<Contact>), sqlx::Error>
where
    E: sqlx::Executor<'e, Database = Postgres>,
{
    let rows = sqlx::query("SELECT * FROM switchyard_turn_context($1, $2, $3)")
        .bind(tenant.as_str())
        .bind(chat_id.as_str())
        .bind(phone.map(PhoneNumber::as_str))
        .fetch_all(executor)
        .await?;
    turn_of(chat_id, &rows)
}

/// A turn's read from its rows (`switchyard_turn_context`, or one item's
/// rows of `switchyard_turn_context_batch`): the conversation's columns on
/// the first row, a contact record on every row that has one.
pub(crate) fn turn_of(
    chat_id: &ChatId,
    rows: &[PgRow],
) -> Result<(Conversation, Vec<Contact>), sqlx::Error> {
    let Some(first) = rows.first() else {
        return Err(sqlx::Error::RowNotFound);
    };
    let exists: bool = first.try_get("conversation_exists")?;
    let conversation = if exists {
        let last_menu: Option<serde_json::Value> = first.try_get("last_menu")?;
        Conversation {
            chat_id: chat_id.clone(),
            is_new: false,
            last_menu: last_menu
                .and_then(|v| serde_json::from_value(v).ok())
                .unwrap_or_default(),
            silenced: first.try_get("silenced")?,
            touched_recently: first.try_get("touched_recently")?,
        }
    } else {
        Conversation {
            chat_id: chat_id.clone(),
            is_new: true,
            last_menu: Vec::new(),
            silenced: false,
            touched_recently: false,
        }
    };
    let mut records = Vec::new();
    for row in rows {
        // A row without a record: the conversation's columns alone.
        if row.try_get::<Option<i64>, _>("id")?.is_some() {
            records.push(contacts::contact_of(row)?);
        }
    }
    Ok((conversation, records))
}

/// Records an inbound message that was handled, group-committed with other
/// turns' records (`steps`; `switchyard_record_turn_batch`, migration 0018,
/// which sets each row's tenant scope itself): creates the conversation or
/// touches it (`last_inbound_at`), and remembers `menu` when the turn showed
/// one (otherwise the last menu stays).
pub async fn record_inbound(
    steps: &TurnSteps,
    tenant: &TenantId,
    chat_id: &ChatId,
    menu: Option<&[String]>,
) -> Result<(), sqlx::Error> {
    steps.record(tenant, chat_id, menu).await
}
/// How often [`record_after_turn`] tries, and its waits: enough tries for
/// every connection of a pool an outage left broken to fail once (each fails
/// at once), about a second and a half of waits when the database stays
/// away; and the bound on the whole, since a try against an unreachable
/// server may take the pool's acquire timeout (2 s by default) before it
/// fails: the turn then reports our trouble as before, a few seconds later.
const AFTER_TURN_TRIES: usize = 12;
const AFTER_TURN_MIN_DELAY: Duration = Duration::from_millis(10);
const AFTER_TURN_MAX_DELAY: Duration = Duration::from_millis(200);
const AFTER_TURN_BOUND: Duration = Duration::from_secs(4);

/// [`record_inbound`] after a bot turn whose replies are out, retried in
/// place while the failure is our own trouble (a broken connection, the pool,
/// the server away), so the turn is not run again for a failed record: a
/// connection a database outage left broken fails its first statement, and
/// the pools of the router and the sender do not ping a connection before
/// handing it out (`switchyard_shared::db::pool_with_role`). The record is an
/// upsert, so one that committed before its answer was lost can run again.
/// An error of the message's data, or our trouble past the tries, is returned.
pub async fn record_after_turn(
    steps: &TurnSteps,
    tenant: &TenantId,
    chat_id: &ChatId,
    menu: Option<&[String]>,
) -> Result<(), sqlx::Error> {
    let tries = ExponentialBuilder::default()
        .with_min_delay(AFTER_TURN_MIN_DELAY)
        .with_max_delay(AFTER_TURN_MAX_DELAY)
        .with_max_times(AFTER_TURN_TRIES - 1);
    let recording = (|| record_inbound(steps, tenant, chat_id, menu))
        .retry(tries)
        .when(|e| backpressure::db_fault(e) == Fault::Ours)
        .notify(|e, after| {
            tracing::debug!(tenant.id = %tenant, error = %e, retry_in_ms = after.as_millis(), "conversation record after a turn failed; retrying in place");
        });
    // A try cut short here is safe: one statement, which commits or not.
    tokio::time::timeout(AFTER_TURN_BOUND, recording)
        .await
        .unwrap_or(Err(sqlx::Error::PoolTimedOut))
}

/// Human takeover: keeps the bot silent in this chat for `minutes` from now
/// (creating the conversation if needed). A later takeover extends it.
pub async fn silence(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &TenantId,
    chat_id: &ChatId,
    minutes: u32,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO conversations (tenant_id, chat_id, silenced_until) \
         VALUES ($1, $2, now() + make_interval(mins => $3)) \
         ON CONFLICT (tenant_id, chat_id) DO UPDATE SET silenced_until = \
           greatest(coalesce(conversations.silenced_until, now()), EXCLUDED.silenced_until)",
    )
    .bind(tenant.as_str())
    .bind(chat_id.as_str())
    .bind(i32::try_from(minutes).unwrap_or(i32::MAX))
    .execute(&mut **tx)
    .await?;
    Ok(())
}
