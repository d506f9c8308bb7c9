//! The simulator's memory: bridges, every send attempt and every webhook
//! delivery, behind one mutex that is never held across an `.await`.

use std::{
    collections::BTreeMap,
    sync::{Mutex, MutexGuard, PoisonError},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{
    config::{Limits, SimConfig},
    faults::{EchoMode, FaultPlan},
    limiter::Limiter,
    qr::QrPairing,
};

/// The WhatsApp session of a bridge, as `GET .../status` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Session {
    /// Paired and online: sends are accepted.
    Connected,
    /// Paired, but the session dropped (a flap): sends answer `409`.
    Disconnected,
    /// Never paired or logged out: `/qr` and `/pair` work, sends answer `409`.
    Unpaired,
}

impl Session {
    pub fn as_str(self) -> &'static str {
        match self {
            Session::Connected => "connected",
            Session::Disconnected => "disconnected",
            Session::Unpaired => "unpaired",
        }
    }
}

/// One simulated bridge.
#[derive(Debug, Clone)]
pub(crate) struct SimBridge {
    pub id: i64,
    pub customer_ref: String,
    pub webhook_url: String,
    pub created_at: String,
    pub started_at: String,
    pub session: Session,
    pub phone: Option<String>,
    pub name: String,
    pub latency: Duration,
    pub fault: Option<FaultPlan>,
    pub echo: EchoMode,
    /// Posts no webhook at all (the "connected but no events for hours"
    /// sessions WAHA and Evolution users report); `/status` still answers.
    pub silent: bool,
    /// `GET .../status` calls that reached this bridge.
    pub status_calls: u64,
    /// What `GET .../qr` shows while the bridge is unpaired.
    pub qr: QrPairing,
}

/// A bridge as the `/_sim` API and the handle show it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BridgeView {
    pub id: i64,
    pub customer_ref: String,
    /// Carries the per-bridge webhook secret: for assertions, never logged.
    pub webhook_url: String,
    pub session: Session,
    pub phone: Option<String>,
    pub latency_ms: u64,
    pub fault: Option<FaultPlan>,
    pub echo: EchoMode,
    /// Posts no webhook (see [`crate::SimHandle::go_silent`]).
    #[serde(default)]
    pub silent: bool,
    /// `GET .../status` calls that reached this bridge.
    #[serde(default)]
    pub status_calls: u64,
    /// The payload of the pairing QR last shown, while that attempt lasts
    /// (`None` before any `GET .../qr`, and once the bridge paired).
    #[serde(default)]
    pub qr_payload: Option<String>,
}

impl From<&SimBridge> for BridgeView {
    fn from(b: &SimBridge) -> Self {
        Self {
            id: b.id,
            customer_ref: b.customer_ref.clone(),
            webhook_url: b.webhook_url.clone(),
            session: b.session,
            phone: b.phone.clone(),
            latency_ms: u64::try_from(b.latency.as_millis()).unwrap_or(u64::MAX),
            fault: b.fault.clone(),
            echo: b.echo,
            silent: b.silent,
            status_calls: b.status_calls,
            qr_payload: b.qr.current().map(str::to_owned),
        }
    }
}

/// Every `POST .../send/text` that named a known bridge and a valid body, with its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SendAttempt {
    pub bridge_id: i64,
    pub customer_ref: String,
    pub chat: String,
    pub body: String,
    /// Arrival time, unix milliseconds.
    pub at_ms: u64,
    /// The status answered.
    pub status: u16,
    /// Set when the send was accepted.
    pub message_id: Option<String>,
}

/// An accepted send.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedSend {
    pub bridge_id: i64,
    pub customer_ref: String,
    pub chat: String,
    pub body: String,
    /// Arrival time, unix milliseconds.
    pub at_ms: u64,
    pub message_id: String,
}

impl SendAttempt {
    pub(crate) fn accepted(&self) -> Option<RecordedSend> {
        self.message_id.as_ref().map(|id| RecordedSend {
            bridge_id: self.bridge_id,
            customer_ref: self.customer_ref.clone(),
            chat: self.chat.clone(),
            body: self.body.clone(),
            at_ms: self.at_ms,
            message_id: id.clone(),
        })
    }
}

/// One webhook the simulator posted, and what came of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    pub customer_ref: String,
    /// The `event` field of the body.
    pub event: String,
    pub body: serde_json::Value,
    pub at_ms: u64,
    /// The receiver's status, when it answered within the timeout.
    pub status: Option<u16>,
    /// Why there was no answer (timeout, connection refused).
    pub error: Option<String>,
}

/// Everything that changes while the simulator runs.
#[derive(Debug, Default)]
pub(crate) struct SimState {
    pub bridges: BTreeMap<i64, SimBridge>,
    pub next_id: i64,
    pub attempts: Vec<SendAttempt>,
    pub webhooks: Vec<WebhookDelivery>,
    pub limits: Limits,
    pub limiter: Limiter,
    pub webhook_customer_ref: bool,
    /// Accepted sends so far (kept, not counted, so recording stays O(1)).
    pub accepted: usize,
}

impl SimState {
    pub fn by_ref(&self, customer_ref: &str) -> Option<&SimBridge> {
        self.bridges
            .values()
            .find(|b| b.customer_ref == customer_ref)
    }

    pub fn by_ref_mut(&mut self, customer_ref: &str) -> Option<&mut SimBridge> {
        self.bridges
            .values_mut()
            .find(|b| b.customer_ref == customer_ref)
    }
}

/// State plus what the HTTP handlers and the handle share.
#[derive(Debug)]
pub(crate) struct Shared {
    state: Mutex<SimState>,
    pub api_key: SecretString,
    pub auto_connect: bool,
    pub update_webhook_on_reprovision: bool,
    pub default_echo: EchoMode,
    /// The number of accepted sends, for waiters.
    pub accepted: watch::Sender<usize>,
    /// The number of valid send requests that arrived (before their
    /// bridge's latency and fault), for waiters: a send is under way.
    pub arrived: watch::Sender<usize>,
    /// Posts webhooks with the provider's timeout and no retries.
    pub webhook_http: reqwest::Client,
    pub shutdown: CancellationToken,
}

impl Shared {
    pub fn new(
        config: &SimConfig,
        webhook_http: reqwest::Client,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            state: Mutex::new(SimState {
                next_id: 1,
                limits: config.limits,
                webhook_customer_ref: config.webhook_customer_ref,
                ..SimState::default()
            }),
            api_key: config.api_key.clone(),
            auto_connect: config.auto_connect,
            update_webhook_on_reprovision: config.update_webhook_on_reprovision,
            default_echo: config.echo,
            accepted: watch::channel(0).0,
            arrived: watch::channel(0).0,
            webhook_http,
            shutdown,
        }
    }

    /// The state; a panic elsewhere while holding it leaves the data usable.
    pub fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Creates the bridge for `customer_ref`, or returns the existing one.
    pub fn provision(&self, customer_ref: &str, webhook_url: &str) -> BridgeView {
        let mut state = self.lock();
        if let Some(existing) = state.by_ref_mut(customer_ref) {
            if self.update_webhook_on_reprovision {
                existing.webhook_url = webhook_url.to_owned();
            }
            return BridgeView::from(&*existing);
        }
        let id = state.next_id;
        state.next_id += 1;
        let now = rfc3339_now();
        let (session, phone) = if self.auto_connect {
            (Session::Connected, Some(fake_phone(id)))
        } else {
            (Session::Unpaired, None)
        };
        let bridge = SimBridge {
            id,
            customer_ref: customer_ref.to_owned(),
            webhook_url: webhook_url.to_owned(),
            created_at: now.clone(),
            started_at: now,
            session,
            phone,
            name: format!("Sim {customer_ref}"),
            latency: Duration::ZERO,
            fault: None,
            echo: self.default_echo,
            silent: false,
            status_calls: 0,
            qr: QrPairing::new(),
        };
        let view = BridgeView::from(&bridge);
        state.bridges.insert(id, bridge);
        view
    }

    /// Records a send attempt and wakes waiters when it was accepted.
    pub fn record(&self, attempt: SendAttempt) {
        let accepted = {
            let mut state = self.lock();
            if attempt.message_id.is_some() {
                state.accepted += 1;
            }
            state.attempts.push(attempt);
            state.accepted
        };
        self.accepted.send_replace(accepted);
    }
}

/// The phone number a simulated bridge gets when it connects without pairing.
pub(crate) fn fake_phone(id: i64) -> String {
    format!("1555{:07}", id.rem_euclid(10_000_000))
}

pub(crate) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

pub(crate) fn unix_secs() -> i64 {
    i64::try_from(unix_ms() / 1000).unwrap_or(i64::MAX)
}

fn rfc3339_now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}
