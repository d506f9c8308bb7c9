//! Which replica reads which partition.
//!
//! The server's `pinned_client` policy guarantees one reader per partition
//! but does not spread partitions: the pin goes to whichever replica pulled
//! first. So replicas announce themselves in a KV bucket (one key each,
//! refreshed well within the bucket's max age) and every replica derives the
//! same assignment from the sorted member list: partition `p` belongs to
//! member `p mod n`. A replica that leaves deletes its key (others react at
//! once through a watch); one that dies ages out after `member_ttl`, and its
//! pins time out after `priority_timeout`. While a replica cannot refresh its
//! own key (the bucket has no leader), it ages nobody out
//! ([`super::liveness`]). The bucket has as many replicas as the work stream.

use std::{collections::BTreeSet, time::Duration};

use async_nats::jetstream::{self, kv};
use futures::StreamExt as _;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{lanes::liveness::Liveness, metrics as m, subjects::Direction};

/// Partitions owned by member `me` among `members` (sorted, deduplicated).
pub fn owned_partitions(members: &BTreeSet<String>, me: &str, partitions: u16) -> BTreeSet<u16> {
    let Some(rank) = members.iter().position(|m| m == me) else {
        return BTreeSet::new();
    };
    let n = members.len();
    (0..partitions)
        .filter(|p| usize::from(*p) % n == rank)
        .collect()
}

/// The KV bucket where the replicas of one direction announce themselves.
pub fn bucket_name(direction: Direction) -> String {
    format!("switchyard_members_{}", direction.as_str())
}

/// Keeps this replica's membership alive and publishes the partitions it owns.
pub struct Membership {
    pub owned: watch::Receiver<BTreeSet<u16>>,
    store: kv::Store,
    replica_id: String,
}

impl std::fmt::Debug for Membership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Membership")
            .field("replica_id", &self.replica_id)
            .finish()
    }
}

impl Membership {
    /// Joins the member list and starts the refresh loop (ends with `shutdown`).
    /// `replicas`: the bucket's, as the work stream's.
    #[allow(clippy::too_many_arguments)]
    pub async fn join(
        js: &jetstream::Context,
        direction: Direction,
        partitions: u16,
        replicas: usize,
        replica_id: String,
        ttl: Duration,
        shutdown: CancellationToken,
        tasks: &tokio_util::task::TaskTracker,
    ) -> Result<Self, async_nats::Error> {
        let store = js
            .create_or_update_key_value(kv::Config {
                bucket: bucket_name(direction),
                history: 1,
                max_age: ttl,
                storage: jetstream::stream::StorageType::Memory,
                num_replicas: replicas,
                ..Default::default()
            })
            .await?;
        // Watch first, then announce and list: no put is missed in between.
        let mut watcher = store.watch_all().await?;
        store.put(&replica_id, "alive".into()).await?;
        // Members as last heard from. Listing the keys is not a consistent
        // snapshot while others refresh (an overwritten entry can be missed),
        // so the list is read once, then kept up to date from the watch, and a
        // member is forgotten only after `ttl` of silence (that this replica
        // could hear) or when it leaves.
        let mut alive = Liveness::new(ttl);
        for member in list_members(&store).await? {
            alive.heard(member);
        }
        alive.heard(replica_id.clone());
        let (tx, owned) = watch::channel(owned_partitions(
            &alive.members(),
            &replica_id,
            partitions,
        ));
        let refresh = {
            let store = store.clone();
            let replica_id = replica_id.clone();
            async move {
                // Refresh and re-check every quarter of the TTL: a dead member is
                // dropped at most `ttl * 5 / 4` after its last refresh (later
                // while this replica's own refreshes fail).
                let interval = ttl / 4;
                let mut tick = tokio::time::interval(interval);
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        _ = shutdown.cancelled() => return,
                        _ = tick.tick() => {
                            let put = store.put(&replica_id, "alive".into());
                            match tokio::time::timeout(interval, put).await {
                                Ok(Ok(_)) => {}
                                Ok(Err(e)) => {
                                    if !alive.holding() {
                                        tracing::warn!(error = %e, "cannot refresh lane membership; holding the member list");
                                    }
                                    alive.blind();
                                }
                                Err(_) => {
                                    if !alive.holding() {
                                        tracing::warn!(after = ?interval, "lane membership refresh unanswered; holding the member list");
                                    }
                                    alive.blind();
                                }
                            }
                            // We are a member while we run, whatever the watch lags.
                            alive.heard(replica_id.clone());
                        }
                        change = watcher.next() => match change {
                            Some(Ok(entry)) => match entry.operation {
                                kv::Operation::Put => alive.heard(entry.key),
                                kv::Operation::Delete | kv::Operation::Purge => {
                                    alive.left(&entry.key);
                                }
                            },
                            Some(Err(e)) => tracing::debug!(error = %e, "membership watch error"),
                            None => {
                                tracing::warn!("membership watch ended; watching again");
                                alive.blind();
                                if let Ok(w) = store.watch_all().await {
                                    watcher = w;
                                }
                            }
                        }
                    }
                    let members = alive.members();
                    let owned = owned_partitions(&members, &replica_id, partitions);
                    tx.send_if_modified(|current| {
                        let changed = *current != owned;
                        if changed {
                            tracing::info!(
                                members = members.len(),
                                owned = owned.len(),
                                "partition assignment changed"
                            );
                            metrics::counter!(m::LANE_ASSIGNMENT_CHANGES).increment(1);
                            *current = owned.clone();
                        }
                        changed
                    });
                }
            }
        };
        tasks.spawn(refresh);
        Ok(Self {
            owned,
            store,
            replica_id,
        })
    }

    /// Leaves the member list so the others take over at once.
    pub async fn leave(&self) {
        if let Err(e) = self.store.delete(&self.replica_id).await {
            tracing::warn!(error = %e, "cannot leave lane membership; peers will wait for it to age out");
        }
    }
}

async fn list_members(store: &kv::Store) -> Result<BTreeSet<String>, async_nats::Error> {
    let mut keys = store.keys().await?;
    let mut members = BTreeSet::new();
    while let Some(key) = keys.next().await {
        members.insert(key?);
    }
    Ok(members)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn partitions_are_spread_evenly_and_disjointly() {
        let m = members(&["a", "b", "c"]);
        let sets: Vec<_> = ["a", "b", "c"]
            .iter()
            .map(|me| owned_partitions(&m, me, 16))
            .collect();
        let total: usize = sets.iter().map(BTreeSet::len).sum();
        assert_eq!(total, 16);
        for s in &sets {
            assert!((5..=6).contains(&s.len()));
        }
        assert!(sets[0].is_disjoint(&sets[1]) && sets[1].is_disjoint(&sets[2]));
    }

    #[test]
    fn a_replica_missing_from_the_list_owns_nothing() {
        assert!(owned_partitions(&members(&["a"]), "z", 8).is_empty());
    }

    #[test]
    fn a_lone_replica_owns_every_partition() {
        assert_eq!(owned_partitions(&members(&["a"]), "a", 8).len(), 8);
    }
}
