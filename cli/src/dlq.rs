//! `switchyard dlq …`: the dead-letter stream (`DLQ`, subjects
//! `dlq.<direction>.<tenant>`), filtered by tenant, direction, time and
//! reason. A named tenant is always read through its own exact subjects.
//! Purging and replaying need `--tenant` (or an explicit `--all-tenants`), so
//! no command touches another tenant's letters by accident.

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use clap::{Args, Subcommand};
use serde::Serialize;
use switchyard_shared::{
    ids::TenantId,
    lanes::{
        dead_letter::{self, DeadLetterCode},
        message::HEADER_ORIGINAL_SUBJECT,
    },
    subjects::{self, Direction},
};
use time::OffsetDateTime;

use crate::{
    context::Context,
    exit::{CliError, CliResult, Exit},
    output::{self, Output},
    replay,
    stored::{self, Stored, fmt_time, parse_time},
};

/// Header linking a replayed message (and its next dead letter) to the DLQ sequence it came from.
pub use switchyard_shared::replies::HEADER_REPLAY_OF;

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters (all tenants unless --tenant).
    List(Filter),
    /// Show one dead letter with its headers and payload.
    Show {
        /// The DLQ stream sequence (from `dlq list`).
        sequence: u64,
    },
    /// Republish dead letters to their tenant's work subject (needs --tenant or --all-tenants).
    Replay(replay::ReplayArgs),
    /// Delete dead letters for good (needs --tenant or --all-tenants; asks first).
    Purge(PurgeArgs),
}

/// Which dead letters a command applies to.
#[derive(Debug, Args, Clone, Default)]
pub struct Filter {
    /// Only this tenant's letters (read through its exact subjects).
    #[arg(long)]
    pub tenant: Option<TenantId>,
    /// Every tenant (explicit opt-in for replay and purge).
    #[arg(long, conflicts_with = "tenant")]
    pub all_tenants: bool,
    /// inbound or outbound (default both).
    #[arg(long, value_parser = parse_direction)]
    pub direction: Option<Direction>,
    /// Dead-lettered at or after: RFC 3339 or a duration ago (2h).
    #[arg(long, value_parser = parse_time)]
    pub since: Option<OffsetDateTime>,
    /// Dead-lettered at or before: RFC 3339 or a duration ago.
    #[arg(long, value_parser = parse_time)]
    pub until: Option<OffsetDateTime>,
    /// Only letters with this reason code (e.g. attempts_exhausted).
    #[arg(long)]
    pub reason: Option<DeadLetterCode>,
}

fn parse_direction(raw: &str) -> Result<Direction, String> {
    Direction::parse(raw)
        .ok_or_else(|| format!("unknown direction {raw:?}; expected inbound, outbound or notify"))
}

impl Filter {
    /// The subjects to read: a named tenant's exact subjects, else per-direction wildcards.
    pub fn subjects(&self) -> Vec<String> {
        let directions = match self.direction {
            Some(d) => vec![d],
            None => vec![Direction::Inbound, Direction::Outbound, Direction::Notify],
        };
        directions
            .into_iter()
            .map(|d| match &self.tenant {
                Some(t) => subjects::dead_letter(d, t),
                None => subjects::dead_letter_filter(d),
            })
            .collect()
    }

    /// Refuses a destructive command that names no tenant and did not opt in to all.
    pub fn require_scope(&self, command: &str) -> CliResult<()> {
        if self.tenant.is_none() && !self.all_tenants {
            return Err(CliError::bad_input(format!(
                "{command} needs --tenant <id> (or an explicit --all-tenants)"
            )));
        }
        Ok(())
    }

    /// Whether a filter beyond tenant and direction applies (purge must then go letter by letter).
    pub fn is_fine_grained(&self) -> bool {
        self.since.is_some() || self.until.is_some() || self.reason.is_some()
    }
}

/// A dead letter as an operator sees it.
#[derive(Debug, Clone, Serialize)]
pub struct DeadLetter {
    pub sequence: u64,
    pub subject: String,
    /// From the DLQ subject's tenant token (the only source of the tenant).
    pub tenant: Option<TenantId>,
    pub direction: Option<Direction>,
    /// The `Switchyard-Dlq-Reason` header (empty when missing).
    pub reason: DeadLetterCode,
    pub attempts: u32,
    pub last_error: String,
    pub original_subject: Option<String>,
    pub original_msg_id: Option<String>,
    pub event_id: Option<String>,
    /// The DLQ sequence this message was itself a replay of.
    pub replay_of: Option<u64>,
    #[serde(with = "time::serde::rfc3339")]
    pub dead_at: OffsetDateTime,
    pub payload_bytes: usize,
    #[serde(skip)]
    pub stored: Stored,
}

impl DeadLetter {
    pub fn from_stored(stored: Stored) -> Self {
        let get = |h: &str| stored.header(h).map(str::to_owned);
        let direction = stored.subject.split('.').nth(1).and_then(Direction::parse);
        Self {
            sequence: stored.sequence,
            subject: stored.subject.clone(),
            tenant: subjects::tenant_of(&stored.subject),
            direction,
            reason: DeadLetterCode::parse(&get(dead_letter::HEADER_REASON).unwrap_or_default()),
            attempts: get(dead_letter::HEADER_ATTEMPTS)
                .and_then(|a| a.parse().ok())
                .unwrap_or(0),
            last_error: get(dead_letter::HEADER_LAST_ERROR).unwrap_or_default(),
            original_subject: get(HEADER_ORIGINAL_SUBJECT),
            original_msg_id: get(dead_letter::HEADER_ORIGINAL_MSG_ID),
            event_id: get(switchyard_shared::events::HEADER_EVENT_ID),
            replay_of: get(HEADER_REPLAY_OF).and_then(|s| s.parse().ok()),
            dead_at: stored.time,
            payload_bytes: stored.payload.len(),
            stored,
        }
    }
}

/// The dead letters `filter` selects, in stream order.
pub async fn select(
    js: &async_nats::jetstream::Context,
    filter: &Filter,
) -> CliResult<Vec<DeadLetter>> {
    let found = stored::read(
        js,
        subjects::DLQ_STREAM,
        filter.subjects(),
        filter.since,
        filter.until,
    )
    .await?;
    Ok(found
        .into_iter()
        .map(DeadLetter::from_stored)
        .filter(|l| filter.reason.as_ref().is_none_or(|r| &l.reason == r))
        .collect())
}

#[derive(Debug, Args)]
pub struct PurgeArgs {
    #[command(flatten)]
    pub filter: Filter,
    /// Do not ask (for scripts). Required when stdin is not a terminal.
    #[arg(long)]
    pub yes: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct PurgeReport {
    pub purged: u64,
    /// `subject` (whole tenant subjects) or `sequence` (letter by letter, for finer filters).
    pub by: &'static str,
}

/// Deletes the selected letters: a whole tenant subject at once when only
/// tenant and direction filter, else one sequence at a time.
pub async fn purge(js: &async_nats::jetstream::Context, filter: &Filter) -> CliResult<PurgeReport> {
    filter.require_scope("purge")?;
    let stream = js.get_stream(subjects::DLQ_STREAM).await?;
    if !filter.is_fine_grained() {
        let mut purged = 0;
        for subject in filter.subjects() {
            purged += stream.purge().filter(subject).await?.purged;
        }
        return Ok(PurgeReport {
            purged,
            by: "subject",
        });
    }
    let mut purged = 0;
    for letter in select(js, filter).await? {
        if stream.delete_message(letter.sequence).await? {
            purged += 1;
        }
    }
    Ok(PurgeReport {
        purged,
        by: "sequence",
    })
}

/// Asks on the terminal for a destructive step; refuses without a terminal.
pub fn confirm(yes: bool, question: &str) -> CliResult<()> {
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(CliError::bad_input(
            "refusing without confirmation: stdin is not a terminal; pass --yes",
        ));
    }
    let mut err = std::io::stderr();
    write!(err, "{question} [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    if matches!(answer.trim(), "y" | "Y" | "yes") {
        Ok(())
    } else {
        Err(CliError::bad_input("not confirmed; nothing changed"))
    }
}

fn opt(v: &Option<String>) -> String {
    v.clone().unwrap_or_else(|| "-".to_owned())
}

fn write_list(w: &mut dyn std::io::Write, letters: &[DeadLetter]) -> std::io::Result<()> {
    let mut t = output::table([
        "seq",
        "tenant",
        "dir",
        "reason",
        "attempts",
        "dead at",
        "event",
        "replay of",
    ]);
    for l in letters {
        t.add_row(vec![
            l.sequence.to_string(),
            l.tenant
                .as_ref()
                .map_or_else(|| "?".to_owned(), |t| t.to_string()),
            l.direction.map_or("?", Direction::as_str).to_owned(),
            l.reason.to_string(),
            l.attempts.to_string(),
            fmt_time(l.dead_at),
            opt(&l.event_id),
            l.replay_of
                .map_or_else(|| "-".to_owned(), |s| s.to_string()),
        ]);
    }
    output::write_table(w, &t)?;
    writeln!(w, "{} dead letter(s)", letters.len())
}

#[derive(Serialize)]
struct Shown<'a> {
    #[serde(flatten)]
    letter: &'a DeadLetter,
    headers: Vec<(String, String)>,
    payload: serde_json::Value,
}

pub async fn run(command: DlqCommand, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let js = ctx.jetstream().await?;
    match command {
        DlqCommand::List(filter) => {
            let letters = select(&js, &filter).await?;
            out.emit(&letters, |w| write_list(w, &letters))?;
            Ok(Exit::Ok)
        }
        DlqCommand::Show { sequence } => {
            let stream = js.get_stream(subjects::DLQ_STREAM).await?;
            let raw = stream.get_raw_message(sequence).await.map_err(|e| {
                CliError::bad_input(format!("no dead letter with sequence {sequence}: {e}"))
            })?;
            let letter = DeadLetter::from_stored(Stored {
                sequence: raw.sequence,
                subject: raw.subject.to_string(),
                headers: raw.headers,
                payload: raw.payload,
                time: raw.time,
            });
            let headers: Vec<(String, String)> = letter
                .stored
                .headers
                .iter()
                .flat_map(|(k, vs)| {
                    vs.iter()
                        .map(move |v| (k.to_string(), v.as_str().to_owned()))
                })
                .collect();
            let payload = serde_json::from_slice(&letter.stored.payload).unwrap_or_else(|_| {
                serde_json::Value::String(
                    String::from_utf8_lossy(&letter.stored.payload).into_owned(),
                )
            });
            let shown = Shown {
                letter: &letter,
                headers,
                payload,
            };
            out.emit(&shown, |w| {
                write_list(w, std::slice::from_ref(&letter))?;
                writeln!(w, "subject: {}", letter.subject)?;
                writeln!(w, "last error: {}", letter.last_error)?;
                for (k, v) in &shown.headers {
                    writeln!(w, "  {k}: {v}")?;
                }
                writeln!(w, "payload: {}", shown.payload)
            })?;
            Ok(Exit::Ok)
        }
        DlqCommand::Replay(args) => replay::run(args, &js, out).await,
        DlqCommand::Purge(args) => {
            args.filter.require_scope("purge")?;
            let scope = args
                .filter
                .tenant
                .as_ref()
                .map_or_else(|| "EVERY tenant".to_owned(), |t| format!("tenant {t}"));
            confirm(
                args.yes,
                &format!("Purge the selected dead letters of {scope}?"),
            )?;
            let report = purge(&js, &args.filter).await?;
            out.emit(&report, |w| {
                writeln!(w, "purged {} dead letter(s)", report.purged)
            })?;
            Ok(Exit::Ok)
        }
    }
}
