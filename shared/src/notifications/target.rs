//! Where a tenant's notifications go: the `tenant_notifications` table
//! (migration 0012), its URL and Standard Webhooks secret. The CLI (the
//! owner) writes it; the notifier reads one tenant's row in a tenant-scoped
//! transaction. The secret is a [`SecretString`] from the row onwards and
//! never printed: [`NotifyTarget`]'s `Debug` hides it.

use base64::Engine as _;
use rand::RngCore as _;
use secrecy::{ExposeSecret, SecretString};
use sqlx::{PgExecutor, PgPool, Row as _};

use crate::{
    db,
    ids::TenantId,
    standard_webhooks::{MIN_KEY_BYTES, SigningSecret},
};

/// Random bytes in a secret we make (the specification asks for 24 to 64).
const SECRET_BYTES: usize = 32;

/// A tenant's notification URL and signing secret.
#[derive(Clone)]
pub struct NotifyTarget {
    pub url: String,
    pub secret: SigningSecret,
}

impl std::fmt::Debug for NotifyTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NotifyTarget")
            .field("url", &crate::bot_config::redact_url(&self.url))
            .field("secret", &"[redacted]")
            .finish()
    }
}

/// A new secret: `whsec_` + base64 of 32 random bytes.
pub fn generate_secret() -> SecretString {
    let mut key = [0u8; SECRET_BYTES];
    rand::rng().fill_bytes(&mut key);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(key)
    )
    .into()
}

/// The tenant's target, or `None` when its notifications are off (or the
/// stored secret no longer parses, which is logged).
pub async fn fetch(pool: &PgPool, tenant: &TenantId) -> Result<Option<NotifyTarget>, sqlx::Error> {
    let mut tx = db::begin_for_tenant(pool, tenant).await?;
    let row = sqlx::query("SELECT url, secret FROM tenant_notifications WHERE tenant_id = $1")
        .bind(tenant.as_str())
        .fetch_optional(&mut *tx)
        .await?;
    tx.commit().await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let secret: SecretString = row.try_get::<String, _>("secret")?.into();
    match SigningSecret::parse_at_least(&secret, MIN_KEY_BYTES) {
        Ok(secret) => Ok(Some(NotifyTarget {
            url: row.try_get("url")?,
            secret,
        })),
        Err(e) => {
            tracing::warn!(tenant.id = %tenant, error = %e, "stored notification secret does not parse; notifications off");
            Ok(None)
        }
    }
}

/// Whether each tenant has notifications on (the CLI's `tenants list`).
pub async fn enabled(db: impl PgExecutor<'_>) -> Result<Vec<TenantId>, sqlx::Error> {
    let rows = sqlx::query("SELECT tenant_id FROM tenant_notifications ORDER BY tenant_id")
        .fetch_all(db)
        .await?;
    Ok(rows
        .iter()
        .filter_map(|r| r.try_get::<&str, _>("tenant_id").ok())
        .filter_map(|t| TenantId::parse(t).ok())
        .collect())
}

/// Sets the tenant's URL. A tenant whose notifications were off gets
/// `new_secret` too: `Some(true)`, the caller shows it once; one that had a
/// URL keeps its secret (`Some(false)`). `None`: no such tenant.
pub async fn set_url(
    db: impl PgExecutor<'_>,
    tenant: &TenantId,
    url: &str,
    new_secret: &SecretString,
) -> Result<Option<bool>, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO tenant_notifications (tenant_id, url, secret) \
         SELECT id, $2, $3 FROM tenants WHERE id = $1 \
         ON CONFLICT (tenant_id) DO UPDATE SET url = EXCLUDED.url, updated_at = now() \
         RETURNING (xmax = 0) AS inserted",
    )
    .bind(tenant.as_str())
    .bind(url)
    .bind(new_secret.expose_secret())
    .fetch_optional(db)
    .await?;
    row.map(|r| r.try_get("inserted")).transpose()
}

/// Replaces the secret of a tenant whose notifications are on; `false`
/// when they are off (nothing changed).
pub async fn rotate_secret(
    db: impl PgExecutor<'_>,
    tenant: &TenantId,
    new_secret: &SecretString,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE tenant_notifications SET secret = $2, updated_at = now() WHERE tenant_id = $1",
    )
    .bind(tenant.as_str())
    .bind(new_secret.expose_secret())
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Turns a tenant's notifications off (URL and secret deleted); whether
/// they were on.
pub async fn remove(db: impl PgExecutor<'_>, tenant: &TenantId) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("DELETE FROM tenant_notifications WHERE tenant_id = $1")
        .bind(tenant.as_str())
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// A stuck bridge whose tenant was not yet notified of this episode.
#[derive(Debug, Clone)]
pub struct StuckEpisode {
    pub tenant: TenantId,
    pub state: crate::bridge_state::BridgeState,
    /// When the state was recorded: the episode's identity.
    pub state_at: time::OffsetDateTime,
    pub for_seconds: u64,
}

/// Every stuck episode not yet notified (migration 0012's function).
pub async fn stuck_unnotified(
    pool: &PgPool,
    older_than: std::time::Duration,
) -> Result<Vec<StuckEpisode>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT tenant_id, bridge_state, state_at, for_seconds \
         FROM switchyard_stuck_unnotified(make_interval(secs => $1))",
    )
    .bind(older_than.as_secs_f64())
    .fetch_all(pool)
    .await?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        let Ok(tenant) = TenantId::parse(row.try_get::<&str, _>("tenant_id")?) else {
            continue;
        };
        out.push(StuckEpisode {
            tenant,
            state: crate::bridge_state::BridgeState::parse(row.try_get("bridge_state")?),
            state_at: row.try_get("state_at")?,
            for_seconds: u64::try_from(row.try_get::<i64, _>("for_seconds")?).unwrap_or(0),
        });
    }
    Ok(out)
}

/// Records that `episode` was notified (tenant-scoped).
pub async fn mark_stuck_notified(pool: &PgPool, episode: &StuckEpisode) -> Result<(), sqlx::Error> {
    let mut tx = db::begin_for_tenant(pool, &episode.tenant).await?;
    sqlx::query("UPDATE tenant_notifications SET stuck_notified_for = $2 WHERE tenant_id = $1")
        .bind(episode.tenant.as_str())
        .bind(episode.state_at)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}
