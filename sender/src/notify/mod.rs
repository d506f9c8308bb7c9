//! The tenant notifier: posts each tenant's notifications (`NOTIFY`, see
//! `switchyard_shared::notifications`) to that tenant's URL, signed with its
//! Standard Webhooks secret, at least once: acked only after a 2xx, retried
//! with backoff up to an attempt and age limit, then dead-lettered
//! (`dlq.notify.<tenant>`, `notification_undelivered`).
//!
//! Fair across tenants by construction: `NOTIFY` is read through the same
//! tenant lanes as the replies ([`switchyard_shared::lanes`]: one partition
//! outside, `subjects::NOTIFY_PARTITIONS`; one lane per tenant inside, a
//! backlog spilled to the tenant's own durable lane), and each lane has one worker posting one notification
//! at a time with a bounded per-request timeout ([`worker`]). A failing or
//! hanging endpoint holds only its tenant's lane.
//!
//! Why in the sender: it is the outbound side and already reads lanes; but
//! the notifier shares nothing of the send path: its own HTTP client
//! ([`post`]), never the WA Bridges client or the fleet budget.
//!
//! Rooms: [`settings`], [`post`] (one signed POST), [`worker`] (a tenant's
//! lane to final states), [`stuck`] (noticing stuck pairing).

pub mod post;
pub mod settings;
mod stuck;
mod worker;

use std::{sync::Arc, time::Duration};

use switchyard_shared::lanes::{Lanes, LanesParts};

pub use settings::NotifySettings;

/// The longest wait between two tries to start the `NOTIFY` lanes.
const START_RETRY_MAX: Duration = Duration::from_secs(30);

/// Starts the notifier: the `NOTIFY` lanes, their workers and the stuck
/// check. Only a bad setting fails here: the lanes are started in the
/// background and retried until they start, so a cluster too busy to create
/// their consumers in time (a fresh 3-node cluster under load) never stops
/// the sender's replies, which do not depend on the notifier.
pub fn start(lanes: LanesParts, db: sqlx::PgPool, settings: NotifySettings) -> anyhow::Result<()> {
    if !settings.enabled {
        tracing::info!("tenant notifier off (SWITCHYARD_NOTIFY_ENABLED=false)");
        return Ok(());
    }
    let notifier = Arc::new(worker::Notifier {
        db: db.clone(),
        js: lanes.js.clone(),
        poster: post::Poster::new(settings.egress.clone(), settings.timeout)?,
        retry: settings.retry,
        shutdown: lanes.shutdown.clone(),
    });
    let tasks = lanes.tasks.clone();
    tasks.spawn(run(lanes, notifier, db, settings));
    Ok(())
}

async fn run(
    lanes: LanesParts,
    notifier: Arc<worker::Notifier>,
    db: sqlx::PgPool,
    settings: NotifySettings,
) {
    let (js, shutdown, tasks) = (
        lanes.js.clone(),
        lanes.shutdown.clone(),
        lanes.tasks.clone(),
    );
    let mut wait = Duration::from_secs(1);
    let work = loop {
        match Lanes::start(lanes.clone()).await {
            Ok(work) => break work,
            Err(e) => {
                tracing::warn!(error = %e, retry.delay_ms = wait.as_millis() as u64, "cannot start the notification lanes yet; retrying (replies are not affected)");
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                }
                wait = wait.saturating_mul(2).min(START_RETRY_MAX);
            }
        }
    };
    tasks.spawn(worker::run(notifier, work, tasks.clone()));
    stuck::run(
        db,
        js,
        settings.stuck_after,
        settings.stuck_interval,
        shutdown,
    )
    .await;
}
