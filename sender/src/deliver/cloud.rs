//! Sends of Cloud API tenants: the tenant's own phone number id and its own
//! business token, both from its `cloud_channels` row (never from the
//! reply), the token opened with the operators' key only for the call.
//!
//! A free-form reply goes only while the customer's service window is open
//! by more than the margin (`now < last_inbound + window - margin`, the last
//! message's time as the router recorded it, read with the channel row in
//! one round trip); otherwise it is dead-lettered `window_closed` with no
//! call (docs/cloud-api.md section 7). A tenant's fallback template is a
//! later step.
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
        channel::{self, TokenState},
        client::TextMessage,
        token_box::TokenKeys,
        window::WindowSettings,
    },
    ids::TenantId,
    replies::OutboundReply,
    wabridges::SendReceipt,
};

use super::Deliverer;

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
        let (row, last_inbound) = channel::fetch_for_reply(db, tenant, &reply.chat_id)
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
        // A held tenant's message waits (above); only a sendable one is
        // judged by its window.
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        if !self.window.open_for_reply(last_inbound, now) {
            return Err(CloudError::WindowClosed {
                detail: window_detail(last_inbound, now, &self.window),
            });
        }
        let token = self.open_token(tenant, &row)?;
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
