//! Sets a scenario's tenants up on a deployment and takes them down again:
//! each tenant's row (echo bot, the scenario's weight, per-tenant limits out
//! of the way so the fleet budget and the scheduler are what is measured),
//! its bridge on the simulator with its own webhook URL, and the scenario's
//! bridge faults. One path for the deployment this tool starts and for an
//! existing one, so a run against `deploy/cluster.sh` is set up exactly like
//! a local one. A Cloud API tenant (local deployments only) gets the same
//! row, and its number and token instead of a bridge ([`CloudSide`]).

use anyhow::Context as _;
use sqlx::PgPool;
use switchyard_bridge_sim::Fault;
use switchyard_shared::{
    bridge_state::BridgeState,
    ids::{BridgeId, TenantId},
    tenants::{self, BotKind, NewTenant, TenantStatus},
    webhook_auth::WebhookKeys,
};

use crate::{
    cloud::CloudSide,
    inlet::Inlet,
    scenario::{BridgeFault, Channel, Scenario},
    sim_control::SimControl,
};

/// Where a tenant's webhooks go: one of the ingest replicas, the same one for
/// every event of the tenant (as a provider holds one webhook URL per bridge).
pub fn ingest_for(ingest_bases: &[String], tenant_index: usize) -> &str {
    &ingest_bases[tenant_index % ingest_bases.len()]
}

/// Adds every tenant of `scenario`, seeds its bridge (or, on the Cloud API,
/// its number and token through `cloud`) and applies the faults; returns
/// where each tenant's events go, in the scenario's order.
pub async fn provision(
    pool: &PgPool,
    sim: &SimControl,
    keys: &WebhookKeys,
    ingest_bases: &[String],
    mut cloud: Option<&mut CloudSide>,
    scenario: &Scenario,
) -> anyhow::Result<Vec<Inlet>> {
    anyhow::ensure!(!ingest_bases.is_empty(), "no ingest URL to post to");
    let mut inlets = Vec::with_capacity(scenario.tenants.len());
    for (i, t) in scenario.tenants.iter().enumerate() {
        let id = TenantId::parse(&t.id)?;
        let mut new = NewTenant::with_defaults(id.clone());
        new.bot_kind = BotKind::Echo;
        new.limits.weight = t.weight;
        new.limits.sends_per_minute = 100_000;
        new.limits.send_burst = 10_000;
        new.limits.max_in_flight = 8;
        anyhow::ensure!(
            tenants::insert(pool, &new).await?,
            "tenant {id} already exists: a run needs tenants of its own"
        );
        let base = ingest_for(ingest_bases, i);
        if t.channel == Channel::Cloud {
            let cloud = cloud
                .as_deref_mut()
                .context("a Cloud API tenant needs the Cloud simulator")?;
            inlets.push(
                cloud
                    .provision(pool, &id, i, &format!("{base}/cloud"))
                    .await?,
            );
            continue;
        }
        let url = keys.webhook_url(base, &id);
        let bridge = sim.seed_bridge(&t.id, &url).await?;
        tenants::set_bridge(
            pool,
            &id,
            BridgeId::new(bridge.id)?,
            &BridgeState::Connected,
        )
        .await?;
        inlets.push(Inlet::Bridge { url });
    }
    for fault in &scenario.faults {
        match fault {
            BridgeFault::Latency { tenant, ms } => sim.set_latency(tenant, *ms).await?,
            BridgeFault::Hang { tenant } => sim.set_fault(tenant, Fault::Hang).await?,
            BridgeFault::ServerError { tenant, status } => {
                sim.set_fault(tenant, Fault::ServerError { status: *status })
                    .await?
            }
        }
    }
    Ok(inlets)
}

/// After a run on a deployment that outlives it: the run's tenants are
/// suspended (their backlog, if any, is not delivered further) and their
/// bridges' faults cleared. Rows stay, for the operator to inspect or remove
/// with `switchyard tenants remove`.
pub async fn retire(pool: &PgPool, sim: &SimControl, scenario: &Scenario) -> anyhow::Result<()> {
    for t in &scenario.tenants {
        let id = TenantId::parse(&t.id)?;
        tenants::set_status(pool, &id, TenantStatus::Suspended).await?;
    }
    for fault in &scenario.faults {
        sim.clear_faults(fault.tenant()).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tenants_are_spread_over_the_ingest_replicas_and_keep_theirs() {
        let bases = vec!["http://a".to_owned(), "http://b".to_owned()];
        let picked: Vec<&str> = (0..5).map(|i| ingest_for(&bases, i)).collect();
        assert_eq!(
            picked,
            ["http://a", "http://b", "http://a", "http://b", "http://a"]
        );
        assert_eq!(ingest_for(&bases, 3), ingest_for(&bases, 3));
    }
}
