//! Starting Switchyard's services in-process, on port 0, against the test's
//! own nats-server and database, exactly through their real start-up path
//! (`Service::start` + the crate's `run`).

use std::{net::SocketAddr, time::Duration};

use sqlx::PgPool;
use switchyard_shared::{
    config::{CommonSettings, Env},
    service::Service,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// The URL of the database behind a `#[sqlx::test]` pool.
pub fn database_url(pool: &PgPool) -> String {
    let base = crate::lifecycle::database_url();
    let name = pool
        .connect_options()
        .get_database()
        .unwrap_or("postgres")
        .to_owned();
    crate::scratch_db::with_database(&base, &name).expect("DATABASE_URL is a URL")
}

/// A service running in this process; stopped (gracefully) on drop.
pub struct RunningService {
    pub name: &'static str,
    pub shutdown: CancellationToken,
    pub ops_addr: SocketAddr,
    handle: Option<JoinHandle<anyhow::Result<()>>>,
}

impl std::fmt::Debug for RunningService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningService")
            .field("name", &self.name)
            .finish()
    }
}

impl RunningService {
    /// Cancels the service and waits for its drain to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(handle) = self.handle.take() {
            let _ = tokio::time::timeout(Duration::from_secs(20), handle).await;
        }
    }

    /// Stops the service without a graceful hand-over, as a crash would
    /// (its tasks are aborted; its pins and memberships are left to time out).
    pub fn crash(mut self) {
        if let Some(handle) = self.handle.take() {
            handle.abort();
        }
    }
}

impl Drop for RunningService {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Environment for a service under test: the given NATS and database, an
/// ephemeral ops port, and `extra` on top (a later value wins; an empty one
/// counts as unset).
///
/// The tests' bot endpoints are axum servers on `127.0.0.1` over plain
/// http, which the router's egress guard refuses by default; this
/// environment opens exactly that, as development: `SWITCHYARD_BOT_ALLOW_HTTP`
/// and loopback in `SWITCHYARD_BOT_EGRESS_ALLOW`. A suite that tests the
/// guard's production defaults sets both to `""` in `extra`.
pub fn env(nats_url: &str, database_url: &str, extra: &[(&str, &str)]) -> Env {
    let mut vars: Vec<(String, String)> = vec![
        ("NATS_URL".into(), nats_url.into()),
        ("DATABASE_URL".into(), database_url.into()),
        ("SWITCHYARD_OPS_ADDR".into(), "127.0.0.1:0".into()),
        ("SWITCHYARD_PARTITIONS".into(), "4".into()),
        ("SWITCHYARD_LOG".into(), "warn".into()),
        ("SWITCHYARD_BOT_ALLOW_HTTP".into(), "true".into()),
        (
            "SWITCHYARD_BOT_EGRESS_ALLOW".into(),
            "127.0.0.0/8,::1".into(),
        ),
    ];
    vars.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Env::from_map(vars)
}

async fn start_with<S, F, Fut>(
    name: &'static str,
    env: &Env,
    app_settings: S,
    run: F,
) -> RunningService
where
    S: Send + 'static,
    F: FnOnce(Service, S) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let common = CommonSettings::from_env(env, 0).expect("common settings");
    let shutdown = CancellationToken::new();
    let service = Service::start(name, common, shutdown.clone())
        .await
        .expect("service start");
    let ops_addr = service.ops_addr();
    let handle = tokio::spawn(run(service, app_settings));
    RunningService {
        name,
        shutdown,
        ops_addr,
        handle: Some(handle),
    }
}

/// Starts a sender replica.
pub async fn start_sender(env: &Env) -> RunningService {
    let settings = switchyard_sender::Settings::from_env(env).expect("sender settings");
    start_with("switchyard-sender", env, settings, switchyard_sender::run).await
}

/// Starts a router replica.
pub async fn start_router(env: &Env) -> RunningService {
    let settings = switchyard_router::Settings::from_env(env).expect("router settings");
    start_with("switchyard-router", env, settings, switchyard_router::run).await
}

/// Starts an ingest replica; returns it and the address its webhook route
/// listens on. `env` must set `SWITCHYARD_WEBHOOK_SECRET` and
/// `SWITCHYARD_HTTP_ADDR=127.0.0.1:0`. Same steps as `switchyard_ingest::run`,
/// split so the bound address can be read before serving starts.
pub async fn start_ingest(env: &Env) -> (RunningService, SocketAddr) {
    let settings = switchyard_ingest::Settings::from_env(env).expect("ingest settings");
    let common = CommonSettings::from_env(env, 0).expect("common settings");
    let shutdown = CancellationToken::new();
    let service = Service::start("switchyard-ingest", common, shutdown.clone())
        .await
        .expect("service start");
    let ops_addr = service.ops_addr();
    let ingest =
        switchyard_ingest::build(switchyard_ingest::Deps::from_service(&service), settings)
            .await
            .expect("build ingest");
    let http_addr = ingest.local_addr();
    let handle = tokio::spawn(async move {
        switchyard_ingest::mark_serving(&service.readiness, true);
        let served = ingest.run_until_stopped().await;
        switchyard_ingest::mark_serving(&service.readiness, false);
        service.stopped().await;
        served
    });
    let running = RunningService {
        name: "switchyard-ingest",
        shutdown,
        ops_addr,
        handle: Some(handle),
    };
    (running, http_addr)
}
