//! The simulator's HTTP surface: the provider's API under `/api` (behind
//! [`gate`]'s limits and key check) and the test-control API under `/_sim`
//! (no key, no limits: it is not part of the provider).

// Handlers return early with a ready answer; boxing it would buy nothing.
#![allow(clippy::result_large_err)]

mod control;
mod gate;
mod instances;
mod proxy;

use std::sync::Arc;

use axum::{
    Json, Router,
    http::StatusCode,
    middleware,
    response::{IntoResponse, Response},
    routing::{delete, get, post},
};

use crate::state::Shared;

/// The provider's error shape: `{"error":"..."}`.
pub(crate) fn error_response(status: StatusCode, message: &str) -> Response {
    (status, Json(serde_json::json!({ "error": message }))).into_response()
}

/// Parses a JSON request body, answering the provider's error shape when it is not.
pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body)
        .map_err(|_| error_response(StatusCode::BAD_REQUEST, "invalid request body"))
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let proxy = "/api/instances/{customer_ref}/proxy";
    let api = Router::new()
        .route(
            "/api/instances",
            post(instances::provision).get(instances::list),
        )
        .route(
            "/api/instances/{id}",
            get(instances::get_one).delete(instances::delete_one),
        )
        .route(&format!("{proxy}/status"), get(proxy::status))
        .route(&format!("{proxy}/qr"), get(proxy::qr))
        .route(&format!("{proxy}/pair"), post(proxy::pair))
        .route(&format!("{proxy}/logout"), delete(proxy::logout))
        .route(&format!("{proxy}/send/text"), post(proxy::send_text))
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, "not found") })
        .layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            gate::gate,
        ));
    Router::new()
        .nest("/_sim", control::router())
        .merge(api)
        .with_state(shared)
}
