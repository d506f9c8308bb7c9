//! The webhook bodies the provider posts, in exactly the documented flat
//! shapes (`{"event": ..., fields...}`), for tests to send through the simulator.
//!
//! `customer_ref` is not added here: the simulator adds it on posting when
//! configured, since the provider's documents disagree on whether it is present.

use serde_json::{Value, json};

use crate::state::unix_secs;

/// The JID of a person's phone number.
pub fn user_jid(phone: &str) -> String {
    format!("{phone}@s.whatsapp.net")
}

/// A fresh provider-style message id (uppercase hex, as WhatsApp ids look).
pub fn new_message_id() -> String {
    format!("3EB0{:016X}", rand::random::<u64>())
}

/// An inbound text `message` event; adjust the fields, then call [`TextMessage::to_json`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TextMessage {
    /// The sender's phone number (digits).
    pub from: String,
    pub body: String,
    pub name: String,
    pub message_id: String,
    /// A group JID (`...@g.us`) when the message was posted in a group.
    pub group: Option<String>,
    pub from_me: bool,
    /// Unix seconds.
    pub timestamp: i64,
}

impl TextMessage {
    /// A text from `from` (digits) with a fresh id, sent now.
    pub fn new(from: impl Into<String>, body: impl Into<String>) -> Self {
        Self {
            from: from.into(),
            body: body.into(),
            name: "Sim User".to_owned(),
            message_id: new_message_id(),
            group: None,
            from_me: false,
            timestamp: unix_secs(),
        }
    }

    pub fn to_json(&self) -> Value {
        let contact = user_jid(&self.from);
        json!({
            "event": "message",
            "message_id": self.message_id,
            "contact_id": contact,
            "phone": self.from,
            "chat_id": self.group.clone().unwrap_or_else(|| contact.clone()),
            "name": self.name,
            "body": self.body,
            "type": "text",
            "media_type": "",
            "is_group": self.group.is_some(),
            "from_me": self.from_me,
            "timestamp": self.timestamp,
        })
    }
}

/// `connected`: the bridge's session is up, as `phone`.
pub fn connected(phone: &str) -> Value {
    json!({"event": "connected", "phone": phone})
}

/// `disconnected`: carries no field at all (the tenant comes from the URL).
pub fn disconnected() -> Value {
    json!({"event": "disconnected"})
}

/// `typing`: `state` is `composing` or `paused`, `mode` `text` or `voice`.
pub fn typing(from: &str, state: &str, mode: &str) -> Value {
    let contact = user_jid(from);
    json!({"event": "typing", "contact_id": contact, "chat_id": contact, "state": state, "mode": mode})
}

/// `poll_vote`. The field holding the chosen options is undocumented; the
/// simulator calls it `selected_options` (a list of option titles).
pub fn poll_vote(from: &str, poll_id: &str, options: &[&str]) -> Value {
    let contact = user_jid(from);
    json!({
        "event": "poll_vote",
        "contact_id": contact,
        "phone": from,
        "chat_id": contact,
        "poll_id": poll_id,
        "message_id": new_message_id(),
        "name": "Sim User",
        "from_me": false,
        "timestamp": unix_secs(),
        "selected_options": options,
    })
}

/// The `from_me` echo of a send we accepted: same `message_id` as the send's answer.
pub(crate) fn echo_of_send(chat: &str, body: &str, message_id: &str, timestamp: i64) -> Value {
    let is_group = chat.ends_with("@g.us");
    let chat_id = if chat.contains('@') {
        chat.to_owned()
    } else {
        user_jid(chat)
    };
    let phone = chat_id.split('@').next().unwrap_or_default().to_owned();
    json!({
        "event": "message",
        "message_id": message_id,
        "contact_id": chat_id,
        "phone": phone,
        "chat_id": chat_id,
        "name": "",
        "body": body,
        "type": "text",
        "media_type": "",
        "is_group": is_group,
        "from_me": true,
        "timestamp": timestamp,
    })
}
