//! Refusal log lines, rate-limited per reason with the shared limiter
//! ([`switchyard_shared::log_limit`]): at most one line per reason per
//! interval, carrying how many refusals of that reason went unlogged since the
//! previous line. A flood of bad tokens is not a flood of log lines; the
//! `switchyard_ingest_rejected_total{reason}` counter stays exact. Keyed by
//! [`Reason`] only (never by a caller-chosen value such as the tenant in the
//! URL), so its memory is fixed.

use switchyard_shared::log_limit::LogLimit;

use crate::metrics::Reason;

/// At most one line per reason per this long.
pub const INTERVAL: std::time::Duration = switchyard_shared::log_limit::INTERVAL;

/// The limiter; one per ingest process, shared by all requests.
pub type RefusalLog = LogLimit<Reason>;

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;

    #[test]
    fn each_reason_has_its_own_budget() {
        let log = RefusalLog::new(Duration::from_secs(10));
        let now = Instant::now();
        for _ in 0..1000 {
            log.admit(Reason::BadToken, now);
        }

        let others: Vec<Option<u64>> = Reason::ALL
            .iter()
            .filter(|r| **r != Reason::BadToken)
            .map(|r| log.admit(*r, now))
            .collect();

        assert_eq!(others, vec![Some(0); Reason::ALL.len() - 1]);
    }
}
