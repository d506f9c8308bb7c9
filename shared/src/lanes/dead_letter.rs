//! Dead letters: a message that can never be processed, or whose attempts ran
//! out, is published to `dlq.<direction>.<tenant>` with its failure reason,
//! original subject and attempt count, and only then terminated, so nothing
//! leaves the pipeline without a trace an operator can replay.

use async_nats::HeaderMap;

use crate::{lanes::LaneMessage, lanes::message::HEADER_ORIGINAL_SUBJECT, subjects};

pub const HEADER_REASON: &str = "Switchyard-Dlq-Reason";
pub const HEADER_ATTEMPTS: &str = "Switchyard-Dlq-Attempts";
pub const HEADER_LAST_ERROR: &str = "Switchyard-Dlq-Last-Error";
pub const HEADER_DEAD_AT_MS: &str = "Switchyard-Dlq-At-Ms";
pub const HEADER_ORIGINAL_MSG_ID: &str = "Switchyard-Original-Msg-Id";

/// Why a message was dead-lettered (a metric label and a header value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetterReason {
    /// Short, fixed vocabulary: `tenant_mismatch`, `attempts_exhausted`, `rejected`, …
    pub code: &'static str,
    /// Human detail (no secrets, no payload).
    pub detail: String,
}

/// Publishes `message` to its tenant's dead-letter subject and waits for the
/// stream to store it. The caller terminates the original afterwards.
pub async fn publish(
    js: &async_nats::jetstream::Context,
    message: &LaneMessage,
    reason: &DeadLetterReason,
    attempts: u32,
) -> Result<(), async_nats::Error> {
    let mut headers = HeaderMap::new();
    for (name, values) in message.headers.iter() {
        for value in values {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(HEADER_ORIGINAL_SUBJECT, message.subject.as_str());
    headers.insert(HEADER_ORIGINAL_MSG_ID, message.message_id.as_str());
    headers.insert(HEADER_REASON, reason.code);
    headers.insert(HEADER_ATTEMPTS, attempts.to_string().as_str());
    let detail: String = reason.detail.chars().take(512).collect();
    headers.insert(
        HEADER_LAST_ERROR,
        detail.replace(['\r', '\n'], " ").as_str(),
    );
    let now_ms = time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000;
    headers.insert(HEADER_DEAD_AT_MS, now_ms.to_string().as_str());
    // A dead letter is stored once per (message, attempts): a retried
    // dead-lettering after a crash does not duplicate it.
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        format!("dlq:{}:{attempts}", message.message_id).as_str(),
    );
    let subject = subjects::dead_letter(message.direction, &message.tenant);
    js.publish_with_headers(subject, headers, message.payload.clone())
        .await?
        .await?;
    metrics::counter!("switchyard_dead_letters_total", "direction" => message.direction.as_str(), "reason" => reason.code).increment(1);
    tracing::warn!(tenant.id = %message.tenant, message.id = %message.message_id, dlq.reason = reason.code, dlq.detail = %reason.detail, delivery.attempts = attempts, "message dead-lettered");
    Ok(())
}
