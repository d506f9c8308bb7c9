//! switchyard-ingest. Webhook intake: authenticates, validates and deduplicates WA Bridges events, then makes them durable in JetStream (or, while JetStream cannot take them, in a PostgreSQL outbox it flushes later).
//!
//! The binary (`main.rs`) only wires things up; [`run`] is what it runs, and
//! [`build`] is what tests start in-process (port 0, their own NATS and database).
//!
//! Layout, in the order a request meets it:
//! - [`routes`]: the paths and the body limit;
//! - [`handler`]: the WA Bridges webhook route as named steps;
//! - [`cloud`]: the Cloud API route (`/cloud`): handshake, signed batches split per tenant;
//! - [`verify`]: untrusted URL and body → `VerifiedWebhook` (token, signature, parse, tenant agreement);
//! - [`credentials`]: whether the tenant still accepts the token's generation (rotation, revocation), through the tenant cache;
//! - [`admission`]: each tenant's admission limit (sustained rate and burst; over it, 429);
//! - [`replay_guard`]: a signed `webhook-id` belongs to the first tenant that presented it (cross-tenant replays);
//! - [`single_flight`]: identical deliveries in flight in this process share one outcome;
//! - [`durable`]: an accepted event made durable exactly once (both routes);
//! - [`idempotency`]: the `(tenant, event id)` claim in PostgreSQL, group-committed, degradable;
//! - [`key_writer`]: the statements that write the keys, on connections of their own;
//! - [`publish`]: the JetStream publish, acked before 200, retried within its budget;
//! - [`outbox`]: where an event goes, durably, when JetStream cannot take it;
//! - [`flusher`]: publishes outboxed events later, in order per tenant, one replica per tenant;
//! - [`rejection`], [`metrics`], [`openapi`], [`settings`]: answers, counters, the API document, configuration;
//! - [`prune`]: forgets idempotency keys once their events have left the inbound stream.

pub mod admission;
pub mod cloud;
pub mod credentials;
pub mod durable;
pub mod flusher;
pub mod handler;
pub mod head_clock;
pub mod idempotency;
pub mod key_writer;
pub mod metrics;
pub mod openapi;
pub mod outbox;
pub mod prune;
pub mod publish;
pub mod refusal_log;
pub mod rejection;
pub mod replay_guard;
pub mod routes;
pub mod server;
pub mod settings;
pub mod single_flight;
pub mod verify;

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context as _;
use sqlx::PgPool;
use switchyard_shared::{ops_server::Readiness, service::Service, tenant_cache::TenantCache};
use tokio::net::TcpListener;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

pub use settings::Settings;

/// Default port of the ops server (`/healthz`, `/readyz`, `/metrics`).
pub const DEFAULT_OPS_PORT: u16 = 9101;

/// What ingest needs from the outside world. A [`Service`] provides all of it;
/// tests assemble it from their own nats-server and database.
#[derive(Debug, Clone)]
pub struct Deps {
    pub nats: async_nats::Client,
    pub db: PgPool,
    /// Cancelled to stop taking requests.
    pub shutdown: CancellationToken,
    /// Where the key writers run, so a service drains them on shutdown.
    pub tasks: TaskTracker,
    /// How long in-flight requests may finish after shutdown.
    pub shutdown_grace: Duration,
}

impl Deps {
    pub fn from_service(service: &Service) -> Self {
        Self {
            nats: service.nats.clone(),
            db: service.db.clone(),
            shutdown: service.shutdown.clone(),
            tasks: service.tasks.clone(),
            shutdown_grace: service.settings.shutdown_grace,
        }
    }
}

/// A bound, not yet serving, ingest.
#[derive(Debug)]
pub struct Ingest {
    listener: TcpListener,
    router: axum::Router,
    shutdown: CancellationToken,
    grace: Duration,
    limits: server::ServerLimits,
}

/// Binds the webhook listener and starts the key writers, the outbox writer
/// and the outbox flusher. The streams must exist already ([`Service::start`]
/// creates them).
pub async fn build(deps: Deps, settings: Settings) -> anyhow::Result<Ingest> {
    // Installs the recorder if nobody has, so in-process instances count too.
    switchyard_shared::ops_server::metrics_handle();
    crate::metrics::register();
    let listener = TcpListener::bind(settings.http_addr)
        .await
        .with_context(|| {
            format!(
                "cannot listen on SWITCHYARD_HTTP_ADDR {}",
                settings.http_addr
            )
        })?;
    let publisher = publish::Publisher::new(deps.nats.clone(), settings.publish_timeout);
    let outbox = outbox::Outbox::start(
        &deps.db.connect_options(),
        outbox::OutboxPolicy {
            max_events: settings.outbox_max_events,
            max_per_tenant: settings.outbox_max_per_tenant,
            write_timeout: settings.outbox_write_timeout,
        },
        &deps.tasks,
    );
    let flusher = flusher::Flusher::new(
        deps.db.clone(),
        publisher.clone(),
        outbox.clone(),
        flusher::FlushPolicy {
            poll: settings.outbox_poll,
            lease: settings.outbox_lease,
        },
    );
    deps.tasks.spawn(flusher.run(deps.shutdown.clone()));
    // A rotation announced on `control.tenant.<id>` reaches this replica's
    // cache at once; the TTL covers a lost announcement.
    let tenants = TenantCache::new(deps.db.clone(), settings.tenant_cache_ttl);
    deps.tasks.spawn(
        tenants
            .clone()
            .follow_changes(deps.nats.clone(), deps.shutdown.clone()),
    );
    let credentials = credentials::Credentials::new(tenants, settings.db_claim_timeout);
    let admission = admission::Admission::new(settings.admission);
    deps.tasks
        .spawn(admission.clone().shed_idle(deps.shutdown.clone()));
    let state = handler::AppState {
        verifier: verify::Verifier::new(
            settings.webhook_keys,
            settings.signing_secret,
            credentials,
        ),
        keys: idempotency::Keys::start(
            &deps.db.connect_options(),
            idempotency::ClaimPolicy {
                timeout: settings.db_claim_timeout,
                max_batch: settings.claim_batch,
                linger: settings.claim_linger,
            },
            &deps.tasks,
        ),
        admission: admission.clone(),
        replay_guard: replay_guard::ReplayGuard::new(deps.db.clone(), settings.db_claim_timeout),
        publisher,
        outbox,
        in_flight: single_flight::InFlight::default(),
        max_body_bytes: settings.max_body_bytes,
        drop_typing: settings.drop_typing,
        refusal_log: refusal_log::RefusalLog::default(),
        cloud: settings.cloud.clone().map(|cloud| cloud::CloudRoute {
            settings: cloud,
            db: deps.db.clone(),
        }),
    };
    Ok(Ingest {
        listener,
        router: server::limited(routes::router(Arc::new(state)), settings.http_limits),
        limits: settings.http_limits,
        shutdown: deps.shutdown,
        grace: deps.shutdown_grace,
    })
}

impl Ingest {
    /// Where the webhook route listens (the real port when bound to port 0).
    pub fn local_addr(&self) -> SocketAddr {
        // A bound listener always has an address; the fallback is never used.
        self.listener
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
    }

    /// Serves until the shutdown token is cancelled, then lets in-flight
    /// requests finish (at most the grace period).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let addr = self.local_addr();
        tracing::info!(http.addr = %addr, "ingest listening");
        let shutdown = self.shutdown.clone();
        let serve = server::serve(self.listener, self.router, self.limits, shutdown.clone());
        let deadline = async {
            shutdown.cancelled().await;
            tokio::time::sleep(self.grace).await;
        };
        tokio::select! {
            served = serve => served.context("ingest HTTP server failed"),
            () = deadline => {
                tracing::warn!("ingest: requests still in flight after the shutdown grace; abandoning them");
                Ok(())
            }
        }
    }
}

/// Tells `/readyz` whether ingest is serving. Ready needs NATS *or*
/// PostgreSQL, not both: with PostgreSQL gone an event is published without
/// its key (degraded), with JetStream gone it waits in the outbox, so ingest
/// answers 200 either way. Had it gone unready, the orchestrator would take
/// every replica out of the load balancer during a database outage and the
/// webhooks would meet closed doors (WA Bridges never retries one); only a
/// replica that reaches neither is taken out.
pub fn mark_serving(readiness: &Readiness, serving: bool) {
    readiness.any_of(&[
        switchyard_shared::service::READY_NATS,
        switchyard_shared::service::READY_POSTGRES,
    ]);
    readiness.set("ingest", serving);
}

/// Runs the service until its shutdown token is cancelled.
pub async fn run(service: Service, settings: Settings) -> anyhow::Result<()> {
    let ingest = build(Deps::from_service(&service), settings).await?;
    // A key outlives the signature tolerance whatever the stream's age, so a
    // replay on the same URL always meets its key (answered duplicate).
    let key_age = service
        .settings
        .nats
        .max_age
        .max(switchyard_shared::standard_webhooks::DEFAULT_TOLERANCE * 3);
    service.tasks.spawn(prune::run(
        service.db.clone(),
        key_age,
        Duration::from_secs(600),
        service.shutdown.clone(),
    ));
    mark_serving(&service.readiness, true);
    let served = ingest.run_until_stopped().await;
    if let Err(e) = &served {
        tracing::error!(error = format!("{e:#}"), "ingest stopped serving");
        service.shutdown.cancel();
    }
    mark_serving(&service.readiness, false);
    service.stopped().await;
    served
}
