//! The Cloud simulator's memory: WABAs, numbers, tokens, signup codes,
//! templates, the gates' counters, and every send and webhook attempt, behind
//! one mutex that is never held across an `.await`.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap, VecDeque},
    sync::{
        Mutex, MutexGuard, PoisonError,
        atomic::{AtomicU64, Ordering},
    },
};

use secrecy::SecretString;
use tokio::{sync::watch, time::Instant};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

use super::{
    config::{CloudClock, CloudSimConfig},
    gates::PairBucket,
    health_reads::HealthReads,
    model::{
        CloudDelivery, CloudFaultPlan, CloudSend, PhoneNumberSpec, PhoneNumberView, StatusPlan,
        TemplateView, WabaView,
    },
};

/// Why a control call could not be done. Never carries a token or secret.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CloudSimError {
    #[error("unknown WABA {0}")]
    UnknownWaba(String),
    #[error("unknown phone number id {0}")]
    UnknownNumber(String),
    #[error("phone number id {0} exists already")]
    DuplicateNumber(String),
    #[error("unknown token")]
    UnknownToken,
    #[error("unknown template {name} ({language}) in WABA {waba_id}")]
    UnknownTemplate {
        waba_id: String,
        name: String,
        language: String,
    },
    #[error("no webhook URL is set")]
    NoWebhookUrl,
    #[error("invalid request: {0}")]
    Invalid(String),
}

#[derive(Debug, Clone)]
pub(crate) struct Number {
    pub spec: PhoneNumberSpec,
    pub registered: bool,
    pub statuses: StatusPlan,
    pub fault: Option<CloudFaultPlan>,
    /// Accepted sends within the throughput window.
    pub recent: VecDeque<Instant>,
}

impl Number {
    pub fn view(&self) -> PhoneNumberView {
        PhoneNumberView {
            waba_id: self.spec.waba_id.clone(),
            phone_number_id: self.spec.phone_number_id.clone(),
            display_phone_number: self.spec.display_phone_number.clone(),
            quality_rating: self.spec.quality_rating.clone(),
            messaging_limit: self.spec.messaging_limit.clone(),
            mps: self.spec.mps,
            registered: self.registered,
            statuses: self.statuses.clone(),
            fault: self.fault.clone(),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub(crate) struct Waba {
    pub subscribed: bool,
    pub templates: Vec<TemplateView>,
}

/// What a business token may do, and whether it still may.
#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub waba_id: String,
    pub revoked: bool,
    pub expires_at: Option<Instant>,
}

#[derive(Debug, Clone)]
pub(crate) struct SignupCode {
    pub waba_id: String,
    pub issued: Instant,
    pub used: bool,
}

/// Everything that changes while the simulator runs.
#[derive(Debug, Default)]
pub(crate) struct CloudState {
    pub wabas: BTreeMap<String, Waba>,
    pub numbers: BTreeMap<String, Number>,
    pub tokens: HashMap<String, Token>,
    pub codes: HashMap<String, SignupCode>,
    /// (phone number id, user key) → the user's last message.
    pub last_inbound: HashMap<(String, String), Instant>,
    pub pair: HashMap<(String, String), PairBucket>,
    pub sends: Vec<CloudSend>,
    pub deliveries: Vec<CloudDelivery>,
    /// Every Graph version seen in a path.
    pub versions: BTreeSet<String>,
    pub webhook_url: Option<String>,
    pub clock: CloudClock,
    /// The most templates one listing page holds, whatever `limit` asks
    /// (`None`: `limit` alone decides), so tests can make listings page.
    pub template_page_max: Option<usize>,
}

impl CloudState {
    pub fn waba_view(&self, id: &str) -> Option<WabaView> {
        let waba = self.wabas.get(id)?;
        Some(WabaView {
            id: id.to_owned(),
            subscribed: waba.subscribed,
            phone_number_ids: self
                .numbers
                .values()
                .filter(|n| n.spec.waba_id == id)
                .map(|n| n.spec.phone_number_id.clone())
                .collect(),
        })
    }

    pub fn number_mut(&mut self, id: &str) -> Result<&mut Number, CloudSimError> {
        self.numbers
            .get_mut(id)
            .ok_or_else(|| CloudSimError::UnknownNumber(id.to_owned()))
    }

    pub fn template_mut(
        &mut self,
        waba_id: &str,
        name: &str,
        language: &str,
    ) -> Option<&mut TemplateView> {
        self.wabas
            .get_mut(waba_id)?
            .templates
            .iter_mut()
            .find(|t| t.name == name && t.language == language)
    }
}

/// State plus what the HTTP handlers, the delivery tasks and the handle share.
#[derive(Debug)]
pub(crate) struct CloudShared {
    state: Mutex<CloudState>,
    pub app_id: String,
    pub app_secret: SecretString,
    pub verify_token: SecretString,
    /// Posts webhooks with the configured timeout, no redirects.
    pub http: reqwest::Client,
    pub shutdown: CancellationToken,
    /// Redelivery and status tasks, so that stopping can wait for them.
    pub tasks: TaskTracker,
    /// Bumped on every recorded send or delivery, for waiters.
    pub changed: watch::Sender<u64>,
    /// The health reads answered, for tests (kept outside the state's mutex:
    /// counted while their answers wait).
    pub health_reads: HealthReads,
    next_id: AtomicU64,
}

impl CloudShared {
    pub fn new(
        config: &CloudSimConfig,
        http: reqwest::Client,
        shutdown: CancellationToken,
    ) -> Self {
        Self {
            state: Mutex::new(CloudState {
                webhook_url: config.webhook_url.clone(),
                clock: config.clock.clone(),
                ..CloudState::default()
            }),
            app_id: config.app_id.clone(),
            app_secret: config.app_secret.clone(),
            verify_token: config.verify_token.clone(),
            http,
            shutdown,
            tasks: TaskTracker::new(),
            changed: watch::channel(0).0,
            health_reads: HealthReads::default(),
            next_id: AtomicU64::new(1),
        }
    }

    /// The state; a panic elsewhere while holding it leaves the data usable.
    pub fn lock(&self) -> MutexGuard<'_, CloudState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A number unique within this simulator (ids, batch numbers).
    pub fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A fresh `wamid.…`, unique within this simulator.
    pub fn new_wamid(&self) -> String {
        let n = self.next_id();
        let noise: u64 = rand::random();
        format!("wamid.HBgLsim{n:08X}{noise:016X}")
    }

    /// An opaque random secret-like string (tokens, codes).
    pub fn opaque(&self, prefix: &str) -> String {
        let a: u128 = rand::random();
        format!("{prefix}{a:032x}")
    }

    pub fn record_send(&self, send: CloudSend) {
        self.lock().sends.push(send);
        self.changed.send_modify(|n| *n += 1);
    }

    pub fn record_delivery(&self, delivery: CloudDelivery) {
        self.lock().deliveries.push(delivery);
        self.changed.send_modify(|n| *n += 1);
    }

    // ----- set-up ----------------------------------------------------------

    pub fn add_waba(&self, id: &str) -> WabaView {
        let mut state = self.lock();
        state.wabas.entry(id.to_owned()).or_default();
        state.waba_view(id).unwrap_or_else(|| WabaView {
            id: id.to_owned(),
            subscribed: false,
            phone_number_ids: Vec::new(),
        })
    }

    /// Adds a number (and its WABA when new).
    pub fn add_number(&self, spec: PhoneNumberSpec) -> Result<PhoneNumberView, CloudSimError> {
        let mut state = self.lock();
        if state.numbers.contains_key(&spec.phone_number_id) {
            return Err(CloudSimError::DuplicateNumber(spec.phone_number_id));
        }
        state.wabas.entry(spec.waba_id.clone()).or_default();
        let number = Number {
            spec,
            registered: true,
            statuses: StatusPlan::default(),
            fault: None,
            recent: VecDeque::new(),
        };
        let view = number.view();
        state
            .numbers
            .insert(number.spec.phone_number_id.clone(), number);
        Ok(view)
    }

    /// Adds a business token for `waba_id`: `token` as given, or a random one.
    pub fn add_token(
        &self,
        waba_id: &str,
        token: Option<String>,
        ttl: Option<std::time::Duration>,
    ) -> Result<String, CloudSimError> {
        let token = token.unwrap_or_else(|| self.opaque("EAAsim"));
        if token.is_empty() {
            return Err(CloudSimError::Invalid("a token cannot be empty".into()));
        }
        let mut state = self.lock();
        if !state.wabas.contains_key(waba_id) {
            return Err(CloudSimError::UnknownWaba(waba_id.to_owned()));
        }
        state.tokens.insert(
            token.clone(),
            Token {
                waba_id: waba_id.to_owned(),
                revoked: false,
                expires_at: ttl.map(|ttl| Instant::now() + ttl),
            },
        );
        Ok(token)
    }

    /// Marks a token revoked or expired; returns its WABA.
    pub fn end_token(&self, token: &str, revoke: bool) -> Result<String, CloudSimError> {
        let mut state = self.lock();
        let t = state
            .tokens
            .get_mut(token)
            .ok_or(CloudSimError::UnknownToken)?;
        if revoke {
            t.revoked = true;
        } else {
            t.expires_at = Some(Instant::now());
        }
        Ok(t.waba_id.clone())
    }

    pub fn issue_signup_code(&self, waba_id: &str) -> Result<String, CloudSimError> {
        let code = self.opaque("AQsimcode");
        let mut state = self.lock();
        if !state.wabas.contains_key(waba_id) {
            return Err(CloudSimError::UnknownWaba(waba_id.to_owned()));
        }
        state.codes.insert(
            code.clone(),
            SignupCode {
                waba_id: waba_id.to_owned(),
                issued: Instant::now(),
                used: false,
            },
        );
        Ok(code)
    }
}
