//! `tenants remove <tenant>`: the offboarding path, one step after the
//! other, each of which looks at what is already done, so an interrupted or
//! failed run is finished by running the same command again:
//!
//! 1. **suspend**: every router and sender drops the tenant's messages from
//!    then on (announced at once; the tenant cache's TTL covers a lost
//!    announcement, so the command waits that long after suspending);
//! 2. **drain**: sends already under way (`deliveries` in `sending`) get
//!    `--drain-timeout` to finish; any still open then (a crashed attempt) is
//!    marked dead in the ledger, never retried;
//! 3. **bridge**: the tenant's bridge is deleted at the provider (billing
//!    stops; a bridge the provider no longer knows counts as deleted), paced
//!    on `Retry-After`;
//! 4. **data**: kept by default (the row stays, suspended and without a
//!    bridge, with its conversations, ledger and dead letters); `--purge`
//!    erases the tenant's messages in every stream (dead letters included),
//!    then its rows (idempotency keys, outbox, the tenant row and, by
//!    cascade, conversations and deliveries).
//!
//! It asks first (the tenant id typed on a terminal, or `--yes`);
//! `--dry-run` only says what each step would do.

use std::time::Duration;

use async_nats::jetstream::{ErrorCode, context::GetStreamErrorKind};
use clap::Args;
use serde::Serialize;
use sqlx::PgPool;
use switchyard_shared::{
    ids::{BridgeId, TenantId},
    subjects,
    tenants::{self, TenantStatus},
    wabridges::{WaBridgesClient, WaError},
};

use crate::{
    context::{Context, announce_tenant_change},
    exit::{CliError, CliResult, Exit},
    fleet::pace::{Paced, ctrl_c, paced},
    output::{self, Output},
};

/// After an announced suspension: time for every replica to read the
/// announcement and finish a step it had begun.
const CACHE_SETTLE: Duration = Duration::from_secs(3);
/// When the suspension could not be announced, the services' tenant cache
/// TTL is what bounds it (`SWITCHYARD_TENANT_CACHE_TTL`, read here too so an
/// operator running the services with another TTL can tell the CLI).
const DEFAULT_CACHE_TTL: Duration = Duration::from_secs(30);

#[derive(Debug, Args)]
pub struct RemoveArgs {
    /// The tenant to offboard.
    pub tenant: TenantId,
    /// Also erase the tenant's data: its messages in every stream (dead letters included),
    /// conversations, delivery ledger, idempotency keys and the tenant row. Default: kept.
    #[arg(long)]
    pub purge: bool,
    /// How long sends already under way may take to finish before they are marked dead.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub drain_timeout: Duration,
    /// Say what each step would do; change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask (for scripts). Required when stdin is not a terminal.
    #[arg(long)]
    pub yes: bool,
}

/// One step and what came of it.
#[derive(Debug, Clone, Serialize)]
pub struct Step {
    pub step: &'static str,
    /// `done`, `already`, `would` (dry run) or `kept`.
    pub outcome: &'static str,
    pub detail: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RemoveReport {
    pub tenant: TenantId,
    pub dry_run: bool,
    pub purge: bool,
    pub steps: Vec<Step>,
}

fn step(step: &'static str, outcome: &'static str, detail: impl Into<String>) -> Step {
    Step {
        step,
        outcome,
        detail: detail.into(),
    }
}

async fn sending(pool: &PgPool, tenant: &TenantId) -> CliResult<i64> {
    Ok(sqlx::query_scalar(
        "SELECT count(*) FROM deliveries WHERE tenant_id = $1 AND status = 'sending'",
    )
    .bind(tenant.as_str())
    .fetch_one(pool)
    .await?)
}

/// The tenant's bridge: the stored id, else the provider's bridge with its ref.
async fn find_bridge(
    client: &WaBridgesClient,
    stored: Option<BridgeId>,
    tenant: &TenantId,
    waits: &mut u32,
) -> CliResult<Option<BridgeId>> {
    if stored.is_some() {
        return Ok(stored);
    }
    let (stop, signal) = ctrl_c();
    let listed = paced(&stop, waits, || client.list()).await;
    signal.abort();
    match listed {
        Paced::Done(list) => Ok(list?
            .into_iter()
            .find(|b| b.customer_ref == tenant.as_str())
            .map(|b| b.id)),
        Paced::Interrupted => {
            Err(anyhow::anyhow!("interrupted; run the same command again").into())
        }
    }
}

fn confirm(tenant: &TenantId, purge: bool) -> CliResult<bool> {
    use std::io::{BufRead as _, Write as _};
    let mut err = std::io::stderr();
    write!(
        err,
        "Offboard tenant {tenant}: suspend it, delete its bridge (permanent){}.\nType the tenant id to confirm: ",
        if purge {
            " and ERASE all its data"
        } else {
            "; its data is kept"
        }
    )?;
    err.flush()?;
    let mut answer = String::new();
    std::io::stdin().lock().read_line(&mut answer)?;
    Ok(answer.trim() == tenant.as_str())
}

pub async fn run(args: RemoveArgs, ctx: &Context, out: &mut Output) -> CliResult<Exit> {
    use std::io::IsTerminal as _;
    if !args.dry_run && !args.yes && !std::io::stdin().is_terminal() {
        return Err(CliError::bad_input(
            "refusing to offboard without confirmation: stdin is not a terminal; pass --yes (or --dry-run)",
        ));
    }
    let pool = ctx.db()?;
    let tenant = &args.tenant;
    let Some(row) = tenants::fetch(&pool, tenant).await? else {
        return Err(CliError::bad_input(format!(
            "no tenant {tenant} (already removed with --purge?)"
        )));
    };
    let client = ctx.wabridges()?;
    if !args.dry_run && !args.yes && !confirm(tenant, args.purge)? {
        return Err(CliError::bad_input("not confirmed; nothing changed"));
    }
    let mut report = RemoveReport {
        tenant: tenant.clone(),
        dry_run: args.dry_run,
        purge: args.purge,
        steps: Vec::new(),
    };
    let mut waits = 0;

    // 1. suspend
    let nats = ctx.nats().await.ok();
    report.steps.push(match (row.status, args.dry_run) {
        (TenantStatus::Suspended, _) => step("suspend", "already", "suspended"),
        (TenantStatus::Active, true) => step(
            "suspend",
            "would",
            "suspend; routers and senders drop its messages",
        ),
        (TenantStatus::Active, false) => {
            tenants::set_status(&pool, tenant, TenantStatus::Suspended).await?;
            let settle = if announce_tenant_change(nats.as_ref(), tenant).await {
                CACHE_SETTLE
            } else {
                let ttl = switchyard_shared::config::Env::from_process()
                    .duration("SWITCHYARD_TENANT_CACHE_TTL", DEFAULT_CACHE_TTL)
                    .unwrap_or(DEFAULT_CACHE_TTL);
                output::warn(&format!(
                    "waiting {}s, the services' tenant cache TTL, before going on",
                    ttl.as_secs()
                ));
                ttl + CACHE_SETTLE
            };
            tokio::time::sleep(settle).await;
            step(
                "suspend",
                "done",
                "suspended; routers and senders drop its messages",
            )
        }
    });

    // 2. drain
    let deadline = tokio::time::Instant::now() + args.drain_timeout;
    let mut open = sending(&pool, tenant).await?;
    if args.dry_run {
        report.steps.push(step(
            "drain",
            "would",
            format!(
                "wait up to {} for {open} send(s) under way",
                humantime::format_duration(args.drain_timeout)
            ),
        ));
    } else {
        let before = open;
        while open > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(250)).await;
            open = sending(&pool, tenant).await?;
        }
        let marked = sqlx::query(
            "UPDATE deliveries SET status = 'dead', last_error = 'tenant removed while the attempt was under way', \
             last_attempt_at = now() WHERE tenant_id = $1 AND status = 'sending'",
        )
        .bind(tenant.as_str())
        .execute(&pool)
        .await?
        .rows_affected();
        report.steps.push(if before == 0 {
            step("drain", "already", "no send under way")
        } else {
            step(
                "drain",
                "done",
                format!(
                    "{} send(s) finished; {marked} still open after {}: marked dead",
                    (before as u64).saturating_sub(marked),
                    humantime::format_duration(args.drain_timeout)
                ),
            )
        });
    }

    // 3. bridge
    let bridge = find_bridge(&client, row.bridge_id, tenant, &mut waits).await?;
    report.steps.push(match (bridge, args.dry_run) {
        (None, _) => step("bridge", "already", "no bridge at the provider"),
        (Some(b), true) => step(
            "bridge",
            "would",
            format!("delete bridge {b} (stops billing)"),
        ),
        (Some(b), false) => {
            let (stop, signal) = ctrl_c();
            let deleted = paced(&stop, &mut waits, || client.delete(b)).await;
            signal.abort();
            let detail = match deleted {
                Paced::Done(Ok(())) => format!("deleted bridge {b}"),
                Paced::Done(Err(WaError::Rejected { status: 404, .. })) => {
                    format!("bridge {b} was already gone at the provider")
                }
                Paced::Done(Err(e)) => return Err(e.into()),
                Paced::Interrupted => {
                    return Err(anyhow::anyhow!("interrupted; run the same command again").into());
                }
            };
            sqlx::query(
                "UPDATE tenants SET bridge_id = NULL, bridge_state = 'unprovisioned', \
                 bridge_state_at = now(), updated_at = now() WHERE id = $1",
            )
            .bind(tenant.as_str())
            .execute(&pool)
            .await?;
            step("bridge", "done", detail)
        }
    });

    // 4. data
    if !args.purge {
        report.steps.push(step(
            "data",
            "kept",
            "row (suspended), conversations, ledger, dead letters; --purge erases them",
        ));
    } else if args.dry_run {
        report.steps.push(step(
            "data",
            "would",
            "erase its stream messages (dead letters included) and rows",
        ));
    } else {
        let js = ctx.jetstream().await.map_err(|e| {
            anyhow::anyhow!("--purge needs NATS to erase the tenant's messages ({e}); nothing was erased, run again when it is reachable")
        })?;
        let mut messages = 0;
        for (name, filter) in subjects::tenant_filters(tenant) {
            let stream = match js.get_stream(name).await {
                Ok(stream) => stream,
                // No such stream (never created here): it holds nothing of the tenant.
                Err(e)
                    if matches!(
                        e.kind(),
                        GetStreamErrorKind::JetStream(ref j)
                            if j.error_code() == ErrorCode::STREAM_NOT_FOUND
                    ) =>
                {
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            messages += stream.purge().filter(filter).await?.purged;
        }
        let mut tx = pool.begin().await?;
        let mut rows = 0;
        for table in [
            "inbound_outbox",
            "inbound_outbox_leases",
            "inbound_event_keys",
        ] {
            rows += sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = $1"))
                .bind(tenant.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        for table in ["conversations", "deliveries", "contacts"] {
            rows += sqlx::query(&format!("DELETE FROM {table} WHERE tenant_id = $1"))
                .bind(tenant.as_str())
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        rows += sqlx::query("DELETE FROM tenants WHERE id = $1")
            .bind(tenant.as_str())
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        announce_tenant_change(nats.as_ref(), tenant).await;
        report.steps.push(step(
            "data",
            "done",
            format!(
                "erased {messages} stream message(s) and {rows} row(s), the tenant row included"
            ),
        ));
    }

    out.emit(&report, |w| {
        let mut t = output::table(["step", "outcome", "detail"]);
        for s in &report.steps {
            t.add_row(vec![
                s.step.to_owned(),
                s.outcome.to_owned(),
                s.detail.clone(),
            ]);
        }
        output::write_table(w, &t)?;
        writeln!(
            w,
            "tenant {} {}",
            report.tenant,
            match (report.dry_run, report.purge) {
                (true, _) => "not changed (dry run)",
                (false, true) => "removed and its data erased",
                (false, false) => "offboarded; its data is kept",
            }
        )
    })?;
    Ok(Exit::Ok)
}
