//! A tenant's HTTP bot is untrusted: an answer that breaks the bot contract
//! is dead-lettered with the reason (never acked as "no answer"), an answer
//! is read only up to the size limit however much the endpoint streams, the
//! egress guard keeps bot URLs off internal addresses (in the CLI and at
//! every call, also for a name that resolves to loopback), and a secret in a
//! bot URL or configuration never reaches a log line, a dead-letter header,
//! a `Debug` rendering or the CLI's output. Other tenants are answered
//! throughout.

use std::{
    collections::BTreeMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
    },
    time::Duration,
};

use async_nats::jetstream;
use futures::StreamExt as _;
use sqlx::PgPool;
use switchyard_cli::exit::Exit;
use switchyard_shared::{
    bot_config::{BotConfig, EgressPolicy},
    ids::TenantId,
    lanes::dead_letter,
    streams,
    subjects::{self, Direction},
    tenants::{self, BotKind},
};
use switchyard_tests::{fixtures, nats_server::NatsServer, poll, services, traffic};

use crate::{cli_support, log_capture::LogBuffer};

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

fn http_bot(url: &str) -> serde_json::Value {
    serde_json::json!({ "url": url, "timeout_ms": 5000 })
}

/// One stored dead letter, as read back from the DLQ stream.
#[derive(Debug, Clone)]
struct Letter {
    tenant: String,
    code: String,
    attempts: u32,
    last_error: String,
    /// Every header value, for the secret scan.
    headers: Vec<String>,
}

async fn letters(js: &jetstream::Context) -> Vec<Letter> {
    traffic::read_stream(
        js,
        subjects::DLQ_STREAM,
        &subjects::dead_letter_filter(Direction::Inbound),
    )
    .await
    .into_iter()
    .map(|(subject, headers, _)| {
        let get = |h: &str| {
            headers
                .get(h)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default()
        };
        Letter {
            tenant: subjects::tenant_of(&subject)
                .map(|t| t.to_string())
                .unwrap_or_default(),
            code: get(dead_letter::HEADER_REASON),
            attempts: get(dead_letter::HEADER_ATTEMPTS).parse().unwrap_or(0),
            last_error: get(dead_letter::HEADER_LAST_ERROR),
            headers: headers
                .iter()
                .flat_map(|(name, values)| {
                    values
                        .iter()
                        .map(move |v| format!("{name}: {}", v.as_str()))
                })
                .collect(),
        }
    })
    .collect()
}

/// Waits until each of `tenants` has a dead letter; returns them by tenant.
async fn letters_for(js: &jetstream::Context, tenants: &[&str]) -> BTreeMap<String, Letter> {
    poll::until(
        &format!("dead letters for {tenants:?}"),
        Duration::from_secs(30),
        || async {
            let by_tenant: BTreeMap<String, Letter> = letters(js)
                .await
                .into_iter()
                .map(|l| (l.tenant.clone(), l))
                .collect();
            tenants
                .iter()
                .all(|t| by_tenant.contains_key(*t))
                .then_some(by_tenant)
        },
    )
    .await
}

/// Waits until `n` replies were published for each of `tenants`.
async fn replies_for(js: &jetstream::Context, tenants: &[&str], n: usize) {
    poll::until(
        &format!("{n} replies for each of {tenants:?}"),
        Duration::from_secs(30),
        || async {
            let all = traffic::replies_by_tenant(js).await;
            tenants
                .iter()
                .all(|t| all.get(*t).is_some_and(|r| r.len() >= n))
                .then_some(())
        },
    )
    .await;
}

/// Waits until nothing is pending or unacknowledged on the inbound and
/// spill streams' consumers, twice in a row: every event was finished.
async fn inbound_settled(js: &jetstream::Context) {
    let clean = std::cell::Cell::new(0u32);
    let clean = &clean;
    poll::until(
        "the inbound consumers to settle",
        Duration::from_secs(30),
        || async move {
            let mut idle = true;
            for name in [subjects::INBOUND_STREAM, subjects::SPILL_STREAM] {
                let Ok(stream) = js.get_stream(name).await else {
                    idle = false;
                    continue;
                };
                let mut consumers = stream.consumers();
                while let Some(info) = consumers.next().await {
                    match info {
                        Ok(info) if info.num_pending == 0 && info.num_ack_pending == 0 => {}
                        _ => idle = false,
                    }
                }
            }
            clean.set(if idle { clean.get() + 1 } else { 0 });
            (clean.get() >= 2).then_some(())
        },
    )
    .await;
}

async fn send(js: &jetstream::Context, tenant: &str, id: &str) {
    let body = traffic::message_body(Some(tenant), id, "111@s.whatsapp.net", "hello");
    traffic::publish_inbound(js, &t(tenant), id, body).await;
}

async fn context(nats: &NatsServer) -> jetstream::Context {
    streams::context(
        async_nats::connect(nats.url()).await.unwrap(),
        Duration::from_secs(5),
    )
}

/// A bot endpoint with one route per behaviour, counting calls per route.
async fn contract_bot() -> (String, Arc<Mutex<BTreeMap<String, usize>>>) {
    let calls: Arc<Mutex<BTreeMap<String, usize>>> = Arc::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let counted = Arc::clone(&calls);
    let app = axum::Router::new().route(
        "/{behaviour}",
        axum::routing::post(
            move |axum::extract::Path(behaviour): axum::extract::Path<String>| {
                let calls = Arc::clone(&counted);
                async move {
                    *calls.lock().unwrap().entry(behaviour.clone()).or_default() += 1;
                    let body = match behaviour.as_str() {
                        "empty-object" => "{}",
                        "replies-number" => r#"{"replies": 5}"#,
                        "not-json" => "<html>hello</html>",
                        "no-answer" => r#"{"replies": []}"#,
                        _ => r#"{"replies": ["ok"]}"#,
                    };
                    ([("content-type", "application/json")], body)
                }
            },
        ),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (base, calls)
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn answers_that_break_the_contract_are_dead_lettered_with_the_reason_and_empty_replies_are_a_valid_no_answer(
    pool: PgPool,
) {
    let nats = NatsServer::start();
    let (bot, calls) = contract_bot().await;
    for (tenant, route) in [
        ("emptyobj", "empty-object"),
        ("number", "replies-number"),
        ("html", "not-json"),
        ("silent", "no-answer"),
    ] {
        add_tenant(
            &pool,
            tenant,
            BotKind::Http,
            http_bot(&format!("{bot}/{route}")),
        )
        .await;
    }
    for tenant in ["calm-a", "calm-b"] {
        add_tenant(&pool, tenant, BotKind::Echo, serde_json::json!({})).await;
    }
    let env = services::env(&nats.url(), &services::database_url(&pool), &[]);
    let router = services::start_router(&env).await;
    let js = context(&nats).await;

    for tenant in ["emptyobj", "number", "html", "silent"] {
        send(&js, tenant, "m1").await;
    }
    for i in 0..5 {
        send(&js, "calm-a", &format!("a{i}")).await;
        send(&js, "calm-b", &format!("b{i}")).await;
    }

    let dead = letters_for(&js, &["emptyobj", "number", "html"]).await;
    for (tenant, reason) in [
        ("emptyobj", "the answer has no \"replies\" field"),
        ("number", "\"replies\" is a number, not an array of strings"),
        ("html", "the answer is not JSON"),
    ] {
        let letter = &dead[tenant];
        assert_eq!(letter.code, "bot_failed", "{letter:?}");
        assert_eq!(
            letter.attempts, 1,
            "a broken answer is not retried: {letter:?}"
        );
        assert!(
            letter.last_error.contains("breaks the bot contract")
                && letter.last_error.contains(reason),
            "{tenant}: {letter:?}"
        );
    }
    replies_for(&js, &["calm-a", "calm-b"], 5).await;
    inbound_settled(&js).await;
    let all_letters = letters(&js).await;
    assert_eq!(
        all_letters.len(),
        3,
        "only the three broken answers: {all_letters:?}"
    );
    assert!(
        !traffic::replies_by_tenant(&js).await.contains_key("silent"),
        "an explicit empty list is no answer"
    );
    let calls = calls.lock().unwrap().clone();
    assert_eq!(
        calls.get("no-answer"),
        Some(&1),
        "the empty answer is acked, not retried: {calls:?}"
    );
    router.stop().await;
}

/// Peak resident memory of this process (which runs the router), in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}

/// Sets a flag when the response body is dropped (the client hung up or it ended).
struct Hangup(Arc<AtomicBool>);

impl Drop for Hangup {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// A bot endpoint that answers 200 with a `total`-byte body, streamed in
/// 64 KiB chunks without a `Content-Length`; counts the bytes handed to the
/// server to write and notices when the client hangs up.
async fn streaming_bot(total: u64) -> (String, Arc<AtomicU64>, Arc<AtomicBool>) {
    let written = Arc::new(AtomicU64::new(0));
    let hung_up = Arc::new(AtomicBool::new(false));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/flood", listener.local_addr().unwrap());
    let (counter, flag) = (Arc::clone(&written), Arc::clone(&hung_up));
    let chunk = bytes::Bytes::from(vec![b' '; 64 * 1024]);
    let app = axum::Router::new().route(
        "/flood",
        axum::routing::post(move || {
            let (counter, flag, chunk) = (Arc::clone(&counter), Arc::clone(&flag), chunk.clone());
            async move {
                let guard = Hangup(flag);
                let body = futures::stream::unfold((0u64, guard), move |(sent, guard)| {
                    let (counter, chunk) = (Arc::clone(&counter), chunk.clone());
                    async move {
                        if sent >= total {
                            return None;
                        }
                        counter.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                        Some((
                            Ok::<_, std::io::Error>(chunk.clone()),
                            (sent + chunk.len() as u64, guard),
                        ))
                    }
                });
                axum::body::Body::from_stream(body)
            }
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, written, hung_up)
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_bot_streaming_100_mb_is_cut_at_the_limit_and_quiet_tenants_are_unaffected(pool: PgPool) {
    const HUNDRED_MB: u64 = 100 * 1024 * 1024;
    let nats = NatsServer::start();
    let (flood_url, written, hung_up) = streaming_bot(HUNDRED_MB).await;
    add_tenant(&pool, "flood", BotKind::Http, http_bot(&flood_url)).await;
    let quiet = ["quiet-a", "quiet-b", "quiet-c"];
    for tenant in quiet {
        add_tenant(&pool, tenant, BotKind::Echo, serde_json::json!({})).await;
    }
    let env = services::env(&nats.url(), &services::database_url(&pool), &[]);
    let router = services::start_router(&env).await;
    let js = context(&nats).await;
    // Warm up (connections, streams) before the peak memory is taken.
    send(&js, "quiet-a", "warm").await;
    replies_for(&js, &["quiet-a"], 1).await;
    let peak_before = peak_rss();

    send(&js, "flood", "m1").await;
    for i in 0..5 {
        for tenant in quiet {
            send(&js, tenant, &format!("q{i}")).await;
        }
    }

    let dead = letters_for(&js, &["flood"]).await;
    let letter = &dead["flood"];
    assert_eq!(letter.code, "bot_failed", "{letter:?}");
    assert_eq!(letter.attempts, 1, "{letter:?}");
    assert!(
        letter.last_error.contains("larger than 262144 bytes"),
        "{letter:?}"
    );
    poll::until(
        "the flood endpoint to see the router hang up",
        Duration::from_secs(10),
        || async { hung_up.load(Ordering::SeqCst).then_some(()) },
    )
    .await;
    let sent = written.load(Ordering::SeqCst);
    eprintln!("the flood endpoint produced {sent} of {HUNDRED_MB} bytes before the router hung up");
    // The limit plus what the socket buffers on both sides hold.
    assert!(
        sent < 32 * 1024 * 1024,
        "the router read on past the limit: the endpoint produced {sent} bytes"
    );
    let grown = peak_rss().saturating_sub(peak_before);
    assert!(
        grown < 64 * 1024 * 1024,
        "the router's peak memory grew by {grown} bytes over one answer"
    );

    replies_for(&js, &quiet, 5).await;
    inbound_settled(&js).await;
    let all_letters = letters(&js).await;
    assert_eq!(all_letters.len(), 1, "only the flood: {all_letters:?}");
    router.stop().await;
}

/// A TCP listener that counts connections and closes each at once: any
/// connection at all means the guard let the router through.
async fn connection_counter() -> (u16, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(AtomicUsize::new(0));
    let counted = Arc::clone(&count);
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            drop(socket);
        }
    });
    (port, count)
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_router_refuses_every_internal_address_class_and_plain_http_by_default(pool: PgPool) {
    let nats = NatsServer::start();
    let (port, connections) = connection_counter().await;
    // Written straight to the table, past the CLI's check.
    let refused = [
        (
            "loopback",
            format!("https://127.0.0.1:{port}/bot"),
            "127.0.0.1 is a loopback address",
        ),
        (
            "named-loopback",
            format!("https://localhost:{port}/bot"),
            "localhost resolves to ",
        ),
        (
            "private",
            "https://10.20.30.40/bot".to_owned(),
            "10.20.30.40 is a private address",
        ),
        (
            "metadata",
            "https://169.254.169.254/latest/meta-data/".to_owned(),
            "169.254.169.254 is a cloud metadata address",
        ),
        (
            "link-local",
            "https://169.254.10.10/bot".to_owned(),
            "169.254.10.10 is a link-local address",
        ),
        (
            "multicast",
            "https://224.0.0.251/bot".to_owned(),
            "224.0.0.251 is a multicast address",
        ),
        (
            "plain-http",
            "http://bot.example/bot".to_owned(),
            "https is required",
        ),
    ];
    for (tenant, url, _) in &refused {
        add_tenant(&pool, tenant, BotKind::Http, http_bot(url)).await;
    }
    add_tenant(&pool, "calm", BotKind::Echo, serde_json::json!({})).await;
    // The production defaults: no allowlist, no plain http.
    let env = services::env(
        &nats.url(),
        &services::database_url(&pool),
        &[
            ("SWITCHYARD_BOT_ALLOW_HTTP", ""),
            ("SWITCHYARD_BOT_EGRESS_ALLOW", ""),
        ],
    );
    let router = services::start_router(&env).await;
    let js = context(&nats).await;
    for (tenant, _, _) in &refused {
        send(&js, tenant, "m1").await;
    }
    for i in 0..5 {
        send(&js, "calm", &format!("c{i}")).await;
    }

    let tenants: Vec<&str> = refused.iter().map(|(t, _, _)| *t).collect();
    let dead = letters_for(&js, &tenants).await;
    for (tenant, _, reason) in &refused {
        let letter = &dead[*tenant];
        assert_eq!(letter.code, "bot_failed", "{letter:?}");
        assert_eq!(
            letter.attempts, 1,
            "a refused URL is not retried: {letter:?}"
        );
        assert!(
            letter.last_error.contains("refused by the egress guard")
                && letter.last_error.contains(reason),
            "{tenant}: {letter:?}"
        );
    }
    assert!(
        dead["named-loopback"]
            .last_error
            .contains("a loopback address"),
        "refused when resolved, at connect time: {:?}",
        dead["named-loopback"]
    );
    replies_for(&js, &["calm"], 5).await;
    inbound_settled(&js).await;
    assert_eq!(
        connections.load(Ordering::SeqCst),
        0,
        "the router never connected to a refused address"
    );
    router.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn set_bot_refuses_each_egress_class_with_the_reason_and_changes_nothing(pool: PgPool) {
    cli_support::add_tenant(&pool, "acme", BotKind::Echo, serde_json::json!({})).await;
    let before = tenants::fetch(&pool, &t("acme")).await.unwrap();
    let env = cli_support::vars(&services::database_url(&pool), None, None);
    let strict = EgressPolicy::strict();
    for (url, reason) in [
        (
            "https://127.0.0.1:8222/varz",
            "127.0.0.1 is a loopback address",
        ),
        ("https://[::1]:9102/metrics", "::1 is a loopback address"),
        ("https://localhost:5432/", "localhost is a loopback name"),
        (
            "https://192.168.1.10/bot",
            "192.168.1.10 is a private address",
        ),
        ("https://10.0.0.7/bot", "10.0.0.7 is a private address"),
        (
            "https://169.254.169.254/latest/meta-data/",
            "169.254.169.254 is a cloud metadata address",
        ),
        ("https://[fe80::1]/bot", "fe80::1 is a link-local address"),
        (
            "https://224.0.0.251/bot",
            "224.0.0.251 is a multicast address",
        ),
        ("http://bot.example/hook", "https is required"),
    ] {
        let config = serde_json::json!({ "url": url }).to_string();
        let args = [
            "tenants", "set-bot", "acme", "--kind", "http", "--config", &config,
        ];
        let (exit, _) = cli_support::run(&args, &env).await;
        assert_eq!(exit, Exit::Usage, "{url}");
        let (exit, _) = cli_support::run(
            &[
                "tenants",
                "add",
                "other",
                "--bot",
                "http",
                "--bot-config",
                &config,
            ],
            &env,
        )
        .await;
        assert_eq!(exit, Exit::Usage, "{url}");
        // The reason the operator reads (the CLI prints it to stderr).
        let e = switchyard_cli::tenants::check_bot(
            BotKind::Http,
            &serde_json::json!({ "url": url }),
            &strict,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("refused bot URL") && e.to_string().contains(reason),
            "{url}: {e}"
        );
    }
    assert_eq!(
        tenants::fetch(&pool, &t("acme")).await.unwrap(),
        before,
        "nothing changed"
    );
    assert!(tenants::fetch(&pool, &t("other")).await.unwrap().is_none());

    // The operator allowlist and the development setting open what they name, no more.
    let mut open = env.clone();
    open.push((
        "SWITCHYARD_BOT_EGRESS_ALLOW".to_owned(),
        "10.0.0.0/8".to_owned(),
    ));
    open.push(("SWITCHYARD_BOT_ALLOW_HTTP".to_owned(), "true".to_owned()));
    for (url, exit) in [
        ("https://10.0.0.7/bot", Exit::Ok),
        ("http://bot.example/hook", Exit::Ok),
        ("https://192.168.1.10/bot", Exit::Usage),
        ("http://169.254.169.254/", Exit::Usage),
    ] {
        let config = serde_json::json!({ "url": url }).to_string();
        let (got, _) = cli_support::run(
            &[
                "tenants", "set-bot", "acme", "--kind", "http", "--config", &config,
            ],
            &open,
        )
        .await;
        assert_eq!(got, exit, "{url}");
    }
}

/// A bot endpoint answering `status` to every call.
async fn answering(status: u16) -> u16 {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let app = axum::Router::new()
        .fallback(move || async move { axum::http::StatusCode::from_u16(status).unwrap() });
    tokio::spawn(async move { axum::serve(listener, app).await });
    port
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_secret_in_a_bot_url_or_config_never_reaches_logs_dead_letters_debug_or_the_cli(
    pool: PgPool,
) {
    // Everything the router logs on this (current-thread) runtime lands here.
    let logs = LogBuffer::default();
    let _capture = logs.capture();
    const TOKEN: &str = "PLANTED-QUERY-TOKEN-7f3a";
    const PASSWORD: &str = "PLANTED-PASSWORD-91c2";
    const SIGNING_KEY: &str = "PLANTED-SIGNING-KEY-55d0";
    // base64 of SIGNING_KEY: the form the configuration stores.
    const SIGNING_B64: &str = "UExBTlRFRC1TSUdOSU5HLUtFWS01NWQw";
    let secrets = [TOKEN, PASSWORD, SIGNING_KEY, SIGNING_B64];

    let nats = NatsServer::start();
    let flaky = answering(503).await; // transient: logged on every retry
    let gone = answering(404).await; // permanent: dead-lettered at once
    let closed = {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap().port()
    }; // nothing listens: a connection error, retried
    let config = |port: u16| {
        serde_json::json!({
            "url": format!("http://bot:{PASSWORD}@127.0.0.1:{port}/bot?token={TOKEN}&v=1"),
            "signing_secret": format!("whsec_{SIGNING_B64}"),
            "timeout_ms": 2000,
        })
    };
    for (tenant, port) in [("flaky", flaky), ("gone", gone), ("closed", closed)] {
        add_tenant(&pool, tenant, BotKind::Http, config(port)).await;
    }
    let env = services::env(
        &nats.url(),
        &services::database_url(&pool),
        &[
            ("SWITCHYARD_MAX_DELIVERIES", "3"),
            ("SWITCHYARD_RETRY_DELAY", "20ms"),
        ],
    );
    let router = services::start_router(&env).await;
    let js = context(&nats).await;
    for tenant in ["flaky", "gone", "closed"] {
        send(&js, tenant, "m1").await;
    }
    let dead = letters_for(&js, &["flaky", "gone", "closed"]).await;
    assert_eq!(dead["gone"].code, "bot_failed", "{:?}", dead["gone"]);
    assert!(
        dead["gone"].last_error.contains(&format!(
            "bot answered 404 Not Found (endpoint http://[redacted]@127.0.0.1:{gone}/bot?[redacted])"
        )),
        "{:?}",
        dead["gone"]
    );
    router.stop().await;

    let mut exposed = Vec::new();
    // The log: the retries were logged, with the endpoint redacted.
    let log = logs.text();
    assert!(
        log.contains("transient failure; retrying in place")
            && log.contains(&format!("127.0.0.1:{flaky}/bot?[redacted]"))
            && log.contains(&format!("127.0.0.1:{closed}/bot?[redacted]")),
        "the scan must see the retries' log lines:\n{log}"
    );
    exposed.push(("router log", log));
    // Every header of every dead letter.
    for letter in letters(&js).await {
        exposed.push(("dead-letter headers", letter.headers.join("\n")));
    }
    // `Debug` of the tenant row and of its parsed configuration.
    for tenant in ["flaky", "gone", "closed"] {
        let row = tenants::fetch(&pool, &t(tenant)).await.unwrap().unwrap();
        assert!(format!("{row:?}").contains("127.0.0.1"), "{row:?}");
        exposed.push(("Tenant Debug", format!("{row:?} {row:#?}")));
        let parsed = BotConfig::parse(BotKind::Http, &row.bot_config).unwrap();
        exposed.push(("BotConfig Debug", format!("{parsed:?}")));
    }
    // The CLI: set-bot and show, as a table and as JSON, and list.
    let mut cli_env = cli_support::vars(&services::database_url(&pool), None, None);
    cli_env.push(("SWITCHYARD_BOT_ALLOW_HTTP".to_owned(), "true".to_owned()));
    cli_env.push((
        "SWITCHYARD_BOT_EGRESS_ALLOW".to_owned(),
        "127.0.0.1".to_owned(),
    ));
    let set = config(flaky).to_string();
    for json in [false, true] {
        let mut args = vec![];
        if json {
            args.push("--json");
        }
        let (exit, out) = cli_support::run(
            &[
                &args[..],
                &[
                    "tenants", "set-bot", "flaky", "--kind", "http", "--config", &set,
                ],
            ]
            .concat(),
            &cli_env,
        )
        .await;
        assert_eq!(exit, Exit::Ok, "{out}");
        assert!(out.contains("?[redacted]"), "{out}");
        exposed.push(("tenants set-bot", out));
        let (_, out) = cli_support::run(
            &[&args[..], &["tenants", "show", "gone"]].concat(),
            &cli_env,
        )
        .await;
        exposed.push(("tenants show", out));
        let (_, out) =
            cli_support::run(&[&args[..], &["tenants", "list"]].concat(), &cli_env).await;
        exposed.push(("tenants list", out));
    }

    for (place, text) in &exposed {
        for secret in &secrets {
            assert!(!text.contains(secret), "{place} shows {secret}:\n{text}");
        }
    }
}
