//! `fleet reconcile`: list every bridge once, diff it against the tenants
//! table and record what the provider says. It finds bridges with no tenant
//! (orphans), tenants with no bridge, and drift between the stored bridge id
//! or state and the provider's. It never deletes; every write is a
//! compare-and-set on the row as it was read, so concurrent runs, and a
//! router recording a `connected` event meanwhile, are never overwritten with
//! a stale view. Exit 3 when anything was found, for cron alerts.
//!
//! Stored `bridge_state` vocabulary: `unprovisioned` (default), the provider's
//! control-plane state (`running`, or any other value verbatim), the session
//! states the router records from webhooks (`connected`, `disconnected`), and
//! `missing` (we hold a bridge id the provider no longer knows). A `running`
//! bridge agrees with `running`, `connected` and `disconnected`.

use std::{collections::BTreeMap, time::Duration};

use clap::Args;
use serde::Serialize;
use sqlx::PgPool;
use switchyard_shared::{
    config::Env,
    ids::{BridgeId, TenantId},
    ops_server,
    tenants::Tenant,
    wabridges::{Bridge, BridgeState, WaBridgesClient},
};
use tokio_util::sync::CancellationToken;

use crate::{
    context::Context,
    exit::{CliResult, Exit},
    metrics as m,
    output::{self, Output},
};

/// Whether a stored state agrees with a bridge the provider says is `running`.
fn agrees_with_running(stored: &BridgeState) -> bool {
    matches!(
        stored,
        BridgeState::Running | BridgeState::Connected | BridgeState::Disconnected
    )
}

#[derive(Debug, Args)]
pub struct ReconcileArgs {
    /// Keep reconciling every INTERVAL (e.g. 5m) and serve the counts on /metrics
    /// (SWITCHYARD_OPS_ADDR, default 127.0.0.1:9193) until Ctrl-C or --max-runs.
    #[arg(long, value_name = "INTERVAL", value_parser = humantime::parse_duration)]
    pub watch: Option<Duration>,
    /// Stop watching after this many runs.
    #[arg(long, requires = "watch")]
    pub max_runs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Orphan {
    pub bridge_id: i64,
    pub customer_ref: String,
    pub state: BridgeState,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Missing {
    pub tenant: TenantId,
    pub stored_bridge_id: Option<i64>,
    pub stored_state: BridgeState,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Drift {
    pub tenant: TenantId,
    pub stored_bridge_id: Option<i64>,
    pub bridge_id: i64,
    pub stored_state: BridgeState,
    pub provider_state: BridgeState,
    /// What the row should now say.
    pub recorded_state: BridgeState,
}

/// The pure difference between the provider's bridges and the tenants table.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FleetDiff {
    pub orphans: Vec<Orphan>,
    pub missing: Vec<Missing>,
    pub drift: Vec<Drift>,
}

/// Diffs `bridges` against `rows`; decides, changes nothing.
pub fn diff(rows: &[Tenant], bridges: &[Bridge]) -> FleetDiff {
    let by_ref: BTreeMap<&str, &Bridge> = bridges
        .iter()
        .map(|b| (b.customer_ref.as_str(), b))
        .collect();
    let known: BTreeMap<&str, &Tenant> = rows.iter().map(|t| (t.id.as_str(), t)).collect();
    let mut out = FleetDiff::default();
    for bridge in bridges {
        if !known.contains_key(bridge.customer_ref.as_str()) {
            out.orphans.push(Orphan {
                bridge_id: bridge.id.get(),
                customer_ref: bridge.customer_ref.clone(),
                state: bridge.state.clone(),
            });
        }
    }
    for row in rows {
        let stored_bridge_id = row.bridge_id.map(BridgeId::get);
        match by_ref.get(row.id.as_str()) {
            None => out.missing.push(Missing {
                tenant: row.id.clone(),
                stored_bridge_id,
                stored_state: row.bridge_state.clone(),
            }),
            Some(bridge) => {
                let recorded_state = match &bridge.state {
                    BridgeState::Running if agrees_with_running(&row.bridge_state) => {
                        row.bridge_state.clone()
                    }
                    other => other.clone(),
                };
                if stored_bridge_id != Some(bridge.id.get()) || recorded_state != row.bridge_state {
                    out.drift.push(Drift {
                        tenant: row.id.clone(),
                        stored_bridge_id,
                        bridge_id: bridge.id.get(),
                        stored_state: row.bridge_state.clone(),
                        provider_state: bridge.state.clone(),
                        recorded_state,
                    });
                }
            }
        }
    }
    out
}

/// A suspended tenant's bridge the provider still runs (and bills).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SuspendedRunning {
    pub tenant: TenantId,
    pub bridge_id: i64,
}

/// Money spent on bridges that serve nobody: running orphans and the
/// running bridges of suspended tenants, at the provider's flat price.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Spending {
    /// Orphan bridges the provider reports `running`.
    pub orphans_running: usize,
    pub suspended_running: Vec<SuspendedRunning>,
    /// What those bridges cost per month, in US cents.
    pub wasted_monthly_cents: u64,
}

/// Which billed bridges serve nobody; decides, changes nothing.
pub fn spending(rows: &[Tenant], bridges: &[Bridge]) -> Spending {
    let mut out = Spending::default();
    for bridge in bridges.iter().filter(|b| b.state == BridgeState::Running) {
        match rows.iter().find(|r| r.id.as_str() == bridge.customer_ref) {
            None => out.orphans_running += 1,
            Some(row) if !row.is_active() => out.suspended_running.push(SuspendedRunning {
                tenant: row.id.clone(),
                bridge_id: bridge.id.get(),
            }),
            Some(_) => {}
        }
    }
    out.wasted_monthly_cents = (out.orphans_running + out.suspended_running.len()) as u64
        * crate::fleet::summary::CENTS_PER_BRIDGE_MONTH;
    out
}

/// `$12.00`.
pub fn dollars(cents: u64) -> String {
    format!("${}.{:02}", cents / 100, cents % 100)
}

/// One reconciliation.
#[derive(Debug, Clone, Serialize)]
pub struct ReconcileReport {
    pub bridges: usize,
    pub tenants: usize,
    #[serde(flatten)]
    pub diff: FleetDiff,
    /// Running orphans and suspended tenants' running bridges (reported; exit unchanged).
    pub spending: Spending,
    /// Rows updated by this run (another writer may have got there first).
    pub rows_updated: usize,
}

impl ReconcileReport {
    pub fn has_drift(&self) -> bool {
        !(self.diff.orphans.is_empty()
            && self.diff.missing.is_empty()
            && self.diff.drift.is_empty())
    }

    pub fn exit(&self) -> Exit {
        if self.has_drift() {
            Exit::Drift
        } else {
            Exit::Ok
        }
    }
}

/// Lists, diffs and records the provider's view (compare-and-set per row).
pub async fn reconcile(pool: &PgPool, client: &WaBridgesClient) -> CliResult<ReconcileReport> {
    let bridges = client.list().await?;
    let rows = super::bridge_tenants(pool).await?;
    let diff = diff(&rows, &bridges);
    let spending = spending(&rows, &bridges);
    let mut rows_updated = 0;
    for d in &diff.drift {
        let done = sqlx::query(
            "UPDATE tenants SET bridge_id = $2, bridge_state = $3, bridge_state_at = now(), \
             updated_at = now() WHERE id = $1 AND bridge_state = $4 \
             AND bridge_id IS NOT DISTINCT FROM $5",
        )
        .bind(d.tenant.as_str())
        .bind(d.bridge_id)
        .bind(d.recorded_state.as_str())
        .bind(d.stored_state.as_str())
        .bind(d.stored_bridge_id)
        .execute(pool)
        .await;
        match done {
            Ok(done) => rows_updated += done.rows_affected() as usize,
            Err(e) => output::warn(&format!("cannot record the state of {}: {e}", d.tenant)),
        }
    }
    for m in &diff.missing {
        if m.stored_bridge_id.is_none() || m.stored_state == BridgeState::Missing {
            continue;
        }
        let done = sqlx::query(
            "UPDATE tenants SET bridge_state = $2, bridge_state_at = now(), updated_at = now() \
             WHERE id = $1 AND bridge_state = $3 AND bridge_id IS NOT DISTINCT FROM $4",
        )
        .bind(m.tenant.as_str())
        .bind(BridgeState::Missing.as_str())
        .bind(m.stored_state.as_str())
        .bind(m.stored_bridge_id)
        .execute(pool)
        .await?;
        rows_updated += done.rows_affected() as usize;
    }
    Ok(ReconcileReport {
        bridges: bridges.len(),
        tenants: rows.len(),
        diff,
        spending,
        rows_updated,
    })
}

/// Publishes a run's counts as gauges.
fn export(report: &ReconcileReport) {
    metrics::gauge!(m::FLEET_BRIDGES).set(report.bridges as f64);
    metrics::gauge!(m::FLEET_TENANTS).set(report.tenants as f64);
    metrics::gauge!(m::FLEET_ORPHANS).set(report.diff.orphans.len() as f64);
    metrics::gauge!(m::FLEET_MISSING).set(report.diff.missing.len() as f64);
    metrics::gauge!(m::FLEET_DRIFT).set(report.diff.drift.len() as f64);
    metrics::gauge!(m::FLEET_WASTED_MONTHLY_CENTS).set(report.spending.wasted_monthly_cents as f64);
    metrics::counter!(m::FLEET_RECONCILE_RUNS).increment(1);
}

fn render(out: &mut Output, report: &ReconcileReport) -> anyhow::Result<()> {
    out.emit(report, |w| {
        let mut t = output::table(["finding", "tenant / ref", "bridge", "stored", "provider", "recorded"]);
        for o in &report.diff.orphans {
            t.add_row(vec![
                "orphan bridge".to_owned(),
                o.customer_ref.clone(),
                o.bridge_id.to_string(),
                "-".to_owned(),
                o.state.to_string(),
                "-".to_owned(),
            ]);
        }
        for m in &report.diff.missing {
            t.add_row(vec![
                "no bridge".to_owned(),
                m.tenant.to_string(),
                m.stored_bridge_id.map_or_else(|| "-".to_owned(), |b| b.to_string()),
                m.stored_state.to_string(),
                "-".to_owned(),
                if m.stored_bridge_id.is_some() {
                    BridgeState::Missing.as_str()
                } else {
                    "-"
                }
                .to_owned(),
            ]);
        }
        for d in &report.diff.drift {
            t.add_row(vec![
                "state drift".to_owned(),
                d.tenant.to_string(),
                d.bridge_id.to_string(),
                format!(
                    "{} {}",
                    d.stored_bridge_id.map_or_else(|| "-".to_owned(), |b| b.to_string()),
                    d.stored_state
                ),
                d.provider_state.to_string(),
                d.recorded_state.to_string(),
            ]);
        }
        for s in &report.spending.suspended_running {
            t.add_row(vec![
                "suspended, running".to_owned(),
                s.tenant.to_string(),
                s.bridge_id.to_string(),
                "suspended".to_owned(),
                BridgeState::Running.to_string(),
                "-".to_owned(),
            ]);
        }
        if report.has_drift() || !report.spending.suspended_running.is_empty() {
            output::write_table(w, &t)?;
        }
        writeln!(
            w,
            "{} bridge(s), {} tenant(s): {} orphan(s), {} without a bridge, {} drifted; {} row(s) updated; nothing deleted",
            report.bridges,
            report.tenants,
            report.diff.orphans.len(),
            report.diff.missing.len(),
            report.diff.drift.len(),
            report.rows_updated
        )?;
        let sp = &report.spending;
        if sp.wasted_monthly_cents > 0 {
            writeln!(
                w,
                "spent on bridges serving nobody: {} running orphan(s) + {} suspended tenant(s) running = {}/month \
                 (`fleet delete --orphan ID…`, `fleet delete TENANT`)",
                sp.orphans_running,
                sp.suspended_running.len(),
                dollars(sp.wasted_monthly_cents)
            )?;
        }
        Ok(())
    })
}

pub async fn run(args: ReconcileArgs, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let pool = ctx.db()?;
    let client = ctx.wabridges()?;
    let Some(interval) = args.watch else {
        let report = reconcile(&pool, &client).await?;
        render(out, &report)?;
        return Ok(report.exit());
    };
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    watch(
        &pool,
        &client,
        ctx.env(),
        interval,
        args.max_runs,
        &stop,
        out,
    )
    .await
}

/// Reconciles every `interval`, serving the counts on `/metrics`, until
/// `stop` or `max_runs`. Exits with the last run's code.
pub async fn watch(
    pool: &PgPool,
    client: &WaBridgesClient,
    env: &Env,
    interval: Duration,
    max_runs: Option<u64>,
    stop: &CancellationToken,
    out: &mut Output,
) -> CliResult<Exit> {
    let addr: std::net::SocketAddr = env.parse(
        "SWITCHYARD_OPS_ADDR",
        std::net::SocketAddr::from(([127, 0, 0, 1], 9193)),
    )?;
    let listener = tokio::net::TcpListener::bind(addr).await?;
    out.note(&format!(
        "serving /metrics on http://{}",
        listener.local_addr()?
    ))?;
    let readiness = ops_server::Readiness::default();
    readiness.set("reconcile", true);
    let server_stop = stop.child_token();
    let server = tokio::spawn(ops_server::serve(
        listener,
        ops_server::router(readiness),
        server_stop.clone(),
    ));
    let mut last;
    let mut runs = 0u64;
    loop {
        match reconcile(pool, client).await {
            Ok(report) => {
                export(&report);
                render(out, &report)?;
                last = report.exit();
            }
            Err(e) => {
                // A failed run is reported and retried at the next tick.
                metrics::counter!(m::FLEET_RECONCILE_FAILURES).increment(1);
                output::warn(&format!("reconcile failed: {e}"));
                last = Exit::Failure;
            }
        }
        runs += 1;
        if max_runs.is_some_and(|m| runs >= m) {
            break;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(interval) => {}
        }
    }
    server_stop.cancel();
    let _ = server.await;
    Ok(last)
}
