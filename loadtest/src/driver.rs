//! Drives one scenario against one deployment: posts the webhooks on an
//! open-loop schedule (bounded: the schedule is finite and requests in flight
//! are capped), waits for the replies, and turns what the simulator recorded
//! into a [`RunResult`].

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex, PoisonError},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use indicatif::ProgressBar;
use tokio::sync::Semaphore;

use switchyard_tests::procstat::Sampler;

use crate::{
    cost::Cost,
    inlet::token_of,
    results::{RunResult, StepResult, TenantResult},
    scenario::{Role, Scenario},
    schedule::{Planned, schedule},
    stack::Stack,
    stats::{self, Percentiles},
};

/// Most webhook requests in flight at once (the load generator's own bound).
const MAX_IN_FLIGHT: usize = 512;

fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// One request as it went.
#[derive(Debug, Clone, Copy)]
struct Sent {
    plan: Planned,
    started_ms: u64,
    /// Seconds after the traffic began.
    started_s: f64,
    http_ms: u64,
    status: u16,
}

/// Runs `scenario` on `dep`; `scheduler` only labels the result.
pub async fn run(
    dep: &impl Stack,
    scenario: &Scenario,
    scheduler: &str,
    progress: &ProgressBar,
) -> anyhow::Result<RunResult> {
    let plan = schedule(scenario);
    let inlets = dep.inlets();
    anyhow::ensure!(
        inlets.len() == scenario.tenants.len(),
        "the deployment has {} inlets for {} tenants",
        inlets.len(),
        scenario.tenants.len()
    );
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(MAX_IN_FLIGHT)
        .timeout(Duration::from_secs(10))
        .build()?;
    // PostgreSQL's server and backends, whoever they serve: on a machine of
    // its own (as in the benchmarks) that is this pipeline.
    let sampler = Arc::new(Mutex::new(
        Sampler::new(&dep.processes()).with_group("postgres", "postgres"),
    ));
    let counters_before = dep.counters().await;

    progress.set_length(plan.len() as u64);
    progress.set_position(0);
    progress.set_message(format!("{} / {scheduler}: traffic", scenario.name));
    let sent: Arc<Mutex<Vec<Sent>>> = Arc::new(Mutex::new(Vec::with_capacity(plan.len())));
    let limit = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let t0 = tokio::time::Instant::now();
    let t0_ms = unix_ms();
    let mut tasks = tokio::task::JoinSet::new();
    let mut next_sample = Duration::from_millis(500);
    for p in &plan {
        tokio::time::sleep_until(t0 + p.at).await;
        if p.at >= next_sample {
            next_sample = p.at + Duration::from_millis(500);
            sampler
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .sample();
        }
        let permit = Arc::clone(&limit).acquire_owned().await?;
        let (sent, progress) = (Arc::clone(&sent), progress.clone());
        let request = inlets[p.tenant].request(
            &http,
            &scenario.tenants[p.tenant].id,
            p.event,
            unix_ms() / 1000,
        );
        let p = *p;
        tasks.spawn(async move {
            let started_ms = unix_ms();
            let started_s = t0.elapsed().as_secs_f64();
            let clock = Instant::now();
            let status = match request.send().await {
                Ok(r) => r.status().as_u16(),
                Err(_) => 0,
            };
            let http_ms = u64::try_from(clock.elapsed().as_millis()).unwrap_or(u64::MAX);
            drop(permit);
            sent.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(Sent {
                    plan: p,
                    started_ms,
                    started_s,
                    http_ms,
                    status,
                });
            progress.inc(1);
        });
        // Reap finished tasks as we go so the set stays small.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    // The traffic window lasts its full length even when the plan ends
    // earlier or is empty (the idle run measures a window with no events).
    while t0.elapsed() < scenario.duration {
        sampler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sample();
        let next =
            (t0 + scenario.duration).min(tokio::time::Instant::now() + Duration::from_millis(500));
        tokio::time::sleep_until(next).await;
    }
    let traffic_end = t0.elapsed();
    let traffic_end_ms = unix_ms();

    // Drain: wait for every accepted event of the tenants that must drain.
    progress.set_message(format!("{} / {scheduler}: draining", scenario.name));
    let must: Vec<(String, u64)> = {
        let sent = sent.lock().unwrap_or_else(PoisonError::into_inner);
        let mut must: Vec<(String, u64)> = sent
            .iter()
            .filter(|s| s.status == 200 && scenario.tenants[s.plan.tenant].role.must_drain())
            .map(|s| (scenario.tenants[s.plan.tenant].id.clone(), s.plan.event))
            .collect();
        must.sort();
        must.dedup();
        must
    };
    let drain_started = Instant::now();
    loop {
        let answered: std::collections::HashSet<(String, u64)> = dep
            .sends()
            .await?
            .iter()
            .filter_map(|s| token_of(&s.body).map(|(t, e)| (t.to_owned(), e)))
            .collect();
        let left = must.iter().filter(|k| !answered.contains(*k)).count();
        progress.set_message(format!(
            "{} / {scheduler}: draining, {left} replies outstanding",
            scenario.name
        ));
        if left == 0 || drain_started.elapsed() >= scenario.drain {
            break;
        }
        sampler
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sample();
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let end_ms = unix_ms();
    let drain = drain_started.elapsed();
    let services = match Arc::try_unwrap(sampler) {
        Ok(m) => m
            .into_inner()
            .unwrap_or_else(PoisonError::into_inner)
            .finish(),
        Err(_) => BTreeMap::new(),
    };
    let sent = std::mem::take(&mut *sent.lock().unwrap_or_else(PoisonError::into_inner));
    let counters_after = dep.counters().await;
    let dead_letters = dep.dead_letters().await?;
    let mut result = summarise(
        &dep.sends().await?,
        dead_letters,
        scenario,
        scheduler,
        &sent,
        Timeline {
            t0_ms,
            traffic_end,
            traffic_end_ms,
            end_ms,
            drain,
        },
        services,
    )?;
    let delivered = result.tenants.iter().map(|t| t.replied).sum();
    result.cost = Cost::of(
        delivered,
        &result.services,
        &counters_before,
        &counters_after,
    );
    Ok(result)
}

struct Timeline {
    t0_ms: u64,
    traffic_end: Duration,
    traffic_end_ms: u64,
    end_ms: u64,
    drain: Duration,
}

fn summarise(
    recorded: &[switchyard_bridge_sim::RecordedSend],
    dead_letters: u64,
    scenario: &Scenario,
    scheduler: &str,
    sent: &[Sent],
    tl: Timeline,
    services: BTreeMap<String, switchyard_tests::procstat::Usage>,
) -> anyhow::Result<RunResult> {
    let index: HashMap<&str, usize> = scenario
        .tenants
        .iter()
        .enumerate()
        .map(|(i, t)| (t.id.as_str(), i))
        .collect();
    // The first accepted request of each event is when its clock started.
    let mut first_accept: HashMap<(usize, u64), &Sent> = HashMap::new();
    for s in sent.iter().filter(|s| s.status == 200) {
        let key = (s.plan.tenant, s.plan.event);
        let earlier = first_accept
            .get(&key)
            .is_some_and(|f| f.started_ms <= s.started_ms);
        if !earlier {
            first_accept.insert(key, s);
        }
    }
    let n = scenario.tenants.len();
    let mut replies: HashMap<(usize, u64), u64> = HashMap::new();
    let mut duplicates = vec![0u64; n];
    let mut misrouted = vec![0u64; n];
    let warmup = (tl.traffic_end.as_secs_f64() / 5.0).min(2.0);
    let window = (warmup, tl.traffic_end.as_secs_f64());
    let window_ms = (tl.t0_ms + (window.0 * 1000.0) as u64, tl.traffic_end_ms);
    let mut in_window = vec![0u64; n];
    for s in recorded {
        let Some((tenant, event)) = token_of(&s.body) else {
            continue;
        };
        let Some(&i) = index.get(tenant) else {
            continue;
        };
        if s.customer_ref != tenant {
            misrouted[i] += 1;
        }
        if (window_ms.0..=window_ms.1).contains(&s.at_ms) {
            in_window[i] += 1;
        }
        match replies.entry((i, event)) {
            std::collections::hash_map::Entry::Occupied(_) => duplicates[i] += 1,
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(s.at_ms);
            }
        }
    }
    let window_len = (window.1 - window.0).max(1e-3);
    let total_in_window: u64 = in_window.iter().sum();
    let mut quiet_all = stats::histogram()?;
    let mut tenants = Vec::with_capacity(n);
    for (i, t) in scenario.tenants.iter().enumerate() {
        let mut latency = stats::histogram()?;
        let mut http = stats::histogram()?;
        let mine: Vec<&Sent> = sent.iter().filter(|s| s.plan.tenant == i).collect();
        // Latencies count the events posted in the window, as throughput
        // does: a tenant's first events pay for cold lanes, connections and
        // caches (60-180 ms each on this machine, against 3-5 ms after), and
        // with 75 events a tenant that is its p99. Every event still counts
        // as replied or unanswered, and a censored one is always recorded.
        let posted_in_window = |s: &Sent| s.started_ms >= window_ms.0;
        for s in mine.iter().filter(|s| posted_in_window(s)) {
            stats::record(&mut http, s.http_ms);
        }
        let mut replied = 0;
        let mut unanswered = 0;
        let mut censored = 0;
        for ((ti, event), s) in &first_accept {
            if *ti != i {
                continue;
            }
            match replies.get(&(i, *event)) {
                Some(at) => {
                    replied += 1;
                    if posted_in_window(s) {
                        stats::record(&mut latency, at.saturating_sub(s.started_ms));
                    }
                }
                None => {
                    unanswered += 1;
                    if t.role.must_drain() {
                        censored += 1;
                        stats::record(&mut latency, tl.end_ms.saturating_sub(s.started_ms));
                    }
                }
            }
        }
        if t.role == Role::Quiet {
            quiet_all.add(&latency)?;
        }
        tenants.push(TenantResult {
            id: t.id.clone(),
            channel: t.channel,
            role: t.role,
            weight: t.weight,
            offered: mine.len() as u64,
            accepted: mine.iter().filter(|s| s.status == 200).count() as u64,
            refused: mine.iter().filter(|s| s.status != 200).count() as u64,
            replied,
            unanswered,
            duplicate_sends: duplicates[i],
            misrouted: misrouted[i],
            latency: Percentiles::of(&latency),
            censored,
            http_latency: Percentiles::of(&http),
            throughput_per_s: in_window[i] as f64 / window_len,
            share: if total_in_window == 0 {
                0.0
            } else {
                in_window[i] as f64 / total_in_window as f64
            },
        });
    }
    let backlogged: Vec<f64> = tenants
        .iter()
        .filter(|t| matches!(t.role, Role::Noisy | Role::Weighted))
        .map(|t| t.throughput_per_s / f64::from(t.weight.max(1)))
        .collect();
    let noisy_share_of_leftover = tenants.iter().find(|t| t.role == Role::Noisy).map(|noisy| {
        let budget = f64::from(scenario.fleet_per_minute) / 60.0 * window_len;
        let others = (total_in_window as f64) - noisy.throughput_per_s * window_len;
        noisy.throughput_per_s * window_len / (budget - others).max(1.0)
    });
    let steps = step_results(scenario, sent, &first_accept, &replies)?;
    let by_second = by_second(tl.t0_ms, &first_accept, &replies)?;
    Ok(RunResult {
        scenario: scenario.name.to_owned(),
        scheduler: scheduler.to_owned(),
        fleet_per_minute: scenario.fleet_per_minute,
        traffic_seconds: tl.traffic_end.as_secs_f64(),
        window_seconds: window,
        drain_seconds: tl.drain.as_secs_f64(),
        tenants,
        quiet_latency: Percentiles::of(&quiet_all),
        jain_backlogged: stats::jain(&backlogged),
        noisy_share_of_leftover,
        services,
        steps,
        by_second,
        dead_letters,
        cost: Cost::default(),
    })
}

/// The replied events' latency by the second of the run they were posted in.
fn by_second(
    t0_ms: u64,
    first_accept: &HashMap<(usize, u64), &Sent>,
    replies: &HashMap<(usize, u64), u64>,
) -> anyhow::Result<Vec<Percentiles>> {
    let mut seconds: Vec<hdrhistogram::Histogram<u64>> = Vec::new();
    for (key, s) in first_accept {
        let Some(at) = replies.get(key) else {
            continue;
        };
        let second = usize::try_from(s.started_ms.saturating_sub(t0_ms) / 1000).unwrap_or(0);
        while seconds.len() <= second {
            seconds.push(stats::histogram()?);
        }
        stats::record(&mut seconds[second], at.saturating_sub(s.started_ms));
    }
    Ok(seconds.iter().map(Percentiles::of).collect())
}

fn step_results(
    scenario: &Scenario,
    sent: &[Sent],
    first_accept: &HashMap<(usize, u64), &Sent>,
    replies: &HashMap<(usize, u64), u64>,
) -> anyhow::Result<Vec<StepResult>> {
    let mut out = Vec::new();
    let mut offset = 0.0;
    for (k, step) in scenario.ramp.iter().enumerate() {
        let len = step.duration.as_secs_f64().max(1e-3);
        let mine: Vec<&Sent> = sent.iter().filter(|s| s.plan.step == k).collect();
        let mut http = stats::histogram()?;
        let mut e2e = stats::histogram()?;
        for s in &mine {
            stats::record(&mut http, s.http_ms);
        }
        for ((tenant, event), s) in first_accept {
            if s.plan.step == k
                && let Some(at) = replies.get(&(*tenant, *event))
            {
                stats::record(&mut e2e, at.saturating_sub(s.started_ms));
            }
        }
        let started = mine
            .iter()
            .filter(|s| s.started_s >= offset && s.started_s < offset + len)
            .count();
        out.push(StepResult {
            rate_per_tenant: step.rate_per_tenant,
            offered_per_s: mine.len() as f64 / len,
            started_per_s: started as f64 / len,
            accepted_per_s: mine.iter().filter(|s| s.status == 200).count() as f64 / len,
            refused: mine.iter().filter(|s| s.status != 200).count() as u64,
            http_latency: Percentiles::of(&http),
            latency: Percentiles::of(&e2e),
        });
        offset += len;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::{all, test_knobs};

    /// A run of 10 s: one event of the first tenant posted at its start
    /// (answered after 150 ms, a cold lane) and one posted in the window
    /// (answered after 4 ms).
    #[test]
    fn latency_counts_the_events_posted_in_the_window_and_every_event_counts_as_replied_and_by_second()
     {
        let scenario = all(&test_knobs())
            .into_iter()
            .find(|s| s.name == "steady")
            .expect("the steady scenario");
        let tenant = scenario.tenants[0].id.clone();
        let t0_ms = 1_000_000;
        let sent = |event: u64, after_ms: u64| Sent {
            plan: Planned {
                at: Duration::from_millis(after_ms),
                tenant: 0,
                event,
                step: 0,
            },
            started_ms: t0_ms + after_ms,
            started_s: after_ms as f64 / 1000.0,
            http_ms: 1,
            status: 200,
        };
        let reply = |event: u64, at_ms: u64| switchyard_bridge_sim::RecordedSend {
            bridge_id: 1,
            customer_ref: tenant.clone(),
            chat: "c".to_owned(),
            body: format!("echo: lt:{tenant}:{event}"),
            at_ms,
            message_id: format!("m{event}"),
        };
        let tl = Timeline {
            t0_ms,
            traffic_end: Duration::from_secs(10),
            traffic_end_ms: t0_ms + 10_000,
            end_ms: t0_ms + 10_000,
            drain: Duration::ZERO,
        };
        let result = summarise(
            &[reply(1, t0_ms + 150), reply(2, t0_ms + 5_004)],
            0,
            &scenario,
            "fair",
            &[sent(1, 0), sent(2, 5_000)],
            tl,
            BTreeMap::new(),
        )
        .unwrap();

        let first = &result.tenants[0];
        assert_eq!((first.replied, first.unanswered), (2, 0));
        assert_eq!(first.latency.count, 1, "the cold first event is left out");
        assert_eq!(first.latency.max_ms, 4);
        // By second posted: the cold event in second 0, the other in second 5.
        let by_second: Vec<(u64, u64)> = result
            .by_second
            .iter()
            .map(|p| (p.count, p.max_ms))
            .collect();
        assert_eq!(
            by_second,
            [(1, 150), (0, 0), (0, 0), (0, 0), (0, 0), (1, 4)],
            "every replied event, warm-up included, in the second it was posted"
        );
    }
}
