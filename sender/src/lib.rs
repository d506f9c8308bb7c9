//! switchyard-sender: delivers each tenant's replies on that tenant's own
//! bridge, fairly, within the provider's fleet-wide budget.
//!
//! Layout: [`settings`]; [`fair_share`] (the scheduler: who sends next);
//! [`fleet_budget`] (the budget shared by replicas); [`retry_policy`] (what a
//! send's result means); [`outbound`] (a reply lane message read once);
//! [`deliver`] (one send); [`dispatcher`] (the loop that ties them to the
//! tenant lanes); [`status`] (what this replica holds per tenant, published
//! for `switchyard status`); [`watchdog`] (probing bridges silent too long);
//! [`notify`] (posting tenant notifications to their URLs); [`fifo`] (the unfair baseline); [`metrics`] (every metric
//! name the sender emits). The lanes, the retry
//! schedule, the delivery ledger (`deliveries`: sent at most once) and the
//! WA Bridges client live in `switchyard_shared`. `main.rs` only wires things
//! up; [`run`] is what tests start in-process.

pub mod deliver;
pub mod dispatcher;
pub mod fair_share;
pub mod fifo;
pub mod fleet_budget;
pub mod metrics;
pub mod notify;
pub mod outbound;
pub mod retry_policy;
pub mod settings;
pub mod status;
pub mod watchdog;

use std::sync::Arc;

pub use settings::Settings;
use switchyard_shared::{
    lanes::{Lanes, LanesParts},
    service::Service,
    subjects::Direction,
    tenant_status::Activity,
    wabridges::WaBridgesClient,
};

use crate::{
    dispatcher::{Dispatcher, DispatcherParts},
    fair_share::{GlobalLimits, Scheduler},
    settings::{FleetMode, SchedulerMode},
};

/// Default port of the ops server (`/healthz`, `/readyz`, `/metrics`).
pub const DEFAULT_OPS_PORT: u16 = 9103;

/// Runs the sender until the service's shutdown token is cancelled.
pub async fn run(service: Service, settings: Settings) -> anyhow::Result<()> {
    crate::metrics::register();
    // Tenant-scoped work runs as the non-owner role: row-level security applies.
    let (app_db, tenants) = service.tenant_scope(settings.tenant_cache_ttl)?;
    let (fleet, limits) = match settings.fleet_mode {
        FleetMode::Shared => (
            Some(fleet_budget::FleetBudget::open(&service.jetstream, &settings.fleet).await?),
            GlobalLimits::leased(settings.max_in_flight),
        ),
        // Local mode: the watchdog's share of the budget is kept out of the
        // sends' limit (in shared mode each probe leases its call).
        FleetMode::Local => (
            None,
            GlobalLimits::local(
                settings
                    .fleet
                    .limit
                    .saturating_sub(settings.watchdog.reserved_of(settings.fleet.limit))
                    .max(1),
                settings.fleet.limit.div_ceil(20).max(1),
                settings.max_in_flight,
            ),
        ),
    };
    let deliverer = Arc::new(deliver::Deliverer {
        steps: switchyard_shared::deliveries::SendSteps::start(
            &app_db,
            service
                .settings
                .database
                .step_linger_or(switchyard_shared::group_commit::Shape::WORKER_STEP.linger),
        ),
        db: app_db,
        tenants: tenants.clone(),
        client: WaBridgesClient::new(settings.wa.clone())?,
        cloud: Arc::new(deliver::cloud::CloudSending {
            client: switchyard_shared::cloud_api::CloudClient::new(&settings.cloud_api)?,
            keys: settings.cloud_token_keys.clone(),
            window: settings.cloud_window,
        }),
        js: service.jetstream.clone(),
        policy: settings.retry.clone(),
        ledger: Arc::new(deliver::ledger::SendLedger::new(
            &settings.replica_id,
            &settings.retry,
        )),
        activity: Activity::new(),
        trouble: Arc::default(),
    });
    if settings.scheduler == SchedulerMode::Fifo {
        tracing::warn!("running the fifo baseline scheduler: no fairness between tenants");
        let (js, shutdown) = (service.jetstream.clone(), service.shutdown.clone());
        service.tasks.spawn(async move {
            if let Err(e) = fifo::run(
                js,
                deliverer,
                settings.fleet.limit,
                settings.max_in_flight,
                shutdown,
            )
            .await
            {
                tracing::error!(error = %e, "fifo baseline stopped");
            }
        });
        service.readiness.set("lanes", true);
        service.stopped().await;
        return Ok(());
    }
    let live = LanesParts {
        js: service.jetstream.clone(),
        direction: Direction::Outbound,
        partitions: service.settings.nats.partitions,
        settings: settings.lanes.clone(),
        replica_id: settings.replica_id.clone(),
        shutdown: service.shutdown.clone(),
        tasks: service.tasks.clone(),
    };
    // The bulk lanes (replays, recovery): same partitions and settings, read
    // by a second set of partition consumers on the BULK stream.
    let bulk = LanesParts {
        direction: Direction::Bulk,
        ..live.clone()
    };
    // Tenant notifications: their own lanes over NOTIFY (one partition).
    let notify_lanes = LanesParts {
        direction: Direction::Notify,
        partitions: switchyard_shared::subjects::NOTIFY_PARTITIONS,
        ..live.clone()
    };
    let (status_tx, status_rx) = tokio::sync::watch::channel(Vec::new());
    let work = Lanes::start(live).await?;
    let bulk_work = Lanes::start(bulk).await?;
    notify::start(notify_lanes, deliverer.db.clone(), settings.notify.clone())?;
    let activity = deliverer.activity.clone();
    service.tasks.spawn(watchdog::run(watchdog::WatchdogParts {
        settings: settings.watchdog,
        js: service.jetstream.clone(),
        nats: service.nats.clone(),
        db: deliverer.db.clone(),
        tenants: tenants.clone(),
        client: deliverer.client.clone(),
        fleet: fleet.clone(),
        fleet_config: settings.fleet.clone(),
        owned: work.share(),
        shutdown: service.shutdown.clone(),
    }));
    let dispatcher = Dispatcher::new(DispatcherParts {
        scheduler: Scheduler::new(limits),
        deliverer,
        fleet,
        fleet_share: work.share(),
        tenants,
        refresh_every: settings.tenant_refresh,
        cloud_health_every: settings.cloud_health_interval,
        cloud_health_concurrency: settings.cloud_health_concurrency,
        flaps: settings.flaps,
        fleet_per_minute: settings.fleet.limit,
        warmup: settings.warmup,
        shutdown: service.shutdown.clone(),
        tasks: service.tasks.clone(),
        status: dispatcher::StatusFeed {
            replica: settings.replica_id.clone(),
            activity,
            tx: status_tx,
        },
        status_every: settings.status.interval,
    });
    service.tasks.spawn(status::publish(
        service.jetstream.clone(),
        service.settings.nats.replicas,
        settings.status,
        status_rx,
        service.shutdown.clone(),
    ));
    // The forwarders wait when the loop's bounded channel is full; the loop
    // never waits on them (see `dispatcher::events`).
    let events = dispatcher.events();
    service
        .tasks
        .spawn(dispatcher::forward_work(work, events.clone()));
    service
        .tasks
        .spawn(dispatcher::forward_work(bulk_work, events.clone()));
    service.tasks.spawn(dispatcher::follow_operator_resumes(
        service.nats.clone(),
        events.clone(),
        service.shutdown.clone(),
    ));
    service.tasks.spawn(dispatcher::follow_tenant_changes(
        service.nats.clone(),
        events.clone(),
        service.shutdown.clone(),
    ));
    service.tasks.spawn(dispatcher::follow_sending_holds(
        service.nats.clone(),
        events.clone(),
        service.shutdown.clone(),
    ));
    service.tasks.spawn(dispatcher::follow_bridge_states(
        service.nats.clone(),
        events,
        service.shutdown.clone(),
    ));
    service.tasks.spawn(dispatcher.run());
    service.readiness.set("lanes", true);
    service.stopped().await;
    Ok(())
}
