//! What a reported bridge state does, wherever the report comes from: the
//! router's `connected` / `disconnected` webhooks and the sender's silent-bridge
//! watchdog (a `/status` probe) both go through [`record`], so a bridge found
//! disconnected by a probe is held and shown exactly as after the webhook.
//!
//! The tenants table is written first (it is what the periodic refresh of
//! every sender reads), then the change is announced on
//! [`crate::subjects::bridge_state_changed`] for the senders to hold or resume
//! at once. Each caller invalidates its own tenant cache and counts in its
//! own metrics. A change into `disconnected`, or into `connected` from any
//! other state, is also published as the tenant's notification
//! (`bridge.disconnected`, `bridge.repaired`; [`crate::notifications`]),
//! with the recording time as its identity.

use sqlx::PgPool;

use crate::{
    bridge_state::BridgeState,
    db,
    ids::TenantId,
    notifications::{self, Notification, NotificationEvent, ReportSource},
    subjects, tenants,
};

/// What recording a state did beyond storing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recorded {
    /// The first `connected` of a number never seen paired: its warm-up starts.
    pub newly_paired: bool,
}

/// Stores the tenant's bridge state and announces it. A failed announcement
/// is logged, not returned: the senders' periodic refresh reads the table.
pub async fn record(
    db: &PgPool,
    nats: &async_nats::Client,
    tenant: &TenantId,
    state: &BridgeState,
    source: ReportSource,
) -> Result<Recorded, sqlx::Error> {
    let mut tx = db::begin_for_tenant(db, tenant).await?;
    let change = tenants::record_bridge_state(&mut *tx, tenant, state).await?;
    // Numbers paired before 0005 were backfilled.
    let newly_paired =
        *state == BridgeState::Connected && tenants::mark_paired(&mut *tx, tenant).await?;
    tx.commit().await?;
    let announce = nats
        .publish(
            subjects::bridge_state_changed(tenant),
            state.as_str().to_owned().into(),
        )
        .await;
    if let Err(e) = announce {
        tracing::warn!(tenant.id = %tenant, error = %e, "cannot announce bridge state");
    }
    if let Some(change) = change
        && let Some(event) = notification_of(&change.previous, state, source, newly_paired)
    {
        let fact = change.at.unix_timestamp_nanos().to_string();
        let notification = Notification::new(tenant.clone(), change.at, event, &fact);
        notifications::publish(&async_nats::jetstream::new(nats.clone()), &notification).await;
    }
    Ok(Recorded { newly_paired })
}

/// What the tenant is told of a change from `previous` to `state`, if anything.
fn notification_of(
    previous: &BridgeState,
    state: &BridgeState,
    source: ReportSource,
    newly_paired: bool,
) -> Option<NotificationEvent> {
    if previous == state {
        return None;
    }
    match state {
        BridgeState::Disconnected => Some(NotificationEvent::BridgeDisconnected { source }),
        BridgeState::Connected => Some(NotificationEvent::BridgeRepaired {
            first_pairing: newly_paired,
        }),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_changes_into_disconnected_or_connected_are_told() {
        let (c, d) = (BridgeState::Connected, BridgeState::Disconnected);
        let hook = ReportSource::Webhook;
        assert_eq!(notification_of(&c, &c, hook, false), None);
        assert_eq!(notification_of(&d, &d, hook, false), None);
        assert_eq!(
            notification_of(&c, &d, hook, false),
            Some(NotificationEvent::BridgeDisconnected { source: hook })
        );
        assert_eq!(
            notification_of(&d, &c, hook, false),
            Some(NotificationEvent::BridgeRepaired {
                first_pairing: false
            })
        );
        assert_eq!(
            notification_of(&BridgeState::Running, &c, hook, true),
            Some(NotificationEvent::BridgeRepaired {
                first_pairing: true
            })
        );
        assert_eq!(
            notification_of(&c, &BridgeState::Running, hook, false),
            None
        );
    }
}
