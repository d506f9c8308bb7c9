//! What a Cloud API simulator is told at start: our app's identity and
//! secrets, where webhooks go, and the clock. Meta's limits are hours and
//! seconds; [`CloudClock`] shrinks them so that tests run in seconds.
//! `Debug` never shows the app secret or the verify token.

use std::{net::SocketAddr, time::Duration};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Every duration of Meta's behaviour the simulator reproduces, in one place.
/// [`CloudClock::meta`] holds the documented values; tests shrink them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CloudClock {
    /// Waits between webhook attempts after a non-200 answer: attempt `i + 1`
    /// follows `redelivery_delays[i]` after attempt `i` failed. Its length is
    /// the number of redeliveries (Meta: "decreasing frequency … for up to 7
    /// days", schedule unknown).
    #[serde(with = "millis_vec")]
    pub redelivery_delays: Vec<Duration>,
    /// The customer-service window (Meta: 24 h from the user's last message).
    #[serde(with = "millis")]
    pub window: Duration,
    /// Pair rate: one token per `pair_interval` per (number, user) (Meta: 6 s).
    #[serde(with = "millis")]
    pub pair_interval: Duration,
    /// Pair rate: the bucket's capacity (Meta: bursts of up to 45).
    pub pair_burst: u32,
    /// Throughput: a number may accept `mps` sends per this sliding window
    /// (Meta: one second). Tests lengthen it to make "too fast" deterministic.
    #[serde(with = "millis")]
    pub throughput_window: Duration,
    /// How long an Embedded Signup code can be exchanged (Meta: 30 s).
    #[serde(with = "millis")]
    pub signup_code_ttl: Duration,
    /// The gap between the status webhooks of one accepted send.
    #[serde(with = "millis")]
    pub status_spacing: Duration,
}

impl CloudClock {
    /// Meta's documented values; the redelivery schedule is a guess spread over 7 days.
    pub fn meta() -> Self {
        let minutes = |m: u64| Duration::from_secs(60 * m);
        Self {
            redelivery_delays: vec![
                Duration::ZERO,
                minutes(1),
                minutes(5),
                minutes(30),
                minutes(120),
                minutes(720),
                minutes(1440),
                minutes(1440),
                minutes(1440),
                minutes(1440),
                minutes(1440),
                minutes(1440),
            ],
            window: Duration::from_secs(24 * 3600),
            pair_interval: Duration::from_secs(6),
            pair_burst: 45,
            throughput_window: Duration::from_secs(1),
            signup_code_ttl: Duration::from_secs(30),
            status_spacing: Duration::from_millis(200),
        }
    }

    /// Meta's shape on a test scale: redeliveries after 50/100/200/400 ms, a
    /// 60 s window, a 1 s pair interval, a 3 s code lifetime, statuses 10 ms apart.
    pub fn compressed() -> Self {
        Self {
            redelivery_delays: [50, 100, 200, 400]
                .into_iter()
                .map(Duration::from_millis)
                .collect(),
            window: Duration::from_secs(60),
            pair_interval: Duration::from_secs(1),
            pair_burst: 45,
            throughput_window: Duration::from_secs(1),
            signup_code_ttl: Duration::from_secs(3),
            status_spacing: Duration::from_millis(10),
        }
    }
}

impl Default for CloudClock {
    fn default() -> Self {
        Self::compressed()
    }
}

/// How a Cloud API simulator behaves. Build with [`CloudSimConfig::new`] and adjust fields.
#[derive(Debug, Clone)]
pub struct CloudSimConfig {
    /// Where to listen; port 0 picks a free port (tests).
    pub bind: SocketAddr,
    /// Our Meta app's id (`client_id` of the token exchange).
    pub app_id: String,
    /// Signs every webhook and authenticates the token exchange.
    pub app_secret: SecretString,
    /// What the GET handshake sends as `hub.verify_token`.
    pub verify_token: SecretString,
    /// Where webhooks go (the App Dashboard's Callback URL); settable later.
    pub webhook_url: Option<String>,
    /// How long a webhook POST may take before it counts as failed.
    pub webhook_timeout: Duration,
    pub clock: CloudClock,
}

impl CloudSimConfig {
    /// `127.0.0.1:0`, no webhook URL yet, the compressed clock.
    pub fn new(
        app_id: impl Into<String>,
        app_secret: impl Into<String>,
        verify_token: impl Into<String>,
    ) -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 0)),
            app_id: app_id.into(),
            app_secret: SecretString::from(app_secret.into()),
            verify_token: SecretString::from(verify_token.into()),
            webhook_url: None,
            webhook_timeout: Duration::from_secs(5),
            clock: CloudClock::compressed(),
        }
    }
}

/// Durations as integer milliseconds in JSON (the control API).
pub(crate) mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

mod millis_vec {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer, ser::SerializeSeq};

    pub fn serialize<S: Serializer>(ds: &[Duration], s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(ds.len()))?;
        for d in ds {
            seq.serialize_element(&u64::try_from(d.as_millis()).unwrap_or(u64::MAX))?;
        }
        seq.end()
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Duration>, D::Error> {
        Vec::<u64>::deserialize(d).map(|v| v.into_iter().map(Duration::from_millis).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_the_app_secret_or_the_verify_token() {
        let config = CloudSimConfig::new("app", "s3cr3t-app", "v3rify-tok");
        let shown = format!("{config:?}");
        assert!(shown.contains("app"));
        assert!(
            !shown.contains("s3cr3t-app") && !shown.contains("v3rify-tok"),
            "{shown}"
        );
    }

    #[test]
    fn the_clock_travels_as_milliseconds() {
        let json = serde_json::to_value(CloudClock::compressed()).unwrap();
        assert_eq!(
            json["redelivery_delays"],
            serde_json::json!([50, 100, 200, 400])
        );
        assert_eq!(json["window"], 60_000);
        let back: CloudClock = serde_json::from_value(json).unwrap();
        assert_eq!(back, CloudClock::compressed());
    }
}
