//! Every metric the CLI emits, named once here: `fleet reconcile --watch`
//! serves them on its `/metrics` for cron-style alerting. Call sites import
//! this module as `m` so `metrics` stays the facade crate.

/// Bridges the provider lists.
pub const FLEET_BRIDGES: &str = "switchyard_fleet_bridges";
/// Rows in the tenants table.
pub const FLEET_TENANTS: &str = "switchyard_fleet_tenants";
/// Bridges no tenant owns.
pub const FLEET_ORPHANS: &str = "switchyard_fleet_orphans";
/// Tenants without a bridge at the provider.
pub const FLEET_MISSING: &str = "switchyard_fleet_missing";
/// Tenants whose stored bridge id or state disagrees with the provider's.
pub const FLEET_DRIFT: &str = "switchyard_fleet_drift";
/// What running orphans and suspended tenants' running bridges cost a month (cents).
pub const FLEET_WASTED_MONTHLY_CENTS: &str = "switchyard_fleet_wasted_monthly_cents";
/// Reconciliation runs finished.
pub const FLEET_RECONCILE_RUNS: &str = "switchyard_fleet_reconcile_runs_total";
/// Reconciliation runs that failed.
pub const FLEET_RECONCILE_FAILURES: &str = "switchyard_fleet_reconcile_failures_total";
