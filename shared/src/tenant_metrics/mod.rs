//! The `tenant` label of the few per-tenant metric families, under a
//! cardinality budget (`docs/operations.md`, "Metrics per tenant").
//!
//! A process names at most `SWITCHYARD_METRICS_TENANT_CAP` tenants in its
//! metrics; every other tenant is counted under [`OTHER`]. [`TenantLabels`]
//! hands the labels out (counters and histograms use it at the call site);
//! [`TenantGauge`] publishes a gauge family from a periodic snapshot, where
//! only tenants with a non-zero value claim a label.
//!
//! Written here rather than taken from a crate: the `metrics` facade has no
//! cardinality limit of its own, and the limits that exist elsewhere
//! (OpenTelemetry's SDK and its `otel.metric.overflow` attribute, Vector's
//! `tag_cardinality_limit`) live in other metric pipelines than ours.

mod gauge;
mod label;

pub use gauge::{Overflow, TenantGauge};
pub use label::{DEFAULT_CAP, OTHER, TenantLabels, install, label, labels};
