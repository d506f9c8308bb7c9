//! Structured logs and traces for every binary: logs human-readable on a
//! terminal, JSON in production (each line with the trace and span id it was
//! written in); spans exported over OTLP/HTTP when a collector is configured.
//! Fields use dotted names (`tenant.id`, `event.id`) so logs can be queried;
//! payloads and secrets are never logged.
//!
//! Spans always get OpenTelemetry trace and span ids, exported or not: the
//! ids are what [`crate::trace_context`] carries across the NATS hops and what
//! the JSON log lines name, so a fleet that exports only from some services
//! still joins their traces.

mod json_trace;
mod otlp_client;
mod settings;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::{WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::{Resource, trace::SdkTracerProvider};
use tracing_subscriber::{EnvFilter, Layer as _, filter, fmt, prelude::*};

pub use settings::TraceSettings;

use crate::config::LogFormat;

/// Parses a log filter (`SWITCHYARD_LOG`): `EnvFilter` directives such as
/// `info` or `warn,switchyard_router=debug`. Every directive must parse, so
/// a typo stops start-up instead of silently logging something else.
pub fn parse_filter(directives: &str) -> Result<EnvFilter, String> {
    EnvFilter::try_new(directives).map_err(|e| {
        format!("{e} (got {directives:?}; use e.g. info or warn,switchyard_router=debug)")
    })
}

/// The installed tracing pipeline; [`Telemetry::shutdown`] exports what is
/// still buffered. Dropping it without shutting down loses at most the last
/// batch of spans.
#[derive(Debug)]
pub struct Telemetry {
    provider: SdkTracerProvider,
}

impl Telemetry {
    /// Exports the spans still buffered (bounded by the exporter's timeout).
    pub async fn shutdown(self) {
        // The batch processor's thread exports through the runtime (see
        // `otlp_client`): wait for it off the runtime's own threads.
        let provider = self.provider;
        let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
    }
}

/// Installs the global subscriber: logs (filtered by `filter`, checked with
/// [`parse_filter`] when the settings were read; `info` should it not parse
/// anyway) and spans (this workspace's, `info` and above, whatever the log
/// filter says). Called from a tokio runtime. Safe to call more than once
/// (later calls are ignored), so in-process tests can start several services.
pub fn init(
    service: &'static str,
    format: LogFormat,
    filter: &str,
    traces: &TraceSettings,
) -> Telemetry {
    let provider = tracer_provider(service, traces);
    let filter = parse_filter(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = match format {
        LogFormat::Human => fmt::layer().with_target(true).boxed(),
        LogFormat::Json => fmt::layer()
            .fmt_fields(fmt::format::JsonFields::new())
            .event_format(json_trace::JsonWithTrace::new())
            .boxed(),
    };
    let result = tracing_subscriber::registry()
        .with(logs.with_filter(filter))
        .with(spans_layer(&provider))
        .try_init();
    // Already installed (a second service in the same test process): keep the first.
    drop(result);
    Telemetry { provider }
}

/// The `tracing` → OpenTelemetry layer on `provider`, limited to our own
/// spans (a library's spans would only add noise and cost). Public for
/// tests that install their own subscriber.
pub fn spans_layer<S>(provider: &SdkTracerProvider) -> impl tracing_subscriber::Layer<S>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(provider.tracer("switchyard"))
        .with_filter(filter::filter_fn(|meta| {
            meta.target().starts_with("switchyard") && *meta.level() <= tracing::Level::INFO
        }))
}

/// A provider that names `service` and exports over OTLP/HTTP when an
/// endpoint is configured; otherwise it only gives spans their ids.
pub fn tracer_provider(service: &'static str, traces: &TraceSettings) -> SdkTracerProvider {
    let resource = Resource::builder_empty()
        .with_service_name(traces.service_name(service))
        .build();
    let builder = SdkTracerProvider::builder().with_resource(resource);
    let Some(endpoint) = traces.endpoint() else {
        return builder.build();
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(otlp_client::OtlpClient::new(traces.export_timeout))
        .with_endpoint(endpoint.as_str())
        .with_timeout(traces.export_timeout)
        .build();
    match exporter {
        Ok(exporter) => builder.with_batch_exporter(exporter).build(),
        Err(e) => {
            // The endpoint was checked when read; should the exporter still
            // refuse it, the service runs without exporting rather than not at all.
            tracing::error!(error = %e, "cannot export traces; spans stay local");
            builder.build()
        }
    }
}
