//! What a tenant is told: one typed [`Notification`], serialised once into
//! the Standard Webhooks payload shape (`{"type", "timestamp", "data"}`) the
//! tenant's endpoint receives. Everything in it is the tenant's own: its id,
//! its bridge's state, its reply's id and the reason it was dead-lettered;
//! never a secret, never a message body.

use serde::Serialize;
use time::OffsetDateTime;

use crate::{bridge_state::StuckKind, ids::TenantId, lanes::dead_letter::DeadLetterCode};

/// The longest notification id: the stream's `Nats-Msg-Id` and the
/// `webhook-id` header, which tenants' endpoints store for deduplication.
const MAX_ID_CHARS: usize = 256;

/// What happened, with what the tenant needs to act on it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", content = "data")]
pub enum NotificationEvent {
    /// The bridge's WhatsApp session dropped (a webhook, or found by the
    /// silent-bridge watchdog): replies are held until it is back.
    #[serde(rename = "bridge.disconnected")]
    BridgeDisconnected {
        /// Where the report came from: `webhook` or `watchdog`.
        source: ReportSource,
    },
    /// WhatsApp restricted the number: sending is held until an operator
    /// resumes it.
    #[serde(rename = "bridge.restricted")]
    BridgeRestricted,
    /// The bridge is connected again after it was not (or for the first
    /// time: `first_pairing`).
    #[serde(rename = "bridge.repaired")]
    BridgeRepaired { first_pairing: bool },
    /// The bridge has waited too long for a QR scan or a reconnection.
    #[serde(rename = "pairing.stuck")]
    PairingStuck {
        kind: StuckKind,
        /// Seconds in that state when it was noticed.
        for_seconds: u64,
    },
    /// A reply could not be sent and was dead-lettered (an operator can replay it).
    #[serde(rename = "reply.dead_lettered")]
    ReplyDeadLettered {
        reply_id: String,
        reason: DeadLetterCode,
        attempts: u32,
    },
}

/// Who reported a bridge state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReportSource {
    Webhook,
    Watchdog,
}

impl NotificationEvent {
    /// Every `type` text, once (for metrics registered before the first one).
    pub const KINDS: [&'static str; 5] = [
        "bridge.disconnected",
        "bridge.restricted",
        "bridge.repaired",
        "pairing.stuck",
        "reply.dead_lettered",
    ];

    /// The `type` text (a metric label, a log field).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::BridgeDisconnected { .. } => "bridge.disconnected",
            Self::BridgeRestricted => "bridge.restricted",
            Self::BridgeRepaired { .. } => "bridge.repaired",
            Self::PairingStuck { .. } => "pairing.stuck",
            Self::ReplyDeadLettered { .. } => "reply.dead_lettered",
        }
    }
}

/// One notification for one tenant. Its `id` is deterministic in what
/// happened (a republished notification of the same fact is deduplicated
/// by the stream, and the tenant's endpoint sees the same `webhook-id`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    id: String,
    pub tenant: TenantId,
    pub at: OffsetDateTime,
    pub event: NotificationEvent,
}

/// The body posted to the tenant (Standard Webhooks' recommended shape).
#[derive(Debug, Serialize)]
pub struct Payload {
    #[serde(flatten)]
    pub event: NotificationEvent,
    #[serde(with = "time::serde::rfc3339")]
    pub timestamp: OffsetDateTime,
    pub tenant: TenantId,
}

impl Notification {
    /// A notification whose id is `<type>:<tenant>:<fact>`; `fact` names the
    /// occurrence (a state's recording time, a reply id). Characters outside
    /// `[A-Za-z0-9:._-]` become `_` and the id is cut to 256 characters.
    pub fn new(tenant: TenantId, at: OffsetDateTime, event: NotificationEvent, fact: &str) -> Self {
        let raw = format!("{}:{tenant}:{fact}", event.kind());
        let id = raw
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '_' | '-') {
                    c
                } else {
                    '_'
                }
            })
            .take(MAX_ID_CHARS)
            .collect();
        Self {
            id,
            tenant,
            at,
            event,
        }
    }

    /// The notification's id (`Nats-Msg-Id`, `webhook-id`).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The JSON body posted to the tenant.
    pub fn body(&self) -> Vec<u8> {
        let payload = Payload {
            event: self.event.clone(),
            timestamp: self.at,
            tenant: self.tenant.clone(),
        };
        serde_json::to_vec(&payload).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn kinds_lists_every_variants_type_once() {
        use crate::{bridge_state::StuckKind, lanes::dead_letter::DeadLetterCode};
        let all = [
            NotificationEvent::BridgeDisconnected {
                source: ReportSource::Webhook,
            },
            NotificationEvent::BridgeRestricted,
            NotificationEvent::BridgeRepaired {
                first_pairing: false,
            },
            NotificationEvent::PairingStuck {
                kind: StuckKind::AwaitingPairing,
                for_seconds: 1,
            },
            NotificationEvent::ReplyDeadLettered {
                reply_id: "r".to_owned(),
                reason: DeadLetterCode::Rejected,
                attempts: 1,
            },
        ];
        let kinds: Vec<&str> = all.iter().map(NotificationEvent::kind).collect();
        assert_eq!(kinds, NotificationEvent::KINDS);
    }

    use super::*;

    #[test]
    fn the_body_has_the_standard_webhooks_shape() {
        let tenant = TenantId::parse("acme").unwrap();
        let at = OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap();
        let n = Notification::new(
            tenant,
            at,
            NotificationEvent::ReplyDeadLettered {
                reply_id: "ev 1:0".into(),
                reason: DeadLetterCode::Rejected,
                attempts: 3,
            },
            "ev 1:0",
        );
        assert_eq!(n.id(), "reply.dead_lettered:acme:ev_1:0");
        let body: serde_json::Value = serde_json::from_slice(&n.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({
                "type": "reply.dead_lettered",
                "timestamp": "2027-01-15T08:00:00Z",
                "tenant": "acme",
                "data": {"reply_id": "ev 1:0", "reason": "rejected", "attempts": 3},
            })
        );
    }

    #[test]
    fn a_unit_event_still_has_its_type() {
        let n = Notification::new(
            TenantId::parse("acme").unwrap(),
            OffsetDateTime::UNIX_EPOCH,
            NotificationEvent::BridgeRestricted,
            "1",
        );
        let body: serde_json::Value = serde_json::from_slice(&n.body()).unwrap();
        assert_eq!(body["type"], "bridge.restricted");
    }
}
