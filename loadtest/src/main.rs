//! `switchyard-load`: runs noisy-neighbour scenarios against a local
//! deployment it starts itself (nats-server, a fresh PostgreSQL database, the
//! bridge simulator, and the real ingest, router and sender binaries), each
//! scenario under the fair scheduler and the fifo baseline, and writes a
//! JSON report, a Markdown report and an SVG chart. `main` only wires the
//! modules together:
//!
//! - [`scenario`]: what each scenario sends; [`deployment`]: the processes;
//! - [`driver`]: the traffic and the measurements (CPU and memory through `switchyard_tests::procstat`);
//! - [`stats`], [`results`], [`goals`]: the figures and the verdicts;
//! - [`report`], [`svg`], [`machine`]: the outputs.
//!
//! Traffic goes to loopback only, and every request loop is a finite schedule.

mod deployment;
mod driver;
mod goals;
mod machine;
mod report;
mod results;
mod scenario;
mod stats;
mod svg;

use std::{io::Write as _, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{deployment::Deployment, scenario::Knobs};

/// Noisy-neighbour load scenarios against a local Switchyard deployment.
#[derive(Parser, Debug)]
#[command(name = "switchyard-load", version = switchyard_build_info::version!(), about)]
struct Args {
    /// Scenarios to run: all, or any of steady, baseline, flood, slow-bridge,
    /// timeout-bridge, failing-bridge, replay-storm, weights, front-door;
    /// `overload` runs only when named.
    #[arg(default_value = "all")]
    scenarios: Vec<String>,
    /// Traffic time of each constant-rate scenario.
    #[arg(long, default_value = "15s", value_parser = duration)]
    duration: Duration,
    /// Longest wait for the quiet tenants' last replies after the traffic stops.
    #[arg(long, default_value = "60s", value_parser = duration)]
    drain: Duration,
    /// Number of quiet tenants.
    #[arg(long, default_value_t = 7)]
    quiet_tenants: usize,
    /// Events per second of each quiet tenant.
    #[arg(long, default_value_t = 5.0)]
    quiet_rate: f64,
    /// Events per second of the noisy (and the replaying) tenant.
    #[arg(long, default_value_t = 250.0)]
    noisy_rate: f64,
    /// Events per second of each tenant in `steady`.
    #[arg(long, default_value_t = 25.0)]
    steady_rate: f64,
    /// The fleet-wide send budget per minute (all scenarios but steady and front-door).
    #[arg(long, default_value_t = 6000)]
    budget: u32,
    /// The slow bridge's answer delay, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    slow_ms: u64,
    /// Front-door ramp: events per second per tenant, one step each.
    #[arg(long, value_delimiter = ',', default_value = "25,50,100,200,400")]
    ramp: Vec<f64>,
    /// Length of one ramp step.
    #[arg(long, default_value = "5s", value_parser = duration)]
    ramp_step: Duration,
    /// Overload: number of tenants.
    #[arg(long, default_value_t = 1000)]
    overload_tenants: usize,
    /// Overload: events per second, all tenants together.
    #[arg(long, default_value_t = 2000.0)]
    overload_rate: f64,
    /// Overload: longest wait for every accepted event's reply after the traffic stops.
    #[arg(long, default_value = "300s", value_parser = duration)]
    overload_drain: Duration,
    /// Skip the fifo baseline runs.
    #[arg(long)]
    no_fifo: bool,
    /// Where switchyard-ingest, -router and -sender are (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The nats-server binary (default: the pinned one in .tools/).
    #[arg(long, env = "SWITCHYARD_NATS_SERVER")]
    nats_server: Option<PathBuf>,
    /// A PostgreSQL role that may create databases; a fresh one is made per run and dropped.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Where the reports go (latest.json, latest.md, latest-latency.svg).
    #[arg(long, default_value = "docs/benchmarks")]
    out_dir: PathBuf,
}

fn duration(raw: &str) -> Result<Duration, String> {
    let raw = raw.trim();
    let (number, scale) = if let Some(ms) = raw.strip_suffix("ms") {
        (ms, 0.001)
    } else if let Some(s) = raw.strip_suffix('s') {
        (s, 1.0)
    } else {
        (raw, 1.0)
    };
    number
        .parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .map(|v| Duration::from_secs_f64(v * scale))
        .ok_or_else(|| format!("expected a duration like 15s or 500ms, got {raw:?}"))
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."))
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run(Args::parse()).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("switchyard-load: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> anyhow::Result<()> {
    let knobs = Knobs {
        duration: args.duration,
        drain: args.drain,
        quiet_tenants: args.quiet_tenants.max(1),
        quiet_rate: args.quiet_rate,
        noisy_rate: args.noisy_rate,
        steady_rate: args.steady_rate,
        budget_per_minute: args.budget.max(1),
        slow_ms: args.slow_ms,
        ramp: args.ramp.clone(),
        ramp_step: args.ramp_step,
        overload_tenants: args.overload_tenants,
        overload_rate: args.overload_rate,
        overload_drain: args.overload_drain,
    };
    let every = scenario::all(&knobs);
    let wanted: Vec<_> = if args.scenarios.iter().any(|s| s == "all") {
        every
            .into_iter()
            .filter(|s| !s.only_when_named || args.scenarios.iter().any(|n| n == s.name))
            .collect()
    } else {
        for name in &args.scenarios {
            if !every.iter().any(|s| s.name == name) {
                bail!("unknown scenario {name:?}");
            }
        }
        every
            .into_iter()
            .filter(|s| args.scenarios.iter().any(|n| n == s.name))
            .collect()
    };
    let bin_dir = match args.bin_dir {
        Some(dir) => dir,
        None => std::env::current_exe()?
            .parent()
            .map(PathBuf::from)
            .context("cannot find the directory of this binary")?,
    };
    for bin in [
        "switchyard-ingest",
        "switchyard-router",
        "switchyard-sender",
    ] {
        if !bin_dir.join(bin).exists() {
            bail!(
                "{bin} not found in {}: build it (cargo build --release --bins) or pass --bin-dir",
                bin_dir.display()
            );
        }
    }
    let setup = deployment::Setup {
        bin_dir,
        nats_server: args
            .nats_server
            .unwrap_or_else(|| repo_root().join(".tools/nats-server/bin/nats-server")),
        admin_database_url: args.database_url,
        work_dir: std::env::temp_dir().join(format!("switchyard-load-{}", std::process::id())),
    };
    switchyard_shared::tls::install_crypto_provider();
    let mut machine = machine::Machine::describe(&setup.nats_server);

    let progress = ProgressBar::new(0);
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut runs = Vec::new();
    for scenario in &wanted {
        let schedulers: &[&str] = if scenario.compare_fifo && !args.no_fifo {
            &["fair", "fifo"]
        } else {
            &["fair"]
        };
        for scheduler in schedulers {
            progress.set_message(format!("{} / {scheduler}: starting", scenario.name));
            let dep = Deployment::start(&setup, scenario, scheduler)
                .await
                .with_context(|| format!("starting the deployment for {}", scenario.name))?;
            let result = driver::run(&dep, scenario, scheduler, &progress).await;
            dep.stop().await?;
            let result = result?;
            let line = format!(
                "{:<16} {:<4}  quiet p50/p99/max {}/{}/{} ms  breaches {}  dead letters {}",
                scenario.name,
                scheduler,
                result.quiet_latency.p50_ms,
                result.quiet_latency.p99_ms,
                result.quiet_latency.max_ms,
                result.isolation_breaches(),
                result.dead_letters,
            );
            // A hidden bar (no terminal) swallows println: write the line ourselves.
            if progress.is_hidden() {
                eprintln!("{line}");
            } else {
                progress.println(line);
            }
            runs.push(result);
        }
    }
    progress.finish_and_clear();
    let _ = std::fs::remove_dir_all(&setup.work_dir);
    machine.load_after = machine::load_average();

    let report = report::Report::new(machine, knobs, wanted, runs);
    std::fs::create_dir_all(&args.out_dir)?;
    let svg_name = "latest-latency.svg";
    std::fs::write(
        args.out_dir.join("latest.json"),
        serde_json::to_string_pretty(&report)?,
    )?;
    std::fs::write(
        args.out_dir.join("latest.md"),
        report::markdown(&report, svg_name),
    )?;
    std::fs::write(
        args.out_dir.join(svg_name),
        svg::latency_chart(&report.runs),
    )?;
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", report::terminal(&report))?;
    writeln!(
        stdout,
        "reports: {}/latest.{{json,md}}, {}/{svg_name}",
        args.out_dir.display(),
        args.out_dir.display()
    )?;
    Ok(())
}
