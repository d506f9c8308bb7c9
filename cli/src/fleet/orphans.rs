//! `fleet delete --orphan <bridge>…`: delete bridges that no tenant owns,
//! which the provider bills all the same. Each bridge is checked right
//! before its deletion, against a fresh provider list and the tenants table:
//! a bridge whose `customer_ref` is a tenant, or whose id a tenant row holds,
//! is refused (use `fleet delete <tenant>` for those), so a tenant created
//! since the last `reconcile` never loses its number. Calls are paced like
//! `fleet provision` (a `429` waits for `Retry-After`); Ctrl-C stops between
//! bridges and a re-run finishes the job (already deleted ones are "gone").

use std::io::{BufRead as _, IsTerminal as _, Write as _};

use serde::Serialize;
use sqlx::PgPool;
use switchyard_shared::{
    ids::BridgeId,
    wabridges::{BridgeState, WaBridgesClient, WaError},
};
use tokio_util::sync::CancellationToken;

use crate::{
    context::Context,
    exit::{CliError, CliResult, Exit},
    fleet::{
        pace::{Paced, ctrl_c, paced},
        summary::CENTS_PER_BRIDGE_MONTH,
    },
    output::{self, Output},
};

/// What happened to one named bridge.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum OrphanOutcome {
    /// Deleted at the provider (billing stops).
    Deleted {
        customer_ref: String,
        state: BridgeState,
    },
    /// `--dry-run`: it is an orphan and would be deleted.
    WouldDelete {
        customer_ref: String,
        state: BridgeState,
    },
    /// A tenant owns it: not deleted.
    Refused { customer_ref: String, owner: String },
    /// The provider does not (or no longer) know it: nothing to do.
    Gone,
    /// The provider refused or kept failing.
    Failed { error: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct OrphanRow {
    pub bridge_id: i64,
    #[serde(flatten)]
    pub outcome: OrphanOutcome,
}

#[derive(Debug, Clone, Serialize)]
pub struct OrphanReport {
    pub dry_run: bool,
    pub rows: Vec<OrphanRow>,
    /// What the deleted (or, dry, deletable) running bridges cost per month, in US cents.
    pub monthly_saving_cents: u64,
    pub rate_limited_waits: u32,
    pub not_reached: Vec<i64>,
}

impl OrphanReport {
    pub fn exit(&self) -> Exit {
        if !self.not_reached.is_empty() {
            Exit::Interrupted
        } else if self.rows.iter().any(|r| {
            matches!(
                r.outcome,
                OrphanOutcome::Refused { .. } | OrphanOutcome::Failed { .. }
            )
        }) {
            Exit::Partial
        } else {
            Exit::Ok
        }
    }
}

/// Who owns `bridge` according to the tenants table, if anyone.
async fn owner(pool: &PgPool, bridge: BridgeId, customer_ref: &str) -> CliResult<Option<String>> {
    Ok(sqlx::query_scalar::<_, String>(
        "SELECT id FROM tenants WHERE id = $1 OR bridge_id = $2 ORDER BY id LIMIT 1",
    )
    .bind(customer_ref)
    .bind(bridge.get())
    .fetch_optional(pool)
    .await?)
}

/// Checks and (unless `dry_run`) deletes each bridge, one at a time.
pub async fn delete_orphans(
    pool: &PgPool,
    client: &WaBridgesClient,
    bridges: &[BridgeId],
    dry_run: bool,
    stop: &CancellationToken,
) -> CliResult<OrphanReport> {
    let mut report = OrphanReport {
        dry_run,
        rows: Vec::new(),
        monthly_saving_cents: 0,
        rate_limited_waits: 0,
        not_reached: Vec::new(),
    };
    for (i, &bridge) in bridges.iter().enumerate() {
        let interrupted = |report: &mut OrphanReport| {
            report.not_reached = bridges[i..].iter().map(|b| b.get()).collect();
        };
        let listed = match paced(stop, &mut report.rate_limited_waits, || client.list()).await {
            Paced::Interrupted => {
                interrupted(&mut report);
                break;
            }
            Paced::Done(listed) => listed?,
        };
        let outcome = match listed.into_iter().find(|b| b.id == bridge) {
            None => OrphanOutcome::Gone,
            Some(live) => match owner(pool, bridge, &live.customer_ref).await? {
                Some(owner) => OrphanOutcome::Refused {
                    customer_ref: live.customer_ref,
                    owner,
                },
                None if dry_run => OrphanOutcome::WouldDelete {
                    customer_ref: live.customer_ref,
                    state: live.state,
                },
                None => {
                    let deleted = paced(stop, &mut report.rate_limited_waits, || {
                        client.delete(bridge)
                    })
                    .await;
                    match deleted {
                        Paced::Interrupted => {
                            interrupted(&mut report);
                            break;
                        }
                        Paced::Done(Ok(())) => OrphanOutcome::Deleted {
                            customer_ref: live.customer_ref,
                            state: live.state,
                        },
                        Paced::Done(Err(WaError::Rejected { status: 404, .. })) => {
                            OrphanOutcome::Gone
                        }
                        Paced::Done(Err(e)) => OrphanOutcome::Failed {
                            error: e.to_string(),
                        },
                    }
                }
            },
        };
        if let OrphanOutcome::Deleted { state, .. } | OrphanOutcome::WouldDelete { state, .. } =
            &outcome
            && *state == BridgeState::Running
        {
            report.monthly_saving_cents += CENTS_PER_BRIDGE_MONTH;
        }
        report.rows.push(OrphanRow {
            bridge_id: bridge.get(),
            outcome,
        });
    }
    Ok(report)
}

/// Asks on the terminal; `false` unless the operator types `delete N`.
fn confirm(bridges: &[BridgeId]) -> CliResult<bool> {
    let ids: Vec<String> = bridges.iter().map(ToString::to_string).collect();
    let expected = format!("delete {}", bridges.len());
    let mut err = std::io::stderr();
    write!(
        err,
        "Delete {} orphan bridge(s) ({})? Deletion is permanent; each is checked against the tenants table first.\nType `{expected}` to confirm: ",
        bridges.len(),
        ids.join(", ")
    )?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == expected)
}

pub async fn run(
    bridges: Vec<BridgeId>,
    yes: bool,
    dry_run: bool,
    ctx: &Context,
    out: &mut Output,
) -> CliResult<Exit> {
    let mut chosen: Vec<BridgeId> = Vec::new();
    for b in bridges {
        if !chosen.contains(&b) {
            chosen.push(b);
        }
    }
    if !dry_run && !yes && !std::io::stdin().is_terminal() {
        return Err(CliError::bad_input(
            "refusing to delete without confirmation: stdin is not a terminal; pass --yes (or --dry-run)",
        ));
    }
    let pool = ctx.db()?;
    let client = ctx.wabridges()?;
    if !dry_run && !yes && !confirm(&chosen)? {
        return Err(CliError::bad_input("not confirmed; nothing deleted"));
    }
    let (stop, signal) = ctrl_c();
    let report = delete_orphans(&pool, &client, &chosen, dry_run, &stop).await;
    signal.abort();
    let report = report?;
    out.emit(&report, |w| {
        let mut t = output::table(["bridge", "customer_ref", "outcome", "detail"]);
        let mut deleted = 0;
        for r in &report.rows {
            let (customer_ref, outcome, detail) = match &r.outcome {
                OrphanOutcome::Deleted {
                    customer_ref,
                    state,
                } => {
                    deleted += 1;
                    (customer_ref.clone(), "deleted", format!("was {state}"))
                }
                OrphanOutcome::WouldDelete {
                    customer_ref,
                    state,
                } => {
                    deleted += 1;
                    (
                        customer_ref.clone(),
                        "would delete",
                        format!("{state}, no tenant"),
                    )
                }
                OrphanOutcome::Refused {
                    customer_ref,
                    owner,
                } => (
                    customer_ref.clone(),
                    "refused",
                    format!("owned by tenant {owner}: use `fleet delete {owner}`"),
                ),
                OrphanOutcome::Gone => (
                    "-".to_owned(),
                    "gone",
                    "the provider does not know it".to_owned(),
                ),
                OrphanOutcome::Failed { error } => ("-".to_owned(), "failed", error.clone()),
            };
            t.add_row(vec![
                r.bridge_id.to_string(),
                customer_ref,
                outcome.to_owned(),
                detail,
            ]);
        }
        output::write_table(w, &t)?;
        writeln!(
            w,
            "{deleted} orphan(s) {}; ${}.{:02}/month {}",
            if report.dry_run {
                "would be deleted"
            } else {
                "deleted"
            },
            report.monthly_saving_cents / 100,
            report.monthly_saving_cents % 100,
            if report.dry_run {
                "would be saved (dry run: nothing deleted)"
            } else {
                "saved"
            },
        )?;
        if !report.not_reached.is_empty() {
            writeln!(
                w,
                "interrupted: {} bridge(s) not reached; run the same command again to finish",
                report.not_reached.len()
            )?;
        }
        Ok(())
    })?;
    Ok(report.exit())
}
