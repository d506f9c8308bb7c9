//! The goals, judged from the runs: each one states its target, the
//! measured figure and whether it was met. Nothing here tunes anything.

use serde::Serialize;

use crate::results::RunResult;

/// One goal and how it went.
#[derive(Debug, Clone, Serialize)]
pub struct Goal {
    pub name: String,
    pub target: String,
    pub measured: String,
    /// `None`: not measurable in this run (a scenario was skipped or empty).
    pub met: Option<bool>,
}

/// Fair vs fifo for one scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    pub scenario: String,
    pub quiet_p99_fair_ms: u64,
    pub quiet_p99_fifo_ms: u64,
    /// fifo / fair.
    pub ratio: f64,
}

fn find<'a>(runs: &'a [RunResult], scenario: &str, scheduler: &str) -> Option<&'a RunResult> {
    runs.iter()
        .find(|r| r.scenario == scenario && r.scheduler == scheduler)
}

fn ratio(a: u64, b: u64) -> f64 {
    a.max(1) as f64 / b.max(1) as f64
}

fn p99_goal(runs: &[RunResult], scenario: &str, what: &str) -> Goal {
    let target = "quiet tenants' p99 ≤ 1.5× their p99 in `baseline`".to_owned();
    match (find(runs, scenario, "fair"), find(runs, "baseline", "fair")) {
        (Some(run), Some(base)) if base.quiet_latency.count > 0 => {
            let r = ratio(run.quiet_latency.p99_ms, base.quiet_latency.p99_ms);
            Goal {
                name: format!("{what}: quiet p99 (fair)"),
                target,
                measured: format!(
                    "{} ms vs {} ms = {r:.2}×",
                    run.quiet_latency.p99_ms, base.quiet_latency.p99_ms
                ),
                met: Some(r <= 1.5),
            }
        }
        _ => Goal {
            name: format!("{what}: quiet p99 (fair)"),
            target,
            measured: "not run".into(),
            met: None,
        },
    }
}

/// Every goal of the issue, in the report's order.
pub fn judge(runs: &[RunResult]) -> Vec<Goal> {
    let mut goals = vec![p99_goal(runs, "flood", "flood")];
    let fifo_target = "under fifo, quiet p99 degrades ≥ 10× vs its own baseline".to_owned();
    goals.push(
        match (find(runs, "flood", "fifo"), find(runs, "baseline", "fifo")) {
            (Some(run), Some(base)) => {
                let r = ratio(run.quiet_latency.p99_ms, base.quiet_latency.p99_ms);
                Goal {
                    name: "flood: the scenario is harsh enough (fifo)".into(),
                    target: fifo_target,
                    measured: format!(
                        "{} ms vs {} ms = {r:.1}×",
                        run.quiet_latency.p99_ms, base.quiet_latency.p99_ms
                    ),
                    met: Some(r >= 10.0),
                }
            }
            _ => Goal {
                name: "flood: the scenario is harsh enough (fifo)".into(),
                target: fifo_target,
                measured: "not run".into(),
                met: None,
            },
        },
    );
    let leftover = find(runs, "flood", "fair").and_then(|r| r.noisy_share_of_leftover);
    goals.push(Goal {
        name: "flood: work conservation (fair)".into(),
        target: "noisy gets ≥ 90 % of the budget the quiet tenants leave".into(),
        measured: leftover.map_or("not run".into(), |l| format!("{:.1} %", l * 100.0)),
        met: leftover.map(|l| l >= 0.90),
    });
    goals.push(p99_goal(runs, "flood-open", "flood, budget out of the way"));
    goals.push(p99_goal(runs, "slow-bridge", "slow bridge"));
    goals.push(p99_goal(runs, "timeout-bridge", "bridge that times out"));
    goals.push(p99_goal(runs, "failing-bridge", "failing bridge (503)"));
    goals.push(p99_goal(runs, "replay-storm", "replay storm"));
    let weights = find(runs, "weights", "fair");
    goals.push(Goal {
        name: "weights 5/3/2 honoured (fair)".into(),
        target: "each share within ±3 points of 50/30/20 %".into(),
        measured: weights.map_or("not run".into(), |w| {
            w.tenants
                .iter()
                .map(|t| format!("{} {:.1} %", t.id, t.share * 100.0))
                .collect::<Vec<_>>()
                .join(", ")
        }),
        met: weights.map(|w| {
            let total: u32 = w.tenants.iter().map(|t| t.weight).sum();
            w.tenants
                .iter()
                .all(|t| (t.share - f64::from(t.weight) / f64::from(total.max(1))).abs() <= 0.03)
        }),
    });
    let front = find(runs, "front-door", "fair");
    goals.push(Goal {
        name: "front door: nothing accepted is lost".into(),
        target: "every event answered 200 gets its reply".into(),
        measured: front.map_or("not run".into(), |f| {
            let accepted: u64 = f.tenants.iter().map(|t| t.accepted).sum();
            let unanswered: u64 = f.tenants.iter().map(|t| t.unanswered).sum();
            format!("{unanswered} of {accepted} accepted without a reply at the end of the drain")
        }),
        met: front.map(|f| f.tenants.iter().all(|t| t.unanswered == 0)),
    });
    let overload = find(runs, "overload", "fair");
    goals.push(Goal {
        name: "overload: nothing lost, nothing dead-lettered (issue 16)".into(),
        target: "every event answered 200 gets its reply once the backlog drains; 0 dead letters"
            .into(),
        measured: overload.map_or("not run".into(), |o| {
            let accepted: u64 = o.tenants.iter().map(|t| t.accepted).sum();
            let refused: u64 = o.tenants.iter().map(|t| t.refused).sum();
            let unanswered: u64 = o.tenants.iter().map(|t| t.unanswered).sum();
            format!(
                "{accepted} accepted, {refused} refused; {unanswered} without a reply after {:.0} s of drain; {} dead letters",
                o.drain_seconds, o.dead_letters
            )
        }),
        met: overload.map(|o| o.dead_letters == 0 && o.tenants.iter().all(|t| t.unanswered == 0)),
    });
    let breaches: u64 = runs.iter().map(RunResult::isolation_breaches).sum();
    goals.push(Goal {
        name: "isolation under load".into(),
        target: "no send on another tenant's bridge, none twice".into(),
        measured: format!("{breaches} misrouted or duplicate sends in all runs"),
        met: Some(breaches == 0),
    });
    goals
}

/// fifo / fair quiet p99 for every scenario run both ways.
pub fn compare(runs: &[RunResult]) -> Vec<Comparison> {
    runs.iter()
        .filter(|r| r.scheduler == "fair" && r.quiet_latency.count > 0)
        .filter_map(|fair| {
            let fifo = find(runs, &fair.scenario, "fifo")?;
            Some(Comparison {
                scenario: fair.scenario.clone(),
                quiet_p99_fair_ms: fair.quiet_latency.p99_ms,
                quiet_p99_fifo_ms: fifo.quiet_latency.p99_ms,
                ratio: ratio(fifo.quiet_latency.p99_ms, fair.quiet_latency.p99_ms),
            })
        })
        .collect()
}

/// The first ramp step where ingest stops keeping up: accepted < 95 % of
/// offered, any refusal, or its answer p99 above one second.
pub fn saturation_point(run: &RunResult) -> Option<&crate::results::StepResult> {
    run.steps.iter().find(|s| {
        s.accepted_per_s < 0.95 * s.offered_per_s || s.refused > 0 || s.http_latency.p99_ms > 1000
    })
}

/// The highest rate of the `cost` sweep the pipeline kept up with: every
/// accepted event answered, none refused, end-to-end p99 ≤ 1 s.
pub fn sustained_rate(runs: &[RunResult]) -> Option<(String, f64)> {
    runs.iter()
        .filter(|r| r.scenario.starts_with("cost-"))
        .filter(|r| {
            r.tenants
                .iter()
                .all(|t| t.unanswered == 0 && t.refused == 0)
                && r.quiet_latency.p99_ms <= 1000
        })
        .filter_map(|r| {
            let (_, rate, _) = crate::scenario::COST_RUNS.iter().find(|(name, _, _)| {
                *name == r.scenario && !crate::scenario::is_idle_cost_run(name)
            })?;
            Some((r.scenario.clone(), *rate))
        })
        .max_by(|a, b| a.1.total_cmp(&b.1))
}
