//! Posting events to a bridge's `webhook_url` the way the provider does: JSON,
//! one attempt, a 10 s timeout, no retries; success is any 2xx. Logs name the
//! tenant and event, never the URL (it carries the per-bridge secret). A
//! silent bridge posts nothing: its deliveries are recorded as not posted.

use serde_json::Value;

use crate::state::{Shared, WebhookDelivery, unix_ms};

/// The `error` of a delivery a silent bridge never posted.
pub const SILENT: &str = "bridge silent: not posted";

/// Posts `event` for the bridge `customer_ref` at `url` and records the outcome.
pub(crate) async fn deliver(
    shared: &Shared,
    customer_ref: &str,
    url: &str,
    mut event: Value,
) -> WebhookDelivery {
    let (add_ref, silent) = {
        let state = shared.lock();
        let silent = state.by_ref(customer_ref).is_some_and(|b| b.silent);
        (state.webhook_customer_ref, silent)
    };
    if let Some(object) = event.as_object_mut()
        && add_ref
        && !object.contains_key("customer_ref")
    {
        object.insert(
            "customer_ref".to_owned(),
            Value::String(customer_ref.to_owned()),
        );
    }
    let kind = event
        .get("event")
        .and_then(Value::as_str)
        .unwrap_or("unknown")
        .to_owned();
    let at_ms = unix_ms();
    let (status, error) = if silent {
        (None, Some(SILENT.to_owned()))
    } else {
        match shared.webhook_http.post(url).json(&event).send().await {
            Ok(response) => (Some(response.status().as_u16()), None),
            Err(e) => (None, Some(describe(e))),
        }
    };
    match (status, &error) {
        (Some(code), _) => {
            tracing::debug!(tenant.id = customer_ref, webhook.event = %kind, http.status = code, "webhook posted");
        }
        (None, Some(reason)) => {
            tracing::info!(tenant.id = customer_ref, webhook.event = %kind, error = %reason, "webhook dropped (the provider does not retry)");
        }
        (None, None) => {}
    }
    let delivery = WebhookDelivery {
        customer_ref: customer_ref.to_owned(),
        event: kind,
        body: event,
        at_ms,
        status,
        error,
    };
    shared.lock().webhooks.push(delivery.clone());
    delivery
}

/// Why a post failed, without the URL (which holds the webhook secret).
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".to_owned()
    } else if e.is_connect() {
        "connection failed".to_owned()
    } else {
        e.without_url().to_string()
    }
}
