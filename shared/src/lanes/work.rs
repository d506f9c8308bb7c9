//! The bounded channel between the partition readers and the workers: one
//! announcement per message a tenant lane took (queued or spilled), and one
//! for a lane opened with a spill backlog. The router starts a tenant worker
//! on it; the sender counts it as work for its scheduler.
//!
//! Bounded by `SWITCHYARD_LANE_WORK_BUFFER`, so memory is capped by
//! configuration, not by traffic: when the workers fall behind, a partition
//! reader waits for room and stops pulling (backpressure). That cannot
//! deadlock, because nobody waits on the readers: the receivers (the
//! router's runner loop, the sender's forwarder into its send loop) only
//! spawn or forward, and a worker takes its messages from the lane, never
//! from a reader. An announcement is sent after its message is in the lane
//! and outside every lock, so a waiting reader holds nothing a worker needs,
//! and what it already put in a lane is kept alive there (`ack_wait` / 3).
//! A reader waits only until there is room, its partition is revoked or the
//! service stops. What it has pulled but not yet dispatched (at most one
//! small pull batch) is not kept alive meanwhile: a wait past `ack_wait`
//! gets those redelivered, which the downstream idempotency absorbs.

use std::{collections::BTreeSet, sync::Arc};

use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;

use crate::lanes::TenantLane;

/// What the lanes of one direction announce: read with [`LaneWork::recv`].
#[derive(Debug)]
pub struct LaneWork {
    announcements: mpsc::Receiver<Arc<TenantLane>>,
    share: PartitionShare,
}

impl LaneWork {
    /// The next lane that took work; `None` once the lanes have stopped.
    pub async fn recv(&mut self) -> Option<Arc<TenantLane>> {
        self.announcements.recv().await
    }

    /// This replica's part of the partitions, as it changes.
    pub fn share(&self) -> PartitionShare {
        self.share.clone()
    }
}

/// The part of a direction's partitions this replica reads right now: the
/// replicas' parts add up to one, so it is what a replica may take of
/// anything the fleet shares when it cannot ask the others (the sender's
/// local share of the fleet budget).
#[derive(Debug, Clone)]
pub struct PartitionShare {
    owned: watch::Receiver<BTreeSet<u16>>,
    partitions: u16,
}

impl PartitionShare {
    pub(crate) fn new(owned: watch::Receiver<BTreeSet<u16>>, partitions: u16) -> Self {
        Self { owned, partitions }
    }

    /// Whether this replica reads `partition` right now: the one replica
    /// that acts for the tenants in it (one prober per silent bridge).
    pub fn owns(&self, partition: u16) -> bool {
        self.owned.borrow().contains(&partition)
    }

    /// A partition for `key` that every replica computes the same (FNV-1a
    /// over the bytes): for choosing one replica to act for something that
    /// has no subject, hence no partition of NATS's, yet.
    pub fn stable_partition(&self, key: &str) -> u16 {
        let hash = key.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
        });
        (hash % u64::from(self.partitions.max(1))) as u16
    }

    /// Owned partitions over all partitions (0..=1).
    pub fn fraction(&self) -> f64 {
        self.owned.borrow().len() as f64 / f64::from(self.partitions.max(1))
    }
}

/// The partition readers' end of the channel.
#[derive(Debug, Clone)]
pub(crate) struct Announcer {
    announcements: mpsc::Sender<Arc<TenantLane>>,
}

impl Announcer {
    /// Announces that `lane` took work, waiting for room unless `stop` (the
    /// reader's revocation or the service's shutdown) comes first. An
    /// announcement nobody will read any more is dropped.
    pub(crate) async fn announce(&self, lane: Arc<TenantLane>, stop: &CancellationToken) {
        tokio::select! {
            _ = stop.cancelled() => {}
            _ = self.announcements.send(lane) => {}
        }
    }
}

/// A channel holding at most `bound` announcements.
pub(crate) fn channel(bound: usize, share: PartitionShare) -> (Announcer, LaneWork) {
    let (announcements, received) = mpsc::channel(bound.max(1));
    (
        Announcer { announcements },
        LaneWork {
            announcements: received,
            share,
        },
    )
}
