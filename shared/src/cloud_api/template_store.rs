//! A tenant's message templates (`cloud_templates`, migration 0016) and its
//! fallback template choice (on `cloud_channels`). The operator CLI writes
//! them as the owner; the router records Meta's review events within the
//! tenant's row-level security scope and never creates a template from a
//! webhook (an event about a template we do not hold is the operator's to
//! look at, not ours to invent).

use sqlx::{PgExecutor, PgPool, Row as _, postgres::PgRow};

use super::templates::{Category, Components, Language, TemplateName, TemplateStatus};
use crate::{db, ids::TenantId};

/// One `cloud_templates` row.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub tenant: TenantId,
    pub name: String,
    pub language: String,
    pub category: String,
    pub components: serde_json::Value,
    pub body_params: u32,
    pub header_params: u32,
    pub status: TemplateStatus,
    pub meta_id: Option<String>,
    pub rejection_reason: Option<String>,
    /// Unix seconds.
    pub updated_at: i64,
}

/// What the operator stores after Meta accepted a creation.
#[derive(Debug, Clone)]
pub struct NewTemplate<'a> {
    pub name: &'a TemplateName,
    pub language: &'a Language,
    pub category: Category,
    pub components: &'a Components,
    pub status: &'a TemplateStatus,
    pub meta_id: Option<&'a str>,
}

const COLUMNS: &str = "tenant_id, name, language, category, components, body_params, \
                       header_params, status, meta_id, rejection_reason, \
                       floor(extract(epoch FROM updated_at))::bigint AS updated_s";

/// Stores (or replaces) a template (the operator).
pub async fn upsert(
    db: impl PgExecutor<'_>,
    tenant: &TenantId,
    new: &NewTemplate<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO cloud_templates (tenant_id, name, language, category, components, \
                                      body_params, header_params, status, meta_id) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
         ON CONFLICT (tenant_id, name, language) DO UPDATE SET category = EXCLUDED.category, \
             components = EXCLUDED.components, body_params = EXCLUDED.body_params, \
             header_params = EXCLUDED.header_params, status = EXCLUDED.status, \
             meta_id = EXCLUDED.meta_id, rejection_reason = NULL, updated_at = now()",
    )
    .bind(tenant.as_str())
    .bind(new.name.as_str())
    .bind(new.language.as_str())
    .bind(new.category.as_str())
    .bind(new.components.value())
    .bind(count(new.components.body_params()))
    .bind(count(new.components.header_params()))
    .bind(new.status.as_str())
    .bind(new.meta_id)
    .execute(db)
    .await?;
    Ok(())
}

fn count(n: usize) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}

/// The tenant's templates by name and language (the operator).
pub async fn list_in(
    db: impl PgExecutor<'_>,
    tenant: &TenantId,
) -> Result<Vec<Template>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM cloud_templates WHERE tenant_id = $1 ORDER BY name, language"
    ))
    .bind(tenant.as_str())
    .fetch_all(db)
    .await?;
    rows.iter().map(decode).collect()
}

/// One template of the tenant.
pub async fn fetch_in(
    db: impl PgExecutor<'_>,
    tenant: &TenantId,
    name: &str,
    language: &str,
) -> Result<Option<Template>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM cloud_templates \
          WHERE tenant_id = $1 AND name = $2 AND language = $3"
    ))
    .bind(tenant.as_str())
    .bind(name)
    .bind(language)
    .fetch_optional(db)
    .await?;
    row.as_ref().map(decode).transpose()
}

/// Removes one template row; a fallback naming it is cleared by the
/// table's foreign key. Whether it existed.
pub async fn remove(
    db: impl PgExecutor<'_>,
    tenant: &TenantId,
    name: &str,
    language: &str,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "DELETE FROM cloud_templates WHERE tenant_id = $1 AND name = $2 AND language = $3",
    )
    .bind(tenant.as_str())
    .bind(name)
    .bind(language)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets (or with `None` clears) the tenant's fallback template. `false`:
/// the tenant has no Cloud channel.
pub async fn set_fallback(
    db: impl PgExecutor<'_>,
    tenant: &TenantId,
    fallback: Option<(&str, &str)>,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE cloud_channels SET fallback_template_name = $2, \
                fallback_template_language = $3, updated_at = now() WHERE tenant_id = $1",
    )
    .bind(tenant.as_str())
    .bind(fallback.map(|f| f.0))
    .bind(fallback.map(|f| f.1))
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// The tenant's fallback template (name, language), if one is set.
pub async fn fallback_in(
    db: impl PgExecutor<'_>,
    tenant: &TenantId,
) -> Result<Option<(String, String)>, sqlx::Error> {
    let row: Option<(Option<String>, Option<String>)> = sqlx::query_as(
        "SELECT fallback_template_name, fallback_template_language \
           FROM cloud_channels WHERE tenant_id = $1",
    )
    .bind(tenant.as_str())
    .fetch_optional(db)
    .await?;
    Ok(row.and_then(|(n, l)| n.zip(l)))
}

/// Which template a review event is about: by name and language when the
/// event carries them, else by Meta's id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateKey {
    NameLanguage { name: String, language: String },
    MetaId(String),
}

/// What recording a status did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// The row now has this status (`was`: before); `fallback`: it is the
    /// tenant's fallback template.
    Updated {
        name: String,
        language: String,
        was: TemplateStatus,
        fallback: bool,
    },
    /// No template of the tenant matches: nothing was written.
    Unknown,
}

/// Records Meta's status of one template, within the tenant's scope (the
/// router, from `message_template_status_update`; the CLI's sync uses
/// [`record_status_in`]). A template is never created here.
pub async fn record_status(
    pool: &PgPool,
    tenant: &TenantId,
    key: &TemplateKey,
    status: &TemplateStatus,
    meta_id: Option<&str>,
    reason: Option<&str>,
) -> Result<Recorded, sqlx::Error> {
    let mut tx = db::begin_for_tenant(pool, tenant).await?;
    let recorded = record_status_in(&mut *tx, tenant, key, status, meta_id, reason).await?;
    tx.commit().await?;
    Ok(recorded)
}

/// [`record_status`] on a connection that may write the row.
pub async fn record_status_in(
    db: impl PgExecutor<'_>,
    tenant: &TenantId,
    key: &TemplateKey,
    status: &TemplateStatus,
    meta_id: Option<&str>,
    reason: Option<&str>,
) -> Result<Recorded, sqlx::Error> {
    let (name, language, by_id) = match key {
        TemplateKey::NameLanguage { name, language } => (Some(name), Some(language), None),
        TemplateKey::MetaId(id) => (None, None, Some(id)),
    };
    // The old status comes from the row as it was before this statement
    // (`old`), so the answer says what changed.
    let row = sqlx::query(
        "WITH old AS ( \
             SELECT name, language, status FROM cloud_templates \
              WHERE tenant_id = $1 AND ((name = $2 AND language = $3) OR meta_id = $4) \
              LIMIT 1 FOR UPDATE) \
         UPDATE cloud_templates t SET status = $5, \
                meta_id = coalesce($6, t.meta_id), \
                rejection_reason = CASE WHEN $5 = 'APPROVED' THEN NULL \
                                        ELSE coalesce($7, t.rejection_reason) END, \
                updated_at = now() \
           FROM old \
          WHERE t.tenant_id = $1 AND t.name = old.name AND t.language = old.language \
         RETURNING t.name, t.language, old.status AS was, \
                   EXISTS (SELECT 1 FROM cloud_channels c WHERE c.tenant_id = $1 \
                            AND c.fallback_template_name = t.name \
                            AND c.fallback_template_language = t.language) AS fallback",
    )
    .bind(tenant.as_str())
    .bind(name)
    .bind(language)
    .bind(by_id)
    .bind(status.as_str())
    .bind(meta_id.filter(|id| plain_id(id)))
    .bind(reason.map(|r| {
        r.chars()
            .filter(|c| !c.is_control())
            .take(300)
            .collect::<String>()
    }))
    .fetch_optional(db)
    .await?;
    let Some(row) = row else {
        return Ok(Recorded::Unknown);
    };
    let was: String = row.try_get("was")?;
    Ok(Recorded::Updated {
        name: row.try_get("name")?,
        language: row.try_get("language")?,
        was: TemplateStatus::parse(&was),
        fallback: row.try_get("fallback")?,
    })
}

/// Meta's ids as the column admits them.
pub fn plain_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

fn decode(row: &PgRow) -> Result<Template, sqlx::Error> {
    let id: String = row.try_get("tenant_id")?;
    let tenant = TenantId::parse(&id).map_err(|e| sqlx::Error::ColumnDecode {
        index: "tenant_id".to_owned(),
        source: e.to_string().into(),
    })?;
    let status: String = row.try_get("status")?;
    let body_params: i32 = row.try_get("body_params")?;
    let header_params: i32 = row.try_get("header_params")?;
    Ok(Template {
        tenant,
        name: row.try_get("name")?,
        language: row.try_get("language")?,
        category: row.try_get("category")?,
        components: row.try_get("components")?,
        body_params: u32::try_from(body_params).unwrap_or(0),
        header_params: u32::try_from(header_params).unwrap_or(0),
        status: TemplateStatus::parse(&status),
        meta_id: row.try_get("meta_id")?,
        rejection_reason: row.try_get("rejection_reason")?,
        updated_at: row.try_get("updated_s")?,
    })
}
