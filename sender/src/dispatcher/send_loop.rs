//! The send loop: asks the scheduler who sends next, starts that delivery on
//! a task of its own, and applies every event that comes back.
//!
//! A delivery's completion releases its grant and, for a message that must
//! wait, puts it back at the head of its lane and pauses the tenant (or the
//! whole fleet, for a 429). The messages of one chat are sent one at a time,
//! in lane order: a multi-part reply goes out in order, and a failed part is
//! retried before the next part goes.

use std::{collections::BTreeSet, sync::Arc, time::Duration};

use switchyard_shared::ids::TenantId;
use tokio::time::Instant;

use super::{
    Dispatcher,
    events::{Completion, Event},
    lane_work::class_of,
    provider_outage::{Change, Gate},
    tenant_refresh::RefreshSlices,
};
use crate::{
    deliver::{Attempt, ProviderSignal, StepResult},
    fair_share::{Decision, Grant, GrantOutcome, PauseReason},
    fleet_budget::{FleetBudgetError, Lease, budget_ledger::Claim},
    metrics as m,
    outbound::OutboundMessage,
};

/// How long one lease from the shared budget may take (the loop waits for
/// it; a healthy lease takes a few milliseconds).
const LEASE_ATTEMPT: Duration = Duration::from_secs(2);
/// How often long disconnections are alerted and the per-tenant gauges
/// published (apart from the row refresh, which announcements make rare).
const HOUSEKEEPING: Duration = Duration::from_secs(5);

impl Dispatcher {
    /// Runs until shutdown; in-flight deliveries finish on their own tasks.
    pub async fn run(mut self) {
        let slices = RefreshSlices::new(self.refresh_every);
        let mut refresh = tokio::time::interval(slices.tick());
        let mut slice = 0;
        let mut housekeeping = tokio::time::interval(HOUSEKEEPING);
        housekeeping.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut cloud_health = tokio::time::interval_at(
            Instant::now() + self.cloud_health_every,
            self.cloud_health_every,
        );
        cloud_health.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut status = tokio::time::interval(self.status_every);
        status.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            while let Ok(event) = self.events.try_recv() {
                self.apply(event).await;
            }
            let wake = match self.outage.gate(Instant::now()) {
                // WA Bridges is down: none of its tenants sends until the
                // next probe; Cloud API tenants go on.
                Gate::Hold(until) => match self.scheduler.next_outside_fleet(Instant::now()) {
                    Decision::Send(grant) => {
                        self.start_delivery(grant, false).await;
                        continue;
                    }
                    Decision::WaitUntil(at) => Some(until.map_or(at, |u| u.min(at))),
                    Decision::Idle | Decision::NeedFleetPermits { .. } => until,
                },
                gate => match self.scheduler.next(Instant::now()) {
                    Decision::Send(grant) => {
                        // Only a WA Bridges send can tell whether WA Bridges is back.
                        let probe = gate == Gate::Probe
                            && self.scheduler.is_fleet_member(grant.tenant()) == Some(true);
                        self.start_delivery(grant, probe).await;
                        continue;
                    }
                    Decision::NeedFleetPermits {
                        wanted,
                        sparse_waiting,
                    } => {
                        let claim = if sparse_waiting {
                            Claim::Sparse
                        } else {
                            Claim::Backlog
                        };
                        self.lease(wanted, claim).await;
                        continue;
                    }
                    Decision::WaitUntil(at) => Some(at),
                    Decision::Idle => None,
                },
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
                    self.refresh_slice(&slices, slice);
                    slice = (slice + 1) % slices.count();
                }
                _ = cloud_health.tick() => self.check_all_cloud_health(),
                _ = housekeeping.tick() => {
                    self.flaps.alert_long_disconnections();
                    let now = Instant::now();
                    self.gauges.publish(&self.scheduler.observe(now), now);
                }
                _ = status.tick() => self.snapshot_status().await,
                _ = sleep => {}
            }
        }
    }

    async fn apply(&mut self, event: Event) {
        match event {
            Event::Work(lane) => self.on_work(lane),
            Event::Refreshed(tenant, row, cloud) => {
                let token = cloud.as_ref().map(|c| c.token);
                self.on_refreshed(tenant.clone(), row, cloud);
                self.apply_cloud_holds(&tenant, token);
            }
            Event::Hold(tenant, reason) => self.on_hold_announced(tenant, reason),
            Event::BridgeState(tenant, connected) => {
                self.flaps
                    .on_bridge_state(&mut self.scheduler, &tenant, connected);
            }
            Event::Probe(tenant) => self.probe(&tenant).await,
            Event::TenantChanged(tenant, health) => {
                if self.lanes.contains_key(&tenant) || self.bulk_lanes.contains_key(&tenant) {
                    if health {
                        self.check_cloud_health(tenant);
                    } else {
                        self.refresh(tenant);
                    }
                }
            }
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
            Event::Completed(done) => self.on_completed(*done).await,
        }
    }

    /// Starts the grant's delivery; `probe`: it is the provider probe of an
    /// outage (marked as such only once a delivery really starts).
    async fn start_delivery(&mut self, grant: Grant, probe: bool) {
        let tenant = grant.tenant().clone();
        let class = grant.class();
        let Some(lane) = self.lane(&tenant, class) else {
            self.scheduler.completed(grant, GrantOutcome::NotAttempted);
            self.emptied(&tenant, class);
            return;
        };
        let message = match lane.try_next().await {
            Ok(Some(m)) => m,
            Ok(None) | Err(_) => {
                self.scheduler.completed(grant, GrantOutcome::NotAttempted);
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
            self.scheduler
                .completed_at(grant, GrantOutcome::NotAttempted, Instant::now());
            self.emptied(&tenant, class);
            return;
        }
        self.chats_in_flight.insert(key);
        let attempt = if probe {
            self.outage.probe_started();
            Attempt::Probe
        } else {
            Attempt::Normal
        };
        let deliverer = Arc::clone(&self.deliverer);
        let events = self.events_tx.clone();
        self.tasks.spawn(async move {
            let (result, signal) = deliverer.deliver_as(message, attempt).await;
            let completion = Completion {
                grant,
                lane,
                result,
                chat,
                probe,
                signal,
            };
            let _ = events.send(Event::Completed(Box::new(completion))).await;
        });
    }

    async fn on_completed(&mut self, done: Completion) {
        let Completion {
            grant,
            lane,
            result,
            chat,
            probe,
            signal,
        } = done;
        let tenant = grant.tenant().clone();
        let now = Instant::now();
        let change = self.outage.observe(&tenant, signal, probe, now);
        match result {
            StepResult::Finished(outcome) => {
                if outcome == GrantOutcome::Delivered {
                    self.deliverer
                        .activity
                        .send_out(&tenant, switchyard_shared::tenant_status::record::now_ms());
                }
                self.scheduler.completed_at(grant, outcome, now);
            }
            StepResult::PushBack {
                message,
                outcome,
                tenant_pause,
                fleet_pause,
            } => {
                self.scheduler.completed_at(grant, outcome, now);
                lane.push_front(*message).await;
                let _ = self.arrived(&tenant, class_of(&lane), 1);
                // While the provider is down, the outage holds everyone: a
                // tenant's own backoff would only delay it past the recovery.
                let outage_holds = self.outage.is_down()
                    && signal == ProviderSignal::Trouble
                    && matches!(tenant_pause, Some((PauseReason::Backoff, _)));
                if let Some((reason, for_at_most)) = tenant_pause.filter(|_| !outage_holds) {
                    let until = for_at_most.map(|d| Instant::now() + d);
                    let _ = self.scheduler.pause(&tenant, reason, until);
                }
                if let Some(pause) = fleet_pause {
                    self.pause_fleet(pause);
                }
            }
        }
        // Only now, with a failed message back at the head of its lane, may
        // the chat's next message go.
        self.chats_in_flight.remove(&(tenant.clone(), chat));
        // The scheduler's count is a hint; the lane is the truth.
        self.probe(&tenant).await;
        self.on_outage_change(change).await;
    }

    /// Tripped: every tenant's own backoff is lifted (the outage holds them
    /// all, and the probe may go to any of them). Recovered: lifted again
    /// (failures that came back meanwhile), so every tenant sends at once,
    /// paced by the fleet budget.
    async fn on_outage_change(&mut self, change: Change) {
        match change {
            Change::None => return,
            Change::Tripped => {
                let (failures, tenants) = self.outage.failures();
                metrics::counter!(m::PROVIDER_OUTAGES).increment(1);
                metrics::gauge!(m::PROVIDER_DOWN).set(1.0);
                tracing::error!(
                    outage.failures = failures,
                    outage.tenants = tenants,
                    "the provider looks down (consecutive failures across tenants); every send is held and a probe goes out periodically"
                );
            }
            Change::Recovered(lasted) => {
                metrics::gauge!(m::PROVIDER_DOWN).set(0.0);
                metrics::histogram!(m::PROVIDER_OUTAGE_SECONDS).record(lasted.as_secs_f64());
                tracing::warn!(
                    outage.seconds = lasted.as_secs_f64(),
                    "the provider answers again; every tenant resumes"
                );
            }
        }
        let tenants: BTreeSet<TenantId> = self
            .lanes
            .keys()
            .chain(self.bulk_lanes.keys())
            .cloned()
            .collect();
        for tenant in tenants {
            let _ = self.scheduler.resume(&tenant, PauseReason::Backoff);
            self.probe(&tenant).await;
        }
    }

    /// Holds every send here at once, and shares the pause with the other
    /// replicas through the fleet budget (on a task of its own).
    fn pause_fleet(&mut self, pause: Duration) {
        self.scheduler.pause_fleet_until(Instant::now() + pause);
        if let Some(fleet) = self.fleet.clone() {
            self.tasks.spawn(async move {
                if let Err(e) = fleet.pause_for(pause).await {
                    tracing::warn!(error = %e, "cannot share the fleet pause with other replicas");
                }
            });
        }
    }

    /// A quiet tenant's reply (`Claim::Sparse`) may take the budget's
    /// reserve, which the leases for a backlog leave, so another replica's
    /// flood cannot outrun it to every permit.
    async fn lease(&mut self, wanted: u32, claim: Claim) {
        let Some(fleet) = self.fleet.clone() else {
            return;
        };
        // While the budget's bucket elects a leader (a NATS node lost) a
        // lease is never answered: ask again soon rather than wait out the
        // request timeout after the new leader is there. A write that lands
        // after we gave up only counts permits nobody uses (the safe side).
        let asked = tokio::time::timeout(LEASE_ATTEMPT, fleet.acquire_for(wanted, claim)).await;
        match asked.unwrap_or(Err(FleetBudgetError::Unanswered(LEASE_ATTEMPT))) {
            Ok(lease) => {
                record_budget_wait(&lease);
                lease.apply_to(&mut self.scheduler);
            }
            Err(e) => {
                // Send on at this replica's share of the steady rate until
                // the ledger answers again (`fleet_budget::local_share`).
                let lease = fleet.local_lease(wanted, self.fleet_share.fraction());
                tracing::debug!(error = %e, ?lease, "the fleet budget cannot be reached; leasing locally");
                metrics::counter!(m::FLEET_BUDGET_UNREACHABLE).increment(1);
                lease.apply_to(&mut self.scheduler);
            }
        }
    }
}

/// Counts the time the shared budget told this replica to wait.
fn record_budget_wait(lease: &Lease) {
    let reason = match lease {
        Lease::Granted { .. } => return,
        Lease::Exhausted { .. } => "exhausted",
        Lease::Paused { .. } => "paused",
    };
    if let Some(until) = lease.wait_until() {
        let waited = until.saturating_duration_since(Instant::now());
        metrics::counter!(m::FLEET_BUDGET_WAIT_MS, "reason" => reason)
            .increment(waited.as_millis().try_into().unwrap_or(u64::MAX));
    }
}
