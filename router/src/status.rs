//! The router's status publisher: every `SWITCHYARD_STATUS_INTERVAL`, one
//! record per tenant this replica took an event of (or dead-lettered one)
//! since the last cycle, and per tenant whose inbound spill lane holds a
//! backlog (the stream's per-subject counts, one request), written through
//! the shared [`StatusPublisher`]. What a router holds is the tenant's last
//! event in, its recent dead letters and its inbound backlog; takeovers live
//! in PostgreSQL, where `switchyard status` reads them.

use std::collections::BTreeMap;

use switchyard_shared::{
    ids::TenantId,
    lanes::spill,
    subjects::Direction,
    tenant_status::{
        Activity, StatusPublisher, StatusRecord, StatusService, StatusSettings, record::now_ms,
    },
};
use tokio_util::sync::CancellationToken;

/// Runs until shutdown.
pub async fn publish(
    js: async_nats::jetstream::Context,
    replicas: usize,
    settings: StatusSettings,
    activity: Activity,
    replica: String,
    shutdown: CancellationToken,
) {
    let Some(mut publisher) =
        StatusPublisher::open_eventually(&js, replicas, settings, &shutdown).await
    else {
        return;
    };
    let mut tick = tokio::time::interval(publisher.settings().interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let now = now_ms();
        let mut tenants: BTreeMap<TenantId, u64> = activity
            .take_touched(now)
            .into_iter()
            .map(|t| (t, 0))
            .collect();
        match spill::backlogs(&js, Direction::Inbound).await {
            Ok(backlogs) => tenants.extend(backlogs),
            Err(e) => tracing::debug!(error = %e, "cannot read spill lane counts"),
        }
        let records = tenants
            .into_iter()
            .map(|(tenant, spilled)| {
                let recent = activity.recent(&tenant, now);
                StatusRecord {
                    spilled,
                    last_event_in_ms: recent.last_in_ms,
                    dead_letters_last_hour: recent.dead_letters_last_hour,
                    ..StatusRecord::new(tenant, StatusService::Router, &replica, now)
                }
            })
            .collect();
        publisher
            .publish(records, tokio::time::Instant::now())
            .await;
    }
}
