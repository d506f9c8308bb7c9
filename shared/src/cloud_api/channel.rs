//! A Cloud API tenant's number and credential (`cloud_channels`, migration
//! 0013): written by the operator CLI, read by the sender within the
//! tenant's row-level security scope, and looked up by number for ingest's
//! routing through `switchyard_cloud_routes` (routing facts only).

use sqlx::{PgExecutor, PgPool, Row as _, postgres::PgRow};

use super::{fallback::FallbackRow, templates::TemplateStatus, token_box::SealedToken};
use crate::{db, ids::TenantId, message_ids::ChatId};

/// Whether the tenant's token may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    Active,
    /// An operator revoked it.
    Revoked,
    /// Meta refused it (codes 0/190, the app uninstalled).
    Rejected,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Active => "active",
            TokenState::Revoked => "revoked",
            TokenState::Rejected => "rejected",
        }
    }

    fn parse(raw: &str) -> Self {
        match raw {
            "active" => TokenState::Active,
            "revoked" => TokenState::Revoked,
            // The column's check admits nothing else; read anything odd as
            // refused rather than usable.
            _ => TokenState::Rejected,
        }
    }
}

/// One `cloud_channels` row. `Debug` shows no token (sealed or not).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloudChannel {
    pub tenant: TenantId,
    pub phone_number_id: String,
    pub waba_id: String,
    pub display_phone_number: Option<String>,
    pub token: Option<SealedToken>,
    pub token_state: TokenState,
    pub mps: u32,
    pub quality: Option<String>,
    pub messaging_limit: Option<String>,
}

/// What the operator connects.
#[derive(Debug, Clone)]
pub struct NewChannel<'a> {
    pub phone_number_id: &'a str,
    pub waba_id: &'a str,
    pub display_phone_number: Option<&'a str>,
    pub token: &'a SealedToken,
}

/// The tenant's channel row, read within its own scope (the sender).
pub async fn fetch(pool: &PgPool, tenant: &TenantId) -> Result<Option<CloudChannel>, sqlx::Error> {
    let mut tx = db::begin_for_tenant(pool, tenant).await?;
    let row = fetch_in(&mut *tx, tenant).await?;
    tx.commit().await?;
    Ok(row)
}

const COLUMNS: &str = "tenant_id, phone_number_id, waba_id, display_phone_number, token_sealed, \
                       token_key_id, token_state, mps, quality, messaging_limit";

/// The tenant's channel row, on a connection that may read it (the owner).
pub async fn fetch_in(
    db: impl PgExecutor<'_>,
    tenant: &TenantId,
) -> Result<Option<CloudChannel>, sqlx::Error> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM cloud_channels WHERE tenant_id = $1"
    ))
    .bind(tenant.as_str())
    .fetch_optional(db)
    .await?;
    row.map(|row| decode(&row)).transpose()
}

/// What the sender reads before a reply: the channel row, when the
/// customer of the chat last wrote (unix seconds; `None`: no message of
/// theirs recorded) and the tenant's fallback template with whether it was
/// sent to this chat since then.
#[derive(Debug, Clone, PartialEq)]
pub struct ReplyContext {
    pub channel: CloudChannel,
    pub last_inbound: Option<i64>,
    pub fallback: Option<FallbackRow>,
}

/// [`ReplyContext`] in one round trip within the tenant's scope
/// (docs/cloud-api.md section 7).
pub async fn fetch_for_reply(
    pool: &PgPool,
    tenant: &TenantId,
    chat: &ChatId,
) -> Result<Option<ReplyContext>, sqlx::Error> {
    let mut tx = db::begin_for_tenant(pool, tenant).await?;
    // Subqueries rather than joins: the channel's columns stay unqualified.
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS}, fallback_template_name, fallback_template_language, \
                (SELECT floor(extract(epoch FROM w.last_inbound_at))::bigint \
                   FROM cloud_windows w WHERE w.tenant_id = $1 AND w.chat_id = $2) AS last_inbound, \
                (SELECT t.status FROM cloud_templates t WHERE t.tenant_id = $1 \
                    AND t.name = fallback_template_name \
                    AND t.language = fallback_template_language) AS fallback_status, \
                (SELECT t.components FROM cloud_templates t WHERE t.tenant_id = $1 \
                    AND t.name = fallback_template_name \
                    AND t.language = fallback_template_language) AS fallback_components, \
                (SELECT f.reply_id FROM cloud_fallback_sends f \
                  WHERE f.tenant_id = $1 AND f.chat_id = $2 \
                    AND f.sent_at > coalesce((SELECT w.last_inbound_at FROM cloud_windows w \
                          WHERE w.tenant_id = $1 AND w.chat_id = $2), '-infinity')) AS fallback_sent_for \
           FROM cloud_channels WHERE tenant_id = $1"
    ))
    .bind(tenant.as_str())
    .bind(chat.as_str())
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    row.map(|row| {
        let name: Option<String> = row.try_get("fallback_template_name")?;
        let language: Option<String> = row.try_get("fallback_template_language")?;
        let status: Option<String> = row.try_get("fallback_status")?;
        let fallback = match name.zip(language) {
            Some((name, language)) => Some(FallbackRow {
                name,
                language,
                status: status.as_deref().map(TemplateStatus::parse),
                components: row.try_get("fallback_components")?,
                sent_for: row.try_get("fallback_sent_for")?,
            }),
            None => None,
        };
        Ok(ReplyContext {
            channel: decode(&row)?,
            last_inbound: row.try_get("last_inbound")?,
            fallback,
        })
    })
    .transpose()
}

/// Every channel row, by tenant id (the operator's `show`).
pub async fn list_in(db: impl PgExecutor<'_>) -> Result<Vec<CloudChannel>, sqlx::Error> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM cloud_channels ORDER BY tenant_id"
    ))
    .fetch_all(db)
    .await?;
    rows.iter().map(decode).collect()
}

/// Which tenant a phone number id is connected to, if any (the operator,
/// before connecting it elsewhere).
pub async fn number_owner(
    db: impl PgExecutor<'_>,
    phone_number_id: &str,
) -> Result<Option<TenantId>, sqlx::Error> {
    let id: Option<String> =
        sqlx::query_scalar("SELECT tenant_id FROM cloud_channels WHERE phone_number_id = $1")
            .bind(phone_number_id)
            .fetch_optional(db)
            .await?;
    Ok(id.and_then(|id| TenantId::parse(&id).ok()))
}

fn decode(row: &PgRow) -> Result<CloudChannel, sqlx::Error> {
    let id: String = row.try_get("tenant_id")?;
    let tenant = TenantId::parse(&id).map_err(|e| sqlx::Error::ColumnDecode {
        index: "tenant_id".to_owned(),
        source: e.to_string().into(),
    })?;
    let sealed: Option<Vec<u8>> = row.try_get("token_sealed")?;
    let key_id: Option<String> = row.try_get("token_key_id")?;
    let state: String = row.try_get("token_state")?;
    let mps: i32 = row.try_get("mps")?;
    Ok(CloudChannel {
        tenant,
        phone_number_id: row.try_get("phone_number_id")?,
        waba_id: row.try_get("waba_id")?,
        display_phone_number: row.try_get("display_phone_number")?,
        token: sealed
            .zip(key_id)
            .map(|(sealed, key_id)| SealedToken { key_id, sealed }),
        token_state: TokenState::parse(&state),
        mps: u32::try_from(mps).unwrap_or(1),
        quality: row.try_get("quality")?,
        messaging_limit: row.try_get("messaging_limit")?,
    })
}

/// Connects (or reconnects) the tenant's number with a fresh token and
/// makes `cloud_api` its channel, in one transaction (the operator).
pub async fn connect(
    pool: &PgPool,
    tenant: &TenantId,
    new: &NewChannel<'_>,
) -> Result<(), sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query(
        "INSERT INTO cloud_channels (tenant_id, phone_number_id, waba_id, display_phone_number, \
                                     token_sealed, token_key_id, token_state) \
         VALUES ($1, $2, $3, $4, $5, $6, 'active') \
         ON CONFLICT (tenant_id) DO UPDATE SET phone_number_id = EXCLUDED.phone_number_id, \
             waba_id = EXCLUDED.waba_id, display_phone_number = EXCLUDED.display_phone_number, \
             token_sealed = EXCLUDED.token_sealed, token_key_id = EXCLUDED.token_key_id, \
             token_state = 'active', updated_at = now()",
    )
    .bind(tenant.as_str())
    .bind(new.phone_number_id)
    .bind(new.waba_id)
    .bind(new.display_phone_number)
    .bind(&new.token.sealed)
    .bind(&new.token.key_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE tenants SET channel = 'cloud_api', updated_at = now() WHERE id = $1")
        .bind(tenant.as_str())
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Replaces the sealed token with a new one (a rotation) and makes it
/// usable again. A re-seal of the same token under another key is
/// [`reseal`], which keeps the state.
pub async fn set_token(
    db: impl PgExecutor<'_>,
    tenant: &TenantId,
    token: &SealedToken,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE cloud_channels SET token_sealed = $2, token_key_id = $3, token_state = 'active', \
                updated_at = now() WHERE tenant_id = $1",
    )
    .bind(tenant.as_str())
    .bind(&token.sealed)
    .bind(&token.key_id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Replaces `from` by `to` (the same token sealed under another key),
/// keeping the token's state; only if the row still holds `from`, so a
/// rotation that landed meanwhile is never overwritten with the old token.
pub async fn reseal(
    db: impl PgExecutor<'_>,
    tenant: &TenantId,
    from: &SealedToken,
    to: &SealedToken,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE cloud_channels SET token_sealed = $4, token_key_id = $5, updated_at = now() \
          WHERE tenant_id = $1 AND token_key_id = $2 AND token_sealed = $3",
    )
    .bind(tenant.as_str())
    .bind(&from.key_id)
    .bind(&from.sealed)
    .bind(&to.sealed)
    .bind(&to.key_id)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Marks the token unusable (`Revoked` by an operator, `Rejected` when Meta
/// refused it). The sealed token is dropped on revocation.
pub async fn set_token_state(
    db: impl PgExecutor<'_>,
    tenant: &TenantId,
    state: TokenState,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE cloud_channels SET token_state = $2, updated_at = now(), \
                token_sealed = CASE WHEN $2 = 'revoked' THEN NULL ELSE token_sealed END, \
                token_key_id = CASE WHEN $2 = 'revoked' THEN NULL ELSE token_key_id END \
          WHERE tenant_id = $1",
    )
    .bind(tenant.as_str())
    .bind(state.as_str())
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records Meta's refusal of the tenant's token (the sender after a `0` or
/// `190`, the router after the app was uninstalled), in the tenant's own
/// scope; the sealed token is kept for an operator to inspect or replace.
/// Whether the token was usable until now (so the news is told once).
pub async fn mark_rejected(pool: &PgPool, tenant: &TenantId) -> Result<bool, sqlx::Error> {
    let mut tx = db::begin_for_tenant(pool, tenant).await?;
    let done = sqlx::query(
        "UPDATE cloud_channels SET token_state = 'rejected', updated_at = now() \
          WHERE tenant_id = $1 AND token_state = 'active'",
    )
    .bind(tenant.as_str())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(done.rows_affected() == 1)
}

/// Records the number's messaging limit tier and quality rating as Meta
/// reported them (the router, from a quality or capability webhook), in the
/// tenant's own scope; `None` keeps what is recorded.
pub async fn record_limits(
    pool: &PgPool,
    tenant: &TenantId,
    messaging_limit: Option<&str>,
    quality: Option<&str>,
) -> Result<(), sqlx::Error> {
    let mut tx = db::begin_for_tenant(pool, tenant).await?;
    sqlx::query(
        "UPDATE cloud_channels SET messaging_limit = coalesce($2, messaging_limit), \
                quality = coalesce($3, quality), updated_at = now() \
          WHERE tenant_id = $1",
    )
    .bind(tenant.as_str())
    .bind(messaging_limit)
    .bind(quality)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

/// Every sealed token (for a re-seal after a key rotation; the owner).
pub async fn sealed_tokens(
    db: impl PgExecutor<'_>,
) -> Result<Vec<(TenantId, SealedToken)>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT tenant_id, token_sealed, token_key_id FROM cloud_channels \
          WHERE token_sealed IS NOT NULL ORDER BY tenant_id",
    )
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .filter_map(|row| {
            let id: String = row.try_get("tenant_id").ok()?;
            let tenant = TenantId::parse(&id).ok()?;
            Some(Ok((
                tenant,
                SealedToken {
                    sealed: row.try_get("token_sealed").ok()?,
                    key_id: row.try_get("token_key_id").ok()?,
                },
            )))
        })
        .collect()
}

/// Where one number or WABA routes (ingest).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RouteRow {
    pub tenant: TenantId,
    pub phone_number_id: String,
    pub waba_id: String,
    pub display_phone_number: Option<String>,
    /// Active and on the Cloud channel; otherwise its items are dropped.
    pub active: bool,
}

/// The tenants of these numbers and WABAs, in one round trip.
pub async fn routes(
    db: impl PgExecutor<'_>,
    numbers: &[String],
    wabas: &[String],
) -> Result<Vec<RouteRow>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT tenant_id, phone_number_id, waba_id, display_phone_number, active \
           FROM switchyard_cloud_routes($1, $2)",
    )
    .bind(numbers)
    .bind(wabas)
    .fetch_all(db)
    .await?;
    rows.into_iter()
        .filter_map(|row| {
            let id: String = row.try_get("tenant_id").ok()?;
            Some(Ok(RouteRow {
                tenant: TenantId::parse(&id).ok()?,
                phone_number_id: row.try_get("phone_number_id").ok()?,
                waba_id: row.try_get("waba_id").ok()?,
                display_phone_number: row.try_get("display_phone_number").ok()?,
                active: row.try_get("active").ok()?,
            }))
        })
        .collect()
}
