//! The control plane: `POST/GET /api/instances`, `GET/DELETE /api/instances/{id}`.

use std::sync::Arc;

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::StatusCode,
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use super::{error_response, parse_json};
use crate::state::{Session, Shared, SimBridge};

#[derive(Deserialize)]
struct ProvisionBody {
    #[serde(default)]
    customer_ref: String,
    #[serde(default)]
    webhook_url: String,
}

/// Longest `customer_ref` the simulator takes (the real limit is undocumented).
const MAX_CUSTOMER_REF_LEN: usize = 128;

pub(crate) async fn provision(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let body: ProvisionBody = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let customer_ref = body.customer_ref.trim();
    if customer_ref.is_empty() || customer_ref.len() > MAX_CUSTOMER_REF_LEN {
        return error_response(StatusCode::BAD_REQUEST, "customer_ref is required");
    }
    let url = body.webhook_url.trim();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        return error_response(
            StatusCode::BAD_REQUEST,
            "webhook_url must be an http(s) URL",
        );
    }
    let bridge = shared.provision(customer_ref, url);
    tracing::info!(bridge.id = bridge.id, tenant.id = %bridge.customer_ref, "bridge provisioned");
    Json(json!({"id": bridge.id, "customer_ref": bridge.customer_ref, "state": "running"}))
        .into_response()
}

pub(crate) async fn list(State(shared): State<Arc<Shared>>) -> Response {
    let bridges: Vec<_> = shared.lock().bridges.values().map(summary).collect();
    Json(bridges).into_response()
}

pub(crate) async fn get_one(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Response {
    let state = shared.lock();
    let Some(bridge) = id.parse::<i64>().ok().and_then(|id| state.bridges.get(&id)) else {
        return error_response(StatusCode::NOT_FOUND, "instance not found");
    };
    let mut detail = summary(bridge);
    detail["manager"] = json!({
        "health": if bridge.session == Session::Connected { "healthy" } else { "unhealthy" },
        "started_at": bridge.started_at,
        "fail_count": 0,
    });
    Json(detail).into_response()
}

pub(crate) async fn delete_one(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Response {
    let removed = id
        .parse::<i64>()
        .ok()
        .and_then(|id| shared.lock().bridges.remove(&id));
    match removed {
        Some(bridge) => {
            tracing::info!(bridge.id = bridge.id, tenant.id = %bridge.customer_ref, "bridge deleted");
            StatusCode::NO_CONTENT.into_response()
        }
        None => error_response(StatusCode::NOT_FOUND, "instance not found"),
    }
}

fn summary(b: &SimBridge) -> serde_json::Value {
    json!({"id": b.id, "customer_ref": b.customer_ref, "state": "running", "created_at": b.created_at})
}
