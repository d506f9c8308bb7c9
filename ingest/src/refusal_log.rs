//! Refusal log lines, rate-limited per reason: at most one line per reason
//! per interval, carrying how many refusals of that reason went unlogged
//! since the previous line. Refusals come from outside: a flood of bad tokens
//! must not become a flood of log lines (disk, log pipeline, the signal of
//! every other line). The `switchyard_ingest_rejected_total{reason}` counter
//! stays exact: it is incremented for every refusal, whatever this decides.
//!
//! Hand-written because what exists does something else: `tracing` has no
//! limiter, and `tracing-throttle` is a subscriber-wide filter that would
//! change every service's logging (signatures of message and fields) and
//! pull in its own dependencies for what is, here, one call site and a closed
//! set of seven reasons. Keyed by [`Reason`] only (never by a caller-chosen
//! value such as the tenant in the URL), so its memory is fixed.

use std::{
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::metrics::Reason;

/// At most one line per reason per this long.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// The limiter; one per ingest process, shared by all requests.
#[derive(Debug)]
pub struct RefusalLog {
    interval: Duration,
    slots: Mutex<[Slot; Reason::ALL.len()]>,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    last_line: Option<Instant>,
    suppressed: u64,
}

impl Default for RefusalLog {
    fn default() -> Self {
        Self::new(INTERVAL)
    }
}

impl RefusalLog {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            slots: Mutex::new([Slot::default(); Reason::ALL.len()]),
        }
    }

    /// Whether a refusal of `reason` at `now` gets a line: `Some(n)` with the
    /// `n` refusals of that reason left unlogged since its previous line, or
    /// `None` (counted as one more of those).
    pub fn admit(&self, reason: Reason, now: Instant) -> Option<u64> {
        // A poisoned lock only means another request panicked mid-update of
        // two integers: the counts are still usable.
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = &mut slots[reason.index()];
        let due = slot
            .last_line
            .is_none_or(|last| now.saturating_duration_since(last) >= self.interval);
        if !due {
            slot.suppressed += 1;
            return None;
        }
        slot.last_line = Some(now);
        Some(std::mem::take(&mut slot.suppressed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_gets_one_line_per_interval_with_the_count_it_left_out() {
        let log = RefusalLog::new(Duration::from_secs(10));
        let start = Instant::now();

        // 100,000 refusals within 10 s, then one more after it.
        let lines: Vec<u64> = (0..100_000u64)
            .filter_map(|i| log.admit(Reason::BadToken, start + Duration::from_micros(i * 99)))
            .collect();
        let next = log.admit(Reason::BadToken, start + Duration::from_secs(10));

        assert_eq!(lines, [0], "the first refusal is logged, the rest counted");
        assert_eq!(
            next,
            Some(99_999),
            "the next line says how many were left out"
        );
    }

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

    #[test]
    fn every_reason_has_its_own_slot() {
        for (i, reason) in Reason::ALL.iter().enumerate() {
            assert_eq!(reason.index(), i, "{reason:?}");
        }
    }
}
