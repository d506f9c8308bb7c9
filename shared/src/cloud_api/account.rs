//! What a Cloud API notice (a `cloud.account` change or a `cloud.error`
//! item, docs/cloud-api.md 3.3 and 5) means for its tenant, as one pure
//! function, [`classify`]; the router carries the [`Notice`] out.
//!
//! - `account_update` `PARTNER_APP_UNINSTALLED` / `PARTNER_REMOVED`: our app
//!   lost access to the WABA, so the tenant's token is dead: it is marked
//!   `rejected` and the tenant's sends are held until an operator connects a
//!   new one;
//! - `phone_number_quality_update`, `business_capability_update` and
//!   `account_alerts`: the messaging limit tier (and a quality rating, if
//!   one is ever sent) is recorded on the tenant's channel, and the number's
//!   health is to be read from Meta at once (the webhook no longer carries
//!   the rating: a `DOWNGRADE` or `FLAGGED` event is the cue to look);
//! - a number's `errors[]` item with an account-level code (`0`, `190`,
//!   `368`, `131031`, `131042`, `131064`): the tenant is held as the same
//!   code answered to a send would hold it;
//! - `message_template_status_update`: Meta's review moved a template (its
//!   name, language and id, the event, a rejection reason): the router
//!   records the status on the tenant's template row;
//! - anything else is counted and dropped.

use serde_json::Value;

use super::error::{CloudError, HoldReason, Outcome};

/// `account_update` events after which our app can no longer act for the WABA.
const ACCESS_LOST: [&str; 2] = ["PARTNER_APP_UNINSTALLED", "PARTNER_REMOVED"];

/// Codes of a webhook `errors[]` item that hold the tenant (the rest are
/// counted only: a rate limit there tells of sends already answered).
const ACCOUNT_CODES: [i64; 6] = [0, 190, 368, 131_031, 131_042, 131_064];

/// The longest tier or quality text kept (the columns' limit).
const MAX_VALUE_CHARS: usize = 32;

/// What a notice asks of its tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Notice {
    /// The token can no longer be used (Meta's event named): mark it
    /// `rejected` and hold the tenant.
    TokenLost { event: String },
    /// Hold the tenant's sends for this reason (an account-level error).
    Hold { reason: HoldReason, code: i64 },
    /// Record the number's messaging limit and/or quality rating (either
    /// may be absent: the notice is still a cue to read the number's health).
    Limits {
        messaging_limit: Option<String>,
        quality: Option<String>,
    },
    /// A template's review event (`APPROVED`, `REJECTED`, `PAUSED`, …).
    TemplateStatus(TemplateEvent),
    /// Nothing to do beyond counting it (the metric label).
    Other(&'static str),
}

/// What a `message_template_status_update` says (docs/cloud-api.md 3.3):
/// which template (by name and language, and Meta's id) and what happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateEvent {
    pub name: Option<String>,
    pub language: Option<String>,
    /// `message_template_id`, a number in Meta's payload, as text.
    pub meta_id: Option<String>,
    /// Upper case, as Meta spells it.
    pub event: String,
    /// `reason` (`INVALID_FORMAT`, …), or `rejection_info.reason`;
    /// `NONE` is read as no reason.
    pub reason: Option<String>,
}

/// The longest template name, language or reason kept from a webhook.
const MAX_TEMPLATE_TEXT: usize = 512;

/// Classifies a notice by its webhook `field` and `value`.
pub fn classify(field: &str, value: &Value) -> Notice {
    match field {
        "account_update" => {
            let event = text(value, "event").unwrap_or_default();
            if ACCESS_LOST.contains(&event) {
                Notice::TokenLost {
                    event: event.to_owned(),
                }
            } else {
                Notice::Other("account_update")
            }
        }
        "phone_number_quality_update" | "business_capability_update" => {
            // `max_daily_conversations_per_business` replaces `current_limit`
            // (to be removed, Meta says); either may come.
            let messaging_limit = limit(value, "max_daily_conversations_per_business")
                .or_else(|| limit(value, "current_limit"));
            // Meta's quality webhook no longer carries a rating (section 6);
            // should one appear under either documented name, keep it.
            let quality = ["quality_rating", "quality_score"]
                .iter()
                .find_map(|k| text(value, k))
                .map(short);
            Notice::Limits {
                messaging_limit,
                quality,
            }
        }
        "errors" => {
            let Some(code) = value.get("code").and_then(Value::as_i64) else {
                return Notice::Other("error");
            };
            if !ACCOUNT_CODES.contains(&code) {
                return Notice::Other("error");
            }
            // The same table as a send's answer (error.rs), so the hold is
            // the one the synchronous error would cause.
            let as_sent = CloudError::Api {
                status: 400,
                code,
                details: String::new(),
            };
            match as_sent.outcome() {
                Outcome::Hold(HoldReason::Unauthorized) => Notice::TokenLost {
                    event: format!("error {code}"),
                },
                Outcome::Hold(reason) => Notice::Hold { reason, code },
                _ => Notice::Other("error"),
            }
        }
        "message_template_status_update" => {
            template_event(value).map_or(Notice::Other("template_status"), Notice::TemplateStatus)
        }
        // A denied tier increase and the like: nothing to record, but the
        // number's health may have moved.
        "account_alerts" => Notice::Limits {
            messaging_limit: None,
            quality: None,
        },
        _ => Notice::Other("other"),
    }
}

/// A template event, when it names an event and a template (by name and
/// language, or by id).
fn template_event(value: &Value) -> Option<TemplateEvent> {
    let keep = |s: &str| -> String {
        s.chars()
            .filter(|c| !c.is_control())
            .take(MAX_TEMPLATE_TEXT)
            .collect()
    };
    let event = text(value, "event")?.trim().to_ascii_uppercase();
    if event.is_empty() || event.len() > 32 {
        return None;
    }
    let name = text(value, "message_template_name").map(keep);
    let language = text(value, "message_template_language").map(keep);
    let meta_id = match value.get("message_template_id") {
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) if !s.is_empty() => Some(keep(s)),
        _ => None,
    };
    if (name.is_none() || language.is_none()) && meta_id.is_none() {
        return None;
    }
    let reason = text(value, "reason")
        .or_else(|| {
            value
                .pointer("/rejection_info/reason")
                .and_then(Value::as_str)
        })
        .filter(|r| !r.is_empty() && *r != "NONE")
        .map(keep);
    Some(TemplateEvent {
        name,
        language,
        meta_id,
        event,
        reason,
    })
}

fn text<'a>(value: &'a Value, key: &str) -> Option<&'a str> {
    value
        .get(key)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
}

/// A tier as text (`TIER_2K`); a bare number as its digits.
fn limit(value: &Value, key: &str) -> Option<String> {
    match value.get(key)? {
        Value::String(s) if !s.is_empty() => Some(short(s)),
        Value::Number(n) => Some(short(&n.to_string())),
        _ => None,
    }
}

fn short(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control())
        .take(MAX_VALUE_CHARS)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn losing_the_app_kills_the_token_and_other_account_events_are_counted() {
        for event in ACCESS_LOST {
            assert_eq!(
                classify("account_update", &json!({"event": event})),
                Notice::TokenLost {
                    event: event.to_owned()
                }
            );
        }
        assert_eq!(
            classify("account_update", &json!({"event": "ACCOUNT_VIOLATION"})),
            Notice::Other("account_update")
        );
        assert_eq!(
            classify("account_update", &json!({})),
            Notice::Other("account_update")
        );
    }

    #[test]
    fn a_tier_change_records_the_limit_and_a_quality_when_one_comes() {
        assert_eq!(
            classify(
                "phone_number_quality_update",
                &json!({"display_phone_number": "1555", "event": "THROUGHPUT_UPGRADE",
                        "current_limit": "TIER_10K", "old_limit": "TIER_2K"})
            ),
            Notice::Limits {
                messaging_limit: Some("TIER_10K".to_owned()),
                quality: None
            }
        );
        assert_eq!(
            classify(
                "business_capability_update",
                &json!({"max_daily_conversations_per_business": "TIER_100K",
                        "current_limit": "TIER_10K", "quality_rating": "YELLOW"})
            ),
            Notice::Limits {
                messaging_limit: Some("TIER_100K".to_owned()),
                quality: Some("YELLOW".to_owned())
            }
        );
        assert_eq!(
            classify(
                "phone_number_quality_update",
                &json!({"current_limit": "x".repeat(99)})
            ),
            Notice::Limits {
                messaging_limit: Some("x".repeat(32)),
                quality: None
            },
            "cut to the column's width"
        );
        // An event with neither (`FLAGGED`, `ONBOARDING`) or an account
        // alert is still a cue to read the number's health.
        for (field, value) in [
            ("phone_number_quality_update", json!({"event": "FLAGGED"})),
            (
                "account_alerts",
                json!({"alert_type": "INCREASED_CAPABILITIES_ELIGIBILITY"}),
            ),
        ] {
            assert_eq!(
                classify(field, &value),
                Notice::Limits {
                    messaging_limit: None,
                    quality: None
                },
                "{field}"
            );
        }
    }

    #[test]
    fn account_level_error_items_hold_as_the_send_would() {
        assert_eq!(
            classify("errors", &json!({"code": 190, "title": "expired"})),
            Notice::TokenLost {
                event: "error 190".to_owned()
            }
        );
        assert_eq!(
            classify("errors", &json!({"code": 0})),
            Notice::TokenLost {
                event: "error 0".to_owned()
            }
        );
        for (code, reason) in [
            (368, HoldReason::Restricted),
            (131_031, HoldReason::Restricted),
            (131_064, HoldReason::Restricted),
            (131_042, HoldReason::Billing),
        ] {
            assert_eq!(
                classify("errors", &json!({"code": code})),
                Notice::Hold { reason, code }
            );
        }
        // A rate limit or an unknown code only counts.
        for other in [json!({"code": 130_429}), json!({"code": "190"}), json!({})] {
            assert_eq!(classify("errors", &other), Notice::Other("error"));
        }
    }

    #[test]
    fn a_template_review_event_names_the_template_and_what_happened() {
        let value = json!({"event": "REJECTED", "message_template_id": 1689556908129835_u64,
                           "message_template_name": "abandoned_cart",
                           "message_template_language": "en", "reason": "INVALID_FORMAT",
                           "message_template_category": "MARKETING",
                           "rejection_info": {"reason": "other", "recommendation": "…"}});
        assert_eq!(
            classify("message_template_status_update", &value),
            Notice::TemplateStatus(TemplateEvent {
                name: Some("abandoned_cart".to_owned()),
                language: Some("en".to_owned()),
                meta_id: Some("1689556908129835".to_owned()),
                event: "REJECTED".to_owned(),
                reason: Some("INVALID_FORMAT".to_owned()),
            })
        );
        let approved = json!({"event": "approved", "message_template_name": "order_update",
                              "message_template_language": "en_US", "reason": "NONE"});
        match classify("message_template_status_update", &approved) {
            Notice::TemplateStatus(e) => {
                assert_eq!(
                    (e.event.as_str(), e.reason, e.meta_id),
                    ("APPROVED", None, None)
                );
            }
            other => panic!("{other:?}"),
        }
        let by_id = json!({"event": "PAUSED", "message_template_id": "77",
                           "rejection_info": {"reason": "low quality"}});
        match classify("message_template_status_update", &by_id) {
            Notice::TemplateStatus(e) => {
                assert_eq!(e.meta_id.as_deref(), Some("77"));
                assert_eq!(e.reason.as_deref(), Some("low quality"));
            }
            other => panic!("{other:?}"),
        }
        // Without an event, or without a template to name, only counted.
        for unusable in [
            json!({"message_template_name": "x", "message_template_language": "en"}),
            json!({"event": "APPROVED", "message_template_name": "x"}),
            json!({"event": "APPROVED"}),
            json!({"event": "x".repeat(40), "message_template_id": 1}),
        ] {
            assert_eq!(
                classify("message_template_status_update", &unusable),
                Notice::Other("template_status"),
                "{unusable}"
            );
        }
    }
}
