//! Flapping a bridge on a schedule: linked-device sessions drop and come back
//! (WhatsApp reconnects them about every 30 minutes by design). Tests compress
//! the period to seconds. Each drop and return posts the provider's
//! `disconnected` / `connected` webhook, as a real flap would.

use std::{sync::Arc, time::Duration};

use tokio_util::sync::{CancellationToken, DropGuard};

use crate::state::Shared;

/// A running flap schedule; dropping it (or [`Flapping::stop`]) ends it with
/// the bridge left connected.
pub struct Flapping {
    flips: Arc<std::sync::atomic::AtomicU32>,
    _stop: DropGuard,
}

impl std::fmt::Debug for Flapping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Flapping")
            .field("drops", &self.drops())
            .finish()
    }
}

impl Flapping {
    /// How many times the bridge dropped so far.
    pub fn drops(&self) -> u32 {
        self.flips.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn stop(self) {}
}

/// Every `period`, drops the session for `down_for` (notifying both changes).
pub(crate) fn start(
    shared: Arc<Shared>,
    customer_ref: String,
    period: Duration,
    down_for: Duration,
) -> Flapping {
    let stop = CancellationToken::new();
    let flips = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let (token, counter) = (stop.clone(), Arc::clone(&flips));
    let up_for = period.saturating_sub(down_for);
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = token.cancelled() => break,
                _ = shared.shutdown.cancelled() => return,
                _ = tokio::time::sleep(up_for) => {}
            }
            if shared
                .set_connected(&customer_ref, false, true)
                .await
                .is_err()
            {
                return;
            }
            counter.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tokio::select! {
                _ = shared.shutdown.cancelled() => return,
                _ = tokio::time::sleep(down_for) => {}
            }
            if shared
                .set_connected(&customer_ref, true, true)
                .await
                .is_err()
            {
                return;
            }
            if token.is_cancelled() {
                break;
            }
        }
    });
    Flapping {
        flips,
        _stop: stop.drop_guard(),
    }
}
