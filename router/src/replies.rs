//! Publishing a bot turn's replies to `outbound.<tenant>` (or `bulk.<tenant>`
//! when the event was re-run by an operator), each part under a message id
//! derived from the inbound event id and the part's index, and waiting until
//! JetStream has stored every part.

use async_nats::HeaderMap;
use switchyard_shared::{
    ids::{EventId, TenantId},
    message_ids::ChatId,
    replies::{
        HEADER_RECOVER_OF, HEADER_REPLAY_OF, MAX_BODY_CHARS, OutboundReply, Priority, ReplyMenu,
    },
    trace_context,
};

/// The lane of replies to an inbound event with these re-run headers: an
/// event an operator re-runs (`dlq replay`, `recover`) is answered in bulk,
/// so its replies never hold up the tenant's live ones.
pub fn priority_of_rerun(header: impl Fn(&str) -> bool) -> Priority {
    if header(HEADER_REPLAY_OF) || header(HEADER_RECOVER_OF) {
        Priority::Bulk
    } else {
        Priority::Live
    }
}

/// Builds the reply parts of one turn (bodies cut to the size limit).
pub fn build(
    tenant: &TenantId,
    event_id: &EventId,
    chat_id: &ChatId,
    bodies: &[String],
    menu: Option<&ReplyMenu>,
    received_at_ms: Option<i64>,
    priority: Priority,
) -> Vec<OutboundReply> {
    let parts = u16::try_from(bodies.len()).unwrap_or(u16::MAX);
    // A turn's menu is its last part (`BotTurn::menu`).
    let last = parts.saturating_sub(1);
    bodies
        .iter()
        .zip(0u16..)
        .filter(|(body, _)| !body.trim().is_empty())
        .map(|(body, part)| OutboundReply {
            tenant: tenant.clone(),
            reply_id: OutboundReply::reply_id_for(event_id, part),
            event_id: event_id.clone(),
            chat_id: chat_id.clone(),
            body: body.chars().take(MAX_BODY_CHARS).collect(),
            part,
            parts,
            priority,
            received_at_ms,
            menu: menu.filter(|_| part == last).cloned(),
        })
        .collect()
}

/// How long one attempt to store a turn's replies may take. While the
/// outbound stream elects a leader (a NATS node lost) a publish is never
/// acked; waiting out the context's 5 s timeout would keep the turn waiting
/// up to 5 s after the new leader is there, so the turn is retried sooner
/// (backpressure; the replies' `Nats-Msg-Id`s make the retry a duplicate the
/// stream drops).
pub const PUBLISH_ATTEMPT: std::time::Duration = std::time::Duration::from_secs(2);

/// Publishes every part and waits for each to be stored, within
/// [`PUBLISH_ATTEMPT`].
pub async fn publish(
    js: &async_nats::jetstream::Context,
    replies: &[OutboundReply],
) -> Result<(), async_nats::Error> {
    tokio::time::timeout(PUBLISH_ATTEMPT, publish_all(js, replies))
        .await
        .map_err(|_| format!("no ack within {PUBLISH_ATTEMPT:?}"))?
}

async fn publish_all(
    js: &async_nats::jetstream::Context,
    replies: &[OutboundReply],
) -> Result<(), async_nats::Error> {
    // The sender's delivery of each reply continues the router's step.
    let step = tracing::Span::current();
    let mut acks = Vec::with_capacity(replies.len());
    for reply in replies {
        let mut headers = HeaderMap::new();
        headers.insert(async_nats::header::NATS_MESSAGE_ID, reply.msg_id().as_str());
        trace_context::inject(&step, &mut headers);
        let payload = serde_json::to_vec(reply)?;
        acks.push(
            js.publish_with_headers(reply.subject(), headers, payload.into())
                .await?,
        );
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}
