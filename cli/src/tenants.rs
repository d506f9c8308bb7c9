//! `switchyard tenants …`: the tenants table, which is the source of truth
//! for who is served, which bot answers and how much of the fleet a tenant
//! may use. Every change is validated before it touches the row (bad input
//! changes nothing, exit 2) and is then announced on
//! `control.tenant.<id>` so router replicas drop their cached row at once;
//! the cache's TTL covers a lost announcement.

use std::io::Write;

use clap::{Args, Subcommand};
use serde::Serialize;
use sqlx::PgPool;
use switchyard_shared::{
    bot_config::{BotConfig, BotSpec, EgressPolicy, redact_json, redact_url},
    ids::TenantId,
    notifications,
    tenants::{self, BotKind, NewTenant, SendLimits, Tenant, TenantStatus},
    webhook_auth::Generation,
};

use crate::{
    context::{Context, announce_tenant_change},
    exit::{CliError, CliResult, Exit},
    output::{self, Output},
};

/// The ranges the schema enforces, checked first so the message names the limit.
pub const WEIGHT_RANGE: std::ops::RangeInclusive<u32> = 1..=1000;
pub const SENDS_PER_MINUTE_RANGE: std::ops::RangeInclusive<u32> = 1..=100_000;
pub const BURST_RANGE: std::ops::RangeInclusive<u32> = 1..=10_000;
pub const MAX_IN_FLIGHT_RANGE: std::ops::RangeInclusive<u32> = 1..=1000;

#[derive(Debug, Subcommand)]
pub enum TenantsCommand {
    /// Add a tenant: active, with the rules bot and default limits unless told otherwise.
    Add(AddArgs),
    /// List every tenant with its status, bridge and limits.
    List,
    /// Show one tenant in full (secrets in its bot configuration are redacted).
    Show { tenant: TenantId },
    /// Stop serving a tenant: its events are dropped by every router within seconds.
    Suspend { tenant: TenantId },
    /// Serve a suspended tenant again.
    Resume { tenant: TenantId },
    /// Change a tenant's share of the sending capacity (only the limits given).
    SetLimits(SetLimitsArgs),
    /// Change which bot answers a tenant, and its configuration.
    SetBot(SetBotArgs),
    /// Change a tenant's WhatsApp behaviour: pacing, takeover, debounce, bulk share.
    SetWhatsapp(crate::whatsapp::SetWhatsAppArgs),
    /// Lift a tenant's sending hold (restricted number, refused key) on every sender.
    ResumeSending { tenant: TenantId },
    /// Give a tenant a new webhook URL and re-point its bridge; the old URL stays
    /// accepted for --window (0: revoked at once). Other tenants are untouched.
    RotateWebhook(crate::rotate_webhook::RotateWebhookArgs),
    /// Post a tenant's notifications (bridge state, stuck pairing, dead-lettered
    /// replies) to its URL, signed; or rotate its secret, or turn them off.
    Notify(crate::notify::NotifyArgs),
    /// Offboard a tenant: suspend, drain, delete its bridge, keep (default) or --purge its data.
    /// Resumable: run it again to finish.
    Remove(crate::offboard::RemoveArgs),
    /// A Cloud API tenant's phone number and business token: connect (a token
    /// or an Embedded Signup code), rotate-token, revoke-token, reseal, show,
    /// subscribe, keys-generate.
    #[command(subcommand)]
    Cloud(crate::cloud::CloudCommand),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// The tenant id (= the bridge's customer_ref): 1–63 of [a-z0-9_-].
    pub tenant: TenantId,
    /// A human name for tables.
    #[arg(long, default_value = "")]
    pub name: String,
    /// The bot: rules, http or echo.
    #[arg(long, default_value = "rules", value_parser = parse_bot)]
    pub bot: BotKind,
    /// The bot's configuration, as JSON (http needs {"url": "..."}).
    #[arg(long, value_parser = parse_json)]
    pub bot_config: Option<serde_json::Value>,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Args, Default, Clone, Copy)]
pub struct LimitArgs {
    /// Fair-share weight among backlogged tenants (1–1000).
    #[arg(long)]
    pub weight: Option<u32>,
    /// The tenant's own send budget per minute (1–100000).
    #[arg(long)]
    pub sends_per_minute: Option<u32>,
    /// Sends allowed in a burst (1–10000).
    #[arg(long)]
    pub burst: Option<u32>,
    /// Concurrent sends in flight (1–1000).
    #[arg(long)]
    pub max_in_flight: Option<u32>,
}

#[derive(Debug, Args)]
pub struct SetLimitsArgs {
    pub tenant: TenantId,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Debug, Args)]
pub struct SetBotArgs {
    pub tenant: TenantId,
    /// The bot: rules, http or echo.
    #[arg(long, value_parser = parse_bot)]
    pub kind: BotKind,
    /// The bot's configuration, as JSON; omitted: `{}`.
    #[arg(long, value_parser = parse_json)]
    pub config: Option<serde_json::Value>,
}

fn parse_bot(raw: &str) -> Result<BotKind, String> {
    BotKind::parse(raw).ok_or_else(|| format!("unknown bot {raw:?}; expected rules, http or echo"))
}

fn parse_json(raw: &str) -> Result<serde_json::Value, String> {
    serde_json::from_str(raw).map_err(|e| format!("not valid JSON: {e}"))
}

/// Applies the given limits over `base`, refusing any value out of range.
pub fn apply_limits(base: SendLimits, patch: LimitArgs) -> CliResult<SendLimits> {
    fn check(
        name: &str,
        value: Option<u32>,
        current: u32,
        range: std::ops::RangeInclusive<u32>,
    ) -> CliResult<u32> {
        match value {
            None => Ok(current),
            Some(v) if range.contains(&v) => Ok(v),
            Some(v) => Err(CliError::bad_input(format!(
                "{name} {v} is out of range: allowed {}..={}",
                range.start(),
                range.end()
            ))),
        }
    }
    Ok(SendLimits {
        weight: check("--weight", patch.weight, base.weight, WEIGHT_RANGE)?,
        sends_per_minute: check(
            "--sends-per-minute",
            patch.sends_per_minute,
            base.sends_per_minute,
            SENDS_PER_MINUTE_RANGE,
        )?,
        send_burst: check("--burst", patch.burst, base.send_burst, BURST_RANGE)?,
        max_in_flight: check(
            "--max-in-flight",
            patch.max_in_flight,
            base.max_in_flight,
            MAX_IN_FLIGHT_RANGE,
        )?,
    })
}

/// Refuses a bot configuration the router could not use: the same parse the
/// router's tenant loader runs ([`BotConfig::parse`]), and for an http bot the
/// same egress guard the router applies at every call ([`EgressPolicy`], read
/// from `SWITCHYARD_BOT_EGRESS_ALLOW` / `SWITCHYARD_BOT_ALLOW_HTTP`): scheme,
/// address literals and `localhost` names are judged here; other host names
/// are judged by the router each time it resolves them.
pub fn check_bot(
    kind: BotKind,
    config: &serde_json::Value,
    egress: &EgressPolicy,
) -> CliResult<()> {
    let parsed = BotConfig::parse(kind, config).map_err(|e| {
        CliError::bad_input(format!("invalid {} bot configuration: {e}", kind.as_str()))
    })?;
    if let BotSpec::Http(http) = &parsed.spec {
        egress.check_configured_url(&http.url).map_err(|e| {
            CliError::bad_input(format!("refused bot URL {}: {e}", redact_url(&http.url)))
        })?;
    }
    Ok(())
}

/// Reads a tenant or refuses with "unknown tenant" (exit 2).
pub async fn require(pool: &PgPool, tenant: &TenantId) -> CliResult<Tenant> {
    tenants::fetch(pool, tenant)
        .await?
        .ok_or_else(|| CliError::bad_input(format!("unknown tenant {tenant}")))
}

/// `tenants add`.
pub async fn add(pool: &PgPool, args: AddArgs, egress: &EgressPolicy) -> CliResult<Tenant> {
    let mut new = NewTenant::with_defaults(args.tenant.clone());
    new.display_name = args.name;
    new.limits = apply_limits(new.limits, args.limits)?;
    new.bot_kind = args.bot;
    new.bot_config = args.bot_config.unwrap_or_else(|| serde_json::json!({}));
    check_bot(new.bot_kind, &new.bot_config, egress)?;
    if !tenants::insert(pool, &new).await? {
        return Err(CliError::bad_input(format!(
            "tenant {} already exists",
            args.tenant
        )));
    }
    require(pool, &args.tenant).await
}

/// `tenants suspend` / `tenants resume`.
pub async fn set_status(
    pool: &PgPool,
    tenant: &TenantId,
    status: TenantStatus,
) -> CliResult<Tenant> {
    if !tenants::set_status(pool, tenant, status).await? {
        return Err(CliError::bad_input(format!("unknown tenant {tenant}")));
    }
    require(pool, tenant).await
}

/// `tenants set-limits`: only the given limits change.
pub async fn set_limits(pool: &PgPool, tenant: &TenantId, patch: LimitArgs) -> CliResult<Tenant> {
    let current = require(pool, tenant).await?;
    if patch.weight.is_none()
        && patch.sends_per_minute.is_none()
        && patch.burst.is_none()
        && patch.max_in_flight.is_none()
    {
        return Err(CliError::bad_input(
            "give at least one of --weight, --sends-per-minute, --burst, --max-in-flight",
        ));
    }
    let limits = apply_limits(current.limits, patch)?;
    sqlx::query(
        "UPDATE tenants SET weight = $2, sends_per_minute = $3, send_burst = $4, \
         max_in_flight = $5, updated_at = now() WHERE id = $1",
    )
    .bind(tenant.as_str())
    .bind(limits.weight as i32)
    .bind(limits.sends_per_minute as i32)
    .bind(limits.send_burst as i32)
    .bind(limits.max_in_flight as i32)
    .execute(pool)
    .await?;
    require(pool, tenant).await
}

/// `tenants set-bot`.
pub async fn set_bot(
    pool: &PgPool,
    tenant: &TenantId,
    kind: BotKind,
    config: Option<serde_json::Value>,
    egress: &EgressPolicy,
) -> CliResult<Tenant> {
    let config = config.unwrap_or_else(|| serde_json::json!({}));
    check_bot(kind, &config, egress)?;
    let done = sqlx::query(
        "UPDATE tenants SET bot_kind = $2, bot_config = $3, updated_at = now() WHERE id = $1",
    )
    .bind(tenant.as_str())
    .bind(kind.as_str())
    .bind(&config)
    .execute(pool)
    .await?;
    if done.rows_affected() == 0 {
        return Err(CliError::bad_input(format!("unknown tenant {tenant}")));
    }
    require(pool, tenant).await
}

/// A tenant as printed: bot configuration values under secret-looking keys
/// redacted, URLs without their query or user info ([`redact_json`], the
/// same redaction as the tenant row's `Debug`).
#[derive(Debug, Serialize)]
pub struct TenantView {
    #[serde(flatten)]
    pub tenant: Tenant,
    /// Whether the tenant's notifications are on (`tenants list` / `show`;
    /// never the URL's secret).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notifications: Option<bool>,
}

impl TenantView {
    pub fn new(mut tenant: Tenant) -> Self {
        redact_json(&mut tenant.bot_config);
        Self {
            tenant,
            notifications: None,
        }
    }

    /// The view with whether notifications are on.
    pub fn with_notifications(mut self, on: bool) -> Self {
        self.notifications = Some(on);
        self
    }
}

fn on_off(on: Option<bool>) -> String {
    match on {
        Some(true) => "on",
        Some(false) => "off",
        None => "-",
    }
    .to_owned()
}

fn limits_cell(l: &SendLimits) -> String {
    format!(
        "w{} {}/min burst {} inflight {}",
        l.weight, l.sends_per_minute, l.send_burst, l.max_in_flight
    )
}

fn write_list(w: &mut dyn Write, rows: &[TenantView]) -> std::io::Result<()> {
    let mut t = output::table([
        "tenant",
        "name",
        "status",
        "bridge",
        "bridge state",
        "bot",
        "limits",
        "notify",
    ]);
    for v in rows {
        let r = &v.tenant;
        t.add_row(vec![
            r.id.to_string(),
            r.display_name.clone(),
            r.status.as_str().to_owned(),
            r.bridge_id
                .map_or_else(|| "-".to_owned(), |b| b.to_string()),
            r.bridge_state.to_string(),
            r.bot_kind.as_str().to_owned(),
            limits_cell(&r.limits),
            on_off(v.notifications),
        ]);
    }
    output::write_table(w, &t)?;
    writeln!(w, "{} tenant(s)", rows.len())
}

fn write_one(w: &mut dyn Write, v: &TenantView) -> std::io::Result<()> {
    let r = &v.tenant;
    let mut t = output::table(["field", "value"]);
    t.add_row(vec!["tenant".to_owned(), r.id.to_string()]);
    t.add_row(vec!["name".to_owned(), r.display_name.clone()]);
    t.add_row(vec!["status".to_owned(), r.status.as_str().to_owned()]);
    t.add_row(vec![
        "bridge".to_owned(),
        r.bridge_id
            .map_or_else(|| "-".to_owned(), |b| b.to_string()),
    ]);
    t.add_row(vec!["bridge state".to_owned(), r.bridge_state.to_string()]);
    t.add_row(vec!["weight".to_owned(), r.limits.weight.to_string()]);
    t.add_row(vec![
        "sends/minute".to_owned(),
        r.limits.sends_per_minute.to_string(),
    ]);
    t.add_row(vec!["burst".to_owned(), r.limits.send_burst.to_string()]);
    t.add_row(vec![
        "max in flight".to_owned(),
        r.limits.max_in_flight.to_string(),
    ]);
    t.add_row(vec!["bot".to_owned(), r.bot_kind.as_str().to_owned()]);
    t.add_row(vec!["bot config".to_owned(), r.bot_config.to_string()]);
    if v.notifications.is_some() {
        t.add_row(vec!["notifications".to_owned(), on_off(v.notifications)]);
    }
    // Shown once rotated (generation 0 is every tenant's URL as provisioned).
    if r.webhook.generation != Generation::ORIGINAL {
        t.add_row(vec![
            "webhook generation".to_owned(),
            r.webhook.generation.to_string(),
        ]);
    }
    if let Some(until) = r.webhook.previous_until_ms {
        t.add_row(vec![
            "previous webhook URL until".to_owned(),
            crate::rotate_webhook::rfc3339_ms(until),
        ]);
    }
    output::write_table(w, &t)
}

/// Runs a `tenants` subcommand and renders its result.
pub async fn run(command: TenantsCommand, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let command = match command {
        TenantsCommand::SetWhatsapp(args) => {
            return crate::whatsapp::run_set(args, ctx, out).await;
        }
        TenantsCommand::ResumeSending { tenant } => {
            return crate::whatsapp::run_resume_sending(tenant, ctx, out).await;
        }
        TenantsCommand::Remove(args) => return crate::offboard::run(args, ctx, out).await,
        TenantsCommand::RotateWebhook(args) => {
            return crate::rotate_webhook::run(args, ctx, out).await;
        }
        TenantsCommand::Notify(args) => return crate::notify::run(args, ctx, out).await,
        TenantsCommand::Cloud(command) => return crate::cloud::run(command, ctx, out).await,
        other => other,
    };
    let pool = ctx.db()?;
    let changed = match command {
        TenantsCommand::List => {
            let notified = notifications::target::enabled(&pool).await?;
            let rows: Vec<TenantView> = tenants::list(&pool)
                .await?
                .into_iter()
                .map(|t| {
                    let on = notified.contains(&t.id);
                    TenantView::new(t).with_notifications(on)
                })
                .collect();
            out.emit(&rows, |w| write_list(w, &rows))?;
            return Ok(Exit::Ok);
        }
        TenantsCommand::Show { tenant } => {
            let on = notifications::target::enabled(&pool)
                .await?
                .contains(&tenant);
            let view = TenantView::new(require(&pool, &tenant).await?).with_notifications(on);
            out.emit(&view, |w| write_one(w, &view))?;
            return Ok(Exit::Ok);
        }
        TenantsCommand::Add(args) => add(&pool, args, &EgressPolicy::from_env(ctx.env())?).await?,
        TenantsCommand::Suspend { tenant } => {
            set_status(&pool, &tenant, TenantStatus::Suspended).await?
        }
        TenantsCommand::Resume { tenant } => {
            set_status(&pool, &tenant, TenantStatus::Active).await?
        }
        TenantsCommand::SetLimits(args) => set_limits(&pool, &args.tenant, args.limits).await?,
        TenantsCommand::SetBot(args) => {
            let egress = EgressPolicy::from_env(ctx.env())?;
            set_bot(&pool, &args.tenant, args.kind, args.config, &egress).await?
        }
        TenantsCommand::SetWhatsapp(_)
        | TenantsCommand::ResumeSending { .. }
        | TenantsCommand::RotateWebhook(_)
        | TenantsCommand::Notify(_)
        | TenantsCommand::Cloud(_)
        | TenantsCommand::Remove(_) => {
            return Ok(Exit::Ok);
        }
    };
    let nats = ctx.nats().await.ok();
    announce_tenant_change(nats.as_ref(), &changed.id).await;
    let view = TenantView::new(changed);
    out.emit(&view, |w| write_one(w, &view))?;
    Ok(Exit::Ok)
}
