//! The faults a chaos run injects, one kind per run, and what each did
//! (when it began, when it ended, and from when the driver measures the
//! recovery).
//!
//! A crash (a replica's `kill -9`, a NATS node's) hits at one instant and is
//! recovered by the system itself (partitions move, a leader is elected):
//! its recovery is timed from the kill; the process is started again at once
//! (a node after `down`). An outage (PostgreSQL unreachable, every bridge
//! failing) lasts a while and nothing can be expected of the system before
//! it ends: its recovery is timed from its end.

use std::time::Duration;

use serde::Serialize;
use switchyard_shared::subjects;

use super::{
    clock::{Random, unix_ms},
    elections,
    replica::Role,
    topology::Topology,
};

/// How long after a NATS node's kill its groups' elections are watched.
const ELECTIONS: Duration = Duration::from_secs(40);

/// One kind of fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Fault {
    /// `kill -9` of a replica of `role` picked at random, started again at once.
    Kill { role: Role },
    /// The node that leads `stream` is killed, and restarted after `down`.
    NatsLeader {
        stream: &'static str,
        #[serde(with = "millis")]
        down: Duration,
    },
    /// PostgreSQL unreachable for every service for `length`.
    PostgresDown {
        #[serde(with = "millis")]
        length: Duration,
    },
    /// Every bridge answers 503 for `length`.
    BridgesDown {
        #[serde(with = "millis")]
        length: Duration,
    },
}

impl Fault {
    /// The inbound stream's leader, down for `down`.
    pub fn inbound_leader(down: Duration) -> Self {
        Fault::NatsLeader {
            stream: subjects::INBOUND_STREAM,
            down,
        }
    }

    /// The outbound stream's leader, down for `down`.
    pub fn outbound_leader(down: Duration) -> Self {
        Fault::NatsLeader {
            stream: subjects::OUTBOUND_STREAM,
            down,
        }
    }

    /// A short description for the report.
    pub fn describe(&self) -> String {
        match self {
            Fault::Kill { role } => format!("kill -9 of a {} replica", role.name()),
            Fault::NatsLeader { stream, down } => {
                format!("the NATS node leading {stream} killed, restarted after {down:?}")
            }
            Fault::PostgresDown { length } => format!("PostgreSQL unreachable for {length:?}"),
            Fault::BridgesDown { length } => format!("every bridge answering 503 for {length:?}"),
        }
    }

    /// Injects the fault and returns once it is over (the process started
    /// again, the outage ended).
    pub async fn inject(
        &self,
        topology: &mut Topology,
        random: &mut Random,
    ) -> anyhow::Result<Injected> {
        match *self {
            Fault::Kill { role } => {
                let index = random.below(topology.count(role));
                let replica = topology.replica(role, index);
                let began_ms = unix_ms();
                replica.kill9();
                replica.restart().await?;
                Ok(Injected {
                    what: format!("{replica:?} killed"),
                    began_ms,
                    ended_ms: unix_ms(),
                    recovery_from_ms: began_ms,
                    leaders_back_ms: None,
                })
            }
            Fault::NatsLeader { stream, down } => {
                let node = topology.stream_leader(stream).await?;
                let name = topology.cluster.node_name(node).to_owned();
                let led = elections::led_by(&topology.js, &name).await;
                let groups = led.len();
                let began_ms = unix_ms();
                topology.cluster.kill(node);
                // The elections are watched from the kill until every group
                // has a leader again (after the node's return, it may lead
                // again), at most `ELECTIONS` after the kill.
                let back_at = tokio::time::Instant::now() + down;
                let js = topology.js.clone();
                let elected = elections::all_led_again(&js, led, &name, back_at, ELECTIONS);
                let cluster = &mut topology.cluster;
                let restart = async {
                    tokio::time::sleep(down).await;
                    cluster.restart(node);
                    unix_ms()
                };
                let (elected, ended_ms) = tokio::join!(elected, restart);
                let leaderless = match &elected {
                    Ok(_) => String::new(),
                    Err(left) => format!(
                        "; still without a leader {ELECTIONS:?} after the kill: {}",
                        left.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
                    ),
                };
                Ok(Injected {
                    what: format!(
                        "node n{node} (leader of {stream} and {} other groups) killed{leaderless}",
                        groups.saturating_sub(1)
                    ),
                    began_ms,
                    ended_ms,
                    recovery_from_ms: began_ms,
                    leaders_back_ms: elected.ok(),
                })
            }
            Fault::PostgresDown { length } => {
                let began_ms = unix_ms();
                topology.postgres_reachable(false).await;
                tokio::time::sleep(length).await;
                topology.postgres_reachable(true).await;
                let ended_ms = unix_ms();
                Ok(Injected {
                    what: "PostgreSQL cut".to_owned(),
                    began_ms,
                    ended_ms,
                    recovery_from_ms: ended_ms,
                    leaders_back_ms: None,
                })
            }
            Fault::BridgesDown { length } => {
                let began_ms = unix_ms();
                topology.bridges_failing(true)?;
                tokio::time::sleep(length).await;
                topology.bridges_failing(false)?;
                let ended_ms = unix_ms();
                Ok(Injected {
                    what: "every bridge 503".to_owned(),
                    began_ms,
                    ended_ms,
                    recovery_from_ms: ended_ms,
                    leaders_back_ms: None,
                })
            }
        }
    }
}

/// One fault as it happened.
#[derive(Debug, Clone, Serialize)]
pub struct Injected {
    pub what: String,
    pub began_ms: u64,
    pub ended_ms: u64,
    /// The instant the recovery is timed from.
    pub recovery_from_ms: u64,
    /// A NATS node's loss: when every raft group it led had a new leader
    /// ([`super::elections`]); `None` if not before it came back.
    pub leaders_back_ms: Option<u64>,
}

mod millis {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}
