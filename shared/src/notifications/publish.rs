//! Putting a notification into the `NOTIFY` stream, where the notifier
//! takes it from. Called where things happen (bridge state recorded, a
//! reply dead-lettered, a restriction met, a stuck bridge noticed), always
//! after the fact itself is durable; a failed publish is retried a few times
//! and then logged, never returned: a notification must not fail or repeat
//! the work it reports.

use std::time::Duration;

use async_nats::HeaderMap;

use crate::{metrics as m, notifications::Notification, subjects};

/// Publishes tried before a notification is given up (logged and counted).
const ATTEMPTS: u32 = 3;

/// Publishes `notification` with its id as `Nats-Msg-Id` (a repeat within
/// the duplicate window is stored once) and waits for the stream's ack.
/// Returns whether it was stored.
pub async fn publish(js: &async_nats::jetstream::Context, notification: &Notification) -> bool {
    let body = bytes::Bytes::from(notification.body());
    let mut last_error = String::new();
    for attempt in 1..=ATTEMPTS {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, notification.id());
        let stored = async {
            js.publish_with_headers(
                subjects::notify(&notification.tenant),
                headers,
                body.clone(),
            )
            .await?
            .await
            .map_err(async_nats::Error::from)
        }
        .await;
        match stored {
            Ok(_) => {
                metrics::counter!(m::NOTIFICATIONS_PUBLISHED, "type" => notification.event.kind())
                    .increment(1);
                return true;
            }
            Err(e) => last_error = e.to_string(),
        }
        if attempt < ATTEMPTS {
            tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
        }
    }
    metrics::counter!(m::NOTIFICATIONS_NOT_PUBLISHED, "type" => notification.event.kind())
        .increment(1);
    tracing::warn!(tenant.id = %notification.tenant, notification.id = notification.id(), notification.kind = notification.event.kind(), error = %last_error, "cannot publish a tenant notification; it is lost");
    false
}

/// Registers, at 0, the lost-notification counter for every type: the alert
/// on it (`SwitchyardNotificationsNotPublished`) and a dashboard see the
/// series before the first loss. Called by every service that publishes.
pub fn register_metrics() {
    for kind in super::NotificationEvent::KINDS {
        metrics::counter!(m::NOTIFICATIONS_NOT_PUBLISHED, "type" => kind).absolute(0);
    }
}
