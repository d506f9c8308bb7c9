//! The health reads (`GET /{phone_number_id}?fields=…`) as a test sees them:
//! how many were answered, how many were under way at once at most, and a
//! delay before each answer so that reads made together overlap (a test of
//! how many a sender runs at once needs them to last). Not Meta's behaviour:
//! a control of the simulator, like its faults.

use std::{
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
    time::Duration,
};

#[derive(Debug, Default)]
pub(crate) struct HealthReads {
    delay_ms: AtomicU64,
    in_flight: AtomicUsize,
    most_in_flight: AtomicUsize,
    answered: AtomicU64,
}

/// One read under way; counted out when dropped.
pub(crate) struct UnderWay<'a>(&'a HealthReads);

impl HealthReads {
    /// Counts a read in; its answer waits [`HealthReads::delay`].
    pub(crate) fn begin(&self) -> UnderWay<'_> {
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.most_in_flight.fetch_max(now, Ordering::SeqCst);
        UnderWay(self)
    }

    pub(crate) fn delay(&self) -> Duration {
        Duration::from_millis(self.delay_ms.load(Ordering::Relaxed))
    }

    pub(crate) fn set_delay(&self, delay: Duration) {
        let ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
        self.delay_ms.store(ms, Ordering::Relaxed);
    }

    /// Reads answered so far, and the most under way at once.
    pub(crate) fn seen(&self) -> (u64, usize) {
        (
            self.answered.load(Ordering::SeqCst),
            self.most_in_flight.load(Ordering::SeqCst),
        )
    }
}

impl Drop for UnderWay<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
        self.0.answered.fetch_add(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_most_under_way_at_once_is_kept_after_they_end() {
        let reads = HealthReads::default();
        let a = reads.begin();
        let b = reads.begin();
        drop(a);
        let c = reads.begin();
        assert_eq!(reads.seen(), (1, 2));
        drop(b);
        drop(c);
        assert_eq!(reads.seen(), (3, 2));
    }
}
