//! Bridge flaps: a `disconnected` bridge holds its tenant's sending, is
//! alerted on only after a grace period, and is resumed after a random
//! jitter so a fleet-wide reconnect does not burst the fleet budget
//! (`docs/whatsapp.md`).
//!
//! The state lives here; the hold itself is a scheduler pause
//! ([`PauseReason::BridgeDisconnected`]) set and lifted through the
//! scheduler the send loop lends.

use std::{collections::HashMap, time::Duration};

use switchyard_shared::ids::TenantId;
use tokio::time::Instant;

use crate::{
    fair_share::{PauseReason, Scheduler},
    metrics as m,
};

/// How bridge flaps are handled.
#[derive(Debug, Clone, Copy)]
pub struct FlapSettings {
    /// A `disconnected` shorter than this only holds sending; past it, an alert.
    pub grace: Duration,
    /// On `connected`, the held tenant resumes after a random delay up to this.
    pub reconnect_jitter: Duration,
}

impl Default for FlapSettings {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(120),
            reconnect_jitter: Duration::from_secs(3),
        }
    }
}

/// The tenants whose bridge is down or coming back.
pub(super) struct BridgeFlaps {
    settings: FlapSettings,
    /// Tenants whose bridge is down, since when, and whether we alerted.
    disconnected: HashMap<TenantId, (Instant, bool)>,
    /// Tenants whose jittered resume is scheduled, and for when.
    resuming: HashMap<TenantId, Instant>,
}

impl BridgeFlaps {
    pub(super) fn new(settings: FlapSettings) -> Self {
        Self {
            settings,
            disconnected: HashMap::new(),
            resuming: HashMap::new(),
        }
    }

    /// A bridge went down (hold, no end) or came back (resume after jitter).
    pub(super) fn on_bridge_state(
        &mut self,
        scheduler: &mut Scheduler,
        tenant: &TenantId,
        connected: bool,
    ) {
        let now = Instant::now();
        if !connected {
            self.resuming.remove(tenant);
            if scheduler
                .pause(tenant, PauseReason::BridgeDisconnected, None)
                .is_ok()
                && !self.disconnected.contains_key(tenant)
            {
                self.disconnected.insert(tenant.clone(), (now, false));
                tracing::info!(tenant.id = %tenant, "bridge disconnected; sending held");
            }
            return;
        }
        if let Some((since, _)) = self.disconnected.remove(tenant) {
            metrics::histogram!(m::BRIDGE_DOWN_SECONDS).record(since.elapsed().as_secs_f64());
        }
        let held = scheduler
            .pause_reasons(tenant, now)
            .contains(&PauseReason::BridgeDisconnected);
        if !held || self.resuming.get(tenant).is_some_and(|at| *at > now) {
            // Not held, or its resume is already scheduled (a refresh seeing
            // `connected` again must not roll the dice again).
            return;
        }
        // Jittered: after a fleet-wide reconnect the held tenants come back
        // spread over the window, not all in the same instant.
        let jitter = self.settings.reconnect_jitter.mul_f64(random_fraction());
        self.resuming.insert(tenant.clone(), now + jitter);
        let _ = scheduler.pause(tenant, PauseReason::BridgeDisconnected, Some(now + jitter));
        tracing::info!(tenant.id = %tenant, resume.after_ms = jitter.as_millis() as u64, "bridge connected; sending resumes after jitter");
    }

    /// A bridge down for longer than the grace period is no flap: tell an
    /// operator (once). Its messages keep waiting in its lane.
    pub(super) fn alert_long_disconnections(&mut self) {
        for (tenant, (since, alerted)) in &mut self.disconnected {
            if !*alerted && since.elapsed() >= self.settings.grace {
                *alerted = true;
                metrics::counter!(m::BRIDGE_DOWN_ALERTS).increment(1);
                tracing::error!(tenant.id = %tenant, down.seconds = since.elapsed().as_secs(), "bridge disconnected for longer than the grace period; sending stays held");
            }
        }
    }
}

/// A uniformly random number in [0, 1), from the low 62 bits of a v4 uuid
/// (all random: the version and variant bits sit above them).
fn random_fraction() -> f64 {
    let bits = (uuid::Uuid::new_v4().as_u128() as u64 & ((1 << 62) - 1)) >> 9;
    bits as f64 / (1u64 << 53) as f64
}
