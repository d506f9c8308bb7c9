//! The silent-bridge watchdog: a bridge believed connected that has sent no
//! event for `SWITCHYARD_WATCHDOG_SILENCE` gets its `/status` probed; found
//! `disconnected`, it is recorded, announced and held exactly as after a
//! `disconnected` webhook ([`switchyard_shared::bridge_report::record`]).
//! WAHA and Evolution users report sessions that say "connected" while no
//! event arrives for hours; the provider sends no webhook for those.
//!
//! Why in the sender: a probe is a provider call, paid from the fleet budget
//! the sender owns ([`crate::fleet_budget`]), within the watchdog's small
//! share of it ([`allowance`]); and the holds it causes are the sender's. The
//! "last event seen" comes from the INBOUND stream's per-tenant counts
//! ([`silence`]: counts only, the sender reads no inbound payload), and only
//! the replica owning a tenant's partition probes it, so each silent bridge
//! is probed once however many replicas run. (The router sees every event,
//! but owns neither the budget nor the holds, and its lanes would have to
//! share their state with a timer; reading counts here is one call a round.)
//!
//! Layout: [`allowance`] (how many probes this replica may make), [`silence`]
//! (which owned tenants are silent); this file runs the rounds.

mod allowance;
mod silence;

use std::{collections::HashMap, time::Duration};

use switchyard_shared::{
    bridge_report,
    bridge_state::BridgeState,
    config::{ConfigError, Env},
    ids::TenantId,
    lanes::work::PartitionShare,
    notifications::ReportSource,
    tenant_cache::TenantCache,
    tenant_status::record::now_ms,
    wabridges::WaBridgesClient,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use self::{allowance::ProbeAllowance, silence::LastHeard};
use crate::{
    fleet_budget::{FleetBudget, FleetBudgetConfig, Lease},
    metrics as m,
};

/// How the watchdog runs (`SWITCHYARD_WATCHDOG_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WatchdogSettings {
    /// No event for this long while believed connected: probe (`SWITCHYARD_WATCHDOG_SILENCE`, default 30m).
    pub silence: Duration,
    /// How often silent bridges are looked for (`SWITCHYARD_WATCHDOG_INTERVAL`, default 1m).
    pub interval: Duration,
    /// Percent of the fleet budget probes may use; 0 turns the watchdog off
    /// (`SWITCHYARD_WATCHDOG_BUDGET_PERCENT`, default 5).
    pub budget_percent: u32,
}

impl Default for WatchdogSettings {
    fn default() -> Self {
        Self {
            silence: Duration::from_secs(30 * 60),
            interval: Duration::from_secs(60),
            budget_percent: 5,
        }
    }
}

impl WatchdogSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let d = Self::default();
        Ok(Self {
            silence: env.duration("SWITCHYARD_WATCHDOG_SILENCE", d.silence)?,
            interval: env.duration("SWITCHYARD_WATCHDOG_INTERVAL", d.interval)?,
            budget_percent: env.bounded(
                "SWITCHYARD_WATCHDOG_BUDGET_PERCENT",
                d.budget_percent,
                0..=50,
            )?,
        })
    }

    /// Calls per window the watchdog may take of `fleet_limit` (rounded up:
    /// what a local-mode scheduler keeps back for it).
    pub fn reserved_of(&self, fleet_limit: u32) -> u32 {
        (u64::from(fleet_limit) * u64::from(self.budget_percent)).div_ceil(100) as u32
    }
}

/// What the watchdog is built from.
pub struct WatchdogParts {
    pub settings: WatchdogSettings,
    pub js: async_nats::jetstream::Context,
    pub nats: async_nats::Client,
    /// Tenant-scoped pool (row-level security applies).
    pub db: sqlx::PgPool,
    pub tenants: TenantCache,
    pub client: WaBridgesClient,
    /// The shared fleet budget probes are paid from (`None` in local mode,
    /// where the scheduler's limit leaves the watchdog's share out).
    pub fleet: Option<FleetBudget>,
    pub fleet_config: FleetBudgetConfig,
    /// This replica's outbound partitions (the same tenants as inbound).
    pub owned: PartitionShare,
    pub shutdown: CancellationToken,
}

/// What one probe found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finding {
    Connected,
    Disconnected,
    Other,
    Failed,
}

impl Finding {
    fn as_str(self) -> &'static str {
        match self {
            Finding::Connected => "connected",
            Finding::Disconnected => "disconnected",
            Finding::Other => "other",
            Finding::Failed => "error",
        }
    }
}

/// Runs rounds every interval until shutdown (at once when off).
pub async fn run(parts: WatchdogParts) {
    let mut watchdog = Watchdog::new(parts);
    if watchdog.allowance.fleet_share() <= 0.0 {
        tracing::info!("silent-bridge watchdog off (SWITCHYARD_WATCHDOG_BUDGET_PERCENT=0)");
        return;
    }
    let mut tick = tokio::time::interval(watchdog.parts.settings.interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = watchdog.parts.shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        watchdog.round().await;
    }
}

struct Watchdog {
    parts: WatchdogParts,
    allowance: ProbeAllowance,
    last_heard: LastHeard,
    /// When each tenant was last probed and found connected (unix ms): its
    /// silence counts from then, so it is probed once per silence period.
    probed_ms: HashMap<TenantId, i64>,
}

impl Watchdog {
    fn new(parts: WatchdogParts) -> Self {
        let allowance = ProbeAllowance::new(
            parts.fleet_config.limit,
            parts.settings.budget_percent,
            parts.fleet_config.window,
            Instant::now(),
        );
        Self {
            parts,
            allowance,
            last_heard: LastHeard::default(),
            probed_ms: HashMap::new(),
        }
    }

    /// One round: the owned silent tenants believed connected, longest
    /// silent first, probed while the allowance and the fleet budget last.
    async fn round(&mut self) {
        let now = now_ms();
        let silence_ms = i64::try_from(self.parts.settings.silence.as_millis()).unwrap_or(i64::MAX);
        let silent_before = now.saturating_sub(silence_ms);
        let counts = match silence::owned_counts(&self.parts.js, &self.parts.owned).await {
            Ok(counts) => counts,
            Err(e) => {
                tracing::debug!(error = %e, "watchdog round skipped");
                return;
            }
        };
        let quiet = match silence::quiet_connected(&self.parts.db, &self.parts.owned, &counts).await
        {
            Ok(quiet) => quiet,
            Err(e) => {
                tracing::debug!(error = %e, "watchdog round skipped");
                return;
            }
        };
        self.last_heard
            .observe(counts.into_iter().chain(quiet).collect(), now);
        self.probed_ms.retain(|_, at| *at >= silent_before);
        for tenant in self.last_heard.silent_since(silent_before) {
            if self.probed_ms.contains_key(&tenant) || !self.believed_connected(&tenant).await {
                continue;
            }
            if !self.pay_for_probe().await {
                return;
            }
            let finding = self.probe(&tenant).await;
            metrics::counter!(m::WATCHDOG_PROBES, "result" => finding.as_str()).increment(1);
            // A disconnected bridge is no longer believed connected (or,
            // not recorded, is probed again next round); any other answer,
            // failures included, waits another silence period, so a bridge
            // that always fails cannot take every round's first probe.
            if finding != Finding::Disconnected {
                self.probed_ms.insert(tenant, now_ms());
            }
        }
    }

    async fn believed_connected(&self, tenant: &TenantId) -> bool {
        match self.parts.tenants.resolve(tenant).await {
            Ok(Some(row)) => row.is_active() && row.bridge_state == BridgeState::Connected,
            Ok(None) => false,
            Err(e) => {
                tracing::debug!(tenant.id = %tenant, error = %e, "watchdog cannot read the tenant");
                false
            }
        }
    }

    /// One probe from this replica's share, and one call from the fleet
    /// budget (in local mode the scheduler already left the share out).
    async fn pay_for_probe(&mut self) -> bool {
        if !self
            .allowance
            .take(self.parts.owned.fraction(), Instant::now())
        {
            return false;
        }
        let Some(fleet) = &self.parts.fleet else {
            return true;
        };
        match fleet.acquire(1).await {
            Ok(Lease::Granted { .. }) => true,
            Ok(_) => false,
            Err(e) => {
                tracing::debug!(error = %e, "watchdog cannot lease from the fleet budget");
                false
            }
        }
    }

    async fn probe(&self, tenant: &TenantId) -> Finding {
        let status = match self.parts.client.status(tenant).await {
            Ok(status) => status,
            Err(e) => {
                tracing::debug!(tenant.id = %tenant, error = %e, "watchdog probe failed");
                return Finding::Failed;
            }
        };
        match status.status {
            BridgeState::Connected => Finding::Connected,
            BridgeState::Disconnected => {
                let p = &self.parts;
                if let Err(e) = bridge_report::record(
                    &p.db,
                    &p.nats,
                    tenant,
                    &BridgeState::Disconnected,
                    ReportSource::Watchdog,
                )
                .await
                {
                    // Still believed connected: probed again next round.
                    tracing::warn!(tenant.id = %tenant, error = %e, "watchdog cannot record a silent disconnection; probing again next round");
                    return Finding::Disconnected;
                }
                p.tenants.invalidate(tenant).await;
                metrics::counter!(m::WATCHDOG_FOUND_DISCONNECTED).increment(1);
                tracing::warn!(tenant.id = %tenant, silence.seconds = p.settings.silence.as_secs(), "silent bridge found disconnected; sending held as after a disconnected webhook");
                Finding::Disconnected
            }
            other => {
                tracing::info!(tenant.id = %tenant, bridge.status = %other, "silent bridge reports an undocumented status; left alone");
                Finding::Other
            }
        }
    }
}
