//! Reading one partition and handing each message to its tenant's lane: the
//! lane queues it, or spills it to the tenant's own durable lane when the
//! tenant's queue is full, and the worker side is told
//! ([`super::work`]).
//!
//! The tenant is taken from the stored subject (`inbound.<p>.<tenant>`), which
//! ingest built from an authenticated, validated id. A subject whose tenant
//! token is not a valid id cannot come from our publishers: it is terminated
//! and counted, never routed.
//!
//! A tenant's lane opens on its first message, in spill mode when the tenant
//! has a backlog there, which the reader knows from the snapshot it took on
//! its first message ([`ReaderBacklogs`]); it asks JetStream only when no
//! snapshot could be taken.

use std::{collections::hash_map::Entry, sync::Arc, time::Duration};

use async_nats::jetstream::{self, AckKind};
use futures::StreamExt as _;
use tokio_util::sync::CancellationToken;

use crate::{
    ids::TenantId,
    lanes::{
        LaneMessage, Lanes, TenantLane,
        consumer::PRIORITY_GROUP,
        spill::{self, BacklogSnapshot},
        tenant_lane::Offered,
    },
    metrics as m, subjects,
};

impl Lanes {
    /// Reads `partition` until `stop` (its revocation, or shutdown).
    pub(super) async fn read_partition(
        self,
        partition: u16,
        stream: jetstream::stream::Stream,
        stop: CancellationToken,
    ) {
        let direction = self.inner.direction;
        let mut backlogs = ReaderBacklogs::default();
        let name = subjects::partition_consumer(direction, partition);
        let settings = &self.inner.settings;
        while !stop.is_cancelled() {
            let consumer: jetstream::consumer::PullConsumer = match stream.get_consumer(&name).await
            {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(lane.partition = partition, error = %e, "cannot open partition consumer; retrying");
                    pause(&stop, Duration::from_secs(1)).await;
                    continue;
                }
            };
            // Pull until the stream ends. A pull request lost with its
            // consumer's leader (a NATS node gone) is never answered, and
            // async-nats issues the next one only `expires` + 5 s later; the
            // missed idle heartbeats say so within a second, so the pull is
            // made again at once (after dropping our pin, which a new
            // stream cannot present and the new leader may still hold).
            loop {
                let messages = consumer
                    .stream()
                    .group(PRIORITY_GROUP)
                    .expires(settings.pull_expires)
                    .heartbeat(settings.pull_heartbeat())
                    // Small batches: what a replica has pulled but not dispatched when its
                    // partition moves away waits for `ack_wait` before redelivery.
                    .max_messages_per_batch(settings.queue_bound.clamp(8, 64))
                    .messages()
                    .await;
                let mut messages = match messages {
                    Ok(m) => m,
                    Err(e) => {
                        tracing::warn!(lane.partition = partition, error = %e, "cannot pull from partition; retrying");
                        pause(&stop, Duration::from_secs(1)).await;
                        break;
                    }
                };
                let mut missed = 0u32;
                let lost = loop {
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        next = messages.next() => match next {
                            Some(Ok(message)) => {
                                missed = 0;
                                let started = std::time::Instant::now();
                                let snapshot = backlogs.current(&self.inner.js, direction).await;
                                self.dispatch(partition, message, snapshot, &stop).await;
                                metrics::histogram!(m::LANE_DISPATCH_SECONDS, "direction" => direction.as_str())
                                    .record(started.elapsed().as_secs_f64());
                            }
                            Some(Err(e)) if pull_lost(&e, &mut missed) => {
                                tracing::debug!(lane.partition = partition, error = %e, "pull lost; pulling again");
                                metrics::counter!(m::LANE_PULL_RENEWED, "direction" => direction.as_str()).increment(1);
                                break true;
                            }
                            Some(Err(e)) => {
                                tracing::debug!(lane.partition = partition, error = %e, "pull error");
                                pause(&stop, Duration::from_millis(100)).await;
                            }
                            None => break false,
                        }
                    }
                };
                if !lost || stop.is_cancelled() {
                    break;
                }
                drop(messages);
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), self.unpin(&stream, partition))
                        .await;
                pause(&stop, Duration::from_millis(100)).await;
            }
        }
    }

    /// Hands one message to its tenant's lane and announces it.
    async fn dispatch(
        &self,
        partition: u16,
        message: jetstream::Message,
        snapshot: Option<&BacklogSnapshot>,
        stop: &CancellationToken,
    ) {
        let direction = self.inner.direction;
        let Some(tenant) = subjects::tenant_of(&message.subject) else {
            metrics::counter!(m::LANE_INVALID_SUBJECT, "direction" => direction.as_str())
                .increment(1);
            tracing::warn!(
                lane.partition = partition,
                "message with an invalid tenant token in its subject; terminated"
            );
            let _ = message.ack_with(AckKind::Term).await;
            return;
        };
        let backlog = match snapshot {
            Some(snapshot) => Backlog::Known(snapshot.has_backlog(&tenant)),
            None => Backlog::Ask,
        };
        let lane = match self.lane_for(&tenant, partition, backlog, stop).await {
            Ok(lane) => lane,
            Err(e) => {
                tracing::warn!(tenant.id = %tenant, error = %e, "cannot open tenant lane; message released");
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
                return;
            }
        };
        let message = LaneMessage::new(tenant, direction, message)
            .with_keep_alive_after(self.inner.settings.keep_alive_after());
        message.record_age("taken");
        // Bounds the spills on their way at once (their acks share one inbox).
        let Ok(slot) = Arc::clone(&self.inner.spill_slots).acquire_owned().await else {
            return;
        };
        match lane.offer(message).await {
            Ok(Offered::Queued) => {
                drop(slot);
                self.inner.announcer.announce(lane, stop).await;
            }
            Ok(Offered::Spilling(pending)) => {
                // The spill is finished on its own task before announcing,
                // so a wait for room in the work channel never delays it.
                let spilling = Arc::clone(&lane);
                self.inner.tasks.spawn(async move {
                    spilling.finish_spill(pending).await;
                    drop(slot);
                });
                self.inner.announcer.announce(lane, stop).await;
            }
            Err((message, e)) => {
                drop(slot);
                tracing::warn!(tenant.id = %message.tenant(), error = %e, "cannot spill; message released for redelivery");
                message.release(Duration::from_secs(1)).await;
            }
        }
    }

    /// The tenant's lane, opened on first sight (announced at once when it
    /// starts with a spill backlog).
    pub(super) async fn lane_for(
        &self,
        tenant: &TenantId,
        partition: u16,
        backlog: Backlog,
        stop: &CancellationToken,
    ) -> Result<Arc<TenantLane>, async_nats::Error> {
        if let Some(lane) = self.inner.lanes.lock().await.get(tenant) {
            return Ok(Arc::clone(lane));
        }
        let direction = self.inner.direction;
        let has_backlog = match backlog {
            Backlog::Known(has) => has,
            Backlog::Ask => {
                // Without holding the map, so first sight of many tenants
                // does not serialise every partition.
                let started = std::time::Instant::now();
                let has = spill::has_backlog(&self.inner.js, direction, tenant).await?;
                metrics::histogram!(m::LANE_OPEN_SECONDS, "direction" => direction.as_str())
                    .record(started.elapsed().as_secs_f64());
                has
            }
        };
        // The partition reader and the backlog adoption ([`super::adoption`])
        // may both open it: the first one in the map wins.
        let lane = match self.inner.lanes.lock().await.entry(tenant.clone()) {
            Entry::Occupied(existing) => return Ok(Arc::clone(existing.get())),
            Entry::Vacant(slot) => Arc::clone(slot.insert(TenantLane::open(
                tenant.clone(),
                direction,
                partition,
                self.inner.js.clone(),
                self.inner.settings.clone(),
                has_backlog,
            ))),
        };
        metrics::counter!(m::LANE_OPENED, "direction" => direction.as_str(), "backlog" => backlog.source())
            .increment(1);
        if has_backlog {
            // A backlog left by the partition's previous owner: announce it.
            self.inner.announcer.announce(Arc::clone(&lane), stop).await;
        }
        Ok(lane)
    }
}

/// A partition reader's [`BacklogSnapshot`], taken when its first message
/// arrives: the reader then holds the partition's pin, so its previous owner
/// receives none of its messages any more and can only finish spills of
/// messages it already had (stored late: the backlog scan adopts those, as it
/// adopted one stored after a lane's own request). Taken earlier, at the
/// gain, it could miss what the previous owner, not yet told of its loss,
/// still spilled, and the tenant's next messages would overtake that.
#[derive(Default)]
struct ReaderBacklogs {
    snapshot: Option<BacklogSnapshot>,
    /// After a failed attempt, not before then: lanes ask one by one meanwhile.
    next_try: Option<tokio::time::Instant>,
}

impl ReaderBacklogs {
    /// How long a reader whose snapshot failed lets its lanes ask one by one
    /// before it tries again.
    const RETRY: Duration = Duration::from_secs(1);

    async fn current(
        &mut self,
        js: &jetstream::Context,
        direction: subjects::Direction,
    ) -> Option<&BacklogSnapshot> {
        let now = tokio::time::Instant::now();
        if self.snapshot.is_none() && self.next_try.is_none_or(|at| now >= at) {
            match BacklogSnapshot::take(js, direction).await {
                Ok(snapshot) => self.snapshot = Some(snapshot),
                Err(e) => {
                    tracing::warn!(lane.direction = direction.as_str(), error = %e, "cannot list the spill backlogs; lanes ask one by one meanwhile");
                    self.next_try = Some(now + Self::RETRY);
                }
            }
        }
        self.snapshot.as_ref()
    }
}

/// How the opener of a lane knows whether the tenant has a spill backlog.
#[derive(Debug, Clone, Copy)]
pub(super) enum Backlog {
    /// From the partition reader's [`BacklogSnapshot`] or a backlog scan:
    /// no request.
    Known(bool),
    /// Not known (no snapshot could be taken): one request to JetStream.
    Ask,
}

impl Backlog {
    /// The `backlog` label of [`m::LANE_OPENED`].
    fn source(self) -> &'static str {
        match self {
            Backlog::Known(_) => "known",
            Backlog::Ask => "asked",
        }
    }
}

async fn pause(stop: &CancellationToken, delay: Duration) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(delay) => {}
    }
}

/// Whether a pull stream's error says its request is gone: nobody to answer
/// it (the consumer has no leader), or idle heartbeats missed twice in a row
/// (once can be this process starved of CPU for a moment; a pull made again
/// without need can let a message in flight to the old one come back after
/// `ack_wait`, behind later ones).
fn pull_lost(error: &jetstream::consumer::pull::MessagesError, missed: &mut u32) -> bool {
    use jetstream::consumer::pull::MessagesErrorKind;
    match error.kind() {
        MessagesErrorKind::NoResponders => true,
        MessagesErrorKind::MissingHeartbeat => {
            *missed += 1;
            *missed >= 2
        }
        _ => false,
    }
}
