//! The built-in rules bot, configured per tenant in `bot_config`
//! (`switchyard_shared::bot_config::RulesConfig`, parsed when the tenant row
//! was loaded): `greeting` (first message of a chat), `keywords`
//! (`[{"match","reply"}]`, case-insensitive substring), `menu` (see
//! [`super::menu`]), `flow` (chained menus about a resource, see
//! [`super::flow`]), `media_reply`, `fallback`.
//!
//! Order: staff get no answer; a media message without a caption gets the
//! media reply; an option id about one of the sender's resources leads to
//! its step; an id about anyone else's is refused (unless it is one of the
//! static menu's own ids); then the static menu, keywords, and, with a flow,
//! the picker (ambiguous sender) or the start step (one resource); then the
//! static menu or the fallback.

use switchyard_shared::{
    bot_config::{BotSpec, DEFAULT_MEDIA_REPLY, RulesConfig},
    flow::Action,
    media::Content,
};

use super::{
    Bot, BotError, BotInput, BotTurn, REFUSAL,
    choice::Choice,
    flow,
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

fn refuse(input: &BotInput<'_>, mut turn: BotTurn) -> BotTurn {
    metrics::counter!(m::FOREIGN_MENU_IDS).increment(1);
    tracing::warn!(tenant.id = %input.tenant.id, "refused an option id that is not one of this tenant's or this sender's");
    turn.replies.push(REFUSAL.to_owned());
    turn
}

/// A static menu option whose id is exactly this action's.
fn static_reply(config: &RulesConfig, action: &Action) -> Option<String> {
    let id = action.to_string();
    config
        .menu
        .as_ref()?
        .options
        .iter()
        .find(|o| o.id == id)
        .map(|o| o.reply.clone())
}

/// The flow step an owned action leads to (`sel` leads to the start step).
fn step_of(config: &RulesConfig, action: &Action) -> Option<BotTurn> {
    let flow_config = config.flow.as_ref()?;
    let name = if action.prefix.is_pick() {
        &flow_config.start
    } else {
        &action.prefix
    };
    flow::step(flow_config, name, &action.id)
}

fn append(mut turn: BotTurn, more: BotTurn) -> BotTurn {
    turn.replies.extend(more.replies);
    turn.menu = more.menu.or(turn.menu);
    turn
}

impl Bot for RulesBot {
    async fn respond(&self, input: BotInput<'_>) -> Result<BotTurn, BotError> {
        match input.role {
            SenderRole::Staff { .. } | SenderRole::StaffWithoutResource => {
                return Ok(BotTurn::default());
            }
            SenderRole::Customer { .. } | SenderRole::Ambiguous { .. } | SenderRole::Unknown => {}
        }
        let config = rules_of(&input)?;
        let mut turn = BotTurn::default();
        if let Some(greeting) = config
            .greeting
            .as_ref()
            .filter(|_| input.conversation.is_new)
        {
            turn.replies.push(greeting.clone());
        }
        if let Content::Media {
            kind,
            caption: None,
        } = input.content
        {
            let reply = config.media_reply.as_deref().unwrap_or(DEFAULT_MEDIA_REPLY);
            turn.replies.push(reply.replace("{media}", kind.as_str()));
            return Ok(turn);
        }
        match input.choice {
            Choice::Owned(action) => {
                if let Some(next) = step_of(config, action) {
                    return Ok(append(turn, next));
                }
                if let Some(reply) = static_reply(config, action) {
                    turn.replies.push(reply);
                    return Ok(turn);
                }
            }
            Choice::Foreign(action) => {
                if let Some(reply) = static_reply(config, action) {
                    turn.replies.push(reply);
                    return Ok(turn);
                }
                return Ok(refuse(&input, turn));
            }
            Choice::None => {}
        }
        let text = input.content.text().trim();
        if let Some(shown) = &config.menu {
            match menu::select(shown, text, &input.conversation.last_menu) {
                Selection::Chosen(option) => {
                    turn.replies.push(option.reply.clone());
                    return Ok(turn);
                }
                Selection::Foreign => return Ok(refuse(&input, turn)),
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
        if let Some(flow_config) = &config.flow {
            let about = match input.role {
                SenderRole::Ambiguous { candidates } => {
                    return Ok(append(
                        turn,
                        flow::picker(&flow_config.picker_title, candidates),
                    ));
                }
                SenderRole::Customer { resource } => resource.as_ref(),
                SenderRole::Staff { .. }
                | SenderRole::StaffWithoutResource
                | SenderRole::Unknown => None,
            };
            if let Some(start) = about.and_then(|r| flow::step(flow_config, &flow_config.start, r))
            {
                return Ok(append(turn, start));
            }
        }
        if let Some(shown) = &config.menu {
            return Ok(append(turn, BotTurn::showing(menu::shown(shown))));
        }
        if let Some(fallback) = &config.fallback {
            turn.replies.push(fallback.clone());
        }
        Ok(turn)
    }
}
