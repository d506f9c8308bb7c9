//! Delivering one reply part: the step the dispatcher runs for each grant.
//!
//! [`Deliverer::deliver`] reads as three steps: admit the message (`admit`;
//! or finish it without a provider call), send it, and apply what the retry
//! policy makes of the answer (`apply`). This file holds the step itself and the ways a
//! message can end that all three share (dead letter, back to the lane).
//!
//! The tenant is the subject's; the reply must agree. The bridge is the
//! tenant's own (the tenant row's, addressed by its `customer_ref`), never
//! anything named in the payload. The ledger is claimed (under a lease,
//! `ledger`) before and written after the provider call, and the message is
//! kept alive throughout (`keep_alive`), so it is not redelivered while its
//! send runs; the retry policy turns the call's result into an action, and
//! this step carries it out except for what only the dispatcher may do
//! (scheduler pauses, putting the message back at the head of its lane).

mod admit;
mod apply;
pub mod cloud;
pub mod failure;
pub mod ledger;
pub mod trouble_log;

use std::{sync::Arc, time::Duration};

use sqlx::PgPool;
use switchyard_shared::{
    channel::Channel,
    deliveries,
    ids::TenantId,
    lanes::{
        LaneMessage,
        dead_letter::{self, DeadLetter},
        message::keep_alive_during,
    },
    message_ids::ReplyId,
    tenant_cache::TenantCache,
    tenant_metrics,
    wabridges::{SendReceipt, WaBridgesClient, WaError},
};
use tracing::Instrument as _;

use self::{admit::Cleared, cloud::CloudSending, failure::SendFailure, ledger::SendLedger};
use crate::{
    fair_share::{GrantOutcome, PauseReason},
    metrics as m,
    outbound::OutboundMessage,
    retry_policy::{AttemptContext, SendPolicy},
};

/// What became of one grant's message.
#[derive(Debug)]
pub enum StepResult {
    /// Acked, dropped or dead-lettered: the message is gone from the lane.
    Finished(GrantOutcome),
    /// Not finished: put it back at the head of its tenant's lane.
    PushBack {
        message: Box<LaneMessage>,
        outcome: GrantOutcome,
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
    /// The ledger's claim and mark of every send, group-committed on `db`.
    pub steps: deliveries::SendSteps,
    pub tenants: TenantCache,
    pub client: WaBridgesClient,
    /// Sends of Cloud API tenants (their own number and token).
    pub cloud: Arc<CloudSending>,
    pub js: async_nats::jetstream::Context,
    pub policy: SendPolicy,
    /// This sender's leases, attempts under way and unwritten sends.
    pub ledger: Arc<SendLedger>,
    /// Sends out and dead letters per tenant, for its status records.
    pub activity: switchyard_shared::tenant_status::Activity,
    /// Provider trouble per tenant, logged once per episode.
    pub trouble: Arc<trouble_log::TroubleLog>,
}

/// A short pause for our own transient trouble (database, NATS).
const LOCAL_TROUBLE_PAUSE: Duration = Duration::from_secs(1);

/// The provider's answer to one call, and the attempt it was.
struct Sent {
    result: Result<SendReceipt, SendFailure>,
    ctx: AttemptContext,
}

/// How a delivery ended, while the message is still borrowed (and kept
/// alive): [`Deliverer::deliver`] turns it into a [`StepResult`].
enum End {
    /// Acked, dropped or dead-lettered.
    Finished(GrantOutcome),
    /// Back to the head of its lane, with these pauses.
    Back {
        outcome: GrantOutcome,
        tenant_pause: Option<(PauseReason, Option<Duration>)>,
        fleet_pause: Option<Duration>,
    },
}

/// What a delivery is, for the provider-outage detector (`dispatcher::provider_outage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// A send like any other.
    Normal,
    /// The one send let through while the provider looks down: if it meets
    /// provider trouble again it spends no attempt and pauses no tenant (the
    /// outage holds everyone).
    Probe,
}

/// What one delivery says about the provider as a whole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProviderSignal {
    /// No call was made.
    NoCall,
    /// The provider answered (a success, or a 4xx, a 429, "not connected":
    /// its API works, whatever it thought of this request).
    Answered,
    /// A 5xx, a 408, a timeout or a connection error.
    Trouble,
}

impl ProviderSignal {
    /// What a result says of WA Bridges: nothing, for a Cloud API send.
    fn of(result: &Result<SendReceipt, SendFailure>, channel: Channel) -> Self {
        if channel != Channel::Wabridges {
            return Self::NoCall;
        }
        match result {
            Err(SendFailure::Wa(WaError::Transient { .. } | WaError::Timeout { .. })) => {
                Self::Trouble
            }
            Err(SendFailure::Wa(WaError::InvalidChat { .. })) => Self::NoCall,
            _ => Self::Answered,
        }
    }
}

impl Deliverer {
    /// Runs one message to a result, keeping it alive until then.
    pub async fn deliver(&self, message: OutboundMessage) -> StepResult {
        self.deliver_as(message, Attempt::Normal).await.0
    }

    /// [`Deliverer::deliver`], as a normal send or as a provider probe, and
    /// what it showed of the provider.
    /// Runs in the message's `sender.deliver` span ([`OutboundMessage::span`]).
    pub async fn deliver_as(
        &self,
        message: OutboundMessage,
        attempt: Attempt,
    ) -> (StepResult, ProviderSignal) {
        let span = message.span();
        self.deliver_in_span(message, attempt)
            .instrument(span)
            .await
    }

    async fn deliver_in_span(
        &self,
        message: OutboundMessage,
        attempt: Attempt,
    ) -> (StepResult, ProviderSignal) {
        let (message, reply) = message.into_parts();
        message.record_age("handled");
        let mut signal = ProviderSignal::NoCall;
        let end = keep_alive_during(std::slice::from_ref(&message), async {
            let cleared = match self.admit(&message, reply).await {
                Ok(cleared) => cleared,
                Err(refusal) => return self.refuse(&message, refusal).await,
            };
            let (tenant, reply_id) = (cleared.tenant.id.clone(), cleared.reply.reply_id.clone());
            self.ledger
                .renewed_during(&self.db, &tenant, &reply_id, async {
                    let sent = self.send(&message, &cleared).await;
                    signal = ProviderSignal::of(&sent.result, cleared.tenant.channel);
                    if attempt == Attempt::Probe && signal == ProviderSignal::Trouble {
                        return self.probe_failed(&message, &cleared, &sent).await;
                    }
                    self.apply(&message, cleared, sent).await
                })
                .await
        })
        .await;
        let step = match end {
            End::Finished(outcome) => StepResult::Finished(outcome),
            End::Back {
                outcome,
                tenant_pause,
                fleet_pause,
            } => StepResult::PushBack {
                message: Box::new(message),
                outcome,
                tenant_pause,
                fleet_pause,
            },
        };
        (step, signal)
    }

    /// Step 2: one provider call on the tenant's own bridge.
    async fn send(&self, message: &LaneMessage, cleared: &Cleared) -> Sent {
        let Cleared {
            reply,
            tenant,
            attempts,
            age,
            ..
        } = cleared;
        let started = std::time::Instant::now();
        // The provider call, a span of its own inside the delivery.
        let result = match tenant.channel {
            Channel::Wabridges => {
                let call = tracing::info_span!("wabridges.send", tenant.id = %tenant.id, reply.id = %reply.reply_id);
                self.client
                    .send_text(&tenant.id, reply.chat_id.as_str(), &reply.body)
                    .instrument(call)
                    .await
                    .map_err(SendFailure::Wa)
            }
            Channel::CloudApi => {
                let call = tracing::info_span!("cloud_api.send", tenant.id = %tenant.id, reply.id = %reply.reply_id);
                self.cloud
                    .send_text(&self.db, &tenant.id, reply)
                    .instrument(call)
                    .await
                    .map_err(SendFailure::Cloud)
            }
        };
        metrics::histogram!(m::SEND_SECONDS).record(started.elapsed().as_secs_f64());
        let class = result.as_ref().err().map_or("ok", SendFailure::class);
        metrics::counter!(m::ATTEMPTS, "result" => class).increment(1);
        let outcome = if result.is_ok() { "sent" } else { "failed" };
        metrics::counter!(m::TENANT_SENDS, "tenant" => tenant_metrics::label(&tenant.id), "outcome" => outcome)
            .increment(1);
        let spent = result
            .as_ref()
            .err()
            .is_some_and(SendFailure::spends_attempt);
        let ctx = AttemptContext {
            attempt: attempts + u32::from(spent || result.is_ok()),
            age: *age,
            jitter_seed: switchyard_shared::retry::jitter_seed(message.message_id()),
        };
        Sent { result, ctx }
    }

    /// Dead-letters a message whose reply has a ledger row, and marks the row
    /// dead once the letter is stored. Not before: a letter that could not be
    /// stored sends the message back to its lane (our trouble, no attempt
    /// spent), and a row already marked dead would be claimed afresh
    /// (attempts and age reset) and sent again.
    async fn dead_in_ledger(
        &self,
        message: &LaneMessage,
        reply_id: &ReplyId,
        why: DeadLetter,
        attempts: u32,
        outcome: GrantOutcome,
    ) -> End {
        let tenant: TenantId = message.tenant().clone();
        let finished = self.dead(message, why, attempts, outcome).await;
        if matches!(finished, End::Finished(_))
            && let Err(e) = deliveries::mark_dead(&self.db, &tenant, reply_id).await
        {
            tracing::warn!(tenant.id = %tenant, error = %e, "cannot mark the ledger row dead");
        }
        finished
    }

    /// Publishes a dead letter, then terminates the message.
    async fn dead(
        &self,
        message: &LaneMessage,
        why: DeadLetter,
        attempts: u32,
        outcome: GrantOutcome,
    ) -> End {
        match dead_letter::publish(&self.js, message, &why, attempts).await {
            Ok(()) => {
                self.activity.dead_letter(
                    message.tenant(),
                    switchyard_shared::tenant_status::record::now_ms(),
                );
                message.terminate().await;
                End::Finished(outcome)
            }
            Err(e) => local_trouble(message, format!("dead letter: {e}")),
        }
    }
}

/// The message goes back to the head of its lane; the dispatcher applies the pauses.
fn push_back(
    outcome: GrantOutcome,
    tenant_pause: Option<(PauseReason, Option<Duration>)>,
    fleet_pause: Option<Duration>,
) -> End {
    End::Back {
        outcome,
        tenant_pause,
        fleet_pause,
    }
}

/// Our own transient trouble: back to the lane, the tenant held briefly.
fn local_trouble(message: &LaneMessage, detail: String) -> End {
    tracing::warn!(tenant.id = %message.tenant(), error = %detail, "cannot deliver now; will retry");
    push_back(
        GrantOutcome::NotAttempted,
        Some((PauseReason::Backoff, Some(LOCAL_TROUBLE_PAUSE))),
        None,
    )
}
