//! `tenants cloud connect | rotate-token | subscribe`: a tenant's number and a
//! new business token, sealed and stored (docs/cloud-api.md section 2).
//!
//! With `--signup-code-stdin` the steps of Embedded Signup run in order:
//! exchange the code (it lives 30 s and works once, so every check that
//! needs no network runs before), seal and store the token, subscribe the
//! WABA's webhooks. Each step's outcome is reported, and a failed step names
//! what the operator must redo: a failed exchange or store needs a new code
//! (the token is gone), a failed subscription only `tenants cloud subscribe`.
//! No database transaction spans a Graph call.
//!
//! A stored token is announced (routers and ingest drop their cached row)
//! and, when the tenant may be held for its old token, every sender is told
//! to lift the hold (as `tenants resume-sending`).

use std::io::Write;

use clap::Args;
use secrecy::SecretString;
use serde::Serialize;
use sqlx::PgPool;
use switchyard_shared::{
    channel::Channel,
    cloud_api::{
        CloudClient,
        channel::{self, NewChannel, TokenState},
        token_box::TokenKeys,
    },
    ids::TenantId,
};

use super::secret_input::{self, Credential, CredentialArgs};
use crate::{
    context::{Context, announce_tenant_change},
    exit::{CliError, CliResult, Exit},
    output::{self, Output},
    tenants::require,
};

#[derive(Debug, Args)]
pub struct ConnectArgs {
    pub tenant: TenantId,
    /// The number's id at Meta (`metadata.phone_number_id`; the send path).
    #[arg(long)]
    pub phone_number_id: String,
    /// The WhatsApp Business Account that owns the number.
    #[arg(long)]
    pub waba_id: String,
    /// The number as people dial it, for tables (at most 32 characters).
    #[arg(long)]
    pub display_phone_number: Option<String>,
    #[command(flatten)]
    pub credential: CredentialArgs,
    /// Check everything and report the plan; store nothing, call nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Args)]
pub struct RotateArgs {
    pub tenant: TenantId,
    #[command(flatten)]
    pub credential: CredentialArgs,
    /// Check everything and report the plan; store nothing, call nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// One step of a connect or rotation.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: &'static str,
    pub outcome: StepOutcome,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepOutcome {
    Done,
    Failed,
    /// `--dry-run`: this would run.
    WouldRun,
    /// Not reached because an earlier step failed.
    NotRun,
}

impl StepOutcome {
    fn as_str(self) -> &'static str {
        match self {
            StepOutcome::Done => "done",
            StepOutcome::Failed => "FAILED",
            StepOutcome::WouldRun => "would run",
            StepOutcome::NotRun => "not run",
        }
    }
}

/// What `connect` / `rotate-token` did (never the token).
#[derive(Debug, Serialize)]
pub struct CredentialReport {
    pub tenant: TenantId,
    pub command: &'static str,
    pub dry_run: bool,
    pub phone_number_id: String,
    pub waba_id: String,
    pub display_phone_number: Option<String>,
    pub previous_channel: Channel,
    pub channel: Channel,
    pub previous_token_state: Option<&'static str>,
    pub token_state: Option<&'static str>,
    /// The key the new token is (or would be) sealed with.
    pub token_key_id: String,
    /// `stdin`, `file` or `signup_code`.
    pub source: &'static str,
    pub steps: Vec<Step>,
    /// What the operator must run or do to finish, in order.
    pub redo: Vec<String>,
}

impl CredentialReport {
    fn step(&mut self, step: &'static str, outcome: StepOutcome, detail: Option<String>) {
        self.steps.push(Step {
            step,
            outcome,
            detail,
        });
    }

    /// The steps after a failure, marked as not reached.
    fn not_run(&mut self, steps: &[&'static str]) {
        for step in steps {
            self.step(step, StepOutcome::NotRun, None);
        }
    }

    fn failed(&self) -> bool {
        self.steps.iter().any(|s| s.outcome == StepOutcome::Failed)
    }
}

/// What the command checked before any change.
struct Plan {
    pool: PgPool,
    keys: TokenKeys,
    /// Set for `--signup-code-stdin`: the client and our app's credentials.
    signup: Option<(CloudClient, String, SecretString)>,
    credential: Credential,
    /// Whether a Cloud channel existed: its tenant may be held for its old token.
    reconnect: bool,
}

/// The settings a command needs, checked before anything is read or
/// changed, so a refused command consumes no signup code.
fn signup_parts(
    ctx: &Context,
    credential: &CredentialArgs,
) -> CliResult<Option<(CloudClient, String, SecretString)>> {
    if !credential.signup_code_stdin {
        return Ok(None);
    }
    let (app_id, app_secret) = super::app_credentials(ctx.env())?;
    Ok(Some((super::client(ctx.env())?, app_id, app_secret)))
}

/// `tenants cloud connect`.
pub async fn run_connect(args: ConnectArgs, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let phone_number_id = super::check_id("--phone-number-id", &args.phone_number_id)?;
    let waba_id = super::check_id("--waba-id", &args.waba_id)?;
    let display = args
        .display_phone_number
        .as_deref()
        .map(str::trim)
        .filter(|d| !d.is_empty());
    if display.is_some_and(|d| d.chars().count() > 32) {
        return Err(CliError::bad_input(
            "--display-phone-number is longer than 32 characters",
        ));
    }
    let signup = signup_parts(ctx, &args.credential)?;
    let keys = super::token_keys(ctx.env())?;
    let pool = ctx.db()?;
    let tenant = require(&pool, &args.tenant).await?;
    if let Some(owner) = channel::number_owner(&pool, &phone_number_id).await?
        && owner != args.tenant
    {
        return Err(CliError::bad_input(format!(
            "phone number id {phone_number_id} is already connected to tenant {owner}"
        )));
    }
    let previous = channel::fetch_in(&pool, &args.tenant).await?;
    let mut report = CredentialReport {
        tenant: args.tenant.clone(),
        command: "connect",
        dry_run: args.dry_run,
        phone_number_id,
        waba_id,
        display_phone_number: display.map(str::to_owned),
        previous_channel: tenant.channel,
        channel: tenant.channel,
        previous_token_state: previous.as_ref().map(|p| p.token_state.as_str()),
        token_state: previous.as_ref().map(|p| p.token_state.as_str()),
        token_key_id: keys.sealing_key_id().to_owned(),
        source: args.credential.source(),
        steps: Vec::new(),
        redo: Vec::new(),
    };
    let plan = Plan {
        credential: secret_input::read(&args.credential, ctx)?,
        pool,
        keys,
        signup,
        reconnect: previous.is_some(),
    };
    finish(plan, &mut report, ctx, out).await
}

/// `tenants cloud rotate-token`.
pub async fn run_rotate(args: RotateArgs, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let signup = signup_parts(ctx, &args.credential)?;
    let keys = super::token_keys(ctx.env())?;
    let pool = ctx.db()?;
    let tenant = require(&pool, &args.tenant).await?;
    let Some(current) = channel::fetch_in(&pool, &args.tenant).await? else {
        return Err(CliError::bad_input(format!(
            "tenant {} has no Cloud API number connected; use `tenants cloud connect`",
            args.tenant
        )));
    };
    let mut report = CredentialReport {
        tenant: args.tenant.clone(),
        command: "rotate-token",
        dry_run: args.dry_run,
        phone_number_id: current.phone_number_id.clone(),
        waba_id: current.waba_id.clone(),
        display_phone_number: current.display_phone_number.clone(),
        previous_channel: tenant.channel,
        channel: tenant.channel,
        previous_token_state: Some(current.token_state.as_str()),
        token_state: Some(current.token_state.as_str()),
        token_key_id: keys.sealing_key_id().to_owned(),
        source: args.credential.source(),
        steps: Vec::new(),
        redo: Vec::new(),
    };
    let plan = Plan {
        credential: secret_input::read(&args.credential, ctx)?,
        pool,
        keys,
        signup,
        // A rotation is the fix for a held tenant: always lift the hold.
        reconnect: true,
    };
    finish(plan, &mut report, ctx, out).await
}

/// Exchange (with a code), store, subscribe (with a code), announce, resume.
async fn finish(
    plan: Plan,
    report: &mut CredentialReport,
    ctx: &Context,
    out: &mut Output,
) -> CliResult<Exit> {
    let tenant = report.tenant.clone();
    let signup_steps: &[&'static str] = if plan.signup.is_some() {
        &["exchange_code", "store_token", "subscribe_waba"]
    } else {
        &["store_token"]
    };
    if report.dry_run {
        for step in signup_steps {
            report.step(step, StepOutcome::WouldRun, None);
        }
        if plan.reconnect {
            report.step("resume_sending", StepOutcome::WouldRun, None);
        }
        report.channel = Channel::CloudApi;
        return emit(report, out, Exit::Ok);
    }

    let exchanged;
    let token = match (&plan.credential, &plan.signup) {
        (Credential::Token(token), _) => token,
        (Credential::SignupCode(code), Some((client, app_id, app_secret))) => {
            match client.exchange_code(app_id, app_secret, code).await {
                Ok(token) => {
                    report.step("exchange_code", StepOutcome::Done, None);
                    exchanged = token;
                    &exchanged
                }
                Err(e) => {
                    let detail = super::scrub(&e.to_string(), &[app_secret, code]);
                    report.step("exchange_code", StepOutcome::Failed, Some(detail));
                    report.not_run(&["store_token", "subscribe_waba"]);
                    report.redo.push(
                        "nothing was stored; the code is spent: run Embedded Signup again and pass its new code to the same command".to_owned(),
                    );
                    return emit(report, out, Exit::Failure);
                }
            }
        }
        (Credential::SignupCode(_), None) => {
            return Err(anyhow::anyhow!("a signup code without the app's credentials").into());
        }
    };

    let sealed = plan.keys.seal(&tenant, token);
    let stored = if report.command == "connect" {
        channel::connect(
            &plan.pool,
            &tenant,
            &NewChannel {
                phone_number_id: &report.phone_number_id,
                waba_id: &report.waba_id,
                display_phone_number: report.display_phone_number.as_deref(),
                token: &sealed,
            },
        )
        .await
        .map(|()| true)
    } else {
        channel::set_token(&plan.pool, &tenant, &sealed).await
    };
    match stored {
        Ok(true) => {
            report.step("store_token", StepOutcome::Done, None);
            report.token_state = Some(TokenState::Active.as_str());
            if report.command == "connect" {
                report.channel = Channel::CloudApi;
            }
        }
        outcome => {
            let detail = match outcome {
                Err(sqlx::Error::Database(e)) if e.is_unique_violation() => format!(
                    "phone number id {} is connected to another tenant",
                    report.phone_number_id
                ),
                Err(e) => format!("{e:#}"),
                Ok(_) => "the tenant's Cloud channel is gone (removed meanwhile?)".to_owned(),
            };
            report.step("store_token", StepOutcome::Failed, Some(detail));
            if plan.signup.is_some() {
                report.not_run(&["subscribe_waba"]);
                report.redo.push(
                    "the exchanged token was not stored and is gone: run Embedded Signup again and pass its new code to the same command".to_owned(),
                );
            } else {
                report
                    .redo
                    .push("nothing was stored: run the same command again".to_owned());
            }
            return emit(report, out, Exit::Failure);
        }
    }

    if let Some((client, _, app_secret)) = &plan.signup {
        match client.subscribe_app(&report.waba_id, token).await {
            Ok(()) => report.step("subscribe_waba", StepOutcome::Done, None),
            Err(e) => {
                let detail = super::scrub(&e.to_string(), &[app_secret, token]);
                report.step("subscribe_waba", StepOutcome::Failed, Some(detail));
                report.redo.push(format!(
                    "the token is stored; webhooks of WABA {} do not arrive until: switchyard tenants cloud subscribe {tenant}",
                    report.waba_id
                ));
            }
        }
    }

    let nats = ctx.nats().await;
    announce_tenant_change(nats.as_ref().ok(), &tenant).await;
    if plan.reconnect {
        let resumed = match &nats {
            Ok(nats) => super::resume_sending(nats, &tenant)
                .await
                .map_err(|e| format!("{e:#}")),
            Err(e) => Err(e.to_string()),
        };
        match resumed {
            Ok(()) => report.step("resume_sending", StepOutcome::Done, None),
            Err(e) => {
                report.step("resume_sending", StepOutcome::Failed, Some(e));
                report.redo.push(format!(
                    "senders may still hold {tenant} for its old token: switchyard tenants resume-sending {tenant}"
                ));
            }
        }
    }
    let exit = if report.failed() {
        Exit::Partial
    } else {
        Exit::Ok
    };
    emit(report, out, exit)
}

/// Prints the report (and any redo on stderr too, so a piped run still
/// tells the operator); returns `exit`.
fn emit(report: &CredentialReport, out: &mut Output, exit: Exit) -> CliResult<Exit> {
    for redo in &report.redo {
        output::warn(redo);
    }
    out.emit(report, |w| write_report(w, report))?;
    Ok(exit)
}

fn write_report(w: &mut dyn Write, r: &CredentialReport) -> std::io::Result<()> {
    let mut t = output::table(vec!["field", "value"]);
    let state = |s: Option<&str>| s.unwrap_or("-").to_owned();
    let rows = [
        ("tenant", r.tenant.to_string()),
        ("phone number id", r.phone_number_id.clone()),
        ("WABA", r.waba_id.clone()),
        (
            "display number",
            r.display_phone_number
                .clone()
                .unwrap_or_else(|| "-".to_owned()),
        ),
        (
            "channel",
            if r.channel == r.previous_channel {
                r.channel.to_string()
            } else {
                format!("{} -> {}", r.previous_channel, r.channel)
            },
        ),
        (
            "token",
            format!(
                "{} (was {})",
                state(r.token_state),
                state(r.previous_token_state)
            ),
        ),
        ("sealed with key", r.token_key_id.clone()),
        ("token from", r.source.to_owned()),
    ];
    for (k, v) in rows {
        t.add_row(vec![k.to_owned(), v]);
    }
    if r.dry_run {
        writeln!(w, "dry run: nothing stored, nothing called")?;
    }
    output::write_table(w, &t)?;
    let mut steps = output::table(vec!["step", "outcome", "detail"]);
    for s in &r.steps {
        steps.add_row(vec![
            s.step.to_owned(),
            s.outcome.as_str().to_owned(),
            s.detail.clone().unwrap_or_default(),
        ]);
    }
    output::write_table(w, &steps)?;
    for redo in &r.redo {
        writeln!(w, "to do: {redo}")?;
    }
    Ok(())
}

/// What `tenants cloud subscribe` did.
#[derive(Debug, Serialize)]
pub struct Subscribed {
    pub tenant: TenantId,
    pub waba_id: String,
    pub subscribed: bool,
}

/// `tenants cloud subscribe`: `POST /{waba}/subscribed_apps` with the
/// tenant's stored token.
pub async fn run_subscribe(tenant: &TenantId, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let keys = super::token_keys(ctx.env())?;
    let client = super::client(ctx.env())?;
    let pool = ctx.db()?;
    let row = super::channel_row(&pool, tenant).await?;
    let token = super::open_active_token(&keys, tenant, &row)?;
    client
        .subscribe_app(&row.waba_id, &token)
        .await
        .map_err(|e| anyhow::anyhow!(super::scrub(&e.to_string(), &[&token])))?;
    let done = Subscribed {
        tenant: tenant.clone(),
        waba_id: row.waba_id,
        subscribed: true,
    };
    out.emit(&done, |w| {
        writeln!(
            w,
            "WABA {} of {tenant} is subscribed: its webhooks come to our app",
            done.waba_id
        )
    })?;
    Ok(Exit::Ok)
}
