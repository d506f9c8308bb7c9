//! Stuck pairing, noticed: every `SWITCHYARD_NOTIFY_STUCK_INTERVAL` the
//! tenants with notifications on whose bridge has waited for a QR scan or a
//! reconnection longer than `SWITCHYARD_NOTIFY_STUCK_AFTER` are told
//! (`pairing.stuck`), once per episode: the episode is the state's recording
//! time, remembered in `tenant_notifications.stuck_notified_for` after the
//! notification is stored. Replicas that notice the same episode at once
//! publish the same id, which the stream's duplicate window stores once.
//!
//! Why here and not in the silent-bridge watchdog: the watchdog probes the
//! provider within a share of the fleet budget and is off at 0 %; this
//! reads only our own table (the same facts `fleet stuck` lists) and costs
//! the provider nothing.

use std::time::Duration;

use sqlx::PgPool;
use switchyard_shared::{
    bridge_state::StuckKind,
    notifications::{self, Notification, NotificationEvent, target},
};
use tokio_util::sync::CancellationToken;

/// Looks for stuck bridges every `interval` until shutdown (never when
/// `after` is zero).
pub(super) async fn run(
    db: PgPool,
    js: async_nats::jetstream::Context,
    after: Duration,
    interval: Duration,
    shutdown: CancellationToken,
) {
    if after.is_zero() {
        return;
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let episodes = match target::stuck_unnotified(&db, after).await {
            Ok(episodes) => episodes,
            Err(e) => {
                tracing::debug!(error = %e, "stuck check skipped");
                continue;
            }
        };
        for episode in episodes {
            let Some(kind) = StuckKind::of(&episode.state) else {
                continue;
            };
            let event = NotificationEvent::PairingStuck {
                kind,
                for_seconds: episode.for_seconds,
            };
            let fact = episode.state_at.unix_timestamp_nanos().to_string();
            let notification = Notification::new(
                episode.tenant.clone(),
                time::OffsetDateTime::now_utc(),
                event,
                &fact,
            );
            if notifications::publish(&js, &notification).await
                && let Err(e) = target::mark_stuck_notified(&db, &episode).await
            {
                tracing::warn!(tenant.id = %episode.tenant, error = %e, "cannot record the stuck notification; it may be told again");
            }
        }
    }
}
