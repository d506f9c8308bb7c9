//! A Cloud API webhook POST, split into the items Switchyard routes one by
//! one (docs/cloud-api.md 3.3 and 3.5): every `messages[i]`, `statuses[i]`
//! and `errors[i]` of a `messages` change is an item of the number's tenant;
//! any other change (template, quality, account updates) is an item of the
//! WABA's tenants. Routing the whole POST by its first change (what courier
//! and chatwoot do) would hand one tenant's events to another.
//!
//! Nothing here knows tenants: [`split`] says where each item goes
//! ([`Route`]), under which idempotency key, with which body; ingest resolves
//! the routes. One malformed change or item is reported in
//! [`Batch::refused`] and never costs the others.

use serde_json::{Map, Value, json};
use sha2::{Digest as _, Sha256};

use crate::ids::EventId;

/// The only `object` Switchyard handles.
pub const OBJECT: &str = "whatsapp_business_account";

/// The `event` of the bodies ingest publishes (read back by [`crate::events`]).
pub const EVENT_MESSAGE: &str = "cloud.message";
pub const EVENT_STATUS: &str = "cloud.status";
pub const EVENT_ERROR: &str = "cloud.error";
pub const EVENT_ACCOUNT: &str = "cloud.account";

/// Where an item goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// The tenant of this phone number id (which must belong to `waba_id`).
    Number {
        phone_number_id: String,
        waba_id: String,
    },
    /// Every tenant of this WABA, narrowed to the one with this display
    /// number when the change names one (a quality update).
    Account {
        waba_id: String,
        display_phone_number: Option<String>,
    },
}

/// What an item is (a metric label).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ItemKind {
    Message,
    Status,
    Error,
    Account,
}

impl ItemKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ItemKind::Message => "message",
            ItemKind::Status => "status",
            ItemKind::Error => "error",
            ItemKind::Account => "account",
        }
    }
}

/// One routable item.
#[derive(Debug, Clone, PartialEq)]
pub struct Item {
    pub kind: ItemKind,
    pub route: Route,
    /// The idempotency key within the tenant: the same item in a redelivered
    /// batch gets the same key, whatever its position or `entry.time`.
    pub event_id: EventId,
    /// The body published to `inbound.<tenant>`: the item as Meta sent it,
    /// with the change's context (`event`, ids, the sender's contact entry).
    pub body: Value,
}

/// A change or item that could not be read, and why (for a log line and a
/// counter; the rest of the batch goes on).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    pub at: String,
    pub reason: String,
}

/// A POST, split.
#[derive(Debug, Default)]
pub struct Batch {
    pub items: Vec<Item>,
    pub refused: Vec<Refused>,
}

/// Why a whole POST cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("body is not JSON: {0}")]
    NotJson(String),
    #[error("`object` is {0:?}, not \"whatsapp_business_account\"")]
    OtherObject(String),
    #[error("`entry` must be an array")]
    NoEntries,
}

/// Splits a verified POST body into its items.
pub fn split(body: &[u8]) -> Result<Batch, BatchError> {
    let root: Value =
        serde_json::from_slice(body).map_err(|e| BatchError::NotJson(e.to_string()))?;
    let object = root.get("object").and_then(Value::as_str).unwrap_or("");
    if object != OBJECT {
        let shown: String = object.chars().take(40).collect();
        return Err(BatchError::OtherObject(shown));
    }
    let entries = root
        .get("entry")
        .and_then(Value::as_array)
        .ok_or(BatchError::NoEntries)?;
    let mut batch = Batch::default();
    for (e, entry) in entries.iter().enumerate() {
        let Some(waba_id) = entry.get("id").and_then(id_text) else {
            batch.refuse(format!("entry[{e}]"), "no WABA id (`id`)");
            continue;
        };
        let Some(changes) = entry.get("changes").and_then(Value::as_array) else {
            batch.refuse(format!("entry[{e}]"), "`changes` must be an array");
            continue;
        };
        for (c, change) in changes.iter().enumerate() {
            let at = format!("entry[{e}].changes[{c}]");
            let field = change.get("field").and_then(Value::as_str);
            let value = change.get("value").and_then(Value::as_object);
            match (field, value) {
                (Some("messages"), Some(value)) => batch.messages_change(&at, &waba_id, value),
                (Some(field), Some(value)) if valid_field(field) => {
                    batch.account_change(&waba_id, field, value);
                }
                (Some(_), Some(_)) => batch.refuse(at, "`field` is not a field name"),
                _ => batch.refuse(at, "a change needs a string `field` and an object `value`"),
            }
        }
    }
    Ok(batch)
}

impl Batch {
    fn refuse(&mut self, at: String, reason: &str) {
        self.refused.push(Refused {
            at,
            reason: reason.to_owned(),
        });
    }

    fn messages_change(&mut self, at: &str, waba_id: &str, value: &Map<String, Value>) {
        let metadata = value.get("metadata");
        let Some(number) = metadata
            .and_then(|m| m.get("phone_number_id"))
            .and_then(id_text)
        else {
            self.refuse(at.to_owned(), "no `metadata.phone_number_id`");
            return;
        };
        let display = metadata
            .and_then(|m| m.get("display_phone_number"))
            .and_then(Value::as_str);
        let route = Route::Number {
            phone_number_id: number.clone(),
            waba_id: waba_id.to_owned(),
        };
        let context = |event: &str| {
            json!({
                "event": event,
                "waba_id": waba_id,
                "phone_number_id": number,
                "display_phone_number": display,
            })
        };
        let contacts = value.get("contacts").and_then(Value::as_array);
        for (i, message) in array(value, "messages").iter().enumerate() {
            let Some(wamid) = message.get("id").and_then(Value::as_str) else {
                self.refuse(format!("{at}.value.messages[{i}]"), "no message `id`");
                continue;
            };
            let mut body = context(EVENT_MESSAGE);
            body["contact"] = contact_of(contacts, message);
            body["message"] = message.clone();
            self.push(
                ItemKind::Message,
                &route,
                &format!("cloud:msg:{number}:{wamid}"),
                body,
            );
        }
        for (i, status) in array(value, "statuses").iter().enumerate() {
            let id = status.get("id").and_then(Value::as_str);
            let state = status.get("status").and_then(Value::as_str);
            let (Some(id), Some(state)) = (id, state) else {
                self.refuse(
                    format!("{at}.value.statuses[{i}]"),
                    "a status needs `id` and `status`",
                );
                continue;
            };
            let mut body = context(EVENT_STATUS);
            body["status"] = status.clone();
            self.push(
                ItemKind::Status,
                &route,
                &format!("cloud:st:{number}:{id}:{state}"),
                body,
            );
        }
        for error in array(value, "errors") {
            let mut body = context(EVENT_ERROR);
            body["error"] = error.clone();
            let key = format!("cloud:err:{number}:{}", digest(error));
            self.push(ItemKind::Error, &route, &key, body);
        }
    }

    fn account_change(&mut self, waba_id: &str, field: &str, value: &Map<String, Value>) {
        let value = Value::Object(value.clone());
        let route = Route::Account {
            waba_id: waba_id.to_owned(),
            display_phone_number: value.get("display_phone_number").and_then(id_text),
        };
        let key = format!("cloud:{field}:{waba_id}:{}", digest(&value));
        let body = json!({
            "event": EVENT_ACCOUNT,
            "waba_id": waba_id,
            "field": field,
            "value": value,
        });
        self.push(ItemKind::Account, &route, &key, body);
    }

    fn push(&mut self, kind: ItemKind, route: &Route, key: &str, mut body: Value) {
        let event_id = event_id(key);
        // The router keys the item (and its replies) by this very id.
        body["event_id"] = json!(event_id.as_str());
        self.items.push(Item {
            kind,
            route: route.clone(),
            event_id,
            body,
        });
    }
}

/// The key as an event id; one too long or not printable ASCII (a hostile
/// or unusual id) is replaced by its digest under the same prefix.
fn event_id(key: &str) -> EventId {
    EventId::parse(key).unwrap_or_else(|_| {
        let prefix: String = key.split(':').take(2).collect::<Vec<_>>().join(":");
        let prefix: String = prefix
            .chars()
            .filter(char::is_ascii_graphic)
            .take(60)
            .collect();
        EventId::parse(&format!(
            "{prefix}:{}",
            hex::encode(Sha256::digest(key.as_bytes()))
        ))
        .unwrap_or_else(|_| EventId::from_digest(&Sha256::digest(key.as_bytes())))
    })
}

/// `sha256-<hex>` of a value's JSON text (serde_json's maps keep keys
/// sorted, so the same value always gives the same text).
fn digest(value: &Value) -> String {
    let text = serde_json::to_vec(value).unwrap_or_default();
    format!("sha256-{}", hex::encode(Sha256::digest(text)))
}

fn array<'a>(value: &'a Map<String, Value>, name: &str) -> &'a [Value] {
    value
        .get(name)
        .and_then(Value::as_array)
        .map_or(&[], Vec::as_slice)
}

/// Ids arrive as strings, and WABA ids in some examples as numbers.
fn id_text(value: &Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return None,
    };
    (!text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-' | b'+')))
    .then_some(text)
}

fn valid_field(field: &str) -> bool {
    (1..=64).contains(&field.len())
        && field
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The `contacts[]` entry of the message's sender (by `wa_id` or BSUID), or null.
fn contact_of(contacts: Option<&Vec<Value>>, message: &Value) -> Value {
    let from = message.get("from").and_then(Value::as_str);
    let user = message.get("from_user_id").and_then(Value::as_str);
    contacts
        .into_iter()
        .flatten()
        .find(|c| {
            let wa_id = c.get("wa_id").and_then(Value::as_str);
            let user_id = c.get("user_id").and_then(Value::as_str);
            (from.is_some() && wa_id == from) || (user.is_some() && user_id == user)
        })
        .cloned()
        .unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// docs/cloud-api.md's "batch mixing numbers", verbatim.
    const MIXED: &str = r#"{"object":"whatsapp_business_account","entry":[
 {"id":"WABA_A","changes":[
   {"field":"messages","value":{"metadata":{"phone_number_id":"PN_1"},"messages":[{"id":"wamid.1","from":"111","timestamp":"1750000000","type":"text","text":{"body":"hi"}}]}},
   {"field":"messages","value":{"metadata":{"phone_number_id":"PN_2"},"statuses":[{"id":"wamid.9","status":"read","timestamp":"1750000001","recipient_id":"222"}]}},
   {"field":"message_template_status_update","value":{"event":"APPROVED","message_template_name":"order_update","message_template_language":"en_US"}}]},
 {"id":"WABA_B","changes":[
   {"field":"messages","value":{"metadata":{"phone_number_id":"PN_3"},"messages":[{"id":"wamid.2","from":"333","timestamp":"1750000002","type":"interactive","interactive":{"type":"button_reply","button_reply":{"id":"sel:4b1e","title":"Yes"}}}]}}]}]}"#;

    #[test]
    fn a_mixed_batch_splits_into_one_item_per_message_status_and_change() {
        let batch = split(MIXED.as_bytes()).unwrap();
        assert!(batch.refused.is_empty(), "{:?}", batch.refused);
        let summary: Vec<(ItemKind, &Route, &str)> = batch
            .items
            .iter()
            .map(|i| (i.kind, &i.route, i.event_id.as_str()))
            .collect();
        let number = |n: &str, w: &str| Route::Number {
            phone_number_id: n.to_owned(),
            waba_id: w.to_owned(),
        };
        assert_eq!(
            summary[0],
            (
                ItemKind::Message,
                &number("PN_1", "WABA_A"),
                "cloud:msg:PN_1:wamid.1"
            )
        );
        assert_eq!(
            summary[1],
            (
                ItemKind::Status,
                &number("PN_2", "WABA_A"),
                "cloud:st:PN_2:wamid.9:read"
            )
        );
        assert_eq!(summary[2].0, ItemKind::Account);
        assert_eq!(
            summary[2].1,
            &Route::Account {
                waba_id: "WABA_A".to_owned(),
                display_phone_number: None
            }
        );
        assert!(
            summary[2]
                .2
                .starts_with("cloud:message_template_status_update:WABA_A:sha256-")
        );
        assert_eq!(
            summary[3],
            (
                ItemKind::Message,
                &number("PN_3", "WABA_B"),
                "cloud:msg:PN_3:wamid.2"
            )
        );
        assert_eq!(batch.items.len(), 4);
        assert_eq!(batch.items[0].body["event"], EVENT_MESSAGE);
        assert_eq!(batch.items[0].body["message"]["text"]["body"], "hi");
    }

    #[test]
    fn a_redelivered_batch_in_another_order_keeps_every_key() {
        let first = split(MIXED.as_bytes()).unwrap();
        let mut root: Value = serde_json::from_str(MIXED).unwrap();
        root["entry"].as_array_mut().unwrap().reverse();
        root["entry"][0]["time"] = json!(1_750_000_999);
        let again = split(&serde_json::to_vec(&root).unwrap()).unwrap();
        let keys = |b: &Batch| {
            let mut k: Vec<String> = b.items.iter().map(|i| i.event_id.to_string()).collect();
            k.sort();
            k
        };
        assert_eq!(keys(&first), keys(&again));
    }

    #[test]
    fn one_bad_change_costs_only_itself() {
        let body = json!({"object": OBJECT, "entry": [
            {"id": "W", "changes": [
                {"field": "messages", "value": {"messages": [{"id": "wamid.x"}]}},
                {"field": "messages", "value": {"metadata": {"phone_number_id": "PN"},
                    "messages": [{"from": "1"}, {"id": "wamid.ok", "from": "1"}],
                    "statuses": [{"id": "wamid.s"}]}},
                {"field": 7, "value": {}},
                {"field": "Bad Field!", "value": {}}
            ]},
            {"changes": []},
            {"id": "W2", "changes": "no"}
        ]});
        let batch = split(&serde_json::to_vec(&body).unwrap()).unwrap();
        let ids: Vec<&str> = batch.items.iter().map(|i| i.event_id.as_str()).collect();
        assert_eq!(ids, ["cloud:msg:PN:wamid.ok"]);
        let at: Vec<&str> = batch.refused.iter().map(|r| r.at.as_str()).collect();
        assert_eq!(
            at,
            [
                "entry[0].changes[0]",
                "entry[0].changes[1].value.messages[0]",
                "entry[0].changes[1].value.statuses[0]",
                "entry[0].changes[2]",
                "entry[0].changes[3]",
                "entry[1]",
                "entry[2]"
            ]
        );
    }

    #[test]
    fn whole_bodies_that_are_not_batches_are_told_apart() {
        assert!(matches!(split(b"nope"), Err(BatchError::NotJson(_))));
        assert_eq!(
            split(br#"{"object":"page","entry":[]}"#).unwrap_err(),
            BatchError::OtherObject("page".to_owned())
        );
        assert_eq!(
            split(br#"{"object":"whatsapp_business_account"}"#).unwrap_err(),
            BatchError::NoEntries
        );
    }

    #[test]
    fn hostile_ids_become_digests_and_never_break_the_key() {
        let long = "w".repeat(500);
        let body = json!({"object": OBJECT, "entry": [{"id": "W", "changes": [
            {"field": "messages", "value": {"metadata": {"phone_number_id": "PN"},
                "messages": [{"id": long, "from": "1"}, {"id": "wamid with spaces\n", "from": "1"}]}}]}]});
        let batch = split(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(batch.items.len(), 2);
        for item in &batch.items {
            assert!(
                item.event_id.as_str().starts_with("cloud:msg:"),
                "{}",
                item.event_id
            );
            assert!(item.event_id.as_str().len() <= 200);
        }
        assert_ne!(batch.items[0].event_id, batch.items[1].event_id);
        // A phone number id that is not an id at all routes nowhere.
        let body = json!({"object": OBJECT, "entry": [{"id": "W", "changes": [
            {"field": "messages", "value": {"metadata": {"phone_number_id": "../x"},
                "messages": [{"id": "wamid.1", "from": "1"}]}}]}]});
        let batch = split(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert!(batch.items.is_empty());
        assert_eq!(batch.refused.len(), 1);
    }

    #[test]
    fn the_senders_contact_entry_travels_with_the_message() {
        let body = json!({"object": OBJECT, "entry": [{"id": "W", "changes": [
            {"field": "messages", "value": {"metadata": {"phone_number_id": "PN"},
                "contacts": [{"wa_id": "999", "profile": {"name": "Other"}},
                             {"wa_id": "111", "profile": {"name": "Sheena"}}],
                "messages": [{"id": "wamid.1", "from": "111", "type": "text"}]}}]}]});
        let batch = split(&serde_json::to_vec(&body).unwrap()).unwrap();
        assert_eq!(batch.items[0].body["contact"]["profile"]["name"], "Sheena");
    }
}
