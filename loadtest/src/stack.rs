//! What the driver needs of a deployment, whichever it is: one this tool
//! starts per run ([`crate::deployment::Deployment`]) or an existing one it
//! was pointed at ([`crate::target::Target`]).

use anyhow::Context as _;
use switchyard_bridge_sim::RecordedSend;

use crate::{inlet::Inlet, stages::StageTotals};

pub trait Stack {
    /// Where each tenant's events are posted, in the scenario's order.
    fn inlets(&self) -> &[Inlet];
    /// Every send the simulators accepted (the run's and, on a shared
    /// simulator, others': the driver keeps only its own tenants'); a Cloud
    /// API send reads as a bridge's (`crate::cloud::replies`).
    async fn sends(&self) -> anyhow::Result<Vec<RecordedSend>>;
    /// Messages the routers and senders dead-lettered during this run.
    async fn dead_letters(&self) -> anyhow::Result<u64>;
    /// The processes whose CPU and memory are sampled, by name.
    fn processes(&self) -> Vec<(String, u32)>;
    /// The servers' own operation counters now, where this tool can read them.
    async fn counters(&self) -> Counters {
        Counters::default()
    }
}

/// Operation counters of the servers, read before and after a run; `None`
/// where one could not be read.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    /// nats-server's `/varz` `in_msgs` and `out_msgs`: every publish, JetStream
    /// API request, ack and delivery, all clients together.
    pub nats_msgs: Option<(u64, u64)>,
    /// `pg_stat_database` of the run's database: transactions (commits and
    /// rollbacks) and rows inserted, updated and deleted.
    pub pg: Option<(u64, u64)>,
    /// The services' own timings of their stages ([`crate::stages`]).
    pub stages: Option<StageTotals>,
}

/// nats-server's message counters from its monitoring endpoint (`http://host:port`).
pub async fn nats_msgs(monitor: &str) -> Option<(u64, u64)> {
    let varz: serde_json::Value = reqwest::get(format!("{monitor}/varz"))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some((varz["in_msgs"].as_u64()?, varz["out_msgs"].as_u64()?))
}

/// The current database's transaction and row-change counters. PostgreSQL
/// publishes a backend's counts when its transaction ends, at most once a
/// second (idle backends within 10 s), so a count read right after a run
/// may miss the last second's.
pub async fn pg_counts(pool: &sqlx::PgPool) -> Option<(u64, u64)> {
    let (xacts, rows): (i64, i64) = sqlx::query_as(
        "SELECT (xact_commit + xact_rollback)::int8, \
                (tup_inserted + tup_updated + tup_deleted)::int8 \
         FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(pool)
    .await
    .ok()?;
    Some((u64::try_from(xacts).ok()?, u64::try_from(rows).ok()?))
}

/// The dead letters counted so far by the service at one ops endpoint
/// (`http://host:port`), from its own `/metrics`.
pub async fn dead_letters_of(base: &str) -> anyhow::Result<u64> {
    let text = reqwest::get(format!("{}/metrics", base.trim_end_matches('/')))
        .await
        .with_context(|| format!("scraping {base}/metrics"))?
        .error_for_status()?
        .text()
        .await?;
    Ok(
        switchyard_tests::traffic::metric_sum(&text, switchyard_shared::metrics::DEAD_LETTERS, "")
            as u64,
    )
}

/// The dead letters counted so far by the services at `ops`, together.
pub async fn dead_letters_at(ops: &[String]) -> anyhow::Result<u64> {
    let mut total = 0;
    for base in ops {
        total += dead_letters_of(base).await?;
    }
    Ok(total)
}

/// nats-server's message counters summed over the nodes at `monitors`;
/// `None` unless every node answered.
pub async fn nats_msgs_of_all(monitors: &[String]) -> Option<(u64, u64)> {
    if monitors.is_empty() {
        return None;
    }
    let mut sum = (0, 0);
    for m in monitors {
        let (i, o) = nats_msgs(m.trim_end_matches('/')).await?;
        sum = (sum.0 + i, sum.1 + o);
    }
    Some(sum)
}
