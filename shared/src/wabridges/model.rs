//! The provider's request and answer shapes.
//!
//! Answers are read leniently where the reference is vague (`created_at`,
//! `manager.*`, state values): a field we do not understand must not turn a
//! successful call, above all a send that went out, into an error.

use serde::{Deserialize, Deserializer, Serialize};

pub use crate::bridge_state::BridgeState;
use crate::{
    ids::{BridgeId, IdError, TenantId},
    message_ids::ProviderMessageId,
};

/// One bridge as `POST /api/instances` and `GET /api/instances` return it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bridge {
    pub id: BridgeId,
    /// Kept as the provider's string: a bridge provisioned outside Switchyard
    /// may carry a ref that is no valid tenant id, and reconciliation must see it.
    pub customer_ref: String,
    pub state: BridgeState,
    /// Absent from the provisioning answer; its format is undocumented.
    #[serde(default, deserialize_with = "lenient_string")]
    pub created_at: Option<String>,
}

impl Bridge {
    /// The tenant this bridge belongs to, when its ref is a valid tenant id.
    pub fn tenant(&self) -> Result<TenantId, IdError> {
        TenantId::parse(&self.customer_ref)
    }
}

/// The provider's live view of a bridge's process (`manager` in `GET /api/instances/{id}`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Manager {
    #[serde(default, deserialize_with = "lenient_string")]
    pub health: Option<String>,
    #[serde(default, deserialize_with = "lenient_string")]
    pub started_at: Option<String>,
    #[serde(default, deserialize_with = "lenient_u64")]
    pub fail_count: Option<u64>,
}

/// One bridge plus its manager's live state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgeDetail {
    #[serde(flatten)]
    pub bridge: Bridge,
    #[serde(default)]
    pub manager: Manager,
}

/// `GET .../proxy/status`: phone, jid and name only while connected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgeStatus {
    /// `connected` is documented; the simulator also says `disconnected`, `unpaired`.
    pub status: BridgeState,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub jid: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
}

impl BridgeStatus {
    pub fn is_connected(&self) -> bool {
        self.status == BridgeState::Connected
    }
}

/// `POST .../proxy/send/text` accepted: handed to the bridge ("wired"), not delivered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendReceipt {
    /// The provider's id of the sent message; its `from_me` echo carries the same id.
    pub message_id: ProviderMessageId,
    /// Unix seconds. Optional so that an accepted send is never reported as failed
    /// only because the provider left it out.
    #[serde(default, deserialize_with = "lenient_i64")]
    pub timestamp: Option<i64>,
}

/// `POST .../proxy/pair` answer: the link code to type on the phone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairCode {
    pub code: String,
}

#[derive(Serialize)]
pub(crate) struct ProvisionRequest<'a> {
    pub customer_ref: &'a str,
    pub webhook_url: &'a str,
}

#[derive(Serialize)]
pub(crate) struct SendTextRequest<'a> {
    pub chat: &'a str,
    pub body: &'a str,
}

#[derive(Serialize)]
pub(crate) struct PairRequest<'a> {
    pub phone: &'a str,
}

/// Strings as they are, numbers and booleans as text, objects as compact JSON, null as none.
fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Null => None,
        serde_json::Value::String(s) => Some(s),
        other => Some(other.to_string()),
    })
}

/// A count given as a number or a numeric string; anything else is "unknown".
fn lenient_u64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

fn lenient_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Ok(match serde_json::Value::deserialize(d)? {
        serde_json::Value::Number(n) => n.as_i64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_provisioning_answer_parses() {
        let b: Bridge =
            serde_json::from_str(r#"{"id":42,"customer_ref":"cust_8842","state":"running"}"#)
                .unwrap();
        assert_eq!(b.id.get(), 42);
        assert_eq!(b.state, BridgeState::Running);
        assert_eq!(b.tenant().unwrap().as_str(), "cust_8842");
        assert_eq!(b.created_at, None);
    }

    #[test]
    fn unknown_states_and_odd_manager_fields_are_kept_not_refused() {
        let d: BridgeDetail = serde_json::from_str(
            r#"{"id":7,"customer_ref":"Foreign Ref","state":"stopped","created_at":1777180605,
                "manager":{"health":{"ok":true},"started_at":null,"fail_count":"3"}}"#,
        )
        .unwrap();
        assert_eq!(d.bridge.state, BridgeState::Other("stopped".into()));
        assert_eq!(d.bridge.created_at.as_deref(), Some("1777180605"));
        assert!(d.bridge.tenant().is_err());
        assert_eq!(d.manager.health.as_deref(), Some(r#"{"ok":true}"#));
        assert_eq!(d.manager.started_at, None);
        assert_eq!(d.manager.fail_count, Some(3));
    }

    #[test]
    fn a_detail_without_a_manager_parses() {
        let d: BridgeDetail =
            serde_json::from_str(r#"{"id":7,"customer_ref":"a","state":"running"}"#).unwrap();
        assert_eq!(d.manager, Manager::default());
    }

    #[test]
    fn the_documented_status_and_send_answers_parse() {
        let s: BridgeStatus = serde_json::from_str(
            r#"{"status":"connected","phone":"15550001234","jid":"15550001234@s.whatsapp.net","name":"Alice"}"#,
        )
        .unwrap();
        assert!(s.is_connected());
        let s: BridgeStatus = serde_json::from_str(r#"{"status":"disconnected"}"#).unwrap();
        assert!(!s.is_connected());
        assert_eq!(s.phone, None);
        let r: SendReceipt =
            serde_json::from_str(r#"{"message_id":"ACE41E","timestamp":1777180605}"#).unwrap();
        assert_eq!(r.timestamp, Some(1_777_180_605));
        let r: SendReceipt = serde_json::from_str(r#"{"message_id":"ACE41E"}"#).unwrap();
        assert_eq!(r.timestamp, None);
    }
}
