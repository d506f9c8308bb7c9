//! The operator CLI as a library: `main` only parses and calls [`run`];
//! tests call [`run`] with their own environment and output buffer, or the
//! command functions directly.
//!
//! - [`tenants`]: the tenants table (add, list, show, suspend, resume, limits, bot, remove);
//! - [`cloud`]: `tenants cloud`, a Cloud API tenant's number and sealed token (connect, rotate, revoke, reseal, show);
//! - [`contacts`]: a tenant's staff and customer records (add, list, remove, import CSV);
//! - [`offboard`]: `tenants remove`, the resumable offboarding path;
//! - [`notify`]: `tenants notify`, a tenant's notification URL and signing secret (on, rotate, off);
//! - [`rotate_webhook`]: `tenants rotate-webhook`, one tenant's new webhook URL (old one kept for a window, or revoked);
//! - [`fleet`]: bridges at the provider (provision, reconcile, summary, delete, pair, stuck, repoint);
//! - [`dlq`], [`replay`]: dead letters (list, show, replay, purge);
//! - [`whatsapp`]: pacing and takeover settings, resuming a held tenant, human takeovers;
//! - [`recover`]: re-running a tenant's events from the inbound event log;
//! - [`status`]: live state of the fleet or one tenant, from what every replica publishes;
//! - [`output`]: tables or `--json`, progress bars; [`exit`]: exit codes;
//! - [`context`]: the stores, built from the environment on demand; [`stored`]: reading streams back;
//! - [`metrics`]: every metric name the CLI emits (`fleet reconcile --watch`).

pub mod cloud;
pub mod contacts;
pub mod context;
pub mod dlq;
pub mod exit;
pub mod fleet;
pub mod metrics;
pub mod notify;
pub mod offboard;
pub mod output;
pub mod recover;
pub mod replay;
pub mod rotate_webhook;
pub mod status;
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
    /// Apply pending database migrations (reads DATABASE_URL); with --check, only report.
    Migrate(MigrateArgs),
    /// Tenants: add, list, show, suspend, resume, set-limits, set-bot, set-whatsapp, resume-sending, rotate-webhook, notify, remove, cloud.
    #[command(subcommand)]
    Tenants(tenants::TenantsCommand),
    /// A tenant's contacts (staff, customers, their resources): add, list, remove, import.
    #[command(subcommand)]
    Contacts(contacts::ContactsCommand),
    /// The bridge fleet at WA Bridges: provision, reconcile, summary, delete, pair, stuck, repoint.
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
    /// Live state: the fleet (bridge states, holds, backlogs), or one tenant in full with a verdict.
    Status(status::StatusArgs),
}

/// `switchyard migrate`: apply, or (`--check`) only tell whether the schema is
/// current; the workers' init containers use `--check --wait` so they start
/// only after the migration job (docs/operations.md, deploy/k8s).
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    /// Change nothing: exit 0 if every migration is applied, 3 if some are pending.
    #[arg(long)]
    pub check: bool,
    /// With --check: keep checking (every 2s, also while the database is
    /// unreachable) until the schema is current, for at most this long (e.g. 10m).
    #[arg(long, requires = "check", value_parser = humantime::parse_duration)]
    pub wait: Option<std::time::Duration>,
}

/// Runs one command against the stores `env` names; returns the exit code
/// after writing the result (or the error, to stderr).
pub async fn run(cli: Cli, env: Env, out: &mut Output) -> Exit {
    match try_run(cli, env, out).await {
        Ok(exit) => exit,
        Err(e) => {
            output::warn_error(&e);
            e.exit()
        }
    }
}

/// [`run`], handing the error back instead of writing it (tests read it).
pub async fn try_run(cli: Cli, env: Env, out: &mut Output) -> CliResult<Exit> {
    let ctx = Context::new(env);
    dispatch(cli.command, &ctx, out).await
}

/// [`try_run`] with `stdin` in place of the process's standard input (tests
/// hand secrets to `--token-stdin` this way).
pub async fn try_run_with_stdin(
    cli: Cli,
    env: Env,
    stdin: context::Stdin,
    out: &mut Output,
) -> CliResult<Exit> {
    let ctx = Context::with_stdin(env, stdin);
    dispatch(cli.command, &ctx, out).await
}

async fn dispatch(command: Command, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    match command {
        Command::Migrate(args) if args.check => check_migrations(&args, ctx, out).await,
        Command::Migrate(_) => {
            let pool = ctx.db()?;
            db::migrate(&pool).await?;
            out.note("migrations applied")?;
            Ok(Exit::Ok)
        }
        Command::Tenants(c) => tenants::run(c, ctx, out).await,
        Command::Contacts(c) => contacts::run(c, ctx, out).await,
        Command::Fleet(c) => fleet::run(c, ctx, out).await,
        Command::Dlq(c) => dlq::run(c, ctx, out).await,
        Command::Recover(args) => recover::run(args, ctx, out).await,
        Command::Takeover(c) => whatsapp::run_takeover(c, ctx, out).await,
        Command::Status(args) => status::run(args, ctx, out).await,
    }
}

/// `migrate --check [--wait D]`: 0 when current, 3 (drift) when migrations are
/// pending, 1 when the database cannot be read (after `D`, with `--wait`).
async fn check_migrations(args: &MigrateArgs, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let pool = ctx.db()?;
    let deadline = args.wait.map(|wait| tokio::time::Instant::now() + wait);
    loop {
        let pending = db::pending_migrations(&pool).await;
        let give_up = deadline.is_none_or(|d| tokio::time::Instant::now() >= d);
        match pending {
            Ok(pending) if pending.is_empty() => {
                out.note("the schema is current")?;
                return Ok(Exit::Ok);
            }
            Ok(pending) if give_up => {
                out.note(&format!("migrations pending: {pending:?}"))?;
                return Ok(Exit::Drift);
            }
            Err(e) if give_up => return Err(e.into()),
            _ => tokio::time::sleep(std::time::Duration::from_secs(2)).await,
        }
    }
}
