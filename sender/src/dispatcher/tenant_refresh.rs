//! Tenant refresh: the scheduler's view of each tenant (limits, warm-up,
//! pacing gap, bulk share, bridge state) comes from the tenant's row, read
//! when its first work arrives and again every refresh period, in case an
//! announcement was lost or an operator changed the row.
//!
//! A Cloud API tenant is scheduled outside the WA Bridges fleet budget, with
//! its own limits as `cloud_api::limits::effective` makes them of its plan,
//! its number's rate (`mps`) and quality rating (read with its channel row);
//! its bulk lane's share is of its own rate, and stops at quality `RED`.
//!
//! The periodic re-read is spread over the period: the tenants are cut into
//! [`RefreshSlices`] by a hash of their id and one slice is read per tick,
//! so a replica holding a thousand tenants reads a few dozen rows a second
//! instead of a thousand at once, which would compete with the ledger's
//! steps for the same pool (issue 20; spreads the load, no latency gain was
//! measured).
//!
//! Work announced before the row is read is counted here and handed to the
//! scheduler once the row arrives. Rows are read on tasks of their own, which
//! report back as [`Event::Refreshed`].

use std::{collections::HashSet, sync::Arc, time::Duration};

use switchyard_shared::{
    channel::Channel,
    cloud_api::{
        channel::{self, TokenState},
        limits,
    },
    ids::TenantId,
    tenants::{SendLimits, Tenant},
};

use super::{Dispatcher, events::Event};
use crate::fair_share::{FleetMembership, LaneClass};

/// What the refresh reads of a Cloud API tenant's channel row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudView {
    pub token: TokenState,
    /// The number's messages per second (`cloud_channels.mps`).
    pub mps: u32,
    /// Meta's quality rating as last recorded.
    pub quality: Option<String>,
}

/// Limits used for a tenant whose row is not known (yet): its messages flow
/// to the delivery step, which drops them and counts.
const UNKNOWN_TENANT_LIMITS: SendLimits = SendLimits {
    weight: 1,
    sends_per_minute: 60,
    send_burst: 10,
    max_in_flight: 1,
};

impl Dispatcher {
    /// Counts work of a tenant the scheduler does not know yet; the first
    /// such work asks for the tenant's row.
    pub(super) fn wait_for_row(&mut self, tenant: TenantId, class: LaneClass) {
        let pending = self.waiting_for_row.entry(tenant.clone()).or_insert((0, 0));
        let first = *pending == (0, 0);
        match class {
            LaneClass::Live => pending.0 += 1,
            LaneClass::Bulk => pending.1 += 1,
        }
        if first {
            self.refresh(tenant);
        }
    }

    /// A tenant's row was read: hand its limits and state to the scheduler.
    pub(super) fn on_refreshed(
        &mut self,
        tenant: TenantId,
        row: Option<Arc<Tenant>>,
        cloud: Option<CloudView>,
    ) {
        let now_unix = time::OffsetDateTime::now_utc().unix_timestamp();
        let is_cloud = row.as_ref().is_some_and(|r| r.channel == Channel::CloudApi);
        let (limits, gap) = match &row {
            None => (UNKNOWN_TENANT_LIMITS, Duration::ZERO),
            Some(r) if is_cloud => (self.cloud_limits(&tenant, r, cloud), Duration::ZERO),
            // A newly paired number gets lower limits (re-read every refresh).
            Some(r) => self.warmup.apply(
                r.limits,
                Duration::from_millis(u64::from(r.whatsapp.min_send_gap_ms)),
                r.whatsapp.paired_at,
                now_unix,
            ),
        };
        if !is_cloud {
            self.cloud_limits.remove(&tenant);
        }
        self.scheduler.upsert_tenant(tenant.clone(), limits);
        let membership = if is_cloud {
            FleetMembership::Exempt
        } else {
            FleetMembership::Member
        };
        let _ = self.scheduler.set_fleet_membership(&tenant, membership);
        if let Some(row) = &row {
            self.flaps.on_bridge_state(
                &mut self.scheduler,
                &tenant,
                // A Cloud API number has no bridge to drop.
                is_cloud || !row.bridge_state.holds_sends(),
            );
            let _ = self.scheduler.set_pacing(&tenant, gap);
        }
        let share = row.as_ref().map_or(100, |r| {
            u64::from(r.whatsapp.bulk_share_percent.clamp(1, 100))
        });
        // A bridge tenant's bulk share is of the fleet budget, a Cloud
        // tenant's of its own rate (and nothing at quality RED).
        let (of, stopped) = match self.cloud_limits.get(&tenant) {
            Some(cloud) => (cloud.limits.sends_per_minute, cloud.bulk_stopped),
            None => (self.fleet_per_minute, false),
        };
        let per_minute = (u64::from(of) * share / 100).max(1);
        let per_minute = u32::try_from(per_minute).unwrap_or(u32::MAX);
        let bulk = if stopped {
            Some((0, 1))
        } else {
            Some((per_minute, per_minute.div_ceil(20).max(1)))
        };
        let _ = self.scheduler.set_bulk_rate(&tenant, bulk);
        if let Some((live, bulk)) = self.waiting_for_row.remove(&tenant) {
            let _ = self.scheduler.work_arrived(&tenant, live);
            let _ = self.scheduler.bulk_arrived(&tenant, bulk);
        }
    }

    /// A Cloud tenant's limits from its plan and its channel; when the
    /// channel could not be read, the last ones computed (or the number's
    /// default rate with no rating) stand.
    fn cloud_limits(
        &mut self,
        tenant: &TenantId,
        row: &Tenant,
        cloud: Option<CloudView>,
    ) -> SendLimits {
        let computed = match (cloud, self.cloud_limits.get(tenant)) {
            (Some(view), previous) => {
                let next = limits::effective(row.limits, view.mps, view.quality.as_deref());
                let changed = previous.is_some_and(|p| p.limits != next.limits);
                if changed {
                    tracing::warn!(
                        tenant.id = %tenant,
                        cloud.quality = %next.quality,
                        limit = %next.explain(),
                        "the Cloud API number's send limit changed with its quality rating"
                    );
                }
                next
            }
            (None, Some(previous)) => previous.clone(),
            (None, None) => limits::effective(row.limits, limits::DEFAULT_MPS, None),
        };
        let out = computed.limits;
        let first_sight = self.cloud_limits.insert(tenant.clone(), computed).is_none();
        if first_sight {
            // What the row says may be days old (Meta sends no quality
            // webhook): ask Meta once for the tenant's number now.
            self.check_cloud_health(tenant.clone());
        }
        out
    }

    /// Reads the tenant's row afresh, on a task of its own.
    pub(super) fn refresh(&self, tenant: TenantId) {
        let tenants = self.tenants.clone();
        let events = self.events_tx.clone();
        let db = self.deliverer.db.clone();
        self.tasks.spawn(async move {
            tenants.invalidate(&tenant).await;
            match tenants.resolve(&tenant).await {
                Ok(row) => {
                    let cloud = row.as_ref().is_some_and(|r| r.channel == Channel::CloudApi);
                    let view = if cloud {
                        cloud_view(&db, &tenant).await
                    } else {
                        None
                    };
                    let _ = events.send(Event::Refreshed(tenant, row, view)).await;
                }
                Err(e) => {
                    tracing::warn!(tenant.id = %tenant, error = %e, "cannot read tenant; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let _ = events.send(Event::Probe(tenant)).await;
                }
            }
        });
    }

    /// Re-reads the row of every tenant of slice `slice` this replica holds
    /// a lane of (and a Cloud tenant's token state, `cloud_holds`).
    pub(super) fn refresh_slice(&self, slices: &RefreshSlices, slice: u32) {
        let tenants: HashSet<&TenantId> = self.lanes.keys().chain(self.bulk_lanes.keys()).collect();
        for tenant in tenants {
            if slices.of(tenant) == slice {
                self.refresh(tenant.clone());
            }
        }
    }
}

/// The tenants cut into slices, one re-read per tick, so that every tenant
/// is re-read once per refresh period: a slice per second of the period, at
/// most [`RefreshSlices::MAX`], at least one (a period of a second or less
/// reads everyone every tick, as before).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct RefreshSlices {
    count: u32,
    tick: Duration,
}

impl RefreshSlices {
    const MAX: u32 = 60;

    pub(super) fn new(period: Duration) -> Self {
        let count = u32::try_from(period.as_secs())
            .unwrap_or(Self::MAX)
            .clamp(1, Self::MAX);
        Self {
            count,
            tick: period / count,
        }
    }

    /// How many slices (and ticks per period) there are.
    pub(super) fn count(&self) -> u32 {
        self.count
    }

    /// How often one slice is read.
    pub(super) fn tick(&self) -> Duration {
        self.tick
    }

    /// The slice `tenant` belongs to (the same for the replica's lifetime).
    pub(super) fn of(&self, tenant: &TenantId) -> u32 {
        use std::hash::{Hash as _, Hasher as _};
        let mut h = std::collections::hash_map::DefaultHasher::new();
        tenant.hash(&mut h);
        u32::try_from(h.finish() % u64::from(self.count)).unwrap_or(0)
    }
}

/// A Cloud tenant's channel as the scheduler needs it (`None`: no channel
/// row, or it could not be read: nothing is changed then, the next refresh
/// reads it again).
async fn cloud_view(db: &sqlx::PgPool, tenant: &TenantId) -> Option<CloudView> {
    match channel::fetch(db, tenant).await {
        Ok(row) => row.map(|r| CloudView {
            token: r.token_state,
            mps: r.mps,
            quality: r.quality,
        }),
        Err(e) => {
            tracing::warn!(tenant.id = %tenant, error = %e, "cannot read the tenant's Cloud API channel; its token state and limits are read at the next refresh");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_period_is_cut_into_a_slice_per_second_and_a_short_one_into_one() {
        let s = RefreshSlices::new(Duration::from_secs(30));
        assert_eq!((s.count(), s.tick()), (30, Duration::from_secs(1)));
        let s = RefreshSlices::new(Duration::from_millis(200));
        assert_eq!((s.count(), s.tick()), (1, Duration::from_millis(200)));
        let s = RefreshSlices::new(Duration::from_secs(3600));
        assert_eq!((s.count(), s.tick()), (60, Duration::from_secs(60)));
    }

    #[test]
    fn a_thousand_tenants_are_read_a_few_dozen_per_tick_each_once_per_period() {
        let s = RefreshSlices::new(Duration::from_secs(30));
        let mut per_slice = vec![0u32; s.count() as usize];
        for i in 0..1_000 {
            let tenant = TenantId::parse(&format!("t{i:04}")).unwrap();
            let slice = s.of(&tenant);
            assert_eq!(slice, s.of(&tenant), "a tenant keeps its slice");
            per_slice[slice as usize] += 1;
        }
        let most = *per_slice.iter().max().unwrap();
        assert!(
            most <= 70,
            "no tick reads many more than the average 33: {per_slice:?}"
        );
        assert_eq!(per_slice.iter().sum::<u32>(), 1_000);
    }
}
