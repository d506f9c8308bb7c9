//! The weighted deficit round-robin scheduler: which tenant sends next.
//!
//! The scheduler holds no messages and does no I/O. Its caller reports what
//! happens (work arrived, a bridge disconnected, a send completed, a 429) and
//! asks [`Scheduler::next`] what to do at an instant; every answer is a pure
//! function of the reported events and that instant, so tests drive it with
//! made-up instants and no clock.
//!
//! Admission is layered: the fleet gate (local bucket or leased permits) and
//! the global in-flight cap bound the total; each tenant's pauses, bucket and
//! in-flight cap bound that tenant; DRR chooses among the tenants that pass.
//! The fleet gate binds only the tenants of the provider whose budget it is
//! ([`FleetMembership::Member`], WA Bridges); a Cloud API tenant
//! ([`FleetMembership::Exempt`]) passes it, and keeps sending while the
//! gate is closed or paused by the other provider's 429.
//!
//! Each tenant has two lanes: live replies and bulk (re-runs an operator
//! started). A grant serves the bulk lane only when the tenant has no live
//! reply ready, bulk has its own bucket (its share of the fleet budget), and
//! bulk never takes a tenant's last in-flight slot. Both lanes share the
//! tenant's DRR turn, bucket, pauses and pacing gate: bulk is that tenant's
//! work, never extra capacity taken from the others.
//!
//! Sparse tenants: classic DRR puts a tenant that gets work at the ring's
//! back, so under a flood a quiet tenant's reply waited for the flooder's
//! turn and then for the next fleet token: two token intervals (quiet p50
//! 4 → 16 ms at 100 sends/s, all of it between the lane and the grant). As
//! in FQ-CoDel's new-flow list, a tenant that comes back with live work once
//! every tenant in the ring has had a turn since its own last send (weighted:
//! a light tenant waits proportionally more grants) is *sparse*: it waits
//! ahead of the backlogged tenants, in arrival order, for one send. The
//! rule bounds what a tenant can take by arriving just in time: one send
//! per round of the others, its fair share. And the fleet gate keeps one
//! permit in reserve that only sparse tenants may take
//! ([`FleetGate::backlog_ready`]: the local bucket's last token, or the
//! last leased permit held until shortly before it expires), so a sparse
//! tenant's reply does not wait for the next token or lease at all;
//! backlogged tenants lose no rate, only run one permit later.

use std::collections::VecDeque;

use switchyard_shared::{ids::TenantId, tenants::SendLimits};
use tokio::time::Instant;

use super::{
    fleet_gate::{FleetGate, FleetLimit, FleetMembership, FleetPermit, FleetReady},
    tenant_state::{Pause, PauseReason, TenantState},
    tenant_table::{Slot, TenantTable},
    token_bucket::TokenBucket,
};

/// DRR credit of one message. Quanta are fractions of it (`weight / max
/// weight`), kept in integers so shares are exact and runs reproducible.
pub(super) const CREDIT: u64 = 1 << 20;

/// The limits on the total, whoever sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GlobalLimits {
    /// Where the fleet-wide call budget is enforced.
    pub fleet: FleetLimit,
    /// Sends in flight from this replica, all tenants together.
    pub max_in_flight: u32,
}

impl GlobalLimits {
    /// The provider's default budget per API key (WA Bridges: 120/minute).
    pub const DEFAULT_FLEET_PER_MINUTE: u32 = 120;

    /// A budget this process enforces on its own (one replica, tests).
    pub fn local(per_minute: u32, burst: u32, max_in_flight: u32) -> Self {
        Self {
            fleet: FleetLimit::Local { per_minute, burst },
            max_in_flight,
        }
    }

    /// A budget shared with other replicas through leased permits.
    pub fn leased(max_in_flight: u32) -> Self {
        Self {
            fleet: FleetLimit::Leased,
            max_in_flight,
        }
    }
}

/// What the caller should do now.
#[derive(Debug)]
#[must_use]
pub enum Decision {
    /// Send the granted tenant's next message, then report [`Scheduler::completed`].
    Send(Grant),
    /// Nothing can be sent before this instant; ask again then, or earlier
    /// when an event arrives (work, completion, resume).
    WaitUntil(Instant),
    /// Leased mode: tenants could send but this replica holds no fleet
    /// permit (or only the reserve). Lease up to `wanted` and hand them over
    /// with [`crate::fleet_budget::Lease::apply_to`].
    NeedFleetPermits {
        /// How many sends could start right away.
        wanted: u32,
        /// A sparse tenant is among them: the lease may take the shared
        /// budget's reserve ([`crate::fleet_budget::budget_ledger::Claim::Sparse`]).
        sparse_waiting: bool,
    },
    /// Nothing can be sent until an event arrives: no work, every tenant with
    /// work paused without end, or the in-flight caps reached.
    Idle,
}

/// Which of a tenant's lanes a grant serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LaneClass {
    /// Answers to people waiting now.
    Live,
    /// Re-runs (dead-letter replays, recovery): after live, within a share.
    Bulk,
}

/// Permission to make one send for one tenant. Hand it back through
/// [`Scheduler::completed`] exactly once; it cannot be copied or forged.
#[derive(Debug)]
#[must_use = "a grant holds an in-flight slot until it is completed"]
pub struct Grant {
    tenant: TenantId,
    id: u64,
    generation: u64,
    fleet: FleetPermit,
    class: LaneClass,
}

impl Grant {
    /// The lane whose head is to be sent.
    pub fn class(&self) -> LaneClass {
        self.class
    }

    /// The tenant whose next message is to be sent.
    pub fn tenant(&self) -> &TenantId {
        &self.tenant
    }

    /// A sequence number, unique within this scheduler (for logs).
    pub fn id(&self) -> u64 {
        self.id
    }
}

/// How a granted send ended, as far as budgets are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantOutcome {
    /// The provider accepted it (2xx).
    Delivered,
    /// The call reached, or may have reached, the provider and failed (4xx,
    /// 5xx, timeout, a connection lost mid-call). Both tokens stay spent.
    Failed,
    /// 429: the provider refused before sending. The tenant's token comes
    /// back (nothing went out on its number); the fleet token stays spent,
    /// because the provider may count refused calls against the key.
    /// Also call [`Scheduler::pause_fleet_until`] with the Retry-After.
    RateLimited,
    /// The grant was never used for a provider call (already in the ledger,
    /// message gone, shutting down): both tokens come back.
    NotAttempted,
}

/// The tenant has not been added with [`Scheduler::upsert_tenant`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("tenant {0} is not known to the scheduler")]
pub struct UnknownTenant(pub TenantId);

/// A weighted deficit round-robin over tenants under global limits.
#[derive(Debug)]
pub struct Scheduler {
    limits: GlobalLimits,
    fleet: FleetGate,
    fleet_paused_until: Option<Instant>,
    /// The shared budget has no permit before this instant: no lease is
    /// asked for until then, while the permits held stay usable.
    lease_after: Option<Instant>,
    in_flight: u32,
    tenants: TenantTable,
    /// Tenants with ready work, in DRR order; the front one has the turn.
    ring: VecDeque<Slot>,
    next_grant: u64,
    next_generation: u64,
}

/// One tenant as [`Scheduler::observe`] sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantView {
    pub tenant: TenantId,
    /// Replies ready to send, live and bulk.
    pub waiting: u64,
    /// The pauses holding it.
    pub held: Vec<PauseReason>,
}

/// What one pass over the ring found, before DRR picks anyone, for the
/// tenants the fleet budget gates (`member`) and those it does not (`exempt`).
#[derive(Debug, Default)]
struct Survey {
    member: Group,
    exempt: Group,
    /// Eligible fleet members that are sparse (may take the fleet reserve).
    sparse_members: u32,
}

/// One side of a [`Survey`].
#[derive(Debug, Default, Clone, Copy)]
struct Group {
    eligible: u32,
    max_eligible_weight: u64,
    /// Earliest instant an ineligible tenant with work becomes eligible.
    earliest: Option<Instant>,
}

impl Group {
    /// When this group could send, if the fleet gate (for members) opens at `gate`.
    fn ready_at(&self, now: Instant, gate: Option<Instant>) -> Option<Instant> {
        let at = if self.eligible > 0 {
            Some(now)
        } else {
            self.earliest
        };
        match (at, gate) {
            (Some(at), Some(gate)) => Some(at.max(gate)),
            (at, _) => at,
        }
    }
}

/// Which tenants a pick may grant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Admit {
    /// The fleet gate is open: everyone.
    All,
    /// The fleet gate is closed: only tenants outside the fleet budget.
    ExemptOnly,
    /// Only the fleet gate's reserve is left: sparse tenants and tenants
    /// outside the fleet budget.
    SparseOnly,
}

impl Admit {
    fn admits(self, state: &TenantState) -> bool {
        match self {
            Admit::All => true,
            Admit::ExemptOnly => !state.fleet_gated(),
            Admit::SparseOnly => !state.fleet_gated() || state.sparse,
        }
    }
}

impl Scheduler {
    /// An empty scheduler.
    pub fn new(limits: GlobalLimits) -> Self {
        Self {
            limits,
            fleet: FleetGate::new(limits.fleet),
            fleet_paused_until: None,
            lease_after: None,
            in_flight: 0,
            tenants: TenantTable::default(),
            ring: VecDeque::new(),
            next_grant: 0,
            next_generation: 0,
        }
    }

    /// Adds a tenant, or changes its limits keeping its state (ready work,
    /// in-flight sends, pauses, spent tokens).
    pub fn upsert_tenant(&mut self, tenant: TenantId, limits: SendLimits) {
        if let Some(state) = self.tenants.get_mut(&tenant) {
            state.limits = limits;
            state
                .bucket
                .reconfigure(limits.sends_per_minute, limits.send_burst);
            return;
        }
        self.next_generation += 1;
        self.tenants
            .insert(tenant, TenantState::new(limits, self.next_generation));
    }

    /// Sets the tenant's pacing gate: at least `min_gap` (plus up to half of
    /// it again as jitter) between two sends on its bridge, measured from the
    /// previous send's answer when reported with [`Scheduler::completed_at`].
    /// A paced tenant has one send in flight at most. Zero turns pacing off.
    pub fn set_pacing(
        &mut self,
        tenant: &TenantId,
        min_gap: std::time::Duration,
    ) -> Result<(), UnknownTenant> {
        let state = self
            .tenants
            .get_mut(tenant)
            .ok_or_else(|| UnknownTenant(tenant.clone()))?;
        state.min_gap = min_gap;
        if min_gap.is_zero() {
            // Pacing off takes effect now; a changed gap from the next send.
            state.next_send_at = None;
        }
        Ok(())
    }

    /// Sets whether the fleet budget (and its pauses) gate this tenant's
    /// sends; a tenant starts as a [`FleetMembership::Member`].
    pub fn set_fleet_membership(
        &mut self,
        tenant: &TenantId,
        membership: FleetMembership,
    ) -> Result<(), UnknownTenant> {
        self.state_mut(tenant)?.fleet = membership;
        Ok(())
    }

    /// Forgets a tenant. Its outstanding grants still hold global in-flight
    /// slots until completed. Returns whether it was known.
    pub fn remove_tenant(&mut self, tenant: &TenantId) -> bool {
        let Some(slot) = self.tenants.slot(tenant) else {
            return false;
        };
        self.ring.retain(|s| *s != slot);
        self.tenants.remove(tenant);
        true
    }

    /// The caller now holds `n` more messages ready for this tenant.
    pub fn work_arrived(&mut self, tenant: &TenantId, n: u64) -> Result<(), UnknownTenant> {
        let ready = self.state(tenant)?.ready;
        self.set_ready(tenant, ready.saturating_add(n))
    }

    /// Sets how many messages the caller holds ready for this tenant (after a
    /// message was dropped or found to be a duplicate, say).
    pub fn set_ready(&mut self, tenant: &TenantId, n: u64) -> Result<(), UnknownTenant> {
        self.state_mut(tenant)?.ready = n;
        self.sync_ring(tenant)
    }

    /// The caller now holds `n` more messages in the tenant's bulk lane.
    pub fn bulk_arrived(&mut self, tenant: &TenantId, n: u64) -> Result<(), UnknownTenant> {
        let ready = self.state(tenant)?.bulk_ready;
        self.set_bulk_ready(tenant, ready.saturating_add(n))
    }

    /// Sets how many messages the caller holds in the tenant's bulk lane.
    pub fn set_bulk_ready(&mut self, tenant: &TenantId, n: u64) -> Result<(), UnknownTenant> {
        self.state_mut(tenant)?.bulk_ready = n;
        self.sync_ring(tenant)
    }

    /// A tenant's ready bulk work as last reported, minus what was granted.
    pub fn bulk_ready(&self, tenant: &TenantId) -> Option<u64> {
        self.tenants.get(tenant).map(|s| s.bulk_ready)
    }

    /// Caps the tenant's bulk lane at `per_minute` sends (its share of the
    /// fleet budget), `burst` at once; keeps what it has spent. `None`: no
    /// cap beyond the tenant's own limits.
    pub fn set_bulk_rate(
        &mut self,
        tenant: &TenantId,
        rate: Option<(u32, u32)>,
    ) -> Result<(), UnknownTenant> {
        let state = self.state_mut(tenant)?;
        match (rate, state.bulk_bucket.as_mut()) {
            (None, _) => state.bulk_bucket = None,
            (Some((per_minute, burst)), Some(bucket)) => bucket.reconfigure(per_minute, burst),
            (Some((per_minute, burst)), None) => {
                state.bulk_bucket = Some(TokenBucket::per_minute(per_minute, burst));
            }
        }
        Ok(())
    }

    fn state_mut(&mut self, tenant: &TenantId) -> Result<&mut TenantState, UnknownTenant> {
        self.tenants
            .get_mut(tenant)
            .ok_or_else(|| UnknownTenant(tenant.clone()))
    }

    /// Puts the tenant in the ring when it has work in either lane, takes it
    /// out when it has none.
    fn sync_ring(&mut self, tenant: &TenantId) -> Result<(), UnknownTenant> {
        let slot = self
            .tenants
            .slot(tenant)
            .ok_or_else(|| UnknownTenant(tenant.clone()))?;
        let state = self.tenants.at_mut(slot);
        let has_work = state.has_work();
        if has_work && !state.in_ring {
            state.in_ring = true;
            state.deficit = 0;
            let (live, last_grant, weight) = (state.ready > 0, state.last_grant, state.weight());
            // Back after a round of the others: its first send goes whatever
            // its weight (and, for live work, ahead of the backlogged). Back
            // sooner, it takes its turns like any backlogged tenant, so
            // coming and going buys no more than its weighted share.
            let rested = self.had_its_round(last_grant, weight);
            let sparse = live && rested;
            let state = self.tenants.at_mut(slot);
            state.fresh = rested;
            state.sparse = sparse;
            if sparse {
                // Behind the sparse tenants already waiting, ahead of the rest.
                let at = self
                    .ring
                    .iter()
                    .take_while(|s| self.tenants.at(**s).sparse)
                    .count();
                self.ring.insert(at, slot);
            } else {
                self.ring.push_back(slot);
            }
        } else if !has_work && state.in_ring {
            // Classic DRR: a tenant without work keeps no credit.
            state.in_ring = false;
            state.in_turn = false;
            state.fresh = false;
            state.sparse = false;
            state.deficit = 0;
            self.ring.retain(|s| *s != slot);
        }
        Ok(())
    }

    /// Whether a tenant last granted at `last_grant` has waited a round of
    /// the ring since: a grant for every tenant in it, times the ring's
    /// heaviest weight over its own (one send in that many is its weighted
    /// share of the ring at most).
    fn had_its_round(&self, last_grant: Option<u64>, weight: u64) -> bool {
        let Some(last) = last_grant else {
            return true;
        };
        let heaviest = self
            .ring
            .iter()
            .map(|s| self.tenants.at(*s).weight())
            .max()
            .unwrap_or(1);
        let round = (self.ring.len() as u64).saturating_mul(heaviest.div_ceil(weight.max(1)));
        self.next_grant.saturating_sub(last) >= round
    }

    /// Holds a tenant's sending for `reason`, until lifted or until `until`.
    /// Pausing again for the same reason replaces its end.
    pub fn pause(
        &mut self,
        tenant: &TenantId,
        reason: PauseReason,
        until: Option<Instant>,
    ) -> Result<(), UnknownTenant> {
        let state = self
            .tenants
            .get_mut(tenant)
            .ok_or_else(|| UnknownTenant(tenant.clone()))?;
        state.pauses.retain(|p| p.reason != reason);
        state.pauses.push(Pause { reason, until });
        Ok(())
    }

    /// Lifts the pause for `reason`; other reasons keep holding.
    pub fn resume(&mut self, tenant: &TenantId, reason: PauseReason) -> Result<(), UnknownTenant> {
        let state = self
            .tenants
            .get_mut(tenant)
            .ok_or_else(|| UnknownTenant(tenant.clone()))?;
        state.pauses.retain(|p| p.reason != reason);
        Ok(())
    }

    /// Lifts every pause of a tenant.
    pub fn resume_all(&mut self, tenant: &TenantId) -> Result<(), UnknownTenant> {
        let state = self
            .tenants
            .get_mut(tenant)
            .ok_or_else(|| UnknownTenant(tenant.clone()))?;
        state.pauses.clear();
        Ok(())
    }

    /// Whether the tenant is paused at `now`, and for which reasons.
    pub fn pause_reasons(&self, tenant: &TenantId, now: Instant) -> Vec<PauseReason> {
        self.tenants.get(tenant).map_or_else(Vec::new, |state| {
            state
                .pauses
                .iter()
                .filter(|p| p.until.is_none_or(|until| now < until))
                .map(|p| p.reason)
                .collect()
        })
    }

    /// The pauses holding a tenant at `now`, with their ends (`None`: until lifted).
    pub fn pause_ends(
        &self,
        tenant: &TenantId,
        now: Instant,
    ) -> Vec<(PauseReason, Option<Instant>)> {
        self.tenants.get(tenant).map_or_else(Vec::new, |state| {
            state
                .pauses
                .iter()
                .filter(|p| p.until.is_none_or(|until| now < until))
                .map(|p| (p.reason, p.until))
                .collect()
        })
    }

    /// Until when the fleet's sends wait, if they do at `now`: a 429's pause, or the
    /// shared budget's next permit (a sparse tenant may still take a held reserve).
    pub fn fleet_paused_until(&self, now: Instant) -> Option<Instant> {
        self.fleet_paused_until
            .max(self.lease_after)
            .filter(|until| now < *until)
    }

    /// The shared budget said its next permit comes at `at`: no lease is
    /// asked for before then. Unlike [`Scheduler::pause_fleet_until`] the
    /// permits held stay usable (a sparse tenant may still take the reserve).
    pub fn lease_later(&mut self, at: Instant) {
        self.lease_after = Some(self.lease_after.map_or(at, |a| a.max(at)));
    }

    /// Stops every send until `until` (a 429's Retry-After, here or shared
    /// by another replica). A later end extends the pause; an earlier
    /// one does not shorten it. Leased permits held are dropped: the provider
    /// would refuse them.
    pub fn pause_fleet_until(&mut self, until: Instant) {
        self.fleet_paused_until = Some(self.fleet_paused_until.map_or(until, |u| u.max(until)));
        self.fleet.drop_leased();
    }

    /// Adds fleet permits leased from the shared budget, valid until
    /// `expires_at`. Ignored when the fleet limit is local.
    pub fn add_fleet_permits(&mut self, count: u32, expires_at: Instant) {
        self.fleet.add(count, expires_at);
    }

    /// Leased fleet permits held and still valid at `now`.
    pub fn fleet_permits_held(&mut self, now: Instant) -> u32 {
        self.fleet.held(now)
    }

    /// Every tenant with replies ready (live and bulk) or a pause holding at
    /// `now`: what the per-tenant gauges show.
    pub fn observe(&self, now: Instant) -> Vec<TenantView> {
        self.tenants
            .iter()
            .filter_map(|(tenant, state)| {
                let held: Vec<PauseReason> = state
                    .pauses
                    .iter()
                    .filter(|p| p.until.is_none_or(|until| now < until))
                    .map(|p| p.reason)
                    .collect();
                let waiting = state.ready + state.bulk_ready;
                (waiting > 0 || !held.is_empty()).then(|| TenantView {
                    tenant: tenant.clone(),
                    waiting,
                    held,
                })
            })
            .collect()
    }

    /// Sends in flight, all tenants together.
    pub fn in_flight(&self) -> u32 {
        self.in_flight
    }

    /// A tenant's sends in flight; `None` for an unknown tenant.
    pub fn tenant_in_flight(&self, tenant: &TenantId) -> Option<u32> {
        self.tenants.get(tenant).map(|s| s.in_flight)
    }

    /// A tenant's ready work as last reported, minus what was granted.
    pub fn ready(&self, tenant: &TenantId) -> Option<u64> {
        self.tenants.get(tenant).map(|s| s.ready)
    }

    /// Whether a tenant is sparse now (waits ahead of the backlogged
    /// tenants and may take the fleet reserve); for the models in tests.
    #[cfg(test)]
    pub(super) fn is_sparse(&self, tenant: &TenantId) -> bool {
        self.tenants.get(tenant).is_some_and(|s| s.sparse)
    }

    /// Decides what to do at `now`. A [`Decision::Send`] has already taken a
    /// fleet token (for a fleet member), a tenant token, an in-flight slot on
    /// both levels and one ready message of the tenant.
    pub fn next(&mut self, now: Instant) -> Decision {
        self.decide(now, false)
    }

    /// [`Scheduler::next`] for the tenants outside the fleet budget only,
    /// while the fleet's provider is down (the send loop's outage hold):
    /// a WA Bridges outage holds no Cloud API tenant. Fleet members are
    /// neither granted nor waited for.
    pub fn next_outside_fleet(&mut self, now: Instant) -> Decision {
        self.decide(now, true)
    }

    /// Whether the fleet budget gates this tenant (`None`: unknown tenant).
    pub fn is_fleet_member(&self, tenant: &TenantId) -> Option<bool> {
        self.tenants.get(tenant).map(TenantState::fleet_gated)
    }

    fn decide(&mut self, now: Instant, fleet_held: bool) -> Decision {
        if self.ring.is_empty() {
            return Decision::Idle;
        }
        let survey = self.survey(now);
        if self.in_flight >= self.limits.max_in_flight {
            return Decision::Idle;
        }
        let gate = if fleet_held {
            FleetReady::Never
        } else {
            self.fleet_gate(now)
        };
        if gate == FleetReady::Now {
            // Backlogged tenants leave the gate's reserve to sparse ones.
            let backlog = self.fleet.backlog_ready(now);
            let backlog = self.not_before_lease(now, backlog);
            let (admit, eligible) = if backlog == FleetReady::Now {
                (Admit::All, survey.member.eligible + survey.exempt.eligible)
            } else {
                (
                    Admit::SparseOnly,
                    survey.sparse_members + survey.exempt.eligible,
                )
            };
            if eligible > 0 {
                let weight = survey
                    .member
                    .max_eligible_weight
                    .max(survey.exempt.max_eligible_weight);
                if let Some(grant) = self.pick(now, weight.max(1), admit) {
                    return Decision::Send(grant);
                }
            }
            return match backlog {
                FleetReady::Now => Self::wait(now, None, &survey),
                FleetReady::At(at) => Self::wait(now, Some(Some(at)), &survey),
                FleetReady::Never => Self::wait(now, Some(None), &survey),
                // Only the reserve is held: lease more for the backlog.
                FleetReady::NeedPermits if survey.member.eligible > 0 => self.need_permits(&survey),
                FleetReady::NeedPermits => Self::wait(now, None, &survey),
            };
        }
        // The fleet gate is closed: tenants outside it go on.
        if survey.exempt.eligible > 0
            && let Some(grant) = self.pick(
                now,
                survey.exempt.max_eligible_weight.max(1),
                Admit::ExemptOnly,
            )
        {
            return Decision::Send(grant);
        }
        match gate {
            FleetReady::NeedPermits if survey.member.eligible > 0 => self.need_permits(&survey),
            FleetReady::At(at) => Self::wait(now, Some(Some(at)), &survey),
            FleetReady::Never => Self::wait(now, Some(None), &survey),
            FleetReady::NeedPermits | FleetReady::Now => Self::wait(now, None, &survey),
        }
    }

    /// A lease for the fleet members `survey` found eligible, within the
    /// in-flight room left.
    fn need_permits(&self, survey: &Survey) -> Decision {
        Decision::NeedFleetPermits {
            wanted: survey
                .member
                .eligible
                .min(self.limits.max_in_flight - self.in_flight),
            sparse_waiting: survey.sparse_members > 0,
        }
    }

    /// The fleet gate at `now`, a fleet pause (a 429's Retry-After) included.
    fn fleet_gate(&mut self, now: Instant) -> FleetReady {
        if let Some(until) = self.fleet_paused_until {
            if now < until {
                return FleetReady::At(until);
            }
            self.fleet_paused_until = None;
        }
        let ready = self.fleet.ready(now);
        self.not_before_lease(now, ready)
    }

    /// `ready`, except that a gate needing permits waits while the shared
    /// budget has said when its next one comes.
    fn not_before_lease(&mut self, now: Instant, ready: FleetReady) -> FleetReady {
        match (ready, self.lease_after) {
            (FleetReady::NeedPermits, Some(at)) if now < at => FleetReady::At(at),
            (ready, Some(at)) if now >= at => {
                self.lease_after = None;
                ready
            }
            (ready, _) => ready,
        }
    }

    /// Releases a grant's in-flight slots and refunds tokens as `outcome`
    /// says. A message to be retried later must be reported again with
    /// [`Scheduler::work_arrived`] once the caller holds it again.
    pub fn completed(&mut self, grant: Grant, outcome: GrantOutcome) {
        self.in_flight = self.in_flight.saturating_sub(1);
        if outcome == GrantOutcome::NotAttempted {
            self.fleet.refund(grant.fleet);
        }
        if let Some(state) = self.tenants.get_mut(&grant.tenant)
            && state.generation == grant.generation
        {
            state.in_flight = state.in_flight.saturating_sub(1);
            let refund = matches!(
                outcome,
                GrantOutcome::RateLimited | GrantOutcome::NotAttempted
            );
            if refund {
                state.bucket.refund();
            }
            if grant.class == LaneClass::Bulk {
                state.bulk_in_flight = state.bulk_in_flight.saturating_sub(1);
                if let Some(bulk) = state.bulk_bucket.as_mut().filter(|_| refund) {
                    bulk.refund();
                }
            }
        }
    }

    /// [`Scheduler::completed`], reported at `now`: a paced tenant's gate
    /// then counts from this answer (so two sends are at least the gap apart
    /// as the provider sees them, whatever the call took). A grant never used
    /// for a call reopens the gate it closed.
    pub fn completed_at(&mut self, grant: Grant, outcome: GrantOutcome, now: Instant) {
        let (tenant, generation) = (grant.tenant.clone(), grant.generation);
        self.completed(grant, outcome);
        if let Some(state) = self.tenants.get_mut(&tenant)
            && state.generation == generation
        {
            if outcome == GrantOutcome::NotAttempted {
                // The previous gate had opened before this grant was made.
                state.next_send_at = None;
            } else {
                state.close_gate(now);
            }
        }
    }

    fn state(&self, tenant: &TenantId) -> Result<&TenantState, UnknownTenant> {
        self.tenants
            .get(tenant)
            .ok_or_else(|| UnknownTenant(tenant.clone()))
    }

    fn survey(&mut self, now: Instant) -> Survey {
        let mut survey = Survey::default();
        for slot in &self.ring {
            let state = self.tenants.at_mut(*slot);
            state.expire_pauses(now);
            let eligible = state.is_eligible(now);
            if eligible && state.sparse && state.fleet_gated() {
                survey.sparse_members += 1;
            }
            let group = if state.fleet_gated() {
                &mut survey.member
            } else {
                &mut survey.exempt
            };
            if eligible {
                group.eligible += 1;
                group.max_eligible_weight = group.max_eligible_weight.max(state.weight());
            } else if let Some(at) = state.ready_at(now) {
                group.earliest = Some(group.earliest.map_or(at, |e| e.min(at)));
            }
        }
        survey
    }

    /// The wait answer when the tenants are as `survey` found them and the
    /// fleet gate is open (`None`), opens at an instant (`Some(Some(at))`) or
    /// never opens by itself (`Some(None)`, a zero rate): fleet members
    /// wait for the gate, exempt tenants only for themselves.
    fn wait(now: Instant, gate: Option<Option<Instant>>, survey: &Survey) -> Decision {
        let member = match gate {
            None => survey.member.ready_at(now, None),
            Some(Some(at)) => survey.member.ready_at(now, Some(at)),
            Some(None) => None,
        };
        let exempt = survey.exempt.ready_at(now, None);
        match (member, exempt) {
            (None, None) => Decision::Idle,
            (Some(at), None) | (None, Some(at)) => Decision::WaitUntil(at),
            (Some(a), Some(b)) => Decision::WaitUntil(a.min(b)),
        }
    }

    /// DRR: the front tenant keeps the turn while it has credit and can send;
    /// a tenant that cannot send when its turn comes is passed over without
    /// a quantum, so waiting never turns into banked credit.
    fn pick(&mut self, now: Instant, max_weight: u64, admit: Admit) -> Option<Grant> {
        // Each tenant needs at most two steps (start its turn, then send or
        // pass); the heaviest eligible tenant always gets a full credit.
        let steps = 2 * self.ring.len() + 2;
        for _ in 0..steps {
            let slot = *self.ring.front()?;
            let state = self.tenants.at_mut(slot);
            let can_send = state.is_eligible(now);
            let eligible = can_send && admit.admits(state);
            if !state.in_turn {
                if !eligible {
                    // Sparse for one turn at the front, unless only the
                    // fleet gate held it (passed over while the gate was
                    // closed to it, it keeps its claim on the reserve).
                    if !can_send {
                        state.sparse = false;
                    }
                    self.ring.rotate_left(1);
                    continue;
                }
                let quantum = (CREDIT * state.weight() / max_weight).min(CREDIT);
                // Leftover above one message (a turn cut short by a cap) is
                // not carried: credit stays below two messages.
                state.deficit = state.deficit.min(CREDIT) + quantum;
                if state.fresh {
                    state.deficit = state.deficit.max(CREDIT);
                    state.fresh = false;
                }
                state.in_turn = true;
            }
            if eligible && state.deficit >= CREDIT {
                return self.grant_front(now, slot);
            }
            state.in_turn = false;
            state.sparse = false;
            self.ring.rotate_left(1);
        }
        None
    }

    fn grant_front(&mut self, now: Instant, slot: Slot) -> Option<Grant> {
        let gated = self.tenants.at(slot).fleet_gated();
        let fleet = if gated {
            self.fleet.take(now)?
        } else {
            FleetPermit::Exempt
        };
        let state = self.tenants.at_mut(slot);
        let class = if state.serves_bulk() {
            LaneClass::Bulk
        } else {
            LaneClass::Live
        };
        if class == LaneClass::Bulk
            && let Some(bulk) = state.bulk_bucket.as_mut()
            && !bulk.try_take(now)
        {
            self.fleet.refund(fleet);
            return None;
        }
        if !state.bucket.try_take(now) {
            if let Some(bulk) = state
                .bulk_bucket
                .as_mut()
                .filter(|_| class == LaneClass::Bulk)
            {
                bulk.refund();
            }
            self.fleet.refund(fleet);
            return None;
        }
        state.deficit -= CREDIT;
        state.sparse = false;
        state.last_grant = Some(self.next_grant + 1);
        state.close_gate(now);
        match class {
            LaneClass::Live => state.ready -= 1,
            LaneClass::Bulk => {
                state.bulk_ready -= 1;
                state.bulk_in_flight += 1;
            }
        }
        state.in_flight += 1;
        self.in_flight += 1;
        let generation = state.generation;
        if !state.has_work() {
            state.in_ring = false;
            state.in_turn = false;
            state.deficit = 0;
            self.ring.pop_front();
        } else if state.deficit < CREDIT {
            state.in_turn = false;
            self.ring.rotate_left(1);
        }
        self.next_grant += 1;
        Some(Grant {
            tenant: self.tenants.id_at(slot).clone(),
            id: self.next_grant,
            generation,
            fleet,
            class,
        })
    }
}
