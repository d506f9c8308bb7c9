//! One notification POST to a tenant's URL, signed per Standard Webhooks
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature`), within the
//! per-request timeout, through the same egress guard as the HTTP bot
//! (address literals checked here, names at every resolution; no redirects,
//! no proxy). Never the WA Bridges client, never the fleet budget.
//!
//! The signing is the workspace's own `standard_webhooks` module (checked
//! against the specification's published test vector, and already what the
//! HTTP bot signs with). The crates.io `standardwebhooks` crate (1.0.1, its
//! one release, March 2024) would bring base64 0.21 and `hmac-sha256` beside
//! the workspace's base64 0.22 and `hmac`/`sha2`, for the same few lines.

use std::{sync::Arc, time::Duration};

use switchyard_shared::{
    bot_config::{EgressPolicy, redact_url},
    guarded_resolver::{self, GuardedResolver},
    notifications::NotifyTarget,
    standard_webhooks,
};

use crate::metrics as m;

/// What one POST came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Posted {
    /// A 2xx: the tenant has it.
    Delivered,
    /// Worth another try (an error status, a timeout, a connection error).
    Failed(String),
    /// Never worth another try: the URL is refused by the egress guard.
    Refused(String),
}

/// Posts notifications; one client for every tenant.
#[derive(Debug, Clone)]
pub struct Poster {
    client: reqwest::Client,
    policy: Arc<EgressPolicy>,
    timeout: Duration,
}

impl Poster {
    pub fn new(policy: EgressPolicy, timeout: Duration) -> anyhow::Result<Self> {
        switchyard_shared::tls::install_crypto_provider();
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver::new(
                Arc::clone(&policy),
                guarded_resolver::system_lookup(),
            )))
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(timeout)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the notification client: {e}"))?;
        Ok(Self {
            client,
            policy,
            timeout,
        })
    }

    /// Posts `body` as notification `id`, signed now. Errors name the URL
    /// redacted (no query, no user info), never the secret.
    pub async fn post(&self, target: &NotifyTarget, id: &str, body: &[u8]) -> Posted {
        let shown = redact_url(&target.url);
        if let Err(e) = self.policy.check_url(&target.url) {
            return Posted::Refused(format!("URL {shown} refused: {e}"));
        }
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let request = self
            .client
            .post(&target.url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(standard_webhooks::HEADER_ID, id)
            .header(standard_webhooks::HEADER_TIMESTAMP, now.to_string())
            .header(
                standard_webhooks::HEADER_SIGNATURE,
                target.secret.sign(id, now, body),
            )
            .body(body.to_vec());
        let started = std::time::Instant::now();
        let answer = request.send().await;
        metrics::histogram!(m::NOTIFICATION_SECONDS).record(started.elapsed().as_secs_f64());
        match answer {
            Ok(answer) if answer.status().is_success() => Posted::Delivered,
            Ok(answer) => Posted::Failed(format!("{shown} answered {}", answer.status().as_u16())),
            Err(e) => {
                if let Some(refused) = guarded_resolver::refusal_in(&e) {
                    return Posted::Refused(format!("URL {shown} refused: {refused}"));
                }
                if e.is_timeout() {
                    return Posted::Failed(format!(
                        "{shown} did not answer within {}ms",
                        self.timeout.as_millis()
                    ));
                }
                Posted::Failed(format!("{shown} unreachable: {}", e.without_url()))
            }
        }
    }
}
