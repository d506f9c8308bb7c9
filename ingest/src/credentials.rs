//! Whether a tenant still accepts a webhook token we issued: the tenant
//! row's credential generation (`webhook_credential`), read through the
//! tenant cache, so a webhook costs no database read beyond one per tenant
//! per cache TTL. The cache drops a tenant when the CLI announces a change on
//! `control.tenant.<id>` (a rotation does), on every replica.
//!
//! Only a token whose MAC is valid reaches this check, so nobody without the
//! server secret can make ingest read the database or fill the cache.
//!
//! The rule: a token is refused only when the row says its generation was
//! rotated away (older than the previous one, or the previous one after its
//! window). Everything else we issued is accepted, because WA Bridges never
//! retries a refused event:
//! - a tenant without a row: as before rotation existed (the router drops
//!   unknown tenants and counts them);
//! - a generation above the row's: this replica's row is older than the
//!   rotation; accepted, and the row is read again on the next webhook;
//! - the database unreachable (or slower than the lookup timeout): the last
//!   row read, however old, decides; with none, the token is accepted and a
//!   warning says so. After a failed read, reads are skipped for
//!   [`DATABASE_BACKOFF`], so an outage does not add the timeout to every
//!   webhook.

use std::{
    sync::{
        Arc,
        atomic::{AtomicI64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use switchyard_shared::{
    ids::TenantId, tenant_cache::TenantCache, tenants::Tenant, webhook_auth::Generation,
    webhook_credential::Acceptance,
};

/// How long reads are skipped after the database failed one.
pub const DATABASE_BACKOFF: Duration = Duration::from_secs(2);
/// At most one warning of each kind per this interval.
const WARN_INTERVAL_MS: i64 = 10_000;

/// The per-tenant credential check, shared by every request.
#[derive(Clone)]
pub struct Credentials {
    tenants: TenantCache,
    lookup_timeout: Duration,
    state: Arc<State>,
}

#[derive(Default)]
struct State {
    /// Unix ms before which the database is not asked (it just failed).
    skip_reads_until_ms: AtomicI64,
    /// Unix ms of the last "database unreachable" warning.
    warned_unchecked_ms: AtomicI64,
    /// Unix ms of the last "previous URL still in use" line.
    warned_previous_ms: AtomicI64,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("lookup_timeout", &self.lookup_timeout)
            .finish_non_exhaustive()
    }
}

/// What the tenant row said, or that it could not be read.
enum Row {
    Read(Option<Arc<Tenant>>),
    Unreadable,
}

impl Credentials {
    pub fn new(tenants: TenantCache, lookup_timeout: Duration) -> Self {
        Self {
            tenants,
            lookup_timeout,
            state: Arc::default(),
        }
    }

    /// Whether `tenant` accepts a token of `generation` (whose MAC was valid).
    pub async fn admits(&self, tenant: &TenantId, generation: Generation) -> bool {
        let now = now_ms();
        let row = match self.row(tenant, now).await {
            Row::Read(row) => row,
            Row::Unreadable => {
                if once_per_interval(&self.state.warned_unchecked_ms, now) {
                    tracing::warn!(tenant.id = %tenant, webhook.generation = %generation, "tenant row unreadable and not cached; accepting a webhook token we issued without checking its rotation");
                }
                return true;
            }
        };
        let Some(row) = row else {
            return true;
        };
        match row.webhook.judge(generation, now) {
            Acceptance::Current => true,
            Acceptance::Previous => {
                if once_per_interval(&self.state.warned_previous_ms, now) {
                    tracing::info!(tenant.id = %tenant, webhook.generation = %generation, "webhook arrived on a tenant's previous URL (accepted until its rotation window ends); is the bridge re-pointed?");
                }
                true
            }
            Acceptance::Newer => {
                self.tenants.invalidate(tenant).await;
                true
            }
            Acceptance::Refused => false,
        }
    }

    async fn row(&self, tenant: &TenantId, now: i64) -> Row {
        if now >= self.state.skip_reads_until_ms.load(Ordering::Relaxed) {
            match tokio::time::timeout(self.lookup_timeout, self.tenants.resolve(tenant)).await {
                Ok(Ok(row)) => return Row::Read(row),
                Ok(Err(e)) => {
                    tracing::warn!(tenant.id = %tenant, error = %e, "cannot read the tenant row for its webhook credential; using the last one read");
                }
                Err(_) => {
                    tracing::warn!(tenant.id = %tenant, "reading the tenant row for its webhook credential timed out; using the last one read");
                }
            }
            let backoff = i64::try_from(DATABASE_BACKOFF.as_millis()).unwrap_or(i64::MAX);
            self.state
                .skip_reads_until_ms
                .store(now.saturating_add(backoff), Ordering::Relaxed);
        }
        match self.tenants.last_known(tenant).await {
            Some(row) => Row::Read(row),
            None => Row::Unreadable,
        }
    }
}

/// Whether a line may be written now (and, if so, records that it was).
fn once_per_interval(last: &AtomicI64, now: i64) -> bool {
    let before = last.load(Ordering::Relaxed);
    now.saturating_sub(before) >= WARN_INTERVAL_MS
        && last
            .compare_exchange(before, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
