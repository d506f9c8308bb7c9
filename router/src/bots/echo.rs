//! The echo bot, for load tests: answers every message with its own text; a
//! media message with its kind (and caption), an empty text with nothing.

use switchyard_shared::media::Content;

use super::{Bot, BotError, BotInput, BotTurn};

/// Replies `echo: <body>`, `echo: [image] <caption>`.
#[derive(Debug, Clone, Copy)]
pub struct EchoBot;

fn clip(text: &str) -> String {
    text.chars().take(1000).collect()
}

impl Bot for EchoBot {
    async fn respond(&self, input: BotInput<'_>) -> Result<BotTurn, BotError> {
        Ok(match input.content {
            Content::Text(body) if body.trim().is_empty() => BotTurn::default(),
            Content::Text(body) => BotTurn::say(format!("echo: {}", clip(body))),
            Content::Media {
                kind,
                caption: None,
            } => BotTurn::say(format!("echo: [{}]", kind.as_str())),
            Content::Media {
                kind,
                caption: Some(caption),
            } => BotTurn::say(format!("echo: [{}] {}", kind.as_str(), clip(caption))),
        })
    }
}
