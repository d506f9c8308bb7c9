//! The per-bridge webhook token.
//!
//! WA Bridges signs nothing, so each bridge's `webhook_url` carries its tenant
//! id and a token: an HMAC-SHA256 under a server secret of the tenant id and
//! the tenant's credential [`Generation`] (stored with the tenant, see
//! [`crate::webhook_credential`]). Generation 0 is the token every tenant had
//! before per-tenant rotation existed, byte for byte, so existing URLs stay
//! valid across the deploy; a rotation moves one tenant to the next
//! generation and leaves every other tenant's URL alone.
//!
//! The generation travels in the token (`<n>.<mac>`; generation 0 has no
//! prefix), so ingest checks the MAC before it reads anything: a token we did
//! not issue is refused without a database read or a cache entry, whatever
//! tenant it names. Which generations a tenant still accepts is the tenant
//! row's business, not this module's.
//!
//! Rotating the server secret itself means accepting the current and the
//! previous one while bridges are re-pointed. Provisioning (which sets the
//! URL) and ingest (which checks it) both use this module.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;

use crate::ids::TenantId;

/// Domain separation of generation 0 (the original derivation; never change it).
const CONTEXT_V1: &[u8] = b"switchyard-webhook-token-v1:";
/// Domain separation of generations 1 and later: tenant, `:`, generation.
const CONTEXT_V2: &[u8] = b"switchyard-webhook-token-v2:";
/// Separates a generation from its MAC; not in the URL-safe base64 alphabet.
const SEPARATOR: char = '.';

/// The URL path under which ingest serves the fleet: `/hook/<tenant>/<token>`.
pub const HOOK_PATH_PREFIX: &str = "/hook";

/// A tenant's webhook credential generation: 0 for a tenant never rotated,
/// one more at each rotation. Not a secret (it is part of the URL); the MAC
/// beside it is.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(transparent)]
pub struct Generation(u32);

impl Generation {
    /// The derivation every tenant had before rotation existed.
    pub const ORIGINAL: Generation = Generation(0);

    pub fn new(raw: u32) -> Self {
        Self(raw)
    }

    pub fn get(self) -> u32 {
        self.0
    }

    /// The generation a rotation moves to; `None` past `u32::MAX` (never in practice).
    pub fn next(self) -> Option<Self> {
        self.0.checked_add(1).map(Self)
    }

    /// The previous generation; `None` for the original.
    pub fn previous(self) -> Option<Self> {
        self.0.checked_sub(1).map(Self)
    }

    /// Reads the `<n>` of a token: canonical decimal only (no sign, no leading zero).
    fn parse(raw: &str) -> Option<Self> {
        let canonical = !raw.is_empty()
            && raw.bytes().all(|b| b.is_ascii_digit())
            && !(raw.len() > 1 && raw.starts_with('0'));
        if !canonical {
            return None;
        }
        raw.parse().ok().filter(|&n| n > 0).map(Self)
    }
}

impl std::fmt::Display for Generation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

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

    /// The generation-0 token for `tenant` (a tenant never rotated).
    pub fn token_for(&self, tenant: &TenantId) -> String {
        self.token_at(tenant, Generation::ORIGINAL)
    }

    /// The token for `tenant` at `generation`, under the current secret (for provisioning).
    pub fn token_at(&self, tenant: &TenantId, generation: Generation) -> String {
        let tag = mac(&self.current, tenant, generation)
            .finalize()
            .into_bytes();
        let tag = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag);
        if generation == Generation::ORIGINAL {
            tag
        } else {
            format!("{generation}{SEPARATOR}{tag}")
        }
    }

    /// The generation `token` was issued for to `tenant`, under the current or
    /// the previous secret; `None` when we never issued it. Compares in
    /// constant time. Whether the tenant still accepts that generation is for
    /// the caller to decide from the tenant row.
    pub fn verify(&self, tenant: &TenantId, token: &str) -> Option<Generation> {
        let (generation, tag) = match token.split_once(SEPARATOR) {
            None => (Generation::ORIGINAL, token),
            Some((n, tag)) => (Generation::parse(n)?, tag),
        };
        let presented = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(tag)
            .ok()?;
        let under = |secret: &SecretString| {
            mac(secret, tenant, generation)
                .verify_slice(&presented)
                .is_ok()
        };
        // Evaluate both so timing does not reveal which secret matched.
        let current = under(&self.current);
        let previous = self.previous.as_ref().is_some_and(under);
        (current | previous).then_some(generation)
    }

    /// The generation-0 webhook URL for `tenant`'s bridge.
    pub fn webhook_url(&self, public_base_url: &str, tenant: &TenantId) -> String {
        self.webhook_url_at(public_base_url, tenant, Generation::ORIGINAL)
    }

    /// The full webhook URL to give the provider for `tenant`'s bridge at `generation`.
    pub fn webhook_url_at(
        &self,
        public_base_url: &str,
        tenant: &TenantId,
        generation: Generation,
    ) -> String {
        format!(
            "{}{HOOK_PATH_PREFIX}/{tenant}/{}",
            public_base_url.trim_end_matches('/'),
            self.token_at(tenant, generation)
        )
    }
}

/// `url` with the token after `/hook/<tenant>/` replaced: what may be printed.
pub fn redact_webhook_url(url: &str) -> String {
    let Some(at) = url.find(&format!("{HOOK_PATH_PREFIX}/")) else {
        return url.to_owned();
    };
    let (base, path) = url.split_at(at + HOOK_PATH_PREFIX.len() + 1);
    match path.split_once('/') {
        Some((tenant, token)) => {
            let generation = token
                .split_once(SEPARATOR)
                .map(|(n, _)| format!("{n}{SEPARATOR}"))
                .unwrap_or_default();
            format!("{base}{tenant}/{generation}[redacted]")
        }
        None => url.to_owned(),
    }
}

fn mac(secret: &SecretString, tenant: &TenantId, generation: Generation) -> Hmac<Sha256> {
    // HMAC accepts keys of any length; new_from_slice cannot fail for it.
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.expose_secret().as_bytes())
        .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
    if generation == Generation::ORIGINAL {
        mac.update(CONTEXT_V1);
        mac.update(tenant.as_str().as_bytes());
    } else {
        // A tenant id has no `:`, so tenant and generation cannot run together.
        mac.update(CONTEXT_V2);
        mac.update(tenant.as_str().as_bytes());
        mac.update(b":");
        mac.update(generation.to_string().as_bytes());
    }
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

    fn g(n: u32) -> Generation {
        Generation::new(n)
    }

    #[test]
    fn a_token_is_valid_only_for_its_own_tenant() {
        let k = keys("s3cret", None);
        let token = k.token_for(&t("acme"));
        assert_eq!(k.verify(&t("acme"), &token), Some(Generation::ORIGINAL));
        assert_eq!(k.verify(&t("globex"), &token), None);
        let rotated = k.token_at(&t("acme"), g(3));
        assert_eq!(k.verify(&t("acme"), &rotated), Some(g(3)));
        assert_eq!(k.verify(&t("globex"), &rotated), None);
    }

    #[test]
    fn generation_zero_is_the_token_issued_before_rotation_existed() {
        // HMAC-SHA256("s3cret", "switchyard-webhook-token-v1:acme"), as the
        // previous release computed it: URLs already at the provider stay valid.
        let legacy = {
            let mut m = <Hmac<Sha256> as Mac>::new_from_slice(b"s3cret").unwrap();
            m.update(b"switchyard-webhook-token-v1:acme");
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(m.finalize().into_bytes())
        };
        let k = keys("s3cret", None);
        assert_eq!(k.token_for(&t("acme")), legacy);
        assert_eq!(k.token_at(&t("acme"), Generation::ORIGINAL), legacy);
        assert_eq!(k.verify(&t("acme"), &legacy), Some(Generation::ORIGINAL));
    }

    #[test]
    fn each_generation_has_its_own_token_and_names_itself() {
        let k = keys("s3cret", None);
        let tokens: Vec<String> = (0..4).map(|n| k.token_at(&t("acme"), g(n))).collect();
        for (n, token) in tokens.iter().enumerate() {
            assert_eq!(k.verify(&t("acme"), token), Some(g(n as u32)), "{n}");
            for (m, other) in tokens.iter().enumerate() {
                assert_eq!(token == other, n == m);
            }
        }
        assert!(tokens[2].starts_with("2."), "{}", tokens[2]);
    }

    #[test]
    fn a_mac_moved_to_another_generation_is_refused() {
        let k = keys("s3cret", None);
        let (_, tag) = k
            .token_at(&t("acme"), g(1))
            .split_once('.')
            .map(|(n, tag)| (n.to_owned(), tag.to_owned()))
            .unwrap();
        for forged in [
            format!("2.{tag}"),
            format!("01.{tag}"),
            format!("+1.{tag}"),
            format!("0.{tag}"),
            tag.clone(),
        ] {
            assert_eq!(k.verify(&t("acme"), &forged), None, "{forged}");
        }
        let original = k.token_for(&t("acme"));
        assert_eq!(k.verify(&t("acme"), &format!("1.{original}")), None);
    }

    #[test]
    fn rotation_accepts_the_previous_secret_and_forgets_older_ones() {
        for generation in [g(0), g(5)] {
            let old = keys("old", None).token_at(&t("acme"), generation);
            assert_eq!(
                keys("new", Some("old")).verify(&t("acme"), &old),
                Some(generation)
            );
            assert_eq!(keys("newer", Some("new")).verify(&t("acme"), &old), None);
        }
    }

    #[test]
    fn garbage_tokens_are_refused() {
        let k = keys("s3cret", None);
        for bad in [
            "",
            "!!!",
            "AAAA",
            &"A".repeat(500),
            ".",
            "1.",
            ".AAAA",
            "99999999999.AAAA",
            "1.2.AAAA",
        ] {
            assert_eq!(k.verify(&t("acme"), bad), None, "{bad}");
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
        let rotated = k.webhook_url_at("https://ingest.example", &t("acme"), g(2));
        assert_eq!(
            rotated,
            format!(
                "https://ingest.example/hook/acme/{}",
                k.token_at(&t("acme"), g(2))
            )
        );
    }

    #[test]
    fn a_redacted_url_keeps_tenant_and_generation_but_not_the_mac() {
        let k = keys("s3cret", None);
        for n in [0, 7] {
            let url = k.webhook_url_at("https://ingest.example/base", &t("acme"), g(n));
            let shown = redact_webhook_url(&url);
            let token = k.token_at(&t("acme"), g(n));
            let mac = token.rsplit('.').next().unwrap();
            assert!(!shown.contains(mac), "{shown}");
            let prefix = if n == 0 {
                String::new()
            } else {
                format!("{n}.")
            };
            assert_eq!(
                shown,
                format!("https://ingest.example/base/hook/acme/{prefix}[redacted]")
            );
        }
    }

    #[test]
    fn debug_output_hides_the_secrets() {
        let k = keys("hunter2", Some("hunter3"));
        let shown = format!("{k:?}");
        assert!(!shown.contains("hunter"), "{shown}");
    }
}
