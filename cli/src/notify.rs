//! `switchyard tenants notify TENANT (--url URL | --rotate-secret | --off)`:
//! where a tenant's notifications go (bridge state changes, stuck pairing,
//! dead-lettered replies; `docs/operations.md`, "Tenant notifications").
//!
//! A URL is checked like an HTTP bot's (scheme, address literals and
//! `localhost` names here; other names at every resolution by the notifier).
//! The tenant's first URL comes with a new Standard Webhooks secret, printed
//! once and never again (not by `tenants show`, not in logs): the tenant
//! verifies every notification with it. `--rotate-secret` replaces it (printed
//! once; the old one stops at once), `--off` deletes URL and secret.

use clap::{ArgGroup, Args};
use secrecy::ExposeSecret as _;
use serde::Serialize;
use switchyard_shared::{
    bot_config::{EgressPolicy, redact_url},
    ids::TenantId,
    notifications::target,
};

use crate::{
    context::Context,
    exit::{CliError, CliResult, Exit},
    output::{self, Output},
    tenants::require,
};

/// The longest notification URL accepted (the column's limit).
pub const MAX_URL_CHARS: usize = 2048;

#[derive(Debug, Args)]
#[command(group(ArgGroup::new("change").required(true).args(["url", "rotate_secret", "off"])))]
pub struct NotifyArgs {
    pub tenant: TenantId,
    /// Post the tenant's notifications to this https URL (a first URL also gets a new secret, printed once).
    #[arg(long)]
    pub url: Option<String>,
    /// Replace the tenant's signing secret (printed once; the old one stops at once).
    #[arg(long)]
    pub rotate_secret: bool,
    /// Stop notifying the tenant (URL and secret deleted).
    #[arg(long)]
    pub off: bool,
}

/// What the command did, as printed.
#[derive(Debug, Serialize)]
pub struct NotifyView {
    pub tenant: TenantId,
    pub notifications: bool,
    /// The URL without its query or user info.
    pub url: Option<String>,
    /// The new secret, shown this once.
    pub secret: Option<String>,
}

/// Refuses a URL the notifier could not or must not call.
pub fn check_url(raw: &str, egress: &EgressPolicy) -> CliResult<()> {
    if raw.chars().count() > MAX_URL_CHARS {
        return Err(CliError::bad_input(format!(
            "notification URL is longer than {MAX_URL_CHARS} characters"
        )));
    }
    if raw.chars().any(char::is_control) {
        return Err(CliError::bad_input(
            "notification URL contains control characters",
        ));
    }
    egress.check_configured_url(raw).map_err(|e| {
        CliError::bad_input(format!("refused notification URL {}: {e}", redact_url(raw)))
    })
}

pub async fn run(args: NotifyArgs, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let pool = ctx.db()?;
    let tenant = args.tenant;
    if let Some(url) = &args.url {
        check_url(url, &EgressPolicy::from_env(ctx.env())?)?;
    }
    require(&pool, &tenant).await?;
    let mut shown_secret = None;
    let mut url_shown = None;
    if args.off {
        if !target::remove(&pool, &tenant).await? {
            out.note(&format!("notifications of {tenant} were already off"))?;
        }
    } else {
        let secret = target::generate_secret();
        if let Some(url) = &args.url {
            let created = target::set_url(&pool, &tenant, url, &secret)
                .await?
                .ok_or_else(|| CliError::bad_input(format!("unknown tenant {tenant}")))?;
            if created && !args.rotate_secret {
                shown_secret = Some(secret.expose_secret().to_owned());
            }
            url_shown = Some(redact_url(url));
        }
        if args.rotate_secret {
            let secret = target::generate_secret();
            if !target::rotate_secret(&pool, &tenant, &secret).await? {
                return Err(CliError::bad_input(format!(
                    "notifications of {tenant} are off: give --url first"
                )));
            }
            shown_secret = Some(secret.expose_secret().to_owned());
        }
    }
    let view = NotifyView {
        notifications: !args.off,
        url: url_shown,
        secret: shown_secret,
        tenant,
    };
    out.emit(&view, |w| {
        let mut t = output::table(["field", "value"]);
        t.add_row(vec!["tenant".to_owned(), view.tenant.to_string()]);
        t.add_row(vec![
            "notifications".to_owned(),
            if view.notifications { "on" } else { "off" }.to_owned(),
        ]);
        if let Some(url) = &view.url {
            t.add_row(vec!["url".to_owned(), url.clone()]);
        }
        if let Some(secret) = &view.secret {
            t.add_row(vec!["signing secret".to_owned(), secret.clone()]);
        }
        output::write_table(w, &t)?;
        if view.secret.is_some() {
            writeln!(
                w,
                "Give the signing secret to the tenant now: it is not shown again."
            )?;
        }
        Ok(())
    })?;
    Ok(Exit::Ok)
}
