//! Ingest when JetStream cannot take an event: a real nats-server stopped
//! and started (or paused, or a 3-node cluster losing its stream leader)
//! under ingest, and PostgreSQL taken away through a TCP proxy. Every
//! webhook is answered 200 while PostgreSQL is up (the event waits in the
//! outbox and is published later, once, in order per tenant); 503 only when
//! neither store can take the event, and such an event never shows up later.
//!
//! Self-contained: ingest is started in-process through its real `build`
//! path, over the test's database and its own nats-server.

use std::{
    collections::{BTreeMap, BTreeSet},
    net::SocketAddr,
    time::Duration,
};

use futures::future::join_all;
use reqwest::StatusCode;
use sqlx::{PgPool, postgres::PgPoolOptions};
use switchyard_ingest::{Deps, Settings};
use switchyard_shared::{
    config::{Env, NatsSettings},
    ids::TenantId,
    streams, subjects,
    webhook_auth::WebhookKeys,
};
use switchyard_tests::{
    fixtures,
    nats_server::{NatsCluster, NatsServer},
    poll,
    tcp_proxy::TcpProxy,
    traffic,
};
use tokio_util::{sync::CancellationToken, task::TaskTracker};

const SECRET: &str = "outbox-test-secret";

/// An outage is quick to test with a short publish budget and a flusher
/// that counts the outbox often.
const FAST: &[(&str, &str)] = &[
    ("SWITCHYARD_PUBLISH_TIMEOUT", "600ms"),
    ("SWITCHYARD_OUTBOX_POLL", "100ms"),
    ("SWITCHYARD_OUTBOX_LEASE", "5s"),
];

/// Long enough for a restarted nats-server, the client's reconnect (at most
/// 4 s between attempts) and the flush.
const RECOVERY: Duration = Duration::from_secs(45);

/// One ingest replica, in-process.
struct Ingest {
    base: String,
    keys: WebhookKeys,
    http: reqwest::Client,
    shutdown: CancellationToken,
    tasks: TaskTracker,
    served: tokio::task::JoinHandle<anyhow::Result<()>>,
}

impl Ingest {
    /// Ingest on `nats_url` (one URL or a comma-separated cluster) over
    /// `db`, with the test secret, port 0, and `vars` on top.
    async fn start(nats_url: &str, db: PgPool, vars: &[(&str, &str)]) -> Self {
        let mut env: Vec<(String, String)> = vec![
            ("SWITCHYARD_WEBHOOK_SECRET".into(), SECRET.into()),
            ("SWITCHYARD_HTTP_ADDR".into(), "127.0.0.1:0".into()),
        ];
        env.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        let settings = Settings::from_env(&Env::from_map(env)).expect("ingest settings");
        let nats = switchyard_shared::nats::connect(&nats_settings(nats_url, &[]), "ingest-outbox")
            .await
            .expect("connect ingest to NATS");
        let shutdown = CancellationToken::new();
        let tasks = TaskTracker::new();
        let deps = Deps {
            nats,
            db,
            shutdown: shutdown.clone(),
            tasks: tasks.clone(),
            shutdown_grace: Duration::from_secs(5),
        };
        let ingest = switchyard_ingest::build(deps, settings)
            .await
            .expect("build ingest");
        let base = format!("http://{}", ingest.local_addr());
        let served = tokio::spawn(ingest.run_until_stopped());
        Self {
            base,
            keys: WebhookKeys::new(SECRET.into(), None),
            http: reqwest::Client::new(),
            shutdown,
            tasks,
            served,
        }
    }

    /// Posts a `message` event with provider id `id` to `tenant`'s webhook.
    async fn post(&self, tenant: &str, id: &str) -> (StatusCode, String) {
        let url = self.keys.webhook_url(&self.base, &tenant_id(tenant));
        let body = traffic::message_body(None, id, "15550001234@s.whatsapp.net", id);
        let response = self
            .http
            .post(url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .expect("ingest answers");
        let status = response.status();
        (status, response.text().await.unwrap_or_default())
    }

    /// Stops serving, then waits for the writers and the flusher to end.
    async fn stop(mut self) {
        self.shutdown.cancel();
        let _ = tokio::time::timeout(Duration::from_secs(20), &mut self.served).await;
        self.tasks.close();
        let _ = tokio::time::timeout(Duration::from_secs(20), self.tasks.wait()).await;
    }
}

impl Drop for Ingest {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn tenant_id(raw: &str) -> TenantId {
    TenantId::parse(raw).expect("valid tenant")
}

fn nats_settings(url: &str, extra: &[(&str, &str)]) -> NatsSettings {
    let mut vars = vec![("NATS_URL", url)];
    vars.extend_from_slice(extra);
    NatsSettings::from_env(&Env::from_map(vars)).expect("nats settings")
}

/// A JetStream context of the test's own (a new connection: after a
/// restart it does not wait for an old one to reconnect), streams ensured.
async fn jetstream(url: &str, extra: &[(&str, &str)]) -> async_nats::jetstream::Context {
    let settings = nats_settings(url, extra);
    let client = switchyard_shared::nats::connect(&settings, "outbox-test")
        .await
        .expect("connect the test to NATS");
    let js = streams::context(client, Duration::from_secs(5));
    streams::ensure_streams(&js, &settings)
        .await
        .expect("streams");
    js
}

async fn inbound_count(js: &async_nats::jetstream::Context) -> u64 {
    match js.get_stream(subjects::INBOUND_STREAM).await {
        Ok(stream) => stream.get_info().await.map_or(0, |i| i.state.messages),
        Err(_) => 0,
    }
}

/// Waits until the inbound stream holds `n` messages, then returns every
/// `Nats-Msg-Id` in stream order.
async fn wait_for_inbound(js: &async_nats::jetstream::Context, n: u64) -> Vec<String> {
    poll::until(
        &format!("{n} messages in the inbound stream"),
        RECOVERY,
        || async { (inbound_count(js).await >= n).then_some(()) },
    )
    .await;
    traffic::read_stream(js, subjects::INBOUND_STREAM, "inbound.>")
        .await
        .into_iter()
        .filter_map(|(_, headers, _)| headers.get("Nats-Msg-Id").map(|v| v.as_str().to_owned()))
        .collect()
}

/// Checks that every expected event is stored exactly once, that nothing
/// else is, and that each tenant's events are in the expected order.
fn assert_once_each_in_order(stored: &[String], expected: &BTreeMap<String, Vec<String>>) {
    let unique: BTreeSet<&String> = stored.iter().collect();
    assert_eq!(
        unique.len(),
        stored.len(),
        "a message stored twice: {stored:?}"
    );
    let mut by_tenant: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for id in stored {
        let (tenant, event) = id.split_once(':').expect("scoped id");
        by_tenant
            .entry(tenant.to_owned())
            .or_default()
            .push(event.to_owned());
    }
    assert_eq!(&by_tenant, expected, "per-tenant order in the stream");
}

async fn outbox_rows(db: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM inbound_outbox")
        .fetch_one(db)
        .await
        .expect("count the outbox")
}

async fn key_states(db: &PgPool) -> BTreeMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>(
        "SELECT state, count(*) FROM inbound_event_keys GROUP BY state",
    )
    .fetch_all(db)
    .await
    .expect("key states")
    .into_iter()
    .collect()
}

/// Waits until the outbox is empty and no key is left `outboxed`.
async fn wait_until_flushed(db: &PgPool) {
    poll::until("the outbox to be flushed", RECOVERY, || async {
        let empty = outbox_rows(db).await == 0;
        let outboxed = key_states(db).await.get("outboxed").copied().unwrap_or(0);
        (empty && outboxed == 0).then_some(())
    })
    .await;
}

/// Waits until ingest's estimate of the outbox depth (the gauge it sets
/// after each count) is the number of rows. The estimate errs on the high
/// side by design: a write that committed while a count ran is counted twice
/// until the next count ends (`outbox::Depth`), so a post in that window may
/// meet a cap one event early. Tests that judge the caps event by event post
/// only once the estimate is exact.
async fn wait_until_depth_is_exact(db: &PgPool) {
    poll::until(
        "ingest's outbox depth estimate to match the outbox",
        RECOVERY,
        || async {
            let rows = outbox_rows(db).await;
            let estimate = metric(switchyard_ingest::metrics::OUTBOX_DEPTH, "");
            (estimate == rows as f64).then_some(())
        },
    )
    .await;
}

fn metric(name: &str, labels: &str) -> f64 {
    traffic::metric_sum(
        &switchyard_shared::ops_server::metrics_handle().render(),
        name,
        labels,
    )
}

fn assert_all(answers: &[(StatusCode, String)], status: StatusCode) {
    for (got, text) in answers {
        assert_eq!(*got, status, "{text}");
    }
}

/// The address of the test's PostgreSQL server.
async fn postgres_addr(db: &PgPool) -> SocketAddr {
    let options = db.connect_options();
    tokio::net::lookup_host((options.get_host(), options.get_port()))
        .await
        .expect("resolve the PostgreSQL host")
        .next()
        .expect("PostgreSQL over TCP (DATABASE_URL with a host and port)")
}

/// A pool over the test database that goes through `proxy`: cutting the
/// proxy takes PostgreSQL away from ingest (its pool, key writers and outbox
/// writer all connect with these options) and from nobody else.
fn pool_through(proxy: &TcpProxy, db: &PgPool) -> PgPool {
    PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(1))
        .connect_lazy_with(
            (*db.connect_options())
                .clone()
                .host("127.0.0.1")
                .port(proxy.port()),
        )
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn webhooks_while_nats_is_down_are_accepted_and_reach_the_stream_once_each_in_order(
    db: PgPool,
) {
    let mut nats = NatsServer::start();
    let js = jetstream(&nats.url(), &[]).await;
    let ingest = Ingest::start(&nats.url(), db.clone(), FAST).await;
    let tenants = ["acme", "globex", "initech"];
    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for t in tenants {
        let id = format!("{t}-before");
        let (status, text) = ingest.post(t, &id).await;
        assert_eq!(status, StatusCode::OK, "{text}");
        expected.entry(t.to_owned()).or_default().push(id);
    }
    assert_eq!(inbound_count(&js).await, 3);

    nats.kill();
    // Each tenant's events one after another (a chat's messages), the
    // tenants at the same time.
    let answers = join_all(tenants.iter().map(|t| {
        let ingest = &ingest;
        async move {
            let mut answers = Vec::new();
            for i in 0..8 {
                answers.push(ingest.post(t, &format!("{t}-down-{i}")).await);
            }
            answers
        }
    }))
    .await;
    for (t, answers) in tenants.iter().zip(&answers) {
        assert_all(answers, StatusCode::OK);
        assert!(answers.iter().all(|(_, text)| text.contains("accepted")));
        expected
            .get_mut(*t)
            .expect("tenant")
            .extend((0..8).map(|i| format!("{t}-down-{i}")));
    }
    assert_eq!(
        outbox_rows(&db).await,
        24,
        "every event waits in the outbox"
    );
    assert_eq!(key_states(&db).await.get("outboxed"), Some(&24));

    nats.restart();
    let js = jetstream(&nats.url(), &[]).await;
    let stored = wait_for_inbound(&js, 27).await;
    assert_once_each_in_order(&stored, &expected);
    wait_until_flushed(&db).await;
    assert_eq!(key_states(&db).await.get("published"), Some(&27));
    assert_eq!(
        metric(switchyard_ingest::metrics::OUTBOXED, ""),
        24.0,
        "one write per event"
    );
    assert_eq!(metric(switchyard_ingest::metrics::OUTBOX_FLUSHED, ""), 24.0);
    assert_eq!(
        metric(
            switchyard_ingest::metrics::REJECTED,
            r#"reason="unavailable""#
        ),
        0.0
    );
    ingest.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_repeated_delivery_of_an_outboxed_event_is_a_duplicate(db: PgPool) {
    let mut nats = NatsServer::start();
    jetstream(&nats.url(), &[]).await;
    let ingest = Ingest::start(&nats.url(), db.clone(), FAST).await;
    nats.kill();

    let (status, text) = ingest.post("acme", "TWICE-1").await;
    assert_eq!(
        (status, text.contains("accepted")),
        (StatusCode::OK, true),
        "{text}"
    );
    let again = join_all((0..4).map(|_| ingest.post("acme", "TWICE-1"))).await;
    assert_all(&again, StatusCode::OK);
    for (_, text) in &again {
        assert!(text.contains("duplicate"), "{text}");
    }
    assert_eq!(outbox_rows(&db).await, 1);

    nats.restart();
    let js = jetstream(&nats.url(), &[]).await;
    let stored = wait_for_inbound(&js, 1).await;
    wait_until_flushed(&db).await;
    assert_eq!(stored, vec!["acme:TWICE-1".to_owned()]);
    // Once published, it is a duplicate as before.
    let (status, text) = ingest.post("acme", "TWICE-1").await;
    assert_eq!(
        (status, text.contains("duplicate")),
        (StatusCode::OK, true),
        "{text}"
    );
    assert_eq!(inbound_count(&js).await, 1);
    ingest.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn past_the_outbox_caps_an_event_is_refused_and_never_published(db: PgPool) {
    let mut nats = NatsServer::start();
    jetstream(&nats.url(), &[]).await;
    let mut vars = FAST.to_vec();
    vars.extend([
        ("SWITCHYARD_OUTBOX_MAX_EVENTS", "4"),
        ("SWITCHYARD_OUTBOX_MAX_PER_TENANT", "2"),
    ]);
    let ingest = Ingest::start(&nats.url(), db.clone(), &vars).await;
    nats.kill();

    let mut answers = Vec::new();
    for (tenant, id) in [
        ("acme", "CAP-1"),
        ("acme", "CAP-2"),
        ("acme", "CAP-3"), // the tenant's cap
        ("globex", "CAP-1"),
        ("globex", "CAP-2"),
        ("initech", "CAP-1"), // the outbox's cap
    ] {
        wait_until_depth_is_exact(&db).await;
        answers.push(ingest.post(tenant, id).await.0);
    }
    use StatusCode as S;
    assert_eq!(
        answers,
        [
            S::OK,
            S::OK,
            S::SERVICE_UNAVAILABLE,
            S::OK,
            S::OK,
            S::SERVICE_UNAVAILABLE
        ]
    );
    assert_eq!(
        metric(
            switchyard_ingest::metrics::OUTBOX_REFUSED,
            r#"reason="tenant_full""#
        ),
        1.0
    );
    assert_eq!(
        metric(
            switchyard_ingest::metrics::OUTBOX_REFUSED,
            r#"reason="full""#
        ),
        1.0
    );
    assert_eq!(
        metric(switchyard_ingest::metrics::UNAVAILABLE_UNCERTAIN, ""),
        0.0,
        "nothing was handed to a disconnected client"
    );

    nats.restart();
    let js = jetstream(&nats.url(), &[]).await;
    wait_for_inbound(&js, 4).await;
    wait_until_flushed(&db).await;
    // A marker published after the flush: anything refused that was still
    // on its way would be in the stream before it.
    let (status, text) = ingest.post("acme", "AFTER").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let stored = wait_for_inbound(&js, 5).await;
    let expected: BTreeMap<String, Vec<String>> = [
        ("acme", vec!["CAP-1", "CAP-2", "AFTER"]),
        ("globex", vec!["CAP-1", "CAP-2"]),
    ]
    .into_iter()
    .map(|(t, ids)| (t.to_owned(), ids.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_once_each_in_order(&stored, &expected);
    ingest.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn with_nats_and_postgres_both_unavailable_a_webhook_is_refused_and_never_processed(
    db: PgPool,
) {
    let proxy = TcpProxy::start(postgres_addr(&db).await).await;
    let mut nats = NatsServer::start();
    jetstream(&nats.url(), &[]).await;
    let mut vars = FAST.to_vec();
    vars.push(("SWITCHYARD_DB_CLAIM_TIMEOUT", "300ms"));
    let ingest = Ingest::start(&nats.url(), pool_through(&proxy, &db), &vars).await;
    let (status, text) = ingest.post("acme", "UP-1").await;
    assert_eq!(status, StatusCode::OK, "{text}");

    nats.kill();
    proxy.cut();
    let started = std::time::Instant::now();
    let (status, text) = ingest.post("acme", "LOST-1").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{text}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered within the bounds: {:?}",
        started.elapsed()
    );
    assert_eq!(
        metric(switchyard_ingest::metrics::UNAVAILABLE_UNCERTAIN, ""),
        0.0
    );

    // NATS back, PostgreSQL still away: ingest publishes without claims.
    nats.restart();
    let js = jetstream(&nats.url(), &[]).await;
    poll::until("ingest to accept again", RECOVERY, || async {
        (ingest.post("acme", "BACK-1").await.0 == StatusCode::OK).then_some(())
    })
    .await;
    // Anything of LOST-1 still queued in the client would have been sent
    // on reconnect, before BACK-1.
    let stored = wait_for_inbound(&js, 2).await;
    assert_eq!(
        stored,
        vec!["acme:UP-1".to_owned(), "acme:BACK-1".to_owned()]
    );
    assert_eq!(outbox_rows(&db).await, 0);
    ingest.stop().await;
}

/// A server that stops answering without closing its connections (paused,
/// like a stalled disk or a long GC): the client still looks connected,
/// publishes are written and their acks time out. Those publishes are stored
/// when the server resumes; the outbox's republish under the same
/// `Nats-Msg-Id` is then a duplicate, so each event is stored once, and no
/// webhook was refused.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_paused_server_stores_each_event_once_and_refuses_none(db: PgPool) {
    let nats = NatsServer::start();
    let js = jetstream(&nats.url(), &[]).await;
    let ingest = Ingest::start(&nats.url(), db.clone(), FAST).await;
    let signal = |sig: &str| {
        let status = std::process::Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(nats.pid().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{sig}");
    };

    signal("STOP");
    let tenants = ["acme", "globex"];
    let answers = join_all(tenants.iter().map(|t| {
        let ingest = &ingest;
        async move {
            let mut answers = Vec::new();
            for i in 0..5 {
                answers.push(ingest.post(t, &format!("{t}-{i}")).await);
            }
            answers
        }
    }))
    .await;
    signal("CONT");

    for answers in &answers {
        assert_all(answers, StatusCode::OK);
    }
    let expected: BTreeMap<String, Vec<String>> = tenants
        .iter()
        .map(|t| (t.to_string(), (0..5).map(|i| format!("{t}-{i}")).collect()))
        .collect();
    let stored = wait_for_inbound(&js, 10).await;
    wait_until_flushed(&db).await;
    let stored_after_flush = wait_for_inbound(&js, 10).await;
    assert_eq!(stored, stored_after_flush);
    assert_once_each_in_order(&stored, &expected);
    assert!(
        metric(switchyard_ingest::metrics::OUTBOXED, "") >= 2.0,
        "the first event of each tenant waited for an ack that did not come"
    );
    // Those first events were written to the paused server and stored when
    // it resumed: the flusher's publish of them was a duplicate.
    assert!(
        metric(
            switchyard_ingest::metrics::OUTBOX_FLUSHED,
            r#"result="duplicate""#
        ) >= 1.0
    );
    assert_eq!(
        metric(
            switchyard_ingest::metrics::REJECTED,
            r#"reason="unavailable""#
        ),
        0.0
    );
    ingest.stop().await;
}

/// Two replicas outbox a tenant's events in turn; both stop (a deploy while
/// NATS is down); two new replicas start once it is back. Everything in
/// PostgreSQL survived the restart, and the leases let only one replica at a
/// time flush the tenant: every event once, in the order received.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn outboxed_events_survive_a_restart_and_two_replicas_flush_them_once_in_order(db: PgPool) {
    let mut nats = NatsServer::start();
    jetstream(&nats.url(), &[]).await;
    let a = Ingest::start(&nats.url(), db.clone(), FAST).await;
    let b = Ingest::start(&nats.url(), db.clone(), FAST).await;
    nats.kill();

    let mut expected: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for i in 0..12 {
        for tenant in ["acme", "globex"] {
            let id = format!("R-{i:02}");
            let replica = if i % 2 == 0 { &a } else { &b };
            let (status, text) = replica.post(tenant, &id).await;
            assert_eq!(status, StatusCode::OK, "{tenant} {id}: {text}");
            expected.entry(tenant.to_owned()).or_default().push(id);
        }
    }
    a.stop().await;
    b.stop().await;
    assert_eq!(outbox_rows(&db).await, 24);

    nats.restart();
    let c = Ingest::start(&nats.url(), db.clone(), FAST).await;
    let d = Ingest::start(&nats.url(), db.clone(), FAST).await;
    let js = jetstream(&nats.url(), &[]).await;
    let stored = wait_for_inbound(&js, 24).await;
    wait_until_flushed(&db).await;
    assert_once_each_in_order(&stored, &expected);
    // A flusher releases a tenant's lease right after deleting its last rows,
    // in a statement of its own: drained tenants are released shortly after.
    poll::until("drained tenants to be released", RECOVERY, || async {
        let leases: i64 = sqlx::query_scalar("SELECT count(*) FROM inbound_outbox_leases")
            .fetch_one(&db)
            .await
            .unwrap();
        (leases == 0).then_some(())
    })
    .await;
    c.stop().await;
    d.stop().await;
}

/// While a tenant has events in the outbox, its new events queue behind them
/// even with JetStream up; other tenants are published at once. The backlog
/// here belongs to a replica that died holding the tenant's lease: it is
/// flushed when the lease expires.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_backlogged_tenants_new_events_wait_behind_its_outboxed_ones(db: PgPool) {
    let nats = NatsServer::start();
    let js = jetstream(&nats.url(), &[]).await;
    for (i, id) in ["OLD-1", "OLD-2"].into_iter().enumerate() {
        let body = traffic::message_body(None, id, "15550001234@s.whatsapp.net", id);
        sqlx::query(
            "INSERT INTO inbound_outbox (tenant_id, event_id, payload, received_at_ms, traceparent) \
             VALUES ('acme', $1, $2, $3, '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01')",
        )
        .bind(id)
        .bind(body.into_bytes())
        .bind(1_000 + i as i64)
        .execute(&db)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO inbound_event_keys (tenant_id, event_id, state) VALUES ('acme', $1, 'outboxed')",
        )
        .bind(id)
        .execute(&db)
        .await
        .unwrap();
    }
    sqlx::query(
        "INSERT INTO inbound_outbox_leases (tenant_id, owner, leased_until) \
         VALUES ('acme', 'ingest-dead', now() + interval '1 hour')",
    )
    .execute(&db)
    .await
    .unwrap();
    let ingest = Ingest::start(&nats.url(), db.clone(), FAST).await;

    let (status, text) = ingest.post("acme", "NEW-1").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    let (status, text) = ingest.post("globex", "G-1").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(
        wait_for_inbound(&js, 1).await,
        vec!["globex:G-1".to_owned()],
        "only the tenant without a backlog went straight to the stream"
    );
    assert_eq!(
        outbox_rows(&db).await,
        3,
        "NEW-1 queued behind OLD-1, OLD-2"
    );
    assert_eq!(
        metric(switchyard_ingest::metrics::OUTBOXED, r#"cause="backlog""#),
        1.0
    );

    // The dead replica's lease runs out.
    sqlx::query("UPDATE inbound_outbox_leases SET leased_until = now() - interval '1 second'")
        .execute(&db)
        .await
        .unwrap();
    let stored = wait_for_inbound(&js, 4).await;
    wait_until_flushed(&db).await;
    let expected: BTreeMap<String, Vec<String>> = [
        ("acme", vec!["OLD-1", "OLD-2", "NEW-1"]),
        ("globex", vec!["G-1"]),
    ]
    .into_iter()
    .map(|(t, ids)| (t.to_owned(), ids.into_iter().map(str::to_owned).collect()))
    .collect();
    assert_once_each_in_order(&stored, &expected);

    // Drained: the tenant's next event goes straight to the stream again.
    let (status, text) = ingest.post("acme", "NEW-2").await;
    assert_eq!(status, StatusCode::OK, "{text}");
    assert_eq!(inbound_count(&js).await, 5);
    assert_eq!(
        metric(switchyard_ingest::metrics::OUTBOXED, r#"cause="backlog""#),
        1.0
    );
    ingest.stop().await;
}

/// A 3-node cluster with R3 streams loses the node that leads the inbound
/// stream while webhooks keep coming: retries within the publish budget and
/// the outbox answer every one of them 200, and each is stored once.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn losing_the_stream_leader_refuses_no_webhook(db: PgPool) {
    let mut cluster = NatsCluster::start();
    let replicas = [("SWITCHYARD_STREAM_REPLICAS", "3")];
    let urls = cluster.urls();
    let js = fixtures::jetstream_with_streams_on_cluster(
        &nats_settings(&urls, &replicas),
        "outbox-test",
        RECOVERY,
    )
    .await;
    let mut vars = FAST.to_vec();
    // The production defaults.
    vars.extend([
        ("SWITCHYARD_PUBLISH_TIMEOUT", "3s"),
        ("SWITCHYARD_OUTBOX_LEASE", "15s"),
    ]);
    let ingest = Ingest::start(&urls, db.clone(), &vars).await;
    let (status, text) = ingest.post("acme", "BEFORE").await;
    assert_eq!(status, StatusCode::OK, "{text}");

    let leader = js
        .get_stream(subjects::INBOUND_STREAM)
        .await
        .expect("inbound stream")
        .get_info()
        .await
        .expect("stream info")
        .cluster
        .and_then(|c| c.leader)
        .expect("the inbound stream has a leader");
    let node = cluster
        .node_named(&leader)
        .expect("the leader is a node of the cluster");
    cluster.kill(node);

    let tenants = ["acme", "globex", "initech", "umbrella"];
    let answers = join_all(tenants.iter().map(|t| {
        let ingest = &ingest;
        async move {
            let mut answers = Vec::new();
            for i in 0..6 {
                answers.push(ingest.post(t, &format!("{t}-{i}")).await);
            }
            answers
        }
    }))
    .await;
    for answers in &answers {
        assert_all(answers, StatusCode::OK);
    }
    cluster.restart(node);

    let mut expected: BTreeMap<String, Vec<String>> = tenants
        .iter()
        .map(|t| (t.to_string(), (0..6).map(|i| format!("{t}-{i}")).collect()))
        .collect();
    expected
        .get_mut("acme")
        .expect("acme")
        .insert(0, "BEFORE".to_owned());
    let js = poll::until("a connection to the cluster", RECOVERY, || async {
        let client =
            switchyard_shared::nats::connect(&nats_settings(&urls, &replicas), "outbox-test")
                .await
                .ok()?;
        Some(streams::context(client, Duration::from_secs(5)))
    })
    .await;
    let stored = wait_for_inbound(&js, 25).await;
    wait_until_flushed(&db).await;
    assert_once_each_in_order(&stored, &expected);
    let outboxed = switchyard_ingest::metrics::OUTBOXED;
    eprintln!(
        "stream leader {leader} lost: {} publish retries, {} publishes acked after a retry, \
         outboxed: {} after the publish budget, {} behind their tenant's backlog",
        metric(switchyard_ingest::metrics::PUBLISH_RETRIES, ""),
        metric(switchyard_ingest::metrics::PUBLISH_RECOVERED, ""),
        metric(outboxed, r#"cause="publish_failed""#),
        metric(outboxed, r#"cause="backlog""#),
    );
    ingest.stop().await;
}

/// A stream at its byte limit (`SWITCHYARD_STREAM_MAX_BYTES`) refuses new
/// messages and keeps the ones it holds: ingest answers every webhook 200
/// from its outbox, and once an operator raises the limit the outboxed
/// events reach the stream, once each and in order.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_full_inbound_stream_outboxes_events_until_its_limit_is_raised(db: PgPool) {
    let nats = NatsServer::start();
    let js = jetstream(&nats.url(), &[("SWITCHYARD_STREAM_MAX_BYTES", "4096")]).await;
    let ingest = Ingest::start(&nats.url(), db.clone(), FAST).await;
    let ids: Vec<String> = (0..20).map(|i| format!("acme-full-{i}")).collect();
    for id in &ids {
        let (status, text) = ingest.post("acme", id).await;
        assert_eq!(status, StatusCode::OK, "{id}: {text}");
    }
    let held = inbound_count(&js).await;
    assert!(
        (1..20).contains(&held),
        "the 4 KiB stream took some events and refused the rest ({held} stored)"
    );
    assert_eq!(
        outbox_rows(&db).await,
        20 - i64::try_from(held).expect("a count"),
        "every refused event waits in the outbox"
    );

    // The operator raises the limit (every service applies it at start).
    let js = jetstream(&nats.url(), &[("SWITCHYARD_STREAM_MAX_BYTES", "-1")]).await;
    let stored = wait_for_inbound(&js, 20).await;
    assert_once_each_in_order(&stored, &BTreeMap::from([("acme".to_owned(), ids)]));
    wait_until_flushed(&db).await;
    ingest.stop().await;
}
