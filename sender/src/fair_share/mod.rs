//! Fair share: which tenant's message goes out next, within every budget.
//!
//! One busy tenant must not slow another (invariant 6), yet a tenant alone
//! may use all the capacity nobody else needs. [`Scheduler`] is a weighted
//! deficit round-robin over the tenants that have work, under a fleet-wide
//! call budget and a global in-flight cap; each tenant also has its own token
//! bucket, in-flight cap and pauses. It does no I/O and reads no clock: the
//! send loop reports events and asks [`Scheduler::next`] at an instant.
//! `docs/fair-share.md` explains the algorithm and its parameters.
//!
//! Layout:
//! - [`token_bucket`]: an exact rate limiter (GCRA) used per tenant and for a local fleet budget;
//! - `tenant_state`: one tenant's limits, work, in-flight count, pauses and
//!   pacing gate (a minimum gap with jitter between two sends on its bridge);
//! - `fleet_gate`: the fleet budget, local or leased from [`crate::fleet_budget`],
//!   and which tenants it binds (WA Bridges tenants; not Cloud API tenants);
//! - [`warmup`]: lower limits for a newly paired number, fed into the gates above;
//! - `scheduler`: the DRR itself and its decisions, and the choice between a
//!   tenant's live and bulk lanes (bulk only when no live reply waits, within
//!   its own share of the fleet budget).

mod fleet_gate;
mod scheduler;
mod tenant_state;
mod tenant_table;
pub mod token_bucket;
pub mod warmup;

#[cfg(test)]
mod bulk_tests;
#[cfg(test)]
mod membership_tests;
#[cfg(test)]
mod pacing_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod sparse_tests;
#[cfg(test)]
mod tests;

#[cfg(test)]
use fleet_gate::SPARSE_RESERVE;
pub use fleet_gate::{FleetLimit, FleetMembership};
pub use scheduler::{
    Decision, GlobalLimits, Grant, GrantOutcome, LaneClass, Scheduler, TenantView, UnknownTenant,
};
pub use tenant_state::PauseReason;
