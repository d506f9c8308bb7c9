//! What one delivered event cost (issue 20): CPU per party from the
//! sampler, NATS messages and PostgreSQL transactions and row changes per
//! event from the servers' own counters, and the mean time of each stage
//! ([`crate::stages`]), all read before and after the run.

use std::collections::BTreeMap;

use serde::Serialize;
use switchyard_tests::procstat::Usage;

use crate::{
    stack::Counters,
    stages::{StageMean, StageTotals},
};

/// The parties whose CPU is the load generator's, not the pipeline's.
pub const LOAD_GENERATOR: &str = "switchyard-load";

/// Per-event costs of one run.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Cost {
    /// Events whose reply reached the simulator.
    pub delivered: u64,
    /// CPU microseconds per delivered event, by party.
    pub cpu_us_per_event: BTreeMap<String, f64>,
    /// All parties but the load generator (and the simulator, which shares its process).
    pub pipeline_cpu_us_per_event: f64,
    /// nats-server messages in and out per event.
    pub nats_msgs_in_per_event: Option<f64>,
    pub nats_msgs_out_per_event: Option<f64>,
    /// PostgreSQL transactions and changed rows per event.
    pub pg_xacts_per_event: Option<f64>,
    pub pg_rows_per_event: Option<f64>,
    /// Each stage's mean over the run, where the services could be read.
    pub stages: Vec<StageMean>,
}

fn per_event(before: u64, after: u64, delivered: u64) -> f64 {
    after.saturating_sub(before) as f64 / delivered.max(1) as f64
}

impl Cost {
    pub fn of(
        delivered: u64,
        services: &BTreeMap<String, Usage>,
        before: &Counters,
        after: &Counters,
    ) -> Self {
        let cpu_us_per_event: BTreeMap<String, f64> = services
            .iter()
            .map(|(name, u)| (name.clone(), u.cpu_seconds * 1e6 / delivered.max(1) as f64))
            .collect();
        let pipeline_cpu_us_per_event = cpu_us_per_event
            .iter()
            .filter(|(name, _)| !name.starts_with(LOAD_GENERATOR))
            .map(|(_, us)| us)
            .sum();
        let pair = |b: Option<(u64, u64)>, a: Option<(u64, u64)>| match (b, a) {
            (Some(b), Some(a)) => (
                Some(per_event(b.0, a.0, delivered)),
                Some(per_event(b.1, a.1, delivered)),
            ),
            _ => (None, None),
        };
        let (nats_in, nats_out) = pair(before.nats_msgs, after.nats_msgs);
        let (pg_xacts, pg_rows) = pair(before.pg, after.pg);
        let stages = match (&before.stages, &after.stages) {
            (Some(b), Some(a)) => StageTotals::means(b, a),
            _ => Vec::new(),
        };
        Self {
            delivered,
            cpu_us_per_event,
            pipeline_cpu_us_per_event,
            nats_msgs_in_per_event: nats_in,
            nats_msgs_out_per_event: nats_out,
            pg_xacts_per_event: pg_xacts,
            pg_rows_per_event: pg_rows,
            stages,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_are_divided_by_delivered_events_and_the_generator_is_kept_apart() {
        let usage = |cpu_seconds| Usage {
            cpu_seconds,
            ..Usage::default()
        };
        let services = BTreeMap::from([
            ("switchyard-router".to_owned(), usage(0.5)),
            ("postgres".to_owned(), usage(0.25)),
            ("switchyard-load (+ simulator)".to_owned(), usage(2.0)),
        ]);
        let before = Counters {
            nats_msgs: Some((100, 50)),
            pg: Some((10, 20)),
            stages: None,
        };
        let after = Counters {
            nats_msgs: Some((1100, 3050)),
            pg: Some((510, 1020)),
            stages: None,
        };
        let cost = Cost::of(1000, &services, &before, &after);
        assert_eq!(cost.cpu_us_per_event["switchyard-router"], 500.0);
        assert_eq!(cost.pipeline_cpu_us_per_event, 750.0);
        assert_eq!(cost.nats_msgs_in_per_event, Some(1.0));
        assert_eq!(cost.nats_msgs_out_per_event, Some(3.0));
        assert_eq!(
            (cost.pg_xacts_per_event, cost.pg_rows_per_event),
            (Some(0.5), Some(1.0))
        );
        let unread = Cost::of(1000, &services, &Counters::default(), &after);
        assert_eq!(unread.nats_msgs_in_per_event, None);
        assert!(unread.stages.is_empty(), "no stage timings read");
    }
}
