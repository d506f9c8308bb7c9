//! The router's own settings (beyond the common ones), read from the environment.

use std::time::Duration;

use switchyard_shared::{
    bot_config::EgressPolicy,
    cloud_api::window::WindowSettings,
    config::{ConfigError, DatabaseSettings, Env},
    group_commit::Shape,
    lanes::LaneSettings,
    tenant_status::StatusSettings,
};

use crate::bots::{
    budget::DEFAULT_CONCURRENCY_PER_TENANT,
    http::{DEFAULT_MAX_ANSWER_BYTES, HttpBotSettings},
};

/// Router settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub lanes: LaneSettings,
    /// `SWITCHYARD_CHATS_IN_FLIGHT` (default 4): chats of one tenant handled at once.
    pub chats_in_flight: usize,
    /// `SWITCHYARD_BACKLOG_CHATS_IN_FLIGHT` (default 1): chats of a tenant
    /// handled at once while it is backlogged (its lane spilled), so a flood
    /// drains without taking the CPU and database from tenants that keep up.
    pub backlog_chats_in_flight: usize,
    /// `SWITCHYARD_BACKLOG_SPARE_CHATS` (default 0: every backlog at its
    /// floor): extra chats, past their floor, that backlogged tenants may run
    /// at once in this replica while every tenant's steps and the
    /// neighbours' waits keep their time (`crate::spare`). Off by default:
    /// measured at 16 (with the steps' linger at 0, which turning it on
    /// makes the default: [`Settings::step_linger`]), a held backlog drains
    /// at 1,970 msg/s instead of ~1,130 but its neighbours' p99 rises to
    /// about 1.5× their figure without it, against 1.25× at the floor
    /// (docs/benchmarks/router.md).
    pub backlog_spare_chats: usize,
    /// `SWITCHYARD_TENANT_CACHE_TTL` (default 30s): the longest a tenant change
    /// (e.g. a suspension) takes to reach this replica if its notification is lost.
    pub tenant_cache_ttl: Duration,
    /// `SWITCHYARD_RETRY_DELAY` (default 500ms): base of the in-place retry
    /// delays (see [`crate::retries::Retries`]).
    pub retry_delay: Duration,
    /// `SWITCHYARD_MAX_REDELIVERIES` (default 20): deliveries by the server
    /// after which a message that never reached an outcome is dead-lettered
    /// unhandled (a message that crashes the router); see
    /// [`crate::runner::RunnerSettings::max_redeliveries`] for why it is not
    /// the attempt limit.
    pub max_redeliveries: u32,
    /// `SWITCHYARD_ECHO_WAIT` (default 30s): a `from_me` event with an unknown
    /// id is held back while a send to its chat started this recently and is
    /// not yet recorded (the echo may have overtaken the send's answer).
    pub echo_wait: Duration,
    /// `SWITCHYARD_REPLICA_ID` (default: random): this replica's name among its peers.
    pub replica_id: String,
    /// How the HTTP bot reaches tenants' endpoints: the egress guard
    /// (`SWITCHYARD_BOT_EGRESS_ALLOW`, `SWITCHYARD_BOT_ALLOW_HTTP`; strict
    /// by default) and `SWITCHYARD_BOT_MAX_ANSWER_BYTES` (default 256 KiB).
    pub bots: HttpBotSettings,
    /// `SWITCHYARD_BOT_CONCURRENCY_PER_TENANT` (default 4): bot calls of one
    /// tenant running at once in this replica (its bot budget; the time of
    /// each call is bounded by the tenant's `bot_config.timeout_ms`).
    pub bot_concurrency_per_tenant: usize,
    /// How this replica publishes its tenants' status (`SWITCHYARD_STATUS_*`).
    pub status: StatusSettings,
    /// The Cloud API customer-service window (`SWITCHYARD_CLOUD_WINDOW`,
    /// default 24h): a Cloud message older than it gets no bot turn.
    pub cloud_window: WindowSettings,
}

impl Settings {
    pub fn from_env(env: &Env) -> anyhow::Result<Self> {
        Ok(Self::read(env)?)
    }

    /// How long the turns' group-committed steps gather company
    /// (`SWITCHYARD_DB_STEP_LINGER`): what was set, else the workers'
    /// default (1 ms) at the floor, and nothing once spare chats are on. The
    /// linger is paid twice per turn, so it bounds a backlog running several
    /// chats (~1,250 msg/s at 1 ms against 1,970 at 0 in the router
    /// benchmark), while at the floor it bounds nothing and saves 3–5 % of
    /// the CPU per event (docs/benchmarks/router.md).
    pub fn step_linger(&self, database: &DatabaseSettings) -> Duration {
        database.step_linger_or(if self.backlog_spare_chats > 0 {
            Duration::ZERO
        } else {
            Shape::WORKER_STEP.linger
        })
    }

    fn read(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            lanes: LaneSettings::from_env(env)?,
            chats_in_flight: env.bounded("SWITCHYARD_CHATS_IN_FLIGHT", 4, 1..=1000)?,
            backlog_chats_in_flight: env.bounded(
                "SWITCHYARD_BACKLOG_CHATS_IN_FLIGHT",
                1,
                1..=1000,
            )?,
            backlog_spare_chats: env.bounded("SWITCHYARD_BACKLOG_SPARE_CHATS", 0, 0..=1000)?,
            tenant_cache_ttl: env
                .duration("SWITCHYARD_TENANT_CACHE_TTL", Duration::from_secs(30))?,
            retry_delay: env.duration("SWITCHYARD_RETRY_DELAY", Duration::from_millis(500))?,
            max_redeliveries: env.bounded("SWITCHYARD_MAX_REDELIVERIES", 20, 2..=10_000)?,
            echo_wait: env.duration("SWITCHYARD_ECHO_WAIT", Duration::from_secs(30))?,
            replica_id: env.string(
                "SWITCHYARD_REPLICA_ID",
                &format!("router-{}", uuid::Uuid::new_v4().simple()),
            ),
            bots: HttpBotSettings {
                egress: EgressPolicy::from_env(env)?,
                max_answer_bytes: env.bounded(
                    "SWITCHYARD_BOT_MAX_ANSWER_BYTES",
                    DEFAULT_MAX_ANSWER_BYTES,
                    1024..=16 * 1024 * 1024,
                )?,
            },
            bot_concurrency_per_tenant: env.bounded(
                "SWITCHYARD_BOT_CONCURRENCY_PER_TENANT",
                DEFAULT_CONCURRENCY_PER_TENANT,
                1..=1000,
            )?,
            status: StatusSettings::from_env(env)?,
            cloud_window: WindowSettings::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step_linger(vars: &[(&str, &str)]) -> Duration {
        let env = Env::from_map(vars.iter().copied());
        let settings = Settings::read(&env).unwrap();
        settings.step_linger(&DatabaseSettings::from_env(&env).unwrap())
    }

    #[test]
    fn the_spare_chats_turn_the_steps_linger_off_unless_it_was_set() {
        assert_eq!(step_linger(&[]), Shape::WORKER_STEP.linger, "the floor");
        assert_eq!(
            step_linger(&[("SWITCHYARD_BACKLOG_SPARE_CHATS", "16")]),
            Duration::ZERO,
            "spare chats on"
        );
        assert_eq!(
            step_linger(&[
                ("SWITCHYARD_BACKLOG_SPARE_CHATS", "16"),
                ("SWITCHYARD_DB_STEP_LINGER", "3ms"),
            ]),
            Duration::from_millis(3),
            "what was set wins"
        );
        assert_eq!(
            step_linger(&[("SWITCHYARD_DB_STEP_LINGER", "0ms")]),
            Duration::ZERO
        );
    }
}
