//! The HTTP bot: POSTs the message to the tenant's own endpoint
//! (`bot_config.url`), signed with the tenant's Standard Webhooks secret
//! (`bot_config.signing_secret`), within a timeout; the JSON answer
//! `{"replies": ["…"]}` is the list of reply parts. Timeouts, connection
//! errors and 5xx are transient; 4xx and malformed answers are permanent.

use std::time::Duration;

use serde::Deserialize;
use switchyard_shared::standard_webhooks::{self, SigningSecret};

use super::{Bot, BotError, BotInput, BotTurn, MAX_PARTS};

/// Default and upper bound of the call's timeout (`bot_config.timeout_ms`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_TIMEOUT: Duration = Duration::from_secs(15);

#[derive(Debug, Deserialize)]
struct Answer {
    #[serde(default)]
    replies: Vec<String>,
}

/// Calls tenants' bot endpoints.
#[derive(Debug, Clone)]
pub struct HttpBot {
    client: reqwest::Client,
}

impl HttpBot {
    pub fn new() -> Self {
        switchyard_shared::tls::install_crypto_provider();
        Self {
            client: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap_or_default(),
        }
    }
}

impl Default for HttpBot {
    fn default() -> Self {
        Self::new()
    }
}

impl Bot for HttpBot {
    async fn respond(&self, input: BotInput<'_>) -> Result<BotTurn, BotError> {
        let config = &input.tenant.bot_config;
        let url = config
            .get("url")
            .and_then(|u| u.as_str())
            .ok_or_else(|| BotError::Permanent("http bot has no bot_config.url".to_owned()))?;
        let timeout = config
            .get("timeout_ms")
            .and_then(|t| t.as_u64())
            .map_or(DEFAULT_TIMEOUT, Duration::from_millis)
            .min(MAX_TIMEOUT);
        let body = serde_json::to_vec(&serde_json::json!({
            "tenant": input.tenant.id,
            "message": input.message,
            "new_conversation": input.conversation.is_new,
        }))
        .map_err(|e| BotError::Permanent(e.to_string()))?;
        let mut request = self
            .client
            .post(url)
            .timeout(timeout)
            .header("content-type", "application/json");
        if let Some(secret) = config.get("signing_secret").and_then(|s| s.as_str()) {
            let secret = SigningSecret::parse(&secret.to_owned().into())
                .map_err(|e| BotError::Permanent(format!("bot signing secret: {e}")))?;
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
        let response = request.body(body).send().await.map_err(|e| {
            // reqwest errors may include the URL; the tenant's own URL is not a secret.
            BotError::Transient(format!("bot endpoint unreachable: {e}"))
        })?;
        let status = response.status();
        if status.is_server_error() || status.as_u16() == 429 {
            return Err(BotError::Transient(format!(
                "bot endpoint answered {status}"
            )));
        }
        if !status.is_success() {
            return Err(BotError::Permanent(format!(
                "bot endpoint answered {status}"
            )));
        }
        let bytes = response
            .bytes()
            .await
            .map_err(|e| BotError::Transient(format!("bot answer cut off: {e}")))?;
        let answer: Answer = serde_json::from_slice(&bytes).map_err(|e| {
            BotError::Permanent(format!("bot answer is not {{\"replies\": [..]}}: {e}"))
        })?;
        if answer.replies.len() > MAX_PARTS {
            return Err(BotError::Permanent(format!(
                "bot answered {} parts; at most {MAX_PARTS} are allowed",
                answer.replies.len()
            )));
        }
        Ok(BotTurn {
            replies: answer.replies,
            menu_shown: None,
        })
    }
}
