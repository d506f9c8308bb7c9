//! The tenants table: who exists, whether they may be served, which bridge is
//! theirs and how much of the fleet they may use. Router, sender and the
//! operator CLI all read tenants through here; a tenant is always looked up by
//! the id taken from a subject or an authenticated URL, never from a payload.

use sqlx::{PgExecutor, Row, postgres::PgRow};

use crate::{
    bot_config::{BotConfig, BotConfigError},
    bridge_state::BridgeState,
    channel::Channel,
    ids::{BridgeId, TenantId},
    webhook_auth::Generation,
    webhook_credential::WebhookCredential,
};

/// Whether a tenant may be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TenantStatus {
    Active,
    Suspended,
}

impl TenantStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TenantStatus::Active => "active",
            TenantStatus::Suspended => "suspended",
        }
    }
}

/// Which bot answers a tenant's messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BotKind {
    Rules,
    Http,
    Echo,
}

impl BotKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BotKind::Rules => "rules",
            BotKind::Http => "http",
            BotKind::Echo => "echo",
        }
    }

    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "rules" => Some(BotKind::Rules),
            "http" => Some(BotKind::Http),
            "echo" => Some(BotKind::Echo),
            _ => None,
        }
    }
}

/// A tenant's share of the sending capacity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SendLimits {
    /// Deficit round-robin weight among backlogged tenants.
    pub weight: u32,
    /// The tenant's own budget, under the fleet-wide one.
    pub sends_per_minute: u32,
    pub send_burst: u32,
    /// Concurrent sends in flight for this tenant.
    pub max_in_flight: u32,
}

/// One row of the tenants table. Its `Debug` prints the bot configuration
/// redacted ([`crate::bot_config::redact_json`]): a tenant row in a log line
/// or a panic message never carries the bot's URL token or signing secret.
#[derive(Clone, PartialEq, serde::Serialize)]
pub struct Tenant {
    pub id: TenantId,
    pub display_name: String,
    pub status: TenantStatus,
    pub bridge_id: Option<BridgeId>,
    pub bridge_state: BridgeState,
    pub limits: SendLimits,
    pub bot_kind: BotKind,
    /// The configuration as stored (shown, redacted, by the CLI).
    pub bot_config: serde_json::Value,
    /// The same, parsed once when the row was loaded: what the router runs,
    /// or why the stored configuration no longer parses.
    #[serde(skip)]
    pub bot: Result<BotConfig, BotConfigError>,
    /// How the tenant's number behaves on WhatsApp (pacing, takeover, bursts).
    pub whatsapp: WhatsAppSettings,
    /// Which webhook URL tokens the tenant accepts (migration 0008).
    pub webhook: WebhookCredential,
    /// WA Bridges or the Cloud API (migration 0013).
    pub channel: Channel,
}

/// Per-tenant WhatsApp behaviour (migration 0004; `docs/whatsapp.md` gives
/// each default and its reason). Zero means "off" where noted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WhatsAppSettings {
    /// Minimum gap between two sends on the bridge (ms; 0 = off). Up to half
    /// of it again is added as jitter.
    pub min_send_gap_ms: u32,
    /// Most sends to one chat per rolling hour (0 = no cap).
    pub contact_hourly_cap: u32,
    /// Bot silence in a chat after a person answered from the phone (0 = never).
    pub takeover_minutes: u32,
    /// A chat's burst gathered into one bot turn (ms; 0 = off).
    pub debounce_ms: u32,
    /// Most of the fleet budget bulk sends may take (1–100).
    pub bulk_share_percent: u32,
    /// When the number was first seen connected (unix seconds; `None`: unknown).
    pub paired_at: Option<i64>,
}

impl Default for WhatsAppSettings {
    /// The schema's defaults.
    fn default() -> Self {
        Self {
            min_send_gap_ms: 0,
            contact_hourly_cap: 0,
            takeover_minutes: 30,
            debounce_ms: 0,
            bulk_share_percent: 50,
            paired_at: None,
        }
    }
}

impl std::fmt::Debug for Tenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut bot_config = self.bot_config.clone();
        crate::bot_config::redact_json(&mut bot_config);
        f.debug_struct("Tenant")
            .field("id", &self.id)
            .field("display_name", &self.display_name)
            .field("status", &self.status)
            .field("bridge_id", &self.bridge_id)
            .field("bridge_state", &self.bridge_state)
            .field("limits", &self.limits)
            .field("bot_kind", &self.bot_kind)
            .field("bot_config", &format_args!("{bot_config}"))
            .field("bot", &self.bot)
            .field("whatsapp", &self.whatsapp)
            .field("webhook", &self.webhook)
            .field("channel", &self.channel)
            .finish()
    }
}

impl Tenant {
    pub fn is_active(&self) -> bool {
        self.status == TenantStatus::Active
    }
}

const COLUMNS: &str = "id, display_name, status, bridge_id, bridge_state, weight, \
     sends_per_minute, send_burst, max_in_flight, bot_kind, bot_config, min_send_gap_ms, \
     contact_hourly_cap, takeover_minutes, debounce_ms, bulk_share_percent, \
     EXTRACT(EPOCH FROM paired_at)::bigint AS paired_at, webhook_generation, \
     (EXTRACT(EPOCH FROM webhook_previous_until) * 1000)::bigint AS webhook_previous_until_ms, \
     channel";

fn from_row(row: &PgRow) -> Result<Tenant, sqlx::Error> {
    let decode = |column: &str, e: String| sqlx::Error::ColumnDecode {
        index: column.to_owned(),
        source: e.into(),
    };
    let id: String = row.try_get("id")?;
    let status: String = row.try_get("status")?;
    let bridge_id: Option<i64> = row.try_get("bridge_id")?;
    let bot_kind: String = row.try_get("bot_kind")?;
    let bot_kind = BotKind::parse(&bot_kind)
        .ok_or_else(|| decode("bot_kind", format!("unknown bot kind {bot_kind:?}")))?;
    let bot_config: serde_json::Value = row.try_get("bot_config")?;
    let positive = |column: &str| -> Result<u32, sqlx::Error> {
        let v: i32 = row.try_get(column)?;
        u32::try_from(v).map_err(|e| decode(column, e.to_string()))
    };
    Ok(Tenant {
        id: TenantId::parse(&id).map_err(|e| decode("id", e.to_string()))?,
        display_name: row.try_get("display_name")?,
        status: match status.as_str() {
            "active" => TenantStatus::Active,
            "suspended" => TenantStatus::Suspended,
            other => return Err(decode("status", format!("unknown status {other:?}"))),
        },
        bridge_id: bridge_id
            .map(BridgeId::new)
            .transpose()
            .map_err(|e| decode("bridge_id", e.to_string()))?,
        bridge_state: BridgeState::parse(row.try_get("bridge_state")?),
        limits: SendLimits {
            weight: positive("weight")?,
            sends_per_minute: positive("sends_per_minute")?,
            send_burst: positive("send_burst")?,
            max_in_flight: positive("max_in_flight")?,
        },
        bot_kind,
        bot: load_bot(&id, bot_kind, &bot_config),
        bot_config,
        whatsapp: WhatsAppSettings {
            min_send_gap_ms: positive("min_send_gap_ms")?,
            contact_hourly_cap: positive("contact_hourly_cap")?,
            takeover_minutes: positive("takeover_minutes")?,
            debounce_ms: positive("debounce_ms")?,
            bulk_share_percent: positive("bulk_share_percent")?,
            paired_at: row.try_get("paired_at")?,
        },
        webhook: WebhookCredential {
            generation: Generation::new(positive("webhook_generation")?),
            previous_until_ms: row.try_get("webhook_previous_until_ms")?,
        },
        channel: {
            let raw: String = row.try_get("channel")?;
            Channel::parse(&raw)
                .ok_or_else(|| decode("channel", format!("unknown channel {raw:?}")))?
        },
    })
}

/// Parses a stored bot configuration; one that no longer parses is reported
/// here, with the tenant and the field, and kept as its error.
fn load_bot(
    tenant: &str,
    kind: BotKind,
    raw: &serde_json::Value,
) -> Result<BotConfig, BotConfigError> {
    let bot = BotConfig::parse(kind, raw);
    if let Err(e) = &bot {
        tracing::warn!(tenant.id = %tenant, bot.kind = kind.as_str(), bot.field = %e.field, error = %e.reason, "stored bot configuration does not parse; this tenant's messages will be refused");
    }
    bot
}

/// Reads one tenant; `None` when no such tenant exists.
pub async fn fetch(
    db: impl PgExecutor<'_>,
    tenant: &TenantId,
) -> Result<Option<Tenant>, sqlx::Error> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM tenants WHERE id = $1"))
        .bind(tenant.as_str())
        .fetch_optional(db)
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Several tenants' rows in one statement, each read under its own scope
/// (`switchyard_tenant_rows`, migration 0020): one answer per id, in the ids'
/// order, `None` for an id without a row. A row this build cannot read (a
/// value a newer release wrote) fails its own tenant's answer only. What
/// [`crate::tenant_reads`] runs for every tenant whose row was asked for
/// meanwhile.
pub async fn fetch_scoped_many(
    db: impl PgExecutor<'_>,
    ids: &[TenantId],
) -> Result<Vec<Result<Option<Tenant>, sqlx::Error>>, sqlx::Error> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM switchyard_tenant_rows($1)"))
        .bind(ids.iter().map(TenantId::as_str).collect::<Vec<_>>())
        .fetch_all(db)
        .await?;
    let mut found = std::collections::HashMap::with_capacity(rows.len());
    for row in &rows {
        let id: String = row.try_get("id")?;
        found.insert(id, row);
    }
    Ok(ids
        .iter()
        .map(|id| found.get(id.as_str()).map(|row| from_row(row)).transpose())
        .collect())
}

/// Every tenant, ordered by id.
pub async fn list(db: impl PgExecutor<'_>) -> Result<Vec<Tenant>, sqlx::Error> {
    let rows = sqlx::query(&format!("SELECT {COLUMNS} FROM tenants ORDER BY id"))
        .fetch_all(db)
        .await?;
    rows.iter().map(from_row).collect()
}

/// What a new tenant starts with. Its `Debug` prints the bot configuration
/// redacted, like [`Tenant`]'s: it may hold a signing secret or a URL token.
#[derive(Clone)]
pub struct NewTenant {
    pub id: TenantId,
    pub display_name: String,
    pub limits: SendLimits,
    pub bot_kind: BotKind,
    pub bot_config: serde_json::Value,
}

impl std::fmt::Debug for NewTenant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut bot_config = self.bot_config.clone();
        crate::bot_config::redact_json(&mut bot_config);
        f.debug_struct("NewTenant")
            .field("id", &self.id)
            .field("display_name", &self.display_name)
            .field("limits", &self.limits)
            .field("bot_kind", &self.bot_kind)
            .field("bot_config", &format_args!("{bot_config}"))
            .finish()
    }
}

impl NewTenant {
    /// An active tenant with default limits and the rules bot.
    pub fn with_defaults(id: TenantId) -> Self {
        Self {
            id,
            display_name: String::new(),
            limits: SendLimits {
                weight: 1,
                sends_per_minute: 60,
                send_burst: 10,
                max_in_flight: 4,
            },
            bot_kind: BotKind::Rules,
            bot_config: serde_json::json!({}),
        }
    }
}

/// Inserts a tenant; `Ok(false)` when the id is already taken (nothing changed).
pub async fn insert(db: impl PgExecutor<'_>, tenant: &NewTenant) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "INSERT INTO tenants (id, display_name, weight, sends_per_minute, send_burst, \
         max_in_flight, bot_kind, bot_config) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(tenant.id.as_str())
    .bind(&tenant.display_name)
    .bind(tenant.limits.weight as i32)
    .bind(tenant.limits.sends_per_minute as i32)
    .bind(tenant.limits.send_burst as i32)
    .bind(tenant.limits.max_in_flight as i32)
    .bind(tenant.bot_kind.as_str())
    .bind(&tenant.bot_config)
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Sets a tenant's status; `Ok(false)` when no such tenant exists.
pub async fn set_status(
    db: impl PgExecutor<'_>,
    tenant: &TenantId,
    status: TenantStatus,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE tenants SET status = $2, updated_at = now() WHERE id = $1")
        .bind(tenant.as_str())
        .bind(status.as_str())
        .execute(db)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Records the bridge's last known state; `Ok(false)` when no such tenant
/// exists. `bridge_state_at` is when the state began: the same state
/// reported again (a repeated webhook, a replayed event) keeps it, so a
/// stuck episode's age and identity do not restart.
pub async fn set_bridge_state(
    db: impl PgExecutor<'_>,
    tenant: &TenantId,
    state: &BridgeState,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE tenants SET bridge_state = $2, updated_at = now(), \
             bridge_state_at = CASE WHEN bridge_state = $2 THEN bridge_state_at ELSE now() END \
         WHERE id = $1",
    )
    .bind(tenant.as_str())
    .bind(state.as_str())
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// What [`record_bridge_state`] replaced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeStateChange {
    /// The state recorded before.
    pub previous: BridgeState,
    /// When the new state was recorded (the change's identity).
    pub at: time::OffsetDateTime,
}

/// Records the bridge's state like [`set_bridge_state`] and returns the
/// state it replaced; `None` when no such tenant exists.
pub async fn record_bridge_state(
    db: impl PgExecutor<'_>,
    tenant: &TenantId,
    state: &BridgeState,
) -> Result<Option<BridgeStateChange>, sqlx::Error> {
    let row = sqlx::query(
        "UPDATE tenants t SET bridge_state = $2, updated_at = now(), \
             bridge_state_at = CASE WHEN old.previous = $2 THEN t.bridge_state_at ELSE now() END \
         FROM (SELECT id, bridge_state AS previous FROM tenants WHERE id = $1 FOR UPDATE) old \
         WHERE t.id = old.id RETURNING old.previous, t.bridge_state_at",
    )
    .bind(tenant.as_str())
    .bind(state.as_str())
    .fetch_optional(db)
    .await?;
    row.map(|r| {
        Ok(BridgeStateChange {
            previous: BridgeState::parse(r.try_get("previous")?),
            at: r.try_get("bridge_state_at")?,
        })
    })
    .transpose()
}

/// Changes a tenant's WhatsApp behaviour (`paired_at` is not touched: the
/// router records it); `Ok(false)` when no such tenant exists.
pub async fn set_whatsapp(
    db: impl PgExecutor<'_>,
    tenant: &TenantId,
    settings: &WhatsAppSettings,
) -> Result<bool, sqlx::Error> {
    let as_int = |v: u32| i32::try_from(v).unwrap_or(i32::MAX);
    let done = sqlx::query(
        "UPDATE tenants SET min_send_gap_ms = $2, contact_hourly_cap = $3, \
         takeover_minutes = $4, debounce_ms = $5, bulk_share_percent = $6, updated_at = now() \
         WHERE id = $1",
    )
    .bind(tenant.as_str())
    .bind(as_int(settings.min_send_gap_ms))
    .bind(as_int(settings.contact_hourly_cap))
    .bind(as_int(settings.takeover_minutes))
    .bind(as_int(settings.debounce_ms))
    .bind(as_int(settings.bulk_share_percent))
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

/// Records that the tenant's number is paired, the first time it is seen
/// connected (later calls change nothing). Returns whether it was recorded now.
pub async fn mark_paired(db: impl PgExecutor<'_>, tenant: &TenantId) -> Result<bool, sqlx::Error> {
    let done =
        sqlx::query("UPDATE tenants SET paired_at = now() WHERE id = $1 AND paired_at IS NULL")
            .bind(tenant.as_str())
            .execute(db)
            .await?;
    Ok(done.rows_affected() == 1)
}

/// Stores the provider's bridge id and state for a tenant.
pub async fn set_bridge(
    db: impl PgExecutor<'_>,
    tenant: &TenantId,
    bridge: BridgeId,
    state: &BridgeState,
) -> Result<bool, sqlx::Error> {
    let done = sqlx::query(
        "UPDATE tenants SET bridge_id = $2, bridge_state = $3, bridge_state_at = now(), \
         updated_at = now() WHERE id = $1",
    )
    .bind(tenant.as_str())
    .bind(bridge.get())
    .bind(state.as_str())
    .execute(db)
    .await?;
    Ok(done.rows_affected() == 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_tenants_debug_hides_the_bots_secrets() {
        let mut new = NewTenant::with_defaults(TenantId::parse("acme").unwrap());
        new.bot_kind = BotKind::Http;
        new.bot_config = serde_json::json!({
            "url": "https://bot:PLANTED-PASSWORD@bot.example/hook?token=PLANTED-TOKEN",
            "signing_secret": "whsec_UExBTlRFRC1TSUdOSU5HLUtFWQ==",
        });

        let shown = format!("{new:?} {new:#?}");

        for secret in [
            "PLANTED-PASSWORD",
            "PLANTED-TOKEN",
            "UExBTlRFRC1TSUdOSU5HLUtFWQ",
        ] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("bot.example"), "{shown}");
    }
}
