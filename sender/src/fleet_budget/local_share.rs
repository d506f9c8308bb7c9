//! What a replica may send while the shared budget cannot be reached.
//!
//! The shared ledger lives in one KV key; when the NATS node leading its
//! bucket is lost, nobody can lease until NATS elects a new leader (4–9 s,
//! longer under load), and every sender stopped for that long (issue 16's
//! chaos runs). Meanwhile each replica may use its share of the fleet's
//! steady rate, `limit / window`, where its share is the part of the
//! partitions it reads (the replicas' shares add up to one, so the fleet
//! together keeps the steady rate). What it spends is charged to the ledger
//! as soon as the ledger answers again ([`super::FleetBudget::acquire`]),
//! so the rest of the window accounts for it.
//!
//! The bound this gives up: the calls made during an outage of `d` are not
//! refused when the window was already full, so the provider may see up to
//! `limit × d / window` more calls in one window than the limit (a 10 s
//! outage under a full window: a sixth). That is the price of sending on
//! through a NATS election; a 429 from the provider still pauses as usual.

use std::time::Duration;

use tokio::time::Instant;

/// The fleet's steady rate and the shape of a local lease.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Steady {
    /// Calls per `window` for the whole fleet.
    pub limit: u32,
    pub window: Duration,
    /// Most permits held at once (the shared lease's chunk).
    pub chunk: u32,
    /// How long a granted permit may be used.
    pub lease: Duration,
}

/// Permits granted locally and not yet charged to the shared ledger.
#[derive(Debug, Default)]
pub struct LocalShare {
    /// Permits earned and not yet granted (a token bucket, at most one chunk).
    credit: f64,
    last: Option<Instant>,
    /// Granted locally and not yet charged to the ledger.
    unsettled: u32,
}

/// The answer of [`LocalShare::take`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LocalTake {
    Granted {
        count: u32,
        expires_at: Instant,
    },
    /// Nothing now; the next permit is earned at `retry_at`.
    Wait {
        retry_at: Instant,
    },
}

impl LocalShare {
    /// Up to `want` permits at `share` (0..=1) of the fleet's steady rate.
    pub fn take(&mut self, steady: &Steady, share: f64, want: u32, now: Instant) -> LocalTake {
        let window_ms = (steady.window.as_secs_f64() * 1000.0).max(1.0);
        let per_ms = f64::from(steady.limit) * share.clamp(0.0, 1.0) / window_ms;
        let cap = f64::from(steady.chunk.max(1));
        // A fresh outage starts with one permit's worth, not a hoard.
        let elapsed_ms = self.last.map_or(0.0, |last| {
            now.saturating_duration_since(last).as_secs_f64() * 1000.0
        });
        self.credit = (self.credit + elapsed_ms * per_ms).min(cap);
        if self.last.is_none() && per_ms > 0.0 {
            self.credit = self.credit.max(1.0);
        }
        self.last = Some(now);
        let count = (self.credit.floor() as u32).min(want.max(1));
        if count == 0 {
            let wait_ms = if per_ms > 0.0 {
                ((1.0 - self.credit) / per_ms).ceil().max(1.0)
            } else {
                steady.lease.as_secs_f64() * 1000.0
            };
            return LocalTake::Wait {
                retry_at: now + Duration::from_millis(wait_ms as u64),
            };
        }
        self.credit -= f64::from(count);
        self.unsettled = self.unsettled.saturating_add(count);
        LocalTake::Granted {
            count,
            expires_at: now + steady.lease,
        }
    }

    /// Whether a local lease was taken since the last settle.
    pub fn in_outage(&self) -> bool {
        self.last.is_some()
    }

    /// The permits to charge to the ledger now that it answers; the outage
    /// is over, so the next one starts afresh.
    pub fn settle(&mut self) -> u32 {
        self.credit = 0.0;
        self.last = None;
        std::mem::take(&mut self.unsettled)
    }

    /// Gives back permits [`LocalShare::settle`] handed out whose charge
    /// could not be written.
    pub fn unsettle(&mut self, count: u32) {
        self.unsettled = self.unsettled.saturating_add(count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 120 a minute (the provider's default).
    fn window() -> Steady {
        Steady {
            limit: 120,
            window: Duration::from_secs(60),
            chunk: 4,
            lease: Duration::from_millis(1500),
        }
    }

    fn granted(take: LocalTake) -> u32 {
        match take {
            LocalTake::Granted { count, .. } => count,
            LocalTake::Wait { .. } => 0,
        }
    }

    #[test]
    fn a_replica_with_half_the_partitions_gets_half_the_steady_rate() {
        let mut local = LocalShare::default();
        let start = Instant::now();
        let mut total = 0;
        // 10 s of asking every 100 ms for as much as a chunk.
        for step in 0..=100 {
            let now = start + Duration::from_millis(step * 100);
            total += granted(local.take(&window(), 0.5, 4, now));
        }
        // 120/min × ½ × 10 s = 10, plus the one permit an outage starts with.
        assert!((10..=11).contains(&total), "{total}");
        assert_eq!(local.settle(), total);
        assert_eq!(local.settle(), 0, "settled once");
    }

    #[test]
    fn a_replica_that_reads_no_partition_sends_nothing_alone() {
        let mut local = LocalShare::default();
        let now = Instant::now();
        assert_eq!(granted(local.take(&window(), 0.0, 4, now)), 0);
        assert_eq!(
            granted(local.take(&window(), 0.0, 4, now + Duration::from_secs(30))),
            0
        );
    }

    #[test]
    fn credit_never_grows_past_one_chunk_and_a_wait_says_when() {
        let mut local = LocalShare::default();
        let start = Instant::now();
        assert_eq!(granted(local.take(&window(), 1.0, 100, start)), 1);
        let later = start + Duration::from_secs(60);
        assert_eq!(
            granted(local.take(&window(), 1.0, 100, later)),
            4,
            "one chunk"
        );
        match local.take(&window(), 1.0, 1, later) {
            LocalTake::Wait { retry_at } => {
                assert_eq!(retry_at, later + Duration::from_millis(500), "2 a second");
            }
            other => panic!("expected a wait, got {other:?}"),
        }
    }
}
