//! The steering operations, shared by the Rust handle and the `/_sim/cloud`
//! routes so that both mean exactly the same thing.

use std::sync::Arc;

use serde_json::Value;
use tokio::time::Instant;

use super::{
    batch::{Batch, BatchItem},
    delivery::{self, PostReport},
    envelope,
    model::{CloudFaultPlan, PhoneNumberView, StatusPlan, TemplateView},
    state::{CloudShared, CloudSimError},
};

/// Posts a batch as ONE signed POST (after applying its effects).
pub(crate) async fn post_batch(
    shared: &Arc<CloudShared>,
    batch: &Batch,
) -> Result<PostReport, CloudSimError> {
    if shared.lock().webhook_url.is_none() {
        return Err(CloudSimError::NoWebhookUrl);
    }
    let entries = envelope::assemble(shared, batch)?;
    delivery::post(shared, entries).await
}

/// Moves a template's status as Meta's review would; with `notify`, posts the
/// `message_template_status_update` (the usual way a status changes).
pub(crate) async fn set_template_status(
    shared: &Arc<CloudShared>,
    waba_id: &str,
    name: &str,
    language: &str,
    event: &str,
    reason: Option<String>,
    notify: bool,
) -> Result<Option<PostReport>, CloudSimError> {
    if shared
        .lock()
        .template_mut(waba_id, name, language)
        .is_none()
    {
        return Err(CloudSimError::UnknownTemplate {
            waba_id: waba_id.to_owned(),
            name: name.to_owned(),
            language: language.to_owned(),
        });
    }
    let item = BatchItem::TemplateStatus {
        waba_id: waba_id.to_owned(),
        name: name.to_owned(),
        language: language.to_owned(),
        event: event.to_owned(),
        reason,
    };
    let batch = Batch::new().item(item);
    if notify {
        post_batch(shared, &batch).await.map(Some)
    } else {
        envelope::assemble(shared, &batch)?;
        Ok(None)
    }
}

/// Adds a template directly, in any status (test set-up, no review).
pub(crate) fn seed_template(
    shared: &CloudShared,
    waba_id: &str,
    name: &str,
    language: &str,
    category: &str,
    status: &str,
    components: Value,
) -> Result<TemplateView, CloudSimError> {
    let id = (1_000_000_000_000_000 + shared.next_id()).to_string();
    let mut state = shared.lock();
    let waba = state
        .wabas
        .get_mut(waba_id)
        .ok_or_else(|| CloudSimError::UnknownWaba(waba_id.to_owned()))?;
    waba.templates
        .retain(|t| !(t.name == name && t.language == language));
    let template = TemplateView {
        id,
        waba_id: waba_id.to_owned(),
        name: name.to_owned(),
        language: language.to_owned(),
        category: category.to_owned(),
        status: status.to_owned(),
        components,
    };
    waba.templates.push(template.clone());
    Ok(template)
}

/// Revokes a token; with `notify`, posts `account_update` `PARTNER_APP_UNINSTALLED`
/// for its WABA (what Meta sends when the customer removes our app).
pub(crate) async fn revoke_token(
    shared: &Arc<CloudShared>,
    token: &str,
    notify: bool,
) -> Result<Option<PostReport>, CloudSimError> {
    let waba_id = shared.end_token(token, true)?;
    if !notify {
        return Ok(None);
    }
    let batch = Batch::new().account_update(&waba_id, "PARTNER_APP_UNINSTALLED");
    post_batch(shared, &batch).await.map(Some)
}

/// Sets a number's messaging limit tier; with `notify`, as a
/// `phone_number_quality_update` with `event`.
pub(crate) async fn set_messaging_limit(
    shared: &Arc<CloudShared>,
    phone_number_id: &str,
    tier: &str,
    event: &str,
    notify: bool,
) -> Result<Option<PostReport>, CloudSimError> {
    let item = BatchItem::QualityUpdate {
        phone_number_id: phone_number_id.to_owned(),
        event: event.to_owned(),
        current_limit: tier.to_owned(),
    };
    let batch = Batch::new().item(item);
    if notify {
        post_batch(shared, &batch).await.map(Some)
    } else {
        envelope::assemble(shared, &batch)?;
        Ok(None)
    }
}

/// Changes one number, returning its new view.
pub(crate) fn update_number(
    shared: &CloudShared,
    phone_number_id: &str,
    change: NumberChange,
) -> Result<PhoneNumberView, CloudSimError> {
    let mut state = shared.lock();
    let number = state.number_mut(phone_number_id)?;
    match change {
        NumberChange::Quality(q) => number.spec.quality_rating = q,
        NumberChange::Mps(mps) => number.spec.mps = mps,
        NumberChange::Fault(plan) => number.fault = plan,
        NumberChange::Statuses(plan) => number.statuses = plan,
    }
    Ok(number.view())
}

/// One field of a number a test may change.
#[derive(Debug, Clone)]
pub(crate) enum NumberChange {
    Quality(String),
    Mps(u32),
    Fault(Option<CloudFaultPlan>),
    Statuses(StatusPlan),
}

/// Opens `user`'s window on a number as if they had just written, without a webhook.
pub(crate) fn open_window(
    shared: &CloudShared,
    phone_number_id: &str,
    user: &str,
) -> Result<(), CloudSimError> {
    let mut state = shared.lock();
    state.number_mut(phone_number_id)?;
    state.last_inbound.insert(
        (
            phone_number_id.to_owned(),
            user.trim_start_matches('+').to_owned(),
        ),
        Instant::now(),
    );
    Ok(())
}
