//! The small HTTP server every binary runs beside its real work:
//! `/healthz` (the process is alive), `/readyz` (its dependencies are usable)
//! and `/metrics` (Prometheus text).

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex, OnceLock},
};

use axum::{Json, Router, extract::State, http::StatusCode, response::IntoResponse, routing::get};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

static PROMETHEUS: OnceLock<PrometheusHandle> = OnceLock::new();

/// The process-wide Prometheus recorder, installed on first use.
pub fn metrics_handle() -> &'static PrometheusHandle {
    PROMETHEUS.get_or_init(|| {
        // `set_buckets` only refuses an empty list, and this one is a constant.
        #[allow(clippy::expect_used)]
        let recorder = PrometheusBuilder::new()
            .set_buckets(&[
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0,
            ])
            .expect("static bucket list is non-empty")
            .set_buckets_for_metric(
                Matcher::Full(crate::metrics::TENANT_REPLY_SECONDS.to_owned()),
                crate::metrics::TENANT_REPLY_BUCKETS,
            )
            .expect("static bucket list is non-empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (tests); the handle still renders ours.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Named readiness checks; the service is ready when all are true, except
/// the checks named together by [`Readiness::any_of`], of which one is enough.
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<Mutex<BTreeMap<&'static str, bool>>>,
    any_of: Arc<Mutex<Vec<&'static str>>>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness")
            .field("checks", &self.snapshot())
            .finish()
    }
}

impl Readiness {
    pub fn set(&self, check: &'static str, ready: bool) {
        if let Ok(mut checks) = self.checks.lock() {
            checks.insert(check, ready);
        }
    }

    pub fn snapshot(&self) -> BTreeMap<&'static str, bool> {
        self.checks.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// Makes `checks` gate readiness together: ready while at least one of
    /// them passes (a service that can work on with one of two dependencies
    /// gone). They still show apart in `/readyz`.
    pub fn any_of(&self, checks: &[&'static str]) {
        if let Ok(mut any_of) = self.any_of.lock() {
            *any_of = checks.to_vec();
        }
    }

    pub fn is_ready(&self) -> bool {
        let checks = self.snapshot();
        let any_of = self.any_of.lock().map(|a| a.clone()).unwrap_or_default();
        let all = checks
            .iter()
            .filter(|(name, _)| !any_of.contains(name))
            .all(|(_, ok)| *ok);
        let one = any_of.is_empty() || any_of.iter().any(|name| checks.get(name) == Some(&true));
        !checks.is_empty() && all && one
    }
}

/// The ops routes, to serve on their own listener or merge into a service's router.
pub fn router(readiness: Readiness) -> Router {
    metrics_handle();
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(|| async { metrics_handle().render() }))
        .with_state(readiness)
}

async fn readyz(State(readiness): State<Readiness>) -> impl IntoResponse {
    let status = if readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, Json(readiness.snapshot()))
}

/// Serves `router` on `listener` until `shutdown` is cancelled.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown.cancelled_owned())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn checks_named_together_need_only_one_to_pass() {
        let readiness = Readiness::default();
        assert!(!readiness.is_ready(), "nothing known yet");
        readiness.set("service", true);
        readiness.set("nats", true);
        readiness.set("postgres", false);
        assert!(!readiness.is_ready(), "every check by default");
        readiness.any_of(&["nats", "postgres"]);
        assert!(readiness.is_ready(), "one of the two is enough");
        readiness.set("nats", false);
        assert!(!readiness.is_ready(), "neither");
        readiness.set("postgres", true);
        assert!(readiness.is_ready());
        readiness.set("service", false);
        assert!(!readiness.is_ready(), "the others still all count");
        assert_eq!(
            readiness.snapshot().get("nats"),
            Some(&false),
            "shown apart"
        );
    }
}
