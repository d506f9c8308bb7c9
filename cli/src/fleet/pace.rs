//! One provider call made the way `fleet provision` makes its calls: a `429`
//! waits for `Retry-After` (never counted as a failure), a transient failure
//! is tried again with exponential backoff, and Ctrl-C (`stop`) ends any wait.

use std::{future::Future, time::Duration};

use switchyard_shared::wabridges::WaError;
use tokio_util::sync::CancellationToken;

/// Transient failures tried per call before it counts as failed.
const TRANSIENT_ATTEMPTS: u32 = 3;

/// How one paced call ended.
#[derive(Debug)]
pub enum Paced<T> {
    Done(Result<T, WaError>),
    /// `stop` was cancelled while waiting.
    Interrupted,
}

/// Calls `call` until it answers, honouring `Retry-After`; `waits` counts the rate-limit waits.
pub async fn paced<T, F, Fut>(stop: &CancellationToken, waits: &mut u32, mut call: F) -> Paced<T>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, WaError>>,
{
    let mut transient = 0;
    loop {
        if stop.is_cancelled() {
            return Paced::Interrupted;
        }
        let pause = match call().await {
            Err(WaError::RateLimited { retry_after }) => {
                *waits += 1;
                retry_after
            }
            Err(WaError::Transient { .. } | WaError::Timeout { .. })
                if transient + 1 < TRANSIENT_ATTEMPTS =>
            {
                transient += 1;
                Duration::from_millis(500 * 2u64.pow(transient))
            }
            done => return Paced::Done(done),
        };
        tokio::select! {
            _ = stop.cancelled() => return Paced::Interrupted,
            _ = tokio::time::sleep(pause) => {}
        }
    }
}

/// A token cancelled by Ctrl-C, and the task listening for it (abort it when done).
pub fn ctrl_c() -> (CancellationToken, tokio::task::JoinHandle<()>) {
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    let task = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    (stop, task)
}
