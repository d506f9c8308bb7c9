//! The sender's own settings (beyond the common ones), read from the environment.

use std::{sync::Arc, time::Duration};

use switchyard_shared::{
    cloud_api::{
        CloudApiSettings, settings::token_keys_from_env, token_box::TokenKeys,
        window::WindowSettings,
    },
    config::{ConfigError, Env},
    lanes::LaneSettings,
    tenant_status::StatusSettings,
    wabridges::WaBridgesSettings,
};

use crate::{
    dispatcher::FlapSettings, fleet_budget::FleetBudgetConfig, notify::NotifySettings,
    retry_policy::SendPolicy, watchdog::WatchdogSettings,
};

/// How the next send is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerMode {
    /// Weighted deficit round-robin over tenant lanes (the product).
    Fair,
    /// One shared consumer in arrival order, no fairness: only the baseline
    /// the noisy-neighbour benchmark compares against.
    Fifo,
}

/// Where the fleet-wide budget is enforced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FleetMode {
    /// Shared by every replica through a NATS KV bucket (production).
    Shared,
    /// Counted by this process alone (one replica, local demos).
    Local,
}

/// Sender settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub lanes: LaneSettings,
    pub retry: SendPolicy,
    pub wa: WaBridgesSettings,
    /// The Graph API for Cloud API tenants (`SWITCHYARD_CLOUD_API_*`).
    pub cloud_api: CloudApiSettings,
    /// `SWITCHYARD_CLOUD_TOKEN_KEYS`: opens Cloud tenants' tokens; unset,
    /// Cloud tenants' sends are held (WA Bridges tenants are unaffected).
    pub cloud_token_keys: Option<Arc<TokenKeys>>,
    /// `SWITCHYARD_CLOUD_WINDOW` (24h) and `SWITCHYARD_CLOUD_WINDOW_MARGIN`
    /// (60s): a free-form Cloud reply goes only while the customer's window
    /// is open by more than the margin.
    pub cloud_window: WindowSettings,
    pub fleet: FleetBudgetConfig,
    /// `SWITCHYARD_FLEET_MODE` (`shared` or `local`, default shared).
    pub fleet_mode: FleetMode,
    /// `SWITCHYARD_SEND_IN_FLIGHT` (default 32): sends in flight from this replica.
    pub max_in_flight: u32,
    /// `SWITCHYARD_TENANT_CACHE_TTL` (default 30s).
    pub tenant_cache_ttl: Duration,
    /// `SWITCHYARD_TENANT_REFRESH` (default 30s): limits and bridge state re-read
    /// (announced changes are read at once; this backs up a lost one).
    pub tenant_refresh: Duration,
    /// `SWITCHYARD_CLOUD_HEALTH_INTERVAL` (default 15m, at least 1s): how
    /// often the quality of each held Cloud API tenant's number is read from
    /// Meta (a quality notice makes it read at once).
    pub cloud_health_interval: Duration,
    /// `SWITCHYARD_CLOUD_HEALTH_CONCURRENCY` (default 4, 1..=256): health
    /// reads from Meta in flight at once in this replica; the others wait
    /// their turn (each takes a database connection too, which the sends
    /// share).
    pub cloud_health_concurrency: usize,
    /// `SWITCHYARD_SCHEDULER` (`fair` or `fifo`, default fair).
    pub scheduler: SchedulerMode,
    /// `SWITCHYARD_REPLICA_ID` (default: random).
    pub replica_id: String,
    /// `SWITCHYARD_DISCONNECT_GRACE` (default 2m) and
    /// `SWITCHYARD_RECONNECT_JITTER` (default 3s): see `docs/whatsapp.md`.
    pub flaps: FlapSettings,
    /// How newly paired numbers warm up (`SWITCHYARD_WARMUP_*`).
    pub warmup: crate::fair_share::warmup::WarmUp,
    /// How this replica publishes its tenants' status (`SWITCHYARD_STATUS_*`).
    pub status: StatusSettings,
    /// The silent-bridge watchdog (`SWITCHYARD_WATCHDOG_*`).
    pub watchdog: WatchdogSettings,
    /// The tenant notifier (`SWITCHYARD_NOTIFY_*`).
    pub notify: NotifySettings,
}

impl Settings {
    pub fn from_env(env: &Env) -> anyhow::Result<Self> {
        Ok(Self::read(env)?)
    }

    fn read(env: &Env) -> Result<Self, ConfigError> {
        let replicas = env.bounded("SWITCHYARD_STREAM_REPLICAS", 1, 1..=5)?;
        Ok(Self {
            lanes: LaneSettings::from_env(env)?,
            retry: SendPolicy::from_env(env)?,
            wa: WaBridgesSettings::from_env(env)?,
            cloud_api: CloudApiSettings::from_env(env)?,
            cloud_token_keys: token_keys_from_env(env)?.map(Arc::new),
            cloud_window: WindowSettings::from_env(env)?,
            fleet: FleetBudgetConfig::from_env(env, replicas)?,
            fleet_mode: match env.string("SWITCHYARD_FLEET_MODE", "shared").as_str() {
                "shared" => FleetMode::Shared,
                "local" => FleetMode::Local,
                other => {
                    return Err(ConfigError {
                        variable: "SWITCHYARD_FLEET_MODE".into(),
                        reason: format!("expected shared or local, got {other:?}"),
                    });
                }
            },
            max_in_flight: env.bounded("SWITCHYARD_SEND_IN_FLIGHT", 32, 1..=10_000)?,
            tenant_cache_ttl: env
                .duration("SWITCHYARD_TENANT_CACHE_TTL", Duration::from_secs(30))?,
            tenant_refresh: env.duration("SWITCHYARD_TENANT_REFRESH", Duration::from_secs(30))?,
            cloud_health_interval: {
                let every =
                    env.duration("SWITCHYARD_CLOUD_HEALTH_INTERVAL", Duration::from_secs(900))?;
                if every < Duration::from_secs(1) {
                    return Err(ConfigError {
                        variable: "SWITCHYARD_CLOUD_HEALTH_INTERVAL".into(),
                        reason: format!("{every:?} is below 1s"),
                    });
                }
                every
            },
            cloud_health_concurrency: env.bounded(
                "SWITCHYARD_CLOUD_HEALTH_CONCURRENCY",
                4,
                1..=256,
            )?,
            scheduler: match env.string("SWITCHYARD_SCHEDULER", "fair").as_str() {
                "fair" => SchedulerMode::Fair,
                "fifo" => SchedulerMode::Fifo,
                other => {
                    return Err(ConfigError {
                        variable: "SWITCHYARD_SCHEDULER".into(),
                        reason: format!("expected fair or fifo, got {other:?}"),
                    });
                }
            },
            replica_id: env.string(
                "SWITCHYARD_REPLICA_ID",
                &format!("sender-{}", uuid::Uuid::new_v4().simple()),
            ),
            flaps: FlapSettings {
                grace: env
                    .duration("SWITCHYARD_DISCONNECT_GRACE", FlapSettings::default().grace)?,
                reconnect_jitter: env.duration(
                    "SWITCHYARD_RECONNECT_JITTER",
                    FlapSettings::default().reconnect_jitter,
                )?,
            },
            warmup: {
                let d = crate::fair_share::warmup::WarmUp::default();
                crate::fair_share::warmup::WarmUp {
                    days: env.bounded("SWITCHYARD_WARMUP_DAYS", d.days, 0..=365)?,
                    start_percent: env.bounded(
                        "SWITCHYARD_WARMUP_START_PERCENT",
                        d.start_percent,
                        1..=100,
                    )?,
                    min_gap: env.duration("SWITCHYARD_WARMUP_MIN_GAP", d.min_gap)?,
                }
            },
            status: StatusSettings::from_env(env)?,
            watchdog: WatchdogSettings::from_env(env)?,
            notify: NotifySettings::from_env(env)?,
        })
    }
}
