//! How promptly the service's async runtime runs what is ready to run.
//!
//! A task that is woken but not polled for a while is invisible to every
//! other metric: a database statement "takes" 250 ms when the task that
//! sent it is not polled for 250 ms after the answer came. This probe
//! measures that wait the way an event-loop lag monitor does: every
//! [`PROBE_EVERY`] its timer is due, and how late it fires is the wait of a
//! task woken by the runtime's driver (timers and I/O share it) before its
//! first poll (`switchyard_runtime_timer_lateness_seconds`). It also exports
//! the runtime's own stable counters (tokio's `RuntimeMetrics`: time its
//! workers were busy, tasks alive, the global queue's depth).
//!
//! Issue 20 used it to rule the runtime out: at 100 events/s over 1,000
//! tenants the router's timer fired 1.4 ms late on average while its steps
//! waited a second for a database connection (the load tool's bursts, see
//! `docs/benchmarks/cost.md`). Hand-written because no kept crate exports
//! tokio's runtime metrics to the `metrics` facade without `tokio_unstable`.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// How often the probe measures (one timer wake-up a second: nothing at idle).
pub const PROBE_EVERY: Duration = Duration::from_secs(1);

/// How late the probe's timer fired.
pub const TIMER_LATENESS_SECONDS: &str = "switchyard_runtime_timer_lateness_seconds";
/// Seconds the runtime's worker threads spent busy since start, summed over
/// workers (its rate over the number of workers is how busy the runtime is;
/// a gauge because the facade's counters count whole units).
pub const BUSY_SECONDS: &str = "switchyard_runtime_busy_seconds";
/// Tasks alive in the runtime.
pub const ALIVE_TASKS: &str = "switchyard_runtime_alive_tasks";
/// Tasks waiting in the runtime's global (injection) queue.
pub const GLOBAL_QUEUE_DEPTH: &str = "switchyard_runtime_global_queue_depth";
/// Worker threads of the runtime.
pub const WORKERS: &str = "switchyard_runtime_workers";

/// Probes the current runtime every [`PROBE_EVERY`] until `shutdown`.
pub async fn run(shutdown: CancellationToken) {
    probe(PROBE_EVERY, shutdown).await;
}

async fn probe(every: Duration, shutdown: CancellationToken) {
    let handle = tokio::runtime::Handle::current();
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let due = tokio::select! {
            _ = shutdown.cancelled() => return,
            due = tick.tick() => due,
        };
        metrics::histogram!(TIMER_LATENESS_SECONDS).record(due.elapsed().as_secs_f64());
        let runtime = handle.metrics();
        let workers = runtime.num_workers();
        let busy: Duration = (0..workers)
            .map(|w| runtime.worker_total_busy_duration(w))
            .sum();
        metrics::gauge!(BUSY_SECONDS).set(busy.as_secs_f64());
        metrics::gauge!(WORKERS).set(workers as f64);
        metrics::gauge!(ALIVE_TASKS).set(runtime.num_alive_tasks() as f64);
        metrics::gauge!(GLOBAL_QUEUE_DEPTH).set(runtime.global_queue_depth() as f64);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use metrics_exporter_prometheus::PrometheusBuilder;

    use super::*;

    /// The sum of a histogram's samples in Prometheus text.
    fn sum_of(text: &str, name: &str) -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name}_sum ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0.0)
    }

    #[test]
    fn a_blocked_runtime_shows_as_late_timers() {
        let recorder = PrometheusBuilder::new().build_recorder();
        let handle = recorder.handle();
        let _local = metrics::set_default_local_recorder(&recorder);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap_or_else(|e| panic!("runtime: {e}"));
        runtime.block_on(async {
            let stop = CancellationToken::new();
            let probing = tokio::spawn(probe(Duration::from_millis(20), stop.clone()));
            // A task that holds the only worker thread without yielding: the
            // probe's timer comes due meanwhile and fires only afterwards.
            tokio::spawn(async { std::thread::sleep(Duration::from_millis(300)) });
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                let late = sum_of(&handle.render(), TIMER_LATENESS_SECONDS);
                if late >= 0.2 {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "the probe saw {late} s of lateness"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            let text = handle.render();
            assert!(text.contains(&format!("{WORKERS} 1")), "{text}");
            stop.cancel();
            let _ = probing.await;
        });
    }
}
