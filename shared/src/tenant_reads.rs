//! Tenant rows read together: the reads behind [`crate::tenant_cache`],
//! group-committed.
//!
//! A service reads a tenant's row on the tenant's first event and again once
//! per cache TTL. At a start over a thousand tenants that is a thousand
//! reads within seconds in each of ingest, router and sender (issue 20: the
//! first events' latency set the p99 of every 1,000-tenant run), each a
//! pooled round trip of its own while the machine is busiest. Here every
//! read asked while another is under way joins the next statement
//! ([`crate::group_commit`], `switchyard_tenant_rows`, migration 0020): each
//! row is still read under its own tenant's scope.
//!
//! One flush slot, no lingering, and the connection given back as soon as
//! nothing is queued: reads are rare once the cache is warm, so batches come
//! only from reads that queued up behind one under way, and an idle service
//! holds no connection for them.

use std::time::Duration;

use sqlx::{PgConnection, PgPool};

use crate::{
    group_commit::{GroupCommit, Shape, Statement},
    ids::TenantId,
    tenants::{self, Tenant},
};

/// How tenant reads are batched (see the module doc).
const SHAPE: Shape = Shape {
    slots: 1,
    max_batch: 256,
    linger: Duration::ZERO,
    hold_idle: Duration::ZERO,
};

/// The group-committed tenant read. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TenantReads {
    reads: GroupCommit<ReadRows>,
}

impl TenantReads {
    /// Starts the flush slot on `pool` (current tokio runtime).
    pub fn start(pool: PgPool) -> Self {
        Self {
            reads: GroupCommit::start(pool, ReadRows, SHAPE),
        }
    }

    /// The tenant's row, `None` when no such tenant exists.
    pub async fn read(&self, tenant: &TenantId) -> Result<Option<Tenant>, sqlx::Error> {
        self.reads.run(tenant.clone()).await?
    }
}

#[derive(Debug)]
struct ReadRows;

impl Statement for ReadRows {
    const NAME: &'static str = "tenant_row";
    type Item = TenantId;
    /// Each row decoded on its own: one this build cannot read fails its
    /// own caller, not the batch.
    type Answer = Result<Option<Tenant>, sqlx::Error>;

    async fn run(
        &self,
        connection: &mut PgConnection,
        items: &[TenantId],
    ) -> Result<Vec<Self::Answer>, sqlx::Error> {
        tenants::fetch_scoped_many(connection, items).await
    }
}
