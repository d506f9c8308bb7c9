//! The lanes of one direction in this replica: what [`Lanes::start`] needs
//! ([`LanesParts`]), the tenant lanes it holds, and the keep-alive of every
//! message they hold. Which partitions it reads is decided in
//! [`super::ownership`]; how a partition's messages reach the tenant lanes,
//! in [`super::dispatch`].

use std::{collections::HashMap, sync::Arc};

use async_nats::jetstream;
use tokio::sync::{Mutex, Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    ids::TenantId,
    lanes::{
        TenantLane,
        assignment::Membership,
        consumer::partition_consumer_config,
        lag::LagReporter,
        settings::LaneSettings,
        work::{self, Announcer, LaneWork},
    },
    subjects::Direction,
};

/// Spills on their way at once, per direction and replica.
const MAX_SPILLS_IN_FLIGHT: usize = 1024;

/// Why the lanes could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot start the {direction} lanes: {source}")]
pub struct LanesError {
    direction: &'static str,
    #[source]
    source: async_nats::Error,
}

/// What the lanes of one direction need to run.
#[derive(Debug, Clone)]
pub struct LanesParts {
    pub js: jetstream::Context,
    pub direction: Direction,
    /// Partitions of the work stream (every replica must agree).
    pub partitions: u16,
    pub settings: LaneSettings,
    /// This replica's name among its peers.
    pub replica_id: String,
    /// Stops the readers; the partitions are then handed over.
    pub shutdown: CancellationToken,
    pub tasks: TaskTracker,
}

pub(super) struct Inner {
    pub(super) direction: Direction,
    pub(super) js: jetstream::Context,
    pub(super) settings: LaneSettings,
    pub(super) replica_id: String,
    pub(super) lanes: Mutex<HashMap<TenantId, Arc<TenantLane>>>,
    /// The partition of every tenant whose spill backlog was looked at
    /// (fixed while the service runs; see [`super::adoption`]).
    pub(super) partition_of: Mutex<HashMap<TenantId, u16>>,
    /// Spills sent and not yet stored, all partitions together.
    pub(super) spill_slots: Arc<Semaphore>,
    pub(super) tasks: TaskTracker,
    pub(super) announcer: Announcer,
}

/// The running lanes of one direction in this replica.
#[derive(Clone)]
pub struct Lanes {
    pub(super) inner: Arc<Inner>,
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
    /// that reaches a lane is announced on the returned [`LaneWork`] (one
    /// announcement per message), so the caller can start a worker or tell
    /// its scheduler.
    pub async fn start(parts: LanesParts) -> Result<LaneWork, LanesError> {
        let LanesParts {
            js,
            direction,
            partitions,
            settings,
            replica_id,
            shutdown,
            tasks,
        } = parts;
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
        // The member list is as durable as the work it assigns.
        let replicas = stream.cached_info().config.num_replicas;
        let membership = Membership::join(
            &js,
            direction,
            partitions,
            replicas,
            replica_id.clone(),
            settings.member_ttl,
            shutdown.clone(),
            &tasks,
        )
        .await
        .map_err(fail)?;
        let share = work::PartitionShare::new(membership.owned.clone(), partitions);
        let (announcer, work) = work::channel(settings.work_buffer, share);
        let lanes = Self {
            inner: Arc::new(Inner {
                direction,
                js,
                settings,
                replica_id,
                lanes: Mutex::new(HashMap::new()),
                partition_of: Mutex::new(HashMap::new()),
                spill_slots: Arc::new(Semaphore::new(MAX_SPILLS_IN_FLIGHT)),
                tasks: tasks.clone(),
                announcer,
            }),
        };
        let lag = LagReporter {
            direction,
            partitions,
            stream: stream.clone(),
            js: lanes.inner.js.clone(),
            interval: lanes.inner.settings.lag_interval,
        };
        tasks.spawn(lag.run(membership.owned.clone(), shutdown.clone()));
        tasks.spawn(
            lanes
                .clone()
                .supervise(membership, stream, shutdown.clone(), tasks.clone()),
        );
        tasks.spawn(lanes.keep_alive_loop(shutdown));
        Ok(work)
    }

    /// Every lane this replica holds.
    async fn all(&self) -> Vec<Arc<TenantLane>> {
        self.inner.lanes.lock().await.values().cloned().collect()
    }

    /// Keeps every message waiting in a lane from being redelivered.
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
