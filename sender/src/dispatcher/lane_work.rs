//! Lane work: which lanes this replica sends from, and the scheduler's count
//! of what they hold ready.
//!
//! Each tenant has two lanes here, live replies (`OUTBOUND`) and bulk
//! (`BULK`). The scheduler's counts are hints kept up to date from lane
//! announcements; the lane is the truth, and a probe restores a count the
//! scheduler lost (a lane found empty that filled again, a spilled backlog).

use std::{sync::Arc, time::Duration};

use switchyard_shared::{ids::TenantId, lanes::TenantLane, subjects::Direction};

use super::{Dispatcher, events::Event};
use crate::fair_share::{LaneClass, UnknownTenant};

impl Dispatcher {
    /// A lane took a message (or holds a backlog): remember the lane and
    /// count the work, or keep the count until the tenant's row is read.
    pub(super) fn on_work(&mut self, lane: Arc<TenantLane>) {
        let tenant = lane.tenant().clone();
        let class = class_of(&lane);
        match class {
            LaneClass::Live => self.lanes.insert(tenant.clone(), lane),
            LaneClass::Bulk => self.bulk_lanes.insert(tenant.clone(), lane),
        };
        if self.arrived(&tenant, class, 1).is_err() {
            self.wait_for_row(tenant, class);
        }
    }

    /// Tells the scheduler a lane of the tenant holds `n` more messages.
    pub(super) fn arrived(
        &mut self,
        tenant: &TenantId,
        class: LaneClass,
        n: u64,
    ) -> Result<(), UnknownTenant> {
        match class {
            LaneClass::Live => self.scheduler.work_arrived(tenant, n),
            LaneClass::Bulk => self.scheduler.bulk_arrived(tenant, n),
        }
    }

    /// Tells the scheduler a lane of the tenant holds nothing ready (the lane
    /// is the truth; a probe restores the count when it fills again).
    pub(super) fn emptied(&mut self, tenant: &TenantId, class: LaneClass) {
        let _ = match class {
            LaneClass::Live => self.scheduler.set_ready(tenant, 0),
            LaneClass::Bulk => self.scheduler.set_bulk_ready(tenant, 0),
        };
    }

    pub(super) fn lane(&self, tenant: &TenantId, class: LaneClass) -> Option<Arc<TenantLane>> {
        match class {
            LaneClass::Live => self.lanes.get(tenant).cloned(),
            LaneClass::Bulk => self.bulk_lanes.get(tenant).cloned(),
        }
    }

    /// Reports a lane the scheduler thinks empty that holds work after all.
    pub(super) async fn probe(&mut self, tenant: &TenantId) {
        for class in [LaneClass::Live, LaneClass::Bulk] {
            let Some(lane) = self.lane(tenant, class) else {
                continue;
            };
            let counted = match class {
                LaneClass::Live => self.scheduler.ready(tenant),
                LaneClass::Bulk => self.scheduler.bulk_ready(tenant),
            };
            if counted != Some(0) {
                continue;
            }
            if lane.in_memory().await > 0 || lane.is_spilling().await {
                let _ = self.arrived(tenant, class, 1);
            }
        }
    }

    /// Probes the tenant's lanes again after a while, from a task of its own.
    pub(super) fn probe_later(&self, tenant: TenantId, after: Duration) {
        let events = self.events_tx.clone();
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(after) => { let _ = events.send(Event::Probe(tenant)).await; }
            }
        });
    }
}

/// The lane class of a lane of the sender.
pub(super) fn class_of(lane: &TenantLane) -> LaneClass {
    match lane.direction() {
        Direction::Bulk => LaneClass::Bulk,
        _ => LaneClass::Live,
    }
}
