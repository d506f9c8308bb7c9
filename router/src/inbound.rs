//! An inbound lane message, read once: the webhook event is parsed when the
//! runner takes the message from its tenant's lane, and that one parse serves
//! ordering (the chat), gathering and the step. The body is the one ingest
//! verified and stored; a body that no longer parses is kept as the error, for
//! the step to dead-letter.
//!
//! The `Switchyard-Event-Id` header is checked here too: reply ids (and so the
//! outbound stream's `Nats-Msg-Id`s) derive from it, so one naming another
//! tenant than the subject would let this tenant's replies collide with that
//! tenant's. Such a message is unreadable, like a bad body: dead-lettered with
//! the reason, never answered.

use switchyard_shared::{
    events::{self, Delivery, EventError, ParsedEvent, WebhookEvent},
    ids::TenantId,
    lanes::LaneMessage,
    scoped_event_id::{ScopedEventId, ScopedIdError},
};

/// Why a lane message cannot be handled.
#[derive(Debug, thiserror::Error)]
pub enum Unreadable {
    #[error(transparent)]
    Body(#[from] EventError),
    /// (`events::HEADER_EVENT_ID`; a test pins the two together.)
    #[error("Switchyard-Event-Id: {0}")]
    EventId(#[from] ScopedIdError),
}

/// A lane message with its webhook event.
#[derive(Debug)]
pub struct InboundMessage {
    lane: LaneMessage,
    event: Result<ParsedEvent, Unreadable>,
}

impl InboundMessage {
    /// Parses the message's body (the stream message's id names the delivery
    /// of an event without an id of its own; ingest's header id is preferred
    /// anyway) and checks that its event id header is scoped to its subject's tenant.
    pub fn read(lane: LaneMessage) -> Self {
        let event = checked_event(
            lane.tenant(),
            lane.header(events::HEADER_EVENT_ID),
            lane.payload(),
            lane.message_id(),
        );
        Self { lane, event }
    }

    /// The message as it sits in the lane (tenant, headers, ack and friends).
    pub fn lane(&self) -> &LaneMessage {
        &self.lane
    }

    /// The parsed event, or why the message is not one we may handle.
    pub fn event(&self) -> Result<&ParsedEvent, &Unreadable> {
        self.event.as_ref()
    }

    /// The chat whose order this message keeps; empty for bridge events and
    /// unreadable bodies, which order nothing.
    pub fn chat_id(&self) -> &str {
        match self.event.as_ref().map(|parsed| &parsed.event) {
            Ok(WebhookEvent::Message(m)) => m.chat_id.as_str(),
            Ok(WebhookEvent::Typing(t)) => t.chat_id.as_str(),
            Ok(WebhookEvent::PollVote(body)) => body
                .get("chat_id")
                .and_then(|c| c.as_str())
                .unwrap_or_default(),
            _ => "",
        }
    }
}

/// The event of a message on `tenant`'s subject: its event id header, when
/// present, must be `<tenant>:…` (ingest always writes one; test and tool
/// publishers may leave it out, and the step then falls back to the body's id).
fn checked_event(
    tenant: &TenantId,
    event_id_header: Option<&str>,
    payload: &[u8],
    stream_message_id: &str,
) -> Result<ParsedEvent, Unreadable> {
    if let Some(raw) = event_id_header {
        ScopedEventId::parse_for(tenant, raw)?;
    }
    Ok(events::parse(payload, Delivery::Named(stream_message_id))?)
}

impl AsRef<LaneMessage> for InboundMessage {
    fn as_ref(&self) -> &LaneMessage {
        &self.lane
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] =
        br#"{"event":"message","message_id":"M1","chat_id":"c","from_me":false,"timestamp":1}"#;

    fn acme() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    #[test]
    fn an_event_id_of_the_subjects_tenant_or_none_is_read() {
        for header in [Some("acme:M1"), None] {
            let parsed = checked_event(&acme(), header, BODY, "acme:M1").unwrap();
            assert_eq!(parsed.event_id.as_str(), "M1");
        }
    }

    #[test]
    fn an_event_id_naming_another_tenant_makes_the_message_unreadable() {
        for header in ["globex:M1", "M1"] {
            let err = checked_event(&acme(), Some(header), BODY, "x").unwrap_err();
            assert!(matches!(err, Unreadable::EventId(_)), "{header}: {err}");
            assert!(
                err.to_string().starts_with("Switchyard-Event-Id: "),
                "{err}"
            );
        }
    }
}
