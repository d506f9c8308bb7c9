//! `tenants cloud reseal`: after a key rotation (a new key first in
//! `SWITCHYARD_CLOUD_TOKEN_KEYS`, the old one after it), every sealed token
//! is opened and sealed again under the first key, keeping its state. A
//! token under a key the setting does not hold, or one that does not open,
//! is reported and left alone; the exit code is then 4, so the old key is
//! not dropped while a token still needs it.

use clap::Args;
use serde::Serialize;
use switchyard_shared::{
    cloud_api::{channel, token_box::OpenError},
    ids::TenantId,
};

use crate::{
    context::Context,
    exit::{CliResult, Exit},
    output::{self, Output},
};

#[derive(Debug, Args)]
pub struct ResealArgs {
    /// Report what would be re-sealed; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ResealOutcome {
    /// Already under the sealing key.
    Current,
    Resealed,
    WouldReseal,
    /// Its key is not in the setting: left alone.
    UnknownKey,
    /// It does not open under its key for its tenant: left alone.
    Corrupt,
    /// The row changed while this ran (a rotation): left alone; run again.
    ChangedMeanwhile,
}

impl ResealOutcome {
    fn as_str(self) -> &'static str {
        match self {
            ResealOutcome::Current => "current",
            ResealOutcome::Resealed => "resealed",
            ResealOutcome::WouldReseal => "would reseal",
            ResealOutcome::UnknownKey => "UNKNOWN KEY (left alone)",
            ResealOutcome::Corrupt => "DOES NOT OPEN (left alone)",
            ResealOutcome::ChangedMeanwhile => "changed meanwhile (run again)",
        }
    }

    fn left_alone(self) -> bool {
        matches!(
            self,
            ResealOutcome::UnknownKey | ResealOutcome::Corrupt | ResealOutcome::ChangedMeanwhile
        )
    }
}

#[derive(Debug, Serialize)]
pub struct ResealRow {
    pub tenant: TenantId,
    pub from_key_id: String,
    pub outcome: ResealOutcome,
}

#[derive(Debug, Serialize)]
pub struct ResealReport {
    pub sealing_key_id: String,
    pub dry_run: bool,
    pub tenants: Vec<ResealRow>,
}

pub async fn run(args: ResealArgs, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    let keys = super::token_keys(ctx.env())?;
    let pool = ctx.db()?;
    let sealing = keys.sealing_key_id().to_owned();
    let mut rows = Vec::new();
    for (tenant, sealed) in channel::sealed_tokens(&pool).await? {
        let outcome = if sealed.key_id == sealing {
            ResealOutcome::Current
        } else {
            match keys.open(&tenant, &sealed) {
                Err(OpenError::UnknownKey(_)) => ResealOutcome::UnknownKey,
                Err(OpenError::Corrupt(_)) => ResealOutcome::Corrupt,
                Ok(_) if args.dry_run => ResealOutcome::WouldReseal,
                Ok(token) => {
                    let resealed = keys.seal(&tenant, &token);
                    if channel::reseal(&pool, &tenant, &sealed, &resealed).await? {
                        ResealOutcome::Resealed
                    } else {
                        ResealOutcome::ChangedMeanwhile
                    }
                }
            }
        };
        rows.push(ResealRow {
            tenant,
            from_key_id: sealed.key_id,
            outcome,
        });
    }
    let report = ResealReport {
        sealing_key_id: sealing,
        dry_run: args.dry_run,
        tenants: rows,
    };
    let left = report
        .tenants
        .iter()
        .filter(|r| r.outcome.left_alone())
        .count();
    out.emit(&report, |w| {
        let mut t = output::table(vec!["tenant", "sealed with", "outcome"]);
        for r in &report.tenants {
            t.add_row(vec![
                r.tenant.to_string(),
                r.from_key_id.clone(),
                r.outcome.as_str().to_owned(),
            ]);
        }
        if report.dry_run {
            writeln!(w, "dry run: nothing changed")?;
        }
        output::write_table(w, &t)?;
        if left == 0 && report.dry_run {
            writeln!(w, "every token would be sealed with {}", report.sealing_key_id)
        } else if left == 0 {
            writeln!(
                w,
                "every token is sealed with {}: the other keys may leave SWITCHYARD_CLOUD_TOKEN_KEYS",
                report.sealing_key_id
            )
        } else {
            writeln!(
                w,
                "{left} token(s) left alone: keep their keys in SWITCHYARD_CLOUD_TOKEN_KEYS, or rotate-token those tenants"
            )
        }
    })?;
    Ok(if left == 0 { Exit::Ok } else { Exit::Partial })
}
