//! The webhook route, as a list of named steps: authenticate the URL, read the
//! body within its limit, verify and parse it, drop what is not forwarded,
//! admit it within its tenant's limit, bind a signed webhook-id to the
//! tenant, then make the event durable exactly once and answer.
//!
//! Order matters for the front door: the token is checked before the body is
//! read, so an unauthenticated caller learns nothing but 401 and cannot make
//! us buffer a body. 200 is only ever answered once the event is durable in
//! JetStream or, when JetStream cannot take it, in the PostgreSQL outbox (or
//! was already); 503 only when neither took it.

use std::{
    sync::Arc,
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use axum::{
    Json,
    extract::{FromRequest, Path, Request, State, rejection::PathRejection},
    response::{IntoResponse, Response},
};
use bytes::Bytes;
use switchyard_shared::{
    events::WebhookEvent,
    ids::TenantId,
    trace_context::{self, TraceContext},
    webhook_auth::HOOK_PATH_PREFIX,
};
use tracing::Instrument as _;

use crate::{
    admission::Admission,
    durable::{self, DurableEvent},
    idempotency::Keys,
    metrics as m,
    outbox::Outbox,
    publish::Publisher,
    refusal_log::RefusalLog,
    rejection::Rejection,
    replay_guard::{Bound, ReplayGuard},
    single_flight::InFlight,
    verify::{UnverifiedWebhook, Verifier},
};

/// Everything a request needs; shared by all requests.
#[derive(Debug)]
pub struct AppState {
    pub verifier: Verifier,
    pub keys: Keys,
    /// Each tenant's admission limit.
    pub admission: Admission,
    /// Binds signed webhook-ids to their first tenant.
    pub replay_guard: ReplayGuard,
    pub publisher: Publisher,
    pub outbox: Outbox,
    pub in_flight: InFlight,
    pub max_body_bytes: usize,
    pub drop_typing: bool,
    /// Refusal log lines, at most one per reason per interval.
    pub refusal_log: RefusalLog,
    /// The Cloud API route's settings and database, when configured.
    pub cloud: Option<crate::cloud::CloudRoute>,
}

/// How an accepted delivery ended (all answered 200).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Newly durable in JetStream.
    Published,
    /// Newly durable in the outbox; the flusher publishes it later.
    Outboxed,
    /// Already durable: nothing new was stored.
    Duplicate,
    /// Deliberately not forwarded (e.g. `typing`).
    Dropped,
}

impl IntoResponse for Accepted {
    fn into_response(self) -> Response {
        let status = match self {
            Accepted::Published | Accepted::Outboxed => "accepted",
            Accepted::Duplicate => "duplicate",
            Accepted::Dropped => "dropped",
        };
        Json(serde_json::json!({ "status": status })).into_response()
    }
}

/// `POST /hook/{tenant}/{token}`.
pub async fn receive(
    State(app): State<Arc<AppState>>,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Response {
    let started = Instant::now();
    // The webhook's span: a child of the caller's trace when the request
    // carries a `traceparent`, the root of a new trace otherwise.
    let span = tracing::info_span!(
        "ingest.webhook",
        tenant.id = tracing::field::Empty,
        event.id = tracing::field::Empty
    );
    trace_context::adopt_http(&span, request.headers());
    let response = match handle(&app, path, request).instrument(span).await {
        Ok(accepted) => accepted.into_response(),
        Err(rejection) => {
            m::rejected(rejection.reason());
            rejection.into_response()
        }
    };
    m::request_latency(response.status().as_u16(), started.elapsed());
    response
}

/// Any other path: under `/hook/` it is a webhook URL that cannot carry a
/// valid token (401, like a bad token); elsewhere, 404.
pub async fn unrouted(State(app): State<Arc<AppState>>, uri: axum::http::Uri) -> Response {
    let under_hook = uri
        .path()
        .strip_prefix(HOOK_PATH_PREFIX)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    if under_hook {
        let rejection = Rejection::InvalidTenant;
        log_refused(&app, &rejection, Caller::NotAWebhookPath);
        m::rejected(rejection.reason());
        return rejection.into_response();
    }
    axum::http::StatusCode::NOT_FOUND.into_response()
}

/// Who a refusal's log line names.
enum Caller<'a> {
    /// A path under `/hook/` that is not `/hook/<tenant>/<token>`.
    NotAWebhookPath,
    /// A path that does not even decode.
    UndecodablePath,
    /// The tenant the URL claims, not authenticated (attacker-controlled).
    Claimed(&'a str),
    /// An authenticated tenant.
    Tenant(&'a TenantId),
}

/// The log line of a refusal: at most one per reason per
/// [`crate::refusal_log::INTERVAL`], saying how many went unlogged before it
/// (`log.suppressed`). Authentication failures are warnings; a bad body from
/// an authenticated bridge is information. The token never appears.
fn log_refused(app: &AppState, rejection: &Rejection, caller: Caller<'_>) {
    let reason = rejection.reason();
    let Some(suppressed) = app.refusal_log.admit(reason, Instant::now()) else {
        return;
    };
    let reason = reason.as_str();
    match (caller, rejection) {
        (Caller::NotAWebhookPath, _) => tracing::warn!(
            reason,
            log.suppressed = suppressed,
            "webhook refused: not /hook/<tenant>/<token>"
        ),
        (Caller::UndecodablePath, _) => tracing::warn!(
            reason,
            log.suppressed = suppressed,
            "webhook refused: undecodable path"
        ),
        (Caller::Claimed(raw), _) => {
            // Escaped and shortened.
            let shown: String = raw.chars().take(80).collect();
            tracing::warn!(tenant.raw = ?shown, reason, log.suppressed = suppressed, "webhook refused");
        }
        (Caller::Tenant(tenant), Rejection::Malformed(detail)) => {
            tracing::info!(tenant.id = %tenant, reason, error = %detail, log.suppressed = suppressed, "webhook refused");
        }
        (Caller::Tenant(tenant), Rejection::TooLarge { .. }) => {
            tracing::info!(tenant.id = %tenant, reason, log.suppressed = suppressed, "webhook refused");
        }
        (Caller::Tenant(tenant), _) => {
            tracing::warn!(tenant.id = %tenant, reason, log.suppressed = suppressed, "webhook refused");
        }
    }
}

/// Runs in the `ingest.webhook` span, whose `tenant.id` and `event.id` it
/// records once known.
async fn handle(
    app: &AppState,
    path: Result<Path<(String, String)>, PathRejection>,
    request: Request,
) -> Result<Accepted, Rejection> {
    let received_at = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    // A path that does not even decode (e.g. invalid UTF-8) cannot name a tenant.
    let Path((raw_tenant, token)) = path.map_err(|_| {
        let rejection = Rejection::InvalidTenant;
        log_refused(app, &rejection, Caller::UndecodablePath);
        rejection
    })?;
    let tenant = app
        .verifier
        .authenticate(&UnverifiedWebhook {
            tenant: &raw_tenant,
            token: &token,
        })
        .await
        .inspect_err(|rejection| log_refused(app, rejection, Caller::Claimed(&raw_tenant)))?;
    let span = tracing::Span::current();
    span.record("tenant.id", tracing::field::display(tenant.id()));
    let (parts, body) = request.into_parts();
    let body = read_body(app, Request::from_parts(parts.clone(), body))
        .await
        .inspect_err(|rejection| log_refused(app, rejection, Caller::Tenant(tenant.id())))?;
    let webhook = app
        .verifier
        .accept(
            tenant.clone(),
            &parts.headers,
            body,
            received_at.as_secs() as i64,
        )
        .inspect_err(|rejection| log_refused(app, rejection, Caller::Tenant(tenant.id())))?;

    span.record(
        "event.id",
        tracing::field::display(&webhook.event().event_id),
    );
    let kind = webhook.event().event.kind();
    match &webhook.event().event {
        WebhookEvent::Typing(_) if app.drop_typing => {
            m::dropped(kind);
            return Ok(Accepted::Dropped);
        }
        WebhookEvent::Unknown { .. } => m::unknown_event(),
        _ => {}
    }
    // After the checks (only what would be stored counts), before the key.
    app.admission.admit(webhook.tenant()).map_err(|over| {
        let rejection = Rejection::Throttled {
            per_second: over.policy.per_second.get(),
            burst: over.policy.burst.get(),
            retry_after_secs: over.retry_after.as_secs_f64().ceil().max(1.0) as u64,
        };
        log_refused(app, &rejection, Caller::Tenant(webhook.tenant()));
        rejection
    })?;
    if let Some(signed) = webhook.signed()
        && app.replay_guard.bind(webhook.tenant(), signed).await == Bound::Elsewhere
    {
        let rejection = Rejection::ReplayedElsewhere;
        log_refused(app, &rejection, Caller::Tenant(webhook.tenant()));
        return Err(rejection);
    }
    // Published now or later from the outbox, the event continues this trace.
    let trace = TraceContext::of(&span);
    let event = DurableEvent {
        tenant: webhook.tenant(),
        event_id: &webhook.event().event_id,
        body: webhook.body(),
    };
    let accepted = durable::deliver(app, &event, received_at.as_millis() as i64, &trace).await?;
    match accepted {
        Accepted::Published | Accepted::Outboxed => m::accepted(kind),
        Accepted::Duplicate => m::duplicate(),
        Accepted::Dropped => {}
    }
    tracing::debug!(
        tenant.id = %webhook.tenant(),
        event.id = %webhook.event().event_id,
        event.kind = kind,
        outcome = ?accepted,
        "webhook accepted"
    );
    Ok(accepted)
}

/// Reads the body under the route's limit (`DefaultBodyLimit`), mapping an
/// oversize body to 413.
async fn read_body(app: &AppState, request: Request) -> Result<Bytes, Rejection> {
    Bytes::from_request(request, &()).await.map_err(|e| {
        if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
            Rejection::TooLarge {
                limit: app.max_body_bytes,
            }
        } else {
            Rejection::Malformed(format!("cannot read body: {}", e.body_text()))
        }
    })
}
