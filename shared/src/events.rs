//! The WA Bridges webhook events, as the provider documents them, and the
//! headers ingest adds when it publishes one.
//!
//! Ingest publishes the body exactly as received (the inbound stream is the
//! event log) with our metadata in headers; the router parses it again with the
//! same code. Unknown event types are kept, not rejected: the provider's list
//! is incomplete and an event we refuse is lost for good.
//!
//! Cloud API items (`cloud.*` bodies, one per message, status or change of a
//! batch, written by ingest from [`crate::cloud_api::webhook`]) are read here
//! too, so the router has one entry point; [`ParsedEvent::channel`] says
//! which channel a body came from, and ingest's WA Bridges route refuses
//! `cloud.*` bodies.

use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::{
    channel::Channel,
    cloud_api::{inbound::RecipientStatus, webhook as cloud},
    ids::{EventId, IdError},
    message_ids::{ChatId, ProviderMessageId},
};

/// Header carrying the (tenant-scoped) event id; also sent as `Nats-Msg-Id`.
pub const HEADER_EVENT_ID: &str = "Switchyard-Event-Id";
/// Header carrying when ingest received the webhook (unix milliseconds).
pub const HEADER_RECEIVED_AT_MS: &str = "Switchyard-Received-At-Ms";

/// A webhook body that cannot be accepted, with the precise reason.
#[derive(Debug, thiserror::Error)]
pub enum EventError {
    #[error("body is not valid JSON: {0}")]
    NotJson(String),
    #[error("body must be a JSON object with a string \"event\" field: {0}")]
    NoEventField(String),
    #[error("invalid {event:?} event: {reason}")]
    InvalidFields { event: &'static str, reason: String },
    #[error("invalid message_id: {0}")]
    InvalidMessageId(#[source] IdError),
}

/// `message`: an inbound (or, with `from_me`, our own echoed) WhatsApp message.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct MessageEvent {
    pub message_id: ProviderMessageId,
    #[serde(default)]
    pub contact_id: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    pub chat_id: ChatId,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub body: String,
    #[serde(default = "default_message_type", rename = "type")]
    pub message_type: String,
    #[serde(default)]
    pub media_type: Option<String>,
    #[serde(default)]
    pub is_group: bool,
    pub from_me: bool,
    pub timestamp: i64,
}

fn default_message_type() -> String {
    "text".to_owned()
}

/// `typing`: a contact is composing. Usually dropped at the edge.
#[derive(Debug, Clone, PartialEq, Deserialize, serde::Serialize)]
pub struct TypingEvent {
    #[serde(default)]
    pub contact_id: Option<String>,
    pub chat_id: ChatId,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub mode: Option<String>,
}

/// One webhook event, by its `event` discriminator.
#[derive(Debug, Clone, PartialEq)]
pub enum WebhookEvent {
    Message(MessageEvent),
    Connected {
        phone: Option<String>,
    },
    Disconnected,
    Typing(TypingEvent),
    /// `poll_vote`: the chosen options' field is undocumented, so the body is kept as is.
    PollVote(serde_json::Value),
    /// An event type the provider did not document; kept and counted.
    Unknown {
        event: String,
    },
    /// Cloud API: where one of our sends stands on the recipient's side.
    CloudStatus(RecipientStatus),
    /// Cloud API: a number's error item or an account-level change
    /// (template, quality, account updates), kept with its field.
    CloudNotice {
        field: String,
        value: serde_json::Value,
    },
}

impl WebhookEvent {
    /// The event type as a metric label (unknown types collapse to `unknown`,
    /// so a hostile sender cannot grow the label set).
    pub fn kind(&self) -> &'static str {
        match self {
            WebhookEvent::Message(_) => "message",
            WebhookEvent::Connected { .. } => "connected",
            WebhookEvent::Disconnected => "disconnected",
            WebhookEvent::Typing(_) => "typing",
            WebhookEvent::PollVote(_) => "poll_vote",
            WebhookEvent::Unknown { .. } => "unknown",
            WebhookEvent::CloudStatus(_) => "cloud_status",
            WebhookEvent::CloudNotice { .. } => "cloud_notice",
        }
    }
}

/// A parsed webhook body and what identifies it.
#[derive(Debug, Clone)]
pub struct ParsedEvent {
    /// The body's `customer_ref`, when it carries one (it must match the URL's).
    pub customer_ref: Option<String>,
    pub event: WebhookEvent,
    /// The provider's `message_id` when present (`<event>:<message_id>` for
    /// types other than `message`), else a digest of the body.
    pub event_id: EventId,
    /// The channel the body came from (its shape says which).
    pub channel: Channel,
}

#[derive(Deserialize)]
struct Head {
    event: String,
    #[serde(default)]
    customer_ref: Option<serde_json::Value>,
    #[serde(default)]
    message_id: Option<serde_json::Value>,
    #[serde(default)]
    timestamp: Option<serde_json::Value>,
}

/// What tells two deliveries apart when the body cannot: an event with
/// neither a `message_id` nor a `timestamp` (the provider documents
/// `connected` with only `phone`, `disconnected` with nothing, `typing`
/// without a time). Two identical such bodies may be one event delivered
/// twice or two real state changes (a bridge that dropped twice in a
/// minute); only something outside the body can say which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery<'a> {
    /// An id that a resend of the same event repeats: a verified Standard
    /// Webhooks `webhook-id` at ingest (a gateway resends under one id; a
    /// replay of a captured request carries it too), the stream message's id
    /// in the router. Deliveries naming the same id are one event.
    Named(&'a str),
    /// Nothing names the delivery: it is an event of its own. A repeat is
    /// then processed twice, which is harmless for these events (the router
    /// sets the same bridge state again; `typing` is dropped), whereas
    /// merging two real state changes would lose the second.
    Unnamed(u128),
}

/// Parses a webhook body. `delivery` keys the digest id of an event with
/// neither a `message_id` nor a `timestamp` (see [`Delivery`]).
pub fn parse(body: &[u8], delivery: Delivery<'_>) -> Result<ParsedEvent, EventError> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| EventError::NotJson(e.to_string()))?;
    let head: Head = serde_json::from_value(value.clone())
        .map_err(|e| EventError::NoEventField(e.to_string()))?;
    if head.event.starts_with("cloud.") {
        return parse_cloud(&head.event, &value);
    }
    let customer_ref = match head.customer_ref {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(s),
        Some(_) => {
            return Err(EventError::InvalidFields {
                event: "any",
                reason: "customer_ref must be a string".to_owned(),
            });
        }
    };
    let fields = |event: &'static str| {
        move |e: serde_json::Error| EventError::InvalidFields {
            event,
            reason: e.to_string(),
        }
    };
    let event = match head.event.as_str() {
        "message" => {
            WebhookEvent::Message(serde_json::from_value(value.clone()).map_err(fields("message"))?)
        }
        "connected" => WebhookEvent::Connected {
            phone: value
                .get("phone")
                .and_then(|p| p.as_str())
                .map(str::to_owned),
        },
        "disconnected" => WebhookEvent::Disconnected,
        "typing" => {
            WebhookEvent::Typing(serde_json::from_value(value.clone()).map_err(fields("typing"))?)
        }
        "poll_vote" => WebhookEvent::PollVote(value.clone()),
        other => WebhookEvent::Unknown {
            event: other.to_owned(),
        },
    };
    let digest = || digest_id(&value, head.timestamp.is_none().then_some(delivery));
    let event_id = match head.message_id {
        Some(serde_json::Value::String(id)) => {
            let id = EventId::parse(&id).map_err(EventError::InvalidMessageId)?;
            typed_id(&head.event, id).unwrap_or_else(digest)
        }
        Some(serde_json::Value::Null) | None => digest(),
        Some(_) => {
            return Err(EventError::InvalidFields {
                event: "any",
                reason: "message_id must be a string".to_owned(),
            });
        }
    };
    Ok(ParsedEvent {
        customer_ref,
        event,
        event_id,
        channel: Channel::Wabridges,
    })
}

/// A Cloud API item as ingest published it ([`crate::cloud_api::webhook`]):
/// keyed by the id ingest gave it, so the router's reply ids match.
fn parse_cloud(event: &str, value: &serde_json::Value) -> Result<ParsedEvent, EventError> {
    let invalid = |e: crate::cloud_api::inbound::ItemError| EventError::InvalidFields {
        event: e.what,
        reason: e.reason,
    };
    let event_id = value
        .get("event_id")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| EventError::InvalidFields {
            event: "cloud",
            reason: "no event_id".to_owned(),
        })
        .and_then(|id| EventId::parse(id).map_err(EventError::InvalidMessageId))?;
    let event = match event {
        cloud::EVENT_MESSAGE => {
            WebhookEvent::Message(crate::cloud_api::inbound::message_event(value).map_err(invalid)?)
        }
        cloud::EVENT_STATUS => WebhookEvent::CloudStatus(
            crate::cloud_api::inbound::recipient_status(value).map_err(invalid)?,
        ),
        cloud::EVENT_ERROR => WebhookEvent::CloudNotice {
            field: "errors".to_owned(),
            value: value.get("error").cloned().unwrap_or_default(),
        },
        cloud::EVENT_ACCOUNT => WebhookEvent::CloudNotice {
            field: value
                .get("field")
                .and_then(serde_json::Value::as_str)
                .unwrap_or("unknown")
                .chars()
                .take(64)
                .collect(),
            value: value.get("value").cloned().unwrap_or_default(),
        },
        _ => WebhookEvent::Unknown {
            event: event.chars().take(64).collect(),
        },
    };
    Ok(ParsedEvent {
        customer_ref: None,
        event,
        event_id,
        channel: Channel::CloudApi,
    })
}

/// The id of an event whose body carries a `message_id`: the id itself for
/// a `message`, `<event>:<id>` for any other type, so a `poll_vote` (or an
/// undocumented event) reusing a message's id is not taken for a duplicate of
/// that message. Messages keep the bare id they always had: keys already
/// stored, the stream's `Nats-Msg-Id`s and the reply ids derived from them
/// stay valid across a deploy, so no message duplicate slips through then.
/// `None` (the caller then digests the body) when the event name is not a
/// short lowercase token or the typed id would be too long.
fn typed_id(event: &str, id: EventId) -> Option<EventId> {
    if event == "message" {
        return Some(id);
    }
    let token = !event.is_empty()
        && event.len() <= 40
        && event
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !token {
        return None;
    }
    EventId::parse(&format!("{event}:{id}")).ok()
}

/// SHA-256 of the canonical body (keys sorted, no whitespace), plus what
/// names the delivery when the body has no timestamp of its own.
fn digest_id(value: &serde_json::Value, delivery: Option<Delivery<'_>>) -> EventId {
    // serde_json's default map is a BTreeMap: to_vec writes keys sorted.
    let canonical = serde_json::to_vec(value).unwrap_or_default();
    let mut hasher = Sha256::new();
    hasher.update(&canonical);
    // Tagged and length-prefixed: no name can collide with a nonce or
    // with another name's prefix.
    match delivery {
        None => {}
        Some(Delivery::Named(name)) => {
            hasher.update(b"\nnamed\n");
            hasher.update((name.len() as u64).to_be_bytes());
            hasher.update(name.as_bytes());
        }
        Some(Delivery::Unnamed(nonce)) => {
            hasher.update(b"\nunnamed\n");
            hasher.update(nonce.to_be_bytes());
        }
    }
    EventId::from_digest(&hasher.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::EVENT_ID_MAX_LEN;

    /// For bodies whose id does not depend on the delivery.
    const ANY: Delivery<'static> = Delivery::Unnamed(0);

    const DOC_MESSAGE: &str = r#"{"event":"message","customer_ref":"cust_8842","message_id":"ACE41E0F","contact_id":"15550001234@s.whatsapp.net","phone":"15550001234","chat_id":"15550001234@s.whatsapp.net","name":"Alice","body":"Hello!","type":"text","media_type":"","is_group":false,"from_me":false,"timestamp":1777180605}"#;

    #[test]
    fn the_documented_message_example_parses() {
        let parsed = parse(DOC_MESSAGE.as_bytes(), ANY).unwrap();
        assert_eq!(parsed.customer_ref.as_deref(), Some("cust_8842"));
        assert_eq!(parsed.event_id.as_str(), "ACE41E0F");
        let WebhookEvent::Message(m) = parsed.event else {
            panic!("not a message")
        };
        assert_eq!(m.body, "Hello!");
        assert!(!m.from_me);
    }

    #[test]
    fn a_message_missing_a_required_field_names_it() {
        let err = parse(
            br#"{"event":"message","message_id":"x","from_me":false,"timestamp":1}"#,
            ANY,
        )
        .unwrap_err();
        assert!(err.to_string().contains("chat_id"), "{err}");
    }

    #[test]
    fn unknown_event_types_are_kept() {
        let parsed = parse(br#"{"event":"call_offer","from":"x"}"#, ANY).unwrap();
        assert_eq!(parsed.event.kind(), "unknown");
    }

    #[test]
    fn non_objects_and_missing_event_fields_are_refused() {
        for bad in [
            &b"[1,2]"[..],
            b"\"x\"",
            b"{}",
            br#"{"event":3}"#,
            b"{not json",
        ] {
            assert!(parse(bad, ANY).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn identical_state_events_are_one_event_only_when_one_name_says_so() {
        let id = |body: &str, delivery| parse(body.as_bytes(), delivery).unwrap().event_id;
        let down = r#"{"event":"disconnected"}"#;
        // Unnamed: a second disconnect, even in the same instant, is a new event.
        assert_ne!(
            id(down, Delivery::Unnamed(1)),
            id(down, Delivery::Unnamed(2))
        );
        // Named: a resend under the same webhook-id is the same event.
        assert_eq!(
            id(down, Delivery::Named("msg_1")),
            id(r#"{ "event" : "disconnected" }"#, Delivery::Named("msg_1")),
            "whitespace must not change the canonical digest"
        );
        assert_ne!(
            id(down, Delivery::Named("msg_1")),
            id(down, Delivery::Named("msg_2"))
        );
        // A body with a timestamp of its own is keyed by it alone.
        let stamped = r#"{"event":"connected","phone":"1","timestamp":7}"#;
        assert_eq!(
            id(stamped, Delivery::Unnamed(1)),
            id(stamped, Delivery::Unnamed(2))
        );
    }

    #[test]
    fn only_a_message_keeps_the_bare_message_id() {
        let id = |body: &str| parse(body.as_bytes(), ANY).unwrap().event_id;
        let message = id(
            r#"{"event":"message","message_id":"M1","chat_id":"c","from_me":false,"timestamp":1}"#,
        );
        let vote = id(r#"{"event":"poll_vote","message_id":"M1","chat_id":"c","timestamp":1}"#);
        let revoked = id(r#"{"event":"message_revoked","message_id":"M1"}"#);
        assert_eq!(message.as_str(), "M1");
        assert_eq!(vote.as_str(), "poll_vote:M1");
        assert_eq!(revoked.as_str(), "message_revoked:M1");
    }

    #[test]
    fn an_event_name_unfit_for_a_key_falls_back_to_the_body_digest() {
        let id = |body: &str| parse(body.as_bytes(), ANY).unwrap().event_id;
        let odd = id(r#"{"event":"Odd Name","message_id":"M1"}"#);
        let long_id = "x".repeat(EVENT_ID_MAX_LEN);
        let too_long = id(&format!(
            r#"{{"event":"poll_vote","message_id":"{long_id}","timestamp":1}}"#
        ));
        assert!(odd.as_str().starts_with("sha256-"), "{odd}");
        assert!(too_long.as_str().starts_with("sha256-"), "{too_long}");
    }

    #[test]
    fn a_hostile_message_id_is_refused() {
        let body =
            r#"{"event":"message","message_id":"a b","chat_id":"c","from_me":false,"timestamp":1}"#;
        assert!(matches!(
            parse(body.as_bytes(), ANY),
            Err(EventError::InvalidMessageId(_))
        ));
    }
}
