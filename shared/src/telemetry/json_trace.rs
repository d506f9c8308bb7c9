//! JSON log lines that name their trace: `tracing-subscriber`'s JSON format
//! (flattened fields, as before), plus `trace_id` and `span_id` of the span
//! the line was written in, so a log search can jump to the trace and back.

use opentelemetry::trace::TraceContextExt as _;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;
use tracing_subscriber::{
    fmt::{
        FmtContext, FormatEvent,
        format::{self, Format, Json, JsonFields, Writer},
    },
    registry::LookupSpan,
};

/// The event format of `SWITCHYARD_LOG_FORMAT=json`.
pub(super) struct JsonWithTrace {
    inner: Format<Json>,
}

impl JsonWithTrace {
    pub(super) fn new() -> Self {
        Self {
            inner: format().json().flatten_event(true).with_current_span(false),
        }
    }
}

fn format() -> Format {
    format::Format::default()
}

impl<S> FormatEvent<S, JsonFields> for JsonWithTrace
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, JsonFields>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        // The span the event is in, whether or not the log filter shows
        // spans of its level (`ctx.lookup_current()` would skip those).
        let current = tracing::Span::current();
        let ids = (!current.is_none())
            .then(|| {
                let cx = current.context();
                let span = cx.span();
                let sc = span.span_context();
                sc.is_valid().then(|| {
                    format!(
                        r#","trace_id":"{}","span_id":"{}""#,
                        sc.trace_id(),
                        sc.span_id()
                    )
                })
            })
            .flatten();
        match (ids, line.trim_end().strip_suffix('}')) {
            (Some(ids), Some(object)) => writeln!(writer, "{object}{ids}}}"),
            _ => writer.write_str(&line),
        }
    }
}
