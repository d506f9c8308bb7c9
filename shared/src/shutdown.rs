//! Graceful shutdown: one cancellation token per service, cancelled by SIGTERM
//! or SIGINT (or by a test), and a task tracker to drain in-flight work with a
//! deadline. Workers check the token only between messages, so a message is
//! either fully handled (acked) or left for redelivery, never half-done.

use std::time::Duration;

use tokio_util::{sync::CancellationToken, task::TaskTracker};

/// Cancels `token` on the first SIGTERM or SIGINT.
pub fn cancel_on_signal(token: CancellationToken) {
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown signal received; draining");
        token.cancel();
    });
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only SIGINT stops this process");
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Waits for every tracked task, at most `grace`. Returns whether all finished.
pub async fn drain(tracker: &TaskTracker, grace: Duration) -> bool {
    tracker.close();
    match tokio::time::timeout(grace, tracker.wait()).await {
        Ok(()) => true,
        Err(_) => {
            tracing::warn!(
                remaining = tracker.len(),
                grace_ms = grace.as_millis() as u64,
                "drain deadline passed; abandoning unfinished tasks (their messages will be redelivered)"
            );
            false
        }
    }
}
