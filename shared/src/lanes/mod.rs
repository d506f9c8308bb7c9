//! Tenant lanes: per-tenant queues over a few partitioned JetStream consumers.
//!
//! One durable consumer per tenant was measured not to scale past a few hundred
//! tenants on a small machine, so the work streams map `inbound.<tenant>` onto
//! P partitions (`inbound.<p>.<tenant>`) and each service reads P pinned pull
//! consumers ([`consumer`]). Inside the process every tenant gets its own
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
//! Rooms: [`Lanes::start`] ([`replica`]) takes what it needs ([`LanesParts`])
//! and returns the [`LaneWork`] announcements ([`work`]: a bounded channel);
//! `ownership` decides which partitions this replica reads and hands them
//! over; `dispatch` reads a partition into the tenant lanes; `adoption`
//! finds spill backlogs of its partitions that no lane reads; `lag` reports
//! the partition consumers' and spill lanes' backlog as gauges; [`dead_letter`]
//! is where a message that cannot be processed goes.
//!
//! Router and sender both build on this and nothing here knows either: the
//! router runs each lane's messages through its bot (its `runner`), the
//! sender lets its fair-share scheduler pick which lane sends next.

mod adoption;
pub mod assignment;
pub mod consumer;
pub mod dead_letter;
mod dispatch;
mod lag;
mod liveness;
pub mod message;
mod ownership;
pub mod replica;
pub mod settings;
pub mod spill;
pub mod tenant_lane;
pub mod work;

pub use message::LaneMessage;
pub use replica::{Lanes, LanesError, LanesParts};
pub use settings::LaneSettings;
pub use tenant_lane::TenantLane;
pub use work::LaneWork;
