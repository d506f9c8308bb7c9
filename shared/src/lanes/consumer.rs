//! The partition consumers: one durable pull consumer per partition of a work
//! stream, in a priority group with `pinned_client`, so that exactly one
//! replica at a time reads each partition.

use async_nats::jetstream::consumer::{AckPolicy, PriorityPolicy, pull};

use crate::{
    lanes::settings::LaneSettings,
    subjects::{self, Direction},
};

/// The priority group every partition consumer uses.
pub const PRIORITY_GROUP: &str = "lanes";

/// The configuration of partition `p`'s consumer.
pub fn partition_consumer_config(
    direction: Direction,
    partition: u16,
    settings: &LaneSettings,
) -> pull::Config {
    let name = subjects::partition_consumer(direction, partition);
    pull::Config {
        durable_name: Some(name.clone()),
        name: Some(name),
        filter_subject: subjects::partition_filter(direction, partition),
        ack_policy: AckPolicy::Explicit,
        ack_wait: settings.ack_wait,
        // We count deliveries ourselves (LaneMessage::delivered) and dead-letter.
        max_deliver: -1,
        max_ack_pending: settings.max_ack_pending,
        priority_policy: PriorityPolicy::PinnedClient,
        priority_groups: vec![PRIORITY_GROUP.to_owned()],
        priority_timeout: settings.priority_timeout,
        ..Default::default()
    }
}
