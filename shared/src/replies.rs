//! The contract between router and sender: one reply part, published to
//! `outbound.<tenant>`.
//!
//! A reply carries content and the chat it answers, never a tenant, bridge or
//! phone to send *from*: the sender takes the tenant from the subject and the
//! bridge from that tenant's row. Its id is derived from the inbound event id
//! and the part's index, so a redelivered inbound event yields the same ids,
//! which JetStream's duplicate window and the sender's ledger both absorb.

use serde::{Deserialize, Serialize};

use crate::{
    ids::{EventId, TenantId},
    message_ids::{ChatId, ReplyId},
    subjects,
};

/// Longest reply body we publish (WhatsApp's own limit is 65,536 characters).
pub const MAX_BODY_CHARS: usize = 4096;

/// Header a dead-letter replay carries (the dead letter's sequence).
pub const HEADER_REPLAY_OF: &str = "Switchyard-Replay-Of";
/// Header a recovered event carries (its sequence in the event log).
pub const HEADER_RECOVER_OF: &str = "Switchyard-Recover-Of";

/// Which lane of the tenant a reply travels in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    /// An answer to a person waiting now.
    #[default]
    Live,
    /// Re-runs: dead-letter replays, recovery.
    Bulk,
}

/// One part of a bot's reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboundReply {
    /// Must equal the subject's tenant (checked by the sender).
    pub tenant: TenantId,
    /// `<event id>:<part>`; unique within the tenant.
    pub reply_id: ReplyId,
    /// The inbound event this answers.
    pub event_id: EventId,
    /// The chat to answer, as the webhook named it.
    pub chat_id: ChatId,
    pub body: String,
    /// 0-based position among the parts of one answer, and their count.
    pub part: u16,
    pub parts: u16,
    #[serde(default)]
    pub priority: Priority,
    /// When the inbound webhook reached ingest (unix ms), for end-to-end latency.
    #[serde(default)]
    pub received_at_ms: Option<i64>,
    /// The menu this part shows, when it shows one: `body` is its numbered
    /// text (what a WA Bridges number sends, and the fallback); a channel
    /// with native buttons (the Cloud API) sends these options instead, their
    /// ids unchanged, so a tap arrives as the id the text's number stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub menu: Option<ReplyMenu>,
}

/// A menu as shown: its title and its options in display order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyMenu {
    pub title: String,
    pub options: Vec<ReplyOption>,
}

/// One option of a shown menu: the stateless id (`<prefix>:<resource>`) and its title.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyOption {
    pub id: String,
    pub title: String,
}

impl ReplyMenu {
    /// The option ids in display order (what a typed number maps to).
    pub fn ids(&self) -> Vec<String> {
        self.options.iter().map(|o| o.id.clone()).collect()
    }
}

impl OutboundReply {
    /// The deterministic id of part `part` of the reply to `event_id`.
    pub fn reply_id_for(event_id: &EventId, part: u16) -> ReplyId {
        ReplyId::for_part(event_id, part)
    }

    /// The subject to publish under: `outbound.<tenant>` for a live reply,
    /// `bulk.<tenant>` for a bulk one.
    pub fn subject(&self) -> String {
        match self.priority {
            Priority::Live => subjects::outbound(&self.tenant),
            Priority::Bulk => subjects::bulk(&self.tenant),
        }
    }

    /// The `Nats-Msg-Id` to publish under: tenant-scoped, since provider ids
    /// are unique per account only.
    pub fn msg_id(&self) -> String {
        format!("out:{}:{}", self.tenant, self.reply_id)
    }
}
