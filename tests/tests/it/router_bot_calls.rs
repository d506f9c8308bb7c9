//! What the router holds around a bot call: no database connection, and
//! only a place in the tenant's own bot budget.
//!
//! Slow bots delay only their own tenant: three tenants whose HTTP bots
//! answer after their timeout or close to it, each sent two messages a
//! second, beside quiet tenants with fast bots, on a router with a pool of
//! three database connections. The bot call holds no connection, and each
//! tenant's calls run within its bot budget
//! (`SWITCHYARD_BOT_CONCURRENCY_PER_TENANT`), so the quiet tenants' replies
//! keep their latency (compared with a run without the slow tenants, in the
//! same test) and none of their messages is dead-lettered.
//!
//! The conversation is read before the call and recorded after it, so a
//! first message whose bot call failed is still a new conversation when it
//! is retried (as when the whole step was one transaction, rolled back).

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use async_nats::jetstream;
use futures::StreamExt as _;
use sqlx::PgPool;
use switchyard_shared::{
    replies::OutboundReply,
    streams,
    subjects::Direction,
    tenants::{BotKind, NewTenant},
};
use switchyard_tests::{fixtures, nats_server::NatsServer, poll, services, traffic};
use tokio_util::sync::CancellationToken;

const QUIET: [&str; 5] = ["quiet-a", "quiet-b", "quiet-c", "quiet-d", "quiet-e"];
/// Slow tenants and how long their bot takes (issue 17's 14-second bots);
/// every bot's timeout is [`BOT_TIMEOUT_MS`], the longest a tenant may set:
/// two answer too late, one just in time.
const SLOW: [(&str, u64); 3] = [("slow-a", 16_000), ("slow-b", 16_000), ("slow-c", 14_000)];
const BOT_TIMEOUT_MS: u64 = 15_000;
const BUDGET: usize = 2;
/// Rounds of quiet traffic per run (one message per quiet tenant each).
const ROUNDS: usize = 30;
const ROUND_EVERY: Duration = Duration::from_millis(100);

/// What one tenant's bot endpoint saw.
#[derive(Debug, Default, Clone)]
struct Calls {
    total: usize,
    in_flight: usize,
    max_in_flight: usize,
}

type CallLog = Arc<Mutex<BTreeMap<String, Calls>>>;

/// Counts a call in flight until its handler ends. A call the router gave
/// up on (past its timeout) may still count until its delay is over, since
/// the server need not drop a handler whose client hung up: only a bot
/// answering within its timeout shows exactly what the router runs at once.
struct InFlight {
    log: CallLog,
    tenant: String,
}

impl InFlight {
    fn start(log: &CallLog, tenant: &str) -> Self {
        let mut calls = log.lock().unwrap();
        let c = calls.entry(tenant.to_owned()).or_default();
        c.total += 1;
        c.in_flight += 1;
        c.max_in_flight = c.max_in_flight.max(c.in_flight);
        Self {
            log: Arc::clone(log),
            tenant: tenant.to_owned(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(c) = self.log.lock().unwrap().get_mut(&self.tenant) {
            c.in_flight -= 1;
        }
    }
}

/// A bot endpoint answering `POST /{tenant}/{delay_ms}` with one reply after
/// `delay_ms`, counting the calls per tenant.
async fn bot_server() -> (String, CallLog) {
    let log: CallLog = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let counted = Arc::clone(&log);
    let app = axum::Router::new().route(
        "/{tenant}/{delay_ms}",
        axum::routing::post(
            move |axum::extract::Path((tenant, delay_ms)): axum::extract::Path<(String, u64)>| {
                let log = Arc::clone(&counted);
                async move {
                    let _in_flight = InFlight::start(&log, &tenant);
                    // The bot's own slowness (what is under test), not a wait in the test.
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    (
                        [("content-type", "application/json")],
                        r#"{"replies": ["ok"]}"#,
                    )
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, log)
}

async fn add_http_tenant(pool: &PgPool, id: &str, url: String) {
    fixtures::add_tenant(pool, id, |new: &mut NewTenant| {
        new.bot_kind = BotKind::Http;
        new.bot_config = serde_json::json!({ "url": url, "timeout_ms": BOT_TIMEOUT_MS });
    })
    .await;
}

/// When each reply's event reached `outbound.>`, by event id.
type Arrivals = Arc<Mutex<HashMap<String, Instant>>>;

async fn watch_replies(client: &async_nats::Client) -> Arrivals {
    let arrivals: Arrivals = Arc::default();
    let mut replies = client.subscribe("outbound.>").await.unwrap();
    client.flush().await.unwrap();
    let seen = Arc::clone(&arrivals);
    tokio::spawn(async move {
        while let Some(message) = replies.next().await {
            let at = Instant::now();
            if let Ok(reply) = serde_json::from_slice::<OutboundReply>(&message.payload) {
                // Reply event ids are scoped as ingest writes them (`<tenant>:<event>`).
                let event_id = reply.event_id.to_string();
                let event = match event_id.split_once(':') {
                    Some((_tenant, event)) => event.to_owned(),
                    None => event_id,
                };
                seen.lock().unwrap().entry(event).or_insert(at);
            }
        }
    });
    arrivals
}

async fn send(js: &jetstream::Context, tenant: &str, event: &str, chat: &str) {
    let body = traffic::message_body(Some(tenant), event, chat, "hello");
    traffic::publish_inbound(js, &fixtures::tenant(tenant), event, body).await;
}

/// Sends `ROUNDS` rounds of one message per quiet tenant, paced, then waits
/// for every reply; returns the latencies (publish to reply published).
async fn quiet_run(js: &jetstream::Context, arrivals: &Arrivals, label: &str) -> Vec<Duration> {
    let mut sent = Vec::with_capacity(ROUNDS * QUIET.len());
    let mut pace = tokio::time::interval(ROUND_EVERY);
    for round in 0..ROUNDS {
        pace.tick().await;
        for tenant in QUIET {
            let event = format!("{tenant}-{label}-{round}");
            let chat = format!("{}@s.whatsapp.net", 1000 + round % 8);
            let at = Instant::now();
            send(js, tenant, &event, &chat).await;
            sent.push((event, at));
        }
    }
    poll::until(
        &format!("every quiet reply of the {label} run"),
        Duration::from_secs(60),
        || async {
            let arrived = arrivals.lock().unwrap();
            sent.iter()
                .map(|(event, at)| arrived.get(event).map(|done| done.duration_since(*at)))
                .collect::<Option<Vec<_>>>()
        },
    )
    .await
}

fn p99(latencies: &[Duration]) -> Duration {
    let mut sorted = latencies.to_vec();
    sorted.sort();
    let rank = (sorted.len() * 99).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// Two messages a second for each slow tenant, each on a chat of its own
/// (so the tenant would run as many calls at once as it is allowed), until
/// `stop`.
fn slow_load(js: jetstream::Context, stop: CancellationToken) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut pace = tokio::time::interval(Duration::from_millis(500));
        for n in 0.. {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = pace.tick() => {}
            }
            for (tenant, _) in SLOW {
                let chat = format!("{}@s.whatsapp.net", 5000 + n);
                send(&js, tenant, &format!("{tenant}-{n}"), &chat).await;
            }
        }
    })
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn slow_bots_of_three_tenants_do_not_delay_the_other_tenants(pool: PgPool) {
    // Arrange: quiet tenants with fast bots, slow tenants with slow ones, a
    // router with a pool of three connections.
    let nats = NatsServer::start();
    let (quiet_bots, _) = bot_server().await;
    let (slow_bots, slow_calls) = bot_server().await;
    for tenant in QUIET {
        add_http_tenant(&pool, tenant, format!("{quiet_bots}/{tenant}/0")).await;
    }
    for (tenant, delay_ms) in SLOW {
        add_http_tenant(&pool, tenant, format!("{slow_bots}/{tenant}/{delay_ms}")).await;
    }
    let budget = BUDGET.to_string();
    let env = services::env(
        &nats.url(),
        &services::database_url(&pool),
        &[
            ("SWITCHYARD_DB_MAX_CONNECTIONS", "3"),
            ("SWITCHYARD_BOT_CONCURRENCY_PER_TENANT", &budget),
        ],
    );
    let router = services::start_router(&env).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = streams::context(client.clone(), Duration::from_secs(5));
    let arrivals = watch_replies(&client).await;
    // Every quiet tenant's lane and bot connection is warm before measuring.
    quiet_run(&js, &arrivals, "warm-up").await;

    // Act: the quiet traffic alone, then beside the slow tenants' load.
    let alone = quiet_run(&js, &arrivals, "alone").await;
    let stop = CancellationToken::new();
    let load = slow_load(js.clone(), stop.clone());
    poll::until(
        "every slow bot to be called twice",
        Duration::from_secs(30),
        || async {
            let calls = slow_calls.lock().unwrap();
            SLOW.iter()
                .all(|(t, _)| calls.get(*t).is_some_and(|c| c.total >= 2))
                .then_some(())
        },
    )
    .await;
    let beside_slow = quiet_run(&js, &arrivals, "beside-slow").await;
    stop.cancel();
    load.await.unwrap();

    // Assert
    let (alone_p99, beside_p99) = (p99(&alone), p99(&beside_slow));
    let calls = slow_calls.lock().unwrap().clone();
    println!(
        "quiet reply p99: {alone_p99:?} alone, {beside_p99:?} beside three slow tenants \
         ({} messages each); slow bots' calls: {calls:?}",
        alone.len()
    );
    let bound = alone_p99.mul_f64(1.5) + Duration::from_millis(200);
    assert!(
        beside_p99 < bound,
        "the quiet tenants' p99 went from {alone_p99:?} to {beside_p99:?} (bound {bound:?})"
    );
    let quiet_letters: Vec<_> = traffic::dead_letters(&js, Direction::Inbound)
        .await
        .into_iter()
        .filter(|(tenant, _, _)| QUIET.contains(&tenant.as_str()))
        .collect();
    assert!(
        quiet_letters.is_empty(),
        "quiet tenants' messages were dead-lettered: {quiet_letters:?}"
    );
    // The bot answering within its timeout shows the budget: the tenant
    // wanted many calls at once (two a second, 14 s each) and got two.
    let just_in_time = &calls["slow-c"];
    assert_eq!(
        just_in_time.max_in_flight, BUDGET,
        "slow-c's calls at once: {just_in_time:?}"
    );
    router.stop().await;
}

/// A bot endpoint that fails each message's first call (503) and answers its
/// retry, logging `(message id, new_conversation)` for every call.
async fn failing_once_bot() -> (String, Arc<Mutex<Vec<(String, bool)>>>) {
    let log: Arc<Mutex<Vec<(String, bool)>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::clone(&log);
    let app = axum::Router::new().route(
        "/",
        axum::routing::post(move |axum::Json(call): axum::Json<serde_json::Value>| {
            let log = Arc::clone(&seen);
            async move {
                let id = call["message"]["message_id"]
                    .as_str()
                    .unwrap_or("")
                    .to_owned();
                let new = call["new_conversation"].as_bool().unwrap_or(false);
                let mut log = log.lock().unwrap();
                let first = !log.iter().any(|(seen, _)| *seen == id);
                log.push((id, new));
                if first {
                    (axum::http::StatusCode::SERVICE_UNAVAILABLE, "{}")
                } else {
                    (axum::http::StatusCode::OK, r#"{"replies": ["ok"]}"#)
                }
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, log)
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_first_message_whose_bot_call_failed_is_still_new_when_retried(pool: PgPool) {
    let nats = NatsServer::start();
    let (bot, calls) = failing_once_bot().await;
    add_http_tenant(&pool, "alpha", format!("{bot}/")).await;
    let env = services::env(
        &nats.url(),
        &services::database_url(&pool),
        &[("SWITCHYARD_RETRY_DELAY", "50ms")],
    );
    let router = services::start_router(&env).await;
    let client = async_nats::connect(nats.url()).await.unwrap();
    let js = streams::context(client.clone(), Duration::from_secs(5));
    let arrivals = watch_replies(&client).await;

    for event in ["first", "second"] {
        send(&js, "alpha", event, "7@s.whatsapp.net").await;
        poll::until(
            &format!("the reply to {event}"),
            Duration::from_secs(20),
            || async { arrivals.lock().unwrap().contains_key(event).then_some(()) },
        )
        .await;
    }

    let seen = calls.lock().unwrap().clone();
    let expected: Vec<(String, bool)> = [
        ("first", true),
        ("first", true),
        ("second", false),
        ("second", false),
    ]
    .into_iter()
    .map(|(id, new)| (id.to_owned(), new))
    .collect();
    assert_eq!(seen, expected, "(message, new_conversation) per bot call");
    router.stop().await;
}
