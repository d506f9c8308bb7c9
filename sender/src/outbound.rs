//! A reply lane message, read once: the reply is parsed when the dispatcher
//! takes the message from its tenant's lane, and that one parse serves both
//! the chat ordering and the delivery step. A body that is not a reply is
//! kept as the error, for the delivery step to dead-letter.

use switchyard_shared::{lanes::LaneMessage, replies::OutboundReply};

/// A lane message with its reply.
#[derive(Debug)]
pub struct OutboundMessage {
    lane: LaneMessage,
    reply: Result<OutboundReply, serde_json::Error>,
}

impl OutboundMessage {
    /// Parses the message's body.
    pub fn read(lane: LaneMessage) -> Self {
        let reply = serde_json::from_slice(lane.payload());
        Self { lane, reply }
    }

    /// The subject's tenant (the one the reply must be sent for).
    pub fn tenant(&self) -> &switchyard_shared::ids::TenantId {
        self.lane.tenant()
    }

    /// The message's id in its stream.
    pub fn message_id(&self) -> &str {
        self.lane.message_id()
    }

    /// The lane message alone, to put it back in its lane.
    pub fn into_lane(self) -> LaneMessage {
        self.lane
    }

    /// The chat the reply is for; empty when the body is not a reply (such a
    /// message is dead-lettered by the delivery step, and orders nothing).
    pub fn chat_id(&self) -> &str {
        self.reply
            .as_ref()
            .map_or("", |reply| reply.chat_id.as_str())
    }

    /// The delivery's span: a child of the router step that published the
    /// reply (its context travels in the headers), with the tenant, the
    /// inbound event the reply answers and the reply's own id.
    pub fn span(&self) -> tracing::Span {
        let reply = self.reply.as_ref().ok();
        let span = tracing::info_span!(
            "sender.deliver",
            tenant.id = %self.lane.tenant(),
            event.id = reply.map(|r| r.event_id.as_str()).unwrap_or_default(),
            reply.id = reply.map(|r| r.reply_id.as_str()).unwrap_or_default(),
            message.id = %self.lane.message_id(),
        );
        switchyard_shared::trace_context::adopt(&span, self.lane.headers());
        span
    }

    /// The lane message and the reply, for the delivery step.
    pub fn into_parts(self) -> (LaneMessage, Result<OutboundReply, serde_json::Error>) {
        (self.lane, self.reply)
    }
}
