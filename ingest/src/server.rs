//! The webhook listener's accept loop and its limits (issue 17): `axum::serve`
//! has no timer, so a client sending one header byte now and then held its
//! connection (and a descriptor) forever.
//!
//! - **Header read**: [`crate::head_clock`] (`SWITCHYARD_HTTP_HEADER_TIMEOUT`):
//!   a new connection's first head, and every later head from its first
//!   byte, must arrive in time, so a connection that sends nothing and a head
//!   that trickles are both cut.
//! - **Idle**: hyper's HTTP/1 `header_read_timeout`, which runs whenever a
//!   connection waits for a head, set to `SWITCHYARD_HTTP_IDLE_TIMEOUT`: a
//!   kept connection rests that long after its last answer (longer than
//!   common client pools keep one, so the client, not ingest, closes it and
//!   no request meets a connection being closed).
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

use crate::{
    head_clock::{HeadClock, HeadClockIo},
    metrics as m,
};

/// The HTTP server's bounds (from [`crate::Settings`]).
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    pub header_timeout: Duration,
    pub idle_timeout: Duration,
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
    // Hyper's head timer runs while a connection rests as well: it is the
    // idle bound; the head bound is the connection's own clock.
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.idle_timeout)
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
        let clock = HeadClock::new();
        let io = HeadClockIo::new(tcp, Arc::clone(&clock), limits.header_timeout);
        let conn = http.serve_connection(
            TokioIo::new(io),
            Clocked {
                service: service.clone(),
                clock,
            },
        );
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

/// A connection's service, telling its clock when hyper has parsed a head
/// and when the answer is ready.
#[derive(Clone)]
struct Clocked<S> {
    service: S,
    clock: Arc<HeadClock>,
}

impl<S, R> hyper::service::Service<R> for Clocked<S>
where
    S: hyper::service::Service<R>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future =
        std::pin::Pin<Box<dyn std::future::Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn call(&self, request: R) -> Self::Future {
        self.clock.request();
        let clock = Arc::clone(&self.clock);
        let call = self.service.call(request);
        Box::pin(async move {
            let response = call.await;
            clock.answered();
            response
        })
    }
}
