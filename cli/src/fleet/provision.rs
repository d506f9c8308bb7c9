//! `fleet provision`: one bridge per tenant, `customer_ref` = tenant id and
//! the tenant's own webhook URL (with its token). Safe to interrupt and to
//! re-run: each tenant's bridge id is stored as soon as the provider answers,
//! tenants that already have one are skipped, and the provider is idempotent
//! on `customer_ref`, so a crash between its answer and our write costs one
//! repeated call, not a second bridge. A 429 waits for `Retry-After` and tries
//! the same tenant again; it never counts as a failure.

use std::time::Duration;

use clap::Args;
use serde::Serialize;
use sqlx::PgPool;
use switchyard_shared::{
    ids::TenantId,
    tenants,
    wabridges::{WaBridgesClient, WaError},
};
use tokio_util::sync::CancellationToken;

use crate::{
    context::{Context, WebhookTarget, announce_tenant_change},
    exit::{CliError, CliResult, Exit},
    output::{self, Output},
};

/// Transient provider failures tried per tenant before it counts as failed.
const TRANSIENT_ATTEMPTS: u32 = 3;

#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// Tenants to provision.
    #[arg(required_unless_present = "all")]
    pub tenants: Vec<TenantId>,
    /// Every tenant that has no bridge yet.
    #[arg(long, conflicts_with = "tenants")]
    pub all: bool,
}

/// What happened to one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum TenantOutcome {
    /// Created (or returned by the provider) and stored.
    Provisioned { bridge_id: i64, state: String },
    /// Already had a bridge id: nothing was called.
    Skipped { bridge_id: i64 },
    /// The provider refused or kept failing.
    Failed { error: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct ProvisionRow {
    pub tenant: TenantId,
    #[serde(flatten)]
    pub outcome: TenantOutcome,
}

/// The whole run.
#[derive(Debug, Clone, Serialize)]
pub struct ProvisionReport {
    pub rows: Vec<ProvisionRow>,
    /// Rate-limit waits honoured (`Retry-After`).
    pub rate_limited_waits: u32,
    /// Tenants not reached because the run was interrupted.
    pub not_reached: Vec<TenantId>,
}

impl ProvisionReport {
    pub fn count(&self, pred: impl Fn(&TenantOutcome) -> bool) -> usize {
        self.rows.iter().filter(|r| pred(&r.outcome)).count()
    }

    pub fn exit(&self) -> Exit {
        if !self.not_reached.is_empty() {
            Exit::Interrupted
        } else if self.count(|o| matches!(o, TenantOutcome::Failed { .. })) > 0 {
            Exit::Partial
        } else {
            Exit::Ok
        }
    }
}

/// Which tenants a run covers; unknown tenants refuse the whole run before any call.
pub async fn select(pool: &PgPool, args: &ProvisionArgs) -> CliResult<Vec<TenantId>> {
    if args.all {
        return Ok(super::bridge_tenants(pool)
            .await?
            .into_iter()
            .filter(|t| t.bridge_id.is_none())
            .map(|t| t.id)
            .collect());
    }
    let mut chosen: Vec<TenantId> = Vec::new();
    for tenant in &args.tenants {
        super::require_bridge_tenant(pool, tenant).await?;
        if !chosen.contains(tenant) {
            chosen.push(tenant.clone());
        }
    }
    if chosen.is_empty() {
        return Err(CliError::bad_input("name at least one tenant, or --all"));
    }
    Ok(chosen)
}

/// Provisions `chosen` one by one until done or `stop` is cancelled (between tenants,
/// or during a rate-limit wait). `on_done` is called after each tenant (progress).
pub async fn provision(
    pool: &PgPool,
    client: &WaBridgesClient,
    target: &WebhookTarget,
    chosen: &[TenantId],
    stop: &CancellationToken,
    mut on_done: impl FnMut(&ProvisionRow),
) -> CliResult<ProvisionReport> {
    let mut report = ProvisionReport {
        rows: Vec::new(),
        rate_limited_waits: 0,
        not_reached: Vec::new(),
    };
    for (i, tenant) in chosen.iter().enumerate() {
        if stop.is_cancelled() {
            report.not_reached = chosen[i..].to_vec();
            break;
        }
        // Re-read: another run may have provisioned it meanwhile.
        let Some(row) = tenants::fetch(pool, tenant).await? else {
            report.rows.push(ProvisionRow {
                tenant: tenant.clone(),
                outcome: TenantOutcome::Failed {
                    error: "tenant no longer exists".to_owned(),
                },
            });
            continue;
        };
        if let Some(bridge) = row.bridge_id {
            let done = ProvisionRow {
                tenant: tenant.clone(),
                outcome: TenantOutcome::Skipped {
                    bridge_id: bridge.get(),
                },
            };
            on_done(&done);
            report.rows.push(done);
            continue;
        }
        let url = target.url_for(tenant, row.webhook.generation);
        let mut transient = 0;
        let outcome = loop {
            match client.provision(tenant, &url).await {
                Ok(bridge) => {
                    tenants::set_bridge(pool, tenant, bridge.id, &bridge.state).await?;
                    break Some(TenantOutcome::Provisioned {
                        bridge_id: bridge.id.get(),
                        state: bridge.state.as_str().to_owned(),
                    });
                }
                Err(WaError::RateLimited { retry_after }) => {
                    report.rate_limited_waits += 1;
                    tokio::select! {
                        _ = stop.cancelled() => break None,
                        _ = tokio::time::sleep(retry_after) => {}
                    }
                }
                Err(e) if e.is_retryable() && transient + 1 < TRANSIENT_ATTEMPTS => {
                    transient += 1;
                    let backoff = Duration::from_millis(500 * 2u64.pow(transient));
                    tokio::select! {
                        _ = stop.cancelled() => break None,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                }
                Err(e) => {
                    break Some(TenantOutcome::Failed {
                        error: e.to_string(),
                    });
                }
            }
        };
        let Some(outcome) = outcome else {
            report.not_reached = chosen[i..].to_vec();
            break;
        };
        let done = ProvisionRow {
            tenant: tenant.clone(),
            outcome,
        };
        on_done(&done);
        report.rows.push(done);
    }
    Ok(report)
}

pub async fn run(args: ProvisionArgs, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let pool = ctx.db()?;
    let client = ctx.wabridges()?;
    let target = ctx.webhook_target()?;
    let chosen = select(&pool, &args).await?;
    let stop = CancellationToken::new();
    let on_signal = stop.clone();
    let signal = tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_signal.cancel();
        }
    });
    let bar = output::progress(chosen.len() as u64, "provision", out.is_json());
    let report = provision(&pool, &client, &target, &chosen, &stop, |row| {
        bar.set_message(row.tenant.to_string());
        bar.inc(1);
    })
    .await;
    bar.finish_and_clear();
    signal.abort();
    let report = report?;
    let nats = ctx.nats().await.ok();
    for row in &report.rows {
        if matches!(row.outcome, TenantOutcome::Provisioned { .. }) {
            announce_tenant_change(nats.as_ref(), &row.tenant).await;
        }
    }
    out.emit(&report, |w| {
        let mut t = output::table(["tenant", "outcome", "bridge", "detail"]);
        for r in &report.rows {
            let (outcome, bridge, detail) = match &r.outcome {
                TenantOutcome::Provisioned { bridge_id, state } => {
                    ("provisioned", bridge_id.to_string(), state.clone())
                }
                TenantOutcome::Skipped { bridge_id } => (
                    "skipped",
                    bridge_id.to_string(),
                    "already provisioned".to_owned(),
                ),
                TenantOutcome::Failed { error } => ("failed", "-".to_owned(), error.clone()),
            };
            t.add_row(vec![
                r.tenant.to_string(),
                outcome.to_owned(),
                bridge,
                detail,
            ]);
        }
        output::write_table(w, &t)?;
        writeln!(
            w,
            "{} provisioned, {} skipped, {} failed, {} rate-limit wait(s)",
            report.count(|o| matches!(o, TenantOutcome::Provisioned { .. })),
            report.count(|o| matches!(o, TenantOutcome::Skipped { .. })),
            report.count(|o| matches!(o, TenantOutcome::Failed { .. })),
            report.rate_limited_waits
        )?;
        if !report.not_reached.is_empty() {
            writeln!(
                w,
                "interrupted: {} tenant(s) not reached; run the same command again to finish",
                report.not_reached.len()
            )?;
        }
        Ok(())
    })?;
    Ok(report.exit())
}
