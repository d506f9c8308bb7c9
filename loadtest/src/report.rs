//! The report in its three forms: JSON (everything), Markdown (for people and
//! docs/benchmarks/), and the short terminal summary.

use std::fmt::Write as _;

use serde::Serialize;

use crate::{
    goals::{self, Comparison, Goal},
    machine::Machine,
    results::RunResult,
    scenario::{Channel, Knobs, Scenario},
};

/// Where the scenarios ran.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Deployment {
    /// Started by the tool for each scenario and scheduler, with this many
    /// routers and senders (`--replicas`; ingest is one).
    Local { replicas: usize },
    /// An existing deployment (`--target`), with its own settings.
    Target { ingest: Vec<String>, sim: String },
}

/// Everything one invocation measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub machine: Machine,
    pub deployment: Deployment,
    pub knobs: Knobs,
    pub scenarios: Vec<Scenario>,
    pub runs: Vec<RunResult>,
    pub goals: Vec<Goal>,
    pub fifo_vs_fair: Vec<Comparison>,
}

impl Report {
    pub fn new(
        machine: Machine,
        deployment: Deployment,
        knobs: Knobs,
        scenarios: Vec<Scenario>,
        runs: Vec<RunResult>,
    ) -> Self {
        Self {
            goals: goals::judge(&runs),
            fifo_vs_fair: goals::compare(&runs),
            machine,
            deployment,
            knobs,
            scenarios,
            runs,
        }
    }
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "**MISSED**",
        None => "not measured",
    }
}

/// The goals and the fifo/fair ratios, as terminal lines.
pub fn terminal(report: &Report) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\nGoals");
    for g in &report.goals {
        let mark = match g.met {
            Some(true) => "met   ",
            Some(false) => "MISSED",
            None => "  -   ",
        };
        let _ = writeln!(
            out,
            "  [{mark}] {}: {} (target: {})",
            g.name, g.measured, g.target
        );
    }
    let _ = writeln!(out, "\nQuiet tenants' p99, fifo baseline / fair");
    for c in &report.fifo_vs_fair {
        let _ = writeln!(
            out,
            "  {:<16} fair {:>7} ms   fifo {:>7} ms   ratio {:>7.1}×",
            c.scenario, c.quiet_p99_fair_ms, c.quiet_p99_fifo_ms, c.ratio
        );
    }
    out
}

fn deployment_sentence(deployment: &Deployment, nats_server: &str) -> String {
    match deployment {
        Deployment::Local { replicas } => format!(
            "Every service is a separate process of its release binary, started by the tool for \
             each scenario ({}); {nats_server} and PostgreSQL on the same cores; the load generator and \
             the bridge simulator (and the Cloud API simulator, when a tenant is on the Cloud API) share one process.",
            match replicas {
                1 => "one replica each".to_owned(),
                n => format!(
                    "one ingest, {n} routers and {n} senders sharing the fleet budget; the cost and idle tables sum each service's replicas"
                ),
            }
        ),
        Deployment::Target { ingest, sim } => format!(
            "Against an existing deployment (`--target`): webhooks posted to {}, replies read from \
             the simulator at {sim}; its fleet budget, scheduler and admission limits are its own \
             (the scenarios' budget figures do not apply), each scenario's tenants were added \
             under a prefix of the run and suspended after it; no fifo baseline.",
            ingest.join(", ")
        ),
    }
}

/// The Markdown report.
pub fn markdown(report: &Report, svg_name: &str) -> String {
    let m = &report.machine;
    let mut out = String::new();
    let _ = writeln!(out, "# Switchyard load test: noisy neighbours\n");
    let _ = writeln!(
        out,
        "Measured {} at commit `{}` on {} × {} ({:.1} GiB RAM, Linux {}). Load average {} before, {} after \
         (the machine is shared: other builds and tests may have run meanwhile). {}\n",
        m.started_at,
        m.git_commit,
        m.cores,
        m.cpu_model,
        m.memory_gib,
        m.kernel,
        m.load_before,
        m.load_after,
        deployment_sentence(&report.deployment, &m.nats_server),
    );
    let _ = writeln!(out, "![per-tenant p99 latency]({svg_name})\n");
    let _ = writeln!(
        out,
        "## Goals\n\n| goal | target | measured | verdict |\n|---|---|---|---|"
    );
    for g in &report.goals {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} |",
            g.name,
            g.target,
            g.measured,
            verdict(g.met)
        );
    }
    let _ = writeln!(
        out,
        "\n## fifo baseline vs fair share (quiet tenants' p99, same run)\n\n| scenario | fair | fifo | fifo / fair |\n|---|---|---|---|"
    );
    for c in &report.fifo_vs_fair {
        let _ = writeln!(
            out,
            "| {} | {} ms | {} ms | {:.1}× |",
            c.scenario, c.quiet_p99_fair_ms, c.quiet_p99_fifo_ms, c.ratio
        );
    }
    cost_table(&mut out, &report.runs);
    let _ = writeln!(out, "\n## Scenarios\n");
    for s in &report.scenarios {
        let _ = writeln!(
            out,
            "- **{}**: {} ({} s of traffic, budget {}/min).",
            s.name,
            s.description,
            s.duration.as_secs(),
            s.fleet_per_minute
        );
    }
    for run in &report.runs {
        run_section(&mut out, run);
    }
    let _ = writeln!(
        out,
        "\n## How to read this\n\n\
         - Latency is webhook request start → the reply arriving at the simulated bridge, or at the Cloud simulator for a Cloud API tenant (ms, HDR histograms), \
         over the events posted in the window (a tenant's first events pay for cold lanes, connections and caches). \
         Events of must-drain tenants still unanswered at the end count at the run's end, whenever posted (a lower bound, column *censored*).\n\
         - Throughput and share count sends arriving in the window (after a warm-up, until the traffic stops).\n\
         - Jain's index is over weight-normalised throughput of the tenants backlogged on purpose (noisy, weighted).\n\
         - *leftover*: noisy sends / (fleet budget in the window − everyone else's sends).\n\
         - CPU is the mean over the run in % of one core; RSS the peak."
    );
    out
}

fn run_section(out: &mut String, run: &RunResult) {
    let _ = writeln!(
        out,
        "\n### {} / {}\n\n{:.0} s of traffic, window {:.1}–{:.1} s, drain {:.1} s, budget {}/min. Quiet p50/p95/p99/max: {}/{}/{}/{} ms.{}{}\n",
        run.scenario,
        run.scheduler,
        run.traffic_seconds,
        run.window_seconds.0,
        run.window_seconds.1,
        run.drain_seconds,
        run.fleet_per_minute,
        run.quiet_latency.p50_ms,
        run.quiet_latency.p95_ms,
        run.quiet_latency.p99_ms,
        run.quiet_latency.max_ms,
        run.jain_backlogged
            .map_or(String::new(), |j| format!(" Jain (backlogged): {j:.4}.")),
        run.noisy_share_of_leftover
            .map_or(String::new(), |l| format!(
                " Noisy got {:.1} % of the leftover budget.",
                l * 100.0
            )),
    );
    if !run.by_second.is_empty() {
        let seconds: Vec<String> = run
            .by_second
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{i}: {}/{}", p.p99_ms, p.max_ms))
            .collect();
        let _ = writeln!(
            out,
            "End-to-end p99/max (ms) of the events posted in each second of the run: {}.\n",
            seconds.join(", ")
        );
    }
    let _ = writeln!(
        out,
        "| tenant | role | channel | w | offered | accepted | replied | unanswered | p50 | p95 | p99 | max | censored | sends/s | share | ingest p99 |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for t in &run.tenants {
        let _ = writeln!(
            out,
            "| {} | {:?} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.1} | {:.1} % | {} |",
            t.id,
            t.role,
            match t.channel {
                Channel::Wabridges => "WA Bridges",
                Channel::Cloud => "Cloud API",
            },
            t.weight,
            t.offered,
            t.accepted,
            t.replied,
            t.unanswered,
            t.latency.p50_ms,
            t.latency.p95_ms,
            t.latency.p99_ms,
            t.latency.max_ms,
            t.censored,
            t.throughput_per_s,
            t.share * 100.0,
            t.http_latency.p99_ms,
        );
    }
    if !run.steps.is_empty() {
        let _ = writeln!(
            out,
            "\n| ev/s per tenant | offered/s | started/s | accepted/s | refused | ingest p50 | ingest p99 | e2e p50 | e2e p99 |\n|---|---|---|---|---|---|---|---|---|"
        );
        for s in &run.steps {
            let _ = writeln!(
                out,
                "| {} | {:.0} | {:.0} | {:.0} | {} | {} | {} | {} | {} |",
                s.rate_per_tenant,
                s.offered_per_s,
                s.started_per_s,
                s.accepted_per_s,
                s.refused,
                s.http_latency.p50_ms,
                s.http_latency.p99_ms,
                s.latency.p50_ms,
                s.latency.p99_ms
            );
        }
        let _ = writeln!(
            out,
            "\nSaturation: {}",
            goals::saturation_point(run).map_or(
                "not reached within the ramp".to_owned(),
                |s| format!(
                    "at {} ev/s per tenant ({:.0} offered/s): {:.0} accepted/s, {} refused, ingest p99 {} ms",
                    s.rate_per_tenant, s.offered_per_s, s.accepted_per_s, s.refused, s.http_latency.p99_ms
                )
            )
        );
    }
    let _ = writeln!(
        out,
        "\n| process | CPU mean | CPU peak | RSS peak | CPU per delivered event |\n|---|---|---|---|---|"
    );
    for (name, u) in &run.services {
        let _ = writeln!(
            out,
            "| {name} | {:.0} % | {:.0} % | {:.0} MiB | {:.0} µs |",
            u.cpu_percent_mean,
            u.cpu_percent_peak,
            u.rss_mib_peak,
            run.cost.cpu_us_per_event.get(name).copied().unwrap_or(0.0)
        );
    }
    let c = &run.cost;
    let _ = writeln!(
        out,
        "\n{} events delivered; the pipeline (every process above but the load generator) used {:.0} µs of CPU per event; \
         per event: NATS messages in/out {}, PostgreSQL transactions/changed rows {}.",
        c.delivered,
        c.pipeline_cpu_us_per_event,
        pair(c.nats_msgs_in_per_event, c.nats_msgs_out_per_event),
        pair(c.pg_xacts_per_event, c.pg_rows_per_event),
    );
}

fn pair(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => format!("{a:.1} / {b:.1}"),
        _ => "not read".to_owned(),
    }
}

fn is_idle(run: &RunResult) -> bool {
    crate::scenario::is_idle_cost_run(&run.scenario)
}

/// The idle runs of the `cost` sweep: each party's mean CPU as a share of
/// one core, and the servers' operations per second, with no traffic.
fn idle_table(out: &mut String, runs: &[RunResult]) {
    let idle: Vec<&RunResult> = runs.iter().filter(|r| is_idle(r)).collect();
    if idle.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n## Idle cost (no traffic)\n\n\
         | run | seconds | ingest | router | sender | nats-server | postgres | pipeline | NATS msgs in/out per s | PG xacts per s |\n\
         |---|---|---|---|---|---|---|---|---|---|"
    );
    for r in idle {
        let share = |prefix: &str| -> f64 {
            r.services
                .iter()
                .filter(|(name, _)| name.starts_with(prefix))
                .map(|(_, u)| u.cpu_percent_mean)
                .sum()
        };
        let pipeline: f64 = r
            .services
            .iter()
            .filter(|(name, _)| !name.starts_with(crate::cost::LOAD_GENERATOR))
            .map(|(_, u)| u.cpu_percent_mean)
            .sum();
        // With nothing delivered the per-event figures are totals.
        let seconds = (r.traffic_seconds + r.drain_seconds).max(f64::EPSILON);
        let per_s =
            |v: Option<f64>| v.map_or("not read".to_owned(), |v| format!("{:.0}", v / seconds));
        let _ = writeln!(
            out,
            "| {} | {:.0} | {:.1} % | {:.1} % | {:.1} % | {:.1} % | {:.1} % | **{:.1} %** | {} / {} | {} |",
            r.scenario,
            seconds,
            share("switchyard-ingest"),
            share("switchyard-router"),
            share("switchyard-sender"),
            share("nats-server"),
            share("postgres"),
            pipeline,
            per_s(r.cost.nats_msgs_in_per_event),
            per_s(r.cost.nats_msgs_out_per_event),
            per_s(r.cost.pg_xacts_per_event),
        );
    }
}

/// The `cost` sweep as one table, and the highest rate it kept up with.
fn cost_table(out: &mut String, runs: &[RunResult]) {
    idle_table(out, runs);
    let sweep: Vec<&RunResult> = runs
        .iter()
        .filter(|r| r.scenario.starts_with("cost-") && !is_idle(r))
        .collect();
    if sweep.is_empty() {
        return;
    }
    let _ = writeln!(
        out,
        "\n## Cost per delivered event (the `cost` sweep)\n\n\
         | run | delivered | p50 | p99 | ingest | router | sender | nats-server | postgres | pipeline | load generator + simulator | NATS msgs in/out | PG xacts/rows |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    let us = |r: &RunResult, prefix: &str| -> String {
        let v: f64 = r
            .cost
            .cpu_us_per_event
            .iter()
            .filter(|(name, _)| name.starts_with(prefix))
            .map(|(_, v)| v)
            .sum();
        format!("{v:.0} µs")
    };
    for r in &sweep {
        let _ = writeln!(
            out,
            "| {} | {} | {} ms | {} ms | {} | {} | {} | {} | {} | **{:.0} µs** | {} | {} | {} |",
            r.scenario,
            r.cost.delivered,
            r.quiet_latency.p50_ms,
            r.quiet_latency.p99_ms,
            us(r, "switchyard-ingest"),
            us(r, "switchyard-router"),
            us(r, "switchyard-sender"),
            us(r, "nats-server"),
            us(r, "postgres"),
            r.cost.pipeline_cpu_us_per_event,
            us(r, crate::cost::LOAD_GENERATOR),
            pair(
                r.cost.nats_msgs_in_per_event,
                r.cost.nats_msgs_out_per_event
            ),
            pair(r.cost.pg_xacts_per_event, r.cost.pg_rows_per_event),
        );
    }
    let _ = writeln!(
        out,
        "\nKept up with (every accepted event answered, none refused, p99 ≤ 1 s): {}.",
        goals::sustained_rate(runs)
            .map_or("none of the sweep's rates".to_owned(), |(name, rate)| {
                format!("{rate:.0} events/s (`{name}`)")
            })
    );
    stage_table(out, &sweep);
}

/// The sweep's runs side by side: each stage's mean, in the order an event
/// meets them ([`crate::stages`]), so a p50 can be taken apart.
fn stage_table(out: &mut String, sweep: &[&RunResult]) {
    if sweep.iter().all(|r| r.cost.stages.is_empty()) {
        return;
    }
    let _ = write!(
        out,
        "\n### Where the time goes (mean per stage, ms, as the services time them)\n\n| stage |"
    );
    for r in sweep {
        let _ = write!(out, " {} |", r.scenario);
    }
    let _ = write!(out, "\n|---|");
    for _ in sweep {
        let _ = write!(out, "---|");
    }
    let _ = writeln!(out);
    for stage in crate::stages::STAGES {
        let _ = write!(out, "| {} |", stage.name);
        for r in sweep {
            match r.cost.stages.iter().find(|m| m.stage == stage.name) {
                Some(m) => {
                    let _ = write!(out, " {:.2} |", m.mean_ms);
                }
                None => {
                    let _ = write!(out, " — |");
                }
            }
        }
        let _ = writeln!(out);
    }
}
