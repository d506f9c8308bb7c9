//! Structured logs for every binary: human-readable on a terminal, JSON in
//! production. Fields use dotted names (`tenant.id`, `event.id`) so logs can be
//! queried; payloads and secrets are never logged.

use tracing_subscriber::{EnvFilter, fmt, prelude::*};

use crate::config::LogFormat;

/// Parses a log filter (`SWITCHYARD_LOG`): `EnvFilter` directives such as
/// `info` or `warn,switchyard_router=debug`. Every directive must parse, so
/// a typo stops start-up instead of silently logging something else.
pub fn parse_filter(directives: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(directives).map_err(|e| {
        format!("{e} (got {directives:?}; use e.g. info or warn,switchyard_router=debug)")
    })
}

/// Installs the global subscriber. Safe to call more than once (later calls are
/// ignored), so in-process tests can start several services. `filter` was
/// checked with [`parse_filter`] when the settings were read; should it not
/// parse anyway, `info` is used.
pub fn init(format: LogFormat, filter: &str) {
    let filter = parse_filter(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let registry = tracing_subscriber::registry().with(filter);
    let result = match format {
        LogFormat::Human => registry.with(fmt::layer().with_target(true)).try_init(),
        LogFormat::Json => registry
            .with(
                fmt::layer()
                    .json()
                    .flatten_event(true)
                    .with_current_span(false),
            )
            .try_init(),
    };
    // Already installed (a second service in the same test process): keep the first.
    drop(result);
}
