//! The status webhooks that follow an accepted send, shaped by the number's
//! [`StatusPlan`]: in order, without `delivered`, reordered, or ending in
//! `failed`; one POST each or all in one. `biz_opaque_callback_data` comes
//! back on every status exactly as it was sent.

use std::sync::Arc;

use serde_json::{Value, json};

use super::{
    delivery::{self, Entry},
    envelope::{change, number_value},
    model::{StatusMode, StatusPlan},
    state::{CloudShared, CloudSimError},
};

/// What the statuses of one accepted send need to know.
#[derive(Debug, Clone)]
pub(crate) struct AcceptedSend {
    pub waba_id: String,
    pub phone_number_id: String,
    pub display_phone_number: String,
    pub wamid: String,
    /// The `wa_id`, or the BSUID for a `recipient` send.
    pub recipient_id: String,
    pub callback_data: Option<String>,
    /// The template's category (lowercase), `None` for a free-form send.
    pub template_category: Option<String>,
}

/// Posts the plan's statuses in the background (nothing for `Off`).
pub(crate) fn schedule(shared: &Arc<CloudShared>, send: AcceptedSend, plan: StatusPlan) {
    let statuses = sequence(&plan.mode);
    if statuses.is_empty() {
        return;
    }
    let task_shared = Arc::clone(shared);
    shared.tasks.spawn(async move {
        let shared = task_shared;
        let spacing = shared.lock().clock.status_spacing;
        let items: Vec<Value> = statuses
            .iter()
            .map(|(status, error)| status_json(&send, status, error.as_ref()))
            .collect();
        let groups: Vec<Vec<Value>> = if plan.batched {
            vec![items]
        } else {
            items.into_iter().map(|i| vec![i]).collect()
        };
        for (i, group) in groups.into_iter().enumerate() {
            if i > 0 {
                tokio::select! {
                    _ = shared.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(spacing) => {}
                }
            }
            let mut value = number_value(&send.phone_number_id, &send.display_phone_number);
            value["statuses"] = Value::Array(group);
            let entry = Entry {
                waba_id: send.waba_id.clone(),
                changes: vec![change("messages", value)],
            };
            match delivery::post(&shared, vec![entry]).await {
                Ok(_) | Err(CloudSimError::NoWebhookUrl) => {}
                Err(e) => tracing::warn!(error = %e, "status webhook not posted"),
            }
        }
    });
}

/// The statuses of a plan, in posting order, with the error of a `failed` one.
fn sequence(mode: &StatusMode) -> Vec<(&'static str, Option<Value>)> {
    match mode {
        StatusMode::Off => vec![],
        StatusMode::Normal => vec![("sent", None), ("delivered", None), ("read", None)],
        StatusMode::ReadWithoutDelivered => vec![("sent", None), ("read", None)],
        StatusMode::Reordered => vec![("read", None), ("delivered", None), ("sent", None)],
        StatusMode::Failed { code, title } => vec![
            ("sent", None),
            (
                "failed",
                Some(json!({
                    "code": code, "title": title, "message": title,
                    "error_data": {"details": title},
                    "href": "/documentation/business-messaging/whatsapp/support/error-codes",
                })),
            ),
        ],
    }
}

fn status_json(send: &AcceptedSend, status: &str, error: Option<&Value>) -> Value {
    let mut s = json!({
        "id": send.wamid,
        "status": status,
        "timestamp": crate::state::unix_secs().to_string(),
        "recipient_id": send.recipient_id,
    });
    if let Some(data) = &send.callback_data {
        s["biz_opaque_callback_data"] = json!(data);
    }
    if status == "sent" {
        s["pricing"] = match &send.template_category {
            Some(category) => {
                json!({"billable": true, "pricing_model": "PMP", "type": "regular", "category": category})
            }
            None => json!({"billable": false, "pricing_model": "PMP",
                           "type": "free_customer_service", "category": "service"}),
        };
    }
    if let Some(e) = error {
        s["errors"] = json!([e]);
    }
    s
}
