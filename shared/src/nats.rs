//! Connecting to NATS, and refusing a server that would break isolation.
//!
//! nats-server 2.9 accepts consumer configurations it does not understand and
//! silently drops the fields it ignores: a filtered consumer becomes
//! unfiltered, pinning and pause vanish. Every tenant boundary we build on
//! JetStream would then fail without a sound, so every service checks the
//! server's version at connect and stops with a clear error below 2.12.5.

use std::{fmt, time::Duration};

use secrecy::ExposeSecret as _;

use crate::config::{NatsAuth, NatsSettings};

/// The oldest nats-server Switchyard runs against.
pub const MIN_SERVER_VERSION: ServerVersion = ServerVersion {
    major: 2,
    minor: 12,
    patch: 5,
};

/// A `major.minor.patch` server version (pre-release suffixes are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct ServerVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl ServerVersion {
    /// Parses `2.15.1`, `v2.12.5`, `2.11.0-RC.1`.
    pub fn parse(raw: &str) -> Option<Self> {
        let core = raw.trim().trim_start_matches('v');
        let core = core.split(['-', '+']).next()?;
        let mut parts = core.split('.').map(|p| p.parse::<u32>().ok());
        Some(Self {
            major: parts.next()??,
            minor: parts.next()??,
            patch: parts.next().unwrap_or(Some(0))?,
        })
    }
}

impl fmt::Display for ServerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Why we could not get a usable NATS connection.
#[derive(Debug, thiserror::Error)]
pub enum NatsConnectError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect {
        url: String,
        #[source]
        source: async_nats::ConnectError,
    },
    #[error(
        "nats-server {found} at {url} is too old: Switchyard requires nats-server >= {required} \
         (older servers silently ignore consumer filters and pinning, which would break tenant isolation)"
    )]
    TooOld {
        url: String,
        found: String,
        required: ServerVersion,
    },
    #[error(
        "nats-server at {url} reported an unreadable version {found:?}; requires >= {required}"
    )]
    UnreadableVersion {
        url: String,
        found: String,
        required: ServerVersion,
    },
    #[error("invalid NATS_URL {url}: {reason}")]
    InvalidUrl { url: String, reason: String },
    #[error("nats-server at {url} has JetStream disabled; start it with -js")]
    NoJetStream { url: String },
}

/// Checks a reported server version against [`MIN_SERVER_VERSION`].
pub fn check_server_version(url: &str, reported: &str) -> Result<ServerVersion, NatsConnectError> {
    let version =
        ServerVersion::parse(reported).ok_or_else(|| NatsConnectError::UnreadableVersion {
            url: url.to_owned(),
            found: reported.to_owned(),
            required: MIN_SERVER_VERSION,
        })?;
    if version < MIN_SERVER_VERSION {
        return Err(NatsConnectError::TooOld {
            url: url.to_owned(),
            found: reported.to_owned(),
            required: MIN_SERVER_VERSION,
        });
    }
    Ok(version)
}

/// Connects, then refuses servers that are too old or lack JetStream.
/// `client_name` shows up in the server's connection list.
pub async fn connect(
    settings: &NatsSettings,
    client_name: &str,
) -> Result<async_nats::Client, NatsConnectError> {
    crate::tls::install_crypto_provider();
    let mut options = async_nats::ConnectOptions::new()
        .name(client_name)
        .connection_timeout(Duration::from_secs(5))
        .request_timeout(Some(Duration::from_secs(10)))
        .event_callback(|event| async move {
            tracing::info!(nats.event = %event, "nats connection event");
        });
    match &settings.auth {
        NatsAuth::None => {}
        NatsAuth::UserPassword { user, password } => {
            options = options.user_and_password(user.clone(), password.expose_secret().to_owned());
        }
    }
    if let Some(ca) = &settings.ca_file {
        options = options.add_root_certificates(ca.into()).require_tls(true);
    }
    // NATS_URL may list several servers of a cluster, comma-separated.
    let servers: Vec<async_nats::ServerAddr> = settings
        .url
        .split(',')
        .map(|u| u.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|e| NatsConnectError::InvalidUrl {
            url: redact_url(&settings.url),
            reason: format!("{e}"),
        })?;
    let client = options
        .connect(servers)
        .await
        .map_err(|source| NatsConnectError::Connect {
            url: redact_url(&settings.url),
            source,
        })?;
    let info = client.server_info();
    check_server_version(&redact_url(&settings.url), &info.version)?;
    if !info.jetstream {
        return Err(NatsConnectError::NoJetStream {
            url: redact_url(&settings.url),
        });
    }
    tracing::info!(nats.version = %info.version, nats.server = %info.server_name, "connected to NATS");
    Ok(client)
}

/// Removes any `user:password@` part from a URL before it is logged.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme_end), Some(at)) if at > scheme_end => {
            format!("{}://***@{}", &url[..scheme_end], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_below_the_minimum_are_refused_and_the_error_names_it() {
        for old in ["2.9.10", "2.10.29", "2.12.4", "v2.11.0-RC.1", "1.99.99"] {
            let err = check_server_version("nats://x", old).unwrap_err();
            assert!(err.to_string().contains(">= 2.12.5"), "{old}: {err}");
        }
    }

    #[test]
    fn supported_versions_are_accepted() {
        for ok in ["2.12.5", "2.15.1", "v2.13.0", "3.0.0-beta", "2.12.10"] {
            assert!(check_server_version("nats://x", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn garbage_versions_are_refused() {
        assert!(check_server_version("nats://x", "banana").is_err());
        assert!(check_server_version("nats://x", "").is_err());
    }

    #[test]
    fn credentials_are_redacted_from_urls() {
        assert_eq!(redact_url("nats://u:p@host:4222"), "nats://***@host:4222");
        assert_eq!(redact_url("nats://host:4222"), "nats://host:4222");
    }
}
