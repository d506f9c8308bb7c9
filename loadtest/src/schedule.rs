//! When each webhook of a scenario is posted: the open-loop plan the driver
//! follows.
//!
//! Every tenant posts at its own steady rate, and the tenants' phases are
//! spread evenly over one period, so the scenario's total rate is steady
//! too. (Until 2026-12-06 every tenant posted its k-th event at `k / rate`:
//! 1,000 tenants at 0.1 event/s each made a burst of 1,000 events every
//! 10 s rather than 100 events/s, and the `cost` runs over 1,000 tenants
//! measured how long such a burst takes to clear, p50 1.2–2.6 s.)

use std::time::Duration;

use crate::scenario::Scenario;

/// One scheduled request.
#[derive(Debug, Clone, Copy)]
pub struct Planned {
    pub at: Duration,
    pub tenant: usize,
    /// The event's number (its token); repeats for a replaying tenant.
    pub event: u64,
    pub step: usize,
}

/// The scenario's requests in the order they are due.
pub fn schedule(scenario: &Scenario) -> Vec<Planned> {
    let steps: Vec<(f64, Duration)> = if scenario.ramp.is_empty() {
        vec![(f64::NAN, scenario.duration)]
    } else {
        scenario
            .ramp
            .iter()
            .map(|s| (s.rate_per_tenant, s.duration))
            .collect()
    };
    let tenants = scenario.tenants.len().max(1);
    let mut plan = Vec::new();
    let mut counters = vec![0u64; scenario.tenants.len()];
    let mut offset = Duration::ZERO;
    for (step, (ramp_rate, length)) in steps.iter().enumerate() {
        for (i, t) in scenario.tenants.iter().enumerate() {
            let rate = if ramp_rate.is_nan() {
                t.rate
            } else {
                *ramp_rate
            };
            if rate <= 0.0 {
                continue;
            }
            // Tenant i starts i/n of its period late: n tenants at the same
            // rate post one after another, evenly spaced.
            let phase = i as f64 / tenants as f64;
            let n = (rate * length.as_secs_f64() - phase).ceil().max(0.0) as u64;
            for k in 0..n {
                let seq = counters[i];
                counters[i] += 1;
                plan.push(Planned {
                    at: offset + Duration::from_secs_f64((k as f64 + phase) / rate),
                    tenant: i,
                    event: t.distinct.map_or(seq, |d| seq % d.max(1)),
                    step,
                });
            }
        }
        offset += *length;
    }
    plan.sort_by_key(|p| p.at);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{self, Knobs};

    fn cost_run(name: &str) -> Scenario {
        let knobs = Knobs {
            cost_duration: Duration::from_secs(20),
            ..scenario::test_knobs()
        };
        scenario::all(&knobs)
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no scenario {name}"))
    }

    /// The most requests due within any `window` of the plan.
    fn busiest(plan: &[Planned], window: Duration) -> usize {
        let mut most = 0;
        let mut first = 0;
        for (last, p) in plan.iter().enumerate() {
            while p.at - plan[first].at >= window {
                first += 1;
            }
            most = most.max(last + 1 - first);
        }
        most
    }

    #[test]
    fn a_thousand_slow_tenants_make_a_steady_rate_not_bursts() {
        let run = cost_run("cost-100x1000");
        let plan = schedule(&run);
        // 100 events/s for 20 s, each tenant at 0.1/s.
        assert_eq!(plan.len(), 2_000);
        // Steady: no 100 ms holds more than about 10 (bursts held 1,000).
        let busiest = busiest(&plan, Duration::from_millis(100));
        assert!(busiest <= 11, "{busiest} requests due within 100 ms");
        // Each tenant still posts every 10 s, in order.
        let of_one: Vec<&Planned> = plan.iter().filter(|p| p.tenant == 500).collect();
        assert_eq!(of_one.len(), 2);
        assert_eq!(of_one[1].at - of_one[0].at, Duration::from_secs(10));
        assert!(of_one[0].event < of_one[1].event);
    }

    #[test]
    fn the_idle_run_provisions_its_tenants_and_plans_nothing() {
        let run = cost_run("cost-idle-1000");
        assert_eq!(run.tenants.len(), 1_000);
        assert!(schedule(&run).is_empty());
    }

    #[test]
    fn every_tenant_gets_its_rate_over_the_run() {
        let run = cost_run("cost-500x100");
        let plan = schedule(&run);
        for tenant in 0..run.tenants.len() {
            let count = plan.iter().filter(|p| p.tenant == tenant).count();
            assert_eq!(count, 100, "tenant {tenant}");
        }
        assert!(plan.iter().all(|p| p.at < Duration::from_secs(20)));
        assert!(plan.windows(2).all(|w| w[0].at <= w[1].at));
    }
}
