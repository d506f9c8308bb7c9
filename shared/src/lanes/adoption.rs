//! Spill backlogs that no lane reads, found and adopted.
//!
//! A lane is opened when its partition reader first sees one of the tenant's
//! messages. A tenant whose whole backlog was spilled (and so acked on its
//! partition) has nothing left on the partition: when that partition moves
//! to another replica (a deploy, a scale-up, a crash), or a spill of the
//! previous owner is stored after the new owner opened the lane in direct
//! delivery, nobody would read the backlog until the tenant's next message,
//! which may never come (a held tenant waiting for its bridge, the end of a
//! campaign). So a replica looks for them on every partition it gains and
//! every `backlog_scan`: the spill stream's per-subject counts name the
//! tenants with a backlog, the partition header of the newest spilled
//! message names the partition, and the owner of that partition opens the lane (or
//! switches its direct lane to the backlog) and announces it.
//!
//! Cost: one stream-info request per scan (a [`BacklogSnapshot`]), plus one
//! message read per backlogged tenant this replica holds no lane for
//! (partitions never change while the service runs, so a tenant's partition
//! is read once and kept).

use std::collections::BTreeSet;

use tokio_util::sync::CancellationToken;

use crate::{
    lanes::{
        Lanes,
        dispatch::Backlog,
        spill::{self, BacklogSnapshot},
    },
    metrics as m,
};

impl Lanes {
    /// Adopts every spill backlog in `snapshot` of the partitions in `owned`
    /// that no lane of this replica reads; errors are logged, the next scan
    /// tries again.
    pub(super) async fn adopt_backlogs(
        &self,
        snapshot: &BacklogSnapshot,
        owned: &BTreeSet<u16>,
        stop: &CancellationToken,
    ) {
        if let Err(e) = self.try_adopt(snapshot, owned, stop).await {
            tracing::warn!(
                lane.direction = self.inner.direction.as_str(),
                error = %e,
                "cannot look for unread spill backlogs; trying again at the next scan"
            );
        }
    }

    async fn try_adopt(
        &self,
        snapshot: &BacklogSnapshot,
        owned: &BTreeSet<u16>,
        stop: &CancellationToken,
    ) -> Result<(), async_nats::Error> {
        let direction = self.inner.direction;
        for tenant in snapshot.tenants() {
            let open = self.inner.lanes.lock().await.get(tenant).cloned();
            if let Some(lane) = open {
                if lane.adopt_backlog().await {
                    self.adopted(tenant, "late spill");
                    self.inner.announcer.announce(lane, stop).await;
                }
                continue;
            }
            let known = self.inner.partition_of.lock().await.get(tenant).copied();
            let partition = match known {
                Some(p) => p,
                None => {
                    let Some(p) =
                        spill::backlog_partition(&self.inner.js, direction, tenant).await?
                    else {
                        continue;
                    };
                    self.inner
                        .partition_of
                        .lock()
                        .await
                        .insert(tenant.clone(), p);
                    p
                }
            };
            if owned.contains(&partition) {
                // Opens in spill mode (the backlog is there) and announces it;
                // a lane its partition reader opened in direct delivery
                // meanwhile is switched to the backlog instead.
                let lane = self
                    .lane_for(tenant, partition, Backlog::Known(true), stop)
                    .await?;
                if lane.adopt_backlog().await {
                    self.inner.announcer.announce(lane, stop).await;
                }
                self.adopted(tenant, "no lane");
            }
        }
        Ok(())
    }

    fn adopted(&self, tenant: &crate::ids::TenantId, why: &'static str) {
        let direction = self.inner.direction.as_str();
        metrics::counter!(m::LANE_BACKLOG_ADOPTED, "direction" => direction).increment(1);
        tracing::info!(tenant.id = %tenant, lane.direction = direction, why, "unread spill backlog adopted");
    }
}
