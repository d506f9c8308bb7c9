//! The Graph calls around sending: templates (create, list), the WABA's
//! webhook subscription, number registration and health fields, and the
//! Embedded Signup code exchange.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json,
    body::Bytes,
    extract::{Path, Query, State},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use secrecy::ExposeSecret;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::{authorise, bearer, check_version, live_token};
use crate::cloud::{graph_error::GraphError, model::TemplateView, state::CloudShared};

/// The simulator's opaque-looking listing cursors: this prefix and an offset.
const CURSOR: &str = "QVFIUsim";

/// Meta's limit on templates per WABA (`2388019` beyond it).
const MAX_TEMPLATES: usize = 250;

/// Runs the version and token checks for a call on WABA `id`.
fn enter_waba(
    shared: &CloudShared,
    version: &str,
    id: &str,
    headers: &HeaderMap,
) -> Result<(), GraphError> {
    check_version(shared, version)?;
    let state = shared.lock();
    live_token(&state, bearer(headers))?;
    if !state.wabas.contains_key(id) {
        return Err(GraphError::unknown_object(id));
    }
    authorise(&state, bearer(headers), id)
}

pub(crate) async fn create_template(
    State(shared): State<Arc<CloudShared>>,
    Path((version, waba_id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = enter_waba(&shared, &version, &waba_id, &headers) {
        return e.into_response();
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let text = |k: &str| body.get(k).and_then(Value::as_str).unwrap_or_default();
    let (name, language, category) = (text("name"), text("language"), text("category"));
    if name.is_empty()
        || name.len() > 512
        || !name
            .bytes()
            .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_'))
    {
        return GraphError::invalid_parameter("name must match ^[a-z0-9_]+$ (at most 512)")
            .into_response();
    }
    if language.is_empty() {
        return GraphError::invalid_parameter("language is required").into_response();
    }
    if !matches!(category, "MARKETING" | "UTILITY" | "AUTHENTICATION") {
        return GraphError::invalid_parameter(
            "category must be MARKETING, UTILITY or AUTHENTICATION",
        )
        .into_response();
    }
    let Some(components) = body.get("components").filter(|c| c.is_array()).cloned() else {
        return GraphError::invalid_parameter("components must be an array").into_response();
    };
    let id = (1_000_000_000_000_000 + shared.next_id()).to_string();
    let mut state = shared.lock();
    let Some(waba) = state.wabas.get_mut(&waba_id) else {
        return GraphError::unknown_object(&waba_id).into_response();
    };
    if waba
        .templates
        .iter()
        .any(|t| t.name == name && t.language == language)
    {
        let mut e = GraphError::invalid_parameter(
            "Content in this language already exists: a template with this name and language exists.",
        );
        e.subcode = Some(2_388_024);
        return e.into_response();
    }
    if waba.templates.len() >= MAX_TEMPLATES {
        let mut e = GraphError::invalid_parameter("The WABA has reached its template limit.");
        e.subcode = Some(2_388_019);
        return e.into_response();
    }
    waba.templates.push(TemplateView {
        id: id.clone(),
        waba_id: waba_id.clone(),
        name: name.to_owned(),
        language: language.to_owned(),
        category: category.to_owned(),
        status: "PENDING".to_owned(),
        components,
    });
    Json(json!({"id": id, "status": "PENDING", "category": category})).into_response()
}

pub(crate) async fn list_templates(
    State(shared): State<Arc<CloudShared>>,
    Path((version, waba_id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = enter_waba(&shared, &version, &waba_id, &headers) {
        return e.into_response();
    }
    let state = shared.lock();
    let all: Vec<Value> = state
        .wabas
        .get(&waba_id)
        .map(|w| w.templates.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(|t| query.get("name").is_none_or(|n| *n == t.name))
        .filter(|t| query.get("status").is_none_or(|s| *s == t.status))
        .map(|t| {
            json!({"name": t.name, "language": t.language, "category": t.category,
                   "status": t.status, "id": t.id, "components": t.components})
        })
        .collect();
    // Cursor paging as Meta's: `limit` (25 by default), `after` from the
    // previous page's cursors, `next` only while another page exists.
    let limit = query
        .get("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(25)
        .clamp(1, 1000);
    let limit = state
        .template_page_max
        .map_or(limit, |max| limit.min(max.max(1)));
    let start = match query.get("after") {
        None => 0,
        Some(after) => match after
            .strip_prefix(CURSOR)
            .and_then(|n| n.parse::<usize>().ok())
        {
            Some(n) if n <= all.len() => n,
            _ => {
                return GraphError::invalid_parameter("after is not a cursor of this listing")
                    .into_response();
            }
        },
    };
    let end = (start + limit).min(all.len());
    let mut paging = json!({"cursors": {"before": format!("{CURSOR}{start}"), "after": format!("{CURSOR}{end}")}});
    if end < all.len() {
        // Meta's `next` is a full URL; the simulator's names the address asked.
        let host = headers
            .get(axum::http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("localhost");
        paging["next"] = json!(format!(
            "http://{host}/{version}/{waba_id}/message_templates?limit={limit}&after={CURSOR}{end}"
        ));
    }
    Json(json!({"data": &all[start..end], "paging": paging})).into_response()
}

pub(crate) async fn subscribe(
    State(shared): State<Arc<CloudShared>>,
    Path((version, waba_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    set_subscribed(&shared, &version, &waba_id, &headers, true)
}

pub(crate) async fn unsubscribe(
    State(shared): State<Arc<CloudShared>>,
    Path((version, waba_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    set_subscribed(&shared, &version, &waba_id, &headers, false)
}

fn set_subscribed(
    shared: &CloudShared,
    version: &str,
    waba_id: &str,
    headers: &HeaderMap,
    subscribed: bool,
) -> Response {
    if let Err(e) = enter_waba(shared, version, waba_id, headers) {
        return e.into_response();
    }
    if let Some(w) = shared.lock().wabas.get_mut(waba_id) {
        w.subscribed = subscribed;
    }
    tracing::info!(waba.id = waba_id, subscribed, "WABA subscription changed");
    Json(json!({"success": true})).into_response()
}

pub(crate) async fn subscriptions(
    State(shared): State<Arc<CloudShared>>,
    Path((version, waba_id)): Path<(String, String)>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = enter_waba(&shared, &version, &waba_id, &headers) {
        return e.into_response();
    }
    let subscribed = shared
        .lock()
        .wabas
        .get(&waba_id)
        .is_some_and(|w| w.subscribed);
    let data = if subscribed {
        json!([{"whatsapp_business_api_data": {"id": shared.app_id, "name": "Switchyard (simulated)"}}])
    } else {
        json!([])
    };
    Json(json!({ "data": data })).into_response()
}

/// Runs the version and token checks for a call on phone number `id`.
fn enter_number(
    shared: &CloudShared,
    version: &str,
    id: &str,
    headers: &HeaderMap,
) -> Result<(), GraphError> {
    check_version(shared, version)?;
    let state = shared.lock();
    live_token(&state, bearer(headers))?;
    let Some(number) = state.numbers.get(id) else {
        return Err(GraphError::unknown_object(id));
    };
    authorise(&state, bearer(headers), &number.spec.waba_id)
}

pub(crate) async fn register(
    State(shared): State<Arc<CloudShared>>,
    Path((version, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(e) = enter_number(&shared, &version, &id, &headers) {
        return e.into_response();
    }
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    if body.get("messaging_product").and_then(Value::as_str) != Some("whatsapp") {
        return GraphError::missing_parameter("messaging_product").into_response();
    }
    let pin_ok = body
        .get("pin")
        .and_then(Value::as_str)
        .is_some_and(|p| p.len() == 6 && p.bytes().all(|b| b.is_ascii_digit()));
    if !pin_ok {
        return GraphError::invalid_value("pin must be 6 digits").into_response();
    }
    if let Some(n) = shared.lock().numbers.get_mut(&id) {
        n.registered = true;
    }
    Json(json!({"success": true})).into_response()
}

/// `GET /{phone_number_id}?fields=…`: the health fields the sender polls.
pub(crate) async fn number_fields(
    State(shared): State<Arc<CloudShared>>,
    Path((version, id)): Path<(String, String)>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Response {
    if let Err(e) = enter_number(&shared, &version, &id, &headers) {
        return e.into_response();
    }
    let _under_way = shared.health_reads.begin();
    let answer = health_fields(&shared, &id, &query);
    tokio::time::sleep(shared.health_reads.delay()).await;
    answer
}

/// The fields asked for, as they are now.
fn health_fields(shared: &CloudShared, id: &str, query: &HashMap<String, String>) -> Response {
    let state = shared.lock();
    let Some(n) = state.numbers.get(id) else {
        return GraphError::unknown_object(id).into_response();
    };
    let fields = query
        .get("fields")
        .map(String::as_str)
        .unwrap_or("verified_name,display_phone_number,quality_rating");
    let mut out = json!({ "id": id });
    for field in fields.split(',').map(str::trim).filter(|f| !f.is_empty()) {
        let value = match field {
            "id" => json!(id),
            "display_phone_number" => json!(format!("+{}", n.spec.display_phone_number)),
            "verified_name" => json!(format!("Sim {}", n.spec.display_phone_number)),
            "quality_rating" => json!(n.spec.quality_rating),
            "throughput" => {
                json!({"level": if n.spec.mps >= 1000 { "HIGH" } else { "STANDARD" }})
            }
            "whatsapp_business_manager_messaging_limit" | "messaging_limit_tier" => {
                json!(n.spec.messaging_limit)
            }
            "code_verification_status" => json!("VERIFIED"),
            "name_status" => json!("APPROVED"),
            "platform_type" => json!("CLOUD_API"),
            "status" => json!(if n.registered { "CONNECTED" } else { "PENDING" }),
            other => {
                return GraphError::plain(
                    StatusCode::BAD_REQUEST,
                    100,
                    format!("(#100) Tried accessing nonexisting field ({other})"),
                )
                .into_response();
            }
        };
        out[field] = value;
    }
    Json(out).into_response()
}

/// `GET /{version}/oauth/access_token?client_id&client_secret&code`: a code
/// works once, within the clock's `signup_code_ttl`.
pub(crate) async fn exchange_code(
    State(shared): State<Arc<CloudShared>>,
    Path(version): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(e) = check_version(&shared, &version) {
        return e.into_response();
    }
    let param = |k: &str| query.get(k).map(String::as_str).unwrap_or_default();
    if param("client_id") != shared.app_id {
        return GraphError::plain(
            StatusCode::BAD_REQUEST,
            101,
            "Error validating application. Invalid application ID.",
        )
        .into_response();
    }
    if param("client_secret") != shared.app_secret.expose_secret() {
        return GraphError::plain(
            StatusCode::BAD_REQUEST,
            1,
            "Error validating client secret.",
        )
        .into_response();
    }
    let waba_id = {
        let mut state = shared.lock();
        let ttl = state.clock.signup_code_ttl;
        let Some(code) = state.codes.get_mut(param("code")) else {
            return GraphError::oauth_code("Invalid verification code format.", 36_008)
                .into_response();
        };
        if code.used {
            return GraphError::oauth_code("This authorization code has been used.", 36_009)
                .into_response();
        }
        code.used = true;
        if Instant::now().saturating_duration_since(code.issued) >= ttl {
            return GraphError::oauth_code("This authorization code has expired.", 36_007)
                .into_response();
        }
        code.waba_id.clone()
    };
    match shared.add_token(&waba_id, None, None) {
        Ok(token) => Json(json!({"access_token": token, "token_type": "bearer"})).into_response(),
        Err(_) => GraphError::unknown_object(&waba_id).into_response(),
    }
}
