//! Delivering one reply part: the step the dispatcher runs for each grant.
//!
//! The tenant is the subject's; the reply must agree. The bridge is the
//! tenant's own (the tenant row's, addressed by its `customer_ref`), never
//! anything named in the payload. The ledger is checked before and written
//! after the provider call; the retry policy turns the call's result into an
//! action, and this step carries it out except for what only the dispatcher
//! may do (scheduler pauses, putting the message back at the head of its lane).

use std::time::Duration;

use sqlx::PgPool;
use switchyard_shared::{
    deliveries,
    lanes::{
        LaneMessage,
        dead_letter::{self, DeadLetter, DeadLetterCode},
    },
    replies::OutboundReply,
    tenant_cache::TenantCache,
    wabridges::{WaBridgesClient, WaError},
};

use crate::{
    fair_share::{Outcome, PauseReason},
    ledger::{self, Claim},
    outbound::OutboundMessage,
    retry_policy::{Action, AttemptContext, SendPolicy},
};

/// What became of one grant's message.
#[derive(Debug)]
pub enum StepResult {
    /// Acked, dropped or dead-lettered: the message is gone from the lane.
    Finished(Outcome),
    /// Not finished: put it back at the head of its tenant's lane.
    PushBack {
        message: Box<LaneMessage>,
        outcome: Outcome,
        /// Hold the tenant for this reason, until lifted or for at most this long.
        tenant_pause: Option<(PauseReason, Option<Duration>)>,
        /// Hold every send of every replica this long (a 429).
        fleet_pause: Option<Duration>,
    },
}

/// Everything a delivery needs.
#[derive(Debug, Clone)]
pub struct Deliverer {
    pub db: PgPool,
    pub tenants: TenantCache,
    pub client: WaBridgesClient,
    pub js: async_nats::jetstream::Context,
    pub policy: SendPolicy,
}

/// A short pause for our own transient trouble (database, NATS).
const LOCAL_TROUBLE_PAUSE: Duration = Duration::from_secs(1);

impl Deliverer {
    /// Runs one message to a result.
    pub async fn deliver(&self, message: OutboundMessage) -> StepResult {
        let (message, reply) = message.into_parts();
        let reply: OutboundReply = match reply {
            Ok(r) => r,
            Err(e) => {
                return self
                    .dead(
                        message,
                        DeadLetter::new(DeadLetterCode::MalformedReply, e.to_string()),
                        0,
                        Outcome::NotAttempted,
                    )
                    .await;
            }
        };
        if &reply.tenant != message.tenant() {
            metrics::counter!("switchyard_sender_tenant_mismatch_total").increment(1);
            tracing::error!(tenant.id = %message.tenant(), "reply names another tenant than its subject; dead-lettered");
            return self
                .dead(
                    message,
                    DeadLetter::new(
                        DeadLetterCode::TenantMismatch,
                        "reply tenant disagrees with the subject",
                    ),
                    0,
                    Outcome::NotAttempted,
                )
                .await;
        }
        let tenant = match self.tenants.resolve(message.tenant()).await {
            Ok(Some(t)) => t,
            Ok(None) => return self.drop_message(message, "unknown_tenant").await,
            Err(e) => return self.local_trouble(message, format!("tenant lookup: {e}")),
        };
        if !tenant.is_active() {
            return self.drop_message(message, "inactive_tenant").await;
        }
        if tenant.bridge_id.is_none() {
            return self
                .dead(
                    message,
                    DeadLetter::new(
                        DeadLetterCode::NoBridge,
                        "the tenant has no provisioned bridge",
                    ),
                    0,
                    Outcome::NotAttempted,
                )
                .await;
        }
        let (attempts, age) =
            match ledger::claim(&self.db, &tenant.id, &reply.reply_id, &reply.chat_id).await {
                Ok(Claim::Send { attempts, age }) => (attempts, age),
                Ok(Claim::AlreadyDone) => {
                    metrics::counter!("switchyard_sender_already_sent_total").increment(1);
                    message.ack().await;
                    return StepResult::Finished(Outcome::NotAttempted);
                }
                Err(e) => return self.local_trouble(message, format!("ledger: {e}")),
            };
        let message = match self
            .check_contact_cap(&tenant, &reply, message, attempts)
            .await
        {
            Ok(message) => message,
            Err(finished) => return finished,
        };
        let started = std::time::Instant::now();
        let result = self
            .client
            .send_text(&tenant.id, &reply.chat_id, &reply.body)
            .await;
        metrics::histogram!("switchyard_sender_send_seconds")
            .record(started.elapsed().as_secs_f64());
        let spent = result.as_ref().err().is_some_and(WaError::spends_attempt);
        let ctx = AttemptContext {
            attempt: attempts + u32::from(spent || result.is_ok()),
            age,
            jitter_seed: seed(message.message_id()),
        };
        let action = self.policy.decide(result.as_ref().map(|_| ()), ctx);
        let class = result.as_ref().err().map_or("ok", WaError::class);
        metrics::counter!("switchyard_sender_attempts_total", "result" => class).increment(1);
        match action {
            Action::Done { confirmed } => {
                let provider_id = match &result {
                    Ok(receipt) if confirmed => receipt.message_id.clone(),
                    _ => format!("unconfirmed:{}", reply.reply_id),
                };
                if let Err(e) =
                    ledger::mark_wired(&self.db, &tenant.id, &reply.reply_id, &provider_id).await
                {
                    // Acking anyway: an unacked message would be sent again.
                    tracing::error!(tenant.id = %tenant.id, error = %e, "sent, but the ledger update failed");
                }
                message.ack().await;
                record_latency(&reply);
                StepResult::Finished(Outcome::Delivered)
            }
            Action::Requeue { pause_fleet_for } => {
                self.note_failure(&message, &reply, false, &result).await;
                StepResult::PushBack {
                    message: Box::new(message),
                    outcome: Outcome::RateLimited,
                    tenant_pause: None,
                    fleet_pause: Some(pause_fleet_for),
                }
            }
            Action::Retry { delay, .. } => {
                self.note_failure(&message, &reply, true, &result).await;
                StepResult::PushBack {
                    message: Box::new(message),
                    outcome: Outcome::Failed,
                    tenant_pause: Some((PauseReason::Backoff, Some(delay))),
                    fleet_pause: None,
                }
            }
            Action::HoldTenant {
                reason: why,
                for_at_most,
                alert,
            } => {
                self.note_failure(&message, &reply, false, &result).await;
                if alert {
                    metrics::counter!("switchyard_sender_tenant_held_total", "reason" => why.as_str()).increment(1);
                    tracing::error!(tenant.id = %tenant.id, hold.reason = why.as_str(), "sending held for this tenant until an operator resumes it; messages are kept");
                }
                StepResult::PushBack {
                    message: Box::new(message),
                    outcome: Outcome::Failed,
                    tenant_pause: Some((why, for_at_most)),
                    fleet_pause: None,
                }
            }
            Action::DeadLetter { reason: why } => {
                let detail = result
                    .as_ref()
                    .err()
                    .map_or_else(String::new, ToString::to_string);
                let dead = self
                    .dead(
                        message,
                        DeadLetter::new(why.code(), detail),
                        ctx.attempt,
                        Outcome::Failed,
                    )
                    .await;
                if let Err(e) = ledger::mark_dead(&self.db, &tenant.id, &reply.reply_id).await {
                    tracing::warn!(tenant.id = %tenant.id, error = %e, "cannot mark the ledger row dead");
                }
                dead
            }
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
        tenant: &switchyard_shared::tenants::Tenant,
        reply: &OutboundReply,
        message: LaneMessage,
        attempts: u32,
    ) -> Result<LaneMessage, StepResult> {
        let cap = tenant.whatsapp.contact_hourly_cap;
        if cap == 0 {
            return Ok(message);
        }
        let (sent, frees_in) =
            match deliveries::wired_last_hour(&self.db, &tenant.id, &reply.chat_id).await {
                Ok(counted) => counted,
                Err(e) => return Err(self.local_trouble(message, format!("contact cap: {e}"))),
            };
        if sent < cap {
            return Ok(message);
        }
        metrics::counter!("switchyard_sender_contact_cap_total").increment(1);
        tracing::warn!(tenant.id = %tenant.id, contact.sent_last_hour = sent, contact.frees_in_s = frees_in.map_or(0, |d| d.as_secs()), "per-contact hourly cap reached; reply dead-lettered");
        let detail = format!("{sent} sends to this chat in the last hour (cap {cap})");
        let finished = self
            .dead(
                message,
                DeadLetter::new(DeadLetterCode::ContactCap, detail),
                attempts,
                Outcome::NotAttempted,
            )
            .await;
        if let Err(e) = ledger::mark_dead(&self.db, &tenant.id, &reply.reply_id).await {
            tracing::warn!(tenant.id = %tenant.id, error = %e, "cannot mark the ledger row dead");
        }
        Err(finished)
    }

    async fn note_failure(
        &self,
        message: &LaneMessage,
        reply: &OutboundReply,
        spent: bool,
        result: &Result<switchyard_shared::wabridges::SendReceipt, WaError>,
    ) {
        let error = result
            .as_ref()
            .err()
            .map_or_else(String::new, ToString::to_string);
        if let Err(e) =
            ledger::record_failure(&self.db, message.tenant(), &reply.reply_id, spent, &error).await
        {
            tracing::warn!(tenant.id = %message.tenant(), error = %e, "cannot record the failed attempt");
        }
    }

    async fn drop_message(&self, message: LaneMessage, why: &'static str) -> StepResult {
        metrics::counter!("switchyard_sender_dropped_total", "reason" => why).increment(1);
        tracing::warn!(tenant.id = %message.tenant(), drop.reason = why, "reply dropped");
        message.ack().await;
        StepResult::Finished(Outcome::NotAttempted)
    }

    fn local_trouble(&self, message: LaneMessage, detail: String) -> StepResult {
        tracing::warn!(tenant.id = %message.tenant(), error = %detail, "cannot deliver now; will retry");
        StepResult::PushBack {
            message: Box::new(message),
            outcome: Outcome::NotAttempted,
            tenant_pause: Some((PauseReason::Backoff, Some(LOCAL_TROUBLE_PAUSE))),
            fleet_pause: None,
        }
    }

    async fn dead(
        &self,
        message: LaneMessage,
        why: DeadLetter,
        attempts: u32,
        outcome: Outcome,
    ) -> StepResult {
        match dead_letter::publish(&self.js, &message, &why, attempts).await {
            Ok(()) => {
                message.terminate().await;
                StepResult::Finished(outcome)
            }
            Err(e) => self.local_trouble(message, format!("dead letter: {e}")),
        }
    }
}

/// End-to-end latency, webhook received → provider accepted the reply.
fn record_latency(reply: &OutboundReply) {
    if let Some(received) = reply.received_at_ms {
        let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let ms = (now_ms - i128::from(received)).max(0) as f64;
        metrics::histogram!("switchyard_end_to_end_seconds").record(ms / 1000.0);
    }
}

/// A stable jitter seed from a message id (FNV-1a).
fn seed(id: &str) -> u64 {
    id.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    })
}
