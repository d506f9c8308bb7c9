//! The stores a command needs, built from the environment only when the
//! command needs them (`tenants list` never touches NATS, `dlq list` never
//! touches PostgreSQL). Errors name the setting, never its secret value.

use std::time::Duration;

use anyhow::Context as _;
use sqlx::PgPool;
use switchyard_shared::{
    config::{DatabaseSettings, Env, NatsSettings},
    db,
    ids::TenantId,
    nats,
    public_url::PublicUrl,
    streams, subjects,
    wabridges::{WaBridgesClient, WaBridgesSettings},
    webhook_auth::{Generation, WebhookKeys, redact_webhook_url},
};

use crate::{exit::CliResult, output};

/// What a command reads a secret from when told `--…-stdin`.
pub type Stdin = Box<dyn std::io::Read + Send>;

/// Lazily connected stores for one command.
pub struct Context {
    env: Env,
    /// Standard input, or what a test hands in its place; taken once.
    stdin: std::sync::Mutex<Option<Stdin>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context").finish_non_exhaustive()
    }
}

impl Context {
    pub fn new(env: Env) -> Self {
        Self::with_stdin(env, Box::new(std::io::stdin()))
    }

    /// A context whose commands read `stdin` in place of the process's.
    pub fn with_stdin(env: Env, stdin: Stdin) -> Self {
        Self {
            env,
            stdin: std::sync::Mutex::new(Some(stdin)),
        }
    }

    pub fn env(&self) -> &Env {
        &self.env
    }

    /// Standard input, for one read of a secret (a second take is refused:
    /// one stream cannot carry two secrets).
    pub fn take_stdin(&self) -> CliResult<Stdin> {
        self.stdin
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take()
            .ok_or_else(|| crate::exit::CliError::bad_input("standard input was already read"))
    }

    /// A small pool on `DATABASE_URL`.
    pub fn db(&self) -> CliResult<PgPool> {
        let mut settings = DatabaseSettings::from_env(&self.env)?;
        settings.max_connections = settings.max_connections.min(4);
        // The URL may hold a password: report the failure without it.
        Ok(db::pool(&settings, "switchyard-cli").map_err(|e| {
            anyhow::anyhow!(
                "invalid DATABASE_URL: {}",
                e.to_string().replace(
                    secrecy::ExposeSecret::expose_secret(&settings.url),
                    "[redacted]"
                )
            )
        })?)
    }

    /// A version-checked NATS connection on `NATS_URL`.
    pub async fn nats(&self) -> CliResult<async_nats::Client> {
        let settings = NatsSettings::from_env(&self.env)?;
        Ok(nats::connect(&settings, "switchyard-cli").await?)
    }

    /// A JetStream context with a generous ack timeout (batches of republishes).
    pub async fn jetstream(&self) -> CliResult<async_nats::jetstream::Context> {
        Ok(streams::context(
            self.nats().await?,
            Duration::from_secs(10),
        ))
    }

    /// The WA Bridges client (`WA_API_URL`, `WA_API_KEY`).
    pub fn wabridges(&self) -> CliResult<WaBridgesClient> {
        let settings = WaBridgesSettings::from_env(&self.env)?;
        Ok(WaBridgesClient::new(settings)?)
    }

    /// How to build each tenant's webhook URL (`SWITCHYARD_WEBHOOK_SECRET`,
    /// `SWITCHYARD_PUBLIC_URL`: `https` unless loopback or
    /// `SWITCHYARD_PUBLIC_URL_ALLOW_HTTP`, see [`PublicUrl`]).
    pub fn webhook_target(&self) -> CliResult<WebhookTarget> {
        let secret = self.env.required_secret("SWITCHYARD_WEBHOOK_SECRET")?;
        let public_url = PublicUrl::from_env(&self.env)?;
        Ok(WebhookTarget {
            keys: WebhookKeys::new(secret, None),
            public_url,
        })
    }
}

/// Builds a tenant's webhook URL (the token inside it is a secret: never
/// print it; [`redact_webhook_url`] gives what may be shown).
#[derive(Debug, Clone)]
pub struct WebhookTarget {
    pub keys: WebhookKeys,
    pub public_url: PublicUrl,
}

impl WebhookTarget {
    /// The URL of `tenant` at its credential `generation` (the tenant row's).
    pub fn url_for(&self, tenant: &TenantId, generation: Generation) -> String {
        self.keys
            .webhook_url_at(self.public_url.as_str(), tenant, generation)
    }

    /// The same URL with its token replaced by `[redacted]`.
    pub fn shown_url_for(&self, tenant: &TenantId, generation: Generation) -> String {
        redact_webhook_url(&self.url_for(tenant, generation))
    }
}

/// Tells every ingest, router and sender replica to drop its cached row of
/// `tenant`; `true` when the announcement went out. Best effort: the
/// services' cache TTL (`SWITCHYARD_TENANT_CACHE_TTL`, 30 s by default) is
/// the fallback, so a failure only warns.
pub async fn announce_tenant_change(nats: Option<&async_nats::Client>, tenant: &TenantId) -> bool {
    let Some(nats) = nats else {
        output::warn(
            "NATS unreachable: the services pick the change up when their tenant cache expires (SWITCHYARD_TENANT_CACHE_TTL, 30 s by default)",
        );
        return false;
    };
    let sent = async {
        nats.publish(subjects::tenant_changed(tenant), bytes::Bytes::new())
            .await
            .context("publish")?;
        nats.flush().await.context("flush")
    }
    .await;
    match sent {
        Ok(()) => true,
        Err(e) => {
            output::warn(&format!(
                "cannot announce the change of {tenant} ({e:#}); the services pick it up when their tenant cache expires"
            ));
            false
        }
    }
}
