//! Tenant lanes: per-tenant queues over a few partitioned JetStream consumers.
//!
//! One durable consumer per tenant was measured not to scale past a few hundred
//! tenants on a small machine, so the work streams map `inbound.<tenant>` onto
//! P partitions (`inbound.<p>.<tenant>`) and each service reads P pinned pull
//! consumers ([`partition`]). Inside the process every tenant gets its own
//! lane ([`tenant_lane`]): a bounded in-memory queue that is the per-tenant
//! consumer of our design. When a tenant's queue is full its further messages
//! are **spilled** to its own durable lane in the `SPILL` stream ([`spill`]),
//! and the lane drains that, in order, before taking direct messages again. So
//! one tenant's backlog never holds up the other tenants of its partition, and
//! memory stays bounded whatever the backlog.
//!
//! Partitions are spread over the live replicas ([`assignment`]) and released
//! on shutdown, so a handover takes well under a second; pinning guarantees a
//! partition is read by one replica at a time, and moves to a standby about
//! `priority_timeout` after its replica dies.
//!
//! Router and sender both build on this and nothing here knows either: the
//! router runs each lane's messages through its bot (its `runner`), the
//! sender lets its fair-share scheduler pick which lane sends next.

pub mod assignment;
pub mod dead_letter;
pub mod message;
pub mod partition;
pub mod settings;
pub mod spill;
pub mod tenant_lane;

pub use message::LaneMessage;
pub use partition::Lanes;
pub use settings::LaneSettings;
pub use tenant_lane::TenantLane;
