//! The ledger's two steps of every send, group-committed: the claim of a
//! reply part seen for the first time (before the send) and the mark of an
//! accepted send (after it). Every claim and mark in flight at once shares
//! one statement and one commit ([`crate::group_commit`], migration 0021's
//! `switchyard_ledger_batch`): the claims wait for a commit anyway, and a
//! mark riding with them costs no commit of its own (at 500 events/s the
//! two steps in separate statements cost two commits per event). Each caller
//! still waits for its own row's commit, so claim-before-send and
//! mark-after-send hold exactly as with one statement per send.

use std::time::Duration;

use sqlx::{PgConnection, PgPool, Row};

use crate::{
    group_commit::{GroupCommit, Shape, Statement, rows_by_item},
    ids::TenantId,
    message_ids::{ChatId, ProviderMessageId, ReplyId},
};

use super::Lease;

/// Ledger statements in flight at once: the two slots each of the claims'
/// and the marks' steps before they shared one. With two, at 1,000 events/s
/// a send's mark waited behind claims, each send held its tenant's in-flight
/// slot longer, and the sender fell behind (its wait before a send rose from
/// 4–8 ms to 280–330 ms, `docs/benchmarks/cost.md`).
const LEDGER_SLOTS: usize = 4;

/// The group-committed steps of the sender's ledger. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SendSteps {
    ledger: GroupCommit<LedgerStatement>,
}

impl SendSteps {
    /// Starts the ledger's flush slots on `pool` (current tokio runtime),
    /// each busy slot gathering calls for `linger`.
    pub fn start(pool: &PgPool, linger: Duration) -> Self {
        Self {
            ledger: GroupCommit::start(
                pool.clone(),
                LedgerStatement,
                Shape {
                    slots: LEDGER_SLOTS,
                    ..Shape::worker_step(linger)
                },
            ),
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
        self.ledger
            .run(LedgerCall {
                tenant: tenant.as_str().to_owned(),
                reply: reply.as_str().to_owned(),
                step: Step::Claim {
                    chat: chat.as_str().to_owned(),
                    owner: lease.owner.clone(),
                    lease_s: lease.duration.as_secs_f64(),
                },
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
        self.ledger
            .run(LedgerCall {
                tenant: tenant.as_str().to_owned(),
                reply: reply.as_str().to_owned(),
                step: Step::Mark {
                    provider_id: provider_id.map(|id| id.as_str().to_owned()),
                },
            })
            .await
    }
}

/// One claim or mark of a tenant's reply part.
#[derive(Debug)]
struct LedgerCall {
    tenant: String,
    reply: String,
    step: Step,
}

#[derive(Debug)]
enum Step {
    Claim {
        chat: String,
        owner: String,
        lease_s: f64,
    },
    Mark {
        provider_id: Option<String>,
    },
}

impl LedgerCall {
    fn chat(&self) -> Option<&str> {
        match &self.step {
            Step::Claim { chat, .. } => Some(chat),
            Step::Mark { .. } => None,
        }
    }

    fn owner(&self) -> Option<&str> {
        match &self.step {
            Step::Claim { owner, .. } => Some(owner),
            Step::Mark { .. } => None,
        }
    }

    fn lease_s(&self) -> Option<f64> {
        match self.step {
            Step::Claim { lease_s, .. } => Some(lease_s),
            Step::Mark { .. } => None,
        }
    }

    fn provider_id(&self) -> Option<&str> {
        match &self.step {
            Step::Claim { .. } => None,
            Step::Mark { provider_id } => provider_id.as_deref(),
        }
    }
}

#[derive(Debug)]
struct LedgerStatement;

impl Statement for LedgerStatement {
    const NAME: &'static str = "ledger";
    type Item = LedgerCall;
    /// The claim created the row; the mark found it.
    type Answer = bool;

    fn call_name(item: &LedgerCall) -> &'static str {
        match item.step {
            Step::Claim { .. } => "claim_new",
            Step::Mark { .. } => "mark_wired",
        }
    }

    async fn run(
        &self,
        connection: &mut PgConnection,
        items: &[LedgerCall],
    ) -> Result<Vec<bool>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT item, done FROM switchyard_ledger_batch($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(
            items
                .iter()
                .map(|i| matches!(i.step, Step::Mark { .. }))
                .collect::<Vec<_>>(),
        )
        .bind(items.iter().map(|i| i.tenant.as_str()).collect::<Vec<_>>())
        .bind(items.iter().map(|i| i.reply.as_str()).collect::<Vec<_>>())
        .bind(items.iter().map(LedgerCall::chat).collect::<Vec<_>>())
        .bind(items.iter().map(LedgerCall::owner).collect::<Vec<_>>())
        .bind(items.iter().map(LedgerCall::lease_s).collect::<Vec<_>>())
        .bind(
            items
                .iter()
                .map(LedgerCall::provider_id)
                .collect::<Vec<_>>(),
        )
        .fetch_all(connection)
        .await?;
        rows_by_item(items.len(), rows)?
            .iter()
            .map(|rows| rows[0].try_get("done"))
            .collect()
    }
}
