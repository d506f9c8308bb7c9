//! The simulator's control operations, shared by the in-process handle and the
//! `/_sim` HTTP API so both behave identically.

use std::time::Duration;

use serde_json::Value;

use crate::{
    config::Limits,
    events,
    faults::{EchoMode, FaultPlan},
    state::{BridgeView, RecordedSend, SendAttempt, Session, Shared, WebhookDelivery, fake_phone},
    webhook,
};

/// A control request that names no existing bridge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("no bridge with customer_ref {0:?}")]
    UnknownBridge(String),
}

impl Shared {
    pub(crate) fn bridges_view(&self) -> Vec<BridgeView> {
        self.lock().bridges.values().map(BridgeView::from).collect()
    }

    pub(crate) fn bridge_view(&self, customer_ref: &str) -> Option<BridgeView> {
        self.lock().by_ref(customer_ref).map(BridgeView::from)
    }

    pub(crate) fn attempts(&self, customer_ref: Option<&str>) -> Vec<SendAttempt> {
        self.lock()
            .attempts
            .iter()
            .filter(|a| customer_ref.is_none_or(|r| a.customer_ref == r))
            .cloned()
            .collect()
    }

    pub(crate) fn sends(&self, customer_ref: Option<&str>) -> Vec<RecordedSend> {
        self.lock()
            .attempts
            .iter()
            .filter(|a| customer_ref.is_none_or(|r| a.customer_ref == r))
            .filter_map(SendAttempt::accepted)
            .collect()
    }

    pub(crate) fn webhooks(&self) -> Vec<WebhookDelivery> {
        self.lock().webhooks.clone()
    }

    /// Forgets recorded sends, attempts and webhook deliveries.
    pub(crate) fn clear_records(&self) {
        {
            let mut state = self.lock();
            state.attempts.clear();
            state.webhooks.clear();
            state.accepted = 0;
        }
        self.accepted.send_replace(0);
        self.arrived.send_replace(0);
    }

    fn with_bridge<T>(
        &self,
        customer_ref: &str,
        change: impl FnOnce(&mut crate::state::SimBridge) -> T,
    ) -> Result<T, SimError> {
        let mut state = self.lock();
        let bridge = state
            .by_ref_mut(customer_ref)
            .ok_or_else(|| SimError::UnknownBridge(customer_ref.to_owned()))?;
        Ok(change(bridge))
    }

    pub(crate) fn set_fault(
        &self,
        customer_ref: &str,
        plan: Option<FaultPlan>,
    ) -> Result<(), SimError> {
        let plan = plan.filter(|p| p.times != Some(0));
        self.with_bridge(customer_ref, |b| b.fault = plan)
    }

    pub(crate) fn set_latency(
        &self,
        customer_ref: &str,
        latency: Duration,
    ) -> Result<(), SimError> {
        self.with_bridge(customer_ref, |b| b.latency = latency)
    }

    pub(crate) fn set_echo(&self, customer_ref: &str, mode: EchoMode) -> Result<(), SimError> {
        self.with_bridge(customer_ref, |b| b.echo = mode)
    }

    /// Connects or disconnects the session (a paired session that drops stays
    /// paired). With `notify`, posts the matching `connected`/`disconnected`
    /// webhook and returns its delivery.
    pub(crate) async fn set_connected(
        &self,
        customer_ref: &str,
        connected: bool,
        notify: bool,
    ) -> Result<Option<WebhookDelivery>, SimError> {
        let (url, event) = self.with_bridge(customer_ref, |b| {
            if connected {
                let phone = b.phone.clone().unwrap_or_else(|| fake_phone(b.id));
                b.phone = Some(phone.clone());
                b.session = Session::Connected;
                b.qr.end_attempt();
                (b.webhook_url.clone(), events::connected(&phone))
            } else {
                if b.session == Session::Connected {
                    b.session = Session::Disconnected;
                }
                (b.webhook_url.clone(), events::disconnected())
            }
        })?;
        if !notify {
            return Ok(None);
        }
        Ok(Some(
            webhook::deliver(self, customer_ref, &url, event).await,
        ))
    }

    /// Makes `GET .../qr` answer `png` instead of the pairing QR (`None`:
    /// the real QR again), as a provider whose image is no QR code would.
    pub(crate) fn set_qr_image(
        &self,
        customer_ref: &str,
        png: Option<Vec<u8>>,
    ) -> Result<(), SimError> {
        self.with_bridge(customer_ref, |b| b.qr.image_override = png)
    }

    /// Mutes or unmutes the bridge's webhooks (its session is left as it is).
    pub(crate) fn set_silent(&self, customer_ref: &str, silent: bool) -> Result<(), SimError> {
        self.with_bridge(customer_ref, |b| b.silent = silent)
    }

    /// The bridge goes silent: no more webhooks, and its session drops
    /// without the `disconnected` webhook, so only `GET .../status` tells.
    pub(crate) fn go_silent(&self, customer_ref: &str) -> Result<(), SimError> {
        self.with_bridge(customer_ref, |b| {
            b.silent = true;
            if b.session == Session::Connected {
                b.session = Session::Disconnected;
            }
        })
    }

    /// Posts `event` (a flat JSON object with an `event` field) to the bridge's webhook URL.
    pub(crate) async fn post_webhook(
        &self,
        customer_ref: &str,
        event: Value,
    ) -> Result<WebhookDelivery, SimError> {
        let url = self.with_bridge(customer_ref, |b| b.webhook_url.clone())?;
        Ok(webhook::deliver(self, customer_ref, &url, event).await)
    }

    pub(crate) fn limits(&self) -> Limits {
        self.lock().limits
    }

    /// Replaces the limits and starts fresh windows.
    pub(crate) fn set_limits(&self, limits: Limits) {
        let mut state = self.lock();
        state.limits = limits;
        state.limiter.reset();
    }

    pub(crate) fn set_webhook_customer_ref(&self, include: bool) {
        self.lock().webhook_customer_ref = include;
    }
}
