//! What a reported bridge state does, wherever the report comes from: the
//! router's `connected` / `disconnected` webhooks and the sender's silent-bridge
//! watchdog (a `/status` probe) both go through [`record`], so a bridge found
//! disconnected by a probe is held and shown exactly as after the webhook.
//!
//! The tenants table is written first (it is what the periodic refresh of
//! every sender reads), then the change is announced on
//! [`crate::subjects::bridge_state_changed`] for the senders to hold or resume
//! at once. Each caller invalidates its own tenant cache and counts in its
//! own metrics.

use sqlx::PgPool;

use crate::{bridge_state::BridgeState, db, ids::TenantId, subjects, tenants};

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
) -> Result<Recorded, sqlx::Error> {
    let mut tx = db::begin_for_tenant(db, tenant).await?;
    tenants::set_bridge_state(&mut *tx, tenant, state).await?;
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
    Ok(Recorded { newly_paired })
}
