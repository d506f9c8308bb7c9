//! Step 1 of a delivery: the checks before a provider call, in order, and
//! how a message that fails one is finished without a call.
//!
//! The reply must be readable and name the subject's tenant; the tenant must
//! exist, be active and have a bridge; the ledger must not hold the reply as
//! sent already; the per-contact cap must leave room.

use std::{sync::Arc, time::Duration};

use switchyard_shared::{
    admission::{self, Admission},
    deliveries::{self, Claim},
    lanes::{
        LaneMessage,
        dead_letter::{DeadLetter, DeadLetterCode},
    },
    message_ids::ReplyId,
    replies::OutboundReply,
    tenants::Tenant,
};

use super::{Deliverer, StepResult, local_trouble};
use crate::{fair_share::GrantOutcome, metrics as m};

/// What clears a message for a provider call: its reply is readable and
/// agrees with the subject, its tenant is active with a bridge, the ledger
/// claimed it and the per-contact cap leaves room.
pub(super) struct Cleared {
    pub(super) reply: OutboundReply,
    pub(super) tenant: Arc<Tenant>,
    /// Failed tries before this one, and the time since the first.
    pub(super) attempts: u32,
    pub(super) age: Duration,
}

/// Why a message does not reach the provider, and so what becomes of it.
pub(super) enum Refusal {
    /// Dead-letter it, counting `attempts`; `ledger_row`: the ledger holds a
    /// row for the reply (by this id), to be marked dead too.
    DeadLetter {
        why: DeadLetter,
        attempts: u32,
        ledger_row: Option<ReplyId>,
    },
    /// Ack it and count it as dropped for this reason.
    Drop(&'static str),
    /// The ledger says the provider already accepted it: ack it.
    AlreadySent,
    /// Our own trouble (database, NATS): try again shortly.
    LocalTrouble(String),
}

impl Refusal {
    /// Dead-letter at once: nothing was attempted, the ledger holds no row.
    fn dead(why: DeadLetter) -> Self {
        Self::DeadLetter {
            why,
            attempts: 0,
            ledger_row: None,
        }
    }
}

impl Deliverer {
    /// Step 1: the checks before a send, in order; the first that fails decides.
    pub(super) async fn admit(
        &self,
        message: &LaneMessage,
        reply: Result<OutboundReply, serde_json::Error>,
    ) -> Result<Cleared, Refusal> {
        let reply = reply.map_err(|e| {
            Refusal::dead(DeadLetter::new(
                DeadLetterCode::MalformedReply,
                e.to_string(),
            ))
        })?;
        let tenant = self.sending_tenant(message, &reply).await?;
        let (attempts, age) = self.claim(&tenant, &reply).await?;
        self.check_contact_cap(&tenant, &reply, attempts).await?;
        Ok(Cleared {
            reply,
            tenant,
            attempts,
            age,
        })
    }

    /// The subject's tenant, if the reply agrees with it, it exists, is
    /// active and has a bridge.
    async fn sending_tenant(
        &self,
        message: &LaneMessage,
        reply: &OutboundReply,
    ) -> Result<Arc<Tenant>, Refusal> {
        let subject = message.tenant();
        let tenant = match admission::admit(&self.tenants, subject, Some(reply.tenant.as_str()))
            .await
        {
            Admission::Serve(tenant) => tenant,
            Admission::Mismatch => {
                metrics::counter!(m::TENANT_MISMATCH).increment(1);
                tracing::error!(tenant.id = %subject, "reply names another tenant than its subject; dead-lettered");
                return Err(Refusal::dead(DeadLetter::new(
                    DeadLetterCode::TenantMismatch,
                    "reply tenant disagrees with the subject",
                )));
            }
            Admission::LookupFailed(e) => {
                return Err(Refusal::LocalTrouble(format!("tenant lookup: {e}")));
            }
            refused @ (Admission::Unknown | Admission::Inactive) => {
                return Err(Refusal::Drop(refused.drop_reason().unwrap_or("refused")));
            }
        };
        if tenant.bridge_id.is_none() {
            return Err(Refusal::dead(DeadLetter::new(
                DeadLetterCode::NoBridge,
                "the tenant has no provisioned bridge",
            )));
        }
        Ok(tenant)
    }

    /// Records the attempt in the ledger: failed tries so far and the time
    /// since the first, unless the reply was already sent.
    async fn claim(
        &self,
        tenant: &Tenant,
        reply: &OutboundReply,
    ) -> Result<(u32, Duration), Refusal> {
        match deliveries::claim(&self.db, &tenant.id, &reply.reply_id, &reply.chat_id).await {
            Ok(Claim::Send { attempts, age }) => Ok((attempts, age)),
            Ok(Claim::AlreadyDone) => Err(Refusal::AlreadySent),
            Err(e) => Err(Refusal::LocalTrouble(format!("ledger: {e}"))),
        }
    }

    /// The per-contact cap: a part that would be the tenant's
    /// `contact_hourly_cap + 1`-th send to this chat within an hour is
    /// dead-lettered (`contact_cap`), not held: holding it would stall the
    /// tenant's other chats (the lane is in order), and a bot writing that
    /// much to one person is most likely looping. The letter is kept for an
    /// operator to replay once the hour has passed.
    async fn check_contact_cap(
        &self,
        tenant: &Tenant,
        reply: &OutboundReply,
        attempts: u32,
    ) -> Result<(), Refusal> {
        let cap = tenant.whatsapp.contact_hourly_cap;
        if cap == 0 {
            return Ok(());
        }
        let (sent, frees_in) =
            match deliveries::wired_last_hour(&self.db, &tenant.id, &reply.chat_id).await {
                Ok(counted) => counted,
                Err(e) => return Err(Refusal::LocalTrouble(format!("contact cap: {e}"))),
            };
        if sent < cap {
            return Ok(());
        }
        metrics::counter!(m::CONTACT_CAP).increment(1);
        tracing::warn!(tenant.id = %tenant.id, contact.sent_last_hour = sent, contact.frees_in_s = frees_in.map_or(0, |d| d.as_secs()), "per-contact hourly cap reached; reply dead-lettered");
        let detail = format!("{sent} sends to this chat in the last hour (cap {cap})");
        Err(Refusal::DeadLetter {
            why: DeadLetter::new(DeadLetterCode::ContactCap, detail),
            attempts,
            ledger_row: Some(reply.reply_id.clone()),
        })
    }

    /// Finishes a message that was not admitted (no provider call was made).
    pub(super) async fn refuse(&self, message: LaneMessage, refusal: Refusal) -> StepResult {
        let outcome = GrantOutcome::NotAttempted;
        match refusal {
            Refusal::DeadLetter {
                why,
                attempts,
                ledger_row: None,
            } => self.dead(message, why, attempts, outcome).await,
            Refusal::DeadLetter {
                why,
                attempts,
                ledger_row: Some(reply_id),
            } => {
                self.dead_in_ledger(message, &reply_id, why, attempts, outcome)
                    .await
            }
            Refusal::Drop(why) => {
                metrics::counter!(m::DROPPED, "reason" => why).increment(1);
                tracing::warn!(tenant.id = %message.tenant(), drop.reason = why, "reply dropped");
                message.ack().await;
                StepResult::Finished(outcome)
            }
            Refusal::AlreadySent => {
                metrics::counter!(m::ALREADY_SENT).increment(1);
                message.ack().await;
                StepResult::Finished(outcome)
            }
            Refusal::LocalTrouble(detail) => local_trouble(message, detail),
        }
    }
}
