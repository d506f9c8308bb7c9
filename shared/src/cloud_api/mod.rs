//! Meta's WhatsApp Cloud API, the second channel (issue 22;
//! `docs/cloud-api.md` is the contract every choice here follows).
//!
//! - [`signature`]: `X-Hub-Signature-256` over the raw body, app secret rotation;
//! - [`webhook`]: a batched POST split into per-tenant items with their own keys;
//! - [`inbound`]: those items read back as the router's events;
//! - [`client`]: the send API on the tenant's own number with its own token;
//! - [`interactive`]: a shown menu as reply buttons or a list;
//! - [`error`]: Meta's codes → retry, slow down, hold, dead letter;
//! - [`token_box`]: business tokens sealed at rest;
//! - [`channel`]: a tenant's Cloud API number and credential (the table);
//! - [`window`]: the 24-hour customer-service window per (tenant, chat);
//! - [`templates`]: templates, their placeholders and parameter checks;
//! - [`template_store`]: a tenant's templates and fallback choice (the tables);
//! - [`fallback`]: the template sent in place of a reply once the window closed;
//! - [`account`]: what account, quality and error notices mean for a tenant;
//! - [`limits`]: a tenant's send limits from its number's rate and quality;
//! - [`settings`]: the Graph API address and version, the webhook secrets.

pub mod account;
pub mod channel;
pub mod client;
pub mod error;
pub mod fallback;
pub mod inbound;
pub mod interactive;
pub mod limits;
pub mod settings;
pub mod signature;
pub mod template_store;
pub mod templates;
pub mod token_box;
pub mod webhook;
pub mod window;

pub use client::CloudClient;
pub use error::{CloudError, HoldReason, Outcome};
pub use settings::{CloudApiSettings, CloudWebhookSettings};
