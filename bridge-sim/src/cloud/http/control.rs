//! `/_sim/cloud`: the test-control API, mirroring [`crate::cloud::CloudSim`]
//! for demos and the load tool. No token; every body and answer is JSON;
//! errors are `{"error": "..."}` (never Meta's shape: this is not Meta).
//! Tokens travel in bodies, never in paths, so they stay out of access logs.

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Path, Query, State},
    http::StatusCode,
    response::{IntoResponse, Response},
    routing::{get, post, put},
};
use serde::{Deserialize, de::DeserializeOwned};
use serde_json::json;

use crate::cloud::{
    batch::Batch,
    config::CloudClock,
    handshake,
    model::{CloudFaultPlan, PhoneNumberSpec, StatusPlan},
    ops::{self, NumberChange},
    state::{CloudShared, CloudSimError},
};

type S = State<Arc<CloudShared>>;

pub(crate) fn router() -> Router<Arc<CloudShared>> {
    Router::new()
        .route("/state", get(state))
        .route("/clock", get(clock).put(set_clock))
        .route("/webhook", put(set_webhook))
        .route("/handshake", post(run_handshake))
        .route("/wabas", post(add_waba))
        .route("/wabas/{id}/subscription", put(set_subscription))
        .route("/numbers", post(add_number))
        .route("/numbers/{id}", get(number))
        .route("/numbers/{id}/fault", put(set_fault).delete(clear_fault))
        .route("/numbers/{id}/statuses", put(set_statuses))
        .route("/numbers/{id}/quality", put(set_quality))
        .route("/numbers/{id}/mps", put(set_mps))
        .route("/numbers/{id}/messaging-limit", put(set_limit))
        .route("/numbers/{id}/window", post(open_window))
        .route("/tokens", post(add_token))
        .route("/tokens/revoke", post(revoke_token))
        .route("/tokens/expire", post(expire_token))
        .route("/signup-codes", post(signup_code))
        .route("/templates", get(templates))
        .route("/templates/{waba_id}", post(seed_template))
        .route(
            "/templates/{waba_id}/{name}/{language}/status",
            post(template_status),
        )
        .route("/batches", post(post_batch))
        .route("/sends", get(sends).delete(clear))
        .route("/deliveries", get(deliveries))
        .fallback(|| async { error(StatusCode::NOT_FOUND, "not found") })
}

fn error(status: StatusCode, message: &str) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}

fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Response> {
    serde_json::from_slice(body).map_err(|e| {
        error(
            StatusCode::BAD_REQUEST,
            &format!("invalid request body: {e}"),
        )
    })
}

fn failed(e: &CloudSimError) -> Response {
    let status = match e {
        CloudSimError::Invalid(_) | CloudSimError::DuplicateNumber(_) => StatusCode::BAD_REQUEST,
        CloudSimError::NoWebhookUrl => StatusCode::CONFLICT,
        _ => StatusCode::NOT_FOUND,
    };
    error(status, &e.to_string())
}

fn answer<T: serde::Serialize>(result: Result<T, CloudSimError>) -> Response {
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => failed(&e),
    }
}

/// Parses the body, or answers 400.
macro_rules! body {
    ($t:ty, $bytes:expr) => {
        match parse::<$t>(&$bytes) {
            Ok(v) => v,
            Err(r) => return r,
        }
    };
}

async fn state(State(s): S) -> Response {
    let st = s.lock();
    let wabas: Vec<_> = st.wabas.keys().filter_map(|id| st.waba_view(id)).collect();
    let numbers: Vec<_> = st.numbers.values().map(|n| n.view()).collect();
    Json(json!({
        "wabas": wabas,
        "numbers": numbers,
        "webhook_url": st.webhook_url,
        "versions": st.versions,
        "clock": st.clock,
    }))
    .into_response()
}

async fn clock(State(s): S) -> Response {
    Json(s.lock().clock.clone()).into_response()
}

async fn set_clock(State(s): S, b: Bytes) -> Response {
    let clock = body!(CloudClock, b);
    s.lock().clock = clock.clone();
    Json(clock).into_response()
}

#[derive(Deserialize)]
struct WebhookBody {
    url: Option<String>,
}

async fn set_webhook(State(s): S, b: Bytes) -> Response {
    let w = body!(WebhookBody, b);
    s.lock().webhook_url = w.url;
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize, Default)]
struct HandshakeBody {
    #[serde(default)]
    verify_token: Option<String>,
}

async fn run_handshake(State(s): S, b: Bytes) -> Response {
    let h = if b.is_empty() {
        HandshakeBody::default()
    } else {
        body!(HandshakeBody, b)
    };
    answer(handshake::verify(&s, h.verify_token.as_deref()).await)
}

#[derive(Deserialize)]
struct WabaBody {
    id: String,
    #[serde(default)]
    subscribed: bool,
}

async fn add_waba(State(s): S, b: Bytes) -> Response {
    let w = body!(WabaBody, b);
    s.add_waba(&w.id);
    if let Some(waba) = s.lock().wabas.get_mut(&w.id) {
        waba.subscribed |= w.subscribed;
    }
    answer(
        s.lock()
            .waba_view(&w.id)
            .ok_or(CloudSimError::UnknownWaba(w.id)),
    )
}

#[derive(Deserialize)]
struct SubscriptionBody {
    subscribed: bool,
}

async fn set_subscription(State(s): S, Path(id): Path<String>, b: Bytes) -> Response {
    let sub = body!(SubscriptionBody, b);
    let mut st = s.lock();
    match st.wabas.get_mut(&id) {
        Some(w) => {
            w.subscribed = sub.subscribed;
            StatusCode::NO_CONTENT.into_response()
        }
        None => failed(&CloudSimError::UnknownWaba(id)),
    }
}

async fn add_number(State(s): S, b: Bytes) -> Response {
    answer(s.add_number(body!(PhoneNumberSpec, b)))
}

async fn number(State(s): S, Path(id): Path<String>) -> Response {
    let view = s.lock().numbers.get(&id).map(|n| n.view());
    answer(view.ok_or(CloudSimError::UnknownNumber(id)))
}

async fn set_fault(State(s): S, Path(id): Path<String>, b: Bytes) -> Response {
    let plan = body!(CloudFaultPlan, b);
    answer(ops::update_number(&s, &id, NumberChange::Fault(Some(plan))))
}

async fn clear_fault(State(s): S, Path(id): Path<String>) -> Response {
    answer(ops::update_number(&s, &id, NumberChange::Fault(None)))
}

async fn set_statuses(State(s): S, Path(id): Path<String>, b: Bytes) -> Response {
    let plan = body!(StatusPlan, b);
    answer(ops::update_number(&s, &id, NumberChange::Statuses(plan)))
}

#[derive(Deserialize)]
struct QualityBody {
    quality_rating: String,
}

async fn set_quality(State(s): S, Path(id): Path<String>, b: Bytes) -> Response {
    let q = body!(QualityBody, b);
    answer(ops::update_number(
        &s,
        &id,
        NumberChange::Quality(q.quality_rating),
    ))
}

#[derive(Deserialize)]
struct MpsBody {
    mps: u32,
}

async fn set_mps(State(s): S, Path(id): Path<String>, b: Bytes) -> Response {
    let m = body!(MpsBody, b);
    answer(ops::update_number(&s, &id, NumberChange::Mps(m.mps)))
}

#[derive(Deserialize)]
struct LimitBody {
    messaging_limit: String,
    #[serde(default = "default_limit_event")]
    event: String,
    #[serde(default = "yes")]
    notify: bool,
}

fn default_limit_event() -> String {
    "UPGRADE".to_owned()
}

fn yes() -> bool {
    true
}

async fn set_limit(State(s): S, Path(id): Path<String>, b: Bytes) -> Response {
    let l = body!(LimitBody, b);
    let posted = ops::set_messaging_limit(&s, &id, &l.messaging_limit, &l.event, l.notify).await;
    answer(posted.map(|webhook| json!({ "webhook": webhook })))
}

#[derive(Deserialize)]
struct WindowBody {
    user: String,
}

async fn open_window(State(s): S, Path(id): Path<String>, b: Bytes) -> Response {
    let w = body!(WindowBody, b);
    match ops::open_window(&s, &id, &w.user) {
        Ok(()) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failed(&e),
    }
}

#[derive(Deserialize)]
struct TokenBody {
    waba_id: String,
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    ttl_ms: Option<u64>,
}

async fn add_token(State(s): S, b: Bytes) -> Response {
    let t = body!(TokenBody, b);
    let ttl = t.ttl_ms.map(std::time::Duration::from_millis);
    answer(
        s.add_token(&t.waba_id, t.token, ttl)
            .map(|token| json!({ "token": token })),
    )
}

#[derive(Deserialize)]
struct EndTokenBody {
    token: String,
    #[serde(default)]
    notify: bool,
}

async fn revoke_token(State(s): S, b: Bytes) -> Response {
    let t = body!(EndTokenBody, b);
    let posted = ops::revoke_token(&s, &t.token, t.notify).await;
    answer(posted.map(|webhook| json!({ "webhook": webhook })))
}

async fn expire_token(State(s): S, b: Bytes) -> Response {
    let t = body!(EndTokenBody, b);
    match s.end_token(&t.token, false) {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => failed(&e),
    }
}

#[derive(Deserialize)]
struct CodeBody {
    waba_id: String,
}

async fn signup_code(State(s): S, b: Bytes) -> Response {
    let c = body!(CodeBody, b);
    answer(
        s.issue_signup_code(&c.waba_id)
            .map(|code| json!({ "code": code })),
    )
}

#[derive(Deserialize)]
struct WabaFilter {
    waba_id: Option<String>,
}

async fn templates(State(s): S, Query(f): Query<WabaFilter>) -> Response {
    let st = s.lock();
    let all: Vec<_> = st
        .wabas
        .values()
        .flat_map(|w| w.templates.iter())
        .filter(|t| f.waba_id.as_ref().is_none_or(|id| *id == t.waba_id))
        .cloned()
        .collect();
    Json(all).into_response()
}

#[derive(Deserialize)]
struct SeedBody {
    name: String,
    language: String,
    #[serde(default = "default_category")]
    category: String,
    #[serde(default = "default_status")]
    status: String,
    /// Meta's `components`; none (a template without parameters) if absent.
    #[serde(default)]
    components: Option<serde_json::Value>,
}

fn default_category() -> String {
    "UTILITY".to_owned()
}

fn default_status() -> String {
    "APPROVED".to_owned()
}

async fn seed_template(State(s): S, Path(waba_id): Path<String>, b: Bytes) -> Response {
    let t = body!(SeedBody, b);
    answer(ops::seed_template(
        &s,
        &waba_id,
        &t.name,
        &t.language,
        &t.category,
        &t.status,
        t.components
            .unwrap_or_else(|| serde_json::Value::Array(Vec::new())),
    ))
}

#[derive(Deserialize)]
struct TemplateStatusBody {
    event: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default = "yes")]
    notify: bool,
}

async fn template_status(
    State(s): S,
    Path((waba_id, name, language)): Path<(String, String, String)>,
    b: Bytes,
) -> Response {
    let t = body!(TemplateStatusBody, b);
    let posted =
        ops::set_template_status(&s, &waba_id, &name, &language, &t.event, t.reason, t.notify)
            .await;
    answer(posted.map(|webhook| json!({ "webhook": webhook })))
}

async fn post_batch(State(s): S, b: Bytes) -> Response {
    let batch = body!(Batch, b);
    answer(ops::post_batch(&s, &batch).await)
}

#[derive(Deserialize)]
struct NumberFilter {
    phone_number_id: Option<String>,
}

async fn sends(State(s): S, Query(f): Query<NumberFilter>) -> Response {
    let st = s.lock();
    let sends: Vec<_> = st
        .sends
        .iter()
        .filter(|x| {
            f.phone_number_id
                .as_ref()
                .is_none_or(|id| *id == x.phone_number_id)
        })
        .cloned()
        .collect();
    Json(sends).into_response()
}

async fn clear(State(s): S) -> Response {
    let mut st = s.lock();
    st.sends.clear();
    st.deliveries.clear();
    StatusCode::NO_CONTENT.into_response()
}

async fn deliveries(State(s): S) -> Response {
    Json(s.lock().deliveries.clone()).into_response()
}
