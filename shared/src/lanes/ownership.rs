//! Which partitions this replica reads: follows the assignment
//! ([`super::assignment`]), starts a reader for every partition it gains
//! (taking the pin at once rather than waiting out a dead owner's
//! `priority_timeout`), and on losing one, or on shutdown, hands it over:
//! stop pulling, give the lanes' waiting messages back, leave, unpin. After
//! every change, and every `backlog_scan`, it adopts the spill backlogs of its
//! partitions that no lane reads ([`super::adoption`]).

use std::collections::{BTreeSet, HashMap};

use async_nats::jetstream;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    ids::TenantId,
    lanes::{
        Lanes, TenantLane, assignment::Membership, consumer::PRIORITY_GROUP, spill::BacklogSnapshot,
    },
    metrics as m, subjects,
};

impl Lanes {
    /// Starts and stops partition readers as the assignment changes; on
    /// shutdown hands every partition over: stop pulling, give waiting
    /// messages back, leave the membership, unpin.
    pub(super) async fn supervise(
        self,
        mut membership: Membership,
        stream: jetstream::stream::Stream,
        shutdown: CancellationToken,
        tasks: TaskTracker,
    ) {
        let mut readers: HashMap<u16, (CancellationToken, tokio::task::JoinHandle<()>)> =
            HashMap::new();
        let mut scan = tokio::time::interval(self.inner.settings.backlog_scan);
        scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
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
                m::LANE_PARTITIONS_OWNED,
                "direction" => self.inner.direction.as_str(),
                "replica" => self.inner.replica_id.clone()
            )
            .set(readers.len() as f64);
            // Backlogs the previous owners spilled and nobody reads yet.
            if let Some(snapshot) = self.backlog_snapshot(&owned).await {
                self.adopt_backlogs(&snapshot, &owned, &shutdown).await;
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = scan.tick() => {}
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
            m::LANE_PARTITIONS_OWNED,
            "direction" => self.inner.direction.as_str(),
            "replica" => self.inner.replica_id.clone()
        )
        .set(0.0);
    }

    /// The spill backlogs of this direction now, for the adoption; `None`
    /// (logged) when the server cannot tell: the next scan tries again.
    async fn backlog_snapshot(&self, owned: &BTreeSet<u16>) -> Option<BacklogSnapshot> {
        if owned.is_empty() {
            return None;
        }
        match BacklogSnapshot::take(&self.inner.js, self.inner.direction).await {
            Ok(snapshot) => Some(snapshot),
            Err(e) => {
                tracing::warn!(
                    lane.direction = self.inner.direction.as_str(),
                    error = %e,
                    "cannot look for unread spill backlogs; trying again at the next scan"
                );
                None
            }
        }
    }

    pub(super) async fn unpin(&self, stream: &jetstream::stream::Stream, partition: u16) {
        let name = subjects::partition_consumer(self.inner.direction, partition);
        if let Err(e) = stream.unpin_consumer(&name, PRIORITY_GROUP).await {
            tracing::debug!(lane.partition = partition, error = %e, "unpin failed (no pin held?)");
        }
    }

    /// Closes the lanes of a partition this replica no longer reads.
    async fn release_partition(&self, partition: u16) {
        let closing: Vec<std::sync::Arc<TenantLane>> = {
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
}
