//! A tenant's bot configuration as one type, parsed once when the tenant row
//! is loaded ([`crate::tenants`]) and by the CLI before it stores one, with
//! the same code, so the router never re-reads JSON per message and an
//! operator learns of a bad configuration when setting it, not from a dead
//! letter. A stored configuration that no longer parses (written before a
//! rule tightened, or by hand) is kept as its [`BotConfigError`], naming the
//! field: the tenant still loads, the loader reports it once, and each of
//! that tenant's messages is refused with the same reason.

pub mod egress;
pub mod flow;
pub mod menu;
mod redact;

use std::time::Duration;

use secrecy::SecretString;
use serde::Deserialize;

use crate::{contacts::PhoneNumber, standard_webhooks::SigningSecret, tenants::BotKind};
pub use egress::{EgressError, EgressPolicy};
pub use flow::{FlowConfig, FlowError, FlowOption, Step};
pub use menu::{Menu, MenuError, MenuOption};
pub use redact::{redact_json, redact_url};

/// Default and upper bound of an HTTP bot call (`bot_config.timeout_ms`).
pub const HTTP_BOT_DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
pub const HTTP_BOT_MAX_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a bot configuration is unusable: the field and the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("bot_config.{field}: {reason}")]
pub struct BotConfigError {
    /// The offending field (`url`, `menu.options`, `(root)`, …).
    pub field: String,
    pub reason: String,
}

impl BotConfigError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// A tenant's bot configuration, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct BotConfig {
    /// Whether group chats are answered (`groups_enabled`, default false).
    pub groups_enabled: bool,
    /// Which bot answers, with its own settings.
    pub spec: BotSpec,
    /// LEGACY (`staff_phones`, any bot kind): the tenant's staff phones from
    /// before the contacts table (migration 0011). The resolver's legacy pass
    /// reads it between the staff and customer passes; entries that are not
    /// phone numbers are skipped (they never matched a sender either).
    /// Remove the field and the pass once no tenant row has it:
    /// `SELECT count(*) FROM tenants WHERE bot_config ? 'staff_phones'` is 0
    /// (each tenant's list moved with `switchyard contacts import`, then the
    /// key dropped with `tenants set-bot`).
    pub legacy_staff_phones: Vec<PhoneNumber>,
}

/// The bot of one kind and its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum BotSpec {
    Echo,
    Rules(RulesConfig),
    Http(HttpBotConfig),
}

impl Default for BotConfig {
    /// The schema's default tenant: a rules bot with no rules, no groups.
    fn default() -> Self {
        Self {
            groups_enabled: false,
            spec: BotSpec::Rules(RulesConfig::default()),
            legacy_staff_phones: Vec::new(),
        }
    }
}

/// The built-in rules bot: `greeting` (a chat's first message), `keywords`
/// (`[{"match","reply"}]`, case-insensitive substring), `menu`, `flow`
/// (chained menus about a resource, [`flow`]), `media_reply` (a media
/// message without a caption), `fallback`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct RulesConfig {
    #[serde(default)]
    pub greeting: Option<String>,
    #[serde(default)]
    pub keywords: Vec<KeywordRule>,
    #[serde(default)]
    pub menu: Option<Menu>,
    #[serde(default)]
    pub flow: Option<FlowConfig>,
    /// The answer to a media message without a caption (`{media}` is
    /// replaced by its kind); default: [`DEFAULT_MEDIA_REPLY`].
    #[serde(default)]
    pub media_reply: Option<String>,
    #[serde(default)]
    pub fallback: Option<String>,
}

/// The rules bot's answer to a media message without a caption.
pub const DEFAULT_MEDIA_REPLY: &str = "Thanks, we received your {media}.";

/// One keyword rule of the rules bot.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct KeywordRule {
    #[serde(rename = "match")]
    pub pattern: String,
    pub reply: String,
}

/// The tenant's own bot endpoint. Its `Debug` shows the URL without its
/// query or user info ([`redact_url`]) and never the secret.
#[derive(Clone, PartialEq)]
pub struct HttpBotConfig {
    /// `http(s)://…`; the tenant's own endpoint. May carry a token in its
    /// query or user info: shown, logged and dead-lettered only through
    /// [`redact_url`]. Where it may point is the egress guard's business
    /// ([`EgressPolicy`]), checked by the CLI and at every call.
    pub url: String,
    /// The call's timeout, at most [`HTTP_BOT_MAX_TIMEOUT`].
    pub timeout: Duration,
    /// Standard Webhooks secret the call is signed with, if any.
    pub signing_secret: Option<SigningSecret>,
}

impl std::fmt::Debug for HttpBotConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpBotConfig")
            .field("url", &redact_url(&self.url))
            .field("timeout", &self.timeout)
            .field("signing_secret", &self.signing_secret)
            .finish()
    }
}

impl BotConfig {
    /// Parses a stored or submitted configuration for a bot of `kind`.
    pub fn parse(kind: BotKind, raw: &serde_json::Value) -> Result<Self, BotConfigError> {
        let object = raw
            .as_object()
            .ok_or_else(|| BotConfigError::new("(root)", "must be a JSON object"))?;
        let groups_enabled = match object.get("groups_enabled") {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Bool(b)) => *b,
            Some(_) => {
                return Err(BotConfigError::new(
                    "groups_enabled",
                    "must be true or false",
                ));
            }
        };
        let spec = match kind {
            BotKind::Echo => BotSpec::Echo,
            BotKind::Rules => BotSpec::Rules(parse_rules(raw)?),
            BotKind::Http => BotSpec::Http(parse_http(object)?),
        };
        let legacy_staff_phones = match object.get("staff_phones") {
            Some(serde_json::Value::Array(items)) => items
                .iter()
                .filter_map(|p| p.as_str().and_then(|p| PhoneNumber::parse(p).ok()))
                .collect(),
            _ => Vec::new(),
        };
        Ok(Self {
            groups_enabled,
            spec,
            legacy_staff_phones,
        })
    }
}

fn parse_rules(raw: &serde_json::Value) -> Result<RulesConfig, BotConfigError> {
    let config = RulesConfig::deserialize(raw).map_err(|e| {
        // serde names the field in its message ("unknown field `x`", "missing field `reply`").
        BotConfigError::new("(rules)", e.to_string())
    })?;
    if let Some(menu) = &config.menu {
        menu.validate()
            .map_err(|e| BotConfigError::new("menu.options", e.to_string()))?;
    }
    if let Some(flow) = &config.flow {
        flow.validate()
            .map_err(|e| BotConfigError::new("flow", e.to_string()))?;
    }
    Ok(config)
}

fn parse_http(
    object: &serde_json::Map<String, serde_json::Value>,
) -> Result<HttpBotConfig, BotConfigError> {
    let url = match object.get("url") {
        Some(serde_json::Value::String(url)) => url.clone(),
        Some(_) => return Err(BotConfigError::new("url", "must be a string")),
        None => return Err(BotConfigError::new("url", "is required for the http bot")),
    };
    // The URL itself is never echoed: it may hold a token.
    let parsed = reqwest::Url::parse(&url)
        .map_err(|e| BotConfigError::new("url", format!("is not a valid URL ({e})")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(BotConfigError::new(
            "url",
            "must start with http:// or https://",
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(BotConfigError::new("url", "has no host"));
    }
    let timeout = match object.get("timeout_ms") {
        None | Some(serde_json::Value::Null) => HTTP_BOT_DEFAULT_TIMEOUT,
        Some(v) => v
            .as_u64()
            .map(Duration::from_millis)
            .ok_or_else(|| BotConfigError::new("timeout_ms", "must be a whole number of ms"))?
            .min(HTTP_BOT_MAX_TIMEOUT),
    };
    let signing_secret = match object.get("signing_secret") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(s)) => Some(
            SigningSecret::parse(&SecretString::from(s.clone()))
                .map_err(|e| BotConfigError::new("signing_secret", e.to_string()))?,
        ),
        Some(_) => return Err(BotConfigError::new("signing_secret", "must be a string")),
    };
    Ok(HttpBotConfig {
        url,
        timeout,
        signing_secret,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_http_bot_without_a_usable_url_is_refused_naming_the_field() {
        for raw in [json!({}), json!({"url": 5}), json!({"url": "ftp://x"})] {
            let e = BotConfig::parse(BotKind::Http, &raw).unwrap_err();
            assert_eq!(e.field, "url", "{raw}");
        }
        let e = BotConfig::parse(BotKind::Http, &json!([])).unwrap_err();
        assert_eq!(e.field, "(root)");
    }

    #[test]
    fn an_http_bot_timeout_is_capped_and_its_secret_checked() {
        let raw = json!({"url": "https://bot.example", "timeout_ms": 60_000});
        let Ok(BotConfig {
            spec: BotSpec::Http(c),
            ..
        }) = BotConfig::parse(BotKind::Http, &raw)
        else {
            panic!("valid config refused");
        };
        assert_eq!(c.timeout, HTTP_BOT_MAX_TIMEOUT);
        let raw = json!({"url": "https://bot.example", "signing_secret": "whsec_%%%"});
        let e = BotConfig::parse(BotKind::Http, &raw).unwrap_err();
        assert_eq!(e.field, "signing_secret");
        assert!(
            !e.to_string().contains("%%%"),
            "the secret is not echoed: {e}"
        );
    }

    #[test]
    fn a_rules_bot_with_a_bad_menu_or_wrong_types_is_refused() {
        let raw = json!({"menu": {"options": [{"id": "nope", "title": "t", "reply": "r"}]}});
        let e = BotConfig::parse(BotKind::Rules, &raw).unwrap_err();
        assert_eq!(e.field, "menu.options");
        let e =
            BotConfig::parse(BotKind::Rules, &json!({"keywords": [{"match": "hi"}]})).unwrap_err();
        assert!(e.reason.contains("reply"), "{e}");
    }

    #[test]
    fn groups_are_off_unless_enabled_with_a_boolean() {
        let off = BotConfig::parse(BotKind::Echo, &json!({})).unwrap();
        assert!(!off.groups_enabled);
        let on = BotConfig::parse(BotKind::Echo, &json!({"groups_enabled": true})).unwrap();
        assert!(on.groups_enabled);
        let e = BotConfig::parse(BotKind::Echo, &json!({"groups_enabled": "yes"})).unwrap_err();
        assert_eq!(e.field, "groups_enabled");
    }
}
