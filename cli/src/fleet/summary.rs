//! `fleet summary`: how many bridges are paired and healthy, awaiting
//! pairing, disconnected or orphaned, and what the fleet costs ($3 a month
//! per active bridge), including what is spent on bridges serving nobody
//! (running orphans, suspended tenants' running bridges). One provider call
//! (the list) plus the tenants table:
//! the session state comes from the `connected`/`disconnected` webhooks the
//! router records, so a summary never spends the fleet's send budget on
//! status calls.

use serde::Serialize;
use sqlx::PgPool;
use switchyard_shared::wabridges::{BridgeState, WaBridgesClient};

use crate::{
    context::Context,
    exit::{CliResult, Exit},
    fleet::reconcile::{diff, dollars, spending},
    output::{self, Output},
};

/// The provider's flat price per active bridge and month, in US cents.
pub const CENTS_PER_BRIDGE_MONTH: u64 = 300;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FleetSummary {
    /// Tenant bridges whose session is connected.
    pub paired_healthy: usize,
    /// Tenant bridges provisioned but never reported connected.
    pub awaiting_pairing: usize,
    /// Tenant bridges whose session dropped.
    pub disconnected: usize,
    /// Tenant bridges in a provider state other than `running`.
    pub other: usize,
    /// Bridges no tenant claims (billed all the same).
    pub orphaned: usize,
    /// Tenants without a bridge at the provider.
    pub tenants_without_bridge: usize,
    /// Bridges the provider reports `running` (what it bills).
    pub active_bridges: usize,
    pub monthly_cost_cents: u64,
    /// Suspended tenants whose bridge the provider still runs (billed, serving nobody).
    pub suspended_running: usize,
    /// What running orphans and suspended tenants' running bridges cost per month.
    pub wasted_monthly_cents: u64,
}

/// Counts by state from the provider's list and the tenants table.
pub async fn summarise(pool: &PgPool, client: &WaBridgesClient) -> CliResult<FleetSummary> {
    let bridges = client.list().await?;
    let rows = super::bridge_tenants(pool).await?;
    let found = diff(&rows, &bridges);
    let spent = spending(&rows, &bridges);
    let mut s = FleetSummary {
        orphaned: found.orphans.len(),
        tenants_without_bridge: found.missing.len(),
        suspended_running: spent.suspended_running.len(),
        wasted_monthly_cents: spent.wasted_monthly_cents,
        ..Default::default()
    };
    for bridge in &bridges {
        if bridge.state == BridgeState::Running {
            s.active_bridges += 1;
        }
        let Some(row) = rows.iter().find(|r| r.id.as_str() == bridge.customer_ref) else {
            continue;
        };
        match (&bridge.state, &row.bridge_state) {
            (BridgeState::Running, BridgeState::Connected) => s.paired_healthy += 1,
            (BridgeState::Running, BridgeState::Disconnected) => s.disconnected += 1,
            (BridgeState::Running, _) => s.awaiting_pairing += 1,
            // The provider's `state` is only ever `running` or a value it did not document.
            (_, _) => s.other += 1,
        }
    }
    s.monthly_cost_cents = s.active_bridges as u64 * CENTS_PER_BRIDGE_MONTH;
    Ok(s)
}

pub async fn run(ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let pool = ctx.db()?;
    let client = ctx.wabridges()?;
    let s = summarise(&pool, &client).await?;
    out.emit(&s, |w| {
        let mut t = output::table(["state", "bridges"]);
        for (label, n) in [
            ("paired and healthy", s.paired_healthy),
            ("awaiting pairing", s.awaiting_pairing),
            ("disconnected", s.disconnected),
            ("other provider state", s.other),
            ("orphaned (no tenant)", s.orphaned),
            (
                "suspended tenant, running (in the above)",
                s.suspended_running,
            ),
        ] {
            t.add_row(vec![label.to_owned(), n.to_string()]);
        }
        output::write_table(w, &t)?;
        writeln!(
            w,
            "{} active bridge(s) × $3 = {}/month; {} tenant(s) without a bridge",
            s.active_bridges,
            dollars(s.monthly_cost_cents),
            s.tenants_without_bridge
        )?;
        if s.wasted_monthly_cents > 0 {
            writeln!(
                w,
                "of which {}/month on bridges serving nobody (running orphans, suspended tenants)",
                dollars(s.wasted_monthly_cents)
            )?;
        }
        Ok(())
    })?;
    Ok(Exit::Ok)
}
