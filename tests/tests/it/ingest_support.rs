//! Shared arrangement for the ingest tests: a private nats-server with the
//! real streams, the test's fresh database, and ingest started in-process on
//! port 0 through its real `build` path. Used by the `ingest_*` suites.

use std::time::Duration;

use async_nats::jetstream::{self, message::StreamMessage};
use reqwest::StatusCode;
use sqlx::PgPool;
use switchyard_ingest::{Deps, Settings};
use switchyard_shared::{
    config::{Env, NatsSettings},
    ids::TenantId,
    streams, subjects,
    webhook_auth::WebhookKeys,
};
use switchyard_tests::nats_server::NatsServer;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub const SECRET: &str = "ingest-test-secret";

/// The provider's documented `message` example, as the guide shows it.
pub const DOC_MESSAGE: &str = r#"{"event":"message","customer_ref":"cust_8842","message_id":"ACE41E0F","contact_id":"15550001234@s.whatsapp.net","phone":"15550001234","chat_id":"15550001234@s.whatsapp.net","name":"Alice","body":"Hello!","type":"text","media_type":"","is_group":false,"from_me":false,"timestamp":1777180605}"#;

/// A `message` event with the given provider id.
pub fn message(id: &str) -> String {
    format!(
        r#"{{"event":"message","message_id":"{id}","contact_id":"15550001234@s.whatsapp.net","phone":"15550001234","chat_id":"15550001234@s.whatsapp.net","name":"Alice","body":"hi","type":"text","media_type":"","is_group":false,"from_me":false,"timestamp":1777180605}}"#
    )
}

/// Ingest settings as the binary would read them: the test secret, port 0,
/// plus `vars` (later entries win).
pub fn settings(vars: &[(&str, &str)]) -> Settings {
    let mut env: Vec<(String, String)> = vec![
        ("SWITCHYARD_WEBHOOK_SECRET".into(), SECRET.into()),
        ("SWITCHYARD_HTTP_ADDR".into(), "127.0.0.1:0".into()),
    ];
    env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::from_env(&Env::from_map(env)).expect("ingest settings")
}

pub fn tenant(raw: &str) -> TenantId {
    TenantId::parse(raw).expect("valid tenant")
}

/// A running ingest with its own NATS server.
pub struct Harness {
    pub nats: NatsServer,
    pub js: jetstream::Context,
    pub base: String,
    pub keys: WebhookKeys,
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
}

impl Harness {
    /// Ingest with default settings over `db`.
    pub async fn start(db: PgPool) -> Self {
        Self::start_with(db, &[]).await
    }

    /// Ingest with extra `SWITCHYARD_*` settings over `db`.
    pub async fn start_with(db: PgPool, vars: &[(&str, &str)]) -> Self {
        let nats = NatsServer::start();
        Self::start_on(nats, db, vars).await
    }

    pub async fn start_on(nats: NatsServer, db: PgPool, vars: &[(&str, &str)]) -> Self {
        let nats_settings = NatsSettings::from_env(&Env::from_map([("NATS_URL", nats.url())]))
            .expect("nats settings");
        let client = switchyard_shared::nats::connect(&nats_settings, "ingest-test")
            .await
            .expect("connect to the test nats-server");
        let js = jetstream::new(client.clone());
        streams::ensure_streams(&js, &nats_settings)
            .await
            .expect("streams");
        let settings = settings(vars);
        let shutdown = CancellationToken::new();
        let deps = Deps {
            nats: client,
            db,
            shutdown: shutdown.clone(),
            tasks: TaskTracker::new(),
            shutdown_grace: Duration::from_secs(5),
        };
        let ingest = switchyard_ingest::build(deps, settings)
            .await
            .expect("build ingest");
        let base = format!("http://{}", ingest.local_addr());
        tokio::spawn(ingest.run_until_stopped());
        Self {
            nats,
            js,
            base,
            keys: WebhookKeys::new(SECRET.into(), None),
            http: reqwest::Client::new(),
            shutdown,
        }
    }

    /// Starts another ingest replica on the same NATS server over `db`;
    /// returns its base URL. It stops with this harness.
    pub async fn start_replica(&self, db: PgPool, vars: &[(&str, &str)]) -> String {
        let settings = settings(vars);
        let client = async_nats::connect(self.nats.url()).await.expect("connect");
        let deps = Deps {
            nats: client,
            db,
            shutdown: self.shutdown.child_token(),
            tasks: TaskTracker::new(),
            shutdown_grace: Duration::from_secs(5),
        };
        let ingest = switchyard_ingest::build(deps, settings)
            .await
            .expect("build ingest");
        let base = format!("http://{}", ingest.local_addr());
        tokio::spawn(ingest.run_until_stopped());
        base
    }

    /// The tenant's webhook URL, with its valid token.
    pub fn hook_url(&self, tenant_raw: &str) -> String {
        self.keys.webhook_url(&self.base, &tenant(tenant_raw))
    }

    /// Posts `body` to `url`; returns the status and the answer's text.
    pub async fn post_to(&self, url: &str, body: impl Into<String>) -> (StatusCode, String) {
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body.into())
            .send()
            .await
            .expect("ingest answers");
        let status = response.status();
        (status, response.text().await.unwrap_or_default())
    }

    /// Posts `body` to the tenant's valid webhook URL.
    pub async fn post(&self, tenant_raw: &str, body: impl Into<String>) -> (StatusCode, String) {
        let url = self.hook_url(tenant_raw);
        self.post_to(&url, body).await
    }

    /// How many messages the inbound stream holds.
    pub async fn inbound_count(&self) -> u64 {
        let stream = self
            .js
            .get_stream(subjects::INBOUND_STREAM)
            .await
            .expect("inbound stream");
        stream.get_info().await.expect("stream info").state.messages
    }

    /// Every message of the inbound stream, in order.
    pub async fn inbound_messages(&self) -> Vec<StreamMessage> {
        let stream = self
            .js
            .get_stream(subjects::INBOUND_STREAM)
            .await
            .expect("inbound stream");
        let last = stream
            .get_info()
            .await
            .expect("stream info")
            .state
            .last_sequence;
        let mut messages = Vec::new();
        for seq in 1..=last {
            if let Ok(m) = stream.get_raw_message(seq).await {
                messages.push(m);
            }
        }
        messages
    }

    /// The state of an idempotency key, if it exists.
    /// Waits (at most `deadline`) until the key of `(tenant, event)` is marked published.
    pub async fn until_published(db: &PgPool, tenant: &str, event: &str, deadline: Duration) {
        switchyard_tests::poll::until(
            &format!("the key of {tenant}:{event} to be marked published"),
            deadline,
            || async {
                (Self::key_state(db, tenant, event).await.as_deref() == Some("published"))
                    .then_some(())
            },
        )
        .await;
    }

    pub async fn key_state(db: &PgPool, tenant: &str, event: &str) -> Option<String> {
        sqlx::query_scalar(
            "SELECT state FROM inbound_event_keys WHERE tenant_id = $1 AND event_id = $2",
        )
        .bind(tenant)
        .bind(event)
        .fetch_optional(db)
        .await
        .expect("query keys")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}
