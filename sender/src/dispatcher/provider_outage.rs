//! Provider-wide trouble: noticing that WA Bridges itself is down (not one
//! bridge), holding every send meanwhile, and resuming all at once when a
//! probe gets through.
//!
//! Without this, each failed message backs off on its own (2 s doubling to
//! minutes, with jitter) and, once the provider is back, every tenant waits
//! out its own delay: replies were measured waiting up to 94 s after a 60 s
//! outage ended. Here, `trip_after` consecutive provider failures (5xx, 408,
//! timeouts, connection errors) from at least `min_tenants` different tenants,
//! with no other answer in between, mean the provider is down: the loop stops
//! asking the scheduler for sends and lets one **probe** through every
//! `probe_every` (an ordinary next send, which spends no attempt if it fails
//! again). The first probe the provider answers ends the outage: every
//! tenant's own backoff is lifted and sending resumes at once, paced by the
//! fleet budget like any backlog, so no burst passes the budget. One bridge
//! failing, however often, never trips it (`min_tenants`), and any answer
//! from the provider (a success, a 4xx, a 429) resets the count. Each replica
//! watches its own sends; a replica that sees nothing probes nothing.
//!
//! The state is kept here and is pure (the clock is passed in); the send loop
//! asks [`ProviderOutage::gate`] before each grant and reports every
//! completion with [`ProviderOutage::observe`].

use std::{collections::HashSet, time::Duration};

use switchyard_shared::ids::TenantId;
use tokio::time::Instant;

use crate::{deliver::ProviderSignal, retry_policy::OutagePolicy};

/// Whether the loop may ask the scheduler for a send now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gate {
    /// The provider looks up: send as usual.
    Open,
    /// Down, and a probe is due: the next grant is the probe.
    Probe,
    /// Down: no send until this instant (`None`: until the probe in flight
    /// comes back).
    Hold(Option<Instant>),
}

/// What a completion changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Change {
    None,
    /// The provider is now taken as down.
    Tripped,
    /// A probe got an answer: the outage, this long, is over.
    Recovered(Duration),
}

#[derive(Debug)]
struct Down {
    since: Instant,
    next_probe: Instant,
    probing: bool,
}

/// The detector.
#[derive(Debug)]
pub(super) struct ProviderOutage {
    policy: OutagePolicy,
    failures: u32,
    failing_tenants: HashSet<TenantId>,
    down: Option<Down>,
}

impl ProviderOutage {
    pub(super) fn new(policy: OutagePolicy) -> Self {
        Self {
            policy,
            failures: 0,
            failing_tenants: HashSet::new(),
            down: None,
        }
    }

    pub(super) fn is_down(&self) -> bool {
        self.down.is_some()
    }

    pub(super) fn gate(&self, now: Instant) -> Gate {
        match &self.down {
            None => Gate::Open,
            Some(down) if down.probing => Gate::Hold(None),
            Some(down) if now >= down.next_probe => Gate::Probe,
            Some(down) => Gate::Hold(Some(down.next_probe)),
        }
    }

    /// A probe was started (after [`Gate::Probe`]).
    pub(super) fn probe_started(&mut self) {
        if let Some(down) = &mut self.down {
            down.probing = true;
        }
    }

    /// Reports one completed delivery of `tenant`: what it showed of the
    /// provider, and whether it was the probe.
    pub(super) fn observe(
        &mut self,
        tenant: &TenantId,
        signal: ProviderSignal,
        was_probe: bool,
        now: Instant,
    ) -> Change {
        match (signal, &mut self.down) {
            (ProviderSignal::NoCall, Some(down)) if was_probe => {
                down.probing = false;
                Change::None
            }
            (ProviderSignal::NoCall, _) => Change::None,
            (ProviderSignal::Answered, down) => {
                self.failures = 0;
                self.failing_tenants.clear();
                match down.take() {
                    Some(down) => Change::Recovered(now.saturating_duration_since(down.since)),
                    None => Change::None,
                }
            }
            (ProviderSignal::Trouble, Some(down)) => {
                if was_probe {
                    down.probing = false;
                    down.next_probe = now + self.policy.probe_every;
                }
                Change::None
            }
            (ProviderSignal::Trouble, None) => {
                self.failures = self.failures.saturating_add(1);
                self.failing_tenants.insert(tenant.clone());
                let tenants = u32::try_from(self.failing_tenants.len()).unwrap_or(u32::MAX);
                if self.failures >= self.policy.trip_after && tenants >= self.policy.min_tenants {
                    self.down = Some(Down {
                        since: now,
                        next_probe: now + self.policy.probe_every,
                        probing: false,
                    });
                    Change::Tripped
                } else {
                    Change::None
                }
            }
        }
    }

    /// Consecutive provider failures counted, and from how many tenants.
    pub(super) fn failures(&self) -> (u32, usize) {
        (self.failures, self.failing_tenants.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(raw: &str) -> TenantId {
        TenantId::parse(raw).unwrap()
    }

    fn detector() -> ProviderOutage {
        ProviderOutage::new(OutagePolicy {
            trip_after: 4,
            min_tenants: 3,
            probe_every: Duration::from_secs(3),
        })
    }

    const TROUBLE: ProviderSignal = ProviderSignal::Trouble;
    const ANSWERED: ProviderSignal = ProviderSignal::Answered;

    #[test]
    fn one_failing_bridge_never_trips_it_however_often_it_fails() {
        let mut d = detector();
        let now = Instant::now();
        for _ in 0..100 {
            assert_eq!(d.observe(&t("a"), TROUBLE, false, now), Change::None);
        }
        assert_eq!(d.gate(now), Gate::Open);
    }

    #[test]
    fn any_answer_from_the_provider_resets_the_count() {
        let mut d = detector();
        let now = Instant::now();
        for tenant in ["a", "b", "c"] {
            d.observe(&t(tenant), TROUBLE, false, now);
        }
        d.observe(&t("d"), ANSWERED, false, now);
        assert_eq!(d.failures(), (0, 0));
        for tenant in ["a", "b", "c"] {
            assert_eq!(d.observe(&t(tenant), TROUBLE, false, now), Change::None);
        }
        assert_eq!(d.gate(now), Gate::Open);
    }

    #[test]
    fn failures_across_tenants_trip_it_and_one_probe_goes_per_period_until_one_is_answered() {
        let mut d = detector();
        let start = Instant::now();
        for tenant in ["a", "b", "c"] {
            assert_eq!(d.observe(&t(tenant), TROUBLE, false, start), Change::None);
        }
        assert_eq!(d.observe(&t("a"), TROUBLE, false, start), Change::Tripped);
        let first_probe = start + Duration::from_secs(3);
        assert_eq!(d.gate(start), Gate::Hold(Some(first_probe)));
        // Sends already under way fail too: no new probe time from them.
        assert_eq!(d.observe(&t("b"), TROUBLE, false, start), Change::None);
        assert_eq!(d.gate(first_probe), Gate::Probe);
        d.probe_started();
        assert_eq!(d.gate(first_probe), Gate::Hold(None));
        let failed_at = first_probe + Duration::from_millis(50);
        assert_eq!(d.observe(&t("c"), TROUBLE, true, failed_at), Change::None);
        assert_eq!(
            d.gate(failed_at),
            Gate::Hold(Some(failed_at + Duration::from_secs(3)))
        );
        let second_probe = failed_at + Duration::from_secs(3);
        assert_eq!(d.gate(second_probe), Gate::Probe);
        d.probe_started();
        let back = second_probe + Duration::from_millis(20);
        assert_eq!(
            d.observe(&t("a"), ANSWERED, true, back),
            Change::Recovered(back - start)
        );
        assert_eq!(d.gate(back), Gate::Open);
        assert!(!d.is_down());
    }

    #[test]
    fn a_probe_that_made_no_call_lets_the_next_grant_probe_at_once() {
        let mut d = detector();
        let now = Instant::now();
        for tenant in ["a", "b", "c", "a"] {
            d.observe(&t(tenant), TROUBLE, false, now);
        }
        let due = now + Duration::from_secs(3);
        assert_eq!(d.gate(due), Gate::Probe);
        d.probe_started();
        assert_eq!(
            d.observe(&t("a"), ProviderSignal::NoCall, true, due),
            Change::None
        );
        assert_eq!(d.gate(due), Gate::Probe);
    }
}
