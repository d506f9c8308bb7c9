//! The router's two steps of every turn, group-committed: the read before
//! the bot call (`switchyard_turn_context`) and the record after it
//! (`switchyard_record_turn`), each for many turns in one statement
//! ([`switchyard_shared::group_commit`], migration 0018). A turn still waits
//! for its own row: the read sees what committed before it, the record has
//! committed when it returns. A Cloud API tenant's read stays in its
//! transaction ([`crate::conversations::read_turn`]): it records the chat's
//! window in the same one.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};
use switchyard_shared::{
    contacts::{Contact, PhoneNumber},
    group_commit::{GroupCommit, Shape, Statement, rows_by_item},
    ids::TenantId,
    message_ids::ChatId,
};

use crate::conversations::{Conversation, turn_of};

/// The group-committed steps of the router's turns. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TurnSteps {
    reads: GroupCommit<ReadTurns>,
    records: GroupCommit<RecordTurns>,
}

impl TurnSteps {
    /// Starts the steps' flush slots on `pool` (current tokio runtime),
    /// each busy slot gathering calls for `linger`.
    pub fn start(pool: &PgPool, linger: Duration) -> Self {
        Self {
            reads: GroupCommit::start(pool.clone(), ReadTurns, Shape::worker_step(linger)),
            records: GroupCommit::start(pool.clone(), RecordTurns, Shape::worker_step(linger)),
        }
    }

    /// What a turn reads before its bot call (see
    /// [`crate::conversations::read_turn`]).
    pub async fn read(
        &self,
        tenant: &TenantId,
        chat_id: &ChatId,
        phone: Option<&PhoneNumber>,
    ) -> Result<(Conversation, Vec<Contact>), sqlx::Error> {
        self.reads
            .run(TurnKey {
                tenant: tenant.as_str().to_owned(),
                chat: chat_id.clone(),
                phone: phone.map(|p| p.as_str().to_owned()),
            })
            .await?
    }

    /// Records a handled inbound message (see
    /// [`crate::conversations::record_inbound`]).
    pub(crate) async fn record(
        &self,
        tenant: &TenantId,
        chat_id: &ChatId,
        menu: Option<&[String]>,
    ) -> Result<(), sqlx::Error> {
        self.records
            .run(TurnRecord {
                tenant: tenant.as_str().to_owned(),
                chat: chat_id.as_str().to_owned(),
                menu: menu.map(|m| serde_json::json!(m)),
            })
            .await
    }
}

#[derive(Debug)]
struct TurnKey {
    tenant: String,
    chat: ChatId,
    phone: Option<String>,
}

#[derive(Debug)]
struct ReadTurns;

impl Statement for ReadTurns {
    const NAME: &'static str = "turn_context";
    type Item = TurnKey;
    /// A row that cannot be decoded fails its own turn only.
    type Answer = Result<(Conversation, Vec<Contact>), sqlx::Error>;

    async fn run(
        &self,
        connection: &mut PgConnection,
        items: &[TurnKey],
    ) -> Result<Vec<Self::Answer>, sqlx::Error> {
        let rows = sqlx::query("SELECT * FROM switchyard_turn_context_batch($1, $2, $3)")
            .bind(items.iter().map(|i| i.tenant.as_str()).collect::<Vec<_>>())
            .bind(items.iter().map(|i| i.chat.as_str()).collect::<Vec<_>>())
            .bind(items.iter().map(|i| i.phone.as_deref()).collect::<Vec<_>>())
            .fetch_all(connection)
            .await?;
        Ok(rows_by_item(items.len(), rows)?
            .iter()
            .zip(items)
            .map(|(rows, item)| turn_of(&item.chat, rows))
            .collect())
    }
}

#[derive(Debug)]
struct TurnRecord {
    tenant: String,
    chat: String,
    menu: Option<serde_json::Value>,
}

#[derive(Debug)]
struct RecordTurns;

impl Statement for RecordTurns {
    const NAME: &'static str = "record_turn";
    type Item = TurnRecord;
    type Answer = ();

    async fn run(
        &self,
        connection: &mut PgConnection,
        items: &[TurnRecord],
    ) -> Result<Vec<()>, sqlx::Error> {
        let rows = sqlx::query("SELECT item FROM switchyard_record_turn_batch($1, $2, $3)")
            .bind(items.iter().map(|i| i.tenant.as_str()).collect::<Vec<_>>())
            .bind(items.iter().map(|i| i.chat.as_str()).collect::<Vec<_>>())
            .bind(items.iter().map(|i| i.menu.clone()).collect::<Vec<_>>())
            .fetch_all(connection)
            .await?;
        Ok(rows_by_item(items.len(), rows)?
            .into_iter()
            .map(|_| ())
            .collect())
    }
}
