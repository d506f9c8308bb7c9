//! The router's in-place retry schedules, all of the shared
//! [`RetryPolicy`] type and built from one setting
//! (`SWITCHYARD_RETRY_DELAY`). The attempt limit is the runner's
//! (`SWITCHYARD_MAX_DELIVERIES`), and applies to the message's own transient
//! failures only: these only say how long to wait.

use std::time::Duration;

use switchyard_shared::retry::RetryPolicy;

/// Longest growth of the transient schedule: the base × 2^6.
const TRANSIENT_CAP_FACTOR: u32 = 64;

/// Longest backpressure wait before jitter (jitter adds up to as much
/// again): a held step tries again at most 2 s after the infrastructure
/// came back, so replies flow again well within 10 s of a fault's end.
pub const BACKPRESSURE_CAP: Duration = Duration::from_secs(1);

/// How long a step waits before it is tried again in place.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Retries {
    /// A transient failure of a step (tenant lookup, database, bot, reply
    /// publish): after failed attempt `n` the base × 2^n, at most × 64.
    pub transient: RetryPolicy,
    /// Trouble in our own infrastructure (see [`crate::backpressure`]):
    /// after the `n`-th consecutive time a turn met it, the base (at most
    /// [`BACKPRESSURE_CAP`]) × 2^(n-1), capped at [`BACKPRESSURE_CAP`], plus
    /// up to as much again of jitter seeded by the message id (so the held
    /// turns of a whole process do not all knock at once). Never limited.
    pub backpressure: RetryPolicy,
}

impl Retries {
    /// The schedules for base delay `base` (`SWITCHYARD_RETRY_DELAY`).
    pub fn from_base(base: Duration) -> Self {
        Self {
            transient: RetryPolicy::exponential(
                base.saturating_mul(2),
                base.saturating_mul(TRANSIENT_CAP_FACTOR),
            ),
            backpressure: RetryPolicy {
                jitter: true,
                ..RetryPolicy::exponential(base.min(BACKPRESSURE_CAP), BACKPRESSURE_CAP)
            },
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
    fn backpressure_grows_from_the_base_and_never_waits_more_than_two_seconds() {
        let retries = Retries::from_base(Duration::from_millis(100));
        let policy = retries.backpressure;
        for seed in 0..20 {
            let first = policy.retry_delay(1, None, seed);
            assert!(
                first >= Duration::from_millis(100) && first <= Duration::from_millis(200),
                "{first:?}"
            );
            for stall in [4, 5, 10, 1_000] {
                let wait = policy.retry_delay(stall, None, seed);
                assert!(
                    wait >= Duration::from_millis(800) && wait <= Duration::from_secs(2),
                    "stall {stall}: {wait:?}"
                );
            }
        }
        // A base above the cap starts at the cap.
        let slow = Retries::from_base(Duration::from_secs(30)).backpressure;
        assert!(slow.retry_delay(1, None, 7) <= Duration::from_secs(2));
    }

    #[test]
    fn backpressure_never_gives_up() {
        use switchyard_shared::retry::{AttemptContext, NextAttempt};
        let policy = Retries::from_base(Duration::from_millis(500)).backpressure;
        let after_a_day = AttemptContext {
            attempt: 100_000,
            age: Duration::from_secs(86_400),
            jitter_seed: 3,
        };
        assert!(matches!(
            policy.after_failure(after_a_day, None),
            NextAttempt::Retry { .. }
        ));
    }
}
