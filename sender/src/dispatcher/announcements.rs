//! The forwarders: tasks that turn what other parts of the system announce
//! into events for the send loop.
//!
//! Lane work comes from the partition readers (one announcement per message
//! a lane takes); bridge states, operators' resumes and the router's Cloud
//! API holds come as core-NATS announcements. Each forwarder waits when the loop's channel is full
//! (see [`super::events`]) and stops when the loop is gone.

use futures::StreamExt as _;
use switchyard_shared::{bridge_state::BridgeState, ids::TenantId, lanes::LaneWork, subjects};
use tokio_util::sync::CancellationToken;

use super::events::{Event, EventSender};
use crate::fair_share::PauseReason;

/// Forwards lane work announcements into the send loop.
pub async fn forward_work(mut work: LaneWork, events: EventSender) {
    while let Some(lane) = work.recv().await {
        if events.send(Event::Work(lane)).await.is_err() {
            return;
        }
    }
}

/// Forwards operators' resume announcements into the send loop.
pub async fn follow_operator_resumes(
    nats: async_nats::Client,
    events: EventSender,
    shutdown: CancellationToken,
) {
    forward_announcements(
        nats,
        subjects::SENDING_RESUMED_FILTER,
        events,
        shutdown,
        |tenant, _| Some(Event::OperatorResume(tenant)),
    )
    .await;
}

/// Forwards the operator CLI's tenant change announcements into the send
/// loop, so a changed limit or hold reaches the scheduler at once (the
/// periodic refresh only backs up a lost announcement), and the router's
/// Cloud API quality notices (payload `cloud_health`).
pub async fn follow_tenant_changes(
    nats: async_nats::Client,
    events: EventSender,
    shutdown: CancellationToken,
) {
    forward_announcements(
        nats,
        subjects::TENANT_CHANGED_FILTER,
        events,
        shutdown,
        |tenant, payload| {
            let health = payload == subjects::CLOUD_HEALTH_CHANGED;
            Some(Event::TenantChanged(tenant, health))
        },
    )
    .await;
}

/// Forwards the router's hold announcements (Cloud API account notices)
/// into the send loop; the payload names the hold's reason.
pub async fn follow_sending_holds(
    nats: async_nats::Client,
    events: EventSender,
    shutdown: CancellationToken,
) {
    forward_announcements(
        nats,
        subjects::SENDING_HELD_FILTER,
        events,
        shutdown,
        |tenant, payload| {
            let reason = match payload {
                b"restricted" => PauseReason::Restricted,
                // Anything else is read as the stricter hold an operator lifts.
                _ => PauseReason::Unauthorized,
            };
            Some(Event::Hold(tenant, reason))
        },
    )
    .await;
}

/// Forwards the router's bridge announcements into the send loop.
pub async fn follow_bridge_states(
    nats: async_nats::Client,
    events: EventSender,
    shutdown: CancellationToken,
) {
    forward_announcements(
        nats,
        subjects::BRIDGE_STATE_FILTER,
        events,
        shutdown,
        |tenant, payload| match BridgeState::parse_bytes(payload) {
            BridgeState::Connected => Some(Event::BridgeState(tenant, true)),
            BridgeState::Disconnected => Some(Event::BridgeState(tenant, false)),
            _ => None,
        },
    )
    .await;
}

/// Turns core-NATS announcements on `<...>.<tenant>` subjects into events,
/// until shutdown. The tenant is the subject's; a subject whose tenant token
/// is not valid is ignored. Announcements are best effort: the periodic
/// tenant refresh catches what is missed.
async fn forward_announcements(
    nats: async_nats::Client,
    filter: &'static str,
    events: EventSender,
    shutdown: CancellationToken,
    to_event: impl Fn(TenantId, &[u8]) -> Option<Event>,
) {
    let mut sub = match nats.subscribe(filter).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, subject = filter, "cannot follow announcements; relying on the periodic refresh");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            next = sub.next() => match next {
                Some(message) => {
                    let Some(tenant) = subjects::tenant_of(&message.subject) else { continue };
                    if let Some(event) = to_event(tenant, message.payload.as_ref()) {
                        let _ = events.send(event).await;
                    }
                }
                None => return,
            }
        }
    }
}
