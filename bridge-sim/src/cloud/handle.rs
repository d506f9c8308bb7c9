//! Starting a Cloud API simulator and steering it from a test: [`CloudSim`].
//! It runs on the caller's runtime and stops when the last clone of its
//! handle is dropped (or on [`CloudSim::shutdown`]); hanging sends and
//! pending redeliveries are released then.

use std::{
    net::SocketAddr,
    sync::{Arc, Mutex, PoisonError},
    time::Duration,
};

use tokio::{net::TcpListener, task::JoinHandle};
use tokio_util::sync::{CancellationToken, DropGuard};

use super::{
    batch::Batch,
    config::{CloudClock, CloudSimConfig},
    delivery::PostReport,
    handshake, http,
    model::{
        CloudDelivery, CloudFault, CloudFaultPlan, CloudSend, HandshakeOutcome, PhoneNumberSpec,
        PhoneNumberView, StatusPlan, TemplateView, WabaView,
    },
    ops::{self, NumberChange},
    state::{CloudShared, CloudSimError},
};

/// A wait that ran out before the condition held.
#[derive(Debug, Clone, thiserror::Error)]
#[error("waited {deadline:?}; the condition did not hold")]
pub struct CloudWaitTimeout {
    pub deadline: Duration,
}

/// A running Cloud API simulator. Cheap to clone; the last clone dropped stops it.
#[derive(Clone)]
pub struct CloudSim {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<CloudShared>,
    addr: SocketAddr,
    server: Mutex<Option<JoinHandle<()>>>,
    _stop_on_drop: DropGuard,
}

impl std::fmt::Debug for CloudSim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CloudSim")
            .field("addr", &self.inner.addr)
            .finish()
    }
}

impl CloudSim {
    /// Binds `config.bind` (port 0: any free port) and serves until stopped.
    pub async fn start(config: CloudSimConfig) -> std::io::Result<Self> {
        switchyard_shared::tls::install_crypto_provider();
        let listener = TcpListener::bind(config.bind).await?;
        let addr = listener.local_addr()?;
        let http_client = crate::config::webhook_client(config.webhook_timeout)?;
        let shutdown = CancellationToken::new();
        let shared = Arc::new(CloudShared::new(&config, http_client, shutdown.clone()));
        let app = http::router(Arc::clone(&shared));
        let stop = shutdown.clone();
        let server = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(stop.cancelled_owned())
                .await;
            if let Err(e) = served {
                tracing::error!(error = %e, "Cloud API simulator stopped with an error");
            }
        });
        tracing::info!(sim.addr = %addr, "Cloud API simulator listening");
        Ok(Self {
            inner: Arc::new(Inner {
                shared,
                addr,
                server: Mutex::new(Some(server)),
                _stop_on_drop: shutdown.drop_guard(),
            }),
        })
    }

    /// `http://127.0.0.1:<port>`: what `SWITCHYARD_CLOUD_API_URL` should be.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.inner.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.addr
    }

    /// Stops serving, releases hanging sends, ends redeliveries, and waits.
    pub async fn shutdown(&self) {
        let shared = &self.inner.shared;
        shared.shutdown.cancel();
        shared.tasks.close();
        let server = self
            .inner
            .server
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(server) = server {
            let _ = server.await;
        }
        shared.tasks.wait().await;
    }

    fn shared(&self) -> &Arc<CloudShared> {
        &self.inner.shared
    }

    // ----- set-up ----------------------------------------------------------

    /// Adds a WABA (not subscribed: call `subscribed_apps`, or [`Self::subscribe`]).
    pub fn add_waba(&self, waba_id: &str) -> WabaView {
        self.shared().add_waba(waba_id)
    }

    /// Marks a WABA subscribed (or not) without the Graph call.
    pub fn subscribe(&self, waba_id: &str, subscribed: bool) -> Result<(), CloudSimError> {
        let mut state = self.shared().lock();
        let waba = state
            .wabas
            .get_mut(waba_id)
            .ok_or_else(|| CloudSimError::UnknownWaba(waba_id.to_owned()))?;
        waba.subscribed = subscribed;
        Ok(())
    }

    /// Adds a phone number (and its WABA when new). Numbers start registered.
    pub fn add_number(&self, spec: PhoneNumberSpec) -> Result<PhoneNumberView, CloudSimError> {
        self.shared().add_number(spec)
    }

    /// A new random business token for `waba_id`, valid until revoked.
    pub fn add_token(&self, waba_id: &str) -> Result<String, CloudSimError> {
        self.shared().add_token(waba_id, None, None)
    }

    /// A business token with the given text, and optionally a lifetime.
    pub fn add_token_with(
        &self,
        waba_id: &str,
        token: &str,
        ttl: Option<Duration>,
    ) -> Result<String, CloudSimError> {
        self.shared()
            .add_token(waba_id, Some(token.to_owned()), ttl)
    }

    /// Revokes a token (its sends get `190`); with `notify`, posts
    /// `account_update` `PARTNER_APP_UNINSTALLED` for its WABA.
    pub async fn revoke_token(
        &self,
        token: &str,
        notify: bool,
    ) -> Result<Option<PostReport>, CloudSimError> {
        ops::revoke_token(self.shared(), token, notify).await
    }

    /// Expires a token now (its sends get `190` subcode `463`).
    pub fn expire_token(&self, token: &str) -> Result<(), CloudSimError> {
        self.shared().end_token(token, false).map(|_| ())
    }

    /// An Embedded Signup code for `waba_id`: exchangeable once, within
    /// the clock's `signup_code_ttl`, for a new token of that WABA.
    pub fn issue_signup_code(&self, waba_id: &str) -> Result<String, CloudSimError> {
        self.shared().issue_signup_code(waba_id)
    }

    /// Adds a template in any status, without review (e.g. an `APPROVED`
    /// one), with no components (a send gives it no parameters).
    pub fn seed_template(
        &self,
        waba_id: &str,
        name: &str,
        language: &str,
        category: &str,
        status: &str,
    ) -> Result<TemplateView, CloudSimError> {
        let none = serde_json::Value::Array(Vec::new());
        ops::seed_template(
            self.shared(),
            waba_id,
            name,
            language,
            category,
            status,
            none,
        )
    }

    /// [`Self::seed_template`] with Meta's `components` (its BODY's
    /// placeholders are the parameters a send must give).
    pub fn seed_template_with(
        &self,
        waba_id: &str,
        name: &str,
        language: &str,
        status: &str,
        components: serde_json::Value,
    ) -> Result<TemplateView, CloudSimError> {
        ops::seed_template(
            self.shared(),
            waba_id,
            name,
            language,
            "UTILITY",
            status,
            components,
        )
    }

    /// Caps every template listing page at `max` templates (`None`: as
    /// `limit` asks, 25 by default), so a client's paging can be tested.
    pub fn set_template_page_max(&self, max: Option<usize>) {
        self.shared().lock().template_page_max = max;
    }

    /// Sets the Callback URL (`None`: webhooks cannot be posted).
    pub fn set_webhook_url(&self, url: Option<&str>) {
        self.shared().lock().webhook_url = url.map(str::to_owned);
    }

    /// Replaces the clock (gates' counters are kept).
    pub fn set_clock(&self, clock: CloudClock) {
        self.shared().lock().clock = clock;
    }

    // ----- misbehaviour and account changes --------------------------------

    /// Makes the number's next `times` sends (`None`: all, until cleared) answer with `fault`.
    pub fn set_fault(
        &self,
        phone_number_id: &str,
        fault: CloudFault,
        times: Option<u32>,
    ) -> Result<(), CloudSimError> {
        let plan = Some(CloudFaultPlan { fault, times });
        ops::update_number(self.shared(), phone_number_id, NumberChange::Fault(plan)).map(|_| ())
    }

    pub fn clear_fault(&self, phone_number_id: &str) -> Result<(), CloudSimError> {
        ops::update_number(self.shared(), phone_number_id, NumberChange::Fault(None)).map(|_| ())
    }

    /// Which status webhooks follow the number's accepted sends.
    pub fn set_statuses(
        &self,
        phone_number_id: &str,
        plan: StatusPlan,
    ) -> Result<(), CloudSimError> {
        ops::update_number(self.shared(), phone_number_id, NumberChange::Statuses(plan)).map(|_| ())
    }

    /// The number's throughput (sends per throughput window).
    pub fn set_mps(&self, phone_number_id: &str, mps: u32) -> Result<(), CloudSimError> {
        ops::update_number(self.shared(), phone_number_id, NumberChange::Mps(mps)).map(|_| ())
    }

    /// Holds every health read's answer (`GET /{phone_number_id}`) for
    /// `delay` (zero: at once), so that reads made together overlap.
    pub fn set_health_read_delay(&self, delay: Duration) {
        self.shared().health_reads.set_delay(delay);
    }

    /// Health reads answered so far, and the most that were under way at once.
    pub fn health_reads(&self) -> (u64, usize) {
        self.shared().health_reads.seen()
    }

    /// The number's `quality_rating` (no webhook: Meta no longer sends one for quality).
    pub fn set_quality(&self, phone_number_id: &str, quality: &str) -> Result<(), CloudSimError> {
        let change = NumberChange::Quality(quality.to_owned());
        ops::update_number(self.shared(), phone_number_id, change).map(|_| ())
    }

    /// The number's messaging limit tier (e.g. `TIER_2K`); with `notify`,
    /// posts `phone_number_quality_update` with `event` (e.g. `UPGRADE`).
    pub async fn set_messaging_limit(
        &self,
        phone_number_id: &str,
        tier: &str,
        event: &str,
        notify: bool,
    ) -> Result<Option<PostReport>, CloudSimError> {
        ops::set_messaging_limit(self.shared(), phone_number_id, tier, event, notify).await
    }

    /// Moves a template as Meta's review would (`APPROVED`, `REJECTED`,
    /// `PAUSED`, …); with `notify`, posts `message_template_status_update`.
    pub async fn set_template_status(
        &self,
        waba_id: &str,
        name: &str,
        language: &str,
        event: &str,
        notify: bool,
    ) -> Result<Option<PostReport>, CloudSimError> {
        ops::set_template_status(self.shared(), waba_id, name, language, event, None, notify).await
    }

    /// Opens `user`'s window (`wa_id` or BSUID) on a number, without a webhook.
    pub fn open_window(&self, phone_number_id: &str, user: &str) -> Result<(), CloudSimError> {
        ops::open_window(self.shared(), phone_number_id, user)
    }

    // ----- webhooks --------------------------------------------------------

    /// Posts `batch` as ONE signed POST (entries of unsubscribed WABAs left
    /// out) and returns after the first attempt; non-200 answers are
    /// redelivered in the background.
    pub async fn post_batch(&self, batch: &Batch) -> Result<PostReport, CloudSimError> {
        ops::post_batch(self.shared(), batch).await
    }

    /// Performs the GET verification handshake against the webhook URL.
    pub async fn verify_webhook(&self) -> Result<HandshakeOutcome, CloudSimError> {
        handshake::verify(self.shared(), None).await
    }

    /// The handshake with another verify token (to see a wrong one refused).
    pub async fn verify_webhook_with(
        &self,
        token: &str,
    ) -> Result<HandshakeOutcome, CloudSimError> {
        handshake::verify(self.shared(), Some(token)).await
    }

    // ----- records ---------------------------------------------------------

    /// Every `/messages` call, in arrival order.
    pub fn sends(&self) -> Vec<CloudSend> {
        self.shared().lock().sends.clone()
    }

    /// The accepted sends (those with a `wamid`).
    pub fn accepted_sends(&self) -> Vec<CloudSend> {
        let state = self.shared().lock();
        state
            .sends
            .iter()
            .filter(|s| s.wamid.is_some())
            .cloned()
            .collect()
    }

    /// Every webhook attempt, in order.
    pub fn deliveries(&self) -> Vec<CloudDelivery> {
        self.shared().lock().deliveries.clone()
    }

    /// Forgets recorded sends and deliveries.
    pub fn clear_records(&self) {
        let mut state = self.shared().lock();
        state.sends.clear();
        state.deliveries.clear();
    }

    pub fn number(&self, phone_number_id: &str) -> Option<PhoneNumberView> {
        self.shared()
            .lock()
            .numbers
            .get(phone_number_id)
            .map(|n| n.view())
    }

    pub fn waba(&self, waba_id: &str) -> Option<WabaView> {
        self.shared().lock().waba_view(waba_id)
    }

    pub fn templates(&self, waba_id: &str) -> Vec<TemplateView> {
        let state = self.shared().lock();
        state
            .wabas
            .get(waba_id)
            .map(|w| w.templates.clone())
            .unwrap_or_default()
    }

    /// The Graph versions seen in request paths.
    pub fn versions(&self) -> Vec<String> {
        self.shared().lock().versions.iter().cloned().collect()
    }

    /// Waits until `done` holds for the records (checked at every new send
    /// or delivery, and once at the start).
    pub async fn wait_until<F>(
        &self,
        deadline: Duration,
        mut done: F,
    ) -> Result<(), CloudWaitTimeout>
    where
        F: FnMut(&[CloudSend], &[CloudDelivery]) -> bool,
    {
        let mut changed = self.shared().changed.subscribe();
        let waited = tokio::time::timeout(deadline, async {
            loop {
                {
                    let state = self.shared().lock();
                    if done(&state.sends, &state.deliveries) {
                        return;
                    }
                }
                if changed.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        waited.map_err(|_| CloudWaitTimeout { deadline })
    }

    /// Waits until at least `n` webhook attempts were recorded; returns them all.
    pub async fn wait_for_deliveries(
        &self,
        n: usize,
        deadline: Duration,
    ) -> Result<Vec<CloudDelivery>, CloudWaitTimeout> {
        self.wait_until(deadline, |_, d| d.len() >= n).await?;
        Ok(self.deliveries())
    }
}
