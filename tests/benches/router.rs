//! Router benchmark: 1,000 tenants, 3 router replicas, 16 partitions.
//!
//! Prints idle CPU and RSS (nats-server, and the three routers, which run in
//! this process), throughput and latency (publish on `inbound.<tenant>` →
//! reply seen on `outbound.<tenant>`, echo bot) at 500 and 2,000 msg/s and
//! at the maximum rate, and, while one tenant has a 20,000-message backlog,
//! the p99 of the other tenants of its partition next to their p99 without
//! it (goal ≤ 1.5×), for three ways the backlog can come about (see
//! [`Scenario`]). Run: `cargo bench -p switchyard-tests --bench router`;
//! `SWITCHYARD_BACKLOG_CHATS_IN_FLIGHT` and `SWITCHYARD_BACKLOG_SPARE_CHATS`
//! in its environment go to the routers (defaults 1 and 0), to compare.

// Benchmark tooling, not a service: a failed start-up stops the run loudly,
// and the figures it prints on stdout are its report.
#![allow(clippy::expect_used, clippy::unwrap_used, clippy::print_stdout)]

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::StreamExt as _;
use hdrhistogram::Histogram;
use sqlx::PgPool;
use switchyard_shared::{ids::TenantId, subjects};
use switchyard_tests::{nats_server::NatsServer, poll, procstat::Sampler, services, traffic};

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
    switchyard_tests::bench::with_dependencies("switchyard_bench_router", 4, run).await
}

async fn run(nats: &NatsServer, pool: PgPool, db_url: &str) -> anyhow::Result<()> {
    sqlx::query(
        "INSERT INTO tenants (id, bot_kind) SELECT 't' || lpad(i::text, 4, '0'), 'echo' \
         FROM generate_series(0, $1 - 1) AS i",
    )
    .bind(TENANTS as i32)
    .execute(&pool)
    .await?;

    // The router's default unless the caller sets it (to compare settings).
    let backlog_chats =
        std::env::var("SWITCHYARD_BACKLOG_CHATS_IN_FLIGHT").unwrap_or_else(|_| "1".to_owned());
    let spare_chats =
        std::env::var("SWITCHYARD_BACKLOG_SPARE_CHATS").unwrap_or_else(|_| "0".to_owned());
    // Empty is unset: the router picks (1 ms at the floor, 0 with spare chats).
    let step_linger = std::env::var("SWITCHYARD_DB_STEP_LINGER").unwrap_or_default();
    println!(
        "routers: SWITCHYARD_BACKLOG_CHATS_IN_FLIGHT={backlog_chats} SWITCHYARD_BACKLOG_SPARE_CHATS={spare_chats} SWITCHYARD_DB_STEP_LINGER={}",
        if step_linger.is_empty() {
            "(the router's default)"
        } else {
            &step_linger
        }
    );
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
                ("SWITCHYARD_BACKLOG_CHATS_IN_FLIGHT", backlog_chats.as_str()),
                ("SWITCHYARD_BACKLOG_SPARE_CHATS", spare_chats.as_str()),
                ("SWITCHYARD_DB_STEP_LINGER", step_linger.as_str()),
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
        let (sent, seen) = (Arc::clone(&sent), Arc::clone(&seen));
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
    phase(&js, &sent, &seen, &mut seq, 500.0, &all, "500 msg/s").await?;
    phase(&js, &sent, &seen, &mut seq, 2000.0, &all, "2,000 msg/s").await?;
    max_rate(&js, &sent, &seen, &mut seq).await?;

    // One tenant with a 20,000-message backlog, three ways it can come about.
    // Each scenario takes a fresh noisy tenant from a partition no earlier
    // scenario used, measures its partition neighbours at 500 msg/s just
    // before (the baseline), then with the backlog, and waits for the backlog
    // to drain before the next scenario.
    let mut used_partitions = Vec::new();
    for scenario in [Scenario::Held, Scenario::Flood, Scenario::Burst] {
        let (noisy, partition, neighbours) = pick_noisy(&js, &used_partitions).await?;
        used_partitions.push(partition);
        let others: Vec<usize> = (0..TENANTS).filter(|t| *t != noisy).collect();
        let quiet = phase(
            &js,
            &sent,
            &seen,
            &mut seq,
            500.0,
            &others,
            "500 msg/s, no backlog",
        )
        .await?;
        let before = percentile_for(&quiet, &neighbours, 99.0);
        println!(
            "\n{}: tenant {} (partition {partition}, {} neighbours), {BACKLOG} messages over {NOISY_CHATS} chats",
            scenario.describe(),
            tenant(noisy),
            neighbours.len()
        );
        let noisy_first = NOISY_SEQ_BASE * (used_partitions.len() as u64);
        // The routers share this process's metrics: the sum over all three.
        let spare_taken = || {
            traffic::metric(
                routers[0].ops_addr,
                "switchyard_router_spare_chats_taken_total",
                "",
            )
        };
        let spare_before = spare_taken().await;
        let backlog_started = Instant::now();
        let during = match scenario {
            Scenario::Held | Scenario::Burst => {
                publish_backlog(js.clone(), Arc::clone(&sent), noisy, noisy_first, None).await?;
                if matches!(scenario, Scenario::Held) {
                    wait_partition_passed(&js, partition).await?;
                    let left = backlog_left(&seen, noisy_first);
                    println!("  partition reader past the backlog; {left} of it still to answer");
                }
                phase(
                    &js,
                    &sent,
                    &seen,
                    &mut seq,
                    500.0,
                    &others,
                    scenario.label(),
                )
                .await?
            }
            Scenario::Flood => {
                let flood = tokio::spawn(publish_backlog(
                    js.clone(),
                    Arc::clone(&sent),
                    noisy,
                    noisy_first,
                    Some(FLOOD_RATE),
                ));
                let during = phase(
                    &js,
                    &sent,
                    &seen,
                    &mut seq,
                    500.0,
                    &others,
                    scenario.label(),
                )
                .await?;
                flood.await??;
                during
            }
        };
        println!(
            "  turns past the backlog's floor (spare permits taken) during it: {}",
            spare_taken().await - spare_before
        );
        println!(
            "  backlog still to answer at the end of the measurement: {}",
            backlog_left(&seen, noisy_first)
        );
        let after = percentile_for(&during, &neighbours, 99.0);
        println!(
            "  neighbours' p99: {after:.1} ms with the backlog vs {before:.1} ms without = {:.2}x (goal <= 1.5x)",
            after / before.max(0.001)
        );
        let drained = Instant::now();
        poll::until("the backlog to drain", Duration::from_secs(300), || async {
            (backlog_left(&seen, noisy_first) == 0).then_some(())
        })
        .await;
        println!(
            "  backlog fully answered {:.1} s after the measurement: {:.0} msg/s from its first publication to its last reply",
            drained.elapsed().as_secs_f64(),
            BACKLOG as f64 / backlog_started.elapsed().as_secs_f64()
        );
    }
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
    publish_from(js, tenant, seq, "15550001111@s.whatsapp.net").await
}

async fn publish_from(
    js: &async_nats::jetstream::Context,
    tenant: &TenantId,
    seq: u64,
    chat: &str,
) -> anyhow::Result<async_nats::jetstream::context::PublishAckFuture> {
    let body = traffic::message_body(
        Some(tenant.as_str()),
        &format!("m{seq}"),
        chat,
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

/// How the noisy tenant's backlog comes about.
#[derive(Debug, Clone, Copy)]
enum Scenario {
    /// Published at once; measured once the partition reader is past it, so
    /// the backlog sits in the tenant's own lane while the others are served.
    Held,
    /// Arrives while the others are measured, at four times their rate.
    Flood,
    /// Published at once, the others measured right behind it: their first
    /// messages sit behind it in the partition's stream order.
    Burst,
}

impl Scenario {
    fn describe(self) -> &'static str {
        match self {
            Scenario::Held => "backlog held (published, then spilled to its lane)",
            Scenario::Flood => "backlog arriving (flood at 2,000 msg/s while measured)",
            Scenario::Burst => "backlog arriving all at once, others right behind it",
        }
    }

    /// The measured phase's label.
    fn label(self) -> &'static str {
        match self {
            Scenario::Held => "500 msg/s beside the backlog",
            Scenario::Flood => "500 msg/s beside the flood",
            Scenario::Burst => "500 msg/s right behind the burst",
        }
    }
}

/// The noisy tenant's messages are numbered from here (per scenario), apart
/// from the measured traffic's sequence.
const NOISY_SEQ_BASE: u64 = 1_000_000_000;
/// Chats the noisy tenant's messages spread over (a busy number, not one
/// chatty contact: its lane then runs several chats at once).
const NOISY_CHATS: u64 = 500;
/// Rate of the flood scenario.
const FLOOD_RATE: f64 = 2_000.0;

/// A tenant whose partition no earlier scenario used, its partition and its
/// partition neighbours (from where the stream put each tenant's messages).
async fn pick_noisy(
    js: &async_nats::jetstream::Context,
    used: &[u16],
) -> anyhow::Result<(usize, u16, Vec<usize>)> {
    let stream = js.get_stream(subjects::INBOUND_STREAM).await?;
    let mut by_partition: HashMap<u16, Vec<usize>> = HashMap::new();
    for i in 0..TENANTS {
        let last = stream
            .get_last_raw_message_by_subject(&format!("inbound.*.{}", tenant(i)))
            .await?;
        let partition = last
            .subject
            .split('.')
            .nth(1)
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| anyhow::anyhow!("unexpected subject {}", last.subject))?;
        by_partition.entry(partition).or_default().push(i);
    }
    let (partition, mut members) = by_partition
        .into_iter()
        .filter(|(p, _)| !used.contains(p))
        .min_by_key(|(p, _)| *p)
        .ok_or_else(|| anyhow::anyhow!("no unused partition left"))?;
    let noisy = members.remove(0);
    Ok((noisy, partition, members))
}

async fn publish_noisy(
    js: &async_nats::jetstream::Context,
    sent: &Sent,
    noisy: usize,
    seq: u64,
) -> anyhow::Result<async_nats::jetstream::context::PublishAckFuture> {
    if let Ok(mut s) = sent.lock() {
        s.insert(seq, Instant::now());
    }
    let chat = format!("1555{:07}@s.whatsapp.net", seq % NOISY_CHATS);
    publish_from(js, &tenant(noisy), seq, &chat).await
}

/// The whole backlog, as fast as it can be published or at `rate` per
/// second (acks awaited in batches either way).
async fn publish_backlog(
    js: async_nats::jetstream::Context,
    sent: Sent,
    noisy: usize,
    first: u64,
    rate: Option<f64>,
) -> anyhow::Result<()> {
    let start = tokio::time::Instant::now();
    let mut acks = Vec::new();
    for k in 0..BACKLOG as u64 {
        if let Some(rate) = rate {
            tokio::time::sleep_until(start + Duration::from_secs_f64(k as f64 / rate)).await;
        }
        acks.push(publish_noisy(&js, &sent, noisy, first + k).await?);
        if acks.len() >= 256 {
            for ack in acks.drain(..) {
                ack.await?;
            }
        }
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}

/// Waits until the partition's reader has taken every message stored so far.
async fn wait_partition_passed(
    js: &async_nats::jetstream::Context,
    partition: u16,
) -> anyhow::Result<()> {
    let stream = js.get_stream(subjects::INBOUND_STREAM).await?;
    let name =
        subjects::partition_consumer(switchyard_shared::subjects::Direction::Inbound, partition);
    let started = Instant::now();
    poll::until(
        "the partition reader to pass the backlog",
        Duration::from_secs(60),
        || {
            let stream = stream.clone();
            let name = name.clone();
            async move {
                let mut consumer: async_nats::jetstream::consumer::PullConsumer =
                    stream.get_consumer(&name).await.ok()?;
                let info = consumer.info().await.ok()?;
                (info.num_pending == 0 && info.num_ack_pending < 64).then_some(())
            }
        },
    )
    .await;
    println!(
        "  the partition reader passed the backlog {:.2} s after it was stored",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Messages of the backlog numbered from `first` not answered yet.
fn backlog_left(seen: &Seen, first: u64) -> usize {
    let answered = seen.lock().map_or(0, |seen| {
        seen.iter()
            .filter(|(s, _)| (first..first + BACKLOG as u64).contains(s))
            .count()
    });
    BACKLOG.saturating_sub(answered)
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
