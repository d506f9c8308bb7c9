//! Live tenant state: what each router and sender replica holds for a tenant
//! (holds and why since when, replies waiting, last event in and send out,
//! recent dead letters), published to a NATS KV bucket every replica and the
//! CLI can read, so "why is this tenant not getting answers?" has one answer
//! (`switchyard status TENANT`) instead of living in one process's memory.
//!
//! Layout:
//! - [`record`]: the versioned record one replica writes for one tenant;
//! - [`merge`]: the records of every replica for a tenant, as one state;
//! - [`activity`]: the recent activity a service counts (events in, sends out, dead letters);
//! - [`store`]: the bucket (max age, so a dead replica's entries expire), reads by tenant or all;
//! - [`publisher`]: which records to write when, under a write budget.
//!
//! What each service puts in its records (and when it calls the publisher) is
//! the service's own business; the record, the bucket and the budget are here.

pub mod activity;
pub mod merge;
pub mod publisher;
pub mod record;
pub mod store;

pub use activity::Activity;
pub use merge::TenantState;
pub use publisher::{StatusPublisher, StatusSettings};
pub use record::{Hold, HoldReason, RECORD_VERSION, StatusRecord, StatusService};
pub use store::StatusStore;
