//! What the scheduler knows about one tenant: its limits, its bucket, how much
//! work it has waiting in each of its two lanes (live and bulk), what it has
//! in flight, and why it may be paused.

use std::time::Duration;

use switchyard_shared::tenants::SendLimits;
use tokio::time::Instant;

use super::{fleet_gate::FleetMembership, token_bucket::TokenBucket};

/// Why a tenant's sending is held. Several reasons can hold at once; each is
/// lifted on its own (a bridge reconnecting does not lift an operator's pause).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PauseReason {
    /// The bridge reported `disconnected`; `connected` lifts it.
    BridgeDisconnected,
    /// The provider answered 401/403 for this tenant; an operator must look.
    Unauthorized,
    /// The number is restricted by WhatsApp; retrying blindly makes it worse.
    Restricted,
    /// An operator paused the tenant.
    Operator,
    /// The tenant's bridge failed (5xx, timeout): wait out the retry delay
    /// before its next send, so one failing bridge does not burn the budget.
    Backoff,
}

impl PauseReason {
    /// Every reason, once.
    pub const ALL: [PauseReason; 5] = [
        PauseReason::BridgeDisconnected,
        PauseReason::Unauthorized,
        PauseReason::Restricted,
        PauseReason::Operator,
        PauseReason::Backoff,
    ];

    /// A stable name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::BridgeDisconnected => "bridge_disconnected",
            PauseReason::Unauthorized => "unauthorized",
            PauseReason::Restricted => "restricted",
            PauseReason::Operator => "operator",
            PauseReason::Backoff => "backoff",
        }
    }
}

impl From<PauseReason> for switchyard_shared::tenant_status::HoldReason {
    fn from(reason: PauseReason) -> Self {
        use switchyard_shared::tenant_status::HoldReason as H;
        match reason {
            PauseReason::BridgeDisconnected => H::BridgeDisconnected,
            PauseReason::Unauthorized => H::Unauthorized,
            PauseReason::Restricted => H::Restricted,
            PauseReason::Operator => H::Operator,
            PauseReason::Backoff => H::Backoff,
        }
    }
}

/// One active pause; `until: None` lasts until lifted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pause {
    pub reason: PauseReason,
    pub until: Option<Instant>,
}

impl Pause {
    fn holds_at(&self, now: Instant) -> bool {
        self.until.is_none_or(|until| now < until)
    }
}

/// The per-tenant part of the scheduler's state.
#[derive(Debug)]
pub(super) struct TenantState {
    pub limits: SendLimits,
    pub bucket: TokenBucket,
    /// Messages the caller holds ready to send for this tenant.
    pub ready: u64,
    pub in_flight: u32,
    pub pauses: Vec<Pause>,
    /// DRR credit, in [`super::scheduler::CREDIT`] units per message.
    pub deficit: u64,
    /// The tenant is at the ring's front and has had its quantum for this turn.
    pub in_turn: bool,
    /// The tenant got work after a round of the others since its last send:
    /// its next turn allows one send whatever its weight, so a quiet
    /// tenant's first message is not delayed.
    pub fresh: bool,
    /// The tenant's id is in the ring (at most once).
    pub in_ring: bool,
    /// The tenant came back with live work after everyone in the ring had a
    /// turn since its last send: it waits ahead of the backlogged tenants,
    /// and its next send may take the fleet gate's reserve
    /// ([`super::scheduler`], "Sparse tenants"). Cleared once it leaves the
    /// ring's front.
    pub sparse: bool,
    /// The scheduler's grant count at this tenant's last grant (`None`: never).
    pub last_grant: Option<u64>,
    /// Distinguishes a re-added tenant from the one whose grants are still out.
    pub generation: u64,
    /// The pacing gate: minimum gap between two sends on the bridge (zero: off).
    pub min_gap: Duration,
    /// The gate: no send before this instant.
    pub next_send_at: Option<Instant>,
    /// Jitter source (xorshift): deterministic, so runs are reproducible.
    pub jitter_state: u64,
    /// Messages ready in the tenant's bulk lane (served only when `ready` is 0).
    pub bulk_ready: u64,
    /// Bulk sends in flight (also counted in `in_flight`).
    pub bulk_in_flight: u32,
    /// The bulk lane's share of the fleet budget; `None`: no cap of its own.
    pub bulk_bucket: Option<TokenBucket>,
    /// Whether the fleet budget and its pauses apply (a WA Bridges tenant)
    /// or only the tenant's own limits (a Cloud API tenant).
    pub fleet: FleetMembership,
}

impl TenantState {
    pub fn new(limits: SendLimits, generation: u64) -> Self {
        Self {
            limits,
            bucket: TokenBucket::per_minute(limits.sends_per_minute, limits.send_burst),
            ready: 0,
            in_flight: 0,
            pauses: Vec::new(),
            deficit: 0,
            in_turn: false,
            fresh: false,
            in_ring: false,
            sparse: false,
            last_grant: None,
            generation,
            min_gap: Duration::ZERO,
            next_send_at: None,
            jitter_state: 0x9e37_79b9_7f4a_7c15 ^ generation,
            bulk_ready: 0,
            bulk_in_flight: 0,
            bulk_bucket: None,
            fleet: FleetMembership::Member,
        }
    }

    /// Whether the fleet budget gates this tenant's sends.
    pub fn fleet_gated(&self) -> bool {
        self.fleet == FleetMembership::Member
    }

    /// Work in either lane.
    pub fn has_work(&self) -> bool {
        self.ready > 0 || self.bulk_ready > 0
    }

    /// Bulk sends may not take the tenant's last in-flight slot (unless it
    /// has only one), so a live reply arriving during a replay finds room.
    fn bulk_has_room(&self) -> bool {
        let cap = if self.is_paced() {
            1
        } else {
            self.limits.max_in_flight
        };
        self.bulk_in_flight < cap.saturating_sub(1).max(1)
    }

    /// Whether the next grant would serve the bulk lane: only when no live
    /// reply is waiting.
    pub fn serves_bulk(&self) -> bool {
        self.ready == 0 && self.bulk_ready > 0
    }

    /// Could the bulk lane be served at `now` (its own gates only)?
    fn bulk_open(&self, now: Instant) -> bool {
        self.bulk_has_room() && self.bulk_bucket.as_ref().is_none_or(|b| b.has_token(now))
    }

    /// Whether a pacing gap is set: then sends on the bridge are one at a time.
    pub fn is_paced(&self) -> bool {
        !self.min_gap.is_zero()
    }

    /// Closes the gate until `from + gap + jitter` (jitter: up to half the gap).
    pub fn close_gate(&mut self, from: Instant) {
        if !self.is_paced() {
            return;
        }
        let mut x = self.jitter_state;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.jitter_state = x;
        let half_ns = u64::try_from(self.min_gap.as_nanos() / 2).unwrap_or(u64::MAX);
        let jitter = Duration::from_nanos(if half_ns == 0 { 0 } else { x % (half_ns + 1) });
        let until = from + self.min_gap + jitter;
        self.next_send_at = Some(self.next_send_at.map_or(until, |at| at.max(until)));
    }

    /// The weight used by DRR; 0 is read as 1 so that no tenant starves.
    pub fn weight(&self) -> u64 {
        u64::from(self.limits.weight.max(1))
    }

    /// Drops pauses whose time is over.
    pub fn expire_pauses(&mut self, now: Instant) {
        self.pauses.retain(|p| p.holds_at(now));
    }

    pub fn is_paused(&self, now: Instant) -> bool {
        self.pauses.iter().any(|p| p.holds_at(now))
    }

    pub fn has_room(&self) -> bool {
        // A gap is measured from the previous send's answer: one at a time.
        let cap = if self.is_paced() {
            1
        } else {
            self.limits.max_in_flight
        };
        self.in_flight < cap
    }

    fn gate_open(&self, now: Instant) -> bool {
        self.next_send_at.is_none_or(|at| now >= at)
    }

    /// Could this tenant be granted a send at `now` (global gates aside)?
    pub fn is_eligible(&self, now: Instant) -> bool {
        (self.ready > 0 || (self.bulk_ready > 0 && self.bulk_open(now)))
            && self.has_room()
            && self.gate_open(now)
            && !self.is_paused(now)
            && self.bucket.has_token(now)
    }

    /// The earliest instant this tenant could become eligible without any
    /// event from outside; `None` when only an event can help (no work, no
    /// in-flight room, an open-ended pause, a zero rate).
    pub fn ready_at(&self, now: Instant) -> Option<Instant> {
        if !self.has_work() || !self.has_room() {
            return None;
        }
        let mut at = self.bucket.ready_at(now)?.max(now);
        if self.serves_bulk() {
            if !self.bulk_has_room() {
                return None;
            }
            if let Some(bulk) = &self.bulk_bucket {
                at = at.max(bulk.ready_at(now)?);
            }
        }
        if let Some(gate) = self.next_send_at {
            at = at.max(gate);
        }
        for pause in self.pauses.iter().filter(|p| p.holds_at(now)) {
            at = at.max(pause.until?);
        }
        Some(at)
    }
}
