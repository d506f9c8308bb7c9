//! The router's in-place retry schedules, all of the shared
//! [`RetryPolicy`] type and built from one setting
//! (`SWITCHYARD_RETRY_DELAY`). The attempt limit is the runner's
//! (`SWITCHYARD_MAX_DELIVERIES`): these only say how long to wait.

use std::time::Duration;

use switchyard_shared::retry::RetryPolicy;

/// Longest growth of the transient schedule: the base × 2^6.
const TRANSIENT_CAP_FACTOR: u32 = 64;

/// How long a step waits before it is tried again in place.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retries {
    /// A transient failure of a step (tenant lookup, database, bot, reply
    /// publish): after failed attempt `n` the base × 2^n, at most × 64.
    pub transient: RetryPolicy,
    /// A failed ledger read or takeover write for a `from_me` event: the base
    /// after every attempt.
    pub from_me_store: RetryPolicy,
}

impl Retries {
    /// The schedules for base delay `base` (`SWITCHYARD_RETRY_DELAY`).
    pub fn from_base(base: Duration) -> Self {
        Self {
            transient: RetryPolicy::exponential(
                base.saturating_mul(2),
                base.saturating_mul(TRANSIENT_CAP_FACTOR),
            ),
            from_me_store: RetryPolicy::fixed(base),
        }
    }

    /// The wait after failed attempt `attempt` of a transient failure.
    pub fn transient_delay(&self, attempt: u32) -> Duration {
        self.transient.retry_delay(attempt, None, 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_transient_failure_waits_the_base_times_two_to_the_attempt_at_most_64_times() {
        let retries = Retries::from_base(Duration::from_millis(500));
        let waits: Vec<Duration> = (1..=8).map(|a| retries.transient_delay(a)).collect();
        let ms = |n: u64| Duration::from_millis(n);
        assert_eq!(
            waits,
            [
                ms(1_000),
                ms(2_000),
                ms(4_000),
                ms(8_000),
                ms(16_000),
                ms(32_000),
                ms(32_000),
                ms(32_000)
            ]
        );
    }

    #[test]
    fn a_from_me_store_failure_waits_the_base_every_time() {
        let retries = Retries::from_base(Duration::from_millis(500));
        for attempt in [1, 3, 9] {
            assert_eq!(
                retries.from_me_store.retry_delay(attempt, None, 0),
                Duration::from_millis(500)
            );
        }
    }
}
