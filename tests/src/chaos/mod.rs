//! The chaos driver of issue 16: the production topology on this machine
//! ([`topology`]: a 3-node NATS cluster with R3 streams, several replicas of
//! each service as processes), steady webhook traffic with an independent
//! count of every event in ([`load`]) and every send out (the simulator's
//! record), and one kind of fault injected at random moments ([`faults`]).
//! The figures ([`tally`]) say what each fault cost: events lost, sent
//! twice, sent on a wrong bridge, refused at ingest, dead letters, and the
//! time until replies flowed again.
//!
//! Two callers share it: the `chaos` suite of the test command runs
//! [`plan::Plan::short`] of each kind and asserts issue 16's goals; the
//! `switchyard-chaos` binary runs [`plan::Plan::full`] and writes
//! `docs/benchmarks/chaos.md` ([`report`]).

pub mod clock;
pub mod diagnose;
pub mod elections;
pub mod faults;
pub mod load;
pub mod plan;
pub mod replica;
pub mod report;
pub mod tally;
pub mod topology;

use std::{
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use sqlx::PgPool;

use crate::procstat::MachineTicks;
use clock::{Random, unix_ms};
use faults::{Fault, Injected};
use load::Load;
use plan::Plan;
use replica::Role;
use tally::Figures;
use topology::{Shape, Topology};

/// What one run did and found.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub plan: Plan,
    pub injected: Vec<Injected>,
    pub figures: Figures,
    /// Whether every consumer was idle at the end (nothing more could be sent).
    pub settled: bool,
    /// Where lost events got to and what the consumers hold, when events
    /// were lost or the pipeline did not settle (empty otherwise).
    pub diagnosis: String,
    /// Machine CPU over the run: busy and stolen, percent.
    pub machine_busy_percent: f64,
    pub machine_steal_percent: f64,
    pub wall: Duration,
    pub log_dir: PathBuf,
}

impl Outcome {
    /// One line per figure, for a test's output.
    pub fn summary(&self) -> String {
        let f = &self.figures;
        format!(
            "chaos {kind} (seed {seed}): {faults} faults, {posted} posted, {accepted} accepted, \
             non-2xx {refused:?} + {no_answer} without answer, {answered} answered, {lost} lost, \
             {twice} sent twice ({window} in the documented window), {wrong} on a wrong bridge, \
             {unexplained} unexplained sends, {refused_answered} refused but answered, \
             {dead} dead letters, replicas that exited on their own {exits:?} \
             (start-ups retried: {retried}), \
             recovery per fault {recovery:?} ms (after NATS had its leaders back {after_leaders:?} ms; first reply after it {first:?} ms; slowest event {worst:?}), latency p50 {p50} ms p99 {p99} ms, \
             settled {settled}, machine busy {busy:.0} % (stolen {steal:.0} %), {wall:.0?}; logs in {logs}",
            kind = self.plan.kind.name(),
            seed = self.plan.seed,
            faults = self.injected.len(),
            posted = f.posted,
            accepted = f.accepted,
            refused = f.refused,
            no_answer = f.no_answer,
            answered = f.answered,
            lost = f.lost.len(),
            twice = f.sent_twice.len(),
            window = f.sent_twice_in_window,
            wrong = f.wrong_bridge,
            unexplained = f.unexplained_sends,
            refused_answered = f.refused_but_answered,
            dead = f.dead_letters,
            recovery = f.recovery_ms,
            after_leaders = f.after_leaders_ms,
            exits = f.unexpected_exits,
            retried = f.start_up_failures,
            first = f.first_reply_ms,
            worst = f.slowest,
            p50 = f.latency_p50_ms,
            p99 = f.latency_p99_ms,
            settled = self.settled,
            busy = self.machine_busy_percent,
            steal = self.machine_steal_percent,
            wall = self.wall,
            logs = self.log_dir.display(),
        ) + &format!(
            "\nfaults: {}",
            self.injected
                .iter()
                .map(|i| match i.leaders_back_ms {
                    Some(back) => format!(
                        "{} (NATS leaders back {} ms after)",
                        i.what,
                        back.saturating_sub(i.began_ms)
                    ),
                    None => i.what.clone(),
                })
                .collect::<Vec<_>>()
                .join("; ")
        ) + &format!(
            "\nreplies per second from 5 s before each fault: {:?}",
            self.figures.sends_per_second
        ) + &if self.diagnosis.is_empty() {
            String::new()
        } else {
            format!("\n{}", self.diagnosis)
        }
    }
}

/// Runs `plan` on a fresh topology over the migrated database `db` (URL
/// `db_url`), replicas being processes of `program`, their logs in `log_dir`.
pub async fn run(
    plan: &Plan,
    program: &Path,
    log_dir: &Path,
    db: &PgPool,
    db_url: &str,
) -> anyhow::Result<Outcome> {
    let started = Instant::now();
    let (ingest, routers, senders) = plan.replicas;
    let shape = Shape {
        program: program.to_owned(),
        log_dir: log_dir.to_owned(),
        tenants: plan.tenants,
        ingest,
        routers,
        senders,
        partitions: plan.partitions,
    };
    let mut topology = Topology::start(&shape, db, db_url).await?;
    let machine_before = MachineTicks::now();
    let bases = topology.ingest_bases();
    let urls = topology
        .tenants
        .iter()
        .map(|t| bases.iter().map(|b| topology.webhook_url(b, t)).collect())
        .collect::<anyhow::Result<Vec<Vec<String>>>>()?;
    let load = Load::start(plan.rate, topology.tenants.clone(), urls);

    let mut random = Random::new(plan.seed);
    let mut injected: Vec<(Option<Role>, Injected)> = Vec::new();
    topology.watch_for(plan.warmup).await?;
    for fault in &plan.faults {
        topology
            .watch_for(random.between(plan.gap.0, plan.gap.1))
            .await?;
        let done = fault.inject(&mut topology, &mut random).await?;
        let role = match fault {
            Fault::Kill { role } => Some(*role),
            _ => None,
        };
        injected.push((role, done));
    }
    topology.watch_for(plan.tail).await?;
    let posted = load.stop().await;
    let traffic_end_ms = unix_ms();

    // The drain: every accepted event answered, then every consumer idle
    // (so no later copy of a reply can still go out).
    let accepted: Vec<(String, u64)> = posted
        .iter()
        .filter(|p| p.accepted())
        .map(|p| (p.tenant.clone(), p.seq))
        .collect();
    let drain_until = Instant::now() + plan.drain;
    while Instant::now() < drain_until && !all_answered(&topology, &accepted) {
        topology.watch_for(Duration::from_millis(200)).await?;
    }
    let settled = crate::pipeline::settled_within(
        &topology.js,
        drain_until
            .saturating_duration_since(Instant::now())
            .max(Duration::from_secs(10)),
    )
    .await;
    let machine = MachineTicks::now()
        .zip(machine_before)
        .map_or((0.0, 0.0), |(now, before)| now.shares_since(&before));
    let mut figures = tally::tally(
        &posted,
        &topology.sim.sends(),
        &injected,
        traffic_end_ms,
        topology.dead_letters().await,
    );
    figures.unexpected_exits = topology.unexpected_exits().to_vec();
    figures.start_up_failures = topology.start_up_failures();
    let began: Vec<u64> = injected.iter().map(|(_, i)| i.began_ms).collect();
    let mut diagnosis = diagnose::slowest_paths(&topology, &figures.slowest_events, &began).await;
    if !figures.lost.is_empty() || !settled {
        diagnosis.push_str(&diagnose::diagnose(&topology, &figures.lost).await);
    }
    Ok(Outcome {
        plan: plan.clone(),
        injected: injected.into_iter().map(|(_, i)| i).collect(),
        figures,
        settled,
        diagnosis,
        machine_busy_percent: machine.0,
        machine_steal_percent: machine.1,
        wall: started.elapsed(),
        log_dir: log_dir.to_owned(),
    })
}

/// Whether the simulator has a reply for every one of `accepted`.
fn all_answered(topology: &Topology, accepted: &[(String, u64)]) -> bool {
    let answered: std::collections::BTreeSet<(String, u64)> = topology
        .sim
        .sends()
        .iter()
        .filter_map(|s| load::parse_reply(&s.body).map(|(t, n)| (t.to_owned(), n)))
        .collect();
    accepted.iter().all(|k| answered.contains(k))
}
