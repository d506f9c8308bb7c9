//! Turns a [`Batch`] into the entries of Meta's envelope and applies what the
//! batch means to the simulator's state: a message opens its user's window, a
//! template event moves the template's status, a quality update sets the
//! number's messaging limit. One entry per WABA (in order of first mention);
//! the messages of one number share one `messages` change.

use std::collections::HashMap;

use serde_json::{Value, json};
use tokio::time::Instant;

use super::{
    batch::{Batch, BatchItem, Content, InboundFrom},
    delivery::Entry,
    state::{CloudShared, CloudSimError, CloudState},
};
use crate::state::unix_secs;

/// Checks every item, applies its effect, and returns the entries to post.
pub(crate) fn assemble(shared: &CloudShared, batch: &Batch) -> Result<Vec<Entry>, CloudSimError> {
    let mut state = shared.lock();
    for item in &batch.items {
        check(&state, item)?;
    }
    let now = Instant::now();
    let secs = unix_secs().to_string();
    let mut entries: Vec<Entry> = Vec::new();
    // (entry index, phone number id) → index of that number's `messages` change.
    let mut message_changes: HashMap<(usize, String), usize> = HashMap::new();
    for item in &batch.items {
        let waba_id = waba_of(&state, item);
        let e = match entries.iter().position(|e| e.waba_id == waba_id) {
            Some(e) => e,
            None => {
                entries.push(Entry {
                    waba_id: waba_id.clone(),
                    changes: Vec::new(),
                });
                entries.len() - 1
            }
        };
        match item {
            BatchItem::Message {
                phone_number_id,
                from,
                profile_name,
                content,
                id,
                context,
            } => {
                let display = display_of(&state, phone_number_id);
                if let Some(key) = from.key() {
                    state
                        .last_inbound
                        .insert((phone_number_id.clone(), key.to_owned()), now);
                }
                let wamid = id.clone().unwrap_or_else(|| shared.new_wamid());
                let message = message_json(from, content, &wamid, &secs, context, &display);
                let contact = contact_json(from, profile_name.as_deref());
                let changes = &mut entries[e].changes;
                match message_changes.get(&(e, phone_number_id.clone())) {
                    Some(&c) => {
                        push(&mut changes[c]["value"]["messages"], message);
                        push(&mut changes[c]["value"]["contacts"], contact);
                    }
                    None => {
                        let mut value = number_value(phone_number_id, &display);
                        value["contacts"] = json!([contact]);
                        value["messages"] = json!([message]);
                        changes.push(change("messages", value));
                        message_changes.insert((e, phone_number_id.clone()), changes.len() - 1);
                    }
                }
            }
            BatchItem::ValueError {
                phone_number_id,
                code,
                title,
                details,
            } => {
                let mut value = number_value(phone_number_id, &display_of(&state, phone_number_id));
                let details = details.clone().unwrap_or_else(|| title.clone());
                value["errors"] = json!([{
                    "code": code, "title": title, "message": title,
                    "error_data": {"details": details},
                    "href": "/documentation/business-messaging/whatsapp/support/error-codes",
                }]);
                entries[e].changes.push(change("messages", value));
            }
            BatchItem::TemplateStatus {
                waba_id,
                name,
                language,
                event,
                reason,
            } => {
                let template = state.template_mut(waba_id, name, language);
                let (id, category) = match template {
                    Some(t) => {
                        if let Some(status) = status_after(event) {
                            t.status = status.to_owned();
                        }
                        (t.id.parse::<u64>().unwrap_or(0), Some(t.category.clone()))
                    }
                    None => (0, None),
                };
                let mut value = json!({
                    "event": event, "message_template_id": id,
                    "message_template_name": name, "message_template_language": language,
                    "reason": reason.clone().unwrap_or_else(|| "NONE".to_owned()),
                });
                if let Some(category) = category {
                    value["message_template_category"] = json!(category);
                }
                entries[e]
                    .changes
                    .push(change("message_template_status_update", value));
            }
            BatchItem::QualityUpdate {
                phone_number_id,
                event,
                current_limit,
            } => {
                let number = state.number_mut(phone_number_id)?;
                let old =
                    std::mem::replace(&mut number.spec.messaging_limit, current_limit.clone());
                let value = json!({
                    "display_phone_number": number.spec.display_phone_number,
                    "event": event, "current_limit": current_limit, "old_limit": old,
                });
                entries[e]
                    .changes
                    .push(change("phone_number_quality_update", value));
            }
            BatchItem::AccountUpdate { waba_id, event } => {
                let value = json!({"event": event, "waba_info": {"waba_id": waba_id}});
                entries[e].changes.push(change("account_update", value));
            }
            BatchItem::Raw { field, value, .. } => {
                entries[e].changes.push(change(field, value.clone()));
            }
        }
    }
    Ok(entries)
}

/// A status item's `messages` change value for one number.
pub(crate) fn number_value(phone_number_id: &str, display: &str) -> Value {
    json!({
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": display, "phone_number_id": phone_number_id},
    })
}

pub(crate) fn change(field: &str, value: Value) -> Value {
    json!({"field": field, "value": value})
}

/// The template status an event leaves behind (`None`: unchanged).
fn status_after(event: &str) -> Option<&str> {
    match event {
        "APPROVED" | "REINSTATED" | "UNARCHIVED" => Some("APPROVED"),
        "REJECTED" | "PAUSED" | "DISABLED" | "PENDING" | "DELETED" | "ARCHIVED" | "LOCKED"
        | "IN_APPEAL" | "PENDING_DELETION" => Some(event),
        _ => None,
    }
}

fn check(state: &CloudState, item: &BatchItem) -> Result<(), CloudSimError> {
    let number = |id: &str| {
        if state.numbers.contains_key(id) {
            Ok(())
        } else {
            Err(CloudSimError::UnknownNumber(id.to_owned()))
        }
    };
    let waba = |id: &str| {
        if state.wabas.contains_key(id) {
            Ok(())
        } else {
            Err(CloudSimError::UnknownWaba(id.to_owned()))
        }
    };
    match item {
        BatchItem::Message {
            phone_number_id,
            from,
            ..
        } => {
            if from.key().is_none() {
                return Err(CloudSimError::Invalid(
                    "a message needs a wa_id or a user_id".into(),
                ));
            }
            number(phone_number_id)
        }
        BatchItem::ValueError {
            phone_number_id, ..
        }
        | BatchItem::QualityUpdate {
            phone_number_id, ..
        } => number(phone_number_id),
        BatchItem::TemplateStatus { waba_id, .. }
        | BatchItem::AccountUpdate { waba_id, .. }
        | BatchItem::Raw { waba_id, .. } => waba(waba_id),
    }
}

fn waba_of(state: &CloudState, item: &BatchItem) -> String {
    match item {
        BatchItem::Message {
            phone_number_id, ..
        }
        | BatchItem::ValueError {
            phone_number_id, ..
        }
        | BatchItem::QualityUpdate {
            phone_number_id, ..
        } => state
            .numbers
            .get(phone_number_id)
            .map(|n| n.spec.waba_id.clone())
            .unwrap_or_default(),
        BatchItem::TemplateStatus { waba_id, .. }
        | BatchItem::AccountUpdate { waba_id, .. }
        | BatchItem::Raw { waba_id, .. } => waba_id.clone(),
    }
}

fn display_of(state: &CloudState, phone_number_id: &str) -> String {
    state
        .numbers
        .get(phone_number_id)
        .map(|n| n.spec.display_phone_number.clone())
        .unwrap_or_default()
}

fn push(array: &mut Value, item: Value) {
    if let Some(items) = array.as_array_mut() {
        items.push(item);
    }
}

fn contact_json(from: &InboundFrom, name: Option<&str>) -> Value {
    let mut contact = json!({"profile": {"name": name.unwrap_or("Sim User")}});
    if let Some(wa_id) = &from.wa_id {
        contact["wa_id"] = json!(wa_id);
    }
    if let Some(user_id) = &from.user_id {
        contact["user_id"] = json!(user_id);
    }
    contact
}

fn message_json(
    from: &InboundFrom,
    content: &Content,
    wamid: &str,
    timestamp: &str,
    context: &Option<String>,
    display: &str,
) -> Value {
    let mut m = json!({"id": wamid, "timestamp": timestamp});
    if let Some(wa_id) = &from.wa_id {
        m["from"] = json!(wa_id);
    }
    if let Some(user_id) = &from.user_id {
        m["from_user_id"] = json!(user_id);
    }
    if let Some(id) = context {
        m["context"] = json!({"from": display, "id": id});
    }
    let (kind, body) = match content {
        Content::Text { body } => ("text".to_owned(), json!({"body": body})),
        Content::ButtonReply { id, title } => (
            "interactive".to_owned(),
            json!({"type": "button_reply", "button_reply": {"id": id, "title": title}}),
        ),
        Content::ListReply {
            id,
            title,
            description,
        } => {
            let mut reply = json!({"id": id, "title": title});
            if let Some(d) = description {
                reply["description"] = json!(d);
            }
            (
                "interactive".to_owned(),
                json!({"type": "list_reply", "list_reply": reply}),
            )
        }
        Content::TemplateButton { text, payload } => (
            "button".to_owned(),
            json!({"text": text, "payload": payload}),
        ),
        Content::Media {
            media_type,
            id,
            mime_type,
            caption,
        } => {
            let mut media = json!({"id": id, "mime_type": mime_type,
                                   "sha256": "c2ltdWxhdGVkIG1lZGlhIGhhc2g="});
            if let Some(c) = caption {
                media["caption"] = json!(c);
            }
            (media_type.clone(), media)
        }
        Content::Unknown { type_name, payload } => (type_name.clone(), payload.clone()),
    };
    m["type"] = json!(kind);
    m[kind.as_str()] = body;
    m
}
