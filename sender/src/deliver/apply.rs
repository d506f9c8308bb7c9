//! Step 3 of a delivery: carrying out what the retry policy makes of the
//! provider's answer (record and ack, back to the lane with a pause, or dead
//! letter), and what the ledger is told of it.
//!
//! A send the provider accepted is acked only once the ledger holds it: an
//! acked message whose row still says `sending` would be sent again by a
//! later replay. The write is retried (`ledger::SendLedger::record_wired`)
//! while the message is kept alive; if PostgreSQL stays away longer, the
//! message goes back to its lane unacked and its next turn writes the ledger
//! instead of sending.

use switchyard_shared::{
    cloud_api::Outcome,
    deliveries::{self, Failure},
    ids::TenantId,
    lanes::{LaneMessage, dead_letter::DeadLetter},
    notifications::{self, Notification, NotificationEvent},
    replies::OutboundReply,
    tenant_metrics,
    wabridges::SendReceipt,
};

use super::{
    Deliverer, End, LOCAL_TROUBLE_PAUSE, Sent, admit::Cleared, failure::SendFailure, push_back,
};
use crate::{
    fair_share::{GrantOutcome, PauseReason},
    metrics as m,
    retry_policy::Action,
};

impl Deliverer {
    /// Step 3: carries out what the retry policy makes of the answer.
    pub(super) async fn apply(&self, message: &LaneMessage, cleared: Cleared, sent: Sent) -> End {
        let action = match &sent.result {
            Ok(_) => self.policy.decide(Ok(()), sent.ctx),
            Err(SendFailure::Wa(e)) => self.policy.decide(Err(e), sent.ctx),
            Err(SendFailure::Cloud(e)) => {
                self.cloud_refused(&cleared.tenant.id, e).await;
                self.policy.decide_cloud(e, sent.ctx)
            }
        };
        match action {
            Action::Done { confirmed } => {
                if sent.result.is_ok() {
                    self.trouble.succeeded(&cleared.tenant.id);
                }
                self.wired(message, &cleared, &sent, confirmed).await
            }
            Action::Requeue { pause_fleet_for } => {
                self.note_failure(message, &cleared.reply, false, &sent)
                    .await;
                push_back(GrantOutcome::RateLimited, None, Some(pause_fleet_for))
            }
            Action::Retry { delay, .. } => {
                self.trouble
                    .failed(&cleared.tenant.id, failure_class(&sent.result), Some(delay));
                self.note_failure(message, &cleared.reply, true, &sent)
                    .await;
                push_back(
                    GrantOutcome::Failed,
                    Some((PauseReason::Backoff, Some(delay))),
                    None,
                )
            }
            Action::HoldTenant {
                reason: why,
                for_at_most,
                alert,
            } => {
                self.note_failure(message, &cleared.reply, false, &sent)
                    .await;
                if !alert {
                    self.trouble.failed(
                        &cleared.tenant.id,
                        failure_class(&sent.result),
                        for_at_most,
                    );
                }
                if alert {
                    metrics::counter!(m::TENANT_HELD, "reason" => why.as_str()).increment(1);
                    tracing::error!(tenant.id = %cleared.tenant.id, hold.reason = why.as_str(), "sending held for this tenant until an operator resumes it; messages are kept");
                }
                if why == PauseReason::Restricted {
                    self.tell_restricted(&cleared.tenant.id, &cleared.reply, sent.ctx.attempt)
                        .await;
                }
                push_back(GrantOutcome::Failed, Some((why, for_at_most)), None)
            }
            Action::DeadLetter { reason: why } => {
                let detail = dead_letter_detail(&sent.result);
                self.dead_in_ledger(
                    message,
                    &cleared.reply.reply_id,
                    DeadLetter::new(why.code(), detail),
                    sent.ctx.attempt,
                    GrantOutcome::Failed,
                )
                .await
            }
        }
    }

    /// A probe met provider trouble again: back to its lane, no attempt
    /// spent and no tenant paused (the outage holds every tenant).
    pub(super) async fn probe_failed(
        &self,
        message: &LaneMessage,
        cleared: &Cleared,
        sent: &Sent,
    ) -> End {
        self.note_failure(message, &cleared.reply, false, sent)
            .await;
        push_back(GrantOutcome::Failed, None, None)
    }

    /// The provider accepted the send: record it, then ack.
    async fn wired(
        &self,
        message: &LaneMessage,
        cleared: &Cleared,
        sent: &Sent,
        confirmed: bool,
    ) -> End {
        let Cleared { reply, tenant, .. } = cleared;
        let provider_id = match &sent.result {
            Ok(receipt) if confirmed => Some(&receipt.message_id),
            _ => None,
        };
        let written = self
            .ledger
            .record_wired(&self.steps, &tenant.id, &reply.reply_id, provider_id)
            .await;
        record_latency(&tenant.id, reply);
        match written {
            // The ledger says it went out: a lost ack costs a redelivery
            // that the claim answers "already sent", never a second send.
            Ok(()) => {
                message.ack_unconfirmed().await;
                End::Finished(GrantOutcome::Delivered)
            }
            // Sent, not recorded (logged by the ledger): no ack, since a
            // later replay would send it again; its next turn writes the
            // ledger only. The call was made, so the grant stays spent.
            Err(_) => push_back(
                GrantOutcome::Delivered,
                Some((PauseReason::Backoff, Some(LOCAL_TROUBLE_PAUSE))),
                None,
            ),
        }
    }

    /// Tells the tenant its number is restricted (`bridge.restricted`). The
    /// hold stops its sends, so one restriction is told once; the id names
    /// the reply and attempt that met it, so a repeat is deduplicated.
    async fn tell_restricted(&self, tenant: &TenantId, reply: &OutboundReply, attempt: u32) {
        let notification = Notification::new(
            tenant.clone(),
            time::OffsetDateTime::now_utc(),
            NotificationEvent::BridgeRestricted,
            &format!("{}:{attempt}", reply.reply_id),
        );
        notifications::publish(&self.js, &notification).await;
    }

    /// Records a failed attempt in the ledger; `spent`: it counts towards
    /// the limit. A call whose outcome is unknown (a timeout, a connection
    /// lost mid-call) leaves the row in doubt, so the next attempt looks for
    /// its echo before sending again.
    async fn note_failure(
        &self,
        message: &LaneMessage,
        reply: &OutboundReply,
        spent: bool,
        sent: &Sent,
    ) {
        let tenant = message.tenant();
        let error = error_text(&sent.result);
        let in_doubt = sent
            .result
            .as_ref()
            .err()
            .is_some_and(SendFailure::in_doubt);
        let owner = &self.ledger.lease().owner;
        let failure = Failure { spent, in_doubt };
        if let Err(e) =
            deliveries::record_failure(&self.db, tenant, &reply.reply_id, owner, failure, &error)
                .await
        {
            tracing::warn!(tenant.id = %tenant, error = %e, "cannot record the failed attempt");
        }
    }
}

/// The provider error's class (`ok` for a success), as the attempts counter labels it.
fn failure_class(result: &Result<SendReceipt, SendFailure>) -> &'static str {
    result.as_ref().err().map_or("ok", SendFailure::class)
}

/// The provider error as text (empty for a success).
fn error_text(result: &Result<SendReceipt, SendFailure>) -> String {
    result
        .as_ref()
        .err()
        .map_or_else(String::new, ToString::to_string)
}

/// A dead letter's detail: the error, led by the reason Meta's code names
/// for a Cloud API failure (`window_closed: Cloud API error 131047 …`), so
/// an operator reading the letter sees why without the code table.
fn dead_letter_detail(result: &Result<SendReceipt, SendFailure>) -> String {
    match result {
        Err(SendFailure::Cloud(e)) => match e.outcome() {
            Outcome::DeadLetter(reason) => format!("{reason}: {e}"),
            _ => e.to_string(),
        },
        other => error_text(other),
    }
}

/// End-to-end latency, webhook received → provider accepted the reply.
fn record_latency(tenant: &TenantId, reply: &OutboundReply) {
    if let Some(received) = reply.received_at_ms {
        let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
        let seconds = (now_ms - i128::from(received)).max(0) as f64 / 1000.0;
        metrics::histogram!(m::END_TO_END_SECONDS).record(seconds);
        metrics::histogram!(m::TENANT_REPLY_SECONDS, "tenant" => tenant_metrics::label(tenant))
            .record(seconds);
    }
}
