//! One webhook is one trace: ingest, router and sender run as processes of
//! their own (as deployed), export their spans over OTLP/HTTP to a stand-in
//! collector, and carry the W3C context across both NATS hops. The trace
//! holds a span of every service, each a child of the one before, with the
//! tenant on each; every service's JSON log line written in it names it.

use std::{path::Path, time::Duration};

use sqlx::PgPool;
use switchyard_shared::{ids::TenantId, tenants::BotKind, webhook_auth::WebhookKeys};
use switchyard_tests::{
    chaos::replica::{Replica, Role},
    fixtures,
    nats_server::NatsServer,
    otlp_collector::{Collector, ReceivedSpan},
    poll, services,
};

const SECRET: &str = "traces-webhook-secret";
/// The caller's own trace: ingest's span must join it.
const CALLER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn one_webhook_is_one_trace_through_ingest_router_and_sender(db: PgPool) {
    let collector = Collector::start().await;
    let nats = NatsServer::start();
    let sim = fixtures::start_sim().await;
    let logs = tempfile::tempdir().unwrap();
    let db_url = services::database_url(&db);
    let env: Vec<(String, String)> = [
        ("NATS_URL", nats.url().as_str()),
        ("DATABASE_URL", db_url.as_str()),
        ("SWITCHYARD_PARTITIONS", "4"),
        ("SWITCHYARD_WEBHOOK_SECRET", SECRET),
        ("WA_API_URL", sim.base_url().as_str()),
        ("WA_API_KEY", fixtures::SIM_API_KEY),
        ("SWITCHYARD_LOG_FORMAT", "json"),
        // The lines written inside each service's step are at debug.
        ("SWITCHYARD_LOG", "warn,switchyard_ingest=debug,switchyard_router=debug,switchyard_shared::wabridges=debug"),
        ("OTEL_EXPORTER_OTLP_ENDPOINT", collector.endpoint().as_str()),
        // The SDK's own batch setting: export within 100 ms, not 5 s.
        ("OTEL_BSP_SCHEDULE_DELAY", "100"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let program = Path::new(env!("CARGO_BIN_EXE_switchyard-chaos"));
    let start = |role| Replica::start(program, role, 0, env.clone(), logs.path());
    let ingest = start(Role::Ingest).await.expect("ingest");
    let router = start(Role::Router).await.expect("router");
    let sender = start(Role::Sender).await.expect("sender");
    let base = ingest.ingest_base().unwrap();
    let hook =
        WebhookKeys::new(SECRET.into(), None).webhook_url(&base, &TenantId::parse("acme").unwrap());
    fixtures::add_tenant_with_bridge_posting_to(&db, &sim, "acme", &hook, |new| {
        new.bot_kind = BotKind::Echo;
    })
    .await;

    let answer = reqwest::Client::new()
        .post(&hook)
        .header("traceparent", format!("00-{CALLER_TRACE}-{CALLER_SPAN}-01"))
        .body(message("TRACE-1"))
        .send()
        .await
        .unwrap();
    assert!(answer.status().is_success(), "{}", answer.status());

    let wanted = [
        "ingest.webhook",
        "router.step",
        "sender.deliver",
        "wabridges.send",
    ];
    let trace = poll::until(
        "the whole trace at the collector",
        Duration::from_secs(60),
        || {
            let spans: Vec<ReceivedSpan> = collector
                .spans()
                .into_iter()
                .filter(|s| s.trace_id == CALLER_TRACE)
                .collect();
            let found: Option<Vec<ReceivedSpan>> = wanted
                .iter()
                .map(|name| spans.iter().find(|s| s.name == *name).cloned())
                .collect();
            async move { found }
        },
    )
    .await;
    let [webhook, step, deliver, call] = &trace[..] else {
        unreachable!("four names were looked for")
    };

    let services: Vec<&str> = trace.iter().map(|s| s.service.as_str()).collect();
    assert_eq!(
        services,
        [
            "switchyard-ingest",
            "switchyard-router",
            "switchyard-sender",
            "switchyard-sender"
        ]
    );
    assert_eq!(
        webhook.parent_span_id, CALLER_SPAN,
        "ingest joins the caller's trace"
    );
    assert_eq!(
        step.parent_span_id, webhook.span_id,
        "router step under the webhook"
    );
    assert_eq!(
        deliver.parent_span_id, step.span_id,
        "delivery under the router step"
    );
    assert_eq!(
        call.parent_span_id, deliver.span_id,
        "provider call under the delivery"
    );
    for span in &trace {
        assert_eq!(span.attribute("tenant.id"), Some("acme"), "{span:?}");
    }
    for span in [webhook, step, deliver] {
        assert_eq!(
            span.attribute("event.id").map(|e| e.ends_with("TRACE-1")),
            Some(true),
            "{span:?}"
        );
    }
    assert_eq!(sim.sends_for("acme").len(), 1, "the reply was sent");

    for replica in [&ingest, &router, &sender] {
        let log = std::fs::read_to_string(replica.log_path()).unwrap();
        let traced = log
            .lines()
            .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
            .filter(|line| line["trace_id"] == CALLER_TRACE)
            .count();
        assert!(
            traced > 0,
            "{replica:?} wrote no JSON line naming the trace:\n{log}"
        );
    }
}

fn message(id: &str) -> String {
    format!(
        r#"{{"event":"message","message_id":"{id}","contact_id":"15550001234@s.whatsapp.net","phone":"15550001234","chat_id":"15550001234@s.whatsapp.net","name":"Alice","body":"hi","type":"text","media_type":"","is_group":false,"from_me":false,"timestamp":1777180605}}"#
    )
}
