//! The NATS users and permissions we ship (`deploy/nats/permissions.conf`)
//! against a real nats-server 2.15.1: a service connects only with its own
//! credentials, is refused (and nothing is stored) wherever it must not
//! publish or read, and the whole pipeline runs with every service on its
//! own user without a single permission violation.

use std::time::Duration;

use async_nats::jetstream::{self, consumer::pull};
use sqlx::PgPool;
use switchyard_bridge_sim::events::TextMessage;
use switchyard_shared::{
    config::{Env, NatsSettings},
    nats, streams, subjects,
};
use switchyard_tests::{
    nats_server::{NatsServer, SERVICE_USERS, service_credentials, service_password},
    pipeline::{Pipeline, TenantSpec},
};

fn settings(url: &str, credentials: &[(String, String)]) -> NatsSettings {
    let mut vars = vec![("NATS_URL".to_owned(), url.to_owned())];
    vars.extend(credentials.iter().cloned());
    NatsSettings::from_env(&Env::from_map(vars)).unwrap()
}

/// A JetStream context of `user`, connected through the services' own path.
async fn as_user(server: &NatsServer, user: &str) -> jetstream::Context {
    let settings = settings(&server.url(), &service_credentials(user));
    let client = nats::connect(&settings, user)
        .await
        .unwrap_or_else(|e| panic!("{user} connects: {e}"));
    // A refused publish is never acknowledged: wait for the ack briefly.
    streams::context(client, Duration::from_secs(2))
}

/// Messages stored in `stream`, read as the CLI (operator) user.
async fn stored(cli: &jetstream::Context, stream: &str) -> u64 {
    cli.get_stream(stream)
        .await
        .unwrap()
        .info()
        .await
        .unwrap()
        .state
        .messages
}

async fn published(js: &jetstream::Context, subject: &str) -> bool {
    match js.publish(subject.to_owned(), "x".into()).await {
        Ok(ack) => ack.await.is_ok(),
        Err(_) => false,
    }
}

#[tokio::test]
async fn anonymous_and_wrong_password_clients_are_refused() {
    let server = NatsServer::start_with_permissions();
    let err = nats::connect(&settings(&server.url(), &[]), "anonymous")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
    let wrong = [
        ("NATS_USER".to_owned(), "router".to_owned()),
        ("NATS_PASSWORD".to_owned(), "not-the-password".to_owned()),
    ];
    let err = nats::connect(&settings(&server.url(), &wrong), "impostor")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
    // The password never shows in the error.
    assert!(!err.to_string().contains("not-the-password"), "{err}");
}

#[tokio::test]
async fn each_service_publishes_only_where_it_must() {
    publishes_only_where_it_must(&NatsServer::start_with_permissions()).await;
}

/// The users of `deploy/k8s/nats-values.yaml` (`config.merge.authorization`)
/// as the nats Helm chart writes them into the server's configuration: JSON,
/// with `"<< $VAR >>"` unquoted into a variable reference.
fn helm_authorization() -> String {
    let path = switchyard_tests::repo_root().join("deploy/k8s/nats-values.yaml");
    let text = std::fs::read_to_string(&path).unwrap();
    let values: serde_yaml::Value = serde_yaml::from_str(&text).unwrap();
    let merge = serde_json::to_value(&values["config"]["merge"]).unwrap();
    let json = serde_json::to_string_pretty(&merge).unwrap();
    // The chart's `"<<\s+(.*?)\s+>>"` → `$1`.
    let mut out = String::new();
    let mut rest = json.as_str();
    while let Some(start) = rest.find("\"<< ") {
        let end = rest[start..].find(" >>\"").expect("closed") + start;
        out.push_str(&rest[..start]);
        out.push_str(&rest[start + 4..end]);
        rest = &rest[end + 4..];
    }
    out.push_str(rest);
    // The chart's config is one JSON object: its keys, as top-level keys.
    let body = out
        .trim()
        .strip_prefix('{')
        .unwrap()
        .strip_suffix('}')
        .unwrap();
    let mut config = String::new();
    for user in SERVICE_USERS {
        config.push_str(&format!(
            "SY_NATS_{}_PASSWORD: \"{}\"\n",
            user.to_ascii_uppercase(),
            service_password(user)
        ));
    }
    config.push_str(body);
    config
}

/// The Helm values' copy of the users is not only equal on paper
/// (deploy_manifests compares it with permissions.conf): rendered as the
/// chart renders it, a real server loads it and refuses the same publishes.
#[tokio::test]
async fn the_helm_values_users_refuse_what_permissions_conf_refuses() {
    let config = helm_authorization();
    assert!(
        config.contains("\"password\": $SY_NATS_INGEST_PASSWORD"),
        "{config}"
    );
    let server = NatsServer::start_with_config(config);
    let err = nats::connect(&settings(&server.url(), &[]), "anonymous")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot connect"), "{err}");
    publishes_only_where_it_must(&server).await;
}

async fn publishes_only_where_it_must(server: &NatsServer) {
    let cli = as_user(server, "cli").await;
    let nats_settings = settings(&server.url(), &service_credentials("cli"));
    streams::ensure_streams(&cli, &nats_settings).await.unwrap();

    // (user, subject, stream it would land in, allowed?)
    let cases = [
        ("ingest", "inbound.acme", subjects::INBOUND_STREAM, true),
        ("ingest", "outbound.acme", subjects::OUTBOUND_STREAM, false),
        ("ingest", "bulk.acme", subjects::BULK_STREAM, false),
        ("ingest", "dlq.inbound.acme", subjects::DLQ_STREAM, false),
        (
            "ingest",
            "spill.inbound.acme",
            subjects::SPILL_STREAM,
            false,
        ),
        ("router", "outbound.acme", subjects::OUTBOUND_STREAM, true),
        ("router", "bulk.acme", subjects::BULK_STREAM, true),
        ("router", "dlq.inbound.acme", subjects::DLQ_STREAM, true),
        ("router", "spill.inbound.acme", subjects::SPILL_STREAM, true),
        ("router", "inbound.acme", subjects::INBOUND_STREAM, false),
        ("router", "dlq.outbound.acme", subjects::DLQ_STREAM, false),
        (
            "router",
            "spill.outbound.acme",
            subjects::SPILL_STREAM,
            false,
        ),
        ("sender", "dlq.outbound.acme", subjects::DLQ_STREAM, true),
        (
            "sender",
            "spill.outbound.acme",
            subjects::SPILL_STREAM,
            true,
        ),
        ("sender", "inbound.acme", subjects::INBOUND_STREAM, false),
        ("sender", "outbound.acme", subjects::OUTBOUND_STREAM, false),
        ("sender", "bulk.acme", subjects::BULK_STREAM, false),
        ("sender", "dlq.inbound.acme", subjects::DLQ_STREAM, false),
        (
            "sender",
            "spill.inbound.acme",
            subjects::SPILL_STREAM,
            false,
        ),
    ];
    let mut failures = Vec::new();
    for (user, subject, stream, allowed) in cases {
        let js = as_user(server, user).await;
        let before = stored(&cli, stream).await;
        let ok = published(&js, subject).await;
        let after = stored(&cli, stream).await;
        let stored_one = after == before + 1;
        if ok != allowed || stored_one != allowed {
            failures.push(format!(
                "{user} on {subject}: acknowledged {ok}, stored {stored_one}, expected {allowed}"
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
    let log = server.log();
    assert!(
        log.contains("Publish Violation") && log.contains("\"outbound.acme\""),
        "the server logs the refusals:\n{log}"
    );
}

#[tokio::test]
async fn a_service_reads_and_manages_only_its_own_streams_and_buckets() {
    let server = NatsServer::start_with_permissions();
    let cli = as_user(&server, "cli").await;
    let nats_settings = settings(&server.url(), &service_credentials("cli"));
    streams::ensure_streams(&cli, &nats_settings).await.unwrap();
    let consumer = |name: &str| pull::Config {
        durable_name: Some(name.to_owned()),
        ..Default::default()
    };
    let quick = Duration::from_secs(2);

    // ingest reads nothing: no consumer on INBOUND.
    let ingest = as_user(&server, "ingest").await;
    let inbound = ingest.get_stream(subjects::INBOUND_STREAM).await.unwrap();
    let refused = tokio::time::timeout(quick, inbound.create_consumer(consumer("snoop"))).await;
    assert!(!matches!(refused, Ok(Ok(_))), "ingest created a consumer");

    // The sender cannot read inbound, the router cannot read outbound.
    let sender = as_user(&server, "sender").await;
    let inbound = sender.get_stream(subjects::INBOUND_STREAM).await.unwrap();
    let refused = tokio::time::timeout(quick, inbound.create_consumer(consumer("snoop"))).await;
    assert!(!matches!(refused, Ok(Ok(_))), "the sender read inbound");
    let router = as_user(&server, "router").await;
    let outbound = router.get_stream(subjects::OUTBOUND_STREAM).await.unwrap();
    let refused = tokio::time::timeout(quick, outbound.create_consumer(consumer("snoop"))).await;
    assert!(!matches!(refused, Ok(Ok(_))), "the router read outbound");
    // Each reads its own.
    let inbound = router.get_stream(subjects::INBOUND_STREAM).await.unwrap();
    inbound
        .create_consumer(consumer("router-own"))
        .await
        .expect("the router reads inbound");
    let outbound = sender.get_stream(subjects::OUTBOUND_STREAM).await.unwrap();
    outbound
        .create_consumer(consumer("sender-own"))
        .await
        .expect("the sender reads outbound");

    // No service may delete a stream; the router may not touch the budget.
    for (name, js) in [
        ("ingest", &ingest),
        ("router", &router),
        ("sender", &sender),
    ] {
        let deleted = tokio::time::timeout(quick, js.delete_stream(subjects::INBOUND_STREAM)).await;
        assert!(!matches!(deleted, Ok(Ok(_))), "{name} deleted INBOUND");
    }
    assert!(!published(&router, &format!("$KV.{}.fleet", subjects::BUDGET_BUCKET)).await);
    assert_eq!(stored(&cli, subjects::INBOUND_STREAM).await, 0);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_pipeline_runs_with_every_service_on_its_own_user(pool: PgPool) {
    let p = Pipeline::start_with_permissions(
        &pool,
        &[TenantSpec::echo("alpha"), TenantSpec::echo("bravo")],
    )
    .await;
    for (tenant, body) in [("alpha", "hello alpha"), ("bravo", "hello bravo")] {
        let event = TextMessage::new("15550000001", body).to_json();
        assert_eq!(p.post(tenant, event).await, Some(200));
    }
    let within = Duration::from_secs(30);
    let sends = match p.sim.wait_for_sends(2, within).await {
        Ok(sends) => sends,
        Err(e) => panic!("{e:?}; the server's log:\n{}", p.nats.log()),
    };
    p.settled(within).await;
    let mut bodies: Vec<(String, String)> = sends
        .iter()
        .map(|s| (s.customer_ref.clone(), s.body.clone()))
        .collect();
    bodies.sort();
    assert_eq!(
        bodies,
        [
            ("alpha".to_owned(), "echo: hello alpha".to_owned()),
            ("bravo".to_owned(), "echo: hello bravo".to_owned()),
        ]
    );
    // A graceful stop exercises the hand-over too (unpin, leave the member
    // buckets): no violation there either.
    let Pipeline {
        ingest,
        router,
        sender,
        nats,
        ..
    } = p;
    for service in [sender, router, ingest] {
        service.stop().await;
    }
    let log = nats.log();
    assert!(
        !log.contains("Violation"),
        "a service was refused a subject it needs:\n{log}"
    );
}

#[tokio::test]
async fn the_senders_watchdog_counts_inbound_events_but_reads_none() {
    let server = NatsServer::start_with_permissions();
    let cli = as_user(&server, "cli").await;
    let nats_settings = settings(&server.url(), &service_credentials("cli"));
    streams::ensure_streams(&cli, &nats_settings).await.unwrap();
    assert!(published(&cli, "inbound.acme").await);
    let sender = as_user(&server, "sender").await;
    let inbound = sender
        .get_stream_no_info(subjects::INBOUND_STREAM)
        .await
        .unwrap();

    // The counts per tenant subject, what the watchdog reads: allowed.
    let mut counts = inbound
        .info_with_subjects(subjects::all_partitions_filter(
            subjects::Direction::Inbound,
        ))
        .await
        .expect("the sender reads INBOUND's subject counts");
    let mut seen = Vec::new();
    while let Some(entry) = futures::StreamExt::next(&mut counts).await {
        seen.push(entry.unwrap());
    }
    assert_eq!(seen.len(), 1, "{seen:?}");
    assert!(seen[0].0.ends_with(".acme") && seen[0].1 == 1, "{seen:?}");

    // A message itself (a customer's words): refused.
    let read = tokio::time::timeout(
        Duration::from_secs(2),
        inbound.direct_get_last_for_subject(seen[0].0.clone()),
    )
    .await;
    assert!(
        !matches!(read, Ok(Ok(_))),
        "the sender read an inbound message"
    );

    // A silent bridge found disconnected is announced like the router's webhook.
    let mut announcements = cli.client().subscribe("control.bridge.*").await.unwrap();
    cli.client().flush().await.unwrap();
    // Published again every half second until heard (a denied publish is
    // never heard: the test still fails then), so a slow first delivery on a
    // loaded machine does not fail it (seen once in CI).
    let sender_core = sender.client();
    let subject = subjects::bridge_state_changed(&"acme".parse().unwrap());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let heard = loop {
        sender_core
            .publish(subject.clone(), "disconnected".into())
            .await
            .unwrap();
        sender_core.flush().await.unwrap();
        match tokio::time::timeout(
            Duration::from_millis(500),
            futures::StreamExt::next(&mut announcements),
        )
        .await
        {
            Ok(message) => break message.expect("the subscription is open"),
            Err(_) => assert!(
                tokio::time::Instant::now() < deadline,
                "the sender's announcement never arrived"
            ),
        }
    };
    assert_eq!(heard.payload.as_ref(), b"disconnected");
}
