//! Lanes under load: per-chat order holds with three router replicas, also
//! across a spill and its drain; a poison message ends in the dead-letter
//! stream after the attempt limit, without holding up other tenants; a
//! backlogged tenant drains at its reduced concurrency.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use sqlx::PgPool;
use switchyard_shared::{ids::TenantId, streams, subjects::Direction, tenants::BotKind};
use switchyard_tests::{fixtures, nats_server::NatsServer, poll, services, traffic};

fn t(raw: &str) -> TenantId {
    fixtures::tenant(raw)
}

async fn add_tenant(pool: &PgPool, id: &str, bot: BotKind, config: serde_json::Value) {
    fixtures::add_tenant(pool, id, |new| {
        new.bot_kind = bot;
        new.bot_config = config;
    })
    .await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn per_chat_order_holds_with_three_replicas_across_a_spill_and_its_drain(pool: PgPool) {
    let nats = NatsServer::start();
    // alpha's bot takes 10 ms a turn, so a burst outruns it and alpha spills.
    let bot_url = slow_echo_bot(Duration::from_millis(10)).await;
    add_tenant(
        &pool,
        "alpha",
        BotKind::Http,
        serde_json::json!({"url": bot_url}),
    )
    .await;
    for id in ["bravo", "charlie"] {
        add_tenant(&pool, id, BotKind::Echo, serde_json::json!({})).await;
    }
    let db_url = services::database_url(&pool);
    let mut replicas = Vec::new();
    for r in 0..3 {
        let replica_id = format!("replica-{r}");
        // A tiny queue bound forces the busy tenant to spill.
        let env = services::env(
            &nats.url(),
            &db_url,
            &[
                ("SWITCHYARD_LANE_QUEUE", "4"),
                ("SWITCHYARD_REPLICA_ID", replica_id.as_str()),
            ],
        );
        replicas.push(services::start_router(&env).await);
    }
    let js = streams::context(
        async_nats::connect(nats.url()).await.unwrap(),
        Duration::from_secs(5),
    );
    // Order is promised within a stable assignment (a hand-over may reorder
    // what the leaving replica had pulled): wait until the three replicas
    // split the 4 partitions between them.
    poll::until(
        "the partitions to be spread over three replicas",
        Duration::from_secs(20),
        || async {
            let mut owned = Vec::new();
            for r in 0..3 {
                let label = format!("replica=\"replica-{r}\"");
                owned.push(
                    traffic::metric(
                        replicas[0].ops_addr,
                        "switchyard_lane_partitions_owned",
                        &label,
                    )
                    .await,
                );
            }
            (owned.iter().sum::<f64>() == 4.0 && owned.iter().all(|o| *o >= 1.0)).then_some(())
        },
    )
    .await;

    let chats = ["1@s.whatsapp.net", "2@s.whatsapp.net", "3@s.whatsapp.net"];
    let per_chat = 60;
    for i in 0..per_chat {
        let mut burst = Vec::new();
        for (c, chat) in chats.iter().enumerate() {
            let id = format!("a-{c}-{i:03}");
            let body = traffic::message_body(Some("alpha"), &id, chat, &format!("{c}:{i:03}"));
            burst.push((id, body));
        }
        traffic::publish_burst(&js, &t("alpha"), burst).await;
        if i % 10 == 0 {
            for quiet in ["bravo", "charlie"] {
                let id = format!("{quiet}-{i}");
                let body =
                    traffic::message_body(Some(quiet), &id, "9@s.whatsapp.net", &format!("{i}"));
                traffic::publish_inbound(&js, &t(quiet), &id, body).await;
            }
        }
    }
    let total = per_chat * chats.len();
    let all = poll::until("every reply of alpha", Duration::from_secs(60), || async {
        let all = traffic::replies_by_tenant(&js).await;
        (all.get("alpha").map_or(0, Vec::len) >= total).then_some(all)
    })
    .await;

    let mut by_chat: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for reply in &all["alpha"] {
        by_chat
            .entry(reply.chat_id.as_str())
            .or_default()
            .push(reply.body.clone());
        assert_eq!(reply.tenant, t("alpha"));
    }
    for (chat, bodies) in &by_chat {
        let mut sorted = bodies.clone();
        sorted.sort();
        assert_eq!(bodies, &sorted, "chat {chat} answered out of order");
        assert_eq!(
            bodies.len(),
            per_chat,
            "chat {chat} lost or duplicated replies"
        );
    }
    let spills = traffic::metric(
        replicas[0].ops_addr,
        "switchyard_lane_spill_started_total",
        "inbound",
    )
    .await;
    assert!(spills >= 1.0, "the scenario must have made alpha spill");
    for quiet in ["bravo", "charlie"] {
        let replies = poll::until(
            "quiet tenants' replies",
            Duration::from_secs(20),
            || async {
                let all = traffic::replies_by_tenant(&js).await;
                let got = all.get(quiet).cloned().unwrap_or_default();
                (got.len() >= 6).then_some(got)
            },
        )
        .await;
        assert_eq!(replies.len(), 6);
    }
    for r in replicas {
        r.stop().await;
    }
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_poison_message_is_dead_lettered_after_the_attempt_limit(pool: PgPool) {
    let nats = NatsServer::start();
    // An HTTP bot whose endpoint always fails with 500: transient, retried in place.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let bot_url = format!("http://{}/bot", listener.local_addr().unwrap());
    let failing = axum::Router::new().route(
        "/bot",
        axum::routing::post(|| async { (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom") }),
    );
    tokio::spawn(async move { axum::serve(listener, failing).await });
    add_tenant(
        &pool,
        "alpha",
        BotKind::Http,
        serde_json::json!({"url": bot_url, "timeout_ms": 500}),
    )
    .await;
    add_tenant(&pool, "bravo", BotKind::Echo, serde_json::json!({})).await;
    let env = services::env(
        &nats.url(),
        &services::database_url(&pool),
        &[
            ("SWITCHYARD_MAX_DELIVERIES", "3"),
            ("SWITCHYARD_RETRY_DELAY", "10ms"),
        ],
    );
    let router = services::start_router(&env).await;
    let js = streams::context(
        async_nats::connect(nats.url()).await.unwrap(),
        Duration::from_secs(5),
    );

    let body = traffic::message_body(Some("alpha"), "poison", "1@s.whatsapp.net", "hello");
    traffic::publish_inbound(&js, &t("alpha"), "poison", body).await;
    let body = traffic::message_body(Some("bravo"), "fine", "1@s.whatsapp.net", "hello");
    traffic::publish_inbound(&js, &t("bravo"), "fine", body).await;

    let dlq = traffic::wait_dead_letters(&js, Direction::Inbound, Duration::from_secs(20)).await;
    assert_eq!(
        dlq,
        vec![("alpha".to_owned(), "attempts_exhausted".to_owned(), 3)]
    );
    // The other tenant's reply is not behind the poison (under load it may
    // still be on its way when the dead letter is in: waited for, not assumed).
    let all = poll::until(
        "another tenant's reply, not held up",
        Duration::from_secs(10),
        || async {
            let all = traffic::replies_by_tenant(&js).await;
            all.contains_key("bravo").then_some(all)
        },
    )
    .await;
    assert_eq!(all.get("bravo").map(Vec::len), Some(1));
    assert!(!all.contains_key("alpha"));
    router.stop().await;
}

/// A tenant bot endpoint that answers `{"replies": ["echo: <body>"]}` after `delay`.
async fn slow_echo_bot(delay: Duration) -> String {
    counting_bot(delay).await.0
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_backlogged_tenant_drains_one_chat_at_a_time_while_one_that_keeps_up_runs_its_chats_at_once(
    pool: PgPool,
) {
    let nats = NatsServer::start();
    let (steady_bot, steady_calls) = counting_bot(Duration::from_millis(300)).await;
    add_tenant(
        &pool,
        "steady",
        BotKind::Http,
        serde_json::json!({"url": steady_bot}),
    )
    .await;
    // The floor alone: no spare chats (the next test has them).
    let (router, js, flood_calls) = flood_and_router(&pool, &nats, "0").await;

    // steady: four chats, one message each, fewer than its queue holds.
    let steady: Vec<_> = (0..4)
        .map(|c| {
            let id = format!("s-{c}");
            let chat = format!("{c}@s.whatsapp.net");
            (
                id.clone(),
                traffic::message_body(Some("steady"), &id, &chat, &id),
            )
        })
        .collect();
    traffic::publish_burst(&js, &t("steady"), steady).await;
    // flood: 160 messages over 8 chats at once, far past its queue bound of 4.
    traffic::publish_burst(&js, &t("flood"), flood_over_eight_chats(160)).await;

    poll::until("every reply", Duration::from_secs(60), || async {
        let all = traffic::replies_by_tenant(&js).await;
        (all.get("flood").map_or(0, Vec::len) >= 160 && all.get("steady").map_or(0, Vec::len) >= 4)
            .then_some(())
    })
    .await;
    let flood_calls = spilled_flood_calls(&router, &flood_calls, 160).await;
    // The first calls may start before the lane spills; once it has, the
    // flood's chats run one at a time.
    let while_backlogged = &flood_calls[16..150];
    assert!(
        while_backlogged.iter().all(|running| *running == 1),
        "a backlogged tenant ran chats at once: {while_backlogged:?}"
    );
    let steady_calls = steady_calls.lock().unwrap().clone();
    assert_eq!(
        steady_calls.iter().max(),
        Some(&4),
        "a tenant that keeps up runs its chats at once: {steady_calls:?}"
    );
    router.stop().await;
}

/// The same flood with the spare pool on: the router's steps keep their time
/// (one tenant, a 20 ms bot), so the backlogged tenant runs more chats than its
/// floor, never more than `SWITCHYARD_CHATS_IN_FLIGHT`, and the pool says so.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_backlogged_tenant_runs_more_chats_than_its_floor_while_the_steps_keep_their_time(
    pool: PgPool,
) {
    let nats = NatsServer::start();
    let (router, js, flood_calls) = flood_and_router(&pool, &nats, "16").await;
    traffic::publish_burst(&js, &t("flood"), flood_over_eight_chats(240)).await;

    poll::until("every reply", Duration::from_secs(60), || async {
        let all = traffic::replies_by_tenant(&js).await;
        (all.get("flood").map_or(0, Vec::len) >= 240).then_some(())
    })
    .await;
    let flood_calls = spilled_flood_calls(&router, &flood_calls, 240).await;
    let while_backlogged = &flood_calls[16..230];
    let most = while_backlogged.iter().max().copied().unwrap_or(0);
    assert!(
        (2..=4).contains(&most),
        "the backlog ran past its floor of one chat, within its four: {while_backlogged:?}"
    );
    let spare_taken = traffic::metric(
        router.ops_addr,
        "switchyard_router_spare_chats_taken_total",
        "",
    )
    .await;
    assert!(
        spare_taken >= 1.0,
        "the extra chats held spare permits: {spare_taken}"
    );
    router.stop().await;
}

/// The spare pool's second signal is wired: a tenant that keeps up feeds the
/// neighbours' waits (its first deliveries, read straight from their
/// partition), which the pool judges and shows once an interval held enough
/// of them; without a backlog every interval is a clean one, so they become
/// its reference.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_spare_pool_watches_how_long_the_neighbours_messages_take_to_reach_their_worker(
    pool: PgPool,
) {
    let nats = NatsServer::start();
    add_tenant(&pool, "steady", BotKind::Echo, serde_json::json!({})).await;
    let env = services::env(
        &nats.url(),
        &services::database_url(&pool),
        &[("SWITCHYARD_BACKLOG_SPARE_CHATS", "4")],
    );
    let router = services::start_router(&env).await;
    let js = streams::context(
        async_nats::connect(nats.url()).await.unwrap(),
        Duration::from_secs(5),
    );
    let waits = |text: &str, of: &str| {
        text.lines()
            .filter(|l| {
                l.starts_with("switchyard_router_spare_signal_seconds")
                    && l.contains("signal=\"waits\"")
                    && l.contains(&format!("of=\"{of}\""))
            })
            .find_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut sent = 0;
    let reference = loop {
        // Forty messages in forty chats at once: an interval's worth.
        let burst = (0..40)
            .map(|i| {
                let id = format!("w-{sent:04}-{i:02}");
                let chat = format!("{i}@s.whatsapp.net");
                let body = traffic::message_body(Some("steady"), &id, &chat, &id);
                (id, body)
            })
            .collect();
        traffic::publish_burst(&js, &t("steady"), burst).await;
        sent += 40;
        poll::until("the burst's replies", Duration::from_secs(20), || async {
            let all = traffic::replies_by_tenant(&js).await;
            (all.get("steady").map_or(0, Vec::len) >= sent).then_some(())
        })
        .await;
        let text = reqwest::get(format!("http://{}/metrics", router.ops_addr))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        if let Some(reference) = waits(&text, "reference") {
            assert!(
                waits(&text, "interval").is_some(),
                "a judged interval shows its own figure too"
            );
            break reference;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no interval judged the neighbours' waits after {sent} messages"
        );
    };
    assert!(
        reference > 0.0 && reference < 5.0,
        "the waits are the messages' way from the server, in seconds: {reference}"
    );
    router.stop().await;
}

/// Tenant `flood` (a 20 ms bot counting its calls running at once) and a
/// router with a lane queue of 4 (a flood spills at once), four chats of a
/// tenant at once, a backlog's floor of one and `spare` extra chats for
/// backlogs.
async fn flood_and_router(
    pool: &PgPool,
    nats: &NatsServer,
    spare: &str,
) -> (
    services::RunningService,
    async_nats::jetstream::Context,
    Arc<Mutex<Vec<usize>>>,
) {
    let (flood_bot, flood_calls) = counting_bot(Duration::from_millis(20)).await;
    add_tenant(
        pool,
        "flood",
        BotKind::Http,
        serde_json::json!({"url": flood_bot}),
    )
    .await;
    let env = services::env(
        &nats.url(),
        &services::database_url(pool),
        &[
            ("SWITCHYARD_LANE_QUEUE", "4"),
            ("SWITCHYARD_CHATS_IN_FLIGHT", "4"),
            ("SWITCHYARD_BACKLOG_CHATS_IN_FLIGHT", "1"),
            ("SWITCHYARD_BACKLOG_SPARE_CHATS", spare),
        ],
    );
    let router = services::start_router(&env).await;
    let js = streams::context(
        async_nats::connect(nats.url()).await.unwrap(),
        Duration::from_secs(5),
    );
    (router, js, flood_calls)
}

/// The flood's bot calls (how many ran at once at each), once its lane
/// spilled and each of its `n` messages made exactly one call.
async fn spilled_flood_calls(
    router: &services::RunningService,
    calls: &Mutex<Vec<usize>>,
    n: usize,
) -> Vec<usize> {
    let spills = traffic::metric(
        router.ops_addr,
        "switchyard_lane_spill_started_total",
        "inbound",
    )
    .await;
    assert!(spills >= 1.0, "the flood must have spilled");
    let calls = calls.lock().unwrap().clone();
    assert_eq!(calls.len(), n, "one bot call per message");
    calls
}

/// `n` messages of tenant `flood` over 8 chats, in order.
fn flood_over_eight_chats(n: usize) -> Vec<(String, String)> {
    (0..n)
        .map(|i| {
            let id = format!("f-{i:03}");
            let chat = format!("{}@s.whatsapp.net", i % 8);
            let body = traffic::message_body(Some("flood"), &id, &chat, &id);
            (id, body)
        })
        .collect()
}

/// A bot endpoint that answers `{"replies": ["echo: <body>"]}` after `delay`
/// and records, for every call in order of arrival, how many calls (itself
/// included) were running then.
async fn counting_bot(delay: Duration) -> (String, Arc<Mutex<Vec<usize>>>) {
    let running = Arc::new(AtomicUsize::new(0));
    let calls: Arc<Mutex<Vec<usize>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/bot", listener.local_addr().unwrap());
    let recorded = Arc::clone(&calls);
    let app = axum::Router::new().route(
        "/bot",
        axum::routing::post(move |axum::Json(call): axum::Json<serde_json::Value>| {
            let (running, calls) = (Arc::clone(&running), Arc::clone(&recorded));
            async move {
                let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                calls.lock().unwrap().push(now);
                tokio::time::sleep(delay).await; // the bot's own latency, not synchronisation
                running.fetch_sub(1, Ordering::SeqCst);
                let body = call["message"]["body"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                axum::Json(serde_json::json!({"replies": [format!("echo: {body}")]}))
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}
