//! `tenants rotate-webhook`: give one tenant a new webhook URL and stop the
//! old one, leaving every other tenant alone (a leaked URL; a routine
//! rotation). Three steps, in this order:
//!
//! 1. the tenant's credential moves to its next generation
//!    ([`webhook_credential::rotate`]); the old URL stays accepted for
//!    `--window` (`0`: refused at once). The new URL is valid from this
//!    moment, on every ingest replica, even one whose cache is older;
//! 2. the change is announced on `control.tenant.<id>`, so every ingest
//!    replica reads the row again (the cache TTL covers a lost announcement);
//! 3. the bridge is re-pointed at the new URL with `fleet repoint`'s code
//!    ([`crate::fleet::repoint::repoint`]): re-provisioning, since WA Bridges
//!    documents no other call that sets a URL, and whether it replaces the
//!    URL of an existing bridge is undocumented, so the report says what to
//!    do (the dashboard) before the window ends.
//!
//! Rotating first and re-pointing second means no event is refused while the
//! provider moves over, as long as the window is long enough. If re-pointing
//! fails, the rotation stands (exit 4) and `fleet repoint <tenant>` finishes
//! it. The new URL is printed with its token redacted; `--urls-to FILE`
//! writes it in full to a file only the owner can read.

use std::{
    io::{BufRead as _, IsTerminal as _, Write as _},
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use clap::Args;
use serde::Serialize;
use switchyard_shared::{ids::TenantId, webhook_auth::Generation, webhook_credential};
use tokio_util::sync::CancellationToken;

use crate::{
    context::{Context, announce_tenant_change},
    exit::{CliError, CliResult, Exit},
    fleet::{
        pace::ctrl_c,
        repoint::{RepointOutcome, RepointReport, RepointRow, repoint, write_urls},
    },
    output::Output,
    tenants::require,
};

/// The longest rotation window: an old URL accepted for longer is not revoked.
pub const MAX_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

#[derive(Debug, Args)]
pub struct RotateWebhookArgs {
    pub tenant: TenantId,
    /// How long the current URL stays accepted beside the new one (e.g. 24h,
    /// 30m; at most 30 days); 0 revokes it at once.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub window: Duration,
    /// Say what would change; change and call nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask for confirmation (scripts).
    #[arg(long)]
    pub yes: bool,
    /// Also write `bridge_id<TAB>tenant<TAB>webhook_url` to this file (mode
    /// 0600), for the provider's dashboard. The URL carries the token.
    #[arg(long, value_name = "FILE")]
    pub urls_to: Option<PathBuf>,
}

/// What a rotation did (or, `--dry-run`, would do). Holds no token.
#[derive(Debug, Clone, Serialize)]
pub struct RotateReport {
    pub tenant: TenantId,
    pub dry_run: bool,
    /// The generation the tenant had.
    pub generation_before: Generation,
    /// The generation of the new URL.
    pub generation: Generation,
    /// Until when the old URL is accepted (RFC 3339, UTC); `None`: refused at once.
    pub old_url_accepted_until: Option<String>,
    /// The new URL with its token redacted.
    pub url: String,
    /// The bridge's re-pointing (absent when the tenant has no bridge).
    pub bridge: Option<RepointRow>,
    pub urls_file: Option<PathBuf>,
}

impl RotateReport {
    fn exit(&self) -> Exit {
        match self.bridge.as_ref().map(|b| &b.outcome) {
            Some(RepointOutcome::Failed { .. }) => Exit::Partial,
            _ => Exit::Ok,
        }
    }
}

/// `unix_ms` as RFC 3339 UTC, to the second.
pub fn rfc3339_ms(unix_ms: i64) -> String {
    let at = UNIX_EPOCH + Duration::from_millis(u64::try_from(unix_ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(at).to_string()
}

/// Asks on the terminal; `false` unless the operator types the tenant id.
fn confirm(tenant: &TenantId, window: Duration, bridge: Option<i64>) -> CliResult<bool> {
    let mut err = std::io::stderr();
    let old = if window.is_zero() {
        "refused at once".to_owned()
    } else {
        format!("accepted for {} more", humantime::format_duration(window))
    };
    let bridge = bridge.map_or_else(
        || "it has no bridge".to_owned(),
        |b| format!("bridge {b} is re-pointed"),
    );
    write!(
        err,
        "Rotate the webhook URL of tenant {tenant}: its current URL is {old}, {bridge}.\nType the tenant id to confirm: "
    )?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == tenant.as_str())
}

pub async fn run(args: RotateWebhookArgs, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    if args.window > MAX_WINDOW {
        return Err(CliError::bad_input(format!(
            "--window {} is above the limit of {}",
            humantime::format_duration(args.window),
            humantime::format_duration(MAX_WINDOW)
        )));
    }
    if !args.dry_run && !args.yes && !std::io::stdin().is_terminal() {
        return Err(CliError::bad_input(
            "refusing to rotate without confirmation: stdin is not a terminal; pass --yes (or --dry-run)",
        ));
    }
    // Every setting is checked before anything changes.
    let target = ctx.webhook_target()?;
    let pool = ctx.db()?;
    let row = require(&pool, &args.tenant).await?;
    let bridge = row.bridge_id;
    let client = bridge.map(|_| ctx.wabridges()).transpose()?;
    let before = row.webhook.generation;
    let next = before.next().ok_or_else(|| {
        CliError::bad_input("the tenant's webhook generation cannot grow further")
    })?;

    let (generation, until_ms) = if args.dry_run {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let until = (!args.window.is_zero())
            .then(|| i64::try_from((now + args.window).as_millis()).unwrap_or(i64::MAX));
        (next, until)
    } else {
        if !args.yes && !confirm(&args.tenant, args.window, bridge.map(|b| b.get()))? {
            return Err(CliError::bad_input("not confirmed; nothing changed"));
        }
        let rotated = webhook_credential::rotate(&pool, &args.tenant, args.window)
            .await?
            .ok_or_else(|| CliError::bad_input(format!("unknown tenant {}", args.tenant)))?;
        let nats = ctx.nats().await.ok();
        announce_tenant_change(nats.as_ref(), &args.tenant).await;
        (rotated.after.generation, rotated.after.previous_until_ms)
    };

    let mut repointed: Option<RepointReport> = None;
    if let Some(client) = &client {
        let (stop, signal): (CancellationToken, _) = ctrl_c();
        let report = repoint(
            &pool,
            client,
            &target,
            std::slice::from_ref(&args.tenant),
            args.dry_run,
            &stop,
        )
        .await;
        signal.abort();
        repointed = Some(report?);
    }
    let mut report = RotateReport {
        tenant: args.tenant.clone(),
        dry_run: args.dry_run,
        generation_before: before,
        generation,
        old_url_accepted_until: until_ms.map(rfc3339_ms),
        url: target.shown_url_for(&args.tenant, generation),
        bridge: repointed.as_ref().and_then(|r| r.rows.first().cloned()),
        urls_file: None,
    };
    if let (Some(file), Some(repointed)) = (&args.urls_to, &repointed)
        && !args.dry_run
    {
        write_urls(file, &target, repointed)?;
        report.urls_file = Some(file.clone());
    }
    out.emit(&report, |w| write_report(w, &report))?;
    Ok(report.exit())
}

fn write_report(w: &mut dyn std::io::Write, r: &RotateReport) -> std::io::Result<()> {
    let verb = if r.dry_run { "would move" } else { "moved" };
    writeln!(
        w,
        "tenant {}: webhook credential {verb} from generation {} to {}",
        r.tenant, r.generation_before, r.generation
    )?;
    writeln!(w, "new URL: {} (token never printed)", r.url)?;
    match &r.old_url_accepted_until {
        Some(until) => writeln!(w, "old URL accepted until {until}, refused after")?,
        None => writeln!(w, "old URL refused at once")?,
    }
    match r.bridge.as_ref().map(|b| &b.outcome) {
        None => writeln!(
            w,
            "no bridge: `fleet provision {}` gives it the new URL",
            r.tenant
        )?,
        Some(RepointOutcome::WouldResend { bridge_id }) => writeln!(
            w,
            "bridge {bridge_id} would be re-pointed (dry run: nothing changed or called)"
        )?,
        Some(RepointOutcome::Resent { bridge_id, .. }) => writeln!(
            w,
            "bridge {bridge_id} re-provisioned with the new URL. Whether the provider replaces a URL is \
             undocumented: if its events stop, or arrive only on the old URL, set the new URL in the \
             WA Bridges dashboard (see --urls-to){}",
            r.old_url_accepted_until
                .as_ref()
                .map(|u| format!(" before {u}"))
                .unwrap_or_default()
        )?,
        Some(RepointOutcome::Skipped { reason }) => writeln!(w, "bridge not re-pointed: {reason}")?,
        Some(RepointOutcome::Failed { error }) => writeln!(
            w,
            "the credential WAS rotated but the bridge could not be re-pointed ({error}); \
             run `switchyard fleet repoint {}`{}",
            r.tenant,
            r.old_url_accepted_until
                .as_ref()
                .map(|u| format!(" before {u}"))
                .unwrap_or_default()
        )?,
    }
    if let Some(file) = &r.urls_file {
        writeln!(w, "URL (with its token) written to {}", file.display())?;
    }
    Ok(())
}
