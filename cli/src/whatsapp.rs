//! `switchyard tenants set-whatsapp | resume-sending` and `switchyard takeover …`:
//! the operator's side of the WhatsApp behaviour (`docs/whatsapp.md`).
//!
//! - pacing, takeover, debounce and bulk settings of a tenant (typed columns,
//!   ranges checked here first so the message names the setting);
//! - lifting a tenant's sending hold after a restriction or a refused key
//!   was dealt with: a core-NATS announcement every sender replica follows;
//! - human takeovers: which chats the bot is keeping quiet in, and ending that early.

use clap::{Args, Subcommand};
use serde::Serialize;
use sqlx::PgPool;
use switchyard_shared::{
    ids::TenantId,
    subjects,
    tenants::{self, Tenant, WhatsAppSettings},
};

use crate::{
    context::{Context, announce_tenant_change},
    exit::{CliError, CliResult, Exit},
    output::{self, Output},
    tenants::{TenantView, require},
};

#[derive(Debug, Args, Default, Clone, Copy)]
pub struct WhatsAppArgs {
    /// Minimum gap between two sends on the tenant's bridge, ms (0 = off; 0–600000).
    #[arg(long)]
    pub min_send_gap_ms: Option<u32>,
    /// Most sends to one chat per rolling hour (0 = no cap; 0–10000).
    #[arg(long)]
    pub contact_hourly_cap: Option<u32>,
    /// Bot silence in a chat after a person answered from the phone, minutes (0 = never; 0–10080).
    #[arg(long)]
    pub takeover_minutes: Option<u32>,
    /// Gather a chat's burst into one bot turn, ms (0 = off; 0–10000).
    #[arg(long)]
    pub debounce_ms: Option<u32>,
    /// Most of the fleet budget bulk replays may take, percent (1–100).
    #[arg(long)]
    pub bulk_share_percent: Option<u32>,
}

#[derive(Debug, Args)]
pub struct SetWhatsAppArgs {
    pub tenant: TenantId,
    #[command(flatten)]
    pub settings: WhatsAppArgs,
}

/// Applies the given settings over `base`, refusing any value out of range.
pub fn apply(base: WhatsAppSettings, patch: WhatsAppArgs) -> CliResult<WhatsAppSettings> {
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
    Ok(WhatsAppSettings {
        min_send_gap_ms: check(
            "--min-send-gap-ms",
            patch.min_send_gap_ms,
            base.min_send_gap_ms,
            0..=600_000,
        )?,
        contact_hourly_cap: check(
            "--contact-hourly-cap",
            patch.contact_hourly_cap,
            base.contact_hourly_cap,
            0..=10_000,
        )?,
        takeover_minutes: check(
            "--takeover-minutes",
            patch.takeover_minutes,
            base.takeover_minutes,
            0..=10_080,
        )?,
        debounce_ms: check(
            "--debounce-ms",
            patch.debounce_ms,
            base.debounce_ms,
            0..=10_000,
        )?,
        bulk_share_percent: check(
            "--bulk-share-percent",
            patch.bulk_share_percent,
            base.bulk_share_percent,
            1..=100,
        )?,
        paired_at: base.paired_at,
    })
}

/// `tenants set-whatsapp`: only the given settings change.
pub async fn set_whatsapp(pool: &PgPool, args: SetWhatsAppArgs) -> CliResult<Tenant> {
    let current = require(pool, &args.tenant).await?;
    let settings = apply(current.whatsapp, args.settings)?;
    tenants::set_whatsapp(pool, &args.tenant, &settings).await?;
    require(pool, &args.tenant).await
}

/// `tenants set-whatsapp`, rendered and announced.
pub async fn run_set(args: SetWhatsAppArgs, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let pool = ctx.db()?;
    let changed = set_whatsapp(&pool, args).await?;
    let nats = ctx.nats().await.ok();
    announce_tenant_change(nats.as_ref(), &changed.id).await;
    let view = TenantView::new(changed);
    out.emit(&view, |w| {
        writeln!(w, "{}", serde_json::json!(view.tenant.whatsapp))
    })?;
    Ok(Exit::Ok)
}

/// `tenants resume-sending`: lifts the sending holds an operator must lift
/// (restricted number, refused key, operator pause) on every sender replica.
/// Messages held meanwhile are still in the tenant's lane and go out in order.
pub async fn run_resume_sending(
    tenant: TenantId,
    ctx: &Context,
    out: &mut Output,
) -> CliResult<Exit> {
    let pool = ctx.db()?;
    require(&pool, &tenant).await?;
    let nats = ctx.nats().await?;
    nats.publish(subjects::sending_resumed(&tenant), bytes::Bytes::new())
        .await
        .map_err(anyhow::Error::from)?;
    nats.flush().await.map_err(anyhow::Error::from)?;
    let done = serde_json::json!({"tenant": tenant.as_str(), "sending": "resumed"});
    out.emit(&done, |w| writeln!(w, "sending resumed for {tenant}"))?;
    Ok(Exit::Ok)
}

#[derive(Debug, Subcommand)]
pub enum TakeoverCommand {
    /// Chats of a tenant where a person answered from the phone and the bot is silent.
    List { tenant: TenantId },
    /// Let the bot answer again in one chat (or every chat with --all).
    Clear {
        tenant: TenantId,
        /// The chat id as the webhook names it (e.g. 15550001234@s.whatsapp.net).
        chat: Option<String>,
        #[arg(long)]
        all: bool,
    },
}

/// A chat the bot keeps quiet in.
#[derive(Debug, Serialize)]
pub struct Silenced {
    pub chat_id: String,
    /// RFC 3339, UTC.
    pub silenced_until: String,
}

/// The chats of `tenant` silenced by a takeover, soonest to end first.
pub async fn list(pool: &PgPool, tenant: &TenantId) -> CliResult<Vec<Silenced>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT chat_id, to_char(silenced_until AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') \
         FROM conversations WHERE tenant_id = $1 AND silenced_until > now() \
         ORDER BY silenced_until, chat_id",
    )
    .bind(tenant.as_str())
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(chat_id, silenced_until)| Silenced {
            chat_id,
            silenced_until,
        })
        .collect())
}

/// Ends takeovers of `tenant` (one chat, or all); returns how many ended.
pub async fn clear(pool: &PgPool, tenant: &TenantId, chat: Option<&str>) -> CliResult<u64> {
    let done = sqlx::query(
        "UPDATE conversations SET silenced_until = NULL WHERE tenant_id = $1 \
         AND silenced_until > now() AND ($2::text IS NULL OR chat_id = $2)",
    )
    .bind(tenant.as_str())
    .bind(chat)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

/// Runs a `takeover` subcommand and renders its result.
pub async fn run_takeover(
    command: TakeoverCommand,
    ctx: &Context,
    out: &mut Output,
) -> CliResult<Exit> {
    let pool = ctx.db()?;
    match command {
        TakeoverCommand::List { tenant } => {
            require(&pool, &tenant).await?;
            let rows = list(&pool, &tenant).await?;
            out.emit(&rows, |w| {
                let mut table = output::table(vec!["chat", "silent until (UTC)"]);
                for r in &rows {
                    table.add_row(vec![r.chat_id.clone(), r.silenced_until.clone()]);
                }
                output::write_table(w, &table)
            })?;
        }
        TakeoverCommand::Clear { tenant, chat, all } => {
            if chat.is_some() == all {
                return Err(CliError::bad_input("give either a chat or --all"));
            }
            require(&pool, &tenant).await?;
            let cleared = clear(&pool, &tenant, chat.as_deref()).await?;
            let done = serde_json::json!({"tenant": tenant.as_str(), "cleared": cleared});
            out.emit(&done, |w| {
                writeln!(
                    w,
                    "{cleared} takeover(s) of {tenant} ended; the bot answers there again"
                )
            })?;
        }
    }
    Ok(Exit::Ok)
}
