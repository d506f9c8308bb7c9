//! Shared arrangement for the `whatsapp_*` tests: a private nats-server with
//! the real streams, the bridge simulator, ingest (so the simulator's echoes,
//! `connected` and `disconnected` webhooks come in as the provider's would),
//! and the router and sender started through their real start-up paths.
//! Used by the `whatsapp_*` suites.

use std::time::Duration;

use sqlx::PgPool;
use switchyard_bridge_sim::{RecordedSend, SimHandle, events::TextMessage};
use switchyard_shared::{
    config::{Env, NatsSettings},
    ids::TenantId,
    streams,
    tenants::{self, BotKind, WhatsAppSettings},
    webhook_auth::WebhookKeys,
};
use switchyard_tests::{
    fixtures,
    nats_server::NatsServer,
    poll,
    services::{self, RunningService},
    traffic,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub const SECRET: &str = "whatsapp-test-secret";
pub const WITHIN: Duration = Duration::from_secs(20);

pub fn t(raw: &str) -> TenantId {
    TenantId::parse(raw).unwrap()
}

/// The pieces every test needs; services are started by the test.
pub struct Rig {
    pub pool: PgPool,
    pub sim: SimHandle,
    pub js: async_nats::jetstream::Context,
    pub db_url: String,
    ingest_stop: CancellationToken,
    // Last: dropped after everything that talks to it.
    pub nats: NatsServer,
}

impl Drop for Rig {
    fn drop(&mut self) {
        self.ingest_stop.cancel();
    }
}

impl Rig {
    /// Streams, simulator, ingest, and `tenants` (echo bot, generous limits,
    /// a connected bridge whose webhook URL points at this ingest).
    pub async fn start(pool: &PgPool, tenants: &[&str]) -> Self {
        let nats = NatsServer::start();
        let sim = fixtures::start_sim().await;
        let client = async_nats::connect(nats.url()).await.unwrap();
        let js = streams::context(client.clone(), Duration::from_secs(5));
        let nats_settings = NatsSettings::from_env(&Env::from_map([
            ("NATS_URL", nats.url()),
            ("SWITCHYARD_PARTITIONS", "4".to_owned()),
        ]))
        .unwrap();
        streams::ensure_streams(&js, &nats_settings).await.unwrap();

        let ingest_stop = CancellationToken::new();
        let ingest = switchyard_ingest::build(
            switchyard_ingest::Deps {
                nats: client,
                db: pool.clone(),
                shutdown: ingest_stop.clone(),
                tasks: TaskTracker::new(),
                shutdown_grace: Duration::from_secs(2),
            },
            switchyard_ingest::Settings::from_env(&Env::from_map([
                ("SWITCHYARD_WEBHOOK_SECRET", SECRET),
                ("SWITCHYARD_HTTP_ADDR", "127.0.0.1:0"),
            ]))
            .unwrap(),
        )
        .await
        .unwrap();
        let base = format!("http://{}", ingest.local_addr());
        tokio::spawn(ingest.run_until_stopped());
        let keys = WebhookKeys::new(SECRET.into(), None);

        for id in tenants {
            let hook = keys.webhook_url(&base, &t(id));
            fixtures::add_tenant_with_bridge_posting_to(pool, &sim, id, &hook, |new| {
                new.bot_kind = BotKind::Echo;
            })
            .await;
        }
        Self {
            pool: pool.clone(),
            sim,
            js,
            db_url: services::database_url(pool),
            ingest_stop,
            nats,
        }
    }

    /// Environment for router and sender (the shared sender environment, with
    /// the router's tenant cache and retries fast too) plus `extra`.
    pub fn env(&self, extra: &[(&str, &str)]) -> Env {
        let mut vars = vec![
            ("SWITCHYARD_TENANT_CACHE_TTL", "500ms"),
            ("SWITCHYARD_RETRY_DELAY", "50ms"),
        ];
        vars.extend_from_slice(extra);
        fixtures::sender_env(&self.nats.url(), &self.db_url, &self.sim, &vars)
    }

    pub async fn router(&self, extra: &[(&str, &str)]) -> RunningService {
        services::start_router(&self.env(extra)).await
    }

    pub async fn sender(&self, extra: &[(&str, &str)]) -> RunningService {
        services::start_sender(&self.env(extra)).await
    }

    /// Changes a tenant's WhatsApp settings.
    pub async fn set_whatsapp(&self, tenant: &str, change: impl FnOnce(&mut WhatsAppSettings)) {
        let mut row = tenants::fetch(&self.pool, &t(tenant))
            .await
            .unwrap()
            .unwrap();
        change(&mut row.whatsapp);
        assert!(
            tenants::set_whatsapp(&self.pool, &t(tenant), &row.whatsapp)
                .await
                .unwrap()
        );
    }

    /// A customer (`phone`, digits) writes to `tenant`'s number, through the
    /// simulator, ingest and the router, as the provider would post it.
    pub async fn customer_says(&self, tenant: &str, phone: &str, body: &str) {
        let event = TextMessage::new(phone, body).to_json();
        let delivery = self.sim.post_webhook(tenant, event).await.unwrap();
        assert_eq!(delivery.status, Some(200), "{delivery:?}");
    }

    /// A person on `tenant`'s phone answers `phone` by hand (a `from_me`
    /// message whose id no send of ours ever had).
    pub async fn human_answers(&self, tenant: &str, phone: &str, body: &str) {
        let mut message = TextMessage::new(phone, body);
        message.from_me = true;
        let delivery = self
            .sim
            .post_webhook(tenant, message.to_json())
            .await
            .unwrap();
        assert_eq!(delivery.status, Some(200), "{delivery:?}");
    }

    /// Accepted sends of one bridge.
    pub fn sends_for(&self, tenant: &str) -> Vec<RecordedSend> {
        self.sim.sends_for(tenant)
    }

    /// Publishes reply parts as the router would, for a chat of `tenant`.
    pub async fn replies(&self, tenant: &str, prefix: &str, chat: &str, n: usize) {
        let bodies = (0..n).map(|i| format!("{tenant}:{prefix}:{i:05}"));
        traffic::publish_replies(&self.js, &t(tenant), prefix, chat, bodies).await;
    }

    /// Waits until a counter of `service` reaches `at_least`.
    pub async fn counter_reaches(
        &self,
        service: &RunningService,
        name: &str,
        labels: &str,
        at_least: f64,
    ) -> f64 {
        poll::until(
            &format!("{name}{{{labels}}} >= {at_least}"),
            WITHIN,
            || async {
                let v = traffic::metric(service.ops_addr, name, labels).await;
                (v >= at_least).then_some(v)
            },
        )
        .await
    }
}

/// Bodies per chat, asserting no body was sent twice.
pub fn once_each(sends: &[RecordedSend]) -> Vec<String> {
    let bodies: Vec<String> = sends.iter().map(|s| s.body.clone()).collect();
    let mut unique = bodies.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        unique.len(),
        bodies.len(),
        "a body was sent twice: {bodies:?}"
    );
    bodies
}
