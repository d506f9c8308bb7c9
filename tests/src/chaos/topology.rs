//! The production topology on this machine, started for one chaos run: a
//! 3-node NATS cluster with R3 streams, PostgreSQL behind a TCP proxy the
//! driver can cut (the server itself is never stopped), the WA Bridges
//! simulator in this process as the provider, tenants answered by the echo
//! bot with a bridge each, and several ingest, router and sender replicas as
//! processes of their own ([`Replica`]). Everything listens on loopback ports
//! the OS picked.
//!
//! The simulator echoes every accepted send back as a `from_me` webhook
//! (as the provider does), posted to the first ingest replica: that echo is
//! what settles a send left in doubt by a sender that died (invariant 5).

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use anyhow::Context as _;
use async_nats::jetstream;
use sqlx::PgPool;
use switchyard_bridge_sim::{EchoMode, Fault, SimHandle};
use switchyard_shared::{
    config::{Env, NatsSettings},
    ids::TenantId,
    subjects::{self, Direction},
    tenants::BotKind,
    webhook_auth::WebhookKeys,
};

use super::replica::{Replica, Role};
use crate::{fixtures, nats_server::NatsCluster, tcp_proxy::TcpProxy};

const WEBHOOK_SECRET: &str = "chaos-webhook-secret";

/// A replica that exits within this long of being ready failed its start-up
/// (the services' JetStream requests time out after 5 s, and a start-up
/// makes a few in a row).
pub const START_UP: Duration = Duration::from_secs(20);

/// The shape of the deployment.
#[derive(Debug, Clone)]
pub struct Shape {
    /// The `switchyard-chaos` binary (replicas are processes of it).
    pub program: PathBuf,
    /// Where each replica's log goes (emptied first).
    pub log_dir: PathBuf,
    pub tenants: usize,
    pub ingest: usize,
    pub routers: usize,
    pub senders: usize,
    pub partitions: u16,
}

/// A running deployment; everything stops when it is dropped.
pub struct Topology {
    pub sim: SimHandle,
    /// The driver's own connection to the cluster (reconnects to any node).
    pub js: jetstream::Context,
    pub tenants: Vec<String>,
    keys: WebhookKeys,
    replicas: Vec<Replica>,
    pg: TcpProxy,
    /// Replicas that exited on their own since the start-up.
    exits: Vec<String>,
    start_up_failures: u32,
    // Last: the services go before the cluster they use.
    pub cluster: NatsCluster,
}

impl std::fmt::Debug for Topology {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Topology")
            .field("replicas", &self.replicas)
            .finish()
    }
}

impl Topology {
    /// Starts everything over the migrated database of `db` (whose URL is
    /// `db_url`); the services reach it through a proxy of their own.
    pub async fn start(shape: &Shape, db: &PgPool, db_url: &str) -> anyhow::Result<Self> {
        let _ = std::fs::remove_dir_all(&shape.log_dir);
        std::fs::create_dir_all(&shape.log_dir)?;
        let cluster = NatsCluster::start();
        let partitions = shape.partitions.to_string();
        let nats_vars = [
            ("NATS_URL", cluster.urls()),
            ("SWITCHYARD_STREAM_REPLICAS", "3".to_owned()),
            ("SWITCHYARD_PARTITIONS", partitions),
        ];
        let settings = NatsSettings::from_env(&Env::from_map(
            nats_vars.iter().map(|(k, v)| (k.to_string(), v.clone())),
        ))?;
        // The R3 streams come from the driver, before any service starts.
        let js = crate::fixtures::jetstream_with_streams_on_cluster(
            &settings,
            "chaos-driver",
            Duration::from_secs(60),
        )
        .await;

        let pg = TcpProxy::start(postgres_addr(db).await?).await;
        let mut proxied = reqwest::Url::parse(db_url).context("DATABASE_URL")?;
        proxied.set_host(Some("127.0.0.1"))?;
        proxied
            .set_port(Some(pg.port()))
            .map_err(|()| anyhow::anyhow!("DATABASE_URL {db_url} cannot have a port"))?;

        let sim = fixtures::start_sim().await;
        // The replicas' log filter: warnings, unless `SWITCHYARD_CHAOS_LOG` says otherwise.
        let log_filter =
            std::env::var("SWITCHYARD_CHAOS_LOG").unwrap_or_else(|_| "warn".to_owned());
        let mut env: Vec<(String, String)> = nats_vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        for (k, v) in [
            ("DATABASE_URL", proxied.as_str()),
            ("SWITCHYARD_DB_MAX_CONNECTIONS", "6"),
            ("SWITCHYARD_LOG", log_filter.as_str()),
            ("SWITCHYARD_WEBHOOK_SECRET", WEBHOOK_SECRET),
            ("WA_API_URL", sim.base_url().as_str()),
            ("WA_API_KEY", fixtures::SIM_API_KEY),
            // The fleet budget in its KV bucket, as in production, far
            // above what the traffic needs.
            ("SWITCHYARD_FLEET_MODE", "shared"),
            ("SWITCHYARD_FLEET_CALLS_PER_MINUTE", "600000"),
        ] {
            env.push((k.to_owned(), v.to_owned()));
        }

        // Ingest first: the bridges post their echoes to the first replica.
        let mut replicas = Vec::new();
        for i in 0..shape.ingest {
            replicas.push(
                Replica::start(&shape.program, Role::Ingest, i, env.clone(), &shape.log_dir)
                    .await?,
            );
        }
        let keys = WebhookKeys::new(WEBHOOK_SECRET.into(), None);
        let echo_target = replicas[0]
            .ingest_base()
            .context("an ingest replica has a webhook port")?;
        let tenants: Vec<String> = (0..shape.tenants)
            .map(|i| format!("chaos-{i:03}"))
            .collect();
        for tenant in &tenants {
            let hook = keys.webhook_url(&echo_target, &TenantId::parse(tenant)?);
            fixtures::add_tenant_with_bridge_posting_to(db, &sim, tenant, &hook, |new| {
                new.bot_kind = BotKind::Echo;
            })
            .await;
            sim.set_echo(tenant, EchoMode::After)?;
        }
        let mut topology = Self {
            sim,
            js,
            tenants,
            keys,
            replicas,
            pg,
            cluster,
            exits: Vec::new(),
            start_up_failures: 0,
        };
        // The first router, then the first sender, each until it has made
        // its partition consumers and buckets (all at once, on a cluster that
        // has just formed, most start-ups time out); then the others, which
        // find them made.
        let start = |role, i| Replica::start(&shape.program, role, i, env.clone(), &shape.log_dir);
        topology.replicas.push(start(Role::Router, 0).await?);
        topology
            .wait_set_up(&[Direction::Inbound], shape.partitions)
            .await?;
        topology.replicas.push(start(Role::Sender, 0).await?);
        topology
            .wait_set_up(&[Direction::Outbound, Direction::Bulk], shape.partitions)
            .await?;
        for i in 1..shape.routers {
            topology.replicas.push(start(Role::Router, i).await?);
        }
        for i in 1..shape.senders {
            topology.replicas.push(start(Role::Sender, i).await?);
        }
        topology.settle_start_up().await?;
        Ok(topology)
    }

    /// Waits until every replica has stayed up for 3 s in a row. A replica
    /// that is ready may still exit while it creates its consumers and KV
    /// buckets (on a cluster that has just formed, a create can outlast the
    /// service's request timeout; `deploy/cluster.sh` knows this too): such
    /// start-up exits are revived and counted apart (see [`START_UP`]).
    async fn settle_start_up(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(90);
        let mut calm_since = Instant::now();
        while calm_since.elapsed() < Duration::from_secs(3) {
            if !self.revive_exited().await?.is_empty() {
                calm_since = Instant::now();
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "replicas kept exiting during start-up; see {}",
                self.log_paths()[0]
                    .parent()
                    .map_or_else(String::new, |d| d.display().to_string())
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.exits.clear();
        Ok(())
    }

    /// Waits until the partition consumers and membership buckets of
    /// `directions` exist (and the fleet budget's bucket, for the sender's),
    /// reviving replicas whose start-up failed meanwhile.
    async fn wait_set_up(
        &mut self,
        directions: &[Direction],
        partitions: u16,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(120);
        while !self.set_up(directions, partitions).await {
            anyhow::ensure!(
                Instant::now() < deadline,
                "the {directions:?} lanes were not set up within 120 s"
            );
            self.revive_exited().await?;
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Ok(())
    }

    async fn set_up(&self, directions: &[Direction], partitions: u16) -> bool {
        for direction in directions {
            let Ok(stream) = self.js.get_stream(direction.stream()).await else {
                return false;
            };
            let consumers = stream
                .get_info()
                .await
                .map_or(0, |i| i.state.consumer_count);
            let bucket = switchyard_shared::lanes::assignment::bucket_name(*direction);
            if consumers < usize::from(partitions) || self.js.get_key_value(bucket).await.is_err() {
                return false;
            }
        }
        !directions.contains(&Direction::Outbound)
            || self.js.get_key_value(subjects::BUDGET_BUCKET).await.is_ok()
    }

    /// Starts again every replica that exited on its own (as an orchestrator
    /// would) and returns their names. A replica ready for less than
    /// [`START_UP`] failed its start-up (it is ready before its lanes and
    /// buckets are set up, which can time out while the cluster is busy):
    /// counted in [`Topology::start_up_failures`]; any other exit is kept
    /// in [`Topology::unexpected_exits`].
    pub async fn revive_exited(&mut self) -> anyhow::Result<Vec<String>> {
        let mut revived = Vec::new();
        for replica in &mut self.replicas {
            if replica.has_exited() {
                let name = format!("{replica:?}");
                if replica.up_for() < START_UP {
                    self.start_up_failures += 1;
                } else {
                    self.exits.push(format!(
                        "{name} at {}",
                        time::OffsetDateTime::now_utc().time()
                    ));
                }
                replica.restart().await?;
                revived.push(name);
            }
        }
        Ok(revived)
    }

    /// Start-ups that failed and were retried, since the topology started.
    pub fn start_up_failures(&self) -> u32 {
        self.start_up_failures
    }

    /// Waits `length`, reviving replicas that exit meanwhile.
    pub async fn watch_for(&mut self, length: Duration) -> anyhow::Result<()> {
        let until = Instant::now() + length;
        while Instant::now() < until {
            self.revive_exited().await?;
            tokio::time::sleep(
                until
                    .saturating_duration_since(Instant::now())
                    .min(Duration::from_millis(250)),
            )
            .await;
        }
        Ok(())
    }

    /// Replicas that exited without being killed, since the start-up: `<name> at <time of day, UTC>`.
    pub fn unexpected_exits(&self) -> &[String] {
        &self.exits
    }

    /// The webhook URL of `tenant` on the ingest replica at `base`.
    pub fn webhook_url(&self, base: &str, tenant: &str) -> anyhow::Result<String> {
        Ok(self.keys.webhook_url(base, &TenantId::parse(tenant)?))
    }

    /// The ingest replicas' base URLs (they keep their ports across restarts).
    pub fn ingest_bases(&self) -> Vec<String> {
        self.replicas
            .iter()
            .filter_map(Replica::ingest_base)
            .collect()
    }

    /// How many replicas of `role` run.
    pub fn count(&self, role: Role) -> usize {
        self.replicas.iter().filter(|r| r.role == role).count()
    }

    /// Replica `index` of `role`.
    pub fn replica(&mut self, role: Role, index: usize) -> &mut Replica {
        self.replicas
            .iter_mut()
            .filter(|r| r.role == role)
            .nth(index)
            .expect("a replica of that index")
    }

    /// Where every replica's log is, for a report of what went wrong.
    pub fn log_paths(&self) -> Vec<PathBuf> {
        self.replicas
            .iter()
            .map(|r| r.log_path().to_owned())
            .collect()
    }

    /// The index of the node that leads `stream`, once the stream is whole
    /// again: a leader and two replicas that are current (a node restarted
    /// by the previous fault has caught up), so a kill costs a leader and
    /// never the quorum.
    pub async fn stream_leader(&self, stream: &str) -> anyhow::Result<usize> {
        let leader = crate::poll::until(
            &format!("{stream} to have a leader and two current replicas"),
            Duration::from_secs(60),
            || async {
                let s = self.js.get_stream(stream).await.ok()?;
                let cluster = s.get_info().await.ok()?.cluster?;
                let whole = cluster.replicas.len() == 2
                    && cluster.replicas.iter().all(|r| r.current && !r.offline);
                whole.then_some(cluster.leader?)
            },
        )
        .await;
        self.cluster
            .node_named(&leader)
            .with_context(|| format!("{leader} is not a node of the cluster"))
    }

    /// Takes PostgreSQL away from every service (open connections cut,
    /// new ones refused), or gives it back.
    pub async fn postgres_reachable(&self, reachable: bool) {
        if reachable {
            self.pg.restore().await;
        } else {
            self.pg.cut();
        }
    }

    /// Every bridge answers 503 to every call, or behaves again.
    pub fn bridges_failing(&self, failing: bool) -> anyhow::Result<()> {
        for tenant in &self.tenants {
            if failing {
                self.sim
                    .set_fault(tenant, Fault::ServerError { status: 503 }, None)?;
            } else {
                self.sim.clear_fault(tenant)?;
            }
        }
        Ok(())
    }

    /// How many dead letters the `DLQ` stream holds.
    pub async fn dead_letters(&self) -> u64 {
        match self.js.get_stream(subjects::DLQ_STREAM).await {
            Ok(stream) => stream.get_info().await.map_or(0, |i| i.state.messages),
            Err(_) => 0,
        }
    }
}

/// The address of the PostgreSQL server behind `db`.
async fn postgres_addr(db: &PgPool) -> anyhow::Result<std::net::SocketAddr> {
    let options = db.connect_options();
    tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await?
        .next()
        .context("PostgreSQL over TCP (DATABASE_URL with a host and port)")
}
