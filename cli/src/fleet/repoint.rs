//! `fleet repoint`: give existing bridges a new `webhook_url`, built from the
//! current `SWITCHYARD_WEBHOOK_SECRET` and `SWITCHYARD_PUBLIC_URL` (a webhook
//! secret rotation, a new ingest address). The only API call that carries a
//! URL is provisioning, which is idempotent on `customer_ref`; whether a
//! repeat updates the URL of an existing bridge is **undocumented**, and no
//! documented answer shows a bridge's URL. So every bridge is re-provisioned
//! (paced under the provisioning limit, `Retry-After` honoured), and the
//! report says, per bridge, what the operator must do if the provider kept
//! the old URL: set it in the provider's dashboard (`--urls-to FILE` writes
//! the URLs, which carry the secret, to a file only the owner can read; they
//! are never printed) and keep the previous secret on ingest
//! (`SWITCHYARD_WEBHOOK_SECRET_PREVIOUS`) until the events arrive under the new one.

use std::{io::Write as _, path::PathBuf};

use clap::Args;
use serde::Serialize;
use sqlx::PgPool;
use switchyard_shared::{
    ids::TenantId, tenants, wabridges::WaBridgesClient, webhook_auth::Generation,
};
use tokio_util::sync::CancellationToken;

use crate::{
    context::{Context, WebhookTarget},
    exit::{CliError, CliResult, Exit},
    fleet::pace::{Paced, ctrl_c, paced},
    output::{self, Output},
};

#[derive(Debug, Args)]
pub struct RepointArgs {
    /// Tenants whose bridge to repoint.
    #[arg(required_unless_present = "all")]
    pub tenants: Vec<TenantId>,
    /// Every tenant that has a bridge.
    #[arg(long, conflicts_with = "tenants")]
    pub all: bool,
    /// Say which bridges would be re-provisioned; call nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also write `bridge_id<TAB>tenant<TAB>webhook_url` lines to this file (mode 0600),
    /// for setting the URLs in the provider's dashboard. The URLs carry the secret.
    #[arg(long, value_name = "FILE")]
    pub urls_to: Option<PathBuf>,
}

/// What happened to one tenant's bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum RepointOutcome {
    /// The provider accepted the new URL for this bridge; whether it replaced the old one is
    /// undocumented, hence `operator_action`.
    Resent {
        bridge_id: i64,
        operator_action: String,
    },
    /// `--dry-run`.
    WouldResend {
        bridge_id: i64,
    },
    /// No bridge: `fleet provision` sets the URL.
    Skipped {
        reason: String,
    },
    Failed {
        error: String,
    },
}

#[derive(Debug, Clone, Serialize)]
pub struct RepointRow {
    pub tenant: TenantId,
    /// The credential generation of the URL sent (the tenant row's; not a secret).
    pub webhook_generation: Generation,
    #[serde(flatten)]
    pub outcome: RepointOutcome,
}

#[derive(Debug, Clone, Serialize)]
pub struct RepointReport {
    pub dry_run: bool,
    pub rows: Vec<RepointRow>,
    pub rate_limited_waits: u32,
    pub not_reached: Vec<TenantId>,
    /// Where the URLs were written, if asked.
    pub urls_file: Option<PathBuf>,
}

impl RepointReport {
    pub fn exit(&self) -> Exit {
        if !self.not_reached.is_empty() {
            Exit::Interrupted
        } else if self
            .rows
            .iter()
            .any(|r| matches!(r.outcome, RepointOutcome::Failed { .. }))
        {
            Exit::Partial
        } else {
            Exit::Ok
        }
    }
}

/// What the operator must do for `bridge` if the provider kept its old URL.
fn operator_action(bridge: i64) -> String {
    format!(
        "if the provider kept the old URL (a repeated provisioning is not documented to update it), \
         set bridge {bridge}'s webhook URL in the WA Bridges dashboard (see --urls-to); \
         keep SWITCHYARD_WEBHOOK_SECRET_PREVIOUS on ingest until its events arrive under the new secret"
    )
}

async fn select(pool: &PgPool, args: &RepointArgs) -> CliResult<Vec<TenantId>> {
    if args.all {
        return Ok(super::bridge_tenants(pool)
            .await?
            .into_iter()
            .filter(|t| t.bridge_id.is_some())
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

/// Re-provisions each tenant's bridge with its URL under `target`.
pub async fn repoint(
    pool: &PgPool,
    client: &WaBridgesClient,
    target: &WebhookTarget,
    chosen: &[TenantId],
    dry_run: bool,
    stop: &CancellationToken,
) -> CliResult<RepointReport> {
    let mut report = RepointReport {
        dry_run,
        rows: Vec::new(),
        rate_limited_waits: 0,
        not_reached: Vec::new(),
        urls_file: None,
    };
    for (i, tenant) in chosen.iter().enumerate() {
        let row = tenants::fetch(pool, tenant).await?;
        let generation = row
            .as_ref()
            .map(|r| r.webhook.generation)
            .unwrap_or_default();
        let Some(bridge) = row.and_then(|r| r.bridge_id) else {
            report.rows.push(RepointRow {
                tenant: tenant.clone(),
                webhook_generation: generation,
                outcome: RepointOutcome::Skipped {
                    reason: "no bridge: `fleet provision` sets the URL".to_owned(),
                },
            });
            continue;
        };
        if dry_run {
            report.rows.push(RepointRow {
                tenant: tenant.clone(),
                webhook_generation: generation,
                outcome: RepointOutcome::WouldResend {
                    bridge_id: bridge.get(),
                },
            });
            continue;
        }
        let url = target.url_for(tenant, generation);
        let outcome = match paced(stop, &mut report.rate_limited_waits, || {
            client.provision(tenant, &url)
        })
        .await
        {
            Paced::Interrupted => {
                report.not_reached = chosen[i..].to_vec();
                break;
            }
            Paced::Done(Ok(answer)) if answer.id == bridge => RepointOutcome::Resent {
                bridge_id: bridge.get(),
                operator_action: operator_action(bridge.get()),
            },
            Paced::Done(Ok(answer)) => RepointOutcome::Failed {
                error: format!(
                    "the provider answered with bridge {}, the table holds {bridge}: run `fleet reconcile`",
                    answer.id
                ),
            },
            Paced::Done(Err(e)) => RepointOutcome::Failed {
                error: e.to_string(),
            },
        };
        report.rows.push(RepointRow {
            tenant: tenant.clone(),
            webhook_generation: generation,
            outcome,
        });
    }
    Ok(report)
}

/// Writes the URLs of the repointed bridges, readable by the owner only.
pub(crate) fn write_urls(
    file: &PathBuf,
    target: &WebhookTarget,
    report: &RepointReport,
) -> CliResult<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options
        .open(file)
        .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", file.display()))?;
    for r in &report.rows {
        if let RepointOutcome::Resent { bridge_id, .. }
        | RepointOutcome::WouldResend { bridge_id } = &r.outcome
        {
            writeln!(
                f,
                "{bridge_id}\t{}\t{}",
                r.tenant,
                target.url_for(&r.tenant, r.webhook_generation)
            )?;
        }
    }
    Ok(())
}

pub async fn run(args: RepointArgs, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let pool = ctx.db()?;
    let client = ctx.wabridges()?;
    let target = ctx.webhook_target()?;
    let chosen = select(&pool, &args).await?;
    let (stop, signal) = ctrl_c();
    let report = repoint(&pool, &client, &target, &chosen, args.dry_run, &stop).await;
    signal.abort();
    let mut report = report?;
    if let Some(file) = &args.urls_to {
        write_urls(file, &target, &report)?;
        report.urls_file = Some(file.clone());
    }
    out.emit(&report, |w| {
        let mut t = output::table(["tenant", "bridge", "outcome", "if the provider kept the old URL"]);
        let mut resent = 0;
        for r in &report.rows {
            let (bridge, outcome, detail) = match &r.outcome {
                RepointOutcome::Resent { bridge_id, .. } => {
                    resent += 1;
                    (
                        bridge_id.to_string(),
                        "URL re-sent",
                        format!("set bridge {bridge_id}'s URL in the dashboard"),
                    )
                }
                RepointOutcome::WouldResend { bridge_id } => {
                    resent += 1;
                    (bridge_id.to_string(), "would re-provision", "-".to_owned())
                }
                RepointOutcome::Skipped { reason } => ("-".to_owned(), "skipped", reason.clone()),
                RepointOutcome::Failed { error } => ("-".to_owned(), "failed", error.clone()),
            };
            t.add_row(vec![
                r.tenant.to_string(),
                bridge,
                outcome.to_owned(),
                detail,
            ]);
        }
        output::write_table(w, &t)?;
        writeln!(
            w,
            "{resent} bridge(s) {}, {} rate-limit wait(s){}",
            if report.dry_run {
                "would be re-provisioned (dry run: nothing called)"
            } else {
                "re-provisioned with the new URL (whether the provider replaces a URL is undocumented)"
            },
            report.rate_limited_waits,
            report
                .urls_file
                .as_ref()
                .map(|f| format!("; URLs (secret) written to {}", f.display()))
                .unwrap_or_default()
        )?;
        if resent > 0 && !report.dry_run {
            writeln!(
                w,
                "If a bridge's events stop, or still arrive only under the previous secret, the provider kept \
                 its old URL: set the URL from --urls-to in the WA Bridges dashboard. Keep \
                 SWITCHYARD_WEBHOOK_SECRET_PREVIOUS on ingest until then."
            )?;
        }
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
