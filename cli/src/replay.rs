//! `dlq replay`: dead letters go back through the normal path, to their
//! tenant's work subject, so they meet the same fair-share limits as live
//! traffic.
//!
//! - The tenant comes from the DLQ subject's tenant token only, and must equal
//!   the tenant of the recorded original subject (and, outbound, the reply's
//!   own `tenant`); a letter where they disagree is refused, never sent.
//! - Each letter is republished under `Nats-Msg-Id: replay:<dlq seq>`: new (the
//!   original id would be dropped silently inside the duplicate window) yet
//!   deterministic, so a crashed replay run re-run within the window stores
//!   nothing twice. The event id headers are kept: the router derives the same
//!   reply ids and the sender's ledger, keyed by (tenant, reply id), stops a
//!   second send whatever the window.
//! - `Switchyard-Replay-Of: <dlq seq>` travels with the message, so if it dies
//!   again its new dead letter links to the old one.
//! - Outbound replies are rewritten with `priority: bulk` and republished to
//!   the tenant's bulk lane (`bulk.<tenant>`), which the sender serves only
//!   when that tenant has no live reply waiting, within its share of the fleet
//!   budget. Inbound events go back to `inbound.<tenant>`; the router answers
//!   an event carrying `Switchyard-Replay-Of` in bulk too.
//! - In batches (`--batch`): publish, wait for every ack, then delete that
//!   batch's letters (unless `--keep`). A letter is deleted only after its
//!   republish is stored; one that fails again comes back as a new letter.

use async_nats::{HeaderMap, jetstream};
use clap::Args;
use serde::Serialize;
use switchyard_shared::{
    ids::TenantId,
    lanes::message::HEADER_ORIGINAL_SUBJECT,
    replies::{OutboundReply, Priority},
    subjects::{self, Direction},
};

use crate::{
    dlq::{self, DeadLetter, Filter, HEADER_REPLAY_OF},
    exit::{CliResult, Exit},
    output::{self, Output},
    stored::fmt_time,
};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub filter: Filter,
    /// Letters republished before waiting for their acks and deleting them (1–1000).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=1000))]
    pub batch: u16,
    /// Show what would be republished; publish and delete nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep the dead letters after a successful replay (default: delete them).
    #[arg(long)]
    pub keep: bool,
}

/// How a replay runs.
#[derive(Debug, Clone, Copy)]
pub struct ReplayOptions {
    pub batch: usize,
    pub dry_run: bool,
    pub keep: bool,
}

/// One letter's fate.
#[derive(Debug, Clone, Serialize)]
pub struct ReplayItem {
    pub sequence: u64,
    pub tenant: Option<TenantId>,
    /// Where it was (or would be) republished.
    pub target: Option<String>,
    pub msg_id: String,
    /// `republished`, `duplicate` (already stored by an earlier run), `would_republish`, `refused`.
    pub outcome: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplayReport {
    pub items: Vec<ReplayItem>,
    pub republished: usize,
    pub duplicates: usize,
    pub refused: usize,
    pub deleted: usize,
    pub dry_run: bool,
}

impl ReplayReport {
    pub fn exit(&self) -> Exit {
        if self.refused > 0 {
            Exit::Partial
        } else {
            Exit::Ok
        }
    }
}

/// A letter ready to republish.
#[derive(Debug)]
pub struct Prepared {
    pub target: String,
    pub headers: HeaderMap,
    pub payload: bytes::Bytes,
    pub msg_id: String,
}

/// Headers the dead-lettering or the server added (`Nats-Msg-Id`,
/// `Nats-Pin-Id`, any `Nats-Expected-*`); not part of the message being replayed.
pub fn is_dead_letter_header(name: &str) -> bool {
    let n = name.to_ascii_lowercase();
    n.starts_with("switchyard-dlq-")
        || n.starts_with("nats-")
        || n == HEADER_ORIGINAL_SUBJECT.to_ascii_lowercase()
        || n == HEADER_REPLAY_OF.to_ascii_lowercase()
}

/// The deterministic replay id of a dead letter.
pub fn replay_msg_id(sequence: u64) -> String {
    format!("replay:{sequence}")
}

/// Decides where and how a letter is republished, or why it is refused.
pub fn prepare(letter: &DeadLetter) -> Result<Prepared, String> {
    let tenant = letter
        .tenant
        .as_ref()
        .ok_or_else(|| format!("subject {} has no valid tenant token", letter.subject))?;
    let direction = letter
        .direction
        .ok_or_else(|| format!("subject {} has no direction", letter.subject))?;
    let target = match direction {
        Direction::Inbound => subjects::inbound(tenant),
        Direction::Outbound | Direction::Bulk => subjects::bulk(tenant),
        // A notification goes back to its tenant's notifier as it was.
        Direction::Notify => subjects::notify(tenant),
    };
    if let Some(original) = &letter.original_subject {
        let same_tenant = subjects::tenant_of(original).as_ref() == Some(tenant);
        // A reply dead-lettered from the bulk lane is an outbound letter too.
        let side = original.split('.').next();
        let same_direction = side == Some(direction.as_str())
            || (direction == Direction::Outbound && side == Some(Direction::Bulk.as_str()));
        if !same_tenant || !same_direction {
            return Err(format!(
                "original subject {original} does not belong to {tenant}'s {} work",
                direction.as_str()
            ));
        }
    }
    let payload = match direction {
        Direction::Inbound | Direction::Notify => letter.stored.payload.clone(),
        Direction::Outbound | Direction::Bulk => {
            let mut reply: OutboundReply = serde_json::from_slice(&letter.stored.payload)
                .map_err(|e| format!("not a reply: {e}"))?;
            if &reply.tenant != tenant {
                return Err(format!(
                    "the reply names tenant {} but was dead-lettered for {tenant}",
                    reply.tenant
                ));
            }
            reply.priority = Priority::Bulk;
            serde_json::to_vec(&reply)
                .map_err(|e| format!("cannot rewrite the reply: {e}"))?
                .into()
        }
    };
    let msg_id = replay_msg_id(letter.sequence);
    let mut headers = HeaderMap::new();
    for (name, values) in letter.stored.headers.iter() {
        if is_dead_letter_header(name.as_ref()) {
            continue;
        }
        for value in values {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(async_nats::header::NATS_MESSAGE_ID, msg_id.as_str());
    headers.insert(HEADER_REPLAY_OF, letter.sequence.to_string().as_str());
    Ok(Prepared {
        target,
        headers,
        payload,
        msg_id,
    })
}

/// Replays the letters `filter` selects (`--tenant` or `--all-tenants` required).
pub async fn replay(
    js: &jetstream::Context,
    filter: &Filter,
    options: ReplayOptions,
    mut on_batch: impl FnMut(usize),
) -> CliResult<ReplayReport> {
    filter.require_scope("replay")?;
    let letters = dlq::select(js, filter).await?;
    let stream = js.get_stream(subjects::DLQ_STREAM).await?;
    let mut report = ReplayReport {
        items: Vec::new(),
        republished: 0,
        duplicates: 0,
        refused: 0,
        deleted: 0,
        dry_run: options.dry_run,
    };
    for batch in letters.chunks(options.batch.max(1)) {
        let mut pending = Vec::new();
        for letter in batch {
            let prepared = match prepare(letter) {
                Ok(p) => p,
                Err(detail) => {
                    report.refused += 1;
                    report.items.push(ReplayItem {
                        sequence: letter.sequence,
                        tenant: letter.tenant.clone(),
                        target: None,
                        msg_id: String::new(),
                        outcome: "refused",
                        detail,
                    });
                    continue;
                }
            };
            if options.dry_run {
                report.items.push(ReplayItem {
                    sequence: letter.sequence,
                    tenant: letter.tenant.clone(),
                    target: Some(prepared.target),
                    msg_id: prepared.msg_id,
                    outcome: "would_republish",
                    detail: format!(
                        "{} x{} dead at {}",
                        letter.reason,
                        letter.attempts,
                        fmt_time(letter.dead_at)
                    ),
                });
                continue;
            }
            let ack = js
                .publish_with_headers(prepared.target.clone(), prepared.headers, prepared.payload)
                .await
                .map_err(|e| {
                    anyhow::anyhow!("republish of dead letter {}: {e}", letter.sequence)
                })?;
            pending.push((letter, prepared.target, prepared.msg_id, ack));
        }
        // Every republish of the batch must be stored before any letter is deleted.
        let mut stored = Vec::new();
        for (letter, target, msg_id, ack) in pending {
            let ack = ack.await.map_err(|e| {
                anyhow::anyhow!("republish of dead letter {}: {e}", letter.sequence)
            })?;
            let outcome = if ack.duplicate {
                report.duplicates += 1;
                "duplicate"
            } else {
                report.republished += 1;
                "republished"
            };
            report.items.push(ReplayItem {
                sequence: letter.sequence,
                tenant: letter.tenant.clone(),
                target: Some(target),
                msg_id,
                outcome,
                detail: String::new(),
            });
            stored.push(letter.sequence);
        }
        if !options.keep {
            for sequence in stored {
                if stream.delete_message(sequence).await? {
                    report.deleted += 1;
                }
            }
        }
        on_batch(batch.len());
    }
    Ok(report)
}

pub async fn run(args: ReplayArgs, js: &jetstream::Context, out: &mut Output) -> CliResult<Exit> {
    args.filter.require_scope("replay")?;
    let options = ReplayOptions {
        batch: usize::from(args.batch),
        dry_run: args.dry_run,
        keep: args.keep,
    };
    let bar = output::progress(0, "replay", out.is_json());
    let report = replay(js, &args.filter, options, |n| bar.inc(n as u64)).await;
    bar.finish_and_clear();
    let report = report?;
    out.emit(&report, |w| {
        let mut t = output::table(["dlq seq", "tenant", "target", "msg id", "outcome", "detail"]);
        for i in &report.items {
            t.add_row(vec![
                i.sequence.to_string(),
                i.tenant
                    .as_ref()
                    .map_or_else(|| "?".to_owned(), |t| t.to_string()),
                i.target.clone().unwrap_or_else(|| "-".to_owned()),
                i.msg_id.clone(),
                i.outcome.to_owned(),
                i.detail.clone(),
            ]);
        }
        if !report.items.is_empty() {
            output::write_table(w, &t)?;
        }
        if report.dry_run {
            writeln!(
                w,
                "dry run: {} letter(s) would be republished, {} refused; nothing changed",
                report.items.len() - report.refused,
                report.refused
            )
        } else {
            writeln!(
                w,
                "{} republished, {} already stored earlier, {} refused, {} dead letter(s) deleted",
                report.republished, report.duplicates, report.refused, report.deleted
            )
        }
    })?;
    Ok(report.exit())
}
