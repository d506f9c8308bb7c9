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

use crate::{
    context::Context,
    exit::{CliResult, Exit},
    output::Output,
};

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
