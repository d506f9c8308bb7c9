//! The per-tenant bot budget: at most a set number of one tenant's bot calls
//! run at the same time in this replica (`SWITCHYARD_BOT_CONCURRENCY_PER_TENANT`);
//! the call's time is bounded by the tenant's own timeout (`bot_config.timeout_ms`,
//! capped by `HTTP_BOT_MAX_TIMEOUT`).
//!
//! Why a budget of its own when the runner already handles at most
//! `SWITCHYARD_CHATS_IN_FLIGHT` chats of a tenant at once: that bound is per
//! tenant *worker*, and a replica may run two workers of one tenant for a
//! while (a lane handed over and back, a worker finishing its turns beside
//! its successor). The budget is keyed by tenant across the replica, and it
//! states the limit where it matters, at the call.
//!
//! A step whose tenant's budget is taken waits here, holding nothing shared:
//! no database connection (the step reads its conversation before and writes
//! it after the call, each in one statement of its own), no worker
//! other tenants need (each tenant has its own worker and chat tasks), and
//! no attempt of the message (the wait is inside one attempt; the runner
//! keeps the message alive meanwhile).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
};

use switchyard_shared::ids::TenantId;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::metrics as m;

/// Default of `SWITCHYARD_BOT_CONCURRENCY_PER_TENANT`.
pub const DEFAULT_CONCURRENCY_PER_TENANT: usize = 4;

/// Every tenant's bot-call permits in this replica.
#[derive(Debug, Clone)]
pub struct BotBudget {
    per_tenant: usize,
    /// Weak: a tenant's semaphore lives only while a call holds or awaits one
    /// of its permits, so idle tenants cost nothing (dead entries are pruned).
    tenants: Arc<Mutex<HashMap<TenantId, Weak<Semaphore>>>>,
}

/// One bot call's place in its tenant's budget, given back on drop.
#[derive(Debug)]
pub struct BotPermit {
    _place: Option<OwnedSemaphorePermit>,
}

impl BotBudget {
    /// A budget of `per_tenant` concurrent calls (at least one) per tenant.
    pub fn new(per_tenant: usize) -> Self {
        Self {
            per_tenant: per_tenant.max(1),
            tenants: Arc::default(),
        }
    }

    /// Waits for a place in `tenant`'s budget.
    pub async fn acquire(&self, tenant: &TenantId) -> BotPermit {
        let semaphore = self.semaphore(tenant);
        if let Ok(place) = Arc::clone(&semaphore).try_acquire_owned() {
            return BotPermit {
                _place: Some(place),
            };
        }
        metrics::counter!(m::BOT_BUDGET_WAITS).increment(1);
        let started = std::time::Instant::now();
        // Never closed, so this cannot fail (were it closed, the call would
        // simply go ahead unbudgeted).
        let place = semaphore.acquire_owned().await.ok();
        metrics::histogram!(m::BOT_BUDGET_WAIT_SECONDS).record(started.elapsed().as_secs_f64());
        BotPermit { _place: place }
    }

    fn semaphore(&self, tenant: &TenantId) -> Arc<Semaphore> {
        let mut tenants = self
            .tenants
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(live) = tenants.get(tenant).and_then(Weak::upgrade) {
            return live;
        }
        let semaphore = Arc::new(Semaphore::new(self.per_tenant));
        tenants.insert(tenant.clone(), Arc::downgrade(&semaphore));
        // Amortised: dead entries go whenever the map reaches a power of two.
        if tenants.len() >= 64 && tenants.len().is_power_of_two() {
            tenants.retain(|_, s| s.strong_count() > 0);
        }
        semaphore
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn t(raw: &str) -> TenantId {
        TenantId::parse(raw).unwrap()
    }

    #[tokio::test]
    async fn a_tenant_past_its_budget_waits_while_other_tenants_do_not() {
        let budget = BotBudget::new(2);
        let slow = t("slow");
        let first = budget.acquire(&slow).await;
        let _second = budget.acquire(&slow).await;

        let third = budget.acquire(&slow);
        tokio::pin!(third);
        let waited = tokio::time::timeout(Duration::from_millis(50), &mut third).await;
        assert!(waited.is_err(), "a third call of the same tenant must wait");

        let other = tokio::time::timeout(Duration::from_secs(5), budget.acquire(&t("quiet"))).await;
        assert!(other.is_ok(), "another tenant's call must not wait");

        drop(first);
        let got = tokio::time::timeout(Duration::from_secs(5), third).await;
        assert!(got.is_ok(), "a freed place goes to the waiting call");
    }

    #[tokio::test]
    async fn an_idle_tenant_leaves_nothing_behind() {
        let budget = BotBudget::new(1);
        for i in 0..200 {
            drop(budget.acquire(&t(&format!("tenant-{i}"))).await);
        }
        let live = budget.tenants.lock().unwrap().len();
        assert!(live <= 128, "{live} entries kept for idle tenants");
        // A tenant seen again starts with its full budget.
        let _one = budget.acquire(&t("tenant-3")).await;
    }
}
