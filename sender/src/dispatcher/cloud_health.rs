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
//!
//! At most `SWITCHYARD_CLOUD_HEALTH_CONCURRENCY` checks are in flight at
//! once ([`HealthChecks`]): the periodic sweep asks for every held Cloud
//! tenant together, and each check takes a connection of the pool the sends'
//! ledger steps share, so a sweep over a thousand tenants would otherwise
//! run a thousand checks at once, empty the pool and stall every tenant's
//! sends (and call Meta a thousand times in the same second). A tenant whose
//! check is already waiting for its turn is not queued twice: the waiting
//! one has not read Meta yet, so it answers the newer request too.

use std::{
    collections::HashSet,
    sync::{Arc, Mutex, PoisonError},
};

use switchyard_shared::ids::TenantId;
use tokio::sync::Semaphore;

use super::{Dispatcher, events::Event};
use crate::metrics as m;

/// The health checks of this replica: how many may run at once, and which
/// tenants' checks wait for their turn.
pub(super) struct HealthChecks {
    permits: Arc<Semaphore>,
    waiting: Arc<Mutex<HashSet<TenantId>>>,
}

impl HealthChecks {
    pub(super) fn new(concurrency: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(concurrency.max(1))),
            waiting: Arc::default(),
        }
    }

    /// Marks `tenant`'s check as waiting; false if one already is.
    fn enqueue(&self, tenant: &TenantId) -> bool {
        self.waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(tenant.clone())
    }

    /// Waits for a turn, then takes `tenant` off the waiting list: a request
    /// made from now on gets a check of its own.
    async fn turn(
        permits: Arc<Semaphore>,
        waiting: &Mutex<HashSet<TenantId>>,
        tenant: &TenantId,
    ) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let permit = permits.acquire_owned().await.ok();
        waiting
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(tenant);
        permit
    }
}

impl Dispatcher {
    /// Reads the tenant's number health from Meta, then its row, once one of
    /// the replica's health checks is free.
    pub(super) fn check_cloud_health(&self, tenant: TenantId) {
        if !self.health_checks.enqueue(&tenant) {
            metrics::counter!(m::CLOUD_HEALTH_CHECKS, "result" => "merged").increment(1);
            return;
        }
        let deliverer = Arc::clone(&self.deliverer);
        let events = self.events_tx.clone();
        let permits = Arc::clone(&self.health_checks.permits);
        let waiting = Arc::clone(&self.health_checks.waiting);
        self.tasks.spawn(async move {
            // The semaphore is never closed; `None` cannot happen.
            let _permit = HealthChecks::turn(permits, &waiting, &tenant).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_tenant_waiting_for_its_turn_is_not_queued_twice_but_one_under_way_is() {
        let checks = HealthChecks::new(1);
        let acme = TenantId::parse("acme").unwrap();
        assert!(checks.enqueue(&acme));
        assert!(!checks.enqueue(&acme), "still waiting: merged");
        let permit = HealthChecks::turn(Arc::clone(&checks.permits), &checks.waiting, &acme)
            .await
            .expect("a permit");
        assert!(
            checks.enqueue(&acme),
            "under way, it may have read Meta already: a new check"
        );
        // The new one waits while the first holds the only permit.
        let second = HealthChecks::turn(Arc::clone(&checks.permits), &checks.waiting, &acme);
        tokio::pin!(second);
        assert!(
            futures::poll!(second.as_mut()).is_pending(),
            "one at a time"
        );
        drop(permit);
        assert!(second.await.is_some());
    }
}
