//! W3C trace context across the NATS hops: the `traceparent` (and
//! `tracestate`) headers of a published message carry the publishing span,
//! and the consumer's span for that message becomes its child. Written and
//! read by OpenTelemetry's own propagator through two small adapters over
//! `async_nats::HeaderMap`, so no service parses or formats the header itself.
//!
//! The context lives in the `tracing` spans (through the `tracing-opentelemetry`
//! layer that [`crate::telemetry::init`] installs); without that layer there is
//! no context, nothing is injected, and an extracted parent is ignored.

use async_nats::HeaderMap;
use opentelemetry::propagation::{Extractor, Injector, TextMapPropagator as _};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

/// The trace context of a span as header text (`traceparent` and, when
/// present, `tracestate`), for a message published later or from another
/// place than the span, e.g. ingest's outbox. Empty when the span has none.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TraceContext(String);

impl TraceContext {
    /// The context of `span` (its own span id as the parent of what follows).
    pub fn of(span: &tracing::Span) -> Self {
        let mut carried = HeaderMap::new();
        inject(span, &mut carried);
        Self(
            carried
                .get("traceparent")
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default(),
        )
    }

    /// A context stored earlier by [`TraceContext::as_str`]. Not checked
    /// here: [`TraceContext::add_to`] goes through the propagator, which
    /// drops what is not a valid `traceparent`.
    pub fn from_stored(stored: String) -> Self {
        Self(stored)
    }

    /// The `traceparent` text (empty for none), to store.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Adds the context to `headers` (nothing when there is none).
    pub fn add_to(&self, headers: &mut HeaderMap) {
        let mut stored = HeaderMap::new();
        if !self.0.is_empty() {
            stored.insert("traceparent", self.0.as_str());
        }
        let cx = TraceContextPropagator::new().extract(&Headers(&stored));
        TraceContextPropagator::new().inject_context(&cx, &mut HeadersMut(headers));
    }
}

/// Writes the context of `span` into `headers`.
pub fn inject(span: &tracing::Span, headers: &mut HeaderMap) {
    TraceContextPropagator::new().inject_context(&span.context(), &mut HeadersMut(headers));
}

/// Makes `span` a child of the context `headers` carry (a message from
/// another service). Call it before the span is first entered. Headers
/// without a valid context leave the span a root of its own trace.
pub fn adopt(span: &tracing::Span, headers: &HeaderMap) {
    let parent = TraceContextPropagator::new().extract(&Headers(headers));
    // Fails only without the OpenTelemetry layer or for a span filtered out:
    // there is no trace to join then.
    let _ = span.set_parent(parent);
}

/// Makes `span` a child of a context carried in HTTP headers (a caller of
/// ingest's webhook that traces its own requests).
pub fn adopt_http(span: &tracing::Span, headers: &axum::http::HeaderMap) {
    let mut carried = HeaderMap::new();
    for name in TraceContextPropagator::new().fields() {
        if let Some(value) = headers.get(name).and_then(|v| v.to_str().ok()) {
            carried.insert(name, value);
        }
    }
    adopt(span, &carried);
}

/// Reads a NATS header map for the propagator.
struct Headers<'a>(&'a HeaderMap);

impl Extractor for Headers<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(|v| v.as_str())
    }

    fn keys(&self) -> Vec<&str> {
        self.0.iter().map(|(name, _)| name.as_ref()).collect()
    }
}

/// Writes into a NATS header map for the propagator.
struct HeadersMut<'a>(&'a mut HeaderMap);

impl Injector for HeadersMut<'_> {
    fn set(&mut self, key: &str, value: String) {
        self.0.insert(key, value.as_str());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stored_context_is_written_back_as_it_was() {
        let stored = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let mut headers = HeaderMap::new();

        TraceContext::from_stored(stored.to_owned()).add_to(&mut headers);

        assert_eq!(headers.get("traceparent").map(|v| v.as_str()), Some(stored));
    }

    #[test]
    fn nothing_or_garbage_stored_adds_no_header() {
        for stored in [
            "",
            "00-not-a-trace-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        ] {
            let mut headers = HeaderMap::new();

            TraceContext::from_stored(stored.to_owned()).add_to(&mut headers);

            assert!(headers.get("traceparent").is_none(), "{stored:?}");
        }
    }
}
