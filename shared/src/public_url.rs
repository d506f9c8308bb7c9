//! The public base URL of ingest (`SWITCHYARD_PUBLIC_URL`): every bridge's
//! webhook URL starts with it, and the URL carries the tenant's token. Over
//! plain `http` anyone on the path between the provider and us reads the
//! token, so the base must be `https`, except where nothing leaves the
//! machine (a loopback host: the local demo scripts and the tests) or where
//! a development setting says so (`SWITCHYARD_PUBLIC_URL_ALLOW_HTTP`, e.g.
//! compose's in-network `http://ingest:8080`). Parsed once, so a base that
//! is not allowed cannot reach provisioning.

use std::net::IpAddr;

use crate::config::{ConfigError, Env};

/// The variable holding the base URL.
pub const PUBLIC_URL_VAR: &str = "SWITCHYARD_PUBLIC_URL";
/// The development setting that allows a plain `http` base on any host.
pub const ALLOW_HTTP_VAR: &str = "SWITCHYARD_PUBLIC_URL_ALLOW_HTTP";

/// A checked public base URL, without a trailing `/`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicUrl(String);

/// Why a base URL was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublicUrlError {
    #[error("is not an absolute http(s) URL")]
    Invalid,
    #[error("must not carry a query, fragment or user info (the webhook path is appended to it)")]
    Extra,
    #[error(
        "uses plain http on a host that is not loopback: the webhook tokens would cross the network unencrypted; use https, or set {ALLOW_HTTP_VAR}=true in development"
    )]
    PlainHttp,
}

impl PublicUrl {
    /// Checks `raw`; `allow_http` is the development setting.
    pub fn parse(raw: &str, allow_http: bool) -> Result<Self, PublicUrlError> {
        let url = reqwest::Url::parse(raw.trim()).map_err(|_| PublicUrlError::Invalid)?;
        if url.cannot_be_a_base() || url.host().is_none() {
            return Err(PublicUrlError::Invalid);
        }
        if url.query().is_some()
            || url.fragment().is_some()
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return Err(PublicUrlError::Extra);
        }
        match url.scheme() {
            "https" => {}
            "http" if allow_http || is_loopback(&url) => {}
            "http" => return Err(PublicUrlError::PlainHttp),
            _ => return Err(PublicUrlError::Invalid),
        }
        Ok(Self(url.as_str().trim_end_matches('/').to_owned()))
    }

    /// Reads [`PUBLIC_URL_VAR`] (required) and [`ALLOW_HTTP_VAR`] (default false).
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let allow_http = env.flag(ALLOW_HTTP_VAR, false)?;
        let raw = env.raw(PUBLIC_URL_VAR).ok_or_else(|| ConfigError {
            variable: PUBLIC_URL_VAR.to_owned(),
            reason: "is required and not set (the public base URL of ingest, e.g. https://ingest.example)"
                .to_owned(),
        })?;
        Self::parse(&raw, allow_http).map_err(|e| ConfigError {
            variable: PUBLIC_URL_VAR.to_owned(),
            reason: e.to_string(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for PublicUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// `localhost` (and its subdomains) or a loopback address literal.
fn is_loopback(url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = literal.parse::<IpAddr>() {
        return ip.is_loopback();
    }
    let name = host.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_is_accepted_and_its_trailing_slash_dropped() {
        let url = PublicUrl::parse("https://ingest.example/base/", false).unwrap();
        assert_eq!(url.as_str(), "https://ingest.example/base");
        assert_eq!(
            PublicUrl::parse("https://ingest.example", false)
                .unwrap()
                .as_str(),
            "https://ingest.example"
        );
    }

    #[test]
    fn plain_http_is_refused_outside_loopback_unless_development_allows_it() {
        for raw in [
            "http://ingest.example",
            "http://10.0.0.5:8080",
            "http://ingest:8080",
            "http://127.0.0.1.nip.io",
            "http://[::ffff:10.0.0.1]",
        ] {
            assert_eq!(
                PublicUrl::parse(raw, false),
                Err(PublicUrlError::PlainHttp),
                "{raw}"
            );
            assert!(
                PublicUrl::parse(raw, true).is_ok(),
                "{raw} allowed in development"
            );
        }
    }

    #[test]
    fn plain_http_on_loopback_is_accepted() {
        for raw in [
            "http://127.0.0.1:8080",
            "http://127.3.2.1",
            "http://[::1]:9000",
            "http://localhost:8080",
            "http://ingest.localhost",
        ] {
            assert!(PublicUrl::parse(raw, false).is_ok(), "{raw}");
        }
    }

    #[test]
    fn other_schemes_and_decorated_urls_are_refused() {
        for (raw, err) in [
            ("ftp://ingest.example", PublicUrlError::Invalid),
            ("ingest.example", PublicUrlError::Invalid),
            ("", PublicUrlError::Invalid),
            ("https://ingest.example/?x=1", PublicUrlError::Extra),
            ("https://user:pw@ingest.example", PublicUrlError::Extra),
            ("https://ingest.example/#top", PublicUrlError::Extra),
        ] {
            assert_eq!(PublicUrl::parse(raw, true), Err(err), "{raw}");
        }
    }

    #[test]
    fn the_environment_names_the_variable_and_reads_the_development_flag() {
        let env = |pairs: Vec<(&str, &str)>| PublicUrl::from_env(&Env::from_map(pairs));
        let err = env(vec![]).unwrap_err();
        assert_eq!(err.variable, PUBLIC_URL_VAR);
        let err = env(vec![(PUBLIC_URL_VAR, "http://ingest:8080")]).unwrap_err();
        assert!(err.to_string().contains(ALLOW_HTTP_VAR), "{err}");
        assert!(
            env(vec![
                (PUBLIC_URL_VAR, "http://ingest:8080"),
                (ALLOW_HTTP_VAR, "true")
            ])
            .is_ok()
        );
        let err = env(vec![
            (PUBLIC_URL_VAR, "https://ingest.example"),
            (ALLOW_HTTP_VAR, "perhaps"),
        ])
        .unwrap_err();
        assert_eq!(err.variable, ALLOW_HTTP_VAR);
    }
}
