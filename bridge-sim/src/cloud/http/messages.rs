//! `POST /{version}/{phone_number_id}/messages`: Meta's checks in order
//! (version, token, number, token's WABA, injected fault, body, template,
//! window, throughput, pair rate), every call recorded, and the status
//! webhooks of an accepted send scheduled.

use std::{sync::Arc, time::Duration};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{authorise, bearer, check_version, live_token};
use crate::{
    cloud::{
        gates::{PairBucket, throughput_take, window_open},
        graph_error::GraphError,
        model::{CloudFault, CloudSend, RecordedToken, StatusPlan, TemplateView},
        state::{CloudShared, Number},
        statuses::{self, AcceptedSend},
        validate::{TemplateRef, validate},
    },
    state::unix_ms,
};

/// How long a hang without a duration holds a request if the simulator is not stopped.
const HANG_CAP: Duration = Duration::from_secs(600);

/// What the checks decided.
enum Decision {
    Refuse(GraphError),
    Fault(CloudFault),
    Accept(AcceptedSend, StatusPlan),
}

pub(crate) async fn send(
    State(shared): State<Arc<CloudShared>>,
    Path((version, phone_number_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let token = bearer(&headers);
    let str_field = |k: &str| parsed.get(k).and_then(Value::as_str).map(str::to_owned);
    let mut record = CloudSend {
        at_ms: unix_ms(),
        version: version.clone(),
        phone_number_id: phone_number_id.clone(),
        token: token.map(RecordedToken::new),
        to: str_field("to"),
        recipient: str_field("recipient"),
        kind: str_field("type"),
        body: parsed.clone(),
        http_status: 200,
        wamid: None,
        error_code: None,
    };
    let decision = match check_version(&shared, &version) {
        Err(e) => Decision::Refuse(e),
        Ok(()) => decide(&shared, &phone_number_id, token, &parsed),
    };
    let response = match decision {
        Decision::Refuse(e) => {
            record.error_code = Some(e.code);
            e.into_response()
        }
        Decision::Fault(fault) => fault_response(&shared, fault, &mut record).await,
        Decision::Accept(accepted, plan) => {
            record.wamid = Some(accepted.wamid.clone());
            let answer = answer(&accepted, record.to.as_deref());
            statuses::schedule(&shared, accepted, plan);
            answer
        }
    };
    record.http_status = response.status().as_u16();
    shared.record_send(record);
    response
}

fn decide(
    shared: &CloudShared,
    phone_number_id: &str,
    token: Option<&str>,
    body: &Value,
) -> Decision {
    let mut guard = shared.lock();
    let state = &mut *guard;
    if let Err(e) = live_token(state, token) {
        return Decision::Refuse(e);
    }
    let Some(number) = state.numbers.get_mut(phone_number_id) else {
        return Decision::Refuse(GraphError::unknown_object(phone_number_id));
    };
    let waba_id = number.spec.waba_id.clone();
    if let Some(fault) = take_fault(number) {
        return Decision::Fault(fault);
    }
    if let Err(e) = authorise(state, token, &waba_id) {
        return Decision::Refuse(e);
    }
    let valid = match validate(body) {
        Ok(v) => v,
        Err(e) => return Decision::Refuse(e),
    };
    let now = Instant::now();
    let user = (phone_number_id.to_owned(), valid.recipient.key().to_owned());
    let template_category = match &valid.template {
        Some(wanted) => {
            let found = state.wabas.get(&waba_id).and_then(|w| {
                w.templates
                    .iter()
                    .find(|t| t.name == wanted.name && t.language == wanted.language)
            });
            match template_check(found, wanted) {
                Ok(category) => Some(category),
                Err(e) => return Decision::Refuse(e),
            }
        }
        None => {
            let last = state.last_inbound.get(&user).copied();
            if !window_open(last, now, state.clock.window) {
                return Decision::Refuse(GraphError::window_closed());
            }
            None
        }
    };
    let clock = state.clock.clone();
    let Some(number) = state.numbers.get_mut(phone_number_id) else {
        return Decision::Refuse(GraphError::unknown_object(phone_number_id));
    };
    let bucket = state
        .pair
        .entry(user)
        .or_insert_with(|| PairBucket::full(clock.pair_burst, now));
    // The pair bucket is only spent once throughput has room, and vice versa.
    let mut probe = *bucket;
    if !probe.take(now, clock.pair_interval, clock.pair_burst) {
        return Decision::Refuse(GraphError::pair_rate());
    }
    if !throughput_take(
        &mut number.recent,
        now,
        clock.throughput_window,
        number.spec.mps,
    ) {
        return Decision::Refuse(GraphError::throughput());
    }
    *bucket = probe;
    let accepted = AcceptedSend {
        waba_id,
        phone_number_id: phone_number_id.to_owned(),
        display_phone_number: number.spec.display_phone_number.clone(),
        wamid: shared.new_wamid(),
        recipient_id: valid.recipient.key().to_owned(),
        callback_data: valid.callback_data,
        template_category,
    };
    Decision::Accept(accepted, number.statuses.clone())
}

/// A template send's template as Meta checks it: missing or not approved
/// (`132001`), paused (`132015`), disabled (`132016`), or given another
/// number of body parameters than its BODY's placeholders (`132000`).
/// The category (for pricing) when it may go.
fn template_check(
    found: Option<&TemplateView>,
    wanted: &TemplateRef,
) -> Result<String, GraphError> {
    let unavailable = || GraphError::template_unavailable(&wanted.name, &wanted.language);
    let t = found.ok_or_else(unavailable)?;
    match t.status.as_str() {
        "APPROVED" => {}
        "PAUSED" => return Err(GraphError::template_paused(&t.name)),
        "DISABLED" => return Err(GraphError::template_disabled(&t.name)),
        _ => return Err(unavailable()),
    }
    let expected = body_placeholders(&t.components);
    if expected != wanted.body_params {
        return Err(GraphError::template_params(expected, wanted.body_params));
    }
    Ok(t.category.to_lowercase())
}

/// The distinct `{{…}}` placeholders of the template's BODY text.
fn body_placeholders(components: &Value) -> usize {
    let text = components
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| {
            c.get("type")
                .and_then(Value::as_str)
                .is_some_and(|k| k.eq_ignore_ascii_case("BODY"))
        })
        .and_then(|c| c.get("text"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let mut seen: Vec<&str> = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        let Some(end) = rest[start + 2..].find("}}") else {
            break;
        };
        let inner = &rest[start + 2..start + 2 + end];
        if !seen.contains(&inner) {
            seen.push(inner);
        }
        rest = &rest[start + 2 + end + 2..];
    }
    seen.len()
}

/// The active fault for this send, counting down a limited one.
fn take_fault(number: &mut Number) -> Option<CloudFault> {
    let plan = number.fault.as_mut()?;
    let fault = plan.fault.clone();
    if let Some(times) = plan.times.as_mut() {
        *times = times.saturating_sub(1);
        if *times == 0 {
            number.fault = None;
        }
    }
    Some(fault)
}

async fn fault_response(
    shared: &CloudShared,
    fault: CloudFault,
    record: &mut CloudSend,
) -> Response {
    match fault {
        CloudFault::MetaError {
            code,
            http_status,
            message,
        } => {
            record.error_code = Some(code);
            let status = StatusCode::from_u16(http_status).unwrap_or(StatusCode::BAD_REQUEST);
            GraphError::injected(status, code, message.as_deref()).into_response()
        }
        CloudFault::Hang { ms } => {
            let hold = ms.map_or(HANG_CAP, Duration::from_millis);
            tokio::select! {
                _ = shared.shutdown.cancelled() => {}
                _ = tokio::time::sleep(hold) => {}
            }
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
        CloudFault::BareServerError { status } => StatusCode::from_u16(status)
            .unwrap_or(StatusCode::BAD_GATEWAY)
            .into_response(),
    }
}

/// Meta's answer: `contacts[0].input` is `to` as sent; a BSUID send gets `user_id`.
fn answer(send: &AcceptedSend, to: Option<&str>) -> Response {
    let contact = match to {
        Some(to) => json!({"input": to, "wa_id": send.recipient_id}),
        None => json!({"input": send.recipient_id, "user_id": send.recipient_id}),
    };
    Json(json!({
        "messaging_product": "whatsapp",
        "contacts": [contact],
        "messages": [{"id": send.wamid}],
    }))
    .into_response()
}
