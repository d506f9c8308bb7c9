//! What every `/api` call passes first, in the provider's order as far as it
//! can be inferred: the per-IP limit (it covers every request), the Bearer key
//! (`401 {"error":"unauthorized"}`), then the per-key limit of the call's scope.
//! Over a limit: `429`, `Retry-After: <seconds until the window resets>`,
//! `{"error":"rate limit exceeded"}`.

use std::{net::SocketAddr, sync::Arc};

use axum::{
    extract::{ConnectInfo, Request, State},
    http::{HeaderValue, Method, StatusCode, header},
    middleware::Next,
    response::Response,
};
use secrecy::ExposeSecret;

use super::error_response;
use crate::{
    limiter::{Scope, retry_after_secs},
    state::Shared,
};

pub(crate) async fn gate(
    State(shared): State<Arc<Shared>>,
    request: Request,
    next: Next,
) -> Response {
    let scope = scope_of(request.method(), request.uri().path());
    let ip = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    let authorised = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|presented| presented == shared.api_key.expose_secret());

    let verdict = {
        let mut state = shared.lock();
        let limits = state.limits;
        let window = limits.window();
        let by_ip = match ip {
            Some(ip) => state.limiter.hit_ip(ip, limits.per_ip, window),
            None => Ok(()),
        };
        match by_ip {
            Err(wait) => Err(Some(wait)),
            Ok(()) if !authorised => Err(None),
            Ok(()) => {
                let limit = match scope {
                    Scope::Provision => limits.provision,
                    Scope::Proxy => limits.proxy,
                    Scope::Api => limits.api,
                };
                state.limiter.hit_scope(scope, limit, window).map_err(Some)
            }
        }
    };
    match verdict {
        Ok(()) => next.run(request).await,
        Err(None) => error_response(StatusCode::UNAUTHORIZED, "unauthorized"),
        Err(Some(wait)) => {
            tracing::debug!(?scope, "rate limit exceeded");
            let mut response = error_response(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after_secs(wait)),
            );
            response
        }
    }
}

fn scope_of(method: &Method, path: &str) -> Scope {
    let path = path.trim_end_matches('/');
    if method == Method::POST && path == "/api/instances" {
        Scope::Provision
    } else if path.starts_with("/api/instances/") && path.contains("/proxy/") {
        Scope::Proxy
    } else {
        Scope::Api
    }
}
