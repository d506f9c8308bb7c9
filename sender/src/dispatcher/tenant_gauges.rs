//! The per-tenant gauges of this replica, published on every tenant refresh:
//! replies waiting and how long each hold has lasted (capped, see
//! `switchyard_shared::tenant_metrics`), and the count of held tenants by
//! reason. The scheduler reads no clock, so a hold's start is when a refresh
//! first saw it: its duration is exact to one `SWITCHYARD_TENANT_REFRESH`
//! (and a hold's series appears from the second refresh that sees it).

use std::collections::HashMap;

use switchyard_shared::{
    ids::TenantId,
    tenant_metrics::{self, Overflow, TenantGauge},
};
use tokio::time::Instant;

use crate::{
    fair_share::{PauseReason, TenantView},
    metrics as m,
};

/// The gauges and when each hold was first seen.
#[derive(Debug)]
pub(super) struct TenantGauges {
    waiting: TenantGauge,
    held: TenantGauge,
    held_since: HashMap<(TenantId, PauseReason), Instant>,
}

impl TenantGauges {
    pub(super) fn new() -> Self {
        let reasons: Vec<&'static str> = PauseReason::ALL.iter().map(|r| r.as_str()).collect();
        for reason in &reasons {
            metrics::gauge!(m::TENANTS_HELD, "reason" => *reason).set(0.0);
        }
        Self {
            waiting: TenantGauge::new(m::TENANT_REPLIES_WAITING, None, Overflow::Sum),
            held: TenantGauge::new(
                m::TENANT_HELD_SECONDS,
                Some(("reason", &reasons)),
                Overflow::Max,
            ),
            held_since: HashMap::new(),
        }
    }

    /// Publishes what the scheduler shows at `now`.
    pub(super) fn publish(&mut self, tenants: &[TenantView], now: Instant) {
        let labels = tenant_metrics::labels();
        self.waiting.publish(
            labels,
            tenants.iter().map(|t| (&t.tenant, "", t.waiting as f64)),
        );
        let mut since = HashMap::with_capacity(self.held_since.len());
        let mut held = Vec::new();
        let mut count: HashMap<PauseReason, u32> = HashMap::new();
        for view in tenants {
            for reason in &view.held {
                let key = (view.tenant.clone(), *reason);
                let start = self.held_since.get(&key).copied().unwrap_or(now);
                since.insert(key, start);
                held.push((&view.tenant, reason.as_str(), (now - start).as_secs_f64()));
                *count.entry(*reason).or_default() += 1;
            }
        }
        // A hold first seen now has lasted 0 s: its series appears next time.
        self.held.publish(labels, held);
        self.held_since = since;
        for reason in PauseReason::ALL {
            let n = count.get(&reason).copied().unwrap_or(0);
            metrics::gauge!(m::TENANTS_HELD, "reason" => reason.as_str()).set(f64::from(n));
        }
    }
}
