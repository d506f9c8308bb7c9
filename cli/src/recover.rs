//! `switchyard recover`: re-runs a tenant's inbound events from the event log
//! (stream `INBOUND`, subjects `inbound.<p>.<tenant>`) for a time range, even
//! when nothing was dead-lettered, e.g. after fixing a tenant's bot.
//!
//! Each event is republished to `inbound.<tenant>` under `Nats-Msg-Id:
//! recover:<stream seq>` (the original id would be dropped inside the
//! duplicate window) with its event id header kept, so the router derives the
//! same reply ids and the sender's ledger refuses a second send of any reply
//! already delivered. Messages that are themselves re-runs (a replay or an
//! earlier recovery) are skipped, so recovering twice never multiplies work.

use async_nats::{HeaderMap, jetstream};
use clap::Args;
use serde::Serialize;
use switchyard_shared::{events, ids::TenantId, subjects};
use time::OffsetDateTime;

use crate::{
    context::Context,
    dlq::HEADER_REPLAY_OF,
    exit::{CliError, CliResult, Exit},
    output::{self, Output},
    stored::{self, parse_time},
};

/// Header linking a recovered copy to the event log sequence it re-runs.
pub use switchyard_shared::replies::HEADER_RECOVER_OF;

#[derive(Debug, Args)]
pub struct RecoverArgs {
    /// The tenant whose events to re-run.
    #[arg(long)]
    pub tenant: TenantId,
    /// From: RFC 3339 or a duration ago (2h).
    #[arg(long, value_parser = parse_time)]
    pub since: OffsetDateTime,
    /// Until (default: now).
    #[arg(long, value_parser = parse_time)]
    pub until: Option<OffsetDateTime>,
    /// Events republished before waiting for their acks (1–1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub batch: u16,
    /// Events republished per second at most (1–10000). A recovery lands
    /// in the tenant's partition of `INBOUND` ahead of its neighbours'
    /// messages; paced, it interleaves with them instead of queueing them
    /// behind thousands of re-runs (the router benchmark measured 0.4–0.5 s
    /// of delay for neighbours behind 20,000 published at once).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u16).range(1..=10000))]
    pub rate: u16,
    /// Count what would be republished; publish nothing.
    #[arg(long)]
    pub dry_run: bool,
}

/// How fast and in what batches a recovery republishes.
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    /// Events republished before waiting for their acks.
    pub batch: usize,
    /// Events per second at most.
    pub rate: f64,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct RecoverReport {
    pub tenant: Option<TenantId>,
    /// Events in the range (re-runs excluded).
    pub events: usize,
    pub republished: usize,
    /// Already republished by an earlier run within the duplicate window.
    pub duplicates: usize,
    /// Copies made by earlier replays or recoveries, left alone.
    pub skipped_reruns: usize,
    pub dry_run: bool,
}

/// The deterministic recovery id of an event log entry.
pub fn recover_msg_id(sequence: u64) -> String {
    format!("recover:{sequence}")
}

/// Re-runs `tenant`'s inbound events stored in `[since, until]`.
pub async fn recover(
    js: &jetstream::Context,
    tenant: &TenantId,
    since: OffsetDateTime,
    until: Option<OffsetDateTime>,
    pace: Pace,
    dry_run: bool,
) -> CliResult<RecoverReport> {
    if until.is_some_and(|u| u < since) {
        return Err(CliError::bad_input("--until is before --since"));
    }
    // Exactly this tenant's subjects, whatever the partition.
    let filter = format!("{}.*.{tenant}", subjects::Direction::Inbound.as_str());
    let found = stored::read(
        js,
        subjects::INBOUND_STREAM,
        vec![filter],
        Some(since),
        until,
    )
    .await?;
    let mut report = RecoverReport {
        tenant: Some(tenant.clone()),
        dry_run,
        ..Default::default()
    };
    let target = subjects::inbound(tenant);
    let mut events_to_run = Vec::new();
    for message in found {
        if subjects::tenant_of(&message.subject).as_ref() != Some(tenant) {
            continue;
        }
        if message.header(HEADER_REPLAY_OF).is_some() || message.header(HEADER_RECOVER_OF).is_some()
        {
            report.skipped_reruns += 1;
            continue;
        }
        events_to_run.push(message);
    }
    report.events = events_to_run.len();
    if dry_run {
        return Ok(report);
    }
    let started = tokio::time::Instant::now();
    let mut sent = 0usize;
    for chunk in events_to_run.chunks(pace.batch.max(1)) {
        // Pacing, not synchronisation: the next batch may start once the
        // batches before it have kept to the rate.
        tokio::time::sleep_until(
            started + std::time::Duration::from_secs_f64(sent as f64 / pace.rate.max(1.0)),
        )
        .await;
        sent += chunk.len();
        let mut acks = Vec::new();
        for message in chunk {
            let mut headers = HeaderMap::new();
            for (name, values) in message.headers.iter() {
                // Server headers (`Nats-Msg-Id`, `Nats-Pin-Id`, …) are never copied.
                if name.to_string().to_ascii_lowercase().starts_with("nats-") {
                    continue;
                }
                for value in values {
                    headers.append(name.clone(), value.clone());
                }
            }
            if message.header(events::HEADER_EVENT_ID).is_none() {
                // Without an event id the router could not derive stable reply ids.
                return Err(anyhow::anyhow!(
                    "event log entry {} has no {} header; refusing to re-run it",
                    message.sequence,
                    events::HEADER_EVENT_ID
                )
                .into());
            }
            headers.insert(
                async_nats::header::NATS_MESSAGE_ID,
                recover_msg_id(message.sequence).as_str(),
            );
            headers.insert(HEADER_RECOVER_OF, message.sequence.to_string().as_str());
            acks.push(
                js.publish_with_headers(target.clone(), headers, message.payload.clone())
                    .await
                    .map_err(|e| anyhow::anyhow!("republish of {}: {e}", message.sequence))?,
            );
        }
        for ack in acks {
            let ack = ack.await.map_err(|e| anyhow::anyhow!("republish: {e}"))?;
            if ack.duplicate {
                report.duplicates += 1;
            } else {
                report.republished += 1;
            }
        }
    }
    Ok(report)
}

pub async fn run(args: RecoverArgs, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let js = ctx.jetstream().await?;
    let bar = output::progress(1, "recover", out.is_json());
    let report = recover(
        &js,
        &args.tenant,
        args.since,
        args.until,
        Pace {
            batch: usize::from(args.batch),
            rate: f64::from(args.rate),
        },
        args.dry_run,
    )
    .await;
    bar.finish_and_clear();
    let report = report?;
    out.emit(&report, |w| {
        if report.dry_run {
            writeln!(
                w,
                "dry run: {} event(s) of {} would be re-run ({} earlier re-run copies skipped); nothing published",
                report.events, args.tenant, report.skipped_reruns
            )
        } else {
            writeln!(
                w,
                "{} event(s) of {} re-run: {} republished, {} already republished earlier, {} earlier re-run copies skipped",
                report.events, args.tenant, report.republished, report.duplicates, report.skipped_reruns
            )
        }
    })?;
    Ok(Exit::Ok)
}
