//! `switchyard status [TENANT]`: why a tenant is (not) getting answers, and
//! the fleet at a glance. Reads what every router and sender replica
//! publishes to the status bucket (`switchyard_shared::tenant_status`),
//! merged across replicas, plus the tenants table (bridge state, suspension)
//! and, for one tenant, its human takeovers (PostgreSQL is their truth: they
//! outlive any replica).
//!
//! - [`verdict`]: the one line that answers the operator's question (pure);
//! - [`tenant`]: one tenant in full;
//! - [`fleet`]: counts by bridge state and hold reason, the largest backlogs,
//!   the oldest waiting reply;
//! - [`clock`]: how times are shown.

pub mod clock;
pub mod fleet;
pub mod tenant;
pub mod verdict;

use switchyard_shared::{ids::TenantId, tenant_status::StatusStore};

use crate::{
    context::Context,
    exit::{CliError, CliResult, Exit},
    output::Output,
};

/// `switchyard status`.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// One tenant in full (its customer_ref); without it, the fleet.
    pub tenant: Option<String>,
    /// Fleet view: how many of the most backlogged tenants to list.
    #[arg(long, default_value_t = 10)]
    pub top: usize,
}

pub async fn run(args: StatusArgs, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let tenant = args
        .tenant
        .as_deref()
        .map(|raw| {
            TenantId::parse(raw).map_err(|e| CliError::bad_input(format!("tenant {raw:?}: {e}")))
        })
        .transpose()?;
    let pool = ctx.db()?;
    let js = ctx.jetstream().await?;
    let store = StatusStore::existing(&js)
        .await
        .map_err(|e| anyhow::anyhow!("cannot open the tenant status bucket: {e}"))?;
    match tenant {
        Some(tenant) => tenant::run(&pool, store.as_ref(), &tenant, out).await,
        None => fleet::run(&pool, store.as_ref(), args.top, out).await,
    }
}
