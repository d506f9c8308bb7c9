//! The webhook listener's accept loop and its limits (issue 17): `axum::serve`
//! has no timer, so a client sending one header byte now and then held its
//! connection (and a descriptor) forever.
//!
//! - **Header read**: hyper's HTTP/1 `header_read_timeout`. Hyper starts that
//!   timer whenever the connection waits for a request head, so it bounds a
//!   new connection that sends nothing, a head that trickles, and a keep-alive
//!   connection that sits idle between requests.
//! - **Idle**: hyper has no separate keep-alive idle timer; the head timer
//!   above is it. An idle keep-alive connection is closed
//!   `SWITCHYARD_HTTP_HEADER_TIMEOUT` after its last answer, so there is no
//!   separate idle setting (one would be either ignored or would shorten the
//!   header bound).
//! - **Body read**: tower-http's `RequestBodyTimeoutLayer`; a body that has not
//!   arrived in full in time fails the read and the request is refused.
//! - **Connections**: a semaphore of `SWITCHYARD_HTTP_MAX_CONNECTIONS` permits.
//!   Over the cap the loop keeps accepting but closes the new connection at
//!   once (counted): the kernel backlog never fills with connections that
//!   wait unseen, and a client learns at once that it must retry.
//! - **Requests in flight**: tower's concurrency limit behind load-shed, so
//!   request number `SWITCHYARD_HTTP_MAX_IN_FLIGHT + 1` is answered 503 at once
//!   instead of queueing.
//!
//! On shutdown the loop stops accepting, every connection is told to finish
//! its request in flight and close, and [`serve`] returns once they have.

use std::{convert::Infallible, sync::Arc, time::Duration};

use axum::{
    Router,
    error_handling::HandleErrorLayer,
    http::StatusCode,
    response::{IntoResponse, Response},
};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore};
use tokio_util::{sync::CancellationToken, task::TaskTracker};
use tower::{BoxError, ServiceBuilder};
use tower_http::timeout::RequestBodyTimeoutLayer;

use crate::metrics as m;

/// The HTTP server's bounds (from [`crate::Settings`]).
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub header_timeout: Duration,
    pub body_timeout: Duration,
    pub max_connections: usize,
    pub max_in_flight: usize,
}

/// `router` with the body-read timeout and the in-flight limit applied.
pub fn limited(router: Router, limits: ServerLimits) -> Router {
    router.layer(
        ServiceBuilder::new()
            .layer(HandleErrorLayer::new(overloaded))
            .load_shed()
            .concurrency_limit(limits.max_in_flight)
            .layer(RequestBodyTimeoutLayer::new(limits.body_timeout)),
    )
}

async fn overloaded(error: BoxError) -> Response {
    if error.is::<tower::load_shed::error::Overloaded>() {
        m::shed();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "too many requests in flight; retry",
        )
            .into_response()
    } else {
        (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
    }
}

/// Accepts on `listener` until `shutdown`, serving `router` on each
/// connection within `limits`; then waits for the open connections to finish
/// their requests in flight.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServerLimits,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let connections = TaskTracker::new();
    let service = TowerToHyperService::new(router);
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true);
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let tcp = match accepted {
            Ok((tcp, _)) => tcp,
            Err(e) => {
                // Out of descriptors or a connection reset before accept:
                // wait a moment instead of spinning, keep serving.
                tracing::debug!(error = %e, "ingest: accept failed");
                m::accept_failed();
                tokio::select! {
                    () = shutdown.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(10)) => continue,
                }
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            // Over the cap: closed at once (dropping it), counted.
            m::connection_refused();
            drop(tcp);
            continue;
        };
        // Answers are small and must leave at once: no Nagle delay behind an
        // unacknowledged segment.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on a webhook connection");
        }
        let conn = http.serve_connection(TokioIo::new(tcp), service.clone());
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _permit = permit;
            let mut conn = std::pin::pin!(conn);
            let served = tokio::select! {
                served = conn.as_mut() => served,
                () = shutdown.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = served {
                // Header timeouts, resets, bad requests: the client's doing.
                tracing::debug!(error = %e, "ingest: webhook connection ended with an error");
            }
            Ok::<(), Infallible>(())
        });
    }
    drop(listener);
    connections.close();
    connections.wait().await;
    Ok(())
}
