//! The knobs of the lane mechanism, with defaults that respect the measured
//! pitfalls (pull `expires` well below `priority_timeout`, heartbeat below
//! `expires`, explicit `max_ack_pending`).

use std::time::Duration;

use crate::{
    config::{ConfigError, Env},
    lanes::message::KEEP_ALIVE_EVERY,
};

/// Lane settings shared by router and sender.
#[derive(Debug, Clone)]
pub struct LaneSettings {
    /// `SWITCHYARD_LANE_QUEUE` (default 64): messages a tenant may hold in
    /// memory before its further messages spill to its own durable lane.
    pub queue_bound: usize,
    /// `SWITCHYARD_LANE_WORK_BUFFER` (default 1024): work announcements
    /// (one per message a lane took) waiting for the workers, per direction;
    /// when it is full the partition readers wait (see [`super::work`]).
    pub work_buffer: usize,
    /// `SWITCHYARD_ACK_WAIT` (default 5s, at least 2s): redelivery delay of an
    /// unacked message, i.e. how long what a dead replica had pulled waits
    /// before a survivor gets it (a failover must finish within 10 s). Held
    /// messages (queued, gathered, being handled) are kept alive with
    /// progress acks, so a slow bot does not need a longer wait.
    pub ack_wait: Duration,
    /// `SWITCHYARD_MAX_ACK_PENDING` (default 20000) per partition consumer.
    pub max_ack_pending: i64,
    /// `SWITCHYARD_PRIORITY_TIMEOUT` (default 5s): how long a dead replica keeps its pin.
    pub priority_timeout: Duration,
    /// `SWITCHYARD_PULL_EXPIRES` (default 2s): must stay well below `priority_timeout`.
    pub pull_expires: Duration,
    /// `SWITCHYARD_MAX_DELIVERIES` (default 5): attempts before a message is dead-lettered.
    pub max_deliveries: u32,
    /// `SWITCHYARD_SPILL_IDLE` (default 5m): a drained spill consumer is removed after this.
    pub spill_idle: Duration,
    /// `SWITCHYARD_MEMBER_TTL` (default 4s): a replica that stops refreshing its
    /// membership for this long loses its partitions (refreshed every quarter
    /// of it, so three refreshes can be late before a live replica is dropped).
    pub member_ttl: Duration,
    /// `SWITCHYARD_LANE_BACKLOG_SCAN` (default 5s): how often a replica looks
    /// for spill backlogs in its partitions that no lane of its own reads
    /// (also on every partition it gains; see [`super::adoption`]).
    pub backlog_scan: Duration,
    /// `SWITCHYARD_LAG_INTERVAL` (default 15s, at least 1s): how often a
    /// replica reads the lag of the partitions it reads (see [`super::lag`]).
    pub lag_interval: Duration,
}

impl Default for LaneSettings {
    fn default() -> Self {
        Self {
            queue_bound: 64,
            work_buffer: 1024,
            ack_wait: Duration::from_secs(5),
            max_ack_pending: 20_000,
            priority_timeout: Duration::from_secs(5),
            pull_expires: Duration::from_secs(2),
            max_deliveries: 5,
            spill_idle: Duration::from_secs(300),
            member_ttl: Duration::from_secs(4),
            backlog_scan: Duration::from_secs(5),
            lag_interval: Duration::from_secs(15),
        }
    }
}

impl LaneSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        let s = Self {
            queue_bound: env.bounded("SWITCHYARD_LANE_QUEUE", d.queue_bound, 1..=100_000)?,
            work_buffer: env.bounded(
                "SWITCHYARD_LANE_WORK_BUFFER",
                d.work_buffer,
                1..=1_000_000,
            )?,
            ack_wait: env.duration("SWITCHYARD_ACK_WAIT", d.ack_wait)?,
            max_ack_pending: env.bounded(
                "SWITCHYARD_MAX_ACK_PENDING",
                d.max_ack_pending,
                1..=10_000_000,
            )?,
            priority_timeout: env.duration("SWITCHYARD_PRIORITY_TIMEOUT", d.priority_timeout)?,
            pull_expires: env.duration("SWITCHYARD_PULL_EXPIRES", d.pull_expires)?,
            max_deliveries: env.bounded("SWITCHYARD_MAX_DELIVERIES", d.max_deliveries, 1..=1000)?,
            spill_idle: env.duration("SWITCHYARD_SPILL_IDLE", d.spill_idle)?,
            member_ttl: env.duration("SWITCHYARD_MEMBER_TTL", d.member_ttl)?,
            backlog_scan: env.duration("SWITCHYARD_LANE_BACKLOG_SCAN", d.backlog_scan)?,
            lag_interval: env.duration("SWITCHYARD_LAG_INTERVAL", d.lag_interval)?,
        };
        if s.lag_interval < Duration::from_secs(1) {
            return Err(ConfigError {
                variable: "SWITCHYARD_LAG_INTERVAL".to_owned(),
                reason: format!("{:?} is below the 1s minimum", s.lag_interval),
            });
        }
        if s.backlog_scan < Duration::from_millis(100) {
            return Err(ConfigError {
                variable: "SWITCHYARD_LANE_BACKLOG_SCAN".to_owned(),
                reason: format!("{:?} is below the 100ms minimum", s.backlog_scan),
            });
        }
        if s.pull_expires * 2 > s.priority_timeout {
            return Err(ConfigError {
                variable: "SWITCHYARD_PULL_EXPIRES".to_owned(),
                reason: format!(
                    "{:?} must be at most half of SWITCHYARD_PRIORITY_TIMEOUT ({:?}), or pins flap",
                    s.pull_expires, s.priority_timeout
                ),
            });
        }
        if s.pull_expires < Duration::from_millis(200) {
            return Err(ConfigError {
                variable: "SWITCHYARD_PULL_EXPIRES".to_owned(),
                reason: format!("{:?} is below the 200ms minimum", s.pull_expires),
            });
        }
        if s.ack_wait < 2 * KEEP_ALIVE_EVERY {
            return Err(ConfigError {
                variable: "SWITCHYARD_ACK_WAIT".to_owned(),
                reason: format!(
                    "{:?} is below {:?}: held messages are kept alive every {KEEP_ALIVE_EVERY:?}",
                    s.ack_wait,
                    2 * KEEP_ALIVE_EVERY
                ),
            });
        }
        Ok(s)
    }

    /// How often a held message needs a progress ack on these consumers.
    pub fn keep_alive_after(&self) -> Duration {
        crate::lanes::message::keep_alive_spacing(self.ack_wait)
    }

    /// Idle heartbeat of a pull: below `expires`, or the server rejects every pull.
    pub fn pull_heartbeat(&self) -> Duration {
        self.pull_expires / 4
    }
}
