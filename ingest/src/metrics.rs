//! Every metric ingest emits, named once here so dashboards and docs have one
//! list. Labels come from closed sets (`&'static str`): a hostile sender can
//! never grow the label space. Call sites use the helpers through
//! `use crate::metrics as m;` (`m::accepted(kind)`), which leaves `metrics`
//! naming the facade crate.

use std::time::Duration;

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

/// Why a delivery was refused (the `reason` label of [`REJECTED`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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
    /// JetStream could not take the event (503).
    Unavailable,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::InvalidTenant => "invalid_tenant",
            Reason::BadToken => "bad_token",
            Reason::BadSignature => "bad_signature",
            Reason::TooLarge => "too_large",
            Reason::Malformed => "malformed",
            Reason::TenantMismatch => "tenant_mismatch",
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
        405 => "405",
        413 => "413",
        503 => "503",
        _ => "other",
    };
    metrics::histogram!(REQUEST_SECONDS, "status" => status).record(elapsed.as_secs_f64());
}

pub fn claim_batch(size: usize) {
    metrics::histogram!(CLAIM_BATCH_SIZE).record(size as f64);
}
