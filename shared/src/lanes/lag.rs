//! Consumer lag as gauges. Every `SWITCHYARD_LAG_INTERVAL` a replica reads
//! `num_pending` of the partition consumers it reads (one request each), so
//! the fleet asks P times per interval and direction whatever the number of
//! replicas; the replica that reads partition 0 also adds up the spill lanes'
//! per-subject counts (one paged request). Every partition starts at 0 and
//! goes back to 0 when this replica gives it up, so `sum` over the replicas
//! is the lag, and a dead replica's series leave with its scrape target.

use std::collections::BTreeSet;

use async_nats::jetstream;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{metrics as m, subjects, subjects::Direction};

/// What the lag reporter reads and how often.
pub(super) struct LagReporter {
    pub direction: Direction,
    pub partitions: u16,
    pub stream: jetstream::stream::Stream,
    pub js: jetstream::Context,
    pub interval: std::time::Duration,
}

impl LagReporter {
    /// Reports until `shutdown`, following the partitions in `owned`.
    pub(super) async fn run(
        self,
        mut owned: watch::Receiver<BTreeSet<u16>>,
        shutdown: CancellationToken,
    ) {
        for p in 0..self.partitions {
            self.set_partition(p, 0);
        }
        self.set_spill(0);
        let mut tick = tokio::time::interval(self.interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
            let now: BTreeSet<u16> = owned.borrow_and_update().clone();
            for p in 0..self.partitions {
                if now.contains(&p) {
                    self.read_partition(p).await;
                } else {
                    self.set_partition(p, 0);
                }
            }
            if now.contains(&0) {
                self.read_spill().await;
            } else {
                self.set_spill(0);
            }
        }
        for p in 0..self.partitions {
            self.set_partition(p, 0);
        }
        self.set_spill(0);
    }

    async fn read_partition(&self, partition: u16) {
        let name = subjects::partition_consumer(self.direction, partition);
        match self.stream.consumer_info(&name).await {
            Ok(info) => self.set_partition(partition, info.num_pending),
            // The last value stays: a missed reading is not a lag of 0.
            Err(e) => {
                tracing::debug!(lane.partition = partition, error = %e, "cannot read consumer lag");
            }
        }
    }

    async fn read_spill(&self) {
        match super::spill::pending(&self.js, self.direction).await {
            Ok(total) => self.set_spill(total),
            Err(e) => tracing::debug!(error = %e, "cannot read the spill lanes' backlog"),
        }
    }

    fn set_partition(&self, partition: u16, pending: u64) {
        metrics::gauge!(
            m::LANE_PARTITION_PENDING,
            "stream" => self.direction.stream(),
            "partition" => partition.to_string()
        )
        .set(pending as f64);
    }

    fn set_spill(&self, pending: u64) {
        metrics::gauge!(m::LANE_SPILL_PENDING, "direction" => self.direction.as_str())
            .set(pending as f64);
    }
}
