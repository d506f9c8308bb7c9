//! Keeping a message alive while its delivery runs.
//!
//! A delivery holds its message from the moment it leaves the lane until it
//! is acked, dead-lettered or put back: the ledger claim, the provider call
//! (up to `SWITCHYARD_WA_TIMEOUT`, 10 s, twice the default `ack_wait`), the
//! ledger write and its retries. Without progress acks JetStream would
//! redeliver it meanwhile (to another replica once its partition moved), and
//! a second copy would be on its way while the first send is still running.
//! Same cadence as every other held message (`KEEP_ALIVE_EVERY`, well below
//! the smallest `ack_wait` allowed); the router keeps its turns alive the
//! same way (`keep_alive_during` in its runner).

use std::future::Future;

use switchyard_shared::lanes::{LaneMessage, message::KEEP_ALIVE_EVERY};

/// Runs `work`, resetting `message`'s redelivery timer every
/// [`KEEP_ALIVE_EVERY`] until it finishes.
pub(super) async fn keep_alive_during<F: Future>(message: &LaneMessage, work: F) -> F::Output {
    let mut work = std::pin::pin!(work);
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + KEEP_ALIVE_EVERY,
        KEEP_ALIVE_EVERY,
    );
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = tick.tick() => message.keep_alive().await,
        }
    }
}
