//! Reading stored messages back out of a stream: an ordered, ephemeral
//! consumer filtered by exact subjects (a named tenant's own subjects, never
//! a wildcard across tenants), optionally from a start time, bounded by what
//! was pending when it was created, so a command that republishes into the
//! same stream never reads its own output.

use std::time::Duration;

use async_nats::{
    HeaderMap,
    jetstream::{self, consumer::DeliverPolicy},
};
use futures::StreamExt as _;
use time::OffsetDateTime;

use crate::exit::CliResult;

/// How long to wait for the next message before giving up on a read.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One stored message.
#[derive(Debug, Clone)]
pub struct Stored {
    pub sequence: u64,
    pub subject: String,
    pub headers: HeaderMap,
    pub payload: bytes::Bytes,
    /// When the stream stored it.
    pub time: OffsetDateTime,
}

impl Stored {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).map(|v| v.as_str())
    }
}

/// Every message of `stream` on `filters`, stored in `[since, until]`, in stream order.
pub async fn read(
    js: &jetstream::Context,
    stream: &str,
    filters: Vec<String>,
    since: Option<OffsetDateTime>,
    until: Option<OffsetDateTime>,
) -> CliResult<Vec<Stored>> {
    let stream = js.get_stream(stream).await?;
    let deliver_policy = match since {
        Some(start_time) => DeliverPolicy::ByStartTime { start_time },
        None => DeliverPolicy::All,
    };
    let (filter_subject, filter_subjects) = if filters.len() == 1 {
        (filters.into_iter().next().unwrap_or_default(), Vec::new())
    } else {
        (String::new(), filters)
    };
    let consumer = stream
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject,
            filter_subjects,
            deliver_policy,
            ..Default::default()
        })
        .await?;
    let pending = consumer.cached_info().num_pending;
    let mut out = Vec::new();
    if pending == 0 {
        return Ok(out);
    }
    let mut messages = consumer.messages().await?;
    let mut seen = 0u64;
    while seen < pending {
        let next = tokio::time::timeout(READ_TIMEOUT, messages.next())
            .await
            .map_err(|_| anyhow::anyhow!("timed out reading {} from the stream", seen + 1))?;
        let Some(message) = next else { break };
        let message = message?;
        seen += 1;
        let info = message
            .info()
            .map_err(|e| anyhow::anyhow!("message info: {e}"))?;
        let (sequence, time) = (info.stream_sequence, info.published);
        if until.is_some_and(|u| time > u) {
            break;
        }
        out.push(Stored {
            sequence,
            subject: message.subject.to_string(),
            headers: message.headers.clone().unwrap_or_default(),
            payload: message.payload.clone(),
            time,
        });
    }
    Ok(out)
}

/// Parses `2026-01-31T12:00:00Z` or a duration ago (`90m`, `2h`, `3days`).
pub fn parse_time(raw: &str) -> Result<OffsetDateTime, String> {
    if let Ok(t) = OffsetDateTime::parse(raw, &time::format_description::well_known::Rfc3339) {
        return Ok(t);
    }
    let ago = humantime::parse_duration(raw)
        .map_err(|_| format!("{raw:?} is neither an RFC 3339 time nor a duration ago (e.g. 2h)"))?;
    Ok(OffsetDateTime::now_utc() - ago)
}

/// RFC 3339, for tables.
pub fn fmt_time(t: OffsetDateTime) -> String {
    t.replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| t.to_string())
}
