//! The dispatcher: one task owns the fair-share scheduler and turns its
//! decisions into deliveries; everything else reaches it as an [`Event`].
//!
//! Lanes announce work (one event per message they take); the scheduler says
//! which tenant sends next; the delivery runs in its own task and comes back
//! as a completion. Bridge state announcements pause and resume tenants; a
//! periodic refresh re-reads limits and bridge state from the tenants table,
//! in case an announcement was lost. WhatsApp behaviour (`docs/whatsapp.md`)
//! lives here too: each tenant's pacing gap is handed to the scheduler, a
//! chat's messages go one at a time, bridge flaps are held and resumed with
//! jitter.
//!
//! Each tenant has two lanes here: live replies (`OUTBOUND`) and bulk
//! (`BULK`: dead-letter replays and the router's answers to recovered
//! events). The scheduler's grant names the lane to take from; bulk goes only
//! when the tenant has no live reply ready, within `bulk_share_percent` of the
//! fleet budget. The ledger is keyed by (tenant, reply id) whatever the lane,
//! so a reply that reaches both lanes is still sent once.
//!
//! Layout, one role per file:
//! - `events`: what reaches the loop, on a bounded channel (and why a full
//!   one cannot deadlock);
//! - `send_loop`: the loop itself, grants to deliveries, completions back;
//! - `lane_work`: the lanes sent from and the scheduler's count of their work;
//! - `tenant_refresh`: tenant rows read into the scheduler;
//! - `bridge_flaps`: holding and resuming tenants whose bridge flaps;
//! - `cloud_holds`: Cloud API tenants held by account notices or a dead
//!   token, and released by a new one;
//! - `cloud_health`: Cloud API numbers' quality read from Meta, so their
//!   tenants' limits follow it;
//! - `provider_outage`: noticing the provider itself is down, probing, and
//!   resuming every tenant when it is back;
//! - `tenant_gauges`: replies waiting and holds per tenant, as metrics;
//! - `status`: what this replica holds per tenant, as status records for `switchyard status`;
//! - `announcements`: the tasks forwarding lane work and NATS announcements.

mod announcements;
mod bridge_flaps;
mod cloud_health;
mod cloud_holds;
mod events;
mod lane_work;
mod provider_outage;
mod send_loop;
mod status;
mod tenant_gauges;
mod tenant_refresh;

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use switchyard_shared::{
    cloud_api::limits::CloudLimits,
    ids::TenantId,
    lanes::{TenantLane, work::PartitionShare},
    tenant_cache::TenantCache,
};
use tokio::sync::mpsc;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use self::{
    announcements::{
        follow_bridge_states, follow_operator_resumes, follow_sending_holds, follow_tenant_changes,
        forward_work,
    },
    bridge_flaps::FlapSettings,
    events::{Completion, EVENT_QUEUE_CAPACITY, Event, EventSender},
    status::StatusFeed,
};
use self::{
    bridge_flaps::BridgeFlaps, cloud_health::HealthChecks, cloud_holds::CloudHolds,
    provider_outage::ProviderOutage, status::StatusTracker, tenant_gauges::TenantGauges,
};
use crate::{
    deliver::Deliverer,
    fair_share::{Scheduler, warmup::WarmUp},
    fleet_budget::FleetBudget,
};

/// What the dispatcher is built from.
pub struct DispatcherParts {
    pub scheduler: Scheduler,
    pub deliverer: Arc<Deliverer>,
    /// The shared fleet budget (`None`: the scheduler counts it locally).
    pub fleet: Option<FleetBudget>,
    /// This replica's part of the live partitions: its share of the fleet
    /// budget while the shared one cannot be reached.
    pub fleet_share: PartitionShare,
    pub tenants: TenantCache,
    /// How often every known tenant's row is read again.
    pub refresh_every: Duration,
    /// How often the health of held Cloud API tenants' numbers is read from Meta.
    pub cloud_health_every: Duration,
    /// How many of those reads may be in flight at once.
    pub cloud_health_concurrency: usize,
    /// How bridge flaps are handled.
    pub flaps: FlapSettings,
    /// The fleet budget (calls a minute) bulk shares are taken of.
    pub fleet_per_minute: u32,
    /// Lower limits for newly paired numbers.
    pub warmup: WarmUp,
    pub shutdown: CancellationToken,
    /// Where deliveries, refreshes and delayed probes run.
    pub tasks: TaskTracker,
    /// Where status snapshots go, and how often.
    pub status: StatusFeed,
    pub status_every: Duration,
}

/// The send loop's state.
pub struct Dispatcher {
    scheduler: Scheduler,
    deliverer: Arc<Deliverer>,
    fleet: Option<FleetBudget>,
    fleet_share: PartitionShare,
    tenants: TenantCache,
    refresh_every: Duration,
    cloud_health_every: Duration,
    /// The health reads waiting or under way (`cloud_health`).
    health_checks: HealthChecks,
    /// The limits of the Cloud API tenants this replica schedules, as last
    /// computed from their numbers' rate and quality (`cloud_health`).
    cloud_limits: HashMap<TenantId, CloudLimits>,
    /// Handed to the tasks that report back; the loop itself never sends.
    events_tx: EventSender,
    events: mpsc::Receiver<Event>,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    /// Live and bulk lanes by tenant, and work (live, bulk) announced before
    /// the tenant's row was read.
    lanes: HashMap<TenantId, Arc<TenantLane>>,
    bulk_lanes: HashMap<TenantId, Arc<TenantLane>>,
    waiting_for_row: HashMap<TenantId, (u64, u64)>,
    /// The fleet budget a tenant's `bulk_share_percent` is a share of.
    fleet_per_minute: u32,
    /// Lower limits for newly paired numbers.
    warmup: WarmUp,
    /// Chats with a send in flight, per tenant.
    chats_in_flight: HashSet<(TenantId, String)>,
    flaps: BridgeFlaps,
    /// Cloud API tenants held by account notices or a dead token.
    cloud_holds: CloudHolds,
    /// Provider-wide trouble: hold every send and probe.
    outage: ProviderOutage,
    /// Replies waiting and holds per tenant, as metrics.
    gauges: TenantGauges,
    /// Status records for `switchyard status`, and how often.
    status: StatusTracker,
    status_every: Duration,
}

impl Dispatcher {
    /// A dispatcher with no lanes yet, and its bounded event channel.
    pub fn new(parts: DispatcherParts) -> Self {
        let DispatcherParts {
            scheduler,
            deliverer,
            fleet,
            fleet_share,
            tenants,
            refresh_every,
            cloud_health_every,
            cloud_health_concurrency,
            flaps,
            fleet_per_minute,
            warmup,
            shutdown,
            tasks,
            status,
            status_every,
        } = parts;
        let (events_tx, events) = events::channel();
        let outage = ProviderOutage::new(deliverer.policy.outage);
        Self {
            scheduler,
            deliverer,
            fleet,
            fleet_share,
            tenants,
            refresh_every,
            cloud_health_every,
            health_checks: HealthChecks::new(cloud_health_concurrency),
            cloud_limits: HashMap::new(),
            events_tx,
            events,
            shutdown,
            tasks,
            lanes: HashMap::new(),
            bulk_lanes: HashMap::new(),
            waiting_for_row: HashMap::new(),
            fleet_per_minute,
            warmup,
            chats_in_flight: HashSet::new(),
            flaps: BridgeFlaps::new(flaps),
            cloud_holds: CloudHolds::default(),
            outage,
            gauges: TenantGauges::new(),
            status: StatusTracker::new(status),
            status_every,
        }
    }

    /// Where other tasks send the loop their events.
    pub fn events(&self) -> EventSender {
        self.events_tx.clone()
    }
}
