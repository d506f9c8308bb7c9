//! The fleet-wide part of the scheduler's admission: where the permission to
//! make one more provider call comes from.
//!
//! With one replica a local token bucket is enough ([`FleetLimit::Local`]).
//! With several, the budget lives in NATS ([`crate::fleet_budget`]) and this
//! replica holds a small, expiring stock of permits leased from it
//! ([`FleetLimit::Leased`]); the scheduler stays free of I/O and asks its
//! caller to fetch more when the stock runs out.

use std::collections::VecDeque;

use tokio::time::Instant;

use super::token_bucket::TokenBucket;

/// Permits only sparse tenants may take: a local bucket's last token (a
/// bucket whose burst is 1 keeps none), or the last leased permit held.
pub(super) const SPARSE_RESERVE: u32 = 1;

/// How long before it expires a reserved leased permit is given to the
/// backlogged tenants after all, so the reserve is never wasted (a lease
/// lives half a slot to a slot and a half: 0.5–1.5 s by default).
pub(super) const RESERVE_RELEASE: std::time::Duration = std::time::Duration::from_millis(250);

/// Where the fleet-wide budget is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetLimit {
    /// This process alone enforces the budget (a single replica, tests).
    Local {
        /// Provider calls per minute for the whole fleet.
        per_minute: u32,
        /// How many may go at once after a quiet spell.
        burst: u32,
    },
    /// Permits are leased from a shared budget and handed to
    /// [`super::Scheduler::add_fleet_permits`]; the scheduler answers
    /// [`super::Decision::NeedFleetPermits`] when its stock is empty.
    Leased,
}

/// How a granted send was paid for at fleet level, so it can be refunded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FleetPermit {
    Local,
    Leased {
        expires_at: Instant,
    },
    /// The tenant's provider has no fleet-wide budget here (a Cloud API
    /// number: Meta limits each number on its own): nothing was taken.
    Exempt,
}

/// Whether a tenant's sends count against the fleet-wide budget.
///
/// WA Bridges limits calls per API key, so every bridge tenant shares one
/// budget. Meta's Cloud API limits each phone number on its own (docs/cloud-api.md
/// section 6): a Cloud tenant is bounded by its own bucket only, so a
/// Cloud burst never spends the bridge tenants' budget, and a WA Bridges
/// 429 (a fleet pause) never holds a Cloud tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FleetMembership {
    /// Counted against the fleet budget and held by fleet pauses.
    #[default]
    Member,
    /// Outside the fleet budget: only the tenant's own limits apply.
    Exempt,
}

/// A stock of leased permits with the instant they stop being valid.
#[derive(Debug, Clone, Copy)]
pub(super) struct Lot {
    remaining: u32,
    expires_at: Instant,
}

/// The scheduler's fleet gate: a local bucket or a stock of leased permits.
#[derive(Debug)]
pub(super) enum FleetGate {
    Local(TokenBucket),
    Leased(VecDeque<Lot>),
}

/// What the fleet gate allows at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum FleetReady {
    Now,
    At(Instant),
    /// Leased stock is empty: the caller must lease more.
    NeedPermits,
    /// A zero fleet rate: never.
    Never,
}

impl FleetReady {
    /// A local bucket's answer: when it holds what was asked for.
    fn of_bucket(at: Option<Instant>, now: Instant) -> Self {
        match at {
            None => FleetReady::Never,
            Some(at) if at <= now => FleetReady::Now,
            Some(at) => FleetReady::At(at),
        }
    }
}

impl FleetGate {
    pub fn new(limit: FleetLimit) -> Self {
        match limit {
            FleetLimit::Local { per_minute, burst } => {
                FleetGate::Local(TokenBucket::per_minute(per_minute, burst))
            }
            FleetLimit::Leased => FleetGate::Leased(VecDeque::new()),
        }
    }

    pub fn ready(&mut self, now: Instant) -> FleetReady {
        match self {
            FleetGate::Local(bucket) => FleetReady::of_bucket(bucket.ready_at(now), now),
            FleetGate::Leased(lots) => {
                expire(lots, now);
                if lots.is_empty() {
                    FleetReady::NeedPermits
                } else {
                    FleetReady::Now
                }
            }
        }
    }

    /// What the gate allows a backlogged tenant (not sparse: see
    /// [`super::scheduler`]): both gates keep [`SPARSE_RESERVE`] for sparse
    /// tenants. A local bucket's reserve refills with its rate; a leased
    /// one is the permit that expires last, given to the backlogged tenants
    /// in its last [`RESERVE_RELEASE`] (a newer lease takes its place), so
    /// held back it is never lost to the fleet.
    pub fn backlog_ready(&mut self, now: Instant) -> FleetReady {
        match self {
            FleetGate::Local(bucket) => {
                FleetReady::of_bucket(bucket.ready_at_holding(now, 1 + SPARSE_RESERVE), now)
            }
            FleetGate::Leased(lots) => {
                expire(lots, now);
                let held: u32 = lots.iter().map(|l| l.remaining).sum();
                let reserve_due = lots.back().is_some_and(|l| {
                    l.expires_at.saturating_duration_since(now) <= RESERVE_RELEASE
                });
                if held > SPARSE_RESERVE || (held > 0 && reserve_due) {
                    FleetReady::Now
                } else {
                    FleetReady::NeedPermits
                }
            }
        }
    }

    /// Takes one permit; call only after [`FleetGate::ready`] said `Now`.
    pub fn take(&mut self, now: Instant) -> Option<FleetPermit> {
        match self {
            FleetGate::Local(bucket) => bucket.try_take(now).then_some(FleetPermit::Local),
            FleetGate::Leased(lots) => {
                expire(lots, now);
                let lot = lots.front_mut()?;
                lot.remaining -= 1;
                let expires_at = lot.expires_at;
                if lot.remaining == 0 {
                    lots.pop_front();
                }
                Some(FleetPermit::Leased { expires_at })
            }
        }
    }

    /// Returns a permit that was not used for a provider call.
    pub fn refund(&mut self, permit: FleetPermit) {
        match (self, permit) {
            (FleetGate::Local(bucket), FleetPermit::Local) => bucket.refund(),
            (FleetGate::Leased(lots), FleetPermit::Leased { expires_at }) => {
                add(lots, 1, expires_at);
            }
            // The gate was switched between grant and completion: nothing to return to.
            _ => {}
        }
    }

    /// Adds leased permits; ignored by a local gate.
    pub fn add(&mut self, count: u32, expires_at: Instant) {
        if let FleetGate::Leased(lots) = self {
            add(lots, count, expires_at);
        }
    }

    /// Leased permits held and not yet expired at `now`.
    pub fn held(&mut self, now: Instant) -> u32 {
        match self {
            FleetGate::Local(_) => 0,
            FleetGate::Leased(lots) => {
                expire(lots, now);
                lots.iter().map(|l| l.remaining).sum()
            }
        }
    }

    /// Drops every leased permit (a 429 says they would be refused anyway).
    pub fn drop_leased(&mut self) {
        if let FleetGate::Leased(lots) = self {
            lots.clear();
        }
    }
}

fn expire(lots: &mut VecDeque<Lot>, now: Instant) {
    lots.retain(|lot| lot.expires_at > now && lot.remaining > 0);
}

/// Keeps lots ordered by expiry so the soonest-to-expire permit is used first.
fn add(lots: &mut VecDeque<Lot>, count: u32, expires_at: Instant) {
    if count == 0 {
        return;
    }
    if let Some(lot) = lots.iter_mut().find(|l| l.expires_at == expires_at) {
        lot.remaining = lot.remaining.saturating_add(count);
        return;
    }
    let at = lots.partition_point(|l| l.expires_at < expires_at);
    lots.insert(
        at,
        Lot {
            remaining: count,
            expires_at,
        },
    );
}
