//! `fleet delete <tenant>` (and `fleet delete --orphan <bridge>…`, see
//! [`crate::fleet::orphans`]): the only command that deletes a bridge. Deletion
//! is permanent at the provider (and stops billing), so it asks: the operator
//! types the tenant id, or passes `--yes` in a script. Without a terminal and
//! without `--yes` it refuses rather than guess.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use clap::Args;
use serde::Serialize;
use sqlx::PgPool;
use switchyard_shared::{
    ids::{BridgeId, TenantId},
    wabridges::{WaBridgesClient, WaError},
};

use crate::{
    context::{Context, announce_tenant_change},
    exit::{CliError, CliResult, Exit},
    output::Output,
    tenants::require,
};

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["tenant", "orphan"])))]
pub struct DeleteArgs {
    /// The tenant whose bridge to delete.
    pub tenant: Option<TenantId>,
    /// Delete these bridges, which no tenant owns (`fleet reconcile` lists them).
    #[arg(long, num_args = 1.., value_name = "BRIDGE", value_parser = parse_bridge_id)]
    pub orphan: Vec<BridgeId>,
    /// Do not ask (for scripts). Required when stdin is not a terminal.
    #[arg(long)]
    pub yes: bool,
    /// With --orphan: check each bridge as for real and say what would be deleted; delete nothing.
    #[arg(long, requires = "orphan")]
    pub dry_run: bool,
}

fn parse_bridge_id(raw: &str) -> Result<BridgeId, String> {
    raw.trim()
        .parse::<i64>()
        .ok()
        .and_then(|n| BridgeId::new(n).ok())
        .ok_or_else(|| format!("{raw:?} is no bridge id (a positive number)"))
}

#[derive(Debug, Clone, Serialize)]
pub struct DeleteReport {
    pub tenant: TenantId,
    pub bridge_id: i64,
    /// False when the provider no longer knew the bridge (the row is cleared all the same).
    pub deleted_at_provider: bool,
}

/// The bridge of `tenant`: the stored id, else the provider's bridge with its customer_ref.
pub async fn bridge_of(
    pool: &PgPool,
    client: &WaBridgesClient,
    tenant: &TenantId,
) -> CliResult<BridgeId> {
    let row = require(pool, tenant).await?;
    if let Some(id) = row.bridge_id {
        return Ok(id);
    }
    client
        .list()
        .await?
        .into_iter()
        .find(|b| b.customer_ref == tenant.as_str())
        .map(|b| b.id)
        .ok_or_else(|| CliError::bad_input(format!("tenant {tenant} has no bridge")))
}

/// Deletes the bridge (already confirmed) and clears it from the tenant row.
pub async fn delete(
    pool: &PgPool,
    client: &WaBridgesClient,
    tenant: &TenantId,
    bridge: BridgeId,
) -> CliResult<DeleteReport> {
    let deleted_at_provider = match client.delete(bridge).await {
        Ok(()) => true,
        Err(WaError::Rejected { status: 404, .. }) => false,
        Err(e) => return Err(e.into()),
    };
    sqlx::query(
        "UPDATE tenants SET bridge_id = NULL, bridge_state = 'unprovisioned', \
         bridge_state_at = now(), updated_at = now() \
         WHERE id = $1 AND (bridge_id = $2 OR bridge_id IS NULL)",
    )
    .bind(tenant.as_str())
    .bind(bridge.get())
    .execute(pool)
    .await?;
    Ok(DeleteReport {
        tenant: tenant.clone(),
        bridge_id: bridge.get(),
        deleted_at_provider,
    })
}

/// Asks on the terminal; `false` unless the operator types the tenant id.
fn confirm(tenant: &TenantId, bridge: BridgeId) -> CliResult<bool> {
    let mut err = std::io::stderr();
    write!(
        err,
        "Delete bridge {bridge} of tenant {tenant}? This is permanent and stops its WhatsApp number.\nType the tenant id to confirm: "
    )?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == tenant.as_str())
}

pub async fn run(args: DeleteArgs, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let Some(tenant) = args.tenant else {
        return crate::fleet::orphans::run(args.orphan, args.yes, args.dry_run, ctx, out).await;
    };
    if !args.yes && !std::io::stdin().is_terminal() {
        return Err(CliError::bad_input(
            "refusing to delete without confirmation: stdin is not a terminal; pass --yes",
        ));
    }
    let pool = ctx.db()?;
    let client = ctx.wabridges()?;
    let bridge = bridge_of(&pool, &client, &tenant).await?;
    if !args.yes && !confirm(&tenant, bridge)? {
        return Err(CliError::bad_input("not confirmed; nothing deleted"));
    }
    let report = delete(&pool, &client, &tenant, bridge).await?;
    let nats = ctx.nats().await.ok();
    announce_tenant_change(nats.as_ref(), &tenant).await;
    out.emit(&report, |w| {
        writeln!(
            w,
            "deleted bridge {} of tenant {}{}",
            report.bridge_id,
            report.tenant,
            if report.deleted_at_provider {
                ""
            } else {
                " (the provider no longer had it)"
            }
        )
    })?;
    Ok(Exit::Ok)
}
