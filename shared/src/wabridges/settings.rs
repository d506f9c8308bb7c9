//! Where the adapter's settings come from: `WA_API_URL`, `WA_API_KEY`,
//! `SWITCHYARD_WA_TIMEOUT` and the classification rules, read through
//! [`Env`] and checked once at start-up.

use std::time::Duration;

use secrecy::SecretString;

use super::classify::ClassifyRules;
use crate::config::{ConfigError, Env};

/// The provider's address when `WA_API_URL` is unset (the local simulator).
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:8090";
/// How long one provider call may take when `SWITCHYARD_WA_TIMEOUT` is unset.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How to reach WA Bridges. `Debug` never shows the key.
#[derive(Debug, Clone)]
pub struct WaBridgesSettings {
    /// `WA_API_URL` (default `http://127.0.0.1:8090`), without a trailing `/`.
    pub base_url: String,
    /// `WA_API_KEY`: the account's one key, sent as `Authorization: Bearer`.
    pub api_key: SecretString,
    /// `SWITCHYARD_WA_TIMEOUT` (default 10s): the whole request, connect to last byte.
    pub timeout: Duration,
    /// How undocumented answers (restriction, disconnected bridge) are recognised.
    pub rules: ClassifyRules,
}

impl WaBridgesSettings {
    /// Settings for `base_url` and `api_key` with the default timeout and rules.
    pub fn new(base_url: impl Into<String>, api_key: SecretString) -> Self {
        Self {
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            api_key,
            timeout: DEFAULT_TIMEOUT,
            rules: ClassifyRules::default(),
        }
    }

    /// Reads the settings; `WA_API_KEY` is required.
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let base_url = env.string("WA_API_URL", DEFAULT_API_URL);
        let parsed = reqwest::Url::parse(base_url.trim()).map_err(|e| ConfigError {
            variable: "WA_API_URL".to_owned(),
            reason: format!("{e} (got {base_url:?})"),
        })?;
        if !matches!(parsed.scheme(), "http" | "https") || parsed.query().is_some() {
            return Err(ConfigError {
                variable: "WA_API_URL".to_owned(),
                reason: format!("expected an http(s) URL without a query (got {base_url:?})"),
            });
        }
        let timeout = env.duration("SWITCHYARD_WA_TIMEOUT", DEFAULT_TIMEOUT)?;
        if timeout.is_zero() {
            return Err(ConfigError {
                variable: "SWITCHYARD_WA_TIMEOUT".to_owned(),
                reason: "must be greater than zero".to_owned(),
            });
        }
        Ok(Self {
            base_url: base_url.trim().trim_end_matches('/').to_owned(),
            api_key: env.required_secret("WA_API_KEY")?,
            timeout,
            rules: ClassifyRules::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn defaults_point_at_the_local_simulator() {
        let s = WaBridgesSettings::from_env(&Env::from_map([("WA_API_KEY", "sk_x")])).unwrap();
        assert_eq!(s.base_url, DEFAULT_API_URL);
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        assert_eq!(s.api_key.expose_secret(), "sk_x");
    }

    #[test]
    fn the_key_is_required_and_never_printed() {
        let err =
            WaBridgesSettings::from_env(&Env::from_map::<[(&str, &str); 0], _, _>([])).unwrap_err();
        assert_eq!(err.variable, "WA_API_KEY");
        let s =
            WaBridgesSettings::from_env(&Env::from_map([("WA_API_KEY", "sk_hunter2")])).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn a_bad_url_or_timeout_names_its_variable() {
        let env = Env::from_map([("WA_API_KEY", "k"), ("WA_API_URL", "ftp://x")]);
        assert_eq!(
            WaBridgesSettings::from_env(&env).unwrap_err().variable,
            "WA_API_URL"
        );
        let env = Env::from_map([("WA_API_KEY", "k"), ("SWITCHYARD_WA_TIMEOUT", "0s")]);
        assert_eq!(
            WaBridgesSettings::from_env(&env).unwrap_err().variable,
            "SWITCHYARD_WA_TIMEOUT"
        );
    }

    #[test]
    fn a_trailing_slash_is_dropped_from_the_base_url() {
        let env = Env::from_map([("WA_API_KEY", "k"), ("WA_API_URL", "https://wa.example/")]);
        assert_eq!(
            WaBridgesSettings::from_env(&env).unwrap().base_url,
            "https://wa.example"
        );
    }
}
