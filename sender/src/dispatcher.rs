//! The send loop: one task owns the fair-share scheduler and turns its
//! decisions into deliveries; everything else reaches it as an [`Event`].
//!
//! Lanes announce work (one event per message they take); the scheduler says
//! which tenant sends next; the delivery runs in its own task and comes back
//! as a completion, which releases the grant and, for a message that must
//! wait, puts it back at the head of its lane and pauses the tenant (or the
//! whole fleet, for a 429). Bridge state announcements pause and resume
//! tenants; a periodic refresh re-reads limits and bridge state from the
//! tenants table, in case an announcement was lost.
//!
//! WhatsApp behaviour (`docs/whatsapp.md`) lives here too: each tenant's
//! pacing gap is handed to the scheduler; the messages of one chat are sent
//! one at a time, in lane order (a multi-part reply goes out in order, and a
//! failed part is retried before the next part goes); a `disconnected` bridge
//! is held, alerted on only after a grace period, and resumed after a random
//! jitter so a fleet-wide reconnect does not burst the fleet budget.
//!
//! Each tenant has two lanes here: live replies (`OUTBOUND`) and bulk
//! (`BULK`: dead-letter replays and the router's answers to recovered
//! events). The scheduler's grant names the lane to take from; bulk goes only
//! when the tenant has no live reply ready, within `bulk_share_percent` of the
//! fleet budget. The ledger is keyed by (tenant, reply id) whatever the lane,
//! so a reply that reaches both lanes is still sent once.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use futures::StreamExt as _;
use switchyard_shared::{
    ids::TenantId,
    lanes::{LaneWork, TenantLane},
    subjects,
    tenant_cache::TenantCache,
    tenants::{SendLimits, Tenant},
};
use tokio::{sync::mpsc, time::Instant};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    deliver::{Deliverer, StepResult},
    fair_share::{Decision, Grant, LaneClass, PauseReason, Scheduler},
    fleet_budget::FleetBudget,
    outbound::OutboundMessage,
};

/// What the send loop hears about.
pub enum Event {
    /// A lane took a message (or holds a backlog to drain).
    Work(Arc<TenantLane>),
    /// A delivery finished or must wait.
    Completed(Box<Completion>),
    /// A tenant's row as just read (`None`: no such tenant).
    Refreshed(TenantId, Option<Arc<Tenant>>),
    /// The router saw `connected` / `disconnected`.
    BridgeState(TenantId, bool),
    /// Look at a tenant's lane again (a spilled backlog not yet fetchable).
    Probe(TenantId),
    /// An operator lifted the tenant's holds (unauthorized, restricted, operator).
    OperatorResume(TenantId),
}

/// A delivery's end, with the grant it used.
pub struct Completion {
    pub grant: Grant,
    pub lane: Arc<TenantLane>,
    pub result: StepResult,
    /// The chat the message was for (sends to one chat go one at a time).
    pub chat: String,
}

/// How bridge flaps are handled.
#[derive(Debug, Clone, Copy)]
pub struct FlapSettings {
    /// A `disconnected` shorter than this only holds sending; past it, an alert.
    pub grace: Duration,
    /// On `connected`, the held tenant resumes after a random delay up to this.
    pub reconnect_jitter: Duration,
}

impl Default for FlapSettings {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(120),
            reconnect_jitter: Duration::from_secs(3),
        }
    }
}

/// Limits used for a tenant whose row is not known (yet): its messages flow
/// to the delivery step, which drops them and counts.
const UNKNOWN_TENANT_LIMITS: SendLimits = SendLimits {
    weight: 1,
    sends_per_minute: 60,
    send_burst: 10,
    max_in_flight: 1,
};

/// The send loop's state.
pub struct Dispatcher {
    pub scheduler: Scheduler,
    pub deliverer: Arc<Deliverer>,
    pub fleet: Option<FleetBudget>,
    pub tenants: TenantCache,
    pub refresh_every: Duration,
    pub events_tx: mpsc::UnboundedSender<Event>,
    pub events: mpsc::UnboundedReceiver<Event>,
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
    /// Live and bulk lanes by tenant, and work (live, bulk) announced before
    /// the tenant's row was read.
    lanes: HashMap<TenantId, Arc<TenantLane>>,
    bulk_lanes: HashMap<TenantId, Arc<TenantLane>>,
    waiting_for_row: HashMap<TenantId, (u64, u64)>,
    /// The fleet budget a tenant's `bulk_share_percent` is a share of.
    fleet_per_minute: u32,
    /// Lower limits for newly paired numbers.
    warmup: crate::fair_share::warmup::WarmUp,
    /// Chats with a send in flight, per tenant.
    chats_in_flight: HashSet<(TenantId, String)>,
    flaps: FlapSettings,
    /// Tenants whose bridge is down, since when, and whether we alerted.
    disconnected: HashMap<TenantId, (Instant, bool)>,
    /// Tenants whose jittered resume is scheduled, and for when.
    resuming: HashMap<TenantId, Instant>,
}

impl Dispatcher {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        scheduler: Scheduler,
        deliverer: Arc<Deliverer>,
        fleet: Option<FleetBudget>,
        tenants: TenantCache,
        refresh_every: Duration,
        events_tx: mpsc::UnboundedSender<Event>,
        events: mpsc::UnboundedReceiver<Event>,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) -> Self {
        Self {
            scheduler,
            deliverer,
            fleet,
            tenants,
            refresh_every,
            events_tx,
            events,
            shutdown,
            tasks,
            lanes: HashMap::new(),
            bulk_lanes: HashMap::new(),
            waiting_for_row: HashMap::new(),
            fleet_per_minute: crate::fair_share::GlobalLimits::DEFAULT_FLEET_PER_MINUTE,
            warmup: crate::fair_share::warmup::WarmUp::default(),
            chats_in_flight: HashSet::new(),
            flaps: FlapSettings::default(),
            disconnected: HashMap::new(),
            resuming: HashMap::new(),
        }
    }

    /// Sets how bridge flaps are handled (default: 2 min grace, 3 s jitter).
    pub fn with_flaps(mut self, flaps: FlapSettings) -> Self {
        self.flaps = flaps;
        self
    }

    /// Sets the fleet budget (calls a minute) bulk shares are taken of.
    pub fn with_fleet_per_minute(mut self, per_minute: u32) -> Self {
        self.fleet_per_minute = per_minute;
        self
    }

    /// Sets how newly paired numbers warm up (default: 7 days from 25 %).
    pub fn with_warmup(mut self, warmup: crate::fair_share::warmup::WarmUp) -> Self {
        self.warmup = warmup;
        self
    }

    /// Runs until shutdown; in-flight deliveries finish on their own tasks.
    pub async fn run(mut self) {
        let mut refresh = tokio::time::interval(self.refresh_every);
        loop {
            while let Ok(event) = self.events.try_recv() {
                self.apply(event).await;
            }
            let wake = match self.scheduler.next(Instant::now()) {
                Decision::Send(grant) => {
                    self.start_delivery(grant).await;
                    continue;
                }
                Decision::NeedFleetPermits { wanted } => {
                    self.lease(wanted).await;
                    continue;
                }
                Decision::WaitUntil(at) => Some(at),
                Decision::Idle => None,
            };
            let sleep = async {
                match wake {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = self.shutdown.cancelled() => return,
                event = self.events.recv() => match event {
                    Some(event) => self.apply(event).await,
                    None => return,
                },
                _ = refresh.tick() => {
                    self.refresh_all();
                    self.alert_long_disconnections();
                }
                _ = sleep => {}
            }
        }
    }

    async fn apply(&mut self, event: Event) {
        match event {
            Event::Work(lane) => {
                let tenant = lane.tenant().clone();
                let class = class_of(&lane);
                match class {
                    LaneClass::Live => self.lanes.insert(tenant.clone(), lane),
                    LaneClass::Bulk => self.bulk_lanes.insert(tenant.clone(), lane),
                };
                if self.arrived(&tenant, class, 1).is_err() {
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
            }
            Event::Refreshed(tenant, row) => self.on_refreshed(tenant, row),
            Event::BridgeState(tenant, connected) => self.on_bridge_state(&tenant, connected),
            Event::Probe(tenant) => self.probe(&tenant).await,
            Event::OperatorResume(tenant) => {
                for reason in [
                    PauseReason::Unauthorized,
                    PauseReason::Restricted,
                    PauseReason::Operator,
                    PauseReason::Backoff,
                ] {
                    let _ = self.scheduler.resume(&tenant, reason);
                }
                tracing::info!(tenant.id = %tenant, "operator resumed sending");
            }
            Event::Completed(done) => {
                let Completion {
                    grant,
                    lane,
                    result,
                    chat,
                } = *done;
                self.on_completed(grant, lane, result, chat).await;
            }
        }
    }

    fn on_refreshed(&mut self, tenant: TenantId, row: Option<Arc<Tenant>>) {
        let now_unix = time::OffsetDateTime::now_utc().unix_timestamp();
        let (limits, gap) = row
            .as_ref()
            .map_or((UNKNOWN_TENANT_LIMITS, Duration::ZERO), |r| {
                // A newly paired number gets lower limits (re-read every refresh).
                self.warmup.apply(
                    r.limits,
                    Duration::from_millis(u64::from(r.whatsapp.min_send_gap_ms)),
                    r.whatsapp.paired_at,
                    now_unix,
                )
            });
        self.scheduler.upsert_tenant(tenant.clone(), limits);
        if let Some(row) = &row {
            self.on_bridge_state(&tenant, row.bridge_state != "disconnected");
            let _ = self.scheduler.set_pacing(&tenant, gap);
        }
        let share = row.as_ref().map_or(100, |r| {
            u64::from(r.whatsapp.bulk_share_percent.clamp(1, 100))
        });
        let per_minute = (u64::from(self.fleet_per_minute) * share / 100).max(1);
        let per_minute = u32::try_from(per_minute).unwrap_or(u32::MAX);
        let _ = self
            .scheduler
            .set_bulk_rate(&tenant, Some((per_minute, per_minute.div_ceil(20).max(1))));
        if let Some((live, bulk)) = self.waiting_for_row.remove(&tenant) {
            let _ = self.scheduler.work_arrived(&tenant, live);
            let _ = self.scheduler.bulk_arrived(&tenant, bulk);
        }
    }

    /// Tells the scheduler a lane of the tenant holds `n` more messages.
    fn arrived(
        &mut self,
        tenant: &TenantId,
        class: LaneClass,
        n: u64,
    ) -> Result<(), crate::fair_share::UnknownTenant> {
        match class {
            LaneClass::Live => self.scheduler.work_arrived(tenant, n),
            LaneClass::Bulk => self.scheduler.bulk_arrived(tenant, n),
        }
    }

    /// Tells the scheduler a lane of the tenant holds nothing ready (the lane
    /// is the truth; a probe restores the count when it fills again).
    fn emptied(&mut self, tenant: &TenantId, class: LaneClass) {
        let _ = match class {
            LaneClass::Live => self.scheduler.set_ready(tenant, 0),
            LaneClass::Bulk => self.scheduler.set_bulk_ready(tenant, 0),
        };
    }

    fn lane(&self, tenant: &TenantId, class: LaneClass) -> Option<Arc<TenantLane>> {
        match class {
            LaneClass::Live => self.lanes.get(tenant).cloned(),
            LaneClass::Bulk => self.bulk_lanes.get(tenant).cloned(),
        }
    }

    /// A bridge went down (hold, no end) or came back (resume after jitter).
    fn on_bridge_state(&mut self, tenant: &TenantId, connected: bool) {
        let now = Instant::now();
        if !connected {
            self.resuming.remove(tenant);
            if self
                .scheduler
                .pause(tenant, PauseReason::BridgeDisconnected, None)
                .is_ok()
                && !self.disconnected.contains_key(tenant)
            {
                self.disconnected.insert(tenant.clone(), (now, false));
                tracing::info!(tenant.id = %tenant, "bridge disconnected; sending held");
            }
            return;
        }
        if let Some((since, _)) = self.disconnected.remove(tenant) {
            metrics::histogram!("switchyard_sender_bridge_down_seconds")
                .record(since.elapsed().as_secs_f64());
        }
        let held = self
            .scheduler
            .pause_reasons(tenant, now)
            .contains(&PauseReason::BridgeDisconnected);
        if !held || self.resuming.get(tenant).is_some_and(|at| *at > now) {
            // Not held, or its resume is already scheduled (a refresh seeing
            // `connected` again must not roll the dice again).
            return;
        }
        // Jittered: after a fleet-wide reconnect the held tenants come back
        // spread over the window, not all in the same instant.
        let jitter = self.flaps.reconnect_jitter.mul_f64(random_fraction());
        self.resuming.insert(tenant.clone(), now + jitter);
        let _ = self
            .scheduler
            .pause(tenant, PauseReason::BridgeDisconnected, Some(now + jitter));
        tracing::info!(tenant.id = %tenant, resume.after_ms = jitter.as_millis() as u64, "bridge connected; sending resumes after jitter");
    }

    /// A bridge down for longer than the grace period is no flap: tell an
    /// operator (once). Its messages keep waiting in its lane.
    fn alert_long_disconnections(&mut self) {
        for (tenant, (since, alerted)) in &mut self.disconnected {
            if !*alerted && since.elapsed() >= self.flaps.grace {
                *alerted = true;
                metrics::counter!("switchyard_sender_bridge_down_alerts_total").increment(1);
                tracing::error!(tenant.id = %tenant, down.seconds = since.elapsed().as_secs(), "bridge disconnected for longer than the grace period; sending stays held");
            }
        }
    }

    fn refresh(&self, tenant: TenantId) {
        let tenants = self.tenants.clone();
        let events = self.events_tx.clone();
        self.tasks.spawn(async move {
            tenants.invalidate(&tenant).await;
            match tenants.resolve(&tenant).await {
                Ok(row) => {
                    let _ = events.send(Event::Refreshed(tenant, row));
                }
                Err(e) => {
                    tracing::warn!(tenant.id = %tenant, error = %e, "cannot read tenant; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    let _ = events.send(Event::Probe(tenant));
                }
            }
        });
    }

    fn refresh_all(&self) {
        let tenants: HashSet<&TenantId> = self.lanes.keys().chain(self.bulk_lanes.keys()).collect();
        for tenant in tenants {
            self.refresh(tenant.clone());
        }
    }

    async fn start_delivery(&mut self, grant: Grant) {
        let tenant = grant.tenant().clone();
        let class = grant.class();
        let Some(lane) = self.lane(&tenant, class) else {
            self.scheduler
                .completed(grant, crate::fair_share::Outcome::NotAttempted);
            self.emptied(&tenant, class);
            return;
        };
        let message = match lane.try_next().await {
            Ok(Some(m)) => m,
            Ok(None) | Err(_) => {
                self.scheduler
                    .completed(grant, crate::fair_share::Outcome::NotAttempted);
                self.emptied(&tenant, class);
                if lane.is_spilling().await {
                    self.probe_later(tenant, Duration::from_millis(200));
                }
                return;
            }
        };
        let message = OutboundMessage::read(message);
        let chat = message.chat_id().to_owned();
        let key = (tenant.clone(), chat.clone());
        if self.chats_in_flight.contains(&key) {
            // That chat's previous message is still being sent: keep the
            // lane's order and wait for its completion (which probes again).
            lane.push_front(message.into_lane()).await;
            self.scheduler.completed_at(
                grant,
                crate::fair_share::Outcome::NotAttempted,
                Instant::now(),
            );
            self.emptied(&tenant, class);
            return;
        }
        self.chats_in_flight.insert(key);
        let deliverer = self.deliverer.clone();
        let events = self.events_tx.clone();
        self.tasks.spawn(async move {
            let result = deliverer.deliver(message).await;
            let _ = events.send(Event::Completed(Box::new(Completion {
                grant,
                lane,
                result,
                chat,
            })));
        });
    }

    async fn on_completed(
        &mut self,
        grant: Grant,
        lane: Arc<TenantLane>,
        result: StepResult,
        chat: String,
    ) {
        let tenant = grant.tenant().clone();
        let now = Instant::now();
        match result {
            StepResult::Finished(outcome) => self.scheduler.completed_at(grant, outcome, now),
            StepResult::PushBack {
                message,
                outcome,
                tenant_pause,
                fleet_pause,
            } => {
                self.scheduler.completed_at(grant, outcome, now);
                lane.push_front(*message).await;
                let _ = self.arrived(&tenant, class_of(&lane), 1);
                if let Some((reason, for_at_most)) = tenant_pause {
                    let until = for_at_most.map(|d| Instant::now() + d);
                    let _ = self.scheduler.pause(&tenant, reason, until);
                }
                if let Some(pause) = fleet_pause {
                    self.scheduler.pause_fleet_until(Instant::now() + pause);
                    if let Some(fleet) = self.fleet.clone() {
                        self.tasks.spawn(async move {
                            if let Err(e) = fleet.pause_for(pause).await {
                                tracing::warn!(error = %e, "cannot share the fleet pause with other replicas");
                            }
                        });
                    }
                }
            }
        }
        // Only now, with a failed message back at the head of its lane, may
        // the chat's next message go.
        self.chats_in_flight.remove(&(tenant.clone(), chat));
        // The scheduler's count is a hint; the lane is the truth.
        self.probe(&tenant).await;
    }

    /// Reports a lane the scheduler thinks empty that holds work after all.
    async fn probe(&mut self, tenant: &TenantId) {
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

    fn probe_later(&self, tenant: TenantId, after: Duration) {
        let events = self.events_tx.clone();
        let shutdown = self.shutdown.clone();
        self.tasks.spawn(async move {
            tokio::select! {
                _ = shutdown.cancelled() => {}
                _ = tokio::time::sleep(after) => { let _ = events.send(Event::Probe(tenant)); }
            }
        });
    }

    async fn lease(&mut self, wanted: u32) {
        let Some(fleet) = self.fleet.clone() else {
            return;
        };
        match fleet.acquire(wanted).await {
            Ok(lease) => lease.apply_to(&mut self.scheduler),
            Err(e) => {
                tracing::warn!(error = %e, "cannot lease from the fleet budget; waiting");
                self.scheduler
                    .pause_fleet_until(Instant::now() + Duration::from_millis(500));
            }
        }
    }
}

/// The lane class of a lane of the sender.
fn class_of(lane: &TenantLane) -> LaneClass {
    match lane.direction() {
        switchyard_shared::subjects::Direction::Bulk => LaneClass::Bulk,
        _ => LaneClass::Live,
    }
}

/// A uniformly random number in [0, 1), from the low 62 bits of a v4 uuid
/// (all random: the version and variant bits sit above them).
fn random_fraction() -> f64 {
    let bits = (uuid::Uuid::new_v4().as_u128() as u64 & ((1 << 62) - 1)) >> 9;
    bits as f64 / (1u64 << 53) as f64
}

/// Forwards operators' resume announcements into the send loop.
pub async fn follow_operator_resumes(
    nats: async_nats::Client,
    events: mpsc::UnboundedSender<Event>,
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

/// Forwards the router's bridge announcements into the send loop.
pub async fn follow_bridge_states(
    nats: async_nats::Client,
    events: mpsc::UnboundedSender<Event>,
    shutdown: CancellationToken,
) {
    forward_announcements(
        nats,
        subjects::BRIDGE_STATE_FILTER,
        events,
        shutdown,
        |tenant, payload| match payload {
            b"connected" => Some(Event::BridgeState(tenant, true)),
            b"disconnected" => Some(Event::BridgeState(tenant, false)),
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
    events: mpsc::UnboundedSender<Event>,
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
                        let _ = events.send(event);
                    }
                }
                None => return,
            }
        }
    }
}

/// Forwards lane work announcements into the send loop.
pub async fn forward_work(mut work: LaneWork, events: mpsc::UnboundedSender<Event>) {
    while let Some(lane) = work.recv().await {
        if events.send(Event::Work(lane)).is_err() {
            return;
        }
    }
}
