//! `switchyard-load`: runs noisy-neighbour scenarios against a local
//! deployment it starts itself (nats-server, a fresh PostgreSQL database, the
//! bridge simulator, and the real ingest, router and sender binaries), each
//! scenario under the fair scheduler and the fifo baseline, or against an
//! existing deployment (`--target`: `deploy/cluster.sh`, a staging system),
//! and writes a JSON report, a Markdown report and an SVG chart. `main` only
//! wires the modules together:
//!
//! - [`scenario`]: what each scenario sends; [`deployment`]: the processes
//!   of a local run; [`target`]: an existing deployment; [`stack`]: what the
//!   driver needs of either; [`provision`], [`sim_control`]: tenants, bridges
//!   and faults, set up the same way on both;
//! - [`driver`]: the traffic and the measurements (CPU and memory through `switchyard_tests::procstat`);
//! - [`stats`], [`results`], [`goals`]: the figures and the verdicts;
//! - [`report`], [`svg`], [`machine`]: the outputs.
//!
//! Traffic goes to loopback only, and every request loop is a finite schedule.

mod cloud;
mod cost;
mod deployment;
mod driver;
mod goals;
mod inlet;
mod machine;
mod provision;
mod report;
mod results;
mod scenario;
mod schedule;
mod sim_control;
mod stack;
mod stages;
mod stats;
mod svg;
mod target;

use std::{io::Write as _, path::PathBuf, time::Duration};

use anyhow::{Context as _, bail};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{
    deployment::Deployment,
    scenario::{ChannelMix, Knobs},
    target::{Target, TargetConfig},
};

/// Noisy-neighbour load scenarios against a local Switchyard deployment.
#[derive(Parser, Debug)]
#[command(name = "switchyard-load", version = switchyard_build_info::version!(), about)]
struct Args {
    /// Scenarios to run: all, or any of steady, baseline, flood, flood-open, slow-bridge,
    /// timeout-bridge, failing-bridge, replay-storm, weights, front-door;
    /// `overload` and the `cost` sweep (or one of its runs, `cost-500x100`…)
    /// run only when named.
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
    /// Traffic time of each run of the `cost` sweep.
    #[arg(long, default_value = "20s", value_parser = duration)]
    cost_duration: Duration,
    /// Which tenants are on Meta's Cloud API instead of WA Bridges: none
    /// (wabridges), all but a faulted bridge (cloud), or every other tenant
    /// and the misbehaving one (mixed). Cloud tenants post signed batches to
    /// ingest's /cloud and are answered through the Cloud simulator, which
    /// the tool starts in-process with Meta's limits out of the way. Local
    /// deployments only.
    #[arg(long, value_enum, default_value_t = ChannelMix::Wabridges)]
    channel: ChannelMix,
    /// Skip the fifo baseline runs.
    #[arg(long)]
    no_fifo: bool,
    /// Routers and senders a local deployment starts, each (ingest is one):
    /// the partitions are shared among them and, with more than one, the
    /// fleet budget too (`SWITCHYARD_FLEET_MODE=shared`), as in a scaled
    /// deployment; the cost and idle tables sum each service's replicas.
    /// Not used with `--target`.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    replicas: u16,
    /// Where switchyard-ingest, -router and -sender are (default: next to this binary).
    #[arg(long)]
    bin_dir: Option<PathBuf>,
    /// The nats-server binary (default: the pinned one in .tools/).
    #[arg(long, env = "SWITCHYARD_NATS_SERVER")]
    nats_server: Option<PathBuf>,
    /// A PostgreSQL role that may create databases; a fresh one is made per run and dropped.
    /// With --target: the target deployment's own database (the run's tenants are added there).
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    database_url: String,
    /// Run against an existing deployment instead of starting one: ingest's
    /// public base URL(s), comma-separated (tenants are spread over them).
    /// Its fleet budget, scheduler and admission limits are its own; the fifo
    /// baseline is not run. Needs --sim-url and SWITCHYARD_WEBHOOK_SECRET.
    #[arg(long, value_delimiter = ',', requires = "sim_url")]
    target: Vec<String>,
    /// With --target: the WA Bridges simulator the target's senders call.
    #[arg(long)]
    sim_url: Option<String>,
    /// With --target: the routers' and senders' ops endpoints
    /// (`http://host:port`, comma-separated), for dead-letter counts.
    #[arg(long, value_delimiter = ',')]
    ops_urls: Vec<String>,
    /// With --target: nats-server monitoring endpoints (`http://host:port`,
    /// comma-separated, every node of a cluster), for NATS messages per event.
    #[arg(long, value_delimiter = ',')]
    nats_monitors: Vec<String>,
    /// With --target: a directory of `<name>.pid` files (deploy/cluster.sh's
    /// `.run/cluster`) whose processes' CPU and memory are reported.
    #[arg(long)]
    pids_dir: Option<PathBuf>,
    /// With --target: the target's webhook secret (its tenants' webhook URLs carry tokens made from it).
    #[arg(long, env = "SWITCHYARD_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: Option<String>,
    /// Where the reports go (latest.json, latest.md, latest-latency.svg).
    #[arg(long, default_value = "docs/benchmarks")]
    out_dir: PathBuf,
    /// `KEY=VALUE` given to every service the tool starts, after its own
    /// settings (so it wins): an A/B run of one binary under two settings,
    /// e.g. `--service-env SWITCHYARD_TENANT_CACHE_TTL=2s`. Repeatable.
    #[arg(long, value_parser = key_value)]
    service_env: Vec<(String, String)>,
}

fn key_value(raw: &str) -> Result<(String, String), String> {
    let (key, value) = raw
        .split_once('=')
        .ok_or_else(|| format!("expected KEY=VALUE, got {raw:?}"))?;
    let key_ok = !key.is_empty()
        && key
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
    if !key_ok {
        return Err(format!("{key:?} is not an environment variable name"));
    }
    Ok((key.to_owned(), value.to_owned()))
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

/// Where the scenarios run.
enum Mode {
    /// A deployment started per scenario and scheduler.
    Local(deployment::Setup),
    /// An existing deployment.
    Target(TargetConfig),
}

fn local_setup(args: &Args, nats_server: PathBuf) -> anyhow::Result<deployment::Setup> {
    let bin_dir = match &args.bin_dir {
        Some(dir) => dir.clone(),
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
    Ok(deployment::Setup {
        bin_dir,
        nats_server,
        admin_database_url: args.database_url.clone(),
        service_env: args.service_env.clone(),
        replicas: usize::from(args.replicas),
        work_dir: std::env::temp_dir().join(format!("switchyard-load-{}", std::process::id())),
    })
}

fn target_config(args: &Args) -> anyhow::Result<TargetConfig> {
    let webhook_secret = args
        .webhook_secret
        .clone()
        .filter(|s| !s.is_empty())
        .context("--target needs the target's webhook secret (SWITCHYARD_WEBHOOK_SECRET)")?;
    Ok(TargetConfig {
        ingest: args.target.clone(),
        sim: args.sim_url.clone().context("--target needs --sim-url")?,
        ops: args.ops_urls.clone(),
        nats_monitors: args.nats_monitors.clone(),
        pids_dir: args.pids_dir.clone(),
        webhook_secret: webhook_secret.into(),
        database_url: args.database_url.clone(),
    })
}

/// The tenant-id prefix of scenario `n` of this run on a target: `lt<time><pid>-<n>-`.
fn run_prefix(n: usize) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    format!("lt{:x}{:x}-{n}-", secs % 0x10_0000, std::process::id())
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
        cost_duration: args.cost_duration,
        channel: args.channel,
    };
    if !args.target.is_empty() && args.channel != ChannelMix::Wabridges {
        bail!(
            "--channel {} needs a local deployment: against --target the tool cannot give the \
             services a Cloud API app secret, token keys and Graph URL (use --channel wabridges)",
            match args.channel {
                ChannelMix::Cloud => "cloud",
                _ => "mixed",
            }
        );
    }
    let every: Vec<_> = scenario::all(&knobs)
        .iter()
        .map(|s| s.with_channels(args.channel))
        .collect();
    let wanted: Vec<_> = if args.scenarios.iter().any(|s| s == "all") {
        every
            .into_iter()
            .filter(|s| !s.only_when_named || scenario::selected(&args.scenarios, s.name))
            .collect()
    } else {
        for name in &args.scenarios {
            if !every
                .iter()
                .any(|s| scenario::selected(std::slice::from_ref(name), s.name))
            {
                bail!("unknown scenario {name:?}");
            }
        }
        every
            .into_iter()
            .filter(|s| scenario::selected(&args.scenarios, s.name))
            .collect()
    };
    let nats_server = args
        .nats_server
        .clone()
        .unwrap_or_else(|| repo_root().join(".tools/nats-server/bin/nats-server"));
    let mode = if args.target.is_empty() {
        Mode::Local(local_setup(&args, nats_server.clone())?)
    } else {
        Mode::Target(target_config(&args)?)
    };
    switchyard_shared::tls::install_crypto_provider();
    let mut machine = machine::Machine::describe(&nats_server);

    let progress = ProgressBar::new(0);
    progress.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut runs = Vec::new();
    let mut ran = Vec::new();
    for (n, scenario) in wanted.iter().enumerate() {
        let fifo_too = scenario.compare_fifo && !args.no_fifo && matches!(mode, Mode::Local(_));
        let schedulers: &[&str] = if fifo_too {
            &["fair", "fifo"]
        } else {
            &["fair"]
        };
        // On a target, each scenario gets tenants of its own under this run's prefix.
        let scenario = match mode {
            Mode::Local(_) => scenario.clone(),
            Mode::Target(_) => scenario.with_tenant_prefix(&run_prefix(n)),
        };
        for scheduler in schedulers {
            progress.set_message(format!("{} / {scheduler}: starting", scenario.name));
            let result = match &mode {
                Mode::Local(setup) => {
                    let dep = Deployment::start(setup, &scenario, scheduler)
                        .await
                        .with_context(|| {
                            format!("starting the deployment for {}", scenario.name)
                        })?;
                    let result = driver::run(&dep, &scenario, scheduler, &progress).await;
                    dep.stop().await?;
                    result?
                }
                Mode::Target(config) => {
                    let target = Target::prepare(config, &scenario)
                        .await
                        .with_context(|| format!("setting up {} on the target", scenario.name))?;
                    let result = driver::run(&target, &scenario, scheduler, &progress).await;
                    target.finish(&scenario).await?;
                    result?
                }
            };
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
        ran.push(scenario);
    }
    progress.finish_and_clear();
    if let Mode::Local(setup) = &mode {
        let _ = std::fs::remove_dir_all(&setup.work_dir);
    }
    machine.load_after = machine::load_average();

    let deployment = match &mode {
        Mode::Local(setup) => report::Deployment::Local {
            replicas: setup.replicas,
        },
        Mode::Target(config) => report::Deployment::Target {
            ingest: config.ingest.clone(),
            sim: config.sim.clone(),
        },
    };
    let report = report::Report::new(machine, deployment, knobs, ran, runs);
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
