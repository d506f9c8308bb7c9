//! The partition readers: P durable pull consumers with a priority group and
//! `pinned_client`, each read by exactly one replica at a time, dispatching
//! every message to its tenant's lane.
//!
//! The tenant is taken from the stored subject (`inbound.<p>.<tenant>`), which
//! ingest built from an authenticated, validated id. A subject whose tenant
//! token is not a valid id cannot come from our publishers: it is terminated
//! and counted, never routed.

use std::{
    collections::{BTreeSet, HashMap},
    sync::Arc,
    time::Duration,
};

use async_nats::jetstream::{
    self, AckKind,
    consumer::{AckPolicy, PriorityPolicy, pull},
};
use futures::StreamExt as _;
use tokio::sync::{Mutex, Semaphore, mpsc};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    ids::TenantId,
    lanes::{
        LaneMessage, TenantLane, assignment::Membership, settings::LaneSettings,
        tenant_lane::Offered,
    },
    subjects::{self, Direction},
};

/// Spills on their way at once, per direction and replica.
const MAX_SPILLS_IN_FLIGHT: usize = 1024;

/// The priority group every partition consumer uses.
pub const PRIORITY_GROUP: &str = "lanes";

/// Why the lanes could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the {direction} lanes: {source}")]
pub struct LanesError {
    direction: &'static str,
    #[source]
    source: async_nats::Error,
}

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

struct Inner {
    direction: Direction,
    js: jetstream::Context,
    settings: LaneSettings,
    replica_id: String,
    lanes: Mutex<HashMap<TenantId, Arc<TenantLane>>>,
    /// Spills sent and not yet stored, all partitions together.
    spill_slots: Arc<Semaphore>,
    tasks: TaskTracker,
    work: mpsc::UnboundedSender<Arc<TenantLane>>,
}

/// The running lanes of one direction in this replica.
#[derive(Clone)]
pub struct Lanes {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Lanes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lanes")
            .field("direction", &self.inner.direction)
            .finish()
    }
}

impl Lanes {
    /// Creates the partition consumers, joins the replica membership, and
    /// reads the partitions this replica owns until `shutdown`. Every message
    /// that reaches a lane is announced on the returned channel (one event
    /// per message), so the caller can start a worker or tell its scheduler.
    pub async fn start(
        js: jetstream::Context,
        direction: Direction,
        partitions: u16,
        settings: LaneSettings,
        replica_id: String,
        shutdown: CancellationToken,
        tasks: &TaskTracker,
    ) -> Result<(Self, mpsc::UnboundedReceiver<Arc<TenantLane>>), LanesError> {
        let fail = |source: async_nats::Error| LanesError {
            direction: direction.as_str(),
            source,
        };
        let stream = js
            .get_stream(direction.stream())
            .await
            .map_err(|e| fail(e.into()))?;
        for p in 0..partitions {
            stream
                .create_consumer(partition_consumer_config(direction, p, &settings))
                .await
                .map_err(|e| fail(e.into()))?;
        }
        let membership = Membership::join(
            &js,
            direction,
            partitions,
            replica_id.clone(),
            settings.member_ttl,
            shutdown.clone(),
            tasks,
        )
        .await
        .map_err(fail)?;
        let (work_tx, work_rx) = mpsc::unbounded_channel();
        let lanes = Self {
            inner: Arc::new(Inner {
                direction,
                js,
                settings,
                replica_id,
                lanes: Mutex::new(HashMap::new()),
                spill_slots: Arc::new(Semaphore::new(MAX_SPILLS_IN_FLIGHT)),
                tasks: tasks.clone(),
                work: work_tx,
            }),
        };
        tasks.spawn(
            lanes
                .clone()
                .supervise(membership, stream, shutdown.clone(), tasks.clone()),
        );
        tasks.spawn(lanes.clone().keep_alive_loop(shutdown));
        Ok((lanes, work_rx))
    }

    /// The lane of `tenant`, if this replica has one.
    pub async fn lane(&self, tenant: &TenantId) -> Option<Arc<TenantLane>> {
        self.inner.lanes.lock().await.get(tenant).cloned()
    }

    /// Every lane this replica holds.
    pub async fn all(&self) -> Vec<Arc<TenantLane>> {
        self.inner.lanes.lock().await.values().cloned().collect()
    }

    pub fn direction(&self) -> Direction {
        self.inner.direction
    }

    pub fn settings(&self) -> &LaneSettings {
        &self.inner.settings
    }

    /// Starts and stops partition readers as the assignment changes; on
    /// shutdown hands every partition over: stop pulling, give waiting
    /// messages back, leave the membership, unpin.
    async fn supervise(
        self,
        mut membership: Membership,
        stream: jetstream::stream::Stream,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) {
        let mut readers: HashMap<u16, (CancellationToken, tokio::task::JoinHandle<()>)> =
            HashMap::new();
        loop {
            let owned: BTreeSet<u16> = membership.owned.borrow_and_update().clone();
            for p in &owned {
                if !readers.contains_key(p) {
                    // The assignment says this partition is ours: its previous
                    // owner either gave it up (and unpinned) or has aged out of
                    // the membership (dead, or cut off). Take the pin now rather
                    // than wait out `priority_timeout`; if the old owner is in
                    // fact still pulling, the server pins one of us, never both.
                    self.unpin(&stream, *p).await;
                    let token = shutdown.child_token();
                    let handle = tasks.spawn(self.clone().read_partition(
                        *p,
                        stream.clone(),
                        token.clone(),
                    ));
                    readers.insert(*p, (token, handle));
                }
            }
            let revoked: Vec<u16> = readers
                .keys()
                .filter(|p| !owned.contains(p))
                .copied()
                .collect();
            for p in revoked {
                if let Some((token, handle)) = readers.remove(&p) {
                    token.cancel();
                    let _ = handle.await;
                    self.release_partition(p).await;
                    self.unpin(&stream, p).await;
                }
            }
            metrics::gauge!(
                "switchyard_lane_partitions_owned",
                "direction" => self.inner.direction.as_str(),
                "replica" => self.inner.replica_id.clone()
            )
            .set(readers.len() as f64);
            tokio::select! {
                _ = shutdown.cancelled() => break,
                changed = membership.owned.changed() => {
                    if changed.is_err() { shutdown.cancelled().await; break; }
                }
            }
        }
        // Graceful hand-over: stop pulling first, then release, leave, unpin.
        let held: Vec<u16> = readers.keys().copied().collect();
        for (_, (token, handle)) in readers.drain() {
            token.cancel();
            let _ = handle.await;
        }
        for p in &held {
            self.release_partition(*p).await;
        }
        membership.leave().await;
        for p in held {
            self.unpin(&stream, p).await;
        }
        metrics::gauge!(
            "switchyard_lane_partitions_owned",
            "direction" => self.inner.direction.as_str(),
            "replica" => self.inner.replica_id.clone()
        )
        .set(0.0);
    }

    async fn unpin(&self, stream: &jetstream::stream::Stream, partition: u16) {
        let name = subjects::partition_consumer(self.inner.direction, partition);
        if let Err(e) = stream.unpin_consumer(&name, PRIORITY_GROUP).await {
            tracing::debug!(lane.partition = partition, error = %e, "unpin failed (no pin held?)");
        }
    }

    /// Closes the lanes of a partition this replica no longer reads.
    async fn release_partition(&self, partition: u16) {
        let closing: Vec<Arc<TenantLane>> = {
            let mut lanes = self.inner.lanes.lock().await;
            let ids: Vec<TenantId> = lanes
                .iter()
                .filter(|(_, lane)| lane.partition() == partition)
                .map(|(id, _)| id.clone())
                .collect();
            ids.iter().filter_map(|id| lanes.remove(id)).collect()
        };
        for lane in closing {
            lane.close_and_release().await;
        }
    }

    async fn read_partition(
        self,
        partition: u16,
        stream: jetstream::stream::Stream,
        stop: CancellationToken,
    ) {
        let direction = self.inner.direction;
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
                    continue;
                }
            };
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    next = messages.next() => match next {
                        Some(Ok(message)) => self.dispatch(partition, message).await,
                        Some(Err(e)) => {
                            tracing::debug!(lane.partition = partition, error = %e, "pull error");
                            pause(&stop, Duration::from_millis(100)).await;
                        }
                        None => break,
                    }
                }
            }
        }
    }

    async fn dispatch(&self, partition: u16, message: jetstream::Message) {
        let direction = self.inner.direction;
        let Some(tenant) = subjects::tenant_of(&message.subject) else {
            metrics::counter!("switchyard_lane_invalid_subject_total", "direction" => direction.as_str()).increment(1);
            tracing::warn!(
                lane.partition = partition,
                "message with an invalid tenant token in its subject; terminated"
            );
            let _ = message.ack_with(AckKind::Term).await;
            return;
        };
        let lane = match self.lane_for(&tenant, partition).await {
            Ok(lane) => lane,
            Err(e) => {
                tracing::warn!(tenant.id = %tenant, error = %e, "cannot open tenant lane; message released");
                let _ = message
                    .ack_with(AckKind::Nak(Some(Duration::from_secs(1))))
                    .await;
                return;
            }
        };
        let message = LaneMessage::new(tenant, direction, message);
        // Bounds the spills on their way at once (their acks share one inbox).
        let Ok(slot) = self.inner.spill_slots.clone().acquire_owned().await else {
            return;
        };
        match lane.offer(message).await {
            Ok(Offered::Queued) => {
                drop(slot);
                let _ = self.inner.work.send(lane);
            }
            Ok(Offered::Spilling(pending)) => {
                let _ = self.inner.work.send(lane.clone());
                self.inner.tasks.spawn(async move {
                    lane.finish_spill(pending).await;
                    drop(slot);
                });
            }
            Err((message, e)) => {
                drop(slot);
                tracing::warn!(tenant.id = %message.tenant(), error = %e, "cannot spill; message released for redelivery");
                message.release(Duration::from_secs(1)).await;
            }
        }
    }

    async fn lane_for(
        &self,
        tenant: &TenantId,
        partition: u16,
    ) -> Result<Arc<TenantLane>, async_nats::Error> {
        if let Some(lane) = self.inner.lanes.lock().await.get(tenant) {
            return Ok(lane.clone());
        }
        // Opening asks the server about a spill backlog: do it without holding
        // the map, so first sight of many tenants does not serialise every
        // partition. Only this tenant's partition reader opens its lane, so
        // nobody can insert it meanwhile.
        let lane = TenantLane::open(
            tenant.clone(),
            self.inner.direction,
            partition,
            self.inner.js.clone(),
            self.inner.settings.clone(),
        )
        .await?;
        self.inner
            .lanes
            .lock()
            .await
            .insert(tenant.clone(), lane.clone());
        if lane.is_spilling().await {
            // A backlog left by the partition's previous owner: announce it.
            let _ = self.inner.work.send(lane.clone());
        }
        Ok(lane)
    }

    async fn keep_alive_loop(self, shutdown: CancellationToken) {
        let mut tick = tokio::time::interval(self.inner.settings.ack_wait / 3);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {
                    for lane in self.all().await {
                        lane.keep_alive().await;
                    }
                }
            }
        }
    }
}

async fn pause(stop: &CancellationToken, delay: Duration) {
    tokio::select! {
        _ = stop.cancelled() => {}
        _ = tokio::time::sleep(delay) => {}
    }
}
