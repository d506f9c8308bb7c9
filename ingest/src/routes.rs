//! The HTTP surface of ingest: which path goes to which handler, and the
//! limits that apply before any handler runs.

use std::sync::Arc;

use axum::{
    Router,
    extract::DefaultBodyLimit,
    routing::{get, post},
};

use switchyard_shared::webhook_auth::HOOK_PATH_PREFIX;

use crate::{cloud, handler, openapi};

/// The ingest routes over `state`.
pub fn router(state: Arc<handler::AppState>) -> Router {
    let limit = state.max_body_bytes;
    // Meta's batches reach 3 MB: the Cloud route has a limit of its own,
    // applied inside (so instead of) the bridges' one.
    let cloud_limit = state
        .cloud
        .as_ref()
        .map_or(limit, |c| c.settings.max_body_bytes);
    Router::new()
        .route(
            cloud::PATH,
            get(cloud::handshake::verify)
                .post(cloud::receive::receive)
                .layer(DefaultBodyLimit::max(cloud_limit)),
        )
        .route(
            &format!("{HOOK_PATH_PREFIX}/{{tenant}}/{{token}}"),
            post(handler::receive),
        )
        // Anything else under /hook (an empty tenant or token, extra segments)
        // cannot carry a valid token: the same 401 as a bad one.
        .fallback(handler::unrouted)
        .route("/openapi.json", get(openapi::serve))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(state)
}
