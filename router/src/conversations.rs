//! Conversations: one row per (tenant, chat), created on first sight, always
//! read and written inside the tenant's row-level security scope and with an
//! explicit tenant filter (belt and braces).

use sqlx::{Postgres, Row, Transaction};
use switchyard_shared::{ids::TenantId, message_ids::ChatId};

/// What the bot may know about a chat between turns.
#[derive(Debug, Clone, PartialEq)]
pub struct Conversation {
    pub chat_id: ChatId,
    /// Whether this is the first message we have seen in this chat.
    pub is_new: bool,
    /// Option ids of the menu last shown, in display order (for numeric answers).
    pub last_menu: Vec<String>,
    /// A person answered from the phone recently: the bot stays quiet here.
    pub silenced: bool,
}

/// Creates or touches the conversation and returns it.
pub async fn touch(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &TenantId,
    chat_id: &ChatId,
) -> Result<Conversation, sqlx::Error> {
    let row = sqlx::query(
        "INSERT INTO conversations (tenant_id, chat_id) VALUES ($1, $2) \
         ON CONFLICT (tenant_id, chat_id) DO UPDATE SET last_inbound_at = now() \
         RETURNING last_menu, (xmax = 0) AS is_new, \
           coalesce(silenced_until > now(), false) AS silenced",
    )
    .bind(tenant.as_str())
    .bind(chat_id.as_str())
    .fetch_one(&mut **tx)
    .await?;
    let last_menu: Option<serde_json::Value> = row.try_get("last_menu")?;
    Ok(Conversation {
        chat_id: chat_id.clone(),
        is_new: row.try_get("is_new")?,
        last_menu: last_menu
            .and_then(|v| serde_json::from_value(v).ok())
            .unwrap_or_default(),
        silenced: row.try_get("silenced")?,
    })
}

/// Human takeover: keeps the bot silent in this chat for `minutes` from now
/// (creating the conversation if needed). A later takeover extends it.
pub async fn silence(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &TenantId,
    chat_id: &ChatId,
    minutes: u32,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO conversations (tenant_id, chat_id, silenced_until) \
         VALUES ($1, $2, now() + make_interval(mins => $3)) \
         ON CONFLICT (tenant_id, chat_id) DO UPDATE SET silenced_until = \
           greatest(coalesce(conversations.silenced_until, now()), EXCLUDED.silenced_until)",
    )
    .bind(tenant.as_str())
    .bind(chat_id.as_str())
    .bind(i32::try_from(minutes).unwrap_or(i32::MAX))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Remembers the menu just shown (or clears it).
pub async fn set_last_menu(
    tx: &mut Transaction<'static, Postgres>,
    tenant: &TenantId,
    chat_id: &ChatId,
    menu: Option<&[String]>,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE conversations SET last_menu = $3 WHERE tenant_id = $1 AND chat_id = $2")
        .bind(tenant.as_str())
        .bind(chat_id.as_str())
        .bind(menu.map(|m| serde_json::json!(m)))
        .execute(&mut **tx)
        .await?;
    Ok(())
}
