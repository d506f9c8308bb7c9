//! The `fifo` baseline: one shared consumer over every tenant's replies, sent
//! in arrival order under the fleet budget, with no fairness at all.
//!
//! It exists only so the noisy-neighbour benchmark can show what the fair
//! scheduler buys: here a flood from one tenant delays everyone behind it,
//! and a failing bridge stalls the line. Never run it in production.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt as _;
use switchyard_shared::{lanes::LaneMessage, subjects};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use crate::{
    deliver::{Deliverer, StepResult},
    fair_share::token_bucket::TokenBucket,
    outbound::OutboundMessage,
};

/// Name of the baseline's durable consumer.
pub const CONSUMER: &str = "outbound-fifo";

/// Runs the baseline until `shutdown`.
pub async fn run(
    js: jetstream::Context,
    deliverer: Arc<Deliverer>,
    fleet_per_minute: u32,
    max_in_flight: u32,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let stream = js.get_stream(subjects::OUTBOUND_STREAM).await?;
    let consumer: jetstream::consumer::PullConsumer = stream
        .create_consumer(pull::Config {
            durable_name: Some(CONSUMER.to_owned()),
            filter_subject: subjects::all_partitions_filter(subjects::Direction::Outbound),
            ack_policy: jetstream::consumer::AckPolicy::Explicit,
            ack_wait: Duration::from_secs(60),
            max_ack_pending: i64::from(max_in_flight) * 4,
            ..Default::default()
        })
        .await?;
    let mut messages = consumer
        .stream()
        .expires(Duration::from_secs(2))
        .heartbeat(Duration::from_millis(500))
        .messages()
        .await?;
    let slots = Arc::new(Semaphore::new(max_in_flight.max(1) as usize));
    let mut bucket =
        TokenBucket::per_minute(fleet_per_minute, fleet_per_minute.div_ceil(20).max(1));
    loop {
        let next = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            next = messages.next() => next,
        };
        let message = match next {
            Some(Ok(m)) => m,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "fifo pull error");
                continue;
            }
            None => return Ok(()),
        };
        let Some(tenant) = subjects::tenant_of(&message.subject) else {
            let _ = message.ack_with(jetstream::AckKind::Term).await;
            continue;
        };
        loop {
            let now = tokio::time::Instant::now();
            if bucket.try_take(now) {
                break;
            }
            let at = bucket.ready_at(now).unwrap_or(now + Duration::from_secs(1));
            tokio::time::sleep_until(at.max(now + Duration::from_millis(1))).await;
        }
        let permit = Arc::clone(&slots).acquire_owned().await?;
        let deliverer = Arc::clone(&deliverer);
        let lane_message = LaneMessage::new(tenant, subjects::Direction::Outbound, message);
        tokio::spawn(async move {
            let mut message = lane_message;
            // Head-of-line retries: the baseline waits wherever it is told to.
            loop {
                match deliverer.deliver(OutboundMessage::read(message)).await {
                    StepResult::Finished(_) => break,
                    StepResult::PushBack {
                        message: back,
                        tenant_pause,
                        fleet_pause,
                        ..
                    } => {
                        let wait = fleet_pause
                            .or(tenant_pause.and_then(|(_, d)| d))
                            .unwrap_or(Duration::from_secs(1));
                        back.keep_alive().await;
                        tokio::time::sleep(wait).await;
                        message = *back;
                    }
                }
            }
            drop(permit);
        });
    }
}
