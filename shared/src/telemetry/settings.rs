//! Where traces go: the standard OpenTelemetry variables, read through
//! [`crate::config::Env`] like every other setting so they are validated at
//! start-up and documented in `docs/configuration.md`.

use std::time::Duration;

use crate::config::{ConfigError, Env};

/// `OTEL_EXPORTER_OTLP_ENDPOINT`, `OTEL_SERVICE_NAME`.
#[derive(Debug, Clone, Default)]
pub struct TraceSettings {
    /// The collector's OTLP/HTTP base URL; spans go to `<base>/v1/traces`.
    /// None: nothing is exported.
    endpoint: Option<reqwest::Url>,
    /// The `service.name` resource attribute; the binary's name when unset.
    service_name: Option<String>,
    /// How long one export may take (`OTEL_EXPORTER_OTLP_TIMEOUT`, ms).
    pub export_timeout: Duration,
}

impl TraceSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let endpoint = match env.raw("OTEL_EXPORTER_OTLP_ENDPOINT") {
            None => None,
            Some(raw) => Some(signal_url(&raw).map_err(|reason| ConfigError {
                variable: "OTEL_EXPORTER_OTLP_ENDPOINT".to_owned(),
                reason,
            })?),
        };
        let timeout_ms = env.bounded("OTEL_EXPORTER_OTLP_TIMEOUT", 10_000u64, 1..=600_000)?;
        Ok(Self {
            endpoint,
            service_name: env.raw("OTEL_SERVICE_NAME"),
            export_timeout: Duration::from_millis(timeout_ms),
        })
    }

    /// The traces URL, when exporting.
    pub fn endpoint(&self) -> Option<&reqwest::Url> {
        self.endpoint.as_ref()
    }

    /// The `service.name` to report for the binary named `default`.
    pub fn service_name(&self, default: &'static str) -> String {
        self.service_name
            .clone()
            .unwrap_or_else(|| default.to_owned())
    }
}

/// `<base>/v1/traces`, as the OTLP specification builds a signal's URL from
/// the common endpoint variable.
fn signal_url(base: &str) -> Result<reqwest::Url, String> {
    let url = reqwest::Url::parse(base.trim()).map_err(|e| format!("{e} (got {base:?})"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
        return Err(format!(
            "expected an http(s) URL such as http://collector:4318 (got {base:?})"
        ));
    }
    let path = format!("{}/v1/traces", url.path().trim_end_matches('/'));
    let mut url = url;
    url.set_path(&path);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_traces_path_is_appended_to_the_base_url() {
        let url = |base| signal_url(base).map(|u| u.to_string());
        assert_eq!(
            url("http://otel:4318").as_deref(),
            Ok("http://otel:4318/v1/traces")
        );
        assert_eq!(
            url("https://c.example/otlp/").as_deref(),
            Ok("https://c.example/otlp/v1/traces")
        );
        assert!(url("otel:4318").is_err());
        assert!(url("not a url").is_err());
    }

    #[test]
    fn exporting_is_off_unless_an_endpoint_is_set() {
        let unset = TraceSettings::from_env(&Env::from_map([("OTEL_SERVICE_NAME", "")])).unwrap();
        assert!(unset.endpoint().is_none());
        assert_eq!(unset.service_name("switchyard-router"), "switchyard-router");

        let set = TraceSettings::from_env(&Env::from_map([
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://127.0.0.1:4318"),
            ("OTEL_SERVICE_NAME", "router-eu"),
        ]))
        .unwrap();
        assert!(set.endpoint().is_some());
        assert_eq!(set.service_name("switchyard-router"), "router-eu");
    }
}
