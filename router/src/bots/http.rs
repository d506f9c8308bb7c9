//! The HTTP bot: POSTs the message to the tenant's own endpoint
//! (`bot_config.url`), signed with the tenant's Standard Webhooks secret
//! (`bot_config.signing_secret`), within a timeout (all parsed with the
//! tenant row: `switchyard_shared::bot_config::HttpBotConfig`).
//!
//! The bot contract: a 2xx answer whose body is a JSON object with a
//! `replies` array of strings, the reply parts in order (`{"replies": []}`
//! is a valid "no answer"). Anything else (not JSON, no `replies`, wrong
//! types, more than [`MAX_PARTS`] parts, a body over the size limit) is that
//! message's permanent error, dead-lettered with the reason: never acked as
//! if the bot had said nothing. The body is read as a stream and reading
//! stops at the limit, so an endpoint streaming gigabytes costs the router
//! at most the limit.
//!
//! The request carries, besides the message, what the router resolved
//! within the tenant (see [`request_body`]): the sender's role and
//! resources, the resource the message is about, the parsed option id
//! (`action`: prefix and id, only when the id is about one of the sender's
//! own resources) and the content (text, or media kind and caption). An
//! option id about anyone else's resource is refused by the router with
//! [`super::REFUSAL`]; the endpoint is not called.
//!
//! Timeouts, connection errors, 429 and 5xx are transient; other non-2xx
//! answers, contract violations and URLs the egress guard refuses
//! ([`switchyard_shared::guarded_resolver`]) are permanent. Every error names the endpoint only
//! through [`redact_url`] (no query, no user info): errors reach the logs
//! and the dead-letter headers.

use std::{sync::Arc, time::Duration};

use switchyard_shared::{
    bot_config::{BotSpec, EgressPolicy, HttpBotConfig, redact_url},
    guarded_resolver::{self as egress, GuardedResolver},
    standard_webhooks,
};

use switchyard_shared::{
    contacts::ResourceId,
    flow::Action,
    media::Content,
    replies::{ReplyMenu, ReplyOption},
};

use super::{Bot, BotError, BotInput, BotTurn, MAX_PARTS, REFUSAL, choice::Choice};
use crate::metrics as m;

/// Default of `SWITCHYARD_BOT_MAX_ANSWER_BYTES`.
pub const DEFAULT_MAX_ANSWER_BYTES: usize = 256 * 1024;

/// How the HTTP bot may reach tenants' endpoints.
#[derive(Debug, Clone)]
pub struct HttpBotSettings {
    /// Where tenant endpoints may point (`SWITCHYARD_BOT_EGRESS_ALLOW`,
    /// `SWITCHYARD_BOT_ALLOW_HTTP`).
    pub egress: EgressPolicy,
    /// Largest answer body read (`SWITCHYARD_BOT_MAX_ANSWER_BYTES`).
    pub max_answer_bytes: usize,
}

impl Default for HttpBotSettings {
    /// The production defaults: strict egress, 256 KiB answers.
    fn default() -> Self {
        Self {
            egress: EgressPolicy::strict(),
            max_answer_bytes: DEFAULT_MAX_ANSWER_BYTES,
        }
    }
}

/// Calls tenants' bot endpoints.
#[derive(Debug, Clone)]
pub struct HttpBot {
    client: reqwest::Client,
    policy: Arc<EgressPolicy>,
    max_answer_bytes: usize,
}

impl HttpBot {
    /// A bot resolving names through the system resolver.
    pub fn new(settings: HttpBotSettings) -> anyhow::Result<Self> {
        Self::with_lookup(settings, egress::system_lookup())
    }

    /// A bot resolving names through `lookup` (tests), always guarded.
    pub fn with_lookup(settings: HttpBotSettings, lookup: egress::Lookup) -> anyhow::Result<Self> {
        switchyard_shared::tls::install_crypto_provider();
        let policy = Arc::new(settings.egress);
        let client = reqwest::Client::builder()
            // Every name resolves through the guard; nothing bypasses it:
            // no redirects (a 3xx is the bot's answer), no proxy.
            .dns_resolver(Arc::new(GuardedResolver::new(Arc::clone(&policy), lookup)))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the http bot client: {e}"))?;
        Ok(Self {
            client,
            policy,
            max_answer_bytes: settings.max_answer_bytes,
        })
    }
}

/// The error's text and its sources', without the URL reqwest adds.
fn chain(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// A bot error's text: the reason first (dead-letter headers keep 512
/// characters), then the endpoint, redacted.
fn at(shown: &str, reason: std::fmt::Arguments<'_>) -> String {
    format!("{reason} (endpoint {shown})")
}

/// Why a call failed before an answer arrived.
fn send_failed(shown: &str, timeout: Duration, error: reqwest::Error) -> BotError {
    if let Some(refused) = egress::refusal_in(&error) {
        metrics::counter!(m::BOT_ANSWERS_REFUSED, "reason" => "egress").increment(1);
        return BotError::Permanent(at(
            shown,
            format_args!("bot URL refused by the egress guard: {refused}"),
        ));
    }
    if error.is_timeout() {
        return BotError::Transient(at(
            shown,
            format_args!("bot did not answer within {}ms", timeout.as_millis()),
        ));
    }
    BotError::Transient(at(
        shown,
        format_args!("bot endpoint unreachable: {}", chain(error)),
    ))
}

/// The JSON type name of a value, for contract errors (never the value itself).
fn kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// Most options a backend's menu may show (a Cloud API list's limit).
pub const MAX_MENU_OPTIONS: usize = 10;
/// Longest menu or option title a backend may send.
const MENU_TITLE_MAX: usize = 200;

/// Reads a backend's optional `menu`: `{"title": "…", "options": [{"id":
/// "<prefix>:<resource>", "title": "…"}]}`, 1 to 10 options, each id a flow
/// action (checked again, within the tenant, when it comes back).
fn parse_menu(value: serde_json::Value) -> Result<ReplyMenu, String> {
    let serde_json::Value::Object(mut menu) = value else {
        return Err(format!("\"menu\" is {}, not an object", kind(&value)));
    };
    let title = match menu.remove("title") {
        None | Some(serde_json::Value::Null) => String::new(),
        Some(serde_json::Value::String(t)) if t.chars().count() <= MENU_TITLE_MAX => t,
        Some(serde_json::Value::String(_)) => {
            return Err(format!(
                "\"menu\".title is longer than {MENU_TITLE_MAX} characters"
            ));
        }
        Some(other) => return Err(format!("\"menu\".title is {}, not a string", kind(&other))),
    };
    let Some(serde_json::Value::Array(items)) = menu.remove("options") else {
        return Err("\"menu\" has no \"options\" array".to_owned());
    };
    if items.is_empty() || items.len() > MAX_MENU_OPTIONS {
        return Err(format!(
            "\"menu\" has {} options; 1 to {MAX_MENU_OPTIONS} are allowed",
            items.len()
        ));
    }
    let options = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let field = |name: &str| item.get(name).and_then(serde_json::Value::as_str);
            let id = field("id")
                .filter(|id| Action::parse(id).is_some())
                .ok_or_else(|| {
                    format!("\"menu\".options[{i}].id is not a <prefix>:<resource> id")
                })?;
            let title = field("title")
                .filter(|t| !t.trim().is_empty() && t.chars().count() <= MENU_TITLE_MAX)
                .ok_or_else(|| {
                    format!("\"menu\".options[{i}].title must be 1 to {MENU_TITLE_MAX} characters")
                })?;
            Ok(ReplyOption {
                id: id.trim().to_owned(),
                title: title.to_owned(),
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(ReplyMenu { title, options })
}

/// Reads an answer body against the bot contract: the reply parts and the
/// menu shown after them (if any), or why the answer breaks the contract.
pub fn parse_answer(body: &[u8]) -> Result<BotTurn, String> {
    let (replies, menu) = parse_parts(body)?;
    Ok(match menu {
        None => BotTurn {
            replies,
            menu: None,
        },
        Some(menu) => {
            let shown = BotTurn::showing(menu);
            BotTurn {
                replies: replies.into_iter().chain(shown.replies).collect(),
                menu: shown.menu,
            }
        }
    })
}

fn parse_parts(body: &[u8]) -> Result<(Vec<String>, Option<ReplyMenu>), String> {
    let value: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| format!("the answer is not JSON ({e})"))?;
    let serde_json::Value::Object(mut object) = value else {
        return Err(format!(
            "the answer is {}, not an object with a \"replies\" field",
            kind(&value)
        ));
    };
    let replies = match object.remove("replies") {
        None => return Err("the answer has no \"replies\" field".to_owned()),
        Some(serde_json::Value::Array(items)) => items,
        Some(other) => {
            return Err(format!(
                "\"replies\" is {}, not an array of strings",
                kind(&other)
            ));
        }
    };
    let menu = match object.remove("menu") {
        None | Some(serde_json::Value::Null) => None,
        Some(menu) => Some(parse_menu(menu)?),
    };
    let parts = replies.len() + usize::from(menu.is_some());
    if parts > MAX_PARTS {
        return Err(format!(
            "the answer has {parts} reply parts (a menu is one); at most {MAX_PARTS} are allowed"
        ));
    }
    let replies = replies
        .into_iter()
        .enumerate()
        .map(|(i, item)| match item {
            serde_json::Value::String(text) => Ok(text),
            other => Err(format!(
                "\"replies\"[{i}] is {}, not a string",
                kind(&other)
            )),
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok((replies, menu))
}

impl HttpBot {
    /// Reads the body as a stream, refusing it as soon as it passes the limit
    /// (the response is dropped, which closes the connection).
    async fn read_limited(
        &self,
        mut response: reqwest::Response,
        shown: &str,
        timeout: Duration,
    ) -> Result<Vec<u8>, BotError> {
        let limit = self.max_answer_bytes;
        let too_large = || {
            metrics::counter!(m::BOT_ANSWERS_REFUSED, "reason" => "too_large").increment(1);
            BotError::Permanent(at(
                shown,
                format_args!("bot answer is larger than {limit} bytes; the rest was not read"),
            ))
        };
        if response.content_length().is_some_and(|n| n > limit as u64) {
            return Err(too_large());
        }
        let mut body = Vec::with_capacity(
            response
                .content_length()
                .map_or(8 * 1024, |n| n as usize)
                .min(limit),
        );
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > limit {
                        return Err(too_large());
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => return Ok(body),
                Err(e) if e.is_timeout() => {
                    return Err(BotError::Transient(at(
                        shown,
                        format_args!(
                            "bot did not finish its answer within {}ms",
                            timeout.as_millis()
                        ),
                    )));
                }
                Err(e) => {
                    return Err(BotError::Transient(at(
                        shown,
                        format_args!("bot answer cut off: {}", chain(e)),
                    )));
                }
            }
        }
    }
}

/// The resource a message is about: its owned option id's, else the
/// sender's only one.
fn resource_of<'a>(input: &BotInput<'a>) -> Option<&'a ResourceId> {
    match input.choice {
        Choice::Owned(action) => Some(&action.id),
        Choice::Foreign(_) | Choice::None => match input.role.resources() {
            [only] => Some(only),
            _ => None,
        },
    }
}

/// The JSON the tenant's endpoint receives (the bot contract's request).
pub fn request_body(input: &BotInput<'_>) -> serde_json::Value {
    let action = match input.choice {
        Choice::Owned(action) => serde_json::json!({"prefix": action.prefix, "id": action.id}),
        Choice::Foreign(_) | Choice::None => serde_json::Value::Null,
    };
    let content = match input.content {
        Content::Text(text) => serde_json::json!({"kind": "text", "text": text}),
        Content::Media { kind, caption } => {
            serde_json::json!({"kind": "media", "media_type": kind, "caption": caption})
        }
    };
    serde_json::json!({
        "tenant": input.tenant.id,
        "message": input.message,
        "new_conversation": input.conversation.is_new,
        "sender": input.role,
        "resource": resource_of(input),
        "action": action,
        "content": content,
    })
}

impl Bot for HttpBot {
    async fn respond(&self, input: BotInput<'_>) -> Result<BotTurn, BotError> {
        if let Choice::Foreign(_) = input.choice {
            metrics::counter!(m::FOREIGN_MENU_IDS).increment(1);
            tracing::warn!(tenant.id = %input.tenant.id, "refused an option id about a resource that is not the sender's; the bot endpoint is not called");
            return Ok(BotTurn::say(REFUSAL));
        }
        let HttpBotConfig {
            url,
            timeout,
            signing_secret,
        } = match input.tenant.bot.as_ref() {
            Ok(config) => match &config.spec {
                BotSpec::Http(http) => http,
                _ => {
                    return Err(BotError::Permanent(
                        "the tenant's bot configuration is not an http bot's".to_owned(),
                    ));
                }
            },
            Err(e) => return Err(BotError::Permanent(format!("invalid http bot config: {e}"))),
        };
        let shown = redact_url(url);
        // The scheme and address literals (which no resolver sees); names are
        // checked by the client's resolver on every connection.
        self.policy.check_url(url).map_err(|refused| {
            metrics::counter!(m::BOT_ANSWERS_REFUSED, "reason" => "egress").increment(1);
            BotError::Permanent(at(
                &shown,
                format_args!("bot URL refused by the egress guard: {refused}"),
            ))
        })?;
        let body = serde_json::to_vec(&request_body(&input))
            .map_err(|e| BotError::Permanent(e.to_string()))?;
        let mut request = self
            .client
            .post(url.as_str())
            .timeout(*timeout)
            .header("content-type", "application/json");
        if let Some(secret) = signing_secret {
            let msg_id = format!("{}:{}", input.tenant.id, input.message.message_id);
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            request = request
                .header(standard_webhooks::HEADER_ID, &msg_id)
                .header(standard_webhooks::HEADER_TIMESTAMP, now.to_string())
                .header(
                    standard_webhooks::HEADER_SIGNATURE,
                    secret.sign(&msg_id, now, &body),
                );
        }
        let response = request
            .body(body)
            .send()
            .await
            .map_err(|e| send_failed(&shown, *timeout, e))?;
        let status = response.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(BotError::Transient(at(
                &shown,
                format_args!("bot answered {status}"),
            )));
        }
        if !status.is_success() {
            return Err(BotError::Permanent(at(
                &shown,
                format_args!("bot answered {status}"),
            )));
        }
        let bytes = self.read_limited(response, &shown, *timeout).await?;
        let turn = parse_answer(&bytes).map_err(|reason| {
            metrics::counter!(m::BOT_ANSWERS_REFUSED, "reason" => "contract").increment(1);
            BotError::Permanent(at(
                &shown,
                format_args!(
                    "bot answer breaks the bot contract ({{\"replies\": [\"…\"]}}): {reason}"
                ),
            ))
        })?;
        Ok(turn)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_contract_accepts_replies_and_an_explicit_empty_list_only() {
        assert_eq!(
            parse_answer(br#"{"replies": ["a", "b"], "extra": 1}"#).map(|t| t.replies),
            Ok(vec!["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(
            parse_answer(br#"{"replies": []}"#).map(|t| t.replies),
            Ok(vec![])
        );
        for (body, reason) in [
            (&br#"{}"#[..], "no \"replies\" field"),
            (br#"{"replies": 5}"#, "\"replies\" is a number"),
            (br#"{"replies": null}"#, "\"replies\" is null"),
            (br#"{"replies": "hi"}"#, "\"replies\" is a string"),
            (br#"{"replies": ["ok", 7]}"#, "\"replies\"[1] is a number"),
            (br#"["hi"]"#, "the answer is an array"),
            (b"<html>hello</html>", "not JSON"),
            (b"", "not JSON"),
        ] {
            let e = parse_answer(body).unwrap_err();
            assert!(e.contains(reason), "{}: {e}", String::from_utf8_lossy(body));
        }
        let many = serde_json::json!({"replies": vec!["x"; MAX_PARTS + 1]}).to_string();
        assert!(
            parse_answer(many.as_bytes())
                .unwrap_err()
                .contains("at most")
        );
    }

    #[test]
    fn a_backend_may_show_a_menu_of_flow_ids_after_its_replies() {
        let turn = parse_answer(
            br#"{"replies": ["Your orders:"], "menu": {"title": "Which one?",
                "options": [{"id": "sel:o-1", "title": "Order 1"}, {"id": "do_cancel:o-2", "title": "Cancel 2"}]}}"#,
        )
        .unwrap();
        assert_eq!(
            turn.replies,
            ["Your orders:", "Which one?\n1. Order 1\n2. Cancel 2"]
        );
        assert_eq!(
            turn.menu.map(|m| m.ids()),
            Some(vec!["sel:o-1".to_owned(), "do_cancel:o-2".to_owned()])
        );
        for (menu, reason) in [
            (r#""menu": 3"#, "not an object"),
            (r#""menu": {"options": []}"#, "1 to 10"),
            (
                r#""menu": {"options": [{"id": "not an id", "title": "x"}]}"#,
                "options[0].id",
            ),
            (
                r#""menu": {"options": [{"id": "sel:a", "title": ""}]}"#,
                "options[0].title",
            ),
            (
                r#""menu": {"title": 5, "options": [{"id": "sel:a", "title": "a"}]}"#,
                "title is a number",
            ),
        ] {
            let body = format!(r#"{{"replies": [], {menu}}}"#);
            let e = parse_answer(body.as_bytes()).unwrap_err();
            assert!(e.contains(reason), "{menu}: {e}");
        }
        let full = serde_json::json!({"replies": vec!["x"; MAX_PARTS],
            "menu": {"options": [{"id": "sel:a", "title": "a"}]}});
        assert!(
            parse_answer(full.to_string().as_bytes())
                .unwrap_err()
                .contains("a menu is one")
        );
    }

    #[test]
    fn a_refused_string_value_is_never_echoed() {
        let secret = "s3cr3t-".repeat(1000);
        let body = serde_json::json!({"replies": secret}).to_string();
        let e = parse_answer(body.as_bytes()).unwrap_err();
        assert!(!e.contains("s3cr3t"), "{e}");
    }
}
