//! `POST /cloud`: one signed batch, one answer. Meta re-sends a batch that
//! was not answered 200 (for up to 7 days) and every item carries its own
//! key, so the answer is 200 only when every item is durable or deliberately
//! dropped; 503 when some item could not be made durable, 429 when some
//! tenant is over its admission limit. The retry then carries only what is
//! new: items already durable are answered as duplicates.
//!
//! Within a batch, tenants are served concurrently and one tenant's items in
//! their batch order (a chat's messages keep their order in the stream).

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json,
    extract::{State, rejection::BytesRejection},
    http::{HeaderMap, StatusCode},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use switchyard_shared::{
    cloud_api::{
        signature,
        webhook::{self, BatchError, Item},
    },
    ids::TenantId,
    trace_context::{self, TraceContext},
};
use tracing::Instrument as _;

use super::{
    metrics as m,
    routing::{Destination, Routes},
};
use crate::{
    durable::{self, DurableEvent},
    handler::{Accepted, AppState},
    metrics as ingest_metrics,
    rejection::Rejection,
};

/// How one item ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemEnd {
    Durable,
    Duplicate,
    Throttled { retry_after_secs: u64 },
    Unavailable,
}

pub async fn receive(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let span = tracing::info_span!("ingest.cloud_webhook", cloud.items = tracing::field::Empty);
    trace_context::adopt_http(&span, &headers);
    let response = handle(&app, &headers, body).instrument(span).await;
    ingest_metrics::request_latency(response.status().as_u16(), started.elapsed());
    response
}

async fn handle(
    app: &AppState,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Some(cloud) = app.cloud.as_ref() else {
        return StatusCode::NOT_FOUND.into_response();
    };
    let body = match body {
        Ok(body) => body,
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            return Rejection::TooLarge {
                limit: cloud.settings.max_body_bytes,
            }
            .into_response();
        }
        Err(e) => {
            return Rejection::Malformed(format!("cannot read body: {}", e.body_text()))
                .into_response();
        }
    };
    // Over the raw bytes, before any parsing.
    let header = headers.get(signature::HEADER).map(|v| v.as_bytes());
    match cloud.settings.secrets.verify(&body, header) {
        Ok(used) => m::signature(used.as_str()),
        Err(e) => {
            m::signature(e.as_str());
            tracing::warn!(reason = e.as_str(), "Cloud API webhook refused: signature");
            return (
                StatusCode::UNAUTHORIZED,
                Json(serde_json::json!({ "error": e.to_string() })),
            )
                .into_response();
        }
    }
    let batch = match webhook::split(&body) {
        Ok(batch) => batch,
        Err(e) => {
            // Signed by Meta, yet not a WhatsApp batch: a retry cannot fix it.
            let reason = match e {
                BatchError::NotJson(_) => "not_json",
                BatchError::OtherObject(_) => "other_object",
                BatchError::NoEntries => "no_entries",
            };
            m::batch_dropped(reason);
            tracing::warn!(error = %e, "signed Cloud API POST is not a WhatsApp batch; dropped");
            return Json(serde_json::json!({ "status": "dropped", "reason": e.to_string() }))
                .into_response();
        }
    };
    for refused in &batch.refused {
        m::item("unreadable", "refused");
        tracing::info!(at = %refused.at, reason = %refused.reason, "Cloud API item refused; the rest of the batch goes on");
    }
    tracing::Span::current().record("cloud.items", batch.items.len());
    let routes = match Routes::load(&cloud.db, &batch.items).await {
        Ok(routes) => routes,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read Cloud API routes; Meta will redeliver the batch");
            return Rejection::Unavailable.into_response();
        }
    };
    // Each tenant's items in batch order.
    let mut per_tenant: Vec<(TenantId, Vec<&Item>)> = Vec::new();
    let mut index: HashMap<TenantId, usize> = HashMap::new();
    for item in &batch.items {
        match routes.destination(item) {
            Destination::Dropped(reason) => {
                m::item(item.kind.as_str(), reason);
                tracing::info!(
                    cloud.item = item.kind.as_str(),
                    drop.reason = reason,
                    "Cloud API item dropped"
                );
            }
            Destination::Tenants(tenants) => {
                for tenant in tenants {
                    let at = *index.entry(tenant.clone()).or_insert_with(|| {
                        per_tenant.push((tenant.clone(), Vec::new()));
                        per_tenant.len() - 1
                    });
                    per_tenant[at].1.push(item);
                }
            }
        }
    }
    let received_at_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as i64;
    let trace = TraceContext::of(&tracing::Span::current());
    let ends = futures::future::join_all(
        per_tenant
            .iter()
            .map(|(tenant, items)| tenant_items(app, tenant, items, received_at_ms, &trace)),
    )
    .await;
    answer(&ends.concat())
}

/// One tenant's items, in order; once the tenant is over its limit (or an
/// item cannot be made durable), its later items are not tried: they come
/// again with Meta's retry, behind the earlier ones.
async fn tenant_items(
    app: &AppState,
    tenant: &TenantId,
    items: &[&Item],
    received_at_ms: i64,
    trace: &TraceContext,
) -> Vec<ItemEnd> {
    let mut ends = Vec::with_capacity(items.len());
    for item in items {
        let kind = item.kind.as_str();
        if let Some(stop) = ends
            .last()
            .copied()
            .filter(|e| matches!(e, ItemEnd::Throttled { .. } | ItemEnd::Unavailable))
        {
            m::item(
                kind,
                if stop == ItemEnd::Unavailable {
                    "unavailable"
                } else {
                    "throttled"
                },
            );
            ends.push(stop);
            continue;
        }
        if let Err(over) = app.admission.admit(tenant) {
            m::item(kind, "throttled");
            ends.push(ItemEnd::Throttled {
                retry_after_secs: over.retry_after.as_secs_f64().ceil().max(1.0) as u64,
            });
            continue;
        }
        let body = Bytes::from(serde_json::to_vec(&item.body).unwrap_or_default());
        let event = DurableEvent {
            tenant,
            event_id: &item.event_id,
            body: &body,
        };
        let end = match durable::deliver(app, &event, received_at_ms, trace).await {
            Ok(Accepted::Published | Accepted::Outboxed) => {
                ingest_metrics::accepted(kind_label(kind));
                ItemEnd::Durable
            }
            Ok(Accepted::Duplicate | Accepted::Dropped) => {
                ingest_metrics::duplicate();
                ItemEnd::Duplicate
            }
            Err(_) => ItemEnd::Unavailable,
        };
        m::item(
            kind,
            match end {
                ItemEnd::Durable => "accepted",
                ItemEnd::Duplicate => "duplicate",
                ItemEnd::Throttled { .. } => "throttled",
                ItemEnd::Unavailable => "unavailable",
            },
        );
        ends.push(end);
    }
    ends
}

/// The `event` label of ingest's accepted counter for a Cloud item.
fn kind_label(kind: &str) -> &'static str {
    match kind {
        "message" => "cloud_message",
        "status" => "cloud_status",
        "error" => "cloud_error",
        _ => "cloud_account",
    }
}

/// One answer for the batch: 503 if any item is not durable, else 429 if
/// any tenant was over its limit, else 200.
fn answer(ends: &[ItemEnd]) -> Response {
    if ends.contains(&ItemEnd::Unavailable) {
        return Rejection::Unavailable.into_response();
    }
    let throttled = ends.iter().filter_map(|e| match e {
        ItemEnd::Throttled { retry_after_secs } => Some(*retry_after_secs),
        _ => None,
    });
    if let Some(retry_after_secs) = throttled.max() {
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            Json(serde_json::json!({
                "error": "a tenant of this batch is over its admission limit; its items were not accepted (the others were)"
            })),
        )
            .into_response();
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from(retry_after_secs),
        );
        return response;
    }
    let count = |wanted: ItemEnd| ends.iter().filter(|e| **e == wanted).count();
    Json(serde_json::json!({
        "status": "accepted",
        "accepted": count(ItemEnd::Durable),
        "duplicate": count(ItemEnd::Duplicate),
    }))
    .into_response()
}
