//! The budget ledger: the shared budget's state and its one transition, free
//! of I/O. (Not the delivery ledger, which is `switchyard_shared::deliveries`.)
//!
//! The budget ledger is a sliding window of time slots: how many permits
//! were handed out in each recent slot, plus the fleet pause. A take succeeds
//! while the last `span_slots` slots together stay within the limit, where
//! the span is the provider's window plus guard slots (see [`Window`]). Every
//! replica applies this function to the same stored document under
//! compare-and-swap, so the document is the fleet's single source of truth.
//!
//! The window alone let a flood take the whole window's permits in its
//! first third (a slot may hold 5 % of the limit) and then stopped every
//! tenant until the window's oldest slots left it: with two senders and a
//! 6,000/min budget, a 250/s flood held the quiet tenants' replies 22 s at
//! the median and 40 s at worst. So takes are also *paced* ([`Pace`]), as a
//! token bucket kept in the same document: at most `pace_burst` at once,
//! and a steady rate at which a whole span holds `limit − pace_burst`, so
//! a sustained flood never fills the window and the fair share below it
//! always has a next permit to give.

use serde::{Deserialize, Serialize};

/// The stored document (JSON in one KV key).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BudgetLedger {
    /// `(slot start, permits)` in unix milliseconds, oldest first; only
    /// slots with permits, only within the span.
    #[serde(default)]
    pub slots: Vec<(u64, u32)>,
    /// Unix milliseconds until which nobody may call the provider (a 429's
    /// Retry-After); 0 when not paused.
    #[serde(default)]
    pub paused_until_ms: u64,
    /// The pace's theoretical arrival time (unix microseconds): permits are
    /// owed until then ([`Pace`]); 0 when nothing is owed.
    #[serde(default)]
    pub pace_tat_us: u64,
}

/// The budget's shape, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Permits per provider window.
    pub limit: u32,
    /// Slot length.
    pub slot_ms: u64,
    /// Slots whose permits count against the limit: the window's slots plus
    /// guard slots that absorb slot granularity, lease grace and clock skew.
    pub span_slots: u64,
    /// Most permits handed to one replica per take, so none hoards.
    pub chunk: u32,
    /// Most permits counted in one slot: spreads a burst over several slots,
    /// so that a slot the guard did not cover (more skew than planned) can
    /// add at most this much to any span.
    pub max_per_slot: u32,
    /// How long after its slot ends a permit may still be used.
    pub grace_ms: u64,
    /// Permits a pace lets go at once ([`Pace`]); `None`: not paced.
    pub pace_burst: Option<u32>,
}

/// A token bucket over the ledger: `burst` permits at once, refilled at a
/// rate that fills a whole span with `limit − burst`, so the span never runs
/// out under a sustained demand and its guard slots are never what stops a
/// take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pace {
    interval_us: u64,
    burst: u32,
}

impl Pace {
    fn of(window: &Window) -> Option<Self> {
        let burst = window.pace_burst?.max(1);
        let steady = window.limit.checked_sub(burst).filter(|n| *n > 0)?;
        let span_us = window
            .span_slots
            .saturating_mul(window.slot_ms)
            .saturating_mul(1000);
        Some(Self {
            interval_us: span_us.div_ceil(u64::from(steady)).max(1),
            burst,
        })
    }

    /// Permits `claim` may take at `now_us` when `tat_us` is owed to.
    fn available(&self, tat_us: u64, now_us: u64, claim: Claim) -> u64 {
        let owed = tat_us.saturating_sub(now_us).div_ceil(self.interval_us);
        u64::from(self.burst)
            .saturating_sub(owed)
            .saturating_sub(self.kept(claim))
    }

    /// Permits the pace keeps back from `claim`.
    fn kept(&self, claim: Claim) -> u64 {
        match claim {
            Claim::Backlog if self.burst > 1 => 1,
            _ => 0,
        }
    }

    /// When `claim`'s next permit is there (unix milliseconds, rounded up).
    fn next_at_ms(&self, tat_us: u64, now_us: u64, claim: Claim) -> u64 {
        let holding = 1 + self.kept(claim);
        let slack =
            (u64::from(self.burst).saturating_sub(holding)).saturating_mul(self.interval_us);
        tat_us.saturating_sub(slack).max(now_us).div_ceil(1000)
    }

    /// The arrival time after `count` more permits at `now_us`.
    fn spend(&self, tat_us: u64, now_us: u64, count: u32) -> u64 {
        tat_us
            .max(now_us)
            .saturating_add(u64::from(count).saturating_mul(self.interval_us))
    }
}

/// Whom a take is for: the pace keeps its last permit for a sparse tenant
/// (one back after a round of the others, `crate::fair_share`), so a
/// replica whose quiet tenant needs one permit is not outrun by another
/// replica leasing for a flood.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Backlogged tenants: the pace's last permit stays (when its burst
    /// holds more than one).
    Backlog,
    /// A sparse tenant waits: every permit the pace holds.
    Sparse,
}

/// The answer to a take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// `count` permits, to be used before `expires_at_ms`.
    Granted { count: u32, expires_at_ms: u64 },
    /// No permit now: the span is full (the oldest slot leaves it at
    /// `retry_at_ms`) or the current slot is (the next one starts then).
    Exhausted { retry_at_ms: u64 },
    /// The fleet is paused until `until_ms`.
    Paused { until_ms: u64 },
}

impl BudgetLedger {
    /// Takes up to `want` permits at `now_ms` for backlogged tenants,
    /// recording them in the ledger.
    pub fn take(&mut self, window: &Window, now_ms: u64, want: u32) -> Take {
        self.take_for(window, now_ms, want, Claim::Backlog)
    }

    /// [`BudgetLedger::take`] for `claim`.
    pub fn take_for(&mut self, window: &Window, now_ms: u64, want: u32, claim: Claim) -> Take {
        if self.paused_until_ms > now_ms {
            return Take::Paused {
                until_ms: self.paused_until_ms,
            };
        }
        let current = self.current_slot(window, now_ms);
        self.prune(window, current);
        let used: u64 = self.slots.iter().map(|(_, n)| u64::from(*n)).sum();
        let room = u64::from(window.limit).saturating_sub(used);
        if room == 0 {
            let oldest = self.slots.first().map_or(current, |(start, _)| *start);
            return Take::Exhausted {
                retry_at_ms: oldest + window.span_slots * window.slot_ms,
            };
        }
        let in_slot = match self.slots.last() {
            Some((start, n)) if *start == current => u64::from(*n),
            _ => 0,
        };
        let slot_room = u64::from(window.max_per_slot).saturating_sub(in_slot);
        let now_us = now_ms.saturating_mul(1000);
        let pace = Pace::of(window);
        let paced_room = pace.map_or(u64::MAX, |p| p.available(self.pace_tat_us, now_us, claim));
        let count = u64::from(want.min(window.chunk))
            .min(room)
            .min(slot_room)
            .min(paced_room);
        if count == 0 {
            let next_slot = current + window.slot_ms;
            let retry_at_ms = match pace {
                Some(p) if paced_room == 0 => {
                    let paced = p.next_at_ms(self.pace_tat_us, now_us, claim);
                    if slot_room == 0 {
                        paced.max(next_slot)
                    } else {
                        paced
                    }
                }
                _ => next_slot,
            };
            return Take::Exhausted { retry_at_ms };
        }
        let count = u32::try_from(count).unwrap_or(u32::MAX);
        match self.slots.last_mut() {
            Some((start, n)) if *start == current => *n += count,
            _ => self.slots.push((current, count)),
        }
        if let Some(p) = pace {
            self.pace_tat_us = p.spend(self.pace_tat_us, now_us, count);
        }
        // Counted in slot `current`, usable until it ends plus grace; never
        // longer than one slot from our own clock, whatever another replica's
        // clock put in the ledger.
        let expires_at_ms =
            (current + window.slot_ms).min(now_ms + window.slot_ms) + window.grace_ms;
        Take::Granted {
            count,
            expires_at_ms,
        }
    }

    /// Pauses the fleet until `until_ms`; an earlier end never shortens a pause.
    pub fn pause_until(&mut self, until_ms: u64) {
        self.paused_until_ms = self.paused_until_ms.max(until_ms);
    }

    /// Permits counted in the span ending at `now_ms`.
    /// Counts `count` permits spent without a take (while the ledger could
    /// not be reached: [`super::local_share`]) in the current slot, so the
    /// rest of the window sees them. Unlike a take it cannot be refused: the
    /// calls were made.
    pub fn charge(&mut self, window: &Window, now_ms: u64, count: u32) {
        if count == 0 {
            return;
        }
        let current = self.current_slot(window, now_ms);
        self.prune(window, current);
        match self.slots.last_mut() {
            Some((start, n)) if *start == current => *n = n.saturating_add(count),
            _ => self.slots.push((current, count)),
        }
        if let Some(p) = Pace::of(window) {
            self.pace_tat_us = p.spend(self.pace_tat_us, now_ms.saturating_mul(1000), count);
        }
    }

    pub fn used(&self, window: &Window, now_ms: u64) -> u64 {
        let mut copy = self.clone();
        let current = copy.current_slot(window, now_ms);
        copy.prune(window, current);
        copy.slots.iter().map(|(_, n)| u64::from(*n)).sum()
    }

    /// The slot to count in: ours, or a later one another replica already
    /// uses, so slots only move forward and a late clock cannot reopen the past.
    fn current_slot(&self, window: &Window, now_ms: u64) -> u64 {
        let own = now_ms - now_ms % window.slot_ms;
        self.slots.last().map_or(own, |(start, _)| own.max(*start))
    }

    fn prune(&mut self, window: &Window, current: u64) {
        let span = window.span_slots * window.slot_ms;
        // A slot counts while current - start < span.
        self.slots
            .retain(|(start, n)| *n > 0 && current < start + span);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn window() -> Window {
        Window {
            limit: 10,
            slot_ms: 1000,
            span_slots: 62,
            chunk: 4,
            max_per_slot: 100,
            grace_ms: 500,
            pace_burst: None,
        }
    }

    fn granted(take: Take) -> u32 {
        match take {
            Take::Granted { count, .. } => count,
            other => panic!("expected a grant, got {other:?}"),
        }
    }

    #[test]
    fn takes_are_chunked_and_stop_at_the_limit() {
        let w = window();
        let mut ledger = BudgetLedger::default();
        assert_eq!(granted(ledger.take(&w, 5_000, 100)), 4);
        assert_eq!(granted(ledger.take(&w, 5_100, 1)), 1);
        assert_eq!(granted(ledger.take(&w, 5_200, 4)), 4);
        assert_eq!(granted(ledger.take(&w, 6_000, 4)), 1);
        assert_eq!(
            ledger.take(&w, 6_100, 1),
            Take::Exhausted {
                retry_at_ms: 5_000 + 62_000
            }
        );
        assert_eq!(ledger.used(&w, 6_100), 10);
    }

    #[test]
    fn permits_come_back_when_their_slot_leaves_the_span() {
        let w = window();
        let mut ledger = BudgetLedger::default();
        for _ in 0..3 {
            ledger.take(&w, 0, 4);
        }
        assert_eq!(
            ledger.take(&w, 61_999, 1),
            Take::Exhausted {
                retry_at_ms: 62_000
            }
        );
        assert_eq!(granted(ledger.take(&w, 62_000, 4)), 4);
        assert_eq!(ledger.slots, vec![(62_000, 4)]);
    }

    #[test]
    fn a_full_slot_sends_the_next_taker_to_the_next_slot() {
        let w = Window {
            max_per_slot: 5,
            ..window()
        };
        let mut ledger = BudgetLedger::default();
        assert_eq!(granted(ledger.take(&w, 5_000, 4)), 4);
        assert_eq!(granted(ledger.take(&w, 5_100, 4)), 1);
        assert_eq!(
            ledger.take(&w, 5_200, 4),
            Take::Exhausted { retry_at_ms: 6_000 }
        );
        assert_eq!(granted(ledger.take(&w, 6_000, 4)), 4);
    }

    #[test]
    fn a_lease_expires_at_the_end_of_its_slot_plus_grace() {
        let w = window();
        let mut ledger = BudgetLedger::default();
        assert_eq!(
            ledger.take(&w, 5_300, 1),
            Take::Granted {
                count: 1,
                expires_at_ms: 6_500
            }
        );
    }

    #[test]
    fn a_late_clock_counts_in_the_latest_slot_and_gets_a_short_lease() {
        let w = window();
        let mut ledger = BudgetLedger::default();
        ledger.take(&w, 9_000, 1);
        // This replica's clock is 2 s behind.
        assert_eq!(
            ledger.take(&w, 7_200, 1),
            Take::Granted {
                count: 1,
                expires_at_ms: 8_700
            }
        );
        assert_eq!(ledger.slots, vec![(9_000, 2)]);
    }

    #[test]
    fn a_pause_stops_takes_and_only_extends() {
        let w = window();
        let mut ledger = BudgetLedger::default();
        ledger.pause_until(30_000);
        ledger.pause_until(20_000);
        assert_eq!(
            ledger.take(&w, 10_000, 1),
            Take::Paused { until_ms: 30_000 }
        );
        assert_eq!(granted(ledger.take(&w, 30_000, 1)), 1);
    }

    #[test]
    fn no_span_of_slots_ever_holds_more_than_the_limit() {
        let w = Window {
            limit: 50,
            slot_ms: 100,
            span_slots: 12,
            chunk: 3,
            max_per_slot: 7,
            grace_ms: 50,
            pace_burst: None,
        };
        let mut ledger = BudgetLedger::default();
        let mut log: Vec<(u64, u32)> = Vec::new();
        // A deterministic, irregular walk of instants and demands.
        let mut now = 1_000_000u64;
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            now += x % 37;
            if let Take::Granted { count, .. } = ledger.take(&w, now, 1 + (x % 5) as u32) {
                log.push((now - now % w.slot_ms, count));
            }
        }
        let span = w.span_slots * w.slot_ms;
        for (i, (start, _)) in log.iter().enumerate() {
            let in_span: u32 = log[i..]
                .iter()
                .take_while(|(s, _)| *s < start + span)
                .map(|(_, n)| n)
                .sum();
            assert!(
                in_span <= w.limit,
                "{in_span} permits in the span from {start}"
            );
        }
        let total: u32 = log.iter().map(|(_, n)| n).sum();
        let elapsed_spans = (now - 1_000_000) as f64 / span as f64;
        assert!(
            f64::from(total) >= 0.95 * elapsed_spans * f64::from(w.limit),
            "{total}"
        );
    }

    /// The worst case for clock skew, played deliberately: a slow replica
    /// takes a full slot and uses it at its lease's last instant, the window
    /// fills up, and a fast replica takes the next slot as early as its
    /// clock allows and uses it at once. Returns the most uses in any
    /// true-time minute.
    fn skew_adversary(skew_ms: u64, max_per_slot: u32) -> usize {
        let w = Window {
            limit: 120,
            slot_ms: 1000,
            span_slots: 62,
            chunk: 200,
            max_per_slot,
            grace_ms: 500,
            pace_burst: None,
        };
        let mut ledger = BudgetLedger::default();
        let mut uses = Vec::new();
        // The slow replica's clock reads `skew_ms` behind true time.
        let true_at = 100_900;
        let Take::Granted {
            count,
            expires_at_ms,
        } = ledger.take(&w, true_at - skew_ms, max_per_slot)
        else {
            panic!("the first take is granted");
        };
        uses.extend(std::iter::repeat_n(
            expires_at_ms + skew_ms - 1,
            count as usize,
        ));
        // A replica with a true clock fills the rest of the window.
        let mut t = 102_000;
        while let Take::Granted { count, .. } = ledger.take(&w, t, max_per_slot) {
            uses.extend(std::iter::repeat_n(t, count as usize));
            t += 1000;
        }
        // The fast replica's clock reaches the slot after the span first.
        let reopens = 100_000 + w.span_slots * w.slot_ms;
        let true_at = reopens - skew_ms;
        if let Take::Granted { count, .. } = ledger.take(&w, reopens, max_per_slot) {
            uses.extend(std::iter::repeat_n(true_at, count as usize));
        }
        uses.sort_unstable();
        let mut lo = 0;
        let mut busiest = 0;
        for hi in 0..uses.len() {
            while uses[hi] - uses[lo] >= 60_000 {
                lo += 1;
            }
            busiest = busiest.max(hi - lo + 1);
        }
        busiest
    }

    #[test]
    fn skew_within_a_quarter_slot_never_overshoots() {
        assert_eq!(skew_adversary(250, 6), 120);
        assert_eq!(skew_adversary(250, 120), 120);
    }

    #[test]
    fn skew_beyond_the_guard_overshoots_by_at_most_one_slot_cap() {
        // 5 % of the limit per slot by default: +6 on 120.
        assert_eq!(skew_adversary(400, 6), 126);
        // Without the cap the same skew could double the rate.
        assert_eq!(skew_adversary(400, 120), 240);
    }

    /// The production shape at 6,000 a minute, paced.
    fn paced() -> Window {
        Window {
            limit: 6_000,
            slot_ms: 1000,
            span_slots: 62,
            chunk: 4,
            max_per_slot: 300,
            grace_ms: 500,
            pace_burst: Some(120),
        }
    }

    #[test]
    fn a_sustained_flood_is_paced_and_never_fills_the_span() {
        let w = paced();
        let mut ledger = BudgetLedger::default();
        let mut grants: Vec<u64> = Vec::new();
        let mut longest_wait = 0;
        // Someone asks for a chunk every millisecond for 200 s.
        for now in 1_000_000..1_200_000u64 {
            match ledger.take(&w, now, 4) {
                Take::Granted { count, .. } => {
                    grants.extend(std::iter::repeat_n(now, count as usize));
                }
                Take::Exhausted { retry_at_ms } => {
                    longest_wait = longest_wait.max(retry_at_ms - now);
                }
                other => panic!("{other:?}"),
            }
        }
        // Never told to wait more than about one pace interval (10.5 ms):
        // the span never ran out.
        assert!(longest_wait <= 12, "told to wait {longest_wait} ms");
        let mut busiest = 0;
        let mut lo = 0;
        for hi in 0..grants.len() {
            while grants[hi] - grants[lo] >= 60_000 {
                lo += 1;
            }
            busiest = busiest.max(hi - lo + 1);
        }
        assert!(busiest <= 6_000, "{busiest} in one minute");
        // (6,000 − 120) per 62 s span, plus the first burst: 98 % of what
        // the span alone would give a sustained flood.
        let per_span = grants.len() as f64 / (200.0 / 62.0);
        assert!(per_span >= 0.97 * 6_000.0, "{per_span:.0} per span");
    }

    #[test]
    fn a_burst_goes_at_once_and_then_a_permit_every_interval() {
        let w = paced();
        let mut ledger = BudgetLedger::default();
        let mut burst = 0;
        while let Take::Granted { count, .. } = ledger.take(&w, 5_000, 4) {
            burst += count;
        }
        assert_eq!(
            burst, 119,
            "the pace's burst at once, but the sparse reserve"
        );
        // 62 s / 5,880 = 10.54 ms a permit.
        assert_eq!(
            ledger.take(&w, 5_000, 4),
            Take::Exhausted { retry_at_ms: 5_011 }
        );
        assert_eq!(granted(ledger.take(&w, 5_011, 4)), 1);
        assert_eq!(granted(ledger.take(&w, 5_032, 4)), 2);
    }

    #[test]
    fn the_paces_last_permit_is_kept_for_a_sparse_claim() {
        let w = paced();
        let mut ledger = BudgetLedger::default();
        // A flood leases everything the pace lets backlogged tenants have.
        let mut now = 5_000;
        for _ in 0..1_000 {
            if let Take::Exhausted { retry_at_ms } = ledger.take(&w, now, 4) {
                now = retry_at_ms;
            }
        }
        assert!(matches!(ledger.take(&w, now, 4), Take::Exhausted { .. }));
        // A replica whose quiet tenant got a reply is not outrun by it.
        assert_eq!(granted(ledger.take_for(&w, now, 1, Claim::Sparse)), 1);
        // The reserve refills before the flood goes on: one interval later.
        let Take::Exhausted { retry_at_ms } = ledger.take(&w, now, 4) else {
            panic!("the reserve is refilled first");
        };
        assert!(
            (now + 10..=now + 22).contains(&retry_at_ms),
            "{retry_at_ms} from {now}"
        );
    }

    #[test]
    fn permits_charged_after_an_outage_count_against_the_pace_too() {
        let w = paced();
        let mut ledger = BudgetLedger::default();
        ledger.charge(&w, 5_000, 120);
        assert!(matches!(ledger.take(&w, 5_000, 1), Take::Exhausted { .. }));
    }

    #[test]
    fn nothing_is_paced_when_the_burst_is_the_whole_limit() {
        let w = Window {
            pace_burst: Some(10),
            ..window()
        };
        let mut ledger = BudgetLedger::default();
        assert_eq!(granted(ledger.take(&w, 5_000, 4)), 4);
        assert_eq!(granted(ledger.take(&w, 5_000, 4)), 4);
        assert_eq!(ledger.pace_tat_us, 0);
    }

    #[test]
    fn the_document_survives_a_round_trip_and_tolerates_missing_fields() {
        let ledger = BudgetLedger {
            slots: vec![(1_000, 3)],
            paused_until_ms: 7,
            pace_tat_us: 9_000,
        };
        let json = serde_json::to_vec(&ledger).unwrap();
        assert_eq!(
            serde_json::from_slice::<BudgetLedger>(&json).unwrap(),
            ledger
        );
        assert_eq!(
            serde_json::from_slice::<BudgetLedger>(b"{}").unwrap(),
            BudgetLedger::default()
        );
    }
}
