//! Exit codes that mean something to a script or a cron job, and the error
//! type that carries them from a command to `main`.
//!
//! | code | meaning |
//! |---|---|
//! | 0 | done, nothing to report |
//! | 1 | unexpected failure (a store unreachable, a provider error) |
//! | 2 | usage or bad input: an invalid tenant id, an unknown tenant, a limit out of range; nothing was changed |
//! | 3 | `fleet reconcile` found drift (orphans, tenants without a bridge, state drift); `fleet stuck` found stuck bridges; `migrate --check` found pending migrations |
//! | 4 | partial failure: some items failed (provisioning, a refused replay, an orphan deletion refused because a tenant owns the bridge, a `tenants cloud` step after the token was stored, tokens `reseal` left alone) |
//! | 130 | interrupted (Ctrl-C); re-running finishes the job |

use std::fmt;

/// What a finished command tells its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exit {
    Ok,
    Failure,
    Usage,
    Drift,
    Partial,
    Interrupted,
}

impl Exit {
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failure => 1,
            Exit::Usage => 2,
            Exit::Drift => 3,
            Exit::Partial => 4,
            Exit::Interrupted => 130,
        }
    }
}

/// The exit-code table as `switchyard --help` prints it.
pub const EXIT_CODES_HELP: &str = "\
Exit codes:
  0    done
  1    unexpected failure (store unreachable, provider error)
  2    usage or bad input (invalid tenant id, unknown tenant, limit out of range); nothing changed
  3    drift found by `fleet reconcile` (orphans, tenants without a bridge, state drift),
       stuck bridges found by `fleet stuck`, or migrations pending (`migrate --check`)
  4    partial failure (some tenants failed to provision, some dead letters refused,
       some `fleet delete --orphan` bridges refused because a tenant owns them,
       a `tenants cloud` step after the token was stored, tokens `reseal` left alone)
  130  interrupted; re-running finishes the job

Environment: DATABASE_URL, NATS_URL, WA_API_URL, WA_API_KEY, SWITCHYARD_WEBHOOK_SECRET,
SWITCHYARD_PUBLIC_URL, SWITCHYARD_OPS_ADDR, SWITCHYARD_CLOUD_TOKEN_KEYS, SWITCHYARD_CLOUD_APP_ID,
SWITCHYARD_CLOUD_APP_SECRET, SWITCHYARD_CLOUD_API_URL. Secrets are never printed.";

/// A command that could not do its job.
#[derive(Debug)]
pub enum CliError {
    /// The operator asked for something invalid; nothing was changed (exit 2).
    BadInput(String),
    /// Anything else (exit 1). Messages never contain secrets.
    Failed(anyhow::Error),
}

impl CliError {
    pub fn bad_input(message: impl Into<String>) -> Self {
        CliError::BadInput(message.into())
    }

    pub fn exit(&self) -> Exit {
        match self {
            CliError::BadInput(_) => Exit::Usage,
            CliError::Failed(_) => Exit::Failure,
        }
    }
}

impl fmt::Display for CliError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CliError::BadInput(m) => f.write_str(m),
            CliError::Failed(e) => write!(f, "{e:#}"),
        }
    }
}

// Deliberately not `std::error::Error`: that keeps the blanket `From` below coherent.

impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError::Failed(e.into())
    }
}

/// Shorthand for command results.
pub type CliResult<T> = Result<T, CliError>;
