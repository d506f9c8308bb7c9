//! An inbound lane message, read once: the webhook event is parsed when the
//! runner takes the message from its tenant's lane, and that one parse serves
//! ordering (the chat), gathering and the step. The body is the one ingest
//! verified and stored; a body that no longer parses is kept as the error, for
//! the step to dead-letter.

use switchyard_shared::{
    events::{self, Delivery, EventError, ParsedEvent, WebhookEvent},
    lanes::LaneMessage,
};

/// A lane message with its webhook event.
#[derive(Debug)]
pub struct InboundMessage {
    lane: LaneMessage,
    event: Result<ParsedEvent, EventError>,
}

impl InboundMessage {
    /// Parses the message's body (the stream message's id names the delivery
    /// of an event without an id of its own; ingest's header id is preferred anyway).
    pub fn read(lane: LaneMessage) -> Self {
        let event = events::parse(lane.payload(), Delivery::Named(lane.message_id()));
        Self { lane, event }
    }

    /// The message as it sits in the lane (tenant, headers, ack and friends).
    pub fn lane(&self) -> &LaneMessage {
        &self.lane
    }

    /// The parsed event, or why the body is not one.
    pub fn event(&self) -> Result<&ParsedEvent, &EventError> {
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

impl AsRef<LaneMessage> for InboundMessage {
    fn as_ref(&self) -> &LaneMessage {
        &self.lane
    }
}
