//! `switchyard fleet …`: the provider's recommended operations on our
//! bridges. Provisioning and reconciliation only ever create or record;
//! `fleet delete` is the one path that deletes, and it asks first.

pub mod delete;
pub mod orphans;
pub mod pace;
pub mod pair;
pub mod provision;
pub mod qr_terminal;
pub mod reconcile;
pub mod repoint;
pub mod stuck;
pub mod summary;

use clap::Subcommand;
use sqlx::PgPool;
use switchyard_shared::{
    channel::Channel,
    ids::TenantId,
    tenants::{self, Tenant},
};

use crate::{
    context::Context,
    exit::{CliError, CliResult, Exit},
    output::Output,
};

/// The tenants whose number is a WA Bridges bridge: the fleet's. A Cloud API
/// tenant has no bridge by design, so it is neither "without a bridge" nor
/// ever provisioned one.
pub async fn bridge_tenants(pool: &PgPool) -> CliResult<Vec<Tenant>> {
    Ok(tenants::list(pool)
        .await?
        .into_iter()
        .filter(|t| t.channel == Channel::Wabridges)
        .collect())
}

/// Refuses a named tenant that is on the Cloud API (exit 2, nothing done).
pub fn require_bridge_channel(tenant: &Tenant) -> CliResult<()> {
    if tenant.channel == Channel::Wabridges {
        return Ok(());
    }
    Err(CliError::bad_input(format!(
        "tenant {} is on the {} channel: it has no WA Bridges bridge",
        tenant.id, tenant.channel
    )))
}

/// [`require_bridge_channel`] for a tenant id (unknown tenants refused too).
pub async fn require_bridge_tenant(pool: &PgPool, tenant: &TenantId) -> CliResult<Tenant> {
    let row = crate::tenants::require(pool, tenant).await?;
    require_bridge_channel(&row)?;
    Ok(row)
}

#[derive(Debug, Subcommand)]
pub enum FleetCommand {
    /// Create each tenant's bridge (idempotent; resumable; paced by the provider's limit).
    Provision(provision::ProvisionArgs),
    /// Diff every bridge against the tenants table and record the provider's state.
    ///
    /// Never deletes. Exits 3 when drift exists (orphans, tenants without a
    /// bridge, state drift), so cron can alert on it.
    Reconcile(reconcile::ReconcileArgs),
    /// Bridges by state and the monthly cost.
    Summary,
    /// Delete a tenant's bridge, or (--orphan) bridges no tenant owns (permanent; asks first).
    Delete(delete::DeleteArgs),
    /// Pair a tenant's bridge: a link code for its phone (--phone) or the QR code (--qr FILE).
    Pair(pair::PairArgs),
    /// Bridges awaiting pairing or disconnected for longer than --older-than (exit 3 if any).
    Stuck(stuck::StuckArgs),
    /// Re-provision bridges with their webhook URL under the current secret and public URL.
    Repoint(repoint::RepointArgs),
}

/// Runs a `fleet` subcommand.
pub async fn run(command: FleetCommand, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    match command {
        FleetCommand::Provision(args) => provision::run(args, ctx, out).await,
        FleetCommand::Reconcile(args) => reconcile::run(args, ctx, out).await,
        FleetCommand::Summary => summary::run(ctx, out).await,
        FleetCommand::Delete(args) => delete::run(args, ctx, out).await,
        FleetCommand::Pair(args) => pair::run(args, ctx, out).await,
        FleetCommand::Stuck(args) => stuck::run(args, ctx, out).await,
        FleetCommand::Repoint(args) => repoint::run(args, ctx, out).await,
    }
}
