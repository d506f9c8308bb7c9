//! A local deployment for one run: its own nats-server and PostgreSQL
//! database, the bridge simulator (and, when a tenant is on the Cloud API,
//! the Cloud simulator: [`CloudSide`]) in this process, and ingest, router and
//! sender as child processes of the real binaries (so each one's CPU and
//! memory can be read from /proc). Everything listens on loopback; the
//! database is dropped and the processes are killed when the run ends.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use anyhow::{Context as _, bail};
use sqlx::{Connection as _, Executor as _, PgConnection, PgPool};
use switchyard_bridge_sim::{Limits, RecordedSend, SimConfig, SimHandle};
use switchyard_shared::webhook_auth::WebhookKeys;

use crate::{
    cloud::CloudSide,
    inlet::Inlet,
    provision,
    scenario::Scenario,
    sim_control::SimControl,
    stack::{self, Counters, Stack},
    stages::StageTotals,
};

const WEBHOOK_SECRET: &str = "loadtest-webhook-secret";
const API_KEY: &str = "sk_loadtest";

/// Where the binaries and the admin database are.
#[derive(Debug, Clone)]
pub struct Setup {
    pub bin_dir: PathBuf,
    pub nats_server: PathBuf,
    pub admin_database_url: String,
    pub work_dir: PathBuf,
    /// Settings for every service, after the tool's own (`--service-env`).
    pub service_env: Vec<(String, String)>,
    /// Routers and senders started (`--replicas`); ingest is one.
    pub replicas: usize,
}

/// The name a service's `n`th replica (from 1) goes by in the reports: the
/// binary's name, then `-2`, `-3`… (the reports sum a party by prefix).
fn replica_name(binary: &str, n: usize) -> String {
    if n <= 1 {
        binary.to_owned()
    } else {
        format!("{binary}-{n}")
    }
}

/// A child process we started; killed on drop.
#[derive(Debug)]
pub struct Proc {
    pub name: String,
    child: Child,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running deployment.
pub struct Deployment {
    sim: SimHandle,
    /// The Cloud simulator, when a tenant is on the Cloud API.
    cloud: Option<CloudSide>,
    /// Where each tenant's events go, in the scenario's order.
    inlets: Vec<Inlet>,
    /// ingest, router, sender, nats-server.
    procs: Vec<Proc>,
    /// The router's and the sender's ops endpoints (`/metrics`).
    ops: Vec<String>,
    /// Every service's ops endpoint, ingest's too (stage timings).
    all_ops: Vec<String>,
    /// nats-server's monitoring endpoint.
    nats_monitor: String,
    pool: PgPool,
    admin_url: String,
    database: String,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

async fn wait_ready(what: &str, url: &str, deadline: Duration) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let start = std::time::Instant::now();
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if start.elapsed() > deadline {
            bail!("{what} was not ready within {deadline:?} ({url})");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn spawn(
    name: String,
    program: &Path,
    args: &[String],
    env: &[(String, String)],
    log_dir: &Path,
) -> anyhow::Result<Proc> {
    let log = std::fs::File::create(log_dir.join(format!("{name}.log")))?;
    let child = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .spawn()
        .with_context(|| format!("cannot start {}", program.display()))?;
    Ok(Proc { name, child })
}

impl Deployment {
    /// Starts everything for `scenario` with the sender's `scheduler` (`fair` or `fifo`).
    pub async fn start(
        setup: &Setup,
        scenario: &Scenario,
        scheduler: &str,
    ) -> anyhow::Result<Self> {
        let run_dir = setup
            .work_dir
            .join(format!("{}-{scheduler}", scenario.name));
        let _ = std::fs::remove_dir_all(&run_dir);
        std::fs::create_dir_all(run_dir.join("nats"))?;
        let mut procs = Vec::new();

        let nats_port = free_port()?;
        let nats_http = free_port()?;
        procs.push(spawn(
            "nats-server".to_owned(),
            &setup.nats_server,
            &[
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                nats_port.to_string(),
                "-m".into(),
                nats_http.to_string(),
                "-js".into(),
                "-sd".into(),
                run_dir.join("nats").display().to_string(),
            ],
            &[],
            &run_dir,
        )?);
        wait_ready(
            "nats-server",
            &format!("http://127.0.0.1:{nats_http}/healthz"),
            Duration::from_secs(20),
        )
        .await?;

        let database = format!(
            "switchyard_load_{}_{}",
            std::process::id(),
            scenario.name.replace('-', "_")
        );
        let admin_url = setup.admin_database_url.clone();
        let mut admin = PgConnection::connect(&admin_url)
            .await
            .context("cannot connect to DATABASE_URL")?;
        admin
            .execute(format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)").as_str())
            .await?;
        admin
            .execute(format!("CREATE DATABASE \"{database}\"").as_str())
            .await?;
        let db_url = switchyard_tests::scratch_db::with_database(&admin_url, &database)?;
        let pool = PgPool::connect(&db_url).await?;
        switchyard_shared::db::MIGRATOR.run(&pool).await?;

        let mut config = SimConfig::new(API_KEY);
        config.limits = Limits::unlimited();
        let sim = SimHandle::start(config).await?;

        let ingest_addr = SocketAddr::from(([127, 0, 0, 1], free_port()?));
        let ingest_base = format!("http://{ingest_addr}");
        let mut cloud = if scenario.has_cloud() {
            Some(CloudSide::start(&format!("{ingest_base}/cloud")).await?)
        } else {
            None
        };
        let keys = WebhookKeys::new(WEBHOOK_SECRET.into(), None);
        let inlets = provision::provision(
            &pool,
            &SimControl::new(&sim.base_url())?,
            &keys,
            &[ingest_base],
            cloud.as_mut(),
            scenario,
        )
        .await?;
        // Only a run with Cloud tenants configures the Cloud API, so a WA
        // Bridges run starts its services exactly as before.
        let cloud_env = cloud
            .as_ref()
            .map(CloudSide::service_env)
            .unwrap_or_default();

        let common = |ops: u16| -> Vec<(String, String)> {
            [
                ("NATS_URL", format!("nats://127.0.0.1:{nats_port}")),
                ("DATABASE_URL", db_url.clone()),
                ("SWITCHYARD_OPS_ADDR", format!("127.0.0.1:{ops}")),
                ("SWITCHYARD_LOG", "warn".to_owned()),
                ("SWITCHYARD_LOG_FORMAT", "json".to_owned()),
                ("SWITCHYARD_WEBHOOK_SECRET", WEBHOOK_SECRET.to_owned()),
                ("SWITCHYARD_HTTP_ADDR", ingest_addr.to_string()),
                ("WA_API_URL", sim.base_url()),
                ("WA_API_KEY", API_KEY.to_owned()),
                ("SWITCHYARD_WA_TIMEOUT", "5s".to_owned()),
                // Several senders must share the fleet budget, as in a
                // scaled deployment (a local budget is per process).
                (
                    "SWITCHYARD_FLEET_MODE",
                    if setup.replicas > 1 {
                        "shared"
                    } else {
                        "local"
                    }
                    .to_owned(),
                ),
                // The scenarios measure isolation behind the front door (a
                // flood is 250 events/s from one tenant): ingest's per-tenant
                // admission limit would refuse most of it, so it is lifted.
                ("SWITCHYARD_ADMISSION_RATE", "100000".to_owned()),
                ("SWITCHYARD_ADMISSION_BURST", "100000".to_owned()),
                (
                    "SWITCHYARD_FLEET_CALLS_PER_MINUTE",
                    scenario.fleet_per_minute.to_string(),
                ),
                ("SWITCHYARD_SCHEDULER", scheduler.to_owned()),
                (
                    "SWITCHYARD_TENANT_REFRESH",
                    format!("{}ms", scenario.tenant_refresh.as_millis()),
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .chain(cloud_env.iter().cloned())
            .chain(setup.service_env.iter().cloned())
            .collect()
        };
        // Ingest first: the streams exist once one service has started.
        let mut ops_urls = Vec::new();
        let mut all_ops = Vec::new();
        let replicas = setup.replicas.max(1);
        let services = [
            ("switchyard-ingest", 1),
            ("switchyard-router", replicas),
            ("switchyard-sender", replicas),
        ]
        .into_iter()
        .flat_map(|(binary, n)| (1..=n).map(move |i| (binary, replica_name(binary, i))));
        for (binary, name) in services {
            let ops = free_port()?;
            procs.push(spawn(
                name.clone(),
                &setup.bin_dir.join(binary),
                &[],
                &common(ops),
                &run_dir,
            )?);
            wait_ready(
                &name,
                &format!("http://127.0.0.1:{ops}/readyz"),
                Duration::from_secs(30),
            )
            .await
            .with_context(|| format!("see {}", run_dir.join(format!("{name}.log")).display()))?;
            let url = format!("http://127.0.0.1:{ops}");
            if binary != "switchyard-ingest" {
                ops_urls.push(url.clone());
            }
            all_ops.push(url);
        }
        Ok(Self {
            sim,
            cloud,
            inlets,
            procs,
            ops: ops_urls,
            all_ops,
            nats_monitor: format!("http://127.0.0.1:{nats_http}"),
            pool,
            admin_url,
            database,
        })
    }

    /// Stops the services, the simulator and nats-server, and drops the database.
    pub async fn stop(self) -> anyhow::Result<()> {
        let Self {
            sim,
            cloud,
            procs,
            pool,
            admin_url,
            database,
            ..
        } = self;
        drop(procs);
        sim.stop().await;
        if let Some(cloud) = cloud {
            cloud.stop().await;
        }
        pool.close().await;
        let mut admin = PgConnection::connect(&admin_url).await?;
        admin
            .execute(format!("DROP DATABASE IF EXISTS \"{database}\" WITH (FORCE)").as_str())
            .await?;
        Ok(())
    }
}

impl Stack for Deployment {
    fn inlets(&self) -> &[Inlet] {
        &self.inlets
    }

    async fn sends(&self) -> anyhow::Result<Vec<RecordedSend>> {
        let mut sends = self.sim.sends();
        if let Some(cloud) = &self.cloud {
            sends.extend(cloud.replies());
        }
        Ok(sends)
    }

    async fn dead_letters(&self) -> anyhow::Result<u64> {
        stack::dead_letters_at(&self.ops).await
    }

    fn processes(&self) -> Vec<(String, u32)> {
        self.procs
            .iter()
            .map(|p| (p.name.clone(), p.pid()))
            .chain([(
                "switchyard-load (+ simulators)".to_owned(),
                std::process::id(),
            )])
            .collect()
    }

    async fn counters(&self) -> Counters {
        Counters {
            nats_msgs: stack::nats_msgs(&self.nats_monitor).await,
            pg: stack::pg_counts(&self.pool).await,
            stages: StageTotals::scrape(&self.all_ops).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::replica_name;

    #[test]
    fn replicas_are_named_apart_and_summed_by_their_binarys_prefix() {
        let names: Vec<String> = (1..=3)
            .map(|n| replica_name("switchyard-router", n))
            .collect();
        assert_eq!(
            names,
            [
                "switchyard-router",
                "switchyard-router-2",
                "switchyard-router-3"
            ]
        );
        assert!(names.iter().all(|n| n.starts_with("switchyard-router")));
        assert!(!replica_name("switchyard-sender", 2).starts_with("switchyard-router"));
    }
}
