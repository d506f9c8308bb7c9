//! Sends of Cloud API tenants: the tenant's own phone number id and its own
//! business token, both from its `cloud_channels` row (never from the
//! reply), the token opened with the operators' key only for the call.
//!
//! A free-form reply goes only while the customer's service window is open
//! by more than the margin (`now < last_inbound + window - margin`, the last
//! message's time as the router recorded it, read with the channel row in
//! one round trip). Once it has closed (docs/cloud-api.md section 7) the
//! reply is sent as the tenant's fallback template instead, when one is
//! configured, approved in our table and not yet sent to this chat since
//! the customer's last message: its one body parameter (if it has one)
//! carries the reply's text flattened to Meta's rules, the chat's claim is
//! recorded before the call, and the ledger records the template's
//! `wamid` for the reply, so delivery statuses follow it. Otherwise the
//! reply is dead-lettered `window_closed` without a call, the detail
//! saying why no fallback went (none configured, not approved, already
//! sent, or the number's messaging-limit tier 90 % used by the fallback in
//! the last 24 hours: `cloud_api::limits::template_room`). Meta's own refusals of the template keep their outcomes
//! (`template_*`, section 5). No transaction is open during a call.
//!
//! A tenant without a usable credential (no channel connected, the token
//! revoked or refused by Meta, no key configured) gets `NoCredential`, which
//! holds that tenant only; when Meta refuses the token (`0`, `190`) the row
//! is marked `rejected`, so the next sends do not try it again until an
//! operator connects a new one.

use std::sync::Arc;

use secrecy::SecretString;
use sqlx::PgPool;
use switchyard_shared::{
    cloud_api::{
        CloudClient, CloudError, HoldReason, Outcome,
        channel::{self, ReplyContext, TokenState},
        client::{TemplateSend, TextMessage},
        fallback::{self, FallbackSend},
        limits,
        token_box::TokenKeys,
        window::WindowSettings,
    },
    ids::TenantId,
    replies::OutboundReply,
    wabridges::SendReceipt,
};

use super::Deliverer;
use crate::metrics as m;

/// The Cloud API client and the keys that open tenants' tokens.
#[derive(Debug)]
pub struct CloudSending {
    pub client: CloudClient,
    /// `SWITCHYARD_CLOUD_TOKEN_KEYS`; without it Cloud tenants are held.
    pub keys: Option<Arc<TokenKeys>>,
    /// The customer-service window and the margin kept before it closes.
    pub window: WindowSettings,
}

impl CloudSending {
    /// One text send on the tenant's own number.
    pub async fn send_text(
        &self,
        db: &PgPool,
        tenant: &TenantId,
        reply: &OutboundReply,
    ) -> Result<SendReceipt, CloudError> {
        let no_credential = |reason: &str| CloudError::NoCredential {
            reason: reason.to_owned(),
        };
        let ReplyContext {
            channel: row,
            last_inbound,
            fallback,
        } = channel::fetch_for_reply(db, tenant, &reply.chat_id)
            .await
            .map_err(|e| CloudError::OursUnavailable {
                message: format!("reading the tenant's Cloud channel: {e}"),
            })?
            .ok_or_else(|| no_credential("the tenant has no Cloud API number connected"))?;
        match row.token_state {
            TokenState::Active => {}
            TokenState::Revoked => {
                return Err(no_credential("the token was revoked by an operator"));
            }
            TokenState::Rejected => {
                return Err(no_credential("Meta refused the token; connect a new one"));
            }
        }
        let token = self.open_token(tenant, &row)?;
        // A held tenant's message waits (above); only a sendable one is
        // judged by its window.
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if !self.window.open_for_reply(last_inbound, now) {
            let closed = window_detail(last_inbound, now, &self.window);
            let refused = |why: String| CloudError::WindowClosed {
                detail: format!("{closed}; {why}"),
            };
            let send = fallback::decide(fallback.as_ref(), reply.reply_id.as_str(), &reply.body)
                .map_err(refused)?;
            // A retry of the reply that claimed this chat is no new customer.
            let retry = fallback
                .as_ref()
                .and_then(|f| f.sent_for.as_deref())
                .is_some_and(|by| by == reply.reply_id.as_str());
            if !retry {
                let reached = fallback::recipients_24h(db, tenant, &reply.chat_id)
                    .await
                    .map_err(|e| CloudError::OursUnavailable {
                        message: format!("counting the fallback's customers: {e}"),
                    })?;
                limits::template_room(row.messaging_limit.as_deref(), reached).map_err(refused)?;
            }
            return self
                .send_fallback(
                    db,
                    tenant,
                    reply,
                    &row.phone_number_id,
                    &token,
                    &send,
                    &closed,
                )
                .await;
        }
        let message_id = self
            .client
            .send_text(
                &row.phone_number_id,
                &token,
                TextMessage {
                    chat: &reply.chat_id,
                    body: &reply.body,
                    callback_data: reply.reply_id.as_str(),
                    menu: reply.menu.as_ref(),
                },
            )
            .await?;
        Ok(SendReceipt {
            message_id,
            timestamp: None,
        })
    }

    /// Sends the fallback template in place of `reply`: claims the chat's
    /// fallback first (another reply that got there since the customer's
    /// last message wins, and this one is dead-lettered), and gives the
    /// claim back when the call certainly sent nothing.
    #[allow(clippy::too_many_arguments)]
    async fn send_fallback(
        &self,
        db: &PgPool,
        tenant: &TenantId,
        reply: &OutboundReply,
        phone_number_id: &str,
        token: &SecretString,
        send: &FallbackSend,
        closed: &str,
    ) -> Result<SendReceipt, CloudError> {
        let reply_id = reply.reply_id.as_str();
        let claimed = fallback::claim(db, tenant, &reply.chat_id, reply_id)
            .await
            .map_err(|e| CloudError::OursUnavailable {
                message: format!("claiming the chat's fallback template: {e}"),
            })?;
        if !claimed {
            return Err(CloudError::WindowClosed {
                detail: format!(
                    "{closed}; fallback template {} ({}) was already sent to this chat since the customer's last message",
                    send.name, send.language
                ),
            });
        }
        let sent = self
            .client
            .send_template(
                phone_number_id,
                token,
                TemplateSend {
                    chat: &reply.chat_id,
                    name: &send.name,
                    language: &send.language,
                    params: &send.params,
                    callback_data: reply_id,
                },
            )
            .await;
        match sent {
            Ok(message_id) => {
                tracing::info!(tenant.id = %tenant, reply.id = %reply.reply_id, cloud.template = %send.name, "the customer-service window has closed: the reply went as the fallback template");
                metrics::counter!(m::CLOUD_FALLBACK, "outcome" => "sent").increment(1);
                Ok(SendReceipt {
                    message_id,
                    timestamp: None,
                })
            }
            Err(e) => {
                if !e.may_have_sent()
                    && let Err(db_error) =
                        fallback::release(db, tenant, &reply.chat_id, reply_id).await
                {
                    tracing::warn!(tenant.id = %tenant, error = %db_error, "cannot give back the chat's fallback claim; a later reply to it is dead-lettered");
                }
                metrics::counter!(m::CLOUD_FALLBACK, "outcome" => "failed").increment(1);
                Err(e)
            }
        }
    }
}

impl CloudSending {
    /// The tenant's token, opened for one call.
    fn open_token(
        &self,
        tenant: &TenantId,
        row: &channel::CloudChannel,
    ) -> Result<SecretString, CloudError> {
        let no_credential = |reason: &str| CloudError::NoCredential {
            reason: reason.to_owned(),
        };
        let sealed = row
            .token
            .as_ref()
            .ok_or_else(|| no_credential("the tenant's channel has no token"))?;
        let keys = self.keys.as_ref().ok_or_else(|| {
            no_credential("SWITCHYARD_CLOUD_TOKEN_KEYS is not set on this sender")
        })?;
        keys.open(tenant, sealed)
            .map_err(|e| no_credential(&e.to_string()))
    }

    /// Reads the number's health from Meta with the tenant's token and
    /// records a changed quality rating or tier on its channel row. `Ok(None)`:
    /// nothing to ask with (no channel, or its token is not `active`).
    pub async fn check_health(
        &self,
        db: &PgPool,
        tenant: &TenantId,
    ) -> Result<Option<HealthChange>, CloudError> {
        let ours = |e: sqlx::Error| CloudError::OursUnavailable {
            message: format!("the tenant's Cloud channel: {e}"),
        };
        let Some(row) = channel::fetch(db, tenant).await.map_err(ours)? else {
            return Ok(None);
        };
        if row.token_state != TokenState::Active {
            return Ok(None);
        }
        let token = self.open_token(tenant, &row)?;
        let health = self
            .client
            .number_health(&row.phone_number_id, &token)
            .await?;
        let change = HealthChange {
            quality: (health.quality.is_some() && health.quality != row.quality)
                .then(|| (row.quality.clone(), health.quality.clone())),
            messaging_limit: (health.messaging_limit.is_some()
                && health.messaging_limit != row.messaging_limit)
                .then(|| (row.messaging_limit.clone(), health.messaging_limit.clone())),
        };
        if change.quality.is_some() || change.messaging_limit.is_some() {
            channel::record_limits(
                db,
                tenant,
                health.messaging_limit.as_deref(),
                health.quality.as_deref(),
            )
            .await
            .map_err(ours)?;
        }
        Ok(Some(change))
    }
}

/// What a health check changed: (before, after) of each value that moved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HealthChange {
    pub quality: Option<(Option<String>, Option<String>)>,
    pub messaging_limit: Option<(Option<String>, Option<String>)>,
}

/// What the dead letter says of the window (times in unix seconds).
fn window_detail(last_inbound: Option<i64>, now: i64, window: &WindowSettings) -> String {
    match last_inbound {
        None => "no message of this customer is recorded".to_owned(),
        Some(at) => format!(
            "the customer last wrote {}s ago; window {}s, margin {}s",
            now.saturating_sub(at),
            window.length.as_secs(),
            window.margin.as_secs()
        ),
    }
}

impl Deliverer {
    /// Meta refused the tenant's token: mark it, so this and every other
    /// replica stop using it (the tenant is held by the policy).
    pub(super) async fn cloud_refused(&self, tenant: &TenantId, error: &CloudError) {
        let meta_refused = matches!(error, CloudError::Api { .. })
            && error.outcome() == Outcome::Hold(HoldReason::Unauthorized);
        if meta_refused {
            tracing::error!(tenant.id = %tenant, error = %error, "Meta refused this tenant's Cloud API token; its sends are held until a new token is connected");
            if let Err(e) = channel::mark_rejected(&self.db, tenant).await {
                tracing::warn!(tenant.id = %tenant, error = %e, "cannot record the refused token");
            }
        }
    }
}
