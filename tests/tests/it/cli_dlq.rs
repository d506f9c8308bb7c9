//! `switchyard dlq`: replay delivers each dead-lettered event once through
//! the real router, a second replay sends nothing twice, other tenants'
//! letters are never touched; outbound letters come back as bulk (on the
//! tenant's bulk lane, `bulk.<tenant>`) under a replay id; letters that disagree about their tenant are refused; purge
//! and list keep to the named tenant.

use std::time::Duration;

use crate::cli_support::{add_tenant, failing_bot, run_json, t, vars};
use async_nats::{HeaderMap, jetstream};
use sqlx::PgPool;
use switchyard_cli::{dlq::HEADER_REPLAY_OF, exit::Exit};
use switchyard_shared::{
    config::{Env, NatsSettings},
    events,
    ids::EventId,
    lanes::{dead_letter, message::HEADER_ORIGINAL_SUBJECT},
    replies::{OutboundReply, Priority},
    streams,
    subjects::{self, Direction},
    tenants::BotKind,
};
use switchyard_tests::{nats_server::NatsServer, poll, services, traffic};

async fn jetstream_with_streams(nats: &NatsServer) -> jetstream::Context {
    let js = streams::context(
        async_nats::connect(nats.url()).await.unwrap(),
        Duration::from_secs(5),
    );
    let settings =
        NatsSettings::from_env(&Env::from_map([("SWITCHYARD_PARTITIONS", "4")])).unwrap();
    streams::ensure_streams(&js, &settings).await.unwrap();
    js
}

/// Stream sequences of the dead letters stored for `tenant` (both directions).
async fn letters_of(js: &jetstream::Context, tenant: &str) -> Vec<(String, HeaderMap)> {
    traffic::read_stream(js, subjects::DLQ_STREAM, &format!("dlq.*.{tenant}"))
        .await
        .into_iter()
        .map(|(subject, headers, _)| (subject, headers))
        .collect()
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn replaying_a_tenants_dead_letters_delivers_each_once_even_twice_and_leaves_other_tenants_alone(
    pool: PgPool,
) {
    let nats = NatsServer::start();
    let bot = failing_bot().await;
    for id in ["alpha", "bravo"] {
        add_tenant(
            &pool,
            id,
            BotKind::Http,
            serde_json::json!({"url": bot, "timeout_ms": 500}),
        )
        .await;
    }
    let db_url = services::database_url(&pool);
    // A 1 ms tenant cache: the bot fix applies to the very next message.
    let router = services::start_router(&services::env(
        &nats.url(),
        &db_url,
        &[
            ("SWITCHYARD_MAX_DELIVERIES", "2"),
            ("SWITCHYARD_RETRY_DELAY", "10ms"),
            ("SWITCHYARD_TENANT_CACHE_TTL", "1ms"),
        ],
    ))
    .await;
    let js = jetstream_with_streams(&nats).await;
    for (tenant, n) in [("alpha", 3), ("bravo", 2)] {
        for i in 0..n {
            let id = format!("{tenant}-ev-{i}");
            let body = traffic::message_body(Some(tenant), &id, "1@s.whatsapp.net", "hi");
            traffic::publish_inbound(&js, &t(tenant), &id, body).await;
        }
    }
    poll::until("five dead letters", Duration::from_secs(30), || async {
        (traffic::dead_letters(&js, Direction::Inbound).await.len() == 5).then_some(())
    })
    .await;
    let bravo_before = letters_of(&js, "bravo").await;
    let env = vars(&db_url, Some(&nats.url()), None);

    // Fix alpha's bot, then replay alpha's letters, keeping them.
    let (exit, _) = run_json(&["tenants", "set-bot", "alpha", "--kind", "echo"], &env).await;
    assert_eq!(exit, Exit::Ok);
    let (exit, first) = run_json(&["dlq", "replay", "--tenant", "alpha", "--keep"], &env).await;
    assert_eq!(exit, Exit::Ok, "{first}");
    assert_eq!(first["republished"], 3);
    let replies = poll::until(
        "a reply to each of alpha's events",
        Duration::from_secs(20),
        || async {
            let all = traffic::replies_in_both_lanes(&js).await;
            all.get("alpha").filter(|r| r.len() >= 3).cloned()
        },
    )
    .await;

    // The same letters again: nothing new is stored, so nothing is processed twice.
    let (exit, second) = run_json(&["dlq", "replay", "--tenant", "alpha"], &env).await;
    assert_eq!(exit, Exit::Ok, "{second}");
    assert_eq!(second["republished"], 0, "{second}");
    assert_eq!(second["duplicates"], 3, "{second}");
    assert_eq!(
        second["deleted"], 3,
        "replayed letters are deleted without --keep"
    );

    let mut events: Vec<String> = replies.iter().map(|r| r.event_id.to_string()).collect();
    events.sort();
    assert_eq!(
        events,
        ["alpha:alpha-ev-0", "alpha:alpha-ev-1", "alpha:alpha-ev-2"],
        "one reply per event"
    );
    let after = traffic::replies_in_both_lanes(&js).await;
    assert_eq!(
        after.get("alpha").map(Vec::len),
        Some(3),
        "still exactly one reply each"
    );
    assert!(
        !after.contains_key("bravo"),
        "bravo's letters were not replayed"
    );
    assert!(letters_of(&js, "alpha").await.is_empty());
    let bravo_after = letters_of(&js, "bravo").await;
    assert_eq!(
        bravo_after.len(),
        bravo_before.len(),
        "bravo's letters untouched"
    );
    router.stop().await;
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn a_replayed_letter_that_fails_again_returns_linked_to_the_letter_it_replayed(pool: PgPool) {
    let nats = NatsServer::start();
    let bot = failing_bot().await;
    add_tenant(
        &pool,
        "alpha",
        BotKind::Http,
        serde_json::json!({"url": bot, "timeout_ms": 500}),
    )
    .await;
    let db_url = services::database_url(&pool);
    let router = services::start_router(&services::env(
        &nats.url(),
        &db_url,
        &[
            ("SWITCHYARD_MAX_DELIVERIES", "2"),
            ("SWITCHYARD_RETRY_DELAY", "10ms"),
        ],
    ))
    .await;
    let js = jetstream_with_streams(&nats).await;
    let body = traffic::message_body(Some("alpha"), "ev-1", "1@s.whatsapp.net", "hi");
    traffic::publish_inbound(&js, &t("alpha"), "ev-1", body).await;
    let first = poll::until("the first dead letter", Duration::from_secs(20), || async {
        let l = read_dlq(&js, "dlq.inbound.alpha").await;
        (l.len() == 1).then(|| l[0].0)
    })
    .await;
    let env = vars(&db_url, Some(&nats.url()), None);

    let (exit, report) = run_json(&["dlq", "replay", "--tenant", "alpha"], &env).await;
    assert_eq!(exit, Exit::Ok, "{report}");

    let again = poll::until(
        "the replayed letter dead again",
        Duration::from_secs(20),
        || async {
            let l = read_dlq(&js, "dlq.inbound.alpha").await;
            (l.len() == 1 && l[0].0 != first).then(|| l[0].clone())
        },
    )
    .await;
    let headers = again.1;
    assert_eq!(
        headers.get(HEADER_REPLAY_OF).map(|v| v.as_str().to_owned()),
        Some(first.to_string())
    );
    assert_eq!(
        headers
            .get(events::HEADER_EVENT_ID)
            .map(|v| v.as_str().to_owned()),
        Some("alpha:ev-1".to_owned()),
        "the event id survives the round trip"
    );
    router.stop().await;
}

/// (sequence, headers, payload) of the DLQ messages on `filter`.
async fn read_dlq(js: &jetstream::Context, filter: &str) -> Vec<(u64, HeaderMap, bytes::Bytes)> {
    let stream = js.get_stream(subjects::DLQ_STREAM).await.unwrap();
    let mut out = Vec::new();
    let info = stream.get_info().await.unwrap();
    for seq in info.state.first_sequence..=info.state.last_sequence {
        if let Ok(m) = stream.get_raw_message(seq).await
            && async_nats::Subject::from(filter.to_owned()) == m.subject
        {
            out.push((seq, m.headers, m.payload));
        }
    }
    out
}

fn reply(tenant: &str, event: &str) -> OutboundReply {
    OutboundReply {
        tenant: t(tenant),
        reply_id: OutboundReply::reply_id_for(&EventId::parse(event).unwrap(), 0),
        event_id: EventId::parse(event).unwrap(),
        chat_id: switchyard_shared::message_ids::ChatId::parse("1@s.whatsapp.net").unwrap(),
        body: "hello".to_owned(),
        part: 0,
        parts: 1,
        priority: Priority::Live,
        received_at_ms: Some(1),
        menu: None,
    }
}

/// Stores a dead letter the way the services do (headers of `dead_letter::publish`).
async fn dead_letter(
    js: &jetstream::Context,
    direction: Direction,
    tenant: &str,
    original_subject: &str,
    event: &str,
    reason: &str,
    payload: Vec<u8>,
) -> u64 {
    let mut h = HeaderMap::new();
    h.insert(events::HEADER_EVENT_ID, event);
    h.insert(
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
    );
    h.insert(HEADER_ORIGINAL_SUBJECT, original_subject);
    h.insert(
        dead_letter::HEADER_ORIGINAL_MSG_ID,
        format!("orig:{event}").as_str(),
    );
    h.insert(dead_letter::HEADER_REASON, reason);
    h.insert(dead_letter::HEADER_ATTEMPTS, "3");
    h.insert(
        async_nats::header::NATS_MESSAGE_ID,
        format!("dlq:{tenant}:{event}").as_str(),
    );
    js.publish_with_headers(
        subjects::dead_letter(direction, &t(tenant)),
        h,
        payload.into(),
    )
    .await
    .unwrap()
    .await
    .unwrap()
    .sequence
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn outbound_replay_republishes_as_bulk_under_a_replay_id_and_refuses_a_letter_naming_another_tenant(
    pool: PgPool,
) {
    let nats = NatsServer::start();
    let js = jetstream_with_streams(&nats).await;
    let json = |r: &OutboundReply| serde_json::to_vec(r).unwrap();
    let good = dead_letter(
        &js,
        Direction::Outbound,
        "alpha",
        "outbound.alpha",
        "ev-1",
        "rejected",
        json(&reply("alpha", "ev-1")),
    )
    .await;
    // A letter on alpha's subject whose reply names bravo: refused, kept.
    let forged = dead_letter(
        &js,
        Direction::Outbound,
        "alpha",
        "outbound.alpha",
        "ev-2",
        "rejected",
        json(&reply("bravo", "ev-2")),
    )
    .await;
    // A letter on alpha's subject whose original subject is bravo's: refused, kept.
    let crossed = dead_letter(
        &js,
        Direction::Outbound,
        "alpha",
        "outbound.bravo",
        "ev-3",
        "rejected",
        json(&reply("alpha", "ev-3")),
    )
    .await;
    let bravo = dead_letter(
        &js,
        Direction::Outbound,
        "bravo",
        "outbound.bravo",
        "ev-4",
        "rejected",
        json(&reply("bravo", "ev-4")),
    )
    .await;
    let env = vars(&services::database_url(&pool), Some(&nats.url()), None);

    let (exit, dry) = run_json(&["dlq", "replay", "--tenant", "alpha", "--dry-run"], &env).await;
    assert_eq!(exit, Exit::Partial, "refusals make a partial run: {dry}");
    assert!(
        traffic::read_stream(&js, subjects::BULK_STREAM, "bulk.>")
            .await
            .is_empty(),
        "a dry run publishes nothing"
    );
    assert_eq!(
        letters_of(&js, "alpha").await.len(),
        3,
        "a dry run deletes nothing"
    );

    let (exit, report) = run_json(
        &[
            "dlq",
            "replay",
            "--tenant",
            "alpha",
            "--direction",
            "outbound",
        ],
        &env,
    )
    .await;
    assert_eq!(exit, Exit::Partial, "{report}");
    assert_eq!(report["republished"], 1);
    assert_eq!(report["refused"], 2);

    assert!(
        traffic::read_stream(&js, subjects::OUTBOUND_STREAM, "outbound.>")
            .await
            .is_empty(),
        "a replayed reply does not go to the live lane"
    );
    let out = traffic::read_stream(&js, subjects::BULK_STREAM, "bulk.>").await;
    assert_eq!(out.len(), 1);
    let (subject, headers, payload) = &out[0];
    assert_eq!(subjects::tenant_of(subject), Some(t("alpha")));
    let replayed: OutboundReply = serde_json::from_slice(payload).unwrap();
    assert_eq!(replayed.priority, Priority::Bulk);
    assert_eq!(
        replayed.reply_id.as_str(),
        "ev-1:0",
        "the reply id (the ledger key) is unchanged"
    );
    let h = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(h("Nats-Msg-Id"), Some(format!("replay:{good}")));
    assert_eq!(h(HEADER_REPLAY_OF), Some(good.to_string()));
    assert_eq!(h(events::HEADER_EVENT_ID), Some("ev-1".to_owned()));
    assert!(h("traceparent").is_some());
    assert_eq!(
        h(dead_letter::HEADER_REASON),
        None,
        "dead-letter headers are not replayed"
    );

    let left: Vec<u64> = read_dlq(&js, "dlq.outbound.alpha")
        .await
        .iter()
        .map(|l| l.0)
        .collect();
    assert_eq!(
        left,
        vec![forged, crossed],
        "refused letters stay; the replayed one is gone"
    );
    assert_eq!(read_dlq(&js, "dlq.outbound.bravo").await[0].0, bravo);
}

#[sqlx::test(migrator = "switchyard_shared::db::MIGRATOR")]
async fn list_and_purge_keep_to_the_named_tenant_and_its_filters(pool: PgPool) {
    let nats = NatsServer::start();
    let js = jetstream_with_streams(&nats).await;
    let body =
        |e: &str| traffic::message_body(Some("alpha"), e, "1@s.whatsapp.net", "x").into_bytes();
    dead_letter(
        &js,
        Direction::Inbound,
        "alpha",
        "inbound.alpha",
        "a1",
        "attempts_exhausted",
        body("a1"),
    )
    .await;
    let malformed = dead_letter(
        &js,
        Direction::Inbound,
        "alpha",
        "inbound.alpha",
        "a2",
        "malformed_event",
        body("a2"),
    )
    .await;
    dead_letter(
        &js,
        Direction::Inbound,
        "alpha-2",
        "inbound.alpha-2",
        "b1",
        "attempts_exhausted",
        body("b1"),
    )
    .await;
    dead_letter(
        &js,
        Direction::Inbound,
        "bravo",
        "inbound.bravo",
        "c1",
        "attempts_exhausted",
        body("c1"),
    )
    .await;
    let env = vars(&services::database_url(&pool), Some(&nats.url()), None);

    let (_, all) = run_json(&["dlq", "list"], &env).await;
    assert_eq!(all.as_array().unwrap().len(), 4);
    let (_, alpha) = run_json(&["dlq", "list", "--tenant", "alpha"], &env).await;
    let tenants: Vec<&str> = alpha
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["tenant"].as_str().unwrap())
        .collect();
    assert_eq!(
        tenants,
        ["alpha", "alpha"],
        "a named tenant is an exact subject, not a prefix"
    );
    let (_, by_reason) = run_json(
        &[
            "dlq",
            "list",
            "--tenant",
            "alpha",
            "--reason",
            "malformed_event",
        ],
        &env,
    )
    .await;
    assert_eq!(by_reason[0]["sequence"], malformed);
    let (_, none) = run_json(&["dlq", "list", "--direction", "outbound"], &env).await;
    assert_eq!(none.as_array().unwrap().len(), 0);

    let (exit, _) = run_json(&["dlq", "purge", "--yes"], &env).await;
    assert_eq!(exit, Exit::Usage, "purge without --tenant is refused");
    let (exit, _) = run_json(&["dlq", "replay"], &env).await;
    assert_eq!(exit, Exit::Usage, "replay without --tenant is refused");
    assert_eq!(letters_of(&js, "alpha").await.len(), 2);

    // Finer filter: letter by letter.
    let (exit, p) = run_json(
        &[
            "dlq",
            "purge",
            "--tenant",
            "alpha",
            "--reason",
            "malformed_event",
            "--yes",
        ],
        &env,
    )
    .await;
    assert_eq!(
        (exit, p["purged"].clone(), p["by"].clone()),
        (Exit::Ok, 1.into(), "sequence".into())
    );
    // Whole tenant subject.
    let (exit, p) = run_json(&["dlq", "purge", "--tenant", "alpha", "--yes"], &env).await;
    assert_eq!(
        (exit, p["purged"].clone(), p["by"].clone()),
        (Exit::Ok, 1.into(), "subject".into())
    );
    assert!(letters_of(&js, "alpha").await.is_empty());
    assert_eq!(
        letters_of(&js, "alpha-2").await.len(),
        1,
        "a tenant sharing a prefix is untouched"
    );
    assert_eq!(letters_of(&js, "bravo").await.len(), 1);
}
