//! Ingest throughput and latency over HTTP, next to a baseline measured in the
//! same run: the work ingest cannot avoid (the idempotency insert plus a
//! JetStream publish with ack, at the same concurrency, without HTTP).
//!
//! Run: `cargo bench -p switchyard-tests --bench ingest` (about 40 s, loopback
//! only). It spawns its own nats-server and creates (then drops) its own
//! database on `DATABASE_URL` (default `postgres://postgres@127.0.0.1:5432/postgres`).
//!
//! Phases:
//! 1. baseline: `CONCURRENCY` workers, each `INSERT … ON CONFLICT DO NOTHING`
//!    then publish and await the ack, closed loop;
//! 2. ingest at its maximum: `CONCURRENCY` HTTP clients posting tokened
//!    `message` webhooks for `TENANTS` tenants, closed loop;
//! 3. ingest at half that rate, open loop (requests start on a fixed schedule
//!    and latency counts from the scheduled start, so a stall is not hidden).

// Benchmark tooling, not a service: a failed start-up stops the run loudly,
// and the figures it prints on stdout are its report.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stdout)]

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use async_nats::jetstream::{self, message::PublishMessage};
use hdrhistogram::Histogram;
use sqlx::PgPool;
use switchyard_shared::{
    config::{Env, NatsSettings},
    ids::TenantId,
    streams, subjects,
    webhook_auth::WebhookKeys,
};
use switchyard_tests::{
    nats_server::NatsServer,
    procstat::{self, MachineTicks},
    traffic,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

const CONCURRENCY: usize = 64;
const TENANTS: usize = 1000;
const PHASE: Duration = Duration::from_secs(8);
const WARMUP: Duration = Duration::from_secs(1);
const DB_CONNECTIONS: u32 = 10;
const SECRET: &str = "bench-secret";
/// Thread names of the two runtimes (at most 15 characters: /proc keeps no more).
const INGEST_THREADS: &str = "ingest-worker";
const LOAD_THREADS: &str = "load-generator";
/// The latency goal at half the maximum rate.
const LATENCY_GOAL_MS: f64 = 20.0;
/// Width of one window of the open-loop timeline.
const WINDOW: Duration = Duration::from_millis(250);
/// A window with less stolen CPU than this counts as calm.
const CALM_STEAL_PERCENT: f64 = 5.0;

fn main() -> anyhow::Result<()> {
    // Ingest (and everything it talks to) runs on this runtime; the HTTP load
    // generator on a runtime of its own, as if it were another process, so
    // neither waits in the other's run queue and their CPU can be told apart.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .thread_name(INGEST_THREADS)
        .enable_all()
        .build()?;
    let load = tokio::runtime::Builder::new_multi_thread()
        .thread_name(LOAD_THREADS)
        .enable_all()
        .build()?;
    runtime.block_on(bench(load.handle().clone()))
}

struct Figures {
    rate: f64,
    latency: Histogram<u64>,
    errors: u64,
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn describe(name: &str, f: &Figures) -> String {
    let ms = |q: f64| f.latency.value_at_quantile(q) as f64 / 1000.0;
    format!(
        "{name:<44} {:>8.0} ev/s   p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  max {:>7.2} ms  errors {}",
        f.rate,
        ms(0.5),
        ms(0.9),
        ms(0.99),
        f.latency.max() as f64 / 1000.0,
        f.errors
    )
}

fn body(tenant: &TenantId, id: &str) -> String {
    format!(
        r#"{{"event":"message","customer_ref":"{tenant}","message_id":"{id}","contact_id":"15550001234@s.whatsapp.net","phone":"15550001234","chat_id":"15550001234@s.whatsapp.net","name":"Alice","body":"Hello! I would like to order two pizzas, please.","type":"text","media_type":"","is_group":false,"from_me":false,"timestamp":1777180605}}"#
    )
}

async fn bench(load: tokio::runtime::Handle) -> anyhow::Result<()> {
    switchyard_tests::bench::with_dependencies(
        "switchyard_bench_ingest",
        DB_CONNECTIONS,
        async |nats, pool, _| run_phases(nats, pool, load).await,
    )
    .await
}

async fn run_phases(
    nats: &NatsServer,
    pool: PgPool,
    load: tokio::runtime::Handle,
) -> anyhow::Result<()> {
    let nats_settings = NatsSettings::from_env(&Env::from_map([("NATS_URL", nats.url())]))?;
    let client = switchyard_shared::nats::connect(&nats_settings, "bench").await?;
    let js = streams::context(client.clone(), Duration::from_secs(5));
    streams::ensure_streams(&js, &nats_settings).await?;
    let tenants: Arc<Vec<TenantId>> = Arc::new(
        (0..TENANTS)
            .map(|i| TenantId::parse(&format!("tenant-{i:04}")))
            .collect::<Result<_, _>>()?,
    );

    println!(
        "ingest benchmark: {CONCURRENCY} concurrent, {TENANTS} tenants, {} s per phase, {} cores, nats-server {}",
        PHASE.as_secs(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        client.server_info().version
    );

    let baseline = baseline(&pool, &js, &tenants).await?;
    println!(
        "{}",
        describe("baseline (insert + publish/ack, no HTTP)", &baseline)
    );
    let ceiling = publish_only(&js, &tenants).await;
    println!(
        "{}",
        describe("for reference: publish/ack alone, no DB", &ceiling)
    );

    let shutdown = CancellationToken::new();
    let deps = switchyard_ingest::Deps {
        nats: client.clone(),
        db: pool.clone(),
        shutdown: shutdown.clone(),
        tasks: TaskTracker::new(),
        shutdown_grace: Duration::from_secs(5),
    };
    let ingest =
        switchyard_ingest::build(deps, switchyard_ingest::Settings::for_secret(SECRET.into()))
            .await?;
    let base = format!("http://{}", ingest.local_addr());
    let served = tokio::spawn(ingest.run_until_stopped());
    let keys = WebhookKeys::new(SECRET.into(), None);
    let urls: Arc<Vec<String>> =
        Arc::new(tenants.iter().map(|t| keys.webhook_url(&base, t)).collect());
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(CONCURRENCY * 4)
        .build()?;

    let meter = CpuMeter::start(&pool, nats).await;
    let max = {
        let (http, urls, tenants) = (http.clone(), Arc::clone(&urls), Arc::clone(&tenants));
        load.spawn(async move { ingest_closed_loop(&http, &urls, &tenants).await })
            .await?
    };
    let max_cpu = meter.finish().await;
    println!(
        "{}",
        describe("ingest at its maximum (HTTP, closed loop)", &max)
    );
    max_cpu.print(max.rate);
    // Marks are written asynchronously: check they kept up with the maximum
    // rate (a backlog of them would also load the next phase).
    let settled = Instant::now();
    switchyard_tests::poll::until(
        "the marks of the maximum-rate phase to land",
        Duration::from_secs(120),
        || async {
            let claimed: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM inbound_event_keys WHERE state = 'claimed' AND event_id LIKE 'http-%'",
            )
            .fetch_one(&pool)
            .await
            .ok()?;
            (claimed == 0).then_some(())
        },
    )
    .await;
    println!(
        "marks of that phase all written {:.2} s after it ended",
        settled.elapsed().as_secs_f64()
    );
    let half_rate = max.rate / 2.0;
    let meter = CpuMeter::start(&pool, nats).await;
    let (half, timeline) = {
        let (http, urls, tenants) = (http.clone(), Arc::clone(&urls), Arc::clone(&tenants));
        load.spawn(async move { ingest_open_loop(&http, &urls, &tenants, half_rate).await })
            .await?
    };
    let half_cpu = meter.finish().await;
    println!(
        "{}",
        describe(
            &format!("ingest at half that ({half_rate:.0}/s, open loop)"),
            &half
        )
    );
    half_cpu.print(half.rate);
    timeline.print();

    let ratio = max.rate / baseline.rate;
    let half_p99_ms = half.latency.value_at_quantile(0.99) as f64 / 1000.0;
    println!(
        "ratio ingest/baseline throughput: {:.0} % (goal >= 70 %) {}",
        ratio * 100.0,
        if ratio >= 0.7 { "MET" } else { "NOT MET" }
    );
    println!(
        "for reference: ingest / publish-alone throughput: {:.0} %",
        max.rate / ceiling.rate * 100.0
    );
    println!(
        "ingest p99 at half its maximum rate: {half_p99_ms:.2} ms (goal < {LATENCY_GOAL_MS} ms) {}",
        if half_p99_ms < LATENCY_GOAL_MS {
            "MET"
        } else {
            "NOT MET"
        }
    );

    shutdown.cancel();
    let _ = served.await;
    // Claims skipped because PostgreSQL was slow or saturated would flatter the figures.
    let degraded = traffic::metric_sum(
        &switchyard_shared::ops_server::metrics_handle().render(),
        switchyard_ingest::metrics::DEGRADED,
        "",
    );
    let batch = switchyard_shared::ops_server::metrics_handle()
        .render()
        .lines()
        .filter(|l| l.starts_with(switchyard_ingest::metrics::CLAIM_BATCH_SIZE))
        .map(str::to_owned)
        .collect::<Vec<_>>();
    let mean_batch = match (
        batch.iter().find(|l| l.contains("_sum")),
        batch.iter().find(|l| l.contains("_count")),
    ) {
        (Some(sum), Some(count)) => {
            let v = |l: &String| l.rsplit(' ').next().and_then(|x| x.parse::<f64>().ok());
            v(sum).zip(v(count)).map(|(s, c)| s / c.max(1.0))
        }
        _ => None,
    };
    println!(
        "claims skipped as degraded during the ingest phases: {degraded}; mean claims per group-commit statement: {}",
        mean_batch.map_or("n/a".to_owned(), |m| format!("{m:.1}"))
    );
    pool.close().await;
    Ok(())
}

/// Runs `work` in `CONCURRENCY` closed-loop workers for WARMUP + PHASE;
/// counts only what finishes after the warm-up.
async fn closed_loop<F, Fut>(work: F) -> Figures
where
    F: Fn(usize, u64) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let start = Instant::now();
    let measure_from = start + WARMUP;
    let end = measure_from + PHASE;
    let errors = Arc::new(AtomicU64::new(0));
    let workers = (0..CONCURRENCY).map(|w| {
        let work = work.clone();
        let errors = Arc::clone(&errors);
        tokio::spawn(async move {
            let mut latency = histogram();
            let mut n = 0u64;
            loop {
                let t0 = Instant::now();
                if t0 >= end {
                    break;
                }
                let ok = work(w, n).await;
                n += 1;
                if t0 >= measure_from {
                    if ok {
                        latency.saturating_record(t0.elapsed().as_micros() as u64);
                    } else {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            latency
        })
    });
    let mut latency = histogram();
    for h in futures::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
    {
        latency.add(h).ok();
    }
    Figures {
        rate: latency.len() as f64 / PHASE.as_secs_f64(),
        latency,
        errors: errors.load(Ordering::Relaxed),
    }
}

async fn baseline(
    pool: &PgPool,
    js: &jetstream::Context,
    tenants: &Arc<Vec<TenantId>>,
) -> anyhow::Result<Figures> {
    let (pool, js, tenants) = (pool.clone(), js.clone(), Arc::clone(tenants));
    Ok(closed_loop(move |w, n| {
        let (pool, js, tenants) = (pool.clone(), js.clone(), Arc::clone(&tenants));
        async move {
            let tenant = &tenants[(w * 7919 + n as usize) % tenants.len()];
            let id = format!("base-{w}-{n}");
            let payload = body(tenant, &id);
            let inserted = sqlx::query(
                "INSERT INTO inbound_event_keys (tenant_id, event_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(tenant.as_str())
            .bind(&id)
            .execute(&pool)
            .await;
            if inserted.is_err() {
                return false;
            }
            let message = PublishMessage::build()
                .payload(payload.into())
                .message_id(format!("{tenant}:{id}"));
            match js.send_publish(subjects::inbound(tenant), message).await {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await)
}

async fn publish_only(js: &jetstream::Context, tenants: &Arc<Vec<TenantId>>) -> Figures {
    let (js, tenants) = (js.clone(), Arc::clone(tenants));
    closed_loop(move |w, n| {
        let (js, tenants) = (js.clone(), Arc::clone(&tenants));
        async move {
            let tenant = &tenants[(w * 7919 + n as usize) % tenants.len()];
            let id = format!("ceiling-{w}-{n}");
            let message = PublishMessage::build()
                .payload(body(tenant, &id).into())
                .message_id(format!("{tenant}:{id}"));
            match js.send_publish(subjects::inbound(tenant), message).await {
                Ok(ack) => ack.await.is_ok(),
                Err(_) => false,
            }
        }
    })
    .await
}

async fn post(http: &reqwest::Client, url: &str, body: String) -> bool {
    match http.post(url).body(body).send().await {
        Ok(response) => response.status().is_success(),
        Err(_) => false,
    }
}

async fn ingest_closed_loop(
    http: &reqwest::Client,
    urls: &Arc<Vec<String>>,
    tenants: &Arc<Vec<TenantId>>,
) -> Figures {
    let (http, urls, tenants) = (http.clone(), Arc::clone(urls), Arc::clone(tenants));
    closed_loop(move |w, n| {
        let (http, urls, tenants) = (http.clone(), Arc::clone(&urls), Arc::clone(&tenants));
        async move {
            let i = (w * 7919 + n as usize) % tenants.len();
            post(&http, &urls[i], body(&tenants[i], &format!("http-{w}-{n}"))).await
        }
    })
    .await
}

async fn ingest_open_loop(
    http: &reqwest::Client,
    urls: &Arc<Vec<String>>,
    tenants: &Arc<Vec<TenantId>>,
    rate: f64,
) -> (Figures, Timeline) {
    let interval = Duration::from_secs_f64(1.0 / rate.max(1.0));
    let start = Instant::now();
    let measure_from = start + WARMUP;
    let end = measure_from + PHASE;
    let errors = Arc::new(AtomicU64::new(0));
    let machine = tokio::spawn(sample_machine(measure_from, end));
    // (scheduled start since measure_from, latency), both in µs.
    let (done_tx, mut done_rx) = tokio::sync::mpsc::unbounded_channel::<(u64, u64)>();
    let mut n: u64 = 0;
    loop {
        let scheduled = start + interval.mul_f64(n as f64);
        if scheduled >= end {
            break;
        }
        tokio::time::sleep_until(scheduled.into()).await;
        let (http, urls, tenants) = (http.clone(), Arc::clone(urls), Arc::clone(tenants));
        let (done_tx, errors) = (done_tx.clone(), Arc::clone(&errors));
        tokio::spawn(async move {
            let i = (n as usize * 7919) % tenants.len();
            let ok = post(
                &http,
                &urls[i],
                body(&tenants[i], &format!("http-open-{n}")),
            )
            .await;
            if scheduled >= measure_from {
                if ok {
                    let at = scheduled.duration_since(measure_from).as_micros() as u64;
                    let _ = done_tx.send((at, scheduled.elapsed().as_micros() as u64));
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        n += 1;
    }
    drop(done_tx);
    let mut latency = histogram();
    let mut requests = Vec::new();
    while let Some((at, us)) = done_rx.recv().await {
        latency.saturating_record(us);
        requests.push((at, us));
    }
    let figures = Figures {
        rate: latency.len() as f64 / PHASE.as_secs_f64(),
        latency,
        errors: errors.load(Ordering::Relaxed),
    };
    let machine = machine.await.unwrap_or_default();
    (figures, Timeline::new(&requests, &machine))
}

/// CPU time over one phase of ingest (its runtime's threads), the load
/// generator (its own runtime's threads), nats-server, and the PostgreSQL
/// backends serving the benchmark's database. CPU time is not wall time: the
/// hypervisor's steal is not charged to it, so these figures hold still on a
/// noisy machine where the latencies do not.
struct CpuMeter<'a> {
    pool: &'a PgPool,
    nats_pid: u32,
    started: Instant,
    before: Parties,
}

/// CPU seconds so far of each party; backends by pid, since connections
/// come and go.
#[derive(Default)]
struct Parties {
    ingest: f64,
    load: f64,
    nats: f64,
    backends: std::collections::HashMap<u32, f64>,
}

struct CpuUse {
    elapsed: f64,
    parties: Vec<(&'static str, f64)>,
}

impl<'a> CpuMeter<'a> {
    async fn start(pool: &'a PgPool, nats: &NatsServer) -> Self {
        let mut meter = Self {
            pool,
            nats_pid: nats.pid(),
            started: Instant::now(),
            before: Parties::default(),
        };
        meter.before = meter.read().await;
        meter.started = Instant::now();
        meter
    }

    async fn read(&self) -> Parties {
        let backends: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()",
        )
        .fetch_all(self.pool)
        .await
        .unwrap_or_default();
        let me = std::process::id();
        Parties {
            ingest: procstat::threads_cpu_seconds(me, INGEST_THREADS),
            load: procstat::threads_cpu_seconds(me, LOAD_THREADS),
            nats: procstat::cpu_seconds(self.nats_pid).unwrap_or(0.0),
            backends: backends
                .into_iter()
                .filter_map(|pid| u32::try_from(pid).ok())
                .filter_map(|pid| Some((pid, procstat::cpu_seconds(pid)?)))
                .collect(),
        }
    }

    async fn finish(self) -> CpuUse {
        let elapsed = self.started.elapsed().as_secs_f64();
        let after = self.read().await;
        // A backend that connected during the phase started from zero.
        let postgres: f64 = after
            .backends
            .iter()
            .map(|(pid, cpu)| cpu - self.before.backends.get(pid).copied().unwrap_or(0.0))
            .sum();
        CpuUse {
            elapsed,
            parties: vec![
                ("ingest", after.ingest - self.before.ingest),
                ("load generator", after.load - self.before.load),
                ("nats-server", after.nats - self.before.nats),
                ("PostgreSQL", postgres),
            ],
        }
    }
}

impl CpuUse {
    /// Prints CPU per event (µs) and in cores, given the events per second.
    fn print(&self, rate: f64) {
        let events = (rate * self.elapsed).max(1.0);
        let parts: Vec<String> = self
            .parties
            .iter()
            .map(|(name, seconds)| {
                format!(
                    "{name} {:.0} µs ({:.2} cores)",
                    seconds / events * 1e6,
                    seconds / self.elapsed
                )
            })
            .collect();
        let total: f64 = self.parties.iter().map(|(_, s)| s).sum();
        println!(
            "  CPU per event: {}; all {:.0} µs",
            parts.join(", "),
            total / events * 1e6
        );
    }
}

/// The machine's (busy %, steal %) in each `WINDOW` from `from` to `end`.
async fn sample_machine(from: Instant, end: Instant) -> Vec<(f64, f64)> {
    let mut shares = Vec::new();
    tokio::time::sleep_until(from.into()).await;
    let mut last = MachineTicks::now().unwrap_or_default();
    let mut next = from + WINDOW;
    while next <= end {
        tokio::time::sleep_until(next.into()).await;
        let now = MachineTicks::now().unwrap_or_default();
        shares.push(now.shares_since(&last));
        last = now;
        next += WINDOW;
    }
    shares
}

/// One `WINDOW` of the open-loop phase: the requests scheduled in it and
/// what the machine did meanwhile.
struct Window {
    latency: Histogram<u64>,
    slow: u64,
    busy: f64,
    steal: f64,
}

/// Where the slow requests of the open-loop phase sit in time, next to the
/// CPU the hypervisor stole in the same windows: a tail made of a few windows
/// with high steal is the machine, a tail spread evenly is us.
struct Timeline {
    windows: Vec<Window>,
}

impl Timeline {
    fn new(requests: &[(u64, u64)], machine: &[(f64, f64)]) -> Self {
        let mut windows: Vec<Window> = machine
            .iter()
            .map(|&(busy, steal)| Window {
                latency: histogram(),
                slow: 0,
                busy,
                steal,
            })
            .collect();
        let goal_us = (LATENCY_GOAL_MS * 1000.0) as u64;
        for &(at, us) in requests {
            let index = (at / WINDOW.as_micros() as u64) as usize;
            if let Some(window) = windows.get_mut(index) {
                window.latency.saturating_record(us);
                window.slow += u64::from(us >= goal_us);
            }
        }
        Self { windows }
    }

    fn print(&self) {
        let total_slow: u64 = self.windows.iter().map(|w| w.slow).sum();
        let requests: u64 = self.windows.iter().map(|w| w.latency.len()).sum();
        let slow_windows = self.windows.iter().filter(|w| w.slow > 0).count();
        let steals: Vec<f64> = self.windows.iter().map(|w| w.steal).collect();
        let mean_steal = steals.iter().sum::<f64>() / steals.len().max(1) as f64;
        let max_steal = steals.iter().copied().fold(0.0, f64::max);
        println!(
            "  timeline of that phase ({} ms windows): {total_slow} of {requests} requests took >= {LATENCY_GOAL_MS} ms, in {slow_windows} of {} windows; CPU stolen by the hypervisor: mean {mean_steal:.0} %, worst window {max_steal:.0} %",
            WINDOW.as_millis(),
            self.windows.len()
        );
        let mut worst: Vec<(usize, &Window)> = self.windows.iter().enumerate().collect();
        worst.sort_by_key(|(_, w)| std::cmp::Reverse(w.slow));
        for (index, window) in worst.iter().take(5).filter(|(_, w)| w.slow > 0) {
            println!(
                "    at {:>5.2} s: {:>4} requests, {:>4} slow, p99 {:>7.2} ms; machine busy {:>3.0} %, stolen {:>3.0} %",
                (*index as f64) * WINDOW.as_secs_f64(),
                window.latency.len(),
                window.slow,
                window.latency.value_at_quantile(0.99) as f64 / 1000.0,
                window.busy,
                window.steal
            );
        }
        let mut calm = histogram();
        let mut calm_windows = 0;
        for window in self.windows.iter().filter(|w| w.steal < CALM_STEAL_PERCENT) {
            calm.add(&window.latency).ok();
            calm_windows += 1;
        }
        if calm_windows > 0 && calm_windows < self.windows.len() {
            println!(
                "  p99 over the {calm_windows} windows with < {CALM_STEAL_PERCENT} % stolen CPU: {:.2} ms (for reference; the goal counts every request)",
                calm.value_at_quantile(0.99) as f64 / 1000.0
            );
        }
    }
}
