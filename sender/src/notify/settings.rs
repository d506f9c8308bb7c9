//! The notifier's settings (`SWITCHYARD_NOTIFY_*`), read once at start-up.

use std::time::Duration;

use switchyard_shared::{
    bot_config::EgressPolicy,
    config::{ConfigError, Env},
    retry::RetryPolicy,
};

/// How the notifier runs.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// `SWITCHYARD_NOTIFY_ENABLED` (default true): off, this replica neither
    /// delivers notifications nor looks for stuck bridges (they wait in
    /// `NOTIFY` for a replica that does, up to the stream's max age).
    pub enabled: bool,
    /// `SWITCHYARD_NOTIFY_TIMEOUT` (default 10s): one POST, connect to last byte.
    pub timeout: Duration,
    /// The retry schedule and its limits: `SWITCHYARD_NOTIFY_RETRY_MIN`
    /// (1s), `SWITCHYARD_NOTIFY_RETRY_MAX` (5m), `SWITCHYARD_NOTIFY_MAX_ATTEMPTS`
    /// (10), `SWITCHYARD_NOTIFY_MAX_AGE` (24h); doubling, with jitter.
    pub retry: RetryPolicy,
    /// `SWITCHYARD_NOTIFY_STUCK_AFTER` (default 24h; 0 turns it off): a
    /// bridge awaiting pairing or disconnected this long is told once per episode.
    pub stuck_after: Duration,
    /// `SWITCHYARD_NOTIFY_STUCK_INTERVAL` (default 1m): how often stuck bridges are looked for.
    pub stuck_interval: Duration,
    /// The egress guard for tenants' URLs: the HTTP bot's
    /// (`SWITCHYARD_BOT_EGRESS_ALLOW`, `SWITCHYARD_BOT_ALLOW_HTTP`).
    pub egress: EgressPolicy,
}

impl NotifySettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let retry = RetryPolicy {
            jitter: true,
            max_attempts: env.bounded("SWITCHYARD_NOTIFY_MAX_ATTEMPTS", 10, 1..=1000)?,
            max_age: env.duration("SWITCHYARD_NOTIFY_MAX_AGE", Duration::from_secs(24 * 3600))?,
            ..RetryPolicy::exponential(
                env.duration("SWITCHYARD_NOTIFY_RETRY_MIN", Duration::from_secs(1))?,
                env.duration("SWITCHYARD_NOTIFY_RETRY_MAX", Duration::from_secs(300))?,
            )
        };
        Ok(Self {
            enabled: env.flag("SWITCHYARD_NOTIFY_ENABLED", true)?,
            timeout: env.duration("SWITCHYARD_NOTIFY_TIMEOUT", Duration::from_secs(10))?,
            retry,
            stuck_after: env.duration(
                "SWITCHYARD_NOTIFY_STUCK_AFTER",
                Duration::from_secs(24 * 3600),
            )?,
            stuck_interval: env
                .duration("SWITCHYARD_NOTIFY_STUCK_INTERVAL", Duration::from_secs(60))?,
            egress: EgressPolicy::from_env(env)?,
        })
    }
}
