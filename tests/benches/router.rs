//! Router benchmark: 1,000 tenants, 3 router replicas, 16 partitions.
//!
//! Prints idle CPU and RSS (nats-server, and the three routers, which run in
//! this process), throughput and latency (publish on `inbound.<tenant>` →
//! reply seen on `outbound.<tenant>`, echo bot) at 500 and 2,000 msg/s and
//! at the maximum rate, and, while one tenant holds a 20,000-message backlog,
//! the p99 of the other tenants of its partition next to their p99 without
//! it (goal ≤ 1.5×). Run: `cargo bench -p switchyard-tests --bench router`.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use hdrhistogram::Histogram;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use switchyard_shared::{ids::TenantId, subjects};
use switchyard_tests::{
    nats_server::NatsServer, poll, procstat::Sampler, scratch_db::ScratchDatabase, services,
    traffic,
};

const TENANTS: usize = 1000;
const PARTITIONS: &str = "16";
const PHASE: Duration = Duration::from_secs(10);
const BACKLOG: usize = 20_000;

type Sent = Arc<Mutex<HashMap<u64, Instant>>>;
type Seen = Arc<Mutex<Vec<(u64, Duration)>>>;

fn main() -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?
        .block_on(bench())
}

fn tenant(i: usize) -> TenantId {
    TenantId::parse(&format!("t{i:04}")).unwrap_or_else(|_| unreachable!("a valid id"))
}

async fn bench() -> anyhow::Result<()> {
    let nats = NatsServer::start();
    let db = ScratchDatabase::create("switchyard_bench_router").await?;
    let result = run(&nats, db.options.clone(), &db.url).await;
    db.drop_database().await?;
    result
}

async fn run(nats: &NatsServer, db: PgConnectOptions, db_url: &str) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect_with(db)
        .await?;
    switchyard_shared::db::migrate(&pool).await?;
    sqlx::query(
        "INSERT INTO tenants (id, bot_kind) SELECT 't' || lpad(i::text, 4, '0'), 'echo' \
         FROM generate_series(0, $1 - 1) AS i",
    )
    .bind(TENANTS as i32)
    .execute(&pool)
    .await?;

    let mut routers = Vec::new();
    for r in 0..3 {
        let replica = format!("bench-router-{r}");
        let env = services::env(
            &nats.url(),
            db_url,
            &[
                ("SWITCHYARD_PARTITIONS", PARTITIONS),
                ("SWITCHYARD_REPLICA_ID", replica.as_str()),
                ("SWITCHYARD_DB_MAX_CONNECTIONS", "8"),
            ],
        );
        routers.push(services::start_router(&env).await);
    }
    poll::until(
        "the partitions to be spread over the routers",
        Duration::from_secs(30),
        || async {
            // Every replica has joined and the split is settled.
            let mut owned = Vec::new();
            for r in 0..3 {
                let label = format!("replica=\"bench-router-{r}\"");
                owned.push(
                    traffic::metric(
                        routers[0].ops_addr,
                        "switchyard_lane_partitions_owned",
                        &label,
                    )
                    .await,
                );
            }
            (owned.iter().sum::<f64>() == 16.0 && owned.iter().all(|o| *o >= 5.0)).then_some(())
        },
    )
    .await;
    let client = async_nats::connect(nats.url()).await?;
    let js = switchyard_shared::streams::context(client.clone(), Duration::from_secs(10));
    let sent: Sent = Arc::default();
    let seen: Seen = Arc::default();
    let mut replies = client.subscribe("outbound.>").await?;
    {
        let (sent, seen) = (sent.clone(), seen.clone());
        tokio::spawn(async move {
            while let Some(reply) = replies.next().await {
                let Ok(body) = serde_json::from_slice::<serde_json::Value>(&reply.payload) else {
                    continue;
                };
                let Some(seq) = body["body"]
                    .as_str()
                    .and_then(|b| b.strip_prefix("echo: "))
                    .and_then(|s| s.parse::<u64>().ok())
                else {
                    continue;
                };
                if let Some(at) = sent.lock().ok().and_then(|s| s.get(&seq).copied())
                    && let Ok(mut seen) = seen.lock()
                {
                    seen.push((seq, at.elapsed()));
                }
            }
        });
    }
    let me = std::process::id();
    let mut sampler = Sampler::new(&[
        ("nats-server".to_owned(), nats.pid()),
        ("3 routers (this process)".to_owned(), me),
    ]);
    let idle_start = Instant::now();
    while idle_start.elapsed() < Duration::from_secs(5) {
        tokio::time::sleep(Duration::from_millis(500)).await;
        sampler.sample();
    }
    println!(
        "machine: {} cores",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("\nidle, 1,000 tenants, 3 routers, 16 partitions (5 s):");
    for (name, usage) in sampler.finish() {
        println!(
            "  {name:<26} cpu {:5.1} % of a core, rss {:6.1} MiB",
            usage.cpu_percent_mean, usage.rss_mib_peak
        );
    }

    let mut seq = 0u64;
    let all: Vec<usize> = (0..TENANTS).collect();
    let steady_500 = phase(&js, &sent, &seen, &mut seq, 500.0, &all, "500 msg/s").await?;
    phase(&js, &sent, &seen, &mut seq, 2000.0, &all, "2,000 msg/s").await?;
    max_rate(&js, &sent, &seen, &mut seq).await?;

    // The noisy tenant's partition neighbours, from where the stream put them.
    let noisy = 0usize;
    let stream = js.get_stream(subjects::INBOUND_STREAM).await?;
    let partition_of = |subject: &str| subject.split('.').nth(1).map(str::to_owned);
    let noisy_partition = partition_of(
        &stream
            .get_last_raw_message_by_subject(&format!("inbound.*.{}", tenant(noisy)))
            .await?
            .subject,
    );
    let mut neighbours = Vec::new();
    for i in 1..TENANTS {
        let last = stream
            .get_last_raw_message_by_subject(&format!("inbound.*.{}", tenant(i)))
            .await?;
        if partition_of(&last.subject) == noisy_partition {
            neighbours.push(i);
        }
    }
    let before = percentile_for(&steady_500, &neighbours, 99.0);
    println!(
        "\nbacklog: tenant {} gets {BACKLOG} messages at once; {} tenants share its partition",
        tenant(noisy),
        neighbours.len()
    );
    let mut acks = Vec::new();
    for _ in 0..BACKLOG {
        seq += 1;
        acks.push(publish(&js, &tenant(noisy), seq).await?);
        if acks.len() >= 256 {
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in acks {
        ack.await?;
    }
    let others: Vec<usize> = (1..TENANTS).collect();
    let during = phase(
        &js,
        &sent,
        &seen,
        &mut seq,
        500.0,
        &others,
        "500 msg/s beside the backlog",
    )
    .await?;
    let after = percentile_for(&during, &neighbours, 99.0);
    println!(
        "  neighbours' p99: {:.1} ms with the backlog vs {:.1} ms without = {:.2}x (goal <= 1.5x)",
        after,
        before,
        after / before.max(0.001)
    );
    let changes = traffic::metric(
        routers[0].ops_addr,
        "switchyard_lane_assignment_changes_total",
        "",
    )
    .await;
    println!(
        "\npartition assignment changes over the run (3 replicas joining count 3-6): {changes}"
    );
    for r in routers {
        r.stop().await;
    }
    Ok(())
}

async fn publish(
    js: &async_nats::jetstream::Context,
    tenant: &TenantId,
    seq: u64,
) -> anyhow::Result<async_nats::jetstream::context::PublishAckFuture> {
    let body = traffic::message_body(
        Some(tenant.as_str()),
        &format!("m{seq}"),
        "15550001111@s.whatsapp.net",
        &seq.to_string(),
    );
    let mut headers = async_nats::HeaderMap::new();
    headers.insert(
        async_nats::header::NATS_MESSAGE_ID,
        format!("{tenant}:m{seq}").as_str(),
    );
    Ok(js
        .publish_with_headers(subjects::inbound(tenant), headers, body.into())
        .await?)
}

/// Latencies (ms) of one phase, by tenant index.
type PhaseLatencies = HashMap<usize, Vec<f64>>;

async fn phase(
    js: &async_nats::jetstream::Context,
    sent: &Sent,
    seen: &Seen,
    seq: &mut u64,
    rate: f64,
    tenants: &[usize],
    label: &str,
) -> anyhow::Result<PhaseLatencies> {
    let first = *seq + 1;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let start = tokio::time::Instant::now();
    let total = (rate * PHASE.as_secs_f64()) as u64;
    let mut owner: HashMap<u64, usize> = HashMap::new();
    let mut acks = Vec::new();
    for k in 0..total {
        tokio::time::sleep_until(start + interval.mul_f64(k as f64)).await;
        *seq += 1;
        let t = tenants[(k as usize) % tenants.len()];
        owner.insert(*seq, t);
        if let Ok(mut s) = sent.lock() {
            s.insert(*seq, Instant::now());
        }
        acks.push(publish(js, &tenant(t), *seq).await?);
        if acks.len() >= 128 {
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in acks {
        ack.await?;
    }
    let last = *seq;
    let got = poll::until(
        &format!("the replies of {label}"),
        Duration::from_secs(120),
        || async {
            let seen = seen.lock().ok()?;
            let n = seen
                .iter()
                .filter(|(s, _)| (first..=last).contains(s))
                .count() as u64;
            (n >= total).then(|| {
                seen.iter()
                    .filter(|(s, _)| (first..=last).contains(s))
                    .copied()
                    .collect::<Vec<_>>()
            })
        },
    )
    .await;
    let elapsed = start.elapsed();
    let mut hist = Histogram::<u64>::new(3)?;
    let mut by_tenant: PhaseLatencies = HashMap::new();
    for (s, latency) in &got {
        hist.record(latency.as_micros() as u64)?;
        if let Some(t) = owner.get(s) {
            by_tenant
                .entry(*t)
                .or_default()
                .push(latency.as_secs_f64() * 1000.0);
        }
    }
    println!(
        "\n{label}: {} replies in {:.1} s = {:.0} msg/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        got.len(),
        elapsed.as_secs_f64(),
        got.len() as f64 / elapsed.as_secs_f64(),
        hist.value_at_quantile(0.50) as f64 / 1000.0,
        hist.value_at_quantile(0.99) as f64 / 1000.0,
        hist.max() as f64 / 1000.0,
    );
    Ok(by_tenant)
}

async fn max_rate(
    js: &async_nats::jetstream::Context,
    sent: &Sent,
    seen: &Seen,
    seq: &mut u64,
) -> anyhow::Result<()> {
    let first = *seq + 1;
    let total = 20_000u64;
    let start = Instant::now();
    let mut acks = Vec::new();
    for k in 0..total {
        *seq += 1;
        if let Ok(mut s) = sent.lock() {
            s.insert(*seq, Instant::now());
        }
        acks.push(publish(js, &tenant((k as usize) % TENANTS), *seq).await?);
        if acks.len() >= 256 {
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in acks {
        ack.await?;
    }
    let last = *seq;
    poll::until(
        "the replies of the maximum-rate burst",
        Duration::from_secs(180),
        || async {
            let seen = seen.lock().ok()?;
            (seen
                .iter()
                .filter(|(s, _)| (first..=last).contains(s))
                .count() as u64
                >= total)
                .then_some(())
        },
    )
    .await;
    let elapsed = start.elapsed();
    println!(
        "\nmaximum rate: {total} messages over 1,000 tenants answered in {:.1} s = {:.0} msg/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64()
    );
    Ok(())
}

fn percentile_for(latencies: &PhaseLatencies, tenants: &[usize], q: f64) -> f64 {
    let mut all: Vec<f64> = tenants
        .iter()
        .filter_map(|t| latencies.get(t))
        .flatten()
        .copied()
        .collect();
    if all.is_empty() {
        return 0.0;
    }
    all.sort_by(f64::total_cmp);
    let rank = ((q / 100.0) * (all.len() - 1) as f64).round() as usize;
    all[rank.min(all.len() - 1)]
}
