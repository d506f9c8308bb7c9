//! The operator CLI as a library: `main` only parses and calls [`run`];
//! tests call [`run`] with their own environment and output buffer, or the
//! command functions directly.
//!
//! - [`tenants`]: the tenants table (add, list, show, suspend, resume, limits, bot);
//! - [`fleet`]: bridges at the provider (provision, reconcile, summary, delete);
//! - [`dlq`], [`replay`]: dead letters (list, show, replay, purge);
//! - [`whatsapp`]: pacing and takeover settings, resuming a held tenant, human takeovers;
//! - [`recover`]: re-running a tenant's events from the inbound event log;
//! - [`output`]: tables or `--json`, progress bars; [`exit`]: exit codes;
//! - [`context`]: the stores, built from the environment on demand; [`stored`]: reading streams back.

pub mod context;
pub mod dlq;
pub mod exit;
pub mod fleet;
pub mod output;
pub mod recover;
pub mod replay;
pub mod stored;
pub mod tenants;
pub mod whatsapp;

use clap::{Parser, Subcommand};
use switchyard_shared::{config::Env, db};

use crate::{
    context::Context,
    exit::{CliResult, EXIT_CODES_HELP, Exit},
    output::Output,
};

/// Operate a Switchyard deployment: tenants, the bridge fleet, dead letters and replay.
#[derive(Debug, Parser)]
#[command(name = "switchyard", version = switchyard_build_info::version!(), after_help = EXIT_CODES_HELP)]
pub struct Cli {
    /// Print results as JSON (for scripts) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply pending database migrations (reads DATABASE_URL).
    Migrate,
    /// Tenants: add, list, show, suspend, resume, set-limits, set-bot, set-whatsapp, resume-sending.
    #[command(subcommand)]
    Tenants(tenants::TenantsCommand),
    /// The bridge fleet at WA Bridges: provision, reconcile, summary, delete.
    #[command(subcommand, after_help = EXIT_CODES_HELP)]
    Fleet(fleet::FleetCommand),
    /// Dead letters: list, show, replay, purge.
    #[command(subcommand)]
    Dlq(dlq::DlqCommand),
    /// Re-run a tenant's inbound events from the event log (no double sends).
    Recover(recover::RecoverArgs),
    /// Human takeovers: chats where the bot is silent because a person answered.
    #[command(subcommand)]
    Takeover(whatsapp::TakeoverCommand),
}

/// Runs one command against the stores `env` names; returns the exit code
/// after writing the result (or the error, to stderr).
pub async fn run(cli: Cli, env: Env, out: &mut Output) -> Exit {
    let ctx = Context::new(env);
    match dispatch(cli.command, &ctx, out).await {
        Ok(exit) => exit,
        Err(e) => {
            output::warn_error(&e);
            e.exit()
        }
    }
}

async fn dispatch(command: Command, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    match command {
        Command::Migrate => {
            let pool = ctx.db()?;
            db::migrate(&pool).await?;
            out.note("migrations applied")?;
            Ok(Exit::Ok)
        }
        Command::Tenants(c) => tenants::run(c, ctx, out).await,
        Command::Fleet(c) => fleet::run(c, ctx, out).await,
        Command::Dlq(c) => dlq::run(c, ctx, out).await,
        Command::Recover(args) => recover::run(args, ctx, out).await,
        Command::Takeover(c) => whatsapp::run_takeover(c, ctx, out).await,
    }
}
