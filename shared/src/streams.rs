//! The JetStream streams, declared once with explicit limits and created or
//! updated idempotently by every service at start-up (so any replica can be
//! the first to start, and a config change rolls out with the next deploy).

use std::time::Duration;

use async_nats::jetstream::{
    self,
    stream::{Config, DiscardPolicy, RetentionPolicy, StorageType, SubjectTransform},
};

use crate::{
    config::NatsSettings,
    subjects::{self, Direction},
};

/// A stream could not be created or brought up to date.
#[derive(Debug, thiserror::Error)]
#[error("cannot create or update stream {stream}: {source}")]
pub struct StreamSetupError {
    pub stream: &'static str,
    #[source]
    pub source: async_nats::jetstream::context::CreateStreamError,
}

/// Largest message a stream accepts; ingest's body limit sits well below it.
const MAX_MESSAGE_BYTES: i32 = 1024 * 1024;

/// The configuration of every stream Switchyard uses.
pub fn stream_configs(settings: &NatsSettings) -> Vec<Config> {
    let work = |direction: Direction| Config {
        name: direction.stream().to_owned(),
        subjects: vec![subjects::work_input_filter(direction)],
        subject_transform: Some(SubjectTransform {
            source: subjects::work_input_filter(direction),
            destination: subjects::partition_transform_destination(
                direction,
                partitions_of(direction, settings),
            ),
        }),
        ..base(settings)
    };
    vec![
        work(Direction::Inbound),
        work(Direction::Outbound),
        work(Direction::Bulk),
        // Tenant notifications: partitioned like the work streams, so the
        // sender's notifier reads them through tenant lanes (one tenant's
        // failing endpoint holds only its own lane).
        work(Direction::Notify),
        Config {
            name: subjects::DLQ_STREAM.to_owned(),
            subjects: vec!["dlq.>".to_owned()],
            // Dead letters wait for an operator: keep them longer than the work streams.
            max_age: settings.max_age.saturating_mul(4),
            ..base(settings)
        },
        Config {
            name: subjects::SPILL_STREAM.to_owned(),
            subjects: vec!["spill.>".to_owned()],
            // A spilled message is gone once its tenant's lane acks it, so
            // "the subject holds a message" means "this tenant has a backlog".
            retention: RetentionPolicy::WorkQueue,
            ..base(settings)
        },
    ]
}

/// How many partitions a work stream has: `SWITCHYARD_PARTITIONS`, except
/// `NOTIFY` ([`subjects::NOTIFY_PARTITIONS`]).
pub fn partitions_of(direction: Direction, settings: &NatsSettings) -> u16 {
    match direction {
        Direction::Notify => subjects::NOTIFY_PARTITIONS,
        Direction::Inbound | Direction::Outbound | Direction::Bulk => settings.partitions,
    }
}

fn base(settings: &NatsSettings) -> Config {
    Config {
        storage: StorageType::File,
        retention: RetentionPolicy::Limits,
        // At a byte limit a stream refuses new messages rather than drop old
        // ones: an old message may be a tenant's unprocessed event, a
        // dead letter or a spilled reply, and dropping it would lose it. A
        // refused publish is ours to hold: ingest outboxes the event (then
        // answers 503 past the outbox caps), the router and the sender keep
        // the message and retry (backpressure). Only the age limit removes.
        discard: DiscardPolicy::New,
        max_bytes: settings.max_bytes,
        max_age: settings.max_age,
        duplicate_window: settings.duplicate_window,
        num_replicas: settings.replicas,
        max_consumers: settings.max_consumers,
        max_message_size: MAX_MESSAGE_BYTES,
        allow_direct: true,
        ..Default::default()
    }
}

/// Creates every stream, or updates it to the declared configuration.
pub async fn ensure_streams(
    js: &jetstream::Context,
    settings: &NatsSettings,
) -> Result<(), StreamSetupError> {
    for config in stream_configs(settings) {
        let name: &'static str = match config.name.as_str() {
            subjects::INBOUND_STREAM => subjects::INBOUND_STREAM,
            subjects::OUTBOUND_STREAM => subjects::OUTBOUND_STREAM,
            subjects::BULK_STREAM => subjects::BULK_STREAM,
            subjects::NOTIFY_STREAM => subjects::NOTIFY_STREAM,
            subjects::DLQ_STREAM => subjects::DLQ_STREAM,
            _ => subjects::SPILL_STREAM,
        };
        js.create_or_update_stream(config)
            .await
            .map_err(|source| StreamSetupError {
                stream: name,
                source,
            })?;
    }
    Ok(())
}

/// A JetStream context with a publish-ack timeout suited to a request path.
pub fn context(client: async_nats::Client, ack_timeout: Duration) -> jetstream::Context {
    let mut js = jetstream::new(client);
    js.set_timeout(ack_timeout);
    js
}
