//! Dead letters: a message that can never be processed, or whose attempts ran
//! out, is published to `dlq.<direction>.<tenant>` with its failure reason,
//! original subject and attempt count, and only then terminated, so nothing
//! leaves the pipeline without a trace an operator can replay. A reply's
//! dead letter is also the tenant's `reply.dead_lettered` notification.

use async_nats::HeaderMap;

use crate::{
    lanes::LaneMessage,
    lanes::message::HEADER_ORIGINAL_SUBJECT,
    metrics as m,
    notifications::{Notification, NotificationEvent},
    subjects::{self, Direction},
    tenant_metrics,
};

pub const HEADER_REASON: &str = "Switchyard-Dlq-Reason";
pub const HEADER_ATTEMPTS: &str = "Switchyard-Dlq-Attempts";
pub const HEADER_LAST_ERROR: &str = "Switchyard-Dlq-Last-Error";
pub const HEADER_DEAD_AT_MS: &str = "Switchyard-Dlq-At-Ms";
pub const HEADER_ORIGINAL_MSG_ID: &str = "Switchyard-Original-Msg-Id";

/// Why a message was dead-lettered, as a fixed vocabulary. Its text form
/// ([`DeadLetterCode::as_str`]) is stored in the `Switchyard-Dlq-Reason`
/// header, labels the `switchyard_dead_letters_total` metric and is what the
/// CLI filters on: the texts never change, since stored letters carry them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum DeadLetterCode {
    /// The payload names another tenant than its subject (router and sender).
    TenantMismatch,
    /// The attempt limit was reached (router and sender).
    AttemptsExhausted,
    /// An inbound body that is not a webhook event we can read (router).
    MalformedEvent,
    /// A gathered burst holds a non-message event (router).
    MalformedTurn,
    /// The tenant's bot failed for good on this message (router).
    BotFailed,
    /// A reply that is not an `OutboundReply` (sender).
    MalformedReply,
    /// The tenant has no provisioned bridge to send from (sender).
    NoBridge,
    /// The tenant's per-contact hourly cap was reached (sender).
    ContactCap,
    /// The provider refused the request, or we could not build one (sender).
    Rejected,
    /// The provider answered neither a success nor an error we know (sender).
    UnexpectedAnswer,
    /// The next retry would have fallen past the age limit (sender).
    TooOld,
    /// A free-form Cloud API reply after the customer-service window closed:
    /// not attempted, or refused by Meta with `131047` (sender).
    WindowClosed,
    /// A tenant notification's endpoint never took it within the attempt or
    /// age limit, or its URL is refused (the sender's notifier).
    NotificationUndelivered,
    /// A text this version does not know, as read back from a stored letter
    /// (written by another version, or by hand): kept, never refused.
    Unknown(String),
}

impl DeadLetterCode {
    /// Every code this version writes.
    pub const KNOWN: [DeadLetterCode; 13] = [
        DeadLetterCode::TenantMismatch,
        DeadLetterCode::AttemptsExhausted,
        DeadLetterCode::MalformedEvent,
        DeadLetterCode::MalformedTurn,
        DeadLetterCode::BotFailed,
        DeadLetterCode::MalformedReply,
        DeadLetterCode::NoBridge,
        DeadLetterCode::ContactCap,
        DeadLetterCode::Rejected,
        DeadLetterCode::UnexpectedAnswer,
        DeadLetterCode::TooOld,
        DeadLetterCode::WindowClosed,
        DeadLetterCode::NotificationUndelivered,
    ];

    /// The stable text form (header value, metric label, CLI filter).
    pub fn as_str(&self) -> &str {
        match self {
            DeadLetterCode::TenantMismatch => "tenant_mismatch",
            DeadLetterCode::AttemptsExhausted => "attempts_exhausted",
            DeadLetterCode::MalformedEvent => "malformed_event",
            DeadLetterCode::MalformedTurn => "malformed_turn",
            DeadLetterCode::BotFailed => "bot_failed",
            DeadLetterCode::MalformedReply => "malformed_reply",
            DeadLetterCode::NoBridge => "no_bridge",
            DeadLetterCode::ContactCap => "contact_cap",
            DeadLetterCode::Rejected => "rejected",
            DeadLetterCode::UnexpectedAnswer => "unexpected_answer",
            DeadLetterCode::TooOld => "too_old",
            DeadLetterCode::WindowClosed => "window_closed",
            DeadLetterCode::NotificationUndelivered => "notification_undelivered",
            DeadLetterCode::Unknown(text) => text,
        }
    }

    /// The code a text names; a text no version of ours wrote is kept as
    /// [`DeadLetterCode::Unknown`].
    pub fn parse(text: &str) -> Self {
        Self::KNOWN
            .into_iter()
            .find(|code| code.as_str() == text)
            .unwrap_or_else(|| DeadLetterCode::Unknown(text.to_owned()))
    }
}

impl std::fmt::Display for DeadLetterCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for DeadLetterCode {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self::parse(text))
    }
}

impl serde::Serialize for DeadLetterCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// A dead letter's reason: its code and a human detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub code: DeadLetterCode,
    /// Human detail (no secrets, no payload).
    pub detail: String,
}

impl DeadLetter {
    pub fn new(code: DeadLetterCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
        }
    }
}

/// Publishes `message` to its tenant's dead-letter subject and waits for the
/// stream to store it. The caller terminates the original afterwards.
pub async fn publish(
    js: &async_nats::jetstream::Context,
    message: &LaneMessage,
    reason: &DeadLetter,
    attempts: u32,
) -> Result<(), async_nats::Error> {
    let mut headers = HeaderMap::new();
    for (name, values) in message.headers().iter() {
        for value in values {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(HEADER_ORIGINAL_SUBJECT, message.subject());
    headers.insert(HEADER_ORIGINAL_MSG_ID, message.message_id());
    headers.insert(HEADER_REASON, reason.code.as_str());
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
        format!("dlq:{}:{attempts}", message.message_id()).as_str(),
    );
    let subject = subjects::dead_letter(message.direction(), message.tenant());
    js.publish_with_headers(subject, headers, message.payload().clone())
        .await?
        .await?;
    metrics::counter!(m::DEAD_LETTERS, "direction" => message.direction().as_str(), "reason" => reason.code.to_string()).increment(1);
    metrics::counter!(
        m::TENANT_DEAD_LETTERS,
        "tenant" => tenant_metrics::label(message.tenant()),
        "direction" => message.direction().dead_letter_side().as_str()
    )
    .increment(1);
    tracing::warn!(tenant.id = %message.tenant(), message.id = %message.message_id(), dlq.reason = reason.code.as_str(), dlq.detail = %reason.detail, delivery.attempts = attempts, "message dead-lettered");
    if message.direction().dead_letter_side() == Direction::Outbound {
        // The reply's own id (`<event>:<part>`), as the tenant's bot knows it.
        let reply_id = serde_json::from_slice::<crate::replies::OutboundReply>(message.payload())
            .map(|reply| reply.reply_id.to_string())
            .unwrap_or_else(|_| message.message_id().to_owned());
        let event = NotificationEvent::ReplyDeadLettered {
            reply_id,
            reason: reason.code.clone(),
            attempts,
        };
        let now = time::OffsetDateTime::now_utc();
        let notification = Notification::new(
            message.tenant().clone(),
            now,
            event,
            &format!("{}:{attempts}", message.message_id()),
        );
        crate::notifications::publish(js, &notification).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_code_reads_back_from_its_text() {
        for code in DeadLetterCode::KNOWN {
            assert_eq!(DeadLetterCode::parse(code.as_str()), code);
        }
    }

    #[test]
    fn the_stored_texts_never_change() {
        let texts: Vec<&str> = DeadLetterCode::KNOWN
            .iter()
            .map(DeadLetterCode::as_str)
            .collect();
        assert_eq!(
            texts,
            [
                "tenant_mismatch",
                "attempts_exhausted",
                "malformed_event",
                "malformed_turn",
                "bot_failed",
                "malformed_reply",
                "no_bridge",
                "contact_cap",
                "rejected",
                "unexpected_answer",
                "too_old",
                "window_closed",
                "notification_undelivered",
            ]
        );
    }

    #[test]
    fn an_unknown_text_is_kept_as_is() {
        let code = DeadLetterCode::parse("written_by_a_newer_version");
        assert_eq!(
            code,
            DeadLetterCode::Unknown("written_by_a_newer_version".to_owned())
        );
        assert_eq!(code.to_string(), "written_by_a_newer_version");
        assert_eq!(
            serde_json::to_string(&DeadLetterCode::TooOld).unwrap(),
            "\"too_old\""
        );
    }
}
