//! Tenant notifications (issue 21 point 3): a tenant's bridge state changes,
//! restrictions, stuck pairing and dead-lettered replies reach the tenant's
//! own URL as Standard Webhooks events signed with the secret the CLI printed,
//! at least once, retried with the same `webhook-id`, and one tenant's
//! hanging endpoint does not hold up another tenant's notifications. Whole
//! pipeline where the fact comes from the provider (a `disconnected` webhook
//! through ingest and the router; a reply the provider refuses); the stuck
//! and retry cases publish or arrange the fact directly.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use axum::http::{HeaderMap, StatusCode};
use clap::Parser as _;
use secrecy::SecretString;
use sqlx::PgPool;
use switchyard_bridge_sim::faults::Fault;
use switchyard_cli::{
    Cli, Command, context::Context, exit::Exit, output::Output, tenants::TenantsCommand,
};
use switchyard_shared::{
    config::Env,
    ids::TenantId,
    lanes::dead_letter::DeadLetterCode,
    notifications::{self, Notification, NotificationEvent, ReportSource},
    standard_webhooks::{DEFAULT_TOLERANCE, SigningSecret},
    subjects::{self, Direction},
};
use switchyard_tests::{poll, traffic};

use crate::{
    cli_support,
    log_capture::LogBuffer,
    whatsapp_support::{Rig, WITHIN, t},
};

/// How a test receiver answers.
#[derive(Clone, Copy)]
enum Answer {
    /// 200 to everything.
    Ok,
    /// 500 to the first `n` requests, then 200.
    FailFirst(usize),
    /// 500 to everything.
    Fail,
    /// Never answers.
    Hang,
}

/// One request a receiver got.
#[derive(Clone, Debug)]
struct Received {
    id: String,
    timestamp: String,
    signature: String,
    body: Vec<u8>,
    at: Instant,
}

impl Received {
    fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap()
    }

    /// Whether `secret` (as the CLI printed it) signed this request.
    fn signed_by(&self, secret: &str) -> bool {
        let key = SigningSecret::parse(&SecretString::from(secret.to_owned())).unwrap();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        key.verify(
            Some(&self.id),
            Some(&self.timestamp),
            Some(&self.signature),
            &self.body,
            now,
            DEFAULT_TOLERANCE,
        )
        .is_ok()
    }
}

/// A tenant's notification endpoint, started by the test.
#[derive(Clone)]
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    async fn start(answer: Answer) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks/switchyard", listener.local_addr().unwrap());
        let got: Arc<Mutex<Vec<Received>>> = Arc::default();
        let seen = Arc::clone(&got);
        let app = axum::Router::new().route(
            "/hooks/switchyard",
            axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
                let seen = Arc::clone(&seen);
                async move {
                    let header = |name: &str| {
                        headers
                            .get(name)
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_owned()
                    };
                    let n = {
                        let mut seen = seen.lock().unwrap();
                        seen.push(Received {
                            id: header("webhook-id"),
                            timestamp: header("webhook-timestamp"),
                            signature: header("webhook-signature"),
                            body: body.to_vec(),
                            at: Instant::now(),
                        });
                        seen.len()
                    };
                    match answer {
                        Answer::Ok => StatusCode::OK,
                        Answer::FailFirst(k) if n > k => StatusCode::OK,
                        Answer::FailFirst(_) | Answer::Fail => StatusCode::INTERNAL_SERVER_ERROR,
                        Answer::Hang => std::future::pending().await,
                    }
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self { url, got }
    }

    fn got(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until a request of notification type `kind` arrived.
    async fn wait_for(&self, kind: &str) -> Received {
        poll::until(&format!("a {kind} notification"), WITHIN, || async {
            self.got().into_iter().find(|r| r.json()["type"] == kind)
        })
        .await
    }
}

/// The CLI's environment: this rig's database and NATS, http to loopback
/// allowed (the test receivers), as in development.
fn cli_env(rig: &Rig) -> Vec<(String, String)> {
    let mut vars = cli_support::vars(&rig.db_url, Some(&rig.nats.url()), None);
    vars.push(("SWITCHYARD_BOT_ALLOW_HTTP".to_owned(), "true".to_owned()));
    vars.push((
        "SWITCHYARD_BOT_EGRESS_ALLOW".to_owned(),
        "127.0.0.1".to_owned(),
    ));
    vars
}

/// `tenants notify <tenant> --url <url>`; returns the secret it printed once.
async fn notify_to(rig: &Rig, tenant: &str, url: &str) -> String {
    let (exit, out) =
        cli_support::run_json(&["tenants", "notify", tenant, "--url", url], &cli_env(rig)).await;
    assert_eq!(exit, Exit::Ok, "{out}");
    assert_eq!(out["notifications"], true, "{out}");
    let secret = out["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"), "{secret}");
    secret
}

/// Publishes a notification for `tenant` as the pipeline would.
async fn publish(rig: &Rig, tenant: &str, event: NotificationEvent, fact: &str) -> Notification {
    let n = Notification::new(t(tenant), time::OffsetDateTime::now_utc(), event, fact);
    assert!(notifications::publish(&rig.js, &n).await);
    n
}

/// Senders in these tests retry notifications quickly.
const FAST_RETRIES: &[(&str, &str)] = &[
    ("SWITCHYARD_NOTIFY_RETRY_MIN", "50ms"),
    ("SWITCHYARD_NOTIFY_RETRY_MAX", "200ms"),
];

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_bridge_disconnect_reaches_only_its_own_tenants_url_signed_with_its_secret(pool: PgPool) {
    let rig = Rig::start(&pool, &["alpha", "beta"]).await;
    let (to_alpha, to_beta) = (
        Receiver::start(Answer::Ok).await,
        Receiver::start(Answer::Ok).await,
    );
    // Both numbers were paired long ago (a reconnection is a re-pairing).
    sqlx::query("UPDATE tenants SET paired_at = now() - interval '30 days'")
        .execute(&pool)
        .await
        .unwrap();
    let alpha_secret = notify_to(&rig, "alpha", &to_alpha.url).await;
    let beta_secret = notify_to(&rig, "beta", &to_beta.url).await;
    let router = rig.router(&[]).await;
    let sender = rig.sender(FAST_RETRIES).await;

    // alpha's session drops: the provider's `disconnected` webhook.
    rig.sim.set_connected("alpha", false, true).await.unwrap();
    let told = to_alpha.wait_for("bridge.disconnected").await;
    // Then beta's, so alpha's endpoint has had every chance to get beta's.
    rig.sim.set_connected("beta", false, true).await.unwrap();
    let beta_told = to_beta.wait_for("bridge.disconnected").await;

    assert!(told.signed_by(&alpha_secret), "{told:?}");
    assert!(
        !told.signed_by(&beta_secret),
        "signed with another tenant's secret"
    );
    assert!(beta_told.signed_by(&beta_secret), "{beta_told:?}");
    let body = told.json();
    assert_eq!(body["tenant"], "alpha", "{body}");
    assert_eq!(body["data"]["source"], "webhook", "{body}");
    assert!(body["timestamp"].is_string(), "{body}");
    for r in to_alpha.got() {
        assert_eq!(
            r.json()["tenant"],
            "alpha",
            "beta's notification at alpha's URL: {r:?}"
        );
    }
    for r in to_beta.got() {
        assert_eq!(
            r.json()["tenant"],
            "beta",
            "alpha's notification at beta's URL: {r:?}"
        );
    }
    // Once (or again with the same webhook-id: at least once, deduplicable).
    let ids: Vec<String> = to_alpha.got().into_iter().map(|r| r.id).collect();
    assert!(ids.iter().all(|id| *id == told.id), "{ids:?}");

    // Back again: `bridge.repaired`.
    rig.sim.set_connected("alpha", true, true).await.unwrap();
    let repaired = to_alpha.wait_for("bridge.repaired").await;
    assert!(repaired.signed_by(&alpha_secret));
    assert_eq!(repaired.json()["data"]["first_pairing"], false);
    sender.stop().await;
    router.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_receiver_answering_500_then_200_gets_retries_with_the_same_webhook_id(pool: PgPool) {
    let rig = Rig::start(&pool, &["alpha"]).await;
    let flaky = Receiver::start(Answer::FailFirst(2)).await;
    let secret = notify_to(&rig, "alpha", &flaky.url).await;
    let sender = rig.sender(FAST_RETRIES).await;

    let sent = publish(
        &rig,
        "alpha",
        NotificationEvent::BridgeDisconnected {
            source: ReportSource::Watchdog,
        },
        "retry-1",
    )
    .await;
    rig.counter_reaches(
        &sender,
        "switchyard_sender_notifications_total",
        "outcome=\"delivered\"",
        1.0,
    )
    .await;

    let got = flaky.got();
    assert_eq!(got.len(), 3, "two 500s, then the 200: {got:?}");
    for r in &got {
        assert_eq!(r.id, sent.id(), "every attempt carries the same webhook-id");
        assert!(r.signed_by(&secret), "{r:?}");
    }
    let failed = traffic::metric(
        sender.ops_addr,
        "switchyard_sender_notifications_total",
        "outcome=\"failed\"",
    )
    .await;
    assert_eq!(failed, 2.0);
    sender.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn one_tenants_hanging_endpoint_does_not_delay_another_tenants_notification(pool: PgPool) {
    let rig = Rig::start(&pool, &["stuck", "fine"]).await;
    let hanging = Receiver::start(Answer::Hang).await;
    let prompt = Receiver::start(Answer::Ok).await;
    notify_to(&rig, "stuck", &hanging.url).await;
    notify_to(&rig, "fine", &prompt.url).await;
    let sender = rig.sender(FAST_RETRIES).await;

    // The hanging tenant's notifications go first and pile up behind its endpoint.
    for i in 0..3 {
        publish(
            &rig,
            "stuck",
            NotificationEvent::BridgeRestricted,
            &format!("hang-{i}"),
        )
        .await;
    }
    poll::until("the hanging endpoint is being called", WITHIN, || async {
        (!hanging.got().is_empty()).then_some(())
    })
    .await;
    let published = Instant::now();
    publish(&rig, "fine", NotificationEvent::BridgeRestricted, "fine-1").await;
    let arrived = prompt.wait_for("bridge.restricted").await;

    let delay = arrived.at.duration_since(published);
    // The hanging endpoint holds its lane for the whole 10 s request timeout.
    assert!(
        delay < Duration::from_secs(3),
        "fine's notification took {delay:?} behind stuck's hanging endpoint"
    );
    assert_eq!(hanging.got().len(), 1, "one request at a time per tenant");
    sender.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_reply_the_provider_refuses_is_dead_lettered_and_its_tenant_told(pool: PgPool) {
    let rig = Rig::start(&pool, &["alpha"]).await;
    let to_alpha = Receiver::start(Answer::Ok).await;
    let secret = notify_to(&rig, "alpha", &to_alpha.url).await;
    let sender = rig.sender(FAST_RETRIES).await;
    rig.sim
        .set_fault(
            "alpha",
            Fault::Reject {
                status: 400,
                message: "invalid recipient".into(),
            },
            None,
        )
        .unwrap();

    rig.replies("alpha", "dl", "15550009999@s.whatsapp.net", 1)
        .await;
    let told = to_alpha.wait_for("reply.dead_lettered").await;

    assert!(told.signed_by(&secret));
    let body = told.json();
    assert_eq!(body["tenant"], "alpha");
    assert_eq!(
        body["data"]["reason"],
        DeadLetterCode::Rejected.as_str(),
        "{body}"
    );
    let letters = traffic::dead_letters(&rig.js, Direction::Outbound).await;
    assert_eq!(letters.len(), 1, "{letters:?}");
    assert!(
        body["data"]["reply_id"].as_str().unwrap().contains("dl"),
        "{body}"
    );
    assert!(
        !String::from_utf8_lossy(&told.body).contains("alpha:dl:00000"),
        "the reply's text is not part of the notification: {body}"
    );
    sender.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_restricted_number_and_a_stuck_pairing_are_told_once(pool: PgPool) {
    let rig = Rig::start(&pool, &["alpha", "pending"]).await;
    let to_alpha = Receiver::start(Answer::Ok).await;
    let to_pending = Receiver::start(Answer::Ok).await;
    notify_to(&rig, "alpha", &to_alpha.url).await;
    notify_to(&rig, "pending", &to_pending.url).await;
    // `pending` was provisioned two days ago and nobody scanned its QR.
    sqlx::query(
        "UPDATE tenants SET bridge_state = 'running', bridge_state_at = now() - interval '2 days' \
         WHERE id = 'pending'",
    )
    .execute(&pool)
    .await
    .unwrap();
    rig.sim
        .set_fault(
            "alpha",
            Fault::Restricted {
                status: 403,
                message: "this number is restricted by WhatsApp".into(),
            },
            None,
        )
        .unwrap();
    let sender = rig
        .sender(
            &[
                FAST_RETRIES,
                &[
                    ("SWITCHYARD_NOTIFY_STUCK_AFTER", "1h"),
                    ("SWITCHYARD_NOTIFY_STUCK_INTERVAL", "100ms"),
                ],
            ]
            .concat(),
        )
        .await;

    rig.replies("alpha", "r", "15550008888@s.whatsapp.net", 3)
        .await;
    let restricted = to_alpha.wait_for("bridge.restricted").await;
    let stuck = to_pending.wait_for("pairing.stuck").await;

    assert_eq!(restricted.json()["tenant"], "alpha");
    let body = stuck.json();
    assert_eq!(body["data"]["kind"], "awaiting_pairing", "{body}");
    assert!(
        body["data"]["for_seconds"].as_u64().unwrap() >= 2 * 86_400 - 60,
        "{body}"
    );
    // The episode is recorded as told, so later rounds (every 100 ms) skip it.
    poll::until("the stuck episode recorded as told", WITHIN, || async {
        let told: Option<time::OffsetDateTime> = sqlx::query_scalar(
            "SELECT stuck_notified_for FROM tenant_notifications WHERE tenant_id = 'pending'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        told.map(|_| ())
    })
    .await;
    // A later notification of another tenant has come and gone meanwhile:
    // by then the stuck check has run many more rounds.
    publish(&rig, "alpha", NotificationEvent::BridgeRestricted, "later").await;
    poll::until("alpha's later notification", WITHIN, || async {
        (to_alpha.got().len() >= 2).then_some(())
    })
    .await;
    let stuck_told = to_pending
        .got()
        .into_iter()
        .filter(|r| r.json()["type"] == "pairing.stuck")
        .count();
    assert_eq!(stuck_told, 1, "one pairing.stuck per episode");
    // Every `bridge.restricted` alpha got: the one its send met, and the
    // test's own later one; a second restricted send (each attempt has an id
    // of its own) would make it three.
    let restricted_told = to_alpha
        .got()
        .into_iter()
        .filter(|r| r.json()["type"] == "bridge.restricted")
        .count();
    assert_eq!(restricted_told, 2, "the hold stops the sends: told once");
    sender.stop().await;
}

/// Runs `tenants notify <args>` expecting a refusal (exit 2); its message.
async fn notify_refusal(args: &[&str], vars: &[(String, String)]) -> String {
    let argv = [&["switchyard", "tenants", "notify"][..], args].concat();
    let cli = Cli::try_parse_from(argv).unwrap();
    let Command::Tenants(TenantsCommand::Notify(args)) = cli.command else {
        panic!("not tenants notify");
    };
    let mut out = Output::new(false, Box::new(std::io::sink()));
    let ctx = Context::new(Env::from_map(vars.to_vec()));
    let error = switchyard_cli::notify::run(args, &ctx, &mut out)
        .await
        .unwrap_err();
    assert_eq!(error.exit(), Exit::Usage, "{error}");
    error.to_string()
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn malformed_or_oversized_notify_flags_get_a_clear_error_and_change_nothing(pool: PgPool) {
    let rig = Rig::start(&pool, &["alpha"]).await;
    // Production egress rules: https only, no internal address.
    let strict = cli_support::vars(&rig.db_url, Some(&rig.nats.url()), None);
    let long = format!("https://hooks.example/{}", "a".repeat(2100));
    let cases: &[(&[&str], &str)] = &[
        (
            &["--url", "ftp://hooks.example/x"],
            "scheme \"ftp\" is not allowed",
        ),
        (
            &["--url", "http://hooks.example/x"],
            "plain http is not allowed",
        ),
        (&["--url", "https://10.1.2.3/x"], "private address"),
        (
            &["--url", "https://169.254.169.254/latest"],
            "cloud metadata",
        ),
        (&["--url", "https://localhost/x"], "loopback name"),
        (&["--url", "not a url"], "not a valid URL"),
        (&["--url", &long], "longer than 2048 characters"),
        (&["--url", "https://hooks.example/\n"], "control characters"),
        (&["--rotate-secret"], "notifications of alpha are off"),
    ];
    for (flags, expected) in cases {
        let args = [&["alpha"][..], flags].concat();
        let error = notify_refusal(&args, &strict).await;
        assert!(
            error.contains(expected),
            "{flags:?}: expected {expected:?} in {error}"
        );
    }
    let error = notify_refusal(&["nobody", "--url", "https://hooks.example/x"], &strict).await;
    assert!(error.contains("unknown tenant nobody"), "{error}");
    // Flags that contradict each other, or none: refused by the parser.
    for args in [
        &["switchyard", "tenants", "notify", "alpha"][..],
        &[
            "switchyard",
            "tenants",
            "notify",
            "alpha",
            "--off",
            "--url",
            "https://hooks.example/x",
        ],
        &["switchyard", "tenants", "notify", "ALPHA!", "--off"],
    ] {
        assert!(Cli::try_parse_from(args).is_err(), "{args:?} parsed");
    }
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM tenant_notifications")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 0, "a refused command stored something");

    // A good URL, then a rotation: a new secret, printed once; then off.
    let (exit, first) = cli_support::run_json(
        &[
            "tenants",
            "notify",
            "alpha",
            "--url",
            "https://hooks.example/x?token=T0K3N",
        ],
        &strict,
    )
    .await;
    assert_eq!(exit, Exit::Ok, "{first}");
    assert_eq!(
        first["url"], "https://hooks.example/x?[redacted]",
        "{first}"
    );
    let (_, again) = cli_support::run_json(
        &[
            "tenants",
            "notify",
            "alpha",
            "--url",
            "https://hooks.example/y",
        ],
        &strict,
    )
    .await;
    assert!(
        again["secret"].is_null(),
        "a URL change keeps (and hides) the secret: {again}"
    );
    let (_, rotated) =
        cli_support::run_json(&["tenants", "notify", "alpha", "--rotate-secret"], &strict).await;
    assert_ne!(rotated["secret"], first["secret"]);
    assert!(rotated["secret"].as_str().unwrap().starts_with("whsec_"));
    let (_, shown) = cli_support::run_json(&["tenants", "show", "alpha"], &strict).await;
    assert_eq!(shown["notifications"], true, "{shown}");
    let (exit, off) =
        cli_support::run_json(&["tenants", "notify", "alpha", "--off"], &strict).await;
    assert_eq!(exit, Exit::Ok);
    assert_eq!(off["notifications"], false);
    let (_, listed) = cli_support::run(&["tenants", "list"], &strict).await;
    assert!(listed.contains("notify"), "{listed}");
    let (_, shown) = cli_support::run_json(&["tenants", "show", "alpha"], &strict).await;
    assert_eq!(shown["notifications"], false, "{shown}");
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_signing_secret_never_reaches_logs_dead_letters_or_the_cli_after_it_is_printed(
    pool: PgPool,
) {
    // Every line the sender writes on this (current-thread) runtime, debug included.
    let logs = LogBuffer::default();
    let _capture = tracing::subscriber::set_default(
        tracing_subscriber::fmt()
            .with_writer(logs.clone())
            .with_ansi(false)
            .with_max_level(tracing::Level::DEBUG)
            .finish(),
    );
    let rig = Rig::start(&pool, &["alpha"]).await;
    let failing = Receiver::start(Answer::Fail).await;
    let secret = notify_to(&rig, "alpha", &failing.url).await;
    let key = secret.trim_start_matches("whsec_").to_owned();
    let sender = rig
        .sender(&[FAST_RETRIES, &[("SWITCHYARD_NOTIFY_MAX_ATTEMPTS", "3")]].concat())
        .await;

    publish(
        &rig,
        "alpha",
        NotificationEvent::BridgeRestricted,
        "never-taken",
    )
    .await;
    let letter = poll::until("the notification's dead letter", WITHIN, || async {
        traffic::dead_letters(&rig.js, Direction::Notify)
            .await
            .into_iter()
            .next()
    })
    .await;
    assert_eq!(
        letter,
        (
            "alpha".to_owned(),
            DeadLetterCode::NotificationUndelivered.as_str().to_owned(),
            3
        )
    );
    sender.stop().await;

    let mut exposed = vec![("sender log", logs.text())];
    assert!(
        exposed[0]
            .1
            .contains("notification not delivered; retrying"),
        "the scan must see the retries' log lines:\n{}",
        exposed[0].1
    );
    let stored = traffic::read_stream(&rig.js, subjects::DLQ_STREAM, "dlq.notify.*").await;
    exposed.push(("dead letter", format!("{stored:?}")));
    for args in [
        &["tenants", "show", "alpha"][..],
        &["tenants", "list"],
        &["--json", "tenants", "show", "alpha"],
        &["--json", "tenants", "list"],
        &["dlq", "list", "--tenant", "alpha"],
    ] {
        let (_, out) = cli_support::run(args, &cli_env(&rig)).await;
        exposed.push(("cli", out));
    }
    let target = notifications::target::fetch(&pool, &TenantId::parse("alpha").unwrap())
        .await
        .unwrap()
        .unwrap();
    exposed.push(("NotifyTarget Debug", format!("{target:?} {target:#?}")));
    for (place, text) in &exposed {
        assert!(
            !text.contains(&key),
            "the signing secret is in the {place}:\n{text}"
        );
    }
    assert_eq!(failing.got().len(), 3, "the attempt limit");
}
