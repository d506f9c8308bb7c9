//! Repeated identical warnings, rate-limited in the log: at most one line per
//! key per interval, carrying how many of that key went unlogged since the
//! previous line. Warnings caused from outside (bad tokens, unknown
//! `customer_ref`s, a provider failing for a tenant) must not become a flood
//! of log lines (disk, log pipeline, the signal of every other line); their
//! counters stay exact, since callers count every occurrence whatever this
//! decides.
//!
//! Hand-written because what exists does something else: `tracing` has no
//! limiter, and `tracing-throttle` is a subscriber-wide filter that would
//! change every service's logging. Keys should come from a closed set (a
//! reason, a class); should more than [`MAX_KEYS`] show up, the extra ones
//! share one budget, so memory stays fixed.

use std::{
    collections::HashMap,
    hash::Hash,
    sync::Mutex,
    time::{Duration, Instant},
};

/// At most one line per key per this long, unless told otherwise.
pub const INTERVAL: Duration = Duration::from_secs(10);

/// Keys with a budget of their own; the rest share one.
pub const MAX_KEYS: usize = 1024;

/// The limiter; one per call site and process, shared by every task.
#[derive(Debug)]
pub struct LogLimit<K> {
    interval: Duration,
    slots: Mutex<Slots<K>>,
}

#[derive(Debug)]
struct Slots<K> {
    by_key: HashMap<K, Slot>,
    overflow: Slot,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    last_line: Option<Instant>,
    suppressed: u64,
}

impl<K: Eq + Hash> Default for LogLimit<K> {
    fn default() -> Self {
        Self::new(INTERVAL)
    }
}

impl<K: Eq + Hash> LogLimit<K> {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            slots: Mutex::new(Slots {
                by_key: HashMap::new(),
                overflow: Slot::default(),
            }),
        }
    }

    /// Whether an occurrence of `key` at `now` gets a line: `Some(n)` with
    /// the `n` occurrences left unlogged since its previous line, or `None`
    /// (counted as one more of those).
    pub fn admit(&self, key: K, now: Instant) -> Option<u64> {
        // A poisoned lock only means another task panicked mid-update of
        // two integers: the counts are still usable.
        let mut slots = self
            .slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let Slots { by_key, overflow } = &mut *slots;
        let slot = if by_key.len() < MAX_KEYS || by_key.contains_key(&key) {
            by_key.entry(key).or_default()
        } else {
            overflow
        };
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
        let log = LogLimit::new(Duration::from_secs(10));
        let start = Instant::now();

        // 100,000 occurrences within 10 s, then one more after it.
        let lines: Vec<u64> = (0..100_000u64)
            .filter_map(|i| log.admit("bad_token", start + Duration::from_micros(i * 99)))
            .collect();
        let next = log.admit("bad_token", start + Duration::from_secs(10));

        assert_eq!(lines, [0], "the first is logged, the rest counted");
        assert_eq!(
            next,
            Some(99_999),
            "the next line says how many were left out"
        );
    }

    #[test]
    fn each_key_has_its_own_budget() {
        let log = LogLimit::new(Duration::from_secs(10));
        let now = Instant::now();
        for _ in 0..1000 {
            log.admit("bad_token", now);
        }

        assert_eq!(log.admit("unknown_tenant", now), Some(0));
    }

    #[test]
    fn keys_beyond_the_cap_share_one_budget() {
        let log = LogLimit::new(Duration::from_secs(10));
        let now = Instant::now();
        for key in 0..MAX_KEYS {
            assert_eq!(log.admit(key, now), Some(0));
        }

        let extra: Vec<Option<u64>> = (MAX_KEYS..MAX_KEYS + 3)
            .map(|k| log.admit(k, now))
            .collect();

        assert_eq!(extra, [Some(0), None, None]);
    }
}
