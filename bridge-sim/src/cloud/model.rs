//! The public vocabulary of the Cloud API simulator: what tests set up
//! (numbers, status plans, faults) and what they read back (sends, webhook
//! deliveries, views of numbers and templates).

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A business phone number to create (see [`crate::cloud::CloudSim::add_number`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhoneNumberSpec {
    pub waba_id: String,
    pub phone_number_id: String,
    /// Digits, no `+` (as Meta's `metadata.display_phone_number`).
    pub display_phone_number: String,
    /// `GREEN`, `YELLOW`, `RED`, or any other text (Meta's list is unverified).
    #[serde(default = "default_quality")]
    pub quality_rating: String,
    /// `TIER_250`, `TIER_2K`, … (`whatsapp_business_manager_messaging_limit`).
    #[serde(default = "default_tier")]
    pub messaging_limit: String,
    /// Sends accepted per throughput window (Meta: 80 by default).
    #[serde(default = "default_mps")]
    pub mps: u32,
}

fn default_quality() -> String {
    "GREEN".to_owned()
}
fn default_tier() -> String {
    "TIER_250".to_owned()
}
fn default_mps() -> u32 {
    80
}

impl PhoneNumberSpec {
    /// A `GREEN`, `TIER_250`, 80 mps number.
    pub fn new(
        waba_id: impl Into<String>,
        phone_number_id: impl Into<String>,
        display_phone_number: impl Into<String>,
    ) -> Self {
        Self {
            waba_id: waba_id.into(),
            phone_number_id: phone_number_id.into(),
            display_phone_number: display_phone_number.into(),
            quality_rating: default_quality(),
            messaging_limit: default_tier(),
            mps: default_mps(),
        }
    }

    pub fn with_mps(mut self, mps: u32) -> Self {
        self.mps = mps;
        self
    }
}

/// A phone number as the simulator holds it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PhoneNumberView {
    pub waba_id: String,
    pub phone_number_id: String,
    pub display_phone_number: String,
    pub quality_rating: String,
    pub messaging_limit: String,
    pub mps: u32,
    /// Whether `POST /{phone_number_id}/register` was called.
    pub registered: bool,
    pub statuses: StatusPlan,
    pub fault: Option<CloudFaultPlan>,
}

/// A WABA as the simulator holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WabaView {
    pub id: String,
    /// Whether our app called `POST /{waba_id}/subscribed_apps`: without it the
    /// WABA gets no webhooks at all.
    pub subscribed: bool,
    pub phone_number_ids: Vec<String>,
}

/// A message template of one WABA.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateView {
    pub id: String,
    pub waba_id: String,
    pub name: String,
    pub language: String,
    pub category: String,
    /// `PENDING` at creation; changed by template status events.
    pub status: String,
    pub components: Value,
}

/// Which status webhooks follow an accepted send.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum StatusMode {
    /// None at all.
    Off,
    /// `sent`, `delivered`, `read`, in order.
    #[default]
    Normal,
    /// `sent`, `read`: the user read it in the chat, so no `delivered` [M3].
    ReadWithoutDelivered,
    /// `read`, `delivered`, `sent`: order is not guaranteed.
    Reordered,
    /// `sent`, then `failed` with one `errors[]` item of this code.
    Failed {
        code: i64,
        #[serde(default = "default_failed_title")]
        title: String,
    },
}

fn default_failed_title() -> String {
    "Message undeliverable".to_owned()
}

impl StatusMode {
    /// A `failed` status with Meta's title for the common codes.
    pub fn failed(code: i64) -> Self {
        let title = match code {
            131047 => "Re-engagement message",
            131026 => "Message undeliverable",
            131049 => "This message was not delivered to maintain healthy ecosystem engagement.",
            131050 => "User has stopped marketing messages",
            130429 => "Rate limit hit",
            368 => "Temporarily blocked for policies violations",
            _ => "Message failed",
        };
        StatusMode::Failed {
            code,
            title: title.to_owned(),
        }
    }
}

/// The status behaviour of one number.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusPlan {
    #[serde(flatten)]
    pub mode: StatusMode,
    /// All statuses of a send in one POST (one `messages` change with several
    /// `statuses[]`) instead of one POST each.
    #[serde(default)]
    pub batched: bool,
}

/// What `POST /{phone_number_id}/messages` can be made to do wrong.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum CloudFault {
    /// Answer Meta's error body with this code and HTTP status.
    MetaError {
        code: i64,
        #[serde(default = "default_meta_status")]
        http_status: u16,
        #[serde(default)]
        message: Option<String>,
    },
    /// Hold the request for `ms` (none: until the simulator stops), then 504.
    Hang {
        #[serde(default)]
        ms: Option<u64>,
    },
    /// A 5xx with an empty body (a load balancer's answer, not Graph's).
    BareServerError {
        #[serde(default = "default_bare_status")]
        status: u16,
    },
}

fn default_meta_status() -> u16 {
    400
}
fn default_bare_status() -> u16 {
    502
}

/// An active fault and how many more sends it affects (`None`: until cleared).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudFaultPlan {
    #[serde(flatten)]
    pub fault: CloudFault,
    #[serde(default)]
    pub times: Option<u32>,
}

/// A business token as recorded with a send. It is a secret in production,
/// so `Debug` hides it; tests compare it with [`RecordedToken::as_str`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RecordedToken(String);

impl RecordedToken {
    pub(crate) fn new(token: &str) -> Self {
        Self(token.to_owned())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for RecordedToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RecordedToken(<redacted>)")
    }
}

/// One `POST /{version}/{phone_number_id}/messages`, accepted or not.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudSend {
    pub at_ms: u64,
    /// The Graph version in the path, e.g. `v25.0`.
    pub version: String,
    pub phone_number_id: String,
    /// The Bearer token presented (none: no `Authorization` header).
    pub token: Option<RecordedToken>,
    pub to: Option<String>,
    pub recipient: Option<String>,
    /// The body's `type`.
    pub kind: Option<String>,
    /// The whole body as parsed (`Null` when it was not JSON).
    pub body: Value,
    /// The HTTP status answered (504 for a hang released at shutdown).
    pub http_status: u16,
    /// Set when the send was accepted.
    pub wamid: Option<String>,
    /// Meta's error `code` when it was refused with one.
    pub error_code: Option<i64>,
}

/// One webhook POST attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CloudDelivery {
    /// The batch this attempt carries; redeliveries share it.
    pub batch: u64,
    /// 1 for the first attempt, 2 for the first redelivery, …
    pub attempt: u32,
    pub at_ms: u64,
    /// The exact bytes posted (as text: the body is ASCII-escaped JSON).
    pub body: String,
    /// The `X-Hub-Signature-256` header sent.
    pub signature: String,
    /// The fields of the batch's changes, in order (for quick assertions).
    pub fields: Vec<String>,
    /// The receiver's status, when it answered.
    pub status: Option<u16>,
    /// Why there was no answer (timeout, connection refused).
    pub error: Option<String>,
}

impl CloudDelivery {
    /// The body parsed (`Null` if it somehow is not JSON).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    /// Whether the receiver answered exactly 200 (what stops redelivery).
    pub fn acknowledged(&self) -> bool {
        self.status == Some(200)
    }
}

/// What the GET verification handshake against the webhook URL gave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HandshakeOutcome {
    pub challenge: String,
    pub status: Option<u16>,
    /// The body, up to 1 KiB.
    pub body: String,
    /// Status 200 and the body is exactly the challenge.
    pub verified: bool,
    pub error: Option<String>,
}
