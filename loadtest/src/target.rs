//! An existing deployment the load tool was pointed at (`--target`): the
//! `deploy/cluster.sh` stack or a staging system. The tool starts nothing
//! there: it adds each scenario's tenants under a prefix of this run (so it
//! never touches a real tenant, and two runs never share one), posts to the
//! given ingest URLs, reads replies from the given simulator and dead letters
//! from the given ops endpoints, and suspends its tenants afterwards. The
//! fleet budget, the scheduler and every other setting are the target's own.

use std::path::Path;

use anyhow::Context as _;
use secrecy::SecretString;
use sqlx::PgPool;
use switchyard_bridge_sim::RecordedSend;
use switchyard_shared::webhook_auth::WebhookKeys;

use crate::{
    inlet::Inlet,
    provision,
    scenario::Scenario,
    sim_control::SimControl,
    stack::{self, Counters, Stack},
    stages::StageTotals,
};

/// How to reach an existing deployment.
#[derive(Debug, Clone)]
pub struct TargetConfig {
    /// Ingest's public base URLs; tenants are spread over them.
    pub ingest: Vec<String>,
    /// The simulator the deployment's senders call.
    pub sim: String,
    /// The routers' and senders' ops endpoints, for dead-letter counts.
    pub ops: Vec<String>,
    /// nats-server monitoring endpoints, for message counts (all nodes of a cluster).
    pub nats_monitors: Vec<String>,
    /// A directory of `<name>.pid` files (deploy/cluster.sh's `.run/cluster`):
    /// those processes' CPU and memory are sampled.
    pub pids_dir: Option<std::path::PathBuf>,
    /// The deployment's `SWITCHYARD_WEBHOOK_SECRET` (tenant webhook URLs carry tokens made from it).
    pub webhook_secret: SecretString,
    /// The deployment's database (tenants are added there).
    pub database_url: String,
}

/// The deployment, set up for one scenario.
pub struct Target {
    sim: SimControl,
    inlets: Vec<Inlet>,
    /// Each ops endpoint and its dead-letter count before the run.
    ops: Vec<(String, u64)>,
    nats_monitors: Vec<String>,
    processes: Vec<(String, u32)>,
    pool: PgPool,
}

/// The `<name>.pid` files of `dir` whose process is alive.
fn live_pids(dir: &Path) -> anyhow::Result<Vec<(String, u32)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "pid") {
            continue;
        }
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        let Ok(pid) = std::fs::read_to_string(&path)
            .unwrap_or_default()
            .trim()
            .parse::<u32>()
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            found.push((name.to_owned(), pid));
        }
    }
    found.sort();
    Ok(found)
}

impl Target {
    /// Connects, checks the simulator answers, and provisions `scenario`
    /// (whose tenant ids already carry this run's prefix).
    pub async fn prepare(config: &TargetConfig, scenario: &Scenario) -> anyhow::Result<Self> {
        let sim = SimControl::new(&config.sim)?;
        sim.check().await?;
        let pool = PgPool::connect(&config.database_url)
            .await
            .context("cannot connect to the target's database (DATABASE_URL)")?;
        let keys = WebhookKeys::new(config.webhook_secret.clone(), None);
        anyhow::ensure!(
            !scenario.has_cloud(),
            "--channel cloud|mixed runs against a local deployment only: the tool cannot \
             configure a target's Cloud API settings (app secret, token keys, Graph URL)"
        );
        let inlets =
            provision::provision(&pool, &sim, &keys, &config.ingest, None, scenario).await?;
        let processes = match &config.pids_dir {
            Some(dir) => live_pids(dir)?,
            None => Vec::new(),
        };
        let mut ops = Vec::with_capacity(config.ops.len());
        for base in &config.ops {
            ops.push((base.clone(), stack::dead_letters_of(base).await?));
        }
        Ok(Self {
            sim,
            inlets,
            ops,
            nats_monitors: config.nats_monitors.clone(),
            processes,
            pool,
        })
    }

    /// Suspends the scenario's tenants and clears their bridges' faults.
    pub async fn finish(self, scenario: &Scenario) -> anyhow::Result<()> {
        provision::retire(&self.pool, &self.sim, scenario).await?;
        self.pool.close().await;
        Ok(())
    }
}

impl Stack for Target {
    fn inlets(&self) -> &[Inlet] {
        &self.inlets
    }

    async fn sends(&self) -> anyhow::Result<Vec<RecordedSend>> {
        self.sim.sends().await
    }

    /// A service that stopped answering during the run (a replica killed on
    /// purpose) is left out with a warning: its counter died with it.
    async fn dead_letters(&self) -> anyhow::Result<u64> {
        let mut total = 0;
        for (base, before) in &self.ops {
            match stack::dead_letters_of(base).await {
                Ok(now) => total += now.saturating_sub(*before),
                Err(e) => eprintln!("switchyard-load: dead letters of {base} not counted: {e:#}"),
            }
        }
        Ok(total)
    }

    async fn counters(&self) -> Counters {
        Counters {
            nats_msgs: stack::nats_msgs_of_all(&self.nats_monitors).await,
            pg: stack::pg_counts(&self.pool).await,
            // The routers' and senders' stages (ingest's ops are not given).
            stages: StageTotals::scrape(
                &self
                    .ops
                    .iter()
                    .map(|(base, _)| base.clone())
                    .collect::<Vec<_>>(),
            )
            .await,
        }
    }

    fn processes(&self) -> Vec<(String, u32)> {
        let mut all = self.processes.clone();
        all.push(("switchyard-load".to_owned(), std::process::id()));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_pid_files_of_live_processes_are_sampled() {
        let dir = std::env::temp_dir().join(format!("lt-pids-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(
            dir.join("router-1.pid"),
            format!("{}\n", std::process::id()),
        )
        .unwrap();
        std::fs::write(dir.join("sender-1.pid"), "4194304999\n").unwrap();
        std::fs::write(dir.join("garbage.pid"), "not a pid").unwrap();
        std::fs::write(dir.join("router-1.log"), "12").unwrap();
        let found = live_pids(&dir).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(found, vec![("router-1".to_owned(), std::process::id())]);
    }
}
