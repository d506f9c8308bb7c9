//! The warm-up of a newly paired number: for its first days a linked-device
//! number sends at a fraction of its tenant's limits, rising linearly to the
//! full limits, because a new number that sends like a bot is what WhatsApp
//! restricts first.
//!
//! The warm-up works through the scheduler's existing gates: it lowers the
//! tenant's bucket (`sends_per_minute`, `send_burst`) and widens its pacing
//! gap (by the same factor, and to at least a configured floor). It is a pure
//! function of the tenant's `paired_at` and the instant (unix seconds), so
//! the send loop re-applies it at every tenant refresh and tests drive it
//! with made-up instants. `paired_at` is NULL for a number never seen
//! pairing: no warm-up (see `docs/whatsapp.md` for how it gets set).

use std::time::Duration;

use switchyard_shared::tenants::SendLimits;

/// How a new number warms up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmUp {
    /// `SWITCHYARD_WARMUP_DAYS` (default 7): how long it lasts; 0 turns it off.
    pub days: u32,
    /// `SWITCHYARD_WARMUP_START_PERCENT` (default 25): the share of its limits
    /// a number gets right after pairing (1–100).
    pub start_percent: u32,
    /// `SWITCHYARD_WARMUP_MIN_GAP` (default 0: none): the least pacing gap
    /// during the warm-up, whatever the tenant's own gap.
    pub min_gap: Duration,
}

impl Default for WarmUp {
    fn default() -> Self {
        Self {
            days: 7,
            start_percent: 25,
            min_gap: Duration::ZERO,
        }
    }
}

impl WarmUp {
    /// The share (percent) of its limits a number paired at `paired_at`
    /// may use at `now` (both unix seconds): `start_percent` at pairing,
    /// linearly up to 100 at `days`.
    pub fn percent(&self, paired_at: Option<i64>, now: i64) -> u32 {
        let Some(paired_at) = paired_at else {
            return 100;
        };
        let span = i64::from(self.days) * 86_400;
        let age = now.saturating_sub(paired_at).max(0);
        if span == 0 || age >= span {
            return 100;
        }
        let start = i64::from(self.start_percent.clamp(1, 100));
        let percent = start + (100 - start) * age / span;
        u32::try_from(percent.clamp(1, 100)).unwrap_or(100)
    }

    /// The limits and pacing gap to hand to the scheduler at `now`.
    pub fn apply(
        &self,
        limits: SendLimits,
        gap: Duration,
        paired_at: Option<i64>,
        now: i64,
    ) -> (SendLimits, Duration) {
        let percent = self.percent(paired_at, now);
        if percent >= 100 {
            return (limits, gap);
        }
        let scale =
            |v: u32| u32::try_from((u64::from(v) * u64::from(percent) / 100).max(1)).unwrap_or(v);
        let warmed = SendLimits {
            sends_per_minute: scale(limits.sends_per_minute),
            send_burst: scale(limits.send_burst),
            ..limits
        };
        let widened = gap.saturating_mul(100) / percent;
        (warmed, widened.max(self.min_gap))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400;
    const PAIRED: i64 = 1_700_000_000;

    fn limits() -> SendLimits {
        SendLimits {
            weight: 3,
            sends_per_minute: 60,
            send_burst: 8,
            max_in_flight: 4,
        }
    }

    #[test]
    fn a_number_never_seen_pairing_is_not_warmed_up() {
        let w = WarmUp::default();
        let gap = Duration::from_millis(1000);
        assert_eq!(w.apply(limits(), gap, None, PAIRED), (limits(), gap));
    }

    #[test]
    fn a_new_number_starts_at_the_start_share_and_rises_linearly_to_full_limits() {
        let w = WarmUp::default();
        assert_eq!(w.percent(Some(PAIRED), PAIRED), 25);
        assert_eq!(w.percent(Some(PAIRED), PAIRED + 7 * DAY / 2), 62);
        assert_eq!(w.percent(Some(PAIRED), PAIRED + 7 * DAY - 1), 99);
        assert_eq!(w.percent(Some(PAIRED), PAIRED + 7 * DAY), 100);
        assert_eq!(w.percent(Some(PAIRED), PAIRED + 300 * DAY), 100);
        // A clock behind the pairing instant reads as "just paired".
        assert_eq!(w.percent(Some(PAIRED), PAIRED - DAY), 25);
    }

    #[test]
    fn during_the_warm_up_the_bucket_shrinks_and_the_gap_widens_by_the_same_factor() {
        let w = WarmUp::default();
        let (l, gap) = w.apply(limits(), Duration::from_millis(1000), Some(PAIRED), PAIRED);
        assert_eq!((l.sends_per_minute, l.send_burst), (15, 2));
        assert_eq!(
            (l.weight, l.max_in_flight),
            (3, 4),
            "share and in-flight cap unchanged"
        );
        assert_eq!(gap, Duration::from_millis(4000));
    }

    #[test]
    fn the_warm_up_gap_floor_applies_even_to_an_unpaced_tenant_and_only_while_warming() {
        let w = WarmUp {
            min_gap: Duration::from_secs(2),
            ..WarmUp::default()
        };
        let (_, gap) = w.apply(limits(), Duration::ZERO, Some(PAIRED), PAIRED + DAY);
        assert_eq!(gap, Duration::from_secs(2));
        let (_, gap) = w.apply(limits(), Duration::ZERO, Some(PAIRED), PAIRED + 8 * DAY);
        assert_eq!(gap, Duration::ZERO);
    }

    #[test]
    fn zero_days_turns_the_warm_up_off_and_tiny_limits_never_reach_zero() {
        let off = WarmUp {
            days: 0,
            ..WarmUp::default()
        };
        assert_eq!(off.percent(Some(PAIRED), PAIRED), 100);
        let tiny = SendLimits {
            sends_per_minute: 1,
            send_burst: 1,
            ..limits()
        };
        let (l, _) = WarmUp::default().apply(tiny, Duration::ZERO, Some(PAIRED), PAIRED);
        assert_eq!((l.sends_per_minute, l.send_burst), (1, 1));
    }
}
