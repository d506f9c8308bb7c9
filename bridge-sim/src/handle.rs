//! Starting a simulator and steering it from a test: [`SimHandle`].
//!
//! The simulator runs on the caller's runtime and stops when the last clone of
//! its handle is dropped (or on [`SimHandle::stop`]); requests held by a
//! `Hang` fault are released then.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use secrecy::ExposeSecret;
use serde_json::Value;
use switchyard_shared::wabridges::WaBridgesSettings;
use tokio::{net::TcpListener, sync::watch, task::JoinHandle};
use tokio_util::sync::{CancellationToken, DropGuard};

use crate::{
    config::{Limits, SimConfig},
    faults::{EchoMode, Fault, FaultPlan},
    http,
    ops::SimError,
    state::{BridgeView, RecordedSend, SendAttempt, Shared, WebhookDelivery},
};

/// Fewer sends arrived than a test waited for.
#[derive(Debug, Clone, thiserror::Error)]
#[error("waited {deadline:?} for {wanted} accepted sends; {got} arrived")]
pub struct WaitTimeout {
    pub wanted: usize,
    pub got: usize,
    pub deadline: Duration,
}

/// A running simulator. Cheap to clone; the last clone dropped stops it.
#[derive(Clone)]
pub struct SimHandle {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    addr: SocketAddr,
    server: Mutex<Option<JoinHandle<()>>>,
    _stop_on_drop: DropGuard,
}

impl std::fmt::Debug for SimHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimHandle")
            .field("addr", &self.inner.addr)
            .finish()
    }
}

impl SimHandle {
    /// Binds `config.bind` (port 0: any free port) and serves until stopped.
    pub async fn start(config: SimConfig) -> std::io::Result<Self> {
        switchyard_shared::tls::install_crypto_provider();
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let webhook_http = crate::config::webhook_client(config.webhook_timeout)?;
        let shutdown = CancellationToken::new();
        let shared = Arc::new(Shared::new(&config, webhook_http, shutdown.clone()));
        let app =
            http::router(Arc::clone(&shared)).into_make_service_with_connect_info::<SocketAddr>();
        let stop = shutdown.clone();
        let server = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "bridge simulator stopped with an error");
            }
        });
        tracing::info!(sim.addr = %addr, "WA Bridges simulator listening");
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                addr,
                server: Mutex::new(Some(server)),
                _stop_on_drop: shutdown.drop_guard(),
            }),
        })
    }

    /// `http://127.0.0.1:<port>`, what `WA_API_URL` should be.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Client settings pointing at this simulator with its key (for tests).
    pub fn client_settings(&self) -> WaBridgesSettings {
        WaBridgesSettings::new(
            self.base_url(),
            self.inner.shared.api_key.expose_secret().into(),
        )
    }

    /// Stops serving, releases hanging requests and waits for the server task.
    pub async fn stop(&self) {
        self.inner.shared.shutdown.cancel();
        let server = self
            .inner
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(server) = server {
            let _ = server.await;
        }
    }

    // ----- bridges ---------------------------------------------------------

    /// Provisions a bridge directly (no key, no limits), as test set-up.
    pub fn seed_bridge(&self, customer_ref: &str, webhook_url: &str) -> BridgeView {
        self.inner.shared.provision(customer_ref, webhook_url)
    }

    pub fn bridges(&self) -> Vec<BridgeView> {
        self.inner.shared.bridges_view()
    }

    pub fn bridge(&self, customer_ref: &str) -> Option<BridgeView> {
        self.inner.shared.bridge_view(customer_ref)
    }

    // ----- sends -----------------------------------------------------------

    /// Every accepted send, in arrival order.
    pub fn sends(&self) -> Vec<RecordedSend> {
        self.inner.shared.sends(None)
    }

    /// The accepted sends of one bridge, by `customer_ref`.
    pub fn sends_for(&self, customer_ref: &str) -> Vec<RecordedSend> {
        self.inner.shared.sends(Some(customer_ref))
    }

    /// Every send attempt on a known bridge, refused ones included, with the status answered.
    pub fn attempts(&self) -> Vec<SendAttempt> {
        self.inner.shared.attempts(None)
    }

    /// Waits until at least `n` sends were accepted in total, then returns them all.
    pub async fn wait_for_sends(
        &self,
        n: usize,
        deadline: Duration,
    ) -> Result<Vec<RecordedSend>, WaitTimeout> {
        if reaches(&self.inner.shared.accepted, n, deadline).await {
            return Ok(self.sends());
        }
        Err(WaitTimeout {
            wanted: n,
            got: self.sends().len(),
            deadline,
        })
    }

    /// Waits until at least `n` valid send requests have arrived in total,
    /// accepted or not yet answered (a bridge's latency holds the answer):
    /// the caller's send is under way.
    pub async fn wait_for_send_requests(
        &self,
        n: usize,
        deadline: Duration,
    ) -> Result<(), WaitTimeout> {
        let arrived = &self.inner.shared.arrived;
        if reaches(arrived, n, deadline).await {
            return Ok(());
        }
        Err(WaitTimeout {
            wanted: n,
            got: *arrived.borrow(),
            deadline,
        })
    }

    /// Forgets recorded sends, attempts and webhook deliveries.
    pub fn clear_records(&self) {
        self.inner.shared.clear_records();
    }

    // ----- misbehaviour ----------------------------------------------------

    /// Makes every data-plane call of the bridge answer with `fault`, for the
    /// next `times` calls (`None`: until cleared).
    pub fn set_fault(
        &self,
        customer_ref: &str,
        fault: Fault,
        times: Option<u32>,
    ) -> Result<(), SimError> {
        self.inner
            .shared
            .set_fault(customer_ref, Some(FaultPlan { fault, times }))
    }

    pub fn clear_fault(&self, customer_ref: &str) -> Result<(), SimError> {
        self.inner.shared.set_fault(customer_ref, None)
    }

    /// Delays every data-plane call of the bridge by `latency`.
    pub fn set_latency(&self, customer_ref: &str, latency: Duration) -> Result<(), SimError> {
        self.inner.shared.set_latency(customer_ref, latency)
    }

    /// Connects or drops the bridge's session; with `notify`, posts the
    /// matching `connected`/`disconnected` webhook as the provider would.
    pub async fn set_connected(
        &self,
        customer_ref: &str,
        connected: bool,
        notify: bool,
    ) -> Result<Option<WebhookDelivery>, SimError> {
        self.inner
            .shared
            .set_connected(customer_ref, connected, notify)
            .await
    }

    /// The bridge goes silent, as users of WAHA and Evolution report sessions
    /// doing: it posts no more webhooks and its session drops without the
    /// `disconnected` webhook, so only `GET .../status` says so.
    pub fn go_silent(&self, customer_ref: &str) -> Result<(), SimError> {
        self.inner.shared.go_silent(customer_ref)
    }

    /// Mutes (or unmutes) the bridge's webhooks, leaving its session as it is
    /// (a silent bridge whose `/status` still says `connected`).
    pub fn set_silent(&self, customer_ref: &str, silent: bool) -> Result<(), SimError> {
        self.inner.shared.set_silent(customer_ref, silent)
    }

    /// Flaps the bridge: every `period` its session drops for `down_for`, with
    /// the `disconnected` / `connected` webhooks, until the returned guard is
    /// dropped. A send while it is down answers `409` (not connected).
    pub fn flap(
        &self,
        customer_ref: &str,
        period: Duration,
        down_for: Duration,
    ) -> crate::Flapping {
        crate::flap::start(
            Arc::clone(&self.inner.shared),
            customer_ref.to_owned(),
            period,
            down_for,
        )
    }

    /// Makes `GET .../qr` answer these bytes instead of the pairing QR
    /// (`None`: the real QR again): a provider whose image is no QR code.
    pub fn set_qr_image(&self, customer_ref: &str, png: Option<Vec<u8>>) -> Result<(), SimError> {
        self.inner.shared.set_qr_image(customer_ref, png)
    }

    /// Whether accepted sends come back as `from_me` webhooks, and when.
    pub fn set_echo(&self, customer_ref: &str, mode: EchoMode) -> Result<(), SimError> {
        self.inner.shared.set_echo(customer_ref, mode)
    }

    /// Replaces the rate limits (fresh windows start now).
    pub fn set_limits(&self, limits: Limits) {
        self.inner.shared.set_limits(limits);
    }

    // ----- webhooks --------------------------------------------------------

    /// Posts one event (see [`crate::events`]) to the bridge's `webhook_url`:
    /// one attempt, the provider's timeout, no retry.
    pub async fn post_webhook(
        &self,
        customer_ref: &str,
        event: Value,
    ) -> Result<WebhookDelivery, SimError> {
        self.inner.shared.post_webhook(customer_ref, event).await
    }

    /// A person typing in a burst (several lines, an album): one text
    /// message per body from `from` (digits), `spacing` apart, in order.
    pub async fn post_burst(
        &self,
        customer_ref: &str,
        from: &str,
        bodies: &[&str],
        spacing: Duration,
    ) -> Result<Vec<WebhookDelivery>, SimError> {
        let mut delivered = Vec::with_capacity(bodies.len());
        for (i, body) in bodies.iter().enumerate() {
            if i > 0 && !spacing.is_zero() {
                tokio::time::sleep(spacing).await;
            }
            let event = crate::events::TextMessage::new(from, *body).to_json();
            delivered.push(self.post_webhook(customer_ref, event).await?);
        }
        Ok(delivered)
    }

    /// Every webhook posted so far, with its outcome.
    pub fn webhooks(&self) -> Vec<WebhookDelivery> {
        self.inner.shared.webhooks()
    }

    /// Whether webhook bodies carry `customer_ref` from now on.
    pub fn set_webhook_customer_ref(&self, include: bool) {
        self.inner.shared.set_webhook_customer_ref(include);
    }
}

/// Whether `counter` reaches `n` within `deadline`.
async fn reaches(counter: &watch::Sender<usize>, n: usize, deadline: Duration) -> bool {
    let mut seen = counter.subscribe();
    tokio::time::timeout(deadline, seen.wait_for(|count| *count >= n))
        .await
        .is_ok_and(|waited| waited.is_ok())
}
