//! Making an accepted event durable exactly once, for both webhook routes
//! (WA Bridges' `/hook/…`, one event per request; the Cloud API's `/cloud`,
//! one per item of a batch): coalesce identical deliveries in flight in this
//! process, claim the `(tenant, event id)` key, publish to JetStream, or keep
//! the event in the outbox when JetStream cannot take it.
//!
//! 200 is only ever answered once the event is durable in JetStream or the
//! PostgreSQL outbox (or was already); the error is `Unavailable` only when
//! neither took it.

use bytes::Bytes;
use switchyard_shared::{
    ids::{EventId, TenantId},
    trace_context::TraceContext,
};

use crate::{
    handler::{Accepted, AppState},
    idempotency::NextAction,
    metrics::{self as m, OutboxCause},
    outbox::{NotStored, Stored},
    publish::{InboundMessage, Published},
    rejection::Rejection,
    single_flight::{Settled, Turn},
};

/// An event that passed its route's checks: its tenant (authenticated by
/// the route), its id within the tenant, and the body to publish.
#[derive(Debug, Clone, Copy)]
pub struct DurableEvent<'a> {
    pub tenant: &'a TenantId,
    pub event_id: &'a EventId,
    pub body: &'a Bytes,
}

impl DurableEvent<'_> {
    fn scoped_id(&self) -> switchyard_shared::scoped_event_id::ScopedEventId {
        switchyard_shared::scoped_event_id::ScopedEventId::new(self.tenant, self.event_id.as_str())
    }
}

/// Makes the event durable exactly once, coalescing identical deliveries in
/// flight in this process.
pub async fn deliver(
    app: &AppState,
    webhook: &DurableEvent<'_>,
    received_at_ms: i64,
    trace: &TraceContext,
) -> Result<Accepted, Rejection> {
    let scoped_id = webhook.scoped_id();
    loop {
        match app.in_flight.turn(scoped_id.as_str()) {
            Turn::Follow(leader) => match leader.outcome().await {
                Some(Settled::Durable) => return Ok(Accepted::Duplicate),
                Some(Settled::Failed) => return Err(Rejection::Unavailable),
                // The leader's request was dropped: take over.
                None => continue,
            },
            Turn::Lead(leader) => {
                let result = claim_and_publish(app, webhook, received_at_ms, trace).await;
                leader.settle(match result {
                    Ok(_) => Settled::Durable,
                    Err(_) => Settled::Failed,
                });
                return result;
            }
        }
    }
}

async fn claim_and_publish(
    app: &AppState,
    webhook: &DurableEvent<'_>,
    received_at_ms: i64,
    trace: &TraceContext,
) -> Result<Accepted, Rejection> {
    let tenant = webhook.tenant;
    let event_id = webhook.event_id;
    let claimed = app.keys.claim(tenant, event_id).await;
    match claimed.next {
        NextAction::AlreadyPublished | NextAction::AlreadyOutboxed => {
            return Ok(Accepted::Duplicate);
        }
        NextAction::Publish | NextAction::Republish => {}
        NextAction::Degraded(why) => {
            m::degraded(why.as_str());
            tracing::warn!(
                tenant.id = %tenant,
                event.id = %event_id,
                db.degraded = why.as_str(),
                "PostgreSQL unavailable for the idempotency claim; publishing anyway (JetStream deduplicates)"
            );
        }
    }
    let message = InboundMessage::new(
        tenant,
        event_id,
        webhook.body.clone(),
        received_at_ms,
        trace.clone(),
    );

    // While the tenant has events in the outbox, a new one queues behind
    // them rather than overtake them in the stream (per-chat order).
    let backlog = claimed
        .tenant_backlog
        .unwrap_or_else(|| app.outbox.has_backlog(tenant));
    let mut refused_by_outbox = None;
    if backlog && app.outbox.enabled() {
        match app.outbox.store(&message).await {
            Ok(stored) => return Ok(outboxed(stored, OutboxCause::Backlog)),
            Err(not_stored) => {
                // Losing the event would be worse than letting it overtake.
                m::outbox_refused(not_stored.why.as_str());
                tracing::warn!(
                    tenant.id = %tenant,
                    event.id = %event_id,
                    error = %not_stored.why,
                    "the tenant has outboxed events but the outbox refused this one; publishing it directly"
                );
                refused_by_outbox = Some(not_stored);
            }
        }
    }

    // A retry stops early when this replica has meanwhile outboxed an event
    // of the same tenant: this one must then follow it into the outbox.
    let give_up = || refused_by_outbox.is_none() && app.outbox.has_backlog(tenant);
    let failure = match app.publisher.publish(&message, give_up).await {
        Ok(published) => {
            app.keys.mark_published(tenant, event_id);
            return Ok(match published {
                Published::Stored => Accepted::Published,
                Published::Duplicate => Accepted::Duplicate,
            });
        }
        Err(failure) => failure,
    };

    let refusal: NotStored = match refused_by_outbox {
        Some(refusal) => refusal,
        None => match app.outbox.store(&message).await {
            Ok(stored) => {
                tracing::info!(
                    tenant.id = %tenant,
                    event.id = %event_id,
                    error = %failure,
                    "JetStream did not take the event; kept in the outbox"
                );
                return Ok(outboxed(stored, OutboxCause::PublishFailed));
            }
            Err(refusal) => {
                m::outbox_refused(refusal.why.as_str());
                refusal
            }
        },
    };
    let may_be_stored = failure.may_be_stored || refusal.may_be_stored;
    if may_be_stored {
        m::unavailable_uncertain();
    }
    tracing::error!(
        tenant.id = %tenant,
        event.id = %event_id,
        error = %failure,
        outbox = %refusal.why,
        may_be_stored,
        "event not accepted: neither JetStream nor the outbox took it"
    );
    Err(Rejection::Unavailable)
}

/// The answer for an event the outbox took.
fn outboxed(stored: Stored, cause: OutboxCause) -> Accepted {
    match stored {
        Stored::New => {
            m::outboxed(cause);
            Accepted::Outboxed
        }
        Stored::Duplicate => Accepted::Duplicate,
    }
}
