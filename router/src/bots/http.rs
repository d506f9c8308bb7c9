//! The HTTP bot: POSTs the message to the tenant's own endpoint
//! (`bot_config.url`), signed with the tenant's Standard Webhooks secret
//! (`bot_config.signing_secret`), within a timeout (all parsed with the
//! tenant row: `switchyard_shared::bot_config::HttpBotConfig`); the JSON answer
//! `{"replies": ["…"]}` is the list of reply parts. Timeouts, connection
//! errors and 5xx are transient; 4xx and malformed answers are permanent.

use serde::Deserialize;
use switchyard_shared::{
    bot_config::{BotSpec, HttpBotConfig},
    standard_webhooks,
};

use super::{Bot, BotError, BotInput, BotTurn, MAX_PARTS};

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
        let body = serde_json::to_vec(&serde_json::json!({
            "tenant": input.tenant.id,
            "message": input.message,
            "new_conversation": input.conversation.is_new,
        }))
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
