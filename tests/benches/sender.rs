//! Sender benchmark: 1,000 tenants with bridges on the simulator, one sender,
//! the fleet budget set high enough not to be the limit.
//!
//! Prints send throughput and latency (reply published on
//! `outbound.<tenant>` → the simulated bridge receiving it) at a steady
//! 500/s and at the maximum rate; the same steady traffic while one tenant
//! holds a 20,000-reply backlog (the others' p99 next to their p99 without
//! it, goal ≤ 1.5×); and the memory the process adds while 200 tenants are
//! backlogged. Run: `cargo bench -p switchyard-tests --bench sender`.

// Benchmark tooling, not a service: a failed start-up stops the run loudly,
// and the figures it prints on stdout are its report.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stdout)]

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use sqlx::PgPool;
use switchyard_bridge_sim::SimHandle;
use switchyard_shared::{
    ids::{BridgeId, TenantId},
    tenants,
};
use switchyard_tests::{
    fixtures, nats_server::NatsServer, poll, procstat::Sampler, services, traffic,
};

const TENANTS: usize = 1000;
const PHASE: Duration = Duration::from_secs(10);
const CHAT: &str = "15550001111@s.whatsapp.net";

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench())
}

fn tenant(i: usize) -> TenantId {
    TenantId::parse(&format!("t{i:04}")).unwrap_or_else(|_| unreachable!("a valid id"))
}

fn now_ms() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}

async fn bench() -> anyhow::Result<()> {
    switchyard_tests::bench::with_dependencies("switchyard_bench_sender", 4, run).await
}

async fn run(nats: &NatsServer, pool: PgPool, db_url: &str) -> anyhow::Result<()> {
    // 10 sends a second per tenant: far above the steady traffic of one
    // tenant, far below a 20,000-reply backlog.
    sqlx::query(
        "INSERT INTO tenants (id, sends_per_minute, send_burst, max_in_flight) \
         SELECT 't' || lpad(i::text, 4, '0'), 600, 10, 4 FROM generate_series(0, $1 - 1) AS i",
    )
    .bind(TENANTS as i32)
    .execute(&pool)
    .await?;
    let sim = fixtures::start_sim().await;
    for i in 0..TENANTS {
        let bridge = sim.seed_bridge(tenant(i).as_str(), "http://127.0.0.1:9/hook/unused");
        tenants::set_bridge(
            &pool,
            &tenant(i),
            BridgeId::new(bridge.id)?,
            &switchyard_shared::bridge_state::BridgeState::Connected,
        )
        .await?;
    }
    let (_client, js) = fixtures::jetstream_with_streams(&nats.url(), 16).await;
    let env = fixtures::sender_env(
        &nats.url(),
        db_url,
        &sim,
        &[
            ("SWITCHYARD_PARTITIONS", "16"),
            ("SWITCHYARD_SEND_IN_FLIGHT", "64"),
            ("SWITCHYARD_DB_MAX_CONNECTIONS", "16"),
            ("SWITCHYARD_TENANT_REFRESH", "5s"),
        ],
    );
    let sender = services::start_sender(&env).await;
    println!(
        "machine: {} cores; 1,000 tenants, one sender, 16 partitions",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );

    let all: Vec<usize> = (0..TENANTS).collect();
    let mut round = 0usize;
    let steady = phase(&js, &sim, &mut round, 500.0, &all, "500 replies/s").await?;
    max_rate(&js, &sim, &mut round).await?;

    // One tenant backlogged: 20,000 replies at once, drained at its own 10/s.
    let mut sampler = Sampler::new(&[("sender process".to_owned(), std::process::id())]);
    sampler.sample();
    let before_rss = sampler_rss(&mut sampler);
    traffic::publish_replies(
        &js,
        &tenant(0),
        "backlog",
        CHAT,
        (0..20_000).map(|i| format!("backlog:{i}")),
    )
    .await;
    let others: Vec<usize> = (1..TENANTS).collect();
    let during = phase(
        &js,
        &sim,
        &mut round,
        500.0,
        &others,
        "500 replies/s beside a 20,000-reply backlog",
    )
    .await?;
    let (without, with) = (p99_of(&steady, &others), p99_of(&during, &others));
    println!(
        "  other tenants' p99: {with:.1} ms with the backlog vs {without:.1} ms without = {:.2}x (goal <= 1.5x)",
        with / without.max(0.001)
    );
    // The tenants that share the backlogged tenant's partition, from where the stream put them.
    let stream = js
        .get_stream(switchyard_shared::subjects::OUTBOUND_STREAM)
        .await?;
    let partition_of = |subject: &str| subject.split('.').nth(1).map(str::to_owned);
    let noisy = partition_of(
        &stream
            .get_last_raw_message_by_subject("outbound.*.t0000")
            .await?
            .subject,
    );
    let mut neighbours = Vec::new();
    for i in 1..TENANTS {
        let last = stream
            .get_last_raw_message_by_subject(&format!("outbound.*.{}", tenant(i)))
            .await?;
        if partition_of(&last.subject) == noisy {
            neighbours.push(i);
        }
    }
    let (without, with) = (p99_of(&steady, &neighbours), p99_of(&during, &neighbours));
    println!(
        "  the {} tenants sharing its partition, p99: {with:.1} ms vs {without:.1} ms = {:.2}x",
        neighbours.len(),
        with / without.max(0.001)
    );

    // 200 tenants backlogged at once.
    for i in 1..=200 {
        traffic::publish_replies(
            &js,
            &tenant(i),
            &format!("b200-{i}"),
            CHAT,
            (0..300).map(|k| format!("b200:{i}:{k}")),
        )
        .await;
    }
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        sampler.sample();
    }
    let usage = sampler.finish();
    let peak = usage.values().map(|u| u.rss_mib_peak).fold(0.0, f64::max);
    println!(
        "\nmemory: process RSS {before_rss:.1} MiB before the backlogs, {peak:.1} MiB peak with 201 tenants backlogged (sender, simulator and load generator share the process)"
    );
    sender.stop().await;
    Ok(())
}

fn sampler_rss(sampler: &mut Sampler) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    sampler.sample();
    status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kib| kib.parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

/// Latencies in ms of one phase, with the tenant index of each.
type Latencies = Vec<(usize, f64)>;

async fn phase(
    js: &async_nats::jetstream::Context,
    sim: &SimHandle,
    round: &mut usize,
    rate: f64,
    tenants: &[usize],
    label: &str,
) -> anyhow::Result<Latencies> {
    *round += 1;
    let tag = format!("p{round}");
    let total = (rate * PHASE.as_secs_f64()) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    for k in 0..total {
        tokio::time::sleep_until(start + interval.mul_f64(k as f64)).await;
        let t = tenants[k % tenants.len()];
        let body = format!("{tag}:{t}:{k}:{}", now_ms());
        traffic::publish_replies(js, &tenant(t), &format!("{tag}-{k}"), CHAT, [body]).await;
    }
    let prefix = format!("{tag}:");
    let sends = poll::until(
        &format!("the sends of {label}"),
        Duration::from_secs(180),
        || async {
            let mine: Vec<_> = sim
                .sends()
                .into_iter()
                .filter(|s| s.body.starts_with(&prefix))
                .collect();
            (mine.len() >= total).then_some(mine)
        },
    )
    .await;
    let elapsed = start.elapsed();
    let mut hist = Histogram::<u64>::new(3)?;
    let mut latencies = Vec::with_capacity(sends.len());
    for send in &sends {
        let mut parts = send.body.split(':');
        let (Some(_), Some(t), Some(_), Some(sent)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        let (Ok(t), Ok(sent)) = (t.parse::<usize>(), sent.parse::<u64>()) else {
            continue;
        };
        let ms = send.at_ms.saturating_sub(sent);
        hist.record(ms.max(1))?;
        latencies.push((t, ms as f64));
    }
    println!(
        "\n{label}: {} sends in {:.1} s = {:.0}/s; latency p50 {} ms, p99 {} ms, max {} ms",
        sends.len(),
        elapsed.as_secs_f64(),
        sends.len() as f64 / elapsed.as_secs_f64(),
        hist.value_at_quantile(0.5),
        hist.value_at_quantile(0.99),
        hist.max()
    );
    Ok(latencies)
}

async fn max_rate(
    js: &async_nats::jetstream::Context,
    sim: &SimHandle,
    round: &mut usize,
) -> anyhow::Result<()> {
    *round += 1;
    let tag = format!("p{round}");
    let total = 20_000usize;
    let start = Instant::now();
    for t in 0..TENANTS {
        let bodies = (0..total / TENANTS).map(|k| format!("{tag}:{t}:{k}:{}", now_ms()));
        traffic::publish_replies(js, &tenant(t), &format!("{tag}-{t}"), CHAT, bodies).await;
    }
    let prefix = format!("{tag}:");
    poll::until(
        "the maximum-rate sends",
        Duration::from_secs(300),
        || async {
            (sim.sends()
                .iter()
                .filter(|s| s.body.starts_with(&prefix))
                .count()
                >= total)
                .then_some(())
        },
    )
    .await;
    let elapsed = start.elapsed();
    println!(
        "\nmaximum rate: {total} replies over 1,000 tenants sent in {:.1} s = {:.0}/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

fn p99_of(latencies: &Latencies, tenants: &[usize]) -> f64 {
    let wanted: std::collections::HashSet<usize> = tenants.iter().copied().collect();
    let mut all: Vec<f64> = latencies
        .iter()
        .filter(|(t, _)| wanted.contains(t))
        .map(|(_, ms)| *ms)
        .collect();
    if all.is_empty() {
        return 0.0;
    }
    all.sort_by(f64::total_cmp);
    all[((all.len() - 1) as f64 * 0.99).round() as usize]
}
