//! `tenants cloud templates sync TENANT`: lists the tenant's WABA templates
//! at Meta (every page) with its own token and brings the stored statuses
//! up to date: the reconciliation for a webhook that was lost or arrived
//! before the template was stored. Templates found only at Meta are
//! reported, not imported (a row holds what we submitted); stored ones
//! Meta no longer lists are reported too (deleted at Meta, or another
//! language). The listing happens before any write; no transaction spans
//! the call.

use serde::Serialize;
use switchyard_shared::{
    cloud_api::{
        template_store::{self, Recorded, TemplateKey},
        templates::TemplateStatus,
    },
    ids::TenantId,
};

use crate::{
    context::Context,
    exit::{CliResult, Exit},
    output::Output,
};

/// One status that changed.
#[derive(Debug, Serialize)]
pub struct Change {
    pub name: String,
    pub language: String,
    pub was: String,
    pub status: String,
}

/// What `sync` found and did.
#[derive(Debug, Serialize)]
pub struct SyncReport {
    pub tenant: TenantId,
    pub waba_id: String,
    pub listed_at_meta: usize,
    pub changed: Vec<Change>,
    pub unchanged: usize,
    /// `name (language)` at Meta but not stored here.
    pub only_at_meta: Vec<String>,
    /// `name (language)` stored here but not listed by Meta.
    pub only_here: Vec<String>,
}

pub async fn run(tenant: &TenantId, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let keys = super::token_keys(ctx.env())?;
    let client = super::client(ctx.env())?;
    let pool = ctx.db()?;
    let row = super::channel_row(&pool, tenant).await?;
    let token = super::open_active_token(&keys, tenant, &row)?;
    let listed = client
        .list_templates(&row.waba_id, &token)
        .await
        .map_err(|e| {
            anyhow::anyhow!(
                "listing WABA {}'s templates failed: {}",
                row.waba_id,
                super::scrub(&e.to_string(), &[&token])
            )
        })?;
    let stored = template_store::list_in(&pool, tenant).await?;
    let mut report = SyncReport {
        tenant: tenant.clone(),
        waba_id: row.waba_id.clone(),
        listed_at_meta: listed.len(),
        changed: Vec::new(),
        unchanged: 0,
        only_at_meta: Vec::new(),
        only_here: Vec::new(),
    };
    for at_meta in &listed {
        let here = stored
            .iter()
            .find(|t| t.name == at_meta.name && t.language == at_meta.language);
        if here.is_none() {
            report
                .only_at_meta
                .push(format!("{} ({})", at_meta.name, at_meta.language));
            continue;
        }
        let status = TemplateStatus::parse(&at_meta.status);
        let key = TemplateKey::NameLanguage {
            name: at_meta.name.clone(),
            language: at_meta.language.clone(),
        };
        let recorded = template_store::record_status_in(
            &pool,
            tenant,
            &key,
            &status,
            at_meta.id.as_deref(),
            at_meta.rejected_reason.as_deref(),
        )
        .await?;
        match recorded {
            Recorded::Updated { was, .. } if was != status => report.changed.push(Change {
                name: at_meta.name.clone(),
                language: at_meta.language.clone(),
                was: was.as_str().to_owned(),
                status: status.as_str().to_owned(),
            }),
            _ => report.unchanged += 1,
        }
    }
    report.only_here = stored
        .iter()
        .filter(|t| {
            !listed
                .iter()
                .any(|l| l.name == t.name && l.language == t.language)
        })
        .map(|t| format!("{} ({})", t.name, t.language))
        .collect();
    out.emit(&report, |w| {
        writeln!(
            w,
            "{}: {} template(s) listed at Meta for WABA {}; {} changed, {} unchanged",
            report.tenant,
            report.listed_at_meta,
            report.waba_id,
            report.changed.len(),
            report.unchanged
        )?;
        for c in &report.changed {
            writeln!(
                w,
                "  {} ({}): {} -> {}",
                c.name, c.language, c.was, c.status
            )?;
        }
        if !report.only_at_meta.is_empty() {
            writeln!(
                w,
                "at Meta only (not stored here): {}",
                report.only_at_meta.join(", ")
            )?;
        }
        if !report.only_here.is_empty() {
            writeln!(
                w,
                "stored here only (not listed by Meta): {}",
                report.only_here.join(", ")
            )?;
        }
        Ok(())
    })?;
    Ok(Exit::Ok)
}
