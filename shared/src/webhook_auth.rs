//! The per-bridge webhook token.
//!
//! WA Bridges signs nothing, so each bridge's `webhook_url` carries its tenant
//! id and a token: the HMAC-SHA256 of the tenant id under a server secret. No
//! per-tenant secret is stored; rotating the server secret means accepting the
//! current and the previous one while bridges are re-provisioned. Provisioning
//! (which sets the URL) and ingest (which checks it) both use this module.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::ids::TenantId;

/// Domain separation: a token is only ever valid as a webhook token.
const CONTEXT: &[u8] = b"switchyard-webhook-token-v1:";

/// The URL path under which ingest serves the fleet: `/hook/<tenant>/<token>`.
pub const HOOK_PATH_PREFIX: &str = "/hook";

/// The server secrets that derive webhook tokens.
#[derive(Clone)]
pub struct WebhookKeys {
    current: SecretString,
    previous: Option<SecretString>,
}

impl std::fmt::Debug for WebhookKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookKeys")
            .field("current", &"[redacted]")
            .field("previous", &self.previous.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl WebhookKeys {
    pub fn new(current: SecretString, previous: Option<SecretString>) -> Self {
        Self { current, previous }
    }

    /// The token for `tenant` under the current secret (for provisioning).
    pub fn token_for(&self, tenant: &TenantId) -> String {
        let tag = mac(&self.current, tenant).finalize().into_bytes();
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag)
    }

    /// Whether `token` is valid for `tenant` under the current or previous
    /// secret. Compares in constant time.
    pub fn verify(&self, tenant: &TenantId, token: &str) -> bool {
        let Ok(presented) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(token) else {
            return false;
        };
        let under = |secret: &SecretString| mac(secret, tenant).verify_slice(&presented).is_ok();
        // Evaluate both so timing does not reveal which secret matched.
        let current = under(&self.current);
        let previous = self.previous.as_ref().is_some_and(under);
        current | previous
    }

    /// The full webhook URL to give the provider for `tenant`'s bridge.
    pub fn webhook_url(&self, public_base_url: &str, tenant: &TenantId) -> String {
        format!(
            "{}{HOOK_PATH_PREFIX}/{tenant}/{}",
            public_base_url.trim_end_matches('/'),
            self.token_for(tenant)
        )
    }
}

fn mac(secret: &SecretString, tenant: &TenantId) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    mac.update(CONTEXT);
    mac.update(tenant.as_str().as_bytes());
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(current: &str, previous: Option<&str>) -> WebhookKeys {
        WebhookKeys::new(current.into(), previous.map(Into::into))
    }

    fn t(raw: &str) -> TenantId {
        TenantId::parse(raw).unwrap()
    }

    #[test]
    fn a_token_is_valid_only_for_its_own_tenant() {
        let k = keys("s3cret", None);
        let token = k.token_for(&t("acme"));
        assert!(k.verify(&t("acme"), &token));
        assert!(!k.verify(&t("globex"), &token));
    }

    #[test]
    fn rotation_accepts_the_previous_secret_and_forgets_older_ones() {
        let old = keys("old", None).token_for(&t("acme"));
        assert!(keys("new", Some("old")).verify(&t("acme"), &old));
        assert!(!keys("newer", Some("new")).verify(&t("acme"), &old));
    }

    #[test]
    fn garbage_tokens_are_refused() {
        let k = keys("s3cret", None);
        for bad in ["", "!!!", "AAAA", &"A".repeat(500)] {
            assert!(!k.verify(&t("acme"), bad), "{bad}");
        }
    }

    #[test]
    fn the_webhook_url_carries_tenant_and_token() {
        let k = keys("s3cret", None);
        let url = k.webhook_url("https://ingest.example/", &t("acme"));
        assert_eq!(
            url,
            format!(
                "https://ingest.example/hook/acme/{}",
                k.token_for(&t("acme"))
            )
        );
    }

    #[test]
    fn debug_output_hides_the_secrets() {
        let k = keys("hunter2", Some("hunter3"));
        let shown = format!("{k:?}");
        assert!(!shown.contains("hunter"), "{shown}");
    }
}
