//! The fallback template (issue 22 point 6, docs/cloud-api.md section 7):
//! once a chat's customer-service window has closed Meta refuses a
//! free-form reply, so the sender sends the tenant's chosen template
//! instead, at most once per chat until the customer writes again, and
//! only while our table says Meta approved it. Otherwise the reply is
//! dead-lettered `window_closed` with the reason.
//!
//! [`decide`] is a pure function of what the sender read with the channel
//! row; [`claim`] makes "at most once" hold between replicas and retries
//! (a unique row per chat, keyed to the reply that claimed it), and
//! [`release`] gives the claim back when the call certainly sent nothing.
//! None of them holds a transaction across the Graph call.

use serde_json::Value;
use sqlx::PgPool;

use super::templates::{Components, Placeholders, TemplateStatus, flatten_param};
use crate::{db, ids::TenantId, message_ids::ChatId};

/// The tenant's fallback template as read with its channel row.
#[derive(Debug, Clone, PartialEq)]
pub struct FallbackRow {
    pub name: String,
    pub language: String,
    /// `None`: no such template row (the foreign key makes it rare).
    pub status: Option<TemplateStatus>,
    pub components: Option<Value>,
    /// The reply that had the fallback sent to this chat since the
    /// customer's last message, if any.
    pub sent_for: Option<String>,
}

/// One body parameter of a template send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BodyParam {
    /// The placeholder's name for a `NAMED` template; `None`: positional.
    pub name: Option<String>,
    pub text: String,
}

/// The template to send in place of a reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FallbackSend {
    pub name: String,
    pub language: String,
    pub params: Vec<BodyParam>,
}

/// Whether the fallback goes for `reply_id`, and with what; `Err` is the
/// reason it does not, for the dead letter's detail.
pub fn decide(
    fallback: Option<&FallbackRow>,
    reply_id: &str,
    reply_text: &str,
) -> Result<FallbackSend, String> {
    let f = fallback.ok_or_else(|| "no fallback template is configured".to_owned())?;
    let which = format!("fallback template {} ({})", f.name, f.language);
    match &f.status {
        Some(TemplateStatus::Approved) => {}
        Some(status) => return Err(format!("{which} is not approved (status {status})")),
        None => return Err(format!("{which} is not in the tenant's templates")),
    }
    if let Some(by) = &f.sent_for
        && by != reply_id
    {
        return Err(format!(
            "{which} was already sent to this chat since the customer's last message (for reply {by})"
        ));
    }
    let components = f
        .components
        .clone()
        .ok_or_else(|| format!("{which} has no components"))
        .and_then(|c| Components::parse(c).map_err(|e| format!("{which}: {e}")))?;
    if components.header_params() > 0 || components.button_params() {
        return Err(format!(
            "{which} needs header or button parameters, which a fallback cannot fill"
        ));
    }
    let text = || flatten_param(reply_text, components.single_param_room());
    let params = match components.body() {
        Placeholders::None => Vec::new(),
        Placeholders::Positional(1) => vec![BodyParam {
            name: None,
            text: text(),
        }],
        Placeholders::Named(names) if names.len() == 1 => vec![BodyParam {
            name: names.first().cloned(),
            text: text(),
        }],
        other => {
            return Err(format!(
                "{which} takes {} body parameters; a fallback fills at most one",
                other.count()
            ));
        }
    };
    // Flattened as they are, the parameters pass; checked all the same, as
    // every template send is, so a rule changed here cannot reach Meta.
    let texts: Vec<String> = params.iter().map(|p| p.text.clone()).collect();
    components
        .check_body_params(&texts)
        .map_err(|e| format!("{which}: {e}"))?;
    Ok(FallbackSend {
        name: f.name.clone(),
        language: f.language.clone(),
        params,
    })
}

/// Claims the chat's fallback for `reply_id`: `true` when no fallback was
/// sent to this chat since the customer's last message, or this same reply
/// holds the claim (a retry). `false`: another reply got there first.
pub async fn claim(
    pool: &PgPool,
    tenant: &TenantId,
    chat: &ChatId,
    reply_id: &str,
) -> Result<bool, sqlx::Error> {
    let mut tx = db::begin_for_tenant(pool, tenant).await?;
    let claimed: Option<String> = sqlx::query_scalar(
        "INSERT INTO cloud_fallback_sends (tenant_id, chat_id, reply_id) VALUES ($1, $2, $3) \
         ON CONFLICT (tenant_id, chat_id) DO UPDATE SET reply_id = EXCLUDED.reply_id, sent_at = now() \
          WHERE cloud_fallback_sends.reply_id = EXCLUDED.reply_id \
             OR cloud_fallback_sends.sent_at <= coalesce( \
                  (SELECT w.last_inbound_at FROM cloud_windows w \
                    WHERE w.tenant_id = $1 AND w.chat_id = $2), '-infinity') \
         RETURNING reply_id",
    )
    .bind(tenant.as_str())
    .bind(chat.as_str())
    .bind(reply_id)
    .fetch_optional(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(claimed.is_some())
}

/// Other customers the fallback reached in the last 24 hours (the
/// messaging limit counts them, docs/cloud-api.md section 6): read only
/// when a fallback is about to go, never for a reply inside the window.
pub async fn recipients_24h(
    pool: &PgPool,
    tenant: &TenantId,
    chat: &ChatId,
) -> Result<i64, sqlx::Error> {
    let mut tx = db::begin_for_tenant(pool, tenant).await?;
    let reached: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM cloud_fallback_sends \
          WHERE tenant_id = $1 AND chat_id <> $2 AND sent_at > now() - interval '24 hours'",
    )
    .bind(tenant.as_str())
    .bind(chat.as_str())
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(reached)
}

/// Gives back `reply_id`'s claim (its call certainly sent nothing), so a
/// later reply may still send the fallback.
pub async fn release(
    pool: &PgPool,
    tenant: &TenantId,
    chat: &ChatId,
    reply_id: &str,
) -> Result<(), sqlx::Error> {
    let mut tx = db::begin_for_tenant(pool, tenant).await?;
    sqlx::query(
        "DELETE FROM cloud_fallback_sends WHERE tenant_id = $1 AND chat_id = $2 AND reply_id = $3",
    )
    .bind(tenant.as_str())
    .bind(chat.as_str())
    .bind(reply_id)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn row(status: &str, body: &str, sent_for: Option<&str>) -> FallbackRow {
        FallbackRow {
            name: "reengage".to_owned(),
            language: "en_US".to_owned(),
            status: Some(TemplateStatus::parse(status)),
            components: Some(json!([{"type": "BODY", "text": body}])),
            sent_for: sent_for.map(str::to_owned),
        }
    }

    #[test]
    fn an_approved_fallback_carries_the_reply_flattened_into_its_one_parameter() {
        let sent = decide(
            Some(&row("APPROVED", "We missed you: {{1}}", None)),
            "r1",
            "Your order\nshipped",
        )
        .unwrap();
        assert_eq!(sent.name, "reengage");
        assert_eq!(
            sent.params,
            [BodyParam {
                name: None,
                text: "Your order shipped".to_owned()
            }]
        );
        let named = decide(Some(&row("APPROVED", "Hi {{reply}}", None)), "r1", "x").unwrap();
        assert_eq!(named.params[0].name.as_deref(), Some("reply"));
        let plain = decide(Some(&row("APPROVED", "Write to us", None)), "r1", "x").unwrap();
        assert!(plain.params.is_empty());
        let retry = decide(Some(&row("APPROVED", "Hi", Some("r1"))), "r1", "x");
        assert!(retry.is_ok(), "the same reply keeps its claim");
    }

    #[test]
    fn the_fallback_is_refused_with_its_reason() {
        assert_eq!(
            decide(None, "r1", "x").unwrap_err(),
            "no fallback template is configured"
        );
        let paused = decide(Some(&row("PAUSED", "Hi {{1}}", None)), "r1", "x").unwrap_err();
        assert!(paused.contains("not approved (status PAUSED)"), "{paused}");
        let again = decide(Some(&row("APPROVED", "Hi {{1}}", Some("r0"))), "r1", "x").unwrap_err();
        assert!(again.contains("already sent"), "{again}");
        let two = decide(Some(&row("APPROVED", "{{1}} {{2}}", None)), "r1", "x").unwrap_err();
        assert!(two.contains("2 body parameters"), "{two}");
        let mut gone = row("APPROVED", "Hi", None);
        gone.status = None;
        assert!(
            decide(Some(&gone), "r1", "x")
                .unwrap_err()
                .contains("not in")
        );
    }
}
