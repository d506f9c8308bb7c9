//! switchyard-router: tenant lanes over the inbound stream; resolves each
//! event's tenant and runs that tenant's bot, publishing its replies to
//! `outbound.<tenant>`.
//!
//! Layout: [`settings`]; [`runner`] (one worker per tenant lane, outcomes to
//! ack / in-place retry / backpressure / dead letter), [`inbound`] (a lane
//! message read once) and [`gather`] (a chat's burst as one
//! turn); [`handler`] (the per-event step), [`backpressure`] (trouble in our
//! own infrastructure: whose fault an error is, and slowing intake) and
//! [`retries`] (how long it waits before an in-place retry); [`status`] (what
//! this replica holds per tenant, published for `switchyard status`); [`takeover`] (what a `from_me`
//! message means); [`conversations`]; [`bots`] (their connect-time guard on
//! tenants' bot URLs is `switchyard_shared::guarded_resolver`); [`replies`]; [`metrics`] (every
//! metric name the router emits). The lanes and the
//! tenant cache live in `switchyard_shared` (`lanes`, `tenant_cache`), shared
//! with the sender. `main.rs` only wires things up; [`run`] is what tests
//! start in-process.

pub mod backpressure;
pub mod bots;
mod cloud_notices;
pub mod conversations;
pub mod gather;
pub mod handler;
pub mod inbound;
pub mod metrics;
pub mod replies;
pub mod retries;
pub mod runner;
pub mod settings;
pub mod spare;
pub mod status;
pub mod takeover;
pub mod turn_steps;

use std::sync::Arc;

pub use settings::Settings;
use switchyard_shared::{
    lanes::{Lanes, LanesParts},
    service::Service,
    subjects::Direction,
    tenant_status::Activity,
};

use crate::runner::RunnerSettings;

/// Default port of the ops server (`/healthz`, `/readyz`, `/metrics`).
pub const DEFAULT_OPS_PORT: u16 = 9102;

/// Runs the router until the service's shutdown token is cancelled.
pub async fn run(service: Service, settings: Settings) -> anyhow::Result<()> {
    crate::metrics::register();
    // Tenant-scoped work runs as the non-owner role: row-level security applies.
    let (app_db, tenants) = service.tenant_scope(settings.tenant_cache_ttl)?;
    let work = Lanes::start(LanesParts {
        js: service.jetstream.clone(),
        direction: Direction::Inbound,
        partitions: service.settings.nats.partitions,
        settings: settings.lanes.clone(),
        replica_id: settings.replica_id.clone(),
        shutdown: service.shutdown.clone(),
        tasks: service.tasks.clone(),
    })
    .await?;
    let activity = Activity::new();
    service.tasks.spawn(status::publish(
        service.jetstream.clone(),
        service.settings.nats.replicas,
        settings.status,
        activity.clone(),
        settings.replica_id.clone(),
        service.shutdown.clone(),
    ));
    let retries = retries::Retries::from_base(settings.retry_delay);
    let spare = spare::SparePool::new(settings.backlog_spare_chats);
    let step_linger = settings.step_linger(&service.settings.database);
    if settings.backlog_spare_chats > 0 && !step_linger.is_zero() {
        tracing::warn!(
            step_linger_ms = step_linger.as_secs_f64() * 1e3,
            spare_chats = settings.backlog_spare_chats,
            "SWITCHYARD_DB_STEP_LINGER is set above 0 with SWITCHYARD_BACKLOG_SPARE_CHATS on: \
             every turn waits for company twice, which bounds a backlog's extra chats \
             (docs/benchmarks/router.md); unset it or set 0ms"
        );
    }
    service
        .tasks
        .spawn(Arc::clone(&spare).run(service.shutdown.clone()));
    let handler = Arc::new(handler::InboundHandler {
        js: service.jetstream.clone(),
        nats: service.nats.clone(),
        steps: turn_steps::TurnSteps::start(&app_db, step_linger),
        db: app_db,
        tenants,
        bots: bots::Bots::new(
            settings.bots.clone(),
            bots::budget::BotBudget::new(settings.bot_concurrency_per_tenant),
        )?,
        retries,
        echo_wait: settings.echo_wait,
        cloud_window: settings.cloud_window,
        // The runner dead-letters past max_deliveries: decide before that.
        echo_attempts: settings.lanes.max_deliveries.saturating_sub(1).max(1),
        refused_log: Default::default(),
        spare: Arc::clone(&spare),
    });
    service.tasks.spawn(runner::run(
        handler,
        service.jetstream.clone(),
        work,
        RunnerSettings {
            chats_in_flight: settings.chats_in_flight,
            max_attempts: settings.lanes.max_deliveries,
            max_redeliveries: settings.max_redeliveries,
            backpressure: retries.backpressure,
            backlog_chats_in_flight: settings.backlog_chats_in_flight,
            spare,
        },
        activity,
        service.shutdown.clone(),
        service.tasks.clone(),
    ));
    service.readiness.set("lanes", true);
    service.stopped().await;
    Ok(())
}
