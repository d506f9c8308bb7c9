//! The tenant notifier: posts each tenant's notifications (`NOTIFY`, see
//! `switchyard_shared::notifications`) to that tenant's URL, signed with its
//! Standard Webhooks secret, at least once: acked only after a 2xx, retried
//! with backoff up to an attempt and age limit, then dead-lettered
//! (`dlq.notify.<tenant>`, `notification_undelivered`).
//!
//! Fair across tenants by construction: `NOTIFY` is read through the same
//! tenant lanes as the replies ([`switchyard_shared::lanes`]: partitions
//! outside, one lane per tenant inside, a backlog spilled to the tenant's
//! own durable lane), and each lane has one worker posting one notification
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

use std::sync::Arc;

use switchyard_shared::lanes::{Lanes, LanesParts};

pub use settings::NotifySettings;

/// Starts the notifier: the `NOTIFY` lanes, their workers and the stuck check.
pub async fn start(
    lanes: LanesParts,
    db: sqlx::PgPool,
    settings: NotifySettings,
) -> anyhow::Result<()> {
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
    let (js, shutdown, tasks) = (
        lanes.js.clone(),
        lanes.shutdown.clone(),
        lanes.tasks.clone(),
    );
    let work = Lanes::start(lanes).await?;
    tasks.spawn(worker::run(notifier, work, tasks.clone()));
    tasks.spawn(stuck::run(
        db,
        js,
        settings.stuck_after,
        settings.stuck_interval,
        shutdown,
    ));
    Ok(())
}
