//! [`WaBridgesClient`]: every call Switchyard makes to WA Bridges.
//!
//! One method per documented endpoint; each returns the typed answer or a
//! classified [`WaError`]. The key travels only in the `Authorization` header
//! (marked sensitive) and is scrubbed from every error message; redirects are
//! not followed, so the key never goes anywhere but the configured host.

use std::{fmt, sync::Arc, time::Duration};

use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::{Serialize, de::DeserializeOwned};
use tokio::time::Instant;

use super::{
    chat::normalise_chat,
    classify::{ClassifyRules, classify},
    error::WaError,
    model::{
        Bridge, BridgeDetail, BridgeStatus, PairCode, PairRequest, ProvisionRequest, SendReceipt,
        SendTextRequest,
    },
    settings::WaBridgesSettings,
};
use crate::{
    ids::{BridgeId, TenantId},
    metrics as m,
};

/// How much of an error answer is read (its message is cut further, to 512 bytes).
const MAX_ERROR_BODY_BYTES: usize = 4 * 1024;
/// How much of a successful answer is read (a fleet list of many thousand bridges fits).
const MAX_SUCCESS_BODY_BYTES: usize = 16 * 1024 * 1024;

/// The HTTP client could not be built (TLS initialisation).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the WA Bridges HTTP client: {0}")]
pub struct BuildError(String);

/// A client of the WA Bridges API. Cheap to clone; clones share connections.
#[derive(Clone)]
pub struct WaBridgesClient {
    http: reqwest::Client,
    base_url: Arc<str>,
    api_key: SecretString,
    timeout: Duration,
    rules: Arc<ClassifyRules>,
}

impl fmt::Debug for WaBridgesClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WaBridgesClient")
            .field("base_url", &self.base_url)
            .field("api_key", &"[redacted]")
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A successful answer: its status and (capped) body.
struct Answer {
    status: u16,
    body: Vec<u8>,
}

impl WaBridgesClient {
    pub fn new(settings: WaBridgesSettings) -> Result<Self, BuildError> {
        let http = crate::tls::provider_http_client(settings.timeout)
            .map_err(|e| BuildError(e.to_string()))?;
        Ok(Self {
            http,
            base_url: settings.base_url.trim_end_matches('/').into(),
            api_key: settings.api_key,
            timeout: settings.timeout,
            rules: Arc::new(settings.rules),
        })
    }

    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    // ----- control plane -------------------------------------------------

    /// `POST /api/instances`: creates the tenant's bridge, or returns the
    /// existing one (idempotent on `customer_ref`; whether a repeat updates the
    /// webhook URL is undocumented, so do not rely on it).
    pub async fn provision(
        &self,
        customer_ref: &TenantId,
        webhook_url: &str,
    ) -> Result<Bridge, WaError> {
        let body = ProvisionRequest {
            customer_ref: customer_ref.as_str(),
            webhook_url,
        };
        let answer = self
            .call(
                "provision",
                Method::POST,
                self.api_url("instances"),
                Some(&body),
            )
            .await?;
        decode("provision", &answer)
    }

    /// `GET /api/instances`: every bridge of the account (no pagination is documented).
    pub async fn list(&self) -> Result<Vec<Bridge>, WaError> {
        let answer = self
            .call("list", Method::GET, self.api_url("instances"), None::<&()>)
            .await?;
        decode("list", &answer)
    }

    /// `GET /api/instances/{id}`: one bridge with its manager's live state.
    pub async fn get(&self, id: BridgeId) -> Result<BridgeDetail, WaError> {
        let answer = self
            .call(
                "get",
                Method::GET,
                self.api_url(&format!("instances/{id}")),
                None::<&()>,
            )
            .await?;
        decode("get", &answer)
    }

    /// `DELETE /api/instances/{id}`: permanent; stops billing.
    pub async fn delete(&self, id: BridgeId) -> Result<(), WaError> {
        self.call(
            "delete",
            Method::DELETE,
            self.api_url(&format!("instances/{id}")),
            None::<&()>,
        )
        .await
        .map(drop)
    }

    // ----- data plane ----------------------------------------------------

    /// `GET .../proxy/status`: whether the bridge's WhatsApp session is connected.
    pub async fn status(&self, tenant: &TenantId) -> Result<BridgeStatus, WaError> {
        let answer = self
            .call(
                "status",
                Method::GET,
                self.proxy_url(tenant, "status"),
                None::<&()>,
            )
            .await?;
        decode("status", &answer)
    }

    /// `POST .../proxy/send/text`. `chat` may be a JID or digits; it is
    /// normalised (see [`normalise_chat`]) and refused before any call when invalid.
    /// Success means handed to the bridge, not delivered.
    pub async fn send_text(
        &self,
        tenant: &TenantId,
        chat: &str,
        body: &str,
    ) -> Result<SendReceipt, WaError> {
        let chat = normalise_chat(chat)?;
        let request = SendTextRequest {
            chat: chat.as_str(),
            body,
        };
        let answer = self
            .call(
                "send_text",
                Method::POST,
                self.proxy_url(tenant, "send/text"),
                Some(&request),
            )
            .await?;
        let receipt: SendReceipt = decode("send_text", &answer)?;
        if receipt.message_id.as_str().trim().is_empty() {
            return Err(WaError::InvalidResponse {
                status: answer.status,
                message: "send accepted without a message_id".to_owned(),
            });
        }
        Ok(receipt)
    }

    /// `GET .../proxy/qr`: the pairing QR code as PNG bytes (unpaired bridges only).
    pub async fn qr(&self, tenant: &TenantId) -> Result<Vec<u8>, WaError> {
        self.call("qr", Method::GET, self.proxy_url(tenant, "qr"), None::<&()>)
            .await
            .map(|a| a.body)
    }

    /// `POST .../proxy/pair`: a link code to enter on the phone `phone`.
    pub async fn pair(&self, tenant: &TenantId, phone: &str) -> Result<PairCode, WaError> {
        let answer = self
            .call(
                "pair",
                Method::POST,
                self.proxy_url(tenant, "pair"),
                Some(&PairRequest { phone }),
            )
            .await?;
        decode("pair", &answer)
    }

    /// `DELETE .../proxy/logout`: unpairs; the bridge needs a new pairing afterwards.
    pub async fn logout(&self, tenant: &TenantId) -> Result<(), WaError> {
        self.call(
            "logout",
            Method::DELETE,
            self.proxy_url(tenant, "logout"),
            None::<&()>,
        )
        .await
        .map(drop)
    }

    // ----- plumbing ------------------------------------------------------

    fn api_url(&self, tail: &str) -> String {
        format!("{}/api/{tail}", self.base_url)
    }

    /// The data-plane address of a tenant's bridge: the ONE place that decides
    /// the path segment. The reference's call table keys it by `customer_ref`
    /// (its rate-limit table writes `:id`); we use the `customer_ref`, which is
    /// our tenant id, so a send never needs the provider's numeric id.
    fn proxy_url(&self, tenant: &TenantId, tail: &str) -> String {
        format!("{}/api/instances/{tenant}/proxy/{tail}", self.base_url)
    }

    /// Sends one request and classifies the outcome; records a metric per call.
    async fn call<B: Serialize + ?Sized>(
        &self,
        op: &'static str,
        method: Method,
        url: String,
        json: Option<&B>,
    ) -> Result<Answer, WaError> {
        let started = Instant::now();
        let mut request = self
            .http
            .request(method, url)
            .bearer_auth(self.api_key.expose_secret());
        if let Some(body) = json {
            request = request.json(body);
        }
        let result = self.exchange(request).await.map_err(|e| self.scrub(e));
        let outcome = match &result {
            Ok(_) => "ok",
            Err(e) => e.class(),
        };
        let elapsed = started.elapsed();
        metrics::counter!(m::WA_REQUESTS, "op" => op, "outcome" => outcome).increment(1);
        metrics::histogram!(m::WA_REQUEST_DURATION_SECONDS, "op" => op)
            .record(elapsed.as_secs_f64());
        tracing::debug!(
            wa.op = op,
            wa.outcome = outcome,
            http.status = result.as_ref().ok().map(|a| a.status),
            elapsed_ms = elapsed.as_millis() as u64,
            "WA Bridges call"
        );
        result
    }

    async fn exchange(&self, request: reqwest::RequestBuilder) -> Result<Answer, WaError> {
        let mut response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status();
        if status.is_success() {
            let body = read_capped(&mut response, MAX_SUCCESS_BODY_BYTES + 1)
                .await
                .map_err(|e| self.transport(&e))?;
            if body.len() > MAX_SUCCESS_BODY_BYTES {
                return Err(WaError::InvalidResponse {
                    status: status.as_u16(),
                    message: format!("answer larger than {MAX_SUCCESS_BODY_BYTES} bytes"),
                });
            }
            return Ok(Answer {
                status: status.as_u16(),
                body,
            });
        }
        let headers = response.headers().clone();
        // A failure to read an error body must not hide the status: classify what we have.
        let body = read_capped(&mut response, MAX_ERROR_BODY_BYTES)
            .await
            .unwrap_or_default();
        Err(classify(status.as_u16(), &headers, &body, &self.rules))
    }

    /// Maps a connection-level failure (no usable answer).
    fn transport(&self, e: &reqwest::Error) -> WaError {
        if e.is_timeout() {
            return WaError::Timeout {
                timeout: self.timeout,
            };
        }
        let mut message = e.to_string();
        let mut source = std::error::Error::source(e);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        WaError::Transient {
            status: e.status().map(|s: StatusCode| s.as_u16()),
            message,
        }
    }

    /// Belt and braces: the key must never appear in an error, even if the
    /// provider echoed it back.
    fn scrub(&self, error: WaError) -> WaError {
        let key = self.api_key.expose_secret();
        if key.is_empty() {
            return error;
        }
        let clean = |m: String| {
            if m.contains(key) {
                m.replace(key, "[redacted]")
            } else {
                m
            }
        };
        match error {
            WaError::Restricted { status, message } => WaError::Restricted {
                status,
                message: clean(message),
            },
            WaError::Disconnected { status, message } => WaError::Disconnected {
                status,
                message: clean(message),
            },
            WaError::Rejected { status, message } => WaError::Rejected {
                status,
                message: clean(message),
            },
            WaError::Transient { status, message } => WaError::Transient {
                status,
                message: clean(message),
            },
            WaError::InvalidResponse { status, message } => WaError::InvalidResponse {
                status,
                message: clean(message),
            },
            other => other,
        }
    }
}

/// Reads at most `cap` bytes of the body; the rest is left unread.
async fn read_capped(
    response: &mut reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = cap.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= cap {
            break;
        }
    }
    Ok(body)
}

fn decode<T: DeserializeOwned>(op: &'static str, answer: &Answer) -> Result<T, WaError> {
    serde_json::from_slice(&answer.body).map_err(|e| WaError::InvalidResponse {
        status: answer.status,
        message: format!("cannot read the {op} answer: {e}"),
    })
}
