//! Resolving a tenant id to its row, cached.
//!
//! Every lookup is by the id taken from the subject. Entries expire after a
//! short TTL and are dropped at once when the operator CLI announces a change
//! on `control.tenant.<id>`, so a suspension reaches every replica within
//! seconds even if the announcement is lost. Absence is cached too (an
//! unknown tenant flooding us must not become a database flood).

use std::{collections::HashMap, sync::Arc, time::Duration};

use crate::{db, ids::TenantId, subjects, tenants, tenants::Tenant};
use futures::StreamExt as _;
use sqlx::PgPool;
use tokio::{sync::RwLock, time::Instant};
use tokio_util::sync::CancellationToken;

/// A cached row (or cached absence) and when it was read.
type CacheEntry = (Option<Arc<Tenant>>, Instant);

/// A tenant lookup cache shared by the router's workers (and by ingest's
/// webhook credential check).
#[derive(Clone)]
pub struct TenantCache {
    db: PgPool,
    ttl: Duration,
    entries: Arc<RwLock<HashMap<TenantId, CacheEntry>>>,
    /// One read of a tenant's row at a time: a burst of webhooks for a
    /// tenant whose entry is missing or expired makes one database read, not
    /// one per request (ingest checks every webhook's credential here).
    loading: Arc<std::sync::Mutex<HashMap<TenantId, Arc<tokio::sync::Mutex<()>>>>>,
}

impl std::fmt::Debug for TenantCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantCache")
            .field("ttl", &self.ttl)
            .finish()
    }
}

impl TenantCache {
    pub fn new(db: PgPool, ttl: Duration) -> Self {
        Self {
            db,
            ttl,
            entries: Arc::default(),
            loading: Arc::default(),
        }
    }

    /// The tenant's row, `None` when no such tenant exists.
    pub async fn resolve(&self, tenant: &TenantId) -> Result<Option<Arc<Tenant>>, sqlx::Error> {
        if let Some(row) = self.fresh(tenant).await {
            return Ok(row);
        }
        let lock = {
            let mut loading = self.loading.lock().unwrap_or_else(|e| e.into_inner());
            Arc::clone(loading.entry(tenant.clone()).or_default())
        };
        let _turn = lock.lock().await;
        // Whoever held the turn before us may have read it already.
        if let Some(row) = self.fresh(tenant).await {
            return Ok(row);
        }
        // Read under the tenant's row-level security scope.
        let mut tx = db::begin_for_tenant(&self.db, tenant).await?;
        let row = tenants::fetch(&mut *tx, tenant).await?.map(Arc::new);
        tx.commit().await?;
        self.entries
            .write()
            .await
            .insert(tenant.clone(), (row.clone(), Instant::now()));
        Ok(row)
    }

    /// The cached row (or absence) of `tenant` if it is younger than the TTL.
    async fn fresh(&self, tenant: &TenantId) -> Option<Option<Arc<Tenant>>> {
        match self.entries.read().await.get(tenant) {
            Some((row, fetched)) if fetched.elapsed() < self.ttl => Some(row.clone()),
            _ => None,
        }
    }

    /// The row last read for `tenant`, however old (`None`: never read, or
    /// forgotten since): what a caller may fall back on while the database
    /// cannot be reached.
    pub async fn last_known(&self, tenant: &TenantId) -> Option<Option<Arc<Tenant>>> {
        self.entries
            .read()
            .await
            .get(tenant)
            .map(|(row, _)| row.clone())
    }

    /// Forgets one tenant (its row changed).
    pub async fn invalidate(&self, tenant: &TenantId) {
        self.entries.write().await.remove(tenant);
    }

    /// Drops entries as the operator CLI announces tenant changes.
    pub async fn follow_changes(self, nats: async_nats::Client, shutdown: CancellationToken) {
        let mut changes = match nats.subscribe(subjects::TENANT_CHANGED_FILTER).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot follow tenant changes; relying on the cache TTL");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                change = changes.next() => match change {
                    Some(message) => {
                        if let Some(tenant) = subjects::tenant_of(&message.subject) {
                            self.invalidate(&tenant).await;
                        }
                    }
                    None => return,
                }
            }
        }
    }
}
