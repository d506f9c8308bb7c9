//! The Cloud API settings (docs/cloud-api.md section 9), read through
//! [`Env`] and checked once at start-up. The Graph API version is one
//! setting for every call: an unversioned call would use whatever the App
//! Dashboard pins.

use std::time::Duration;

use secrecy::SecretString;

use super::{signature::AppSecrets, token_box::TokenKeys};
use crate::config::{ConfigError, Env};

pub const DEFAULT_API_URL: &str = "https://graph.facebook.com";
pub const DEFAULT_API_VERSION: &str = "v25.0";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
/// Meta's payloads reach 3 MB; this leaves room above it.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 * 1024 * 1024;

/// How to call the Graph API.
#[derive(Debug, Clone)]
pub struct CloudApiSettings {
    /// `SWITCHYARD_CLOUD_API_URL`: scheme, host and port, no path.
    pub base_url: String,
    /// `SWITCHYARD_CLOUD_API_VERSION`, e.g. `v25.0`.
    pub version: String,
    /// `SWITCHYARD_CLOUD_TIMEOUT`: the whole request.
    pub timeout: Duration,
}

impl CloudApiSettings {
    pub fn new(base_url: impl Into<String>) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            version: DEFAULT_API_VERSION.to_owned(),
            timeout: DEFAULT_TIMEOUT,
        }
    }

    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let bad = |variable: &str, reason: String| ConfigError {
            variable: variable.to_owned(),
            reason,
        };
        let base_url = env.string("SWITCHYARD_CLOUD_API_URL", DEFAULT_API_URL);
        let parsed = reqwest::Url::parse(base_url.trim()).map_err(|e| {
            bad(
                "SWITCHYARD_CLOUD_API_URL",
                format!("{e} (got {base_url:?})"),
            )
        })?;
        if !matches!(parsed.scheme(), "http" | "https")
            || parsed.query().is_some()
            || !parsed.path().trim_matches('/').is_empty()
        {
            return Err(bad(
                "SWITCHYARD_CLOUD_API_URL",
                format!("expected an http(s) URL without a path or query (got {base_url:?})"),
            ));
        }
        let version = env.string("SWITCHYARD_CLOUD_API_VERSION", DEFAULT_API_VERSION);
        if !valid_version(&version) {
            return Err(bad(
                "SWITCHYARD_CLOUD_API_VERSION",
                format!("expected vMAJOR.MINOR, e.g. v25.0 (got {version:?})"),
            ));
        }
        let timeout = env.duration("SWITCHYARD_CLOUD_TIMEOUT", DEFAULT_TIMEOUT)?;
        if timeout.is_zero() {
            return Err(bad(
                "SWITCHYARD_CLOUD_TIMEOUT",
                "must be greater than zero".to_owned(),
            ));
        }
        Ok(Self {
            base_url: base_url.trim().trim_end_matches('/').to_owned(),
            version,
            timeout,
        })
    }
}

fn valid_version(v: &str) -> bool {
    let Some(rest) = v.strip_prefix('v') else {
        return false;
    };
    let Some((major, minor)) = rest.split_once('.') else {
        return false;
    };
    [major, minor]
        .iter()
        .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// What ingest needs for the Cloud webhook route; the route exists only
/// when both the app secret and the verify token are set.
#[derive(Debug, Clone)]
pub struct CloudWebhookSettings {
    /// `SWITCHYARD_CLOUD_APP_SECRET` and `SWITCHYARD_CLOUD_APP_SECRET_PREVIOUS`.
    pub secrets: AppSecrets,
    /// `SWITCHYARD_CLOUD_VERIFY_TOKEN`: the handshake's token.
    pub verify_token: SecretString,
    /// `SWITCHYARD_CLOUD_MAX_BODY_BYTES`.
    pub max_body_bytes: usize,
}

impl CloudWebhookSettings {
    /// Whether `offered` is the handshake's verify token (constant time).
    pub fn verify_token_matches(&self, offered: &str) -> bool {
        use secrecy::ExposeSecret as _;
        use subtle::ConstantTimeEq as _;
        offered
            .as_bytes()
            .ct_eq(self.verify_token.expose_secret().as_bytes())
            .into()
    }

    /// `None` when the Cloud channel is not configured (neither secret set);
    /// an error when only one of the two is.
    pub fn from_env(env: &Env) -> Result<Option<Self>, ConfigError> {
        let secret = env.secret("SWITCHYARD_CLOUD_APP_SECRET");
        let verify = env.secret("SWITCHYARD_CLOUD_VERIFY_TOKEN");
        let (secret, verify_token) = match (secret, verify) {
            (None, None) => return Ok(None),
            (Some(s), Some(v)) => (s, v),
            (None, Some(_)) => {
                return Err(ConfigError {
                    variable: "SWITCHYARD_CLOUD_APP_SECRET".to_owned(),
                    reason: "required when SWITCHYARD_CLOUD_VERIFY_TOKEN is set".to_owned(),
                });
            }
            (Some(_), None) => {
                return Err(ConfigError {
                    variable: "SWITCHYARD_CLOUD_VERIFY_TOKEN".to_owned(),
                    reason: "required when SWITCHYARD_CLOUD_APP_SECRET is set".to_owned(),
                });
            }
        };
        let previous = env.secret("SWITCHYARD_CLOUD_APP_SECRET_PREVIOUS");
        let max_body_bytes = env.bounded(
            "SWITCHYARD_CLOUD_MAX_BODY_BYTES",
            DEFAULT_MAX_BODY_BYTES,
            1024..=64 * 1024 * 1024,
        )?;
        Ok(Some(Self {
            secrets: AppSecrets::new(secret, previous),
            verify_token,
            max_body_bytes,
        }))
    }
}

/// `SWITCHYARD_CLOUD_TOKEN_KEYS`, when set (the sender and the CLI need it
/// for Cloud API tenants; without it their sends are held).
pub fn token_keys_from_env(env: &Env) -> Result<Option<TokenKeys>, ConfigError> {
    env.secret(super::token_box::VARIABLE)
        .map(|raw| TokenKeys::parse(&raw))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_validation() {
        let s = CloudApiSettings::from_env(&Env::from_map::<[(&str, &str); 0], _, _>([])).unwrap();
        assert_eq!(
            (s.base_url.as_str(), s.version.as_str()),
            (DEFAULT_API_URL, "v25.0")
        );
        for (var, value) in [
            ("SWITCHYARD_CLOUD_API_URL", "https://graph.example/v1"),
            ("SWITCHYARD_CLOUD_API_URL", "ftp://graph.example"),
            ("SWITCHYARD_CLOUD_API_VERSION", "25.0"),
            ("SWITCHYARD_CLOUD_API_VERSION", "v25"),
            ("SWITCHYARD_CLOUD_TIMEOUT", "0s"),
        ] {
            let err = CloudApiSettings::from_env(&Env::from_map([(var, value)])).unwrap_err();
            assert_eq!(err.variable, var, "{value:?}");
        }
    }

    #[test]
    fn the_webhook_route_needs_both_secrets_or_neither() {
        let none = Env::from_map::<[(&str, &str); 0], _, _>([]);
        assert!(CloudWebhookSettings::from_env(&none).unwrap().is_none());
        let half = Env::from_map([("SWITCHYARD_CLOUD_APP_SECRET", "s3cret-app")]);
        assert_eq!(
            CloudWebhookSettings::from_env(&half).unwrap_err().variable,
            "SWITCHYARD_CLOUD_VERIFY_TOKEN"
        );
        let both = Env::from_map([
            ("SWITCHYARD_CLOUD_APP_SECRET", "s3cret-app"),
            ("SWITCHYARD_CLOUD_VERIFY_TOKEN", "v3rify"),
        ]);
        let s = CloudWebhookSettings::from_env(&both).unwrap().unwrap();
        let shown = format!("{s:?}");
        assert!(
            !shown.contains("s3cret-app") && !shown.contains("v3rify"),
            "{shown}"
        );
    }
}
