//! Ingest stores each event exactly once: concurrent and repeated deliveries,
//! a crash between claim and publish, two replicas at once; and what it
//! publishes carries the documented subject, body and headers.

use std::time::Duration;

use crate::ingest_support::{Harness, message, tenant};
use futures::{StreamExt as _, future::join_all};
use reqwest::StatusCode;
use sqlx::PgPool;
use switchyard_shared::{
    events, subjects,
    telemetry::{self, TraceSettings},
};
use tracing_subscriber::layer::SubscriberExt as _;

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_hundred_concurrent_identical_deliveries_publish_exactly_one_message(db: PgPool) {
    let h = Harness::start(db.clone()).await;
    // Counts publishes on the wire, not only what the stream kept after deduplication.
    let watcher = async_nats::connect(h.nats.url()).await.unwrap();
    let mut published = watcher.subscribe("inbound.>").await.unwrap();
    watcher.flush().await.unwrap();
    let body = message("SAME-1");

    let answers = join_all((0..100).map(|_| h.post("acme", body.clone()))).await;

    for (status, text) in &answers {
        assert_eq!(*status, StatusCode::OK, "{text}");
    }
    let accepted = answers
        .iter()
        .filter(|(_, text)| text == r#"{"status":"accepted"}"#)
        .count();
    assert_eq!(accepted, 1, "exactly one delivery is the accepted one");
    let (fence, _) = h.post("fence", message("FENCE-1")).await;
    assert_eq!(fence, StatusCode::OK);
    let mut on_the_wire = Vec::new();
    while let Ok(Some(m)) = tokio::time::timeout(Duration::from_secs(10), published.next()).await {
        if m.subject.as_str() == subjects::inbound(&tenant("fence")) {
            break;
        }
        on_the_wire.push(m.subject.to_string());
    }
    assert_eq!(on_the_wire, vec!["inbound.acme".to_owned()]);
    assert_eq!(h.inbound_count().await, 2);
    Harness::until_published(&db, "acme", "SAME-1", Duration::from_secs(5)).await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn concurrent_identical_deliveries_to_two_replicas_store_one_message(db: PgPool) {
    let h = Harness::start(db.clone()).await;
    let other = h.start_replica(db, &[]).await;
    let token = h.keys.token_for(&tenant("acme"));
    let other_url = format!("{other}/hook/acme/{token}");
    let body = message("TWO-REPLICAS-1");

    let here = join_all((0..50).map(|_| h.post("acme", body.clone())));
    let there = join_all((0..50).map(|_| h.post_to(&other_url, body.clone())));
    let (here, there) = tokio::join!(here, there);

    for (status, text) in here.iter().chain(&there) {
        assert_eq!(*status, StatusCode::OK, "{text}");
    }
    assert_eq!(h.inbound_count().await, 1);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_redelivered_event_answers_200_and_publishes_nothing(db: PgPool) {
    let h = Harness::start(db).await;

    let first = h.post("acme", message("AGAIN-1")).await;
    let second = h.post("acme", message("AGAIN-1")).await;

    assert_eq!(
        first,
        (StatusCode::OK, r#"{"status":"accepted"}"#.to_owned())
    );
    assert_eq!(
        second,
        (StatusCode::OK, r#"{"status":"duplicate"}"#.to_owned())
    );
    assert_eq!(h.inbound_count().await, 1);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_key_already_published_is_a_duplicate_even_outside_the_streams_window(db: PgPool) {
    // The key says published; the stream never saw it (as after its duplicate
    // window has passed): the database alone must recognise the duplicate.
    sqlx::query("INSERT INTO inbound_event_keys (tenant_id, event_id, state, published_at) VALUES ('acme', 'OLD-1', 'published', now())")
        .execute(&db)
        .await
        .unwrap();
    let h = Harness::start(db).await;

    let (status, text) = h.post("acme", message("OLD-1")).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(text, r#"{"status":"duplicate"}"#);
    assert_eq!(h.inbound_count().await, 0);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_key_claimed_but_never_published_is_published_on_the_next_delivery(db: PgPool) {
    // A crash between writing the key and the publish ack leaves it 'claimed'.
    sqlx::query(
        "INSERT INTO inbound_event_keys (tenant_id, event_id) VALUES ('acme', 'CRASHED-1')",
    )
    .execute(&db)
    .await
    .unwrap();
    let h = Harness::start(db.clone()).await;

    let (status, text) = h.post("acme", message("CRASHED-1")).await;

    assert_eq!(status, StatusCode::OK);
    assert_eq!(text, r#"{"status":"accepted"}"#);
    assert_eq!(h.inbound_count().await, 1);
    Harness::until_published(&db, "acme", "CRASHED-1", Duration::from_secs(5)).await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_same_provider_id_from_two_tenants_is_two_events(db: PgPool) {
    let h = Harness::start(db).await;

    let acme = h.post("acme", message("SHARED-ID")).await;
    let globex = h.post("globex", message("SHARED-ID")).await;

    assert_eq!(acme.0, StatusCode::OK);
    assert_eq!(
        globex,
        (StatusCode::OK, r#"{"status":"accepted"}"#.to_owned())
    );
    assert_eq!(h.inbound_count().await, 2);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn an_event_without_a_message_id_is_deduplicated_by_its_digest(db: PgPool) {
    let h = Harness::start(db).await;
    let vote = r#"{"event":"poll_vote","chat_id":"1@s.whatsapp.net","poll_id":"P","from_me":false,"timestamp":1777180605,"options":["A"]}"#;
    // The same content with other whitespace and key order is the same event.
    let reordered = r#"{ "timestamp": 1777180605, "options": ["A"], "event": "poll_vote", "from_me": false, "poll_id": "P", "chat_id": "1@s.whatsapp.net" }"#;

    let first = h.post("acme", vote).await;
    let second = h.post("acme", reordered).await;

    assert_eq!(first.1, r#"{"status":"accepted"}"#);
    assert_eq!(second.1, r#"{"status":"duplicate"}"#);
    assert_eq!(h.inbound_count().await, 1);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_published_event_carries_its_scoped_id_trace_context_and_receive_time(db: PgPool) {
    // The spans layer every binary installs (`telemetry::init`), on this
    // (current-thread) test runtime, where the in-process ingest runs.
    let provider = telemetry::tracer_provider("switchyard-ingest", &TraceSettings::default());
    let _traced = tracing::subscriber::set_default(
        tracing_subscriber::registry().with(telemetry::spans_layer(&provider)),
    );
    let h = Harness::start(db).await;
    let caller_trace = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let before_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let body = message("HEADERS-1");

    let traced = h
        .http
        .post(h.hook_url("acme"))
        .header("traceparent", caller_trace)
        .body(body.clone())
        .send()
        .await
        .unwrap()
        .status();
    let (untraced, _) = h.post("acme", message("HEADERS-2")).await;
    let after_ms = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 1000;

    assert_eq!((traced, untraced), (StatusCode::OK, StatusCode::OK));
    let stored = h.inbound_messages().await;
    let [first, second] = &stored[..] else {
        panic!("expected two messages, got {}", stored.len())
    };
    let header = |m: &async_nats::jetstream::message::StreamMessage, name: &str| {
        m.headers
            .get(name)
            .map(|v| v.as_str().to_owned())
            .unwrap_or_else(|| panic!("missing header {name}"))
    };
    assert_eq!(subjects::tenant_of(&first.subject), Some(tenant("acme")));
    assert_eq!(&first.payload[..], body.as_bytes());
    assert_eq!(header(first, "Nats-Msg-Id"), "acme:HEADERS-1");
    assert_eq!(header(first, events::HEADER_EVENT_ID), "acme:HEADERS-1");
    let received: i64 = header(first, events::HEADER_RECEIVED_AT_MS)
        .parse()
        .unwrap();
    assert!((before_ms..=after_ms).contains(&received), "{received}");
    let joined = header(first, "traceparent");
    assert!(
        joined.starts_with("00-4bf92f3577b34da6a3ce929d0e0e4736-"),
        "{joined}"
    );
    assert_ne!(joined, caller_trace, "ingest adds its own span");
    let started = header(second, "traceparent");
    assert_eq!(started.len(), 55, "{started}");
    assert!(!started.contains("4bf92f3577b34da6a3ce929d0e0e4736"));
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn keys_older_than_the_event_log_are_pruned_and_newer_ones_kept(pool: sqlx::PgPool) {
    sqlx::query(
        "INSERT INTO inbound_event_keys (tenant_id, event_id, state, claimed_at) VALUES \
         ('acme', 'old-1', 'published', now() - interval '8 days'), \
         ('acme', 'old-2', 'claimed', now() - interval '9 days'), \
         ('acme', 'new-1', 'published', now() - interval '1 day')",
    )
    .execute(&pool)
    .await
    .unwrap();
    let pruned =
        switchyard_ingest::prune::prune_once(&pool, std::time::Duration::from_secs(7 * 86_400))
            .await
            .unwrap();
    let left: Vec<String> = sqlx::query_scalar("SELECT event_id FROM inbound_event_keys")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(pruned, 2);
    assert_eq!(left, vec!["new-1"]);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_poll_vote_reusing_a_messages_id_is_stored_beside_it(db: PgPool) {
    let h = Harness::start(db.clone()).await;
    let vote = r#"{"event":"poll_vote","message_id":"SHARED-1","contact_id":"15550001234@s.whatsapp.net","phone":"15550001234","chat_id":"15550001234@s.whatsapp.net","poll_id":"P1","name":"Alice","from_me":false,"timestamp":1777180606}"#;

    let message_answer = h.post("acme", message("SHARED-1")).await;
    let vote_answer = h.post("acme", vote).await;
    let vote_again = h.post("acme", vote).await;
    let message_again = h.post("acme", message("SHARED-1")).await;

    let accepted = (StatusCode::OK, r#"{"status":"accepted"}"#.to_owned());
    let duplicate = (StatusCode::OK, r#"{"status":"duplicate"}"#.to_owned());
    assert_eq!(message_answer, accepted);
    assert_eq!(vote_answer, accepted);
    assert_eq!(vote_again, duplicate);
    assert_eq!(message_again, duplicate);
    let ids: Vec<String> = h
        .inbound_messages()
        .await
        .iter()
        .map(|m| {
            m.headers
                .get(events::HEADER_EVENT_ID)
                .map(|v| v.as_str().to_owned())
                .expect("event id header")
        })
        .collect();
    // A message keeps its bare id (keys stored before per-type keys still match).
    assert_eq!(ids, ["acme:SHARED-1", "acme:poll_vote:SHARED-1"]);
    Harness::until_published(&db, "acme", "poll_vote:SHARED-1", Duration::from_secs(5)).await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_second_disconnect_in_the_same_minute_is_a_new_event(db: PgPool) {
    // `disconnected` carries no id and no time: the bridge dropped twice, and
    // the second drop must reach the router (setting the state again is harmless).
    let h = Harness::start(db).await;
    let down = r#"{"event":"disconnected"}"#;

    let first = h.post("acme", down).await;
    let up = h
        .post("acme", r#"{"event":"connected","phone":"15550001234"}"#)
        .await;
    let second = h.post("acme", down).await;

    let accepted = (StatusCode::OK, r#"{"status":"accepted"}"#.to_owned());
    assert_eq!(
        [first, up, second],
        [accepted.clone(), accepted.clone(), accepted]
    );
    let bodies: Vec<Vec<u8>> = h
        .inbound_messages()
        .await
        .iter()
        .map(|m| m.payload.to_vec())
        .collect();
    assert_eq!(bodies.len(), 3);
    assert_eq!(bodies[2], down.as_bytes());
}

/// The claim statement's generic plan (the key writers force one per
/// connection, for its whole life), made on empty tables with the writers'
/// session settings, still reads a known key by its primary key and the
/// tenant's outbox rows by their index: a plan that scanned a whole table
/// for every batch (or every key) grew with that table.
#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn the_claim_statement_reads_known_keys_by_index_even_when_planned_on_an_empty_table(
    db: PgPool,
) {
    let mut connection = db.acquire().await.unwrap();
    for (setting, value) in switchyard_ingest::key_writer::WRITER_SETTINGS {
        sqlx::query("SELECT set_config($1, $2, false)")
            .bind(setting)
            .bind(value)
            .execute(&mut *connection)
            .await
            .unwrap();
    }
    sqlx::raw_sql(&format!(
        "PREPARE claim(text[], text[]) AS {}",
        switchyard_ingest::key_writer::CLAIM_SQL
    ))
    .execute(&mut *connection)
    .await
    .unwrap();
    let plan: Vec<String> =
        sqlx::query_scalar("EXPLAIN EXECUTE claim(ARRAY['alpha'], ARRAY['e1'])")
            .fetch_all(&mut *connection)
            .await
            .unwrap();
    let plan = plan.join("\n");
    assert!(
        plan.contains("Index Scan using inbound_event_keys_pkey on inbound_event_keys known"),
        "{plan}"
    );
    assert!(!plan.contains("Seq Scan"), "{plan}");
    assert!(
        plan.contains("inbound_outbox_tenant_order"),
        "the outbox check by the tenant's index: {plan}"
    );
}
