//! The whole pipeline in one process, for the end-to-end suites: a private
//! nats-server, the bridge simulator, and ingest, router and sender started
//! through their real start-up paths over the test's own database.
//!
//! Traffic enters as the provider sends it: [`Pipeline::post`] makes the
//! simulator post an event to a bridge's webhook URL; [`Pipeline::post_raw`]
//! sends what the simulator never would (forged URLs, mismatched bodies)
//! straight to ingest. What comes out is read from the simulator's record of
//! sends, bridge by bridge.

use std::{net::SocketAddr, time::Duration};

use async_nats::jetstream;
use futures::StreamExt as _;
use serde_json::Value;
use sqlx::PgPool;
use switchyard_bridge_sim::{RecordedSend, SimHandle};
use switchyard_shared::{
    ids::TenantId, streams, subjects, tenants::BotKind, webhook_auth::WebhookKeys,
};

use crate::{
    fixtures,
    nats_server::NatsServer,
    services::{self, RunningService},
};

/// The server secret every webhook URL of the pipeline is derived from.
pub const WEBHOOK_SECRET: &str = "e2e-webhook-secret";

/// A tenant to create: its id and bot.
#[derive(Debug, Clone)]
pub struct TenantSpec {
    pub id: String,
    pub bot: BotKind,
    pub bot_config: Value,
}

impl TenantSpec {
    /// A tenant answered by the echo bot (`echo: <body>`).
    pub fn echo(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            bot: BotKind::Echo,
            bot_config: serde_json::json!({}),
        }
    }

    /// A tenant answered by the rules bot with `config`.
    pub fn rules(id: &str, config: Value) -> Self {
        Self {
            id: id.to_owned(),
            bot: BotKind::Rules,
            bot_config: config,
        }
    }
}

/// A running pipeline; every part stops when it is dropped.
pub struct Pipeline {
    pub sim: SimHandle,
    pub js: jetstream::Context,
    pub keys: WebhookKeys,
    /// Where ingest's webhook route listens.
    pub ingest_addr: SocketAddr,
    pub http: reqwest::Client,
    pub ingest: RunningService,
    pub router: RunningService,
    pub sender: RunningService,
    // Declared last: dropped after the services that use it.
    pub nats: NatsServer,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("ingest_addr", &self.ingest_addr)
            .finish()
    }
}

fn tenant_id(raw: &str) -> TenantId {
    TenantId::parse(raw).expect("valid tenant id")
}

impl Pipeline {
    /// Starts everything over `pool` and creates `tenants`, each with a
    /// connected bridge whose webhook URL points at this ingest.
    pub async fn start(pool: &PgPool, tenants: &[TenantSpec]) -> Self {
        Self::start_on(NatsServer::start(), false, pool, tenants, &[], &[]).await
    }

    /// [`Pipeline::start`] with extra settings for ingest only.
    pub async fn start_with_ingest_env(
        pool: &PgPool,
        tenants: &[TenantSpec],
        ingest_env: &[(&str, &str)],
    ) -> Self {
        Self::start_on(NatsServer::start(), false, pool, tenants, ingest_env, &[]).await
    }

    /// [`Pipeline::start`] with extra settings for every service (e.g. the
    /// Cloud API channel's).
    pub async fn start_with_env(
        pool: &PgPool,
        tenants: &[TenantSpec],
        common_env: &[(&str, &str)],
    ) -> Self {
        Self::start_on(NatsServer::start(), false, pool, tenants, &[], common_env).await
    }

    /// The same pipeline on a server with the shipped per-service users and
    /// permissions (`deploy/nats/permissions.conf`): ingest, router and
    /// sender each connect as their own user; [`Pipeline::js`] as the CLI's.
    pub async fn start_with_permissions(pool: &PgPool, tenants: &[TenantSpec]) -> Self {
        Self::start_on(
            NatsServer::start_with_permissions(),
            true,
            pool,
            tenants,
            &[],
            &[],
        )
        .await
    }

    async fn start_on(
        nats: NatsServer,
        own_users: bool,
        pool: &PgPool,
        tenants: &[TenantSpec],
        ingest_env: &[(&str, &str)],
        common_env: &[(&str, &str)],
    ) -> Self {
        let sim = fixtures::start_sim().await;
        let db_url = services::database_url(pool);
        let env_as = |user: &str, more: &[(&str, &str)]| {
            let credentials = crate::nats_server::service_credentials(user);
            let mut extra = vec![
                ("SWITCHYARD_WEBHOOK_SECRET", WEBHOOK_SECRET),
                ("SWITCHYARD_HTTP_ADDR", "127.0.0.1:0"),
            ];
            if own_users {
                // The fleet budget in its KV bucket, as in production.
                extra.push(("SWITCHYARD_FLEET_MODE", "shared"));
                extra.extend(credentials.iter().map(|(k, v)| (k.as_str(), v.as_str())));
            }
            extra.extend_from_slice(common_env);
            extra.extend_from_slice(more);
            fixtures::sender_env(&nats.url(), &db_url, &sim, &extra)
        };
        // Ingest first: its Service::start creates the streams.
        let (ingest, ingest_addr) = services::start_ingest(&env_as("ingest", ingest_env)).await;
        let keys = WebhookKeys::new(WEBHOOK_SECRET.into(), None);
        let public = format!("http://{ingest_addr}");
        for spec in tenants {
            let hook = keys.webhook_url(&public, &tenant_id(&spec.id));
            fixtures::add_tenant_with_bridge_posting_to(pool, &sim, &spec.id, &hook, |new| {
                new.bot_kind = spec.bot;
                new.bot_config = spec.bot_config.clone();
            })
            .await;
        }
        let router = services::start_router(&env_as("router", &[])).await;
        let sender = services::start_sender(&env_as("sender", &[])).await;
        let mut options = async_nats::ConnectOptions::new();
        if own_users {
            options = options
                .user_and_password("cli".into(), crate::nats_server::service_password("cli"));
        }
        let client = options.connect(nats.url()).await.expect("connect");
        let js = streams::context(client, Duration::from_secs(5));
        Self {
            sim,
            js,
            keys,
            ingest_addr,
            // Ingest closes an idle keep-alive connection when its header
            // timeout (5 s by default) runs out; a client that reuses one
            // at that moment gets `IncompleteMessage` (seen once in CI).
            // Idle connections are dropped well before that.
            http: reqwest::Client::builder()
                .pool_idle_timeout(Duration::from_secs(2))
                .build()
                .expect("an HTTP client"),
            ingest,
            router,
            sender,
            nats,
        }
    }

    /// The provider's side: the simulator posts `event` to `tenant`'s
    /// bridge's webhook URL (adding `customer_ref`); returns ingest's status
    /// (`None`: no answer, and why is printed).
    pub async fn post(&self, tenant: &str, event: Value) -> Option<u16> {
        let delivery = self
            .sim
            .post_webhook(tenant, event)
            .await
            .expect("the bridge exists");
        if let Some(error) = &delivery.error {
            // Shown with a failing test's output: why ingest gave no answer.
            eprintln!("{tenant}'s webhook got no answer: {error}");
        }
        delivery.status
    }

    /// Posts `body` straight to `/hook/<url_tenant>/<token>`; returns the status.
    pub async fn post_raw(&self, url_tenant: &str, token: &str, body: String) -> u16 {
        self.http
            .post(format!(
                "http://{}/hook/{url_tenant}/{token}",
                self.ingest_addr
            ))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("ingest answers")
            .status()
            .as_u16()
    }

    /// Posts `body` straight to ingest's Cloud API route with this
    /// `X-Hub-Signature-256` (as an attacker, or a redelivery, would).
    pub async fn post_cloud(&self, body: String, signature: &str) -> u16 {
        self.http
            .post(format!("http://{}/cloud", self.ingest_addr))
            .header("content-type", "application/json")
            .header("x-hub-signature-256", signature)
            .body(body)
            .send()
            .await
            .expect("ingest answers")
            .status()
            .as_u16()
    }

    /// The valid webhook token of a tenant id, whether or not the tenant exists.
    pub fn token_for(&self, tenant: &str) -> String {
        self.keys.token_for(&tenant_id(tenant))
    }

    /// Every accepted send so far, in arrival order.
    pub fn sends(&self) -> Vec<RecordedSend> {
        self.sim.sends()
    }

    /// Waits until nothing is pending or unacknowledged on any consumer of the
    /// inbound, spill and outbound streams, twice in a row: after that no
    /// further send can happen for what was accepted so far.
    pub async fn settled(&self, deadline: Duration) {
        assert!(
            settled_within(&self.js, deadline).await,
            "the pipeline did not settle within {deadline:?}"
        );
    }
}

/// Whether, within `deadline`, nothing is pending or unacknowledged on any
/// consumer of the inbound, spill and outbound streams twice in a row (see
/// [`Pipeline::settled`]).
pub async fn settled_within(js: &jetstream::Context, deadline: Duration) -> bool {
    let start = tokio::time::Instant::now();
    let mut clean_passes = 0u32;
    while start.elapsed() <= deadline {
        clean_passes = if all_consumers_idle(js).await {
            clean_passes + 1
        } else {
            0
        };
        if clean_passes >= 2 {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

async fn all_consumers_idle(js: &jetstream::Context) -> bool {
    // Upstream first: a message leaves a stream only after it reached the next one.
    for name in [
        subjects::INBOUND_STREAM,
        subjects::SPILL_STREAM,
        subjects::OUTBOUND_STREAM,
    ] {
        let Ok(stream) = js.get_stream(name).await else {
            return false;
        };
        let mut consumers = stream.consumers();
        while let Some(info) = consumers.next().await {
            match info {
                Ok(info) if info.num_pending == 0 && info.num_ack_pending == 0 => {}
                Ok(_) => return false,
                // A drained spill consumer may vanish while listed.
                Err(_) => return false,
            }
        }
    }
    true
}
