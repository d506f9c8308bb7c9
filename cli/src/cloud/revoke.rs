//! `tenants cloud revoke-token`: drops a tenant's sealed token (asks first).
//! Its sends are held (the sender finds no usable credential) until a new
//! token is connected with `rotate-token`. Meta is not called: the token
//! itself stays valid there until the customer removes our app or it is
//! reset, which the output says.

use clap::Args;
use serde::Serialize;
use switchyard_shared::{
    cloud_api::channel::{self, TokenState},
    ids::TenantId,
};

use crate::{
    context::{Context, announce_tenant_change},
    exit::{CliResult, Exit},
    output::Output,
};

#[derive(Debug, Args)]
pub struct RevokeArgs {
    pub tenant: TenantId,
    /// Do not ask (for scripts). Required when stdin is not a terminal.
    #[arg(long)]
    pub yes: bool,
    /// Report what would change; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// What `revoke-token` did.
#[derive(Debug, Serialize)]
pub struct Revoked {
    pub tenant: TenantId,
    pub dry_run: bool,
    pub previous_token_state: &'static str,
    pub token_state: &'static str,
    pub note: &'static str,
}

const NOTE: &str = "sends are held until a new token is connected (tenants cloud rotate-token); \
                    the token stays valid at Meta until the customer removes the app or it is reset";

pub async fn run(args: RevokeArgs, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let pool = ctx.db()?;
    let tenant = &args.tenant;
    let row = super::channel_row(&pool, tenant).await?;
    let previous = row.token_state;
    let already = previous == TokenState::Revoked && row.token.is_none();
    if !args.dry_run && !already {
        crate::dlq::confirm(
            args.yes,
            &format!(
                "Revoke the Cloud API token of {tenant}? Its sends stop until a new token is connected."
            ),
        )?;
        channel::set_token_state(&pool, tenant, TokenState::Revoked).await?;
        let nats = ctx.nats().await.ok();
        announce_tenant_change(nats.as_ref(), tenant).await;
    }
    let done = Revoked {
        tenant: tenant.clone(),
        dry_run: args.dry_run,
        previous_token_state: previous.as_str(),
        token_state: if args.dry_run {
            previous.as_str()
        } else {
            TokenState::Revoked.as_str()
        },
        note: NOTE,
    };
    out.emit(&done, |w| {
        if args.dry_run {
            writeln!(
                w,
                "dry run: would revoke the token of {tenant} (now {})",
                done.previous_token_state
            )
        } else if already {
            writeln!(w, "the token of {tenant} was already revoked")
        } else {
            writeln!(
                w,
                "token of {tenant} revoked (was {}): {NOTE}",
                done.previous_token_state
            )
        }
    })?;
    Ok(Exit::Ok)
}
