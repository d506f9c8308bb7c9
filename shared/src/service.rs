//! The start-up and shutdown every binary shares, so `main` only wires things.
//!
//! [`Service::start`] installs the TLS provider, connects to NATS (refusing old
//! servers), creates or updates the streams, opens the PostgreSQL pool, and
//! serves `/healthz`, `/readyz` and `/metrics`. Tests call it in-process with
//! port 0; the binaries call [`run_main`], which adds signal handling and exit codes.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use async_nats::jetstream;
use sqlx::PgPool;
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use crate::{
    config::{CommonSettings, Env},
    db, nats, ops_server,
    ops_server::Readiness,
    shutdown, streams, telemetry,
};

/// Connections and lifecycle handles of one running service.
#[derive(Debug, Clone)]
pub struct Service {
    pub name: &'static str,
    pub settings: CommonSettings,
    pub nats: async_nats::Client,
    pub jetstream: jetstream::Context,
    pub db: PgPool,
    pub readiness: Readiness,
    /// The pools [`Service::tenant_scope`] made, closed with `db` once the
    /// tasks have drained.
    scoped_pools: Arc<Mutex<Vec<PgPool>>>,
    /// Cancelled on SIGTERM/SIGINT (or by a test): stop taking new work.
    pub shutdown: CancellationToken,
    /// Every long-running task of the service, drained on shutdown.
    pub tasks: TaskTracker,
    ops_addr: SocketAddr,
}

impl Service {
    /// Connects everything and starts the ops server. Fails fast, with the
    /// reason, when NATS is unreachable or too old.
    pub async fn start(
        name: &'static str,
        settings: CommonSettings,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Self> {
        crate::tls::install_crypto_provider();
        crate::tenant_metrics::install(settings.metrics_tenant_cap);
        crate::metrics::register();
        let client = nats::connect(&settings.nats, name).await?;
        let js = streams::context(client.clone(), Duration::from_secs(5));
        streams::ensure_streams(&js, &settings.nats).await?;
        let pool = db::pool(&settings.database, name).context("invalid DATABASE_URL")?;

        let readiness = Readiness::default();
        let tasks = TaskTracker::new();
        let listener = tokio::net::TcpListener::bind(settings.ops_addr)
            .await
            .with_context(|| {
                format!("cannot listen on SWITCHYARD_OPS_ADDR {}", settings.ops_addr)
            })?;
        let ops_addr = listener.local_addr()?;
        tasks.spawn(ops_server::serve(
            listener,
            ops_server::router(readiness.clone()),
            shutdown.clone(),
        ));
        tasks.spawn(crate::db_login::check_once_reachable(
            name,
            pool.clone(),
            Duration::from_secs(1),
            shutdown.clone(),
        ));
        tasks.spawn(crate::runtime_probe::run(shutdown.clone()));
        tasks.spawn(probe_dependencies(
            client.clone(),
            pool.clone(),
            readiness.clone(),
            shutdown.clone(),
        ));
        tracing::info!(service = name, ops.addr = %ops_addr, "service started");
        Ok(Self {
            name,
            settings,
            nats: client,
            jetstream: js,
            db: pool,
            readiness,
            scoped_pools: Arc::default(),
            shutdown,
            tasks,
            ops_addr,
        })
    }

    /// Where `/healthz`, `/readyz` and `/metrics` are served.
    pub fn ops_addr(&self) -> SocketAddr {
        self.ops_addr
    }

    /// Waits for shutdown, then drains tracked tasks within the grace period
    /// and flushes NATS. Returns whether everything drained in time.
    pub async fn stopped(self) -> bool {
        self.shutdown.cancelled().await;
        let drained = shutdown::drain(&self.tasks, self.settings.shutdown_grace).await;
        let _ = self.nats.flush().await;
        // Closed, not dropped with the process: PostgreSQL then sees each
        // connection end cleanly instead of logging an unexpected EOF.
        let scoped = std::mem::take(&mut *lock(&self.scoped_pools));
        for pool in scoped {
            pool.close().await;
        }
        self.db.close().await;
        tracing::info!(service = self.name, drained, "service stopped");
        drained
    }
}

/// The readiness check of the NATS connection ([`probe_dependencies`]).
pub const READY_NATS: &str = "nats";
/// The readiness check of PostgreSQL answering ([`probe_dependencies`]).
pub const READY_POSTGRES: &str = "postgres";

/// Keeps `/readyz` honest: NATS connected and PostgreSQL answering.
async fn probe_dependencies(
    client: async_nats::Client,
    pool: PgPool,
    readiness: Readiness,
    shutdown: CancellationToken,
) {
    loop {
        let nats_up = client.connection_state() == async_nats::connection::State::Connected;
        readiness.set(READY_NATS, nats_up);
        let db_up = tokio::time::timeout(
            Duration::from_secs(2),
            sqlx::query("SELECT 1").execute(&pool),
        )
        .await
        .is_ok_and(|r| r.is_ok());
        readiness.set(READY_POSTGRES, db_up);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// What a service binary was asked to do by its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Mode {
    /// No arguments: run the service.
    Run,
    /// `--version` / `-V`: print the version line.
    Version,
    /// `--probe`: exit 0 if this service's own `/readyz` answers 200, else 1.
    Probe,
    /// `--help` / `-h`.
    Help,
    /// Anything else.
    Unknown(String),
}

impl Mode {
    fn from_args(mut args: impl Iterator<Item = String>) -> Self {
        let Some(first) = args.next() else {
            return Mode::Run;
        };
        if let Some(extra) = args.next() {
            return Mode::Unknown(extra);
        }
        match first.as_str() {
            "--version" | "-V" => Mode::Version,
            "--probe" => Mode::Probe,
            "--help" | "-h" => Mode::Help,
            _ => Mode::Unknown(first),
        }
    }
}

fn usage(name: &str) -> String {
    format!(
        "{name}: configured by environment variables only (docs/configuration.md)\n\n\
         usage: {name}            run the service\n       \
         {name} --probe    exit 0 if this service's /readyz (on SWITCHYARD_OPS_ADDR) answers 200, else 1\n       \
         {name} --version  print the version and the git commit\n"
    )
}

fn print_stdout(text: &str) -> std::process::ExitCode {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{text}") {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(_) => std::process::ExitCode::FAILURE,
    }
}

/// `--probe`: GET `/readyz` on the ops address this service would listen on
/// (`SWITCHYARD_OPS_ADDR`, else its default port; `0.0.0.0` is probed on
/// loopback). Exit 0 when it answers 200, else 1 with the reason on stderr.
async fn probe(name: &str, env: &Env, default_ops_port: u16) -> std::process::ExitCode {
    let listen = match env.parse(
        "SWITCHYARD_OPS_ADDR",
        SocketAddr::from(([127, 0, 0, 1], default_ops_port)),
    ) {
        Ok(addr) => addr,
        Err(e) => {
            eprintln!("{name} --probe: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let target = crate::probe::target(listen);
    match crate::probe::readyz(target, crate::probe::PROBE_TIMEOUT).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(reason) => {
            eprintln!("{name} --probe: not ready: {reason}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// A binary's `main`: reads the environment, sets up logs and signals, starts
/// the shared [`Service`], runs `app` on it, and maps failures to exit code 1
/// with the reason on stderr (2 for bad settings or arguments).
///
/// The command line takes no arguments but `--version` (the `version` line,
/// from `switchyard_build_info::version!()`), `--probe` (this service's own
/// `/readyz`, exit 0 or 1) and `--help`.
pub async fn run_main<S, F, Fut>(
    name: &'static str,
    version: &'static str,
    default_ops_port: u16,
    load_app_settings: impl FnOnce(&Env) -> anyhow::Result<S>,
    app: F,
) -> std::process::ExitCode
where
    F: FnOnce(Service, S) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let env = Env::from_process();
    match Mode::from_args(std::env::args().skip(1)) {
        Mode::Run => {}
        Mode::Version => return print_stdout(&format!("{name} {version}")),
        Mode::Help => return print_stdout(&usage(name)),
        Mode::Probe => return probe(name, &env, default_ops_port).await,
        Mode::Unknown(arg) => {
            eprintln!("{name}: unexpected argument {arg:?}\n\n{}", usage(name));
            return std::process::ExitCode::from(2);
        }
    }
    let loaded = CommonSettings::from_env(&env, default_ops_port)
        .map_err(anyhow::Error::from)
        .and_then(|common| Ok((common, load_app_settings(&env)?)));
    let (common, app_settings) = match loaded {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("{name}: {e:#}");
            return std::process::ExitCode::from(2);
        }
    };
    let telemetry = telemetry::init(name, common.log_format, &common.log_filter, &common.traces);
    let token = CancellationToken::new();
    shutdown::cancel_on_signal(token.clone());
    let result = async {
        let service = Service::start(name, common, token).await?;
        app(service, app_settings).await
    }
    .await;
    let code = match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = format!("{e:#}"), "{name} failed");
            eprintln!("{name}: {e:#}");
            std::process::ExitCode::FAILURE
        }
    };
    telemetry.shutdown().await;
    code
}

impl Service {
    /// The pieces every tenant-scoped worker (router, sender) needs: a pool
    /// that acts as the non-owner role (row-level security applies), and a
    /// tenant cache on it that follows the operators' change announcements.
    pub fn tenant_scope(
        &self,
        cache_ttl: Duration,
    ) -> anyhow::Result<(PgPool, crate::tenant_cache::TenantCache)> {
        let app_db = db::pool_with_role(
            &self.settings.database,
            db::APP_ROLE,
            &format!("{}-app", self.name),
        )
        .context("invalid DATABASE_URL")?;
        lock(&self.scoped_pools).push(app_db.clone());
        let tenants = crate::tenant_cache::TenantCache::new(app_db.clone(), cache_ttl);
        self.tasks.spawn(
            tenants
                .clone()
                .follow_changes(self.nats.clone(), self.shutdown.clone()),
        );
        Ok((app_db, tenants))
    }
}

/// The pool list's lock; a panic elsewhere while it was held leaves a list
/// that is still whole.
fn lock(pools: &Mutex<Vec<PgPool>>) -> std::sync::MutexGuard<'_, Vec<PgPool>> {
    pools
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[cfg(test)]
mod tests {
    use super::Mode;

    fn mode(args: &[&str]) -> Mode {
        Mode::from_args(args.iter().map(|a| (*a).to_owned()))
    }

    #[test]
    fn the_command_line_knows_version_probe_and_help_only() {
        assert_eq!(mode(&[]), Mode::Run);
        assert_eq!(mode(&["--version"]), Mode::Version);
        assert_eq!(mode(&["-V"]), Mode::Version);
        assert_eq!(mode(&["--probe"]), Mode::Probe);
        assert_eq!(mode(&["--help"]), Mode::Help);
        assert_eq!(mode(&["--port"]), Mode::Unknown("--port".to_owned()));
        assert_eq!(
            mode(&["--probe", "--version"]),
            Mode::Unknown("--version".to_owned())
        );
    }
}
