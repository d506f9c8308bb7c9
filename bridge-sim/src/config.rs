//! What a simulator instance is told at start: its key, its limits and the
//! provider behaviours the reference leaves open. `Debug` never shows the key.

use std::{net::SocketAddr, time::Duration};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use crate::faults::EchoMode;

/// The documented per-key limits, per fixed window. `0` switches a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// `POST /api/instances` (documented: 10 a minute).
    pub provision: u32,
    /// `/api/instances/{ref}/proxy/*` (documented: 120 a minute).
    pub proxy: u32,
    /// Every other `/api/*` call (documented: 120 a minute).
    pub api: u32,
    /// Every `/api` call per client IP (documented: 300 a minute).
    pub per_ip: u32,
    /// The window length (documented: one minute), in milliseconds.
    pub window_ms: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            provision: 10,
            proxy: 120,
            api: 120,
            per_ip: 300,
            window_ms: 60_000,
        }
    }
}

impl Limits {
    /// No limits at all (load tests that measure our side only).
    pub fn unlimited() -> Self {
        Self {
            provision: 0,
            proxy: 0,
            api: 0,
            per_ip: 0,
            window_ms: 60_000,
        }
    }

    pub fn window(&self) -> Duration {
        Duration::from_millis(self.window_ms.max(1))
    }
}

/// How a simulator behaves. Build with [`SimConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where to listen; port 0 picks a free port (tests).
    pub bind: SocketAddr,
    /// The one valid API key (`Authorization: Bearer <key>`).
    pub api_key: SecretString,
    pub limits: Limits,
    /// New bridges start with a connected WhatsApp session (a fake phone
    /// number), so sends work at once. Off: they start `unpaired` and need `/pair`.
    pub auto_connect: bool,
    /// Add the bridge's `customer_ref` to every webhook body (the provider's
    /// guides say it is there, its event reference does not show it).
    pub webhook_customer_ref: bool,
    /// How long the provider waits for a webhook answer (documented: 10 s, no retries).
    pub webhook_timeout: Duration,
    /// Whether a repeated `POST /api/instances` replaces the stored `webhook_url`
    /// (undocumented; off by default so our code cannot come to rely on it).
    pub update_webhook_on_reprovision: bool,
    /// The `from_me` echo mode new bridges start with.
    pub echo: EchoMode,
}

impl SimConfig {
    /// Documented defaults on `127.0.0.1:0`.
    pub fn new(api_key: impl Into<String>) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            api_key: SecretString::from(api_key.into()),
            limits: Limits::default(),
            auto_connect: true,
            webhook_customer_ref: true,
            webhook_timeout: Duration::from_secs(10),
            update_webhook_on_reprovision: false,
            echo: EchoMode::Off,
        }
    }
}

/// How long the simulators keep an idle webhook connection for reuse: below
/// ingest's keep-alive close (`SWITCHYARD_HTTP_HEADER_TIMEOUT`, 5 s), so a
/// post never goes out on a connection the server is closing at that moment.
pub const WEBHOOK_POOL_IDLE: std::time::Duration = std::time::Duration::from_secs(2);

/// The HTTP client both simulators post their webhooks with: answers awaited
/// up to `timeout`, no redirects followed, and idle connections dropped after
/// [`WEBHOOK_POOL_IDLE`] (how long the real providers keep one is unknown,
/// and reusing one the server is closing loses the webhook: the provider
/// never retries; docs/ingest.md).
pub fn webhook_client(timeout: std::time::Duration) -> std::io::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(timeout)
        .pool_idle_timeout(WEBHOOK_POOL_IDLE)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(std::io::Error::other)
}
