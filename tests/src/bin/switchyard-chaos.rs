//! `switchyard-chaos`: the full chaos run of issue 16 (every fault kind of
//! `chaos::plan::Kind::FULL_RUN`, or those named), its report written to
//! `docs/benchmarks/chaos.md`; see `tests/src/chaos/`. The test command runs
//! the short version (`chaos::*` in `tests/tests/it/`).
//!
//! Started with `SWITCHYARD_CHAOS_REPLICA_OF=<service>`, the same binary is a
//! replica of that service instead (`chaos::replica`): the driver starts its
//! replicas from itself.
//!
//! ```text
//! cargo run --release -p switchyard-tests --bin switchyard-chaos -- [--short] [--report PATH] [KIND...]
//! ```

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use clap::Parser;
use sqlx::postgres::PgPoolOptions;
use switchyard_tests::{
    chaos::{
        self,
        clock::Random,
        plan::{Kind, Plan},
        replica,
    },
    scratch_db::ScratchDatabase,
};

#[derive(Parser, Debug)]
#[command(about = "Faults under steady load against the production topology on this machine")]
struct Args {
    /// The fault kinds to run (default: all of the full run): router-kill,
    /// sender-kill, ingest-kill, nats-inbound-leader, nats-outbound-leader,
    /// postgres-down, bridges-503, overload.
    kinds: Vec<String>,
    /// The test command's short plans instead of the full ones.
    #[arg(long)]
    short: bool,
    /// Where to write the report (Markdown); none when not given.
    #[arg(long)]
    report: Option<PathBuf>,
    /// The seed of the random moments (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    /// Events per second instead of the plan's (the full plan's 100 is more
    /// than a debug build keeps up with on a busy 2-core machine).
    #[arg(long)]
    rate: Option<u32>,
    /// Tenants instead of the plan's.
    #[arg(long)]
    tenants: Option<usize>,
    /// Where the replicas' logs go (one directory per kind).
    #[arg(long, default_value = "target/chaos")]
    log_dir: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    if let Some(code) = replica::serve_if_replica().await {
        return code;
    }
    match run(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard-chaos: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let kinds: Vec<Kind> = if args.kinds.is_empty() {
        Kind::FULL_RUN.to_vec()
    } else {
        args.kinds
            .iter()
            .map(|k| Kind::parse(k).with_context(|| format!("unknown fault kind {k:?}")))
            .collect::<anyhow::Result<_>>()?
    };
    let program = std::env::current_exe().context("the path of this binary")?;
    let mut outcomes = Vec::new();
    for kind in kinds {
        let seed = args.seed.unwrap_or_else(Random::seed_from_clock);
        let mut plan = if args.short {
            Plan::short(kind, seed)
        } else {
            Plan::full(kind, seed)
        };
        if let Some(rate) = args.rate {
            plan.rate.events_per_second = rate;
        }
        if let Some(tenants) = args.tenants {
            plan.tenants = tenants;
        }
        let db =
            ScratchDatabase::create(&format!("chaos_{}", kind.name().replace('-', "_"))).await?;
        let result = async {
            let pool = PgPoolOptions::new()
                .max_connections(4)
                .connect_with(db.options.clone())
                .await?;
            switchyard_shared::db::migrate(&pool).await?;
            chaos::run(
                &plan,
                &program,
                &args.log_dir.join(kind.name()),
                &pool,
                &db.url,
            )
            .await
        }
        .await;
        db.drop_database().await?;
        let outcome = result?;
        eprintln!("{}", outcome.summary());
        outcomes.push(outcome);
    }
    if let Some(path) = &args.report {
        let command: Vec<String> = std::env::args().skip(1).collect();
        let markdown = chaos::report::markdown(
            &outcomes,
            &format!("switchyard-chaos {}", command.join(" ")),
        );
        std::fs::write(path, markdown).with_context(|| format!("write {}", path.display()))?;
        eprintln!("report written to {}", path.display());
    }
    Ok(())
}
