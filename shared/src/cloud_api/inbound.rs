//! Reading back what ingest published for a Cloud API item (the bodies of
//! [`super::webhook`]): a `cloud.message` becomes the same
//! [`MessageEvent`] a WA Bridges message does, so the router runs one path
//! for both channels; a `cloud.status` becomes a [`RecipientStatus`] for the
//! ledger.
//!
//! A tapped reply button or list row arrives as its id (`sel:<resource>`),
//! exactly as the stateless flows expect (`router/src/bots/choice.rs`); a
//! template quick-reply as its payload.

use serde_json::Value;

use crate::{
    events::MessageEvent,
    message_ids::{ChatId, ProviderMessageId},
};

/// Why a published Cloud item cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {what}: {reason}")]
pub struct ItemError {
    pub what: &'static str,
    pub reason: String,
}

fn invalid(what: &'static str, reason: impl Into<String>) -> ItemError {
    ItemError {
        what,
        reason: reason.into(),
    }
}

/// Unix seconds from Meta's `timestamp` (a string; courier has seen
/// milliseconds, so values of 10^12 and more are read as such).
pub fn seconds(raw: Option<&Value>) -> Option<i64> {
    let n = match raw? {
        Value::String(s) => s.trim().parse::<i64>().ok()?,
        Value::Number(n) => n.as_i64()?,
        _ => return None,
    };
    Some(if n >= 1_000_000_000_000 { n / 1000 } else { n })
}

fn text<'a>(value: &'a Value, path: &[&str]) -> Option<&'a str> {
    path.iter()
        .try_fold(value, |v, key| v.get(key))
        .and_then(Value::as_str)
}

/// A `cloud.message` body as the router's message event.
pub fn message_event(body: &Value) -> Result<MessageEvent, ItemError> {
    let message = body
        .get("message")
        .ok_or_else(|| invalid("cloud.message", "no `message`"))?;
    let wamid = text(message, &["id"]).ok_or_else(|| invalid("cloud.message", "no `id`"))?;
    let message_id =
        ProviderMessageId::parse(wamid).map_err(|e| invalid("cloud.message", e.to_string()))?;
    let phone = text(message, &["from"]).map(str::to_owned);
    let user = text(message, &["from_user_id"]).map(str::to_owned);
    // The chat is the user's phone (`wa_id`) when Meta gives one, otherwise
    // their business-scoped user id (docs/cloud-api.md section 2).
    let chat = phone
        .as_deref()
        .or(user.as_deref())
        .ok_or_else(|| invalid("cloud.message", "neither `from` nor `from_user_id`"))?;
    let chat_id = ChatId::parse(chat).map_err(|e| invalid("cloud.message", e.to_string()))?;
    let kind = text(message, &["type"]).unwrap_or("unknown");
    let (body_text, media_type) = match kind {
        "text" => (text(message, &["text", "body"]), None),
        "interactive" => (
            text(message, &["interactive", "button_reply", "id"])
                .or_else(|| text(message, &["interactive", "list_reply", "id"])),
            None,
        ),
        "button" => (
            text(message, &["button", "payload"]).or_else(|| text(message, &["button", "text"])),
            None,
        ),
        "image" | "audio" | "video" | "document" | "sticker" => (
            text(message, &[kind, "caption"]),
            text(message, &[kind, "mime_type"]).or(Some(kind)),
        ),
        "location" => (
            text(message, &["location", "name"])
                .or_else(|| text(message, &["location", "address"])),
            None,
        ),
        _ => (None, None),
    };
    let timestamp = seconds(message.get("timestamp"))
        .ok_or_else(|| invalid("cloud.message", "no readable `timestamp`"))?;
    Ok(MessageEvent {
        message_id,
        contact_id: user,
        phone,
        chat_id,
        name: text(body, &["contact", "profile", "name"]).map(str::to_owned),
        body: body_text.unwrap_or_default().to_owned(),
        message_type: kind.chars().take(32).collect(),
        media_type: media_type.map(|m| m.chars().take(100).collect()),
        is_group: message.get("group_id").is_some(),
        from_me: false,
        timestamp,
    })
}

/// Where a message we sent stands on the recipient's side. Only moves
/// forward (`sent` < `delivered` < `read`); `failed` is final.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivered {
    Sent,
    Delivered,
    Read,
    Failed {
        code: Option<i64>,
        title: String,
    },
    /// A value Meta did not document (`played`, `deleted`, new ones): kept, not recorded.
    Other(String),
}

impl Delivered {
    /// The ledger's `recipient_status` value, for the recorded kinds.
    pub fn as_column(&self) -> Option<&'static str> {
        match self {
            Delivered::Sent => Some("sent"),
            Delivered::Delivered => Some("delivered"),
            Delivered::Read => Some("read"),
            Delivered::Failed { .. } => Some("failed"),
            Delivered::Other(_) => None,
        }
    }
}

/// A status webhook of one of our sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientStatus {
    /// The `wamid` our send was answered with.
    pub provider_message_id: ProviderMessageId,
    pub state: Delivered,
    /// What we set as `biz_opaque_callback_data` (the reply id).
    pub callback_data: Option<String>,
    pub timestamp: Option<i64>,
}

/// A `cloud.status` body.
pub fn recipient_status(body: &Value) -> Result<RecipientStatus, ItemError> {
    let status = body
        .get("status")
        .ok_or_else(|| invalid("cloud.status", "no `status`"))?;
    let id = text(status, &["id"]).ok_or_else(|| invalid("cloud.status", "no `id`"))?;
    let provider_message_id =
        ProviderMessageId::parse(id).map_err(|e| invalid("cloud.status", e.to_string()))?;
    let raw = text(status, &["status"]).ok_or_else(|| invalid("cloud.status", "no `status`"))?;
    let state = match raw {
        "sent" => Delivered::Sent,
        "delivered" => Delivered::Delivered,
        "read" => Delivered::Read,
        "failed" => {
            let first = status.get("errors").and_then(|e| e.get(0));
            Delivered::Failed {
                code: first.and_then(|e| e.get("code")).and_then(Value::as_i64),
                title: first
                    .and_then(|e| text(e, &["title"]).or_else(|| text(e, &["message"])))
                    .unwrap_or("")
                    .chars()
                    .take(120)
                    .collect(),
            }
        }
        other => Delivered::Other(other.chars().take(32).collect()),
    };
    Ok(RecipientStatus {
        provider_message_id,
        state,
        callback_data: text(status, &["biz_opaque_callback_data"])
            .map(|s| s.chars().take(300).collect()),
        timestamp: seconds(status.get("timestamp")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(message: Value) -> Value {
        json!({"event": "cloud.message", "phone_number_id": "PN", "waba_id": "W",
               "contact": {"wa_id": "16505551234", "profile": {"name": "Sheena"}},
               "message": message})
    }

    #[test]
    fn a_text_message_reads_like_a_bridge_message() {
        let event = message_event(&message(json!({"from": "16505551234", "id": "wamid.A",
            "timestamp": "1749416383", "type": "text", "text": {"body": "another color?"}})))
        .unwrap();
        assert_eq!(event.chat_id, "16505551234");
        assert_eq!(event.phone.as_deref(), Some("16505551234"));
        assert_eq!(event.name.as_deref(), Some("Sheena"));
        assert_eq!(event.body, "another color?");
        assert_eq!(event.timestamp, 1_749_416_383);
        assert!(!event.from_me && !event.is_group);
    }

    #[test]
    fn taps_arrive_as_their_ids_and_media_with_type_and_caption() {
        let tap = |interactive: Value| {
            message_event(&message(
                json!({"from": "1", "id": "wamid.B", "timestamp": "1",
                "type": "interactive", "interactive": interactive}),
            ))
            .unwrap()
            .body
        };
        assert_eq!(
            tap(json!({"type": "button_reply", "button_reply": {"id": "sel:42", "title": "Yes"}})),
            "sel:42"
        );
        assert_eq!(
            tap(json!({"type": "list_reply", "list_reply": {"id": "mil:7", "title": "x"}})),
            "mil:7"
        );
        let button = message_event(&message(
            json!({"from": "1", "id": "wamid.C", "timestamp": "1",
            "type": "button", "button": {"text": "Stop", "payload": "do_stop:1"}}),
        ))
        .unwrap();
        assert_eq!(button.body, "do_stop:1");
        let image = message_event(&message(
            json!({"from": "1", "id": "wamid.D", "timestamp": "1750000000123",
            "type": "image", "image": {"id": "m1", "mime_type": "image/jpeg", "caption": "look"}}),
        ))
        .unwrap();
        assert_eq!(
            (image.body.as_str(), image.media_type.as_deref()),
            ("look", Some("image/jpeg"))
        );
        assert_eq!(
            image.timestamp, 1_750_000_000,
            "milliseconds are read as such"
        );
    }

    #[test]
    fn a_username_only_user_is_chatted_with_by_bsuid() {
        let event = message_event(&message(json!({"from_user_id": "US.1234", "id": "wamid.E",
            "timestamp": "1", "type": "text", "text": {"body": "hi"}})))
        .unwrap();
        assert_eq!(event.chat_id, "US.1234");
        assert_eq!(event.phone, None);
        assert_eq!(event.contact_id.as_deref(), Some("US.1234"));
    }

    #[test]
    fn unreadable_messages_say_why() {
        for (m, needle) in [
            (json!({"id": "wamid.F", "timestamp": "1"}), "from"),
            (json!({"from": "1", "timestamp": "1"}), "`id`"),
            (json!({"from": "1", "id": "wamid.G"}), "timestamp"),
            (json!({"from": "1", "id": "", "timestamp": "1"}), "empty"),
        ] {
            let err = message_event(&message(m)).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn statuses_carry_state_callback_and_failure_code() {
        let body = json!({"event": "cloud.status", "status": {"id": "wamid.H", "status": "failed",
            "timestamp": "1750030073", "biz_opaque_callback_data": "ev1:0",
            "errors": [{"code": 131047, "title": "Re-engagement message"}]}});
        let status = recipient_status(&body).unwrap();
        assert_eq!(status.provider_message_id, "wamid.H");
        assert_eq!(status.callback_data.as_deref(), Some("ev1:0"));
        assert_eq!(
            status.state,
            Delivered::Failed {
                code: Some(131_047),
                title: "Re-engagement message".to_owned()
            }
        );
        let played =
            recipient_status(&json!({"status": {"id": "wamid.I", "status": "played"}})).unwrap();
        assert_eq!(played.state, Delivered::Other("played".to_owned()));
        assert_eq!(played.state.as_column(), None);
    }
}
