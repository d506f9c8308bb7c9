//! The data plane under `/api/instances/{customer_ref}/proxy`: status, QR,
//! pairing, logout and text sends. Each call first meets the bridge's latency
//! and fault; then the session decides (`409 {"error":"bridge not connected"}`
//! for sends on a bridge that is not connected).

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{StatusCode, header},
    response::{IntoResponse, Response},
};
use serde::Deserialize;
use serde_json::json;

use super::{error_response, parse_json};
use crate::{
    events,
    faults::{EchoMode, Fault, Hanging},
    qr,
    state::{SendAttempt, Session, Shared, SimBridge, unix_ms, unix_secs},
    webhook,
};

/// How long a hanging bridge holds a request when the simulator is not stopped first.
const HANG_CAP: Duration = Duration::from_secs(600);

/// What the preamble decided for one call.
enum Entry {
    /// Proceed with this snapshot of the bridge.
    Go(SimBridge),
    /// A fault answers instead: its status (for the record) and its answer.
    Faulted(SimBridge, u16, Response),
}

/// Looks the bridge up, waits its latency, and applies (and counts down) its fault.
async fn enter(shared: &Shared, customer_ref: &str) -> Result<Entry, Response> {
    let latency = match shared.lock().by_ref(customer_ref) {
        Some(b) => b.latency,
        None => return Err(error_response(StatusCode::NOT_FOUND, "instance not found")),
    };
    if !latency.is_zero() {
        tokio::select! {
            _ = shared.shutdown.cancelled() => {}
            _ = tokio::time::sleep(latency) => {}
        }
    }
    let mut state = shared.lock();
    let Some(bridge) = state.by_ref_mut(customer_ref) else {
        return Err(error_response(StatusCode::NOT_FOUND, "instance not found"));
    };
    Ok(match take_fault(bridge) {
        None => Entry::Go(bridge.clone()),
        Some(fault) => Entry::Faulted(bridge.clone(), fault.status(), fault.response()),
    })
}

/// The active fault for this call, counting down a limited one.
fn take_fault(bridge: &mut SimBridge) -> Option<Fault> {
    let plan = bridge.fault.as_mut()?;
    let fault = plan.fault.clone();
    if let Some(times) = plan.times.as_mut() {
        *times = times.saturating_sub(1);
        if *times == 0 {
            bridge.fault = None;
        }
    }
    Some(fault)
}

/// Gives a fault's answer, holding it first when the fault is a hang.
async fn answer_fault(shared: &Shared, response: Response) -> Response {
    if response.extensions().get::<Hanging>().is_some() {
        tokio::select! {
            _ = shared.shutdown.cancelled() => {}
            _ = tokio::time::sleep(HANG_CAP) => {}
        }
    }
    response
}

/// Runs the preamble and returns the bridge, or the answer to give instead.
async fn enter_or_answer(shared: &Shared, customer_ref: &str) -> Result<SimBridge, Response> {
    match enter(shared, customer_ref).await? {
        Entry::Go(bridge) => Ok(bridge),
        Entry::Faulted(_, _, response) => Err(answer_fault(shared, response).await),
    }
}

pub(crate) async fn status(
    State(shared): State<Arc<Shared>>,
    Path(customer_ref): Path<String>,
) -> Response {
    if let Some(b) = shared.lock().by_ref_mut(&customer_ref) {
        b.status_calls += 1;
    }
    let bridge = match enter_or_answer(&shared, &customer_ref).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    match bridge.session {
        Session::Connected => {
            let phone = bridge.phone.unwrap_or_default();
            Json(json!({
                "status": "connected",
                "phone": phone,
                "jid": events::user_jid(&phone),
                "name": bridge.name,
            }))
            .into_response()
        }
        other => Json(json!({"status": other.as_str()})).into_response(),
    }
}

pub(crate) async fn qr(
    State(shared): State<Arc<Shared>>,
    Path(customer_ref): Path<String>,
) -> Response {
    let bridge = match enter_or_answer(&shared, &customer_ref).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if bridge.session != Session::Unpaired {
        return error_response(StatusCode::CONFLICT, "already paired");
    }
    let (payload, image_override) = {
        let mut state = shared.lock();
        let Some(b) = state.by_ref_mut(&customer_ref) else {
            return error_response(StatusCode::NOT_FOUND, "instance not found");
        };
        (
            b.qr.payload_at(std::time::Instant::now()),
            b.qr.image_override.clone(),
        )
    };
    let png = match image_override {
        Some(png) => png,
        None => match qr::png(&payload) {
            Ok(png) => png,
            Err(e) => {
                tracing::error!(error = %e, "the simulator could not draw its pairing QR");
                return error_response(StatusCode::INTERNAL_SERVER_ERROR, "internal error");
            }
        },
    };
    ([(header::CONTENT_TYPE, "image/png")], png).into_response()
}

#[derive(Deserialize)]
struct PairBody {
    #[serde(default)]
    phone: String,
}

pub(crate) async fn pair(
    State(shared): State<Arc<Shared>>,
    Path(customer_ref): Path<String>,
    body: Bytes,
) -> Response {
    let body: PairBody = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    let phone = body.phone.trim().trim_start_matches('+').to_owned();
    if phone.len() < 6 || phone.len() > 15 || !phone.bytes().all(|b| b.is_ascii_digit()) {
        return error_response(StatusCode::BAD_REQUEST, "phone must be digits");
    }
    let bridge = match enter_or_answer(&shared, &customer_ref).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if bridge.session != Session::Unpaired {
        return error_response(StatusCode::CONFLICT, "already paired");
    }
    // The simulated phone enters the code at once: the session connects and the
    // provider announces it with a `connected` webhook.
    let url = {
        let mut state = shared.lock();
        let Some(b) = state.by_ref_mut(&customer_ref) else {
            return error_response(StatusCode::NOT_FOUND, "instance not found");
        };
        b.session = Session::Connected;
        b.phone = Some(phone.clone());
        b.qr.end_attempt();
        b.webhook_url.clone()
    };
    spawn_webhook(&shared, &customer_ref, &url, events::connected(&phone));
    let code = format!("{:08X}", rand::random::<u32>());
    Json(json!({"code": format!("{}-{}", &code[..4], &code[4..])})).into_response()
}

pub(crate) async fn logout(
    State(shared): State<Arc<Shared>>,
    Path(customer_ref): Path<String>,
) -> Response {
    let bridge = match enter_or_answer(&shared, &customer_ref).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    if bridge.session == Session::Unpaired {
        return error_response(StatusCode::CONFLICT, "bridge not connected");
    }
    if let Some(b) = shared.lock().by_ref_mut(&customer_ref) {
        b.session = Session::Unpaired;
        b.phone = None;
        b.qr.end_attempt();
    }
    spawn_webhook(
        &shared,
        &customer_ref,
        &bridge.webhook_url,
        events::disconnected(),
    );
    Json(json!({})).into_response()
}

#[derive(Deserialize)]
struct SendBody {
    #[serde(default)]
    chat: String,
    #[serde(default)]
    body: String,
}

pub(crate) async fn send_text(
    State(shared): State<Arc<Shared>>,
    Path(customer_ref): Path<String>,
    body: Bytes,
) -> Response {
    let request: SendBody = match parse_json(&body) {
        Ok(b) => b,
        Err(r) => return r,
    };
    if !valid_chat(&request.chat) {
        return error_response(StatusCode::BAD_REQUEST, "invalid chat");
    }
    if request.body.is_empty() {
        return error_response(StatusCode::BAD_REQUEST, "body is required");
    }
    let at_ms = unix_ms();
    shared.arrived.send_modify(|n| *n += 1);
    let (bridge, fault) = match enter(&shared, &customer_ref).await {
        Err(r) => return r,
        Ok(Entry::Go(b)) => (b, None),
        Ok(Entry::Faulted(b, status, response)) => (b, Some((status, response))),
    };
    let mut attempt = SendAttempt {
        bridge_id: bridge.id,
        customer_ref: customer_ref.clone(),
        chat: request.chat.clone(),
        body: request.body.clone(),
        at_ms,
        status: 200,
        message_id: None,
    };
    if let Some((status, response)) = fault {
        attempt.status = status;
        shared.record(attempt);
        return answer_fault(&shared, response).await;
    }
    if bridge.session != Session::Connected {
        attempt.status = StatusCode::CONFLICT.as_u16();
        shared.record(attempt);
        return error_response(StatusCode::CONFLICT, "bridge not connected");
    }
    let message_id = events::new_message_id();
    let timestamp = unix_secs();
    attempt.message_id = Some(message_id.clone());
    shared.record(attempt);
    tracing::debug!(bridge.id = bridge.id, tenant.id = %customer_ref, "send accepted");
    let echo = events::echo_of_send(&request.chat, &request.body, &message_id, timestamp);
    match bridge.echo {
        EchoMode::Off => {}
        EchoMode::Before => {
            webhook::deliver(&shared, &customer_ref, &bridge.webhook_url, echo).await;
        }
        EchoMode::After => spawn_webhook(&shared, &customer_ref, &bridge.webhook_url, echo),
    }
    Json(json!({"message_id": message_id, "timestamp": timestamp})).into_response()
}

/// The documented form (digits) and group JIDs; anything else is refused, so a
/// sender that forgets to normalise a person's JID is caught in tests.
fn valid_chat(chat: &str) -> bool {
    let digits = |s: &str, min: usize, max: usize| {
        (min..=max).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    match chat.split_once('@') {
        None => digits(chat, 6, 15),
        Some((user, "g.us")) => {
            user.split('-').all(|part| digits(part, 1, 40)) && user.split('-').count() <= 2
        }
        Some((user, "lid")) => digits(user, 1, 40),
        Some(_) => false,
    }
}

pub(crate) fn spawn_webhook(
    shared: &Arc<Shared>,
    customer_ref: &str,
    url: &str,
    event: serde_json::Value,
) {
    let shared = Arc::clone(shared);
    let customer_ref = customer_ref.to_owned();
    let url = url.to_owned();
    tokio::spawn(async move {
        webhook::deliver(&shared, &customer_ref, &url, event).await;
    });
}
