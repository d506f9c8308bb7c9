//! The built-in rules bot, configured per tenant in `bot_config`
//! (`switchyard_shared::bot_config::RulesConfig`, parsed when the tenant row
//! was loaded): `greeting` (first message of a chat), `keywords`
//! (`[{"match","reply"}]`, case-insensitive substring), `menu` (see
//! [`super::menu`]), `fallback`.
//! Staff messages get no answer.

use switchyard_shared::bot_config::{BotSpec, RulesConfig};

use super::{
    Bot, BotError, BotInput, BotTurn,
    menu::{self, Selection},
    sender_role::SenderRole,
};
use crate::metrics as m;

/// The rules a tenant's row was loaded with, or why it cannot be answered.
fn rules_of<'t>(input: &BotInput<'t>) -> Result<&'t RulesConfig, BotError> {
    match input.tenant.bot.as_ref() {
        Ok(config) => match &config.spec {
            BotSpec::Rules(rules) => Ok(rules),
            _ => Err(BotError::Permanent(
                "the tenant's bot configuration is not a rules bot's".to_owned(),
            )),
        },
        Err(e) => Err(BotError::Permanent(format!(
            "invalid rules bot config: {e}"
        ))),
    }
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
        let config = rules_of(&input)?;
        let text = input.message.body.trim();
        let mut turn = BotTurn::default();
        if let Some(greeting) = config
            .greeting
            .as_ref()
            .filter(|_| input.conversation.is_new)
        {
            turn.replies.push(greeting.clone());
        }
        if let Some(shown) = &config.menu {
            match menu::select(shown, text, &input.conversation.last_menu) {
                Selection::Chosen(option) => {
                    turn.replies.push(option.reply.clone());
                    return Ok(turn);
                }
                Selection::Foreign => {
                    metrics::counter!(m::FOREIGN_MENU_IDS).increment(1);
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
        if let Some(shown) = &config.menu {
            turn.replies.push(menu::render(shown));
            turn.menu_shown = Some(shown.options.iter().map(|o| o.id.clone()).collect());
            return Ok(turn);
        }
        if let Some(fallback) = &config.fallback {
            turn.replies.push(fallback.clone());
        }
        Ok(turn)
    }
}
