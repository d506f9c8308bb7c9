//! Backpressure in the router: trouble in our own infrastructure never spends
//! a message's attempts. The router's PostgreSQL taken away (through a TCP
//! proxy, never by stopping the machine's server) for much longer than the
//! attempt limit times the retry delay, and a saturated pool (every
//! connection stuck behind a lock, acquisitions timing out): nothing is
//! dead-lettered, every waiting event is answered exactly once when the
//! database answers again, and replies flow again within 10 s of the fault's
//! end. A message's own faults (an unreadable body, a bot that refuses it)
//! are still dead-lettered at once.

use std::{
    collections::BTreeMap,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::{Duration, Instant},
};

use axum::response::IntoResponse as _;
use sqlx::PgPool;
use switchyard_shared::{ids::TenantId, streams, subjects::Direction, tenants::BotKind};
use switchyard_tests::{
    fixtures, nats_server::NatsServer, poll, services, tcp_proxy::TcpProxy, traffic,
};

const BACKPRESSURE: &str = "switchyard_router_backpressure_total";

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

/// The address of the test's PostgreSQL server.
async fn postgres_addr(db: &PgPool) -> std::net::SocketAddr {
    let options = db.connect_options();
    tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await
        .expect("resolve the PostgreSQL host")
        .next()
        .expect("PostgreSQL over TCP (DATABASE_URL with a host and port)")
}

/// `url` with its host and port replaced by the proxy's.
fn through_proxy(url: &str, proxy: &TcpProxy) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, path) = rest.split_once('/').expect("a database in the URL");
    let user = authority
        .rsplit_once('@')
        .map(|(user, _)| format!("{user}@"))
        .unwrap_or_default();
    format!("{scheme}://{user}127.0.0.1:{}/{path}", proxy.port())
}

/// The router's settings for these tests: an attempt limit and retry delay
/// that the old behaviour exhausted within a second, a tenant cache that
/// asks the database every time, a short pool timeout, and the shortest
/// `ack_wait` (so a wait without keep-alives would be redelivered several
/// times, and a redelivery would soon pass the crash-loop guard).
fn router_env(
    nats: &NatsServer,
    db_url: &str,
    extra: &[(&str, &str)],
) -> switchyard_shared::config::Env {
    let mut vars = vec![
        ("SWITCHYARD_MAX_DELIVERIES", "2"),
        ("SWITCHYARD_RETRY_DELAY", "10ms"),
        ("SWITCHYARD_TENANT_CACHE_TTL", "1ms"),
        ("SWITCHYARD_DB_ACQUIRE_TIMEOUT", "300ms"),
        ("SWITCHYARD_ACK_WAIT", "2s"),
        ("SWITCHYARD_MAX_REDELIVERIES", "2"),
    ];
    vars.extend_from_slice(extra);
    services::env(&nats.url(), db_url, &vars)
}

/// Event ids of the replies stored for each tenant, sorted, as they were
/// published (the replies carry them scoped: `<tenant>:<id>`).
async fn answered(js: &async_nats::jetstream::Context) -> BTreeMap<String, Vec<String>> {
    traffic::replies_by_tenant(js)
        .await
        .into_iter()
        .map(|(tenant, replies)| {
            let scope = format!("{tenant}:");
            let mut events: Vec<String> = replies
                .iter()
                .map(|r| {
                    let id = r.event_id.as_str();
                    id.strip_prefix(&scope).unwrap_or(id).to_owned()
                })
                .collect();
            events.sort();
            (tenant, events)
        })
        .collect()
}

/// Publishes `n` events for `tenant` over three chats; returns their ids, sorted.
async fn publish_events(
    js: &async_nats::jetstream::Context,
    tenant: &str,
    n: usize,
) -> Vec<String> {
    let mut ids = Vec::new();
    for i in 0..n {
        let id = format!("{tenant}-ev-{i}");
        let chat = format!("{}@s.whatsapp.net", 1000 + i % 3);
        let body = traffic::message_body(Some(tenant), &id, &chat, &format!("hello {i}"));
        traffic::publish_inbound(js, &t(tenant), &id, body).await;
        ids.push(id);
    }
    ids.sort();
    ids
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn an_unreachable_database_holds_events_without_spending_attempts_and_all_are_answered_once_it_returns(
    pool: PgPool,
) {
    let nats = NatsServer::start();
    for id in ["alpha", "bravo"] {
        add_tenant(&pool, id, BotKind::Echo, serde_json::json!({})).await;
    }
    let proxy = TcpProxy::start(postgres_addr(&pool).await).await;
    let db_url = through_proxy(&services::database_url(&pool), &proxy);
    let router = services::start_router(&router_env(&nats, &db_url, &[])).await;
    let js = streams::context(
        async_nats::connect(nats.url()).await.unwrap(),
        Duration::from_secs(5),
    );
    // The router works, through the proxy.
    let warm_up = publish_events(&js, "bravo", 1).await;
    poll::until(
        "a reply before the fault",
        Duration::from_secs(20),
        || async { (answered(&js).await.get("bravo") == Some(&warm_up)).then_some(()) },
    )
    .await;

    // PostgreSQL is gone for the router; events keep arriving meanwhile.
    proxy.cut();
    let cut_at = Instant::now();
    let mut expected = BTreeMap::new();
    expected.insert("alpha".to_owned(), publish_events(&js, "alpha", 9).await);
    let mut bravo = warm_up.clone();
    for id in ["bravo-late-0", "bravo-late-1"] {
        let body = traffic::message_body(Some("bravo"), id, "2000@s.whatsapp.net", "later");
        traffic::publish_inbound(&js, &t("bravo"), id, body).await;
        bravo.push(id.to_owned());
    }
    bravo.sort();
    expected.insert("bravo".to_owned(), bravo);

    // The outage lasts three times `ack_wait`, and the router holds its
    // turns again and again meanwhile: many times the 2 attempts the old
    // behaviour allowed before a dead letter.
    let held = poll::until(
        "the router to hold its turns through a long outage",
        Duration::from_secs(60),
        || async {
            let held = traffic::metric(router.ops_addr, BACKPRESSURE, "").await;
            (cut_at.elapsed() >= Duration::from_secs(6) && held >= 10.0).then_some(held)
        },
    )
    .await;
    assert!(
        traffic::dead_letters(&js, Direction::Inbound)
            .await
            .is_empty(),
        "nothing dead-lettered during the outage"
    );
    assert_eq!(
        answered(&js).await.get("bravo"),
        Some(&warm_up),
        "nothing answered without the database"
    );

    proxy.restore().await;
    let restored_at = Instant::now();
    poll::until(
        "every waiting event answered",
        Duration::from_secs(30),
        || async { (answered(&js).await == expected).then_some(()) },
    )
    .await;
    let recovery = restored_at.elapsed();
    eprintln!(
        "database back after {:?} ({held} holds); every waiting event answered {recovery:?} later",
        restored_at - cut_at
    );
    assert!(
        recovery <= Duration::from_secs(10),
        "replies flowed again {recovery:?} after the fault ended"
    );
    // Exactly once: every turn ran to its commit once (a turn run twice
    // would count its reply twice, though the stream keeps one copy).
    poll::until("every turn committed", Duration::from_secs(10), || async {
        let replies = traffic::metric(router.ops_addr, "switchyard_router_replies_total", "").await;
        (replies >= 12.0).then_some(())
    })
    .await;
    assert_eq!(
        traffic::metric(router.ops_addr, "switchyard_router_replies_total", "").await,
        12.0,
        "one bot turn per event"
    );
    assert_eq!(answered(&js).await, expected);
    assert!(
        traffic::dead_letters(&js, Direction::Inbound)
            .await
            .is_empty()
    );
    router.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_saturated_pool_slows_the_router_down_and_dead_letters_nothing(pool: PgPool) {
    let nats = NatsServer::start();
    for id in ["alpha", "bravo", "charlie"] {
        add_tenant(&pool, id, BotKind::Echo, serde_json::json!({})).await;
    }
    let db_url = services::database_url(&pool);
    let router = services::start_router(&router_env(
        &nats,
        &db_url,
        &[("SWITCHYARD_DB_MAX_CONNECTIONS", "2")],
    ))
    .await;
    let js = streams::context(
        async_nats::connect(nats.url()).await.unwrap(),
        Duration::from_secs(5),
    );
    // Another session holds the conversations table: the router's first two
    // steps take both connections and wait behind the lock; every other
    // acquisition times out, as under overload.
    let mut blocker = pool.begin().await.unwrap();
    sqlx::query("LOCK TABLE conversations IN ACCESS EXCLUSIVE MODE")
        .execute(&mut *blocker)
        .await
        .unwrap();
    let locked_at = Instant::now();
    let mut expected = BTreeMap::new();
    for tenant in ["alpha", "bravo", "charlie"] {
        expected.insert(tenant.to_owned(), publish_events(&js, tenant, 6).await);
    }
    poll::until(
        "pool timeouts to be held, not counted",
        Duration::from_secs(60),
        || async {
            let held = traffic::metric(router.ops_addr, BACKPRESSURE, "").await;
            (locked_at.elapsed() >= Duration::from_secs(5) && held >= 10.0).then_some(())
        },
    )
    .await;
    assert!(
        traffic::dead_letters(&js, Direction::Inbound)
            .await
            .is_empty()
    );

    blocker.rollback().await.unwrap();
    let released_at = Instant::now();
    poll::until("every event answered", Duration::from_secs(30), || async {
        (answered(&js).await == expected).then_some(())
    })
    .await;
    let recovery = released_at.elapsed();
    eprintln!("pool free again; every event answered {recovery:?} later");
    assert!(recovery <= Duration::from_secs(10), "{recovery:?}");
    poll::until("every turn committed", Duration::from_secs(10), || async {
        let replies = traffic::metric(router.ops_addr, "switchyard_router_replies_total", "").await;
        (replies >= 18.0).then_some(())
    })
    .await;
    assert_eq!(
        traffic::metric(router.ops_addr, "switchyard_router_replies_total", "").await,
        18.0,
        "one bot turn per event"
    );
    assert!(
        traffic::dead_letters(&js, Direction::Inbound)
            .await
            .is_empty()
    );
    router.stop().await;
}

/// A bot that refuses (400) a message whose body says "refuse" and echoes the
/// others; counts its calls.
async fn picky_bot() -> (String, Arc<AtomicUsize>) {
    let calls = Arc::new(AtomicUsize::new(0));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/bot", listener.local_addr().unwrap());
    let counted = Arc::clone(&calls);
    let app = axum::Router::new().route(
        "/bot",
        axum::routing::post(move |axum::Json(call): axum::Json<serde_json::Value>| {
            let calls = Arc::clone(&counted);
            async move {
                calls.fetch_add(1, Ordering::SeqCst);
                let body = call["message"]["body"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                if body.contains("refuse") {
                    return (axum::http::StatusCode::BAD_REQUEST, "no").into_response();
                }
                axum::Json(serde_json::json!({"replies": [format!("echo: {body}")]}))
                    .into_response()
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, calls)
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_messages_own_faults_are_still_dead_lettered_at_once_through_an_outage(pool: PgPool) {
    let nats = NatsServer::start();
    let (bot, calls) = picky_bot().await;
    add_tenant(
        &pool,
        "alpha",
        BotKind::Http,
        serde_json::json!({"url": bot}),
    )
    .await;
    let proxy = TcpProxy::start(postgres_addr(&pool).await).await;
    let db_url = through_proxy(&services::database_url(&pool), &proxy);
    let router = services::start_router(&router_env(&nats, &db_url, &[])).await;
    let js = streams::context(
        async_nats::connect(nats.url()).await.unwrap(),
        Duration::from_secs(5),
    );

    proxy.cut();
    // Unreadable: dead-lettered without the database, outage or not.
    let garbage = "{\"event\": \"message\", \"chat_id\": ".to_owned();
    traffic::publish_inbound(&js, &t("alpha"), "garbled", garbage).await;
    let letters =
        traffic::wait_dead_letters(&js, Direction::Inbound, Duration::from_secs(20)).await;
    assert_eq!(
        letters,
        vec![("alpha".to_owned(), "malformed_event".to_owned(), 1)]
    );
    // The bot refuses this one, and answers that one: both wait for the database.
    for (id, text) in [("refused", "please refuse this"), ("fine", "hello")] {
        let body = traffic::message_body(Some("alpha"), id, "1@s.whatsapp.net", text);
        traffic::publish_inbound(&js, &t("alpha"), id, body).await;
    }
    let cut_at = Instant::now();
    poll::until("the outage to be held", Duration::from_secs(60), || async {
        let held = traffic::metric(router.ops_addr, BACKPRESSURE, "").await;
        (cut_at.elapsed() >= Duration::from_secs(3) && held >= 5.0).then_some(())
    })
    .await;
    assert_eq!(
        calls.load(Ordering::SeqCst),
        0,
        "no bot turn without the database"
    );
    assert_eq!(
        traffic::dead_letters(&js, Direction::Inbound).await.len(),
        1
    );

    proxy.restore().await;
    poll::until(
        "the refused message dead-lettered and the other answered",
        Duration::from_secs(30),
        || async {
            let letters = traffic::dead_letters(&js, Direction::Inbound).await;
            let replies = answered(&js).await;
            (letters.len() == 2 && replies.get("alpha").map(Vec::len) == Some(1))
                .then_some((letters, replies))
        },
    )
    .await;
    let letters = traffic::dead_letters(&js, Direction::Inbound).await;
    assert_eq!(
        letters[1],
        ("alpha".to_owned(), "bot_failed".to_owned(), 1),
        "a refusal is dead-lettered on its first attempt"
    );
    assert_eq!(
        answered(&js).await.get("alpha"),
        Some(&vec!["fine".to_owned()])
    );
    assert_eq!(calls.load(Ordering::SeqCst), 2, "one bot call each");
    router.stop().await;
}

/// The router's and the sender's pools do not ping a connection before
/// handing it out (`db::pool_with_role`), so the connections a database
/// restart broke fail their first statement once it is back. After a bot
/// turn the conversation record must not fail for that (the turn would run
/// again): it retries in place on its own trouble.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_record_after_a_turn_gets_past_the_connections_a_restart_broke(pool: PgPool) {
    use switchyard_router::conversations;
    use switchyard_shared::{config, db, message_ids::ChatId};

    add_tenant(&pool, "alpha", BotKind::Echo, serde_json::json!({})).await;
    const APP_NAME: &str = "broken-connections-under-test";
    let url = format!(
        "{}?application_name={APP_NAME}",
        services::database_url(&pool)
    );
    let settings = config::DatabaseSettings::from_env(&config::Env::from_map([
        ("DATABASE_URL", url.as_str()),
        ("SWITCHYARD_DB_MAX_CONNECTIONS", "4"),
    ]))
    .unwrap();
    let app = db::pool_with_role(&settings, db::APP_ROLE, "switchyard-test-app").unwrap();
    // Four connections open at once, then idle in the pool.
    let mut held = Vec::new();
    for _ in 0..4 {
        let mut conn = app.acquire().await.unwrap();
        sqlx::query("SELECT 1").execute(&mut *conn).await.unwrap();
        held.push(conn);
    }
    drop(held);
    poll::until("four idle connections", Duration::from_secs(10), || async {
        (app.num_idle() == 4).then_some(())
    })
    .await;
    // What a database restart does to them: every backend ends.
    let ended: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1",
    )
    .bind(APP_NAME)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(ended, vec![true; 4]);
    poll::until("the backends gone", Duration::from_secs(10), || async {
        let left: i64 =
            sqlx::query_scalar("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1")
                .bind(APP_NAME)
                .fetch_one(&pool)
                .await
                .unwrap();
        (left == 0).then_some(())
    })
    .await;

    let tenant = t("alpha");
    let chat = ChatId::parse("15550001111@s.whatsapp.net").unwrap();
    // The premise: a single try meets a broken connection.
    let steps = switchyard_router::turn_steps::TurnSteps::start(
        &app,
        switchyard_shared::group_commit::Shape::WORKER_STEP.linger,
    );
    let once = conversations::record_inbound(&steps, &tenant, &chat, None).await;
    assert!(
        once.is_err(),
        "a broken connection was handed out: {once:?}"
    );
    // The record after a turn gets through on the same pool.
    conversations::record_after_turn(&steps, &tenant, &chat, Some(&["a".to_owned()]))
        .await
        .expect("recorded past the broken connections");
    let menu: serde_json::Value = sqlx::query_scalar(
        "SELECT last_menu FROM conversations WHERE tenant_id = 'alpha' AND chat_id = $1",
    )
    .bind(chat.as_str())
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(menu, serde_json::json!(["a"]));
}

/// The in-place retries of the record after a turn are bounded as a whole:
/// against a server that accepts connections and never answers, every try
/// takes the pool's acquire timeout, and twelve of them would hold the chat
/// for many seconds before the turn reports our trouble.
#[tokio::test]
async fn the_record_after_a_turn_gives_up_within_its_bound_when_the_database_never_answers() {
    use switchyard_router::conversations;
    use switchyard_shared::{config, db, message_ids::ChatId};

    // A black hole: connections are accepted and never answered.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let url = format!("postgres://postgres@{addr}/nowhere?sslmode=disable");
    let settings = config::DatabaseSettings::from_env(&config::Env::from_map([
        ("DATABASE_URL", url.as_str()),
        ("SWITCHYARD_DB_ACQUIRE_TIMEOUT", "500ms"),
    ]))
    .unwrap();
    let app = db::pool_with_role(&settings, db::APP_ROLE, "switchyard-test-app").unwrap();
    let steps = switchyard_router::turn_steps::TurnSteps::start(
        &app,
        switchyard_shared::group_commit::Shape::WORKER_STEP.linger,
    );
    let chat = ChatId::parse("15550001111@s.whatsapp.net").unwrap();
    // Unbounded, 12 tries of 500 ms each plus their waits would take 7.5 s.
    let outcome = tokio::time::timeout(
        Duration::from_secs(6),
        conversations::record_after_turn(&steps, &t("alpha"), &chat, None),
    )
    .await
    .expect("gave up within its bound");
    assert!(
        matches!(outcome, Err(sqlx::Error::PoolTimedOut)),
        "{outcome:?}"
    );
}
