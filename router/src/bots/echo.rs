//! The echo bot, for load tests: answers every message with its own text.

use super::{Bot, BotError, BotInput, BotTurn};

/// Replies `echo: <body>`.
#[derive(Debug, Clone, Copy)]
pub struct EchoBot;

impl Bot for EchoBot {
    async fn respond(&self, input: BotInput<'_>) -> Result<BotTurn, BotError> {
        let body: String = input.message.body.chars().take(1000).collect();
        Ok(BotTurn {
            replies: vec![format!("echo: {body}")],
            menu_shown: None,
        })
    }
}
