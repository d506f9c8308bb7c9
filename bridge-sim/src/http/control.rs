//! `/_sim`: the test-control API, clearly apart from the provider's `/api`.
//! No key and no limits; every body and answer is JSON. See `docs/wabridges.md`.

use std::{sync::Arc, time::Duration};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use serde::Deserialize;

use super::{error_response, parse_json};
use crate::{
    config::Limits,
    faults::{EchoMode, FaultPlan},
    ops::SimError,
    state::Shared,
};

pub(crate) fn router() -> Router<Arc<Shared>> {
    Router::new()
        .route("/sends", get(sends).delete(clear))
        .route("/attempts", get(attempts))
        .route("/webhooks", get(webhooks))
        .route("/limits", get(limits).put(set_limits))
        .route("/bridges", get(bridges).post(seed))
        .route("/bridges/{customer_ref}", get(bridge))
        .route(
            "/bridges/{customer_ref}/fault",
            put(set_fault).delete(clear_fault),
        )
        .route("/bridges/{customer_ref}/latency", put(set_latency))
        .route("/bridges/{customer_ref}/connection", put(set_connection))
        .route("/bridges/{customer_ref}/echo", put(set_echo))
        .route("/bridges/{customer_ref}/silence", put(set_silence))
        .route("/bridges/{customer_ref}/webhook", post(post_webhook))
        .fallback(|| async { error_response(StatusCode::NOT_FOUND, "not found") })
}

#[derive(Deserialize)]
struct RefFilter {
    customer_ref: Option<String>,
}

async fn sends(State(s): State<Arc<Shared>>, Query(f): Query<RefFilter>) -> Response {
    Json(s.sends(f.customer_ref.as_deref())).into_response()
}

async fn attempts(State(s): State<Arc<Shared>>, Query(f): Query<RefFilter>) -> Response {
    Json(s.attempts(f.customer_ref.as_deref())).into_response()
}

async fn clear(State(s): State<Arc<Shared>>) -> Response {
    s.clear_records();
    StatusCode::NO_CONTENT.into_response()
}

async fn webhooks(State(s): State<Arc<Shared>>) -> Response {
    Json(s.webhooks()).into_response()
}

async fn limits(State(s): State<Arc<Shared>>) -> Response {
    Json(s.limits()).into_response()
}

async fn set_limits(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse_json::<Limits>(&body) {
        Ok(limits) => {
            s.set_limits(limits);
            Json(limits).into_response()
        }
        Err(r) => r,
    }
}

async fn bridges(State(s): State<Arc<Shared>>) -> Response {
    Json(s.bridges_view()).into_response()
}

async fn bridge(State(s): State<Arc<Shared>>, Path(r): Path<String>) -> Response {
    match s.bridge_view(&r) {
        Some(view) => Json(view).into_response(),
        None => unknown(SimError::UnknownBridge(r)),
    }
}

#[derive(Deserialize)]
struct SeedBody {
    customer_ref: String,
    webhook_url: String,
}

/// Provisions without a key or limits (test set-up).
async fn seed(State(s): State<Arc<Shared>>, body: Bytes) -> Response {
    match parse_json::<SeedBody>(&body) {
        Ok(b) => Json(s.provision(&b.customer_ref, &b.webhook_url)).into_response(),
        Err(r) => r,
    }
}

async fn set_fault(State(s): State<Arc<Shared>>, Path(r): Path<String>, body: Bytes) -> Response {
    match parse_json::<FaultPlan>(&body) {
        Ok(plan) => done(s.set_fault(&r, Some(plan))),
        Err(r) => r,
    }
}

async fn clear_fault(State(s): State<Arc<Shared>>, Path(r): Path<String>) -> Response {
    done(s.set_fault(&r, None))
}

#[derive(Deserialize)]
struct LatencyBody {
    ms: u64,
}

async fn set_latency(State(s): State<Arc<Shared>>, Path(r): Path<String>, body: Bytes) -> Response {
    match parse_json::<LatencyBody>(&body) {
        Ok(b) => done(s.set_latency(&r, Duration::from_millis(b.ms))),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct ConnectionBody {
    connected: bool,
    #[serde(default)]
    notify: bool,
}

async fn set_connection(
    State(s): State<Arc<Shared>>,
    Path(r): Path<String>,
    body: Bytes,
) -> Response {
    let b = match parse_json::<ConnectionBody>(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    match s.set_connected(&r, b.connected, b.notify).await {
        Ok(delivery) => Json(serde_json::json!({ "webhook": delivery })).into_response(),
        Err(e) => unknown(e),
    }
}

#[derive(Deserialize)]
struct SilenceBody {
    silent: bool,
    /// Also drop the session, without the `disconnected` webhook.
    #[serde(default)]
    drop_session: bool,
}

async fn set_silence(State(s): State<Arc<Shared>>, Path(r): Path<String>, body: Bytes) -> Response {
    match parse_json::<SilenceBody>(&body) {
        Ok(b) if b.silent && b.drop_session => done(s.go_silent(&r)),
        Ok(b) => done(s.set_silent(&r, b.silent)),
        Err(r) => r,
    }
}

#[derive(Deserialize)]
struct EchoBody {
    mode: EchoMode,
}

async fn set_echo(State(s): State<Arc<Shared>>, Path(r): Path<String>, body: Bytes) -> Response {
    match parse_json::<EchoBody>(&body) {
        Ok(b) => done(s.set_echo(&r, b.mode)),
        Err(r) => r,
    }
}

/// Posts the body (one flat event object) to the bridge's webhook URL; answers
/// with the delivery record, whatever the receiver said.
async fn post_webhook(
    State(s): State<Arc<Shared>>,
    Path(r): Path<String>,
    body: Bytes,
) -> Response {
    let event = match parse_json::<serde_json::Value>(&body) {
        Ok(v) if v.get("event").is_some_and(serde_json::Value::is_string) => v,
        Ok(_) => {
            return error_response(
                StatusCode::BAD_REQUEST,
                "an event needs a string \"event\" field",
            );
        }
        Err(r) => return r,
    };
    match s.post_webhook(&r, event).await {
        Ok(delivery) => Json(delivery).into_response(),
        Err(e) => unknown(e),
    }
}

fn done(result: Result<(), SimError>) -> Response {
    match result {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => unknown(e),
    }
}

fn unknown(e: SimError) -> Response {
    error_response(StatusCode::NOT_FOUND, &e.to_string())
}
