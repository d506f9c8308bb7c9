//! When NATS itself has recovered from a node's loss: every raft group the
//! node led (streams, KV buckets, durable consumers) has a new leader.
//!
//! nats-server elects a new leader 4–9 s after the old one goes silent
//! (`minElectionTimeout`/`maxElectionTimeout` in its `server/raft.go`, not
//! configurable), and the groups elect independently, so the last of a
//! node's dozens of groups is usually back close to 9 s after the kill. The
//! chaos report gives the pipeline's recovery both from the kill and from
//! that moment, which is what separates the server's share from ours.

use std::{collections::BTreeSet, time::Duration};

use async_nats::jetstream;
use futures::StreamExt as _;

use super::clock::unix_ms;

/// One raft group: a stream, or a durable consumer of a stream.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Group {
    pub stream: String,
    pub consumer: Option<String>,
}

impl std::fmt::Display for Group {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.consumer {
            None => write!(f, "{}", self.stream),
            Some(c) => write!(f, "{}/{c}", self.stream),
        }
    }
}

/// How long one info request may take before the group counts as leaderless
/// for this round (the API's own timeout is 5 s).
const ASK: Duration = Duration::from_millis(500);

/// The groups whose leader is the node named `node`.
pub async fn led_by(js: &jetstream::Context, node: &str) -> BTreeSet<Group> {
    let mut groups = BTreeSet::new();
    let mut names = js.stream_names();
    let mut streams = Vec::new();
    while let Some(Ok(name)) = names.next().await {
        streams.push(name);
    }
    for name in streams {
        let Ok(mut stream) = js.get_stream(&name).await else {
            continue;
        };
        if let Ok(info) = stream.info().await
            && leader_of(info.cluster.as_ref()).as_deref() == Some(node)
        {
            groups.insert(Group {
                stream: name.clone(),
                consumer: None,
            });
        }
        let mut consumers = stream.consumers();
        while let Some(Ok(info)) = consumers.next().await {
            if info.config.durable_name.is_some()
                && leader_of(info.cluster.as_ref()).as_deref() == Some(node)
            {
                groups.insert(Group {
                    stream: name.clone(),
                    consumer: Some(info.name.clone()),
                });
            }
        }
    }
    groups
}

/// Waits (up to `limit`) until every group in `groups` has a leader: until
/// `back_at` one other than `gone` (the node's own stale answer does not
/// count), after it any. Returns when that was (Unix ms), or at the limit
/// the groups still without one.
pub async fn all_led_again(
    js: &jetstream::Context,
    mut groups: BTreeSet<Group>,
    gone: &str,
    back_at: tokio::time::Instant,
    limit: Duration,
) -> Result<u64, BTreeSet<Group>> {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        // All at once: a round must take one request's time, not one per group.
        let asked = futures::future::join_all(groups.iter().map(|group| async move {
            let leader = leader_now(js, group).await;
            let returned = tokio::time::Instant::now() >= back_at;
            (group.clone(), leader.is_some_and(|l| returned || l != gone))
        }))
        .await;
        for (group, led) in asked {
            if led {
                groups.remove(&group);
                eprintln!("chaos: {group} has a leader again at {} ms", unix_ms());
            }
        }
        if groups.is_empty() {
            return Ok(unix_ms());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(groups)
}

async fn leader_now(js: &jetstream::Context, group: &Group) -> Option<String> {
    tokio::time::timeout(ASK, async {
        let mut stream = js.get_stream(&group.stream).await.ok()?;
        match &group.consumer {
            None => leader_of(stream.info().await.ok()?.cluster.as_ref()),
            Some(name) => {
                let mut consumer: jetstream::consumer::PullConsumer =
                    stream.get_consumer(name).await.ok()?;
                leader_of(consumer.info().await.ok()?.cluster.as_ref())
            }
        }
    })
    .await
    .ok()
    .flatten()
}

fn leader_of(cluster: Option<&jetstream::stream::ClusterInfo>) -> Option<String> {
    cluster.and_then(|c| c.leader.clone())
}
