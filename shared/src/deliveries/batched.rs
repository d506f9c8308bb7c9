//! The ledger's two steps of every send, group-committed: the claim of a
//! reply part seen for the first time (before the send) and the mark of an
//! accepted send (after it). Many sends in flight at once share one
//! statement ([`crate::group_commit`], migration 0018); each caller still
//! waits for its own row's commit, so claim-before-send and
//! mark-after-send hold exactly as with one statement per send.

use std::time::Duration;

use sqlx::{PgConnection, PgPool, Row};

use crate::{
    group_commit::{GroupCommit, Shape, Statement, rows_by_item},
    ids::TenantId,
    message_ids::{ChatId, ProviderMessageId, ReplyId},
};

use super::Lease;

/// The group-committed steps of the sender's ledger. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SendSteps {
    claims: GroupCommit<ClaimNew>,
    marks: GroupCommit<MarkWired>,
}

impl SendSteps {
    /// Starts the steps' flush slots on `pool` (current tokio runtime),
    /// each busy slot gathering calls for `linger`.
    pub fn start(pool: &PgPool, linger: Duration) -> Self {
        Self {
            claims: GroupCommit::start(pool.clone(), ClaimNew, Shape::worker_step(linger)),
            marks: GroupCommit::start(pool.clone(), MarkWired, Shape::worker_step(linger)),
        }
    }

    /// Takes a part that has no ledger row yet under `lease`; false when the
    /// row exists (`switchyard_claim_new`).
    pub(super) async fn claim_new(
        &self,
        tenant: &TenantId,
        reply: &ReplyId,
        chat: &ChatId,
        lease: &Lease,
    ) -> Result<bool, sqlx::Error> {
        self.claims
            .run(NewClaim {
                tenant: tenant.as_str().to_owned(),
                reply: reply.as_str().to_owned(),
                chat: chat.as_str().to_owned(),
                owner: lease.owner.clone(),
                lease_s: lease.duration.as_secs_f64(),
            })
            .await
    }

    /// Records an accepted send (`switchyard_mark_wired`); false when the
    /// tenant has no such row.
    pub(super) async fn mark_wired(
        &self,
        tenant: &TenantId,
        reply: &ReplyId,
        provider_id: Option<&ProviderMessageId>,
    ) -> Result<bool, sqlx::Error> {
        self.marks
            .run(Wired {
                tenant: tenant.as_str().to_owned(),
                reply: reply.as_str().to_owned(),
                provider_id: provider_id.map(|id| id.as_str().to_owned()),
            })
            .await
    }
}

#[derive(Debug)]
struct NewClaim {
    tenant: String,
    reply: String,
    chat: String,
    owner: String,
    lease_s: f64,
}

#[derive(Debug)]
struct ClaimNew;

impl Statement for ClaimNew {
    const NAME: &'static str = "claim_new";
    type Item = NewClaim;
    type Answer = bool;

    async fn run(
        &self,
        connection: &mut PgConnection,
        items: &[NewClaim],
    ) -> Result<Vec<bool>, sqlx::Error> {
        let rows =
            sqlx::query("SELECT item, created FROM switchyard_claim_new_batch($1, $2, $3, $4, $5)")
                .bind(items.iter().map(|i| i.tenant.as_str()).collect::<Vec<_>>())
                .bind(items.iter().map(|i| i.reply.as_str()).collect::<Vec<_>>())
                .bind(items.iter().map(|i| i.chat.as_str()).collect::<Vec<_>>())
                .bind(items.iter().map(|i| i.owner.as_str()).collect::<Vec<_>>())
                .bind(items.iter().map(|i| i.lease_s).collect::<Vec<_>>())
                .fetch_all(connection)
                .await?;
        first_of_each(items.len(), rows, "created")
    }
}

#[derive(Debug)]
struct Wired {
    tenant: String,
    reply: String,
    provider_id: Option<String>,
}

#[derive(Debug)]
struct MarkWired;

impl Statement for MarkWired {
    const NAME: &'static str = "mark_wired";
    type Item = Wired;
    type Answer = bool;

    async fn run(
        &self,
        connection: &mut PgConnection,
        items: &[Wired],
    ) -> Result<Vec<bool>, sqlx::Error> {
        let rows = sqlx::query("SELECT item, marked FROM switchyard_mark_wired_batch($1, $2, $3)")
            .bind(items.iter().map(|i| i.tenant.as_str()).collect::<Vec<_>>())
            .bind(items.iter().map(|i| i.reply.as_str()).collect::<Vec<_>>())
            .bind(
                items
                    .iter()
                    .map(|i| i.provider_id.as_deref())
                    .collect::<Vec<_>>(),
            )
            .fetch_all(connection)
            .await?;
        first_of_each(items.len(), rows, "marked")
    }
}

/// Each item's answer: the `column` of its (one) row.
fn first_of_each(
    items: usize,
    rows: Vec<sqlx::postgres::PgRow>,
    column: &str,
) -> Result<Vec<bool>, sqlx::Error> {
    rows_by_item(items, rows)?
        .iter()
        .map(|rows| rows[0].try_get(column))
        .collect()
}
