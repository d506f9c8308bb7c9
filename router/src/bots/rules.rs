//! The built-in rules bot, configured per tenant in `bot_config`:
//! `greeting` (first message of a chat), `keywords` (`[{"match","reply"}]`,
//! case-insensitive substring), `menu` (see [`super::menu`]), `fallback`.
//! Staff messages get no answer.

use serde::Deserialize;

use super::{
    Bot, BotError, BotInput, BotTurn,
    menu::{Menu, Selection},
    sender_role::SenderRole,
};

#[derive(Debug, Default, Deserialize)]
struct RulesConfig {
    #[serde(default)]
    greeting: Option<String>,
    #[serde(default)]
    keywords: Vec<KeywordRule>,
    #[serde(default)]
    menu: Option<Menu>,
    #[serde(default)]
    fallback: Option<String>,
}

#[derive(Debug, Deserialize)]
struct KeywordRule {
    #[serde(rename = "match")]
    pattern: String,
    reply: String,
}

/// Answers from the tenant's configured rules.
#[derive(Debug, Clone, Copy)]
pub struct RulesBot;

impl Bot for RulesBot {
    async fn respond(&self, input: BotInput<'_>) -> Result<BotTurn, BotError> {
        match input.role {
            SenderRole::Staff => return Ok(BotTurn::default()),
            SenderRole::Customer => {}
        }
        let config: RulesConfig = serde_json::from_value(input.tenant.bot_config.clone())
            .map_err(|e| BotError::Permanent(format!("invalid rules bot config: {e}")))?;
        if let Some(menu) = &config.menu {
            menu.validate()
                .map_err(|e| BotError::Permanent(format!("invalid menu: {e}")))?;
        }
        let text = input.message.body.trim();
        let mut turn = BotTurn::default();
        if let Some(greeting) = config
            .greeting
            .as_ref()
            .filter(|_| input.conversation.is_new)
        {
            turn.replies.push(greeting.clone());
        }
        if let Some(menu) = &config.menu {
            match menu.select(text, &input.conversation.last_menu) {
                Selection::Chosen(option) => {
                    turn.replies.push(option.reply.clone());
                    return Ok(turn);
                }
                Selection::Foreign => {
                    metrics::counter!("switchyard_router_foreign_menu_ids_total").increment(1);
                    tracing::warn!(tenant.id = %input.tenant.id, "refused a menu id that is not one of this tenant's options");
                    turn.replies
                        .push("Sorry, that option is not available.".to_owned());
                    return Ok(turn);
                }
                Selection::NotAnOption => {}
            }
        }
        let lowered = text.to_lowercase();
        if let Some(rule) = config
            .keywords
            .iter()
            .find(|r| !r.pattern.is_empty() && lowered.contains(&r.pattern.to_lowercase()))
        {
            turn.replies.push(rule.reply.clone());
            return Ok(turn);
        }
        if let Some(menu) = &config.menu {
            turn.replies.push(menu.render());
            turn.menu_shown = Some(menu.options.iter().map(|o| o.id.clone()).collect());
            return Ok(turn);
        }
        if let Some(fallback) = &config.fallback {
            turn.replies.push(fallback.clone());
        }
        Ok(turn)
    }
}
