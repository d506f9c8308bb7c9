//! This replica's view of its tenants for `switchyard status`: on every
//! status tick the loop turns what the scheduler holds (pauses and their
//! ends, the fleet's 429 pause, a provider outage) and what its lanes hold in
//! memory into one status record per tenant with something to say, and hands
//! them to the publisher task (`crate::status`) on a watch channel, so the
//! loop never waits on NATS. A hold's start is when a tick first saw it
//! (exact to one `SWITCHYARD_STATUS_INTERVAL`).

use std::collections::{BTreeMap, HashMap};

use switchyard_shared::{
    ids::TenantId,
    tenant_status::{Activity, Hold, HoldReason, StatusRecord, StatusService, record::now_ms},
};
use tokio::{sync::watch, time::Instant};

use super::Dispatcher;
use crate::fair_share::LaneClass;

/// A hold and its end (wall-clock ms; `None`: until lifted).
type HoldEnd = (HoldReason, Option<i64>);

/// Where the loop's status snapshots go.
#[derive(Debug)]
pub struct StatusFeed {
    pub replica: String,
    pub activity: Activity,
    pub tx: watch::Sender<Vec<StatusRecord>>,
}

/// The feed and when each hold and each wait was first seen.
#[derive(Debug)]
pub(super) struct StatusTracker {
    feed: StatusFeed,
    hold_since: HashMap<(TenantId, HoldReason), i64>,
    waiting_since: HashMap<TenantId, i64>,
}

impl StatusTracker {
    pub(super) fn new(feed: StatusFeed) -> Self {
        Self {
            feed,
            hold_since: HashMap::new(),
            waiting_since: HashMap::new(),
        }
    }
}

impl Dispatcher {
    /// Builds this tick's records and hands them to the publisher.
    pub(super) async fn snapshot_status(&mut self) {
        let now = Instant::now();
        let wall = now_ms();
        let to_wall = |at: Instant| {
            wall + i64::try_from(at.saturating_duration_since(now).as_millis()).unwrap_or(i64::MAX)
        };
        let fleet_until = self.scheduler.fleet_paused_until(now).map(to_wall);
        let outage = self.outage.is_down();
        // Held or with work here, and everyone with activity since last tick.
        let mut tenants: BTreeMap<TenantId, (Vec<HoldEnd>, u64)> = BTreeMap::new();
        for view in self.scheduler.observe(now) {
            let mut holds: Vec<HoldEnd> = self
                .scheduler
                .pause_ends(&view.tenant, now)
                .into_iter()
                .map(|(reason, until)| (reason.into(), until.map(to_wall)))
                .collect();
            if view.waiting > 0 {
                if let Some(until) = fleet_until {
                    holds.push((HoldReason::RateLimited, Some(until)));
                }
                if outage {
                    holds.push((HoldReason::ProviderOutage, None));
                }
            }
            tenants.insert(view.tenant, (holds, view.waiting));
        }
        for tenant in self.status.feed.activity.take_touched(wall) {
            tenants.entry(tenant).or_default();
        }
        let mut records = Vec::with_capacity(tenants.len());
        let mut hold_since = HashMap::new();
        let mut waiting_since = HashMap::new();
        for (tenant, (holds, hinted)) in tenants {
            let mut queued = 0;
            for class in [LaneClass::Live, LaneClass::Bulk] {
                if let Some(lane) = self.lane(&tenant, class) {
                    queued += lane.in_memory().await as u64;
                }
            }
            let recent = self.status.feed.activity.recent(&tenant, wall);
            let mut r = StatusRecord::new(
                tenant.clone(),
                StatusService::Sender,
                &self.status.feed.replica,
                wall,
            );
            for (reason, until_ms) in holds {
                let key = (tenant.clone(), reason);
                let since_ms = self.status.hold_since.get(&key).copied().unwrap_or(wall);
                hold_since.insert(key, since_ms);
                r.holds.push(Hold {
                    reason,
                    since_ms,
                    until_ms,
                });
            }
            if queued > 0 || hinted > 0 {
                let since = self
                    .status
                    .waiting_since
                    .get(&tenant)
                    .copied()
                    .unwrap_or(wall);
                waiting_since.insert(tenant.clone(), since);
                r.waiting_since_ms = Some(since);
            }
            r.queued = queued;
            r.last_send_out_ms = recent.last_out_ms;
            r.last_event_in_ms = recent.last_in_ms;
            r.dead_letters_last_hour = recent.dead_letters_last_hour;
            records.push(r);
        }
        self.status.hold_since = hold_since;
        self.status.waiting_since = waiting_since;
        // Latest wins: a publisher still writing the last snapshot skips to this one.
        self.status.feed.tx.send_replace(records);
    }
}
