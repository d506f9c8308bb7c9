//! The Cloud API webhook route, `/cloud` (issue 22; docs/cloud-api.md 3.1–3.5):
//! Meta's verification handshake (GET) and its signed batches (POST). A
//! batch is split into items, every item routed to its own tenant by phone
//! number id (account changes by WABA id), admitted within that tenant's
//! limit and made durable under its own key, exactly as a WA Bridges event
//! is ([`crate::durable`]).
//!
//! - [`handshake`]: `hub.mode` / `hub.verify_token` / `hub.challenge`;
//! - [`routing`]: items → tenants (one query per batch; never a default tenant);
//! - [`receive`]: the POST, and the one answer for the whole batch;
//! - [`metrics`]: what the route counts.

pub mod handshake;
pub mod metrics;
pub mod receive;
pub mod routing;

use sqlx::PgPool;
use switchyard_shared::cloud_api::CloudWebhookSettings;

/// The path Meta is configured to call (the App Dashboard's callback URL).
pub const PATH: &str = "/cloud";

/// What the route needs beyond the shared ingest state.
#[derive(Debug, Clone)]
pub struct CloudRoute {
    pub settings: CloudWebhookSettings,
    /// Ingest's own login: reads routes through `switchyard_cloud_routes` only.
    pub db: PgPool,
}
