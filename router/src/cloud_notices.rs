//! Cloud API notices (docs/cloud-api.md 3.3 and 5): account changes,
//! quality and tier updates, and a number's `errors[]` items, as ingest
//! published them for the tenant of the number or WABA. What each means is
//! decided by `switchyard_shared::cloud_api::account::classify`; this step
//! carries it out:
//!
//! - the token is dead (the app uninstalled or removed, an error item with
//!   `0`/`190`): the tenant's token is marked `rejected` (every sender stops
//!   using it; an operator's new token makes it `active` again) and the
//!   senders are told to hold the tenant at once (`control.hold.<tenant>`);
//! - an account-level error item (`368`, `131031`, `131042`, `131064`): the
//!   senders hold the tenant as that code answered to a send would, until an
//!   operator resumes it;
//! - a tier (or quality) change, a quality event or an account alert:
//!   recorded on the tenant's channel row when it carries a value, and
//!   announced (`control.tenant.<tenant>`, payload `cloud_health`) so the
//!   sender holding the tenant reads the number's health from Meta and
//!   lowers or restores its limits (`cloud_api::limits`);
//! - a template review event: the status recorded on the tenant's template
//!   row (`cloud_templates`); a template the tenant does not hold is logged
//!   and counted, never created; the tenant's fallback template leaving
//!   `APPROVED` is a warning (replies outside the window will be
//!   dead-lettered until it is approved again);
//! - anything else: counted and dropped.
//!
//! The announcement is best effort: a sender that misses it still makes no
//! call with a rejected token (it reads the token's state before each send
//! and holds the tenant), and an account-level hold is met again as the
//! synchronous error of the next send.

use switchyard_shared::{
    cloud_api::{
        HoldReason,
        account::{self, Notice, TemplateEvent},
        channel,
        template_store::{self, Recorded, TemplateKey},
        templates::TemplateStatus,
    },
    ids::TenantId,
    subjects,
};

use crate::{
    handler::{InboundHandler, db_failed, dropped},
    metrics as m,
    runner::Outcome,
};

impl InboundHandler {
    /// Carries out one notice for `tenant` (the subject's).
    pub(crate) async fn on_cloud_notice(
        &self,
        tenant: &TenantId,
        field: &str,
        value: &serde_json::Value,
        attempt: u32,
    ) -> Outcome {
        match account::classify(field, value) {
            Notice::TokenLost { event } => {
                match channel::mark_rejected(&self.db, tenant).await {
                    Ok(true) => {
                        tracing::error!(tenant.id = %tenant, cloud.event = %event, "Meta says this tenant's Cloud API token is no longer valid; its sends are held until an operator connects a new token");
                    }
                    Ok(false) => {
                        tracing::info!(tenant.id = %tenant, cloud.event = %event, "Cloud API token already unusable; sends stay held");
                    }
                    Err(e) => return db_failed(&self.retries, attempt, "cloud token state", &e),
                }
                self.announce_hold(tenant, HoldReason::Unauthorized).await;
                metrics::counter!(m::CLOUD_NOTICES, "action" => "token_lost").increment(1);
                Outcome::Done
            }
            Notice::Hold { reason, code } => {
                tracing::error!(tenant.id = %tenant, cloud.code = code, hold.reason = reason.as_str(), "Meta reported an account-level error for this tenant's number; its sends are held until an operator resumes them");
                self.announce_hold(tenant, reason).await;
                metrics::counter!(m::CLOUD_NOTICES, "action" => "hold").increment(1);
                Outcome::Done
            }
            Notice::Limits {
                messaging_limit,
                quality,
            } => {
                if messaging_limit.is_some() || quality.is_some() {
                    let recorded = channel::record_limits(
                        &self.db,
                        tenant,
                        messaging_limit.as_deref(),
                        quality.as_deref(),
                    )
                    .await;
                    if let Err(e) = recorded {
                        return db_failed(&self.retries, attempt, "cloud limits", &e);
                    }
                }
                self.announce_health_check(tenant).await;
                tracing::info!(
                    tenant.id = %tenant,
                    cloud.messaging_limit = messaging_limit.as_deref().unwrap_or("-"),
                    cloud.quality = quality.as_deref().unwrap_or("-"),
                    "Cloud API number's limit or quality recorded"
                );
                metrics::counter!(m::CLOUD_NOTICES, "action" => "limits").increment(1);
                Outcome::Done
            }
            Notice::TemplateStatus(event) => self.on_template_event(tenant, &event, attempt).await,
            Notice::Other(_) => dropped("cloud_notice"),
        }
    }

    /// Tells the senders the number's health may have changed (best effort:
    /// the sender's periodic health poll catches a lost announcement).
    async fn announce_health_check(&self, tenant: &TenantId) {
        let sent = self
            .nats
            .publish(
                subjects::tenant_changed(tenant),
                subjects::CLOUD_HEALTH_CHANGED.into(),
            )
            .await;
        if let Err(e) = sent {
            tracing::warn!(tenant.id = %tenant, error = %e, "cannot announce the Cloud number's health change; the senders' periodic poll reads it");
        }
    }

    /// Records a template's review event on the tenant's row.
    async fn on_template_event(
        &self,
        tenant: &TenantId,
        event: &TemplateEvent,
        attempt: u32,
    ) -> Outcome {
        let Some(status) = TemplateStatus::after_event(&event.event) else {
            tracing::info!(tenant.id = %tenant, cloud.template = event.name.as_deref().unwrap_or("-"), cloud.event = %event.event, "Cloud API template event leaves its status as it is");
            metrics::counter!(m::CLOUD_NOTICES, "action" => "template_status").increment(1);
            return Outcome::Done;
        };
        let key = match (&event.name, &event.language, &event.meta_id) {
            (Some(name), Some(language), _) => TemplateKey::NameLanguage {
                name: name.clone(),
                language: language.clone(),
            },
            (_, _, Some(id)) => TemplateKey::MetaId(id.clone()),
            // `classify` gives no event without a template to name.
            _ => return dropped("cloud_notice"),
        };
        let recorded = template_store::record_status(
            &self.db,
            tenant,
            &key,
            &status,
            event.meta_id.as_deref(),
            event.reason.as_deref(),
        )
        .await;
        match recorded {
            Err(e) => db_failed(&self.retries, attempt, "cloud template status", &e),
            Ok(Recorded::Unknown) => {
                tracing::warn!(tenant.id = %tenant, cloud.template = event.name.as_deref().unwrap_or("-"), cloud.template_language = event.language.as_deref().unwrap_or("-"), cloud.template_id = event.meta_id.as_deref().unwrap_or("-"), cloud.event = %event.event, "Cloud API template event for a template this tenant does not hold; not recorded (add it with `tenants cloud templates add` or `sync`)");
                metrics::counter!(m::CLOUD_NOTICES, "action" => "template_unknown").increment(1);
                Outcome::Done
            }
            Ok(Recorded::Updated {
                name,
                language,
                was,
                fallback,
            }) => {
                tracing::info!(tenant.id = %tenant, cloud.template = %name, cloud.template_language = %language, cloud.event = %event.event, template.status = %status, template.was = %was, "Cloud API template status recorded");
                if fallback && status != TemplateStatus::Approved {
                    tracing::warn!(tenant.id = %tenant, cloud.template = %name, cloud.template_language = %language, template.status = %status, "this tenant's fallback template is no longer approved: replies outside the customer-service window are dead-lettered until it is");
                }
                metrics::counter!(m::CLOUD_NOTICES, "action" => "template_status").increment(1);
                Outcome::Done
            }
        }
    }

    /// Tells every sender to hold the tenant's sends now: `unauthorized`
    /// for a dead token, `restricted` for every other account problem (as
    /// the sender's policy maps the same codes).
    async fn announce_hold(&self, tenant: &TenantId, reason: HoldReason) {
        let payload = match reason {
            HoldReason::Unauthorized | HoldReason::Permission => "unauthorized",
            _ => "restricted",
        };
        let sent = self
            .nats
            .publish(subjects::sending_held(tenant), payload.into())
            .await;
        if let Err(e) = sent {
            tracing::warn!(tenant.id = %tenant, error = %e, "cannot announce the hold; senders hold the tenant at its next send");
        }
    }
}
