//! Posting webhooks as Meta does: one signed POST per batch, entries of
//! unsubscribed WABAs left out, and any answer other than 200 redelivered
//! with the identical bytes on the clock's schedule. Every attempt is
//! recorded. Logs name the batch and attempt, never the body.

use std::{sync::Arc, time::Duration};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{
    model::CloudDelivery,
    signature::{escaped_json, signature_header},
    state::{CloudShared, CloudSimError},
};
use crate::state::unix_ms;

/// One WABA's part of a POST.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub waba_id: String,
    pub changes: Vec<Value>,
}

/// What came of posting one batch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PostReport {
    /// The batch number (see [`CloudDelivery::batch`]); `None` when nothing was
    /// posted because no WABA of the batch is subscribed.
    pub batch: Option<u64>,
    /// The first attempt (redeliveries, if any, follow in the background).
    pub first: Option<CloudDelivery>,
    /// WABAs whose entries were left out: not subscribed.
    pub unsubscribed: Vec<String>,
}

/// Posts the entries of subscribed WABAs as one batch; returns after the first attempt.
pub(crate) async fn post(
    shared: &Arc<CloudShared>,
    entries: Vec<Entry>,
) -> Result<PostReport, CloudSimError> {
    let (kept, unsubscribed): (Vec<Entry>, Vec<Entry>) = {
        let state = shared.lock();
        if state.webhook_url.is_none() {
            return Err(CloudSimError::NoWebhookUrl);
        }
        entries
            .into_iter()
            .filter(|e| !e.changes.is_empty())
            .partition(|e| state.wabas.get(&e.waba_id).is_some_and(|w| w.subscribed))
    };
    let unsubscribed: Vec<String> = unsubscribed.into_iter().map(|e| e.waba_id).collect();
    if kept.is_empty() {
        return Ok(PostReport {
            batch: None,
            first: None,
            unsubscribed,
        });
    }
    let time = crate::state::unix_secs();
    let envelope = json!({
        "object": "whatsapp_business_account",
        "entry": kept.iter().map(|e| json!({"id": e.waba_id, "time": time, "changes": e.changes}))
            .collect::<Vec<_>>(),
    });
    let fields: Vec<String> = kept
        .iter()
        .flat_map(|e| e.changes.iter())
        .map(|c| c["field"].as_str().unwrap_or_default().to_owned())
        .collect();
    let body = escaped_json(&envelope).map_err(|e| CloudSimError::Invalid(e.to_string()))?;
    let batch = Arc::new(Prepared {
        number: shared.next_id(),
        signature: signature_header(&shared.app_secret, &body),
        body: String::from_utf8_lossy(&body).into_owned(),
        fields,
    });
    let first = attempt(shared, &batch, 1).await;
    if !first.acknowledged() {
        let delays = shared.lock().clock.redelivery_delays.clone();
        let task_shared = Arc::clone(shared);
        let task_batch = Arc::clone(&batch);
        shared.tasks.spawn(async move {
            redeliver(&task_shared, &task_batch, &delays).await;
        });
    }
    Ok(PostReport {
        batch: Some(batch.number),
        first: Some(first),
        unsubscribed,
    })
}

/// A batch's bytes, fixed once: every redelivery posts exactly these.
#[derive(Debug)]
struct Prepared {
    number: u64,
    body: String,
    signature: String,
    fields: Vec<String>,
}

async fn redeliver(shared: &Arc<CloudShared>, batch: &Prepared, delays: &[Duration]) {
    for (i, delay) in delays.iter().enumerate() {
        tokio::select! {
            _ = shared.shutdown.cancelled() => return,
            _ = tokio::time::sleep(*delay) => {}
        }
        let n = u32::try_from(i + 2).unwrap_or(u32::MAX);
        if attempt(shared, batch, n).await.acknowledged() {
            return;
        }
    }
    tracing::info!(
        webhook.batch = batch.number,
        "webhook batch dropped after its last redelivery"
    );
}

async fn attempt(shared: &CloudShared, batch: &Prepared, n: u32) -> CloudDelivery {
    let url = shared.lock().webhook_url.clone();
    let at_ms = unix_ms();
    let (status, error) = match url {
        None => (None, Some("no webhook URL is set".to_owned())),
        Some(url) => {
            let sent = shared
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(reqwest::header::USER_AGENT, "facebookexternalua")
                .header("X-Hub-Signature-256", &batch.signature)
                .body(batch.body.clone())
                .send();
            tokio::select! {
                _ = shared.shutdown.cancelled() => (None, Some("simulator stopped".to_owned())),
                result = sent => match result {
                    Ok(r) => (Some(r.status().as_u16()), None),
                    Err(e) => (None, Some(describe(&e))),
                },
            }
        }
    };
    tracing::debug!(
        webhook.batch = batch.number,
        delivery.attempt = n,
        http.status = status,
        "cloud webhook attempt"
    );
    let delivery = CloudDelivery {
        batch: batch.number,
        attempt: n,
        at_ms,
        body: batch.body.clone(),
        signature: batch.signature.clone(),
        fields: batch.fields.clone(),
        status,
        error,
    };
    shared.record_delivery(delivery.clone());
    delivery
}

/// Why a post failed, without the URL.
pub(crate) fn describe(e: &reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        "request failed".to_owned()
    }
}
