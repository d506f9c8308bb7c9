//! What one chaos run does: its fault kind and how often, the traffic, the
//! deployment's shape and the pauses. [`Plan::short`] is what the test
//! command runs (a few faults, about half a minute each); [`Plan::full`] is
//! the benchmark of issue 16 (20 kills of each replica kind, 60 s of
//! failing bridges).

use std::time::Duration;

use super::{faults::Fault, load::Rate, replica::Role};

/// The fault kinds, one per run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    RouterKill,
    SenderKill,
    IngestKill,
    /// The node leading the inbound stream, then (short version) the one
    /// leading the outbound stream.
    NatsInboundLeader,
    NatsOutboundLeader,
    Postgres,
    Bridges,
    /// 2,000 events/s over 1,000 tenants for 30 s, no other fault: planned
    /// (issue 16), not yet part of the full run.
    Overload,
}

impl Kind {
    /// Every kind the full run goes through, in order.
    pub const FULL_RUN: [Kind; 7] = [
        Kind::RouterKill,
        Kind::SenderKill,
        Kind::IngestKill,
        Kind::NatsInboundLeader,
        Kind::NatsOutboundLeader,
        Kind::Postgres,
        Kind::Bridges,
    ];

    /// Its name on the command line and in the report.
    pub fn name(self) -> &'static str {
        match self {
            Kind::RouterKill => "router-kill",
            Kind::SenderKill => "sender-kill",
            Kind::IngestKill => "ingest-kill",
            Kind::NatsInboundLeader => "nats-inbound-leader",
            Kind::NatsOutboundLeader => "nats-outbound-leader",
            Kind::Postgres => "postgres-down",
            Kind::Bridges => "bridges-503",
            Kind::Overload => "overload",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        [Kind::Overload]
            .into_iter()
            .chain(Kind::FULL_RUN)
            .find(|k| k.name() == name)
    }
}

/// One run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub kind: Kind,
    /// Injected in order, each after a random pause within `gap`.
    pub faults: Vec<Fault>,
    pub rate: Rate,
    pub tenants: usize,
    /// Ingest, router and sender replicas.
    pub replicas: (usize, usize, usize),
    pub partitions: u16,
    /// Traffic before the first fault.
    pub warmup: Duration,
    pub gap: (Duration, Duration),
    /// Traffic after the last fault.
    pub tail: Duration,
    /// How long the accepted events may take to be answered once traffic stops.
    pub drain: Duration,
    pub seed: u64,
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

impl Plan {
    /// The test command's version: 2 faults of the kind (one of each
    /// leader for NATS), 40 events/s over 6 tenants, 2 replicas of each
    /// service.
    pub fn short(kind: Kind, seed: u64) -> Self {
        let kill = |role| vec![Fault::Kill { role }; 2];
        let faults = match kind {
            Kind::RouterKill => kill(Role::Router),
            Kind::SenderKill => kill(Role::Sender),
            Kind::IngestKill => kill(Role::Ingest),
            Kind::NatsInboundLeader | Kind::NatsOutboundLeader => {
                vec![
                    Fault::inbound_leader(secs(5)),
                    Fault::outbound_leader(secs(5)),
                ]
            }
            Kind::Postgres => vec![Fault::PostgresDown { length: secs(10) }],
            Kind::Bridges => vec![Fault::BridgesDown { length: secs(8) }],
            Kind::Overload => Vec::new(),
        };
        Self {
            kind,
            faults,
            rate: Rate {
                events_per_second: 40,
            },
            tenants: 6,
            replicas: (2, 2, 2),
            partitions: 8,
            warmup: secs(2),
            gap: (secs(3), secs(5)),
            tail: secs(6),
            drain: secs(60),
            seed,
        }
    }

    /// The full version: 20 kills of each replica kind, 5 losses of each
    /// stream leader (each node down 10 s), PostgreSQL away for 10 s and
    /// every bridge failing for 60 s (3 times each), at 100 events/s over
    /// 20 tenants, 2 ingest, 3 router and 3 sender replicas.
    pub fn full(kind: Kind, seed: u64) -> Self {
        let kill = |role| vec![Fault::Kill { role }; 20];
        let (faults, gap) = match kind {
            Kind::RouterKill => (kill(Role::Router), (secs(8), secs(16))),
            Kind::SenderKill => (kill(Role::Sender), (secs(8), secs(16))),
            Kind::IngestKill => (kill(Role::Ingest), (secs(2), secs(8))),
            Kind::NatsInboundLeader => (
                vec![Fault::inbound_leader(secs(10)); 5],
                (secs(10), secs(20)),
            ),
            Kind::NatsOutboundLeader => (
                vec![Fault::outbound_leader(secs(10)); 5],
                (secs(10), secs(20)),
            ),
            Kind::Postgres => (
                vec![Fault::PostgresDown { length: secs(10) }; 3],
                (secs(10), secs(20)),
            ),
            Kind::Bridges => (
                vec![Fault::BridgesDown { length: secs(60) }; 3],
                (secs(10), secs(20)),
            ),
            Kind::Overload => (Vec::new(), (secs(0), secs(0))),
        };
        let overload = kind == Kind::Overload;
        Self {
            kind,
            faults,
            rate: Rate {
                events_per_second: if overload { 2000 } else { 100 },
            },
            tenants: if overload { 1000 } else { 20 },
            replicas: (2, 3, 3),
            partitions: 16,
            warmup: secs(5),
            gap,
            tail: if overload { secs(30) } else { secs(15) },
            drain: secs(120),
            seed,
        }
    }
}
