//! Bots: what answers a tenant's messages, chosen per tenant (`bot_kind`).
//!
//! A bot's output is reply *content* only ([`BotTurn`]): it cannot name a
//! tenant, bridge or phone to send from; the router addresses every reply to
//! the chat the message came from, on the tenant's own lane.
//!
//! Every call runs within its tenant's bot budget ([`budget`]): a bounded
//! number of calls at once per tenant, each within the tenant's timeout.
//!
//! Before a bot runs, the router has resolved who wrote ([`sender_role`])
//! and what the answer chooses ([`choice`]), both within the tenant; bots
//! build stateless flows from them ([`flow`]).

pub mod budget;
pub mod choice;
pub mod echo;
pub mod flow;
pub mod http;
pub mod menu;
pub mod rules;
pub mod sender_role;

use std::future::Future;

use switchyard_shared::{
    events::MessageEvent, media::Content, replies::ReplyMenu, tenants::Tenant,
};

use crate::conversations::Conversation;
use choice::Choice;
use sender_role::SenderRole;

/// The answer to an option id about a resource that is not the sender's in
/// this tenant (forged, stale, or another tenant's).
pub const REFUSAL: &str = "Sorry, that option is not available.";

/// Most reply parts one turn may produce.
pub const MAX_PARTS: usize = 10;

/// What a bot sees of one message. Its `Debug` is safe to log: the tenant
/// row's prints its bot configuration redacted.
#[derive(Debug, Clone, Copy)]
pub struct BotInput<'a> {
    pub tenant: &'a Tenant,
    pub message: &'a MessageEvent,
    pub conversation: &'a Conversation,
    /// Who wrote, within the tenant.
    pub role: &'a SenderRole,
    /// What the message chooses, checked against `role`'s resources.
    pub choice: &'a Choice,
    /// The message's text or media.
    pub content: Content<'a>,
}

impl BotTurn {
    /// One reply part, no menu.
    pub fn say(text: impl Into<String>) -> Self {
        Self {
            replies: vec![text.into()],
            menu: None,
        }
    }

    /// One reply part showing `menu`: its numbered text, and the menu itself
    /// for a channel with native buttons.
    pub fn showing(menu: ReplyMenu) -> Self {
        Self {
            replies: vec![menu::numbered(
                &menu.title,
                menu.options.iter().map(|o| o.title.as_str()),
            )],
            menu: Some(menu),
        }
    }
}

/// A bot's answer: the parts to send, in order, and the menu it showed (if any).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BotTurn {
    pub replies: Vec<String>,
    /// The menu the turn's last reply part shows, if any (its ids, in
    /// display order, are what a typed number maps to next time).
    pub menu: Option<ReplyMenu>,
}

/// Why a bot could not answer.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BotError {
    /// Worth retrying (a timeout, a 5xx from the tenant's endpoint).
    #[error("transient bot failure: {0}")]
    Transient(String),
    /// Will never work for this message (bad configuration, a 4xx, bad output).
    #[error("bot failure: {0}")]
    Permanent(String),
}

/// One way of answering messages.
pub trait Bot: Send + Sync {
    fn respond(
        &self,
        input: BotInput<'_>,
    ) -> impl Future<Output = Result<BotTurn, BotError>> + Send;
}

/// The bots, dispatched by the tenant's `bot_kind`, within each tenant's budget.
#[derive(Debug, Clone)]
pub struct Bots {
    pub http: http::HttpBot,
    pub budget: budget::BotBudget,
}

impl Bots {
    pub fn new(http: http::HttpBotSettings, budget: budget::BotBudget) -> anyhow::Result<Self> {
        Ok(Self {
            http: http::HttpBot::new(http)?,
            budget,
        })
    }

    /// Runs the tenant's bot on one message, once the tenant's budget has
    /// room (the wait holds nothing other tenants need).
    pub async fn respond(&self, input: BotInput<'_>) -> Result<BotTurn, BotError> {
        use switchyard_shared::tenants::BotKind;
        let _place = self.budget.acquire(&input.tenant.id).await;
        match input.tenant.bot_kind {
            BotKind::Echo => echo::EchoBot.respond(input).await,
            BotKind::Rules => rules::RulesBot.respond(input).await,
            BotKind::Http => self.http.respond(input).await,
        }
    }
}
