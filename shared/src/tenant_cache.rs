//! Resolving a tenant id to its row, cached.
//!
//! Every lookup is by the id taken from the subject. Entries are dropped at
//! once when a change is announced (`control.tenant.<id>` by the operator
//! CLI, `control.bridge.<id>` by the router) and all of them when the NATS
//! connection comes back after a loss (announcements made meanwhile are
//! gone); the TTL bounds what an announcement lost otherwise costs. Absence
//! is cached too (an unknown tenant flooding us must not become a database
//! flood).
//!
//! Rows are read through [`TenantReads`]: the reads asked for while one is
//! under way share the next statement (a thousand tenants' first events at
//! a start).
//!
//! Each entry lives a random share of the TTL, between half and all of it:
//! rows read together (every tenant's first event after a start, a
//! reconnect's drop) would otherwise all expire together, and a thousand
//! tenants' re-reads at one moment would compete with the workers' steps
//! for the same pool (issue 20; suspected of the 1,000-tenant tail, which
//! turned out to be the cold start: this spreads the load, no latency gain
//! was measured).

use std::{collections::HashMap, sync::Arc, time::Duration};

use crate::{ids::TenantId, subjects, tenant_reads::TenantReads, tenants::Tenant};
use futures::StreamExt as _;
use sqlx::PgPool;
use tokio::{sync::RwLock, time::Instant};
use tokio_util::sync::CancellationToken;

/// How often [`TenantCache::follow_changes`] looks whether the NATS
/// connection came back (and the cache must be dropped).
const RECONNECT_CHECK: Duration = Duration::from_secs(1);

/// A cached row (or cached absence) and when it stops being fresh.
type CacheEntry = (Option<Arc<Tenant>>, Instant);

/// When an entry read at `now` stops being fresh: `ttl` scaled by `share`
/// taken into `[0.5, 1.0]` (callers pass a uniform random number in `[0, 1)`).
fn expiry(now: Instant, ttl: Duration, share: f64) -> Instant {
    now + ttl.mul_f64(0.5 + share.clamp(0.0, 1.0) / 2.0)
}

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
    /// The reads, group-committed ([`TenantReads`]); started on the first
    /// read, so a cache can be made outside a runtime.
    reads: Arc<tokio::sync::OnceCell<TenantReads>>,
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
            reads: Arc::default(),
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
        // Read under the tenant's row-level security scope, in one statement
        // with whatever other rows were asked for meanwhile.
        let reads = self
            .reads
            .get_or_init(|| async { TenantReads::start(self.db.clone()) })
            .await;
        let row = reads.read(tenant).await?.map(Arc::new);
        self.entries.write().await.insert(
            tenant.clone(),
            (
                row.clone(),
                expiry(Instant::now(), self.ttl, rand::random::<f64>()),
            ),
        );
        Ok(row)
    }

    /// The cached row (or absence) of `tenant` if it is still fresh.
    async fn fresh(&self, tenant: &TenantId) -> Option<Option<Arc<Tenant>>> {
        match self.entries.read().await.get(tenant) {
            Some((row, until)) if Instant::now() < *until => Some(row.clone()),
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

    /// Drops entries as their rows change: the operator CLI announces its
    /// changes on `control.tenant.<id>`, the router a bridge's new state on
    /// `control.bridge.<id>`. Core NATS loses what is published while this
    /// replica is disconnected, so the whole cache is dropped when the
    /// connection comes back; the TTL is then only the bound for an
    /// announcement lost while connected (a slow consumer), not the usual
    /// way a change arrives.
    pub async fn follow_changes(self, nats: async_nats::Client, shutdown: CancellationToken) {
        let subscribed = async {
            let tenants = nats.subscribe(subjects::TENANT_CHANGED_FILTER).await?;
            let bridges = nats.subscribe(subjects::BRIDGE_STATE_FILTER).await?;
            Ok::<_, async_nats::SubscribeError>(futures::stream::select(tenants, bridges))
        };
        let mut changes = match subscribed.await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot follow tenant changes; relying on the cache TTL");
                return;
            }
        };
        let mut watch = tokio::time::interval(RECONNECT_CHECK);
        watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // The client counts every connection it establishes: a count that
        // grew between two looks is a reconnect, however short the loss was
        // (looking at the connection state instead misses a loss and
        // reconnect that both fall between two looks).
        let stats = nats.statistics();
        let connects = || stats.connects.load(std::sync::atomic::Ordering::Relaxed);
        let mut seen = connects();
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = watch.tick() => {
                    let now = connects();
                    if now != seen {
                        // Announcements made meanwhile are lost: forget everything.
                        self.entries.write().await.clear();
                        tracing::info!("NATS connection back: tenant cache dropped (announcements may have been missed)");
                        seen = now;
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_read_together_expire_spread_over_the_second_half_of_the_ttl() {
        let now = Instant::now();
        let ttl = Duration::from_secs(30);
        let ends: Vec<Instant> = (0..1_000)
            .map(|_| expiry(now, ttl, rand::random::<f64>()))
            .collect();
        let first = *ends.iter().min().unwrap();
        let last = *ends.iter().max().unwrap();
        assert!(first >= now + ttl / 2, "none before half the TTL");
        assert!(last <= now + ttl, "none past the TTL");
        assert!(
            last - first >= ttl / 3,
            "a thousand reads at one moment expire over {:?}, not spread",
            last - first
        );
        assert_eq!(expiry(now, ttl, 0.0), now + ttl / 2);
        assert_eq!(expiry(now, ttl, 1.0), now + ttl);
    }
}
