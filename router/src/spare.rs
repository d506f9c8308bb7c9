//! Spare capacity for backlogged tenants (issue 20, "single-tenant drain").
//!
//! A tenant whose lane spilled always runs `SWITCHYARD_BACKLOG_CHATS_IN_FLIGHT`
//! chats at once (default 1): its floor, so a flood cannot take the machine
//! from the tenants that keep up. With `SWITCHYARD_BACKLOG_SPARE_CHATS` above
//! 0 (off by default: measured, the neighbours' p99 sits at about 1.5× their
//! figure without the backlog, against 1.25× at the floor; see
//! docs/benchmarks/router.md), past the floor it may run more, up to
//! `SWITCHYARD_CHATS_IN_FLIGHT`, each extra chat holding a permit of this
//! replica's spare pool, whose size follows what the tenants that keep up
//! feel. The extra chats pay off only with `SWITCHYARD_DB_STEP_LINGER=0ms`
//! (so turning them on makes it the default: `Settings::step_linger`): at
//! 1 ms each turn's read and record wait for company, and a backlog drains
//! no faster with four chats than with one (~1,250 msg/s against 1,970 in
//! the router benchmark). Every [`ADJUST_EVERY`] the pool
//! looks at two things of that interval:
//! - the time every tenant's steps spent in PostgreSQL and JetStream (the
//!   `read`, `publish` and `record` phases; bot time is left out, a slow bot
//!   is its own tenant's business);
//! - the neighbours' wait: how long the messages read straight from the
//!   partitions (first deliveries, not a backlog's spilled copies) took from
//!   the server storing them to their tenant's worker taking them, which is
//!   where the CPU a drain takes from everyone shows (the server, the
//!   partition reader, the runtime's scheduling, all on the same cores).
//!
//! And, as TCP's congestion window does (additive increase, multiplicative
//! decrease):
//! - an interval in which no extra chat ran updates the references: what
//!   the steps and the waits take when backlogs run at their floor;
//! - an interval whose 90th percentiles both stayed within [`TOLERANCE`] of
//!   their references (plus [`SLACK`] for the steps, [`WAIT_SLACK`] for the
//!   waits) grows the pool by one if a backlogged chat asked for a permit
//!   and found none, and else shrinks it to the most permits that were in
//!   use (the pool follows demand, so a new backlog starts small);
//! - an interval above either halves the pool, and so does a step that met
//!   trouble in our infrastructure (a failed step is never timed).
//!
//! So a backlog drains as fast as the machine has room for, and gives the
//! room back once the tenants that keep up (their steps or their messages'
//! way to their workers) slow down: halved every interval (16 to 0 in about
//! a second), a lowered limit taking hold as running turns end. The
//! references are only refreshed when no extra chat ran, so a busier machine
//! shows as a slowdown until the pool has fallen to 0 and a clean interval
//! is seen again. The limit is per replica and its permits are not spread
//! evenly over the backlogged tenants (each is bounded by its own
//! `SWITCHYARD_CHATS_IN_FLIGHT`; a backlogged tenant with a slow bot keeps
//! its permits for its turns' length); the floor stays per tenant.
//!
//! Written here rather than taken from a crate: the adaptive limiters kept
//! on crates.io (`tower-acc`, `rate_limiter_aimd`) limit the requests whose
//! own latency they measure; here the limited work (a backlog's extra
//! chats) is judged by the latency it causes to everyone else.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use switchyard_shared::lanes::LaneMessage;

use crate::metrics as m;

/// How often the pool is resized.
pub const ADJUST_EVERY: Duration = Duration::from_millis(200);
/// Steps within this factor of the reference (plus [`SLACK`]) leave room.
pub const TOLERANCE: f64 = 1.25;
/// Absolute allowance over the reference: sub-millisecond steps jitter by
/// more than a quarter of themselves on a shared machine.
pub const SLACK: Duration = Duration::from_millis(1);
/// Absolute allowance over the neighbours' wait reference: their way to
/// the workers takes a millisecond or two, and the bound is on
/// their latency (1.5× at p99), so this is tighter than [`SLACK`].
pub const WAIT_SLACK: Duration = Duration::from_micros(500);
/// Step phases needed for a judgement (fewer: the interval is extended);
/// the waits are judged when there are as many of them, else left out.
pub const MIN_SAMPLES: usize = 20;

/// This replica's spare chats for backlogged tenants. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct SparePool {
    /// Whether any extra chat may ever run (`SWITCHYARD_BACKLOG_SPARE_CHATS` > 0).
    enabled: bool,
    state: Mutex<State>,
    /// Woken whenever a permit may have become available.
    room: Notify,
}

#[derive(Debug)]
struct State {
    controller: Controller,
    in_use: usize,
    /// The most extra chats running at once since the last adjustment.
    peak_in_use: usize,
    /// Whether a chat found the pool full since the last adjustment.
    wanted_more: bool,
    /// Step phase durations (seconds) since the last adjustment.
    samples: Vec<f64>,
    /// The neighbours' waits (seconds) since the last adjustment.
    waits: Vec<f64>,
}

/// An extra chat of a backlogged tenant; gives its place back when dropped.
#[derive(Debug)]
pub struct SparePermit {
    pool: Arc<SparePool>,
}

impl Drop for SparePermit {
    fn drop(&mut self) {
        {
            let mut state = self.pool.lock();
            state.in_use = state.in_use.saturating_sub(1);
            m::spare_chats(state.controller.limit, state.in_use);
        }
        // One place freed: one waiter (a waiter that gave up passes it on).
        self.pool.room.notify_one();
    }
}

impl SparePool {
    /// A pool of at most `max` extra chats (0: backlogged tenants stay at
    /// their floor), starting empty.
    pub fn new(max: usize) -> Arc<Self> {
        m::spare_chats(0, 0);
        Arc::new(Self {
            enabled: max > 0,
            state: Mutex::new(State {
                controller: Controller::new(max),
                in_use: 0,
                peak_in_use: 0,
                wanted_more: false,
                samples: Vec::new(),
                waits: Vec::new(),
            }),
            room: Notify::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is counts and samples: a panic elsewhere leaves it usable.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One step phase's time in the shared infrastructure.
    pub fn observe(&self, took: Duration) {
        if self.enabled {
            keep(&mut self.lock().samples, took);
        }
    }

    /// A message its tenant's worker just took: if it was read straight from
    /// its partition (a first delivery, not a spilled copy), how long it
    /// took from the server storing it to here. Reads no clock when the pool
    /// is 0 (every message of every tenant passes here).
    pub fn observe_taken(&self, message: &LaneMessage) {
        if !self.enabled {
            return;
        }
        if let Some(age) = message.fresh_age() {
            self.observe_wait(age);
        }
    }

    /// One neighbour's wait (see [`Self::observe_taken`]).
    fn observe_wait(&self, took: Duration) {
        if self.enabled {
            keep(&mut self.lock().waits, took);
        }
    }

    /// A step met trouble in our infrastructure: halves the pool now.
    pub fn trouble(&self) {
        if !self.enabled {
            return;
        }
        let mut state = self.lock();
        state.controller.limit /= 2;
        m::spare_chats(state.controller.limit, state.in_use);
    }

    /// A permit now, if the pool has room.
    pub fn try_take(self: &Arc<Self>) -> Option<SparePermit> {
        let mut state = self.lock();
        if state.in_use >= state.controller.limit {
            state.wanted_more = true;
            return None;
        }
        state.in_use += 1;
        state.peak_in_use = state.peak_in_use.max(state.in_use);
        m::spare_chats(state.controller.limit, state.in_use);
        metrics::counter!(m::SPARE_CHATS_TAKEN).increment(1);
        Some(SparePermit {
            pool: Arc::clone(self),
        })
    }

    /// Waits for a permit. Cancel-safe: a permit exists only once returned
    /// (and a wake-up this waiter got but did not use goes to the next one).
    pub async fn take(self: &Arc<Self>) -> SparePermit {
        loop {
            let room = self.room.notified();
            if let Some(permit) = self.try_take() {
                return permit;
            }
            room.await;
        }
    }

    /// Resizes the pool from the samples since the last resize, once there
    /// are [`MIN_SAMPLES`] of them; returns the limit.
    pub fn adjust(&self) -> usize {
        let limit = {
            let mut guard = self.lock();
            let state = &mut *guard;
            if state.samples.len() < MIN_SAMPLES {
                // Too few steps to judge: the interval goes on (at a low
                // rate a judgement spans several).
                return state.controller.limit;
            }
            let window = Window {
                p90: p90_of(&mut state.samples),
                wait_p90: p90_of(&mut state.waits),
                peak_in_use: state.peak_in_use,
                wanted_more: state.wanted_more,
            };
            state.peak_in_use = state.in_use;
            state.wanted_more = false;
            let limit = state.controller.adjust(window);
            m::spare_chats(limit, state.in_use);
            let controller = &state.controller;
            for (signal, interval, reference) in [
                ("steps", window.p90, controller.reference),
                ("waits", window.wait_p90, controller.wait_reference),
            ] {
                if let Some(p90) = interval {
                    m::spare_signal(signal, "interval", p90);
                }
                if let Some(r) = reference {
                    m::spare_signal(signal, "reference", r);
                }
            }
            limit
        };
        self.room.notify_waiters();
        limit
    }

    /// Resizes the pool every [`ADJUST_EVERY`] until `shutdown`; returns at
    /// once for a pool of 0, which never changes (no wake-ups at idle).
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        if !self.enabled {
            return;
        }
        let mut every = tokio::time::interval(ADJUST_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = shutdown.cancelled() => return,
                _ = every.tick() => {}
            }
            self.adjust();
        }
    }
}

/// Keeps one more sample of an interval, up to [`MAX_SAMPLES`].
fn keep(samples: &mut Vec<f64>, took: Duration) {
    if samples.len() < MAX_SAMPLES {
        samples.push(took.as_secs_f64());
    }
}

/// Samples kept per interval at most (a few thousand steps a second fit;
/// past it the interval's first samples speak for it).
const MAX_SAMPLES: usize = 8192;

/// What one interval showed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Window {
    /// The 90th percentile of the step phases, if there were enough of them.
    pub p90: Option<Duration>,
    /// The 90th percentile of the neighbours' waits, if there were enough.
    pub wait_p90: Option<Duration>,
    /// The most extra chats that ran at once during it.
    pub peak_in_use: usize,
    /// Whether a chat found the pool full during it.
    pub wanted_more: bool,
}

/// The 90th percentile of `samples` (seconds), if there are at least
/// [`MIN_SAMPLES`]; empties them.
fn p90_of(samples: &mut Vec<f64>) -> Option<Duration> {
    let p90 = (samples.len() >= MIN_SAMPLES).then(|| {
        let k = (samples.len() * 9 / 10).min(samples.len() - 1);
        let (_, v, _) = samples.select_nth_unstable_by(k, f64::total_cmp);
        Duration::from_secs_f64(*v)
    });
    samples.clear();
    p90
}

/// The pool's size, decided interval by interval (pure, so its rules are
/// tested without a clock).
#[derive(Debug, Clone)]
pub struct Controller {
    /// Extra chats allowed now.
    pub limit: usize,
    /// Extra chats allowed at most (`SWITCHYARD_BACKLOG_SPARE_CHATS`).
    pub max: usize,
    /// The steps' p90 while backlogs ran at their floor (a moving average).
    pub reference: Option<Duration>,
    /// The neighbours' waits' p90 while backlogs ran at their floor.
    pub wait_reference: Option<Duration>,
}

impl Controller {
    /// Starts at no extra chat and no reference.
    pub fn new(max: usize) -> Self {
        Self {
            limit: 0,
            max,
            reference: None,
            wait_reference: None,
        }
    }

    /// The limit after `window`.
    pub fn adjust(&mut self, window: Window) -> usize {
        let Some(p90) = window.p90 else {
            // Too few steps to judge: the limit stays.
            return self.limit;
        };
        if window.peak_in_use == 0 {
            // Nothing extra ran: this is what the steps (and the waits,
            // where there were neighbours) take without it.
            self.reference = Some(moving(self.reference, p90));
            if let Some(wait) = window.wait_p90 {
                self.wait_reference = Some(moving(self.wait_reference, wait));
            }
        } else if self.reference.is_none_or(|r| slower(p90, r, SLACK))
            || window
                .wait_p90
                .zip(self.wait_reference)
                .is_some_and(|(wait, r)| slower(wait, r, WAIT_SLACK))
        {
            // Slower than without the extras (or no reference to tell,
            // which a start at 0 rules out): give half the room back.
            self.limit /= 2;
            return self.limit;
        }
        self.limit = if window.wanted_more {
            (self.limit + 1).min(self.max)
        } else {
            self.limit.min(window.peak_in_use)
        };
        self.limit
    }
}

/// Whether `p90` is past its `reference`'s [`TOLERANCE`] plus `slack`.
fn slower(p90: Duration, reference: Duration, slack: Duration) -> bool {
    p90 > reference.mul_f64(TOLERANCE) + slack
}

/// The reference after `p90`: a moving average, or `p90` itself at first.
fn moving(reference: Option<Duration>, p90: Duration) -> Duration {
    match reference {
        None => p90,
        Some(r) => r.mul_f64(0.8) + p90.mul_f64(0.2),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(v: u64) -> Option<Duration> {
        Some(Duration::from_millis(v))
    }

    /// Every permit there is, and one ask more (so the pool saw demand).
    fn take_all(pool: &Arc<SparePool>) -> Vec<SparePermit> {
        std::iter::from_fn(|| pool.try_take()).collect()
    }

    /// An interval in which a chat asked for more.
    fn window(p90: Option<Duration>, peak_in_use: usize) -> Window {
        Window {
            p90,
            wait_p90: None,
            peak_in_use,
            wanted_more: true,
        }
    }

    #[test]
    fn grows_by_one_while_the_steps_keep_their_time_and_halves_when_they_slow() {
        let mut c = Controller::new(8);
        assert_eq!(
            c.adjust(window(ms(4), 0)),
            1,
            "a clean interval sets the reference"
        );
        assert_eq!(c.reference, ms(4));
        assert_eq!(c.adjust(window(ms(5), 1)), 2, "within 1.25× + 1 ms");
        assert_eq!(
            c.adjust(window(ms(6), 2)),
            3,
            "6 ms = 1.25 × 4 + 1: still room"
        );
        assert_eq!(c.adjust(window(ms(7), 3)), 1, "above it: halved");
        assert_eq!(c.adjust(window(ms(20), 1)), 0, "to the floor");
        assert_eq!(
            c.adjust(window(ms(4), 0)),
            1,
            "and up again once the steps recover"
        );
    }

    #[test]
    fn never_passes_its_maximum_and_a_maximum_of_zero_keeps_every_backlog_at_its_floor() {
        let mut c = Controller::new(3);
        for _ in 0..10 {
            c.adjust(window(ms(2), 1));
            c.adjust(window(ms(2), 0));
        }
        assert_eq!(c.limit, 3);
        let mut off = Controller::new(0);
        for _ in 0..10 {
            assert_eq!(off.adjust(window(ms(2), 0)), 0);
        }
    }

    #[test]
    fn an_interval_with_too_few_steps_changes_nothing() {
        let mut c = Controller::new(8);
        c.adjust(window(ms(4), 0));
        c.adjust(window(ms(4), 1));
        assert_eq!(c.limit, 2);
        assert_eq!(c.adjust(window(None, 2)), 2);
        assert_eq!(c.reference, ms(4));
    }

    #[test]
    fn the_reference_moves_only_in_intervals_without_extra_chats() {
        let mut c = Controller::new(8);
        c.adjust(window(ms(10), 0));
        c.adjust(window(ms(12), 2));
        assert_eq!(c.reference, ms(10), "a busy interval is not a reference");
        c.adjust(window(ms(5), 0));
        let reference = c.reference.expect("a reference");
        assert!(
            reference.abs_diff(Duration::from_millis(9)) < Duration::from_micros(1),
            "0.8 × 10 + 0.2 × 5: {reference:?}"
        );
    }

    #[test]
    fn without_demand_the_pool_shrinks_to_what_was_in_use() {
        let mut c = Controller::new(8);
        let idle = |p90, peak_in_use| Window {
            p90,
            wait_p90: None,
            peak_in_use,
            wanted_more: false,
        };
        assert_eq!(
            c.adjust(idle(ms(4), 0)),
            0,
            "no backlog asked: nothing to grow for"
        );
        assert_eq!(c.reference, ms(4), "but the reference is taken");
        for _ in 0..3 {
            c.adjust(window(ms(4), 1));
        }
        assert_eq!(c.limit, 3);
        assert_eq!(
            c.adjust(idle(ms(4), 1)),
            1,
            "one extra chat was all it used"
        );
        assert_eq!(
            c.adjust(idle(ms(4), 0)),
            0,
            "the backlog is gone: so is the room"
        );
        c.adjust(window(ms(4), 0));
        assert_eq!(
            c.adjust(idle(ms(40), 1)),
            0,
            "a slowdown halves it all the same"
        );
    }

    #[test]
    fn a_step_in_trouble_halves_the_pool_at_once() {
        let pool = SparePool::new(8);
        let mut held = Vec::new();
        for _ in 0..3 {
            for _ in 0..MIN_SAMPLES {
                pool.observe(Duration::from_millis(2));
            }
            held.extend(take_all(&pool));
            pool.adjust();
        }
        let limit = || pool.lock().controller.limit;
        assert_eq!(limit(), 3);
        pool.trouble();
        assert_eq!(limit(), 1);
        pool.trouble();
        assert_eq!(limit(), 0);
        let off = SparePool::new(0);
        off.observe(Duration::from_millis(2));
        assert!(
            off.lock().samples.is_empty(),
            "a pool of 0 keeps no samples"
        );
    }

    #[test]
    fn the_90th_percentile_needs_min_samples() {
        let mut few: Vec<f64> = vec![0.001; MIN_SAMPLES - 1];
        assert_eq!(p90_of(&mut few), None);
        assert!(few.is_empty());
        let mut hundred: Vec<f64> = (1..=100).rev().map(|i| f64::from(i) / 1000.0).collect();
        assert_eq!(p90_of(&mut hundred), ms(91));
        assert!(hundred.is_empty());
    }

    #[test]
    fn slower_neighbours_halve_the_pool_even_while_the_steps_keep_their_time() {
        let mut c = Controller::new(8);
        let with_waits = |wait_p90, peak_in_use| Window {
            p90: ms(4),
            wait_p90,
            peak_in_use,
            wanted_more: true,
        };
        assert_eq!(c.adjust(with_waits(ms(2), 0)), 1);
        assert_eq!(c.wait_reference, ms(2));
        assert_eq!(
            c.adjust(with_waits(Some(Duration::from_micros(3_000)), 1)),
            2,
            "3 ms = 1.25 × 2 + 0.5: still room"
        );
        assert_eq!(
            c.adjust(with_waits(Some(Duration::from_micros(3_100)), 2)),
            1,
            "above it: halved, although the steps kept their 4 ms"
        );
        assert_eq!(
            c.adjust(with_waits(None, 1)),
            2,
            "no neighbours in an interval: the steps alone judge"
        );
        let mut first = Controller::new(8);
        first.adjust(with_waits(None, 0));
        assert_eq!(first.wait_reference, None);
        assert_eq!(
            first.adjust(with_waits(ms(50), 1)),
            2,
            "no wait reference yet: the waits cannot judge"
        );
    }

    #[test]
    fn the_pool_judges_the_waits_it_was_told() {
        let pool = SparePool::new(8);
        let interval = |wait: Duration| {
            for _ in 0..MIN_SAMPLES {
                pool.observe(Duration::from_millis(2));
                pool.observe_wait(wait);
            }
            let held = take_all(&pool);
            let limit = pool.adjust();
            drop(held);
            limit
        };
        assert_eq!(interval(Duration::from_millis(1)), 1);
        assert_eq!(interval(Duration::from_millis(1)), 2);
        assert_eq!(interval(Duration::from_millis(5)), 1, "neighbours slowed");
        let off = SparePool::new(0);
        off.observe_wait(Duration::from_millis(2));
        assert!(off.lock().waits.is_empty(), "a pool of 0 keeps no waits");
    }

    #[tokio::test]
    async fn a_pool_of_zero_runs_no_timer() {
        let ended = tokio::time::timeout(
            Duration::from_secs(5),
            SparePool::new(0).run(CancellationToken::new()),
        )
        .await;
        assert!(ended.is_ok(), "returned at once, without a shutdown");
    }

    #[tokio::test]
    async fn permits_follow_the_limit_and_a_lowered_limit_takes_effect_as_permits_return() {
        let pool = SparePool::new(4);
        assert!(
            pool.try_take().is_none(),
            "the pool starts empty (and is asked)"
        );
        for _ in 0..MIN_SAMPLES {
            pool.observe(Duration::from_millis(2));
        }
        assert_eq!(pool.adjust(), 1);
        let first = pool.try_take().expect("room for one");
        assert!(pool.try_take().is_none(), "full: asked for more");
        for _ in 0..MIN_SAMPLES {
            pool.observe(Duration::from_millis(2));
        }
        assert_eq!(pool.adjust(), 2);
        let waiter = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move { pool.take().await }
        });
        let second = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("a permit once the limit grew")
            .expect("the waiter ran");
        // The steps slowed down: halved to 1 while two run.
        for _ in 0..MIN_SAMPLES {
            pool.observe(Duration::from_millis(50));
        }
        assert_eq!(pool.adjust(), 1);
        drop(first);
        assert!(pool.try_take().is_none(), "still one in use: the new limit");
        drop(second);
        assert!(pool.try_take().is_some());
    }
}
