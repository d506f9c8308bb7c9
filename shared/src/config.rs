//! Configuration: documented defaults, overridden by environment variables,
//! validated once at start-up.
//!
//! Every knob is read through [`Env`], which turns a bad value into a
//! [`ConfigError`] naming the variable, so a replica with a typo refuses to
//! start instead of running with a surprise. `NATS_URL` and `DATABASE_URL` keep
//! their conventional names; everything else is `SWITCHYARD_*`. Secrets are
//! read into [`SecretString`], whose `Debug` prints a placeholder.
//! `docs/configuration.md` lists every variable with its default
//! (`tests/tests/settings_docs.rs` fails when a variable read here is missing there).

use std::{collections::HashMap, fmt, net::SocketAddr, str::FromStr, time::Duration};

use secrecy::SecretString;

/// A setting that could not be used, named by its environment variable.
#[derive(Debug, thiserror::Error)]
#[error("invalid setting {variable}: {reason}")]
pub struct ConfigError {
    pub variable: String,
    pub reason: String,
}

/// Looks a variable up.
type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Where settings come from: the process environment, or a map in tests.
pub struct Env {
    lookup: Lookup,
}

impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Env")
    }
}

impl Env {
    /// Reads the process environment.
    pub fn from_process() -> Self {
        Self {
            lookup: Box::new(|k| std::env::var(k).ok()),
        }
    }

    /// Reads a fixed map (tests, in-process services).
    pub fn from_map<I, K, V>(vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let map: HashMap<String, String> = vars
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        Self {
            lookup: Box::new(move |k| map.get(k).cloned()),
        }
    }

    /// The raw value, with empty strings treated as unset.
    pub fn raw(&self, variable: &str) -> Option<String> {
        (self.lookup)(variable).filter(|v| !v.trim().is_empty())
    }

    /// A string setting.
    pub fn string(&self, variable: &str, default: &str) -> String {
        self.raw(variable).unwrap_or_else(|| default.to_owned())
    }

    /// Any `FromStr` setting; the parse error is reported with the variable name.
    pub fn parse<T>(&self, variable: &str, default: T) -> Result<T, ConfigError>
    where
        T: FromStr,
        T::Err: fmt::Display,
    {
        match self.raw(variable) {
            None => Ok(default),
            Some(v) => v.trim().parse().map_err(|e: T::Err| ConfigError {
                variable: variable.to_owned(),
                reason: format!("{e} (got {v:?})"),
            }),
        }
    }

    /// A numeric setting that must lie within `range`.
    pub fn bounded<T>(
        &self,
        variable: &str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Display + Copy,
        T::Err: fmt::Display,
    {
        let value = self.parse(variable, default)?;
        if !range.contains(&value) {
            return Err(ConfigError {
                variable: variable.to_owned(),
                reason: format!("{value} is outside {}..={}", range.start(), range.end()),
            });
        }
        Ok(value)
    }

    /// A duration such as `250ms`, `30s`, `2m`, `7days` (humantime syntax).
    pub fn duration(&self, variable: &str, default: Duration) -> Result<Duration, ConfigError> {
        match self.raw(variable) {
            None => Ok(default),
            Some(v) => humantime::parse_duration(v.trim()).map_err(|e| ConfigError {
                variable: variable.to_owned(),
                reason: format!("{e} (got {v:?}; use e.g. 500ms, 30s, 2m)"),
            }),
        }
    }

    /// A boolean: true/false, 1/0, yes/no, on/off.
    pub fn flag(&self, variable: &str, default: bool) -> Result<bool, ConfigError> {
        match self.raw(variable).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(default),
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => Ok(true),
                "0" | "false" | "no" | "off" => Ok(false),
                _ => Err(ConfigError {
                    variable: variable.to_owned(),
                    reason: format!("expected true or false (got {v:?})"),
                }),
            },
        }
    }

    /// A secret; never echoed back in an error.
    pub fn secret(&self, variable: &str) -> Option<SecretString> {
        self.raw(variable).map(SecretString::from)
    }

    /// A secret that must be set.
    pub fn required_secret(&self, variable: &str) -> Result<SecretString, ConfigError> {
        self.secret(variable).ok_or_else(|| ConfigError {
            variable: variable.to_owned(),
            reason: "is required and not set".to_owned(),
        })
    }
}

/// How to reach NATS and how the streams are shaped.
#[derive(Debug, Clone)]
pub struct NatsSettings {
    /// `NATS_URL` (default `nats://127.0.0.1:4222`).
    pub url: String,
    /// `SWITCHYARD_NATS_CA_FILE`: PEM root to trust for `tls://` URLs.
    pub ca_file: Option<String>,
    /// How this service proves who it is to the server (its own user, so the
    /// server's permissions give it only the subjects it needs).
    pub auth: NatsAuth,
    /// `SWITCHYARD_STREAM_REPLICAS` (default 1; 3 in production).
    pub replicas: usize,
    /// `SWITCHYARD_PARTITIONS` (default 16): partitions per work stream.
    pub partitions: u16,
    /// `SWITCHYARD_STREAM_MAX_AGE` (default 7 days): how long the event log is kept.
    pub max_age: Duration,
    /// `SWITCHYARD_STREAM_MAX_BYTES` (default -1: no limit): bytes each
    /// stream may hold; at the limit a stream refuses new messages (see
    /// `streams`), it never drops stored ones.
    pub max_bytes: i64,
    /// `SWITCHYARD_DUPLICATE_WINDOW` (default 2 minutes).
    pub duplicate_window: Duration,
    /// `SWITCHYARD_STREAM_MAX_CONSUMERS` (default 4096): set explicitly, 2.15 defaults to 1,000.
    pub max_consumers: i32,
}

impl NatsSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            url: env.string("NATS_URL", "nats://127.0.0.1:4222"),
            ca_file: env.raw("SWITCHYARD_NATS_CA_FILE"),
            auth: NatsAuth::from_env(env)?,
            replicas: env.bounded("SWITCHYARD_STREAM_REPLICAS", 1, 1..=5)?,
            partitions: env.bounded("SWITCHYARD_PARTITIONS", 16, 1..=1024)?,
            max_age: env.duration("SWITCHYARD_STREAM_MAX_AGE", Duration::from_secs(7 * 86_400))?,
            max_bytes: match env.bounded("SWITCHYARD_STREAM_MAX_BYTES", -1_i64, -1..=i64::MAX)? {
                0 => {
                    return Err(ConfigError {
                        variable: "SWITCHYARD_STREAM_MAX_BYTES".to_owned(),
                        reason: "0 would refuse every message: use -1 for no limit".to_owned(),
                    });
                }
                n => n,
            },
            duplicate_window: env
                .duration("SWITCHYARD_DUPLICATE_WINDOW", Duration::from_secs(120))?,
            max_consumers: env.bounded("SWITCHYARD_STREAM_MAX_CONSUMERS", 4096, 16..=100_000)?,
        })
    }
}

/// The credentials a service connects to NATS with.
#[derive(Debug, Clone, Default)]
pub enum NatsAuth {
    /// No credentials (a server without authorization, or a user in the URL).
    #[default]
    None,
    /// `NATS_USER` with `NATS_PASSWORD`, or the first line of `NATS_PASSWORD_FILE`.
    UserPassword {
        user: String,
        password: SecretString,
    },
}

impl NatsAuth {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        let user = env.raw("NATS_USER");
        let password = match (env.secret("NATS_PASSWORD"), env.raw("NATS_PASSWORD_FILE")) {
            (Some(_), Some(_)) => {
                return Err(ConfigError {
                    variable: "NATS_PASSWORD_FILE".to_owned(),
                    reason: "set either NATS_PASSWORD or NATS_PASSWORD_FILE, not both".to_owned(),
                });
            }
            (Some(p), None) => Some(p),
            (None, Some(path)) => Some(read_secret_file("NATS_PASSWORD_FILE", &path)?),
            (None, None) => None,
        };
        match (user, password) {
            (None, None) => Ok(NatsAuth::None),
            (Some(user), Some(password)) => Ok(NatsAuth::UserPassword { user, password }),
            (Some(_), None) => Err(ConfigError {
                variable: "NATS_PASSWORD".to_owned(),
                reason: "NATS_USER is set: set NATS_PASSWORD or NATS_PASSWORD_FILE too".to_owned(),
            }),
            (None, Some(_)) => Err(ConfigError {
                variable: "NATS_USER".to_owned(),
                reason: "a NATS password is set without NATS_USER".to_owned(),
            }),
        }
    }
}

/// The first line of a secret file (a mounted Kubernetes or compose secret),
/// without its line ending; the contents never appear in an error.
fn read_secret_file(variable: &str, path: &str) -> Result<SecretString, ConfigError> {
    let contents = std::fs::read_to_string(path).map_err(|e| ConfigError {
        variable: variable.to_owned(),
        reason: format!("cannot read {path}: {e}"),
    })?;
    let line = contents.lines().next().unwrap_or_default().trim_end();
    if line.is_empty() {
        return Err(ConfigError {
            variable: variable.to_owned(),
            reason: format!("{path} is empty"),
        });
    }
    Ok(SecretString::from(line.to_owned()))
}

/// How to reach PostgreSQL.
#[derive(Debug, Clone)]
pub struct DatabaseSettings {
    /// `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/switchyard`); may hold a password.
    pub url: SecretString,
    /// `SWITCHYARD_DB_MAX_CONNECTIONS` (default 10).
    pub max_connections: u32,
    /// `SWITCHYARD_DB_ACQUIRE_TIMEOUT` (default 2s).
    pub acquire_timeout: Duration,
    /// `SWITCHYARD_DB_STEP_LINGER` (at most 50ms): how long a busy flush
    /// slot of the workers' group-committed steps gathers calls
    /// (`crate::group_commit::Shape::WORKER_STEP`); `0ms`: a slot takes
    /// what was queued while it was busy and nothing more. `None` when
    /// unset: the service picks ([`DatabaseSettings::step_linger_or`]; the
    /// router's default depends on its spare chats).
    pub step_linger: Option<Duration>,
}

/// Longest `SWITCHYARD_DB_STEP_LINGER`: every step of every event waits up
/// to this while the service is busy.
const MAX_STEP_LINGER: Duration = Duration::from_millis(50);

impl DatabaseSettings {
    pub fn from_env(env: &Env) -> Result<Self, ConfigError> {
        Ok(Self {
            url: env
                .secret("DATABASE_URL")
                .unwrap_or_else(|| "postgres://postgres@127.0.0.1:5432/switchyard".into()),
            max_connections: env.bounded("SWITCHYARD_DB_MAX_CONNECTIONS", 10, 1..=500)?,
            acquire_timeout: env
                .duration("SWITCHYARD_DB_ACQUIRE_TIMEOUT", Duration::from_secs(2))?,
            step_linger: step_linger(env)?,
        })
    }

    /// The steps' linger: the one set, else `default`.
    pub fn step_linger_or(&self, default: Duration) -> Duration {
        self.step_linger.unwrap_or(default)
    }
}

fn step_linger(env: &Env) -> Result<Option<Duration>, ConfigError> {
    const VARIABLE: &str = "SWITCHYARD_DB_STEP_LINGER";
    if env.raw(VARIABLE).is_none() {
        return Ok(None);
    }
    let linger = env.duration(VARIABLE, crate::group_commit::Shape::WORKER_STEP.linger)?;
    if linger > MAX_STEP_LINGER {
        return Err(ConfigError {
            variable: VARIABLE.to_owned(),
            reason: format!(
                "{} ms is above the most allowed, {} ms",
                linger.as_millis(),
                MAX_STEP_LINGER.as_millis()
            ),
        });
    }
    Ok(Some(linger))
}

/// Log output shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Human,
    Json,
}

impl FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "human" | "pretty" | "text" => Ok(LogFormat::Human),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format {other:?}, expected human or json"
            )),
        }
    }
}

/// What every binary shares: stores, ops endpoint, logs, shutdown.
#[derive(Debug, Clone)]
pub struct CommonSettings {
    pub nats: NatsSettings,
    pub database: DatabaseSettings,
    /// `SWITCHYARD_OPS_ADDR`: where `/healthz`, `/readyz` and `/metrics` listen.
    pub ops_addr: SocketAddr,
    /// `SWITCHYARD_LOG_FORMAT` (`human` or `json`, default human).
    pub log_format: LogFormat,
    /// `SWITCHYARD_LOG` (default `info`): a tracing filter, checked with
    /// [`crate::telemetry::parse_filter`] when read.
    pub log_filter: String,
    /// `SWITCHYARD_SHUTDOWN_GRACE` (default 10s): how long in-flight work may drain.
    pub shutdown_grace: Duration,
    /// `SWITCHYARD_METRICS_TENANT_CAP` (default 500, at most 100000): tenants
    /// this process names in its per-tenant metrics; the rest are `_other`.
    pub metrics_tenant_cap: usize,
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` and friends: where spans are exported (nowhere by default).
    pub traces: crate::telemetry::TraceSettings,
}

impl CommonSettings {
    /// Reads the shared settings; `default_ops_port` differs per binary so all
    /// three can run on one machine.
    pub fn from_env(env: &Env, default_ops_port: u16) -> Result<Self, ConfigError> {
        let log_filter = env.string("SWITCHYARD_LOG", "info");
        crate::telemetry::parse_filter(&log_filter).map_err(|reason| ConfigError {
            variable: "SWITCHYARD_LOG".to_owned(),
            reason,
        })?;
        Ok(Self {
            nats: NatsSettings::from_env(env)?,
            database: DatabaseSettings::from_env(env)?,
            ops_addr: env.parse(
                "SWITCHYARD_OPS_ADDR",
                SocketAddr::from(([127, 0, 0, 1], default_ops_port)),
            )?,
            log_format: env.parse("SWITCHYARD_LOG_FORMAT", LogFormat::Human)?,
            log_filter,
            shutdown_grace: env.duration("SWITCHYARD_SHUTDOWN_GRACE", Duration::from_secs(10))?,
            metrics_tenant_cap: env.bounded(
                "SWITCHYARD_METRICS_TENANT_CAP",
                crate::tenant_metrics::DEFAULT_CAP,
                0..=100_000,
            )?,
            traces: crate::telemetry::TraceSettings::from_env(env)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[test]
    fn defaults_apply_when_nothing_is_set() {
        let s =
            CommonSettings::from_env(&Env::from_map::<[(&str, &str); 0], _, _>([]), 9100).unwrap();
        assert_eq!(s.nats.partitions, 16);
        assert_eq!(s.ops_addr.port(), 9100);
        assert_eq!(s.shutdown_grace, Duration::from_secs(10));
    }

    #[test]
    fn a_bad_value_is_reported_with_its_variable_name() {
        let env = Env::from_map([("SWITCHYARD_PARTITIONS", "lots")]);
        let err = CommonSettings::from_env(&env, 1).unwrap_err();
        assert_eq!(err.variable, "SWITCHYARD_PARTITIONS");
        assert!(err.to_string().contains("SWITCHYARD_PARTITIONS"), "{err}");

        let env = Env::from_map([("SWITCHYARD_PARTITIONS", "0")]);
        let err = CommonSettings::from_env(&env, 1).unwrap_err();
        assert!(err.reason.contains("outside"), "{err}");

        let env = Env::from_map([("SWITCHYARD_SHUTDOWN_GRACE", "soon")]);
        let err = CommonSettings::from_env(&env, 1).unwrap_err();
        assert_eq!(err.variable, "SWITCHYARD_SHUTDOWN_GRACE");
    }

    #[test]
    fn a_log_filter_that_does_not_parse_stops_start_up() {
        for bad in ["info,switchyard_router=verbose", "info,%", "[unclosed"] {
            let env = Env::from_map([("SWITCHYARD_LOG", bad)]);
            let err = CommonSettings::from_env(&env, 1).unwrap_err();
            assert_eq!(err.variable, "SWITCHYARD_LOG", "{bad}: {err}");
            assert!(
                err.to_string().contains("invalid setting SWITCHYARD_LOG"),
                "{err}"
            );
        }
        for good in ["debug", "warn,switchyard_router=debug,async_nats=off"] {
            let env = Env::from_map([("SWITCHYARD_LOG", good)]);
            let s = CommonSettings::from_env(&env, 1).unwrap();
            assert_eq!(s.log_filter, good);
        }
    }

    #[test]
    fn the_step_linger_is_bounded() {
        let linger = |v: &str| {
            DatabaseSettings::from_env(&Env::from_map([("SWITCHYARD_DB_STEP_LINGER", v)]))
                .map(|s| s.step_linger)
        };
        assert_eq!(linger("0ms").unwrap(), Some(Duration::ZERO));
        assert_eq!(linger("50ms").unwrap(), Some(Duration::from_millis(50)));
        let refused = linger("51ms").unwrap_err();
        assert_eq!(refused.variable, "SWITCHYARD_DB_STEP_LINGER");
        let unset =
            DatabaseSettings::from_env(&Env::from_map::<[(&str, &str); 0], _, _>([])).unwrap();
        assert_eq!(unset.step_linger, None, "unset: the service picks");
        let default = Duration::from_millis(7);
        assert_eq!(unset.step_linger_or(default), default);
        let set =
            DatabaseSettings::from_env(&Env::from_map([("SWITCHYARD_DB_STEP_LINGER", "0ms")]))
                .unwrap();
        assert_eq!(set.step_linger_or(default), Duration::ZERO, "what was set");
    }

    #[test]
    fn secrets_never_print() {
        let env = Env::from_map([("DATABASE_URL", "postgres://u:hunter2@db/x")]);
        let s = DatabaseSettings::from_env(&env).unwrap();
        assert!(!format!("{s:?}").contains("hunter2"));
        assert!(s.url.expose_secret().contains("hunter2"));
    }

    #[test]
    fn nats_credentials_come_from_the_environment_or_a_file_and_never_print() {
        let none = NatsAuth::from_env(&Env::from_map::<[(&str, &str); 0], _, _>([])).unwrap();
        assert!(matches!(none, NatsAuth::None));

        let env = Env::from_map([("NATS_USER", "router"), ("NATS_PASSWORD", "hunter2")]);
        let auth = NatsAuth::from_env(&env).unwrap();
        assert!(!format!("{auth:?}").contains("hunter2"));
        match auth {
            NatsAuth::UserPassword { user, password } => {
                assert_eq!(user, "router");
                assert_eq!(password.expose_secret(), "hunter2");
            }
            other => panic!("{other:?}"),
        }

        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pw");
        std::fs::write(&file, "s3cret\n").unwrap();
        let path = file.display().to_string();
        let env = Env::from_map([
            ("NATS_USER", "sender"),
            ("NATS_PASSWORD_FILE", path.as_str()),
        ]);
        match NatsAuth::from_env(&env).unwrap() {
            NatsAuth::UserPassword { password, .. } => {
                assert_eq!(password.expose_secret(), "s3cret")
            }
            other => panic!("{other:?}"),
        }

        let env = Env::from_map([("NATS_USER", "x")]);
        assert_eq!(
            NatsAuth::from_env(&env).unwrap_err().variable,
            "NATS_PASSWORD"
        );
        let env = Env::from_map([("NATS_PASSWORD", "x")]);
        assert_eq!(NatsAuth::from_env(&env).unwrap_err().variable, "NATS_USER");
        let env = Env::from_map([
            ("NATS_USER", "x"),
            ("NATS_PASSWORD_FILE", "/nonexistent/pw"),
        ]);
        let err = NatsAuth::from_env(&env).unwrap_err();
        assert_eq!(err.variable, "NATS_PASSWORD_FILE");
    }

    #[test]
    fn flags_accept_common_spellings_and_refuse_others() {
        let env = Env::from_map([("A", "yes"), ("B", "0"), ("C", "maybe")]);
        assert!(env.flag("A", false).unwrap());
        assert!(!env.flag("B", true).unwrap());
        assert_eq!(env.flag("C", true).unwrap_err().variable, "C");
    }
}
