//! The health of Cloud API tenants' numbers: Meta rates a number's quality
//! from how its messages were received over seven days, and no longer says
//! so on the quality webhook (docs/cloud-api.md section 6), so the sender
//! holding a Cloud tenant's lane asks Meta
//! (`GET /{phone_number_id}?fields=quality_rating,…`):
//!
//! - at once when the router announces a quality, tier or account notice of
//!   the tenant (`control.tenant.<tenant>` with payload `cloud_health`);
//! - every `SWITCHYARD_CLOUD_HEALTH_INTERVAL` (default 15 min) for every
//!   Cloud tenant it holds a lane of, so a downgrade with no notice is
//!   still seen.
//!
//! A changed rating or tier is recorded on the channel row, then the
//! tenant's row is read again, and its limits follow the rating
//! (`cloud_api::limits`): lowered on a downgrade, restored on an upgrade.
//! Each check runs on a task of its own; a failed one is logged and counted
//! and changes nothing (the next one tries again).

use std::sync::Arc;

use switchyard_shared::ids::TenantId;

use super::{Dispatcher, events::Event};
use crate::metrics as m;

impl Dispatcher {
    /// Reads the tenant's number health from Meta, then its row.
    pub(super) fn check_cloud_health(&self, tenant: TenantId) {
        let deliverer = Arc::clone(&self.deliverer);
        let events = self.events_tx.clone();
        self.tasks.spawn(async move {
            let result = match deliverer
                .cloud
                .check_health(&deliverer.db, &tenant)
                .await
            {
                Ok(None) => "skipped",
                Ok(Some(change)) => {
                    if let Some((before, after)) = &change.quality {
                        tracing::warn!(
                            tenant.id = %tenant,
                            cloud.quality.before = before.as_deref().unwrap_or("-"),
                            cloud.quality.after = after.as_deref().unwrap_or("-"),
                            "Meta rates the tenant's Cloud API number differently now; its send limit follows"
                        );
                    }
                    if let Some((before, after)) = &change.messaging_limit {
                        tracing::info!(
                            tenant.id = %tenant,
                            cloud.messaging_limit.before = before.as_deref().unwrap_or("-"),
                            cloud.messaging_limit.after = after.as_deref().unwrap_or("-"),
                            "the tenant's Cloud API messaging limit tier changed"
                        );
                    }
                    "checked"
                }
                Err(e) => {
                    tracing::warn!(tenant.id = %tenant, error = %e, "cannot read the Cloud API number's health; the next check tries again");
                    "failed"
                }
            };
            metrics::counter!(m::CLOUD_HEALTH_CHECKS, "result" => result).increment(1);
            let _ = events.send(Event::TenantChanged(tenant, false)).await;
        });
    }

    /// The periodic check of every Cloud tenant this replica holds a lane of.
    pub(super) fn check_all_cloud_health(&self) {
        let held: Vec<TenantId> = self
            .cloud_limits
            .keys()
            .filter(|t| self.lanes.contains_key(*t) || self.bulk_lanes.contains_key(*t))
            .cloned()
            .collect();
        for tenant in held {
            self.check_cloud_health(tenant);
        }
    }
}
