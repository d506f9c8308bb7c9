//! How many `/status` probes this replica may make: its part of the
//! watchdog's share of the fleet budget, as a token bucket. Pure (the caller
//! passes the time), so the bound is tested without clocks.
//!
//! The fleet's share is `budget_percent` of the fleet's calls per window;
//! each replica refills at that rate times its part of the partitions (the
//! parts add up to one), so the replicas together stay within the share. A
//! small part still probes now and then: the bucket holds fractions.

use std::time::Duration;

use tokio::time::Instant;

/// Probes left, refilled continuously.
#[derive(Debug)]
pub(super) struct ProbeAllowance {
    /// Probes per window for the whole fleet (the configured share).
    fleet_share: f64,
    window: Duration,
    tokens: f64,
    at: Instant,
}

impl ProbeAllowance {
    /// `percent` of `fleet_limit` calls per `window`; starts with nothing
    /// saved, so a restart cannot burst.
    pub(super) fn new(fleet_limit: u32, percent: u32, window: Duration, now: Instant) -> Self {
        Self {
            fleet_share: f64::from(fleet_limit) * f64::from(percent) / 100.0,
            window,
            tokens: 0.0,
            at: now,
        }
    }

    /// Probes a window for the whole fleet (0 turns the watchdog off).
    pub(super) fn fleet_share(&self) -> f64 {
        self.fleet_share
    }

    /// Takes one probe when this replica (`part` of the partitions, 0..=1)
    /// has one left at `now`.
    pub(super) fn take(&mut self, part: f64, now: Instant) -> bool {
        let mine = self.fleet_share * part.clamp(0.0, 1.0);
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        let per_second = mine / self.window.as_secs_f64().max(f64::EPSILON);
        // At most one window's worth saved (and at least one probe, so a
        // small part is not stuck below a whole probe forever).
        self.tokens = (self.tokens + elapsed * per_second).min(mine.max(1.0));
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn taken_over(
        allowance: &mut ProbeAllowance,
        part: f64,
        start: Instant,
        span: Duration,
    ) -> u32 {
        let step = Duration::from_millis(10);
        let mut now = start;
        let mut taken = 0;
        while now <= start + span {
            while allowance.take(part, now) {
                taken += 1;
            }
            now += step;
        }
        taken
    }

    #[test]
    fn one_replica_takes_its_share_of_each_window_and_no_more() {
        let start = Instant::now();
        // 5 % of 120 a minute: 6 probes a minute.
        let mut a = ProbeAllowance::new(120, 5, Duration::from_secs(60), start);
        let taken = taken_over(&mut a, 1.0, start, Duration::from_secs(600));
        assert!((59..=60).contains(&taken), "took {taken} in ten windows");
    }

    #[test]
    fn replicas_together_stay_within_the_fleet_share() {
        let start = Instant::now();
        let parts = [0.5, 0.25, 0.25];
        let taken: u32 = parts
            .iter()
            .map(|&part| {
                let mut a = ProbeAllowance::new(120, 5, Duration::from_secs(60), start);
                taken_over(&mut a, part, start, Duration::from_secs(600))
            })
            .sum();
        assert!(taken <= 60, "three replicas took {taken} in ten windows");
        assert!(taken >= 57, "three replicas took only {taken}");
    }

    #[test]
    fn a_zero_percent_share_never_probes() {
        let start = Instant::now();
        let mut a = ProbeAllowance::new(120, 0, Duration::from_secs(60), start);
        assert_eq!(a.fleet_share(), 0.0);
        assert_eq!(taken_over(&mut a, 1.0, start, Duration::from_secs(600)), 0);
    }
}
