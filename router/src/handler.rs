//! Processing one inbound event: the step the lane runner calls, returning an
//! outcome (ack, retry in place, backpressure, or dead letter).
//!
//! Whose fault each failure is (see [`crate::backpressure`]):
//! - the message's, dead-lettered at once: an unreadable body
//!   (`malformed_event`), a burst holding a non-message (`malformed_turn`),
//!   a payload naming another tenant (`tenant_mismatch`), the bot refusing
//!   it for good (`bot_failed`: a 4xx, bad output, bad configuration);
//! - the message's, retried and counted (`attempts_exhausted` at the
//!   limit): the bot's transient failures (unreachable, 5xx, 429, timeout),
//!   and a database error PostgreSQL blames on the data (SQLSTATE 22, 23);
//! - ours, backpressure (retried without limit, never counted): the tenant
//!   lookup, every other database error (pool timeout, connection, commit,
//!   statement timeout, ...) on the conversation and the bridge state, and
//!   the replies not stored by JetStream (publish error or timeout).
//!
//! A message's bot turn holds no database connection while the bot runs:
//! the conversation (with the sender's contact records) is read before the
//! call and recorded after the replies are published, each in a short
//! transaction of its own ([`crate::conversations`],
//! [`crate::bots::sender_role`]), and the call waits only for a place in its
//! tenant's bot budget ([`crate::bots::budget`]).
//!
//! The tenant is the subject's; the payload must agree. Everything else
//! (status, bot, limits) comes from that tenant's row. Unknown and inactive
//! tenants are dropped and counted, never routed to a default.
//!
//! Cloud API tenants: a message's chat window is recorded from Meta's
//! timestamp in the transaction of the conversation read, and a message
//! already older than the window gets no bot turn (`window_closed`,
//! docs/cloud-api.md section 7); account notices are carried out by
//! [`crate::cloud_notices`].
//!
//! Bursts: when the tenant's `debounce_ms` is set, the runner gathers a
//! chat's customer messages that come within that window of each other and
//! hands them over as one turn ([`Handler::handle_turn`]): the bot sees one
//! message whose body is the burst's bodies in order, one per line, and the
//! turn's reply ids derive from the burst's first event id.

use std::{sync::Arc, time::Duration};

use switchyard_shared::{
    admission::{self, Admission},
    bridge_report,
    bridge_state::BridgeState,
    channel::Channel,
    cloud_api::{
        inbound::{Delivered, RecipientStatus},
        window::{self, WindowSettings},
    },
    contacts::SenderAddress,
    db, deliveries,
    events::{self, MessageEvent, WebhookEvent},
    ids::{EventId, TenantId},
    lanes::{
        LaneMessage,
        dead_letter::{DeadLetter, DeadLetterCode},
    },
    log_limit::LogLimit,
    media::Content,
    notifications::ReportSource,
    replies::ReplyMenu,
    tenant_cache::TenantCache,
    tenants::Tenant,
    trace_context,
};
use tracing::Instrument as _;

use crate::{
    backpressure::{self, Fault},
    bots::{BotError, BotInput, Bots, choice::Choice, sender_role},
    conversations,
    inbound::InboundMessage,
    metrics as m, replies,
    retries::Retries,
    runner::{Handler, Outcome},
    turn_steps::TurnSteps,
};

/// Everything the step needs, shared by all workers.
#[derive(Debug, Clone)]
pub struct InboundHandler {
    pub js: async_nats::jetstream::Context,
    pub nats: async_nats::Client,
    pub db: sqlx::PgPool,
    /// The read and record of every turn, group-committed on `db`.
    pub steps: TurnSteps,
    pub tenants: TenantCache,
    pub bots: Bots,
    /// How long a failed step waits before it is tried again in place.
    pub retries: Retries,
    /// How recent a `sending` ledger row must be to hold back an unknown echo.
    pub echo_wait: Duration,
    /// Attempts an undecided echo gets before it is taken as ours.
    pub echo_attempts: u32,
    /// The Cloud API customer-service window: a Cloud message older than it
    /// gets no bot turn.
    pub cloud_window: WindowSettings,
    /// Warnings of events refused for their tenant (unknown, inactive),
    /// at most one per reason per interval; the drop counter counts each.
    pub refused_log: Arc<LogLimit<&'static str>>,
    /// Backlogged tenants' extra chats, sized by the time steps spend in
    /// PostgreSQL and JetStream (fed by [`InboundHandler::phase`]).
    pub spare: Arc<crate::spare::SparePool>,
}

fn dead(code: DeadLetterCode, detail: impl Into<String>) -> Outcome {
    Outcome::DeadLetter(DeadLetter::new(code, detail))
}

fn retry(retries: &Retries, attempt: u32, reason: impl Into<String>) -> Outcome {
    Outcome::Retry {
        after: retries.transient_delay(attempt),
        reason: reason.into(),
    }
}

/// Trouble in our own infrastructure: held and retried without limit.
pub(crate) fn ours(reason: impl Into<String>) -> Outcome {
    Outcome::Backpressure {
        reason: reason.into(),
    }
}

/// A failed database call: backpressure, unless PostgreSQL blames the
/// message's data (then an attempt of the message's own).
pub(crate) fn db_failed(
    retries: &Retries,
    attempt: u32,
    what: &str,
    error: &sqlx::Error,
) -> Outcome {
    match backpressure::db_fault(error) {
        Fault::Ours => ours(format!("{what}: {error}")),
        Fault::Message => retry(retries, attempt, format!("{what}: {error}")),
    }
}

/// One router step's span (a message, or a gathered turn from its first
/// message): a child of the ingest span that published the event, with the
/// tenant and the event's scoped id. The replies it publishes carry it on.
fn step_span(message: &LaneMessage, attempt: u32) -> tracing::Span {
    let span = tracing::info_span!(
        "router.step",
        tenant.id = %message.tenant(),
        event.id = message.header(events::HEADER_EVENT_ID).unwrap_or_default(),
        delivery.attempt = attempt,
    );
    trace_context::adopt(&span, message.headers());
    span
}

pub(crate) fn dropped(reason: &'static str) -> Outcome {
    metrics::counter!(m::DROPPED, "reason" => reason).increment(1);
    Outcome::Done
}

impl InboundHandler {
    /// Records how long one phase of a message's step took (issue 20: where
    /// a step's time goes). The phases in PostgreSQL and JetStream also size
    /// the backlogs' spare chats; the bot's time and the cached tenant row
    /// say nothing about the shared infrastructure.
    fn phase(&self, name: &'static str, started: std::time::Instant) {
        let took = started.elapsed();
        metrics::histogram!(m::STEP_PHASE_SECONDS, "phase" => name).record(took.as_secs_f64());
        if matches!(name, "read" | "publish" | "record") {
            self.spare.observe(took);
        }
    }
}

impl Handler for InboundHandler {
    fn chat_key(&self, message: &InboundMessage) -> String {
        message.chat_id().to_owned()
    }

    async fn handle(&self, message: &InboundMessage, attempt: u32) -> Outcome {
        let started = std::time::Instant::now();
        message.lane().record_age("handled");
        let span = step_span(message.lane(), attempt);
        let outcome = async {
            let outcome = self.step(message, attempt).await;
            tracing::debug!(outcome = ?outcome, "event handled");
            outcome
        }
        .instrument(span)
        .await;
        metrics::histogram!(m::STEP_SECONDS).record(started.elapsed().as_secs_f64());
        outcome
    }

    async fn gather_window(&self, message: &InboundMessage) -> Option<Duration> {
        // Only a customer's own message in a chat is gathered; anything else
        // (an echo, a person on the phone, a bridge event) ends a burst.
        let parsed = message.event().ok()?;
        let tenant = message.lane().tenant();
        let WebhookEvent::Message(m) = &parsed.event else {
            return None;
        };
        if m.from_me {
            return None;
        }
        if parsed
            .customer_ref
            .as_deref()
            .is_some_and(|r| r != tenant.as_str())
        {
            return None;
        }
        let row = self.tenants.resolve(tenant).await.ok()??;
        let debounce = row.whatsapp.debounce_ms;
        (debounce > 0).then(|| Duration::from_millis(u64::from(debounce)))
    }

    async fn handle_turn(&self, messages: &[InboundMessage], attempt: u32) -> Outcome {
        let started = std::time::Instant::now();
        let outcome = match messages.first() {
            Some(first) => {
                let span = step_span(first.lane(), attempt);
                async {
                    let outcome = self.turn(messages, attempt).await;
                    tracing::debug!(outcome = ?outcome, turn.messages = messages.len(), "turn handled");
                    outcome
                }
                .instrument(span)
                .await
            }
            None => Outcome::Done,
        };
        metrics::histogram!(m::STEP_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::histogram!(m::TURN_MESSAGES).record(messages.len() as f64);
        outcome
    }
}

impl InboundHandler {
    /// A gathered burst as one bot turn: the first message's event (and its
    /// headers, id, chat) with the bodies of every member, in order.
    async fn turn(&self, messages: &[InboundMessage], attempt: u32) -> Outcome {
        let Some(first) = messages.first().map(InboundMessage::lane) else {
            return Outcome::Done;
        };
        let mut bodies = Vec::with_capacity(messages.len());
        let mut head = None;
        let mut latest = i64::MIN;
        for message in messages {
            let parsed = match message.event() {
                Ok(p) => p,
                Err(e) => return dead(DeadLetterCode::MalformedEvent, e.to_string()),
            };
            let WebhookEvent::Message(m) = &parsed.event else {
                return dead(
                    DeadLetterCode::MalformedTurn,
                    "a gathered burst holds a non-message event",
                );
            };
            if !m.body.trim().is_empty() {
                bodies.push(m.body.clone());
            }
            head.get_or_insert((&parsed.event_id, m));
            latest = latest.max(m.timestamp);
        }
        let Some((parsed_id, head)) = head else {
            return Outcome::Done;
        };
        // The turn's time is its newest message's: that one keeps a Cloud
        // API chat's window open.
        let combined = MessageEvent {
            body: bodies.join("\n"),
            timestamp: latest.max(head.timestamp),
            ..head.clone()
        };
        // Only messages whose `customer_ref` agrees were gathered (`gather_window`).
        let row = match self.admitted(first.tenant(), None).await {
            Ok(row) => row,
            Err(finished) => return finished,
        };
        let event_id = first
            .header(events::HEADER_EVENT_ID)
            .and_then(|id| EventId::parse(id).ok())
            .unwrap_or_else(|| parsed_id.clone());
        self.on_message(first, &row, &event_id, &combined, attempt)
            .await
    }

    /// The subject's tenant, when the payload agrees with it and it may be
    /// served; otherwise the outcome that ends the message.
    async fn admitted(
        &self,
        tenant: &TenantId,
        claimed: Option<&str>,
    ) -> Result<Arc<Tenant>, Outcome> {
        match admission::admit(&self.tenants, tenant, claimed).await {
            Admission::Serve(row) => Ok(row),
            Admission::Mismatch => {
                metrics::counter!(m::TENANT_MISMATCH).increment(1);
                tracing::error!(tenant.id = %tenant, "payload customer_ref disagrees with the subject's tenant; dead-lettered");
                Err(dead(
                    DeadLetterCode::TenantMismatch,
                    "payload customer_ref disagrees with the subject",
                ))
            }
            // The tenants table is read by key only: whatever fails is ours.
            Admission::LookupFailed(e) => Err(ours(format!("tenant lookup: {e}"))),
            refused @ (Admission::Unknown | Admission::Inactive) => {
                let reason = refused.drop_reason().unwrap_or("refused");
                if let Some(suppressed) = self.refused_log.admit(reason, std::time::Instant::now())
                {
                    tracing::warn!(tenant.id = %tenant, drop.reason = reason, log.suppressed = suppressed, "event dropped");
                }
                Err(dropped(reason))
            }
        }
    }

    /// Runs in the [`step_span`] of its message.
    async fn step(&self, inbound: &InboundMessage, attempt: u32) -> Outcome {
        let message = inbound.lane();
        let tenant = message.tenant();
        let parsed = match inbound.event() {
            Ok(p) => p,
            Err(e) => return dead(DeadLetterCode::MalformedEvent, e.to_string()),
        };
        let admitting = std::time::Instant::now();
        let row = match self.admitted(tenant, parsed.customer_ref.as_deref()).await {
            Ok(row) => row,
            Err(finished) => return finished,
        };
        self.phase("tenant", admitting);
        let event_id = message
            .header(events::HEADER_EVENT_ID)
            .and_then(|id| EventId::parse(id).ok())
            .unwrap_or_else(|| parsed.event_id.clone());
        if parsed.channel != row.channel {
            // A body of the other channel (ingest routes Cloud items only to
            // Cloud tenants, and the bridge route refuses them): never served.
            return dropped("channel_mismatch");
        }
        match &parsed.event {
            WebhookEvent::Message(m) => self.on_message(message, &row, &event_id, m, attempt).await,
            WebhookEvent::CloudStatus(status) => {
                self.on_recipient_status(tenant, status, attempt).await
            }
            WebhookEvent::CloudNotice { field, value } => {
                self.on_cloud_notice(tenant, field, value, attempt).await
            }
            WebhookEvent::Connected { .. } => {
                self.on_bridge_state(tenant, BridgeState::Connected, attempt)
                    .await
            }
            WebhookEvent::Disconnected => {
                self.on_bridge_state(tenant, BridgeState::Disconnected, attempt)
                    .await
            }
            WebhookEvent::Typing(_) => dropped("typing"),
            WebhookEvent::PollVote(_) => dropped("poll_vote"),
            WebhookEvent::Unknown { .. } => dropped("unknown_event"),
        }
    }

    async fn on_message(
        &self,
        lane_message: &LaneMessage,
        tenant: &Arc<Tenant>,
        event_id: &EventId,
        message: &MessageEvent,
        attempt: u32,
    ) -> Outcome {
        if message.from_me {
            // Never answered: our own echo, or a person on the phone.
            return self.on_from_me(tenant, message, attempt).await;
        }
        if message.is_group || message.chat_id.is_group() {
            let groups_enabled = tenant.bot.as_ref().is_ok_and(|b| b.groups_enabled);
            if !groups_enabled {
                return dropped("group_chat");
            }
        }
        // Read, call, publish, record: each database step is one statement
        // of its own (a Cloud API tenant's read is a short transaction), so
        // the bot call holds no connection and no row lock (the chat's order
        // is kept by the lane runner). The read takes the conversation and
        // the sender's contact records at once.
        let address = SenderAddress::of(message);
        // A Cloud API chat's window is recorded in the same transaction,
        // from Meta's timestamp (docs/cloud-api.md section 7).
        let cloud = tenant.channel == Channel::CloudApi;
        let (chat, phone) = (&message.chat_id, address.phone());
        let read = async {
            if !cloud {
                return self.steps.read(&tenant.id, chat, phone).await;
            }
            let mut tx = db::begin_for_tenant(&self.db, &tenant.id).await?;
            window::record(&mut tx, &tenant.id, chat, message.timestamp).await?;
            let read = conversations::read_turn(&mut *tx, &tenant.id, chat, phone).await?;
            tx.commit().await?;
            Ok(read)
        };
        let reading = std::time::Instant::now();
        let (conversation, role) = match read.await {
            Ok((conversation, records)) => (
                conversation,
                sender_role::role_of(tenant, &address, &records),
            ),
            Err(e) => return db_failed(&self.retries, attempt, "conversation", &e),
        };
        self.phase("read", reading);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if cloud && self.cloud_window.closed_for_turn(message.timestamp, now) {
            // Redelivered late by Meta, or replayed: no free-form answer can
            // reach the customer any more, so the bot is not asked.
            tracing::info!(tenant.id = %tenant.id, message.age_s = now.saturating_sub(message.timestamp), "Cloud API message older than the customer-service window; no bot turn");
            return dropped("window_closed");
        }
        if conversation.silenced {
            // A person took over this chat from the phone: no bot turn.
            if let Err(e) =
                conversations::record_inbound(&self.steps, &tenant.id, &message.chat_id, None).await
            {
                return db_failed(&self.retries, attempt, "conversation", &e);
            }
            return dropped("silenced");
        }
        // Who wrote and what the answer chooses, both within this tenant
        // only, afresh for every message: nothing about a flow is stored.
        sender_role::log_resolved(&tenant.id, &role);
        let content = Content::of(message);
        let choice = Choice::read(content.text(), &conversation.last_menu, &role);
        let input = BotInput {
            tenant,
            message,
            conversation: &conversation,
            role: &role,
            choice: &choice,
            content,
        };
        // Waits for a place in the tenant's bot budget, then runs the bot
        // within its time limit; a failure leaves the conversation as it was
        // (so a failed first turn is still `is_new` when retried).
        let responding = std::time::Instant::now();
        let turn = match self.bots.respond(input).await {
            Ok(turn) => turn,
            Err(BotError::Transient(e)) => return retry(&self.retries, attempt, e),
            Err(BotError::Permanent(e)) => return dead(DeadLetterCode::BotFailed, e),
        };
        let received_at_ms = lane_message
            .header(events::HEADER_RECEIVED_AT_MS)
            .and_then(|v| v.parse().ok());
        let parts = replies::build(
            &tenant.id,
            event_id,
            &message.chat_id,
            &turn.replies,
            turn.menu.as_ref(),
            received_at_ms,
            // An event an operator re-runs is answered in the bulk lane.
            replies::priority_of_rerun(|name| lane_message.header(name).is_some()),
        );
        self.phase("bot", responding);
        // Replies first, then the conversation: a crash in between republishes
        // the same reply ids, which the duplicate window and the ledger absorb.
        let publishing = std::time::Instant::now();
        if let Err(e) = replies::publish(&self.js, &parts).await {
            // JetStream did not store them (an error, or no ack in time): ours.
            return ours(format!("publish replies: {e}"));
        }
        self.phase("publish", publishing);
        // An existing chat whose turn shows no menu changes nothing worth a
        // transaction (its `last_inbound_at` is rewritten at most hourly).
        if conversation.needs_record(turn.menu.is_some()) {
            let recording = std::time::Instant::now();
            if let Err(e) = conversations::record_after_turn(
                &self.steps,
                &tenant.id,
                &message.chat_id,
                turn.menu.as_ref().map(ReplyMenu::ids).as_deref(),
            )
            .await
            {
                return db_failed(&self.retries, attempt, "conversation", &e);
            }
            self.phase("record", recording);
        }
        metrics::counter!(m::REPLIES).increment(parts.len() as u64);
        Outcome::Done
    }

    /// Records where a Cloud API send stands on the recipient's side.
    async fn on_recipient_status(
        &self,
        tenant: &TenantId,
        status: &RecipientStatus,
        attempt: u32,
    ) -> Outcome {
        let Some(column) = status.state.as_column() else {
            return dropped("status_other");
        };
        let error = match &status.state {
            Delivered::Failed { code, title } => {
                Some(format!("{}: {title}", code.unwrap_or_default()))
            }
            _ => None,
        };
        match deliveries::record_recipient_status(
            &self.db,
            tenant,
            &status.provider_message_id,
            column,
            status.timestamp,
            error.as_deref(),
        )
        .await
        {
            Ok(recorded) => {
                metrics::counter!(m::RECIPIENT_STATUS, "status" => column, "recorded" => recorded.as_str())
                    .increment(1);
                Outcome::Done
            }
            Err(e) => db_failed(&self.retries, attempt, "recipient status", &e),
        }
    }

    /// Records the bridge's state and tells the senders to pause or resume.
    async fn on_bridge_state(
        &self,
        tenant: &TenantId,
        state: BridgeState,
        attempt: u32,
    ) -> Outcome {
        match bridge_report::record(&self.db, &self.nats, tenant, &state, ReportSource::Webhook)
            .await
        {
            Ok(recorded) if recorded.newly_paired => {
                tracing::info!(tenant.id = %tenant, "number paired; warm-up starts");
            }
            Ok(_) => {}
            Err(e) => return db_failed(&self.retries, attempt, "bridge state", &e),
        }
        self.tenants.invalidate(tenant).await;
        tracing::info!(tenant.id = %tenant, bridge.state = %state, "bridge state changed");
        metrics::counter!(m::BRIDGE_STATE, "state" => state.as_str().to_owned()).increment(1);
        Outcome::Done
    }
}
