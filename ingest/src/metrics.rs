//! Every metric ingest emits, named once here so dashboards and docs have one
//! list. Labels come from closed sets (`&'static str`): a hostile sender can
//! never grow the label space. Call sites use the helpers through
//! `use crate::metrics as m;` (`m::accepted(kind)`), which leaves `metrics`
//! naming the facade crate.

use std::time::Duration;

/// Webhook connections closed at once because
/// `SWITCHYARD_HTTP_MAX_CONNECTIONS` were open.
pub const CONNECTIONS_REFUSED: &str = "switchyard_ingest_connections_refused_total";
/// Failed `accept` calls on the webhook listener (e.g. out of descriptors).
pub const ACCEPT_FAILURES: &str = "switchyard_ingest_accept_failures_total";
/// Requests answered 503 at once because `SWITCHYARD_HTTP_MAX_IN_FLIGHT`
/// requests were in flight.
pub const SHED: &str = "switchyard_ingest_shed_total";
/// Events made durable in JetStream, by event type.
pub const ACCEPTED: &str = "switchyard_ingest_accepted_total";
/// Deliveries answered 200 without a new message (key already published, or
/// JetStream reported the `Nats-Msg-Id` as a duplicate).
pub const DUPLICATE: &str = "switchyard_ingest_duplicate_total";
/// Deliveries refused, by reason (see [`Reason`]).
pub const REJECTED: &str = "switchyard_ingest_rejected_total";
/// Events answered 200 but deliberately not published (e.g. `typing`).
pub const DROPPED: &str = "switchyard_ingest_dropped_total";
/// Events of a type the provider did not document (published; the router decides).
pub const UNKNOWN_EVENT: &str = "switchyard_ingest_unknown_event_total";
/// Events published without an idempotency claim because PostgreSQL was down,
/// slow or saturated, by reason.
pub const DEGRADED: &str = "switchyard_ingest_db_degraded_total";
/// Marks 'published' that could not be queued (the key stays 'claimed').
pub const MARK_DROPPED: &str = "switchyard_ingest_mark_dropped_total";
/// Time from queueing a claim to its answer (waiting for a flush slot, the
/// statement, the round trip); claims that went degraded are not in it.
pub const CLAIM_SECONDS: &str = "switchyard_ingest_claim_seconds";
/// Time from publish to JetStream ack.
pub const PUBLISH_SECONDS: &str = "switchyard_ingest_publish_seconds";
/// Time to answer a webhook, by status code.
pub const REQUEST_SECONDS: &str = "switchyard_ingest_request_seconds";
/// Keys written per group-commit statement.
pub const CLAIM_BATCH_SIZE: &str = "switchyard_ingest_claim_batch_size";
/// Publish attempts that failed and were tried again within the publish
/// budget, by the failure (`disconnected`, `timeout`, `no_responders`,
/// `refused`, `failed`).
pub const PUBLISH_RETRIES: &str = "switchyard_ingest_publish_retries_total";
/// Publishes acked after at least one retry.
pub const PUBLISH_RECOVERED: &str = "switchyard_ingest_publish_recovered_total";
/// Events kept in the PostgreSQL outbox and answered 200, by cause:
/// `publish_failed` (JetStream did not take it within the budget) or
/// `backlog` (its tenant had events in the outbox, which it must not overtake).
pub const OUTBOXED: &str = "switchyard_ingest_outboxed_total";
/// Outboxed events published by the flusher, by result (`stored`,
/// `duplicate`: the stream already had the `Nats-Msg-Id`).
pub const OUTBOX_FLUSHED: &str = "switchyard_ingest_outbox_flushed_total";
/// Events the outbox did not take, by reason (`disabled`, `full`,
/// `tenant_full`, `saturated`, `timeout`, `error`).
pub const OUTBOX_REFUSED: &str = "switchyard_ingest_outbox_refused_total";
/// Events in the outbox, fleet-wide, as this replica last estimated
/// (every replica reports the same figure: aggregate with `max`, not `sum`).
pub const OUTBOX_DEPTH: &str = "switchyard_ingest_outbox_depth";
/// Tenants with events in the outbox (same caveat as the depth).
pub const OUTBOX_TENANTS: &str = "switchyard_ingest_outbox_tenants";
/// Time for an outbox write (queue, statement, synchronous commit).
pub const OUTBOX_WRITE_SECONDS: &str = "switchyard_ingest_outbox_write_seconds";
/// Events written per outbox statement.
pub const OUTBOX_BATCH_SIZE: &str = "switchyard_ingest_outbox_batch_size";
/// Flusher rounds that stopped on a failure, by step (`publish`, `database`).
pub const OUTBOX_FLUSH_FAILURES: &str = "switchyard_ingest_outbox_flush_failures_total";
/// 503 answers for an event that may be stored all the same: a publish
/// handed to the client and neither acked nor refused, or an outbox write
/// still running when its request gave up. Only when neither JetStream nor
/// PostgreSQL took the event in time.
pub const UNAVAILABLE_UNCERTAIN: &str = "switchyard_ingest_unavailable_uncertain_total";

/// Signed deliveries let through without the cross-tenant webhook-id check
/// because PostgreSQL did not decide in time, by reason (`timeout`,
/// `error`, `undecided`).
pub const REPLAY_UNCHECKED: &str = "switchyard_ingest_replay_unchecked_total";

/// Events refused (429) because their tenant was over its admission limit,
/// by `tenant` (capped: `shared::tenant_metrics`).
pub const TENANT_THROTTLED: &str = "switchyard_ingest_tenant_throttled_total";

/// Why a delivery was refused (the `reason` label of [`REJECTED`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The URL's tenant is not a valid tenant id (401).
    InvalidTenant,
    /// The URL's token does not match its tenant (401).
    BadToken,
    /// A Standard Webhooks signature was required and is missing or wrong (401).
    BadSignature,
    /// The body passed the size limit (413).
    TooLarge,
    /// The body is not JSON or misses a required field (400).
    Malformed,
    /// The body's `customer_ref` differs from the URL's tenant (400).
    TenantMismatch,
    /// A signed `webhook-id` already delivered to another tenant's URL (409).
    ReplayedElsewhere,
    /// The tenant is over its admission limit (429).
    Throttled,
    /// Neither JetStream nor the outbox could take the event (503).
    Unavailable,
}

impl Reason {
    /// Every reason, once.
    pub const ALL: [Reason; 9] = [
        Reason::InvalidTenant,
        Reason::BadToken,
        Reason::BadSignature,
        Reason::TooLarge,
        Reason::Malformed,
        Reason::TenantMismatch,
        Reason::ReplayedElsewhere,
        Reason::Throttled,
        Reason::Unavailable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidTenant => "invalid_tenant",
            Reason::BadToken => "bad_token",
            Reason::BadSignature => "bad_signature",
            Reason::TooLarge => "too_large",
            Reason::Malformed => "malformed",
            Reason::TenantMismatch => "tenant_mismatch",
            Reason::ReplayedElsewhere => "replayed_elsewhere",
            Reason::Throttled => "throttled",
            Reason::Unavailable => "unavailable",
        }
    }
}

pub fn accepted(kind: &'static str) {
    metrics::counter!(ACCEPTED, "event" => kind).increment(1);
}

pub fn duplicate() {
    metrics::counter!(DUPLICATE).increment(1);
}

pub fn rejected(reason: Reason) {
    metrics::counter!(REJECTED, "reason" => reason.as_str()).increment(1);
}

pub fn dropped(kind: &'static str) {
    metrics::counter!(DROPPED, "event" => kind).increment(1);
}

pub fn unknown_event() {
    metrics::counter!(UNKNOWN_EVENT).increment(1);
}

pub fn degraded(reason: &'static str) {
    metrics::counter!(DEGRADED, "reason" => reason).increment(1);
}

pub fn mark_dropped() {
    metrics::counter!(MARK_DROPPED).increment(1);
}

pub fn claim_latency(elapsed: Duration) {
    metrics::histogram!(CLAIM_SECONDS).record(elapsed.as_secs_f64());
}

pub fn publish_latency(elapsed: Duration) {
    metrics::histogram!(PUBLISH_SECONDS).record(elapsed.as_secs_f64());
}

pub fn request_latency(status: u16, elapsed: Duration) {
    let status: &'static str = match status {
        200 => "200",
        400 => "400",
        401 => "401",
        404 => "404",
        409 => "409",
        405 => "405",
        413 => "413",
        429 => "429",
        503 => "503",
        _ => "other",
    };
    metrics::histogram!(REQUEST_SECONDS, "status" => status).record(elapsed.as_secs_f64());
}

pub fn claim_batch(size: usize) {
    metrics::histogram!(CLAIM_BATCH_SIZE).record(size as f64);
}

pub fn publish_retry(error: &'static str) {
    metrics::counter!(PUBLISH_RETRIES, "error" => error).increment(1);
}

pub fn publish_retried_ok() {
    metrics::counter!(PUBLISH_RECOVERED).increment(1);
}

/// Why an event went to the outbox (the `cause` label of [`OUTBOXED`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxCause {
    PublishFailed,
    Backlog,
}

pub fn outboxed(cause: OutboxCause) {
    let cause = match cause {
        OutboxCause::PublishFailed => "publish_failed",
        OutboxCause::Backlog => "backlog",
    };
    metrics::counter!(OUTBOXED, "cause" => cause).increment(1);
}

pub fn outbox_flushed(duplicate: bool) {
    let result = if duplicate { "duplicate" } else { "stored" };
    metrics::counter!(OUTBOX_FLUSHED, "result" => result).increment(1);
}

pub fn outbox_refused(reason: &'static str) {
    metrics::counter!(OUTBOX_REFUSED, "reason" => reason).increment(1);
}

pub fn outbox_depth(events: u64, tenants: usize) {
    metrics::gauge!(OUTBOX_DEPTH).set(events as f64);
    metrics::gauge!(OUTBOX_TENANTS).set(tenants as f64);
}

pub fn outbox_write_latency(elapsed: Duration) {
    metrics::histogram!(OUTBOX_WRITE_SECONDS).record(elapsed.as_secs_f64());
}

pub fn outbox_batch(size: usize) {
    metrics::histogram!(OUTBOX_BATCH_SIZE).record(size as f64);
}

pub fn outbox_flush_failed(step: &'static str) {
    metrics::counter!(OUTBOX_FLUSH_FAILURES, "step" => step).increment(1);
}

pub fn throttled(tenant: &switchyard_shared::ids::TenantId) {
    metrics::counter!(TENANT_THROTTLED, "tenant" => switchyard_shared::tenant_metrics::label(tenant))
        .increment(1);
}

pub fn replay_unchecked(reason: &'static str) {
    metrics::counter!(REPLAY_UNCHECKED, "reason" => reason).increment(1);
}

pub fn unavailable_uncertain() {
    metrics::counter!(UNAVAILABLE_UNCERTAIN).increment(1);
}

pub fn connection_refused() {
    metrics::counter!(CONNECTIONS_REFUSED).increment(1);
}

pub fn accept_failed() {
    metrics::counter!(ACCEPT_FAILURES).increment(1);
}

pub fn shed() {
    metrics::counter!(SHED).increment(1);
}

/// Registers, at 0, what alerts and dashboards expect before the first
/// request: answers 200 and 503 (the ratio alerted on), accepted messages.
pub fn register() {
    for status in ["200", "503"] {
        let _ = metrics::histogram!(REQUEST_SECONDS, "status" => status);
    }
    metrics::counter!(ACCEPTED, "event" => "message").absolute(0);
    for reason in Reason::ALL {
        metrics::counter!(REJECTED, "reason" => reason.as_str()).absolute(0);
    }
    metrics::counter!(TENANT_THROTTLED, "tenant" => switchyard_shared::tenant_metrics::OTHER)
        .absolute(0);
}
