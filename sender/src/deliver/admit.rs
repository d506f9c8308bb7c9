//! Step 1 of a delivery: the checks before a provider call, in order, and
//! how a message that fails one is finished without a call.
//!
//! The reply must be readable and name the subject's tenant; the tenant must
//! exist, be active and have a bridge; no attempt at the same reply may be
//! under way in this process, nor an accepted send of it be waiting for its
//! ledger write; the ledger must not hold the reply as sent already, nor
//! leased to another sender; the per-contact cap must leave room.

use std::{sync::Arc, time::Duration};

use switchyard_shared::{
    admission::{self, Admission},
    channel::Channel,
    deliveries::{self, Claim},
    lanes::{
        LaneMessage,
        dead_letter::{DeadLetter, DeadLetterCode},
    },
    message_ids::{ProviderMessageId, ReplyId},
    replies::OutboundReply,
    tenants::Tenant,
};

use super::{Deliverer, End, LOCAL_TROUBLE_PAUSE, ledger::UnderWay, local_trouble, push_back};
use crate::{
    fair_share::{GrantOutcome, PauseReason},
    metrics as m,
};

/// The longest a message waits before looking again at a reply leased to
/// another sender (that sender's answer usually comes well before its lease ends).
const LEASED_RECHECK_MAX: Duration = Duration::from_secs(2);
const LEASED_RECHECK_MIN: Duration = Duration::from_millis(100);

/// What clears a message for a provider call: its reply is readable and
/// agrees with the subject, its tenant is active with a bridge, the ledger
/// claimed it and the per-contact cap leaves room.
pub(super) struct Cleared {
    pub(super) reply: OutboundReply,
    pub(super) tenant: Arc<Tenant>,
    /// Failed tries before this one, and the time since the first.
    pub(super) attempts: u32,
    pub(super) age: Duration,
    /// This attempt, under way in this process until the delivery ends.
    pub(super) _under_way: UnderWay,
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
    /// An earlier attempt in doubt was settled by its echo: ack it.
    EchoArrived,
    /// Another sender holds the reply's lease (or another attempt at it is
    /// under way here): wait, at most this long, and look again.
    UnderWayElsewhere(Duration),
    /// This process sent it and its ledger write is still due: write it
    /// (with this provider id), then ack; never send again.
    Unrecorded {
        reply_id: ReplyId,
        provider_id: Option<ProviderMessageId>,
    },
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
        // Sent by this process already, only its ledger write is due: that
        // needs nothing else (not even the tenant's row).
        if let Some(provider_id) = self.ledger.unrecorded(message.tenant(), &reply.reply_id) {
            return Err(Refusal::Unrecorded {
                reply_id: reply.reply_id,
                provider_id,
            });
        }
        let tenant = self.sending_tenant(message, &reply).await?;
        let Some(under_way) = self.ledger.begin(&tenant.id, &reply.reply_id) else {
            return Err(Refusal::UnderWayElsewhere(LOCAL_TROUBLE_PAUSE));
        };
        let (attempts, age, in_doubt) = self.claim(&tenant, &reply).await?;
        if let Err(refusal) = self.check_contact_cap(&tenant, &reply, attempts).await {
            if matches!(refusal, Refusal::LocalTrouble(_)) {
                // No call was made: let the lease go (an earlier attempt in
                // doubt stays in doubt). If this fails too, the lease lets
                // this sender back in and others after it ends.
                let released = deliveries::release(
                    &self.db,
                    &tenant.id,
                    &reply.reply_id,
                    &self.ledger.lease().owner,
                    in_doubt,
                )
                .await;
                if let Err(e) = released {
                    tracing::warn!(tenant.id = %tenant.id, error = %e, "cannot release the ledger lease");
                }
            }
            return Err(refusal);
        }
        Ok(Cleared {
            reply,
            tenant,
            attempts,
            age,
            _under_way: under_way,
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
        // A Cloud API tenant sends on its phone number id (checked when its
        // credential is read); only a WA Bridges tenant needs a bridge.
        if tenant.channel == Channel::Wabridges && tenant.bridge_id.is_none() {
            return Err(Refusal::dead(DeadLetter::new(
                DeadLetterCode::NoBridge,
                "the tenant has no provisioned bridge",
            )));
        }
        Ok(tenant)
    }

    /// Claims the reply in the ledger under this sender's lease: failed tries
    /// so far, the time since the first and whether an earlier attempt is in
    /// doubt; unless the reply was already sent or another sender is sending it.
    async fn claim(
        &self,
        tenant: &Tenant,
        reply: &OutboundReply,
    ) -> Result<(u32, Duration, bool), Refusal> {
        let lease = self.ledger.lease();
        match deliveries::claim(
            &self.db,
            &self.steps,
            &tenant.id,
            &reply.reply_id,
            &reply.chat_id,
            lease,
        )
        .await
        {
            Ok(Claim::Send {
                attempts,
                age,
                in_doubt,
            }) => {
                if in_doubt {
                    metrics::counter!(m::IN_DOUBT, "resolution" => "resent").increment(1);
                    // Within an episode of provider trouble (timeouts), that
                    // episode's one warning already said so.
                    if self.trouble.is_open(&tenant.id) {
                        tracing::debug!(tenant.id = %tenant.id, delivery.attempts = attempts, "an earlier attempt's outcome is unknown and no echo of it arrived; sending again");
                    } else {
                        tracing::warn!(tenant.id = %tenant.id, delivery.attempts = attempts, "an earlier attempt's outcome is unknown (its sender died or its call timed out) and no echo of it arrived; sending again");
                    }
                }
                Ok((attempts, age, in_doubt))
            }
            Ok(Claim::AlreadyDone) => Err(Refusal::AlreadySent),
            Ok(Claim::EchoArrived) => Err(Refusal::EchoArrived),
            Ok(Claim::Leased { expires_in }) => Err(Refusal::UnderWayElsewhere(
                expires_in.clamp(LEASED_RECHECK_MIN, LEASED_RECHECK_MAX),
            )),
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
    pub(super) async fn refuse(&self, message: &LaneMessage, refusal: Refusal) -> End {
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
                End::Finished(outcome)
            }
            Refusal::AlreadySent => {
                metrics::counter!(m::ALREADY_SENT).increment(1);
                message.ack().await;
                End::Finished(outcome)
            }
            Refusal::EchoArrived => {
                metrics::counter!(m::IN_DOUBT, "resolution" => "echo_found").increment(1);
                tracing::info!(tenant.id = %message.tenant(), "an earlier attempt in doubt was settled by its echo; not sent again");
                message.ack().await;
                End::Finished(outcome)
            }
            Refusal::UnderWayElsewhere(wait) => {
                metrics::counter!(m::LEASE_WAITS).increment(1);
                tracing::debug!(tenant.id = %message.tenant(), wait_ms = wait.as_millis() as u64, "another attempt at this reply is under way; waiting");
                push_back(outcome, Some((PauseReason::Backoff, Some(wait))), None)
            }
            Refusal::Unrecorded {
                reply_id,
                provider_id,
            } => {
                let tenant = message.tenant();
                let written = self
                    .ledger
                    .record_wired(&self.steps, tenant, &reply_id, provider_id.as_ref())
                    .await;
                match written {
                    Ok(()) => {
                        message.ack().await;
                        End::Finished(outcome)
                    }
                    Err(e) => local_trouble(message, format!("ledger write after a send: {e}")),
                }
            }
            Refusal::LocalTrouble(detail) => local_trouble(message, detail),
        }
    }
}
