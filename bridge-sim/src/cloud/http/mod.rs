//! The Cloud simulator's HTTP surface: Meta's Graph API under `/{version}/…`
//! (any `v<major>.<minor>` accepted and recorded) and the test-control API
//! under `/_sim/cloud` (no token: it is not part of Meta).

// Handlers return early with a ready answer; boxing it would buy nothing.
#![allow(clippy::result_large_err)]

mod control;
mod manage;
mod messages;

use std::sync::Arc;

use axum::{
    Router,
    http::{HeaderMap, StatusCode, header},
    routing::{get, post},
};
use tokio::time::Instant;

use super::{graph_error::GraphError, state::CloudShared};

pub(crate) fn router(shared: Arc<CloudShared>) -> Router {
    let graph = Router::new()
        .route("/{version}/oauth/access_token", get(manage::exchange_code))
        .route("/{version}/{id}", get(manage::number_fields))
        .route("/{version}/{id}/messages", post(messages::send))
        .route(
            "/{version}/{id}/message_templates",
            post(manage::create_template).get(manage::list_templates),
        )
        .route(
            "/{version}/{id}/subscribed_apps",
            post(manage::subscribe)
                .get(manage::subscriptions)
                .delete(manage::unsubscribe),
        )
        .route("/{version}/{id}/register", post(manage::register))
        .fallback(|| async {
            GraphError::plain(StatusCode::BAD_REQUEST, 2500, "Unknown path components")
        });
    Router::new()
        .nest("/_sim/cloud", control::router())
        .merge(graph)
        .with_state(shared)
}

/// Accepts `v<digits>.<digits>` and records it; Graph refuses anything else.
fn check_version(shared: &CloudShared, version: &str) -> Result<(), GraphError> {
    let valid = version.strip_prefix('v').is_some_and(|rest| {
        rest.split_once('.').is_some_and(|(major, minor)| {
            !major.is_empty()
                && !minor.is_empty()
                && major.bytes().all(|b| b.is_ascii_digit())
                && minor.bytes().all(|b| b.is_ascii_digit())
        })
    });
    if !valid {
        return Err(GraphError::plain(
            StatusCode::BAD_REQUEST,
            2500,
            "Unknown path components: the Graph version must look like v25.0",
        ));
    }
    shared.lock().versions.insert(version.to_owned());
    Ok(())
}

/// The Bearer token of a request, if any.
fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
}

/// Whether `token` may act on `waba_id`'s assets: `190` for a missing,
/// unknown, revoked or expired token, `0` for another WABA's token.
fn authorise(
    state: &super::state::CloudState,
    token: Option<&str>,
    waba_id: &str,
) -> Result<(), GraphError> {
    live_token(state, token)?;
    match token.and_then(|t| state.tokens.get(t)) {
        Some(t) if t.waba_id == waba_id => Ok(()),
        _ => Err(GraphError::not_authorized_for_asset()),
    }
}

/// Whether `token` is a live token at all (checked before the object exists).
fn live_token(state: &super::state::CloudState, token: Option<&str>) -> Result<(), GraphError> {
    let t = token
        .and_then(|t| state.tokens.get(t))
        .ok_or_else(GraphError::invalid_token)?;
    if t.revoked {
        return Err(GraphError::revoked_token());
    }
    if t.expires_at.is_some_and(|at| at <= Instant::now()) {
        return Err(GraphError::expired_token());
    }
    Ok(())
}
