//! Ingest's own settings, read once at start-up through [`Env`] so a bad value
//! stops the process with the variable's name instead of surprising it later.
//!
//! | variable | default | meaning |
//! |---|---|---|
//! | `SWITCHYARD_HTTP_ADDR` | `127.0.0.1:8080` | where the webhook route listens |
//! | `SWITCHYARD_WEBHOOK_SECRET` | required | server secret deriving every bridge's URL token |
//! | `SWITCHYARD_WEBHOOK_SECRET_PREVIOUS` | unset | the secret before a rotation, still accepted |
//! | `SWITCHYARD_SIGNING_SECRET` | unset | `whsec_…` with a key of at least 24 bytes: when set, Standard Webhooks signatures are required |
//! | `SWITCHYARD_MAX_BODY_BYTES` | `65536` | larger bodies get 413 |
//! | `SWITCHYARD_HTTP_HEADER_TIMEOUT` | `5s` | a new connection's first request head, and every later head from its first byte, must arrive within this, or the connection is closed |
//! | `SWITCHYARD_HTTP_IDLE_TIMEOUT` | `120s` | a kept connection is closed after resting this long since its last answer (above the 90 s that common client pools keep one) |
//! | `SWITCHYARD_HTTP_BODY_TIMEOUT` | `10s` | a request body must arrive in full within this, or the request is refused |
//! | `SWITCHYARD_HTTP_MAX_CONNECTIONS` | `10000` | open webhook connections; more are closed at once |
//! | `SWITCHYARD_HTTP_MAX_IN_FLIGHT` | `1024` | requests being handled at once; more are answered 503 at once |
//! | `SWITCHYARD_ADMISSION_RATE` | `50` | events per second one tenant may send to this replica, sustained; more are answered 429 |
//! | `SWITCHYARD_ADMISSION_BURST` | `500` | events one tenant may send at once after a quiet while |
//! | `SWITCHYARD_DROP_TYPING` | `true` | `typing` events are answered 200 and not published |
//! | `SWITCHYARD_DB_CLAIM_TIMEOUT` | `500ms` | past this, the idempotency claim is skipped and the event published anyway; also the bound on reading a tenant's webhook credential and on checking a signed webhook-id against other tenants |
//! | `SWITCHYARD_TENANT_CACHE_TTL` | `30s` | longest a webhook credential rotation takes to reach this replica if its announcement is lost |
//! | `SWITCHYARD_PUBLISH_TIMEOUT` | `3s` | longest wait for a JetStream ack before answering 503 |
//! | `SWITCHYARD_DB_CLAIM_BATCH` | `256` | most keys written by one group-commit statement |
//! | `SWITCHYARD_DB_CLAIM_LINGER` | `2ms` | how long a busy claim writer gathers claims before writing them (`0ms` turns it off) |
//! | `SWITCHYARD_OUTBOX_MAX_EVENTS` | `100000` | most events kept in the PostgreSQL outbox while JetStream cannot take them (`0` turns the outbox off) |
//! | `SWITCHYARD_OUTBOX_MAX_PER_TENANT` | `10000` | most outboxed events of one tenant |
//! | `SWITCHYARD_OUTBOX_WRITE_TIMEOUT` | `2s` | longest wait for the outbox write before answering 503 |
//! | `SWITCHYARD_OUTBOX_POLL` | `1s` | how often the flusher counts the outbox and looks for other replicas' events |
//! | `SWITCHYARD_OUTBOX_LEASE` | `15s` | how long a tenant's outbox stays with one replica's flusher without renewal |

use std::{net::SocketAddr, num::NonZeroU32, time::Duration};

use secrecy::SecretString;

use crate::{admission::AdmissionPolicy, server::ServerLimits};
use switchyard_shared::{
    cloud_api::CloudWebhookSettings,
    config::{ConfigError, Env},
    standard_webhooks::{self, SigningSecret},
    webhook_auth::WebhookKeys,
};

/// Gathering claims for 2 ms makes batches of ~8 at 4,000 events/s instead
/// of ~3, and the publishes they release leave together: CPU per event at
/// half the benchmark's maximum rate fell by a third (`docs/ingest.md`).
const DEFAULT_CLAIM_LINGER: Duration = Duration::from_millis(2);
/// Beyond this the wait would be a visible part of the answer time.
const MAX_CLAIM_LINGER: Duration = Duration::from_millis(50);
/// The credential read, the signed webhook-id check, the claim, the publish
/// budget and the outbox write together (the first three bounded by the
/// claim timeout each): the provider
/// gives up after 10 s, and the answer still has to travel.
const MAX_REQUEST_WAITS: Duration = Duration::from_secs(8);

/// A slow but honest client sends a webhook's head in well under a second;
/// 5 s is generous and still frees a held descriptor quickly. Bodies are at
/// most 64 KiB by default: 10 s is generous for them too. 10,000 connections
/// stay well below the usual 65,536-descriptor limit of a container (and the
/// pools, NATS and the ops server need descriptors too); 1,024 requests in
/// flight is several times what the claim and publish paths can use.
const DEFAULT_LIMITS: ServerLimits = ServerLimits {
    header_timeout: Duration::from_secs(5),
    idle_timeout: Duration::from_secs(120),
    body_timeout: Duration::from_secs(10),
    max_connections: 10_000,
    max_in_flight: 1024,
};

/// A tenant's sustained admission rate, events per second per replica.
/// Human conversation on one WhatsApp number peaks at a few events a second;
/// 50/s is 180,000 an hour, some 25 times what the fleet's default send
/// budget (120/min for everyone) could answer, so only a flood meets it, and
/// at ingest's measured 4,000 events/s one flooder takes at most ~1 % of a
/// replica.
const DEFAULT_ADMISSION_RATE: u32 = 50;
/// A tenant's burst: a bridge reconnecting after an outage may deliver what
/// queued meanwhile at once; 500 at once passes, a sustained flood does not.
const DEFAULT_ADMISSION_BURST: u32 = 500;

/// `bounded` has already refused 0.
fn nonzero(value: u32) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap_or(NonZeroU32::MIN)
}

/// Settings of the ingest service beyond the common ones.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the webhook route listens (port 0 picks a free port).
    pub http_addr: SocketAddr,
    /// Current and previous server secrets of the per-bridge URL tokens.
    pub webhook_keys: WebhookKeys,
    /// When set, every webhook must carry a valid Standard Webhooks signature.
    pub signing_secret: Option<SigningSecret>,
    /// Largest accepted body in bytes.
    pub max_body_bytes: usize,
    /// The HTTP server's timeouts and caps.
    pub http_limits: ServerLimits,
    /// Each tenant's admission limit (per replica).
    pub admission: AdmissionPolicy,
    /// Whether `typing` events are dropped at the edge (answered 200, counted).
    pub drop_typing: bool,
    /// The bound past which PostgreSQL counts as degraded for a claim (and
    /// for reading a tenant's webhook credential).
    pub db_claim_timeout: Duration,
    /// How long a tenant row (its webhook credential) is trusted without an announcement.
    pub tenant_cache_ttl: Duration,
    /// The bound on a JetStream publish ack.
    pub publish_timeout: Duration,
    /// Most idempotency keys one group-commit statement writes.
    pub claim_batch: usize,
    /// How long a busy claim writer gathers claims before writing them.
    pub claim_linger: Duration,
    /// Most events in the outbox (0: no outbox, 503 when JetStream fails).
    pub outbox_max_events: u64,
    /// Most outboxed events of one tenant.
    pub outbox_max_per_tenant: u64,
    /// The bound on an outbox write.
    pub outbox_write_timeout: Duration,
    /// How often the flusher counts the outbox.
    pub outbox_poll: Duration,
    /// How long a tenant's outbox stays with one flusher without renewal.
    pub outbox_lease: Duration,
    /// The Cloud API route (`/cloud`), when `SWITCHYARD_CLOUD_APP_SECRET` and
    /// `SWITCHYARD_CLOUD_VERIFY_TOKEN` are set; absent, the route is not served.
    pub cloud: Option<CloudWebhookSettings>,
}

impl Settings {
    /// Reads and validates every ingest setting.
    pub fn from_env(env: &Env) -> anyhow::Result<Self> {
        let signing_secret = env
            .secret("SWITCHYARD_SIGNING_SECRET")
            .map(|raw| {
                // Ours to choose: an empty or short key is refused at start,
                // not discovered by whoever forges a signature with it.
                SigningSecret::parse_at_least(&raw, standard_webhooks::MIN_KEY_BYTES).map_err(|e| {
                    ConfigError {
                        variable: "SWITCHYARD_SIGNING_SECRET".to_owned(),
                        reason: e.to_string(),
                    }
                })
            })
            .transpose()?;
        let db_claim_timeout =
            env.duration("SWITCHYARD_DB_CLAIM_TIMEOUT", Duration::from_millis(500))?;
        let publish_timeout = env.duration("SWITCHYARD_PUBLISH_TIMEOUT", Duration::from_secs(3))?;
        let outbox_write_timeout =
            env.duration("SWITCHYARD_OUTBOX_WRITE_TIMEOUT", Duration::from_secs(2))?;
        // The provider gives up after 10 s: the waits together must fit well inside it.
        for (variable, value) in [
            ("SWITCHYARD_DB_CLAIM_TIMEOUT", db_claim_timeout),
            ("SWITCHYARD_PUBLISH_TIMEOUT", publish_timeout),
            ("SWITCHYARD_OUTBOX_WRITE_TIMEOUT", outbox_write_timeout),
        ] {
            if value.is_zero() || value > Duration::from_secs(4) {
                return Err(ConfigError {
                    variable: variable.to_owned(),
                    reason: format!(
                        "{} is outside 1ms..=4s (the provider gives up after 10 s)",
                        humantime_like(value)
                    ),
                }
                .into());
            }
        }
        let waits = db_claim_timeout * 3 + publish_timeout + outbox_write_timeout;
        if waits > MAX_REQUEST_WAITS {
            return Err(ConfigError {
                variable: "SWITCHYARD_OUTBOX_WRITE_TIMEOUT".to_owned(),
                reason: format!(
                    "3 × SWITCHYARD_DB_CLAIM_TIMEOUT (credential read, webhook-id check, claim) + SWITCHYARD_PUBLISH_TIMEOUT + SWITCHYARD_OUTBOX_WRITE_TIMEOUT is {}, above {} (the provider gives up after 10 s)",
                    humantime_like(waits),
                    humantime_like(MAX_REQUEST_WAITS)
                ),
            }
            .into());
        }
        let outbox_max_events =
            env.bounded("SWITCHYARD_OUTBOX_MAX_EVENTS", 100_000, 0..=10_000_000)?;
        let outbox_max_per_tenant =
            env.bounded("SWITCHYARD_OUTBOX_MAX_PER_TENANT", 10_000, 1..=10_000_000)?;
        if outbox_max_events > 0 && outbox_max_per_tenant > outbox_max_events {
            return Err(ConfigError {
                variable: "SWITCHYARD_OUTBOX_MAX_PER_TENANT".to_owned(),
                reason: format!(
                    "{outbox_max_per_tenant} is above SWITCHYARD_OUTBOX_MAX_EVENTS ({outbox_max_events})"
                ),
            }
            .into());
        }
        let outbox_poll = env.duration("SWITCHYARD_OUTBOX_POLL", Duration::from_secs(1))?;
        if outbox_poll < Duration::from_millis(10) || outbox_poll > Duration::from_secs(60) {
            return Err(ConfigError {
                variable: "SWITCHYARD_OUTBOX_POLL".to_owned(),
                reason: format!("{} is outside 10ms..=60s", humantime_like(outbox_poll)),
            }
            .into());
        }
        let outbox_lease = env.duration("SWITCHYARD_OUTBOX_LEASE", Duration::from_secs(15))?;
        // A flusher stops a batch at half its lease, and the publish in
        // flight then may take the whole publish budget: it must end before
        // the lease can pass to another replica.
        if outbox_lease <= publish_timeout * 2 || outbox_lease > Duration::from_secs(600) {
            return Err(ConfigError {
                variable: "SWITCHYARD_OUTBOX_LEASE".to_owned(),
                reason: format!(
                    "{} must be above twice SWITCHYARD_PUBLISH_TIMEOUT ({}) and at most 10m",
                    humantime_like(outbox_lease),
                    humantime_like(publish_timeout)
                ),
            }
            .into());
        }
        let claim_linger = env.duration("SWITCHYARD_DB_CLAIM_LINGER", DEFAULT_CLAIM_LINGER)?;
        // Every claim waits at most this long for its batch to close: it
        // must stay a small part of the claim bound.
        if claim_linger > MAX_CLAIM_LINGER || claim_linger >= db_claim_timeout / 2 {
            return Err(ConfigError {
                variable: "SWITCHYARD_DB_CLAIM_LINGER".to_owned(),
                reason: format!(
                    "{} must be within 0ms..={}ms and below half of SWITCHYARD_DB_CLAIM_TIMEOUT ({})",
                    humantime_like(claim_linger),
                    MAX_CLAIM_LINGER.as_millis(),
                    humantime_like(db_claim_timeout)
                ),
            }
            .into());
        }
        let http_limits = ServerLimits {
            header_timeout: env.duration(
                "SWITCHYARD_HTTP_HEADER_TIMEOUT",
                DEFAULT_LIMITS.header_timeout,
            )?,
            idle_timeout: env
                .duration("SWITCHYARD_HTTP_IDLE_TIMEOUT", DEFAULT_LIMITS.idle_timeout)?,
            body_timeout: env
                .duration("SWITCHYARD_HTTP_BODY_TIMEOUT", DEFAULT_LIMITS.body_timeout)?,
            max_connections: env.bounded(
                "SWITCHYARD_HTTP_MAX_CONNECTIONS",
                DEFAULT_LIMITS.max_connections,
                1..=1_000_000,
            )?,
            max_in_flight: env.bounded(
                "SWITCHYARD_HTTP_MAX_IN_FLIGHT",
                DEFAULT_LIMITS.max_in_flight,
                1..=100_000,
            )?,
        };
        for (variable, value) in [
            ("SWITCHYARD_HTTP_HEADER_TIMEOUT", http_limits.header_timeout),
            ("SWITCHYARD_HTTP_BODY_TIMEOUT", http_limits.body_timeout),
        ] {
            if value < Duration::from_millis(100) || value > Duration::from_secs(300) {
                return Err(ConfigError {
                    variable: variable.to_owned(),
                    reason: format!("{} is outside 100ms..=5m", humantime_like(value)),
                }
                .into());
            }
        }
        // Hyper's one head timer is the idle bound: it also runs while a head
        // arrives, so it must leave the head its own bound.
        let idle = http_limits.idle_timeout;
        if idle < http_limits.header_timeout || idle > Duration::from_secs(3600) {
            return Err(ConfigError {
                variable: "SWITCHYARD_HTTP_IDLE_TIMEOUT".to_owned(),
                reason: format!(
                    "{} is outside SWITCHYARD_HTTP_HEADER_TIMEOUT ({})..=1h",
                    humantime_like(idle),
                    humantime_like(http_limits.header_timeout)
                ),
            }
            .into());
        }
        let admission = AdmissionPolicy {
            per_second: nonzero(env.bounded(
                "SWITCHYARD_ADMISSION_RATE",
                DEFAULT_ADMISSION_RATE,
                1..=100_000,
            )?),
            burst: nonzero(env.bounded(
                "SWITCHYARD_ADMISSION_BURST",
                DEFAULT_ADMISSION_BURST,
                1..=1_000_000,
            )?),
        };
        Ok(Self {
            admission,
            http_limits,
            http_addr: env.parse(
                "SWITCHYARD_HTTP_ADDR",
                SocketAddr::from(([127, 0, 0, 1], 8080)),
            )?,
            webhook_keys: WebhookKeys::new(
                env.required_secret("SWITCHYARD_WEBHOOK_SECRET")?,
                env.secret("SWITCHYARD_WEBHOOK_SECRET_PREVIOUS"),
            ),
            signing_secret,
            max_body_bytes: env.bounded("SWITCHYARD_MAX_BODY_BYTES", 64 * 1024, 256..=1_000_000)?,
            drop_typing: env.flag("SWITCHYARD_DROP_TYPING", true)?,
            db_claim_timeout,
            tenant_cache_ttl: env
                .duration("SWITCHYARD_TENANT_CACHE_TTL", Duration::from_secs(30))?,
            publish_timeout,
            claim_batch: env.bounded("SWITCHYARD_DB_CLAIM_BATCH", 256, 1..=10_000)?,
            claim_linger,
            outbox_max_events,
            outbox_max_per_tenant,
            outbox_write_timeout,
            outbox_poll,
            outbox_lease,
            cloud: CloudWebhookSettings::from_env(env)?,
        })
    }

    /// Settings for an in-process instance: everything at its default, the
    /// given server secret, listening on a free loopback port.
    pub fn for_secret(secret: SecretString) -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            webhook_keys: WebhookKeys::new(secret, None),
            signing_secret: None,
            max_body_bytes: 64 * 1024,
            http_limits: DEFAULT_LIMITS,
            admission: AdmissionPolicy {
                per_second: nonzero(DEFAULT_ADMISSION_RATE),
                burst: nonzero(DEFAULT_ADMISSION_BURST),
            },
            drop_typing: true,
            db_claim_timeout: Duration::from_millis(500),
            tenant_cache_ttl: Duration::from_secs(2),
            publish_timeout: Duration::from_secs(3),
            claim_batch: 256,
            claim_linger: DEFAULT_CLAIM_LINGER,
            outbox_max_events: 100_000,
            outbox_max_per_tenant: 10_000,
            outbox_write_timeout: Duration::from_secs(2),
            outbox_poll: Duration::from_secs(1),
            outbox_lease: Duration::from_secs(15),
            cloud: None,
        }
    }
}

fn humantime_like(d: Duration) -> String {
    format!("{}ms", d.as_millis())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_webhook_secret_is_required_and_named() {
        let err = Settings::from_env(&Env::from_map::<[(&str, &str); 0], _, _>([])).unwrap_err();
        assert!(
            err.to_string().contains("SWITCHYARD_WEBHOOK_SECRET"),
            "{err}"
        );
    }

    #[test]
    fn defaults_match_the_documentation() {
        let s = Settings::from_env(&Env::from_map([("SWITCHYARD_WEBHOOK_SECRET", "s")])).unwrap();
        assert_eq!(s.http_addr, SocketAddr::from(([127, 0, 0, 1], 8080)));
        assert_eq!(s.max_body_bytes, 65_536);
        assert!(s.drop_typing);
        assert!(s.signing_secret.is_none());
        assert_eq!(s.db_claim_timeout, Duration::from_millis(500));
        assert_eq!(s.tenant_cache_ttl, Duration::from_secs(30));
        assert_eq!(s.claim_linger, Duration::from_millis(2));
        assert_eq!(s.outbox_max_events, 100_000);
        assert_eq!(s.outbox_max_per_tenant, 10_000);
        assert_eq!(s.outbox_write_timeout, Duration::from_secs(2));
        assert_eq!(s.outbox_poll, Duration::from_secs(1));
        assert_eq!(s.outbox_lease, Duration::from_secs(15));
        assert_eq!(s.http_limits.header_timeout, Duration::from_secs(5));
        assert_eq!(s.http_limits.idle_timeout, Duration::from_secs(120));
        assert_eq!(s.http_limits.body_timeout, Duration::from_secs(10));
        assert_eq!(s.http_limits.max_connections, 10_000);
        assert_eq!(s.http_limits.max_in_flight, 1024);
        let in_process = Settings::for_secret("s".into());
        assert_eq!(
            (
                in_process.outbox_max_events,
                in_process.outbox_max_per_tenant,
                in_process.outbox_write_timeout,
                in_process.outbox_poll,
                in_process.outbox_lease
            ),
            (
                s.outbox_max_events,
                s.outbox_max_per_tenant,
                s.outbox_write_timeout,
                s.outbox_poll,
                s.outbox_lease
            )
        );
    }

    #[test]
    fn the_outbox_can_be_turned_off_and_its_limits_must_agree() {
        let env = |pairs: &[(&'static str, &'static str)]| {
            let mut vars = vec![("SWITCHYARD_WEBHOOK_SECRET", "s")];
            vars.extend_from_slice(pairs);
            Settings::from_env(&Env::from_map(vars))
        };
        assert_eq!(
            env(&[("SWITCHYARD_OUTBOX_MAX_EVENTS", "0")])
                .unwrap()
                .outbox_max_events,
            0
        );
        for (pairs, named) in [
            (
                &[
                    ("SWITCHYARD_OUTBOX_MAX_EVENTS", "10"),
                    ("SWITCHYARD_OUTBOX_MAX_PER_TENANT", "11"),
                ][..],
                "SWITCHYARD_OUTBOX_MAX_PER_TENANT",
            ),
            (
                &[
                    ("SWITCHYARD_PUBLISH_TIMEOUT", "4s"),
                    ("SWITCHYARD_OUTBOX_WRITE_TIMEOUT", "4s"),
                ][..],
                "SWITCHYARD_OUTBOX_WRITE_TIMEOUT",
            ),
            (
                &[("SWITCHYARD_OUTBOX_LEASE", "6s")][..],
                "SWITCHYARD_OUTBOX_LEASE",
            ),
            (
                &[("SWITCHYARD_OUTBOX_POLL", "2m")][..],
                "SWITCHYARD_OUTBOX_POLL",
            ),
        ] {
            let err = env(pairs).unwrap_err();
            assert!(err.to_string().contains(named), "{pairs:?}: {err}");
        }
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("SWITCHYARD_MAX_BODY_BYTES", "lots"),
            ("SWITCHYARD_DROP_TYPING", "maybe"),
            ("SWITCHYARD_DB_CLAIM_TIMEOUT", "20s"),
            ("SWITCHYARD_DB_CLAIM_LINGER", "51ms"),
            ("SWITCHYARD_DB_CLAIM_LINGER", "soon"),
            ("SWITCHYARD_OUTBOX_MAX_EVENTS", "-1"),
            ("SWITCHYARD_OUTBOX_MAX_PER_TENANT", "0"),
            ("SWITCHYARD_OUTBOX_WRITE_TIMEOUT", "0ms"),
            ("SWITCHYARD_OUTBOX_POLL", "1ms"),
            ("SWITCHYARD_OUTBOX_LEASE", "later"),
            ("SWITCHYARD_SIGNING_SECRET", "whsec_not base64!"),
            ("SWITCHYARD_HTTP_ADDR", "nowhere"),
            ("SWITCHYARD_HTTP_HEADER_TIMEOUT", "0ms"),
            ("SWITCHYARD_HTTP_BODY_TIMEOUT", "1h"),
            ("SWITCHYARD_HTTP_IDLE_TIMEOUT", "1s"),
            ("SWITCHYARD_HTTP_IDLE_TIMEOUT", "2h"),
            ("SWITCHYARD_HTTP_MAX_CONNECTIONS", "0"),
            ("SWITCHYARD_HTTP_MAX_IN_FLIGHT", "many"),
            ("SWITCHYARD_ADMISSION_RATE", "0"),
            ("SWITCHYARD_ADMISSION_BURST", "lots"),
        ] {
            let env = Env::from_map([("SWITCHYARD_WEBHOOK_SECRET", "s"), (var, value)]);
            let err = Settings::from_env(&env).unwrap_err();
            assert!(err.to_string().contains(var), "{var}: {err}");
        }
    }

    #[test]
    fn an_empty_or_short_signing_secret_is_refused_at_start() {
        for (raw, says) in [
            ("whsec_", "empty key"),
            // 18 bytes.
            ("whsec_AAAAAAAAAAAAAAAAAAAAAAAA", "18 bytes; at least 24"),
        ] {
            let env = Env::from_map([
                ("SWITCHYARD_WEBHOOK_SECRET", "s"),
                ("SWITCHYARD_SIGNING_SECRET", raw),
            ]);
            let err = Settings::from_env(&env).unwrap_err().to_string();
            assert!(
                err.contains("SWITCHYARD_SIGNING_SECRET") && err.contains(says),
                "{raw:?}: {err}"
            );
            assert!(!err.contains("AAAAAAAA"), "the value is not echoed: {err}");
        }
    }

    #[test]
    fn secrets_do_not_print() {
        let env = Env::from_map([
            ("SWITCHYARD_WEBHOOK_SECRET", "hunter2"),
            ("SWITCHYARD_WEBHOOK_SECRET_PREVIOUS", "hunter3"),
            (
                "SWITCHYARD_SIGNING_SECRET",
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            ),
        ]);
        let shown = format!("{:?}", Settings::from_env(&env).unwrap());
        assert!(
            !shown.contains("hunter") && !shown.contains("MfKQ9r8"),
            "{shown}"
        );
    }
}
