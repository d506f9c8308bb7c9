//! `switchyard tenants cloud templates …`: a Cloud API tenant's message
//! templates (docs/cloud-api.md section 8) and its fallback template
//! (section 7).
//!
//! - `add`: checks the template here (name, language, category, components,
//!   placeholders: refused with the reason before anything leaves), submits
//!   it to Meta with the tenant's own token, and stores it with Meta's id
//!   and status (usually `PENDING`; the review's outcome comes by webhook);
//! - `list`: the stored templates and which one is the fallback;
//! - `sync`: [`super::template_sync`];
//! - `remove`: the stored row only (Meta keeps the template; see the
//!   message printed);
//! - `fallback`: chooses (or with `--none` clears) the template sent in
//!   place of a reply once a chat's window has closed.
//!
//! No database transaction spans a Graph call, and the token never reaches
//! the output (Graph errors are scrubbed of it).

use std::{io::Read as _, path::PathBuf};

use clap::{Args, Subcommand};
use serde::Serialize;
use serde_json::Value;
use switchyard_shared::{
    cloud_api::{
        client::TemplateSubmission,
        template_store::{self, NewTemplate, Template},
        templates::{
            COMPONENTS_MAX_BYTES, Category, Components, Language, TemplateName, TemplateStatus,
        },
    },
    ids::TenantId,
};

use crate::{
    context::Context,
    exit::{CliError, CliResult, Exit},
    output::{self, Output},
    tenants::require,
};

#[derive(Debug, Subcommand)]
pub enum TemplatesCommand {
    /// Check a template, submit it to Meta with the tenant's token and
    /// store it with Meta's id and status (PENDING until Meta's review).
    Add(AddArgs),
    /// The tenant's stored templates, their status and the fallback.
    List { tenant: TenantId },
    /// List the tenant's templates at Meta and update the stored statuses.
    Sync { tenant: TenantId },
    /// Remove a stored template (Meta keeps it: delete it there too).
    Remove(KeyArgs),
    /// Choose the template sent in place of a reply once the chat's
    /// 24-hour window has closed (its body may have at most one parameter,
    /// filled with the reply's text), or `--none`.
    Fallback(FallbackArgs),
}

#[derive(Debug, Args)]
pub struct AddArgs {
    pub tenant: TenantId,
    /// Meta's rule: 1-512 of a-z 0-9 _.
    #[arg(long)]
    pub name: String,
    /// e.g. en or en_US.
    #[arg(long)]
    pub language: String,
    /// MARKETING, UTILITY or AUTHENTICATION.
    #[arg(long)]
    pub category: String,
    /// The body text, with placeholders {{1}}, {{2}} … or {{name}}s.
    #[arg(
        long,
        required_unless_present = "components",
        conflicts_with = "components"
    )]
    pub body: Option<String>,
    /// A text header (at most 60 characters).
    #[arg(long, conflicts_with = "components")]
    pub header: Option<String>,
    /// A footer (at most 60 characters, no placeholder).
    #[arg(long, conflicts_with = "components")]
    pub footer: Option<String>,
    /// A sample value for each body placeholder, in order (Meta's review
    /// asks for them).
    #[arg(long = "example", conflicts_with = "components")]
    pub examples: Vec<String>,
    /// Meta's `components` JSON array from this file (at most 64 KiB),
    /// instead of --body/--header/--footer.
    #[arg(long)]
    pub components: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct KeyArgs {
    pub tenant: TenantId,
    #[arg(long)]
    pub name: String,
    #[arg(long)]
    pub language: String,
}

#[derive(Debug, Args)]
pub struct FallbackArgs {
    pub tenant: TenantId,
    #[arg(
        long,
        required_unless_present = "none",
        conflicts_with = "none",
        requires = "language"
    )]
    pub name: Option<String>,
    #[arg(long, conflicts_with = "none")]
    pub language: Option<String>,
    /// No fallback: replies outside the window are dead-lettered.
    #[arg(long)]
    pub none: bool,
}

/// Runs a `tenants cloud templates` subcommand.
pub async fn run(command: TemplatesCommand, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    match command {
        TemplatesCommand::Add(args) => add(args, ctx, out).await,
        TemplatesCommand::List { tenant } => list(&tenant, ctx, out).await,
        TemplatesCommand::Sync { tenant } => super::template_sync::run(&tenant, ctx, out).await,
        TemplatesCommand::Remove(args) => remove(args, ctx, out).await,
        TemplatesCommand::Fallback(args) => fallback(args, ctx, out).await,
    }
}

/// One stored template as shown.
#[derive(Debug, Serialize)]
pub struct TemplateView {
    pub tenant: TenantId,
    pub name: String,
    pub language: String,
    pub category: String,
    pub status: String,
    pub body_params: u32,
    pub header_params: u32,
    pub meta_id: Option<String>,
    pub rejection_reason: Option<String>,
    pub fallback: bool,
    /// Unix seconds.
    pub updated_at: i64,
    pub components: Value,
}

impl TemplateView {
    fn of(t: Template, fallback: Option<&(String, String)>) -> Self {
        let is_fallback = fallback.is_some_and(|(n, l)| *n == t.name && *l == t.language);
        Self {
            tenant: t.tenant,
            name: t.name,
            language: t.language,
            category: t.category,
            status: t.status.as_str().to_owned(),
            body_params: t.body_params,
            header_params: t.header_params,
            meta_id: t.meta_id,
            rejection_reason: t.rejection_reason,
            fallback: is_fallback,
            updated_at: t.updated_at,
            components: t.components,
        }
    }
}

/// Reads `--components FILE`: at most [`COMPONENTS_MAX_BYTES`], JSON.
fn read_components(path: &PathBuf) -> CliResult<Value> {
    let file = std::fs::File::open(path).map_err(|e| {
        CliError::bad_input(format!("cannot read --components {}: {e}", path.display()))
    })?;
    let mut raw = Vec::new();
    let limit = u64::try_from(COMPONENTS_MAX_BYTES).unwrap_or(u64::MAX) + 1;
    file.take(limit).read_to_end(&mut raw).map_err(|e| {
        CliError::bad_input(format!("cannot read --components {}: {e}", path.display()))
    })?;
    if raw.len() > COMPONENTS_MAX_BYTES {
        return Err(CliError::bad_input(format!(
            "--components {} is larger than {COMPONENTS_MAX_BYTES} bytes",
            path.display()
        )));
    }
    serde_json::from_slice(&raw).map_err(|e| {
        CliError::bad_input(format!("--components {} is not JSON: {e}", path.display()))
    })
}

fn bad<E: std::fmt::Display>(e: E) -> CliError {
    CliError::bad_input(e.to_string())
}

async fn add(args: AddArgs, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    // Every check that needs no network or store first.
    let name = TemplateName::parse(&args.name).map_err(bad)?;
    let language = Language::parse(&args.language).map_err(bad)?;
    let category = Category::parse(&args.category).map_err(bad)?;
    let components = match (&args.components, &args.body) {
        (Some(path), _) => Components::parse(read_components(path)?).map_err(bad)?,
        (None, Some(body)) => Components::from_texts(
            body,
            args.header.as_deref(),
            args.footer.as_deref(),
            &args.examples,
        )
        .map_err(bad)?,
        (None, None) => return Err(CliError::bad_input("give --body or --components")),
    };
    let keys = super::token_keys(ctx.env())?;
    let client = super::client(ctx.env())?;
    let pool = ctx.db()?;
    let tenant = &args.tenant;
    let row = super::channel_row(&pool, tenant).await?;
    if template_store::fetch_in(&pool, tenant, name.as_str(), language.as_str())
        .await?
        .is_some()
    {
        return Err(CliError::bad_input(format!(
            "tenant {tenant} already has template {name} ({language}); `templates remove` it first"
        )));
    }
    let token = super::open_active_token(&keys, tenant, &row)?;
    let created = client
        .create_template(
            &row.waba_id,
            &token,
            &TemplateSubmission {
                name: name.as_str(),
                language: language.as_str(),
                category: category.as_str(),
                parameter_format: components.parameter_format(),
                components: components.value(),
            },
        )
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "Meta refused template {name} ({language}): {}",
                super::scrub(&e.to_string(), &[&token])
            )
        })?;
    let status = TemplateStatus::parse(&created.status);
    let meta_id = Some(created.id.as_str()).filter(|id| template_store::plain_id(id));
    template_store::upsert(
        &pool,
        tenant,
        &NewTemplate {
            name: &name,
            language: &language,
            category,
            components: &components,
            status: &status,
            meta_id,
        },
    )
    .await
    .map_err(|e| {
        anyhow::anyhow!(
            "Meta accepted template {name} ({language}) (id {}), but storing it failed: {e}; \
             run `tenants cloud templates sync {tenant}` after adding the row again",
            created.id
        )
    })?;
    let stored = template_store::fetch_in(&pool, tenant, name.as_str(), language.as_str())
        .await?
        .ok_or_else(|| anyhow::anyhow!("the stored template vanished"))?;
    let fallback = template_store::fallback_in(&pool, tenant).await?;
    let view = TemplateView::of(stored, fallback.as_ref());
    out.emit(&view, |w| {
        writeln!(
            w,
            "template {} ({}) of {} submitted to Meta: id {}, status {} ({} body parameter(s)); \
             Meta's review moves its status by webhook",
            view.name,
            view.language,
            view.tenant,
            view.meta_id.as_deref().unwrap_or("-"),
            view.status,
            view.body_params
        )
    })?;
    Ok(Exit::Ok)
}

async fn list(tenant: &TenantId, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let pool = ctx.db()?;
    require(&pool, tenant).await?;
    let fallback = template_store::fallback_in(&pool, tenant).await?;
    let views: Vec<TemplateView> = template_store::list_in(&pool, tenant)
        .await?
        .into_iter()
        .map(|t| TemplateView::of(t, fallback.as_ref()))
        .collect();
    out.emit(&views, |w| {
        let mut t = output::table(vec![
            "name", "language", "category", "status", "params", "Meta id", "fallback", "reason",
        ]);
        for v in &views {
            t.add_row(vec![
                v.name.clone(),
                v.language.clone(),
                v.category.clone(),
                v.status.clone(),
                v.body_params.to_string(),
                v.meta_id.clone().unwrap_or_else(|| "-".to_owned()),
                if v.fallback { "yes" } else { "" }.to_owned(),
                v.rejection_reason.clone().unwrap_or_default(),
            ]);
        }
        output::write_table(w, &t)
    })?;
    Ok(Exit::Ok)
}

/// What `remove` did.
#[derive(Debug, Serialize)]
pub struct Removed {
    pub tenant: TenantId,
    pub name: String,
    pub language: String,
    /// It was the fallback, which is now cleared.
    pub was_fallback: bool,
    /// What removing it at Meta takes.
    pub at_meta: String,
}

async fn remove(args: KeyArgs, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let name = TemplateName::parse(&args.name).map_err(bad)?;
    let language = Language::parse(&args.language).map_err(bad)?;
    let pool = ctx.db()?;
    let tenant = &args.tenant;
    require(&pool, tenant).await?;
    let fallback = template_store::fallback_in(&pool, tenant).await?;
    if !template_store::remove(&pool, tenant, name.as_str(), language.as_str()).await? {
        return Err(CliError::bad_input(format!(
            "tenant {tenant} has no template {name} ({language})"
        )));
    }
    let done = Removed {
        tenant: tenant.clone(),
        was_fallback: fallback.is_some_and(|(n, l)| n == name.as_str() && l == language.as_str()),
        at_meta: format!(
            "Meta still holds it: delete it in WhatsApp Manager or with DELETE /{{waba_id}}/message_templates?name={name} \
             (that deletes every language of the name; an approved name cannot be reused for 30 days)"
        ),
        name: name.as_str().to_owned(),
        language: language.as_str().to_owned(),
    };
    out.emit(&done, |w| {
        writeln!(
            w,
            "template {} ({}) of {} removed here",
            done.name, done.language, done.tenant
        )?;
        if done.was_fallback {
            writeln!(
                w,
                "it was the fallback template: replies outside the window are now dead-lettered"
            )?;
        }
        writeln!(w, "{}", done.at_meta)
    })?;
    Ok(Exit::Ok)
}

/// What `fallback` set.
#[derive(Debug, Serialize)]
pub struct FallbackSet {
    pub tenant: TenantId,
    /// `None`: no fallback.
    pub name: Option<String>,
    pub language: Option<String>,
    pub status: Option<String>,
}

async fn fallback(args: FallbackArgs, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let chosen = match (&args.name, &args.language, args.none) {
        (_, _, true) => None,
        (Some(name), Some(language), false) => Some((
            TemplateName::parse(name).map_err(bad)?,
            Language::parse(language).map_err(bad)?,
        )),
        _ => return Err(CliError::bad_input("give --name and --language, or --none")),
    };
    let pool = ctx.db()?;
    let tenant = &args.tenant;
    require(&pool, tenant).await?;
    let mut status = None;
    if let Some((name, language)) = &chosen {
        let template = template_store::fetch_in(&pool, tenant, name.as_str(), language.as_str())
            .await?
            .ok_or_else(|| {
                CliError::bad_input(format!(
                    "tenant {tenant} has no template {name} ({language}): `templates add` (or `sync`) it first"
                ))
            })?;
        let components = Components::parse(template.components.clone()).map_err(|e| {
            CliError::bad_input(format!(
                "template {name} ({language}) cannot be a fallback: {e}"
            ))
        })?;
        if components.body_params() > 1 {
            return Err(CliError::bad_input(format!(
                "template {name} ({language}) takes {} body parameters; a fallback takes at most one (the reply's text)",
                components.body_params()
            )));
        }
        if components.header_params() > 0 || components.button_params() {
            return Err(CliError::bad_input(format!(
                "template {name} ({language}) needs header or button parameters, which a fallback cannot fill"
            )));
        }
        status = Some(template.status.as_str().to_owned());
    }
    let keyed = chosen.as_ref().map(|(n, l)| (n.as_str(), l.as_str()));
    if !template_store::set_fallback(&pool, tenant, keyed).await? {
        return Err(CliError::bad_input(format!(
            "tenant {tenant} has no Cloud API number connected"
        )));
    }
    let done = FallbackSet {
        tenant: tenant.clone(),
        name: chosen.as_ref().map(|(n, _)| n.as_str().to_owned()),
        language: chosen.as_ref().map(|(_, l)| l.as_str().to_owned()),
        status,
    };
    out.emit(&done, |w| match (&done.name, &done.language) {
        (Some(name), Some(language)) => {
            let status = done.status.as_deref().unwrap_or("-");
            writeln!(
                w,
                "fallback template of {} is {name} ({language}), status {status}",
                done.tenant
            )?;
            if status != "APPROVED" {
                writeln!(
                    w,
                    "until Meta approves it, replies outside the window are dead-lettered"
                )?;
            }
            Ok(())
        }
        _ => writeln!(
            w,
            "{} has no fallback template: replies outside the window are dead-lettered",
            done.tenant
        ),
    })?;
    Ok(Exit::Ok)
}
