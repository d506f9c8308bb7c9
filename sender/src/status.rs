//! The sender's status publisher: takes the dispatcher's latest snapshot of
//! what this replica holds per tenant, adds each tenant's spilled replies
//! (the live and bulk spill lanes' per-subject counts, one request each) and
//! writes the records through the shared [`StatusPublisher`] (which decides
//! what is news, what needs a refresh, and the write budget).

use std::collections::HashMap;

use switchyard_shared::{
    ids::TenantId,
    lanes::spill,
    subjects::Direction,
    tenant_status::{StatusPublisher, StatusRecord, StatusSettings},
};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Runs until shutdown, one cycle per snapshot.
pub async fn publish(
    js: async_nats::jetstream::Context,
    replicas: usize,
    settings: StatusSettings,
    mut snapshots: watch::Receiver<Vec<StatusRecord>>,
    shutdown: CancellationToken,
) {
    let Some(mut publisher) =
        StatusPublisher::open_eventually(&js, replicas, settings, &shutdown).await
    else {
        return;
    };
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            changed = snapshots.changed() => if changed.is_err() { return },
        }
        let mut records = snapshots.borrow_and_update().clone();
        if !records.is_empty() {
            match spilled(&js).await {
                Ok(counts) => {
                    for r in &mut records {
                        r.spilled = counts.get(&r.tenant).copied().unwrap_or(0);
                    }
                }
                // Counts stay 0 this cycle; the holds and timestamps still go out.
                Err(e) => tracing::debug!(error = %e, "cannot read spill lane counts"),
            }
        }
        publisher
            .publish(records, tokio::time::Instant::now())
            .await;
    }
}

/// Replies waiting in every tenant's live and bulk spill lanes.
async fn spilled(
    js: &async_nats::jetstream::Context,
) -> Result<HashMap<TenantId, u64>, async_nats::Error> {
    let mut counts = HashMap::new();
    for direction in [Direction::Outbound, Direction::Bulk] {
        for (tenant, n) in spill::backlogs(js, direction).await? {
            *counts.entry(tenant).or_default() += n;
        }
    }
    Ok(counts)
}
